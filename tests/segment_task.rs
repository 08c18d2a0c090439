//! The segmentation task on Fashion-MNIST scenes: DeepLab learns (loss falls when it overfits
//! four scenes), flips move image and mask together, the evaluation path scores a perfect
//! prediction as mIoU 1 and a wrong one below, quantization reaches every (dilated) conv,
//! the task harness scores a fraction, and the reference config parses. Scenes here are
//! composed from synthetic items, so these tests need no dataset; the reference-recipe
//! smoke run (`#[ignore]`) reads Fashion-MNIST.
mod common;
use common::*;
use gqcim::config::{Config, QuantConfig};
use gqcim::data::scenes::{generate, SceneConfig, SceneSet};
use gqcim::data::Dataset;
use gqcim::engine::task::Task;
use gqcim::nets::layers::{LayerOp, LayerRegistry};
use gqcim::nets::Network;
use gqcim::quant::deploy::apply_quantization;
use gqcim::sgd::Sgd;
use gqcim::tasks::segment::{
    build_network, evaluate, normalize, random_hflip_pair, SegmentConfig, SegmentData,
    SegmentHarness, NORM_MEAN, NORM_STD,
};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

/// Items: class k is a filled rectangle of intensity 100 + 15k.
fn items(classes: &[i64]) -> Dataset {
    let n = classes.len() as i64;
    let img = Tensor::zeros([n, 1, 28, 28], (Kind::Uint8, Device::Cpu));
    for (i, k) in classes.iter().enumerate() {
        let _ = img.get(i as i64).narrow(1, 6, 16).narrow(2, 4, 20).fill_(100 + 15 * k);
    }
    Dataset { images: img, labels: Tensor::from_slice(classes), num_classes: 10 }
}

/// A small config: 32x32 canvases with up to three items.
fn tiny_config(train_scenes: usize, test_scenes: usize) -> SegmentConfig {
    let mut cfg =
        SegmentConfig { device: gqcim::config::DeviceChoice::Cpu, ..SegmentConfig::default() };
    cfg.data.scenes = SceneConfig {
        canvas: 32,
        min_items: 1,
        max_items: 3,
        min_size: 12,
        max_size: 24,
        train_scenes,
        test_scenes,
        ..SceneConfig::default()
    };
    cfg.train.batch_size = 4;
    cfg.eval.batch_size = 3;
    cfg
}

/// libtorch's OpenMP thread count is per calling thread: each test asks for one, so that
/// parallel tests on a small machine do not oversubscribe the cores (spinning OpenMP
/// workers made a 4-scene step 15x slower on 2 busy cores).
fn one_thread() {
    tch::set_num_threads(1);
}

fn tiny_data(cfg: &SegmentConfig, flip: bool) -> SegmentData {
    let all: Vec<i64> = (0..10).collect();
    SegmentData::from_items(items(&all), &items(&all), &cfg.data.scenes, 1, 2, flip, Device::Cpu)
}

#[test]
fn loss_falls_when_overfitting_four_scenes() {
    let _rng = rng_lock();
    one_thread();
    let cfg = tiny_config(4, 2);
    let harness = SegmentHarness::from_data(&cfg, tiny_data(&cfg, false));
    assert_eq!(harness.train_len(), 4);
    let net = build_network(&cfg, Device::Cpu).unwrap();
    let params: Vec<(String, Tensor)> =
        net.vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    let mut opt = Sgd::new(params, 0.9, true, 0.0);
    let idx = Tensor::arange(4, (Kind::Int64, Device::Cpu));
    tch::manual_seed(5);
    let mut losses = Vec::new();
    for _ in 0..25 {
        let loss = harness.batch_loss(&net, &idx);
        opt.zero_grad();
        loss.backward();
        opt.step(0.02);
        losses.push(loss.double_value(&[]));
    }
    // The best prediction that ignores the image (the class frequencies) scores the
    // entropy of the frequencies; learning the scenes must beat it.
    let freq =
        harness.data.train.masks.flatten(0, -1).to_kind(Kind::Int64).bincount::<Tensor>(None, 11);
    let p = freq.to_kind(Kind::Double) / freq.sum(Kind::Double);
    let prior = -(&p * p.clamp_min(1e-12).log()).sum(Kind::Double).double_value(&[]);
    let first = losses[0];
    let last = losses[losses.len() - 3..].iter().sum::<f64>() / 3.0;
    println!("overfit losses: {losses:.3?}, class-prior entropy {prior:.3}");
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(last < 0.4 * first, "loss did not fall: first {first:.4}, last three {last:.4}");
    assert!(last < prior, "loss {last:.4} not below the class-prior entropy {prior:.4}");
}

