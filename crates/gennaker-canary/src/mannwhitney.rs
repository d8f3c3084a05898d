//! The Mann-Whitney (Wilcoxon rank-sum) confidence interval and Hodges–Lehmann
//! estimate of the shift `experiment − control`, as computed by R's
//! `wilcox.test(x, y, conf.int = TRUE, exact = FALSE, correct = TRUE)` and by
//! Kayenta's Scala port of it.
//!
//! No p-value is computed: the judge only uses the interval and the estimate. Both
//! are found by inverting the normal approximation of the rank-sum statistic
//! `W(d)` (with tie and continuity correction) with R's `zeroin` at an absolute
//! tolerance of 1e-4.
//!
//! # Speed
//! R re-ranks the pooled sample for every evaluation of `W(d)`, which costs
//! `O(n log n)` per step. Here both samples are sorted once (radix sort) and
//! compressed into runs of equal values; `W(d)` then needs one merge-like pass in
//! `O(runs)`: the rank sum of `x − d` equals the number of pairs `x_i − d > y_j`,
//! plus half the number of equal pairs, plus a constant. The tie correction
//! `Σ(t³ − t)` depends on `d`: a run of `x − d` that equals a run of `y` adds
//! `3ab(a + b)` to the runs' own terms, which the fast pass accounts for; rounding
//! of `x_i − d` can also merge neighbouring runs of `x`, and then the exact pass
//! regroups the merged sequence like R's `table(rank(…))`. All counts are integers
//! or halves well below 2^53, so both passes produce bit-identical `f64` values to
//! R's, and the `zeroin` iterates are R's.

use crate::zeroin::zeroin;
use statrs::distribution::{ContinuousCDF, Normal};

/// R's and Kayenta's absolute tolerance for the root finder.
const ROOT_TOLERANCE: f64 = 1e-4;
/// R's default `maxiter` for `uniroot`.
const ROOT_MAX_ITER: u32 = 1000;

/// Which implementation's estimate to reproduce; the interval is the same in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Kayenta's port: the Hodges–Lehmann estimate is the root of the same
    /// continuity-corrected `W(d)` as the interval, and an empty search range
    /// (both samples constant) is not an error.
    Kayenta,
    /// R 4.x's `wilcox.test`: the estimate is the root of `W(d)` *without*
    /// continuity correction (`correct <- FALSE` before the estimate), and an empty
    /// search range fails like `uniroot` ("lower < upper is not fulfilled").
    R,
}

/// A confidence interval for the location shift `experiment − control` and its
/// Hodges–Lehmann point estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShiftInterval {
    /// Lower end of the confidence interval.
    pub lower: f64,
    /// Upper end of the confidence interval. With the solver's 1e-4 absolute
    /// resolution it can be below `lower` for metrics of magnitude ≲ 1e-3.
    pub upper: f64,
    /// Hodges–Lehmann estimate of the shift.
    pub estimate: f64,
}

/// Why no interval could be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MannWhitneyError {
    /// One of the samples is empty.
    #[error("not enough observations: both samples need at least one value")]
    EmptySample,
    /// Every value of the pooled sample is tied, so the statistic has no variance.
    #[error("cannot compute confidence interval when all observations are tied")]
    AllTied,
    /// Both samples are constant, so the search range for the estimate is a point
    /// (R's `uniroot` refuses it; only reported by [`Flavor::R`]).
    #[error("lower < upper is not fulfilled: both samples are constant")]
    EmptyRange,
    /// The confidence level is not strictly between 0 and 1.
    #[error("confidence level must be strictly between 0 and 1, got {0}")]
    ConfidenceLevel(f64),
}

/// Computes the two-sided confidence interval at `conf_level` and the estimate of
/// the shift `experiment − control`.
///
/// NaN values are ranked as +∞ (Kayenta's `NaNStrategy.MAXIMAL`); the judge never
/// passes any.
pub fn shift_interval(
    experiment: &[f64],
    control: &[f64],
    conf_level: f64,
    flavor: Flavor,
) -> Result<ShiftInterval, MannWhitneyError> {
    RankSums::new(experiment, control).shift_interval(conf_level, flavor)
}

