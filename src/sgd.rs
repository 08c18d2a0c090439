//! SGD with momentum, Nesterov option and L2 weight decay, as `torch.optim.SGD` computes it.
//! Kept in Rust (not libtorch's C++ optimizer) so that the momentum buffers can be saved
//! with a checkpoint and a resumed run continues exactly.
use std::collections::HashMap;
use tch::Tensor;

pub struct Sgd {
    params: Vec<(String, Tensor)>,
    /// Per-parameter learning-rate multipliers (1 for weights; LSQ steps may differ).
    lr_scale: Vec<f64>,
    buffers: Vec<Option<Tensor>>,
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
}

impl Sgd {
    /// `params`: the trainable variables with their names (buffers are keyed by name).
    pub fn new(params: Vec<(String, Tensor)>, momentum: f64, nesterov: bool, wd: f64) -> Sgd {
        let n = params.len();
        Sgd {
            params,
            lr_scale: vec![1.0; n],
            buffers: (0..n).map(|_| None).collect(),
            momentum,
            nesterov,
            weight_decay: wd,
        }
    }

    /// As `new`, with a learning-rate multiplier per parameter. Parameters with a
    /// multiplier other than 1 (quantizer step sizes) get no weight decay.
    pub fn with_groups(
        params: Vec<(String, Tensor, f64)>,
        momentum: f64,
        nesterov: bool,
        wd: f64,
    ) -> Sgd {
        let lr_scale = params.iter().map(|p| p.2).collect();
        let params = params.into_iter().map(|(n, t, _)| (n, t)).collect();
        let mut s = Sgd::new(params, momentum, nesterov, wd);
        s.lr_scale = lr_scale;
        s
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_();
                let _ = g.zero_();
            }
        }
    }

    /// One update: g += wd*p; b = mu*b + g; d = nesterov ? g + mu*b : b; p -= lr*d.
    pub fn step(&mut self, lr: f64) {
        tch::no_grad(|| {
            let items = self.params.iter().zip(self.buffers.iter_mut()).zip(&self.lr_scale);
            for (((_, p), buf), scale) in items {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let wd = if *scale == 1.0 { self.weight_decay } else { 0.0 };
                let mut d = if wd != 0.0 { &g + p * wd } else { g };
                if self.momentum != 0.0 {
                    match buf {
                        None => *buf = Some(d.detach().copy()),
                        Some(b) => {
                            let _ = b.g_mul_scalar_(self.momentum).g_add_(&d);
                        }
                    }
                    let b = buf.as_ref().expect("buffer set above");
                    d = if self.nesterov { d + b * self.momentum } else { b.shallow_clone() };
                }
                let _ = p.shallow_clone().g_add_(&(d * (-lr * scale)));
            }
        })
    }

    /// Momentum buffers as named tensors (`<param name>.momentum_buffer`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .zip(&self.buffers)
            .filter_map(|((n, _), b)| {
                b.as_ref().map(|b| (format!("{n}.momentum_buffer"), b.copy()))
            })
            .collect()
    }

    /// Restores buffers saved by `state`; unknown or absent names are left empty.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) {
        for ((n, p), buf) in self.params.iter().zip(self.buffers.iter_mut()) {
            if let Some(t) = state.get(&format!("{n}.momentum_buffer")) {
                if t.size() == p.size() {
                    *buf = Some(t.to_device(p.device()).to_kind(p.kind()));
                }
            }
        }
    }
}
