//! Semantic segmentation of Fashion-MNIST scenes with DeepLabv3 (Chen et al., "Rethinking
//! Atrous Convolution for Semantic Image Segmentation", arXiv:1706.05587, 2017): 11 classes
//! (background + the 10 item classes), per-pixel cross-entropy, mIoU and pixel accuracy as
//! the Pascal VOC benchmark defines them (`seg_metrics`).
//!
//! Scenes come from `data::scenes`: the test set is composed once from the FMNIST test split
//! with its own seed (`data.test_seed`, independent of the training seed, so every run and
//! every quantization method is scored on the same scenes); the training pool is composed
//! from the train split and, by default, recomposed every epoch from a per-epoch seed, so a
//! resumed run sees exactly the scenes an uninterrupted one would. Horizontal flips are
//! drawn per sample and applied to the image and its mask together, on the tensor side.
//!
//! `data.dataset: voc | folder` reads a dataset on disk instead (`data::seg_sets`): images
//! and masks letterboxed into one cache, the dataset's class names, and training batches
//! flipped and zoomed with their masks (`data::jitter`).
//!
//! `SegmentHarness` plugs the task into straight-through fine-tuning and the comparison grid
//! (`tasks::harness`): the metric is mIoU as a fraction.
use super::seg_metrics::{seg_loss, ConfusionMatrix};
use crate::checkpoint::load_strict;
use crate::config::{
    AnalogConfig, CompareConfig, Config, DataConfig, DeviceChoice, FinetuneConfig, QuantConfig,
    Task as TaskKind, TrainConfig, TrainNoiseConfig,
};
use crate::data::jitter::Jitter;
use crate::data::rgb::InputNorm;
use crate::data::scenes::{generate, SceneConfig, SceneSet};
use crate::data::seg_sets::{class_names, load_seg_split, SegDataset, SegSplitData};
use crate::data::voc_seg::IGNORE_INDEX;
use crate::data::{self, Dataset};
use crate::engine::schedule::epoch_seed;
use crate::engine::task::Task;
use crate::engine::task::{Metrics, TrainSetup};
use crate::error::{invalid, Result};
use crate::glance::picture::{
    captioned, grid, legend, outline, stack, Picture, Swatch, CLASS_COLOURS,
};
use crate::nets::deeplab::build_deeplab;
use crate::nets::Network;
use crate::run::{setup_device, RunDir, RunPlace};
use crate::tb::Tb;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Fashion-MNIST statistics on the [0, 1] scale (`data::default_stats`); scenes keep the
/// items' intensities, so the classifier's normalisation carries over.
pub const NORM_MEAN: f64 = 0.2860;
pub const NORM_STD: f64 = 0.3530;

/// The scene class names as owned strings (what own datasets give).
pub fn scene_names() -> Vec<String> {
    CLASS_NAMES.iter().map(|s| s.to_string()).collect()
}

/// Mask ids of the scenes: 0 = background, 1..=10 = FMNIST class + 1.
pub const CLASS_NAMES: [&str; 11] = [
    "background",
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];

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

fn in_range<T: PartialOrd + std::fmt::Display>(field: &str, v: T, lo: T, hi: T) -> Result<()> {
    if v < lo || v > hi || v.partial_cmp(&v).is_none() {
        return Err(invalid(field, format!("expected a value in [{lo}, {hi}], got {v}")));
    }
    Ok(())
}

