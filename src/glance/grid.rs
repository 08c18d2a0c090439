//! What the grid shows, at its two ends: a unit logs its network as deployed (histograms,
//! relative quantization error, per-step fine-tuning loss) into its own TensorBoard run;
//! merge turns the merged cells into table.md and table.txt (Δ vs fp32), the charts, the
//! networks' sub-runs and the text summary (`tb_grid` has the layout); `gqcim plot`
//! redraws the charts from a results.csv.
use super::charts::write_charts;
use super::points::{metric_key, GridPoint};
use super::table::{markdown, terminal};
use crate::checkpoint::write_text_atomic;
use crate::error::Result;
use crate::grid::Cell;
use crate::nets::Network;
use crate::tb::Tb;
use std::path::{Path, PathBuf};
use tch::Kind;

/// The grid's merged cells as points; `seeds` fine-tuning seeds were pooled in each.
pub fn points(cells: &[Cell], seeds: usize) -> Vec<GridPoint> {
    let mut variants: Vec<String> = Vec::new();
    for c in cells {
        if !variants.contains(&c.reading()) {
            variants.push(c.reading());
        }
    }
    let mut policies: Vec<&str> = Vec::new();
    for c in cells.iter().filter(|c| c.method != "fp32") {
        if !policies.contains(&c.fp32_layers.as_str()) {
            policies.push(&c.fp32_layers);
        }
    }
    let (several_variants, several_policies) = (variants.len() > 1, policies.len() > 1);
    cells
        .iter()
        .map(|c| GridPoint::from_cell(c, seeds, several_variants, several_policies))
        .collect()
}

/// ‖q − w‖ / ‖w‖ in % (None for an all-zero w): readable where a per-layer MSE of 1e-4
/// looks like zero on a TensorBoard card.
pub fn relative_error_pct(w: &tch::Tensor, q: &tch::Tensor) -> Option<f64> {
    let w = w.detach().to_kind(Kind::Double);
    let diff = (q.detach().to_kind(Kind::Double) - &w).norm().double_value(&[]);
    let norm = w.norm().double_value(&[]);
    (norm > 0.0 && diff.is_finite()).then(|| 100.0 * diff / norm)
}

/// The network as deployed (quantized and fine-tuned, before the crossbar's noise): a
/// histogram of the weights each layer is programmed with, and for a quantized network the
/// relative quantization error per layer.
pub fn log_deployed(tb: &mut Tb, net: &Network, quantized: bool) {
    for l in net.layers.layers() {
        let eff = l.effective_weight();
        tb.histogram(&format!("deployed_weights/{}", l.spec.name), &eff, 0, 64);
        if quantized {
            if let Some(e) = relative_error_pct(&l.spec.weight, &eff) {
                tb.scalar(&format!("quant_error_pct/{}", l.spec.name), e, 0);
            }
        }
    }
}

/// table.md (Markdown, Δ columns), table.txt (the terminal table, 100 columns) and the
/// charts of a merged grid. Returns table.md's text.
pub fn write_tables_and_charts(
    dir: &Path,
    points: &[GridPoint],
    metric: &str,
    levels: &[usize],
    sigmas: &[f64],
) -> Result<String> {
    let md = markdown(points, metric, sigmas);
    write_text_atomic(&dir.join("table.md"), &md)?;
    let text = terminal(points, metric, sigmas, super::progress::WIDTH);
    write_text_atomic(&dir.join("table.txt"), &text)?;
    write_charts(dir, points, "", metric, levels, sigmas);
    Ok(md)
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

/// `gqcim plot`: the charts and terminal table of a finished grid from its results.csv
/// (levels and σ as the CSV has them; the seed count from results.json beside it, if any). Charts go to `out_dir` named
/// `<prefix><metric>_...png`; returns their paths and the terminal table.
pub fn replot(
    results: &Path,
    task: &str,
    out_dir: &Path,
    prefix: &str,
) -> Result<(Vec<PathBuf>, String)> {
    let metric = task_metric(task)?;
    let mut all = super::points::read_results_csv(results)?;
    // results.csv has no seed count; a grid's results.json beside it has (its CIs are over
    // seeds when there are several, which decides whether they are shown).
    let seeds = std::fs::read_to_string(results.with_file_name("results.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["seeds"].as_array().map(Vec::len))
        .unwrap_or(1);
    for p in &mut all {
        p.seeds = p.seeds.max(seeds);
    }
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
    std::fs::create_dir_all(out_dir).map_err(|e| crate::error::GqcimError::File {
        path: out_dir.to_path_buf(),
        msg: format!("cannot create the plot folder: {e}"),
    })?;
    let charts = write_charts(out_dir, &all, prefix, metric, &levels, &sigmas);
    if charts.is_empty() {
        return Err(crate::error::invalid(
            results.display().to_string(),
            format!("no chart could be drawn for `{}`", metric_key(metric)),
        ));
    }
    let table = terminal(&all, metric, &sigmas, super::progress::WIDTH);
    Ok((charts.into_iter().map(|(p, _)| p).collect(), table))
}
