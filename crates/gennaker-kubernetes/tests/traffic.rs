//! Traffic, enable/disable, dynamic targets and artifact binding on a real API server
//! (see `support`): skipped, with one line saying how to point them at a cluster,
//! when there is none. Traffic is what the cluster's own endpoints controller makes
//! of the pods' labels and readiness: the Service's Endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use gennaker_engine::testing::stage;
use gennaker_engine::{Execution, ExecutionStatus, RunRequest};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Endpoints, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::{Behaviour, Kit, error, succeeded};

/// The label the Service selects on: one the workload does not set itself.
const FRONTED_BY: &str = "frontedBy";

fn service() -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {FRONTED_BY: "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
}

fn replica_set(image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web"},
        "spec": {"replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]}}}
    })
}

fn red_black(name: &str, strategy: &str, manifests: Vec<Value>) -> Value {
    json!({"name": name, "type": "deployManifest", "source": "text", "manifests": manifests,
           "moniker": {"app": "shop"},
           "trafficManagement": {"enabled": true, "options": {
               "enableTraffic": true, "services": ["service web"], "strategy": strategy}}})
}

/// The pods a ReplicaSet owns, by name.
async fn pods_of(kit: &Kit, rs: &str) -> BTreeSet<String> {
    let pods: Api<Pod> = Api::namespaced(kit.client.clone(), &kit.namespace);
    pods.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.name == rs)
        })
        .filter_map(|p| p.metadata.name)
        .collect()
}

/// The Service's endpoints: (ready pods, not-ready pods).
async fn endpoints(kit: &Kit, service: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let api: Api<Endpoints> = Api::namespaced(kit.client.clone(), &kit.namespace);
    let Some(found) = api.get_opt(service).await.unwrap() else {
        return Default::default();
    };
    let names = |addresses: &Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
        addresses
            .iter()
            .flatten()
            .filter_map(|a| a.target_ref.as_ref().and_then(|r| r.name.clone()))
            .collect::<Vec<_>>()
    };
    let mut ready = BTreeSet::new();
    let mut not_ready = BTreeSet::new();
    for subset in found.subsets.iter().flatten() {
        ready.extend(names(&subset.addresses));
        not_ready.extend(names(&subset.not_ready_addresses));
    }
    (ready, not_ready)
}

