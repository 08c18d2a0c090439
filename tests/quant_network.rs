//! Quantizers installed on networks through the weight hook: level counts, the
//! straight-through gradient, LSQ, BN folding, the reference checkpoint's layers, and
//! clear errors for unusable settings.
mod common;
use common::*;
use gqcim::config::{Arch, ModelConfig, QuantConfig, QuantMethod};
use gqcim::nets::build_classifier;
use gqcim::nets::layers::WeightPath;
use gqcim::quant::deploy::{apply_quantization, fold_batchnorm};
use gqcim::quant::gq::fit_gq;
use gqcim::quant::levels::squared_error;
use gqcim::quant::paths::{FitSettings, LevelPath};
use gqcim::quant::{uniform_minmax, uniform_mse, LloydOptions};
use tch::{Device, Kind, Tensor};

fn resnet20() -> gqcim::nets::Network {
    tch::manual_seed(7);
    build_classifier(&ModelConfig::default(), Device::Cpu)
}

fn distinct(t: &Tensor) -> i64 {
    t.flatten(0, -1).unique_dim(0, true, false, false).0.size()[0]
}

#[test]
fn every_layer_holds_exactly_n_values_per_layer_and_per_channel() {
    let _rng = rng_lock();
    let net = resnet20();
    for method in
        [QuantMethod::Gq, QuantMethod::GqExact, QuantMethod::UniformMse, QuantMethod::UniformMinmax]
    {
        for n in [2usize, 3, 5, 6, 8] {
            let q = QuantConfig { method, levels: n, ..Default::default() };
            apply_quantization(&net, &q, &Default::default()).unwrap();
            for l in net.layers.layers() {
                let w = l.effective_weight();
                let d = distinct(&w);
                if method == QuantMethod::UniformMinmax {
                    // A fixed grid on [-max|w|, max|w|]: inner levels may stay empty.
                    assert!(d <= n as i64 && d >= 2, "{} {:?} N={n}: {d}", l.spec.name, method);
                } else {
                    assert_eq!(d, n as i64, "{} {:?} N={n}", l.spec.name, method);
                }
            }
        }
    }
    // LSQ's grid holds exactly N values; the weights use a subset of them.
    for n in [2usize, 3, 5, 8] {
        let q = QuantConfig { method: QuantMethod::Lsq, levels: n, ..Default::default() };
        apply_quantization(&net, &q, &Default::default()).unwrap();
        for l in net.layers.layers() {
            let grid: Vec<f64> = serde_json::from_value(l.report()["quanta"].clone()).unwrap();
            assert_eq!(grid.len(), n);
            let w = Vec::<f32>::try_from(l.effective_weight().flatten(0, -1)).unwrap();
            assert!(w.iter().all(|v| grid
                .iter()
                .any(|g| (*g as f32 - v).abs() <= 1e-6 * g.abs().max(1e-3) as f32)));
        }
    }
    let q =
        QuantConfig { method: QuantMethod::Gq, levels: 5, per_channel: true, ..Default::default() };
    apply_quantization(&net, &q, &Default::default()).unwrap();
    for l in net.layers.layers() {
        let w = l.effective_weight();
        for c in 0..w.size()[0] {
            assert_eq!(distinct(&w.get(c)), 5, "{} channel {c}", l.spec.name);
        }
    }
}

#[test]
fn straight_through_gradient_equals_upstream_gradient() {
    let _rng = rng_lock();
    let net = resnet20();
    let layer = net.layers.get("layer2.1.conv1").unwrap();
    let q = QuantConfig { method: QuantMethod::Gq, levels: 4, ..Default::default() };
    let s = FitSettings::from_config(&q, &Default::default());
    let mut path = LevelPath::new(&layer.spec, s, Default::default()).unwrap();
    let w = &layer.spec.weight;
    w.shallow_clone().zero_grad();
    let q = path.weight(&layer.spec, true);
    assert_eq!(distinct(&q.detach()), 4);
    tch::manual_seed(1);
    let upstream = Tensor::randn(q.size(), (Kind::Float, Device::Cpu));
    (&q * &upstream).sum(Kind::Float).backward();
    let diff = (w.grad() - &upstream).abs().max().double_value(&[]);
    assert!(diff == 0.0, "straight-through gradient differs from upstream by {diff}");
}

