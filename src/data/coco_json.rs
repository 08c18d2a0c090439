//! Boxes in COCO JSON: the predicted and ground-truth box types of the detection metrics, and
//! reading COCO instances (ground truth, with its category and image index) and COCO results
//! files, with named errors for every malformed entry.
use crate::error::{data_err, GqcimError, Result};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// One predicted box.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Detection {
    pub image_id: u64,
    pub class: usize,
    /// f64 end to end: pycocotools sorts the scores it reads as f64, and two scores closer
    /// than f32 resolution must not tie here when they do not tie there.
    pub score: f64,
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f64; 4],
}

/// One ground-truth box.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GroundTruth {
    pub image_id: u64,
    pub class: usize,
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f64; 4],
    /// VOC `difficult`: neither a positive nor a source of false positives.
    pub difficult: bool,
    /// COCO `iscrowd`: ignored region that may absorb many detections.
    pub iscrowd: bool,
    /// COCO `area` (segment area) used for area ranges; `None` means the box area.
    pub area: Option<f64>,
}

/// The category and image index of a COCO ground-truth file. Class indices are the
/// positions of the category ids sorted ascending (pycocotools' `catIds` order).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CocoMapping {
    /// COCO category id of each class index, ascending.
    pub category_ids: Vec<i64>,
    pub category_names: Vec<String>,
    /// Image ids listed under `images`, ascending.
    pub image_ids: Vec<u64>,
}

impl CocoMapping {
    pub fn num_classes(&self) -> usize {
        self.category_ids.len()
    }

    /// Class index of a COCO category id.
    pub fn class_of(&self, category_id: i64) -> Option<usize> {
        self.category_ids.binary_search(&category_id).ok()
    }

    pub fn has_image(&self, image_id: u64) -> bool {
        self.image_ids.binary_search(&image_id).is_ok()
    }
}

/// Field access on COCO JSON entries with errors naming the file, the entry and field.
struct Entry<'a> {
    path: &'a Path,
    what: String,
    v: &'a Value,
}

impl<'a> Entry<'a> {
    fn err(&self, msg: impl std::fmt::Display) -> GqcimError {
        data_err(self.path, format!("{}: {msg}", self.what))
    }

    fn field(&self, name: &str) -> Result<&'a Value> {
        self.v.get(name).ok_or_else(|| self.err(format!("missing field `{name}`")))
    }

    fn int(&self, name: &str) -> Result<i64> {
        let f = self.field(name)?;
        f.as_i64().ok_or_else(|| self.err(format!("`{name}` is {f}, expected an integer")))
    }

    fn image_id(&self) -> Result<u64> {
        let f = self.field("image_id")?;
        f.as_u64()
            .ok_or_else(|| self.err(format!("`image_id` is {f}, expected a non-negative integer")))
    }

    fn number(&self, name: &str) -> Result<f64> {
        let f = self.field(name)?;
        f.as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| self.err(format!("`{name}` is {f}, expected a finite number")))
    }

    /// `bbox: [x, y, w, h]` -> `[x1, y1, x2, y2]`.
    fn bbox(&self) -> Result<[f64; 4]> {
        let f = self.field("bbox")?;
        let bad = || {
            self.err(format!("`bbox` is {f}, expected [x, y, w, h] with finite numbers, w, h >= 0"))
        };
        let a = f.as_array().filter(|a| a.len() == 4).ok_or_else(bad)?;
        let mut v = [0f64; 4];
        for (slot, x) in v.iter_mut().zip(a) {
            *slot = x.as_f64().filter(|x| x.is_finite()).ok_or_else(bad)?;
        }
        if v[2] < 0.0 || v[3] < 0.0 {
            return Err(bad());
        }
        Ok([v[0], v[1], v[0] + v[2], v[1] + v[3]])
    }
}

pub(crate) fn read_text(path: &Path) -> Result<String> {
    crate::data::read_text_bounded(path, crate::data::MAX_COCO_JSON_BYTES, "COCO JSON file")
}

pub(crate) fn parse_json(text: &str, path: &Path) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| data_err(path, format!("invalid JSON: {e}")))
}

fn array<'a>(path: &Path, v: &'a Value, key: &str) -> Result<&'a Vec<Value>> {
    v.get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| data_err(path, format!("missing or non-array top-level `{key}`")))
}

/// Reads a COCO instances file (`images`, `annotations`, `categories`). Annotations need
/// `image_id` (listed in `images`), `category_id` (listed in `categories`) and `bbox`;
/// `iscrowd` (0/1 or bool) and `area` are optional (default: not crowd, box area).
pub fn read_coco_gt(path: &Path) -> Result<(Vec<GroundTruth>, CocoMapping)> {
    parse_coco_gt(&read_text(path)?, path)
}

