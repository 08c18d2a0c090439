//! Statistics over fine-tuning seeds and Monte-Carlo trials.
//!
//! A grid cell (method, N, mode, σ) holds S seeds × K trials. Seeds are the outer,
//! independent replications (each fine-tunes its own network), trials the inner ones (device
//! draws of one network), so the mean's 95% CI comes from the S seed means,
//! t(S-1)·sd(seed means)/√S, which carries both sources of spread (var of a seed mean =
//! between-seed variance + within-seed variance / K). With one seed only the within-seed
//! (device) spread is known and the CI is marked as such. Methods are compared by paired
//! differences: at a given (seed, σ) every network is evaluated with the same trial seeds,
//! so differences are taken trial by trial, averaged per seed, and the CI is over seeds.
use crate::analog::montecarlo::{t95, McStats, Trial};
use crate::grid::Cell;
use serde::{Deserialize, Serialize};

/// How a mean's 95% CI was obtained.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CiBasis {
    /// Over fine-tuning seeds (S ≥ 2): both sources of spread.
    Seeds,
    /// One seed: over Monte-Carlo trials only (device spread, not fine-tuning spread).
    TrialsOnly,
    /// One seed and one trial: no interval.
    None,
}

/// The spread of one grid cell over seeds and trials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedSpread {
    pub seeds: usize,
    pub trials_per_seed: usize,
    pub mean: f64,
    /// Half-width of the 95% CI of the mean (NaN when `basis` is `none`).
    pub ci95: f64,
    pub basis: CiBasis,
    /// Standard deviation of the seed means (NaN with one seed).
    pub between_seed_std: f64,
    /// Pooled within-seed standard deviation over trials (NaN with one trial per seed).
    pub within_seed_std: f64,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn sample_std(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return f64::NAN;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// Mean and CI half-width of independent replications, with the basis it stands on.
fn mean_ci(seed_values: &[Vec<f64>]) -> (f64, f64, CiBasis) {
    let means: Vec<f64> = seed_values.iter().map(|v| mean(v)).collect();
    if means.len() >= 2 {
        let s = means.len();
        return (mean(&means), t95(s - 1) * sample_std(&means) / (s as f64).sqrt(), CiBasis::Seeds);
    }
    let v = seed_values.first().cloned().unwrap_or_default();
    if v.len() >= 2 {
        (mean(&v), t95(v.len() - 1) * sample_std(&v) / (v.len() as f64).sqrt(), CiBasis::TrialsOnly)
    } else {
        (mean(&v), f64::NAN, CiBasis::None)
    }
}

/// The spread of one cell given its per-seed results.
pub fn spread(per_seed: &[&Cell]) -> SeedSpread {
    let values: Vec<Vec<f64>> =
        per_seed.iter().map(|c| c.stats.trials.iter().map(|t| t.metric).collect()).collect();
    let (m, ci, basis) = mean_ci(&values);
    let means: Vec<f64> = values.iter().map(|v| mean(v)).collect();
    let within: Vec<f64> = values.iter().map(|v| sample_std(v)).filter(|s| s.is_finite()).collect();
    let within_seed_std = if within.is_empty() {
        f64::NAN
    } else {
        (within.iter().map(|s| s * s).sum::<f64>() / within.len() as f64).sqrt()
    };
    SeedSpread {
        seeds: per_seed.len(),
        trials_per_seed: values.iter().map(Vec::len).min().unwrap_or(0),
        mean: m,
        ci95: ci,
        basis,
        between_seed_std: sample_std(&means),
        within_seed_std,
    }
}

/// One row of the table from its per-seed cells. With one seed the cell is returned as it
/// is (the output of a one-seed grid is unchanged); with several, the trials of all seeds
/// are pooled and `ci95` is the seed-based interval.
pub fn aggregate(per_seed: &[&Cell]) -> Cell {
    if per_seed.len() == 1 {
        return per_seed[0].clone();
    }
    let first = per_seed[0];
    let mut trials: Vec<Trial> = Vec::new();
    for c in per_seed {
        trials.extend(c.stats.trials.iter().cloned());
    }
    for (i, t) in trials.iter_mut().enumerate() {
        t.trial = i;
    }
    let mut stats = McStats::from_trials(trials);
    let sp = spread(per_seed);
    stats.mean = sp.mean;
    stats.ci95 = sp.ci95;
    let digital: Vec<f64> = per_seed.iter().map(|c| c.digital_accuracy).collect();
    Cell { stats, digital_accuracy: mean(&digital), ..first.clone() }
}

/// A method's paired difference against a baseline at one (N, σ, programming, layer policy).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairedDifference {
    pub method: String,
    pub mode: String,
    pub levels: usize,
    pub sigma: f64,
    /// Programming variant (single-shot, write-verify tolerance) both rows share.
    #[serde(default)]
    pub programming: String,
    /// Layer policy both rows share (`conv1+fc` kept fp32; empty: every layer quantized).
    #[serde(default)]
    pub fp32_layers: String,
    /// Seconds after programming both rows were read at (the time axis); None without.
    #[serde(default)]
    pub t_inference: Option<f64>,
    pub baseline_method: String,
    pub baseline_mode: String,
    /// Mean of (method − baseline), as a fraction.
    pub mean: f64,
    pub ci95: f64,
    pub basis: CiBasis,
    /// `ahead` / `behind` when the CI excludes zero, else `level`; `n/a` without a CI.
    pub verdict: String,
}

