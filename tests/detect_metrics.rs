//! Detection metrics: hand-computed VOC and COCO AP cases (perfect, a fractional AP,
//! difficult GTs, duplicates, crowd regions, classes without GT), the COCO JSON readers'
//! errors, and agreement with pycocotools COCOeval on seeded random data.
mod common;
use common::{python, repo_root};
use gqcim::error::GqcimError;
use gqcim::tasks::detect::metrics::{
    coco_map, read_coco_dets, read_coco_gt, score_coco_files, voc_map, Detection, GroundTruth,
};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

fn gt(image_id: u64, class: usize, bbox: [f64; 4]) -> GroundTruth {
    GroundTruth { image_id, class, bbox, difficult: false, iscrowd: false, area: None }
}

fn det(image_id: u64, class: usize, score: f64, bbox: [f64; 4]) -> Detection {
    Detection { image_id, class, score, bbox }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn perfect_detections_score_one() {
    let gts = vec![
        gt(1, 0, [0.0, 0.0, 10.0, 10.0]),
        gt(1, 1, [5.0, 5.0, 30.0, 40.0]),
        gt(2, 0, [100.0, 50.0, 140.0, 90.0]),
        gt(2, 0, [10.0, 10.0, 20.0, 25.0]),
        gt(3, 1, [0.5, 0.5, 8.5, 9.5]),
    ];
    let dets: Vec<Detection> = gts
        .iter()
        .enumerate()
        .map(|(i, g)| det(g.image_id, g.class, 0.9 - 0.1 * i as f64, g.bbox))
        .collect();
    let voc = voc_map(&dets, &gts, 2, 0.5);
    assert_eq!(voc.per_class_ap, vec![Some(1.0), Some(1.0)]);
    assert!(close(voc.map, 1.0), "{voc:?}");
    let coco = coco_map(&dets, &gts, 2);
    for v in [coco.map, coco.map50, coco.map75] {
        assert!(close(v, 1.0), "{coco:?}");
    }
}

/// Two GTs, three detections: TP (IoU 1), FP (no overlap), TP (IoU 0.64).
///
/// VOC: by score, tp = [1, 0, 1], fp = [0, 1, 0]; recall = [1/2, 1/2, 1],
/// precision = [1, 1/2, 2/3]. Envelope over [0, r..., 1] / [0, p..., 0] from the right:
/// [1, 1, 2/3, 2/3, 0]. Recall steps 0 -> 1/2 (precision 1) and 1/2 -> 1 (precision 2/3):
/// AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
///
/// COCO: the third detection matches at IoU thresholds 0.50, 0.55, 0.60 (IoU 0.64) and is
/// a FP at the seven thresholds >= 0.65. Matching thresholds: the 51 recall thresholds
/// 0.00..0.50 read precision 1, the 50 from 0.51..1.00 read 2/3, so
/// AP_t = (51 + 50 * 2/3) / 101 = 253/303. Other thresholds: recall never exceeds 1/2, so
/// AP_t = 51/101. AP = (3 * 253/303 + 7 * 51/101) / 10 = 1830/3030 = 61/101.
#[test]
fn fractional_ap_matches_hand_derivation() {
    let gts = vec![gt(1, 0, [0.0, 0.0, 10.0, 10.0]), gt(1, 0, [20.0, 0.0, 30.0, 10.0])];
    let dets = vec![
        det(1, 0, 0.9, [0.0, 0.0, 10.0, 10.0]),
        det(1, 0, 0.8, [50.0, 50.0, 60.0, 60.0]),
        det(1, 0, 0.7, [20.0, 0.0, 28.0, 8.0]), // IoU 64 / 100
    ];
    let voc = voc_map(&dets, &gts, 1, 0.5);
    assert!(close(voc.per_class_ap[0].unwrap(), 5.0 / 6.0), "{voc:?}");
    assert!(close(voc.map, 5.0 / 6.0));
    let coco = coco_map(&dets, &gts, 1);
    assert!(close(coco.map50, 253.0 / 303.0), "{coco:?}");
    assert!(close(coco.map75, 51.0 / 101.0), "{coco:?}");
    assert!(close(coco.map, 61.0 / 101.0), "{coco:?}");
    // VOC's threshold is strict (devkit: ovmax > thresh): at 0.64 the third det is a FP.
    let strict = voc_map(&dets, &gts, 1, 0.64);
    assert!(close(strict.map, 0.5), "{strict:?}");
}

/// A detection of a difficult GT ranks first: counted as FP it would halve the AP. A
/// second, undetected difficult GT would cap recall at 1/2 if it counted as a positive.
#[test]
fn difficult_gt_is_neither_positive_nor_false_positive() {
    let mut gts = vec![
        gt(1, 0, [0.0, 0.0, 10.0, 10.0]),
        gt(1, 0, [20.0, 0.0, 30.0, 10.0]),
        gt(1, 0, [40.0, 0.0, 50.0, 10.0]),
    ];
    gts[1].difficult = true;
    gts[2].difficult = true;
    let dets =
        vec![det(1, 0, 0.9, [20.0, 0.0, 30.0, 10.0]), det(1, 0, 0.8, [0.0, 0.0, 10.0, 10.0])];
    let voc = voc_map(&dets, &gts, 1, 0.5);
    assert_eq!(voc.per_class_ap, vec![Some(1.0)], "{voc:?}");
    let coco = coco_map(&dets, &gts, 1);
    assert!(close(coco.map, 1.0), "{coco:?}");
    // Control: the same data without the flags scores lower, so the flags did the work.
    let plain: Vec<GroundTruth> =
        gts.iter().map(|g| GroundTruth { difficult: false, ..*g }).collect();
    assert!(voc_map(&dets, &plain, 1, 0.5).map < 0.9);
}

/// Second detection of the first GT (IoU 0.81) ranks between the two true positives:
/// it must be a FP, giving the same 5/6 as the fractional case (1.0 if it were ignored).
/// COCO: the duplicate is a FP at every threshold and the other detections match at all
/// of them, so every AP_t is 253/303.
#[test]
fn duplicate_detection_is_false_positive() {
    let gts = vec![gt(1, 0, [0.0, 0.0, 10.0, 10.0]), gt(1, 0, [20.0, 0.0, 30.0, 10.0])];
    let dets = vec![
        det(1, 0, 0.9, [0.0, 0.0, 10.0, 10.0]),
        det(1, 0, 0.8, [1.0, 0.0, 10.0, 9.0]),
        det(1, 0, 0.7, [20.0, 0.0, 30.0, 10.0]),
    ];
    let voc = voc_map(&dets, &gts, 1, 0.5);
    assert!(close(voc.map, 5.0 / 6.0), "{voc:?}");
    let coco = coco_map(&dets, &gts, 1);
    assert!(close(coco.map, 253.0 / 303.0), "{coco:?}");
    assert!(close(coco.map50, 253.0 / 303.0), "{coco:?}");
}

/// A crowd region absorbs any number of detections inside it (IoU = intersection over
/// the detection's area) without false positives, and is not a positive itself. A
/// detection of a regular GT inside the region matches the GT, not the region, although
/// both IoUs are 1 (pycocotools stops at ignored GTs once a regular GT matched).
#[test]
fn crowd_region_absorbs_detections() {
    let mut crowd = gt(1, 0, [100.0, 100.0, 200.0, 200.0]);
    crowd.iscrowd = true;
    let gts = vec![crowd, gt(1, 0, [130.0, 110.0, 140.0, 120.0])];
    let dets = vec![
        det(1, 0, 0.9, [102.0, 102.0, 112.0, 115.0]),
        det(1, 0, 0.85, [150.0, 150.0, 170.0, 190.0]),
        det(1, 0, 0.8, [130.0, 110.0, 140.0, 120.0]),
    ];
    let coco = coco_map(&dets, &gts, 1);
    assert!(close(coco.map, 1.0), "{coco:?}");
    let plain = vec![GroundTruth { iscrowd: false, ..gts[0] }, gts[1]];
    assert!(coco_map(&dets, &plain, 1).map < 0.9);
    // VOC treats the crowd region as a difficult box with the ordinary IoU: the small
    // detections inside it overlap it by IoU < 0.5, so they are two FPs ranked before the
    // TP: precision 1/3 at recall 1, AP = 1/3.
    assert!(close(voc_map(&dets, &gts, 1, 0.5).map, 1.0 / 3.0));
}

#[test]
fn class_without_gt_is_excluded_from_mean() {
    let gts = vec![gt(1, 0, [0.0, 0.0, 10.0, 10.0])];
    let dets = vec![
        det(1, 0, 0.5, [0.0, 0.0, 10.0, 10.0]),
        det(1, 1, 0.9, [0.0, 0.0, 10.0, 10.0]), // class 1 has no GT: not an AP of 0
    ];
    let voc = voc_map(&dets, &gts, 3, 0.5);
    assert_eq!(voc.per_class_ap, vec![Some(1.0), None, None]);
    assert!(close(voc.map, 1.0));
    let coco = coco_map(&dets, &gts, 3);
    assert!(
        coco.per_class[0].is_some() && coco.per_class[1].is_none() && coco.per_class[2].is_none()
    );
    assert!(close(coco.map, 1.0), "{coco:?}");
    // No class with a GT at all: pycocotools' -1.
    assert_eq!(coco_map(&dets, &[], 3).map, -1.0);
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_string(v).unwrap()).unwrap();
}

