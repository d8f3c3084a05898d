//! The composition root: which stage types a server runs and which clouds they act on.
//! The server crate serves whatever it is handed; only this module names the crates
//! that provide stage types and providers.

use std::sync::Arc;

use futures::future::BoxFuture;
use gennaker_canary::{CanarySettings, MetricSources};
use gennaker_core::StageCatalog;
use gennaker_deploy::Providers;
use gennaker_engine::{
    PreconfiguredWebhook, PreconfiguredWebhookStage, StageRegistry, WebhookConfigError,
};
use gennaker_kubernetes::{
    ArtifactAccounts, ArtifactSettings, KubernetesAccounts, KubernetesSettings,
};
use gennaker_local::lb::{LbConfig, LoadBalancers};
use gennaker_local::{HostPolicy, HostSettings, LocalProvider, LocalSettings};
use gennaker_server::{
    MetricsSource, OpenServer, RunningServer, ServerConfig, ServerError, Shutdown, Wiring,
};

/// The stage types every server has, acting through `providers`: the engine's generic
/// stages, the deployment stages, the canary stage and the Kubernetes manifest stages
/// (with no account, metric source or canary config here; [`start_server`] registers
/// them again with the configured ones).
fn builtin_stages(providers: Providers) -> StageRegistry {
    let mut registry = StageRegistry::standard();
    gennaker_deploy::register(&mut registry, providers);
    gennaker_kubernetes::register(&mut registry, KubernetesAccounts::default());
    gennaker_canary::stage::register(
        &mut registry,
        MetricSources::new(),
        Arc::new(gennaker_canary::InMemoryCanaryConfigs::new()),
    );
    registry
}

/// Every stage type, acting through `providers`: the built-in ones and the server's
/// preconfigured webhooks.
pub fn stage_registry(
    providers: Providers,
    webhooks: &[PreconfiguredWebhookStage],
) -> StageRegistry {
    let mut registry = builtin_stages(providers);
    for webhook in webhooks {
        registry.stage(webhook.clone());
    }
    registry
}

/// The `[[webhooks.preconfigured]]` entries of a server's configuration as stage types,
/// checked against the built-in types and each other.
pub fn preconfigured_webhooks(
    entries: &[PreconfiguredWebhook],
) -> Result<Vec<PreconfiguredWebhookStage>, WebhookConfigError> {
    gennaker_engine::preconfigured_webhook_stages(
        builtin_stages(Providers::new()).catalog(),
        entries,
    )
}

/// The stage types `gennaker pipeline validate` checks against offline: the same as a
/// server's with these preconfigured webhooks, without knowing which clouds a server
/// deploys to.
pub fn offline_catalog(webhooks: &[PreconfiguredWebhookStage]) -> StageCatalog {
    stage_registry(Providers::new(), webhooks).catalog().clone()
}

/// What the binary's server settings hand the composition root beyond the server
/// crate's own [`ServerConfig`]: one field per section of gennaker.toml that configures
/// stage types or providers.
#[derive(Debug, Clone, Default)]
pub struct WiringSettings {
    /// `[[webhooks.preconfigured]]`, checked ([`preconfigured_webhooks`]).
    pub webhooks: Vec<PreconfiguredWebhookStage>,
    /// `[local]`: the operator's host policy for the local provider.
    pub local: HostSettings,
    /// `[[kubernetes.accounts]]`: the clusters manifest stages deploy to.
    pub kubernetes: KubernetesSettings,
    /// `[[artifacts.github.accounts]]`: the GitHub APIs manifest stages read
    /// `github/file` artifacts from.
    pub artifacts: ArtifactSettings,
    /// `[canary]`: the metrics accounts canary analyses read.
    pub canary: CanarySettings,
}

