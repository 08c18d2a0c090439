//! Detection datasets in their own layouts, listed split by split:
//!
//! - Pascal VOC (devkit layout): `<root>/ImageSets/Main/<split>.txt` lists image ids, one a
//!   line; `<root>/Annotations/<id>.xml` holds the boxes and names the image in
//!   `JPEGImages/`. Class names: `data.classes`, else the 20 VOC classes.
//! - YOLO (Ultralytics layout): `<root>/data.yaml` with `names` (list or `{id: name}` map)
//!   and one entry per split (`train: images/train`), a folder of images or a `.txt` list
//!   of image paths, relative to the root; the labels of `.../images/.../a.jpg` are in
//!   `.../labels/.../a.txt` (no label file: an image without objects).
//! - COCO: `<root>/annotations/instances_<split>.json`, images in `<root>/<split>/`; class
//!   names from `categories` ordered by id (pycocotools' `catIds` order); `iscrowd` boxes
//!   are kept as `difficult` (ignored by the metric, not trained on).
//!
//! All three give `voc::ImageAnn` in 0-based continuous pixel corners (`voc` module docs),
//! so the same dataset written in any of the layouts gives the same boxes. The box policy is
//! `voc`'s: zero-area, inverted and fully-outside boxes are dropped and boxes partly outside
//! are clipped, each counted and logged (per file and for the split); malformed numbers,
//! unknown classes, unknown image ids and missing files are errors naming the file.
use super::rgb::{join_inside, load_letterboxed};
use super::voc::{place_box, read_voc_xml, read_yolo_txt, BoxAnn, ImageAnn, SkipCounts};
use crate::error::{data_err, invalid, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Where detection data comes from (`data.dataset`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DetDataset {
    /// Generated Fashion-MNIST scenes (`data.scenes`).
    #[default]
    Scenes,
    Voc,
    Yolo,
    Coco,
}

impl DetDataset {
    /// The splits trained and tested on when `data.train_split` / `data.test_split` are unset.
    pub fn default_splits(self) -> (&'static str, &'static str) {
        match self {
            DetDataset::Coco => ("train2017", "val2017"),
            _ => ("train", "val"),
        }
    }
}

/// The 20 Pascal VOC classes in the devkit's order.
pub const VOC_CLASSES: [&str; 20] = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
];

/// One split's annotations, before any image is decoded.
#[derive(Debug, Clone)]
pub struct Listing {
    pub anns: Vec<ImageAnn>,
    pub classes: Vec<String>,
    pub counts: SkipCounts,
    /// The file that defines the split (split list, data.yaml or COCO JSON), for messages.
    pub source: PathBuf,
}

/// Reads a split list: the first token of each non-blank line (VOC's per-class lists carry
/// a second column), with its 1-based line number.
pub fn read_id_list(path: &Path) -> Result<Vec<(usize, String)>> {
    let text = super::read_text_bounded(path, super::MAX_COCO_JSON_BYTES, "split list")?;
    Ok(text
        .lines()
        .enumerate()
        .filter_map(|(i, l)| l.split_whitespace().next().map(|t| (i + 1, t.to_string())))
        .collect())
}

fn require_file(path: &Path, referrer: &Path, line: usize, what: &str) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        Err(data_err(referrer, format!("line {line}: {what} {} does not exist", path.display())))
    }
}

/// Pascal VOC: `ImageSets/Main/<split>.txt` -> `Annotations/<id>.xml` -> `JPEGImages/...`.
pub fn list_voc(root: &Path, split: &str, classes: &[String]) -> Result<Listing> {
    let list = join_inside(&root.join("ImageSets/Main"), &format!("{split}.txt"), root)?;
    if !list.is_file() {
        return Err(data_err(&list, "VOC split list not found (data.root, data.*_split)"));
    }
    let names: Vec<&str> = classes.iter().map(String::as_str).collect();
    let images_dir = root.join("JPEGImages");
    let (mut anns, mut counts) = (Vec::new(), SkipCounts::default());
    for (line, id) in read_id_list(&list)? {
        let xml = join_inside(&root.join("Annotations"), &format!("{id}.xml"), &list)?;
        require_file(&xml, &list, line, &format!("image id `{id}`: annotation"))?;
        let (ann, c) = read_voc_xml(&xml, &images_dir, &names)?;
        counts.add(&c);
        anns.push(ann);
    }
    Ok(Listing { anns, classes: classes.to_vec(), counts, source: list })
}

