//! The web UI in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! which `scripts/test.sh` installs), driven over WebDriver against the real server
//! binary: sign in, run a pipeline from its parameter form, watch the stage graph turn
//! green live (server-sent events, no reload), approve a manual judgment, a forged
//! POST refused, a pipeline edited with an error shown at its JSON path, a read-only
//! user offered no action, and a server group rolled back from the clusters view with
//! the traffic moving back. Then the execution controls (pause, resume, skip a wait,
//! restart a failed stage), the executions list's trigger and time filters in the URL
//! with pagination, password sign-in with its limit on wrong passwords, the audit log
//! (admins only), and the main pages in the dark theme with their text contrast
//! checked (WCAG AA), and at 200% zoom: no sideways scrolling, every control named and
//! reached with the Tab key.
//!
//! Screenshots of the main pages land in `target/ui-screenshots/` for people to look at.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use support::api::{Api, KillLeftovers, destroy_all, start_server};
use support::browser::{
    PATIENCE, arrived_at, browser, browser_with, click, confirm_task, count_now, screenshot,
    sign_in_at, until,
};
use support::{BIN, Server, TOKEN};

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
    sign_in_at(&client, &server.url(""), TOKEN).await;
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
    // The click may return before the answer's page has loaded: wait for it.
    let path = client
        .wait()
        .for_element(Locator::Css("#edit-error .problems code.path"))
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
    sign_in_at(&client, &server.url(""), &token).await;
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
    sign_in_at(&client, &server.url(""), TOKEN).await;
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
    let task = confirm_task(&client, &api).await;
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

/// Waits until the execution page shows `status`, reloading it (a control's answer is
/// a redirect to the page; later changes arrive live).
async fn until_status(client: &Client, status: &'static str) {
    until(client, status, move |c| async move {
        c.find(Locator::Css(&format!("[data-execution-status={status}]")))
            .await
            .is_ok()
    })
    .await;
}

