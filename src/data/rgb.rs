//! Users' own images: decoding with the channel count the model expects, letterboxing to the
//! square network input, and paths from annotation files kept inside the dataset root.
//!
//! Letterbox (as YOLOv5's `letterbox`, but anchored top-left): the image is resized so that
//! its longer side becomes the input size, keeping the aspect ratio, and placed in the
//! top-left corner; the rest is filled with grey 114 (YOLO's pad colour) and, in masks, with
//! the ignore label so that padding is neither trained on nor scored. Anchoring at the
//! origin makes the box transform a pure scale per axis (no half-pixel offsets).
use crate::data::voc_seg::IGNORE_INDEX;
use crate::error::{data_err, invalid, Result};
use image::imageops::FilterType;
use image::DynamicImage;
use std::path::{Component, Path, PathBuf};
use tch::{Kind, Tensor};

/// Pixel value of the letterbox padding (YOLOv5's grey).
pub const PAD_VALUE: u8 = 114;

/// ImageNet statistics: the default normalisation of RGB datasets (`data.mean`, `data.std`
/// override it, e.g. with statistics measured on the training split).
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// The default per-channel statistics for `channels` (1: the mean of ImageNet's channels).
pub fn default_stats(channels: i64) -> (Vec<f64>, Vec<f64>) {
    if channels == 3 {
        (IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec())
    } else {
        (vec![0.449; channels as usize], vec![0.226; channels as usize])
    }
}

/// Joins a relative path read from an annotation or list file onto `dir`. Absolute paths,
/// drive prefixes and `..` are refused, so that no annotation can make the loader read a
/// file outside the dataset (`referrer` names the file that held the path).
pub fn join_inside(dir: &Path, rel: &str, referrer: &Path) -> Result<PathBuf> {
    let p = Path::new(rel);
    let escapes = p.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if escapes || rel.is_empty() {
        return Err(data_err(
            referrer,
            format!(
                "path `{rel}` must be relative and stay inside {} (no leading `/`, no `..`)",
                dir.display()
            ),
        ));
    }
    Ok(dir.join(p))
}

/// How one image was fitted into the square input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// Original width and height.
    pub width: u32,
    pub height: u32,
    /// Resized width and height (the top-left part of the input that holds the image).
    pub new_width: u32,
    pub new_height: u32,
}

impl Fit {
    /// The letterbox of a `width` x `height` image into `size` x `size`.
    pub fn new(width: u32, height: u32, size: i64) -> Fit {
        let s = size as f64 / f64::from(width.max(height).max(1));
        let r = |v: u32| ((f64::from(v) * s).round() as u32).clamp(1, size as u32);
        Fit { width, height, new_width: r(width), new_height: r(height) }
    }

    /// Scale factors (x, y) from original pixels to input pixels.
    pub fn scale(&self) -> (f64, f64) {
        (
            f64::from(self.new_width) / f64::from(self.width.max(1)),
            f64::from(self.new_height) / f64::from(self.height.max(1)),
        )
    }

    /// A box [x1, y1, x2, y2] in original pixels -> input pixels.
    pub fn map_box(&self, b: [f32; 4]) -> [f32; 4] {
        let (sx, sy) = self.scale();
        [
            (f64::from(b[0]) * sx) as f32,
            (f64::from(b[1]) * sy) as f32,
            (f64::from(b[2]) * sx) as f32,
            (f64::from(b[3]) * sy) as f32,
        ]
    }
}

fn decode(path: &Path) -> Result<DynamicImage> {
    image::ImageReader::open(path)
        .map_err(|e| data_err(path, format!("cannot open the image: {e}")))?
        .with_guessed_format()
        .map_err(|e| data_err(path, format!("cannot read the image: {e}")))?
        .decode()
        .map_err(|e| data_err(path, format!("cannot decode the image: {e}")))
}

/// Colour channels of a decoded image, alpha not counted.
fn colour_channels(img: &DynamicImage) -> i64 {
    if img.color().has_color() {
        3
    } else {
        1
    }
}