#[test]
fn flip_moves_image_and_mask_together() {
    let _rng = rng_lock();
    one_thread();
    tch::manual_seed(11);
    // Each pixel's class is a function of its value: it must follow the pixel when flipped.
    let b = 64;
    let x = Tensor::randint(256, [b, 1, 8, 9], (Kind::Int64, Device::Cpu)).to_kind(Kind::Uint8);
    let y = x.squeeze_dim(1).to_kind(Kind::Int64).remainder(11);
    let (fx, fy) = random_hflip_pair(&x, &y);
    assert!(fy.equal(&fx.squeeze_dim(1).to_kind(Kind::Int64).remainder(11)));
    let mut flipped = 0;
    for i in 0..b {
        let (xi, fxi) = (x.get(i), fx.get(i));
        if fxi.equal(&xi.flip([2])) && !fxi.equal(&xi) {
            flipped += 1;
            assert!(fy.get(i).equal(&y.get(i).flip([1])));
        } else {
            assert!(fxi.equal(&xi), "sample {i} neither kept nor flipped");
            assert!(fy.get(i).equal(&y.get(i)));
        }
    }
    assert!((10..=54).contains(&flipped), "{flipped} of {b} flipped");

    // The training batches of SegmentData flip both too: images that encode their mask
    // (value = 20 * class) decode to the mask after augmentation.
    let masks = Tensor::randint(11, [b, 8, 8], (Kind::Int64, Device::Cpu)).to_kind(Kind::Uint8);
    // Asymmetric along the width so that a flip is visible.
    let _ = masks.narrow(2, 0, 1).fill_(3);
    let set = SceneSet {
        images: (&masks * 20).unsqueeze(1),
        masks: masks.shallow_clone(),
        boxes: vec![],
    };
    let data = SegmentData::from_sets(&set, &set, true, Device::Cpu);
    let (bx, by) = data.train_batch(&Tensor::arange(b, (Kind::Int64, Device::Cpu)));
    let decoded = ((bx * NORM_STD + NORM_MEAN) * 255.0 / 20.0).round().squeeze_dim(1);
    assert!(decoded.to_kind(Kind::Int64).equal(&by), "image and mask disagree after augmentation");
    let changed = by.ne_tensor(&masks.to_kind(Kind::Int64)).flatten(1, -1).any_dim(1, false);
    let n_changed = changed.sum(Kind::Int64).int64_value(&[]);
    assert!((10..=54).contains(&n_changed), "{n_changed} of {b} training samples flipped");
}

/// A stand-in network that reads the class off the (normalised) input: images encode their
/// masks as value = 20 * class, so a correct decoder predicts the ground truth exactly.
#[derive(Debug)]
struct Decoder {
    classes: i64,
    /// Added to every decoded class (mod classes): 0 = perfect, else systematically wrong.
    shift: i64,
}

impl ModuleT for Decoder {
    /// xs: [b, 1, h, w] -> one-hot logits [b, classes, h, w].
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let v = ((xs * NORM_STD + NORM_MEAN) * 255.0 / 20.0).round().to_kind(Kind::Int64);
        let c = (v.squeeze_dim(1) + self.shift).remainder(self.classes);
        c.one_hot(self.classes).permute([0, 3, 1, 2]).to_kind(Kind::Float)
    }
}

