//! Detection on datasets from disk (`data.dataset: voc | yolo | coco`): the settings the
//! config resolves to, the decoded splits as the detector consumes them (a `SceneSet` of
//! letterboxed images, padded box targets, ground truth with VOC `difficult` / COCO crowd
//! flags) and the training batch (normalised, then flipped and zoomed with its boxes).
//!
//! Boxes are scored in input pixels: the letterbox is a uniform scale anchored at the
//! origin, under which IoU, and so VOC mAP@0.5 and COCO mAP@[.5:.95], do not change.
use super::metrics::GroundTruth;
use super::DetectConfig;
use crate::data::detection_sets::{decode_listing, list_split, DetDataset, DetSplit};
use crate::data::jitter::Jitter;
use crate::data::rgb::{cache_mib, default_stats, InputNorm};
use crate::data::scenes::{SceneBox, SceneSet};
use crate::error::{invalid, Result};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

/// Input size of own datasets when `data.input_size` is unset.
pub const DEFAULT_INPUT_SIZE: i64 = 320;
/// Zoom range of own datasets when `data.scale_jitter` is unset: factors in [0.8, 1.2].
pub const DEFAULT_SCALE_JITTER: f64 = 0.2;

/// What `data` resolves to for a dataset on disk.
#[derive(Debug, Clone)]
pub struct OwnData {
    pub dataset: DetDataset,
    pub root: PathBuf,
    pub train_split: String,
    pub test_split: String,
    pub classes: Option<Vec<String>>,
    pub size: i64,
    pub norm: InputNorm,
    pub hflip: bool,
    pub scale_jitter: f64,
}

impl OwnData {
    /// None for the generated scenes.
    pub fn of(cfg: &DetectConfig) -> Option<OwnData> {
        let d = &cfg.data;
        if d.dataset == DetDataset::Scenes {
            return None;
        }
        let (tr, te) = d.dataset.default_splits();
        let (m, s) = default_stats(cfg.model.in_channels);
        Some(OwnData {
            dataset: d.dataset,
            root: d.root.clone().unwrap_or_default(),
            train_split: d.train_split.clone().unwrap_or_else(|| tr.to_string()),
            test_split: d.test_split.clone().unwrap_or_else(|| te.to_string()),
            classes: d.classes.clone(),
            size: d.input_size.unwrap_or(DEFAULT_INPUT_SIZE),
            norm: InputNorm::Stats {
                mean: d.mean.clone().unwrap_or(m),
                std: d.std.clone().unwrap_or(s),
            },
            hflip: d.horizontal_flip.unwrap_or(true),
            scale_jitter: d.scale_jitter.unwrap_or(DEFAULT_SCALE_JITTER),
        })
    }

    /// Reads and decodes one split, checking its classes against `model.num_classes`.
    pub fn load_split(&self, cfg: &DetectConfig, split: &str) -> Result<DetSplit> {
        let listing = list_split(self.dataset, &self.root, split, self.classes.as_deref())?;
        let k = listing.classes.len() as i64;
        if cfg.model.num_classes != k {
            return Err(invalid(
                "model.num_classes",
                format!(
                    "is {} but {} has {k} classes ({}); set model.num_classes: {k}",
                    cfg.model.num_classes,
                    listing.source.display(),
                    listing.classes.join(", ")
                ),
            ));
        }
        let c = &listing.counts;
        if c.skipped() + c.clipped > 0 {
            log::warn!(
                "{} `{split}`: dropped {} zero-area or inverted and {} outside-image box(es), \
                 clipped {} partly outside",
                listing.source.display(),
                c.zero_area,
                c.outside,
                c.clipped
            );
        }
        let out = decode_listing(&listing, cfg.model.in_channels, self.size)?;
        log::info!(
            "{} `{split}`: {} images, {} boxes, {} classes; cached at {}x{} in {:.1} MiB",
            listing.source.display(),
            out.files.len(),
            out.boxes.iter().map(Vec::len).sum::<usize>(),
            k,
            self.size,
            self.size,
            cache_mib(out.files.len(), cfg.model.in_channels, self.size, false)
        );
        Ok(out)
    }
}

/// A decoded split as a scene set (images and all boxes; no masks), for the drawing and
/// batching code shared with the scenes.
pub fn scene_set(split: &DetSplit, device: Device) -> SceneSet {
    let n = split.images.size()[0];
    SceneSet {
        images: split.images.to_device(device),
        masks: Tensor::zeros([n, 0, 0], (Kind::Uint8, Device::Cpu)),
        boxes: split
            .boxes
            .iter()
            .map(|bs| {
                bs.iter()
                    .map(|b| SceneBox {
                        class: b.class as i64,
                        x1: b.x1,
                        y1: b.y1,
                        x2: b.x2,
                        y2: b.y2,
                    })
                    .collect()
            })
            .collect(),
    }
}

