//! Exact top-k search (`util.semantic_search`).

use serde::Serialize;

use crate::scores::{block, prepared, TopK, CORPUS_BLOCK, QUERY_BLOCK};
use crate::{Embeddings, Score, SearchError};

/// One result of a query.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Hit {
    /// Row of the corpus.
    pub corpus_id: usize,
    /// Its score against the query.
    pub score: f32,
}

/// The `top_k` corpus rows that score highest against each query, best first (equal scores:
/// the smaller `corpus_id` first). Scores are computed in blocks of 256 queries × 65,536
/// corpus rows, so memory does not grow with `queries × corpus`.
///
/// # Errors
/// An empty side, different dimensions, or `top_k` not in `1..=corpus.len()`.
pub fn semantic_search(
    queries: &Embeddings<'_>,
    corpus: &Embeddings<'_>,
    top_k: usize,
    score: Score,
) -> Result<Vec<Vec<Hit>>, SearchError> {
    if queries.is_empty() {
        return Err(SearchError::Empty("query set"));
    }
    if corpus.is_empty() {
        return Err(SearchError::Empty("corpus"));
    }
    if queries.dim() != corpus.dim() {
        return Err(SearchError::DimensionMismatch {
            queries: queries.dim(),
            corpus: corpus.dim(),
        });
    }
    if top_k == 0 || top_k > corpus.len() {
        return Err(SearchError::TopK {
            top_k,
            max: corpus.len(),
        });
    }
    let dim = corpus.dim();
    let q = prepared(queries, score);
    let c = prepared(corpus, score);
    let mut lists: Vec<TopK> = (0..queries.len()).map(|_| TopK::new(top_k)).collect();
    for (cb, corpus_rows) in c.chunks(CORPUS_BLOCK * dim).enumerate() {
        let n = corpus_rows.len() / dim;
        for (qb, query_rows) in q.chunks(QUERY_BLOCK * dim).enumerate() {
            let scores = block(query_rows, corpus_rows, dim)?;
            for (r, row) in scores.chunks_exact(n).enumerate() {
                let list = &mut lists[qb * QUERY_BLOCK + r];
                for (j, &s) in row.iter().enumerate() {
                    list.push(s, cb * CORPUS_BLOCK + j);
                }
            }
        }
    }
    Ok(lists
        .into_iter()
        .map(|l| {
            l.into_sorted()
                .into_iter()
                .map(|s| Hit {
                    corpus_id: s.id,
                    score: s.score,
                })
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_are_the_best_by_cosine_or_dot() {
        let corpus = [1.0, 0.0, 0.0, 2.0, 3.0, 3.0];
        let c = Embeddings::new(&corpus, 2).expect("rows");
        let q = Embeddings::new(&[1.0, 1.0], 2).expect("rows");
        let cos = semantic_search(&q, &c, 2, Score::Cosine).expect("search");
        assert_eq!(cos[0][0].corpus_id, 2);
        assert!((cos[0][0].score - 1.0).abs() < 1e-6);
        let dot = semantic_search(&q, &c, 3, Score::Dot).expect("search");
        let ids: Vec<usize> = dot[0].iter().map(|h| h.corpus_id).collect();
        assert_eq!(ids, [2, 1, 0]);
        assert_eq!(dot[0][1].score, 2.0);
    }

    #[test]
    fn bad_input_is_an_error() {
        let c = Embeddings::new(&[1.0, 0.0], 2).expect("rows");
        let q3 = Embeddings::new(&[1.0, 0.0, 0.0], 3).expect("rows");
        let empty = Embeddings::new(&[], 2).expect("no rows");
        assert!(matches!(
            semantic_search(&q3, &c, 1, Score::Cosine),
            Err(SearchError::DimensionMismatch { .. })
        ));
        assert!(matches!(
            semantic_search(&c, &c, 0, Score::Cosine),
            Err(SearchError::TopK { .. })
        ));
        assert!(matches!(
            semantic_search(&c, &c, 2, Score::Cosine),
            Err(SearchError::TopK { .. })
        ));
        assert!(matches!(
            semantic_search(&empty, &c, 1, Score::Cosine),
            Err(SearchError::Empty(_))
        ));
        assert!(matches!(
            semantic_search(&c, &empty, 1, Score::Cosine),
            Err(SearchError::Empty(_))
        ));
        assert!(Embeddings::new(&[1.0, f32::NAN], 2).is_err());
        assert!(Embeddings::new(&[1.0, 2.0, 3.0], 2).is_err());
    }
}
