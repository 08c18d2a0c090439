//! The crossbar: mapping, device statistics, seeding, drift compensation, periphery tiles,
//! equivalence with the digital quantized network, training-mode guard and config errors.
mod common;
use common::*;
use gqcim::analog::device::{
    drift, map_to_pairs, program_noise, read_noise, stuck_at, Calibration,
};
use gqcim::analog::montecarlo::program_trial;
use gqcim::analog::path::AnalogPath;
use gqcim::analog::tiling::row_tiles;
use gqcim::config::{
    AnalogConfig, Converter, Drift, ModelConfig, ProgrammingNoise, QuantConfig, ReadNoise, StuckAt,
    TileSplit,
};
use gqcim::deploy::deploy_analog;
use gqcim::nets::build_classifier;
use gqcim::nets::layers::WeightPath;
use gqcim::quant::deploy::apply_quantization;
use tch::{Device, Kind, Tensor};

const G_MIN: f64 = 1.0;
const G_MAX: f64 = 25.0;

fn std_of(t: &Tensor) -> f64 {
    t.to_kind(Kind::Double).std(true).double_value(&[])
}

fn net_with_bn_stats() -> gqcim::nets::Network {
    tch::manual_seed(11);
    let net = build_classifier(&ModelConfig::default(), Device::Cpu);
    for _ in 0..2 {
        let _ = net.forward_t(&Tensor::randn([16, 1, 28, 28], (Kind::Float, Device::Cpu)), true);
    }
    net
}

#[test]
fn mapping_is_a_differential_pair_with_zero_at_gmin() {
    let _rng = rng_lock();
    let w = Tensor::from_slice(&[-0.5f32, 0.0, 0.25, 1.0]);
    let m = map_to_pairs(&w, G_MIN, G_MAX, false);
    let gp = Vec::<f32>::try_from(&m.g_pos).unwrap();
    let gn = Vec::<f32>::try_from(&m.g_neg).unwrap();
    assert_eq!(gp, vec![1.0, 1.0, 7.0, 25.0]);
    assert_eq!(gn, vec![13.0, 1.0, 1.0, 1.0]);
    let back = m.weight();
    assert!((back - &w).abs().max().double_value(&[]) < 1e-6);
}

#[test]
fn programming_and_read_noise_have_the_configured_sigma() {
    let _rng = rng_lock();
    tch::manual_seed(0);
    let n = 200_000;
    let g = Tensor::full([n], 13.0, (Kind::Float, Device::Cpu)); // mid-window: no clipping
    let sigma = 0.02;
    let noisy = program_noise(&g, &ProgrammingNoise::Gaussian { sigma }, G_MIN, G_MAX);
    let got = std_of(&(noisy - &g));
    let want = sigma * (G_MAX - G_MIN);
    assert!((got / want - 1.0).abs() < 0.05, "programming sigma {got} vs {want}");
    // State-dependent: sigma(g) = 0.1 + 0.02 g at g = 13 -> 0.36 µS.
    let poly = ProgrammingNoise::Polynomial { coeffs: vec![0.1, 0.02] };
    let got = std_of(&(program_noise(&g, &poly, G_MIN, G_MAX) - &g));
    assert!((got / 0.36 - 1.0).abs() < 0.05, "polynomial sigma {got} vs 0.36");
    let r = read_noise(&g, 0.03, G_MIN, G_MAX);
    let got = std_of(&(r - &g));
    assert!((got / (0.03 * 13.0) - 1.0).abs() < 0.05, "read sigma {got}");
    // Read noise is fresh at every call.
    assert!(
        read_noise(&g, 0.03, G_MIN, G_MAX)
            .ne_tensor(&read_noise(&g, 0.03, G_MIN, G_MAX))
            .any()
            .int64_value(&[])
            == 1
    );
}

#[test]
fn stuck_at_fractions_lie_within_binomial_bounds() {
    let _rng = rng_lock();
    tch::manual_seed(1);
    let n = 100_000i64;
    let g = Tensor::full([n], 13.0, (Kind::Float, Device::Cpu));
    let (p_lo, p_hi) = (0.02, 0.05);
    let s = stuck_at(&g, &StuckAt { at_gmin: p_lo, at_gmax: p_hi }, G_MIN, G_MAX);
    for (p, v) in [(p_lo, G_MIN), (p_hi, G_MAX)] {
        let count = s.eq(v).sum(Kind::Int64).int64_value(&[]) as f64;
        let mean = p * n as f64;
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        assert!((count - mean).abs() < 4.0 * sd, "stuck at {v}: {count} vs {mean} ± {sd}");
    }
    assert!(s.eq(13.0).sum(Kind::Int64).int64_value(&[]) as f64 > 0.9 * n as f64);
}

