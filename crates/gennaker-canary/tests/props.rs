//! Property tests: arbitrary series (NaN, ±∞, empty, huge, subnormal) never panic
//! and always give a valid verdict.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_canary::{
    CanaryConfig, Classification, JudgeOptions, MetricSetPair, PairValues, ScoreClassification,
    ScoreThresholds, ShapeCheck, judge,
    mannwhitney::{Flavor, shift_interval},
    render_table,
};
use proptest::prelude::*;
use serde_json::json;

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -1e3..1e3_f64,
        2 => (0..5u8).prop_map(f64::from),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => prop_oneof![Just(1e300), Just(-1e300), Just(f64::MAX), Just(f64::MIN)],
        1 => prop_oneof![Just(5e-324), Just(-2.2e-308), Just(1e-310)],
        1 => Just(0.0),
    ]
}

fn series() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(value(), 0..40)
}

fn canary() -> impl Strategy<Value = serde_json::Value> {
    (
        prop_oneof![Just("increase"), Just("decrease"), Just("either")],
        prop_oneof![Just("remove"), Just("replace")],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just("meanRatio"), Just("cles")],
        prop_oneof![Just("keep"), Just("remove")],
    )
        .prop_map(|(direction, nan, critical, must, muted, measure, outliers)| {
            json!({"direction": direction, "nanStrategy": nan, "critical": critical, "mustHaveData": must,
                   "muted": muted, "effectSize": {"measure": measure}, "outliers": {"strategy": outliers}})
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn judge_never_panics_and_verdict_is_valid(
        sides in prop::collection::vec((series(), series(), canary(), 0..3usize), 1..5),
        pass in 0.0..100.0_f64,
        gap in 0.0..100.0_f64,
        options in (any::<bool>(), any::<bool>()),
    ) {
        let metrics: Vec<_> = sides.iter().enumerate().map(|(i, (_, _, c, g))| {
            let groups: Vec<String> = (0..*g).map(|k| format!("g{}", (i + k) % 3)).collect();
            json!({"name": format!("m{i}"), "groups": groups, "analysisConfigurations": {"canary": c}})
        }).collect();
        let config: CanaryConfig = serde_json::from_value(json!({"metrics": metrics,
            "classifier": {"groupWeights": {"g0": 40}}})).unwrap();
        let pairs: Vec<MetricSetPair> = sides.iter().enumerate().map(|(i, (x, y, _, _))| MetricSetPair {
            name: format!("m{i}"),
            values: PairValues { experiment: x.clone(), control: y.clone() },
            ..MetricSetPair::default()
        }).collect();
        let thresholds = ScoreThresholds { pass, marginal: (pass - gap).max(0.0) };
        let options = JudgeOptions {
            shape_check: options.0.then(ShapeCheck::default),
            min_samples: options.1.then_some(10),
        };
        let res = judge(&config, &pairs, &thresholds, &options).unwrap();
        let s = res.score.score;
        prop_assert!((0.0..=100.0).contains(&s), "score {s}");
        let expected = if s >= thresholds.pass {
            ScoreClassification::Pass
        } else if s >= thresholds.marginal {
            ScoreClassification::Marginal
        } else {
            ScoreClassification::Fail
        };
        prop_assert_eq!(res.score.classification, expected);
        for g in &res.group_scores {
            prop_assert!((0.0..=100.0).contains(&g.score));
        }
        for r in &res.results {
            if r.critical {
                prop_assert!(matches!(r.classification, Classification::High | Classification::Low | Classification::Nodata));
            }
            if r.classification == Classification::Error {
                prop_assert!(r.result_metadata.ratio.is_none() && !r.critical);
            }
        }
        // Serialisation and rendering cope with whatever came out.
        let text = serde_json::to_string(&res).unwrap();
        prop_assert!(!text.is_empty());
        prop_assert!(render_table(&res).contains("Score: "));
    }

    #[test]
    fn interval_never_panics(x in series(), y in series()) {
        for flavor in [Flavor::Kayenta, Flavor::R] {
            if let Ok(i) = shift_interval(&x, &y, 0.98, flavor) {
                let finite = x.iter().chain(&y).all(|v| v.is_finite());
                if finite && x.iter().chain(&y).all(|v| v.abs() < 1e6) {
                    // Each value is a root of a bracketed search in [μmin, μmax].
                    let lo = x.iter().cloned().fold(f64::INFINITY, f64::min) - y.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let hi = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max) - y.iter().cloned().fold(f64::INFINITY, f64::min);
                    for v in [i.lower, i.upper, i.estimate] {
                        prop_assert!(v >= lo - 1e-3 && v <= hi + 1e-3, "{v} outside [{lo}, {hi}]");
                    }
                }
            }
        }
    }
}
