//! Fault injection (STYLE.md §5.6): every step of an execution is done twice (the
//! first attempt "crashes" before its commit), and separately the engine is killed
//! after every commit and restarted from the store. Either way the execution must end
//! exactly as an undisturbed run does, with no stage completed twice and nothing left
//! in the queue.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gennaker_engine::{
    Actor, Engine, EngineConfig, Execution, ExecutionStatus, Judgment, ManualClock, RunRequest,
    StageRegistry,
};
use gennaker_store::testing::{FaultyExecutions, TestBackend, TestDatabase};
use gennaker_store::{ExecutionQuery, ExecutionStore, PipelineSave, StepCommit, Store};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Nothing injected: the reference run.
    None,
    /// The first commit of every step fails, so every step (tasks included) runs twice.
    RepeatEveryStep,
    /// The engine is killed after every commit and restarted from the store.
    CrashAfterEveryCommit,
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

/// A pipeline touching every engine path a crash could break: parallel branches and a
/// join, a wait, variables, a polling task, a skipped stage, a judgment, a soft failure.
fn pipeline() -> Value {
    json!({
        "name": "faults", "application": "shop",
        "parameterConfig": [{"name": "env", "default": "prod"}],
        "stages": [
            {"refId": "1", "name": "vars", "type": "evaluateVariables",
             "variables": [{"key": "target", "value": "${parameters.env}-eu"}]},
            {"refId": "2", "name": "poll", "type": "test", "outcome": "poll:2", "requisiteStageRefIds": ["1"]},
            {"refId": "3", "name": "wait", "type": "wait", "waitTime": 3, "requisiteStageRefIds": ["1"]},
            {"refId": "4", "name": "skipped", "type": "test", "requisiteStageRefIds": ["1"],
             "stageEnabled": {"type": "expression", "expression": "target == 'nope'"}},
            {"refId": "5", "name": "soft", "type": "test", "outcome": "fail", "failPipeline": false,
             "continuePipeline": true, "requisiteStageRefIds": ["4"]},
            {"refId": "6", "name": "approve", "type": "manualJudgment", "requisiteStageRefIds": ["2", "3", "5"],
             "judgmentInputs": [{"value": "ship"}]},
            {"refId": "7", "name": "after", "type": "evaluateVariables", "requisiteStageRefIds": ["6"],
             "variables": [{"key": "choice", "value": "${#judgment('approve')}"}]}
        ]
    })
}

struct Run {
    store: Arc<FaultyExecutions>,
    ledger: Arc<Ledger>,
    clock: ManualClock,
    _db: TestDatabase,
}

fn new_engine(run: &Run, calls: Arc<support::Calls>) -> Engine {
    Engine::new(
        Arc::new(run.store.inner().clone()),
        run.store.clone(),
        support::registry_with_test_stage(StageRegistry::standard(), calls),
        Arc::new(run.clock.clone()),
        EngineConfig {
            workers: 3,
            idle_recheck: Duration::from_millis(50),
            ..EngineConfig::default()
        },
    )
}

