//! The API of a test server, and the demo app processes its local provider runs.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Server, TOKEN};

/// How long one deploy may take before the test gives up.
pub(crate) const DEPLOY_PATIENCE: Duration = Duration::from_secs(120);

/// The server's API, as the admin (or another user's token): `call` and its shortcuts
/// must succeed, `attempt` answers whatever the server said.
pub(crate) struct Api {
    /// The HTTP client.
    pub(crate) http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    pub(crate) fn new(server: &Server) -> Api {
        Api::with_token(server, TOKEN)
    }

    /// The API as the holder of `token`.
    pub(crate) fn with_token(server: &Server, token: &str) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: server.url(""),
            token: token.to_owned(),
        }
    }

    /// One call: its status and its JSON body (`Null` when it has none).
    pub(crate) async fn attempt(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (reqwest::StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = match serde_json::from_str(&text) {
            Ok(body) => body,
            Err(_) if text.is_empty() => Value::Null,
            Err(_) => Value::String(text),
        };
        (status, body)
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let (status, body) = self.attempt(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    pub(crate) async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Waits (bounded) until the execution ends; returns it.
    pub(crate) async fn wait_end(&self, id: &str) -> Value {
        let deadline = Instant::now() + DEPLOY_PATIENCE;
        loop {
            let execution = self.get(&format!("/api/v1/executions/{id}")).await;
            let status = execution["status"].as_str().unwrap_or_default();
            if matches!(status, "SUCCEEDED" | "TERMINAL" | "CANCELED" | "STOPPED") {
                return execution;
            }
            assert!(
                Instant::now() < deadline,
                "execution {id} did not end: {execution:#}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs an ad-hoc task of `shop` and waits for it to end.
    pub(crate) async fn task(&self, job: Value) -> Value {
        let accepted = self.post("/api/v1/applications/shop/tasks", job).await;
        self.wait_end(accepted["executionId"].as_str().unwrap())
            .await
    }

    /// The server groups of `shop`.
    pub(crate) async fn server_groups(&self) -> Vec<Value> {
        self.get("/api/v1/applications/shop/serverGroups")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Destroys every server group of the application, through the API, and checks that no
/// demo app process of the versions starting with `versions` is left.
pub(crate) async fn destroy_all(api: &Api, versions: &str) {
    let job: Vec<Value> = api
        .server_groups()
        .await
        .iter()
        .map(|g| json!({"type": "destroyServerGroup", "serverGroupName": g["name"], "account": "local", "cloudProvider": "local"}))
        .collect();
    if !job.is_empty() {
        let done = api.task(json!({"job": job})).await;
        assert_eq!(done["status"], "SUCCEEDED", "{done:#}");
    }
    assert!(
        demo_processes(versions).is_empty(),
        "destroy stops every instance"
    );
}

/// A server on a fresh data directory and SQLite database.
pub(crate) fn start_server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/gennaker.db", dir.path().display());
    let server = Server::start(dir.path().to_path_buf(), url);
    (dir, server)
}

/// The pids of the demo app processes whose version starts with `version`.
pub(crate) fn demo_processes(version: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "demo-app") && args.iter().any(|a| a.starts_with(version)) {
            pids.push(pid);
        }
    }
    pids
}

/// Kills, when dropped, every demo app process of the versions starting with `prefix`:
/// a failed test leaves nothing running.
pub(crate) struct KillLeftovers(pub(crate) &'static str);

impl Drop for KillLeftovers {
    fn drop(&mut self) {
        for pid in demo_processes(self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
