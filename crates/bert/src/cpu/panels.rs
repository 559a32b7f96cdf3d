//! Dense products by weights packed once into panels, for the packed inference pass.
//!
//! `gemm` packs its right-hand side on every call: for `x · Wᵀ` that is the whole weight
//! matrix, once per thread per product. A [`PanelMatrix`] holds the weights already in the
//! order the register tile reads them: panels of [`PANEL`] output channels, each `inner` steps
//! of [`PANEL`] contiguous values, 64-byte aligned, made once when a model is prepared for
//! inference. The tile keeps up to six rows by one panel in registers (24 AVX-512
//! accumulators), broadcasting one value of `x` per row and step, reading `x` where it lies
//! (nothing is packed per call) and prefetching the panel a few steps ahead. The threads
//! split the rows of a batch, or the panels of a few rows (one short text, whose rows then
//! read each panel once); each runs a group of panels at a time against its rows, the group
//! kept in its L2.

use rayon::prelude::*;

use super::{const_dispatch, isa};

/// Output channels per panel: four AVX-512 vectors.
pub(crate) const PANEL: usize = 64;
/// AVX-512 vectors per panel step.
const VECTORS: usize = PANEL / 16;

/// One cache line of f32 values: the unit the panels are allocated in, so that every panel
/// row (one step of [`PANEL`] values) starts on a line.
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// Weight matrices `[W₁; W₂; …]` (each `(outᵢ, inner)`, Hugging Face's layout) stacked and
/// repacked for `x · Wᵀ`: value `(c, k)` of the stack sits at `panel(c / PANEL)[k·PANEL + c
/// mod PANEL]`; the channels past the last one are zero.
#[derive(Clone)]
pub(crate) struct PanelMatrix {
    inner: usize,
    out: usize,
    lines: Vec<Line>,
}

impl std::fmt::Debug for PanelMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PanelMatrix")
            .field("inner", &self.inner)
            .field("out", &self.out)
            .finish_non_exhaustive()
    }
}

impl PanelMatrix {
    /// Output channels (rows of the stacked weights).
    pub(crate) fn out(&self) -> usize {
        self.out
    }

    /// The stacked weights back in Hugging Face's layout, `(out, inner)` row-major: exactly
    /// the values [`PanelMatrix::pack`] was given.
    pub(crate) fn unpack(&self) -> Vec<f32> {
        let values = as_values(&self.lines);
        let mut out = vec![0.0; self.out * self.inner];
        for (c, row) in out.chunks_exact_mut(self.inner).enumerate() {
            let panel = &values[c / PANEL * self.inner * PANEL..][..self.inner * PANEL];
            for (k, v) in row.iter_mut().enumerate() {
                *v = panel[k * PANEL + c % PANEL];
            }
        }
        out
    }

    /// Packs `weights` stacked, each with rows of `inner` values.
    ///
    /// # Panics
    /// When `inner` is 0 or a weight's length is not a multiple of it: a bug, since the
    /// weights were checked against the config when they were loaded.
    pub(crate) fn pack(weights: &[&[f32]], inner: usize) -> Self {
        let out = super::stacked_outputs(weights, inner, "panels");
        let panels = out.div_ceil(PANEL);
        let mut lines = vec![Line([0.0; 16]); panels * inner * PANEL / 16];
        let rows = weights.iter().flat_map(|w| w.chunks_exact(inner));
        {
            let values = as_values_mut(&mut lines);
            for (c, row) in rows.enumerate() {
                let panel = &mut values[c / PANEL * inner * PANEL..][..inner * PANEL];
                for (k, &v) in row.iter().enumerate() {
                    panel[k * PANEL + c % PANEL] = v;
                }
            }
        }
        Self { inner, out, lines }
    }

    fn panels(&self) -> usize {
        self.out.div_ceil(PANEL)
    }

