//! R's `zeroin` root finder (`R_zeroin2` in R's `src/library/stats/src/zeroin.c`).
//!
//! Kayenta's Mann-Whitney port and R's `uniroot` both run this exact algorithm
//! (Brent's method with inverse quadratic interpolation) with an absolute tolerance
//! of 1e-4 and at most 1000 iterations. The iterates, not just the root, must match
//! R's: the function we solve is a step function, so any other solver (or even a
//! reordered floating-point expression) lands on a different point of the step.

/// Relative machine precision used by R for the actual tolerance.
const EPSILON: f64 = f64::EPSILON;

/// Finds a zero of `f` in `[ax, bx]` given `fa = f(ax)` and `fb = f(bx)`.
///
/// Returns the last approximation when `max_iter` iterations did not converge,
/// like R (which only warns). Errors of `f` abort the search.
pub(crate) fn zeroin<E>(
    ax: f64,
    bx: f64,
    fa: f64,
    fb: f64,
    mut f: impl FnMut(f64) -> Result<f64, E>,
    tol: f64,
    max_iter: u32,
) -> Result<f64, E> {
    let (mut a, mut b) = (ax, bx);
    let (mut fa, mut fb) = (fa, fb);
    let (mut c, mut fc) = (a, fa);

    if fa == 0.0 {
        return Ok(a);
    }
    if fb == 0.0 {
        return Ok(b);
    }

    // R runs `while(maxit--)` with maxit = Maxit + 1.
    for _ in 0..=max_iter {
        let prev_step = b - a;

        if fc.abs() < fb.abs() {
            a = b;
            b = c;
            c = a;
            fa = fb;
            fb = fc;
            fc = fa;
        }
        let tol_act = 2.0 * EPSILON * b.abs() + tol / 2.0;
        let mut new_step = (c - b) / 2.0;

        if new_step.abs() <= tol_act || fb == 0.0 {
            return Ok(b);
        }

        if prev_step.abs() >= tol_act && fa.abs() > fb.abs() {
            let cb = c - b;
            let (mut p, mut q);
            if a == c {
                let t1 = fb / fa;
                p = cb * t1;
                q = 1.0 - t1;
            } else {
                q = fa / fc;
                let t1 = fb / fc;
                let t2 = fb / fa;
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0));
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0);
            }
            if p > 0.0 {
                q = -q;
            } else {
                p = -p;
            }
            if p < (0.75 * cb * q - (tol_act * q).abs() / 2.0) && p < (prev_step * q / 2.0).abs() {
                new_step = p / q;
            }
        }

        if new_step.abs() < tol_act {
            new_step = if new_step > 0.0 { tol_act } else { -tol_act };
        }
        a = b;
        fa = fb;
        b += new_step;
        fb = f(b)?;
        if (fb > 0.0 && fc > 0.0) || (fb < 0.0 && fc < 0.0) {
            c = a;
            fc = fa;
        }
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::zeroin;

    #[test]
    fn finds_sqrt_two_within_tolerance() {
        let f = |x: f64| Ok::<_, ()>(x * x - 2.0);
        let root = zeroin(0.0, 2.0, -2.0, 2.0, f, 1e-4, 1000).unwrap();
        assert!((root - 2f64.sqrt()).abs() < 1e-4);
    }

    #[test]
    fn returns_endpoint_with_zero_value_at_once() {
        let f = |_: f64| -> Result<f64, ()> { panic!("must not evaluate") };
        assert_eq!(zeroin(1.0, 3.0, 0.0, 5.0, f, 1e-4, 1000).unwrap(), 1.0);
        let f = |_: f64| -> Result<f64, ()> { panic!("must not evaluate") };
        assert_eq!(zeroin(1.0, 3.0, -1.0, 0.0, f, 1e-4, 1000).unwrap(), 3.0);
    }

    #[test]
    fn propagates_errors() {
        let f = |_: f64| Err::<f64, &str>("boom");
        assert_eq!(zeroin(0.0, 1.0, -1.0, 1.0, f, 1e-4, 1000), Err("boom"));
    }
}
