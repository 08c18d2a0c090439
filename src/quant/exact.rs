//! "gq-exact": globally optimal 1-D k-means (minimum squared-error scalar quantizer) by dynamic
//! programming, after H. Wang & M. Song, "Ckmeans.1d.dp: Optimal k-means clustering in one
//! dimension by dynamic programming", The R Journal 3(2), 2011. Layers whose distinct values
//! times levels stay under [`FULL_DP_LIMIT`] (every ResNet-20 layer up to N = 64) are solved by
//! one DP over all distinct values: the global optimum, no approximation. Larger layers run the
//! DP first over a fine equal-width histogram and then at full value resolution only in windows
//! around the histogram optimum's cell edges. All DPs use the divide-and-conquer speed-up (valid
//! because the 1-D k-means cell cost satisfies the quadrangle inequality, so the optimal split
//! point is monotone).

use tch::Tensor;

use super::levels::{check_level_count, SortedWeights};
use super::lloyd::{lloyd_from, LloydOptions, LloydResult};

/// Lloyd refinement after the DPs: it starts next to the optimum, so a tight tolerance is cheap
/// (an iteration is O(n log N)).
const REFINE: LloydOptions = LloydOptions { max_iter: 1000, tol: 1e-12 };

/// Half-width, in histogram bins, of the window around each bin-DP cell edge in which the
/// value-resolution DP may move the edge.
const WINDOW_BINS: f64 = 2.0;

/// Largest `distinct values x levels` solved by the full-resolution DP. It evaluates about
/// `levels x distinct x log2(distinct)` O(1) cell costs and holds 16 bytes of prefix sums per
/// value: 2^23 is ~0.2 s and a few MB. The windowed histogram DP missed the optimum of a trained
/// 36,864-weight layer by 8.1e-6 relative at N = 16; at this size the full DP costs ~20 ms.
pub const FULL_DP_LIMIT: usize = 1 << 23;

/// Optimal `n`-level quantizer of the values of `w` (any shape; a flat set).
///
/// 1. The weights are sorted once ([`SortedWeights`]) and cut into `bins` equal-width bins over
///    `[min, max]`; each bin's count, sum and sum of squares come from prefix sums, so they are
///    exact per bin (not bin-centre approximations). Empty bins are dropped.
/// 2. DP over the non-empty bins: `D[k][j] = min_i D[k-1][i] + cost(i+1..=j)`,
///    O(n bins log bins): the optimum over all partitions whose cell edges fall on bin edges.
/// 3. Weights inside one bin cannot be split by that DP, and sample k-means objectives have many
///    local optima within ~1e-6 relative of each other, so a bin-aligned optimum refined by Lloyd
///    alone can stop short of a partition Lloyd-Max finds from another start. A second DP
///    therefore places each cell edge at any sorted position within `WINDOW_BINS` bins of the
///    bin-DP edge: the optimum at full value resolution over those windows.
/// 4. Lloyd-Max iterations from the resulting levels (tolerance 1e-12). Each step can only lower
///    the distortion; they also re-seed up to `n` levels when fewer than `n` bins are non-empty
///    (the DPs then use one cell per bin).
///
/// The result is the global optimum whenever the optimal cell edges lie within the windows of
/// the bin-resolution optimum (always observed; not a proof).
///
/// `history` holds the bin-DP distortion, then (for `n >= 2` cells) the windowed-DP distortion,
/// then one entry per Lloyd iteration; `iterations` counts the Lloyd iterations; `distortion` is
/// the directly summed squared error of nearest-level quantization to the returned levels.
/// Errors as [`super::lloyd::lloyd_max`], and for `bins == 0`.
pub fn exact_kmeans_1d(w: &Tensor, n: usize, bins: usize) -> Result<LloydResult, String> {
    check_level_count(n)?;
    if bins == 0 {
        return Err("exact_kmeans_1d needs at least 1 histogram bin, got 0".to_string());
    }
    let sw = SortedWeights::from_tensor(w)?;
    exact_kmeans_1d_sorted(&sw, n, bins)
}

/// [`exact_kmeans_1d`] on already sorted weights.
pub fn exact_kmeans_1d_sorted(
    sw: &SortedWeights,
    n: usize,
    bins: usize,
) -> Result<LloydResult, String> {
    sw.check_fit(n)?;
    if bins == 0 {
        return Err("exact_kmeans_1d needs at least 1 histogram bin, got 0".to_string());
    }
    if sw.distinct_count().saturating_mul(n) <= FULL_DP_LIMIT {
        return Ok(full_resolution(sw, n));
    }
    exact_kmeans_1d_binned(sw, n, bins)
}

