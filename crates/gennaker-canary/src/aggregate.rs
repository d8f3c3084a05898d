//! The multi-judgement logic of Orca's `kayentaCanary` stage (and of Kayenta's
//! standalone canary analysis), as pure functions: which windows to judge, when to
//! stop early, and the stage's verdict (reference §4).

/// Timing of a canary analysis, in minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanaryTiming {
    /// Total analysis time (`lifetimeDuration`, or end − start with an end time).
    pub lifetime_mins: u64,
    /// `canaryAnalysisIntervalMins`; `None`, 0 or more than the lifetime means one
    /// judgement over the whole lifetime.
    pub interval_mins: Option<u64>,
    /// `beginCanaryAnalysisAfterMins`: warm-up before the first window (real time only).
    pub begin_after_mins: u64,
    /// `lookbackMins`: > 0 gives sliding windows of this length instead of growing ones.
    pub lookback_mins: u64,
    /// `baselineAnalysisOffsetInMins`: the control window is shifted back by this much.
    pub baseline_offset_mins: u64,
    /// Whether the scope has an end time (historical analysis: no waits).
    pub has_end_time: bool,
}

/// One judgement to run. Times are minutes relative to the analysis start (the
/// stage start in real time, the scope's start time otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// 1-based judgement number.
    pub index: u64,
    /// Real-time wait before this judgement (0 for historical analysis).
    pub wait_before_mins: u64,
    /// Start of the experiment window.
    pub start_min: i64,
    /// End of the experiment window.
    pub end_min: i64,
    /// Start of the control window (start shifted back by the baseline offset).
    pub control_start_min: i64,
    /// End of the control window.
    pub control_end_min: i64,
}

/// Plans the judgements: `⌊lifetime / interval⌋` windows ending at
/// `start + warm-up + i·interval` (no warm-up with an end time), each growing from
/// the start or, with a lookback, covering only the last `lookback` minutes.
pub fn plan_judgements(t: &CanaryTiming) -> Vec<Window> {
    let interval = match t.interval_mins {
        Some(i) if i > 0 && i <= t.lifetime_mins => i,
        _ => t.lifetime_mins,
    };
    if interval == 0 {
        return Vec::new();
    }
    let count = t.lifetime_mins / interval;
    let warmup = if t.has_end_time {
        0
    } else {
        t.begin_after_mins as i64
    };
    let offset = t.baseline_offset_mins as i64;
    (1..=count)
        .map(|i| {
            let end = warmup + (i * interval) as i64;
            let start = if t.lookback_mins > 0 {
                end - t.lookback_mins as i64
            } else {
                warmup
            };
            Window {
                index: i,
                wait_before_mins: if t.has_end_time { 0 } else { interval },
                start_min: start,
                end_min: end,
                control_start_min: start - offset,
                control_end_min: end - offset,
            }
        })
        .collect()
}

/// The stage's thresholds; either may be unset.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageThresholds {
    /// Minimum final score to pass.
    pub pass: Option<f64>,
    /// A score at or below this stops the stage and fails it.
    pub marginal: Option<f64>,
}

/// Outcome of the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageOutcome {
    /// The canary passed.
    Succeeded,
    /// The canary failed (Orca: TERMINAL).
    Failed,
}

/// The verdict of the stage over its judgements.
#[derive(Debug, Clone, PartialEq)]
pub struct StageVerdict {
    /// Pass or fail.
    pub outcome: StageOutcome,
    /// Judgements that counted (fewer than given after an early stop).
    pub judgements_used: usize,
    /// Whether a score ≤ marginal stopped the stage before its last judgement.
    pub stopped_early: bool,
    /// The last counted score.
    pub final_score: Option<f64>,
    /// Human-readable explanation.
    pub reason: String,
}

/// Whether a judgement's score ends the stage at once (score ≤ marginal).
pub fn stops_early(score: f64, t: &StageThresholds) -> bool {
    t.marginal.is_some_and(|m| score <= m)
}

/// Replays the stage over the scores of its judgements, in order: stop at the
/// first score ≤ marginal, then judge the last score counted. Note the off-by-one
/// with the judge: a score equal to `marginal` is "Marginal" there but fails here.
pub fn aggregate(scores: &[f64], t: &StageThresholds) -> StageVerdict {
    let used = scores
        .iter()
        .position(|&s| stops_early(s, t))
        .map_or(scores.len(), |i| i + 1);
    let stopped_early = used < scores.len();
    let Some(&last) = scores[..used].last() else {
        return StageVerdict {
            outcome: StageOutcome::Failed,
            judgements_used: 0,
            stopped_early: false,
            final_score: None,
            reason: "no canary judgement ran".to_owned(),
        };
    };
    let (outcome, reason) = match (t.pass, t.marginal) {
        (None, None) => (StageOutcome::Succeeded, "no thresholds set".to_owned()),
        (_, Some(m)) if last <= m => (
            StageOutcome::Failed,
            format!("score {last} is at or below marginal {m}"),
        ),
        (None, _) => (StageOutcome::Succeeded, "no pass threshold set".to_owned()),
        (Some(p), _) if last < p => (
            StageOutcome::Failed,
            format!("score {last} is below pass {p}"),
        ),
        (Some(p), _) => (
            StageOutcome::Succeeded,
            format!("score {last} reached pass {p}"),
        ),
    };
    StageVerdict {
        outcome,
        judgements_used: used,
        stopped_early,
        final_score: Some(last),
        reason,
    }
}