/// Both samples sorted once and compressed into runs of equal values, with what
/// `W(d)` needs precomputed. Runs make heavily tied (discrete) metrics cheap: a
/// pass costs `O(distinct values)`, not `O(n)`.
#[derive(Debug, Clone)]
pub(crate) struct RankSums {
    xs: Vec<f64>,
    ys: Vec<f64>,
    nx: f64,
    ny: f64,
    all_finite: bool,
    x_runs: Runs,
    y_runs: Runs,
    /// `y_runs.values` followed by [`PAD`] +∞ sentinels for the unrolled search.
    y_padded: Vec<f64>,
    /// `y_below[k]`: number of `y` values in the runs before run `k` (`k ≤ runs`).
    y_below: Vec<u64>,
    /// Smallest gap between neighbouring experiment runs (+∞ for one run).
    x_min_gap: f64,
    /// Largest |experiment value|.
    x_max_abs: f64,
}

/// Sentinels after the control runs, so the fast pass can look 4 runs ahead.
const PAD: usize = 4;

/// Independent segments of the fast pass.
const LANES: usize = 4;

/// One segment's walk through the control runs.
#[derive(Debug, Clone, Copy, Default)]
struct Lane {
    /// Index of the first control run not below the current value.
    j: usize,
    /// 2·U over the runs seen: pairs with experiment > control count 2, ties 1.
    twice_u: u64,
}

/// Ties between experiment and control runs, rare enough to share between lanes.
#[derive(Debug, Default)]
struct CrossTies {
    twice_u: u64,
    extra: u64,
}

impl Lane {
    /// Accounts for one experiment run of `count` values at shifted value `v`.
    #[inline(always)]
    fn step(
        &mut self,
        v: f64,
        count: u64,
        y: &ControlRuns<'_>,
        ties: &mut CrossTies,
    ) -> Option<()> {
        // Sorted, so the comparisons count the runs below `v` among the next four;
        // only a gap of four or more runs needs another round. Counting without
        // branches avoids the mispredictions of a plain merge on interleaved data.
        loop {
            let window = y.padded.get(self.j..self.j + PAD)?;
            let step = window.iter().filter(|&&c| c < v).count();
            self.j += step;
            if step < PAD {
                break;
            }
        }
        let below = *y.below.get(self.j)?;
        self.twice_u += 2 * count * below;
        if y.padded[self.j] == v {
            // A tie group of `count` experiment and `b` control values: it adds
            // half a pair each to U, and (a+b)³−(a+b) − (a³−a) − (b³−b) = 3ab(a+b)
            // to the tie sum on top of the runs' own terms.
            let b = *y.below.get(self.j + 1)? - below;
            ties.twice_u += count * b;
            ties.extra += 3 * count * b * (count + b);
        }
        Some(())
    }
}

/// What a [`Lane`] reads of the control runs.
struct ControlRuns<'a> {
    padded: &'a [f64],
    below: &'a [u64],
}

/// A sorted sample as runs of equal values.
#[derive(Debug, Clone, Default)]
struct Runs {
    values: Vec<f64>,
    counts: Vec<u64>,
    /// `Σ(t³ − t)` over the runs.
    ties: f64,
}

impl Runs {
    fn of(sorted: &[f64]) -> Self {
        let mut r = Self {
            values: Vec::with_capacity(sorted.len()),
            counts: Vec::with_capacity(sorted.len()),
            ties: 0.0,
        };
        for &v in sorted {
            match (r.values.last(), r.counts.last_mut()) {
                (Some(&last), Some(count)) if last == v => *count += 1,
                _ => {
                    r.values.push(v);
                    r.counts.push(1);
                }
            }
        }
        r.ties = r.counts.iter().map(|&c| (c * c * c - c) as f64).sum();
        r
    }
}

