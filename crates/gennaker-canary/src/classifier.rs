//! Classification of one metric-set pair: Kayenta's `NetflixACAJudge.classifyMetric`
//! and `MannWhitneyClassifier`, step by step (reference §2).

use crate::{
    JudgeOptions,
    config::{Direction, EffectMeasure, MetricSettings, NanStrategy},
    input::MetricSetPair,
    mannwhitney::{Flavor, RankSums, ShiftInterval},
    noise::add_noise,
    outliers::remove_outliers,
    result::{Classification, Interval, MetricResult, ResultMetadata, SideMetadata},
    shape::kolmogorov_smirnov,
    stats::{Stats, mean, mean_ratio},
};

/// Fraction of |estimate| the interval must clear (hard-coded in the judge).
const TOLERANCE: f64 = 0.25;
/// Confidence level of the interval (hard-coded in the judge; the class default
/// 0.95 and the `kayenta.netflix.judge.confLevel` property are not used).
const CONFIDENCE_LEVEL: f64 = 0.98;

/// What the classifier decided, before it is dressed as a [`MetricResult`].
struct Decision {
    classification: Classification,
    reason: Option<String>,
    critical: bool,
    ratio: Option<f64>,
    interval: Option<ShiftInterval>,
}

impl Decision {
    fn new(classification: Classification, reason: Option<String>, ratio: f64) -> Self {
        Self {
            classification,
            reason,
            critical: false,
            ratio: Some(ratio),
            interval: None,
        }
    }
}

/// Classifies one pair with the resolved settings of its metric.
pub(crate) fn classify(
    pair: &MetricSetPair,
    groups: &[String],
    settings: &MetricSettings,
    options: &JudgeOptions,
) -> MetricResult {
    let experiment = transform(&pair.values.experiment, settings);
    let control = transform(&pair.values.control, settings);
    let mut warnings = Vec::new();
    if let Some(min) = options.min_samples
        && (experiment.len() < min || control.len() < min)
    {
        warnings.push(format!(
            "too few data points to judge reliably: {} experiment and {} control, at least {min} needed",
            experiment.len(),
            control.len()
        ));
    }
    let d = decide(&pair.name, &experiment, &control, settings, options);
    MetricResult {
        name: pair.name.clone(),
        id: pair.id.clone(),
        tags: pair.tags.clone(),
        groups: groups.to_vec(),
        classification: d.classification,
        classification_reason: d.reason,
        critical: d.critical,
        muted: settings.muted,
        result_metadata: ResultMetadata { ratio: d.ratio },
        control_metadata: SideMetadata {
            stats: Stats::of(&control),
        },
        experiment_metadata: SideMetadata {
            stats: Stats::of(&experiment),
        },
        interval: d.interval.map(|i| Interval {
            lower: i.lower,
            upper: i.upper,
            estimate: i.estimate,
        }),
        warnings,
    }
}

/// NaN strategy, then (optionally) outlier removal.
fn transform(values: &[f64], s: &MetricSettings) -> Vec<f64> {
    let cleaned: Vec<f64> = match s.nan_strategy {
        NanStrategy::Remove => values.iter().copied().filter(|v| !v.is_nan()).collect(),
        NanStrategy::Replace => values
            .iter()
            .map(|&v| if v.is_nan() { 0.0 } else { v })
            .collect(),
    };
    match s.outlier_factor {
        Some(k) => remove_outliers(&cleaned, k),
        None => cleaned,
    }
}

