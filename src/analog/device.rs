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

/// The inputs a drift compensation reads a layer's crossbar with
/// (`analog.calibration_inputs`), held for the whole trial.
#[derive(Debug)]
pub enum Calibration {
    /// A held-out batch of input vectors, [n, fan_in] (gqcim's default: Gaussian).
    Inputs(Tensor),
    /// Every unit vector once, as aihwkit's compensation reads out (compensation/drift.py).
    /// Its outputs are the transposed weights themselves, so no identity matrix is built
    /// and no matmul runs: the read-out of a fan-in of 4,608 (ResNet-18's widest layer)
    /// would otherwise multiply by an 85 MB identity, 11 G multiply-adds per read-out.
    OneHot,
}

impl Calibration {
    pub fn shallow_clone(&self) -> Calibration {
        match self {
            Calibration::Inputs(t) => Calibration::Inputs(t.shallow_clone()),
            Calibration::OneHot => Calibration::OneHot,
        }
    }

    /// The crossbar's outputs for the calibration inputs, [n, c_out], with the weights `w`
    /// ([c_out, fan_in...]). One-hot: eye · wᵀ = wᵀ exactly (each output is one weight
    /// times 1 plus zeros), laid out as the matmul's result would be, so the sums over it
    /// add in the same order.
    fn outputs(&self, w: &Tensor) -> Tensor {
        let c = w.size()[0];
        let rows = w.reshape([c, -1]);
        match self {
            Calibration::Inputs(x) => x.matmul(&rows.tr()),
            Calibration::OneHot => rows.tr().contiguous(),
        }
    }
}

/// The drift compensation's read-out of a layer with weights `w`: Σ |outputs| on the
/// calibration inputs, over everything (global) or per output column ([c_out]). A trial
/// reads its freshly programmed crossbar once (the baseline) and the drifted one at every
/// time after programming.
pub fn compensation_readout(mode: DriftCompensation, w: &Tensor, cal: &Calibration) -> Tensor {
    match mode {
        DriftCompensation::None => Tensor::ones([], (Kind::Float, w.device())),
        DriftCompensation::Global => cal.outputs(w).abs().sum(Kind::Float),
        DriftCompensation::PerColumn => cal.outputs(w).abs().sum_dim_intlist(0, false, Kind::Float),
    }
}

/// Drift compensation of `mode`: one scale per layer (global) or per output column such
/// that the mean |output| of the drifted crossbar (weights `wt`) on the calibration inputs
/// equals that of the freshly programmed one, whose read-out is `baseline`
/// (`compensation_readout`). Returns a scalar or a [c_out, 1, ...] tensor.
pub fn compensation_scale(
    mode: DriftCompensation,
    baseline: &Tensor,
    wt: &Tensor,
    cal: &Calibration,
) -> Tensor {
    let den = compensation_readout(mode, wt, cal);
    match mode {
        DriftCompensation::None => den,
        DriftCompensation::Global => baseline / den.clamp_min(1e-30),
        DriftCompensation::PerColumn => {
            let mut shape = vec![wt.size()[0]];
            shape.extend(std::iter::repeat_n(1, wt.dim() - 1));
            (baseline / den.clamp_min(1e-30)).reshape(shape.as_slice())
        }
    }
}
