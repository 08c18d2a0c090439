//! Evaluation: per-pixel predictions scored as mIoU, pixel accuracy and per-class IoU.
use super::metrics::ConfusionMatrix;
use super::SegmentData;
use crate::data::voc_seg::IGNORE_INDEX;
use crate::error::{invalid, Result};
use crate::nets::Network;
use serde::Serialize;
use serde_json::{json, Value};
use std::time::Instant;
use tch::Tensor;

/// mIoU, pixel accuracy and per-class IoU (None where a class is neither in the target nor
/// predicted) on a test set.
#[derive(Debug, Clone, Serialize)]
pub struct SegEval {
    pub miou: f64,
    pub pixel_acc: f64,
    pub per_class: Vec<Option<f64>>,
    pub images: i64,
    pub seconds: f64,
    /// Class names (index = class id), for the per-class keys.
    pub names: Vec<String>,
}

impl SegEval {
    /// Per-class IoU keyed by class name, for results.json.
    pub fn per_class_json(&self) -> Value {
        let map: serde_json::Map<String, Value> = self
            .per_class
            .iter()
            .enumerate()
            .map(|(c, v)| {
                let name = self.names.get(c).cloned().unwrap_or(c.to_string());
                (name, json!(v))
            })
            .collect();
        Value::Object(map)
    }
}

/// The network's per-pixel classes: normalised [b, 1, h, w] -> int64 [b, h, w] (eval mode).
pub fn predict(net: &Network, x: &Tensor) -> Tensor {
    tch::no_grad(|| net.forward_t(x, false).argmax(1, false))
}

/// Scores a network on the test scenes in batches (eval mode, no grad); the confusion
/// matrix accumulates on the device, metrics are read once at the end.
pub fn evaluate(net: &Network, data: &SegmentData, batch_size: i64) -> Result<SegEval> {
    let start = Instant::now();
    let split = &data.test;
    let n = split.len();
    if n == 0 {
        return Err(invalid("data.scenes.test_scenes", "the test set has no scenes"));
    }
    let device = split.images.device();
    let mut cm: Option<ConfusionMatrix> = None;
    tch::no_grad(|| -> Result<()> {
        let mut i = 0;
        while i < n {
            let b = batch_size.min(n - i);
            let (x, y) = split.batch(i, b);
            let logits = net.forward_t(&x, false);
            crate::tasks::classify::check_finite_output(&logits, net, i)?;
            let cm = cm.get_or_insert_with(|| ConfusionMatrix::new(logits.size()[1], device));
            cm.update(&logits.argmax(1, false), &y, IGNORE_INDEX);
            i += b;
        }
        Ok(())
    })?;
    let cm = cm.unwrap_or_else(|| ConfusionMatrix::new(data.names.len() as i64, device));
    Ok(SegEval {
        miou: cm.miou(),
        pixel_acc: cm.pixel_accuracy(),
        per_class: cm.per_class_iou(),
        images: n,
        seconds: start.elapsed().as_secs_f64(),
        names: data.names.clone(),
    })
}
pub(crate) fn eval_json(res: &SegEval) -> Value {
    json!({"test_miou": res.miou, "test_pixel_accuracy": res.pixel_acc,
           "test_images": res.images, "per_class_iou": res.per_class_json()})
}
