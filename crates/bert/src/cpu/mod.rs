//! CPU kernels of the packed encoder pass, forward and backward.
//!
//! Plain slices in and out; written so that LLVM vectorizes the inner loops (8-lane
//! accumulators, branch-free math), compiled for AVX2 + FMA behind a run-time check
//! ([`multiversion`]; the wider hand-written kernels take a capability token of [`isa`]), and
//! parallel over rows or (sequence, head) with rayon. Each kernel is
//! written once and serves inference and training alike: what training keeps for its backward
//! pass (LayerNorm's x̂ and 1/σ, attention probabilities, pre-activations) is an optional
//! output.
//!
//! * [`activation`]: erf, the activations and their derivatives;
//! * [`norm`]: LayerNorm with the dropout and residual before it, forward and backward;
//! * [`attention`]: attention over sequences stored back to back, forward and backward;
//! * [`dropout`]: inverted dropout whose mask is a pure function of a seed;
//! * [`few_rows`]: products of a few rows (one short text) by whole weight matrices;
//! * [`panels`]: dense products by f32 weights packed once into panels;
//! * [`int8`]: dense products with int8 weights and activations (VNNI or portable kernels);
//! * [`pool`]: a whole pass on rayon's pool, its workers kept awake until it ends;
//! * [`matmul`]: strided matrix views over slices, `gemm`, and the dense layer;
//! * [`isa`]: the one CPU-feature detection and its capability tokens.

use candle_core::{CpuStorage, Layout, Result};

pub(crate) mod activation;
pub(crate) mod attention;
pub(crate) mod dropout;
pub(crate) mod few_rows;
pub(crate) mod int8;
pub(crate) mod isa;
pub(crate) mod matmul;
pub(crate) mod norm;
pub(crate) mod panels;
pub(crate) mod pool;

/// Defines `$name`, which runs `$generic` compiled for AVX2 + FMA when the CPU has them and as
/// plain (baseline x86-64 or other target) code otherwise. Release builds target baseline
/// x86-64 (SSE2), so without this the loops below would run 4 lanes wide and without FMA.
macro_rules! multiversion {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $generic:ident) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $generic($($arg),*)
                }
                if let Some(_proof) = $crate::cpu::isa::avx2_fma() {
                    #[allow(unsafe_code)]
                    // SAFETY: `avx2` only needs the AVX2 and FMA instructions, which `_proof`
                    // shows the CPU has.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $generic($($arg),*)
        }
    };
}

/// Runs `$body` with the const `$c` equal to `$n` when `$n` is one of the listed values, and
/// to `$last` otherwise: a count known at run time becomes a const generic argument
/// (`const_dispatch!(rows, [1, 2, 3; 4], |R| kernel::<R>(…))`). Nest it for two counts.
macro_rules! const_dispatch {
    ($n:expr, [$($v:literal),* ; $last:expr], |$c:ident| $body:expr) => {
        match $n {
            $($v => {
                const $c: usize = $v;
                $body
            })*
            _ => {
                const $c: usize = $last;
                $body
            }
        }
    };
}

pub(crate) use const_dispatch;
pub(crate) use multiversion;

/// The output channels of `weights` stacked (Hugging Face's `(out, inner)` matrices, row-major).
///
/// # Panics
/// When `inner` is 0 or a weight's length is not a multiple of it: a bug, since the weights
/// were checked against the config when they were loaded. `what` names the caller.
pub(crate) fn stacked_outputs(weights: &[&[f32]], inner: usize, what: &str) -> usize {
    assert!(
        inner > 0 && weights.iter().all(|w| w.len() % inner == 0),
        "{what}: weight shapes"
    );
    weights.iter().map(|w| w.len() / inner).sum()
}

/// Rows per rayon task for row-wise kernels: enough work per task to amortize scheduling.
pub(crate) fn rows_per_task(width: usize) -> usize {
    (16 * 1024 / width.max(1)).max(1)
}

/// Dot product with 8 independent accumulators (vectorizes without reassociation flags).
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Sum with 8 independent accumulators.
#[inline(always)]
pub(crate) fn sum8(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for k in 0..8 {
            acc[k] += c[k];
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// `y ← y + a·x`.
#[inline(always)]
pub(crate) fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
}

/// The values of a contiguous f32 CPU tensor's storage.
///
/// # Errors
/// When the storage is not f32 or the layout is not contiguous.
pub(crate) fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("the packed CPU path runs in f32 only")
    };
    let (start, end) = layout.contiguous_offsets().ok_or_else(|| {
        candle_core::Error::Msg("the packed CPU path needs contiguous tensors".into())
    })?;
    Ok(&data[start..end])
}
