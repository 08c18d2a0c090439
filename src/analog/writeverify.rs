//! Write-verify programming of the crossbar: every device is driven from its reset state
//! (g_min) toward its target conductance by SET/RESET pulses with a state-dependent step and
//! cycle-to-cycle noise, read back with read noise after each pulse, and left alone once the
//! read-back lies within tolerance (or after `max_pulses`). The loop runs over pulses, each
//! step updating only the devices that have not converged, as tensor ops over a whole layer.
//!
//! Pulse model: the soft-bounds step of aihwkit's `SoftBoundsDevice` (Gokmen & Vlasov,
//! Front. Neurosci. 10, 333 (2016); Rasch et al., AICAS 2021): Δg = α·(g_max − g) for SET,
//! −α·(g − g_min) for RESET, times (1 + σ_c2c·ε) cycle to cycle; or a fixed step. The
//! iterative program-and-verify scheme is that of e.g. Alibart et al., Nanotechnology 23,
//! 075201 (2012). Selective write-verify (only the most loss-sensitive weights are
//! verified, the rest programmed single-shot) follows SWIM: Yan et al., "SWIM: Selective
//! Write-Verify for Computing-in-Memory Neural Accelerators", DAC 2022, arXiv:2202.08395.
use super::device::{program_noise, PairMap};
use crate::config::AnalogConfig;
use crate::error::{invalid, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ProgrammingMode {
    /// One programming operation per device; the error is the assumed `programming_noise`.
    #[default]
    SingleShot,
    /// Iterative pulses with read-back until within tolerance (or `max_pulses`).
    WriteVerify,
}

/// When a device counts as programmed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Tolerance {
    /// |read − target| ≤ `us` microsiemens.
    Absolute { us: f64 },
    /// |read − target| ≤ `fraction` × the gap from the device's target level to its nearest
    /// neighbouring level of the layer (per level, so non-uniform levels get per-level
    /// tolerances). A layer with more than 256 distinct conductances (fp32 weights) has no
    /// level table; its spacing is taken as that of 256 uniform levels, window / 255.
    Spacing { fraction: f64 },
}

impl Tolerance {
    pub fn value(&self) -> f64 {
        match self {
            Tolerance::Absolute { us } => *us,
            Tolerance::Spacing { fraction } => *fraction,
        }
    }

    /// The same kind of tolerance with another value (the grid's tolerance sweep).
    pub fn with_value(&self, v: f64) -> Tolerance {
        match self {
            Tolerance::Absolute { .. } => Tolerance::Absolute { us: v },
            Tolerance::Spacing { .. } => Tolerance::Spacing { fraction: v },
        }
    }
}

/// The conductance change of one pulse.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PulseModel {
    /// SET: Δg = alpha·(g_max − g); RESET: Δg = −alpha·(g − g_min).
    SoftBounds { alpha: f64 },
    /// ±step_us per pulse, independent of the state.
    Fixed { step_us: f64 },
}

/// `analog.programming`: how the devices are programmed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProgrammingConfig {
    pub mode: ProgrammingMode,
    pub tolerance: Tolerance,
    /// Pulses per device at most; a device still outside tolerance then stays where it is.
    pub max_pulses: usize,
    pub pulse: PulseModel,
    /// Cycle-to-cycle noise: each pulse's step is multiplied by (1 + c2c_sigma·ε).
    pub c2c_sigma: f64,
    /// Read noise of the verify reads, relative to g (as `analog.read_noise`).
    pub read_sigma: f64,
    /// Selective write-verify: the fraction of weights (by sensitivity) that is verified;
    /// the others are programmed single-shot with `analog.programming_noise`. 1 = all.
    pub verify_fraction: f64,
    /// Training batches of the Fisher-diagonal sensitivity estimate (verify_fraction < 1).
    pub sensitivity_batches: usize,
}

