//! Generalized quantization ("gq"): the Lloyd-Max scalar quantizer (S. P. Lloyd, "Least squares
//! quantization in PCM", IEEE Trans. IT 1982; J. Max, "Quantizing for minimum distortion",
//! IRE Trans. IT 1960) fitted to the empirical weight distribution of a layer.
//!
//! The weights are sorted once on the host ([`SortedWeights`]); every Lloyd iteration then finds
//! the cell boundaries by binary search on the sorted values and the centroids and distortions
//! from prefix sums, so an iteration costs O(n log N) rather than O(n N).

use tch::{Kind, Tensor};

use super::levels::{check_level_count, thresholds, SortedWeights};

/// Stopping rule of [`lloyd_max`].
#[derive(Debug, Clone, PartialEq)]
pub struct LloydOptions {
    /// Upper bound on assignment + centroid iterations (at least one is always run).
    pub max_iter: usize,
    /// Stop once the relative decrease of the distortion, `(D_prev - D) / D_prev`, is below this.
    pub tol: f64,
}

impl Default for LloydOptions {
    fn default() -> Self {
        Self { max_iter: 100, tol: 1e-6 }
    }
}

/// A fitted scalar quantizer.
#[derive(Debug, Clone, PartialEq)]
pub struct LloydResult {
    /// Exactly `n` distinct levels, ascending.
    pub levels: Vec<f64>,
    /// The `n - 1` decision thresholds (midpoints of `levels`).
    pub thresholds: Vec<f64>,
    /// Sum of squared errors of nearest-level quantization of the weights to `levels`
    /// (summed directly, not from the prefix-sum closed form).
    pub distortion: f64,
    /// Distortion after each iteration's centroid step (closed form from prefix sums);
    /// non-increasing up to rounding.
    pub history: Vec<f64>,
    /// Number of assignment + centroid iterations run.
    pub iterations: usize,
}

/// Extra iterations allowed past `max_iter`/convergence to make every level own at least one
/// weight (see `lloyd_from`).
const EXTRA_ITERS: usize = 64;

/// Fits an `n`-level Lloyd-Max quantizer to the values of `w` (any shape; treated as a flat set),
/// starting from the quantile levels `(i + 0.5) / n`.
///
/// Errors (as messages naming the numbers) when `n` is outside `2..=256`, `n` exceeds the number
/// of weights or of distinct weight values, or `w` holds NaN/inf.
pub fn lloyd_max(w: &Tensor, n: usize, opts: &LloydOptions) -> Result<LloydResult, String> {
    check_level_count(n)?;
    let sw = SortedWeights::from_tensor(w)?;
    lloyd_max_sorted(&sw, n, opts)
}

/// [`lloyd_max`] on already sorted weights (sort once, fit several `n`).
pub fn lloyd_max_sorted(
    sw: &SortedWeights,
    n: usize,
    opts: &LloydOptions,
) -> Result<LloydResult, String> {
    sw.check_fit(n)?;
    let len = sw.len();
    let x = sw.values();
    let init: Vec<f64> = (0..n)
        .map(|i| {
            let pos = ((i as f64 + 0.5) / n as f64 * len as f64) as usize;
            x[pos.min(len - 1)] as f64
        })
        .collect();
    Ok(lloyd_from(sw, n, &init, opts, Vec::new()))
}

/// [`lloyd_max`] warm-started from `init` (e.g. the previous levels of a layer being
/// re-quantized). `init` may hold fewer than `n` levels (duplicates are merged); missing ones
/// are created by splitting cells, exactly like the re-seeding of empty cells.
pub fn lloyd_max_with_init(
    w: &Tensor,
    n: usize,
    init: &[f64],
    opts: &LloydOptions,
) -> Result<LloydResult, String> {
    check_level_count(n)?;
    if init.is_empty() || init.len() > n {
        return Err(format!(
            "{} initial levels given for an n = {n} level quantizer; need 1..={n}",
            init.len()
        ));
    }
    if let Some(bad) = init.iter().find(|v| !v.is_finite()) {
        return Err(format!("initial level {bad} is not finite"));
    }
    let sw = SortedWeights::from_tensor(w)?;
    sw.check_fit(n)?;
    let mut init = init.to_vec();
    init.sort_by(f64::total_cmp);
    Ok(lloyd_from(&sw, n, &init, opts, Vec::new()))
}

