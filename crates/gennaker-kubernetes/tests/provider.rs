//! The Kubernetes accounts as a generic provider on a real API server (see `support`;
//! skipped, with one line saying how to point them at a cluster, when there is none):
//! the clusters view from the watch cache with pod health, the generic server-group
//! stages, and a canary release through ingress-nginx canary Ingresses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use gennaker_canary::source::MetricSources;
use gennaker_canary::testing::SameForEveryScope;
use gennaker_canary::{CanaryConfig, InMemoryCanaryConfigs};
use gennaker_deploy::{HealthState, LoadBalancer, Provider, Providers, ServerGroup, TrafficRouter};
use gennaker_engine::testing::{Fault, FaultRun, TestBackend};
use gennaker_kubernetes::KubernetesProvider;
use gennaker_kubernetes::view::{CANARY_OF, NGINX, WEIGHTS};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use support::{Kit, set_ready, succeeded};

/// A kit whose engine also runs the deployment stages (through the provider) and the
/// canary stage (judging [`SameForEveryScope`] series), and the provider itself.
async fn kit(prefix: &str) -> Option<(Kit, Arc<KubernetesProvider>)> {
    let holder: Arc<Mutex<Option<Arc<KubernetesProvider>>>> = Arc::default();
    let held = holder.clone();
    let kit = Kit::with_stages(prefix, vec![], move |registry, accounts| {
        *held.lock().unwrap() = Some(register_generic(registry, accounts));
    })
    .await?;
    let provider = holder.lock().unwrap().clone().unwrap();
    Some((kit, provider))
}

/// Registers the deployment stages through a new provider over `accounts` (its own
/// watches: a restarted engine starts from nothing in memory) and the canary stage.
fn register_generic(
    registry: &mut gennaker_engine::StageRegistry,
    accounts: &gennaker_kubernetes::KubernetesAccounts,
) -> Arc<KubernetesProvider> {
    let provider = KubernetesProvider::start(accounts.clone());
    gennaker_deploy::register(
        registry,
        Providers::new().with(provider.clone(), Some(provider.clone())),
    );
    let mut sources = MetricSources::new();
    sources.insert("flat", Arc::new(SameForEveryScope));
    let configs = InMemoryCanaryConfigs::new();
    let config: CanaryConfig = serde_json::from_value(json!({
        "name": "shop-canary", "applications": ["shop"],
        "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
        "metrics": [{"name": "errors", "query": {"type": "builtin", "metricName": "errors"},
                     "groups": ["errors"], "scopeName": "default",
                     "analysisConfigurations": {"canary": {"direction": "increase"}}}],
        "classifier": {"groupWeights": {"errors": 100}}
    }))
    .unwrap();
    configs.insert("cfg-1", "shop-canary", &["shop"], config);
    gennaker_canary::stage::register(registry, sources, Arc::new(configs));
    provider
}

/// Service `shop-web` (selecting `frontedBy: shop-web`) and Ingress `shop` routing to it.
async fn service_and_ingress(kit: &Kit) {
    let services: Api<Service> = Api::namespaced(kit.client.clone(), &kit.namespace);
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "shop-web", "annotations": {"moniker.spinnaker.io/application": "shop"}},
                "spec": {"selector": {"frontedBy": "shop-web"}, "ports": [{"port": 80, "targetPort": 8080}]}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let ingresses: Api<Ingress> = Api::namespaced(kit.client.clone(), &kit.namespace);
    ingresses
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "shop"},
                "spec": {"ingressClassName": "nginx", "rules": [{"host": "shop.example", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "shop-web", "port": {"number": 80}}}}]}}]}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
}

/// Service `shop-web` and its Ingress, and `shop-prod-v000` deployed behind them with
/// both pods Up: where the traffic tests start.
async fn first_version_serving(kit: &Kit, provider: &KubernetesProvider) {
    service_and_ingress(kit).await;
    succeeded(&kit.run(vec![deploy(kit, "nginx:1.27", json!({}))]).await);
    view_until(provider, "shop-prod-v000", "two Up instances", |g| {
        g.is_some_and(|g| g.up_instances() == 2)
    })
    .await;
}

/// A deploy stage of cluster `shop-prod` running `image` behind `shop-web`.
fn deploy(kit: &Kit, image: &str, extra: Value) -> Value {
    let mut cluster = json!({
        "application": "shop", "stack": "prod", "account": "k8s", "cloudProvider": "kubernetes",
        "capacity": {"min": 2, "max": 2, "desired": 2}, "namespace": kit.namespace,
        "containers": [{"name": "web", "image": image}], "loadBalancers": ["shop-web"],
    });
    if let (Value::Object(c), Value::Object(e)) = (&mut cluster, extra) {
        c.extend(e);
    }
    json!({"name": "Deploy", "type": "deploy", "clusters": [cluster]})
}