    /// Panel `p`: `inner` steps of [`PANEL`] values.
    fn panel(&self, p: usize) -> &[f32] {
        &as_values(&self.lines)[p * self.inner * PANEL..][..self.inner * PANEL]
    }
}

fn as_values(lines: &[Line]) -> &[f32] {
    bytemuck::cast_slice(lines)
}

fn as_values_mut(lines: &mut [Line]) -> &mut [f32] {
    bytemuck::cast_slice_mut(lines)
}

/// `x · Wᵀ` for `x (rows, inner)`: `(rows, out)`. Parallel over blocks of the output: one
/// block of rows per thread when each gets [`ROW_SPLIT_TILES`] tiles or more, every panel
/// read by every thread; groups of panels otherwise (a few rows: one short text), cut into
/// blocks of rows when the threads outnumber the panels.
///
/// # Panics
/// When `inner` is not the matrix's: a bug in the caller, which takes both from the config.
pub(crate) fn panel_product(x: &[f32], inner: usize, w: &PanelMatrix) -> Vec<f32> {
    assert_eq!(inner, w.inner, "panel product: inner sizes");
    let rows = x.len() / inner;
    let out = w.out;
    let mut y = vec![0f32; rows * out];
    if rows == 0 || out == 0 {
        return y;
    }
    let kernel = Kernel::detect();
    let threads = rayon::current_num_threads().max(1);
    if let Some(per) = rows_per_thread(kernel, rows, threads) {
        y.par_chunks_mut(per * out)
            .zip(x.par_chunks(per * inner))
            .for_each(|(y, x)| rows_times_matrix(kernel, y, x, inner, w));
        return y;
    }
    let tiles = rows.div_ceil(kernel.rows());
    let groups = threads.min(w.panels());
    let block_rows = tiles.div_ceil(threads.div_ceil(groups)) * kernel.rows();
    OutputBlock::split(&mut y, out, groups, block_rows)
        .into_par_iter()
        .for_each(|mut block| {
            let x = &x[block.rows.start * inner..block.rows.end * inner];
            block_product(kernel, &mut block, x, inner, w);
        });
    y
}

/// Rows per thread (whole tiles) when `rows` split among `threads` give each
/// [`ROW_SPLIT_TILES`] tiles or more; `None` for fewer rows.
fn rows_per_thread(kernel: Kernel, rows: usize, threads: usize) -> Option<usize> {
    let tiles = rows.div_ceil(kernel.rows());
    (tiles >= ROW_SPLIT_TILES * threads).then(|| tiles.div_ceil(threads) * kernel.rows())
}

/// `y = x · Wᵀ` for `x (rows, inner)` into `y (rows, out)`, all on the calling thread.
fn rows_times_matrix(kernel: Kernel, y: &mut [f32], x: &[f32], inner: usize, w: &PanelMatrix) {
    let rows = x.len() / inner;
    for mut block in OutputBlock::split(y, w.out, 1, rows) {
        block_product(kernel, &mut block, x, inner, w);
    }
}

/// The feed-forward block `act(x · W₁ᵀ + b₁) · W₂ᵀ`, `x (rows, inner)` to `(rows, w2.out)`,
/// run whole per block of rows, one per thread
/// ([`feed_forward_by_row_blocks`](super::activation::feed_forward_by_row_blocks)). Equal to the two products and the activation run one after
/// the other. `None` for a few rows, which [`panel_product`] splits by panels instead.
pub(crate) fn panel_feed_forward(
    x: &[f32],
    inner: usize,
    w1: &PanelMatrix,
    b1: &[f32],
    act: crate::config::HiddenAct,
    w2: &PanelMatrix,
) -> Option<Vec<f32>> {
    assert!(
        inner == w1.inner && w1.out == w2.inner && b1.len() == w1.out,
        "panel feed-forward: sizes"
    );
    let rows = x.len() / inner;
    let kernel = Kernel::detect();
    let per = rows_per_thread(kernel, rows, rayon::current_num_threads().max(1))?;
    Some(super::activation::feed_forward_by_row_blocks(
        (x, inner),
        per,
        (b1, act),
        w2.out,
        |x, h| rows_times_matrix(kernel, h, x, inner, w1),
        |h, y| rows_times_matrix(kernel, y, h, w1.out, w2),
    ))
}

