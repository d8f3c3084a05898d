//! More of the web UI in a real headless Chromium: a pipeline's revision history (edit
//! twice, see the diff, restore the first revision), the load balancers page (weights,
//! traffic share and the recent error ratio of real traffic), traffic shares and a
//! confirmed destroy on the clusters view (offered to those who may WRITE only), and a
//! canary stage's report inside the UI's layout.
//!
//! Screenshots land in `target/ui-screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use fantoccini::{Client, Locator};
use futures::future::BoxFuture;
use gennaker_canary::testing::canary_fixture;
use gennaker_server::{NoMoreMetrics, ServerConfig, Shutdown, Wiring};
use serde_json::{Value, json};
use support::api::{Api, KillLeftovers, demo_processes, destroy_all, start_server};
use support::browser::{
    arrived_at, browser, click, confirm_task, count_now, screenshot, sign_in_at, text_of, until,
};
use support::{BIN, TOKEN};

fn release_pipeline(wait: u64) -> Value {
    json!({
        "application": "shop",
        "name": "release",
        "description": "Waits, then ships.",
        "stages": [
            {"refId": "1", "type": "wait", "name": "Soak", "waitTime": wait},
            {"refId": "2", "requisiteStageRefIds": ["1"], "type": "wait", "name": "Ship", "waitTime": 1}
        ]
    })
}

/// Saves `document` from the pipeline's JSON editor.
async fn save_in_editor(client: &Client, base: &str, document: &Value) {
    client
        .goto(&format!("{base}/applications/shop/pipelines/release/edit"))
        .await
        .unwrap();
    client
        .execute(
            "document.getElementById('config').value = arguments[0];",
            vec![json!(serde_json::to_string_pretty(document).unwrap())],
        )
        .await
        .unwrap();
    click(client, "form.stack button.primary").await;
    let flash = text_of(client, ".flash-ok").await;
    assert!(flash.starts_with("Saved release"), "{flash}");
}

/// The `(kind, text)` of every line of the diff shown.
async fn diff_lines(client: &Client) -> Vec<(String, String)> {
    let value = client
        .execute(
            "return Array.from(document.querySelectorAll('table.difftable tbody tr')).map(r => [r.className, r.querySelector('code').textContent]);",
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
                pair[0].as_str().unwrap().to_owned(),
                pair[1].as_str().unwrap().trim().to_owned(),
            )
        })
        .collect()
}

fn has(lines: &[(String, String)], kind: &str, text: &str) -> bool {
    lines.iter().any(|(k, t)| k == kind && t == text)
}

