//! SIGKILL of a real `gennaker server` during a red/black `deployManifest` on a real
//! Kubernetes API server (../shared/k8s, or the one `GENNAKER_TEST_KUBECONFIG`
//! names; skipped with one line saying so when there is none): after the restarts,
//! exactly one new version, no pod or ReplicaSet left behind, the Service's endpoints
//! on the new version and the old one disabled. The test plays the kubelet (pods
//! bound to a fake Node and marked Ready through pods/status).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gennaker_kubernetes::{AccountSettings, KubernetesAccounts, KubernetesSettings};
use gennaker_store::testing::{TestBackend, TestDatabase};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use support::Server;
use support::api::Api as GennakerApi;
use tokio_util::sync::CancellationToken;

const APP: &str = "k8scrash";
const NODE: &str = "fake-node";
/// SIGKILLs during the deploy (bounded: the test must stay short).
const KILLS: usize = 4;

/// The admin kubeconfig of the test cluster, or `None` (after saying how to get one).
fn kubeconfig() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GENNAKER_TEST_KUBECONFIG") {
        return Some(PathBuf::from(path));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("../shared/k8s/start-cluster");
    if script.is_file() {
        let dir = root.join("target/k8s-test-cluster");
        let out = std::process::Command::new(&script)
            .arg(&dir)
            .output()
            .unwrap();
        if out.status.success() {
            return Some(dir.join("kubeconfig"));
        }
        eprintln!(
            "could not start the test cluster: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!(
        "skipped: no Kubernetes API server; set GENNAKER_TEST_KUBECONFIG to an admin kubeconfig (scripts/test.sh starts ../shared/k8s and sets it)"
    );
    None
}

fn pipeline(name: &str, image: &str) -> Value {
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"frontedBy": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}});
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]}}}});
    json!({"name": name, "application": APP, "stages": [
        {"refId": "1", "name": "deploy", "type": "deployManifest", "account": "k8s",
         "cloudProvider": "kubernetes", "source": "text", "manifests": [service, rs],
         "trafficManagement": {"enabled": true, "options": {
             "enableTraffic": true, "services": ["service web"], "strategy": "redblack"}}}
    ]})
}

