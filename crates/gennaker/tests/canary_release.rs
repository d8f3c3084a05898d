//! Canary releases end to end on real processes: a real `gennaker server` deploying the
//! demo app with the local provider, its built-in load balancer carrying bounded
//! traffic, and the `kayentaCanary` analysis reading a real Prometheus (scraping the
//! instances through the provider's `file_sd` list) or the built-in source. A canary
//! answering 20% errors is judged at or below marginal and rolled back; a healthy one
//! passes and is promoted; nothing served by production or baseline fails meanwhile;
//! a SIGKILL of the server between two judgements resumes the analysis where it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::api::{Api, DEPLOY_PATIENCE, KillLeftovers, demo_processes, destroy_all};
use support::{BIN, Server, test_host_policy};

/// Concurrent clients of the load generator.
const CLIENTS: usize = 4;
/// The most requests one load run sends (bounded whatever happens).
const MAX_REQUESTS: u64 = 60_000;
/// The longest one load run lasts (bounded whatever happens).
const MAX_LOAD: Duration = Duration::from_secs(240);
/// The canary config of the built-in source.
const BUILTIN_CONFIG: &str = "shop-errors-builtin";
/// The canary config of the Prometheus source.
const PROMETHEUS_CONFIG: &str = "shop-errors-prometheus";

