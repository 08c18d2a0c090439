//! The detection task: the loss learns, NMS and decoding give hand-checked answers, perfect
//! predictions score mAP 1, every conv of the detector goes through the weight hook, the
//! harness scores in [0, 1], the config reads with did-you-mean errors, and a tiny training
//! run writes its run folder and resumes. Data are synthetic items written by the tests; an
//! ignored test makes a short run on the real Fashion-MNIST.
mod common;
use common::*;
use gqcim::config::{AnalogConfig, QuantConfig, QuantMethod};
use gqcim::data::scenes::{generate, SceneConfig, SceneSet};
use gqcim::engine::task::Task;
use gqcim::nets::yolo::{build_detector, YoloConfig};
use gqcim::sgd::Sgd;
use gqcim::tasks::detect::{
    assign, decode, detection_loss, encode_boxes, ground_truth, nms, postprocess, scene_input,
    score, DetectConfig, DetectEvalConfig, DetectHarness, DetectLossConfig, Grid,
};
use tch::{Device, Kind, Tensor};

/// Ten synthetic 28x28 items per class block: class k is a rectangle of intensity 90 + 15k
/// with horizontal stripes every k + 2 rows, so classes differ in texture as well as shade.
fn items(per_class: usize) -> (Tensor, Tensor) {
    let n = 10 * per_class;
    let mut px = vec![0u8; n * 784];
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let k = i % 10;
        labels.push(k as i64);
        let (top, left, h, w) = (4 + i % 3, 3 + k % 4, 18 + k % 5, 16 + (i / 10) % 6);
        for y in top..top + h {
            for x in left..left + w {
                let stripe = (y - top) % (k + 2) == 0;
                px[i * 784 + y * 28 + x] = if stripe { 255 } else { (90 + 15 * k) as u8 };
            }
        }
    }
    (Tensor::from_slice(&px).view([n as i64, 1, 28, 28]), Tensor::from_slice(&labels))
}

/// One intra-op thread: the tests of this binary run in parallel threads, and libtorch's
/// OpenMP workers spin-wait when the cores are oversubscribed (a 1 s test took 150 s on a
/// busy 2-core machine with the default two threads per op).
fn one_thread() {
    tch::set_num_threads(1);
}

fn tiny_model() -> YoloConfig {
    YoloConfig { widths: vec![8, 16, 16, 32], neck_width: 16, ..YoloConfig::default() }
}

fn scenes(count: usize, seed: u64) -> SceneSet {
    let (im, lb) = items(3);
    generate(&im, &lb, &SceneConfig::default(), count, seed)
}

#[test]
fn loss_decreases_when_overfitting_four_scenes() {
    one_thread();
    let _rng = rng_lock();
    tch::manual_seed(0);
    let model = tiny_model();
    let loss_cfg = DetectLossConfig::default();
    let net = build_detector(&model, Device::Cpu);
    let grid = Grid::new(&model, &loss_cfg, 96, 96, Device::Cpu);
    let set = scenes(4, 5);
    let x = scene_input(&set.images);
    let targets = assign(&set.boxes_tensor(6), &grid, &loss_cfg);
    assert!(targets.positive.sum(Kind::Int64).int64_value(&[]) > 0);
    let params: Vec<(String, Tensor)> =
        net.vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    let mut opt = Sgd::new(params, 0.9, true, 0.0);
    let mut losses = Vec::new();
    for _ in 0..40 {
        let raw = net.forward_t(&x, true);
        let parts = detection_loss(&raw, &targets, &grid, &loss_cfg);
        opt.zero_grad();
        parts.total.backward();
        opt.step(0.02);
        losses.push(parts.total.double_value(&[]));
    }
    let first = losses[..3].iter().sum::<f64>() / 3.0;
    let last = losses[losses.len() - 3..].iter().sum::<f64>() / 3.0;
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(last < 0.5 * first, "loss {first:.3} -> {last:.3}: {losses:?}");
}

