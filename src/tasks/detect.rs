//! Object detection on Fashion-MNIST scenes with the anchor-free detector of `nets::yolo`:
//! target assignment, loss, decoding, class-wise NMS, mAP evaluation, the training command
//! (checkpoints with resume, TensorBoard, results.json) and the `Task` through which
//! quantization, fine-tuning and the comparison grid reach detection.
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
//!   mAP@[.5:.95] via `detect_metrics`, on a test scene set fixed by `data.test_seed`.
//! - Data: generated scenes by default; `data.dataset: voc | yolo | coco` reads a dataset on
//!   disk instead (`detect_own`: letterboxed RGB cache, flip + zoom augmentation). The scene
//!   path computes exactly what it computed before own datasets existed.
use super::detect_metrics::{coco_map, voc_map, Detection, GroundTruth};
use super::detect_own::{self, OwnData};
use crate::checkpoint::load_strict;
use crate::config::{
    AnalogConfig, CompareConfig, Config, DataConfig, DeviceChoice, FinetuneConfig, QuantConfig,
    Task as TaskKind, TrainConfig, TrainNoiseConfig,
};
use crate::data::detection_sets::{DetDataset, DetSplit};
use crate::data::rgb::InputNorm;
use crate::data::scenes::{generate, SceneBox, SceneConfig, SceneSet};
use crate::data::{self, Dataset};
use crate::engine::schedule::epoch_seed;
use crate::engine::task::Task;
use crate::engine::task::{Loss, Metrics, PerEpoch, TrainSetup};
use crate::error::{invalid, Result};
use crate::glance::picture::{
    dashed_outline, legend, outline, stack, text_size, Picture, Swatch, CLASS_COLOURS,
};
use crate::nets::yolo::{build_detector, YoloConfig};
use crate::nets::Network;
use crate::run::{setup_device, RunDir, RunPlace};
use crate::tb::Tb;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Reduction, Tensor};

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

// ---------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------

/// The detection experiment: one self-contained config (seed, device, data, model, training,
/// loss, evaluation), read from YAML with `--set` overrides like the main `Config`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Fixes the train scene pools, data order and initialisation.
    pub seed: u64,
    pub device: DeviceChoice,
    /// libtorch intra-op threads; 0 keeps libtorch's default.
    pub threads: usize,
    /// Run folders go to `<out_dir>/detect/<run_name>/`.
    pub out_dir: PathBuf,
    /// Defaults to `<config stem>-<command>-<timestamp>`.
    pub run_name: Option<String>,
    pub data: DetectDataConfig,
    pub model: YoloConfig,
    pub train: TrainConfig,
    pub loss: DetectLossConfig,
    pub eval: DetectEvalConfig,
    /// Quantization, fine-tuning, crossbar and comparison-grid sections, read as in the
    /// classification config; `detect-compare` runs the grid on the reference checkpoint.
    pub quant: QuantConfig,
    pub finetune: FinetuneConfig,
    pub analog: AnalogConfig,
    pub train_noise: TrainNoiseConfig,
    pub compare: CompareConfig,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            seed: 0,
            device: DeviceChoice::Auto,
            threads: 0,
            out_dir: PathBuf::from("runs"),
            run_name: None,
            data: DetectDataConfig::default(),
            model: YoloConfig::default(),
            train: TrainConfig {
                epochs: 20,
                batch_size: 64,
                lr: 0.05,
                weight_decay: 5e-4,
                warmup_epochs: 1.0,
                histogram_every: 5,
                ..TrainConfig::default()
            },
            loss: DetectLossConfig::default(),
            eval: DetectEvalConfig::default(),
            quant: QuantConfig::default(),
            finetune: FinetuneConfig::default(),
            analog: AnalogConfig::default(),
            train_noise: TrainNoiseConfig::default(),
            compare: CompareConfig::default(),
        }
    }
}

/// The data section. `dataset: scenes` (the default) composes Fashion-MNIST scenes; `voc`,
/// `yolo` and `coco` read a dataset on disk (`tasks::detect_own`, layouts in
/// `data::detection_sets`). The own-dataset keys are optional and left out of the saved
/// config when unset, so scene configs save, hash and resume exactly as before.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectDataConfig {
    #[serde(skip_serializing_if = "is_scenes")]
    pub dataset: DetDataset,
    /// Own datasets: the dataset folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Split names in the dataset's convention (VOC/YOLO: train, val; COCO: train2017,
    /// val2017 when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_split: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_split: Option<String>,
    /// Class names: VOC's (default: the 20 VOC classes); for YOLO and COCO a check against
    /// the dataset's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// Own datasets: side of the square, letterboxed input (default 320).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_size: Option<i64>,
    /// Own datasets: per-channel statistics on the [0, 1] scale (default ImageNet's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub std: Option<Vec<f64>>,
    /// Own datasets: random left-right flips of image and boxes (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub horizontal_flip: Option<bool>,
    /// Own datasets: zoom factors drawn from [1 - j, 1 + j] (default 0.2; 0 = off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_jitter: Option<f64>,
    /// Folder with the Fashion-MNIST IDX files the scenes are composed from.
    pub fmnist_root: PathBuf,
    /// Canvas, items per scene, sizes, background; `train_scenes` is the size of a training
    /// pool, `test_scenes` the size of the fixed test set.
    pub scenes: SceneConfig,
    /// Seed of the test scene set, separate from `seed` so that every run is scored on the
    /// same scenes.
    pub test_seed: u64,
    /// A fresh training pool every n epochs (0 = one pool for the whole run).
    pub regenerate_every: usize,
}

