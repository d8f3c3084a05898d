//! The configured accounts and what stages do through them: a kube-rs client per
//! account, the namespace allow-list, kinds resolved through the API server's
//! discovery, and the calls stages make (get, list, server-side apply, create,
//! replace, patch, delete), with the API server's refusals turned into messages that
//! name the account, verb, resource and namespace.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, PropagationPolicy,
};
use kube::config::{
    AuthInfo, Cluster, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster,
    NamedContext,
};
use kube::discovery::Scope;
use serde_json::Value;

use crate::error::KubeError;
use crate::settings::{AccountSettings, KubernetesSettings};

/// The field manager Gennaker's server-side applies and patches are recorded under.
pub const FIELD_MANAGER: &str = "gennaker";

/// The most objects one list call returns; a stage needing more is refused rather
/// than reading without bound.
pub const MAX_LIST: u32 = 500;

/// The configured accounts by name.
#[derive(Clone, Default)]
pub struct KubernetesAccounts {
    accounts: BTreeMap<String, Arc<Account>>,
}

impl std::fmt::Debug for KubernetesAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesAccounts")
            .field("accounts", &self.accounts.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KubernetesAccounts {
    /// Builds a client per account (reading kubeconfigs and CA files, no request yet).
    pub async fn connect(settings: &KubernetesSettings) -> Result<Self, KubeError> {
        settings.validate().map_err(|err| KubeError::Client {
            account: String::new(),
            message: err.to_string(),
        })?;
        // kube's TLS uses the process-level provider; with two crypto libraries in
        // the build none is chosen by itself. An Err means one is already installed.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut accounts = BTreeMap::new();
        for entry in &settings.accounts {
            let account = Account::connect(entry).await?;
            accounts.insert(entry.name.clone(), Arc::new(account));
        }
        Ok(Self { accounts })
    }

    /// The account called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Account>> {
        self.accounts.get(name)
    }

    /// The account names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.accounts.keys().map(String::as_str).collect()
    }

    /// Whether no account is configured.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }
}

/// A kind as the API server serves it.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Its group, version, kind and plural.
    pub resource: ApiResource,
    /// Whether its objects live in namespaces.
    pub namespaced: bool,
}

impl Resolved {
    /// `replicasets.apps` (or `pods` for the core group), as RBAC names it.
    pub fn rbac_name(&self) -> String {
        if self.resource.group.is_empty() {
            self.resource.plural.clone()
        } else {
            format!("{}.{}", self.resource.plural, self.resource.group)
        }
    }
}

/// One cluster account: its client, allow-list and discovered kinds.
pub struct Account {
    /// Its name.
    pub name: String,
    client: kube::Client,
    namespaces: BTreeSet<String>,
    kinds: Mutex<HashMap<(String, String), Resolved>>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("namespaces", &self.namespaces)
            .finish_non_exhaustive()
    }
}

impl Account {
    async fn connect(settings: &AccountSettings) -> Result<Self, KubeError> {
        let failed = |message: String| KubeError::Client {
            account: settings.name.clone(),
            message,
        };
        let (kubeconfig, context) = match (&settings.kubeconfig, &settings.url) {
            (Some(path), _) => (
                Kubeconfig::read_from(path).map_err(|err| {
                    failed(format!("cannot read kubeconfig {}: {err}", path.display()))
                })?,
                settings.context.clone(),
            ),
            (None, Some(url)) => (inline_kubeconfig(settings, url), None),
            (None, None) => {
                return Err(failed(
                    "the account needs kubeconfig, or url + token".into(),
                ));
            }
        };
        let options = KubeConfigOptions {
            context,
            ..KubeConfigOptions::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|err| failed(format!("cannot use its kubeconfig: {err}")))?;
        let client = kube::Client::try_from(config)
            .map_err(|err| failed(format!("cannot build a client: {err}")))?;
        Ok(Self {
            name: settings.name.clone(),
            client,
            namespaces: settings.namespaces.iter().cloned().collect(),
            kinds: Mutex::new(HashMap::new()),
        })
    }

