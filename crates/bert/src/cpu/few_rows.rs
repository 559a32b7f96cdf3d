//! Products of a few rows (one short text: a handful of tokens) by whole weight matrices.
//!
//! `gemm` repacks the weights on every call, which for a few rows costs more than the product;
//! here each weight row is read once, straight from the layout it was loaded in, while the
//! rows of `x` stay in L1. The work is then the multiply-adds themselves: register tiles of
//! four weight rows by several rows of `x`, 16 lanes wide with AVX-512, 8 with AVX2 + FMA,
//! plain dot products elsewhere, chosen at run time.

use rayon::prelude::*;

use super::{dot, isa, multiversion};

#[inline(always)]
fn transposed_product_generic(yt: &mut [f32], x: &[f32], w: &[f32], inner: usize) {
    let rows = x.len() / inner;
    for (col, wr) in yt.chunks_exact_mut(rows).zip(w.chunks_exact(inner)) {
        for (y, xr) in col.iter_mut().zip(x.chunks_exact(inner)) {
            *y = dot(xr, wr);
        }
    }
}

multiversion!(fn transposed_product_portable(yt: &mut [f32], x: &[f32], w: &[f32], inner: usize) => transposed_product_generic);

/// `yt (out, rows) = w (out, inner) · x (rows, inner)ᵀ` with the widest kernel the CPU runs.
fn transposed_product(yt: &mut [f32], x: &[f32], w: &[f32], inner: usize) {
    Kernel::detect().run(yt, x, w, inner);
}

/// The kernels of [`transposed_product`], widest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// Four weight rows × up to six rows of `x`, 16 lanes (AVX-512F).
    #[cfg(target_arch = "x86_64")]
    Avx512(isa::Avx512),
    /// Four weight rows × up to three rows of `x`, 8 lanes (AVX2 + FMA).
    #[cfg(target_arch = "x86_64")]
    Fma(isa::Avx2Fma),
    /// Dot products, compiled for AVX2 + FMA where the CPU has them.
    Portable,
}

impl Kernel {
    /// The widest kernel this CPU runs.
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(proof) = isa::avx512() {
                return Self::Avx512(proof);
            }
            if let Some(proof) = isa::avx2_fma() {
                return Self::Fma(proof);
            }
        }
        Self::Portable
    }

    /// Every kernel this CPU runs, widest first (the tests check each one).
    #[cfg(test)]
    fn available() -> Vec<Self> {
        let mut all = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            all.extend(isa::avx512().map(Self::Avx512));
            all.extend(isa::avx2_fma().map(Self::Fma));
        }
        all.push(Self::Portable);
        all
    }

    fn run(self, yt: &mut [f32], x: &[f32], w: &[f32], inner: usize) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx512(proof) => avx512::transposed_product(proof, yt, x, w, inner),
            #[cfg(target_arch = "x86_64")]
            Self::Fma(proof) => fma::transposed_product(proof, yt, x, w, inner),
            Self::Portable => transposed_product_portable(yt, x, w, inner),
        }
    }
}

/// Calls `tile(o, r, n_w, n_x)` over `yt (out, rows) = w (out, inner) · x (rows, inner)ᵀ`
/// (`outputs` values) in register tiles: whole groups of `w_rows` weight rows (then the last
/// few one at a time) by up to `x_rows` rows of `x`, every `(weight row, row)` pair once, with
/// `o + n_w <= out` and `r + n_x <= rows`.
///
/// # Panics
/// When the lengths do not agree (`x` whole rows of `inner`, `w` whole rows, one output per
/// (weight row, row of `x`)): a bug in the caller.
#[cfg(target_arch = "x86_64")]
fn for_each_tile(
    outputs: usize,
    x: &[f32],
    w: &[f32],
    inner: usize,
    w_rows: usize,
    x_rows: usize,
    mut tile: impl FnMut(usize, usize, usize, usize),
) {
    assert!(inner > 0, "transposed product: empty rows");
    let rows = x.len() / inner;
    let out = w.len() / inner;
    assert!(
        rows * inner == x.len() && out * inner == w.len() && outputs == out * rows,
        "transposed product: operand sizes"
    );
    let mut o = 0;
    while o < out {
        let n_w = if out - o >= w_rows { w_rows } else { 1 };
        let mut r = 0;
        while r < rows {
            let n_x = (rows - r).min(x_rows);
            tile(o, r, n_w, n_x);
            r += n_x;
        }
        o += n_w;
    }
}

