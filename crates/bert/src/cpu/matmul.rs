//! Matrix products: a bounds-checked front to the `gemm` crate (the matrix kernels candle's CPU
//! backend runs) with strided views over plain slices, so that a pass can multiply by a
//! transposed weight, write into a column block of a wider matrix, or add a product onto an
//! accumulator without copying anything; and the dense layer built on it.

use rayon::current_num_threads;
use rayon::prelude::*;

use super::few_rows::few_rows_product;

/// Up to this many rows, [`product`] runs a dot-product kernel instead of `gemm`, which repacks
/// the whole weight matrix per call.
const FEW_ROWS: usize = 16;

/// `x · [W₁; W₂; …]ᵀ`: the weights `(outᵢ, inner)` (Hugging Face's layout) side by side over
/// the rows of `x (rows, inner)`, `(rows, Σ outᵢ)` (query, key and value in one matrix, for
/// instance). Biases are left to the kernel that reads the product next, which adds them on
/// its way.
///
/// # Panics
/// When a weight's length is not a multiple of `inner`: a bug, since the weights were checked
/// against the config when they were loaded.
pub(crate) fn product(x: &[f32], inner: usize, weights: &[&[f32]]) -> Vec<f32> {
    let rows = x.len() / inner;
    let width = super::stacked_outputs(weights, inner, "product");
    let mut y = vec![0f32; rows * width];
    if rows <= FEW_ROWS {
        few_rows_product(&mut y, x, inner, weights);
        return y;
    }
    // One block of rows per thread, multiplied by every weight on that thread: one fork-join
    // for the product, whatever the number of weights.
    let threads = current_num_threads().max(1);
    let block = rows.div_ceil(threads);
    y.par_chunks_mut(block * width)
        .zip(x.par_chunks(block * inner))
        .for_each(|(y, x)| {
            let rows = x.len() / inner;
            let mut col = 0;
            for w in weights {
                let out = w.len() / inner;
                gemm_on(
                    MatMut::columns(y, width, col, out),
                    MatRef::new(x, rows, inner),
                    MatRef::new(w, out, inner).t(),
                    false,
                    1,
                );
                col += out;
            }
        });
    y
}

/// A read-only matrix view: element `(i, j)` is `data[i·row_stride + j·col_stride]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// The row-major `rows × cols` matrix at the start of `data`.
    pub(crate) fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// Columns `start..start + cols` of the row-major matrix `data` with `width` columns.
    pub(crate) fn columns(data: &'a [f32], width: usize, start: usize, cols: usize) -> Self {
        let rows = data.len().checked_div(width).unwrap_or(0);
        Self {
            data: data.get(start..).unwrap_or(&[]),
            rows,
            cols,
            row_stride: width,
            col_stride: 1,
        }
    }

    /// The transpose (a view; nothing moves).
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    fn fits(&self) -> bool {
        fits(
            self.data.len(),
            self.rows,
            self.cols,
            self.row_stride,
            self.col_stride,
        )
    }
}

/// A writable matrix view, laid out as [`MatRef`].
#[derive(Debug)]
pub(crate) struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
}

impl<'a> MatMut<'a> {
    /// The row-major `rows × cols` matrix at the start of `data`.
    pub(crate) fn new(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
        }
    }

    /// Columns `start..start + cols` of the row-major matrix `data` with `width` columns.
    pub(crate) fn columns(data: &'a mut [f32], width: usize, start: usize, cols: usize) -> Self {
        let rows = data.len().checked_div(width).unwrap_or(0);
        let data = match data.get_mut(start..) {
            Some(d) => d,
            None => &mut [],
        };
        Self {
            data,
            rows,
            cols,
            row_stride: width,
        }
    }
}

/// Whether every element of a `rows × cols` view with these strides lies inside `len` values.
fn fits(len: usize, rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    let last = (rows - 1).checked_mul(row_stride).and_then(|r| {
        (cols - 1)
            .checked_mul(col_stride)
            .and_then(|c| r.checked_add(c))
    });
    matches!(last, Some(last) if last < len && last <= isize::MAX as usize)
}

/// `dst = a · b`, or `dst += a · b` with `accumulate`. Runs on rayon's pool.
///
/// # Panics
/// When the shapes do not chain or a view reaches past its slice: both are bugs in the caller
/// (the training path derives every shape from the model config), never bad user input.
pub(crate) fn gemm(dst: MatMut<'_>, a: MatRef<'_>, b: MatRef<'_>, accumulate: bool) {
    gemm_on(dst, a, b, accumulate, current_num_threads());
}

