//! The periphery's elementwise passes fused into single passes on CPU.
//!
//! Why: on CPU libtorch's convs run near the core's peak, and each elementwise op of the
//! periphery (abs-max, DAC scale, round, ADC clamp, round, tile sum, back-scaling, offset) is
//! its own pass over the chunk's activations, each costing 2-5% of the conv; at eight or more
//! passes per layer they were a third of a periphery trial. Here the same arithmetic, in the
//! same order and the same float precision, runs as two passes for a one-tile layer: the DAC
//! (per sample: its abs-max, then its codes for every tile while the sample is in cache),
//! and per tile the ADC (clamp, round) with the tile sum, the last tile's also with the
//! back-scaling (which may hold the next BatchNorm), a residual block's shortcut and the
//! ReLU. Each kernel is one loop over contiguous memory that the compiler vectorises; the
//! tensor-op path in `periphery.rs` stays the reference (and runs on other devices), and
//! tests/analog.rs checks that both agree exactly. (One ADC pass over all tiles' partial sums at once, in
//! blocks of 256 values, was measured slower than a pass per tile: `gqcim bench --only mc`,
//! three alternating runs, periphery trial 0.69-0.75x against 0.77-0.79x at batch 100.)
//!
//! The loops are compiled for AVX-512, AVX2 and the x86-64 baseline (`kernels.rs`); all
//! three give the same bits.
//!
//! Rounding is to nearest, ties to even, like `torch.round`, by the float trick
//! (v + 1.5·2²³) − 1.5·2²³, exact for |v| ≤ 2²²: the callers only round converter codes,
//! and `applies_to_codes` keeps converters wider than 22 bits on the tensor path. (It gives
//! +0 where torch gives −0 for small negative codes; the two are equal as numbers.)
pub use crate::kernels::{applies, to_vec};
use crate::kernels::{multiversion, values, values_mut};
use tch::{Device, Kind, Tensor};

const ROUND_MAGIC: f32 = 12_582_912.0;

/// The largest code magnitude the rounding trick handles exactly.
const MAX_CODE: f64 = (1u64 << 22) as f64;

/// Whether codes up to `max_code` in magnitude round exactly here.
pub fn applies_to_codes(max_code: f64) -> bool {
    max_code <= MAX_CODE
}

#[inline(always)]
fn round_code(v: f32) -> f32 {
    (v + ROUND_MAGIC) - ROUND_MAGIC
}

/// max |x| over each sample of `data` (`out.len()` samples), at least `floor`: torch's
/// `max(amax, −amin).clamp_min(floor)`; a sample holding a NaN gets NaN, as there.
#[inline(always)]
fn abs_max_kernel(data: &[f32], floor: f32, out: &mut [f32]) {
    let per = data.len() / out.len();
    if per == 0 {
        return;
    }
    for (sample, o) in data.chunks_exact(per).zip(out.iter_mut()) {
        let m = abs_max_or_nan(sample);
        *o = if m.is_nan() { m } else { m.max(floor) };
    }
}

/// max |x| over `xs` (0 when empty), NaN when any value is NaN. The NaN is carried in the
/// running maxima themselves (`nan_max`), so the loop is one compare-and-select per value
/// that the compiler vectorises: a separate NaN flag made it a scalar reduction, and the
/// DAC pass cost twice a plain pass over the activations. 64 lanes: four AVX-512
/// registers of independent maxima, so the compare-and-select chains overlap.
#[inline(always)]
fn abs_max_or_nan(xs: &[f32]) -> f32 {
    const LANES: usize = 64;
    let mut lanes = [0f32; LANES];
    let blocks = xs.chunks_exact(LANES);
    let rest = blocks.remainder();
    for block in blocks {
        for (m, v) in lanes.iter_mut().zip(block) {
            *m = nan_max(*m, v.abs());
        }
    }
    let m = rest.iter().fold(0f32, |m, v| nan_max(m, v.abs()));
    lanes.iter().fold(m, |m, &v| nan_max(m, v))
}

/// The larger of a running maximum `m` and a value `a` ≥ 0 (or NaN): NaN once either is
/// NaN (a NaN `m` stays, as every comparison with it is false).
#[inline(always)]
fn nan_max(m: f32, a: f32) -> f32 {
    if a > m || a.is_nan() {
        a
    } else {
        m
    }
}

