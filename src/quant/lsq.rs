//! LSQ (Esser et al., ICLR 2020): a symmetric uniform grid with a learned step, as a weight
//! path with the straight-through estimator and the step's own gradient.
use super::paths::level_report;
use crate::nets::layers::{LayerSpec, WeightPath};
use serde_json::{json, Value};
use tch::{Kind, Tensor};

/// LSQ: w_q = s · round(clamp(w / s, -Q, Q)) on a symmetric grid of N levels, Q = (N-1)/2:
/// integer offsets for odd N, half-integer offsets for even N (N=2 gives {-s/2, +s/2}, where
/// the paper's signed integer grid {-Q_N..Q_P} would give the lopsided {-s, 0}); s is learned
/// with LSQ's gradient scale g = 1/sqrt(numel · Q).
#[derive(Debug)]
pub struct LsqPath {
    pub step: Tensor,
    levels: usize,
    grad_scale: f64,
}

impl LsqPath {
    /// Initialises s as the paper does: 2·mean|w| / sqrt(Q_P).
    pub fn new(layer: &LayerSpec, levels: usize) -> LsqPath {
        let w = layer.weight.detach();
        let qp = Self::q_p(levels);
        let init = 2.0 * w.abs().mean(Kind::Float).double_value(&[]) / qp.sqrt();
        let step = Tensor::from_slice(&[init.max(1e-8) as f32])
            .to_device(w.device())
            .set_requires_grad(true);
        let grad_scale = 1.0 / ((w.numel() as f64) * qp).sqrt();
        LsqPath { step, levels, grad_scale }
    }

    /// Largest positive grid offset: (N-1)/2.
    fn q_p(levels: usize) -> f64 {
        (levels as f64 - 1.0) / 2.0
    }

    /// The current levels, s · {-(N-1)/2, ..., (N-1)/2}.
    pub fn level_values(&self) -> Vec<f64> {
        let s = self.step.double_value(&[0]).abs();
        let q = Self::q_p(self.levels);
        (0..self.levels).map(|i| s * (i as f64 - q)).collect()
    }

    fn quantize(&self, w: &Tensor) -> Tensor {
        let q = Self::q_p(self.levels);
        // Gradient scaling trick from the paper: forward s, backward g·ds.
        let s = self.step.abs() + 1e-12;
        let s = &s * self.grad_scale + (&s - &s * self.grad_scale).detach();
        // Offset the grid by 1/2 for even N so that round() lands on half-integers.
        let half = if self.levels.is_multiple_of(2) { 0.5 } else { 0.0 };
        let v = (w / &s - half).clamp(-q - half, q - half);
        let rounded = &v + (v.round() - &v).detach();
        (rounded + half) * s
    }
}

impl WeightPath for LsqPath {
    fn weight(&mut self, layer: &LayerSpec, train: bool) -> Tensor {
        if train {
            self.quantize(&layer.weight)
        } else {
            tch::no_grad(|| self.quantize(&layer.weight))
        }
    }

    fn describe(&self) -> String {
        format!("lsq-{}", self.levels)
    }

    fn trainable(&self) -> Vec<Tensor> {
        vec![self.step.shallow_clone()]
    }

    fn report(&self, layer: &LayerSpec) -> Value {
        let q = tch::no_grad(|| self.quantize(&layer.weight));
        let mut v = level_report(&layer.weight, &[self.level_values()], q);
        v["lsq_step"] = json!(self.step.double_value(&[0]).abs());
        v
    }
}