/// Row tiles per thread from which [`panel_product`] splits the rows among the threads rather
/// than the panels. On the STSb corpus (about 450 rows per product), two threads, rows split:
/// 940 sentences/s, panels split: 875; one short text (a tile or two), panels split: 1.45 ms,
/// rows split (one thread idle): 1.75 to 1.94 ms.
const ROW_SPLIT_TILES: usize = 4;

/// Bytes of panels run against every row before the next ones: they stay in the core's L2
/// while the rows stream past.
const GROUP_BYTES: usize = 256 * 1024;

/// The rows `x` of `block` times the panels of its columns, a group of panels at a time.
fn block_product(
    kernel: Kernel,
    block: &mut OutputBlock<'_>,
    x: &[f32],
    inner: usize,
    w: &PanelMatrix,
) {
    let tile = kernel.rows() * inner;
    let first = block.start / PANEL;
    let end = (block.start + block.cols).div_ceil(PANEL);
    let per_group = (GROUP_BYTES / (inner * PANEL * 4)).max(1);
    let mut g = first;
    while g < end {
        let group = g..(g + per_group).min(end);
        for (t, x) in x.chunks(tile).enumerate() {
            let r = block.rows.start + t * kernel.rows();
            for p in group.clone() {
                kernel.run(block, (r, p * PANEL), x, w.panel(p));
            }
        }
        g = group.end;
    }
}

/// Rows `rows` by columns `start..start + cols` of a row-major `(·, width)` matrix, written by
/// one task while others write the other blocks.
struct OutputBlock<'a> {
    ptr: *mut f32,
    len: usize,
    width: usize,
    rows: std::ops::Range<usize>,
    start: usize,
    cols: usize,
    _data: std::marker::PhantomData<&'a mut [f32]>,
}

#[allow(unsafe_code)]
// SAFETY: the blocks `split` makes are disjoint parts of one exclusively borrowed matrix, and
// a block writes only inside itself (checked in `tile`).
unsafe impl Send for OutputBlock<'_> {}

impl<'a> OutputBlock<'a> {
    /// `y (·, width)` cut into `groups` blocks of whole panels of columns by blocks of
    /// `block_rows` rows.
    fn split(y: &'a mut [f32], width: usize, groups: usize, block_rows: usize) -> Vec<Self> {
        let panels = width.div_ceil(PANEL);
        let rows = y.len() / width.max(1);
        let (ptr, len) = (y.as_mut_ptr(), y.len());
        let mut blocks = Vec::new();
        for g in 0..groups {
            let start = panels * g / groups * PANEL;
            let end = (panels * (g + 1) / groups * PANEL).min(width);
            if end <= start {
                continue;
            }
            for r in (0..rows).step_by(block_rows.max(1)) {
                blocks.push(Self {
                    ptr,
                    len,
                    width,
                    rows: r..(r + block_rows).min(rows),
                    start,
                    cols: end - start,
                    _data: std::marker::PhantomData,
                });
            }
        }
        blocks
    }

    /// Where the tile of rows `r..r + n` and columns from `col` starts, and how many of its
    /// [`PANEL`] columns lie in the block (the others are not to be written).
    ///
    /// # Panics
    /// When the tile's rows or first column lie outside the block: a bug in the caller.
    fn tile(&mut self, r: usize, n: usize, col: usize) -> (*mut f32, usize) {
        let cols = (self.start + self.cols).saturating_sub(col).min(PANEL);
        assert!(
            col >= self.start
                && cols > 0
                && r >= self.rows.start
                && r + n <= self.rows.end
                && (r + n) * self.width <= self.len,
            "output block: tile out of bounds"
        );
        #[allow(unsafe_code)]
        // SAFETY: `r·width + col < len` (checked above), so the offset stays inside the matrix.
        (unsafe { self.ptr.add(r * self.width + col) }, cols)
    }
}

