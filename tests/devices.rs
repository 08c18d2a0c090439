//! Device presets (pcm, reram, gaussian): sampled programming noise, drift and read noise
//! match their formulas; drift compensation restores the output scale; gq-noise's moments
//! follow a preset; fit-device recovers a preset from synthetic measurements; bad CSVs are
//! named errors.
mod common;
use common::*;
use gqcim::analog::device::{compensation_readout, Calibration};
use gqcim::analog::path::AnalogPath;
use gqcim::config::{AnalogConfig, Config, Drift, DriftCompensation, ProgrammingNoise, ReadNoise};
use gqcim::device::fit::{fit, read_csv, FitOptions, Measurement};
use gqcim::device::DeviceModel;
use gqcim::nets::layers::{LayerSpec, WeightPath};
use std::io::Write;
use tch::{Device, Kind, Tensor};

const N: i64 = 200_000;

type Formula<'a> = &'a dyn Fn(f64) -> f64;

fn analog_of(preset: &str) -> AnalogConfig {
    Config::from_yaml_str(&format!("analog: {{preset: {preset}}}\n"), "t.yaml", &[]).unwrap().analog
}

fn stats(t: &Tensor) -> (f64, f64) {
    let t = t.to_kind(Kind::Double);
    (t.mean(Kind::Double).double_value(&[]), t.std(true).double_value(&[]))
}

