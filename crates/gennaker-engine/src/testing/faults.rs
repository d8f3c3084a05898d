//! The fault driver (STYLE.md §5.6): a pipeline run with every step done twice (the
//! first attempt "crashes" before its commit), or with the engine killed after every
//! commit and restarted from the store. A test compares the run with an undisturbed one:
//! same outcome, no stage completed twice, no execution created twice, nothing left in
//! the queue.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gennaker_outbound::OutboundPolicy;
use gennaker_store::{ExecutionQuery, ExecutionRow, ExecutionStore, StepCommit, Store};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{
    APPLICATION, FaultyExecutions, PATIENCE, START, TestBackend, database, engine, registry,
    requester, save_pipeline, succeeded, summary,
};
use crate::{Actor, Execution, ExecutionStatus, Judgment, ManualClock, RunRequest, StageRegistry};

/// What the driver does to a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: the reference run.
    None,
    /// The first commit of every step fails, so every step (tasks included) runs twice.
    RepeatEveryStep,
    /// The engine is killed after every commit and restarted from the store.
    CrashAfterEveryCommit,
}

/// How many times a fault must have struck for a run to have tested anything.
const MIN_FAULTS: usize = 5;

/// One pipeline run under a [`Fault`].
pub struct FaultRun {
    backend: TestBackend,
    fault: Fault,
    pipeline: Value,
    saved: Vec<(String, Value)>,
    extra: Arc<dyn Fn(&mut StageRegistry) + Send + Sync>,
    clock_step: Duration,
    judgment: Option<(String, Judgment)>,
    outbound: OutboundPolicy,
    users: Vec<(String, bool, Vec<String>)>,
    applications: Vec<OtherApplication>,
}

/// An application created before a [`FaultRun`]: name, document, pipelines by name.
type OtherApplication = (String, Value, Vec<(String, Value)>);

impl FaultRun {
    /// Runs `pipeline` on `backend` under `fault`, with the standard and `test` stages,
    /// moving the clock 500 ms a round.
    pub fn new(backend: TestBackend, fault: Fault, pipeline: Value) -> Self {
        Self {
            backend,
            fault,
            pipeline,
            saved: Vec::new(),
            extra: Arc::new(|_| {}),
            clock_step: Duration::from_millis(500),
            judgment: None,
            outbound: OutboundPolicy::default(),
            users: Vec::new(),
            applications: Vec::new(),
        }
    }

    /// Lets webhooks call out under `outbound` (e.g. [`loopback`](super::loopback)).
    #[must_use]
    pub fn with_outbound(mut self, outbound: OutboundPolicy) -> Self {
        self.outbound = outbound;
        self
    }

    /// Creates a user (and the roles it holds) first, for stages that check the rights
    /// of the user who started the run (the kit's `alice`).
    #[must_use]
    pub fn with_user(mut self, name: &str, admin: bool, roles: &[&str]) -> Self {
        let roles = roles.iter().map(|r| (*r).to_owned()).collect();
        self.users.push((name.to_owned(), admin, roles));
        self
    }

    /// Creates another application first, with its document and pipeline configs.
    #[must_use]
    pub fn with_application(
        mut self,
        name: &str,
        document: Value,
        pipelines: &[(&str, Value)],
    ) -> Self {
        let pipelines = pipelines
            .iter()
            .map(|(n, c)| ((*n).to_owned(), c.clone()))
            .collect();
        self.applications
            .push((name.to_owned(), document, pipelines));
        self
    }

    /// Adds the stage types `extra` registers; called again for each restarted engine.
    #[must_use]
    pub fn with_stages(
        mut self,
        extra: impl Fn(&mut StageRegistry) + Send + Sync + 'static,
    ) -> Self {
        self.extra = Arc::new(extra);
        self
    }

    /// Saves another pipeline config first (for a `pipeline` stage to run).
    #[must_use]
    pub fn with_pipeline(mut self, name: &str, config: Value) -> Self {
        self.saved.push((name.to_owned(), config));
        self
    }

