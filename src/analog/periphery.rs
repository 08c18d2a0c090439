//! Periphery: input DAC, per-tile ADC and output noise. A layer's crossbar rows (its fan-in)
//! are split into tiles of `tile_rows`; each tile's partial sum is digitised on its own and
//! the digital results are summed, as on a multi-tile chip. Work stays on tensors: one conv
//! or matmul per tile, no per-sample loop.
use crate::config::{AnalogConfig, Converter};
use crate::nets::layers::{LayerOp, LayerSpec};
use tch::{Kind, Tensor};

/// Uniform signed quantization of values in [-1, 1] to 2^(bits-1) - 1 steps per side.
fn quantize_unit(x: &Tensor, bits: u32) -> Tensor {
    let steps = ((1u64 << (bits - 1)) - 1).max(1) as f64;
    (x.clamp(-1.0, 1.0) * steps).round() / steps
}

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
/// (1 thread, 500 images, on the loaded 2-core machine), and padding 32 channels to two
/// 28-channel tiles costs 75% more
/// multiply-adds.
pub fn forward_with_periphery(
    layer: &LayerSpec,
    xs: &Tensor,
    w: &Tensor,
    w_max: &Tensor,
    cfg: &AnalogConfig,
) -> Tensor {
    let b = xs.size()[0];
    // DAC: per-sample abs-max scaling to [-1, 1] (aihwkit's noise management), then bits.
    let dims: Vec<i64> = (1..xs.dim() as i64).collect();
    let x_scale = xs.abs().amax(dims.as_slice(), true).clamp_min(1e-12);
    let mut xn = xs / &x_scale;
    if let Converter::Uniform { bits, range } = cfg.dac {
        xn = quantize_unit(&(xn / range), bits) * range;
    }
    let wn = w / w_max;
    let c_in = match layer.op {
        LayerOp::Conv2d { .. } => xs.size()[1],
        LayerOp::Linear => xs.size()[1],
    };
    let groups = match layer.op {
        LayerOp::Conv2d { groups, .. } => groups,
        LayerOp::Linear => 1,
    };
    // Grouped convs are tiled per group as a whole (a group is its own small crossbar).
    let per_tile = if groups > 1 { c_in } else { channels_per_tile(layer, cfg.tile_rows) };
    let mut total: Option<Tensor> = None;
    let mut start = 0;
    while start < c_in {
        let len = per_tile.min(c_in - start);
        let x_t = xn.narrow(1, start, len);
        let w_t = if groups > 1 { wn.shallow_clone() } else { wn.narrow(1, start, len) };
        let mut y = match layer.op {
            LayerOp::Conv2d { stride, padding, dilation, groups } => x_t.conv2d(
                &w_t,
                None::<Tensor>,
                [stride, stride],
                [padding, padding],
                [dilation, dilation],
                groups,
            ),
            LayerOp::Linear => x_t.linear(&w_t, None::<Tensor>),
        };
        if cfg.output_noise > 0.0 {
            y = &y + y.randn_like() * cfg.output_noise;
        }
        if let Converter::Uniform { bits, range: r } = cfg.adc {
            let levels = ((1u64 << bits) - 1) as f64;
            let step = 2.0 * r / levels;
            y = ((y.clamp(-r, r) + r) / step).round() * step - r;
        }
        total = Some(match total {
            Some(t) => t + y,
            None => y,
        });
        start += len;
    }
    let y = total.expect("a layer has at least one input channel");
    // Back to weight x input units; w_max per column broadcasts over the channel dim.
    let w_scale = if w_max.dim() > 0 {
        let c = w_max.size()[0];
        match layer.op {
            LayerOp::Conv2d { .. } => w_max.reshape([1, c, 1, 1]),
            LayerOp::Linear => w_max.reshape([1, c]),
        }
    } else {
        w_max.shallow_clone()
    };
    let x_back = x_scale.reshape(
        std::iter::once(b).chain(std::iter::repeat_n(1, y.dim() - 1)).collect::<Vec<i64>>(),
    );
    let mut out = y * w_scale * x_back;
    if let Some(bias) = &layer.bias {
        let c = bias.size()[0];
        out = match layer.op {
            LayerOp::Conv2d { .. } => out + bias.reshape([1, c, 1, 1]),
            LayerOp::Linear => out + bias,
        };
    }
    out.to_kind(Kind::Float)
}
