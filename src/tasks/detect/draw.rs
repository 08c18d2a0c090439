//! Drawing for TensorBoard: scenes or images with ground-truth and predicted boxes, legends.
use super::metrics::Detection;
use super::{DetectEvalConfig, FMNIST_CLASSES};
use crate::data::scenes::{SceneBox, SceneSet};
use crate::glance::picture::{
    dashed_outline, legend, outline, stack, text_size, Picture, Swatch, CLASS_COLOURS,
};
use crate::tb::Tb;
use tch::Device;

/// A grey scene [h * w] upscaled `scale` times: ground-truth boxes as black-and-white dashes
/// (visible on any background), detections scoring at least `min_score` as 2-px boxes in
/// their class colour with a `class score` tab (class colours: `picture::CLASS_COLOURS`).
pub fn draw_scene(
    gray: &[u8],
    h: usize,
    w: usize,
    scale: usize,
    gts: &[SceneBox],
    dets: &[Detection],
    min_score: f32,
) -> Picture {
    let names: Vec<String> = FMNIST_CLASSES.iter().map(|s| s.to_string()).collect();
    draw_image(gray, 1, (h, w), scale, gts, dets, min_score, &names)
}

/// [`draw_scene`] for `channels` planes (1: grey, 3: RGB, as [c, h, w] bytes) with the
/// dataset's class names on the tabs.
#[allow(clippy::too_many_arguments)]
pub fn draw_image(
    pixels: &[u8],
    channels: usize,
    (h, w): (usize, usize),
    scale: usize,
    gts: &[SceneBox],
    dets: &[Detection],
    min_score: f32,
    names: &[String],
) -> Picture {
    let mut img = Picture::new(w, h, [0, 0, 0]);
    let at = |c: usize, i: usize| pixels.get(c * h * w + i).copied().unwrap_or(0);
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let v = at(0, i);
            img.set(x, y, if channels == 3 { [v, at(1, i), at(2, i)] } else { [v, v, v] });
        }
    }
    let mut img = img.upscale(scale.max(1));
    let (hh, ww) = (img.h.max(1), img.w.max(1));
    let px = |v: f64, max: usize| ((v * scale as f64).round().max(0.0) as usize).min(max - 1);
    let corners = |b: [f64; 4]| (px(b[0], ww), px(b[1], hh), px(b[2], ww), px(b[3], hh));
    for g in gts {
        let (x1, y1, x2, y2) = corners([g.x1, g.y1, g.x2, g.y2].map(f64::from));
        dashed_outline(&mut img, x1, y1, x2, y2);
    }
    let shown: Vec<&Detection> = dets.iter().filter(|d| d.score >= f64::from(min_score)).collect();
    for d in shown.iter().rev() {
        let (x1, y1, x2, y2) = corners(d.bbox);
        outline(&mut img, x1, y1, x2, y2, CLASS_COLOURS[d.class % CLASS_COLOURS.len()], 2);
    }
    // Tabs after all boxes, so that no box crosses a label.
    for d in shown.iter().rev() {
        let (x1, y1, _, _) = corners(d.bbox);
        let colour = CLASS_COLOURS[d.class % CLASS_COLOURS.len()];
        let name = names.get(d.class).map_or("?", String::as_str);
        let label = format!("{name} {:.2}", d.score);
        let (tw, th) = text_size(&label, 12);
        let tab_h = th + 2;
        // Above the box, or inside it when the box touches the top edge.
        let ty = if y1 >= tab_h { y1 - tab_h } else { y1 + 2 };
        img.fill_rect(x1, ty, x1 + tw + 4, ty + tab_h, colour);
        let lum = 0.299 * colour[0] as f64 + 0.587 * colour[1] as f64 + 0.114 * colour[2] as f64;
        let ink = if lum > 140.0 { [0, 0, 0] } else { [255, 255, 255] };
        img.text(x1 as i32 + 2, ty as i32 + 1, &label, 12, ink);
    }
    img
}

/// The legend of detection pictures: ground-truth style, then one box colour per class.
pub fn detection_legend(width: usize) -> Picture {
    let names: Vec<String> = FMNIST_CLASSES.iter().map(|s| s.to_string()).collect();
    legend_of(&names, width)
}

/// The legend for a dataset's class names (colours repeat past `CLASS_COLOURS`).
pub fn legend_of(names: &[String], width: usize) -> Picture {
    let mut entries = vec![(Swatch::Dashed, "ground truth".to_string())];
    for (i, name) in names.iter().enumerate() {
        entries.push((Swatch::Box(CLASS_COLOURS[i % CLASS_COLOURS.len()]), name.to_string()));
    }
    entries.push((Swatch::Fill([255, 255, 255]), "tab: class score".to_string()));
    legend(&entries, width)
}

/// Scenes with ground truth and detections drawn, one picture per scene.
pub(crate) fn scene_pictures(
    scenes: &SceneSet,
    dets: &[Vec<Detection>],
    e: &DetectEvalConfig,
    names: &[String],
) -> Vec<Picture> {
    let n = scenes.len().min(dets.len() as i64);
    if n <= 0 {
        return Vec::new();
    }
    let size = scenes.images.size();
    let (c, h, w) = (size[1] as usize, size[2] as usize, size[3] as usize);
    let pixels = scenes.images.narrow(0, 0, n).to_device(Device::Cpu).contiguous().view([-1]);
    let pixels = Vec::<u8>::try_from(pixels).unwrap_or_default();
    // Scenes (grey) are drawn 3x as always; RGB inputs of own datasets are large already.
    let scale = if c == 1 { 3 } else { 1 };
    let plane = c * h * w;
    (0..n as usize)
        .map(|i| {
            let px = pixels.get(i * plane..(i + 1) * plane).unwrap_or(&[]);
            let (gts, min) = (&scenes.boxes[i], e.draw_score as f32);
            draw_image(px, c, (h, w), scale, gts, &dets[i], min, names)
        })
        .collect()
}

/// Draws the first `eval.tb_images` scenes with ground truth, detections and the legend as
/// `<prefix>/detections_<i>` images.
pub(crate) fn log_detections(
    tb: &mut Tb,
    scenes: &SceneSet,
    dets: &[Vec<Detection>],
    e: &DetectEvalConfig,
    (prefix, names): (&str, &[String]),
    step: usize,
) {
    let n = e.tb_images.min(dets.len()).min(scenes.len().max(0) as usize);
    if n == 0 {
        return;
    }
    let scenes = scenes.first(n);
    for (i, pic) in scene_pictures(&scenes, &dets[..n], e, names).iter().enumerate() {
        let pic = stack(pic, &legend_of(names, pic.w), 4);
        tb.image(&format!("{prefix}/detections_{i}"), &pic.to_chw(), pic.h, pic.w, step);
    }
}
