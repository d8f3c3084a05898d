//! `demo-app`: a tiny HTTP service whose behaviour is set by flags, so a demo, a test or
//! a benchmark can deploy a "good" version, a slow one, an erroring one or one that never
//! passes its health checks, all from the same binary.
//!
//! `GET /` answers `{"version", "instance", "port", "pid"}` (500 for the configured
//! fraction of requests); `GET /health` answers 200, or 503 with `--unhealthy`. SIGTERM
//! (and Ctrl-C) stop accepting connections and let requests in flight finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

/// Flags; each also has an environment variable so a process spec can set it either way.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoAppArgs {
    /// The port to listen on (127.0.0.1); 0 picks a free one.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// The version string `/` reports.
    #[arg(long, env = "DEMO_VERSION", default_value = "v1")]
    pub version: String,
    /// Added to every `/` response.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Fraction (0..1) of `/` requests answered with 500.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// `/health` always answers 503: a version that fails its health checks
    /// (`DEMO_UNHEALTHY=true` does the same).
    #[arg(long, env = "DEMO_UNHEALTHY")]
    pub unhealthy: bool,
    /// Waits this long before listening, like a slow-starting service.
    #[arg(long, default_value_t = 0)]
    pub startup_delay_ms: u64,
    /// The instance id `/` reports (the local provider sets `INSTANCE_ID`).
    #[arg(long, env = "INSTANCE_ID", default_value = "")]
    pub instance: String,
}

struct App {
    pub version: String,
    pub instance: String,
    pub port: u16,
    latency: Duration,
    pub error_rate: f64,
    pub unhealthy: bool,
    requests: AtomicU64,
}

impl App {
    /// Whether request number `n` (from 0) fails: exactly `floor(n * rate)` of the first
    /// `n` requests do, spread evenly, so short runs see the configured rate without
    /// randomness.
    fn fails(&self, n: u64) -> bool {
        let rate = self.error_rate.clamp(0.0, 1.0);
        ((n + 1) as f64 * rate).floor() > (n as f64 * rate).floor()
    }
}

async fn root(State(app): State<Arc<App>>) -> Response {
    let n = app.requests.fetch_add(1, Ordering::Relaxed);
    if !app.latency.is_zero() {
        tokio::time::sleep(app.latency).await;
    }
    let body = json!({
        "version": app.version,
        "instance": app.instance,
        "port": app.port,
        "pid": std::process::id(),
    });
    let status = if app.fails(n) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

async fn health(State(app): State<Arc<App>>) -> StatusCode {
    if app.unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

/// Resolves on SIGTERM or Ctrl-C; if the handler cannot be installed, never (the process
/// then stops only by SIGKILL, which the provider sends after its grace period).
async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Serves until SIGTERM or Ctrl-C, then lets requests in flight finish.
pub async fn serve(args: DemoAppArgs) -> std::io::Result<()> {
    if args.startup_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(args.startup_delay_ms)).await;
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    let port = listener.local_addr()?.port();
    let app = Arc::new(App {
        version: args.version,
        instance: args.instance,
        port,
        latency: Duration::from_millis(args.latency_ms),
        error_rate: args.error_rate,
        unhealthy: args.unhealthy,
        requests: AtomicU64::new(0),
    });
    let router = Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(terminated())
        .await
}
