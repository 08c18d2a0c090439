//! The device model: one memristive device programmed to a target conductance, drifting and
//! accumulating read noise after programming. Tensor sampling (the crossbar's Monte-Carlo
//! trials) and the closed-form moments of the read-back conductance (gq-noise's expected
//! error) come from the same parameters, so the quanta are chosen for the device that is
//! simulated.
//!
//! Statistics follow IBM aihwkit's inference noise models (Rasch et al., Nat. Commun. 14,
//! 5282 (2023)): `PCMLikeNoiseModel` (src/aihwkit/inference/noise/pcm.py; Nandakumar et al.,
//! ICECS 2019) and `ReRamCMONoiseModel` (src/aihwkit/inference/noise/reram.py); the constants
//! of the presets are cited in `presets.rs`.
use super::fused::{self, Bounds, Faults, Sigma};
use super::normal;
use crate::config::{
    AnalogConfig, Clip, Drift, DriftCompensation, LogLinear, ProgrammingNoise, RandomSource,
    ReadNoise, StuckAt,
};
use crate::kernels::{applies, values, Passes};
use tch::Tensor;

/// Smallest relative conductance in ln(g/g_max) (aihwkit pcm.py `_ZERO_CLIP`).
const ZERO_CLIP: f64 = 1e-7;

/// One device family in one conductance window.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceModel {
    pub g_min: f64,
    pub g_max: f64,
    pub noise: ProgrammingNoise,
    pub stuck: StuckAt,
    pub drift: Drift,
    pub read: ReadNoise,
    pub clip: Clip,
    pub compensation: DriftCompensation,
    /// Time after programming (s) at which `device_moments` includes drift and read noise;
    /// None: programming noise and faults only.
    pub t: Option<f64>,
    /// The generator of the draws on the CPU (`RandomSource`).
    pub random: RandomSource,
}

impl DeviceModel {
    /// Programming noise and stuck-at faults only (no drift, no read noise).
    pub fn programming_only(
        g_min: f64,
        g_max: f64,
        noise: ProgrammingNoise,
        stuck: StuckAt,
    ) -> DeviceModel {
        DeviceModel {
            g_min,
            g_max,
            noise,
            stuck,
            drift: Drift::None,
            read: ReadNoise::None,
            clip: Clip::Window,
            compensation: DriftCompensation::None,
            random: RandomSource::Counter,
            t: None,
        }
    }

    /// The device of an `analog` section; moments at `analog.fit_time`.
    pub fn from_analog(a: &AnalogConfig) -> DeviceModel {
        DeviceModel {
            g_min: a.g_min,
            g_max: a.g_max,
            noise: a.programming_noise.clone(),
            stuck: a.stuck_at.clone(),
            drift: a.drift.clone(),
            read: a.read_noise.clone(),
            clip: a.clip,
            compensation: a.compensation(),
            t: a.fit_time,
            random: a.random,
        }
    }

    /// True when a programmed level reads back exactly (for gq-noise: gq itself).
    pub fn is_ideal(&self) -> bool {
        self.noise == ProgrammingNoise::None
            && self.stuck.at_gmin == 0.0
            && self.stuck.at_gmax == 0.0
            && (self.t.is_none() || (self.drift == Drift::None && self.read == ReadNoise::None))
    }

    /// The lower and upper clipping bounds.
    pub fn bounds(&self) -> (f64, f64) {
        match self.clip {
            Clip::Window => (self.g_min, self.g_max),
            Clip::NonNegative => (0.0, f64::INFINITY),
        }
    }

    fn clip_t(&self, g: Tensor) -> Tensor {
        match self.clip {
            Clip::Window => g.clamp(self.g_min, self.g_max),
            Clip::NonNegative => g.clamp_min(0.0),
        }
    }

    /// Programming noise sigma (µS) of a device programmed to g (µS).
    pub fn sigma_at(&self, g: f64) -> f64 {
        match &self.noise {
            ProgrammingNoise::None => 0.0,
            ProgrammingNoise::Gaussian { sigma } => sigma * (self.g_max - self.g_min),
            ProgrammingNoise::Polynomial { coeffs } => {
                coeffs.iter().rev().fold(0.0, |acc, c| acc * g + c).max(0.0)
            }
        }
    }

