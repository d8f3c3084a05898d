//! Triggers fire exactly once on real server processes: a server SIGKILLed around
//! firing (while a webhook is being handled, right after it was answered) and
//! restarted fires each matching pipeline once per event; two servers on one
//! PostgreSQL receiving the same event stream (every delivery sent to both) fire each
//! pipeline once per event, and a cron trigger once per tick.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use gennaker_store::testing::{TestBackend, TestDatabase};
use serde_json::{Value, json};
use support::api::Api;
use support::{Server, test_host_policy};

/// The bound on every wait.
const PATIENCE: Duration = Duration::from_secs(120);
/// The webhook pipelines every event fires.
const PIPELINES: [&str; 3] = ["build", "scan", "notify"];

/// A gennaker.toml whose servers re-handle a dead server's event after 1 s.
fn config(dir: &Path, extra: &str) -> Vec<String> {
    let path = dir.join("gennaker.toml");
    std::fs::write(
        &path,
        format!(
            "{}[triggers]\nevent_claim_seconds = 1\n{extra}",
            test_host_policy()
        ),
    )
    .unwrap();
    vec!["--config".to_owned(), path.display().to_string()]
}

/// The application, the trigger user and the pipelines: each webhook pipeline fires on
/// every `ci` event.
async fn prepare(api: &Api, cron: Option<&str>) {
    api.post(
        "/api/v1/applications",
        json!({"name": "shop", "email": "a@b.c"}),
    )
    .await;
    api.post("/api/v1/users", json!({"name": "triggers", "roles": []}))
        .await;
    for name in PIPELINES {
        api.post(
            "/api/v1/applications/shop/pipelines",
            json!({"name": name, "application": "shop",
                "triggers": [{"type": "webhook", "enabled": true, "source": "ci"}],
                "stages": [{"refId": "1", "type": "wait", "name": "w", "waitTime": 0}]}),
        )
        .await;
    }
    if let Some(expression) = cron {
        api.post(
            "/api/v1/applications/shop/pipelines",
            json!({"name": "tick", "application": "shop",
                "triggers": [{"type": "cron", "enabled": true, "cronExpression": expression}],
                "stages": [{"refId": "1", "type": "wait", "name": "w", "waitTime": 0}]}),
        )
        .await;
    }
}

async fn executions_of(api: &Api, pipeline: &str) -> Vec<Value> {
    api.get(&format!(
        "/api/v1/executions?application=shop&pipeline={pipeline}&limit=1000"
    ))
    .await
    .as_array()
    .cloned()
    .unwrap()
}

/// How many executions of `pipeline` each event (`payload.n`) started.
async fn per_event(api: &Api, pipeline: &str) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for execution in executions_of(api, pipeline).await {
        let n = execution["trigger"]["payload"]["n"].as_i64().unwrap();
        *counts.entry(n).or_default() += 1;
    }
    counts
}

/// Waits (bounded) until every pipeline has an execution for each of `events`; then
/// checks that each has exactly one.
async fn assert_each_fired_once(api: &Api, events: i64) {
    let deadline = Instant::now() + PATIENCE;
    let want: BTreeMap<i64, usize> = (0..events).map(|n| (n, 1)).collect();
    for pipeline in PIPELINES {
        loop {
            let counts = per_event(api, pipeline).await;
            if counts.len() as i64 >= events || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Anything late (a re-handled event) would show up now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for pipeline in PIPELINES {
        assert_eq!(
            per_event(api, pipeline).await,
            want,
            "pipeline {pipeline}: one execution per event (event n → count)"
        );
    }
}

/// Delivers event `n` of source `ci` to `server` (the same delivery id every time).
async fn deliver(http: &reqwest::Client, url: &str, n: i64) -> Result<reqwest::StatusCode, String> {
    http.post(format!("{url}/webhooks/webhook/ci"))
        .header("content-type", "application/json")
        .header("x-event-id", format!("delivery-{n}"))
        .body(json!({"n": n}).to_string())
        .send()
        .await
        .map(|response| response.status())
        .map_err(|err| err.to_string())
}

#[tokio::test]
async fn a_server_killed_around_firing_fires_each_pipeline_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("gennaker.db").display());
    let mut server = Server::start_with(dir.path().to_path_buf(), url, config(dir.path(), ""));
    let api = Api::new(&server);
    server.ready(&api.http).await;
    prepare(&api, None).await;
    let http = reqwest::Client::new();
    let base = server.url("");

    // Kills at varied moments of handling event n: while it is being received
    // (n ms after sending), or right after the server answered it.
    const EVENTS: i64 = 10;
    for n in 0..EVENTS {
        let answered = if n % 3 == 2 {
            let status = deliver(&http, &base, n).await;
            server.kill();
            status
        } else {
            let sending = {
                let http = http.clone();
                let base = base.clone();
                tokio::spawn(async move { deliver(&http, &base, n).await })
            };
            tokio::time::sleep(Duration::from_millis(u64::try_from(n * 4).unwrap())).await;
            server.kill();
            sending.await.unwrap()
        };
        server.spawn();
        server.ready(&api.http).await;
        // A sender that got no answer delivers again, as webhook senders do; one that
        // was answered does not: the server must finish the event by itself.
        match answered {
            Ok(status) => assert_eq!(status, 200),
            Err(_) => assert_eq!(deliver(&http, &base, n).await.unwrap(), 200),
        }
    }
    assert_each_fired_once(&api, EVENTS).await;
}

#[tokio::test]
async fn two_servers_on_one_postgres_receiving_the_same_events_fire_once() {
    let db = TestDatabase::create(TestBackend::Postgres).await.unwrap();
    let shared = tempfile::tempdir().unwrap();
    let key_file = format!(
        "[secrets]\nkey_file = {:?}\n",
        shared.path().join("secrets.key").display().to_string()
    );
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let servers: Vec<Server> = dirs
        .iter()
        .map(|dir| {
            Server::start_with(
                dir.path().to_path_buf(),
                db.url.clone(),
                config(dir.path(), &key_file),
            )
        })
        .collect();
    let apis: Vec<Api> = servers.iter().map(Api::new).collect();
    for (server, api) in servers.iter().zip(&apis) {
        server.ready(&api.http).await;
    }
    // Every two seconds.
    prepare(&apis[0], Some("0/2 * * * * ?")).await;

    // Each delivery goes to both servers at once.
    const EVENTS: i64 = 12;
    let http = reqwest::Client::new();
    let (first, second) = (servers[0].url(""), servers[1].url(""));
    for n in 0..EVENTS {
        let (one, two) = tokio::join!(deliver(&http, &first, n), deliver(&http, &second, n));
        assert_eq!(one.unwrap(), 200);
        assert_eq!(two.unwrap(), 200);
    }
    assert_each_fired_once(&apis[1], EVENTS).await;

    // Both servers' cron loops ran meanwhile: one execution per tick.
    let deadline = Instant::now() + PATIENCE;
    let ticks = loop {
        let ticks: Vec<i64> = executions_of(&apis[0], "tick")
            .await
            .iter()
            .map(|e| e["trigger"]["scheduledTime"].as_i64().unwrap())
            .collect();
        if ticks.len() >= 3 || Instant::now() > deadline {
            break ticks;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(ticks.len() >= 3, "the cron trigger fired: {ticks:?}");
    let mut distinct = ticks.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        ticks.len(),
        "one execution per tick: {ticks:?}"
    );
    assert!(ticks.iter().all(|t| t % 2000 == 0), "{ticks:?}");
}
