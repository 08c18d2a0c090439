//! TensorBoard event files, with per-layer weight histograms computed on the tensor side
//! (one `histc` per layer, one copy of 64 bucket counts to the host). Summaries are encoded
//! with tensorboard-rs and written by the fallible writer of `tb_events`: the first failure
//! (a full disk, a non-finite histogram) is kept, later writes are skipped, and `flush`
//! returns it as an error naming the file, so a run stops cleanly instead of aborting.
use crate::error::{GqcimError, Result};
use crate::tb_events::EventWriter;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};
use tensorboard_proto::summary::Summary;
use tensorboard_rs::summary::{histogram_raw, image, scalar};

pub struct Tb {
    dir: PathBuf,
    writer: Option<EventWriter>,
    /// The first error; once set, nothing more is written.
    error: Option<String>,
}

impl Tb {
    pub fn new(dir: &Path) -> Tb {
        match EventWriter::new(dir) {
            Ok(w) => Tb { dir: dir.to_path_buf(), writer: Some(w), error: None },
            Err(e) => Tb { dir: dir.to_path_buf(), writer: None, error: Some(e) },
        }
    }

    fn write(&mut self, summary: impl FnOnce() -> Summary, step: usize) {
        if self.error.is_some() {
            return;
        }
        if let Some(w) = &mut self.writer {
            if let Err(e) = w.add_summary(summary(), step) {
                self.error = Some(e);
            }
        }
    }

    fn fail(&mut self, msg: String) {
        if self.error.is_none() {
            self.error = Some(msg);
        }
    }

    pub fn scalar(&mut self, tag: &str, value: f64, step: usize) {
        self.write(|| scalar(tag, value as f32), step);
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
        if !(min.is_finite() && max.is_finite()) {
            // histc would throw (a panic through tch's non-`f_` call): name the tensor instead.
            let bad = v.isfinite().logical_not().sum(Kind::Int64).int64_value(&[]);
            return self
                .fail(format!("histogram `{tag}`: {bad} of {n} values are NaN or infinite"));
        }
        // histc spans [min, max] of the data; a constant tensor gets a single bucket.
        let (counts, limits): (Vec<f64>, Vec<f64>) = if max > min {
            let counts = match v.f_histc(bins).and_then(Vec::<f64>::try_from) {
                Ok(c) => c,
                Err(e) => return self.fail(format!("histogram `{tag}`: {e}")),
            };
            let width = (max - min) / bins as f64;
            (counts, (1..=bins).map(|i| min + width * i as f64).collect())
        } else {
            (vec![n as f64], vec![max])
        };
        self.write(|| histogram_raw(tag, min, max, n as f64, sum, sum_sq, &limits, &counts), step);
    }

    /// An RGB image, data in CHW order (3 x h x w bytes).
    pub fn image(&mut self, tag: &str, chw: &[u8], h: usize, w: usize, step: usize) {
        // tensorboard-rs builds RgbImage::new(dim[1], dim[2]) i.e. (width = h, height = w),
        // so only square images are laid out correctly; callers pad to square.
        let side = h.max(w);
        if h == w {
            self.write(|| image(tag, &hwc(chw, h, w), &[3, h, w]), step);
        } else {
            let mut sq = vec![0u8; 3 * side * side];
            for c in 0..3 {
                for y in 0..h {
                    let src = &chw[c * h * w + y * w..c * h * w + (y + 1) * w];
                    sq[c * side * side + y * side..c * side * side + y * side + w]
                        .copy_from_slice(src);
                }
            }
            self.write(|| image(tag, &hwc(&sq, side, side), &[3, side, side]), step);
        }
    }

    /// Flushes the events file; returns the first error of this writer (kept: every later
    /// call returns it again), naming the events file.
    pub fn flush(&mut self) -> Result<()> {
        if self.error.is_none() {
            if let Some(w) = &mut self.writer {
                if let Err(e) = w.flush() {
                    self.error = Some(e);
                }
            }
        }
        match &self.error {
            None => Ok(()),
            Some(msg) => {
                let path = self.writer.as_ref().map_or(self.dir.clone(), |w| w.path().into());
                Err(GqcimError::File { path, msg: format!("TensorBoard: {msg}") })
            }
        }
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
