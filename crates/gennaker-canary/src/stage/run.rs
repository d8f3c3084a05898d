//! `runCanary`: one judgement. Resolves the canary config (by id, or by name as Orca's
//! `resolveKayentaConfigId`), checks what the run may read, fetches every metric for
//! the control and the experiment through the metric source of `metricsAccountName`,
//! pairs the series, judges them on a blocking thread and records the score (Orca's
//! `runCanary` + `monitorCanary`, with Kayenta's work done here).
//!
//! The task has no effect outside the execution: a repeat after a crash fetches and
//! judges again and gets the same result (the judge is deterministic), and only the
//! committed result counts, so no interval is ever judged into the execution twice.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gennaker_core::{CheckContext, Fields, Origin, StageTypeDescriptor, ValidationReport};
use gennaker_engine::{
    StageDefinition, StageExecution, Task, TaskContext, TaskError, TaskResult, TaskSpec,
};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::mixer::{Mixed, mix};
use super::request::RunCanaryContext;
use super::{KAYENTA_CANARY, RUN_CANARY, authz, intervals::planned_only};
use crate::lookup::{CanaryConfigLookup, StoredCanaryConfig};
use crate::source::{MetricSet, MetricSources, SourceError};
use crate::{JudgeOptions, JudgeResult, ScoreThresholds, judge};

/// The task's name.
pub(super) const RUN_TASK: &str = "runCanary";

/// Orca's message when a judgement stops the analysis.
pub(crate) const NOT_ABOVE_MARGINAL: &str =
    "Canary score is not above the marginal score threshold.";

/// Orca's warning when a control series has fewer than [`FEW_POINTS`] points.
const FEW_POINTS_WARNING: &str = "One of the metrics returned fewer than 50 data points, which can reduce confidence in the final canary score.";
const FEW_POINTS: usize = 50;

/// Most series (tag sets) one side of one metric may return.
const MAX_SETS: usize = 1000;
/// Most points one side of one metric may return, over all its series.
const MAX_POINTS: usize = 200_000;
/// Points per series kept in the report (the judge sees them all).
const REPORT_POINTS: usize = 2000;
/// Series kept in the report.
const REPORT_SERIES: usize = 200;

/// `runCanary`.
pub(super) struct RunCanaryStage;

impl StageDefinition for RunCanaryStage {
    fn descriptor(&self) -> StageTypeDescriptor {
        StageTypeDescriptor::runnable(
            RUN_CANARY,
            Origin::Kayenta,
            "Run Canary",
            "internal: one judgement of a kayentaCanary stage",
        )
    }

    fn check(
        &self,
        stage: &Fields<'_>,
        _context: &CheckContext<'_>,
        report: &mut ValidationReport,
    ) {
        report.push(planned_only(stage, RUN_CANARY));
    }

    fn tasks(&self, _stage: &StageExecution) -> Vec<TaskSpec> {
        vec![TaskSpec::new(RUN_TASK)]
    }
}

/// Fetches, pairs and judges one window.
pub(super) struct RunCanaryTask {
    sources: MetricSources,
    configs: Arc<dyn CanaryConfigLookup>,
}

impl RunCanaryTask {
    pub(super) fn new(sources: MetricSources, configs: Arc<dyn CanaryConfigLookup>) -> Self {
        Self { sources, configs }
    }

    /// The config by id, else by name; a missing one is named in the error.
    async fn resolve(&self, request: &RunCanaryContext) -> Result<StoredCanaryConfig, TaskError> {
        let unavailable = |e: crate::lookup::LookupError| TaskError::Transient(e.to_string());
        if let Some(id) = &request.canary_config_id {
            return self.configs.by_id(id).await.map_err(unavailable)?.ok_or_else(|| {
                TaskError::Permanent(format!(
                    "there is no canary config with id '{id}'; fix canaryConfig.canaryConfigId (or name the config with canaryConfigName)"
                ))
            });
        }
        if let Some(name) = &request.canary_config_name {
            return self.configs.by_name(name).await.map_err(unavailable)?.ok_or_else(|| {
                TaskError::Permanent(format!(
                    "there is no canary config named '{name}'; fix canaryConfig.canaryConfigName"
                ))
            });
        }
        Err(TaskError::Permanent(
            "the canary stage names no canary config: set canaryConfig.canaryConfigId or canaryConfigName".into(),
        ))
    }
}

