//! Fitting a device preset to one's own measurements (`gqcim fit-device`), in the form of
//! aihwkit's `PCMLikeNoiseModel` (Nandakumar et al., ICECS 2019; IBM aihwkit
//! src/aihwkit/inference/noise/pcm.py): a polynomial programming-noise sigma(g), drift
//! exponents nu with state-dependent mean and spread (clamp(a·ln(g/g_max) + b, lo, hi)), and
//! accumulated 1/f read noise Q(g)·sqrt(ln((t + t_read)/(2·t_read))).
//!
//! Input: a CSV with a header naming the columns `g_target` (µS), `g` (the programmed /
//! read conductance, µS), `t` (seconds after programming) and optionally `device` (an id:
//! the same device read at several times). The first read time t0 is the drift's reference.
//!
//! Estimation (errors-in-variables corrected, so read noise does not inflate the others):
//! 1. per device, ln g against ln(t/t0) by least squares: the slope is −nu, the residuals
//!    estimate the relative read noise; Q(g)² = E[r²/L(t)]·n/(n−2) per target level, then
//!    ln Q = ln q0 − exponent·ln(g/g_max) by least squares;
//! 2. per target level, Var(nu_hat) − mean residual variance / Sxx estimates the spread of
//!    nu; mean and spread against ln(g/g_max) are fitted by a line clamped at both ends
//!    (the split of the levels into low clamp / line / high clamp with the least squared
//!    error);
//! 3. per target level, the spread of g(t0) − g_target minus the read noise at t0 is the
//!    programming noise; sigma(g) = c0 + c1·g + ... by weighted least squares.
pub use super::fit_output::fit_device_command;
pub use super::measurements::{read_csv, Measurement};
use crate::config::LogLinear;
use crate::error::{data_err, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// t_read of the 1/f fit (aihwkit pcm.py default): not identifiable from read times ≫ it.
pub const T_READ: f64 = 250e-9;

/// Options of the fit.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// Degree of the programming-noise polynomial.
    pub degree: usize,
    /// Fit drift and read noise (needs at least two read times and device ids).
    pub drift: bool,
    /// g_max of the window (default: the largest target).
    pub g_max: Option<f64>,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions { degree: 2, drift: true, g_max: None }
    }
}

/// Per-level statistics behind the fit (also what the plot shows).
#[derive(Debug, Clone, Default)]
pub struct LevelStats {
    pub g_target: f64,
    pub devices: usize,
    pub sigma_prog: f64,
    pub nu_mean: f64,
    pub nu_std: f64,
    pub q: f64,
}

/// The fitted device.
#[derive(Debug, Clone)]
pub struct DeviceFit {
    pub g_max: f64,
    pub t0: f64,
    pub coeffs: Vec<f64>,
    pub nu_mean: Option<LogLinear>,
    pub nu_std: Option<LogLinear>,
    /// (q0, exponent) of the 1/f read noise.
    pub read: Option<(f64, f64)>,
    pub levels: Vec<LevelStats>,
    pub rows: usize,
}

/// Solves the weighted least-squares polynomial fit y ≈ Σ c_k x^k.
fn polyfit(x: &[f64], y: &[f64], w: &[f64], degree: usize) -> Option<Vec<f64>> {
    let n = degree + 1;
    let mut a = vec![vec![0.0; n + 1]; n];
    for ((xi, yi), wi) in x.iter().zip(y).zip(w) {
        let pw: Vec<f64> = (0..n).map(|k| xi.powi(k as i32)).collect();
        for r in 0..n {
            for c in 0..n {
                a[r][c] += wi * pw[r] * pw[c];
            }
            a[r][n] += wi * pw[r] * yi;
        }
    }
    // Gaussian elimination with partial pivoting.
    for c in 0..n {
        let p = (c..n).max_by(|i, j| a[*i][c].abs().total_cmp(&a[*j][c].abs()))?;
        if a[p][c].abs() < 1e-300 {
            return None;
        }
        a.swap(c, p);
        let pivot = a[c].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != c {
                let f = row[c] / pivot[c];
                for (x, pv) in row.iter_mut().zip(&pivot).skip(c) {
                    *x -= f * pv;
                }
            }
        }
    }
    Some((0..n).map(|k| a[k][n] / a[k][k]).collect())
}

