//! The test kit: a real kube-apiserver (started once per machine through
//! `shared/k8s/start-cluster`, or the one `GENNAKER_TEST_KUBECONFIG` names), a
//! namespace per test, an engine running the manifest stages, and a kubelet played by
//! the test (pods bound to a fake Node and marked Ready, or crashing, through the
//! pods/status subresource).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub,
    missing_docs
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use gennaker_engine::testing::{Harness, TestBackend};
use gennaker_engine::{Execution, ExecutionStatus};
use gennaker_kubernetes::{
    AccountSettings, ArtifactAccounts, KubernetesAccounts, KubernetesSettings,
};
use gennaker_outbound::OutboundPolicy;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The fake Node pods are bound to.
pub const NODE: &str = "fake-node";

/// The cluster the tests share.
pub struct Cluster {
    /// Its admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The `KEY=VALUE` lines of the cluster's `env` file (API URL, CA file, the
    /// RBAC-less user's token), when there is one.
    pub env: HashMap<String, String>,
}

static CLUSTER: OnceLock<Option<Arc<Cluster>>> = OnceLock::new();

/// The shared cluster, or `None` (after one line saying how to get one) when there
/// is none.
pub fn cluster() -> Option<Arc<Cluster>> {
    CLUSTER.get_or_init(find_cluster).clone()
}

fn find_cluster() -> Option<Arc<Cluster>> {
    let kubeconfig = match std::env::var_os("GENNAKER_TEST_KUBECONFIG") {
        Some(path) => PathBuf::from(path),
        None => match start_shared() {
            Some(path) => path,
            None => {
                eprintln!(
                    "skipped: no Kubernetes API server; set GENNAKER_TEST_KUBECONFIG to an admin kubeconfig (scripts/test.sh starts ../shared/k8s and sets it)"
                );
                return None;
            }
        },
    };
    let env = kubeconfig
        .parent()
        .map(|dir| dir.join("env"))
        .and_then(|file| std::fs::read_to_string(file).ok())
        .map(|text| {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    Some(Arc::new(Cluster { kubeconfig, env }))
}

/// Starts (or reuses: the script is idempotent and serialised with flock, so every
/// nextest process may call it) the control plane of `../shared/k8s` in
/// `target/k8s-test-cluster`.
fn start_shared() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("../shared/k8s/start-cluster");
    if !script.is_file() {
        return None;
    }
    let dir = root.join("target/k8s-test-cluster");
    let out = std::process::Command::new(&script)
        .arg(&dir)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "could not start the test cluster: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    eprintln!(
        "using the test cluster in {} (stop it with ../shared/k8s/stop-cluster {0})",
        dir.display()
    );
    Some(dir.join("kubeconfig"))
}

impl Cluster {
    /// An admin client.
    pub async fn admin(&self) -> kube::Client {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap(),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        kube::Client::try_from(config).unwrap()
    }
}

/// One test's namespace, account and engine.
pub struct Kit {
    pub cluster: Arc<Cluster>,
    pub client: kube::Client,
    pub namespace: String,
    pub h: Harness,
    /// The accounts the engine acts through (`k8s`, limited to the namespace).
    pub accounts: KubernetesAccounts,
    kubelet: CancellationToken,
    /// What the played kubelet does with new pods.
    pub behaviour: Arc<Mutex<Behaviour>>,
}

/// What the played kubelet makes of the pods it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Running and Ready.
    Ready,
    /// A container waiting in CrashLoopBackOff.
    CrashLoop,
    /// Leave them Pending.
    Nothing,
}

impl Kit {
    /// A fresh namespace `prefix-<random>` with the kubelet playing, and an engine
    /// whose account `k8s` is limited to it (and whose `extra` accounts are added).
    pub async fn new(prefix: &str, extra: Vec<AccountSettings>) -> Option<Self> {
        Self::with_stages(prefix, extra, |_, _| {}).await
    }

    /// Like [`new`](Self::new), with the stages `stages` registers over the accounts
    /// (beside the manifest stages).
    pub async fn with_stages(
        prefix: &str,
        extra: Vec<AccountSettings>,
        stages: impl Fn(&mut gennaker_engine::StageRegistry, &KubernetesAccounts),
    ) -> Option<Self> {
        Self::build(
            prefix,
            extra,
            stages,
            OutboundPolicy::default(),
            ArtifactAccounts::default(),
        )
        .await
    }

    /// Like [`new`](Self::new), with the engine's outbound requests (webhooks,
    /// `http/file` artifacts) under `outbound` and manifest artifacts read through
    /// `artifacts`.
    pub async fn with_artifacts(
        prefix: &str,
        outbound: OutboundPolicy,
        artifacts: ArtifactAccounts,
    ) -> Option<Self> {
        Self::build(prefix, vec![], |_, _| {}, outbound, artifacts).await
    }

