//! The aggregation of judgements over a canary's lifetime: how many, their windows, early
//! stops and the final verdict (reference §4).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_canary::aggregate::{
    CanaryTiming, StageOutcome, StageThresholds, Window, aggregate, plan_judgements, stops_early,
};

/// Settings in whole minutes, as Orca reads them.
fn timing(lifetime: u64, interval: Option<u64>) -> CanaryTiming {
    CanaryTiming {
        lifetime_secs: lifetime * 60,
        interval_secs: interval.map(|i| i * 60),
        begin_after_secs: 0,
        lookback_secs: 0,
        baseline_offset_secs: 0,
        has_end_time: false,
    }
}

/// Window bounds in minutes.
fn minutes(w: &Window) -> (i64, i64) {
    (w.start_secs / 60, w.end_secs / 60)
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
    t.begin_after_secs = 600;
    let w = plan_judgements(&t);
    assert_eq!(
        w.iter().map(minutes).collect::<Vec<_>>(),
        vec![(10, 30), (10, 50), (10, 70)]
    );
    assert!(w.iter().all(|w| w.wait_before_secs == 1200));
    t.lookback_secs = 900;
    let w = plan_judgements(&t);
    assert_eq!(
        w.iter().map(minutes).collect::<Vec<_>>(),
        vec![(15, 30), (35, 50), (55, 70)]
    );
}

#[test]
fn historical_windows_have_no_waits_and_baseline_offset_shifts_control() {
    let mut t = timing(60, Some(30));
    t.has_end_time = true;
    t.begin_after_secs = 600;
    t.baseline_offset_secs = 3600;
    let w = plan_judgements(&t);
    assert_eq!(w.len(), 2);
    assert_eq!(
        (
            w[1].index,
            w[1].wait_before_secs,
            w[1].start_secs,
            w[1].end_secs
        ),
        (2, 0, 0, 3600)
    );
    assert_eq!((w[1].control_start_secs, w[1].control_end_secs), (-3600, 0));
}

#[test]
fn fractional_minutes_give_second_windows() {
    // lifetime 1 min, interval 0.25 min (15 s): four judgements 15 s apart.
    let t = CanaryTiming {
        lifetime_secs: 60,
        interval_secs: Some(15),
        begin_after_secs: 0,
        lookback_secs: 0,
        baseline_offset_secs: 0,
        has_end_time: false,
    };
    let w = plan_judgements(&t);
    assert_eq!(
        w.iter()
            .map(|w| (w.start_secs, w.end_secs))
            .collect::<Vec<_>>(),
        vec![(0, 15), (0, 30), (0, 45), (0, 60)]
    );
    assert!(w.iter().all(|w| w.wait_before_secs == 15));
    // 70 s with a 30 s interval: ⌊70/30⌋ = 2, as Orca's whole-minute floor would be.
    let t = CanaryTiming {
        lifetime_secs: 70,
        interval_secs: Some(30),
        ..t
    };
    assert_eq!(t.judgement_count(), 2);
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