#[cfg(target_arch = "x86_64")]
mod fma {
    use crate::cpu::const_dispatch;
    use crate::cpu::isa::Avx2Fma;
    use std::arch::x86_64::{
        __m256, _mm256_castps256_ps128, _mm256_extractf128_ps, _mm256_fmadd_ps, _mm256_loadu_ps,
        _mm256_setzero_ps, _mm_add_ps, _mm_cvtss_f32, _mm_hadd_ps,
    };

    /// Weight rows per tile.
    const W: usize = 4;
    /// Rows of `x` per tile, at most.
    const X: usize = 3;

    /// [`super::transposed_product`] with AVX2 and FMA.
    ///
    /// # Panics
    /// When the lengths do not agree (`x` whole rows of `inner`, `w` whole rows, `yt` one value
    /// per (weight row, row of `x`)): a bug in the caller.
    pub(super) fn transposed_product(
        _proof: Avx2Fma,
        yt: &mut [f32],
        x: &[f32],
        w: &[f32],
        inner: usize,
    ) {
        let rows = x.len() / inner.max(1);
        super::for_each_tile(yt.len(), x, w, inner, W, X, |o, r, n_w, n_x| {
            const_dispatch!(n_w, [1; W], |NW| {
                const_dispatch!(n_x, [3, 2; 1], |NX| {
                    #[allow(unsafe_code)]
                    // SAFETY: the CPU has AVX2 and FMA (`_proof`); `for_each_tile` checked the
                    // operand sizes and keeps `o + n_w <= out` and `r + n_x <= rows` (`n_w` is 1
                    // or W, `n_x` at most 3), so every access is in bounds.
                    unsafe {
                        tile::<NW, NX>(yt, x, w, inner, rows, o, r)
                    }
                })
            })
        });
    }

