//! `manualJudgment`: waits for a user (with one of `selectedStageRoles`, if set) to
//! judge `continue` or `stop`, optionally picking one of `judgmentInputs`.

use gennaker_core::{CheckContext, Fields, Origin, StageTypeDescriptor, ValidationReport};
use std::time::Duration;

use async_trait::async_trait;

use crate::stage::{StageDefinition, StageRegistry, TaskSpec};
use crate::task::{Task, TaskContext, TaskError, TaskResult};
use gennaker_core::execution::StageExecution;

pub(super) fn register(registry: &mut StageRegistry) {
    registry
        .stage(ManualJudgmentStage)
        .task(WaitForJudgmentTask);
}

/// Spinnaker's default: a judgment nobody gives fails the stage after three days.
const JUDGMENT_TIMEOUT: Duration = Duration::from_secs(3 * 24 * 3600);

struct ManualJudgmentStage;

impl StageDefinition for ManualJudgmentStage {
    fn descriptor(&self) -> StageTypeDescriptor {
        StageTypeDescriptor::runnable(
            "manualJudgment",
            Origin::Echo,
            "Manual Judgment",
            "wait for a person to continue or stop, optionally with a choice of inputs",
        )
    }

    fn check(
        &self,
        stage: &Fields<'_>,
        _context: &CheckContext<'_>,
        report: &mut ValidationReport,
    ) {
        check_manual_judgment(stage, report);
    }

    fn tasks(&self, _stage: &StageExecution) -> Vec<TaskSpec> {
        vec![TaskSpec::new("waitForJudgmentTask")]
    }
}

struct WaitForJudgmentTask;

#[async_trait]
impl Task for WaitForJudgmentTask {
    fn name(&self) -> &'static str {
        "waitForJudgmentTask"
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let judged_by = ctx.str("judgedBy").unwrap_or("someone").to_owned();
        match ctx.str("judgmentStatus").map(str::to_lowercase).as_deref() {
            Some("continue") => Ok(TaskResult::succeeded()),
            Some("stop") => Ok(TaskResult::terminal(format!(
                "{judged_by} judged this stage 'stop'"
            ))),
            _ => Ok(TaskResult::running()),
        }
    }

    /// A judgment arrives as a message that runs the task at once; the poll only
    /// notices the timeout.
    fn backoff(&self, _stage: &StageExecution) -> Duration {
        Duration::from_secs(60)
    }

    fn timeout(&self, _stage: &StageExecution) -> Option<Duration> {
        Some(JUDGMENT_TIMEOUT)
    }
}

fn check_manual_judgment(stage: &Fields<'_>, report: &mut ValidationReport) {
    stage.string("instructions", report);
    stage.boolean("propagateAuthenticationContext", report);
    stage.strings("selectedStageRoles", report);
    for (_, input) in stage.objects("judgmentInputs", "a judgment input", report) {
        input.required_string("value", "the judgment choice", report);
    }
}
