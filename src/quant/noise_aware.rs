//! Variation-aware generalized quantization (`gq-noise`): per layer, the N quanta and the
//! conductance window that minimise the expected squared error between the fp32 weights
//! and the weights as they will be read back from the device.
//!
//! Device model (the evaluation-time `analog` section, `crate::device::DeviceModel`): each
//! weight is a differential pair
//! w = alpha·(G+ − G−) in the window [g_min, g_max], alpha = w_max / (g_max − g_min), where
//! w_max is the layer's largest |quantum| (the window's full scale). Every device is stuck
//! at g_min / g_max with probabilities a / b, else programmed to its target with Gaussian
//! noise of sigma(g) (constant relative to the window, or a polynomial in g) and clipped to
//! the window. For a level q the read-back weight ŵ has mean mu(q) and variance v(q) in
//! closed form (moments of a clipped normal), so the expected error of a weight w assigned
//! to q is (w − mu(q))² + v(q).
//!
//! The fit alternates, accepting a step only when the expected error does not increase
//! (so the error sequence is non-increasing by construction):
//! 1. assignment: each weight goes to the level with the least expected error; the costs
//!    are parabolas of equal curvature in w, so the cells are the intervals of the lower
//!    envelope of the lines −2·mu(q)·w + mu(q)² + v(q) (thresholds, not midpoints);
//! 2. centroid: each level moves to the minimiser of its cell's expected error (a golden
//!    section search around the cell mean, mu and v being smooth in q);
//! 3. window: all levels are scaled by s in a 1-D search (s < 1 shrinks the window and the
//!    noise that every level carries; s > 1 widens it).
//!
//! With no noise and no faults, mu(q) = q and v(q) = 0, and the method is `gq` exactly.
use super::gq::fit_gq;
use super::levels::SortedWeights;
use super::lloyd::LloydOptions;
use tch::Tensor;

/// The device a layer's quanta are chosen for: the shared model (`crate::device`), whose
/// closed-form moments include a preset's state-dependent sigma(g), and drift and
/// accumulated read noise at `t` when given.
pub use crate::device::{clipped_normal_moments, DeviceModel};

/// Sorted weights with full f64 prefix sums, for exact interval costs.
struct Prefix {
    x: Vec<f64>,
    s1: Vec<f64>,
    s2: Vec<f64>,
}

impl Prefix {
    fn new(values: &[f32]) -> Prefix {
        let n = values.len();
        let (mut s1, mut s2) = (Vec::with_capacity(n + 1), Vec::with_capacity(n + 1));
        let (mut a, mut b) = (0.0, 0.0);
        s1.push(0.0);
        s2.push(0.0);
        for v in values {
            let v = *v as f64;
            a += v;
            b += v * v;
            s1.push(a);
            s2.push(b);
        }
        Prefix { x: values.iter().map(|v| *v as f64).collect(), s1, s2 }
    }

    /// Index of the first value > t.
    fn upper(&self, t: f64) -> usize {
        self.x.partition_point(|v| *v <= t)
    }

    /// (count, sum, sum of squares) of values with index in [i, j).
    fn range(&self, i: usize, j: usize) -> (f64, f64, f64) {
        ((j - i) as f64, self.s1[j] - self.s1[i], self.s2[j] - self.s2[i])
    }
}

/// The result of a gq-noise fit.
#[derive(Debug, Clone)]
pub struct NoiseFit {
    pub levels: Vec<f64>,
    /// Decision thresholds between consecutive levels (the envelope's, not midpoints).
    pub thresholds: Vec<f64>,
    /// Full scale of the window in weight units (= the largest |level|).
    pub w_max: f64,
    /// Expected squared error (sum over weights) after each accepted step.
    pub history: Vec<f64>,
    pub expected_error: f64,
}