/// How a source's refusal becomes a task error: an account the server lacks is
/// something Gennaker cannot do here; a query that cannot be built is the config's
/// mistake; a failed or slow query is worth retrying.
fn source_error(error: SourceError) -> TaskError {
    match error {
        SourceError::UnknownAccount { .. } => TaskError::Unsupported(error.to_string()),
        SourceError::BadQuery { .. } => TaskError::Permanent(error.to_string()),
        SourceError::QueryFailed { .. } | SourceError::Timeout { .. } => {
            TaskError::Transient(error.to_string())
        }
    }
}

/// One side of one series in the report.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ReportSide {
    query: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<jiff::Timestamp>,
    step_seconds: u64,
    #[serde(serialize_with = "crate::jsonf64::vec::serialize")]
    values: Vec<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

impl ReportSide {
    fn of(set: Option<&MetricSet>, step: u64) -> Self {
        match set {
            Some(set) => Self {
                query: set.query.clone(),
                start: Some(set.start),
                step_seconds: set.step_seconds,
                values: set.values.iter().copied().take(REPORT_POINTS).collect(),
                truncated: set.values.len() > REPORT_POINTS,
            },
            None => Self {
                query: String::new(),
                start: None,
                step_seconds: step,
                values: Vec::new(),
                truncated: false,
            },
        }
    }
}

/// One series pair in the report.
#[derive(Debug, Serialize)]
struct ReportSeries {
    name: String,
    tags: std::collections::BTreeMap<String, String>,
    control: ReportSide,
    experiment: ReportSide,
}

fn check_size(metric: &str, side: &str, sets: &[MetricSet]) -> Result<(), TaskError> {
    let points: usize = sets.iter().map(|s| s.values.len()).sum();
    if sets.len() > MAX_SETS || points > MAX_POINTS {
        return Err(TaskError::Permanent(format!(
            "metric '{metric}' returned {} series with {points} points for the {side}; at most {MAX_SETS} series and {MAX_POINTS} points: group by fewer labels or use a larger scopes[0].step",
            sets.len()
        )));
    }
    Ok(())
}

#[async_trait]
impl Task for RunCanaryTask {
    fn name(&self) -> &'static str {
        RUN_TASK
    }

    async fn execute(&self, ctx: &TaskContext<'_>) -> Result<TaskResult, TaskError> {
        if ctx.stage.parent_stage_id.is_none() {
            return Err(TaskError::Permanent(format!(
                "'{RUN_CANARY}' is planned by a {KAYENTA_CANARY} stage and cannot run on its own; use a {KAYENTA_CANARY} stage"
            )));
        }
        let request: RunCanaryContext =
            serde_json::from_value(Value::Object(ctx.stage.context.clone())).map_err(|e| {
                TaskError::Permanent(format!(
                    "the canary request of stage '{}' cannot be read: {e}",
                    ctx.stage.name
                ))
            })?;
        let stored = self.resolve(&request).await?;
        authz::config(ctx, &stored).await?;
        authz::scopes(ctx, &request).await?;
        if stored.config.metrics.is_empty() {
            return Err(TaskError::Permanent(format!(
                "canary config '{}' has no metrics to judge; add metrics to it",
                stored.name
            )));
        }
        let account = match request
            .metrics_account_name
            .as_deref()
            .or(self.sources.default_account())
        {
            Some(account) => account.to_owned(),
            None => {
                return Err(TaskError::Unsupported(
                    "no metrics account is configured on this server; add one under [[canary.accounts]] in the server config".into(),
                ));
            }
        };
        let source = self.sources.get(&account).map_err(source_error)?;
        let mut mixed: Vec<Mixed> = Vec::new();
        for metric in &stored.config.metrics {
            let Some(scopes) = request.scopes.get(&metric.scope_name) else {
                let known: Vec<&str> = request.scopes.keys().map(String::as_str).collect();
                return Err(TaskError::Permanent(format!(
                    "metric '{}' of canary config '{}' is fetched for scope '{}', which the stage does not define (its scopes: {}); add a scope with that scopeName",
                    metric.name,
                    stored.name,
                    metric.scope_name,
                    known.join(", ")
                )));
            };
            let control = source
                .query(&stored.config, metric, &scopes.control_scope.query())
                .await
                .map_err(source_error)?;
            check_size(&metric.name, "control", &control)?;
            let experiment = source
                .query(&stored.config, metric, &scopes.experiment_scope.query())
                .await
                .map_err(source_error)?;
            check_size(&metric.name, "experiment", &experiment)?;
            mixed.extend(mix(&metric.name, control, experiment));
        }
        let thresholds = request.score_thresholds;
        let judge_thresholds = ScoreThresholds {
            pass: thresholds.pass.or(thresholds.marginal).unwrap_or(75.0),
            marginal: thresholds.marginal.or(thresholds.pass).unwrap_or(50.0),
        };
        let pairs: Vec<_> = mixed.iter().map(|m| m.pair.clone()).collect();
        let config = stored.config.clone();
        // The judge is CPU-bound: keep it off the runtime's workers.
        let result: JudgeResult = tokio::task::spawn_blocking(move || {
            judge(&config, &pairs, &judge_thresholds, &JudgeOptions::default())
        })
        .await
        .map_err(|e| TaskError::Transient(format!("the canary judge did not finish: {e}")))?
        .map_err(|e| {
            TaskError::Permanent(format!(
                "canary config '{}' cannot be judged: {e}",
                stored.name
            ))
        })?;
        Ok(outcome(ctx, &request, &stored, &account, &mixed, result))
    }

    fn backoff(&self, _stage: &StageExecution) -> Duration {
        Duration::from_secs(5)
    }
}

