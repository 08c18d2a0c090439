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
//!   joins it (its scale and shift per column, `Epilogue`), and so does a following ReLU,
//!   as a chip's digital periphery applies them: no separate BN and ReLU pass;
//! - on the CPU each of these steps is one fused pass (`fused.rs`, `Passes::FusedCpu`): the
//!   DAC with its abs-max, and per tile the ADC with the sum (the last tile's also with the
//!   back-scaling), two passes for a one-tile layer where the tensor ops take eight;
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
///
/// One conv per tile on purpose: all tiles as groups of one grouped conv (input channels
/// zero-padded to whole tiles, ADC on the stacked partial sums) was measured 2-6x slower
/// than this loop on ResNet-20's 32- and 64-channel layers with libtorch 2.11's CPU kernels
/// (1 thread, 500 images), and padding 32 channels to two 28-channel tiles costs 75% more
/// multiply-adds.
pub fn forward_with_periphery(
    layer: &LayerSpec,
    xs: &Tensor,
    w: &Tensor,
    w_max: &Tensor,
    cfg: &AnalogConfig,
    then: Option<&Epilogue>,
) -> Tensor {
    // The fused CPU passes wherever they apply (`forward_with_periphery_in_chunks` checks).
    let chunk = chunk_samples(xs);
    forward_with_periphery_in_chunks(layer, xs, w, w_max, cfg, then, chunk, Passes::FusedCpu)
}

/// Whether the fused CPU passes can run this layer's input under `cfg`: a contiguous f32
/// input on the CPU, converters of at most 22 bits.
pub fn fused_passes_apply(xs: &Tensor, cfg: &AnalogConfig) -> bool {
    let codes_fit = |c: &Converter| match c {
        Converter::Uniform { bits, .. } => fused::applies_to_codes(((1u64 << bits) - 1) as f64),
        Converter::Ideal => true,
    };
    fused::applies(xs) && codes_fit(&cfg.dac) && codes_fit(&cfg.adc)
}

