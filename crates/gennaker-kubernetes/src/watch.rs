//! The clusters view's cache: per account, one kube-runtime reflector per kind and
//! namespace (the account's allow-list, or the whole cluster when it has none), kept
//! current by watches. Reading the view never asks the API server: it reads the
//! reflectors' stores, waiting (bounded) only until their first list arrived.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::cluster::Account;

/// How long a read waits for the first list of every watched kind before it answers
/// that the cache is not ready (with the watch's last error).
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(15);

/// The workload kinds shown as server groups, as `(apiVersion, kind)`.
pub const WORKLOAD_KINDS: [(&str, &str); 4] = [
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
];

/// What the cache holds at one moment, as JSON objects (with `apiVersion` and `kind`).
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Deployments, ReplicaSets, StatefulSets and DaemonSets.
    pub workloads: Vec<Value>,
    /// Pods.
    pub pods: Vec<Value>,
    /// Services.
    pub services: Vec<Value>,
    /// Ingresses.
    pub ingresses: Vec<Value>,
}

/// The stores of one kind, one per watched namespace.
struct Stores<K: kube::Resource<DynamicType = ()> + 'static> {
    stores: Vec<Store<K>>,
}

impl<K> Stores<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
        + Send
        + Sync
        + 'static,
{
    fn spawn(
        account: &Account,
        namespaces: &[String],
        errors: &Arc<Mutex<Option<String>>>,
        tasks: &mut Vec<JoinHandle<()>>,
    ) -> Self {
        let apis: Vec<Api<K>> = if namespaces.is_empty() {
            vec![Api::all(account.client().clone())]
        } else {
            namespaces
                .iter()
                .map(|ns| Api::namespaced(account.client().clone(), ns))
                .collect()
        };
        let mut stores = Vec::new();
        for api in apis {
            let (reader, writer) = reflector::store();
            let errors = errors.clone();
            let kind = K::kind(&()).into_owned();
            let account = account.name.clone();
            let stream = reflector::reflector(
                writer,
                watcher(api, watcher::Config::default()).default_backoff(),
            );
            tasks.push(tokio::spawn(async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(item) = stream.next().await {
                    if let Err(err) = item {
                        let message = format!("watching {kind}: {err}");
                        tracing::warn!(account = %account, error = %message, "kubernetes watch failed; retrying");
                        if let Ok(mut last) = errors.lock() {
                            *last = Some(message);
                        }
                    }
                }
            }));
            stores.push(reader);
        }
        Self { stores }
    }

    async fn ready(&self) -> bool {
        for store in &self.stores {
            if store.wait_until_ready().await.is_err() {
                return false;
            }
        }
        true
    }

    fn values(&self, api_version: &str) -> Vec<Value> {
        let kind = K::kind(&());
        self.stores
            .iter()
            .flat_map(Store::state)
            .filter_map(|object| serde_json::to_value(object.as_ref()).ok())
            .map(|mut value| {
                if let Some(map) = value.as_object_mut() {
                    map.insert("apiVersion".into(), Value::from(api_version));
                    map.insert("kind".into(), Value::from(kind.as_ref()));
                }
                value
            })
            .collect()
    }
}

/// One account's watched objects. Dropping it stops its watches.
pub struct AccountCache {
    deployments: Stores<Deployment>,
    replica_sets: Stores<ReplicaSet>,
    stateful_sets: Stores<StatefulSet>,
    daemon_sets: Stores<DaemonSet>,
    pods: Stores<Pod>,
    services: Stores<Service>,
    ingresses: Stores<Ingress>,
    errors: Arc<Mutex<Option<String>>>,
    tasks: Vec<JoinHandle<()>>,
    account: String,
}

impl Debug for AccountCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountCache")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl Drop for AccountCache {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl AccountCache {
    /// Starts watching the account's namespaces (must be called within a Tokio runtime).
    pub fn start(account: &Account) -> Self {
        let namespaces = account.namespaces();
        let errors = Arc::new(Mutex::new(None));
        let mut tasks = Vec::new();
        Self {
            deployments: Stores::spawn(account, &namespaces, &errors, &mut tasks),
            replica_sets: Stores::spawn(account, &namespaces, &errors, &mut tasks),
            stateful_sets: Stores::spawn(account, &namespaces, &errors, &mut tasks),
            daemon_sets: Stores::spawn(account, &namespaces, &errors, &mut tasks),
            pods: Stores::spawn(account, &namespaces, &errors, &mut tasks),
            services: Stores::spawn(account, &namespaces, &errors, &mut tasks),
            ingresses: Stores::spawn(account, &namespaces, &errors, &mut tasks),
            errors,
            tasks,
            account: account.name.clone(),
        }
    }

    async fn ready(&self) -> bool {
        self.deployments.ready().await
            && self.replica_sets.ready().await
            && self.stateful_sets.ready().await
            && self.daemon_sets.ready().await
            && self.pods.ready().await
            && self.services.ready().await
            && self.ingresses.ready().await
    }

    /// What the cache holds now, once every watch has listed its kind once; after
    /// [`SYNC_TIMEOUT`] without that, an error naming the watch's last failure.
    pub async fn snapshot(&self) -> Result<Snapshot, String> {
        match tokio::time::timeout(SYNC_TIMEOUT, self.ready()).await {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                let last = self
                    .errors
                    .lock()
                    .ok()
                    .and_then(|e| e.clone())
                    .unwrap_or_else(|| "no answer yet".to_owned());
                return Err(format!(
                    "the clusters view of account '{}' is not ready: its watches have not listed every kind within {} s ({last}); check that the API server is reachable and that the account may list and watch deployments, replicasets, statefulsets, daemonsets, pods, services and ingresses",
                    self.account,
                    SYNC_TIMEOUT.as_secs()
                ));
            }
        }
        let mut workloads = self.deployments.values("apps/v1");
        workloads.extend(self.replica_sets.values("apps/v1"));
        workloads.extend(self.stateful_sets.values("apps/v1"));
        workloads.extend(self.daemon_sets.values("apps/v1"));
        Ok(Snapshot {
            workloads,
            pods: self.pods.values("v1"),
            services: self.services.values("v1"),
            ingresses: self.ingresses.values("networking.k8s.io/v1"),
        })
    }
}
