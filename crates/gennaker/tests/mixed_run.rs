//! The security issue's mixed run through the real binary: a 1,000-stage pipeline is
//! refused, and while one user floods the server with executions, 50 other users'
//! executions still run to the end before the flood does — and no request, from anyone,
//! is answered with a 5xx.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gennaker_store::testing::{TestBackend, TestDatabase};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::Server;
use support::api::Api;
use tokio::sync::Mutex;

/// How many executions the flooding user submits.
const FLOOD: usize = 800;
/// How many of them are in before the other users start.
const FLOOD_HEAD_START: usize = 400;
/// How many other users each run one execution meanwhile.
const USERS: usize = 50;
/// The bound on the whole run.
const PATIENCE: Duration = Duration::from_secs(240);

/// Five chained 0-second waits: every stage takes a queue hop, as real stages do.
fn steps() -> Value {
    let stages: Vec<Value> = (1..=5)
        .map(|i| {
            let after: Vec<String> = if i == 1 { vec![] } else { vec![(i - 1).to_string()] };
            json!({"refId": i.to_string(), "name": format!("step {i}"), "type": "wait", "waitTime": 0, "requisiteStageRefIds": after})
        })
        .collect();
    json!({"name": "steps", "stages": stages})
}

/// Every status the server answered, for the no-5xx check.
#[derive(Default)]
struct Answers(Mutex<Vec<(String, StatusCode)>>);

impl Answers {
    async fn record(&self, what: &str, status: StatusCode) {
        self.0.lock().await.push((what.to_owned(), status));
    }

    async fn server_errors(&self) -> Vec<(String, StatusCode)> {
        let answers = self.0.lock().await;
        answers
            .iter()
            .filter(|(_, status)| status.is_server_error())
            .cloned()
            .collect()
    }
}

/// Creates a user with an API token; returns the token.
async fn user_with_token(admin: &Api, name: &str) -> String {
    admin
        .post("/api/v1/users", json!({"name": name, "roles": []}))
        .await;
    let created = admin
        .post("/api/v1/tokens", json!({"name": "load", "user": name}))
        .await;
    created["token"].as_str().unwrap().to_owned()
}

async fn run(api: &Api, app: &str, answers: &Answers) -> Option<String> {
    let (status, body) = api
        .attempt(
            Method::POST,
            &format!("/api/v1/applications/{app}/pipelines/steps/executions"),
            Some(json!({})),
        )
        .await;
    answers.record("run", status).await;
    body["id"].as_str().map(str::to_owned)
}

async fn status_of(api: &Api, id: &str, answers: &Answers) -> String {
    let (status, body) = api
        .attempt(Method::GET, &format!("/api/v1/executions/{id}"), None)
        .await;
    answers.record("get", status).await;
    body["status"].as_str().unwrap_or_default().to_owned()
}

/// How many of `app`'s executions have succeeded.
async fn succeeded(admin: &Api, app: &str, answers: &Answers) -> usize {
    let (status, body) = admin
        .attempt(
            Method::GET,
            &format!("/api/v1/executions?application={app}&status=SUCCEEDED&limit=1000"),
            None,
        )
        .await;
    answers.record("list", status).await;
    body.as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_flood_neither_starves_fifty_others_nor_breaks_the_server_sqlite() {
    mixed_run(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_flood_neither_starves_fifty_others_nor_breaks_the_server_postgres() {
    mixed_run(TestBackend::Postgres).await;
}

async fn mixed_run(backend: TestBackend) {
    let data_dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create(backend).await.unwrap();
    let server = Server::start(data_dir.path().to_path_buf(), db.url.clone());
    let admin = Api::new(&server);
    server.ready(&admin.http).await;
    let answers = Arc::new(Answers::default());

    for app in ["flood", "shop"] {
        admin
            .post(
                "/api/v1/applications",
                json!({"name": app, "email": "team@example.com"}),
            )
            .await;
        admin
            .post(&format!("/api/v1/applications/{app}/pipelines"), steps())
            .await;
    }

    // A pipeline of 1,000 stages is refused at save, with where and why.
    let huge: Vec<Value> = (1..=1000)
        .map(|i| json!({"refId": i.to_string(), "type": "wait", "waitTime": 0}))
        .collect();
    let (status, refused) = admin
        .attempt(
            Method::POST,
            "/api/v1/applications/shop/pipelines",
            Some(json!({"name": "huge", "stages": huge})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let text = refused.to_string();
    assert!(
        text.contains("the pipeline has 1000 stages; a pipeline may have at most 500")
            && text.contains("$.stages"),
        "{text}"
    );
    let (status, _) = admin
        .attempt(
            Method::GET,
            "/api/v1/applications/shop/pipelines/huge",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");

    // One user floods: FLOOD executions, 16 submissions at a time.
    let flooder = Arc::new(Api::with_token(
        &server,
        &user_with_token(&admin, "flooder").await,
    ));
    let submitted = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + PATIENCE;
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (flooder, answers, submitted) = (flooder.clone(), answers.clone(), submitted.clone());
        flood.spawn(async move {
            while submitted.fetch_add(1, Ordering::SeqCst) < FLOOD && Instant::now() < deadline {
                run(&flooder, "flood", &answers).await;
            }
        });
    }
    while submitted.load(Ordering::SeqCst) < FLOOD_HEAD_START {
        assert!(Instant::now() < deadline, "the flood did not get going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Meanwhile 50 other users each run one execution.
    let mut users = Vec::new();
    for n in 1..=USERS {
        users.push(Api::with_token(
            &server,
            &user_with_token(&admin, &format!("user-{n:02}")).await,
        ));
    }
    let mut runs = tokio::task::JoinSet::new();
    for (n, user) in users.into_iter().enumerate() {
        let answers = answers.clone();
        runs.spawn(async move {
            let id = run(&user, "shop", &answers)
                .await
                .expect("the run was accepted");
            loop {
                let status = status_of(&user, &id, &answers).await;
                if matches!(
                    status.as_str(),
                    "SUCCEEDED" | "TERMINAL" | "CANCELED" | "STOPPED"
                ) {
                    return (n, status);
                }
                assert!(
                    Instant::now() < deadline,
                    "user {n}'s execution did not end"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    while let Some(done) = runs.join_next().await {
        let (n, status) = done.unwrap();
        assert_eq!(status, "SUCCEEDED", "user {n}");
    }
    // Every other user is done while the flood still runs: they did not wait behind it.
    let flood_done = succeeded(&admin, "flood", &answers).await;
    println!(
        "{backend:?}: the other {USERS} users were done when {flood_done} of the {FLOOD} flood executions were"
    );
    assert!(
        flood_done < FLOOD,
        "the flood finished first ({flood_done} of {FLOOD}): the other users waited behind it"
    );

    while flood.join_next().await.is_some() {}
    // The flood itself completes too: nothing was dropped to serve the others.
    while succeeded(&admin, "flood", &answers).await < FLOOD {
        assert!(Instant::now() < deadline, "the flood did not finish");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let errors = answers.server_errors().await;
    assert!(errors.is_empty(), "5xx answers: {errors:?}");
}
