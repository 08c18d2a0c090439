//! The crossbar weight path: a layer's target weights (its quanta, or fp32 weights) mapped
//! to differential conductance pairs, programmed once per Monte-Carlo trial with the
//! configured variation, and read back on every forward pass.
use super::device::{
    compensation_readout, compensation_scale, map_to_pairs, program_noise, stuck_at, weight_bound,
    Calibration, PairMap,
};
use super::periphery::PeripheryPlan;
use super::writeverify::{program_pairs, single_shot_pulses, ProgramStats};
use crate::config::{AnalogConfig, DriftCompensation, ReadNoise, ResplitScale, TrainNoiseConfig};
use crate::device::DeviceModel;
use crate::kernels::Passes;
use crate::nets::layers::{Epilogue, LayerSpec, WeightPath};
use serde_json::{json, Value};
use tch::{Kind, Tensor};

/// One programmed crossbar layer.
#[derive(Debug)]
pub struct AnalogPath {
    /// The weights to programme (detached): the quantized weights of the layer's
    /// quantizer, or its fp32 weights.
    pub target: Tensor,
    /// The target's ideal pair map (no variation) and its single-shot pulse count: both
    /// depend on the target only, so a trial reuses them instead of mapping again.
    ideal: PairMap,
    ideal_pulses: f64,
    /// What the target came from (e.g. `gq-8`), for reports.
    pub source: String,
    pub cfg: AnalogConfig,
    /// The device model of `cfg` (shared with gq-noise).
    pub device: DeviceModel,
    /// The conductances at the current read time (after faults, programming noise, drift
    /// and accumulated read noise) of this trial.
    pub programmed: PairMap,
    /// The conductances right after programming (faults and programming noise).
    fresh: PairMap,
    /// Drift exponents of G+ and G− drawn at programming (power-law drifts).
    nu: Option<(Tensor, Tensor)>,
    /// The calibration inputs of this trial (drift compensation) and the read-out of the
    /// freshly programmed crossbar on them (computed once per trial, not at every time).
    calibration: Option<Calibration>,
    baseline: Option<Tensor>,
    /// Seconds after programming of the current read (None: the drift's own time).
    pub t_inference: Option<f64>,
    /// Drift compensation factor: scalar, or [c_out, 1, ...] per column (1 without).
    pub gdc: Tensor,
    /// alpha·(G+ − G−)·gdc, cached once per trial for the plain forward pass.
    effective: Tensor,
    /// The window's full scale in weight units (per layer or per column).
    w_max: Tensor,
    /// Selective write-verify: the weights to verify (None = all of them).
    pub verify_mask: Option<Tensor>,
    /// Pulses, reads and simulator time of the last programming.
    pub program_stats: ProgramStats,
    /// Output positions per sample of the last forward pass (for the cost model).
    pub positions: i64,
    /// The layer's periphery as far as it is fixed (tiles, converters, scales), built at
    /// the first forward pass that needs it (`target`, `w_max` and `cfg` never change).
    periphery: Option<PeripheryPlan>,
}

impl AnalogPath {
    /// Maps the target ideally (no variation); `program` draws a trial.
    pub fn new(target: Tensor, source: String, cfg: &AnalogConfig) -> AnalogPath {
        let target = target.detach();
        let ideal = map_to_pairs(&target, cfg.g_min, cfg.g_max, cfg.per_column_scale);
        let effective = ideal.weight();
        let w_max = weight_bound(&target, cfg.per_column_scale);
        let gdc = Tensor::ones([], (Kind::Float, target.device()));
        let ideal_pulses = tch::no_grad(|| {
            single_shot_pulses(&ideal.g_pos, cfg.g_min)
                + single_shot_pulses(&ideal.g_neg, cfg.g_min)
        });
        AnalogPath {
            target,
            ideal: ideal.shallow_clone(),
            ideal_pulses,
            source,
            cfg: cfg.clone(),
            device: DeviceModel::from_analog(cfg),
            fresh: ideal.shallow_clone(),
            programmed: ideal,
            nu: None,
            calibration: None,
            baseline: None,
            t_inference: None,
            gdc,
            effective,
            w_max,
            verify_mask: None,
            program_stats: ProgramStats::default(),
            positions: 0,
            periphery: None,
        }
    }

    /// Σ (G+ + G−) of the programmed devices, µS.
    pub fn conductance_sum(&self) -> f64 {
        let p = &self.programmed;
        (p.g_pos.sum(Kind::Double) + p.g_neg.sum(Kind::Double)).double_value(&[])
    }