/// Trial-by-trial differences, one vector per seed (seeds matched by position: every row's
/// per-seed list is in plan order).
fn differences(a: &[&Cell], b: &[&Cell]) -> Vec<Vec<f64>> {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            x.stats
                .trials
                .iter()
                .zip(&y.stats.trials)
                .map(|(tx, ty)| tx.metric - ty.metric)
                .collect()
        })
        .collect()
}

pub fn paired(a: &[&Cell], b: &[&Cell]) -> (f64, f64, CiBasis) {
    mean_ci(&differences(a, b))
}

fn verdict(m: f64, ci: f64) -> String {
    if !ci.is_finite() {
        "n/a".into()
    } else if m - ci > 0.0 {
        "ahead".into()
    } else if m + ci < 0.0 {
        "behind".into()
    } else {
        "level".into()
    }
}

fn is_uniform(method: &str) -> bool {
    method.starts_with("uniform") || method == "lsq"
}

/// Per (N, σ, programming variant, layer policy): the best uniform row (uniform-*, lsq;
/// highest mean over modes) and every other quantized row's paired difference against it.
/// Rows of different programming or layer policies are never ranked against each other.
/// `rows` are per-seed cell lists of one (method, N, mode, σ, programming, policy) each.
pub fn against_best_uniform(rows: &[Vec<&Cell>]) -> Vec<PairedDifference> {
    let mut out = Vec::new();
    let group = |c: &Cell| {
        (
            c.levels,
            c.sigma.to_bits(),
            c.cost.programming.clone(),
            c.fp32_layers.clone(),
            c.t_inference.map(f64::to_bits),
        )
    };
    let mut keys: Vec<(usize, u64, String, String, Option<u64>)> = Vec::new();
    for r in rows {
        let k = group(r[0]);
        if r[0].method != "fp32" && !keys.contains(&k) {
            keys.push(k);
        }
    }
    for key in keys {
        let (levels, _, programming, fp32_layers, _) = key.clone();
        let here: Vec<&Vec<&Cell>> =
            rows.iter().filter(|r| r[0].method != "fp32" && group(r[0]) == key).collect();
        let best = here
            .iter()
            .filter(|r| is_uniform(&r[0].method))
            .max_by(|x, y| spread(x).mean.total_cmp(&spread(y).mean));
        let Some(best) = best else { continue };
        for r in &here {
            if std::ptr::eq(*r, *best) {
                continue;
            }
            let (m, ci, basis) = paired(r, best);
            out.push(PairedDifference {
                method: r[0].method.clone(),
                mode: r[0].mode.clone(),
                levels,
                sigma: r[0].sigma,
                programming: programming.clone(),
                fp32_layers: fp32_layers.clone(),
                t_inference: r[0].t_inference,
                baseline_method: best[0].method.clone(),
                baseline_mode: best[0].mode.clone(),
                mean: m,
                ci95: ci,
                basis,
                verdict: verdict(m, ci),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(method: &str, metrics: &[f64]) -> Cell {
        let trials = metrics
            .iter()
            .enumerate()
            .map(|(i, m)| Trial { trial: i, seed: i as i64, metric: *m })
            .collect();
        Cell {
            method: method.into(),
            levels: 2,
            mode: "qat".into(),
            sigma: 0.01,
            stats: McStats::from_trials(trials),
            digital_accuracy: 0.9,
            finetune: None,
            same_as: None,
            cost: Default::default(),
            fp32_layers: String::new(),
            t_inference: None,
        }
    }

    #[test]
    fn seed_ci_uses_seed_means_and_separates_spreads() {
        let a = cell("gq", &[0.80, 0.82]);
        let b = cell("gq", &[0.90, 0.92]);
        let c = cell("gq", &[0.85, 0.87]);
        let s = spread(&[&a, &b, &c]);
        assert_eq!(s.basis, CiBasis::Seeds);
        assert!((s.mean - 0.86).abs() < 1e-12);
        // seed means 0.81, 0.91, 0.86: sd 0.05, CI = t(2)·0.05/√3
        assert!((s.between_seed_std - 0.05).abs() < 1e-12);
        assert!((s.ci95 - 4.303 * 0.05 / 3f64.sqrt()).abs() < 1e-9);
        assert!((s.within_seed_std - (0.0002f64).sqrt()).abs() < 1e-12);
        let agg = aggregate(&[&a, &b, &c]);
        assert_eq!(agg.stats.trials.len(), 6);
        assert!((agg.stats.ci95 - s.ci95).abs() < 1e-15);
    }

    #[test]
    fn one_seed_keeps_the_cell_and_marks_the_basis() {
        let a = cell("gq", &[0.80, 0.82, 0.84]);
        assert_eq!(spread(&[&a]).basis, CiBasis::TrialsOnly);
        assert_eq!(aggregate(&[&a]).stats.mean, a.stats.mean);
        assert_eq!(spread(&[&cell("gq", &[0.8])]).basis, CiBasis::None);
    }

    #[test]
    fn paired_difference_against_the_best_uniform_row() {
        let g = [cell("gq", &[0.90, 0.91]), cell("gq", &[0.92, 0.93])];
        let u = [cell("uniform-mse", &[0.85, 0.86]), cell("uniform-mse", &[0.86, 0.88])];
        let l = [cell("lsq", &[0.80, 0.80]), cell("lsq", &[0.81, 0.81])];
        let rows: Vec<Vec<&Cell>> =
            vec![g.iter().collect(), u.iter().collect(), l.iter().collect()];
        let d = against_best_uniform(&rows);
        let gq = d.iter().find(|x| x.method == "gq").unwrap();
        assert_eq!(gq.baseline_method, "uniform-mse");
        // per-seed differences 0.05 and 0.055 -> mean 0.0525, clearly above zero
        assert!((gq.mean - 0.0525).abs() < 1e-12);
        assert_eq!(gq.verdict, "ahead");
        let lsq = d.iter().find(|x| x.method == "lsq").unwrap();
        assert_eq!(lsq.verdict, "behind");
        // an interval that straddles zero is "level"
        let x = [cell("gq", &[0.87, 0.87]), cell("gq", &[0.84, 0.84])];
        let y = [cell("uniform-mse", &[0.85, 0.85]), cell("uniform-mse", &[0.85, 0.85])];
        let rows: Vec<Vec<&Cell>> = vec![x.iter().collect(), y.iter().collect()];
        assert_eq!(against_best_uniform(&rows)[0].verdict, "level");
    }

    #[test]
    fn layer_policies_are_ranked_only_within_themselves() {
        let ends = |method: &str, metrics: &[f64]| Cell {
            fp32_layers: "conv1+fc".into(),
            ..cell(method, metrics)
        };
        // The all-layers uniform row is the better one overall, but the kept-ends gq row
        // must be compared with the kept-ends uniform row.
        let g_all = [cell("gq", &[0.80, 0.80])];
        let u_all = [cell("uniform-mse", &[0.95, 0.95])];
        let g_ends = [ends("gq", &[0.92, 0.93])];
        let u_ends = [ends("uniform-mse", &[0.90, 0.90])];
        let rows: Vec<Vec<&Cell>> = vec![
            g_all.iter().collect(),
            u_all.iter().collect(),
            g_ends.iter().collect(),
            u_ends.iter().collect(),
        ];
        let d = against_best_uniform(&rows);
        assert_eq!(d.len(), 2, "{d:?}");
        let e = d.iter().find(|x| x.fp32_layers == "conv1+fc").unwrap();
        assert!((e.mean - 0.025).abs() < 1e-12, "{e:?}");
        let a = d.iter().find(|x| x.fp32_layers.is_empty()).unwrap();
        assert!((a.mean + 0.15).abs() < 1e-12, "{a:?}");
    }
}