    /// `yt[(o + i)·rows + r + j] = w[o + i] · x[r + j]` for `i < NW`, `j < NX`.
    ///
    /// # Safety
    /// AVX2 and FMA are available; `o + NW` weight rows and `r + NX` rows of `x` exist, and `yt`
    /// holds `(o + NW)·rows` values.
    #[target_feature(enable = "avx2,fma")]
    #[allow(unsafe_code, clippy::too_many_arguments)]
    unsafe fn tile<const NW: usize, const NX: usize>(
        yt: &mut [f32],
        x: &[f32],
        w: &[f32],
        inner: usize,
        rows: usize,
        o: usize,
        r: usize,
    ) {
        let mut acc: [[__m256; NX]; NW] = [[_mm256_setzero_ps(); NX]; NW];
        let wp = w[o * inner..(o + NW) * inner].as_ptr();
        let xp = x[r * inner..(r + NX) * inner].as_ptr();
        let full = inner / 8 * 8;
        let mut k = 0;
        while k < full {
            // SAFETY: `k + 8 <= inner`, so each load stays within a row sliced above.
            let wv: [__m256; NW] =
                std::array::from_fn(|i| unsafe { _mm256_loadu_ps(wp.add(i * inner + k)) });
            for j in 0..NX {
                // SAFETY: as for `wv`: row `j` of the `NX` sliced above, lanes `k..k + 8`.
                let xv = unsafe { _mm256_loadu_ps(xp.add(j * inner + k)) };
                for (acc, &wv) in acc.iter_mut().zip(&wv) {
                    acc[j] = _mm256_fmadd_ps(wv, xv, acc[j]);
                }
            }
            k += 8;
        }
        for (i, acc) in acc.iter().enumerate() {
            let wr = &w[(o + i) * inner..][..inner];
            for (j, &v) in acc.iter().enumerate() {
                let xr = &x[(r + j) * inner..][..inner];
                let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
                let s = _mm_hadd_ps(s, s);
                let s = _mm_hadd_ps(s, s);
                let tail: f32 = wr[full..].iter().zip(&xr[full..]).map(|(a, b)| a * b).sum();
                yt[(o + i) * rows + r + j] = _mm_cvtss_f32(s) + tail;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use crate::cpu::const_dispatch;
    use crate::cpu::isa::Avx512;
    use std::arch::x86_64::{
        __m128, __m256, __m512, _mm256_add_ps, _mm256_castpd_ps, _mm256_castps256_ps128,
        _mm256_extractf128_ps, _mm256_hadd_ps, _mm512_castpd512_pd256, _mm512_castps_pd,
        _mm512_extractf64x4_pd, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_maskz_loadu_ps,
        _mm512_reduce_add_ps, _mm512_setzero_ps, _mm_add_ps, _mm_prefetch, _mm_storeu_ps,
        _MM_HINT_T0,
    };

    /// Weight rows per tile.
    const W: usize = 4;
    /// Rows of `x` per tile, at most: 4 × 6 accumulators, four weight vectors and one of `x`
    /// fit the 32 vector registers.
    const X: usize = 6;
    /// Weight rows between the rows a tile reads and the rows it prefetches (two groups).
    /// Measured on one short text, one thread: 3.08 ms without, 2.85 ms with 4 or 8, 2.99 ms
    /// with 16.
    const AHEAD: usize = 8;

    /// [`super::transposed_product`] with AVX-512F.
    ///
    /// # Panics
    /// When the lengths do not agree (`x` whole rows of `inner`, `w` whole rows, `yt` one value
    /// per (weight row, row of `x`)): a bug in the caller.
    pub(super) fn transposed_product(
        _proof: Avx512,
        yt: &mut [f32],
        x: &[f32],
        w: &[f32],
        inner: usize,
    ) {
        let rows = x.len() / inner.max(1);
        super::for_each_tile(yt.len(), x, w, inner, W, X, |o, r, n_w, n_x| {
            const_dispatch!(n_w, [1; W], |NW| {
                const_dispatch!(n_x, [6, 5, 4, 3, 2; 1], |NX| {
                    #[allow(unsafe_code)]
                    // SAFETY: the CPU has AVX-512F (`_proof`); `for_each_tile` checked the
                    // operand sizes and keeps `o + n_w <= out` and `r + n_x <= rows` (`n_w` is 1
                    // or W, `n_x` at most 6), so every access is in bounds.
                    unsafe {
                        tile::<NW, NX>(yt, x, w, inner, rows, o, r)
                    }
                })
            })
        });
    }

    /// `yt[(o + i)·rows + r + j] = w[o + i] · x[r + j]` for `i < NW`, `j < NX`; the last
    /// `inner mod 16` values through masked loads.
    ///
    /// # Safety
    /// AVX-512F is available; `o + NW` weight rows and `r + NX` rows of `x` exist, and `yt`
    /// holds `(o + NW)·rows` values.
    #[target_feature(enable = "avx512f")]
    #[allow(unsafe_code, clippy::too_many_arguments)]
    unsafe fn tile<const NW: usize, const NX: usize>(
        yt: &mut [f32],
        x: &[f32],
        w: &[f32],
        inner: usize,
        rows: usize,
        o: usize,
        r: usize,
    ) {
        let mut acc: [[__m512; NX]; NW] = [[_mm512_setzero_ps(); NX]; NW];
        let wp = w[o * inner..(o + NW) * inner].as_ptr();
        let xp = x[r * inner..(r + NX) * inner].as_ptr();
        let full = inner / 16 * 16;
        let mut k = 0;
        while k < full {
            // SAFETY: `k + 16 <= inner`, so each load stays within a row sliced above.
            let wv: [__m512; NW] =
                std::array::from_fn(|i| unsafe { _mm512_loadu_ps(wp.add(i * inner + k)) });
            if r == 0 {
                // The first tile of a group of weight rows reads them from memory (or L3):
                // ask for the rows `AHEAD` further on, one cache line per line read here.
                for i in 0..NW {
                    // A hint: it never faults, whatever the address.
                    let ahead = wp.wrapping_add((AHEAD + i) * inner + k);
                    _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                }
            }
            for j in 0..NX {
                // SAFETY: as for `wv`: row `j` of the `NX` sliced above, lanes `k..k + 16`.
                let xv = unsafe { _mm512_loadu_ps(xp.add(j * inner + k)) };
                for (acc, &wv) in acc.iter_mut().zip(&wv) {
                    acc[j] = _mm512_fmadd_ps(wv, xv, acc[j]);
                }
            }
            k += 16;
        }
        if full < inner {
            // The masked lanes are neither read nor faulted on.
            let mask = (1u16 << (inner - full)) - 1;
            // SAFETY: the unmasked lanes `full..inner` lie within each row sliced above.
            let wv: [__m512; NW] = std::array::from_fn(|i| unsafe {
                _mm512_maskz_loadu_ps(mask, wp.add(i * inner + full))
            });
            for j in 0..NX {
                // SAFETY: as for `wv`, in row `j` of the `NX` sliced above.
                let xv = unsafe { _mm512_maskz_loadu_ps(mask, xp.add(j * inner + full)) };
                for (acc, &wv) in acc.iter_mut().zip(&wv) {
                    acc[j] = _mm512_fmadd_ps(wv, xv, acc[j]);
                }
            }
        }
        for j in 0..NX {
            let at = |i: usize| (o + i) * rows + r + j;
            if NW == W {
                let mut sums = [0f32; W];
                // SAFETY: `sums` holds the four values stored.
                unsafe {
                    _mm_storeu_ps(
                        sums.as_mut_ptr(),
                        sum4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]),
                    );
                }
                for (i, s) in sums.into_iter().enumerate() {
                    yt[at(i)] = s;
                }
            } else {
                for (i, acc) in acc.iter().enumerate() {
                    yt[at(i)] = _mm512_reduce_add_ps(acc[j]);
                }
            }
        }
    }

    /// The sums of the lanes of `a`, `b`, `c` and `d`, in that order: halves added, then three
    /// horizontal adds for the four at once.
    #[target_feature(enable = "avx512f")]
    fn sum4(a: __m512, b: __m512, c: __m512, d: __m512) -> __m128 {
        let half = |v: __m512| -> __m256 {
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
            let lo = _mm256_castpd_ps(_mm512_castpd512_pd256(_mm512_castps_pd(v)));
            _mm256_add_ps(lo, hi)
        };
        let ab = _mm256_hadd_ps(half(a), half(b));
        let cd = _mm256_hadd_ps(half(c), half(d));
        let abcd = _mm256_hadd_ps(ab, cd);
        _mm_add_ps(
            _mm256_castps256_ps128(abcd),
            _mm256_extractf128_ps::<1>(abcd),
        )
    }
}

/// [`super::matmul::product`] for a few rows: each weight row read once while the rows stay
/// in L1, parallel over blocks of weight rows of every weight at once. Each block fills its
/// own slice of the product transposed, which is then copied into place: blocks writing their
/// columns of `y` directly share cache lines across threads at the block edges and measured
/// 4 % slower on two threads.
pub(crate) fn few_rows_product(y: &mut [f32], x: &[f32], inner: usize, weights: &[&[f32]]) {
    let rows = x.len() / inner;
    if rows == 0 {
        return;
    }
    let width = y.len() / rows;
    // Blocks of whole register tiles (4 weight rows), about 64 KiB of weights each.
    let per = (16 * 1024 / inner).next_multiple_of(4).max(4);
    // The product transposed, `(Σ out, rows)`: each block of weight rows fills its own slice.
    let mut yt = vec![0f32; width * rows];
    let mut blocks = Vec::new();
    let mut rest = yt.as_mut_slice();
    for w in weights {
        let (mine, tail) = rest.split_at_mut(w.len() / inner * rows);
        blocks.extend(mine.chunks_mut(per * rows).zip(w.chunks(per * inner)));
        rest = tail;
    }
    blocks
        .into_par_iter()
        .for_each(|(yt, w)| transposed_product(yt, x, w, inner));
    for (o, column) in yt.chunks_exact(rows).enumerate() {
        for (i, &v) in column.iter().enumerate() {
            y[i * width + o] = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_matches_a_plain_loop_whatever_the_tile_remainders() {
        // Inner sizes with and without a partial last vector; weight and `x` row counts that
        // leave every tile remainder.
        for inner in [16, 37, 384] {
            for (out, rows) in [(1, 1), (4, 6), (7, 5), (9, 13), (12, 16)] {
                let w: Vec<f32> = (0..out * inner).map(|v| (v as f32 * 0.7).cos()).collect();
                let x: Vec<f32> = (0..rows * inner).map(|v| (v as f32 * 0.3).sin()).collect();
                for kernel in Kernel::available() {
                    let mut yt = vec![f32::NAN; out * rows];
                    kernel.run(&mut yt, &x, &w, inner);
                    for o in 0..out {
                        for r in 0..rows {
                            let want: f64 = (0..inner)
                                .map(|c| f64::from(x[r * inner + c]) * f64::from(w[o * inner + c]))
                                .sum();
                            let got = f64::from(yt[o * rows + r]);
                            assert!(
                                (got - want).abs() < 1e-3,
                                "{kernel:?} inner {inner}, ({o}, {r}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