/// Whether the panels have a register-tile kernel on this CPU (AVX-512). Without one, their
/// portable tile reaches about 35–45 % of the FLOP bound (AMD EPYC without AVX-512,
/// 2026-12-07), below `gemm`'s AVX2 kernels: the f32 pass then multiplies by the weights as
/// loaded instead.
pub(crate) fn have_tile_kernel() -> bool {
    #[cfg(target_arch = "x86_64")]
    return matches!(Kernel::detect(), Kernel::Avx512(_));
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The register tiles, widest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// Up to 6 rows × 64 channels in 24 AVX-512 registers.
    #[cfg(target_arch = "x86_64")]
    Avx512(isa::Avx512),
    /// Up to 2 rows × 64 channels, as LLVM vectorizes it (AVX2 + FMA where the CPU has them).
    Portable,
}

impl Kernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(proof) = isa::avx512() {
            return Self::Avx512(proof);
        }
        Self::Portable
    }

    /// Rows per tile, at most.
    fn rows(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx512(_) => avx512::ROWS,
            Self::Portable => portable::ROWS,
        }
    }

    /// Rows `x (n, inner)` (rows `r..r + n` of the product) times `panel` into the columns
    /// `col..` of `y` the panel holds.
    fn run(self, y: &mut OutputBlock<'_>, (r, col): (usize, usize), x: &[f32], panel: &[f32]) {
        let inner = panel.len() / PANEL;
        let n = x.len() / inner.max(1);
        assert!(
            (1..=self.rows()).contains(&n) && n * inner == x.len(),
            "panel tile: operand sizes"
        );
        let (dst, cols) = y.tile(r, n, col);
        let stride = y.width;
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx512(_proof) => const_dispatch!(n, [1, 2, 3, 4, 5; 6], |N| {
                #[allow(unsafe_code)]
                // SAFETY: the CPU has AVX-512F (`_proof`); `x` holds `n` rows (`n = N`: the
                // assert above keeps `n` in 1..=6), `panel` is a `PanelMatrix` panel (64-byte
                // aligned, `inner·PANEL` values), and `dst` has `n` rows of `cols` writable
                // values `stride` apart (`OutputBlock::tile`).
                unsafe {
                    avx512::tile::<N>(dst, stride, cols, x.as_ptr(), inner, panel.as_ptr())
                }
            }),
            Self::Portable => {
                let mut acc = [[0f32; PANEL]; portable::ROWS];
                portable::tile_accumulate(&mut acc[..n], x, panel);
                for (i, acc) in acc[..n].iter().enumerate() {
                    #[allow(unsafe_code)]
                    // SAFETY: row `i < n` of the tile has `cols` writable values.
                    unsafe {
                        std::ptr::copy_nonoverlapping(acc.as_ptr(), dst.add(i * stride), cols)
                    };
                }
            }
        }
    }

    #[cfg(test)]
    fn available() -> Vec<Self> {
        let mut all = vec![Self::detect()];
        if all[0] != Self::Portable {
            all.push(Self::Portable);
        }
        all
    }
}

mod portable {
    use super::PANEL;
    use crate::cpu::multiversion;

    pub(super) const ROWS: usize = 2;

    #[inline(always)]
    fn tile_rows<const N: usize>(acc: &mut [[f32; PANEL]], x: &[f32], panel: &[f32]) {
        let acc: &mut [[f32; PANEL]; N] = acc.try_into().expect("tile rows");
        let inner = x.len() / N;
        let xs: [&[f32]; N] = std::array::from_fn(|i| &x[i * inner..][..inner]);
        for (k, b) in panel.chunks_exact(PANEL).enumerate() {
            for (acc, x) in acc.iter_mut().zip(&xs) {
                let a = x[k];
                for (acc, &b) in acc.iter_mut().zip(b) {
                    *acc += a * b;
                }
            }
        }
    }