fn decoder_net(shift: i64) -> Network {
    Network {
        vs: nn::VarStore::new(Device::Cpu),
        model: Box::new(Decoder { classes: 11, shift }),
        layers: LayerRegistry::default(),
        arch: "decoder".into(),
    }
}

#[test]
fn evaluate_scores_ground_truth_as_perfect() {
    let _rng = rng_lock();
    one_thread();
    // Real scene masks (synthetic items), images replaced by the encoded masks.
    let cfg = tiny_config(2, 7);
    let all: Vec<i64> = (0..10).collect();
    let scenes = generate(&items(&all).images, &items(&all).labels, &cfg.data.scenes, 7, 3);
    let set = SceneSet {
        images: (&scenes.masks * 20).unsqueeze(1),
        masks: scenes.masks.shallow_clone(),
        boxes: vec![],
    };
    let data = SegmentData::from_sets(&set, &set, false, Device::Cpu);
    // A batch size that does not divide 7 exercises the last partial batch.
    let perfect = evaluate(&decoder_net(0), &data, 3).unwrap();
    assert_eq!(perfect.images, 7);
    assert!((perfect.miou - 1.0).abs() < 1e-12, "mIoU {}", perfect.miou);
    assert!((perfect.pixel_acc - 1.0).abs() < 1e-12, "pixel accuracy {}", perfect.pixel_acc);
    // Every class present in the masks has IoU 1; absent ones are None (not counted).
    let present = Vec::<i64>::try_from(
        scenes.masks.flatten(0, -1).to_kind(Kind::Int64).bincount::<Tensor>(None, 11),
    )
    .unwrap();
    for (c, iou) in perfect.per_class.iter().enumerate() {
        match iou {
            Some(v) => assert!(present[c] > 0 && (*v - 1.0).abs() < 1e-12, "class {c}: {v}"),
            None => assert_eq!(present[c], 0, "class {c} present but has no IoU"),
        }
    }
    assert!(perfect.per_class[0].is_some(), "background missing");
    // A systematically wrong prediction scores zero IoU for every class.
    let wrong = evaluate(&decoder_net(1), &data, 3).unwrap();
    assert!(wrong.miou < 1e-12 && wrong.pixel_acc < 1e-12, "{wrong:?}");
    // A normalised batch really is (x / 255 - mean) / std.
    let one = normalize(&Tensor::from_slice(&[0u8, 255]).view([1, 1, 1, 2]));
    let v = Vec::<f32>::try_from(one.flatten(0, -1)).unwrap();
    assert!((v[0] as f64 + NORM_MEAN / NORM_STD).abs() < 1e-5);
    assert!((v[1] as f64 - (1.0 - NORM_MEAN) / NORM_STD).abs() < 1e-5);
}

