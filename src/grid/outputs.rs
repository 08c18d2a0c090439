//! What a grid writes: results.csv (one row per cell, cost columns), table.md/table.txt
//! with paired differences, and the charts.
use crate::analog::montecarlo::McStats;
use crate::checkpoint::write_text_atomic;
use crate::config::Config;
use crate::costreport::CellCost;
use crate::engine::finetune::FinetuneStats;
use crate::error::Result;
use crate::run::RunDir;
use serde::{Deserialize, Serialize};

/// One evaluated cell of the grid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    pub method: String,
    pub levels: usize,
    pub mode: String,
    pub sigma: f64,
    /// Seconds after programming (the time axis, `analog.t_inference`); None without.
    pub t_inference: Option<f64>,
    pub stats: McStats,
    /// The digital (noise-free) metric; NaN (null in JSON) when not measured.
    #[serde(deserialize_with = "crate::report::nan_if_null")]
    pub digital_accuracy: f64,
    pub finetune: Option<FinetuneStats>,
    /// Set when the cell is another method's cell computed once (gq-noise at σ = 0 is gq:
    /// the same fit, the same refits, the same seeds).
    pub same_as: Option<String>,
    /// Programming and first-order inference cost (src/analog/cost.rs).
    #[serde(default)]
    pub cost: CellCost,
    /// Layers kept digital fp32, `+`-joined (empty: every conv/linear layer quantized). A
    /// policy of `compare.keep_fp32_sets` forms its own rows.
    #[serde(default)]
    pub fp32_layers: String,
}

impl Cell {
    /// How the devices were read: the programming variant, and with a time axis the time
    /// after programming (`single-shot t=1 h`). Rows, pairings and sub-runs split on it.
    pub fn reading(&self) -> String {
        match self.t_inference {
            Some(t) => format!(
                "{} t={}",
                self.cost.programming,
                crate::analog::montecarlo::time_label(Some(t))
            ),
            None => self.cost.programming.clone(),
        }
    }
}

/// The cost columns of results.csv (see the header in `write_outputs`). The simulator's own
/// programming time stays in results.json: results.csv holds only what the seed determines.
fn cost_columns(k: &CellCost) -> String {
    format!(
        "{},{},{},{},{},{},{:e},{:e},{},{:e},{:e},{:.6}",
        k.programming,
        k.tolerance,
        k.verify_fraction,
        k.pulses,
        k.verify_reads,
        k.unconverged,
        k.program_time_s,
        k.program_energy_j,
        k.adc_bits,
        k.inference_energy_j,
        k.inference_latency_s,
        k.area_m2 * 1e6
    )
}

/// results.csv, table.md, table.txt and the charts of the merged cells (`cfg.compare.seeds`
/// fine-tuning seeds pooled in each); returns table.md's text.
pub fn write_outputs(run: &RunDir, cfg: &Config, cells: &[Cell], metric: &str) -> Result<String> {
    let cc = &cfg.compare;
    let mut csv = String::from(
        "method,levels,mode,sigma,trials,mean,std,ci95,min,max,digital,programming,tolerance,\
         verify_fraction,pulses,verify_reads,unconverged,program_time_s,program_energy_j,\
         adc_bits,inference_energy_j,inference_latency_s,area_mm2,fp32_layers,t_inference\n",
    );
    for c in cells {
        let s = &c.stats;
        csv.push_str(&format!(
            "{},{},{},{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{},{},{}\n",
            c.method,
            c.levels,
            c.mode,
            c.sigma,
            s.trials.len(),
            s.mean,
            s.std,
            s.ci95,
            s.min,
            s.max,
            c.digital_accuracy,
            cost_columns(&c.cost),
            c.fp32_layers,
            c.t_inference.map(|t| t.to_string()).unwrap_or_default()
        ));
    }
    write_text_atomic(&run.path.join("results.csv"), &csv)?;
    let points = crate::glance::grid::points(cells, cc.seeds.len().max(1));
    crate::glance::grid::write_tables_and_charts(&run.path, &points, metric, &cc.levels, &cc.sigmas)
}
