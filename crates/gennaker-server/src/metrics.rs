//! Prometheus metrics: the registry and the HTTP request instrumentation.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use crate::state::AppState;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

/// The route label of requests that matched no route.
const UNMATCHED: &str = "unmatched";

/// The method label: one of the methods the API knows, or `other`. Labels come from a
/// closed set, so a client cannot add time series (and memory) by inventing methods.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The server's metrics registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    audit_write_failures: Counter,
}

impl Metrics {
    /// Creates the registry with Gennaker's metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gennaker");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests served, by route and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency, by route",
            latency.clone(),
        );
        let audit_write_failures = Counter::default();
        registry.register(
            "audit_write_failures",
            "Audit entries that could not be written (the change itself was made)",
            audit_write_failures.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register("build_info", "The running Gennaker version", build);
        Metrics {
            registry,
            requests,
            latency,
            audit_write_failures,
        }
    }

    fn observe(&self, method: &'static str, route: &str, status: StatusCode, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route: route.to_owned(),
                status: status.as_u16(),
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method,
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts an audit entry that could not be written.
    pub(crate) fn audit_write_failed(&self) {
        self.audit_write_failures.inc();
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        self.render_with(|_| {})
    }

    /// Like [`render`](Self::render), with `more` (another registry's text, such as
    /// the load balancers') placed before the end marker.
    pub fn render_with(&self, more: impl FnOnce(&mut String)) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode_registry(&mut text, &self.registry)?;
        more(&mut text);
        prometheus_client::encoding::text::encode_eof(&mut text)?;
        Ok(text)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware: counts and times every request by its route template (never the raw path,
/// which would make one time series per pipeline name) and its method from a closed set.
pub(crate) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    state
        .metrics
        .observe(method, &route, response.status(), started.elapsed());
    response
}

/// Metrics kept outside the server (the load balancers' per-server-group series), in the
/// OpenMetrics text format, without the end marker.
pub trait MetricsSource: Send + Sync + std::fmt::Debug {
    /// Appends the metrics to `out`.
    fn encode(&self, out: &mut String);
}

/// No metrics beyond the server's own.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMoreMetrics;

impl MetricsSource for NoMoreMetrics {
    fn encode(&self, _out: &mut String) {}
}

/// `GET /metrics`: Prometheus exposition; who may read it is the `[metrics] access`
/// setting (the router serves it open, behind authentication, or not at all).
pub(crate) async fn render(State(state): State<AppState>) -> Response {
    match state
        .metrics
        .render_with(|text| state.more_metrics.encode(text))
    {
        Ok(text) => (
            [(
                CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_a_closed_set() {
        assert_eq!(method_label(&Method::GET), "GET");
        for invented in ["FOO", "BREW", "PROPFIND"] {
            let method = Method::from_bytes(invented.as_bytes()).unwrap_or(Method::TRACE);
            assert_eq!(method_label(&method), "other");
        }
    }
}