#[test]
fn lsq_step_learns_and_grid_is_symmetric() {
    let _rng = rng_lock();
    let net = resnet20();
    let q = QuantConfig { method: QuantMethod::Lsq, levels: 4, ..Default::default() };
    apply_quantization(&net, &q, &Default::default()).unwrap();
    let l = net.layers.get("layer1.0.conv2").unwrap();
    let steps = l.trainable();
    assert_eq!(steps.len(), 1);
    let x = Tensor::randn([4, 16, 8, 8], (Kind::Float, Device::Cpu));
    let y = l.with_path(|p| p.forward(&l.spec, &x, true));
    y.square().sum(Kind::Float).backward();
    assert!(steps[0].grad().abs().double_value(&[0]) > 0.0, "LSQ step got no gradient");
    let w = l.effective_weight();
    let vals = Vec::<f32>::try_from(w.flatten(0, -1).unique_dim(0, true, false, false).0).unwrap();
    assert_eq!(vals.len(), 4);
    assert!((vals[0] + vals[3]).abs() < 1e-6 && (vals[1] + vals[2]).abs() < 1e-6, "{vals:?}");
}

#[test]
fn batchnorm_folding_keeps_the_function() {
    let _rng = rng_lock();
    let net = resnet20();
    // Give BN non-trivial statistics by running a few train-mode batches.
    tch::manual_seed(3);
    for _ in 0..3 {
        let _ = net.forward_t(&Tensor::randn([16, 1, 28, 28], (Kind::Float, Device::Cpu)), true);
    }
    let x = Tensor::randn([4, 1, 28, 28], (Kind::Float, Device::Cpu));
    let before = tch::no_grad(|| net.forward_t(&x, false));
    let folded = fold_batchnorm(&net).unwrap();
    assert_eq!(folded.len(), 21, "{folded:?}");
    let after = tch::no_grad(|| net.forward_t(&x, false));
    let diff = (&before - &after).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "folding changed the logits by {diff}");
}

/// On every layer of the committed reference checkpoint, gq's squared error is at most
/// uniform-minmax's and uniform-mse's at the same N.
#[test]
fn gq_beats_uniform_on_every_reference_layer() {
    let _rng = rng_lock();
    let mut net = build_classifier(
        &ModelConfig { arch: Arch::Resnet20, in_channels: 1, num_classes: 10 },
        Device::Cpu,
    );
    gqcim::checkpoint::load_strict(
        &mut net.vs,
        &repo_root().join("models/resnet20_fmnist.safetensors"),
    )
    .unwrap();
    for l in net.layers.layers() {
        let w = l.spec.weight.detach();
        for n in [2usize, 3, 4, 8, 16] {
            let gq = fit_gq(&w, n, &LloydOptions::default()).unwrap().0;
            let e_gq = squared_error(&w, &gq);
            let e_mm = squared_error(&w, &uniform_minmax(&w, n).unwrap());
            let e_mse = squared_error(&w, &uniform_mse(&w, n).unwrap().0);
            assert!(
                e_gq <= e_mm * (1.0 + 1e-9),
                "{} N={n}: gq {e_gq} > minmax {e_mm}",
                l.spec.name
            );
            assert!(
                e_gq <= e_mse * (1.0 + 1e-9),
                "{} N={n}: gq {e_gq} > uniform-mse {e_mse}",
                l.spec.name
            );
        }
    }
}

#[test]
fn unusable_settings_give_clear_errors() {
    let _rng = rng_lock();
    let d = tempfile::tempdir().unwrap();
    let root = repo_root();
    let cfg = root.join("configs/classify_fmnist.yaml");
    let ck = root.join("models/resnet20_fmnist.safetensors");
    let base = |extra: &[&str]| {
        let mut a = vec![
            "quantize",
            "--config",
            cfg.to_str().unwrap(),
            "--checkpoint",
            ck.to_str().unwrap(),
            "--set",
            "data.test_limit=100",
            "--set",
            "device=cpu",
        ];
        a.extend_from_slice(extra);
        let run = d.path().join(format!("r{}", extra.len()));
        let mut a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        a.push("--run-dir".into());
        a.push(run.display().to_string());
        let refs: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
        run_gqcim(&refs)
    };
    let check = |o: std::process::Output, needles: &[&str]| {
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{e}");
        assert!(!e.contains("panicked"), "{e}");
        for n in needles {
            assert!(e.contains(n), "lacks `{n}`: {e}");
        }
    };
    check(base(&["--levels", "1"]), &["quant.levels", "[2, 256]", "got 1"]);
    check(base(&["--levels", "300"]), &["quant.levels", "got 300"]);
    check(base(&["--method", "kmeans"]), &["unknown value `kmeans`", "quant.method"]);
    check(base(&["--method", "gq-exct"]), &["did you mean `gq-exact`"]);
    check(
        base(&["--set", "quant.keep_fp32=[conv1, layer9.0.conv1]"]),
        &["quant.keep_fp32", "layer `layer9.0.conv1` does not exist"],
    );
    check(base(&["--set", "quant.keep_fp32=[fcc]"]), &["did you mean `fc`"]);
    // 16 levels for a per-channel fit of the first conv: 9 weights per output channel.
    check(
        base(&["--levels", "16", "--set", "quant.per_channel=true"]),
        &["layer `conv1`", "16 levels", "only 9 weights"],
    );
}