#[tokio::test]
async fn edit_twice_see_the_diff_and_restore_the_first_revision() {
    let (_dir, server) = start_server();
    let http = reqwest::Client::new();
    server.ready(&http).await;
    let api = Api::new(&server);
    api.post("/api/v1/applications", json!({"name": "shop"}))
        .await;
    api.post("/api/v1/applications/shop/pipelines", release_pipeline(5))
        .await;
    let (_driver, client) = browser().await;
    let base = server.url("");
    sign_in_at(&client, &base, TOKEN).await;

    // Two edits in the JSON editor: revisions 2 and 3.
    save_in_editor(&client, &base, &release_pipeline(10)).await;
    let mut third = release_pipeline(20);
    third["description"] = json!("Waits longer, then ships.");
    save_in_editor(&client, &base, &third).await;

    // The history, from the pipelines list: by default the last change.
    client
        .goto(&server.url("/applications/shop/pipelines"))
        .await
        .unwrap();
    click(&client, "a.history").await;
    assert_eq!(
        arrived_at(&client, "/applications/shop/pipelines/release/history").await,
        "/applications/shop/pipelines/release/history"
    );
    let rows = client
        .find_all(Locator::Css("table.revisions tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    let title = text_of(&client, "#diff-title").await;
    assert!(title.starts_with("Revision 2 → revision 3"), "{title}");
    let lines = diff_lines(&client).await;
    assert!(has(&lines, "d-del", "\"waitTime\": 10"), "{lines:?}");
    assert!(has(&lines, "d-add", "\"waitTime\": 20"), "{lines:?}");
    assert!(
        has(
            &lines,
            "d-add",
            "\"description\": \"Waits longer, then ships.\","
        ),
        "{lines:?}"
    );
    // The stage that did not change is context, not a change.
    assert!(
        !lines
            .iter()
            .any(|(k, t)| k != "d-same" && t.contains("Ship")),
        "{lines:?}"
    );

    // Any two revisions: the first against the current one.
    client
        .find(Locator::Css("select#from"))
        .await
        .unwrap()
        .select_by_value("1")
        .await
        .unwrap();
    client
        .find(Locator::Css("select#to"))
        .await
        .unwrap()
        .select_by_value("3")
        .await
        .unwrap();
    click(&client, "#compare").await;
    until(&client, "the diff of revisions 1 and 3", |c| async move {
        text_of(&c, "#diff-title")
            .await
            .starts_with("Revision 1 → revision 3")
    })
    .await;
    let lines = diff_lines(&client).await;
    assert!(has(&lines, "d-del", "\"waitTime\": 5"), "{lines:?}");
    assert!(has(&lines, "d-add", "\"waitTime\": 20"), "{lines:?}");
    assert!(!has(&lines, "d-del", "\"waitTime\": 10"), "{lines:?}");
    screenshot(&client, "pipeline-history-diff").await;

    // Restore the first revision (a CSRF-protected POST): it becomes revision 4.
    click(&client, "#restore-from").await;
    let flash = text_of(&client, ".flash-ok").await;
    assert_eq!(
        flash,
        "Restored revision 1 of release: it is revision 4 now."
    );
    let current = api.get("/api/v1/applications/shop/pipelines/release").await;
    assert_eq!(current["revision"], 4);
    assert_eq!(current["config"]["stages"][0]["waitTime"], 5);
    let history = api
        .get("/api/v1/applications/shop/pipelines/release/history")
        .await;
    assert_eq!(history[0]["restoredFrom"], 1);
    assert_eq!(history[0]["author"], "admin");
    // Now the current revision is the first one again: no change between them.
    client
        .goto(&server.url("/applications/shop/pipelines/release/history?from=1&to=4"))
        .await
        .unwrap();
    assert!(diff_lines(&client).await.is_empty());
    screenshot(&client, "pipeline-history-restored").await;
    client.close().await.unwrap();
}

/// A deploy of the demo app (this binary) as server group `version` of `shop-web`
/// behind `shop-lb`, answering 500 to the fraction `errorRate` of requests.
fn deploy_pipeline() -> Value {
    json!({
        "application": "shop",
        "name": "deploy",
        "parameterConfig": [{"name": "version", "required": true}, {"name": "errorRate", "default": "0"}],
        "stages": [{
            "refId": "1", "type": "deploy", "name": "Deploy ${parameters.version}",
            "clusters": [{
                "application": "shop", "stack": "web", "account": "local", "cloudProvider": "local",
                "capacity": {"min": 1, "max": 1, "desired": 1},
                "loadBalancers": ["shop-lb"],
                "strategy": "redblack",
                "waitForUpInstancesTimeoutMs": 8000,
                "artifact": {"path": BIN},
                "args": ["demo-app", "--version", "${parameters.version}", "--error-rate", "${parameters.errorRate}"],
                "healthCheck": {"path": "/health"},
                "gracePeriodSeconds": 5
            }]
        }]
    })
}

/// Sends `count` requests through the load balancer; returns how many failed.
async fn traffic(http: &reqwest::Client, balancer: &str, count: usize) -> usize {
    let mut failed = 0;
    for _ in 0..count {
        let status = http
            .get(format!("http://{balancer}/"))
            .send()
            .await
            .unwrap()
            .status();
        if status.is_server_error() {
            failed += 1;
        }
    }
    failed
}

/// The text of `css` in the row of server group `group`.
async fn cell(client: &Client, group: &str, css: &str) -> String {
    text_of(client, &format!("tr[data-server-group='{group}'] {css}")).await
}

#[tokio::test]
async fn load_balancers_traffic_shares_and_destroy_from_the_clusters_view() {
    let _leftovers = KillLeftovers("uibv");
    let (_dir, server) = start_server();
    let http = reqwest::Client::new();
    server.ready(&http).await;
    let api = Api::new(&server);
    api.post("/api/v1/roles", json!({"name": "operators"}))
        .await;
    api.post(
        "/api/v1/applications",
        json!({"name": "shop", "permissions": {
            "READ": ["operators", "admins"], "EXECUTE": ["operators", "admins"], "WRITE": ["admins"]}}),
    )
    .await;
    api.post(
        "/api/v1/users",
        json!({"name": "otto", "roles": ["operators"]}),
    )
    .await;
    let otto = api
        .post("/api/v1/tokens", json!({"name": "otto-ui", "user": "otto"}))
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
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
    // v000 answers every request; v001 fails exactly every other one.
    for (version, error_rate, requests, failures) in
        [("uibv1", "0", 10, 0), ("uibv2", "0.5", 20, 10)]
    {
        let started = api
            .post(
                "/api/v1/applications/shop/pipelines/deploy/executions",
                json!({"parameters": {"version": version, "errorRate": error_rate}}),
            )
            .await;
        let done = api.wait_end(started["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "SUCCEEDED", "{done:#}");
        assert_eq!(traffic(&http, &address, requests).await, failures);
    }

    let (_driver, client) = browser().await;
    let base = server.url("");

    // An operator (EXECUTE, not WRITE) may roll back but is not offered a destroy, and
    // the API refuses it.
    sign_in_at(&client, &base, &otto).await;
    client
        .goto(&server.url("/applications/shop/clusters"))
        .await
        .unwrap();
    assert_eq!(count_now(&client, "a.button[href*='/rollback']").await, 1);
    assert_eq!(count_now(&client, "a.button[href*='/destroy']").await, 0);
    let (status, _) = Api::with_token(&server, &otto)
        .attempt(
            reqwest::Method::POST,
            "/api/v1/applications/shop/serverGroups/shop-web-v000/destroy",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN);
    click(&client, "form.signout button").await;
    arrived_at(&client, "/signin").await;
    sign_in_at(&client, &base, TOKEN).await;

    // The load balancers page: the listener, each group's share and its traffic of
    // the last minutes, from the samples the load balancer stores every second.
    let page = server.url("/applications/shop/loadBalancers");
    until(&client, "all 30 requests counted", |c| {
        let page = page.clone();
        async move {
            c.goto(&page).await.unwrap();
            cell(&c, "shop-web-v001", ".requests").await == "20"
                && cell(&c, "shop-web-v000", ".requests").await == "10"
        }
    })
    .await;
    let listener = text_of(&client, "section.balancer dl.facts dd code").await;
    assert_eq!(listener, address);
    assert_eq!(cell(&client, "shop-web-v001", ".weight").await, "100%");
    assert_eq!(cell(&client, "shop-web-v000", ".weight").await, "0%");
    assert_eq!(
        cell(&client, "shop-web-v001", ".error-ratio").await,
        "50.0%"
    );
    assert_eq!(cell(&client, "shop-web-v000", ".error-ratio").await, "0.0%");
    assert_eq!(
        cell(&client, "shop-web-v000", ".badge").await,
        "disabled",
        "red/black left v000 disabled"
    );
    screenshot(&client, "load-balancers").await;

    // The clusters view: each card's traffic share.
    client
        .goto(&server.url("/applications/shop/clusters"))
        .await
        .unwrap();
    let share = |group: &'static str| {
        let client = client.clone();
        async move {
            text_of(
                &client,
                &format!("article.card[aria-label='Server group {group}'] .traffic .percent"),
            )
            .await
        }
    };
    assert_eq!(share("shop-web-v001").await, "100%");
    assert_eq!(share("shop-web-v000").await, "0%");
    screenshot(&client, "clusters-traffic").await;

    // Destroy the disabled v000, confirming; it runs as a recorded task.
    click(
        &client,
        "article.card a.button[href*='shop-web-v000/destroy']",
    )
    .await;
    arrived_at(
        &client,
        "/applications/shop/serverGroups/local/shop-web-v000/destroy",
    )
    .await;
    let heading = text_of(&client, "main h1").await;
    assert_eq!(heading, "Destroy shop-web-v000?");
    screenshot(&client, "confirm-destroy").await;
    let task = confirm_task(&client, &api).await;
    assert_eq!(task["stages"][0]["type"], "destroyServerGroup");
    assert!(
        demo_processes("uibv1").is_empty(),
        "v000's instance stopped"
    );
    client
        .goto(&server.url("/applications/shop/clusters"))
        .await
        .unwrap();
    assert_eq!(
        count_now(&client, "article.card").await,
        1,
        "only v001 is left"
    );
    client.close().await.unwrap();
    destroy_all(&api, "uibv").await;
}

struct Nothing;

impl Shutdown for Nothing {
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

fn canary_registry() -> gennaker_engine::StageRegistry {
    let (sources, configs) = canary_fixture("cfg-web", "web-canary", "web").unwrap();
    let mut registry = gennaker_engine::StageRegistry::standard();
    gennaker_canary::stage::register(&mut registry, sources, Arc::new(configs));
    registry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_execution_page_links_a_canary_stage_to_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("data"),
        format!("sqlite://{}/gennaker.db", dir.path().display()),
    );
    config.admin_token = Some(TOKEN.to_owned());
    let open = gennaker_server::open(&config).await.unwrap();
    let wiring = Wiring {
        registry: canary_registry(),
        providers: gennaker_deploy::Providers::new(),
        metrics: Arc::new(NoMoreMetrics),
        shutdown: Box::new(Nothing),
    };
    let server = gennaker_server::start(open, config, wiring).await.unwrap();
    let base = format!("http://{}", server.address());
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(format!("{base}/api/v1{path}"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    assert!(
        post("/applications", json!({"name": "web"}))
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let pipeline = json!({"application": "web", "name": "release", "stages": [
        {"refId": "1", "type": "kayentaCanary", "name": "Canary Analysis", "analysisType": "retrospective",
         "canaryConfig": {"canaryConfigId": "cfg-web", "metricsAccountName": "fake",
            "canaryAnalysisIntervalMins": "1", "scoreThresholds": {"marginal": "40", "pass": "90"},
            "scopes": [{"scopeName": "default", "controlScope": "web-baseline", "experimentScope": "web-canary",
                        "startTimeIso": "2024-05-01T12:00:00Z", "endTimeIso": "2024-05-01T12:02:00Z", "step": 10}]}}
    ]});
    assert!(
        post("/applications/web/pipelines", pipeline)
            .await
            .unwrap()
            .status()
            .is_success()
    );
    let started: Value = post("/applications/web/pipelines/release/executions", json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = started["id"].as_str().unwrap().to_owned();

    let (_driver, client) = browser().await;
    sign_in_at(&client, &base, TOKEN).await;
    client
        .goto(&format!("{base}/executions/{id}"))
        .await
        .unwrap();
    // 50 each interval: above marginal 40, below pass 90, so the stage fails.
    until(&client, "the execution TERMINAL", |c| async move {
        c.find(Locator::Css("[data-execution-status=TERMINAL]"))
            .await
            .is_ok()
    })
    .await;
    click(&client, "a.canary-report").await;
    let path = arrived_at(&client, &format!("/executions/{id}/stages/")).await;
    assert!(path.ends_with("/canary"), "{path}");
    // Inside the UI's frame: the application's navigation and a way back.
    assert_eq!(text_of(&client, "nav.appnav .appname").await, "web");
    assert_eq!(text_of(&client, "nav.crumbs a").await, "release");
    assert_eq!(
        text_of(&client, ".gk-canary h1").await,
        "Canary analysis: Canary Analysis"
    );
    let score = text_of(&client, ".gk-canary .gk-score b").await;
    assert_eq!(score, "50");
    let charts = client
        .find_all(Locator::Css(".gk-canary svg.gk-chart"))
        .await
        .unwrap();
    assert!(!charts.is_empty(), "baseline and canary drawn as SVG");
    let page = client.source().await.unwrap();
    assert!(page.contains("Run Canary #2"), "every interval");
    // The report's own style sheet applies under the UI's content security policy.
    let border = client
        .execute(
            "return getComputedStyle(document.querySelector('.gk-canary .gk-score')).borderTopStyle;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(border, json!("solid"));
    screenshot(&client, "canary-report").await;
    client.close().await.unwrap();
    server.stop().await.unwrap();
}