#[test]
fn nms_is_greedy_and_class_wise() {
    one_thread();
    let boxes = Tensor::from_slice(&[
        0f32, 0., 10., 10., // 0: A, class 0, 0.9
        1., 1., 11., 11., // 1: B, class 0, 0.8: IoU(A, B) = 0.68 -> suppressed by A
        1., 1., 11., 11., // 2: C, class 1, 0.7: same box as B, other class -> kept
        20., 20., 30., 30., // 3: D, class 0, 0.6: far away -> kept
        2., 2., 12.,
        12., // 4: G, class 0, 0.75: IoU(A, G) = 0.47, IoU(B, G) = 0.68; B is gone -> kept
        0., 0., 10., 9., // 5: class 1, 0.65: IoU with C = 0.59 -> suppressed by C
    ])
    .view([6, 4]);
    let scores = Tensor::from_slice(&[0.9f32, 0.8, 0.7, 0.6, 0.75, 0.65]);
    let classes = Tensor::from_slice(&[0i64, 0, 1, 0, 0, 1]);
    assert_eq!(nms(&boxes, &scores, &classes, 0.5), vec![0, 4, 2, 3]);
    // A looser threshold keeps B and G as well (IoU 0.68 <= 0.7).
    assert_eq!(nms(&boxes, &scores, &classes, 0.7), vec![0, 1, 4, 2, 5, 3]);
    // All one class: C goes too (it is B's box; B was suppressed, but A overlaps C by 0.68).
    let one = Tensor::zeros([6], (Kind::Int64, Device::Cpu));
    assert_eq!(nms(&boxes, &scores, &one, 0.5), vec![0, 4, 3]);
}

#[test]
fn decode_of_a_hand_made_prediction() {
    one_thread();
    let model = YoloConfig::default();
    let grid = Grid::new(&model, &DetectLossConfig::default(), 96, 96, Device::Cpu);
    let n = grid.cells();
    assert_eq!(n, 24 * 24 + 12 * 12 + 6 * 6);
    // Stride-8 level starts after the 24x24 stride-4 cells; cell (x 3, y 5) has centre (28, 44).
    let cell = 576 + 5 * 12 + 3;
    let raw = Tensor::full([1, n, 15], -10.0, (Kind::Float, Device::Cpu));
    // Distances (l, t, r, b) = (1, 2, 3, 0.5) strides, through softplus^-1(v) = ln(e^v - 1).
    let d = [1.0f64, 2.0, 3.0, 0.5].map(|v| v.exp_m1().ln());
    let row = raw.get(0).get(cell);
    row.narrow(0, 0, 4).copy_(&Tensor::from_slice(&d).to_kind(Kind::Float));
    let _ = row.narrow(0, 4, 1).fill_(10.0);
    let _ = row.narrow(0, 5 + 3, 1).fill_(10.0);
    let (boxes, scores) = decode(&raw, &grid);
    let b = Vec::<f32>::try_from(boxes.get(0).get(cell)).unwrap();
    let expected = [28.0 - 8.0, 44.0 - 16.0, 28.0 + 24.0, 44.0 + 4.0];
    for (g, e) in b.iter().zip(expected) {
        assert!((g - e).abs() < 1e-4, "{b:?} != {expected:?}");
    }
    assert_eq!(scores.get(0).get(cell).argmax(0, false).int64_value(&[]), 3);
    let dets = postprocess(&raw, &grid, &DetectEvalConfig::default(), 7);
    assert_eq!(dets.len(), 1);
    assert_eq!(dets[0].len(), 1, "{:?}", dets[0]);
    let det = dets[0][0];
    assert_eq!((det.image_id, det.class), (7, 3));
    assert!(det.score > 0.999);
    for (g, e) in det.bbox.iter().zip(expected) {
        assert!((g - f64::from(e)).abs() < 1e-4, "{:?} != {expected:?}", det.bbox);
    }
}

