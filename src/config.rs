//! Typed experiment configs (the burn `Config` pattern): one struct per concern, each with
//! defaults, `deny_unknown_fields`, and a validation pass that names the field and the allowed
//! range. YAML is read into a value tree first so that `--set a.b=c` overrides apply before
//! the typed parse, and every error names the dotted field path (serde_path_to_error) with a
//! did-you-mean hint for unknown keys and enum variants (the ultralytics cfg check).
use crate::error::{invalid, GqcimError, Result};
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    Classify,
    Detect,
    Segment,
}

impl Task {
    /// The folder under `out_dir` that holds this task's runs.
    pub fn name(self) -> &'static str {
        match self {
            Task::Classify => "classify",
            Task::Detect => "detect",
            Task::Segment => "segment",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceChoice {
    /// CUDA when libtorch sees a GPU, else CPU.
    Auto,
    Cpu,
    Cuda,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Fixes data order, augmentation, initialisation and every noise draw.
    pub seed: u64,
    pub task: Task,
    pub device: DeviceChoice,
    /// libtorch intra-op threads; 0 keeps libtorch's default (one per core).
    pub threads: usize,
    /// Run folders go to `<out_dir>/<task>/<run_name>/`.
    pub out_dir: PathBuf,
    /// Defaults to `<config stem>-<command>-<timestamp>`.
    pub run_name: Option<String>,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub eval: EvalConfig,
    /// How conv/linear weights are quantized (post-training or during fine-tuning).
    pub quant: QuantConfig,
    /// Straight-through (QAT) fine-tuning of a trained checkpoint.
    pub finetune: FinetuneConfig,
    /// The crossbar and its evaluation-time non-idealities (Monte-Carlo evaluation).
    pub analog: AnalogConfig,
    /// Device noise injected on every mini-batch during noise-aware fine-tuning; separate
    /// from `analog` so a network can be fine-tuned clean or noisy and evaluated under any
    /// condition (aihwkit's InferenceRPUConfig split).
    pub train_noise: TrainNoiseConfig,
    /// The method comparison grid of `gqcim compare` (`make classify`).
    pub compare: CompareConfig,
    /// Constants of the first-order energy/latency/area model (src/analog/cost.rs).
    pub cost: crate::analog::cost::CostSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 0,
            task: Task::Classify,
            device: DeviceChoice::Auto,
            threads: 0,
            out_dir: PathBuf::from("runs"),
            run_name: None,
            data: DataConfig::default(),
            model: ModelConfig::default(),
            train: TrainConfig::default(),
            eval: EvalConfig::default(),
            quant: QuantConfig::default(),
            finetune: FinetuneConfig::default(),
            analog: AnalogConfig::default(),
            train_noise: TrainNoiseConfig::default(),
            compare: CompareConfig::default(),
            cost: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    FashionMnist,
    Mnist,
    Cifar10,
    Cifar100,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    pub dataset: DatasetKind,
    /// Folder holding the dataset files (IDX for MNIST-like sets, `*.bin` for CIFAR).
    pub root: PathBuf,
    /// Per-channel mean and std on the [0, 1] scale; default: the dataset's own statistics.
    pub mean: Option<Vec<f64>>,
    pub std: Option<Vec<f64>>,
    /// Use only the first n training / test images (0 = all); for smoke tests.
    pub train_limit: usize,
    pub test_limit: usize,
    pub augment: AugmentConfig,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dataset: DatasetKind::FashionMnist,
            root: PathBuf::from("/usr/share/datasets/fashion-mnist"),
            mean: None,
            std: None,
            train_limit: 0,
            test_limit: 0,
            augment: AugmentConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Random crop after zero padding by this many pixels on each side (0 = off).
    pub crop_padding: i64,
    pub horizontal_flip: bool,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig { crop_padding: 2, horizontal_flip: true }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    Resnet20,
    Resnet32,
    Resnet44,
    Resnet56,
    Resnet18,
    Resnet34,
    Resnet50,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Resnet20 => "resnet20",
            Arch::Resnet32 => "resnet32",
            Arch::Resnet44 => "resnet44",
            Arch::Resnet56 => "resnet56",
            Arch::Resnet18 => "resnet18",
            Arch::Resnet34 => "resnet34",
            Arch::Resnet50 => "resnet50",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub arch: Arch,
    pub in_channels: i64,
    pub num_classes: i64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig { arch: Arch::Resnet20, in_channels: 1, num_classes: 10 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: i64,
    /// Peak learning rate, reached after the warm-up, then cosine-annealed to zero.
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub warmup_epochs: f64,
    pub label_smoothing: f64,
    /// Per-layer weight histograms in TensorBoard every n epochs (0 = never).
    pub histogram_every: usize,
    /// Check the loss for NaN/inf (one host sync) every n steps; 1 = every step.
    pub nan_check_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 30,
            batch_size: 128,
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            warmup_epochs: 1.0,
            label_smoothing: 0.0,
            histogram_every: 1,
            nan_check_every: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    pub batch_size: i64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig { batch_size: 1000 }
    }
}

/// Weight quantization methods.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum QuantMethod {
    /// No quantization (the digital fp32 network).
    Fp32,
    /// Generalized quantization: per-layer Lloyd-Max quanta (optimal 1-D k-means, local).
    Gq,
    /// Globally optimal 1-D k-means by dynamic programming over a fine histogram.
    GqExact,
    /// N evenly spaced levels on [-max|w|, max|w|].
    UniformMinmax,
    /// N evenly spaced levels on [-c, c], c minimising the squared error.
    UniformMse,
    /// Learned step size quantization (Esser et al., ICLR 2020).
    Lsq,
    /// Variation-aware generalized quantization: quanta and window minimising the expected
    /// error under the `analog` device model (programming noise, stuck-at faults, clipping).
    GqNoise,
    /// Learned quanta: the N levels of each layer (or output channel) are trainable
    /// parameters fine-tuned with the network (LQ-Nets spirit, Zhang et al. ECCV 2018),
    /// started from `quant.learn_init`.
    GqLearn,
}

impl QuantMethod {
    pub fn name(self) -> &'static str {
        match self {
            QuantMethod::Fp32 => "fp32",
            QuantMethod::Gq => "gq",
            QuantMethod::GqExact => "gq-exact",
            QuantMethod::UniformMinmax => "uniform-minmax",
            QuantMethod::UniformMse => "uniform-mse",
            QuantMethod::Lsq => "lsq",
            QuantMethod::GqNoise => "gq-noise",
            QuantMethod::GqLearn => "gq-learn",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuantConfig {
    pub method: QuantMethod,
    /// Number of quanta (analog levels) per layer, 2..=256.
    pub levels: usize,
    /// One set of quanta per output channel instead of per layer.
    pub per_channel: bool,
    /// Layers kept in fp32 by name (e.g. [conv1, fc]); default: quantize every conv/linear.
    pub keep_fp32: Vec<String>,
    /// Fold each BatchNorm into its preceding conv before quantizing (post-training only).
    pub fold_bn: bool,
    /// Lloyd-Max: stop when the relative change in distortion is below `tol`, or after
    /// `max_iter` iterations.
    pub max_iter: usize,
    pub tol: f64,
    /// Histogram bins of the `gq-exact` dynamic programme (layers above its full-resolution
    /// limit only).
    pub exact_bins: usize,
    /// During fine-tuning, refit the quanta of `gq`, `gq-exact`, `gq-noise` and the uniform
    /// methods every K optimizer steps (1 = every step); 0 = `refits` refits spread evenly
    /// over the fine-tuning steps before `refit_stop_fraction`. A K that never triggers within
    /// the fine-tuning length is an error. Refits are warm-started and never raise a layer's
    /// error against its pre-refit quanta.
    pub refit_every: usize,
    /// With `refit_every: 0`: how many refits per fine-tuning run.
    pub refits: usize,
    /// No refit in the last fraction of the fine-tuning steps (the network needs steps after
    /// a refit to adapt to the moved quanta).
    pub refit_stop_fraction: f64,
    /// gq / gq-exact at N = 2: sign-preserving quanta, threshold pinned at zero, levels the
    /// means of the weights <= 0 and > 0 (other level counts are fitted as usual).
    pub sign_split: bool,
    /// Post-training rows: re-estimate the BatchNorm running statistics on this many training
    /// images (cumulative average, train-mode forward without gradients) after quantizing;
    /// 0 = keep the fp32 network's statistics. Not applied when `fold_bn` is set.
    pub bn_recalibrate_images: usize,
    /// `gq-learn`: the method its levels start from (`gq` or `gq-noise`).
    pub learn_init: QuantMethod,
    /// `gq-learn`: learning rate of the levels relative to `finetune.lr` (a level's gradient
    /// is the sum over every weight assigned to it, thousands of terms).
    pub learn_lr_scale: f64,
    /// With `gq`, also solve `gq-exact` per layer and report the gap to the optimum.
    pub report_exact_gap: bool,
}

impl Default for QuantConfig {
    fn default() -> Self {
        QuantConfig {
            method: QuantMethod::Gq,
            levels: 8,
            per_channel: false,
            keep_fp32: Vec::new(),
            fold_bn: false,
            max_iter: 100,
            tol: 1e-6,
            exact_bins: 4096,
            refit_every: 0,
            refits: 4,
            refit_stop_fraction: 0.2,
            sign_split: false,
            bn_recalibrate_images: 512,
            learn_init: QuantMethod::Gq,
            learn_lr_scale: 0.01,
            report_exact_gap: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinetuneConfig {
    /// Fine-tuning length in epochs of the training set (fractions allowed: 0.5).
    pub epochs: f64,
    pub batch_size: i64,
    /// Starting learning rate, cosine-annealed to zero.
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// Learning rate of LSQ step sizes, relative to `lr`.
    pub lsq_lr_scale: f64,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            epochs: 1.0,
            batch_size: 128,
            lr: 0.01,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            lsq_lr_scale: 1.0,
        }
    }
}

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

fn validate_programming_noise(n: &ProgrammingNoise, field: &str) -> Result<()> {
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

fn validate_stuck_at(s: &StuckAt, field: &str) -> Result<()> {
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

/// Device noise for noise-aware fine-tuning, drawn afresh for every mini-batch on the
/// conductances of the `analog` window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TrainNoiseConfig {
    pub programming_noise: ProgrammingNoise,
    pub stuck_at: StuckAt,
}

impl TrainNoiseConfig {
    pub fn is_off(&self) -> bool {
        self.programming_noise == ProgrammingNoise::None
            && self.stuck_at.at_gmin == 0.0
            && self.stuck_at.at_gmax == 0.0
    }
}

/// How a quantized network is obtained in a comparison cell.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TuneMode {
    /// Post-training quantization, no fine-tuning.
    Ptq,
    /// Straight-through fine-tuning without device noise.
    Qat,
    /// Straight-through fine-tuning with `train_noise` injected on every mini-batch.
    QatNoise,
}

impl TuneMode {
    pub fn name(self) -> &'static str {
        match self {
            TuneMode::Ptq => "ptq",
            TuneMode::Qat => "qat",
            TuneMode::QatNoise => "qat-noise",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompareConfig {
    pub methods: Vec<QuantMethod>,
    pub levels: Vec<usize>,
    pub modes: Vec<TuneMode>,
    /// Evaluation-time programming noise, sigma relative to the window (g_max - g_min);
    /// the other non-idealities come from the `analog` section.
    pub sigmas: Vec<f64>,
    /// Include the fp32 network (analog with continuous conductances) as a row.
    pub include_fp32: bool,
    /// Test images per evaluation (0 = the whole test set).
    pub eval_limit: usize,
    /// Fine-tuning seeds: every network is fine-tuned once per seed and the table reports
    /// the mean over seeds and trials with a seed-based 95% CI. Empty: the config's `seed`.
    pub seeds: Vec<u64>,
    /// Store each fine-tuned network under `<out_dir>/cache/<task>/` and reuse it when a grid
    /// is re-run with more sigmas or trials (keyed by everything that determines it).
    pub cache: bool,
    /// Write-verify tolerances to sweep (values of `analog.programming.tolerance`, of its
    /// type); empty = program as `analog.programming` says.
    pub tolerances: Vec<f64>,
    /// Selective write-verify fractions to sweep; empty = `analog.programming.verify_fraction`.
    pub verify_fractions: Vec<f64>,
    /// With `tolerances`, also evaluate single-shot programming as a baseline.
    pub single_shot_baseline: bool,
    /// Layer policies, each reported as its own rows (never mixed into another policy's
    /// ranking): every entry is a `quant.keep_fp32` list that replaces the config's for its
    /// units, e.g. `[[], [conv1, fc]]` = all layers quantized vs first and last kept fp32.
    /// Empty: one policy, `quant.keep_fp32` as configured.
    pub keep_fp32_sets: Vec<Vec<String>>,
    /// Evaluate under the `analog` section's own programming noise (a device preset's
    /// sigma(g)) instead of the Gaussian sweep; `sigmas` must then be [0].
    pub device_noise: bool,
}

impl Default for CompareConfig {
    fn default() -> Self {
        CompareConfig {
            methods: vec![QuantMethod::Gq, QuantMethod::UniformMse, QuantMethod::Lsq],
            levels: vec![2, 3, 4, 8],
            modes: vec![TuneMode::Qat, TuneMode::QatNoise],
            sigmas: vec![0.0, 0.01, 0.02, 0.05],
            include_fp32: true,
            eval_limit: 0,
            seeds: Vec::new(),
            cache: true,
            tolerances: Vec::new(),
            verify_fractions: Vec::new(),
            single_shot_baseline: false,
            keep_fp32_sets: Vec::new(),
            device_noise: false,
        }
    }
}

/// Two layer lists name the same layers (order and repeats do not matter).
fn same_layers(a: &[String], b: &[String]) -> bool {
    a.iter().all(|x| b.contains(x)) && b.iter().all(|x| a.contains(x))
}

/// Checks `lo <= v <= hi` and names the field when it is not.
fn in_range<T: PartialOrd + std::fmt::Display>(field: &str, v: T, lo: T, hi: T) -> Result<()> {
    if v < lo || v > hi || v.partial_cmp(&v).is_none() {
        return Err(invalid(field, format!("expected a value in [{lo}, {hi}], got {v}")));
    }
    Ok(())
}

impl Config {
    /// gq-noise (also as gq-learn's start) models one window per row of quanta, per layer or
    /// per output channel: the crossbar must map the same (`analog.per_column_scale`).
    fn check_noise_window(&self, methods: &[QuantMethod]) -> Result<()> {
        let q = &self.quant;
        let noise_fit = methods.iter().any(|m| {
            *m == QuantMethod::GqNoise
                || (*m == QuantMethod::GqLearn && q.learn_init == QuantMethod::GqNoise)
        });
        if noise_fit && q.per_channel != self.analog.per_column_scale {
            return Err(invalid(
                "quant.per_channel",
                format!(
                    "gq-noise fits one window per {} but analog.per_column_scale = {} maps {}; \
                     set both to the same value",
                    if q.per_channel { "output channel" } else { "layer" },
                    self.analog.per_column_scale,
                    if self.analog.per_column_scale { "one per column" } else { "one per layer" }
                ),
            ));
        }
        Ok(())
    }

    /// `quant.sign_split` pins gq's and gq-exact's N = 2 threshold; other methods have none.
    fn check_sign_split(&self, methods: &[QuantMethod]) -> Result<()> {
        let ok = |m: &&QuantMethod| {
            matches!(m, QuantMethod::Gq | QuantMethod::GqExact | QuantMethod::Fp32)
        };
        match methods.iter().find(|m| !ok(m)) {
            Some(m) if self.quant.sign_split => Err(invalid(
                "quant.sign_split",
                format!("applies to gq and gq-exact only, not {}", m.name()),
            )),
            _ => Ok(()),
        }
    }

    /// Checks what only the comparison grid needs.
    pub fn validate_compare(&self) -> Result<()> {
        let c = &self.compare;
        self.check_noise_window(&c.methods)?;
        self.check_sign_split(&c.methods)?;
        if c.modes.contains(&TuneMode::QatNoise) && self.train_noise.is_off() {
            return Err(invalid(
                "train_noise",
                "compare.modes has qat-noise but train_noise has no noise; set \
                 train_noise.programming_noise (e.g. {type: gaussian, sigma: 0.03})",
            ));
        }
        let mut seen = Vec::new();
        for s in &c.seeds {
            if seen.contains(s) {
                return Err(invalid("compare.seeds", format!("seed {s} is listed twice")));
            }
            seen.push(*s);
        }
        if c.sigmas.is_empty() {
            return Err(invalid("compare.sigmas", "expected at least one sigma"));
        }
        for (i, set) in c.keep_fp32_sets.iter().enumerate() {
            if c.keep_fp32_sets[..i].iter().any(|o| same_layers(o, set)) {
                return Err(invalid(
                    "compare.keep_fp32_sets",
                    format!("the layer set {set:?} is listed twice"),
                ));
            }
            if set.iter().any(|n| n.is_empty() || n.contains(['+', ',', '/'])) {
                return Err(invalid(
                    "compare.keep_fp32_sets",
                    format!("{set:?}: expected layer names such as conv1 or fc"),
                ));
            }
        }
        Ok(())
    }

    /// The validation pass: every range check names its field.
    pub fn validate(&self) -> Result<()> {
        in_range("threads", self.threads, 0, 1024)?;
        let d = &self.data;
        in_range("data.augment.crop_padding", d.augment.crop_padding, 0, 64)?;
        let channels = self.model.in_channels as usize;
        for (field, v) in [("data.mean", &d.mean), ("data.std", &d.std)] {
            if let Some(v) = v {
                if v.len() != channels {
                    return Err(invalid(
                        field,
                        format!("expected {channels} values (model.in_channels), got {}", v.len()),
                    ));
                }
            }
        }
        if let Some(std) = &d.std {
            if std.iter().any(|s| *s <= 0.0 || !s.is_finite()) {
                return Err(invalid("data.std", "every value must be finite and > 0"));
            }
        }
        if let Some(mean) = &d.mean {
            if mean.iter().any(|m| !m.is_finite()) {
                return Err(invalid("data.mean", "every value must be finite"));
            }
        }
        if let Some(name) = &self.run_name {
            crate::run::check_run_name(name)?;
        }
        in_range("model.in_channels", self.model.in_channels, 1, 64)?;
        in_range("model.num_classes", self.model.num_classes, 2, 100_000)?;
        let t = &self.train;
        in_range("train.epochs", t.epochs, 1, 100_000)?;
        in_range("train.batch_size", t.batch_size, 1, 1 << 20)?;
        if !(t.lr > 0.0 && t.lr <= 10.0) {
            return Err(invalid("train.lr", format!("expected a value in (0, 10], got {}", t.lr)));
        }
        in_range("train.momentum", t.momentum, 0.0, 0.999)?;
        in_range("train.weight_decay", t.weight_decay, 0.0, 1.0)?;
        in_range("train.warmup_epochs", t.warmup_epochs, 0.0, t.epochs as f64)?;
        in_range("train.label_smoothing", t.label_smoothing, 0.0, 0.99)?;
        in_range("train.nan_check_every", t.nan_check_every, 1, 1_000_000)?;
        if t.nesterov && t.momentum == 0.0 {
            return Err(invalid("train.nesterov", "Nesterov momentum needs train.momentum > 0"));
        }
        in_range("eval.batch_size", self.eval.batch_size, 1, 1 << 20)?;
        self.validate_deploy()
    }

    /// Checks the sections every task shares for deployment: quant, finetune, analog,
    /// train_noise and compare (detection and segmentation configs carry them too).
    pub fn validate_deploy(&self) -> Result<()> {
        let q = &self.quant;
        in_range("quant.levels", q.levels, 2, 256)?;
        in_range("quant.max_iter", q.max_iter, 1, 100_000)?;
        in_range("quant.tol", q.tol, 0.0, 1.0)?;
        in_range("quant.exact_bins", q.exact_bins, 16, 1 << 20)?;
        in_range("quant.refit_every", q.refit_every, 0, 1 << 30)?;
        in_range("quant.refits", q.refits, 0, 1 << 20)?;
        in_range("quant.refit_stop_fraction", q.refit_stop_fraction, 0.0, 1.0)?;
        in_range("quant.bn_recalibrate_images", q.bn_recalibrate_images, 0, 1 << 24)?;
        in_range("quant.learn_lr_scale", q.learn_lr_scale, 0.0, 1000.0)?;
        if !matches!(q.learn_init, QuantMethod::Gq | QuantMethod::GqNoise) {
            return Err(invalid(
                "quant.learn_init",
                format!("gq-learn starts from gq or gq-noise, got {}", q.learn_init.name()),
            ));
        }
        self.check_noise_window(&[q.method])?;
        self.check_sign_split(&[q.method])?;
        let f = &self.finetune;
        if !(f.epochs > 0.0 && f.epochs <= 10_000.0) {
            return Err(invalid(
                "finetune.epochs",
                format!("expected a value in (0, 10000], got {}", f.epochs),
            ));
        }
        in_range("finetune.batch_size", f.batch_size, 1, 1 << 20)?;
        if !(f.lr > 0.0 && f.lr <= 10.0) {
            return Err(invalid(
                "finetune.lr",
                format!("expected a value in (0, 10], got {}", f.lr),
            ));
        }
        in_range("finetune.momentum", f.momentum, 0.0, 0.999)?;
        in_range("finetune.weight_decay", f.weight_decay, 0.0, 1.0)?;
        in_range("finetune.lsq_lr_scale", f.lsq_lr_scale, 0.0, 1000.0)?;
        self.analog.validate("analog")?;
        validate_programming_noise(
            &self.train_noise.programming_noise,
            "train_noise.programming_noise",
        )?;
        validate_stuck_at(&self.train_noise.stuck_at, "train_noise.stuck_at")?;
        let c = &self.compare;
        for n in &c.levels {
            in_range("compare.levels", *n, 2, 256)?;
        }
        for s in &c.sigmas {
            in_range("compare.sigmas", *s, 0.0, 10.0)?;
        }
        if c.device_noise && c.sigmas != [0.0] {
            return Err(invalid(
                "compare.sigmas",
                "with compare.device_noise the device's own noise is used; set sigmas to [0.0]",
            ));
        }
        for (i, t) in c.tolerances.iter().enumerate() {
            let mut p = self.analog.programming.clone();
            p.tolerance = p.tolerance.with_value(*t);
            p.validate(&format!("compare.tolerances[{i}]"))?;
        }
        for f in &c.verify_fractions {
            in_range("compare.verify_fractions", *f, 0.0, 1.0)?;
        }
        self.cost.validate("cost")?;
        if c.methods.is_empty() || c.levels.is_empty() || c.modes.is_empty() || c.sigmas.is_empty()
        {
            return Err(invalid("compare", "methods, levels, modes and sigmas must be non-empty"));
        }
        Ok(())
    }

    /// Reads a YAML config, applies `key.path=value` overrides, parses and validates it.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Config> {
        load_validated(path, overrides, Config::validate)
    }

    /// As `load`, from text; `origin` names the source in errors.
    pub fn from_yaml_str(text: &str, origin: &str, overrides: &[String]) -> Result<Config> {
        parse_validated(text, origin, overrides, Config::validate)
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }
}

/// Reads a config file, applies `key.path=value` overrides, parses it and runs `validate`;
/// every error names the file (the `load` of every task config).
pub fn load_validated<T: serde::de::DeserializeOwned>(
    path: &Path,
    overrides: &[String],
    validate: impl Fn(&T) -> Result<()>,
) -> Result<T> {
    let text = read_config_text(path)?;
    parse_validated(&text, &path.display().to_string(), overrides, validate)
}

/// The largest config file read (the reference configs are a few KiB).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Reads a config file of at most `MAX_CONFIG_BYTES`: the size is checked before reading,
/// and the read itself stops one byte past the limit, because devices and pipes
/// (`/dev/zero`, `<(yes)`) report a size of 0 and never end.
pub fn read_config_text(path: &Path) -> Result<String> {
    use std::io::Read;
    let cfg_err = |msg: String| GqcimError::Config { path: path.display().to_string(), msg };
    let too_big = || cfg_err(format!("config file is larger than {} MiB", MAX_CONFIG_BYTES >> 20));
    let file =
        std::fs::File::open(path).map_err(|e| cfg_err(format!("cannot read config file: {e}")))?;
    if file.metadata().map(|m| m.len()).unwrap_or(0) > MAX_CONFIG_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cfg_err(format!("cannot read config file: {e}")))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|e| cfg_err(format!("config file is not UTF-8 text: {e}")))
}

/// `load_validated` from text; `origin` names the source in errors.
pub fn parse_validated<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: &str,
    overrides: &[String],
    validate: impl Fn(&T) -> Result<()>,
) -> Result<T> {
    let cfg: T = parse_yaml(text, origin, overrides)?;
    validate(&cfg)
        .map_err(|e| GqcimError::Config { path: origin.to_string(), msg: e.to_string() })?;
    Ok(cfg)
}

/// Parses any task's YAML config: the text becomes a value tree, `--set` overrides apply,
/// then the typed parse, whose errors name the dotted field with a did-you-mean hint.
/// Every task config (classification, detection, segmentation) loads through here.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: &str,
    overrides: &[String],
) -> Result<T> {
    let cfg_err = |msg: String| GqcimError::Config { path: origin.to_string(), msg };
    let mut tree: Value =
        serde_yaml::from_str(text).map_err(|e| cfg_err(format!("not valid YAML: {e}")))?;
    if tree.is_null() {
        tree = Value::Mapping(Mapping::new());
    }
    for o in overrides {
        apply_override(&mut tree, o).map_err(|m| cfg_err(format!("--set {o}: {m}")))?;
    }
    check_numbers(&tree, "").map_err(cfg_err)?;
    crate::device::presets::expand_in_tree(&mut tree, origin).map_err(cfg_err)?;
    serde_path_to_error::deserialize(tree).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner().to_string();
        cfg_err(describe_serde_error(&field, &inner))
    })
}