fn gt_file(annotations: Value) -> Value {
    json!({
        "images": [{"id": 4, "width": 10, "height": 10}, {"id": 9, "width": 10, "height": 10}],
        "categories": [{"id": 7, "name": "b"}, {"id": 2, "name": "a"}],
        "annotations": annotations,
    })
}

#[test]
fn coco_readers_map_ids_and_name_bad_entries() {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("gt.json");
    write_json(
        &g,
        &gt_file(json!([
            {"id": 1, "image_id": 4, "category_id": 7, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0},
            {"id": 2, "image_id": 9, "category_id": 2, "bbox": [0, 0, 5, 5], "iscrowd": 1},
        ])),
    );
    let (gts, mapping) = read_coco_gt(&g).unwrap();
    // Category ids sorted ascending -> contiguous classes.
    assert_eq!(mapping.category_ids, vec![2, 7]);
    assert_eq!(mapping.category_names, vec!["a", "b"]);
    assert_eq!(mapping.image_ids, vec![4, 9]);
    assert_eq!(gts[0].class, 1);
    assert_eq!(gts[0].bbox, [1.0, 2.0, 4.0, 6.0]);
    assert_eq!(gts[0].area, Some(12.0));
    assert!(!gts[0].iscrowd && gts[1].iscrowd && gts[1].class == 0);

    let p = dir.path().join("pred.json");
    write_json(&p, &json!([{"image_id": 9, "category_id": 7, "bbox": [1, 1, 2, 2], "score": 0.5}]));
    let dets = read_coco_dets(&p, &mapping).unwrap();
    assert_eq!(dets, vec![det(9, 1, 0.5, [1.0, 1.0, 3.0, 3.0])]);

    let expect_err = |path: &Path, err: GqcimError, needles: &[&str]| match err {
        GqcimError::Data { path: p, msg } => {
            assert_eq!(p, path);
            for n in needles {
                assert!(msg.contains(n), "`{msg}` lacks `{n}`");
            }
        }
        other => panic!("expected a data error, got {other}"),
    };
    let bad_preds = [
        (
            json!([{"image_id": 9, "category_id": 7, "bbox": [1, 1, 2, 2], "score": 0.5},
                {"image_id": 9, "category_id": 3, "bbox": [1, 1, 2, 2], "score": 0.5}]),
            vec!["[1]", "category_id 3"],
        ),
        (
            json!([{"image_id": 5, "category_id": 7, "bbox": [1, 1, 2, 2], "score": 0.5}]),
            vec!["[0]", "image_id 5"],
        ),
        (
            json!([{"image_id": 9, "category_id": 7, "bbox": [1, 1, 2], "score": 0.5}]),
            vec!["[0]", "bbox"],
        ),
        (json!([{"image_id": 9, "category_id": 7, "bbox": [1, 1, 2, 2]}]), vec!["[0]", "score"]),
        (json!({"image_id": 9}), vec!["array"]),
    ];
    for (v, needles) in bad_preds {
        write_json(&p, &v);
        expect_err(&p, read_coco_dets(&p, &mapping).unwrap_err(), &needles);
    }
    write_json(
        &g,
        &gt_file(json!([{"id": 1, "image_id": 4, "category_id": 8, "bbox": [1, 2, 3, 4]}])),
    );
    expect_err(&g, read_coco_gt(&g).unwrap_err(), &["annotations[0]", "category_id 8"]);
    write_json(
        &g,
        &gt_file(json!([{"id": 1, "image_id": 4, "category_id": 2, "bbox": [1, 2, -3, 4]}])),
    );
    expect_err(&g, read_coco_gt(&g).unwrap_err(), &["annotations[0]", "bbox"]);
    std::fs::write(&g, "{not json").unwrap();
    expect_err(&g, read_coco_gt(&g).unwrap_err(), &["invalid JSON"]);
}