    /// The client (for tests and the provider's own reads).
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The namespaces the account may act in, sorted; empty: all of them.
    pub fn namespaces(&self) -> Vec<String> {
        self.namespaces.iter().cloned().collect()
    }

    /// Refuses a namespace (or the cluster scope, `None`) outside the account's
    /// allow-list, naming the list.
    pub fn check_namespace(&self, namespace: Option<&str>) -> Result<(), String> {
        if self.namespaces.is_empty() {
            return Ok(());
        }
        let allowed = || {
            self.namespaces
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match namespace {
            Some(ns) if self.namespaces.contains(ns) => Ok(()),
            Some(ns) => Err(format!(
                "account '{}' may act only in namespaces {}, not in '{ns}'; use one of them or ask an operator to add '{ns}' to the account's namespaces",
                self.name,
                allowed()
            )),
            None => Err(format!(
                "account '{}' is limited to namespaces ({}), so it may not act on cluster-scoped resources",
                self.name,
                allowed()
            )),
        }
    }

    /// How the API server serves `kind` of `api_version` (asked once, then cached).
    pub async fn resolve(&self, api_version: &str, kind: &str) -> Result<Resolved, KubeError> {
        let key = (api_version.to_owned(), kind.to_owned());
        if let Some(found) = self.cached(&key) {
            return Ok(found);
        }
        let (group, version) = match api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let unknown = || KubeError::UnknownKind {
            account: self.name.clone(),
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        };
        let (resource, capabilities) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|err| match &err {
                kube::Error::Api(status) if status.code == 404 => unknown(),
                kube::Error::Discovery(_) => unknown(),
                _ => self.failure("discover", &format!("kind {kind}"), None, &err),
            })?;
        let resolved = Resolved {
            resource,
            namespaced: capabilities.scope == Scope::Namespaced,
        };
        if let Ok(mut kinds) = self.kinds.lock() {
            kinds.insert(key, resolved.clone());
        }
        Ok(resolved)
    }

    fn cached(&self, key: &(String, String)) -> Option<Resolved> {
        self.kinds.lock().ok()?.get(key).cloned()
    }

