//! A Gennaker server on a throw-away database, and an HTTP client to talk to it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::faulty::AuditFaults;
use gennaker_server::{AccessChanges, AppState, Metrics, bootstrap_admin, router, serve_http};
pub(crate) use gennaker_server::{EngineSettings, HttpSettings, MetricsAccess, ServerConfig};
pub(crate) use gennaker_store::testing::TestBackend;
use gennaker_store::testing::{FaultyStore, TestDatabase};
use gennaker_store::{SqlStore, Store};
pub(crate) use reqwest::Method;
pub(crate) use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The admin token the harness configures (as `GENNAKER_ADMIN_TOKEN` would).
pub(crate) const ADMIN_TOKEN: &str = "gnk_test_admin_0123456789abcdef";

/// Server settings a test may change.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub admin_token: Option<String>,
    pub application_creators: Vec<String>,
    /// When set, the server's store holds up or fails audit writes as these say.
    pub audit_faults: Option<Arc<AuditFaults>>,
    /// The HTTP server's limits.
    pub http: HttpSettings,
    /// Who may read `/metrics`.
    pub metrics_access: MetricsAccess,
    /// What webhooks and artifact URLs may reach: by default the default policy plus
    /// 127.0.0.1 and ::1, since every remote end in these tests listens on 127.0.0.1.
    pub outbound: gennaker_outbound::OutboundPolicy,
    /// The engine's settings (4 workers by default).
    pub engine: EngineSettings,
    /// When set, the canary stage is registered with these metric sources and configs.
    pub canary: Option<(
        gennaker_canary::MetricSources,
        gennaker_canary::InMemoryCanaryConfigs,
    )>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            admin_token: Some(ADMIN_TOKEN.to_owned()),
            application_creators: Vec::new(),
            audit_faults: None,
            http: HttpSettings::default(),
            metrics_access: MetricsAccess::default(),
            outbound: gennaker_outbound::OutboundPolicy::allowing(&["127.0.0.1/32", "::1/128"])
                .unwrap(),
            engine: EngineSettings {
                workers: 4,
                ..EngineSettings::default()
            },
            canary: None,
        }
    }
}

/// A request body.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

/// A response: its status and its body (JSON, or the text as a JSON string, or null).
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Value,
    pub what: String,
}