impl SegmentConfig {
    /// The validation pass: every range check names its field.
    pub fn validate(&self) -> Result<()> {
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
        let t = &self.train;
        in_range("train.epochs", t.epochs, 1, 100_000)?;
        // The ASPP image-pooling BN sees one value per channel and sample: a batch of one
        // has no variance (PyTorch raises the same error).
        in_range("train.batch_size", t.batch_size, 2, 1 << 20)?;
        if !(t.lr > 0.0 && t.lr <= 10.0) {
            return Err(invalid("train.lr", format!("expected a value in (0, 10], got {}", t.lr)));
        }
        in_range("train.momentum", t.momentum, 0.0, 0.999)?;
        in_range("train.weight_decay", t.weight_decay, 0.0, 1.0)?;
        in_range("train.warmup_epochs", t.warmup_epochs, 0.0, t.epochs as f64)?;
        if t.label_smoothing != 0.0 {
            return Err(invalid("train.label_smoothing", "not used for segmentation; set it to 0"));
        }
        in_range("train.nan_check_every", t.nan_check_every, 1, 1_000_000)?;
        if t.nesterov && t.momentum == 0.0 {
            return Err(invalid("train.nesterov", "Nesterov momentum needs train.momentum > 0"));
        }
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
    fn fmnist(&self) -> DataConfig {
        DataConfig { root: self.data.fmnist_root.clone(), ..DataConfig::default() }
    }
}

/// (x / 255 - mean) / std: uint8 [b, 1, h, w] -> float [b, 1, h, w].
pub fn normalize(images: &Tensor) -> Tensor {
    (images.to_kind(Kind::Float) / 255.0 - NORM_MEAN) / NORM_STD
}

/// Flips each sample left-right with probability 1/2 (one draw from the global generator
/// per sample), image and mask together. x: [b, c, h, w], y: [b, h, w].
pub fn random_hflip_pair(x: &Tensor, y: &Tensor) -> (Tensor, Tensor) {
    let b = x.size()[0];
    let flip = Tensor::rand([b], (Kind::Float, x.device())).lt(0.5);
    let fx = x.flip([3]).where_self(&flip.view([b, 1, 1, 1]), x);
    let fy = y.flip([2]).where_self(&flip.view([b, 1, 1]), y);
    (fx, fy)
}

/// Composes scenes with the global generator seeded too (noisy backgrounds draw from it),
/// so a set depends on its seed alone.
fn compose(items: &Dataset, cfg: &SceneConfig, count: usize, seed: u64) -> SceneSet {
    tch::manual_seed((seed & i64::MAX as u64) as i64);
    generate(&items.images, &items.labels, cfg, count, seed)
}

/// The seed of the training pool of one epoch.
pub fn train_pool_seed(seed: u64, epoch: usize) -> u64 {
    epoch_seed(seed ^ 0x005C_E7E5, epoch) as u64
}

/// Scenes on the training device: images uint8 [n, 1, S, S], masks uint8 [n, S, S].
#[derive(Debug)]
pub struct SegSplit {
    pub images: Tensor,
    pub masks: Tensor,
    pub norm: InputNorm,
}

impl SegSplit {
    pub fn from_scenes(set: &SceneSet, device: Device) -> SegSplit {
        SegSplit {
            images: set.images.to_device(device),
            masks: set.masks.to_device(device),
            norm: InputNorm::Scenes,
        }
    }

    /// A decoded dataset split (letterboxed, `norm` the dataset's statistics).
    pub fn from_own(split: &SegSplitData, norm: InputNorm, device: Device) -> SegSplit {
        SegSplit {
            images: split.images.to_device(device),
            masks: split.masks.to_device(device),
            norm,
        }
    }

    /// uint8 images -> normalised float input.
    pub fn input(&self, images: &Tensor) -> Tensor {
        match &self.norm {
            InputNorm::Scenes => normalize(images),
            own => own.apply(images),
        }
    }

