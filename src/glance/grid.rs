//! What `compare::run_grid` calls to show its grid: per-network TensorBoard sub-runs
//! (`tb_grid`), fine-tuning losses per step, deployed-weight histograms, the samples of
//! every network side by side (`samples`), progress lines with an ETA (`progress`), and at
//! the end table.md, the terminal table, the text summary and the charts.
use super::charts::write_charts;
use super::points::{metric_key, GridPoint};
use super::progress::{unit_lines, Eta};
use super::samples::SampleBook;
use super::table::{markdown, terminal};
use super::tb_grid::{step_meaning, GridTb};
use crate::checkpoint::write_text_atomic;
use crate::compare::Cell;
use crate::error::Result;
use crate::nets::Network;
use crate::run::RunDir;
use crate::tasks::harness::TaskHarness;
use tch::Kind;

impl From<&Cell> for GridPoint {
    fn from(c: &Cell) -> GridPoint {
        GridPoint {
            method: c.method.clone(),
            levels: c.levels,
            mode: c.mode.clone(),
            sigma: c.sigma,
            trials: c.stats.trials.len(),
            mean: c.stats.mean,
            ci95: c.stats.ci95,
        }
    }
}

pub fn points(cells: &[Cell]) -> Vec<GridPoint> {
    cells.iter().map(GridPoint::from).collect()
}

/// ‖q − w‖ / ‖w‖ in % (None for an all-zero w): readable where a per-layer MSE of 1e-4
/// looks like zero on a TensorBoard card.
pub fn relative_error_pct(w: &tch::Tensor, q: &tch::Tensor) -> Option<f64> {
    let w = w.detach().to_kind(Kind::Double);
    let diff = (q.detach().to_kind(Kind::Double) - &w).norm().double_value(&[]);
    let norm = w.norm().double_value(&[]);
    (norm > 0.0 && diff.is_finite()).then(|| 100.0 * diff / norm)
}

/// The grid's display state.
pub struct GridView {
    pub tb: GridTb,
    samples: SampleBook,
    eta: Eta,
    task: String,
    metric: String,
    levels: Vec<usize>,
    sigmas: Vec<f64>,
}

/// The sub-run name of a network: `fp32` or `gq-qat-N8`.
pub fn net_label(method: &str, mode: &str, levels: usize) -> String {
    if method == "fp32" {
        "fp32".into()
    } else {
        format!("{method}-{mode}-N{levels}")
    }
}

impl GridView {
    pub fn new(run: &RunDir, task: &dyn TaskHarness, levels: &[usize], sigmas: &[f64]) -> Self {
        let metric = task.metric_name().to_string();
        let samples = SampleBook { inputs: task.sample_inputs(), ..SampleBook::default() };
        GridView {
            tb: GridTb::new(&run.path, task.task(), &metric_key(&metric), levels, sigmas),
            samples,
            eta: Eta::default(),
            task: task.task().into(),
            metric,
            levels: levels.to_vec(),
            sigmas: sigmas.to_vec(),
        }
    }

    /// A fine-tuning epoch's per-step losses under `tag` in `label`'s sub-run (steps counted from 0
    /// over the whole fine-tuning).
    pub fn log_losses(&mut self, label: &str, tag: &str, first_step: usize, losses: &[f64]) {
        self.tb.log_losses(label, tag, first_step, losses);
    }

    /// The network as deployed (quantized, fine-tuned, before the crossbar): histograms and
    /// relative quantization error per layer, and its sample pictures.
    pub fn network_ready(
        &mut self,
        net: &Network,
        task: &dyn TaskHarness,
        label: &str,
        levels: Option<usize>,
        step: usize,
    ) {
        let tb = self.tb.run(label);
        for l in net.layers.layers() {
            let eff = l.effective_weight();
            tb.histogram(&format!("deployed_weights/{}", l.spec.name), &eff, step, 64);
            if levels.is_some() {
                if let Some(e) = relative_error_pct(&l.spec.weight, &eff) {
                    tb.scalar(&format!("quant_error_pct/{}", l.spec.name), e, step);
                }
            }
        }
        tb.flush();
        self.samples.add(label.to_string(), levels, task.sample_pictures(net));
    }

