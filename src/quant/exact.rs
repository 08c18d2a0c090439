//! "gq-exact": globally optimal 1-D k-means (minimum squared-error scalar quantizer) by dynamic
//! programming, after H. Wang & M. Song, "Ckmeans.1d.dp: Optimal k-means clustering in one
//! dimension by dynamic programming", The R Journal 3(2), 2011, run over a fine equal-width
//! histogram of the weights instead of the individual values, with the divide-and-conquer
//! speed-up of the DP layers (valid because the 1-D k-means cell cost satisfies the quadrangle
//! inequality, so the optimal split point is monotone).

use tch::Tensor;

use super::levels::{check_level_count, SortedWeights};
use super::lloyd::{lloyd_from, LloydOptions, LloydResult};

/// Lloyd refinement after the DP: it starts next to the optimum, so a tight tolerance is cheap
/// (an iteration is O(n log N)).
const REFINE: LloydOptions = LloydOptions {
    max_iter: 1000,
    tol: 1e-12,
};

/// Optimal `n`-level quantizer of the values of `w` up to histogram resolution, refined.
///
/// 1. The weights are sorted once ([`SortedWeights`]) and cut into `bins` equal-width bins over
///    `[min, max]`; each bin's count, sum and sum of squares come from prefix sums, so they are
///    exact per bin (not bin-centre approximations). Empty bins are dropped.
/// 2. DP over the non-empty bins: `D[k][j] = min_i D[k-1][i] + cost(i+1..=j)`, O(n bins log bins).
///    This is the optimum over all partitions whose cell edges fall on bin edges.
/// 3. Because weights inside one bin cannot be split by the DP, Lloyd-Max iterations are run
///    from the DP levels (tolerance 1e-12); each iteration can only lower the distortion, so the
///    result is never worse than the DP partition. If there are fewer non-empty bins than `n`,
///    the DP uses one cell per bin and the Lloyd re-seeding splits cells up to `n` levels.
///
/// `history[0]` is the DP partition's distortion, followed by the refinement iterations;
/// `iterations` counts the refinement iterations; `distortion` is the directly summed squared
/// error of nearest-level quantization to the returned levels. Errors as [`super::lloyd::lloyd_max`],
/// and for `bins == 0`.
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
    let atoms = histogram_bounds(sw, bins);
    let m = atoms.len() - 1;
    let k = n.min(m);
    // The DP evaluates O(n m log m) cells, all with edges on atom boundaries: precompute the
    // prefix sums there so each cost is O(1).
    let pre = sw.prefix_at(&atoms);
    let cost = |i: usize, j: usize| {
        let (s1, s2) = (pre[j + 1].0 - pre[i].0, pre[j + 1].1 - pre[i].1);
        (s2 - s1 * s1 / (atoms[j + 1] - atoms[i]) as f64).max(0.0)
    };
    let cells = optimal_partition(m, k, &cost);
    let dp_distortion: f64 = cells.windows(2).map(|c| cost(c[0], c[1] - 1)).sum();
    let init: Vec<f64> = cells
        .windows(2)
        .map(|c| sw.mean(atoms[c[0]], atoms[c[1]]))
        .collect();
    Ok(lloyd_from(sw, n, &init, &REFINE, vec![dp_distortion]))
}

/// Sorted positions of the edges of the non-empty equal-width bins over `[min, max]`
/// (starts at 0, ends at `len`); bin `b` holds values in `[e_b, e_{b+1})`, the last one also `max`.
fn histogram_bounds(sw: &SortedWeights, bins: usize) -> Vec<usize> {
    let (lo, hi) = sw.min_max().unwrap_or((0.0, 0.0));
    let width = (hi - lo) / bins as f64;
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
    // prev[j]: best cost of atoms 0..=j in (layer) cells; arg[layer][j]: last atom of the
    // previous cell in that optimum.
    let mut prev: Vec<f64> = (0..m).map(|j| cost(0, j)).collect();
    let mut arg: Vec<Vec<u32>> = Vec::with_capacity(k.saturating_sub(1));
    for layer in 2..=k {
        let mut cur = vec![f64::INFINITY; m];
        let mut opt = vec![0u32; m];
        // Atoms 0..=j need j + 1 >= layer; split i ranges over layer-2 ..= j-1.
        let first = layer - 1;
        dc_layer(
            &prev,
            &mut cur,
            &mut opt,
            cost,
            (first, m - 1),
            (layer - 2, m - 2),
        );
        arg.push(opt);
        prev = cur;
    }
    let mut starts = vec![m];
    let mut j = m - 1;
    for opt in arg.iter().rev() {
        let i = opt[j] as usize;
        starts.push(i + 1);
        j = i;
    }
    starts.push(0);
    starts.reverse();
    starts
}

/// Fills `cur[j]` for `j` in `js` with `min_i prev[i] + cost(i + 1, j)`, `i` in `is` and `i < j`,
/// using the monotonicity of the argmin (divide and conquer): O((|js| + |is|) log |js|) costs.
fn dc_layer(
    prev: &[f64],
    cur: &mut [f64],
    opt: &mut [u32],
    cost: &dyn Fn(usize, usize) -> f64,
    js: (usize, usize),
    is: (usize, usize),
) {
    // Explicit stack instead of recursion: (j_lo, j_hi, i_lo, i_hi), inclusive.
    let mut stack = vec![(js.0, js.1, is.0, is.1)];
    while let Some((jl, jh, il, ih)) = stack.pop() {
        if jl > jh {
            continue;
        }
        let mid = jl + (jh - jl) / 2;
        let (mut best, mut best_i) = (f64::INFINITY, il);
        for (off, &p) in prev[il..=ih.min(mid - 1)].iter().enumerate() {
            let i = il + off;
            let v = p + cost(i + 1, mid);
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