    pub fn len(&self) -> i64 {
        self.images.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first `n` samples (all when there are fewer).
    pub fn first(&self, n: usize) -> SegSplit {
        let n = (n as i64).min(self.len());
        SegSplit {
            images: self.images.narrow(0, 0, n),
            masks: self.masks.narrow(0, 0, n),
            norm: self.norm.clone(),
        }
    }

    /// Normalised images [b, 1, S, S] and int64 masks [b, S, S] of samples start..start+b.
    pub fn batch(&self, start: i64, b: i64) -> (Tensor, Tensor) {
        let x = self.input(&self.images.narrow(0, start, b));
        (x, self.masks.narrow(0, start, b).to_kind(Kind::Int64))
    }
}

/// Training pool and test scenes, with what is needed to recompose the pool per epoch.
#[derive(Debug)]
pub struct SegmentData {
    pub train: SegSplit,
    pub test: SegSplit,
    /// FMNIST train items (CPU) and scene settings to recompose the pool; None for fixed sets.
    source: Option<(Dataset, SceneConfig, u64)>,
    pool_epoch: usize,
    horizontal_flip: bool,
    /// Own datasets: zoom range of the training batches (None: scenes, flips only).
    scale_jitter: Option<f64>,
    /// Mask class names (index = class id).
    pub names: Vec<String>,
}

impl SegmentData {
    /// Composes the test scenes from `test_items` (seed `test_seed`) and epoch 0's training
    /// pool from `train_items` (seed `train_pool_seed(seed, 0)`); items uint8 [n, 1, 28, 28].
    pub fn from_items(
        train_items: Dataset,
        test_items: &Dataset,
        scenes: &SceneConfig,
        seed: u64,
        test_seed: u64,
        horizontal_flip: bool,
        device: Device,
    ) -> SegmentData {
        let test = compose(test_items, scenes, scenes.test_scenes, test_seed);
        let train = compose(&train_items, scenes, scenes.train_scenes, train_pool_seed(seed, 0));
        SegmentData {
            train: SegSplit::from_scenes(&train, device),
            test: SegSplit::from_scenes(&test, device),
            source: Some((train_items, scenes.clone(), seed)),
            pool_epoch: 0,
            horizontal_flip,
            scale_jitter: None,
            names: scene_names(),
        }
    }

    /// Fixed training and test sets (no recomposition).
    pub fn from_sets(
        train: &SceneSet,
        test: &SceneSet,
        horizontal_flip: bool,
        device: Device,
    ) -> SegmentData {
        SegmentData {
            train: SegSplit::from_scenes(train, device),
            test: SegSplit::from_scenes(test, device),
            source: None,
            pool_epoch: 0,
            horizontal_flip,
            scale_jitter: None,
            names: scene_names(),
        }
    }

    /// Reads the configured dataset from disk (`data.dataset: voc | folder`): the test split,
    /// and the training split when `with_train` (else the test split stands in for it).
    pub fn load_own(cfg: &SegmentConfig, with_train: bool, device: Device) -> Result<SegmentData> {
        let d = &cfg.data;
        let root = d.root.clone().unwrap_or_default();
        let names = class_names(d.dataset, &root, d.classes.as_deref())?;
        let k = names.len() as i64;
        if cfg.model.num_classes != k {
            return Err(invalid(
                "model.num_classes",
                format!(
                    "is {} but the dataset in {} has {k} classes ({}); set model.num_classes: {k}",
                    cfg.model.num_classes,
                    root.display(),
                    names.join(", ")
                ),
            ));
        }
        let (c, size) = (cfg.model.in_channels, d.input_size.unwrap_or(DEFAULT_INPUT_SIZE));
        let (m, s) = crate::data::rgb::default_stats(c);
        let norm =
            InputNorm::Stats { mean: d.mean.clone().unwrap_or(m), std: d.std.clone().unwrap_or(s) };
        let split = |name: &Option<String>, default: &str| -> Result<SegSplit> {
            let name = name.as_deref().unwrap_or(default);
            let data = load_seg_split(d.dataset, &root, name, &names, c, size)?;
            Ok(SegSplit::from_own(&data, norm.clone(), device))
        };
        let test = split(&d.test_split, "val")?;
        let train = if with_train { split(&d.train_split, "train")? } else { test.first(0) };
        Ok(SegmentData {
            train,
            test,
            source: None,
            pool_epoch: 0,
            horizontal_flip: d.horizontal_flip,
            scale_jitter: Some(d.scale_jitter.unwrap_or(DEFAULT_SCALE_JITTER)),
            names,
        })
    }

