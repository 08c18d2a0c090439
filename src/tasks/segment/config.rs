//! The segmentation experiment's config: one self-contained YAML (seed, device, data, model,
//! training, evaluation and the deployment sections), with `--set` overrides and named errors.
use super::CLASS_NAMES;
use crate::config::in_range;
use crate::config::{
    AnalogConfig, CompareConfig, Config, DataConfig, DeviceChoice, FinetuneConfig, QuantConfig,
    Task as TaskKind, TrainConfig, TrainNoiseConfig,
};
use crate::data::scenes::SceneConfig;
use crate::data::seg_sets::SegDataset;
use crate::error::{invalid, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum SegArch {
    /// Output stride 8, 64 ASPP channels, rates [3, 6, 9]: the CPU-sized variant.
    #[serde(rename = "deeplabv3_resnet18")]
    Deeplabv3Resnet18,
    /// torchvision's model (output stride 8, 256 ASPP channels, rates [12, 24, 36]).
    #[serde(rename = "deeplabv3_resnet50")]
    Deeplabv3Resnet50,
}

impl SegArch {
    pub fn name(self) -> &'static str {
        match self {
            SegArch::Deeplabv3Resnet18 => "deeplabv3_resnet18",
            SegArch::Deeplabv3Resnet50 => "deeplabv3_resnet50",
        }
    }
}

/// A self-contained segmentation experiment (no classification sections).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentConfig {
    /// Fixes the training scenes, data order, flips and initialisation.
    pub seed: u64,
    /// `segment`: what `gqcim train|eval|quantize|finetune|compare|sensitivity|export --config`
    /// reads to pick the task (a config without `task` is a classification config).
    pub task: TaskKind,
    pub device: DeviceChoice,
    /// libtorch intra-op threads; 0 keeps libtorch's default (one per core).
    pub threads: usize,
    /// Run folders go to `<out_dir>/segment/<run_name>/`.
    pub out_dir: PathBuf,
    /// Defaults to `<config stem>-<command>-<timestamp>`.
    pub run_name: Option<String>,
    pub data: SegDataConfig,
    pub model: SegModelConfig,
    pub train: TrainConfig,
    pub eval: SegEvalConfig,
    /// Quantization, fine-tuning, crossbar and comparison-grid sections, read as in the
    /// classification config; `segment-compare` runs the grid on the reference checkpoint.
    pub quant: QuantConfig,
    pub finetune: FinetuneConfig,
    pub analog: AnalogConfig,
    pub train_noise: TrainNoiseConfig,
    pub compare: CompareConfig,
}

/// The data section. `dataset: scenes` (the default) composes Fashion-MNIST scenes; `voc`
/// and `folder` read a dataset on disk (`data::seg_sets`). The own-dataset keys are optional
/// and left out of the saved config when unset, so scene configs save and resume as before.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegDataConfig {
    #[serde(skip_serializing_if = "is_scenes")]
    pub dataset: SegDataset,
    /// Own datasets: the dataset folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Split names (default train, val).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_split: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_split: Option<String>,
    /// Class names, background first (VOC default: background + the 20 VOC classes;
    /// folder default: `<root>/classes.txt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// Own datasets: side of the square, letterboxed input (default 256).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_size: Option<i64>,
    /// Own datasets: per-channel statistics on the [0, 1] scale (default ImageNet's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub std: Option<Vec<f64>>,
    /// Own datasets: zoom factors drawn from [1 - j, 1 + j] (default 0.2; 0 = off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_jitter: Option<f64>,
    /// Folder holding the four Fashion-MNIST IDX files (raw or `.gz`).
    pub fmnist_root: PathBuf,
    /// Scene composition; `train_scenes` is the pool size per epoch, `test_scenes` the
    /// fixed test set.
    pub scenes: SceneConfig,
    /// Seed of the test scenes (kept apart from `seed` so every run shares one test set).
    pub test_seed: u64,
    /// Recompose the training pool every epoch (from the epoch's seed); false keeps one pool.
    pub regenerate_train: bool,
    /// Random left-right flips of image and mask together.
    pub horizontal_flip: bool,
}

