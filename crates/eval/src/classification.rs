//! Evaluators over pairs and triplets, as sentence-transformers' `TripletEvaluator` and
//! `BinaryClassificationEvaluator` score them (cosine similarity).

use sbert::{DType, TextEmbedder};
use serde::Serialize;

use crate::{EvalError, StsPair};

/// Cosine similarity of `a[i]` and `b[i]` for every pair, embedding each distinct text once.
fn pair_cosines(
    model: &(impl TextEmbedder + ?Sized),
    a: &[&str],
    b: &[&str],
    dataset: &str,
) -> Result<Vec<f64>, EvalError> {
    let mut index = std::collections::HashMap::new();
    let mut unique: Vec<&str> = Vec::new();
    for &t in a.iter().chain(b) {
        index.entry(t).or_insert_with(|| {
            unique.push(t);
            unique.len() - 1
        });
    }
    let e = sbert::normalize(&model.embed_texts(&unique)?.to_dtype(DType::F32)?)?;
    let rows: Vec<Vec<f32>> = e.to_vec2()?;
    let cos: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| {
            let (x, y) = (&rows[index[x]], &rows[index[y]]);
            x.iter().zip(y).map(|(p, q)| f64::from(p * q)).sum()
        })
        .collect();
    match cos.iter().position(|c: &f64| !c.is_finite()) {
        Some(index) => Err(EvalError::NonFinite {
            dataset: dataset.into(),
            what: "cosine similarity".into(),
            index,
        }),
        None => Ok(cos),
    }
}

/// The share (×100) of (anchor, positive, negative) triplets whose anchor is more similar, by
/// cosine, to the positive than to the negative (`TripletEvaluator`'s `cosine_accuracy`).
///
/// # Errors
/// On no triplets, or when encoding fails.
pub fn triplet_accuracy(
    model: &(impl TextEmbedder + ?Sized),
    triplets: &[(&str, &str, &str)],
) -> Result<f64, EvalError> {
    if triplets.is_empty() {
        return Err(EvalError::Undefined {
            dataset: "triplets".into(),
            what: "an empty triplet list".into(),
        });
    }
    let anchors: Vec<&str> = triplets.iter().map(|t| t.0).collect();
    let positives: Vec<&str> = triplets.iter().map(|t| t.1).collect();
    let negatives: Vec<&str> = triplets.iter().map(|t| t.2).collect();
    let mut both = anchors.clone();
    both.extend(&anchors);
    let mut others = positives;
    others.extend(&negatives);
    let cos = pair_cosines(model, &both, &others, "triplets")?;
    let n = triplets.len();
    let right = (0..n).filter(|&i| cos[i] > cos[n + i]).count();
    Ok(100.0 * right as f64 / n as f64)
}

/// Binary classification of labelled pairs by a cosine threshold, ×100
/// (`BinaryClassificationEvaluator`, cosine).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BinaryScores {
    /// Accuracy at the best threshold.
    pub accuracy: f64,
    /// That threshold (a cosine).
    pub accuracy_threshold: f64,
    /// F1 at the best threshold for F1.
    pub f1: f64,
    /// Precision there.
    pub precision: f64,
    /// Recall there.
    pub recall: f64,
    /// That threshold.
    pub f1_threshold: f64,
    /// Average precision of the ranking by cosine (scikit-learn's
    /// `average_precision_score`): the main score, as sentence-transformers'.
    pub average_precision: f64,
}

/// Scores labelled pairs (`score` 1: similar, 0: not) by the cosine of their embeddings.
///
/// # Errors
/// On no pairs, a label other than 0 and 1, or when encoding fails.
pub fn binary_classification(
    model: &(impl TextEmbedder + ?Sized),
    pairs: &[StsPair],
) -> Result<BinaryScores, EvalError> {
    if let Some(p) = pairs.iter().find(|p| p.score != 0.0 && p.score != 1.0) {
        return Err(EvalError::Undefined {
            dataset: "binary classification".into(),
            what: format!("label {} (labels are 0 and 1)", p.score),
        });
    }
    if pairs.is_empty() {
        return Err(EvalError::Undefined {
            dataset: "binary classification".into(),
            what: "an empty pair list".into(),
        });
    }
    let a: Vec<&str> = pairs.iter().map(|p| p.sentence1.as_str()).collect();
    let b: Vec<&str> = pairs.iter().map(|p| p.sentence2.as_str()).collect();
    let scores = pair_cosines(model, &a, &b, "binary classification")?;
    let labels: Vec<bool> = pairs.iter().map(|p| p.score == 1.0).collect();
    Ok(binary_scores(&scores, &labels))
}