/// Every number of a config must survive the trip to the f32 tensors it ends up in: finite,
/// and 0 or of magnitude in [f32::MIN_POSITIVE, f32::MAX]. `g_max: 1e39` is finite in f64
/// but infinite in f32, `std: 1e-300` becomes 0 (a division by zero), `.nan` compares false
/// with every range check; each is refused here, naming the dotted field.
fn check_numbers(v: &Value, field: &str) -> std::result::Result<(), String> {
    let name = |k: &str| if field.is_empty() { k.to_string() } else { format!("{field}.{k}") };
    match v {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            let a = x.abs();
            let field = if field.is_empty() { "<top level>" } else { field };
            if !x.is_finite() {
                return Err(format!("field `{field}`: {x} is not a finite number"));
            }
            if a > f32::MAX as f64 {
                return Err(format!(
                    "field `{field}`: {x} is too large (the largest f32 is {:e})",
                    f32::MAX
                ));
            }
            if a != 0.0 && a < f32::MIN_POSITIVE as f64 {
                return Err(format!(
                    "field `{field}`: {x} is too small to compute with in f32 (nonzero \
                     magnitudes must be >= {:e}); write 0 for zero",
                    f32::MIN_POSITIVE
                ));
            }
            Ok(())
        }
        Value::Mapping(m) => {
            for (k, x) in m {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap_or_default().trim().to_string(),
                };
                check_numbers(x, &name(&key))?;
            }
            Ok(())
        }
        Value::Sequence(s) => {
            for (i, x) in s.iter().enumerate() {
                check_numbers(x, &format!("{field}[{i}]"))?;
            }
            Ok(())
        }
        Value::Tagged(t) => check_numbers(&t.value, field),
        _ => Ok(()),
    }
}

