//! Byte-level entry points shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`, run
//! by `make fuzz`) and their corpus regression test (`tests/fuzz_corpus.rs`, in `make test`),
//! so that the fuzzer and the test exercise exactly the same code.
//!
//! Each entry feeds one input through the project's parsers (no files touched) and returns
//! one [`Outcome`] per reader configuration tried: `Ok` with a short description of what was
//! parsed (the shape a test can check) or the reader's error. The contract the fuzzers check
//! is that none of them panics, overflows, hangs or allocates without bound.
//!
//! Inputs holding two texts (COCO ground truth and detections; a YAML config and its
//! `--set` overrides) separate them with NUL bytes, which neither format allows.
use crate::config::Config;
use crate::data::voc::{parse_voc_xml, parse_yolo_txt, ImageProbe};
use crate::data::{cifar, idx};
use crate::error::{data_err, Result};
use crate::tasks::detect::metrics::score_coco_json;
use crate::tasks::detect::DetectConfig;
use crate::tasks::segment::SegmentConfig;
use std::path::Path;

/// What one reader configuration made of an input.
pub type Outcome = Result<String>;

/// The name every entry gives its input in errors, so a test can check errors name it.
pub const ORIGIN: &str = "fuzz-input";

fn text(data: &[u8]) -> Result<&str> {
    std::str::from_utf8(data).map_err(|e| {
        data_err(ORIGIN, format!("cannot read: stream did not contain valid UTF-8: {e}"))
    })
}

/// IDX reader (raw or gzip), as a 1-d label file and as a 3-d image file.
pub fn idx(data: &[u8]) -> Vec<Outcome> {
    [1, 3]
        .into_iter()
        .map(|ndim| {
            let a = idx::parse_idx_bytes(data, Path::new(ORIGIN), ndim)?;
            Ok(format!("dims {:?}, {} bytes", a.dims, a.data.len()))
        })
        .collect()
}

/// CIFAR binary reader, as CIFAR-10 (1 label byte) and as CIFAR-100 (2 label bytes).
pub fn cifar(data: &[u8]) -> Vec<Outcome> {
    [(1, 10), (2, 100)]
        .into_iter()
        .map(|(label_bytes, classes)| {
            let (px, lb) = cifar::parse_cifar_bytes(data, Path::new(ORIGIN), label_bytes, classes)?;
            Ok(format!("{} records, {} pixel bytes", lb.len(), px.len()))
        })
        .collect()
}

/// Every named image exists and has the given (width, height).
struct FixedImage(u32, u32);

impl ImageProbe for FixedImage {
    fn require(&self, _image: &Path, _referrer: &str) -> Result<()> {
        Ok(())
    }

    fn size(&self, _image: &Path) -> Result<(u32, u32)> {
        Ok((self.0, self.1))
    }
}

fn boxes(ann: &crate::data::voc::ImageAnn, skipped: usize) -> String {
    format!("{}x{}, {} boxes, {} skipped", ann.width, ann.height, ann.boxes.len(), skipped)
}

/// Pascal VOC XML with the classes `Tree`, `cat`, `dog` and 64 x 48 images.
pub fn voc_xml(data: &[u8]) -> Vec<Outcome> {
    let run = || {
        let classes = ["Tree", "cat", "dog"];
        let probe = FixedImage(64, 48);
        let (ann, c) =
            parse_voc_xml(text(data)?, Path::new(ORIGIN), Path::new("img"), &classes, &probe)?;
        Ok(boxes(&ann, c.skipped()))
    };
    vec![run()]
}

/// YOLO txt labels with 3 classes, for a 64 x 48 and a degenerate 0 x 0 image.
pub fn yolo_txt(data: &[u8]) -> Vec<Outcome> {
    [(64, 48), (0, 0)]
        .into_iter()
        .map(|(w, h)| {
            let probe = FixedImage(w, h);
            let (ann, c) =
                parse_yolo_txt(text(data)?, Path::new(ORIGIN), Path::new("img.png"), 3, &probe)?;
            Ok(boxes(&ann, c.skipped()))
        })
        .collect()
}

/// `gqcim metrics detection`: COCO ground truth, NUL, COCO detections (default `[]`).
pub fn coco_json(data: &[u8]) -> Vec<Outcome> {
    let run = || {
        let (gt, pred) = match data.iter().position(|&b| b == 0) {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (data, &b"[]"[..]),
        };
        let v = score_coco_json(text(gt)?, Path::new(ORIGIN), text(pred)?, Path::new(ORIGIN))?;
        Ok(format!(
            "{} images, {} gt, {} dets, map {}",
            v["num_images"], v["num_gt"], v["num_dets"], v["map"]
        ))
    };
    vec![run()]
}

/// The YAML config and `--set` overrides (NUL-separated after the YAML), parsed and
/// validated as a classification, a detection and a segmentation config.
pub fn config(data: &[u8]) -> Vec<Outcome> {
    let mut parts = data.split(|&b| b == 0);
    let yaml = parts.next().unwrap_or_default();
    let overrides: Result<Vec<String>> = parts.map(|p| text(p).map(str::to_string)).collect();
    let prepared = text(yaml).and_then(|y| Ok((y, overrides?)));
    let (yaml, sets) = match prepared {
        Ok(p) => p,
        Err(e) => return vec![Err(e)],
    };
    vec![
        Config::from_yaml_str(yaml, ORIGIN, &sets).map(|c| format!("classify, seed {}", c.seed)),
        DetectConfig::from_yaml_str(yaml, ORIGIN, &sets)
            .map(|c| format!("detect, seed {}", c.seed)),
        SegmentConfig::from_yaml_str(yaml, ORIGIN, &sets)
            .map(|c| format!("segment, seed {}", c.seed)),
    ]
}

/// One fuzz entry point.
pub type Entry = fn(&[u8]) -> Vec<Outcome>;

/// The targets by name, as `make fuzz`, the fuzz crate and the corpus test list them.
pub const TARGETS: [(&str, Entry); 6] = [
    ("idx", idx),
    ("cifar", cifar),
    ("voc_xml", voc_xml),
    ("yolo_txt", yolo_txt),
    ("coco_json", coco_json),
    ("config", config),
];