#[test]
fn quantization_reaches_every_dilated_conv() {
    let _rng = rng_lock();
    one_thread();
    let cfg = tiny_config(2, 2);
    let net = build_network(&cfg, Device::Cpu).unwrap();
    // ResNet-18 backbone (17 convs + 3 projections), 5 ASPP convs, projection, head, classifier.
    assert_eq!(net.layers.layers().len(), 20 + 5 + 1 + 2);
    // Every conv weight of the model is a registered (hooked) layer: none bypasses the path.
    for (name, t) in net.vs.variables() {
        if t.dim() == 4 {
            let layer = name.strip_suffix(".weight").unwrap_or(&name);
            assert!(net.layers.get(layer).is_some(), "conv `{name}` is not hooked");
        }
    }
    let x = Tensor::randn([2, 1, 32, 32], (Kind::Float, Device::Cpu));
    let before = tch::no_grad(|| net.forward_t(&x, false));
    let q = QuantConfig { levels: 4, ..Default::default() };
    let dep = apply_quantization(&net, &q, &Default::default()).unwrap();
    assert_eq!(dep.quantized.len(), net.layers.layers().len());
    let mut dilated = Vec::new();
    for l in net.layers.layers() {
        let LayerOp::Conv2d { dilation, .. } = l.spec.op else {
            panic!("{} is linear", l.spec.name)
        };
        if dilation > 1 {
            dilated.push(l.spec.name.clone());
        }
        let w = l.effective_weight();
        let distinct = w.flatten(0, -1).internal_unique(false, false).0.numel();
        assert!(distinct <= 4, "{}: {distinct} distinct weights", l.spec.name);
        assert!(!w.equal(&l.spec.weight), "{}: weight path not applied", l.spec.name);
    }
    for name in ["classifier.0.convs.1.0", "classifier.0.convs.3.0", "backbone.layer4.1.conv1"] {
        assert!(dilated.iter().any(|d| d == name), "{name} not dilated: {dilated:?}");
    }
    // The forward pass runs through the quantized weights.
    let after = tch::no_grad(|| net.forward_t(&x, false));
    assert_eq!(after.size(), vec![2, 11, 32, 32]);
    assert!((&after - &before).abs().max().double_value(&[]) > 1e-4);
}

#[test]
fn harness_loads_a_checkpoint_and_scores_a_fraction() {
    let _rng = rng_lock();
    one_thread();
    let cfg = tiny_config(6, 5);
    let harness = SegmentHarness::from_data(&cfg, tiny_data(&cfg, true));
    assert_eq!((harness.task(), harness.train_len(), harness.eval_len()), ("segment", 6, 5));
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("net.safetensors");
    let trained = build_network(&SegmentConfig { seed: 9, ..cfg.clone() }, Device::Cpu).unwrap();
    gqcim::checkpoint::save_varstore(&trained.vs, &ckpt).unwrap();
    // The classification config is ignored: the harness builds from its SegmentConfig.
    let net = harness.load_network(&Config::default(), &ckpt, Device::Cpu).unwrap();
    let w = |n: &Network| n.vs.variables()["classifier.4.weight"].shallow_clone();
    assert!(w(&net).equal(&w(&trained)), "checkpoint not loaded");
    let miou = harness.evaluate(&net).unwrap();
    assert!((0.0..=1.0).contains(&miou), "mIoU {miou}");
    let loss = harness.batch_loss(&net, &Tensor::from_slice(&[0i64, 3, 5]));
    assert!(loss.requires_grad() && loss.double_value(&[]).is_finite());
    // A checkpoint of another architecture is refused, naming the file.
    let bad = dir.path().join("bad.safetensors");
    Tensor::write_safetensors(&[("x", Tensor::zeros([1], (Kind::Float, Device::Cpu)))], &bad)
        .unwrap();
    let Err(err) = harness.load_network(&Config::default(), &bad, Device::Cpu) else {
        panic!("a foreign checkpoint loaded")
    };
    assert!(err.to_string().contains("bad.safetensors"), "{err}");
}

#[test]
fn training_pool_is_recomposed_per_epoch_and_test_set_is_fixed() {
    let _rng = rng_lock();
    one_thread();
    let cfg = tiny_config(3, 3);
    let mut a = tiny_data(&cfg, false);
    let b = tiny_data(&cfg, false);
    assert!(a.test.images.equal(&b.test.images) && a.train.masks.equal(&b.train.masks));
    let epoch0 = a.train.images.shallow_clone();
    a.set_epoch(1);
    assert!(!a.train.images.equal(&epoch0), "pool not recomposed");
    assert!(a.test.images.equal(&b.test.images), "test set changed");
    a.set_epoch(0);
    assert!(a.train.images.equal(&epoch0), "epoch 0's pool not reproduced");
}

