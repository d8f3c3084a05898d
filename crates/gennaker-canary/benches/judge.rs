//! Judges 50 metrics × 10,000 points per side and prints one JSON line:
//! `{"bench":"judge_50x10000","runs":N,"mean_ms":…,"p50_ms":…,"max_ms":…}`.
//!
//! Run with `cargo bench -p gennaker-canary --bench judge`. The data are
//! deterministic: continuous latency-like metrics (some shifted by a few percent),
//! discrete counters with heavy ties, and mostly-zero error rates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use gennaker_canary::{
    CanaryConfig, JudgeOptions, MetricSetPair, PairValues, ScoreThresholds, judge,
};
use serde_json::json;
use std::time::Instant;

const METRICS: usize = 50;
const POINTS: usize = 10_000;
const RUNS: usize = 20;

struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }
}

fn series(rng: &mut Rng, kind: usize, shift: f64) -> Vec<f64> {
    (0..POINTS)
        .map(|_| match kind {
            0 => (4.0 + 0.3 * rng.normal()).exp() * (1.0 + shift),
            1 => (20.0 * (1.0 + shift) + 4.0 * rng.normal()).round().max(0.0),
            _ => {
                if rng.uniform() < 0.05 * (1.0 + 10.0 * shift) {
                    (1.0 + 3.0 * rng.uniform()).floor()
                } else {
                    0.0
                }
            }
        })
        .collect()
}

fn main() {
    let mut rng = Rng(2024);
    let metrics: Vec<_> = (0..METRICS)
        .map(|i| {
            json!({"name": format!("m{i}"), "groups": [format!("g{}", i % 5)],
                        "analysisConfigurations": {"canary": {}}})
        })
        .collect();
    let config: CanaryConfig = serde_json::from_value(json!({"metrics": metrics})).unwrap();
    let pairs: Vec<MetricSetPair> = (0..METRICS)
        .map(|i| {
            let kind = if i < 30 {
                0
            } else if i < 40 {
                1
            } else {
                2
            };
            let shift = [0.0, 0.0, 0.02, 0.05, -0.03][i % 5];
            MetricSetPair {
                name: format!("m{i}"),
                values: PairValues {
                    control: series(&mut rng, kind, 0.0),
                    experiment: series(&mut rng, kind, shift),
                },
                ..MetricSetPair::default()
            }
        })
        .collect();
    let thresholds = ScoreThresholds::default();
    let options = JudgeOptions::default();
    for _ in 0..2 {
        judge(&config, &pairs, &thresholds, &options).unwrap();
    }
    let mut times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let r = judge(&config, &pairs, &thresholds, &options).unwrap();
            let ms = start.elapsed().as_secs_f64() * 1e3;
            std::hint::black_box(r);
            ms
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "{}",
        json!({"bench": "judge_50x10000", "runs": RUNS, "mean_ms": (mean * 100.0).round() / 100.0,
               "p50_ms": (times[RUNS / 2] * 100.0).round() / 100.0,
               "max_ms": (times[RUNS - 1] * 100.0).round() / 100.0})
    );
}
