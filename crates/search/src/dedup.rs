//! Semantic de-duplication, greedy in input order: an item is kept unless its cosine to some
//! already kept item is ≥ `threshold`; then it is a duplicate of the kept item it is most
//! similar to (ties: the earliest).

use serde::Serialize;

use crate::scores::finish_cosines;
use crate::scores::{block, normalized};
use crate::{check_threshold, SearchError, Vectors};

/// Rows decided per block.
const BLOCK: usize = 512;

/// The outcome for every item, in input order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dedup {
    /// For each item: `None` if kept, else the kept item it duplicates.
    pub duplicate_of: Vec<Option<usize>>,
    /// For each duplicate: its cosine to that kept item (`None` for kept items).
    pub similarity: Vec<Option<f32>>,
}

impl Dedup {
    /// The kept items, in input order.
    pub fn kept(&self) -> Vec<usize> {
        (0..self.duplicate_of.len())
            .filter(|&i| self.duplicate_of[i].is_none())
            .collect()
    }
}

/// De-duplicates `embeddings` at `threshold` (cosine). Blocks of 512 items are scored against
/// the items kept before them with one matrix product and against each other with another,
/// then decided in order.
///
/// # Errors
/// `threshold` outside [-1, 1].
pub fn dedup(embeddings: &Vectors<'_>, threshold: f32) -> Result<Dedup, SearchError> {
    check_threshold(threshold)?;
    let n = embeddings.len();
    let dim = embeddings.dim();
    let e = normalized(embeddings);
    let mut duplicate_of: Vec<Option<usize>> = vec![None; n];
    let mut similarity: Vec<Option<f32>> = vec![None; n];
    let mut kept: Vec<usize> = Vec::new();
    let mut kept_rows: Vec<f32> = Vec::new();
    for (b, rows) in e.chunks(BLOCK * dim).enumerate() {
        let m = rows.len() / dim;
        let before = kept.len();
        let mut against_kept = block(rows, &kept_rows, dim)?;
        finish_cosines(&mut against_kept, rows, &kept_rows, dim);
        let mut within = block(rows, rows, dim)?;
        finish_cosines(&mut within, rows, rows, dim);
        let mut kept_here: Vec<usize> = Vec::new();
        for r in 0..m {
            let i = b * BLOCK + r;
            // Best earlier kept item: ties go to the earliest (smallest index).
            let mut best: Option<(f32, usize)> = None;
            let mut consider = |score: f32, item: usize| {
                if score >= threshold
                    && best.is_none_or(|(s, it)| score > s || (score == s && item < it))
                {
                    best = Some((score, item));
                }
            };
            for (k, &item) in kept[..before].iter().enumerate() {
                consider(against_kept[r * before + k], item);
            }
            for &q in &kept_here {
                consider(within[r * m + q], b * BLOCK + q);
            }
            match best {
                Some((s, item)) => {
                    duplicate_of[i] = Some(item);
                    similarity[i] = Some(s);
                }
                None => kept_here.push(r),
            }
        }
        for &r in &kept_here {
            kept.push(b * BLOCK + r);
            kept_rows.extend_from_slice(&rows[r * dim..(r + 1) * dim]);
        }
    }
    Ok(Dedup {
        duplicate_of,
        similarity,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn exact_duplicates_score_exactly_one_and_every_score_stays_a_cosine() {
        // Rows whose normalized self-product rounds away from 1 (0.9999996 or 1.0000007).
        let dim = 384;
        let mut next = crate::uniform(7);
        let mut rows: Vec<f32> = (0..3 * dim).map(|_| next() * 3.7).collect();
        let first = rows[..dim].to_vec();
        rows.extend_from_slice(&first); // row 3 repeats row 0
        let e = Vectors::new(&rows, dim).expect("rows");
        let d = dedup(&e, 1.0).expect("dedup");
        assert_eq!(d.duplicate_of, vec![None, None, None, Some(0)]);
        assert_eq!(d.similarity[3], Some(1.0));
        let clusters = crate::community_detection(&e, 1.0, 2).expect("communities");
        assert_eq!(clusters, vec![vec![0, 3]]);
        let hits = crate::semantic_search(&e, &e, 4, crate::Score::Cosine).expect("search");
        for (i, h) in hits.iter().enumerate() {
            assert!(h.iter().all(|x| (-1.0..=1.0).contains(&x.score)), "{h:?}");
            assert_eq!(h[0].score, 1.0, "query {i} against itself");
        }
        let pairs = crate::paraphrase_mining(&e, 3, 10, crate::Score::Cosine).expect("mining");
        assert_eq!((pairs[0].i, pairs[0].j, pairs[0].score), (0, 3, 1.0));
    }

    use super::*;

    /// The rule stated directly: pairwise cosines, a scan in order.
    fn plain(rows: &[Vec<f32>], t: f32) -> Vec<Option<usize>> {
        let cos = |a: &[f32], b: &[f32]| {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            dot / (na * nb)
        };
        let mut kept: Vec<usize> = Vec::new();
        let mut out = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            let mut best: Option<(f32, usize)> = None;
            for &k in &kept {
                let s = cos(r, &rows[k]);
                if s >= t && best.is_none_or(|(bs, _)| s > bs) {
                    best = Some((s, k));
                }
            }
            out.push(best.map(|(_, k)| k));
            if best.is_none() {
                kept.push(i);
            }
        }
        out
    }

    #[test]
    fn greedy_rule_across_block_boundaries() {
        // 1,200 rows over 3 blocks: distinct angles (golden-ratio steps) on a circle, so
        // near neighbours exist but no two scores tie.
        let rows: Vec<Vec<f32>> = (0..1200)
            .map(|i| {
                let a = ((i as f64 * 0.618_033_988_749_895).fract() * std::f64::consts::TAU) as f32;
                vec![a.cos(), a.sin(), 0.1]
            })
            .collect();
        let flat: Vec<f32> = rows.concat();
        let e = Vectors::new(&flat, 3).expect("rows");
        let d = dedup(&e, 0.999).expect("dedup");
        assert_eq!(d.duplicate_of, plain(&rows, 0.999));
        assert!(d.kept().len() < 1200 && d.kept()[0] == 0);
        assert!(dedup(&e, -1.5).is_err());
    }

    #[test]
    fn a_duplicate_points_at_the_most_similar_kept_item() {
        let rows = [[1.0f32, 0.0], [0.0, 1.0], [0.8, 0.6], [1.0, 0.0]];
        let flat: Vec<f32> = rows.concat();
        let d = dedup(&Vectors::new(&flat, 2).expect("rows"), 0.7).expect("dedup");
        assert_eq!(d.duplicate_of, [None, None, Some(0), Some(0)]);
        assert_eq!(d.kept(), [0, 1]);
    }
}
