//! Dense products in int8: weights quantized per output channel (symmetric, at load), activations
//! per row (symmetric, on the fly), products accumulated in int32 and scaled back to f32.
//!
//! The activations are stored as unsigned bytes, `q + 128`, because the int8 dot-product
//! instructions (AVX-512 VNNI's `vpdpbusd`) multiply unsigned by signed bytes; the `128 · Σ w`
//! this adds to every output is known per output channel and taken off when scaling back.
//!
//! The weights are packed once, in blocks of [`BLOCK`] output channels: for each group of four
//! inner positions, the four bytes of each of the 64 channels side by side (256 bytes). One
//! broadcast of four activation bytes then meets one load of 16 channels, and each of a tile's
//! accumulators sums one (row, channel) pair, so nothing is reduced across lanes at the end.
//! The kernel is chosen at run time: AVX-512 VNNI when the CPU has it, otherwise plain code
//! compiled for AVX2 (and baseline x86-64 or other targets).

use rayon::prelude::*;

use super::multiversion;

/// Output channels per block of the packed layout: four vectors of 16 int32 accumulators.
const BLOCK: usize = 64;
/// Inner positions per group: the four bytes one `vpdpbusd` lane sums.
const GROUP: usize = 4;
/// Bytes of one group of one block.
const GROUP_BYTES: usize = BLOCK * GROUP;
/// Rows per register tile: 4 rows × 4 vectors = 16 accumulators.
const TILE_ROWS: usize = 4;
/// Zero point of the unsigned activations.
const ZERO_POINT: i32 = 128;
/// Up to this many rows, a product runs in parallel over blocks of channels rather than rows.
const FEW_ROWS: usize = 32;

/// A weight matrix `(out, inner)` (Hugging Face's layout) in int8, packed for the kernels.
#[derive(Clone)]
pub(crate) struct Int8Matrix {
    out: usize,
    inner: usize,
    /// `inner` in groups of [`GROUP`], the last one padded with zeros.
    groups: usize,
    /// `blocks × groups × GROUP_BYTES` bytes; channels past `out` are zero.
    packed: Vec<i8>,
    /// Per channel: the scale back to f32 (`max |w| / 127`).
    scales: Vec<f32>,
    /// Per channel: `128 · Σ q`, what the activations' zero point adds to its sum.
    offsets: Vec<i32>,
}

impl std::fmt::Debug for Int8Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Int8Matrix")
            .field("out", &self.out)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// `v / scale` rounded to the nearest integer (ties to even) and clamped to the symmetric int8
