//! Box geometry on the prediction grid: cell layout, box coding, GIoU / IoU, and inference
//! (top-k candidates, greedy class-wise NMS on a tensor-side IoU matrix, post-processing).
use super::metrics::Detection;
use super::{DetectEvalConfig, DetectLossConfig};
use crate::nets::yolo::YoloConfig;
use tch::{Device, Kind, Tensor};

/// Per-cell facts of the prediction layout, in the order of the network output.
#[derive(Debug)]
pub struct Grid {
    /// Cell centres in input pixels [N, 2] (x, y).
    pub centres: Tensor,
    /// Stride of each cell's level [N].
    pub strides: Tensor,
    /// Size range of the level (longer box side in (lo, hi]) [N] each.
    pub size_lo: Tensor,
    pub size_hi: Tensor,
    pub num_classes: i64,
    /// Input height and width.
    pub height: i64,
    pub width: i64,
}

impl Grid {
    pub fn new(
        model: &YoloConfig,
        loss: &DetectLossConfig,
        h: i64,
        w: i64,
        device: Device,
    ) -> Grid {
        let (centres, strides) = model.grid(h, w, device);
        let s = model.strides();
        let (mut lo, mut hi) = (Vec::new(), Vec::new());
        for (i, &si) in s.iter().enumerate() {
            let n = (h / si) * (w / si);
            let low = if i == 0 { 0.0 } else { loss.size_ratio * s[i - 1] as f64 };
            let high = if i + 1 == s.len() { f64::INFINITY } else { loss.size_ratio * si as f64 };
            lo.push(Tensor::full([n], low, (Kind::Float, device)));
            hi.push(Tensor::full([n], high, (Kind::Float, device)));
        }
        Grid {
            centres,
            strides,
            size_lo: Tensor::cat(&lo, 0),
            size_hi: Tensor::cat(&hi, 0),
            num_classes: model.num_classes,
            height: h,
            width: w,
        }
    }

    pub fn cells(&self) -> i64 {
        self.strides.size()[0]
    }
}

/// Box distances (l, t, r, b) in strides, through softplus: raw [..., N, 4] -> boxes
/// [..., N, 4] as (x1, y1, x2, y2) in input pixels.
pub fn decode_boxes(raw_box: &Tensor, centres: &Tensor, strides: &Tensor) -> Tensor {
    let d = raw_box.softplus() * strides.unsqueeze(-1);
    let (cx, cy) = (centres.select(-1, 0), centres.select(-1, 1));
    Tensor::stack(
        &[
            &cx - d.select(-1, 0),
            &cy - d.select(-1, 1),
            &cx + d.select(-1, 2),
            &cy + d.select(-1, 3),
        ],
        -1,
    )
}

/// The inverse of `decode_boxes`: boxes [..., 4] -> raw distances [..., 4] (boxes must hold
/// their cell centres; distances are floored at 1e-4 strides).
pub fn encode_boxes(boxes: &Tensor, centres: &Tensor, strides: &Tensor) -> Tensor {
    let (cx, cy) = (centres.select(-1, 0), centres.select(-1, 1));
    let d = Tensor::stack(
        &[
            &cx - boxes.select(-1, 0),
            &cy - boxes.select(-1, 1),
            boxes.select(-1, 2) - &cx,
            boxes.select(-1, 3) - &cy,
        ],
        -1,
    ) / strides.unsqueeze(-1);
    // softplus^-1(v) = log(expm1(v)).
    d.clamp_min(1e-4).expm1().log()
}

/// The decoded prediction: boxes [b, N, 4] and scores sigmoid(obj) * sigmoid(cls) [b, N, C].
pub fn decode(raw: &Tensor, grid: &Grid) -> (Tensor, Tensor) {
    let boxes = decode_boxes(&raw.narrow(-1, 0, 4), &grid.centres, &grid.strides);
    let obj = raw.narrow(-1, 4, 1).sigmoid();
    let cls = raw.narrow(-1, 5, grid.num_classes).sigmoid();
    (boxes, obj * cls)
}

/// Generalized IoU of paired boxes a, b: [..., 4] -> [...].
pub fn giou(a: &Tensor, b: &Tensor) -> Tensor {
    let s = |t: &Tensor, i: i64| t.select(-1, i);
    let area = |t: &Tensor| (s(t, 2) - s(t, 0)).clamp_min(0.0) * (s(t, 3) - s(t, 1)).clamp_min(0.0);
    let iw = (s(a, 2).minimum(&s(b, 2)) - s(a, 0).maximum(&s(b, 0))).clamp_min(0.0);
    let ih = (s(a, 3).minimum(&s(b, 3)) - s(a, 1).maximum(&s(b, 1))).clamp_min(0.0);
    let inter = iw * ih;
    let union = area(a) + area(b) - &inter + 1e-7;
    let cw = s(a, 2).maximum(&s(b, 2)) - s(a, 0).minimum(&s(b, 0));
    let ch = s(a, 3).maximum(&s(b, 3)) - s(a, 1).minimum(&s(b, 1));
    let hull = cw * ch + 1e-7;
    &inter / &union - (&hull - &union) / hull
}

