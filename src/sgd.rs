//! SGD with momentum, Nesterov option and L2 weight decay, as `torch.optim.SGD` computes it.
//! Kept in Rust (not libtorch's C++ optimizer) so that the momentum buffers can be saved
//! with a checkpoint and a resumed run continues exactly.
use std::collections::HashMap;
use tch::Tensor;

pub struct Sgd {
    params: Vec<(String, Tensor)>,
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
            buffers: (0..n).map(|_| None).collect(),
            momentum,
            nesterov,
            weight_decay: wd,
        }
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
            for ((_, p), buf) in self.params.iter().zip(self.buffers.iter_mut()) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let mut d = if self.weight_decay != 0.0 {
                    &g + p * self.weight_decay
                } else {
                    g
                };
                if self.momentum != 0.0 {
                    match buf {
                        None => *buf = Some(d.detach().copy()),
                        Some(b) => {
                            let _ = b.g_mul_scalar_(self.momentum).g_add_(&d);
                        }
                    }
                    let b = buf.as_ref().expect("buffer set above");
                    d = if self.nesterov {
                        d + b * self.momentum
                    } else {
                        b.shallow_clone()
                    };
                }
                let _ = p.shallow_clone().g_add_(&(d * (-lr)));
            }
        })
    }

    /// Momentum buffers as named tensors (`<param name>.momentum_buffer`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .zip(&self.buffers)
            .filter_map(|((n, _), b)| {
                b.as_ref()
                    .map(|b| (format!("{n}.momentum_buffer"), b.copy()))
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
