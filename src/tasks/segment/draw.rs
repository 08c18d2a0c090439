//! Pictures for TensorBoard and the grid: input, ground-truth and predicted masks, legends.
use super::{predict, scene_names, SegEval, SegmentConfig, SegmentData};
use crate::data::seg_sets::{class_names, SegDataset};
use crate::glance::picture::{
    captioned, grid, legend, outline, stack, Picture, Swatch, CLASS_COLOURS,
};
use crate::nets::Network;
use crate::tb::Tb;
use tch::{Device, Kind, Tensor};

/// Mask colours of sample pictures: class id k >= 1 takes `CLASS_COLOURS[k - 1]` (the
/// detection boxes' colours), background a light grey distinct from black inputs and white
/// gaps, ignored pixels black.
pub fn mask_colour(id: u8) -> [u8; 3] {
    match id {
        0 => SEG_BACKGROUND,
        k if (k as usize) <= CLASS_COLOURS.len() => CLASS_COLOURS[k as usize - 1],
        _ => [0, 0, 0],
    }
}

/// The background colour of mask pictures.
pub const SEG_BACKGROUND: [u8; 3] = [215, 215, 215];

/// Upscale factor of sample pictures (32-px scenes become 96 px).
const SAMPLE_SCALE: usize = 3;

/// A one-pixel dark frame around a panel, so its extent shows against white gaps.
fn framed(p: Picture) -> Picture {
    let mut p = p;
    let (w, h) = (p.w, p.h);
    outline(&mut p, 0, 0, w.saturating_sub(1), h.saturating_sub(1), [60, 60, 60], 1);
    p
}

/// [h, w] class ids (any integer kind) -> a coloured, upscaled, framed picture.
fn mask_picture(mask: &Tensor) -> Picture {
    let (h, w) = (mask.size()[0] as usize, mask.size()[1] as usize);
    let ids = Vec::<u8>::try_from(
        mask.to_device(Device::Cpu).clamp(0, 255).to_kind(Kind::Uint8).contiguous().view([-1]),
    )
    .unwrap_or_default();
    let mut p = Picture::new(w, h, SEG_BACKGROUND);
    for (i, id) in ids.iter().enumerate().take(w * h) {
        p.set(i % w, i / w, mask_colour(*id));
    }
    framed(p.upscale(SAMPLE_SCALE))
}

/// The grey input scene [1, h, w] uint8 as an upscaled, framed picture.
fn input_picture(img: &Tensor) -> Picture {
    let (c, h, w) = (img.size()[0] as usize, img.size()[1] as usize, img.size()[2] as usize);
    let v =
        Vec::<u8>::try_from(img.to_device(Device::Cpu).contiguous().view([-1])).unwrap_or_default();
    let mut p = Picture::new(w, h, [0, 0, 0]);
    for (i, g) in v.iter().enumerate().take(w * h) {
        let at = |k: usize| v.get(k * w * h + i).copied().unwrap_or(0);
        p.set(i % w, i / w, if c == 3 { [*g, at(1), at(2)] } else { [*g, *g, *g] });
    }
    framed(p.upscale(SAMPLE_SCALE))
}

/// The colour legend of mask pictures.
pub fn mask_legend(width: usize) -> Picture {
    mask_legend_of(&scene_names(), width)
}

/// The class names of an own-dataset segmentation config given as YAML (None for scenes or
/// a config or dataset that cannot be read).
pub fn class_names_of_yaml(yaml: &str) -> Option<Vec<String>> {
    let cfg = SegmentConfig::from_yaml_str(yaml, "plan", &[]).ok()?;
    let d = &cfg.data;
    if d.dataset == SegDataset::Scenes {
        return None;
    }
    class_names(d.dataset, d.root.as_deref()?, d.classes.as_deref()).ok()
}

/// The colour legend for a dataset's class names.
pub fn mask_legend_of(names: &[String], width: usize) -> Picture {
    let entries: Vec<(Swatch, String)> = names
        .iter()
        .enumerate()
        .map(|(k, name)| (Swatch::Fill(mask_colour(k as u8)), name.to_string()))
        .collect();
    legend(&entries, width)
}

/// Input and ground truth of the first `n` test scenes, captioned.
pub fn sample_inputs(data: &SegmentData, n: usize) -> Vec<Vec<(String, Picture)>> {
    let n = (n as i64).min(data.test.len());
    (0..n)
        .map(|i| {
            vec![
                ("input".to_string(), input_picture(&data.test.images.get(i))),
                ("ground truth".to_string(), mask_picture(&data.test.masks.get(i))),
            ]
        })
        .collect()
}

/// The network's predicted masks of the first `n` test scenes.
pub fn sample_predictions(net: &Network, data: &SegmentData, n: usize) -> Vec<Picture> {
    let n = (n as i64).min(data.test.len());
    if n <= 0 {
        return Vec::new();
    }
    let (x, _) = data.test.batch(0, n);
    let pred = predict(net, &x);
    (0..n).map(|i| mask_picture(&pred.get(i))).collect()
}

/// Logs the first `n` test scenes as one image each: the grey input, the ground truth and
/// the prediction side by side, captioned, with the colour legend below (no padding: the
/// picture keeps its aspect ratio).
pub fn log_samples(
    tb: &mut Tb,
    net: &Network,
    data: &SegmentData,
    n: usize,
    prefix: &str,
    step: usize,
) {
    let inputs = sample_inputs(data, n);
    let preds = sample_predictions(net, data, n);
    for (i, (common, pred)) in inputs.iter().zip(&preds).enumerate() {
        let mut panels: Vec<Picture> =
            common.iter().map(|(cap, p)| captioned(p, std::slice::from_ref(cap))).collect();
        panels.push(captioned(pred, &["prediction".to_string()]));
        let body = grid(&panels, panels.len(), 6);
        let pic = stack(&body, &mask_legend_of(&data.names, body.w), 6);
        tb.image(&format!("{prefix}/sample_{i}"), &pic.to_chw(), pic.h, pic.w, step);
    }
}

/// Per-class IoU curves (`test/iou/<class>`); the engine logs mIoU and pixel accuracy.
pub(crate) fn log_class_iou(tb: &mut Tb, res: &SegEval, step: usize) {
    for (c, iou) in res.per_class.iter().enumerate() {
        if let (Some(v), Some(name)) = (iou, res.names.get(c)) {
            tb.scalar(&format!("test/iou/{}", name.replace('/', "-")), *v, step);
        }
    }
}
