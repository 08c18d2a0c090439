//! `gq-learn`: learned quanta. The N levels of a layer (one row per layer, or one per output
//! channel) are trainable parameters fine-tuned with the network, in the spirit of LQ-Nets
//! (D. Zhang, J. Yang, D. Ye, G. Hua, "LQ-Nets: Learned Quantization for Highly Accurate and
//! Compact Deep Neural Networks", ECCV 2018), with plain gradient descent on the levels rather
//! than LQ-Nets' alternating least-squares basis update.
//!
//! Forward: each weight goes to its nearest level (midpoint thresholds of the current levels).
//! Backward: the weight gets the straight-through gradient (identity), and each level the sum of
//! the straight-through gradients of the weights assigned to it, which is exactly the gradient
//! of `gather(levels, assignment)` with the assignment held fixed. The levels start from the
//! `gq` or `gq-noise` fit (`quant.learn_init`); under `qat-noise` the noise-aware path wraps this
//! one, so programming noise is drawn on every mini-batch and the levels learn under it.
use super::paths::{fit_quanta, level_report, FitSettings, LayerQuanta};
use crate::nets::layers::{LayerSpec, WeightPath};
use serde_json::{json, Value};
use tch::{Kind, Tensor};

/// A layer whose levels are trainable.
#[derive(Debug)]
pub struct LearnedLevelPath {
    /// [rows, n], requires grad; rows = 1 (per layer) or the output channels.
    pub levels: Tensor,
    /// The fit the levels started from (for the report).
    pub init: LayerQuanta,
    method: String,
}

impl LearnedLevelPath {
    /// Fits the starting levels with `settings` (method gq or gq-noise).
    pub fn new(layer: &LayerSpec, settings: &FitSettings) -> Result<LearnedLevelPath, String> {
        let init = fit_quanta(&layer.weight, settings, None)?;
        let (rows, n) = (init.rows.len() as i64, init.rows[0].len() as i64);
        let flat: Vec<f64> = init.rows.iter().flatten().copied().collect();
        // The levels take the weight's dtype, so their sort and the thresholds compare like
        // with like (and f64 layers get f64 levels).
        let levels = Tensor::from_slice(&flat)
            .view([rows, n])
            .to_kind(layer.weight.kind())
            .to_device(layer.weight.device())
            .set_requires_grad(true);
        Ok(LearnedLevelPath { levels, init, method: format!("gq-learn-{n}") })
    }

    /// The current levels per row, ascending.
    pub fn level_rows(&self) -> Vec<Vec<f64>> {
        let sorted = self.levels.detach().sort(1, false).0.to_kind(Kind::Double);
        let n = sorted.size()[1] as usize;
        Vec::<f64>::try_from(sorted.reshape([-1]))
            .unwrap_or_default()
            .chunks(n.max(1))
            .map(|c| c.to_vec())
            .collect()
    }

    /// Nearest-level quantization of `w` [rows·k ...] with a gradient to the levels (sum over
    /// the weights assigned to each) and straight through to `w`. The levels are sorted inside
    /// the graph, so an optimizer step that reorders two levels changes nothing but their order.
    pub fn quantize(&self, w: &Tensor) -> Tensor {
        let rows = self.levels.size()[0];
        let n = self.levels.size()[1];
        let sorted = self.levels.sort(1, false).0;
        let thr = tch::no_grad(|| {
            (sorted.narrow(1, 0, n - 1) + sorted.narrow(1, 1, n - 1)).detach() * 0.5
        });
        let flat = w.detach().reshape([rows, -1]).contiguous();
        let idx = flat.searchsorted(&thr.contiguous(), false, false, "left", None::<Tensor>);
        let q = sorted.to_kind(w.kind()).gather(1, &idx, false).reshape(w.size());
        q + (w - w.detach())
    }
}

impl WeightPath for LearnedLevelPath {
    fn weight(&mut self, layer: &LayerSpec, train: bool) -> Tensor {
        if train {
            self.quantize(&layer.weight)
        } else {
            tch::no_grad(|| self.quantize(&layer.weight).detach())
        }
    }

    fn describe(&self) -> String {
        self.method.clone()
    }

    fn trainable(&self) -> Vec<Tensor> {
        vec![self.levels.shallow_clone()]
    }

    fn report(&self, layer: &LayerSpec) -> Value {
        let q = tch::no_grad(|| self.quantize(&layer.weight).detach());
        let mut v = level_report(&layer.weight, &self.level_rows(), q);
        v["initial_quanta"] = json!(self.init.rows);
        v
    }
}
