//! Triggers end to end on a real server process: a webhook with payload constraints
//! and a secret fires its pipeline once (a redelivery does not fire again), a bad
//! signature or payload starts nothing and says why in the application's trigger log,
//! and a pipeline trigger chains A → B; a git push binds the pipeline's expected
//! artifacts, which a later stage reads and a deploy runs (fetched from 127.0.0.1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod support;

use support::Server;
use support::api::Api;

async fn executions_of(api: &Api, app: &str, pipeline: &str) -> Vec<Value> {
    api.get(&format!(
        "/api/v1/executions?application={app}&pipeline={pipeline}&limit=100"
    ))
    .await
    .as_array()
    .cloned()
    .unwrap_or_default()
}

async fn wait_for(api: &Api, app: &str, pipeline: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = executions_of(api, app, pipeline).await;
        if found.len() >= count || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn webhooks_fire_once_say_why_not_and_chain_pipelines() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("gennaker.db").display());
    let server = Server::start(dir.path().to_path_buf(), url);
    let api = Api::new(&server);
    server.ready(&api.http).await;
    api.post(
        "/api/v1/applications",
        json!({"name": "shop", "email": "a@b.c"}),
    )
    .await;
    // The service identity triggered executions run as (no roles: "shop" has no
    // permissions, so every user may execute it).
    api.post("/api/v1/users", json!({"name": "triggers", "roles": []}))
        .await;
    let build = api
        .post(
            "/api/v1/applications/shop/pipelines",
            json!({"name": "build", "application": "shop",
            "triggers": [{"type": "webhook", "enabled": true, "source": "ci", "secret": "s3cr3t",
                          "payloadConstraints": {"env": "^prod$"}}],
            "stages": [{"refId": "1", "type": "evaluateVariables", "name": "v",
                        "variables": [{"key": "who", "value": "${trigger.payload.build.by}"}]}]}),
        )
        .await;
    let build_id = build["pipeline"]["id"].as_str().unwrap().to_owned();
    api.post("/api/v1/applications/shop/pipelines", json!({"name": "deploy", "application": "shop",
        "triggers": [{"type": "pipeline", "enabled": true, "application": "shop", "pipeline": build_id, "status": ["successful"]}],
        "stages": [{"refId": "1", "type": "wait", "name": "w", "waitTime": 0}]}))
        .await;

    let http = reqwest::Client::new();
    let send = |body: &'static str, signature: Option<String>, delivery: &'static str| {
        let mut request = http
            .post(server.url("/webhooks/webhook/ci"))
            .header("content-type", "application/json")
            .header("x-event-id", delivery)
            .body(body);
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        request.send()
    };
    let good = r#"{"env": "prod", "build": {"by": "jenkins"}}"#;
    let signed = gennaker_triggers::github_signature_256("s3cr3t", good.as_bytes());
    let first = send(good, Some(signed.clone()), "d-1").await.unwrap();
    assert_eq!(first.status(), 200);
    let receipt: Value = first.json().await.unwrap();
    assert_eq!(receipt["eventProcessed"], true);
    // The same delivery again: acknowledged, nothing new.
    assert_eq!(
        send(good, Some(signed.clone()), "d-1")
            .await
            .unwrap()
            .status(),
        200
    );
    // A wrong signature, a failed constraint and a body that is not JSON start nothing.
    let forged = gennaker_triggers::github_signature_256("guess", good.as_bytes());
    assert_eq!(send(good, Some(forged), "d-2").await.unwrap().status(), 200);
    let staging = r#"{"env": "staging"}"#;
    let staging_signed = gennaker_triggers::github_signature_256("s3cr3t", staging.as_bytes());
    assert_eq!(
        send(staging, Some(staging_signed), "d-3")
            .await
            .unwrap()
            .status(),
        200
    );
    let bad = send("not json", None, "d-4").await.unwrap();
    assert_eq!(bad.status(), 400);
    assert!(!bad.text().await.unwrap().contains("s3cr3t"));

    let builds = wait_for(&api, "shop", "build", 1).await;
    assert_eq!(builds.len(), 1, "one delivery fires once: {builds:?}");
    let execution = api.wait_end(builds[0]["id"].as_str().unwrap()).await;
    assert_eq!(execution["status"], "SUCCEEDED");
    assert_eq!(execution["trigger"]["type"], "webhook");
    assert_eq!(execution["trigger"]["user"], "triggers");
    assert!(execution["trigger"].get("secret").is_none());
    assert_eq!(execution["stages"][0]["outputs"]["who"], "jenkins");

    // A → B: the build's success fires the deploy, once.
    let deploys = wait_for(&api, "shop", "deploy", 1).await;
    assert_eq!(deploys.len(), 1);
    let deploy = api.wait_end(deploys[0]["id"].as_str().unwrap()).await;
    assert_eq!(deploy["trigger"]["type"], "pipeline");
    assert_eq!(deploy["trigger"]["parentExecution"]["id"], builds[0]["id"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(executions_of(&api, "shop", "build").await.len(), 1);
    assert_eq!(executions_of(&api, "shop", "deploy").await.len(), 1);

    // The log says what fired and why the others did not.
    let log = api.get("/api/v1/applications/shop/triggerEvents").await;
    let text = log.to_string();
    assert!(
        text.contains("signature invalid: X-Hub-Signature-256"),
        "{text}"
    );
    assert!(text.contains("constraint 'env' failed"), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");
    let fired: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|entry| entry["pipelines"].as_array().unwrap())
        .filter(|p| p["fired"] == true && p.get("executionId").is_some())
        .collect();
    assert_eq!(fired.len(), 2, "the build and the deploy: {text}");
}

/// Serves `file` at `GET /gennaker` on 127.0.0.1; returns its URL.
async fn serve_file(file: &'static str) -> String {
    let bytes = bytes_of(file).await;
    let app = axum::Router::new().route(
        "/gennaker",
        axum::routing::get(move || {
            let bytes = bytes.clone();
            async move { bytes }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/gennaker")
}

async fn bytes_of(file: &str) -> axum::body::Bytes {
    tokio::fs::read(file).await.unwrap().into()
}

#[tokio::test]
async fn a_git_push_binds_expected_artifacts_that_a_deploy_uses() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("gennaker.db").display());
    // Artifact URLs on 127.0.0.1 pass the outbound policy only with the allow-list.
    let server = Server::start_loopback(dir.path().to_path_buf(), url);
    let api = Api::new(&server);
    server.ready(&api.http).await;
    api.post(
        "/api/v1/applications",
        json!({"name": "shop", "email": "a@b.c"}),
    )
    .await;
    api.post("/api/v1/users", json!({"name": "triggers", "roles": []}))
        .await;
    let _leftovers = support::api::KillLeftovers("art-");
    let binary = serve_file(support::BIN).await;
    api.post(
        "/api/v1/applications/shop/pipelines",
        json!({"name": "ship", "application": "shop",
        "expectedArtifacts": [
            {"id": "repo-id", "displayName": "repo",
             "matchArtifact": {"type": "git/repo", "name": "acme/web", "artifactAccount": "github"}},
            {"id": "bin-id", "displayName": "binary",
             "matchArtifact": {"type": "http/file", "name": "gennaker"},
             "useDefaultArtifact": true,
             "defaultArtifact": {"type": "http/file", "name": "gennaker", "reference": binary}}
        ],
        "triggers": [{"type": "git", "enabled": true, "source": "github", "project": "acme",
                      "slug": "web", "branch": "main", "secret": "s3cr3t",
                      "expectedArtifactIds": ["repo-id", "bin-id"]}],
        "stages": [
            {"refId": "1", "type": "evaluateVariables", "name": "commit",
             "variables": [{"key": "sha", "value": "${#triggerResolvedArtifact('repo').version}"}]},
            {"refId": "2", "type": "deploy", "name": "deploy", "requisiteStageRefIds": ["1"],
             "clusters": [{
                "application": "shop", "stack": "art", "account": "local", "cloudProvider": "local",
                "capacity": {"min": 1, "max": 1, "desired": 1},
                "artifactId": "bin-id",
                "args": ["demo-app", "--version", "art-${sha}"],
                "healthCheck": {"path": "/health"}, "gracePeriodSeconds": 5
             }]}
        ]}),
    )
    .await;

    let push = json!({"ref": "refs/heads/main", "after": "c0ffee1234",
        "repository": {"name": "web", "owner": {"name": "acme"},
                       "clone_url": "https://git.example/acme/web.git"}})
    .to_string();
    let signature = gennaker_triggers::github_signature_256("s3cr3t", push.as_bytes());
    let response = reqwest::Client::new()
        .post(server.url("/webhooks/git/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", "push-1")
        .header("x-hub-signature-256", signature)
        .body(push)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let runs = wait_for(&api, "shop", "ship", 1).await;
    assert_eq!(runs.len(), 1, "the push fires the pipeline");
    let done = api.wait_end(runs[0]["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done:#}");
    let resolved = done["trigger"]["resolvedExpectedArtifacts"]
        .as_array()
        .unwrap();
    assert_eq!(resolved.len(), 2, "{resolved:?}");
    assert_eq!(resolved[0]["boundArtifact"]["version"], "c0ffee1234");
    assert_eq!(
        resolved[0]["boundArtifact"]["reference"],
        "https://git.example/acme/web.git"
    );
    assert_eq!(resolved[0]["boundArtifact"]["metadata"]["branch"], "main");
    assert_eq!(resolved[1]["boundArtifact"]["reference"], binary.as_str());
    assert_eq!(done["stages"][0]["outputs"]["sha"], "c0ffee1234");
    // The deployed server group runs the downloaded binary with the commit in its args.
    let groups = api.server_groups().await;
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert!(
        !support::api::demo_processes("art-c0ffee1234").is_empty(),
        "an instance runs the version named by the commit"
    );
    support::api::destroy_all(&api, "art-").await;
}
