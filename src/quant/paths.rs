//! Quantizing weight paths.
//!
//! - `LevelPath`: a layer's weights snap to its fitted quanta (per layer or per output
//!   channel). In train mode the gradient passes straight through to the fp32 master weight
//!   (Bengio et al. 2013's straight-through estimator: w + (q(w) - w).detach()), and the
//!   quanta are refitted from the current master weights on the fine-tuning loop's
//!   [`RefitSchedule`]. Every refit is warm-started from the layer's current quanta (never a
//!   cold re-solve, which at N = 2 can jump to the mirror-image solution and swap the codes of
//!   half the weights) and is kept only if it does not raise the layer's error against the
//!   pre-refit quanta on the current weights.
//! - `LsqPath` (in `lsq.rs`): learned step size quantization (Esser et al., ICLR 2020): levels
//!   s·{-Q..Q}, the step s a trainable parameter whose gradient is scaled by
//!   1/sqrt(numel·Q_P).
use super::exact::exact_kmeans_1d;
use super::gq::fit_gq;
use super::levels::SortedWeights;
use super::levels::{sqnr_db, thresholds};
use super::lloyd::{lloyd_max_with_init, LloydOptions};
use super::noise_aware::{
    expected_error_with, fit_gq_noise, refit_gq_noise, DeviceModel, NoiseFitOptions,
};
use super::uniform::{uniform_minmax, uniform_mse};
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
    /// N = 2 only: threshold pinned at zero, levels the means of the weights <= 0 and > 0.
    pub sign_split: bool,
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
            sign_split: q.sign_split,
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

/// Fits the quanta of `w` with a level method. With `previous` (a refit during fine-tuning)
/// every row is warm-started from its previous quanta, and a row whose new quanta would have a
/// larger error on the current weights than the previous ones (squared error; gq-noise: the
/// expected error under its device) keeps the previous quanta.
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
            let prev = previous.and_then(|p| Some((p.rows.get(c)?, p.thresholds.get(c)?)));
            let f = match prev {
                Some((prev, _)) if prev.len() == s.levels => {
                    refit_gq_noise(slice, prev, &s.device, &opts)
                }
                _ => fit_gq_noise(slice, s.levels, &s.device, &s.lloyd, &opts),
            }
            .map_err(name)?;
            iterations += f.history.len();
            if let Some((prev, prev_th)) = prev.filter(|(p, _)| p.len() == s.levels) {
                let before = expected_error_with(slice, prev, prev_th, &s.device).map_err(name)?;
                if f.expected_error > before {
                    rows.push(prev.clone());
                    thresholds.push(prev_th.clone());
                    expected.push(before);
                    continue;
                }
            }
            rows.push(f.levels);
            thresholds.push(f.thresholds);
            expected.push(f.expected_error);
            continue;
        }
        let prev = previous.and_then(|p| Some((p.rows.get(c)?, p.thresholds.get(c)?)));
        let (row, th, it) = fit_one(slice, s, prev.map(|p| p.0)).map_err(name)?;
        iterations += it;
        if let Some((prev, prev_th)) = prev.filter(|(p, _)| p.len() == s.levels) {
            if row_error(slice, &row, &th) > row_error(slice, prev, prev_th) {
                rows.push(prev.clone());
                thresholds.push(prev_th.clone());
                continue;
            }
        }
        thresholds.push(th);
        rows.push(row);
    }
    let expected_error = (s.method == QuantMethod::GqNoise).then_some(expected);
    Ok(LayerQuanta { rows, thresholds, iterations, expected_error })
}

/// Squared error (f64) of `w` quantized to `levels` with decision thresholds `th` (a value on
/// a threshold goes to the lower level, as in [`quantize_rows`]).
pub fn row_error(w: &Tensor, levels: &[f64], th: &[f64]) -> f64 {
    tch::no_grad(|| {
        let w = w.detach().to_kind(Kind::Double).flatten(0, -1);
        let lv = Tensor::from_slice(levels).to_device(w.device());
        let th = Tensor::from_slice(th).to_device(w.device());
        let idx = w.bucketize(&th, false, false);
        (&w - lv.take(&idx)).square().sum(Kind::Double).double_value(&[])
    })
}

/// One row's levels, thresholds and Lloyd iterations. `prev` (a refit) warm-starts gq and
/// gq-exact from the previous levels: Lloyd-Max from there keeps the order of the cells, so no
/// level can swap with its mirror image. The uniform grids and the sign split are closed-form,
/// symmetric or sign-pinned functions of the weights, so a re-solve cannot switch labels.
fn fit_one(
    w: &Tensor,
    s: &FitSettings,
    prev: Option<&Vec<f64>>,
) -> Result<(Vec<f64>, Vec<f64>, usize), String> {
    let n = s.levels;
    let numel = w.numel();
    if n > numel {
        return Err(format!("{n} levels requested but the layer has only {numel} weights"));
    }
    let mid = |(levels, it): (Vec<f64>, usize)| {
        let th = super::levels::thresholds(&levels);
        (levels, th, it)
    };
    if s.sign_split && n == 2 && matches!(s.method, QuantMethod::Gq | QuantMethod::GqExact) {
        return Ok((sign_split_levels(w)?, vec![0.0], 0));
    }
    match s.method {
        QuantMethod::Gq | QuantMethod::GqExact if prev.is_some_and(|p| p.len() == n) => {
            let init = prev.map(|p| p.as_slice()).unwrap_or_default();
            let r = lloyd_max_with_init(w, n, init, &s.lloyd)?;
            Ok(mid((r.levels, r.iterations)))
        }
        QuantMethod::Gq => fit_gq(w, n, &s.lloyd).map(mid),
        QuantMethod::GqExact => {
            let r = exact_kmeans_1d(w, n, s.exact_bins)?;
            Ok(mid((r.levels, r.iterations)))
        }
        QuantMethod::UniformMinmax => Ok(mid((uniform_minmax(w, n)?, 0))),
        QuantMethod::UniformMse => Ok(mid((uniform_mse(w, n)?.0, 0))),
        QuantMethod::Fp32 | QuantMethod::Lsq | QuantMethod::GqNoise | QuantMethod::GqLearn => {
            Err(format!("method `{}` has no level fit", s.method.name()))
        }
    }
}