/// Class names from `names:` as a list, or a map whose keys are 0..n.
fn yolo_names(v: &serde_yaml::Value, yaml: &Path) -> Result<Vec<String>> {
    let bad = |m: &str| data_err(yaml, format!("`names`: {m}"));
    let as_name = |v: &serde_yaml::Value| match v {
        serde_yaml::Value::String(s) => Ok(s.clone()),
        serde_yaml::Value::Number(n) => Ok(n.to_string()),
        other => Err(bad(&format!("class name {other:?} is not a string"))),
    };
    match v {
        serde_yaml::Value::Sequence(s) => s.iter().map(as_name).collect(),
        serde_yaml::Value::Mapping(m) => {
            let mut out = vec![None; m.len()];
            for (k, name) in m {
                let i = k.as_u64().filter(|&i| (i as usize) < m.len()).ok_or_else(|| {
                    bad(&format!("keys must be the class ids 0..{}, found {k:?}", m.len()))
                })?;
                out[i as usize] = Some(as_name(name)?);
            }
            out.into_iter().map(|n| n.ok_or_else(|| bad("a class id is listed twice"))).collect()
        }
        _ => Err(bad("expected a list of class names or a map {id: name}")),
    }
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
}

/// The label file of a YOLO image: the last `images` folder of its path becomes `labels`.
fn yolo_label_of(image: &Path) -> Option<PathBuf> {
    let comps: Vec<_> = image.components().collect();
    let at = comps.iter().rposition(|c| c.as_os_str() == "images")?;
    let mut p = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        p.push(if i == at { std::ffi::OsStr::new("labels") } else { c.as_os_str() });
    }
    Some(p.with_extension("txt"))
}

