//! The client against a real HTTP server on 127.0.0.1 that mimics `/api/v1`, plus offline
//! validation. Commands are parsed the way the binary parses them, so global options and
//! subcommand shapes are exercised too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_engine::StageRegistry;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use clap::{CommandFactory, FromArgMatches, Parser};
use gennaker_cli::{CliError, ClientCommand, ClientOptions, run_with};
use serde_json::{Value, json};

/// The binary's shape: options flattened, client commands as subcommands.
#[derive(Parser)]
struct TestCli {
    #[command(flatten)]
    client: ClientOptions,
    #[command(subcommand)]
    command: ClientCommand,
}

/// Parses `argv` as the binary does: the options scoped to the client commands.
fn parse(argv: &[String]) -> TestCli {
    let matches = ClientOptions::scope(TestCli::command(), &[], &[])
        .try_get_matches_from(argv)
        .unwrap();
    TestCli::from_arg_matches(&matches).unwrap()
}

/// One request as the mock server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    /// Path and query exactly as sent (still percent-encoded).
    uri: String,
    authorization: Option<String>,
    body: String,
}

type Log = Arc<Mutex<Vec<Seen>>>;

const GOOD: &str = "good-token";
const READ_ONLY: &str = "read-only-token";

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn ok(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn pipeline_record(app: &str, name: &str, revision: u64) -> Value {
    json!({
        "id": "p-1", "application": app, "name": name, "revision": revision,
        "config": {"application": app, "name": name, "stages": [
            {"refId": "1", "type": "wait", "name": "Wait", "waitTime": 5, "requisiteStageRefIds": []}
        ]},
        "createdAt": 1_700_000_000_000_i64, "updatedAt": 1_700_000_000_000_i64, "updatedBy": "admin"
    })
}

async fn handle(
    State(log): State<Log>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    log.lock().unwrap().push(Seen {
        method: method.clone(),
        uri: uri.to_string(),
        authorization: authorization.clone(),
        body: body.clone(),
    });
    match authorization.as_deref() {
        None => {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing bearer token",
            );
        }
        Some(auth) if auth == format!("Bearer {GOOD}") => {}
        Some(auth) if auth == format!("Bearer {READ_ONLY}") => {
            if method != Method::GET {
                return error(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "WRITE permission on application shop is required",
                );
            }
        }
        Some(_) => return error(StatusCode::UNAUTHORIZED, "unauthorized", "invalid token"),
    }
    let path = uri.path();
    let segments: Vec<&str> = path.trim_start_matches("/api/v1/").split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["me"]) => ok(
            StatusCode::OK,
            json!({"name": "admin", "admin": true, "roles": ["ops"], "createdAt": 0}),
        ),
        ("GET", ["applications"]) => ok(
            StatusCode::OK,
            json!([{"name": "shop", "config": {"name": "shop", "email": "shop@example.com",
                    "cloudProviders": "kubernetes,aws"},
                    "createdAt": 0, "updatedAt": 1_700_000_000_000_i64, "updatedBy": "admin"}]),
        ),
        ("GET", ["applications", "shop"]) => ok(
            StatusCode::OK,
            json!({"name": "shop", "config": {"name": "shop", "email": "shop@example.com",
                   "permissions": {"READ": ["dev"]}},
                   "createdAt": 0, "updatedAt": 0, "updatedBy": "admin"}),
        ),
        ("GET", ["applications", _]) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "application ghost does not exist",
        ),
        ("PUT", ["applications", app]) => {
            let config: Value = serde_json::from_str(&body).unwrap();
            ok(
                StatusCode::OK,
                json!({"name": app, "config": config, "createdAt": 0, "updatedAt": 0, "updatedBy": "admin"}),
            )
        }
        ("DELETE", ["applications", _]) => StatusCode::NO_CONTENT.into_response(),
        ("GET", ["applications", app, "pipelines", name]) => {
            let name = percent_decode(name);
            ok(StatusCode::OK, pipeline_record(app, &name, 3))
        }
        ("POST", ["applications", app, "pipelines"]) => {
            let document: Value = serde_json::from_str(&body).unwrap();
            if document["stages"][0]["type"] == "bogus" {
                return ok(
                    StatusCode::BAD_REQUEST,
                    json!({"error": {"code": "bad_request", "message": "the pipeline is not valid",
                        "problems": [{"severity": "error", "path": "$.stages[0].type",
                            "message": "unknown stage type `bogus`", "hint": "did you mean `wait`?"}]}}),
                );
            }
            let name = document["name"].as_str().unwrap();
            ok(
                StatusCode::CREATED,
                json!({"outcome": "created", "pipeline": pipeline_record(app, name, 1),
                    "warnings": [{"severity": "warning", "path": "$.triggers[0].type",
                        "message": "Gennaker cannot run jenkins triggers yet", "hint": null}]}),
            )
        }
        ("POST", ["roles"]) => {
            let sent: Value = serde_json::from_str(&body).unwrap();
            ok(
                StatusCode::CREATED,
                json!({"name": sent["name"], "description": sent["description"], "createdAt": 0}),
            )
        }
        ("POST", ["users"]) => {
            let sent: Value = serde_json::from_str(&body).unwrap();
            ok(
                StatusCode::CREATED,
                json!({"name": sent["name"], "admin": sent["admin"], "roles": sent["roles"], "createdAt": 0}),
            )
        }
        ("PUT", ["users", name, "roles"]) => {
            let sent: Value = serde_json::from_str(&body).unwrap();
            ok(
                StatusCode::OK,
                json!({"name": name, "admin": false, "roles": sent["roles"], "createdAt": 0}),
            )
        }
        ("GET", ["tokens"]) => ok(
            StatusCode::OK,
            json!([{"id": "t-1", "user": "admin", "name": "ci", "createdAt": 0,
                    "expiresAt": null, "revokedAt": null}]),
        ),
        ("POST", ["tokens"]) => ok(
            StatusCode::CREATED,
            json!({"token": "gnk_s3cret", "info": {"id": "t-2", "user": "alice", "name": "ci",
                   "createdAt": 0, "expiresAt": 86_400_000, "revokedAt": null}}),
        ),
        ("DELETE", ["tokens", id]) => ok(
            StatusCode::OK,
            json!({"id": id, "user": "alice", "name": "ci", "createdAt": 0, "expiresAt": null,
                   "revokedAt": 1}),
        ),
        // The second status is one a newer server might send.
        ("GET", ["executions"]) => ok(
            StatusCode::OK,
            json!([{"id": "e-1", "application": "shop", "name": "deploy", "status": "RUNNING"},
                   {"id": "e-2", "application": "shop", "name": "deploy", "status": "QUIESCED"}]),
        ),
        ("GET", ["audit"]) => ok(
            StatusCode::OK,
            json!([{"id": 1, "at": 0, "actor": "admin", "action": "application.save",
                    "target": "applications/shop", "outcome": "ok", "status": 200, "detail": null}]),
        ),
        _ => (StatusCode::NOT_FOUND, "no route").into_response(),
    }
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

