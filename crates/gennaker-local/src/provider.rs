//! [`LocalProvider`]: the deploy layer's [`Provider`] and [`TrafficRouter`] for server
//! groups as supervised processes on this machine. It wires the parts together and
//! hands each call to the one that does the job.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gennaker_deploy::{
    Capacity, CreateServerGroup, DeployError, LoadBalancer, LoadBalancerSpec, Provider,
    ServerGroup, SpecProblem, TrafficRouter,
};
use gennaker_outbound::OutboundPolicy;
use gennaker_store::ResourceStore;
use tokio_util::sync::CancellationToken;

use crate::access;
use crate::adoption::restore_groups;
use crate::artifacts::{ArtifactCache, PinnedArtifact};
use crate::creation::Creator;
use crate::error::LocalError;
use crate::instances::Instances;
use crate::lb::{BackendGroup, LoadBalancers};
use crate::policy::{HostPolicy, check_account};
use crate::records::record_key;
use crate::registry::Registry;
use crate::routing::Traffic;
use crate::targets::TargetsFile;

/// Timings of supervision, and the operator's host policy; the defaults suit
/// production (with nothing but URL artifacts allowed), tests shorten the timings.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// What pipelines may run on this machine, as whom, and where load balancers may
    /// listen (`[local]` in gennaker.toml).
    pub host: HostPolicy,
    /// Between health probes (and crash checks) of an instance.
    pub health_interval: Duration,
    /// Consecutive failed probes that make an instance `Down`.
    pub unhealthy_threshold: u32,
    /// The first restart delay after a crash; doubled for each crash in a row.
    pub restart_backoff: Duration,
    /// The longest restart delay.
    pub max_restart_backoff: Duration,
    /// How long disabling waits for requests in flight to finish.
    pub drain_timeout: Duration,
    /// Which hosts artifact URLs may point at (health checks of instances on
    /// 127.0.0.1 are not outbound requests and are not limited by it).
    pub outbound: OutboundPolicy,
}

impl Default for LocalSettings {
    fn default() -> Self {
        Self {
            host: HostPolicy::default(),
            health_interval: Duration::from_secs(2),
            unhealthy_threshold: 3,
            restart_backoff: Duration::from_secs(1),
            max_restart_backoff: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            outbound: OutboundPolicy::default(),
        }
    }
}

/// The `local` provider and traffic router (see the crate docs).
#[derive(Debug, Clone)]
pub struct LocalProvider {
    registry: Arc<Registry>,
    traffic: Arc<Traffic>,
    instances: Arc<Instances>,
    creator: Arc<Creator>,
}

impl LocalProvider {
    /// Loads every server group and load balancer from the store, re-creates the
    /// listeners, adopts live instances (same pid AND process start time), restarts the
    /// missing ones and kills processes of this data directory that belong to no group.
    /// Supervision runs until `shutdown` is cancelled (or [`shutdown`](Self::shutdown)).
    pub async fn start(
        store: Arc<dyn ResourceStore>,
        data_dir: &Path,
        lbs: LoadBalancers,
        settings: LocalSettings,
        shutdown: CancellationToken,
    ) -> Result<Self, LocalError> {
        tokio::fs::create_dir_all(data_dir)
            .await
            .map_err(|e| LocalError::io(data_dir, &e))?;
        // The marker compares paths as text: use one spelling per directory.
        let data_dir = tokio::fs::canonicalize(data_dir)
            .await
            .map_err(|e| LocalError::io(data_dir, &e))?;
        access::prepare(&data_dir, settings.host.run_as())?;
        let mut cache = ArtifactCache::new(&data_dir)
            .with_max_bytes(settings.host.max_artifact_bytes())
            .with_fetch_timeout(settings.host.fetch_timeout());
        if settings.host.run_as().is_some() {
            cache = cache.shared_with_instances();
        }
        cache.remove_partials().await;
        match settings.host.run_as() {
            Some(user) => {
                tracing::info!(user = %user.name, uid = user.uid, "instances run as this OS user")
            }
            None if nix::unistd::geteuid().is_root() => tracing::warn!(
                "instances run as root: set [local] run_as_user in gennaker.toml to run them as an unprivileged user"
            ),
            // The same user may read the server's files and its /proc entry: a deployed
            // program could read the admin token, the secrets key and the database.
            None => tracing::warn!(
                uid = nix::unistd::geteuid().as_raw(),
                "instances run as the server's own OS user: a deployed program can read what the server can (its data directory with the admin token, the secrets key and the database); set [local] run_as_user in gennaker.toml to confine them"
            ),
        }
        let registry = Arc::new(Registry::new(store));
        registry.keep_targets(TargetsFile::new(&data_dir));
        let traffic = Arc::new(Traffic::new(
            registry.clone(),
            lbs,
            settings.drain_timeout,
            settings.host.clone(),
        ));
        let instances = Arc::new(Instances::new(
            registry.clone(),
            traffic.clone(),
            data_dir,
            settings,
            shutdown,
        )?);
        let creator = Arc::new(Creator::new(instances.clone(), cache)?);
        // Groups first: the listeners then start with the adopted instances that answer
        // in their tables, instead of refusing requests until those are probed.
        restore_groups(&instances).await?;
        traffic.restore().await?;
        // Adopted instances are saved only when something changes: list them now.
        registry.write_targets().await;
        Ok(Self {
            registry,
            traffic,
            instances,
            creator,
        })
    }

    /// Ends supervision WITHOUT stopping instances (a server restart): the next
    /// [`start`](Self::start) on the same store and data directory adopts them.
    pub async fn shutdown(&self) {
        self.instances.detach().await;
    }