/// The judgement's result: Orca's context keys, and the report in the outputs.
fn outcome(
    ctx: &TaskContext<'_>,
    request: &RunCanaryContext,
    stored: &StoredCanaryConfig,
    account: &str,
    mixed: &[Mixed],
    result: JudgeResult,
) -> TaskResult {
    // Orca reads Kayenta's score into an Int (Jackson truncates), then compares.
    let score = result.score.score.trunc();
    let score_json = json!(score as i64);
    let updated = jiff::Timestamp::from_millisecond(ctx.now)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let warnings: Vec<&str> = if result
        .results
        .iter()
        .any(|r| r.control_metadata.stats.count < FEW_POINTS)
    {
        vec![FEW_POINTS_WARNING]
    } else {
        Vec::new()
    };
    let step = request
        .scopes
        .values()
        .next()
        .map_or(60, |s| s.control_scope.step);
    let series: Vec<ReportSeries> = mixed
        .iter()
        .take(REPORT_SERIES)
        .map(|m| ReportSeries {
            name: m.pair.name.clone(),
            tags: m.pair.tags.clone(),
            control: ReportSide::of(m.control.as_ref(), step),
            experiment: ReportSide::of(m.experiment.as_ref(), step),
        })
        .collect();
    let report = json!({
        "canaryConfigId": stored.id,
        "canaryConfigName": stored.name,
        "metricsAccountName": account,
        "scoreThresholds": request.score_thresholds,
        "score": result.score.score,
        "judgeResult": result,
        "series": series,
        "seriesTruncated": mixed.len() > REPORT_SERIES,
    });
    let stops = request
        .score_thresholds
        .marginal
        .is_some_and(|m| score <= m);
    let mut task = if stops {
        let marginal = request.score_thresholds.marginal.unwrap_or_default();
        TaskResult::terminal(format!(
            "{}: canary score {score} is not above the marginal score threshold {marginal}; the analysis stops here",
            ctx.stage.name
        ))
        .with_context("canaryScoreMessage", json!(NOT_ABOVE_MARGINAL))
    } else {
        TaskResult::succeeded()
    };
    let mut shared = Map::new();
    shared.insert("canaryScore".into(), score_json);
    shared.insert("lastUpdated".into(), json!(ctx.now));
    shared.insert("lastUpdatedIso".into(), json!(updated));
    shared.insert("warnings".into(), json!(warnings));
    for (key, value) in &shared {
        task = task
            .with_context(key.clone(), value.clone())
            .with_output(key.clone(), value.clone());
    }
    task.with_context("canaryConfigId", json!(stored.id))
        .with_context("canaryPipelineStatus", json!("SUCCEEDED"))
        .with_output("canaryReport", report)
}