impl Default for SegDataConfig {
    fn default() -> Self {
        SegDataConfig {
            dataset: SegDataset::Scenes,
            root: None,
            train_split: None,
            test_split: None,
            classes: None,
            input_size: None,
            mean: None,
            std: None,
            scale_jitter: None,
            fmnist_root: PathBuf::from("/usr/share/datasets/fashion-mnist"),
            scenes: SceneConfig {
                canvas: 64,
                min_items: 1,
                max_items: 4,
                min_size: 16,
                max_size: 40,
                train_scenes: 3000,
                test_scenes: 1000,
                ..SceneConfig::default()
            },
            test_seed: 20_240_501,
            regenerate_train: true,
            horizontal_flip: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegModelConfig {
    pub arch: SegArch,
    /// Scenes are greyscale: 1.
    pub in_channels: i64,
    /// Background + 10 item classes: 11.
    pub num_classes: i64,
}

impl Default for SegModelConfig {
    fn default() -> Self {
        SegModelConfig { arch: SegArch::Deeplabv3Resnet18, in_channels: 1, num_classes: 11 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegEvalConfig {
    pub batch_size: i64,
    /// Test scenes shown in TensorBoard each epoch (input, ground truth, prediction).
    pub sample_images: usize,
}

impl Default for SegEvalConfig {
    fn default() -> Self {
        SegEvalConfig { batch_size: 100, sample_images: 4 }
    }
}

impl Default for SegmentConfig {
    fn default() -> Self {
        SegmentConfig {
            seed: 0,
            task: TaskKind::Segment,
            device: DeviceChoice::Auto,
            threads: 0,
            out_dir: PathBuf::from("runs"),
            run_name: None,
            data: SegDataConfig::default(),
            model: SegModelConfig::default(),
            train: TrainConfig {
                epochs: 12,
                batch_size: 32,
                lr: 0.05,
                weight_decay: 1e-4,
                warmup_epochs: 1.0,
                ..TrainConfig::default()
            },
            eval: SegEvalConfig::default(),
            quant: QuantConfig::default(),
            finetune: FinetuneConfig::default(),
            analog: AnalogConfig::default(),
            train_noise: TrainNoiseConfig::default(),
            compare: CompareConfig::default(),
        }
    }
}

/// The first own-dataset key set on a scenes config (a likely mistake: it would be ignored).
fn own_keys_set(d: &SegDataConfig) -> Option<&'static str> {
    let set = [
        ("root", d.root.is_some()),
        ("train_split", d.train_split.is_some()),
        ("test_split", d.test_split.is_some()),
        ("classes", d.classes.is_some()),
        ("input_size", d.input_size.is_some()),
        ("mean", d.mean.is_some()),
        ("std", d.std.is_some()),
        ("scale_jitter", d.scale_jitter.is_some()),
    ];
    set.iter().find(|(_, on)| *on).map(|(k, _)| *k)
}

fn is_scenes(d: &SegDataset) -> bool {
    *d == SegDataset::Scenes
}

/// Input size of own datasets when `data.input_size` is unset.
pub const DEFAULT_INPUT_SIZE: i64 = 256;
/// Zoom range of own datasets when `data.scale_jitter` is unset: factors in [0.8, 1.2].
pub const DEFAULT_SCALE_JITTER: f64 = 0.2;

impl SegmentConfig {
    /// The validation pass: every range check names its field.
    pub fn validate(&self) -> Result<()> {
        if self.task != TaskKind::Segment {
            let msg = format!("this is a segmentation config; got `{}`", self.task.name());
            return Err(invalid("task", msg));
        }
        in_range("threads", self.threads, 0, 1024)?;
        let s = &self.data.scenes;
        s.validate("data.scenes")?;
        in_range("data.scenes.train_scenes", s.train_scenes, 2, 10_000_000)?;
        in_range("data.scenes.test_scenes", s.test_scenes, 1, 10_000_000)?;
        let own = self.data.dataset != SegDataset::Scenes;
        if own {
            let d = &self.data;
            if d.root.is_none() {
                return Err(invalid(
                    "data.root",
                    format!("{:?} needs the dataset folder", d.dataset),
                ));
            }
            in_range("data.input_size", d.input_size.unwrap_or(DEFAULT_INPUT_SIZE), 32, 2048)?;
            in_range("data.scale_jitter", d.scale_jitter.unwrap_or(0.0), 0.0, 0.9)?;
            let c = self.model.in_channels;
            crate::data::rgb::check_stats(d.mean.as_deref(), d.std.as_deref(), c)?;
        } else if let Some(key) = own_keys_set(&self.data) {
            return Err(invalid(
                format!("data.{key}"),
                "is read only for a dataset on disk; set data.dataset to voc or folder",
            ));
        } else if self.model.in_channels != 1 {
            return Err(invalid(
                "model.in_channels",
                format!(
                    "Fashion-MNIST scenes are greyscale: expected 1, got {}",
                    self.model.in_channels
                ),
            ));
        }
        if !own && self.model.num_classes != CLASS_NAMES.len() as i64 {
            return Err(invalid(
                "model.num_classes",
                format!(
                    "scene masks hold background + 10 classes: expected 11, got {}",
                    self.model.num_classes
                ),
            ));
        }
        // The ASPP image-pooling BN sees one value per channel and sample: a batch of one
        // has no variance (PyTorch raises the same error).
        self.train.validate(2, Some("segmentation"))?;
        in_range("eval.batch_size", self.eval.batch_size, 1, 1 << 20)?;
        in_range("eval.sample_images", self.eval.sample_images, 0, 64)?;
        self.base_config().validate_deploy()
    }

    /// The main `Config` fields shared with the other tasks (seed, device, threads and the
    /// deployment sections), for the crate's device set-up, fine-tuning and grid.
    pub fn base_config(&self) -> Config {
        Config {
            seed: self.seed,
            device: self.device,
            threads: self.threads,
            out_dir: self.out_dir.clone(),
            run_name: self.run_name.clone(),
            task: TaskKind::Segment,
            quant: self.quant.clone(),
            finetune: self.finetune.clone(),
            analog: self.analog.clone(),
            train_noise: self.train_noise.clone(),
            compare: self.compare.clone(),
            ..Config::default()
        }
    }

    /// Reads a YAML config, applies `key.path=value` overrides, parses and validates it.
    pub fn load(path: &Path, overrides: &[String]) -> Result<SegmentConfig> {
        crate::config::load_validated(path, overrides, SegmentConfig::validate)
    }

    /// As `load`, from text; `origin` names the source in errors.
    pub fn from_yaml_str(text: &str, origin: &str, overrides: &[String]) -> Result<SegmentConfig> {
        crate::config::parse_validated(text, origin, overrides, SegmentConfig::validate)
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// The classification data section that reads the FMNIST split the scenes draw from.
    pub(crate) fn fmnist(&self) -> DataConfig {
        DataConfig { root: self.data.fmnist_root.clone(), ..DataConfig::default() }
    }
}