    /// Moves the clock by `step` each round instead.
    #[must_use]
    pub fn clock_step(mut self, step: Duration) -> Self {
        self.clock_step = step;
        self
    }

    /// Gives the manual judgment stage named `stage` this judgment once it waits for one.
    #[must_use]
    pub fn judging(mut self, stage: &str, judgment: Judgment) -> Self {
        self.judgment = Some((stage.to_owned(), judgment));
        self
    }

    /// Runs the pipeline to its end and the queue until it is empty.
    pub async fn run(self) -> FaultOutcome {
        let fault = self.fault;
        let (db, sql) = database(self.backend).await;
        let mut roles: Vec<&String> = self.users.iter().flat_map(|(_, _, r)| r).collect();
        roles.sort();
        roles.dedup();
        for role in roles {
            sql.create_role(role, "").await.unwrap();
        }
        for (name, admin, roles) in &self.users {
            sql.create_user(name, *admin, roles).await.unwrap();
        }
        for (name, document, pipelines) in &self.applications {
            sql.create_application(name, document, "test")
                .await
                .unwrap();
            for (pipeline, config) in pipelines {
                let save = gennaker_store::PipelineSave {
                    id: None,
                    name: pipeline.clone(),
                    config: config.clone(),
                };
                sql.save_pipeline(name, &save, "test").await.unwrap();
            }
        }
        for (name, config) in self.saved {
            save_pipeline(&sql, &name, config).await;
        }
        let config = save_pipeline(&sql, "faults", self.pipeline).await;
        let ledger = Arc::new(Ledger::default());
        let store = Arc::new(
            FaultyExecutions::new(sql.clone(), fault == Fault::RepeatEveryStep).observe({
                let ledger = ledger.clone();
                move |step| ledger.record(step)
            }),
        );
        let clock = ManualClock::new(START);
        let new_engine = || {
            engine(
                &sql,
                store.clone(),
                registry(&*self.extra),
                &clock,
                &self.outbound,
            )
        };
        let mut engine = new_engine();
        let mut shutdown = CancellationToken::new();
        let mut workers = engine.start(None, shutdown.clone()).await.unwrap();
        let config = gennaker_core::Pipeline::from_value(config.clone()).unwrap();
        let id = engine
            .run_pipeline(APPLICATION, &config, &RunRequest::default(), &requester())
            .await
            .unwrap()
            .id;
        let deadline = tokio::time::Instant::now() + PATIENCE * 2;
        let mut restarts = 0;
        loop {
            let current = engine.execution(&id).await.unwrap().unwrap();
            if current.status.is_complete() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{fault:?}: execution did not finish:\n{}",
                summary(&current)
            );
            if let Some((name, judgment)) = &self.judgment
                && let Some(waiting) = current.stages.iter().find(|s| {
                    &s.name == name
                        && s.status == ExecutionStatus::Running
                        && !s.context.contains_key("judgmentStatus")
                })
            {
                let actor = Actor {
                    user: "bob".into(),
                    roles: vec![],
                    admin: false,
                };
                // A judgment may race a crash; the engine refuses duplicates by state.
                let _ = engine.judge(&id, &waiting.id, &actor, judgment).await;
            }
            if fault == Fault::CrashAfterEveryCommit {
                let committed = store.committed.notified();
                let _ = tokio::time::timeout(Duration::from_millis(200), committed).await;
                // Kill the workers wherever they are, then start a fresh engine on the store.
                workers.abort_all();
                while workers.join_next().await.is_some() {}
                shutdown.cancel();
                restarts += 1;
                engine = new_engine();
                shutdown = CancellationToken::new();
                workers = engine.start(None, shutdown.clone()).await.unwrap();
            } else {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            clock.advance(self.clock_step);
        }
        // A message raced with the end (a repeated judgment, a redelivered step) is still
        // handled, as a no-op: give the workers until the queue is empty.
        while sql.queue_depth().await.unwrap() > 0 && tokio::time::Instant::now() < deadline {
            clock.advance(self.clock_step);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        while workers.join_next().await.is_some() {}
        let violations = ledger.violations.lock().unwrap().clone();
        let outcome = FaultOutcome {
            fault,
            execution: engine.execution(&id).await.unwrap().unwrap(),
            executions: sql
                .list_executions(&ExecutionQuery {
                    limit: 100,
                    ..ExecutionQuery::default()
                })
                .await
                .unwrap(),
            violations,
            queue_depth: sql.queue_depth().await.unwrap(),
            restarts,
            repeated: store.repeated.load(std::sync::atomic::Ordering::SeqCst),
        };
        sql.close().await;
        drop(db);
        outcome
    }
}

/// How a [`FaultRun`] ended.
#[derive(Debug)]
pub struct FaultOutcome {
    /// The fault injected.
    pub fault: Fault,
    /// The pipeline's execution at the end.
    pub execution: Execution,
    /// Every execution in the database (the pipeline's and those it started).
    pub executions: Vec<ExecutionRow>,
    /// Stages that completed twice.
    pub violations: Vec<String>,
    /// Messages left in the queue.
    pub queue_depth: i64,
    /// How many times the engine was killed and restarted.
    pub restarts: usize,
    /// How many commits failed on purpose.
    pub repeated: usize,
}

impl FaultOutcome {
    /// Asserts the fault struck many times, no stage completed twice and no message was
    /// left behind.
    pub fn assert_clean(&self) {
        let fault = self.fault;
        assert!(
            self.violations.is_empty(),
            "{fault:?}: {:?}",
            self.violations
        );
        assert_eq!(self.queue_depth, 0, "{fault:?}: messages left behind");
        match fault {
            Fault::None => {}
            Fault::RepeatEveryStep => assert!(
                self.repeated > MIN_FAULTS,
                "steps were repeated many times ({})",
                self.repeated
            ),
            Fault::CrashAfterEveryCommit => assert!(
                self.restarts > MIN_FAULTS,
                "the engine was restarted many times ({})",
                self.restarts
            ),
        }
    }

