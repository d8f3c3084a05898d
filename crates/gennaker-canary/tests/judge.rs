//! Hand-made cases for every classification path and scorer rule (reference §2–§3); the
//! aggregation rules are in `aggregate.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_canary::{
    Classification, JudgeError, JudgeOptions, JudgeResult, MetricSetPair, ScoreClassification,
    ScoreThresholds, ShapeCheck, judge, render_table,
};
use serde_json::{Value, json};
use support::{config, metric, normal, one, pair, pair_for, reason, run, scored};

mod support;

// ---------------------------------------------------------------- classification

#[test]
fn identical_data_pass() {
    let r = one(json!({}), vec![3.0, 1.0, 2.0], vec![1.0, 2.0, 3.0]);
    assert_eq!(r.classification, Classification::Pass);
    assert_eq!(reason(&r), "The Canary and Baseline data are identical");
    assert_eq!(r.result_metadata.ratio, Some(1.0));
    assert!(r.interval.is_none());
}

#[test]
fn one_constant_value_on_both_sides_passes() {
    let r = one(json!({}), vec![4.0; 5], vec![4.0; 9]);
    assert_eq!(r.classification, Classification::Pass);
    assert_eq!(r.classification_reason, None);
    assert_eq!(r.result_metadata.ratio, Some(1.0));
}

#[test]
fn missing_data_is_nodata() {
    let r = one(json!({}), vec![f64::NAN, f64::NAN], vec![1.0, 2.0]);
    assert_eq!(r.classification, Classification::Nodata);
    assert_eq!(reason(&r), "Missing data for m");
    assert!(!r.critical);
    assert_eq!(r.result_metadata.ratio, Some(1.0));
    assert_eq!(r.experiment_metadata.stats.count, 0);

    let r = one(json!({"critical": true}), vec![], vec![1.0]);
    assert_eq!(
        (r.classification, r.critical),
        (Classification::Nodata, true)
    );
}

#[test]
fn must_have_data_fails_the_metric() {
    let r = one(json!({"mustHaveData": true}), vec![1.0], vec![]);
    assert_eq!(
        (r.classification, r.critical),
        (Classification::NodataFailMetric, false)
    );
    assert_eq!(reason(&r), "Missing data for m");
    // A critical metric stays Nodata (and critical) instead.
    let r = one(
        json!({"mustHaveData": true, "critical": true}),
        vec![1.0],
        vec![],
    );
    assert_eq!(
        (r.classification, r.critical),
        (Classification::Nodata, true)
    );
}

#[test]
fn replace_strategy_with_missing_data_passes() {
    // kayenta#700 / PR #339: mustHaveData is only honoured with remove.
    let r = one(
        json!({"nanStrategy": "replace", "mustHaveData": true}),
        vec![],
        vec![1.0],
    );
    assert_eq!(r.classification, Classification::Pass);
}

#[test]
fn nan_strategies() {
    let experiment = vec![f64::NAN, 1.0, 2.0, f64::NAN];
    let control = vec![1.0, 2.0];
    let removed = one(json!({}), experiment.clone(), control.clone());
    assert_eq!(removed.experiment_metadata.stats.count, 2);
    assert_eq!(
        removed.classification_reason.as_deref(),
        Some("The Canary and Baseline data are identical")
    );
    let replaced = one(json!({"nanStrategy": "replace"}), experiment, control);
    assert_eq!(replaced.experiment_metadata.stats.count, 4);
    assert_eq!(replaced.experiment_metadata.stats.min, 0.0);
    assert_eq!(replaced.experiment_metadata.stats.mean, 0.75);
}

#[test]
fn shifted_up_is_high_and_down_is_low() {
    let control = normal(100, 100.0, 5.0, 1);
    let r = one(json!({}), normal(100, 130.0, 5.0, 2), control.clone());
    assert_eq!(r.classification, Classification::High);
    assert_eq!(reason(&r), "m was classified as High");
    let i = r.interval.unwrap();
    assert!(
        i.lower > 0.25 * i.estimate.abs() && i.estimate > 25.0,
        "{i:?}"
    );
    assert!(r.result_metadata.ratio.unwrap() > 1.2);

    let r = one(json!({}), normal(100, 70.0, 5.0, 3), control.clone());
    assert_eq!(r.classification, Classification::Low);
    assert_eq!(reason(&r), "m was classified as Low");

    let r = one(json!({}), normal(100, 100.0, 5.0, 4), control);
    assert_eq!(r.classification, Classification::Pass);
    assert!(r.interval.is_some());
}

