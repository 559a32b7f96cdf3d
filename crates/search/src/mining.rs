//! Paraphrase mining (`util.paraphrase_mining_embeddings`, sentence-transformers 6.2): each
//! item's `top_k` nearest others are candidates; a pair counts once (`i < j`, with the score
//! of whichever item found it first); at most `max_pairs` are kept, the lowest evicted; best
//! first.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashSet};

use serde::Serialize;

use crate::scores::{block, finish_cosines, prepared, TopK, CORPUS_BLOCK, QUERY_BLOCK};
use crate::{Score, SearchError, Vectors};

/// A mined pair, `i < j`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pair {
    /// Their score.
    pub score: f32,
    /// The first item.
    pub i: usize,
    /// The second item.
    pub j: usize,
}

/// Python's tuple order on `(score, i, j)`, the order of sentence-transformers' heap.
#[derive(Debug, Clone, Copy)]
struct Entry(Pair);

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .score
            .total_cmp(&other.0.score)
            .then(self.0.i.cmp(&other.0.i))
            .then(self.0.j.cmp(&other.0.j))
    }
}

/// The pairs of `embeddings` that score highest, best first. `top_k` candidates per item
/// (sentence-transformers' default 100; fewer when there are fewer other items), at most
/// `max_pairs` pairs (its default 500,000).
///
/// # Errors
/// Fewer than 2 items, or `top_k` / `max_pairs` of 0.
pub fn paraphrase_mining(
    embeddings: &Vectors<'_>,
    top_k: usize,
    max_pairs: usize,
    score: Score,
) -> Result<Vec<Pair>, SearchError> {
    if embeddings.len() < 2 {
        return Err(SearchError::Empty("set of at least two items"));
    }
    if top_k == 0 {
        return Err(SearchError::Zero("top_k"));
    }
    if max_pairs == 0 {
        return Err(SearchError::Zero("max_pairs"));
    }
    let n = embeddings.len();
    let dim = embeddings.dim();
    let e = prepared(embeddings, score);
    let keep = (top_k + 1).min(n);
    let mut heap: BinaryHeap<Reverse<Entry>> = BinaryHeap::new();
    let mut queued: HashSet<(usize, usize)> = HashSet::new();
    let mut min_score = f32::NEG_INFINITY;
    for (qb, query_rows) in e.chunks(QUERY_BLOCK * dim).enumerate() {
        let rows = query_rows.len() / dim;
        let mut lists: Vec<TopK> = (0..rows).map(|_| TopK::new(keep)).collect();
        for (cb, corpus_rows) in e.chunks(CORPUS_BLOCK * dim).enumerate() {
            let width = corpus_rows.len() / dim;
            let mut scores = block(query_rows, corpus_rows, dim)?;
            if score == Score::Cosine {
                finish_cosines(&mut scores, query_rows, corpus_rows, dim);
            }
            for (r, row) in scores.chunks_exact(width).enumerate() {
                for (j, &s) in row.iter().enumerate() {
                    lists[r].push(s, cb * CORPUS_BLOCK + j);
                }
            }
        }
        for (r, list) in lists.into_iter().enumerate() {
            let i = qb * QUERY_BLOCK + r;
            let neighbours = list
                .into_sorted()
                .into_iter()
                .filter(|s| s.id != i)
                .take(top_k);
            for s in neighbours {
                if s.score <= min_score {
                    continue;
                }
                let (a, b) = if i < s.id { (i, s.id) } else { (s.id, i) };
                if !queued.insert((a, b)) {
                    continue;
                }
                let entry = Entry(Pair {
                    score: s.score,
                    i: a,
                    j: b,
                });
                if heap.len() < max_pairs {
                    heap.push(Reverse(entry));
                } else {
                    // heapq.heappushpop: the smaller of the new pair and the heap's minimum
                    // leaves.
                    let evicted = match heap.peek() {
                        Some(Reverse(min)) if *min < entry => {
                            let Reverse(min) = heap.pop().expect("peeked");
                            heap.push(Reverse(entry));
                            min
                        }
                        _ => entry,
                    };
                    queued.remove(&(evicted.0.i, evicted.0.j));
                    min_score = evicted.0.score;
                }
            }
        }
    }
    let mut pairs: Vec<Pair> = heap.into_iter().map(|Reverse(e)| e.0).collect();
    pairs.sort_by_key(|p| Reverse(Entry(*p)));
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(angle_deg: f32) -> [f32; 2] {
        let a = angle_deg.to_radians();
        [a.cos(), a.sin()]
    }

    #[test]
    fn pairs_are_distinct_ordered_and_capped() {
        let rows: Vec<f32> = [0.0, 10.0, 100.0, 105.0, 200.0]
            .iter()
            .flat_map(|&a| unit(a))
            .collect();
        let e = Vectors::new(&rows, 2).expect("rows");
        let all = paraphrase_mining(&e, 4, 100, Score::Cosine).expect("mine");
        assert_eq!(all.len(), 10, "every pair once");
        assert_eq!((all[0].i, all[0].j), (2, 3), "5° apart first");
        assert_eq!((all[1].i, all[1].j), (0, 1));
        assert!(all.windows(2).all(|w| w[0].score >= w[1].score));
        assert!(all.iter().all(|p| p.i < p.j));
        let top = paraphrase_mining(&e, 1, 2, Score::Cosine).expect("mine");
        assert_eq!(top.len(), 2);
        assert_eq!((top[0].i, top[0].j, top[1].i, top[1].j), (2, 3, 0, 1));
    }

    #[test]
    fn bad_input_is_an_error() {
        let one = Vectors::new(&[1.0, 0.0], 2).expect("rows");
        assert!(matches!(
            paraphrase_mining(&one, 1, 1, Score::Cosine),
            Err(SearchError::Empty(_))
        ));
        let two = Vectors::new(&[1.0, 0.0, 0.0, 1.0], 2).expect("rows");
        assert!(matches!(
            paraphrase_mining(&two, 0, 1, Score::Cosine),
            Err(SearchError::Zero(_))
        ));
        assert!(matches!(
            paraphrase_mining(&two, 1, 0, Score::Cosine),
            Err(SearchError::Zero(_))
        ));
    }
}