    /// Loads the FMNIST splits named by the config and composes the scenes: train scenes from
    /// the train split only, test scenes from the test split only.
    pub fn load(cfg: &SegmentConfig, device: Device) -> Result<SegmentData> {
        if cfg.data.dataset != SegDataset::Scenes {
            return Self::load_own(cfg, true, device);
        }
        let fm = cfg.fmnist();
        let train = data::load_split(&fm, true)?;
        let test = data::load_split(&fm, false)?;
        let d = &cfg.data;
        crate::data::scenes::check_items(&train.images, &d.scenes, "training")?;
        crate::data::scenes::check_items(&test.images, &d.scenes, "test")?;
        Ok(Self::from_items(
            train,
            &test,
            &d.scenes,
            cfg.seed,
            d.test_seed,
            d.horizontal_flip,
            device,
        ))
    }

    /// Makes the training pool the one of `epoch` (recomposed from its seed; a no-op for
    /// fixed sets or when it already is). Reseeds the global generator.
    pub fn set_epoch(&mut self, epoch: usize) {
        let Some((items, scenes, seed)) = &self.source else { return };
        if epoch == self.pool_epoch {
            return;
        }
        let device = self.train.images.device();
        let set = compose(items, scenes, scenes.train_scenes, train_pool_seed(*seed, epoch));
        self.train = SegSplit::from_scenes(&set, device);
        self.pool_epoch = epoch;
    }

