//! One merged grid cell as the outputs see it (method, N, fine-tuning, programming variant,
//! σ, seeds, trials, mean and 95% CI as fractions), the fp32 reference at a σ, Δ-vs-fp32,
//! and the names used in files, tags and labels. Built from merged `compare::Cell`s or read
//! back from a results.csv.
use crate::error::{invalid, Result};
use crate::grid::Cell;

/// Fewer replications than this get no confidence interval (t with 1 dof is 12.7).
pub const MIN_CI_TRIALS: usize = 3;

#[derive(Debug, Clone, PartialEq)]
pub struct GridPoint {
    pub method: String,
    pub levels: usize,
    pub mode: String,
    pub sigma: f64,
    /// The programming variant (`write-verify-tol0.02`, ...) when the grid has several;
    /// None for a grid with one way of programming the weights.
    pub variant: Option<String>,
    /// The layers kept fp32 (`conv1+fc`) when the grid compares several layer policies
    /// (`compare.keep_fp32_sets`); None otherwise, and for fp32 itself.
    pub policy: Option<String>,
    /// Fine-tuning seeds pooled in this point.
    pub seeds: usize,
    /// Monte-Carlo trials, all seeds together.
    pub trials: usize,
    /// Metric mean over seeds and trials, a fraction.
    pub mean: f64,
    /// Half-width of the 95% CI of the mean (Student t; over seeds when there are several,
    /// else over trials: `sweep::stats`), a fraction.
    pub ci95: f64,
}

impl GridPoint {
    /// A merged cell; its programming variant and layer policy are kept when the grid has
    /// several of them.
    pub fn from_cell(
        c: &Cell,
        seeds: usize,
        several_variants: bool,
        several_policies: bool,
    ) -> GridPoint {
        GridPoint {
            method: c.method.clone(),
            levels: c.levels,
            mode: c.mode.clone(),
            sigma: c.sigma,
            variant: several_variants.then(|| c.reading()),
            policy: (several_policies && c.method != "fp32").then(|| c.fp32_layers.clone()),
            seeds: seeds.max(1),
            trials: c.stats.trials.len(),
            mean: c.stats.mean,
            ci95: c.stats.ci95,
        }
    }
}

impl GridPoint {
    pub fn is_fp32(&self) -> bool {
        self.method == "fp32"
    }

    /// Network name of sub-runs and sample captions: `fp32`, `gq-qat-N8`,
    /// `gq-qat-N8-fp32-conv1+fc` (a layer policy), `gq-qat-N8-write-verify-tol0.02` (a
    /// programming variant), each only when the grid has several.
    pub fn net_label(&self) -> String {
        let base = format!(
            "{}{}",
            net_label(&self.method, &self.mode, self.levels),
            policy_suffix(self.policy.as_deref().unwrap_or(""))
        );
        match &self.variant {
            Some(v) => format!("{base}-{}", path_safe(v)),
            None => base,
        }
    }

    /// How many independent replications the CI stands on: seeds when there are several,
    /// else the trials of the one seed.
    pub fn replications(&self) -> usize {
        if self.seeds >= 2 {
            self.seeds
        } else {
            self.trials
        }
    }

    /// The CI in % when there are enough replications to report one.
    pub fn ci_pct(&self) -> Option<f64> {
        (self.replications() >= MIN_CI_TRIALS && self.ci95.is_finite()).then_some(100.0 * self.ci95)
    }

    pub fn mean_pct(&self) -> f64 {
        100.0 * self.mean
    }
}

/// The sub-run name of a network: `fp32` or `gq-qat-N8`.
pub fn net_label(method: &str, mode: &str, levels: usize) -> String {
    if method == "fp32" {
        "fp32".into()
    } else {
        format!("{method}-{mode}-N{levels}")
    }
}

/// The label fragment of a layer policy: `-fp32-conv1+fc`; empty for every layer quantized.
pub fn policy_suffix(fp32_layers: &str) -> String {
    if fp32_layers.is_empty() {
        String::new()
    } else {
        format!("-fp32-{fp32_layers}")
    }
}

/// A label as one path component: anything but ASCII letters, digits, `.`, `-` and `_`
/// becomes `_`.
pub fn path_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || ".-_".contains(c) { c } else { '_' })
        .collect()
}

