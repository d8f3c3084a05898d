//! The web UI in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! which `scripts/test.sh` installs), driven over WebDriver against the real server
//! binary: sign in, run a pipeline from its parameter form, watch the stage graph turn
//! green live (server-sent events, no reload), approve a manual judgment, a forged
//! POST refused, a pipeline edited with an error shown at its JSON path, a read-only
//! user offered no action, and a server group rolled back from the clusters view with
//! the traffic moving back.
//!
//! Screenshots of the main pages land in `target/ui-screenshots/` for people to look at.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use support::api::{Api, KillLeftovers, destroy_all, start_server};
use support::{BIN, Server, TOKEN};

/// How long the page may take to show a change.
const PATIENCE: Duration = Duration::from_secs(30);

/// chromedriver on 127.0.0.1, killed when dropped, and Chromium's profile directory.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// Starts chromedriver and a headless Chromium session on it.
async fn browser() -> (Driver, Client) {
    let chromedriver = which("chromedriver").unwrap_or_else(|| {
        panic!("chromedriver is not installed: run scripts/test.sh, or `apt-get install chromium chromium-driver`")
    });
    let chromium = which("chromium").unwrap_or_else(|| {
        panic!("chromium is not installed: run scripts/test.sh, or `apt-get install chromium chromium-driver`")
    });
    let port = free_port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let profile = tempfile::tempdir().unwrap();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--no-first-run", "--disable-extensions",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let driver = Driver {
        child,
        port,
        _profile: profile,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
        {
            Ok(client) => break client,
            Err(err) if Instant::now() < deadline => {
                let _ = err;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("cannot start a Chromium session: {err}"),
        }
    };
    // Elements are looked for until they appear (a click that submits a form returns
    // before the next page has loaded); checks that something is absent use `absent`.
    client
        .update_timeouts(TimeoutConfiguration::new(
            None,
            None,
            Some(Duration::from_secs(10)),
        ))
        .await
        .unwrap();
    (driver, client)
}