/// One [`lloyd_max`] fit per slice of `w` along dim 0 (per output channel), copying the tensor
/// to the host once. Errors name the failing channel.
pub fn lloyd_max_per_channel(
    w: &Tensor,
    n: usize,
    opts: &LloydOptions,
) -> Result<Vec<LloydResult>, String> {
    check_level_count(n)?;
    if w.dim() == 0 {
        return Err("per-channel fit needs a tensor with at least one dimension".to_string());
    }
    let channels = w.size()[0];
    if channels == 0 {
        return Ok(Vec::new());
    }
    let per_row = w.numel() / channels as usize;
    if per_row == 0 {
        return Err(format!("n = {n} levels requested but each channel has only 0 weights"));
    }
    let rows = w.detach().reshape([channels, per_row as i64]).to_kind(Kind::Float);
    // On CUDA one batched device sort beats per-row host sorts; on CPU the host radix sort wins.
    let on_device = w.device().is_cuda();
    let flat = if on_device { rows.sort(1, false).0 } else { rows };
    let all = Vec::<f32>::try_from(&flat.reshape([-1])).map_err(|e| e.to_string())?;
    all.chunks(per_row)
        .enumerate()
        .map(|(c, row)| {
            let sw = if on_device {
                SortedWeights::from_sorted(row.to_vec())
            } else {
                SortedWeights::from_values(row.to_vec())
            };
            sw.and_then(|sw| lloyd_max_sorted(&sw, n, opts))
                .map_err(|e| format!("channel {c}: {e}"))
        })
        .collect()
}

/// The Lloyd iteration from `init` (ascending, possibly with duplicates or fewer than `n`
/// levels), appending to `history` (callers may seed it with the distortion of the partition
/// `init` came from). Requires `sw.check_fit(n)` to have passed.
///
/// Each iteration: nearest-level assignment (cell bounds by binary search; empty cells dropped),
/// then re-seeding until there are `n` cells, then centroids. Re-seeding splits the cell with the
/// largest distortion into its part `<=` its mean and the rest; giving each half its own mean can
/// only lower that cell's error (the old mean is feasible for both halves), and dropping an empty
/// cell changes nothing, so together with Lloyd's assignment and centroid steps the distortion is
/// non-increasing. The loop only stops on an assignment in which every level owns a weight, so
/// the returned levels all occur in the quantized tensor (bounded by `EXTRA_ITERS`).
pub(crate) fn lloyd_from(
    sw: &SortedWeights,
    n: usize,
    init: &[f64],
    opts: &LloydOptions,
    mut history: Vec<f64>,
) -> LloydResult {
    let mut levels = init.to_vec();
    levels.dedup();
    let max_iter = opts.max_iter.max(1);
    let mut iterations = 0;
    let mut extra = 0;
    let mut converged = false;
    let mut prev = history.last().copied();
    loop {
        let mut bounds = sw.assign(&levels);
        if converged || iterations >= max_iter {
            if bounds.len() == n + 1 || extra >= EXTRA_ITERS {
                break;
            }
            extra += 1;
        }
        split_to(sw, &mut bounds, n);
        levels = bounds.windows(2).map(|c| sw.mean(c[0], c[1])).collect();
        let d: f64 = bounds.windows(2).map(|c| sw.cost(c[0], c[1])).sum();
        history.push(d);
        iterations += 1;
        converged = d == 0.0 || prev.is_some_and(|p| p - d <= opts.tol * p);
        prev = Some(d);
    }
    debug_assert_eq!(levels.len(), n);
    debug_assert!(levels.windows(2).all(|p| p[0] < p[1]));
    LloydResult {
        thresholds: thresholds(&levels),
        distortion: sw.squared_error(&levels),
        levels,
        history,
        iterations,
    }
}

/// Splits cells (largest distortion first) until `bounds` describes `n` non-empty cells.
/// Cells holding a single distinct value are never split, so halves are non-empty and value
/// ranges stay disjoint (hence distinct means). Needs at least `n` distinct values in total.
fn split_to(sw: &SortedWeights, bounds: &mut Vec<usize>, n: usize) {
    let x = sw.values();
    while bounds.len() < n + 1 {
        let best = bounds
            .windows(2)
            .enumerate()
            .filter(|(_, c)| x[c[0]] < x[c[1] - 1])
            .map(|(j, c)| (j, sw.cost(c[0], c[1])))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((j, _)) = best else {
            // Unreachable after check_fit: fewer distinct values than cells requested.
            return;
        };
        let (a, b) = (bounds[j], bounds[j + 1]);
        let mut p = sw.upper_bound(sw.mean(a, b));
        if p <= a || p >= b {
            // The rounded mean sat on an end value: split at the middle of the value range,
            // which lies strictly inside since the cell has two distinct values.
            let mid = 0.5 * (x[a] as f64 + x[b - 1] as f64);
            p = sw.upper_bound(mid).clamp(a + 1, b - 1);
        }
        bounds.insert(j + 1, p);
    }
}
