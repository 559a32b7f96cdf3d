//! Blocked score matrices and bounded top-k lists.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use candle_core::{Device, Tensor};

use crate::{Embeddings, Score};

/// Rows L2-normalized as `torch.nn.functional.normalize` (a zero row stays zero).
pub(crate) fn normalized(e: &Embeddings<'_>) -> Vec<f32> {
    let mut out = e.as_slice().to_vec();
    for row in out.chunks_exact_mut(e.dim()) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|x| *x /= norm);
    }
    out
}

/// The rows as scored: normalized for cosine, as given for dot.
pub(crate) fn prepared(e: &Embeddings<'_>, score: Score) -> Vec<f32> {
    match score {
        Score::Cosine => normalized(e),
        Score::Dot => e.as_slice().to_vec(),
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

/// Rows per score block along the corpus: keeps a block near 64 MiB for 256 query rows.
pub(crate) const CORPUS_BLOCK: usize = 65_536;
/// Query rows per score block.
pub(crate) const QUERY_BLOCK: usize = 256;

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
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    pub(crate) fn push(&mut self, score: f32, id: usize) {
        let s = Scored { score, id };
        if self.heap.len() < self.k {
            self.heap.push(Reverse(s));
        } else if let Some(Reverse(min)) = self.heap.peek() {
            if s > *min {
                self.heap.pop();
                self.heap.push(Reverse(s));
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
        assert_eq!(
            block(&a, &b, 2).expect("product"),
            [1.0, 2.0, 3.0, 3.0, 4.0, 7.0]
        );
        let e = Embeddings::new(&[3.0, 4.0, 0.0, 0.0], 2).expect("rows");
        assert_eq!(normalized(&e), [0.6, 0.8, 0.0, 0.0]);
    }
}
