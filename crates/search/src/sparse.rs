//! Sparse vectors (SPLADE's: one weight per vocabulary word, mostly zero) and their search: an
//! inverted index (for each dimension, the rows that weigh it), scored by dot product, and a
//! hybrid of dense cosine and sparse scores.

use rayon::prelude::*;
use serde::Serialize;

use crate::scores::{finish_cosines, prepared, product_into, TopK};
use crate::{check_search, Hit, Score, SearchError, Vectors};

/// A sparse vector: the nonzero dimensions (ascending) and their values.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct SparseEmbedding {
    /// Dimensions with a nonzero value, ascending.
    pub indices: Vec<u32>,
    /// Their values.
    pub values: Vec<f32>,
}

impl SparseEmbedding {
    /// Nonzero dimensions.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether every value is 0.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The dot product with `other` (sentence-transformers' SparseEncoder similarity).
    pub fn dot(&self, other: &SparseEmbedding) -> f32 {
        let (mut i, mut j, mut sum) = (0, 0, 0f32);
        while i < self.indices.len() && j < other.indices.len() {
            match self.indices[i].cmp(&other.indices[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    sum += self.values[i] * other.values[j];
                    i += 1;
                    j += 1;
                }
            }
        }
        sum
    }

    /// The vector as `dimension` values.
    ///
    /// # Panics
    /// When an index is not below `dimension`.
    pub fn to_dense(&self, dimension: usize) -> Vec<f32> {
        let mut dense = vec![0f32; dimension];
        for (&i, &v) in self.indices.iter().zip(&self.values) {
            dense[i as usize] = v;
        }
        dense
    }

    /// Checks row `row`: parallel lists, indices ascending and below `dimension`, values
    /// finite.
    fn check(&self, row: usize, dimension: usize) -> Result<(), SearchError> {
        if self.indices.len() != self.values.len() {
            return Err(SearchError::Parameter(format!(
                "sparse row {row}: {} indices for {} values",
                self.indices.len(),
                self.values.len()
            )));
        }
        if !self.indices.windows(2).all(|w| w[0] < w[1])
            || self
                .indices
                .last()
                .is_some_and(|&i| i as usize >= dimension)
        {
            return Err(SearchError::Parameter(format!(
                "sparse row {row}: indices must ascend and stay below the dimension {dimension}"
            )));
        }
        if self.values.iter().any(|v| !v.is_finite()) {
            return Err(SearchError::NotFinite { row });
        }
        Ok(())
    }
}

/// An inverted index over sparse rows: for each dimension, the rows with a nonzero value there.
/// A query's scores are the dot products, accumulated over the query's own dimensions only.
#[derive(Debug, Clone)]
pub struct InvertedIndex {
    dimension: usize,
    rows: usize,
    /// `postings[d]`: (row, value) of every row nonzero in dimension `d`, by row.
    postings: Vec<Vec<(u32, f32)>>,
}

impl InvertedIndex {
    /// Indexes `rows` of `dimension` dimensions.
    ///
    /// # Errors
    /// No rows, a zero dimension, more rows than `u32` counts, or a malformed row (indices
    /// not ascending or past the dimension, lists of different lengths, a non-finite value).
    pub fn new(rows: &[SparseEmbedding], dimension: usize) -> Result<Self, SearchError> {
        if rows.is_empty() {
            return Err(SearchError::Empty("corpus"));
        }
        if dimension == 0 {
            return Err(SearchError::Zero("the dimension"));
        }
        if u32::try_from(rows.len()).is_err() {
            return Err(SearchError::Parameter(format!(
                "{} rows: an inverted index holds at most {}",
                rows.len(),
                u32::MAX
            )));
        }
        let mut postings = vec![Vec::new(); dimension];
        for (r, row) in rows.iter().enumerate() {
            row.check(r, dimension)?;
            for (&d, &v) in row.indices.iter().zip(&row.values) {
                postings[d as usize].push((r as u32, v));
            }
        }
        Ok(Self {
            dimension,
            rows: rows.len(),
            postings,
        })
    }

    /// Rows indexed.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row is indexed (never: [`InvertedIndex::new`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Dimensions of a row.
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// The dot product of `query` with every row, in row order.
    ///
    /// # Errors
    /// A malformed query.
    pub fn scores(&self, query: &SparseEmbedding) -> Result<Vec<f32>, SearchError> {
        query.check(0, self.dimension)?;
        let mut scores = vec![0f32; self.rows];
        for (&d, &q) in query.indices.iter().zip(&query.values) {
            for &(r, v) in &self.postings[d as usize] {
                scores[r as usize] += q * v;
            }
        }
        Ok(scores)
    }

    /// The `top_k` rows with the highest dot product against each query, best first (equal
    /// scores: the smaller row first); `top_k` above the row count is capped at it. Queries
    /// run in parallel on the current rayon pool.
    ///
    /// # Errors
    /// No queries, `top_k` of 0, or a malformed query.
    pub fn search(
        &self,
        queries: &[SparseEmbedding],
        top_k: usize,
    ) -> Result<Vec<Vec<Hit>>, SearchError> {
        let top_k = self.check_queries(queries.len(), top_k)?;
        queries
            .par_iter()
            .map(|q| Ok(best(&self.scores(q)?, top_k)))
            .collect()
    }

    fn check_queries(&self, queries: usize, top_k: usize) -> Result<usize, SearchError> {
        if queries == 0 {
            return Err(SearchError::Empty("query set"));
        }
        if top_k == 0 {
            return Err(SearchError::TopK {
                top_k,
                max: self.rows,
            });
        }
        Ok(top_k.min(self.rows))
    }
}

