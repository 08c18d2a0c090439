//! Conductance mapping and device non-idealities, all on the tensor side.
use crate::config::{Drift, DriftCompensation, ProgrammingNoise, ReadNoise, StuckAt};
pub use crate::device::poly_sigma;
use crate::device::DeviceModel;
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

// The device physics lives in `crate::device::DeviceModel` (shared with gq-noise); these
// functions are its per-effect entry points for one-off uses and tests.

/// Adds programming noise to conductances (µS), then clips to the window.
pub fn program_noise(g: &Tensor, noise: &ProgrammingNoise, g_min: f64, g_max: f64) -> Tensor {
    DeviceModel::programming_only(g_min, g_max, noise.clone(), StuckAt::default()).program(g)
}

/// Sets a random fraction of devices to g_min and another to g_max.
pub fn stuck_at(g: &Tensor, s: &StuckAt, g_min: f64, g_max: f64) -> Tensor {
    DeviceModel::programming_only(g_min, g_max, ProgrammingNoise::None, s.clone()).stuck_at(g)
}

/// Drift at the drift's own time (the legacy power law: g·(t/t0)^(-nu), nu drawn per
/// device), then clipped to the window.
pub fn drift(g: &Tensor, d: &Drift, g_min: f64, g_max: f64) -> Tensor {
    let m = DeviceModel {
        drift: d.clone(),
        ..DeviceModel::programming_only(g_min, g_max, ProgrammingNoise::None, StuckAt::default())
    };
    let nu = m.draw_nu(g);
    m.at_time(g, nu.as_ref(), None)
}

/// Read noise g·(1 + sigma·eps), fresh per call, clipped.
pub fn read_noise(g: &Tensor, sigma: f64, g_min: f64, g_max: f64) -> Tensor {
    let m = DeviceModel {
        read: ReadNoise::Gaussian { sigma },
        ..DeviceModel::programming_only(g_min, g_max, ProgrammingNoise::None, StuckAt::default())
    };
    m.read_fresh(g)
}

/// Drift compensation of `mode`: one scale per layer (global) or per output column such
/// that the mean |output| of the drifted crossbar on calibration inputs equals that of the
/// freshly programmed one (aihwkit compensation/drift.py reads out with one-hot inputs;
/// gqcim with a held-out Gaussian batch). Returns a scalar or a [c_out, 1, ...] tensor.
pub fn compensation_scale(
    mode: DriftCompensation,
    w0: &Tensor,
    wt: &Tensor,
    calibration: &Tensor,
) -> Tensor {
    match mode {
        DriftCompensation::None => Tensor::ones([], (Kind::Float, wt.device())),
        DriftCompensation::Global => drift_compensation(w0, wt, calibration),
        DriftCompensation::PerColumn => {
            let c = w0.size()[0];
            let y0 = calibration.matmul(&w0.reshape([c, -1]).tr());
            let yt = calibration.matmul(&wt.reshape([c, -1]).tr());
            let num = y0.abs().sum_dim_intlist(0, false, Kind::Float);
            let den = yt.abs().sum_dim_intlist(0, false, Kind::Float).clamp_min(1e-30);
            let mut shape = vec![c];
            shape.extend(std::iter::repeat_n(1, w0.dim() - 1));
            (num / den).reshape(shape.as_slice())
        }
    }
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
