//! Periphery: input DAC, per-tile ADC and output noise. A layer's crossbar rows (its fan-in)
//! are split into tiles of `tile_rows`; each tile's partial sum is digitised on its own and
//! the digital results are summed, as on a multi-tile chip. One conv or matmul per tile, no
//! per-sample loop.
//!
//! Speed: every elementwise pass over a layer's activations costs a few percent of its
//! conv, and the plain formulas take about twenty of them per layer, so the converters are
//! written in integer codes with as few passes as the maths allows (the plain formulas are
//! in tests/analog.rs, which checks that both agree):
//! - the DAC scales each sample to codes in one multiply, clamps and rounds;
//! - the conv's weights carry the DAC's and the ADC's step and its bias the ADC's offset,
//!   so each tile's partial sum comes out of the conv already in ADC codes, to be clamped
//!   and rounded;
//! - the back-scaling (per sample, per column), the ADC offsets of all tiles and the bias
//!   are one multiply-add at the end; in evaluation the BatchNorm that follows the layer
//!   joins it (its scale and shift per column, `Epilogue`), and so do a residual block's
//!   identity shortcut and a following ReLU, as a chip's digital periphery applies them:
//!   no separate BN, add and ReLU pass;
//! - on the CPU each of these steps is one fused pass (`fused.rs`, `Passes::FusedCpu`): the
//!   DAC with its abs-max, and per tile the ADC with the sum (the last tile's also with the
//!   back-scaling), two passes for a one-tile layer where the tensor ops take eight;
//! - what does not change from one pass to the next (tiles, converters, scales) is set up
//!   once per crossbar layer (`PeripheryPlan`), not at every batch;
//! - the batch goes through all of this a chunk of samples at a time (`chunk_samples`), so
//!   the passes read and write the core's cache, not main memory.
//!
//! (libtorch's fused `fake_quantize_*` and `aminmax` were measured slower on CPU: scalar
//! loops, 15-40 ms where a plain pass takes 1-2 ms on 6 M activations; its `addcmul` with
//! per-sample, per-column factors 3-5x slower than a multiply and an add.)
use super::fused;
use super::tiling::{layer_spans, TileSpan};
use crate::config::{AnalogConfig, Converter};
pub use crate::kernels::Passes;
use crate::nets::layers::{Epilogue, LayerOp, LayerSpec};
use tch::{Kind, Tensor};

/// The layer's tiles (`tiling.rs`, `analog.tile_split`) as the periphery runs them: one
/// conv per tile over the input channels its rows touch. A grouped conv is one tile (a
/// group is its own small crossbar).
pub fn layer_tiles(layer: &LayerSpec, cfg: &AnalogConfig) -> Vec<TileSpan> {
    let w = layer.weight.size();
    let taps: i64 = w[2..].iter().product::<i64>().max(1);
    let c_in = w.get(1).copied().unwrap_or(1);
    match layer.op {
        LayerOp::Conv2d { groups, .. } if groups > 1 => {
            vec![TileSpan { rows: (0, c_in * taps), channels: (0, c_in * groups), partial: false }]
        }
        _ => layer_spans(c_in, taps, cfg.tile_rows, cfg.tile_split),
    }
}

/// Samples per pass of the periphery: the DAC, the tiles' convs, the ADC and the
/// back-scaling run on this many samples at a time, so that the elementwise passes over a
/// chunk's activations stay in the core's cache instead of streaming the whole batch
/// through memory (at batch 1,000 one ResNet-20 activation is 50 MB). 512 Ki input values
/// (2 MiB) per chunk, and only when the batch's input is above 4 Mi values (16 MiB, more
/// than a core's share of L3). Measured on ResNet-20 at 1 thread with the fused passes
/// (periphery trial / fp32 evaluation, fastest of 8 interleaved passes): at batch 1,000,
/// 512 Ki values 0.77-0.88x in five runs against 0.73-0.81x for 256 Ki (the size before
/// the passes were fused) and 0.77-0.79x for 1 Mi (two runs); at batch 100 (1.25 Mi
/// values) chunks gave 0.68-0.71x against 0.66-0.69x in one pass, within the run-to-run
/// spread, so a batch that small still runs in one pass. Every step is per sample, so the
/// chunking changes no value beyond the convs' float round-off (tests/analog.rs).
fn chunk_samples(xs: &Tensor) -> i64 {
    const CHUNK_VALUES: i64 = 1 << 19;
    const CHUNK_ABOVE: i64 = 1 << 22;
    let batch = xs.size()[0];
    let per_sample: i64 = xs.size()[1..].iter().product::<i64>().max(1);
    if batch * per_sample <= CHUNK_ABOVE {
        return batch.max(1);
    }
    (CHUNK_VALUES / per_sample).max(1)
}

