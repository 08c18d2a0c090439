//! `gqcim sensitivity`: which layers dominate the accuracy loss under device noise. Each
//! layer in turn is put on the crossbar with programming noise sigma (Monte-Carlo), the
//! others staying digital-quantized; the accuracy drop is reported with the layer's window
//! (its largest |quantum|) and outer quanta, so a researcher sees where the noise bites.
use crate::analog::montecarlo::monte_carlo_layers;
use crate::analog::path::AnalogPath;
use crate::checkpoint::write_text_atomic;
use crate::config::{Config, ProgrammingNoise};
use crate::engine::task::{config_record, task_run_dir};
use crate::error::Result;
use crate::quant::deploy::apply_quantization;
use crate::report::markdown_table;
use crate::run::RunRecord;
use serde_json::{json, Value};
use std::path::Path;
use tch::Kind;

/// `gqcim sensitivity` for any task (its metric, its evaluation set): `cfg` is the task's
/// deployment view (quant, analog); `run_dir` is (config path, explicit run folder).
pub fn sensitivity_command(
    cfg: &Config,
    task: &dyn crate::engine::task::Task,
    device: tch::Device,
    checkpoint: &Path,
    sigma: f64,
    run_dir: (&Path, Option<&Path>),
) -> Result<Value> {
    let mut run = task_run_dir(task, "sensitivity", run_dir.0, run_dir.1)?;
    let task_config = config_record(task);
    let net = task.load_network(cfg, checkpoint, device)?;
    apply_quantization(&net, &cfg.quant, &cfg.analog)?;
    let baseline = task.evaluate(&net)?;
    let mut analog = cfg.analog.clone();
    analog.programming_noise = ProgrammingNoise::Gaussian { sigma };
    let mut rows = Vec::new();
    let layers = net.layers.layers();
    for (i, l) in layers.iter().enumerate() {
        let target = l.effective_weight();
        let quanta =
            target.flatten(0, -1).unique_dim(0, true, false, false).0.to_kind(Kind::Double);
        let (qmin, qmax) = (quanta.min().double_value(&[]), quanta.max().double_value(&[]));
        // Only this layer on the crossbar; its quantizing path is restored afterwards.
        let original = l.describe();
        let saved = std::mem::replace(
            &mut *l.path_box(),
            Box::new(AnalogPath::new(target.shallow_clone(), original.clone(), &analog)),
        );
        let stats =
            monte_carlo_layers(&net, &analog, cfg.seed.wrapping_add(i as u64), false, |n| {
                task.evaluate(n)
            })?;
        *l.path_box() = saved;
        let drop = baseline - stats.mean;
        run.tb.scalar("sensitivity/accuracy_drop", drop, i);
        println!(
            "{:<22} {:>7} weights  window {:.4}  quanta [{:+.4}, {:+.4}]  drop {:>6.2} ± {:.2} points",
            l.spec.name,
            l.spec.numel(),
            qmax.abs().max(qmin.abs()),
            qmin,
            qmax,
            100.0 * drop,
            100.0 * stats.std
        );
        rows.push(json!({"layer": l.spec.name, "weights": l.spec.numel(), "path": original,
            "window_w_max": qmax.abs().max(qmin.abs()), "outer_quanta": [qmin, qmax],
            "accuracy_mean": stats.mean, "accuracy_std": stats.std, "accuracy_drop": drop, "trials": stats.trials}));
    }
    run.tb.flush()?;
    let mut sorted = rows.clone();
    sorted.sort_by(|a, b| {
        b["accuracy_drop"]
            .as_f64()
            .partial_cmp(&a["accuracy_drop"].as_f64())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let header: Vec<String> = ["layer", "weights", "window", "outer quanta", "drop (points)"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let table: Vec<Vec<String>> = sorted
        .iter()
        .map(|r| {
            vec![
                r["layer"].as_str().unwrap_or("").to_string(),
                r["weights"].to_string(),
                format!("{:.4}", r["window_w_max"].as_f64().unwrap_or(0.0)),
                format!(
                    "[{:+.4}, {:+.4}]",
                    r["outer_quanta"][0].as_f64().unwrap_or(0.0),
                    r["outer_quanta"][1].as_f64().unwrap_or(0.0)
                ),
                format!(
                    "{:.2} ± {:.2}",
                    100.0 * r["accuracy_drop"].as_f64().unwrap_or(0.0),
                    100.0 * r["accuracy_std"].as_f64().unwrap_or(0.0)
                ),
            ]
        })
        .collect();
    let md = format!(
        "Per-layer sensitivity: {} {} levels, programming noise σ = {}% on one layer at a time \
         ({} trials); baseline (digital quantized) {:.2}%.\n\n{}",
        cfg.quant.method.name(),
        cfg.quant.levels,
        100.0 * sigma,
        analog.trials,
        100.0 * baseline,
        markdown_table(&header, &table)
    );
    write_text_atomic(&run.path.join("table.md"), &md)?;
    let record = RunRecord::new("sensitivity", task.task(), task_config, cfg.seed, device);
    let results = record.with(json!({"metric_name": task.metric_name(), "sigma": sigma,
        "baseline": baseline, "layers": rows}));
    run.write_results(&results)?;
    println!("\n{md}\nrun folder {}", run.path.display());
    Ok(results)
}
