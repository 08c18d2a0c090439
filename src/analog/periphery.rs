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
/// All tiles of a layer in one op: the input channels are zero-padded to a whole number of
/// tiles and the tiles become groups of one grouped conv (a batched matmul for linear
/// layers), so the partial sums of every tile come out stacked, [b, tiles·c_out, ...]; the
/// ADC then quantizes the stack in place with a handful of elementwise ops and one sum over
/// the tile axis adds the digital results. Same arithmetic as the tile-by-tile loop
/// (`forward_per_tile`, the test oracle), without its per-tile kernels and copies.
pub fn forward_with_periphery(
    layer: &LayerSpec,
    xs: &Tensor,
    w: &Tensor,
    w_max: &Tensor,
    cfg: &AnalogConfig,
) -> Tensor {
    let (xn, x_scale) = dac(xs, cfg);
    let wn = w / w_max;
    let c_in = xs.size()[1];
    let groups = match layer.op {
        LayerOp::Conv2d { groups, .. } => groups,
        LayerOp::Linear => 1,
    };
    // Grouped convs are tiled per group as a whole (a group is its own small crossbar).
    let per_tile = if groups > 1 { c_in } else { channels_per_tile(layer, cfg.tile_rows) };
    let tiles = (c_in + per_tile - 1) / per_tile;
    let c_out = wn.size()[0];
    let y = if tiles == 1 {
        let mut y = layer_op(layer, &xn, &wn, groups);
        adc_stacked(&mut y, cfg);
        y
    } else {
        let pad = tiles * per_tile - c_in;
        let (xp, wp) = if pad > 0 {
            (
                xn.constant_pad_nd(channel_pad(xn.dim(), pad)),
                wn.constant_pad_nd(channel_pad(wn.dim(), pad)),
            )
        } else {
            (xn, wn)
        };
        match layer.op {
            LayerOp::Conv2d { stride, padding, dilation, .. } => {
                // Weights [c_out, T·p, k, k] -> [T·c_out, p, k, k]: group t reads the input
                // channels of tile t and writes that tile's c_out partial sums.
                let k: Vec<i64> = wp.size()[2..].to_vec();
                let wt = wp
                    .reshape([c_out, tiles, per_tile, k[0], k[1]])
                    .transpose(0, 1)
                    .reshape([tiles * c_out, per_tile, k[0], k[1]]);
                let mut y = xp.conv2d(
                    &wt,
                    None::<Tensor>,
                    [stride, stride],
                    [padding, padding],
                    [dilation, dilation],
                    tiles,
                );
                adc_stacked(&mut y, cfg);
                let sz = y.size();
                y.reshape([sz[0], tiles, c_out, sz[2], sz[3]]).sum_dim_intlist(
                    1,
                    false,
                    Kind::Float,
                )
            }
            LayerOp::Linear => {
                // [T, b, p] x [T, p, c_out] -> [T, b, c_out], then the tile sum.
                let b = xp.size()[0];
                let xt = xp.reshape([b, tiles, per_tile]).transpose(0, 1);
                let wt = wp.reshape([c_out, tiles, per_tile]).permute([1, 2, 0]);
                let mut y = xt.bmm(&wt);
                adc_stacked(&mut y, cfg);
                y.sum_dim_intlist(0, false, Kind::Float)
            }
        }
    };
    finish(layer, y, w_max, &x_scale, adc_offset(cfg, tiles))
}

/// Zero padding of the channel axis (dim 1) at its end, in `constant_pad_nd`'s order (last
/// dim first).
fn channel_pad(dims: usize, pad: i64) -> Vec<i64> {
    let mut p = vec![0i64; 2 * (dims - 1)];
    p[2 * (dims - 2) + 1] = pad;
    p
}

