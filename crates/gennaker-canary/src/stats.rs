//! Descriptive statistics with Apache commons-math's exact formulas, which Kayenta
//! uses: the mean carries commons-math's second-pass correction and the variance is
//! the bias-corrected two-pass estimate. Reproducing the formulas (not just the
//! maths) keeps ratios bit-identical near the effect-size gates.

use serde::{Deserialize, Serialize};

/// `stats` of one side in a metric result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Smallest value (0 when empty).
    #[serde(with = "crate::jsonf64")]
    pub min: f64,
    /// Largest value (0 when empty).
    #[serde(with = "crate::jsonf64")]
    pub max: f64,
    /// Mean (0 when empty).
    #[serde(with = "crate::jsonf64")]
    pub mean: f64,
    /// Sample standard deviation, n − 1 denominator (0 when empty or a single value).
    #[serde(with = "crate::jsonf64")]
    pub std: f64,
    /// Number of values after NaN handling and outlier removal.
    pub count: usize,
}

impl Stats {
    /// Summarises `values` (already transformed by the NaN strategy and outliers).
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for &v in values {
            // commons-math's Min/Max propagate NaN only when it is first; the judge
            // never passes NaN here, so plain comparisons suffice.
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        Self {
            min,
            max,
            mean: mean(values),
            std: variance(values).sqrt(),
            count: values.len(),
        }
    }
}

/// commons-math `Mean.evaluate`: `x̄ + Σ(xᵢ − x̄)/n` with `x̄ = Σxᵢ/n`. NaN if empty.
pub(crate) fn mean(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let xbar = values.iter().sum::<f64>() / n;
    let correction: f64 = values.iter().map(|v| v - xbar).sum();
    xbar + correction / n
}

/// commons-math `Variance.evaluate` (bias-corrected): 0 for one value.
fn variance(values: &[f64]) -> f64 {
    let n = values.len();
    if n <= 1 {
        return 0.0;
    }
    let m = mean(values);
    let (mut accum, mut accum2) = (0.0, 0.0);
    for &v in values {
        let dev = v - m;
        accum += dev * dev;
        accum2 += dev;
    }
    let n = n as f64;
    (accum - accum2 * accum2 / n) / (n - 1.0)
}

/// R-7 percentile (commons-math `EstimationType.R_7`, NumPy's default) of a
/// sorted slice, `p` in percent. NaN when empty.
pub(crate) fn percentile_r7(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    let (Some(&first), Some(&last)) = (sorted.first(), sorted.last()) else {
        return f64::NAN;
    };
    let q = p / 100.0;
    let pos = if q == 1.0 {
        n as f64
    } else {
        q * (n as f64 - 1.0) + 1.0
    };
    if pos < 1.0 {
        return first;
    }
    if pos >= n as f64 {
        return last;
    }
    let fpos = pos.floor();
    let i = fpos as usize; // 1-based index of the lower neighbour, 1 ≤ i < n
    let lower = sorted[i - 1];
    let upper = sorted[i];
    lower + (pos - fpos) * (upper - lower)
}

/// Mean ratio `mean(x)/mean(y)`, NaN when either mean is 0 (Kayenta's rule).
pub(crate) fn mean_ratio(experiment: &[f64], control: &[f64]) -> f64 {
    let (mx, my) = (mean(experiment), mean(control));
    if mx == 0.0 || my == 0.0 {
        f64::NAN
    } else {
        mx / my
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_uses_sample_std() {
        let s = Stats::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!((s.min, s.max, s.mean, s.count), (2.0, 9.0, 5.0, 8));
        assert!((s.std - (32.0_f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(Stats::of(&[]), Stats::default());
        assert_eq!(Stats::of(&[3.0]).std, 0.0);
    }

    #[test]
    fn r7_matches_numpy() {
        let s = [1.0, 2.0, 3.0, 4.0, 10.0];
        // numpy.percentile(s, [1, 25, 50, 75, 99, 100])
        assert!((percentile_r7(&s, 1.0) - 1.04).abs() < 1e-12);
        assert_eq!(percentile_r7(&s, 25.0), 2.0);
        assert_eq!(percentile_r7(&s, 50.0), 3.0);
        assert_eq!(percentile_r7(&s, 75.0), 4.0);
        assert!((percentile_r7(&s, 99.0) - 9.76).abs() < 1e-12);
        assert_eq!(percentile_r7(&s, 100.0), 10.0);
        assert!(percentile_r7(&[], 50.0).is_nan());
        assert_eq!(percentile_r7(&[7.0], 25.0), 7.0);
    }

    #[test]
    fn ratio_is_nan_for_zero_means() {
        assert!(mean_ratio(&[1.0], &[0.0]).is_nan());
        assert!(mean_ratio(&[0.0], &[1.0]).is_nan());
        assert_eq!(mean_ratio(&[3.0], &[2.0]), 1.5);
    }
}
