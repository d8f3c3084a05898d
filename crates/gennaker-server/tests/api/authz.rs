//! The authorization table: every route, with no token, a bad token, a user without any
//! permission on the application, a read-only role, a write role and the admin.

use std::collections::BTreeSet;

use crate::authz_table::{PERMS, table};
use crate::harness::*;

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    NoToken,
    BadToken,
    /// A user whose roles the application names nowhere: its application, pipelines and
    /// executions do not exist for them (404), elsewhere they are like a reader.
    Outsider,
    Reader,
    Writer,
    Admin,
}

/// What a row's placeholders stand for.
struct Fixture {
    app: String,
    bare_app: String,
    pipeline: String,
    user: String,
    role: String,
    own_token: String,
    other_token: String,
    running: String,
    judging: String,
    paused: String,
    done: String,
    /// A canary config of `app`.
    canary: String,
}

/// Placeholders of things that belong to an application.
const APPLICATION_SCOPED: [&str; 7] = [
    "{app}",
    "{canary}",
    "{bare_app}",
    "{running}",
    "{judging}",
    "{paused}",
    "{done}",
];

/// Whether a row acts on something of the fixture's application, which outsiders may
/// not see: named in its path, or, for canary configs, in the document's `applications`
/// (a hidden application there is answered like one in a path).
fn application_scoped(row: &crate::authz_table::Row) -> bool {
    APPLICATION_SCOPED.iter().any(|p| {
        row.path.contains(p)
            || (row.route.starts_with("/api/v1/canaryConfigs")
                && row.body.is_some_and(|b| b.contains(p)))
    })
}

/// Every execution placeholder, for the shared fixture.
const ALL_EXECUTIONS: &str = "{running} {judging} {paused} {done}";

/// Runs `pipeline` (saving `document` as it first) and waits until `ready` holds.
async fn execution(
    server: &Server,
    app: &str,
    document: Value,
    ready: impl Fn(&Value) -> bool,
) -> String {
    let name = document["name"].as_str().unwrap().to_owned();
    let saved = server.save(app, &server.admin, document).await;
    assert!(saved.status == 201 || saved.status == 200, "{saved:?}");
    let id = server.start_execution(app, &name, json!({})).await;
    server.wait_for(&id, "its steady state", ready).await;
    id
}

impl Fixture {
    /// Fresh fixtures; `caller` owns `own_token`. Executions are created only when
    /// `uses` names their placeholder.
    async fn new(server: &Server, caller: &str, uses: &str) -> Fixture {
        let n = uniq();
        let perms: Value = serde_json::from_str(PERMS).unwrap();
        let app = format!("app{n}");
        let bare_app = format!("bare{n}");
        for name in [&app, &bare_app] {
            server
                .app(json!({ "name": name, "permissions": perms }))
                .await;
        }
        let pipeline = "deploy".to_owned();
        server
            .save(&app, &server.admin, wait_pipeline(&app, &pipeline, 1))
            .await
            .expect(201);
        server
            .save(&app, &server.admin, wait_pipeline(&app, &pipeline, 2))
            .await
            .expect(200);
        let user = format!("victim{n}");
        let role = format!("role{n}");
        server.ensure_role(&role).await;
        server.user(&user, &[]).await;
        let (_, own_token) = server.token_for(caller).await;
        let (_, other_token) = server.token_for(&user).await;
        let waiting = |e: &Value| stage(e, "1")["tasks"][0]["status"] == "RUNNING";
        let mut running = String::new();
        if uses.contains("{running}") {
            running = execution(server, &app, wait_pipeline(&app, "hold", 60), waiting).await;
        }
        let mut judging = String::new();
        if uses.contains("{judging}") {
            let judge = json!({ "application": app, "name": "judge", "stages": [
                { "refId": "1", "type": "manualJudgment", "name": "Approve" }
            ] });
            judging = execution(server, &app, judge, waiting).await;
        }
        let mut paused = String::new();
        if uses.contains("{paused}") {
            paused = execution(server, &app, wait_pipeline(&app, "hold", 60), waiting).await;
            server
                .post(
                    &format!("/api/v1/executions/{paused}/pause"),
                    &server.admin,
                    json!(null),
                )
                .await
                .expect(202);
            server.wait_status(&paused, "PAUSED").await;
        }
        let mut done = String::new();
        if uses.contains("{done}") {
            done = execution(server, &app, wait_pipeline(&app, "quick", 0), |e| {
                e["status"] == "SUCCEEDED"
            })
            .await;
        }
        let mut canary = String::new();
        if uses.contains("{canary}") {
            let body = crate::authz_table::CANARY_BODY
                .replace("{app}", &app)
                .replace("{uniq}", &uniq().to_string());
            let created = server
                .post(
                    "/api/v1/canaryConfigs",
                    &server.admin,
                    serde_json::from_str(&body).unwrap(),
                )
                .await
                .expect(201);
            canary = created["canaryConfig"]["id"].as_str().unwrap().to_owned();
        }
        Fixture {
            app,
            canary,
            bare_app,
            pipeline,
            user,
            role,
            own_token,
            other_token,
            running,
            judging,
            paused,
            done,
        }
    }

