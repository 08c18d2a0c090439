//! Pascal VOC segmentation masks (Everingham et al., "The PASCAL Visual Object Classes
//! Challenge", IJCV 2010; devkit `VOCdevkit/VOCcode/VOClabelcolormap.m`).
//!
//! `SegmentationClass/*.png` are palette PNGs whose index is the class id (0 = background,
//! 1..20 the classes) and 255 marks the "void" boundary that training and evaluation ignore.
//! The `image` crate (0.25) always expands a palette to colours, so the ids are recovered by
//! inverting the devkit's bit-interleaving colour map, which is a bijection on 0..=255; every
//! VOC mask uses that palette. An 8-bit (or 16-bit) grayscale PNG holding the ids directly is
//! accepted as well. Decoding, id recovery and validation run as tensor ops.
use crate::error::{data_err, Result};
use image::DynamicImage;
use std::path::Path;
use tch::{Kind, Tensor};

/// The ignore label of VOC masks (object boundaries and difficult regions).
pub const IGNORE_INDEX: i64 = 255;

/// The devkit colour map: index i's bits are dealt round-robin to the red, green and blue
/// channels, most significant first (`bitget` in `VOClabelcolormap.m`). Class 1 is
/// (128, 0, 0), class 15 (person) (192, 128, 128), 255 (void) (224, 224, 192).
pub fn voc_colormap() -> [[u8; 3]; 256] {
    let mut map = [[0u8; 3]; 256];
    for (i, entry) in map.iter_mut().enumerate() {
        let mut c = i;
        for j in 0..8 {
            for (ch, v) in entry.iter_mut().enumerate() {
                *v |= (((c >> ch) & 1) as u8) << (7 - j);
            }
            c >>= 3;
        }
    }
    map
}

/// The colour map as a uint8 [256, 3] tensor on the CPU.
fn palette_tensor() -> Tensor {
    let flat: Vec<u8> = voc_colormap().iter().flatten().copied().collect();
    Tensor::from_slice(&flat).view([256, 3])
}

/// Colours a mask with the VOC palette, for viewing (TensorBoard images).
/// mask: int64 [h, w] (or [b, h, w]) with values in 0..=255 -> uint8 [3, h, w] ([b, 3, h, w]).
pub fn colorize(mask: &Tensor) -> Tensor {
    let palette = palette_tensor().to_device(mask.device());
    let mut shape = mask.size();
    shape.push(3);
    let rgb = palette.index_select(0, &mask.flatten(0, -1).to_kind(Kind::Int64)).view(&shape[..]);
    rgb.movedim(-1, -3).contiguous()
}

/// Inverts the colour map one channel at a time: set bit (7 - j) of channel ch's value stands
/// for bit (3j + ch) of the index. Only bits below 8 exist in an index; the other channel
/// bits never occur in the map and are caught by the round-trip check. Tables are [256] int64.
fn channel_tables() -> [Tensor; 3] {
    let table = |ch: usize| {
        let t: Vec<i64> = (0..256usize)
            .map(|v| {
                (0..8)
                    .filter(|j| 3 * j + ch < 8 && (v >> (7 - j)) & 1 == 1)
                    .map(|j| 1i64 << (3 * j + ch))
                    .sum()
            })
            .collect();
        Tensor::from_slice(&t)
    };
    [table(0), table(1), table(2)]
}

fn decode(path: &Path) -> Result<DynamicImage> {
    let reader = image::ImageReader::open(path)
        .map_err(|e| data_err(path, format!("cannot open: {e}")))?
        .with_guessed_format()
        .map_err(|e| data_err(path, format!("cannot read: {e}")))?;
    reader.decode().map_err(|e| data_err(path, format!("cannot decode the image: {e}")))
}

/// (row, col) of the first true element of a bool [h, w] mask, if any.
fn first_true(bad: &Tensor) -> Option<(i64, i64)> {
    let at = bad.nonzero();
    (at.size()[0] > 0).then(|| (at.int64_value(&[0, 0]), at.int64_value(&[0, 1])))
}

