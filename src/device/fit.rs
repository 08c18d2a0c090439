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
use crate::config::ReadNoise;
use crate::config::{AnalogConfig, Clip, Drift, DriftCompensation, LogLinear, ProgrammingNoise};
use crate::error::{data_err, GqcimError, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// t_read of the 1/f fit (aihwkit pcm.py default): not identifiable from read times ≫ it.
pub const T_READ: f64 = 250e-9;

/// One measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub g_target: f64,
    pub g: f64,
    pub t: f64,
    pub device: Option<String>,
}

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

fn csv_err(path: &Path, line: usize, column: &str, msg: impl std::fmt::Display) -> GqcimError {
    data_err(path, format!("line {line}, column `{column}`: {msg}"))
}

/// Reads a measurement CSV; every problem names the file, the line and the column.
pub fn read_csv(path: &Path, need_drift: bool) -> Result<Vec<Measurement>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| data_err(path, format!("cannot read the measurement CSV: {e}")))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or_else(|| data_err(path, "empty CSV (no header)"))?;
    let names: Vec<String> = header.split(',').map(|s| s.trim().to_ascii_lowercase()).collect();
    let col = |n: &str| names.iter().position(|c| c == n);
    let mut idx = [0usize; 3];
    for (k, n) in ["g_target", "g", "t"].iter().enumerate() {
        idx[k] = col(n).ok_or_else(|| {
            data_err(
                path,
                format!(
                    "line 1: missing column `{n}` (need g_target, g, t and optionally device; \
                     found {})",
                    names.join(", ")
                ),
            )
        })?;
    }
    let dev = col("device");
    let mut out = Vec::new();
    for (i, line) in lines {
        let ln = i + 1;
        let cells: Vec<&str> = line.split(',').map(|s| s.trim()).collect();
        if cells.len() != names.len() {
            return Err(data_err(
                path,
                format!("line {ln}: {} fields, the header has {}", cells.len(), names.len()),
            ));
        }
        let num = |k: usize, name: &str| -> Result<f64> {
            let v: f64 = cells[idx[k]].parse().map_err(|_| {
                csv_err(path, ln, name, format!("`{}` is not a number", cells[idx[k]]))
            })?;
            if !v.is_finite() {
                return Err(csv_err(path, ln, name, format!("{v} is not finite")));
            }
            Ok(v)
        };
        let g_target = num(0, "g_target")?;
        let g = num(1, "g")?;
        let t = num(2, "t")?;
        if g_target < 0.0 {
            return Err(csv_err(path, ln, "g_target", format!("negative conductance {g_target}")));
        }
        if g < 0.0 {
            return Err(csv_err(path, ln, "g", format!("negative conductance {g}")));
        }
        if t <= 0.0 {
            return Err(csv_err(
                path,
                ln,
                "t",
                format!("time after programming must be > 0, got {t}"),
            ));
        }
        let device = dev.map(|d| cells[d].to_string());
        if device.as_deref() == Some("") {
            return Err(csv_err(path, ln, "device", "empty device id"));
        }
        out.push(Measurement { g_target, g, t, device });
    }
    if out.is_empty() {
        return Err(data_err(path, "no measurements after the header"));
    }
    if need_drift {
        let t0 = out.iter().map(|m| m.t).fold(f64::INFINITY, f64::min);
        if out.iter().all(|m| m.t == t0) {
            return Err(data_err(
                path,
                format!(
                    "column `t`: one time point only ({t0} s); fitting drift needs reads at two or \
                     more times (or pass --no-drift)"
                ),
            ));
        }
        if dev.is_none() {
            return Err(data_err(
                path,
                "line 1: missing column `device`: fitting drift needs the same device read at \
                 several times (or pass --no-drift)",
            ));
        }
    }
    Ok(out)
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

impl DeviceFit {
    /// The fitted device as `analog` fields (a preset usable with `preset_file`).
    pub fn to_analog(&self) -> AnalogConfig {
        let mut a = AnalogConfig {
            g_min: 0.0,
            g_max: self.g_max,
            clip: Clip::NonNegative,
            programming_noise: ProgrammingNoise::Polynomial { coeffs: self.coeffs.clone() },
            ..Default::default()
        };
        if let (Some(m), Some(s)) = (&self.nu_mean, &self.nu_std) {
            a.drift =
                Drift::GPowerLaw { nu_mean: m.clone(), nu_std: s.clone(), t0: self.t0, fold: true };
            a.drift_compensation = Some(DriftCompensation::Global);
            a.t_inference = super::presets::STANDARD_TIMES.to_vec();
        }
        if let Some((q0, exponent)) = self.read {
            // Times in the preset count from t0 (the first read), as the drift's.
            a.read_noise = ReadNoise::OneOverF {
                q0,
                exponent,
                floor: 1e-3,
                q_max: 0.2,
                t_read: T_READ,
                t0: self.t0,
            };
        }
        a
    }

    /// The preset YAML: only the device fields, with a provenance comment.
    pub fn to_yaml(&self, source: &str) -> String {
        let a = self.to_analog();
        let mut m = serde_yaml::Mapping::new();
        let v = serde_yaml::to_value(&a).unwrap_or(serde_yaml::Value::Null);
        for k in [
            "g_min",
            "g_max",
            "clip",
            "programming_noise",
            "drift",
            "read_noise",
            "drift_compensation",
            "t_inference",
        ] {
            if let Some(x) = v.get(k) {
                if !x.is_null() {
                    m.insert(serde_yaml::Value::String(k.into()), x.clone());
                }
            }
        }
        format!(
            "# gqcim fit-device from {source}: {} measurements, {} target levels, t0 = {} s\n\
             # use with analog: {{preset_file: THIS_FILE}}\n{}",
            self.rows,
            self.levels.len(),
            self.t0,
            serde_yaml::to_string(&m).unwrap_or_default()
        )
    }

