//! The learning-rate schedule and the per-epoch generator seeds shared by training and
//! fine-tuning.

/// Linear warm-up to `peak` over `warmup_steps`, then a cosine decay to zero at `total_steps`.
pub fn learning_rate(peak: f64, step: usize, warmup_steps: usize, total_steps: usize) -> f64 {
    if step < warmup_steps {
        return peak * (step + 1) as f64 / warmup_steps as f64;
    }
    let span = (total_steps - warmup_steps).max(1) as f64;
    let t = (step - warmup_steps) as f64 / span;
    0.5 * peak * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
}

/// The generator seed for one epoch: data order and augmentation of epoch e depend only on
/// (seed, e), so a resumed run draws exactly what an uninterrupted one would have.
pub fn epoch_seed(seed: u64, epoch: usize) -> i64 {
    let x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(epoch as u64 + 1);
    (x ^ (x >> 29)) as i64 & i64::MAX
}
