//! Quantizing weight paths.
//!
//! - `LevelPath`: a layer's weights snap to its fitted quanta (per layer or per output
//!   channel). In train mode the gradient passes straight through to the fp32 master weight
//!   (Bengio et al. 2013's straight-through estimator: w + (q(w) - w).detach()), and the
//!   quanta are refitted from the current master weights every K steps.
//! - `LsqPath`: learned step size quantization (Esser et al., ICLR 2020): levels
//!   s·{-Q..Q}, the step s a trainable parameter whose gradient is scaled by
//!   1/sqrt(numel·Q_P).
use super::exact::exact_kmeans_1d;
use super::levels::SortedWeights;
use super::levels::{sqnr_db, thresholds};
use super::lloyd::{lloyd_from, lloyd_max_sorted, lloyd_max_with_init, LloydOptions};
use super::noise_aware::{fit_gq_noise, refit_gq_noise, DeviceModel, NoiseFitOptions};
use super::uniform::{uniform_minmax, uniform_mse, uniform_mse_sorted};
use crate::config::{AnalogConfig, QuantConfig, QuantMethod};
use crate::nets::layers::{LayerSpec, WeightPath};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// How to fit one layer's quanta.
#[derive(Debug, Clone)]
pub struct FitSettings {
    pub method: QuantMethod,
    pub levels: usize,
    pub per_channel: bool,
    pub lloyd: LloydOptions,
    pub exact_bins: usize,
    /// The device gq-noise fits for (ignored by the other methods).
    pub device: DeviceModel,
}

impl FitSettings {
    /// Settings from the quant config; gq-noise takes its device from the analog section.
    pub fn from_config(q: &QuantConfig, a: &AnalogConfig) -> FitSettings {
        FitSettings {
            method: q.method,
            levels: q.levels,
            per_channel: q.per_channel,
            lloyd: LloydOptions { max_iter: q.max_iter, tol: q.tol },
            exact_bins: q.exact_bins,
            device: DeviceModel::from_analog(a),
        }
    }
}

/// The fitted quanta of one layer: one sorted row per layer, or one per output channel.
#[derive(Debug, Clone)]
pub struct LayerQuanta {
    pub rows: Vec<Vec<f64>>,
    /// Decision thresholds per row; midpoints unless the method chose others (gq-noise).
    pub thresholds: Vec<Vec<f64>>,
    /// Lloyd-Max iterations of the last fit (summed over channels).
    pub iterations: usize,
    /// gq-noise: expected squared error (sum) under the device model, per row.
    pub expected_error: Option<Vec<f64>>,
}

/// Fits the quanta of `w` with a level method; `previous` warm-starts Lloyd-Max refits.
pub fn fit_quanta(
    w: &Tensor,
    s: &FitSettings,
    previous: Option<&LayerQuanta>,
) -> Result<LayerQuanta, String> {
    let w = w.detach();
    let slices: Vec<Tensor> = if s.per_channel {
        (0..w.size()[0]).map(|c| w.get(c)).collect()
    } else {
        vec![w.shallow_clone()]
    };
    let mut rows = Vec::with_capacity(slices.len());
    let mut thresholds = Vec::with_capacity(slices.len());
    let mut expected = Vec::new();
    let mut iterations = 0;
    for (c, slice) in slices.iter().enumerate() {
        let name = |e: String| if s.per_channel { format!("output channel {c}: {e}") } else { e };
        if s.method == QuantMethod::GqNoise {
            if s.levels > slice.numel() {
                return Err(name(format!(
                    "{} levels requested but the layer has only {} weights",
                    s.levels,
                    slice.numel()
                )));
            }
            let opts = NoiseFitOptions::default();
            let f = match previous.and_then(|p| p.rows.get(c)) {
                Some(prev) if prev.len() == s.levels => {
                    refit_gq_noise(slice, prev, &s.device, &opts)
                }
                _ => fit_gq_noise(slice, s.levels, &s.device, &s.lloyd, &opts),
            }
            .map_err(name)?;
            iterations += f.history.len();
            rows.push(f.levels);
            thresholds.push(f.thresholds);
            expected.push(f.expected_error);
            continue;
        }
        let prev = previous.and_then(|p| p.rows.get(c));
        let (row, it) = fit_one(slice, s, prev).map_err(name)?;
        iterations += it;
        thresholds.push(super::levels::thresholds(&row));
        rows.push(row);
    }
    let expected_error = (s.method == QuantMethod::GqNoise).then_some(expected);
    Ok(LayerQuanta { rows, thresholds, iterations, expected_error })
}