/// xorshift64*: a small seeded generator so the random data is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Multiples of 1/64 below 2048 are exact in f32 and so are their sums: the boxes reach
/// our f32 `[x1, y1, x2, y2]` and pycocotools' f64 `[x, y, w, h]` without rounding, and
/// both compute bit-identical IoUs (ties at thresholds included).
fn q64(v: f64) -> f64 {
    (v * 64.0).round() / 64.0
}

/// How the random predictions are scored.
#[derive(Clone, Copy)]
enum Scores {
    /// On a 1/65536 grid, so some tie exactly (stable-sort order matters).
    Grid,
    /// Full f64 resolution in (0, 1], a third of them one ulp from the previous score (a tie
    /// in f32, not in f64), all times `magnitude` (1e-300 .. 1e300).
    Full { magnitude: f64 },
}

/// Seeded COCO GT and predictions: 30 images (ids not contiguous, listed out of order),
/// categories 1, 5, 9, 0-8 GTs per image with some crowd regions, predictions =
/// jittered GTs (sometimes with the wrong category) + random boxes, scores drawn as
/// `scores` says, and two images with over 100 detections of one category.
fn random_coco(seed: u64, scores: Scores) -> (Value, Value) {
    let mut rng = Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1);
    let cats = [1i64, 5, 9];
    let (iw, ih) = (640.0, 480.0);
    let mut images = Vec::new();
    let mut anns = Vec::new();
    let mut preds = Vec::new();
    let mut last = 0.5f64;
    let mut unit_score = move |rng: &mut Rng| match scores {
        Scores::Grid => (1 + rng.below(65535)) as f64 / 65536.0,
        Scores::Full { .. } => {
            last = if rng.below(3) == 0 {
                if rng.below(2) == 0 {
                    last.next_up().min(1.0)
                } else {
                    last.next_down()
                }
            } else {
                ((rng.next() >> 11) + 1) as f64 / (1u64 << 53) as f64
            };
            last
        }
    };
    let magnitude = match scores {
        Scores::Grid => 1.0,
        Scores::Full { magnitude } => magnitude,
    };
    let mut score = move |rng: &mut Rng| unit_score(rng);
    let random_box = |rng: &mut Rng, max_w: f64| {
        let w = q64(2.0 + rng.unit() * max_w);
        let h = q64(2.0 + rng.unit() * max_w);
        [q64(rng.unit() * (iw - w)), q64(rng.unit() * (ih - h)), w, h]
    };
    for i in (0..30u64).rev() {
        let image_id = 3 + 7 * i;
        images.push(json!({"id": image_id, "width": iw, "height": ih, "file_name": format!("{image_id}.jpg")}));
        let heavy = i == 2 || i == 7;
        let n_gt = if heavy { 3 } else { rng.below(9) };
        let mut image_gts = Vec::new();
        let mut push_gt = |rng: &mut Rng, cat: i64, b: [f64; 4], crowd: bool| {
            // A crowd's `area` is its segment area, smaller than its box.
            let area =
                if crowd { q64(b[2] * b[3] * (0.3 + 0.6 * rng.unit())) } else { b[2] * b[3] };
            anns.push(json!({"id": anns.len() + 1, "image_id": image_id, "category_id": cat,
                             "bbox": b, "area": area, "iscrowd": i32::from(crowd)}));
        };
        for _ in 0..n_gt {
            let cat = if heavy { cats[0] } else { cats[rng.below(3) as usize] };
            let crowd = !heavy && rng.unit() < 0.08;
            let b = random_box(&mut rng, if crowd { 300.0 } else { 150.0 });
            push_gt(&mut rng, cat, b, crowd);
            image_gts.push((cat, b));
        }
        // A crowd region around a regular GT of its category: detections of that GT
        // overlap both, which exercises the "regular match beats ignored GT" rule.
        if let Some(&(cat, b)) = image_gts.first().filter(|_| !heavy && rng.unit() < 0.4) {
            let grow = 1.5 + 1.5 * rng.unit();
            let crowd = [
                q64(b[0] - b[2] * (grow - 1.0) / 2.0),
                q64(b[1] - b[3] * (grow - 1.0) / 2.0),
                q64(b[2] * grow),
                q64(b[3] * grow),
            ];
            push_gt(&mut rng, cat, crowd, true);
        }
        for &(cat, b) in &image_gts {
            for _ in 0..rng.below(3) {
                let w = q64((b[2] * (0.85 + 0.3 * rng.unit())).max(1.0));
                let h = q64((b[3] * (0.85 + 0.3 * rng.unit())).max(1.0));
                let x = q64(b[0] + (rng.unit() - 0.5) * 0.2 * b[2]);
                let y = q64(b[1] + (rng.unit() - 0.5) * 0.2 * b[3]);
                let c = if rng.unit() < 0.9 { cat } else { cats[rng.below(3) as usize] };
                // On the heavy images the true positives score below the 115 random boxes,
                // so maxDets = 100 cuts them off.
                let s = if heavy { score(&mut rng) * 0.25 } else { score(&mut rng) };
                preds.push(json!({"image_id": image_id, "category_id": c, "bbox": [x, y, w, h],
                                  "score": s * magnitude}));
            }
        }
        let n_random = if heavy { 115 } else { rng.below(6) };
        for _ in 0..n_random {
            let c = if heavy { cats[0] } else { cats[rng.below(3) as usize] };
            let s = if heavy { 0.25 + 0.75 * score(&mut rng) } else { score(&mut rng) };
            preds.push(json!({"image_id": image_id, "category_id": c,
                              "bbox": random_box(&mut rng, 120.0), "score": s * magnitude}));
        }
    }
    let categories: Vec<Value> =
        cats.iter().map(|c| json!({"id": c, "name": format!("cat{c}")})).collect();
    (json!({"images": images, "annotations": anns, "categories": categories}), Value::Array(preds))
}