    fn api(&self, kind: &Resolved, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) if kind.namespaced => {
                Api::namespaced_with(self.client.clone(), ns, &kind.resource)
            }
            _ => Api::all_with(self.client.clone(), &kind.resource),
        }
    }

    /// Turns a failed call into an error naming the account, verb, resource and scope.
    fn failure(
        &self,
        verb: &str,
        resource: &str,
        namespace: Option<&str>,
        err: &kube::Error,
    ) -> KubeError {
        let scope = match namespace {
            Some(ns) => format!("namespace '{ns}'"),
            None => "the cluster scope".to_owned(),
        };
        let action = format!("{verb} {resource} in {scope}");
        match err {
            kube::Error::Api(status) if status.code == 403 => KubeError::Forbidden {
                account: self.name.clone(),
                verb: verb.to_owned(),
                resource: resource.to_owned(),
                scope,
                message: status.message.clone(),
            },
            kube::Error::Api(status) if (400..500).contains(&status.code) && status.code != 429 => {
                KubeError::Refused {
                    account: self.name.clone(),
                    action,
                    code: status.code,
                    message: status.message.clone(),
                }
            }
            other => KubeError::Unavailable {
                account: self.name.clone(),
                action,
                message: other.to_string(),
            },
        }
    }

    /// The live object, or `None` when there is none.
    pub async fn get(
        &self,
        kind: &Resolved,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, KubeError> {
        match self.api(kind, namespace).get_opt(name).await {
            Ok(found) => found.map(to_value).transpose(),
            Err(err) => Err(self.failure("get", &kind.rbac_name(), namespace, &err)),
        }
    }

    /// The objects of `kind` in `namespace` matching `selector` (a label selector,
    /// `""` for all), at most [`MAX_LIST`].
    pub async fn list(
        &self,
        kind: &Resolved,
        namespace: Option<&str>,
        selector: &str,
    ) -> Result<Vec<Value>, KubeError> {
        let mut params = ListParams::default().limit(MAX_LIST);
        if !selector.is_empty() {
            params = params.labels(selector);
        }
        let list = self
            .api(kind, namespace)
            .list(&params)
            .await
            .map_err(|err| self.failure("list", &kind.rbac_name(), namespace, &err))?;
        if list
            .metadata
            .continue_
            .as_deref()
            .is_some_and(|c| !c.is_empty())
        {
            return Err(KubeError::Refused {
                account: self.name.clone(),
                action: format!("list {}", kind.rbac_name()),
                code: 413,
                message: format!(
                    "more than {MAX_LIST} objects match '{selector}'; narrow the selector"
                ),
            });
        }
        list.items.into_iter().map(to_value).collect()
    }

    /// Server-side apply of `manifest` under [`FIELD_MANAGER`], taking over fields
    /// other managers set (the pipeline is the source of truth).
    pub async fn apply(
        &self,
        kind: &Resolved,
        namespace: Option<&str>,
        name: &str,
        manifest: &Value,
    ) -> Result<Value, KubeError> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api(kind, namespace)
            .patch(name, &params, &Patch::Apply(manifest))
            .await
            .map_err(|err| self.failure("patch", &kind.rbac_name(), namespace, &err))
            .and_then(to_value)
    }

    /// Creates `manifest`.
    pub async fn create(
        &self,
        kind: &Resolved,
        namespace: Option<&str>,
        manifest: &Value,
    ) -> Result<Value, KubeError> {
        let object: DynamicObject =
            serde_json::from_value(manifest.clone()).map_err(|err| KubeError::Refused {
                account: self.name.clone(),
                action: format!("create {}", kind.rbac_name()),
                code: 400,
                message: err.to_string(),
            })?;
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        self.api(kind, namespace)
            .create(&params, &object)
            .await
            .map_err(|err| self.failure("create", &kind.rbac_name(), namespace, &err))
            .and_then(to_value)
    }

    /// Replaces the live object with `manifest` (PUT), or creates it when absent.
    pub async fn replace(
        &self,
        kind: &Resolved,
        namespace: Option<&str>,
        name: &str,
        manifest: &Value,
    ) -> Result<Value, KubeError> {
        let Some(live) = self.get(kind, namespace, name).await? else {
            return self.create(kind, namespace, manifest).await;
        };
        let mut manifest = manifest.clone();
        if let (Some(version), Some(metadata)) = (
            live.pointer("/metadata/resourceVersion").cloned(),
            manifest.get_mut("metadata").and_then(Value::as_object_mut),
        ) {
            metadata.insert("resourceVersion".into(), version);
        }
        let object: DynamicObject =
            serde_json::from_value(manifest).map_err(|err| KubeError::Refused {
                account: self.name.clone(),
                action: format!("replace {}", kind.rbac_name()),
                code: 400,
                message: err.to_string(),
            })?;
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        self.api(kind, namespace)
            .replace(name, &params, &object)
            .await
            .map_err(|err| self.failure("update", &kind.rbac_name(), namespace, &err))
            .and_then(to_value)
    }

    /// Patches the live object.
    pub async fn patch(
        &self,
        kind: &Resolved,
        namespace: Option<&str>,
        name: &str,
        patch: PatchBody,
    ) -> Result<Value, KubeError> {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let api = self.api(kind, namespace);
        let result = match patch {
            PatchBody::Strategic(body) => api.patch(name, &params, &Patch::Strategic(body)).await,
            PatchBody::Merge(body) => api.patch(name, &params, &Patch::Merge(body)).await,
            PatchBody::Json(ops) => api.patch(name, &params, &Patch::Json::<()>(ops)).await,
        };
        result
            .map_err(|err| self.failure("patch", &kind.rbac_name(), namespace, &err))
            .and_then(to_value)
    }

    /// Deletes the object; `Ok(false)` when it was already gone.
    pub async fn delete(
        &self,
        kind: &Resolved,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<bool, KubeError> {
        let params = DeleteParams {
            grace_period_seconds: options.grace_period_seconds,
            propagation_policy: Some(match options.cascade {
                Cascade::Background => PropagationPolicy::Background,
                Cascade::Foreground => PropagationPolicy::Foreground,
                Cascade::Orphan => PropagationPolicy::Orphan,
            }),
            ..DeleteParams::default()
        };
        match self.api(kind, namespace).delete(name, &params).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
            Err(err) => Err(self.failure("delete", &kind.rbac_name(), namespace, &err)),
        }
    }

    /// The events about object `name` in `namespace`, newest last (at most 20), as
    /// `reason: message` lines.
    pub async fn events(&self, namespace: &str, name: &str) -> Result<Vec<String>, KubeError> {
        let events: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(self.client.clone(), namespace);
        let params = ListParams::default()
            .fields(&format!("involvedObject.name={name}"))
            .limit(MAX_LIST);
        let list = events
            .list(&params)
            .await
            .map_err(|err| self.failure("list", "events", Some(namespace), &err))?;
        let mut lines: Vec<String> = list
            .items
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.reason.as_deref().unwrap_or_default(),
                    e.message.as_deref().unwrap_or_default()
                )
            })
            .collect();
        let skip = lines.len().saturating_sub(20);
        Ok(lines.split_off(skip))
    }
}

