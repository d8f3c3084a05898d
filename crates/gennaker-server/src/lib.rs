//! Gennaker's HTTP API.
//!
//! Every route except `/healthz` and `/readyz` needs a bearer token. Mutating calls are
//! recorded in the audit log, refused ones included. The OpenAPI document at
//! `/api/openapi.json` is generated from the handlers' annotations, so it cannot drift
//! from the code.

mod audit;
mod auth;
mod bootstrap;
mod config;
mod error;
mod extract;
mod metrics;
mod openapi;
mod routes;
mod state;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use gennaker_store::{SqlStore, Store, StoreError};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tower_http::trace::TraceLayer;

pub use auth::{Access, Caller, TOKEN_PREFIX, application_permissions, generate_token, hash_token};
pub use bootstrap::{ADMIN_USER, bootstrap_admin};
pub use config::ServerConfig;
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use metrics::Metrics;
pub use state::AppState;

/// Pipeline documents can be large (hundreds of stages); anything beyond this is refused.
pub(crate) const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
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
    let authenticated = api
        .route(
            "/api/openapi.json",
            get(move |_caller: Caller| openapi::serve(openapi.clone())),
        )
        .route("/metrics", get(metrics::render))
        .layer(from_fn_with_state(state.clone(), auth::authenticate))
        .layer(from_fn_with_state(state.clone(), audit::record));
    Router::new()
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .merge(authenticated)
        .fallback(|| async {
            ApiError::NotFound(
                "no such route; the API is described at /api/openapi.json".to_owned(),
            )
        })
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Connects the store, creates the first admin if needed, and serves until `shutdown`
/// completes; in-flight requests finish first.
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::Io {
        context: format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        ),
        source,
    })?;
    let store = SqlStore::connect(&config.database_url).await?;
    bootstrap_admin(&store, &config).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Io {
            context: format!(
                "cannot listen on {} (is another server running? choose another with --listen)",
                config.listen
            ),
            source,
        })?;
    tracing::info!(address = %config.listen, database = store.backend(), "gennaker server listening");
    let tasks = TaskTracker::new();
    let state = AppState {
        store: Arc::new(store.clone()),
        metrics: Arc::new(Metrics::new()),
        config: Arc::new(config),
        tasks: tasks.clone(),
    };
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    // Mutations whose clients hung up may still be running; they need the database.
    tasks.close();
    tasks.wait().await;
    store.close().await;
    served.map_err(|source| ServerError::Io {
        context: "the HTTP server failed".to_owned(),
        source,
    })?;
    tracing::info!("gennaker server stopped");
    Ok(())
}

/// The store type the server runs on, for callers that only need the trait.
pub type DynStore = Arc<dyn Store>;
