//! TensorBoard layout of a comparison grid. The grid runs as units in separate processes
//! (possibly on other hosts, `gqcim compare-cell`) and is merged once all cells are there
//! (`gqcim merge`), so the event files are split by who can write them:
//!
//! ```text
//! <run>/tb/                       the grid's own run, written by merge:
//!                                   <task>/results_table (TEXT: table.md + how to read it),
//!                                   samples/<task>/sample_<i>/N<n> (IMAGES: one scene
//!                                   under fp32 and every method at N, side by side),
//!                                   cost/... (Pareto charts and scalars of cost grids)
//! <run>/tb/<network>/             one sub-run per grid network (`fp32`, `gq-qat-N8`),
//!                                   written by merge from the merged cells:
//!                                   <task>/<metric>_vs_sigma/N<n>           (metric in %)
//!                                   <task>/<metric>_gap_to_fp32_vs_sigma/N<n> (points)
//! <run>/tb/<network>/<unit>/      the unit's own run (`s1`, `fit2pct-s1` for gq-noise fitted
//!                                   at σ = 2%), written by the unit while it runs:
//!                                   finetune/loss at every fine-tuning step,
//!                                   deployed_weights/<layer> histograms,
//!                                   quant_error_pct/<layer>
//! ```
//!
//! TensorBoard names runs by their folder relative to `--logdir`, so every network is a
//! sub-run of the grid and TensorBoard overlays them on one card per tag: fp32 is written
//! under every N of the grid, so fp32 and every method at N = 8 share `.../N8`. Merge's
//! numbers are those of table.md (seeds pooled); a unit's are its own seed's. Each folder
//! has one writer (TensorBoard polls only the newest events file of a run while it is being
//! written), merge writes fixed-name files with a fixed wall time (a re-merge gives the same
//! bytes and replaces, never duplicates, them), and a unit run again after an interruption
//! replaces its partial log.
//!
//! The step (x axis) is σ in % of the conductance window when every σ of the grid is a
//! whole percent; otherwise σ in 0.1% ([`sigma_step_unit`]).
use super::points::{fp32_for, metric_key, path_safe, sigma_pct, GridPoint};
use crate::error::Result;
use crate::tb::Tb;
use std::path::{Path, PathBuf};

/// Wall time of every event merge writes (2026-01-01T00:00:00Z): fixed, so that the same
/// cells give the same bytes. TensorBoard's "relative" and "wall" x axes carry no meaning
/// for these σ sweeps.
pub const MERGE_WALL_TIME: f64 = 1_767_225_600.0;

/// The grid's TensorBoard folder inside its run folder.
pub fn tb_root(run: &Path) -> PathBuf {
    run.join("tb")
}

/// The sub-run of one network.
pub fn network_dir(run: &Path, net_label: &str) -> PathBuf {
    tb_root(run).join(path_safe(net_label))
}

/// The unit's own run under its network: `s<seed>`, `fit<σ>pct-s<seed>` for gq-noise.
pub fn unit_dir(run: &Path, net_label: &str, seed: u64, fit_sigma: Option<f64>) -> PathBuf {
    let fit = fit_sigma.map(|s| format!("fit{}pct-", sigma_pct(s))).unwrap_or_default();
    network_dir(run, net_label).join(format!("{fit}s{seed}"))
}

/// How many steps one percent of σ is: 1 when every σ is a whole percent, else 10.
pub fn sigma_step_unit(sigmas: &[f64]) -> f64 {
    let whole = sigmas.iter().all(|s| {
        let pct = 100.0 * s;
        (pct - pct.round()).abs() < 1e-6
    });
    if whole {
        1.0
    } else {
        10.0
    }
}

/// Human description of the x axis for the text summary.
pub fn step_meaning(unit: f64) -> String {
    if unit == 1.0 {
        "step = σ in % of the conductance window".into()
    } else {
        format!("step = σ in units of {}% of the conductance window", 1.0 / unit)
    }
}