/// Fits y ≈ clamp(slope·x + intercept, lo, hi) on points sorted by x: the levels are split
/// into a clamped run at each end and a line between (at least two points), the split with
/// the least weighted squared error wins.
fn fit_clamped_line(pts: &[(f64, f64, f64)], default_lo: f64, default_hi: f64) -> LogLinear {
    let mut p = pts.to_vec();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = p.len();
    let wmean = |s: &[(f64, f64, f64)]| {
        let w: f64 = s.iter().map(|q| q.2).sum();
        s.iter().map(|q| q.1 * q.2).sum::<f64>() / w.max(1e-300)
    };
    let sse_const =
        |s: &[(f64, f64, f64)], c: f64| s.iter().map(|q| q.2 * (q.1 - c).powi(2)).sum::<f64>();
    if n < 2 {
        let c = if n == 1 { p[0].1 } else { 0.0 };
        return LogLinear {
            slope: 0.0,
            intercept: c,
            min: c.min(default_lo).max(-1.0),
            max: c.max(default_hi).min(1.0),
        };
    }
    let mut best: Option<(f64, LogLinear)> = None;
    for i in 0..n {
        for j in (i + 1)..n {
            let mid = &p[i..=j];
            let x: Vec<f64> = mid.iter().map(|q| q.0).collect();
            let y: Vec<f64> = mid.iter().map(|q| q.1).collect();
            let w: Vec<f64> = mid.iter().map(|q| q.2).collect();
            let Some(c) = polyfit(&x, &y, &w, 1) else { continue };
            let (b, a) = (c[0], c[1]);
            let sse_mid: f64 = mid.iter().map(|q| q.2 * (q.1 - (a * q.0 + b)).powi(2)).sum();
            let (left, right) = (&p[..i], &p[j + 1..]);
            let (cl, cr) = (wmean(left), wmean(right));
            let sse = sse_mid + sse_const(left, cl) + sse_const(right, cr);
            // The clamps: the end runs' levels, or the line's own range when a run is empty.
            let yl = if left.is_empty() { a * p[0].0 + b } else { cl };
            let yr = if right.is_empty() { a * p[n - 1].0 + b } else { cr };
            let (mut lo, mut hi) = (yl.min(yr), yl.max(yr));
            if left.is_empty() == right.is_empty() && left.is_empty() {
                lo = lo.min(default_lo);
                hi = hi.max(default_hi);
            } else if left.is_empty() || right.is_empty() {
                // One clamped end: the other side stays open.
                let open_is_low = (left.is_empty() && yl < yr) || (right.is_empty() && yr < yl);
                if open_is_low {
                    lo = default_lo.min(lo);
                } else {
                    hi = default_hi.max(hi);
                }
            }
            let f = LogLinear { slope: a, intercept: b, min: lo.max(-1.0), max: hi.min(1.0) };
            // A clamp costs two parameters: prefer fewer unless clearly better.
            let penalty = 1.0 + 0.02 * ((i > 0) as u8 + (j + 1 < n) as u8) as f64;
            let score = sse * penalty;
            if best.as_ref().is_none_or(|(s, _)| score < *s) {
                best = Some((score, f));
            }
        }
    }
    best.map(|(_, f)| f).unwrap_or(LogLinear {
        slope: 0.0,
        intercept: wmean(&p),
        min: default_lo,
        max: default_hi,
    })
}

