//! Compares [`shift_interval`] with R's `wilcox.test(x, y, conf.int = TRUE,
//! exact = FALSE, correct = TRUE, conf.level = 0.98)`, run for real.
//!
//! All cases go to one file and `Rscript` runs once (`tests/r/wilcox_ci.R`). Values
//! travel as hex floats, so R sees bit-identical data, and come back with 17
//! significant digits, which round-trips every `f64`.
//!
//! # Tolerance
//! Both sides evaluate bit-identical `W(d)` values (the rank sums and tie counts are
//! exact integers/halves), and run the same `zeroin` iteration, so the results are
//! normally *equal*. The only legitimate source of divergence is the normal
//! quantile: statrs's `inverse_cdf` may differ from R's `qnorm` in the last bits,
//! which can change an interpolation step. `zeroin` stops when the bracket `[b, c]`
//! around a sign change is within `tol_act = 2·ε·|b| + tol/2` (tol = 1e-4) of `b`,
//! so two runs that bracket the same jump of the step function can differ by at most
//! `2·tol_act + 2·tol_act = 2e-4 + 8·ε·|b|`. That is the bound we assert: an
//! absolute 2e-4 plus a relative term that only matters for huge magnitudes (1e12).
//!
//! Set `GENNAKER_SKIP_R=1` to skip when R is unavailable; otherwise a missing
//! `Rscript` fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gennaker_canary::mannwhitney::{Flavor, MannWhitneyError, ShiftInterval, shift_interval};
use std::{fmt::Write as _, process::Command};

const CONF_LEVEL: f64 = 0.98;
const CASES: usize = 640;

/// splitmix64: a tiny deterministic generator so the cases never change.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    fn size(&mut self) -> usize {
        2 + self.below(199)
    }
}

fn sample(rng: &mut Rng, kind: usize, n: usize, shift: f64) -> Vec<f64> {
    (0..n)
        .map(|_| match kind {
            // Continuous, unit scale.
            0 => 10.0 + shift + rng.normal(),
            // Discrete with heavy ties.
            1 => (rng.below(6) as f64) + shift.round(),
            // Mostly zeros with sparse errors (kayenta#426).
            2 => {
                if rng.below(5) == 0 {
                    (1 + rng.below(3)) as f64 + shift.max(0.0).round()
                } else {
                    0.0
                }
            }
            // Tiny magnitudes: below the solver's resolution.
            3 => (1.0 + shift + 0.3 * rng.normal()) * 1e-9,
            // Huge magnitudes.
            4 => (1.0 + 0.01 * shift + 0.01 * rng.normal()) * 1e12,
            // Negative values, latency-like skew.
            5 => -(rng.uniform().ln() * -50.0) - 100.0 + 20.0 * shift,
            // Coarse grid (integers) with a real shift: ties between x − d and y.
            6 => (rng.normal() * 3.0 + 10.0 * shift).round(),
            // Mixed scales.
            _ => rng.normal() * 10f64.powi(rng.below(7) as i32 - 3) + shift,
        })
        .collect()
}

fn generate() -> Vec<(Vec<f64>, Vec<f64>)> {
    let mut rng = Rng(0x5EED_CA4A_21E5);
    let mut cases = Vec::with_capacity(CASES);
    for k in 0..CASES {
        let kind = k % 8;
        let shift = match rng.below(4) {
            0 => 0.0,
            1 => 0.5,
            2 => -1.5,
            _ => 4.0,
        };
        let (nx, ny) = match rng.below(5) {
            // Very unequal sizes.
            0 => (2 + rng.below(3), 100 + rng.below(101)),
            1 => (100 + rng.below(101), 2 + rng.below(3)),
            _ => (rng.size(), rng.size()),
        };
        let x = sample(&mut rng, kind, nx, shift);
        let y = sample(&mut rng, kind, ny, 0.0);
        cases.push((x, y));
    }
    // Degenerate cases R refuses: all tied, and both constant but different.
    cases.push((vec![3.0; 5], vec![3.0; 4]));
    cases.push((vec![1.0; 3], vec![2.0; 7]));
    cases.push((vec![0.0, 0.0], vec![0.0]));
    // Extreme clamping: wilcox.test(1, 2:60).
    cases.push((vec![1.0], (2..=60).map(f64::from).collect()));
    cases
}

fn hex(v: f64) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0x0p+0".into()
        } else {
            "0x0p+0".into()
        };
    }
    let bits = v.to_bits();
    let sign = if bits >> 63 == 1 { "-" } else { "" };
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let man = bits & ((1u64 << 52) - 1);
    if exp == 0 {
        format!("{sign}0x0.{man:013x}p-1022")
    } else {
        format!("{sign}0x1.{man:013x}p{}", exp - 1023)
    }
}