/// range; `v · inverse_scale` must not be NaN. Branch-free, so that the loops over a row
/// vectorize: adding 1.5 · 2²³ leaves the rounded integer in the low mantissa bits.
#[inline(always)]
// `f32::clamp` keeps the loops over a row from vectorizing (measured: 40 % slower end to end).
#[allow(clippy::manual_clamp)]
fn quantize_value(v: f32, inverse_scale: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    let v = v * inverse_scale;
    let v = if v > 127.0 {
        127.0
    } else if v < -127.0 {
        -127.0
    } else {
        v
    };
    (v + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32
}

/// The scale of a row of values: `max |v| / 127`, 1 for a row of zeros (any scale maps it to
/// zeros), NaN when a value is not finite (so that the product is NaN, not a silent zero).
#[inline(always)]
fn row_scale(row: &[f32]) -> f32 {
    // Eight lanes of maxima, and a sum of `v · 0` that is NaN exactly when some `v` is
    // infinite or NaN.
    let mut max = [0f32; 8];
    let mut poison = [0f32; 8];
    let chunks = row.chunks_exact(8);
    let mut tail = 0f32;
    let mut tail_poison = 0f32;
    for &v in chunks.remainder() {
        tail = if v.abs() > tail { v.abs() } else { tail };
        tail_poison += v * 0.0;
    }
    for c in chunks {
        for k in 0..8 {
            let a = c[k].abs();
            max[k] = if a > max[k] { a } else { max[k] };
            poison[k] += c[k] * 0.0;
        }
    }
    let max = max.iter().fold(tail, |m, &v| if v > m { v } else { m });
    let poison: f32 = poison.iter().sum::<f32>() + tail_poison;
    if poison.is_nan() {
        f32::NAN
    } else if max == 0.0 {
        1.0
    } else {
        max / 127.0
    }
}

impl Int8Matrix {
    /// Quantizes the matrices `weights` (each `(outᵢ, inner)`, row-major) stacked on top of
    /// each other, one scale per output channel.
    ///
    /// # Panics
    /// When a weight's length is not a multiple of `inner`: a bug, since the weights were
    /// checked against the config when they were loaded.
    pub(crate) fn quantize(weights: &[&[f32]], inner: usize) -> Self {
        let out = super::stacked_outputs(weights, inner, "int8 quantize");
        let groups = inner.div_ceil(GROUP);
        let blocks = out.div_ceil(BLOCK);
        let mut packed = vec![0i8; blocks * groups * GROUP_BYTES];
        let mut scales = vec![0f32; blocks * BLOCK];
        let mut offsets = vec![0i32; blocks * BLOCK];
        let rows = weights.iter().flat_map(|w| w.chunks_exact(inner));
        for (o, row) in rows.enumerate() {
            let scale = row_scale(row);
            // A channel with a non-finite weight keeps zeros and a NaN scale: its outputs
            // are NaN.
            let inverse = if scale.is_nan() { 0.0 } else { 1.0 / scale };
            let (block, lane) = (o / BLOCK, o % BLOCK);
            let mut sum = 0;
            for (k, &v) in row.iter().enumerate() {
                let q = quantize_value(v, inverse);
                sum += q;
                let (g, byte) = (k / GROUP, k % GROUP);
                packed[(block * groups + g) * GROUP_BYTES + lane * GROUP + byte] = q as i8;
            }
            scales[o] = scale;
            offsets[o] = ZERO_POINT * sum;
        }
        Self {
            out,
            inner,
            groups,
            packed,
            scales,
            offsets,
        }
    }

    /// Output channels.
    pub(crate) fn out(&self) -> usize {
        self.out
    }

    fn blocks(&self) -> usize {
        self.out.div_ceil(BLOCK)
    }

    fn block(&self, b: usize) -> &[i8] {
        let len = self.groups * GROUP_BYTES;
        &self.packed[b * len..][..len]
    }
}

/// Rows quantized per row, as unsigned bytes `q + 128`, each row padded to whole groups.
struct Int8Rows {
    bytes: Vec<u8>,
    stride: usize,
    scales: Vec<f32>,
}

fn quantize_rows(x: &[f32], inner: usize, groups: usize) -> Int8Rows {
    let stride = groups * GROUP;
    let rows = x.len() / inner;
    let mut bytes = vec![ZERO_POINT as u8; rows * stride];
    let mut scales = vec![0f32; rows];
    let per = super::rows_per_task(inner);
    bytes
        .par_chunks_mut(per * stride)
        .zip(scales.par_chunks_mut(per))
        .zip(x.par_chunks(per * inner))
        .for_each(|((bytes, scales), x)| quantize_row_block(bytes, scales, x, inner));
    Int8Rows {
        bytes,
        stride,
        scales,
    }
}

#[inline(always)]
fn quantize_row_block_generic(bytes: &mut [u8], scales: &mut [f32], x: &[f32], inner: usize) {
    let stride = bytes.len() / scales.len().max(1);
    for ((row, out), scale) in x
        .chunks_exact(inner)
        .zip(bytes.chunks_exact_mut(stride))
        .zip(scales)
    {
        *scale = row_scale(row);
        if scale.is_nan() {
            // The product of this row comes out NaN through its scale.
            continue;
        }
        let inverse = 1.0 / *scale;
        for (b, &v) in out.iter_mut().zip(row) {
            *b = (quantize_value(v, inverse) + ZERO_POINT) as u8;
        }
    }
}

multiversion!(fn quantize_row_block(bytes: &mut [u8], scales: &mut [f32], x: &[f32], inner: usize) => quantize_row_block_generic);

/// Rows per task when many rows are multiplied in blocks of rows: about four tasks per
/// thread, within [`TILE_ROWS`]..=64.
fn rows_per_job(rows: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    rows.div_ceil(threads * 4).clamp(TILE_ROWS, 64)
}

/// Rows `span` of `xq` times every block of channels of `w`, block after block (so that a
/// block's weights stay in cache across the rows), into `y (span.len(), w.out())`.
fn rows_times_matrix(xq: &Int8Rows, span: std::ops::Range<usize>, w: &Int8Matrix, y: &mut [f32]) {
    for b in 0..w.blocks() {
        rows_times_block(xq, span.clone(), w, b, y, w.out(), b * BLOCK);
    }
}

/// `x · Wᵀ` for `x (rows, inner)` into `y (rows, w.out())`, all on the calling thread: the
/// pieces of [`int8_feed_forward`]'s row blocks.
fn int8_product_on_thread(x: &[f32], inner: usize, w: &Int8Matrix, y: &mut [f32]) {
    let rows = x.len() / inner;
    let stride = w.groups * GROUP;
    let mut xq = Int8Rows {
        bytes: vec![ZERO_POINT as u8; rows * stride],
        stride,
        scales: vec![0f32; rows],
    };
    quantize_row_block(&mut xq.bytes, &mut xq.scales, x, inner);
    rows_times_matrix(&xq, 0..rows, w, y);
}

/// The feed-forward block `act(x · W₁ᵀ + b₁) · W₂ᵀ` in int8, `x (rows, inner)` to
/// `(rows, w2.out())`, run whole per block of rows
/// ([`feed_forward_by_row_blocks`](super::activation::feed_forward_by_row_blocks);
/// all-MiniLM-L6-v2, STSb corpus, 2 threads: 1,568 → 1,663 sentences/s; 1 thread unchanged). Equal to the two products and the
/// activation run one after the other. `None` for a handful of rows, which [`int8_product`]
/// parallelizes over channels instead.
pub(crate) fn int8_feed_forward(
    x: &[f32],
    inner: usize,
    w1: &Int8Matrix,
    b1: &[f32],
    act: crate::config::HiddenAct,
    w2: &Int8Matrix,
) -> Option<Vec<f32>> {
    let rows = x.len() / inner;
    if rows <= FEW_ROWS {
        return None;
    }
    let mid = w1.out();
    Some(super::activation::feed_forward_by_row_blocks(
        (x, inner),
        rows_per_job(rows),
        (b1, act),
        w2.out(),
        |x, h| int8_product_on_thread(x, inner, w1, h),
        |h, y| int8_product_on_thread(h, mid, w2, y),
    ))
}

/// `x · Wᵀ` for `x (rows, inner)` in f32 and `w` quantized: `(rows, w.out())`, in f32.
///
/// # Panics
/// When `inner` is not the matrix's: a bug in the caller, which takes both from the config.
pub(crate) fn int8_product(x: &[f32], inner: usize, w: &Int8Matrix) -> Vec<f32> {
    assert_eq!(inner, w.inner, "int8 product: inner sizes");
    let rows = x.len() / inner;
    let width = w.out();
    let mut y = vec![0f32; rows * width];
    if rows == 0 {
        return y;
    }
    let xq = quantize_rows(x, inner, w.groups);
    if rows <= FEW_ROWS {
        // Parallel over blocks of channels: each block's columns come back as a tile.
        let tiles: Vec<Vec<f32>> = (0..w.blocks())
            .into_par_iter()
            .map(|b| {
                let mut tile = vec![0f32; rows * BLOCK];
                rows_times_block(&xq, 0..rows, w, b, &mut tile, BLOCK, 0);
                tile
            })
            .collect();
        for (b, tile) in tiles.iter().enumerate() {
            let cols = (width - b * BLOCK).min(BLOCK);
            for (dst, src) in y.chunks_exact_mut(width).zip(tile.chunks_exact(BLOCK)) {
                dst[b * BLOCK..][..cols].copy_from_slice(&src[..cols]);
            }
        }
        return y;
    }
    // Parallel over blocks of rows.
    let per = rows_per_job(rows);
    y.par_chunks_mut(per * width)
        .enumerate()
        .for_each(|(job, y)| {
            let start = job * per;
            rows_times_matrix(&xq, start..start + y.len() / width, w, y);
        });
    y
}

/// Rows `span` of `xq` times block `b` of `w`, scaled to f32 into `y` (row stride `stride`,
/// first column `col`; `y`'s row 0 is `span.start`).
#[inline(always)]
fn rows_times_block_generic(
    xq: &Int8Rows,
    span: std::ops::Range<usize>,
    w: &Int8Matrix,
    b: usize,
    y: &mut [f32],
    stride: usize,
    col: usize,
) {
    let weights = w.block(b);
    let cols = (w.out - b * BLOCK).min(BLOCK);
    let scales = &w.scales[b * BLOCK..][..BLOCK];
    let offsets = &w.offsets[b * BLOCK..][..BLOCK];
    let mut acc = [[0i32; BLOCK]; TILE_ROWS];
    let mut r = span.start;
    while r < span.end {
        let n = (span.end - r).min(TILE_ROWS);
        let x = &xq.bytes[r * xq.stride..(r + n) * xq.stride];
        tile(x, xq.stride, weights, w.groups, &mut acc[..n]);
        for (i, acc) in acc[..n].iter().enumerate() {
            let sx = xq.scales[r + i];
            let out = &mut y[(r + i - span.start) * stride + col..][..cols];
            for (((y, &a), &o), &s) in out.iter_mut().zip(acc).zip(offsets).zip(scales) {
                *y = (a - o) as f32 * (s * sx);
            }
        }
        r += n;
    }
}

multiversion!(fn rows_times_block(xq: &Int8Rows, span: std::ops::Range<usize>, w: &Int8Matrix, b: usize, y: &mut [f32], stride: usize, col: usize) => rows_times_block_generic);

/// The int32 sums of up to [`TILE_ROWS`] rows of `x` (row stride `stride`) with one packed
/// block of channels.
fn tile(x: &[u8], stride: usize, w: &[i8], groups: usize, acc: &mut [[i32; BLOCK]]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(proof) = super::isa::avx512_vnni() {
        vnni::tile(proof, x, stride, w, groups, acc);
        return;
    }
    tile_portable(x, stride, w, groups, acc);
}

#[inline(always)]
fn tile_generic(x: &[u8], stride: usize, w: &[i8], groups: usize, acc: &mut [[i32; BLOCK]]) {
    for (r, acc) in acc.iter_mut().enumerate() {
        let row = &x[r * stride..][..groups * GROUP];
        *acc = [0; BLOCK];
        for (xs, ws) in row.chunks_exact(GROUP).zip(w.chunks_exact(GROUP_BYTES)) {
            let xs = [xs[0], xs[1], xs[2], xs[3]].map(i32::from);
            for (a, wo) in acc.iter_mut().zip(ws.chunks_exact(GROUP)) {
                *a += xs[0] * i32::from(wo[0])
                    + xs[1] * i32::from(wo[1])
                    + xs[2] * i32::from(wo[2])
                    + xs[3] * i32::from(wo[3]);
            }
        }
    }
}

multiversion!(fn tile_portable(x: &[u8], stride: usize, w: &[i8], groups: usize, acc: &mut [[i32; BLOCK]]) => tile_generic);

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::{
        __m512i, _mm512_dpbusd_epi32, _mm512_loadu_si512, _mm512_set1_epi32, _mm512_setzero_si512,
        _mm512_storeu_si512,
    };

    use super::{BLOCK, GROUP, GROUP_BYTES, TILE_ROWS};
    use crate::cpu::const_dispatch;
    use crate::cpu::isa::Avx512Vnni;

    /// [`super::tile`] with `vpdpbusd`.
    ///
    /// # Panics
    /// When `x` holds fewer than `acc.len()` rows of `groups` groups or `w` fewer than
    /// `groups` groups: a bug in the caller.
    pub(super) fn tile(
        _proof: Avx512Vnni,
        x: &[u8],
        stride: usize,
        w: &[i8],
        groups: usize,
        acc: &mut [[i32; BLOCK]],
    ) {
        let rows = acc.len();
        assert!(
            (1..=TILE_ROWS).contains(&rows)
                && x.len() >= (rows - 1) * stride + groups * GROUP
                && w.len() >= groups * GROUP_BYTES,
            "int8 tile: operand sizes"
        );
        const_dispatch!(rows, [1, 2, 3; 4], |R| {
            #[allow(unsafe_code)]
            // SAFETY: the CPU has AVX-512 F, BW and VNNI (`_proof`), and the assert above
            // keeps every load inside `x` and `w` (`rows = R`, at most TILE_ROWS = 4).
            unsafe {
                kernel::<R>(x, stride, w, groups, acc)
            }
        })
    }

    /// # Safety
    /// The CPU has AVX-512 F, BW and VNNI; `x` holds `R` rows of `groups · 4` bytes at
    /// `stride`, `w` holds `groups · 256` bytes, and `acc` has at least `R` rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[allow(unsafe_code)]
    unsafe fn kernel<const R: usize>(
        x: &[u8],
        stride: usize,
        w: &[i8],
        groups: usize,
        acc: &mut [[i32; BLOCK]],
    ) {
        let mut sums = [[_mm512_setzero_si512(); 4]; R];
        let (xp, wp) = (x.as_ptr(), w.as_ptr());
        for g in 0..groups {
            // SAFETY: group `g` of the weights lies inside `w` by the caller's contract.
            let wv: [__m512i; 4] = std::array::from_fn(|j| unsafe {
                _mm512_loadu_si512(wp.add(g * GROUP_BYTES + j * 64).cast())
            });
            for (r, sums) in sums.iter_mut().enumerate() {
                // SAFETY: four bytes of row `r` inside `x` by the caller's contract (unaligned
                // read).
                let four = unsafe {
                    xp.add(r * stride + g * GROUP)
                        .cast::<i32>()
                        .read_unaligned()
                };
                let xv = _mm512_set1_epi32(four);
                for (s, &wv) in sums.iter_mut().zip(&wv) {
                    *s = _mm512_dpbusd_epi32(*s, xv, wv);
                }
            }
        }
        for (sums, acc) in sums.iter().zip(acc.iter_mut()) {
            for (j, s) in sums.iter().enumerate() {
                // SAFETY: `acc` rows hold 64 i32, 16 per vector.
                unsafe { _mm512_storeu_si512(acc[j * 16..].as_mut_ptr().cast(), *s) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HiddenAct;

    fn reference(x: &[f32], inner: usize, w: &[f32]) -> Vec<f64> {
        x.chunks_exact(inner)
            .flat_map(|xr| {
                w.chunks_exact(inner).map(move |wr| {
                    xr.iter()
                        .zip(wr)
                        .map(|(&a, &b)| f64::from(a) * f64::from(b))
                        .sum::<f64>()
                })
            })
            .collect()
    }

    #[test]
    fn the_fused_feed_forward_equals_its_products_and_activation_run_in_turn() {
        let (inner, mid, out) = (40, 150, 37);
        let w1: Vec<f32> = (0..mid * inner).map(|v| (v as f32 * 0.37).sin()).collect();
        let w2: Vec<f32> = (0..out * mid).map(|v| (v as f32 * 0.11).cos()).collect();
        let b1: Vec<f32> = (0..mid).map(|v| (v as f32 * 0.05).sin()).collect();
        let (q1, q2) = (
            Int8Matrix::quantize(&[&w1], inner),
            Int8Matrix::quantize(&[&w2], mid),
        );
        assert!(
            int8_feed_forward(
                &vec![0.5; FEW_ROWS * inner],
                inner,
                &q1,
                &b1,
                HiddenAct::Gelu,
                &q2
            )
            .is_none(),
            "a handful of rows keeps the per-channel path"
        );
        for rows in [FEW_ROWS + 1, 200] {
            let x: Vec<f32> = (0..rows * inner)
                .map(|v| (v as f32 * 0.013).sin())
                .collect();
            let fused =
                int8_feed_forward(&x, inner, &q1, &b1, HiddenAct::Gelu, &q2).expect("many rows");
            let mut h = int8_product(&x, inner, &q1);
            crate::cpu::activation::bias_act(&mut h, &b1, HiddenAct::Gelu, false);
            let plain = int8_product(&h, mid, &q2);
            assert_eq!(fused, plain, "{rows} rows");
        }
    }

    #[test]
    fn int8_products_are_within_quantization_error_of_f32_for_few_and_many_rows() {
        // An inner size that is not a whole number of groups and outputs that leave a partial
        // block, on both sides of FEW_ROWS.
        let inner = 70;
        let (q, k) = (67, 30);
        let wq: Vec<f32> = (0..q * inner).map(|v| (v as f32 * 0.37).sin()).collect();
        let wk: Vec<f32> = (0..k * inner)
            .map(|v| (v as f32 * 0.11).cos() * 3.0)
            .collect();
        let m = Int8Matrix::quantize(&[&wq, &wk], inner);
        assert_eq!(m.out(), q + k);
        let w: Vec<f32> = wq.iter().chain(&wk).copied().collect();
        for rows in [1, 3, FEW_ROWS, FEW_ROWS + 5, 150] {
            let x: Vec<f32> = (0..rows * inner)
                .map(|v| (v as f32 * 0.013).sin() * 2.0 - 0.3)
                .collect();
            let got = int8_product(&x, inner, &m);
            let want = reference(&x, inner, &w);
            assert_eq!(got.len(), want.len());
            for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
                let (row, col) = (i / (q + k), i % (q + k));
                // Each factor is off by at most half a step: bound the sum of the errors.
                let xr = &x[row * inner..][..inner];
                let wr = &w[col * inner..][..inner];
                let (sx, sw) = (row_scale(xr), row_scale(wr));
                let bound: f64 = xr
                    .iter()
                    .zip(wr)
                    .map(|(&a, &b)| {
                        f64::from(a.abs() * sw / 2.0 + b.abs() * sx / 2.0 + sx * sw / 4.0)
                    })
                    .sum();
                assert!(
                    (f64::from(g) - e).abs() <= bound + 1e-4,
                    "{rows} rows, ({row}, {col}): {g} vs {e} (bound {bound})"
                );
            }
        }
    }

    #[test]
    fn the_run_time_kernel_and_the_portable_one_sum_the_same_integers() {
        let (inner, rows) = (96, 4);
        let groups = inner / GROUP;
        let w: Vec<f32> = (0..BLOCK * inner)
            .map(|v| ((v * 7919) % 255) as f32 - 127.0)
            .collect();
        let m = Int8Matrix::quantize(&[&w], inner);
        let x: Vec<f32> = (0..rows * inner)
            .map(|v| ((v * 104_729) % 255) as f32 - 127.0)
            .collect();
        let xq = quantize_rows(&x, inner, groups);
        let mut fast = [[0i32; BLOCK]; TILE_ROWS];
        let mut portable = [[0i32; BLOCK]; TILE_ROWS];
        for n in 1..=rows {
            tile(&xq.bytes, xq.stride, m.block(0), groups, &mut fast[..n]);
            tile_portable(&xq.bytes, xq.stride, m.block(0), groups, &mut portable[..n]);
            assert_eq!(fast[..n], portable[..n], "{n} rows");
        }
        // Extreme bytes (255 × -127 in every lane) must not saturate.
        assert!(portable
            .iter()
            .flatten()
            .any(|&v| v.abs() > i32::from(i16::MAX)));
    }

    #[test]
    fn values_round_to_the_nearest_integer_ties_to_even_and_clamp_at_127() {
        let cases = [
            (0.4, 0),
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (-2.5, -2),
            (-3.5, -4),
            (-0.6, -1),
            (126.7, 127),
            (1e9, 127),
            (-1e9, -127),
        ];
        for (v, want) in cases {
            assert_eq!(quantize_value(v, 1.0), want, "{v}");
        }
        assert_eq!(quantize_value(3.0, 0.5), 2, "scaled, then rounded to even");
    }

    #[test]
    fn a_non_finite_activation_makes_its_row_nan_not_zero() {
        let inner = 8;
        let w: Vec<f32> = (0..3 * inner).map(|v| v as f32).collect();
        let m = Int8Matrix::quantize(&[&w], inner);
        let mut x = vec![1f32; 2 * inner];
        x[3] = f32::NAN;
        let y = int8_product(&x, inner, &m);
        assert!(y[..3].iter().all(|v| v.is_nan()));
        assert!(y[3..].iter().all(|v| v.is_finite()));
    }
}
