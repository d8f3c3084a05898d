//! The operator's host policy through the real binary: a WRITE user's pipeline asking for
//! a shell is refused when saved (400 at the field), an artifact that only an expression
//! names is refused when the deploy runs, for good: the execution ends TERMINAL and a
//! restarted server retries nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{BIN, KillInstances, Server, TOKEN};

/// How long an execution may take to end on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(120);

struct Client {
    http: reqwest::Client,
}

impl Client {
    async fn call(
        &self,
        server: &Server,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, server.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn ok(&self, server: &Server, path: &str, token: &str, body: Value) -> Value {
        let (status, reply) = self
            .call(server, reqwest::Method::POST, path, token, Some(body))
            .await;
        assert!(
            (200..300).contains(&status),
            "POST {path}: {status} {reply}"
        );
        reply
    }

    /// Runs `release` with this artifact as `user`; waits for the end.
    async fn release(&self, server: &Server, user: &str, artifact: &str) -> Value {
        let started = self
            .ok(
                server,
                "/api/v1/applications/shop/pipelines/release/executions",
                user,
                json!({"parameters": {"artifact": artifact}}),
            )
            .await;
        self.wait_end(server, started["id"].as_str().unwrap()).await
    }

    async fn execution(&self, server: &Server, id: &str) -> Value {
        let path = format!("/api/v1/executions/{id}");
        self.call(server, reqwest::Method::GET, &path, TOKEN, None)
            .await
            .1
    }

    async fn wait_end(&self, server: &Server, id: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let execution = self.execution(server, id).await;
            let status = execution["status"].as_str().unwrap_or_default();
            if matches!(status, "SUCCEEDED" | "TERMINAL" | "CANCELED" | "STOPPED") {
                return execution;
            }
            assert!(
                Instant::now() < deadline,
                "execution {id} did not end: {execution:#}\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A deploy of `artifact` (a path or an expression) with an optional `command`.
fn release(name: &str, artifact: &str, command: Option<&str>) -> Value {
    let mut cluster = json!({
        "application": "shop", "stack": "web", "account": "local", "cloudProvider": "local",
        "capacity": {"min": 1, "max": 1, "desired": 1}, "strategy": "",
        "artifact": {"path": artifact},
        "args": ["demo-app", "--version", "p1"],
        "healthCheck": {"path": "/health"}, "gracePeriodSeconds": 1
    });
    if let Some(command) = command {
        cluster["command"] = json!(command);
    }
    json!({
        "application": "shop", "name": name,
        "parameterConfig": [{"name": "artifact", "default": BIN}],
        "stages": [{"refId": "1", "type": "deploy", "name": "Deploy", "clusters": [cluster]}]
    })
}

/// The exception message of the execution's failed stage.
fn failure(execution: &Value) -> String {
    execution["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["context"]["exception"]["details"]["error"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_user_cannot_run_a_shell_and_a_refused_artifact_fails_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = KillInstances(dir.path());
    let bin_dir = Path::new(BIN).parent().unwrap().display().to_string();
    let config = dir.path().join("gennaker.toml");
    std::fs::write(
        &config,
        format!("[local]\nartifact_roots = [{bin_dir:?}, \"/dev\"]\n"),
    )
    .unwrap();
    let url = format!("sqlite://{}/gennaker.db", dir.path().display());
    let mut server = Server::start_with(
        dir.path().to_path_buf(),
        url,
        vec!["--config".into(), config.display().to_string()],
    );
    let client = Client {
        http: reqwest::Client::new(),
    };
    server.ready(&client.http).await;

    // A non-admin user with WRITE and EXECUTE on `shop`.
    client
        .ok(&server, "/api/v1/roles", TOKEN, json!({"name": "devs"}))
        .await;
    client
        .ok(
            &server,
            "/api/v1/users",
            TOKEN,
            json!({"name": "dev", "roles": ["devs"]}),
        )
        .await;
    let created = client
        .ok(
            &server,
            "/api/v1/tokens",
            TOKEN,
            json!({"name": "laptop", "user": "dev"}),
        )
        .await;
    let dev = created["token"].as_str().unwrap().to_owned();
    client
        .ok(
            &server,
            "/api/v1/applications",
            TOKEN,
            json!({"name": "shop", "email": "t@example.com",
                   "permissions": {"READ": ["devs"], "WRITE": ["devs"], "EXECUTE": ["devs"]}}),
        )
        .await;

    // Saved with a shell as its command: refused, at the field, nothing stored.
    let (status, reply) = client
        .call(
            &server,
            reqwest::Method::POST,
            "/api/v1/applications/shop/pipelines",
            &dev,
            Some(release("shell", BIN, Some("/bin/sh"))),
        )
        .await;
    assert_eq!(status, 400, "{reply}");
    let problems = reply["error"]["problems"].as_array().unwrap();
    let shell = problems
        .iter()
        .find(|p| p["path"] == "$.stages[0].clusters[0].command")
        .unwrap_or_else(|| panic!("no problem at the command: {reply:#}"));
    assert_eq!(
        shell["message"],
        "command '/bin/sh' is not allowed: the operator allows no commands ([local] commands in gennaker.toml); deploy an artifact instead"
    );
    // Outside the roots, as a literal: refused at save too.
    let (status, reply) = client
        .call(
            &server,
            reqwest::Method::POST,
            "/api/v1/applications/shop/pipelines",
            &dev,
            Some(release("passwd", "/etc/passwd", None)),
        )
        .await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply
            .to_string()
            .contains("$.stages[0].clusters[0].artifact.path"),
        "{reply:#}"
    );

    // Named by an expression, the artifact is only known when the deploy runs.
    client
        .ok(
            &server,
            "/api/v1/applications/shop/pipelines",
            &dev,
            release("release", "${parameters.artifact}", None),
        )
        .await;
    let outside = client.release(&server, &dev, "/etc/passwd").await;
    assert_eq!(outside["status"], "TERMINAL", "{outside:#}");
    assert!(
        failure(&outside).contains(
            "artifact path '/etc/passwd' is not allowed: it is not under a directory the operator allows"
        ),
        "{outside:#}"
    );
    // Under an allowed root but no regular file: refused at once, not read.
    let endless = client.release(&server, &dev, "/dev/urandom").await;
    assert_eq!(endless["status"], "TERMINAL", "{endless:#}");
    assert!(
        failure(&endless).contains(
            "artifact path '/dev/urandom' is a character device, not a regular file: only regular files can be deployed"
        ),
        "{endless:#}"
    );

    // A restarted server has nothing to retry: both stay as they ended.
    let id = endless["id"].as_str().unwrap().to_owned();
    let log_before = server.log().len();
    server.kill();
    server.spawn();
    server.ready(&client.http).await;
    // Something that runs after the restart, so the engine has been at work.
    let after = client.release(&server, &dev, BIN).await;
    assert_eq!(after["status"], "SUCCEEDED", "{after:#}\n{}", server.log());
    let again = client.execution(&server, &id).await;
    assert_eq!(again["status"], "TERMINAL");
    assert_eq!(again["endTime"], endless["endTime"]);
    assert_eq!(failure(&again), failure(&endless));
    let restarted_log = &server.log()[log_before..];
    assert!(
        !restarted_log.contains("/dev/urandom"),
        "the refused artifact was tried again:\n{restarted_log}"
    );
    // Clean up the one group that ran.
    let groups = client
        .call(
            &server,
            reqwest::Method::GET,
            "/api/v1/applications/shop/serverGroups",
            TOKEN,
            None,
        )
        .await
        .1;
    let job: Vec<Value> = groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| json!({"type": "destroyServerGroup", "serverGroupName": g["name"], "account": "local", "cloudProvider": "local"}))
        .collect();
    let task = client
        .ok(
            &server,
            "/api/v1/applications/shop/tasks",
            TOKEN,
            json!({"job": job}),
        )
        .await;
    let done = client
        .wait_end(&server, task["executionId"].as_str().unwrap())
        .await;
    assert_eq!(done["status"], "SUCCEEDED", "{done:#}");
}