#[test]
fn perfect_predictions_score_map_one() {
    one_thread();
    let model = YoloConfig::default();
    let loss_cfg = DetectLossConfig::default();
    let grid = Grid::new(&model, &loss_cfg, 96, 96, Device::Cpu);
    let set = scenes(40, 11);
    let gt = set.boxes_tensor(6);
    let t = assign(&gt, &grid, &loss_cfg);
    // Every ground-truth box owns at least one cell.
    let owned: i64 = t.positive.sum(Kind::Int64).int64_value(&[]);
    let boxes: usize = set.boxes.iter().map(|b| b.len()).sum();
    assert!(owned >= boxes as i64, "{owned} positive cells for {boxes} boxes");
    // Targets encoded through the box coding: confident, correct, exact.
    let n = grid.cells();
    let enc = encode_boxes(&t.boxes, &grid.centres.unsqueeze(0), &grid.strides.unsqueeze(0));
    let pos = t.positive.unsqueeze(-1);
    let obj = Tensor::full([40, n, 1], -20.0, (Kind::Float, Device::Cpu)).masked_fill(&pos, 20.0);
    let cls = t.classes.clamp_min(0).one_hot(10).to_kind(Kind::Float) * 40.0 - 20.0;
    let raw = Tensor::cat(&[enc.where_self(&pos, &Tensor::zeros_like(&enc)), obj, cls], -1);
    let dets = postprocess(&raw, &grid, &DetectEvalConfig::default(), 0);
    let r = score(&dets, &ground_truth(&set.boxes), 10);
    assert_eq!(r.detections, boxes, "one detection per box after NMS");
    assert!((r.map50 - 1.0).abs() < 1e-9, "VOC mAP {}", r.map50);
    assert!((r.coco_map - 1.0).abs() < 1e-9, "COCO mAP {}", r.coco_map);
    // The loss of these predictions is close to zero.
    let parts = detection_loss(&raw, &t, &grid, &loss_cfg);
    assert!(parts.total.double_value(&[]) < 1e-3, "{}", parts.total.double_value(&[]));
}

#[test]
fn every_conv_of_the_detector_is_hooked_and_quantizable() {
    one_thread();
    let _rng = rng_lock();
    for (cfg, expected) in [
        (YoloConfig::default(), 1 + 4 * 3 + 3 * 2 + 3 * 5),
        (
            YoloConfig { blocks: 2, levels: vec![3, 4], ..YoloConfig::default() },
            1 + 4 * 5 + 2 * 2 + 2 * 5,
        ),
    ] {
        let net = build_detector(&cfg, Device::Cpu);
        let names = net.layers.names();
        assert_eq!(names.len(), expected, "{names:?}");
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        // Every 4-d weight in the var store belongs to a hooked layer.
        let convs: Vec<String> = net
            .vs
            .variables()
            .into_iter()
            .filter(|(k, v)| k.ends_with(".weight") && v.dim() == 4)
            .map(|(k, _)| k.trim_end_matches(".weight").to_string())
            .collect();
        assert_eq!(convs.len(), expected);
        assert!(convs.iter().all(|c| names.contains(c)), "unhooked conv among {convs:?}");
        for name in ["backbone.conv1", "backbone.layer1.0.conv1", "backbone.layer4.0.downsample.0"]
        {
            assert!(names.iter().any(|n| n == name), "{name} missing from {names:?}");
        }
        let last = cfg.levels.len() - 1;
        for name in [
            format!("neck.lateral.{last}.0"),
            format!("neck.output.{last}.0"),
            format!("head.{last}.obj_pred"),
        ] {
            assert!(names.contains(&name), "{name} missing");
        }
        assert!(net.vs.variables().contains_key("backbone.layer1.0.bn1.num_batches_tracked"));
    }
    // Quantizing to 3 levels reaches every layer: at most 3 distinct weights each.
    let net = build_detector(&tiny_model(), Device::Cpu);
    let q = QuantConfig {
        method: QuantMethod::Gq,
        levels: 3,
        report_exact_gap: false,
        ..QuantConfig::default()
    };
    let dep = gqcim::quant::deploy::apply_quantization(&net, &q, &AnalogConfig::default()).unwrap();
    assert_eq!(dep.quantized.len(), net.layers.layers().len());
    for l in net.layers.layers() {
        let distinct =
            l.effective_weight().flatten(0, -1).unique_dim(0, false, false, false).0.size()[0];
        assert!(distinct <= 3, "{}: {distinct} distinct weights", l.spec.name);
    }
}

