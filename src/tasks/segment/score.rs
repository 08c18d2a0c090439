//! `gqcim metrics segmentation --gt DIR --pred DIR --num-classes K`: scores a folder of
//! predicted masks against a folder of ground-truth masks (same file names; VOC palette or
//! 8-bit class ids, read by `voc_seg::read_mask`) with the VOC / torchmetrics mIoU and pixel
//! accuracy of `metrics`. Ground-truth 255 is ignored; a prediction must name a class.
use super::metrics::ConfusionMatrix;
use crate::data::voc_seg::{read_mask, IGNORE_INDEX};
use crate::error::{data_err, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tch::Device;

fn pngs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| data_err(dir, format!("cannot list the mask folder: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .collect();
    v.sort();
    Ok(v)
}

pub fn score_mask_dirs(gt: &Path, pred: &Path, k: usize) -> Result<Value> {
    let files = pngs(gt)?;
    if files.is_empty() {
        return Err(data_err(gt, "no .png masks in the folder"));
    }
    let mut cm = ConfusionMatrix::new(k as i64, Device::Cpu);
    for g in &files {
        let p = pred.join(g.file_name().unwrap_or_default());
        if !p.is_file() {
            return Err(data_err(&p, format!("missing: the prediction for {}", g.display())));
        }
        let (gm, pm) = (read_mask(g, k)?, read_mask(&p, k)?);
        if gm.size() != pm.size() {
            return Err(data_err(
                &p,
                format!("is {:?} (h, w) but {} is {:?}", pm.size(), g.display(), gm.size()),
            ));
        }
        // The confusion matrix has no row for "ignore": a prediction must choose a class.
        if pm.eq(IGNORE_INDEX).any().int64_value(&[]) != 0 {
            return Err(data_err(&p, format!("predicts {IGNORE_INDEX} (ignore); expected 0..{k}")));
        }
        cm.update(&pm, &gm, IGNORE_INDEX);
    }
    Ok(json!({
        "miou": cm.miou(),
        "pixel_accuracy": cm.pixel_accuracy(),
        "per_class_iou": cm.per_class_iou(),
        "images": files.len(),
        "pixels": cm.total(),
    }))
}
