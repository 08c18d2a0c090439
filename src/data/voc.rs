//! Pascal VOC detection XML and YOLO txt annotation readers.
//!
//! Implements the annotation layouts of the Pascal VOC devkit (`VOCdevkit/devkit_doc.pdf`,
//! section "Annotation": `<annotation><filename>`, `<size>`, `<object><name><difficult>
//! <bndbox><xmin><ymin><xmax><ymax>`) and the Ultralytics YOLO txt label format
//! (`class cx cy w h`, one object per line, normalised to [0, 1]).
//!
//! Box convention (all readers): 0-based continuous pixel coordinates, `x1, y1` the
//! top-left corner and `x2, y2` the bottom-right corner of the covered area, so
//! `x2 - x1` is the width in pixels. VOC's `xmin/ymin` are 1-based inclusive pixel indices
//! and `xmax/ymax` 1-based inclusive too, hence `x1 = xmin - 1`, `x2 = xmax` (a one-pixel
//! box `xmin = xmax = 5` covers [4, 5)). DeepForest's XML files use the same element
//! layout and are read with the same convention.
//!
//! Error policy: an unreadable or malformed file, an unknown class name, a missing image
//! or an unparsable number is an error ([`GqcimError::Data`] naming the file and, for XML,
//! the line). Geometric defects are not errors, because real datasets contain them:
//! a box with zero or negative area, or lying entirely outside the image, is skipped and
//! counted; a box partly outside is clipped to the image and counted. Each file with any
//! skipped or clipped box logs one warning.
use crate::error::{data_err, GqcimError, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The single class of the DeepForest (PyPI `deepforest` 2.1.0) tree-crown annotations
/// shipped under `deepforest/data/*.xml`.
pub const DEEPFOREST_CLASSES: [&str; 1] = ["Tree"];

/// One object box in 0-based continuous pixel coordinates (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BoxAnn {
    /// Index into the class list given to the reader.
    pub class: usize,
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    /// VOC `difficult` flag: excluded from both positives and false positives at eval time.
    pub difficult: bool,
}

/// The annotation of one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageAnn {
    pub image: PathBuf,
    pub width: u32,
    pub height: u32,
    pub boxes: Vec<BoxAnn>,
}

/// Boxes dropped or altered while reading, so a dataset summary can report them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SkipCounts {
    /// Skipped: `x2 <= x1` or `y2 <= y1` (after the VOC 1-based shift).
    pub zero_area: usize,
    /// Skipped: no overlap with the image rectangle [0, width] x [0, height].
    pub outside: usize,
    /// Kept but clipped to the image rectangle.
    pub clipped: usize,
}

impl SkipCounts {
    /// Adds another file's counts to these.
    pub fn add(&mut self, other: &SkipCounts) {
        self.zero_area += other.zero_area;
        self.outside += other.outside;
        self.clipped += other.clipped;
    }

    /// Number of boxes dropped (clipped boxes are kept, so not included).
    pub fn skipped(&self) -> usize {
        self.zero_area + self.outside
    }

    fn warn_if_any(&self, file: &Path) {
        // Once per file rather than once per box: a bad export can have thousands.
        if self.skipped() + self.clipped > 0 {
            log::warn!(
                "{}: skipped {} zero-area and {} outside-image box(es); clipped {} partly outside",
                file.display(),
                self.zero_area,
                self.outside,
                self.clipped
            );
        }
    }
}

/// Applies the skip/clip policy to one box in 0-based continuous coordinates.
pub(crate) fn place_box(
    class: usize,
    [x1, y1, x2, y2]: [f64; 4],
    difficult: bool,
    (width, height): (u32, u32),
    counts: &mut SkipCounts,
) -> Option<BoxAnn> {
    let (w, h) = (f64::from(width), f64::from(height));
    if x2 <= x1 || y2 <= y1 {
        counts.zero_area += 1;
        return None;
    }
    // Touching an edge from outside (x2 == 0) leaves no pixel inside, so it counts as outside.
    if x1 >= w || y1 >= h || x2 <= 0.0 || y2 <= 0.0 {
        counts.outside += 1;
        return None;
    }
    let clipped = [x1.max(0.0), y1.max(0.0), x2.min(w), y2.min(h)];
    if clipped != [x1, y1, x2, y2] {
        counts.clipped += 1;
    }
    let [x1, y1, x2, y2] = clipped.map(|v| v as f32);
    Some(BoxAnn { class, x1, y1, x2, y2, difficult })
}

/// How the annotation parsers learn about the image a file names: it must exist, and its
/// size is read when the annotation does not give one. [`DiskImages`] asks the file system;
/// the byte-level parsers take any probe, so fuzzers and tests need no image files.
pub trait ImageProbe {
    /// Errors, naming `referrer`, when `image` does not exist.
    fn require(&self, image: &Path, referrer: &str) -> Result<()>;
    /// The image's (width, height).
    fn size(&self, image: &Path) -> Result<(u32, u32)>;
}

/// The file system: existence by `is_file`, size from the image header only (no decoding).
pub struct DiskImages;

