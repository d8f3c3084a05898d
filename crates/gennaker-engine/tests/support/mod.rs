//! A running engine on a throw-away database, for tests on both backends.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use gennaker_engine::{
    Engine, EngineConfig, Execution, ExecutionStatus, ManualClock, Requester, RunRequest,
    StageDefinition, StageExecution, StageRegistry, Task, TaskContext, TaskError, TaskResult,
    TaskSpec,
};
use gennaker_store::testing::{TestBackend, TestDatabase};
use gennaker_store::{ExecutionStore, PipelineSave, SqlStore, Store};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long a test waits for something before failing (real time; generous for a
/// loaded CI machine).
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// Counts executions of the `test` stage's task per stage name.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    pub(crate) total: AtomicUsize,
}

pub(crate) struct Harness {
    pub(crate) engine: Engine,
    pub(crate) clock: ManualClock,
    pub(crate) store: SqlStore,
    pub(crate) calls: Arc<Calls>,
    shutdown: CancellationToken,
    workers: Option<JoinSet<()>>,
    _db: TestDatabase,
}

/// Defines `mod $name { sqlite(); postgres(); }`, each running `$body` with a harness.
#[macro_export]
macro_rules! engine_test {
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

impl Harness {
    pub(crate) async fn new(backend: TestBackend) -> Self {
        Self::with_registry(backend, StageRegistry::standard()).await
    }

    pub(crate) async fn with_registry(backend: TestBackend, registry: StageRegistry) -> Self {
        let (db, store) = TestDatabase::store(backend).await.unwrap();
        store
            .create_application(
                "shop",
                &json!({"name": "shop", "email": "t@example.com"}),
                "test",
            )
            .await
            .unwrap();
        let calls = Arc::new(Calls::default());
        let registry = registry_with_test_stage(registry, calls.clone());
        let clock = ManualClock::new(1_700_000_000_000);
        let engine = Engine::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            registry,
            Arc::new(clock.clone()),
            EngineConfig {
                workers: 4,
                idle_recheck: Duration::from_millis(200),
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
            calls,
            shutdown,
            workers: Some(workers),
            _db: db,
        }
    }

    /// Saves a pipeline with these stages (and extra top-level fields) and runs it.
    pub(crate) async fn run(&self, name: &str, pipeline: Value) -> Execution {
        self.run_with(name, pipeline, RunRequest::default()).await
    }

    pub(crate) async fn save(&self, name: &str, mut pipeline: Value) -> Value {
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
        let mut config = record.config.clone();
        config["id"] = json!(record.id);
        config
    }

    pub(crate) async fn run_with(
        &self,
        name: &str,
        pipeline: Value,
        request: RunRequest,
    ) -> Execution {
        let config = self.save(name, pipeline).await;
        self.engine
            .run_pipeline("shop", &config, &request, &requester())
            .await
            .unwrap()
    }

    /// Waits (real time, bounded) until the execution satisfies `done`.
    pub(crate) async fn until(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&Execution) -> bool,
    ) -> Execution {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let mut events = self.engine.subscribe();
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
            let _ = tokio::time::timeout(Duration::from_millis(100), events.recv()).await;
        }
    }

    /// Waits for the execution to end.
    pub(crate) async fn finished(&self, id: &str) -> Execution {
        self.until(id, "the execution to end", |e| e.status.is_complete())
            .await
    }

    /// Waits until the named stage has this status.
    pub(crate) async fn stage_is(
        &self,
        id: &str,
        stage: &str,
        status: ExecutionStatus,
    ) -> Execution {
        self.until(id, &format!("stage '{stage}' to be {status}"), |e| {
            e.stages
                .iter()
                .any(|s| s.name == stage && s.status == status)
        })
        .await
    }

    pub(crate) async fn queue_is_empty(&self) -> bool {
        self.store.queue_depth().await.unwrap() == 0
    }

    pub(crate) async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(mut workers) = self.workers.take() {
            while workers.join_next().await.is_some() {}
        }
        self.store.close().await;
    }
}

/// `registry` plus the `test` stage, counting its task runs in `calls`.
pub(crate) fn registry_with_test_stage(
    mut registry: StageRegistry,
    calls: Arc<Calls>,
) -> StageRegistry {
    registry.stage(TestStage).task(TestTask { calls });
    registry
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

pub(crate) fn status_of(execution: &Execution, name: &str) -> ExecutionStatus {
    stage(execution, name).status
}

pub(crate) fn summary(execution: &Execution) -> String {
    let mut out = format!("{} {}\n", execution.id, execution.status);
    for s in &execution.stages {
        out.push_str(&format!(
            "  {} [{}] {} {} parent={:?} ctx={}\n",
            s.ref_id,
            s.stage_type,
            s.name,
            s.status,
            s.parent_stage_id,
            Value::Object(s.context.clone())
        ));
    }
    out
}

/// A stage whose task does what its context says: `outcome` is `succeed` (default),
/// `fail`, `transient:N` (N transient errors, then success), `poll:N` (RUNNING N
/// times), or `forever` (RUNNING until canceled).
pub(crate) struct TestStage;

impl StageDefinition for TestStage {
    fn descriptor(&self) -> gennaker_core::StageTypeDescriptor {
        gennaker_core::StageTypeDescriptor::runnable(
            "test",
            gennaker_core::Origin::Gennaker,
            "Test",
            "runs `tasks` test tasks",
        )
    }

    fn tasks(&self, stage: &StageExecution) -> Vec<TaskSpec> {
        let count = stage
            .context
            .get("tasks")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        (0..count).map(|_| TaskSpec::new("testTask")).collect()
    }
}

pub(crate) struct TestTask {
    calls: Arc<Calls>,
}

#[async_trait]
impl Task for TestTask {
    fn name(&self) -> &'static str {
        "testTask"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        self.calls.total.fetch_add(1, Ordering::SeqCst);
        let runs = ctx
            .stage
            .context
            .get("runs")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            + 1;
        let outcome = ctx.str("outcome").unwrap_or("succeed").to_owned();
        let (kind, n) = match outcome.split_once(':') {
            Some((kind, n)) => (kind.to_owned(), n.parse::<u64>().unwrap_or(0)),
            None => (outcome.clone(), 0),
        };
        let result = match kind.as_str() {
            "succeed" => Ok(TaskResult::succeeded()),
            "fail" => Ok(TaskResult::terminal("told to fail")),
            "transient" if u64::from(ctx.task.retries) < n => {
                Err(TaskError::Transient(format!("flaky {}", ctx.task.retries)))
            }
            "transient" => Ok(TaskResult::succeeded()),
            "poll" if runs <= n => Ok(TaskResult::running()),
            "poll" => Ok(TaskResult::succeeded()),
            "forever" => Ok(TaskResult::running()),
            other => Err(TaskError::Permanent(format!("unknown outcome {other}"))),
        };
        result.map(|r| {
            r.with_context("runs", json!(runs)).with_output(
                format!("{}Done", ctx.stage.ref_id.replace(['<', '>'], "_")),
                json!(true),
            )
        })
    }

    fn backoff(&self, _stage: &StageExecution) -> Duration {
        Duration::from_secs(1)
    }
}
