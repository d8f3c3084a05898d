//! `wait`: waits `waitTime` seconds; `skipRemainingWait` ends it early.

use gennaker_core::{CheckContext, Fields, Origin, Problem, StageTypeDescriptor, ValidationReport};
use std::time::Duration;

use async_trait::async_trait;

use crate::stage::{StageDefinition, StageRegistry, TaskSpec};
use crate::task::{Task, TaskContext, TaskError, TaskResult};
use gennaker_core::execution::StageExecution;
use gennaker_core::lenient::truthy;
use gennaker_core::lenient::value_as_i64;

pub(super) fn register(registry: &mut StageRegistry) {
    registry.stage(WaitStage).task(WaitTask);
}

struct WaitStage;

impl StageDefinition for WaitStage {
    fn descriptor(&self) -> StageTypeDescriptor {
        StageTypeDescriptor::runnable(
            "wait",
            Origin::Orca,
            "Wait",
            "wait a number of seconds, or until someone skips the wait",
        )
    }

    fn check(
        &self,
        stage: &Fields<'_>,
        _context: &CheckContext<'_>,
        report: &mut ValidationReport,
    ) {
        check_wait(stage, report);
    }

    fn tasks(&self, _stage: &StageExecution) -> Vec<TaskSpec> {
        vec![TaskSpec::new("waitTask")]
    }
}

struct WaitTask;

#[async_trait]
impl Task for WaitTask {
    fn name(&self) -> &'static str {
        "waitTask"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        if truthy(ctx.stage.context.get("skipRemainingWait")) {
            return Ok(TaskResult::succeeded());
        }
        let Some(seconds) = ctx.stage.context.get("waitTime").map(value_as_i64) else {
            return Err(TaskError::Permanent(
                "wait stage has no waitTime: set \"waitTime\" to a number of seconds".into(),
            ));
        };
        let Some(seconds) = seconds.filter(|s| *s >= 0) else {
            return Err(TaskError::Permanent(format!(
                "waitTime must be a number of seconds, not {}",
                ctx.stage.context["waitTime"]
            )));
        };
        let started = ctx.task.start_time.unwrap_or(ctx.now);
        let ends = started + seconds.saturating_mul(1000) + ctx.stage.paused_ms;
        if ctx.now >= ends {
            Ok(TaskResult::succeeded())
        } else {
            let remaining = u64::try_from(ends - ctx.now).unwrap_or(0);
            Ok(TaskResult::running_after(Duration::from_millis(remaining)))
        }
    }
}

fn check_wait(stage: &Fields<'_>, report: &mut ValidationReport) {
    match stage.get("waitTime") {
        None => report.push(
            Problem::error(
                stage.at("waitTime"),
                "a wait stage needs waitTime (seconds)",
            )
            .with_hint("e.g. \"waitTime\": 30, or an expression like \"${parameters.delay}\""),
        ),
        Some(_) => {
            stage.non_negative("waitTime", report);
        }
    }
    stage.string("skipWaitText", report);
}