    /// Mean and standard deviation of the drift exponent nu of a device with target g.
    pub fn nu_stats(&self, g: f64) -> Option<(f64, f64)> {
        match &self.drift {
            Drift::PowerLaw { nu_mean, nu_std, .. } => Some((*nu_mean, *nu_std)),
            Drift::GPowerLaw { nu_mean, nu_std, .. } => {
                let l = (g.abs() / self.g_max).max(ZERO_CLIP).ln();
                Some((log_linear(nu_mean, l), log_linear(nu_std, l)))
            }
            _ => None,
        }
    }

    /// ln of the drift's time ratio at `t` seconds after programming (None: the legacy
    /// power law's own `t`, i.e. ln(t/t0); other drifts: no drift).
    pub fn drift_log(&self, t: Option<f64>) -> f64 {
        match (&self.drift, t) {
            (Drift::PowerLaw { t0, t: own, .. }, None) => (own / t0).ln(),
            (Drift::PowerLaw { t0, .. }, Some(s)) | (Drift::GPowerLaw { t0, .. }, Some(s)) => {
                ((s.max(0.0) + t0) / t0).ln()
            }
            _ => 0.0,
        }
    }

    /// The relative 1/f read-noise sigma (PCM) of a device programmed to g, at time t.
    fn one_over_f_sigma(&self, g: f64, t: f64) -> f64 {
        match self.read {
            ReadNoise::OneOverF { q0, exponent, floor, q_max, t_read, t0 } => {
                let q = (q0 / (g.abs() / self.g_max).powf(exponent).max(floor)).min(q_max);
                q * ((t.max(0.0) + t0 + t_read) / (2.0 * t_read)).ln().max(0.0).sqrt()
            }
            _ => 0.0,
        }
    }

    /// The additive accumulated read-noise sigma (µS, ReRAM) of a device at g, time t.
    fn log_time_sigma(&self, g: f64, t: f64) -> f64 {
        match self.read {
            ReadNoise::LogTime { k, t_read } if t > 0.0 => {
                k * g.abs().max(1e-3).log10().abs()
                    * ((t + t_read) / (2.0 * t_read)).ln().max(0.0).sqrt()
            }
            _ => 0.0,
        }
    }

    // ---- Sampling (tensors, µS) ----

    /// Standard normals shaped like `g`, from the model's generator (`random`).
    fn randn_like(&self, g: &Tensor) -> Tensor {
        match self.random {
            RandomSource::Counter => normal::randn_like(g),
            RandomSource::Libtorch => g.randn_like(),
        }
    }

    /// Uniforms in [0, 1) shaped like `g`, from the model's generator (`random`).
    fn rand_like(&self, g: &Tensor) -> Tensor {
        match self.random {
            RandomSource::Counter => normal::rand_like(g),
            RandomSource::Libtorch => g.rand_like(),
        }
    }

    /// Adds programming noise to target conductances, then clips.
    pub fn program(&self, g: &Tensor) -> Tensor {
        let noisy = match &self.noise {
            ProgrammingNoise::None => return g.shallow_clone(),
            ProgrammingNoise::Gaussian { sigma } => {
                g + self.randn_like(g) * (sigma * (self.g_max - self.g_min))
            }
            ProgrammingNoise::Polynomial { coeffs } => {
                g + self.randn_like(g) * poly_sigma(g, coeffs)
            }
        };
        self.clip_t(noisy)
    }

    /// Sets a random fraction of devices to g_min and another to g_max.
    pub fn stuck_at(&self, g: &Tensor) -> Tensor {
        let s = &self.stuck;
        if s.at_gmin == 0.0 && s.at_gmax == 0.0 {
            return g.shallow_clone();
        }
        let u = self.rand_like(g);
        let low = g.where_scalarother(&u.ge(s.at_gmin), self.g_min);
        if s.at_gmax == 0.0 {
            // (The usual case: skip the second mask, four passes over the devices.)
            return low;
        }
        let high = u.ge(s.at_gmin).logical_and(&u.lt(s.at_gmin + s.at_gmax));
        low.where_scalarother(&high.logical_not(), self.g_max)
    }