fn full(g: f64) -> Tensor {
    Tensor::full([N], g, (Kind::Float, Device::Cpu))
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

#[test]
fn programming_noise_matches_each_presets_formula() {
    let _rng = rng_lock();
    tch::manual_seed(11);
    // aihwkit pcm.py: sigma = c0 + c1·(g/25) + c2·(g/25)², c = [0.26348, 1.9650, -1.1731].
    let pcm = |g: f64| {
        let x = g / 25.0;
        0.26348 + 1.9650 * x - 1.1731 * x * x
    };
    // aihwkit reram.py ReRamCMONoiseModel, 2% acceptance range: 0.0112185391 + 0.01129027418·g.
    let reram = |g: f64| 0.0112185391 + 0.01129027418 * g;
    let gauss = |_g: f64| 0.02 * 24.0;
    let cases: [(&str, Formula, [f64; 3]); 3] = [
        ("pcm", &pcm, [5.0, 12.5, 20.0]),
        ("reram", &reram, [20.0, 50.0, 80.0]),
        ("gaussian", &gauss, [5.0, 13.0, 20.0]),
    ];
    for (name, formula, gs) in cases {
        let dm = DeviceModel::from_analog(&analog_of(name));
        for g in gs {
            let (m, s) = stats(&(dm.program(&full(g)) - g));
            let want = formula(g);
            assert!(rel(dm.sigma_at(g), want) < 1e-6, "{name} sigma_at({g})");
            assert!(rel(s, want) < 0.05, "{name} g={g}: sampled sigma {s} vs {want}");
            assert!(m.abs() < 0.05 * want, "{name} g={g}: mean offset {m}");
        }
    }
}

#[test]
fn pcm_drift_exponents_and_decay_match_the_formula() {
    let _rng = rng_lock();
    tch::manual_seed(12);
    let mut a = analog_of("pcm");
    a.read_noise = ReadNoise::None;
    let dm = DeviceModel::from_analog(&a);
    for g in [2.0, 5.0, 20.0] {
        // aihwkit pcm.py generate_drift_coefficients.
        let l = (g / 25.0f64).ln();
        let mu = (-0.0155 * l + 0.0244).clamp(0.049, 0.1);
        let sd = (-0.0125 * l - 0.0059).clamp(0.008, 0.045);
        let nu = dm.draw_nu(&full(g)).unwrap();
        let (m, s) = stats(&nu);
        assert!(rel(m, mu) < 0.05, "g={g}: nu mean {m} vs {mu}");
        assert!(rel(s, sd) < 0.05, "g={g}: nu std {s} vs {sd}");
        // One day after programming: ln(g_t/g) = -nu·ln((t + t0)/t0).
        let t = 86_400.0;
        let lt = ((t + 20.0) / 20.0f64).ln();
        let gt = dm.at_time(&full(g), Some(&nu), Some(t));
        let (dm_, ds) = stats(&(gt / g).log());
        assert!(rel(-dm_ / lt, mu) < 0.05, "g={g}: decay mean {} vs {mu}", -dm_ / lt);
        assert!(rel(ds / lt, sd) < 0.05, "g={g}: decay std {} vs {sd}", ds / lt);
    }
}

#[test]
fn reram_relaxation_and_read_noise_match_the_formula() {
    let _rng = rng_lock();
    tch::manual_seed(13);
    let a = analog_of("reram");
    let t: f64 = 86_400.0;
    let l = t.ln();
    // aihwkit reram.py decay_dict: mean -0.08900206·ln t, std 0.04201137·ln t + 0.41183342.
    let (mean, relax) = (-0.08900206 * l, 0.04201137 * l + 0.41183342);
    let no_read = DeviceModel { read: ReadNoise::None, ..DeviceModel::from_analog(&a) };
    let g = 50.0;
    let (m, s) = stats(&(no_read.at_time(&full(g), None, Some(t)) - g));
    assert!(rel(m, mean) < 0.05, "relaxation mean {m} vs {mean}");
    assert!(rel(s, relax) < 0.05, "relaxation std {s} vs {relax}");
    // read_dict: K·log10(g)·sqrt(ln((t + t_read)/(2 t_read))), K = 0.0277316483, 1 µs.
    let no_drift = DeviceModel { drift: Drift::None, ..DeviceModel::from_analog(&a) };
    let read = 0.0277316483 * g.log10() * ((t + 1e-6) / 2e-6f64).ln().sqrt();
    let (_, s) = stats(&(no_drift.at_time(&full(g), None, Some(t)) - g));
    assert!(rel(s, read) < 0.05, "read std {s} vs {read}");
}

#[test]
fn pcm_one_over_f_and_gaussian_read_noise_match_the_formula() {
    let _rng = rng_lock();
    tch::manual_seed(14);
    let a = analog_of("pcm");
    let dm = DeviceModel { drift: Drift::None, ..DeviceModel::from_analog(&a) };
    for (g, t) in [(5.0, 3600.0), (20.0, 31_536_000.0)] {
        let q = (0.0088 / (g / 25.0f64).powf(0.65).max(1e-3)).min(0.2);
        let want = q * ((t + 20.0 + 250e-9) / (2.0 * 250e-9f64)).ln().sqrt();
        let (_, s) = stats(&(dm.at_time(&full(g), None, Some(t)) / g - 1.0));
        assert!(rel(s, want) < 0.05, "g={g} t={t}: 1/f {s} vs {want}");
    }
    let gauss = DeviceModel {
        read: ReadNoise::Gaussian { sigma: 0.02 },
        ..DeviceModel::from_analog(&analog_of("gaussian"))
    };
    let (_, s) = stats(&(gauss.read_fresh(&full(12.0)) / 12.0 - 1.0));
    assert!(rel(s, 0.02) < 0.05, "gaussian read {s}");
}

/// The weights the crossbar layer computes with now (the layer spec is not consulted).
fn read_weights(p: &mut AnalogPath) -> Tensor {
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let reg = gqcim::nets::layers::LayerRegistry::default();
    let _lin = gqcim::nets::layers::linear(vs.root() / "fc", &reg, 1, 1);
    let h = reg.get("fc").unwrap();
    let spec: &LayerSpec = &h.spec;
    p.weight(spec, false)
}

/// Mean |y| of a layer's crossbar on held-out inputs.
fn mean_abs_output(p: &mut AnalogPath, x: &Tensor) -> f64 {
    let w = read_weights(p);
    x.matmul(&w.tr()).abs().mean(Kind::Double).double_value(&[])
}

/// `analog.resplit_after_programming` (aihwkit's convention): after programming, each
/// weight's "off" device sits exactly at g_min and the pair still holds the programmed
/// weight; without it the off device keeps its own programming noise.
#[test]
fn resplit_puts_the_off_device_at_g_min_and_keeps_the_weight() {
    let _rng = rng_lock();
    let w = Tensor::randn([32, 64], (Kind::Float, Device::Cpu)) * 0.05;
    let mut a = analog_of("pcm");
    a.t_inference = vec![0.0];
    a.read_noise = ReadNoise::None;
    a.drift_compensation = Some(DriftCompensation::None);
    let off_min = |p: &AnalogPath| {
        let g = &p.programmed;
        g.g_pos.minimum(&g.g_neg).abs().max().double_value(&[])
    };
    let program = |a: &AnalogConfig| {
        tch::manual_seed(3);
        let mut p = AnalogPath::new(w.shallow_clone(), "fp32".into(), a);
        p.program(None);
        let wt = (&p.programmed.g_pos - &p.programmed.g_neg) * &p.programmed.alpha;
        (off_min(&p), wt)
    };
    let (off_kept, w_kept) = program(&a);
    assert!(off_kept > 0.1, "without resplit the off devices keep their noise: {off_kept}");
    a.resplit_after_programming = true;
    let (off_split, w_split) = program(&a);
    assert_eq!(off_split, a.g_min, "every off device at g_min after the resplit");
    let d = (&w_split - &w_kept).abs().max().double_value(&[]);
    assert!(d < 1e-6, "the resplit keeps each programmed weight: max diff {d}");
    // aihwkit's re-mapping: the largest programmed |weight| at exactly g_max, same weights.
    a.resplit_scale = gqcim::config::ResplitScale::Programmed;
    tch::manual_seed(3);
    let mut p = AnalogPath::new(w.shallow_clone(), "fp32".into(), &a);
    p.program(None);
    let top = p.programmed.g_pos.maximum(&p.programmed.g_neg).max().double_value(&[]);
    assert!((top - a.g_max).abs() < 1e-4, "largest device at g_max: {top}");
    let wr = (&p.programmed.g_pos - &p.programmed.g_neg) * &p.programmed.alpha;
    let d = (wr - &w_kept).abs().max().double_value(&[]);
    assert!(d < 1e-6, "re-scaling keeps each programmed weight: max diff {d}");
}

/// One-hot calibration inputs (aihwkit's readout): the global compensation factor is the
/// ratio of the mean absolute weights, fresh over drifted.
#[test]
fn one_hot_calibration_compensates_by_mean_absolute_weight() {
    let _rng = rng_lock();
    tch::manual_seed(21);
    let w = Tensor::randn([16, 40], (Kind::Float, Device::Cpu)) * 0.05;
    let mut a = analog_of("pcm");
    a.read_noise = ReadNoise::None;
    a.drift_compensation = Some(DriftCompensation::Global);
    a.calibration_inputs = gqcim::config::CalibrationInputs::OneHot;
    a.t_inference = vec![0.0];
    let mut p = AnalogPath::new(w.shallow_clone(), "fp32".into(), &a);
    p.program(Some(&Calibration::OneHot));
    let weight = |p: &AnalogPath| (&p.programmed.g_pos - &p.programmed.g_neg) * &p.programmed.alpha;
    let mean_abs = |t: &Tensor| t.abs().mean(Kind::Double).double_value(&[]);
    let fresh = mean_abs(&weight(&p));
    p.set_time(Some(86_400.0));
    let drifted = mean_abs(&weight(&p));
    let gdc = p.gdc.double_value(&[]);
    assert!(drifted < 0.9 * fresh, "PCM drift shrinks the weights: {drifted} vs {fresh}");
    assert!(rel(gdc, fresh / drifted) < 1e-4, "gdc {gdc} vs {}", fresh / drifted);
}

/// The one-hot read-out without the identity matmul gives the same bits as multiplying by
/// the identity (aihwkit's read-out, and gqcim's before the shortcut), global and per
/// column; and a trial read at several times keeps its baseline.
#[test]
fn one_hot_readout_equals_the_identity_matmul() {
    let _rng = rng_lock();
    tch::manual_seed(22);
    for shape in [vec![16i64, 40], vec![32, 8, 3, 3], vec![5, 1, 1, 1]] {
        let w = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu)) * 0.05;
        let fan_in: i64 = shape[1..].iter().product();
        let eye = Calibration::Inputs(Tensor::eye(fan_in, (Kind::Float, Device::Cpu)));
        for mode in [DriftCompensation::Global, DriftCompensation::PerColumn] {
            let fast = compensation_readout(mode, &w, &Calibration::OneHot);
            let slow = compensation_readout(mode, &w, &eye);
            assert_eq!(fast.size(), slow.size(), "{mode:?} {shape:?}");
            assert!(fast.equal(&slow), "{mode:?} {shape:?}: {fast:?} vs {slow:?}");
            let expected = match mode {
                DriftCompensation::PerColumn => {
                    w.reshape([shape[0], -1]).abs().sum_dim_intlist(1, false, Kind::Double)
                }
                _ => w.abs().sum(Kind::Double),
            };
            let d = (fast.to_kind(Kind::Double) - &expected).abs().max().double_value(&[]);
            assert!(d < 1e-5, "{mode:?} {shape:?}: Σ|w| off by {d}");
        }
    }
    // Several read times: each time's gdc is the one a trial read only at that time gets.
    let w = Tensor::randn([16, 40], (Kind::Float, Device::Cpu)) * 0.05;
    let mut a = analog_of("pcm");
    a.read_noise = ReadNoise::None;
    a.drift_compensation = Some(DriftCompensation::PerColumn);
    let cal = Calibration::Inputs(Tensor::randn([64, 40], (Kind::Float, Device::Cpu)));
    let gdc_at = |times: &[f64]| {
        tch::manual_seed(5);
        let mut p = AnalogPath::new(w.shallow_clone(), "fp32".into(), &a);
        p.program(Some(&cal));
        for &t in times {
            p.set_time(Some(t));
        }
        p.gdc.shallow_clone()
    };
    let once = gdc_at(&[86_400.0]);
    let after_others = gdc_at(&[1.0, 3_600.0, 86_400.0]);
    assert!(once.equal(&after_others), "{once:?} vs {after_others:?}");
    assert!(once.mean(Kind::Double).double_value(&[]) > 1.01, "PCM drift needs compensation");
}

