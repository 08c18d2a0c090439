//! `scenes`: detection / segmentation scenes composed on the fly from real Fashion-MNIST
//! items. Each canvas holds 1..=max_items items, each rescaled to a random size, placed at
//! random with bounded overlap, on a plain, noisy or cluttered background. An item's box is
//! the bounding box of its pixels above a threshold; every pixel gets a class mask
//! (0 = background, 1..=10 = item class + 1), later items occluding earlier ones.
//! Train scenes draw items only from the train split and test scenes only from the test
//! split; a set is fixed by its seed.
use crate::error::{invalid, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Background {
    Plain,
    /// Uniform noise of amplitude `background_level`.
    Noise,
    /// Faint fragments of other items (unlabelled), a harder background.
    Clutter,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SceneConfig {
    pub canvas: i64,
    pub min_items: usize,
    pub max_items: usize,
    pub min_size: i64,
    pub max_size: i64,
    /// Largest IoU allowed between a new item's box and any earlier one.
    pub max_overlap: f64,
    pub background: Background,
    pub background_level: f64,
    /// Pixels of a rescaled item above this (0..255) count as the item (box and mask).
    pub threshold: u8,
    pub train_scenes: usize,
    pub test_scenes: usize,
}

impl Default for SceneConfig {
    fn default() -> Self {
        SceneConfig {
            canvas: 96,
            min_items: 1,
            max_items: 6,
            min_size: 16,
            max_size: 56,
            max_overlap: 0.3,
            background: Background::Plain,
            background_level: 40.0,
            threshold: 30,
            train_scenes: 8000,
            test_scenes: 2000,
        }
    }
}

impl SceneConfig {
    pub fn validate(&self, field: &str) -> Result<()> {
        let f = |k: &str| format!("{field}.{k}");
        if !(16..=1024).contains(&self.canvas) {
            return Err(invalid(f("canvas"), format!("expected 16..=1024, got {}", self.canvas)));
        }
        if self.min_items == 0 || self.min_items > self.max_items || self.max_items > 32 {
            return Err(invalid(
                f("max_items"),
                format!(
                    "need 1 <= min_items <= max_items <= 32, got {}..{}",
                    self.min_items, self.max_items
                ),
            ));
        }
        if self.min_size < 4 || self.min_size > self.max_size || self.max_size > self.canvas {
            return Err(invalid(
                f("max_size"),
                format!(
                    "need 4 <= min_size <= max_size <= canvas, got {}..{} on {}",
                    self.min_size, self.max_size, self.canvas
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.max_overlap) {
            return Err(invalid(
                f("max_overlap"),
                format!("expected [0, 1], got {}", self.max_overlap),
            ));
        }
        Ok(())
    }
}

/// One labelled box in canvas pixels (x2, y2 exclusive), class 0..=9.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct SceneBox {
    pub class: i64,
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

/// A generated set of scenes, on the CPU.
#[derive(Debug)]
pub struct SceneSet {
    /// uint8 [n, 1, canvas, canvas]
    pub images: Tensor,
    /// uint8 [n, canvas, canvas], 0 = background, 1..=10 = class + 1
    pub masks: Tensor,
    pub boxes: Vec<Vec<SceneBox>>,
}

impl SceneSet {
    pub fn len(&self) -> i64 {
        self.images.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Boxes as a padded tensor [n, max_items, 5] of (class, x1, y1, x2, y2); padding rows
    /// have class -1. Lets losses gather targets on the tensor side.
    pub fn boxes_tensor(&self, max_items: usize) -> Tensor {
        let n = self.boxes.len();
        let mut flat = vec![-1f32; n * max_items * 5];
        for (i, bs) in self.boxes.iter().enumerate() {
            for (j, b) in bs.iter().take(max_items).enumerate() {
                let o = (i * max_items + j) * 5;
                flat[o..o + 5].copy_from_slice(&[b.class as f32, b.x1, b.y1, b.x2, b.y2]);
            }
        }
        Tensor::from_slice(&flat).view([n as i64, max_items as i64, 5])
    }
}

/// splitmix64: a small, seeded, portable generator for placement decisions.
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed ^ 0x5851_F42D_4C95_7F2D)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform integer in [lo, hi].
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % ((hi - lo + 1) as u64)) as i64
    }

    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn iou(a: &SceneBox, b: &SceneBox) -> f64 {
    let iw = (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0) as f64;
    let ih = (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0) as f64;
    let inter = iw * ih;
    let area = |r: &SceneBox| ((r.x2 - r.x1) * (r.y2 - r.y1)) as f64;
    inter / (area(a) + area(b) - inter).max(1e-9)
}

/// Composes `count` scenes from items of one split (uint8 [n, 1, 28, 28], labels [n]).
pub fn generate(
    items: &Tensor,
    labels: &Tensor,
    cfg: &SceneConfig,
    count: usize,
    seed: u64,
) -> SceneSet {
    let s = cfg.canvas;
    let n_items = items.size()[0];
    let labels: Vec<i64> = Vec::try_from(labels.to_kind(Kind::Int64)).unwrap_or_default();
    let mut rng = SplitMix::new(seed);
    let mut images = Vec::with_capacity(count);
    let mut masks = Vec::with_capacity(count);
    let mut all_boxes = Vec::with_capacity(count);
    let items_f = items.to_kind(Kind::Float).to_device(Device::Cpu);
    for _ in 0..count {
        let canvas = match cfg.background {
            Background::Plain => Tensor::zeros([s, s], (Kind::Float, Device::Cpu)),
            Background::Noise => {
                Tensor::rand([s, s], (Kind::Float, Device::Cpu)) * cfg.background_level
            }
            Background::Clutter => clutter(&items_f, n_items, s, cfg, &mut rng),
        };
        let mask = Tensor::zeros([s, s], (Kind::Int64, Device::Cpu));
        let mut boxes: Vec<SceneBox> = Vec::new();
        let k = rng.range(cfg.min_items as i64, cfg.max_items as i64);
        for _ in 0..k {
            let idx = rng.range(0, n_items - 1);
            let size = rng.range(cfg.min_size, cfg.max_size);
            let item = items_f
                .get(idx)
                .unsqueeze(0)
                .upsample_bilinear2d([size, size], false, None, None)
                .squeeze()
                .clamp(0.0, 255.0);
            let on = item.gt(cfg.threshold as f64);
            // Tight box of the item's pixels, in item coordinates.
            let rows = on.any_dim(1, false);
            let cols = on.any_dim(0, false);
            let (r0, r1) = first_last(&rows);
            let (c0, c1) = first_last(&cols);
            if r1 < r0 || c1 < c0 {
                continue;
            }
            // Up to 20 placements that respect the overlap bound.
            let mut placed = None;
            for _ in 0..20 {
                let (x, y) = (rng.range(0, s - size), rng.range(0, s - size));
                let b = SceneBox {
                    class: labels[idx as usize],
                    x1: (x + c0) as f32,
                    y1: (y + r0) as f32,
                    x2: (x + c1 + 1) as f32,
                    y2: (y + r1 + 1) as f32,
                };
                if boxes.iter().all(|o| iou(o, &b) <= cfg.max_overlap) {
                    placed = Some((x, y, b));
                    break;
                }
            }
            let Some((x, y, b)) = placed else { continue };
            // Later items occlude earlier ones where their pixels are on.
            let mut region = canvas.narrow(0, y, size).narrow(1, x, size);
            let blended = item.where_self(&on, &region);
            region.copy_(&blended);
            let mut mregion = mask.narrow(0, y, size).narrow(1, x, size);
            let labelled = on.to_kind(Kind::Int64) * (b.class + 1);
            let m = labelled.where_self(&on, &mregion);
            mregion.copy_(&m);
            boxes.push(b);
        }
        images.push(canvas.round().clamp(0.0, 255.0).to_kind(Kind::Uint8));
        masks.push(mask.to_kind(Kind::Uint8));
        all_boxes.push(boxes);
    }
    SceneSet {
        images: Tensor::stack(&images, 0).unsqueeze(1),
        masks: Tensor::stack(&masks, 0),
        boxes: all_boxes,
    }
}

/// First and last true index of a 1-d bool tensor ((1, 0) when none).
fn first_last(v: &Tensor) -> (i64, i64) {
    let idx = v.nonzero().flatten(0, -1);
    let n = idx.size()[0];
    if n == 0 {
        (1, 0)
    } else {
        (idx.int64_value(&[0]), idx.int64_value(&[n - 1]))
    }
}

/// A background of 3..8 faint fragments (quarter crops) of random items.
fn clutter(items: &Tensor, n_items: i64, s: i64, cfg: &SceneConfig, rng: &mut SplitMix) -> Tensor {
    let canvas = Tensor::zeros([s, s], (Kind::Float, Device::Cpu));
    for _ in 0..rng.range(3, 8) {
        let idx = rng.range(0, n_items - 1);
        let (oy, ox) = (rng.range(0, 14), rng.range(0, 14));
        let frag = items.get(idx).squeeze().narrow(0, oy, 14).narrow(1, ox, 14);
        let size = rng.range(8, 24).min(s);
        let frag = frag
            .view([1, 1, 14, 14])
            .upsample_bilinear2d([size, size], false, None, None)
            .squeeze();
        let (x, y) = (rng.range(0, s - size), rng.range(0, s - size));
        let mut region = canvas.narrow(0, y, size).narrow(1, x, size);
        let faint = (frag * (cfg.background_level / 255.0)).maximum(&region);
        region.copy_(&faint);
    }
    canvas
}