/// Decodes an image and letterboxes it: uint8 [channels, size, size] and its fit. A colour
/// image for a one-channel model is an error naming the file and `model.in_channels`;
/// greyscale images are repeated to three channels for an RGB model (COCO and VOC hold a
/// few greyscale photos among colour ones), and alpha is dropped.
pub fn load_letterboxed(path: &Path, channels: i64, size: i64) -> Result<(Tensor, Fit)> {
    let img = decode(path)?;
    let have = colour_channels(&img);
    if have > channels {
        return Err(invalid(
            "model.in_channels",
            format!(
                "is {channels} but the image {} has {have} colour channels; set \
                 model.in_channels: {have} (the network then reads RGB)",
                path.display()
            ),
        ));
    }
    if channels != 1 && channels != 3 {
        return Err(invalid(
            "model.in_channels",
            format!("images have 1 (grey) or 3 (RGB) channels, got {channels}"),
        ));
    }
    let fit = Fit::new(img.width(), img.height(), size);
    let resized = if (fit.new_width, fit.new_height) == (fit.width, fit.height) {
        img
    } else {
        img.resize_exact(fit.new_width, fit.new_height, FilterType::Triangle)
    };
    let (w, h) = (i64::from(fit.new_width), i64::from(fit.new_height));
    let pixels = if channels == 3 {
        Tensor::from_slice(resized.to_rgb8().as_raw()).view([h, w, 3]).permute([2, 0, 1])
    } else {
        Tensor::from_slice(resized.to_luma8().as_raw()).view([1, h, w])
    };
    let canvas =
        Tensor::full([channels, size, size], i64::from(PAD_VALUE), (Kind::Uint8, tch::Device::Cpu));
    canvas.narrow(1, 0, h).narrow(2, 0, w).copy_(&pixels);
    Ok((canvas, fit))
}

/// A class-id mask int64 [h, w] letterboxed with nearest-neighbour resizing (ids must not
/// blend; the pixel-centre-aligned "nearest-exact" rule, as the image's resize) into uint8
/// [size, size], padded with the ignore label.
pub fn letterbox_mask(mask: &Tensor, fit: &Fit, size: i64) -> Tensor {
    let (h, w) = (i64::from(fit.new_height), i64::from(fit.new_width));
    let resized = mask
        .to_kind(Kind::Float)
        .view([1, 1, mask.size()[0], mask.size()[1]])
        .internal_upsample_nearest_exact2d([h, w], None, None)
        .view([h, w])
        .to_kind(Kind::Uint8);
    let canvas = Tensor::full([size, size], IGNORE_INDEX, (Kind::Uint8, tch::Device::Cpu));
    canvas.narrow(0, 0, h).narrow(1, 0, w).copy_(&resized);
    canvas
}

/// Megabytes held by `n` cached inputs of `channels` x `size` x `size` bytes (plus a mask
/// plane each when `masks`): what the README states for VOC-sized sets.
pub fn cache_mib(n: usize, channels: i64, size: i64, masks: bool) -> f64 {
    let per = (channels + i64::from(masks)) * size * size;
    n as f64 * per as f64 / (1 << 20) as f64
}

/// How uint8 inputs become network inputs.
#[derive(Debug, Clone, PartialEq)]
pub enum InputNorm {
    /// Fashion-MNIST scenes: the scalar statistics path the scene tasks always used, kept
    /// as it was so that scene results do not change by a bit.
    Scenes,
    /// Per-channel statistics on the [0, 1] scale (`data.mean`, `data.std`).
    Stats { mean: Vec<f64>, std: Vec<f64> },
}

impl InputNorm {
    /// uint8 [b, c, h, w] -> float [b, c, h, w]: (x / 255 - mean) / std.
    pub fn apply(&self, x: &Tensor) -> Tensor {
        match self {
            InputNorm::Scenes => {
                let (m, s) = super::default_stats(crate::config::DatasetKind::FashionMnist);
                (x.to_kind(Kind::Float) / 255.0 - m[0]) / s[0]
            }
            InputNorm::Stats { mean, std } => {
                let c = mean.len() as i64;
                let t = |v: &[f64]| {
                    Tensor::from_slice(v).to_kind(Kind::Float).view([1, c, 1, 1]).to(x.device())
                };
                (x.to_kind(Kind::Float) / 255.0 - t(mean)) / t(std)
            }
        }
    }
}

/// `data.mean` / `data.std`: one value per input channel, finite, std > 0; and the model
/// must read grey (1) or RGB (3) images.
pub fn check_stats(mean: Option<&[f64]>, std: Option<&[f64]>, channels: i64) -> Result<()> {
    if channels != 1 && channels != 3 {
        return Err(invalid(
            "model.in_channels",
            format!("images have 1 (grey) or 3 (RGB) channels, got {channels}"),
        ));
    }
    for (field, v) in [("data.mean", mean), ("data.std", std)] {
        let Some(v) = v else { continue };
        let ok = v.iter().all(|x| x.is_finite() && (field == "data.mean" || *x > 0.0));
        if v.len() as i64 != channels || !ok {
            return Err(invalid(
                field,
                format!(
                    "expected {channels} finite value(s) (std > 0), one per channel, got {v:?}"
                ),
            ));
        }
    }
    Ok(())
}