/// The DAC for all tiles of a layer in one pass over the input: per sample its abs-max
/// scale m = max(max |x|, `floor`), its factor (1/m) · `dac_factor` (as the tensor ops
/// compute it: a reciprocal, then a multiply in f32), and the codes of each tile's input
/// channels (`tiles`: (first, count)): x · factor, clamped to ±`clamp` when given, rounded
/// when `round`, written while the sample is still in cache. Returns m per sample and one
/// contiguous [n, count, ...] tensor per tile.
pub fn dac_tiles(
    xs: &Tensor,
    tiles: &[(i64, i64)],
    dac_factor: f64,
    clamp: Option<f32>,
    round: bool,
    floor: f32,
) -> (Vec<f32>, Vec<Tensor>) {
    let size = xs.size();
    let n = size[0].max(0) as usize;
    let inner: i64 = size[2..].iter().product::<i64>().max(1);
    let codes: Vec<Tensor> = tiles
        .iter()
        .map(|&(_, len)| {
            let mut s = size.clone();
            s[1] = len;
            Tensor::empty(s.as_slice(), (Kind::Float, Device::Cpu))
        })
        .collect();
    let mut outs: Vec<&mut [f32]> = codes.iter().map(values_mut).collect();
    let runs: Vec<[usize; 2]> = tiles
        .iter()
        .map(|&(start, len)| [(start * inner) as usize, (len * inner) as usize])
        .collect();
    let mut scale = vec![floor; n];
    if n > 0 {
        let converter = DacConverter { factor: dac_factor as f32, clamp, round, floor };
        dac_all(values(xs), &mut outs, &runs, converter, &mut scale);
    }
    (scale, codes)
}

/// The DAC's settings for `dac_all`.
#[derive(Clone, Copy)]
struct DacConverter {
    factor: f32,
    clamp: Option<f32>,
    round: bool,
    floor: f32,
}

multiversion!(
    dac_all(
        src: &[f32],
        outs: &mut [&mut [f32]],
        runs: &[[usize; 2]],
        converter: DacConverter,
        scale: &mut [f32]
    ) = dac_all_kernel
);

#[inline(always)]
fn dac_all_kernel(
    src: &[f32],
    outs: &mut [&mut [f32]],
    runs: &[[usize; 2]],
    converter: DacConverter,
    scale: &mut [f32],
) {
    let per = src.len() / scale.len();
    if per == 0 {
        return;
    }
    for (s, (sample, m)) in src.chunks_exact(per).zip(scale.iter_mut()).enumerate() {
        abs_max_kernel(sample, converter.floor, std::slice::from_mut(m));
        let f = (1.0 / *m) * converter.factor;
        for (out, &[from, run]) in outs.iter_mut().zip(runs) {
            let d = &mut out[s * run..(s + 1) * run];
            dac_run(&sample[from..from + run], d, f, converter.clamp, converter.round);
        }
    }
}

/// One run of DAC codes: x · f, clamped to ±`clamp` (none: ±∞, which changes no number),
/// rounded when `round`.
#[inline(always)]
fn dac_run(x: &[f32], d: &mut [f32], f: f32, clamp: Option<f32>, round: bool) {
    let c = clamp.unwrap_or(f32::INFINITY);
    let code = |x: f32| {
        let v = x * f;
        let v = if v < -c { -c } else { v };
        if v > c {
            c
        } else {
            v
        }
    };
    if round {
        for (d, &x) in d.iter_mut().zip(x) {
            *d = round_code(code(x));
        }
    } else {
        for (d, &x) in d.iter_mut().zip(x) {
            *d = code(x);
        }
    }
}

/// The ADC's code of a tile's partial sum (already in codes): clamp to [0, levels] and
/// round; the identity for an ideal ADC.
#[inline(always)]
fn adc(v: f32, levels: Option<f32>) -> f32 {
    match levels {
        Some(l) => {
            let v = if v < 0.0 { 0.0 } else { v };
            round_code(if v > l { l } else { v })
        }
        None => v,
    }
}

/// The back-scaling of a layer's output to weight × input units, per output column c and
/// sample n with input scale x, in the order of `Periphery::scale_and_offset`'s tensor ops:
/// base = w_max[c] · x, multiplier k = base · step and offset = base · shift (+ bias[c]);
/// with a BatchNorm after the layer, k · s[c] and offset · s[c] + t[c] (its scale and
/// shift).
#[derive(Clone, Copy)]
pub struct BackScaling<'a> {
    /// Output columns (channels) of the layer.
    pub columns: usize,
    /// w_max per output column (one value: the layer's).
    pub w_max: &'a [f32],
    /// The ADC's step, and −tiles · its offset r.
    pub step: f32,
    pub shift: f32,
    pub bias: Option<&'a [f32]>,
    pub bn: Option<(&'a [f32], &'a [f32])>,
}

impl BackScaling<'_> {
    /// (k, offset) of column `c` for a sample of input scale `x`.
    #[inline(always)]
    fn at(&self, c: usize, x: f32) -> (f32, f32) {
        let w = if self.w_max.len() == 1 { self.w_max[0] } else { self.w_max[c] };
        let base = w * x;
        let mut k = base * self.step;
        let mut offset = base * self.shift;
        if let Some(bias) = self.bias {
            offset += bias[c];
        }
        if let Some((s, t)) = self.bn {
            k *= s[c];
            offset = offset * s[c] + t[c];
        }
        (k, offset)
    }
}

