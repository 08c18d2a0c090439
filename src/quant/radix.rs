//! Sorting weights fast: an LSD radix sort on order-preserving u32 keys of f32 (total order),
//! split over two threads for large layers; what `SortedWeights` sorts with.

/// Order-preserving map of an f32 to a u32 key (total order: -NaN < -inf < ... < -0 < +0 <
/// ... < inf < NaN, the same as `f32::total_cmp`).
fn f32_key(v: f32) -> u32 {
    let b = v.to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 0x8000_0000
    }
}

fn key_f32(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k & 0x7fff_ffff } else { !k })
}

/// Sorts ascending in `f32::total_cmp` order. Large slices are split in two halves radix-sorted
/// on two threads and merged; a single core sorts at a few ns per element, limited by memory.
pub fn radix_sort_f32(values: &mut [f32]) {
    const PARALLEL_MIN: usize = 1 << 17;
    let n = values.len();
    if n < 512 {
        // Small slices: the histograms would dominate.
        values.sort_unstable_by(f32::total_cmp);
        return;
    }
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let threads =
        *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |p| p.get()));
    if n < PARALLEL_MIN || threads < 2 {
        let keys = radix_sort_keys(values);
        for (v, &k) in values.iter_mut().zip(&keys) {
            *v = key_f32(k);
        }
        return;
    }
    let (lo, hi) = values.split_at(n / 2);
    let (a, b) = std::thread::scope(|s| {
        let other = s.spawn(|| radix_sort_keys(lo));
        let b = radix_sort_keys(hi);
        (other.join().expect("radix sort thread panicked"), b)
    });
    // Branch-free merge on the integer keys (total order, so NaNs cannot confuse it).
    let (mut i, mut j) = (0, 0);
    let mut out = values.iter_mut();
    while i < a.len() && j < b.len() {
        let take_a = a[i] <= b[j];
        let k = if take_a { a[i] } else { b[j] };
        i += usize::from(take_a);
        j += usize::from(!take_a);
        if let Some(v) = out.next() {
            *v = key_f32(k);
        }
    }
    for (v, &k) in out.zip(a[i..].iter().chain(&b[j..])) {
        *v = key_f32(k);
    }
}

/// Order-preserving u32 keys of `values`, sorted by a 4-pass (8-bit digit) LSD radix sort; all
/// digit histograms come from one counting pass, and passes where a single bucket holds every
/// key are skipped. (8-bit digits beat 11-bit ones here: 256 scatter streams stay cache-resident.)
fn radix_sort_keys(values: &[f32]) -> Vec<u32> {
    const RADIX: usize = 256;
    let n = values.len();
    let mut keys: Vec<u32> = Vec::with_capacity(n);
    let mut hist = [[0usize; RADIX]; 4];
    for &v in values {
        let k = f32_key(v);
        for (d, h) in hist.iter_mut().enumerate() {
            h[((k >> (8 * d)) & 0xff) as usize] += 1;
        }
        keys.push(k);
    }
    let mut tmp = vec![0u32; n];
    for (d, h) in hist.iter().enumerate() {
        if h.contains(&n) {
            continue;
        }
        let mut offsets = [0usize; RADIX];
        let mut run = 0;
        for (o, &c) in offsets.iter_mut().zip(h.iter()) {
            *o = run;
            run += c;
        }
        for &k in &keys {
            let digit = ((k >> (8 * d)) & 0xff) as usize;
            tmp[offsets[digit]] = k;
            offsets[digit] += 1;
        }
        std::mem::swap(&mut keys, &mut tmp);
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radix_sort_matches_total_cmp() {
        // Deterministic LCG so the unit test needs no RNG crate.
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        // Sizes for the small-slice, single-thread and two-thread split + merge paths.
        for len in [100, 5000, 300_000] {
            let mut v: Vec<f32> = (0..len)
                .map(|_| {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    f32::from_bits((s >> 32) as u32)
                })
                .collect();
            v.extend([0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, 1.5, -1.5, 1.5]);
            let mut want = v.clone();
            want.sort_unstable_by(f32::total_cmp);
            radix_sort_f32(&mut v);
            let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&v), bits(&want), "len {len}");
        }
    }
}
