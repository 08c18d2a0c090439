//! Plumbing for the CPU kernels that fuse chains of elementwise tensor ops into one pass
//! (`analog/fused.rs` for the periphery, `device/fused.rs` for programming a trial): the
//! values of a contiguous f32 CPU tensor as a slice, and `multiversion!`, which builds a
//! kernel for AVX-512, AVX2 and the x86-64 baseline and runs the widest the CPU has.
//!
//! Why kernels at all: libtorch runs every op as its own pass over memory, and the crossbar
//! simulation is chains of cheap ops (scale, clamp, round, select) over activations and
//! conductances, where the passes, not the arithmetic, are the cost. A kernel does the
//! same IEEE operations in the same order (Rust never fuses a multiply and an add or
//! reorders float arithmetic on its own, at any vector width), so it gives the same bits as
//! the ops it replaces; each caller keeps the tensor-op path as its reference and for other
//! devices, and its tests compare the two exactly.
use tch::{Device, Kind, Tensor};

/// How a chain of elementwise steps runs: the same arithmetic either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Passes {
    /// libtorch ops, one pass each (any device; the reference).
    TensorOps,
    /// One CPU kernel per chain where the tensors allow it (contiguous f32 on the CPU);
    /// elsewhere the tensor ops.
    FusedCpu,
}

/// Whether the fused passes can run on `t`: a contiguous f32 tensor in CPU memory.
pub fn applies(t: &Tensor) -> bool {
    t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous()
}

/// A contiguous f32 CPU tensor's values.
pub(crate) fn values(t: &Tensor) -> &[f32] {
    assert!(applies(t), "CPU kernel on a tensor that is not contiguous f32 on the CPU");
    let n = t.numel();
    if n == 0 {
        return &[];
    }
    // SAFETY: `t` is a contiguous f32 tensor on the CPU (checked above) holding `n`
    // elements from `data_ptr`; the slice borrows `t`, which keeps the storage alive.
    unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, n) }
}

/// A contiguous f32 CPU tensor's values, to write. The callers pass tensors they allocated
/// themselves (or their own output slice), so no other view of the storage is read or
/// written while the slice lives.
#[allow(clippy::mut_from_ref)]
pub(crate) fn values_mut(t: &Tensor) -> &mut [f32] {
    assert!(applies(t), "CPU kernel on a tensor that is not contiguous f32 on the CPU");
    let n = t.numel();
    if n == 0 {
        return &mut [];
    }
    // SAFETY: as in `values`; exclusivity as documented above.
    unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n) }
}

/// Defines `fn $name(args)` that runs the kernel `$body` (an `#[inline(always)]` fn over
/// slices) compiled for the widest vector unit the CPU reports.
macro_rules! multiversion {
    ($name:ident($($arg:ident: $ty:ty),*) = $body:ident) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked just above).
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub(crate) use multiversion;

/// The widest vector instruction set of this CPU, the one `multiversion!` dispatches to
/// (`avx512f`, `avx2` or `baseline`), for the results' record of the CPU (`run::cpu_info`).
pub fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512f";
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return "avx2";
        }
    }
    "baseline"
}

/// A float tensor's values (copied; any layout or device).
pub fn to_vec(t: &Tensor) -> Vec<f32> {
    if applies(t) {
        // No conversion ops: the per-pass readers (a layer's bias, its BatchNorm) call this
        // for every layer and batch, and three ops cost more than the copy.
        return values(t).to_vec();
    }
    let t = t.to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
    values(&t).to_vec()
}