/// Waits until the browser is on a page whose path starts with `prefix`, and returns
/// that path.
async fn arrived_at(client: &Client, prefix: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let path = client.current_url().await.unwrap().path().to_owned();
        if path.starts_with(prefix) {
            return path;
        }
        assert!(
            Instant::now() < deadline,
            "the browser never arrived at {prefix}: it is on {path}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many elements match `css` now, without waiting for any to appear.
async fn count_now(client: &Client, css: &str) -> usize {
    client
        .execute(
            "return document.querySelectorAll(arguments[0]).length;",
            vec![json!(css)],
        )
        .await
        .unwrap()
        .as_u64()
        .unwrap() as usize
}

/// Where screenshots go: `target/ui-screenshots/`.
fn screenshot_dir() -> PathBuf {
    // BIN is target/<profile>/gennaker.
    let target = Path::new(BIN).parent().and_then(Path::parent).unwrap();
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

/// Waits until `check` holds on the page (polling the DOM; the page is not reloaded).
async fn until<F, Fut>(client: &Client, what: &str, check: F)
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if check(client.clone()).await {
            return;
        }
        if Instant::now() > deadline {
            let source = client.source().await.unwrap_or_default();
            panic!("the page never showed {what}:\n{source}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `data-status` of every stage node in the graph, by stage name.
async fn node_statuses(client: &Client) -> Vec<(String, String)> {
    let value = client
        .execute(
            "return Array.from(document.querySelectorAll('svg a.node')).map(n => [n.getAttribute('aria-label'), n.getAttribute('data-status')]);",
            vec![],
        )
        .await
        .unwrap();
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap_or_default().to_owned(),
                pair[1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn sign_in(client: &Client, server: &Server, token: &str) {
    client.goto(&server.url("/applications")).await.unwrap();
    // Not signed in: the sign-in form, which comes back to the page asked for.
    assert!(client.current_url().await.unwrap().path() == "/signin");
    client
        .find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    client
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(
        arrived_at(client, "/applications").await,
        "/applications",
        "signed in"
    );
}

fn release_pipeline() -> Value {
    json!({
        "application": "shop",
        "name": "release",
        "description": "Builds, waits for a person, ships.",
        "parameterConfig": [
            {"name": "version", "label": "Version", "required": true, "description": "What to ship"},
            {"name": "env", "label": "Environment", "hasOptions": true, "default": "staging",
             "options": [{"value": "staging"}, {"value": "prod"}]}
        ],
        "stages": [
            {"refId": "1", "type": "wait", "name": "Build", "waitTime": 2},
            {"refId": "2", "type": "wait", "name": "Scan", "waitTime": 1},
            {"refId": "3", "requisiteStageRefIds": ["1", "2"], "type": "manualJudgment",
             "name": "Approve", "instructions": "Ship ${parameters.version}?",
             "judgmentInputs": [{"value": "ship"}, {"value": "hold"}]},
            {"refId": "4", "requisiteStageRefIds": ["3"], "type": "wait", "name": "Ship", "waitTime": 1}
        ]
    })
}

#[tokio::test]
async fn sign_in_run_watch_live_judge_and_refuse_a_forged_post() {
    let (_dir, server) = start_server();
    let http = reqwest::Client::new();
    server.ready(&http).await;
    let api = Api::new(&server);
    api.post(
        "/api/v1/applications",
        json!({"name": "shop", "description": "The shop"}),
    )
    .await;
    api.post("/api/v1/applications/shop/pipelines", release_pipeline())
        .await;
    let (_driver, client) = browser().await;

    // The sign-in form.
    client.goto(&server.url("/signin")).await.unwrap();
    screenshot(&client, "signin").await;
    sign_in(&client, &server, TOKEN).await;
    screenshot(&client, "applications").await;

    // Run from the form generated from the parameters.
    client
        .goto(&server.url("/applications/shop/pipelines"))
        .await
        .unwrap();
    screenshot(&client, "pipelines").await;
    client
        .find(Locator::Css("a.button[href$='/pipelines/release/run']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let version = client
        .find(Locator::Css("input[name='p.version']"))
        .await
        .unwrap();
    assert_eq!(
        version.attr("required").await.unwrap().as_deref(),
        Some("true")
    );
    version.send_keys("v42").await.unwrap();
    client
        .find(Locator::Css("select[name='p.env']"))
        .await
        .unwrap()
        .select_by_value("prod")
        .await
        .unwrap();
    screenshot(&client, "run-form").await;
    client
        .find(Locator::Css("form.stack button.primary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let id = arrived_at(&client, "/executions/")
        .await
        .strip_prefix("/executions/")
        .expect("the run opens its execution")
        .to_owned();
    let execution = api.get(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(
        execution["trigger"]["parameters"],
        json!({"version": "v42", "env": "prod"})
    );

    // The graph turns green live: the page is never reloaded (the marker survives).
    client
        .execute("window.__notReloaded = true;", vec![])
        .await
        .unwrap();
    until(&client, "Build and Scan SUCCEEDED", |c| async move {
        let statuses = node_statuses(&c).await;
        statuses
            .iter()
            .filter(|(name, status)| {
                (name.starts_with("Build") || name.starts_with("Scan")) && status == "SUCCEEDED"
            })
            .count()
            == 2
    })
    .await;
    until(&client, "the judgment form", |c| async move {
        c.find(Locator::Css("section.judgment button[value=continue]"))
            .await
            .is_ok()
    })
    .await;
    let still = client
        .execute("return window.__notReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(still, json!(true), "the page updated without a reload");
    let instructions = client
        .find(Locator::Css("section.judgment .instructions"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(instructions, "Ship v42?");
    screenshot(&client, "execution-waiting-for-judgment").await;

    // A forged POST from the page's own origin, with the session cookie but no CSRF
    // token, is refused, and the judgment still waits.
    let approve = execution["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["refId"] == "3")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = client
        .execute(
            &format!(
                "return fetch('/executions/{id}/stages/{approve}/judgment', {{method: 'POST', credentials: 'same-origin', \
                 headers: {{'Content-Type': 'application/x-www-form-urlencoded'}}, body: 'judgmentStatus=continue'}}).then(r => r.status);"
            ),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(403));
    let waiting = api.get(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(waiting["status"], "RUNNING");

    // Approve from the page, with a choice.
    client
        .find(Locator::Css("section.judgment select[name=judgmentInput]"))
        .await
        .unwrap()
        .select_by_value("ship")
        .await
        .unwrap();
    client
        .find(Locator::Css("section.judgment button[value=continue]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(&client, "the execution SUCCEEDED", |c| async move {
        let statuses = node_statuses(&c).await;
        statuses.len() == 4 && statuses.iter().all(|(_, s)| s == "SUCCEEDED")
    })
    .await;
    until(&client, "the SUCCEEDED badge", |c| async move {
        c.find(Locator::Css("[data-execution-status=SUCCEEDED]"))
            .await
            .is_ok()
    })
    .await;
    screenshot(&client, "execution-succeeded").await;
    let done = api.get(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(done["status"], "SUCCEEDED");
    let judged = done["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["refId"] == "3")
        .unwrap();
    assert_eq!(judged["context"]["judgmentInput"], "ship");
    assert_eq!(judged["context"]["judgedBy"], "admin");

    client
        .goto(&server.url("/applications/shop/executions"))
        .await
        .unwrap();
    let segments = client
        .find_all(Locator::Css(".bar a.seg.st-SUCCEEDED"))
        .await
        .unwrap();
    assert_eq!(segments.len(), 4);
    screenshot(&client, "executions").await;

    // Edit the pipeline with an error: not saved, the problem shown at its JSON path.
    client
        .goto(&server.url("/applications/shop/pipelines/release/edit"))
        .await
        .unwrap();
    let mut broken = release_pipeline();
    broken["stages"][3]["requisiteStageRefIds"] = json!(["7"]);
    client
        .execute(
            "document.getElementById('config').value = arguments[0];",
            vec![json!(serde_json::to_string_pretty(&broken).unwrap())],
        )
        .await
        .unwrap();
    client
        .find(Locator::Css("form.stack button.primary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let path = client
        .find(Locator::Css("#edit-error .problems code.path"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        path.starts_with("$.stages[3].requisiteStageRefIds"),
        "{path}"
    );
    screenshot(&client, "pipeline-edit-with-problems").await;
    let history = api
        .get("/api/v1/applications/shop/pipelines/release/history")
        .await;
    assert_eq!(history.as_array().unwrap().len(), 1, "nothing was saved");
    client.close().await.unwrap();
}

#[tokio::test]
async fn a_read_only_user_is_offered_no_action() {
    let (_dir, server) = start_server();
    let http = reqwest::Client::new();
    server.ready(&http).await;
    let api = Api::new(&server);
    api.post("/api/v1/roles", json!({"name": "readers"})).await;
    api.post(
        "/api/v1/applications",
        json!({"name": "shop", "permissions": {"READ": ["readers"], "WRITE": ["admins"], "EXECUTE": ["admins"]}}),
    )
    .await;
    api.post("/api/v1/applications/shop/pipelines", release_pipeline())
        .await;
    let started = api
        .post(
            "/api/v1/applications/shop/pipelines/release/executions",
            json!({"parameters": {"version": "v1"}}),
        )
        .await;
    let id = started["id"].as_str().unwrap().to_owned();
    api.post(
        "/api/v1/users",
        json!({"name": "rita", "roles": ["readers"]}),
    )
    .await;
    let token = api
        .post("/api/v1/tokens", json!({"name": "rita-ui", "user": "rita"}))
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let (_driver, client) = browser().await;
    sign_in(&client, &server, &token).await;
    client
        .goto(&server.url(&format!("/executions/{id}")))
        .await
        .unwrap();
    until(&client, "the judgment stage running", |c| async move {
        node_statuses(&c)
            .await
            .iter()
            .any(|(name, status)| name.starts_with("Approve") && status == "RUNNING")
    })
    .await;
    // The only button on the page is "Sign out"; the only form, its.
    let buttons = count_now(&client, "main button").await;
    assert_eq!(buttons, 0, "{buttons} buttons");
    let forms = client.find_all(Locator::Css("form")).await.unwrap();
    assert_eq!(forms.len(), 1);
    assert_eq!(
        forms[0].attr("action").await.unwrap().as_deref(),
        Some("/signout")
    );
    screenshot(&client, "execution-read-only").await;
    client
        .goto(&server.url("/applications/shop/pipelines"))
        .await
        .unwrap();
    assert_eq!(count_now(&client, "a[href$='/run']").await, 0);
    client.close().await.unwrap();
    api.post(&format!("/api/v1/executions/{id}/cancel"), json!({}))
        .await;
}

/// A deploy of the demo app (this binary) as server group `version` of `shop-web`.
fn deploy_pipeline() -> Value {
    json!({
        "application": "shop",
        "name": "deploy",
        "parameterConfig": [{"name": "version", "required": true}],
        "stages": [{
            "refId": "1", "type": "deploy", "name": "Deploy ${parameters.version}",
            "clusters": [{
                "application": "shop", "stack": "web", "account": "local", "cloudProvider": "local",
                "capacity": {"min": 1, "max": 1, "desired": 1},
                "loadBalancers": ["shop-lb"],
                "strategy": "redblack",
                "waitForUpInstancesTimeoutMs": 8000,
                "artifact": {"path": BIN},
                "args": ["demo-app", "--version", "${parameters.version}"],
                "healthCheck": {"path": "/health"},
                "gracePeriodSeconds": 5
            }]
        }]
    })
}

/// The version the load balancer serves now.
async fn served_version(http: &reqwest::Client, balancer: &str) -> String {
    let body: Value = http
        .get(format!("http://{balancer}/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["version"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn roll_back_a_server_group_from_the_clusters_view() {
    let _leftovers = KillLeftovers("uiv");
    let (_dir, server) = start_server();
    let http = reqwest::Client::new();
    server.ready(&http).await;
    let api = Api::new(&server);
    api.post("/api/v1/applications", json!({"name": "shop"}))
        .await;
    let balancer = api
        .task(json!({"job": [{
            "type": "upsertLoadBalancer", "name": "shop-lb", "application": "shop",
            "account": "local", "cloudProvider": "local", "listen": "127.0.0.1:0"
        }]}))
        .await;
    assert_eq!(balancer["status"], "SUCCEEDED", "{balancer:#}");
    let balancers = api.get("/api/v1/applications/shop/loadBalancers").await;
    let address = balancers[0]["address"].as_str().unwrap().to_owned();
    api.post("/api/v1/applications/shop/pipelines", deploy_pipeline())
        .await;
    for version in ["uiv1", "uiv2"] {
        let started = api
            .post(
                "/api/v1/applications/shop/pipelines/deploy/executions",
                json!({"parameters": {"version": version}}),
            )
            .await;
        let done = api.wait_end(started["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "SUCCEEDED", "{done:#}");
    }
    assert_eq!(served_version(&http, &address).await, "uiv2");

    let (_driver, client) = browser().await;
    sign_in(&client, &server, TOKEN).await;
    client
        .goto(&server.url("/applications/shop/clusters"))
        .await
        .unwrap();
    let cards = client.find_all(Locator::Css("article.card")).await.unwrap();
    assert_eq!(cards.len(), 2, "two server groups");
    let up = client
        .find_all(Locator::Css("article.card li.inst.h-Up"))
        .await
        .unwrap();
    let out = client
        .find_all(Locator::Css("article.card.disabled li.inst.h-OutOfService"))
        .await
        .unwrap();
    assert_eq!((up.len(), out.len()), (1, 1), "v1 out of service, v2 up");
    screenshot(&client, "clusters").await;
    // The newest (v001) comes first: roll it back, confirming.
    client
        .find(Locator::Css(
            "article.card a.button[href*='shop-web-v001/rollback']",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    screenshot(&client, "confirm-rollback").await;
    client
        .find(Locator::Css("#confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let id = arrived_at(&client, "/executions/")
        .await
        .strip_prefix("/executions/")
        .expect("the rollback opens its task")
        .to_owned();
    until(&client, "the rollback SUCCEEDED", |c| async move {
        c.find(Locator::Css("[data-execution-status=SUCCEEDED]"))
            .await
            .is_ok()
    })
    .await;
    let task = api.get(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(task["type"], "ORCHESTRATION");
    assert_eq!(task["authentication"]["user"], "admin");
    assert_eq!(task["stages"][0]["type"], "rollbackServerGroup");
    // The traffic moved back to v1.
    assert_eq!(served_version(&http, &address).await, "uiv1");
    client
        .goto(&server.url("/applications/shop/clusters"))
        .await
        .unwrap();
    let disabled = client
        .find(Locator::Css("article.card.disabled h4"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(disabled.starts_with("shop-web-v001"), "{disabled}");
    screenshot(&client, "clusters-after-rollback").await;
    client.close().await.unwrap();
    destroy_all(&api, "uiv").await;
}
