//! Write-verify programming and the first-order cost model: convergence of the pulse model,
//! the analytic pulse count without noise, tolerance of converged devices (absolute and
//! per level), selective write-verify, energy scaling, a hand-calculated one-layer network,
//! programming ResNet-20, and named errors for bad configs.
mod common;
use common::*;
use gqcim::analog::cost::{
    layer_cost, layer_geometry, network_cost, network_geometry, network_program_stats,
    parse_preset, program_cost, CostPreset, CostSection, LayerGeom, DEFAULT_PRESET,
};
use gqcim::analog::device::map_to_pairs;
use gqcim::analog::montecarlo::program_trial;
use gqcim::analog::path::AnalogPath;
use gqcim::analog::sensitivity::top_fraction_masks;
use gqcim::analog::writeverify::{
    program_pairs, tolerance_map, write_verify, ProgramStats, ProgrammingConfig, ProgrammingMode,
    PulseModel, Tolerance,
};
use gqcim::config::{AnalogConfig, Config, ModelConfig, ProgrammingNoise, QuantConfig, TileSplit};
use gqcim::costreport::pareto_front;
use gqcim::deploy::deploy_analog;
use gqcim::nets::build_classifier;
use gqcim::nets::layers::{LayerOp, LayerSpec, WeightPath};
use gqcim::quant::deploy::apply_quantization;
use std::collections::BTreeMap;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

const G_MIN: f64 = 1.0;
const G_MAX: f64 = 25.0;

fn wv(pulse: PulseModel, c2c: f64, read: f64, max_pulses: usize) -> ProgrammingConfig {
    ProgrammingConfig {
        mode: ProgrammingMode::WriteVerify,
        pulse,
        c2c_sigma: c2c,
        read_sigma: read,
        max_pulses,
        ..Default::default()
    }
}

fn targets(n: i64) -> Tensor {
    Tensor::rand([n], (Kind::Double, Device::Cpu)) * (G_MAX - G_MIN) + G_MIN
}

#[test]
fn pulse_count_grows_as_tolerance_shrinks() {
    let _rng = rng_lock();
    let p = wv(PulseModel::SoftBounds { alpha: 0.02 }, 0.3, 0.01, 1000);
    let mut last = -1.0;
    for tol in [2.0, 1.0, 0.5, 0.25, 0.1] {
        tch::manual_seed(3);
        let t = targets(20_000);
        let r = write_verify(&t, &t.full_like(tol), &p, G_MIN, G_MAX);
        let mean = r.pulses.mean(Kind::Double).double_value(&[]);
        assert!(mean > last, "tolerance {tol}: mean pulses {mean} not above {last}");
        last = mean;
    }
}

/// Soft bounds from g_min with SET pulses only: g_k = g_max − (g_max − g_min)(1 − α)^k, so
/// the first k with g_k ≥ t − tol is ⌈ln((g_max − t + tol)/(g_max − g_min)) / ln(1 − α)⌉.
/// A fixed step s needs ⌈(t − g_min − tol)/s⌉ pulses. Step ≤ 2·tol, so nothing overshoots.
#[test]
fn zero_noise_reaches_target_in_the_analytic_number_of_pulses() {
    let _rng = rng_lock();
    let ts = [1.0, 1.2, 3.3, 7.7, 12.1, 18.9, 24.2];
    let t = Tensor::from_slice(&ts);
    let (alpha, tol) = (0.02, 0.3);
    let r = write_verify(
        &t,
        &t.full_like(tol),
        &wv(PulseModel::SoftBounds { alpha }, 0.0, 0.0, 1000),
        G_MIN,
        G_MAX,
    );
    let got = Vec::<f64>::try_from(&r.pulses).unwrap();
    for (x, k) in ts.iter().zip(&got) {
        let expect = if x - G_MIN <= tol {
            0.0
        } else {
            (((G_MAX - x + tol) / (G_MAX - G_MIN)).ln() / (1.0 - alpha).ln()).ceil()
        };
        assert_eq!(*k, expect, "soft bounds, target {x}");
    }
    assert_eq!(r.converged.all().int64_value(&[]), 1);
    let step = 0.5;
    let r = write_verify(
        &t,
        &t.full_like(tol),
        &wv(PulseModel::Fixed { step_us: step }, 0.0, 0.0, 1000),
        G_MIN,
        G_MAX,
    );
    let got = Vec::<f64>::try_from(&r.pulses).unwrap();
    for (x, k) in ts.iter().zip(&got) {
        let expect = ((x - G_MIN - tol) / step).ceil().max(0.0);
        assert_eq!(*k, expect, "fixed step, target {x}");
    }
}

