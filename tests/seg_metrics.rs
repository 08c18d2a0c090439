//! Segmentation metrics and loss: hand-computed cases, and agreement with torchmetrics 1.9.0
//! (`MulticlassJaccardIndex` macro / per class, `MulticlassAccuracy` micro, ignore_index 255)
//! on seeded random batches.
mod common;
use common::*;
use gqcim::tasks::segment::metrics::{seg_loss, ConfusionMatrix};
use std::process::Command;
use tch::{Device, Kind, Tensor};

const CPU: Device = Device::Cpu;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// target [[0, 0, 1], [1, 255, 2]], pred [[0, 1, 1], [1, 2, 0]]: the ignored pixel's
/// prediction (2) must not count. Kept (target, pred) pairs: (0,0) (0,1) (1,1) (1,1) (2,0).
///   confusion (rows target): [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
///   IoU0 = 1 / (2 + 2 - 1) = 1/3; IoU1 = 2 / (2 + 3 - 2) = 2/3; IoU2 = 0 / (1 + 0 - 0) = 0
///   mIoU = (1/3 + 2/3 + 0) / 3 = 1/3; pixel accuracy = 3 / 5.
/// With K = 4, class 3 is in neither target nor prediction: IoU None, mIoU still 1/3.
fn tiny() -> (Tensor, Tensor) {
    let target = Tensor::from_slice(&[0i64, 0, 1, 1, 255, 2]).view([1, 2, 3]);
    let pred = Tensor::from_slice(&[0i64, 1, 1, 1, 2, 0]).view([1, 2, 3]);
    (pred, target)
}

#[test]
fn hand_computed_confusion_iou_and_accuracy() {
    let (pred, target) = tiny();
    let mut cm = ConfusionMatrix::new(3, CPU);
    cm.update(&pred, &target, 255);
    let counts = Vec::<i64>::try_from(cm.counts.flatten(0, -1)).unwrap();
    assert_eq!(counts, vec![1, 1, 0, 0, 2, 0, 1, 0, 0]);
    assert_eq!(cm.total(), 5);
    let iou = cm.per_class_iou();
    let want = [1.0 / 3.0, 2.0 / 3.0, 0.0];
    for (c, (got, want)) in iou.iter().zip(want).enumerate() {
        assert!(close(got.unwrap(), want, 1e-12), "class {c}: {got:?} vs {want}");
    }
    assert!(close(cm.miou(), 1.0 / 3.0, 1e-12), "{}", cm.miou());
    assert!(close(cm.pixel_accuracy(), 0.6, 1e-12));
}

#[test]
fn class_absent_from_target_and_prediction_is_excluded() {
    let (pred, target) = tiny();
    let mut cm = ConfusionMatrix::new(4, CPU);
    cm.update(&pred, &target, 255);
    let iou = cm.per_class_iou();
    assert_eq!(iou[3], None);
    // Counting the absent class as 0 would give 1/4, as 1 would give 1/2.
    assert!(close(cm.miou(), 1.0 / 3.0, 1e-12), "{}", cm.miou());
    // Predicted but never in the target: union > 0, IoU 0, and it does count.
    let mut cm = ConfusionMatrix::new(4, CPU);
    cm.update(&Tensor::from_slice(&[3i64, 0]), &Tensor::from_slice(&[0i64, 0]), 255);
    assert_eq!(cm.per_class_iou(), vec![Some(0.5), None, None, Some(0.0)]);
    assert!(close(cm.miou(), 0.25, 1e-12));
    // Nothing counted: NaN, as torchmetrics' 0 / 0.
    assert!(ConfusionMatrix::new(4, CPU).miou().is_nan());
}

#[test]
fn merge_equals_accumulating_all_batches() {
    let (pred, target) = tiny();
    let mut all = ConfusionMatrix::new(3, CPU);
    all.update(&pred, &target, 255);
    all.update(&pred.flip([2]), &target, 255);
    let mut a = ConfusionMatrix::new(3, CPU);
    let mut b = ConfusionMatrix::new(3, CPU);
    a.update(&pred, &target, 255);
    b.update(&pred.flip([2]), &target, 255);
    a.merge(&b);
    assert!(a.counts.equal(&all.counts));
    a.reset();
    assert_eq!(a.total(), 0);
}