/// [`BinaryScores`] of `scores` (higher: more similar) against `labels`.
pub fn binary_scores(scores: &[f64], labels: &[bool]) -> BinaryScores {
    let mut rows: Vec<(f64, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    rows.sort_by(|x, y| y.0.total_cmp(&x.0));
    let n = rows.len();
    let positives = labels.iter().filter(|&&l| l).count();
    // Walks the thresholds between groups of equal scores, most similar first: everything
    // before the threshold is predicted similar.
    let (mut best_acc, mut acc_threshold) = (0.0, 0.0);
    let (mut best_f1, mut best_p, mut best_r, mut f1_threshold) = (0.0, 0.0, 0.0, 0.0);
    let mut negatives_left = n - positives;
    if let Some(first) = rows.first() {
        best_acc = negatives_left as f64 / n as f64;
        acc_threshold = first.0 + f64::EPSILON * first.0.abs().max(1.0);
    }
    let (mut tp, mut extracted) = (0usize, 0usize);
    let (mut ap, mut last_recall) = (0.0, 0.0);
    for i in 0..n {
        let (score, label) = rows[i];
        extracted += 1;
        if label {
            tp += 1;
        } else {
            negatives_left -= 1;
        }
        let last = i + 1 == n;
        if !last && rows[i + 1].0 == score {
            continue;
        }
        let threshold = if last {
            score
        } else {
            (score + rows[i + 1].0) / 2.0
        };
        let acc = (tp + negatives_left) as f64 / n as f64;
        if acc > best_acc {
            best_acc = acc;
            acc_threshold = threshold;
        }
        if tp > 0 {
            let precision = tp as f64 / extracted as f64;
            let recall = tp as f64 / positives as f64;
            let f1 = 2.0 * precision * recall / (precision + recall);
            if f1 > best_f1 {
                (best_f1, best_p, best_r, f1_threshold) = (f1, precision, recall, threshold);
            }
            ap += (recall - last_recall) * precision;
            last_recall = recall;
        }
    }
    BinaryScores {
        accuracy: 100.0 * best_acc,
        accuracy_threshold: acc_threshold,
        f1: 100.0 * best_f1,
        precision: 100.0 * best_p,
        recall: 100.0 * best_r,
        f1_threshold,
        average_precision: 100.0 * ap,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-checked: sorted (0.9 T, 0.8 F, 0.7 T, 0.6 T, 0.2 F).
    #[test]
    fn thresholds_f1_and_average_precision() {
        let scores = [0.7, 0.2, 0.9, 0.8, 0.6];
        let labels = [true, false, true, false, true];
        let s = binary_scores(&scores, &labels);
        // Best accuracy 4/5 with the cut between 0.6 and 0.2.
        assert!((s.accuracy - 80.0).abs() < 1e-9);
        assert!((s.accuracy_threshold - 0.4).abs() < 1e-12);
        // F1: at 0.6 precision 3/4, recall 1: F1 = 6/7.
        assert!((s.f1 - 100.0 * 6.0 / 7.0).abs() < 1e-9);
        assert!((s.f1_threshold - 0.4).abs() < 1e-12);
        // AP = 1/3 · 1 + 1/3 · 2/3 + 1/3 · 3/4 (scikit-learn: 0.8055…).
        let ap = (1.0 + 2.0 / 3.0 + 0.75) / 3.0;
        assert!((s.average_precision - 100.0 * ap).abs() < 1e-9);
    }

    /// Tied scores form one threshold group: the cut never falls inside them.
    #[test]
    fn ties_are_one_group() {
        let s = binary_scores(&[0.5, 0.5, 0.1], &[true, false, false]);
        // Cutting after the tie: 2/3 right; predicting all dissimilar: 2/3 as well.
        assert!((s.accuracy - 200.0 / 3.0).abs() < 1e-9);
        assert!((s.average_precision - 50.0).abs() < 1e-9);
    }
}