#[test]
fn conductances_stay_in_the_window_after_every_perturbation() {
    let _rng = rng_lock();
    tch::manual_seed(2);
    let g = Tensor::rand([50_000], (Kind::Float, Device::Cpu)) * (G_MAX - G_MIN) + G_MIN;
    let big = program_noise(&g, &ProgrammingNoise::Gaussian { sigma: 0.5 }, G_MIN, G_MAX);
    let d = Drift::PowerLaw { nu_mean: -0.3, nu_std: 0.2, t0: 1.0, t: 1e6, compensation: false };
    let drifted = drift(&big, &d, G_MIN, G_MAX);
    let read = read_noise(&drifted, 0.5, G_MIN, G_MAX);
    for t in [&big, &drifted, &read] {
        assert!(t.min().double_value(&[]) >= G_MIN && t.max().double_value(&[]) <= G_MAX);
    }
}

/// With every non-ideality off, the crossbar computes exactly the quantized network.
#[test]
fn ideal_crossbar_equals_digital_quantized_network() {
    let _rng = rng_lock();
    let net = net_with_bn_stats();
    apply_quantization(&net, &QuantConfig { levels: 8, ..Default::default() }, &Default::default())
        .unwrap();
    let x = Tensor::randn([8, 1, 28, 28], (Kind::Float, Device::Cpu));
    let digital = tch::no_grad(|| net.forward_t(&x, false));
    let cfg = AnalogConfig::default();
    deploy_analog(&net, &cfg);
    program_trial(&net, &cfg, 5).unwrap();
    let analog = tch::no_grad(|| net.forward_t(&x, false));
    let diff = (&analog - &digital).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "analog vs digital quantized logits differ by {diff}");
}

#[test]
fn same_seed_same_logits_different_seed_different_logits() {
    let _rng = rng_lock();
    let net = net_with_bn_stats();
    apply_quantization(&net, &QuantConfig { levels: 4, ..Default::default() }, &Default::default())
        .unwrap();
    let cfg = AnalogConfig {
        programming_noise: ProgrammingNoise::Gaussian { sigma: 0.03 },
        stuck_at: StuckAt { at_gmin: 0.01, at_gmax: 0.0 },
        read_noise: ReadNoise::Gaussian { sigma: 0.01 },
        ..Default::default()
    };
    deploy_analog(&net, &cfg);
    let x = Tensor::randn([4, 1, 28, 28], (Kind::Float, Device::Cpu));
    let logits = |seed: i64| {
        program_trial(&net, &cfg, seed).unwrap();
        tch::manual_seed(seed ^ 0x5EED); // read-noise stream, as monte_carlo does
        tch::no_grad(|| net.forward_t(&x, false))
    };
    let (a, b, c) = (logits(42), logits(42), logits(43));
    assert_eq!((&a - &b).abs().max().double_value(&[]), 0.0, "same seed, different logits");
    assert!((&a - &c).abs().max().double_value(&[]) > 1e-4, "different seeds gave the same logits");
}

#[test]
fn drift_compensation_restores_the_output_scale() {
    let _rng = rng_lock();
    let net = net_with_bn_stats();
    apply_quantization(&net, &QuantConfig { levels: 8, ..Default::default() }, &Default::default())
        .unwrap();
    let layer = net.layers.get("layer2.0.conv2").unwrap();
    let target = layer.effective_weight();
    let fan_in = target.size()[1..].iter().product::<i64>();
    let c_out = target.size()[0];
    let drift =
        Drift::PowerLaw { nu_mean: 0.06, nu_std: 0.03, t0: 1.0, t: 86_400.0, compensation: true };
    let cfg = AnalogConfig { drift, ..Default::default() };
    tch::manual_seed(9);
    let cal = Calibration::Inputs(Tensor::randn([256, fan_in], (Kind::Float, Device::Cpu)));
    let held_out = Tensor::randn([256, fan_in], (Kind::Float, Device::Cpu)); // not used to calibrate
    let mut path = AnalogPath::new(target.shallow_clone(), "gq-8".into(), &cfg);
    path.program(Some(&cal));
    let scale = |w: &Tensor| {
        held_out.matmul(&w.reshape([c_out, -1]).tr()).abs().mean(Kind::Float).double_value(&[])
    };
    let fresh = scale(&target);
    let compensated = scale(&path.weight(&layer.spec, false));
    let raw = scale(&(path.programmed.weight()));
    assert!(raw / fresh < 0.7, "drift should shrink the output noticeably: {raw} vs {fresh}");
    assert!((compensated / fresh - 1.0).abs() < 0.02, "compensated {compensated} vs fresh {fresh}");
}