#[test]
fn directions() {
    let control = normal(80, 50.0, 2.0, 5);
    let up = normal(80, 60.0, 2.0, 6);
    let down = normal(80, 40.0, 2.0, 7);
    let c = |d: &str| json!({"direction": d});
    assert_eq!(
        one(c("increase"), up.clone(), control.clone()).classification,
        Classification::High
    );
    assert_eq!(
        one(c("increase"), down.clone(), control.clone()).classification,
        Classification::Pass
    );
    assert_eq!(
        one(c("decrease"), down.clone(), control.clone()).classification,
        Classification::Low
    );
    assert_eq!(
        one(c("decrease"), up.clone(), control.clone()).classification,
        Classification::Pass
    );
    assert_eq!(
        one(c("sideways"), down, control.clone()).classification,
        Classification::Low
    );
    assert_eq!(
        one(c("either"), up, control).classification,
        Classification::High
    );
}

#[test]
fn critical_thresholds() {
    let control = normal(60, 10.0, 1.0, 8);
    let doubled = normal(60, 20.0, 1.0, 9);
    let r = one(json!({"critical": true}), doubled.clone(), control.clone());
    assert_eq!((r.classification, r.critical), (Classification::High, true));
    assert_eq!(reason(&r), "The metric m was classified as High (Critical)");

    // Ratio ~2 is below criticalIncrease 3: an ordinary, non-critical High.
    let r = one(
        json!({"critical": true, "effectSize": {"criticalIncrease": 3}}),
        doubled,
        control.clone(),
    );
    assert_eq!(
        (r.classification, r.critical),
        (Classification::High, false)
    );
    assert_eq!(reason(&r), "m was classified as High");

    let halved = normal(60, 5.0, 1.0, 10);
    let r = one(json!({"critical": true}), halved.clone(), control.clone());
    assert_eq!((r.classification, r.critical), (Classification::Low, true));
    assert_eq!(reason(&r), "The metric m was classified as Low (Critical)");
    let r = one(
        json!({"critical": true, "effectSize": {"criticalDecrease": 0.3}}),
        halved,
        control,
    );
    assert_eq!((r.classification, r.critical), (Classification::Low, false));
}

#[test]
fn allowed_increase_gates_high() {
    // kayenta#744: +20 % passes with allowedIncrease 1.5.
    let control = normal(100, 100.0, 2.0, 11);
    let r = one(
        json!({"effectSize": {"allowedIncrease": 1.5}}),
        normal(100, 120.0, 2.0, 12),
        control.clone(),
    );
    assert_eq!(r.classification, Classification::Pass);
    let r = one(
        json!({"effectSize": {"allowedDecrease": 0.5}}),
        normal(100, 80.0, 2.0, 13),
        control,
    );
    assert_eq!(r.classification, Classification::Pass);
}

#[test]
fn cles_measure() {
    let control = normal(100, 10.0, 1.0, 14);
    // Complete separation: CLES = 1 ≥ default 0.5 → High.
    let r = one(
        json!({"effectSize": {"measure": "cles"}}),
        normal(100, 20.0, 1.0, 15),
        control.clone(),
    );
    assert_eq!(r.classification, Classification::High);
    // Partial overlap: CLES ~0.76 < 0.9 → Pass although the interval clears the bound.
    let r = one(
        json!({"effectSize": {"measure": "cles", "allowedIncrease": 0.9}}),
        normal(100, 11.0, 1.0, 16),
        control.clone(),
    );
    assert_eq!(r.classification, Classification::Pass);
    let r = one(
        json!({"effectSize": {"measure": "cles"}}),
        normal(100, 11.0, 1.0, 16),
        control,
    );
    assert_eq!(r.classification, Classification::High);
}

#[test]
fn outlier_removal() {
    let mut control = normal(100, 10.0, 1.0, 17);
    control.push(10_000.0);
    let experiment = normal(100, 10.0, 1.0, 18);
    let kept = one(json!({}), experiment.clone(), control.clone());
    assert_eq!(kept.control_metadata.stats.count, 101);
    assert_eq!(kept.control_metadata.stats.max, 10_000.0);
    let removed = one(
        json!({"outliers": {"strategy": "remove"}}),
        experiment,
        control,
    );
    assert_eq!(removed.control_metadata.stats.count, 100);
    assert!(removed.control_metadata.stats.max < 20.0);
}

#[test]
fn classification_failure_is_error_and_never_critical() {
    // Single values: the noise leaves x − μmin tied with y, so σ = 0 (R: "all
    // observations are tied").
    let r = one(json!({"critical": true}), vec![0.0], vec![5.0]);
    assert_eq!(
        (r.classification, r.critical),
        (Classification::Error, false)
    );
    assert_eq!(reason(&r), "Metric Classification Failed");
    assert_eq!(r.result_metadata.ratio, None);
}

