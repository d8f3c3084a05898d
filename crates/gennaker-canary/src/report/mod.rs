//! The canary report: what a `kayentaCanary` stage judged, assembled from an
//! execution (no I/O) into one document for the API, the CLI and the HTML view.
//!
//! Per interval (`Run Canary #i`): the score, its verdict against the stage's
//! thresholds, the windows, the warnings, the group scores; per metric: the
//! classification with the numbers behind it (deviation, the Mann-Whitney interval
//! against the judge's tolerance, both sides' statistics), both series and the exact
//! query of each side. Overall: the last score, the verdict and Orca's message.
//!
//! Deck's report shows High/Low without saying why; [`MetricReport::why`] spells out the
//! rule the judge applied (see `canary-stage.md` §6), and the queries and raw samples
//! are in the document (the HTML links none of them to outside resources).

mod html;
mod svg;

use std::collections::BTreeMap;

use gennaker_core::{Execution, ExecutionStatus, StageExecution};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::result::{Classification, GroupScore, Interval, JudgeResult, MetricResult};
use crate::stage::{KAYENTA_CANARY, RUN_CANARY, RUN_CANARY_INTERVALS};
use crate::stats::Stats;

pub use html::{REPORT_CSS, render_html, render_html_body};

/// The fraction of |estimate| the interval must clear (the judge's tolerance).
const TOLERANCE: f64 = 0.25;

/// Why no report could be assembled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    /// No stage of the execution has this id or name.
    #[error(
        "execution '{execution}' has no stage with id or name '{stage}'; `gennaker execution get {execution}` lists its stages"
    )]
    NoSuchStage {
        /// The execution.
        execution: String,
        /// The stage asked for.
        stage: String,
    },
    /// The stage is not part of a canary analysis.
    #[error(
        "stage '{stage}' is a '{stage_type}' stage, not a canary analysis; name a kayentaCanary stage (or one of its 'Run Canary #i' stages)"
    )]
    NotCanary {
        /// The stage's name.
        stage: String,
        /// Its type.
        stage_type: String,
    },
    /// The execution has no canary stage at all.
    #[error("execution '{execution}' has no kayentaCanary stage")]
    NoCanaryStage {
        /// The execution.
        execution: String,
    },
}

/// The verdict of a score against the stage's thresholds, as the stage decides: at or
/// below `marginal` fails (and stops the analysis), below `pass` is marginal (fails
/// the stage if it is the last score), otherwise it passes. (Kayenta's judge calls a
/// score equal to `marginal` "Marginal"; the stage fails it, and so does the report.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// At or above the pass threshold (or no thresholds).
    Pass,
    /// Above marginal, below pass.
    Marginal,
    /// At or below marginal.
    Fail,
}

impl Verdict {
    /// The verdict of `score` against `thresholds`.
    pub fn of(score: f64, thresholds: &ReportThresholds) -> Self {
        if thresholds.marginal.is_some_and(|m| score <= m) {
            Verdict::Fail
        } else if thresholds.pass.is_some_and(|p| score < p) {
            Verdict::Marginal
        } else {
            Verdict::Pass
        }
    }

    /// "Pass", "Marginal" or "Fail".
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "Pass",
            Verdict::Marginal => "Marginal",
            Verdict::Fail => "Fail",
        }
    }
}

/// The stage's score thresholds (either may be absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportThresholds {
    /// Minimum final score to pass.
    pub pass: Option<f64>,
    /// A score at or below this fails.
    pub marginal: Option<f64>,
}

/// A canary analysis: one `kayentaCanary` stage and its judgements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryReport {
    /// The execution.
    pub execution_id: String,
    /// Its application.
    pub application: String,
    /// Its pipeline's name.
    pub pipeline: String,
    /// The `kayentaCanary` stage's id.
    pub stage_id: String,
    /// Its name.
    pub stage_name: String,
    /// Its status.
    pub status: ExecutionStatus,
    /// The canary config judged against (from the judgements).
    pub canary_config_id: Option<String>,
    /// Its name.
    pub canary_config_name: Option<String>,
    /// The metrics account the series came from.
    pub metrics_account_name: Option<String>,
    /// The stage's thresholds.
    pub thresholds: ReportThresholds,
    /// The analysis as a whole.
    pub overall: Overall,
    /// The judgements in `#` order (planned ones without a score included).
    pub intervals: Vec<IntervalReport>,
}