impl ImageProbe for DiskImages {
    fn require(&self, image: &Path, referrer: &str) -> Result<()> {
        if image.is_file() {
            Ok(())
        } else {
            Err(data_err(image, format!("image file does not exist (named by {referrer})")))
        }
    }

    fn size(&self, image: &Path) -> Result<(u32, u32)> {
        image::image_dimensions(image)
            .map_err(|e| data_err(image, format!("cannot read the image header: {e}")))
    }
}

/// XML helpers that turn a missing or unparsable element into an error with its line.
struct Xml<'a, 'input> {
    path: &'a Path,
    doc: &'a roxmltree::Document<'input>,
}

impl<'a, 'input> Xml<'a, 'input> {
    fn line(&self, node: roxmltree::Node) -> u32 {
        self.doc.text_pos_at(node.range().start).row
    }

    fn err(&self, node: roxmltree::Node, msg: impl std::fmt::Display) -> GqcimError {
        data_err(self.path, format!("line {}: {msg}", self.line(node)))
    }

    fn child(
        &self,
        node: roxmltree::Node<'a, 'input>,
        name: &str,
    ) -> Option<roxmltree::Node<'a, 'input>> {
        node.children().find(|c| c.has_tag_name(name))
    }

    fn required(
        &self,
        node: roxmltree::Node<'a, 'input>,
        name: &str,
    ) -> Result<roxmltree::Node<'a, 'input>> {
        self.child(node, name).ok_or_else(|| {
            self.err(node, format!("<{}> has no <{name}> element", node.tag_name().name()))
        })
    }

    fn text(&self, node: roxmltree::Node<'a, 'input>) -> &'a str {
        node.text().unwrap_or("").trim()
    }

    fn number<T: std::str::FromStr>(&self, node: roxmltree::Node<'a, 'input>) -> Result<T> {
        let text = self.text(node);
        text.parse().map_err(|_| {
            self.err(node, format!("<{}> `{text}` is not a valid number", node.tag_name().name()))
        })
    }

    fn coord(&self, node: roxmltree::Node<'a, 'input>) -> Result<f64> {
        let v: f64 = self.number(node)?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(self.err(node, format!("<{}> is not finite", node.tag_name().name())))
        }
    }
}

/// Reads one Pascal VOC annotation file. The image is `images_dir/<filename>` and must
/// exist. The size comes from `<size>`; when it is missing or zero (DeepForest-style files
/// may omit parts of it) it is read from the image header.
pub fn read_voc_xml(
    xml: &Path,
    images_dir: &Path,
    classes: &[&str],
) -> Result<(ImageAnn, SkipCounts)> {
    let text = super::read_text_bounded(xml, super::MAX_ANNOTATION_BYTES, "VOC XML annotation")?;
    parse_voc_xml(&text, xml, images_dir, classes, &DiskImages)
}

/// [`read_voc_xml`] on the file's text; `xml` only names the source in errors and `probe`
/// answers for the image.
pub fn parse_voc_xml(
    text: &str,
    xml: &Path,
    images_dir: &Path,
    classes: &[&str],
    probe: &dyn ImageProbe,
) -> Result<(ImageAnn, SkipCounts)> {
    // roxmltree's error text carries the line:column of the fault.
    let doc = roxmltree::Document::parse(text)
        .map_err(|e| data_err(xml, format!("malformed XML: {e}")))?;
    let x = Xml { path: xml, doc: &doc };
    let root = doc.root_element();
    if !root.has_tag_name("annotation") {
        return Err(x.err(
            root,
            format!("root element is <{}>, expected <annotation>", root.tag_name().name()),
        ));
    }
    let filename_node = x.required(root, "filename")?;
    let filename = x.text(filename_node);
    if filename.is_empty() {
        return Err(x.err(filename_node, "<filename> is empty"));
    }
    // An absolute `<filename>` or one with `..` would read outside the dataset.
    let image = super::rgb::join_inside(images_dir, filename, xml).map_err(|_| {
        x.err(
            filename_node,
            format!(
                "<filename> `{filename}` must be a relative path inside {}",
                images_dir.display()
            ),
        )
    })?;
    probe.require(&image, &format!("{} line {}", xml.display(), x.line(filename_node)))?;

    let mut size = (0u32, 0u32);
    if let Some(s) = x.child(root, "size") {
        let dim = |name: &str| -> Result<u32> {
            x.child(s, name)
                .map_or(Ok(0), |n| if x.text(n).is_empty() { Ok(0) } else { x.number(n) })
        };
        size = (dim("width")?, dim("height")?);
    }
    if size.0 == 0 || size.1 == 0 {
        size = probe.size(&image)?;
    }

    let mut counts = SkipCounts::default();
    let mut boxes = Vec::new();
    for obj in root.children().filter(|c| c.has_tag_name("object")) {
        let name_node = x.required(obj, "name")?;
        let name = x.text(name_node);
        let class = classes.iter().position(|c| *c == name).ok_or_else(|| {
            x.err(name_node, format!("unknown class name `{name}` (known: {})", classes.join(", ")))
        })?;
        let difficult = match x.child(obj, "difficult") {
            None => false,
            Some(d) => match x.text(d) {
                "" | "0" => false,
                "1" => true,
                other => return Err(x.err(d, format!("<difficult> is `{other}`, expected 0 or 1"))),
            },
        };
        let bb = x.required(obj, "bndbox")?;
        let mut v = [0f64; 4];
        for (slot, tag) in v.iter_mut().zip(["xmin", "ymin", "xmax", "ymax"]) {
            *slot = x.coord(x.required(bb, tag)?)?;
        }
        // 1-based inclusive pixel indices -> 0-based continuous corners.
        let corners = [v[0] - 1.0, v[1] - 1.0, v[2], v[3]];
        boxes.extend(place_box(class, corners, difficult, size, &mut counts));
    }
    counts.warn_if_any(xml);
    Ok((ImageAnn { image, width: size.0, height: size.1, boxes }, counts))
}

