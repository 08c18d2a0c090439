//! The `analog` section: the crossbar's window, device noise (programming, drift, read,
//! stuck-at faults), periphery, presets and their validation.
use super::in_range;
use crate::error::{invalid, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Programming noise of each device of a differential pair.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ProgrammingNoise {
    #[default]
    None,
    /// Gaussian, sigma relative to the conductance window (g_max - g_min).
    Gaussian { sigma: f64 },
    /// State-dependent: sigma(g) = c0 + c1·g + c2·g² + ... in µS (g in µS).
    Polynomial { coeffs: Vec<f64> },
}

/// Read noise, drawn fresh at every forward pass.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ReadNoise {
    #[default]
    None,
    /// Gaussian, sigma relative to the device's conductance g.
    Gaussian { sigma: f64 },
    /// Accumulated 1/f noise (PCM), drawn once per trial at the inference time t:
    /// g += |g|·Q·sqrt(ln((t + t0 + t_read)/(2·t_read)))·ε with
    /// Q = min(q_max, q0 / max(floor, (g_p/g_max)^exponent)) (aihwkit PCMLikeNoiseModel).
    OneOverF { q0: f64, exponent: f64, floor: f64, q_max: f64, t_read: f64, t0: f64 },
    /// Accumulated additive noise in µS (ReRAM CMO), once per trial at time t:
    /// sigma = k·|log10 g|·sqrt(ln((t + t_read)/(2·t_read))) (aihwkit ReRamCMONoiseModel).
    LogTime { k: f64, t_read: f64 },
}

/// Conductance drift after programming.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Drift {
    #[default]
    None,
    /// g(t) = g(t0)·(t/t0)^(-nu), nu ~ N(nu_mean, nu_std) per device; with `compensation`,
    /// one digital scale per layer from a calibration batch (global drift compensation).
    /// With `analog.t_inference` set, `t` is ignored and g(t) = g·((t + t0)/t0)^(-nu).
    PowerLaw { nu_mean: f64, nu_std: f64, t0: f64, t: f64, compensation: bool },
    /// State-dependent power law (PCM): nu ~ N(nu_mean(g), nu_std(g)) per device from its
    /// target conductance (|nu| with `fold`), g(t) = g·((t + t0)/t0)^(-nu), t counted from
    /// the end of programming (aihwkit PCMLikeNoiseModel).
    GPowerLaw {
        nu_mean: LogLinear,
        nu_std: LogLinear,
        t0: f64,
        #[serde(default)]
        fold: bool,
    },
    /// ReRAM relaxation in µS: g(t) = g + mean_slope·ln t + (std_slope·ln t + std_intercept)·ε
    /// for t >= 1 s, ε drawn at each inference time (aihwkit ReRamCMONoiseModel).
    LogRelaxation { mean_slope: f64, std_slope: f64, std_intercept: f64 },
}

/// f(g) = clamp(slope·ln(g/g_max) + intercept, min, max): a drift statistic of the programmed
/// state (aihwkit pcm.py, generate_drift_coefficients).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogLinear {
    pub slope: f64,
    pub intercept: f64,
    pub min: f64,
    pub max: f64,
}

/// Which conductances are clipped after every perturbation.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Clip {
    /// To the window [g_min, g_max].
    #[default]
    Window,
    /// At zero only (aihwkit's PCM model: no negative conductances, no upper bound).
    NonNegative,
}

/// The conductance scale of re-split pairs (`analog.resplit_scale`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ResplitScale {
    /// The target mapping's scale (alpha unchanged).
    #[default]
    Target,
    /// The largest programmed |weight| at g_max (aihwkit).
    Programmed,
}

/// The held-out inputs drift compensation reads each layer with.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CalibrationInputs {
    /// `calibration_samples` standard-normal input vectors: mean |W x| weighs each output
    /// like an activation would (an L2-like norm of the rows).
    #[default]
    Gaussian,
    /// The unit vectors e_i (fan_in of them), aihwkit's readout: mean |W e_i| = mean |w|
    /// (an L1 norm of the weights).
    OneHot,
}

