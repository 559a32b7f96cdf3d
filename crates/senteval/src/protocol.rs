//! SentEval's three validation schemes (`senteval/tools/validation.py`, sklearn variant), on
//! the batched logistic regression: every fit a scheme needs is handed to the solver at once.

use crate::folds::stratified_folds;
use crate::logistic::{fit, predict, Design, Problem, Settings};
use crate::SentEvalError;

/// `C` grid of `InnerKFoldClassifier` and `SplitClassifier`: 2⁻²…2³.
const INNER_PENALTIES: [f64; 6] = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0];
/// `C` grid of `KFoldClassifier`: 2⁻¹…2⁵.
const KFOLD_PENALTIES: [f64; 7] = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0];

/// How to validate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Validation {
    pub(crate) folds: usize,
    pub(crate) seed: u32,
    pub(crate) solver: Settings,
}

/// Accuracies ×100 rounded to 2 decimals as SentEval reports them, and the test predictions
/// where a fixed test set exists.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) dev: f64,
    pub(crate) test: f64,
    pub(crate) predictions: Vec<u32>,
}

/// numpy's `round(x, 2)`: half to even on `x·100`.
pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round_ties_even() / 100.0
}

fn accuracy(predicted: &[u32], labels: &[u32], rows: impl Iterator<Item = usize>) -> f64 {
    let (mut right, mut all) = (0usize, 0usize);
    for i in rows {
        all += 1;
        right += usize::from(predicted[i] == labels[i]);
    }
    right as f64 / all.max(1) as f64
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

/// The first best score's index (`np.argmax`).
fn argmax(xs: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

fn folds(labels: &[u32], v: &Validation, file: &str) -> Result<Vec<usize>, SentEvalError> {
    stratified_folds(labels, v.folds, v.seed).map_err(|e| SentEvalError::TooFewExamples {
        data: file.to_string(),
        label: e.label,
        count: e.count,
        folds: e.folds,
    })
}

/// `InnerKFoldClassifier` (MR, CR, SUBJ, MPQA): outer stratified k-fold; inside each outer
/// training set, an inner stratified k-fold picks `C` by mean accuracy; the outer fold is
/// scored by a fit on its whole training set. Returns (mean inner best, mean outer test).
pub(crate) fn nested_cv(
    design: &Design,
    labels: &[u32],
    classes: usize,
    v: &Validation,
    name: &str,
) -> Result<Outcome, SentEvalError> {
    let k = v.folds;
    let outer = folds(labels, v, name)?;
    let mut outer_train: Vec<Vec<u32>> = Vec::with_capacity(k);
    let mut inner: Vec<Vec<usize>> = Vec::with_capacity(k);
    for o in 0..k {
        let train: Vec<u32> = (0..labels.len())
            .filter(|&i| outer[i] != o)
            .map(|i| i as u32)
            .collect();
        let train_labels: Vec<u32> = train.iter().map(|&i| labels[i as usize]).collect();
        inner.push(folds(&train_labels, v, name)?);
        outer_train.push(train);
    }
    // Phase 1: every (outer, C, inner) fit at once.
    let mut problems = Vec::with_capacity(k * INNER_PENALTIES.len() * k);
    for o in 0..k {
        for &c in &INNER_PENALTIES {
            for i in 0..k {
                let rows = outer_train[o]
                    .iter()
                    .zip(&inner[o])
                    .filter(|(_, &f)| f != i)
                    .map(|(&r, _)| r)
                    .collect();
                problems.push(Problem { rows, c });
            }
        }
    }
    let models = fit(design, labels, classes, &problems, &v.solver)?;
    let predicted = predict(design, &models, classes)?;
    let mut best_c = Vec::with_capacity(k);
    let mut dev = Vec::with_capacity(k);
    for o in 0..k {
        let scores: Vec<f64> = (0..INNER_PENALTIES.len())
            .map(|ci| {
                let per_fold: Vec<f64> = (0..k)
                    .map(|i| {
                        let p = &predicted[(o * INNER_PENALTIES.len() + ci) * k + i];
                        let held_out = outer_train[o]
                            .iter()
                            .zip(&inner[o])
                            .filter(|(_, &f)| f == i)
                            .map(|(&r, _)| r as usize);
                        accuracy(p, labels, held_out)
                    })
                    .collect();
                round2(100.0 * mean(&per_fold))
            })
            .collect();
        let best = argmax(&scores);
        best_c.push(INNER_PENALTIES[best]);
        dev.push(scores[best]);
    }
    // Phase 2: each outer fold refit on all its training rows with its chosen C.
    let problems: Vec<Problem> = (0..k)
        .map(|o| Problem {
            rows: outer_train[o].clone(),
            c: best_c[o],
        })
        .collect();
    let models = fit(design, labels, classes, &problems, &v.solver)?;
    let predicted = predict(design, &models, classes)?;
    let test: Vec<f64> = (0..k)
        .map(|o| {
            let rows = (0..labels.len()).filter(|&i| outer[i] == o);
            round2(100.0 * accuracy(&predicted[o], labels, rows))
        })
        .collect();
    Ok(Outcome {
        dev: round2(mean(&dev)),
        test: round2(mean(&test)),
        predictions: Vec::new(),
    })
}

/// `KFoldClassifier` (TREC, MRPC): stratified k-fold on train picks `C`; a fit on all of train
/// is scored on the fixed test set.
pub(crate) fn kfold_then_test(
    train: (&Design, &[u32]),
    test: (&Design, &[u32]),
    classes: usize,
    v: &Validation,
    name: &str,
) -> Result<Outcome, SentEvalError> {
    let (design, labels) = train;
    let k = v.folds;
    let fold = folds(labels, v, name)?;
    let mut problems = Vec::with_capacity(KFOLD_PENALTIES.len() * k);
    for &c in &KFOLD_PENALTIES {
        for f in 0..k {
            let rows = (0..labels.len())
                .filter(|&i| fold[i] != f)
                .map(|i| i as u32)
                .collect();
            problems.push(Problem { rows, c });
        }
    }
    let models = fit(design, labels, classes, &problems, &v.solver)?;
    let predicted = predict(design, &models, classes)?;
    let scores: Vec<f64> = (0..KFOLD_PENALTIES.len())
        .map(|ci| {
            let per_fold: Vec<f64> = (0..k)
                .map(|f| {
                    let held_out = (0..labels.len()).filter(|&i| fold[i] == f);
                    accuracy(&predicted[ci * k + f], labels, held_out)
                })
                .collect();
            round2(100.0 * mean(&per_fold))
        })
        .collect();
    let best = argmax(&scores);
    let all = Problem {
        rows: (0..labels.len() as u32).collect(),
        c: KFOLD_PENALTIES[best],
    };
    let model = fit(design, labels, classes, &[all], &v.solver)?;
    let (test_design, test_labels) = test;
    let predictions = predict(test_design, &model, classes)?.swap_remove(0);
    let acc = accuracy(&predictions, test_labels, 0..test_labels.len());
    Ok(Outcome {
        dev: scores[best],
        test: round2(100.0 * acc),
        predictions,
    })
}

/// `SplitClassifier` (SST-2): one fit per `C` on train, the best on dev scored on test.
pub(crate) fn dev_selected(
    train: (&Design, &[u32]),
    dev: (&Design, &[u32]),
    test: (&Design, &[u32]),
    classes: usize,
    v: &Validation,
) -> Result<Outcome, SentEvalError> {
    let (design, labels) = train;
    let rows: Vec<u32> = (0..labels.len() as u32).collect();
    let problems: Vec<Problem> = INNER_PENALTIES
        .iter()
        .map(|&c| Problem {
            rows: rows.clone(),
            c,
        })
        .collect();
    let models = fit(design, labels, classes, &problems, &v.solver)?;
    let on_dev = predict(dev.0, &models, classes)?;
    let scores: Vec<f64> = on_dev
        .iter()
        .map(|p| round2(100.0 * accuracy(p, dev.1, 0..dev.1.len())))
        .collect();
    let best = argmax(&scores);
    // SentEval refits the chosen C on the same training set: the same problem, the same fit.
    let predictions = predict(test.0, &models[best..=best], classes)?.swap_remove(0);
    let acc = accuracy(&predictions, test.1, 0..test.1.len());
    Ok(Outcome {
        dev: scores[best],
        test: round2(100.0 * acc),
        predictions,
    })
}

/// F1 ×100 of class 1 (`sklearn.metrics.f1_score`, binary), rounded as SentEval.
pub(crate) fn f1(predicted: &[u32], labels: &[u32]) -> f64 {
    let (mut tp, mut fp, mut fneg) = (0usize, 0usize, 0usize);
    for (&p, &y) in predicted.iter().zip(labels) {
        match (p, y) {
            (1, 1) => tp += 1,
            (1, _) => fp += 1,
            (_, 1) => fneg += 1,
            _ => {}
        }
    }
    let denom = 2 * tp + fp + fneg;
    if denom == 0 {
        return 0.0;
    }
    round2(100.0 * (2 * tp) as f64 / denom as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_argmax_and_f1_follow_numpy_and_sklearn() {
        assert_eq!(round2(84.125), 84.12);
        assert_eq!(round2(0.375), 0.38);
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        // tp 2, fp 1, fn 1 → 2·2 / (4 + 2) = 66.67
        assert_eq!(f1(&[1, 1, 1, 0, 0], &[1, 1, 0, 1, 0]), 66.67);
        assert_eq!(f1(&[0, 0], &[0, 0]), 0.0);
    }
}