/// Sign-preserving 2-level quanta: threshold pinned at zero, levels {a < 0, b > 0} the means
/// of the weights <= 0 and > 0 (the least-squares levels for that fixed partition). A row with
/// weights of one sign only gets the mirror image of its one level as the unused other level.
pub fn sign_split_levels(w: &Tensor) -> Result<Vec<f64>, String> {
    let sw = SortedWeights::from_tensor(w)?;
    let x = sw.values();
    let split = sw.upper_bound(0.0);
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    let (neg, pos) = (&x[..split], &x[split..]);
    let a = if neg.is_empty() { f64::NAN } else { mean(neg) };
    let b = if pos.is_empty() { f64::NAN } else { mean(pos) };
    // All-zero cell mean is 0; keep the level strictly negative so the two are distinct.
    let scale = sw.max_abs().max(1e-12);
    let a = if a.is_nan() { -b } else { a.min(-1e-6 * scale) };
    let b = if b.is_nan() { -a } else { b };
    Ok(vec![a, b])
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

/// When a fine-tuning run refits its quanta: at every step `s` with `0 < s < stop_at` and
/// `s % every == 0`. Set by the fine-tuning loop for its length; without one (post-training
/// BatchNorm re-estimation, benches that time plain steps) train-mode passes never refit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefitSchedule {
    pub every: usize,
    pub stop_at: usize,
}

impl RefitSchedule {
    pub fn due(&self, step: usize) -> bool {
        step > 0 && step < self.stop_at && step.is_multiple_of(self.every)
    }

    /// Number of refits in a run of any length.
    pub fn count(&self) -> usize {
        self.stop_at.saturating_sub(1) / self.every
    }

    /// The schedule of a fine-tuning run of `total` steps: no refit in the last
    /// `quant.refit_stop_fraction` of the steps (a refit just before the end of a cosine
    /// schedule leaves the network no time to adapt to the moved quanta); `quant.refit_every`
    /// steps apart, or with `refit_every: 0`, `quant.refits` refits spread evenly over the
    /// steps before the stop. An explicit `refit_every` that would never trigger in this run
    /// is an error, not a silent run without refits.
    pub fn for_finetune(q: &QuantConfig, total: usize) -> Result<RefitSchedule, String> {
        let stop_at = ((1.0 - q.refit_stop_fraction) * total as f64).floor() as usize;
        if q.refit_every == 0 {
            let every =
                if q.refits == 0 { usize::MAX } else { stop_at.div_ceil(q.refits + 1).max(1) };
            return Ok(RefitSchedule { every, stop_at });
        }
        let s = RefitSchedule { every: q.refit_every, stop_at };
        if s.count() == 0 {
            return Err(format!(
                "quant.refit_every = {} never triggers: fine-tuning runs {total} steps and \
                 refits stop at step {stop_at} (quant.refit_stop_fraction = {}); use a smaller \
                 refit_every, or refit_every: 0 for quant.refits evenly spaced refits",
                q.refit_every, q.refit_stop_fraction
            ));
        }
        Ok(s)
    }
}

/// Time spent refitting quanta during fine-tuning, shared by all layers of a network, and the
/// refit schedule they follow.
#[derive(Debug, Default)]
pub struct RefitClock {
    pub total: Duration,
    /// Layer refits run (each layer counts once per refit step).
    pub refits: usize,
    pub schedule: Option<RefitSchedule>,
}

pub type SharedClock = Arc<Mutex<RefitClock>>;

/// A straight-through level quantizer with periodic refits.
#[derive(Debug)]
pub struct LevelPath {
    pub settings: FitSettings,
    pub quanta: LayerQuanta,
    levels: Tensor,
    thr: Tensor,
    /// Train-mode passes under a schedule (one per fine-tuning step).
    steps: usize,
    clock: SharedClock,
}

impl LevelPath {
    /// Fits the quanta once from the layer's current weight; refits follow the schedule in
    /// `clock` (none until a fine-tuning loop sets one).
    pub fn new(
        layer: &LayerSpec,
        settings: FitSettings,
        clock: SharedClock,
    ) -> Result<LevelPath, String> {
        let quanta = fit_quanta(&layer.weight, &settings, None)?;
        let (levels, thr) = level_tensors(&quanta, layer.weight.device());
        Ok(LevelPath { settings, quanta, levels, thr, steps: 0, clock })
    }

    /// Refits the quanta to `w` now (warm-started, never worse than the current quanta).
    pub fn refit(&mut self, w: &Tensor) {
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
            let schedule = self.clock.lock().unwrap_or_else(|e| e.into_inner()).schedule;
            if let Some(s) = schedule {
                if s.due(self.steps) {
                    self.refit(w);
                }
                self.steps += 1;
            }
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