/// [`read_coco_gt`] on the file's text; `path` only names the source in errors.
pub fn parse_coco_gt(text: &str, path: &Path) -> Result<(Vec<GroundTruth>, CocoMapping)> {
    let root = parse_json(text, path)?;
    let mut cats: Vec<(i64, String)> = Vec::new();
    for (i, c) in array(path, &root, "categories")?.iter().enumerate() {
        let e = Entry { path, what: format!("categories[{i}]"), v: c };
        let id = e.int("id")?;
        let name =
            c.get("name").and_then(Value::as_str).map_or_else(|| id.to_string(), str::to_string);
        cats.push((id, name));
    }
    cats.sort_by_key(|c| c.0);
    if let Some(w) = cats.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(data_err(path, format!("category id {} is listed twice", w[0].0)));
    }
    let mut images = BTreeSet::new();
    for (i, im) in array(path, &root, "images")?.iter().enumerate() {
        let e = Entry { path, what: format!("images[{i}]"), v: im };
        let f = e.field("id")?;
        images.insert(
            f.as_u64()
                .ok_or_else(|| e.err(format!("`id` is {f}, expected a non-negative integer")))?,
        );
    }
    let mapping = CocoMapping {
        category_ids: cats.iter().map(|c| c.0).collect(),
        category_names: cats.into_iter().map(|c| c.1).collect(),
        image_ids: images.into_iter().collect(),
    };
    let mut gts = Vec::new();
    let mut zero_ids = 0usize;
    for (i, a) in array(path, &root, "annotations")?.iter().enumerate() {
        let e = Entry { path, what: format!("annotations[{i}]"), v: a };
        let image_id = e.image_id()?;
        if !mapping.has_image(image_id) {
            return Err(e.err(format!("image_id {image_id} is not listed under `images`")));
        }
        let cat = e.int("category_id")?;
        let class = mapping
            .class_of(cat)
            .ok_or_else(|| e.err(format!("category_id {cat} is not listed under `categories`")))?;
        let bbox = e.bbox()?;
        let iscrowd = match a.get("iscrowd") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => match v.as_i64() {
                Some(0) => false,
                Some(1) => true,
                _ => return Err(e.err(format!("`iscrowd` is {v}, expected 0 or 1"))),
            },
        };
        let area = match a.get("area") {
            None | Some(Value::Null) => None,
            Some(_) => Some(e.number("area")?),
        };
        zero_ids += usize::from(a.get("id").and_then(Value::as_i64) == Some(0));
        gts.push(GroundTruth { image_id, class, bbox, difficult: false, iscrowd, area });
    }
    if zero_ids > 0 {
        // pycocotools stores the matched GT id as "matched" and so treats id 0 as no match.
        log::warn!(
            "{}: {zero_ids} annotation(s) have id 0; pycocotools would count their matches as false positives",
            path.display()
        );
    }
    Ok((gts, mapping))
}

/// Reads COCO detection results: a list of `{image_id, category_id, bbox: [x, y, w, h],
/// score}`. Unknown images or categories are errors (pycocotools asserts on the former
/// and silently drops the latter, which hides id-offset bugs).
pub fn read_coco_dets(path: &Path, mapping: &CocoMapping) -> Result<Vec<Detection>> {
    parse_coco_dets(&read_text(path)?, path, mapping)
}

/// [`read_coco_dets`] on the file's text; `path` only names the source in errors.
pub fn parse_coco_dets(text: &str, path: &Path, mapping: &CocoMapping) -> Result<Vec<Detection>> {
    let root = parse_json(text, path)?;
    let list =
        root.as_array().ok_or_else(|| data_err(path, "expected a JSON array of detections"))?;
    let mut dets = Vec::with_capacity(list.len());
    for (i, d) in list.iter().enumerate() {
        let e = Entry { path, what: format!("entry [{i}]"), v: d };
        let image_id = e.image_id()?;
        if !mapping.has_image(image_id) {
            return Err(e.err(format!("image_id {image_id} is not an image of the ground truth")));
        }
        let cat = e.int("category_id")?;
        let class = mapping.class_of(cat).ok_or_else(|| {
            e.err(format!("category_id {cat} is not a category of the ground truth"))
        })?;
        let bbox = e.bbox()?;
        let score = e.number("score")?;
        dets.push(Detection { image_id, class, score, bbox });
    }
    Ok(dets)
}
