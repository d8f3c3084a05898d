//! A running engine with the deployment stages on a throw-away database and a fake
//! cloud, for tests on both backends (adapted from the engine's test harness).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub(crate) mod cloud;

use std::sync::Arc;
use std::time::Duration;

use gennaker_deploy::Providers;
use gennaker_engine::{
    Engine, EngineConfig, Execution, ExecutionStatus, ManualClock, Requester, RunRequest,
    StageExecution, StageRegistry,
};
use gennaker_store::testing::{TestBackend, TestDatabase};
use gennaker_store::{PipelineRecord, PipelineSave, SqlStore, Store};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub(crate) use cloud::FakeCloud;

/// How long a test waits for something (real time; generous for a loaded machine).
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

pub(crate) struct Harness {
    pub(crate) engine: Engine,
    pub(crate) clock: ManualClock,
    pub(crate) store: SqlStore,
    pub(crate) cloud: Arc<FakeCloud>,
    shutdown: CancellationToken,
    workers: Option<JoinSet<()>>,
    _db: TestDatabase,
}

/// Defines `mod $name { sqlite(); postgres(); }`, each running `$body` with a harness.
#[macro_export]
macro_rules! deploy_test {
    ($name:ident, |$h:ident| $body:block) => {
        mod $name {
            use super::*;

            async fn run($h: support::Harness) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let h = support::Harness::new(gennaker_store::testing::TestBackend::Sqlite).await;
                run(h).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let h = support::Harness::new(gennaker_store::testing::TestBackend::Postgres).await;
                run(h).await;
            }
        }
    };
}

/// The standard stages plus the deployment stages, acting on `cloud`.
pub(crate) fn registry(cloud: &Arc<FakeCloud>) -> StageRegistry {
    let mut registry = StageRegistry::standard();
    let providers = Providers::new().with(cloud.clone(), Some(cloud.clone()));
    gennaker_deploy::register(&mut registry, providers);
    registry
}

impl Harness {
    pub(crate) async fn new(backend: TestBackend) -> Self {
        let (db, store) = TestDatabase::store(backend).await.unwrap();
        store
            .create_application(
                "shop",
                &json!({"name": "shop", "email": "t@example.com"}),
                "test",
            )
            .await
            .unwrap();
        let cloud = Arc::new(FakeCloud::default());
        let clock = ManualClock::new(1_700_000_000_000);
        let engine = Engine::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            registry(&cloud),
            Arc::new(clock.clone()),
            EngineConfig {
                workers: 4,
                idle_recheck: Duration::from_millis(50),
                ..EngineConfig::default()
            },
        );
        let shutdown = CancellationToken::new();
        let listener = store.queue_listener().await.unwrap();
        let workers = engine.start(listener, shutdown.clone()).await.unwrap();
        Harness {
            engine,
            clock,
            store,
            cloud,
            shutdown,
            workers: Some(workers),
            _db: db,
        }
    }

    /// Saves a pipeline with these stages and runs it.
    pub(crate) async fn run(&self, name: &str, pipeline: Value) -> Execution {
        let record = self.save_record(name, pipeline).await;
        let mut config = record.config.clone();
        config["id"] = json!(record.id);
        self.engine
            .run_pipeline("shop", &config, &RunRequest::default(), &requester())
            .await
            .unwrap()
    }

    /// Saves a pipeline config (for `pipeline` stages to run) and returns its id.
    pub(crate) async fn save(&self, name: &str, pipeline: Value) -> String {
        self.save_record(name, pipeline).await.id
    }

    /// Saves a pipeline config of the `shop` application.
    async fn save_record(&self, name: &str, mut pipeline: Value) -> PipelineRecord {
        pipeline["name"] = json!(name);
        pipeline["application"] = json!("shop");
        let (record, _) = self
            .store
            .save_pipeline(
                "shop",
                &PipelineSave {
                    id: None,
                    name: name.to_owned(),
                    config: pipeline,
                },
                "test",
            )
            .await
            .unwrap();
        record
    }

    /// Moves the clock `step` at a time until the execution satisfies `done`.
    pub(crate) async fn drive_until(
        &self,
        id: &str,
        step: Duration,
        what: &str,
        done: impl Fn(&Execution) -> bool,
    ) -> Execution {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let execution = self.engine.execution(id).await.unwrap().unwrap();
            if done(&execution) {
                return execution;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; execution is now:\n{}",
                    summary(&execution)
                );
            }
            self.clock.advance(step);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Moves the clock (2 s at a time) until the execution ends.
    pub(crate) async fn finish(&self, id: &str) -> Execution {
        self.drive_until(id, Duration::from_secs(2), "the execution to end", |e| {
            e.status.is_complete()
        })
        .await
    }

    pub(crate) async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(mut workers) = self.workers.take() {
            while workers.join_next().await.is_some() {}
        }
        self.store.close().await;
    }
}

pub(crate) fn requester() -> Requester {
    Requester {
        user: "alice".into(),
        roles: vec!["dev".into()],
        origin: "test".into(),
    }
}

pub(crate) fn stage<'e>(execution: &'e Execution, name: &str) -> &'e StageExecution {
    execution
        .stages
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no stage '{name}' in\n{}", summary(execution)))
}

pub(crate) fn summary(execution: &Execution) -> String {
    let mut out = format!("{} {}\n", execution.id, execution.status);
    for s in &execution.stages {
        out.push_str(&format!(
            "  {} [{}] {} {} ctx={} out={}\n",
            s.ref_id,
            s.stage_type,
            s.name,
            s.status,
            Value::Object(s.context.clone()),
            Value::Object(s.outputs.clone())
        ));
    }
    out
}

/// Asserts the execution succeeded, showing it when not.
pub(crate) fn succeeded(execution: &Execution) {
    assert_eq!(
        execution.status,
        ExecutionStatus::Succeeded,
        "{}",
        summary(execution)
    );
}

/// A deploy stage of one cluster `shop-prod` running `version`, with extra fields.
pub(crate) fn deploy_stage(version: &str, extra: Value) -> Value {
    let mut cluster = json!({
        "application": "shop", "stack": "prod", "account": "local", "cloudProvider": "local",
        "capacity": {"min": 2, "max": 2, "desired": 2},
        "command": "./serve", "artifact": {"reference": version}, "loadBalancers": ["shop-lb"],
    });
    if let (Value::Object(c), Value::Object(e)) = (&mut cluster, extra) {
        c.extend(e);
    }
    json!({"refId": "1", "name": "Deploy", "type": "deploy", "clusters": [cluster]})
}
