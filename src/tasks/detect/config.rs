//! The detection experiment's config: one self-contained YAML (seed, device, data, model,
//! training, loss, evaluation and the deployment sections), with `--set` overrides and named
//! errors.
use crate::config::in_range;
use crate::config::{
    AnalogConfig, CompareConfig, Config, DataConfig, DeviceChoice, FinetuneConfig, QuantConfig,
    Task as TaskKind, TrainConfig, TrainNoiseConfig,
};
use crate::data::detection_sets::DetDataset;
use crate::data::scenes::SceneConfig;
use crate::error::{invalid, Result};
use crate::nets::yolo::YoloConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The detection experiment: one self-contained config (seed, device, data, model, training,
/// loss, evaluation), read from YAML with `--set` overrides like the main `Config`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Fixes the train scene pools, data order and initialisation.
    pub seed: u64,
    /// `detect`: what `gqcim train|eval|quantize|finetune|compare|sensitivity|export --config`
    /// reads to pick the task (a config without `task` is a classification config).
    pub task: TaskKind,
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
            task: TaskKind::Detect,
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
/// `yolo` and `coco` read a dataset on disk (`tasks::detect::own`, layouts in
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

impl DetectConfig {
    /// The validation pass: every range check names its field.
    pub fn validate(&self) -> Result<()> {
        if self.task != TaskKind::Detect {
            let msg = format!("this is a detection config; got `{}`", self.task.name());
            return Err(invalid("task", msg));
        }
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
        self.train.validate(2, Some("detection"))?;
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
        let size = d.input_size.unwrap_or(super::own::DEFAULT_INPUT_SIZE);
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

    pub(crate) fn fmnist(&self) -> DataConfig {
        DataConfig { root: self.data.fmnist_root.clone(), ..DataConfig::default() }
    }
}