    /// A training batch: gathered, normalised, flipped (image and mask together) when
    /// `data.horizontal_flip` is on. idx: int64 [b] -> (float [b, 1, S, S], int64 [b, S, S]).
    pub fn train_batch(&self, idx: &Tensor) -> (Tensor, Tensor) {
        let x = self.train.input(&self.train.images.index_select(0, idx));
        let y = self.train.masks.index_select(0, idx).to_kind(Kind::Int64);
        if let Some(j) = self.scale_jitter {
            // Own datasets: one flip-and-zoom draw per sample moves image and mask together.
            let draw = Jitter::draw(x.size()[0], self.horizontal_flip, j, x.device());
            return (draw.images(&x), draw.masks(&y));
        }
        if self.horizontal_flip {
            random_hflip_pair(&x, &y)
        } else {
            (x, y)
        }
    }
}

/// mIoU, pixel accuracy and per-class IoU (None where a class is neither in the target nor
/// predicted) on a test set.
#[derive(Debug, Clone, Serialize)]
pub struct SegEval {
    pub miou: f64,
    pub pixel_acc: f64,
    pub per_class: Vec<Option<f64>>,
    pub images: i64,
    pub seconds: f64,
    /// Class names (index = class id), for the per-class keys.
    pub names: Vec<String>,
}

impl SegEval {
    /// Per-class IoU keyed by class name, for results.json.
    pub fn per_class_json(&self) -> Value {
        let map: serde_json::Map<String, Value> = self
            .per_class
            .iter()
            .enumerate()
            .map(|(c, v)| {
                let name = self.names.get(c).cloned().unwrap_or(c.to_string());
                (name, json!(v))
            })
            .collect();
        Value::Object(map)
    }
}

/// The network's per-pixel classes: normalised [b, 1, h, w] -> int64 [b, h, w] (eval mode).
pub fn predict(net: &Network, x: &Tensor) -> Tensor {
    tch::no_grad(|| net.forward_t(x, false).argmax(1, false))
}

/// Scores a network on the test scenes in batches (eval mode, no grad); the confusion
/// matrix accumulates on the device, metrics are read once at the end.
pub fn evaluate(net: &Network, data: &SegmentData, batch_size: i64) -> Result<SegEval> {
    let start = Instant::now();
    let split = &data.test;
    let n = split.len();
    if n == 0 {
        return Err(invalid("data.scenes.test_scenes", "the test set has no scenes"));
    }
    let device = split.images.device();
    let mut cm: Option<ConfusionMatrix> = None;
    tch::no_grad(|| -> Result<()> {
        let mut i = 0;
        while i < n {
            let b = batch_size.min(n - i);
            let (x, y) = split.batch(i, b);
            let logits = net.forward_t(&x, false);
            super::classify::check_finite_output(&logits, net, i)?;
            let cm = cm.get_or_insert_with(|| ConfusionMatrix::new(logits.size()[1], device));
            cm.update(&logits.argmax(1, false), &y, IGNORE_INDEX);
            i += b;
        }
        Ok(())
    })?;
    let cm = cm.unwrap_or_else(|| ConfusionMatrix::new(data.names.len() as i64, device));
    Ok(SegEval {
        miou: cm.miou(),
        pixel_acc: cm.pixel_accuracy(),
        per_class: cm.per_class_iou(),
        images: n,
        seconds: start.elapsed().as_secs_f64(),
        names: data.names.clone(),
    })
}

/// Builds the configured DeepLab (initialisation from `cfg.seed`).
pub fn build_network(cfg: &SegmentConfig, device: Device) -> Result<Network> {
    tch::manual_seed(cfg.seed as i64);
    build_deeplab(cfg.model.arch.name(), cfg.model.in_channels, cfg.model.num_classes, device)
}

/// Builds the configured DeepLab and loads a checkpoint strictly.
pub fn load_network(cfg: &SegmentConfig, checkpoint: &Path, device: Device) -> Result<Network> {
    let mut net = build_network(cfg, device)?;
    load_strict(&mut net.vs, checkpoint)?;
    Ok(net)
}

/// Resolves the device and thread count (the classification code's rules).
fn setup(cfg: &SegmentConfig) -> Result<Device> {
    setup_device(&cfg.base_config())
}

/// Creates (or re-opens, when resuming) `runs/segment/<run>/` and saves the resolved config.
fn create_run_dir(
    cfg: &SegmentConfig,
    command: &str,
    config_path: &Path,
    explicit: Option<&Path>,
) -> Result<RunDir> {
    let place = RunPlace { out_dir: &cfg.out_dir, task: "segment", name: &cfg.run_name };
    RunDir::create_at(place, command, config_path, explicit, &cfg.to_yaml())
}

/// Mask colours of sample pictures: class id k >= 1 takes `CLASS_COLOURS[k - 1]` (the
/// detection boxes' colours), background a light grey distinct from black inputs and white
/// gaps, ignored pixels black.
pub fn mask_colour(id: u8) -> [u8; 3] {
    match id {
        0 => SEG_BACKGROUND,
        k if (k as usize) <= CLASS_COLOURS.len() => CLASS_COLOURS[k as usize - 1],
        _ => [0, 0, 0],
    }
}

/// The background colour of mask pictures.
pub const SEG_BACKGROUND: [u8; 3] = [215, 215, 215];

/// Upscale factor of sample pictures (32-px scenes become 96 px).
const SAMPLE_SCALE: usize = 3;

/// A one-pixel dark frame around a panel, so its extent shows against white gaps.
fn framed(p: Picture) -> Picture {
    let mut p = p;
    let (w, h) = (p.w, p.h);
    outline(&mut p, 0, 0, w.saturating_sub(1), h.saturating_sub(1), [60, 60, 60], 1);
    p
}

/// [h, w] class ids (any integer kind) -> a coloured, upscaled, framed picture.
fn mask_picture(mask: &Tensor) -> Picture {
    let (h, w) = (mask.size()[0] as usize, mask.size()[1] as usize);
    let ids = Vec::<u8>::try_from(
        mask.to_device(Device::Cpu).clamp(0, 255).to_kind(Kind::Uint8).contiguous().view([-1]),
    )
    .unwrap_or_default();
    let mut p = Picture::new(w, h, SEG_BACKGROUND);
    for (i, id) in ids.iter().enumerate().take(w * h) {
        p.set(i % w, i / w, mask_colour(*id));
    }
    framed(p.upscale(SAMPLE_SCALE))
}

/// The grey input scene [1, h, w] uint8 as an upscaled, framed picture.
fn input_picture(img: &Tensor) -> Picture {
    let (c, h, w) = (img.size()[0] as usize, img.size()[1] as usize, img.size()[2] as usize);
    let v =
        Vec::<u8>::try_from(img.to_device(Device::Cpu).contiguous().view([-1])).unwrap_or_default();
    let mut p = Picture::new(w, h, [0, 0, 0]);
    for (i, g) in v.iter().enumerate().take(w * h) {
        let at = |k: usize| v.get(k * w * h + i).copied().unwrap_or(0);
        p.set(i % w, i / w, if c == 3 { [*g, at(1), at(2)] } else { [*g, *g, *g] });
    }
    framed(p.upscale(SAMPLE_SCALE))
}

/// The colour legend of mask pictures.
pub fn mask_legend(width: usize) -> Picture {
    mask_legend_of(&scene_names(), width)
}

/// The class names of an own-dataset segmentation config given as YAML (None for scenes or
/// a config or dataset that cannot be read).
pub fn class_names_of_yaml(yaml: &str) -> Option<Vec<String>> {
    let cfg = SegmentConfig::from_yaml_str(yaml, "plan", &[]).ok()?;
    let d = &cfg.data;
    if d.dataset == SegDataset::Scenes {
        return None;
    }
    class_names(d.dataset, d.root.as_deref()?, d.classes.as_deref()).ok()
}

/// The colour legend for a dataset's class names.
pub fn mask_legend_of(names: &[String], width: usize) -> Picture {
    let entries: Vec<(Swatch, String)> = names
        .iter()
        .enumerate()
        .map(|(k, name)| (Swatch::Fill(mask_colour(k as u8)), name.to_string()))
        .collect();
    legend(&entries, width)
}

/// Input and ground truth of the first `n` test scenes, captioned.
pub fn sample_inputs(data: &SegmentData, n: usize) -> Vec<Vec<(String, Picture)>> {
    let n = (n as i64).min(data.test.len());
    (0..n)
        .map(|i| {
            vec![
                ("input".to_string(), input_picture(&data.test.images.get(i))),
                ("ground truth".to_string(), mask_picture(&data.test.masks.get(i))),
            ]
        })
        .collect()
}

/// The network's predicted masks of the first `n` test scenes.
pub fn sample_predictions(net: &Network, data: &SegmentData, n: usize) -> Vec<Picture> {
    let n = (n as i64).min(data.test.len());
    if n <= 0 {
        return Vec::new();
    }
    let (x, _) = data.test.batch(0, n);
    let pred = predict(net, &x);
    (0..n).map(|i| mask_picture(&pred.get(i))).collect()
}

/// Logs the first `n` test scenes as one image each: the grey input, the ground truth and
/// the prediction side by side, captioned, with the colour legend below (no padding: the
/// picture keeps its aspect ratio).
pub fn log_samples(
    tb: &mut Tb,
    net: &Network,
    data: &SegmentData,
    n: usize,
    prefix: &str,
    step: usize,
) {
    let inputs = sample_inputs(data, n);
    let preds = sample_predictions(net, data, n);
    for (i, (common, pred)) in inputs.iter().zip(&preds).enumerate() {
        let mut panels: Vec<Picture> =
            common.iter().map(|(cap, p)| captioned(p, std::slice::from_ref(cap))).collect();
        panels.push(captioned(pred, &["prediction".to_string()]));
        let body = grid(&panels, panels.len(), 6);
        let pic = stack(&body, &mask_legend_of(&data.names, body.w), 6);
        tb.image(&format!("{prefix}/sample_{i}"), &pic.to_chw(), pic.h, pic.w, step);
    }
}

/// Per-class IoU curves (`test/iou/<class>`); the engine logs mIoU and pixel accuracy.
fn log_class_iou(tb: &mut Tb, res: &SegEval, step: usize) {
    for (c, iou) in res.per_class.iter().enumerate() {
        if let (Some(v), Some(name)) = (iou, res.names.get(c)) {
            tb.scalar(&format!("test/iou/{}", name.replace('/', "-")), *v, step);
        }
    }
}

fn eval_json(res: &SegEval) -> Value {
    json!({"test_miou": res.miou, "test_pixel_accuracy": res.pixel_acc,
           "test_images": res.images, "per_class_iou": res.per_class_json()})
}

/// Trains DeepLab (or resumes a run folder) through the engine's loop.
pub fn train(
    cfg: &SegmentConfig,
    config_path: &Path,
    run_dir: Option<&Path>,
    resume: bool,
) -> Result<Value> {
    let device = setup(cfg)?;
    let start = Instant::now();
    let data = SegmentData::load(cfg, device)?;
    let mut task = SegmentHarness::from_data(cfg, data);
    task.compose_seconds = start.elapsed().as_secs_f64();
    crate::engine::train::train(&mut task, device, config_path, run_dir, resume)
}

/// `gqcim segment-eval` (and `--analog`): a checkpoint on the test set, through the engine.
pub fn eval(
    cfg: &SegmentConfig,
    config_path: &Path,
    checkpoint_path: &Path,
    run_dir: Option<&Path>,
) -> Result<Value> {
    let device = setup(cfg)?;
    // Evaluation reads no training split.
    let data = if cfg.data.dataset == SegDataset::Scenes {
        SegmentData::load(cfg, device)?
    } else {
        SegmentData::load_own(cfg, false, device)?
    };
    let task = SegmentHarness::from_data(cfg, data);
    let net = load_network(cfg, checkpoint_path, device)?;
    let run = create_run_dir(cfg, "eval", config_path, run_dir)?;
    crate::engine::evaluate::evaluate(&task, &net, checkpoint_path, run, device)
}

/// Segmentation as a task harness: seg_loss (ignore 255) on flipped batches of one fixed
/// training pool (epoch 0's), mIoU as a fraction on the test scenes.
pub struct SegmentHarness {
    pub cfg: SegmentConfig,
    pub data: SegmentData,
    /// Seconds spent composing the scenes when the task was set up (the run's record).
    pub compose_seconds: f64,
}

impl SegmentHarness {
    /// Loads FMNIST and composes the scenes the config names.
    pub fn new(cfg: &SegmentConfig, device: Device) -> Result<SegmentHarness> {
        Ok(SegmentHarness::from_data(cfg, SegmentData::load(cfg, device)?))
    }