    /// A network is done: logs its points, prints its progress lines with the ETA of the
    /// `remaining` (cells, fine-tuned networks) of the grid.
    #[allow(clippy::too_many_arguments)]
    pub fn network_done(
        &mut self,
        index: usize,
        total: usize,
        mine: &[GridPoint],
        all: &[GridPoint],
        digital: f64,
        seconds: (f64, f64, Option<f64>),
        remaining: (usize, usize),
    ) {
        let (total_s, eval_s, tune_s) = seconds;
        self.tb.log_network(mine, all);
        self.eta.record(mine.len(), eval_s, tune_s);
        let eta = self.eta.remaining(remaining.0, remaining.1);
        for l in unit_lines(index, total, mine, digital, total_s, eta) {
            println!("{l}");
        }
    }

    /// table.md, table.txt, the text summary, the charts and the side-by-side samples.
    /// Returns the terminal table.
    pub fn finish(
        &mut self,
        run: &mut RunDir,
        all: &[GridPoint],
        task: &dyn TaskHarness,
    ) -> Result<String> {
        let md = markdown(all, &self.metric, &self.sigmas);
        write_text_atomic(&run.path.join("table.md"), &md)?;
        let text = terminal(all, &self.metric, &self.sigmas, super::progress::WIDTH);
        write_text_atomic(&run.path.join("table.txt"), &text)?;
        let how = format!(
            "\n\nTensorBoard: each grid network is a run under `tb/`; the scalars \
             `{task}/{key}_vs_sigma/N<n>` (metric in %) and `{task}/{key}_gap_to_fp32_vs_sigma/N<n>` \
             (points) overlay fp32 and every method at one N; {}. Set smoothing to 0 for σ sweeps.",
            step_meaning(self.tb.step_unit()),
            task = self.task,
            key = metric_key(&self.metric),
        );
        run.tb.text(&format!("{}/results_table", self.task), &format!("{md}{how}"), 0);
        write_charts(&run.path, all, "", &self.metric, &self.levels, &self.sigmas);
        self.samples.write(&mut run.tb, &self.task, &self.levels, &|w| task.sample_legend(w));
        self.tb.flush();
        run.tb.flush();
        Ok(text)
    }
}

/// The metric name of a task's grid (as its harness reports it).
pub fn task_metric(task: &str) -> Result<&'static str> {
    match task {
        "classify" => Ok("top-1 accuracy (%)"),
        "detect" => Ok("mAP@0.5 (%)"),
        "segment" => Ok("mIoU (%)"),
        other => Err(crate::error::invalid(
            "--task",
            format!("`{other}`: expected classify, detect or segment"),
        )),
    }
}

/// `gqcim plot`: the charts and tables of a finished grid, from its results.csv (levels and
/// σ as the CSV has them). Charts go to `out_dir` named `<prefix><metric>_...png`; returns
/// their paths and prints the terminal table.
pub fn replot(
    results: &std::path::Path,
    task: &str,
    out_dir: &std::path::Path,
    prefix: &str,
) -> Result<Vec<std::path::PathBuf>> {
    let metric = task_metric(task)?;
    let all = super::points::read_results_csv(results)?;
    if all.is_empty() {
        return Err(crate::error::invalid(results.display().to_string(), "has no rows"));
    }
    let mut levels: Vec<usize> = all.iter().filter(|p| !p.is_fp32()).map(|p| p.levels).collect();
    levels.sort_unstable();
    levels.dedup();
    let mut sigmas: Vec<f64> = Vec::new();
    for p in &all {
        if !sigmas.contains(&p.sigma) {
            sigmas.push(p.sigma);
        }
    }
    sigmas.sort_by(|a, b| a.total_cmp(b));
    std::fs::create_dir_all(out_dir)?;
    let charts = write_charts(out_dir, &all, prefix, metric, &levels, &sigmas);
    println!("{}", terminal(&all, metric, &sigmas, super::progress::WIDTH));
    Ok(charts.into_iter().map(|(p, _)| p).collect())
}