    async fn build(
        prefix: &str,
        extra: Vec<AccountSettings>,
        stages: impl Fn(&mut gennaker_engine::StageRegistry, &KubernetesAccounts),
        outbound: OutboundPolicy,
        artifacts: ArtifactAccounts,
    ) -> Option<Self> {
        let cluster = cluster()?;
        let client = cluster.admin().await;
        let namespace = format!("{prefix}-{}", &uuid_like()[..8]);
        fake_node(&client).await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap(),
            )
            .await
            .unwrap();
        wait_for_service_account(&client, &namespace).await;
        let mut accounts = vec![AccountSettings {
            name: "k8s".into(),
            kubeconfig: Some(cluster.kubeconfig.clone()),
            namespaces: vec![namespace.clone()],
            ..AccountSettings::default()
        }];
        accounts.extend(extra);
        let accounts = KubernetesAccounts::connect(&KubernetesSettings { accounts })
            .await
            .unwrap();
        let registered = accounts.clone();
        let h = Harness::with_outbound(TestBackend::Sqlite, outbound, move |registry| {
            gennaker_kubernetes::register_with_artifacts(
                registry,
                registered.clone(),
                artifacts.clone(),
            );
            stages(registry, &registered);
        })
        .await;
        let behaviour = Arc::new(Mutex::new(Behaviour::Ready));
        let kubelet = CancellationToken::new();
        tokio::spawn(play_kubelet(
            client.clone(),
            namespace.clone(),
            behaviour.clone(),
            kubelet.clone(),
        ));
        Some(Self {
            cluster,
            client,
            namespace,
            h,
            accounts,
            kubelet,
            behaviour,
        })
    }

    /// Sets what the played kubelet does from now on.
    pub fn behave(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    /// Runs stages (given `account`, `location` and, for deploys, `namespaceOverride`) one after another and drives the
    /// engine clock until the execution ends.
    pub async fn run(&self, stages: Vec<Value>) -> Execution {
        let run = self.h.run("k8s", self.pipeline(stages)).await;
        self.h
            .drive_until(
                &run.id,
                Duration::from_secs(2),
                "the execution to end",
                |e| e.status.is_complete(),
            )
            .await
    }

    /// A pipeline of these stages, one after another, each given `account`,
    /// `location` and, for deploys, `namespaceOverride`.
    pub fn pipeline(&self, stages: Vec<Value>) -> Value {
        let stages: Vec<Value> = stages
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                s["refId"] = json!((i + 1).to_string());
                if i > 0 {
                    s["requisiteStageRefIds"] = json!([i.to_string()]);
                }
                if s.get("account").is_none() {
                    s["account"] = json!("k8s");
                }
                s["cloudProvider"] = json!("kubernetes");
                if s["type"] == "deployManifest" && s.get("namespaceOverride").is_none() {
                    s["namespaceOverride"] = json!(self.namespace);
                }
                if s.get("location").is_none() {
                    s["location"] = json!(self.namespace);
                }
                s
            })
            .collect();
        json!({ "stages": stages })
    }

    /// A live object of the test namespace, as JSON.
    pub async fn get(&self, api_version: &str, kind: &str, name: &str) -> Option<Value> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        let (resource, _) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .unwrap();
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &resource);
        api.get_opt(name)
            .await
            .unwrap()
            .map(|o| serde_json::to_value(o).unwrap())
    }

    /// The names of the objects of a kind in the test namespace, sorted.
    pub async fn names(&self, api_version: &str, kind: &str) -> Vec<String> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        let (resource, _) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .unwrap();
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.namespace, &resource);
        let mut names: Vec<String> = api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|o| o.metadata.deletion_timestamp.is_none())
            .filter_map(|o| o.metadata.name)
            .collect();
        names.sort();
        names
    }

    /// Stops the kubelet and deletes the namespace (best effort).
    pub async fn finish(self) {
        self.kubelet.cancel();
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let _ = namespaces
            .delete(&self.namespace, &DeleteParams::background())
            .await;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let _ = pods
            .delete_collection(
                &DeleteParams::default().grace_period(0),
                &ListParams::default(),
            )
            .await;
        self.h.stop().await;
    }
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:016x}", nanos ^ u128::from(std::process::id()) << 32)
        .chars()
        .rev()
        .collect()
}

/// Registers the fake Node once (a 409 means another test did).
async fn fake_node(client: &kube::Client) {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = jiff::Timestamp::now().to_string();
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux"}},
        "status": {
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
            "addresses": [{"type": "InternalIP", "address": "192.0.2.10"}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}]}
    });
    let _ = nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(node).unwrap(),
        )
        .await;
}

