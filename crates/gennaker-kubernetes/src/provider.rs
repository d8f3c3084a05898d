//! The Kubernetes accounts as a generic deployment [`Provider`]: the clusters view
//! (server groups read from the watch cache, [`crate::watch`]) and the generic
//! server-group stages (`deploy`/`createServerGroup`, resize, enable, disable,
//! destroy, rollback) acting on workloads.
//!
//! A server group the provider creates is a ReplicaSet `<cluster>-vNNN` whose pods
//! are selected by `gennaker.io/server-group`, carrying Spinnaker's moniker and
//! traffic annotations, the stage that created it and the spec it runs. Its spec:
//! `namespace` (default: the account's only namespace, else `default`), and the pod
//! spec as `podSpec` or just `containers`. Enable and disable move the group in and
//! out of the Services it names as Spinnaker does (the Services' selector labels on
//! the pod template and on the pods), honouring weights the router fixed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use gennaker_core::naming::next_sequence;
use gennaker_deploy::{Capacity, CreateServerGroup, DeployError, Provider, ServerGroup};
use gennaker_engine::TaskError;
use serde_json::{Map, Value, json};

use crate::cluster::{Account, DeleteOptions, PatchBody, Resolved};
use crate::error::KubeError;
use crate::manifest::{
    LABEL_MANAGED_BY, LABEL_NAME, MANAGED_BY, MONIKER_APPLICATION, MONIKER_CLUSTER, MONIKER_DETAIL,
    MONIKER_SEQUENCE, MONIKER_STACK, annotation,
};
use crate::stages::{self, PROVIDER};
use crate::traffic::{self, Label, TrafficError};
use crate::view;
use crate::watch::{AccountCache, Snapshot};
use crate::{KubernetesAccounts, cluster::Cascade};

/// The generic provider over the configured Kubernetes accounts (its
/// [`gennaker_deploy::TrafficRouter`] is in [`crate::router`]).
pub struct KubernetesProvider {
    pub(crate) accounts: KubernetesAccounts,
    caches: BTreeMap<String, AccountCache>,
    /// The namespace of each group this provider created, by account and name: read
    /// live until the watch has reported it.
    created: Mutex<BTreeMap<(String, String), String>>,
}

impl std::fmt::Debug for KubernetesProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesProvider")
            .field("accounts", &self.accounts)
            .finish_non_exhaustive()
    }
}

/// A workload found by name.
pub(crate) struct Located {
    pub(crate) account: Arc<Account>,
    pub(crate) kind: &'static str,
    pub(crate) namespace: String,
    pub(crate) name: String,
}

impl Located {
    /// The workload's kind as the API server serves it.
    async fn resolved(&self) -> Result<Resolved, DeployError> {
        self.account
            .resolve("apps/v1", self.kind)
            .await
            .map_err(deploy_error)
    }

    /// Merge-patches the workload with `body`; returns it as patched.
    async fn merge_patch(&self, body: Value) -> Result<Value, DeployError> {
        let kind = self.resolved().await?;
        self.account
            .patch(
                &kind,
                Some(&self.namespace),
                &self.name,
                PatchBody::Merge(body),
            )
            .await
            .map_err(deploy_error)
    }
}

pub(crate) fn deploy_error(err: KubeError) -> DeployError {
    match err {
        KubeError::Unavailable { .. } => DeployError::Unavailable(err.to_string()),
        _ => DeployError::Invalid(err.to_string()),
    }
}

impl KubernetesProvider {
    /// Starts watching every account (within a Tokio runtime); the watches stop when
    /// the provider is dropped.
    pub fn start(accounts: KubernetesAccounts) -> Arc<Self> {
        let caches = accounts
            .names()
            .into_iter()
            .filter_map(|name| accounts.get(name))
            .map(|account| (account.name.clone(), AccountCache::start(account)))
            .collect();
        Arc::new(Self {
            accounts,
            caches,
            created: Mutex::new(BTreeMap::new()),
        })
    }

