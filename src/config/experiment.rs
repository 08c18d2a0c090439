//! The data, model, training and evaluation sections of a classification config (`TrainConfig`
//! is every task's training section).
use super::in_range;
use crate::error::{invalid, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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

impl TrainConfig {
    /// The checks every task's training section gets: ranges, Nesterov needing momentum, a
    /// smallest batch (`min_batch`), and `label_smoothing` only where the task has labels to
    /// smooth (`no_smoothing`: the task's name when it has none).
    pub fn validate(&self, min_batch: i64, no_smoothing: Option<&str>) -> Result<()> {
        let t = self;
        in_range("train.epochs", t.epochs, 1, 100_000)?;
        in_range("train.batch_size", t.batch_size, min_batch, 1 << 20)?;
        if !(t.lr > 0.0 && t.lr <= 10.0) {
            return Err(invalid("train.lr", format!("expected a value in (0, 10], got {}", t.lr)));
        }
        in_range("train.momentum", t.momentum, 0.0, 0.999)?;
        in_range("train.weight_decay", t.weight_decay, 0.0, 1.0)?;
        in_range("train.warmup_epochs", t.warmup_epochs, 0.0, t.epochs as f64)?;
        match no_smoothing {
            Some(task) if t.label_smoothing != 0.0 => {
                let msg = format!("not used by {task}; leave it at 0");
                return Err(invalid("train.label_smoothing", msg));
            }
            _ => in_range("train.label_smoothing", t.label_smoothing, 0.0, 0.99)?,
        }
        in_range("train.nan_check_every", t.nan_check_every, 1, 1_000_000)?;
        if t.nesterov && t.momentum == 0.0 {
            return Err(invalid("train.nesterov", "Nesterov momentum needs train.momentum > 0"));
        }
        Ok(())
    }
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
