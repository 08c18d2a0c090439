//! Training targets (FCOS centre sampling) and the YOLOX-style loss: GIoU on the positives'
//! boxes, BCE objectness on every cell, BCE classes on the positives.
use super::{decode_boxes, giou, DetectLossConfig, Grid};
use tch::{Kind, Reduction, Tensor};

/// Training targets of every cell.
#[derive(Debug)]
pub struct Targets {
    /// [b, N] bool.
    pub positive: Tensor,
    /// Assigned box [b, N, 4] (meaningful where positive).
    pub boxes: Tensor,
    /// Assigned class [b, N] int64, -1 where negative.
    pub classes: Tensor,
}

/// Centre-sampling assignment. gt: [b, G, 5] (class, x1, y1, x2, y2), class -1 = padding.
pub fn assign(gt: &Tensor, grid: &Grid, loss: &DetectLossConfig) -> Targets {
    let gt = gt.to_kind(Kind::Float);
    let cls = gt.select(-1, 0).unsqueeze(1); // [b, 1, G]
    let c = |i: i64| gt.select(-1, i).unsqueeze(1);
    let (x1, y1, x2, y2) = (c(1), c(2), c(3), c(4));
    let cx = grid.centres.select(-1, 0).view([1, -1, 1]); // [1, N, 1]
    let cy = grid.centres.select(-1, 1).view([1, -1, 1]);
    let inside =
        (&cx - &x1).minimum(&(&cy - &y1)).minimum(&(&x2 - &cx)).minimum(&(&y2 - &cy)).gt(0.0);
    let radius = (&grid.strides * loss.center_radius).view([1, -1, 1]);
    let gcx = (&x1 + &x2) * 0.5;
    let gcy = (&y1 + &y2) * 0.5;
    let near =
        (&cx - gcx).abs().lt_tensor(&radius).logical_and(&(&cy - gcy).abs().lt_tensor(&radius));
    let side = (&x2 - &x1).maximum(&(&y2 - &y1));
    let in_level = side
        .gt_tensor(&grid.size_lo.view([1, -1, 1]))
        .logical_and(&side.le_tensor(&grid.size_hi.view([1, -1, 1])));
    let candidate = inside.logical_and(&near).logical_and(&in_level).logical_and(&cls.ge(0.0));
    let area = ((&x2 - &x1) * (&y2 - &y1)).expand(candidate.size(), false);
    let area = area.masked_fill(&candidate.logical_not(), f64::INFINITY);
    let (best, idx) = area.min_dim(2, false); // [b, N]
    let positive = best.isfinite();
    let gt_boxes = gt.narrow(-1, 1, 4); // [b, G, 4]
    let n = grid.cells();
    let b = gt.size()[0];
    let boxes = gt_boxes.gather(1, &idx.unsqueeze(-1).expand([b, n, 4], false), false);
    let classes = gt
        .select(-1, 0)
        .gather(1, &idx, false)
        .to_kind(Kind::Int64)
        .masked_fill(&positive.logical_not(), -1);
    Targets { positive, boxes, classes }
}
/// The loss and its parts (parts detached, for logging).
#[derive(Debug)]
pub struct LossParts {
    pub total: Tensor,
    pub boxes: Tensor,
    pub objectness: Tensor,
    pub classes: Tensor,
    /// Number of positive cells in the batch (int64 scalar).
    pub positives: Tensor,
}

/// The detection loss of raw predictions [b, N, 5 + C] against assigned targets.
pub fn detection_loss(raw: &Tensor, t: &Targets, grid: &Grid, cfg: &DetectLossConfig) -> LossParts {
    let positives = t.positive.sum(Kind::Int64);
    let norm = positives.to_kind(Kind::Float).clamp_min(1.0);
    let obj = raw.select(-1, 4).binary_cross_entropy_with_logits::<Tensor>(
        &t.positive.to_kind(raw.kind()),
        None,
        None,
        Reduction::Sum,
    ) / &norm;
    let pos = t.positive.nonzero(); // [P, 2] (image, cell)
    let (bi, ci) = (pos.select(1, 0), pos.select(1, 1));
    let raw_pos = raw.index(&[Some(&bi), Some(&ci)]); // [P, 5 + C]
    let pred_boxes = decode_boxes(
        &raw_pos.narrow(-1, 0, 4),
        &grid.centres.index_select(0, &ci),
        &grid.strides.index_select(0, &ci),
    );
    let target_boxes = t.boxes.index(&[Some(&bi), Some(&ci)]);
    let boxes = giou(&pred_boxes, &target_boxes).neg().g_add_scalar(1.0).sum(Kind::Float) / &norm;
    let target_cls = t.classes.index(&[Some(&bi), Some(&ci)]).one_hot(grid.num_classes);
    let classes =
        raw_pos.narrow(-1, 5, grid.num_classes).binary_cross_entropy_with_logits::<Tensor>(
            &target_cls.to_kind(raw.kind()),
            None,
            None,
            Reduction::Sum,
        ) / &norm;
    let total = &boxes * cfg.box_weight + &obj * cfg.obj_weight + &classes * cfg.cls_weight;
    LossParts {
        total,
        boxes: boxes.detach(),
        objectness: obj.detach(),
        classes: classes.detach(),
        positives,
    }
}