/// [`gemm`] on up to `threads` of rayon's threads (1: on the calling thread only).
pub(crate) fn gemm_on(
    dst: MatMut<'_>,
    a: MatRef<'_>,
    b: MatRef<'_>,
    accumulate: bool,
    threads: usize,
) {
    let (m, n, k) = (dst.rows, dst.cols, a.cols);
    assert!(
        a.rows == m && b.rows == k && b.cols == n,
        "gemm: ({m}×{n}) = ({}×{}) · ({}×{})",
        a.rows,
        a.cols,
        b.rows,
        b.cols
    );
    assert!(
        a.fits() && b.fits() && fits(dst.data.len(), m, n, dst.row_stride, 1),
        "gemm: a view reaches past its data"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in dst.data.chunks_mut(dst.row_stride).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    let parallelism = match threads {
        0 | 1 => gemm::Parallelism::None,
        threads => gemm::Parallelism::Rayon(threads),
    };
    #[allow(unsafe_code)]
    // SAFETY: `fits` checked that every element each view addresses lies inside its slice, and
    // that the strides fit in `isize`; `dst` is a unique borrow, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            1,
            dst.row_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn transposed_and_column_block_views_multiply_as_copies_would() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|v| (v as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|v| (v as f32 * 0.11).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        // bᵀ stored row-major, used through a transposed view.
        let bt: Vec<f32> = (0..n * k).map(|v| b[(v % k) * n + v / k]).collect();
        let mut c = vec![0f32; m * n];
        gemm(
            MatMut::new(&mut c, m, n),
            MatRef::new(&a, m, k),
            MatRef::new(&bt, n, k).t(),
            false,
        );
        assert!(c.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-5));
        // Into the middle column block of a wider matrix, accumulating twice.
        let width = n + 4;
        let mut wide = vec![1f32; m * width];
        for _ in 0..2 {
            gemm(
                MatMut::columns(&mut wide, width, 2, n),
                MatRef::new(&a, m, k),
                MatRef::new(&b, k, n),
                true,
            );
        }
        for i in 0..m {
            for j in 0..width {
                let expect = if (2..2 + n).contains(&j) {
                    1.0 + 2.0 * want[i * n + j - 2]
                } else {
                    1.0
                };
                assert!((wide[i * width + j] - expect).abs() < 1e-5, "({i}, {j})");
            }
        }
    }

    #[test]
    fn a_product_of_several_weights_matches_a_plain_loop_for_few_and_many_rows() {
        let inner = 37;
        let outs = [70, 5, 33];
        let weights: Vec<Vec<f32>> = outs
            .iter()
            .enumerate()
            .map(|(k, &o)| {
                (0..o * inner)
                    .map(|v| ((v + k) as f32 * 0.7).cos())
                    .collect()
            })
            .collect();
        let views: Vec<&[f32]> = weights.iter().map(Vec::as_slice).collect();
        let width: usize = outs.iter().sum();
        for rows in [1, 2, 3, 5, FEW_ROWS, FEW_ROWS + 1, 40] {
            let x: Vec<f32> = (0..rows * inner).map(|v| (v as f32 * 0.3).sin()).collect();
            let y = product(&x, inner, &views);
            assert_eq!(y.len(), rows * width);
            for i in 0..rows {
                let mut col = 0;
                for (k, &out) in outs.iter().enumerate() {
                    for o in 0..out {
                        let want: f64 = (0..inner)
                            .map(|c| {
                                f64::from(x[i * inner + c]) * f64::from(weights[k][o * inner + c])
                            })
                            .sum();
                        let got = f64::from(y[i * width + col + o]);
                        assert!(
                            (got - want).abs() < 1e-4,
                            "{rows} rows: ({i}, {k}.{o}) {got} vs {want}"
                        );
                    }
                    col += out;
                }
            }
        }
    }

    #[test]
    fn a_product_in_row_blocks_on_a_pool_equals_the_plain_product() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("pool");
        let (rows, inner, outs) = (61, 9, [7, 4]);
        let x: Vec<f32> = (0..rows * inner).map(|v| (v as f32 * 0.37).sin()).collect();
        let weights: Vec<Vec<f32>> = outs
            .iter()
            .map(|&o| (0..o * inner).map(|v| (v as f32 * 0.11).cos()).collect())
            .collect();
        let views: Vec<&[f32]> = weights.iter().map(Vec::as_slice).collect();
        let pooled = pool.install(|| product(&x, inner, &views));
        let single = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool")
            .install(|| product(&x, inner, &views));
        assert_eq!(pooled.len(), rows * 11);
        let diff = pooled
            .iter()
            .zip(&single)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    #[should_panic(expected = "past its data")]
    fn a_view_past_its_slice_is_refused() {
        let a = vec![0f32; 6];
        let mut c = vec![0f32; 4];
        gemm(
            MatMut::new(&mut c, 2, 2),
            MatRef::new(&a, 2, 3),
            MatRef::new(&a[..5], 3, 2),
            false,
        );
    }
}
