//! A Gennaker server on a throw-away database, and an HTTP client to talk to it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::faulty::{AuditFaults, FaultyStore};
use gennaker_server::{AppState, Metrics, ServerConfig, bootstrap_admin, router};
pub(crate) use gennaker_store::testing::TestBackend;
use gennaker_store::testing::TestDatabase;
use gennaker_store::{SqlStore, Store};
pub(crate) use reqwest::Method;
pub(crate) use serde_json::{Value, json};

/// The admin token the harness configures (as `GENNAKER_ADMIN_TOKEN` would).
pub(crate) const ADMIN_TOKEN: &str = "gnk_test_admin_0123456789abcdef";

/// Server settings a test may change.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub admin_token: Option<String>,
    pub application_creators: Vec<String>,
    /// When set, the server's store holds up or fails audit writes as these say.
    pub audit_faults: Option<Arc<AuditFaults>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            admin_token: Some(ADMIN_TOKEN.to_owned()),
            application_creators: Vec::new(),
            audit_faults: None,
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

/// A running server. Fields drop in order: the server task stops before its database goes.
pub(crate) struct Server {
    pub base: String,
    pub client: reqwest::Client,
    pub store: SqlStore,
    pub config: ServerConfig,
    /// The admin's token (configured, or read from the bootstrap token file).
    pub admin: String,
    /// The token file the bootstrap wrote, if any.
    pub token_file: Option<PathBuf>,
    task: tokio::task::JoinHandle<()>,
    _data_dir: tempfile::TempDir,
    _db: TestDatabase,
}

impl Drop for Server {
    fn drop(&mut self) {
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
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data_dir.path().to_owned(),
            database_url: db.url.clone(),
            admin_token: options.admin_token.clone(),
            application_creators: options.application_creators,
        };
        let token_file = bootstrap_admin(&store, &config).await.unwrap();
        let admin = match (&options.admin_token, &token_file) {
            (Some(token), _) => token.clone(),
            (None, Some(path)) => std::fs::read_to_string(path).unwrap().trim().to_owned(),
            (None, None) => panic!("bootstrap gave the admin no token"),
        };
        let served_store: Arc<dyn Store> = match options.audit_faults {
            Some(faults) => Arc::new(FaultyStore {
                inner: store.clone(),
                faults,
            }),
            None => Arc::new(store.clone()),
        };
        let state = AppState {
            store: served_store,
            metrics: Arc::new(Metrics::new()),
            config: Arc::new(config.clone()),
            tasks: tokio_util::task::TaskTracker::new(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router(state)).await.unwrap();
        });
        Server {
            base: format!("http://{address}"),
            client: reqwest::Client::new(),
            store,
            config,
            admin,
            token_file,
            task,
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
