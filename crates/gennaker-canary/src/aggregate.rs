//! The multi-judgement logic of Orca's `kayentaCanary` stage (and of Kayenta's
//! standalone canary analysis), as pure functions: which windows to judge, when to
//! stop early, and the stage's verdict (reference §4).

/// Timing of a canary analysis, in seconds.
///
/// Orca counts in whole minutes (`Duration.toMinutes()`); Gennaker counts in seconds so
/// that fractional minutes (`canaryAnalysisIntervalMins: "0.25"`) work. For settings in
/// whole minutes the two give the same judgements and windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanaryTiming {
    /// Total analysis time (`lifetimeDuration`, or end − start with an end time).
    pub lifetime_secs: u64,
    /// `canaryAnalysisIntervalMins`; `None`, 0 or more than the lifetime means one
    /// judgement over the whole lifetime.
    pub interval_secs: Option<u64>,
    /// `beginCanaryAnalysisAfterMins`: warm-up before the first window (real time only).
    pub begin_after_secs: u64,
    /// `lookbackMins`: > 0 gives sliding windows of this length instead of growing ones.
    pub lookback_secs: u64,
    /// `baselineAnalysisOffsetInMins`: the control window is shifted back by this much.
    pub baseline_offset_secs: u64,
    /// Whether the scope has an end time (historical analysis: no waits).
    pub has_end_time: bool,
}

impl CanaryTiming {
    /// The interval actually used: the configured one, or the lifetime when it is
    /// unset, 0 or longer than the lifetime (Orca's rule).
    pub fn effective_interval_secs(&self) -> u64 {
        match self.interval_secs {
            Some(i) if i > 0 && i <= self.lifetime_secs => i,
            _ => self.lifetime_secs,
        }
    }

    /// How many judgements the analysis makes: `⌊lifetime / interval⌋`.
    pub fn judgement_count(&self) -> u64 {
        match self.effective_interval_secs() {
            0 => 0,
            interval => self.lifetime_secs / interval,
        }
    }
}

/// One judgement to run. Times are seconds relative to the analysis start (the
/// stage start in real time, the scope's start time otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// 1-based judgement number.
    pub index: u64,
    /// Real-time wait before this judgement (0 for historical analysis).
    pub wait_before_secs: u64,
    /// Start of the experiment window.
    pub start_secs: i64,
    /// End of the experiment window.
    pub end_secs: i64,
    /// Start of the control window (start shifted back by the baseline offset).
    pub control_start_secs: i64,
    /// End of the control window.
    pub control_end_secs: i64,
}

/// Plans the judgements: `⌊lifetime / interval⌋` windows ending at
/// `start + warm-up + i·interval` (no warm-up with an end time), each growing from
/// the start or, with a lookback, covering only the last `lookback` seconds.
pub fn plan_judgements(t: &CanaryTiming) -> Vec<Window> {
    let interval = t.effective_interval_secs();
    let count = t.judgement_count();
    let signed = |secs: u64| i64::try_from(secs).unwrap_or(i64::MAX);
    let warmup = if t.has_end_time {
        0
    } else {
        signed(t.begin_after_secs)
    };
    let offset = signed(t.baseline_offset_secs);
    (1..=count)
        .map(|i| {
            let end = warmup.saturating_add(signed(i.saturating_mul(interval)));
            let start = if t.lookback_secs > 0 {
                end.saturating_sub(signed(t.lookback_secs))
            } else {
                warmup
            };
            Window {
                index: i,
                wait_before_secs: if t.has_end_time { 0 } else { interval },
                start_secs: start,
                end_secs: end,
                control_start_secs: start.saturating_sub(offset),
                control_end_secs: end.saturating_sub(offset),
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
