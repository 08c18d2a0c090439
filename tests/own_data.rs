//! Detection and segmentation on users' own datasets (issue 18): tiny VOC, YOLO, COCO and
//! folder datasets written here (generated RGB images with known boxes and masks) go
//! through the loaders and through the CLI (train, eval, the grid); the three detection
//! layouts give the same boxes; augmentation keeps boxes and masks on their pixels; bad
//! datasets are errors naming the file.
mod common;
use common::*;
use gqcim::data::detection_sets::{decode_listing, list_split, DetDataset, DetSplit};
use gqcim::data::jitter::Jitter;
use gqcim::data::rgb::{load_letterboxed, Fit};
use gqcim::data::seg_sets::{load_seg_split, SegDataset};
use gqcim::data::voc_seg::voc_colormap;
use gqcim::glance::samples::{plan_legend, task_legend};
use gqcim::tasks::detect::metrics::Detection;
use gqcim::tasks::detect::own::ground_truth;
use gqcim::tasks::detect::score;
use gqcim::tasks::segment::metrics::ConfusionMatrix;
use serde_json::json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

const W: u32 = 64;
const H: u32 = 48;
const CLASSES: [&str; 2] = ["cat", "dog"];
const COLOURS: [[u8; 3]; 2] = [[220, 60, 40], [40, 200, 90]];

/// An object as pixel bounds [x1, x2) x [y1, y2).
#[derive(Clone, Copy)]
struct Obj {
    class: usize,
    x1: u32,
    y1: u32,
    x2: u32,
    y2: u32,
}

fn scenes() -> Vec<Vec<Obj>> {
    let o = |class, x1, y1, x2, y2| Obj { class, x1, y1, x2, y2 };
    vec![
        vec![o(0, 4, 6, 24, 30), o(1, 36, 10, 60, 40)],
        vec![o(1, 10, 12, 40, 44)],
        vec![o(0, 30, 2, 62, 22), o(1, 2, 26, 20, 46)],
        vec![o(0, 20, 20, 44, 40)],
    ]
}

fn render(objs: &[Obj]) -> image::RgbImage {
    let mut img = image::RgbImage::from_pixel(W, H, image::Rgb([30, 30, 30]));
    for o in objs {
        for y in o.y1..o.y2 {
            for x in o.x1..o.x2 {
                img.put_pixel(x, y, image::Rgb(COLOURS[o.class]));
            }
        }
    }
    img
}

/// Class ids per pixel: 0 background, class + 1 inside a box (later boxes on top).
fn mask_ids(objs: &[Obj]) -> image::GrayImage {
    let mut m = image::GrayImage::new(W, H);
    for o in objs {
        for y in o.y1..o.y2 {
            for x in o.x1..o.x2 {
                m.put_pixel(x, y, image::Luma([o.class as u8 + 1]));
            }
        }
    }
    m
}

fn mkdirs(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
}

fn write(p: &Path, text: &str) {
    mkdirs(p.parent().unwrap());
    std::fs::write(p, text).unwrap();
}

