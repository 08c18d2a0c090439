//! Programming a trial's devices in one pass per step on the CPU (`kernels.rs`): the
//! programming noise, the clip and the stuck-at faults of `DeviceModel::program` then
//! `stuck_at` as one pass, the drift exponents' scale and shift as one, and the drift's
//! cap, multiply and clip as one, where the tensor ops take five, two and three passes
//! over every device. The random numbers are drawn by the same libtorch calls in the same
//! order and the arithmetic is the same IEEE operations in the same order, so a trial's
//! conductances are the same bits (tests/devices.rs compares both paths exactly).
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
