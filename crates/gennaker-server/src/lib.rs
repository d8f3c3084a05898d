//! Gennaker's HTTP API, and its web UI (`ui`, served at `/`).
//!
//! Every route except `/healthz` and `/readyz` needs a bearer token. Mutating calls are
//! recorded in the audit log, refused ones included. The OpenAPI document at
//! `/api/openapi.json` is generated from the handlers' annotations, so it cannot drift
//! from the code.
//!
//! The execution engine runs in the same process, on the same store: [`start`] runs its
//! workers beside the HTTP server, the executions API drives it, and its status events
//! are served live as server-sent events.
//!
//! The server is not the composition root: the binary opens it ([`open`]: data
//! directory, store, first admin, listener), wires the stage types and the clouds they
//! act on into a [`Wiring`], and then [`start`]s it.

mod audit;
mod auth;
mod bootstrap;
mod config;
mod error;
mod extract;
mod http;
mod metrics;
mod openapi;
mod passwords;
mod routes;
mod state;
mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use futures::future::BoxFuture;
use gennaker_deploy::Providers;
use gennaker_engine::{Engine, EngineConfig, EngineError, StageRegistry, SystemClock};
use gennaker_store::{SealedExecutions, SealingKey, SqlStore, Store, StoreError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::trace::TraceLayer;

pub use auth::{Access, Caller, TOKEN_PREFIX, application_permissions, generate_token, hash_token};
pub use bootstrap::{ADMIN_USER, bootstrap_admin};
pub use config::{EVERYONE, EngineSettings, HttpSettings, MetricsAccess, ServerConfig};
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use http::serve_http;
pub use metrics::{Metrics, MetricsSource, NoMoreMetrics};
pub use state::{AccessChanges, AppState};

/// Pipeline documents can be large (hundreds of stages); anything beyond this is refused.
pub(crate) const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How long a stopping server waits for engine workers to finish their current step;
/// a step cut short is redone from the queue after the next start.
const WORKER_DRAIN: Duration = Duration::from_secs(30);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The execution engine could not start.
    #[error("the execution engine could not start: {0}")]
    Engine(#[from] EngineError),
    /// The notification sender could not start.
    #[error(transparent)]
    Notifications(#[from] gennaker_notify::NotifyError),
    /// A cloud provider could not start (the local one: its data directory, its load
    /// balancers).
    #[error("the {provider} provider could not start: {message}")]
    Provider {
        /// Which provider.
        provider: &'static str,
        /// Why.
        message: String,
    },
    /// Another server holds the SQLite database: SQLite serves one server.
    #[error(
        "the SQLite database {database} is in use by another gennaker server (it holds {lock}); SQLite serves one server at a time: stop the other server first, or run several servers on one PostgreSQL database (README, \"Running several servers\")"
    )]
    DatabaseInUse {
        /// The database file.
        database: String,
        /// The lock file the other server holds.
        lock: String,
    },
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Builds the whole HTTP application around `state`.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = openapi::api_router().split_for_parts();
    let openapi = Arc::new(openapi::finish(openapi));
    let metrics_access = state.config.metrics_access;
    let mut authenticated = api.route(
        "/api/openapi.json",
        get(move |_caller: Caller| openapi::serve(openapi.clone())),
    );
    if metrics_access == MetricsAccess::Token {
        authenticated = authenticated.route("/metrics", get(metrics::render));
    }
    let authenticated = authenticated
        .layer(from_fn_with_state(state.clone(), auth::authenticate))
        .layer(from_fn_with_state(state.clone(), audit::record));
    // Webhook senders have no token: a trigger's source and secret identify them.
    let webhooks = Router::new()
        .route(
            "/webhooks/webhook/{source}",
            post(routes::triggers::webhook),
        )
        .route("/webhooks/git/{provider}", post(routes::triggers::git))
        .layer(DefaultBodyLimit::max(
            state.triggers.settings().max_payload_bytes,
        ));
    // The web UI forwards its actions to the API (same checks, same audit entries).
    let web_ui = ui::router(
        state.clone(),
        authenticated.clone().with_state(state.clone()),
    );
    let mut open = Router::new()
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .merge(webhooks);
    if metrics_access == MetricsAccess::Open {
        open = open.route("/metrics", get(metrics::render));
    }
    open.merge(authenticated)
        .merge(web_ui)
        .fallback(|| async {
            ApiError::NotFound(
                "no such route; the API is described at /api/openapi.json".to_owned(),
            )
        })
        .layer(from_fn_with_state(state.clone(), http::limit_time))
        .layer(from_fn(http::json_errors))
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The execution engine on `store` running the stage types of `registry`, configured
/// from `config` (webhooks call out under its outbound policy); call
/// [`Engine::start`] to run its workers.
///
/// SQLite is a single server's database, so leases a previous process left are
/// released at start; on PostgreSQL several servers share the queue.
///
/// Secrets in the executions it stores are sealed with `key`. The registry's catalog
/// takes the configured stage limit of pipelines (`[engine] max_pipeline_stages`).
pub fn engine(
    store: &SqlStore,
    key: &SealingKey,
    config: &ServerConfig,
    mut registry: StageRegistry,
) -> Result<Engine, EngineError> {
    registry.set_max_pipeline_stages(config.engine.max_pipeline_stages);
    let shared = Arc::new(store.clone());
    let planner = gennaker_notify::Planner::new(Some(link_base(config)));
    Engine::new(
        shared.clone(),
        Arc::new(SealedExecutions::new(shared, key.clone())),
        registry,
        Arc::new(SystemClock),
        EngineConfig {
            workers: config.engine.workers.max(1),
            lease: config.engine.lease,
            single_server: store.postgres_pool().is_none(),
            outbound: config.outbound.clone(),
            max_execution_stages: config.engine.max_execution_stages,
            notifications: Some(Arc::new(planner)),
            ..EngineConfig::default()
        },
    )
}

/// Where messages link to: `[notifications] base_url`, or this server's own address.
fn link_base(config: &ServerConfig) -> String {
    config
        .notifications
        .base_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.listen))
}