    /// Destroys every server group (stopping its processes) and deletes every load
    /// balancer: the clean-up of a throw-away installation (`gennaker demo`).
    pub async fn destroy_all(&self) -> Result<(), DeployError> {
        for group in self.registry.all() {
            self.instances.destroy(&group).await?;
        }
        for (account, name) in self.traffic.names() {
            self.traffic.delete(&account, &name).await?;
        }
        Ok(())
    }

    /// The artifact a server group is pinned to.
    pub fn artifact(&self, account: &str, name: &str) -> Option<PinnedArtifact> {
        self.registry
            .get(&record_key(account, name))
            .and_then(|g| g.state().record.artifact.clone())
    }

    /// The routing table last handed to a load balancer
    /// ([`LoadBalancers::set_backends`]), for status pages and tests.
    pub fn routes(&self, account: &str, load_balancer: &str) -> Option<Vec<BackendGroup>> {
        self.traffic.routes_of(&record_key(account, load_balancer))
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    fn check_spec(&self, account: Option<&str>, spec: &serde_json::Value) -> Vec<SpecProblem> {
        self.instances
            .settings
            .host
            .check_value(account, spec)
            .into_iter()
            .map(|refusal| SpecProblem {
                field: refusal.field,
                message: refusal.message,
            })
            .collect()
    }

    /// An `http/file` artifact is fetched from its `reference` URL, as a spec's
    /// `artifact.url` is: the host policy and the outbound policy decide at deploy time
    /// whether that URL may be fetched. An `embedded/base64` one becomes
    /// `artifact.base64` (its bytes, allowed by the same `allow_artifact_urls`).
    fn artifact_spec(
        &self,
        artifact: &serde_json::Value,
    ) -> Result<serde_json::Map<String, serde_json::Value>, DeployError> {
        let kind = artifact
            .get("type")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        let key = match kind {
            "http/file" => "url",
            "embedded/base64" | "remote/base64" => "base64",
            other => {
                return Err(DeployError::Invalid(format!(
                    "the local provider runs artifacts of type 'http/file' (a URL in reference) or 'embedded/base64' (the bytes in reference), not '{other}'; deploy other types with the provider they are for (docker/image: kubernetes)"
                )));
            }
        };
        let Some(reference) = artifact
            .get("reference")
            .and_then(serde_json::Value::as_str)
            .filter(|r| !r.is_empty())
        else {
            return Err(DeployError::Invalid(format!(
                "the {kind} artifact has no reference (its {})",
                if key == "url" {
                    "URL"
                } else {
                    "base64 content"
                }
            )));
        };
        let mut spec = serde_json::Map::new();
        spec.insert("artifact".into(), serde_json::json!({ key: reference }));
        Ok(spec)
    }

    async fn create_server_group(
        &self,
        request: CreateServerGroup,
    ) -> Result<ServerGroup, DeployError> {
        self.creator.create(request).await
    }

    async fn resize_server_group(
        &self,
        account: &str,
        name: &str,
        capacity: Capacity,
    ) -> Result<ServerGroup, DeployError> {
        capacity.validate().map_err(DeployError::Invalid)?;
        let group = self.registry.find(account, name)?;
        self.instances.resize(&group, capacity).await?;
        Ok(group.view())
    }

    async fn enable_server_group(
        &self,
        account: &str,
        name: &str,
    ) -> Result<ServerGroup, DeployError> {
        let group = self.registry.find(account, name)?;
        self.traffic.switch(&group, false).await;
        Ok(group.view())
    }

    async fn disable_server_group(
        &self,
        account: &str,
        name: &str,
    ) -> Result<ServerGroup, DeployError> {
        let group = self.registry.find(account, name)?;
        self.traffic.switch(&group, true).await;
        Ok(group.view())
    }

    async fn destroy_server_group(&self, account: &str, name: &str) -> Result<(), DeployError> {
        let key = record_key(account, name);
        match self.registry.get(&key) {
            Some(group) => self.instances.destroy(&group).await?,
            // Not known here: make sure no record is left either (idempotent).
            None => self.registry.remove(&key).await?,
        }
        Ok(())
    }

    async fn server_group(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Option<ServerGroup>, DeployError> {
        Ok(self
            .registry
            .get(&record_key(account, name))
            .map(|g| g.view()))
    }

    async fn server_groups(&self, application: &str) -> Result<Vec<ServerGroup>, DeployError> {
        Ok(self.registry.views_of(application))
    }
}

#[async_trait]
impl TrafficRouter for LocalProvider {
    async fn upsert_load_balancer(
        &self,
        spec: LoadBalancerSpec,
    ) -> Result<LoadBalancer, DeployError> {
        check_account(&spec.account).map_err(LocalError::from)?;
        self.traffic.upsert(spec).await
    }

    async fn delete_load_balancer(&self, account: &str, name: &str) -> Result<(), DeployError> {
        self.traffic.delete(account, name).await
    }

    async fn load_balancer(
        &self,
        account: &str,
        name: &str,
    ) -> Result<Option<LoadBalancer>, DeployError> {
        Ok(self.traffic.balancer(account, name))
    }

    async fn load_balancers(&self, application: &str) -> Result<Vec<LoadBalancer>, DeployError> {
        Ok(self.traffic.balancers_of(application))
    }

    async fn set_weights(
        &self,
        account: &str,
        load_balancer: &str,
        weights: BTreeMap<String, u32>,
    ) -> Result<LoadBalancer, DeployError> {
        self.traffic
            .set_weights(account, load_balancer, weights)
            .await
    }
}