/// Test scenes without a single ground-truth box have no mAP (VOC and pycocotools say -1);
/// the evaluation says so instead of reporting 0.00%. Blank items are refused up front.
#[test]
fn no_ground_truth_at_all_is_an_error_not_zero_map() {
    one_thread();
    let _rng = rng_lock();
    let cfg = DetectConfig { model: tiny_model(), ..DetectConfig::default() };
    let test = scenes(4, 2);
    let empty = SceneSet {
        images: test.images.shallow_clone(),
        masks: test.masks.shallow_clone(),
        boxes: vec![Vec::new(); 4],
    };
    let h = DetectHarness::from_scenes(&cfg, &scenes(4, 1), empty, Device::Cpu);
    let net = build_detector(&cfg.model, Device::Cpu);
    let e = h.evaluate(&net).expect_err("mAP of a set without objects").to_string();
    assert!(e.contains("no ground-truth box"), "{e}");
    let (im, _) = items(3);
    let blank = im.zeros_like();
    let e = gqcim::data::scenes::check_items(&blank, &SceneConfig::default(), "test")
        .expect_err("blank items accepted")
        .to_string();
    assert!(e.contains("data.scenes.threshold") && e.contains("no object"), "{e}");
    let none = im.narrow(0, 0, 0);
    let e = gqcim::data::scenes::check_items(&none, &SceneConfig::default(), "training")
        .expect_err("no items accepted")
        .to_string();
    assert!(e.contains("training split has no item images"), "{e}");
    gqcim::data::scenes::check_items(&im, &SceneConfig::default(), "test").unwrap();
}

#[test]
fn harness_scores_a_fraction_and_gives_a_differentiable_loss() {
    one_thread();
    let _rng = rng_lock();
    tch::manual_seed(1);
    let cfg = DetectConfig { model: tiny_model(), ..DetectConfig::default() };
    let h = DetectHarness::from_scenes(&cfg, &scenes(16, 1), scenes(8, 2), Device::Cpu);
    assert_eq!((h.task(), h.train_len(), h.eval_len()), ("detect", 16, 8));
    let net = build_detector(&cfg.model, Device::Cpu);
    let m = h.evaluate(&net).unwrap();
    assert!((0.0..=1.0).contains(&m), "mAP {m}");
    let loss = h.batch_loss(&net, &Tensor::from_slice(&[0i64, 3, 5, 7]));
    assert!(loss.double_value(&[]).is_finite() && loss.double_value(&[]) > 0.0);
    loss.backward();
    let w = net.layers.get("head.0.obj_pred").unwrap().spec.weight.grad();
    assert!(w.defined() && w.abs().sum(Kind::Float).double_value(&[]) > 0.0);
}