/// The worker sending what the engine's steps queue, on `store` (documents sealed
/// with `key`), under the outbound policy.
fn notifier(
    store: &SqlStore,
    key: &SealingKey,
    config: &ServerConfig,
) -> Result<gennaker_notify::Notifier, ServerError> {
    gennaker_notify::Notifier::new(
        Arc::new(store.clone()),
        Some(key.clone()),
        &config.notifications,
        &config.outbound,
        Arc::new(SystemClock),
    )
    .map_err(ServerError::from)
}

/// Stops what a [`Wiring`] started (providers' supervisors, load balancers) once the
/// engine's workers have finished.
pub trait Shutdown: Send + Sync {
    /// Stops it; instances of the local provider keep running for the next start.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

/// What the binary wires into a server: the stage types (and the catalog validation
/// reads), and the clouds they act on.
pub struct Wiring {
    /// Every stage type the engine runs.
    pub registry: StageRegistry,
    /// The clouds deployment stages and infrastructure routes act on.
    pub providers: Providers,
    /// Metrics of the providers (the built-in load balancers'), joined to `/metrics`.
    pub metrics: Arc<dyn MetricsSource>,
    /// Stops the providers when the server stops.
    pub shutdown: Box<dyn Shutdown>,
}

impl std::fmt::Debug for Wiring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wiring")
            .field("registry", &self.registry)
            .field("providers", &self.providers)
            .finish_non_exhaustive()
    }
}

/// A server whose store is connected and whose address is bound, not yet serving.
#[derive(Debug)]
pub struct OpenServer {
    /// The store (migrated; the first admin exists).
    pub store: SqlStore,
    /// The key sealing secrets in stored executions.
    pub secrets_key: SealingKey,
    listener: TcpListener,
    address: std::net::SocketAddr,
    /// Cancelled when the server stops: providers' tasks should be its children.
    pub stop: CancellationToken,
    /// Keeps a second server off this server's SQLite database until the store closes.
    sqlite_lock: Option<std::fs::File>,
}

/// Creates the data directory, reads (or creates) the key sealing secrets at rest,
/// connects and migrates the store, creates the first admin if needed, and binds the
/// listening address.
pub async fn open(config: &ServerConfig) -> Result<OpenServer, ServerError> {
    bootstrap::secure_data_dir(&config.data_dir)?;
    bootstrap::prepare_database_files(&config.database_url)?;
    let sqlite_lock = bootstrap::lock_sqlite(&config.database_url)?;
    let secrets_key = SealingKey::load_or_create(&config.secrets_key_path())?;
    let store = SqlStore::connect(&config.database_url).await?;
    bootstrap::secure_database_files(&config.database_url)?;
    bootstrap_admin(&store, config).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Io {
            context: format!(
                "cannot listen on {} (is another server running? choose another with --listen)",
                config.listen
            ),
            source,
        })?;
    let address = listener.local_addr().map_err(|source| ServerError::Io {
        context: "cannot read the listening address".to_owned(),
        source,
    })?;
    Ok(OpenServer {
        store,
        secrets_key,
        listener,
        address,
        stop: CancellationToken::new(),
        sqlite_lock,
    })
}