/// Ground truth with the dataset's `difficult` (VOC) and crowd (COCO) flags; image ids are
/// positions in the split.
pub fn ground_truth(split: &DetSplit) -> Vec<GroundTruth> {
    let mut out = Vec::new();
    for (i, bs) in split.boxes.iter().enumerate() {
        for b in bs {
            out.push(GroundTruth {
                image_id: i as u64,
                class: b.class,
                bbox: [b.x1, b.y1, b.x2, b.y2].map(f64::from),
                difficult: b.difficult,
                iscrowd: false,
                area: None,
            });
        }
    }
    out
}

/// Training targets [n, G, 5] (class, x1, y1, x2, y2; class -1 pads): difficult and crowd
/// boxes are not trained on, as they are not scored.
pub fn targets(split: &DetSplit) -> Tensor {
    let kept: Vec<Vec<_>> =
        split.boxes.iter().map(|bs| bs.iter().filter(|b| !b.difficult).collect()).collect();
    let g = kept.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut flat = vec![-1f32; kept.len() * g * 5];
    for (i, bs) in kept.iter().enumerate() {
        for (j, b) in bs.iter().enumerate() {
            let o = (i * g + j) * 5;
            flat[o..o + 5].copy_from_slice(&[b.class as f32, b.x1, b.y1, b.x2, b.y2]);
        }
    }
    Tensor::from_slice(&flat).view([kept.len() as i64, g as i64, 5])
}

/// A training batch: images uint8 [b, c, S, S] and targets [b, G, 5] -> the normalised
/// input and the targets, flipped and zoomed together (one draw per sample).
pub fn train_batch(own: &OwnData, images: &Tensor, targets: &Tensor) -> (Tensor, Tensor) {
    let x = own.norm.apply(images);
    if !own.hflip && own.scale_jitter == 0.0 {
        return (x, targets.shallow_clone());
    }
    let size = x.size();
    let j = Jitter::draw(size[0], own.hflip, own.scale_jitter, x.device());
    (j.images(&x), j.boxes(&targets.to_kind(Kind::Float), size[3], size[2]))
}

/// The normalisation of the detector's input: the scenes' or the dataset's.
pub fn input_norm(own: Option<&OwnData>) -> InputNorm {
    own.map_or(InputNorm::Scenes, |o| o.norm.clone())
}

/// A training batch from uint8 images and padded targets: scenes as they always were
/// (normalised, no augmentation), own data through [`train_batch`].
pub fn batch(own: Option<&OwnData>, images: &Tensor, targets: &Tensor) -> (Tensor, Tensor) {
    match own {
        None => (super::scene_input(images), targets.shallow_clone()),
        Some(o) => train_batch(o, images, targets),
    }
}

/// Where training batches come from: Fashion-MNIST items composed into scene pools, or a
/// dataset's decoded images (uint8 [n, c, S, S]) with their targets [n, G, 5].
pub enum TrainSource {
    Scenes(crate::data::Dataset),
    Fixed(Tensor, Tensor),
}

/// `gqcim detect-gt`: writes a split of the configured dataset (default: the test split) as
/// COCO instances JSON in the images' own pixels (`data::coco_out`); returns the box count.
pub fn write_ground_truth(
    cfg: &DetectConfig,
    split: Option<&str>,
    out: &std::path::Path,
) -> Result<usize> {
    let own = OwnData::of(cfg).ok_or_else(|| {
        invalid("data.dataset", "scenes have no files to export; set voc, yolo or coco")
    })?;
    let split = split.unwrap_or(&own.test_split);
    let listing = list_split(own.dataset, &own.root, split, own.classes.as_deref())?;
    let v = crate::data::coco_out::listing_to_coco(&listing, &own.root);
    let text = serde_json::to_string(&v).unwrap_or_default();
    std::fs::write(out, text).map_err(|e| crate::error::file_err(out, "write", e))?;
    Ok(listing.anns.iter().map(|a| a.boxes.len()).sum())
}

/// The class names of an own-dataset detection config given as YAML (None for scenes or a
/// config or dataset that cannot be read).
pub fn class_names_of_yaml(yaml: &str) -> Option<Vec<String>> {
    let cfg = DetectConfig::from_yaml_str(yaml, "plan", &[]).ok()?;
    let own = OwnData::of(&cfg)?;
    crate::data::detection_sets::class_names(
        own.dataset,
        &own.root,
        &own.test_split,
        own.classes.as_deref(),
    )
    .ok()
}
