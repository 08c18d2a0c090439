//! Variation-aware generalized quantization (gq-noise): reduces to gq without noise, beats
//! gq and uniform-mse in expected error under programming noise (closed form and
//! Monte-Carlo), descends monotonically, and narrows its window as the noise grows.
mod common;
use common::*;
use gqcim::analog::device::{map_to_pairs, program_noise, stuck_at};
use gqcim::config::{ProgrammingNoise, StuckAt};
use gqcim::quant::gq::fit_gq;
use gqcim::quant::levels::thresholds;
use gqcim::quant::noise_aware::{
    expected_error_nearest, expected_error_with, fit_gq_noise, DeviceModel, NoiseFitOptions,
};
use gqcim::quant::paths::quantize_rows;
use gqcim::quant::{uniform_mse, LloydOptions};
use tch::{Device, Kind, Tensor};

fn device(sigma: f64) -> DeviceModel {
    DeviceModel::programming_only(
        1.0,
        25.0,
        if sigma > 0.0 { ProgrammingNoise::Gaussian { sigma } } else { ProgrammingNoise::None },
        StuckAt::default(),
    )
}

fn gaussian(n: i64, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randn([n], (Kind::Float, Device::Cpu)) * 0.05
}

fn laplacian(n: i64, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    let u = Tensor::rand([n], (Kind::Float, Device::Cpu)) - 0.5;
    -(u.sign()) * (-(u.abs() * 2.0)).log1p() * 0.03
}

/// Mean squared error of the read-back weights in one programming draw of every weight.
fn monte_carlo_error(w: &Tensor, levels: &[f64], th: &[f64], dm: &DeviceModel, seed: i64) -> f64 {
    let lv =
        Tensor::from_slice(&levels.iter().map(|v| *v as f32).collect::<Vec<_>>()).view([1, -1]);
    let t = Tensor::from_slice(&th.iter().map(|v| *v as f32).collect::<Vec<_>>()).view([1, -1]);
    let q = quantize_rows(w, &lv, &t);
    tch::manual_seed(seed);
    let m = map_to_pairs(&q, dm.g_min, dm.g_max, false);
    let perturb = |g: &Tensor| {
        stuck_at(&program_noise(g, &dm.noise, dm.g_min, dm.g_max), &dm.stuck, dm.g_min, dm.g_max)
    };
    let read = (perturb(&m.g_pos) - perturb(&m.g_neg)) * &m.alpha;
    (read - w).square().mean(Kind::Double).double_value(&[])
}

#[test]
fn without_noise_gq_noise_equals_gq() {
    let _rng = rng_lock();
    let w = laplacian(20_000, 1);
    for n in [2usize, 3, 4, 8, 16] {
        let gq = fit_gq(&w, n, &LloydOptions::default()).unwrap().0;
        let gn = fit_gq_noise(
            &w,
            n,
            &device(0.0),
            &LloydOptions::default(),
            &NoiseFitOptions::default(),
        )
        .unwrap();
        assert_eq!(gq.len(), gn.levels.len());
        for (a, b) in gq.iter().zip(&gn.levels) {
            assert!((a - b).abs() <= 1e-6, "N={n}: gq {gq:?} vs gq-noise {:?}", gn.levels);
        }
    }
}