impl Default for ProgrammingConfig {
    fn default() -> Self {
        ProgrammingConfig {
            mode: ProgrammingMode::SingleShot,
            tolerance: Tolerance::Spacing { fraction: 0.25 },
            // Soft bounds at alpha 0.02 need ~90 pulses to bring g_min within 4 µS of g_max.
            max_pulses: 200,
            pulse: PulseModel::SoftBounds { alpha: 0.02 },
            c2c_sigma: 0.3,
            read_sigma: 0.01,
            verify_fraction: 1.0,
            sensitivity_batches: 4,
        }
    }
}

impl ProgrammingConfig {
    pub fn is_write_verify(&self) -> bool {
        self.mode == ProgrammingMode::WriteVerify
    }

    /// True when programming draws random numbers beyond `programming_noise`.
    pub fn is_stochastic(&self) -> bool {
        self.is_write_verify() && (self.c2c_sigma > 0.0 || self.read_sigma > 0.0)
    }

    /// Range checks; `field` is the section's dotted name (`analog.programming`).
    pub fn validate(&self, field: &str) -> Result<()> {
        let f = |k: &str| format!("{field}.{k}");
        let (tk, tv) = match self.tolerance {
            Tolerance::Absolute { us } => ("tolerance.us", us),
            Tolerance::Spacing { fraction } => ("tolerance.fraction", fraction),
        };
        if !(tv > 0.0 && tv.is_finite()) {
            return Err(invalid(f(tk), format!("tolerance must be finite and > 0, got {tv}")));
        }
        if matches!(self.tolerance, Tolerance::Spacing { fraction } if fraction > 1.0) {
            return Err(invalid(f(tk), format!("expected a fraction in (0, 1], got {tv}")));
        }
        if self.max_pulses == 0 || self.max_pulses > 1_000_000 {
            return Err(invalid(
                f("max_pulses"),
                format!("expected 1..=1000000 pulses, got {}", self.max_pulses),
            ));
        }
        match self.pulse {
            PulseModel::SoftBounds { alpha } if !(alpha > 0.0 && alpha < 1.0) => {
                return Err(invalid(
                    f("pulse.alpha"),
                    format!("expected a value in (0, 1), got {alpha}"),
                ))
            }
            PulseModel::Fixed { step_us } if !(step_us > 0.0 && step_us.is_finite()) => {
                return Err(invalid(f("pulse.step_us"), format!("must be > 0, got {step_us}")))
            }
            _ => {}
        }
        for (k, v, hi) in
            [("c2c_sigma", self.c2c_sigma, 10.0), ("read_sigma", self.read_sigma, 1.0)]
        {
            if !(v >= 0.0 && v <= hi) {
                return Err(invalid(f(k), format!("expected a value in [0, {hi}], got {v}")));
            }
        }
        if !(self.verify_fraction >= 0.0 && self.verify_fraction <= 1.0) {
            return Err(invalid(
                f("verify_fraction"),
                format!("expected a value in [0, 1], got {}", self.verify_fraction),
            ));
        }
        if self.sensitivity_batches == 0 || self.sensitivity_batches > 10_000 {
            return Err(invalid(
                f("sensitivity_batches"),
                format!("expected 1..=10000, got {}", self.sensitivity_batches),
            ));
        }
        Ok(())
    }
}

/// The outcome of write-verify on one tensor of devices.
#[derive(Debug)]
pub struct WvResult {
    /// Programmed conductances (µS), same shape as the targets.
    pub g: Tensor,
    /// Pulses applied to each device (float).
    pub pulses: Tensor,
    /// True where the last verify read was within tolerance.
    pub converged: Tensor,
}