#[test]
fn constant_series_get_deterministic_noise() {
    let a = one(json!({}), vec![5.0; 30], vec![7.0; 30]);
    let b = one(json!({}), vec![5.0; 30], vec![7.0; 30]);
    assert_eq!(a, b);
    assert_eq!(a.classification, Classification::Low);
    // Stats are reported before the noise.
    assert_eq!(a.experiment_metadata.stats.std, 0.0);
}

#[test]
fn ratio_is_nan_with_zero_control_mean_and_serializes_as_string() {
    let r = one(json!({}), vec![1.0, 2.0, 3.0], vec![-1.0, 1.0, -1.0, 1.0]);
    assert!(r.result_metadata.ratio.unwrap().is_nan());
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["resultMetadata"]["ratio"], json!("NaN"));
}

#[test]
fn muted_results_are_kept_but_not_scored() {
    let c = config(
        vec![
            metric("bad", &["g"], json!({"muted": true, "critical": true})),
            metric("ok", &["g"], json!({})),
        ],
        json!({}),
    );
    let res = run(
        &c,
        &[
            pair("bad", vec![], vec![1.0]),
            pair("ok", vec![1.0], vec![1.0]),
        ],
    );
    assert!(res.results[0].muted && res.results[0].critical);
    assert_eq!(res.score.score, 100.0);
    assert_eq!(res.score.classification, ScoreClassification::Pass);
}

#[test]
fn whole_judgement_errors() {
    let c = config(
        vec![metric(
            "m",
            &[],
            json!({"effectSize": {"allowedIncrease": "much"}}),
        )],
        json!({}),
    );
    let err = judge(
        &c,
        &[pair("m", vec![1.0], vec![1.0])],
        &ScoreThresholds::default(),
        &JudgeOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, JudgeError::Config(_)), "{err}");
    let err = judge(
        &c,
        &[pair("nope", vec![1.0], vec![1.0])],
        &ScoreThresholds::default(),
        &JudgeOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err, JudgeError::UnknownMetric("nope".into()));
}

#[test]
fn result_json_has_kayenta_shape() {
    let c = config(vec![metric("m", &["g"], json!({}))], json!({}));
    let mut p = pair("m", normal(50, 20.0, 1.0, 19), normal(50, 10.0, 1.0, 20));
    p.id = Some("id-1".into());
    p.tags.insert("pod".into(), "a".into());
    let v = serde_json::to_value(run(&c, &[p])).unwrap();
    assert_eq!(v["judgeName"], "NetflixACAJudge-v1.0");
    let r = &v["results"][0];
    for key in [
        "name",
        "id",
        "tags",
        "groups",
        "classification",
        "classificationReason",
        "critical",
        "muted",
        "resultMetadata",
        "controlMetadata",
        "experimentMetadata",
        "interval",
    ] {
        assert!(r.get(key).is_some(), "missing {key}");
    }
    assert!(r.get("warnings").is_none());
    assert_eq!(r["classification"], "High");
    for key in ["min", "max", "mean", "std", "count"] {
        assert!(r["controlMetadata"]["stats"].get(key).is_some());
    }
    for key in ["lower", "upper", "estimate"] {
        assert!(r["interval"][key].is_number());
    }
    assert_eq!(
        v["groupScores"][0],
        json!({"name": "g", "score": 0.0, "classification": "", "classificationReason": ""})
    );
    assert_eq!(
        v["score"],
        json!({"score": 0.0, "classification": "Fail", "classificationReason": ""})
    );
    let back: JudgeResult = serde_json::from_value(v).unwrap();
    assert_eq!(back.results[0].classification, Classification::High);
}

// ---------------------------------------------------------------- improvements

#[test]
fn shape_check_catches_bimodal_regression() {
    // spinnaker#6278 with 100 points per side: 70×1 + 30×100 against 100×1.
    let mut experiment = vec![1.0; 70];
    experiment.extend(vec![100.0; 30]);
    let control = vec![1.0; 100];
    let c = config(vec![metric("lat", &["g"], json!({}))], json!({}));
    let pairs = [pair("lat", experiment, control)];
    let parity = run(&c, &pairs);
    assert_eq!(
        parity.results[0].classification,
        Classification::Pass,
        "Kayenta misses it"
    );
    let options = JudgeOptions {
        shape_check: Some(ShapeCheck::default()),
        ..JudgeOptions::default()
    };
    let better = judge(&c, &pairs, &ScoreThresholds::default(), &options).unwrap();
    let r = &better.results[0];
    assert_eq!(r.classification, Classification::High);
    assert!(reason(r).contains("differ in shape"), "{}", reason(r));
    // Same data on both sides stays a Pass.
    let same = judge(
        &c,
        &[pair(
            "lat",
            normal(100, 5.0, 1.0, 21),
            normal(100, 5.0, 1.0, 22),
        )],
        &ScoreThresholds::default(),
        &options,
    )
    .unwrap();
    assert_eq!(same.results[0].classification, Classification::Pass);
}