/// Reads every `*.xml` file of `annotations_dir` (sorted by file name) with
/// [`read_voc_xml`]; the skip counts are summed.
pub fn read_voc_dir(
    annotations_dir: &Path,
    images_dir: &Path,
    classes: &[&str],
) -> Result<(Vec<ImageAnn>, SkipCounts)> {
    let entries = std::fs::read_dir(annotations_dir)
        .map_err(|e| data_err(annotations_dir, format!("cannot list the folder: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let path =
            entry.map_err(|e| data_err(annotations_dir, format!("cannot list: {e}")))?.path();
        let is_xml = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("xml"));
        if is_xml && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(data_err(annotations_dir, "no .xml annotation files in the folder"));
    }
    files.sort();
    let mut total = SkipCounts::default();
    let mut anns = Vec::with_capacity(files.len());
    for f in &files {
        let (ann, counts) = read_voc_xml(f, images_dir, classes)?;
        total.add(&counts);
        anns.push(ann);
    }
    Ok((anns, total))
}

/// Reads one YOLO label file for `image` (which must exist; its size comes from the
/// header). Each non-blank line is `class cx cy w h` with the box centre and size
/// normalised by the image width and height. An empty file is an image without objects.
pub fn read_yolo_txt(
    txt: &Path,
    image: &Path,
    num_classes: usize,
) -> Result<(ImageAnn, SkipCounts)> {
    let text = super::read_text_bounded(txt, super::MAX_ANNOTATION_BYTES, "YOLO label file")?;
    parse_yolo_txt(&text, txt, image, num_classes, &DiskImages)
}

/// [`read_yolo_txt`] on the file's text; `txt` only names the source in errors and `probe`
/// answers for the image.
pub fn parse_yolo_txt(
    text: &str,
    txt: &Path,
    image: &Path,
    num_classes: usize,
    probe: &dyn ImageProbe,
) -> Result<(ImageAnn, SkipCounts)> {
    probe.require(image, &txt.display().to_string())?;
    let size = probe.size(image)?;
    let (w, h) = (f64::from(size.0), f64::from(size.1));
    let mut counts = SkipCounts::default();
    let mut boxes = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        if fields.len() != 5 {
            return Err(data_err(
                txt,
                format!(
                    "line {lineno}: expected 5 fields `class cx cy w h`, found {}",
                    fields.len()
                ),
            ));
        }
        let class: usize = fields[0].parse().map_err(|_| {
            data_err(
                txt,
                format!("line {lineno}: class id `{}` is not a non-negative integer", fields[0]),
            )
        })?;
        if class >= num_classes {
            return Err(data_err(
                txt,
                format!(
                    "line {lineno}: class id {class} out of range (num_classes = {num_classes})"
                ),
            ));
        }
        let mut v = [0f64; 4];
        for (slot, (field, name)) in
            v.iter_mut().zip(fields[1..].iter().zip(["cx", "cy", "w", "h"]))
        {
            *slot = field.parse::<f64>().ok().filter(|x| x.is_finite()).ok_or_else(|| {
                data_err(txt, format!("line {lineno}: {name} `{field}` is not a finite number"))
            })?;
        }
        let [cx, cy, bw, bh] = v;
        let corners =
            [(cx - bw / 2.0) * w, (cy - bh / 2.0) * h, (cx + bw / 2.0) * w, (cy + bh / 2.0) * h];
        boxes.extend(place_box(class, corners, false, size, &mut counts));
    }
    counts.warn_if_any(txt);
    Ok((ImageAnn { image: image.to_path_buf(), width: size.0, height: size.1, boxes }, counts))
}

/// Decodes an image file (PNG or JPEG; grey and alpha are converted) to a uint8 tensor
/// [3, h, w] in RGB order.
pub fn load_image_rgb(path: &Path) -> Result<Tensor> {
    let img = image::ImageReader::open(path)
        .map_err(|e| data_err(path, format!("cannot open the image: {e}")))?
        .with_guessed_format()
        .map_err(|e| data_err(path, format!("cannot read the image: {e}")))?
        .decode()
        .map_err(|e| data_err(path, format!("cannot decode the image: {e}")))?
        .into_rgb8();
    let (w, h) = img.dimensions();
    Ok(Tensor::from_slice(img.as_raw())
        .view([i64::from(h), i64::from(w), 3])
        .permute([2, 0, 1])
        .contiguous())
}
