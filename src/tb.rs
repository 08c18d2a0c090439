//! TensorBoard event files (tensorboard-rs's record writer and summaries), with per-layer
//! weight histograms computed on the tensor side (one `histc` per layer, one copy of 64
//! bucket counts to the host), images of any aspect ratio and text summaries.
//!
//! tensorboard-rs 0.5 has no text summaries and lays out images as (width = h, height = w),
//! so both are built here from tensorboard-proto's `Summary` message (TensorBoard's
//! `tensorboard/compat/proto/summary.proto`): a text summary is a `Summary.Value` whose
//! `metadata.plugin_data.plugin_name` is `"text"` and whose `tensor` is a `DT_STRING` scalar
//! (what `tensorboard.plugins.text.summary` writes; its plugin renders the string as Markdown).
use protobuf::RepeatedField;
use std::path::Path;
use tch::{Kind, Tensor};
use tensorboard_proto::summary::{
    Summary, SummaryMetadata, SummaryMetadata_PluginData, Summary_Image, Summary_Value,
};
use tensorboard_proto::tensor::TensorProto;
use tensorboard_proto::tensor_shape::TensorShapeProto;
use tensorboard_proto::types::DataType;
use tensorboard_rs::summary::{histogram_raw, scalar};
use tensorboard_rs::summary_writer::FileWriter;

pub struct Tb {
    writer: FileWriter,
}

impl Tb {
    pub fn new(dir: &Path) -> Tb {
        Tb { writer: FileWriter::new(dir) }
    }

    pub fn scalar(&mut self, tag: &str, value: f64, step: usize) {
        self.writer.add_summary(scalar(tag, value as f32), step);
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
        if counts.len() != limits.len() {
            return;
        }
        let s = histogram_raw(tag, min, max, n as f64, sum, sum_sq, &limits, &counts);
        self.writer.add_summary(s, step);
    }

    /// An RGB image, data in CHW order (3 x h x w bytes), stored as a PNG of h rows and w
    /// columns (any aspect ratio). Data of the wrong length is not logged.
    pub fn image(&mut self, tag: &str, chw: &[u8], h: usize, w: usize, step: usize) {
        let Some(png) = png_bytes(chw, h, w) else {
            log::warn!("TensorBoard image {tag}: {} bytes do not make 3 x {h} x {w}", chw.len());
            return;
        };
        let mut img = Summary_Image::new();
        img.set_height(h as i32);
        img.set_width(w as i32);
        img.set_colorspace(3);
        img.set_encoded_image_string(png);
        let mut value = Summary_Value::new();
        value.set_tag(tag.to_string());
        value.set_image(img);
        self.add(value, step);
    }

    /// A text summary (rendered as Markdown by TensorBoard's text plugin).
    pub fn text(&mut self, tag: &str, markdown: &str, step: usize) {
        let mut plugin = SummaryMetadata_PluginData::new();
        plugin.set_plugin_name("text".to_string());
        let mut meta = SummaryMetadata::new();
        meta.set_plugin_data(plugin);
        let mut tensor = TensorProto::new();
        tensor.set_dtype(DataType::DT_STRING);
        // A scalar: a shape with no dimensions.
        tensor.set_tensor_shape(TensorShapeProto::new());
        tensor.set_string_val(RepeatedField::from(vec![markdown.as_bytes().to_vec()]));
        let mut value = Summary_Value::new();
        value.set_tag(tag.to_string());
        value.set_metadata(meta);
        value.set_tensor(tensor);
        self.add(value, step);
    }

    fn add(&mut self, value: Summary_Value, step: usize) {
        let mut summary = Summary::new();
        summary.set_value(RepeatedField::from(vec![value]));
        self.writer.add_summary(summary, step);
    }

    pub fn flush(&mut self) {
        self.writer.flush();
    }
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