#[test]
fn min_samples_warning() {
    let c = config(vec![metric("m", &["g"], json!({}))], json!({}));
    let options = JudgeOptions {
        min_samples: Some(50),
        ..JudgeOptions::default()
    };
    let res = judge(
        &c,
        &[pair(
            "m",
            normal(10, 1.0, 0.1, 23),
            normal(60, 1.0, 0.1, 24),
        )],
        &ScoreThresholds::default(),
        &options,
    )
    .unwrap();
    let r = &res.results[0];
    assert_eq!(r.warnings.len(), 1);
    assert!(
        r.warnings[0].contains("10 experiment and 60 control"),
        "{}",
        r.warnings[0]
    );
    assert!(render_table(&res).contains("warning: too few data points"));
    let default = run(
        &c,
        &[pair(
            "m",
            normal(10, 1.0, 0.1, 23),
            normal(60, 1.0, 0.1, 24),
        )],
    );
    assert!(default.results[0].warnings.is_empty());
}

// ---------------------------------------------------------------- scorer

#[test]
fn group_score_is_pass_ratio_rounded_half_up() {
    let res = scored(
        &[
            ("a", &["g"], json!({}), 'P'),
            ("b", &["g"], json!({}), 'P'),
            ("c", &["g"], json!({}), 'H'),
        ],
        json!({}),
    );
    assert_eq!(res.group_scores[0].score, (2.0 / 3.0) * 100.0);
    assert_eq!(res.score.score, 66.67);
    assert_eq!(res.score.classification, ScoreClassification::Marginal);
}

#[test]
fn nodata_and_error_are_outside_group_totals() {
    let res = scored(
        &[
            ("a", &["g"], json!({}), 'P'),
            ("b", &["g"], json!({}), 'H'),
            ("c", &["g"], json!({}), 'E'),
            ("d", &["g"], json!({}), 'N'),
        ],
        json!({}),
    );
    assert_eq!(res.group_scores[0].score, 50.0);
    assert_eq!(res.score.score, 50.0);
}

#[test]
fn nodata_fail_metric_counts_as_failure() {
    let c = config(
        vec![
            metric("a", &["g"], json!({})),
            metric("b", &["g"], json!({"mustHaveData": true})),
        ],
        json!({}),
    );
    let res = run(&c, &[pair_for("a", 'P'), pair_for("b", 'N')]);
    assert_eq!(
        res.results[1].classification,
        Classification::NodataFailMetric
    );
    assert_eq!(res.score.score, 50.0);
}

#[test]
fn critical_failure_zeroes_the_score_with_first_reason() {
    let res = scored(
        &[
            ("a", &["g"], json!({}), 'P'),
            ("b", &["g"], json!({"critical": true}), 'H'),
            ("c", &["g"], json!({"critical": true}), 'N'),
        ],
        json!({}),
    );
    assert_eq!(res.score.score, 0.0);
    assert_eq!(res.score.classification, ScoreClassification::Fail);
    assert_eq!(
        res.score.classification_reason,
        "Canary Failed: The metric b was classified as High (Critical)"
    );
    // Group scores are still reported.
    assert_eq!(res.group_scores[0].score, 50.0);
}

#[test]
fn half_nodata_fails_the_canary() {
    let res = scored(
        &[
            ("a", &["g"], json!({}), 'P'),
            ("b", &["g"], json!({}), 'N'),
            ("c", &["g"], json!({}), 'E'),
            ("d", &["g"], json!({}), 'N'),
        ],
        json!({}),
    );
    assert_eq!(res.score.score, 0.0);
    assert_eq!(
        res.score.classification_reason,
        "Canary Failed: 50% or more metrics returned NODATA"
    );
    // 1 of 3 (Error counts in the denominator) is below 50 %.
    let res = scored(
        &[
            ("a", &["g"], json!({}), 'P'),
            ("b", &["g"], json!({}), 'N'),
            ("c", &["g"], json!({}), 'E'),
        ],
        json!({}),
    );
    assert_eq!(res.score.score, 100.0);
    assert_eq!(res.score.classification_reason, "");
}