/// Opens a server on `config` and serves, with everything `settings` configures: the
/// preconfigured webhooks; the local provider under the operator's host policy
/// (re-creating its load balancers and adopting the instances a previous run left,
/// their traffic samples stored for canary analysis); the manifest stages acting
/// through the Kubernetes accounts, which are also a generic provider (clusters view,
/// server-group stages, canary traffic through ingress-nginx), reading manifests from
/// artifacts through the artifact accounts; the canary stage reading the metrics accounts.
/// A setting that cannot be used (a missing root, a run-as user the server cannot
/// switch to, an unreadable kubeconfig, a bad metrics or artifact account) stops the
/// start with the setting named.
pub async fn start_server(
    config: ServerConfig,
    settings: &WiringSettings,
) -> Result<RunningServer, ServerError> {
    let kubernetes = KubernetesAccounts::connect(&settings.kubernetes)
        .await
        .map_err(|err| ServerError::Provider {
            provider: gennaker_kubernetes::PROVIDER,
            message: err.to_string(),
        })?;
    let artifacts =
        ArtifactAccounts::new(&settings.artifacts).map_err(|err| ServerError::Provider {
            provider: gennaker_kubernetes::PROVIDER,
            message: err.to_string(),
        })?;
    let host = HostPolicy::new(&settings.local).map_err(|err| ServerError::Provider {
        provider: "local",
        message: err.to_string(),
    })?;
    let open = gennaker_server::open(&config).await?;
    let wiring = wire(&open, &config, settings, host, kubernetes, artifacts).await?;
    gennaker_server::start(open, config, wiring).await
}

async fn wire(
    open: &OpenServer,
    config: &ServerConfig,
    settings: &WiringSettings,
    host: HostPolicy,
    kubernetes: KubernetesAccounts,
    artifacts: ArtifactAccounts,
) -> Result<Wiring, ServerError> {
    let load_balancers = LoadBalancers::new(LbConfig::default(), open.stop.child_token());
    let metric_sources = metric_sources(open, &settings.canary, &load_balancers)?;
    tracing::info!(
        accounts = %metric_sources.names().collect::<Vec<_>>().join(", "),
        default = metric_sources.default_account().unwrap_or_default(),
        "canary metrics accounts"
    );
    let local = LocalProvider::start(
        Arc::new(open.store.clone()),
        &config.data_dir.join("local"),
        load_balancers.clone(),
        LocalSettings {
            outbound: config.outbound.clone(),
            host,
            ..LocalSettings::default()
        },
        open.stop.child_token(),
    )
    .await
    .map_err(|err| ServerError::Provider {
        provider: "local",
        message: err.to_string(),
    })?;
    let shared = Arc::new(local.clone());
    let mut providers = Providers::new().with(shared.clone(), Some(shared));
    if !kubernetes.is_empty() {
        // The clusters view, the generic server-group stages and canary traffic.
        let cluster = gennaker_kubernetes::KubernetesProvider::start(kubernetes.clone());
        providers = providers.with(cluster.clone(), Some(cluster));
    }
    let mut registry = stage_registry(providers.clone(), &settings.webhooks);
    let clouds = providers.names();
    gennaker_kubernetes::register_with_artifacts(&mut registry, kubernetes, artifacts);
    gennaker_canary::stage::register(
        &mut registry,
        metric_sources,
        Arc::new(gennaker_canary::StoreCanaryConfigs(Arc::new(
            open.store.clone(),
        ))),
    );
    registry.set_cloud_providers(clouds);
    Ok(Wiring {
        registry,
        providers,
        metrics: Arc::new(LoadBalancerMetrics(load_balancers.clone())),
        shutdown: Box::new(LocalShutdown {
            local,
            load_balancers,
        }),
    })
}

/// Stops the local provider's supervision (its instances keep running and are adopted
/// by the next start), then the load balancers after their requests finish.
struct LocalShutdown {
    local: LocalProvider,
    load_balancers: LoadBalancers,
}

impl Shutdown for LocalShutdown {
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.local.shutdown().await;
            self.load_balancers.shutdown().await;
        })
    }
}

/// The built-in load balancers' per-server-group series, at the server's `/metrics`.
#[derive(Debug)]
struct LoadBalancerMetrics(LoadBalancers);

impl MetricsSource for LoadBalancerMetrics {
    fn encode(&self, out: &mut String) {
        self.0.encode_metrics(out);
    }
}

/// The canary metrics accounts of `[canary]` (always with `builtin`), and the load
/// balancers storing the traffic samples `builtin` reads, kept `[canary]
/// sample_retention_hours`.
fn metric_sources(
    open: &OpenServer,
    canary: &CanarySettings,
    load_balancers: &LoadBalancers,
) -> Result<MetricSources, ServerError> {
    let samples: Arc<dyn gennaker_store::MetricSampleStore> = Arc::new(open.store.clone());
    let sources = MetricSources::from_settings(canary, samples.clone()).map_err(|err| {
        ServerError::Provider {
            provider: "canary",
            message: err.to_string(),
        }
    })?;
    load_balancers.persist_samples(samples, canary.sample_retention());
    Ok(sources)
}