/// Adds the ADC codes of the tile's partial sums `y` to `sum` (the codes of the tiles
/// before), in place; with no `sum` yet, turns `y` into its codes in place and returns it.
pub fn adc_accumulate(sum: Option<Tensor>, y: Tensor, levels: Option<f32>) -> Tensor {
    match sum {
        None => {
            adc_in_place(values_mut(&y), levels);
            y
        }
        Some(sum) => {
            adc_add(values_mut(&sum), values(&y), levels);
            sum
        }
    }
}

multiversion!(adc_in_place(y: &mut [f32], levels: Option<f32>) = adc_in_place_kernel);

#[inline(always)]
fn adc_in_place_kernel(y: &mut [f32], levels: Option<f32>) {
    for v in y.iter_mut() {
        *v = adc(*v, levels);
    }
}

multiversion!(adc_add(sum: &mut [f32], y: &[f32], levels: Option<f32>) = adc_add_kernel);

#[inline(always)]
fn adc_add_kernel(sum: &mut [f32], y: &[f32], levels: Option<f32>) {
    for (s, &v) in sum.iter_mut().zip(y) {
        *s += adc(v, levels);
    }
}

/// The last tile: out = (sum + adc(y)) · k + offset, with `k` and `offset` per sample and
/// output column (`BackScaling` and the samples' input scales `scale`) and the rest of the
/// output's positions per column, plus the shortcut `res` (y's shape) when given, then
/// max(out, 0) when `relu` (NaN stays NaN, as in torch); written into `dst` when given (a
/// contiguous slice of the batch's output), else into `y`.
pub fn adc_finish(
    sum: Option<&Tensor>,
    y: Tensor,
    levels: Option<f32>,
    (back, scale): (BackScaling<'_>, &[f32]),
    res: Option<&Tensor>,
    relu: bool,
    dst: Option<&Tensor>,
) -> Tensor {
    let out = dst.map(|d| d.shallow_clone()).unwrap_or_else(|| y.shallow_clone());
    // Written in place (`y` is `out`): read from the output itself, never through a second
    // slice of the same memory.
    let ys = dst.map(|_| values(&y));
    let inputs = FinishInputs { ys, sums: sum.map(values), res: res.map(values) };
    finish(values_mut(&out), inputs, levels, (back, scale), relu);
    out
}

/// What the last tile's pass reads besides the output: the tile's partial sums when they
/// are not the output itself, the earlier tiles' ADC codes, the block's shortcut.
#[derive(Clone, Copy)]
struct FinishInputs<'a> {
    ys: Option<&'a [f32]>,
    sums: Option<&'a [f32]>,
    res: Option<&'a [f32]>,
}

multiversion!(
    finish(
        o: &mut [f32],
        inputs: FinishInputs<'_>,
        levels: Option<f32>,
        scaling: (BackScaling<'_>, &[f32]),
        relu: bool
    ) = finish_kernel
);

#[inline(always)]
fn finish_kernel(
    o: &mut [f32],
    inputs: FinishInputs<'_>,
    levels: Option<f32>,
    scaling: (BackScaling<'_>, &[f32]),
    relu: bool,
) {
    let FinishInputs { ys, sums, res } = inputs;
    let (back, scale) = scaling;
    // The ReLU as a select (v < 0 is false for NaN, which passes through as in torch); with
    // a shortcut it comes after the add, in a second loop over the column while it is in
    // the L1 cache (adding a zero shortcut instead would turn a −0 output into +0).
    let relu_floor = if relu { 0.0 } else { f32::NEG_INFINITY };
    let floor = if res.is_some() { f32::NEG_INFINITY } else { relu_floor };
    let out = |v: f32| if v < floor { floor } else { v };
    let columns = back.columns;
    if columns == 0 || scale.is_empty() {
        return;
    }
    let inner = o.len() / (columns * scale.len());
    for col in 0..columns * scale.len() {
        let (k, b) = back.at(col % columns, scale[col / columns]);
        let range = col * inner..(col + 1) * inner;
        let o = &mut o[range.clone()];
        match (ys.map(|y| &y[range.clone()]), sums.map(|s| &s[range.clone()])) {
            (Some(ys), Some(s)) => {
                for ((o, &v), &s) in o.iter_mut().zip(ys).zip(s) {
                    *o = out((s + adc(v, levels)) * k + b);
                }
            }
            (Some(ys), None) => {
                for (o, &v) in o.iter_mut().zip(ys) {
                    *o = out(adc(v, levels) * k + b);
                }
            }
            (None, Some(s)) => {
                for (o, &s) in o.iter_mut().zip(s) {
                    *o = out((s + adc(*o, levels)) * k + b);
                }
            }
            (None, None) => {
                for o in o.iter_mut() {
                    *o = out(adc(*o, levels) * k + b);
                }
            }
        }
        if let Some(res) = res {
            for (o, &r) in o.iter_mut().zip(&res[range]) {
                let v = *o + r;
                *o = if v < relu_floor { relu_floor } else { v };
            }
        }
    }
}
