//! Scalar quantization levels: thresholds (midpoints), nearest-level quantization of a tensor,
//! squared error / SQNR, and [`SortedWeights`], the sorted host copy of a weight tensor with
//! prefix sums of `x` and `x^2` that the Lloyd-Max (Lloyd 1982; Max 1960), exact 1-D k-means
//! (Wang & Song 2011, "Ckmeans.1d.dp") and MSE-uniform fits evaluate cells against: a cell
//! boundary costs O(log N) and a cell's count/mean/error O(32), instead of O(N).
//!
//! Why a host radix sort instead of `Tensor::sort`: on a 2-core CPU libtorch sorts a 2.4M-element
//! f32 tensor in ~0.3 s (~130 ns/element), which would put a ResNet-50 fit at ~3 s; the LSD radix
//! sort below runs at a few ns/element. On CUDA tensors the device sort is fast, so it is used
//! there and only the sorted values are copied back.

use super::radix::radix_sort_f32;
use tch::{Kind, Tensor};

/// Largest number of levels any fitter in this crate accepts (8-bit codes).
pub const MAX_LEVELS: usize = 256;

/// Decision thresholds of a nearest-level quantizer: the `levels.len() - 1` midpoints between
/// neighbouring (sorted ascending) levels.
pub fn thresholds(levels: &[f64]) -> Vec<f64> {
    levels.windows(2).map(|p| 0.5 * (p[0] + p[1])).collect()
}

/// Maps every element of `w` to its nearest level (ties, i.e. values exactly on a midpoint, go
/// to the lower level). Runs on the tensor side (bucketize against the midpoints, then `take`),
/// so it works on any device; the result has the shape, device and kind of `w`.
///
/// # Panics
/// If `levels` is empty.
pub fn quantize_to_levels(w: &Tensor, levels: &[f64]) -> Tensor {
    assert!(!levels.is_empty(), "quantize_to_levels needs at least one level");
    let (kind, device) = (w.kind(), w.device());
    if levels.len() == 1 {
        return w.full_like(levels[0]);
    }
    let lv = Tensor::from_slice(levels).to_kind(kind).to_device(device);
    let th = Tensor::from_slice(&thresholds(levels)).to_kind(kind).to_device(device);
    // right = false: bucket i holds th[i-1] < x <= th[i], i.e. a tie goes to the lower level,
    // the same rule `SortedWeights` uses, so host and tensor paths agree.
    let idx = w.contiguous().bucketize(&th, false, false);
    lv.take(&idx)
}

/// Sum of squared errors between `w` and its nearest-level quantization, accumulated in f64
/// (the quantization itself is also done in f64 so the error of f32 weights is exact).
pub fn squared_error(w: &Tensor, levels: &[f64]) -> f64 {
    let w64 = w.detach().to_kind(Kind::Double);
    let q = quantize_to_levels(&w64, levels);
    (w64 - q).square().sum(Kind::Double).double_value(&[])
}

/// Signal-to-quantization-noise ratio in dB: `10 log10(sum w^2 / sum err^2)`;
/// `f64::INFINITY` when the quantization is lossless.
pub fn sqnr_db(w: &Tensor, levels: &[f64]) -> f64 {
    let err = squared_error(w, levels);
    if err == 0.0 {
        return f64::INFINITY;
    }
    let signal = w.detach().to_kind(Kind::Double).square().sum(Kind::Double).double_value(&[]);
    10.0 * (signal / err).log10()
}

/// Rejects level counts outside `2..=MAX_LEVELS` with a message naming the count.
pub(crate) fn check_level_count(n: usize) -> Result<(), String> {
    if n < 2 {
        return Err(format!("n = {n} levels requested; a quantizer needs at least 2"));
    }
    if n > MAX_LEVELS {
        return Err(format!("n = {n} levels requested; at most {MAX_LEVELS} are supported"));
    }
    Ok(())
}

/// The values of a weight tensor sorted ascending on the host, with prefix sums of
/// `x - shift` and `(x - shift)^2` (f64) so the count, mean and squared error of any contiguous
/// run of sorted values (a quantizer cell) cost O(BLOCK), and a cell boundary O(log N).
///
/// The prefix sums are stored only every `BLOCK` values and completed from the values on
/// demand: full-length f64 prefix arrays would be 4x the size of the weights, and writing them
/// cost about as much as the sort itself. `shift` is the median: subtracting it keeps the sums
/// small, which limits the cancellation in `sum x^2 - (sum x)^2 / count`.
pub struct SortedWeights {
    values: Vec<f32>,
    /// `blocks[k]` = sums of `x - shift` and `(x - shift)^2` over `values[..k * BLOCK]`.
    blocks: Vec<(f64, f64)>,
    shift: f64,
    distinct: usize,
}