struct Mock {
    addr: SocketAddr,
    log: Log,
}

impl Mock {
    async fn start() -> Self {
        let log = Log::default();
        let app = Router::new().fallback(handle).with_state(log.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, log }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn last(&self) -> Seen {
        self.log.lock().unwrap().last().cloned().unwrap()
    }

    fn requests(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    /// Runs `gennaker --url <mock> [--token t] <args…>`, returning stdout or the error.
    async fn run(&self, token: Option<&str>, args: &[&str]) -> Result<String, CliError> {
        let mut argv = vec!["gennaker".to_owned(), "--url".to_owned(), self.url()];
        if let Some(token) = token {
            argv.extend(["--token".to_owned(), token.to_owned()]);
        }
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        run_args(&argv, None).await
    }
}

async fn run_args(argv: &[String], config: Option<&Path>) -> Result<String, CliError> {
    let cli = parse(argv);
    let mut out = Vec::new();
    let catalog = StageRegistry::standard().catalog().clone();
    let result = run_with(&cli.client, cli.command, config, &mut out, &catalog).await;
    result.map(|()| String::from_utf8(out).unwrap())
}

#[test]
fn the_command_line_is_well_formed() {
    ClientOptions::scope(TestCli::command(), &[], &[]).debug_assert();
}

#[tokio::test]
async fn sends_the_bearer_token_and_renders_a_table() {
    let mock = Mock::start().await;
    let out = mock.run(Some(GOOD), &["app", "list"]).await.unwrap();
    let seen = mock.last();
    assert_eq!(seen.method, Method::GET);
    assert_eq!(seen.uri, "/api/v1/applications");
    assert_eq!(seen.authorization.as_deref(), Some("Bearer good-token"));
    assert!(out.contains("NAME"), "{out}");
    assert!(out.contains("shop@example.com"), "{out}");
    assert!(out.contains("kubernetes, aws"), "{out}");
    assert!(out.contains("2023-11-14 22:13:20 UTC"), "{out}");
}

#[tokio::test]
async fn json_and_yaml_output_pass_the_record_through() {
    let mock = Mock::start().await;
    let out = mock
        .run(Some(GOOD), &["app", "get", "shop", "-o", "json"])
        .await
        .unwrap();
    let value: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(value["config"]["permissions"]["READ"][0], "dev");

    let out = mock
        .run(Some(GOOD), &["-o", "yaml", "app", "get", "shop"])
        .await
        .unwrap();
    assert!(out.contains("email: shop@example.com"), "{out}");
}

#[tokio::test]
async fn pipeline_names_are_percent_encoded() {
    let mock = Mock::start().await;
    let out = mock
        .run(
            Some(GOOD),
            &["pipeline", "get", "shop", "deploy to prod/eu"],
        )
        .await
        .unwrap();
    assert_eq!(
        mock.last().uri,
        "/api/v1/applications/shop/pipelines/deploy%20to%20prod%2Feu"
    );
    assert!(out.contains("deploy to prod/eu"), "{out}");
    assert!(out.contains("wait"), "{out}");
}

#[tokio::test]
async fn missing_token_explains_where_to_get_one() {
    let mock = Mock::start().await;
    let err = mock.run(None, &["whoami"]).await.unwrap_err();
    assert!(matches!(err, CliError::Unauthorized { .. }), "{err:?}");
    assert_eq!(mock.last().authorization, None);
    let text = err.to_string();
    assert!(text.contains("none was given"), "{text}");
    assert!(text.contains("admin-token"), "{text}");
}

#[tokio::test]
async fn a_rejected_token_is_named_as_such() {
    let mock = Mock::start().await;
    let err = mock.run(Some("stale"), &["whoami"]).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("rejected the token"), "{text}");
    assert!(text.contains("invalid token"), "{text}");
}

#[tokio::test]
async fn forbidden_shows_the_missing_permission() {
    let mock = Mock::start().await;
    let err = mock
        .run(Some(READ_ONLY), &["app", "delete", "shop"])
        .await
        .unwrap_err();
    assert!(matches!(err, CliError::Forbidden { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("WRITE permission on application shop is required"),
        "{err}"
    );
}

#[tokio::test]
async fn not_found_says_what() {
    let mock = Mock::start().await;
    let err = mock
        .run(Some(GOOD), &["app", "get", "ghost"])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "not found: application ghost does not exist"
    );
}

#[tokio::test]
async fn connection_refused_points_at_the_server_and_settings() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let argv: Vec<String> = ["gennaker", "--url", &url, "--token", GOOD, "app", "list"]
        .map(str::to_owned)
        .to_vec();
    let err = run_args(&argv, None).await.unwrap_err();
    assert!(matches!(err, CliError::ConnectionRefused { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "cannot reach Gennaker at {url}: connection refused"
        )),
        "{text}"
    );
    assert!(text.contains("gennaker server"), "{text}");
    assert!(text.contains("GENNAKER_URL"), "{text}");
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn pipeline_save_posts_json_and_prints_warnings() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "deploy.yaml",
        "name: deploy\nstages:\n  - refId: \"1\"\n    type: wait\n    name: Wait\n    waitTime: 5\n",
    );
    let out = mock
        .run(
            Some(GOOD),
            &[
                "pipeline",
                "save",
                "-f",
                file.to_str().unwrap(),
                "--application",
                "shop",
            ],
        )
        .await
        .unwrap();
    let seen = mock.last();
    assert_eq!(seen.uri, "/api/v1/applications/shop/pipelines");
    let sent: Value = serde_json::from_str(&seen.body).unwrap();
    assert_eq!(sent["application"], "shop");
    assert_eq!(sent["stages"][0]["waitTime"], 5);
    assert!(
        out.contains("Created pipeline 'deploy' in shop (revision 1)."),
        "{out}"
    );
    assert!(
        out.contains("warning  $.triggers[0].type: Gennaker cannot run jenkins triggers yet"),
        "{out}"
    );
}

