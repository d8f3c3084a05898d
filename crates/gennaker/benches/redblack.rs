//! Platform time of a red/black deploy on the local provider: from the deploy's
//! `createServerGroup` stage start to the old server group disabled, minus the app's own
//! start-up (measured separately: process start to its first healthy answer). Runs an
//! embedded server on SQLite and prints JSON.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_gennaker");
const TOKEN: &str = "gnk_bench-admin-token-0123456789abcdef";
/// Red/black deploys measured.
const ROUNDS: usize = 5;

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn wait_end(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let execution = self
                .call(
                    reqwest::Method::GET,
                    &format!("/api/v1/executions/{id}"),
                    None,
                )
                .await;
            if matches!(
                execution["status"].as_str(),
                Some("SUCCEEDED" | "TERMINAL" | "CANCELED")
            ) {
                return execution;
            }
            assert!(Instant::now() < deadline, "{execution:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn release(&self, version: &str, strategy: &str) -> Value {
        let execution = self
            .call(
                reqwest::Method::POST,
                "/api/v1/applications/bench/pipelines/release/executions",
                Some(json!({"parameters": {"version": version, "strategy": strategy}})),
            )
            .await;
        let done = self.wait_end(execution["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "SUCCEEDED", "{done:#}");
        done
    }
}

fn stage<'a>(execution: &'a Value, stage_type: &str) -> &'a Value {
    execution["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == stage_type)
        .unwrap_or_else(|| panic!("no {stage_type} stage"))
}

/// The demo app's own start-up: process start to its first passing health check.
async fn app_startup() -> Duration {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(BIN)
        .args(["demo-app", "--version", "startup"])
        .env("PORT", port.to_string())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/health");
    loop {
        if let Ok(response) = http.get(&url).send().await
            && response.status().is_success()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    child.kill().await.unwrap();
    took
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let config = gennaker_server::ServerConfig {
        admin_token: Some(TOKEN.to_owned()),
        ..gennaker_server::ServerConfig::new(
            ([127, 0, 0, 1], 0).into(),
            dir.path().to_path_buf(),
            format!("sqlite://{}/gennaker.db", dir.path().display()),
        )
    };
    // The bench deploys this binary: its directory is the one artifact root.
    let local = gennaker_local::HostSettings {
        artifact_roots: vec![std::path::Path::new(BIN).parent().unwrap().to_path_buf()],
        ..gennaker_local::HostSettings::default()
    };
    let server = gennaker::wiring::start_server(
        config,
        &gennaker::wiring::WiringSettings {
            local,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let api = Api {
        http: reqwest::Client::new(),
        base: format!("http://{}", server.address()),
    };
    api.call(
        reqwest::Method::POST,
        "/api/v1/applications",
        Some(json!({"name": "bench", "email": "bench@example.com"})),
    )
    .await;
    let lb = api
        .call(
            reqwest::Method::POST,
            "/api/v1/applications/bench/tasks",
            Some(json!({"job": [{"type": "upsertLoadBalancer", "name": "bench-web", "listen": "127.0.0.1:0"}]})),
        )
        .await;
    api.wait_end(lb["executionId"].as_str().unwrap()).await;
    api.call(
        reqwest::Method::POST,
        "/api/v1/applications/bench/pipelines",
        Some(json!({
            "application": "bench", "name": "release",
            "parameterConfig": [{"name": "version"}, {"name": "strategy"}],
            "stages": [{"refId": "1", "type": "deploy", "name": "Deploy", "clusters": [{
                "application": "bench", "stack": "web", "account": "local",
                "capacity": {"min": 3, "max": 3, "desired": 3}, "loadBalancers": ["bench-web"],
                "strategy": "${parameters.strategy}",
                "artifact": {"path": BIN}, "args": ["demo-app", "--version", "${parameters.version}"],
                "healthCheck": {"path": "/health"}
            }]}]
        })),
    )
    .await;
    api.release("v0", "").await;

    let mut platform = Vec::new();
    let mut total = Vec::new();
    let mut startup = Vec::new();
    for round in 1..=ROUNDS {
        let done = api.release(&format!("v{round}"), "redblack").await;
        let began = stage(&done, "createServerGroup")["startTime"]
            .as_i64()
            .unwrap();
        let disabled = stage(&done, "disableCluster")["endTime"].as_i64().unwrap();
        let app = app_startup().await.as_secs_f64() * 1000.0;
        let whole = (disabled - began) as f64;
        total.push(whole);
        startup.push(app);
        platform.push(whole - app);
    }
    let groups = api
        .call(
            reqwest::Method::GET,
            "/api/v1/applications/bench/serverGroups",
            None,
        )
        .await;
    let job: Vec<Value> = groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| json!({"type": "destroyServerGroup", "serverGroupName": g["name"]}))
        .collect();
    let cleanup = api
        .call(
            reqwest::Method::POST,
            "/api/v1/applications/bench/tasks",
            Some(json!({"job": job})),
        )
        .await;
    api.wait_end(cleanup["executionId"].as_str().unwrap()).await;
    server.stop().await.unwrap();
    let report = json!({
        "benchmark": "red/black deploy on the local provider (3 instances, SQLite)",
        "rounds": ROUNDS,
        "deploy_start_to_old_disabled_ms": {"median": median(total.clone()), "all": total},
        "app_startup_ms": {"median": median(startup.clone()), "all": startup},
        "platform_ms": {"median": median(platform.clone()), "all": platform},
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}