    /// One read of the differential pair (`g_pos`, `g_neg`) in weight units:
    /// (read_fresh(g⁺) − read_fresh(g⁻)) · alpha · gdc. With `Passes::FusedCpu`, on the CPU,
    /// one pass over the pair (`fused.rs`) where the tensor ops take eleven and two
    /// libtorch draws, on every forward pass of a layer with read noise: the same
    /// arithmetic, with the normals from `normal.rs` (seeded from libtorch's generator)
    /// instead of libtorch's `randn`, so the two paths draw different numbers from the same
    /// distribution. `alpha` and `gdc` are f32 scalars or one value per output column
    /// ([c_out, 1, ...]).
    pub fn read_pair(
        &self,
        g_pos: &Tensor,
        g_neg: &Tensor,
        alpha: &Tensor,
        gdc: &Tensor,
        passes: Passes,
    ) -> Tensor {
        let columns = g_pos.size().first().copied().unwrap_or(1);
        // Scalars or one value per column, in f32 (a wider factor would widen the ops).
        let factor_fits = |f: &Tensor| {
            applies(f)
                && f.dim() <= g_pos.dim()
                && (f.numel() == 1 || (f.numel() as i64 == columns && f.size()[0] == columns))
        };
        let fused = match self.read {
            ReadNoise::Gaussian { sigma }
                if passes == Passes::FusedCpu && self.random == RandomSource::Counter =>
            {
                Some(sigma)
            }
            _ => None,
        };
        match fused {
            Some(sigma)
                if applies(g_pos)
                    && applies(g_neg)
                    && g_pos.size() == g_neg.size()
                    && factor_fits(alpha)
                    && factor_fits(gdc) =>
            {
                let seed = super::normal::draw_seed();
                let factors = [values(alpha), values(gdc)];
                let bounds = self.kernel_bounds();
                fused::read_pair([g_pos, g_neg], seed, sigma as f32, bounds, factors)
            }
            _ => (self.read_fresh(g_pos) - self.read_fresh(g_neg)) * alpha * gdc,
        }
    }

    /// `stuck_at(&program(g))`, the same draws in the same order; with `Passes::FusedCpu`
    /// one pass over the devices on the CPU (`fused.rs`).
    pub fn program_with_faults(&self, g: &Tensor, passes: Passes) -> Tensor {
        if passes == Passes::TensorOps || !applies(g) || self.noise == ProgrammingNoise::None {
            return self.stuck_at(&self.program(g));
        }
        let z = self.randn_like(g);
        let per_device;
        let sigma = match &self.noise {
            ProgrammingNoise::Polynomial { coeffs } => {
                per_device = poly_sigma(g, coeffs).contiguous();
                Sigma::PerDevice(&per_device)
            }
            ProgrammingNoise::Gaussian { sigma } => {
                Sigma::Same((sigma * (self.g_max - self.g_min)) as f32)
            }
            ProgrammingNoise::None => unreachable!("returned above"),
        };
        let s = &self.stuck;
        let faults = (s.at_gmin != 0.0 || s.at_gmax != 0.0).then(|| {
            let high =
                (s.at_gmax != 0.0).then_some(((s.at_gmin + s.at_gmax) as f32, self.g_max as f32));
            (
                self.rand_like(g),
                Faults { at_gmin: s.at_gmin as f32, g_min: self.g_min as f32, high },
            )
        });
        let faults = faults.as_ref().map(|(u, f)| (u, *f));
        fused::program_and_fault(g, &z, sigma, self.kernel_bounds(), faults)
    }

    /// The clip as the kernels take it.
    fn kernel_bounds(&self) -> Bounds {
        match self.clip {
            Clip::Window => Bounds { lo: self.g_min as f32, hi: Some(self.g_max as f32) },
            Clip::NonNegative => Bounds { lo: 0.0, hi: None },
        }
    }

    /// Draws the drift exponents nu of devices with target conductances g (power laws).
    pub fn draw_nu(&self, g_target: &Tensor) -> Option<Tensor> {
        self.draw_nu_with(g_target, Passes::FusedCpu)
    }

    /// `draw_nu` with its steps run by `passes`.
    pub fn draw_nu_with(&self, g_target: &Tensor, passes: Passes) -> Option<Tensor> {
        match &self.drift {
            Drift::PowerLaw { nu_mean, nu_std, .. } => {
                let z = self.randn_like(g_target);
                Some(if passes == Passes::FusedCpu && applies(&z) {
                    fused::scale_shift(&z, *nu_std as f32, *nu_mean as f32)
                } else {
                    z * *nu_std + *nu_mean
                })
            }
            Drift::GPowerLaw { nu_mean, nu_std, fold, .. } => {
                let l = (g_target.abs() / self.g_max).clamp_min(ZERO_CLIP).log();
                let m = (&l * nu_mean.slope + nu_mean.intercept).clamp(nu_mean.min, nu_mean.max);
                let s = (&l * nu_std.slope + nu_std.intercept).clamp(nu_std.min, nu_std.max);
                let nu = m + s * self.randn_like(g_target);
                Some(if *fold { nu.abs() } else { nu })
            }
            _ => None,
        }
    }