/// The analog forward pass with periphery: xs -> y, using the weight `w` (already holding
/// the programmed and read-noisy conductances mapped back to weight units) and the layer's
/// weight bound `w_max` (the window's full scale, for normalisation); with `then`, the
/// BatchNorm and ReLU that follow the layer in evaluation, folded into the back-scaling.
/// (A crossbar layer keeps its `PeripheryPlan` and calls `PeripheryPlan::forward`; this
/// builds the plan for one pass.)
pub fn forward_with_periphery(
    layer: &LayerSpec,
    xs: &Tensor,
    w: &Tensor,
    w_max: &Tensor,
    cfg: &AnalogConfig,
    then: Option<&Epilogue>,
) -> Tensor {
    PeripheryPlan::new(layer, w_max, cfg).forward(layer, xs, w, then)
}

/// Whether the codes of both converters of `cfg` (at most 22 bits) round exactly in the
/// fused passes.
fn codes_fit(cfg: &AnalogConfig) -> bool {
    let fits = |c: &Converter| match c {
        Converter::Uniform { bits, .. } => fused::applies_to_codes(((1u64 << bits) - 1) as f64),
        Converter::Ideal => true,
    };
    fits(&cfg.dac) && fits(&cfg.adc)
}

/// `forward_with_periphery` with `chunk` samples per pass and the elementwise passes run
/// by `passes` (`FusedCpu` where the fused passes apply, else the tensor ops).
#[allow(clippy::too_many_arguments)]
pub fn forward_with_periphery_in_chunks(
    layer: &LayerSpec,
    xs: &Tensor,
    w: &Tensor,
    w_max: &Tensor,
    cfg: &AnalogConfig,
    then: Option<&Epilogue>,
    chunk: i64,
    passes: Passes,
) -> Tensor {
    PeripheryPlan::new(layer, w_max, cfg).forward_in_chunks(layer, xs, w, then, chunk, passes)
}

/// What a layer's periphery holds from one forward pass to the next: its converters, its
/// tiles, the weights' scale to codes and the back-scaling per output column. A crossbar
/// layer builds it once (`AnalogPath`) instead of at every pass: the dozen small tensor
/// ops that built these per pass, and the back-scaling's per-sample factors as tensors,
/// took 25-35 ms per 1,000 images at batch 100 (ResNet-20, 1 thread, timed around the
/// calls), more than the ADC pass; what is left per pass takes 5 ms. What changes between
/// passes is read at each: the read-noisy weights, the layer's bias and the BatchNorm
/// after it.
#[derive(Debug)]
pub struct PeripheryPlan {
    /// The window's full scale in weight units (per layer or per column), and as values.
    w_max: Tensor,
    w_max_values: Vec<f32>,
    /// The DAC's unit over the ADC's step: w / w_max times it is in codes, so a tile's
    /// conv gives ADC codes.
    code_unit: f64,
    /// The ADC's offset in codes (r / step) as every tile's bias.
    tile_bias: Option<Tensor>,
    /// DAC: 1/x_scale multiplier to codes, and (steps, range) when it quantizes.
    dac_factor: f64,
    dac_steps: Option<(f64, f64)>,
    /// ADC: (step, range, levels) when it quantizes.
    adc: Option<(f64, f64, f64)>,
    /// Output noise sigma in ADC codes.
    noise_codes: f64,
    /// Whether both converters' codes round exactly in the fused passes.
    codes_fit: bool,
    /// Each tile's input channels (first, count), and for a tile holding part of a
    /// channel's taps the 0/1 mask that zeroes the others (`tile_mask`).
    tiles: Vec<((i64, i64), Option<Tensor>)>,
    /// The per-column broadcast shape, and w_max in it.
    col_shape: Vec<i64>,
    w_scale: Tensor,
    /// Output columns (channels).
    columns: usize,
    /// The BatchNorm after the layer as the fused passes take it (`bn_values`).
    bn: Option<BnValues>,
}