#[test]
fn weights_configured_and_shared() {
    // a: 60 % configured, b and c share the remaining 40 %: 60·0 + 20·100 + 20·100.
    let res = scored(
        &[
            ("x", &["a"], json!({}), 'H'),
            ("y", &["b"], json!({}), 'P'),
            ("z", &["c"], json!({}), 'P'),
        ],
        json!({"a": 60}),
    );
    assert_eq!(res.score.score, 40.0);
    // A configured weight of a group without results is lost: 50·100 only.
    let res = scored(
        &[("y", &["b"], json!({}), 'P')],
        json!({"b": 50, "gone": 50}),
    );
    assert_eq!(res.score.score, 50.0);
    // Weights are not normalised: 30 + 30 = 60 for two passing groups.
    let res = scored(
        &[("y", &["b"], json!({}), 'P'), ("z", &["c"], json!({}), 'P')],
        json!({"b": 30, "c": "30"}),
    );
    assert_eq!(res.score.score, 60.0);
}

#[test]
fn nodata_group_counts_as_full_score() {
    // Group b only has an Error: no data, effective score 100 × 50 %.
    let res = scored(
        &[("x", &["a"], json!({}), 'H'), ("y", &["b"], json!({}), 'E')],
        json!({}),
    );
    assert_eq!(
        res.group_scores.iter().map(|g| g.score).collect::<Vec<_>>(),
        vec![0.0, 0.0]
    );
    assert_eq!(res.score.score, 50.0);
}

#[test]
fn metrics_without_groups_do_not_score() {
    let res = scored(
        &[("x", &[], json!({}), 'H'), ("y", &["b"], json!({}), 'P')],
        json!({}),
    );
    assert_eq!(res.group_scores.len(), 1);
    assert_eq!(res.score.score, 100.0);
    let res = scored(&[("x", &[], json!({}), 'P')], json!({}));
    assert_eq!(res.score.score, 0.0);
    let empty = run(&config(vec![], json!({})), &[]);
    assert_eq!(
        (empty.score.score, empty.score.classification),
        (0.0, ScoreClassification::Fail)
    );
}

#[test]
fn score_classification_thresholds() {
    let res = scored(
        &[("a", &["g"], json!({}), 'P'), ("b", &["g"], json!({}), 'H')],
        json!({}),
    );
    let c = config(
        vec![
            metric("a", &["g"], json!({})),
            metric("b", &["g"], json!({})),
        ],
        json!({}),
    );
    let pairs = [pair_for("a", 'P'), pair_for("b", 'H')];
    assert_eq!(res.score.score, 50.0);
    let with = |pass, marginal| {
        judge(
            &c,
            &pairs,
            &ScoreThresholds { pass, marginal },
            &JudgeOptions::default(),
        )
        .unwrap()
        .score
        .classification
    };
    assert_eq!(with(50.0, 25.0), ScoreClassification::Pass);
    assert_eq!(with(75.0, 50.0), ScoreClassification::Marginal);
    assert_eq!(with(75.0, 50.01), ScoreClassification::Fail);
}

#[test]
fn table_lists_metrics_and_score() {
    let res = scored(
        &[
            ("a", &["g"], json!({}), 'P'),
            ("b", &["g"], json!({"critical": true}), 'H'),
        ],
        json!({}),
    );
    let t = render_table(&res);
    assert!(t.starts_with("METRIC"), "{t}");
    assert!(t.contains("High (critical)"), "{t}");
    assert!(
        t.contains("The Canary and Baseline data are identical"),
        "{t}"
    );
    assert!(
        t.contains(
            "Score: 0 (Fail) - Canary Failed: The metric b was classified as High (Critical)"
        ),
        "{t}"
    );
}

#[test]
fn parallel_judgement_matches_sequential() {
    // 8 metrics × 2 × 5000 points is above the threshold for threads; judging each
    // pair alone is below it.
    let metrics: Vec<Value> = (0..8)
        .map(|i| metric(&format!("m{i}"), &["g"], json!({})))
        .collect();
    let c = config(metrics, json!({}));
    let pairs: Vec<MetricSetPair> = (0..8)
        .map(|i| {
            pair(
                &format!("m{i}"),
                normal(5000, 10.0 + i as f64 * 0.02, 1.0, 100 + i),
                normal(5000, 10.0, 1.0, 200 + i),
            )
        })
        .collect();
    let all = run(&c, &pairs);
    for (i, p) in pairs.iter().enumerate() {
        let alone = run(&c, std::slice::from_ref(p));
        assert_eq!(all.results[i], alone.results[0]);
    }
    assert!(
        all.results
            .iter()
            .any(|r| r.classification == Classification::High)
    );
}