/// A real Prometheus on a free port with its own storage, scraping every second the
/// targets of one `file_sd` file.
struct Prometheus {
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &Path) -> Prometheus {
        std::fs::create_dir_all(targets.parent().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: demo\n    file_sd_configs:\n      - files: [{:?}]\n        refresh_interval: 1s\n",
                targets.display().to_string()
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the prometheus binary (scripts/test.sh installs it)");
        Prometheus {
            child: Some(child),
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn ready(&self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(response) = http.get(format!("{}/-/ready", self.url())).send().await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(self._dir.path().join("prometheus.log"));
        panic!("prometheus did not become ready: {log:?}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server on a fresh data directory and SQLite database, with `canary` (TOML) after
/// the test host policy in its config.
fn start_server(canary: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gennaker.toml");
    std::fs::write(&config, format!("{}{canary}", test_host_policy())).unwrap();
    let url = format!("sqlite://{}/gennaker.db", dir.path().display());
    let server = Server::start_with(
        dir.path().to_path_buf(),
        url,
        vec!["--config".into(), config.display().to_string()],
    );
    (dir, server)
}

/// The local provider's Prometheus target file under `data_dir`.
fn targets_file(data_dir: &Path) -> PathBuf {
    data_dir
        .join("local")
        .join("prometheus")
        .join("targets.json")
}

/// The canary config judging `errors` (an increase fails it) from `query`.
fn canary_config(name: &str, query: Value) -> Value {
    json!({
        "name": name, "applications": ["shop"],
        "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
        "metrics": [{"name": "errors", "query": query, "groups": ["errors"], "scopeName": "default",
                     "analysisConfigurations": {"canary": {"direction": "increase"}}}],
        "classifier": {"groupWeights": {"errors": 100}}
    })
}

/// The warm-up of an analysis on Prometheus (minutes): a new instance reaches it through
/// the target file within about 5 s (its discovery batches updates), then needs two
/// scrapes for a rate; and the canary group's name is the one of the previous release's
/// canary, whose last samples a window starting at once would still see.
const PROMETHEUS_WARMUP: &str = "0.15";

/// The error ratio of one server group as Prometheus computes it from the demo app's
/// counters (`or vector(0)`: a group that never failed has no 500 series).
const PROMQL_ERRORS: &str = "PromQL:(sum(rate(demo_requests_total{server_group=\"${scope}\",status=\"500\"}[4s])) or vector(0)) / sum(rate(demo_requests_total{server_group=\"${scope}\"}[4s]))";

/// The cluster of both pipelines: two demo app instances of `${parameters.version}`
/// failing `${parameters.errorRate}` of their requests, behind `shop-web`.
fn cluster(strategy: &str) -> Value {
    json!({
        "application": "shop", "stack": "web", "account": "local", "cloudProvider": "local",
        "capacity": {"min": 2, "max": 2, "desired": 2},
        "loadBalancers": ["shop-web"],
        "strategy": strategy,
        "waitForUpInstancesTimeoutMs": 15000,
        "artifact": {"path": BIN},
        "args": ["demo-app", "--version", "${parameters.version}", "--error-rate", "${parameters.errorRate}"],
        "healthCheck": {"path": "/health"},
        "gracePeriodSeconds": 5
    })
}

/// `install` deploys production (red/black); `release` is the canary release judged
/// with `config` on `account`, `intervals` judgements of 6 s in its one analysis after
/// `warmup` minutes.
fn pipelines(config: &str, account: &str, intervals: u32, warmup: &str) -> [Value; 2] {
    let parameters = json!([
        {"name": "version", "required": true},
        {"name": "errorRate", "default": "0"}
    ]);
    let install = json!({
        "application": "shop", "name": "install", "parameterConfig": parameters,
        "stages": [{"refId": "1", "type": "deploy", "name": "Install ${parameters.version}",
                    "clusters": [cluster("redblack")]}]
    });
    let mut canary = cluster("canary");
    canary["canary"] = json!({
        "analysis": {"canaryConfigName": config, "metricsAccountName": account,
                     "scoreThresholds": {"pass": "75", "marginal": "50"},
                     "canaryAnalysisIntervalMins": "0.1", "beginCanaryAnalysisAfterMins": warmup,
                     "scopes": [{"scopeName": "default", "step": "1"}]},
        "capacity": {"desired": 1},
        "steps": [{"setWeight": 20},
                  {"analysis": {"lifetimeDuration": format!("PT{}S", 6 * intervals)}},
                  {"setWeight": 50}, {"pause": {"duration": "1s"}}]
    });
    let release = json!({
        "application": "shop", "name": "release", "parameterConfig": parameters,
        "stages": [{"refId": "1", "type": "deploy", "name": "Canary ${parameters.version}",
                    "clusters": [canary]}]
    });
    [install, release]
}

/// What only these tests ask the API.
impl Api {
    async fn run(&self, pipeline: &str, version: &str, error_rate: &str) -> String {
        let execution = self
            .post(
                &format!("/api/v1/applications/shop/pipelines/{pipeline}/executions"),
                json!({"parameters": {"version": version, "errorRate": error_rate}}),
            )
            .await;
        execution["id"].as_str().unwrap().to_owned()
    }

    async fn run_to_end(&self, pipeline: &str, version: &str, error_rate: &str) -> Value {
        let id = self.run(pipeline, version, error_rate).await;
        self.wait_end(&id).await
    }

    /// The canary report of the execution's analysis (for failure messages).
    async fn report(&self, execution: &Value) -> Value {
        let Some(analysis) = stages_of(execution, "kayentaCanary").first().cloned() else {
            return Value::Null;
        };
        self.attempt(
            reqwest::Method::GET,
            &format!(
                "/api/v1/executions/{}/stages/{}/canary",
                execution["id"].as_str().unwrap(),
                analysis["id"].as_str().unwrap()
            ),
            None,
        )
        .await
        .1
    }

    async fn weights(&self) -> BTreeMap<String, u64> {
        let balancers = self.get("/api/v1/applications/shop/loadBalancers").await;
        balancers[0]["weights"]
            .as_object()
            .map(|w| {
                w.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn balancer_url(&self) -> String {
        let balancers = self.get("/api/v1/applications/shop/loadBalancers").await;
        format!("http://{}/", balancers[0]["address"].as_str().unwrap())
    }

    /// `(name, disabled)` of the application's server groups, by name.
    async fn groups(&self) -> Vec<(String, bool)> {
        let mut groups: Vec<(String, bool)> = self
            .server_groups()
            .await
            .iter()
            .map(|g| {
                (
                    g["name"].as_str().unwrap().to_owned(),
                    g["disabled"].as_bool().unwrap(),
                )
            })
            .collect();
        groups.sort();
        groups
    }

    /// Waits (bounded) until the application has `count` server groups: a failed
    /// stage's rollback runs right after the execution ends.
    async fn wait_groups(&self, count: usize) -> Vec<(String, bool)> {
        let deadline = Instant::now() + DEPLOY_PATIENCE;
        loop {
            let groups = self.groups().await;
            if groups.len() == count || Instant::now() > deadline {
                return groups;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Creates `shop`, its load balancer, the canary configs and the pipelines; returns
/// the load balancer's URL.
async fn set_up(api: &Api, config: &str, account: &str, intervals: u32, warmup: &str) -> String {
    api.post(
        "/api/v1/applications",
        json!({"name": "shop", "email": "team@example.com"}),
    )
    .await;
    let done = api
        .task(json!({"job": [{
            "type": "upsertLoadBalancer", "name": "shop-web", "application": "shop",
            "account": "local", "cloudProvider": "local", "listen": "127.0.0.1:0"
        }]}))
        .await;
    assert_eq!(done["status"], "SUCCEEDED", "{done:#}");
    api.post(
        "/api/v1/canaryConfigs",
        canary_config(
            BUILTIN_CONFIG,
            json!({"type": "builtin", "metricName": "error_ratio"}),
        ),
    )
    .await;
    api.post(
        "/api/v1/canaryConfigs",
        canary_config(
            PROMETHEUS_CONFIG,
            json!({"type": "prometheus", "customInlineTemplate": PROMQL_ERRORS}),
        ),
    )
    .await;
    for pipeline in pipelines(config, account, intervals, warmup) {
        let saved = api
            .post("/api/v1/applications/shop/pipelines", pipeline)
            .await;
        assert_eq!(saved["warnings"], json!([]), "{saved:#}");
    }
    api.balancer_url().await
}

/// One answer the load generator got.
#[derive(Debug, Clone)]
struct Answer {
    /// The HTTP status, or the error when there was no answer.
    status: Result<u16, String>,
    /// The demo app's `version`, when it answered.
    version: Option<String>,
    /// The demo app's `instance` (`<server group>-<n>`), when it answered.
    instance: Option<String>,
}

impl Answer {
    fn failed(&self) -> bool {
        !matches!(self.status, Ok(200..=299))
    }

    /// Whether a canary instance of `version` answered this (its own failure share).
    fn answered_by_canary_of(&self, version: &str) -> bool {
        self.version.as_deref() == Some(version)
            && self
                .instance
                .as_deref()
                .is_some_and(|i| i.starts_with("shop-web-canary-v"))
    }
}

/// Bounded traffic through the load balancer (count and time), recording every
/// failed answer and who served the good ones.
struct Load {
    stop: Arc<AtomicBool>,
    total: Arc<AtomicU64>,
    served: Arc<Mutex<BTreeMap<String, u64>>>,
    failures: Arc<Mutex<Vec<Answer>>>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts the clients; they read the URL before every request, so a test may
    /// point them elsewhere.
    fn start(url: Arc<RwLock<String>>) -> Load {
        let load = Load {
            stop: Arc::default(),
            total: Arc::default(),
            served: Arc::default(),
            failures: Arc::default(),
            clients: Vec::new(),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let started = Instant::now();
        let clients = (0..CLIENTS)
            .map(|_| {
                let (stop, total, served, failures, http, url) = (
                    load.stop.clone(),
                    load.total.clone(),
                    load.served.clone(),
                    load.failures.clone(),
                    http.clone(),
                    url.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed)
                        && started.elapsed() < MAX_LOAD
                        && total.fetch_add(1, Ordering::Relaxed) < MAX_REQUESTS
                    {
                        let target = url.read().unwrap().clone();
                        let answer = match http.get(&target).send().await {
                            Ok(response) => {
                                let status = response.status().as_u16();
                                let body: Value = response.json().await.unwrap_or(Value::Null);
                                Answer {
                                    status: Ok(status),
                                    version: body["version"].as_str().map(str::to_owned),
                                    instance: body["instance"].as_str().map(str::to_owned),
                                }
                            }
                            Err(err) => Answer {
                                status: Err(err.to_string()),
                                version: None,
                                instance: None,
                            },
                        };
                        if answer.failed() {
                            failures.lock().unwrap().push(answer);
                        } else {
                            let who = answer.instance.clone().unwrap_or_else(|| "?".into());
                            *served.lock().unwrap().entry(who).or_default() += 1;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        Load { clients, ..load }
    }

    /// Stops the clients: how many requests went out, who answered the good ones, and
    /// the failed answers.
    async fn stop(self) -> (u64, BTreeMap<String, u64>, Vec<Answer>) {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            client.await.unwrap();
        }
        let total = self.total.load(Ordering::Relaxed).min(MAX_REQUESTS);
        let served = self.served.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        (total, served, failures)
    }
}

/// Whether process `pid` runs: it exists and is not a zombie (an instance the server
/// started before its SIGKILL is reaped by whoever adopted it, not by the server).
fn running(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit(')').next().unwrap_or("").trim_start();
        !state.starts_with('Z') && !state.starts_with('X')
    })
}

/// The stages of `execution` of `stage_type`.
fn stages_of<'a>(execution: &'a Value, stage_type: &str) -> Vec<&'a Value> {
    execution["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["type"] == stage_type)
        .collect()
}

/// The scores the release's judgements recorded, in order of their names.
fn judged(execution: &Value) -> Vec<(String, f64)> {
    let mut scores: Vec<(String, f64)> = stages_of(execution, "runCanary")
        .into_iter()
        .filter(|s| s["status"] == "SUCCEEDED" || s["status"] == "TERMINAL")
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["context"]["canaryScore"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect();
    scores.sort_by(|a, b| a.0.cmp(&b.0));
    scores
}

/// Production v1, a canary of `bad` with 20% errors (rolled back), then a healthy
/// canary of `good` (promoted), all under load; checks the infrastructure after each
/// and that nothing outside the bad canary's own share failed.
async fn bad_then_good(api: &Api, lb: String, v1: &str, bad: &str, good: &str) {
    let installed = api.run_to_end("install", v1, "0").await;
    assert_eq!(installed["status"], "SUCCEEDED", "{installed:#}");
    let production = api.groups().await;
    assert_eq!(production, vec![("shop-web-v000".to_owned(), false)]);

    let load = Load::start(Arc::new(RwLock::new(lb)));
    let failed = api.run_to_end("release", bad, "0.2").await;
    assert_eq!(failed["status"], "TERMINAL", "{failed:#}");
    let scores = judged(&failed);
    // The verdict is the last judgement's: an early interval may still pass (the canary
    // has served few requests yet), the analysis stops at the first at or below marginal.
    assert!(
        scores.last().is_some_and(|(_, s)| *s <= 50.0),
        "the bad canary scores at or below marginal: {scores:?}"
    );
    let analysis = stages_of(&failed, "kayentaCanary");
    assert_eq!(analysis.len(), 1);
    assert_eq!(analysis[0]["status"], "TERMINAL", "{:#}", analysis[0]);
    let groups = api.wait_groups(1).await;
    assert_eq!(
        groups,
        vec![("shop-web-v000".to_owned(), false)],
        "baseline and canary are destroyed, production stays"
    );
    assert_eq!(
        api.weights().await,
        BTreeMap::from([("shop-web-v000".to_owned(), 100)])
    );
    assert!(demo_processes(bad).is_empty(), "no {bad} instance is left");
    assert_eq!(
        demo_processes(v1).len(),
        2,
        "production's two instances run, the baseline's is gone"
    );
    // The cancel routine records what it did once it is done.
    let failed = api
        .get(&format!(
            "/api/v1/executions/{}",
            failed["id"].as_str().unwrap()
        ))
        .await;
    let rolled_back: Vec<&Value> = failed["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["context"]["rollbackResult"].is_object())
        .collect();
    assert_eq!(rolled_back.len(), 1, "{failed:#}");
    assert_eq!(
        rolled_back[0]["context"]["rollbackResult"]["trafficRestoredTo"],
        json!(["shop-web-v000"]),
        "{:#}",
        rolled_back[0]
    );

    let promoted = api.run_to_end("release", good, "0").await;
    assert_eq!(
        promoted["status"],
        "SUCCEEDED",
        "{promoted:#}\n{:#}",
        api.report(&promoted).await
    );
    let scores = judged(&promoted);
    assert!(
        scores.len() >= 2 && scores.iter().all(|(_, s)| *s >= 75.0),
        "the healthy canary passes every interval: {scores:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (total, served, failures) = load.stop().await;

    let groups = api.groups().await;
    assert_eq!(
        groups,
        vec![
            ("shop-web-v000".to_owned(), true),
            ("shop-web-v001".to_owned(), false)
        ],
        "v2 is production, v1 disabled, no baseline or canary left"
    );
    assert_eq!(
        api.weights().await,
        BTreeMap::from([("shop-web-v001".to_owned(), 100)])
    );
    assert_eq!(demo_processes(good).len(), 2, "v2 runs its two instances");
    assert_eq!(
        demo_processes(v1).len(),
        2,
        "disabled v1 keeps its two instances (no scaleDown), no baseline"
    );
    let outside: Vec<&Answer> = failures
        .iter()
        .filter(|a| !a.answered_by_canary_of(bad))
        .collect();
    let own = failures.len() - outside.len();
    assert!(
        outside.is_empty(),
        "{} of {total} requests failed outside the bad canary's share: {outside:?}",
        outside.len()
    );
    assert!(
        own > 0,
        "the bad canary answered some errors ({total} requests)"
    );
    let by_group = |prefix: &str| -> u64 {
        served
            .iter()
            .filter(|(instance, _)| instance.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    };
    for group in [
        "shop-web-v000-",
        "shop-web-v001-",
        "shop-web-baseline-v000-",
        "shop-web-canary-v000-",
    ] {
        assert!(by_group(group) > 0, "{group} served: {served:?}");
    }
    eprintln!(
        "load: {total} requests, {own} answered with errors by the bad canary, served by {served:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_judges_a_bad_canary_rolled_back_and_a_good_one_promoted_under_load() {
    let _leftovers = KillLeftovers("pq-");
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(&targets_file(dir.path()));
    let http = reqwest::Client::new();
    prometheus.ready(&http).await;
    let canary = format!(
        "[canary]\n[[canary.accounts]]\nname = \"prom\"\nkind = \"prometheus\"\nurl = \"{}\"\ntimeout_seconds = 5\n",
        prometheus.url()
    );
    let config = dir.path().join("gennaker.toml");
    std::fs::write(&config, format!("{}{canary}", test_host_policy())).unwrap();
    let server = Server::start_with(
        dir.path().to_path_buf(),
        format!("sqlite://{}/gennaker.db", dir.path().display()),
        vec!["--config".into(), config.display().to_string()],
    );
    let api = Api::new(&server);
    server.ready(&api.http).await;
    let lb = set_up(&api, PROMETHEUS_CONFIG, "prom", 2, PROMETHEUS_WARMUP).await;
    bad_then_good(&api, lb, "pq-v1", "pq-bad", "pq-v2").await;

    // Prometheus saw every group through the target file, by the demo app's labels
    // (the promoted group's first requests may still be one scrape away).
    let groups = [
        "shop-web-v000",
        "shop-web-v001",
        "shop-web-baseline-v000",
        "shop-web-canary-v000",
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen: Value = http
            .get(format!(
                "{}/api/v1/label/server_group/values",
                prometheus.url()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let seen = seen["data"].as_array().cloned().unwrap_or_default();
        if groups.iter().all(|g| seen.contains(&json!(g))) {
            break;
        }
        assert!(Instant::now() < deadline, "{groups:?} not all in {seen:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    destroy_all(&api, "pq-").await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_source_judges_a_bad_canary_rolled_back_and_a_good_one_promoted_under_load() {
    let _leftovers = KillLeftovers("bq-");
    let (_dir, server) = start_server("");
    let api = Api::new(&server);
    server.ready(&api.http).await;
    let lb = set_up(&api, BUILTIN_CONFIG, "builtin", 2, "0").await;
    bad_then_good(&api, lb, "bq-v1", "bq-bad", "bq-v2").await;
    destroy_all(&api, "bq-").await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_judgements_resumes_the_analysis_without_judging_twice() {
    let _leftovers = KillLeftovers("kq-");
    let (dir, mut server) = start_server("");
    let api = Api::new(&server);
    server.ready(&api.http).await;
    let lb = set_up(&api, BUILTIN_CONFIG, "builtin", 3, "0").await;
    let installed = api.run_to_end("install", "kq-v1", "0").await;
    assert_eq!(installed["status"], "SUCCEEDED", "{installed:#}");

    let url = Arc::new(RwLock::new(lb));
    let load = Load::start(url.clone());
    let id = api.run("release", "kq-v2", "0").await;
    // Kill the server once the first judgement is recorded and the second not begun.
    let deadline = Instant::now() + DEPLOY_PATIENCE;
    let before = loop {
        let execution = api.get(&format!("/api/v1/executions/{id}")).await;
        let status = |name: &str| {
            execution["stages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == name)
                .map(|s| s["status"].as_str().unwrap().to_owned())
        };
        if status("Run Canary #1").as_deref() == Some("SUCCEEDED")
            && status("Interval Wait #2").as_deref() == Some("RUNNING")
        {
            break execution;
        }
        assert!(
            Instant::now() < deadline
                && matches!(
                    execution["status"].as_str(),
                    Some("RUNNING" | "NOT_STARTED")
                ),
            "the first judgement never completed: {execution:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The baseline's and canary's processes, to check they are gone at the end.
    let mut side_pids = Vec::new();
    for group in api.server_groups().await {
        let name = group["name"].as_str().unwrap();
        if name.contains("-baseline-") || name.contains("-canary-") {
            for instance in group["instances"].as_array().unwrap() {
                side_pids.push(instance["details"]["pid"].as_u64().unwrap());
            }
        }
    }
    assert_eq!(side_pids.len(), 2, "one baseline and one canary instance");
    server.kill();
    server.spawn();
    server.ready(&api.http).await;
    let after = api.balancer_url().await;
    eprintln!(
        "balancer before the kill {}, after {after}",
        url.read().unwrap()
    );
    *url.write().unwrap() = after;
    let done = api.wait_end(&id).await;
    let (total, _served, failures) = load.stop().await;
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for failure in &failures {
        let kind = match &failure.status {
            Ok(status) => format!("{status} {:?}", failure.instance),
            Err(err) => err.chars().take(80).collect(),
        };
        *kinds.entry(kind).or_default() += 1;
    }
    eprintln!("load: {total} requests, failures {kinds:#?}");
    // The balancer runs in the server: while it is down requests find nothing to
    // connect to, but once it listens again every one is served (adopted instances
    // are routed at once, not after their next health check).
    assert!(
        failures.iter().all(|f| f.status.is_err()),
        "only requests sent while the server was down failed: {kinds:#?}"
    );
    assert_eq!(done["status"], "SUCCEEDED", "{done:#}");

    // Three judgements, one each; the first is the one recorded before the kill.
    let runs = stages_of(&done, "runCanary");
    let names: Vec<&str> = runs.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["Run Canary #1", "Run Canary #2", "Run Canary #3"],
        "{done:#}"
    );
    for run in &runs {
        assert_eq!(run["status"], "SUCCEEDED", "{run:#}");
        assert!(run["context"]["canaryScore"].is_number(), "{run:#}");
    }
    let first_before = stages_of(&before, "runCanary")
        .into_iter()
        .find(|s| s["name"] == "Run Canary #1")
        .unwrap();
    assert_eq!(
        runs[0]["endTime"], first_before["endTime"],
        "the first judgement is not made again"
    );
    assert_eq!(
        runs[0]["context"]["canaryScore"],
        first_before["context"]["canaryScore"]
    );
    let analysis = stages_of(&done, "kayentaCanary");
    assert_eq!(analysis.len(), 1);
    let scores = analysis[0]["context"]["canaryScores"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(scores.len(), 3, "one score per interval: {:#}", analysis[0]);
    // The windows follow each other from the analysis' start, restart or not.
    let window = |run: &Value| -> (String, String) {
        let experiment = &run["context"]["scopes"]["default"]["experimentScope"];
        (
            experiment["start"].as_str().unwrap().to_owned(),
            experiment["end"].as_str().unwrap().to_owned(),
        )
    };
    let windows: Vec<(String, String)> = runs.iter().map(|r| window(r)).collect();
    assert_eq!(
        windows[0].0, windows[1].0,
        "cumulative windows: {windows:?}"
    );
    assert!(
        windows[0].1 < windows[1].1 && windows[1].1 < windows[2].1,
        "{windows:?}"
    );

    let groups = api.groups().await;
    assert_eq!(
        groups,
        vec![
            ("shop-web-v000".to_owned(), true),
            ("shop-web-v001".to_owned(), false)
        ],
        "no baseline or canary left"
    );
    for pid in side_pids {
        assert!(!running(pid), "the destroyed group's process {pid} is gone");
    }
    assert_eq!(demo_processes("kq-v1").len(), 2, "v1's two, no baseline");
    assert_eq!(demo_processes("kq-v2").len(), 2, "v2's two, no canary");
    assert!(total > 0);
    destroy_all(&api, "kq-").await;
    drop(server);
    drop(dir);
}
