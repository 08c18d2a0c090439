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
use crate::run::setup_device;
use crate::tasks::Purpose;
pub use boxes::{
    batched_nms, decode, decode_boxes, encode_boxes, giou, nms, pairwise_iou, postprocess, Grid,
};
pub use config::{DetectConfig, DetectDataConfig, DetectEvalConfig, DetectLossConfig};
pub use draw::{detection_legend, draw_image, draw_scene, legend_of};
pub(crate) use draw::{log_detections, scene_pictures};
pub(crate) use eval::metrics_json;
pub use eval::{evaluate, ground_truth, predict, score, DetEval};
pub use loss::{assign, detection_loss, LossParts, Targets};
pub use task::{load_items, scene_input, test_scenes, train_pool, DetectHarness};
use tch::Device;

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

/// The detection task opened for `purpose` (tasks::Purpose), and its device.
pub fn open(cfg: &DetectConfig, purpose: Purpose) -> Result<(Box<dyn Task>, Device)> {
    cfg.validate()?;
    let device = setup_device(&cfg.base_config())?;
    let mut task = DetectHarness::load(cfg, device, purpose != Purpose::Eval)?;
    if purpose == Purpose::Grid && cfg.compare.eval_limit > 0 {
        task.limit_test(cfg.compare.eval_limit);
    }
    Ok((Box::new(task), device))
}