/// `W(d)` before the continuity correction: the centred statistic and its sd.
#[derive(Debug, Clone, Copy)]
struct Statistic {
    dz: f64,
    sigma: f64,
}

impl Statistic {
    fn value(self, correct: bool) -> f64 {
        let correction = if correct { 0.5 * sign(self.dz) } else { 0.0 };
        (self.dz - correction) / self.sigma
    }
}

/// R's `sign`: 0 for 0 (and NaN stays NaN, like R).
fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        v
    }
}

/// Sorts with NaN mapped to +∞ (Kayenta's `NaNStrategy.MAXIMAL`), via the
/// order-preserving integer image of each double. -0.0 sorts before 0.0; both
/// compare equal in every later step.
fn sorted(values: &[f64]) -> Vec<f64> {
    let mut keys: Vec<u64> = values
        .iter()
        .map(|&x| {
            let bits = if x.is_nan() {
                f64::INFINITY.to_bits()
            } else {
                x.to_bits()
            };
            if bits >> 63 == 1 {
                !bits
            } else {
                bits | (1 << 63)
            }
        })
        .collect();
    radix_sort(&mut keys);
    keys.into_iter()
        .map(|k| f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k }))
        .collect()
}

/// LSD radix sort by bytes. Metric samples share sign and exponent bytes, so the
/// passes over constant bytes are skipped; small inputs use the standard sort.
fn radix_sort(keys: &mut Vec<u64>) {
    if keys.len() < 256 {
        keys.sort_unstable();
        return;
    }
    let mut counts = [[0usize; 256]; 8];
    for &k in keys.iter() {
        for (byte, c) in counts.iter_mut().enumerate() {
            c[((k >> (8 * byte)) & 0xff) as usize] += 1;
        }
    }
    let mut buffer = vec![0u64; keys.len()];
    for (byte, c) in counts.iter().enumerate() {
        if c.contains(&keys.len()) {
            continue;
        }
        let mut offsets = [0usize; 256];
        let mut total = 0;
        for (o, &n) in offsets.iter_mut().zip(c) {
            *o = total;
            total += n;
        }
        for &k in keys.iter() {
            let b = ((k >> (8 * byte)) & 0xff) as usize;
            buffer[offsets[b]] = k;
            offsets[b] += 1;
        }
        std::mem::swap(keys, &mut buffer);
    }
}

impl RankSums {
    pub(crate) fn new(experiment: &[f64], control: &[f64]) -> Self {
        let xs = sorted(experiment);
        let ys = sorted(control);
        let x_runs = Runs::of(&xs);
        let y_runs = Runs::of(&ys);
        let mut y_padded = y_runs.values.clone();
        y_padded.extend([f64::INFINITY; PAD]);
        let mut y_below = Vec::with_capacity(y_runs.counts.len() + 1);
        let mut below = 0u64;
        y_below.push(0);
        for &c in &y_runs.counts {
            below += c;
            y_below.push(below);
        }
        let all_finite = xs.iter().chain(&ys).all(|v| v.is_finite());
        let x_min_gap = x_runs
            .values
            .windows(2)
            .map(|w| w[1] - w[0])
            .fold(f64::INFINITY, f64::min);
        let x_max_abs = xs
            .first()
            .map_or(0.0, |v| v.abs())
            .max(xs.last().map_or(0.0, |v| v.abs()));
        Self {
            x_min_gap,
            x_max_abs,
            nx: xs.len() as f64,
            ny: ys.len() as f64,
            xs,
            ys,
            all_finite,
            x_runs,
            y_runs,
            y_padded,
            y_below,
        }
    }

    /// The sorted experiment sample.
    pub(crate) fn experiment(&self) -> &[f64] {
        &self.xs
    }

    /// The sorted control sample.
    pub(crate) fn control(&self) -> &[f64] {
        &self.ys
    }

