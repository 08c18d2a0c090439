//! Uniform (evenly spaced, symmetric) quantization grids, the baselines for generalized
//! quantization: min-max scaling to `[-max|w|, max|w|]`, and the MSE-optimal clipping range
//! `[-c, c]` found by a grid search refined with a golden-section search (the usual
//! "MSE calibration" of post-training quantization).

use tch::Tensor;

use super::levels::{non_finite_error, SortedWeights};

/// Number of candidate clip fractions `k / GRID` of `max|w|` tried by [`uniform_mse`].
const GRID: usize = 100;
/// Golden-section steps around the best grid point (shrinks the bracket by 0.618^60 ~ 3e-13).
const GOLDEN_STEPS: usize = 60;

/// `n` levels evenly spaced on `[-c, c]`, exactly symmetric (for odd `n` the middle level is
/// exactly 0).
fn grid(c: f64, n: usize) -> Vec<f64> {
    let d = (n - 1) as f64;
    (0..n).map(|i| c * (2.0 * i as f64 - d) / d).collect()
}

/// Scale used when a tensor is all zeros: any grid is lossless then, and a unit scale keeps the
/// levels distinct.
fn nonzero_scale(m: f64) -> f64 {
    if m > 0.0 {
        m
    } else {
        1.0
    }
}

/// `n` evenly spaced levels on `[-max|w|, max|w|]` (so 0 is a level for odd `n`). An all-zero
/// or empty tensor gets the unit range `[-1, 1]`. Errors, as `gq` does, when `w` holds NaN
/// or infinite values (a grid cannot be placed then).
///
/// # Panics
/// If `n < 2`.
pub fn uniform_minmax(w: &Tensor, n: usize) -> Result<Vec<f64>, String> {
    assert!(n >= 2, "uniform_minmax needs n >= 2 levels, got {n}");
    let m = if w.numel() == 0 { 0.0 } else { w.detach().abs().max().double_value(&[]) };
    if !m.is_finite() {
        let bad = w.isfinite().logical_not().sum(tch::Kind::Int64).int64_value(&[]);
        return Err(non_finite_error(bad as usize, w.numel()));
    }
    Ok(grid(nonzero_scale(m), n))
}

/// `n` evenly spaced levels on `[-c, c]` with the clip `c` in `(0, max|w|]` minimizing the
/// squared error of nearest-level quantization; returns the levels and `c`.
///
/// The weights are sorted once; the error of a candidate `c` then costs O(n log N) from prefix
/// sums, so the whole tensor is used (no subsampling): a grid of `c = k/100 max|w|`, a
/// golden-section search on the bracket around the best grid point, and a final choice among
/// {golden-section optimum, best grid point, `max|w|`} by the directly summed error. Since
/// `c = max|w|` is a candidate, the result is never worse than [`uniform_minmax`].
/// An all-zero tensor returns the unit range with `c = 1`. Errors, as `gq` does, when `w`
/// holds NaN or infinite values.
///
/// # Panics
/// If `n < 2`.
pub fn uniform_mse(w: &Tensor, n: usize) -> Result<(Vec<f64>, f64), String> {
    assert!(n >= 2, "uniform_mse needs n >= 2 levels, got {n}");
    let sw = SortedWeights::from_tensor(w)?;
    Ok(uniform_mse_sorted(&sw, n))
}

/// [`uniform_mse`] on already sorted weights.
///
/// # Panics
/// If `n < 2`.
pub fn uniform_mse_sorted(sw: &SortedWeights, n: usize) -> (Vec<f64>, f64) {
    assert!(n >= 2, "uniform_mse needs n >= 2 levels, got {n}");
    let m = sw.max_abs();
    if m == 0.0 {
        return (grid(1.0, n), 1.0);
    }
    let err = |c: f64| sw.squared_error_fast(&grid(c, n));
    let step = m / GRID as f64;
    let (mut c_grid, mut e_grid) = (m, err(m));
    for k in 1..GRID {
        let c = step * k as f64;
        let e = err(c);
        if e < e_grid {
            (c_grid, e_grid) = (c, e);
        }
    }
    // Golden-section search on [c_grid - step, c_grid + step] within (0, m]: the error is
    // continuous in c and, this close to a grid minimum, unimodal in practice.
    let inv_phi = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = ((c_grid - step).max(step * 1e-3), (c_grid + step).min(m));
    let mut c1 = b - inv_phi * (b - a);
    let mut c2 = a + inv_phi * (b - a);
    let (mut e1, mut e2) = (err(c1), err(c2));
    for _ in 0..GOLDEN_STEPS {
        if e1 <= e2 {
            b = c2;
            (c2, e2) = (c1, e1);
            c1 = b - inv_phi * (b - a);
            e1 = err(c1);
        } else {
            a = c1;
            (c1, e1) = (c2, e2);
            c2 = a + inv_phi * (b - a);
            e2 = err(c2);
        }
    }
    let c_golden = if e1 <= e2 { c1 } else { c2 };
    // Decide with the directly summed error so the prefix-sum rounding cannot pick a worse grid;
    // max|w| goes first so it wins ties.
    let best = [m, c_grid, c_golden]
        .into_iter()
        .map(|c| (c, sw.squared_error(&grid(c, n))))
        .fold((m, f64::INFINITY), |acc, ce| if ce.1 < acc.1 { ce } else { acc });
    (grid(best.0, n), best.0)
}
