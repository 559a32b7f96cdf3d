//! Exact top-k search (`util.semantic_search`).

use serde::Serialize;

use rayon::prelude::*;

use crate::scores::{
    finish_cosines, prepared, product_into, Scored, TopK, CORPUS_BLOCK, QUERY_BLOCK,
};
use crate::{check_search, Score, SearchError, Vectors};

/// One result of a query.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Hit {
    /// Row of the corpus.
    pub corpus_id: usize,
    /// Its score against the query.
    pub score: f32,
}

/// The `top_k` corpus rows that score highest against each query, best first (equal scores:
/// the smaller `corpus_id` first). Scores are computed in blocks of 1,024 queries × 16,384
/// corpus rows, so memory does not grow with `queries × corpus`.
///
/// # Errors
/// An empty side, different dimensions, or a `top_k` of 0 (a `top_k` above the corpus size is capped at it).
pub fn semantic_search(
    queries: &Vectors<'_>,
    corpus: &Vectors<'_>,
    top_k: usize,
    score: Score,
) -> Result<Vec<Vec<Hit>>, SearchError> {
    let top_k = check_search(queries, corpus.len(), corpus.dim(), top_k)?;
    let dim = corpus.dim();
    let q = prepared(queries, score);
    let c = prepared(corpus, score);
    let nq = queries.len();
    // One contiguous share of the corpus per thread, each with its own top-k lists, merged at
    // the end: the products and the top-k scans both run in parallel, and the result does not
    // depend on the split (the lists' order is total: score, then id).
    // The threads of the current rayon pool (the caller's `install`, else the global one).
    let threads = rayon::current_num_threads()
        .min(corpus.len().div_ceil(CORPUS_BLOCK))
        .max(1);
    let share = corpus.len().div_ceil(threads);
    let partial: Vec<Vec<Vec<Scored>>> = c
        .par_chunks(share * dim)
        .enumerate()
        .map(|(t, mine)| scan(&q, nq, mine, t * share, dim, top_k, score))
        .collect();
    let mut lists: Vec<TopK> = (0..nq).map(|_| TopK::new(top_k)).collect();
    for part in partial {
        for (list, found) in lists.iter_mut().zip(part) {
            for s in found {
                list.push(s.score, s.id);
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

/// The `top_k` best of `corpus` rows (ids from `offset`) for each of `nq` query rows, on the
/// calling thread, in blocks of [`QUERY_BLOCK`] × [`CORPUS_BLOCK`].
fn scan(
    q: &[f32],
    nq: usize,
    corpus: &[f32],
    offset: usize,
    dim: usize,
    top_k: usize,
    score: Score,
) -> Vec<Vec<Scored>> {
    let mut lists: Vec<TopK> = (0..nq).map(|_| TopK::new(top_k)).collect();
    let mut scores = vec![0f32; QUERY_BLOCK.min(nq) * CORPUS_BLOCK];
    for (cb, block) in corpus.chunks(CORPUS_BLOCK * dim).enumerate() {
        let n = block.len() / dim;
        for (qb, rows) in q.chunks(QUERY_BLOCK * dim).enumerate() {
            let m = rows.len() / dim;
            product_into(&mut scores, rows, m, block, n, dim);
            if score == Score::Cosine {
                finish_cosines(&mut scores[..m * n], rows, block, dim);
            }
            for (r, row) in scores[..m * n].chunks_exact(n).enumerate() {
                let list = &mut lists[qb * QUERY_BLOCK + r];
                for (j, &s) in row.iter().enumerate() {
                    list.push(s, offset + cb * CORPUS_BLOCK + j);
                }
            }
        }
    }
    lists.into_iter().map(TopK::into_sorted).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_are_the_best_by_cosine_or_dot() {
        let corpus = [1.0, 0.0, 0.0, 2.0, 3.0, 3.0];
        let c = Vectors::new(&corpus, 2).expect("rows");
        let q = Vectors::new(&[1.0, 1.0], 2).expect("rows");
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
        let c = Vectors::new(&[1.0, 0.0], 2).expect("rows");
        let q3 = Vectors::new(&[1.0, 0.0, 0.0], 3).expect("rows");
        let empty = Vectors::new(&[], 2).expect("no rows");
        assert!(matches!(
            semantic_search(&q3, &c, 1, Score::Cosine),
            Err(SearchError::DimensionMismatch { .. })
        ));
        assert!(matches!(
            semantic_search(&c, &c, 0, Score::Cosine),
            Err(SearchError::TopK { .. })
        ));
        // Above the corpus size, top_k is capped as in sentence-transformers.
        let capped = semantic_search(&c, &c, 2, Score::Cosine).expect("capped");
        assert_eq!(capped[0].len(), 1);
        assert!(matches!(
            semantic_search(&empty, &c, 1, Score::Cosine),
            Err(SearchError::Empty(_))
        ));
        assert!(matches!(
            semantic_search(&c, &empty, 1, Score::Cosine),
            Err(SearchError::Empty(_))
        ));
        assert!(Vectors::new(&[1.0, f32::NAN], 2).is_err());
        assert!(Vectors::new(&[1.0, 2.0, 3.0], 2).is_err());
    }
}