/// The fp32 point at `sigma` (of the same programming variant), if the grid has one.
pub fn fp32_at(points: &[GridPoint], sigma: f64) -> Option<&GridPoint> {
    points.iter().find(|p| p.is_fp32() && p.sigma == sigma)
}

/// The fp32 point that `p` is compared with: same σ and programming variant.
pub fn fp32_for<'a>(points: &'a [GridPoint], p: &GridPoint) -> Option<&'a GridPoint> {
    points.iter().find(|f| f.is_fp32() && f.sigma == p.sigma && f.variant == p.variant)
}

/// Metric minus fp32's at the same σ, in percentage points (None for fp32 itself or when the
/// grid has no fp32 network).
pub fn delta_pct(p: &GridPoint, points: &[GridPoint]) -> Option<f64> {
    if p.is_fp32() {
        return None;
    }
    fp32_for(points, p).map(|f| 100.0 * (p.mean - f.mean))
}

/// Short metric key for file names and tags: `top1`, `map50`, `miou`.
pub fn metric_key(metric_name: &str) -> String {
    let short = metric_name.split(" (").next().unwrap_or(metric_name).to_lowercase();
    match short.as_str() {
        "top-1 accuracy" => "top1".into(),
        "map@0.5" => "map50".into(),
        "miou" => "miou".into(),
        other => other.chars().filter(|c| c.is_ascii_alphanumeric()).collect(),
    }
}

/// `mAP@0.5 (%)` -> `mAP@0.5`, for titles.
pub fn short_metric(metric_name: &str) -> &str {
    metric_name.split(" (").next().unwrap_or(metric_name)
}

