//! The one random step of Kayenta's judge, made deterministic.
//!
//! When the experiment and the control are each constant (but not equal), Kayenta
//! adds Gaussian noise with mean 0 and sd `value·1e-5` to every value so that the
//! Mann-Whitney interval has ties to break, using an unseeded RNG: the same data can
//! get different verdicts. Gennaker draws the noise from a generator seeded with a
//! hash of the data instead, so a judgement is reproducible:
//!
//! * seed = FNV-1a (64-bit) over the IEEE-754 bit patterns of the experiment values,
//!   a separator, then the control values;
//! * uniform numbers from splitmix64 (Steele, Lea & Flood 2014), 53 bits mapped to
//!   the open interval (0, 1);
//! * normal numbers by the Box–Muller transform, `√(−2 ln u₁)·cos(2π u₂)`.
//!
//! The distribution is Kayenta's; only the randomness is pinned down.

/// Relative sd of the noise, Kayenta's constant.
const RELATIVE_SD: f64 = 1e-5;

struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1): never 0, so `ln` is finite.
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn standard_normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

fn seed(experiment: &[f64], control: &[f64]) -> u64 {
    const OFFSET: u64 = 0xCBF2_9CE4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01B3;
    let mut h = OFFSET;
    let mut eat = |word: u64| {
        for b in word.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for v in experiment {
        eat(v.to_bits());
    }
    eat(u64::MAX);
    for v in control {
        eat(v.to_bits());
    }
    h
}

/// Adds `N(0, (v·1e-5)²)` noise to each value of both sides (0 stays 0).
pub(crate) fn add_noise(experiment: &[f64], control: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut rng = SplitMix64(seed(experiment, control));
    let mut jitter = |values: &[f64]| -> Vec<f64> {
        values
            .iter()
            .map(|&v| v + rng.standard_normal() * v * RELATIVE_SD)
            .collect()
    };
    let x = jitter(experiment);
    let y = jitter(control);
    (x, y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_small() {
        let (x1, y1) = add_noise(&[5.0; 20], &[7.0; 10]);
        let (x2, y2) = add_noise(&[5.0; 20], &[7.0; 10]);
        assert_eq!((x1.clone(), y1.clone()), (x2, y2));
        assert!(x1.iter().all(|v| (v - 5.0).abs() < 5.0 * 1e-4));
        assert!(y1.iter().any(|&v| v != 7.0));
        let (z, _) = add_noise(&[0.0; 3], &[1.0]);
        assert_eq!(z, vec![0.0; 3]);
    }

    #[test]
    fn roughly_standard_normal() {
        let mut rng = SplitMix64(42);
        let draws: Vec<f64> = (0..20_000).map(|_| rng.standard_normal()).collect();
        let m = draws.iter().sum::<f64>() / draws.len() as f64;
        let v = draws.iter().map(|d| (d - m) * (d - m)).sum::<f64>() / draws.len() as f64;
        assert!(
            m.abs() < 0.03 && (v - 1.0).abs() < 0.05,
            "mean {m}, var {v}"
        );
    }
}
