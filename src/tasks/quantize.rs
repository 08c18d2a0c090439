//! Post-training quantization (`gqcim quantize`) and straight-through fine-tuning
//! (`gqcim finetune`) of a trained classifier, each writing a run folder.
use super::classify::{evaluate, ClassifyTask, EvalResult};
use crate::checkpoint::{self, load_strict, save_varstore};
use crate::config::{Config, QuantMethod};
use crate::data::{self, Normalizer};
use crate::engine::schedule::{epoch_seed, learning_rate};
use crate::engine::task::Task;
use crate::error::Result;
use crate::nets::layers::BN_MOMENTUM;
use crate::nets::{build_classifier, Network};
use crate::quant::deploy::{apply_quantization, fold_batchnorm, quant_report, QuantDeployment};
use crate::quant::paths::RefitSchedule;
use crate::run::{device_info, git_commit, setup_device, RunDir};
use crate::sgd::Sgd;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;
use tch::{Device, Tensor};

/// What a fine-tuning run measured.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FinetuneStats {
    pub steps: usize,
    pub seconds: f64,
    pub refit_seconds: f64,
    /// Layer refits run (a refit step counts once per refitting layer).
    pub refits: usize,
    /// The schedule: refit every `refit_every` steps before step `refit_stop_at` (no refit
    /// steps when the method does not refit).
    pub refit_every: usize,
    pub refit_stop_at: usize,
    pub refit_steps: usize,
    /// Share of the step time spent refitting quanta.
    #[serde(deserialize_with = "crate::sweep::cell::nan_if_null")]
    pub refit_share: f64,
    #[serde(deserialize_with = "crate::sweep::cell::nan_if_null")]
    pub final_train_loss: f64,
}

/// Straight-through fine-tuning steps for `n_train` training samples (at least one).
pub fn finetune_steps(cfg: &Config, n_train: i64) -> usize {
    let f = &cfg.finetune;
    let bs = f.batch_size.min(n_train).max(1);
    let steps_per_epoch = (n_train / bs).max(1) as usize;
    ((f.epochs * steps_per_epoch as f64).round() as usize).max(1)
}

/// The refit schedule of `method` over `total` fine-tuning steps (methods without refits get
/// none); an explicit `quant.refit_every` that never triggers is an error naming the field.
pub fn refit_schedule(cfg: &Config, method: QuantMethod, total: usize) -> Result<RefitSchedule> {
    let refitting = matches!(
        method,
        QuantMethod::Gq
            | QuantMethod::GqExact
            | QuantMethod::GqNoise
            | QuantMethod::UniformMinmax
            | QuantMethod::UniformMse
    );
    if !refitting {
        return Ok(RefitSchedule { every: usize::MAX, stop_at: 0 });
    }
    RefitSchedule::for_finetune(&cfg.quant, total)
        .map_err(|e| crate::error::invalid("quant.refit_every", e))
}

