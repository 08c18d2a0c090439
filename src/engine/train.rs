//! The one training loop: SGD with warm-up + cosine schedule, per-epoch seeds (data order and
//! augmentation depend only on seed and epoch, so a resumed run draws what an uninterrupted
//! one would), a NaN guard, checkpoints after every epoch, TensorBoard and results.json.
//! Every task trains through it; what differs (data, loss, metrics, pictures) is the task's.
use super::progress::{progress, say};
use super::schedule::{epoch_seed, learning_rate};
use super::task::{run_record, Metrics, PerEpoch, Task};
use crate::checkpoint::{self, save_varstore};
use crate::checkpoint_set::CheckpointSet;
use crate::data;
use crate::error::{invalid, GqcimError, Result};
use crate::nets::Network;
use crate::run::RunDir;
use crate::sgd::Sgd;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Logs one histogram per hooked layer's master weight.
pub fn log_weight_histograms(run: &mut RunDir, net: &Network, step: usize) {
    for l in net.layers.layers() {
        run.tb.histogram(&format!("weights/{}", l.spec.name), &l.spec.weight, step, 64);
    }
}

/// "the last good checkpoint is kept at …" for the error of a run that stopped.
fn kept(ck: &CheckpointSet) -> String {
    if ck.model.is_file() {
        ck.model.display().to_string()
    } else {
        "<none yet>".into()
    }
}

/// The trainable parameters in name order (the optimizer's state is saved in this order).
fn sorted_parameters(net: &Network) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> =
        net.vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn log_metrics(run: &mut RunDir, m: &Metrics, step: usize) {
    for (name, v) in &m.scalars {
        run.tb.scalar(&format!("test/{name}"), *v, step);
    }
}

/// `train` on a task as the registry opens it (`tasks::X::open(cfg, Purpose::Train)`).
pub fn train_opened(
    (mut task, device): (Box<dyn Task>, Device),
    config_path: &Path,
    run_dir: Option<&Path>,
    resume: bool,
) -> Result<Value> {
    train(task.as_mut(), device, config_path, run_dir, resume)
}

