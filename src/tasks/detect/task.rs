//! Detection as an engine `Task`: the scene pools (or a dataset on disk), the detection loss
//! with its parts, mAP evaluation and pictures of predictions.
use super::metrics::GroundTruth;
use super::own::{self, OwnData};
use super::{
    assign, detection_loss, evaluate, ground_truth, log_detections, metrics_json, predict,
    scene_pictures, DetEval, DetectConfig, Grid, FMNIST_CLASSES,
};
use crate::checkpoint::load_strict;
use crate::config::Config;
use crate::data::detection_sets::DetSplit;
use crate::data::rgb::InputNorm;
use crate::data::scenes::{generate, SceneSet};
use crate::data::{self, Dataset};
use crate::engine::schedule::epoch_seed;
use crate::engine::task::Task;
use crate::engine::task::{Loss, Metrics, PerEpoch};
use crate::error::Result;
use crate::glance::picture::Picture;
use crate::nets::yolo::build_detector;
use crate::nets::Network;
use crate::tb::Tb;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Scene images uint8 [b, 1, h, w] -> normalised float input (Fashion-MNIST statistics).
pub fn scene_input(images: &Tensor) -> Tensor {
    let (m, s) = data::default_stats(crate::config::DatasetKind::FashionMnist);
    (images.to_kind(Kind::Float) / 255.0 - m[0]) / s[0]
}
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
                train_targets: own::targets(&train).to_device(device),
                test: own::scene_set(&test, device),
                test_gts: own::ground_truth(&test),
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
        own::input_norm(self.own.as_ref())
    }

    /// Full evaluation (VOC and COCO) on the harness's test scenes.
    pub fn evaluate_full(&self, net: &Network) -> Result<DetEval> {
        let (imgs, gts) = (&self.test.images, &self.test_gts);
        Ok(evaluate(net, &self.grid, imgs, gts, &self.cfg.eval, &self.norm())?.0)
    }
}

impl Task for DetectHarness {
    crate::task_config_methods!("detect");

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
        self.train_loss(net, idx).total
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
        let (x, gt) = own::batch(
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