/// Fits E[z] = q0²·x^(−2e) to per-device (x = g_p/g_max, z = Q² estimate): e from the
/// slope of ln z against ln x (every z has the same degrees of freedom, so the log's bias is
/// a constant that leaves the slope alone), then q0² = mean(z·x^(2e)) (unbiased).
fn fit_q(pts: &[(f64, f64)]) -> Option<(f64, f64)> {
    let ok: Vec<&(f64, f64)> = pts.iter().filter(|(x, z)| *x > 0.0 && *z > 0.0).collect();
    if ok.len() < 2 {
        return None;
    }
    let lx: Vec<f64> = ok.iter().map(|(x, _)| x.ln()).collect();
    let lz: Vec<f64> = ok.iter().map(|(_, z)| z.ln()).collect();
    let c = polyfit(&lx, &lz, &vec![1.0; ok.len()], 1)?;
    let e = -0.5 * c[1];
    let q0sq = ok.iter().map(|(x, z)| z * x.powf(2.0 * e)).sum::<f64>() / ok.len() as f64;
    Some((q0sq.sqrt(), e))
}

/// Groups measurements by target level (targets equal to 1e-9 relative).
fn levels_of(ms: &[Measurement]) -> Vec<f64> {
    let mut t: Vec<f64> = ms.iter().map(|m| m.g_target).collect();
    t.sort_by(f64::total_cmp);
    t.dedup_by(|a, b| (*a - *b).abs() <= 1e-9 * b.abs().max(1e-12));
    t
}

fn level_index(levels: &[f64], g: f64) -> usize {
    let i = levels.partition_point(|l| *l < g - 1e-9 * g.abs().max(1e-12));
    i.min(levels.len() - 1)
}

/// L(t) = ln((t + t_read)/(2·t_read)) of the accumulated 1/f noise at absolute time t.
fn one_over_f_log(t: f64) -> f64 {
    ((t + T_READ) / (2.0 * T_READ)).ln()
}

