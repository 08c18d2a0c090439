//! The deployment sections every task's config carries: quantization, fine-tuning, training
//! noise and the comparison grid.
use super::{ProgrammingNoise, StuckAt};
use serde::{Deserialize, Serialize};

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
pub(crate) fn same_layers(a: &[String], b: &[String]) -> bool {
    a.iter().all(|x| b.contains(x)) && b.iter().all(|x| a.contains(x))
}