/// σ as a percentage without float noise: 0.07 -> `7`, 0.005 -> `0.5`.
pub fn sigma_pct(sigma: f64) -> String {
    let s = format!("{:.3}", 100.0 * sigma);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// "3 Monte-Carlo trials per noisy cell" / "2 seeds × 5 trials per noisy cell, CI over
/// seeds": the replications of σ > 0 cells (what the CIs stand on).
pub fn trial_summary(points: &[GridPoint]) -> String {
    let noisy: Vec<&GridPoint> = points.iter().filter(|p| p.sigma > 0.0).collect();
    let seeds = noisy.iter().map(|p| p.seeds).max().unwrap_or(1);
    let per_seed: Vec<usize> = noisy.iter().map(|p| p.trials / p.seeds.max(1)).collect();
    let trials = match (per_seed.iter().min(), per_seed.iter().max()) {
        (Some(l), Some(h)) if l == h => {
            format!("{l} Monte-Carlo trial{}", if *l == 1 { "" } else { "s" })
        }
        (Some(l), Some(h)) => format!("{l}-{h} Monte-Carlo trials"),
        _ => return "no noisy cells".into(),
    };
    if seeds >= 2 {
        format!("{seeds} fine-tuning seeds × {trials} per noisy cell, CI over seeds")
    } else {
        format!("{trials} per noisy cell (one fine-tuning seed: CI over device draws only)")
    }
}

/// Whether some point lacks a CI for want of replications (not because it is
/// deterministic).
pub fn some_ci_withheld(points: &[GridPoint]) -> bool {
    points.iter().any(|p| p.replications() > 1 && p.replications() < MIN_CI_TRIALS)
}

/// Reads the points of a results.csv written by the grid (columns by header name, so added
/// columns do not break it).
pub fn read_results_csv(path: &std::path::Path) -> Result<Vec<GridPoint>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(path.display().to_string(), format!("cannot read: {e}")))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| {
        header.iter().position(|h| *h == name).ok_or_else(|| {
            invalid(path.display().to_string(), format!("no `{name}` column in the header"))
        })
    };
    // Optional columns: the programming variant (several only in cost grids) and the seeds.
    let cp = header.iter().position(|h| *h == "programming");
    let cpol = header.iter().position(|h| *h == "fp32_layers");
    let ctime = header.iter().position(|h| *h == "t_inference");
    let cseeds = header.iter().position(|h| *h == "seeds");
    let (cm, cl, cmo, cs, ct, cme, cc) = (
        col("method")?,
        col("levels")?,
        col("mode")?,
        col("sigma")?,
        col("trials")?,
        col("mean")?,
        col("ci95")?,
    );
    let mut out: Vec<GridPoint> = Vec::new();
    let mut variants: Vec<String> = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let bad = |what: &str| {
            invalid(format!("{}, line {}", path.display(), i + 2), format!("bad `{what}` value"))
        };
        let get = |c: usize| f.get(c).copied().unwrap_or("");
        let num = |c: usize, what: &str| get(c).parse::<f64>().map_err(|_| bad(what));
        out.push(GridPoint {
            method: get(cm).to_string(),
            levels: get(cl).parse().map_err(|_| bad("levels"))?,
            mode: get(cmo).to_string(),
            sigma: num(cs, "sigma")?,
            // As `Cell::reading`: the programming variant, then the time after programming.
            variant: match (cp.map(&get), ctime.map(&get).filter(|t| !t.is_empty())) {
                (p, Some(t)) => Some(format!(
                    "{} t={}",
                    p.unwrap_or("single-shot"),
                    crate::analog::montecarlo::time_label(Some(
                        t.parse::<f64>().map_err(|_| bad("t_inference"))?
                    ))
                )),
                (p, None) => p.map(String::from),
            },
            policy: cpol.map(|c| get(c).to_string()).filter(|_| get(cm) != "fp32"),
            seeds: match cseeds {
                Some(c) => get(c).parse().map_err(|_| bad("seeds"))?,
                None => 1,
            },
            trials: get(ct).parse().map_err(|_| bad("trials"))?,
            mean: num(cme, "mean")?,
            ci95: num(cc, "ci95")?,
        });
        if let Some(v) = out.last().and_then(|p| p.variant.clone()) {
            if !variants.contains(&v) {
                variants.push(v);
            }
        }
    }
    // One variant (or layer policy) is none: labels stay `gq-qat-N8`.
    let mut policies: Vec<&str> = Vec::new();
    for p in &out {
        if let Some(l) = &p.policy {
            if !policies.contains(&l.as_str()) {
                policies.push(l);
            }
        }
    }
    let several_policies = policies.len() > 1;
    for p in &mut out {
        if variants.len() < 2 {
            p.variant = None;
        }
        if !several_policies {
            p.policy = None;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(method: &str, n: usize, sigma: f64, mean: f64, trials: usize) -> GridPoint {
        GridPoint {
            method: method.into(),
            levels: n,
            mode: "ptq".into(),
            sigma,
            variant: None,
            policy: None,
            seeds: 1,
            trials,
            mean,
            ci95: 0.01,
        }
    }

    #[test]
    fn delta_is_against_fp32_at_the_same_sigma() {
        let pts = vec![
            p("fp32", 32, 0.0, 0.9, 1),
            p("fp32", 32, 0.05, 0.8, 3),
            p("gq", 8, 0.05, 0.75, 3),
        ];
        assert!((delta_pct(&pts[2], &pts).unwrap() + 5.0).abs() < 1e-9);
        assert_eq!(delta_pct(&pts[0], &pts), None);
        assert_eq!(pts[2].ci_pct(), Some(1.0));
        assert_eq!(p("gq", 8, 0.05, 0.7, 2).ci_pct(), None, "2 trials get no CI");
        assert_eq!(pts[2].net_label(), "gq-ptq-N8");
        let kept = GridPoint { policy: Some("conv1+fc".into()), ..pts[2].clone() };
        assert_eq!(kept.net_label(), "gq-ptq-N8-fp32-conv1+fc");
        assert_eq!(delta_pct(&kept, &pts).map(|d| d.round()), Some(-5.0), "same fp32");
    }

    #[test]
    fn names_without_float_noise() {
        assert_eq!(sigma_pct(0.07), "7");
        assert_eq!(sigma_pct(0.005), "0.5");
        assert_eq!(sigma_pct(0.0), "0");
        assert_eq!(metric_key("mAP@0.5 (%)"), "map50");
        assert_eq!(metric_key("top-1 accuracy (%)"), "top1");
        assert_eq!(metric_key("mIoU (%)"), "miou");
    }
}
