//! The demo talks to its embedded server through the public API, as a user would.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::load::Counts;

/// How often the demo polls an execution it follows.
const POLL: Duration = Duration::from_millis(250);

/// A small client of the embedded server's API.
#[derive(Debug, Clone)]
pub(crate) struct DemoApi {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl DemoApi {
    /// A client of the server at `base`, as the admin whose token is `token`.
    pub(crate) fn new(base: String, token: String) -> Self {
        Self {
            base,
            token,
            http: reqwest::Client::new(),
        }
    }

    /// The server's URL.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path} failed"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Creates the application.
    pub(crate) async fn create_application(&self, app: &str) -> anyhow::Result<()> {
        self.post(
            "/api/v1/applications",
            &json!({"name": app, "email": "demo@example.com", "description": "The Gennaker demo"}),
        )
        .await?;
        Ok(())
    }

    /// Creates the load balancer with an `upsertLoadBalancer` orchestration; returns the
    /// address it listens on.
    pub(crate) async fn create_load_balancer(
        &self,
        app: &str,
        name: &str,
    ) -> anyhow::Result<String> {
        let job = json!({
            "description": format!("Create load balancer {name}"),
            "job": [{
                "type": "upsertLoadBalancer",
                "name": name,
                "loadBalancerName": name,
                "application": app,
                "account": "local",
                "credentials": "local",
                "cloudProvider": "local",
                "listen": "127.0.0.1:0"
            }]
        });
        let id = self.run_task(app, &job).await?;
        let status = self
            .follow(&id, Duration::from_secs(60), |_| {}, || None)
            .await?;
        if status != "SUCCEEDED" {
            bail!("creating the load balancer ended {status}");
        }
        let balancers = self
            .get(&format!("/api/v1/applications/{app}/loadBalancers"))
            .await?;
        balancers
            .as_array()
            .into_iter()
            .flatten()
            .find(|lb| lb["name"] == name)
            .and_then(|lb| lb["address"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("load balancer '{name}' was not created"))
    }

    async fn run_task(&self, app: &str, job: &Value) -> anyhow::Result<String> {
        let accepted = self
            .post(&format!("/api/v1/applications/{app}/tasks"), job)
            .await?;
        accepted["executionId"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the server did not say which execution runs the task"))
    }

    /// Creates a canary config (Kayenta's JSON) for the `kayentaCanary` stages to name.
    pub(crate) async fn create_canary_config(&self, config: &Value) -> anyhow::Result<()> {
        self.post("/api/v1/canaryConfigs", config).await?;
        Ok(())
    }

    /// The execution as the API shows it.
    pub(crate) async fn execution(&self, id: &str) -> anyhow::Result<Value> {
        self.get(&format!("/api/v1/executions/{id}")).await
    }

    /// Saves a pipeline config.
    pub(crate) async fn save_pipeline(&self, pipeline: &Value) -> anyhow::Result<()> {
        let app = pipeline["application"].as_str().unwrap_or_default();
        self.post(&format!("/api/v1/applications/{app}/pipelines"), pipeline)
            .await?;
        Ok(())
    }

    /// Runs a pipeline; returns the execution id.
    pub(crate) async fn run_pipeline(
        &self,
        app: &str,
        pipeline: &str,
        parameters: Value,
    ) -> anyhow::Result<String> {
        let execution = self
            .post(
                &format!("/api/v1/applications/{app}/pipelines/{pipeline}/executions"),
                &json!({ "parameters": parameters }),
            )
            .await?;
        execution["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the server did not return the execution id"))
    }

    /// Follows an execution until it ends (at most `limit`), telling `progress` of each
    /// stage that starts or ends; returns its final status.
    pub(crate) async fn follow(
        &self,
        id: &str,
        limit: Duration,
        mut progress: impl FnMut(String),
        traffic: impl Fn() -> Option<Counts>,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + limit;
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        loop {
            let execution = self.execution(id).await?;
            for stage in execution["stages"].as_array().into_iter().flatten() {
                let stage_id = stage["id"].as_str().unwrap_or_default().to_owned();
                let status = stage["status"].as_str().unwrap_or_default().to_owned();
                if status == "NOT_STARTED" || seen.get(&stage_id) == Some(&status) {
                    continue;
                }
                let depth = if stage["parentStageId"].is_string() {
                    "  "
                } else {
                    ""
                };
                let mut line = format!(
                    "{depth}{:<10} {}",
                    status,
                    stage["name"].as_str().unwrap_or_default()
                );
                if let Some(group) = stage["context"]["serverGroupName"]
                    .as_str()
                    .or_else(|| stage["context"]["serverGroup"].as_str())
                {
                    line.push_str(&format!(" ({group})"));
                }
                if let Some(score) = stage["context"]["canaryScore"].as_f64() {
                    line.push_str(&format!(" — canary score {score:.0}"));
                }
                if let Some(error) = stage["context"]["exception"]["details"]["error"].as_str() {
                    line.push_str(&format!(" — {error}"));
                }
                if let Some(counts) = traffic() {
                    line.push_str(&format!(
                        "   [traffic: {} requests, {} failed",
                        counts.total, counts.failed
                    ));
                    if counts.canary_failed > 0 {
                        line.push_str(&format!(
                            ", {} failed at the bad canary",
                            counts.canary_failed
                        ));
                    }
                    line.push(']');
                }
                progress(line);
                seen.insert(stage_id, status);
            }
            let status = execution["status"].as_str().unwrap_or_default();
            if matches!(
                status,
                "SUCCEEDED" | "TERMINAL" | "CANCELED" | "STOPPED" | "FAILED_CONTINUE"
            ) {
                return Ok(status.to_owned());
            }
            if Instant::now() > deadline {
                bail!("execution {id} did not finish within {}s", limit.as_secs());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for the rollback a failed execution runs after it ends (its deploy stage's
    /// cancel routine) to finish, and returns the `rollbackResult` it recorded.
    pub(crate) async fn rollback_result(&self, id: &str, limit: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let execution = self.execution(id).await?;
            let recorded = execution["stages"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|stage| stage["context"].get("rollbackResult"));
            if let Some(result) = recorded {
                return Ok(result.clone());
            }
            if Instant::now() > deadline {
                bail!(
                    "execution {id} recorded no rollback within {}s; see `gennaker execution get {id}`",
                    limit.as_secs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `app` has at most `count` server groups.
    pub(crate) async fn wait_for_server_groups(
        &self,
        app: &str,
        count: usize,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let groups = self
                .get(&format!("/api/v1/applications/{app}/serverGroups"))
                .await?;
            let now = groups.as_array().map_or(0, Vec::len);
            if now <= count {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{app} still has {now} server groups after {}s",
                    limit.as_secs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The version that answers through the load balancer now.
    pub(crate) async fn serving_version(&self, url: &str) -> anyhow::Result<String> {
        let body: Value = self
            .http
            .get(url)
            .send()
            .await
            .context("the load balancer did not answer")?
            .json()
            .await
            .context("the demo app's answer is not JSON")?;
        Ok(body["version"].as_str().unwrap_or("unknown").to_owned())
    }

    /// Destroys every server group and load balancer of `app`, so no process is left.
    pub(crate) async fn destroy_everything(&self, app: &str) -> anyhow::Result<()> {
        let groups = self
            .get(&format!("/api/v1/applications/{app}/serverGroups"))
            .await?;
        let mut job: Vec<Value> = groups
            .as_array()
            .into_iter()
            .flatten()
            .map(|group| {
                json!({
                    "type": "destroyServerGroup",
                    "name": format!("Destroy {}", group["name"].as_str().unwrap_or_default()),
                    "serverGroupName": group["name"],
                    "credentials": group["account"],
                    "account": group["account"],
                    "cloudProvider": "local",
                })
            })
            .collect();
        let balancers = self
            .get(&format!("/api/v1/applications/{app}/loadBalancers"))
            .await?;
        job.extend(balancers.as_array().into_iter().flatten().map(|lb| {
            json!({
                "type": "deleteLoadBalancer",
                "name": format!("Delete {}", lb["name"].as_str().unwrap_or_default()),
                "loadBalancerName": lb["name"],
                "credentials": lb["account"],
                "account": lb["account"],
                "cloudProvider": "local",
            })
        }));
        if job.is_empty() {
            return Ok(());
        }
        let id = self
            .run_task(
                app,
                &json!({"description": "Clean up the demo", "job": job}),
            )
            .await?;
        let status = self
            .follow(&id, Duration::from_secs(120), |_| {}, || None)
            .await?;
        if status != "SUCCEEDED" {
            bail!("cleaning up ended {status}; see `gennaker execution get {id}`");
        }
        Ok(())
    }
}