#[test]
fn converged_devices_lie_within_tolerance() {
    let _rng = rng_lock();
    tch::manual_seed(4);
    let t = targets(50_000);
    // Exact reads: the read-back is the device, so converged means truly within tolerance.
    let p = wv(PulseModel::SoftBounds { alpha: 0.05 }, 0.5, 0.0, 200);
    let tol = t.full_like(0.4);
    let r = write_verify(&t, &tol, &p, G_MIN, G_MAX);
    let err = (&r.g - &t).abs();
    let conv = &r.converged;
    let n_conv = conv.sum(Kind::Int64).int64_value(&[]);
    assert!(n_conv > 45_000, "only {n_conv} of 50000 converged");
    let worst = err.masked_select(conv).max().double_value(&[]);
    assert!(worst <= 0.4 + 1e-12, "converged device off by {worst} > 0.4");
    // Devices that did not converge used every pulse.
    let unconv_pulses = r.pulses.masked_select(&conv.logical_not());
    if unconv_pulses.numel() > 0 {
        assert_eq!(unconv_pulses.min().double_value(&[]), 200.0);
    }
}

#[test]
fn spacing_tolerance_is_per_level_for_non_uniform_levels() {
    let _rng = rng_lock();
    tch::manual_seed(5);
    // Non-uniform levels on one device: 1, 2, 5, 13, 25 µS; gaps 1, 3, 8, 12.
    let levels = [1.0, 2.0, 5.0, 13.0, 25.0];
    let per_level = [1.0, 1.0, 3.0, 8.0, 12.0].map(|g| 0.25 * g);
    let idx = Tensor::randint(5, [10_000], (Kind::Int64, Device::Cpu));
    let gp = Tensor::from_slice(&levels).index_select(0, &idx);
    let gn = gp.full_like(G_MIN);
    let (tp, _) = tolerance_map(&gp, &gn, &Tolerance::Spacing { fraction: 0.25 }, G_MIN, G_MAX);
    let expect = Tensor::from_slice(&per_level).index_select(0, &idx);
    assert_eq!((&tp - &expect).abs().max().double_value(&[]), 0.0);
    let r = write_verify(
        &gp,
        &tp,
        &wv(PulseModel::SoftBounds { alpha: 0.03 }, 0.3, 0.0, 300),
        G_MIN,
        G_MAX,
    );
    let ok = (&r.g - &gp).abs().le_tensor(&tp).logical_or(&r.converged.logical_not());
    assert_eq!(
        ok.all().int64_value(&[]),
        1,
        "a converged device lies outside its level's tolerance"
    );
}

#[test]
fn selective_write_verify_verifies_only_the_top_fraction() {
    let _rng = rng_lock();
    tch::manual_seed(6);
    let scores = vec![
        Tensor::rand([40, 10], (Kind::Float, Device::Cpu)),
        Tensor::rand([600], (Kind::Float, Device::Cpu)),
    ];
    let masks = top_fraction_masks(&scores, 0.1).unwrap();
    let n: i64 = masks.iter().map(|m| m.sum(Kind::Int64).int64_value(&[])).sum();
    assert_eq!(n, 100);
    // Every selected score is at least every unselected one.
    let sel_min = scores
        .iter()
        .zip(&masks)
        .map(|(s, m)| s.masked_select(m).min().double_value(&[]))
        .fold(f64::MAX, f64::min);
    let rest_max = scores
        .iter()
        .zip(&masks)
        .map(|(s, m)| s.masked_select(&m.logical_not()).max().double_value(&[]))
        .fold(f64::MIN, f64::max);
    assert!(sel_min >= rest_max);
    // Unverified weights are programmed single-shot: exact here (σ = 0), one pulse each above g_min.
    let w = Tensor::randn([1000], (Kind::Float, Device::Cpu));
    let ideal = map_to_pairs(&w, G_MIN, G_MAX, false);
    let mask = Tensor::zeros([1000], (Kind::Bool, Device::Cpu));
    let cfg = AnalogConfig {
        programming: wv(PulseModel::SoftBounds { alpha: 0.02 }, 0.3, 0.01, 100),
        programming_noise: ProgrammingNoise::None,
        ..Default::default()
    };
    let (pm, st) = program_pairs(&ideal, &cfg, Some(&mask));
    assert_eq!((&pm.g_pos - &ideal.g_pos).abs().max().double_value(&[]), 0.0);
    assert_eq!(st.verified, 0);
    assert_eq!(st.verify_reads, 0.0);
    // Exactly one of the two devices of a nonzero weight is above g_min.
    let nonzero = w.ne(0.0).sum(Kind::Int64).int64_value(&[]) as f64;
    assert_eq!(st.pulses, nonzero);
    let all = Tensor::ones([1000], (Kind::Bool, Device::Cpu));
    let (_, st_all) = program_pairs(&ideal, &cfg, Some(&all));
    assert_eq!(st_all.verified, 2000);
    assert!(
        st_all.pulses > 10.0 * st.pulses,
        "verifying everything costs {} vs {}",
        st_all.pulses,
        st.pulses
    );
}