/// IoU of every box of a with every box of b: [..., n, 4] x [..., m, 4] -> [..., n, m].
pub fn pairwise_iou(a: &Tensor, b: &Tensor) -> Tensor {
    let a = a.unsqueeze(-2);
    let b = b.unsqueeze(-3);
    let s = |t: &Tensor, i: i64| t.select(-1, i);
    let iw = (s(&a, 2).minimum(&s(&b, 2)) - s(&a, 0).maximum(&s(&b, 0))).clamp_min(0.0);
    let ih = (s(&a, 3).minimum(&s(&b, 3)) - s(&a, 1).maximum(&s(&b, 1))).clamp_min(0.0);
    let inter = iw * ih;
    let area = |t: &Tensor| (s(t, 2) - s(t, 0)).clamp_min(0.0) * (s(t, 3) - s(t, 1)).clamp_min(0.0);
    let union = area(&a) + area(&b) - &inter;
    &inter / union.clamp_min(1e-9)
}
/// Greedy class-wise NMS over candidates sorted by descending score, for a batch.
///
/// boxes [b, k, 4], classes [b, k], valid [b, k] (bool; candidates must be sorted so that
/// the valid ones of an image come first, by descending score). Returns, per image, the
/// kept candidate indices in score order, at most `max_keep` of them. The IoU matrix is
/// computed on the tensor side; the greedy pass reads it once per batch on the host.
pub fn batched_nms(
    boxes: &Tensor,
    classes: &Tensor,
    valid: &Tensor,
    iou_threshold: f64,
    max_keep: usize,
) -> Vec<Vec<usize>> {
    let size = boxes.size();
    let (b, k) = (size[0] as usize, size[1] as usize);
    if k == 0 {
        return vec![Vec::new(); b];
    }
    let same = classes.unsqueeze(-1).eq_tensor(&classes.unsqueeze(-2));
    let overlap = pairwise_iou(boxes, boxes).gt(iou_threshold).logical_and(&same);
    let overlap =
        Vec::<u8>::try_from(overlap.to_kind(Kind::Uint8).to_device(Device::Cpu).view([-1]))
            .unwrap_or_default();
    let valid = Vec::<u8>::try_from(valid.to_kind(Kind::Uint8).to_device(Device::Cpu).view([-1]))
        .unwrap_or_default();
    (0..b)
        .map(|img| {
            let over = &overlap[img * k * k..(img + 1) * k * k];
            let mut kept: Vec<usize> = Vec::new();
            for i in 0..k {
                if valid[img * k + i] == 0 || kept.len() >= max_keep {
                    break;
                }
                if kept.iter().all(|&j| over[i * k + j] == 0) {
                    kept.push(i);
                }
            }
            kept
        })
        .collect()
}

/// Class-wise NMS of one image's boxes [n, 4], scores [n], classes [n]: the indices kept, by
/// descending score (overlapping boxes of different classes are both kept).
pub fn nms(boxes: &Tensor, scores: &Tensor, classes: &Tensor, iou_threshold: f64) -> Vec<i64> {
    let n = scores.size()[0];
    let (_, order) = scores.sort(0, true);
    let keep = batched_nms(
        &boxes.index_select(0, &order).unsqueeze(0),
        &classes.index_select(0, &order).unsqueeze(0),
        &Tensor::ones([1, n], (Kind::Bool, scores.device())),
        iou_threshold,
        usize::MAX,
    );
    let order = Vec::<i64>::try_from(order.to_device(Device::Cpu)).unwrap_or_default();
    keep[0].iter().map(|&i| order[i]).collect()
}

/// Detections of a batch of raw predictions [b, N, 5 + C]; image ids start at `first_id`.
pub fn postprocess(
    raw: &Tensor,
    grid: &Grid,
    e: &DetectEvalConfig,
    first_id: u64,
) -> Vec<Vec<Detection>> {
    let (boxes, scores) = decode(raw, grid);
    let (h, w) = (grid.height as f64, grid.width as f64);
    let boxes = Tensor::stack(
        &[
            boxes.select(-1, 0).clamp(0.0, w),
            boxes.select(-1, 1).clamp(0.0, h),
            boxes.select(-1, 2).clamp(0.0, w),
            boxes.select(-1, 3).clamp(0.0, h),
        ],
        -1,
    );
    let b = scores.size()[0];
    let c = grid.num_classes;
    let flat = scores.view([b, -1]);
    let k = e.pre_nms_top_k.min(flat.size()[1]);
    let (top, idx) = flat.topk(k, 1, true, true);
    let cell = idx.floor_divide_scalar(c);
    let class = idx.fmod(c);
    let cand = boxes.gather(1, &cell.unsqueeze(-1).expand([b, k, 4], false), false);
    let valid = top.ge(e.score_threshold).logical_and(&top.gt(0.0));
    let keep = batched_nms(&cand, &class, &valid, e.nms_iou, e.max_dets);
    let host = |t: &Tensor| t.to_device(Device::Cpu).contiguous().view([-1]);
    let top = Vec::<f32>::try_from(host(&top.to_kind(Kind::Float))).unwrap_or_default();
    let class = Vec::<i64>::try_from(host(&class)).unwrap_or_default();
    let cand = Vec::<f32>::try_from(host(&cand.to_kind(Kind::Float))).unwrap_or_default();
    let k = k as usize;
    keep.iter()
        .enumerate()
        .map(|(img, kept)| {
            kept.iter()
                .map(|&i| {
                    let o = img * k + i;
                    Detection {
                        image_id: first_id + img as u64,
                        class: class[o] as usize,
                        score: top[o] as f64,
                        bbox: [0, 1, 2, 3].map(|j| cand[o * 4 + j] as f64),
                    }
                })
                .collect()
        })
        .collect()
}
