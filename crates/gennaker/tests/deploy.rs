//! Deploying for real, end to end: the real server binary, the local provider running
//! the demo app (`gennaker demo-app`) as child processes, and the built-in load balancer
//! carrying bounded traffic while red/black, rolling red/black, rollback and highlander
//! deploys replace the version behind it. Every request must succeed. A cluster
//! without an application deploys into the pipeline's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::api::{
    Api, DEPLOY_PATIENCE, KillLeftovers, demo_processes, destroy_all, start_server,
};
use support::{BIN, Server, TOKEN};

/// Concurrent clients of the load generator.
const CLIENTS: usize = 4;
/// The most requests one load run sends (bounded whatever happens).
const MAX_REQUESTS: u64 = 50_000;

/// What only the release pipeline's tests ask the API.
impl Api {
    async fn release(&self, version: &str, strategy: &str, healthy: bool) -> Value {
        let execution = self
            .post(
                "/api/v1/applications/shop/pipelines/release/executions",
                json!({"parameters": {
                    "version": version,
                    "strategy": strategy,
                    "healthy": healthy.to_string(),
                }}),
            )
            .await;
        self.wait_end(execution["id"].as_str().unwrap()).await
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
}

/// Creates the application every test deploys.
async fn create_shop(api: &Api) {
    api.post(
        "/api/v1/applications",
        json!({"name": "shop", "email": "team@example.com"}),
    )
    .await;
}

/// Sets up the application, the load balancer and the release pipeline; returns the
/// load balancer's URL.
async fn set_up(api: &Api) -> String {
    create_shop(api).await;
    let done = api
        .task(json!({"job": [{
            "type": "upsertLoadBalancer", "name": "shop-web", "application": "shop",
            "account": "local", "cloudProvider": "local", "listen": "127.0.0.1:0"
        }]}))
        .await;
    assert_eq!(done["status"], "SUCCEEDED", "{done:#}");
    api.post(
        "/api/v1/applications/shop/pipelines",
        release_pipeline(Path::new(BIN)),
    )
    .await;
    let balancers = api.get("/api/v1/applications/shop/loadBalancers").await;
    format!("http://{}/", balancers[0]["address"].as_str().unwrap())
}

fn release_pipeline(exe: &Path) -> Value {
    json!({
        "application": "shop",
        "name": "release",
        "parameterConfig": [
            {"name": "version", "required": true},
            {"name": "strategy", "default": "redblack"},
            {"name": "healthy", "default": "true"}
        ],
        "stages": [{
            "refId": "1", "type": "deploy", "name": "Deploy ${parameters.version}",
            "clusters": [{
                "application": "shop", "stack": "web", "account": "local", "cloudProvider": "local",
                "capacity": {"min": 2, "max": 2, "desired": 2},
                "loadBalancers": ["shop-web"],
                "strategy": "${parameters.strategy}",
                "targetPercentages": [50, 100],
                "rollback": {"onFailure": true},
                "waitForUpInstancesTimeoutMs": 8000,
                "artifact": {"path": exe.display().to_string()},
                "args": ["demo-app", "--version", "${parameters.version}"],
                "env": {"DEMO_UNHEALTHY": "${parameters.healthy == 'false' ? 'true' : 'false'}"},
                "healthCheck": {"path": "/health"},
                "gracePeriodSeconds": 5
            }]
        }]
    })
}

/// Bounded traffic through the load balancer, counting failures and who served.
struct Load {
    stop: Arc<AtomicBool>,
    total: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    served: Arc<std::sync::Mutex<BTreeMap<String, u64>>>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(url: &str) -> Load {
        let load = Load {
            stop: Arc::default(),
            total: Arc::default(),
            failed: Arc::default(),
            served: Arc::default(),
            failures: Arc::default(),
            clients: Vec::new(),
        };
        let http = reqwest::Client::new();
        let clients = (0..CLIENTS)
            .map(|_| {
                let (stop, total, failed, served, failures, http, url) = (
                    load.stop.clone(),
                    load.total.clone(),
                    load.failed.clone(),
                    load.served.clone(),
                    load.failures.clone(),
                    http.clone(),
                    url.to_owned(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed)
                        && total.fetch_add(1, Ordering::Relaxed) < MAX_REQUESTS
                    {
                        match http.get(&url).send().await {
                            Ok(response) if response.status().is_success() => {
                                let body: Value = response.json().await.unwrap_or(Value::Null);
                                let version = body["version"].as_str().unwrap_or("?").to_owned();
                                *served.lock().unwrap().entry(version).or_default() += 1;
                            }
                            other => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                let why = match other {
                                    Ok(response) => format!("HTTP {}", response.status()),
                                    Err(err) => err.to_string(),
                                };
                                failures.lock().unwrap().push(why);
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
            })
            .collect();
        Load { clients, ..load }
    }

    async fn stop(self) -> (u64, u64, BTreeMap<String, u64>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            client.await.unwrap();
        }
        let total = self.total.load(Ordering::Relaxed).min(MAX_REQUESTS);
        let served = self.served.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        (total, self.failed.load(Ordering::Relaxed), served, failures)
    }
}

/// Runs the CLI against `server`; it must succeed. Returns what it printed.
fn cli(server: &Server, args: &[&str]) -> String {
    let output = std::process::Command::new(BIN)
        .args(args)
        .env("GENNAKER_URL", server.url(""))
        .env("GENNAKER_TOKEN", TOKEN)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "gennaker {args:?} failed: {printed}"
    );
    printed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_strategy_and_a_rollback_under_load_without_a_failed_request() {
    let _leftovers = KillLeftovers("zd-");
    let (_dir, server) = start_server();
    let api = Api::new(&server);
    server.ready(&api.http).await;
    let lb = set_up(&api).await;
    let v1 = api.release("zd-v1", "", true).await;
    assert_eq!(v1["status"], "SUCCEEDED", "{v1:#}");

    let load = Load::start(&lb);
    for (version, strategy) in [("zd-v2", "redblack"), ("zd-v3", "rollingredblack")] {
        let done = api.release(version, strategy, true).await;
        assert_eq!(done["status"], "SUCCEEDED", "{strategy}: {done:#}");
    }
    // Roll the cluster back from v3 (the newest) to v2.
    let newest = api
        .server_groups()
        .await
        .into_iter()
        .filter(|g| g["disabled"] == false)
        .max_by_key(|g| g["createdTime"].as_i64().unwrap_or(0))
        .unwrap();
    let rollback = api
        .post(
            &format!(
                "/api/v1/applications/shop/serverGroups/{}/rollback",
                newest["name"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    let rolled = api
        .wait_end(rollback["executionId"].as_str().unwrap())
        .await;
    assert_eq!(rolled["status"], "SUCCEEDED", "{rolled:#}");
    let done = api.release("zd-v4", "highlander", true).await;
    assert_eq!(done["status"], "SUCCEEDED", "highlander: {done:#}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (total, failed, served, failures) = load.stop().await;

    assert_eq!(
        failed, 0,
        "{failed} of {total} requests failed: {failures:?}"
    );
    assert!(total > 200, "the load ran ({total} requests)");
    for version in ["zd-v1", "zd-v2", "zd-v3", "zd-v4"] {
        assert!(
            served.get(version).copied().unwrap_or(0) > 0,
            "{version} served some requests: {served:?}"
        );
    }
    let groups = api.server_groups().await;
    assert_eq!(
        groups.len(),
        1,
        "highlander leaves one server group: {groups:#?}"
    );
    assert_eq!(api.weights().await.values().sum::<u64>(), 100);
    for version in ["zd-v1", "zd-v2", "zd-v3"] {
        assert!(
            demo_processes(version).is_empty(),
            "no {version} process is left"
        );
    }
    assert_eq!(demo_processes("zd-v4").len(), 2);
    destroy_all(&api, "zd-").await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_never_gets_healthy_is_rolled_back_and_the_old_one_keeps_the_traffic() {
    let _leftovers = KillLeftovers("rb-");
    let (_dir, server) = start_server();
    let api = Api::new(&server);
    server.ready(&api.http).await;
    let lb = set_up(&api).await;
    let v1 = api.release("rb-v1", "", true).await;
    assert_eq!(v1["status"], "SUCCEEDED", "{v1:#}");
    let good = api.server_groups().await[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();

    // The CLI shows the infrastructure and operates on it, as recorded executions.
    let listed = cli(&server, &["cluster", "list", "shop"]);
    assert!(
        listed.contains(&good) && listed.contains("2/2 up"),
        "{listed}"
    );
    let balancers = cli(&server, &["loadbalancer", "list", "shop"]);
    assert!(
        balancers.contains("shop-web") && balancers.contains(&format!("{good} 100%")),
        "{balancers}"
    );
    let resized = cli(
        &server,
        &[
            "servergroup",
            "resize",
            "shop",
            &good,
            "--desired",
            "3",
            "--watch",
        ],
    );
    assert!(resized.contains("SUCCEEDED"), "{resized}");
    let shown = cli(&server, &["servergroup", "get", "shop", &good]);
    assert!(shown.contains("3/3 up"), "{shown}");
    cli(
        &server,
        &[
            "servergroup",
            "resize",
            "shop",
            &good,
            "--desired",
            "2",
            "--watch",
        ],
    );

    let load = Load::start(&lb);
    let broken = api.release("rb-v2", "redblack", false).await;

    assert_eq!(broken["status"], "TERMINAL", "{broken:#}");
    // The failed stage's rollback (its cancellation routine) runs right after it fails.
    let deadline = Instant::now() + DEPLOY_PATIENCE;
    while api.server_groups().await.len() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let groups = api.server_groups().await;
    let names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        vec![good.as_str()],
        "the broken server group is gone"
    );
    assert_eq!(groups[0]["disabled"], false);
    assert_eq!(api.weights().await, BTreeMap::from([(good.clone(), 100)]));
    assert!(
        demo_processes("rb-v2").is_empty(),
        "no broken instance is left"
    );
    let (total, failed, served, failures) = load.stop().await;
    assert_eq!(
        failed, 0,
        "{failed} of {total} requests failed: {failures:?}"
    );
    assert_eq!(served.keys().collect::<Vec<_>>(), vec!["rb-v1"]);
    destroy_all(&api, "rb-").await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_red_black_deploy_completes_it_exactly_once() {
    let _leftovers = KillLeftovers("ck-");
    let (_dir, mut server) = start_server();
    let api = Api::new(&server);
    server.ready(&api.http).await;
    set_up(&api).await;
    let v1 = api.release("ck-v1", "", true).await;
    assert_eq!(v1["status"], "SUCCEEDED", "{v1:#}");

    let execution = api
        .post(
            "/api/v1/applications/shop/pipelines/release/executions",
            json!({"parameters": {"version": "ck-v2", "strategy": "redblack"}}),
        )
        .await;
    let id = execution["id"].as_str().unwrap().to_owned();
    // Kill the server as soon as the new server group exists and is starting.
    let deadline = Instant::now() + DEPLOY_PATIENCE;
    while api.server_groups().await.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the new server group never appeared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    server.spawn();
    server.ready(&api.http).await;
    let done = api.wait_end(&id).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done:#}");

    let groups = api.server_groups().await;
    assert_eq!(groups.len(), 2, "exactly one new server group: {groups:#?}");
    let enabled: Vec<&Value> = groups.iter().filter(|g| g["disabled"] == false).collect();
    assert_eq!(enabled.len(), 1, "only the new version takes traffic");
    assert_eq!(
        demo_processes("ck-v2").len(),
        2,
        "the new version runs its 2 instances, none doubled"
    );
    for group in &groups {
        for instance in group["instances"].as_array().unwrap() {
            if let Some(pid) = instance["details"]["pid"].as_u64() {
                assert!(
                    Path::new(&format!("/proc/{pid}")).exists(),
                    "instance {} runs",
                    instance["id"]
                );
            }
        }
    }
    destroy_all(&api, "ck-").await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_an_application_deploys_into_the_pipelines() {
    let _leftovers = KillLeftovers("na-");
    let (_dir, server) = start_server();
    let api = Api::new(&server);
    server.ready(&api.http).await;
    create_shop(&api).await;
    // Deck leaves `application` out of a cluster of the pipeline's own application.
    let saved = api
        .post(
            "/api/v1/applications/shop/pipelines",
            json!({
                "application": "shop",
                "name": "solo",
                "stages": [{
                    "refId": "1", "type": "deploy", "name": "Deploy",
                    "clusters": [{
                        "stack": "solo", "account": "local", "cloudProvider": "local",
                        "capacity": {"min": 1, "max": 1, "desired": 1},
                        "strategy": "",
                        "artifact": {"path": BIN},
                        "args": ["demo-app", "--version", "na-v1"],
                        "healthCheck": {"path": "/health"},
                        "gracePeriodSeconds": 5
                    }]
                }]
            }),
        )
        .await;
    let about_the_cluster: Vec<&Value> = saved["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| {
            w["path"]
                .as_str()
                .unwrap()
                .starts_with("$.stages[0].clusters[0]")
        })
        .collect();
    assert!(about_the_cluster.is_empty(), "{about_the_cluster:?}");

    let execution = api
        .post(
            "/api/v1/applications/shop/pipelines/solo/executions",
            json!({}),
        )
        .await;
    let done = api.wait_end(execution["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done:#}");
    let groups = api.server_groups().await;
    assert_eq!(groups.len(), 1, "{groups:#?}");
    assert_eq!(groups[0]["name"], "shop-solo-v000", "{groups:#?}");
    assert_eq!(groups[0]["disabled"], false);
    let instances = groups[0]["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1, "{groups:#?}");
    assert_eq!(instances[0]["health"], "Up", "{groups:#?}");
    assert_eq!(demo_processes("na-v1").len(), 1);

    destroy_all(&api, "na-").await;
    drop(server);
}
