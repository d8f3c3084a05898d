//! The prometheus source against a real Prometheus (Debian's `prometheus`, which
//! scripts/test.sh installs) scraping a real demo-app process every second, found
//! through a `file_sd` file in the local provider's format.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gennaker_canary::source::prometheus::{PrometheusAccount, PrometheusAuth, PrometheusSource};
use gennaker_canary::{CanaryConfig, CanaryMetricConfig, MetricSource, ScopeQuery, SourceError};
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(90);

/// Kills a child process when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The demo-app binary, built with this test's profile into its target directory.
fn demo_app() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--quiet", "-p", "demo-app", "--manifest-path"])
        .arg(&manifest);
    if profile_dir.file_name().and_then(|n| n.to_str()) == Some("release") {
        command.arg("--release");
    }
    if let Some(target) = profile_dir.parent() {
        command.env("CARGO_TARGET_DIR", target);
    }
    assert!(
        command.status().unwrap().success(),
        "cargo build -p demo-app failed"
    );
    profile_dir.join("demo-app")
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn metric(query: serde_json::Value) -> CanaryMetricConfig {
    serde_json::from_value(json!({"name": "m", "query": query})).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_queries_against_a_real_prometheus() {
    let Ok(prometheus) = which("prometheus") else {
        eprintln!("skipped: no prometheus binary (scripts/test.sh installs Debian's prometheus)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let app_port = free_port();
    let _app = Running(
        Command::new(demo_app())
            .args(["--version", "v2", "--error-rate", "0.25"])
            .env("PORT", app_port.to_string())
            .env("SERVER_GROUP", "web-prod-v002")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The local provider's target file format.
    let targets = dir.path().join("targets.json");
    std::fs::write(
        &targets,
        serde_json::to_vec(&json!([{"targets": [format!("127.0.0.1:{app_port}")],
            "labels": {"app": "web", "cluster": "web-prod", "serverGroup": "web-prod-v002",
                       "instance": "web-prod-v002-0"}}]))
        .unwrap(),
    )
    .unwrap();
    let config_file = dir.path().join("prometheus.yml");
    std::fs::write(
        &config_file,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: demo\n    file_sd_configs:\n      - files: ['{}']\n        refresh_interval: 1s\n",
            targets.display()
        ),
    )
    .unwrap();
    let prom_port = free_port();
    let _prometheus = Running(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{prom_port}");
    wait_until("prometheus ready", || {
        let request = client.get(format!("{base}/-/ready")).send();
        async move { request.await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    let start = jiff::Timestamp::now();
    wait_until("demo-app listening", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", app_port))
            .await
            .is_ok()
    })
    .await;
    for _ in 0..8 {
        client
            .get(format!("http://127.0.0.1:{app_port}/"))
            .send()
            .await
            .unwrap();
    }
    // Until a scrape has seen all 8 requests (6 answered 200, 2 answered 500).
    wait_until("the requests scraped", || {
        let request = client
            .get(format!("{base}/api/v1/query"))
            .query(&[("query", "sum(demo_requests_total)")])
            .send();
        async move {
            let Ok(response) = request.await else {
                return false;
            };
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            body["data"]["result"][0]["value"][1] == "8"
        }
    })
    .await;
    // Evaluation points fall every step from the start: reaching past now makes sure
    // the last one is after the scrape that saw the last request.
    let end = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2);

    let source = PrometheusSource::new(PrometheusAccount {
        name: "prom".to_owned(),
        url: base.parse().unwrap(),
        auth: PrometheusAuth::None,
        timeout: Duration::from_secs(10),
        scope_label: "instance".to_owned(),
        max_response_bytes: 1024 * 1024,
    })
    .unwrap();
    let config: CanaryConfig =
        serde_json::from_value(json!({"templates": {"sg": "server_group=\"${scope}\""}})).unwrap();
    let scope = ScopeQuery {
        scope: "web-prod-v002".to_owned(),
        location: String::new(),
        start,
        end,
        step_seconds: 1,
        extended_params: BTreeMap::new(),
    };

    // Kayenta's selector: avg(metric{template, labelBindings}).
    let errors = source
        .query(
            &config,
            &metric(
                json!({"type": "prometheus", "metricName": "demo_requests_total",
            "customFilterTemplate": "sg", "labelBindings": ["status=\"500\""]}),
            ),
            &scope,
        )
        .await
        .unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].query,
        "avg(demo_requests_total{server_group=\"web-prod-v002\",status=\"500\"})"
    );
    assert!(errors[0].tags.is_empty());
    assert_eq!(errors[0].values.last(), Some(&2.0), "{errors:?}");
    assert_eq!(errors[0].step_seconds, 1);

    // Grouped: one set per status, tags without __name__.
    let by_status = source
        .query(
            &config,
            &metric(json!({"metricName": "demo_requests_total",
            "customFilterTemplate": "sg", "groupByFields": ["status"]})),
            &scope,
        )
        .await
        .unwrap();
    let last: BTreeMap<String, f64> = by_status
        .iter()
        .map(|s| (s.tags["status"].clone(), *s.values.last().unwrap()))
        .collect();
    assert_eq!(
        last,
        BTreeMap::from([("200".to_owned(), 6.0), ("500".to_owned(), 2.0)])
    );

    // PromQL mode: the labels Prometheus added from the target file are there too.
    let promql = source
        .query(&config, &metric(json!({"customInlineTemplate":
            "PromQL:sum by (serverGroup) (demo_request_duration_seconds_count{server_group=\"${scope}\"})"})), &scope)
        .await
        .unwrap();
    assert_eq!(
        promql[0].tags,
        BTreeMap::from([("serverGroup".to_owned(), "web-prod-v002".to_owned())])
    );
    assert_eq!(promql[0].values.last(), Some(&8.0));

    // Another scope has no data: one empty set (NoData), not an error.
    let other = ScopeQuery {
        scope: "web-prod-v001".to_owned(),
        ..scope.clone()
    };
    let none = source
        .query(
            &config,
            &metric(json!({"metricName": "demo_requests_total", "customFilterTemplate": "sg"})),
            &other,
        )
        .await
        .unwrap();
    assert_eq!(none.len(), 1);
    assert!(none[0].values.is_empty());

    // A metric Prometheus never saw is named as the error.
    let missing = source
        .query(
            &config,
            &metric(json!({"metricName": "demo_requets_total", "customFilterTemplate": "sg"})),
            &scope,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&missing, SourceError::QueryFailed { account, message, .. }
            if account == "prom" && message.contains("\"demo_requets_total\" was not found")),
        "{missing}"
    );
    // Prometheus's own error text comes back with the query.
    let bad = source
        .query(
            &config,
            &metric(json!({"customInlineTemplate": "PromQL:sum(rate(demo_requests_total[1m])"})),
            &scope,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&bad, SourceError::QueryFailed { query, message, .. }
            if query == "sum(rate(demo_requests_total[1m])" && message.contains("bad_data")),
        "{bad}"
    );
    // Something that is not Prometheus: a clear error, not a panic.
    let not_prometheus = PrometheusSource::new(PrometheusAccount {
        name: "wrong".to_owned(),
        url: format!("http://127.0.0.1:{app_port}").parse().unwrap(),
        auth: PrometheusAuth::Bearer(gennaker_canary::settings::Secret::new("s3cret")),
        timeout: Duration::from_secs(10),
        scope_label: "instance".to_owned(),
        max_response_bytes: 1024 * 1024,
    })
    .unwrap()
    .query(
        &config,
        &metric(json!({"customInlineTemplate": "PromQL:up"})),
        &scope,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        not_prometheus.contains("\"wrong\"") && !not_prometheus.contains("s3cret"),
        "{not_prometheus}"
    );
}

/// The path of `program` on `PATH`.
fn which(program: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|candidate| candidate.is_file())
        })
        .ok_or(())
}
