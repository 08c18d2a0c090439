//! Semantic segmentation of Fashion-MNIST scenes with DeepLabv3 (Chen et al., "Rethinking
//! Atrous Convolution for Semantic Image Segmentation", arXiv:1706.05587, 2017): 11 classes
//! (background + the 10 item classes), per-pixel cross-entropy, mIoU and pixel accuracy as
//! the Pascal VOC benchmark defines them (`metrics`).
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
//! The folder holds the task-only pieces: `config` (the YAML), `data` (pools, test set,
//! batches), `eval` (mIoU), `metrics` (confusion matrix, loss), `score` (mask folders),
//! `draw` (pictures), `task` (`SegmentHarness`, the engine's `Task`: training, evaluation,
//! quantization and the grid are the engine's); this file has the commands.
pub mod config;
pub mod data;
pub mod draw;
pub mod eval;
pub mod metrics;
pub mod score;
pub mod task;
use crate::data::seg_sets::SegDataset;
use crate::engine::task::Task;
use crate::error::Result;
use crate::run::setup_device;
use crate::tasks::Purpose;
pub use config::{
    SegArch, SegDataConfig, SegEvalConfig, SegModelConfig, SegmentConfig, DEFAULT_INPUT_SIZE,
    DEFAULT_SCALE_JITTER,
};
pub use data::{normalize, random_hflip_pair, train_pool_seed, SegSplit, SegmentData};
pub(crate) use draw::log_class_iou;
pub use draw::{
    class_names_of_yaml, log_samples, mask_colour, mask_legend, mask_legend_of, sample_inputs,
    sample_predictions, SEG_BACKGROUND,
};
pub(crate) use eval::eval_json;
pub use eval::{evaluate, predict, SegEval};
use std::time::Instant;
pub use task::{build_network, load_network, SegmentHarness};
use tch::Device;

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
/// The segmentation task opened for `purpose` (tasks::Purpose), and its device. Evaluation
/// of a dataset on disk reads no training split.
pub fn open(cfg: &SegmentConfig, purpose: Purpose) -> Result<(Box<dyn Task>, Device)> {
    let device = setup_device(&cfg.base_config())?;
    let start = Instant::now();
    let mut data = if purpose == Purpose::Eval && cfg.data.dataset != SegDataset::Scenes {
        SegmentData::load_own(cfg, false, device)?
    } else {
        SegmentData::load(cfg, device)?
    };
    if purpose == Purpose::Grid && cfg.compare.eval_limit > 0 {
        data.test = data.test.first(cfg.compare.eval_limit);
    }
    let mut task = SegmentHarness::from_data(cfg, data);
    task.compose_seconds = start.elapsed().as_secs_f64();
    Ok((Box::new(task), device))
}
