//! Which weights to verify: Fisher-diagonal sensitivity of every weight (the summed squared
//! gradient of a training loss through the quantizers), and masks of the most sensitive
//! fraction of the network.
use crate::error::{invalid, Result};
use crate::nets::Network;
use tch::{Kind, Tensor};

/// Fisher-diagonal sensitivity (summed squared gradient of the training loss over a few
/// batches) of every crossbar layer's weights: the score by which selective write-verify
/// picks the weights to verify (SWIM ranks by a second-derivative proxy, for which the
/// Fisher diagonal is the usual stand-in).
///
/// Gradients reach the master weights through the quantizers' straight-through path, so
/// they are the gradients with respect to the quantized weights. The network must carry
/// its quantizing paths (not yet the analog ones). BatchNorm running statistics touched
/// by the train-mode forward passes are restored afterwards.
/// A training loss over a batch of sample indices, and how many samples there are (what
/// `fisher_scores` needs of a task, without the analog layer depending on the engine).
pub type BatchLoss<'a> = (i64, &'a dyn Fn(&Network, &Tensor) -> Tensor);

pub fn fisher_scores(
    net: &Network,
    (n, batch_loss): BatchLoss,
    batches: usize,
    batch_size: i64,
    seed: u64,
) -> Result<Vec<Tensor>> {
    let layers = net.layers.layers();
    if layers.is_empty() {
        return Err(invalid("analog.programming.verify_fraction", "the network has no layers"));
    }
    // Snapshot every variable (running stats included) to restore after the passes.
    let saved: Vec<(Tensor, Tensor)> = net
        .vs
        .variables()
        .into_values()
        .map(|v| {
            let c = tch::no_grad(|| v.detach().copy());
            (v, c)
        })
        .collect();
    let device = layers[0].spec.weight.device();
    let mut fisher: Vec<Tensor> = layers.iter().map(|l| l.spec.weight.zeros_like()).collect();
    tch::manual_seed(seed as i64 ^ 0x5E45);
    net.layers.set_training(true);
    for _ in 0..batches {
        for l in &layers {
            let mut g = l.spec.weight.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let idx = Tensor::randint(n, [batch_size.min(n)], (Kind::Int64, device));
        let loss = batch_loss(net, &idx);
        loss.backward();
        for (f, l) in fisher.iter_mut().zip(&layers) {
            let g = l.spec.weight.grad();
            if g.defined() {
                *f = &*f + g.square();
            }
        }
    }
    net.layers.set_training(false);
    tch::no_grad(|| {
        for (v, c) in &saved {
            let mut v = v.shallow_clone();
            v.copy_(c);
            let mut g = v.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    });
    Ok(fisher.into_iter().map(|f| f.detach()).collect())
}

/// Per-layer masks of the top `fraction` of all weights of the network by `scores`.
pub fn top_fraction_masks(scores: &[Tensor], fraction: f64) -> Result<Vec<Tensor>> {
    let fisher = scores;
    tch::no_grad(|| {
        let all = Tensor::cat(&fisher.iter().map(|f| f.flatten(0, -1)).collect::<Vec<_>>(), 0);
        let total = all.numel() as i64;
        let keep = ((fraction * total as f64).round() as i64).clamp(0, total);
        if keep == 0 {
            return Ok(fisher.iter().map(|f| f.zeros_like().to_kind(Kind::Bool)).collect());
        }
        if keep == total {
            return Ok(fisher.iter().map(|f| f.ones_like().to_kind(Kind::Bool)).collect());
        }
        // The keep-th largest score; ties at the threshold are all verified.
        let threshold = all.topk(keep, 0, true, true).0.min();
        Ok(fisher.iter().map(|f| f.ge_tensor(&threshold)).collect())
    })
}
