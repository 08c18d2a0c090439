//! Object detection on Fashion-MNIST scenes (or a dataset on disk) with the anchor-free
//! detector of `nets::yolo`. The folder holds the task-only pieces; training, evaluation,
//! quantization and the grid are the engine's, reached through `task::DetectHarness`:
//! `config` (the YAML), `boxes` (grid, box coding, IoU, NMS, post-processing), `loss`
//! (assignment and loss), `eval` (predictions scored as mAP), `metrics` (VOC and COCO mAP),
//! `draw` (pictures for TensorBoard), `own` (datasets on disk), `task` (the engine's `Task`);
//! this file has the commands.
//!
//! - Assignment (FCOS, Tian et al. ICCV 2019, sec. 3.2 and its centre sampling): a cell is
//!   positive for a ground-truth box when its centre lies inside the box, within `radius`
//!   strides of the box centre, and on the level whose size range holds the box's longer
//!   side (level i takes sides in (ratio * s_{i-1}, ratio * s_i], the last level everything
//!   above); a cell claimed by several boxes takes the smallest.
//! - Loss (YOLOX, Ge et al. 2021, sec. 2.1): GIoU (Rezatofighi et al., CVPR 2019) on the
//!   positives' decoded boxes + BCE objectness on every cell + BCE one-hot classification on
//!   the positives, each summed and divided by the number of positives. Everything runs on
//!   batched tensors; ground truth comes padded as [b, max_items, 5] (class -1 = padding).
//! - Inference: score = sigmoid(obj) * sigmoid(cls) per cell and class; the top-k
//!   (cell, class) pairs above the score threshold go through greedy class-wise NMS, whose
//!   IoU matrix is computed on the tensor side (one [b, k, k] tensor per batch, one host copy)
//!   and whose greedy pass, over at most k candidates per image, runs on the host.
//! - Metrics: Pascal VOC all-point mAP@0.5 (the primary metric, as a fraction) and COCO
//!   mAP@[.5:.95] via `metrics`, on a test scene set fixed by `data.test_seed`.
//! - Data: generated scenes by default; `data.dataset: voc | yolo | coco` reads a dataset on
//!   disk instead (`own`: letterboxed RGB cache, flip + zoom augmentation). The scene
//!   path computes exactly what it computed before own datasets existed.
pub mod boxes;
pub mod config;
pub mod draw;
pub mod eval;
pub mod loss;
pub mod metrics;
pub mod own;
pub mod task;
use crate::engine::task::Task;
use crate::error::Result;
use crate::run::{setup_device, RunDir, RunPlace};
pub use boxes::{
    batched_nms, decode, decode_boxes, encode_boxes, giou, nms, pairwise_iou, postprocess, Grid,
};
pub use config::{DetectConfig, DetectDataConfig, DetectEvalConfig, DetectLossConfig};
pub use draw::{detection_legend, draw_image, draw_scene, legend_of};
pub(crate) use draw::{log_detections, scene_pictures};
pub(crate) use eval::metrics_json;
pub use eval::{evaluate, ground_truth, predict, score, DetEval};
pub use loss::{assign, detection_loss, LossParts, Targets};
use serde_json::Value;
use std::path::Path;
pub use task::{load_items, scene_input, test_scenes, train_pool, DetectHarness};

/// The scenes' class names as owned strings (what own datasets give).
pub fn fmnist_names() -> Vec<String> {
    FMNIST_CLASSES.iter().map(|s| s.to_string()).collect()
}

/// Fashion-MNIST class names, for results.json.
pub const FMNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// `gqcim detect-quantize` / `detect-finetune`: one method and level count on the whole
/// test set (engine::quantize).
pub fn quantize(
    cfg: &DetectConfig,
    config_path: &Path,
    checkpoint: &Path,
    run_dir: Option<&Path>,
    finetune: bool,
) -> Result<Value> {
    let base = cfg.base_config();
    let device = setup_device(&base)?;
    let harness = DetectHarness::new(cfg, device)?;
    let command = if finetune { "finetune" } else { "quantize" };
    let run = create_run_dir(cfg, command, config_path, run_dir)?;
    let yaml = cfg.to_yaml();
    crate::engine::quantize::run(&base, &harness, device, &yaml, checkpoint, run, finetune)
}

/// Creates (or re-opens) `<out_dir>/detect/<run>/` and saves the resolved config.
pub fn create_run_dir(
    cfg: &DetectConfig,
    command: &str,
    config_path: &Path,
    explicit: Option<&Path>,
) -> Result<RunDir> {
    let place = RunPlace { out_dir: &cfg.out_dir, task: "detect", name: &cfg.run_name };
    RunDir::create_at(place, command, config_path, explicit, &cfg.to_yaml())
}

/// Trains the detector from scratch (or resumes a run folder) through the engine's loop.
pub fn train(
    cfg: &DetectConfig,
    config_path: &Path,
    run_dir: Option<&Path>,
    resume: bool,
) -> Result<Value> {
    cfg.validate()?;
    let device = setup_device(&cfg.base_config())?;
    let mut task = DetectHarness::new(cfg, device)?;
    crate::engine::train::train(&mut task, device, config_path, run_dir, resume)
}

/// `gqcim detect-eval` (and `--analog`): a checkpoint on the test set, through the engine.
pub fn eval(
    cfg: &DetectConfig,
    config_path: &Path,
    checkpoint_path: &Path,
    run_dir: Option<&Path>,
) -> Result<Value> {
    cfg.validate()?;
    let device = setup_device(&cfg.base_config())?;
    let task = DetectHarness::load(cfg, device, false)?;
    let net = task.load_network(&cfg.base_config(), checkpoint_path, device)?;
    let run = create_run_dir(cfg, "eval", config_path, run_dir)?;
    crate::engine::evaluate::evaluate(&task, &net, checkpoint_path, run, device)
}