#[test]
fn drift_compensation_restores_the_output_scale_at_one_day() {
    let _rng = rng_lock();
    tch::manual_seed(15);
    let w = Tensor::randn([64, 256], (Kind::Float, Device::Cpu)) * 0.05;
    let held_out = Tensor::randn([512, 256], (Kind::Float, Device::Cpu));
    let calibration = Calibration::Inputs(Tensor::randn([256, 256], (Kind::Float, Device::Cpu)));
    for mode in [DriftCompensation::Global, DriftCompensation::PerColumn] {
        let mut a = analog_of("pcm");
        a.read_noise = ReadNoise::None;
        a.drift_compensation = Some(DriftCompensation::None);
        a.t_inference = vec![0.0];
        let mut p = AnalogPath::new(w.shallow_clone(), "fp32".into(), &a);
        p.program(Some(&calibration));
        let fresh = mean_abs_output(&mut p, &held_out);
        p.set_time(Some(86_400.0));
        let raw = mean_abs_output(&mut p, &held_out);
        assert!(raw / fresh < 0.8, "PCM drift should shrink the output at 1 day: {raw} vs {fresh}");
        a.drift_compensation = Some(mode);
        let mut p = AnalogPath::new(w.shallow_clone(), "fp32".into(), &a);
        p.program(Some(&calibration));
        let fresh = mean_abs_output(&mut p, &held_out);
        p.set_time(Some(86_400.0));
        let comp = mean_abs_output(&mut p, &held_out);
        assert!(rel(comp, fresh) < 0.02, "{mode:?}: compensated {comp} vs fresh {fresh}");
    }
}