/// Drives every device of `target` (µS) from g_min toward its target with the pulse model,
/// stopping each device once its read-back lies within `tol` (µS, broadcastable to
/// `target`). Draws from the global generator (c2c and read noise), so one seed fixes all.
///
/// Every `COMPACT_EVERY` pulses the devices still being programmed are gathered into
/// smaller tensors, so the cost of a pulse falls with the number of devices left (most
/// converge early; devices whose target is g_min need no pulse at all).
pub fn write_verify(
    target: &Tensor,
    tol: &Tensor,
    p: &ProgrammingConfig,
    g_min: f64,
    g_max: f64,
) -> WvResult {
    const COMPACT_EVERY: usize = 8;
    tch::no_grad(|| {
        let read = |g: &Tensor| {
            if p.read_sigma > 0.0 {
                g * (g.randn_like() * p.read_sigma + 1.0)
            } else {
                g.shallow_clone()
            }
        };
        let shape = target.size();
        let t_all = target.flatten(0, -1);
        let tol_all = tol.expand_as(target).flatten(0, -1).contiguous();
        let mut g_all = t_all.full_like(g_min);
        let mut pulses_all = t_all.zeros_like();
        let mut r_all = read(&g_all);
        let mut idx = (&r_all - &t_all).abs().gt_tensor(&tol_all).nonzero().squeeze_dim(1);
        let mut done = 0;
        while idx.numel() > 0 && done < p.max_pulses {
            let t = t_all.index_select(0, &idx);
            let tl = tol_all.index_select(0, &idx);
            let mut g = g_all.index_select(0, &idx);
            // The last verify read of each device (outside tolerance) sets the direction.
            let mut r = r_all.index_select(0, &idx);
            let mut active = t.ones_like().to_kind(Kind::Bool);
            let mut pulses = t.zeros_like();
            let steps = COMPACT_EVERY.min(p.max_pulses - done);
            for i in 0..steps {
                // One host sync per pulse, so that a chunk stops once every device is done.
                if i > 0 && active.any().int64_value(&[]) == 0 {
                    break;
                }
                let up = r.lt_tensor(&t);
                let step = match p.pulse {
                    PulseModel::SoftBounds { alpha } => {
                        let set = (-&g + g_max) * alpha;
                        let reset = (&g - g_min) * (-alpha);
                        set.where_self(&up, &reset)
                    }
                    PulseModel::Fixed { step_us } => {
                        up.to_kind(g.kind()) * (2.0 * step_us) - step_us
                    }
                };
                let step = if p.c2c_sigma > 0.0 {
                    &step * (step.randn_like() * p.c2c_sigma + 1.0)
                } else {
                    step
                };
                let moved = (&g + step).clamp(g_min, g_max);
                g = moved.where_self(&active, &g);
                pulses += active.to_kind(pulses.kind());
                r = read(&g).where_self(&active, &r);
                active = active.logical_and(&(&r - &t).abs().gt_tensor(&tl));
            }
            done += steps;
            g_all = g_all.index_copy(0, &idx, &g);
            r_all = r_all.index_copy(0, &idx, &r);
            pulses_all = pulses_all.index_add(0, &idx, &pulses);
            idx = idx.masked_select(&active);
        }
        let converged = t_all.ones_like().to_kind(Kind::Bool).index_fill(0, &idx, 0);
        WvResult {
            g: g_all.reshape(&shape),
            pulses: pulses_all.reshape(&shape),
            converged: converged.reshape(&shape),
        }
    })
}

/// Per-device tolerance (µS) for the targets of one layer's pair (g_pos, g_neg).
pub fn tolerance_map(
    g_pos: &Tensor,
    g_neg: &Tensor,
    tol: &Tolerance,
    g_min: f64,
    g_max: f64,
) -> (Tensor, Tensor) {
    tch::no_grad(|| match tol {
        Tolerance::Absolute { us } => (g_pos.full_like(*us), g_neg.full_like(*us)),
        Tolerance::Spacing { fraction } => {
            let all = Tensor::cat(&[g_pos.flatten(0, -1), g_neg.flatten(0, -1)], 0);
            let levels = all.unique_dim(0, true, false, false).0;
            let m = levels.size()[0];
            if !(2..=256).contains(&m) {
                let t = fraction * (g_max - g_min) / 255.0;
                return (g_pos.full_like(t), g_neg.full_like(t));
            }
            let gaps = levels.narrow(0, 1, m - 1) - levels.narrow(0, 0, m - 1);
            let inf = Tensor::full([1], f64::INFINITY, (levels.kind(), levels.device()));
            let left = Tensor::cat(&[&inf, &gaps], 0);
            let right = Tensor::cat(&[&gaps, &inf], 0);
            let per_level = left.minimum(&right) * *fraction;
            let lookup = |g: &Tensor| {
                // Each target is one of the levels, so the left insertion point is its index.
                let idx =
                    g.searchsorted(&levels, false, false, "left", None::<Tensor>).clamp(0, m - 1);
                per_level.index_select(0, &idx.flatten(0, -1)).reshape(g.size())
            };
            (lookup(g_pos), lookup(g_neg))
        }
    })
}

