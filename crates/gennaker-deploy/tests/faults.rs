//! Fault injection for red/black and rolling red/black deploys, as the engine's own
//! fault tests do: every step done twice (the first attempt "crashes" before its
//! commit), and separately the engine killed after every commit and restarted from the
//! store. The cloud must end exactly as after an undisturbed run: one new server group,
//! the old one disabled (and scaled down), every change made once and in the same
//! order, nothing left in the queue.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gennaker_engine::{Engine, EngineConfig, Execution, ExecutionStatus, ManualClock, RunRequest};
use gennaker_store::testing::{FaultyExecutions, TestBackend, TestDatabase};
use gennaker_store::{ExecutionStore, PipelineSave, Store};
use serde_json::{Value, json};
use support::FakeCloud;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    RepeatEveryStep,
    CrashAfterEveryCommit,
}

/// The deploy under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    RedBlack,
    RollingRedBlack,
}

fn pipeline(scenario: Scenario) -> Value {
    let cluster = match scenario {
        Scenario::RedBlack => json!({
            "strategy": "redblack", "scaleDown": true, "delayBeforeDisableSec": 3,
            "maxRemainingAsgs": 2, "loadBalancers": []
        }),
        Scenario::RollingRedBlack => json!({
            "strategy": "rollingredblack", "targetPercentages": [50], "delayBeforeCleanup": 2
        }),
    };
    json!({"name": "faults", "application": "shop", "stages": [support::deploy_stage("v2", cluster)]})
}

/// What an undisturbed run changes in the cloud, in order.
fn expected_log(scenario: Scenario) -> Vec<String> {
    let log: &[&str] = match scenario {
        Scenario::RedBlack => &[
            "create shop-prod-v001 2",
            "disable shop-prod-v000",
            "resize shop-prod-v000 0",
        ],
        Scenario::RollingRedBlack => &[
            "create shop-prod-v001 0",
            "resize shop-prod-v001 1",
            r#"weights shop-lb {"shop-prod-v000":50,"shop-prod-v001":50}"#,
            "enable shop-prod-v001",
            "resize shop-prod-v001 2",
            r#"weights shop-lb {"shop-prod-v001":100}"#,
            "disable shop-prod-v000",
            "weights shop-lb {}",
        ],
    };
    log.iter().map(|l| (*l).to_owned()).collect()
}

fn new_engine(
    store: &Arc<FaultyExecutions>,
    clock: &ManualClock,
    cloud: &Arc<FakeCloud>,
) -> Engine {
    Engine::new(
        Arc::new(store.inner().clone()),
        store.clone(),
        support::registry(cloud),
        Arc::new(clock.clone()),
        EngineConfig {
            workers: 3,
            idle_recheck: Duration::from_millis(50),
            ..EngineConfig::default()
        },
    )
}

struct Outcome {
    execution: Execution,
    log: Vec<String>,
    names: Vec<String>,
    depth: i64,
}

async fn run_under(backend: TestBackend, scenario: Scenario, fault: Fault) -> Outcome {
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
                config: pipeline(scenario),
            },
            "t",
        )
        .await
        .unwrap();
    let mut config = record.config.clone();
    config["id"] = json!(record.id);
    let cloud = Arc::new(FakeCloud::default());
    let balancers: &[&str] = match scenario {
        Scenario::RedBlack => &[],
        Scenario::RollingRedBlack => {
            cloud.balancer("shop-lb").await;
            &["shop-lb"]
        }
    };
    let old = cloud
        .seed("shop-prod", 2, json!({"artifact": "v1"}), balancers)
        .await;
    assert_eq!(old, "shop-prod-v000");
    let store = Arc::new(FaultyExecutions::new(
        sql.clone(),
        fault == Fault::RepeatEveryStep,
    ));
    let clock = ManualClock::new(1_700_000_000_000);
    let mut engine = new_engine(&store, &clock, &cloud);
    let mut shutdown = CancellationToken::new();
    let mut workers = engine.start(None, shutdown.clone()).await.unwrap();
    let id = engine
        .run_pipeline(
            "shop",
            &config,
            &RunRequest::default(),
            &support::requester(),
        )
        .await
        .unwrap()
        .id;
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
        if fault == Fault::CrashAfterEveryCommit {
            let committed = store.committed.notified();
            let _ = tokio::time::timeout(Duration::from_millis(200), committed).await;
            // Kill the workers wherever they are, then start a fresh engine on the store.
            workers.abort_all();
            while workers.join_next().await.is_some() {}
            shutdown.cancel();
            restarts += 1;
            engine = new_engine(&store, &clock, &cloud);
            shutdown = CancellationToken::new();
            workers = engine.start(None, shutdown.clone()).await.unwrap();
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        clock.advance(Duration::from_millis(1000));
    }
    shutdown.cancel();
    while workers.join_next().await.is_some() {}
    if fault == Fault::CrashAfterEveryCommit {
        assert!(
            restarts > 5,
            "the engine was restarted many times ({restarts})"
        );
    }
    let execution = engine.execution(&id).await.unwrap().unwrap();
    let depth = store.inner().queue_depth().await.unwrap();
    store.inner().close().await;
    drop(db);
    Outcome {
        execution,
        log: cloud.log(),
        names: cloud.names(),
        depth,
    }
}

