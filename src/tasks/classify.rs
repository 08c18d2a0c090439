//! Image classification: training (SGD + cosine schedule with warm-up), evaluation (top-1),
//! checkpoints with resume, TensorBoard logging and results.json.
use crate::checkpoint::{self, load_strict, save_varstore};
use crate::checkpoint_set::CheckpointSet;
use crate::config::Config;
use crate::data::{self, augment, Dataset, Normalizer};
use crate::error::{GqcimError, Result};
use crate::nets::{build_classifier, Network};
use crate::run::{device_info, git_commit, setup_device, RunDir};
use crate::sgd::Sgd;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Reduction, Tensor};

/// Top-1 accuracy and mean cross-entropy of a network on a dataset (eval mode, no grad).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct EvalResult {
    pub accuracy: f64,
    pub loss: f64,
    pub images: i64,
    pub seconds: f64,
}

/// Evaluates in batches; metrics accumulate as f64 on the host, one sync per batch.
/// An empty set, or logits that are NaN or infinite (argmax would still pick a class and
/// report a plausible-looking accuracy), are errors.
pub fn evaluate(
    net: &Network,
    ds: &Dataset,
    norm: &Normalizer,
    batch_size: i64,
) -> Result<EvalResult> {
    let start = Instant::now();
    let n = ds.len();
    if n == 0 {
        return Err(GqcimError::Invalid {
            field: "data".into(),
            msg: "the evaluation set has no images (check data.test_limit and the test files)"
                .into(),
        });
    }
    let (mut correct, mut loss_sum) = (0i64, 0f64);
    tch::no_grad(|| -> Result<()> {
        let mut i = 0;
        while i < n {
            let b = batch_size.min(n - i);
            let x = norm.normalize(&Normalizer::to_unit(&ds.images.narrow(0, i, b)));
            let y = ds.labels.narrow(0, i, b);
            let logits = net.forward_t(&x, false);
            check_finite_output(&logits, net, i)?;
            loss_sum += logits
                .cross_entropy_loss::<Tensor>(&y, None, Reduction::Sum, -100, 0.0)
                .double_value(&[]);
            correct += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64).int64_value(&[]);
            i += b;
        }
        Ok(())
    })?;
    Ok(EvalResult {
        accuracy: correct as f64 / n as f64,
        loss: loss_sum / n as f64,
        images: n,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Stops an evaluation whose network output holds NaN or infinite values; the message
/// names the first hooked layer whose effective weight is non-finite, when one is.
pub fn check_finite_output(out: &Tensor, net: &Network, first_image: i64) -> Result<()> {
    let bad = out.isfinite().logical_not().sum(Kind::Int64).int64_value(&[]);
    if bad == 0 {
        return Ok(());
    }
    let culprit = net.layers.layers().iter().find_map(|l| {
        let w = l.effective_weight();
        let finite = w.isfinite().all().int64_value(&[]) == 1;
        (!finite).then(|| l.spec.name.clone())
    });
    let why = match &culprit {
        Some(name) => format!("the effective weight of layer `{name}` is not finite"),
        None => "the weights are finite, so an activation overflowed".to_string(),
    };
    Err(GqcimError::Layer {
        layer: culprit.unwrap_or_else(|| "<network output>".into()),
        msg: format!(
            "{bad} network outputs are NaN or infinite in the batch starting at test image \
             {first_image} ({why}); no metric is reported"
        ),
    })
}

/// Linear warm-up to the peak rate, then cosine annealing to zero.
pub fn learning_rate(peak: f64, step: usize, warmup_steps: usize, total_steps: usize) -> f64 {
    if step < warmup_steps {
        return peak * (step + 1) as f64 / warmup_steps as f64;
    }
    let span = (total_steps - warmup_steps).max(1) as f64;
    let t = (step - warmup_steps) as f64 / span;
    0.5 * peak * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
}

/// The generator seed for one epoch: data order and augmentation of epoch e depend only on
/// (seed, e), so a resumed run draws exactly what an uninterrupted one would have.
pub fn epoch_seed(seed: u64, epoch: usize) -> i64 {
    let x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(epoch as u64 + 1);
    (x ^ (x >> 29)) as i64 & i64::MAX
}

/// Train-mode input batch: gather, scale, augment, normalise — all on the tensor side.
pub fn train_batch(
    ds: &Dataset,
    idx: &Tensor,
    cfg: &Config,
    norm: &Normalizer,
) -> (Tensor, Tensor) {
    let mut x = Normalizer::to_unit(&ds.images.index_select(0, idx));
    if cfg.data.augment.crop_padding > 0 {
        x = augment::random_crop(&x, cfg.data.augment.crop_padding);
    }
    if cfg.data.augment.horizontal_flip {
        x = augment::random_hflip(&x);
    }
    (norm.normalize(&x), ds.labels.index_select(0, idx))
}

/// Loads both splits, checks them against the model config, moves them to the device.
pub fn load_data(cfg: &Config, device: Device) -> Result<(Dataset, Dataset)> {
    let train = data::load_split(&cfg.data, true)?;
    let test = data::load_split(&cfg.data, false)?;
    data::check_same_image_size(&train, &test, &cfg.data.root)?;
    data::check_against_model(&train, cfg.model.in_channels, cfg.model.num_classes)?;
    Ok((train.to_device(device), test.to_device(device)))
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}<{eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(what.to_string());
    pb
}

/// Prints a line above the progress bars, or plainly when they are hidden (not a terminal).
pub fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}

/// Logs one histogram per hooked layer's master weight.
pub fn log_weight_histograms(run: &mut RunDir, net: &Network, step: usize) {
    for l in net.layers.layers() {
        run.tb.histogram(&format!("weights/{}", l.spec.name), &l.spec.weight, step, 64);
    }
}

/// Trains a classifier from scratch (or resumes a run folder) and evaluates it every epoch.
pub fn train(
    cfg: &Config,
    config_path: &Path,
    run_dir: Option<&Path>,
    resume: bool,
) -> Result<Value> {
    let device = setup_device(cfg)?;
    let (train_ds, test_ds) = load_data(cfg, device)?;
    let norm = Normalizer::new(&cfg.data, device);
    tch::manual_seed(cfg.seed as i64);
    let mut net = build_classifier(&cfg.model, device);
    let params: Vec<(String, Tensor)> = {
        let mut v: Vec<(String, Tensor)> =
            net.vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let t = &cfg.train;
    let mut opt = Sgd::new(params, t.momentum, t.nesterov, t.weight_decay);
    let mut run = RunDir::create(cfg, "train", config_path, run_dir)?;
    let ck = CheckpointSet::in_run(&run.path);
    let config_hash = checkpoint::sha256_str(&cfg.to_yaml());

    let mut start_epoch = 0;
    let mut history: Vec<Value> = Vec::new();
    if resume {
        let r = ck.resume(&mut net.vs, &mut opt, &config_hash)?;
        start_epoch = r.epoch;
        history = r.history;
        log::info!("resumed {} at epoch {start_epoch}", run.path.display());
    }

    let bs = t.batch_size.min(train_ds.len());
    let steps_per_epoch = (train_ds.len() / bs).max(1) as usize;
    let total_steps = steps_per_epoch * t.epochs;
    let warmup_steps = (t.warmup_epochs * steps_per_epoch as f64).round() as usize;
    log::info!(
        "training {} on {} images ({} test), {} epochs x {} steps, device {:?}",
        net.arch,
        train_ds.len(),
        test_ds.len(),
        t.epochs,
        steps_per_epoch,
        device
    );
    let wall = Instant::now();
    let (mut train_seconds, mut train_images) = (0f64, 0i64);
    let epochs_bar = progress(t.epochs as u64, "epochs");
    epochs_bar.set_position(start_epoch as u64);
    let mut last_test = None;
    for epoch in start_epoch..t.epochs {
        tch::manual_seed(epoch_seed(cfg.seed, epoch));
        let batches = data::epoch_batches(train_ds.len(), bs, device);
        let bar = progress(batches.len() as u64, &format!("epoch {}", epoch + 1));
        let epoch_start = Instant::now();
        let mut loss_acc = Tensor::zeros([], (Kind::Float, device));
        let mut correct_acc = Tensor::zeros([], (Kind::Int64, device));
        for (i, idx) in batches.iter().enumerate() {
            let step = epoch * steps_per_epoch + i;
            let lr = learning_rate(t.lr, step, warmup_steps, total_steps);
            let (x, y) = train_batch(&train_ds, idx, cfg, &norm);
            let logits = net.forward_t(&x, true);
            let loss = logits.cross_entropy_loss::<Tensor>(
                &y,
                None,
                Reduction::Mean,
                -100,
                t.label_smoothing,
            );
            opt.zero_grad();
            loss.backward();
            opt.step(lr);
            tch::no_grad(|| {
                loss_acc += loss.detach();
                correct_acc += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64);
            });
            if (i + 1) % t.nan_check_every == 0 || i + 1 == batches.len() {
                let s = loss_acc.double_value(&[]);
                if !s.is_finite() {
                    bar.abandon();
                    return Err(GqcimError::Invalid {
                        field: "train".into(),
                        msg: format!(
                            "loss became {s} at epoch {} step {} (lr {lr:.4}); stopped, the last \
                             good checkpoint is kept at {} — lower train.lr or check the data",
                            epoch + 1,
                            i + 1,
                            if ck.model.is_file() {
                                ck.model.display().to_string()
                            } else {
                                "<none yet>".into()
                            }
                        ),
                    });
                }
                bar.set_message(format!("loss {:.4} lr {lr:.4}", s / (i + 1) as f64));
                run.tb.scalar("train/loss_step", s / (i + 1) as f64, step + 1);
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        if device.is_cuda() {
            tch::Cuda::synchronize(0);
        }
        let secs = epoch_start.elapsed().as_secs_f64();
        let nb = batches.len() as f64;
        train_seconds += secs;
        train_images += batches.len() as i64 * bs;
        let train_loss = loss_acc.double_value(&[]) / nb;
        let train_acc = correct_acc.int64_value(&[]) as f64 / (nb * bs as f64);
        // A diverged network can pass the loss check of its last step and still output NaN.
        let test = evaluate(&net, &test_ds, &norm, cfg.eval.batch_size).map_err(|err| {
            GqcimError::Invalid {
                field: "train".into(),
                msg: format!(
                    "evaluation after epoch {} failed: {err}; stopped, the last good checkpoint \
                     is kept at {} — lower train.lr or check the data",
                    epoch + 1,
                    if ck.model.is_file() {
                        ck.model.display().to_string()
                    } else {
                        "<none yet>".into()
                    }
                ),
            }
        })?;
        let e = epoch + 1;
        let lr_now =
            learning_rate(t.lr, (e * steps_per_epoch).saturating_sub(1), warmup_steps, total_steps);
        run.tb.scalar("train/loss", train_loss, e);
        run.tb.scalar("train/accuracy", train_acc, e);
        run.tb.scalar("train/lr", lr_now, e);
        run.tb.scalar("train/images_per_second", nb * bs as f64 / secs, e);
        run.tb.scalar("test/accuracy", test.accuracy, e);
        run.tb.scalar("test/loss", test.loss, e);
        if t.histogram_every > 0 && e % t.histogram_every == 0 {
            log_weight_histograms(&mut run, &net, e);
        }
        run.tb.flush()?;
        history.push(json!({"epoch": e, "train_loss": train_loss, "train_accuracy": train_acc,
            "test_accuracy": test.accuracy, "test_loss": test.loss, "seconds": secs}));
        ck.save(
            &net.vs,
            &opt,
            e,
            json!({"config_sha256": config_hash, "seed": cfg.seed, "arch": net.arch,
                   "metrics": {"test_accuracy": test.accuracy, "test_loss": test.loss,
                               "train_loss": train_loss}, "history": history}),
        )?;
        say(
            &epochs_bar,
            format!(
                "epoch {e:>3}/{}  train loss {train_loss:.4}  train acc {:.2}%  test acc {:.2}%  \
             {:.0} img/s",
                t.epochs,
                100.0 * train_acc,
                100.0 * test.accuracy,
                nb * bs as f64 / secs
            ),
        );
        epochs_bar.inc(1);
        last_test = Some(test);
    }
    epochs_bar.finish_and_clear();
    let test = match last_test {
        Some(t) => t,
        None => evaluate(&net, &test_ds, &norm, cfg.eval.batch_size)?,
    };
    let final_model = run.path.join("model.safetensors");
    save_varstore(&net.vs, &final_model)?;
    let results = json!({
        "command": "train",
        "config": serde_json::to_value(cfg).unwrap_or(Value::Null),
        "seed": cfg.seed,
        "git_commit": git_commit(),
        "device": device_info(device),
        "arch": net.arch,
        "parameters": net.vs.trainable_variables().iter().map(|t| t.numel()).sum::<usize>(),
        "metrics": {"test_accuracy": test.accuracy, "test_loss": test.loss},
        "history": history,
        "model": final_model.display().to_string(),
        "model_sha256": checkpoint::sha256_file(&final_model)?,
        "wall_seconds": wall.elapsed().as_secs_f64(),
        "train_seconds_this_process": train_seconds,
        "train_images_per_second": if train_seconds > 0.0 { train_images as f64 / train_seconds } else { 0.0 },
    });
    run.write_results(&results)?;
    run.tb.flush()?;
    println!(
        "test accuracy: {:.2}% ({} images); run folder {}",
        100.0 * test.accuracy,
        test.images,
        run.path.display()
    );
    Ok(results)
}

/// Evaluates a checkpoint on the test split and writes a run folder.
pub fn eval(
    cfg: &Config,
    config_path: &Path,
    checkpoint_path: &Path,
    run_dir: Option<&Path>,
) -> Result<Value> {
    let device = setup_device(cfg)?;
    let test_ds = data::load_split(&cfg.data, false)?;
    data::check_against_model(&test_ds, cfg.model.in_channels, cfg.model.num_classes)?;
    let test_ds = test_ds.to_device(device);
    let norm = Normalizer::new(&cfg.data, device);
    tch::manual_seed(cfg.seed as i64);
    let mut net = build_classifier(&cfg.model, device);
    load_strict(&mut net.vs, checkpoint_path)?;
    let mut run = RunDir::create(cfg, "eval", config_path, run_dir)?;
    if cfg.analog.enabled {
        return analog_eval(cfg, &net, &test_ds, &norm, &mut run, checkpoint_path, device);
    }
    let res = evaluate(&net, &test_ds, &norm, cfg.eval.batch_size)?;
    run.tb.scalar("test/accuracy", res.accuracy, 0);
    run.tb.scalar("test/loss", res.loss, 0);
    log_weight_histograms(&mut run, &net, 0);
    run.tb.flush()?;
    let results = json!({
        "command": "eval",
        "config": serde_json::to_value(cfg).unwrap_or(Value::Null),
        "seed": cfg.seed,
        "git_commit": git_commit(),
        "device": device_info(device),
        "arch": net.arch,
        "checkpoint": checkpoint_path.display().to_string(),
        "checkpoint_sha256": checkpoint::sha256_file(checkpoint_path)?,
        "metrics": {"test_accuracy": res.accuracy, "test_loss": res.loss},
        "test_images": res.images,
        "eval_seconds": res.seconds,
        "images_per_second": res.images as f64 / res.seconds.max(1e-9),
    });
    run.write_results(&results)?;
    println!(
        "test accuracy: {:.2}% ({} images, {:.0} img/s); run folder {}",
        100.0 * res.accuracy,
        res.images,
        res.images as f64 / res.seconds.max(1e-9),
        run.path.display()
    );
    Ok(results)
}

/// `gqcim eval --analog`: quantize with `quant` (fp32 = continuous conductances), put every
/// layer on the crossbar, and run Monte-Carlo trials over the whole test set.
fn analog_eval(
    cfg: &Config,
    net: &Network,
    test_ds: &Dataset,
    norm: &Normalizer,
    run: &mut RunDir,
    checkpoint_path: &Path,
    device: Device,
) -> Result<Value> {
    let start = Instant::now();
    let digital_fp32 = evaluate(net, test_ds, norm, cfg.eval.batch_size)?;
    let dep = crate::quant::deploy::apply_quantization(net, &cfg.quant, &cfg.analog)?;
    let digital_q = evaluate(net, test_ds, norm, cfg.eval.batch_size)?;
    crate::analog::montecarlo::deploy_analog(net, &cfg.analog);
    let mut trial_seconds = Vec::new();
    let by_time =
        crate::analog::montecarlo::monte_carlo_times(net, &cfg.analog, cfg.seed, true, |n| {
            let r = evaluate(n, test_ds, norm, cfg.eval.batch_size)?;
            trial_seconds.push(r.seconds);
            Ok(r.accuracy)
        })?;
    // The first time of the axis is the headline (the only one without a time axis).
    let stats = by_time[0].stats.clone();
    for (k, ts) in by_time.iter().enumerate() {
        if ts.t_inference.is_some() {
            run.tb.scalar("analog/accuracy_mean_by_time", ts.stats.mean, k);
            println!(
                "t = {:>7}: accuracy {:.2}% ± {:.2} (95% CI ± {:.2}) over {} trials",
                crate::analog::montecarlo::time_label(ts.t_inference),
                100.0 * ts.stats.mean,
                100.0 * ts.stats.std,
                100.0 * ts.stats.ci95,
                ts.stats.trials.len()
            );
        }
    }
    for t in &stats.trials {
        run.tb.scalar("analog/accuracy_trial", t.metric, t.trial);
    }
    run.tb.scalar("analog/accuracy_mean", stats.mean, 0);
    run.tb.scalar("test/accuracy_fp32", digital_fp32.accuracy, 0);
    run.tb.scalar("test/accuracy_quantized", digital_q.accuracy, 0);
    run.tb.flush()?;
    let results = json!({
        "command": "eval --analog",
        "config": serde_json::to_value(cfg).unwrap_or(Value::Null),
        "seed": cfg.seed,
        "git_commit": git_commit(),
        "device": device_info(device),
        "arch": net.arch,
        "checkpoint": checkpoint_path.display().to_string(),
        "checkpoint_sha256": checkpoint::sha256_file(checkpoint_path)?,
        "quantized_layers": dep.quantized,
        "kept_fp32": dep.kept_fp32,
        "digital_fp32_accuracy": digital_fp32.accuracy,
        "digital_quantized_accuracy": digital_q.accuracy,
        "analog": stats,
        "analog_by_time": by_time,
        "fp32_eval_seconds": digital_fp32.seconds,
        "trial_eval_seconds": trial_seconds,
        "metrics": {"test_accuracy": stats.mean},
        "wall_seconds": start.elapsed().as_secs_f64(),
    });
    run.write_results(&results)?;
    println!(
        "analog {} ({} levels), {} trials: accuracy {}; digital quantized {:.2}%, fp32 {:.2}%; \
         run folder {}",
        cfg.quant.method.name(),
        cfg.quant.levels,
        stats.trials.len(),
        stats.spread_text(),
        100.0 * digital_q.accuracy,
        100.0 * digital_fp32.accuracy,
        run.path.display()
    );
    Ok(results)
}
