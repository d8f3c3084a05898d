//! The boundaries between deployment stages and the infrastructure they change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;

use crate::model::{Capacity, CreateServerGroup, LoadBalancer, LoadBalancerSpec, ServerGroup};

/// Why a provider operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// No such server group, load balancer or account.
    #[error("{kind} '{name}' does not exist")]
    NotFound {
        /// `server group`, `load balancer`, `account`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The request cannot be carried out as given (bad capacity, unknown artifact…);
    /// retrying will not help.
    #[error("{0}")]
    Invalid(String),
    /// Worth retrying: the infrastructure is busy or briefly unreachable.
    #[error("{0}")]
    Unavailable(String),
    /// This server cannot do it at all: the cloud provider (or its load balancers) is
    /// not configured. A stage asking for it ends the execution TERMINAL.
    #[error("{0}")]
    Unsupported(String),
}

impl DeployError {
    /// A missing server group.
    pub fn no_server_group(name: &str) -> Self {
        Self::NotFound {
            kind: "server group",
            name: name.to_owned(),
        }
    }

    /// A missing load balancer.
    pub fn no_load_balancer(name: &str) -> Self {
        Self::NotFound {
            kind: "load balancer",
            name: name.to_owned(),
        }
    }
}

/// A field of a provider's spec that the provider refuses when a pipeline is saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    /// The field, as a dotted path in the spec (`command`, `artifact.path`) or the
    /// cluster's `account`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A place server groups run: the local machine, a Kubernetes cluster.
///
/// Every operation is idempotent, because a task may repeat it after a crash:
/// creating with the same [`origin`](CreateServerGroup::origin) returns the group
/// created the first time; resizing, enabling, disabling to the state a group is
/// already in succeeds without change; destroying a missing group succeeds.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The `cloudProvider` name stages use (`local`).
    fn name(&self) -> &'static str;

    /// What this provider would refuse in a server group's `spec` and `account` (when
    /// known), checked when a pipeline is saved so it is refused then and not only at
    /// run time. Values only known at run time (expressions) are left alone. The
    /// default refuses nothing.
    fn check_spec(&self, _account: Option<&str>, _spec: &serde_json::Value) -> Vec<SpecProblem> {
        Vec::new()
    }

    /// The spec fields that make a server group run `artifact` (a Spinnaker artifact a
    /// cluster names by `artifactId`/`expectedArtifactId`, bound when the execution
    /// started), merged over the cluster's own spec. Only the artifact types that fit
    /// the provider are accepted; the default accepts none.
    fn artifact_spec(
        &self,
        artifact: &serde_json::Value,
    ) -> Result<serde_json::Map<String, serde_json::Value>, DeployError> {
        Err(DeployError::Invalid(format!(
            "the {} provider cannot deploy an artifact of type '{}'",
            self.name(),
            artifact
                .get("type")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?")
        )))
    }

    /// Creates the next server group of the request's cluster (sequence + 1), or
    /// returns the one this request's origin already created.
    async fn create_server_group(
        &self,
        request: CreateServerGroup,
    ) -> Result<ServerGroup, DeployError>;

    /// Sets how many instances run; instances beyond `desired` are stopped gracefully.
    async fn resize_server_group(
        &self,
        account: &str,
        name: &str,
        capacity: Capacity,
    ) -> Result<ServerGroup, DeployError>;

    /// Puts the group's instances into its load balancers.
    async fn enable_server_group(
        &self,
        account: &str,
        name: &str,
    ) -> Result<ServerGroup, DeployError>;

    /// Takes the group's instances out of its load balancers, letting requests in
    /// flight finish; instances keep running.
    async fn disable_server_group(
        &self,
        account: &str,
        name: &str,
    ) -> Result<ServerGroup, DeployError>;

    /// Disables the group, stops its instances gracefully and forgets it.
    async fn destroy_server_group(&self, account: &str, name: &str) -> Result<(), DeployError>;

    /// One server group with its instances' health, or `None`.
    async fn server_group(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Option<ServerGroup>, DeployError>;

    /// An application's server groups (every account), oldest first within a cluster.
    async fn server_groups(&self, application: &str) -> Result<Vec<ServerGroup>, DeployError>;
}

/// Splits a load balancer's traffic between server groups, and manages the balancers.
#[async_trait]
pub trait TrafficRouter: Send + Sync {
    /// Creates or changes a load balancer; a change to a live listener never drops a
    /// connection.
    async fn upsert_load_balancer(
        &self,
        spec: LoadBalancerSpec,
    ) -> Result<LoadBalancer, DeployError>;

    /// Deletes a load balancer (a missing one is not an error).
    async fn delete_load_balancer(&self, account: &str, name: &str) -> Result<(), DeployError>;

    /// One load balancer, or `None`.
    async fn load_balancer(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Option<LoadBalancer>, DeployError>;

    /// An application's load balancers.
    async fn load_balancers(&self, application: &str) -> Result<Vec<LoadBalancer>, DeployError>;

    /// Fixes the traffic share of enabled server groups (weights are relative; a group
    /// not named gets none). An empty map returns to the default: traffic proportional
    /// to each enabled group's `Up` instances.
    async fn set_weights(
        &self,
        account: &str,
        load_balancer: &str,
        weights: BTreeMap<String, u32>,
    ) -> Result<LoadBalancer, DeployError>;
}

/// The providers and traffic routers stages can use, by `cloudProvider` name.
#[derive(Clone, Default)]
pub struct Providers {
    providers: HashMap<String, Arc<dyn Provider>>,
    routers: HashMap<String, Arc<dyn TrafficRouter>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.providers.keys().collect();
        names.sort();
        f.debug_struct("Providers")
            .field("providers", &names)
            .finish()
    }
}

impl Providers {
    /// The cloud provider a stage uses when it names none.
    pub const DEFAULT: &'static str = "local";

    /// No providers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a provider under its [`Provider::name`], with its traffic router.
    #[must_use]
    pub fn with(
        mut self,
        provider: Arc<dyn Provider>,
        router: Option<Arc<dyn TrafficRouter>>,
    ) -> Self {
        let name = provider.name().to_owned();
        if let Some(router) = router {
            self.routers.insert(name.clone(), router);
        }
        self.providers.insert(name, provider);
        self
    }

    /// The names of the configured providers, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.providers.keys().cloned().collect();
        names.sort();
        names
    }

    /// The provider named `cloud_provider` (`None`: the default).
    pub fn provider(
        &self,
        cloud_provider: Option<&str>,
    ) -> Result<&Arc<dyn Provider>, DeployError> {
        let name = cloud_provider.unwrap_or(Self::DEFAULT);
        self.providers.get(name).ok_or_else(|| {
            DeployError::Unsupported(format!(
                "cloudProvider '{name}' is not configured on this server (it deploys through: {})",
                self.known()
            ))
        })
    }

    /// The traffic router of `cloud_provider` (`None`: the default).
    pub fn router(
        &self,
        cloud_provider: Option<&str>,
    ) -> Result<&Arc<dyn TrafficRouter>, DeployError> {
        let name = cloud_provider.unwrap_or(Self::DEFAULT);
        self.provider(cloud_provider)?;
        self.routers.get(name).ok_or_else(|| {
            DeployError::Unsupported(format!(
                "cloudProvider '{name}' has no load balancers on this server"
            ))
        })
    }

    fn known(&self) -> String {
        let mut names: Vec<&str> = self.providers.keys().map(String::as_str).collect();
        names.sort_unstable();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    }
}