#[test]
fn gq_noise_moments_follow_the_preset() {
    let _rng = rng_lock();
    tch::manual_seed(16);
    let mut a = analog_of("pcm");
    a.drift_compensation = Some(DriftCompensation::None);
    for fit_time in [None, Some(86_400.0)] {
        a.fit_time = fit_time;
        let dm = DeviceModel::from_analog(&a);
        let w_max = 1.0;
        for q in [0.2, -0.6, 0.9] {
            let (mu, var) = dm.level_moments(q, w_max);
            let w = Tensor::full([N], q, (Kind::Float, Device::Cpu));
            let mut pa = a.clone();
            pa.t_inference = vec![fit_time.unwrap_or(0.0)];
            if fit_time.is_none() {
                pa.drift = Drift::None;
                pa.read_noise = ReadNoise::None;
            }
            // The window's full scale is w_max: one weight at w_max fixes alpha.
            let w = Tensor::cat(&[w, Tensor::from_slice(&[w_max as f32])], 0);
            let mut p = AnalogPath::new(w, "q".into(), &pa);
            p.program(None);
            let got = read_weights(&mut p).narrow(0, 0, N);
            let (m, s) = stats(&got);
            assert!(rel(m, mu) < 0.02, "t={fit_time:?} q={q}: mean {m} vs closed form {mu}");
            assert!(rel(s, var.sqrt()) < 0.05, "t={fit_time:?} q={q}: std {s} vs {}", var.sqrt());
        }
    }
    assert!(matches!(a.programming_noise, ProgrammingNoise::Polynomial { .. }));
}

