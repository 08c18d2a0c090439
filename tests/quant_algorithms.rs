//! Tests of the pure quantization algorithms: Lloyd-Max ("gq"), exact 1-D k-means ("gq-exact"),
//! the uniform baselines and the level helpers.

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use gqcim::quant::{
    exact_kmeans_1d, lloyd_max, lloyd_max_per_channel, lloyd_max_with_init, quantize_to_levels,
    sqnr_db, squared_error, thresholds, uniform_minmax, uniform_mse, LloydOptions, LloydResult,
};
use tch::{Device, Kind, Tensor};

const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

/// libtorch's generator is global and tests run in parallel: hold this lock from seeding until
/// the data are drawn so every test sees the same numbers on every run.
static RNG: Mutex<()> = Mutex::new(());

fn seed(seed: i64) -> MutexGuard<'static, ()> {
    let guard = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    guard
}

fn gaussian(n: i64, seed_value: i64) -> Tensor {
    let _rng = seed(seed_value);
    Tensor::randn([n], CPU)
}

/// Laplace(0, 1) by inverse CDF: x = -sign(u) ln(1 - 2|u|), u ~ U(-1/2, 1/2).
fn laplacian(n: i64, seed_value: i64) -> Tensor {
    let _rng = seed(seed_value);
    let u = Tensor::rand([n], CPU) - 0.5;
    let tail = (u.abs() * -2.0 + 1.0).clamp_min(1e-12).log();
    -u.sign() * tail
}

/// Heavy-tailed: 95% N(0, 1) and 5% N(0, 20^2).
fn heavy_mixture(n: i64, seed_value: i64) -> Tensor {
    let _rng = seed(seed_value);
    let base = Tensor::randn([n], CPU);
    let wide = Tensor::rand([n], CPU).lt(0.05);
    let scale = wide.to_kind(Kind::Float) * 19.0 + 1.0;
    base * scale
}

fn distributions() -> Vec<(&'static str, Tensor)> {
    vec![
        ("gaussian", gaussian(50_000, 1)),
        ("laplacian", laplacian(50_000, 2)),
        ("heavy-mixture", heavy_mixture(50_000, 3)),
    ]
}

fn distinct_count(t: &Tensor) -> usize {
    t.reshape([-1]).internal_unique(true, false).0.numel()
}

fn mean_f64(t: &Tensor) -> f64 {
    t.to_kind(Kind::Double).mean(Kind::Double).double_value(&[])
}

fn assert_valid(r: &LloydResult, n: usize, what: &str) {
    assert_eq!(r.levels.len(), n, "{what}: level count");
    assert!(r.levels.iter().all(|v| v.is_finite()), "{what}: non-finite level in {:?}", r.levels);
    assert!(
        r.levels.windows(2).all(|p| p[0] < p[1]),
        "{what}: levels not strictly ascending: {:?}",
        r.levels
    );
    assert_eq!(r.thresholds, thresholds(&r.levels), "{what}: thresholds");
    assert!(r.distortion.is_finite(), "{what}: distortion {}", r.distortion);
    // gq-exact's history starts with its DP partitions' distortions, then one entry per iteration.
    assert!(
        (r.iterations..=r.iterations + 2).contains(&r.history.len()),
        "{what}: {} history entries for {} iterations",
        r.history.len(),
        r.iterations
    );
}

#[test]
fn thresholds_and_quantize_to_levels() {
    assert_eq!(thresholds(&[-1.0, 0.0, 3.0]), vec![-0.5, 1.5]);
    let w = Tensor::from_slice(&[-2.0f32, -0.6, -0.5, -0.4, 1.4, 1.6, 9.0]).reshape([7, 1]);
    let q = quantize_to_levels(&w, &[-1.0, 0.0, 3.0]);
    assert_eq!(q.size(), vec![7, 1]);
    assert_eq!(q.kind(), Kind::Float);
    let got = Vec::<f32>::try_from(&q.reshape([-1])).unwrap();
    // -0.5 sits on a threshold: ties go to the lower level.
    assert_eq!(got, vec![-1.0, -1.0, -1.0, 0.0, 0.0, 3.0, 3.0]);
    let err = squared_error(&w, &[-1.0, 0.0, 3.0]);
    let want = 1.0 + 0.16 + 0.25 + 0.16 + 1.96 + 1.96 + 36.0;
    assert!((err - want).abs() < 1e-5, "squared error {err} vs {want}");
    let signal: f64 = [4.0, 0.36, 0.25, 0.16, 1.96, 2.56, 81.0].iter().sum();
    let sqnr = sqnr_db(&w, &[-1.0, 0.0, 3.0]);
    assert!((sqnr - 10.0 * (signal / want).log10()).abs() < 1e-5, "sqnr {sqnr}");
    let exact = Tensor::from_slice(&[0.0f32, 3.0]);
    assert_eq!(sqnr_db(&exact, &[0.0, 3.0]), f64::INFINITY);
}

