//! Manifests and patch bodies from artifacts on a real API server (see `support`;
//! skipped, with one line saying how to point them at a cluster, when there is none):
//! `embedded/base64` through a bound expected artifact, `http/file` under the outbound
//! allow-list, `github/file` from a server on 127.0.0.1 that answers as GitHub's
//! contents API does, a host the allow-list refuses, and a read that is recorded once
//! and survives crashes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use base64::Engine as _;
use gennaker_engine::testing::{Fault, FaultRun, TestBackend};
use gennaker_engine::{Execution, ExecutionStatus, RunRequest};
use gennaker_kubernetes::settings::{GithubAccountSettings, GithubArtifactSettings};
use gennaker_kubernetes::{ArtifactAccounts, ArtifactSettings};
use gennaker_outbound::OutboundPolicy;
use serde_json::{Value, json};
use support::{Kit, error, succeeded};

/// A ConfigMap and a ReplicaSet using it, as one multi-document YAML file; the
/// annotation is an expression the deploy evaluates.
fn manifests_yaml(image: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: hello
---
apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: ReplicaSet
  metadata:
    name: web
    annotations:
      built-for: "${{execution.application}}"
  spec:
    replicas: 1
    selector:
      matchLabels: {{app: web}}
    template:
      metadata:
        labels: {{app: web}}
      spec:
        containers:
        - name: web
          image: {image}
          envFrom:
          - configMapRef: {{name: web-config}}
"#
    )
}

fn base64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A file server on `ip` that counts its requests: `/manifests/web.yaml` serves
/// `manifests_yaml("nginx:1.<n>")` for the n-th request, so every read differs.
struct FileServer {
    base: String,
    hits: Arc<AtomicUsize>,
}