fn fit_one(
    w: &Tensor,
    s: &FitSettings,
    prev: Option<&Vec<f64>>,
) -> Result<(Vec<f64>, usize), String> {
    let n = s.levels;
    let numel = w.numel();
    if n > numel {
        return Err(format!("{n} levels requested but the layer has only {numel} weights"));
    }
    match s.method {
        QuantMethod::Gq => match prev {
            // Refits during fine-tuning warm-start from the layer's current quanta.
            Some(init) if init.len() == n => {
                let r = lloyd_max_with_init(w, n, init, &s.lloyd)?;
                Ok((r.levels, r.iterations))
            }
            _ => fit_gq(w, n, &s.lloyd),
        },
        QuantMethod::GqExact => {
            let r = exact_kmeans_1d(w, n, s.exact_bins)?;
            Ok((r.levels, r.iterations))
        }
        QuantMethod::UniformMinmax => Ok((uniform_minmax(w, n), 0)),
        QuantMethod::UniformMse => Ok((uniform_mse(w, n).0, 0)),
        QuantMethod::Fp32 | QuantMethod::Lsq | QuantMethod::GqNoise => {
            Err(format!("method `{}` has no level fit", s.method.name()))
        }
    }
}

/// Generalized quantization of one tensor: Lloyd-Max started from the quantiles and from the
/// MSE-optimal uniform grid, keeping the lower distortion. Lloyd-Max only finds a local
/// optimum; on small, spiky layers (a 144-weight first conv at N=16) the quantile start can
/// end above the uniform grid, while a start from the uniform grid can only improve on it.
/// So gq's squared error is never above uniform-mse's (nor, therefore, uniform-minmax's).
pub fn fit_gq(w: &Tensor, n: usize, opts: &LloydOptions) -> Result<(Vec<f64>, usize), String> {
    // One sort serves the three fits.
    let sw = SortedWeights::from_tensor(w)?;
    sw.check_fit(n)?;
    let a = lloyd_max_sorted(&sw, n, opts)?;
    let b = lloyd_from(&sw, n, &uniform_mse_sorted(&sw, n).0, opts, Vec::new());
    let iters = a.iterations + b.iterations;
    Ok(if b.distortion < a.distortion { (b.levels, iters) } else { (a.levels, iters) })
}

/// Levels [rows, n] and decision thresholds [rows, n-1] as tensors on a device.
pub fn level_tensors(q: &LayerQuanta, device: Device) -> (Tensor, Tensor) {
    let n = q.rows[0].len() as i64;
    let r = q.rows.len() as i64;
    let flat: Vec<f32> = q.rows.iter().flatten().map(|v| *v as f32).collect();
    let th: Vec<f32> = q.thresholds.iter().flatten().map(|v| *v as f32).collect();
    let levels = Tensor::from_slice(&flat).view([r, n]).to_device(device);
    let thr = Tensor::from_slice(&th).view([r, n - 1]).to_device(device);
    (levels, thr)
}

/// Nearest-level quantization on the tensor side: w [rows·k ...] with levels [rows, n]
/// (one row per layer or per output channel) -> same shape. A tie goes to the lower level.
pub fn quantize_rows(w: &Tensor, levels: &Tensor, thr: &Tensor) -> Tensor {
    let rows = levels.size()[0];
    let flat = w.reshape([rows, -1]).contiguous();
    let idx = flat.searchsorted(&thr.contiguous(), false, false, "left", None::<Tensor>);
    levels.to_kind(w.kind()).gather(1, &idx, false).reshape(w.size())
}

/// Time spent refitting quanta during fine-tuning, shared by all layers of a network.
#[derive(Debug, Default)]
pub struct RefitClock {
    pub total: Duration,
    pub refits: usize,
}