/// The error of every quantizer fit on weights with `bad` NaN/inf values among `len`.
pub fn non_finite_error(bad: usize, len: usize) -> String {
    format!("tensor has {bad} non-finite value(s) (NaN or inf) among {len} weights")
}

/// Stride of the stored prefix sums (see [`SortedWeights`]).
const BLOCK: usize = 32;

impl SortedWeights {
    /// Copies `w` (any shape, treated as a flat set; cast to f32) to the host, sorted.
    /// Errors if it holds NaN or infinite values.
    pub fn from_tensor(w: &Tensor) -> Result<Self, String> {
        let flat = w.detach().reshape([-1]).to_kind(Kind::Float);
        if w.device().is_cuda() {
            let (sorted, _) = flat.sort(0, false);
            let values = Vec::<f32>::try_from(&sorted).map_err(|e| e.to_string())?;
            Self::from_sorted(values)
        } else {
            let values = Vec::<f32>::try_from(&flat).map_err(|e| e.to_string())?;
            Self::from_values(values)
        }
    }

    /// Sorts `values` (host radix sort) and builds the prefix sums.
    pub fn from_values(mut values: Vec<f32>) -> Result<Self, String> {
        radix_sort_f32(&mut values);
        Self::from_sorted(values)
    }

    /// Builds the prefix sums of already ascending `values` (total order: NaN/inf at the ends,
    /// which is where both the radix sort and libtorch's sort put them).
    pub(crate) fn from_sorted(values: Vec<f32>) -> Result<Self, String> {
        let len = values.len();
        // Sorted ascending, so checking both ends finds any NaN or infinity without a pass.
        if len > 0 && !(values[0].is_finite() && values[len - 1].is_finite()) {
            let bad = values.iter().filter(|v| !v.is_finite()).count();
            return Err(non_finite_error(bad, len));
        }
        let shift = if len > 0 { values[len / 2] as f64 } else { 0.0 };
        let mut blocks = Vec::with_capacity(len / BLOCK + 1);
        blocks.push((0.0, 0.0));
        let (mut a1, mut a2) = (0.0f64, 0.0f64);
        let mut distinct = 0;
        let mut prev = f32::NAN; // unequal to every (finite) value, so the first one counts
                                 // The single per-element pass: block prefix sums plus the distinct count
                                 // (-0.0 == 0.0, like `Tensor::unique`).
        for chunk in values.chunks(BLOCK) {
            for &v in chunk {
                let d = v as f64 - shift;
                a1 += d;
                a2 += d * d;
                distinct += usize::from(v != prev);
                prev = v;
            }
            if chunk.len() == BLOCK {
                blocks.push((a1, a2));
            }
        }
        Ok(Self { values, blocks, shift, distinct })
    }

    /// Number of weights.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when there are no weights.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Number of distinct values (`-0.0` and `0.0` count as one).
    pub fn distinct_count(&self) -> usize {
        self.distinct
    }

    /// The sorted values.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Smallest and largest value (`None` when empty).
    pub fn min_max(&self) -> Option<(f64, f64)> {
        Some((*self.values.first()? as f64, *self.values.last()? as f64))
    }

    /// Largest absolute value (0 when empty).
    pub fn max_abs(&self) -> f64 {
        self.min_max().map_or(0.0, |(lo, hi)| lo.abs().max(hi.abs()))
    }

    /// Errors unless `n` levels can be fitted: `2 <= n <= 256`, `n <= len`, and at least `n`
    /// distinct values (otherwise some level would have no weight to sit on).
    pub fn check_fit(&self, n: usize) -> Result<(), String> {
        check_level_count(n)?;
        if n > self.len() {
            return Err(format!(
                "n = {n} levels requested but the tensor has only {} weights",
                self.len()
            ));
        }
        if self.distinct < n {
            return Err(format!(
                "layer has only {} distinct values, fewer than {n} levels",
                self.distinct
            ));
        }
        Ok(())
    }

    /// Index of the first sorted value greater than `t` (values `<= t` lie before it).
    pub(crate) fn upper_bound(&self, t: f64) -> usize {
        self.values.partition_point(|&v| v as f64 <= t)
    }

    /// Index of the first sorted value not less than `t`.
    pub(crate) fn lower_bound(&self, t: f64) -> usize {
        self.values.partition_point(|&v| (v as f64) < t)
    }