/// A canary release of `nginx:1.28` in cluster `shop-prod`: 10%, an analysis, 50%,
/// then the `more` steps.
fn canary_release(kit: &Kit, more: Value) -> Value {
    let mut steps = vec![
        json!({"setWeight": 10}),
        json!({"analysis": {"lifetimeDuration": "PT30S"}}),
        json!({"setWeight": 50}),
    ];
    steps.extend(more.as_array().cloned().unwrap_or_default());
    deploy(
        kit,
        "nginx:1.28",
        json!({
            "strategy": "canary",
            "canary": {
                "analysis": {"canaryConfigName": "shop-canary", "metricsAccountName": "flat",
                             "scoreThresholds": {"pass": "80", "marginal": "50"},
                             "canaryAnalysisIntervalMins": "0.25",
                             "scopes": [{"scopeName": "default", "step": "5"}]},
                "steps": steps
            }
        }),
    )
}

/// Watches canary Ingress `shop-canary`: every `canary-weight` it has, in order.
fn canary_weights(kit: &Kit) -> (Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let ingresses: Api<Ingress> = Api::namespaced(kit.client.clone(), &kit.namespace);
    let watching = tokio::spawn({
        let seen = seen.clone();
        async move {
            let changes = watcher(ingresses, watcher::Config::default()).applied_objects();
            let mut changes = std::pin::pin!(changes);
            while let Some(changed) = changes.next().await {
                let Ok(ingress) = changed else { continue };
                if ingress.metadata.name.as_deref() != Some("shop-canary") {
                    continue;
                }
                let weight = ingress
                    .metadata
                    .annotations
                    .unwrap_or_default()
                    .get(&format!("{NGINX}canary-weight"))
                    .cloned()
                    .unwrap_or_default();
                let mut seen = seen.lock().unwrap();
                if seen.last() != Some(&weight) {
                    seen.push(weight);
                }
            }
        }
    });
    (seen, watching)
}

/// A generic server-group stage on `group`.
fn on_group(name: &str, stage_type: &str, group: &str, extra: Value) -> Value {
    let mut stage = json!({"name": name, "type": stage_type, "serverGroupName": group,
        "cluster": "shop-prod", "moniker": {"app": "shop", "stack": "prod"},
        "credentials": "k8s", "cloudProvider": "kubernetes"});
    if let (Value::Object(s), Value::Object(e)) = (&mut stage, extra) {
        s.extend(e);
    }
    stage
}