    /// `U(0)`: pairs with experiment > control, plus half the ties. Used for CLES.
    pub(crate) fn u_statistic(&self) -> f64 {
        let (dz, _) = self.centred(0.0);
        dz + self.nx * self.ny / 2.0
    }

    /// `(dz, Σ(t³ − t))` at shift `d`, where `dz = U(d) − nx·ny/2`.
    fn centred(&self, d: f64) -> (f64, f64) {
        if self.all_finite
            && d.is_finite()
            && let Some(r) = self.centred_fast(d)
        {
            return r;
        }
        self.centred_exact(d)
    }

    /// The common case: no two runs of `x` merged by the rounding of `x − d`
    /// (returns `None` then). Ties between `x − d` and `y` are handled here.
    ///
    /// The runs of `x` are cut into [`LANES`] segments walked in lock-step, each
    /// with its own position in `y` (found by binary search): the segments do not
    /// depend on each other, so the CPU overlaps their load → compare → advance
    /// chains instead of waiting on one.
    fn centred_fast(&self, d: f64) -> Option<(f64, f64)> {
        let xv = &self.x_runs.values[..];
        let xc = &self.x_runs.counts[..];
        if self.may_merge_runs(d) {
            return None;
        }
        let m = xv.len();
        let lane_len = m / LANES;
        let y = ControlRuns {
            padded: &self.y_padded,
            below: &self.y_below,
        };
        let start = |k: usize| self.y_runs.values.partition_point(|&c| c < xv[k] - d);
        let mut lanes = [Lane::default(); LANES];
        for (s, lane) in lanes.iter_mut().enumerate() {
            lane.j = if s * lane_len < m {
                start(s * lane_len)
            } else {
                0
            };
        }
        let mut ties = CrossTies::default();
        for t in 0..lane_len {
            for (s, lane) in lanes.iter_mut().enumerate() {
                let k = s * lane_len + t;
                lane.step(xv[k] - d, xc[k], &y, &mut ties)?;
            }
        }
        let tail = LANES * lane_len;
        let mut rest = Lane {
            j: if tail < m { start(tail) } else { 0 },
            twice_u: 0,
        };
        for k in tail..m {
            rest.step(xv[k] - d, xc[k], &y, &mut ties)?;
        }
        let twice_u: u64 =
            lanes.iter().map(|l| l.twice_u).sum::<u64>() + rest.twice_u + ties.twice_u;
        let dz = twice_u as f64 / 2.0 - self.nx * self.ny / 2.0;
        Some((dz, self.x_runs.ties + self.y_runs.ties + ties.extra as f64))
    }

    /// Whether rounding of `x − d` could make two runs of `x` equal. Two values
    /// `a < b` can only round to the same `v` if `b − a ≤ ulp(v) ≤ 2ε·|v|`, so a
    /// minimum gap above `4ε·(max|x| + |d|)` rules it out without a pass.
    fn may_merge_runs(&self, d: f64) -> bool {
        if self.x_min_gap > 4.0 * f64::EPSILON * (self.x_max_abs + d.abs()) {
            return false;
        }
        let xv = &self.x_runs.values;
        xv.windows(2)
            .fold(false, |merged, w| merged | (w[0] - d == w[1] - d))
    }