    /// A harness over scenes already composed (tests, other item sources).
    pub fn from_data(cfg: &SegmentConfig, data: SegmentData) -> SegmentHarness {
        SegmentHarness { cfg: cfg.clone(), data, compose_seconds: 0.0 }
    }
}

impl Task for SegmentHarness {
    fn task(&self) -> &'static str {
        "segment"
    }

    fn metric_name(&self) -> &'static str {
        "mIoU (%)"
    }

    /// Builds the network from the harness's own `SegmentConfig`; the classification
    /// config's model section does not describe a segmenter and is not read.
    fn load_network(&self, _cfg: &Config, checkpoint: &Path, device: Device) -> Result<Network> {
        load_network(&self.cfg, checkpoint, device)
    }

    fn train_len(&self) -> i64 {
        self.data.train.len()
    }

    fn batch_loss(&self, net: &Network, idx: &Tensor) -> Tensor {
        let (x, y) = self.data.train_batch(idx);
        seg_loss(&net.forward_t(&x, true), &y, IGNORE_INDEX)
    }

    fn evaluate(&self, net: &Network) -> Result<f64> {
        Ok(evaluate(net, &self.data, self.cfg.eval.batch_size)?.miou)
    }

    fn eval_len(&self) -> i64 {
        self.data.test.len()
    }

