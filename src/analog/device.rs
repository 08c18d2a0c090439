//! Conductance mapping and device non-idealities, all on the tensor side.
use crate::config::{Drift, ProgrammingNoise, StuckAt};
use tch::{Kind, Tensor};

/// Weights of one layer as a differential pair of conductance maps (µS) and the scale that
/// maps conductance differences back to weights: w = alpha·(G+ − G−).
#[derive(Debug)]
pub struct PairMap {
    pub g_pos: Tensor,
    pub g_neg: Tensor,
    /// Scalar (per layer) or [c_out, 1, ...] (per column).
    pub alpha: Tensor,
}

impl PairMap {
    pub fn weight(&self) -> Tensor {
        (&self.g_pos - &self.g_neg) * &self.alpha
    }

    pub fn shallow_clone(&self) -> PairMap {
        PairMap {
            g_pos: self.g_pos.shallow_clone(),
            g_neg: self.g_neg.shallow_clone(),
            alpha: self.alpha.shallow_clone(),
        }
    }
}

/// The per-layer (or per-column) weight bound mapped onto the full window.
pub fn weight_bound(w: &Tensor, per_column: bool) -> Tensor {
    let bound = if per_column && w.dim() > 1 {
        let dims: Vec<i64> = (1..w.dim() as i64).collect();
        w.abs().amax(dims.as_slice(), true)
    } else {
        w.abs().max()
    };
    bound.clamp_min(1e-12)
}

/// Ideal mapping: positive weights on G+, negative on G−, the other device at g_min;
/// a zero weight is (g_min, g_min).
pub fn map_to_pairs(w: &Tensor, g_min: f64, g_max: f64, per_column: bool) -> PairMap {
    let alpha = weight_bound(w, per_column) / (g_max - g_min);
    let g_pos = w.clamp_min(0.0) / &alpha + g_min;
    let g_neg = (-w).clamp_min(0.0) / &alpha + g_min;
    PairMap { g_pos, g_neg, alpha }
}

/// Adds programming noise to conductances (µS), then clips to the window.
pub fn program_noise(g: &Tensor, noise: &ProgrammingNoise, g_min: f64, g_max: f64) -> Tensor {
    let noisy = match noise {
        ProgrammingNoise::None => return g.shallow_clone(),
        ProgrammingNoise::Gaussian { sigma } => g + g.randn_like() * (sigma * (g_max - g_min)),
        ProgrammingNoise::Polynomial { coeffs } => g + g.randn_like() * poly_sigma(g, coeffs),
    };
    noisy.clamp(g_min, g_max)
}

/// sigma(g) = c0 + c1·g + c2·g² + ..., clamped at zero.
pub fn poly_sigma(g: &Tensor, coeffs: &[f64]) -> Tensor {
    let mut acc = g.zeros_like();
    for c in coeffs.iter().rev() {
        acc = acc * g + *c;
    }
    acc.clamp_min(0.0)
}

/// Sets a random fraction of devices to g_min and another to g_max.
pub fn stuck_at(g: &Tensor, s: &StuckAt, g_min: f64, g_max: f64) -> Tensor {
    if s.at_gmin == 0.0 && s.at_gmax == 0.0 {
        return g.shallow_clone();
    }
    let u = g.rand_like();
    let low = u.lt(s.at_gmin);
    let high = u.ge(s.at_gmin).logical_and(&u.lt(s.at_gmin + s.at_gmax));
    g.where_scalarother(&low.logical_not(), g_min).where_scalarother(&high.logical_not(), g_max)
}

/// Power-law drift g·(t/t0)^(-nu) with nu drawn per device, then clipped to the window.
pub fn drift(g: &Tensor, d: &Drift, g_min: f64, g_max: f64) -> Tensor {
    match d {
        Drift::None => g.shallow_clone(),
        Drift::PowerLaw { nu_mean, nu_std, t0, t, .. } => {
            let nu = g.randn_like() * *nu_std + *nu_mean;
            // Capped at f32::MAX: an infinite factor on a device at g = 0 would give
            // 0 * inf = NaN; capped, it stays 0 (or clips to g_max).
            let factor = (nu * -(t / t0).ln()).exp().clamp_max(f32::MAX as f64);
            (g * factor).clamp(g_min, g_max)
        }
    }
}

/// Read noise g·(1 + sigma·eps), fresh per call, clipped.
pub fn read_noise(g: &Tensor, sigma: f64, g_min: f64, g_max: f64) -> Tensor {
    (g * (g.randn_like() * sigma + 1.0)).clamp(g_min, g_max)
}

/// Global drift compensation: one scale per layer such that the mean |output| of the
/// drifted crossbar on calibration inputs equals that of the freshly programmed one.
/// w0, wt: [c_out, fan_in...]; calibration: [n, fan_in] inputs.
pub fn drift_compensation(w0: &Tensor, wt: &Tensor, calibration: &Tensor) -> Tensor {
    let c = w0.size()[0];
    let y0 = calibration.matmul(&w0.reshape([c, -1]).tr());
    let yt = calibration.matmul(&wt.reshape([c, -1]).tr());
    let num = y0.abs().sum(Kind::Float);
    let den = yt.abs().sum(Kind::Float).clamp_min(1e-30);
    num / den
}