fn join(v: &[f64]) -> String {
    v.iter().map(|&x| hex(x)).collect::<Vec<_>>().join(",")
}

#[derive(Debug)]
enum ROutcome {
    Ok {
        lower: f64,
        upper: f64,
        est_r: f64,
        est_kayenta: Option<f64>,
    },
    Error(String),
}

fn run_r(cases: &[(Vec<f64>, Vec<f64>)]) -> Vec<(ROutcome, bool)> {
    if std::env::var("GENNAKER_SKIP_R").as_deref() == Ok("1") {
        return Vec::new();
    }
    let available = Command::new("Rscript")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        available,
        "Rscript not found: install R (`apt-get install -y --no-install-recommends r-base-core`) \
         or set GENNAKER_SKIP_R=1 to skip the comparison with R"
    );
    let mut input = String::new();
    for (i, (x, y)) in cases.iter().enumerate() {
        writeln!(input, "{i};{};{}", join(x), join(y)).unwrap();
    }
    let path = std::env::temp_dir().join(format!("gennaker-wilcox-{}.txt", std::process::id()));
    std::fs::write(&path, input).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/r/wilcox_ci.R");
    let out = Command::new("Rscript")
        .arg(script)
        .arg(&path)
        .arg(CONF_LEVEL.to_string())
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "Rscript failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<(ROutcome, bool)> = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f[0], i.to_string(), "R output out of order: {line}");
            let warned = f.last() == Some(&"WARN");
            let outcome = match f[1] {
                "OK" => ROutcome::Ok {
                    lower: f[2].parse().unwrap(),
                    upper: f[3].parse().unwrap(),
                    est_r: f[4].parse().unwrap(),
                    est_kayenta: f[5].parse().ok(),
                },
                _ => ROutcome::Error(f[2..].join(" ")),
            };
            (outcome, warned)
        })
        .collect();
    assert_eq!(rows.len(), cases.len(), "R returned a line per case");
    rows
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 2e-4 + 8.0 * f64::EPSILON * a.abs().max(b.abs())
}

#[test]
fn interval_and_estimate_match_r() {
    let cases = generate();
    let rows = run_r(&cases);
    if rows.is_empty() {
        eprintln!("GENNAKER_SKIP_R=1: comparison with R skipped");
        return;
    }
    let (mut compared, mut exact, mut errors, mut max_diff) = (0usize, 0usize, 0usize, 0.0_f64);
    let mut failures = Vec::new();
    for (i, ((x, y), (outcome, warned))) in cases.iter().zip(&rows).enumerate() {
        let ours = shift_interval(x, y, CONF_LEVEL, Flavor::R);
        let kayenta = shift_interval(x, y, CONF_LEVEL, Flavor::Kayenta);
        match (outcome, &ours) {
            (
                ROutcome::Ok {
                    lower,
                    upper,
                    est_r,
                    est_kayenta,
                },
                Ok(ShiftInterval {
                    lower: l,
                    upper: u,
                    estimate,
                }),
            ) => {
                compared += 1;
                let mut pairs = vec![(*lower, *l), (*upper, *u), (*est_r, *estimate)];
                match (est_kayenta, &kayenta) {
                    (Some(k), Ok(ki)) => pairs.push((*k, ki.estimate)),
                    (Some(_), Err(e)) => {
                        failures.push(format!("case {i}: Kayenta flavour failed: {e}"))
                    }
                    (None, _) => {}
                }
                if pairs.iter().all(|(a, b)| a == b) {
                    exact += 1;
                }
                for (which, (a, b)) in pairs.iter().enumerate() {
                    max_diff = max_diff.max((a - b).abs());
                    if !close(*a, *b) {
                        failures.push(format!(
                            "case {i} value {which}: R {a} vs ours {b} (warned: {warned})"
                        ));
                    }
                }
            }
            (ROutcome::Error(msg), Err(e)) => {
                errors += 1;
                let expected = match e {
                    MannWhitneyError::AllTied => "missing_value",
                    MannWhitneyError::EmptyRange => "lower_<_upper",
                    _ => "",
                };
                if expected.is_empty() || !msg.contains(expected) {
                    failures.push(format!("case {i}: R error {msg:?} vs ours {e:?}"));
                }
            }
            (o, e) => failures.push(format!("case {i}: R {o:?} vs ours {e:?}")),
        }
    }
    eprintln!(
        "R comparison: {} cases, {compared} compared ({exact} bit-identical), {errors} errors on both sides, \
         max |diff| {max_diff:e}",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(compared >= 500, "only {compared} cases compared");
}
