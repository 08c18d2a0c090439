//! The quantize and finetune commands for any task, through its `Task`: the steps of a grid
//! unit (quantize, BatchNorm re-estimation for post-training, the shared fine-tuning loop) on
//! one method and level count, scored with the task's own metric on its whole test set.
use super::finetune::{finetune_loop, recalibrate_bn};
use crate::checkpoint::{save_varstore, sha256_file};
use crate::config::Config;
use crate::engine::task::{config_record, task_run_dir, Task};
use crate::error::Result;
use crate::quant::deploy::{apply_quantization, fold_batchnorm};
use crate::run::{RunDir, RunRecord};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

/// `gqcim quantize` / `finetune` for a task through its `Task` (detection and segmentation;
/// classification has its own command with BatchNorm folding and per-layer TensorBoard).
pub fn command(
    task: &dyn Task,
    device: tch::Device,
    (config_path, checkpoint, run_dir): (&Path, &Path, Option<&Path>),
    finetune: bool,
) -> Result<Value> {
    let verb = if finetune { "finetune" } else { "quantize" };
    let run = task_run_dir(task, verb, config_path, run_dir)?;
    let t = TaskQuantize {
        cfg: &task.deploy_config(),
        harness: task,
        device,
        task_config: config_record(task),
    };
    quantize_task(&t, checkpoint, run, finetune)
}

/// What the task command hands over: the deployment view of its config (quant, finetune,
/// analog sections), its harness, and its own resolved config for the record.
pub struct TaskQuantize<'a> {
    pub cfg: &'a Config,
    pub harness: &'a dyn Task,
    pub device: tch::Device,
    /// The task's own resolved config (results.json records it, not the deployment view).
    pub task_config: Value,
}

/// Loads the checkpoint, quantizes it as `cfg.quant` says, optionally fine-tunes, scores
/// before and after, saves the fine-tuned model in the run folder and writes results.json.
pub fn quantize_task(
    t: &TaskQuantize,
    checkpoint: &Path,
    mut run: RunDir,
    finetune: bool,
) -> Result<Value> {
    let wall = Instant::now();
    let (cfg, h) = (t.cfg, t.harness);
    let net = h.load_network(cfg, checkpoint, t.device)?;
    let fp32 = h.evaluate(&net)?;
    let dep = apply_quantization(&net, &cfg.quant, &cfg.analog)?;
    // Post-training rows re-estimate BatchNorm for the quantized weights, as the grid does.
    let recal = !finetune && cfg.quant.bn_recalibrate_images > 0 && !cfg.quant.fold_bn;
    let bn_images = if recal {
        let n = cfg.quant.bn_recalibrate_images;
        recalibrate_bn(&net, h, n, cfg.finetune.batch_size, cfg.seed)?
    } else {
        0
    };
    let ptq = h.evaluate(&net)?;
    run.tb.scalar("test/metric_fp32", fp32, 0);
    run.tb.scalar("test/metric", ptq, 0);
    println!(
        "{} {} levels: fp32 {:.2}%  post-training {:.2}%  ({})",
        cfg.quant.method.name(),
        cfg.quant.levels,
        100.0 * fp32,
        100.0 * ptq,
        h.metric_name()
    );
    let verb = if finetune { "finetune" } else { "quantize" };
    let record = RunRecord::new(verb, h.task(), t.task_config.clone(), cfg.seed, t.device);
    let mut results = record.with(json!({
        "checkpoint": checkpoint.display().to_string(),
        "checkpoint_sha256": sha256_file(checkpoint)?,
        "method": cfg.quant.method.name(),
        "levels": cfg.quant.levels,
        "kept_fp32": dep.kept_fp32,
        "quantized_layers": dep.quantized.len(),
        "bn_recalibration_images": bn_images,
        "metric_name": h.metric_name(),
        "test_samples": h.eval_len(),
        "fp32": fp32,
        "post_training": ptq,
    }));
    let mut last = ptq;
    if finetune {
        let stats = finetune_loop(&net, h, cfg, &dep, |e, loss, _| {
            run.tb.scalar("finetune/loss", loss, e);
        })?;
        let ft = h.evaluate(&net)?;
        run.tb.scalar("test/metric", ft, 1);
        println!(
            "after {:.2} epochs of straight-through fine-tuning: {:.2}%",
            cfg.finetune.epochs,
            100.0 * ft
        );
        let model = run.path.join("model.safetensors");
        save_varstore(&net.vs, &model)?;
        results["finetune"] = serde_json::to_value(&stats).unwrap_or(Value::Null);
        results["after_finetune"] = json!(ft);
        results["model"] = json!(model.display().to_string());
        last = ft;
    }
    results["metrics"] = json!({"metric": last, "fp32": fp32});
    results["wall_seconds"] = json!(wall.elapsed().as_secs_f64());
    run.tb.flush()?;
    run.write_results(&results)?;
    println!("run folder {}", run.path.display());
    Ok(results)
}

/// Quantizes a loaded network (any task's) as `cfg.quant` says and writes its crossbars.
pub fn export_network(cfg: &Config, net: crate::nets::Network, out: &Path) -> Result<Value> {
    if cfg.quant.fold_bn {
        fold_batchnorm(&net)?;
    }
    apply_quantization(&net, &cfg.quant, &cfg.analog)?;
    let index = crate::analog::export::export_crossbars(&net, &cfg.analog, out)?;
    println!(
        "exported {} layers ({} {} levels) to {}",
        index["layers"].as_object().map(|m| m.len()).unwrap_or(0),
        cfg.quant.method.name(),
        cfg.quant.levels,
        out.display()
    );
    Ok(index)
}