    /// Sums of `x - shift` and `(x - shift)^2` over `values[..i]`.
    fn prefix(&self, i: usize) -> (f64, f64) {
        let k = i / BLOCK;
        let (mut s1, mut s2) = self.blocks[k];
        for &v in &self.values[k * BLOCK..i] {
            let d = v as f64 - self.shift;
            s1 += d;
            s2 += d * d;
        }
        (s1, s2)
    }

    /// Sums of `x - shift` and `(x - shift)^2` over sorted positions `a..b`.
    fn sums(&self, a: usize, b: usize) -> (f64, f64) {
        let ((a1, a2), (b1, b2)) = (self.prefix(a), self.prefix(b));
        (b1 - a1, b2 - a2)
    }

    /// Prefix sums (shifted, see [`SortedWeights`]) at each position in `at`, for callers that
    /// evaluate many cells over a fixed set of boundaries (the exact DP).
    pub(crate) fn prefix_at(&self, at: &[usize]) -> Vec<(f64, f64)> {
        at.iter().map(|&i| self.prefix(i)).collect()
    }

    /// Mean of the non-empty cell `a..b`, clamped into the cell's value range so rounding in
    /// the prefix sums can never push it past a neighbouring cell (keeps levels distinct).
    pub(crate) fn mean(&self, a: usize, b: usize) -> f64 {
        let (s1, _) = self.sums(a, b);
        let m = self.shift + s1 / (b - a) as f64;
        m.clamp(self.values[a] as f64, self.values[b - 1] as f64)
    }

    /// Squared error of cell `a..b` about its own mean (closed form from prefix sums).
    pub(crate) fn cost(&self, a: usize, b: usize) -> f64 {
        if b <= a {
            return 0.0;
        }
        let (s1, s2) = self.sums(a, b);
        (s2 - s1 * s1 / (b - a) as f64).max(0.0)
    }

    /// Squared error of cell `a..b` about the level `q`: `sum x^2 - 2 q sum x + count q^2`
    /// in shifted coordinates.
    pub(crate) fn cost_at(&self, a: usize, b: usize, q: f64) -> f64 {
        if b <= a {
            return 0.0;
        }
        let (s1, s2) = self.sums(a, b);
        let q = q - self.shift;
        (s2 - 2.0 * q * s1 + (b - a) as f64 * q * q).max(0.0)
    }

    /// Cell boundaries (sorted positions, starting at 0 and ending at `len`) of nearest-level
    /// assignment to the ascending `levels`, with empty cells dropped: cell `j` is
    /// `bounds[j]..bounds[j + 1]`. O(levels * log N).
    pub(crate) fn assign(&self, levels: &[f64]) -> Vec<usize> {
        let mut bounds = Vec::with_capacity(levels.len() + 1);
        bounds.push(0);
        for t in thresholds(levels) {
            let p = self.upper_bound(t);
            if p > *bounds.last().unwrap_or(&0) && p < self.len() {
                bounds.push(p);
            }
        }
        bounds.push(self.len());
        bounds
    }

    /// Squared error of nearest-level quantization to `levels` from the prefix sums,
    /// O(levels * log N). Subject to the cancellation of the closed form; use
    /// [`SortedWeights::squared_error`] for a reported number.
    pub fn squared_error_fast(&self, levels: &[f64]) -> f64 {
        if levels.is_empty() || self.is_empty() {
            return 0.0;
        }
        let mut total = 0.0;
        let mut a = 0;
        let ths = thresholds(levels);
        for (j, &q) in levels.iter().enumerate() {
            let b = ths.get(j).map_or(self.len(), |&t| self.upper_bound(t).max(a));
            total += self.cost_at(a, b, q);
            a = b;
        }
        total
    }

    /// Squared error of nearest-level quantization to the ascending `levels`, summed directly
    /// (one pass over the values, per-cell partial sums) for an accurate number.
    pub fn squared_error(&self, levels: &[f64]) -> f64 {
        if levels.is_empty() || self.is_empty() {
            return 0.0;
        }
        let ths = thresholds(levels);
        let mut total = 0.0;
        let mut a = 0;
        for (j, &q) in levels.iter().enumerate() {
            let b = ths.get(j).map_or(self.len(), |&t| self.upper_bound(t).max(a));
            let cell: f64 = self.values[a..b]
                .iter()
                .map(|&v| {
                    let e = v as f64 - q;
                    e * e
                })
                .sum();
            total += cell;
            a = b;
        }
        total
    }
}