/// Thresholds of the lower envelope of the costs (w − mu_i)² + v_i over sorted levels.
/// Dominated levels get an empty cell (equal neighbouring thresholds).
fn envelope_thresholds(mv: &[(f64, f64)]) -> Vec<f64> {
    let n = mv.len();
    // Cost_i(w) − w² = −2 mu_i w + (mu_i² + v_i): lines; the envelope minimum.
    let cross = |i: usize, j: usize| {
        let (mi, vi) = mv[i];
        let (mj, vj) = mv[j];
        let dm = mj - mi;
        if dm.abs() < 1e-300 {
            if vj < vi {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }
        } else {
            (mj * mj + vj - mi * mi - vi) / (2.0 * dm)
        }
    };
    // Convex-hull trick: lines sorted by mu (slopes −2 mu descending) for a minimum.
    let mut hull: Vec<usize> = Vec::with_capacity(n);
    for i in 0..n {
        while hull.len() >= 2 {
            let (a, b) = (hull[hull.len() - 2], hull[hull.len() - 1]);
            if cross(a, i) <= cross(a, b) {
                hull.pop();
            } else {
                break;
            }
        }
        if let Some(&b) = hull.last() {
            if cross(b, i) == f64::NEG_INFINITY {
                hull.pop();
            }
        }
        hull.push(i);
    }
    // Threshold between level i and i+1 in level order: cells of dominated levels collapse.
    let mut th = vec![0.0; n.saturating_sub(1)];
    let mut hi = 0;
    for k in 0..hull.len() {
        let right = if k + 1 < hull.len() { cross(hull[k], hull[k + 1]) } else { f64::INFINITY };
        while hi < hull[k] {
            th[hi] = if k == 0 { f64::NEG_INFINITY } else { cross(hull[k - 1], hull[k]) };
            hi += 1;
        }
        if hull[k] < n - 1 {
            let upto = if k + 1 < hull.len() { hull[k + 1] } else { n - 1 };
            while hi < upto {
                th[hi] = right;
                hi += 1;
            }
        }
    }
    // Thresholds must be non-decreasing for interval cells.
    for i in 1..th.len() {
        if th[i] < th[i - 1] {
            th[i] = th[i - 1];
        }
    }
    th
}

fn w_max_of(levels: &[f64]) -> f64 {
    levels.iter().fold(0.0f64, |m, q| m.max(q.abs())).max(1e-12)
}

/// Expected error of levels with given thresholds (cells = intervals) on the device.
fn expected_error(p: &Prefix, levels: &[f64], th: &[f64], dm: &DeviceModel) -> f64 {
    let w_max = w_max_of(levels);
    let mut start = 0;
    let mut total = 0.0;
    for (i, q) in levels.iter().enumerate() {
        let end = if i < th.len() { p.upper(th[i]).max(start) } else { p.x.len() };
        let (c, s1, s2) = p.range(start, end);
        if c > 0.0 {
            let (mu, v) = dm.level_moments(*q, w_max);
            total += s2 - 2.0 * mu * s1 + c * mu * mu + c * v;
        }
        start = end;
    }
    total
}

fn moments(levels: &[f64], dm: &DeviceModel) -> Vec<(f64, f64)> {
    let w_max = w_max_of(levels);
    levels.iter().map(|q| dm.level_moments(*q, w_max)).collect()
}

/// Expected error when weights go to the nearest level (how gq, uniform and LSQ assign).
pub fn expected_error_nearest(w: &Tensor, levels: &[f64], dm: &DeviceModel) -> Result<f64, String> {
    let sw = SortedWeights::from_tensor(w)?;
    let p = Prefix::new(sw.values());
    Ok(expected_error(&p, levels, &super::levels::thresholds(levels), dm))
}

/// Expected error with explicit thresholds (how gq-noise assigns).
pub fn expected_error_with(
    w: &Tensor,
    levels: &[f64],
    th: &[f64],
    dm: &DeviceModel,
) -> Result<f64, String> {
    let sw = SortedWeights::from_tensor(w)?;
    let p = Prefix::new(sw.values());
    Ok(expected_error(&p, levels, th, dm))
}

/// Golden-section minimisation of f on [a, b].
fn golden(mut a: f64, mut b: f64, f: impl Fn(f64) -> f64, iters: usize) -> f64 {
    let r = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - r * (b - a), a + r * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..iters {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - r * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + r * (b - a);
            fd = f(d);
        }
    }
    if fc < fd {
        c
    } else {
        d
    }
}

/// Options of the gq-noise fit.
#[derive(Debug, Clone)]
pub struct NoiseFitOptions {
    pub max_iter: usize,
    pub tol: f64,
}

impl Default for NoiseFitOptions {
    fn default() -> Self {
        NoiseFitOptions { max_iter: 50, tol: 1e-7 }
    }
}