/// Fits a device to measurements. `origin` names the data in errors.
pub fn fit(ms: &[Measurement], opts: &FitOptions, origin: &Path) -> Result<DeviceFit> {
    let levels = levels_of(ms);
    if levels.len() < opts.degree + 1 {
        return Err(data_err(
            origin,
            format!(
                "column `g_target`: {} distinct target levels, a degree-{} sigma(g) needs at \
                 least {}",
                levels.len(),
                opts.degree,
                opts.degree + 1
            ),
        ));
    }
    if levels.len() > 4096 {
        return Err(data_err(
            origin,
            format!("column `g_target`: {} distinct targets; round targets to the programmed levels (at most 4096)", levels.len()),
        ));
    }
    let g_max = opts.g_max.unwrap_or(*levels.last().unwrap_or(&1.0)).max(1e-9);
    let t0 = ms.iter().map(|m| m.t).fold(f64::INFINITY, f64::min);
    let mut stats: Vec<LevelStats> =
        levels.iter().map(|g| LevelStats { g_target: *g, ..Default::default() }).collect();

    // 1. Per device: ln g against ln(t/t0).
    let mut nu_fit = (None, None);
    let mut read = None;
    if opts.drift {
        let mut by_dev: BTreeMap<&str, Vec<&Measurement>> = BTreeMap::new();
        for m in ms {
            by_dev.entry(m.device.as_deref().unwrap_or("")).or_default().push(m);
        }
        // Per level: slopes, residual variances / Sxx, and r²/L(t) terms.
        let mut nus: Vec<Vec<f64>> = vec![Vec::new(); levels.len()];
        let mut slope_var: Vec<Vec<f64>> = vec![Vec::new(); levels.len()];
        let mut q2: Vec<Vec<f64>> = vec![Vec::new(); levels.len()];
        let mut per_device_q: Vec<(f64, f64)> = Vec::new();
        for (_, reads) in by_dev {
            if reads.len() < 3 || reads.iter().any(|m| m.g <= 0.0) {
                continue; // two reads leave no residual; zero reads have no log.
            }
            let li = level_index(&levels, reads[0].g_target);
            let x: Vec<f64> = reads.iter().map(|m| (m.t / t0).ln()).collect();
            let y: Vec<f64> = reads.iter().map(|m| m.g.ln()).collect();
            let n = x.len() as f64;
            let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
            let sxx: f64 = x.iter().map(|v| (v - mx).powi(2)).sum();
            if sxx <= 0.0 {
                continue;
            }
            let sxy: f64 = x.iter().zip(&y).map(|(a, b)| (a - mx) * (b - my)).sum();
            let slope = sxy / sxx;
            let res: Vec<f64> =
                x.iter().zip(&y).map(|(a, b)| b - (my + slope * (a - mx))).collect();
            let s2 = res.iter().map(|r| r * r).sum::<f64>() / (n - 2.0);
            nus[li].push(-slope);
            slope_var[li].push(s2 / sxx);
            // Relative residuals in the linear domain (ln(1 + x) would bias large noise).
            let qq: f64 = res
                .iter()
                .zip(&reads)
                .map(|(r, m)| r.exp_m1().powi(2) / one_over_f_log(m.t))
                .sum::<f64>()
                / (n - 2.0);
            q2[li].push(qq);
            // Q depends on the device's programmed conductance (its fit at t0), not its target.
            let g_p = (my - slope * mx).exp();
            per_device_q.push(((g_p / g_max).max(1e-9), qq));
        }
        let mut mean_pts = Vec::new();
        let mut std_pts = Vec::new();
        let mut q_pts = (Vec::new(), Vec::new(), Vec::new());
        for (k, s) in stats.iter_mut().enumerate() {
            let v = &nus[k];
            s.devices = v.len();
            if v.len() < 3 || s.g_target <= 0.0 {
                continue;
            }
            let n = v.len() as f64;
            let m = v.iter().sum::<f64>() / n;
            let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
            let noise = slope_var[k].iter().sum::<f64>() / n;
            s.nu_mean = m;
            s.nu_std = (var - noise).max(0.0).sqrt();
            s.q = (q2[k].iter().sum::<f64>() / n).max(0.0).sqrt();
            let l = (s.g_target / g_max).ln();
            mean_pts.push((l, s.nu_mean, n));
            std_pts.push((l, s.nu_std, n));
            if s.q > 0.0 {
                q_pts.0.push(l);
                q_pts.1.push(s.q.ln());
                q_pts.2.push(n);
            }
        }
        if mean_pts.len() < 2 {
            return Err(data_err(
                origin,
                "column `device`: fewer than two target levels have three or more devices read \
                 at three or more times; cannot fit drift (or pass --no-drift)",
            ));
        }
        nu_fit = (
            Some(fit_clamped_line(&mean_pts, 0.0, 1.0)),
            Some(fit_clamped_line(&std_pts, 0.0, 1.0)),
        );
        if q_pts.0.len() >= 2 {
            read = fit_q(&per_device_q);
        }
    }

    // 3. Programming noise at the first read, less the read noise there.
    let mut x = Vec::new();
    let mut y = Vec::new();
    let mut w = Vec::new();
    for (k, s) in stats.iter_mut().enumerate() {
        let first: Vec<&Measurement> =
            ms.iter().filter(|m| m.t == t0 && level_index(&levels, m.g_target) == k).collect();
        if first.len() < 2 {
            continue;
        }
        let n = first.len() as f64;
        let var = first.iter().map(|m| (m.g - m.g_target).powi(2)).sum::<f64>() / n;
        // The read noise at t0 of each device, from its own (programmed) conductance.
        let read_var = match read {
            Some((q0, e)) => {
                first
                    .iter()
                    .map(|m| {
                        let q = (q0 / (m.g / g_max).powf(e).max(1e-3)).min(0.2);
                        m.g * m.g * q * q
                    })
                    .sum::<f64>()
                    / n
                    * one_over_f_log(t0)
            }
            None => 0.0,
        };
        s.sigma_prog = (var - read_var).max(0.0).sqrt();
        x.push(s.g_target);
        y.push(s.sigma_prog);
        w.push(n);
    }
    let coeffs = polyfit(&x, &y, &w, opts.degree).ok_or_else(|| {
        data_err(
            origin,
            format!(
                "column `g_target`: the programming-noise fit is singular ({} levels with two or \
                 more reads at the first time {t0} s)",
                x.len()
            ),
        )
    })?;
    Ok(DeviceFit {
        g_max,
        t0,
        coeffs,
        nu_mean: nu_fit.0,
        nu_std: nu_fit.1,
        read,
        levels: stats,
        rows: ms.len(),
    })
}
