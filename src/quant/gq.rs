//! `gq`, generalized quantization of one tensor: the lowest-distortion N quanta among Lloyd-Max
//! runs from several starts and the exact 1-D k-means (the fit every quantizing path and
//! gq-noise's start use; a module of its own so that paths and noise_aware both depend on it
//! and not on each other).
use super::exact::exact_kmeans_1d_sorted;
use super::levels::SortedWeights;
use super::lloyd::{lloyd_from, lloyd_max_sorted, LloydOptions};
use super::uniform::uniform_mse_sorted;
use tch::Tensor;

/// Histogram bins of the exact DP inside `fit_gq` (only layers above the exact module's
/// full-resolution limit use the histogram).
const GQ_EXACT_BINS: usize = 4096;

/// Generalized quantization of one tensor: Lloyd-Max started from the quantiles, from the
/// MSE-optimal uniform grid and from the exact DP optimum (`exact.rs`), keeping the lowest
/// distortion. Lloyd-Max only finds a local optimum: on trained layers the quantile start ends
/// up to 35% above the optimum (conv1 at N = 8), and on small, spiky layers even above the
/// uniform grid. Each start can only improve on its seed, so gq's squared error is never above
/// uniform-mse's (nor uniform-minmax's) nor above the DP's (the global optimum whenever the
/// full-resolution DP runs, i.e. below `exact::FULL_DP_LIMIT`).
pub fn fit_gq(w: &Tensor, n: usize, opts: &LloydOptions) -> Result<(Vec<f64>, usize), String> {
    // One sort serves the three fits.
    let sw = SortedWeights::from_tensor(w)?;
    sw.check_fit(n)?;
    let a = lloyd_max_sorted(&sw, n, opts)?;
    let b = lloyd_from(&sw, n, &uniform_mse_sorted(&sw, n).0, opts, Vec::new());
    let c = exact_kmeans_1d_sorted(&sw, n, GQ_EXACT_BINS)?;
    let iters = a.iterations + b.iterations + c.iterations;
    let best = [c, a, b].into_iter().min_by(|x, y| x.distortion.total_cmp(&y.distortion));
    Ok((best.map(|r| r.levels).unwrap_or_default(), iters))
}