#[test]
fn gq_noise_beats_gq_and_uniform_mse_in_expected_error() {
    let _rng = rng_lock();
    let n_w = 100_000;
    for (name, w) in [("gaussian", gaussian(n_w, 2)), ("laplacian", laplacian(n_w, 3))] {
        for sigma in [0.01, 0.02, 0.05] {
            let dm = device(sigma);
            for n in [2usize, 4, 8] {
                let gq = fit_gq(&w, n, &LloydOptions::default()).unwrap().0;
                let uni = uniform_mse(&w, n).unwrap().0;
                let gn =
                    fit_gq_noise(&w, n, &dm, &LloydOptions::default(), &NoiseFitOptions::default())
                        .unwrap();
                // Closed form.
                let e_gq = expected_error_nearest(&w, &gq, &dm).unwrap();
                let e_uni = expected_error_nearest(&w, &uni, &dm).unwrap();
                let e_gn = expected_error_with(&w, &gn.levels, &gn.thresholds, &dm).unwrap();
                assert!(
                    (e_gn - gn.expected_error).abs() <= 1e-9 * e_gn.abs(),
                    "reported vs recomputed"
                );
                assert!(
                    e_gn <= e_gq * (1.0 + 1e-12),
                    "{name} σ={sigma} N={n}: gq-noise {e_gn} > gq {e_gq}"
                );
                assert!(
                    e_gn <= e_uni * (1.0 + 1e-12),
                    "{name} σ={sigma} N={n}: gq-noise {e_gn} > uniform-mse {e_uni}"
                );
                // Monte-Carlo over 1e5 draws agrees with the closed form, and keeps the order
                // (common random numbers; the tolerance is three standard errors).
                let mc_gn = monte_carlo_error(&w, &gn.levels, &gn.thresholds, &dm, 77);
                let mc_gq = monte_carlo_error(&w, &gq, &thresholds(&gq), &dm, 77);
                let mc_uni = monte_carlo_error(&w, &uni, &thresholds(&uni), &dm, 77);
                let closed = e_gn / n_w as f64;
                assert!(
                    (mc_gn / closed - 1.0).abs() < 0.03,
                    "{name} σ={sigma} N={n}: MC {mc_gn} vs closed form {closed}"
                );
                let se = 3.0 * mc_gn * (2.0 / n_w as f64).sqrt();
                assert!(
                    mc_gn <= mc_gq + se,
                    "{name} σ={sigma} N={n}: MC gq-noise {mc_gn} > gq {mc_gq}"
                );
                assert!(
                    mc_gn <= mc_uni + se,
                    "{name} σ={sigma} N={n}: MC gq-noise {mc_gn} > uniform-mse {mc_uni}"
                );
            }
        }
    }
}

#[test]
fn expected_error_never_increases_across_iterations() {
    let _rng = rng_lock();
    let w = laplacian(30_000, 4);
    let dm = DeviceModel {
        noise: ProgrammingNoise::Polynomial { coeffs: vec![0.05, 0.02, 0.001] },
        stuck: StuckAt { at_gmin: 0.01, at_gmax: 0.005 },
        ..device(0.0)
    };
    for n in [2usize, 3, 4, 8] {
        let f = fit_gq_noise(&w, n, &dm, &LloydOptions::default(), &NoiseFitOptions::default())
            .unwrap();
        assert!(f.history.len() >= 2);
        for p in f.history.windows(2) {
            assert!(
                p[1] <= p[0] * (1.0 + 1e-12),
                "N={n}: expected error rose {} -> {}",
                p[0],
                p[1]
            );
        }
        assert!(f.levels.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn window_shrinks_as_noise_grows() {
    let _rng = rng_lock();
    let w = laplacian(50_000, 5);
    let mut last = f64::INFINITY;
    // From σ = 0 (gq) over the range the study uses. Below about 0.5% the window can widen by
    // ~0.2%: the outer level sits at the window edge, where clipping biases its read-back
    // mean inward, and at tiny σ moving it out to cancel that bias costs less than the
    // extra noise; the fit is right to do so, so that range is not part of this check.
    for sigma in [0.0, 0.01, 0.015, 0.02, 0.03, 0.05, 0.08] {
        let f = fit_gq_noise(
            &w,
            8,
            &device(sigma),
            &LloydOptions::default(),
            &NoiseFitOptions::default(),
        )
        .unwrap();
        assert!(f.w_max <= last * (1.0 + 1e-9), "σ={sigma}: window {} wider than {last}", f.w_max);
        last = f.w_max;
    }
    let gq = fit_gq(&w, 8, &LloydOptions::default()).unwrap().0;
    assert!(
        last < 0.8 * gq.iter().fold(0.0f64, |m, q| m.max(q.abs())),
        "no visible narrowing at σ=8%"
    );
}