/// Polls the provider's view (bounded) until `done` holds for `group`.
async fn view_until(
    provider: &KubernetesProvider,
    group: &str,
    what: &str,
    done: impl Fn(Option<&ServerGroup>) -> bool,
) -> Option<ServerGroup> {
    for _ in 0..200 {
        let groups = provider.server_groups("shop").await.unwrap();
        let found = groups.into_iter().find(|g| g.name == group);
        if done(found.as_ref()) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the clusters view never showed {what} for {group}");
}

async fn pod_labels(kit: &Kit, group: &str) -> Vec<BTreeMap<String, String>> {
    let pods: Api<Pod> = Api::namespaced(kit.client.clone(), &kit.namespace);
    pods.list(&ListParams::default().labels(&format!("gennaker.io/server-group={group}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.metadata.labels.unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clusters_view_shows_workloads_with_health_and_the_generic_stages_change_them() {
    let Some((kit, provider)) = kit("view").await else {
        return;
    };
    service_and_ingress(&kit).await;
    let first = kit.run(vec![deploy(&kit, "nginx:1.27", json!({}))]).await;
    succeeded(&first);

    // The view: the ReplicaSet as a server group, its pods as instances, in traffic.
    let group = view_until(&provider, "shop-prod-v000", "two Up instances", |g| {
        g.is_some_and(|g| g.up_instances() == 2)
    })
    .await
    .unwrap();
    assert_eq!(group.cluster(), "shop-prod");
    assert_eq!(group.cloud_provider, "kubernetes");
    assert!(!group.disabled);
    assert_eq!(group.load_balancers, ["shop-web"]);
    assert_eq!(group.capacity.desired, 2);
    for labels in pod_labels(&kit, "shop-prod-v000").await {
        assert_eq!(labels["frontedBy"], "shop-web", "{labels:?}");
    }
    let balancer = provider
        .load_balancer("k8s", "shop-web")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(balancer.spec.application, "shop");
    assert_eq!(
        balancer.weights,
        BTreeMap::from([("shop-prod-v000".to_owned(), 100)])
    );

    // A pod the kubelet reports not Ready is Down, with why.
    let pod = group.instances[0].id.clone();
    set_ready(&kit.client, &kit.namespace, &pod, false).await;
    let group = view_until(&provider, "shop-prod-v000", "one Down instance", |g| {
        g.is_some_and(|g| g.up_instances() == 1)
    })
    .await
    .unwrap();
    let down = group.instances.iter().find(|i| i.id == pod).unwrap();
    assert_eq!(down.health, HealthState::Down);
    assert!(
        down.reason.as_deref().unwrap().contains("not ready"),
        "{down:?}"
    );
    set_ready(&kit.client, &kit.namespace, &pod, true).await;

    // Resize, disable, enable through the generic stages.
    let ops = kit
        .run(vec![
            on_group(
                "grow",
                "resizeServerGroup",
                "shop-prod-v000",
                json!({"action": "scale_exact", "capacity": {"min": 1, "max": 4, "desired": 3}}),
            ),
            on_group("disable", "disableServerGroup", "shop-prod-v000", json!({})),
        ])
        .await;
    succeeded(&ops);
    let rs = kit
        .get("apps/v1", "ReplicaSet", "shop-prod-v000")
        .await
        .unwrap();
    assert_eq!(rs["spec"]["replicas"], 3);
    assert!(
        rs["spec"]["template"]["metadata"]["labels"]
            .get("frontedBy")
            .is_none()
    );
    let group = view_until(&provider, "shop-prod-v000", "disabled, 3 instances", |g| {
        g.is_some_and(|g| g.disabled && g.instances.len() == 3)
    })
    .await
    .unwrap();
    assert_eq!(
        (
            group.capacity.min,
            group.capacity.desired,
            group.capacity.max
        ),
        (1, 3, 4)
    );
    for labels in pod_labels(&kit, "shop-prod-v000").await {
        assert!(!labels.contains_key("frontedBy"), "{labels:?}");
    }

    let ops = kit
        .run(vec![on_group(
            "enable",
            "enableServerGroup",
            "shop-prod-v000",
            json!({}),
        )])
        .await;
    succeeded(&ops);
    view_until(&provider, "shop-prod-v000", "enabled", |g| {
        g.is_some_and(|g| !g.disabled)
    })
    .await;
    for labels in pod_labels(&kit, "shop-prod-v000").await {
        assert_eq!(labels["frontedBy"], "shop-web", "{labels:?}");
    }

    // A DaemonSet cannot be resized: the stage says so.
    let daemons: Api<k8s_openapi::api::apps::v1::DaemonSet> =
        Api::namespaced(kit.client.clone(), &kit.namespace);
    daemons
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "shop-agent", "annotations": {"moniker.spinnaker.io/application": "shop"}},
                "spec": {"selector": {"matchLabels": {"app": "agent"}},
                         "template": {"metadata": {"labels": {"app": "agent"}},
                                      "spec": {"containers": [{"name": "a", "image": "busybox"}]}}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    view_until(&provider, "shop-agent", "the DaemonSet", |g| g.is_some()).await;
    let refused = kit
        .run(vec![on_group(
            "grow agent",
            "resizeServerGroup",
            "shop-agent",
            json!({"cluster": "shop-agent", "moniker": {"app": "shop", "detail": "agent"},
                   "action": "scale_exact", "capacity": {"min": 2, "max": 2, "desired": 2}}),
        )])
        .await;
    assert_eq!(refused.status, gennaker_engine::ExecutionStatus::Terminal);
    let error = support::error(&refused, "grow agent");
    assert!(error.contains("DaemonSet"), "{error}");

    // Destroy: the ReplicaSet goes, and the view forgets it.
    let ops = kit
        .run(vec![on_group(
            "destroy",
            "destroyServerGroup",
            "shop-prod-v000",
            json!({}),
        )])
        .await;
    succeeded(&ops);
    assert!(
        kit.get("apps/v1", "ReplicaSet", "shop-prod-v000")
            .await
            .is_none()
    );
    view_until(&provider, "shop-prod-v000", "no group", |g| g.is_none()).await;
    kit.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_release_creates_steps_and_removes_the_nginx_canary_ingress() {
    let Some((kit, provider)) = kit("canary").await else {
        return;
    };
    first_version_serving(&kit, &provider).await;

    // Watch the canary Ingress while the release runs: every weight it had.
    let (seen, watching) = canary_weights(&kit);
    let release = canary_release(&kit, json!([{"pause": {"duration": "10s"}}]));
    let run = kit.h.run("release", kit.pipeline(vec![release])).await;
    // While the canary takes 50%: its Ingress and Service, and which pods they reach.
    let at_half = kit
        .h
        .drive_until(&run.id, Duration::from_secs(1), "the 50% step", |e| {
            e.stages
                .iter()
                .any(|s| s.name == "Set canary weight 50%" && s.status.is_complete())
                || e.status.is_complete()
        })
        .await;
    assert!(
        !at_half.status.is_complete(),
        "{}",
        gennaker_engine::testing::summary(&at_half)
    );
    let canary = kit
        .get("networking.k8s.io/v1", "Ingress", "shop-canary")
        .await
        .unwrap();
    let annotations = &canary["metadata"]["annotations"];
    assert_eq!(annotations[format!("{NGINX}canary")], "true");
    assert_eq!(annotations[format!("{NGINX}canary-weight")], "50");
    assert_eq!(
        canary["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        "shop-web-canary"
    );
    let canary_service = kit.get("v1", "Service", "shop-web-canary").await.unwrap();
    assert_eq!(canary_service["spec"]["selector"][CANARY_OF], "shop-web");
    for group in ["shop-prod-baseline-v000", "shop-prod-canary-v000"] {
        for labels in pod_labels(&kit, group).await {
            assert_eq!(labels[CANARY_OF], "shop-web", "{group}: {labels:?}");
            assert!(!labels.contains_key("frontedBy"), "{group}: {labels:?}");
        }
    }
    for labels in pod_labels(&kit, "shop-prod-v000").await {
        assert_eq!(labels["frontedBy"], "shop-web", "{labels:?}");
    }
    let service = kit.get("v1", "Service", "shop-web").await.unwrap();
    assert!(service["metadata"]["annotations"][WEIGHTS].is_string());

    let done = kit
        .h
        .drive_until(&run.id, Duration::from_secs(2), "the release to end", |e| {
            e.status.is_complete()
        })
        .await;
    succeeded(&done);
    watching.abort();
    let weights = seen.lock().unwrap().clone();
    assert_eq!(
        weights,
        ["10", "50"],
        "the canary Ingress's weights in order"
    );

    // Promoted: the canary Ingress and Service are gone, the new version alone serves.
    assert!(
        kit.get("networking.k8s.io/v1", "Ingress", "shop-canary")
            .await
            .is_none()
    );
    assert!(kit.get("v1", "Service", "shop-web-canary").await.is_none());
    assert_eq!(
        kit.names("apps/v1", "ReplicaSet").await,
        ["shop-prod-v000", "shop-prod-v001"]
    );
    let service = kit.get("v1", "Service", "shop-web").await.unwrap();
    assert!(service["metadata"]["annotations"].get(WEIGHTS).is_none());
    let new = view_until(&provider, "shop-prod-v001", "v001 serving", |g| {
        g.is_some_and(|g| !g.disabled && g.up_instances() == 2)
    })
    .await
    .unwrap();
    assert_eq!(new.spec["containers"][0]["image"], "nginx:1.28");
    view_until(&provider, "shop-prod-v000", "v000 disabled", |g| {
        g.is_some_and(|g| g.disabled)
    })
    .await;
    for labels in pod_labels(&kit, "shop-prod-v001").await {
        assert_eq!(labels["frontedBy"], "shop-web", "{labels:?}");
    }
    for labels in pod_labels(&kit, "shop-prod-v000").await {
        assert!(!labels.contains_key("frontedBy"), "{labels:?}");
    }
    kit.finish().await;
}

/// Polls the provider's load balancers of `shop` (bounded) until `done` holds.
async fn balancers_until(
    provider: &KubernetesProvider,
    what: &str,
    done: impl Fn(&[LoadBalancer]) -> bool,
) -> Vec<LoadBalancer> {
    let mut last = Vec::new();
    for _ in 0..200 {
        last = provider.load_balancers("shop").await.unwrap();
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the load balancers never showed {what}: {last:#?}");
}

fn named<'a>(balancers: &'a [LoadBalancer], name: &str) -> Option<&'a LoadBalancer> {
    balancers.iter().find(|b| b.spec.name == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingresses_are_load_balancers_with_their_services_and_a_canary_ingress_with_its_weight() {
    let Some((kit, provider)) = kit("ingress").await else {
        return;
    };
    service_and_ingress(&kit).await;
    succeeded(&kit.run(vec![deploy(&kit, "nginx:1.27", json!({}))]).await);
    let canary_cluster = json!({"freeFormDetails": "canary",
        "capacity": {"min": 1, "max": 1, "desired": 1}});
    succeeded(
        &kit.run(vec![deploy(&kit, "nginx:1.28", canary_cluster)])
            .await,
    );

    // Unpinned: the Ingress routes to the Service, whose share follows Up instances.
    let balancers = balancers_until(&provider, "the Ingress sharing by Up instances", |b| {
        named(b, "ingress shop").is_some_and(|i| i.weights.len() == 2)
    })
    .await;
    let ingress = named(&balancers, "ingress shop").unwrap();
    assert_eq!(ingress.backends, ["service shop-web"]);
    assert_eq!(ingress.spec.application, "shop");
    assert_eq!(ingress.address, "shop.example");
    assert_eq!(ingress.details["kind"], "ingress");
    assert_eq!(ingress.details["hosts"], json!(["shop.example"]));
    assert_eq!(ingress.details["ingressClassName"], "nginx");
    assert_eq!(
        ingress.weights,
        BTreeMap::from([
            ("shop-prod-v000".to_owned(), 67),
            ("shop-prod-canary-v000".to_owned(), 33)
        ])
    );
    assert!(named(&balancers, "shop-web").is_some(), "the Service too");

    // Weights fixed across two clusters: the canary Ingress appears with its weight,
    // routing to the canary Service and through it to the canary cluster's group.
    let pin = BTreeMap::from([
        ("shop-prod-v000".to_owned(), 90),
        ("shop-prod-canary-v000".to_owned(), 10),
    ]);
    provider.set_weights("k8s", "shop-web", pin).await.unwrap();
    let balancers = balancers_until(&provider, "the canary Ingress", |b| {
        named(b, "ingress shop-canary").is_some_and(|c| !c.weights.is_empty())
    })
    .await;
    let canary = named(&balancers, "ingress shop-canary").unwrap();
    assert_eq!(canary.backends, ["service shop-web-canary"]);
    assert_eq!(canary.details["canaryWeight"], 10);
    assert_eq!(canary.spec.application, "shop");
    assert_eq!(
        canary.weights,
        BTreeMap::from([("shop-prod-canary-v000".to_owned(), 100)])
    );
    let primary = named(&balancers, "ingress shop").unwrap();
    assert_eq!(
        primary.weights,
        BTreeMap::from([
            ("shop-prod-v000".to_owned(), 90),
            ("shop-prod-canary-v000".to_owned(), 10)
        ])
    );
    assert!(!primary.details.contains_key("canaryWeight"));
    let one = provider
        .load_balancer("k8s", "ingress shop-canary")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.details["canaryWeight"], 10);
    let why = provider
        .set_weights("k8s", "ingress shop", BTreeMap::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(why.contains("name the Service"), "{why}");

    // Weights released: the canary Ingress is gone from the view with the Ingress.
    provider
        .set_weights("k8s", "shop-web", BTreeMap::new())
        .await
        .unwrap();
    balancers_until(&provider, "no canary Ingress", |b| {
        named(b, "ingress shop-canary").is_none()
            && named(b, "ingress shop").is_some_and(|i| i.weights.len() == 2)
    })
    .await;
    kit.finish().await;
}

/// The groups whose pods Service `shop-web` selects, from pod labels.
async fn serving(kit: &Kit) -> BTreeMap<String, usize> {
    let pods: Api<Pod> = Api::namespaced(kit.client.clone(), &kit.namespace);
    let mut serving = BTreeMap::new();
    for pod in pods.list(&ListParams::default()).await.unwrap().items {
        let labels = pod.metadata.labels.unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_none()
            && labels.get("frontedBy").map(String::as_str) == Some("shop-web")
            && let Some(group) = labels.get("gennaker.io/server-group")
        {
            *serving.entry(group.clone()).or_default() += 1;
        }
    }
    serving
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_puts_the_restored_version_behind_the_service_before_disabling_the_newer() {
    let Some((kit, provider)) = kit("rollback").await else {
        return;
    };
    service_and_ingress(&kit).await;
    succeeded(&kit.run(vec![deploy(&kit, "nginx:1.27", json!({}))]).await);
    succeeded(
        &kit.run(vec![deploy(
            &kit,
            "nginx:1.28",
            json!({"strategy": "redblack"}),
        )])
        .await,
    );
    view_until(&provider, "shop-prod-v000", "v000 disabled", |g| {
        g.is_some_and(|g| g.disabled)
    })
    .await;
    assert_eq!(
        serving(&kit).await,
        BTreeMap::from([("shop-prod-v001".to_owned(), 2)])
    );

    // Every change to the pods' labels while the rollback runs: which groups the
    // Service selects after each.
    let states: Arc<Mutex<Vec<BTreeMap<String, usize>>>> = Arc::default();
    let watching = tokio::spawn({
        let states = states.clone();
        let pods: Api<Pod> = Api::namespaced(kit.client.clone(), &kit.namespace);
        async move {
            let mut labelled: BTreeMap<String, String> = BTreeMap::new();
            // Recorded from the end of the first list on: during it, pods come one by one.
            let mut listed = false;
            let changes = watcher(pods, watcher::Config::default());
            let mut changes = std::pin::pin!(changes);
            while let Some(changed) = changes.next().await {
                let (pod, gone) = match changed {
                    Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                        (Some(pod), false)
                    }
                    Ok(watcher::Event::Delete(pod)) => (Some(pod), true),
                    Ok(watcher::Event::InitDone) => {
                        listed = true;
                        (None, false)
                    }
                    Ok(watcher::Event::Init) | Err(_) => continue,
                };
                if let Some(pod) = pod {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let labels = pod.metadata.labels.unwrap_or_default();
                    let group = labels.get("gennaker.io/server-group");
                    let serving = labels.contains_key("frontedBy")
                        && !gone
                        && pod.metadata.deletion_timestamp.is_none();
                    match group {
                        Some(group) if serving => {
                            labelled.insert(name, group.clone());
                        }
                        _ => {
                            labelled.remove(&name);
                        }
                    }
                }
                if !listed {
                    continue;
                }
                let mut now: BTreeMap<String, usize> = BTreeMap::new();
                for group in labelled.values() {
                    *now.entry(group.clone()).or_default() += 1;
                }
                let mut states = states.lock().unwrap();
                if states.last() != Some(&now) {
                    states.push(now);
                }
            }
        }
    });
    // Wait until the watch has listed the pods, so it sees every change after.
    for _ in 0..100 {
        if !states.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rollback = kit
        .run(vec![on_group(
            "rollback",
            "rollbackServerGroup",
            "shop-prod-v001",
            json!({"rollbackType": "EXPLICIT",
                   "rollbackContext": {"rollbackServerGroupName": "shop-prod-v001",
                                       "restoreServerGroupName": "shop-prod-v000"}}),
        )])
        .await;
    succeeded(&rollback);
    let end = BTreeMap::from([("shop-prod-v000".to_owned(), 2)]);
    for _ in 0..100 {
        if states.lock().unwrap().last() == Some(&end) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watching.abort();
    let states = states.lock().unwrap().clone();
    println!("the groups the Service selects, in order: {states:?}");
    assert_eq!(states.last(), Some(&end), "{states:?}");
    // Traffic first: v001 loses its pods only once both of v000's serve, and the
    // Service never selects nothing.
    let first_drop = states
        .iter()
        .position(|s| s.get("shop-prod-v001").copied().unwrap_or(0) < 2)
        .unwrap();
    assert_eq!(
        states[first_drop].get("shop-prod-v000"),
        Some(&2),
        "v000 serves before v001 is taken out: {states:?}"
    );
    assert!(states.iter().all(|s| !s.is_empty()), "{states:?}");
    let group = view_until(&provider, "shop-prod-v001", "v001 disabled", |g| {
        g.is_some_and(|g| g.disabled)
    })
    .await
    .unwrap();
    assert_eq!(group.capacity.desired, 2, "the rolled-back group is kept");
    view_until(&provider, "shop-prod-v000", "v000 enabled", |g| {
        g.is_some_and(|g| !g.disabled && g.up_instances() == 2)
    })
    .await;
    kit.finish().await;
}

/// Runs `stages` under both faults, each time in a fresh namespace prepared by
/// `prepare`, the engine's providers started anew with each engine; then `check`.
async fn under_faults<P, C>(prefix: &str, prepare: P, stages: fn(&Kit) -> Vec<Value>, check: C)
where
    P: AsyncFn(&Kit, &KubernetesProvider),
    C: AsyncFn(&Kit, &KubernetesProvider, Fault, &[String]),
{
    for fault in [Fault::RepeatEveryStep, Fault::CrashAfterEveryCommit] {
        let Some((kit, provider)) = kit(prefix).await else {
            return;
        };
        prepare(&kit, &provider).await;
        let (seen, watching) = canary_weights(&kit);
        let accounts = kit.accounts.clone();
        let outcome = FaultRun::new(TestBackend::Sqlite, fault, kit.pipeline(stages(&kit)))
            .with_stages(move |registry| {
                register_generic(registry, &accounts);
            })
            .clock_step(Duration::from_secs(5))
            .run()
            .await;
        outcome.assert_succeeded();
        println!(
            "{prefix} {fault:?}: {} repeated steps, {} restarts",
            outcome.repeated, outcome.restarts
        );
        watching.abort();
        let seen = seen.lock().unwrap().clone();
        check(&kit, &provider, fault, &seen).await;
        kit.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_server_group_operations_repeated_or_crashing_after_every_commit_act_once() {
    under_faults(
        "sgfaults",
        async |kit, provider| first_version_serving(kit, provider).await,
        |kit| {
            vec![
                deploy(kit, "nginx:1.28", json!({})),
                on_group(
                    "grow",
                    "resizeServerGroup",
                    "shop-prod-v001",
                    json!({"action": "scale_exact", "capacity": {"min": 1, "max": 4, "desired": 3}}),
                ),
                on_group("disable old", "disableServerGroup", "shop-prod-v000", json!({})),
                on_group("enable old", "enableServerGroup", "shop-prod-v000", json!({})),
                on_group("disable old again", "disableServerGroup", "shop-prod-v000", json!({})),
                on_group("destroy old", "destroyServerGroup", "shop-prod-v000", json!({})),
            ]
        },
        async |kit, provider, fault, _| {
            assert_eq!(
                kit.names("apps/v1", "ReplicaSet").await,
                ["shop-prod-v001"],
                "{fault:?}: one new version, the old one gone"
            );
            let v1 = kit
                .get("apps/v1", "ReplicaSet", "shop-prod-v001")
                .await
                .unwrap();
            assert_eq!(v1["spec"]["replicas"], 3, "{fault:?}");
            assert_eq!(
                v1["spec"]["template"]["metadata"]["labels"]["frontedBy"],
                "shop-web",
                "{fault:?}"
            );
            let group = view_until(provider, "shop-prod-v001", "three Up instances", |g| {
                g.is_some_and(|g| g.up_instances() == 3)
            })
            .await
            .unwrap();
            assert!(!group.disabled, "{fault:?}");
            assert_eq!(
                (group.capacity.min, group.capacity.max),
                (1, 4),
                "{fault:?}"
            );
            for labels in pod_labels(kit, "shop-prod-v001").await {
                assert_eq!(labels["frontedBy"], "shop-web", "{fault:?}: {labels:?}");
            }
            view_until(provider, "shop-prod-v000", "no v000", |g| g.is_none()).await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nginx_canary_ingress_repeated_or_crashing_after_every_commit_is_made_set_and_removed_once()
 {
    under_faults(
        "lbfaults",
        async |kit, provider| first_version_serving(kit, provider).await,
        |kit| vec![canary_release(kit, json!([]))],
        async |kit, provider, fault, seen| {
            assert_eq!(
                seen,
                ["10", "50"],
                "{fault:?}: the canary Ingress's weights, each set once, in order"
            );
            assert!(
                kit.get("networking.k8s.io/v1", "Ingress", "shop-canary")
                    .await
                    .is_none(),
                "{fault:?}: the canary Ingress is removed"
            );
            assert!(
                kit.get("v1", "Service", "shop-web-canary").await.is_none(),
                "{fault:?}: the canary Service is removed"
            );
            assert_eq!(
                kit.names("apps/v1", "ReplicaSet").await,
                ["shop-prod-v000", "shop-prod-v001"],
                "{fault:?}: baseline and canary gone, one new version"
            );
            let service = kit.get("v1", "Service", "shop-web").await.unwrap();
            assert!(
                service["metadata"]["annotations"].get(WEIGHTS).is_none(),
                "{fault:?}"
            );
            view_until(provider, "shop-prod-v001", "v001 serving", |g| {
                g.is_some_and(|g| !g.disabled && g.up_instances() == 2)
            })
            .await;
            for labels in pod_labels(kit, "shop-prod-v001").await {
                assert_eq!(labels["frontedBy"], "shop-web", "{fault:?}: {labels:?}");
                assert!(!labels.contains_key(CANARY_OF), "{fault:?}: {labels:?}");
            }
            for labels in pod_labels(kit, "shop-prod-v000").await {
                assert!(!labels.contains_key("frontedBy"), "{fault:?}: {labels:?}");
            }
        },
    )
    .await;
}

/// A disable or enable cut short after the template's patch (the fault driver kills the
/// engine wherever it is; so does a real crash) leaves the template on its new side and
/// the pods on the old one. The repeat must finish the pods: deciding from the template
/// alone, it found nothing left to do, and a disabled group kept serving through the
/// Service (the canary release's red/black disable failed this way under
/// `CrashAfterEveryCommit`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disable_or_enable_cut_short_after_the_template_is_finished_on_the_pods_when_repeated() {
    let Some((kit, provider)) = kit("halfmoved").await else {
        return;
    };
    first_version_serving(&kit, &provider).await;
    let rs = |labels: Value| json!({"spec": {"template": {"metadata": {"labels": labels}}}});
    let replica_sets: Api<kube::api::DynamicObject> = Api::namespaced_with(
        kit.client.clone(),
        &kit.namespace,
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "apps",
            "v1",
            "ReplicaSet",
        )),
    );
    let patch = kube::api::PatchParams::default();
    // The enable below refuses a ReplicaSet whose status counts no Ready pod, and the
    // controller manager updates that count after the pods turn Ready (late under load).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let live = replica_sets.get("shop-prod-v000").await.unwrap();
        if live.data.pointer("/status/readyReplicas") == Some(&json!(2)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ReplicaSet's status never counted 2 Ready pods: {:?}",
            live.data.get("status")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The disable's first patch, and no more.
    replica_sets
        .patch(
            "shop-prod-v000",
            &patch,
            &kube::api::Patch::Merge(rs(json!({"frontedBy": null}))),
        )
        .await
        .unwrap();
    provider
        .disable_server_group("k8s", "shop-prod-v000")
        .await
        .unwrap();
    let labels = pod_labels(&kit, "shop-prod-v000").await;
    assert_eq!(labels.len(), 2);
    for labels in labels {
        assert!(!labels.contains_key("frontedBy"), "{labels:?}");
    }

    // The enable's first patch, and no more.
    replica_sets
        .patch(
            "shop-prod-v000",
            &patch,
            &kube::api::Patch::Merge(rs(json!({"frontedBy": "shop-web"}))),
        )
        .await
        .unwrap();
    provider
        .enable_server_group("k8s", "shop-prod-v000")
        .await
        .unwrap();
    let labels = pod_labels(&kit, "shop-prod-v000").await;
    assert_eq!(labels.len(), 2);
    for labels in labels {
        assert_eq!(labels["frontedBy"], "shop-web", "{labels:?}");
    }
    kit.finish().await;
}

/// A `deployManifest` of ReplicaSet `shop-prod` (cluster `shop-prod`) running `image`,
/// blue/green behind Service `web`, and with `preview` only behind `web-preview`.
fn blue_green(name: &str, image: &str, preview: bool) -> Value {
    let service = |name: &str| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"selector": {"frontedBy": name}, "ports": [{"port": 80, "targetPort": 8080}]}})
    };
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "shop-prod"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "shop"}},
            "template": {"metadata": {"labels": {"app": "shop"}},
                "spec": {"containers": [{"name": "web", "image": image}]}}}});
    let mut options = json!({"enableTraffic": !preview, "services": ["service web"],
                             "strategy": "bluegreen"});
    if preview {
        options["previewServices"] = json!(["service web-preview"]);
    }
    json!({"name": name, "type": "deployManifest", "source": "text",
           "manifests": [service("web"), service("web-preview"), rs],
           "moniker": {"app": "shop"},
           "trafficManagement": {"enabled": true, "options": options}})
}

async fn fronted_by(kit: &Kit, rs: &str) -> Vec<Option<String>> {
    let live = kit.get("apps/v1", "ReplicaSet", rs).await.unwrap();
    let uid = live["metadata"]["uid"].clone();
    let pods: Api<Pod> = Api::namespaced(kit.client.clone(), &kit.namespace);
    let mut labels = vec![
        live["spec"]["template"]["metadata"]["labels"]["frontedBy"]
            .as_str()
            .map(str::to_owned),
    ];
    for pod in pods.list(&ListParams::default()).await.unwrap().items {
        let pod = serde_json::to_value(pod).unwrap();
        if pod["metadata"]["ownerReferences"][0]["uid"] == uid
            && pod["metadata"]["deletionTimestamp"].is_null()
        {
            labels.push(
                pod["metadata"]["labels"]["frontedBy"]
                    .as_str()
                    .map(str::to_owned),
            );
        }
    }
    labels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generic_enable_of_a_preview_version_promotes_it_as_enable_manifest_does() {
    let Some((kit, provider)) = kit("bggeneric").await else {
        return;
    };
    succeeded(&kit.run(vec![blue_green("v0", "nginx:1.25", false)]).await);
    succeeded(&kit.run(vec![blue_green("v1", "nginx:1.26", true)]).await);
    let web = Some("web".to_owned());
    let preview = Some("web-preview".to_owned());
    assert_eq!(
        fronted_by(&kit, "shop-prod-v000").await,
        [web.clone(), web.clone(), web.clone()]
    );
    view_until(
        &provider,
        "shop-prod-v001",
        "the preview version, disabled",
        |g| g.is_some_and(|g| g.disabled && g.instances.len() == 2),
    )
    .await
    .unwrap();

    // A crash-looping new version is refused at once, with the pod's reason.
    kit.behave(support::Behaviour::CrashLoop);
    let pods: Api<Pod> = Api::namespaced(kit.client.clone(), &kit.namespace);
    let uid = kit
        .get("apps/v1", "ReplicaSet", "shop-prod-v001")
        .await
        .unwrap()["metadata"]["uid"]
        .clone();
    let victim = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| serde_json::to_value(p).unwrap())
        .find(|p| p["metadata"]["ownerReferences"][0]["uid"] == uid)
        .unwrap();
    pods.delete(
        victim["metadata"]["name"].as_str().unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let mut crashing = false;
    for _ in 0..200 {
        let listed = pods.list(&ListParams::default()).await.unwrap();
        crashing = serde_json::to_string(&listed.items)
            .unwrap()
            .contains("CrashLoopBackOff");
        if crashing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(crashing, "the replacement pod never crash-looped");
    let refused = kit
        .run(vec![on_group(
            "promote",
            "enableServerGroup",
            "shop-prod-v001",
            json!({}),
        )])
        .await;
    let why = support::error(&refused, "promote");
    assert!(
        why.contains("cannot be promoted from its preview") && why.contains("CrashLoopBackOff"),
        "{why}"
    );
    assert_eq!(
        fronted_by(&kit, "shop-prod-v000").await,
        [web.clone(), web.clone(), web.clone()]
    );
    assert_eq!(fronted_by(&kit, "shop-prod-v001").await[0], preview);

    // Once every pod is Ready the generic enable promotes it: active on, preview off,
    // the older version disabled (kept for a rollback).
    kit.behave(support::Behaviour::Ready);
    for _ in 0..200 {
        let live = kit
            .get("apps/v1", "ReplicaSet", "shop-prod-v001")
            .await
            .unwrap();
        if live["status"]["readyReplicas"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let promoted = kit
        .run(vec![on_group(
            "promote",
            "enableServerGroup",
            "shop-prod-v001",
            json!({}),
        )])
        .await;
    succeeded(&promoted);
    assert_eq!(
        fronted_by(&kit, "shop-prod-v001").await,
        [web.clone(), web.clone(), web]
    );
    assert_eq!(fronted_by(&kit, "shop-prod-v000").await, [None, None, None]);
    let v0 = kit
        .get("apps/v1", "ReplicaSet", "shop-prod-v000")
        .await
        .unwrap();
    assert_eq!(v0["spec"]["replicas"], 2);
    view_until(
        &provider,
        "shop-prod-v000",
        "the older version disabled",
        |g| g.is_some_and(|g| g.disabled),
    )
    .await
    .unwrap();
    view_until(
        &provider,
        "shop-prod-v001",
        "the promoted version enabled",
        |g| g.is_some_and(|g| !g.disabled),
    )
    .await
    .unwrap();

    // The older version scaled to 0 (as a scale-down delay does): enabling it would
    // put the Services on no pod, so the generic enable refuses and says what to do.
    let serving = fronted_by(&kit, "shop-prod-v001").await;
    let replica_sets: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        Api::namespaced(kit.client.clone(), &kit.namespace);
    replica_sets
        .patch(
            "shop-prod-v000",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .unwrap();
    let refused = kit
        .run(vec![on_group(
            "roll back",
            "enableServerGroup",
            "shop-prod-v000",
            json!({}),
        )])
        .await;
    let why = support::error(&refused, "roll back");
    assert!(
        why.contains("shop-prod-v000") && why.contains("scale it up first"),
        "{why}"
    );
    assert_eq!(fronted_by(&kit, "shop-prod-v001").await, serving);
    assert_eq!(fronted_by(&kit, "shop-prod-v000").await[0], None);
    kit.finish().await;
}
