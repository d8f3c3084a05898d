//! What every handler shares.

use std::sync::Arc;

use gennaker_deploy::Providers;
use gennaker_engine::Engine;
use gennaker_store::{CanaryConfigStore, MetricSampleStore, Store};
use gennaker_triggers::Triggers;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;
use crate::metrics::{Metrics, MetricsSource};

/// The state handed to every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Persistent state.
    pub store: Arc<dyn Store>,
    /// Canary configs (the same database as `store`).
    pub canary_configs: Arc<dyn CanaryConfigStore>,
    /// The notifications runs queue (listed per execution).
    pub notifications: Arc<dyn gennaker_store::NotificationStore>,
    /// The built-in load balancers' stored traffic samples (the same database as
    /// `store`), for the web UI's recent error ratios.
    pub metric_samples: Arc<dyn MetricSampleStore>,
    /// The execution engine (its workers run beside the HTTP server).
    pub engine: Engine,
    /// The clouds deployment stages and infrastructure routes act on.
    pub providers: Providers,
    /// Triggers: the webhook endpoints hand events to them.
    pub triggers: Triggers,
    /// Metrics of what the binary wired in (the local provider's load balancers), joined
    /// to ours at `/metrics`.
    pub more_metrics: Arc<dyn MetricsSource>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The server's settings.
    pub config: Arc<ServerConfig>,
    /// Cancelled when the server begins to stop: long-lived responses (event streams)
    /// end then, so in-flight requests can drain.
    pub shutdown: CancellationToken,
    /// Work that must finish before the server stops: mutating requests run here, so
    /// one whose client hung up still completes and writes its audit entry.
    pub tasks: TaskTracker,
    /// Told when tokens, users, roles or applications change, so open event streams
    /// re-check their caller's token and permissions at once.
    pub access_changes: AccessChanges,
}

/// A signal that who may read what has changed (a token revoked, a user deleted or
/// given other roles, an application's permissions changed or it was deleted).
#[derive(Debug, Clone)]
pub struct AccessChanges(Arc<watch::Sender<()>>);

impl AccessChanges {
    /// A signal nobody listens to yet.
    pub fn new() -> Self {
        AccessChanges(Arc::new(watch::Sender::new(())))
    }

    /// Tells every listener.
    pub(crate) fn notify(&self) {
        self.0.send_replace(());
    }

    /// A listener, told of changes from now on.
    pub(crate) fn subscribe(&self) -> watch::Receiver<()> {
        self.0.subscribe()
    }
}

impl Default for AccessChanges {
    fn default() -> Self {
        Self::new()
    }
}