#[test]
fn uniform_data_gives_evenly_spaced_levels() {
    // The empirical optimum of a uniform sample is only loosely pinned down (flat objective):
    // with 200k values its gaps wander by ~2% at n = 16, hence 1M values.
    let rng = seed(7);
    let w = Tensor::rand([1_000_000], CPU) * 2.0 - 1.0;
    drop(rng);
    for n in [2usize, 4, 5, 8, 16] {
        let r = lloyd_max(&w, n, &LloydOptions::default()).unwrap();
        assert_valid(&r, n, "uniform");
        let spacing: Vec<f64> = r.levels.windows(2).map(|p| p[1] - p[0]).collect();
        let mean_gap = spacing.iter().sum::<f64>() / spacing.len() as f64;
        for (i, s) in spacing.iter().enumerate() {
            assert!(
                (s / mean_gap - 1.0).abs() < 0.02,
                "n={n}: gap {i} is {s}, mean gap {mean_gap}"
            );
        }
        for (i, l) in r.levels.iter().enumerate() {
            let want = -1.0 + (2 * i + 1) as f64 / n as f64;
            assert!((l - want).abs() < 0.01, "n={n}: level {i} = {l}, want {want}");
        }
    }
}

#[test]
fn two_clusters_give_cluster_means() {
    let rng = seed(11);
    let a = Tensor::randn([3000], CPU) * 0.1 - 3.0;
    let b = Tensor::randn([5000], CPU) * 0.2 + 5.0;
    drop(rng);
    let w = Tensor::cat(&[&b, &a], 0);
    let r = lloyd_max(&w, 2, &LloydOptions::default()).unwrap();
    assert_valid(&r, 2, "clusters");
    let (ma, mb) = (mean_f64(&a), mean_f64(&b));
    assert!((r.levels[0] - ma).abs() < 1e-6, "{} vs {ma}", r.levels[0]);
    assert!((r.levels[1] - mb).abs() < 1e-6, "{} vs {mb}", r.levels[1]);
    let e = exact_kmeans_1d(&w, 2, 4096).unwrap();
    assert!((e.levels[0] - ma).abs() < 1e-6, "exact {} vs {ma}", e.levels[0]);
    assert!((e.levels[1] - mb).abs() < 1e-6, "exact {} vs {mb}", e.levels[1]);
}

#[test]
fn distortion_history_is_non_increasing() {
    for (name, w) in distributions() {
        for n in [2usize, 3, 4, 5, 6, 8, 16, 256] {
            let r = lloyd_max(&w, n, &LloydOptions::default()).unwrap();
            let what = format!("{name} n={n}");
            assert_valid(&r, n, &what);
            assert!(!r.history.is_empty(), "{what}: empty history");
            for (i, p) in r.history.windows(2).enumerate() {
                assert!(
                    p[1] <= p[0] * (1.0 + 1e-9),
                    "{what}: distortion rose at iteration {}: {} -> {}",
                    i + 1,
                    p[0],
                    p[1]
                );
            }
            // The reported distortion is the directly summed error of the final levels and the
            // tensor-side helper must agree with it.
            let direct = squared_error(&w, &r.levels);
            assert!(
                (direct - r.distortion).abs() <= 1e-9 * direct,
                "{what}: distortion {} vs squared_error {direct}",
                r.distortion
            );
            let last = *r.history.last().unwrap();
            assert!(
                r.distortion <= last * (1.0 + 1e-9),
                "{what}: final {} above last history {last}",
                r.distortion
            );
        }
    }
}