    /// Groups the merged runs of `x − d` (NaN as +∞) and `y` into tie groups and
    /// sums the average ranks of the `x` part, like R's `rank` + `table`.
    fn centred_exact(&self, d: f64) -> (f64, f64) {
        let shift = |x: f64| {
            let v = x - d;
            if v.is_nan() { f64::INFINITY } else { v }
        };
        let (xv, xc) = (&self.x_runs.values[..], &self.x_runs.counts[..]);
        let (yv, yc) = (&self.y_runs.values[..], &self.y_runs.counts[..]);
        let (mut i, mut j) = (0usize, 0usize);
        let mut done = 0.0_f64;
        let mut rank_sum_x = 0.0_f64;
        let mut ties = 0.0_f64;
        while i < xv.len() || j < yv.len() {
            let v = match (xv.get(i), yv.get(j)) {
                (Some(&x), Some(&y)) => shift(x).min(y),
                (Some(&x), None) => shift(x),
                (None, Some(&y)) => y,
                (None, None) => break,
            };
            let mut a = 0.0_f64;
            while i < xv.len() && shift(xv[i]) == v {
                a += xc[i] as f64;
                i += 1;
            }
            let mut b = 0.0_f64;
            if j < yv.len() && yv[j] == v {
                b = yc[j] as f64;
                j += 1;
            }
            let t = a + b;
            if t == 0.0 {
                // Only reachable if the shifted sample were unsorted; keep going
                // rather than loop forever.
                i += 1;
                continue;
            }
            rank_sum_x += a * (done + (t + 1.0) / 2.0);
            ties += t * t * t - t;
            done += t;
        }
        let dz = rank_sum_x - self.nx * (self.nx + 1.0) / 2.0 - self.nx * self.ny / 2.0;
        (dz, ties)
    }

    fn statistic(&self, d: f64) -> Result<Statistic, MannWhitneyError> {
        let (dz, ties) = self.centred(d);
        let (nx, ny) = (self.nx, self.ny);
        let sigma =
            ((nx * ny / 12.0) * ((nx + ny + 1.0) - ties / ((nx + ny) * (nx + ny - 1.0)))).sqrt();
        if sigma == 0.0 {
            return Err(MannWhitneyError::AllTied);
        }
        Ok(Statistic { dz, sigma })
    }

    /// See [`shift_interval`].
    pub(crate) fn shift_interval(
        &self,
        conf_level: f64,
        flavor: Flavor,
    ) -> Result<ShiftInterval, MannWhitneyError> {
        if !(conf_level > 0.0 && conf_level < 1.0) {
            return Err(MannWhitneyError::ConfidenceLevel(conf_level));
        }
        let (Some(&x_min), Some(&x_max), Some(&y_min), Some(&y_max)) = (
            self.xs.first(),
            self.xs.last(),
            self.ys.first(),
            self.ys.last(),
        ) else {
            return Err(MannWhitneyError::EmptySample);
        };
        let alpha = 1.0 - conf_level;
        let mu_min = x_min - y_max;
        let mu_max = x_max - y_min;
        let at_min = self.statistic(mu_min)?;
        let at_max = self.statistic(mu_max)?;

        let root = |zq: f64| -> Result<f64, MannWhitneyError> {
            let f_lower = at_min.value(true) - zq;
            if f_lower <= 0.0 {
                return Ok(mu_min);
            }
            let f_upper = at_max.value(true) - zq;
            if f_upper >= 0.0 {
                return Ok(mu_max);
            }
            zeroin(
                mu_min,
                mu_max,
                f_lower,
                f_upper,
                |d| Ok(self.statistic(d)?.value(true) - zq),
                ROOT_TOLERANCE,
                ROOT_MAX_ITER,
            )
        };
        let z = normal_quantile(alpha / 2.0);
        let lower = root(-z)?;
        let upper = root(z)?;

        let correct = flavor == Flavor::Kayenta;
        if flavor == Flavor::R && mu_min.partial_cmp(&mu_max) != Some(std::cmp::Ordering::Less) {
            return Err(MannWhitneyError::EmptyRange);
        }
        let estimate = zeroin(
            mu_min,
            mu_max,
            at_min.value(correct),
            at_max.value(correct),
            |d| Ok(self.statistic(d)?.value(correct)),
            ROOT_TOLERANCE,
            ROOT_MAX_ITER,
        )?;
        Ok(ShiftInterval {
            lower,
            upper,
            estimate,
        })
    }
}

