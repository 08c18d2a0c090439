//! One evaluated grid cell as the outputs see it (method, N, fine-tuning, σ, trials, mean and
//! 95% CI as fractions), the fp32 reference at a σ, Δ-vs-fp32, and the names used in files,
//! tags and labels. Built from `compare::Cell`s or read back from a results.csv.
use crate::error::{invalid, Result};

/// Fewer trials than this get no confidence interval (t with 1 dof is 12.7).
pub const MIN_CI_TRIALS: usize = 3;

#[derive(Debug, Clone, PartialEq)]
pub struct GridPoint {
    pub method: String,
    pub levels: usize,
    pub mode: String,
    pub sigma: f64,
    pub trials: usize,
    /// Metric mean over trials, a fraction.
    pub mean: f64,
    /// Half-width of the 95% CI of the mean (Student t), a fraction.
    pub ci95: f64,
}

impl GridPoint {
    pub fn is_fp32(&self) -> bool {
        self.method == "fp32"
    }

    /// Network name of sub-runs and sample captions: `fp32`, `gq-qat-N8`.
    pub fn net_label(&self) -> String {
        if self.is_fp32() {
            "fp32".into()
        } else {
            format!("{}-{}-N{}", self.method, self.mode, self.levels)
        }
    }

    /// Series name of plots (one series per method and fine-tuning): `gq qat`.
    pub fn series_label(&self) -> String {
        if self.is_fp32() {
            "fp32 (32-bit float)".into()
        } else {
            format!("{} {}", self.method, self.mode)
        }
    }

    /// The CI in % when there are enough trials to report one.
    pub fn ci_pct(&self) -> Option<f64> {
        (self.trials >= MIN_CI_TRIALS && self.ci95.is_finite()).then_some(100.0 * self.ci95)
    }

    pub fn mean_pct(&self) -> f64 {
        100.0 * self.mean
    }
}

/// The fp32 point at `sigma`, if the grid has one.
pub fn fp32_at(points: &[GridPoint], sigma: f64) -> Option<&GridPoint> {
    points.iter().find(|p| p.is_fp32() && p.sigma == sigma)
}

/// Metric minus fp32's at the same σ, in percentage points (None for fp32 itself or when the
/// grid has no fp32 network).
pub fn delta_pct(p: &GridPoint, points: &[GridPoint]) -> Option<f64> {
    if p.is_fp32() {
        return None;
    }
    fp32_at(points, p.sigma).map(|f| 100.0 * (p.mean - f.mean))
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

/// "3 trials per noisy cell" / "2-5 trials per cell": the trial counts of σ > 0 cells.
pub fn trial_summary(points: &[GridPoint]) -> String {
    let noisy: Vec<usize> = points.iter().filter(|p| p.sigma > 0.0).map(|p| p.trials).collect();
    let (lo, hi) = (noisy.iter().min(), noisy.iter().max());
    match (lo, hi) {
        (Some(l), Some(h)) if l == h => {
            format!("{l} Monte-Carlo trial{} per noisy cell", if *l == 1 { "" } else { "s" })
        }
        (Some(l), Some(h)) => format!("{l}-{h} Monte-Carlo trials per noisy cell"),
        _ => "no noisy cells".into(),
    }
}

/// Whether some point lacks a CI for want of trials (not because it is deterministic).
pub fn some_ci_withheld(points: &[GridPoint]) -> bool {
    points.iter().any(|p| p.trials > 1 && p.trials < MIN_CI_TRIALS)
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
    let (cm, cl, cmo, cs, ct, cme, cc) = (
        col("method")?,
        col("levels")?,
        col("mode")?,
        col("sigma")?,
        col("trials")?,
        col("mean")?,
        col("ci95")?,
    );
    let mut out = Vec::new();
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
            trials: get(ct).parse().map_err(|_| bad("trials"))?,
            mean: num(cme, "mean")?,
            ci95: num(cc, "ci95")?,
        });
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
