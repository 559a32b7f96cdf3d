//! Allocator tuning for the process.
//!
//! A training step (and, less so, a batch of inference) allocates and frees buffers of a few
//! megabytes dozens of times: activations, their gradients, the optimizer's temporaries. glibc's
//! `malloc` serves every request above its mmap threshold (128 KiB, raised adaptively up to 32
//! MiB) with a fresh `mmap` and returns it with `munmap` on free, so the kernel zeroes the same
//! pages again on every step. Measured on `sbert train --loss cosine` (2 cores, 30 steps): a third
//! of the run was spent in the kernel clearing pages, and raising the threshold took the run from
//! 13.9 to 22.1 pairs/s. Freed memory then stays in the process for reuse: the peak footprint is
//! unchanged, it is only not given back between steps.

/// Keeps freed blocks of any size in the heap for reuse instead of unmapping them, from now
/// on. Called once a model is loaded (`ModelArgs::load_with`) and before training starts:
/// loading frees each layer's weight tensors as their packed copy is made, and with this set
/// earlier those blocks would stay resident beside the copies (all-MiniLM-L6-v2: a 40 MB
/// higher peak).
///
/// A no-op outside glibc (macOS, musl and Windows allocators behave differently and are left
/// as they are).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: `mallopt` only sets allocator parameters (glibc takes the arena lock, so other
    // threads may be running), and both values are in range for an `int` parameter.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