/// The histogram + windowed DP of [`exact_kmeans_1d`] at any size (steps 1-4 there); exposed so
/// tests can exercise it on small layers.
pub fn exact_kmeans_1d_binned(
    sw: &SortedWeights,
    n: usize,
    bins: usize,
) -> Result<LloydResult, String> {
    check_level_count(n)?;
    sw.check_fit(n)?;
    if bins == 0 {
        return Err("exact_kmeans_1d needs at least 1 histogram bin, got 0".to_string());
    }
    let (lo, hi) = sw.min_max().unwrap_or((0.0, 0.0));
    let width = (hi - lo) / bins as f64;
    let atoms = histogram_bounds(sw, lo, width, bins);
    let m = atoms.len() - 1;
    let k = n.min(m);
    // The DP evaluates O(n m log m) cells, all with edges on atom boundaries: precompute the
    // prefix sums there so each cost is O(1).
    let pre = sw.prefix_at(&atoms);
    let cost = |i: usize, j: usize| cell_cost(pre[i], pre[j + 1], atoms[j + 1] - atoms[i]);
    let cells = optimal_partition(m, k, &cost);
    let mut bounds: Vec<usize> = cells.iter().map(|&c| atoms[c]).collect();
    let mut history = vec![partition_cost(sw, &bounds)];
    if k >= 2 {
        bounds = refine_edges(sw, &bounds, WINDOW_BINS * width);
        history.push(partition_cost(sw, &bounds));
    }
    let init: Vec<f64> = bounds.windows(2).map(|c| sw.mean(c[0], c[1])).collect();
    Ok(lloyd_from(sw, n, &init, &REFINE, history))
}

/// The global optimum of `n` cells by one DP over all distinct values (equal values are never
/// split: nearest-level assignment cannot split them either). Any size; [`exact_kmeans_1d`]
/// calls it below [`FULL_DP_LIMIT`], tests call it as the reference optimum. `history` holds the
/// DP distortion, then the Lloyd polish (which cannot improve a global optimum by more than
/// rounding, and makes `distortion` the directly summed error).
pub fn exact_kmeans_1d_full(sw: &SortedWeights, n: usize) -> Result<LloydResult, String> {
    check_level_count(n)?;
    sw.check_fit(n)?;
    Ok(full_resolution(sw, n))
}

fn full_resolution(sw: &SortedWeights, n: usize) -> LloydResult {
    let x = sw.values();
    let mut atoms: Vec<usize> = vec![0];
    atoms.extend((1..x.len()).filter(|&p| x[p - 1] < x[p]));
    atoms.push(x.len());
    let m = atoms.len() - 1;
    let pre = sw.prefix_at(&atoms);
    let cost = |i: usize, j: usize| cell_cost(pre[i], pre[j + 1], atoms[j + 1] - atoms[i]);
    let cells = optimal_partition(m, n.min(m), &cost);
    let bounds: Vec<usize> = cells.iter().map(|&c| atoms[c]).collect();
    let history = vec![partition_cost(sw, &bounds)];
    let init: Vec<f64> = bounds.windows(2).map(|c| sw.mean(c[0], c[1])).collect();
    lloyd_from(sw, n, &init, &REFINE, history)
}

/// Squared error about its mean of a cell of `count` values whose prefix sums (of `x - shift`,
/// `(x - shift)^2`) are `a` at its start and `b` at its end.
fn cell_cost(a: (f64, f64), b: (f64, f64), count: usize) -> f64 {
    let (s1, s2) = (b.0 - a.0, b.1 - a.1);
    (s2 - s1 * s1 / count as f64).max(0.0)
}

/// Distortion of the partition with cell edges `bounds` (sorted positions, 0 ... len).
fn partition_cost(sw: &SortedWeights, bounds: &[usize]) -> f64 {
    bounds.windows(2).map(|c| sw.cost(c[0], c[1])).sum()
}

/// Sorted positions of the edges of the non-empty equal-width bins `[lo + b w, lo + (b+1) w)`
/// (starts at 0, ends at `len`; the last bin also holds the maximum).
fn histogram_bounds(sw: &SortedWeights, lo: f64, width: f64, bins: usize) -> Vec<usize> {
    let mut bounds = vec![0];
    for b in 1..bins {
        let p = sw.lower_bound(lo + width * b as f64);
        if p > *bounds.last().unwrap_or(&0) && p < sw.len() {
            bounds.push(p);
        }
    }
    bounds.push(sw.len());
    bounds
}

/// Optimal partition of atoms `0..m` into `k` contiguous cells (`1 <= k <= m`) under
/// `cost(i, j)` = cost of the cell of atoms `i..=j`. Returns cell starts plus `m` (k + 1 entries).
fn optimal_partition(m: usize, k: usize, cost: &dyn Fn(usize, usize) -> f64) -> Vec<usize> {
    // prev[j]: best cost of atoms 0..=j in (layer - 1) cells; args[layer][j]: last atom of the
    // previous cell in the optimum for atoms 0..=j.
    let mut prev: Vec<f64> = (0..m).map(|j| cost(0, j)).collect();
    let mut args: Vec<Vec<u32>> = Vec::with_capacity(k.saturating_sub(1));
    for layer in 2..=k {
        let mut cur = vec![f64::INFINITY; m];
        let mut opt = vec![0u32; m];
        // Atoms 0..=j need j + 1 >= layer; the previous cell ends at i in layer-2 ..= j-1.
        monotone_argmin(
            (layer - 1, m - 1),
            (layer - 2, m - 2),
            &|j| j - 1,
            &|i, j| prev[i] + cost(i + 1, j),
            &mut cur,
            &mut opt,
        );
        args.push(opt);
        prev = cur;
    }
    let mut starts = vec![m];
    let mut j = m - 1;
    for opt in args.iter().rev() {
        let i = opt[j] as usize;
        starts.push(i + 1);
        j = i;
    }
    starts.push(0);
    starts.reverse();
    starts
}