/// A BatchNorm's scale and shift per channel, as values.
type ScaleShift = (Vec<f32>, Vec<f32>);

/// A BatchNorm's scale and shift as values, with the parameters they came from (running
/// variance, γ, β, running mean, ε).
#[derive(Debug)]
struct BnValues {
    params: Vec<f32>,
    eps: f64,
    scale: Vec<f32>,
    shift: Vec<f32>,
}

impl PeripheryPlan {
    /// The plan of `layer` (its shape and op) for the weight bound `w_max` under `cfg`.
    pub fn new(layer: &LayerSpec, w_max: &Tensor, cfg: &AnalogConfig) -> PeripheryPlan {
        // DAC: per-sample abs-max scaling to [-1, 1] (aihwkit's noise management), then
        // `steps` codes per side over [-range, range]: x_dac = codes · range / steps.
        let (dac_factor, x_unit, dac_steps) = match cfg.dac {
            Converter::Uniform { bits, range } => {
                let steps = ((1u64 << (bits - 1)) - 1).max(1) as f64;
                (steps / range, range / steps, Some((steps, range)))
            }
            Converter::Ideal => (1.0, 1.0, None),
        };
        // ADC: a tile's normalised partial sum y in [-r, r] becomes the code
        // round(clamp((y + r) / step, 0, levels)), and is read back as code · step − r.
        let adc = match cfg.adc {
            Converter::Uniform { bits, range } => {
                let levels = ((1u64 << bits) - 1) as f64;
                Some((2.0 * range / levels, range, levels))
            }
            Converter::Ideal => None,
        };
        // The conv computes (y + r) / step directly: weights scaled by the DAC's unit over
        // the ADC's step, the offset as the bias of every tile.
        let adc_step = adc.map(|(step, _, _)| step).unwrap_or(1.0);
        let c_out = layer.weight.size()[0];
        let device = w_max.device();
        let tile_bias =
            adc.map(|(step, r, _)| Tensor::full([c_out], r / step, (Kind::Float, device)));
        let tiles = layer_tiles(layer, cfg)
            .into_iter()
            .map(|t| (t.channels, t.partial.then(|| tile_mask(&layer.weight, &t))))
            .collect();
        let col_shape: Vec<i64> = match layer.op {
            LayerOp::Conv2d { .. } => vec![1, c_out, 1, 1],
            LayerOp::Linear => vec![1, c_out],
        };
        let w_scale = if w_max.dim() > 0 {
            w_max.reshape(col_shape.as_slice())
        } else {
            w_max.shallow_clone()
        };
        PeripheryPlan {
            w_max: w_max.shallow_clone(),
            w_max_values: fused::to_vec(w_max),
            code_unit: x_unit / adc_step,
            tile_bias,
            dac_factor,
            dac_steps,
            adc,
            noise_codes: cfg.output_noise / adc_step,
            codes_fit: codes_fit(cfg),
            tiles,
            col_shape,
            w_scale,
            columns: c_out as usize,
            bn: None,
        }
    }

    /// The scale and shift of the BatchNorm `e` as values: computed by its tensor ops
    /// (`Epilogue::affine`, whose rounding the tensor-op path has, and libtorch's CPU sqrt
    /// is not the correctly rounded one Rust's is), and kept while its parameters stay
    /// the same, which are compared value by value at every pass. Six small ops per layer
    /// and batch cost 20 ms per 1,000 images at batch 100 on ResNet-20 (1 thread).
    fn bn_values(&mut self, e: &Epilogue) -> ScaleShift {
        let bn = e.bn;
        let tensors = [&bn.running_var, &bn.weight, &bn.bias, &bn.running_mean];
        let params: Vec<f32> = tensors.iter().flat_map(|t| fused::to_vec(t)).collect();
        let current = |c: &&BnValues| c.params == params && c.eps == bn.eps;
        if let Some(c) = self.bn.as_ref().filter(current) {
            return (c.scale.clone(), c.shift.clone());
        }
        let (scale, shift) = e.affine();
        let (scale, shift) = (fused::to_vec(&scale), fused::to_vec(&shift));
        self.bn =
            Some(BnValues { params, eps: bn.eps, scale: scale.clone(), shift: shift.clone() });
        (scale, shift)
    }