/// Fits gq-noise quanta from one start (sorted levels); monotone descent.
fn descend(p: &Prefix, start: Vec<f64>, dm: &DeviceModel, opts: &NoiseFitOptions) -> NoiseFit {
    let n = start.len();
    let mut levels = start;
    let mut th = envelope_thresholds(&moments(&levels, dm));
    let mut err = expected_error(p, &levels, &th, dm);
    let mut history = vec![err];
    for _ in 0..opts.max_iter {
        let before = err;
        // 1. Centroid step, one level at a time, with the others (and the window) fixed
        //    unless the level is an outer one, whose move changes the window for all.
        for i in 0..n {
            let lo = if i == 0 {
                levels[0] - (levels[n - 1] - levels[0]).abs() - 1e-9
            } else {
                levels[i - 1]
            };
            let hi = if i + 1 == n {
                levels[n - 1] + (levels[n - 1] - levels[0]).abs() + 1e-9
            } else {
                levels[i + 1]
            };
            let eval = |q: f64| {
                let mut l = levels.clone();
                l[i] = q;
                let t = envelope_thresholds(&moments(&l, dm));
                expected_error(p, &l, &t, dm)
            };
            let q = golden(lo, hi, eval, 40);
            let mut cand = levels.clone();
            cand[i] = q;
            let t = envelope_thresholds(&moments(&cand, dm));
            let e = expected_error(p, &cand, &t, dm);
            if e < err {
                levels = cand;
                th = t;
                err = e;
            }
        }
        // 2. Window step: scale all levels.
        let base = levels.clone();
        let eval_s = |s: f64| {
            let l: Vec<f64> = base.iter().map(|q| q * s).collect();
            let t = envelope_thresholds(&moments(&l, dm));
            expected_error(p, &l, &t, dm)
        };
        let s = golden(0.3, 1.5, eval_s, 40);
        let cand: Vec<f64> = base.iter().map(|q| q * s).collect();
        let t = envelope_thresholds(&moments(&cand, dm));
        let e = expected_error(p, &cand, &t, dm);
        if e < err {
            levels = cand;
            th = t;
            err = e;
        }
        history.push(err);
        if before - err <= opts.tol * before.abs().max(1e-300) {
            break;
        }
    }
    NoiseFit { w_max: w_max_of(&levels), levels, thresholds: th, expected_error: err, history }
}

/// The gq-noise fit of one tensor: descents from the gq quanta and from the MSE-optimal
/// uniform grid; the lower expected error wins, so gq-noise is never worse (in expected
/// error, under this device model) than gq or uniform-mse. With an ideal device it returns
/// the gq quanta unchanged.
pub fn fit_gq_noise(
    w: &Tensor,
    n: usize,
    dm: &DeviceModel,
    lloyd: &LloydOptions,
    opts: &NoiseFitOptions,
) -> Result<NoiseFit, String> {
    let (gq, _) = fit_gq(w, n, lloyd)?;
    if dm.is_ideal() {
        let th = super::levels::thresholds(&gq);
        let sw = SortedWeights::from_tensor(w)?;
        let err = sw.squared_error(&gq);
        return Ok(NoiseFit {
            w_max: w_max_of(&gq),
            levels: gq,
            thresholds: th,
            history: vec![err],
            expected_error: err,
        });
    }
    let sw = SortedWeights::from_tensor(w)?;
    let p = Prefix::new(sw.values());
    let uni = super::uniform::uniform_mse_sorted(&sw, n).0;
    let a = descend(&p, gq, dm, opts);
    let b = descend(&p, uni, dm, opts);
    Ok(if b.expected_error < a.expected_error { b } else { a })
}

/// A gq-noise refit warm-started from a layer's current quanta (fine-tuning refits every K
/// steps): one monotone descent from `previous`, so the quanta move smoothly with the
/// weights instead of jumping between the two starts of a fresh fit.
pub fn refit_gq_noise(
    w: &Tensor,
    previous: &[f64],
    dm: &DeviceModel,
    opts: &NoiseFitOptions,
) -> Result<NoiseFit, String> {
    let sw = SortedWeights::from_tensor(w)?;
    sw.check_fit(previous.len())?;
    if dm.is_ideal() {
        let r = super::lloyd::lloyd_max_with_init(
            w,
            previous.len(),
            previous,
            &LloydOptions::default(),
        )?;
        let th = super::levels::thresholds(&r.levels);
        return Ok(NoiseFit {
            w_max: w_max_of(&r.levels),
            thresholds: th,
            history: vec![r.distortion],
            expected_error: r.distortion,
            levels: r.levels,
        });
    }
    let p = Prefix::new(sw.values());
    Ok(descend(&p, previous.to_vec(), dm, opts))
}