/// Class ids from a decoded mask: grayscale values directly, colours through the VOC map.
fn class_ids(path: &Path, img: DynamicImage) -> Result<Tensor> {
    let (w, h) = (img.width() as i64, img.height() as i64);
    match img {
        DynamicImage::ImageLuma8(buf) => {
            Ok(Tensor::from_slice(buf.as_raw()).view([h, w]).to_kind(Kind::Int64))
        }
        DynamicImage::ImageLuma16(buf) => {
            // 16-bit ids do not fit uint8 / int16 losslessly; go through int32.
            let ids: Vec<i32> = buf.as_raw().iter().map(|&v| i32::from(v)).collect();
            Ok(Tensor::from_slice(&ids).view([h, w]).to_kind(Kind::Int64))
        }
        other => {
            // Palette (expanded by `image`), RGB or RGBA: alpha carries no class information.
            let rgb = Tensor::from_slice(other.to_rgb8().as_raw()).view([h * w, 3]);
            let rgb = rgb.to_kind(Kind::Int64);
            let [tr, tg, tb] = channel_tables();
            let ids = tr.index_select(0, &rgb.select(1, 0))
                + tg.index_select(0, &rgb.select(1, 1))
                + tb.index_select(0, &rgb.select(1, 2));
            // Colours with bits the map never sets (anti-aliased or non-VOC palettes) do not
            // round-trip; report the first one instead of silently mislabelling it.
            let back = palette_tensor().index_select(0, &ids).to_kind(Kind::Int64);
            let wrong = back.ne_tensor(&rgb).any_dim(1, false).view([h, w]);
            if let Some((r, c)) = first_true(&wrong) {
                let px = rgb.get(r * w + c);
                return Err(data_err(
                    path,
                    format!(
                        "colour ({}, {}, {}) at row {r}, column {c} is not in the VOC colour \
                         map; write palette masks with the VOC palette, or class ids as an \
                         8-bit grayscale PNG",
                        px.int64_value(&[0]),
                        px.int64_value(&[1]),
                        px.int64_value(&[2])
                    ),
                ));
            }
            Ok(ids.view([h, w]))
        }
    }
}

/// Reads a VOC segmentation mask: int64 [h, w] of class ids in 0..num_classes, or 255
/// (ignore). Any other value is an error naming the file, the value and its first position.
pub fn read_mask(path: &Path, num_classes: usize) -> Result<Tensor> {
    let ids = class_ids(path, decode(path)?)?;
    let k = num_classes as i64;
    let bad = ids.ge(k).logical_and(&ids.ne(IGNORE_INDEX));
    if let Some((r, c)) = first_true(&bad) {
        let v = ids.int64_value(&[r, c]);
        return Err(data_err(
            path,
            format!(
                "class id {v} at row {r}, column {c} is out of range (expected 0..{} or \
                 {IGNORE_INDEX} = ignore)",
                k - 1
            ),
        ));
    }
    Ok(ids)
}

/// Reads an image and its mask: (uint8 [3, h, w], int64 [h, w]); their sizes must agree.
pub fn read_voc_seg_pair(
    image: &Path,
    mask: &Path,
    num_classes: usize,
) -> Result<(Tensor, Tensor)> {
    let img = decode(image)?;
    let ids = read_mask(mask, num_classes)?;
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (mh, mw) = (ids.size()[0], ids.size()[1]);
    if (mh, mw) != (h, w) {
        return Err(data_err(
            mask,
            format!(
                "mask is {mw}x{mh} (width x height) but its image {} is {w}x{h}",
                image.display()
            ),
        ));
    }
    let pixels = Tensor::from_slice(img.to_rgb8().as_raw()).view([h, w, 3]);
    Ok((pixels.permute([2, 0, 1]).contiguous(), ids))
}