/// Synthetic measurements from the pcm preset: `per_level` devices at each target, read at
/// absolute times after programming (the first is the preset's t0 = 20 s).
fn synthetic_pcm(per_level: i64) -> Vec<Measurement> {
    let a = analog_of("pcm");
    let dm = DeviceModel::from_analog(&a);
    let times = [20.0, 60.0, 3600.0, 86_400.0, 2.592e6, 3.1536e7];
    let mut out = Vec::new();
    let mut id = 0;
    // Dense below 5 µS, where the PCM drift statistics depend on g (above, they are clamped).
    for g in [1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.5, 8.0, 10.0, 13.0, 16.0, 20.0, 25.0] {
        let target = Tensor::full([per_level], g, (Kind::Float, Device::Cpu));
        let prog = dm.program(&target);
        let nu = dm.draw_nu(&target).unwrap();
        let reads: Vec<Vec<f64>> = times
            .iter()
            .map(|t| {
                Vec::<f64>::try_from(
                    dm.at_time(&prog, Some(&nu), Some(t - 20.0)).to_kind(Kind::Double),
                )
                .unwrap()
            })
            .collect();
        for (t, r) in times.iter().zip(&reads) {
            for (d, g_read) in r.iter().enumerate() {
                out.push(Measurement {
                    g_target: g,
                    g: *g_read,
                    t: *t,
                    device: Some(format!("d{}", id + d)),
                });
            }
        }
        id += per_level as usize;
    }
    out
}

#[test]
fn fit_device_recovers_the_pcm_preset() {
    let _rng = rng_lock();
    tch::manual_seed(17);
    let ms = synthetic_pcm(800);
    let opts = FitOptions { g_max: Some(25.0), ..Default::default() };
    let f = fit(&ms, &opts, std::path::Path::new("synthetic.csv")).unwrap();
    let truth = DeviceModel::from_analog(&analog_of("pcm"));
    let got = DeviceModel::from_analog(&f.to_analog());
    for g in [5.0, 12.0, 20.0] {
        let (s, w) = (got.sigma_at(g), truth.sigma_at(g));
        assert!(rel(s, w) < 0.05, "sigma({g}) {s} vs {w}");
    }
    for g in [2.0, 4.0, 16.0] {
        let (m, s) = got.nu_stats(g).unwrap();
        let (mw, sw) = truth.nu_stats(g).unwrap();
        assert!(rel(m, mw) < 0.10, "nu mean({g}) {m} vs {mw}");
        assert!(rel(s, sw) < 0.10, "nu std({g}) {s} vs {sw}");
    }
    // The written preset loads through `preset_file`.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("fit.yaml");
    std::fs::write(&p, f.to_yaml("synthetic")).unwrap();
    let cfg = Config::from_yaml_str(
        &format!("analog: {{preset_file: {}}}\n", p.display()),
        "t.yaml",
        &[],
    )
    .unwrap();
    assert!(matches!(cfg.analog.drift, Drift::GPowerLaw { .. }));
}

fn write_csv(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().write_all(text.as_bytes()).unwrap();
    p
}

#[test]
fn bad_csvs_are_named_errors() {
    let d = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, bool, &[&str]); 5] = [
        ("missing.csv", "g_target,t,device\n1,20,a\n", true, &["missing.csv", "line 1", "`g`"]),
        (
            "nan.csv",
            "g_target,g,t,device\n1,1.1,20,a\n2,NaN,20,b\n",
            true,
            &["nan.csv", "line 3", "`g`", "finite"],
        ),
        (
            "neg.csv",
            "g_target,g,t,device\n1,1.1,20,a\n-2,1,20,b\n",
            true,
            &["neg.csv", "line 3", "`g_target`", "negative"],
        ),
        (
            "one_time.csv",
            "g_target,g,t,device\n1,1.1,20,a\n2,2.2,20,b\n",
            true,
            &["one_time.csv", "`t`", "one time point"],
        ),
        (
            "text.csv",
            "g_target,g,t\n1,abc,20\n",
            false,
            &["text.csv", "line 2", "`g`", "not a number"],
        ),
    ];
    for (name, text, drift, needles) in cases {
        let p = write_csv(d.path(), name, text);
        let e = read_csv(&p, drift).unwrap_err().to_string();
        for n in needles {
            assert!(e.contains(n), "{name}: lacks `{n}`: {e}");
        }
    }
    // Through the CLI: exit code 2, one line, no panic.
    let p = write_csv(d.path(), "neg2.csv", "g_target,g,t\n1,-1,20\n");
    let o = run_gqcim(&[
        "fit-device",
        "--csv",
        p.to_str().unwrap(),
        "--out",
        d.path().join("x.yaml").to_str().unwrap(),
        "--no-drift",
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("neg2.csv") && e.contains("line 2") && !e.contains("panicked"), "{e}");
    assert!(!d.path().join("x.yaml").exists());
}

