//! Post-training quantization (`gqcim quantize`) and straight-through fine-tuning
//! (`gqcim finetune`) of a trained classifier, each writing a run folder.
use super::{evaluate, ClassifyTask, EvalResult};
use crate::checkpoint::{self, load_strict, save_varstore};
use crate::config::Config;
use crate::data::{self, Normalizer};
use crate::engine::finetune::{finetune_loop, recalibrate_bn};
use crate::error::Result;
use crate::nets::{build_classifier, Network};
use crate::quant::deploy::{apply_quantization, fold_batchnorm, quant_report};
use crate::run::{setup_device, RunDir, RunRecord};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;
use tch::Device;

/// Loads a checkpoint into a freshly built classifier.
pub fn load_classifier(cfg: &Config, checkpoint_path: &Path, device: Device) -> Result<Network> {
    tch::manual_seed(cfg.seed as i64);
    let mut net = build_classifier(&cfg.model, device);
    load_strict(&mut net.vs, checkpoint_path)?;
    Ok(net)
}

/// The quantized network's accuracy and per-layer report, both logged at `step`.
fn score_quantized(
    net: &Network,
    (test, norm): (&crate::data::Dataset, &Normalizer),
    cfg: &Config,
    run: &mut RunDir,
    step: usize,
) -> Result<(EvalResult, Value)> {
    let r = evaluate(net, test, norm, cfg.eval.batch_size)?;
    let report = quant_report(net, &cfg.quant, cfg.quant.report_exact_gap);
    log_quant_tb(run, net, &report, step);
    run.tb.scalar("test/accuracy", r.accuracy, step);
    Ok((r, report))
}

fn log_quant_tb(run: &mut RunDir, net: &Network, report: &Value, step: usize) {
    for l in net.layers.layers() {
        if let Some(mse) = report[&l.spec.name]["mse"].as_f64() {
            run.tb.scalar(&format!("quant/mse/{}", l.spec.name), mse, step);
        }
        // ‖Wq − W‖/‖W‖ in %: readable where an MSE of 1e-4 looks like zero on a card.
        let q = l.effective_weight();
        if let Some(e) = crate::glance::grid::relative_error_pct(&l.spec.weight, &q) {
            run.tb.scalar(&format!("quant/error_pct/{}", l.spec.name), e, step);
        }
        run.tb.histogram(&format!("quantized/{}", l.spec.name), &l.effective_weight(), step, 64);
        run.tb.histogram(&format!("weights/{}", l.spec.name), &l.spec.weight, step, 64);
    }
}

fn summary(res: &EvalResult) -> Value {
    json!({"test_accuracy": res.accuracy, "test_loss": res.loss, "test_images": res.images})
}

/// `gqcim quantize` (post-training) and `gqcim finetune` (QAT): load, quantize, optionally
/// fine-tune, evaluate, report.
pub fn quantize_command(
    cfg: &Config,
    config_path: &Path,
    checkpoint_path: &Path,
    run_dir: Option<&Path>,
    finetune: bool,
) -> Result<Value> {
    let wall = Instant::now();
    let device = setup_device(cfg)?;
    // Post-training runs re-estimate BatchNorm on training images unless BN is folded.
    let recal = !finetune && cfg.quant.bn_recalibrate_images > 0 && !cfg.quant.fold_bn;
    let train_ds = if finetune || recal { Some(data::load_split(&cfg.data, true)?) } else { None };
    let test_ds = data::load_split(&cfg.data, false)?;
    if let Some(train) = &train_ds {
        data::check_same_image_size(train, &test_ds, &cfg.data.root)?;
    }
    data::check_against_model(&test_ds, cfg.model.in_channels, cfg.model.num_classes)?;
    let test_ds = test_ds.to_device(device);
    let norm = Normalizer::new(&cfg.data, device);
    let net = load_classifier(cfg, checkpoint_path, device)?;
    let command = if finetune { "finetune" } else { "quantize" };
    let mut run = RunDir::create(cfg, command, config_path, run_dir)?;
    let fp32 = evaluate(&net, &test_ds, &norm, cfg.eval.batch_size)?;
    run.tb.scalar("test/accuracy_fp32", fp32.accuracy, 0);
    if cfg.quant.fold_bn && finetune {
        return Err(crate::error::invalid(
            "quant.fold_bn",
            "folding applies to post-training quantization; fine-tuning keeps BatchNorm digital",
        ));
    }
    let folded = if cfg.quant.fold_bn { fold_batchnorm(&net)? } else { Vec::new() };
    let dep = apply_quantization(&net, &cfg.quant, &cfg.analog)?;
    let task = train_ds.map(|train_ds| ClassifyTask {
        cfg: cfg.clone(),
        train: train_ds.to_device(device),
        test: test_ds.shallow_clone(),
        norm: Normalizer::new(&cfg.data, device),
    });
    let bn_images = match (&task, recal) {
        (Some(t), true) => recalibrate_bn(
            &net,
            t,
            cfg.quant.bn_recalibrate_images,
            cfg.finetune.batch_size,
            cfg.seed,
        )?,
        _ => 0,
    };
    let (ptq, ptq_report) = score_quantized(&net, (&test_ds, &norm), cfg, &mut run, 0)?;
    println!(
        "{} {} levels: fp32 {:.2}%  post-training {:.2}%",
        cfg.quant.method.name(),
        cfg.quant.levels,
        100.0 * fp32.accuracy,
        100.0 * ptq.accuracy
    );
    let config = serde_json::to_value(cfg).unwrap_or(Value::Null);
    let record = RunRecord::new(command, "classify", config, cfg.seed, device);
    let mut results = record.with(json!({
        "arch": net.arch,
        "checkpoint": checkpoint_path.display().to_string(),
        "checkpoint_sha256": checkpoint::sha256_file(checkpoint_path)?,
        "method": cfg.quant.method.name(),
        "levels": cfg.quant.levels,
        "per_channel": cfg.quant.per_channel,
        "bn": if folded.is_empty() { "digital (kept as BatchNorm layers)" } else { "folded into the preceding convs" },
        "bn_folded_convs": folded,
        "bn_recalibration_images": bn_images,
        "kept_fp32": dep.kept_fp32,
        "quantized_layers": dep.quantized.len(),
        "fit_seconds": dep.fit_seconds,
        "fp32": summary(&fp32),
        "post_training": summary(&ptq),
        "layers_post_training": ptq_report,
    }));
    let mut final_res = ptq;
    if let Some(task) = task.filter(|_| finetune) {
        let stats = finetune_loop(&net, &task, cfg, &dep, |e, loss, _| {
            run.tb.scalar("finetune/loss", loss, e);
        })?;
        let (ft, report) = score_quantized(&net, (&test_ds, &norm), cfg, &mut run, 1)?;
        println!(
            "after {:.2} epochs of straight-through fine-tuning: {:.2}%  (refit share {:.1}% of step time)",
            cfg.finetune.epochs,
            100.0 * ft.accuracy,
            100.0 * stats.refit_share
        );
        let model = run.path.join("model.safetensors");
        save_varstore(&net.vs, &model)?;
        results["finetune"] = serde_json::to_value(&stats).unwrap_or(Value::Null);
        results["after_finetune"] = summary(&ft);
        results["layers"] = report;
        results["model"] = json!(model.display().to_string());
        final_res = ft;
    } else {
        results["layers"] = results["layers_post_training"].clone();
    }
    results["metrics"] = summary(&final_res);
    results["wall_seconds"] = json!(wall.elapsed().as_secs_f64());
    run.tb.flush()?;
    run.write_results(&results)?;
    println!("run folder {}", run.path.display());
    Ok(results)
}