    /// The conductances `t` seconds after programming (None: the legacy power law's own
    /// `t`): drift (with the exponents `nu` drawn at programming), then the accumulated
    /// read noise, which is drawn here once per trial and time.
    pub fn at_time(&self, g_prog: &Tensor, nu: Option<&Tensor>, t: Option<f64>) -> Tensor {
        self.at_time_with(g_prog, nu, t, Passes::FusedCpu)
    }

    /// `at_time` with its steps run by `passes`.
    pub fn at_time_with(
        &self,
        g_prog: &Tensor,
        nu: Option<&Tensor>,
        t: Option<f64>,
        passes: Passes,
    ) -> Tensor {
        let drifted = match (&self.drift, nu) {
            (Drift::PowerLaw { .. } | Drift::GPowerLaw { .. }, Some(nu)) => {
                let l = self.drift_log(t);
                // Capped at f32::MAX: an infinite factor on a device at g = 0 would give
                // 0 * inf = NaN; capped, it stays 0 (or clips to g_max).
                let factor = (nu * -l).exp();
                if passes == Passes::FusedCpu && applies(g_prog) && applies(&factor) {
                    fused::drift_pass(g_prog, &factor, self.kernel_bounds())
                } else {
                    self.clip_t(g_prog * factor.clamp_max(f32::MAX as f64))
                }
            }
            (Drift::LogRelaxation { mean_slope, std_slope, std_intercept }, _) => {
                match t {
                    Some(s) if s > 0.0 => {
                        // ln t below 1 s would invert the relaxation's spread.
                        let l = s.max(1.0).ln();
                        let shifted = g_prog + mean_slope * l;
                        let spread = (std_slope * l + std_intercept).max(0.0);
                        self.clip_t(shifted + g_prog.randn_like() * spread)
                    }
                    _ => g_prog.shallow_clone(),
                }
            }
            _ => g_prog.shallow_clone(),
        };
        let s = t.unwrap_or(0.0).max(0.0);
        match self.read {
            ReadNoise::OneOverF { q0, exponent, floor, q_max, t_read, t0 } => {
                let q =
                    (((g_prog.abs() / self.g_max).pow_tensor_scalar(exponent).clamp_min(floor))
                        .reciprocal()
                        * q0)
                        .clamp_max(q_max);
                let time = ((s + t0 + t_read) / (2.0 * t_read)).ln().max(0.0).sqrt();
                let eps = g_prog.randn_like();
                let noisy = &drifted + drifted.abs() * q * time * eps;
                self.clip_t(noisy)
            }
            ReadNoise::LogTime { k, t_read } if s > 0.0 => {
                let time = ((s + t_read) / (2.0 * t_read)).ln().max(0.0).sqrt();
                let sig = drifted.abs().clamp_min(1e-3).log10().abs() * (k * time);
                let noisy = &drifted + sig * g_prog.randn_like();
                self.clip_t(noisy)
            }
            _ => drifted,
        }
    }

    /// Read noise drawn fresh at every forward pass (Gaussian, relative to g).
    pub fn read_fresh(&self, g: &Tensor) -> Tensor {
        match self.read {
            ReadNoise::Gaussian { sigma } => self.clip_t(g * (g.randn_like() * sigma + 1.0)),
            _ => g.shallow_clone(),
        }
    }

    // ---- Closed-form moments (f64) ----

