//! `gqcim eval` for every task: the digital score of a checkpoint, and with `--analog` the
//! Monte-Carlo evaluation on the crossbar (quantize with `quant`, fp32 = continuous
//! conductances; program every layer; score each seeded trial on the whole test set, at each
//! `analog.t_inference`).
use super::task::{run_record, task_run_dir, Task};
use super::train::log_weight_histograms;
use crate::analog::montecarlo::{monte_carlo_times, time_label};
use crate::checkpoint;
use crate::config::Config;
use crate::deploy::deploy_analog;
use crate::error::Result;
use crate::nets::Network;
use crate::run::RunDir;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;
use tch::Device;

/// `gqcim eval [--analog]` for any task: loads the checkpoint into the task's network and
/// evaluates it in a fresh run folder.
pub fn command(
    task: &dyn Task,
    device: Device,
    config_path: &Path,
    checkpoint: &Path,
    run_dir: Option<&Path>,
) -> Result<Value> {
    let net = task.load_network(&task.deploy_config(), checkpoint, device)?;
    let run = task_run_dir(task, "eval", config_path, run_dir)?;
    evaluate(task, &net, checkpoint, run, device)
}

/// Scores `net` (loaded from `checkpoint`) with the task's metrics, and on the crossbar when
/// the task's `analog.enabled` is set; writes the run folder's results.json.
pub fn evaluate(
    task: &dyn Task,
    net: &Network,
    checkpoint: &Path,
    mut run: RunDir,
    device: Device,
) -> Result<Value> {
    let cfg = task.deploy_config();
    let start = Instant::now();
    let m = task.metrics(net, Some((&mut run.tb, 0)))?;
    let eval_seconds = start.elapsed().as_secs_f64();
    for (name, v) in &m.scalars {
        run.tb.scalar(&format!("test/{name}"), *v, 0);
    }
    log_weight_histograms(&mut run, net, 0);
    run.tb.flush()?;
    let mut results = run_record(task, "eval", device).with(json!({
        "arch": net.arch,
        "checkpoint": checkpoint.display().to_string(),
        "checkpoint_sha256": checkpoint::sha256_file(checkpoint)?,
        "metrics": m.json,
        "eval_seconds": eval_seconds,
        "images_per_second": task.eval_len() as f64 / eval_seconds.max(1e-9),
    }));
    if let (Value::Object(r), Value::Object(extra)) = (&mut results, task.record()) {
        r.extend(extra);
    }
    println!("{} ({:.0} img/s)", m.summary, task.eval_len() as f64 / eval_seconds.max(1e-9));
    if cfg.analog.enabled {
        let name = m.scalars.first().map_or("metric", |s| s.0);
        results["command"] = json!("eval --analog");
        results["analog"] = analog_trials(task, &cfg, net, &mut run, name, m.primary)?;
    }
    run.write_results(&results)?;
    println!("run folder {}", run.path.display());
    Ok(results)
}

/// The Monte-Carlo trials on `net` (which it leaves on the crossbar), scored with the task's
/// primary metric `name` (`fp32`: its digital score); logs `analog/<name>_trial`, `_mean`
/// and the mean per read time, and returns the record.
pub fn analog_trials(
    task: &dyn Task,
    cfg: &Config,
    net: &Network,
    run: &mut RunDir,
    name: &str,
    fp32: f64,
) -> Result<Value> {
    let start = Instant::now();
    let dep = crate::quant::deploy::apply_quantization(net, &cfg.quant, &cfg.analog)?;
    let quantized = task.evaluate(net)?;
    deploy_analog(net, &cfg.analog);
    let mut trial_seconds = Vec::new();
    let by_time = monte_carlo_times(net, &cfg.analog, cfg.seed, true, |n| {
        let t = Instant::now();
        let v = task.evaluate(n);
        trial_seconds.push(t.elapsed().as_secs_f64());
        v
    })?;
    // The first time of the axis is the headline (the only one without a time axis).
    let stats = by_time[0].stats.clone();
    for (k, ts) in by_time.iter().enumerate() {
        if ts.t_inference.is_some() {
            run.tb.scalar(&format!("analog/{name}_mean_by_time"), ts.stats.mean, k);
            println!(
                "t = {:>7}: {name} {:.2}% ± {:.2} (95% CI ± {:.2}) over {} trials",
                time_label(ts.t_inference),
                100.0 * ts.stats.mean,
                100.0 * ts.stats.std,
                100.0 * ts.stats.ci95,
                ts.stats.trials.len()
            );
        }
    }
    for t in &stats.trials {
        run.tb.scalar(&format!("analog/{name}_trial"), t.metric, t.trial);
    }
    run.tb.scalar(&format!("analog/{name}_mean"), stats.mean, 0);
    run.tb.scalar(&format!("test/{name}_fp32"), fp32, 0);
    run.tb.scalar(&format!("test/{name}_quantized"), quantized, 0);
    run.tb.flush()?;
    println!(
        "analog {} ({} levels), {} trials: {name} {}; digital quantized {:.2}%, fp32 {:.2}%",
        cfg.quant.method.name(),
        cfg.quant.levels,
        stats.trials.len(),
        stats.spread_text(),
        100.0 * quantized,
        100.0 * fp32
    );
    Ok(json!({
        "metric": name,
        "digital_fp32": fp32,
        "digital_quantized": quantized,
        "analog": stats,
        "analog_by_time": by_time,
        "quantized_layers": dep.quantized,
        "kept_fp32": dep.kept_fp32,
        "trial_eval_seconds": trial_seconds,
        "wall_seconds": start.elapsed().as_secs_f64(),
    }))
}
