//! The test kit for the engine and for crates that add stage types to it: an engine on
//! a throw-away SQLite or PostgreSQL database with a [`ManualClock`], waits bounded in
//! real time, a `test` stage that does what its context says, macros that run a test on
//! both backends, and the fault driver of STYLE.md §5.6 (every step repeated; a crash
//! after every commit and a restart from the store).
//!
//! Only built with the `test-support` feature. A failed expectation panics, as an
//! assertion does: that is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod faults;
mod harness;
mod macros;
mod test_stage;

use std::sync::Arc;
use std::time::Duration;

use gennaker_outbound::OutboundPolicy;
use gennaker_store::{ExecutionStore, PipelineSave, SealedExecutions, SealingKey, SqlStore, Store};
use serde_json::{Value, json};

use crate::{Engine, EngineConfig, Execution, ExecutionStatus, Requester, StageExecution};
use crate::{ManualClock, StageRegistry};

pub use faults::{Fault, FaultOutcome, FaultRun};
pub use gennaker_store::testing::{FaultyExecutions, TestBackend, TestDatabase};
pub use harness::Harness;
pub use test_stage::{TestStage, TestTask};

/// How long a test waits for something before failing (real time; generous for a
/// loaded CI machine).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The application every kit pipeline belongs to.
pub const APPLICATION: &str = "shop";

/// Where every kit clock starts (epoch ms).
const START: i64 = 1_700_000_000_000;

/// The standard stages, the `test` stage and a crate's own (`extra`).
fn registry(extra: &dyn Fn(&mut StageRegistry)) -> StageRegistry {
    let mut registry = StageRegistry::standard();
    registry.stage(TestStage).task(TestTask);
    extra(&mut registry);
    registry
}

/// Who runs the kit's pipelines.
pub fn requester() -> Requester {
    Requester {
        user: "alice".into(),
        roles: vec!["dev".into()],
        origin: "test".into(),
    }
}

/// The stage with this name; fails the test, showing the execution, when there is none.
pub fn stage<'e>(execution: &'e Execution, name: &str) -> &'e StageExecution {
    execution
        .stages
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no stage '{name}' in\n{}", summary(execution)))
}

/// The status of the stage with this name.
pub fn status_of(execution: &Execution, name: &str) -> ExecutionStatus {
    stage(execution, name).status
}

/// The synthetic stages planned by the stage called `parent` (e.g. one per precondition
/// of a `checkPreconditions`), in refId order.
pub fn synthetic_children<'e>(execution: &'e Execution, parent: &str) -> Vec<&'e StageExecution> {
    let parent = stage(execution, parent).id.clone();
    let mut children: Vec<&StageExecution> = execution
        .stages
        .iter()
        .filter(|s| s.parent_stage_id.as_deref() == Some(parent.as_str()))
        .collect();
    children.sort_by_key(|s| s.ref_id.clone());
    children
}

/// The error a failed stage records; fails the test, showing the stage, when there is
/// none.
pub fn error_of(stage: &StageExecution) -> String {
    stage.context["exception"]["details"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("stage '{}' has no error: {:?}", stage.name, stage.context))
        .to_owned()
}

/// Asserts the execution succeeded, showing it when not.
pub fn succeeded(execution: &Execution) {
    assert_eq!(
        execution.status,
        ExecutionStatus::Succeeded,
        "{}",
        summary(execution)
    );
}

/// The execution, one line a stage, for failure messages.
pub fn summary(execution: &Execution) -> String {
    let mut out = format!("{} {}\n", execution.id, execution.status);
    for s in &execution.stages {
        out.push_str(&format!(
            "  {} [{}] {} {} parent={:?} ctx={} out={}\n",
            s.ref_id,
            s.stage_type,
            s.name,
            s.status,
            s.parent_stage_id,
            Value::Object(s.context.clone()),
            Value::Object(s.outputs.clone())
        ));
    }
    out
}

/// A fresh database on `backend` with the kit's application in it.
async fn database(backend: TestBackend) -> (TestDatabase, SqlStore) {
    let (db, store) = TestDatabase::store(backend).await.unwrap();
    store
        .create_application(
            APPLICATION,
            &json!({"name": APPLICATION, "email": "t@example.com"}),
            "test",
        )
        .await
        .unwrap();
    (db, store)
}

/// Saves a pipeline config of the kit's application; returns it as a run wants it
/// (with its id).
async fn save_pipeline(store: &SqlStore, name: &str, mut pipeline: Value) -> Value {
    pipeline["name"] = json!(name);
    pipeline["application"] = json!(APPLICATION);
    let (record, _) = store
        .save_pipeline(
            APPLICATION,
            &PipelineSave {
                id: None,
                name: name.to_owned(),
                config: pipeline,
            },
            "test",
        )
        .await
        .unwrap();
    let mut config = record.config;
    config["id"] = json!(record.id);
    config
}

/// The kit's key for sealing secrets at rest: the same for every engine of a test, as
/// it is for every start of one installation.
pub fn sealing_key() -> SealingKey {
    SealingKey::from_bytes(&[0x5e; gennaker_store::KEY_LEN]).unwrap()
}

/// `executions` with secrets sealed at rest, as a server stores them.
pub fn sealed(executions: Arc<dyn ExecutionStore>) -> Arc<dyn ExecutionStore> {
    Arc::new(SealedExecutions::new(executions, sealing_key()))
}

/// An engine (not started) on `store`, its queue and executions in `executions`
/// (secrets sealed at rest), calling out under `outbound`.
fn engine(
    store: &SqlStore,
    executions: Arc<dyn ExecutionStore>,
    registry: StageRegistry,
    clock: &ManualClock,
    outbound: &OutboundPolicy,
) -> Engine {
    engine_notifying(store, executions, registry, clock, outbound, None)
}

/// [`engine`] whose steps queue the notifications `notifications` plans.
fn engine_notifying(
    store: &SqlStore,
    executions: Arc<dyn ExecutionStore>,
    registry: StageRegistry,
    clock: &ManualClock,
    outbound: &OutboundPolicy,
    notifications: Option<Arc<dyn crate::NotificationPlanner>>,
) -> Engine {
    Engine::new(
        Arc::new(store.clone()),
        sealed(executions),
        registry,
        Arc::new(clock.clone()),
        EngineConfig {
            workers: 4,
            idle_recheck: Duration::from_millis(50),
            outbound: outbound.clone(),
            notifications,
            ..EngineConfig::default()
        },
    )
    .unwrap()
}

/// The outbound policy of tests whose webhooks call servers on this machine: the
/// default one, plus 127.0.0.1 and ::1 (every other refused range stays refused).
pub fn loopback() -> OutboundPolicy {
    OutboundPolicy::allowing(&["127.0.0.1/32", "::1/128"]).unwrap()
}
