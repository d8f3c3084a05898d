//! `demo-app`: a tiny HTTP service whose behaviour is set by flags, so a demo, a test or
//! a benchmark can deploy a "good" version, a slow one, an erroring one or one that never
//! passes its health checks, all from the same binary.
//!
//! `GET /` answers `{"version", "instance", "port", "pid"}` (500 for the configured
//! fraction of requests); `GET /health` answers 200, or 503 with `--unhealthy`.
//! `GET /metrics` is the Prometheus text exposition of the `/` requests:
//! `demo_requests_total{status, version, server_group}` and the latency histogram
//! `demo_request_duration_seconds{version, server_group}` (the server group from
//! `SERVER_GROUP`, which the local provider sets), so canary analyses can compare
//! versions through Prometheus. SIGTERM (and Ctrl-C) stop accepting connections and
//! let requests in flight finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
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
    /// The server group the metrics are labelled with (the local provider sets
    /// `SERVER_GROUP`).
    #[arg(long, env = "SERVER_GROUP", default_value = "")]
    pub server_group: String,
}

/// The labels of `demo_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    status: String,
    version: String,
    server_group: String,
}

/// The labels of `demo_request_duration_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LatencyLabels {
    version: String,
    server_group: String,
}

/// The metrics `/metrics` exposes.
struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
}

impl Metrics {
    fn new() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ])
        });
        let mut registry = Registry::default();
        registry.register(
            "demo_requests",
            "Requests to / by status code",
            requests.clone(),
        );
        registry.register(
            "demo_request_duration_seconds",
            "Latency of requests to /",
            latency.clone(),
        );
        Self {
            registry,
            requests,
            latency,
        }
    }
}

struct App {
    pub version: String,
    pub instance: String,
    pub port: u16,
    latency: Duration,
    pub error_rate: f64,
    pub unhealthy: bool,
    server_group: String,
    requests: AtomicU64,
    metrics: Metrics,
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
    let started = tokio::time::Instant::now();
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
    app.metrics
        .requests
        .get_or_create(&RequestLabels {
            status: status.as_u16().to_string(),
            version: app.version.clone(),
            server_group: app.server_group.clone(),
        })
        .inc();
    app.metrics
        .latency
        .get_or_create(&LatencyLabels {
            version: app.version.clone(),
            server_group: app.server_group.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    (status, Json(body)).into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &app.metrics.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
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
        server_group: args.server_group,
        requests: AtomicU64::new(0),
        metrics: Metrics::new(),
    });
    let router = Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(terminated())
        .await
}