/// The text of the page's flash message.
async fn flash(client: &Client) -> String {
    client
        .find(Locator::Css("p.flash"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn controlled_pipeline() -> Value {
    json!({
        "application": "shop",
        "name": "controlled",
        "stages": [
            {"refId": "1", "type": "wait", "name": "Soak", "waitTime": 3600},
            {"refId": "2", "requisiteStageRefIds": ["1"], "type": "manualJudgment",
             "name": "Approve", "instructions": "Go?"}
        ]
    })
}

#[tokio::test]
async fn pause_resume_skip_a_wait_and_restart_a_failed_stage_from_the_page() {
    let (_dir, server) = start_server();
    let http = reqwest::Client::new();
    server.ready(&http).await;
    let api = Api::new(&server);
    api.post("/api/v1/applications", json!({"name": "shop"}))
        .await;
    api.post("/api/v1/applications/shop/pipelines", controlled_pipeline())
        .await;
    let started = api
        .post(
            "/api/v1/applications/shop/pipelines/controlled/executions",
            json!({}),
        )
        .await;
    let id = started["id"].as_str().unwrap().to_owned();
    let (_driver, client) = browser().await;
    sign_in_at(&client, &server.url(""), TOKEN).await;
    client
        .goto(&server.url(&format!("/executions/{id}")))
        .await
        .unwrap();
    until(&client, "the wait running", |c| async move {
        node_statuses(&c)
            .await
            .iter()
            .any(|(name, status)| name.starts_with("Soak") && status == "RUNNING")
    })
    .await;

    // Pause: the page comes back PAUSED, offering Resume (and no skip or pause).
    click(&client, "button[data-control=pause]").await;
    until_status(&client, "PAUSED").await;
    assert!(flash(&client).await.starts_with("Paused"));
    assert!(
        client
            .find_all(Locator::Css("button[data-control=pause]"))
            .await
            .unwrap()
            .is_empty()
    );
    screenshot(&client, "execution-paused").await;
    assert_eq!(
        api.get(&format!("/api/v1/executions/{id}")).await["status"],
        "PAUSED"
    );
    click(&client, "button[data-control=resume]").await;
    until_status(&client, "RUNNING").await;

    // Skip the hour-long wait: the judgment comes up.
    until(&client, "the skip button", |c| async move {
        c.find(Locator::Css("button[data-control=skip]"))
            .await
            .is_ok()
    })
    .await;
    click(&client, "button[data-control=skip]").await;
    until(&client, "the judgment form", |c| async move {
        c.find(Locator::Css("section.judgment button[value=stop]"))
            .await
            .is_ok()
    })
    .await;
    let soak = api.get(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(soak["stages"][0]["status"], "SUCCEEDED");
    assert_eq!(soak["stages"][0]["context"]["skipRemainingWait"], true);

    // Stop the judgment: the stage fails, and a restart is offered.
    click(&client, "section.judgment button[value=stop]").await;
    until_status(&client, "TERMINAL").await;
    until(&client, "the restart button", |c| async move {
        c.find(Locator::Css("button[data-control=restart]"))
            .await
            .is_ok()
    })
    .await;
    screenshot(&client, "execution-restart-offered").await;
    click(&client, "button[data-control=restart]").await;
    until(&client, "the judgment asked again", |c| async move {
        c.find(Locator::Css("section.judgment button[value=continue]"))
            .await
            .is_ok()
    })
    .await;
    click(&client, "section.judgment button[value=continue]").await;
    until_status(&client, "SUCCEEDED").await;
    let done = api.get(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(done["status"], "SUCCEEDED");
    let approve = &done["stages"][1];
    assert_eq!(approve["context"]["judgmentStatus"], "continue");
    assert_eq!(approve["context"]["restartDetails"]["restartedBy"], "admin");
    // Each control is in the audit log, as the admin, through the API's own routes.
    let audit = api.get("/api/v1/audit?actor=admin&limit=50").await;
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for suffix in ["/pause", "/resume", "/skip", "/restart"] {
        assert!(
            actions.iter().any(|a| a.ends_with(suffix)),
            "{suffix} in {actions:?}"
        );
    }
    client.close().await.unwrap();
}

fn quick_pipeline(name: &str) -> Value {
    json!({
        "application": "shop",
        "name": name,
        "stages": [{"refId": "1", "type": "wait", "name": "Tick", "waitTime": 0}]
    })
}

/// The pipeline names of the executions list's rows.
async fn listed(client: &Client) -> Vec<String> {
    let mut names = Vec::new();
    for cell in client
        .find_all(Locator::Css("table.executions tbody tr td:first-child"))
        .await
        .unwrap()
    {
        names.push(cell.text().await.unwrap());
    }
    names
}

#[tokio::test]
async fn executions_filter_by_trigger_and_time_in_the_url_and_page() {
    let (_dir, server) = start_server();
    let http = reqwest::Client::new();
    server.ready(&http).await;
    let api = Api::new(&server);
    api.post("/api/v1/applications", json!({"name": "shop"}))
        .await;
    api.post(
        "/api/v1/applications/shop/pipelines",
        quick_pipeline("tick"),
    )
    .await;
    api.post(
        "/api/v1/applications/shop/pipelines",
        quick_pipeline("nightly"),
    )
    .await;
    // 26 manual runs (more than a page) and 2 cron-triggered ones.
    let mut ids = Vec::new();
    for _ in 0..26 {
        let run = api
            .post(
                "/api/v1/applications/shop/pipelines/tick/executions",
                json!({}),
            )
            .await;
        ids.push(run["id"].as_str().unwrap().to_owned());
    }
    for _ in 0..2 {
        let run = api
            .post(
                "/api/v1/applications/shop/pipelines/nightly/executions",
                json!({"trigger": {"type": "cron"}}),
            )
            .await;
        ids.push(run["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        assert_eq!(api.wait_end(id).await["status"], "SUCCEEDED");
    }

    let (_driver, client) = browser().await;
    sign_in_at(&client, &server.url(""), TOKEN).await;
    client
        .goto(&server.url("/applications/shop/executions"))
        .await
        .unwrap();
    // Choose "cron" and "last hour" in the form: only the cron runs, in a permalink.
    client
        .find(Locator::Css("select#trigger"))
        .await
        .unwrap()
        .select_by_value("cron")
        .await
        .unwrap();
    client
        .find(Locator::Css("select#within"))
        .await
        .unwrap()
        .select_by_value("1h")
        .await
        .unwrap();
    click(&client, "form.filters button[type=submit]").await;
    let url = client.current_url().await.unwrap();
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert!(query.contains(&("trigger".into(), "cron".into())), "{url}");
    assert!(query.contains(&("within".into(), "1h".into())), "{url}");
    assert_eq!(listed(&client).await, ["nightly", "nightly"]);
    screenshot(&client, "executions-filtered").await;

    // The permalink opened afresh shows the same, with the form filled in.
    client.goto(url.as_str()).await.unwrap();
    assert_eq!(listed(&client).await, ["nightly", "nightly"]);
    let chosen = client
        .find(Locator::Css("select#trigger option[selected]"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap();
    assert_eq!(chosen.as_deref(), Some("cron"));

    // Manual runs span two pages; the next page keeps the filter.
    client
        .goto(&server.url("/applications/shop/executions?trigger=manual&from=2000-01-01T00:00"))
        .await
        .unwrap();
    let first = listed(&client).await;
    assert_eq!(first.len(), 25);
    assert!(first.iter().all(|name| name == "tick"));
    click(&client, "nav.pager a[rel=next]").await;
    let url = client.current_url().await.unwrap();
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert!(
        query.contains(&("trigger".into(), "manual".into())),
        "{url}"
    );
    assert!(query.contains(&("page".into(), "2".into())), "{url}");
    assert_eq!(listed(&client).await, ["tick"]);

    // A window that ended long ago holds nothing; a bad time says how to write one.
    client
        .goto(&server.url("/applications/shop/executions?to=2000-01-01"))
        .await
        .unwrap();
    assert!(listed(&client).await.is_empty());
    client
        .goto(&server.url("/applications/shop/executions?from=last+tuesday"))
        .await
        .unwrap();
    let message = client
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(message.contains("YYYY-MM-DDTHH:MM"), "{message}");
    client.close().await.unwrap();
}

/// Signs in with a user name and password; returns the page's path after it.
async fn sign_in_with_password(
    client: &Client,
    server: &Server,
    user: &str,
    password: &str,
) -> String {
    client.goto(&server.url("/signin")).await.unwrap();
    client
        .find(Locator::Css("#user"))
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    client
        .find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    click(client, "button[type=submit]").await;
    client.current_url().await.unwrap().path().to_owned()
}

async fn signin_error(client: &Client) -> String {
    match client.find(Locator::Css("#signin-error")).await {
        Ok(error) => error.text().await.unwrap(),
        Err(err) => panic!(
            "no sign-in error ({err}):\n{}",
            client.source().await.unwrap_or_default()
        ),
    }
}

#[tokio::test]
async fn password_sign_in_is_limited_and_the_audit_log_is_for_admins() {
    let (_dir, server) = start_server();
    let http = reqwest::Client::new();
    server.ready(&http).await;
    let api = Api::new(&server);
    api.post("/api/v1/applications", json!({"name": "shop"}))
        .await;
    api.post("/api/v1/users", json!({"name": "pat", "roles": []}))
        .await;
    let password = "a long and secret phrase";
    let (status, body) = api
        .attempt(
            reqwest::Method::PUT,
            "/api/v1/users/pat/password",
            Some(json!({"password": "short"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("at least 12"), "{body}");
    let (status, _) = api
        .attempt(
            reqwest::Method::PUT,
            "/api/v1/users/pat/password",
            Some(json!({"password": password})),
        )
        .await;
    assert_eq!(status, 204);
    let user = api.get("/api/v1/users/pat").await;
    assert!(!user.to_string().contains("argon2"), "{user}");

    let (_driver, client) = browser().await;
    // The right password signs in; pat is no admin: no audit log link, and a 403.
    assert_eq!(
        sign_in_with_password(&client, &server, "pat", password).await,
        "/applications"
    );
    let user_name = client
        .find(Locator::Css("header .user strong"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(user_name, "pat");
    assert!(
        client
            .find_all(Locator::Css("a[href='/audit']"))
            .await
            .unwrap()
            .is_empty()
    );
    client.goto(&server.url("/audit")).await.unwrap();
    let refused = client
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(refused.contains("not an admin"), "{refused}");
    let status = client
        .execute("return fetch('/audit').then(r => r.status);", vec![])
        .await
        .unwrap();
    assert_eq!(status, json!(403));
    // Signing out revokes the session's own token.
    click(&client, "form.signout button").await;
    let tokens = api.get("/api/v1/tokens?user=pat").await;
    let session_tokens: Vec<&Value> = tokens
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"] == "web UI sign-in")
        .collect();
    assert_eq!(session_tokens.len(), 1, "{tokens:#}");
    assert!(session_tokens[0]["revokedAt"].is_i64(), "{tokens:#}");

    // Wrong passwords: a clear error each time, then no more tries for a while, even
    // with the right one.
    for attempt in 0..5 {
        let path = sign_in_with_password(&client, &server, "pat", "not the password").await;
        assert_eq!(path, "/signin", "attempt {attempt}");
        let error = signin_error(&client).await;
        assert!(
            error.starts_with("Wrong user name or password"),
            "attempt {attempt}: {error}"
        );
    }
    screenshot(&client, "signin-wrong-password").await;
    sign_in_with_password(&client, &server, "pat", password).await;
    let limited = signin_error(&client).await;
    assert!(
        limited.starts_with("Too many wrong passwords for 'pat'"),
        "{limited}"
    );
    // A user without a password cannot use one.
    sign_in_with_password(&client, &server, "admin", "whatever it may be").await;
    assert!(
        signin_error(&client)
            .await
            .starts_with("Wrong user name or password")
    );

    // The admin (API token) has the audit log: the sign-ins are in it.
    sign_in_at(&client, &server.url(""), TOKEN).await;
    click(&client, "header a[href='/audit']").await;
    assert_eq!(client.current_url().await.unwrap().path(), "/audit");
    let rows = client
        .find_all(Locator::Css("table.audit tbody tr"))
        .await
        .unwrap();
    assert!(rows.len() >= 10, "{} rows", rows.len());
    screenshot(&client, "audit-log").await;
    client
        .find(Locator::Css("#target"))
        .await
        .unwrap()
        .send_keys("users/pat")
        .await
        .unwrap();
    click(&client, "form.filters button[type=submit]").await;
    let url = client.current_url().await.unwrap();
    assert!(url.as_str().contains("target=users%2Fpat"), "{url}");
    let mut outcomes = Vec::new();
    for row in client
        .find_all(Locator::Css("table.audit tbody tr"))
        .await
        .unwrap()
    {
        outcomes.push(row.attr("class").await.unwrap().unwrap_or_default());
    }
    // Five wrong passwords and the refused try, the sign-in and the password set, the
    // short password refused.
    let count = |kind: &str| outcomes.iter().filter(|o| *o == kind).count();
    assert_eq!(count("outcome-denied"), 6, "{outcomes:?}");
    assert_eq!(count("outcome-success"), 2, "{outcomes:?}");
    assert_eq!(count("outcome-failed"), 1, "{outcomes:?}");
    let page = client.source().await.unwrap();
    assert!(!page.contains(password), "the password is never shown");
    client.close().await.unwrap();
}

/// Every piece of text on the page whose contrast with the background behind it is
/// below WCAG AA (4.5:1; 3:1 for large or bold text), as "text: ratio".
async fn low_contrast(client: &Client) -> Vec<String> {
    let found = client
        .execute(
            r#"
            const parse = c => { const m = c.match(/[\d.]+/g) || []; return m.map(Number); };
            const lum = ([r, g, b]) => {
              const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
              return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
            };
            const background = el => {
              for (let e = el; e; e = e.parentElement) {
                const c = parse(getComputedStyle(e).backgroundColor);
                if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) return c;
              }
              return parse(getComputedStyle(document.documentElement).backgroundColor);
            };
            const bad = [];
            for (const el of document.querySelectorAll('body *')) {
              if (el.closest('svg') || ['SCRIPT', 'STYLE', 'OPTION'].includes(el.tagName)) continue;
              const own = Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
              const r = el.getBoundingClientRect();
              if (!own || r.width === 0 || r.height === 0) continue;
              const style = getComputedStyle(el);
              const fg = lum(parse(style.color)), bg = lum(background(el));
              const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
              const large = parseFloat(style.fontSize) >= 24 || (parseFloat(style.fontSize) >= 18.66 && Number(style.fontWeight) >= 700);
              if (ratio < (large ? 3 : 4.5)) bad.push(el.textContent.trim().slice(0, 40) + ': ' + ratio.toFixed(2));
            }
            return bad;
            "#,
            vec![],
        )
        .await
        .unwrap();
    found
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// POSTs `body` to `path` until the API accepts it (the stage it acts on may not be
/// running yet).
async fn once_accepted(api: &Api, path: &str, body: Value) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, answer) = api
            .attempt(reqwest::Method::POST, path, Some(body.clone()))
            .await;
        if status.is_success() {
            return;
        }
        assert!(Instant::now() < deadline, "{path}: {status} {answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Application `shop` with its release pipeline, and a run of it waiting for its
/// judgment: the execution's id.
async fn shop_with_a_waiting_release(api: &Api) -> String {
    api.post(
        "/api/v1/applications",
        json!({"name": "shop", "description": "The shop"}),
    )
    .await;
    api.post("/api/v1/applications/shop/pipelines", release_pipeline())
        .await;
    api.post(
        "/api/v1/applications/shop/pipelines/release/executions",
        json!({"parameters": {"version": "v7"}}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn dark_theme_pages_are_readable() {
    let (_dir, server) = start_server();
    let http = reqwest::Client::new();
    server.ready(&http).await;
    let api = Api::new(&server);
    let waiting = shop_with_a_waiting_release(&api).await;
    api.post("/api/v1/applications/shop/pipelines", controlled_pipeline())
        .await;
    // One that failed (a judgment stopped), to show the failure and the restart.
    let failed = api
        .post(
            "/api/v1/applications/shop/pipelines/controlled/executions",
            json!({}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    once_accepted(
        &api,
        &format!("/api/v1/executions/{failed}/stages/1/skip"),
        json!({}),
    )
    .await;
    once_accepted(
        &api,
        &format!("/api/v1/executions/{failed}/stages/2/judgment"),
        json!({"judgmentStatus": "stop"}),
    )
    .await;
    assert_eq!(api.wait_end(&failed).await["status"], "TERMINAL");

    // Chromium with the system's dark preference (headless: this flag sets it).
    let (_driver, client) = browser_with(&["--force-dark-mode"]).await;
    client.goto(&server.url("/signin")).await.unwrap();
    let dark = client
        .execute(
            "return matchMedia('(prefers-color-scheme: dark)').matches;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(dark, json!(true), "the dark preference is emulated");
    let pages = [
        ("dark-signin", "/signin".to_owned()),
        ("dark-applications", "/applications".to_owned()),
        (
            "dark-executions",
            "/applications/shop/executions".to_owned(),
        ),
        ("dark-pipelines", "/applications/shop/pipelines".to_owned()),
        ("dark-execution-judgment", format!("/executions/{waiting}")),
        (
            "dark-execution-failed",
            format!("/executions/{failed}?stage=2"),
        ),
        ("dark-clusters", "/applications/shop/clusters".to_owned()),
        ("dark-audit", "/audit".to_owned()),
    ];
    assert!(low_contrast(&client).await.is_empty(), "sign-in page");
    sign_in_at(&client, &server.url(""), TOKEN).await;
    for (name, path) in &pages {
        client.goto(&server.url(path)).await.unwrap();
        let background = client
            .execute(
                "return getComputedStyle(document.body).backgroundColor;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            background,
            json!("rgb(13, 17, 23)"),
            "{name}: the dark background"
        );
        screenshot(&client, name).await;
        let low = low_contrast(&client).await;
        assert!(
            low.is_empty(),
            "{name}: text with too little contrast: {low:?}"
        );
    }
    client.close().await.unwrap();
    api.post(&format!("/api/v1/executions/{waiting}/cancel"), json!({}))
        .await;
}

/// Every visible control on the page without an accessible name (its HTML), in document
/// order.
const STAMP_CONTROLS: &str = r#"
const controls = Array.from(document.querySelectorAll('a[href], button, input, select, textarea, summary'))
  .filter(e => e.type !== 'hidden' && e.offsetParent !== null);
return controls.map(e => {
  const named = (e.labels && e.labels.length > 0) || e.getAttribute('aria-label')
    || e.getAttribute('aria-labelledby') || e.getAttribute('title')
    || (e.tagName !== 'INPUT' && e.tagName !== 'SELECT' && e.tagName !== 'TEXTAREA' && e.textContent.trim() !== '')
    || (e.tagName === 'INPUT' && (e.type === 'submit' || e.type === 'button') && e.value);
  return named ? '' : e.outerHTML.slice(0, 120);
});
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_labelled_keyboard_reachable_and_fit_at_200_percent_zoom() {
    let (_dir, server) = start_server();
    let http = reqwest::Client::new();
    server.ready(&http).await;
    let api = Api::new(&server);
    let waiting = shop_with_a_waiting_release(&api).await;

    // 200% zoom of the usual 1280-pixel window shows what a 640-pixel one does.
    let (_driver, client) = browser().await;
    client.set_window_size(640, 1000).await.unwrap();
    client.goto(&server.url("/signin")).await.unwrap();
    let width = client
        .execute("return window.innerWidth;", vec![])
        .await
        .unwrap();
    assert!(
        width.as_u64().unwrap() <= 700,
        "zoomed: {width} CSS pixels wide"
    );
    sign_in_at(&client, &server.url(""), TOKEN).await;
    let pages = [
        ("zoom-applications", "/applications".to_owned()),
        (
            "zoom-executions",
            "/applications/shop/executions".to_owned(),
        ),
        ("zoom-pipelines", "/applications/shop/pipelines".to_owned()),
        (
            "zoom-run",
            "/applications/shop/pipelines/release/run".to_owned(),
        ),
        ("zoom-execution", format!("/executions/{waiting}")),
        ("zoom-clusters", "/applications/shop/clusters".to_owned()),
    ];
    for (name, path) in &pages {
        client.goto(&server.url(path)).await.unwrap();
        screenshot(&client, name).await;
        let overflow = client
            .execute(
                "return document.documentElement.scrollWidth - window.innerWidth;",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            overflow.as_i64().unwrap() <= 1,
            "{name}: the page scrolls sideways by {overflow} px at 200% zoom"
        );
        let unnamed: Vec<String> = client
            .execute(STAMP_CONTROLS, vec![])
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
            .collect();
        assert!(
            unnamed.is_empty(),
            "{name}: controls without a name: {unnamed:?}"
        );
        // Tab through the page: every control is reached from the keyboard. Controls are
        // told apart by what they are and where they lead (the live part of a page may
        // replace its elements meanwhile, and a running stage's duration ticks in its
        // text: numbers are left out of the text part).
        let all: std::collections::BTreeSet<String> = client
            .execute(
                "const sig = e => e.tagName + '|' + (e.getAttribute('href') || '') + '|' + (e.getAttribute('name') || '') + '|' + (e.id || '') + '|' + (e.getAttribute('value') || '') + '|' + e.textContent.trim().replace(/[0-9]+/g, '#').slice(0, 40); return Array.from(document.querySelectorAll('a[href], button, input, select, textarea, summary')).filter(e => e.type !== 'hidden' && e.offsetParent !== null).map(sig);",
                vec![],
            )
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        let mut reached = std::collections::BTreeSet::new();
        client
            .execute(
                "document.activeElement && document.activeElement.blur();",
                vec![],
            )
            .await
            .unwrap();
        // Date and time fields take a Tab per part: room for those, stopping once all
        // are reached.
        for _ in 0..all.len() * 6 + 10 {
            if all.is_subset(&reached) {
                break;
            }
            client
                .active_element()
                .await
                .unwrap()
                .send_keys("\u{E004}")
                .await
                .unwrap();
            let focused = client
                .execute(
                    "const sig = e => e.tagName + '|' + (e.getAttribute('href') || '') + '|' + (e.getAttribute('name') || '') + '|' + (e.id || '') + '|' + (e.getAttribute('value') || '') + '|' + e.textContent.trim().replace(/[0-9]+/g, '#').slice(0, 40); const e = document.activeElement; return e ? sig(e) : null;",
                    vec![],
                )
                .await
                .unwrap();
            if let Some(signature) = focused.as_str() {
                reached.insert(signature.to_owned());
            }
        }
        let missed: Vec<&String> = all.difference(&reached).collect();
        assert!(missed.is_empty(), "{name}: Tab never reaches {missed:?}");
    }
    client.close().await.unwrap();
    api.post(&format!("/api/v1/executions/{waiting}/cancel"), json!({}))
        .await;
}
