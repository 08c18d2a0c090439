//! Geometric augmentation of own-dataset batches, applied to images, boxes and masks with one
//! draw per sample: a horizontal flip with probability 1/2 and a zoom about the input centre
//! by a factor drawn uniformly from [1 - j, 1 + j] (YOLOv5's `random_perspective` scale term;
//! the scenes get the same variety from their random item sizes). One affine sampling grid per
//! batch moves the pixels (bilinear for images, nearest for masks); the boxes go through the
//! same map in closed form, so a box drawn into an image stays on its pixels.
//!
//! Geometry: with `align_corners = false` a continuous pixel coordinate p in [0, S] is the
//! normalised n = 2p/S - 1, and the sampling grid reads input n_in = n_out / s (negated under
//! a flip), so a point moves to p_out = S/2 + s (p_in - S/2), mirrored as S - p_out.
use super::voc_seg::IGNORE_INDEX;
use tch::{Device, Kind, Tensor};

/// One batch's draws: flip bool [b], zoom factor float [b].
#[derive(Debug)]
pub struct Jitter {
    pub flip: Tensor,
    pub scale: Tensor,
}

impl Jitter {
    /// Draws from the global generator (seeded per epoch by the caller): `b` flips (when
    /// `hflip`) and `b` zoom factors (when `scale_jitter` > 0).
    pub fn draw(b: i64, hflip: bool, scale_jitter: f64, device: Device) -> Jitter {
        let flip = if hflip {
            Tensor::rand([b], (Kind::Float, device)).lt(0.5)
        } else {
            Tensor::zeros([b], (Kind::Bool, device))
        };
        let scale = if scale_jitter > 0.0 {
            Tensor::rand([b], (Kind::Float, device)) * (2.0 * scale_jitter) + (1.0 - scale_jitter)
        } else {
            Tensor::ones([b], (Kind::Float, device))
        };
        Jitter { flip, scale }
    }

    /// Fixed draws (tests): flip and zoom per sample.
    pub fn fixed(flip: &[bool], scale: &[f32], device: Device) -> Jitter {
        let flip: Vec<u8> = flip.iter().map(|&f| u8::from(f)).collect();
        Jitter {
            flip: Tensor::from_slice(&flip).to_kind(Kind::Bool).to(device),
            scale: Tensor::from_slice(scale).to(device),
        }
    }

    /// The sampling grid [b, h, w, 2] for outputs of `size` ([b, c, h, w]).
    fn grid(&self, size: &[i64]) -> Tensor {
        let inv = self.scale.reciprocal();
        let sx = inv.where_self(&self.flip.logical_not(), &inv.neg());
        let zero = inv.zeros_like();
        let theta = Tensor::stack(&[&sx, &zero, &zero, &zero, &inv, &zero], 1).view([-1, 2, 3]);
        Tensor::affine_grid_generator(&theta, size, false)
    }

    /// xs: float [b, c, h, w], normalised (the zero fill of zoomed-out borders is the mean).
    pub fn images(&self, xs: &Tensor) -> Tensor {
        xs.grid_sampler_2d(&self.grid(&xs.size()), 0, 0, false)
    }

    /// masks: int64 [b, h, w] -> int64 [b, h, w]; zoomed-out borders get the ignore label.
    pub fn masks(&self, ys: &Tensor) -> Tensor {
        let (b, h, w) = ys.size3().expect("masks are [b, h, w]");
        // Shift by one so that the sampler's zero fill is told apart from class 0.
        let shifted = (ys + 1).to_kind(Kind::Float).view([b, 1, h, w]);
        let out = shifted.grid_sampler_2d(&self.grid(&[b, 1, h, w]), 1, 0, false).view([b, h, w]);
        let out = out.round().to_kind(Kind::Int64);
        (&out - 1).masked_fill(&out.eq(0), IGNORE_INDEX)
    }

    /// gt: float [b, G, 5] (class, x1, y1, x2, y2) on a `width` x `height` input -> the same
    /// boxes moved, clipped to the input; boxes left under one pixel wide or high become
    /// padding (class -1).
    pub fn boxes(&self, gt: &Tensor, width: i64, height: i64) -> Tensor {
        let s = self.scale.view([-1, 1]);
        let (cw, ch) = (width as f64 / 2.0, height as f64 / 2.0);
        let col = |i: i64| gt.select(-1, i);
        let mx = |x: Tensor| (x - cw) * &s + cw;
        let (ax1, ax2) = (mx(col(1)), mx(col(3)));
        let flip = self.flip.view([-1, 1]);
        let x1 = (-&ax2 + width as f64).where_self(&flip, &ax1).clamp(0.0, width as f64);
        let x2 = (-&ax1 + width as f64).where_self(&flip, &ax2).clamp(0.0, width as f64);
        let my = |y: Tensor| ((y - ch) * &s + ch).clamp(0.0, height as f64);
        let (y1, y2) = (my(col(2)), my(col(4)));
        let gone = (&x2 - &x1).lt(1.0).logical_or(&(&y2 - &y1).lt(1.0)).logical_or(&col(0).lt(0.0));
        let class = col(0).masked_fill(&gone, -1.0);
        Tensor::stack(&[class, x1, y1, x2, y2], -1)
    }
}