/// How a delete treats what the object owns (`kubectl --cascade`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cascade {
    /// Dependents are deleted in the background (the default).
    Background,
    /// The object goes once its dependents are gone.
    Foreground,
    /// Dependents are kept.
    Orphan,
}

/// What a delete asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Dependents.
    pub cascade: Cascade,
    /// Seconds the pods get to stop (`None`: the objects' own).
    pub grace_period_seconds: Option<u32>,
}

/// A patch body and its type.
#[derive(Debug, Clone)]
pub enum PatchBody {
    /// A strategic merge patch.
    Strategic(Value),
    /// A JSON merge patch (RFC 7386).
    Merge(Value),
    /// A JSON patch (RFC 6902).
    Json(json_patch::Patch),
}

fn to_value(object: DynamicObject) -> Result<Value, KubeError> {
    serde_json::to_value(object).map_err(|err| KubeError::Unavailable {
        account: String::new(),
        action: "read the API server's answer".into(),
        message: err.to_string(),
    })
}

/// A kubeconfig holding just what `url` + `token` + `ca_file` say, so both ways of
/// configuring an account go through kube's one loader.
fn inline_kubeconfig(settings: &AccountSettings, url: &str) -> Kubeconfig {
    const NAME: &str = "gennaker";
    Kubeconfig {
        clusters: vec![NamedCluster {
            name: NAME.into(),
            cluster: Some(Cluster {
                server: Some(url.to_owned()),
                certificate_authority: settings
                    .ca_file
                    .as_ref()
                    .map(|p| p.to_string_lossy().into_owned()),
                ..Cluster::default()
            }),
            other: Default::default(),
        }],
        auth_infos: vec![NamedAuthInfo {
            name: NAME.into(),
            auth_info: Some(AuthInfo {
                token: settings.token.clone().map(secrecy::SecretString::from),
                ..AuthInfo::default()
            }),
            other: Default::default(),
        }],
        contexts: vec![NamedContext {
            name: NAME.into(),
            context: Some(Context {
                cluster: NAME.into(),
                user: Some(NAME.into()),
                ..Context::default()
            }),
            other: Default::default(),
        }],
        current_context: Some(NAME.into()),
        ..Kubeconfig::default()
    }
}