#[test]
fn reference_config_parses_and_typos_get_a_hint() {
    one_thread();
    let path = repo_root().join("configs/segment_scenes.yaml");
    let cfg = SegmentConfig::load(&path, &["train.epochs=2".into()]).unwrap();
    assert_eq!(cfg.train.epochs, 2);
    assert_eq!(cfg.model.arch.name(), "deeplabv3_resnet18");
    let err = SegmentConfig::from_yaml_str("data:\n  scenes:\n    canvs: 64\n", "s.yaml", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("canvs") && err.contains("did you mean `canvas`"), "{err}");
    let err =
        SegmentConfig::from_yaml_str("model:\n  num_classes: 10\n", "s.yaml", &[]).unwrap_err();
    assert!(err.to_string().contains("model.num_classes"), "{err}");
}

fn read_json(p: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// `train` end to end on scenes of toy IDX items: a run folder with TensorBoard scalars,
/// histograms and square sample images that TensorBoard's reader parses, results.json with
/// per-class IoU, checkpoints, and `--resume` continuing from the checkpoint's epoch.
#[test]
fn train_writes_run_folder_and_resumes() {
    let _rng = rng_lock();
    one_thread();
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("items");
    write_toy_idx(&root, 64, 32);
    let text = format!(
        "seed: 4\ndevice: cpu\nthreads: 1\nout_dir: {out}\ndata:\n  fmnist_root: {root}\n  \
         scenes: {{canvas: 32, max_items: 2, min_size: 12, max_size: 24, train_scenes: 8, \
         test_scenes: 4}}\ntrain: {{epochs: 1, batch_size: 4, warmup_epochs: 0, \
         histogram_every: 1, nan_check_every: 1}}\neval: {{batch_size: 3, sample_images: 2}}\n",
        out = d.path().join("runs").display(),
        root = root.display()
    );
    let path = d.path().join("seg.yaml");
    std::fs::write(&path, text).unwrap();
    let run = d.path().join("run");
    let cfg = SegmentConfig::load(&path, &[]).unwrap();
    let r1 = gqcim::engine::train::train_opened(
        gqcim::tasks::segment::open(&cfg, gqcim::tasks::Purpose::Train).unwrap(),
        &path,
        Some(&run),
        false,
    )
    .unwrap();
    assert_eq!(r1["history"].as_array().unwrap().len(), 1);
    assert!(read_json(&run.join("checkpoints/last.json"))["epoch"] == 1);
    let cfg2 = SegmentConfig::load(&path, &["train.epochs=2".into()]).unwrap();
    let r2 = gqcim::engine::train::train_opened(
        gqcim::tasks::segment::open(&cfg2, gqcim::tasks::Purpose::Train).unwrap(),
        &path,
        Some(&run),
        true,
    )
    .unwrap();
    let h = r2["history"].as_array().unwrap();
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h[0], r1["history"][0], "resume rewrote the first epoch");
    let results = read_json(&run.join("results.json"));
    let miou = results["metrics"]["test_miou"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&miou));
    assert!(results["metrics"]["per_class_iou"]["background"].as_f64().is_some(), "{results}");
    assert_eq!(results["seed"], 4);
    // The final model loads strictly into the configured network.
    let net =
        gqcim::tasks::segment::load_network(&cfg2, &run.join("model.safetensors"), Device::Cpu)
            .unwrap();
    assert_eq!(net.arch, "deeplabv3_resnet18");

    let out = std::process::Command::new(python())
        .arg(repo_root().join("tests/python/read_tensorboard.py"))
        .arg(&run)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tb: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = |kind: &str, tag: &str| -> Vec<i64> {
        let series = tb[kind][tag].as_array().unwrap_or_else(|| panic!("no {kind} {tag}: {tb}"));
        series.iter().map(|e| e[0].as_i64().unwrap()).collect()
    };
    // The untrained score at step 0 (first run only), then one point per epoch.
    assert_eq!(steps("scalars", "test/miou"), vec![0, 1, 2]);
    assert_eq!(steps("scalars", "test/pixel_accuracy"), vec![0, 1, 2]);
    assert_eq!(steps("scalars", "train/loss"), vec![1, 2]);
    assert_eq!(steps("scalars", "train/lr"), vec![1, 2]);
    assert_eq!(steps("histograms", "weights/classifier.0.convs.1.0"), vec![1, 2]);
    let last = tb["scalars"]["test/miou"][2][1].as_f64().unwrap();
    assert!((last - miou).abs() < 1e-6, "TensorBoard {last} vs results.json {miou}");
    for tag in ["test/sample_0", "test/sample_1"] {
        // The untrained network's predictions at step 0, then one picture per epoch.
        assert_eq!(steps("images", tag), vec![0, 1, 2]);
        // Input, ground truth and prediction side by side (3 x 96 px + 2 gaps of 6), with
        // captions and a legend below, not padded to a square.
        let e = &tb["images"][tag][0];
        let (w, h) = (e[1].as_i64().unwrap(), e[2].as_i64().unwrap());
        assert_eq!(w, 3 * 96 + 2 * 6, "{e}");
        assert!(h > 96 && h < w, "{e}");
    }
}

