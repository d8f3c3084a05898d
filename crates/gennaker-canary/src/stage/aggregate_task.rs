//! `aggregateCanaryResults`: the verdict of `kayentaCanary` over its judgements
//! (Orca's `AggregateCanaryResultsTask`): the scores in `#` order, the last one judged
//! against the thresholds, with Orca's messages.

use async_trait::async_trait;
use gennaker_engine::{ExecutionStatus, StageExecution, Task, TaskContext, TaskError, TaskResult};
use serde_json::{Value, json};

use super::{RUN_CANARY, RUN_CANARY_INTERVALS, read_run_settings};
use crate::aggregate::StageThresholds;

/// The task's name.
pub(super) const AGGREGATE_TASK: &str = "aggregateCanaryResults";

/// `aggregateCanaryResults`.
pub(super) struct AggregateCanaryResultsTask;

/// The number after the last `#` of a judgement's name (Orca sorts by it).
fn number(stage: &StageExecution) -> u64 {
    stage
        .name
        .rsplit_once('#')
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

/// The error a failed stage recorded.
fn error_of(stage: &StageExecution) -> String {
    let details = stage
        .context
        .get("exception")
        .and_then(|e| e.get("details"));
    details
        .and_then(|d| d.get("error"))
        .and_then(Value::as_str)
        .map_or_else(|| format!("it ended {}", stage.status), str::to_owned)
}

/// Kotlin's `Double.toString` for scores: `100.0`, `87.5`.
fn kotlin_double(v: f64) -> String {
    format!("{v:?}")
}

/// Orca's verdict and message on the last score.
fn verdict(last: f64, t: &StageThresholds) -> (bool, String) {
    let score = kotlin_double(last);
    match (t.pass, t.marginal) {
        (None, None) => (true, "No score thresholds were specified.".to_owned()),
        (_, Some(m)) if last <= m => (
            false,
            format!("Final canary score {score} is not above the marginal score threshold."),
        ),
        (None, _) => (true, "No pass score threshold was specified.".to_owned()),
        (Some(p), _) if last < p => (
            false,
            format!("Final canary score {score} is below the pass score threshold."),
        ),
        (Some(_), _) => (
            true,
            format!("Final canary score {score} met or exceeded the pass score threshold."),
        ),
    }
}

#[async_trait]
impl Task for AggregateCanaryResultsTask {
    fn name(&self) -> &'static str {
        AGGREGATE_TASK
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        let settings = read_run_settings(&ctx.stage.context).map_err(TaskError::Permanent)?;
        let stages = &ctx.execution.stages;
        let intervals = stages.iter().find(|s| {
            s.parent_stage_id.as_deref() == Some(ctx.stage.id.as_str())
                && s.stage_type == RUN_CANARY_INTERVALS
        });
        let Some(intervals) = intervals else {
            return Err(TaskError::Permanent(
                "the canary analysis was not planned (no runCanaryIntervals stage); restart the stage".into(),
            ));
        };
        let mut runs: Vec<&StageExecution> = stages
            .iter()
            .filter(|s| {
                s.parent_stage_id.as_deref() == Some(intervals.id.as_str())
                    && s.stage_type == RUN_CANARY
            })
            .collect();
        runs.sort_by_key(|s| number(s));
        let mut scores = Vec::new();
        for run in &runs {
            match run.context.get("canaryScore").and_then(Value::as_f64) {
                Some(score) => scores.push(score),
                // A judgement that failed without a score (a source or config error):
                // the analysis is incomplete, whatever the earlier scores say.
                None if run.status.is_halt() || run.status == ExecutionStatus::FailedContinue => {
                    return Ok(TaskResult::terminal(format!(
                        "{} failed, so the canary has no verdict: {}",
                        run.name,
                        error_of(run)
                    ))
                    .with_context("canaryScores", json!(scores)));
                }
                None => {}
            }
        }
        let Some(&last) = scores.last() else {
            return Ok(TaskResult::terminal(
                "no canary judgement finished, so the canary has no verdict",
            ));
        };
        let (passed, message) = verdict(last, &settings.thresholds);
        let result = if passed {
            TaskResult::succeeded()
        } else {
            TaskResult::terminal(message.clone())
        };
        Ok(result
            .with_context("canaryScores", json!(scores))
            .with_context("canaryScoreMessage", json!(message))
            .with_output("canaryScores", json!(scores)))
    }

    fn inline(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orca_messages() {
        let both = StageThresholds {
            pass: Some(90.0),
            marginal: Some(75.0),
        };
        assert_eq!(
            verdict(100.0, &both),
            (
                true,
                "Final canary score 100.0 met or exceeded the pass score threshold.".into()
            )
        );
        assert_eq!(
            verdict(80.0, &both),
            (
                false,
                "Final canary score 80.0 is below the pass score threshold.".into()
            )
        );
        assert_eq!(
            verdict(75.0, &both),
            (
                false,
                "Final canary score 75.0 is not above the marginal score threshold.".into()
            )
        );
        assert!(verdict(0.0, &StageThresholds::default()).0);
        let marginal_only = StageThresholds {
            pass: None,
            marginal: Some(50.0),
        };
        assert_eq!(
            verdict(60.0, &marginal_only),
            (true, "No pass score threshold was specified.".into())
        );
    }
}