fn pinned_preset() -> CostPreset {
    let mut o = BTreeMap::new();
    for (k, v) in [
        ("read_voltage_v", 0.5),
        ("read_pulse_s", 1e-8),
        ("write_voltage_v", 4.0),
        ("write_pulse_s", 5e-8),
        ("adc_fom_j_per_step", 1e-14),
        ("adc_conversion_s", 1e-8),
        ("columns_per_adc", 8.0),
        ("adc_area_m2_per_level", 1.2e-11),
        ("dac_fom_j_per_step", 1e-15),
        ("dac_area_m2", 1e-11),
        ("cell_area_f2", 16.0),
        ("feature_size_m", 4e-8),
        ("program_parallel_devices", 1.0),
    ] {
        o.insert(k.to_string(), v);
    }
    parse_preset(DEFAULT_PRESET, "test", &o).unwrap()
}

fn geom(c_in: i64, taps: i64, c_out: i64, positions: i64, g: f64) -> LayerGeom {
    LayerGeom {
        name: "l".into(),
        c_in_per_group: c_in,
        taps,
        c_out,
        groups: 1,
        positions,
        g_sum_us: 2.0 * (c_in * taps * c_out) as f64 * g,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

#[test]
fn adc_energy_doubles_per_bit_and_crossbar_energy_is_linear() {
    let p = pinned_preset();
    let cfg = AnalogConfig::default();
    let g = geom(64, 9, 32, 100, 13.0);
    for b in 1..12 {
        let e0 = layer_cost(&g, &cfg, &p, b, 8).adc_energy_j;
        let e1 = layer_cost(&g, &cfg, &p, b + 1, 8).adc_energy_j;
        assert!(close(e1, 2.0 * e0), "{b} -> {}: {e0} vs {e1}", b + 1);
    }
    let base = layer_cost(&geom(10, 1, 20, 7, 5.0), &cfg, &p, 8, 8).crossbar_energy_j;
    for (r, c, n) in [(2, 1, 1), (1, 3, 1), (1, 1, 4), (3, 5, 2)] {
        let e = layer_cost(&geom(10 * r, 1, 20 * c, 7 * n, 5.0), &cfg, &p, 8, 8).crossbar_energy_j;
        assert!(close(e, base * (r * c * n) as f64), "rows×{r} cols×{c} reads×{n}: {e} vs {base}");
    }
}

/// One linear layer, 4 inputs → 3 outputs, tiles of 2 × 2, on the pinned preset; every
/// number below is worked out by hand.
#[test]
fn one_layer_network_matches_a_hand_calculation() {
    let _rng = rng_lock();
    let w =
        Tensor::from_slice(&[1.0f32, -1.0, 0.5, 0.0, 0.0, 0.25, -0.5, 1.0, -1.0, 0.0, 0.0, 0.5])
            .reshape([3, 4]);
    let spec =
        LayerSpec { name: "fc".into(), op: LayerOp::Linear, weight: w.shallow_clone(), bias: None };
    let cfg = AnalogConfig { tile_rows: 2, tile_cols: 2, ..Default::default() };
    let mut path = AnalogPath::new(w.shallow_clone(), "toy".into(), &cfg);
    path.program(None);
    let _ = path.forward(&spec, &Tensor::ones([5, 4], (Kind::Float, Device::Cpu)), false);
    let g = layer_geometry(&spec, &path).unwrap();
    // alpha = max|w| / 24 = 1/24: G = 24|w| + 1 on one device, 1 on the other, so
    // Σ G = 24 · Σ|w| + 12 · 2 · 1 = 24 · 5.75 + 24 = 162 µS.
    assert!(close(g.g_sum_us, 162.0), "Σ G = {}", g.g_sum_us);
    let p = pinned_preset();
    let c = layer_cost(&g, &cfg, &p, 8, 8);
    assert_eq!(c.tiles, 4); // ⌈4/2⌉ row tiles × ⌈3/2⌉ column tiles
    assert_eq!(c.adc_conversions, 6.0); // 2 row tiles × 3 columns
    assert_eq!(c.dac_conversions, 8.0); // 4 rows × 2 column tiles
    assert!(close(c.crossbar_energy_j, 0.25 * 1e-8 * 162e-6)); // V² t ΣG = 4.05e-13 J
    assert!(close(c.adc_energy_j, 6.0 * 1e-14 * 256.0)); // 1.536e-11 J
    assert!(close(c.dac_energy_j, 8.0 * 1e-15 * 256.0)); // 2.048e-12 J
    assert!(close(c.latency_s, 1e-8 + 8.0 * 1e-8)); // t_read + 8 columns per ADC × t_conv
    let tile = 2.0 * 4.0 * 16.0 * 1.6e-15 + 1.0 * 1.2e-11 * 256.0 + 2.0 * 1e-11;
    assert!(close(c.area_m2, 4.0 * tile), "area {} vs {}", c.area_m2, 4.0 * tile);
    // Programming: single shot, one pulse per device above g_min: 8 nonzero weights.
    assert_eq!(path.program_stats.pulses, 8.0);
    let pc = program_cost(
        &ProgramStats { pulses: 100.0, verify_reads: 150.0, ..Default::default() },
        &cfg,
        &p,
        8,
    );
    let e = 100.0 * 16.0 * 25e-6 * 5e-8 + 150.0 * (0.25 * 25e-6 * 1e-8 + 1e-14 * 256.0);
    assert!(close(pc.energy_j, e), "{} vs {e}", pc.energy_j);
    assert!(close(pc.time_s, 100.0 * 5e-8 + 150.0 * 2e-8));
}

#[test]
fn pareto_front_keeps_only_undominated_points() {
    let pts = [(10.0, 80.0), (5.0, 70.0), (20.0, 79.0), (30.0, 90.0), (5.0, 60.0), (1.0, 10.0)];
    assert_eq!(pareto_front(&pts), vec![5, 1, 0, 3]);
}

/// Programs ResNet-20 (gq, N = 4) by write-verify and reads the cost off the network;
/// prints the wall time of one programming (run at 1 thread for the README's number).
#[test]
fn resnet20_write_verify_programs_every_device() {
    let _rng = rng_lock();
    tch::manual_seed(11);
    let net = build_classifier(&ModelConfig::default(), Device::Cpu);
    let _ = net.forward_t(&Tensor::randn([16, 1, 28, 28], (Kind::Float, Device::Cpu)), true);
    apply_quantization(&net, &QuantConfig { levels: 4, ..Default::default() }, &Default::default())
        .unwrap();
    let cfg = AnalogConfig {
        programming: wv(PulseModel::SoftBounds { alpha: 0.02 }, 0.3, 0.01, 300),
        ..Default::default()
    };
    deploy_analog(&net, &cfg);
    let start = Instant::now();
    program_trial(&net, &cfg, 9).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let st = network_program_stats(&net);
    let weights: i64 = net.layers.layers().iter().map(|l| l.spec.numel()).sum();
    println!(
        "ResNet-20 write-verify: {} devices, {:.0} pulses, {} unconverged, {secs:.2} s wall ({} threads)",
        st.devices, st.pulses, st.unconverged, tch::get_num_threads()
    );
    assert_eq!(st.devices, 2 * weights);
    assert_eq!(st.verified, 2 * weights);
    assert!(st.pulses > weights as f64, "pulses {}", st.pulses);
    // Near g_max the soft-bounds RESET step α·(g − g_min) can exceed twice a level's
    // tolerance, so a few per cent of the devices oscillate until max_pulses (2.7% measured
    // at seed 9, 300 pulses).
    assert!((st.unconverged as f64) < 0.05 * st.devices as f64, "{} unconverged", st.unconverged);
    let _ = tch::no_grad(|| {
        net.forward_t(&Tensor::randn([2, 1, 28, 28], (Kind::Float, Device::Cpu)), false)
    });
    let geoms = network_geometry(&net).unwrap();
    assert_eq!(geoms.len(), net.layers.layers().len());
    assert_eq!(geoms[0].positions, 28 * 28);
    let p = pinned_preset();
    let c = network_cost(&geoms, &cfg, &p, 8, 8);
    let c4 = network_cost(&geoms, &cfg, &p, 4, 8);
    assert!(c.crossbar_energy_j > 0.0 && close(c.adc_energy_j, 16.0 * c4.adc_energy_j));
    // Row tiles as the periphery splits the layer: by whole channels (the default), ⌊256 /
    // k²⌋ channels (28 for a 3x3 conv) per tile; balanced, ⌈rows / 256⌉. ADC conversions =
    // Σ positions × row tiles × c_out.
    let conversions = |tiles_of: &dyn Fn(&LayerGeom) -> i64| -> f64 {
        geoms.iter().map(|g| (g.positions * tiles_of(g) * g.c_out) as f64).sum()
    };
    let whole = conversions(&|g| (g.c_in_per_group + (256 / g.taps) - 1) / (256 / g.taps));
    assert_eq!(c.adc_conversions, whole);
    let balanced_cfg = AnalogConfig { tile_split: TileSplit::Balanced, ..cfg.clone() };
    let cb = network_cost(&geoms, &balanced_cfg, &p, 8, 8);
    assert_eq!(cb.adc_conversions, conversions(&|g| (g.c_in_per_group * g.taps + 255) / 256));
    // Where the two differ: 512 channels of a 3x3 conv are 4,608 rows, 19 tiles of 28 whole
    // channels (the last one 8) or 18 balanced tiles of 256 rows.
    let wide = LayerGeom {
        name: "wide".into(),
        c_in_per_group: 512,
        taps: 9,
        c_out: 512,
        groups: 1,
        positions: 16,
        g_sum_us: 1.0,
    };
    assert_eq!(layer_cost(&wide, &cfg, &p, 8, 8).row_tiles, 19);
    assert_eq!(layer_cost(&wide, &balanced_cfg, &p, 8, 8).row_tiles, 18);
}

fn cfg_err(yaml: &str) -> String {
    Config::from_yaml_str(yaml, "bad.yaml", &[]).unwrap_err().to_string()
}

#[test]
fn bad_cost_and_programming_configs_are_named_errors() {
    let m = cfg_err("analog:\n  programming:\n    tolerance: {type: absolute, us: 0}\n");
    assert!(m.contains("analog.programming.tolerance.us") && m.contains("> 0"), "{m}");
    let m = cfg_err("analog:\n  programming:\n    tolerance: {type: spacing, fraction: -0.1}\n");
    assert!(m.contains("analog.programming.tolerance.fraction"), "{m}");
    let m = cfg_err("analog:\n  programming:\n    max_pulses: 0\n");
    assert!(m.contains("analog.programming.max_pulses"), "{m}");
    let m = cfg_err("compare:\n  tolerances: [0.25, 0]\n");
    assert!(m.contains("compare.tolerances[1]"), "{m}");
    let m = cfg_err("cost:\n  overrides: {adc_fom_j_per_step: -1.0e-14}\n");
    assert!(m.contains("adc_fom_j_per_step") && m.contains(">= 0"), "{m}");
    let m = cfg_err("cost:\n  overrides: {adc_fom_j_per_stp: 1.0e-14}\n");
    assert!(
        m.contains("unknown preset key `adc_fom_j_per_stp`")
            && m.contains("did you mean `adc_fom_j_per_step`"),
        "{m}"
    );
    // An unknown key inside a preset file names the file and the key.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("preset.yaml");
    std::fs::write(&f, format!("{DEFAULT_PRESET}\nadc_fom: {{value: 1, source: x}}\n")).unwrap();
    let s = CostSection { preset: Some(f.clone()), ..Default::default() };
    let m = s.load_preset().unwrap_err().to_string();
    assert!(m.contains("preset.yaml") && m.contains("unknown key `adc_fom`"), "{m}");
    let m = cfg_err("analog:\n  programming:\n    pulse: {type: soft-bounds, alpha: 1.5}\n");
    assert!(m.contains("analog.programming.pulse.alpha"), "{m}");
    // The built-in preset itself is valid and every constant has a source.
    let p = CostSection::default().load_preset().unwrap();
    assert!(!p.adc_fom_j_per_step.source.is_empty());
}