/// The tile splits: balanced as aihwkit's `TileModuleArray.get_split_sizes` (the expected
/// sizes below were printed by aihwkit 1.1.0's own function), by whole channels as gqcim
/// split before; and the periphery, the cost model and the export use the same tiles.
#[test]
fn tile_splits_follow_aihwkit_or_whole_channels() {
    use gqcim::analog::tiling::{layer_spans, TileSpan};
    let sizes = |rows, taps, tile, split| -> Vec<i64> {
        let tiles = row_tiles(rows, taps, tile, split);
        // Contiguous, covering every row once, none above the tile size (but one channel).
        let mut next = 0;
        for &(start, len) in &tiles {
            assert_eq!(start, next, "{rows} rows, tile {tile}, {split:?}: {tiles:?}");
            assert!(len > 0 && (len <= tile || len == taps), "{tiles:?}");
            next += len;
        }
        assert_eq!(next, rows, "{tiles:?}");
        tiles.iter().map(|t| t.1).collect()
    };
    let aihwkit = [
        (288, 256, vec![144, 144]),
        (576, 256, vec![192, 192, 192]),
        (1152, 256, vec![231, 231, 230, 230, 230]),
        (4608, 256, vec![256; 18]),
        (100, 30, vec![25, 25, 25, 25]),
        (101, 30, vec![26, 25, 25, 25]),
        (432, 90, vec![87, 87, 86, 86, 86]),
        (8, 2, vec![2, 2, 2, 2]),
        (7, 256, vec![7]),
    ];
    for (rows, tile, want) in aihwkit {
        assert_eq!(sizes(rows, 9, tile, TileSplit::Balanced), want, "{rows} rows, tile {tile}");
    }
    let channels = [
        (288, 9, 256, vec![252, 36]),
        (576, 9, 256, vec![252, 252, 72]),
        (432, 9, 90, vec![90, 90, 90, 90, 72]),
        (300, 1, 128, vec![128, 128, 44]),
        (50, 25, 10, vec![25, 25]),
    ];
    for (rows, taps, tile, want) in channels {
        assert_eq!(sizes(rows, taps, tile, TileSplit::Channels), want, "{rows} rows, tile {tile}");
    }
    // A balanced tile's channels: 576 rows of a 64-channel 3x3 conv in 3 x 192 rows cut
    // channels 21 and 42 (192 = 21 channels + 3 taps).
    let spans = layer_spans(64, 9, 256, TileSplit::Balanced);
    assert_eq!(
        spans,
        vec![
            TileSpan { rows: (0, 192), channels: (0, 22), partial: true },
            TileSpan { rows: (192, 192), channels: (21, 22), partial: true },
            TileSpan { rows: (384, 192), channels: (42, 22), partial: true },
        ]
    );
    let spans = layer_spans(32, 9, 256, TileSplit::Balanced);
    assert!(spans.iter().all(|t| !t.partial && t.channels.1 == 16), "{spans:?}");
}

#[test]
fn adc_digitises_each_tile_partial_sum_separately() {
    let _rng = rng_lock();
    // A linear layer with 8 inputs; all weights at +1 (the window's top), inputs all 1.
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let reg = gqcim::nets::layers::LayerRegistry::default();
    let lin = gqcim::nets::layers::linear(vs.root() / "fc", &reg, 8, 1);
    let h = reg.get("fc").unwrap();
    tch::no_grad(|| {
        let _ = h.spec.weight.shallow_clone().fill_(1.0);
        let _ = h.spec.bias.as_ref().unwrap().shallow_clone().fill_(0.0);
    });
    let x = Tensor::ones([1, 8], (Kind::Float, Device::Cpu));
    let run = |tile_rows: i64| {
        let cfg = AnalogConfig {
            tile_rows,
            adc: Converter::Uniform { bits: 12, range: 3.0 },
            ..Default::default()
        };
        h.set_path(Box::new(AnalogPath::new(h.spec.weight.detach(), "fp32".into(), &cfg)));
        tch::no_grad(|| tch::nn::ModuleT::forward_t(&lin, &x, false)).double_value(&[0, 0])
    };
    // One tile of 8 rows: the sum 8 clips at 3. Four tiles of 2 rows: each 2, no clipping.
    assert!((run(8) - 3.0).abs() < 0.01, "single tile should clip at the ADC bound: {}", run(8));
    assert!(
        (run(2) - 8.0).abs() < 0.01,
        "per-tile ADC should not clip partial sums of 2: {}",
        run(2)
    );
}