/// A server started by [`start`].
#[derive(Debug)]
pub struct RunningServer {
    address: std::net::SocketAddr,
    stop: CancellationToken,
    serving: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// Where the API listens (the port chosen when the config asked for port 0).
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    /// Stops the server: event streams end, in-flight requests finish, the workers
    /// finish their current step, then the store closes. Instances of the local
    /// provider keep running; the next start adopts them.
    pub async fn stop(self) -> Result<(), ServerError> {
        self.stop.cancel();
        match self.serving.await {
            Ok(result) => result,
            Err(err) => Err(ServerError::Io {
                context: "the server task failed".to_owned(),
                source: std::io::Error::other(err.to_string()),
            }),
        }
    }
}

/// Starts the engine's workers on `wiring`'s stage types and serves in the background
/// until [`RunningServer::stop`].
pub async fn start(
    open: OpenServer,
    config: ServerConfig,
    wiring: Wiring,
) -> Result<RunningServer, ServerError> {
    let OpenServer {
        store,
        secrets_key,
        listener,
        address,
        stop,
        sqlite_lock,
    } = open;
    let engine = engine(&store, &secrets_key, &config, wiring.registry)?;
    let mut workers = engine
        .start(store.queue_listener().await?, stop.clone())
        .await?;
    // Drained with the engine's workers, before the store closes.
    workers.spawn(notifier(&store, &secrets_key, &config)?.run(engine.subscribe(), stop.clone()));
    tracing::info!(
        %address,
        database = store.backend(),
        workers = config.engine.workers,
        server = engine.server_id(),
        "gennaker server listening"
    );
    let triggers = start_triggers(&store, &engine, &config, stop.clone()).await?;
    let tasks = TaskTracker::new();
    let state = AppState {
        store: Arc::new(store.clone()),
        canary_configs: Arc::new(store.clone()),
        notifications: Arc::new(store.clone()),
        metric_samples: Arc::new(store.clone()),
        engine,
        providers: wiring.providers,
        triggers,
        more_metrics: wiring.metrics,
        metrics: Arc::new(Metrics::new()),
        config: Arc::new(config),
        shutdown: stop.clone(),
        tasks: tasks.clone(),
        access_changes: AccessChanges::new(),
    };
    let serving = tokio::spawn(serve(
        listener,
        state,
        store,
        workers,
        wiring.shutdown,
        tasks,
        sqlite_lock,
    ));
    Ok(RunningServer {
        address,
        stop,
        serving,
    })
}

/// Triggers on `store` starting executions on `engine`, with their loops (cron,
/// registry polls, pipeline ends, recovery) running until `stop`.
pub async fn start_triggers(
    store: &SqlStore,
    engine: &Engine,
    config: &ServerConfig,
    stop: CancellationToken,
) -> Result<gennaker_triggers::Triggers, ServerError> {
    let shared = Arc::new(store.clone());
    let triggers = gennaker_triggers::Triggers::new(
        shared.clone(),
        shared,
        engine.clone(),
        Arc::new(SystemClock),
        config.triggers.clone(),
    )
    .map_err(trigger_error)?;
    // The loops end with `stop`; nothing waits for them (a pass cut short is redone).
    drop(triggers.spawn(stop));
    Ok(triggers)
}

fn trigger_error(err: gennaker_triggers::TriggerError) -> ServerError {
    match err {
        gennaker_triggers::TriggerError::Store(err) => ServerError::Store(err),
        gennaker_triggers::TriggerError::Engine(err) => ServerError::Engine(err),
        other => ServerError::Provider {
            provider: "triggers",
            message: other.to_string(),
        },
    }
}

/// Serves until the state's shutdown token is cancelled, then drains in order.
async fn serve(
    listener: TcpListener,
    state: AppState,
    store: SqlStore,
    mut workers: tokio::task::JoinSet<()>,
    providers: Box<dyn Shutdown>,
    tasks: TaskTracker,
    sqlite_lock: Option<std::fs::File>,
) -> Result<(), ServerError> {
    let stop = state.shutdown.clone();
    let http = state.config.http.clone();
    serve_http(listener, router(state), &http, stop).await;
    // Mutations whose clients hung up may still be running; they need the database.
    tasks.close();
    tasks.wait().await;
    let drained = tokio::time::timeout(WORKER_DRAIN, async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "engine workers did not finish their step within {}s; it is redone after the next start",
            WORKER_DRAIN.as_secs()
        );
        workers.abort_all();
    }
    providers.shutdown().await;
    store.close().await;
    // Another server may open the database now.
    drop(sqlite_lock);
    tracing::info!("gennaker server stopped");
    Ok(())
}

/// The store type the server runs on, for callers that only need the trait.
pub type DynStore = Arc<dyn Store>;
