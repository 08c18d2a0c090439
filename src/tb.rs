//! TensorBoard event files, with per-layer weight histograms computed on the tensor side
//! (one `histc` per layer, one copy of 64 bucket counts to the host). Summaries are encoded
//! with tensorboard-rs and written by the fallible writer of `tb_events`: the first failure
//! (a full disk, a non-finite histogram) is kept, later writes are skipped, and `flush`
//! returns it as an error naming the file, so a run stops cleanly instead of aborting.
//!
//! tensorboard-rs 0.5 has no text summaries and lays images out as (width = h, height = w),
//! so both are built here from tensorboard-proto's `Summary` message (TensorBoard's
//! `tensorboard/compat/proto/summary.proto`): a text summary is a `Summary.Value` whose
//! `metadata.plugin_data.plugin_name` is `"text"` and whose `tensor` is a `DT_STRING` scalar
//! (what `tensorboard.plugins.text.summary` writes; its plugin renders it as Markdown), an
//! image is a PNG of any aspect ratio in `Summary.Image`.
use crate::error::{GqcimError, Result};
use crate::tb_events::EventWriter;
use protobuf::RepeatedField;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};
use tensorboard_proto::summary::{
    Summary, SummaryMetadata, SummaryMetadata_PluginData, Summary_Image, Summary_Value,
};
use tensorboard_proto::tensor::TensorProto;
use tensorboard_proto::tensor_shape::TensorShapeProto;
use tensorboard_proto::types::DataType;
use tensorboard_rs::summary::{histogram_raw, scalar};

/// Name of the events file a [`Tb::replaceable`] writer leaves behind. TensorBoard reads
/// every file whose name contains `tfevents`; the fixed name makes a rewrite replace it.
pub const REPLACEABLE_EVENTS: &str = "events.out.tfevents.0000000000.gqcim-merge";
/// Name of a unit's own events file in its sub-run (fixed, so a unit that is run again
/// after an interruption replaces its partial log instead of adding a second one).
pub const UNIT_EVENTS: &str = "events.out.tfevents.0000000000.gqcim-unit";
/// Where a replaceable writer writes until `commit` (no `tfevents` in the name: TensorBoard
/// never reads a half-written file).
const PENDING_EVENTS: &str = ".gqcim-merge-events.pending";

pub struct Tb {
    dir: PathBuf,
    writer: Option<EventWriter>,
    /// The first error; once set, nothing more is written.
    error: Option<String>,
}

impl Tb {
    pub fn new(dir: &Path) -> Tb {
        Self::from(dir, EventWriter::new(dir))
    }

    fn from(dir: &Path, w: std::result::Result<EventWriter, String>) -> Tb {
        match w {
            Ok(w) => Tb { dir: dir.to_path_buf(), writer: Some(w), error: None },
            Err(e) => Tb { dir: dir.to_path_buf(), writer: None, error: Some(e) },
        }
    }

    /// A writer of `dir/<name>` (created or truncated) with the clock's wall times.
    pub fn at_file(dir: &Path, name: &str) -> Tb {
        let w = std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))
            .and_then(|_| EventWriter::at_path(&dir.join(name)));
        Self::from(dir, w)
    }

    /// A writer whose output replaces `dir/REPLACEABLE_EVENTS` on [`Tb::commit`]: events
    /// carry `wall_time` instead of the clock, so the same summaries give the same file,
    /// and a crash before `commit` leaves the previous file whole.
    pub fn replaceable(dir: &Path, wall_time: f64) -> Tb {
        let w = std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))
            .and_then(|_| EventWriter::at_path_fixed_time(&dir.join(PENDING_EVENTS), wall_time));
        Self::from(dir, w)
    }

    /// Flushes a [`Tb::replaceable`] writer and moves its file into place.
    pub fn commit(mut self) -> Result<()> {
        self.flush()?;
        let to = self.dir.join(REPLACEABLE_EVENTS);
        self.writer = None;
        std::fs::rename(self.dir.join(PENDING_EVENTS), &to).map_err(|e| GqcimError::File {
            path: to,
            msg: format!("TensorBoard: cannot move the events file into place: {e}"),
        })
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

    /// An RGB image, data in CHW order (3 x h x w bytes), stored as a PNG of h rows and w
    /// columns (any aspect ratio). Data of the wrong length is an error of this writer.
    pub fn image(&mut self, tag: &str, chw: &[u8], h: usize, w: usize, step: usize) {
        let Some(png) = png_bytes(chw, h, w) else {
            let n = chw.len();
            return self.fail(format!("image `{tag}`: {n} bytes do not make a 3 x {h} x {w} PNG"));
        };
        let mut img = Summary_Image::new();
        img.set_height(h as i32);
        img.set_width(w as i32);
        img.set_colorspace(3);
        img.set_encoded_image_string(png);
        let mut value = Summary_Value::new();
        value.set_tag(tag.to_string());
        value.set_image(img);
        self.write(|| one_value(value), step);
    }

    /// A text summary (rendered as Markdown by TensorBoard's text plugin).
    pub fn text(&mut self, tag: &str, markdown: &str, step: usize) {
        let mut plugin = SummaryMetadata_PluginData::new();
        plugin.set_plugin_name("text".to_string());
        let mut meta = SummaryMetadata::new();
        meta.set_plugin_data(plugin);
        let mut tensor = TensorProto::new();
        tensor.set_dtype(DataType::DT_STRING);
        // A scalar: a shape without dimensions.
        tensor.set_tensor_shape(TensorShapeProto::new());
        tensor.set_string_val(RepeatedField::from(vec![markdown.as_bytes().to_vec()]));
        let mut value = Summary_Value::new();
        value.set_tag(tag.to_string());
        value.set_metadata(meta);
        value.set_tensor(tensor);
        self.write(|| one_value(value), step);
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

fn one_value(value: Summary_Value) -> Summary {
    let mut summary = Summary::new();
    summary.set_value(RepeatedField::from(vec![value]));
    summary
}

/// CHW bytes -> PNG file bytes (None when the length is not 3 * h * w or encoding fails).
pub fn png_bytes(chw: &[u8], h: usize, w: usize) -> Option<Vec<u8>> {
    if chw.len() != 3 * h * w || h == 0 || w == 0 {
        return None;
    }
    let img = image::RgbImage::from_raw(w as u32, h as u32, hwc(chw, h, w))?;
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).ok()?;
    Some(out.into_inner())
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