/// pycocotools' answer for a GT and a prediction file.
fn pycocotools(gp: &Path, pp: &Path) -> Value {
    let out = Command::new(python())
        .arg(repo_root().join("tests/python/coco_eval.py"))
        .arg(gp)
        .arg(pp)
        .output()
        .expect("cannot run the venv python");
    assert!(out.status.success(), "coco_eval.py failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Agreement to 1e-12: what is left is numpy's pairwise summation in the final means.
const AGREE: f64 = 1e-12;

fn check_against_pycocotools(seed: u64, scores: Scores) {
    let dir = tempfile::tempdir().unwrap();
    let (g, p) = random_coco(seed, scores);
    let (gp, pp) = (dir.path().join("gt.json"), dir.path().join("pred.json"));
    write_json(&gp, &g);
    write_json(&pp, &p);
    let reference = pycocotools(&gp, &pp);
    let ours = score_coco_files(&gp, &pp).unwrap();
    let mut max_diff = 0f64;
    for key in ["map", "map50", "map75"] {
        let (a, b) = (ours[key].as_f64().unwrap(), reference[key].as_f64().unwrap());
        max_diff = max_diff.max((a - b).abs());
        assert!((a - b).abs() < AGREE, "seed {seed} {key}: ours {a}, pycocotools {b}");
        // Non-trivial data: neither all right nor all wrong.
        assert!(a > 0.05 && a < 0.95, "seed {seed} {key} = {a}: the random data is degenerate");
    }
    let ref_classes = reference["per_class"].as_array().unwrap();
    let our_classes = ours["per_class"].as_array().unwrap();
    assert_eq!(ref_classes.len(), our_classes.len());
    for (k, (r, o)) in ref_classes.iter().zip(our_classes).enumerate() {
        let (a, b) = (o["ap"].as_f64().unwrap(), r.as_f64().unwrap());
        max_diff = max_diff.max((a - b).abs());
        assert!((a - b).abs() < AGREE, "seed {seed} class {k}: ours {a}, pycocotools {b}");
    }
    eprintln!("seed {seed}: ours {ours}\npycocotools {reference}\nmax |diff| = {max_diff:e}");
}

#[test]
fn coco_map_agrees_with_pycocotools_seed_1() {
    check_against_pycocotools(1, Scores::Grid);
}

#[test]
fn coco_map_agrees_with_pycocotools_seed_2() {
    check_against_pycocotools(2, Scores::Grid);
}

#[test]
fn coco_map_agrees_with_pycocotools_seed_3() {
    check_against_pycocotools(3, Scores::Grid);
}

/// Scores at full f64 resolution with ulp-apart neighbours, at ordinary and at extreme
/// magnitudes (f32 would round 1e-300 to 0 and 1e300 to inf: everything would tie).
#[test]
fn coco_map_agrees_with_pycocotools_full_resolution_scores() {
    for (seed, magnitude) in [(4, 1.0), (5, 1e-300), (6, 1e300), (7, 4.9e-324 * 1e10)] {
        check_against_pycocotools(seed, Scores::Full { magnitude });
    }
}

/// Three detections of one image and class: a true positive at 0.9, then a false positive
/// scoring 1e-12 above a second true positive, listed after it. In f32 the last two tie and
/// the stable sort puts the true positive first (AP 1.000); in f64, as pycocotools reads
/// them, the false positive comes first.
#[test]
fn scores_closer_than_f32_resolution_do_not_tie() {
    let dir = tempfile::tempdir().unwrap();
    let g = json!({
        "images": [{"id": 1, "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "area": 100, "iscrowd": 0},
        ],
    });
    let p = json!([
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "score": 0.5},
        {"image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10], "score": 0.5 + 1e-12},
    ]);
    assert_eq!((0.5f32 + 1e-12f32), 0.5f32, "the case needs an f32 tie");
    let (gp, pp) = (dir.path().join("gt.json"), dir.path().join("pred.json"));
    write_json(&gp, &g);
    write_json(&pp, &p);
    let reference = pycocotools(&gp, &pp);
    let ours = score_coco_files(&gp, &pp).unwrap();
    for key in ["map", "map50", "map75"] {
        let (a, b) = (ours[key].as_f64().unwrap(), reference[key].as_f64().unwrap());
        assert!((a - b).abs() < AGREE, "{key}: ours {a}, pycocotools {b}");
    }
    // Hand value: precision [1, 1/2, 2/3] at recall [1/2, 1/2, 1]; the interpolated
    // precision is 1 for the 51 recall thresholds <= 0.5 and 2/3 for the other 50.
    let expected = (51.0 + 50.0 * 2.0 / 3.0) / 101.0;
    assert!((ours["map50"].as_f64().unwrap() - expected).abs() < 1e-12, "{ours}");
    assert!((ours["voc_map50"].as_f64().unwrap() - (0.5 + 0.5 * 2.0 / 3.0)).abs() < 1e-12);
}
