//! `runCanaryIntervals`: plans the waits and judgements of a `kayentaCanary` stage
//! (Orca's `RunCanaryIntervalsStage`). Real time: windows are anchored at the moment
//! this stage starts (or `scopes[0].startTimeIso`), each judgement preceded by a wait of
//! one interval. Retrospective (`scopes[0].endTimeIso`): windows from the start time,
//! no waits.

use std::collections::BTreeMap;

use async_trait::async_trait;
use gennaker_core::{CheckContext, Fields, Origin, Problem, StageTypeDescriptor, ValidationReport};
use gennaker_engine::{
    StageDefinition, StageExecution, SyntheticSpec, Task, TaskContext, TaskError, TaskResult,
    TaskSpec, sequential,
};
use serde_json::{Map, Value, json};

use super::request::{RequestScope, RequestScopes, RunCanaryContext, Thresholds};
use super::settings::Settings;
use super::{
    KAYENTA_CANARY, RUN_CANARY, RUN_CANARY_INTERVALS, RUN_CANARY_PREFIX, read_run_settings,
};
use crate::aggregate::{Window, plan_judgements};

/// The task that reports why the intervals cannot be planned (only planned then).
pub(super) const CHECK_TASK: &str = "checkCanaryIntervals";

/// `runCanaryIntervals`.
pub(super) struct RunCanaryIntervalsStage;

impl StageDefinition for RunCanaryIntervalsStage {
    fn descriptor(&self) -> StageTypeDescriptor {
        StageTypeDescriptor::runnable(
            RUN_CANARY_INTERVALS,
            Origin::Kayenta,
            "Canary Intervals",
            "internal: the waits and judgements a kayentaCanary stage plans",
        )
    }

    fn check(
        &self,
        stage: &Fields<'_>,
        _context: &CheckContext<'_>,
        report: &mut ValidationReport,
    ) {
        report.push(planned_only(stage, RUN_CANARY_INTERVALS));
    }

    fn tasks(&self, stage: &StageExecution) -> Vec<TaskSpec> {
        match plan(stage) {
            Ok(_) => Vec::new(),
            Err(_) => vec![TaskSpec::new(CHECK_TASK)],
        }
    }

    fn before_stages(&self, stage: &StageExecution) -> Vec<SyntheticSpec> {
        plan(stage).unwrap_or_default()
    }
}

/// The save-time error of a synthetic-only stage type put in a pipeline.
pub(super) fn planned_only(stage: &Fields<'_>, stage_type: &str) -> Problem {
    Problem::error(
        stage.at("type"),
        format!(
            "'{stage_type}' is planned by a {KAYENTA_CANARY} stage and cannot be used on its own"
        ),
    )
    .with_hint(format!("use a {KAYENTA_CANARY} stage with a canaryConfig"))
}

/// The synthetic stages, or why there are none.
fn plan(stage: &StageExecution) -> Result<Vec<SyntheticSpec>, String> {
    if stage.parent_stage_id.is_none() {
        return Err(format!(
            "'{RUN_CANARY_INTERVALS}' is planned by a {KAYENTA_CANARY} stage and cannot run on its own; use a {KAYENTA_CANARY} stage"
        ));
    }
    let mut context = stage.context.clone();
    super::deployments::apply_deployed_scopes(&mut context)?;
    let settings = read_run_settings(&context)?;
    // Real time is anchored at this stage's start, as Orca's `Instant.now()` when it
    // plans; the engine set the start before planning.
    let anchor = match settings.start {
        Some(start) => start,
        None => stage
            .start_time
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            .ok_or_else(|| {
                "the canary intervals stage has no start time to anchor the analysis at".to_owned()
            })?,
    };
    let timing = settings.timing;
    let mut stages: Vec<(String, String, Map<String, Value>)> = Vec::new();
    if !timing.has_end_time && timing.begin_after_secs > 0 {
        stages.push(wait("Warmup Wait", timing.begin_after_secs));
    }
    for window in plan_judgements(&timing) {
        if !timing.has_end_time {
            stages.push(wait(
                &format!("Interval Wait #{}", window.index),
                window.wait_before_secs,
            ));
        }
        let context = run_context(&settings, anchor, &window)?;
        stages.push((
            RUN_CANARY.to_owned(),
            format!("{RUN_CANARY_PREFIX}{}", window.index),
            context,
        ));
    }
    Ok(sequential(stages))
}

fn wait(name: &str, seconds: u64) -> (String, String, Map<String, Value>) {
    let mut context = Map::new();
    context.insert("waitTime".into(), json!(seconds));
    ("wait".to_owned(), name.to_owned(), context)
}

/// The request of one judgement: every scope's windows, control shifted back by the
/// baseline offset.
fn run_context(
    settings: &Settings,
    anchor: jiff::Timestamp,
    window: &Window,
) -> Result<Map<String, Value>, String> {
    let at = |secs: i64| {
        anchor
            .checked_add(jiff::SignedDuration::from_secs(secs))
            .map_err(|e| format!("the canary window is out of range: {e}"))
    };
    let (start, end) = (at(window.start_secs)?, at(window.end_secs)?);
    let (control_start, control_end) =
        (at(window.control_start_secs)?, at(window.control_end_secs)?);
    let mut scopes = BTreeMap::new();
    for scope in &settings.scopes {
        let side = |name: &str, location: &str, start, end| RequestScope {
            scope: name.to_owned(),
            location: location.to_owned(),
            start,
            end,
            step: settings.step_secs,
            extended_scope_params: scope.extended.clone(),
        };
        scopes.insert(
            scope.name.clone(),
            RequestScopes {
                control_scope: side(
                    &scope.control,
                    &scope.control_location,
                    control_start,
                    control_end,
                ),
                experiment_scope: side(&scope.experiment, &scope.experiment_location, start, end),
            },
        );
    }
    let request = RunCanaryContext {
        metrics_account_name: settings.metrics_account.clone(),
        configuration_account_name: settings.configuration_account.clone(),
        storage_account_name: settings.storage_account.clone(),
        canary_config_id: settings.config_id.clone(),
        canary_config_name: settings.config_name.clone(),
        scopes,
        score_thresholds: Thresholds {
            pass: settings.thresholds.pass,
            marginal: settings.thresholds.marginal,
        },
        site_local: settings.site_local.clone(),
    };
    match serde_json::to_value(request) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the canary request is not an object".to_owned()),
        Err(e) => Err(format!("the canary request cannot be written: {e}")),
    }
}

/// Fails `runCanaryIntervals` with the reason its intervals could not be planned.
pub(super) struct CheckCanaryIntervalsTask;

#[async_trait]
impl Task for CheckCanaryIntervalsTask {
    fn name(&self) -> &'static str {
        CHECK_TASK
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        match plan(ctx.stage) {
            Ok(_) => Ok(TaskResult::succeeded()),
            Err(error) => Err(TaskError::Permanent(error)),
        }
    }

    fn inline(&self) -> bool {
        true
    }
}