/// Straight-through fine-tuning with whatever weight paths the network carries: master
/// weights (and LSQ steps) learn, the forward pass sees quantized (or noisy) weights.
/// `on_epoch(epoch, mean loss, per-step losses)` runs after every epoch.
pub fn finetune_loop(
    net: &Network,
    task: &dyn Task,
    cfg: &Config,
    dep: &QuantDeployment,
    mut on_epoch: impl FnMut(usize, f64, &[f64]),
) -> Result<FinetuneStats> {
    let f = &cfg.finetune;
    let mut params: Vec<(String, Tensor, f64)> = net
        .vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(n, t)| (n, t, 1.0))
        .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    // Path parameters: LSQ steps at `lsq_lr_scale`, gq-learn levels at `learn_lr_scale`.
    let path_scale = if cfg.quant.method == QuantMethod::GqLearn {
        cfg.quant.learn_lr_scale
    } else {
        f.lsq_lr_scale
    };
    for l in net.layers.layers() {
        for (i, t) in l.trainable().into_iter().enumerate() {
            params.push((format!("{}.path{i}", l.spec.name), t, path_scale));
        }
    }
    let mut opt = Sgd::with_groups(params, f.momentum, f.nesterov, f.weight_decay);
    let device = net.vs.device();
    let n_train = task.train_len();
    let bs = f.batch_size.min(n_train);
    let total = finetune_steps(cfg, n_train);
    let schedule = refit_schedule(cfg, cfg.quant.method, total)?;
    let start = Instant::now();
    net.layers.set_training(true);
    let clock0 = dep
        .clock
        .lock()
        .map(|mut c| {
            c.schedule = Some(schedule);
            (c.total, c.refits)
        })
        .unwrap_or_default();
    let (mut step, mut epoch, mut last_loss) = (0usize, 0usize, f64::NAN);
    while step < total {
        tch::manual_seed(epoch_seed(cfg.seed ^ 0xF17E, epoch));
        let batches = data::epoch_batches(n_train, bs, device);
        // Step losses stay on the device until the epoch ends (one copy per epoch, not a
        // synchronisation per step).
        let mut losses: Vec<Tensor> = Vec::new();
        for idx in batches.iter().take(total - step) {
            let lr = learning_rate(f.lr, step, 0, total);
            let loss = task.batch_loss(net, idx);
            opt.zero_grad();
            loss.backward();
            opt.step(lr);
            losses.push(loss.detach().to_kind(tch::Kind::Double));
            step += 1;
        }
        let step_losses: Vec<f64> = if losses.is_empty() {
            Vec::new()
        } else {
            Vec::<f64>::try_from(Tensor::stack(&losses, 0).to_device(tch::Device::Cpu))
                .map_err(|e| crate::error::invalid("finetune", format!("step losses: {e}")))?
        };
        last_loss = step_losses.iter().sum::<f64>() / step_losses.len().max(1) as f64;
        if !last_loss.is_finite() {
            net.layers.set_training(false);
            if let Ok(mut c) = dep.clock.lock() {
                c.schedule = None;
            }
            return Err(crate::error::invalid(
                "finetune",
                format!(
                    "loss became {last_loss} in fine-tuning epoch {}; lower finetune.lr",
                    epoch + 1
                ),
            ));
        }
        epoch += 1;
        on_epoch(epoch, last_loss, &step_losses);
    }
    net.layers.set_training(false);
    if let Ok(mut c) = dep.clock.lock() {
        c.schedule = None;
    }
    if device.is_cuda() {
        tch::Cuda::synchronize(0);
    }
    let seconds = start.elapsed().as_secs_f64();
    let (total_refit, refits) = dep
        .clock
        .lock()
        .map(|c| ((c.total - clock0.0).as_secs_f64(), c.refits - clock0.1))
        .unwrap_or_default();
    Ok(FinetuneStats {
        steps: total,
        seconds,
        refit_seconds: total_refit,
        refits,
        refit_every: schedule.every.min(total),
        refit_stop_at: schedule.stop_at,
        refit_steps: schedule.count(),
        refit_share: total_refit / seconds.max(1e-9),
        final_train_loss: last_loss,
    })
}

