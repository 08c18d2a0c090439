//! TensorBoard layout of a comparison grid: every grid network is a sub-run of the grid's
//! run folder (`tb/fp32`, `tb/gq-qat-N8`), so TensorBoard colours them as runs and overlays
//! them on one card per tag. Tags name the task and metric:
//!
//! - `<task>/<metric>_vs_sigma/N<n>`: the metric in % against σ; fp32 is written under every
//!   N of the grid, so fp32 and each method at N = 8 share the card `.../N8`;
//! - `<task>/<metric>_gap_to_fp32_vs_sigma/N<n>`: metric minus fp32's at that σ, in
//!   percentage points (0 = as good as 32-bit);
//! - `finetune/loss`: the training loss at every fine-tuning step (gq-noise, fitted once per
//!   σ: `finetune/loss_fit_sigma_<s>pct`);
//! - `deployed_weights/<layer>` (histogram of the weights the crossbar is programmed with:
//!   quantized, or fp32) and `quant_error_pct/<layer>` (‖Wq − W‖/‖W‖ in %), step 0.
//!
//! The step (x axis) is σ in % of the conductance window when every σ of the grid is a
//! whole percent; otherwise σ in 0.1% ([`sigma_step_unit`]). The grid's own run holds the
//! results table as a text summary (`<task>/results_table`) and the side-by-side samples.
use super::points::{fp32_at, GridPoint};
use crate::tb::Tb;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Sub-run writers of one grid.
pub struct GridTb {
    root: PathBuf,
    task: String,
    metric: String,
    levels: Vec<usize>,
    step_per_pct: f64,
    runs: BTreeMap<String, Tb>,
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

/// Human description of the x axis for the text summary and the README.
pub fn step_meaning(unit: f64) -> String {
    if unit == 1.0 {
        "step = σ in % of the conductance window".into()
    } else {
        format!("step = σ in units of {}% of the conductance window", 1.0 / unit)
    }
}

impl GridTb {
    /// `root` is the grid's run folder; sub-runs go to `root/tb/<network>`.
    pub fn new(root: &Path, task: &str, metric: &str, levels: &[usize], sigmas: &[f64]) -> Self {
        GridTb {
            root: root.join("tb"),
            task: task.into(),
            metric: metric.into(),
            levels: levels.to_vec(),
            step_per_pct: sigma_step_unit(sigmas),
            runs: BTreeMap::new(),
        }
    }

    pub fn step(&self, sigma: f64) -> usize {
        (100.0 * sigma * self.step_per_pct).round().max(0.0) as usize
    }

    pub fn step_unit(&self) -> f64 {
        self.step_per_pct
    }

    /// The writer of one network's sub-run.
    pub fn run(&mut self, net_label: &str) -> &mut Tb {
        let dir = self.root.join(net_label);
        self.runs.entry(net_label.to_string()).or_insert_with(|| Tb::new(&dir))
    }

    pub fn metric_tag(&self, n: usize) -> String {
        format!("{}/{}_vs_sigma/N{n}", self.task, self.metric)
    }

    pub fn gap_tag(&self, n: usize) -> String {
        format!("{}/{}_gap_to_fp32_vs_sigma/N{n}", self.task, self.metric)
    }

    /// Logs one network's points (all of one method, mode and N) and their gaps to fp32 (the
    /// fp32 points in `all`, when it ran first).
    pub fn log_network(&mut self, points: &[GridPoint], all: &[GridPoint]) {
        let Some(first) = points.first() else { return };
        let label = first.net_label();
        let ns = if first.is_fp32() { self.levels.clone() } else { vec![first.levels] };
        let rows: Vec<(usize, f64, Option<f64>)> = points
            .iter()
            .map(|p| {
                let gap = if p.is_fp32() {
                    None
                } else {
                    fp32_at(all, p.sigma).map(|f| 100.0 * (p.mean - f.mean))
                };
                (self.step(p.sigma), p.mean_pct(), gap)
            })
            .collect();
        let tags: Vec<(String, String)> =
            ns.iter().map(|n| (self.metric_tag(*n), self.gap_tag(*n))).collect();
        let tb = self.run(&label);
        for (metric_tag, gap_tag) in &tags {
            for (step, v, gap) in &rows {
                tb.scalar(metric_tag, *v, *step);
                if let Some(g) = gap {
                    tb.scalar(gap_tag, *g, *step);
                }
            }
        }
        tb.flush();
    }

    /// Fine-tuning losses of one epoch, from global step `first_step`.
    pub fn log_losses(&mut self, net_label: &str, tag: &str, first_step: usize, losses: &[f64]) {
        let tb = self.run(net_label);
        for (i, l) in losses.iter().enumerate() {
            tb.scalar(tag, *l, first_step + i);
        }
    }

    pub fn flush(&mut self) {
        for tb in self.runs.values_mut() {
            tb.flush();
        }
    }
}