#[test]
fn the_gaussian_preset_is_the_explicit_config_and_configs_use_presets() {
    let via = analog_of("gaussian");
    let explicit = Config::from_yaml_str(
        "analog: {g_min: 1.0, g_max: 25.0, tile_rows: 256, tile_cols: 256, programming_noise: {type: gaussian, sigma: 0.02}}\n",
        "t.yaml",
        &[],
    )
    .unwrap()
    .analog;
    assert_eq!(AnalogConfig { preset: None, ..via }, explicit);
    let root = repo_root();
    let c = Config::load(&root.join("configs/classify_fmnist.yaml"), &[]).unwrap();
    assert_eq!(c.analog.preset.as_deref(), Some("ideal"));
    assert_eq!((c.analog.g_min, c.analog.g_max, c.analog.tile_rows), (1.0, 25.0, 256));
}

/// The fused CPU passes of a trial's programming (`device/fused.rs`) give the tensor ops'
/// conductances bit for bit: programming noise (per-device and polynomial sigma), both
/// clips, faults at g_min and at g_max, drift exponents and the drift itself, on targets
/// that cover the window, its edges and beyond (so every clip and fault branch is taken).
#[test]
fn fused_programming_equals_the_tensor_ops() {
    use gqcim::config::{Clip, StuckAt};
    use gqcim::kernels::Passes;
    let _rng = rng_lock();
    let g = Tensor::rand([4096], (Kind::Float, Device::Cpu)) * 30.0 - 2.0;
    let stuck = |a, b| StuckAt { at_gmin: a, at_gmax: b };
    let mut cases = Vec::new();
    for preset in ["pcm", "reram", "gaussian"] {
        let a = analog_of(preset);
        cases.push((preset.to_string(), DeviceModel::from_analog(&a)));
    }
    let base = DeviceModel::from_analog(&analog_of("gaussian"));
    cases.push((
        "faults at both ends, clip at zero".into(),
        DeviceModel { stuck: stuck(0.2, 0.1), clip: Clip::NonNegative, ..base.clone() },
    ));
    cases.push((
        "faults at g_max only".into(),
        DeviceModel { stuck: stuck(0.0, 0.3), ..base.clone() },
    ));
    cases.push(("no faults".into(), DeviceModel { stuck: stuck(0.0, 0.0), ..base.clone() }));
    cases.push((
        "polynomial sigma, power-law drift".into(),
        DeviceModel {
            noise: ProgrammingNoise::Polynomial { coeffs: vec![0.3, 0.05, -0.001] },
            drift: Drift::PowerLaw {
                nu_mean: 0.05,
                nu_std: 0.04,
                t0: 1.0,
                t: 86_400.0,
                compensation: true,
            },
            stuck: stuck(0.05, 0.02),
            ..base
        },
    ));
    for (what, dm) in cases {
        let run = |passes| {
            tch::manual_seed(3);
            let p = dm.program_with_faults(&g, passes);
            let nu = dm.draw_nu_with(&g, passes);
            let t = dm.at_time_with(&p, nu.as_ref(), Some(3.0e7), passes);
            (p, nu, t)
        };
        let (p1, nu1, t1) = run(Passes::FusedCpu);
        let (p2, nu2, t2) = run(Passes::TensorOps);
        let same = |a: &Tensor, b: &Tensor| a.equal(b);
        assert!(same(&p1, &p2), "{what}: programmed conductances differ");
        match (&nu1, &nu2) {
            (Some(a), Some(b)) => assert!(same(a, b), "{what}: drift exponents differ"),
            (None, None) => {}
            _ => panic!("{what}: drift exponents on one path only"),
        }
        assert!(same(&t1, &t2), "{what}: drifted conductances differ");
        // The checks are not vacuous: the programming moved the targets, faults hit.
        assert!(!same(&p1, &g), "{what}: programming changed nothing");
    }
}

