//! Segmentation datasets in their own layouts, decoded once and letterboxed:
//!
//! - Pascal VOC: `<root>/ImageSets/Segmentation/<split>.txt` lists ids; the image is
//!   `JPEGImages/<id>.jpg` and the mask `SegmentationClass/<id>.png` (VOC palette, 255 =
//!   void). Class names: `data.classes`, else background + the 20 VOC classes.
//! - folder: `<root>/<split>/images/<name>.{png,jpg,jpeg}` with `<root>/<split>/masks/<name>.png`
//!   (palette or 8-bit class ids, as `voc_seg::read_mask` reads them). Class names:
//!   `data.classes`, else `<root>/classes.txt` (one a line, background first).
//!
//! A mask colour outside the palette or an id past the class list is an error naming the
//! mask file, the value and its first pixel (`voc_seg`); so is a mask whose size differs from
//! its image, and a listed image or mask that does not exist.
use super::detection_sets::{read_id_list, VOC_CLASSES};
use super::rgb::{cache_mib, join_inside, letterbox_mask, load_letterboxed};
use super::voc_seg::read_mask;
use crate::error::{data_err, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Where segmentation data comes from (`data.dataset`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SegDataset {
    /// Generated Fashion-MNIST scenes (`data.scenes`).
    #[default]
    Scenes,
    Voc,
    /// A plain folder of images and masks.
    Folder,
}

/// One decoded split: letterboxed images and masks (padding = ignore).
#[derive(Debug)]
pub struct SegSplitData {
    /// uint8 [n, c, S, S] and uint8 [n, S, S] on the CPU.
    pub images: Tensor,
    pub masks: Tensor,
    pub classes: Vec<String>,
    /// (image, mask) files, in order.
    pub files: Vec<(PathBuf, PathBuf)>,
}

/// The class names of a dataset: `data.classes`, VOC's, or the folder's `classes.txt`.
pub fn class_names(
    kind: SegDataset,
    root: &Path,
    classes: Option<&[String]>,
) -> Result<Vec<String>> {
    if let Some(c) = classes {
        return Ok(c.to_vec());
    }
    match kind {
        SegDataset::Voc => {
            Ok(std::iter::once("background").chain(VOC_CLASSES).map(str::to_string).collect())
        }
        _ => {
            let f = root.join("classes.txt");
            if !f.is_file() {
                return Err(data_err(
                    &f,
                    "not found: a folder dataset names its classes in data.classes or in \
                     classes.txt (one a line, background first)",
                ));
            }
            Ok(read_id_list(&f)?.into_iter().map(|(_, name)| name).collect())
        }
    }
}

/// The (image, mask) pairs of a split, in the dataset's order.
pub fn list_pairs(kind: SegDataset, root: &Path, split: &str) -> Result<Vec<(PathBuf, PathBuf)>> {
    match kind {
        SegDataset::Voc => {
            let list =
                join_inside(&root.join("ImageSets/Segmentation"), &format!("{split}.txt"), root)?;
            if !list.is_file() {
                return Err(data_err(&list, "VOC segmentation split list not found"));
            }
            let mut pairs = Vec::new();
            for (line, id) in read_id_list(&list)? {
                let image = join_inside(&root.join("JPEGImages"), &format!("{id}.jpg"), &list)?;
                let mask =
                    join_inside(&root.join("SegmentationClass"), &format!("{id}.png"), &list)?;
                for (f, what) in [(&image, "image"), (&mask, "mask")] {
                    if !f.is_file() {
                        return Err(data_err(
                            &list,
                            format!(
                                "line {line}: {what} {} of id `{id}` does not exist",
                                f.display()
                            ),
                        ));
                    }
                }
                pairs.push((image, mask));
            }
            Ok(pairs)
        }
        _ => {
            let dir = join_inside(root, split, root)?;
            let images_dir = dir.join("images");
            let mut images: Vec<PathBuf> = std::fs::read_dir(&images_dir)
                .map_err(|e| data_err(&images_dir, format!("cannot list the images folder: {e}")))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                            matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg")
                        })
                })
                .collect();
            images.sort();
            images
                .into_iter()
                .map(|image| {
                    let stem = image.file_stem().unwrap_or_default().to_string_lossy().to_string();
                    let mask = dir.join("masks").join(format!("{stem}.png"));
                    if mask.is_file() {
                        Ok((image, mask))
                    } else {
                        Err(data_err(&image, format!("has no mask {}", mask.display())))
                    }
                })
                .collect()
        }
    }
}

/// Lists and decodes a split: each image letterboxed to `size` with `channels` channels, its
/// mask checked against `classes` and letterboxed the same way.
pub fn load_seg_split(
    kind: SegDataset,
    root: &Path,
    split: &str,
    classes: &[String],
    channels: i64,
    size: i64,
) -> Result<SegSplitData> {
    let files = list_pairs(kind, root, split)?;
    let n = files.len() as i64;
    if n == 0 {
        return Err(data_err(root, format!("split `{split}` has no images")));
    }
    let images = Tensor::zeros([n, channels, size, size], (Kind::Uint8, tch::Device::Cpu));
    let masks = Tensor::zeros([n, size, size], (Kind::Uint8, tch::Device::Cpu));
    for (i, (image, mask)) in files.iter().enumerate() {
        let (img, fit) = load_letterboxed(image, channels, size)?;
        let ids = read_mask(mask, classes.len())?;
        let (mh, mw) = (ids.size()[0], ids.size()[1]);
        if (mw, mh) != (i64::from(fit.width), i64::from(fit.height)) {
            return Err(data_err(
                mask,
                format!(
                    "mask is {mw}x{mh} (width x height) but its image {} is {}x{}",
                    image.display(),
                    fit.width,
                    fit.height
                ),
            ));
        }
        images.get(i as i64).copy_(&img);
        masks.get(i as i64).copy_(&letterbox_mask(&ids, &fit, size));
    }
    log::info!(
        "{} `{split}`: {n} images, {} classes; cached at {size}x{size} in {:.1} MiB",
        root.display(),
        classes.len(),
        cache_mib(n as usize, channels, size, true)
    );
    Ok(SegSplitData { images, masks, classes: classes.to_vec(), files })
}