/// Pods are refused in a new namespace until its `default` ServiceAccount exists.
async fn wait_for_service_account(client: &kube::Client, namespace: &str) {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    for _ in 0..200 {
        if accounts.get_opt("default").await.unwrap().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("namespace {namespace} got no default ServiceAccount");
}

/// The kubelet: binds pending pods to the fake Node, reports them as the behaviour
/// says, and finishes deletions.
async fn play_kubelet(
    client: kube::Client,
    namespace: String,
    behaviour: Arc<Mutex<Behaviour>>,
    stop: CancellationToken,
) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    loop {
        if stop.is_cancelled() {
            return;
        }
        if let Ok(list) = pods.list(&ListParams::default()).await {
            for pod in list.items {
                let value = serde_json::to_value(&pod).unwrap();
                let name = pod.metadata.name.clone().unwrap_or_default();
                if pod.metadata.deletion_timestamp.is_some() {
                    let _ = pods
                        .delete(&name, &DeleteParams::default().grace_period(0))
                        .await;
                    continue;
                }
                if value.pointer("/spec/nodeName").is_none() {
                    let binding = json!({"apiVersion": "v1", "kind": "Binding",
                        "metadata": {"name": name},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}});
                    let _ = bind(&client, &namespace, &name, binding).await;
                }
                // Read now, after the list came back, never before it: a pod in the
                // list was created before the API server answered, so a `behave`
                // that came before the pod (e.g. `Nothing` before a deploy) is seen
                // here. A mode read before the list could predate the `behave` and
                // still be applied to the pods it was meant to leave alone.
                let mode = *behaviour.lock().unwrap();
                let phase = value.pointer("/status/phase").and_then(Value::as_str);
                if phase == Some("Running") || mode == Behaviour::Nothing {
                    continue;
                }
                let status = pod_status(&value, mode);
                let _ = pods
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                    .await;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

async fn bind(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    binding: Value,
) -> Result<(), kube::Error> {
    let request = http::Request::post(format!(
        "/api/v1/namespaces/{namespace}/pods/{name}/binding"
    ))
    .header("content-type", "application/json")
    .body(serde_json::to_vec(&binding).unwrap())
    .unwrap();
    client.request_text(request).await.map(|_| ())
}

fn pod_status(pod: &Value, mode: Behaviour) -> Value {
    let now = jiff::Timestamp::now().to_string();
    let containers: Vec<Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let name = c.get("name").cloned().unwrap_or(json!("c"));
            let image = c.get("image").cloned().unwrap_or(json!(""));
            match mode {
                Behaviour::CrashLoop => json!({"name": name, "image": image, "imageID": "",
                    "ready": false, "started": false, "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff",
                        "message": "back-off 40s restarting failed container"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}),
                _ => json!({"name": name, "image": image, "imageID": "", "containerID": "containerd://fake",
                    "ready": true, "started": true, "restartCount": 0,
                    "state": {"running": {"startedAt": now}}}),
            }
        })
        .collect();
    let ready = if mode == Behaviour::CrashLoop {
        "False"
    } else {
        "True"
    };
    json!({"status": {
        "phase": if mode == Behaviour::CrashLoop { "Pending" } else { "Running" },
        "hostIP": "192.0.2.10", "podIP": "10.244.1.7", "startTime": now,
        "conditions": [{"type": "Initialized", "status": "True"},
                       {"type": "PodScheduled", "status": "True"},
                       {"type": "ContainersReady", "status": ready},
                       {"type": "Ready", "status": ready}],
        "containerStatuses": containers}})
}

/// Reports pod `name` of `namespace` Ready or not, as a kubelet would (through the
/// pods/status subresource).
pub async fn set_ready(client: &kube::Client, namespace: &str, name: &str, ready: bool) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = serde_json::to_value(pods.get(name).await.unwrap()).unwrap();
    let mut status = pod_status(&pod, Behaviour::Ready);
    if !ready {
        for condition in status["status"]["conditions"].as_array_mut().unwrap() {
            if condition["type"] == "Ready" || condition["type"] == "ContainersReady" {
                condition["status"] = json!("False");
                condition["message"] = json!("readiness probe failed");
            }
        }
        for container in status["status"]["containerStatuses"]
            .as_array_mut()
            .unwrap()
        {
            container["ready"] = json!(false);
        }
    }
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// The stage's error message.
pub fn error(execution: &Execution, stage: &str) -> String {
    gennaker_engine::testing::error_of(gennaker_engine::testing::stage(execution, stage))
}

/// Fails the test with the execution when it did not succeed.
pub fn succeeded(execution: &Execution) {
    assert_eq!(
        execution.status,
        ExecutionStatus::Succeeded,
        "{}",
        gennaker_engine::testing::summary(execution)
    );
}