    fn sample_inputs(&self) -> Vec<Vec<(String, Picture)>> {
        sample_inputs(&self.data, self.cfg.eval.sample_images)
    }

    fn sample_pictures(&self, net: &Network) -> Vec<Picture> {
        sample_predictions(net, &self.data, self.cfg.eval.sample_images)
    }
    fn deploy_config(&self) -> Config {
        self.cfg.base_config()
    }

    fn config_yaml(&self) -> String {
        self.cfg.to_yaml()
    }

    fn train_setup(&self) -> TrainSetup<'_> {
        let c = &self.cfg;
        TrainSetup {
            train: &c.train,
            seed: c.seed,
            place: RunPlace { out_dir: &c.out_dir, task: "segment", name: &c.run_name },
        }
    }

    fn build_network(&self, device: Device) -> Result<Network> {
        build_network(&self.cfg, device)
    }

    /// A fresh pool of scenes per epoch when `data.regenerate_train` is on.
    fn begin_epoch(&mut self, epoch: usize) {
        if self.cfg.data.regenerate_train {
            self.data.set_epoch(epoch);
        }
    }

    fn metrics(&self, net: &Network, log: Option<(&mut Tb, usize)>) -> Result<Metrics> {
        let res = evaluate(net, &self.data, self.cfg.eval.batch_size)?;
        if let Some((tb, step)) = log {
            log_class_iou(tb, &res, step);
            log_samples(tb, net, &self.data, self.cfg.eval.sample_images, "test", step);
        }
        Ok(Metrics {
            primary: res.miou,
            scalars: vec![("miou", res.miou), ("pixel_accuracy", res.pixel_acc)],
            json: eval_json(&res),
            summary: format!(
                "test mIoU {:.2}%  pixel acc {:.2}% ({} scenes)",
                100.0 * res.miou,
                100.0 * res.pixel_acc,
                res.images
            ),
        })
    }

    fn describe_training(&self) -> String {
        let size = self.data.train.images.size();
        format!(
            "{} scenes of {}x{} per epoch ({} test)",
            self.data.train.len(),
            size[3],
            size[2],
            self.data.test.len()
        )
    }

    fn record(&self) -> Value {
        json!({"test_seed": self.cfg.data.test_seed, "class_names": self.data.names,
               "scene_compose_seconds": self.compose_seconds})
    }
}