    fn fill(&self, text: &str) -> String {
        text.replace("{PERMS}", PERMS)
            .replace("{app}", &self.app)
            .replace("{bare_app}", &self.bare_app)
            .replace("{pipeline}", &self.pipeline)
            .replace("{user}", &self.user)
            .replace("{role}", &self.role)
            .replace("{own_token}", &self.own_token)
            .replace("{other_token}", &self.other_token)
            .replace("{running}", &self.running)
            .replace("{judging}", &self.judging)
            .replace("{paused}", &self.paused)
            .replace("{done}", &self.done)
            .replace("{canary}", &self.canary)
            .replace("{uniq}", &uniq().to_string())
    }
}

/// The statuses of an application's executions, their stages and tasks.
async fn execution_state(server: &Server, app: &str) -> Value {
    let list = server
        .get(
            &format!("/api/v1/executions?application={app}&limit=1000"),
            &server.admin,
        )
        .await
        .expect(200);
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let stages: Vec<Value> = e["stages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    // The engine re-polls a running wait task meanwhile (its run token
                    // moves on); what a refused call must not touch is each task's status.
                    let tasks: Vec<Value> = s["tasks"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| json!([t["name"], t["status"]]))
                        .collect();
                    json!([s["refId"], s["status"], tasks, s["context"]])
                })
                .collect();
            json!([e["id"], e["status"], e["canceled"], e["paused"], stages])
        })
        .collect()
}

/// Everything a refused call must leave untouched.
async fn snapshot(server: &Server, fixture: &Fixture) -> Value {
    let mut state = vec![
        server.pipeline_state(&fixture.app).await,
        execution_state(server, &fixture.app).await,
    ];
    for path in [
        "/api/v1/applications",
        "/api/v1/users",
        "/api/v1/roles",
        "/api/v1/tokens",
        "/api/v1/canaryConfigs",
    ] {
        state.push(server.get(path, &server.admin).await.expect(200));
    }
    Value::Array(state)
}