#[tokio::test]
async fn pipeline_save_rejected_lists_the_problems() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bad.json",
        r#"{"application": "shop", "name": "bad", "stages": [{"refId": "1", "type": "bogus"}]}"#,
    );
    let err = mock
        .run(
            Some(GOOD),
            &["pipeline", "save", "-f", file.to_str().unwrap()],
        )
        .await
        .unwrap_err();
    let CliError::Rejected { problems, .. } = &err else {
        panic!("expected Rejected, got {err:?}");
    };
    assert_eq!(problems.len(), 1);
    let text = err.to_string();
    assert!(
        text.contains("error    $.stages[0].type: unknown stage type `bogus`"),
        "{text}"
    );
    assert!(text.contains("hint: did you mean `wait`?"), "{text}");
}

#[tokio::test]
async fn app_save_from_flags_keeps_existing_fields() {
    let mock = Mock::start().await;
    mock.run(
        Some(GOOD),
        &[
            "app",
            "save",
            "--name",
            "shop",
            "--write-role",
            "ops,release",
        ],
    )
    .await
    .unwrap();
    let requests = mock.requests();
    let put = requests.last().unwrap();
    assert_eq!(put.method, Method::PUT);
    assert_eq!(put.uri, "/api/v1/applications/shop");
    let sent: Value = serde_json::from_str(&put.body).unwrap();
    assert_eq!(
        sent,
        json!({"name": "shop", "email": "shop@example.com",
               "permissions": {"READ": ["dev"], "WRITE": ["ops", "release"]}})
    );
}