    /// Programs the devices for one trial (draws from the global generator, which the
    /// caller seeds once per trial) and reads them at the first time of
    /// `analog.t_inference` (or the drift's own time). Order: ideal map, programming noise
    /// (or write-verify, which replaces it), stuck-at faults, drift exponents; clipping after
    /// each perturbation.
    pub fn program(&mut self, calibration: Option<&Calibration>) {
        tch::no_grad(|| {
            let c = &self.cfg;
            let d = &self.device;
            let ideal = &self.ideal;
            let start = std::time::Instant::now();
            let (prog, mut stats) = if c.programming.is_write_verify() {
                // Write-verify replaces the assumed programming noise; faults come after.
                let (wv, stats) = program_pairs(ideal, c, self.verify_mask.as_ref());
                let fault = |g: &Tensor| d.stuck_at(g);
                (
                    PairMap { g_pos: fault(&wv.g_pos), g_neg: fault(&wv.g_neg), alpha: wv.alpha },
                    stats,
                )
            } else {
                let perturb = |g: &Tensor| d.program_with_faults(g, Passes::FusedCpu);
                let prog = PairMap {
                    g_pos: perturb(&ideal.g_pos),
                    g_neg: perturb(&ideal.g_neg),
                    alpha: ideal.alpha.shallow_clone(),
                };
                let pulses = self.ideal_pulses;
                let devices = 2 * ideal.g_pos.numel() as i64;
                (prog, ProgramStats { devices, pulses, ..Default::default() })
            };
            stats.sim_seconds = start.elapsed().as_secs_f64();
            self.program_stats = stats;
            let prog = if c.resplit_after_programming {
                let rescale = (c.resplit_scale == ResplitScale::Programmed).then_some(c.g_max);
                resplit(&prog, c.g_min, rescale)
            } else {
                prog
            };
            // Exponents from the target conductances (aihwkit draws them from g_target).
            self.nu = match (d.draw_nu(&ideal.g_pos), d.draw_nu(&ideal.g_neg)) {
                (Some(p), Some(n)) => Some((p, n)),
                _ => None,
            };
            let mode = c.compensation();
            self.baseline = match (mode, calibration) {
                (DriftCompensation::None, _) | (_, None) => None,
                (mode, Some(cal)) => Some(compensation_readout(mode, &prog.weight(), cal)),
            };
            self.fresh = prog;
            self.calibration = calibration.map(|c| c.shallow_clone());
        });
        self.set_time(self.cfg.t_inference.first().copied());
    }

    /// Reads this trial's devices `t` seconds after programming: drift, accumulated read
    /// noise (drawn now), and drift compensation calibrated on the held-out batch.
    pub fn set_time(&mut self, t: Option<f64>) {
        tch::no_grad(|| {
            let d = &self.device;
            let (np, nn) = match &self.nu {
                Some((p, n)) => (Some(p), Some(n)),
                None => (None, None),
            };
            let drifted = PairMap {
                g_pos: d.at_time(&self.fresh.g_pos, np, t),
                g_neg: d.at_time(&self.fresh.g_neg, nn, t),
                alpha: self.fresh.alpha.shallow_clone(),
            };
            let w_t = drifted.weight();
            self.gdc = match (self.cfg.compensation(), &self.calibration, &self.baseline) {
                (DriftCompensation::None, _, _) | (_, None, _) | (_, _, None) => {
                    Tensor::ones([], (Kind::Float, w_t.device()))
                }
                (mode, Some(cal), Some(base)) => compensation_scale(mode, base, &w_t, cal),
            };
            self.effective = &w_t * &self.gdc;
            self.programmed = drifted;
            self.t_inference = t;
        })
    }

    /// The weights as read now: the cached trial weights, or with fresh read noise.
    fn read(&self) -> Tensor {
        match self.cfg.read_noise {
            ReadNoise::Gaussian { .. } => {
                let p = &self.programmed;
                self.device.read_pair(&p.g_pos, &p.g_neg, &p.alpha, &self.gdc, Passes::FusedCpu)
            }
            _ => self.effective.shallow_clone(),
        }
    }

    /// Whether the layer runs through the periphery (DAC, per-tile ADC, output noise).
    fn has_periphery(&self) -> bool {
        !self.cfg.dac.is_ideal() || !self.cfg.adc.is_ideal() || self.cfg.output_noise > 0.0
    }