/// Waits (bounded, real time: the endpoints controller works on its own) until the
/// Service's endpoints are `ready` and `not_ready`; returns what they are last.
async fn endpoints_become(
    kit: &Kit,
    service: &str,
    ready: &BTreeSet<String>,
    not_ready: &BTreeSet<String>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut seen = Default::default();
    for _ in 0..300 {
        seen = endpoints(kit, service).await;
        if &seen.0 == ready && &seen.1 == not_ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

fn template_label(rs: &Value) -> Option<&str> {
    rs.pointer(&format!("/spec/template/metadata/labels/{FRONTED_BY}"))
        .and_then(Value::as_str)
}

async fn pod_labelled(kit: &Kit, pod: &str) -> bool {
    let pods: Api<Pod> = Api::namespaced(kit.client.clone(), &kit.namespace);
    let pod = pods.get(pod).await.unwrap();
    pod.metadata
        .labels
        .unwrap_or_default()
        .contains_key(FRONTED_BY)
}

/// Starts a run of `stages` without driving it.
async fn start(kit: &Kit, stages: Vec<Value>) -> Execution {
    kit.h.run("k8s", kit.pipeline(stages)).await
}

async fn finish(kit: &Kit, run: &Execution) -> Execution {
    kit.h
        .drive_until(
            &run.id,
            Duration::from_secs(2),
            "the execution to end",
            |e| e.status.is_complete(),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_black_moves_traffic_only_when_the_new_pods_are_ready_then_disables_the_old_version() {
    let Some(kit) = Kit::new("redblack", vec![]).await else {
        return;
    };
    let first = kit
        .run(vec![red_black(
            "v0",
            "redblack",
            vec![service(), replica_set("nginx:1.25")],
        )])
        .await;
    succeeded(&first);
    let v0_pods = pods_of(&kit, "web-v000").await;
    assert_eq!(v0_pods.len(), 2);
    let (ready, _) = endpoints_become(&kit, "web", &v0_pods, &BTreeSet::new()).await;
    assert_eq!(ready, v0_pods, "the first version serves once Ready");
    let live = kit.get("v1", "Service", "web").await.unwrap();
    assert_eq!(live["spec"]["selector"], json!({FRONTED_BY: "web"}));

    // The new version's pods stay Pending: the deploy waits, traffic stays put.
    kit.behave(Behaviour::Nothing);
    let run = start(
        &kit,
        vec![red_black(
            "v1",
            "redblack",
            vec![service(), replica_set("nginx:1.26")],
        )],
    )
    .await;
    let waiting = kit
        .h
        .drive_until(
            &run.id,
            Duration::from_secs(2),
            "the deploy to wait for the new pods",
            |e| {
                e.stages
                    .iter()
                    .any(|s| s.name == "v1" && s.context.contains_key("waitingFor"))
            },
        )
        .await;
    assert_eq!(waiting.status, ExecutionStatus::Running);
    let mut v1_pods = BTreeSet::new();
    for _ in 0..100 {
        v1_pods = pods_of(&kit, "web-v001").await;
        if v1_pods.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(v1_pods.len(), 2);
    let v1 = kit.get("apps/v1", "ReplicaSet", "web-v001").await.unwrap();
    assert_eq!(
        template_label(&v1),
        Some("web"),
        "the new version is labelled"
    );
    let (ready, _) = endpoints_become(&kit, "web", &v0_pods, &BTreeSet::new()).await;
    assert_eq!(ready, v0_pods, "only the old, Ready pods serve");
    let v0 = kit.get("apps/v1", "ReplicaSet", "web-v000").await.unwrap();
    assert_eq!(
        template_label(&v0),
        Some("web"),
        "the old version is not disabled before the new one is ready"
    );

    // The kubelet marks them Ready: traffic moves, then the old version is disabled.
    kit.behave(Behaviour::Ready);
    let done = finish(&kit, &run).await;
    succeeded(&done);
    let (ready, not_ready) = endpoints_become(&kit, "web", &v1_pods, &BTreeSet::new()).await;
    assert_eq!(ready, v1_pods);
    assert!(not_ready.is_empty(), "{not_ready:?}");
    let v0 = kit.get("apps/v1", "ReplicaSet", "web-v000").await.unwrap();
    assert_eq!(template_label(&v0), None, "the old version is disabled");
    assert_eq!(
        v0["spec"]["replicas"], 2,
        "red/black keeps it for a rollback"
    );
    for pod in &v0_pods {
        assert!(!pod_labelled(&kit, pod).await, "{pod} still has the label");
    }
    let outputs = &stage(&done, "v1").outputs;
    assert_eq!(outputs["disabledManifests"], json!(["replicaSet web-v000"]));
    assert_eq!(outputs["deletedManifests"], json!([]));

    // Rollback moves traffic first: the old version is enabled, then the new one
    // disabled; both found by dynamic targets, resolved once and recorded.
    let dynamic = |name: &str, kind: &str, criteria: &str| {
        json!({"name": name, "type": kind, "cluster": "replicaSet web", "criteria": criteria,
               "kind": "replicaSet", "app": "shop"})
    };
    let rollback = kit
        .run(vec![
            dynamic("enable old", "enableManifest", "second_newest"),
            dynamic("disable new", "disableManifest", "newest"),
        ])
        .await;
    succeeded(&rollback);
    assert_eq!(
        stage(&rollback, "enable old").context["resolvedManifestName"],
        "replicaSet web-v000"
    );
    assert_eq!(
        stage(&rollback, "disable new").context["resolvedManifestName"],
        "replicaSet web-v001"
    );
    let (ready, _) = endpoints_become(&kit, "web", &v0_pods, &BTreeSet::new()).await;
    assert_eq!(ready, v0_pods, "traffic is back on the old version");
    let v1 = kit.get("apps/v1", "ReplicaSet", "web-v001").await.unwrap();
    assert_eq!(template_label(&v1), None);
    kit.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn highlander_deletes_the_older_versions_and_bad_selectors_are_refused() {
    let Some(kit) = Kit::new("highlander", vec![]).await else {
        return;
    };
    let first = kit
        .run(vec![red_black(
            "v0",
            "highlander",
            vec![service(), replica_set("nginx:1.25")],
        )])
        .await;
    succeeded(&first);
    let second = kit
        .run(vec![red_black(
            "v1",
            "highlander",
            vec![service(), replica_set("nginx:1.26")],
        )])
        .await;
    succeeded(&second);
    assert_eq!(kit.names("apps/v1", "ReplicaSet").await, ["web-v001"]);
    let v1_pods = pods_of(&kit, "web-v001").await;
    let (ready, _) = endpoints_become(&kit, "web", &v1_pods, &BTreeSet::new()).await;
    assert_eq!(ready, v1_pods);
    assert_eq!(
        stage(&second, "v1").outputs["deletedManifests"],
        json!(["replicaSet web-v000"])
    );

    // A Service selecting on the workload's own label cannot be moved by labels.
    let mut own = service();
    own["metadata"]["name"] = json!("own");
    own["spec"]["selector"] = json!({"app": "web"});
    let mut stage_json = red_black("bad", "redblack", vec![own, replica_set("nginx:1.27")]);
    stage_json["trafficManagement"]["options"]["services"] = json!(["service own"]);
    let bad = kit.run(vec![stage_json]).await;
    assert_eq!(bad.status, ExecutionStatus::Terminal);
    let why = error(&bad, "bad");
    assert!(why.contains("no label keys in common"), "{why}");
    assert!(why.contains("'app'"), "{why}");
    assert_eq!(
        kit.names("apps/v1", "ReplicaSet").await,
        ["web-v001"],
        "nothing was deployed"
    );

    // Traffic management moves ReplicaSets; a Deployment rolls its own pods.
    let mut deployment = replica_set("nginx:1.27");
    deployment["kind"] = json!("Deployment");
    let only = kit
        .run(vec![red_black("deployment", "redblack", vec![deployment])])
        .await;
    assert_eq!(only.status, ExecutionStatus::Terminal);
    let why = error(&only, "deployment");
    assert!(why.contains("applies to ReplicaSets"), "{why}");
    assert!(why.contains("trafficManagement"), "{why}");
    kit.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_image_artifacts_replace_images_and_are_found_again_in_the_workload() {
    let Some(kit) = Kit::new("artifacts", vec![]).await else {
        return;
    };
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config"},
                        "data": {"greeting": "hello"}});
    let mut rs = replica_set("registry.example.com/shop/web:latest");
    rs["spec"]["template"]["spec"]["containers"][0]["envFrom"] =
        json!([{"configMapRef": {"name": "web-config"}}]);
    let mut deploy = json!({"name": "deploy", "type": "deployManifest", "source": "text",
        "manifests": [config, rs], "moniker": {"app": "shop"}, "requiredArtifactIds": ["image"]});
    let find = json!({"name": "find", "type": "findArtifactsFromResource",
                      "manifestName": "replicaSet web-v000"});
    let mut pipeline = kit.pipeline(vec![deploy.clone(), find]);
    pipeline["expectedArtifacts"] = json!([{"id": "image", "displayName": "web image",
        "matchArtifact": {"type": "docker/image", "name": "registry.example.com/shop/web"}}]);
    let built = json!({"type": "docker/image", "name": "registry.example.com/shop/web",
                       "reference": "registry.example.com/shop/web:1.4.2", "version": "1.4.2"});
    let request = RunRequest {
        artifacts: vec![built.clone()],
        ..RunRequest::default()
    };
    let run = kit.h.run_with("k8s", pipeline, request).await;
    let run = finish(&kit, &run).await;
    succeeded(&run);
    let live = kit.get("apps/v1", "ReplicaSet", "web-v000").await.unwrap();
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/shop/web:1.4.2"
    );
    assert_eq!(
        stage(&run, "deploy").outputs["boundArtifacts"][0]["reference"],
        "registry.example.com/shop/web:1.4.2"
    );
    let found = stage(&run, "find").outputs["artifacts"]
        .as_array()
        .unwrap()
        .clone();
    assert!(found.contains(&json!({"type": "docker/image", "name": "registry.example.com/shop/web",
        "reference": "registry.example.com/shop/web:1.4.2", "version": "1.4.2", "customKind": false})),
        "{found:?}");
    assert!(
        found.iter().any(|a| a["type"] == "kubernetes/configMap"
            && a["name"] == "web-config"
            && a["version"] == "v000"
            && a["reference"] == "web-config-v000"),
        "{found:?}"
    );

    // A required artifact that binds nothing fails the deploy before anything is applied.
    deploy["name"] = json!("unbound");
    deploy["manifests"][1]["metadata"]["name"] = json!("api");
    deploy
        .as_object_mut()
        .unwrap()
        .remove("requiredArtifactIds");
    deploy["requiredArtifacts"] = json!([{"artifact": {"type": "docker/image",
        "name": "registry.example.com/shop/other", "reference": "registry.example.com/shop/other:2"}}]);
    let unbound = kit.run(vec![deploy]).await;
    assert_eq!(unbound.status, ExecutionStatus::Terminal);
    let why = error(&unbound, "unbound");
    assert!(why.contains("registry.example.com/shop/other"), "{why}");
    assert!(why.contains("bound nothing"), "{why}");
    assert_eq!(kit.names("apps/v1", "ReplicaSet").await, ["web-v000"]);
    kit.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_red_black_deploy_repeated_at_every_step_or_crashing_after_every_commit_moves_traffic_once()
 {
    use gennaker_engine::testing::{Fault, FaultRun, TestBackend};
    for fault in [Fault::RepeatEveryStep, Fault::CrashAfterEveryCommit] {
        let Some(kit) = Kit::new("rbfaults", vec![]).await else {
            return;
        };
        let first = kit
            .run(vec![red_black(
                "v0",
                "redblack",
                vec![service(), replica_set("nginx:1.25")],
            )])
            .await;
        succeeded(&first);
        let pipeline = kit.pipeline(vec![
            red_black("v1", "redblack", vec![service(), replica_set("nginx:1.26")]),
            json!({"name": "find", "type": "findArtifactsFromResource",
                   "cluster": "replicaSet web", "criteria": "newest", "app": "shop"}),
        ]);
        let accounts = kit.accounts.clone();
        let outcome = FaultRun::new(TestBackend::Sqlite, fault, pipeline)
            .with_stages(move |registry| gennaker_kubernetes::register(registry, accounts.clone()))
            .clock_step(Duration::from_secs(1))
            .run()
            .await;
        outcome.assert_succeeded();
        println!(
            "{fault:?}: {} repeated steps, {} restarts",
            outcome.repeated, outcome.restarts
        );
        assert_eq!(
            stage(&outcome.execution, "find").outputs["artifacts"][0]["reference"],
            "nginx:1.26",
            "{fault:?}"
        );
        assert_eq!(
            kit.names("apps/v1", "ReplicaSet").await,
            ["web-v000", "web-v001"],
            "{fault:?}: exactly one new version"
        );
        let v1_pods = pods_of(&kit, "web-v001").await;
        assert_eq!(v1_pods.len(), 2, "{fault:?}");
        let (ready, not_ready) = endpoints_become(&kit, "web", &v1_pods, &BTreeSet::new()).await;
        assert_eq!(
            ready, v1_pods,
            "{fault:?}: the Service ends on the new version"
        );
        assert!(not_ready.is_empty(), "{fault:?}: {not_ready:?}");
        let v0 = kit.get("apps/v1", "ReplicaSet", "web-v000").await.unwrap();
        assert_eq!(template_label(&v0), None, "{fault:?}");
        kit.finish().await;
    }
}

/// The preview Service: same label key as the active one, another value, so a pod is
/// behind one or the other.
fn preview_service() -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-preview"},
           "spec": {"selector": {FRONTED_BY: "web-preview"}, "ports": [{"port": 80, "targetPort": 8080}]}})
}

/// A blue/green deploy with the preview Service: dark on the active `web` unless
/// `enable_traffic` (automatic promotion).
fn blue_green(name: &str, image: &str, enable_traffic: bool) -> Value {
    let mut stage = red_black(
        name,
        "bluegreen",
        vec![service(), preview_service(), replica_set(image)],
    );
    stage["trafficManagement"]["options"]["enableTraffic"] = json!(enable_traffic);
    stage["trafficManagement"]["options"]["previewServices"] = json!(["service web-preview"]);
    stage
}

fn newest(name: &str, stage_type: &str, criteria: &str) -> Value {
    json!({"name": name, "type": stage_type, "cluster": "replicaSet web", "criteria": criteria,
           "kind": "replicaSet", "app": "shop"})
}

async fn pods_labelled(kit: &Kit, pods: &BTreeSet<String>) -> Vec<Option<String>> {
    let api: Api<Pod> = Api::namespaced(kit.client.clone(), &kit.namespace);
    let mut labels = Vec::new();
    for pod in pods {
        let pod = api.get(pod).await.unwrap();
        labels.push(pod.metadata.labels.unwrap_or_default().remove(FRONTED_BY));
    }
    labels
}

/// Waits (bounded, real time) until the controller counts `ready` Ready pods of `rs`.
async fn ready_replicas_become(kit: &Kit, rs: &str, ready: i64) {
    for _ in 0..200 {
        let live = kit.get("apps/v1", "ReplicaSet", rs).await.unwrap();
        if live["status"]["readyReplicas"].as_i64().unwrap_or(0) == ready {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{rs} never had {ready} Ready pods");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_with_a_preview_serves_the_new_version_in_the_preview_until_it_is_promoted() {
    let Some(kit) = Kit::new("bluegreen", vec![]).await else {
        return;
    };
    let none = BTreeSet::new();
    // Without a preview, blue/green is red/black, as in Spinnaker.
    let first = kit
        .run(vec![red_black(
            "v0",
            "bluegreen",
            vec![service(), preview_service(), replica_set("nginx:1.25")],
        )])
        .await;
    succeeded(&first);
    let v0_pods = pods_of(&kit, "web-v000").await;
    assert_eq!(v0_pods.len(), 2);
    let (ready, _) = endpoints_become(&kit, "web", &v0_pods, &none).await;
    assert_eq!(ready, v0_pods);

    // The new version joins only the preview; the active Service keeps the old one.
    let second = kit.run(vec![blue_green("v1", "nginx:1.26", false)]).await;
    succeeded(&second);
    let v1_pods = pods_of(&kit, "web-v001").await;
    assert_eq!(v1_pods.len(), 2);
    let (ready, _) = endpoints_become(&kit, "web-preview", &v1_pods, &none).await;
    assert_eq!(ready, v1_pods, "the preview serves the new version");
    let (ready, _) = endpoints_become(&kit, "web", &v0_pods, &none).await;
    assert_eq!(
        ready, v0_pods,
        "the active Service still serves the old one"
    );
    let v1 = kit.get("apps/v1", "ReplicaSet", "web-v001").await.unwrap();
    assert_eq!(template_label(&v1), Some("web-preview"));
    assert_eq!(
        v1["metadata"]["annotations"]["traffic.gennaker.io/preview-load-balancers"],
        r#"["service web-preview"]"#
    );
    assert_eq!(
        v1["metadata"]["annotations"]["traffic.spinnaker.io/load-balancers"],
        r#"["service web"]"#
    );
    let v0 = kit.get("apps/v1", "ReplicaSet", "web-v000").await.unwrap();
    assert_eq!(template_label(&v0), Some("web"));
    for name in ["web", "web-preview"] {
        let live = kit.get("v1", "Service", name).await.unwrap();
        assert_eq!(
            live["spec"]["selector"],
            json!({FRONTED_BY: name}),
            "Services never change"
        );
    }
    assert_eq!(stage(&second, "v1").outputs["disabledManifests"], json!([]));

    // Promotion waits for every new pod to be Ready before the active Service moves.
    let flaky = v1_pods.iter().next().unwrap().clone();
    support::set_ready(&kit.client, &kit.namespace, &flaky, false).await;
    ready_replicas_become(&kit, "web-v001", 1).await;
    let run = start(&kit, vec![newest("promote", "enableManifest", "newest")]).await;
    let waiting = kit
        .h
        .drive_until(
            &run.id,
            Duration::from_secs(2),
            "the promotion to wait for the new pods",
            |e| {
                e.stages.iter().any(|s| {
                    s.name == "promote"
                        && s.context
                            .get("waitingFor")
                            .is_some_and(|w| w.to_string().contains("1 of 2 pods Ready"))
                })
            },
        )
        .await;
    assert_eq!(waiting.status, ExecutionStatus::Running);
    let (ready, _) = endpoints_become(&kit, "web", &v0_pods, &none).await;
    assert_eq!(ready, v0_pods, "traffic stays on the old version meanwhile");
    let v1 = kit.get("apps/v1", "ReplicaSet", "web-v001").await.unwrap();
    assert_eq!(template_label(&v1), Some("web-preview"));

    support::set_ready(&kit.client, &kit.namespace, &flaky, true).await;
    let done = finish(&kit, &run).await;
    succeeded(&done);
    let (ready, not_ready) = endpoints_become(&kit, "web", &v1_pods, &none).await;
    assert_eq!(
        ready, v1_pods,
        "the active Service moved to the new version"
    );
    assert!(not_ready.is_empty(), "{not_ready:?}");
    let (ready, _) = endpoints_become(&kit, "web-preview", &none, &none).await;
    assert!(ready.is_empty(), "the promoted version left the preview");
    let v0 = kit.get("apps/v1", "ReplicaSet", "web-v000").await.unwrap();
    assert_eq!(template_label(&v0), None, "the old version is disabled");
    assert_eq!(v0["spec"]["replicas"], 2, "and kept for a rollback");
    assert_eq!(pods_labelled(&kit, &v0_pods).await, [None, None]);
    let outputs = &stage(&done, "promote").outputs;
    assert_eq!(outputs["promotedManifests"], json!(["replicaSet web-v001"]));
    assert_eq!(outputs["disabledManifests"], json!(["replicaSet web-v000"]));

    // Rollback moves traffic first: the old version is enabled (a plain enable: it
    // was not deployed with a preview), then the new one disabled.
    let rollback = kit
        .run(vec![
            newest("enable old", "enableManifest", "second_newest"),
            newest("disable new", "disableManifest", "newest"),
        ])
        .await;
    succeeded(&rollback);
    let (ready, _) = endpoints_become(&kit, "web", &v0_pods, &none).await;
    assert_eq!(ready, v0_pods, "traffic is back on the old version");
    let v1 = kit.get("apps/v1", "ReplicaSet", "web-v001").await.unwrap();
    assert_eq!(template_label(&v1), None);

    // With enableTraffic the promotion is automatic once the new version is stable.
    let auto = kit.run(vec![blue_green("v2", "nginx:1.27", true)]).await;
    succeeded(&auto);
    let v2_pods = pods_of(&kit, "web-v002").await;
    let (ready, _) = endpoints_become(&kit, "web", &v2_pods, &none).await;
    assert_eq!(ready, v2_pods);
    let (ready, _) = endpoints_become(&kit, "web-preview", &none, &none).await;
    assert!(ready.is_empty());
    let outputs = &stage(&auto, "v2").outputs;
    assert_eq!(outputs["promotedManifests"], json!(["replicaSet web-v002"]));
    assert_eq!(
        outputs["disabledManifests"],
        json!(["replicaSet web-v000", "replicaSet web-v001"])
    );
    kit.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blue_green_promotion_repeated_at_every_step_or_crashing_after_every_commit_moves_traffic_once()
 {
    use gennaker_engine::Judgment;
    use gennaker_engine::testing::{Fault, FaultRun, TestBackend};
    for fault in [Fault::RepeatEveryStep, Fault::CrashAfterEveryCommit] {
        let Some(kit) = Kit::new("bgfaults", vec![]).await else {
            return;
        };
        let none = BTreeSet::new();
        let first = kit
            .run(vec![red_black(
                "v0",
                "bluegreen",
                vec![service(), preview_service(), replica_set("nginx:1.25")],
            )])
            .await;
        succeeded(&first);
        let v0_pods = pods_of(&kit, "web-v000").await;
        // The older version is scaled down 30 s (engine clock) after the promotion.
        let mut deploy = blue_green("v1", "nginx:1.26", false);
        deploy["trafficManagement"]["options"]["scaleDownDelaySeconds"] = json!(30);
        let pipeline = kit.pipeline(vec![
            deploy,
            json!({"name": "judge", "type": "manualJudgment"}),
            newest("promote", "enableManifest", "newest"),
            newest("find", "findArtifactsFromResource", "newest"),
        ]);
        let accounts = kit.accounts.clone();
        let outcome = FaultRun::new(TestBackend::Sqlite, fault, pipeline)
            .with_stages(move |registry| gennaker_kubernetes::register(registry, accounts.clone()))
            .judging(
                "judge",
                Judgment {
                    judgment_status: "continue".into(),
                    judgment_input: None,
                },
            )
            .clock_step(Duration::from_secs(1))
            .run()
            .await;
        outcome.assert_succeeded();
        println!(
            "{fault:?}: {} repeated steps, {} restarts",
            outcome.repeated, outcome.restarts
        );
        assert_eq!(
            stage(&outcome.execution, "find").outputs["artifacts"][0]["reference"],
            "nginx:1.26",
            "{fault:?}"
        );
        let promoted = stage(&outcome.execution, "promote");
        assert_eq!(
            promoted.outputs["promotedManifests"],
            json!(["replicaSet web-v001"]),
            "{fault:?}"
        );
        assert_eq!(
            promoted.outputs["scaledDownManifests"],
            json!(["replicaSet web-v000"]),
            "{fault:?}"
        );
        let waited = promoted.end_time.unwrap() - promoted.start_time.unwrap();
        assert!(
            waited >= 30_000,
            "{fault:?}: scaled down after the delay ({waited} ms)"
        );
        assert_eq!(
            kit.names("apps/v1", "ReplicaSet").await,
            ["web-v000", "web-v001"],
            "{fault:?}: exactly one new version"
        );
        let v1_pods = pods_of(&kit, "web-v001").await;
        assert_eq!(v1_pods.len(), 2, "{fault:?}");
        let (ready, not_ready) = endpoints_become(&kit, "web", &v1_pods, &none).await;
        assert_eq!(ready, v1_pods, "{fault:?}: the active Service ends on v1");
        assert!(not_ready.is_empty(), "{fault:?}: {not_ready:?}");
        let (ready, _) = endpoints_become(&kit, "web-preview", &none, &none).await;
        assert!(
            ready.is_empty(),
            "{fault:?}: nothing is left in the preview"
        );
        let v1 = kit.get("apps/v1", "ReplicaSet", "web-v001").await.unwrap();
        assert_eq!(template_label(&v1), Some("web"), "{fault:?}");
        assert_eq!(
            v1["metadata"]["generation"], 2,
            "{fault:?}: the new version's template moved once (preview → active)"
        );
        assert_eq!(
            pods_labelled(&kit, &v1_pods).await,
            [Some("web".to_owned()), Some("web".to_owned())],
            "{fault:?}"
        );
        let v0 = kit.get("apps/v1", "ReplicaSet", "web-v000").await.unwrap();
        assert_eq!(template_label(&v0), None, "{fault:?}");
        assert_eq!(
            v0["metadata"]["generation"], 3,
            "{fault:?}: the old version was disabled once, then scaled down once"
        );
        assert_eq!(v0["spec"]["replicas"], 0, "{fault:?}");
        let v1 = kit.get("apps/v1", "ReplicaSet", "web-v001").await.unwrap();
        assert_eq!(
            v1["spec"]["replicas"], 2,
            "{fault:?}: the promoted one keeps its pods"
        );
        let mut left = v0_pods.clone();
        for _ in 0..200 {
            left = pods_of(&kit, "web-v000").await;
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            left.is_empty(),
            "{fault:?}: the old pods {v0_pods:?} are gone: {left:?}"
        );

        // A rollback after the scale-down (a plain enable: v0 had no preview) is
        // refused, saying to scale it up first; the new version keeps serving.
        let rollback = kit
            .run(vec![
                newest("enable old", "enableManifest", "second_newest"),
                newest("disable new", "disableManifest", "newest"),
            ])
            .await;
        assert_eq!(rollback.status, ExecutionStatus::Terminal, "{fault:?}");
        let why = error(&rollback, "enable old");
        assert!(
            why.contains("cannot enable replicaSet web-v000")
                && why.contains("scaled to 0")
                && why.contains("scale it up first"),
            "{fault:?}: {why}"
        );
        let (ready, _) = endpoints_become(&kit, "web", &v1_pods, &none).await;
        assert_eq!(ready, v1_pods, "{fault:?}: traffic stays on v1");
        let v1 = kit.get("apps/v1", "ReplicaSet", "web-v001").await.unwrap();
        assert_eq!(template_label(&v1), Some("web"), "{fault:?}: not disabled");
        kit.finish().await;
    }
}

/// Waits (bounded, real time) until `rs` owns a pod the played kubelet reports in
/// CrashLoopBackOff; returns its name.
async fn crash_looping_pod(kit: &Kit, rs: &str) -> String {
    let api: Api<Pod> = Api::namespaced(kit.client.clone(), &kit.namespace);
    for _ in 0..200 {
        for pod in pods_of(kit, rs).await {
            let live = serde_json::to_value(api.get(&pod).await.unwrap()).unwrap();
            if live.to_string().contains("CrashLoopBackOff") {
                return pod;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{rs} never had a crash-looping pod");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_of_a_crash_looping_version_fails_at_once_and_traffic_stays_put() {
    let Some(kit) = Kit::new("bgcrash", vec![]).await else {
        return;
    };
    let none = BTreeSet::new();
    succeeded(
        &kit.run(vec![red_black(
            "v0",
            "bluegreen",
            vec![service(), preview_service(), replica_set("nginx:1.25")],
        )])
        .await,
    );
    let v0_pods = pods_of(&kit, "web-v000").await;
    succeeded(&kit.run(vec![blue_green("v1", "nginx:1.26", false)]).await);
    // After the deploy was stable, one of the new pods starts crash-looping.
    kit.behave(Behaviour::CrashLoop);
    let api: Api<Pod> = Api::namespaced(kit.client.clone(), &kit.namespace);
    let replaced = pods_of(&kit, "web-v001").await.into_iter().next().unwrap();
    api.delete(&replaced, &Default::default()).await.unwrap();
    let crashing = crash_looping_pod(&kit, "web-v001").await;

    let run = start(&kit, vec![newest("promote", "enableManifest", "newest")]).await;
    let failed = finish(&kit, &run).await;
    assert_eq!(failed.status, ExecutionStatus::Terminal);
    let why = error(&failed, "promote");
    assert!(
        why.contains("cannot promote replicaSet web-v001")
            && why.contains(&crashing)
            && why.contains("CrashLoopBackOff")
            && why.contains("the active Services stay on the current version"),
        "{why}"
    );
    assert!(!why.contains("timed out"), "it fails at once: {why}");
    let (ready, _) = endpoints_become(&kit, "web", &v0_pods, &none).await;
    assert_eq!(
        ready, v0_pods,
        "the active Service still serves the old version"
    );
    let v1 = kit.get("apps/v1", "ReplicaSet", "web-v001").await.unwrap();
    assert_eq!(
        template_label(&v1),
        Some("web-preview"),
        "still in the preview"
    );
    let v0 = kit.get("apps/v1", "ReplicaSet", "web-v000").await.unwrap();
    assert_eq!(
        template_label(&v0),
        Some("web"),
        "the old version is not disabled"
    );
    assert_eq!(
        pods_labelled(&kit, &v0_pods).await,
        [Some("web".to_owned()), Some("web".to_owned())]
    );

    // Scaled to 0, "all its pods Ready" holds trivially: the promotion is refused
    // rather than moving the active Service to no pod.
    let replica_sets: Api<ReplicaSet> = Api::namespaced(kit.client.clone(), &kit.namespace);
    replica_sets
        .patch(
            "web-v001",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .unwrap();
    // Its pods gone (the crash-looping one with them), only the scale is left to
    // refuse it.
    let mut left = vec![crashing];
    for _ in 0..200 {
        left = (api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter())
        .filter_map(|p| p.metadata.name)
        .filter(|name| name.starts_with("web-v001-"))
        .collect();
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left.is_empty(), "the pods of web-v001 are gone: {left:?}");
    let run = start(&kit, vec![newest("promote", "enableManifest", "newest")]).await;
    let refused = finish(&kit, &run).await;
    assert_eq!(refused.status, ExecutionStatus::Terminal);
    let why = error(&refused, "promote");
    assert!(
        why.contains("cannot promote replicaSet web-v001")
            && why.contains("scaled to 0")
            && why.contains("scale it up first")
            && why.contains("the active Services stay on the current version"),
        "{why}"
    );
    let (ready, _) = endpoints_become(&kit, "web", &v0_pods, &none).await;
    assert_eq!(ready, v0_pods, "the active Service still serves v0");
    let v0 = kit.get("apps/v1", "ReplicaSet", "web-v000").await.unwrap();
    assert_eq!(template_label(&v0), Some("web"), "v0 is not disabled");
    kit.finish().await;
}
