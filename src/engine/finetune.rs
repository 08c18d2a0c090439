//! Straight-through fine-tuning of a quantized network through any task's loss (the grid's units,
//! `finetune` and the task commands), and BatchNorm re-estimation after post-training
//! quantization.
use crate::config::{Config, QuantMethod};
use crate::data::{self};
use crate::engine::schedule::{epoch_seed, learning_rate};
use crate::engine::task::Task;
use crate::error::Result;
use crate::nets::layers::BN_MOMENTUM;
use crate::nets::Network;
use crate::quant::deploy::QuantDeployment;
use crate::quant::paths::RefitSchedule;
use crate::sgd::Sgd;
use std::time::Instant;
use tch::Tensor;

/// The optimizer's parameter groups of a network under fine-tuning: its trainable variables
/// in name order at learning-rate scale 1, then the weight paths' own parameters (LSQ steps,
/// learned levels) at `path_scale`.
pub fn parameter_groups(net: &Network, path_scale: f64) -> Vec<(String, Tensor, f64)> {
    let mut params: Vec<(String, Tensor, f64)> = net
        .vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(n, t)| (n, t, 1.0))
        .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    for l in net.layers.layers() {
        for (i, t) in l.trainable().into_iter().enumerate() {
            params.push((format!("{}.path{i}", l.spec.name), t, path_scale));
        }
    }
    params
}

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
    #[serde(deserialize_with = "crate::report::nan_if_null")]
    pub refit_share: f64,
    #[serde(deserialize_with = "crate::report::nan_if_null")]
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
    // Path parameters: LSQ steps at `lsq_lr_scale`, gq-learn levels at `learn_lr_scale`.
    let path_scale = if cfg.quant.method == QuantMethod::GqLearn {
        cfg.quant.learn_lr_scale
    } else {
        f.lsq_lr_scale
    };
    let params = parameter_groups(net, path_scale);
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