/// The reference recipe, shrunk: 300 scenes of 64x64, 3 epochs on Fashion-MNIST; mIoU must
/// clear the untrained network's. Minutes on 2 cores:
/// `cargo test --release --test segment_task -- --ignored --nocapture`.
#[test]
#[ignore]
fn tiny_reference_run_learns() {
    let _rng = rng_lock();
    one_thread();
    let root =
        std::env::var("GQCIM_FMNIST_DIR").unwrap_or("/usr/share/datasets/fashion-mnist".into());
    let dir = tempfile::tempdir().unwrap();
    let path = repo_root().join("configs/segment_scenes.yaml");
    let n_train = std::env::var("SEG_TINY_SCENES").unwrap_or("300".into());
    let epochs = std::env::var("SEG_TINY_EPOCHS").unwrap_or("3".into());
    let cfg = SegmentConfig::load(
        &path,
        &[
            format!("data.fmnist_root={root}"),
            format!("data.scenes.train_scenes={n_train}"),
            "data.scenes.test_scenes=200".into(),
            format!("train.epochs={epochs}"),
            "train.warmup_epochs=0.5".into(),
            "device=cpu".into(),
            // One thread: the test may share the cores with other work.
            "threads=1".into(),
        ],
    )
    .unwrap();
    let run = dir.path().join("run");
    let r = gqcim::engine::train::train_opened(
        gqcim::tasks::segment::open(&cfg, gqcim::tasks::Purpose::Train).unwrap(),
        &path,
        Some(&run),
        false,
    )
    .unwrap();
    println!("{}", serde_json::to_string_pretty(&r["history"]).unwrap());
    println!("untrained {}", r["untrained"]);
    println!("final {}", r["metrics"]);
    println!(
        "compose {:.1}s, {:.1} img/s",
        r["scene_compose_seconds"].as_f64().unwrap(),
        r["train_images_per_second"].as_f64().unwrap()
    );
    let h = r["history"].as_array().unwrap();
    let l0 = h[0]["train_loss"].as_f64().unwrap();
    let l1 = h[h.len() - 1]["train_loss"].as_f64().unwrap();
    assert!(l1 < l0, "train loss {l0} -> {l1}");
    let before = r["untrained"]["test_miou"].as_f64().unwrap();
    let after = r["metrics"]["test_miou"].as_f64().unwrap();
    assert!(after > before, "mIoU {before} -> {after}");
    assert!(run.join("checkpoints/last.json").is_file() && run.join("model.safetensors").is_file());
}