#[tokio::test]
async fn token_create_prints_the_secret_once_with_a_warning() {
    let mock = Mock::start().await;
    let out = mock
        .run(
            Some(GOOD),
            &[
                "token",
                "create",
                "--name",
                "ci",
                "--user",
                "alice",
                "--expires-in-days",
                "1",
            ],
        )
        .await
        .unwrap();
    let sent: Value = serde_json::from_str(&mock.last().body).unwrap();
    assert_eq!(
        sent,
        json!({"name": "ci", "user": "alice", "expiresInDays": 1})
    );
    assert!(out.contains("gnk_s3cret"), "{out}");
    assert!(out.contains("cannot be shown again"), "{out}");
    assert_eq!(out.matches("gnk_s3cret").count(), 1, "{out}");
}

#[tokio::test]
async fn query_parameters_are_sent() {
    let mock = Mock::start().await;
    mock.run(Some(GOOD), &["token", "list", "--user", "alice smith"])
        .await
        .unwrap();
    assert_eq!(mock.last().uri, "/api/v1/tokens?user=alice+smith");
    let out = mock
        .run(
            Some(GOOD),
            &[
                "audit",
                "--limit",
                "5",
                "--actor",
                "admin",
                "--target",
                "applications/shop",
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        mock.last().uri,
        "/api/v1/audit?limit=5&actor=admin&target=applications%2Fshop"
    );
    assert!(out.contains("application.save"), "{out}");
    let out = mock
        .run(
            Some(GOOD),
            &["execution", "list", "--status", "running,Paused"],
        )
        .await
        .unwrap();
    assert_eq!(
        mock.last().uri,
        "/api/v1/executions?status=RUNNING%2CPAUSED"
    );
    assert!(out.contains("QUIESCED"), "{out}");
}

#[tokio::test]
async fn users_and_roles_send_what_the_server_accepts() {
    let mock = Mock::start().await;
    mock.run(Some(GOOD), &["role", "create", "qa"])
        .await
        .unwrap();
    let sent: Value = serde_json::from_str(&mock.last().body).unwrap();
    assert_eq!(sent, json!({"name": "qa", "description": ""}));

    let out = mock
        .run(
            Some(GOOD),
            &["user", "create", "alice", "--role", "qa", "--role", "dev"],
        )
        .await
        .unwrap();
    let sent: Value = serde_json::from_str(&mock.last().body).unwrap();
    assert_eq!(
        sent,
        json!({"name": "alice", "admin": false, "roles": ["qa", "dev"]})
    );
    assert!(out.starts_with("Created user alice."), "{out}");

    let out = mock
        .run(
            Some(GOOD),
            &["-o", "json", "user", "set-roles", "alice", "--clear"],
        )
        .await
        .unwrap();
    assert_eq!(mock.last().uri, "/api/v1/users/alice/roles");
    let sent: Value = serde_json::from_str(&mock.last().body).unwrap();
    assert_eq!(sent, json!({"roles": []}));
    let returned: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(returned["roles"], json!([]));
}

#[tokio::test]
async fn token_revoke_and_delete_confirm() {
    let mock = Mock::start().await;
    let out = mock
        .run(Some(GOOD), &["token", "revoke", "t-9"])
        .await
        .unwrap();
    assert_eq!(mock.last().method, Method::DELETE);
    assert!(
        out.contains("Revoked token 'ci' (id t-9) of user alice."),
        "{out}"
    );
    let out = mock
        .run(Some(GOOD), &["app", "delete", "shop"])
        .await
        .unwrap();
    assert_eq!(out, "Deleted application shop.\n");
}

#[tokio::test]
async fn the_config_file_supplies_url_and_token() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "config.toml",
        &format!("url = \"{}\"\ntoken = \"{GOOD}\"\n", mock.url()),
    );
    let argv = ["gennaker", "whoami"].map(str::to_owned).to_vec();
    let out = run_args(&argv, Some(&config)).await.unwrap();
    assert!(out.contains("admin"), "{out}");
    assert!(out.contains(&format!("Server   {}", mock.url())), "{out}");
    assert_eq!(
        mock.last().authorization.as_deref(),
        Some("Bearer good-token")
    );
}