/// The analysis as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Overall {
    /// The last score (what the stage judges), if any interval has one.
    pub score: Option<f64>,
    /// Its verdict.
    pub verdict: Option<Verdict>,
    /// The stage's message (Orca's `canaryScoreMessage`, or why it failed).
    pub message: Option<String>,
    /// Every score so far, in order (`canaryScores`).
    pub scores: Vec<f64>,
}

/// The windows of one judgement (of the first scope).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportWindow {
    /// Baseline window start.
    pub control_start: jiff::Timestamp,
    /// Baseline window end.
    pub control_end: jiff::Timestamp,
    /// Canary window start.
    pub experiment_start: jiff::Timestamp,
    /// Canary window end.
    pub experiment_end: jiff::Timestamp,
    /// Seconds between points.
    pub step_seconds: u64,
}

/// One judgement (`Run Canary #i`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntervalReport {
    /// The number after `#`.
    pub number: u64,
    /// The stage's id.
    pub stage_id: String,
    /// Its name.
    pub name: String,
    /// Its status.
    pub status: ExecutionStatus,
    /// The score the stage compared (`canaryScore`: the judge's score truncated, as Orca reads it).
    pub score: Option<f64>,
    /// The judge's own score (two decimals).
    pub judge_score: Option<f64>,
    /// The verdict of `score` against the thresholds.
    pub verdict: Option<Verdict>,
    /// Why the judge failed the canary outright ("Canary Failed: …"), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification_reason: Option<String>,
    /// The windows judged.
    pub window: Option<ReportWindow>,
    /// When it was judged.
    pub last_updated_iso: Option<String>,
    /// The stage's warnings (e.g. fewer than 50 points).
    pub warnings: Vec<String>,
    /// Why it has no score, when it failed without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The group scores.
    pub group_scores: Vec<GroupScore>,
    /// One entry per metric and tag set, in the judge's order.
    pub metrics: Vec<MetricReport>,
    /// Whether the judgement had more series than the stage kept for the report.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub series_truncated: bool,
}

/// One metric (one tag set) of one judgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricReport {
    /// The metric's name.
    pub name: String,
    /// The series' tags.
    pub tags: BTreeMap<String, String>,
    /// Its groups.
    pub groups: Vec<String>,
    /// The judge's classification.
    pub classification: Classification,
    /// The judge's reason, when it gave one.
    pub classification_reason: Option<String>,
    /// Whether it failed the canary on its own.
    pub critical: bool,
    /// Reported but not scored.
    pub muted: bool,
    /// mean(canary) / mean(baseline).
    #[serde(default, with = "crate::jsonf64::option")]
    pub ratio: Option<f64>,
    /// `(ratio − 1) · 100`, one decimal (Deck's deviation column); absent when the
    /// ratio is absent or not finite.
    pub deviation_percent: Option<f64>,
    /// The 98% interval and estimate of canary − baseline, when computed.
    pub interval: Option<Interval>,
    /// What the interval had to clear: 25% of |estimate|.
    #[serde(default, with = "crate::jsonf64::option")]
    pub tolerance: Option<f64>,
    /// The rule behind the classification, in words with the numbers.
    pub why: String,
    /// The baseline.
    pub control: SideReport,
    /// The canary.
    pub experiment: SideReport,
}

/// One side of one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SideReport {
    /// The judge's statistics (after NaN handling and outlier removal; exact).
    pub stats: Stats,
    /// The query exactly as sent to the metric source.
    pub query: Option<String>,
    /// Time of the first value.
    pub start: Option<jiff::Timestamp>,
    /// Seconds between values.
    pub step_seconds: u64,
    /// The values as the source returned them (at most the stage's report limit).
    #[serde(with = "crate::jsonf64::vec")]
    pub values: Vec<f64>,
    /// Whether the stage kept fewer values than the source returned.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// What the `runCanary` task stored in `outputs.canaryReport`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredReport {
    #[serde(default)]
    canary_config_id: Option<String>,
    #[serde(default)]
    canary_config_name: Option<String>,
    #[serde(default)]
    metrics_account_name: Option<String>,
    judge_result: JudgeResult,
    #[serde(default)]
    series: Vec<StoredSeries>,
    #[serde(default)]
    series_truncated: bool,
}