/// `gqcim segment-quantize` / `segment-finetune`: one method and level count on the whole
/// test set (tasks::quantize_any).
pub fn quantize(
    cfg: &SegmentConfig,
    config_path: &Path,
    checkpoint: &Path,
    run_dir: Option<&Path>,
    finetune: bool,
) -> Result<Value> {
    let base = cfg.base_config();
    let device = setup(cfg)?;
    let data = SegmentData::load(cfg, device)?;
    let harness = SegmentHarness::from_data(cfg, data);
    let command = if finetune { "finetune" } else { "quantize" };
    let run = create_run_dir(cfg, command, config_path, run_dir)?;
    let yaml = cfg.to_yaml();
    crate::tasks::quantize_any::run(&base, &harness, device, &yaml, checkpoint, run, finetune)
}

/// `gqcim segment-compare`: the `compare` grid (fp32 against each quantizer and level count,
/// fine-tuned clean or noise-aware, under the programming-noise sweep) on a trained segmenter.
pub fn compare(
    cfg: &SegmentConfig,
    config_path: &Path,
    checkpoint: &Path,
    run_dir: Option<&Path>,
    how: crate::compare::GridRun,
) -> Result<Value> {
    let wall = Instant::now();
    let base = cfg.base_config();
    base.validate_compare()?;
    let device = setup(cfg)?;
    let mut data = SegmentData::load(cfg, device)?;
    if cfg.compare.eval_limit > 0 {
        data.test = data.test.first(cfg.compare.eval_limit);
    }
    let harness = SegmentHarness::from_data(cfg, data);
    let run = create_run_dir(cfg, "compare", config_path, run_dir)?;
    crate::compare::run_grid_steps(&base, &harness, checkpoint, device, run, wall, how)
}