    /// The forward pass of `layer` on `xs` with the read weights `w` (and `then` folded
    /// in), a cache-sized chunk of samples at a time, with the fused CPU passes wherever
    /// they apply.
    ///
    /// One conv per tile on purpose: all tiles as groups of one grouped conv (input
    /// channels zero-padded to whole tiles, ADC on the stacked partial sums) was measured
    /// 2-6x slower than this loop on ResNet-20's 32- and 64-channel layers with libtorch
    /// 2.11's CPU kernels (1 thread, 500 images), and padding 32 channels to two 28-channel
    /// tiles costs 75% more multiply-adds. Channels-last tile convs (no oneDNN reorders,
    /// the DAC and ADC passes changing the layout) were measured too: oneDNN's own timings
    /// put its channels-last conv of ResNet-20's 16-channel layers at 2.8 ms per batch of
    /// 100 against 2.0 ms plus 0.2 ms of reorders blocked, and gained 30 ms per 1,000
    /// images on the tiled layers, less than block-transposing DAC and ADC passes cost.
    pub fn forward(
        &mut self,
        layer: &LayerSpec,
        xs: &Tensor,
        w: &Tensor,
        then: Option<&Epilogue>,
    ) -> Tensor {
        let chunk = chunk_samples(xs);
        self.forward_in_chunks(layer, xs, w, then, chunk, Passes::FusedCpu)
    }

    /// `forward` with `chunk` samples per pass and the elementwise passes run by `passes`.
    pub fn forward_in_chunks(
        &mut self,
        layer: &LayerSpec,
        xs: &Tensor,
        w: &Tensor,
        then: Option<&Epilogue>,
        chunk: i64,
        passes: Passes,
    ) -> Tensor {
        let passes = if self.fused_passes_apply(xs) { passes } else { Passes::TensorOps };
        // The fused passes take the BN as values.
        let bn = then.filter(|_| passes == Passes::FusedCpu).map(|e| self.bn_values(e));
        let p = Periphery::new(self, layer, w, then, (passes, bn));
        let batch = xs.size()[0];
        // Output noise for the whole batch, tile by tile, drawn before any chunk: the same
        // draws in the same order as one pass over the batch would make.
        let noise: Vec<Tensor> = if self.noise_codes > 0.0 {
            let shape = p.output_shape(xs);
            (0..p.tiles.len())
                .map(|_| {
                    Tensor::randn(shape.as_slice(), (Kind::Float, xs.device())) * self.noise_codes
                })
                .collect()
        } else {
            Vec::new()
        };
        // The block's shortcut (`Epilogue::residual`), sliced with the batch.
        let residual = then.and_then(|e| e.residual);
        let run =
            |x: &Tensor, noise: &[Tensor], res: Option<&Tensor>, dst: Option<&Tensor>| match passes
            {
                Passes::TensorOps => {
                    let x_scale = p.sample_scale(x);
                    let y = p.partial_sums(x, &x_scale, noise);
                    p.to_output(y, &x_scale, res, dst)
                }
                Passes::FusedCpu => p.fused_pass(x, noise, res, dst),
            };
        if chunk >= batch {
            return run(xs, &noise, residual, None);
        }
        let mut out: Option<Tensor> = None;
        let mut s = 0;
        while s < batch {
            let n = chunk.min(batch - s);
            let x = xs.narrow(0, s, n);
            let noise_c: Vec<Tensor> = noise.iter().map(|t| t.narrow(0, s, n)).collect();
            // (A shortcut without the batch's samples, broadcast over them, is whole.)
            let per_sample = |r: &&Tensor| r.dim() == xs.dim() && r.size()[0] == batch;
            let res = residual.map(|r| match per_sample(&r) {
                true => r.narrow(0, s, n),
                false => r.shallow_clone(),
            });
            match &out {
                Some(dst) => {
                    let _ = run(&x, &noise_c, res.as_ref(), Some(&dst.narrow(0, s, n)));
                }
                // The first chunk's output gives the shape of the batch's.
                None => {
                    let y = run(&x, &noise_c, res.as_ref(), None);
                    let mut shape = y.size();
                    shape[0] = batch;
                    let dst = Tensor::empty(shape.as_slice(), (Kind::Float, xs.device()));
                    dst.narrow(0, 0, n).copy_(&y);
                    out = Some(dst);
                }
            }
            s += n;
        }
        out.expect("a batch has at least one sample")
    }