/// How a layer's crossbar rows (its fan-in: a conv's (channel, ky, kx) taps, a linear
/// layer's features) are split into tiles of at most `tile_rows` (`src/analog/tiling.rs`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TileSplit {
    /// Whole input channels, ⌊tile_rows / taps⌋ per tile, filled in order (288 rows of a 3x3
    /// conv → 252 + 36): a tile's inputs are whole feature-map channels, as kernel-aligned
    /// CIM mappings place them; the default.
    #[default]
    Channels,
    /// ⌈rows / tile_rows⌉ tiles of equal rows (the first ones one row more where it does not
    /// divide), a tile boundary may fall inside a channel's taps: aihwkit's
    /// `TileModuleArray.get_split_sizes` (288 rows → 144 + 144, 576 → 3 × 192), for
    /// like-for-like comparisons with it. On the CPU it costs more than `channels` where
    /// tiles of 21-22 channels replace 28-channel ones (oneDNN blocks channels by 16).
    Balanced,
}

/// Where the device model's random numbers come from on the CPU (elsewhere: libtorch's).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RandomSource {
    /// gqcim's counter-based generator seeded from libtorch's (`device/normal.rs`): the
    /// same distributions, drawn several times faster; the default.
    #[default]
    Counter,
    /// libtorch's `randn` / `rand` as such: the draws of gqcim before 2026-12-03, which
    /// `benches/peer_check_terms.py` replays in Python.
    Libtorch,
}

/// Digital drift compensation calibrated on a held-out batch after programming.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DriftCompensation {
    None,
    /// One scale per layer (aihwkit GlobalDriftCompensation).
    Global,
    /// One scale per output column (aihwkit PerColumnDriftCompensation).
    PerColumn,
}

/// Stuck-at faults: fractions of devices stuck at g_min and at g_max.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StuckAt {
    pub at_gmin: f64,
    pub at_gmax: f64,
}

/// A data converter of the periphery.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Converter {
    /// Ideal: no quantization, no clipping.
    #[default]
    Ideal,
    /// Uniform quantizer with `bits` bits over [-range, range].
    ///
    /// DAC: inputs are first scaled per sample by their abs-max to [-1, 1] (aihwkit's noise
    /// management), so its range is normally 1. ADC: `range` bounds a tile's partial sum in
    /// normalised units (inputs in [-1, 1], weights in [-1, 1] of the layer's window), as
    /// aihwkit's `out_bound`.
    Uniform { bits: u32, range: f64 },
}