/// Images of a YOLO split: a folder (sorted by name) or a `.txt` list relative to the root.
fn yolo_images(root: &Path, entry: &str, yaml: &Path) -> Result<Vec<PathBuf>> {
    let target = join_inside(root, entry, yaml)?;
    if target.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&target)
            .map_err(|e| data_err(&target, format!("cannot list the folder: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        files.sort();
        return Ok(files);
    }
    if target.extension().is_some_and(|e| e == "txt") && target.is_file() {
        let mut files = Vec::new();
        for (line, rel) in read_id_list(&target)? {
            let img = join_inside(root, &rel, &target)?;
            require_file(&img, &target, line, "image")?;
            files.push(img);
        }
        return Ok(files);
    }
    Err(data_err(
        yaml,
        format!("split path `{entry}`: {} is neither a folder nor a .txt list", target.display()),
    ))
}

/// YOLO: `data.yaml` names the classes and the split's images; labels beside in `labels/`.
pub fn list_yolo(root: &Path, split: &str) -> Result<Listing> {
    let yaml = root.join("data.yaml");
    let text = super::read_text_bounded(&yaml, super::MAX_ANNOTATION_BYTES, "YOLO data.yaml")?;
    // Read as a plain mapping: Ultralytics files carry keys of their own (download, path).
    let y: serde_yaml::Mapping = serde_yaml::from_str(&text)
        .map_err(|e| data_err(&yaml, format!("not a YOLO data.yaml: {e}")))?;
    let names = y.get("names").ok_or_else(|| data_err(&yaml, "no `names:` (the class names)"))?;
    let classes = yolo_names(names, &yaml)?;
    let entry = match y.get(split) {
        Some(serde_yaml::Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(data_err(&yaml, format!("`{split}` is {other:?}; expected one path")))
        }
        None => return Err(data_err(&yaml, format!("no `{split}:` entry (data.*_split)"))),
    };
    let (mut anns, mut counts, mut unlabelled) = (Vec::new(), SkipCounts::default(), 0usize);
    for image in yolo_images(root, &entry, &yaml)? {
        let label = yolo_label_of(&image).ok_or_else(|| {
            data_err(
                &image,
                "a YOLO image must lie under an `images/` folder (labels in `labels/`)",
            )
        })?;
        if label.is_file() {
            let (ann, c) = read_yolo_txt(&label, &image, classes.len())?;
            counts.add(&c);
            anns.push(ann);
        } else {
            let (width, height) = image::image_dimensions(&image)
                .map_err(|e| data_err(&image, format!("cannot read the image header: {e}")))?;
            unlabelled += 1;
            anns.push(ImageAnn { image, width, height, boxes: Vec::new() });
        }
    }
    if unlabelled > 0 {
        log::info!(
            "{}: {unlabelled} image(s) of `{split}` have no label file (no objects)",
            yaml.display()
        );
    }
    Ok(Listing { anns, classes, counts, source: yaml })
}

/// COCO: `annotations/instances_<split>.json`, images in `<root>/<split>/`.
pub fn list_coco(root: &Path, split: &str) -> Result<Listing> {
    let json = join_inside(&root.join("annotations"), &format!("instances_{split}.json"), root)?;
    let text = super::read_text_bounded(&json, super::MAX_COCO_JSON_BYTES, "COCO JSON file")?;
    let (gts, mapping) = crate::data::coco_json::parse_coco_gt(&text, &json)?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| data_err(&json, format!("invalid JSON: {e}")))?;
    let images_dir = root.join(split);
    let mut by_id = std::collections::BTreeMap::new();
    for (i, im) in v["images"].as_array().into_iter().flatten().enumerate() {
        let field = |k: &str| {
            im.get(k).ok_or_else(|| data_err(&json, format!("images[{i}]: missing `{k}`")))
        };
        let id = field("id")?.as_u64().unwrap_or_default();
        let name = field("file_name")?
            .as_str()
            .ok_or_else(|| data_err(&json, format!("images[{i}]: `file_name` is not a string")))?;
        let image = join_inside(&images_dir, name, &json)?;
        if !image.is_file() {
            return Err(data_err(
                &json,
                format!("images[{i}]: image {} does not exist", image.display()),
            ));
        }
        let dim = |k: &str| im.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0) as u32;
        let (mut width, mut height) = (dim("width"), dim("height"));
        if width == 0 || height == 0 {
            (width, height) = image::image_dimensions(&image)
                .map_err(|e| data_err(&image, format!("cannot read the image header: {e}")))?;
        }
        by_id.insert(id, ImageAnn { image, width, height, boxes: Vec::new() });
    }
    let mut counts = SkipCounts::default();
    for g in &gts {
        // parse_coco_gt has checked that every annotation's image id is listed.
        let Some(ann) = by_id.get_mut(&g.image_id) else { continue };
        let size = (ann.width, ann.height);
        ann.boxes.extend(place_box(g.class, g.bbox, g.iscrowd, size, &mut counts));
    }
    if counts.skipped() + counts.clipped > 0 {
        log::warn!(
            "{}: skipped {} zero-area and {} outside-image box(es); clipped {} partly outside",
            json.display(),
            counts.zero_area,
            counts.outside,
            counts.clipped
        );
    }
    Ok(Listing {
        anns: by_id.into_values().collect(),
        classes: mapping.category_names,
        counts,
        source: json,
    })
}

/// One decoded split: letterboxed images and boxes in input pixels.
#[derive(Debug)]
pub struct DetSplit {
    /// uint8 [n, channels, size, size] on the CPU.
    pub images: Tensor,
    /// Per image, in input pixels (see `rgb::Fit`).
    pub boxes: Vec<Vec<BoxAnn>>,
    pub classes: Vec<String>,
    pub files: Vec<PathBuf>,
}

