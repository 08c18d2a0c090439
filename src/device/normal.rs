//! The device model's random numbers on the CPU: standard normals and uniforms from a
//! counter-based generator, seeded from libtorch's.
//!
//! Why not libtorch's `randn` / `rand`: on the CPU they draw every number from a scalar
//! Mersenne twister (and `randn` transforms with scalar log, sin and cos), about 7 ns a
//! normal and 3 ns a uniform. A periphery trial draws two normals per weight on every
//! forward pass (5.4 M per 1,000 images for ResNet-20 at batch 100: some 40 ms, more than
//! the layers' ADC passes), and programming a trial draws a normal, a uniform and a normal
//! per device (67 M for ResNet-18: a quarter of a second, half of programming it). Here each
//! counter gets 64 random bits (the SplitMix64 finaliser of seed + golden-ratio multiple of
//! the counter, Steele, Lea & Flood 2014), which Box–Muller with polynomial log, sin and cos
//! turns into two normals, or which give a uniform, in loops the compiler vectorises. The
//! seed is one draw from libtorch's generator per call, so `tch::manual_seed` still fixes
//! every draw; tensors off the CPU, and `analog.random: libtorch`, use libtorch's own draws.
//!
//! Accuracy: 24-bit uniforms as in libtorch (|z| up to 5.9, a truncation with probability
//! 4·10⁻⁹); log, sin and cos within 10⁻⁷ relative (series remainders below). The tests check
//! the moments, tails, independence and the Kolmogorov–Smirnov distance to Φ.
use crate::kernels::{multiversion, values_mut};
use std::f32::consts::{FRAC_PI_2, LN_2, SQRT_2};
use tch::{Device, Kind, Tensor};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// A fresh seed from libtorch's CPU generator (one draw), so that `manual_seed` fixes the
/// draws made from it.
pub fn draw_seed() -> u64 {
    let t = Tensor::randint(1i64 << 62, [2], (Kind::Int64, Device::Cpu));
    let hi = t.int64_value(&[0]) as u64;
    let lo = t.int64_value(&[1]) as u64;
    mix64((hi << 2) ^ lo)
}

/// The SplitMix64 output function: a bijection of 64-bit words whose outputs for
/// consecutive inputs pass BigCrush.
#[inline(always)]
fn mix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The two independent standard normals of counter `i` under `seed`.
#[inline(always)]
pub(crate) fn normal_pair(seed: u64, i: u64) -> (f32, f32) {
    let bits = mix64(seed.wrapping_add(i.wrapping_mul(GOLDEN)));
    // Two 24-bit uniforms (exact in f32): u1 in (0, 1), never 0, so its log is finite;
    // u2 in [0, 1), the angle in turns.
    const UNIT: f32 = 1.0 / 16_777_216.0;
    let u1 = (((bits >> 40) as u32) as i32 as f32 + 0.5) * UNIT;
    let u2 = ((((bits >> 16) as u32) & 0xFF_FFFF) as i32 as f32) * UNIT;
    let r = (-2.0 * ln_unit(u1)).sqrt();
    let (sin, cos) = sin_cos_turns(u2);
    (r * cos, r * sin)
}

/// ln u for u in (0, 1] (a normal float): u = m · 2^e with m in [√½, √2), ln m = 2 atanh s,
/// s = (m − 1)/(m + 1), |s| ≤ 0.172, by its series to s⁹ (remainder < s¹¹/11 · 2 ≈ 2·10⁻⁹).
#[inline(always)]
fn ln_unit(u: f32) -> f32 {
    let bits = u.to_bits();
    let e = ((bits >> 23) as i32) - 127;
    let m = f32::from_bits((bits & 0x007F_FFFF) | 0x3F80_0000);
    let big = m > SQRT_2;
    let (m, e) = if big { (m * 0.5, e + 1) } else { (m, e) };
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let series = 1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0))));
    e as f32 * LN_2 + 2.0 * s * series
}

// Taylor coefficients (−1)^k / n! of sin and cos.
const S3: f32 = -1.0 / 6.0;
const S5: f32 = 1.0 / 120.0;
const S7: f32 = -1.0 / 5040.0;
const S9: f32 = 1.0 / 362_880.0;
const S11: f32 = -1.0 / 39_916_800.0;
const C2: f32 = -1.0 / 2.0;
const C4: f32 = 1.0 / 24.0;
const C6: f32 = -1.0 / 720.0;
const C8: f32 = 1.0 / 40_320.0;
const C10: f32 = -1.0 / 3_628_800.0;
const C12: f32 = 1.0 / 479_001_600.0;