/// The comparison grid on a segmenter: fp32 and gq (N = 2, fine-tuned) at two programming
/// noise levels write results.json, results.csv, a table named by mIoU, plots, and TensorBoard
/// sample masks per network; the ideal sigma = 0 cell is the digital network (one trial) and
/// the noisy cell has the configured trials with distinct seeds.
#[test]
fn comparison_grid_runs_on_the_segmenter() {
    let _rng = rng_lock();
    one_thread();
    let mut cfg = tiny_config(8, 4);
    cfg.eval.sample_images = 2;
    cfg.finetune.epochs = 1.0;
    cfg.finetune.batch_size = 4;
    cfg.analog.trials = 2;
    cfg.compare.methods = vec![gqcim::config::QuantMethod::Gq];
    cfg.compare.levels = vec![2];
    cfg.compare.modes = vec![gqcim::config::TuneMode::Qat];
    cfg.compare.sigmas = vec![0.0, 0.05];
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("net.safetensors");
    let trained = build_network(&cfg, Device::Cpu).unwrap();
    gqcim::checkpoint::save_varstore(&trained.vs, &ckpt).unwrap();
    let harness = SegmentHarness::from_data(&cfg, tiny_data(&cfg, false));
    let run_path = dir.path().join("grid");
    let place = gqcim::run::RunPlace { out_dir: dir.path(), task: "segment", name: &None };
    let run =
        gqcim::run::RunDir::create_at(place, "compare", &ckpt, Some(&run_path), "x: 1").unwrap();
    let mut base = cfg.base_config();
    base.out_dir = dir.path().to_path_buf(); // the network cache goes under out_dir
    let res =
        gqcim::grid::run_grid(&base, &harness, &ckpt, Device::Cpu, run, std::time::Instant::now())
            .unwrap();
    let cells = res["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 4, "fp32 and gq at two sigmas");
    assert_eq!(res["task"], "segment");
    for c in cells {
        let trials = c["stats"]["trials"].as_array().unwrap();
        let sigma = c["sigma"].as_f64().unwrap();
        if sigma == 0.0 {
            assert_eq!(trials.len(), 1);
            assert_eq!(c["digital_accuracy"].as_f64(), c["stats"]["mean"].as_f64());
        } else {
            assert_eq!(trials.len(), 2);
            assert_ne!(trials[0]["seed"], trials[1]["seed"]);
        }
        let m = c["stats"]["mean"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&m), "mIoU {m}");
    }
    assert!(cells[2]["finetune"]["steps"].as_u64().unwrap() >= 2, "gq was not fine-tuned");
    let table = std::fs::read_to_string(run_path.join("table.md")).unwrap();
    assert!(table.contains("mIoU (%)") && table.contains("| gq | 2 | qat |"), "{table}");
    let csv = std::fs::read_to_string(run_path.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(run_path.join("miou_vs_levels.png").exists());
    assert!(run_path.join("miou_vs_sigma_N2.png").exists());
    // Each grid network is a TensorBoard sub-run, tb/<network>/, its unit's own log in
    // tb/<network>/s<seed>/; merge puts the scenes side by side in tb/ (glance::tb_grid).
    fn event_bytes(dir: &std::path::Path, out: &mut Vec<u8>) {
        for e in std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()) {
            if e.path().is_dir() {
                event_bytes(&e.path(), out);
            } else if e.file_name().to_string_lossy().starts_with("events.out.tfevents") {
                out.extend(std::fs::read(e.path()).unwrap());
            }
        }
    }
    let seed = base.seed; // the one fine-tuning seed (compare.seeds is empty)
    let has = |dir: &str, tag: &str| {
        let mut events = Vec::new();
        event_bytes(&run_path.join(dir), &mut events);
        events.windows(tag.len()).any(|w| w == tag.as_bytes())
    };
    let gq = format!("tb/gq-qat-N2/s{seed}");
    assert!(has("tb", "samples/segment/sample_1/N2"), "no side-by-side sample masks");
    assert!(has(&gq, "finetune/loss"), "no fine-tuning loss");
    assert!(has("tb/fp32", "segment/miou_vs_sigma/N2"), "no fp32 curve on the N = 2 card");
}
