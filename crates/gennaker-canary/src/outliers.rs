//! Kayenta's `IQRDetector(factor, reduceSensitivity = true)`: drops values strictly
//! outside `[min(P1, Q1 − k·IQR), max(P99, Q3 + k·IQR)]` (R-7 percentiles). The
//! P1/P99 widening is what `reduceSensitivity` means: never flag more than the
//! outer percent on either side. Off unless a metric sets `outliers.strategy` to
//! "remove" (kayenta#621).

use crate::stats::percentile_r7;

/// Returns `values` without the outliers, in their original order.
pub(crate) fn remove_outliers(values: &[f64], factor: f64) -> Vec<f64> {
    if values.is_empty() {
        return Vec::new();
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let q1 = percentile_r7(&sorted, 25.0);
    let q3 = percentile_r7(&sorted, 75.0);
    let iqr = q3 - q1;
    let lower = percentile_r7(&sorted, 1.0).min(q1 - factor * iqr);
    let upper = percentile_r7(&sorted, 99.0).max(q3 + factor * iqr);
    values
        .iter()
        .copied()
        .filter(|&v| !(v < lower || v > upper))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_far_values_only() {
        let mut v: Vec<f64> = (0..100).map(|i| 10.0 + (i % 7) as f64).collect();
        v.push(1000.0);
        v.push(-1000.0);
        let kept = remove_outliers(&v, 3.0);
        assert_eq!(kept.len(), 100);
        assert!(kept.iter().all(|&x| (10.0..=16.0).contains(&x)));
    }

    #[test]
    fn percentile_widening_keeps_small_samples() {
        // Q1 = Q3 = 0 so the fence is [0, 0], but P99 widens it to keep the 5.
        let v = [0.0, 0.0, 0.0, 0.0, 5.0];
        assert_eq!(remove_outliers(&v, 3.0), vec![0.0, 0.0, 0.0, 0.0]);
        let v = [0.0, 0.0, 0.0, 5.0, 5.0];
        assert_eq!(remove_outliers(&v, 3.0).len(), 5);
        assert!(remove_outliers(&[], 3.0).is_empty());
    }
}
