//! Blocked score matrices and bounded top-k lists.

use std::borrow::Cow;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use candle_core::{Device, Tensor};

use crate::{Score, Vectors};

/// Rows L2-normalized as `torch.nn.functional.normalize` (a zero row stays zero): scoring
/// these by [`Score::Dot`] gives cosines without normalizing again on every search.
pub fn normalized(e: &Vectors<'_>) -> Vec<f32> {
    let mut out = e.as_slice().to_vec();
    normalize_rows(&mut out, e.dim());
    out
}

/// L2-normalizes each row of `values` (rows of `dim` values, row-major) in place, as
/// `torch.nn.functional.normalize` does: the norm is clamped at 1e-12, so a zero row stays
/// zero. A `dim` of 0 leaves `values` as it is.
pub fn normalize_rows(values: &mut [f32], dim: usize) {
    if dim == 0 {
        return;
    }
    for row in values.chunks_exact_mut(dim) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|x| *x /= norm);
    }
}

/// The rows as scored: normalized for cosine, as given (not copied) for dot.
pub(crate) fn prepared<'a>(e: &Vectors<'a>, score: Score) -> Cow<'a, [f32]> {
    match score {
        Score::Cosine => Cow::Owned(normalized(e)),
        Score::Dot => Cow::Borrowed(e.as_slice()),
    }
}

/// Makes `scores` (m, n), the dot products of L2-normalized rows `a` (m, d) and `b` (n, d),
/// proper cosines: rounding can put a product a few ulps outside [-1, 1] or just under 1 for
/// two equal rows; here every score lies in [-1, 1] and two equal rows score exactly 1, so a
/// threshold of 1.0 finds exact duplicates.
pub(crate) fn finish_cosines(scores: &mut [f32], a: &[f32], b: &[f32], dim: usize) {
    let n = b.len() / dim.max(1);
    if n == 0 {
        return;
    }
    for (i, row) in scores.chunks_exact_mut(n).enumerate() {
        let x = &a[i * dim..(i + 1) * dim];
        for (j, s) in row.iter_mut().enumerate() {
            // Equal unit rows score within a few ulps of 1; compare only those.
            if *s > 1.0 - 1e-4 && x == &b[j * dim..(j + 1) * dim] {
                *s = 1.0;
            } else {
                *s = s.clamp(-1.0, 1.0);
            }
        }
    }
}

/// `a · bᵀ` for `a` (m, d) and `b` (n, d), row-major (m, n).
pub(crate) fn block(a: &[f32], b: &[f32], dim: usize) -> candle_core::Result<Vec<f32>> {
    let (m, n) = (a.len() / dim, b.len() / dim);
    if m == 0 || n == 0 {
        return Ok(Vec::new());
    }
    let a = Tensor::from_slice(a, (m, dim), &Device::Cpu)?;
    let b = Tensor::from_slice(b, (n, dim), &Device::Cpu)?;
    a.matmul(&b.t()?)?.flatten_all()?.to_vec1()
}

/// `dst (m, n) = q (m, d) · c (n, d)ᵀ` on the calling thread, row-major, `c` read in place
/// (transposed by strides).
///
/// # Panics
/// When a slice is shorter than its shape: a bug in the caller, which derives the shapes from
/// the slices.
pub(crate) fn product_into(dst: &mut [f32], q: &[f32], m: usize, c: &[f32], n: usize, dim: usize) {
    assert!(
        q.len() >= m * dim && c.len() >= n * dim && dst.len() >= m * n,
        "product_into: shapes"
    );
    if m == 0 || n == 0 || dim == 0 {
        dst[..m * n].fill(0.0);
        return;
    }
    #[allow(unsafe_code)]
    // SAFETY: the assert above proves every element the three views address lies inside its
    // slice (row-major q and dst, c read as its transpose), the products of at most a few
    // billion fit in isize, and `dst` is a unique borrow aliasing neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            dim,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            q.as_ptr(),
            1,
            dim as isize,
            c.as_ptr(),
            dim as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Rows per score block along the corpus; with [`QUERY_BLOCK`] a block of scores is 64 MiB.
pub(crate) const CORPUS_BLOCK: usize = 16_384;
/// Query rows per score block.
pub(crate) const QUERY_BLOCK: usize = 1024;

/// A scored candidate, ordered by score, then by the smaller id first (so among equal scores
/// the larger id is the one a full list drops).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scored {
    pub(crate) score: f32,
    pub(crate) id: usize,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.id.cmp(&self.id))
    }
}

/// The `k` best candidates seen.
#[derive(Debug)]
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Reverse<Scored>>,
    /// The lowest kept score once full (−∞ before): anything below it is rejected with one
    /// comparison, which is nearly every candidate of a large corpus.
    floor: f32,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
            floor: f32::NEG_INFINITY,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, score: f32, id: usize) {
        if score < self.floor {
            return;
        }
        let s = Scored { score, id };
        if self.heap.len() < self.k {
            self.heap.push(Reverse(s));
        } else if let Some(Reverse(min)) = self.heap.peek() {
            if s > *min {
                self.heap.pop();
                self.heap.push(Reverse(s));
            }
        }
        if self.heap.len() == self.k {
            if let Some(Reverse(min)) = self.heap.peek() {
                self.floor = min.score;
            }
        }
    }

    /// Best first.
    pub(crate) fn into_sorted(self) -> Vec<Scored> {
        let mut v: Vec<Scored> = self.heap.into_iter().map(|Reverse(s)| s).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_the_best_and_prefers_smaller_ids_on_ties() {
        let mut t = TopK::new(3);
        for (id, s) in [0.1, 0.9, 0.5, 0.9, 0.2, 0.5].into_iter().enumerate() {
            t.push(s, id);
        }
        let ids: Vec<usize> = t.into_sorted().iter().map(|s| s.id).collect();
        assert_eq!(ids, [1, 3, 2]);
    }

    #[test]
    fn blocks_are_products_and_zero_rows_stay_zero() {
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let mut dst = [9.0f32; 6];
        product_into(&mut dst, &a, 2, &b, 3, 2);
        assert_eq!(dst, [1.0, 2.0, 3.0, 3.0, 4.0, 7.0]);
        assert_eq!(
            block(&a, &b, 2).expect("product"),
            [1.0, 2.0, 3.0, 3.0, 4.0, 7.0]
        );
        let e = Vectors::new(&[3.0, 4.0, 0.0, 0.0], 2).expect("rows");
        assert_eq!(normalized(&e), [0.6, 0.8, 0.0, 0.0]);
    }
}