    /// Whether the fused CPU passes can run the input `xs`: a contiguous f32 input on the
    /// CPU, converters of at most 22 bits.
    fn fused_passes_apply(&self, xs: &Tensor) -> bool {
        self.codes_fit && fused::applies(xs)
    }
}

/// One forward pass's periphery: the plan, the weights in codes per tile and the
/// back-scaling per column (the chunks of the batch share them).
struct Periphery<'a> {
    plan: &'a PeripheryPlan,
    layer: &'a LayerSpec,
    /// Weights in codes: w / w_max · code_unit, so a tile's conv gives ADC codes.
    wn: Tensor,
    /// Each tile's input channels (first, count) and its weights in codes (`wn`'s slice,
    /// with the taps outside the tile's rows zeroed where it holds part of a channel).
    tiles: Vec<((i64, i64), Tensor)>,
    /// The BatchNorm (and ReLU) after the layer, folded into the back-scaling.
    then: Option<Epilogue<'a>>,
    /// For the fused passes: the layer's bias and the BN's scale and shift as values.
    bias: Option<Vec<f32>>,
    bn: Option<ScaleShift>,
}

impl<'a> Periphery<'a> {
    fn new(
        plan: &'a PeripheryPlan,
        layer: &'a LayerSpec,
        w: &Tensor,
        then: Option<&Epilogue<'a>>,
        (passes, bn): (Passes, Option<ScaleShift>),
    ) -> Periphery<'a> {
        let wn = w / &plan.w_max * plan.code_unit;
        let single = plan.tiles.len() == 1;
        let tiles = plan
            .tiles
            .iter()
            .map(|((first, count), mask)| {
                let w_t = if single { wn.shallow_clone() } else { wn.narrow(1, *first, *count) };
                let w_t = match mask {
                    Some(m) => &w_t * m,
                    None => w_t,
                };
                ((*first, *count), w_t)
            })
            .collect();
        // The bias as values, for the fused passes (read at every pass: a parameter).
        let fused_passes = passes == Passes::FusedCpu;
        let bias = layer.bias.as_ref().filter(|_| fused_passes).map(fused::to_vec);
        Periphery { plan, layer, wn, tiles, then: then.copied(), bias, bn }
    }

    /// The back-scaling's constants for the fused passes (`fused::BackScaling`).
    fn back_scaling(&self) -> fused::BackScaling<'_> {
        let (step, shift) = self.step_and_shift();
        fused::BackScaling {
            columns: self.plan.columns,
            w_max: &self.plan.w_max_values,
            step: step as f32,
            shift: shift as f32,
            bias: self.bias.as_deref(),
            bn: self.bn.as_ref().map(|(s, t)| (s.as_slice(), t.as_slice())),
        }
    }

    /// The ADC's step and −tiles · its offset r (1 and 0 for an ideal ADC).
    fn step_and_shift(&self) -> (f64, f64) {
        let (step, r) = self.plan.adc.map(|(step, r, _)| (step, r)).unwrap_or((1.0, 0.0));
        (step, -(self.tiles.len() as f64) * r)
    }

    /// The shape of the layer's output for the whole input (for drawing output noise).
    fn output_shape(&self, xs: &Tensor) -> Vec<i64> {
        let x0 = xs.narrow(0, 0, 1);
        let mut shape = self.conv(&x0.zeros_like(), &self.wn, None).size();
        shape[0] = xs.size()[0];
        shape
    }

    /// Per-sample input scale (abs-max), [n, 1, ...]. (max and −min: two read-only
    /// passes, cheaper than |x| then max.)
    fn sample_scale(&self, xs: &Tensor) -> Tensor {
        let dims: Vec<i64> = (1..xs.dim() as i64).collect();
        xs.amax(dims.as_slice(), true)
            .maximum(&xs.amin(dims.as_slice(), true).neg())
            .clamp_min(1e-12)
    }

    fn conv(&self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Tensor {
        match self.layer.op {
            LayerOp::Conv2d { stride, padding, dilation, groups } => x.conv2d(
                w,
                bias,
                [stride, stride],
                [padding, padding],
                [dilation, dilation],
                groups,
            ),
            LayerOp::Linear => x.linear(w, bias),
        }
    }

    /// Σ over tiles of the ADC codes of each tile's partial sum, for the samples `xs` with
    /// their input scales `x_scale` (`noise`: each tile's output noise in codes for these
    /// samples, or empty).
    fn partial_sums(&self, xs: &Tensor, x_scale: &Tensor, noise: &[Tensor]) -> Tensor {
        let plan = self.plan;
        // Inputs to codes, one tile's channels at a time: the multiply writes each tile's
        // inputs contiguously, which the tile's conv needs anyway (a strided slice would
        // be copied by the conv).
        let x_factor = x_scale.reciprocal() * plan.dac_factor;
        let to_codes = |x: &Tensor| {
            let mut codes = x * &x_factor;
            if let Some((steps, range)) = plan.dac_steps {
                if range < 1.0 {
                    // Only a range below the normalised inputs' [-1, 1] can clip.
                    let _ = codes.clamp_(-steps, steps);
                }
                let _ = codes.round_();
            }
            codes
        };
        let mut total: Option<Tensor> = None;
        for (tile, &((first, count), ref w_t)) in self.tiles.iter().enumerate() {
            let x_t = if self.tiles.len() == 1 {
                to_codes(xs)
            } else {
                to_codes(&xs.narrow(1, first, count))
            };
            let mut y = self.conv(&x_t, w_t, plan.tile_bias.as_ref());
            if let Some(n) = noise.get(tile) {
                y += n;
            }
            if let Some((_, _, levels)) = plan.adc {
                let _ = y.clamp_(0.0, levels).round_();
            }
            total = Some(match total {
                Some(mut t) => {
                    t += &y;
                    t
                }
                None => y,
            });
        }
        total.expect("a layer has at least one input channel")
    }

    /// The input channels of each tile, as (first, count).
    fn tile_channels(&self) -> Vec<(i64, i64)> {
        self.tiles.iter().map(|(channels, _)| *channels).collect()
    }

    /// The whole periphery for the samples `xs` with the fused CPU passes (`fused.rs`): the
    /// arithmetic of `sample_scale`, `partial_sums` and `to_output`, in their order, in two
    /// passes for a one-tile layer (the DAC; the ADC with the back-scaling, the shortcut
    /// `res` and the ReLU) instead of eight.
    fn fused_pass(
        &self,
        xs: &Tensor,
        noise: &[Tensor],
        res: Option<&Tensor>,
        dst: Option<&Tensor>,
    ) -> Tensor {
        let plan = self.plan;
        let (dac_clamp, dac_round) = match plan.dac_steps {
            Some((steps, range)) => ((range < 1.0).then_some(steps as f32), true),
            None => (None, false),
        };
        let tiles = self.tile_channels();
        let (x_scale, codes) =
            fused::dac_tiles(xs, &tiles, plan.dac_factor, dac_clamp, dac_round, 1e-12);
        let levels = plan.adc.map(|(_, _, levels)| levels as f32);
        let relu = self.then.is_some_and(|e| e.relu);
        let mut sum: Option<Tensor> = None;
        for (i, ((_, w_t), x_t)) in self.tiles.iter().zip(codes).enumerate() {
            let mut y = self.conv(&x_t, w_t, plan.tile_bias.as_ref()).contiguous();
            if let Some(n) = noise.get(i) {
                y += n;
            }
            if i + 1 == self.tiles.len() {
                let back = (self.back_scaling(), x_scale.as_slice());
                // A shortcut the pass cannot read as it writes (another shape, which torch's
                // add would broadcast, or not contiguous f32) is added by the tensor ops.
                let res_fits = |r: &&Tensor| fused::applies(r) && r.size() == y.size();
                return match res {
                    None => fused::adc_finish(sum.as_ref(), y, levels, back, None, relu, dst),
                    Some(r) if res_fits(&r) => {
                        fused::adc_finish(sum.as_ref(), y, levels, back, Some(r), relu, dst)
                    }
                    Some(r) => {
                        let out =
                            fused::adc_finish(sum.as_ref(), y, levels, back, None, false, dst);
                        add_then_relu(out, Some(r), relu)
                    }
                };
            }
            sum = Some(fused::adc_accumulate(sum, y, levels));
        }
        unreachable!("a layer has at least one tile")
    }

    /// The back-scaling's multiplier k = w_max · the sample's input scale · the ADC's step,
    /// and its offset −tiles · r · w_max · input scale + bias, in the output's broadcast
    /// shape; with a BatchNorm after the layer, both times its scale and the offset plus
    /// its shift, so that one multiply-add gives the BN's output (a chip's periphery
    /// applies BN the same way; the plain ops round differently by a float ulp or so).
    fn scale_and_offset(&self, x_scale: &Tensor) -> (Tensor, Tensor) {
        let (step, shift) = self.step_and_shift();
        let k = &self.plan.w_scale * x_scale;
        let offset = &k * shift;
        let offset = match &self.layer.bias {
            Some(bias) => offset + bias.reshape(self.plan.col_shape.as_slice()),
            None => offset,
        };
        let k = k * step;
        match &self.then {
            Some(e) => {
                let (scale, shift) = e.affine();
                let col = self.plan.col_shape.as_slice();
                let (scale, shift) = (scale.reshape(col), shift.reshape(col));
                (k * &scale, offset * scale + shift)
            }
            None => (k, offset),
        }
    }

    /// Back to weight × input units: out = Σ codes · k + offset (`back_scaling`), then
    /// the shortcut `res` and the ReLU when they follow; in place, or written into `dst` (a
    /// chunk of the batch's output).
    fn to_output(
        &self,
        mut y: Tensor,
        x_scale: &Tensor,
        res: Option<&Tensor>,
        dst: Option<&Tensor>,
    ) -> Tensor {
        let (k, offset) = self.scale_and_offset(x_scale);
        let out = match dst {
            // Multiply into the output's slice, then add in place: libtorch 2.11's CPU
            // addcmul with these broadcasts runs 3-5x slower than the two passes.
            Some(d) => {
                let mut d = y.mul_out(d, &k);
                d += offset;
                d
            }
            None => {
                y *= k;
                y += offset;
                y
            }
        };
        add_then_relu(out, res, self.then.is_some_and(|e| e.relu))
    }
}

