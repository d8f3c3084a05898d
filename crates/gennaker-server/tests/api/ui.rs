//! The web UI over plain HTTP (no browser): sign-in and sessions, what each page shows,
//! CSRF, permissions, redaction, and actions forwarded to the API.

use crate::harness::*;

/// A cookie-keeping client that does not follow redirects, like a browser seen from
/// the server.
pub(crate) struct Browser<'a> {
    server: &'a Server,
    client: reqwest::Client,
    cookies: Vec<(String, String)>,
}

/// A UI answer: status, `Location`, `Set-Cookie` headers and the body.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) status: u16,
    pub(crate) location: String,
    set_cookies: Vec<String>,
    pub(crate) html: String,
}

impl Page {
    /// The page's CSRF token (the first hidden `csrf` field).
    pub(crate) fn csrf(&self) -> String {
        let marker = r#"name="csrf" value=""#;
        let start = self.html.find(marker).expect("no csrf field") + marker.len();
        let end = self.html[start..].find('"').unwrap();
        self.html[start..start + end].to_owned()
    }
}

impl<'a> Browser<'a> {
    pub(crate) fn new(server: &'a Server) -> Self {
        Browser {
            server,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request = if self.cookies.is_empty() {
            request
        } else {
            request.header("cookie", self.cookie_header())
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let set_cookies: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        for cookie in &set_cookies {
            let pair = cookie.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(k, _)| k != name);
            if !value.is_empty() && !cookie.contains("Max-Age=0") {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
        let html = response.text().await.unwrap();
        Page {
            status,
            location,
            set_cookies,
            html,
        }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Page {
        let request = self.client.get(format!("{}{path}", self.server.base));
        self.send(request).await
    }

    pub(crate) async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let request = self
            .client
            .post(format!("{}{path}", self.server.base))
            .form(fields);
        self.send(request).await
    }

    /// Signs in with `token` through the form; returns the answer to the form's POST.
    pub(crate) async fn sign_in(&mut self, token: &str) -> Page {
        let form = self.get("/signin?next=%2Fapplications").await;
        assert_eq!(form.status, 200, "{form:?}");
        let csrf = form.csrf();
        self.post(
            "/signin",
            &[("token", token), ("csrf", &csrf), ("next", "/applications")],
        )
        .await
    }
}

/// The execution id in a `/executions/{id}` redirect.
fn execution_id(page: &Page) -> String {
    page.location
        .strip_prefix("/executions/")
        .unwrap_or_else(|| panic!("not an execution: {page:?}"))
        .to_owned()
}

/// Reloads the execution page until `done` holds (at most 20 s).
async fn wait_page(browser: &mut Browser<'_>, path: &str, done: impl Fn(&str) -> bool) -> Page {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let page = browser.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.html);
        if done(&page.html) {
            return page;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path}: {}",
            page.html
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

api_test!(sign_in_run_judge_and_follow_an_execution, |backend| {
    let server = Server::start(backend).await;
    server
        .app(json!({ "name": "shop", "description": "the shop" }))
        .await;
    server
        .save("shop", &server.admin, judged_pipeline("shop", "release"))
        .await
        .expect(201);
    let mut browser = Browser::new(&server);

    // Without a session, a page leads to the sign-in form and back.
    let page = browser
        .get("/applications/shop/executions?status=RUNNING")
        .await;
    assert_eq!(page.status, 303);
    assert_eq!(
        page.location,
        "/signin?next=%2Fapplications%2Fshop%2Fexecutions%3Fstatus%3DRUNNING"
    );
    assert_eq!(browser.get("/").await.location, "/applications");

    // A wrong token is refused with a reason; no session is opened.
    let refused = browser.sign_in("gnk_not-a-token").await;
    assert_eq!(refused.status, 401);
    assert!(
        refused.html.contains("That token is not valid"),
        "{}",
        refused.html
    );
    assert!(!browser.cookies.iter().any(|(k, _)| k == "gennaker_session"));

    // The right one opens a session; the cookie is HttpOnly, SameSite=Strict and
    // holds no token.
    let signed_in = browser.sign_in(&server.admin).await;
    assert_eq!(signed_in.status, 303, "{signed_in:?}");
    assert_eq!(signed_in.location, "/applications");
    let session = signed_in
        .set_cookies
        .iter()
        .find(|c| c.starts_with("gennaker_session="))
        .unwrap();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Strict"),
        "{session}"
    );
    assert!(
        !session.contains(&server.admin) && !session.contains("Secure"),
        "{session}"
    );

    // Applications list, with search.
    let apps = browser.get("/applications").await;
    assert_eq!(apps.status, 200);
    assert!(
        apps.html
            .contains(r#"href="/applications/shop/executions""#)
    );
    assert!(apps.html.contains("the shop"));
    let none = browser.get("/applications?q=nothing-like-it").await;
    assert!(!none.html.contains("/applications/shop/executions"));
    assert!(none.html.contains("0 applications"));

    // The run form is generated from the parameters: env required, region's default.
    let form = browser
        .get("/applications/shop/pipelines/release/run")
        .await;
    assert_eq!(form.status, 200);
    assert!(form.html.contains(r#"name="p.env""#) && form.html.contains("(required)"));
    assert!(form.html.contains(r#"placeholder="eu""#), "{}", form.html);
    let csrf = form.csrf();

    // A run missing the required parameter comes back with the API's reason.
    let missing = browser
        .post(
            "/applications/shop/pipelines/release/run",
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(missing.status, 400);
    assert!(
        missing.html.contains("parameter &#39;env&#39; is required"),
        "{}",
        missing.html
    );

    let started = browser
        .post(
            "/applications/shop/pipelines/release/run",
            &[("csrf", &csrf), ("p.env", "prod"), ("p.region", "")],
        )
        .await;
    assert_eq!(started.status, 303, "{started:?}");
    let id = execution_id(&started);
    let execution = server.execution(&id).await;
    assert_eq!(
        execution["trigger"]["parameters"],
        json!({ "env": "prod", "region": "eu" })
    );
    assert_eq!(execution["origin"], "ui");
    assert_eq!(execution["trigger"]["user"], "admin");

    // The execution page: the judgment waits with its inputs, the graph shows the
    // stages, the run's outcome is flashed once.
    let path = format!("/executions/{id}");
    let page = wait_page(&mut browser, &path, |html| {
        html.contains("Waiting for judgment")
    })
    .await;
    assert!(
        page.html.contains(r#"<option value="ship">ship</option>"#),
        "{}",
        page.html
    );
    assert!(
        page.html.contains(r#"data-status="SUCCEEDED""#),
        "Evaluate succeeded"
    );
    assert!(
        page.html.contains(r#"class="node st-RUNNING""#),
        "Approve runs"
    );
    assert!(page.html.contains("<svg"));
    assert!(page.html.contains("Cancel execution"));
    assert!(page.html.len() < 150 * 1024);
    let execution = server.execution(&id).await;
    let approve = execution["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["refId"] == "2")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let judged = browser
        .post(
            &format!("/executions/{id}/stages/{approve}/judgment"),
            &[
                ("csrf", &page.csrf()),
                ("judgmentStatus", "continue"),
                ("judgmentInput", "ship"),
            ],
        )
        .await;
    assert_eq!(judged.status, 303);
    assert_eq!(judged.location, path);
    let done = wait_page(&mut browser, &path, |html| {
        html.contains(r#"data-execution-status="SUCCEEDED""#)
    })
    .await;
    assert!(!done.html.contains("Waiting for judgment"));
    assert!(!done.html.contains("Cancel execution"), "nothing to cancel");
    let execution = server.execution(&id).await;
    assert_eq!(execution["status"], "SUCCEEDED");
    let approve_stage = &execution["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["refId"] == "2")
        .unwrap()
        .clone();
    assert_eq!(approve_stage["context"]["judgmentInput"], "ship");

    // Stage detail: tasks, context and outputs.
    let detail = browser
        .get(&format!(
            "/executions/{id}?stage={}",
            execution["stages"][0]["id"].as_str().unwrap()
        ))
        .await;
    assert!(detail.html.contains(r#"id="stage-detail""#));
    assert!(detail.html.contains("hello prod"), "the evaluated variable");

    // The live part alone, as the script fetches it.
    let live = browser.get(&format!("/executions/{id}/live")).await;
    assert_eq!(live.status, 200);
    assert!(
        live.html.starts_with("<div class=\"live-head\""),
        "{}",
        live.html
    );

    // The executions list: filters, stage bars and permalinks.
    let list = browser
        .get("/applications/shop/executions?status=SUCCEEDED")
        .await;
    assert!(list.html.contains(&format!(r#"href="/executions/{id}""#)));
    assert_eq!(list.html.matches(r#"class="seg st-SUCCEEDED""#).count(), 3);
    let running = browser
        .get("/applications/shop/executions?status=RUNNING")
        .await;
    assert!(running.html.contains("No executions match."));
    let bad = browser
        .get("/applications/shop/executions?status=DONE")
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.html.contains("unknown status"));

    // Pipelines list with the last run.
    let pipelines = browser.get("/applications/shop/pipelines").await;
    assert!(
        pipelines
            .html
            .contains("/applications/shop/pipelines/release/run")
    );
    assert!(pipelines.html.contains("badge st-SUCCEEDED"));

    // Every UI action is in the audit log, as the user, like the API's.
    let audit = server
        .get("/api/v1/audit?actor=admin", &server.admin)
        .await
        .expect(200);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions
            .contains(&format!("POST /api/v1/executions/{id}/stages/{approve}/judgment").as_str()),
        "{actions:?}"
    );

    // Signing out ends the session: the old cookie opens nothing.
    let before_signout = browser.cookies.clone();
    let apps = browser.get("/applications").await;
    let out = browser.post("/signout", &[("csrf", &apps.csrf())]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location, "/signin");
    browser.cookies = before_signout;
    assert_eq!(browser.get("/applications").await.status, 303);
});

api_test!(forged_posts_are_refused, |backend| {
    let server = Server::start(backend).await;
    server.app(json!({ "name": "shop" })).await;
    server
        .save("shop", &server.admin, wait_pipeline("shop", "slow", 600))
        .await
        .expect(201);
    let id = server.start_execution("shop", "slow", json!({})).await;
    server.wait_status(&id, "RUNNING").await;

    // No session at all.
    let mut stranger = Browser::new(&server);
    let page = stranger
        .post(
            &format!("/executions/{id}/cancel"),
            &[("reason", "x"), ("csrf", "x")],
        )
        .await;
    assert_eq!(page.status, 403);

    let mut browser = Browser::new(&server);
    assert_eq!(browser.sign_in(&server.admin).await.status, 303);
    let page = browser.get(&format!("/executions/{id}")).await;
    let csrf = page.csrf();
    // Without the token, with a wrong one, or from another site: 403, nothing done.
    let cancel = format!("/executions/{id}/cancel");
    for fields in [
        vec![("reason", "forged")],
        vec![("reason", "forged"), ("csrf", "0123")],
    ] {
        let refused = browser.post(&cancel, &fields).await;
        assert_eq!(refused.status, 403, "{fields:?}");
        assert!(refused.html.contains("CSRF token"), "{}", refused.html);
    }
    let cross_site = browser
        .client
        .post(format!("{}{cancel}", server.base))
        .header("origin", "https://evil.example")
        .form(&[("reason", "forged"), ("csrf", csrf.as_str())]);
    let refused = browser.send(cross_site).await;
    assert_eq!(refused.status, 403);
    assert!(refused.html.contains("another site"));
    // The sign-in form is protected too (its own double-submit token).
    let mut other = Browser::new(&server);
    let login = other
        .post(
            "/signin",
            &[("token", server.admin.as_str()), ("csrf", "guess")],
        )
        .await;
    assert_eq!(login.status, 403);
    assert_eq!(server.execution(&id).await["status"], "RUNNING");

    // With it, the cancel goes through, with its reason shown verbatim at the top.
    let canceled = browser
        .post(&cancel, &[("reason", "wrong <build>"), ("csrf", &csrf)])
        .await;
    assert_eq!(canceled.status, 303);
    let first = browser.get(&format!("/executions/{id}")).await;
    assert!(first.html.contains("Cancel requested"), "the flash, once");
    let page = wait_page(&mut browser, &format!("/executions/{id}"), |html| {
        html.contains(r#"data-execution-status="CANCELED""#)
    })
    .await;
    assert!(
        page.html
            .contains("Canceled by admin: wrong &#60;build&#62;"),
        "escaped, verbatim: {}",
        page.html
    );
    assert!(!page.html.contains("Cancel requested"));
});

api_test!(
    read_only_users_see_no_actions_and_others_see_nothing,
    |backend| {
        let server = Server::start(backend).await;
        server
            .app(json!({ "name": "shop", "permissions": {
            "READ": ["readers", "deployers", "runners"], "WRITE": ["deployers"],
            "EXECUTE": ["deployers", "runners"] } }))
            .await;
        server
        .app(json!({ "name": "secret-app", "permissions": { "READ": ["others"], "WRITE": ["others"] } }))
        .await;
        let mut pipeline = judged_pipeline("shop", "release");
        pipeline["parameterConfig"][1] =
            json!({ "name": "apiPassword", "default": "hunter2-default" });
        server
            .save("shop", &server.admin, pipeline)
            .await
            .expect(201);
        let id = server
            .start_execution(
                "shop",
                "release",
                json!({ "parameters": { "env": "prod", "apiPassword": "hunter2-run" } }),
            )
            .await;
        server.wait_stage(&id, "2", "RUNNING").await;
        let reader = server.user("rita", &["readers"]).await;
        let deployer = server.user("dora", &["deployers"]).await;

        let mut browser = Browser::new(&server);
        assert_eq!(browser.sign_in(&reader).await.status, 303);
        let apps = browser.get("/applications").await;
        assert!(apps.html.contains("/applications/shop/executions"));
        assert!(
            !apps.html.contains("secret-app"),
            "an app rita may not read is not listed"
        );
        let hidden = browser.get("/applications/secret-app/executions").await;
        assert_eq!(hidden.status, 404);

        let path = format!("/executions/{id}");
        let page = browser.get(&path).await;
        assert_eq!(page.status, 200);
        assert!(page.html.contains(r#"class="node st-RUNNING""#));
        for action in ["Waiting for judgment", "Cancel execution", "judgmentStatus"] {
            assert!(!page.html.contains(action), "{action} shown to a reader");
        }
        // Secrets never reach a page: the parameter is redacted by the engine's reads.
        let all = browser
            .get(&format!(
                "{path}?stage={}",
                server.execution(&id).await["stages"][0]["id"]
                    .as_str()
                    .unwrap()
            ))
            .await;
        assert!(!all.html.contains("hunter2"), "{}", all.html);
        assert!(all.html.contains("***redacted***"));
        let pipelines = browser.get("/applications/shop/pipelines").await;
        assert!(
            !pipelines.html.contains("/run\""),
            "no run link for a reader"
        );
        assert_eq!(
            browser
                .get("/applications/shop/pipelines/release/run")
                .await
                .status,
            403
        );
        // A reader's POST with a valid CSRF token still meets the API's refusal.
        let csrf = page.csrf();
        let refused = browser
            .post(
                &format!("{path}/cancel"),
                &[("csrf", &csrf), ("reason", "no")],
            )
            .await;
        assert_eq!(refused.status, 303);
        let after = browser.get(&path).await;
        assert!(
            after
                .html
                .contains("Not canceled: user &#39;rita&#39; lacks EXECUTE"),
            "{}",
            after.html
        );
        assert_eq!(server.execution(&id).await["status"], "RUNNING");

        // A deployer sees the actions.
        let mut dora = Browser::new(&server);
        assert_eq!(dora.sign_in(&deployer).await.status, 303);
        let page = dora.get(&path).await;
        assert!(
            page.html.contains("Waiting for judgment") && page.html.contains("Cancel execution")
        );
        // One who may run but not edit the pipeline does not see a secret default (its
        // editors do, as in the API).
        let runner = server.user("rudi", &["runners"]).await;
        let mut rudi = Browser::new(&server);
        assert_eq!(rudi.sign_in(&runner).await.status, 303);
        let form = rudi.get("/applications/shop/pipelines/release/run").await;
        assert_eq!(form.status, 200);
        assert!(!form.html.contains("hunter2"), "{}", form.html);
        assert!(
            dora.get("/applications/shop/pipelines/release/run")
                .await
                .html
                .contains("hunter2-default")
        );

        // Revoking the token ends the session at the next request.
        let (token, token_id) = server.token_for("rita").await;
        let mut short = Browser::new(&server);
        assert_eq!(short.sign_in(&token).await.status, 303);
        assert_eq!(short.get("/applications").await.status, 200);
        server
            .delete(&format!("/api/v1/tokens/{token_id}"), &server.admin)
            .await
            .expect(200);
        assert_eq!(short.get("/applications").await.status, 303);
    }
);

api_test!(
    pages_carry_security_headers_and_assets_are_embedded,
    |backend| {
        let server = Server::start(backend).await;
        let mut browser = Browser::new(&server);
        let response = browser
            .client
            .get(format!("{}/signin", server.base))
            .send()
            .await
            .unwrap();
        let headers = response.headers();
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["cache-control"], "no-store");
        let css = browser.get("/static/ui.css").await;
        assert!(css.html.contains("prefers-color-scheme: dark"));
        let js = browser.get("/static/ui.js").await;
        assert!(js.html.contains("EventSource"));
        // The API keeps its JSON errors.
        let api = server
            .call(Method::GET, "/api/v1/applications", None, Body::None)
            .await;
        assert_eq!(api.status, 401);
        assert!(api.body["error"]["message"].is_string());
    }
);

api_test!(edit_a_pipeline_as_yaml, |backend| {
    let server = Server::start(backend).await;
    server.app(json!({ "name": "shop" })).await;
    server
        .save("shop", &server.admin, wait_pipeline("shop", "slow", 5))
        .await
        .expect(201);
    let mut browser = Browser::new(&server);
    assert_eq!(browser.sign_in(&server.admin).await.status, 303);
    let json_form = browser.get("/applications/shop/pipelines/slow/edit").await;
    assert!(
        json_form.html.contains("edit/?format=yaml") || json_form.html.contains("edit?format=yaml"),
        "the JSON editor links to the YAML one: {}",
        json_form.html
    );
    let form = browser
        .get("/applications/shop/pipelines/slow/edit?format=yaml")
        .await;
    assert_eq!(form.status, 200);
    assert!(form.html.contains("waitTime: 5"), "{}", form.html);
    assert!(form.html.contains(r#"name="format" value="yaml""#));
    let csrf = form.csrf();

    // YAML that does not parse: where it breaks, nothing saved.
    let garbled = browser
        .post(
            "/applications/shop/pipelines/slow/edit",
            &[
                ("csrf", &csrf),
                ("format", "yaml"),
                ("config", "name: slow\nstages: [\n  - {"),
            ],
        )
        .await;
    assert_eq!(garbled.status, 400, "{}", garbled.html);
    assert!(
        garbled.html.contains("YAML does not parse at line"),
        "{}",
        garbled.html
    );
    // A problem in valid YAML is shown at its JSON path.
    let mut broken = wait_pipeline("shop", "slow", 5);
    broken["stages"][0]["requisiteStageRefIds"] = json!(["9"]);
    let refused = browser
        .post(
            "/applications/shop/pipelines/slow/edit",
            &[
                ("csrf", &csrf),
                ("format", "yaml"),
                ("config", &gennaker_core::to_yaml_string(&broken).unwrap()),
            ],
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.html);
    assert!(
        refused
            .html
            .contains(r#"<code class="path">$.stages[0].requisiteStageRefIds"#),
        "{}",
        refused.html
    );
    // Valid YAML is saved as a new revision.
    let saved = browser
        .post(
            "/applications/shop/pipelines/slow/edit",
            &[
                ("csrf", &csrf),
                ("format", "yaml"),
                (
                    "config",
                    &gennaker_core::to_yaml_string(&wait_pipeline("shop", "slow", 9)).unwrap(),
                ),
            ],
        )
        .await;
    assert_eq!(saved.status, 303, "{saved:?}");
    let stored = server
        .get("/api/v1/applications/shop/pipelines/slow", &server.admin)
        .await
        .expect(200);
    assert_eq!(stored["config"]["stages"][0]["waitTime"], 9, "{stored}");
    assert_eq!(stored["revision"], 2);
});

api_test!(
    edit_a_pipeline_as_json_with_problems_at_their_paths,
    |backend| {
        let server = Server::start(backend).await;
        server
            .app(json!({ "name": "shop", "permissions": {
            "READ": ["readers", "editors"], "WRITE": ["editors"], "EXECUTE": ["editors"] } }))
            .await;
        server
            .save("shop", &server.admin, wait_pipeline("shop", "slow", 5))
            .await
            .expect(201);
        let editor = server.user("eddie", &["editors"]).await;
        let mut browser = Browser::new(&server);
        assert_eq!(browser.sign_in(&editor).await.status, 303);
        let list = browser.get("/applications/shop/pipelines").await;
        assert!(list.html.contains("/applications/shop/pipelines/slow/edit"));
        let form = browser.get("/applications/shop/pipelines/slow/edit").await;
        assert_eq!(form.status, 200);
        assert!(form.html.contains("&#34;waitTime&#34;: 5"), "{}", form.html);
        let csrf = form.csrf();

        // A stage that waits on a stage that does not exist: not saved, the problem at its path.
        let mut broken = wait_pipeline("shop", "slow", 5);
        broken["stages"][0]["requisiteStageRefIds"] = json!(["9"]);
        let text = serde_json::to_string_pretty(&broken).unwrap();
        let refused = browser
            .post(
                "/applications/shop/pipelines/slow/edit",
                &[("csrf", &csrf), ("config", &text)],
            )
            .await;
        assert_eq!(refused.status, 400, "{}", refused.html);
        assert!(refused.html.contains("Not saved"), "{}", refused.html);
        assert!(
            refused
                .html
                .contains(r#"<code class="path">$.stages[0].requisiteStageRefIds"#),
            "{}",
            refused.html
        );
        assert!(
            refused.html.contains("&#34;9&#34;"),
            "the text as typed comes back"
        );
        // Text that is not JSON: where it breaks.
        let garbled = browser
            .post(
                "/applications/shop/pipelines/slow/edit",
                &[
                    ("csrf", &csrf),
                    ("config", "{\"name\": \"slow\",\n  \"stages\": [}"),
                ],
            )
            .await;
        assert_eq!(garbled.status, 400);
        assert!(garbled.html.contains("line 2"), "{}", garbled.html);
        let revisions = server
            .get(
                "/api/v1/applications/shop/pipelines/slow/history",
                &server.admin,
            )
            .await
            .expect(200);
        assert_eq!(revisions.as_array().unwrap().len(), 1, "nothing was saved");

        // A valid change is saved as a new revision.
        let fixed = serde_json::to_string(&wait_pipeline("shop", "slow", 7)).unwrap();
        let saved = browser
            .post(
                "/applications/shop/pipelines/slow/edit",
                &[("csrf", &csrf), ("config", &fixed)],
            )
            .await;
        assert_eq!(saved.status, 303, "{saved:?}");
        let list = browser.get("/applications/shop/pipelines").await;
        assert!(
            list.html.contains("Saved slow: revision 2."),
            "{}",
            list.html
        );
        let stored = server
            .get("/api/v1/applications/shop/pipelines/slow", &server.admin)
            .await
            .expect(200);
        assert_eq!(stored["config"]["stages"][0]["waitTime"], 7, "{stored}");
        assert_eq!(stored["revision"], 2);
        assert_eq!(stored["updatedBy"], "eddie");

        // A reader is offered no editor, and may not open it.
        let reader = server.user("rita", &["readers"]).await;
        let mut rita = Browser::new(&server);
        assert_eq!(rita.sign_in(&reader).await.status, 303);
        let list = rita.get("/applications/shop/pipelines").await;
        assert!(!list.html.contains("/edit"));
        assert_eq!(
            rita.get("/applications/shop/pipelines/slow/edit")
                .await
                .status,
            403
        );
    }
);