fn decide(
    name: &str,
    x: &[f64],
    y: &[f64],
    s: &MetricSettings,
    options: &JudgeOptions,
) -> Decision {
    if x.is_empty() || y.is_empty() {
        return match s.nan_strategy {
            NanStrategy::Replace => Decision::new(Classification::Pass, None, 1.0),
            NanStrategy::Remove => {
                let reason = Some(format!("Missing data for {name}"));
                if s.must_have_data && !s.critical {
                    Decision::new(Classification::NodataFailMetric, reason, 1.0)
                } else {
                    Decision {
                        critical: s.critical,
                        ..Decision::new(Classification::Nodata, reason, 1.0)
                    }
                }
            }
        };
    }
    let sums = RankSums::new(x, y);
    let (xs, ys) = (sums.experiment(), sums.control());
    if xs == ys {
        let reason = Some("The Canary and Baseline data are identical".to_owned());
        return Decision::new(Classification::Pass, reason, 1.0);
    }
    let constant = |v: &[f64]| v.first() == v.last();
    if constant(xs) && constant(ys) {
        if xs.first() == ys.first() {
            return Decision::new(Classification::Pass, None, 1.0);
        }
        let (nx, ny) = add_noise(x, y);
        return mann_whitney(name, &nx, &ny, &RankSums::new(&nx, &ny), s, options);
    }
    mann_whitney(name, x, y, &sums, s, options)
}

fn mann_whitney(
    name: &str,
    x: &[f64],
    y: &[f64],
    sums: &RankSums,
    s: &MetricSettings,
    options: &JudgeOptions,
) -> Decision {
    let Ok(ci) = sums.shift_interval(CONFIDENCE_LEVEL, Flavor::Kayenta) else {
        return Decision {
            classification: Classification::Error,
            reason: Some("Metric Classification Failed".to_owned()),
            critical: false,
            ratio: None,
            interval: None,
        };
    };
    let ratio = mean_ratio(x, y);
    let effect = match s.measure {
        EffectMeasure::MeanRatio => ratio,
        EffectMeasure::Cles => cles(sums, x.len(), y.len()),
    };
    let bound = TOLERANCE * ci.estimate.abs();
    let up = matches!(s.direction, Direction::Increase | Direction::Either);
    let down = matches!(s.direction, Direction::Decrease | Direction::Either);
    let mut d = Decision {
        interval: Some(ci),
        ..Decision::new(Classification::Pass, None, ratio)
    };
    if up && ci.lower > bound && (effect.is_nan() || effect >= s.allowed_increase) {
        flag(
            &mut d,
            name,
            Classification::High,
            s.critical && (effect.is_nan() || effect >= s.critical_increase),
            "",
        );
    } else if down && ci.upper < -bound && (effect.is_nan() || effect <= s.allowed_decrease) {
        flag(
            &mut d,
            name,
            Classification::Low,
            s.critical && (effect.is_nan() || effect <= s.critical_decrease),
            "",
        );
    } else if let Some(check) = options.shape_check {
        let ks = kolmogorov_smirnov(sums.experiment(), sums.control());
        if check.flags(ks) {
            let detail = format!(
                ": the distributions differ in shape (Kolmogorov-Smirnov D = {:.3}, p = {:.2e})",
                ks.distance, ks.p_value
            );
            if up && mean(x) > mean(y) && (effect.is_nan() || effect >= s.allowed_increase) {
                let critical = s.critical && (effect.is_nan() || effect >= s.critical_increase);
                flag(&mut d, name, Classification::High, critical, &detail);
            } else if down && mean(x) < mean(y) && (effect.is_nan() || effect <= s.allowed_decrease)
            {
                let critical = s.critical && (effect.is_nan() || effect <= s.critical_decrease);
                flag(&mut d, name, Classification::Low, critical, &detail);
            }
        }
    }
    d
}

fn flag(d: &mut Decision, name: &str, c: Classification, critical: bool, detail: &str) {
    d.classification = c;
    d.critical = critical;
    d.reason = Some(if critical {
        format!("The metric {name} was classified as {c} (Critical){detail}")
    } else {
        format!("{name} was classified as {c}{detail}")
    });
}

/// Common-language effect size `(2·R₁ − m(m+1)) / (2mn)`, with `R₁` the rank sum
/// of the experiment in the pooled sample (average ranks for ties).
fn cles(sums: &RankSums, m: usize, n: usize) -> f64 {
    let (m, n) = (m as f64, n as f64);
    let r1 = sums.u_statistic() + m * (m + 1.0) / 2.0;
    (2.0 * r1 - m * (m + 1.0)) / (2.0 * m * n)
}