impl Reply {
    /// Asserts the status and returns the body.
    #[track_caller]
    pub(crate) fn expect(self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "{}: expected {status}, got {} with {}",
            self.what, self.status, self.body
        );
        self.body
    }

    /// Asserts a 400 and returns the problems' paths.
    #[track_caller]
    pub(crate) fn problem_paths(self) -> Vec<String> {
        let body = self.expect(400);
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
        body["error"]["problems"]
            .as_array()
            .unwrap_or_else(|| panic!("no problems in {body}"))
            .iter()
            .map(|p| p["path"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// A unique suffix for names within a test.
pub(crate) fn uniq() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A running server with its engine. Fields drop in order: the server task and the
/// engine's workers stop before their database goes.
pub(crate) struct Server {
    pub base: String,
    /// Where the server listens, for tests that speak raw TCP.
    pub address: std::net::SocketAddr,
    pub client: reqwest::Client,
    pub store: SqlStore,
    pub config: ServerConfig,
    /// The admin's token (configured, or read from the bootstrap token file).
    pub admin: String,
    /// The token file the bootstrap wrote, if any.
    pub token_file: Option<PathBuf>,
    task: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
    _data_dir: tempfile::TempDir,
    _db: TestDatabase,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
        self.task.abort();
    }
}

impl Server {
    pub(crate) async fn start(backend: TestBackend) -> Server {
        Server::start_with(backend, Options::default()).await
    }

    pub(crate) async fn start_with(backend: TestBackend, options: Options) -> Server {
        let (db, store) = TestDatabase::store(backend).await.unwrap();
        let data_dir = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            admin_token: options.admin_token.clone(),
            application_creators: options.application_creators,
            engine: options.engine.clone(),
            http: options.http.clone(),
            metrics_access: options.metrics_access,
            outbound: options.outbound.clone(),
            ..ServerConfig::new(
                "127.0.0.1:0".parse().unwrap(),
                data_dir.path().to_owned(),
                db.url.clone(),
            )
        };
        let token_file = bootstrap_admin(&store, &config).await.unwrap();
        let admin = match (&options.admin_token, &token_file) {
            (Some(token), _) => token.clone(),
            (None, Some(path)) => std::fs::read_to_string(path).unwrap().trim().to_owned(),
            (None, None) => panic!("bootstrap gave the admin no token"),
        };
        let served_store: Arc<dyn Store> = match options.audit_faults {
            Some(faults) => Arc::new(FaultyStore::new(store.clone(), faults)),
            None => Arc::new(store.clone()),
        };
        let stop = CancellationToken::new();
        // The real local provider (no instances run unless a test deploys), so the
        // infrastructure routes answer as they do in production.
        let load_balancers =
            gennaker_local::lb::LoadBalancers::new(Default::default(), stop.child_token());
        let local = Arc::new(
            gennaker_local::LocalProvider::start(
                Arc::new(store.clone()),
                &data_dir.path().join("local"),
                load_balancers.clone(),
                gennaker_local::LocalSettings {
                    outbound: options.outbound.clone(),
                    ..gennaker_local::LocalSettings::default()
                },
                stop.child_token(),
            )
            .await
            .unwrap(),
        );
        let providers = gennaker_deploy::Providers::new().with(local.clone(), Some(local));
        let mut registry = stage_registry(&providers);
        if let Some((sources, configs)) = options.canary.clone() {
            gennaker_canary::stage::register(&mut registry, sources, Arc::new(configs));
        }
        let key = gennaker_store::SealingKey::load_or_create(&config.secrets_key_path()).unwrap();
        let engine = gennaker_server::engine(&store, &key, &config, registry).unwrap();
        let mut workers = engine
            .start(store.queue_listener().await.unwrap(), stop.clone())
            .await
            .unwrap();
        // Dropping the set would abort the workers; they stop with `stop` instead.
        workers.detach_all();
        let triggers = gennaker_server::start_triggers(&store, &engine, &config, stop.clone())
            .await
            .unwrap();
        let state = AppState {
            store: served_store,
            canary_configs: Arc::new(store.clone()),
            notifications: Arc::new(store.clone()),
            metric_samples: Arc::new(store.clone()),
            engine,
            providers,
            triggers,
            more_metrics: Arc::new(gennaker_server::NoMoreMetrics),
            metrics: Arc::new(Metrics::new()),
            config: Arc::new(config.clone()),
            shutdown: stop.clone(),
            tasks: tokio_util::task::TaskTracker::new(),
            access_changes: AccessChanges::new(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let http = config.http.clone();
        let serving_stop = stop.clone();
        let task = tokio::spawn(async move {
            serve_http(listener, router(state), &http, serving_stop).await;
        });
        Server {
            base: format!("http://{address}"),
            address,
            client: reqwest::Client::new(),
            store,
            config,
            admin,
            token_file,
            task,
            stop,
            _data_dir: data_dir,
            _db: db,
        }
    }

    /// Sends a request; `token` becomes `Authorization: Bearer <token>`.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Body,
    ) -> Reply {
        let what = format!("{method} {path}");
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Raw(content_type, bytes) => request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes),
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply { status, body, what }
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), Body::None).await
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Body::Json(body))
            .await
    }

    pub(crate) async fn put(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(token), Body::Json(body))
            .await
    }

    pub(crate) async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), Body::None)
            .await
    }

    /// Creates a role (as admin) unless it exists.
    pub(crate) async fn ensure_role(&self, role: &str) {
        let reply = self
            .post("/api/v1/roles", &self.admin, json!({ "name": role }))
            .await;
        assert!(reply.status == 201 || reply.status == 409, "{reply:?}");
    }

    /// Creates a non-admin user with the given roles and returns a token for them.
    pub(crate) async fn user(&self, name: &str, roles: &[&str]) -> String {
        for role in roles {
            self.ensure_role(role).await;
        }
        self.post(
            "/api/v1/users",
            &self.admin,
            json!({ "name": name, "roles": roles }),
        )
        .await
        .expect(201);
        self.token_for(name).await.0
    }

    /// Creates a token for `user` (as admin): (secret, id).
    pub(crate) async fn token_for(&self, user: &str) -> (String, String) {
        let created = self
            .post(
                "/api/v1/tokens",
                &self.admin,
                json!({ "name": format!("t{}", uniq()), "user": user }),
            )
            .await
            .expect(201);
        (
            created["token"].as_str().unwrap().to_owned(),
            created["info"]["id"].as_str().unwrap().to_owned(),
        )
    }

    /// Creates an application (as admin).
    pub(crate) async fn app(&self, document: Value) {
        self.post("/api/v1/applications", &self.admin, document)
            .await
            .expect(201);
    }

    /// Saves a pipeline document as JSON.
    pub(crate) async fn save(&self, app: &str, token: &str, document: Value) -> Reply {
        self.post(
            &format!("/api/v1/applications/{app}/pipelines"),
            token,
            document,
        )
        .await
    }

    /// Saves raw bytes with a content type.
    pub(crate) async fn save_raw(
        &self,
        app: &str,
        content_type: &'static str,
        bytes: Vec<u8>,
    ) -> Reply {
        self.call(
            Method::POST,
            &format!("/api/v1/applications/{app}/pipelines"),
            Some(&self.admin),
            Body::Raw(content_type, bytes),
        )
        .await
    }

    /// Everything stored about an application's pipelines, for "nothing changed" checks.
    pub(crate) async fn pipeline_state(&self, app: &str) -> Value {
        let list = self
            .get(
                &format!("/api/v1/applications/{app}/pipelines"),
                &self.admin,
            )
            .await
            .expect(200);
        let mut histories = Vec::new();
        for pipeline in list.as_array().unwrap() {
            let name = pipeline["name"].as_str().unwrap();
            histories.push(
                self.get(
                    &format!("/api/v1/applications/{app}/pipelines/{name}/history"),
                    &self.admin,
                )
                .await
                .expect(200),
            );
        }
        json!({ "list": list, "histories": histories })
    }
}

