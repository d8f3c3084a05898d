//! The aggregation of judgements over a canary's lifetime: how many, their windows, early
//! stops and the final verdict (reference §4).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_canary::aggregate::{
    CanaryTiming, StageOutcome, StageThresholds, aggregate, plan_judgements, stops_early,
};

fn timing(lifetime: u64, interval: Option<u64>) -> CanaryTiming {
    CanaryTiming {
        lifetime_mins: lifetime,
        interval_mins: interval,
        begin_after_mins: 0,
        lookback_mins: 0,
        baseline_offset_mins: 0,
        has_end_time: false,
    }
}

#[test]
fn number_of_judgements() {
    assert_eq!(plan_judgements(&timing(60, Some(15))).len(), 4);
    assert_eq!(plan_judgements(&timing(50, Some(15))).len(), 3, "floor");
    assert_eq!(plan_judgements(&timing(60, None)).len(), 1);
    assert_eq!(plan_judgements(&timing(60, Some(0))).len(), 1);
    assert_eq!(
        plan_judgements(&timing(60, Some(90))).len(),
        1,
        "too big → lifetime"
    );
    assert!(plan_judgements(&timing(0, None)).is_empty());
}

#[test]
fn growing_and_sliding_windows() {
    let mut t = timing(60, Some(20));
    t.begin_after_mins = 10;
    let w = plan_judgements(&t);
    assert_eq!(
        w.iter()
            .map(|w| (w.start_min, w.end_min))
            .collect::<Vec<_>>(),
        vec![(10, 30), (10, 50), (10, 70)]
    );
    assert!(w.iter().all(|w| w.wait_before_mins == 20));
    t.lookback_mins = 15;
    let w = plan_judgements(&t);
    assert_eq!(
        w.iter()
            .map(|w| (w.start_min, w.end_min))
            .collect::<Vec<_>>(),
        vec![(15, 30), (35, 50), (55, 70)]
    );
}

#[test]
fn historical_windows_have_no_waits_and_baseline_offset_shifts_control() {
    let mut t = timing(60, Some(30));
    t.has_end_time = true;
    t.begin_after_mins = 10;
    t.baseline_offset_mins = 60;
    let w = plan_judgements(&t);
    assert_eq!(w.len(), 2);
    assert_eq!(
        (
            w[1].index,
            w[1].wait_before_mins,
            w[1].start_min,
            w[1].end_min
        ),
        (2, 0, 0, 60)
    );
    assert_eq!((w[1].control_start_min, w[1].control_end_min), (-60, 0));
}

#[test]
fn early_stop_and_final_verdict() {
    let t = StageThresholds {
        pass: Some(75.0),
        marginal: Some(50.0),
    };
    let v = aggregate(&[90.0, 40.0, 100.0], &t);
    assert_eq!(
        (v.outcome, v.judgements_used, v.stopped_early, v.final_score),
        (StageOutcome::Failed, 2, true, Some(40.0))
    );
    // The last score decides, not the average.
    let v = aggregate(&[60.0, 70.0, 80.0], &t);
    assert_eq!(
        (v.outcome, v.judgements_used, v.stopped_early),
        (StageOutcome::Succeeded, 3, false)
    );
    let v = aggregate(&[90.0, 60.0], &t);
    assert_eq!(v.outcome, StageOutcome::Failed, "60 < pass");
    // = marginal fails the stage (the judge would call it Marginal).
    assert!(stops_early(50.0, &t));
    assert_eq!(aggregate(&[50.0], &t).outcome, StageOutcome::Failed);
    assert_eq!(aggregate(&[75.0], &t).outcome, StageOutcome::Succeeded);
}

#[test]
fn missing_thresholds() {
    let none = StageThresholds::default();
    assert_eq!(aggregate(&[0.0], &none).outcome, StageOutcome::Succeeded);
    let marginal_only = StageThresholds {
        pass: None,
        marginal: Some(50.0),
    };
    assert_eq!(
        aggregate(&[51.0], &marginal_only).outcome,
        StageOutcome::Succeeded
    );
    assert_eq!(
        aggregate(&[50.0], &marginal_only).outcome,
        StageOutcome::Failed
    );
    let pass_only = StageThresholds {
        pass: Some(75.0),
        marginal: None,
    };
    let v = aggregate(&[10.0, 80.0], &pass_only);
    assert_eq!((v.outcome, v.judgements_used), (StageOutcome::Succeeded, 2));
    assert_eq!(aggregate(&[74.9], &pass_only).outcome, StageOutcome::Failed);
    assert_eq!(aggregate(&[], &pass_only).outcome, StageOutcome::Failed);
}