/// Re-estimates every BatchNorm's running statistics of a (quantized) network on about `images`
/// training samples: train-mode forward passes without gradients, the statistics of the batches
/// averaged with equal weight (PyTorch's `momentum=None`, a cumulative average), replacing the
/// fp32 network's statistics, which no longer match the quantized weights' activations.
/// Batches are drawn with `seed`; quantizer paths do not refit outside a fine-tuning schedule.
/// Returns the number of samples used.
pub fn recalibrate_bn(
    net: &Network,
    task: &dyn Task,
    images: usize,
    batch_size: i64,
    seed: u64,
) -> Result<usize> {
    let vars = net.vs.variables();
    let mut stats: Vec<(Tensor, Tensor)> = vars
        .iter()
        .filter_map(|(k, m)| {
            let prefix = k.strip_suffix(".running_mean")?;
            Some((m.shallow_clone(), vars.get(&format!("{prefix}.running_var"))?.shallow_clone()))
        })
        .collect();
    let n_train = task.train_len();
    if stats.is_empty() || images == 0 || n_train == 0 {
        return Ok(0);
    }
    let bs = batch_size.min(images as i64).min(n_train).max(1);
    let count = (images as i64 + bs - 1) / bs;
    let count = count.min((n_train / bs).max(1)) as usize;
    let device = net.vs.device();
    tch::manual_seed(epoch_seed(seed ^ 0xB7CA, 0));
    let batches = data::epoch_batches(n_train, bs, device);
    let mut sums: Vec<(Tensor, Tensor)> =
        stats.iter().map(|(m, v)| (m.zeros_like(), v.zeros_like())).collect();
    net.layers.set_training(true);
    for idx in batches.iter().take(count) {
        tch::no_grad(|| {
            // From zero running statistics, one update leaves momentum x the batch's statistic.
            for (m, v) in stats.iter_mut() {
                let _ = m.zero_();
                let _ = v.zero_();
            }
            let _ = task.batch_loss(net, idx);
            for ((m, v), (sm, sv)) in stats.iter().zip(sums.iter_mut()) {
                *sm += m / BN_MOMENTUM;
                *sv += v / BN_MOMENTUM;
            }
        });
    }
    net.layers.set_training(false);
    tch::no_grad(|| {
        for ((m, v), (sm, sv)) in stats.iter_mut().zip(&sums) {
            m.copy_(&(sm / count as f64));
            v.copy_(&(sv / count as f64));
        }
    });
    Ok(count * bs as usize)
}

/// Loads a checkpoint into a freshly built classifier.
pub fn load_classifier(cfg: &Config, checkpoint_path: &Path, device: Device) -> Result<Network> {
    tch::manual_seed(cfg.seed as i64);
    let mut net = build_classifier(&cfg.model, device);
    load_strict(&mut net.vs, checkpoint_path)?;
    Ok(net)
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
    let ptq = evaluate(&net, &test_ds, &norm, cfg.eval.batch_size)?;
    let ptq_report = quant_report(&net, &cfg.quant, cfg.quant.report_exact_gap);
    log_quant_tb(&mut run, &net, &ptq_report, 0);
    run.tb.scalar("test/accuracy", ptq.accuracy, 0);
    println!(
        "{} {} levels: fp32 {:.2}%  post-training {:.2}%",
        cfg.quant.method.name(),
        cfg.quant.levels,
        100.0 * fp32.accuracy,
        100.0 * ptq.accuracy
    );
    let mut results = json!({
        "command": command,
        "config": serde_json::to_value(cfg).unwrap_or(Value::Null),
        "seed": cfg.seed,
        "git_commit": git_commit(),
        "device": device_info(device),
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
    });
    let mut final_res = ptq;
    if let Some(task) = task.filter(|_| finetune) {
        let stats = finetune_loop(&net, &task, cfg, &dep, |e, loss, _| {
            run.tb.scalar("finetune/loss", loss, e);
        })?;
        let ft = evaluate(&net, &test_ds, &norm, cfg.eval.batch_size)?;
        let report = quant_report(&net, &cfg.quant, cfg.quant.report_exact_gap);
        log_quant_tb(&mut run, &net, &report, 1);
        run.tb.scalar("test/accuracy", ft.accuracy, 1);
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

/// `gqcim export`: quantize a checkpoint and write its crossbar programming data.
pub fn export_command(cfg: &Config, checkpoint_path: &Path, out: &Path) -> Result<Value> {
    let device = setup_device(cfg)?;
    let net = load_classifier(cfg, checkpoint_path, device)?;
    export_network(cfg, net, out)
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