#[test]
fn exact_is_never_worse_than_lloyd() {
    for (name, w) in distributions() {
        for n in [2usize, 3, 4, 8, 16] {
            let gq = lloyd_max(&w, n, &LloydOptions::default()).unwrap();
            let ex = exact_kmeans_1d(&w, n, 4096).unwrap();
            let what = format!("{name} n={n}");
            assert_valid(&ex, n, &what);
            assert!(
                ex.distortion <= gq.distortion * (1.0 + 1e-9),
                "{what}: exact {} > gq {}",
                ex.distortion,
                gq.distortion
            );
            for p in ex.history.windows(2) {
                assert!(p[1] <= p[0] * (1.0 + 1e-9), "{what}: exact history rose");
            }
            let direct = squared_error(&w, &ex.levels);
            assert!(
                (direct - ex.distortion).abs() <= 1e-9 * direct,
                "{what}: exact distortion {} vs squared_error {direct}",
                ex.distortion
            );
        }
    }
}

#[test]
fn exact_matches_brute_force_optimum() {
    // Four clusters of very different sizes, n = 3: the DP (plus refinement) must reach the
    // global optimum, found here by trying every pair of split points of the sorted data.
    let mut v: Vec<f32> = (0..1000).map(|i| (i as f32) * 1e-4).collect();
    v.extend((0..10).map(|i| 10.0 + i as f32 * 1e-3));
    v.extend((0..10).map(|i| 11.0 + i as f32 * 1e-3));
    v.extend((0..50).map(|i| 30.0 + i as f32 * 1e-3));
    let w = Tensor::from_slice(&v);
    let mut sorted: Vec<f64> = v.iter().map(|&x| x as f64).collect();
    sorted.sort_by(f64::total_cmp);
    // Brute force with a direct O(len) cost per cell would be 1e9 operations; prefix sums of
    // the deviations from the overall mean keep it O(len^2) and accurate.
    let mu = sorted.iter().sum::<f64>() / sorted.len() as f64;
    let (mut p1, mut p2) = (vec![0.0], vec![0.0]);
    for x in &sorted {
        p1.push(p1.last().unwrap() + (x - mu));
        p2.push(p2.last().unwrap() + (x - mu) * (x - mu));
    }
    let cost = |a: usize, b: usize| {
        let (s1, s2) = (p1[b] - p1[a], p2[b] - p2[a]);
        s2 - s1 * s1 / (b - a) as f64
    };
    let len = sorted.len();
    let mut best = f64::INFINITY;
    for i in 1..len {
        for j in i + 1..len {
            best = best.min(cost(0, i) + cost(i, j) + cost(j, len));
        }
    }
    let ex = exact_kmeans_1d(&w, 3, 4096).unwrap();
    assert!(
        (ex.distortion - best).abs() <= 1e-6 * best,
        "exact {} vs brute force {best}",
        ex.distortion
    );
}

#[test]
fn gq_beats_uniform_baselines() {
    let tensors = [("gaussian", gaussian(20_000, 21)), ("laplacian", laplacian(20_000, 22))];
    for (name, w) in &tensors {
        for n in [2usize, 3, 4, 5, 6, 8, 16] {
            let what = format!("{name} n={n}");
            let gq = lloyd_max(w, n, &LloydOptions::default()).unwrap();
            let e_gq = squared_error(w, &gq.levels);
            let mm = uniform_minmax(w, n).unwrap();
            let (mse, c) = uniform_mse(w, n).unwrap();
            let e_mm = squared_error(w, &mm);
            let e_mse = squared_error(w, &mse);
            let max_abs = w.abs().max().double_value(&[]);
            assert_eq!(mm.len(), n, "{what}");
            assert_eq!(mse.len(), n, "{what}");
            assert!(c > 0.0 && c <= max_abs, "{what}: clip {c} outside (0, {max_abs}]");
            assert!((mm[0] + max_abs).abs() < 1e-12 && (mm[n - 1] - max_abs).abs() < 1e-12);
            if n % 2 == 1 {
                assert_eq!(mm[n / 2], 0.0, "{what}: 0 must be a min-max level");
                assert_eq!(mse[n / 2], 0.0, "{what}: 0 must be an MSE level");
            }
            assert!(e_mse <= e_mm * (1.0 + 1e-9), "{what}: mse {e_mse} > minmax {e_mm}");
            assert!(e_gq <= e_mm * (1.0 + 1e-9), "{what}: gq {e_gq} > minmax {e_mm}");
            assert!(e_gq <= e_mse * (1.0 + 1e-9), "{what}: gq {e_gq} > mse {e_mse}");
        }
    }
}