/// A small valid pipeline.
pub(crate) fn wait_pipeline(app: &str, name: &str, seconds: u64) -> Value {
    json!({
        "application": app,
        "name": name,
        "stages": [{ "refId": "1", "type": "wait", "name": "Wait", "waitTime": seconds }],
    })
}

/// The pipeline fixtures of gennaker-core: (file name, text).
pub(crate) fn pipeline_fixtures() -> Vec<(String, String)> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../gennaker-core/tests/fixtures/pipelines");
    let mut fixtures: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect();
    fixtures.sort();
    assert!(
        fixtures.len() >= 10,
        "fixtures missing in {}",
        dir.display()
    );
    fixtures
}

/// Counts the store's users, straight from the database.
pub(crate) async fn user_count(store: &SqlStore) -> i64 {
    store.count_users().await.unwrap()
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub(crate) struct SseEvent {
    pub event: String,
    pub data: Value,
}

/// What an event stream delivered within its time.
#[derive(Debug)]
pub(crate) struct SseRead {
    pub events: Vec<SseEvent>,
    /// Whether the server ended the stream (rather than the test giving up).
    pub ended: bool,
}

/// Splits complete `event:`/`data:` blocks off the front of `buffer`.
fn take_sse_events(buffer: &mut String, events: &mut Vec<SseEvent>) {
    while let Some(end) = buffer.find("\n\n") {
        let block: String = buffer.drain(..end + 2).collect();
        let mut name = "message".to_owned();
        let mut data = String::new();
        for line in block.lines() {
            if let Some(value) = line.strip_prefix("event:") {
                name = value.trim().to_owned();
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push_str(value.strip_prefix(' ').unwrap_or(value));
            }
        }
        if !data.is_empty() {
            events.push(SseEvent {
                event: name,
                data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
            });
        }
    }
}

impl Server {
    /// Runs a pipeline: `POST /applications/{app}/pipelines/{name}/executions`.
    pub(crate) async fn run(&self, app: &str, pipeline: &str, token: &str, body: Value) -> Reply {
        self.post(
            &format!("/api/v1/applications/{app}/pipelines/{pipeline}/executions"),
            token,
            body,
        )
        .await
    }

    /// Runs a pipeline as the admin and returns the new execution's id.
    pub(crate) async fn start_execution(&self, app: &str, pipeline: &str, body: Value) -> String {
        let execution = self.run(app, pipeline, &self.admin, body).await.expect(202);
        execution["id"].as_str().unwrap().to_owned()
    }

    /// Reads an execution as the admin.
    pub(crate) async fn execution(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/executions/{id}"), &self.admin)
            .await
            .expect(200)
    }

    /// Polls an execution until `done` holds (at most 20 s) and returns it.
    #[track_caller]
    pub(crate) fn wait_for<'a>(
        &'a self,
        id: &'a str,
        what: &'a str,
        done: impl Fn(&Value) -> bool + 'a,
    ) -> impl std::future::Future<Output = Value> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let execution = self.execution(id).await;
                if done(&execution) {
                    return execution;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{caller}: execution {id} never reached '{what}': {execution:#}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(40)).await;
            }
        }
    }

    /// Waits for the manualJudgment stage `ref_id` to wait, then judges it "continue".
    pub(crate) async fn judge_continue(&self, id: &str, ref_id: &str) {
        self.wait_stage(id, ref_id, "RUNNING").await;
        self.post(
            &format!("/api/v1/executions/{id}/stages/{ref_id}/judgment"),
            &self.admin,
            json!({ "judgmentStatus": "continue" }),
        )
        .await
        .expect(202);
    }

    /// Polls until the execution has the status.
    pub(crate) async fn wait_status(&self, id: &str, status: &str) -> Value {
        self.wait_for(id, status, |e| e["status"] == status).await
    }

    /// Polls until the stage with `ref_id` has the status.
    pub(crate) async fn wait_stage(&self, id: &str, ref_id: &str, status: &str) -> Value {
        let what = format!("stage {ref_id} {status}");
        let ref_id = ref_id.to_owned();
        let status = status.to_owned();
        self.wait_for(id, &what, move |e| {
            stage(e, &ref_id)["status"] == status.as_str()
        })
        .await
    }

    /// Reads a server-sent event stream until `enough` holds, the server ends it, or
    /// `max` passes.
    pub(crate) async fn sse(
        &self,
        path: &str,
        token: &str,
        max: std::time::Duration,
        enough: impl Fn(&[SseEvent]) -> bool,
    ) -> SseRead {
        let mut response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{path}"
        );
        let deadline = tokio::time::Instant::now() + max;
        let mut buffer = String::new();
        let mut events = Vec::new();
        loop {
            if enough(&events) {
                return SseRead {
                    events,
                    ended: false,
                };
            }
            let chunk = tokio::time::timeout_at(deadline, response.chunk()).await;
            match chunk {
                Err(_) => {
                    return SseRead {
                        events,
                        ended: false,
                    };
                }
                Ok(Ok(Some(bytes))) => {
                    buffer.push_str(&String::from_utf8_lossy(&bytes));
                    take_sse_events(&mut buffer, &mut events);
                }
                Ok(Ok(None)) => {
                    return SseRead {
                        events,
                        ended: true,
                    };
                }
                Ok(Err(e)) => panic!("{path}: the stream broke: {e}"),
            }
        }
    }

    /// Only the status of a request (for streams that never end).
    pub(crate) async fn status_of(&self, method: Method, path: &str, token: Option<&str>) -> Reply {
        let what = format!("{method} {path}");
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = if response.status().is_success() {
            Value::Null
        } else {
            response.json().await.unwrap_or(Value::Null)
        };
        Reply { status, body, what }
    }
}