impl Converter {
    pub fn is_ideal(&self) -> bool {
        matches!(self, Converter::Ideal)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AnalogConfig {
    /// Evaluate on the simulated crossbar (Monte-Carlo) instead of digitally.
    pub enabled: bool,
    /// Conductance window in microsiemens.
    pub g_min: f64,
    pub g_max: f64,
    /// One weight scale per output column instead of per layer.
    pub per_column_scale: bool,
    /// After programming, re-split each programmed weight into a fresh pair (the "off"
    /// device exactly at g_min) before drift and read noise act, as aihwkit's inference
    /// tiles do (`convert_to_conductances` on the programmed weights). Default false: the
    /// devices keep their own programmed conductances, the off one's noise included.
    pub resplit_after_programming: bool,
    /// With the re-split: keep the target mapping's scale (`target`, default) or re-scale so
    /// the largest programmed |weight| sits at g_max (`programmed`, aihwkit's re-mapping of
    /// the programmed weights at every read).
    pub resplit_scale: ResplitScale,
    /// Crossbar tile size: a tile's partial sum of `tile_rows` inputs is digitised separately.
    pub tile_rows: i64,
    /// channels (default) | balanced (aihwkit's): how the rows are split into tiles.
    pub tile_split: TileSplit,
    pub tile_cols: i64,
    pub programming_noise: ProgrammingNoise,
    pub stuck_at: StuckAt,
    pub read_noise: ReadNoise,
    pub drift: Drift,
    pub dac: Converter,
    pub adc: Converter,
    /// Gaussian noise on each tile's partial sum, in normalised output units.
    pub output_noise: f64,
    /// Monte-Carlo trials: every layer is programmed once per trial.
    pub trials: usize,
    /// Calibration inputs per layer for global drift compensation.
    pub calibration_samples: i64,
    /// gaussian (default) or one-hot (aihwkit's readout) calibration inputs.
    pub calibration_inputs: CalibrationInputs,
    /// Single-shot (with `programming_noise`) or write-verify programming.
    pub programming: crate::analog::writeverify::ProgrammingConfig,
    /// The preset this section was built from (`analog: {preset: pcm, ...overrides}`); the
    /// preset is expanded into the fields above before parsing, kept here for the record.
    pub preset: Option<String>,
    /// A preset YAML file (e.g. from `gqcim fit-device`), expanded like `preset`.
    pub preset_file: Option<PathBuf>,
    /// Clipping after each perturbation: window (default) or non-negative.
    pub clip: Clip,
    /// Times after programming (s) at which every trial is evaluated (the time axis); empty:
    /// one evaluation at the drift's own `t`.
    pub t_inference: Vec<f64>,
    /// none | global | per-column; unset: `drift.compensation` of the power-law drift.
    pub drift_compensation: Option<DriftCompensation>,
    /// Time after programming (s) at which gq-noise's closed-form moments include drift and
    /// accumulated read noise; unset: programming noise and faults only.
    pub fit_time: Option<f64>,
    /// counter (default) | libtorch: the generator of programming noise, faults, drift
    /// exponents and Gaussian read noise on the CPU (`RandomSource`).
    pub random: RandomSource,
}

impl Default for AnalogConfig {
    fn default() -> Self {
        AnalogConfig {
            enabled: false,
            g_min: 1.0,
            g_max: 25.0,
            per_column_scale: false,
            resplit_after_programming: false,
            resplit_scale: ResplitScale::Target,
            tile_rows: 256,
            tile_split: TileSplit::Channels,
            tile_cols: 256,
            programming_noise: ProgrammingNoise::None,
            stuck_at: StuckAt::default(),
            read_noise: ReadNoise::None,
            drift: Drift::None,
            dac: Converter::Ideal,
            adc: Converter::Ideal,
            output_noise: 0.0,
            trials: 3,
            calibration_samples: 256,
            calibration_inputs: CalibrationInputs::Gaussian,
            programming: Default::default(),
            preset: None,
            preset_file: None,
            clip: Clip::Window,
            t_inference: Vec::new(),
            drift_compensation: None,
            fit_time: None,
            random: RandomSource::Counter,
        }
    }
}

impl AnalogConfig {
    /// True when any evaluation-time draw is random (more than one trial is informative).
    pub fn is_stochastic(&self) -> bool {
        self.programming_noise != ProgrammingNoise::None
            || self.stuck_at.at_gmin > 0.0
            || self.stuck_at.at_gmax > 0.0
            || self.read_noise != ReadNoise::None
            || match &self.drift {
                Drift::None => false,
                Drift::PowerLaw { nu_std, .. } => *nu_std > 0.0,
                Drift::GPowerLaw { nu_std, .. } => nu_std.max > 0.0,
                Drift::LogRelaxation { .. } => true,
            }
            || self.output_noise > 0.0
            || self.programming.is_stochastic()
    }

    /// The drift compensation in effect: the explicit mode, else the power-law's flag.
    pub fn compensation(&self) -> DriftCompensation {
        match (self.drift_compensation, &self.drift) {
            (Some(m), _) => m,
            (None, Drift::PowerLaw { compensation: true, .. }) => DriftCompensation::Global,
            _ => DriftCompensation::None,
        }
    }

    /// True when the crossbar is exact apart from quantization (no noise, faults, drift or
    /// converters): the analog network then equals the digital one within 1e-5 (tested).
    pub fn is_ideal(&self) -> bool {
        !self.is_stochastic()
            && self.drift == Drift::None
            && !self.needs_per_forward_work()
            && !self.programming.is_write_verify()
    }

    /// True when the forward pass cannot use one cached weight per trial.
    pub fn needs_per_forward_work(&self) -> bool {
        matches!(self.read_noise, ReadNoise::Gaussian { .. })
            || !self.dac.is_ideal()
            || !self.adc.is_ideal()
            || self.output_noise > 0.0
    }

    pub fn validate(&self, section: &str) -> Result<()> {
        let f = |k: &str| format!("{section}.{k}");
        if !(self.g_min >= 0.0 && self.g_min < self.g_max && self.g_max.is_finite()) {
            return Err(invalid(
                f("g_min"),
                format!(
                    "need 0 <= g_min < g_max, got g_min {} and g_max {}",
                    self.g_min, self.g_max
                ),
            ));
        }
        validate_programming_noise(&self.programming_noise, &f("programming_noise"))?;
        validate_stuck_at(&self.stuck_at, &f("stuck_at"))?;
        if let ReadNoise::Gaussian { sigma } = self.read_noise {
            in_range(&f("read_noise.sigma"), sigma, 0.0, 10.0)?;
        }
        if let Drift::PowerLaw { nu_mean, nu_std, t0, t, .. } = self.drift {
            in_range(&f("drift.nu_mean"), nu_mean, -1.0, 1.0)?;
            in_range(&f("drift.nu_std"), nu_std, 0.0, 1.0)?;
            if !(t0 > 0.0 && t >= t0) {
                return Err(invalid(f("drift.t"), format!("need 0 < t0 <= t, got t0 {t0}, t {t}")));
            }
        }
        crate::device::validate_device_fields(self, section)?;
        for (name, c) in [("dac", &self.dac), ("adc", &self.adc)] {
            if let Converter::Uniform { bits, range } = c {
                in_range(&f(&format!("{name}.bits")), *bits, 1, 24)?;
                if !(*range > 0.0 && range.is_finite()) {
                    return Err(invalid(
                        f(&format!("{name}.range")),
                        format!("must be > 0, got {range}"),
                    ));
                }
            }
        }
        in_range(&f("output_noise"), self.output_noise, 0.0, 100.0)?;
        in_range(&f("tile_rows"), self.tile_rows, 1, 1 << 20)?;
        in_range(&f("tile_cols"), self.tile_cols, 1, 1 << 20)?;
        in_range(&f("trials"), self.trials, 1, 100_000)?;
        in_range(&f("calibration_samples"), self.calibration_samples, 1, 1 << 20)?;
        self.programming.validate(&f("programming"))?;
        Ok(())
    }
}

pub(crate) fn validate_programming_noise(n: &ProgrammingNoise, field: &str) -> Result<()> {
    match n {
        ProgrammingNoise::None => Ok(()),
        ProgrammingNoise::Gaussian { sigma } => {
            in_range(&format!("{field}.sigma"), *sigma, 0.0, 10.0)
        }
        ProgrammingNoise::Polynomial { coeffs } => {
            if coeffs.is_empty() || coeffs.iter().any(|c| !c.is_finite()) {
                return Err(invalid(
                    format!("{field}.coeffs"),
                    "need at least one finite coefficient",
                ));
            }
            Ok(())
        }
    }
}

pub(crate) fn validate_stuck_at(s: &StuckAt, field: &str) -> Result<()> {
    in_range(&format!("{field}.at_gmin"), s.at_gmin, 0.0, 1.0)?;
    in_range(&format!("{field}.at_gmax"), s.at_gmax, 0.0, 1.0)?;
    if s.at_gmin + s.at_gmax > 1.0 {
        return Err(invalid(
            field,
            format!(
                "fault fractions sum to {} (> 1): at_gmin {} + at_gmax {}",
                s.at_gmin + s.at_gmax,
                s.at_gmin,
                s.at_gmax
            ),
        ));
    }
    Ok(())
}