    #[inline(always)]
    fn tile_generic(acc: &mut [[f32; PANEL]], x: &[f32], panel: &[f32]) {
        crate::cpu::const_dispatch!(acc.len(), [1; 2], |N| tile_rows::<N>(acc, x, panel))
    }

    multiversion!(fn accumulate(acc: &mut [[f32; PANEL]], x: &[f32], panel: &[f32]) => tile_generic);

    /// `acc[i] = Σₖ x[i·inner + k] · panel[k·PANEL..][..PANEL]` for every row of `acc`.
    pub(super) fn tile_accumulate(acc: &mut [[f32; PANEL]], x: &[f32], panel: &[f32]) {
        accumulate(acc, x, panel);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_load_ps, _mm512_mask_storeu_ps, _mm512_set1_ps,
        _mm512_setzero_ps, _mm_prefetch, _MM_HINT_T0,
    };

    use super::{PANEL, VECTORS};

    /// Rows per tile: 6 × 4 accumulators, four panel vectors and a broadcast in the 32
    /// registers.
    pub(super) const ROWS: usize = 6;
    /// Panel steps between the step a tile reads and the one it prefetches. The hardware
    /// prefetcher alone leaves a tile waiting on the panels it reads from L3: one short text
    /// (all-MiniLM-L6-v2, one thread) measured 2.96 ms without, 2.54 ms with 8 steps, 2.73 ms
    /// with 16; the STSb corpus on two threads 833 sentences/s without, 859 to 871 with 8 to
    /// 32 steps. Prefetching in the first tile of a group only measured the same.
    const AHEAD: usize = 8;