/// Re-places the inner cell edges of `bounds` at full value resolution: edge `t` may move to any
/// sorted position whose value lies within `radius` of the old edge (windows clipped so they stay
/// disjoint and ordered). DP over the windows, O(W log W) costs per edge for windows of W
/// positions; the old edges are candidates, so the distortion never rises.
fn refine_edges(sw: &SortedWeights, bounds: &[usize], radius: f64) -> Vec<usize> {
    let x = sw.values();
    let len = sw.len();
    let inner = &bounds[1..bounds.len() - 1];
    // Inclusive position ranges; a position p splits the cells ..p and p...
    let mut wins: Vec<(usize, usize)> = inner
        .iter()
        .map(|&p| {
            let edge = 0.5 * (x[p - 1] as f64 + x[p] as f64);
            let lo = sw.lower_bound(edge - radius).clamp(1, p);
            let hi = sw.upper_bound(edge + radius).clamp(p, len - 1);
            (lo, hi)
        })
        .collect();
    for t in 1..wins.len() {
        // Split overlapping windows between the two old edges (each keeps its own old edge).
        let mid = (inner[t - 1] + inner[t]).div_ceil(2);
        wins[t - 1].1 = wins[t - 1].1.min(mid - 1);
        wins[t].0 = wins[t].0.max(mid);
    }
    let pre: Vec<Vec<(f64, f64)>> =
        wins.iter().map(|&(lo, hi)| sw.prefix_at(&(lo..=hi).collect::<Vec<_>>())).collect();
    let (start, end) = (sw.prefix_at(&[0])[0], sw.prefix_at(&[len])[0]);

    // best[i]: optimal cost of values ..wins[t].0 + i with the t-th edge at that position.
    let (w0, _) = wins[0];
    let mut best: Vec<f64> =
        pre[0].iter().enumerate().map(|(i, &b)| cell_cost(start, b, w0 + i)).collect();
    let mut args: Vec<Vec<u32>> = Vec::with_capacity(wins.len().saturating_sub(1));
    for t in 1..wins.len() {
        let (lp, lc) = (wins[t - 1].0, wins[t].0);
        let (pp, pc) = (&pre[t - 1], &pre[t]);
        let mut cur = vec![f64::INFINITY; pc.len()];
        let mut opt = vec![0u32; pc.len()];
        monotone_argmin(
            (0, pc.len() - 1),
            (0, pp.len() - 1),
            &|_| usize::MAX,
            &|i, j| best[i] + cell_cost(pp[i], pc[j], (lc + j) - (lp + i)),
            &mut cur,
            &mut opt,
        );
        args.push(opt);
        best = cur;
    }
    let last = wins.len() - 1;
    let (ll, pl) = (wins[last].0, &pre[last]);
    let mut j = (0..pl.len())
        .map(|i| (i, best[i] + cell_cost(pl[i], end, len - (ll + i))))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |(i, _)| i);
    let mut edges = vec![ll + j];
    for (t, opt) in args.iter().enumerate().rev() {
        j = opt[j] as usize;
        edges.push(wins[t].0 + j);
    }
    edges.reverse();
    let mut out = Vec::with_capacity(bounds.len());
    out.push(0);
    out.extend(edges);
    out.push(len);
    out
}

/// For `j` in `js` (inclusive) sets `cur[j] = min f(i, j)` over `i` in `is` (inclusive) with
/// `i <= cap(j)`, and `opt[j]` to the argmin, assuming the argmin is non-decreasing in `j`
/// (divide and conquer: O((|js| + |is|) log |js|) evaluations). Every `j` must have a valid `i`
/// in range.
fn monotone_argmin(
    js: (usize, usize),
    is: (usize, usize),
    cap: &dyn Fn(usize) -> usize,
    f: &dyn Fn(usize, usize) -> f64,
    cur: &mut [f64],
    opt: &mut [u32],
) {
    // Explicit stack instead of recursion: (j_lo, j_hi, i_lo, i_hi), inclusive.
    let mut stack = vec![(js.0, js.1, is.0, is.1)];
    while let Some((jl, jh, il, ih)) = stack.pop() {
        if jl > jh {
            continue;
        }
        let mid = jl + (jh - jl) / 2;
        let (mut best, mut best_i) = (f64::INFINITY, il);
        for i in il..=ih.min(cap(mid)) {
            let v = f(i, mid);
            if v < best {
                best = v;
                best_i = i;
            }
        }
        cur[mid] = best;
        opt[mid] = best_i as u32;
        if mid > jl {
            stack.push((jl, mid - 1, il, best_i));
        }
        stack.push((mid + 1, jh, best_i, ih));
    }
}
