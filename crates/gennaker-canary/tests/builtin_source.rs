//! The builtin source over a real load balancer: real HTTP traffic through it, its
//! samples stored in a real database, and a restart of the load balancers in between:
//! samples from before the restart are still returned.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use gennaker_canary::source::builtin::BuiltinSource;
use gennaker_canary::{CanaryConfig, CanaryMetricConfig, MetricSource, ScopeQuery};
use gennaker_local::lb::{Backend, BackendGroup, LbConfig, ListenerSpec, LoadBalancers};
use gennaker_store::testing::{TestBackend, TestDatabase};
use gennaker_store::{MetricSampleStore, SqlStore};
use serde_json::json;
use tokio_util::sync::CancellationToken;

async fn backend() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

/// Starts load balancers storing samples in `store`, routes `front` to `web-v001` at
/// `address`, sends `ok` good and `failed` failing requests, and shuts them down.
async fn serve_round(store: &SqlStore, address: std::net::SocketAddr, ok: usize, failed: usize) {
    let config = LbConfig {
        sample_interval: Duration::from_millis(200),
        ..LbConfig::default()
    };
    let lbs = LoadBalancers::new(config, CancellationToken::new());
    assert!(lbs.persist_samples(Arc::new(store.clone()), Duration::from_secs(3600)));
    let listen = lbs
        .upsert(ListenerSpec {
            name: "front".to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
            allowed_cidrs: Vec::new(),
            ejection_failures: 0,
        })
        .await
        .unwrap();
    lbs.set_backends(
        "front",
        vec![BackendGroup {
            server_group: "web-v001".to_owned(),
            weight: 1,
            backends: vec![Backend {
                instance_id: "web-v001-0".to_owned(),
                address,
            }],
        }],
    )
    .unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for path in std::iter::repeat_n("/", ok).chain(std::iter::repeat_n("/fail", failed)) {
        client
            .get(format!("http://{listen}{path}"))
            .send()
            .await
            .unwrap();
    }
    // Shutdown samples the last interval and stores what is queued.
    lbs.shutdown().await;
}

fn metric(name: &str) -> CanaryMetricConfig {
    serde_json::from_value(json!({"name": name, "query": {"type": "builtin", "metricName": name}}))
        .unwrap()
}

fn window(start: jiff::Timestamp, end: jiff::Timestamp, step_seconds: u64) -> ScopeQuery {
    ScopeQuery {
        scope: "web-v001".to_owned(),
        location: String::new(),
        start,
        end,
        step_seconds,
        extended_params: BTreeMap::new(),
    }
}

async fn restart_keeps_samples(backend_kind: TestBackend) {
    let (_db, store) = TestDatabase::store(backend_kind).await.unwrap();
    let address = backend().await;
    let before = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1);
    serve_round(&store, address, 20, 10).await;
    let restart = jiff::Timestamp::now();
    serve_round(&store, address, 10, 0).await;
    let after = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1);

    let source = BuiltinSource::new(
        "builtin",
        Arc::new(store.clone()) as Arc<dyn MetricSampleStore>,
    );
    let config = CanaryConfig::default();
    let query = |name: &str, scope: ScopeQuery| {
        let source = source.clone();
        let config = config.clone();
        let metric = metric(name);
        async move { source.query(&config, &metric, &scope).await.unwrap() }
    };
    // One bucket over both rounds: every request counted once.
    let whole = query("error_ratio", window(before, after, 3600)).await;
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0].values, [0.25], "10 failed of 40");
    assert!(whole[0].query.contains("error_ratio") && whole[0].query.contains("web-v001"));
    // Before the restart alone: the first round, as stored by the first server.
    let first = query("error_ratio", window(before, restart, 3600)).await;
    assert_eq!(first[0].values, [10.0 / 30.0]);
    let p99 = query("latency_p99", window(before, after, 3600)).await;
    assert!(p99[0].values[0] > 0.0 && p99[0].values[0] < 5.0, "{p99:?}");
    // Requests per second of sampled time: every bucket with samples has a rate.
    let rates = query("request_rate", window(before, after, 1)).await;
    assert!(!rates[0].values.is_empty());
    assert!(
        rates[0].values.iter().all(|r| r.is_finite() && *r >= 0.0),
        "{rates:?}"
    );
    assert!(rates[0].values.iter().any(|r| *r > 0.0), "{rates:?}");
    // Split by load balancer, and a scope without samples is one empty set.
    let by_lb: CanaryMetricConfig = serde_json::from_value(json!({"name": "r", "query":
        {"type": "builtin", "metricName": "request_rate", "groupByFields": ["loadBalancer"]}}))
    .unwrap();
    let split = source
        .query(&config, &by_lb, &window(before, after, 3600))
        .await
        .unwrap();
    assert_eq!(
        split[0].tags,
        BTreeMap::from([("loadBalancer".to_owned(), "front".to_owned())])
    );
    let mut missing = window(before, after, 60);
    missing.scope = "web-v404".to_owned();
    let empty = source
        .query(&config, &metric("error_ratio"), &missing)
        .await
        .unwrap();
    assert_eq!(empty.len(), 1);
    assert!(empty[0].values.is_empty());
    // A typo names the metrics there are.
    let error = source
        .query(&config, &metric("error_rate"), &window(before, after, 60))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("error_ratio, error_ratio_4xx"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_from_before_a_restart_are_still_returned_sqlite() {
    restart_keeps_samples(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_from_before_a_restart_are_still_returned_postgres() {
    restart_keeps_samples(TestBackend::Postgres).await;
}