#[test]
fn config_file_reads_and_unknown_keys_get_a_hint() {
    one_thread();
    let path = repo_root().join("configs/detect_scenes.yaml");
    let cfg = DetectConfig::load(&path, &["train.epochs=2".into(), "model.neck_width=32".into()])
        .unwrap();
    assert_eq!((cfg.train.epochs, cfg.model.neck_width), (2, 32));
    assert_eq!(cfg.data.scenes.canvas, 96);
    let err = DetectConfig::from_yaml_str("eval:\n  nms_iuo: 0.5\n", "t.yaml", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`nms_iuo`") && err.contains("did you mean `nms_iou`"), "{err}");
    let err = DetectConfig::from_yaml_str("model:\n  levels: [4, 2]\n", "t.yaml", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.levels"), "{err}");
    let err = DetectConfig::from_yaml_str("data:\n  scenes:\n    canvas: 88\n", "t.yaml", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("data.scenes.canvas"), "{err}");
}

fn tiny_run_config(dir: &std::path::Path, root: &std::path::Path, epochs: usize) -> DetectConfig {
    let text = format!(
        "seed: 2\ndevice: cpu\nout_dir: {out}\ndata:\n  fmnist_root: {root}\n  scenes:\n    \
         canvas: 48\n    min_size: 12\n    max_size: 28\n    max_items: 3\n    train_scenes: 32\n    \
         test_scenes: 8\nmodel:\n  widths: [8, 8, 16, 16]\n  neck_width: 16\ntrain:\n  epochs: {epochs}\n  \
         batch_size: 16\n  lr: 0.02\n  warmup_epochs: 0\n  nan_check_every: 1\n  histogram_every: 1\n",
        out = dir.join("runs").display(),
        root = root.display()
    );
    DetectConfig::from_yaml_str(&text, "tiny.yaml", &[]).unwrap()
}

#[test]
fn train_writes_a_run_folder_and_resumes() {
    one_thread();
    let _rng = rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    write_toy_idx(&root, 200, 50);
    let run = dir.path().join("run");
    let cfg_path = dir.path().join("tiny.yaml");
    let one = gqcim::engine::train::train_opened(
        gqcim::tasks::detect::open(
            &tiny_run_config(dir.path(), &root, 1),
            gqcim::tasks::Purpose::Train,
        )
        .unwrap(),
        &cfg_path,
        Some(&run),
        false,
    )
    .unwrap();
    assert_eq!(one["history"].as_array().unwrap().len(), 1);
    for f in [
        "config.yaml",
        "results.json",
        "model.safetensors",
        "checkpoints/last.safetensors",
        "checkpoints/last.json",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    assert!(std::fs::read_dir(&run).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("tfevents")));
    let two = gqcim::engine::train::train_opened(
        gqcim::tasks::detect::open(
            &tiny_run_config(dir.path(), &root, 2),
            gqcim::tasks::Purpose::Train,
        )
        .unwrap(),
        &cfg_path,
        Some(&run),
        true,
    )
    .unwrap();
    let history = two["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    // The resumed run keeps the first epoch's record (JSON floats round-trip to within an ulp).
    assert_eq!(history[0]["epoch"], one["history"][0]["epoch"]);
    let loss0 = |h: &serde_json::Value| h["train_loss"].as_f64().unwrap();
    assert!((loss0(&history[0]) - loss0(&one["history"][0])).abs() < 1e-9);
    let m = two["metrics"]["map50"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&m));
}

#[test]
fn noise_background_is_fixed_by_the_seed() {
    one_thread();
    let (im, lb) = items(1);
    let cfg = SceneConfig {
        background: gqcim::data::scenes::Background::Noise,
        ..SceneConfig::default()
    };
    let (a, b, c) = (
        generate(&im, &lb, &cfg, 3, 4),
        generate(&im, &lb, &cfg, 3, 4),
        generate(&im, &lb, &cfg, 3, 5),
    );
    assert!(a.images.equal(&b.images) && !a.images.equal(&c.images));
    // Background pixels are noise in [0, background_level].
    let bg = a.images.squeeze_dim(1).masked_select(&a.masks.eq(0));
    let max = bg.max().int64_value(&[]);
    assert!(max > 30 && max <= 40, "{max}");
}

/// A short run on the real Fashion-MNIST (500-scene pools, 3 epochs, 200 test scenes) against
/// the untrained network. `cargo test --release --test detect_task -- --ignored --nocapture`.
#[test]
#[ignore = "needs Fashion-MNIST under /usr/share/datasets/fashion-mnist; about 30 s on one thread"]
fn tiny_run_on_fashion_mnist_learns() {
    one_thread();
    let _rng = rng_lock();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "seed: 0\ndevice: cpu\nthreads: 1\nout_dir: {}\ndata:\n  scenes:\n    train_scenes: 500\n    test_scenes: 200\n\
         train:\n  epochs: 3\n  batch_size: 32\n  lr: 0.05\n  warmup_epochs: 0.5\n  histogram_every: 0\n",
        dir.path().join("runs").display()
    );
    let cfg = DetectConfig::from_yaml_str(&text, "tiny.yaml", &[]).unwrap();
    let h = DetectHarness::new(&cfg, Device::Cpu).unwrap();
    tch::manual_seed(cfg.seed as i64);
    let untrained = h.evaluate_full(&build_detector(&cfg.model, Device::Cpu)).unwrap();
    let res = gqcim::engine::train::train_opened(
        gqcim::tasks::detect::open(&cfg, gqcim::tasks::Purpose::Train).unwrap(),
        std::path::Path::new("tiny.yaml"),
        Some(&dir.path().join("run")),
        false,
    )
    .unwrap();
    let hist = res["history"].as_array().unwrap();
    for e in hist {
        eprintln!(
            "epoch {}: loss {:.4}  mAP@0.5 {:.4}  COCO mAP {:.4}  ({:.0} s)",
            e["epoch"],
            e["train_loss"].as_f64().unwrap(),
            e["map50"].as_f64().unwrap(),
            e["coco_map"].as_f64().unwrap(),
            e["seconds"].as_f64().unwrap()
        );
    }
    let trained = res["metrics"]["map50"].as_f64().unwrap();
    eprintln!(
        "evaluation of {} scenes: {:.2} s; {:.0} train scenes/s",
        res["metrics"]["test_images"],
        res["metrics"]["eval_seconds"],
        res["train_images_per_second"]
    );
    eprintln!(
        "untrained mAP@0.5 {:.4} COCO {:.4}; trained {trained:.4}",
        untrained.map50, untrained.coco_map
    );
    let loss = |e: &serde_json::Value| e["train_loss"].as_f64().unwrap();
    assert!(loss(&hist[2]) < loss(&hist[0]));
    assert!(trained > untrained.map50 + 0.05, "{trained} vs untrained {}", untrained.map50);
}

/// The grid's evaluation budget keeps the first scenes with their own ground truth (a cut of
/// the flattened box list once scored 500 scenes against the boxes of about 150).
#[test]
fn limiting_the_test_set_keeps_each_scene_with_its_boxes() {
    one_thread();
    let cfg = DetectConfig { model: tiny_model(), ..DetectConfig::default() };
    let test = scenes(8, 2);
    let mut h = DetectHarness::from_scenes(&cfg, &scenes(4, 1), scenes(8, 2), Device::Cpu);
    h.limit_test(3);
    assert_eq!(h.eval_len(), 3);
    let expected = ground_truth(&test.boxes[..3]);
    assert!(expected.len() > 3, "test scenes should hold more boxes than scenes");
    assert_eq!(h.test_gts.len(), expected.len());
    for (a, b) in h.test_gts.iter().zip(&expected) {
        assert_eq!((a.image_id, a.class, a.bbox), (b.image_id, b.class, b.bbox));
    }
    assert!(h.test.images.equal(&test.images.narrow(0, 0, 3)));
}

/// The shipped config carries the deployment sections (quant, finetune, analog, train_noise,
/// compare) and checks them like the classification config does.
#[test]
fn detect_config_carries_a_valid_comparison_grid() {
    let path = repo_root().join("configs/detect_scenes.yaml");
    let cfg = DetectConfig::load(&path, &[]).unwrap();
    let base = cfg.base_config();
    assert_eq!(base.task.name(), "detect");
    assert!(base.validate_compare().is_ok());
    assert_eq!(cfg.compare.levels, vec![2, 3, 4, 8]);
    let err = DetectConfig::load(&path, &["analog.g_min=30".into()]).unwrap_err().to_string();
    assert!(err.contains("analog.g_min"), "{err}");
    let err = DetectConfig::load(
        &path,
        &["compare.modes=[qat-noise]".into(), "train_noise.programming_noise={type: none}".into()],
    );
    // qat-noise without training noise is refused when the grid starts.
    let cfg = err.unwrap();
    assert!(cfg.base_config().validate_compare().is_err());
}