/// Input DAC: per-sample abs-max scaling to [-1, 1] (aihwkit's noise management), then the
/// converter's bits. Returns the normalised input and the per-sample scale.
fn dac(xs: &Tensor, cfg: &AnalogConfig) -> (Tensor, Tensor) {
    let dims: Vec<i64> = (1..xs.dim() as i64).collect();
    let x_scale = xs.abs().amax(dims.as_slice(), true).clamp_min(1e-12);
    let mut xn = xs / &x_scale;
    if let Converter::Uniform { bits, range } = cfg.dac {
        xn = quantize_unit(&(xn / range), bits) * range;
    }
    (xn, x_scale)
}

fn layer_op(layer: &LayerSpec, x: &Tensor, w: &Tensor, groups: i64) -> Tensor {
    match layer.op {
        LayerOp::Conv2d { stride, padding, dilation, .. } => x.conv2d(
            w,
            None::<Tensor>,
            [stride, stride],
            [padding, padding],
            [dilation, dilation],
            groups,
        ),
        LayerOp::Linear => x.linear(w, None::<Tensor>),
    }
}

/// Output noise and ADC on stacked partial sums, in place. The ADC leaves the integer code
/// k = round((clamp(y) + r) / step) of each tile; `finish` turns the tile sum of codes into
/// Σ (k·step − r) = step·Σk − tiles·r, so the elementwise work on the stack is four ops.
fn adc_stacked(y: &mut Tensor, cfg: &AnalogConfig) {
    if cfg.output_noise > 0.0 {
        let noise = y.randn_like() * cfg.output_noise;
        let _ = y.g_add_(&noise);
    }
    if let Converter::Uniform { bits, range: r } = cfg.adc {
        let step = 2.0 * r / ((1u64 << bits) - 1) as f64;
        let _ = y.clamp_(-r, r).g_add_scalar_(r).g_div_scalar_(step).round_();
    }
}

/// (step, tiles·r) of the ADC's code-to-value map, or None without an ADC.
fn adc_offset(cfg: &AnalogConfig, tiles: i64) -> Option<(f64, f64)> {
    match cfg.adc {
        Converter::Uniform { bits, range: r } => {
            Some((2.0 * r / ((1u64 << bits) - 1) as f64, tiles as f64 * r))
        }
        Converter::Ideal => None,
    }
}

/// Codes back to values, then to weight × input units (w_max per column broadcasts over
/// the channel dim, the input scale per sample), plus the digital bias.
fn finish(
    layer: &LayerSpec,
    y: Tensor,
    w_max: &Tensor,
    x_scale: &Tensor,
    adc: Option<(f64, f64)>,
) -> Tensor {
    let b = y.size()[0];
    let y = match adc {
        Some((step, offset)) => y * step - offset,
        None => y,
    };
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

/// The tile-by-tile loop the stacked forward replaces: one conv or matmul per tile on a
/// narrowed slice, noise and ADC per tile, digital sum. Kept as the oracle of the tests
/// (same results within float tolerance) and for reading: it is the hardware's story.
pub fn forward_per_tile(
    layer: &LayerSpec,
    xs: &Tensor,
    w: &Tensor,
    w_max: &Tensor,
    cfg: &AnalogConfig,
) -> Tensor {
    let (xn, x_scale) = dac(xs, cfg);
    let wn = w / w_max;
    let c_in = xs.size()[1];
    let groups = match layer.op {
        LayerOp::Conv2d { groups, .. } => groups,
        LayerOp::Linear => 1,
    };
    let per_tile = if groups > 1 { c_in } else { channels_per_tile(layer, cfg.tile_rows) };
    let mut total: Option<Tensor> = None;
    let mut start = 0;
    while start < c_in {
        let len = per_tile.min(c_in - start);
        let x_t = xn.narrow(1, start, len);
        let w_t = if groups > 1 { wn.shallow_clone() } else { wn.narrow(1, start, len) };
        let mut y = layer_op(layer, &x_t, &w_t, groups);
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
    finish(layer, y, w_max, &x_scale, None)
}
