//! The judge's output in Kayenta's `judgeResult` JSON shape (camelCase), plus
//! Gennaker's additions: `interval` on each metric result and `warnings` (only
//! written when there are some).
//!
//! Doubles follow Jackson: NaN and ±∞ are written as the strings "NaN",
//! "Infinity", "-Infinity" (e.g. the ratio when the control mean is 0), never as
//! `null`, which would read back as a missing value.

use crate::stats::Stats;
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, fmt};

/// Kayenta's judge name, reported in every result.
pub const JUDGE_NAME: &str = "NetflixACAJudge-v1.0";

/// Classification of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Classification {
    /// No significant deviation.
    Pass,
    /// The experiment is significantly higher.
    High,
    /// The experiment is significantly lower.
    Low,
    /// A side had no data; not scored unless the metric is critical.
    Nodata,
    /// A side had no data and the metric sets `mustHaveData`: counts as a failure.
    NodataFailMetric,
    /// The classification failed; never scored, never critical.
    Error,
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::Pass => "Pass",
            Self::High => "High",
            Self::Low => "Low",
            Self::Nodata => "Nodata",
            Self::NodataFailMetric => "NodataFailMetric",
            Self::Error => "Error",
        };
        f.write_str(s)
    }
}

/// Classification of the summary score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ScoreClassification {
    /// Score ≥ pass threshold.
    Pass,
    /// marginal ≤ score < pass.
    Marginal,
    /// Score < marginal.
    Fail,
}

impl fmt::Display for ScoreClassification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::Pass => "Pass",
            Self::Marginal => "Marginal",
            Self::Fail => "Fail",
        };
        f.write_str(s)
    }
}

/// The result of one judgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JudgeResult {
    /// Always [`JUDGE_NAME`].
    pub judge_name: String,
    /// One result per metric-set pair, in input order.
    pub results: Vec<MetricResult>,
    /// One score per group, in order of first appearance in `results`.
    pub group_scores: Vec<GroupScore>,
    /// The summary score.
    pub score: SummaryScore,
}

/// The result for one metric-set pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    /// Metric name.
    pub name: String,
    /// Id of the metric-set pair.
    #[serde(default)]
    pub id: Option<String>,
    /// Tags of the metric-set pair.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Groups of the metric in the configuration.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The classification.
    pub classification: Classification,
    /// Why, when there is something to say (`null` for a plain Pass).
    #[serde(default)]
    pub classification_reason: Option<String>,
    /// Whether this result fails the canary on its own.
    pub critical: bool,
    /// Muted metrics are reported but not scored.
    pub muted: bool,
    /// `ratio`: mean(experiment)/mean(control).
    #[serde(default)]
    pub result_metadata: ResultMetadata,
    /// Stats of the control after NaN handling and outlier removal.
    #[serde(default)]
    pub control_metadata: SideMetadata,
    /// Stats of the experiment after NaN handling and outlier removal.
    #[serde(default)]
    pub experiment_metadata: SideMetadata,
    /// Gennaker: the Mann-Whitney interval and estimate, `null` when not computed.
    #[serde(default)]
    pub interval: Option<Interval>,
    /// Gennaker: warnings from the optional checks of [`crate::JudgeOptions`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// `resultMetadata` of a metric result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ResultMetadata {
    /// Mean ratio (NaN when a mean is 0); absent for `Error`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::jsonf64::option"
    )]
    pub ratio: Option<f64>,
}

/// `controlMetadata` / `experimentMetadata` of a metric result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SideMetadata {
    /// Descriptive statistics.
    pub stats: Stats,
}

/// Confidence interval and Hodges–Lehmann estimate of `experiment − control`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower end.
    #[serde(with = "crate::jsonf64")]
    pub lower: f64,
    /// Upper end.
    #[serde(with = "crate::jsonf64")]
    pub upper: f64,
    /// Point estimate.
    #[serde(with = "crate::jsonf64")]
    pub estimate: f64,
}

/// Score of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupScore {
    /// Group name.
    pub name: String,
    /// 100 × passed / scored metrics of the group (0 when none was scored).
    #[serde(with = "crate::jsonf64")]
    pub score: f64,
    /// Always "" (Kayenta does not classify groups).
    #[serde(default)]
    pub classification: String,
    /// Always "".
    #[serde(default)]
    pub classification_reason: String,
}

/// The summary score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SummaryScore {
    /// 0–100, rounded half-up to two decimals.
    #[serde(with = "crate::jsonf64")]
    pub score: f64,
    /// Against the request's thresholds.
    pub classification: ScoreClassification,
    /// Why the canary failed outright, or "".
    #[serde(default)]
    pub classification_reason: String,
}
