//! The process's heap policy. glibc hands every allocation above 32 MiB straight to the
//! kernel (mmap) and returns it on free, so each activation tensor of a large batch
//! (1,000 images × 16 channels × 28 × 28 floats = 50 MiB) is faulted in page by page on
//! every op. On the 2-core VM this doubled an fp32 evaluation of ResNet-20 (1.2 s → 0.6 s
//! with the heap kept) and cost the op-heavy analog periphery even more. Keeping freed
//! memory in the heap costs nothing in results (allocation never changes a value); the
//! process's resident size stays at its peak instead of shrinking between batches.

/// The same policy for other processes (the Python peers of `gqcim bench`), as glibc
/// tunables, so that the bench compares like with like.
pub const GLIBC_TUNABLES: &str = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647";

/// Serves every allocation from the heap and never trims it (glibc only; elsewhere a no-op).
/// Call first thing in `main`, before libtorch allocates.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation thresholds; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
