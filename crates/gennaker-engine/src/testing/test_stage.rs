//! The `test` stage: a task that does what the stage's context says, so engine
//! semantics can be tested without real work.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::{
    StageDefinition, StageExecution, SyntheticSpec, Task, TaskContext, TaskError, TaskResult,
    TaskSpec,
};

/// A stage of `tasks` (default 1) `testTask`s.
///
/// The task's `outcome` is `succeed` (default), `fail`, `transient:N` (N transient
/// errors, then success), `poll:N` (RUNNING N times), or `forever` (RUNNING until
/// canceled). It counts its runs in the context (`runs`) and outputs `<refId>Done`.
/// With `synthetic: N` it first runs N synthetic `test` stages side by side; with
/// `after: N` it runs N after its tasks, and with `onFailure: N` N when it fails, one
/// after another (their `outcome` is the stage's `onFailureOutcome`).
#[derive(Debug)]
pub struct TestStage;

/// `count` synthetic `test` stages named `<stage> <what> <i>`, one after another.
fn chain(stage: &StageExecution, key: &str, what: &str) -> Vec<SyntheticSpec> {
    let count = stage.context.get(key).and_then(Value::as_u64).unwrap_or(0);
    let mut context = serde_json::Map::new();
    if key == "onFailure"
        && let Some(outcome) = stage.context.get("onFailureOutcome")
    {
        context.insert("outcome".to_owned(), outcome.clone());
    }
    let stages = (0..count)
        .map(|i| {
            (
                "test".to_owned(),
                format!("{} {what} {}", stage.name, i + 1),
                context.clone(),
            )
        })
        .collect();
    crate::sequential(stages)
}

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

    fn before_stages(&self, stage: &StageExecution) -> Vec<SyntheticSpec> {
        let count = stage
            .context
            .get("synthetic")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        (0..count)
            .map(|i| SyntheticSpec {
                stage_type: "test".to_owned(),
                name: format!("{} part {}", stage.name, i + 1),
                context: serde_json::Map::new(),
                after: Vec::new(),
            })
            .collect()
    }

    fn after_stages(&self, stage: &StageExecution) -> Vec<SyntheticSpec> {
        chain(stage, "after", "after")
    }

    fn on_failure_stages(&self, stage: &StageExecution) -> Vec<SyntheticSpec> {
        chain(stage, "onFailure", "on failure")
    }
}

/// The `test` stage's task (see [`TestStage`]); retries after 1 s.
#[derive(Debug)]
pub struct TestTask;

#[async_trait]
impl Task for TestTask {
    fn name(&self) -> &'static str {
        "testTask"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
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
                format!("{}Done", ctx.stage.ref_id.replace(['<', '>', '!'], "_")),
                json!(true),
            )
        })
    }

    fn backoff(&self, _stage: &StageExecution) -> Duration {
        Duration::from_secs(1)
    }
}