/// (sin 2πu, cos 2πu) for u in [0, 1): the quadrant from 4u, and the angle φ in [0, π/2)
/// within it by Taylor series to φ¹¹ and φ¹² (remainders below 6·10⁻⁸ and 7·10⁻⁹).
#[inline(always)]
fn sin_cos_turns(u: f32) -> (f32, f32) {
    let t = u * 4.0;
    let q = t as i32;
    let phi = (t - q as f32) * FRAC_PI_2;
    let p2 = phi * phi;
    let s = phi * (1.0 + p2 * (S3 + p2 * (S5 + p2 * (S7 + p2 * (S9 + p2 * S11)))));
    let c = 1.0 + p2 * (C2 + p2 * (C4 + p2 * (C6 + p2 * (C8 + p2 * (C10 + p2 * C12)))));
    // Rotate by q quarter turns: (sin, cos) = (s, c), (c, −s), (−s, −c), (−c, s).
    let (a, b) = if q & 1 == 1 { (c, s) } else { (s, c) };
    let sin = if q >= 2 { -a } else { a };
    let cos = if q == 1 || q == 2 { -b } else { b };
    (sin, cos)
}

/// A uniform in [0, 1) (24 bits, as libtorch's float `rand`) of counter `i` under `seed`.
#[inline(always)]
fn uniform(seed: u64, i: u64) -> f32 {
    let bits = mix64(seed.wrapping_add(i.wrapping_mul(GOLDEN)));
    (((bits >> 40) as u32) as i32 as f32) * (1.0 / 16_777_216.0)
}

/// `n` pairs of standard normals under `seed` (counters 0..n), as the read kernel draws
/// them: for tests and for anyone who wants the draws of a read.
pub fn normal_pairs(seed: u64, n: usize) -> (Vec<f32>, Vec<f32>) {
    (0..n as u64).map(|i| normal_pair(seed, i)).unzip()
}

/// Whether `t` gets its draws here: f32 on the CPU (anything else: libtorch's generator).
fn drawn_here(t: &Tensor) -> bool {
    t.device() == Device::Cpu && t.kind() == Kind::Float
}

/// Standard normals shaped like `t`: `t.randn_like()`, from this generator on the CPU. The
/// pair of counter j fills elements j and j + ⌈n/2⌉.
pub fn randn_like(t: &Tensor) -> Tensor {
    drawn_like(t, fill_normal, Tensor::randn_like)
}

/// Uniforms in [0, 1) shaped like `t`: `t.rand_like()`, from this generator on the CPU.
pub fn rand_like(t: &Tensor) -> Tensor {
    drawn_like(t, fill_uniform, Tensor::rand_like)
}

/// A new tensor shaped like `t` filled by `fill` under a fresh seed where `drawn_here`,
/// else libtorch's `elsewhere(t)`.
fn drawn_like(t: &Tensor, fill: fn(&mut [f32], u64), elsewhere: fn(&Tensor) -> Tensor) -> Tensor {
    if !drawn_here(t) {
        return elsewhere(t);
    }
    let out = Tensor::empty(t.size().as_slice(), (Kind::Float, Device::Cpu));
    fill(values_mut(&out), draw_seed());
    out
}

multiversion!(fill_normal(out: &mut [f32], seed: u64) = fill_normal_kernel);

#[inline(always)]
fn fill_normal_kernel(out: &mut [f32], seed: u64) {
    let half = out.len().div_ceil(2);
    let (first, second) = out.split_at_mut(half);
    for (j, (a, b)) in first.iter_mut().zip(second.iter_mut()).enumerate() {
        (*a, *b) = normal_pair(seed, j as u64);
    }
    if first.len() > second.len() {
        first[half - 1] = normal_pair(seed, (half - 1) as u64).0;
    }
}

multiversion!(fill_uniform(out: &mut [f32], seed: u64) = fill_uniform_kernel);

#[inline(always)]
fn fill_uniform_kernel(out: &mut [f32], seed: u64) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = uniform(seed, i as u64);
    }
}