impl Default for DetectDataConfig {
    fn default() -> Self {
        DetectDataConfig {
            dataset: DetDataset::Scenes,
            root: None,
            train_split: None,
            test_split: None,
            classes: None,
            input_size: None,
            mean: None,
            std: None,
            horizontal_flip: None,
            scale_jitter: None,
            fmnist_root: PathBuf::from("/usr/share/datasets/fashion-mnist"),
            scenes: SceneConfig::default(),
            test_seed: 20_240_601,
            regenerate_every: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectLossConfig {
    pub box_weight: f64,
    pub obj_weight: f64,
    pub cls_weight: f64,
    /// Centre sampling radius in strides (FCOS 1.5, YOLOX 2.5).
    pub center_radius: f64,
    /// Level i takes boxes whose longer side is in (ratio * s_{i-1}, ratio * s_i].
    pub size_ratio: f64,
}

impl Default for DetectLossConfig {
    fn default() -> Self {
        DetectLossConfig {
            box_weight: 5.0,
            obj_weight: 1.0,
            cls_weight: 1.0,
            center_radius: 1.5,
            size_ratio: 6.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectEvalConfig {
    pub batch_size: i64,
    /// Candidates below this score are dropped before NMS.
    pub score_threshold: f64,
    /// IoU above which NMS suppresses a lower-scoring box of the same class.
    pub nms_iou: f64,
    /// Detections kept per image (COCO scores the top 100).
    pub max_dets: usize,
    /// (cell, class) candidates per image entering NMS.
    pub pre_nms_top_k: i64,
    /// Test scenes drawn with their detections into TensorBoard each epoch.
    pub tb_images: usize,
    /// Detections below this score are not drawn.
    pub draw_score: f64,
}

impl Default for DetectEvalConfig {
    fn default() -> Self {
        DetectEvalConfig {
            batch_size: 256,
            score_threshold: 0.01,
            nms_iou: 0.5,
            max_dets: 100,
            pre_nms_top_k: 200,
            tb_images: 4,
            draw_score: 0.3,
        }
    }
}

/// The first own-dataset key set on a scenes config (a likely mistake: it would be ignored).
fn own_keys_set(d: &DetectDataConfig) -> Option<&'static str> {
    let set = [
        ("root", d.root.is_some()),
        ("train_split", d.train_split.is_some()),
        ("test_split", d.test_split.is_some()),
        ("classes", d.classes.is_some()),
        ("input_size", d.input_size.is_some()),
        ("mean", d.mean.is_some()),
        ("std", d.std.is_some()),
        ("horizontal_flip", d.horizontal_flip.is_some()),
        ("scale_jitter", d.scale_jitter.is_some()),
    ];
    set.iter().find(|(_, on)| *on).map(|(k, _)| *k)
}

fn is_scenes(d: &DetDataset) -> bool {
    *d == DetDataset::Scenes
}

fn in_range<T: PartialOrd + std::fmt::Display>(field: &str, v: T, lo: T, hi: T) -> Result<()> {
    if v < lo || v > hi || v.partial_cmp(&v).is_none() {
        return Err(invalid(field, format!("expected a value in [{lo}, {hi}], got {v}")));
    }
    Ok(())
}

impl DetectConfig {
    /// The validation pass: every range check names its field.
    pub fn validate(&self) -> Result<()> {
        in_range("threads", self.threads, 0, 1024)?;
        self.data.scenes.validate("data.scenes")?;
        self.model.validate("model")?;
        let coarsest = self.model.strides().last().copied().unwrap_or(1);
        if self.data.dataset != DetDataset::Scenes {
            self.validate_own(coarsest)?;
        } else if let Some(key) = own_keys_set(&self.data) {
            return Err(invalid(
                format!("data.{key}"),
                "is read only for a dataset on disk; set data.dataset to voc, yolo or coco",
            ));
        } else if self.data.scenes.canvas % coarsest != 0 {
            return Err(invalid(
                "data.scenes.canvas",
                format!(
                    "must be a multiple of the coarsest stride {coarsest} (model.levels {:?})",
                    self.model.levels
                ),
            ));
        }
        if self.data.dataset == DetDataset::Scenes && self.model.in_channels != 1 {
            return Err(invalid("model.in_channels", "scenes are single-channel: expected 1"));
        }
        if self.data.dataset == DetDataset::Scenes && self.model.num_classes < 10 {
            return Err(invalid(
                "model.num_classes",
                format!("scenes hold the 10 Fashion-MNIST classes, got {}", self.model.num_classes),
            ));
        }
        in_range("data.scenes.train_scenes", self.data.scenes.train_scenes, 1, 10_000_000)?;
        in_range("data.scenes.test_scenes", self.data.scenes.test_scenes, 1, 10_000_000)?;
        let t = &self.train;
        in_range("train.epochs", t.epochs, 1, 100_000)?;
        in_range("train.batch_size", t.batch_size, 2, 1 << 20)?;
        if !(t.lr > 0.0 && t.lr <= 10.0) {
            return Err(invalid("train.lr", format!("expected a value in (0, 10], got {}", t.lr)));
        }
        in_range("train.momentum", t.momentum, 0.0, 0.999)?;
        in_range("train.weight_decay", t.weight_decay, 0.0, 1.0)?;
        in_range("train.warmup_epochs", t.warmup_epochs, 0.0, t.epochs as f64)?;
        in_range("train.nan_check_every", t.nan_check_every, 1, 1_000_000)?;
        if t.nesterov && t.momentum == 0.0 {
            return Err(invalid("train.nesterov", "Nesterov momentum needs train.momentum > 0"));
        }
        if t.label_smoothing != 0.0 {
            return Err(invalid("train.label_smoothing", "not used by detection; leave it at 0"));
        }
        let l = &self.loss;
        for (k, v) in [("box_weight", l.box_weight), ("obj_weight", l.obj_weight)] {
            in_range(&format!("loss.{k}"), v, 0.0, 1000.0)?;
        }
        in_range("loss.cls_weight", l.cls_weight, 0.0, 1000.0)?;
        in_range("loss.center_radius", l.center_radius, 0.5, 100.0)?;
        in_range("loss.size_ratio", l.size_ratio, 0.5, 1000.0)?;
        let e = &self.eval;
        in_range("eval.batch_size", e.batch_size, 1, 1 << 20)?;
        in_range("eval.score_threshold", e.score_threshold, 0.0, 1.0)?;
        in_range("eval.nms_iou", e.nms_iou, 0.0, 1.0)?;
        in_range("eval.max_dets", e.max_dets, 1, 10_000)?;
        in_range("eval.pre_nms_top_k", e.pre_nms_top_k, 1, 100_000)?;
        in_range("eval.draw_score", e.draw_score, 0.0, 1.0)?;
        self.base_config().validate_deploy()
    }

    /// The own-dataset keys (the class count is checked against the dataset at load).
    fn validate_own(&self, coarsest: i64) -> Result<()> {
        let d = &self.data;
        if d.root.is_none() {
            return Err(invalid("data.root", format!("{:?} needs the dataset folder", d.dataset)));
        }
        let size = d.input_size.unwrap_or(super::detect_own::DEFAULT_INPUT_SIZE);
        in_range("data.input_size", size, 32, 2048)?;
        if size % coarsest != 0 {
            return Err(invalid(
                "data.input_size",
                format!("must be a multiple of the coarsest stride {coarsest}, got {size}"),
            ));
        }
        in_range("data.scale_jitter", d.scale_jitter.unwrap_or(0.0), 0.0, 0.9)?;
        crate::data::rgb::check_stats(d.mean.as_deref(), d.std.as_deref(), self.model.in_channels)
    }

    /// Reads a YAML config, applies `key.path=value` overrides, parses and validates it.
    pub fn load(path: &Path, overrides: &[String]) -> Result<DetectConfig> {
        crate::config::load_validated(path, overrides, DetectConfig::validate)
    }

    /// As `load`, from text; `origin` names the source in errors.
    pub fn from_yaml_str(text: &str, origin: &str, overrides: &[String]) -> Result<DetectConfig> {
        crate::config::parse_validated(text, origin, overrides, DetectConfig::validate)
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// The main `Config` fields shared with the other tasks (device, threads, seed), for the
    /// crate's device set-up and fine-tuning helpers.
    pub fn base_config(&self) -> Config {
        Config {
            seed: self.seed,
            device: self.device,
            threads: self.threads,
            out_dir: self.out_dir.clone(),
            run_name: self.run_name.clone(),
            task: TaskKind::Detect,
            quant: self.quant.clone(),
            finetune: self.finetune.clone(),
            analog: self.analog.clone(),
            train_noise: self.train_noise.clone(),
            compare: self.compare.clone(),
            ..Config::default()
        }
    }

    fn fmnist(&self) -> DataConfig {
        DataConfig { root: self.data.fmnist_root.clone(), ..DataConfig::default() }
    }
}

// ---------------------------------------------------------------------------------------
// Grid, box coding, assignment and loss
// ---------------------------------------------------------------------------------------

/// Per-cell facts of the prediction layout, in the order of the network output.
#[derive(Debug)]
pub struct Grid {
    /// Cell centres in input pixels [N, 2] (x, y).
    pub centres: Tensor,
    /// Stride of each cell's level [N].
    pub strides: Tensor,
    /// Size range of the level (longer box side in (lo, hi]) [N] each.
    pub size_lo: Tensor,
    pub size_hi: Tensor,
    pub num_classes: i64,
    /// Input height and width.
    pub height: i64,
    pub width: i64,
}

impl Grid {
    pub fn new(
        model: &YoloConfig,
        loss: &DetectLossConfig,
        h: i64,
        w: i64,
        device: Device,
    ) -> Grid {
        let (centres, strides) = model.grid(h, w, device);
        let s = model.strides();
        let (mut lo, mut hi) = (Vec::new(), Vec::new());
        for (i, &si) in s.iter().enumerate() {
            let n = (h / si) * (w / si);
            let low = if i == 0 { 0.0 } else { loss.size_ratio * s[i - 1] as f64 };
            let high = if i + 1 == s.len() { f64::INFINITY } else { loss.size_ratio * si as f64 };
            lo.push(Tensor::full([n], low, (Kind::Float, device)));
            hi.push(Tensor::full([n], high, (Kind::Float, device)));
        }
        Grid {
            centres,
            strides,
            size_lo: Tensor::cat(&lo, 0),
            size_hi: Tensor::cat(&hi, 0),
            num_classes: model.num_classes,
            height: h,
            width: w,
        }
    }

    pub fn cells(&self) -> i64 {
        self.strides.size()[0]
    }
}

/// Box distances (l, t, r, b) in strides, through softplus: raw [..., N, 4] -> boxes
/// [..., N, 4] as (x1, y1, x2, y2) in input pixels.
pub fn decode_boxes(raw_box: &Tensor, centres: &Tensor, strides: &Tensor) -> Tensor {
    let d = raw_box.softplus() * strides.unsqueeze(-1);
    let (cx, cy) = (centres.select(-1, 0), centres.select(-1, 1));
    Tensor::stack(
        &[
            &cx - d.select(-1, 0),
            &cy - d.select(-1, 1),
            &cx + d.select(-1, 2),
            &cy + d.select(-1, 3),
        ],
        -1,
    )
}

/// The inverse of `decode_boxes`: boxes [..., 4] -> raw distances [..., 4] (boxes must hold
/// their cell centres; distances are floored at 1e-4 strides).
pub fn encode_boxes(boxes: &Tensor, centres: &Tensor, strides: &Tensor) -> Tensor {
    let (cx, cy) = (centres.select(-1, 0), centres.select(-1, 1));
    let d = Tensor::stack(
        &[
            &cx - boxes.select(-1, 0),
            &cy - boxes.select(-1, 1),
            boxes.select(-1, 2) - &cx,
            boxes.select(-1, 3) - &cy,
        ],
        -1,
    ) / strides.unsqueeze(-1);
    // softplus^-1(v) = log(expm1(v)).
    d.clamp_min(1e-4).expm1().log()
}

/// The decoded prediction: boxes [b, N, 4] and scores sigmoid(obj) * sigmoid(cls) [b, N, C].
pub fn decode(raw: &Tensor, grid: &Grid) -> (Tensor, Tensor) {
    let boxes = decode_boxes(&raw.narrow(-1, 0, 4), &grid.centres, &grid.strides);
    let obj = raw.narrow(-1, 4, 1).sigmoid();
    let cls = raw.narrow(-1, 5, grid.num_classes).sigmoid();
    (boxes, obj * cls)
}

/// Training targets of every cell.
#[derive(Debug)]
pub struct Targets {
    /// [b, N] bool.
    pub positive: Tensor,
    /// Assigned box [b, N, 4] (meaningful where positive).
    pub boxes: Tensor,
    /// Assigned class [b, N] int64, -1 where negative.
    pub classes: Tensor,
}

/// Centre-sampling assignment. gt: [b, G, 5] (class, x1, y1, x2, y2), class -1 = padding.
pub fn assign(gt: &Tensor, grid: &Grid, loss: &DetectLossConfig) -> Targets {
    let gt = gt.to_kind(Kind::Float);
    let cls = gt.select(-1, 0).unsqueeze(1); // [b, 1, G]
    let c = |i: i64| gt.select(-1, i).unsqueeze(1);
    let (x1, y1, x2, y2) = (c(1), c(2), c(3), c(4));
    let cx = grid.centres.select(-1, 0).view([1, -1, 1]); // [1, N, 1]
    let cy = grid.centres.select(-1, 1).view([1, -1, 1]);
    let inside =
        (&cx - &x1).minimum(&(&cy - &y1)).minimum(&(&x2 - &cx)).minimum(&(&y2 - &cy)).gt(0.0);
    let radius = (&grid.strides * loss.center_radius).view([1, -1, 1]);
    let gcx = (&x1 + &x2) * 0.5;
    let gcy = (&y1 + &y2) * 0.5;
    let near =
        (&cx - gcx).abs().lt_tensor(&radius).logical_and(&(&cy - gcy).abs().lt_tensor(&radius));
    let side = (&x2 - &x1).maximum(&(&y2 - &y1));
    let in_level = side
        .gt_tensor(&grid.size_lo.view([1, -1, 1]))
        .logical_and(&side.le_tensor(&grid.size_hi.view([1, -1, 1])));
    let candidate = inside.logical_and(&near).logical_and(&in_level).logical_and(&cls.ge(0.0));
    let area = ((&x2 - &x1) * (&y2 - &y1)).expand(candidate.size(), false);
    let area = area.masked_fill(&candidate.logical_not(), f64::INFINITY);
    let (best, idx) = area.min_dim(2, false); // [b, N]
    let positive = best.isfinite();
    let gt_boxes = gt.narrow(-1, 1, 4); // [b, G, 4]
    let n = grid.cells();
    let b = gt.size()[0];
    let boxes = gt_boxes.gather(1, &idx.unsqueeze(-1).expand([b, n, 4], false), false);
    let classes = gt
        .select(-1, 0)
        .gather(1, &idx, false)
        .to_kind(Kind::Int64)
        .masked_fill(&positive.logical_not(), -1);
    Targets { positive, boxes, classes }
}

/// Generalized IoU of paired boxes a, b: [..., 4] -> [...].
pub fn giou(a: &Tensor, b: &Tensor) -> Tensor {
    let s = |t: &Tensor, i: i64| t.select(-1, i);
    let area = |t: &Tensor| (s(t, 2) - s(t, 0)).clamp_min(0.0) * (s(t, 3) - s(t, 1)).clamp_min(0.0);
    let iw = (s(a, 2).minimum(&s(b, 2)) - s(a, 0).maximum(&s(b, 0))).clamp_min(0.0);
    let ih = (s(a, 3).minimum(&s(b, 3)) - s(a, 1).maximum(&s(b, 1))).clamp_min(0.0);
    let inter = iw * ih;
    let union = area(a) + area(b) - &inter + 1e-7;
    let cw = s(a, 2).maximum(&s(b, 2)) - s(a, 0).minimum(&s(b, 0));
    let ch = s(a, 3).maximum(&s(b, 3)) - s(a, 1).minimum(&s(b, 1));
    let hull = cw * ch + 1e-7;
    &inter / &union - (&hull - &union) / hull
}

/// IoU of every box of a with every box of b: [..., n, 4] x [..., m, 4] -> [..., n, m].
pub fn pairwise_iou(a: &Tensor, b: &Tensor) -> Tensor {
    let a = a.unsqueeze(-2);
    let b = b.unsqueeze(-3);
    let s = |t: &Tensor, i: i64| t.select(-1, i);
    let iw = (s(&a, 2).minimum(&s(&b, 2)) - s(&a, 0).maximum(&s(&b, 0))).clamp_min(0.0);
    let ih = (s(&a, 3).minimum(&s(&b, 3)) - s(&a, 1).maximum(&s(&b, 1))).clamp_min(0.0);
    let inter = iw * ih;
    let area = |t: &Tensor| (s(t, 2) - s(t, 0)).clamp_min(0.0) * (s(t, 3) - s(t, 1)).clamp_min(0.0);
    let union = area(&a) + area(&b) - &inter;
    &inter / union.clamp_min(1e-9)
}

/// The loss and its parts (parts detached, for logging).
#[derive(Debug)]
pub struct LossParts {
    pub total: Tensor,
    pub boxes: Tensor,
    pub objectness: Tensor,
    pub classes: Tensor,
    /// Number of positive cells in the batch (int64 scalar).
    pub positives: Tensor,
}

/// The detection loss of raw predictions [b, N, 5 + C] against assigned targets.
pub fn detection_loss(raw: &Tensor, t: &Targets, grid: &Grid, cfg: &DetectLossConfig) -> LossParts {
    let positives = t.positive.sum(Kind::Int64);
    let norm = positives.to_kind(Kind::Float).clamp_min(1.0);
    let obj = raw.select(-1, 4).binary_cross_entropy_with_logits::<Tensor>(
        &t.positive.to_kind(raw.kind()),
        None,
        None,
        Reduction::Sum,
    ) / &norm;
    let pos = t.positive.nonzero(); // [P, 2] (image, cell)
    let (bi, ci) = (pos.select(1, 0), pos.select(1, 1));
    let raw_pos = raw.index(&[Some(&bi), Some(&ci)]); // [P, 5 + C]
    let pred_boxes = decode_boxes(
        &raw_pos.narrow(-1, 0, 4),
        &grid.centres.index_select(0, &ci),
        &grid.strides.index_select(0, &ci),
    );
    let target_boxes = t.boxes.index(&[Some(&bi), Some(&ci)]);
    let boxes = giou(&pred_boxes, &target_boxes).neg().g_add_scalar(1.0).sum(Kind::Float) / &norm;
    let target_cls = t.classes.index(&[Some(&bi), Some(&ci)]).one_hot(grid.num_classes);
    let classes =
        raw_pos.narrow(-1, 5, grid.num_classes).binary_cross_entropy_with_logits::<Tensor>(
            &target_cls.to_kind(raw.kind()),
            None,
            None,
            Reduction::Sum,
        ) / &norm;
    let total = &boxes * cfg.box_weight + &obj * cfg.obj_weight + &classes * cfg.cls_weight;
    LossParts {
        total,
        boxes: boxes.detach(),
        objectness: obj.detach(),
        classes: classes.detach(),
        positives,
    }
}

/// Scene images uint8 [b, 1, h, w] -> normalised float input (Fashion-MNIST statistics).
pub fn scene_input(images: &Tensor) -> Tensor {
    let (m, s) = data::default_stats(crate::config::DatasetKind::FashionMnist);
    (images.to_kind(Kind::Float) / 255.0 - m[0]) / s[0]
}

// ---------------------------------------------------------------------------------------
// Inference: top-k candidates and class-wise NMS
// ---------------------------------------------------------------------------------------

/// Greedy class-wise NMS over candidates sorted by descending score, for a batch.
///
/// boxes [b, k, 4], classes [b, k], valid [b, k] (bool; candidates must be sorted so that
/// the valid ones of an image come first, by descending score). Returns, per image, the
/// kept candidate indices in score order, at most `max_keep` of them. The IoU matrix is
/// computed on the tensor side; the greedy pass reads it once per batch on the host.
pub fn batched_nms(
    boxes: &Tensor,
    classes: &Tensor,
    valid: &Tensor,
    iou_threshold: f64,
    max_keep: usize,
) -> Vec<Vec<usize>> {
    let size = boxes.size();
    let (b, k) = (size[0] as usize, size[1] as usize);
    if k == 0 {
        return vec![Vec::new(); b];
    }
    let same = classes.unsqueeze(-1).eq_tensor(&classes.unsqueeze(-2));
    let overlap = pairwise_iou(boxes, boxes).gt(iou_threshold).logical_and(&same);
    let overlap =
        Vec::<u8>::try_from(overlap.to_kind(Kind::Uint8).to_device(Device::Cpu).view([-1]))
            .unwrap_or_default();
    let valid = Vec::<u8>::try_from(valid.to_kind(Kind::Uint8).to_device(Device::Cpu).view([-1]))
        .unwrap_or_default();
    (0..b)
        .map(|img| {
            let over = &overlap[img * k * k..(img + 1) * k * k];
            let mut kept: Vec<usize> = Vec::new();
            for i in 0..k {
                if valid[img * k + i] == 0 || kept.len() >= max_keep {
                    break;
                }
                if kept.iter().all(|&j| over[i * k + j] == 0) {
                    kept.push(i);
                }
            }
            kept
        })
        .collect()
}

/// Class-wise NMS of one image's boxes [n, 4], scores [n], classes [n]: the indices kept, by
/// descending score (overlapping boxes of different classes are both kept).
pub fn nms(boxes: &Tensor, scores: &Tensor, classes: &Tensor, iou_threshold: f64) -> Vec<i64> {
    let n = scores.size()[0];
    let (_, order) = scores.sort(0, true);
    let keep = batched_nms(
        &boxes.index_select(0, &order).unsqueeze(0),
        &classes.index_select(0, &order).unsqueeze(0),
        &Tensor::ones([1, n], (Kind::Bool, scores.device())),
        iou_threshold,
        usize::MAX,
    );
    let order = Vec::<i64>::try_from(order.to_device(Device::Cpu)).unwrap_or_default();
    keep[0].iter().map(|&i| order[i]).collect()
}

/// Detections of a batch of raw predictions [b, N, 5 + C]; image ids start at `first_id`.
pub fn postprocess(
    raw: &Tensor,
    grid: &Grid,
    e: &DetectEvalConfig,
    first_id: u64,
) -> Vec<Vec<Detection>> {
    let (boxes, scores) = decode(raw, grid);
    let (h, w) = (grid.height as f64, grid.width as f64);
    let boxes = Tensor::stack(
        &[
            boxes.select(-1, 0).clamp(0.0, w),
            boxes.select(-1, 1).clamp(0.0, h),
            boxes.select(-1, 2).clamp(0.0, w),
            boxes.select(-1, 3).clamp(0.0, h),
        ],
        -1,
    );
    let b = scores.size()[0];
    let c = grid.num_classes;
    let flat = scores.view([b, -1]);
    let k = e.pre_nms_top_k.min(flat.size()[1]);
    let (top, idx) = flat.topk(k, 1, true, true);
    let cell = idx.floor_divide_scalar(c);
    let class = idx.fmod(c);
    let cand = boxes.gather(1, &cell.unsqueeze(-1).expand([b, k, 4], false), false);
    let valid = top.ge(e.score_threshold).logical_and(&top.gt(0.0));
    let keep = batched_nms(&cand, &class, &valid, e.nms_iou, e.max_dets);
    let host = |t: &Tensor| t.to_device(Device::Cpu).contiguous().view([-1]);
    let top = Vec::<f32>::try_from(host(&top.to_kind(Kind::Float))).unwrap_or_default();
    let class = Vec::<i64>::try_from(host(&class)).unwrap_or_default();
    let cand = Vec::<f32>::try_from(host(&cand.to_kind(Kind::Float))).unwrap_or_default();
    let k = k as usize;
    keep.iter()
        .enumerate()
        .map(|(img, kept)| {
            kept.iter()
                .map(|&i| {
                    let o = img * k + i;
                    Detection {
                        image_id: first_id + img as u64,
                        class: class[o] as usize,
                        score: top[o] as f64,
                        bbox: [0, 1, 2, 3].map(|j| cand[o * 4 + j] as f64),
                    }
                })
                .collect()
        })
        .collect()
}

/// Ground truth of a scene set, image ids = scene indices.
pub fn ground_truth(boxes: &[Vec<SceneBox>]) -> Vec<GroundTruth> {
    boxes
        .iter()
        .enumerate()
        .flat_map(|(i, bs)| {
            bs.iter().map(move |b| GroundTruth {
                image_id: i as u64,
                class: b.class as usize,
                bbox: [b.x1, b.y1, b.x2, b.y2].map(f64::from),
                difficult: false,
                iscrowd: false,
                area: None,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------

/// mAP of a network on a scene set.
#[derive(Debug, Clone, Serialize)]
pub struct DetEval {
    /// Pascal VOC all-point mAP at IoU 0.5 (the primary metric).
    pub map50: f64,
    /// COCO mAP@[.5:.95], @.5 and @.75.
    pub coco_map: f64,
    pub coco_map50: f64,
    pub coco_map75: f64,
    /// VOC AP@0.5 per class (None for a class absent from the set).
    pub per_class_ap50: Vec<Option<f64>>,
    pub detections: usize,
    pub images: i64,
    pub seconds: f64,
}

/// Runs the network over uint8 images [n, c, h, w] in batches (eval mode, no grad).
pub fn predict(
    net: &Network,
    grid: &Grid,
    images: &Tensor,
    e: &DetectEvalConfig,
    norm: &InputNorm,
) -> Result<Vec<Vec<Detection>>> {
    let n = images.size()[0];
    let device = net.vs.device();
    let mut out = Vec::with_capacity(n as usize);
    tch::no_grad(|| -> Result<()> {
        let mut i = 0;
        while i < n {
            let b = e.batch_size.min(n - i);
            let x = norm.apply(&images.narrow(0, i, b).to_device(device));
            let raw = net.forward_t(&x, false);
            super::classify::check_finite_output(&raw, net, i)?;
            out.extend(postprocess(&raw, grid, e, i as u64));
            i += b;
        }
        Ok(())
    })?;
    Ok(out)
}

/// Scores detections against ground truth (VOC mAP@0.5 and COCO mAP).
pub fn score(dets: &[Vec<Detection>], gts: &[GroundTruth], num_classes: usize) -> DetEval {
    let flat: Vec<Detection> = dets.iter().flatten().copied().collect();
    let voc = voc_map(&flat, gts, num_classes, 0.5);
    let coco = coco_map(&flat, gts, num_classes);
    DetEval {
        map50: voc.map.max(0.0),
        coco_map: coco.map.max(0.0),
        coco_map50: coco.map50.max(0.0),
        coco_map75: coco.map75.max(0.0),
        per_class_ap50: voc.per_class_ap,
        detections: flat.len(),
        images: dets.len() as i64,
        seconds: 0.0,
    }
}

/// Predicts and scores a scene set; also returns the detections (for drawing).
pub fn evaluate(
    net: &Network,
    grid: &Grid,
    images: &Tensor,
    gts: &[GroundTruth],
    e: &DetectEvalConfig,
    norm: &InputNorm,
) -> Result<(DetEval, Vec<Vec<Detection>>)> {
    let start = Instant::now();
    // mAP over no scene, or over scenes without a single object, is undefined (VOC's
    // and pycocotools' -1), not 0%.
    if images.size()[0] == 0 {
        return Err(invalid("data.scenes.test_scenes", "the test set has no scenes"));
    }
    if gts.is_empty() {
        return Err(invalid(
            "data.scenes",
            "the test scenes hold no ground-truth box at all, so mAP is undefined",
        ));
    }
    let dets = predict(net, grid, images, e, norm)?;
    let mut res = score(&dets, gts, grid.num_classes as usize);
    res.seconds = start.elapsed().as_secs_f64();
    Ok((res, dets))
}

// ---------------------------------------------------------------------------------------
// Drawing (TensorBoard samples)
// ---------------------------------------------------------------------------------------

/// A grey scene [h * w] upscaled `scale` times: ground-truth boxes as black-and-white dashes
/// (visible on any background), detections scoring at least `min_score` as 2-px boxes in
/// their class colour with a `class score` tab (class colours: `picture::CLASS_COLOURS`).
pub fn draw_scene(
    gray: &[u8],
    h: usize,
    w: usize,
    scale: usize,
    gts: &[SceneBox],
    dets: &[Detection],
    min_score: f32,
) -> Picture {
    let names: Vec<String> = FMNIST_CLASSES.iter().map(|s| s.to_string()).collect();
    draw_image(gray, 1, (h, w), scale, gts, dets, min_score, &names)
}

/// [`draw_scene`] for `channels` planes (1: grey, 3: RGB, as [c, h, w] bytes) with the
/// dataset's class names on the tabs.
#[allow(clippy::too_many_arguments)]
pub fn draw_image(
    pixels: &[u8],
    channels: usize,
    (h, w): (usize, usize),
    scale: usize,
    gts: &[SceneBox],
    dets: &[Detection],
    min_score: f32,
    names: &[String],
) -> Picture {
    let mut img = Picture::new(w, h, [0, 0, 0]);
    let at = |c: usize, i: usize| pixels.get(c * h * w + i).copied().unwrap_or(0);
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let v = at(0, i);
            img.set(x, y, if channels == 3 { [v, at(1, i), at(2, i)] } else { [v, v, v] });
        }
    }
    let mut img = img.upscale(scale.max(1));
    let (hh, ww) = (img.h.max(1), img.w.max(1));
    let px = |v: f64, max: usize| ((v * scale as f64).round().max(0.0) as usize).min(max - 1);
    let corners = |b: [f64; 4]| (px(b[0], ww), px(b[1], hh), px(b[2], ww), px(b[3], hh));
    for g in gts {
        let (x1, y1, x2, y2) = corners([g.x1, g.y1, g.x2, g.y2].map(f64::from));
        dashed_outline(&mut img, x1, y1, x2, y2);
    }
    let shown: Vec<&Detection> = dets.iter().filter(|d| d.score >= f64::from(min_score)).collect();
    for d in shown.iter().rev() {
        let (x1, y1, x2, y2) = corners(d.bbox);
        outline(&mut img, x1, y1, x2, y2, CLASS_COLOURS[d.class % CLASS_COLOURS.len()], 2);
    }
    // Tabs after all boxes, so that no box crosses a label.
    for d in shown.iter().rev() {
        let (x1, y1, _, _) = corners(d.bbox);
        let colour = CLASS_COLOURS[d.class % CLASS_COLOURS.len()];
        let name = names.get(d.class).map_or("?", String::as_str);
        let label = format!("{name} {:.2}", d.score);
        let (tw, th) = text_size(&label, 12);
        let tab_h = th + 2;
        // Above the box, or inside it when the box touches the top edge.
        let ty = if y1 >= tab_h { y1 - tab_h } else { y1 + 2 };
        img.fill_rect(x1, ty, x1 + tw + 4, ty + tab_h, colour);
        let lum = 0.299 * colour[0] as f64 + 0.587 * colour[1] as f64 + 0.114 * colour[2] as f64;
        let ink = if lum > 140.0 { [0, 0, 0] } else { [255, 255, 255] };
        img.text(x1 as i32 + 2, ty as i32 + 1, &label, 12, ink);
    }
    img
}

/// The legend of detection pictures: ground-truth style, then one box colour per class.
pub fn detection_legend(width: usize) -> Picture {
    let names: Vec<String> = FMNIST_CLASSES.iter().map(|s| s.to_string()).collect();
    legend_of(&names, width)
}

/// The legend for a dataset's class names (colours repeat past `CLASS_COLOURS`).
pub fn legend_of(names: &[String], width: usize) -> Picture {
    let mut entries = vec![(Swatch::Dashed, "ground truth".to_string())];
    for (i, name) in names.iter().enumerate() {
        entries.push((Swatch::Box(CLASS_COLOURS[i % CLASS_COLOURS.len()]), name.to_string()));
    }
    entries.push((Swatch::Fill([255, 255, 255]), "tab: class score".to_string()));
    legend(&entries, width)
}

/// Scenes with ground truth and detections drawn, one picture per scene.
fn scene_pictures(
    scenes: &SceneSet,
    dets: &[Vec<Detection>],
    e: &DetectEvalConfig,
    names: &[String],
) -> Vec<Picture> {
    let n = scenes.len().min(dets.len() as i64);
    if n <= 0 {
        return Vec::new();
    }
    let size = scenes.images.size();
    let (c, h, w) = (size[1] as usize, size[2] as usize, size[3] as usize);
    let pixels = scenes.images.narrow(0, 0, n).to_device(Device::Cpu).contiguous().view([-1]);
    let pixels = Vec::<u8>::try_from(pixels).unwrap_or_default();
    // Scenes (grey) are drawn 3x as always; RGB inputs of own datasets are large already.
    let scale = if c == 1 { 3 } else { 1 };
    let plane = c * h * w;
    (0..n as usize)
        .map(|i| {
            let px = pixels.get(i * plane..(i + 1) * plane).unwrap_or(&[]);
            let (gts, min) = (&scenes.boxes[i], e.draw_score as f32);
            draw_image(px, c, (h, w), scale, gts, &dets[i], min, names)
        })
        .collect()
}

/// Draws the first `eval.tb_images` scenes with ground truth, detections and the legend as
/// `<prefix>/detections_<i>` images.
fn log_detections(
    tb: &mut Tb,
    scenes: &SceneSet,
    dets: &[Vec<Detection>],
    e: &DetectEvalConfig,
    (prefix, names): (&str, &[String]),
    step: usize,
) {
    let n = e.tb_images.min(dets.len()).min(scenes.len().max(0) as usize);
    if n == 0 {
        return;
    }
    let scenes = scenes.first(n);
    for (i, pic) in scene_pictures(&scenes, &dets[..n], e, names).iter().enumerate() {
        let pic = stack(pic, &legend_of(names, pic.w), 4);
        tb.image(&format!("{prefix}/detections_{i}"), &pic.to_chw(), pic.h, pic.w, step);
    }
}

// ---------------------------------------------------------------------------------------
// Data and the task harness
// ---------------------------------------------------------------------------------------

/// Fashion-MNIST train and test splits (CPU, uint8), the scenes' item sources.
pub fn load_items(cfg: &DetectConfig) -> Result<(Dataset, Dataset)> {
    let train = data::load_split(&cfg.fmnist(), true)?;
    let test = data::load_split(&cfg.fmnist(), false)?;
    crate::data::scenes::check_items(&train.images, &cfg.data.scenes, "training")?;
    crate::data::scenes::check_items(&test.images, &cfg.data.scenes, "test")?;
    Ok((train, test))
}

/// The fixed test scene set.
pub fn test_scenes(cfg: &DetectConfig, items: &Dataset) -> SceneSet {
    let s = &cfg.data.scenes;
    generate(&items.images, &items.labels, s, s.test_scenes, cfg.data.test_seed)
}

/// The training pool of an epoch: a function of (seed, epoch) only, so a resumed run sees
/// the pools an uninterrupted one would have.
pub fn train_pool(cfg: &DetectConfig, items: &Dataset, epoch: usize) -> SceneSet {
    let s = &cfg.data.scenes;
    let every = cfg.data.regenerate_every;
    let pool_epoch = if every == 0 { 0 } else { epoch - epoch % every };
    let seed = epoch_seed(cfg.seed ^ 0x005C_E7E5, pool_epoch) as u64;
    generate(&items.images, &items.labels, s, s.train_scenes, seed)
}

/// Detection as a task harness: the detection loss on a fixed training pool, VOC mAP@0.5 on
/// the test scenes.
pub struct DetectHarness {
    pub cfg: DetectConfig,
    pub grid: Grid,
    /// uint8 [n, 1, h, w] and padded boxes [n, max_items, 5], on the device.
    train_images: Tensor,
    train_targets: Tensor,
    pub test: SceneSet,
    pub test_gts: Vec<GroundTruth>,
    /// The dataset on disk (None: scenes) and its class names.
    pub own: Option<OwnData>,
    pub names: Vec<String>,
    /// Scenes: the Fashion-MNIST training items, the epoch whose pool is loaded, and the
    /// seconds spent composing pools (the training run's record).
    train_items: Option<Dataset>,
    pool_epoch: usize,
    scene_seconds: f64,
}

impl DetectHarness {
    /// Loads Fashion-MNIST, composes the training pool of epoch 0 and the test set; or reads
    /// the configured dataset from disk.
    pub fn new(cfg: &DetectConfig, device: Device) -> Result<DetectHarness> {
        Self::load(cfg, device, true)
    }

    /// `new`, or without reading or composing any training data (`training` false: eval).
    pub fn load(cfg: &DetectConfig, device: Device, training: bool) -> Result<DetectHarness> {
        if let Some(own) = OwnData::of(cfg) {
            let test = own.load_split(cfg, &own.test_split)?;
            let train = if training {
                own.load_split(cfg, &own.train_split)?
            } else {
                let none = test.images.narrow(0, 0, 0);
                DetSplit {
                    images: none,
                    boxes: vec![],
                    classes: test.classes.clone(),
                    files: vec![],
                }
            };
            let size = own.size;
            return Ok(DetectHarness {
                grid: Grid::new(&cfg.model, &cfg.loss, size, size, device),
                train_images: train.images.to_device(device),
                train_targets: detect_own::targets(&train).to_device(device),
                test: detect_own::scene_set(&test, device),
                test_gts: detect_own::ground_truth(&test),
                names: test.classes,
                own: Some(own),
                cfg: cfg.clone(),
                train_items: None,
                pool_epoch: 0,
                scene_seconds: 0.0,
            });
        }
        if !training {
            let test_items = data::load_split(&cfg.fmnist(), false)?;
            crate::data::scenes::check_items(&test_items.images, &cfg.data.scenes, "test")?;
            let test = test_scenes(cfg, &test_items);
            return Ok(Self::from_scenes(cfg, &test.first(0), test, device));
        }
        let (train_items, test_items) = load_items(cfg)?;
        let start = Instant::now();
        let train = train_pool(cfg, &train_items, 0);
        let test = test_scenes(cfg, &test_items);
        let mut h = Self::from_scenes(cfg, &train, test, device);
        h.scene_seconds = start.elapsed().as_secs_f64();
        h.train_items = Some(train_items);
        Ok(h)
    }

    /// From given scene sets (tests, or callers composing their own).
    pub fn from_scenes(
        cfg: &DetectConfig,
        train: &SceneSet,
        test: SceneSet,
        device: Device,
    ) -> Self {
        let canvas = cfg.data.scenes.canvas;
        let test_gts = ground_truth(&test.boxes);
        DetectHarness {
            grid: Grid::new(&cfg.model, &cfg.loss, canvas, canvas, device),
            train_images: train.images.to_device(device),
            train_targets: train.boxes_tensor(cfg.data.scenes.max_items).to_device(device),
            test: SceneSet {
                images: test.images.to_device(device),
                masks: test.masks,
                boxes: test.boxes,
            },
            test_gts,
            own: None,
            names: FMNIST_CLASSES.iter().map(|s| s.to_string()).collect(),
            cfg: cfg.clone(),
            train_items: None,
            pool_epoch: 0,
            scene_seconds: 0.0,
        }
    }

    /// Keeps the first `n` test scenes (the grid's `compare.eval_limit`); the ground truth
    /// keeps its difficult / crowd flags.
    pub fn limit_test(&mut self, n: usize) {
        self.test = self.test.first(n);
        let n = self.test.len().max(0) as u64;
        self.test_gts.retain(|g| g.image_id < n);
    }

    /// The input normalisation (scenes or the dataset's statistics).
    pub fn norm(&self) -> InputNorm {
        detect_own::input_norm(self.own.as_ref())
    }

    /// Full evaluation (VOC and COCO) on the harness's test scenes.
    pub fn evaluate_full(&self, net: &Network) -> Result<DetEval> {
        let (imgs, gts) = (&self.test.images, &self.test_gts);
        Ok(evaluate(net, &self.grid, imgs, gts, &self.cfg.eval, &self.norm())?.0)
    }
}

impl Task for DetectHarness {
    fn task(&self) -> &'static str {
        "detect"
    }

    fn metric_name(&self) -> &'static str {
        "mAP@0.5 (%)"
    }

    /// The detector's shape comes from the harness's `DetectConfig`; `cfg` gives the seed.
    fn load_network(&self, cfg: &Config, checkpoint: &Path, device: Device) -> Result<Network> {
        tch::manual_seed(cfg.seed as i64);
        let mut net = build_detector(&self.cfg.model, device);
        load_strict(&mut net.vs, checkpoint)?;
        Ok(net)
    }

    fn train_len(&self) -> i64 {
        self.train_images.size()[0]
    }

    fn batch_loss(&self, net: &Network, idx: &Tensor) -> Tensor {
        let (x, gt) = detect_own::batch(
            self.own.as_ref(),
            &self.train_images.index_select(0, idx),
            &self.train_targets.index_select(0, idx),
        );
        let targets = assign(&gt, &self.grid, &self.cfg.loss);
        let raw = net.forward_t(&x, true);
        detection_loss(&raw, &targets, &self.grid, &self.cfg.loss).total
    }

    fn evaluate(&self, net: &Network) -> Result<f64> {
        Ok(self.evaluate_full(net)?.map50)
    }

    fn eval_len(&self) -> i64 {
        self.test.len()
    }

    /// The first `eval.tb_images` test scenes with ground truth and predicted boxes.
    fn sample_pictures(&self, net: &Network) -> Vec<Picture> {
        let n = self.cfg.eval.tb_images.min(self.test.len().max(0) as usize);
        if n == 0 {
            return Vec::new();
        }
        let scenes = self.test.first(n);
        // A network with non-finite outputs has nothing to draw; its evaluation reports it.
        match predict(net, &self.grid, &scenes.images, &self.cfg.eval, &self.norm()) {
            Ok(dets) => scene_pictures(&scenes, &dets, &self.cfg.eval, &self.names),
            Err(_) => Vec::new(),
        }
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
            place: RunPlace { out_dir: &c.out_dir, task: "detect", name: &c.run_name },
        }
    }

    fn build_network(&self, device: Device) -> Result<Network> {
        Ok(build_detector(&self.cfg.model, device))
    }

    /// Scenes: the pool of `epoch` (a fresh one every `data.regenerate_every` epochs); a
    /// dataset on disk is one fixed pool.
    fn begin_epoch(&mut self, epoch: usize) {
        let Some(items) = &self.train_items else { return };
        let every = self.cfg.data.regenerate_every;
        let pool_epoch = if every == 0 { 0 } else { epoch - epoch % every };
        if pool_epoch == self.pool_epoch {
            return;
        }
        let start = Instant::now();
        let set = train_pool(&self.cfg, items, epoch);
        let device = self.train_images.device();
        self.train_images = set.images.to_device(device);
        self.train_targets = set.boxes_tensor(self.cfg.data.scenes.max_items).to_device(device);
        self.pool_epoch = pool_epoch;
        self.scene_seconds += start.elapsed().as_secs_f64();
    }

    /// The detection loss with its box, objectness and class terms and the positives.
    fn train_loss(&self, net: &Network, idx: &Tensor) -> Loss {
        let (x, gt) = detect_own::batch(
            self.own.as_ref(),
            &self.train_images.index_select(0, idx),
            &self.train_targets.index_select(0, idx),
        );
        let targets = assign(&gt, &self.grid, &self.cfg.loss);
        let raw = net.forward_t(&x, true);
        let p = detection_loss(&raw, &targets, &self.grid, &self.cfg.loss);
        let parts = vec![
            ("loss_box", p.boxes, PerEpoch::BatchMean),
            ("loss_obj", p.objectness, PerEpoch::BatchMean),
            ("loss_cls", p.classes, PerEpoch::BatchMean),
            ("positives_per_image", p.positives, PerEpoch::PerImage),
        ];
        Loss { total: p.total, parts }
    }

    fn metrics(&self, net: &Network, log: Option<(&mut Tb, usize)>) -> Result<Metrics> {
        let (imgs, gts) = (&self.test.images, &self.test_gts);
        let (r, dets) = evaluate(net, &self.grid, imgs, gts, &self.cfg.eval, &self.norm())?;
        if let Some((tb, step)) = log {
            log_detections(tb, &self.test, &dets, &self.cfg.eval, ("test", &self.names), step);
        }
        Ok(Metrics {
            primary: r.map50,
            scalars: vec![
                ("map50", r.map50),
                ("coco_map", r.coco_map),
                ("coco_map50", r.coco_map50),
                ("coco_map75", r.coco_map75),
            ],
            json: metrics_json(&r, &self.names),
            summary: format!(
                "test mAP@0.5 {:.2}%  COCO mAP {:.2}% ({} scenes)",
                100.0 * r.map50,
                100.0 * r.coco_map,
                r.images
            ),
        })
    }

    fn describe_training(&self) -> String {
        let what = if self.own.is_some() { "images" } else { "scenes per pool" };
        format!("{} {what} ({} test)", self.train_len(), self.test.len())
    }

    fn record(&self) -> Value {
        let mut r = json!({"scene_generation_seconds_this_process": self.scene_seconds});
        if self.own.is_some() {
            r["classes"] = json!(self.names);
            r["train_images"] = json!(self.train_len());
        }
        r
    }
}

/// `gqcim detect-compare`: the `compare` grid (fp32 against each quantizer and level count,
/// fine-tuned clean or noise-aware, under the programming-noise sweep) on a trained detector.
pub fn compare(
    cfg: &DetectConfig,
    config_path: &Path,
    checkpoint: &Path,
    run_dir: Option<&Path>,
    how: crate::compare::GridRun,
) -> Result<Value> {
    let wall = Instant::now();
    let base = cfg.base_config();
    base.validate_compare()?;
    let device = setup_device(&base)?;
    let mut harness = DetectHarness::new(cfg, device)?;
    if cfg.compare.eval_limit > 0 {
        harness.limit_test(cfg.compare.eval_limit);
    }
    let run = create_run_dir(cfg, "compare", config_path, run_dir)?;
    crate::compare::run_grid_steps(&base, &harness, checkpoint, device, run, wall, how)
}

/// `gqcim detect-quantize` / `detect-finetune`: one method and level count on the whole
/// test set (tasks::quantize_any).
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
    crate::tasks::quantize_any::run(&base, &harness, device, &yaml, checkpoint, run, finetune)
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

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

fn metrics_json(r: &DetEval, names: &[String]) -> Value {
    let per_class: serde_json::Map<String, Value> = r
        .per_class_ap50
        .iter()
        .enumerate()
        .map(|(i, ap)| (names.get(i).cloned().unwrap_or(i.to_string()), json!(ap)))
        .collect();
    json!({"map50": r.map50, "coco_map": r.coco_map, "coco_map50": r.coco_map50,
           "coco_map75": r.coco_map75, "ap50_per_class": per_class, "detections": r.detections,
           "test_images": r.images, "eval_seconds": r.seconds})
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