    /// Asserts this is a clean, successful run: what a reference run must be.
    pub fn assert_succeeded(&self) {
        self.assert_clean();
        succeeded(&self.execution);
    }

    /// Asserts this run is clean and ended as `reference` did: the same status, and each
    /// stage with the same status and outputs.
    pub fn assert_same_as(&self, reference: &FaultOutcome) {
        self.assert_clean();
        assert_eq!(
            shape(&self.execution),
            shape(&reference.execution),
            "{:?}:\n{}",
            self.fault,
            summary(&self.execution)
        );
        assert_eq!(
            self.executions.len(),
            reference.executions.len(),
            "{:?}: no execution was created twice",
            self.fault
        );
    }
}

/// What must match between runs: each stage's status and outputs.
fn shape(execution: &Execution) -> (ExecutionStatus, BTreeMap<String, (ExecutionStatus, Value)>) {
    let stages = execution
        .stages
        .iter()
        .map(|s| (s.name.clone(), (s.status, Value::Object(s.outputs.clone()))))
        .collect();
    (execution.status, stages)
}

/// When each stage completed, from every commit: a stage that completes twice is a bug.
#[derive(Debug, Default)]
struct Ledger {
    completions: Mutex<HashMap<String, (String, Option<i64>)>>,
    violations: Mutex<Vec<String>>,
}

impl Ledger {
    fn record(&self, step: &StepCommit) {
        let mut completions = self.completions.lock().unwrap();
        for write in &step.executions {
            let Ok(execution) = serde_json::from_str::<Execution>(&write.row.document) else {
                continue;
            };
            for stage in &execution.stages {
                if !stage.status.is_complete() {
                    continue;
                }
                let now = (stage.status.as_str().to_owned(), stage.end_time);
                match completions.get(&stage.id) {
                    Some(before) if *before != now && stage.restarts == 0 => {
                        self.violations.lock().unwrap().push(format!(
                            "stage {} ({}) completed again: {before:?} then {now:?}",
                            stage.name, stage.id
                        ));
                    }
                    _ => {
                        completions.insert(stage.id.clone(), now);
                    }
                }
            }
        }
    }
}