/// Binds pending pods to the fake Node, marks them Running and Ready, and finishes
/// deletions, until `stop`.
async fn play_kubelet(client: kube::Client, namespace: String, stop: CancellationToken) {
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    while !stop.is_cancelled() {
        for pod in pods
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let name = pod.metadata.name.clone().unwrap_or_default();
            if pod.metadata.deletion_timestamp.is_some() {
                let _ = pods
                    .delete(&name, &DeleteParams::default().grace_period(0))
                    .await;
                continue;
            }
            let spec = pod.spec.clone().unwrap_or_default();
            if spec.node_name.is_none() {
                let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}});
                let _ = pods
                    .create_subresource::<Value, Value>(
                        "binding",
                        &name,
                        &PostParams::default(),
                        &binding,
                    )
                    .await;
            }
            if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                continue;
            }
            let now = jiff::Timestamp::now().to_string();
            let containers: Vec<Value> = spec.containers.iter().map(|c| json!({
                "name": c.name, "image": c.image, "imageID": "", "containerID": "containerd://fake",
                "ready": true, "started": true, "restartCount": 0, "state": {"running": {"startedAt": now}}})).collect();
            let status = json!({"status": {"phase": "Running", "hostIP": "192.0.2.10",
                "podIP": "10.244.1.7", "startTime": now,
                "conditions": [{"type": "Initialized", "status": "True"},
                               {"type": "PodScheduled", "status": "True"},
                               {"type": "ContainersReady", "status": "True"},
                               {"type": "Ready", "status": "True"}],
                "containerStatuses": containers}});
            let _ = pods
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// A namespace of its own, once its `default` ServiceAccount exists, and the fake Node.
async fn namespace(client: &kube::Client) -> String {
    let name = format!("{APP}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let nodes: Api<Node> = Api::all(client.clone());
    let now = jiff::Timestamp::now().to_string();
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux"}},
        "status": {"capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
            "addresses": [{"type": "InternalIP", "address": "192.0.2.10"}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
    // A 409: another test registered it.
    let _ = nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(node).unwrap(),
        )
        .await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    for _ in 0..200 {
        if accounts.get_opt("default").await.unwrap().is_some() {
            return name;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("namespace {name} got no default ServiceAccount");
}

/// The names of the pods each ReplicaSet owns (and `""` for pods owned by none).
async fn pods_by_owner(client: &kube::Client, ns: &str) -> Vec<(String, String)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut found: Vec<(String, String)> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let owner = p
                .metadata
                .owner_references
                .iter()
                .flatten()
                .map(|o| o.name.clone())
                .next()
                .unwrap_or_default();
            (owner, p.metadata.name.unwrap_or_default())
        })
        .collect();
    found.sort();
    found
}

async fn ready_endpoints(client: &kube::Client, ns: &str) -> BTreeSet<String> {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    api.get_opt("web")
        .await
        .unwrap()
        .into_iter()
        .flat_map(|e| e.subsets.unwrap_or_default())
        .flat_map(|s| s.addresses.unwrap_or_default())
        .filter_map(|a| a.target_ref.and_then(|r| r.name))
        .collect()
}

async fn start(api: &GennakerApi, pipeline: &str) -> String {
    let path = format!("/api/v1/applications/{APP}/pipelines/{pipeline}/executions");
    api.post(&path, json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_red_black_deploy_manifest_leaves_one_new_version_and_moves_traffic() {
    let Some(kubeconfig) = kubeconfig() else {
        return;
    };
    let seed: u64 = std::env::var("GENNAKER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("k8s crash test seed: {seed} (set GENNAKER_CRASH_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let admin = KubernetesAccounts::connect(&KubernetesSettings {
        accounts: vec![AccountSettings {
            name: "admin".into(),
            kubeconfig: Some(kubeconfig.clone()),
            ..AccountSettings::default()
        }],
    })
    .await
    .unwrap();
    let client = admin.get("admin").unwrap().client().clone();
    let ns = namespace(&client).await;
    let kubelet = CancellationToken::new();
    tokio::spawn(play_kubelet(client.clone(), ns.clone(), kubelet.clone()));

    let data_dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create(TestBackend::Sqlite).await.unwrap();
    let config = data_dir.path().join("k8s.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[[kubernetes.accounts]]\nname = \"k8s\"\nkubeconfig = {:?}\nnamespaces = [{ns:?}]\n",
            support::test_host_policy(),
            kubeconfig.display().to_string()
        ),
    )
    .unwrap();
    let mut server = Server::start_with(
        data_dir.path().to_path_buf(),
        db.url.clone(),
        vec!["--config".into(), config.display().to_string()],
    );
    let api = GennakerApi::new(&server);
    server.ready(&api.http).await;
    api.post(
        "/api/v1/applications",
        json!({"name": APP, "email": "t@example.com"}),
    )
    .await;
    for (name, image) in [("v0", "nginx:1.25"), ("v1", "nginx:1.26")] {
        let mut config = pipeline(name, image);
        config["stages"][0]["namespaceOverride"] = json!(ns);
        api.post(&format!("/api/v1/applications/{APP}/pipelines"), config)
            .await;
    }
    let first = start(&api, "v0").await;
    let first = api.wait_end(&first).await;
    assert_eq!(first["status"], "SUCCEEDED", "{first:#}");

    let id = start(&api, "v1").await;
    let mut kills = 0;
    let began = Instant::now();
    while kills < KILLS {
        // The first kill early (the apply itself), the others anywhere after it.
        let pause = if kills == 0 { 0..150 } else { 100..900 };
        tokio::time::sleep(Duration::from_millis(rng.random_range(pause))).await;
        let execution = api.get(&format!("/api/v1/executions/{id}")).await;
        if execution["status"] != "RUNNING" && execution["status"] != "NOT_STARTED" {
            break;
        }
        let task = execution["stages"][0]["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["status"] == "RUNNING")
            .and_then(|t| t["name"].as_str())
            .unwrap_or("between tasks")
            .to_owned();
        server.kill();
        kills += 1;
        println!("kill {kills} at {:?}, during {task}", began.elapsed());
        server.spawn();
        server.ready(&api.http).await;
    }
    let done = api.wait_end(&id).await;
    assert_eq!(
        done["status"],
        "SUCCEEDED",
        "{done:#}\nlog:\n{}",
        server.log()
    );
    println!("{kills} kills");
    assert!(kills > 0, "the server was never killed during the deploy");

    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let mut names: Vec<String> = sets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .filter_map(|r| r.metadata.name)
        .collect();
    names.sort();
    assert_eq!(names, ["web-v000", "web-v001"], "exactly one new version");
    // Nothing orphaned: every pod belongs to a version, two each (bounded wait for
    // the ReplicaSet controller to settle).
    let mut pods = Vec::new();
    for _ in 0..100 {
        pods = pods_by_owner(&client, &ns).await;
        if pods.len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let owners: Vec<&str> = pods.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(
        owners,
        ["web-v000", "web-v000", "web-v001", "web-v001"],
        "{pods:?}"
    );
    let new_pods: BTreeSet<String> = pods
        .iter()
        .filter(|(o, _)| o == "web-v001")
        .map(|(_, p)| p.clone())
        .collect();
    let mut serving = BTreeSet::new();
    for _ in 0..300 {
        serving = ready_endpoints(&client, &ns).await;
        if serving == new_pods {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(serving, new_pods, "the Service ends on the new version");
    let old = sets.get("web-v000").await.unwrap();
    let labels = old
        .spec
        .and_then(|s| s.template)
        .and_then(|t| t.metadata)
        .and_then(|m| m.labels)
        .unwrap_or_default();
    assert!(
        !labels.contains_key("frontedBy"),
        "the old version is disabled"
    );

    kubelet.cancel();
    drop(server);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(&ns, &DeleteParams::background()).await;
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let _ = pods
        .delete_collection(
            &DeleteParams::default().grace_period(0),
            &ListParams::default(),
        )
        .await;
    drop(db);
}