/// out + `res` (torch's add, broadcasting), then max(·, 0) when `relu`, in place where
/// `out` allows (it may be a chunk's slice of the batch's output).
fn add_then_relu(mut out: Tensor, res: Option<&Tensor>, relu: bool) -> Tensor {
    if let Some(r) = res {
        out += r;
    }
    if relu {
        let _ = out.relu_();
    }
    out
}

/// The 0/1 mask over a tile's slice of the layer's `weight` ([c_out, channels, kh, kw] for
/// the tile's channels; the mask is [1, channels, kh, kw]) that keeps
/// the taps inside the tile's rows: a balanced split may cut a channel's taps between two
/// tiles, and each tile's conv then runs over the whole channel with the other tile's taps
/// at zero (zero products change no partial sum).
fn tile_mask(weight: &Tensor, tile: &TileSpan) -> Tensor {
    let size = weight.size();
    let taps: i64 = size[2..].iter().product::<i64>().max(1);
    let (start, len) = tile.rows;
    let (first, count) = tile.channels;
    let row = Tensor::arange(count * taps, (Kind::Float, weight.device())) + (first * taps) as f64;
    let keep = row.ge(start as f64).logical_and(&row.lt((start + len) as f64));
    let mut shape = vec![1i64, count];
    shape.extend_from_slice(&size[2..]);
    keep.to_kind(Kind::Float).reshape(shape.as_slice())
}