/// Training split: all scenes; `val`: the first two.
fn splits() -> [(&'static str, Vec<usize>); 2] {
    [("train", vec![0, 1, 2, 3]), ("val", vec![0, 1])]
}

fn write_voc(root: &Path) {
    mkdirs(&root.join("JPEGImages"));
    for (i, objs) in scenes().iter().enumerate() {
        render(objs).save(root.join(format!("JPEGImages/img{i}.png"))).unwrap();
        let mut xml = format!(
            "<annotation><filename>img{i}.png</filename><size><width>{W}</width>\
             <height>{H}</height><depth>3</depth></size>"
        );
        for o in objs {
            // VOC corners are 1-based inclusive pixels.
            write!(
                xml,
                "<object><name>{}</name><difficult>0</difficult><bndbox><xmin>{}</xmin>\
                 <ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>",
                CLASSES[o.class],
                o.x1 + 1,
                o.y1 + 1,
                o.x2,
                o.y2
            )
            .unwrap();
        }
        write(&root.join(format!("Annotations/img{i}.xml")), &(xml + "</annotation>"));
    }
    for (split, ids) in splits() {
        let list: String = ids.iter().map(|i| format!("img{i}\n")).collect();
        write(&root.join(format!("ImageSets/Main/{split}.txt")), &list);
    }
}

fn write_yolo(root: &Path) {
    write(&root.join("data.yaml"), "names: [cat, dog]\ntrain: images/train\nval: images/val\n");
    for (split, ids) in splits() {
        mkdirs(&root.join(format!("images/{split}")));
        for i in ids {
            let objs = &scenes()[i];
            render(objs).save(root.join(format!("images/{split}/img{i}.png"))).unwrap();
            let (w, h) = (f64::from(W), f64::from(H));
            let lines: String = objs
                .iter()
                .map(|o| {
                    let (x1, y1, x2, y2) = (o.x1 as f64, o.y1 as f64, o.x2 as f64, o.y2 as f64);
                    format!(
                        "{} {:.12} {:.12} {:.12} {:.12}\n",
                        o.class,
                        (x1 + x2) / 2.0 / w,
                        (y1 + y2) / 2.0 / h,
                        (x2 - x1) / w,
                        (y2 - y1) / h
                    )
                })
                .collect();
            write(&root.join(format!("labels/{split}/img{i}.txt")), &lines);
        }
    }
}

/// COCO with category ids 3 and 7 (class order follows the ids) and image ids from 10.
fn coco_json(ids: &[usize]) -> serde_json::Value {
    let mut images = Vec::new();
    let mut anns = Vec::new();
    for &i in ids {
        images.push(
            json!({"id": 10 + i, "file_name": format!("img{i}.png"), "width": W, "height": H}),
        );
        for o in &scenes()[i] {
            let (w, h) = (o.x2 - o.x1, o.y2 - o.y1);
            let cat = [3, 7][o.class];
            anns.push(json!({"id": anns.len() + 1, "image_id": 10 + i,
                "category_id": cat, "bbox": [o.x1, o.y1, w, h],
                "area": w * h, "iscrowd": 0}));
        }
    }
    json!({"images": images, "annotations": anns,
           "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]})
}

fn write_coco(root: &Path) {
    for (split, ids) in splits() {
        mkdirs(&root.join(split));
        for &i in &ids {
            render(&scenes()[i]).save(root.join(format!("{split}/img{i}.png"))).unwrap();
        }
        write(
            &root.join(format!("annotations/instances_{split}.json")),
            &coco_json(&ids).to_string(),
        );
    }
}

/// VOC segmentation: JPEG images, palette-coloured (RGB) masks.
fn write_voc_seg(root: &Path) {
    let map = voc_colormap();
    mkdirs(&root.join("JPEGImages"));
    mkdirs(&root.join("SegmentationClass"));
    for (i, objs) in scenes().iter().enumerate() {
        render(objs).save(root.join(format!("JPEGImages/img{i}.jpg"))).unwrap();
        let ids = mask_ids(objs);
        let rgb =
            image::RgbImage::from_fn(W, H, |x, y| image::Rgb(map[ids.get_pixel(x, y)[0] as usize]));
        rgb.save(root.join(format!("SegmentationClass/img{i}.png"))).unwrap();
    }
    for (split, ids) in splits() {
        let list: String = ids.iter().map(|i| format!("img{i}\n")).collect();
        write(&root.join(format!("ImageSets/Segmentation/{split}.txt")), &list);
    }
}

/// Folder segmentation: PNG images, 8-bit class-id masks, classes.txt.
fn write_folder_seg(root: &Path) {
    write(&root.join("classes.txt"), "background\ncat\ndog\n");
    for (split, ids) in splits() {
        mkdirs(&root.join(format!("{split}/images")));
        mkdirs(&root.join(format!("{split}/masks")));
        for i in ids {
            let objs = &scenes()[i];
            render(objs).save(root.join(format!("{split}/images/img{i}.png"))).unwrap();
            mask_ids(objs).save(root.join(format!("{split}/masks/img{i}.png"))).unwrap();
        }
    }
}

fn names() -> Vec<String> {
    CLASSES.iter().map(|s| s.to_string()).collect()
}

fn load(kind: DetDataset, root: &Path, split: &str) -> DetSplit {
    let classes = (kind == DetDataset::Voc).then(names);
    let l = list_split(kind, root, split, classes.as_deref()).unwrap();
    decode_listing(&l, 3, 64).unwrap()
}

fn err_text<T: std::fmt::Debug>(r: gqcim::error::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn three_layouts_give_the_same_boxes_and_pixels_and_ground_truth_scores_one() {
    let d = tempfile::tempdir().unwrap();
    let (voc, yolo, coco) = (d.path().join("voc"), d.path().join("yolo"), d.path().join("coco"));
    write_voc(&voc);
    write_yolo(&yolo);
    write_coco(&coco);
    let a = load(DetDataset::Voc, &voc, "train");
    let b = load(DetDataset::Yolo, &yolo, "train");
    let c = load(DetDataset::Coco, &coco, "train");
    assert_eq!(b.classes, names());
    assert_eq!(c.classes, names());
    // 64x48 letterboxed into 64x64: scale 1, so the boxes are the drawn pixel bounds.
    let want: Vec<Vec<[f32; 4]>> = scenes()
        .iter()
        .map(|objs| objs.iter().map(|o| [o.x1, o.y1, o.x2, o.y2].map(|v| v as f32)).collect())
        .collect();
    for (name, s) in [("voc", &a), ("yolo", &b), ("coco", &c)] {
        let got: Vec<Vec<[f32; 4]>> = s
            .boxes
            .iter()
            .map(|bs| bs.iter().map(|b| [b.x1, b.y1, b.x2, b.y2]).collect())
            .collect();
        assert_eq!(got, want, "{name}");
        let classes: Vec<usize> = s.boxes.iter().flatten().map(|b| b.class).collect();
        assert_eq!(classes, vec![0, 1, 1, 0, 1, 0], "{name}");
        assert!(s.images.equal(&a.images), "{name}: pixels differ");
        // Ground truth given back as detections scores 1.0 on both metrics.
        let gts = ground_truth(s);
        let dets: Vec<Vec<Detection>> = (0..4u64)
            .map(|i| {
                gts.iter()
                    .filter(|g| g.image_id == i)
                    .map(|g| Detection { image_id: i, class: g.class, score: 0.9, bbox: g.bbox })
                    .collect()
            })
            .collect();
        let r = score(&dets, &gts, 2);
        assert_eq!((r.map50, r.coco_map), (1.0, 1.0), "{name}");
    }
    // The letterbox pads below the 48 rows with grey 114.
    assert_eq!(a.images.int64_value(&[0, 0, 50, 5]), 114);
    assert_eq!(a.images.int64_value(&[0, 0, 10, 10]), i64::from(COLOURS[0][0]));

    // Through the CLI: each dataset's own ground truth (COCO's file; VOC and YOLO exported
    // by detect-gt) scores its boxes as mAP 1.0.
    for (kind, root, extra) in [("voc", &voc, "  classes: [cat, dog]\n"), ("yolo", &yolo, "")] {
        let cfg = detect_yaml(d.path(), kind, root, extra);
        let gt = d.path().join(format!("{kind}-gt.json"));
        ok(&run_gqcim(&[
            "detect-gt",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            gt.to_str().unwrap(),
        ]));
        gt_scores_one(&gt, d.path());
        // metrics detection reads the dataset's own annotations too (--gt-config).
        let pred = d.path().join("pred.json");
        let c = cfg.to_str().unwrap();
        let o = run_gqcim(&[
            "metrics",
            "detection",
            "--gt-config",
            c,
            "--pred",
            pred.to_str().unwrap(),
        ]);
        ok(&o);
        let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!((m["map50"].as_f64().unwrap() - 1.0).abs() < 1e-12, "{kind}: {m}");
        // The train split's boxes are not the test split's predictions: below 1.
        let args = ["metrics", "detection", "--gt-config", c, "--split", "train", "--pred"];
        let o = run_gqcim(&[&args[..], &[pred.to_str().unwrap()]].concat());
        ok(&o);
        let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(m["map50"].as_f64().unwrap() < 1.0, "{kind} train split: {m}");
    }
    gt_scores_one(&coco.join("annotations/instances_val.json"), d.path());
}

/// `metrics detection` of a COCO ground-truth file against its own boxes as predictions.
fn gt_scores_one(gt: &Path, dir: &Path) {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(gt).unwrap()).unwrap();
    let preds: Vec<serde_json::Value> = v["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| json!({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.8}))
        .collect();
    let pred = dir.join("pred.json");
    std::fs::write(&pred, serde_json::to_string(&preds).unwrap()).unwrap();
    let o = run_gqcim(&[
        "metrics",
        "detection",
        "--gt",
        gt.to_str().unwrap(),
        "--pred",
        pred.to_str().unwrap(),
    ]);
    ok(&o);
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // COCO's 101-point interpolation sums to 1 up to rounding.
    for k in ["map", "map50", "voc_map50"] {
        assert!((m[k].as_f64().unwrap() - 1.0).abs() < 1e-12, "{k}: {m}");
    }
    assert_eq!(m["num_gt"], 3, "{}", gt.display());
}

#[test]
fn segmentation_layouts_agree_and_score_miou_one() {
    let d = tempfile::tempdir().unwrap();
    let (voc, folder) = (d.path().join("vocseg"), d.path().join("folder"));
    write_voc_seg(&voc);
    write_folder_seg(&folder);
    let classes: Vec<String> = ["background", "cat", "dog"].iter().map(|s| s.to_string()).collect();
    let a = load_seg_split(SegDataset::Voc, &voc, "train", &classes, 3, 32).unwrap();
    let b = load_seg_split(SegDataset::Folder, &folder, "train", &classes, 3, 32).unwrap();
    // Palette masks and id masks of the same scenes are the same labels, scored mIoU 1.0.
    assert!(a.masks.equal(&b.masks));
    // Through the CLI: the folder's id masks as predictions for the VOC palette masks.
    let (g, p) = (voc.join("SegmentationClass"), folder.join("train/masks"));
    let o = run_gqcim(&[
        "metrics",
        "segmentation",
        "--gt",
        g.to_str().unwrap(),
        "--pred",
        p.to_str().unwrap(),
        "--num-classes",
        "3",
    ]);
    ok(&o);
    let m: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((m["miou"].as_f64(), m["images"].as_u64()), (Some(1.0), Some(4)), "{m}");
    let mut cm = ConfusionMatrix::new(3, Device::Cpu);
    cm.update(&a.masks.to_kind(Kind::Int64), &b.masks.to_kind(Kind::Int64), 255);
    assert_eq!(cm.miou(), 1.0);
    // 64x48 -> 32x24: the padding rows are ignore, and a box centre keeps its class.
    assert_eq!(a.masks.int64_value(&[0, 28, 3]), 255);
    assert_eq!(a.masks.int64_value(&[0, 9, 7]), 1);
    assert_eq!(a.masks.int64_value(&[1, 14, 12]), 2);
}

#[test]
fn letterbox_and_augmentation_keep_boxes_and_masks_on_their_pixels() {
    let d = tempfile::tempdir().unwrap();
    // A 90x60 image with one bright box: letterboxed to 48x48 (scale 48/90).
    let (x1, y1, x2, y2) = (18u32, 12u32, 63u32, 48u32);
    let img = image::RgbImage::from_fn(90, 60, |x, y| {
        image::Rgb(if (x1..x2).contains(&x) && (y1..y2).contains(&y) { [255; 3] } else { [0; 3] })
    });
    let p = d.path().join("a.png");
    img.save(&p).unwrap();
    let (t, fit) = load_letterboxed(&p, 3, 48).unwrap();
    assert_eq!(fit, Fit { width: 90, height: 60, new_width: 48, new_height: 32 });
    let mapped = fit.map_box([x1, y1, x2, y2].map(|v| v as f32));
    let lit = bounds(&t.select(0, 0).to_kind(Kind::Float).gt(127.0));
    for k in 0..4 {
        assert!((lit[k] - mapped[k]).abs() <= 1.0, "letterbox: pixels {lit:?} vs box {mapped:?}");
    }

    // Augmentation: a box drawn into image and mask, moved by flip and zoom.
    let s = 64i64;
    let boxes = [[10.0f32, 14.0, 30.0, 40.0], [20.0, 8.0, 52.0, 28.0], [4.0, 30.0, 24.0, 60.0]];
    let draws =
        [(false, 1.0f32), (true, 1.0), (true, 1.3), (false, 0.75), (true, 0.8), (false, 1.2)];
    for bx in boxes {
        let n = draws.len() as i64;
        let img = Tensor::zeros([n, 3, s, s], (Kind::Float, Device::Cpu));
        let mask = Tensor::zeros([n, s, s], (Kind::Int64, Device::Cpu));
        let [a, b, c, e] = bx.map(|v| v as i64);
        let _ = img.narrow(2, b, e - b).narrow(3, a, c - a).fill_(1.0);
        let _ = mask.narrow(1, b, e - b).narrow(2, a, c - a).fill_(2);
        let gt = Tensor::from_slice(&[1.0f32, bx[0], bx[1], bx[2], bx[3]])
            .view([1, 1, 5])
            .repeat([n, 1, 1]);
        let j = Jitter::fixed(
            &draws.iter().map(|d| d.0).collect::<Vec<_>>(),
            &draws.iter().map(|d| d.1).collect::<Vec<_>>(),
            Device::Cpu,
        );
        let (ji, jm, jb) = (j.images(&img), j.masks(&mask), j.boxes(&gt, s, s));
        for i in 0..n {
            let want: Vec<f32> = (1..5).map(|k| jb.double_value(&[i, 0, k]) as f32).collect();
            let px = bounds(&ji.get(i).select(0, 0).gt(0.5));
            let mk = bounds(&jm.get(i).eq(2));
            for k in 0..4 {
                assert!((px[k] - want[k]).abs() <= 1.0, "draw {i}: pixels {px:?} vs box {want:?}");
                assert!((mk[k] - want[k]).abs() <= 1.0, "draw {i}: mask {mk:?} vs box {want:?}");
            }
        }
        // Zoomed-out borders of the mask are ignore, not background.
        assert_eq!(jm.int64_value(&[3, 0, 0]), 255);
        assert_eq!(jm.int64_value(&[0, 0, 0]), 0);
    }
}

/// [x1, y1, x2, y2] (x2, y2 exclusive) of the true pixels of a bool [h, w] tensor.
fn bounds(on: &Tensor) -> [f32; 4] {
    let at = on.nonzero();
    assert!(at.size()[0] > 0, "no pixel set");
    let (ys, xs) = (at.select(1, 0), at.select(1, 1));
    let v = |t: Tensor| t.int64_value(&[]) as f32;
    [v(xs.min()), v(ys.min()), v(xs.max()) + 1.0, v(ys.max()) + 1.0]
}

fn detect_yaml(dir: &Path, dataset: &str, root: &Path, extra: &str) -> PathBuf {
    let cfg = format!(
        "seed: 0\ndevice: cpu\nthreads: 1\nout_dir: {out}\ndata:\n  dataset: {dataset}\n  \
         root: {root}\n  input_size: 64\n{extra}model:\n  in_channels: 3\n  num_classes: 2\n  \
         widths: [8, 8, 8, 8]\n  neck_width: 8\n  levels: [2, 3, 4]\ntrain:\n  epochs: 2\n  \
         batch_size: 2\n  lr: 0.01\n  warmup_epochs: 0\neval:\n  batch_size: 4\n  tb_images: 1\n",
        out = dir.join("runs").display(),
        root = root.display()
    );
    let p = dir.join(format!("detect_{dataset}.yaml"));
    write(&p, &cfg);
    p
}

fn results(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap()
}

#[test]
fn detection_trains_evaluates_and_runs_the_grid_on_each_layout() {
    let d = tempfile::tempdir().unwrap();
    let (voc, yolo, coco) = (d.path().join("voc"), d.path().join("yolo"), d.path().join("coco"));
    write_voc(&voc);
    write_yolo(&yolo);
    write_coco(&coco);
    for (kind, root, extra) in [
        ("voc", &voc, "  classes: [cat, dog]\n"),
        ("yolo", &yolo, ""),
        ("coco", &coco, "  train_split: train\n  test_split: val\n"),
    ] {
        let cfg = detect_yaml(d.path(), kind, root, extra);
        let run = d.path().join(format!("train-{kind}"));
        let (c, r) = (cfg.to_str().unwrap(), run.to_str().unwrap());
        ok(&run_gqcim(&["detect-train", "--config", c, "--run-dir", r]));
        let res = results(&run);
        assert_eq!(res["classes"], json!(["cat", "dog"]), "{kind}");
        assert_eq!(res["history"].as_array().unwrap().len(), 2, "{kind}");
        let map = res["metrics"]["map50"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&map), "{kind}: {map}");
        assert!(res["metrics"]["ap50_per_class"]["dog"].is_number(), "{kind}");
        let ck = run.join("model.safetensors");
        let ev = d.path().join(format!("eval-{kind}"));
        ok(&run_gqcim(&[
            "detect-eval",
            "--config",
            c,
            "--checkpoint",
            ck.to_str().unwrap(),
            "--run-dir",
            ev.to_str().unwrap(),
        ]));
        assert_eq!(results(&ev)["metrics"]["map50"].as_f64(), Some(map), "{kind}: eval = train");
        if kind != "voc" {
            continue;
        }
        // On the crossbar: Monte-Carlo trials of the same checkpoint.
        let an = d.path().join("eval-analog");
        let (ck_s, an_s) = (ck.to_str().unwrap(), an.to_str().unwrap());
        let args = ["detect-eval", "--config", c, "--checkpoint", ck_s, "--run-dir", an_s];
        ok(&run_gqcim(
            &[&args[..], &["--analog", "--trials", "2", "--set", "analog.output_noise=0.01"]]
                .concat(),
        ));
        let a = results(&an);
        assert_eq!(a["command"], "eval --analog");
        assert_eq!(a["task"], "detect");
        assert_eq!(a["analog"]["analog"]["trials"].as_array().unwrap().len(), 2);
        // Quantize and fine-tune the same checkpoint: its fp32 score is eval's, the record
        // carries the detection config (not a classification view of it).
        for verb in ["detect-quantize", "detect-finetune"] {
            let q = d.path().join(verb);
            let args = ["--config", c, "--checkpoint", ck_s, "--run-dir", q.to_str().unwrap()];
            let tune = ["--set", "finetune.epochs=0.5", "--set", "finetune.batch_size=2"];
            ok(&run_gqcim(
                &[&[verb][..], &args, &["--method", "gq", "--levels", "4"], &tune].concat(),
            ));
            let r = results(&q);
            assert_eq!(r["command"], verb.trim_start_matches("detect-"));
            assert_eq!(r["task"], "detect");
            assert_eq!(r["fp32"].as_f64(), Some(map), "{verb}: fp32 = eval");
            assert_eq!((r["method"].as_str(), r["levels"].as_u64()), (Some("gq"), Some(4)));
            assert_eq!(r["config"]["data"]["dataset"], "voc", "{verb}: the task's own config");
            let after = if verb == "detect-finetune" { "after_finetune" } else { "post_training" };
            assert!((0.0..=1.0).contains(&r[after].as_f64().unwrap()), "{verb}: {r}");
            assert_eq!(q.join("model.safetensors").is_file(), verb == "detect-finetune");
        }
        // Per-layer sensitivity and the crossbar export take the detection config too.
        let sens = d.path().join("sensitivity");
        let s_args = ["--config", c, "--checkpoint", ck_s, "--run-dir", sens.to_str().unwrap()];
        let more = ["--task", "detect", "--sigma", "0.05", "--trials", "2"];
        ok(&run_gqcim(&[&["sensitivity"][..], &s_args, &more].concat()));
        let r = results(&sens);
        assert_eq!(
            (r["task"].as_str(), r["metric_name"].as_str().is_some()),
            (Some("detect"), true)
        );
        assert_eq!(r["config"]["data"]["dataset"], "voc");
        let layers = r["layers"].as_array().unwrap();
        assert!(layers.len() > 10, "every conv of the detector: {}", layers.len());
        let exp = d.path().join("export");
        let e_args = ["--config", c, "--checkpoint", ck_s, "--out", exp.to_str().unwrap()];
        ok(&run_gqcim(
            &[&["export"][..], &e_args, &["--task", "detect", "--levels", "4"]].concat(),
        ));
        let index: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(exp.join("index.json")).unwrap())
                .unwrap();
        assert_eq!(index["layers"].as_object().unwrap().len(), layers.len(), "{index}");
        let grid = d.path().join("grid");
        let mut args: Vec<String> = [
            "detect-compare",
            "--config",
            c,
            "--checkpoint",
            ck.to_str().unwrap(),
            "--run-dir",
            grid.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for s in [
            "compare.methods=[gq]",
            "compare.levels=[2]",
            "compare.modes=[qat]",
            "compare.sigmas=[0.0, 0.05]",
            "analog.trials=2",
            "finetune.epochs=0.5",
            "finetune.batch_size=2",
        ] {
            args.extend(["--set".to_string(), s.to_string()]);
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&run_gqcim(&a));
        let csv = std::fs::read_to_string(grid.join("results.csv")).unwrap();
        assert_eq!(csv.lines().count(), 1 + 4, "fp32 and gq at two sigmas: {csv}");
        // The grid's pictures carry the dataset's legend (cat, dog), not the scenes'.
        let yaml = std::fs::read_to_string(&cfg).unwrap();
        let own = plan_legend("detect", &yaml, 300).unwrap();
        let scenes = task_legend("detect", 300).unwrap();
        assert!(own.h < scenes.h, "two classes fit fewer legend rows than ten");
    }
}

fn segment_yaml(dir: &Path, dataset: &str, root: &Path) -> PathBuf {
    let cfg = format!(
        "seed: 0\ndevice: cpu\nthreads: 1\nout_dir: {out}\ndata:\n  dataset: {dataset}\n  \
         root: {root}\n  input_size: 32\n  classes: [background, cat, dog]\nmodel:\n  \
         in_channels: 3\n  num_classes: 3\ntrain:\n  epochs: 1\n  batch_size: 2\n  lr: 0.01\n  \
         warmup_epochs: 0\neval:\n  batch_size: 4\n  sample_images: 1\n",
        out = dir.join("runs").display(),
        root = root.display()
    );
    let p = dir.join(format!("segment_{dataset}.yaml"));
    write(&p, &cfg);
    p
}

#[test]
fn segmentation_trains_and_evaluates_on_voc_and_folder() {
    let d = tempfile::tempdir().unwrap();
    let (voc, folder) = (d.path().join("vocseg"), d.path().join("folder"));
    write_voc_seg(&voc);
    write_folder_seg(&folder);
    for (kind, root) in [("voc", &voc), ("folder", &folder)] {
        let cfg = segment_yaml(d.path(), kind, root);
        let run = d.path().join(format!("seg-{kind}"));
        let (c, r) = (cfg.to_str().unwrap(), run.to_str().unwrap());
        ok(&run_gqcim(&["segment-train", "--config", c, "--run-dir", r]));
        let res = results(&run);
        assert_eq!(res["class_names"], json!(["background", "cat", "dog"]), "{kind}");
        let miou = res["metrics"]["test_miou"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&miou), "{kind}: {miou}");
        let ck = run.join("model.safetensors");
        let ev = d.path().join(format!("seg-eval-{kind}"));
        ok(&run_gqcim(&[
            "segment-eval",
            "--config",
            c,
            "--checkpoint",
            ck.to_str().unwrap(),
            "--run-dir",
            ev.to_str().unwrap(),
        ]));
        assert_eq!(results(&ev)["metrics"]["test_miou"].as_f64(), Some(miou), "{kind}");
        if kind == "folder" {
            let an = d.path().join("seg-analog");
            let (ck_s, an_s) = (ck.to_str().unwrap(), an.to_str().unwrap());
            let args = ["segment-eval", "--config", c, "--checkpoint", ck_s, "--run-dir", an_s];
            ok(&run_gqcim(
                &[&args[..], &["--analog", "--trials", "2", "--set", "analog.output_noise=0.01"]]
                    .concat(),
            ));
            let a = results(&an);
            assert_eq!(a["analog"]["metric"], "miou");
            assert_eq!(a["analog"]["analog"]["trials"].as_array().unwrap().len(), 2);
            let q = d.path().join("seg-finetune");
            ok(&run_gqcim(&[
                "segment-finetune",
                "--config",
                c,
                "--checkpoint",
                ck_s,
                "--run-dir",
                q.to_str().unwrap(),
                "--method",
                "uniform-mse",
                "--levels",
                "4",
                "--set",
                "finetune.epochs=0.5",
                "--set",
                "finetune.batch_size=2",
            ]));
            let r = results(&q);
            assert_eq!(r["command"], "finetune");
            assert_eq!(r["task"], "segment");
            assert_eq!(r["fp32"].as_f64(), Some(miou), "fp32 = eval");
            assert!((0.0..=1.0).contains(&r["after_finetune"].as_f64().unwrap()), "{r}");
        }
    }
}

#[test]
fn bad_datasets_are_errors_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let voc = root.join("voc");
    write_voc(&voc);
    let classes = names();
    let voc_err = |split: &str| err_text(list_split(DetDataset::Voc, &voc, split, Some(&classes)));

    // A split list naming an image id without annotation, and an annotation whose image is gone.
    write(&voc.join("ImageSets/Main/missing.txt"), "img0\nnope\n");
    let e = voc_err("missing");
    assert!(e.contains("missing.txt") && e.contains("line 2") && e.contains("nope.xml"), "{e}");
    std::fs::copy(voc.join("Annotations/img1.xml"), voc.join("Annotations/gone.xml")).unwrap();
    let xml = std::fs::read_to_string(voc.join("Annotations/gone.xml")).unwrap();
    write(&voc.join("Annotations/gone.xml"), &xml.replace("img1.png", "gone.png"));
    write(&voc.join("ImageSets/Main/gone.txt"), "gone\n");
    let e = voc_err("gone");
    assert!(
        e.contains("gone.png") && e.contains("does not exist") && e.contains("gone.xml"),
        "{e}"
    );

    // A class not in the class list.
    write(&voc.join("Annotations/bird.xml"), &xml.replace("dog", "bird"));
    write(&voc.join("ImageSets/Main/bird.txt"), "bird\n");
    let e = voc_err("bird");
    assert!(e.contains("bird.xml") && e.contains("unknown class name `bird`"), "{e}");

    // Paths that would leave the root.
    write(&voc.join("Annotations/abs.xml"), &xml.replace("img1.png", "/etc/passwd"));
    write(&voc.join("ImageSets/Main/abs.txt"), "abs\n");
    let e = voc_err("abs");
    assert!(e.contains("abs.xml") && e.contains("relative path"), "{e}");
    write(&voc.join("ImageSets/Main/up.txt"), "../../etc/x\n");
    let e = voc_err("up");
    assert!(e.contains("up.txt") && e.contains("inside"), "{e}");

    // Inverted and outside boxes are dropped and counted; a box partly outside is clipped.
    let bad = xml.replace("<xmin>11</xmin>", "<xmin>50</xmin>").replace("</annotation>", "<object><name>cat</name><bndbox><xmin>100</xmin><ymin>100</ymin><xmax>120</xmax><ymax>120</ymax></bndbox></object><object><name>cat</name><bndbox><xmin>50</xmin><ymin>1</ymin><xmax>90</xmax><ymax>9</ymax></bndbox></object></annotation>");
    write(&voc.join("Annotations/geo.xml"), &bad);
    write(&voc.join("ImageSets/Main/geo.txt"), "geo\n");
    let l = list_split(DetDataset::Voc, &voc, "geo", Some(&classes)).unwrap();
    assert_eq!((l.counts.zero_area, l.counts.outside, l.counts.clipped), (1, 1, 1));
    assert_eq!(l.anns[0].boxes.len(), 1);
    assert_eq!(l.anns[0].boxes[0].x2, W as f32);

    // YOLO: a class id past data.yaml's names; a split path outside the root.
    let yolo = root.join("yolo");
    write_yolo(&yolo);
    write(&yolo.join("labels/val/img1.txt"), "2 0.5 0.5 0.2 0.2\n");
    let e = err_text(list_split(DetDataset::Yolo, &yolo, "val", None));
    assert!(e.contains("labels/val/img1.txt") && e.contains("class id 2 out of range"), "{e}");
    write(&yolo.join("data.yaml"), "names: [cat, dog]\ntrain: /etc\n");
    let e = err_text(list_split(DetDataset::Yolo, &yolo, "train", None));
    assert!(e.contains("data.yaml") && e.contains("`/etc`"), "{e}");

    // COCO: an annotation of an image id not listed.
    let coco = root.join("coco");
    write_coco(&coco);
    let mut v = coco_json(&[0, 1]);
    v["annotations"][1]["image_id"] = json!(99);
    write(&coco.join("annotations/instances_val.json"), &v.to_string());
    let e = err_text(list_split(DetDataset::Coco, &coco, "val", None));
    assert!(e.contains("instances_val.json") && e.contains("image_id 99"), "{e}");
    let mut v = coco_json(&[0]);
    v["images"][0]["file_name"] = json!("../../x.png");
    write(&coco.join("annotations/instances_val.json"), &v.to_string());
    let e = err_text(list_split(DetDataset::Coco, &coco, "val", None));
    assert!(e.contains("instances_val.json") && e.contains("`../../x.png`"), "{e}");

    // A mask colour outside the VOC palette.
    let seg = root.join("vocseg");
    write_voc_seg(&seg);
    let m = seg.join("SegmentationClass/img1.png");
    let mut rgb = image::open(&m).unwrap().to_rgb8();
    rgb.put_pixel(3, 4, image::Rgb([1, 2, 3]));
    rgb.save(&m).unwrap();
    let three: Vec<String> = ["background", "cat", "dog"].iter().map(|s| s.to_string()).collect();
    let e = err_text(load_seg_split(SegDataset::Voc, &seg, "val", &three, 3, 32));
    assert!(
        e.contains("img1.png") && e.contains("(1, 2, 3)") && e.contains("row 4, column 3"),
        "{e}"
    );

    // Colour images for a one-channel model; a class count the model does not have.
    let l = list_split(DetDataset::Voc, &voc, "val", Some(&classes)).unwrap();
    let e = err_text(decode_listing(&l, 1, 64));
    assert!(e.contains("model.in_channels") && e.contains("img0.png"), "{e}");
    let cfg = detect_yaml(root, "voc", &voc, "  classes: [cat, dog, bird]\n");
    let o = run_gqcim(&["detect-train", "--config", cfg.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("model.num_classes") && e.contains("3 classes"), "{e}");

    // Own-dataset keys on a scenes config would be ignored: an error instead.
    for (verb, cfg) in [("detect-train", "detect_scenes"), ("segment-train", "segment_scenes")] {
        let cfg = repo_root().join(format!("configs/{cfg}.yaml"));
        let o = run_gqcim(&[verb, "--config", cfg.to_str().unwrap(), "--set", "data.root=/x"]);
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(e.contains("data.root") && e.contains("data.dataset"), "{e}");
    }
}
