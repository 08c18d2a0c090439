//! Detection metrics: Pascal VOC mAP@0.5 and COCO mAP@[.5:.95].
//!
//! * [`voc_map`] follows the Pascal VOC devkit (2010+ "all-point" AP as in
//!   `VOCevaldet.m` / py-faster-rcnn `voc_eval.py` with `use_07_metric=False`).
//! * [`coco_map`] replicates pycocotools `COCOeval` (2.0.x, `iouType="bbox"`, default
//!   params, `stats[0..3]`) step by step: per image and category evaluation with the same
//!   stable sorts, the same greedy matching loop, crowd handling, `maxDets=100`, and the
//!   101-point recall interpolation of `accumulate()`. IoU is computed in f64 exactly as
//!   `maskUtils.iou` (`bbIou` in `maskApi.c`) does from `[x, y, w, h]`.
//! * COCO JSON readers ([`read_coco_gt`], [`read_coco_dets`]) and [`score_coco_files`],
//!   which backs `gqcim metrics detection --gt G.json --pred P.json`.
//!
//! Boxes are `[x1, y1, x2, y2]` in continuous coordinates (no VOC "+1" pixel convention:
//! width is `x2 - x1`), matching `gqcim::data::voc` and COCO's `[x, y, w, h]`.
//!
//! This is host-side evaluation code (run once per eval, not per training step), so the
//! per-image matching loops are plain Rust: O(D log D + T·D·G) per image and class.
use crate::data::coco_json::read_text;
pub use crate::data::coco_json::{
    parse_coco_dets, parse_coco_gt, read_coco_dets, read_coco_gt, CocoMapping, Detection,
    GroundTruth,
};
use crate::error::Result;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Pascal VOC result: AP per class (`None` for classes without a non-difficult GT) and
/// their mean.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VocResult {
    pub per_class_ap: Vec<Option<f64>>,
    /// Mean over classes with an AP; -1 when there is none (pycocotools' convention).
    pub map: f64,
}

/// COCO AP of one class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CocoClassAp {
    /// AP averaged over IoU 0.50:0.05:0.95.
    pub ap: f64,
    pub ap50: f64,
    pub ap75: f64,
}

/// COCO bbox result (`COCOeval.stats[0..3]`, area "all", maxDets 100).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CocoResult {
    /// mAP@[.5:.95]; -1 when no class has a non-ignored GT, as pycocotools prints.
    pub map: f64,
    pub map50: f64,
    pub map75: f64,
    /// `None` for classes without a non-ignored GT (pycocotools' precision -1).
    pub per_class: Vec<Option<CocoClassAp>>,
}

/// Mean of the present values, -1 when none is present (pycocotools' `_summarize`).
fn mean_present(values: impl Iterator<Item = Option<f64>>) -> f64 {
    let (sum, n) = values.flatten().fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        -1.0
    } else {
        sum / n as f64
    }
}

/// Scores sort descending; NaN sorts last so the comparison is a total order.
fn score_key(s: f64) -> f64 {
    if s.is_nan() {
        f64::NEG_INFINITY
    } else {
        s
    }
}

fn by_score_desc(a: f64, b: f64) -> std::cmp::Ordering {
    score_key(b).partial_cmp(&score_key(a)).unwrap_or(std::cmp::Ordering::Equal)
}

fn check_classes(dets: &[Detection], gts: &[GroundTruth], num_classes: usize) {
    let bad =
        dets.iter().map(|d| d.class).chain(gts.iter().map(|g| g.class)).find(|&c| c >= num_classes);
    assert!(bad.is_none(), "class index {bad:?} out of range (num_classes = {num_classes})");
}

