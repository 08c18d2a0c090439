//! Programming a trial's devices in one pass per step on the CPU (`kernels.rs`): the
//! programming noise, the clip and the stuck-at faults of `DeviceModel::program` then
//! `stuck_at` as one pass, the drift exponents' scale and shift as one, and the drift's
//! cap, multiply and clip as one, where the tensor ops take five, two and three passes
//! over every device. The random numbers are drawn by the same libtorch calls in the same
//! order and the arithmetic is the same IEEE operations in the same order, so a trial's
//! conductances are the same bits (tests/devices.rs compares both paths exactly).
use super::normal::normal_pair;
use crate::kernels::{multiversion, values, values_mut};
use tch::Tensor;

/// The clip after each perturbation: [lo, hi], or [lo, ∞) without `hi`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bounds {
    pub lo: f32,
    pub hi: Option<f32>,
}

#[inline(always)]
fn clip(v: f32, b: Bounds) -> f32 {
    let v = if v < b.lo { b.lo } else { v };
    match b.hi {
        Some(hi) if v > hi => hi,
        _ => v,
    }
}

/// Stuck-at faults drawn from uniforms u: below `at_gmin` the device sits at `g_min`;
/// with `at_gmax`, below `at_gmin + at_gmax` (and not below `at_gmin`) at `g_max`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Faults {
    pub at_gmin: f32,
    pub g_min: f32,
    /// (at_gmin + at_gmax, g_max) when devices also stick at g_max.
    pub high: Option<(f32, f32)>,
}

/// The programming noise's sigma: one for all devices, or one per device.
pub(super) enum Sigma<'a> {
    Same(f32),
    PerDevice(&'a Tensor),
}

/// clip(g + z · sigma), then the faults from `u`: a new tensor.
pub(super) fn program_and_fault(
    g: &Tensor,
    z: &Tensor,
    sigma: Sigma,
    bounds: Bounds,
    faults: Option<(&Tensor, Faults)>,
) -> Tensor {
    let out = g.empty_like();
    let sigma_values = match &sigma {
        Sigma::PerDevice(s) => Some(values(s)),
        Sigma::Same(_) => None,
    };
    let same = match sigma {
        Sigma::Same(s) => s,
        Sigma::PerDevice(_) => 0.0,
    };
    let inputs = [values(g), values(z)];
    let fault = faults.map(|(u, f)| (values(u), f));
    program_pass(values_mut(&out), inputs, (same, sigma_values), bounds, fault);
    out
}

multiversion!(
    program_pass(
        out: &mut [f32],
        inputs: [&[f32]; 2],
        sigma: (f32, Option<&[f32]>),
        bounds: Bounds,
        fault: Option<(&[f32], Faults)>
    ) = program_kernel
);

#[inline(always)]
fn program_kernel(
    out: &mut [f32],
    inputs: [&[f32]; 2],
    sigma: (f32, Option<&[f32]>),
    bounds: Bounds,
    fault: Option<(&[f32], Faults)>,
) {
    let [g, z] = inputs;
    match sigma {
        (_, Some(s)) => {
            for ((o, (&g, &z)), &s) in out.iter_mut().zip(g.iter().zip(z)).zip(s) {
                *o = clip(g + z * s, bounds);
            }
        }
        (s, None) => {
            for (o, (&g, &z)) in out.iter_mut().zip(g.iter().zip(z)) {
                *o = clip(g + z * s, bounds);
            }
        }
    }
    if let Some((u, f)) = fault {
        for (o, &u) in out.iter_mut().zip(u) {
            let ok = u >= f.at_gmin;
            let v = if ok { *o } else { f.g_min };
            *o = match f.high {
                Some((below, g_max)) if ok && u < below => g_max,
                _ => v,
            };
        }
    }
}

/// z · scale + shift: a new tensor.
pub(super) fn scale_shift(z: &Tensor, scale: f32, shift: f32) -> Tensor {
    let out = z.empty_like();
    scale_shift_pass(values_mut(&out), values(z), scale, shift);
    out
}

multiversion!(
    scale_shift_pass(
        out: &mut [f32],
        z: &[f32],
        scale: f32,
        shift: f32
    ) = scale_shift_kernel
);

#[inline(always)]
fn scale_shift_kernel(out: &mut [f32], z: &[f32], scale: f32, shift: f32) {
    for (o, &z) in out.iter_mut().zip(z) {
        *o = z * scale + shift;
    }
}

/// clip(g · min(factor, f32::MAX)): the drift's multiplicative factor applied (capped so
/// that a device at 0 stays 0 instead of 0 · ∞ = NaN); a new tensor.
pub(super) fn drift_pass(g: &Tensor, factor: &Tensor, bounds: Bounds) -> Tensor {
    let out = g.empty_like();
    drift_apply(values_mut(&out), [values(g), values(factor)], bounds);
    out
}

multiversion!(drift_apply(out: &mut [f32], inputs: [&[f32]; 2], bounds: Bounds) = drift_kernel);

#[inline(always)]
fn drift_kernel(out: &mut [f32], inputs: [&[f32]; 2], bounds: Bounds) {
    let [g, factor] = inputs;
    for (o, (&g, &f)) in out.iter_mut().zip(g.iter().zip(factor)) {
        let f = if f > f32::MAX { f32::MAX } else { f };
        *o = clip(g * f, bounds);
    }
}

/// One read of a differential pair in weight units with fresh Gaussian read noise:
/// ((clip(g⁺ · (z⁺ · σ + 1)) − clip(g⁻ · (z⁻ · σ + 1))) · alpha) · gdc, where (z⁺, z⁻) is
/// the normal pair of the weight's index under `seed` (`normal.rs`) and `factors` holds
/// alpha and gdc, each one value for the layer or one per output column (the leading
/// dimension of `g`); a new tensor.
pub(super) fn read_pair(
    g: [&Tensor; 2],
    seed: u64,
    sigma: f32,
    bounds: Bounds,
    factors: [&[f32]; 2],
) -> Tensor {
    let out = g[0].empty_like();
    read_pass(values_mut(&out), [values(g[0]), values(g[1])], (seed, sigma), bounds, factors);
    out
}

multiversion!(
    read_pass(
        out: &mut [f32],
        pair: [&[f32]; 2],
        noise: (u64, f32),
        bounds: Bounds,
        factors: [&[f32]; 2]
    ) = read_kernel
);

#[inline(always)]
fn read_kernel(
    out: &mut [f32],
    pair: [&[f32]; 2],
    noise: (u64, f32),
    bounds: Bounds,
    factors: [&[f32]; 2],
) {
    let [g_pos, g_neg] = pair;
    let (seed, sigma) = noise;
    let [alpha, gdc] = factors;
    let columns = alpha.len().max(gdc.len()).max(1);
    let per = out.len() / columns;
    if per == 0 {
        return;
    }
    let factor = |f: &[f32], c: usize| if f.len() == 1 { f[0] } else { f[c] };
    let read = |g: f32, z: f32| clip(g * (z * sigma + 1.0), bounds);
    for c in 0..columns {
        let (a, d) = (factor(alpha, c), factor(gdc, c));
        let first = c * per;
        let range = first..first + per;
        let pairs = g_pos[range.clone()].iter().zip(&g_neg[range.clone()]);
        for (i, (o, (&p, &n))) in out[range].iter_mut().zip(pairs).enumerate() {
            let (z_pos, z_neg) = normal_pair(seed, (first + i) as u64);
            *o = ((read(p, z_pos) - read(n, z_neg)) * a) * d;
        }
    }
}