    /// Data against fit: sigma(g) in one PNG, nu mean and spread (×100) in `<stem>_drift.png`.
    pub fn plot(&self, path: &Path) -> std::result::Result<(), String> {
        let dm = super::DeviceModel::from_analog(&self.to_analog());
        let data: Vec<(f64, f64, f64)> = self
            .levels
            .iter()
            .filter(|s| s.sigma_prog > 0.0)
            .map(|s| (s.g_target, s.sigma_prog, 0.0))
            .collect();
        let fit: Vec<(f64, f64, f64)> =
            self.levels.iter().map(|s| (s.g_target, dm.sigma_at(s.g_target), 0.0)).collect();
        line_chart(
            path,
            "programming noise: measured vs fitted sigma(g)",
            "target conductance (µS)",
            "sigma (µS)",
            &[
                Series { label: "measured".into(), points: data },
                Series { label: "fit".into(), points: fit },
            ],
            false,
        )?;
        if self.nu_mean.is_none() {
            return Ok(());
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("fit");
        let drift_path = path.with_file_name(format!("{stem}_drift.png"));
        let pts = |f: &dyn Fn(&LevelStats) -> f64| -> Vec<(f64, f64, f64)> {
            self.levels
                .iter()
                .filter(|s| s.devices >= 3)
                .map(|s| (s.g_target, 100.0 * f(s), 0.0))
                .collect()
        };
        let fitted = |which: usize| -> Vec<(f64, f64, f64)> {
            self.levels
                .iter()
                .filter(|s| s.devices >= 3)
                .map(|s| {
                    let (m, sd) = dm.nu_stats(s.g_target).unwrap_or((0.0, 0.0));
                    (s.g_target, 100.0 * if which == 0 { m } else { sd }, 0.0)
                })
                .collect()
        };
        line_chart(
            &drift_path,
            "drift exponent nu: measured vs fitted (×100)",
            "target conductance (µS)",
            "nu × 100",
            &[
                Series { label: "mean measured".into(), points: pts(&|s| s.nu_mean) },
                Series { label: "mean fit".into(), points: fitted(0) },
                Series { label: "std measured".into(), points: pts(&|s| s.nu_std) },
                Series { label: "std fit".into(), points: fitted(1) },
            ],
            false,
        )
    }
}

/// `gqcim fit-device`: reads the CSV, fits, writes the preset YAML (atomically) and the
/// plot; prints the fitted parameters. Returns the YAML.
pub fn fit_device_command(
    csv: &Path,
    out: &Path,
    plot: Option<&Path>,
    opts: &FitOptions,
) -> Result<String> {
    if !(1..=6).contains(&opts.degree) {
        return Err(crate::error::invalid(
            "--degree",
            format!("expected 1..=6, got {}", opts.degree),
        ));
    }
    if let Some(g) = opts.g_max {
        if !(g > 0.0 && g.is_finite()) {
            return Err(crate::error::invalid("--g-max", format!("must be > 0, got {g}")));
        }
    }
    let ms = read_csv(csv, opts.drift)?;
    let f = fit(&ms, opts, csv)?;
    let yaml = f.to_yaml(&csv.display().to_string());
    // The preset must load as an analog section before it is written.
    let check = format!("analog:\n{}", indent(&yaml));
    crate::config::Config::from_yaml_str(&check, &out.display().to_string(), &[])?;
    crate::checkpoint::write_text_atomic(out, &yaml)?;
    if let Some(p) = plot {
        f.plot(p).map_err(|e| data_err(p, format!("cannot draw the plot: {e}")))?;
    }
    println!(
        "fit-device: {} measurements, {} levels, t0 = {} s\n  sigma(g) coeffs (µS): {:?}\n  \
         nu mean: {:?}\n  nu std: {:?}\n  1/f read noise (q0, exponent): {:?}\nwrote {}",
        f.rows,
        f.levels.len(),
        f.t0,
        f.coeffs,
        f.nu_mean,
        f.nu_std,
        f.read,
        out.display()
    );
    Ok(yaml)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// One curve of a fit plot: (x, y, unused CI) points.
struct Series {
    label: String,
    points: Vec<(f64, f64, f64)>,
}

/// Data-vs-fit chart through the grid's renderer: measured series as markers, fitted ones
/// as lines, x ticks at (at most eight of) the measured target conductances.
fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    _log_x: bool,
) -> std::result::Result<(), String> {
    use crate::glance::plot::{render, Chart, Draw, Line, Marker, PlotPoint, XAxis};
    use plotters::style::RGBColor;
    // Okabe-Ito blue and vermillion: measured and fitted of one quantity share a colour.
    const COLOURS: [RGBColor; 2] = [RGBColor(0, 114, 178), RGBColor(213, 94, 0)];
    let mut xs: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let step = xs.len().div_ceil(8).max(1);
    let ticks: Vec<f64> = xs.iter().step_by(step).copied().collect();
    let lines = series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let fitted = s.label.contains("fit");
            Line {
                label: s.label.clone(),
                colour: COLOURS[(i / 2) % COLOURS.len()],
                marker: if fitted { Marker::Square } else { Marker::Circle },
                draw: if fitted { Draw::Line } else { Draw::Markers },
                points: s.points.iter().map(|p| PlotPoint { x: p.0, y: p.1, ci: None }).collect(),
            }
        })
        .collect();
    let chart = Chart {
        title: title.into(),
        x_label: x_label.into(),
        y_label: y_label.into(),
        caption: Vec::new(),
        x: XAxis::Values(ticks),
        lines,
        reference: None,
        y_bounds: None,
    };
    render(path, &chart).map(|_| ())
}