#[tokio::test]
async fn the_config_file_token_never_reaches_another_url() {
    let trusted = Mock::start().await;
    let other = Mock::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "config.toml",
        &format!("url = \"{}\"\ntoken = \"{GOOD}\"\n", trusted.url()),
    );
    let argv = ["gennaker", "--url", &other.url(), "whoami"]
        .map(str::to_owned)
        .to_vec();
    let err = run_args(&argv, Some(&config)).await.unwrap_err();
    assert!(matches!(err, CliError::TokenNotForUrl { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("--token or set GENNAKER_TOKEN"), "{text}");
    assert!(!text.contains(GOOD), "{text}");
    assert!(other.requests().is_empty(), "{:?}", other.requests());

    // An explicit token for that server works as before.
    let argv = ["gennaker", "--url", &other.url(), "--token", GOOD, "whoami"]
        .map(str::to_owned)
        .to_vec();
    run_args(&argv, Some(&config)).await.unwrap();
    assert_eq!(
        other.last().authorization.as_deref(),
        Some("Bearer good-token")
    );
}

// Offline validation: no server is started, and a config pointing nowhere is never used.

const GOOD_PIPELINE: &str = r#"{
  "application": "shop",
  "name": "deploy",
  "stages": [
    {"refId": "1", "type": "wait", "name": "Wait", "waitTime": 30, "requisiteStageRefIds": []},
    {"refId": "2", "type": "wait", "name": "Wait more", "waitTime": 5, "requisiteStageRefIds": ["1"]}
  ]
}"#;

async fn validate(file: &Path, output: Option<&str>) -> (Result<(), CliError>, String) {
    let mut argv = vec!["gennaker".to_owned()];
    if let Some(output) = output {
        argv.extend(["-o".to_owned(), output.to_owned()]);
    }
    argv.extend(["pipeline", "validate", "-f"].map(str::to_owned));
    argv.push(file.to_str().unwrap().to_owned());
    let cli = parse(&argv);
    let mut out = Vec::new();
    let catalog = StageRegistry::standard().catalog().clone();
    let result = run_with(&cli.client, cli.command, None, &mut out, &catalog).await;
    (result, String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn validate_accepts_a_good_pipeline_offline() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "good.json", GOOD_PIPELINE);
    let (result, out) = validate(&file, None).await;
    result.unwrap();
    assert!(out.contains("valid pipeline"), "{out}");

    let (result, out) = validate(&file, Some("json")).await;
    result.unwrap();
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["valid"], true);
}

#[tokio::test]
async fn validate_reports_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bad.yaml",
        "application: shop\nname: deploy\nstages:\n  - refId: \"1\"\n    type: wait\n    name: Wait\n    waitTime: 30\n  - refId: \"2\"\n    type: wiat\n    name: Typo\n    requisiteStageRefIds: [\"9\"]\n",
    );
    let (result, out) = validate(&file, None).await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, CliError::Invalid { errors, .. } if errors >= 1),
        "{err:?}\n{out}"
    );
    assert!(err.to_string().contains("is not a valid pipeline"), "{err}");
    assert!(out.contains("$.stages[1].requisiteStageRefIds[0]"), "{out}");
    assert!(out.contains("$.stages[1].type"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("error    $.stages[1]")),
        "{out}"
    );

    let (result, out) = validate(&file, Some("json")).await;
    assert!(result.is_err());
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["valid"], false);
    assert!(report["problems"].as_array().unwrap().len() >= 2, "{out}");
}

#[tokio::test]
async fn validate_reports_syntax_errors_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "broken.json",
        "{\n  \"name\": \"deploy\",\n  \"stages\": [\n}\n",
    );
    let (result, _) = validate(&file, None).await;
    let err = result.unwrap_err();
    let CliError::Syntax { error, .. } = &err else {
        panic!("expected Syntax, got {err:?}");
    };
    assert_eq!(error.line, 4);
    assert!(
        err.to_string()
            .starts_with(&format!("{}:4:", file.display())),
        "{err}"
    );
}

#[tokio::test]
async fn validate_names_a_missing_file() {
    let (result, _) = validate(Path::new("/nonexistent/p.json"), None).await;
    let err = result.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read /nonexistent/p.json"),
        "{err}"
    );
}