/// A read with fresh Gaussian read noise in one fused pass gives the same bits as the tensor
/// ops given the same normals (those of `normal_pairs` under the read's seed): per-layer and
/// per-column alpha and drift compensation, the window clip and the non-negative clip, on
/// conductances that cover the window and its edges (so both clips are taken).
#[test]
fn fused_read_equals_the_tensor_ops() {
    use gqcim::config::{Clip, ReadNoise};
    use gqcim::device::normal::{draw_seed, normal_pairs};
    use gqcim::kernels::Passes;
    let _rng = rng_lock();
    let f = (Kind::Float, Device::Cpu);
    let shape = [24i64, 3, 3, 3];
    let g_pos = Tensor::rand(shape, f) * 30.0 - 2.0;
    let g_neg = Tensor::rand(shape, f) * 30.0 - 2.0;
    let sigma = 0.2;
    let base = DeviceModel {
        read: ReadNoise::Gaussian { sigma },
        ..DeviceModel::from_analog(&analog_of("gaussian"))
    };
    let per_layer = Tensor::from(0.37f32);
    let per_column = Tensor::rand([24, 1, 1, 1], f) + 0.5;
    let factors = [(&per_layer, &per_layer), (&per_column, &per_layer), (&per_column, &per_column)];
    for clip in [Clip::Window, Clip::NonNegative] {
        let dm = DeviceModel { clip, ..base.clone() };
        let (lo, hi) = dm.bounds();
        for (alpha, gdc) in factors {
            tch::manual_seed(11);
            let fused = dm.read_pair(&g_pos, &g_neg, alpha, gdc, Passes::FusedCpu);
            tch::manual_seed(11);
            let (z_pos, z_neg) = normal_pairs(draw_seed(), g_pos.numel());
            let z = |v: Vec<f32>| Tensor::from_slice(&v).reshape(shape);
            let read = |g: &Tensor, z: Tensor| {
                let g = g * (z * sigma + 1.0);
                if hi.is_finite() {
                    g.clamp(lo, hi)
                } else {
                    g.clamp_min(lo)
                }
            };
            let by_ops = (read(&g_pos, z(z_pos)) - read(&g_neg, z(z_neg))) * alpha * gdc;
            let what = format!("{clip:?}, alpha {:?}, gdc {:?}", alpha.size(), gdc.size());
            assert!(fused.equal(&by_ops), "{what}: fused and tensor-op reads differ");
            // Not vacuous: the noise moved the weights off the noiseless read.
            let noiseless =
                (read(&g_pos, g_pos.zeros_like()) - read(&g_neg, g_neg.zeros_like())) * alpha * gdc;
            assert!(!fused.allclose(&noiseless, 1e-3, 1e-3, false), "{what}: no read noise");
        }
    }
}

/// The read noise's normals (`device/normal.rs`) are standard normal: mean, variance,
/// skewness, kurtosis and both tails of 2 M draws within five standard errors, the
/// Kolmogorov–Smirnov distance to Φ below the 0.1% critical value, the two numbers of a
/// pair and of neighbouring counters uncorrelated, another seed another stream, the same
/// seed the same one.
#[test]
fn read_noise_normals_are_standard_normal() {
    use gqcim::device::normal::normal_pairs;
    let n = 1_000_000;
    let (a, b) = normal_pairs(0x5EED, n);
    let z: Vec<f64> = a.iter().chain(&b).map(|&v| v as f64).collect();
    let m = z.len() as f64;
    let mean = z.iter().sum::<f64>() / m;
    let moment = |k: i32| z.iter().map(|v| (v - mean).powi(k)).sum::<f64>() / m;
    let (var, skew, kurt) = (moment(2), moment(3), moment(4));
    let se = |sd: f64| 5.0 * sd / m.sqrt();
    assert!(mean.abs() < se(1.0), "mean {mean}");
    assert!((var - 1.0).abs() < se(2f64.sqrt()), "variance {var}");
    assert!(skew.abs() < se(6f64.sqrt()), "skewness {skew}");
    assert!((kurt - 3.0).abs() < se(24f64.sqrt()), "kurtosis {kurt}");
    for (k, p) in [(2.0, 0.045_500_263_9), (3.0, 0.002_699_796_1)] {
        let tail = z.iter().filter(|v| v.abs() > k).count() as f64 / m;
        let sd = (p * (1.0 - p) / m).sqrt();
        assert!((tail - p).abs() < 5.0 * sd, "P(|z| > {k}) = {tail}, want {p}");
    }
    // Kolmogorov–Smirnov against Φ (erf by Abramowitz & Stegun 7.1.26, error < 1.5e-7).
    let erf = |x: f64| {
        let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
        let y = 1.0
            - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736)
                * t
                + 0.254_829_592)
                * t
                * (-x * x).exp();
        y.copysign(x)
    };
    let phi = |x: f64| 0.5 * (1.0 + erf(x / 2f64.sqrt()));
    let mut sorted = z.clone();
    sorted.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let d = sorted
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = phi(x);
            (f - i as f64 / m).abs().max(((i + 1) as f64 / m - f).abs())
        })
        .fold(0.0, f64::max);
    assert!(d < 1.95 / m.sqrt(), "Kolmogorov-Smirnov distance {d}");
    let corr = |x: &[f32], y: &[f32]| {
        x.iter().zip(y).map(|(&p, &q)| p as f64 * q as f64).sum::<f64>() / x.len() as f64
    };
    assert!(corr(&a, &b).abs() < se(1.0), "pair correlation {}", corr(&a, &b));
    assert!(corr(&a[1..], &a[..n - 1]).abs() < se(1.0), "lag-1 correlation");
    let (again, _) = normal_pairs(0x5EED, 1000);
    assert_eq!(again, a[..1000].to_vec(), "same seed, same draws");
    let (other, _) = normal_pairs(0x5EEE, 1000);
    assert!(corr(&other, &a[..1000]).abs() < 0.2, "another seed, another stream");
}

