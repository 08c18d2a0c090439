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
use crate::error::Result;
use crate::run::{setup_device, RunDir, RunPlace};
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
use serde_json::Value;
use std::path::Path;
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
/// Resolves the device and thread count (the classification code's rules).
pub(crate) fn setup(cfg: &SegmentConfig) -> Result<Device> {
    setup_device(&cfg.base_config())
}

/// Creates (or re-opens, when resuming) `runs/segment/<run>/` and saves the resolved config.
pub(crate) fn create_run_dir(
    cfg: &SegmentConfig,
    command: &str,
    config_path: &Path,
    explicit: Option<&Path>,
) -> Result<RunDir> {
    let place = RunPlace { out_dir: &cfg.out_dir, task: "segment", name: &cfg.run_name };
    RunDir::create_at(place, command, config_path, explicit, &cfg.to_yaml())
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
/// `gqcim segment-quantize` / `segment-finetune`: one method and level count on the whole
/// test set (engine::quantize).
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
    crate::engine::quantize::run(&base, &harness, device, &yaml, checkpoint, run, finetune)
}