/// Applies one `a.b.c=value` override to the YAML tree; the value is parsed as YAML.
pub fn apply_override(tree: &mut Value, assignment: &str) -> std::result::Result<(), String> {
    let (key, raw) =
        assignment.split_once('=').ok_or_else(|| "expected key.path=value".to_string())?;
    if raw.trim().is_empty() {
        // YAML reads "" as null, which would silently reset a whole section to defaults.
        return Err(
            "empty value (write the value after `=`; `null` where a field allows it)".to_string()
        );
    }
    let value: Value =
        serde_yaml::from_str(raw).map_err(|e| format!("value is not valid YAML: {e}"))?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("empty component in key `{key}`"));
    }
    let mut node = tree;
    for (i, part) in parts.iter().enumerate() {
        let map = match node {
            Value::Mapping(m) => m,
            _ => return Err(format!("`{}` is not a section", parts[..i].join("."))),
        };
        let k = Value::String(part.to_string());
        if i + 1 == parts.len() {
            map.insert(k, value);
            return Ok(());
        }
        node = map.entry(k).or_insert_with(|| Value::Mapping(Mapping::new()));
        if node.is_null() {
            *node = Value::Mapping(Mapping::new());
        }
    }
    Ok(())
}

/// Turns serde's message into one line naming the field, with a did-you-mean for unknown
/// keys and variants ("unknown field `lrr`, expected one of `lr`, ...").
fn describe_serde_error(field: &str, inner: &str) -> String {
    let field = if field == "." || field.is_empty() { "<top level>" } else { field };
    for kind in ["unknown field", "unknown variant"] {
        if let Some(rest) = inner.strip_prefix(kind) {
            let names: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
            if let Some((bad, expected)) = names.split_first() {
                let hint = did_you_mean(bad, expected)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                let what = if kind == "unknown field" { "unknown key" } else { "unknown value" };
                let at = if kind == "unknown field" {
                    let parent = field.rsplit_once('.').map(|(p, _)| p).unwrap_or("<top level>");
                    if field.ends_with(bad) {
                        format!("in section `{parent}`")
                    } else {
                        format!("in section `{field}`")
                    }
                } else {
                    format!("for field `{field}`")
                };
                return format!(
                    "{what} `{bad}` {at}{hint} (allowed: {})",
                    expected.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
                );
            }
        }
    }
    format!("field `{field}`: {inner}")
}

/// The closest allowed name, when it is close enough to be a plausible typo.
pub fn did_you_mean<'a>(bad: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (strsim::levenshtein(bad, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_sets_nested_value_and_parses_yaml_scalars() {
        let cfg = Config::from_yaml_str(
            "train:\n  epochs: 3\n",
            "t.yaml",
            &["train.lr=0.05".into(), "model.arch=resnet32".into()],
        )
        .unwrap();
        assert_eq!(cfg.train.epochs, 3);
        assert_eq!(cfg.train.lr, 0.05);
        assert_eq!(cfg.model.arch, Arch::Resnet32);
    }

    #[test]
    fn unknown_key_gets_did_you_mean() {
        let err = Config::from_yaml_str("train:\n  lrr: 0.1\n", "t.yaml", &[]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown key `lrr`"), "{msg}");
        assert!(msg.contains("did you mean `lr`"), "{msg}");
        assert!(msg.contains("train"), "{msg}");
    }
}