/// The `k` best of `scores`, best first (ties: the smaller id).
fn best(scores: &[f32], k: usize) -> Vec<Hit> {
    let mut top = TopK::new(k);
    for (id, &s) in scores.iter().enumerate() {
        top.push(s, id);
    }
    top.into_sorted()
        .into_iter()
        .map(|s| Hit {
            corpus_id: s.id,
            score: s.score,
        })
        .collect()
}

/// Hybrid search: for each query, every corpus row scored by
/// `dense_weight · cosine + (1 − dense_weight) · sparse / max sparse`, the dense cosine of the
/// embeddings and the sparse dot product scaled by the query's best sparse score (so both
/// parts lie in [−1, 1] and [0, 1]); the `top_k` best, best first. `dense_weight` 1 is dense
/// search, 0 sparse search.
///
/// # Errors
/// Queries that do not pair up (different counts), a weight outside [0, 1], and the errors of
/// dense and sparse search.
pub fn hybrid_search(
    dense_queries: &Vectors<'_>,
    dense_corpus: &Vectors<'_>,
    sparse_queries: &[SparseEmbedding],
    sparse_corpus: &InvertedIndex,
    top_k: usize,
    dense_weight: f32,
) -> Result<Vec<Vec<Hit>>, SearchError> {
    let top_k = check_search(dense_queries, dense_corpus.len(), dense_corpus.dim(), top_k)?;
    if sparse_queries.len() != dense_queries.len() || sparse_corpus.len() != dense_corpus.len() {
        return Err(SearchError::Parameter(format!(
            "hybrid search pairs {} dense with {} sparse queries and {} dense with {} sparse \
             corpus rows; each side needs both for the same texts",
            dense_queries.len(),
            sparse_queries.len(),
            dense_corpus.len(),
            sparse_corpus.len()
        )));
    }
    if !(0.0..=1.0).contains(&dense_weight) {
        return Err(SearchError::Parameter(format!(
            "the dense weight {dense_weight} is outside [0, 1]"
        )));
    }
    let dim = dense_corpus.dim();
    let q = prepared(dense_queries, Score::Cosine);
    let c = prepared(dense_corpus, Score::Cosine);
    let n = dense_corpus.len();
    (0..dense_queries.len())
        .into_par_iter()
        .map(|i| {
            let row = &q[i * dim..(i + 1) * dim];
            let mut dense = vec![0f32; n];
            product_into(&mut dense, row, 1, &c, n, dim);
            finish_cosines(&mut dense, row, &c, dim);
            let sparse = sparse_corpus.scores(&sparse_queries[i])?;
            let top = sparse.iter().copied().fold(0f32, f32::max);
            let scale = if top > 0.0 { 1.0 / top } else { 0.0 };
            let mixed: Vec<f32> = dense
                .iter()
                .zip(&sparse)
                .map(|(&d, &s)| dense_weight * d + (1.0 - dense_weight) * s * scale)
                .collect();
            Ok(best(&mixed, top_k))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(u32, f32)]) -> SparseEmbedding {
        SparseEmbedding {
            indices: pairs.iter().map(|p| p.0).collect(),
            values: pairs.iter().map(|p| p.1).collect(),
        }
    }

    #[test]
    fn the_index_scores_every_row_by_dot_product_and_ranks_them() {
        let corpus = [
            row(&[(0, 1.0), (3, 2.0)]),
            row(&[(1, 0.5)]),
            row(&[(3, 1.0), (7, 4.0)]),
            row(&[]),
        ];
        let index = InvertedIndex::new(&corpus, 8).expect("index");
        let q = row(&[(3, 1.0), (7, 0.5)]);
        let scores = index.scores(&q).expect("scores");
        let want: Vec<f32> = corpus.iter().map(|c| c.dot(&q)).collect();
        assert_eq!(scores, want);
        let hits = index.search(std::slice::from_ref(&q), 10).expect("search");
        let ids: Vec<usize> = hits[0].iter().map(|h| h.corpus_id).collect();
        // 3.0, 2.0, then the zeros by id; top_k capped at the 4 rows.
        assert_eq!(ids, [2, 0, 1, 3]);
        assert!(index.search(std::slice::from_ref(&q), 0).is_err());
        assert!(index.search(&[], 3).is_err());
        assert!(index.scores(&row(&[(8, 1.0)])).is_err());
        assert!(index.scores(&row(&[(3, 1.0), (2, 1.0)])).is_err());
        assert!(index.scores(&row(&[(2, f32::NAN)])).is_err());
        assert!(InvertedIndex::new(&[], 8).is_err());
        assert!(InvertedIndex::new(&[row(&[(9, 1.0)])], 8).is_err());
    }

    #[test]
    fn hybrid_weights_move_between_dense_and_sparse_rankings() {
        // Dense: row 0 matches the query; sparse: row 1 does.
        let dense_c = [1.0f32, 0.0, 0.0, 1.0];
        let dense_q = [1.0f32, 0.1];
        let c = Vectors::new(&dense_c, 2).expect("c");
        let q = Vectors::new(&dense_q, 2).expect("q");
        let sparse_c = [row(&[(0, 0.1)]), row(&[(0, 2.0)])];
        let index = InvertedIndex::new(&sparse_c, 4).expect("index");
        let sq = [row(&[(0, 1.0)])];
        let top = |w: f32| hybrid_search(&q, &c, &sq, &index, 1, w).expect("hybrid")[0][0];
        assert_eq!(top(1.0).corpus_id, 0);
        assert_eq!(top(0.0).corpus_id, 1);
        assert!(
            (top(0.0).score - 1.0).abs() < 1e-6,
            "sparse scaled by the best"
        );
        assert!(hybrid_search(&q, &c, &sq, &index, 1, 1.5).is_err());
        assert!(hybrid_search(&q, &c, &[], &index, 1, 0.5).is_err());
    }
}
