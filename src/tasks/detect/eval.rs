//! Evaluation: predictions of a network on a scene set, scored as VOC mAP@0.5 and COCO mAP.
use super::metrics::{coco_map, voc_map, Detection, GroundTruth};
use super::{postprocess, DetectEvalConfig, Grid};
use crate::data::rgb::InputNorm;
use crate::data::scenes::SceneBox;
use crate::error::{invalid, Result};
use crate::nets::Network;
use serde::Serialize;
use serde_json::{json, Value};
use std::time::Instant;
use tch::Tensor;

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
            crate::tasks::classify::check_finite_output(&raw, net, i)?;
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
pub(crate) fn metrics_json(r: &DetEval, names: &[String]) -> Value {
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