#[test]
fn programming_in_training_mode_is_an_error() {
    let _rng = rng_lock();
    let net = net_with_bn_stats();
    let cfg = AnalogConfig::default();
    deploy_analog(&net, &cfg);
    net.layers.set_training(true);
    let err = program_trial(&net, &cfg, 1).unwrap_err().to_string();
    assert!(err.contains("training mode"), "{err}");
    net.layers.set_training(false);
    program_trial(&net, &cfg, 1).unwrap();
}

#[test]
fn bad_analog_configs_give_clear_errors() {
    let _rng = rng_lock();
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.yaml");
    std::fs::write(&cfg, "seed: 1\n").unwrap();
    let c = cfg.to_str().unwrap();
    let cases: [(&str, &[&str]); 7] = [
        ("analog.g_min=30", &["analog.g_min", "g_min < g_max", "30"]),
        ("analog.programming_noise={type: gaussian, sigma: -0.1}", &["analog.programming_noise.sigma", "-0.1"]),
        ("analog.stuck_at={at_gmin: 0.7, at_gmax: 0.5}", &["analog.stuck_at", "sum to 1.2"]),
        ("analog.adc={type: uniform, bits: 0, range: 12}", &["analog.adc.bits", "[1, 24]", "got 0"]),
        ("analog.read_noise={type: gausian, sigma: 0.1}", &["unknown value `gausian`", "did you mean `gaussian`"]),
        ("analog.drift={type: power-law, nu_mean: 0.05, nu_std: 0.01, t0: 10, t: 1, compensation: true}", &["analog.drift.t", "t0 <= t"]),
        ("analog.tile_split=balance", &["analog.tile_split", "balance", "balanced"]),
    ];
    for (set, needles) in cases {
        let o = run_gqcim(&[
            "eval",
            "--config",
            c,
            "--checkpoint",
            "x.safetensors",
            "--analog",
            "--set",
            set,
        ]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{set}: {e}");
        assert!(!e.contains("panicked"), "{e}");
        for n in needles {
            assert!(e.contains(n), "{set}: lacks `{n}`: {e}");
        }
    }
}

#[test]
fn export_writes_tiles_and_level_table() {
    let _rng = rng_lock();
    let root = repo_root();
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("export");
    let o = run_gqcim(&[
        "export",
        "--config",
        root.join("configs/classify_fmnist.yaml").to_str().unwrap(),
        "--checkpoint",
        root.join("models/resnet20_fmnist.safetensors").to_str().unwrap(),
        "--method",
        "gq",
        "--levels",
        "4",
        "--out",
        out.to_str().unwrap(),
        "--set",
        "analog.tile_rows=128",
        "--set",
        "analog.tile_cols=32",
        "--set",
        "device=cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("index.json")).unwrap()).unwrap();
    let l = &index["layers"]["layer3.0.conv2"];
    assert_eq!(l["crossbar_shape"], serde_json::json!([576, 64]));
    // 576 rows in tiles of at most 128, split as the periphery splits them: 14 whole
    // channels (126 rows) per tile, 5 tile rows (the last 72); 64 cols / 32 = 2 tile cols.
    let tiles = l["tiles"].as_array().unwrap();
    assert_eq!(tiles.len(), 10);
    let rows: Vec<_> = tiles.iter().step_by(2).map(|t| t["rows"].clone()).collect();
    let want = [[0, 126], [126, 252], [252, 378], [378, 504], [504, 576]];
    assert_eq!(rows, want.iter().map(|r| serde_json::json!(r)).collect::<Vec<_>>());
    assert_eq!(l["levels"].as_array().unwrap().len(), 4);
    let tensors = gqcim::checkpoint::read_tensors(&out.join("conductances.safetensors")).unwrap();
    let t = &tensors["layer3.0.conv2/g_pos/r4_c1"];
    assert_eq!(t.size(), vec![72, 32]);
    assert!(t.min().double_value(&[]) >= 1.0 && t.max().double_value(&[]) <= 25.0);
}

/// Dilated and grouped convolutions on the crossbar (aihwkit rejects grouped convs; CrossSim
/// and MemTorch lack dilation): with an ideal device and fine converters, the tiled analog
/// forward (DAC, per-tile ADC) of a grouped, dilated, strided conv equals the digital conv.
#[test]
fn grouped_dilated_convs_run_on_the_crossbar() {
    let _rng = rng_lock();
    tch::manual_seed(3);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let reg = gqcim::nets::layers::LayerRegistry::default();
    // 8 -> 6 channels in 2 groups, 3x3 kernel, dilation 2, stride 2, padding 2.
    let conv =
        gqcim::nets::layers::conv2d_grouped(vs.root() / "conv", &reg, 8, 6, 3, 2, 2, 2, 2, false);
    let h = reg.get("conv").unwrap();
    let x = Tensor::rand([2, 8, 11, 11], (Kind::Float, Device::Cpu));
    let digital = tch::no_grad(|| tch::nn::ModuleT::forward_t(&conv, &x, false));
    assert_eq!(digital.size(), [2, 6, 6, 6]);
    for tile_rows in [9, 256] {
        let cfg = AnalogConfig {
            tile_rows,
            dac: Converter::Uniform { bits: 16, range: 1.0 },
            adc: Converter::Uniform { bits: 20, range: 64.0 },
            ..Default::default()
        };
        h.set_path(Box::new(AnalogPath::new(h.spec.weight.detach(), "fp32".into(), &cfg)));
        let analog = tch::no_grad(|| tch::nn::ModuleT::forward_t(&conv, &x, false));
        let rel = (&analog - &digital).abs().max().double_value(&[])
            / digital.abs().max().double_value(&[]);
        assert!(rel < 1e-3, "tile_rows {tile_rows}: analog vs digital differ by {rel} (relative)");
    }
}

/// The periphery as its plain formulas (the pre-fusion implementation, one op per step):
/// per-sample abs-max DAC, a conv per tile, output noise, the ADC's clamp-shift-round, the
/// sum of tiles and the back-scaling. `forward_with_periphery` folds these into fewer passes.
fn periphery_reference(
    layer: &gqcim::nets::layers::LayerSpec,
    xs: &Tensor,
    w: &Tensor,
    w_max: &Tensor,
    cfg: &AnalogConfig,
) -> Tensor {
    use gqcim::nets::layers::LayerOp;
    let dims: Vec<i64> = (1..xs.dim() as i64).collect();
    let x_scale = xs.abs().amax(dims.as_slice(), true).clamp_min(1e-12);
    let mut xn = xs / &x_scale;
    if let Converter::Uniform { bits, range } = cfg.dac {
        let steps = ((1u64 << (bits - 1)) - 1).max(1) as f64;
        xn = ((&xn / range).clamp(-1.0, 1.0) * steps).round() / steps * range;
    }
    // The crossbar view: the input unfolded into rows ((channel, ky, kx) taps of each
    // output position, as aihwkit's AnalogConv2d does on the CPU), each tile's rows times
    // its slice of the weight matrix.
    let wn = w / w_max;
    let c_out = w.size()[0];
    let w_rows = wn.reshape([c_out, -1]);
    let taps: i64 = w.size()[2..].iter().product::<i64>().max(1);
    let (cols, out_shape) = match layer.op {
        LayerOp::Conv2d { stride, padding, dilation, groups } => {
            assert_eq!(groups, 1, "the reference unfolds ungrouped convs only");
            let (kh, kw) = (w.size()[2], w.size()[3]);
            let cols =
                xn.im2col([kh, kw], [dilation, dilation], [padding, padding], [stride, stride]);
            let out = |d: i64, k: i64| (d + 2 * padding - dilation * (k - 1) - 1) / stride + 1;
            let shape = vec![xs.size()[0], c_out, out(xs.size()[2], kh), out(xs.size()[3], kw)];
            (cols, shape)
        }
        LayerOp::Linear => (xn.unsqueeze(-1), vec![xs.size()[0], c_out]),
    };
    let rows = w_rows.size()[1];
    let mut total: Option<Tensor> = None;
    for (start, len) in row_tiles(rows, taps, cfg.tile_rows, cfg.tile_split) {
        let y = w_rows.narrow(1, start, len).matmul(&cols.narrow(1, start, len));
        let mut y = y.reshape(out_shape.as_slice());
        if cfg.output_noise > 0.0 {
            y = &y + y.randn_like() * cfg.output_noise;
        }
        if let Converter::Uniform { bits, range: r } = cfg.adc {
            let step = 2.0 * r / ((1u64 << bits) - 1) as f64;
            y = ((y.clamp(-r, r) + r) / step).round() * step - r;
        }
        total = Some(match total {
            Some(t) => t + y,
            None => y,
        });
    }
    let c = w.size()[0];
    let col: Vec<i64> = if xs.dim() == 4 { vec![1, c, 1, 1] } else { vec![1, c] };
    let w_scale =
        if w_max.dim() > 0 { w_max.reshape(col.as_slice()) } else { w_max.shallow_clone() };
    let mut out = total.expect("at least one tile") * w_scale * x_scale;
    if let Some(bias) = &layer.bias {
        out += bias.reshape(col.as_slice());
    }
    out
}

/// The fused periphery (one fake-quantize per converter, ADC offset in the conv bias, one
/// back-scaling pass) gives the plain formulas' results: equal up to float rounding, except
/// that a partial sum lying within rounding error of an ADC threshold may land one step
/// over (rare: checked to be under 0.1% of outputs, and never more than one step per tile).
/// The same holds when the batch runs through the periphery in chunks of samples (the same
/// output-noise draws).
#[test]
fn fused_periphery_matches_the_plain_formulas() {
    use gqcim::analog::device::weight_bound;
    use gqcim::analog::periphery::{forward_with_periphery_in_chunks, Passes};
    use gqcim::nets::layers::Epilogue;
    const FLOAT: (Kind, Device) = (Kind::Float, Device::Cpu);
    let _rng = rng_lock();
    tch::manual_seed(5);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let reg = gqcim::nets::layers::LayerRegistry::default();
    // 48 -> 20 channels, 3x3: 28 channels per 256-row tile, so two tiles (28 + 20).
    let _conv =
        gqcim::nets::layers::conv2d_grouped(vs.root() / "c", &reg, 48, 20, 3, 1, 1, 1, 1, true);
    let _fc = gqcim::nets::layers::linear(vs.root() / "fc", &reg, 300, 10);
    // A BatchNorm after the conv with running statistics and an affine far from identity.
    let bn = gqcim::nets::layers::batch_norm2d(vs.root() / "bn", 20);
    tch::no_grad(|| {
        bn.running_mean.shallow_clone().copy_(&(Tensor::randn([20], FLOAT) * 0.5));
        bn.running_var.shallow_clone().copy_(&(Tensor::rand([20], FLOAT) * 2.0 + 0.1));
        bn.weight.shallow_clone().copy_(&(Tensor::randn([20], FLOAT) * 1.5));
        bn.bias.shallow_clone().copy_(&Tensor::randn([20], FLOAT));
    });
    let uniform = |bits, range| Converter::Uniform { bits, range };
    let cases = [
        ("c", vec![16, 48, 9, 9], 256, uniform(8, 1.0), uniform(8, 3.0), 0.0, false),
        ("c", vec![16, 48, 9, 9], 256, uniform(6, 0.5), uniform(6, 2.0), 0.05, true),
        ("c", vec![16, 48, 9, 9], 1000, Converter::Ideal, uniform(8, 4.0), 0.0, true),
        ("c", vec![16, 48, 9, 9], 90, uniform(8, 1.0), Converter::Ideal, 0.02, false),
        ("fc", vec![64, 300], 128, uniform(8, 1.0), uniform(8, 5.0), 0.0, false),
        ("fc", vec![64, 300], 100, uniform(4, 1.0), uniform(10, 5.0), 0.01, true),
    ];
    // Both tile splits: 432 rows of the 3x3 conv in 256-row tiles are 216 + 216 balanced
    // (24 whole channels each) and 252 + 180 by channels; in 90-row tiles five balanced
    // tiles of 87 or 86 rows cut channels' taps, by channels four of 10 channels and one of 8.
    let splits = [TileSplit::Balanced, TileSplit::Channels];
    let cases = cases.iter().flat_map(|c| splits.iter().map(move |&split| (c.clone(), split)));
    for ((name, shape, tile_rows, dac, adc, output_noise, per_column), tile_split) in cases {
        let h = reg.get(name).unwrap();
        let x = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu)).relu() - 0.2;
        let w = h.spec.weight.detach();
        let w_max = weight_bound(&w, per_column);
        let cfg = AnalogConfig {
            tile_rows,
            tile_split,
            dac: dac.clone(),
            adc: adc.clone(),
            output_noise,
            per_column_scale: per_column,
            ..Default::default()
        };
        tch::manual_seed(9);
        let want = tch::no_grad(|| periphery_reference(&h.spec, &x, &w, &w_max, &cfg));
        // The whole batch in one pass, and in chunks of 5 samples (the last one short); the
        // fused CPU passes and the tensor ops give the same numbers (both are checked against
        // the plain formulas, and against each other exactly).
        for chunk in [shape[0], 5] {
            let run_then = |passes: Passes, then: Option<&Epilogue<'_>>| {
                tch::manual_seed(9);
                tch::no_grad(|| {
                    forward_with_periphery_in_chunks(
                        &h.spec, &x, &w, &w_max, &cfg, then, chunk, passes,
                    )
                })
            };
            let run = |passes| run_then(passes, None);
            let got = run(Passes::FusedCpu);
            let by_ops = run(Passes::TensorOps);
            let apart = (&got - &by_ops).abs().max().double_value(&[]);
            assert_eq!(apart, 0.0, "{name} chunk {chunk}: fused and tensor-op passes differ");
            assert_eq!(got.size(), want.size(), "{name}: shape");
            let diff = (&got - &want).abs();
            let scale = want.abs().max().double_value(&[]);
            let what = format!(
                "{name} dac {dac:?} adc {adc:?} tile_rows {tile_rows} {tile_split:?} chunk {chunk}"
            );
            let off =
                diff.gt(1e-4 * scale).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
            let taps = w.size()[2..].iter().product::<i64>();
            let tiles = row_tiles(w.size()[1] * taps, taps, tile_rows, tile_split).len() as f64;
            let step = match &adc {
                Converter::Uniform { bits, range } => 2.0 * range / ((1u64 << *bits) - 1) as f64,
                Converter::Ideal => 0.0,
            };
            let one_step_per_tile =
                tiles * step * w_max.max().double_value(&[]) * x.abs().max().double_value(&[]);
            let worst = diff.max().double_value(&[]);
            assert!(off < 1e-3, "{what}: {off} of outputs differ beyond rounding");
            assert!(
                worst <= 1e-4 * scale + 1.001 * one_step_per_tile,
                "{what}: worst difference {worst} exceeds one ADC step per tile ({one_step_per_tile})"
            );
            // A BatchNorm (and a ReLU) after a conv, folded into the back-scaling: the same
            // as applying them to the output, up to float rounding (the ADC codes are the
            // same draws), and the fused and tensor-op passes still agree exactly.
            if name == "c" {
                for relu in [false, true] {
                    let then = Epilogue { bn: &bn, residual: None, relu };
                    let folded = run_then(Passes::FusedCpu, Some(&then));
                    let by_ops = run_then(Passes::TensorOps, Some(&then));
                    let apart = (&folded - &by_ops).abs().max().double_value(&[]);
                    assert_eq!(apart, 0.0, "{what} relu {relu}: fused and tensor-op folds differ");
                    let want = tch::no_grad(|| then.apply(got.shallow_clone()));
                    let worst = (&folded - &want).abs().max().double_value(&[]);
                    let scale = want.abs().max().double_value(&[]);
                    assert!(
                        worst <= 1e-5 * scale,
                        "{what} relu {relu}: folded BN differs from BN after by {worst} (of {scale})"
                    );
                    if relu {
                        assert!(folded.min().double_value(&[]) >= 0.0, "{what}: ReLU not applied");
                    }
                }
                // A residual block's shortcut added in the same pass, before the ReLU: bit
                // for bit the BN fold without ReLU, then torch's add and ReLU (the ops a
                // block ran before); a shortcut of another shape (broadcast) or layout goes
                // through the tensor ops, with the same result.
                let no_relu = run_then(
                    Passes::FusedCpu,
                    Some(&Epilogue { bn: &bn, residual: None, relu: false }),
                );
                let shortcut = Tensor::randn(no_relu.size().as_slice(), FLOAT);
                let want = (&no_relu + &shortcut).relu();
                let per_column = Tensor::randn([1, no_relu.size()[1], 1, 1], FLOAT);
                let transposed = shortcut.transpose(2, 3).contiguous().transpose(2, 3);
                for (kind, r, want) in [
                    ("same shape", &shortcut, &want),
                    ("broadcast", &per_column, &(&no_relu + &per_column).relu()),
                    ("strided", &transposed, &want),
                ] {
                    let then = Epilogue { bn: &bn, residual: Some(r), relu: true };
                    for passes in [Passes::FusedCpu, Passes::TensorOps] {
                        let got = run_then(passes, Some(&then));
                        let apart = (&got - want).abs().max().double_value(&[]);
                        assert_eq!(apart, 0.0, "{what} {passes:?}: {kind} shortcut differs");
                    }
                }
            }
        }
    }
}

