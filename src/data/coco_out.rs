//! A detection split's ground truth as COCO instances JSON, in the images' own pixels, so
//! that `gqcim metrics detection` (and pycocotools) score predictions against any dataset
//! layout. Image ids are positions in the split (0, 1, ...), category ids class index + 1
//! (COCO's ids start at 1), `file_name` relative to the dataset root. VOC `difficult` boxes
//! are written as `iscrowd: 1`, which the metrics treat as ignored, as VOC does.
use super::detection_sets::Listing;
use serde_json::{json, Value};
use std::path::Path;

pub fn listing_to_coco(l: &Listing, root: &Path) -> Value {
    let mut images = Vec::with_capacity(l.anns.len());
    let mut annotations = Vec::new();
    for (i, a) in l.anns.iter().enumerate() {
        let name = a.image.strip_prefix(root).unwrap_or(&a.image);
        images.push(json!({"id": i, "file_name": name.display().to_string(),
                           "width": a.width, "height": a.height}));
        for b in &a.boxes {
            let (w, h) = (f64::from(b.x2 - b.x1), f64::from(b.y2 - b.y1));
            annotations.push(json!({
                "id": annotations.len() + 1,
                "image_id": i,
                "category_id": b.class + 1,
                "bbox": [f64::from(b.x1), f64::from(b.y1), w, h],
                "area": w * h,
                "iscrowd": u8::from(b.difficult),
            }));
        }
    }
    let categories: Vec<Value> =
        l.classes.iter().enumerate().map(|(i, name)| json!({"id": i + 1, "name": name})).collect();
    json!({"images": images, "annotations": annotations, "categories": categories})
}