async fn file_server(ip: &str) -> FileServer {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/manifests/web.yaml",
        get(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move { manifests_yaml(&format!("nginx:1.{n}")) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    FileServer { base, hits }
}

/// What the GitHub-shaped server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    reference: Option<String>,
    authorization: Option<String>,
    accept: Option<String>,
    api_version: Option<String>,
}

/// A server answering as GitHub Enterprise's contents API under `/api/v3`: the raw
/// file for `Accept: application/vnd.github.raw+json` with the right bearer token,
/// 401 for another token, 404 for an unknown file or ref.
struct GithubServer {
    api: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

const GITHUB_TOKEN: &str = "ghs-test-token-3f9a";

async fn github_server(files: HashMap<(String, String), String>) -> GithubServer {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let state = (Arc::new(files), seen.clone());
    type S = (
        Arc<HashMap<(String, String), String>>,
        Arc<Mutex<Vec<Seen>>>,
    );
    async fn contents(
        State((files, seen)): State<S>,
        Path((owner, repo, path)): Path<(String, String, String)>,
        Query(query): Query<HashMap<String, String>>,
        headers: HeaderMap,
    ) -> (StatusCode, String) {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let reference = query.get("ref").cloned();
        seen.lock().unwrap().push(Seen {
            path: format!("{owner}/{repo}/{path}"),
            reference: reference.clone(),
            authorization: header("authorization"),
            accept: header("accept"),
            api_version: header("x-github-api-version"),
        });
        if header("authorization").as_deref() != Some(&format!("Bearer {GITHUB_TOKEN}")) {
            return (
                StatusCode::UNAUTHORIZED,
                r#"{"message":"Bad credentials"}"#.into(),
            );
        }
        if !header("accept").is_some_and(|a| a.contains("raw")) {
            return (
                StatusCode::OK,
                r#"{"type":"file","encoding":"base64"}"#.into(),
            );
        }
        let key = (
            format!("{owner}/{repo}/{path}"),
            reference.unwrap_or_else(|| "main".into()),
        );
        match files.get(&key) {
            Some(text) => (StatusCode::OK, text.clone()),
            None => (StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#.into()),
        }
    }
    let app = axum::Router::new()
        .route(
            "/api/v3/repos/{owner}/{repo}/contents/{*path}",
            get(contents),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}/api/v3", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    GithubServer { api, seen }
}

fn github_accounts(api: &str) -> ArtifactAccounts {
    ArtifactAccounts::new(&ArtifactSettings {
        github: GithubArtifactSettings {
            accounts: vec![
                GithubAccountSettings {
                    name: "ghe".into(),
                    api_base_url: api.into(),
                    token: Some(GITHUB_TOKEN.into()),
                },
                GithubAccountSettings {
                    name: "public".into(),
                    api_base_url: "https://api.github.com".into(),
                    token: None,
                },
            ],
        },
    })
    .unwrap()
}

/// Only 127.0.0.1 besides public addresses.
fn loopback_only() -> OutboundPolicy {
    OutboundPolicy::allowing(&["127.0.0.1/32"]).unwrap()
}

fn deploy_from(artifact: Value) -> Value {
    json!({"name": "deploy", "type": "deployManifest", "source": "artifact",
           "manifestArtifact": artifact, "moniker": {"app": "shop"}})
}

/// Runs `pipeline` (the kit's stages plus top-level fields) with `request` to its end.
async fn run(kit: &Kit, pipeline: Value, request: RunRequest) -> Execution {
    let started = kit.h.run_with("k8s", pipeline, request).await;
    kit.h
        .drive_until(
            &started.id,
            Duration::from_secs(2),
            "the execution to end",
            |e| e.status.is_complete(),
        )
        .await
}

fn stage<'e>(execution: &'e Execution, name: &str) -> &'e gennaker_engine::StageExecution {
    gennaker_engine::testing::stage(execution, name)
}

/// The image of the deployed ReplicaSet `web-v000`.
async fn deployed_image(kit: &Kit) -> String {
    let rs = kit.get("apps/v1", "ReplicaSet", "web-v000").await.unwrap();
    rs["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_embedded_artifact_is_deployed_and_another_patches_it() {
    let Some(kit) = Kit::new("art-embedded", vec![]).await else {
        return;
    };
    let patch = base64("metadata:\n  labels:\n    patched: \"${'by-' + 'artifact'}\"\n");
    let mut pipeline = kit.pipeline(vec![
        json!({"name": "deploy", "type": "deployManifest", "source": "artifact",
               "manifestArtifactId": "manifests", "moniker": {"app": "shop"}}),
        json!({"name": "patch", "type": "patchManifest", "manifestName": "replicaSet web-v000",
               "source": "artifact", "manifestArtifactId": "patch-body"}),
    ]);
    pipeline["expectedArtifacts"] = json!([
        {"id": "manifests", "displayName": "manifests",
         "matchArtifact": {"type": "embedded/base64", "name": "web-manifests"}},
        {"id": "patch-body", "matchArtifact": {"type": "embedded/base64", "name": "label-patch"},
         "useDefaultArtifact": true,
         "defaultArtifact": {"type": "embedded/base64", "name": "label-patch", "reference": patch}},
    ]);
    let request = RunRequest {
        artifacts: vec![json!({"type": "embedded/base64", "name": "web-manifests",
                               "reference": base64(&manifests_yaml("nginx:1.25"))})],
        ..RunRequest::default()
    };
    let execution = run(&kit, pipeline, request).await;
    succeeded(&execution);
    assert_eq!(kit.names("apps/v1", "ReplicaSet").await, ["web-v000"]);
    assert_eq!(
        kit.names("v1", "ConfigMap").await,
        ["kube-root-ca.crt", "web-config-v000"]
    );
    let rs = kit.get("apps/v1", "ReplicaSet", "web-v000").await.unwrap();
    assert_eq!(deployed_image(&kit).await, "nginx:1.25");
    assert_eq!(rs["metadata"]["annotations"]["built-for"], "shop");
    assert_eq!(rs["metadata"]["labels"]["patched"], "by-artifact");
    assert_eq!(
        rs["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"],
        "web-config-v000"
    );
    // What was read is recorded: the artifact without its content, and a digest.
    let deploy = stage(&execution, "deploy");
    let record = &deploy.context["resolvedManifestArtifact"];
    assert_eq!(
        record["artifact"],
        json!({"type": "embedded/base64", "name": "web-manifests"})
    );
    assert_eq!(record["manifests"], 2);
    assert_eq!(record["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(deploy.outputs["resolvedManifestArtifact"], *record);
    let tasks: Vec<&str> = deploy
        .tasks
        .iter()
        .map(|t| t.implementing_class.as_str())
        .collect();
    assert_eq!(
        tasks,
        [
            "resolveDeploySourceManifest",
            "deployManifest",
            "waitForManifestToStabilize"
        ]
    );
    kit.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_file_is_read_through_the_allow_list_and_a_refused_host_is_never_asked() {
    let Some(kit) =
        Kit::with_artifacts("art-http", loopback_only(), ArtifactAccounts::default()).await
    else {
        return;
    };
    let allowed = file_server("127.0.0.1").await;
    let execution = kit
        .run(vec![deploy_from(
            json!({"type": "http/file", "name": "web.yaml",
            "reference": format!("{}/manifests/web.yaml", allowed.base)}),
        )])
        .await;
    succeeded(&execution);
    assert_eq!(allowed.hits.load(Ordering::SeqCst), 1);
    assert_eq!(deployed_image(&kit).await, "nginx:1.1");

    // 127.0.0.2 is loopback too, but not in the allow-list: refused before connecting.
    let refused = file_server("127.0.0.2").await;
    let execution = kit
        .run(vec![deploy_from(json!({"type": "http/file",
            "reference": format!("{}/manifests/web.yaml", refused.base)}))])
        .await;
    assert_eq!(execution.status, ExecutionStatus::Terminal);
    let message = error(&execution, "deploy");
    assert!(
        message.starts_with("stage 'deploy' field \"manifestArtifact\": artifact http/file"),
        "{message}"
    );
    assert!(
        message.contains("127.0.0.2, a loopback address")
            && message.contains("[outbound] allow = [\"127.0.0.2/32\"]"),
        "{message}"
    );
    assert_eq!(refused.hits.load(Ordering::SeqCst), 0);
    kit.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_file_is_read_at_its_version_through_its_account() {
    let files = HashMap::from([(
        ("acme/web/k8s/web.yaml".to_owned(), "release-7".to_owned()),
        manifests_yaml("nginx:1.27"),
    )]);
    let github = github_server(files).await;
    // Only public addresses: the operator's GitHub API is not under the outbound policy.
    let Some(kit) = Kit::with_artifacts(
        "art-github",
        OutboundPolicy::default(),
        github_accounts(&github.api),
    )
    .await
    else {
        return;
    };
    let reference = format!("{}/repos/acme/web/contents/k8s/web.yaml", github.api);
    // Bound from the trigger; the account comes from the match artifact.
    let mut pipeline = kit.pipeline(vec![json!({"name": "deploy", "type": "deployManifest",
        "source": "artifact", "manifestArtifactId": "web", "moniker": {"app": "shop"}})]);
    pipeline["expectedArtifacts"] = json!([{"id": "web",
        "matchArtifact": {"type": "github/file", "name": "k8s/web.yaml", "artifactAccount": "ghe"}}]);
    let request = RunRequest {
        artifacts: vec![json!({"type": "github/file", "name": "k8s/web.yaml",
                               "reference": reference, "version": "release-7"})],
        ..RunRequest::default()
    };
    let execution = run(&kit, pipeline, request).await;
    succeeded(&execution);
    assert_eq!(deployed_image(&kit).await, "nginx:1.27");
    let seen = github.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, "acme/web/k8s/web.yaml");
    assert_eq!(seen[0].reference.as_deref(), Some("release-7"));
    assert_eq!(
        seen[0].accept.as_deref(),
        Some("application/vnd.github.raw+json")
    );
    assert_eq!(seen[0].api_version.as_deref(), Some("2022-11-28"));
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {GITHUB_TOKEN}").as_str())
    );
    let record = &stage(&execution, "deploy").context["resolvedManifestArtifact"];
    assert_eq!(record["account"], "ghe");
    assert_eq!(record["artifact"]["version"], "release-7");
    let stored = serde_json::to_string(&execution).unwrap();
    assert!(
        !stored.contains(GITHUB_TOKEN),
        "the token is never recorded"
    );

    // An unknown version: GitHub's 404, named with the stage, field and version.
    let execution = kit
        .run(vec![deploy_from(
            json!({"type": "github/file", "name": "k8s/web.yaml",
            "reference": reference, "version": "no-such-tag", "artifactAccount": "ghe"}),
        )])
        .await;
    assert_eq!(execution.status, ExecutionStatus::Terminal);
    let message = error(&execution, "deploy");
    assert!(
        message.starts_with("stage 'deploy' field \"manifestArtifact\": artifact github/file k8s/web.yaml@no-such-tag"),
        "{message}"
    );
    assert!(
        message.contains("answered HTTP 404") && message.contains("version 'no-such-tag'"),
        "{message}"
    );

    // A reference outside the account's API is refused: the token goes nowhere else.
    let before = github.seen.lock().unwrap().len();
    let elsewhere = file_server("127.0.0.1").await;
    let mut stage_json = deploy_from(json!({"type": "github/file", "name": "web.yaml",
        "reference": format!("{}/repos/acme/web/contents/web.yaml", elsewhere.base)}));
    stage_json["manifestArtifactAccount"] = json!("ghe");
    let execution = kit.run(vec![stage_json]).await;
    assert_eq!(execution.status, ExecutionStatus::Terminal);
    let message = error(&execution, "deploy");
    assert!(
        message.contains("is not a file of artifact account 'ghe''s API"),
        "{message}"
    );
    assert_eq!(elsewhere.hits.load(Ordering::SeqCst), 0);
    assert_eq!(github.seen.lock().unwrap().len(), before);
    kit.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_recorded_before_a_crash_is_what_is_deployed_after_the_restart() {
    for fault in [Fault::CrashAfterEveryCommit, Fault::RepeatEveryStep] {
        let Some(kit) = Kit::new("art-faults", vec![]).await else {
            return;
        };
        let server = file_server("127.0.0.1").await;
        let patch = base64("metadata:\n  labels:\n    patched: once\n");
        let pipeline = kit.pipeline(vec![
            deploy_from(json!({"type": "http/file",
                "reference": format!("{}/manifests/web.yaml", server.base)})),
            json!({"name": "patch", "type": "patchManifest", "manifestName": "replicaSet web-v000",
                   "source": "artifact",
                   "manifestArtifact": {"type": "embedded/base64", "reference": patch}}),
        ]);
        let accounts = kit.accounts.clone();
        let outcome = FaultRun::new(TestBackend::Sqlite, fault, pipeline)
            .with_outbound(loopback_only())
            .with_stages(move |registry| {
                gennaker_kubernetes::register_with_artifacts(
                    registry,
                    accounts.clone(),
                    ArtifactAccounts::default(),
                );
            })
            .clock_step(Duration::from_secs(1))
            .run()
            .await;
        outcome.assert_succeeded();
        outcome.assert_clean();
        let reads = server.hits.load(Ordering::SeqCst);
        if fault == Fault::CrashAfterEveryCommit {
            // Every restart after the read found it recorded: it was not read again.
            assert_eq!(reads, 1, "{fault:?}");
        } else {
            // The first attempt's read was never committed; the second is the record.
            assert_eq!(reads, 2, "{fault:?}");
        }
        assert_eq!(
            deployed_image(&kit).await,
            format!("nginx:1.{reads}"),
            "{fault:?}: the deploy applied the read that was recorded"
        );
        assert_eq!(kit.names("apps/v1", "ReplicaSet").await, ["web-v000"]);
        let rs = kit.get("apps/v1", "ReplicaSet", "web-v000").await.unwrap();
        assert_eq!(rs["metadata"]["labels"]["patched"], "once", "{fault:?}");
        kit.finish().await;
    }
}

#[test]
fn an_artifact_source_is_checked_when_the_pipeline_is_saved() {
    let mut registry = gennaker_engine::StageRegistry::standard();
    gennaker_kubernetes::register(
        &mut registry,
        gennaker_kubernetes::KubernetesAccounts::default(),
    );
    let stage = |mut s: Value, i: usize| {
        s["refId"] = json!(i.to_string());
        s["account"] = json!("k8s");
        s
    };
    let pipeline = json!({"application": "shop", "name": "checked",
        "expectedArtifacts": [{"id": "known", "matchArtifact": {"type": "github/file"}}],
        "stages": [
        stage(json!({"name": "unknown id", "type": "deployManifest", "source": "artifact",
               "manifestArtifactId": "nope"}), 1),
        stage(json!({"name": "nothing named", "type": "deployManifest", "source": "artifact"}), 2),
        stage(json!({"name": "bad inline", "type": "patchManifest", "manifestName": "replicaSet web-v000",
               "source": "artifact",
               "manifestArtifact": {"type": "gcs/object", "reference": "gs://b/o"}}), 3),
        stage(json!({"name": "bad base64", "type": "deployManifest", "source": "artifact",
               "manifestArtifact": {"type": "embedded/base64", "reference": "!!"}}), 4),
        stage(json!({"name": "fine", "type": "deployManifest", "source": "artifact",
               "manifestArtifactId": "known", "manifestArtifactAccount": "ghe"}), 5),
    ]});
    let report = gennaker_core::validate_pipeline_value(&pipeline, registry.catalog());
    let at = |path: &str| -> Vec<String> {
        report
            .problems
            .iter()
            .filter(|p| p.path == path)
            .map(|p| format!("{}: {}", p.severity, p.message))
            .collect()
    };
    let unknown = at("$.stages[0].manifestArtifactId");
    assert_eq!(unknown.len(), 1, "{report}");
    assert!(
        unknown[0].starts_with("error: manifestArtifactId 'nope' is not an expected artifact"),
        "{report}"
    );
    assert!(
        at("$.stages[1].manifestArtifactId")[0].contains("none is named"),
        "{report}"
    );
    assert!(
        at("$.stages[2].manifestArtifact.type")[0].contains("'gcs/object' cannot be read"),
        "{report}"
    );
    assert!(
        at("$.stages[3].manifestArtifact.reference")[0].contains("not base64"),
        "{report}"
    );
    assert!(
        !report
            .problems
            .iter()
            .any(|p| p.path.starts_with("$.stages[4]")),
        "{report}"
    );
    assert!(
        !report
            .problems
            .iter()
            .any(|p| p.message.contains("not supported yet")),
        "{report}"
    );
}