#[derive(Debug, Deserialize)]
struct StoredSeries {
    name: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    control: StoredSide,
    experiment: StoredSide,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredSide {
    #[serde(default)]
    query: String,
    #[serde(default)]
    start: Option<jiff::Timestamp>,
    #[serde(default)]
    step_seconds: u64,
    #[serde(default, with = "crate::jsonf64::vec")]
    values: Vec<f64>,
    #[serde(default)]
    truncated: bool,
}

/// The canary stage of an execution: the one with this id or name (`None`: the first
/// `kayentaCanary` stage).
pub fn find_stage<'a>(
    execution: &'a Execution,
    stage: Option<&str>,
) -> Result<&'a StageExecution, ReportError> {
    match stage {
        Some(wanted) => execution
            .stages
            .iter()
            .find(|s| s.id == wanted)
            .or_else(|| execution.stages.iter().find(|s| s.name == wanted))
            .ok_or_else(|| ReportError::NoSuchStage {
                execution: execution.id.clone(),
                stage: wanted.to_owned(),
            }),
        None => execution
            .stages
            .iter()
            .find(|s| s.stage_type == KAYENTA_CANARY)
            .ok_or_else(|| ReportError::NoCanaryStage {
                execution: execution.id.clone(),
            }),
    }
}

/// Assembles the report of the canary stage `stage` (an id or a name; `None`: the
/// first `kayentaCanary` stage). A `kayentaCanary` or `runCanaryIntervals` stage
/// gives every judgement; a `runCanary` stage gives its own judgement only, with the
/// analysis' overall result.
pub fn assemble(execution: &Execution, stage: Option<&str>) -> Result<CanaryReport, ReportError> {
    let found = find_stage(execution, stage)?;
    let parent_of = |s: &StageExecution| {
        s.parent_stage_id
            .as_deref()
            .and_then(|id| execution.stages.iter().find(|p| p.id == id))
    };
    let not_canary = || ReportError::NotCanary {
        stage: found.name.clone(),
        stage_type: found.stage_type.clone(),
    };
    let (canary, only) = match found.stage_type.as_str() {
        KAYENTA_CANARY => (found, None),
        RUN_CANARY_INTERVALS => (parent_of(found).ok_or_else(not_canary)?, None),
        RUN_CANARY => {
            let intervals = parent_of(found).ok_or_else(not_canary)?;
            (
                parent_of(intervals).ok_or_else(not_canary)?,
                Some(found.id.as_str()),
            )
        }
        _ => return Err(not_canary()),
    };
    if canary.stage_type != KAYENTA_CANARY {
        return Err(not_canary());
    }
    let thresholds = crate::stage::read_run_settings(&canary.context)
        .map(|s| ReportThresholds {
            pass: s.thresholds.pass,
            marginal: s.thresholds.marginal,
        })
        .unwrap_or_default();
    let intervals_stage = execution.stages.iter().find(|s| {
        s.parent_stage_id.as_deref() == Some(canary.id.as_str())
            && s.stage_type == RUN_CANARY_INTERVALS
    });
    let mut runs: Vec<&StageExecution> = intervals_stage
        .map(|parent| {
            execution
                .stages
                .iter()
                .filter(|s| {
                    s.parent_stage_id.as_deref() == Some(parent.id.as_str())
                        && s.stage_type == RUN_CANARY
                })
                .collect()
        })
        .unwrap_or_default();
    runs.sort_by_key(|s| number(s));
    let mut report = CanaryReport {
        execution_id: execution.id.clone(),
        application: execution.application.clone(),
        pipeline: execution.name.clone(),
        stage_id: canary.id.clone(),
        stage_name: canary.name.clone(),
        status: canary.status,
        canary_config_id: None,
        canary_config_name: None,
        metrics_account_name: None,
        thresholds,
        overall: Overall {
            score: None,
            verdict: None,
            message: None,
            scores: Vec::new(),
        },
        intervals: Vec::new(),
    };
    for run in &runs {
        let (interval, stored) = interval(run, &thresholds);
        if let Some(stored) = stored {
            report.canary_config_id = stored.canary_config_id.or(report.canary_config_id);
            report.canary_config_name = stored.canary_config_name.or(report.canary_config_name);
            report.metrics_account_name =
                stored.metrics_account_name.or(report.metrics_account_name);
        }
        if let Some(score) = interval.score {
            report.overall.scores.push(score);
        }
        if only.is_none_or(|id| id == run.id) {
            report.intervals.push(interval);
        }
    }
    report.overall.score = report.overall.scores.last().copied();
    report.overall.verdict = report.overall.score.map(|s| Verdict::of(s, &thresholds));
    report.overall.message = canary
        .context
        .get("canaryScoreMessage")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| error_of(canary));
    Ok(report)
}

