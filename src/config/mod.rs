//! Typed experiment configs (the burn `Config` pattern): one struct per concern, each with
//! defaults, `deny_unknown_fields`, and a validation pass that names the field and the allowed
//! range. YAML is read into a value tree first so that `--set a.b=c` overrides apply before
//! the typed parse, and every error names the dotted field path (serde_path_to_error) with a
//! did-you-mean hint for unknown keys and enum variants (the ultralytics cfg check).
pub mod analog;
pub mod deploy;
pub mod experiment;
pub mod yaml;
use crate::error::{invalid, Result};
pub(crate) use analog::{validate_programming_noise, validate_stuck_at};
pub use analog::{
    AnalogConfig, CalibrationInputs, Clip, Converter, Drift, DriftCompensation, LogLinear,
    ProgrammingNoise, RandomSource, ReadNoise, ResplitScale, StuckAt, TileSplit,
};
pub(crate) use deploy::same_layers;
pub use deploy::{
    CompareConfig, FinetuneConfig, QuantConfig, QuantMethod, TrainNoiseConfig, TuneMode,
};
pub use experiment::{
    Arch, AugmentConfig, DataConfig, DatasetKind, EvalConfig, ModelConfig, TrainConfig,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
pub use yaml::{
    apply_override, did_you_mean, load_validated, parse_validated, parse_yaml, read_config_text,
    MAX_CONFIG_BYTES,
};

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
/// Checks `lo <= v <= hi` and names the field when it is not.
pub(crate) fn in_range<T: PartialOrd + std::fmt::Display>(
    field: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<()> {
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
        self.train.validate(1, None)?;
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

    /// The deployment view (what detection and segmentation configs build from theirs): a
    /// classification config is its own.
    pub fn base_config(&self) -> Config {
        self.clone()
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }
}