api_test!(every_route, |backend| {
    // Only writers may create applications, so creation is a write-role route too.
    let server = Server::start_with(
        backend,
        Options {
            application_creators: vec!["writers".to_owned()],
            ..Options::default()
        },
    )
    .await;
    let outsider = server.user("outsider", &["outsiders"]).await;
    let reader = server.user("reader", &["readers"]).await;
    let writer = server.user("writer", &["writers"]).await;
    let bad = "gnk_0000000000000000000000000000000000000000000000000000000000000000";
    let shared = Fixture::new(&server, "admin", &format!("{ALL_EXECUTIONS} {{canary}}")).await;

    let rows = table();
    for row in &rows {
        for who in [
            Who::NoToken,
            Who::BadToken,
            Who::Outsider,
            Who::Reader,
            Who::Writer,
            Who::Admin,
        ] {
            let (name, token, expected) = match who {
                Who::NoToken => ("admin", None, 401),
                Who::BadToken => ("admin", Some(bad), 401),
                Who::Outsider => (
                    "outsider",
                    Some(outsider.as_str()),
                    if row.method == Method::PUT && row.route == "/api/v1/applications/{app}" {
                        // A hidden application is answered as a missing one: PUT would
                        // create it, which only creators may.
                        403
                    } else if application_scoped(row) {
                        404
                    } else {
                        row.reader
                    },
                ),
                Who::Reader => ("reader", Some(reader.as_str()), row.reader),
                Who::Writer => ("writer", Some(writer.as_str()), row.writer),
                Who::Admin => ("admin", Some(server.admin.as_str()), row.admin),
            };
            let fresh;
            let fixture = if row.mutates {
                fresh = Fixture::new(&server, name, row.path).await;
                &fresh
            } else {
                &shared
            };
            let path = fixture.fill(row.path);
            let body = match row.body {
                Some(body) => Body::Json(
                    serde_json::from_str(&fixture.fill(body))
                        .unwrap_or_else(|e| panic!("row body {body}: {e}")),
                ),
                None => Body::None,
            };
            let refused = !(200..300).contains(&expected);
            let before = if refused && row.mutates {
                Some(snapshot(&server, fixture).await)
            } else {
                None
            };
            let reply = if path.starts_with("/api/v1/applications/") && path.ends_with("/events") {
                // This stream never ends: only its status counts.
                server.status_of(row.method.clone(), &path, token).await
            } else {
                server.call(row.method.clone(), &path, token, body).await
            };
            assert_eq!(
                reply.status, expected,
                "{} {path} as {who:?}: expected {expected}, got {} {}",
                row.method, reply.status, reply.body
            );
            match expected {
                401 => assert_eq!(reply.body["error"]["code"], "unauthorized", "{path}"),
                403 => assert_eq!(reply.body["error"]["code"], "forbidden", "{path}"),
                404 if who == Who::Outsider && application_scoped(row) => {
                    assert_eq!(reply.body["error"]["code"], "not_found", "{path}");
                    // Nothing tells a hidden application from a missing one.
                    let message = reply.body["error"]["message"].as_str().unwrap();
                    assert!(
                        message.ends_with("not found; create it with `gennaker app save`")
                            || message.contains("not found;"),
                        "{path}: {message}"
                    );
                    assert!(!message.contains("role"), "{path}: {message}");
                }
                _ => {}
            }
            if let Some(before) = before {
                assert_eq!(
                    snapshot(&server, fixture).await,
                    before,
                    "{} {path} as {who:?} was refused but changed something",
                    row.method
                );
            }
        }
    }

    // The table covers every documented route, and the two undocumented ones.
    let openapi = server
        .get("/api/openapi.json", &server.admin)
        .await
        .expect(200);
    let mut documented = BTreeSet::new();
    for (path, item) in openapi["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch", "head", "options"]
                .contains(&method.as_str())
            {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let covered: BTreeSet<_> = rows
        .iter()
        .map(|row| (row.method.to_string(), row.route.to_owned()))
        .collect();
    let mut expected = documented.clone();
    expected.insert(("GET".to_owned(), "/api/openapi.json".to_owned()));
    expected.insert(("GET".to_owned(), "/metrics".to_owned()));
    assert_eq!(
        covered, expected,
        "the authorization table and the OpenAPI document disagree: add a row for each new route"
    );
    assert!(documented.len() >= 20, "{documented:?}");

    // Health needs no token.
    for path in ["/healthz", "/readyz"] {
        server
            .call(Method::GET, path, None, Body::None)
            .await
            .expect(200);
    }

    // A malformed Authorization header is a 401 too.
    let reply = server
        .client
        .get(format!("{}/api/v1/me", server.base))
        .header("Authorization", format!("Basic {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 401);
});