/// Continuous-coordinate IoU (no "+1"): intersection over union of the two rectangles.
fn iou_continuous(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let [ax1, ay1, ax2, ay2] = *a;
    let [bx1, by1, bx2, by2] = *b;
    let iw = (ax2.min(bx2) - ax1.max(bx1)).max(0.0);
    let ih = (ay2.min(by2) - ay1.max(by1)).max(0.0);
    let inter = iw * ih;
    let union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// VOC devkit `voc_ap(use_07_metric=False)`: area under the monotone precision envelope.
fn voc_ap(rec: &[f64], prec: &[f64]) -> f64 {
    let mrec: Vec<f64> = std::iter::once(0.0).chain(rec.iter().copied()).chain([1.0]).collect();
    let mut mpre: Vec<f64> =
        std::iter::once(0.0).chain(prec.iter().copied()).chain([0.0]).collect();
    for i in (0..mpre.len() - 1).rev() {
        mpre[i] = mpre[i].max(mpre[i + 1]);
    }
    (0..mrec.len() - 1)
        .filter(|&i| mrec[i + 1] != mrec[i])
        .map(|i| (mrec[i + 1] - mrec[i]) * mpre[i + 1])
        .sum()
}

/// Pascal VOC (2010+) mAP at one IoU threshold.
///
/// Devkit semantics: per class, detections are taken by descending score (stable for
/// ties); each is compared with the GT of its image and class having the highest IoU
/// (first on ties). If that IoU is `> iou_thr` (strict, as the devkit): a difficult GT
/// (`difficult` or `iscrowd`) makes the detection neither TP nor FP; an unmatched GT makes
/// it a TP and is marked; an already matched GT makes it a duplicate, i.e. a FP, even if
/// another GT overlaps it less. Otherwise it is a FP. Positives are the non-difficult GTs;
/// classes without any are `None` and left out of the mean. IoU uses continuous
/// coordinates (no "+1" on widths, unlike the devkit's integer pixel boxes).
///
/// Panics if a class index is `>= num_classes`.
pub fn voc_map(
    dets: &[Detection],
    gts: &[GroundTruth],
    num_classes: usize,
    iou_thr: f64,
) -> VocResult {
    check_classes(dets, gts, num_classes);
    let mut gt_of: HashMap<(usize, u64), Vec<usize>> = HashMap::new();
    let mut npos = vec![0usize; num_classes];
    for (i, g) in gts.iter().enumerate() {
        gt_of.entry((g.class, g.image_id)).or_default().push(i);
        if !(g.difficult || g.iscrowd) {
            npos[g.class] += 1;
        }
    }
    let mut dets_of: Vec<Vec<&Detection>> = vec![Vec::new(); num_classes];
    for d in dets {
        dets_of[d.class].push(d);
    }
    let mut per_class_ap = vec![None; num_classes];
    for (c, ds) in dets_of.iter_mut().enumerate() {
        if npos[c] == 0 {
            continue;
        }
        ds.sort_by(|a, b| by_score_desc(a.score, b.score));
        let mut used = vec![false; gts.len()];
        let (mut tp, mut fp) = (0usize, 0usize);
        let mut rec = Vec::with_capacity(ds.len());
        let mut prec = Vec::with_capacity(ds.len());
        for d in ds.iter() {
            let mut best: Option<(f64, usize)> = None;
            for &gi in gt_of.get(&(c, d.image_id)).map_or(&[][..], |v| v) {
                let o = iou_continuous(&d.bbox, &gts[gi].bbox);
                if best.is_none_or(|(b, _)| o > b) {
                    best = Some((o, gi));
                }
            }
            match best {
                Some((o, gi)) if o > iou_thr => {
                    if gts[gi].difficult || gts[gi].iscrowd {
                        // Neither TP nor FP; the devkit keeps the entry in its cumsum.
                    } else if !used[gi] {
                        used[gi] = true;
                        tp += 1;
                    } else {
                        fp += 1;
                    }
                }
                _ => fp += 1,
            }
            rec.push(tp as f64 / npos[c] as f64);
            prec.push(tp as f64 / ((tp + fp) as f64).max(f64::EPSILON));
        }
        per_class_ap[c] = Some(voc_ap(&rec, &prec));
    }
    let map = mean_present(per_class_ap.iter().copied());
    VocResult { per_class_ap, map }
}

/// Number of COCO IoU thresholds.
const NUM_IOU: usize = 10;
/// Number of COCO recall thresholds.
const NUM_REC: usize = 101;
/// pycocotools' default `maxDets[-1]`.
const MAX_DETS: usize = 100;
/// pycocotools' area range "all": `[0 ** 2, 1e5 ** 2]`.
const AREA_ALL: (f64, f64) = (0.0, 1e10);

/// `np.linspace(start, stop, n)` bit for bit: `k * ((stop - start) / (n - 1)) + start`,
/// last element set to `stop`. pycocotools compares IoUs and recalls against these, so
/// a last-bit difference could flip a match.
fn linspace<const N: usize>(start: f64, stop: f64) -> [f64; N] {
    let step = (stop - start) / (N - 1) as f64;
    let mut out = [0.0; N];
    for (k, v) in out.iter_mut().enumerate() {
        *v = k as f64 * step + start;
    }
    out[N - 1] = stop;
    out
}

/// `[x, y, w, h]` in f64 as pycocotools stores boxes.
fn xywh(b: &[f64; 4]) -> [f64; 4] {
    let [x1, y1, x2, y2] = *b;
    [x1, y1, x2 - x1, y2 - y1]
}

/// `bbIou` of pycocotools' `maskApi.c`, same operation order: for a crowd GT the union is
/// the detection's area.
fn coco_iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let w = (d[2] + d[0]).min(g[2] + g[0]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[3] + d[1]).min(g[3] + g[1]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let (da, ga) = (d[2] * d[3], g[2] * g[3]);
    let i = w * h;
    let u = if crowd { da } else { da + ga - i };
    i / u
}

/// One kept detection of `evaluateImg`: its score and, per IoU threshold (bit t), whether
/// it matched and whether it is ignored.
#[derive(Clone, Copy)]
struct EvalDet {
    score: f64,
    matched: u16,
    ignored: u16,
}

/// pycocotools `evaluateImg` for one image and category (area "all", maxDets 100).
/// Returns the kept detections and the number of non-ignored GTs.
fn coco_eval_image(
    dets: &[&Detection],
    gts: &[&GroundTruth],
    iou_thrs: &[f64; NUM_IOU],
) -> (Vec<EvalDet>, usize) {
    // GT ignore flag: crowd (pycocotools), difficult (VOC data fed to COCO metrics), or
    // area outside the range; ignored GTs go last (stable, as np.argsort mergesort).
    let mut g: Vec<(bool, bool, [f64; 4])> = gts
        .iter()
        .map(|gt| {
            let b = xywh(&gt.bbox);
            let area = gt.area.unwrap_or(b[2] * b[3]);
            let ignore = gt.iscrowd || gt.difficult || area < AREA_ALL.0 || area > AREA_ALL.1;
            (ignore, gt.iscrowd, b)
        })
        .collect();
    g.sort_by_key(|&(ignore, _, _)| ignore);
    let n_pos = g.iter().filter(|x| !x.0).count();

    let mut d: Vec<&Detection> = dets.to_vec();
    d.sort_by(|a, b| by_score_desc(a.score, b.score));
    d.truncate(MAX_DETS);

    let dboxes: Vec<[f64; 4]> = d.iter().map(|x| xywh(&x.bbox)).collect();
    let ious: Vec<Vec<f64>> = dboxes
        .iter()
        .map(|db| g.iter().map(|&(_, crowd, gb)| coco_iou(db, &gb, crowd)).collect())
        .collect();

    let mut out: Vec<EvalDet> =
        d.iter().map(|x| EvalDet { score: x.score, matched: 0, ignored: 0 }).collect();
    let mut gt_matched = vec![false; g.len()];
    for (t, &thr) in iou_thrs.iter().enumerate() {
        gt_matched.fill(false);
        for (di, row) in ious.iter().enumerate() {
            let mut best_iou = thr.min(1.0 - 1e-10);
            let mut m: Option<usize> = None;
            for (gi, &(g_ignore, g_crowd, _)) in g.iter().enumerate() {
                // A matched GT is taken, unless it is a crowd region.
                if gt_matched[gi] && !g_crowd {
                    continue;
                }
                // Once matched to a regular GT, ignored GTs (sorted last) cannot win.
                if m.is_some_and(|m| !g[m].0) && g_ignore {
                    break;
                }
                if row[gi] < best_iou {
                    continue;
                }
                best_iou = row[gi];
                m = Some(gi);
            }
            if let Some(m) = m {
                out[di].matched |= 1 << t;
                if g[m].0 {
                    out[di].ignored |= 1 << t;
                }
                gt_matched[m] = true;
            }
        }
    }
    // Unmatched detections outside the area range are ignored.
    for (e, b) in out.iter_mut().zip(&dboxes) {
        let area = b[2] * b[3];
        if area < AREA_ALL.0 || area > AREA_ALL.1 {
            e.ignored |= !e.matched & ((1 << NUM_IOU) - 1);
        }
    }
    (out, n_pos)
}

/// pycocotools `accumulate` for one category: the 101-point interpolated precision
/// averaged over recall thresholds, per IoU threshold.
fn coco_accumulate(
    mut all: Vec<EvalDet>,
    n_pos: usize,
    rec_thrs: &[f64; NUM_REC],
) -> [f64; NUM_IOU] {
    // Stable, as np.argsort(kind="mergesort") over the image-ordered concatenation.
    all.sort_by(|a, b| by_score_desc(a.score, b.score));
    let mut ap = [0.0; NUM_IOU];
    let mut rc = Vec::with_capacity(all.len());
    let mut pr = Vec::with_capacity(all.len());
    for (t, ap_t) in ap.iter_mut().enumerate() {
        rc.clear();
        pr.clear();
        let (mut tp, mut fp) = (0.0f64, 0.0f64);
        for e in &all {
            let ignored = e.ignored >> t & 1 == 1;
            let matched = e.matched >> t & 1 == 1;
            if !ignored {
                if matched {
                    tp += 1.0;
                } else {
                    fp += 1.0;
                }
            }
            rc.push(tp / n_pos as f64);
            pr.push(tp / (fp + tp + f64::EPSILON));
        }
        for i in (1..pr.len()).rev() {
            if pr[i] > pr[i - 1] {
                pr[i - 1] = pr[i];
            }
        }
        let mut q_sum = 0.0;
        for &r in rec_thrs {
            // np.searchsorted(rc, r, side="left"); past the end the rest of q stays 0.
            let i = rc.partition_point(|&x| x < r);
            if i >= pr.len() {
                break;
            }
            q_sum += pr[i];
        }
        *ap_t = q_sum / NUM_REC as f64;
    }
    ap
}

/// COCO bbox mAP as pycocotools `COCOeval(iouType="bbox")` computes `stats[0..3]`.
///
/// Images are the union of the image ids in `gts` and `dets` (pycocotools uses the GT
/// file's image list and rejects detections on other images; images with neither GT nor
/// detections do not change the result). Per image and class: detections sorted by score
/// (stable), top 100 kept; GTs that are `iscrowd`, `difficult`, or whose `area` is outside
/// [0, 1e10] are ignored (a detection matched to them counts neither way); crowd GTs use
/// intersection over detection area and can absorb many detections. One difference from
/// pycocotools: there a GT annotation with `id` 0 silently counts its match as a false
/// positive; here every GT is matched normally.
///
/// Panics if a class index is `>= num_classes`.
pub fn coco_map(dets: &[Detection], gts: &[GroundTruth], num_classes: usize) -> CocoResult {
    check_classes(dets, gts, num_classes);
    let iou_thrs = linspace::<NUM_IOU>(0.5, 0.95);
    let rec_thrs = linspace::<NUM_REC>(0.0, 1.0);
    // Ordered by class then image id: the order in which accumulate() concatenates.
    type Group<'a> = (Vec<&'a GroundTruth>, Vec<&'a Detection>);
    let mut groups: BTreeMap<(usize, u64), Group> = BTreeMap::new();
    for g in gts {
        groups.entry((g.class, g.image_id)).or_default().0.push(g);
    }
    for d in dets {
        groups.entry((d.class, d.image_id)).or_default().1.push(d);
    }
    let mut per_class_dets: Vec<Vec<EvalDet>> = vec![Vec::new(); num_classes];
    let mut n_pos = vec![0usize; num_classes];
    for (&(c, _), (g, d)) in &groups {
        let (evals, n) = coco_eval_image(d, g, &iou_thrs);
        per_class_dets[c].extend(evals);
        n_pos[c] += n;
    }
    // iou_thrs[0] == 0.5 and iou_thrs[5] == 0.75 exactly, as pycocotools' np.where finds.
    let i75 = iou_thrs.iter().position(|&t| t == 0.75).expect("0.75 is a COCO IoU threshold");
    let per_class: Vec<Option<CocoClassAp>> = per_class_dets
        .into_iter()
        .zip(&n_pos)
        .map(|(all, &n)| {
            (n > 0).then(|| {
                let ap = coco_accumulate(all, n, &rec_thrs);
                CocoClassAp {
                    ap: ap.iter().sum::<f64>() / NUM_IOU as f64,
                    ap50: ap[0],
                    ap75: ap[i75],
                }
            })
        })
        .collect();
    CocoResult {
        map: mean_present(per_class.iter().map(|c| c.map(|c| c.ap))),
        map50: mean_present(per_class.iter().map(|c| c.map(|c| c.ap50))),
        map75: mean_present(per_class.iter().map(|c| c.map(|c| c.ap75))),
        per_class,
    }
}

/// Scores a COCO results file against a COCO GT file: COCO mAP@[.5:.95], @.5, @.75
/// (pycocotools semantics) and VOC all-point mAP@0.5 (crowd GTs as difficult), with per
/// class values (`null` where the class has no positive GT).
pub fn score_coco_files(gt: &Path, pred: &Path) -> Result<Value> {
    score_coco_json(&read_text(gt)?, gt, &read_text(pred)?, pred)
}

/// [`score_coco_files`] on the two files' texts; the paths only name them in errors.
pub fn score_coco_json(gt_text: &str, gt: &Path, pred_text: &str, pred: &Path) -> Result<Value> {
    let (gts, mapping) = parse_coco_gt(gt_text, gt)?;
    let dets = parse_coco_dets(pred_text, pred, &mapping)?;
    let k = mapping.num_classes();
    let coco = coco_map(&dets, &gts, k);
    let voc = voc_map(&dets, &gts, k, 0.5);
    let per_class: Vec<Value> = (0..k)
        .map(|c| {
            let cc = coco.per_class[c];
            json!({
                "category_id": mapping.category_ids[c],
                "name": mapping.category_names[c],
                "ap": cc.map(|x| x.ap),
                "ap50": cc.map(|x| x.ap50),
                "ap75": cc.map(|x| x.ap75),
                "voc_ap50": voc.per_class_ap[c],
            })
        })
        .collect();
    Ok(json!({
        "map": coco.map,
        "map50": coco.map50,
        "map75": coco.map75,
        "voc_map50": voc.map,
        "num_images": mapping.image_ids.len(),
        "num_gt": gts.len(),
        "num_dets": dets.len(),
        "per_class": per_class,
    }))
}