    /// The forward pass, and `then` (BN, ReLU) after it: folded into the periphery's
    /// back-scaling when there is one, else as ops.
    fn forward_maybe_then(
        &mut self,
        layer: &LayerSpec,
        xs: &Tensor,
        then: Option<&Epilogue>,
    ) -> Tensor {
        let y = tch::no_grad(|| {
            let w = self.read();
            if self.has_periphery() {
                let (w_max, cfg) = (&self.w_max, &self.cfg);
                let plan =
                    self.periphery.get_or_insert_with(|| PeripheryPlan::new(layer, w_max, cfg));
                plan.forward(layer, xs, &w, then)
            } else {
                let y = layer.apply(xs, &w);
                match then {
                    Some(e) => e.apply(y),
                    None => y,
                }
            }
        });
        self.positions = y.size().iter().skip(2).product::<i64>().max(1);
        y
    }
}

impl WeightPath for AnalogPath {
    fn weight(&mut self, _layer: &LayerSpec, _train: bool) -> Tensor {
        tch::no_grad(|| self.read())
    }

    fn forward(&mut self, layer: &LayerSpec, xs: &Tensor, _train: bool) -> Tensor {
        self.forward_maybe_then(layer, xs, None)
    }

    fn forward_then(&mut self, layer: &LayerSpec, xs: &Tensor, then: &Epilogue) -> Tensor {
        self.forward_maybe_then(layer, xs, Some(then))
    }

    fn describe(&self) -> String {
        format!("analog({})", self.source)
    }

    fn report(&self, _layer: &LayerSpec) -> Value {
        let err = (&self.effective - &self.target).square().mean(Kind::Double).double_value(&[]);
        json!({
            "path": self.describe(),
            "w_max": Vec::<f64>::try_from(self.w_max.flatten(0, -1).to_kind(Kind::Double)).unwrap_or_default(),
            "drift_compensation": self.gdc.mean(Kind::Double).double_value(&[]),
            "t_inference": self.t_inference,
            "programming_mse": err,
        })
    }
}

/// The programmed weights as a fresh differential pair: the sign's device at
/// g_min + |G+ − G−|, the other exactly at g_min (aihwkit's conductance converter).
/// With `rescale_to` = Some(g_max), the pair is also re-scaled so that the largest programmed
/// |weight| of the layer (of each column with a per-column scale) sits exactly at g_max, as
/// aihwkit re-maps the programmed weights at every read; alpha absorbs the scale, so the
/// weights stay the same.
fn resplit(p: &PairMap, g_min: f64, rescale_to: Option<f64>) -> PairMap {
    let w = &p.g_pos - &p.g_neg;
    let (w, alpha) = match rescale_to {
        Some(g_max) => {
            let m = if p.alpha.dim() > 0 {
                let dims: Vec<i64> = (1..w.dim() as i64).collect();
                w.abs().amax(dims.as_slice(), true)
            } else {
                w.abs().max()
            };
            let k = (m.clamp_min(1e-12)).reciprocal() * (g_max - g_min);
            (&w * &k, &p.alpha / k.reshape(p.alpha.size().as_slice()))
        }
        None => (w, p.alpha.shallow_clone()),
    };
    PairMap { g_pos: w.relu() + g_min, g_neg: (-&w).relu() + g_min, alpha }
}

/// Noise-aware fine-tuning: the inner (quantizing) path's weights are mapped to conductance
/// pairs in the analog window, perturbed with the training-time device model on every
/// mini-batch, and mapped back; the perturbation is added as a constant, so gradients pass
/// straight through to the master weights (and LSQ steps) as without noise.
#[derive(Debug)]
pub struct NoisyTrainPath {
    pub inner: Box<dyn WeightPath>,
    pub noise: TrainNoiseConfig,
    pub g_min: f64,
    pub g_max: f64,
    pub per_column: bool,
}

impl WeightPath for NoisyTrainPath {
    fn weight(&mut self, layer: &LayerSpec, train: bool) -> Tensor {
        let q = self.inner.weight(layer, train);
        if !train {
            return q;
        }
        let delta = tch::no_grad(|| {
            let qd = q.detach();
            let m = map_to_pairs(&qd, self.g_min, self.g_max, self.per_column);
            let perturb = |g: &Tensor| {
                let noisy = program_noise(g, &self.noise.programming_noise, self.g_min, self.g_max);
                stuck_at(&noisy, &self.noise.stuck_at, self.g_min, self.g_max)
            };
            let noisy =
                PairMap { g_pos: perturb(&m.g_pos), g_neg: perturb(&m.g_neg), alpha: m.alpha };
            noisy.weight() - qd
        });
        q + delta
    }

    fn describe(&self) -> String {
        format!("{}+train-noise", self.inner.describe())
    }

    fn trainable(&self) -> Vec<Tensor> {
        self.inner.trainable()
    }

    fn report(&self, layer: &LayerSpec) -> Value {
        self.inner.report(layer)
    }
}