/// Each stage's status and outputs.
fn shape(execution: &Execution) -> (ExecutionStatus, BTreeMap<String, (ExecutionStatus, Value)>) {
    let stages = execution
        .stages
        .iter()
        .map(|s| (s.name.clone(), (s.status, Value::Object(s.outputs.clone()))))
        .collect();
    (execution.status, stages)
}

async fn same_as_undisturbed(backend: TestBackend, scenario: Scenario, fault: Fault) {
    let reference = run_under(backend, scenario, Fault::None).await;
    assert_eq!(
        reference.execution.status,
        ExecutionStatus::Succeeded,
        "{}",
        support::summary(&reference.execution)
    );
    assert_eq!(reference.log, expected_log(scenario));
    assert_eq!(reference.depth, 0);
    let disturbed = run_under(backend, scenario, fault).await;
    assert_eq!(
        shape(&disturbed.execution),
        shape(&reference.execution),
        "{fault:?}:\n{}",
        support::summary(&disturbed.execution)
    );
    assert_eq!(
        disturbed.log, reference.log,
        "{fault:?}: every change made exactly once"
    );
    assert_eq!(
        disturbed.names,
        ["shop-prod-v000", "shop-prod-v001"],
        "{fault:?}: nothing left behind"
    );
    assert_eq!(disturbed.depth, 0, "{fault:?}: messages left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_black_every_step_repeated_sqlite() {
    same_as_undisturbed(
        TestBackend::Sqlite,
        Scenario::RedBlack,
        Fault::RepeatEveryStep,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_black_every_step_repeated_postgres() {
    same_as_undisturbed(
        TestBackend::Postgres,
        Scenario::RedBlack,
        Fault::RepeatEveryStep,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_black_crash_after_every_commit_sqlite() {
    same_as_undisturbed(
        TestBackend::Sqlite,
        Scenario::RedBlack,
        Fault::CrashAfterEveryCommit,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_black_crash_after_every_commit_postgres() {
    same_as_undisturbed(
        TestBackend::Postgres,
        Scenario::RedBlack,
        Fault::CrashAfterEveryCommit,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_red_black_every_step_repeated_sqlite() {
    same_as_undisturbed(
        TestBackend::Sqlite,
        Scenario::RollingRedBlack,
        Fault::RepeatEveryStep,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_red_black_every_step_repeated_postgres() {
    same_as_undisturbed(
        TestBackend::Postgres,
        Scenario::RollingRedBlack,
        Fault::RepeatEveryStep,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_red_black_crash_after_every_commit_sqlite() {
    same_as_undisturbed(
        TestBackend::Sqlite,
        Scenario::RollingRedBlack,
        Fault::CrashAfterEveryCommit,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_red_black_crash_after_every_commit_postgres() {
    same_as_undisturbed(
        TestBackend::Postgres,
        Scenario::RollingRedBlack,
        Fault::CrashAfterEveryCommit,
    )
    .await;
}