#[test]
fn quantized_tensor_holds_exactly_n_values() {
    let w = gaussian(30_000, 31).reshape([300, 100]);
    for n in [2usize, 3, 4, 5, 6, 8, 16, 256] {
        let r = lloyd_max(&w, n, &LloydOptions::default()).unwrap();
        let q = quantize_to_levels(&w, &r.levels);
        assert_eq!(q.size(), w.size());
        assert_eq!(distinct_count(&q), n, "gq n={n}");
        let e = exact_kmeans_1d(&w, n, 4096).unwrap();
        assert_eq!(distinct_count(&quantize_to_levels(&w, &e.levels)), n, "exact n={n}");
    }
}

#[test]
fn per_channel_slices_hold_exactly_n_values() {
    let rng = seed(41);
    let w = Tensor::randn([16, 8, 3, 3], CPU) * 0.1;
    drop(rng);
    for n in [3usize, 4, 8] {
        let fits = lloyd_max_per_channel(&w, n, &LloydOptions::default()).unwrap();
        assert_eq!(fits.len(), 16);
        for (c, r) in fits.iter().enumerate() {
            assert_valid(r, n, &format!("channel {c} n={n}"));
            let slice = w.get(c as i64);
            let q = quantize_to_levels(&slice, &r.levels);
            assert_eq!(distinct_count(&q), n, "channel {c} n={n}");
            // Same answer as fitting the slice on its own.
            let alone = lloyd_max(&slice, n, &LloydOptions::default()).unwrap();
            assert_eq!(alone.levels, r.levels, "channel {c} n={n}");
        }
    }
}

#[test]
fn gaps_and_empty_cells_are_reseeded() {
    // 1000 values on [0, 1) plus 3 outliers at 100.
    let rng = seed(51);
    let w = Tensor::cat(&[Tensor::rand([1000], CPU), Tensor::full([3], 100.0, CPU)], 0);
    let dup = Tensor::cat(&[Tensor::zeros([900], CPU), Tensor::rand([100], CPU)], 0);
    drop(rng);
    let check = |r: &LloydResult, what: &str| {
        assert_valid(r, 8, what);
        assert_eq!(distinct_count(&quantize_to_levels(&w, &r.levels)), 8, "{what}");
        for p in r.history.windows(2) {
            assert!(p[1] <= p[0] * (1.0 + 1e-9), "{what}: history rose {p:?}");
        }
    };
    let r = lloyd_max(&w, 8, &LloydOptions::default()).unwrap();
    check(&r, "quantile start");
    assert_eq!(r.levels[7], 100.0, "the outliers form their own cell");
    check(&exact_kmeans_1d(&w, 8, 4096).unwrap(), "exact");
    // Two bins hold fewer atoms than levels: the DP gives 2 cells, re-seeding makes the other 6.
    let sw = gqcim::quant::SortedWeights::from_tensor(&w).unwrap();
    check(&gqcim::quant::exact_kmeans_1d_binned(&sw, 8, 2).unwrap(), "exact, 2 bins");
    // Start with levels in the empty gap: only one cell below 1 and one at 100 are occupied,
    // so six cells are empty after the first assignment and must be re-seeded.
    let init = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0];
    let r = lloyd_max_with_init(&w, 8, &init, &LloydOptions::default()).unwrap();
    check(&r, "gap start");
    // A start with heavy duplicates (fewer distinct initial levels than n).
    let r = lloyd_max(&dup, 8, &LloydOptions::default()).unwrap();
    assert_valid(&r, 8, "duplicates");
    assert_eq!(distinct_count(&quantize_to_levels(&dup, &r.levels)), 8);
    // The 900 zeros dominate the lowest cell (which may also take a few tiny values).
    assert!(r.levels[0] < 0.01, "lowest level {}", r.levels[0]);
}

