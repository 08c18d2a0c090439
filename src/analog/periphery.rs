//! Periphery: input DAC, per-tile ADC and output noise. A layer's crossbar rows (its fan-in)
//! are split into tiles of `tile_rows`; each tile's partial sum is digitised on its own and
//! the digital results are summed, as on a multi-tile chip. Work stays on tensors: one conv
//! or matmul per tile, no per-sample loop.
//!
//! Speed: every elementwise pass over a layer's activations costs a few percent of its
//! conv, and the plain formulas take about twenty of them per layer, so the converters are
//! written in integer codes with as few passes as the maths allows (the plain formulas are
//! in tests/analog.rs, which checks that both agree):
//! - the DAC scales each sample to codes in one multiply and clamps and rounds in place;
//! - the conv's weights carry the DAC's and the ADC's step and its bias the ADC's offset,
//!   so each tile's partial sum comes out of the conv already in ADC codes, clamped and
//!   rounded in place;
//! - the back-scaling (per sample, per column), the ADC offsets of all tiles and the bias
//!   are one in-place multiply-add at the end.
//!
//! (libtorch's fused `fake_quantize_*` and `aminmax` were measured slower on CPU: scalar
//! loops, 15-40 ms where a plain pass takes 1-2 ms on 6 M activations.)
use crate::config::{AnalogConfig, Converter};
use crate::nets::layers::{LayerOp, LayerSpec};
use tch::{Kind, Tensor};

/// Rows (inputs) per tile in whole input channels: a conv's crossbar row is one
/// (channel, ky, kx) tap, so a tile holds floor(tile_rows / k²) channels (at least one).
pub fn channels_per_tile(layer: &LayerSpec, tile_rows: i64) -> i64 {
    let w = layer.weight.size();
    let taps: i64 = w[2..].iter().product::<i64>().max(1);
    (tile_rows / taps).max(1)
}

/// The analog forward pass with periphery: xs -> y, using the weight `w` (already holding
/// the programmed and read-noisy conductances mapped back to weight units) and the layer's
/// weight bound `w_max` (the window's full scale, for normalisation).
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
) -> Tensor {
    // DAC: per-sample abs-max scaling to [-1, 1] (aihwkit's noise management), then
    // `steps` codes per side over [-range, range]: x_dac = codes · range / steps.
    // (max and −min: two read-only passes, cheaper than |x| then max.)
    let dims: Vec<i64> = (1..xs.dim() as i64).collect();
    let x_scale = xs
        .amax(dims.as_slice(), true)
        .maximum(&xs.amin(dims.as_slice(), true).neg())
        .clamp_min(1e-12);
    // Inputs to codes, one tile's channels at a time: the multiply writes each tile's
    // inputs contiguously, which the tile's conv needs anyway (a strided slice would be
    // copied by the conv).
    let (x_factor, x_unit, dac_steps) = match cfg.dac {
        Converter::Uniform { bits, range } => {
            let steps = ((1u64 << (bits - 1)) - 1).max(1) as f64;
            (x_scale.reciprocal() * (steps / range), range / steps, Some((steps, range)))
        }
        Converter::Ideal => (x_scale.reciprocal(), 1.0, None),
    };
    let to_codes = |x: &Tensor| {
        let mut codes = x * &x_factor;
        if let Some((steps, range)) = dac_steps {
            if range < 1.0 {
                // Only a range below the normalised inputs' [-1, 1] can clip.
                let _ = codes.clamp_(-steps, steps);
            }
            let _ = codes.round_();
        }
        codes
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
    let (adc_step, adc_offset) = adc.map(|(step, r, _)| (step, r)).unwrap_or((1.0, 0.0));
    // The conv computes (y + r) / step directly: weights scaled by the DAC's unit over the
    // ADC's step, the offset as the bias of every tile.
    let wn = w / w_max * (x_unit / adc_step);
    let c_out = w.size()[0];
    let tile_bias =
        adc.map(|(step, r, _)| Tensor::full([c_out], r / step, (Kind::Float, xs.device())));
    let (groups, c_in) = match layer.op {
        LayerOp::Conv2d { groups, .. } => (groups, xs.size()[1]),
        LayerOp::Linear => (1, xs.size()[1]),
    };
    // Grouped convs are tiled per group as a whole (a group is its own small crossbar).
    let per_tile = if groups > 1 { c_in } else { channels_per_tile(layer, cfg.tile_rows) };
    let mut total: Option<Tensor> = None;
    let mut tiles = 0i64;
    let mut start = 0;
    while start < c_in {
        let len = per_tile.min(c_in - start);
        let whole = groups > 1 || len == c_in;
        let x_t = if whole { to_codes(xs) } else { to_codes(&xs.narrow(1, start, len)) };
        let w_t = if whole { wn.shallow_clone() } else { wn.narrow(1, start, len) };
        let mut y = match layer.op {
            LayerOp::Conv2d { stride, padding, dilation, groups } => x_t.conv2d(
                &w_t,
                tile_bias.as_ref(),
                [stride, stride],
                [padding, padding],
                [dilation, dilation],
                groups,
            ),
            LayerOp::Linear => x_t.linear(&w_t, tile_bias.as_ref()),
        };
        if cfg.output_noise > 0.0 {
            y += y.randn_like() * (cfg.output_noise / adc_step);
        }
        if let Some((_, _, levels)) = adc {
            let _ = y.clamp_(0.0, levels).round_();
        }
        total = Some(match total {
            Some(mut t) => {
                t += &y;
                t
            }
            None => y,
        });
        tiles += 1;
        start += len;
    }
    let mut y = total.expect("a layer has at least one input channel");
    // Back to weight x input units in place: out = (Σ codes · step − tiles · r) · k + bias,
    // k = w_max (per column or per layer) · the sample's input scale.
    let col_shape: Vec<i64> = match layer.op {
        LayerOp::Conv2d { .. } => vec![1, c_out, 1, 1],
        LayerOp::Linear => vec![1, c_out],
    };
    let w_scale =
        if w_max.dim() > 0 { w_max.reshape(col_shape.as_slice()) } else { w_max.shallow_clone() };
    let k = &w_scale * &x_scale;
    let offset = &k * (-(tiles as f64) * adc_offset);
    let offset = match &layer.bias {
        Some(bias) => offset + bias.reshape(col_shape.as_slice()),
        None => offset,
    };
    y *= k * adc_step;
    y += offset;
    y.to_kind(Kind::Float)
}