pub type SharedClock = Arc<Mutex<RefitClock>>;

/// A straight-through level quantizer with periodic refits.
#[derive(Debug)]
pub struct LevelPath {
    pub settings: FitSettings,
    pub quanta: LayerQuanta,
    levels: Tensor,
    thr: Tensor,
    refit_every: usize,
    steps: usize,
    clock: SharedClock,
}

impl LevelPath {
    /// Fits the quanta once from the layer's current weight.
    pub fn new(
        layer: &LayerSpec,
        settings: FitSettings,
        refit_every: usize,
        clock: SharedClock,
    ) -> Result<LevelPath, String> {
        let quanta = fit_quanta(&layer.weight, &settings, None)?;
        let (levels, thr) = level_tensors(&quanta, layer.weight.device());
        Ok(LevelPath { settings, quanta, levels, thr, refit_every, steps: 0, clock })
    }

    fn refit(&mut self, w: &Tensor) {
        let start = Instant::now();
        // A refit cannot fail where the first fit succeeded (same shapes, finite weights);
        // if the weights became non-finite the old quanta are kept and the loss shows it.
        if let Ok(q) = fit_quanta(w, &self.settings, Some(&self.quanta)) {
            let (levels, thr) = level_tensors(&q, w.device());
            self.quanta = q;
            self.levels = levels;
            self.thr = thr;
        }
        let mut c = self.clock.lock().unwrap_or_else(|e| e.into_inner());
        c.total += start.elapsed();
        c.refits += 1;
    }

    /// The quantized weight (no gradient).
    pub fn quantized(&self, w: &Tensor) -> Tensor {
        tch::no_grad(|| quantize_rows(w, &self.levels, &self.thr))
    }
}

impl WeightPath for LevelPath {
    fn weight(&mut self, layer: &LayerSpec, train: bool) -> Tensor {
        let w = &layer.weight;
        if train {
            if self.steps > 0 && self.steps.is_multiple_of(self.refit_every) {
                self.refit(w);
            }
            self.steps += 1;
            // Straight-through: forward q(w), backward identity to the master weight.
            let q = self.quantized(w);
            w + (q - w).detach()
        } else {
            self.quantized(w)
        }
    }

    fn describe(&self) -> String {
        format!("{}-{}", self.settings.method.name(), self.settings.levels)
    }

    fn report(&self, layer: &LayerSpec) -> Value {
        let mut v = level_report(&layer.weight, &self.quanta.rows, self.quantized(&layer.weight));
        if self.quanta.rows.len() == 1 {
            v["thresholds"] = json!(self.quanta.thresholds[0]);
            v["window_w_max"] =
                json!(self.quanta.rows[0].iter().fold(0.0f64, |m, q| m.max(q.abs())));
        }
        if let Some(e) = &self.quanta.expected_error {
            v["expected_error_under_device"] =
                json!(e.iter().sum::<f64>() / layer.weight.numel() as f64);
        }
        v
    }
}

/// Per-layer quantization report: quanta, thresholds, MSE and SQNR.
pub fn level_report(w: &Tensor, rows: &[Vec<f64>], q: Tensor) -> Value {
    let w = w.detach().to_kind(Kind::Double);
    let err = (&q.to_kind(Kind::Double) - &w).square().mean(Kind::Double).double_value(&[]);
    let sig = w.square().mean(Kind::Double).double_value(&[]);
    let sqnr = if err > 0.0 { 10.0 * (sig / err).log10() } else { f64::INFINITY };
    let distinct = q.flatten(0, -1).unique_dim(0, true, false, false).0.size()[0];
    let mut v = json!({
        "numel": w.numel(),
        "mse": err,
        "sqnr_db": if sqnr.is_finite() { json!(sqnr) } else { json!("inf") },
        "distinct_values": distinct,
    });
    if rows.len() == 1 {
        v["quanta"] = json!(rows[0]);
        v["thresholds"] = json!(thresholds(&rows[0]));
        v["sqnr_db_check"] = json!(sqnr_db(&w, &rows[0]));
    } else {
        v["quanta_per_channel"] = json!(rows);
    }
    v
}

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