/// `forward_with_periphery` with `chunk` samples per pass and the elementwise passes run
/// by `passes` (`FusedCpu` where `fused_passes_apply` holds, else the tensor ops).
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
    let passes = if fused_passes_apply(xs, cfg) { passes } else { Passes::TensorOps };
    let p = Periphery::new(layer, xs, w, w_max, cfg, then);
    let batch = xs.size()[0];
    // Output noise for the whole batch, tile by tile, drawn before any chunk: the same
    // draws in the same order as one pass over the batch would make.
    let noise: Vec<Tensor> = if cfg.output_noise > 0.0 {
        let shape = p.output_shape(xs);
        (0..p.tiles())
            .map(|_| Tensor::randn(shape.as_slice(), (Kind::Float, xs.device())) * p.noise_codes)
            .collect()
    } else {
        Vec::new()
    };
    let run = |x: &Tensor, noise: &[Tensor], dst: Option<&Tensor>| match passes {
        Passes::TensorOps => {
            let x_scale = p.sample_scale(x);
            let y = p.partial_sums(x, &x_scale, noise);
            p.to_output(y, &x_scale, dst)
        }
        Passes::FusedCpu => p.fused_pass(x, noise, dst),
    };
    if chunk >= batch {
        return run(xs, &noise, None);
    }
    let mut out: Option<Tensor> = None;
    let mut s = 0;
    while s < batch {
        let n = chunk.min(batch - s);
        let x = xs.narrow(0, s, n);
        let noise_c: Vec<Tensor> = noise.iter().map(|t| t.narrow(0, s, n)).collect();
        match &out {
            Some(dst) => {
                let _ = run(&x, &noise_c, Some(&dst.narrow(0, s, n)));
            }
            // The first chunk's output gives the shape of the batch's.
            None => {
                let y = run(&x, &noise_c, None);
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

/// A layer's converters and its weights prepared for the periphery pass (once per
/// forward; the chunks of the batch share them).
struct Periphery<'a> {
    layer: &'a LayerSpec,
    /// Weights in codes: w / w_max · (DAC unit / ADC step), so a tile's conv gives ADC codes.
    wn: Tensor,
    /// The ADC's offset in codes (r / step) as every tile's bias.
    tile_bias: Option<Tensor>,
    /// DAC: 1/x_scale multiplier to codes, and (steps, range) when it quantizes.
    dac_factor: f64,
    dac_steps: Option<(f64, f64)>,
    /// ADC: (step, range, levels) when it quantizes.
    adc: Option<(f64, f64, f64)>,
    /// Output noise sigma in ADC codes.
    noise_codes: f64,
    /// Each tile's input channels (first, count) and its weights in codes (`wn`'s slice,
    /// with the taps outside the tile's rows zeroed where it holds part of a channel).
    tiles: Vec<((i64, i64), Tensor)>,
    /// The per-column broadcast shape.
    col_shape: Vec<i64>,
    /// w_max in the output's broadcast shape.
    w_scale: Tensor,
    /// The BatchNorm after the layer as (scale, shift) in the output's broadcast shape,
    /// and whether a ReLU follows (`Epilogue`).
    then_affine: Option<(Tensor, Tensor)>,
    relu: bool,
}

impl<'a> Periphery<'a> {
    fn new(
        layer: &'a LayerSpec,
        xs: &Tensor,
        w: &Tensor,
        w_max: &Tensor,
        cfg: &AnalogConfig,
        then: Option<&Epilogue>,
    ) -> Periphery<'a> {
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
        let adc_step = adc.map(|(step, _, _)| step).unwrap_or(1.0);
        // The conv computes (y + r) / step directly: weights scaled by the DAC's unit over
        // the ADC's step, the offset as the bias of every tile.
        let wn = w / w_max * (x_unit / adc_step);
        let c_out = w.size()[0];
        let tile_bias =
            adc.map(|(step, r, _)| Tensor::full([c_out], r / step, (Kind::Float, xs.device())));
        let spans = layer_tiles(layer, cfg);
        let single = spans.len() == 1;
        let tiles = spans
            .into_iter()
            .map(|t| {
                let (first, count) = t.channels;
                let w_t = if single { wn.shallow_clone() } else { wn.narrow(1, first, count) };
                let w_t = if t.partial { &w_t * tile_mask(&w_t, &t) } else { w_t };
                (t.channels, w_t)
            })
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
        let then_affine = then.map(|e| {
            let (scale, shift) = e.affine();
            (scale.reshape(col_shape.as_slice()), shift.reshape(col_shape.as_slice()))
        });
        Periphery {
            layer,
            wn,
            tile_bias,
            dac_factor,
            dac_steps,
            adc,
            noise_codes: cfg.output_noise / adc_step,
            tiles,
            col_shape,
            w_scale,
            then_affine,
            relu: then.is_some_and(|e| e.relu),
        }
    }

    fn tiles(&self) -> i64 {
        self.tiles.len() as i64
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
        // Inputs to codes, one tile's channels at a time: the multiply writes each tile's
        // inputs contiguously, which the tile's conv needs anyway (a strided slice would
        // be copied by the conv).
        let x_factor = x_scale.reciprocal() * self.dac_factor;
        let to_codes = |x: &Tensor| {
            let mut codes = x * &x_factor;
            if let Some((steps, range)) = self.dac_steps {
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
            let mut y = self.conv(&x_t, w_t, self.tile_bias.as_ref());
            if let Some(n) = noise.get(tile) {
                y += n;
            }
            if let Some((_, _, levels)) = self.adc {
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
    /// passes for a one-tile layer instead of eight.
    fn fused_pass(&self, xs: &Tensor, noise: &[Tensor], dst: Option<&Tensor>) -> Tensor {
        let (dac_clamp, dac_round) = match self.dac_steps {
            Some((steps, range)) => ((range < 1.0).then_some(steps as f32), true),
            None => (None, false),
        };
        let tiles = self.tile_channels();
        let (x_scale, codes) =
            fused::dac_tiles(xs, &tiles, self.dac_factor, dac_clamp, dac_round, 1e-12);
        let levels = self.adc.map(|(_, _, levels)| levels as f32);
        let (k, offset) = self.output_scale(&x_scale);
        let mut sum: Option<Tensor> = None;
        for (i, ((_, w_t), x_t)) in self.tiles.iter().zip(codes).enumerate() {
            let mut y = self.conv(&x_t, w_t, self.tile_bias.as_ref()).contiguous();
            if let Some(n) = noise.get(i) {
                y += n;
            }
            if i + 1 == self.tiles.len() {
                return fused::adc_finish(sum.as_ref(), y, levels, (&k, &offset), self.relu, dst);
            }
            sum = Some(fused::adc_accumulate(sum, y, levels));
        }
        unreachable!("a layer has at least one tile")
    }

    /// `to_output`'s multiplier and offset per sample and output column, as values
    /// ([n · columns], row-major), computed with the same tensor ops.
    fn output_scale(&self, x_scale: &Tensor) -> (Vec<f32>, Vec<f32>) {
        let (k, offset) = self.scale_and_offset(x_scale);
        let mut shape = self.col_shape.clone();
        shape[0] = x_scale.size()[0];
        let per_column = |t: Tensor| fused::to_vec(&t.expand(shape.as_slice(), false).contiguous());
        (per_column(k), per_column(offset))
    }

    /// The back-scaling's multiplier k = w_max · the sample's input scale · the ADC's step,
    /// and its offset −tiles · r · w_max · input scale + bias, in the output's broadcast
    /// shape; with a BatchNorm after the layer, both times its scale and the offset plus
    /// its shift, so that one multiply-add gives the BN's output (a chip's periphery
    /// applies BN the same way; the plain ops round differently by a float ulp or so).
    fn scale_and_offset(&self, x_scale: &Tensor) -> (Tensor, Tensor) {
        let (adc_step, adc_offset) = self.adc.map(|(step, r, _)| (step, r)).unwrap_or((1.0, 0.0));
        let k = &self.w_scale * x_scale;
        let offset = &k * (-(self.tiles() as f64) * adc_offset);
        let offset = match &self.layer.bias {
            Some(bias) => offset + bias.reshape(self.col_shape.as_slice()),
            None => offset,
        };
        let k = k * adc_step;
        match &self.then_affine {
            Some((scale, shift)) => (k * scale, offset * scale + shift),
            None => (k, offset),
        }
    }

    /// Back to weight × input units: out = (Σ codes · step − tiles · r) · k + bias,
    /// k = w_max (per column or per layer) · the sample's input scale; in place, or
    /// written into `dst` (a chunk of the batch's output).
    fn to_output(&self, mut y: Tensor, x_scale: &Tensor, dst: Option<&Tensor>) -> Tensor {
        let (k, offset) = self.scale_and_offset(x_scale);
        let mut out = match dst {
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
        if self.relu {
            let _ = out.relu_();
        }
        out
    }
}

/// The 0/1 mask over a tile's weight slice `w_t` ([c_out, channels, kh, kw]) that keeps
/// the taps inside the tile's rows: a balanced split may cut a channel's taps between two
/// tiles, and each tile's conv then runs over the whole channel with the other tile's taps
/// at zero (zero products change no partial sum).
fn tile_mask(w_t: &Tensor, tile: &TileSpan) -> Tensor {
    let size = w_t.size();
    let taps: i64 = size[2..].iter().product::<i64>().max(1);
    let (start, len) = tile.rows;
    let first_row = tile.channels.0 * taps;
    let row =
        Tensor::arange(tile.channels.1 * taps, (Kind::Float, w_t.device())) + first_row as f64;
    let keep = row.ge(start as f64).logical_and(&row.lt((start + len) as f64));
    let mut shape = vec![1i64];
    shape.extend_from_slice(&size[1..]);
    keep.to_kind(Kind::Float).reshape(shape.as_slice())
}