/// The tags of one grid.
pub struct GridTags {
    pub task: String,
    /// `top1`, `map50`, `miou`.
    pub metric: String,
    pub step_per_pct: f64,
}

impl GridTags {
    pub fn new(task: &str, metric_name: &str, sigmas: &[f64]) -> GridTags {
        GridTags {
            task: task.into(),
            metric: metric_key(metric_name),
            step_per_pct: sigma_step_unit(sigmas),
        }
    }

    pub fn step(&self, sigma: f64) -> usize {
        (100.0 * sigma * self.step_per_pct).round().max(0.0) as usize
    }

    pub fn metric_tag(&self, n: usize) -> String {
        format!("{}/{}_vs_sigma/N{n}", self.task, self.metric)
    }

    pub fn gap_tag(&self, n: usize) -> String {
        format!("{}/{}_gap_to_fp32_vs_sigma/N{n}", self.task, self.metric)
    }

    pub fn table_tag(&self) -> String {
        format!("{}/results_table", self.task)
    }
}

/// Writes every network's sub-run from the merged points: the metric in % and its gap to
/// fp32 (same σ, same programming variant) in points, at step = σ. fp32 goes under every
/// N in `levels`. Networks are written in the order they first appear in `points`.
pub fn write_network_runs(
    run: &Path,
    tags: &GridTags,
    points: &[GridPoint],
    levels: &[usize],
) -> Result<()> {
    let mut labels: Vec<String> = Vec::new();
    for p in points {
        if !labels.contains(&p.net_label()) {
            labels.push(p.net_label());
        }
    }
    for label in &labels {
        let mine: Vec<&GridPoint> = points.iter().filter(|p| &p.net_label() == label).collect();
        let Some(first) = mine.first() else { continue };
        let ns = if first.is_fp32() { levels.to_vec() } else { vec![first.levels] };
        let mut tb = Tb::replaceable(&network_dir(run, label), MERGE_WALL_TIME);
        for n in ns {
            let (metric_tag, gap_tag) = (tags.metric_tag(n), tags.gap_tag(n));
            for p in &mine {
                let step = tags.step(p.sigma);
                tb.scalar(&metric_tag, p.mean_pct(), step);
                if let Some(f) = fp32_for(points, p).filter(|_| !p.is_fp32()) {
                    tb.scalar(&gap_tag, 100.0 * (p.mean - f.mean), step);
                }
            }
        }
        tb.commit()?;
    }
    Ok(())
}

/// The text of the grid's `results_table` summary: table.md, then how to read the cards.
pub fn table_text(tags: &GridTags, table_md: &str) -> String {
    format!(
        "{table_md}\n\nTensorBoard: each grid network is a run under `tb/` (its fine-tuning \
         loss and deployed-weight histograms in `tb/<network>/s<seed>`); the scalars \
         `{task}/{key}_vs_sigma/N<n>` (metric in %) and `{task}/{key}_gap_to_fp32_vs_sigma/N<n>` \
         (points) overlay fp32 and every method at one N; {}. Set smoothing to 0 for σ sweeps.",
        step_meaning(tags.step_per_pct),
        task = tags.task,
        key = tags.metric,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_sigma_in_percent_or_tenths() {
        let t = GridTags::new("detect", "mAP@0.5 (%)", &[0.0, 0.02, 0.05]);
        assert_eq!((t.step(0.05), t.metric_tag(8)), (5, "detect/map50_vs_sigma/N8".to_string()));
        let t = GridTags::new("classify", "top-1 accuracy (%)", &[0.0, 0.005]);
        assert_eq!(t.step(0.005), 5);
        assert_eq!(t.gap_tag(4), "classify/top1_gap_to_fp32_vs_sigma/N4");
        let run = Path::new("/r");
        assert_eq!(
            unit_dir(run, "gq-noise-qat-N8", 3, Some(0.02)),
            run.join("tb/gq-noise-qat-N8/fit2pct-s3")
        );
    }
}