/// Runs the pipeline under `fault` and returns the final execution.
async fn run_under(backend: TestBackend, fault: Fault) -> (Execution, Vec<String>, i64) {
    let (db, sql) = TestDatabase::store(backend).await.unwrap();
    sql.create_application("shop", &json!({"name": "shop"}), "t")
        .await
        .unwrap();
    let (record, _) = sql
        .save_pipeline(
            "shop",
            &PipelineSave {
                id: None,
                name: "faults".into(),
                config: pipeline(),
            },
            "t",
        )
        .await
        .unwrap();
    let mut config = record.config.clone();
    config["id"] = json!(record.id);
    let ledger = Arc::new(Ledger::default());
    let run = Run {
        store: Arc::new(
            FaultyExecutions::new(sql.clone(), fault == Fault::RepeatEveryStep).observe({
                let ledger = ledger.clone();
                move |step| ledger.record(step)
            }),
        ),
        ledger,
        clock: ManualClock::new(1_700_000_000_000),
        _db: db,
    };
    let calls = Arc::new(support::Calls::default());
    let mut engine = new_engine(&run, calls.clone());
    let mut shutdown = CancellationToken::new();
    let mut workers = engine.start(None, shutdown.clone()).await.unwrap();
    let execution = engine
        .run_pipeline(
            "shop",
            &config,
            &RunRequest::default(),
            &support::requester(),
        )
        .await
        .unwrap();
    let id = execution.id.clone();
    let deadline = tokio::time::Instant::now() + support::PATIENCE * 2;
    let mut restarts = 0;
    loop {
        let current = engine.execution(&id).await.unwrap().unwrap();
        if current.status.is_complete() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{fault:?}: execution did not finish:\n{}",
            support::summary(&current)
        );
        if let Some(judge) = current
            .stages
            .iter()
            .find(|s| s.name == "approve" && s.status == ExecutionStatus::Running)
            && !judge.context.contains_key("judgmentStatus")
        {
            let actor = Actor {
                user: "bob".into(),
                roles: vec![],
                admin: false,
            };
            let judgment = Judgment {
                judgment_status: "continue".into(),
                judgment_input: Some("ship".into()),
            };
            // A judgment may race a crash; the engine refuses duplicates by state.
            let _ = engine.judge(&id, &judge.id, &actor, &judgment).await;
        }
        if fault == Fault::CrashAfterEveryCommit {
            let committed = run.store.committed.notified();
            let _ = tokio::time::timeout(Duration::from_millis(200), committed).await;
            // Kill the workers wherever they are, then start a fresh engine on the store.
            workers.abort_all();
            while workers.join_next().await.is_some() {}
            shutdown.cancel();
            restarts += 1;
            engine = new_engine(&run, calls.clone());
            shutdown = CancellationToken::new();
            workers = engine.start(None, shutdown.clone()).await.unwrap();
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        run.clock.advance(Duration::from_millis(500));
    }
    // A message raced with the end (a repeated judgment, a redelivered step) is still
    // handled, as a no-op: give the workers until the queue is empty.
    while run.store.inner().queue_depth().await.unwrap() > 0
        && tokio::time::Instant::now() < deadline
    {
        run.clock.advance(Duration::from_millis(500));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    while workers.join_next().await.is_some() {}
    let done = engine.execution(&id).await.unwrap().unwrap();
    let depth = run.store.inner().queue_depth().await.unwrap();
    let children = run
        .store
        .inner()
        .list_executions(&ExecutionQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .len();
    assert_eq!(children, 1, "{fault:?}: no execution was created twice");
    let violations = run.ledger.violations.lock().unwrap().clone();
    if fault == Fault::CrashAfterEveryCommit {
        assert!(
            restarts > 5,
            "the engine was restarted many times ({restarts})"
        );
    }
    run.store.inner().close().await;
    (done, violations, depth)
}

/// What must match between runs: each stage's status and outputs.
fn outcome(execution: &Execution) -> (ExecutionStatus, BTreeMap<String, (ExecutionStatus, Value)>) {
    let stages = execution
        .stages
        .iter()
        .map(|s| (s.name.clone(), (s.status, Value::Object(s.outputs.clone()))))
        .collect();
    (execution.status, stages)
}

async fn same_as_undisturbed(backend: TestBackend, fault: Fault) {
    let (reference, violations, depth) = run_under(backend, Fault::None).await;
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(depth, 0);
    assert_eq!(
        reference.status,
        ExecutionStatus::Succeeded,
        "{}",
        support::summary(&reference)
    );
    let (disturbed, violations, depth) = run_under(backend, fault).await;
    assert!(violations.is_empty(), "{fault:?}: {violations:?}");
    assert_eq!(depth, 0, "{fault:?}: messages left behind");
    assert_eq!(
        outcome(&disturbed),
        outcome(&reference),
        "{fault:?}:\n{}",
        support::summary(&disturbed)
    );
    assert_eq!(
        support::stage(&disturbed, "after").outputs["choice"],
        "ship",
        "the judgment survived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_repeated_sqlite() {
    same_as_undisturbed(TestBackend::Sqlite, Fault::RepeatEveryStep).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_repeated_postgres() {
    same_as_undisturbed(TestBackend::Postgres, Fault::RepeatEveryStep).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_every_commit_sqlite() {
    same_as_undisturbed(TestBackend::Sqlite, Fault::CrashAfterEveryCommit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_every_commit_postgres() {
    same_as_undisturbed(TestBackend::Postgres, Fault::CrashAfterEveryCommit).await;
}
