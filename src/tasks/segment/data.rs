//! Scenes (or a dataset on disk) on the training device: the training pool, recomposed per
//! epoch from (seed, epoch) alone, and the fixed test set; batches with flips and jitter.
use super::{
    scene_names, SegmentConfig, DEFAULT_INPUT_SIZE, DEFAULT_SCALE_JITTER, NORM_MEAN, NORM_STD,
};
use crate::data::jitter::Jitter;
use crate::data::rgb::InputNorm;
use crate::data::scenes::{generate, SceneConfig, SceneSet};
use crate::data::seg_sets::{class_names, load_seg_split, SegDataset, SegSplitData};
use crate::data::{self, Dataset};
use crate::engine::schedule::epoch_seed;
use crate::error::{invalid, Result};
use tch::{Device, Kind, Tensor};

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