/// A crossbar layer keeps its periphery's set-up from one batch to the next
/// (`PeripheryPlan`), including the BatchNorm after it as values: when the BN's parameters
/// change between two batches, the second batch uses the new ones, as a plan built afresh
/// does (and as the tensor ops do), bit for bit.
#[test]
fn a_kept_periphery_plan_follows_a_changed_batchnorm() {
    use gqcim::analog::device::weight_bound;
    use gqcim::analog::periphery::{Passes, PeripheryPlan};
    use gqcim::nets::layers::Epilogue;
    const FLOAT: (Kind, Device) = (Kind::Float, Device::Cpu);
    let _rng = rng_lock();
    tch::manual_seed(11);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let reg = gqcim::nets::layers::LayerRegistry::default();
    let _conv =
        gqcim::nets::layers::conv2d_grouped(vs.root() / "c", &reg, 40, 12, 3, 1, 1, 1, 1, false);
    let bn = gqcim::nets::layers::batch_norm2d(vs.root() / "bn", 12);
    let h = reg.get("c").unwrap();
    let x = Tensor::randn([6, 40, 7, 7], FLOAT);
    let w = h.spec.weight.detach();
    let w_max = weight_bound(&w, true);
    let cfg = AnalogConfig {
        dac: Converter::Uniform { bits: 8, range: 1.0 },
        adc: Converter::Uniform { bits: 8, range: 4.0 },
        tile_rows: 200,
        per_column_scale: true,
        ..Default::default()
    };
    let then = Epilogue { bn: &bn, residual: None, relu: true };
    let mut kept = PeripheryPlan::new(&h.spec, &w_max, &cfg);
    let before =
        tch::no_grad(|| kept.forward_in_chunks(&h.spec, &x, &w, Some(&then), 6, Passes::FusedCpu));
    tch::no_grad(|| {
        bn.running_var.shallow_clone().copy_(&(Tensor::rand([12], FLOAT) * 3.0 + 0.2));
        bn.running_mean.shallow_clone().copy_(&Tensor::randn([12], FLOAT));
        bn.weight.shallow_clone().copy_(&(Tensor::randn([12], FLOAT) * 2.0));
    });
    for passes in [Passes::FusedCpu, Passes::TensorOps] {
        let after =
            tch::no_grad(|| kept.forward_in_chunks(&h.spec, &x, &w, Some(&then), 6, passes));
        let fresh = tch::no_grad(|| {
            PeripheryPlan::new(&h.spec, &w_max, &cfg).forward_in_chunks(
                &h.spec,
                &x,
                &w,
                Some(&then),
                6,
                passes,
            )
        });
        let apart = (&after - &fresh).abs().max().double_value(&[]);
        assert_eq!(apart, 0.0, "{passes:?}: the kept plan used the old BatchNorm");
        let moved = (&after - &before).abs().max().double_value(&[]);
        assert!(moved > 0.1, "{passes:?}: the BatchNorm change did not reach the output ({moved})");
    }
}