/// Trains the task's network from scratch (or resumes `run_dir`), evaluating after every
/// epoch; writes the run folder and returns its results.json.
pub fn train(
    task: &mut dyn Task,
    device: Device,
    config_path: &Path,
    run_dir: Option<&Path>,
    resume: bool,
) -> Result<Value> {
    let wall = Instant::now();
    let config_yaml = task.config_yaml();
    let (t, seed) = {
        let s = task.train_setup();
        (s.train.clone(), s.seed)
    };
    tch::manual_seed(seed as i64);
    let mut net = task.build_network(device)?;
    let mut opt = Sgd::new(sorted_parameters(&net), t.momentum, t.nesterov, t.weight_decay);
    let mut run = {
        let s = task.train_setup();
        RunDir::create_at(s.place, "train", config_path, run_dir, &config_yaml)?
    };
    let ck = CheckpointSet::in_run(&run.path);
    let config_hash = checkpoint::sha256_str(&config_yaml);

    let mut start_epoch = 0;
    let mut history: Vec<Value> = Vec::new();
    let mut untrained: Option<Metrics> = None;
    if resume {
        let r = ck.resume(&mut net.vs, &mut opt, &config_hash)?;
        start_epoch = r.epoch;
        history = r.history;
        log::info!("resumed {} at epoch {start_epoch}", run.path.display());
    } else {
        // The untrained network's score: the floor that training must clear.
        let m = task.metrics(&net, Some((&mut run.tb, 0)))?;
        log_metrics(&mut run, &m, 0);
        untrained = Some(m);
    }

    let n_train = task.train_len();
    let bs = t.batch_size.min(n_train).max(1);
    let steps_per_epoch = (n_train / bs).max(1) as usize;
    let total_steps = steps_per_epoch * t.epochs;
    let warmup_steps = (t.warmup_epochs * steps_per_epoch as f64).round() as usize;
    log::info!(
        "training {} on {}, {} epochs x {steps_per_epoch} steps, device {device:?}",
        net.arch,
        task.describe_training(),
        t.epochs,
    );
    let (mut train_seconds, mut train_images) = (0f64, 0i64);
    let epochs_bar = progress(t.epochs as u64, "epochs");
    epochs_bar.set_position(start_epoch as u64);
    let mut last = None;
    for epoch in start_epoch..t.epochs {
        task.begin_epoch(epoch);
        tch::manual_seed(epoch_seed(seed, epoch));
        let batches = data::epoch_batches(n_train, bs, device);
        let bar = progress(batches.len() as u64, &format!("epoch {}", epoch + 1));
        let epoch_start = Instant::now();
        let mut loss_acc = Tensor::zeros([], (Kind::Float, device));
        let mut parts_acc: Vec<(&'static str, Tensor, PerEpoch)> = Vec::new();
        for (i, idx) in batches.iter().enumerate() {
            let step = epoch * steps_per_epoch + i;
            let lr = learning_rate(t.lr, step, warmup_steps, total_steps);
            let loss = task.train_loss(&net, idx);
            opt.zero_grad();
            loss.total.backward();
            opt.step(lr);
            tch::no_grad(|| {
                loss_acc += loss.total.detach();
                if parts_acc.is_empty() {
                    parts_acc = loss
                        .parts
                        .iter()
                        .map(|(n, _, per)| (*n, Tensor::zeros([], (Kind::Float, device)), *per))
                        .collect();
                }
                for ((_, acc, _), (_, v, _)) in parts_acc.iter_mut().zip(&loss.parts) {
                    *acc += v.to_kind(Kind::Float);
                }
            });
            if (i + 1) % t.nan_check_every == 0 || i + 1 == batches.len() {
                let s = loss_acc.double_value(&[]);
                if !s.is_finite() {
                    bar.abandon();
                    return Err(invalid(
                        "train",
                        format!(
                            "loss became {s} at epoch {} step {} (lr {lr:.4}); stopped, the last \
                             good checkpoint is kept at {} — lower train.lr or check the data",
                            epoch + 1,
                            i + 1,
                            kept(&ck)
                        ),
                    ));
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
        let e = epoch + 1;
        // A diverged network can pass the loss check of its last step and still output NaN.
        let test =
            task.metrics(&net, Some((&mut run.tb, e))).map_err(|err| GqcimError::Invalid {
                field: "train".into(),
                msg: format!(
                    "evaluation after epoch {e} failed: {err}; stopped, the last good checkpoint \
                     is kept at {} — lower train.lr or check the data",
                    kept(&ck)
                ),
            })?;
        let lr_now =
            learning_rate(t.lr, (e * steps_per_epoch).saturating_sub(1), warmup_steps, total_steps);
        let mut record = Map::new();
        record.insert("epoch".into(), json!(e));
        record.insert("train_loss".into(), json!(train_loss));
        run.tb.scalar("train/loss", train_loss, e);
        for (name, acc, per) in &parts_acc {
            let v = acc.double_value(&[])
                / match per {
                    PerEpoch::BatchMean => nb,
                    PerEpoch::PerImage => nb * bs as f64,
                };
            run.tb.scalar(&format!("train/{name}"), v, e);
            record.insert(format!("train_{name}"), json!(v));
        }
        run.tb.scalar("train/lr", lr_now, e);
        run.tb.scalar("train/images_per_second", nb * bs as f64 / secs, e);
        log_metrics(&mut run, &test, e);
        for (name, v) in &test.scalars {
            record.insert(format!("test_{name}"), json!(v));
        }
        record.insert("seconds".into(), json!(secs));
        record.insert("seconds_per_step".into(), json!(secs / nb));
        if t.histogram_every > 0 && e % t.histogram_every == 0 {
            log_weight_histograms(&mut run, &net, e);
        }
        run.tb.flush()?;
        history.push(Value::Object(record));
        ck.save(
            &net.vs,
            &opt,
            e,
            json!({"config_sha256": config_hash, "seed": seed, "arch": net.arch,
                   "metrics": test.json, "train_loss": train_loss, "history": history}),
        )?;
        say(
            &epochs_bar,
            format!(
                "epoch {e:>3}/{}  train loss {train_loss:.4}  {}  {:.0} img/s",
                t.epochs,
                test.summary,
                nb * bs as f64 / secs
            ),
        );
        epochs_bar.inc(1);
        last = Some(test);
    }
    epochs_bar.finish_and_clear();
    let test = match last {
        Some(m) => m,
        None => task.metrics(&net, None)?,
    };
    let final_model = run.path.join("model.safetensors");
    save_varstore(&net.vs, &final_model)?;
    let mut results = run_record(&*task, "train", device).with(json!({
        "arch": net.arch,
        "parameters": net.vs.trainable_variables().iter().map(|t| t.numel()).sum::<usize>(),
        "hooked_layers": net.layers.layers().len(),
        "metrics": test.json,
        "untrained": untrained.map(|m| m.json),
        "history": history,
        "model": final_model.display().to_string(),
        "model_sha256": checkpoint::sha256_file(&final_model)?,
        "wall_seconds": wall.elapsed().as_secs_f64(),
        "train_seconds_this_process": train_seconds,
        "train_images_per_second": if train_seconds > 0.0 { train_images as f64 / train_seconds } else { 0.0 },
    }));
    if let (Value::Object(r), Value::Object(extra)) = (&mut results, task.record()) {
        r.extend(extra);
    }
    run.write_results(&results)?;
    run.tb.flush()?;
    println!("{}; run folder {}", test.summary, run.path.display());
    Ok(results)
}