/// Pulses, reads and timing of programming one layer (one trial).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct ProgramStats {
    /// Devices of the layer (two per weight).
    pub devices: i64,
    /// Programming pulses (single-shot: one per device whose target is above g_min).
    pub pulses: f64,
    /// Verify reads (write-verify: one before the first pulse and one after each).
    pub verify_reads: f64,
    /// Devices programmed by write-verify.
    pub verified: i64,
    /// Verified devices still outside tolerance after max_pulses.
    pub unconverged: i64,
    /// Wall time of programming this layer in the simulator (s).
    pub sim_seconds: f64,
}

impl ProgramStats {
    pub fn add(&mut self, o: &ProgramStats) {
        self.devices += o.devices;
        self.pulses += o.pulses;
        self.verify_reads += o.verify_reads;
        self.verified += o.verified;
        self.unconverged += o.unconverged;
        self.sim_seconds += o.sim_seconds;
    }
}

/// Pulses of single-shot programming: one per device whose target lies above g_min (a
/// device at g_min stays in its reset state).
pub fn single_shot_pulses(g: &Tensor, g_min: f64) -> f64 {
    g.gt(g_min + 1e-9).sum(Kind::Float).double_value(&[])
}

/// Programs a layer's ideal pair map by write-verify (`verify`: per-weight mask of the
/// weights to verify, None = all); the others get single-shot `programming_noise`.
/// Returns the programmed (not yet faulted) pair map and its statistics.
pub fn program_pairs(
    ideal: &PairMap,
    cfg: &AnalogConfig,
    verify: Option<&Tensor>,
) -> (PairMap, ProgramStats) {
    tch::no_grad(|| {
        let p = &cfg.programming;
        let (lo, hi) = (cfg.g_min, cfg.g_max);
        let (tol_p, tol_n) = tolerance_map(&ideal.g_pos, &ideal.g_neg, &p.tolerance, lo, hi);
        let mut stats =
            ProgramStats { devices: 2 * ideal.g_pos.numel() as i64, ..Default::default() };
        let mut one = |target: &Tensor, tol: &Tensor| {
            let wv = write_verify(target, tol, p, lo, hi);
            match verify {
                None => {
                    stats.pulses += wv.pulses.sum(Kind::Double).double_value(&[]);
                    stats.verify_reads +=
                        wv.pulses.sum(Kind::Double).double_value(&[]) + target.numel() as f64;
                    stats.verified += target.numel() as i64;
                    stats.unconverged +=
                        wv.converged.logical_not().sum(Kind::Int64).int64_value(&[]);
                    wv.g
                }
                Some(mask) => {
                    let single = program_noise(target, &cfg.programming_noise, lo, hi);
                    let mf = mask.to_kind(Kind::Double);
                    stats.pulses += (&wv.pulses * &mf).sum(Kind::Double).double_value(&[]);
                    stats.pulses += target
                        .gt(lo + 1e-9)
                        .logical_and(&mask.logical_not())
                        .sum(Kind::Double)
                        .double_value(&[]);
                    stats.verify_reads +=
                        ((&wv.pulses + 1.0) * &mf).sum(Kind::Double).double_value(&[]);
                    stats.verified += mask.sum(Kind::Int64).int64_value(&[]);
                    stats.unconverged += wv
                        .converged
                        .logical_not()
                        .logical_and(mask)
                        .sum(Kind::Int64)
                        .int64_value(&[]);
                    wv.g.where_self(mask, &single)
                }
            }
        };
        let g_pos = one(&ideal.g_pos, &tol_p);
        let g_neg = one(&ideal.g_neg, &tol_n);
        (PairMap { g_pos, g_neg, alpha: ideal.alpha.shallow_clone() }, stats)
    })
}