/// The stage with this refId (top-level) of an execution.
#[track_caller]
pub(crate) fn stage<'a>(execution: &'a Value, ref_id: &str) -> &'a Value {
    execution["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["refId"] == ref_id && s["parentStageId"].is_null())
        .unwrap_or_else(|| panic!("no stage {ref_id} in {execution:#}"))
}

/// evaluateVariables → manualJudgment (with inputs) → wait 1 s, with a required `env`.
pub(crate) fn judged_pipeline(app: &str, name: &str) -> Value {
    json!({
        "application": app,
        "name": name,
        "parameterConfig": [{ "name": "env", "required": true }, { "name": "region", "default": "eu" }],
        "stages": [
            { "refId": "1", "type": "evaluateVariables", "name": "Evaluate",
              "variables": [{ "key": "greeting", "value": "hello ${parameters.env}" }] },
            { "refId": "2", "requisiteStageRefIds": ["1"], "type": "manualJudgment", "name": "Approve",
              "judgmentInputs": [{ "value": "ship" }, { "value": "hold" }] },
            { "refId": "3", "requisiteStageRefIds": ["2"], "type": "wait", "name": "Settle", "waitTime": 1 },
        ],
    })
}

/// The binary's composition root, on the test's providers.
pub(crate) fn stage_registry(
    providers: &gennaker_deploy::Providers,
) -> gennaker_engine::StageRegistry {
    let mut registry = gennaker_engine::StageRegistry::standard();
    gennaker_deploy::register(&mut registry, providers.clone());
    registry.set_cloud_providers(providers.names());
    registry
}

/// The stage types a test server knows (with the local provider).
pub(crate) fn catalog() -> gennaker_core::StageCatalog {
    let mut registry = stage_registry(&gennaker_deploy::Providers::new());
    registry.set_cloud_providers(["local".to_owned()]);
    registry.catalog().clone()
}
