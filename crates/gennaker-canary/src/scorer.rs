//! Kayenta's scorer (`ScoringHelper` + `WeightedSumScorer` +
//! `ThresholdScoreClassifier`, reference §3).

use crate::result::{Classification, GroupScore, MetricResult, ScoreClassification, SummaryScore};
use std::collections::BTreeMap;

/// The share of Nodata results (in percent) at which the canary fails.
const NODATA_THRESHOLD: f64 = 50.0;

/// Pass and marginal thresholds of an execution request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreThresholds {
    /// Score ≥ pass → Pass.
    pub pass: f64,
    /// Score ≥ marginal → Marginal, else Fail.
    pub marginal: f64,
}

impl Default for ScoreThresholds {
    /// Orca's defaults for the `kayentaCanary` stage: 75 / 50.
    fn default() -> Self {
        Self {
            pass: 75.0,
            marginal: 50.0,
        }
    }
}

struct Group<'a> {
    name: &'a str,
    pass: usize,
    total: usize,
}

impl Group<'_> {
    fn no_data(&self) -> bool {
        self.total == 0
    }

    /// Kayenta's `(numPass / numTotal.toDouble) * 100`, in that order.
    fn score(&self) -> f64 {
        if self.no_data() {
            0.0
        } else {
            (self.pass as f64 / self.total as f64) * 100.0
        }
    }
}

/// Scores the metric results with the configured group weights.
pub(crate) fn score(
    results: &[MetricResult],
    weights: &BTreeMap<String, f64>,
    thresholds: &ScoreThresholds,
) -> (Vec<GroupScore>, SummaryScore) {
    let scored: Vec<&MetricResult> = results.iter().filter(|r| !r.muted).collect();

    // Groups in order of first appearance (Kayenta's order is a hash map's).
    let mut groups: Vec<Group<'_>> = Vec::new();
    for r in &scored {
        for name in &r.groups {
            let index = match groups.iter().position(|g| g.name == name.as_str()) {
                Some(i) => i,
                None => {
                    groups.push(Group {
                        name,
                        pass: 0,
                        total: 0,
                    });
                    groups.len() - 1
                }
            };
            let g = &mut groups[index];
            match r.classification {
                Classification::Pass => {
                    g.pass += 1;
                    g.total += 1;
                }
                Classification::High | Classification::Low | Classification::NodataFailMetric => {
                    g.total += 1
                }
                Classification::Nodata | Classification::Error => {}
            }
        }
    }
    let group_scores = groups
        .iter()
        .map(|g| GroupScore {
            name: g.name.to_owned(),
            score: g.score(),
            classification: String::new(),
            classification_reason: String::new(),
        })
        .collect();

    let nodata = scored
        .iter()
        .filter(|r| r.classification == Classification::Nodata)
        .count();
    let (raw, reason) = if let Some(r) = scored
        .iter()
        .find(|r| r.critical && r.classification != Classification::Pass)
    {
        (
            0.0,
            format!(
                "Canary Failed: {}",
                r.classification_reason.as_deref().unwrap_or("null")
            ),
        )
    } else if !scored.is_empty() && nodata as f64 / scored.len() as f64 * 100.0 >= NODATA_THRESHOLD
    {
        (
            0.0,
            "Canary Failed: 50% or more metrics returned NODATA".to_owned(),
        )
    } else {
        (weighted_sum(&groups, weights), String::new())
    };
    let score = round_half_up_2(raw);
    (
        group_scores,
        SummaryScore {
            score,
            classification: classify_score(score, thresholds),
            classification_reason: reason,
        },
    )
}

/// Σ effective group score × weight/100. Groups without a configured weight share
/// what the configured weights leave of 100; nothing is normalised.
fn weighted_sum(groups: &[Group<'_>], weights: &BTreeMap<String, f64>) -> f64 {
    let configured: f64 = weights.values().sum();
    let unweighted = groups
        .iter()
        .filter(|g| !weights.contains_key(g.name))
        .count();
    let share = if unweighted > 0 {
        (100.0 - configured) / unweighted as f64
    } else {
        0.0
    };
    groups
        .iter()
        .map(|g| {
            let effective = if g.no_data() { 100.0 } else { g.score() };
            let weight = weights.get(g.name).copied().unwrap_or(share);
            effective * (weight / 100.0)
        })
        .sum()
}

fn classify_score(score: f64, t: &ScoreThresholds) -> ScoreClassification {
    if score >= t.pass {
        ScoreClassification::Pass
    } else if score >= t.marginal {
        ScoreClassification::Marginal
    } else {
        ScoreClassification::Fail
    }
}

/// commons-math `Precision.round(x, 2)`: `new BigDecimal(Double.toString(x))
/// .setScale(2, HALF_UP).doubleValue()`. Works on the shortest decimal string of
/// `x`, so 0.125 → 0.13 and 1.005 (really 1.00499999999999989…) → 1.01 as in Java.
pub(crate) fn round_half_up_2(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let text = format!("{}", x.abs());
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    if frac.len() <= 2 {
        return x;
    }
    let digits: String = format!("{int}{}", &frac[..2]);
    let Ok(mut cents) = digits.parse::<u128>() else {
        return x;
    };
    if frac.as_bytes()[2] >= b'5' {
        cents += 1;
    }
    let rounded: f64 = format!("{}.{:02}", cents / 100, cents % 100)
        .parse()
        .unwrap_or(x.abs());
    if x.is_sign_negative() {
        -rounded
    } else {
        rounded
    }
}

#[cfg(test)]
mod tests {
    use super::round_half_up_2;

    #[test]
    fn rounds_half_up_on_the_decimal_string() {
        assert_eq!(round_half_up_2(66.666_666_666_666_67), 66.67);
        assert_eq!(round_half_up_2(0.125), 0.13);
        assert_eq!(round_half_up_2(1.005), 1.01);
        assert_eq!(round_half_up_2(33.334_999), 33.33);
        assert_eq!(round_half_up_2(99.995), 100.0);
        assert_eq!(round_half_up_2(-2.675), -2.68);
        assert_eq!(round_half_up_2(50.0), 50.0);
        assert_eq!(round_half_up_2(1e-7), 0.0);
    }
}