/// Decodes every image of a listing once into one uint8 tensor (the cache), checking the
/// annotated size against the decoded one.
pub fn decode_listing(l: &Listing, channels: i64, size: i64) -> Result<DetSplit> {
    let n = l.anns.len() as i64;
    if n == 0 {
        return Err(data_err(&l.source, "the split lists no image"));
    }
    let images = Tensor::zeros([n, channels, size, size], (Kind::Uint8, tch::Device::Cpu));
    let mut boxes = Vec::with_capacity(l.anns.len());
    for (i, ann) in l.anns.iter().enumerate() {
        let (img, fit) = load_letterboxed(&ann.image, channels, size)?;
        if (fit.width, fit.height) != (ann.width, ann.height) {
            return Err(data_err(
                &ann.image,
                format!(
                    "is {}x{} but its annotation gives {}x{} (width x height; from {})",
                    fit.width,
                    fit.height,
                    ann.width,
                    ann.height,
                    l.source.display()
                ),
            ));
        }
        images.get(i as i64).copy_(&img);
        boxes.push(
            ann.boxes
                .iter()
                .map(|b| {
                    let [x1, y1, x2, y2] = fit.map_box([b.x1, b.y1, b.x2, b.y2]);
                    BoxAnn { x1, y1, x2, y2, ..*b }
                })
                .collect(),
        );
    }
    let files = l.anns.iter().map(|a| a.image.clone()).collect();
    Ok(DetSplit { images, boxes, classes: l.classes.clone(), files })
}

/// Lists a split of `dataset` under `root`; `classes` (VOC: the names; YOLO and COCO: a
/// check against the dataset's own) comes from `data.classes`.
pub fn list_split(
    dataset: DetDataset,
    root: &Path,
    split: &str,
    classes: Option<&[String]>,
) -> Result<Listing> {
    let listing = match dataset {
        DetDataset::Scenes => {
            return Err(invalid("data.dataset", "scenes are generated, not listed"))
        }
        DetDataset::Voc => {
            let names: Vec<String> = match classes {
                Some(c) => c.to_vec(),
                None => VOC_CLASSES.iter().map(|s| s.to_string()).collect(),
            };
            return list_voc(root, split, &names);
        }
        DetDataset::Yolo => list_yolo(root, split)?,
        DetDataset::Coco => list_coco(root, split)?,
    };
    if let Some(c) = classes {
        if c != listing.classes.as_slice() {
            return Err(invalid(
                "data.classes",
                format!(
                    "is {c:?} but {} names {:?}; leave data.classes unset to take the dataset's",
                    listing.source.display(),
                    listing.classes
                ),
            ));
        }
    }
    Ok(listing)
}

/// The class names of a dataset without listing its images (the legend of grid pictures):
/// `classes`, VOC's 20, data.yaml's `names`, or the COCO file's categories.
pub fn class_names(
    dataset: DetDataset,
    root: &Path,
    split: &str,
    classes: Option<&[String]>,
) -> Result<Vec<String>> {
    if let Some(c) = classes {
        return Ok(c.to_vec());
    }
    match dataset {
        DetDataset::Scenes | DetDataset::Voc => {
            Ok(VOC_CLASSES.iter().map(|s| s.to_string()).collect())
        }
        DetDataset::Yolo => {
            let yaml = root.join("data.yaml");
            let text =
                super::read_text_bounded(&yaml, super::MAX_ANNOTATION_BYTES, "YOLO data.yaml")?;
            let y: serde_yaml::Mapping = serde_yaml::from_str(&text)
                .map_err(|e| data_err(&yaml, format!("not a YOLO data.yaml: {e}")))?;
            let names = y.get("names").ok_or_else(|| data_err(&yaml, "no `names:`"))?;
            yolo_names(names, &yaml)
        }
        DetDataset::Coco => {
            let json =
                join_inside(&root.join("annotations"), &format!("instances_{split}.json"), root)?;
            let text =
                super::read_text_bounded(&json, super::MAX_COCO_JSON_BYTES, "COCO JSON file")?;
            Ok(crate::data::coco_json::parse_coco_gt(&text, &json)?.1.category_names)
        }
    }
}