/// Standard normal quantile (`qnorm`); `p` is always in (0, 0.5) here.
fn normal_quantile(p: f64) -> f64 {
    Normal::standard().inverse_cdf(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(x: &[f64], y: &[f64]) -> ShiftInterval {
        shift_interval(x, y, 0.95, Flavor::R).unwrap()
    }

    #[test]
    fn normal_quantile_matches_r() {
        // qnorm(0.01), qnorm(0.025) printed by R with 17 significant digits.
        assert!((normal_quantile(0.01) + 2.3263478740408408).abs() < 1e-15);
        assert!((normal_quantile(0.025) + 1.959963984540054).abs() < 1e-15);
    }

    #[test]
    fn kayenta_suite_vector() {
        // Kayenta's MannWhitneySuite: control 1..4, experiment 10..40 at 95%.
        let k = shift_interval(
            &[10.0, 20.0, 30.0, 40.0],
            &[1.0, 2.0, 3.0, 4.0],
            0.95,
            Flavor::Kayenta,
        )
        .unwrap();
        assert!((k.lower - 6.0).abs() < 1e-3, "{k:?}");
        assert!((k.upper - 39.0).abs() < 1e-3, "{k:?}");
        assert!((k.estimate - 22.5).abs() < 1e-3, "{k:?}");
    }

    #[test]
    fn fast_and_exact_passes_agree() {
        let x: Vec<f64> = (0..200).map(|i| ((i * 37) % 101) as f64 * 0.5).collect();
        let y: Vec<f64> = (0..150)
            .map(|i| ((i * 53) % 97) as f64 * 0.5 + 3.0)
            .collect();
        let rs = RankSums::new(&x, &y);
        let mut ties_seen = 0;
        // Steps of 0.25 land on the grid (ties between x − d and y); 0.3137 mostly not.
        for d in (0..480)
            .map(|k| -60.0 + k as f64 * 0.25)
            .chain((0..400).map(|k| -60.0 + k as f64 * 0.3137))
        {
            let exact = rs.centred_exact(d);
            let fast = rs.centred_fast(d).expect("no rounding merges on this grid");
            assert_eq!(exact, fast, "d = {d}");
            if exact.1 > rs.x_runs.ties + rs.y_runs.ties {
                ties_seen += 1;
            }
        }
        assert!(ties_seen > 100, "{ties_seen}");
        // Rounding merges neighbouring runs: the fast pass must refuse.
        let tiny = RankSums::new(&[1e-9, 2e-9, 3.0], &[0.5, 1e12]);
        assert_eq!(tiny.centred_fast(-1e12), None);
        assert_eq!(tiny.centred(-1e12), tiny.centred_exact(-1e12));
    }

    #[test]
    fn radix_sort_sorts() {
        let mut state = 7u64;
        let values: Vec<f64> = (0..5000)
            .map(|i| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let v = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                if i % 7 == 0 { v * 1e300 } else { v }
            })
            .collect();
        let mut expected = values.clone();
        expected.sort_by(f64::total_cmp);
        assert_eq!(sorted(&values), expected);
    }

    #[test]
    fn sorting_handles_signs_zeros_and_nan() {
        let s = sorted(&[3.0, -0.0, f64::NAN, -2.5, 0.0, f64::NEG_INFINITY, 1e-300]);
        assert_eq!(&s[..2], &[f64::NEG_INFINITY, -2.5]);
        assert!(s[2] == 0.0 && s[3] == 0.0);
        assert_eq!(&s[4..], &[1e-300, 3.0, f64::INFINITY]);
    }

    #[test]
    fn all_tied_is_an_error() {
        assert_eq!(
            shift_interval(&[1.0, 1.0], &[1.0, 1.0], 0.95, Flavor::Kayenta),
            Err(MannWhitneyError::AllTied)
        );
        assert_eq!(
            shift_interval(&[], &[1.0], 0.95, Flavor::R),
            Err(MannWhitneyError::EmptySample)
        );
    }

    #[test]
    fn clamps_to_range_ends() {
        // wilcox.test(1, 2:60, conf.int=TRUE, exact=FALSE): both ends clamp.
        let y: Vec<f64> = (2..=60).map(f64::from).collect();
        let s = r(&[1.0], &y);
        assert_eq!(s.lower, 1.0 - 60.0);
    }
}