    pub(crate) fn account(&self, name: &str) -> Result<Arc<Account>, DeployError> {
        self.accounts.get(name).cloned().ok_or_else(|| {
            DeployError::Invalid(format!(
                "no Kubernetes account '{name}' is configured on this server (it has: {}); set \"account\" to one of them",
                self.accounts.names().join(", ")
            ))
        })
    }

    pub(crate) async fn snapshot(&self, account: &str) -> Result<Snapshot, DeployError> {
        self.account(account)?;
        let cache = self.caches.get(account).ok_or_else(|| {
            DeployError::Unavailable(format!("account '{account}' is not watched"))
        })?;
        cache.snapshot().await.map_err(DeployError::Unavailable)
    }

    /// The workload called `name` in the account (a name used in two namespaces or by
    /// two kinds is refused, naming them).
    pub(crate) async fn locate(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Option<Located>, DeployError> {
        let snapshot = self.snapshot(account).await?;
        let groups = view::server_groups(
            account,
            &snapshot.workloads,
            &snapshot.pods,
            &snapshot.services,
        );
        let found: Vec<&Value> = snapshot
            .workloads
            .iter()
            .filter(|w| view::text(w, "/metadata/name") == name)
            .filter(|w| {
                groups.iter().any(|g| g.name == name)
                    && view::text(w, "/metadata/deletionTimestamp").is_empty()
            })
            .collect();
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(Located {
                account: self.account(account)?,
                kind: match view::text(one, "/kind") {
                    "Deployment" => "Deployment",
                    "StatefulSet" => "StatefulSet",
                    "DaemonSet" => "DaemonSet",
                    _ => "ReplicaSet",
                },
                namespace: view::text(one, "/metadata/namespace").to_owned(),
                name: name.to_owned(),
            })),
            many => Err(DeployError::Invalid(format!(
                "server group name '{name}' is ambiguous in account '{account}': {}; limit the account's namespaces or rename one",
                many.iter()
                    .map(|w| format!(
                        "{} in namespace '{}'",
                        view::text(w, "/kind"),
                        view::text(w, "/metadata/namespace")
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    async fn located(&self, account: &str, name: &str) -> Result<Located, DeployError> {
        self.locate(account, name)
            .await?
            .ok_or_else(|| DeployError::no_server_group(name))
    }

    /// The live workload.
    pub(crate) async fn live(&self, at: &Located) -> Result<Value, DeployError> {
        let kind = at.resolved().await?;
        at.account
            .get(&kind, Some(&at.namespace), &at.name)
            .await
            .map_err(deploy_error)?
            .ok_or_else(|| DeployError::no_server_group(&at.name))
    }

    /// Brings a workload's pod labels (template and every pod) to `labels`, through
    /// the one relabel the manifest stages use too ([`traffic::relabel`]). Removals
    /// go first, so a key one Service sets wins over another Service removing it.
    pub(crate) async fn relabel(
        &self,
        at: &Located,
        workload: &Value,
        mut labels: Vec<(String, Label)>,
    ) -> Result<(), DeployError> {
        if labels.is_empty() {
            return Ok(());
        }
        labels.sort_by_key(|(_, label)| matches!(label, Label::Set(_)));
        let kind = at.resolved().await?;
        traffic::relabel(&at.account, &kind, Some(&at.namespace), workload, &labels)
            .await
            .map_err(|err| match err {
                TrafficError::Kube(err) => deploy_error(err),
                TrafficError::Invalid(why) => DeployError::Invalid(why),
            })?;
        Ok(())
    }

    /// Puts a workload on the side of each of its Services that its state and the
    /// Services' fixed weights call for.
    pub(crate) async fn place(&self, at: &Located, enabled: bool) -> Result<(), DeployError> {
        let workload = self.live(at).await?;
        let snapshot = self.snapshot(&at.account.name).await?;
        let groups = view::server_groups(
            &at.account.name,
            &snapshot.workloads,
            &snapshot.pods,
            &snapshot.services,
        );
        let cluster = view::moniker(&workload)
            .map(|m| m.cluster())
            .unwrap_or_default();
        let mut labels = Vec::new();
        for service_name in view::traffic_services(&workload) {
            let Some(service) = self
                .service(&at.account, &at.namespace, &service_name)
                .await?
            else {
                continue;
            };
            let pin = view::pinned(&service);
            let cluster_of = |name: &str| {
                groups
                    .iter()
                    .find(|g| g.name == name)
                    .map(ServerGroup::cluster)
            };
            let stable = pin
                .as_ref()
                .and_then(|pin| view::stable_cluster(pin, &cluster_of));
            let side = view::side(pin.as_ref(), stable.as_deref(), &at.name, &cluster, enabled);
            let selector = view::string_map(&service, "/spec/selector");
            labels.extend(view::side_labels(&selector, &service_name, side));
        }
        self.relabel(at, &workload, labels).await
    }

    /// The live Service `name` in `namespace`.
    pub(crate) async fn service(
        &self,
        account: &Account,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, DeployError> {
        let kind = account
            .resolve("v1", "Service")
            .await
            .map_err(deploy_error)?;
        account
            .get(&kind, Some(namespace), name)
            .await
            .map_err(deploy_error)
    }

    async fn view_of(&self, account: &str, name: &str) -> Result<ServerGroup, DeployError> {
        self.server_group(account, name)
            .await?
            .ok_or_else(|| DeployError::no_server_group(name))
    }
}

/// The namespace a create request deploys to.
fn namespace(account: &Account, spec: &Value) -> Result<String, DeployError> {
    let namespace = match spec.get("namespace") {
        Some(Value::String(ns)) if !ns.is_empty() => ns.clone(),
        None | Some(Value::Null) => match account.namespaces().as_slice() {
            [only] => only.clone(),
            _ => "default".to_owned(),
        },
        Some(other) => {
            return Err(DeployError::Invalid(format!(
                "spec field \"namespace\" must be a namespace name, not {other}"
            )));
        }
    };
    account
        .check_namespace(Some(&namespace))
        .map_err(DeployError::Invalid)?;
    Ok(namespace)
}

/// The pod spec a create request runs: `podSpec`, or `containers` alone.
fn pod_spec(spec: &Value) -> Result<Value, DeployError> {
    let pod = match (spec.get("podSpec"), spec.get("containers")) {
        (Some(pod @ Value::Object(_)), None) => pod.clone(),
        (None, Some(containers @ Value::Array(_))) => json!({ "containers": containers }),
        (Some(_), Some(_)) => {
            return Err(DeployError::Invalid(
                "the spec gives both \"podSpec\" and \"containers\": give one".into(),
            ));
        }
        _ => {
            return Err(DeployError::Invalid(
                "a Kubernetes server group needs \"containers\": [{\"name\": \"web\", \"image\": \"nginx:1.27\"}] (or a whole \"podSpec\") in its cluster".into(),
            ));
        }
    };
    let mut pod = pod;
    if let Some(image) = spec
        .pointer("/imageArtifact/reference")
        .and_then(Value::as_str)
    {
        bind_image(
            &mut pod,
            spec.pointer("/imageArtifact/name").and_then(Value::as_str),
            image,
        );
    }
    Ok(pod)
}

/// Spinnaker's rule: a container whose image without tag or digest is the artifact's
/// name runs its reference; with one container and no match, that container does.
fn bind_image(pod: &mut Value, name: Option<&str>, reference: &str) {
    let Some(containers) = pod.get_mut("containers").and_then(Value::as_array_mut) else {
        return;
    };
    let repository = |image: &str| -> String {
        let cut = image
            .find('@')
            .or_else(|| image.rfind(':').filter(|i| !image[*i..].contains('/')));
        cut.map_or(image, |i| &image[..i]).to_owned()
    };
    let mut bound = false;
    for container in containers.iter_mut() {
        let image = view::text(container, "/image").to_owned();
        if name.is_some_and(|n| repository(&image) == n) {
            container["image"] = json!(reference);
            bound = true;
        }
    }
    if !bound && let [only] = containers.as_mut_slice() {
        only["image"] = json!(reference);
    }
}

#[async_trait]
impl Provider for KubernetesProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn artifact_spec(&self, artifact: &Value) -> Result<Map<String, Value>, DeployError> {
        match artifact.get("type").and_then(Value::as_str) {
            Some("docker/image") => {
                let reference = view::text(artifact, "/reference");
                if reference.is_empty() {
                    return Err(DeployError::Invalid(
                        "the docker/image artifact has no reference".into(),
                    ));
                }
                let mut spec = Map::new();
                spec.insert(
                    "imageArtifact".into(),
                    json!({"name": view::text(artifact, "/name"), "reference": reference}),
                );
                Ok(spec)
            }
            other => Err(DeployError::Invalid(format!(
                "the kubernetes provider deploys docker/image artifacts into server groups, not '{}'; deploy manifests with deployManifest",
                other.unwrap_or("?")
            ))),
        }
    }

    async fn create_server_group(
        &self,
        request: CreateServerGroup,
    ) -> Result<ServerGroup, DeployError> {
        let account = self.account(&request.account)?;
        let namespace = namespace(&account, &request.spec)?;
        let pod = pod_spec(&request.spec)?;
        request.capacity.validate().map_err(DeployError::Invalid)?;
        let rs = account
            .resolve("apps/v1", "ReplicaSet")
            .await
            .map_err(deploy_error)?;
        let cluster = request.moniker.cluster();
        let origin = serde_json::to_string(&request.origin)
            .map_err(|e| DeployError::Invalid(e.to_string()))?;
        // Read live, not from the cache: a repeat right after a crash must find the
        // group the first attempt created.
        let find = || async {
            let live = account
                .list(&rs, Some(&namespace), view::SERVER_GROUP)
                .await
                .map_err(deploy_error)?;
            let ours: Vec<Value> = live
                .into_iter()
                .filter(|w| view::moniker(w).is_some_and(|m| m.cluster() == cluster))
                .collect();
            Ok::<_, DeployError>(ours)
        };
        let existing = find().await?;
        let origin_of = |w: &Value| {
            annotation(w, view::ORIGIN)
                .and_then(|t| serde_json::from_str::<gennaker_deploy::ServerGroupOrigin>(t).ok())
        };
        if let Some(done) = existing
            .iter()
            .find(|w| origin_of(w).as_ref() == Some(&request.origin))
        {
            return bare_view(&account.name, done);
        }
        let sequence = next_sequence(
            existing
                .iter()
                .filter_map(|w| view::moniker(w).and_then(|m| m.sequence))
                .max(),
        );
        let moniker = request.moniker.clone().with_sequence(sequence);
        let name = moniker.name();
        let mut labels = BTreeMap::from([
            (view::SERVER_GROUP.to_owned(), name.clone()),
            (LABEL_NAME.to_owned(), moniker.app.clone()),
            (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        ]);
        let mut services = Vec::new();
        for balancer in &request.load_balancers {
            let service_name = balancer
                .strip_prefix("service ")
                .unwrap_or(balancer)
                .trim()
                .to_owned();
            let service = self
                .service(&account, &namespace, &service_name)
                .await?
                .ok_or_else(|| {
                    DeployError::Invalid(format!(
                        "load balancer '{balancer}': there is no Service '{service_name}' in namespace '{namespace}' of account '{}'; deploy it (deployManifest) before the server group",
                        account.name
                    ))
                })?;
            // A new group is not named by weights a router fixed: it waits for them.
            let side = view::side(
                view::pinned(&service).as_ref(),
                None,
                &name,
                &cluster,
                request.enabled,
            );
            let changes = view::label_changes(
                &view::string_map(&service, "/spec/selector"),
                &service_name,
                &labels,
                side,
            );
            for (key, value) in changes {
                if let Some(value) = value {
                    labels.insert(key, value);
                }
            }
            services.push(format!("service {service_name}"));
        }
        let mut annotations = BTreeMap::from([
            (MONIKER_APPLICATION.to_owned(), moniker.app.clone()),
            (MONIKER_CLUSTER.to_owned(), format!("replicaSet {cluster}")),
            (MONIKER_SEQUENCE.to_owned(), sequence.to_string()),
            (view::ORIGIN.to_owned(), origin),
            (view::ENABLED.to_owned(), request.enabled.to_string()),
            (
                view::SPEC.to_owned(),
                serde_json::to_string(&request.spec).unwrap_or_default(),
            ),
            (
                view::CAPACITY.to_owned(),
                json!({"min": request.capacity.min, "max": request.capacity.max}).to_string(),
            ),
        ]);
        if let Some(stack) = &moniker.stack {
            annotations.insert(MONIKER_STACK.to_owned(), stack.clone());
        }
        if let Some(detail) = &moniker.detail {
            annotations.insert(MONIKER_DETAIL.to_owned(), detail.clone());
        }
        if !services.is_empty() {
            annotations.insert(
                view::LOAD_BALANCERS.to_owned(),
                serde_json::to_string(&services).unwrap_or_default(),
            );
        }
        let manifest = json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {
                    view::SERVER_GROUP: name,
                    LABEL_NAME: moniker.app,
                    LABEL_MANAGED_BY: MANAGED_BY,
                },
                "annotations": annotations,
            },
            "spec": {
                "replicas": request.capacity.desired,
                "selector": {"matchLabels": {view::SERVER_GROUP: name}},
                "template": {
                    "metadata": {
                        "labels": labels,
                        "annotations": {MONIKER_APPLICATION: moniker.app, MONIKER_CLUSTER: format!("replicaSet {cluster}")},
                    },
                    "spec": pod,
                },
            },
        });
        match account.create(&rs, Some(&namespace), &manifest).await {
            Ok(_) => {}
            // Created by a concurrent attempt of the same stage: that one is it.
            Err(KubeError::Refused { code: 409, .. }) => {
                if let Some(done) = find()
                    .await?
                    .iter()
                    .find(|w| origin_of(w).as_ref() == Some(&request.origin))
                {
                    return bare_view(&account.name, done);
                }
                return Err(DeployError::Unavailable(format!(
                    "ReplicaSet '{name}' in namespace '{namespace}' was created by another deploy at the same time; retrying picks the next version"
                )));
            }
            Err(err) => return Err(deploy_error(err)),
        }
        if let Ok(mut created) = self.created.lock() {
            created.insert((account.name.clone(), name.clone()), namespace.clone());
        }
        tracing::info!(account = %account.name, namespace = %namespace, server_group = %name, "kubernetes server group created");
        // The watch reports it in a moment; the answer comes from what was created.
        let mut group = bare_view(&account.name, &manifest)?;
        group.created_time = jiff::Timestamp::now().as_millisecond();
        Ok(group)
    }

    async fn resize_server_group(
        &self,
        account: &str,
        name: &str,
        capacity: Capacity,
    ) -> Result<ServerGroup, DeployError> {
        capacity.validate().map_err(DeployError::Invalid)?;
        let at = self.located(account, name).await?;
        if at.kind == "DaemonSet" {
            return Err(DeployError::Invalid(format!(
                "server group '{name}' is a DaemonSet: it runs one pod per node and cannot be resized"
            )));
        }
        let patched = at.merge_patch(json!({
                    "metadata": {"annotations": {view::CAPACITY: json!({"min": capacity.min, "max": capacity.max}).to_string()}},
                    "spec": {"replicas": capacity.desired},
                })).await?;
        let mut group = self.view_of(account, name).await?;
        group.capacity = view::capacity(&patched);
        Ok(group)
    }

    async fn enable_server_group(
        &self,
        account: &str,
        name: &str,
    ) -> Result<ServerGroup, DeployError> {
        let at = self.located(account, name).await?;
        if at.kind == "ReplicaSet" {
            let live = self.live(&at).await?;
            let preview = traffic::preview_load_balancers(&live).map_err(|why| {
                DeployError::Invalid(format!(
                    "server group '{name}' in namespace '{}': {why}",
                    at.namespace
                ))
            })?;
            if !preview.is_empty() {
                self.promote(&at, &live).await?;
                let mut group = self.view_of(account, name).await?;
                group.disabled = false;
                return Ok(group);
            }
        }
        let live = self.live(&at).await?;
        if stages::scaled_to_zero(&live) {
            return Err(DeployError::Invalid(format!(
                "server group '{name}' in namespace '{}' cannot be enabled: {}; its load balancers stay as they are",
                at.namespace,
                stages::SCALED_TO_ZERO
            )));
        }
        // Not Ready yet (e.g. a rollback's restore just resized it): retried.
        if let Some(why) = stages::no_ready_pod(at.kind, &live) {
            return Err(DeployError::Unavailable(format!(
                "server group '{name}' in namespace '{}' is not enabled yet: {why}",
                at.namespace
            )));
        }
        self.mark(&at, true).await?;
        self.place(&at, true).await?;
        let mut group = self.view_of(account, name).await?;
        group.disabled = false;
        Ok(group)
    }

    async fn disable_server_group(
        &self,
        account: &str,
        name: &str,
    ) -> Result<ServerGroup, DeployError> {
        let at = self.located(account, name).await?;
        self.place(&at, false).await?;
        self.mark(&at, false).await?;
        let mut group = self.view_of(account, name).await?;
        group.disabled = true;
        Ok(group)
    }

    async fn destroy_server_group(&self, account: &str, name: &str) -> Result<(), DeployError> {
        let Some(at) = self.locate(account, name).await? else {
            return Ok(());
        };
        match self.place(&at, false).await {
            // Deleted since the cache saw it: done.
            Err(DeployError::NotFound { .. }) => return Ok(()),
            other => other?,
        }
        let kind = at.resolved().await?;
        at.account
            .delete(
                &kind,
                Some(&at.namespace),
                name,
                &DeleteOptions {
                    cascade: Cascade::Background,
                    grace_period_seconds: None,
                },
            )
            .await
            .map_err(deploy_error)?;
        tracing::info!(account = %account, namespace = %at.namespace, server_group = %name, "kubernetes server group destroyed");
        Ok(())
    }

    async fn server_group(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Option<ServerGroup>, DeployError> {
        if self.accounts.get(account).is_none() {
            return Ok(None);
        }
        let snapshot = self.snapshot(account).await?;
        let mut found: Vec<ServerGroup> = view::server_groups(
            account,
            &snapshot.workloads,
            &snapshot.pods,
            &snapshot.services,
        )
        .into_iter()
        .filter(|g| g.name == name)
        .collect();
        if found.len() == 1 {
            if let Ok(mut created) = self.created.lock() {
                created.remove(&(account.to_owned(), name.to_owned()));
            }
            return Ok(found.pop());
        }
        self.created_not_yet_watched(account, name).await
    }

    async fn server_groups(&self, application: &str) -> Result<Vec<ServerGroup>, DeployError> {
        let mut all = Vec::new();
        for account in self.accounts.names() {
            let snapshot = self.snapshot(account).await?;
            all.extend(
                view::server_groups(
                    account,
                    &snapshot.workloads,
                    &snapshot.pods,
                    &snapshot.services,
                )
                .into_iter()
                .filter(|g| g.moniker.app == application),
            );
        }
        let pending: Vec<(String, String)> = self
            .created
            .lock()
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default();
        for (account, name) in pending {
            if all.iter().any(|g| g.account == account && g.name == name) {
                continue;
            }
            if let Some(group) = self.server_group(&account, &name).await?
                && group.moniker.app == application
            {
                all.push(group);
            }
        }
        all.sort_by(|a, b| {
            (a.cluster(), a.created_time, &a.name).cmp(&(b.cluster(), b.created_time, &b.name))
        });
        Ok(all)
    }
}

impl KubernetesProvider {
    /// A group this provider created that the watch has not reported yet, read live
    /// (without pods); forgotten once the watch has it or it is gone.
    async fn created_not_yet_watched(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Option<ServerGroup>, DeployError> {
        let key = (account.to_owned(), name.to_owned());
        let namespace = self.created.lock().ok().and_then(|c| c.get(&key).cloned());
        let Some(namespace) = namespace else {
            return Ok(None);
        };
        let at = Located {
            account: self.account(account)?,
            kind: "ReplicaSet",
            namespace,
            name: name.to_owned(),
        };
        match self.live(&at).await {
            Ok(workload) => bare_view(account, &workload).map(Some),
            Err(DeployError::NotFound { .. }) => {
                if let Ok(mut created) = self.created.lock() {
                    created.remove(&key);
                }
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// Enables a ReplicaSet deployed blue/green with preview Services as
    /// `enableManifest` does: a version with a failing pod is refused with the pod's
    /// reason and events, one not all Ready yet is retried, then it moves from the
    /// preview to the active Services ([`stages::promote`]) and the other enabled
    /// versions of its cluster are disabled. It is marked disabled until the end, so
    /// a stage repeated after a crash in between promotes it again (every step is
    /// idempotent) instead of finding it enabled and stopping short.
    async fn promote(&self, at: &Located, live: &Value) -> Result<(), DeployError> {
        let full = format!("replicaSet {}", at.name);
        let ns = Some(at.namespace.as_str());
        let failing = stages::failing_pod(&at.account, "ReplicaSet", live, ns)
            .await
            .map_err(|err| match err {
                TaskError::Transient(why) => DeployError::Unavailable(why),
                TaskError::Permanent(why) | TaskError::Unsupported(why) => {
                    DeployError::Invalid(why)
                }
            })?;
        if let Some(failure) = failing {
            return Err(DeployError::Invalid(format!(
                "server group '{}' in namespace '{}' cannot be promoted from its preview: it will not become ready: {failure}; the active Services stay on the current version (fix the version and deploy again, or disable it)",
                at.name, at.namespace
            )));
        }
        if stages::scaled_to_zero(live) {
            return Err(DeployError::Invalid(format!(
                "server group '{}' in namespace '{}' cannot be promoted from its preview: {}; the active Services stay on the current version",
                at.name,
                at.namespace,
                stages::SCALED_TO_ZERO
            )));
        }
        if let Some(waiting) = stages::not_ready(&full, live) {
            return Err(DeployError::Unavailable(waiting));
        }
        self.mark(at, false).await?;
        let kind = at.resolved().await?;
        stages::promote(&at.account, &kind, ns, live, &[])
            .await
            .map_err(|err| match err {
                TrafficError::Kube(err) => deploy_error(err),
                TrafficError::Invalid(why) => DeployError::Invalid(why),
            })?;
        let cluster = view::moniker(live).map(|m| m.cluster());
        let snapshot = self.snapshot(&at.account.name).await?;
        let older: Vec<String> = view::server_groups(
            &at.account.name,
            &snapshot.workloads,
            &snapshot.pods,
            &snapshot.services,
        )
        .into_iter()
        .filter(|g| g.name != at.name && !g.disabled && Some(g.cluster()) == cluster)
        .map(|g| g.name)
        .collect();
        for name in older {
            match self.disable_server_group(&at.account.name, &name).await {
                // Gone since the cache saw it: nothing to disable.
                Err(DeployError::NotFound { .. }) | Ok(_) => {}
                Err(err) => return Err(err),
            }
        }
        self.mark(at, true).await?;
        tracing::info!(account = %at.account.name, namespace = %at.namespace, server_group = %at.name, "blue/green server group promoted");
        Ok(())
    }

    /// Records whether the generic stages enabled the workload.
    async fn mark(&self, at: &Located, enabled: bool) -> Result<(), DeployError> {
        at.merge_patch(json!({"metadata": {"annotations": {view::ENABLED: enabled.to_string()}}}))
            .await?;
        Ok(())
    }
}

/// A live workload as a server group, without its pods (the cache has not seen it).
fn bare_view(account: &str, workload: &Value) -> Result<ServerGroup, DeployError> {
    view::server_groups(account, std::slice::from_ref(workload), &[], &[])
        .pop()
        .ok_or_else(|| {
            DeployError::Invalid(format!(
                "workload '{}' names no application",
                view::text(workload, "/metadata/name")
            ))
        })
}
