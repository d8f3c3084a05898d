//! The clouds this server deploys to: the `local` provider (processes on this machine
//! behind the built-in load balancers) is always there.

use std::sync::Arc;

use gennaker_deploy::Providers;
use gennaker_local::lb::{LbConfig, LoadBalancers};
use gennaker_local::{LocalProvider, LocalSettings};
use gennaker_store::SqlStore;
use tokio_util::sync::CancellationToken;

use crate::ServerError;
use crate::config::ServerConfig;

/// The providers of a running server, and what stopping them needs.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    /// By `cloudProvider` name, for stages and routes.
    pub(crate) providers: Providers,
    /// The built-in load balancers (their metrics join `/metrics`).
    pub(crate) load_balancers: LoadBalancers,
    local: LocalProvider,
}

impl Started {
    /// Stops supervising instances (they keep running and are adopted by the next
    /// start) and closes the load balancers' listeners after their requests finish.
    pub(crate) async fn stop(&self) {
        self.local.shutdown().await;
        self.load_balancers.shutdown().await;
    }
}

/// Starts the local provider on `<data-dir>/local`: re-creates its load balancers and
/// adopts the instances a previous run left.
pub(crate) async fn start(
    store: &SqlStore,
    config: &ServerConfig,
    stop: CancellationToken,
) -> Result<Started, ServerError> {
    let load_balancers = LoadBalancers::new(LbConfig::default(), stop.child_token());
    let local = LocalProvider::start(
        Arc::new(store.clone()),
        &config.data_dir.join("local"),
        load_balancers.clone(),
        LocalSettings::default(),
        stop.child_token(),
    )
    .await
    .map_err(|err| ServerError::Provider(err.to_string()))?;
    let shared = Arc::new(local.clone());
    let providers = Providers::new().with(shared.clone(), Some(shared));
    Ok(Started {
        providers,
        load_balancers,
        local,
    })
}
