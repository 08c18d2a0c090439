//! Semantic segmentation metrics and loss, as the Pascal VOC benchmark (Everingham et al.,
//! IJCV 2010) and torchmetrics (`MulticlassJaccardIndex`, `MulticlassAccuracy`) define them.
//!
//! A K x K confusion matrix (rows = target, columns = prediction) is accumulated on the
//! tensor side with one `bincount` of `target * K + pred` per batch; pixels whose target is
//! the ignore index are dropped first. From it:
//! - IoU of class c = TP / (TP + FP + FN) = C[c,c] / (row_c + col_c - C[c,c]);
//! - mIoU = the mean IoU over the classes with a non-empty union (present in the target or
//!   predicted somewhere). This is torchmetrics 1.9.0's `average="macro"` choice: its
//!   `_jaccard_index_reduce` gives weight 0 to classes with `confmat.sum(0) + confmat.sum(1)
//!   == 0`, so a class absent from a split neither counts as 0 nor as 1;
//! - pixel accuracy = trace / total over the non-ignored pixels (torchmetrics
//!   `MulticlassAccuracy(average="micro")`).
use tch::{Device, Kind, Reduction, Tensor};

/// A confusion matrix over `k` classes: int64 [k, k], rows = target, columns = prediction.
#[derive(Debug)]
pub struct ConfusionMatrix {
    pub k: i64,
    pub counts: Tensor,
}

impl ConfusionMatrix {
    pub fn new(k: i64, device: Device) -> ConfusionMatrix {
        ConfusionMatrix { k, counts: Tensor::zeros([k, k], (Kind::Int64, device)) }
    }

    /// Adds a batch. pred, target: int64 of the same shape (e.g. [b, h, w]); target pixels
    /// equal to `ignore_index` are skipped whatever their prediction.
    ///
    /// # Panics
    /// If a kept target or a prediction lies outside 0..k: it would otherwise land silently
    /// in another cell of the flattened matrix.
    pub fn update(&mut self, pred: &Tensor, target: &Tensor, ignore_index: i64) {
        assert_eq!(pred.size(), target.size(), "prediction and target shapes differ");
        let keep = target.ne(ignore_index);
        let t = target.masked_select(&keep).to_kind(Kind::Int64);
        let p = pred.masked_select(&keep).to_kind(Kind::Int64);
        let k = self.k;
        let out_of_range = t.lt(0).logical_or(&t.ge(k)).logical_or(&p.lt(0)).logical_or(&p.ge(k));
        let bad = out_of_range.nonzero();
        if bad.size()[0] > 0 {
            let i = bad.int64_value(&[0, 0]);
            panic!(
                "segmentation label out of range for {k} classes: target {}, prediction {}",
                t.int64_value(&[i]),
                p.int64_value(&[i])
            );
        }
        let cells = (t * k + p).bincount::<Tensor>(None, k * k).view([k, k]);
        self.counts += cells.to_device(self.counts.device());
    }

    /// Adds another matrix (e.g. from another evaluation shard).
    pub fn merge(&mut self, other: &ConfusionMatrix) {
        assert_eq!(self.k, other.k, "cannot merge confusion matrices of different sizes");
        self.counts += other.counts.to_device(self.counts.device());
    }

    pub fn reset(&mut self) {
        let _ = self.counts.zero_();
    }

    /// The matrix on the CPU as rows of counts.
    fn rows(&self) -> Vec<Vec<i64>> {
        let flat = Vec::<i64>::try_from(self.counts.to_device(Device::Cpu).flatten(0, -1))
            .expect("confusion matrix is int64");
        flat.chunks(self.k as usize).map(|r| r.to_vec()).collect()
    }

    /// IoU per class; None where the class is neither in the target nor predicted (union 0).
    pub fn per_class_iou(&self) -> Vec<Option<f64>> {
        let rows = self.rows();
        (0..rows.len())
            .map(|c| {
                let tp = rows[c][c];
                let target_c: i64 = rows[c].iter().sum();
                let pred_c: i64 = rows.iter().map(|r| r[c]).sum();
                let union = target_c + pred_c - tp;
                (union > 0).then(|| tp as f64 / union as f64)
            })
            .collect()
    }

    /// Mean IoU over the classes with a non-empty union (the torchmetrics macro convention);
    /// NaN when no pixel has been counted (as torchmetrics' 0 / 0).
    pub fn miou(&self) -> f64 {
        let present: Vec<f64> = self.per_class_iou().into_iter().flatten().collect();
        present.iter().sum::<f64>() / present.len() as f64
    }

    /// Correct pixels / counted pixels; NaN when no pixel has been counted.
    pub fn pixel_accuracy(&self) -> f64 {
        let correct = self.counts.trace().int64_value(&[]);
        let total = self.counts.sum(Kind::Int64).int64_value(&[]);
        correct as f64 / total as f64
    }

    /// Pixels counted so far (ignored ones excluded).
    pub fn total(&self) -> i64 {
        self.counts.sum(Kind::Int64).int64_value(&[])
    }
}

/// Per-pixel cross-entropy, averaged over the pixels whose target is not `ignore_index`
/// (NaN if every pixel is ignored, as PyTorch's `F.cross_entropy`).
/// logits: [b, k, h, w] float, target: int64 [b, h, w] -> scalar.
pub fn seg_loss(logits: &Tensor, target: &Tensor, ignore_index: i64) -> Tensor {
    logits.cross_entropy_loss::<Tensor>(target, None, Reduction::Mean, ignore_index, 0.0)
}