    /// `dst[i·stride + c] = Σₖ x[i·inner + k] · panel[k·PANEL + c]` for `i < N`, `c < cols`,
    /// asking for the panel's lines [`AHEAD`] steps on as it goes.
    ///
    /// # Safety
    /// AVX-512F is available; `x` holds `N·inner` values, `panel` `inner·PANEL` starting on a
    /// 64-byte boundary, and `dst` `N` rows of `cols <= PANEL` writable values `stride` apart.
    #[target_feature(enable = "avx512f")]
    #[allow(unsafe_code)]
    pub(super) unsafe fn tile<const N: usize>(
        dst: *mut f32,
        stride: usize,
        cols: usize,
        x: *const f32,
        inner: usize,
        panel: *const f32,
    ) {
        let mut sum: [[__m512; VECTORS]; N] = [[_mm512_setzero_ps(); VECTORS]; N];
        for k in 0..inner {
            // SAFETY: step `k < inner` of the panel, on a line boundary.
            let b: [__m512; VECTORS] =
                std::array::from_fn(|v| unsafe { _mm512_load_ps(panel.add(k * PANEL + 16 * v)) });
            for v in 0..VECTORS {
                // A hint: it never faults, whatever the address.
                let ahead = panel.wrapping_add((k + AHEAD) * PANEL + 16 * v);
                _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
            }
            for (i, s) in sum.iter_mut().enumerate() {
                // SAFETY: row `i < N`, step `k < inner`.
                let a = _mm512_set1_ps(unsafe { *x.add(i * inner + k) });
                for (s, &b) in s.iter_mut().zip(&b) {
                    *s = _mm512_fmadd_ps(a, b, *s);
                }
            }
        }
        for (i, s) in sum.iter().enumerate() {
            for (v, &s) in s.iter().enumerate() {
                let lanes = cols.saturating_sub(16 * v).min(16);
                let mask = ((1u32 << lanes) - 1) as u16;
                // SAFETY: the masked lanes are neither written nor faulted on; the others are
                // among the `cols` writable values of row `i`.
                unsafe { _mm512_mask_storeu_ps(dst.add(i * stride + 16 * v), mask, s) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_matches_a_plain_loop_whatever_the_remainders() {
        for inner in [1, 17, 384] {
            for (outs, rows) in [
                (vec![32], 14),
                (vec![5, 40], 15),
                (vec![96], 29),
                (vec![3], 1),
            ] {
                let weights: Vec<Vec<f32>> = outs
                    .iter()
                    .enumerate()
                    .map(|(m, &o)| {
                        (0..o * inner)
                            .map(|v| ((v + m) as f32 * 0.7).cos())
                            .collect()
                    })
                    .collect();
                let refs: Vec<&[f32]> = weights.iter().map(Vec::as_slice).collect();
                let stacked: Vec<f32> = weights.concat();
                let w = PanelMatrix::pack(&refs, inner);
                let out = w.out;
                let x: Vec<f32> = (0..rows * inner).map(|v| (v as f32 * 0.3).sin()).collect();
                for kernel in Kernel::available() {
                    let mut y = vec![f32::NAN; rows * out];
                    for mut block in OutputBlock::split(&mut y, out, 2, 7) {
                        let x = &x[block.rows.start * inner..block.rows.end * inner];
                        block_product(kernel, &mut block, x, inner, &w);
                    }
                    for i in 0..rows {
                        for c in 0..out {
                            let want: f64 = (0..inner)
                                .map(|k| {
                                    f64::from(x[i * inner + k]) * f64::from(stacked[c * inner + k])
                                })
                                .sum();
                            let got = f64::from(y[i * out + c]);
                            assert!(
                                (got - want).abs() < 1e-3,
                                "{kernel:?} inner {inner}, ({i}, {c}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_fused_feed_forward_equals_its_products_and_activation_run_in_turn() {
        use crate::config::HiddenAct;
        let (inner, mid, out) = (40, 150, 37);
        let w1: Vec<f32> = (0..mid * inner).map(|v| (v as f32 * 0.37).sin()).collect();
        let w2: Vec<f32> = (0..out * mid).map(|v| (v as f32 * 0.11).cos()).collect();
        let b1: Vec<f32> = (0..mid).map(|v| (v as f32 * 0.05).sin()).collect();
        let (p1, p2) = (
            PanelMatrix::pack(&[&w1], inner),
            PanelMatrix::pack(&[&w2], mid),
        );
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            pool.install(|| {
                let few = vec![0.5; inner];
                assert!(
                    panel_feed_forward(&few, inner, &p1, &b1, HiddenAct::Gelu, &p2).is_none(),
                    "one row keeps the per-panel split"
                );
                for rows in [ROW_SPLIT_TILES * threads * 6, 200] {
                    let x: Vec<f32> = (0..rows * inner)
                        .map(|v| (v as f32 * 0.013).sin())
                        .collect();
                    let fused = panel_feed_forward(&x, inner, &p1, &b1, HiddenAct::Gelu, &p2)
                        .expect("many rows");
                    let mut h = panel_product(&x, inner, &p1);
                    crate::cpu::activation::bias_act(&mut h, &b1, HiddenAct::Gelu, false);
                    let plain = panel_product(&h, mid, &p2);
                    assert_eq!(fused, plain, "{rows} rows on {threads} threads");
                }
            });
        }
    }

    #[test]
    fn the_product_equals_the_tiles_on_every_thread_count() {
        let inner = 48;
        let w: Vec<f32> = (0..100 * inner).map(|v| (v as f32 * 0.11).sin()).collect();
        let x: Vec<f32> = (0..37 * inner).map(|v| (v as f32 * 0.07).cos()).collect();
        let packed = PanelMatrix::pack(&[&w], inner);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool")
            .install(|| panel_product(&x, inner, &packed));
        for threads in [2, 3, 4] {
            let many = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool")
                .install(|| panel_product(&x, inner, &packed));
            assert_eq!(one, many, "{threads} threads");
        }
    }
}