#[test]
#[should_panic(expected = "out of range")]
fn out_of_range_prediction_panics_instead_of_aliasing() {
    let mut cm = ConfusionMatrix::new(3, CPU);
    // target 0 / pred 3 would alias cell (1, 0) of the flattened 3x3 matrix.
    cm.update(&Tensor::from_slice(&[3i64]), &Tensor::from_slice(&[0i64]), 255);
}

/// Pixels (target, logits): A (1, [0, ln 3]) -> -ln(3/4); B (0, [0, 0]) -> ln 2; C ignored.
/// Mean over the two kept pixels: (ln(4/3) + ln 2) / 2.
#[test]
fn loss_ignores_255_pixels() {
    let logits = |c: [f32; 2]| {
        let l3 = 3f32.ln();
        Tensor::from_slice(&[0f32, 0.0, c[0], l3, 0.0, c[1]]).view([1, 2, 1, 3])
    };
    let target = Tensor::from_slice(&[1i64, 0, 255]).view([1, 1, 3]);
    let want = ((4.0f64 / 3.0).ln() + 2f64.ln()) / 2.0;
    let a = seg_loss(&logits([0.0, 0.0]), &target, 255).double_value(&[]);
    let b = seg_loss(&logits([-7.0, 9.0]), &target, 255).double_value(&[]);
    assert!(close(a, want, 1e-6), "{a} vs {want}");
    assert_eq!(a, b, "logits at an ignored pixel changed the loss");
}

#[test]
fn agrees_with_torchmetrics() {
    const K: i64 = 11;
    const ABSENT: i64 = 7;
    tch::manual_seed(11);
    let opts = (Kind::Int64, CPU);
    // Labels in 0..K without ABSENT: draw from K-1 values and skip ABSENT.
    let draw = |shape: [i64; 3]| {
        let v = Tensor::randint(K - 1, shape, opts);
        &v + v.ge(ABSENT).to_kind(Kind::Int64)
    };
    let mut named = Vec::new();
    let mut cm = ConfusionMatrix::new(K, CPU);
    for i in 0..4 {
        let shape = [2, 17, 23];
        let pred = draw(shape);
        // Targets agree with the prediction on ~60% of the pixels, ~10% are ignored.
        let u = Tensor::rand(shape, (Kind::Float, CPU));
        let target = pred.where_self(&u.lt(0.6), &draw(shape));
        let target = target.masked_fill(&u.gt(0.9), 255);
        cm.update(&pred, &target, 255);
        named.push((format!("pred_{i}"), pred));
        named.push((format!("target_{i}"), target));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seg.safetensors");
    Tensor::write_safetensors(&named, &file).unwrap();
    let out = Command::new(python())
        .arg(repo_root().join("tests/python/torchmetrics_iou.py"))
        .arg(&file)
        .arg(K.to_string())
        .output()
        .expect("cannot run the venv python");
    assert!(out.status.success(), "torchmetrics failed: {}", String::from_utf8_lossy(&out.stderr));
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let miou = reference["miou"].as_f64().unwrap();
    let acc = reference["acc"].as_f64().unwrap();
    assert!(close(cm.miou(), miou, 1e-6), "mIoU {} vs torchmetrics {miou}", cm.miou());
    assert!(close(cm.pixel_accuracy(), acc, 1e-6), "acc {} vs {acc}", cm.pixel_accuracy());
    let per_class = reference["per_class"].as_array().unwrap();
    for (c, (ours, theirs)) in cm.per_class_iou().iter().zip(per_class).enumerate() {
        let theirs = theirs.as_f64().unwrap();
        match ours {
            // torchmetrics reports zero_division (0) for a class with an empty union.
            None => assert!(c as i64 == ABSENT && theirs == 0.0, "class {c}: {theirs}"),
            Some(v) => assert!(close(*v, theirs, 1e-6), "class {c}: {v} vs {theirs}"),
        }
    }
    assert_eq!(cm.per_class_iou()[ABSENT as usize], None);
}