#[test]
fn invalid_inputs_are_errors() {
    let w = gaussian(100, 61);
    let opts = LloydOptions::default();
    let err = |r: Result<LloydResult, String>| r.expect_err("expected an error");
    let e = err(lloyd_max(&w, 1, &opts));
    assert!(e.contains("n = 1"), "{e}");
    let e = err(lloyd_max(&w, 257, &opts));
    assert!(e.contains("257") && e.contains("256"), "{e}");
    let five = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0]);
    let e = err(lloyd_max(&five, 8, &opts));
    assert!(e.contains("n = 8") && e.contains("only 5 weights"), "{e}");
    let nan = Tensor::from_slice(&[1.0f32, f32::NAN, 3.0, 4.0, 5.0]);
    let e = err(lloyd_max(&nan, 2, &opts));
    assert!(e.contains("1 non-finite") && e.contains("5 weights"), "{e}");
    let inf = Tensor::from_slice(&[1.0f32, f32::NEG_INFINITY, 3.0]);
    assert!(err(lloyd_max(&inf, 2, &opts)).contains("non-finite"));
    let two = Tensor::from_slice(&[1.0f32, 2.0, 1.0, 2.0, 2.0, 1.0]);
    let e = err(lloyd_max(&two, 4, &opts));
    assert!(e.contains("only 2 distinct values") && e.contains("4 levels"), "{e}");
    // The same checks guard the other fitters.
    assert!(err(exact_kmeans_1d(&two, 4, 4096)).contains("only 2 distinct values"));
    assert!(err(exact_kmeans_1d(&nan, 2, 4096)).contains("non-finite"));
    // The uniform grids return gq's error instead of panicking (issue 12).
    for t in [&nan, &inf] {
        let gq_msg = err(lloyd_max(t, 2, &opts));
        assert_eq!(uniform_minmax(t, 2).expect_err("minmax on non-finite"), gq_msg);
        assert_eq!(uniform_mse(t, 2).expect_err("mse on non-finite"), gq_msg);
    }
    assert!(err(exact_kmeans_1d(&w, 1, 4096)).contains("n = 1"));
    let e = lloyd_max_per_channel(
        &Tensor::from_slice(&[1.0f32, 1.0, 2.0, 3.0]).reshape([2, 2]),
        2,
        &opts,
    )
    .expect_err("channel 0 has one distinct value");
    assert!(e.contains("channel 0") && e.contains("only 1 distinct"), "{e}");
    let empty = Tensor::zeros([3, 0], CPU);
    let e = lloyd_max_per_channel(&empty, 2, &opts).expect_err("no weights per channel");
    assert!(e.contains("0 weights"), "{e}");
    let e = err(lloyd_max(&Tensor::zeros([0], CPU), 2, &opts));
    assert!(e.contains("only 0 weights"), "{e}");
}

/// kaiming-normal-ish weights of every ResNet-50 conv and the fc layer (25.5M weights).
fn resnet50_tensors() -> Vec<Tensor> {
    let kaiming = |shape: &[i64]| {
        let fan_in: i64 = shape[1..].iter().product();
        Tensor::randn(shape, CPU) * (2.0 / fan_in as f64).sqrt()
    };
    let _rng = seed(0);
    let mut out = vec![kaiming(&[64, 3, 7, 7])];
    let mut inp = 64i64;
    for (planes, blocks) in [(64i64, 3), (128, 4), (256, 6), (512, 3)] {
        for b in 0..blocks {
            out.push(kaiming(&[planes, inp, 1, 1]));
            out.push(kaiming(&[planes, planes, 3, 3]));
            out.push(kaiming(&[planes * 4, planes, 1, 1]));
            if b == 0 {
                out.push(kaiming(&[planes * 4, inp, 1, 1]));
            }
            inp = planes * 4;
        }
    }
    out.push(kaiming(&[1000, 2048]));
    out
}

#[test]
#[ignore = "timing; run with --ignored --nocapture"]
fn timing_resnet50() {
    let tensors = resnet50_tensors();
    let total: i64 = tensors.iter().map(|t| t.numel() as i64).sum();
    println!("ResNet-50: {} tensors, {total} weights", tensors.len());
    let opts = LloydOptions::default();
    // Warm-up (page faults, libtorch lazy init) on one layer.
    lloyd_max(&tensors[0], 8, &opts).unwrap();

    let t = Instant::now();
    let mut iters = 0;
    for w in &tensors {
        iters += lloyd_max(w, 8, &opts).unwrap().iterations;
    }
    let gq = t.elapsed().as_secs_f64();
    println!("lloyd_max n=8, all layers: {gq:.3} s ({iters} iterations in total)");
    let t = Instant::now();
    for w in &tensors {
        gqcim::quant::gq::fit_gq(w, 8, &LloydOptions::default()).unwrap();
    }
    println!(
        "gq as deployed (Lloyd-Max from quantiles and from uniform-mse, best), all layers: {:.3} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    for w in &tensors {
        exact_kmeans_1d(w, 8, 4096).unwrap();
    }
    println!("exact_kmeans_1d n=8 bins=4096, all layers: {:.3} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    for w in &tensors {
        uniform_mse(w, 8).unwrap();
    }
    println!("uniform_mse n=8, all layers: {:.3} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    for w in &tensors {
        let _ = w.reshape([-1]).sort(0, false);
    }
    println!("reference: libtorch Tensor::sort of all layers: {:.3} s", t.elapsed().as_secs_f64());
}
