//! TensorBoard event files (tensorboard-rs), with per-layer weight histograms computed on
//! the tensor side (one `histc` per layer, one copy of 64 bucket counts to the host).
use std::path::Path;
use tch::{Kind, Tensor};
use tensorboard_rs::summary_writer::SummaryWriter;

pub struct Tb {
    writer: SummaryWriter,
}

impl Tb {
    pub fn new(dir: &Path) -> Tb {
        Tb { writer: SummaryWriter::new(dir) }
    }

    pub fn scalar(&mut self, tag: &str, value: f64, step: usize) {
        self.writer.add_scalar(tag, value as f32, step);
    }

    /// A histogram of a tensor's values with `bins` equal-width buckets.
    pub fn histogram(&mut self, tag: &str, values: &Tensor, step: usize, bins: i64) {
        let v = values.detach().to_kind(Kind::Double).flatten(0, -1);
        let n = v.numel();
        if n == 0 {
            return;
        }
        let (min, max) = (v.min().double_value(&[]), v.max().double_value(&[]));
        let sum = v.sum(Kind::Double).double_value(&[]);
        let sum_sq = v.square().sum(Kind::Double).double_value(&[]);
        // histc spans [min, max] of the data; a constant tensor gets a single bucket.
        let (counts, limits): (Vec<f64>, Vec<f64>) = if max > min {
            let counts = Vec::<f64>::try_from(v.histc(bins)).unwrap_or_default();
            let width = (max - min) / bins as f64;
            (counts, (1..=bins).map(|i| min + width * i as f64).collect())
        } else {
            (vec![n as f64], vec![max])
        };
        self.writer.add_histogram_raw(tag, min, max, n as f64, sum, sum_sq, &limits, &counts, step);
    }

    /// An RGB image, data in CHW order (3 x h x w bytes).
    pub fn image(&mut self, tag: &str, chw: &[u8], h: usize, w: usize, step: usize) {
        // tensorboard-rs builds RgbImage::new(dim[1], dim[2]) i.e. (width = h, height = w),
        // so only square images are laid out correctly; callers pad to square.
        let side = h.max(w);
        if h == w {
            self.writer.add_image(tag, &hwc(chw, h, w), &[3, h, w], step);
        } else {
            let mut sq = vec![0u8; 3 * side * side];
            for c in 0..3 {
                for y in 0..h {
                    let src = &chw[c * h * w + y * w..c * h * w + (y + 1) * w];
                    sq[c * side * side + y * side..c * side * side + y * side + w]
                        .copy_from_slice(src);
                }
            }
            self.writer.add_image(tag, &hwc(&sq, side, side), &[3, side, side], step);
        }
    }

    pub fn flush(&mut self) {
        self.writer.flush();
    }
}

/// CHW -> HWC interleaved bytes (what the image crate expects).
fn hwc(chw: &[u8], h: usize, w: usize) -> Vec<u8> {
    let mut out = vec![0u8; 3 * h * w];
    for c in 0..3 {
        for i in 0..h * w {
            out[i * 3 + c] = chw[c * h * w + i];
        }
    }
    out
}
