//! A running engine on a throw-away database, driven by a test.

use std::sync::Arc;
use std::time::Duration;

use gennaker_outbound::OutboundPolicy;
use gennaker_store::{ExecutionStore, SqlStore};
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{PATIENCE, START, summary};
use super::{
    TestBackend, TestDatabase, database, engine_notifying, registry, requester, save_pipeline,
};
use crate::{
    Engine, Execution, ExecutionStatus, ManualClock, NotificationPlanner, Requester, RunRequest,
    Services, StageRegistry,
};

/// An engine with its workers running on a fresh database, and the clock it reads.
pub struct Harness {
    /// The engine under test.
    pub engine: Engine,
    /// Its clock: moves only when the test says so.
    pub clock: ManualClock,
    /// The database behind it.
    pub store: SqlStore,
    /// The stage types it runs.
    pub registry: StageRegistry,
    /// What its webhooks may reach.
    pub outbound: OutboundPolicy,
    shutdown: CancellationToken,
    workers: Option<JoinSet<()>>,
    _db: TestDatabase,
}

impl Harness {
    /// The standard stages and the `test` stage.
    pub async fn new(backend: TestBackend) -> Self {
        Self::with_stages(backend, |_| {}).await
    }

    /// The standard stages, the `test` stage and those `extra` registers.
    pub async fn with_stages(backend: TestBackend, extra: impl Fn(&mut StageRegistry)) -> Self {
        Self::with_outbound(backend, OutboundPolicy::default(), extra).await
    }

    /// Like [`with_stages`](Self::with_stages), with webhooks calling out under
    /// `outbound` (e.g. [`loopback`](super::loopback) for servers on 127.0.0.1).
    pub async fn with_outbound(
        backend: TestBackend,
        outbound: OutboundPolicy,
        extra: impl Fn(&mut StageRegistry),
    ) -> Self {
        Self::build(backend, outbound, extra, None).await
    }

    /// The standard stages and the `test` stage, with steps queueing the
    /// notifications `planner` plans (and webhooks calling out under `outbound`).
    pub async fn with_notifications(
        backend: TestBackend,
        outbound: OutboundPolicy,
        planner: Arc<dyn NotificationPlanner>,
    ) -> Self {
        Self::build(backend, outbound, |_| {}, Some(planner)).await
    }

    async fn build(
        backend: TestBackend,
        outbound: OutboundPolicy,
        extra: impl Fn(&mut StageRegistry),
        notifications: Option<Arc<dyn NotificationPlanner>>,
    ) -> Self {
        let (db, store) = database(backend).await;
        let registry = registry(&extra);
        let clock = ManualClock::new(START);
        let engine = engine_notifying(
            &store,
            Arc::new(store.clone()),
            registry.clone(),
            &clock,
            &outbound,
            notifications,
        );
        let shutdown = CancellationToken::new();
        let listener = store.queue_listener().await.unwrap();
        let workers = engine.start(listener, shutdown.clone()).await.unwrap();
        Harness {
            engine,
            clock,
            store,
            registry,
            outbound,
            shutdown,
            workers: Some(workers),
            _db: db,
        }
    }

    /// Saves a pipeline with these stages (and extra top-level fields) and runs it.
    pub async fn run(&self, name: &str, pipeline: Value) -> Execution {
        self.run_with(name, pipeline, RunRequest::default()).await
    }

    /// Saves a pipeline config (e.g. for `pipeline` stages to run); returns it with its id.
    pub async fn save(&self, name: &str, pipeline: Value) -> Value {
        save_pipeline(&self.store, name, pipeline).await
    }

    /// Saves a pipeline and runs it as `requester` (instead of the kit's user).
    pub async fn run_as(&self, name: &str, pipeline: Value, requester: &Requester) -> Execution {
        let config = self.save(name, pipeline).await;
        let config = gennaker_core::Pipeline::from_value(config).unwrap();
        self.engine
            .run_pipeline(
                super::APPLICATION,
                &config,
                &RunRequest::default(),
                requester,
            )
            .await
            .unwrap()
    }

    /// Saves a pipeline and runs it as `request` asks.
    pub async fn run_with(&self, name: &str, pipeline: Value, request: RunRequest) -> Execution {
        let config = self.save(name, pipeline).await;
        let config = gennaker_core::Pipeline::from_value(config).unwrap();
        self.engine
            .run_pipeline(super::APPLICATION, &config, &request, &requester())
            .await
            .unwrap()
    }

    /// Waits (real time, bounded) until the execution satisfies `done`; the clock
    /// stays where it is.
    pub async fn until(
        &self,
        id: &str,
        what: &str,
        done: impl Fn(&Execution) -> bool,
    ) -> Execution {
        self.wait(id, None, what, done).await
    }

    /// Moves the clock `step` at a time until the execution satisfies `done`.
    pub async fn drive_until(
        &self,
        id: &str,
        step: Duration,
        what: &str,
        done: impl Fn(&Execution) -> bool,
    ) -> Execution {
        self.wait(id, Some(step), what, done).await
    }

    async fn wait(
        &self,
        id: &str,
        step: Option<Duration>,
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
            match step {
                // A steady pace: the clock must not outrun what the engine does.
                Some(step) => {
                    self.clock.advance(step);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                None => {
                    let _ = tokio::time::timeout(Duration::from_millis(100), events.recv()).await;
                }
            }
        }
    }

    /// Waits for the execution to end; the clock stays where it is.
    pub async fn finished(&self, id: &str) -> Execution {
        self.until(id, "the execution to end", |e| e.status.is_complete())
            .await
    }

    /// Moves the clock (2 s at a time) until the execution ends.
    pub async fn finish(&self, id: &str) -> Execution {
        self.drive_until(id, Duration::from_secs(2), "the execution to end", |e| {
            e.status.is_complete()
        })
        .await
    }

    /// Waits until the named stage has this status.
    pub async fn stage_is(&self, id: &str, stage: &str, status: ExecutionStatus) -> Execution {
        self.until(id, &format!("stage '{stage}' to be {status}"), |e| {
            e.stages
                .iter()
                .any(|s| s.name == stage && s.status == status)
        })
        .await
    }

    /// Whether no message is queued.
    pub async fn queue_is_empty(&self) -> bool {
        self.store.queue_depth().await.unwrap() == 0
    }

    /// What the engine lends a task or a cancellation routine, for calling one directly.
    pub fn services(&self) -> Services {
        Services {
            store: Arc::new(self.store.clone()),
            executions: super::sealed(Arc::new(self.store.clone())),
            http: self.outbound.client().unwrap(),
            outbound: self.outbound.clone(),
            clock: Arc::new(self.clock.clone()),
            expressions: self.engine.expressions().clone(),
        }
    }

    /// Stops the workers and closes the database.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(mut workers) = self.workers.take() {
            while workers.join_next().await.is_some() {}
        }
        self.store.close().await;
    }
}