/// A sample holding a NaN (a diverged activation) gives NaN outputs for that sample only, in
/// the fused passes as in the tensor ops: the DAC's abs-max carries the NaN instead of
/// skipping it, which would quietly scale the sample by its other values.
#[test]
fn a_nan_input_poisons_only_its_own_sample() {
    use gqcim::analog::device::weight_bound;
    use gqcim::analog::periphery::{forward_with_periphery_in_chunks, Passes};
    let _rng = rng_lock();
    tch::manual_seed(3);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let reg = gqcim::nets::layers::LayerRegistry::default();
    let _conv =
        gqcim::nets::layers::conv2d_grouped(vs.root() / "c", &reg, 40, 8, 3, 1, 1, 1, 1, false);
    let h = reg.get("c").unwrap();
    let x = Tensor::randn([4, 40, 6, 6], (Kind::Float, Device::Cpu));
    // One NaN deep inside sample 2 (past the first vector block and the first tile).
    let _ = x.get(2).get(33).get(4).get(5).fill_(f64::NAN);
    let w = h.spec.weight.detach();
    let w_max = weight_bound(&w, false);
    let cfg = AnalogConfig {
        dac: Converter::Uniform { bits: 8, range: 1.0 },
        adc: Converter::Uniform { bits: 8, range: 4.0 },
        ..Default::default()
    };
    for passes in [Passes::FusedCpu, Passes::TensorOps] {
        let y = tch::no_grad(|| {
            forward_with_periphery_in_chunks(&h.spec, &x, &w, &w_max, &cfg, None, 4, passes)
        });
        let nan_per_sample: Vec<i64> =
            (0..4).map(|s| y.get(s).isnan().sum(Kind::Int64).int64_value(&[])).collect();
        let per_sample = y.get(0).numel() as i64;
        assert_eq!(nan_per_sample, [0, 0, per_sample, 0], "{passes:?}: NaN outputs per sample");
    }
}
