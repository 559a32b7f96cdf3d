//! Fast community detection (`util.community_detection`, sentence-transformers 6.2, its CPU
//! path): every item with at least `min_community_size` items (itself included) at cosine ≥
//! `threshold` is a candidate centre; candidates are taken largest first, each keeping the
//! members no earlier community took, and kept when still large enough.

use crate::scores::finish_cosines;
use crate::scores::{block, normalized};
use crate::{check_threshold, SearchError, Vectors};

/// Rows scored at once.
const BATCH: usize = 1024;

/// The `k` highest `(score, index)` of `row`, best first (equal scores: smaller index first).
fn top(row: &[f32], k: usize) -> Vec<(f32, usize)> {
    let mut v: Vec<(f32, usize)> = row.iter().copied().zip(0..).collect();
    let order = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if k < v.len() {
        v.select_nth_unstable_by(k - 1, order);
        v.truncate(k);
    }
    v.sort_unstable_by(order);
    v
}

/// Communities, largest first; each starts with its centre, the rest by decreasing similarity
/// to it. An empty input, or fewer items than `min_community_size`, has none.
///
/// # Errors
/// `threshold` outside [-1, 1] or `min_community_size` of 0.
pub fn community_detection(
    embeddings: &Vectors<'_>,
    threshold: f32,
    min_community_size: usize,
) -> Result<Vec<Vec<usize>>, SearchError> {
    check_threshold(threshold)?;
    if min_community_size == 0 {
        return Err(SearchError::Zero("min_community_size"));
    }
    let n = embeddings.len();
    if n == 0 || n < min_community_size {
        return Ok(Vec::new());
    }
    let dim = embeddings.dim();
    let e = normalized(embeddings);
    let mut sort_max_size = (2 * min_community_size).max(50).min(n);
    let mut candidates: Vec<(usize, Vec<usize>)> = Vec::new();
    for (b, rows) in e.chunks(BATCH * dim).enumerate() {
        let mut scores = block(rows, &e, dim)?;
        finish_cosines(&mut scores, rows, &e, dim);
        for (r, row) in scores.chunks_exact(n).enumerate() {
            // The min_community_size-th highest score decides whether this is a centre.
            let mut copy = row.to_vec();
            let kth = min_community_size - 1;
            let (_, &mut kth_value, _) = copy.select_nth_unstable_by(kth, |a, b| b.total_cmp(a));
            if kth_value < threshold {
                continue;
            }
            let mut best = top(row, sort_max_size);
            while best.last().is_some_and(|&(s, _)| s >= threshold) && sort_max_size < n {
                sort_max_size = (2 * sort_max_size).min(n);
                best = top(row, sort_max_size);
            }
            let members = best
                .into_iter()
                .filter(|&(s, _)| s >= threshold)
                .map(|(_, i)| i)
                .collect();
            candidates.push((b * BATCH + r, members));
        }
    }
    // Largest first; equal sizes keep their row order (Python's sort is stable).
    candidates.sort_by_key(|c| std::cmp::Reverse(c.1.len()));
    let mut used = vec![false; n];
    let mut communities: Vec<Vec<usize>> = Vec::new();
    for (centre, members) in candidates {
        if used[centre] {
            continue;
        }
        let free: Vec<usize> = members.into_iter().filter(|&i| !used[i]).collect();
        if free.len() >= min_community_size {
            let mut community = vec![centre];
            community.extend(free.into_iter().filter(|&i| i != centre));
            for &i in &community {
                used[i] = true;
            }
            communities.push(community);
        }
    }
    communities.sort_by_key(|c| std::cmp::Reverse(c.len()));
    Ok(communities)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tight_groups_become_communities_largest_first() {
        // Three points near 0°, two near 90°, one alone at 200°.
        let angles = [0.0f32, 2.0, 4.0, 90.0, 92.0, 200.0];
        let rows: Vec<f32> = angles
            .iter()
            .flat_map(|a| [a.to_radians().cos(), a.to_radians().sin()])
            .collect();
        let e = Vectors::new(&rows, 2).expect("rows");
        let c = community_detection(&e, 0.99, 2).expect("communities");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].len(), 3);
        assert!(c[0].iter().all(|i| *i < 3));
        let mut second = c[1].clone();
        second.sort_unstable();
        assert_eq!(second, [3, 4]);
        assert!(community_detection(&e, 0.99, 4).expect("none").is_empty());
        assert!(community_detection(&e, 0.99, 7)
            .expect("too few")
            .is_empty());
        assert!(community_detection(&e, 1.5, 2).is_err());
        assert!(community_detection(&e, 0.5, 0).is_err());
    }
}