/// The number after the last `#` of a judgement's name (Orca sorts by it).
fn number(stage: &StageExecution) -> u64 {
    stage
        .name
        .rsplit_once('#')
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

/// The error a failed stage recorded.
fn error_of(stage: &StageExecution) -> Option<String> {
    let details = stage.context.get("exception")?.get("details")?;
    details
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            details
                .get("errors")
                .and_then(Value::as_array)
                .and_then(|e| e.first())
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
}

/// One judgement, and what its task stored (when it could be read).
fn interval(
    run: &StageExecution,
    thresholds: &ReportThresholds,
) -> (IntervalReport, Option<StoredReport>) {
    let request: Option<crate::stage::RunCanaryContext> =
        serde_json::from_value(Value::Object(run.context.clone())).ok();
    let window = request.as_ref().and_then(|r| {
        let scope = r.scopes.values().next()?;
        Some(ReportWindow {
            control_start: scope.control_scope.start,
            control_end: scope.control_scope.end,
            experiment_start: scope.experiment_scope.start,
            experiment_end: scope.experiment_scope.end,
            step_seconds: scope.experiment_scope.step,
        })
    });
    let score = run.context.get("canaryScore").and_then(Value::as_f64);
    let mut interval = IntervalReport {
        number: number(run),
        stage_id: run.id.clone(),
        name: run.name.clone(),
        status: run.status,
        score,
        judge_score: None,
        verdict: score.map(|s| Verdict::of(s, thresholds)),
        classification_reason: None,
        window,
        last_updated_iso: run
            .context
            .get("lastUpdatedIso")
            .and_then(Value::as_str)
            .map(str::to_owned),
        warnings: run
            .context
            .get("warnings")
            .and_then(Value::as_array)
            .map(|w| {
                w.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        error: None,
        group_scores: Vec::new(),
        metrics: Vec::new(),
        series_truncated: false,
    };
    if score.is_none() && (run.status.is_halt() || run.status == ExecutionStatus::FailedContinue) {
        interval.error = Some(error_of(run).unwrap_or_else(|| format!("it ended {}", run.status)));
    }
    let Some(raw) = run.outputs.get("canaryReport") else {
        return (interval, None);
    };
    let stored: StoredReport = match serde_json::from_value(raw.clone()) {
        Ok(stored) => stored,
        Err(e) => {
            interval.error = Some(format!(
                "the judgement's stored report cannot be read ({e}); the execution's outputs.canaryReport of '{}' has it raw",
                run.name
            ));
            return (interval, None);
        }
    };
    let result = &stored.judge_result;
    interval.judge_score = Some(result.score.score);
    interval.classification_reason =
        Some(result.score.classification_reason.clone()).filter(|r| !r.is_empty());
    interval.group_scores = result.group_scores.clone();
    interval.series_truncated = stored.series_truncated;
    let step = window.map_or(0, |w| w.step_seconds);
    interval.metrics = result
        .results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            // The task stores results and series in the same order; check the pairing
            // anyway, so a mismatch never shows one metric's series under another.
            let series = stored
                .series
                .get(i)
                .filter(|s| s.name == r.name && s.tags == r.tags)
                .or_else(|| {
                    stored
                        .series
                        .iter()
                        .find(|s| s.name == r.name && s.tags == r.tags)
                });
            metric(r, series, step)
        })
        .collect();
    (interval, Some(stored))
}

fn side(stats: Stats, stored: Option<&StoredSide>, step: u64) -> SideReport {
    match stored {
        Some(s) => SideReport {
            stats,
            query: Some(s.query.clone()).filter(|q| !q.is_empty()),
            start: s.start,
            step_seconds: if s.step_seconds == 0 {
                step
            } else {
                s.step_seconds
            },
            values: s.values.clone(),
            truncated: s.truncated,
        },
        None => SideReport {
            stats,
            query: None,
            start: None,
            step_seconds: step,
            values: Vec::new(),
            truncated: false,
        },
    }
}

fn metric(r: &MetricResult, series: Option<&StoredSeries>, step: u64) -> MetricReport {
    let ratio = r.result_metadata.ratio;
    let deviation_percent = ratio
        .filter(|r| r.is_finite())
        .map(|r| ((r - 1.0) * 1000.0).round() / 10.0);
    let tolerance = r.interval.map(|i| TOLERANCE * i.estimate.abs());
    MetricReport {
        name: r.name.clone(),
        tags: r.tags.clone(),
        groups: r.groups.clone(),
        classification: r.classification,
        classification_reason: r.classification_reason.clone(),
        critical: r.critical,
        muted: r.muted,
        ratio,
        deviation_percent,
        interval: r.interval,
        tolerance,
        why: why(r),
        control: side(r.control_metadata.stats, series.map(|s| &s.control), step),
        experiment: side(
            r.experiment_metadata.stats,
            series.map(|s| &s.experiment),
            step,
        ),
    }
}

/// The rule behind a classification, with its numbers.
fn why(r: &MetricResult) -> String {
    let n = crate::render::number;
    let reason = r.classification_reason.clone();
    let ratio = match r.result_metadata.ratio {
        Some(ratio) if ratio.is_finite() => format!(
            "; mean ratio canary/baseline {} ({:+.1}%)",
            n(ratio),
            (ratio - 1.0) * 100.0
        ),
        Some(_) => "; mean ratio undefined (a mean is 0)".to_owned(),
        None => String::new(),
    };
    let mut text = match (r.classification, r.interval) {
        (Classification::Nodata | Classification::NodataFailMetric, _) => {
            let mut text = reason.unwrap_or_else(|| format!("Missing data for {}", r.name));
            text.push_str(&format!(
                " (baseline {} points, canary {} points after NaN handling)",
                r.control_metadata.stats.count, r.experiment_metadata.stats.count
            ));
            if r.classification == Classification::NodataFailMetric {
                text.push_str("; the metric must have data, so this counts as a failure");
            }
            text
        }
        (Classification::Error, _) => {
            reason.unwrap_or_else(|| "Metric Classification Failed".to_owned())
        }
        (class, Some(i)) => {
            let bound = TOLERANCE * i.estimate.abs();
            let ci = format!(
                "the 98% interval of canary − baseline [{}, {}] (estimate {})",
                n(i.lower),
                n(i.upper),
                n(i.estimate)
            );
            match class {
                Classification::High => format!(
                    "{ci} lies entirely above the tolerance +{} (25% of |estimate|){ratio}",
                    n(bound)
                ),
                Classification::Low => format!(
                    "{ci} lies entirely below the tolerance −{} (25% of |estimate|){ratio}",
                    n(bound)
                ),
                _ if i.lower > bound || i.upper < -bound => format!(
                    "{ci} clears the tolerance ±{} but the effect size stays within the allowed change{ratio}",
                    n(bound)
                ),
                _ => format!(
                    "{ci} does not clear the tolerance ±{} (25% of |estimate|){ratio}",
                    n(bound)
                ),
            }
        }
        (_, None) => reason.unwrap_or_else(|| {
            "no test needed: the canary and baseline data are identical or constant".to_owned()
        }),
    };
    if r.critical {
        text.push_str("; critical: this metric fails the canary on its own");
    }
    if r.muted {
        text.push_str("; muted: reported, not scored");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_stage_not_the_judge_at_marginal() {
        let t = ReportThresholds {
            pass: Some(90.0),
            marginal: Some(75.0),
        };
        assert_eq!(Verdict::of(95.0, &t), Verdict::Pass);
        assert_eq!(Verdict::of(90.0, &t), Verdict::Pass);
        assert_eq!(Verdict::of(80.0, &t), Verdict::Marginal);
        assert_eq!(Verdict::of(75.0, &t), Verdict::Fail);
        assert_eq!(
            Verdict::of(0.0, &ReportThresholds::default()),
            Verdict::Pass
        );
    }
}
