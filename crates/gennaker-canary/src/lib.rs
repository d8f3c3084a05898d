//! Canary analysis: Kayenta's NetflixACAJudge, reimplemented.
//!
//! [`judge`] compares each metric's experiment (canary) samples with its control
//! (baseline) samples exactly as Kayenta does — NaN strategy, optional IQR outlier
//! removal, the identical/constant short-cuts, the Mann-Whitney confidence interval
//! and Hodges–Lehmann estimate of R's `wilcox.test` (see [`mannwhitney`]), effect
//! sizes, direction and critical gates — then scores the results by group weights
//! and classifies the score against the request's thresholds. [`aggregate`] holds
//! the multi-judgement logic of the `kayentaCanary` stage, [`stage`] the stage itself
//! (run by Gennaker's engine, reading metrics through [`MetricSources`] and canary
//! configs through a [`CanaryConfigLookup`]), and [`render_table`] a plain-text view. [`validate_config`] checks a config before it
//! is stored.
//!
//! Differences from Kayenta, all deliberate:
//! * the noise Kayenta adds to constant series is seeded from the data (see the
//!   `noise` module), so a judgement is reproducible;
//! * each result carries the interval and estimate (`interval`);
//! * [`JudgeOptions`] offers improvements that are off by default.

pub mod aggregate;
mod classifier;
pub mod config;
pub mod input;
mod jsonf64;
pub mod lookup;
pub mod mannwhitney;
mod memory;
mod noise;
mod outliers;
mod render;
pub mod report;
pub mod result;
mod scorer;
pub mod settings;
mod shape;
pub mod source;
pub mod stage;
mod stats;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod validate;
mod zeroin;

pub use config::{CanaryConfig, CanaryMetricConfig, ConfigError, MetricSettings};
pub use input::{MetricSetPair, PairValues};
pub use lookup::{CanaryConfigLookup, LookupError, StoreCanaryConfigs, StoredCanaryConfig};
pub use memory::InMemoryCanaryConfigs;
pub use render::render_table;
pub use report::{CanaryReport, render_html, render_html_body};
pub use result::{Classification, JudgeResult, MetricResult, ScoreClassification};
pub use scorer::ScoreThresholds;
pub use settings::{CanaryAccountSettings, CanarySettings, CanarySettingsError};
pub use shape::ShapeCheck;
pub use source::{MetricSet, MetricSource, MetricSources, ScopeQuery, SourceError};
pub use stats::Stats;
pub use validate::validate_config;

/// Optional improvements over Kayenta. All are off by default, so the default
/// judgement is Kayenta's.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct JudgeOptions {
    /// Flag metrics whose distribution changed shape although the location test
    /// passed (spinnaker/spinnaker#6278, kayenta#780: bimodal or spread
    /// regressions). The result gets High/Low with a reason naming the shape test.
    pub shape_check: Option<ShapeCheck>,
    /// Attach a warning to results with fewer points than this on either side after
    /// NaN handling and outlier removal: too few to judge reliably (Kayenta's
    /// standalone analysis warns below 50 control points). Does not change the
    /// classification.
    pub min_samples: Option<usize>,
}

/// Why a whole judgement failed (Kayenta throws before its per-metric error
/// handling in these cases).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JudgeError {
    /// A metric-set pair names a metric the configuration does not have.
    #[error("could not find metric config for {0:?}")]
    UnknownMetric(String),
    /// A metric setting has the wrong type.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Judges metric-set pairs against a canary configuration.
///
/// Per-metric failures become `Error` results; only configuration problems fail
/// the whole judgement. Large inputs are classified on scoped threads (one per
/// available core); the result is the same as sequentially. CPU-bound: call it
/// from a blocking context (e.g. `spawn_blocking`) in async code.
pub fn judge(
    config: &CanaryConfig,
    pairs: &[MetricSetPair],
    thresholds: &ScoreThresholds,
    options: &JudgeOptions,
) -> Result<JudgeResult, JudgeError> {
    // Everything that can fail the whole judgement is checked before any work.
    let mut jobs = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let metric = config
            .metrics
            .iter()
            .find(|m| m.name == pair.name)
            .ok_or_else(|| JudgeError::UnknownMetric(pair.name.clone()))?;
        jobs.push((pair, metric.groups.as_slice(), metric.settings()?));
    }
    let results = classify_all(&jobs, options);
    let empty = std::collections::BTreeMap::new();
    let weights = config
        .classifier
        .as_ref()
        .map_or(&empty, |c| &c.group_weights);
    let (group_scores, score) = scorer::score(&results, weights, thresholds);
    Ok(JudgeResult {
        judge_name: result::JUDGE_NAME.to_owned(),
        results,
        group_scores,
        score,
    })
}

/// Below this many points in total, spreading metrics over threads costs more
/// than it saves.
const PARALLEL_MIN_POINTS: usize = 50_000;

/// Classifies every pair, on up to `available_parallelism` scoped threads when the
/// input is large: metrics are independent and the judge is CPU-bound. Results
/// keep the input order and do not depend on the number of threads.
fn classify_all(
    jobs: &[(&MetricSetPair, &[String], MetricSettings)],
    options: &JudgeOptions,
) -> Vec<MetricResult> {
    let classify = |(pair, groups, settings): &(&MetricSetPair, &[String], MetricSettings)| {
        classifier::classify(pair, groups, settings, options)
    };
    let points: usize = jobs
        .iter()
        .map(|(p, _, _)| p.values.control.len() + p.values.experiment.len())
        .sum();
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(jobs.len());
    if threads <= 1 || points < PARALLEL_MIN_POINTS {
        return jobs.iter().map(classify).collect();
    }
    // Interleaved assignment balances metrics of different sizes.
    let mut slots: Vec<Option<MetricResult>> = vec![None; jobs.len()];
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    jobs.iter()
                        .enumerate()
                        .skip(t)
                        .step_by(threads)
                        .map(|(i, job)| (i, classify(job)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for worker in workers {
            // A worker only panics if classification has a bug; re-raise it here.
            match worker.join() {
                Ok(done) => done.into_iter().for_each(|(i, r)| slots[i] = Some(r)),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    slots.into_iter().flatten().collect()
}