/// The programming draws (`randn_like`, `rand_like` of `device/normal.rs`, f32 on the CPU):
/// standard normal and uniform on [0, 1) in mean, variance and Kolmogorov–Smirnov distance
/// (uniform), shaped like their template, fixed by `tch::manual_seed`, and libtorch's own
/// draws for other kinds.
#[test]
fn programming_draws_are_standard() {
    use gqcim::device::normal::{rand_like, randn_like};
    let _rng = rng_lock();
    let t = Tensor::zeros([1001, 999], (Kind::Float, Device::Cpu));
    let m = t.numel() as f64;
    tch::manual_seed(4);
    let z = randn_like(&t);
    let u = rand_like(&t);
    assert_eq!(z.size(), t.size());
    let stat =
        |x: &Tensor| (x.mean(Kind::Double).double_value(&[]), x.var(false).double_value(&[]));
    let (zm, zv) = stat(&z);
    assert!(zm.abs() < 5.0 / m.sqrt(), "normal mean {zm}");
    assert!((zv - 1.0).abs() < 5.0 * 2f64.sqrt() / m.sqrt(), "normal variance {zv}");
    let (um, uv) = stat(&u);
    assert!((um - 0.5).abs() < 5.0 * (1.0 / 12f64).sqrt() / m.sqrt(), "uniform mean {um}");
    assert!((uv - 1.0 / 12.0).abs() < 5.0 * (1.0 / 180f64).sqrt() / m.sqrt(), "uniform var {uv}");
    let lo = u.min().double_value(&[]);
    let hi = u.max().double_value(&[]);
    assert!((0.0..1.0).contains(&lo) && hi < 1.0, "uniforms in [{lo}, {hi}]");
    let mut v: Vec<f32> = Vec::try_from(u.flatten(0, -1)).unwrap();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let d = v
        .iter()
        .enumerate()
        .map(|(i, &x)| (x as f64 - i as f64 / m).abs().max(((i + 1) as f64 / m - x as f64).abs()))
        .fold(0.0, f64::max);
    assert!(d < 1.95 / m.sqrt(), "uniform Kolmogorov-Smirnov distance {d}");
    // The two halves of the normals (the pairs' first and second numbers) uncorrelated.
    let flat = z.flatten(0, -1);
    let half = (t.numel() / 2) as i64;
    let c = (flat.narrow(0, 0, half) * flat.narrow(0, half, half)).mean(Kind::Double);
    assert!(c.double_value(&[]).abs() < 5.0 / (half as f64).sqrt(), "pair correlation");
    tch::manual_seed(4);
    assert!(randn_like(&t).equal(&z), "manual_seed fixes the normals");
    assert!(!randn_like(&t).equal(&z), "the next call draws new ones");
    let d64 = Tensor::zeros([10], (Kind::Double, Device::Cpu));
    assert_eq!(randn_like(&d64).kind(), Kind::Double, "other kinds: libtorch's draws");
}

/// `analog.random: libtorch` draws libtorch's own numbers (the stream the peer check's Python
/// replicas reproduce); the default counter-based generator draws others from the same seed.
#[test]
fn random_source_libtorch_keeps_libtorchs_draws() {
    use gqcim::config::{RandomSource, StuckAt};
    let _rng = rng_lock();
    let g = Tensor::rand([5000], (Kind::Float, Device::Cpu)) * 24.0 + 1.0;
    let noise = ProgrammingNoise::Gaussian { sigma: 0.05 };
    let base = DeviceModel::programming_only(1.0, 25.0, noise, StuckAt::default());
    let torch = DeviceModel { random: RandomSource::Libtorch, ..base.clone() };
    tch::manual_seed(2);
    let want = (&g + g.randn_like() * (0.05 * 24.0)).clamp(1.0, 25.0);
    tch::manual_seed(2);
    assert!(torch.program(&g).equal(&want), "libtorch: the same draws as randn_like");
    tch::manual_seed(2);
    let counter = base.program(&g);
    assert!(!counter.equal(&want), "counter: other draws");
    let sd = |t: &Tensor| (t - &g).std(false).double_value(&[]);
    assert!((sd(&counter) / sd(&want) - 1.0).abs() < 0.05, "counter: the same spread");
}