    /// Mean and second moment of one device programmed to g and read at `self.t`.
    ///
    /// Programming: a clipped normal; faults: a mixture; drift (independent of the
    /// programming draw): E[D] = exp(−μL + s²L²/2), E[D²] = exp(−2μL + 2s²L²) for the power
    /// laws (the fold of |nu| is neglected: μ/s >= 1.09 in the PCM preset), divided by the
    /// drift of a mid-window device when compensated (the calibrated scale restores the
    /// output on average); additive relaxation shifts and widens; read noise adds variance;
    /// the final clip treats the result as normal.
    pub fn device_moments(&self, g: f64) -> (f64, f64) {
        let (lo, hi) = self.bounds();
        let (m1, m2) = clipped_normal_moments(g, self.sigma_at(g), lo, hi);
        let (a, b) = (self.stuck.at_gmin, self.stuck.at_gmax);
        let ok = 1.0 - a - b;
        let (mut m1, mut m2) = (
            ok * m1 + a * self.g_min + b * self.g_max,
            ok * m2 + a * self.g_min * self.g_min + b * self.g_max * self.g_max,
        );
        let Some(t) = self.t else { return (m1, m2) };
        match &self.drift {
            Drift::PowerLaw { .. } | Drift::GPowerLaw { .. } => {
                let l = self.drift_log(Some(t));
                let (e1, e2) = self.drift_factor_moments(g, l);
                let c = match self.compensation {
                    DriftCompensation::None => 1.0,
                    _ => self.drift_factor_moments(0.5 * (self.g_min + self.g_max), l).0,
                };
                m1 *= e1 / c;
                m2 *= e2 / (c * c);
            }
            Drift::LogRelaxation { mean_slope, std_slope, std_intercept } if t > 0.0 => {
                let l = t.max(1.0).ln();
                let (d, s) = (mean_slope * l, (std_slope * l + std_intercept).max(0.0));
                m2 += 2.0 * d * m1 + d * d + s * s;
                m1 += d;
            }
            _ => {}
        }
        match self.read {
            ReadNoise::Gaussian { sigma } => m2 *= 1.0 + sigma * sigma,
            ReadNoise::OneOverF { .. } => {
                let s = self.one_over_f_sigma(g, t);
                m2 *= 1.0 + s * s;
            }
            ReadNoise::LogTime { .. } => {
                let s = self.log_time_sigma(m1, t);
                m2 += s * s;
            }
            ReadNoise::None => {}
        }
        // Clipping after drift and read noise, with the result taken as normal.
        let sd = (m2 - m1 * m1).max(0.0).sqrt();
        clipped_normal_moments(m1, sd, lo, hi)
    }

    /// E[D] and E[D²] of the drift factor D = exp(−nu·L) for a device with target g.
    fn drift_factor_moments(&self, g: f64, l: f64) -> (f64, f64) {
        match self.nu_stats(g) {
            Some((mu, s)) => {
                ((-mu * l + 0.5 * s * s * l * l).exp(), (-2.0 * mu * l + 2.0 * s * s * l * l).exp())
            }
            None => (1.0, 1.0),
        }
    }

    /// Mean and variance of the read-back weight for level q in a window of full scale
    /// w_max (differential pair, the unused device at g_min).
    pub fn level_moments(&self, q: f64, w_max: f64) -> (f64, f64) {
        let span = self.g_max - self.g_min;
        let alpha = w_max / span;
        let gp = self.g_min + q.clamp(0.0, w_max) / alpha;
        let gn = self.g_min + (-q).clamp(0.0, w_max) / alpha;
        let (p1, p2) = self.device_moments(gp);
        let (n1, n2) = self.device_moments(gn);
        let mean = alpha * (p1 - n1);
        let var = alpha * alpha * ((p2 - p1 * p1).max(0.0) + (n2 - n1 * n1).max(0.0));
        (mean, var)
    }
}

/// clamp(slope·l + intercept, min, max) with l = ln(g/g_max).
pub fn log_linear(f: &LogLinear, l: f64) -> f64 {
    (f.slope * l + f.intercept).clamp(f.min, f.max)
}

/// sigma(g) = c0 + c1·g + c2·g² + ..., clamped at zero.
pub fn poly_sigma(g: &Tensor, coeffs: &[f64]) -> Tensor {
    let mut acc = g.zeros_like();
    for c in coeffs.iter().rev() {
        acc = acc * g + *c;
    }
    acc.clamp_min(0.0)
}

fn phi(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

fn big_phi(x: f64) -> f64 {
    0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

/// E[X] and E[X²] of X = clip(Y, lo, hi), Y ~ N(mu, s²); `hi` may be +∞.
pub fn clipped_normal_moments(mu: f64, s: f64, lo: f64, hi: f64) -> (f64, f64) {
    if s <= 0.0 {
        let x = mu.clamp(lo, hi);
        return (x, x * x);
    }
    let (a, b) = ((lo - mu) / s, (hi - mu) / s);
    let (fa, fb) = (big_phi(a), big_phi(b));
    let (pa, pb) = (phi(a), phi(b));
    let mid = fb - fa;
    // The upper tail's terms vanish (and would be ∞·0) for an unbounded window.
    let (hi1, hi2, bpb) = if hi.is_finite() {
        (hi * (1.0 - fb), hi * hi * (1.0 - fb), b * pb)
    } else {
        (0.0, 0.0, 0.0)
    };
    let m1 = lo * fa + hi1 + mu * mid + s * (pa - pb);
    let m2 = lo * lo * fa
        + hi2
        + (mu * mu + s * s) * mid
        + 2.0 * mu * s * (pa - pb)
        + s * s * (a * pa - bpb);
    (m1, m2)
}
