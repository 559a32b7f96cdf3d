//! The training objectives, as differentiable functions of sentence embeddings.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Tensor, D};

use crate::{Result, TrainError};

/// One part of the classification features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConcatPart {
    /// `u`.
    U,
    /// `v`.
    V,
    /// `|u − v|`.
    AbsDiff,
    /// `u ∗ v` (element-wise).
    Product,
}

/// The concatenation fed to the softmax classifier, e.g. `(u, v, |u−v|)` (the paper's choice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concat(pub Vec<ConcatPart>);

impl Default for Concat {
    fn default() -> Self {
        Concat(vec![ConcatPart::U, ConcatPart::V, ConcatPart::AbsDiff])
    }
}

impl FromStr for Concat {
    type Err = TrainError;

    /// `u,v,abs_diff,product` in any non-empty combination (`|u-v|` and `u*v` also accepted).
    fn from_str(s: &str) -> Result<Self> {
        let parts = s
            .split(',')
            .map(|p| match p.trim() {
                "u" => Ok(ConcatPart::U),
                "v" => Ok(ConcatPart::V),
                "abs_diff" | "|u-v|" => Ok(ConcatPart::AbsDiff),
                "product" | "u*v" => Ok(ConcatPart::Product),
                other => Err(TrainError::Invalid(format!(
                    "concat part {other:?}; valid: u, v, abs_diff, product"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        if parts.is_empty() {
            return Err(TrainError::Invalid("empty concatenation".into()));
        }
        Ok(Concat(parts))
    }
}

impl fmt::Display for Concat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .0
            .iter()
            .map(|p| match p {
                ConcatPart::U => "u",
                ConcatPart::V => "v",
                ConcatPart::AbsDiff => "|u-v|",
                ConcatPart::Product => "u*v",
            })
            .collect();
        write!(f, "({})", names.join(", "))
    }
}

impl Concat {
    /// `(n, d)`, `(n, d)` → `(n, d · parts)`.
    ///
    /// # Errors
    /// On a tensor op failure.
    pub fn features(&self, u: &Tensor, v: &Tensor) -> Result<Tensor> {
        let parts = self
            .0
            .iter()
            .map(|p| match p {
                ConcatPart::U => Ok(u.clone()),
                ConcatPart::V => Ok(v.clone()),
                ConcatPart::AbsDiff => (u - v)?.abs(),
                ConcatPart::Product => u * v,
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, 1)?)
    }
}

/// A training objective: sentence-transformers' loss of the same name, with its defaults.
#[derive(Debug, Clone, PartialEq)]
pub enum Objective {
    /// Regression: `mean((cos(u, v) − score / max_score)²)` (`CosineSimilarityLoss`).
    Cosine {
        /// The gold scale's maximum (5 for STS): labels are `score / max_score`.
        max_score: f32,
    },
    /// CoSENT on scored pairs: `log(1 + Σ exp(scale · (cos(k, l) − cos(i, j))))` over the pairs
    /// of pairs whose gold score says `(i, j)` is more similar than `(k, l)` (`CoSENTLoss`;
    /// only the order of the scores matters).
    CoSent {
        /// Multiplier of the similarity (20 in sentence-transformers).
        scale: f64,
    },
    /// AnglE: CoSENT over `pairwise_angle_sim`, `|cos + sin|` of the normalized embeddings
    /// with dimension `i` paired with `i + d/2` (`AnglELoss`).
    Angle {
        /// Multiplier of the similarity (20 in sentence-transformers).
        scale: f64,
    },
    /// Classification: cross-entropy of `softmax(W · concat)` over the NLI labels.
    Softmax {
        /// The features.
        concat: Concat,
    },
    /// In-batch negatives over scaled cosine, with optional self-adversarial re-weighting
    /// (`MultipleNegativesRankingLoss`): the query of each (query, positive[, negative]) row
    /// against every positive and hard negative of the batch.
    InBatchNegatives {
        /// Multiplier of the cosine (20 in sentence-transformers).
        scale: f64,
        /// Temperature of the self-adversarial weights; `None` (or 0) is the plain loss.
        temperature: Option<f64>,
    },
    /// In-batch negatives in both directions, the mean of the query → documents and the
    /// positive → queries softmaxes (`MultipleNegativesSymmetricRankingLoss`).
    SymmetricInBatchNegatives {
        /// Multiplier of the cosine (20 in sentence-transformers).
        scale: f64,
    },
    /// [`Objective::InBatchNegatives`] over a large batch in the memory of a small one
    /// (GradCache, `CachedMultipleNegativesRankingLoss`): every text is embedded without
    /// keeping activations, the loss's gradient with respect to the embeddings is computed
    /// once, then each mini-batch is embedded again (same dropout) and back-propagated.
    CachedInBatchNegatives {
        /// Multiplier of the cosine (20 in sentence-transformers).
        scale: f64,
        /// Texts per encoder pass (32 in sentence-transformers).
        mini_batch_size: usize,
    },
    /// `mean(relu(‖a − p‖ − ‖a − n‖ + margin))` over (anchor, positive, negative) triplets,
    /// Euclidean (`TripletLoss`).
    Triplet {
        /// How much farther the negative must be (5 in sentence-transformers).
        margin: f64,
    },
    /// Labelled pairs (1 similar, 0 not): `mean(½ (y d² + (1 − y) relu(margin − d)²))` with the
    /// cosine distance `d = 1 − cos` (`ContrastiveLoss`).
    Contrastive {
        /// The distance a dissimilar pair should keep (0.5 in sentence-transformers).
        margin: f64,
    },
    /// [`Objective::Contrastive`] on the batch's hard pairs only: positives farther apart than
    /// the closest negative, negatives closer than the farthest positive; summed
    /// (`OnlineContrastiveLoss`).
    OnlineContrastive {
        /// The distance a dissimilar pair should keep (0.5 in sentence-transformers).
        margin: f64,
    },
    /// Distillation: `mean((student(s) − teacher(s))²)` over every element (`MSELoss`); the
    /// teacher's embeddings come with the data ([`crate::TrainData::Distill`]).
    Mse,
}

/// Which rows an objective trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `score, sentence1, sentence2`.
    Scored,
    /// `premise, hypothesis, label`.
    Nli,
    /// `query, positive[, negative]`.
    Pairs,
    /// `anchor, positive, negative`.
    Triplets,
    /// `label, sentence1, sentence2` with labels 0 or 1.
    Labelled,
    /// Sentences with their teacher embeddings.
    Sentences,
}

impl Objective {
    /// The rows the objective trains on.
    pub fn layout(&self) -> Layout {
        match self {
            Objective::Cosine { .. } | Objective::CoSent { .. } | Objective::Angle { .. } => {
                Layout::Scored
            }
            Objective::Softmax { .. } => Layout::Nli,
            Objective::InBatchNegatives { .. }
            | Objective::SymmetricInBatchNegatives { .. }
            | Objective::CachedInBatchNegatives { .. } => Layout::Pairs,
            Objective::Triplet { .. } => Layout::Triplets,
            Objective::Contrastive { .. } | Objective::OnlineContrastive { .. } => Layout::Labelled,
            Objective::Mse => Layout::Sentences,
        }
    }

    /// Checks the objective's parameters.
    ///
    /// # Errors
    /// [`TrainError::Invalid`] for a maximum score, scale, margin or temperature that is not a
    /// positive number (a temperature of 0 means the plain loss), or a mini-batch of 0.
    pub fn validate(&self) -> Result<()> {
        let positive = |x: f64| x.is_finite() && x > 0.0;
        let ok = match self {
            Objective::Cosine { max_score } => max_score.is_finite() && *max_score > 0.0,
            Objective::Softmax { concat } => !concat.0.is_empty(),
            Objective::InBatchNegatives { scale, temperature } => {
                positive(*scale) && temperature.is_none_or(|t| t.is_finite() && t >= 0.0)
            }
            Objective::CoSent { scale }
            | Objective::Angle { scale }
            | Objective::SymmetricInBatchNegatives { scale } => positive(*scale),
            Objective::CachedInBatchNegatives {
                scale,
                mini_batch_size,
            } => positive(*scale) && *mini_batch_size > 0,
            Objective::Triplet { margin }
            | Objective::Contrastive { margin }
            | Objective::OnlineContrastive { margin } => positive(*margin),
            Objective::Mse => true,
        };
        if ok {
            Ok(())
        } else {
            Err(TrainError::Invalid(format!(
                "{self:?}: scores' maximum, scale, margin and temperature must be positive \
                 numbers, the mini-batch at least 1"
            )))
        }
    }
}

/// Regression loss: `mean((cos(u, v) − labels)²)` for `u, v (n, d)`, `labels (n,)`.
pub(crate) fn cosine_mse(u: &Tensor, v: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let cos = sbert::pairwise_cos_sim(u, v)?;
    Ok((cos - labels)?.sqr()?.mean_all()?)
}

/// Mean cross-entropy of `logits (n, c)` against class indices `labels (n,)` (u32).
pub(crate) fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::loss::cross_entropy(logits, labels)?)
}

/// In-batch-negatives loss. `queries (b, d)`, `docs (n, d)` with `n ≥ b`: doc i is the positive of
/// query i, every other doc a negative. With a temperature, negatives are re-weighted by
/// `softmax_{j≠i}(s_ij / T)` (no gradient through the weights) and the loss is
/// `mean_i[ logsumexp(s_ii, s_ij + log w_ij + log(n−1)) − s_ii ]`; with uniform weights this is
/// exactly the plain loss.
pub(crate) fn in_batch_negatives(
    queries: &Tensor,
    docs: &Tensor,
    scale: f64,
    temperature: Option<f64>,
) -> Result<Tensor> {
    let (b, _) = queries.dims2()?;
    let scores = (sbert::cos_sim(queries, docs)? * scale)?; // (b, n)
    match temperature.filter(|&t| t > 0.0) {
        None => {
            let labels = Tensor::arange(0u32, b as u32, queries.device())?;
            cross_entropy(&scores, &labels)
        }
        Some(t) => {
            let log_w = self_adversarial_log_weights(&scores, t)?;
            weighted_in_batch_loss(&scores, &log_w)
        }
    }
}

/// `(b, n)` mask with 1 at the positives `(i, i)`.
fn positives(b: usize, n: usize, like: &Tensor) -> Result<Tensor> {
    let mut eye = vec![0f32; b * n];
    for i in 0..b {
        eye[i * n + i] = 1.0;
    }
    Ok(Tensor::from_vec(eye, (b, n), like.device())?.to_dtype(like.dtype())?)
}

/// `log softmax_{j≠i}(s_ij / T)` over the negatives of each row, detached (no gradient).
pub(crate) fn self_adversarial_log_weights(scores: &Tensor, temperature: f64) -> Result<Tensor> {
    let (b, n) = scores.dims2()?;
    let eye = positives(b, n, scores)?;
    let tempered = ((scores.detach() / temperature)? - (&eye * 1e9)?)?;
    Ok(candle_nn::ops::log_softmax(&tempered, D::Minus1)?.detach())
}

/// `mean_i[ logsumexp(s_ii, s_ij + log w_ij + log(n−1)) − s_ii ]` for given log-weights.
pub(crate) fn weighted_in_batch_loss(scores: &Tensor, log_w: &Tensor) -> Result<Tensor> {
    let (b, n) = scores.dims2()?;
    if n < 2 {
        return Ok((scores.sum_all()? * 0.0)?);
    }
    let eye = positives(b, n, scores)?;
    let neg_adj = ((scores + log_w)? + ((n - 1) as f64).ln())?;
    // Positives keep their score; negatives get the adjusted one.
    let adj = ((&eye * scores)? + (eye.affine(-1.0, 1.0)? * neg_adj)?)?;
    let lse = logsumexp_rows(&adj)?;
    let pos = (&eye * scores)?.sum(D::Minus1)?;
    Ok((lse - pos)?.mean_all()?)
}

/// CoSENT: `log(1 + Σ_{label_i < label_j} exp(s_i − s_j))` for the scaled similarities
/// `s = scale · sims` `(n,)` of pairs with gold `labels`.
pub(crate) fn cosent(sims: &Tensor, labels: &[f32], scale: f64) -> Result<Tensor> {
    let n = labels.len();
    let s = (sims * scale)?;
    // M_ij = s_i − s_j where label_i < label_j, −∞ (as −1e12) elsewhere.
    let diff = s.unsqueeze(1)?.broadcast_sub(&s.unsqueeze(0)?)?;
    let mut mask = vec![-1e12f32; n * n];
    for i in 0..n {
        for j in 0..n {
            if labels[i] < labels[j] {
                mask[i * n + j] = 0.0;
            }
        }
    }
    let mask = Tensor::from_vec(mask, (n, n), sims.device())?.to_dtype(sims.dtype())?;
    let terms = Tensor::cat(
        &[
            Tensor::zeros(1, sims.dtype(), sims.device())?,
            (diff + mask)?.flatten_all()?,
        ],
        0,
    )?;
    Ok(logsumexp_rows(&terms.unsqueeze(0)?)?.squeeze(0)?)
}

/// `log Σ_j exp(m_ij)` of each row of `m (b, n)`, `(b,)`, stably (the row maximum taken out
/// first, without a gradient through it: the result does not depend on it).
fn logsumexp_rows(m: &Tensor) -> Result<Tensor> {
    let max = m.max_keepdim(D::Minus1)?.detach();
    Ok((m
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        + max)?
        .squeeze(D::Minus1)?)
}

/// sentence-transformers' `pairwise_angle_sim`: `|cos(u, v) + sin(u, v)|` after L2
/// normalization, the sine pairing dimension `i` with `i + ⌈d/2⌉` (an odd width is padded with
/// a zero, as there).
pub(crate) fn pairwise_angle_sim(u: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (nu, nv) = (sbert::normalize(u)?, sbert::normalize(v)?);
    let cos = (&nu * &nv)?.sum(1)?;
    let d = nu.dim(1)?;
    let half = d.div_ceil(2);
    let paired = d - half;
    let first = |t: &Tensor| t.narrow(1, 0, paired);
    let last = |t: &Tensor| t.narrow(1, half, paired);
    let sin = ((last(&nu)? * first(&nv)?)? - (first(&nu)? * last(&nv)?)?)?.sum(1)?;
    Ok((cos + sin)?.abs()?)
}

/// Euclidean triplet loss: `mean(relu(‖a − p + ε‖ − ‖a − n + ε‖ + margin))` with torch's
/// `pairwise_distance` ε = 1e-6.
pub(crate) fn triplet(a: &Tensor, p: &Tensor, n: &Tensor, margin: f64) -> Result<Tensor> {
    let distance = |x: &Tensor, y: &Tensor| -> Result<Tensor> {
        Ok(((x - y)? + 1e-6)?.sqr()?.sum(1)?.sqrt()?)
    };
    let losses = ((distance(a, p)? - distance(a, n)?)? + margin)?.relu()?;
    Ok(losses.mean_all()?)
}

/// Contrastive loss over the cosine distance: `mean(½ (y d² + (1 − y) relu(margin − d)²))`.
pub(crate) fn contrastive(u: &Tensor, v: &Tensor, labels: &Tensor, margin: f64) -> Result<Tensor> {
    let d = sbert::pairwise_cos_sim(u, v)?.affine(-1.0, 1.0)?;
    let near = (labels * d.sqr()?)?;
    let far = (labels.affine(-1.0, 1.0)? * d.affine(-1.0, margin)?.relu()?.sqr()?)?;
    Ok(((near + far)? * 0.5)?.mean_all()?)
}

/// Online contrastive loss: the summed contrastive terms of the hard pairs only (positives
/// farther than the closest negative, negatives closer than the farthest positive; against
/// their own mean when the batch has none of the other kind), as sentence-transformers
/// selects them.
pub(crate) fn online_contrastive(
    u: &Tensor,
    v: &Tensor,
    labels: &[f32],
    margin: f64,
) -> Result<Tensor> {
    let d = sbert::pairwise_cos_sim(u, v)?.affine(-1.0, 1.0)?;
    let values: Vec<f64> = d.to_dtype(DType::F64)?.to_vec1()?;
    let (pos, neg): (Vec<f64>, Vec<f64>) = {
        let pick = |want: f32| -> Vec<f64> {
            values
                .iter()
                .zip(labels)
                .filter(|(_, &l)| l == want)
                .map(|(&x, _)| x)
                .collect()
        };
        (pick(1.0), pick(0.0))
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let max_pos = pos.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min_neg = neg.iter().copied().fold(f64::INFINITY, f64::min);
    let neg_bound = if pos.is_empty() { mean(&neg) } else { max_pos };
    let pos_bound = if neg.is_empty() { mean(&pos) } else { min_neg };
    let (mut hard_pos, mut hard_neg) = (vec![0f32; labels.len()], vec![0f32; labels.len()]);
    for (i, (&x, &l)) in values.iter().zip(labels).enumerate() {
        if l == 1.0 && x > pos_bound {
            hard_pos[i] = 1.0;
        } else if l == 0.0 && x < neg_bound {
            hard_neg[i] = 1.0;
        }
    }
    let mask = |m: Vec<f32>| -> Result<Tensor> {
        Ok(Tensor::from_vec(m, labels.len(), d.device())?.to_dtype(d.dtype())?)
    };
    let positive = (mask(hard_pos)? * d.sqr()?)?.sum_all()?;
    let negative = (mask(hard_neg)? * d.affine(-1.0, margin)?.relu()?.sqr()?)?.sum_all()?;
    Ok((positive + negative)?)
}

/// Symmetric in-batch negatives: `mean_i[ (lse_j s(q_i, d_j) + lse_j s(p_i, q_j)) / 2 −
/// s(q_i, p_i) ]` with `s` the scaled cosine, `docs` the positives then any hard negatives.
pub(crate) fn symmetric_in_batch_negatives(
    queries: &Tensor,
    docs: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    let b = queries.dim(0)?;
    let forward = (sbert::cos_sim(queries, docs)? * scale)?; // (b, n)
    let backward = (sbert::cos_sim(&docs.narrow(0, 0, b)?, queries)? * scale)?; // (b, b)
    let eye = positives(b, forward.dim(1)?, &forward)?;
    let pos = (&eye * &forward)?.sum(1)?;
    let log_z = ((logsumexp_rows(&forward)? + logsumexp_rows(&backward)?)? * 0.5)?;
    Ok((log_z - pos)?.mean_all()?)
}

/// Distillation loss: `mean((student − teacher)²)` over every element.
pub(crate) fn mse(student: &Tensor, teacher: &Tensor) -> Result<Tensor> {
    Ok((student - teacher)?.sqr()?.mean_all()?)
}

#[cfg(test)]
mod tests {
    //! Gradients of every loss, through a tiny BERT in f64, against central finite differences.
    use super::*;
    use candle_core::{Device, Var};
    use candle_nn::{VarBuilder, VarMap};
    use sbert::bert::Mode;
    use sbert::{BertConfig, BertModel, SentenceEmbedder};

    struct Tiny {
        varmap: VarMap,
        encoder: BertModel,
        embedder: SentenceEmbedder,
    }

    fn tiny() -> Tiny {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny");
        let embedder = SentenceEmbedder::from_dir(&dir, &Device::Cpu).expect("tiny");
        let cfg = BertConfig {
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            ..embedder
                .encoder()
                .bert()
                .expect("the tiny model is a BERT")
                .config()
                .clone()
        };
        let mut varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
        let encoder = BertModel::load(vb, &cfg).expect("encoder");
        let weights = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
            .expect("weights");
        for (name, t) in weights {
            varmap
                .set_one(&name, t.to_dtype(DType::F64).expect("f64"))
                .expect("set");
        }
        Tiny {
            varmap,
            encoder,
            embedder,
        }
    }

    impl Tiny {
        /// Mean-pooled, normalized embeddings in training mode, f64.
        fn embed(&self, texts: &[&str]) -> Tensor {
            let tok = self
                .embedder
                .tokenize(texts, sbert::Prompt::Default)
                .expect("tokenize");
            let refs: Vec<&sbert::TokenizedText> = tok.iter().collect();
            let batch = self.embedder.pad(&refs).expect("pad");
            let (ids, mask) = (batch.input_ids, batch.attention_mask);
            let mode = Mode {
                train: true,
                ..Mode::default()
            };
            let h = self
                .encoder
                .forward_with_mode(&ids, None, &mask, mode)
                .expect("fwd")
                .hidden_states;
            let pooled = sbert::Pooling::single(sbert::PoolingMode::Mean)
                .pool(&h, &mask)
                .expect("pool");
            sbert::normalize(&pooled).expect("normalize")
        }

        fn var(&self, name: &str) -> Var {
            self.varmap
                .data()
                .lock()
                .expect("lock")
                .get(name)
                .expect("var")
                .clone()
        }
    }

    const A: [&str; 3] = [
        "the cat sat on the mat",
        "a man is playing guitar",
        "hello world",
    ];
    const B: [&str; 3] = [
        "the cat sits",
        "a woman is reading a book",
        "good night moon",
    ];

    /// Checks d loss / d θ at a few entries of a few tensors against central differences.
    fn check(label: &str, tiny: &Tiny, extra: &[Var], loss: &dyn Fn() -> Tensor) {
        let l = loss();
        let grads = l.backward().expect("backward");
        let mut probes: Vec<(Var, usize)> = [
            "embeddings.word_embeddings.weight",
            "encoder.layer.0.attention.self.query.weight",
            "encoder.layer.1.intermediate.dense.weight",
            "encoder.layer.1.output.LayerNorm.weight",
        ]
        .iter()
        .map(|n| (tiny.var(n), 0))
        .collect();
        probes.extend(extra.iter().map(|v| (v.clone(), 0)));
        for (var, _) in probes {
            let g = grads
                .get(var.as_tensor())
                .expect("gradient")
                .flatten_all()
                .expect("flat");
            let g: Vec<f64> = g.to_vec1().expect("vec");
            // The entry with the largest gradient, and one in the middle.
            let big = (0..g.len())
                .max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))
                .expect("entries");
            for idx in [big, g.len() / 2] {
                let orig: Vec<f64> = var
                    .as_tensor()
                    .flatten_all()
                    .expect("f")
                    .to_vec1()
                    .expect("v");
                let eps = 1e-5;
                let at = |delta: f64| -> f64 {
                    let mut w = orig.clone();
                    w[idx] += delta;
                    let t = Tensor::from_vec(w, var.shape(), &Device::Cpu).expect("t");
                    var.set(&t).expect("set");
                    loss().to_scalar::<f64>().expect("scalar")
                };
                let fd = (at(eps) - at(-eps)) / (2.0 * eps);
                let t = Tensor::from_vec(orig.clone(), var.shape(), &Device::Cpu).expect("t");
                var.set(&t).expect("restore");
                let tol = 1e-6 + 1e-4 * fd.abs().max(g[idx].abs());
                assert!(
                    (fd - g[idx]).abs() <= tol,
                    "{label}: entry {idx}: autograd {} vs finite difference {fd}",
                    g[idx]
                );
            }
        }
    }

    #[test]
    fn cosine_regression_gradient_matches_finite_differences() {
        let t = tiny();
        let labels = Tensor::new(&[0.9f64, 0.1, 0.4], &Device::Cpu).expect("labels");
        check("cosine", &t, &[], &|| {
            let u = t.embed(&A);
            let v = t.embed(&B);
            cosine_mse(&u, &v, &labels).expect("loss")
        });
    }

    #[test]
    fn softmax_classification_gradient_matches_finite_differences() {
        let t = tiny();
        let concat = Concat::default();
        let dim = 32 * concat.0.len();
        let w = Var::from_tensor(&Tensor::randn(0f64, 0.3, (3, dim), &Device::Cpu).expect("w"))
            .expect("var");
        let b = Var::zeros(3, DType::F64, &Device::Cpu).expect("b");
        let labels = Tensor::new(&[0u32, 1, 2], &Device::Cpu).expect("labels");
        check("softmax", &t, std::slice::from_ref(&w), &|| {
            let f = concat
                .features(&t.embed(&A), &t.embed(&B))
                .expect("features");
            let logits = f
                .matmul(&w.as_tensor().t().expect("t"))
                .expect("mm")
                .broadcast_add(b.as_tensor())
                .expect("b");
            cross_entropy(&logits, &labels).expect("loss")
        });
    }

    #[test]
    fn in_batch_negatives_gradients_match_finite_differences() {
        let t = tiny();
        check("mnrl", &t, &[], &|| {
            in_batch_negatives(&t.embed(&A), &t.embed(&B), 20.0, None).expect("loss")
        });
        // Self-adversarial: the weights carry no gradient by design, so the finite differences
        // hold them at their value for the unperturbed model.
        for temperature in [1.0, 0.5] {
            let scores =
                (sbert::cos_sim(&t.embed(&A), &t.embed(&B)).expect("cos") * 20.0).expect("s");
            let log_w = self_adversarial_log_weights(&scores, temperature).expect("w");
            let autograd = in_batch_negatives(&t.embed(&A), &t.embed(&B), 20.0, Some(temperature))
                .expect("loss")
                .to_scalar::<f64>()
                .expect("s");
            let fixed = weighted_in_batch_loss(&scores, &log_w)
                .expect("loss")
                .to_scalar::<f64>()
                .expect("s");
            assert!((autograd - fixed).abs() < 1e-12);
            check(
                &format!("self-adversarial T={temperature}"),
                &t,
                &[],
                &|| {
                    let s = (sbert::cos_sim(&t.embed(&A), &t.embed(&B)).expect("cos") * 20.0)
                        .expect("s");
                    weighted_in_batch_loss(&s, &log_w).expect("loss")
                },
            );
        }
    }

    fn t(rows: &[[f64; 4]; 4]) -> Tensor {
        Tensor::new(rows, &Device::Cpu).expect("tensor")
    }

    fn scalar(x: Result<Tensor>) -> f64 {
        x.expect("loss").to_scalar::<f64>().expect("scalar")
    }

    fn cos(a: &[f64], b: &[f64]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        dot / (norm(a) * norm(b))
    }

    const U: [[f64; 4]; 4] = [
        [0.9, 0.1, -0.3, 0.4],
        [0.2, 0.8, 0.5, -0.1],
        [-0.5, 0.4, 0.3, 0.9],
        [0.3, -0.7, 0.2, 0.1],
    ];
    const V: [[f64; 4]; 4] = [
        [0.8, 0.2, -0.1, 0.5],
        [0.1, -0.6, 0.4, 0.2],
        [0.4, 0.3, -0.8, 0.1],
        [0.2, -0.5, 0.3, 0.3],
    ];
    const W: [[f64; 4]; 4] = [
        [-0.2, 0.9, 0.1, 0.3],
        [0.5, 0.5, -0.5, 0.5],
        [0.1, 0.1, 0.9, -0.4],
        [0.7, 0.2, 0.2, -0.6],
    ];

    /// Every loss against its formula written out element by element (sentence-transformers'
    /// definitions), on small tensors in f64.
    #[test]
    fn losses_equal_their_formulas() {
        let (u, v, w) = (t(&U), t(&V), t(&W));
        let n = U.len();
        let cosines: Vec<f64> = (0..n).map(|i| cos(&U[i], &V[i])).collect();

        // CoSENT: log(1 + Σ_{l_i < l_j} exp(20 (c_i − c_j))), ties excluded.
        let labels = [0.9f32, 0.1, 0.4, 0.4];
        let mut sum = 1.0;
        for i in 0..n {
            for j in 0..n {
                if labels[i] < labels[j] {
                    sum += (20.0 * (cosines[i] - cosines[j])).exp();
                }
            }
        }
        let sims = sbert::pairwise_cos_sim(&u, &v).expect("cos");
        let got = scalar(cosent(&sims, &labels, 20.0));
        assert!(
            (got - sum.ln()).abs() < 1e-9,
            "cosent {got} vs {}",
            sum.ln()
        );

        // AnglE's similarity: |cos + Σ_k (x̂_{k+2} ŷ_k − x̂_k ŷ_{k+2})| of the normalized rows.
        let angle: Vec<f64> = pairwise_angle_sim(&u, &v)
            .expect("angle")
            .to_vec1()
            .expect("vec");
        for i in 0..n {
            let norm = |r: &[f64; 4]| r.map(|x| x / r.iter().map(|y| y * y).sum::<f64>().sqrt());
            let (x, y) = (norm(&U[i]), norm(&V[i]));
            let sin: f64 = (0..2).map(|k| x[k + 2] * y[k] - x[k] * y[k + 2]).sum();
            let want = (cosines[i] + sin).abs();
            assert!((angle[i] - want).abs() < 1e-12, "angle {i}");
        }
        // An odd width pairs the middle value with a padded zero.
        let odd = pairwise_angle_sim(
            &u.narrow(1, 0, 3).expect("n"),
            &v.narrow(1, 0, 3).expect("n"),
        )
        .expect("odd")
        .to_vec1::<f64>()
        .expect("vec");
        let norm3 = |r: &[f64; 4]| {
            let l = r[..3].iter().map(|y| y * y).sum::<f64>().sqrt();
            [r[0] / l, r[1] / l, r[2] / l]
        };
        let (x, y) = (norm3(&U[0]), norm3(&V[0]));
        let want = (x[0] * y[0] + x[1] * y[1] + x[2] * y[2] + x[2] * y[0] - x[0] * y[2]).abs();
        assert!(
            (odd[0] - want).abs() < 1e-12,
            "odd angle {} vs {want}",
            odd[0]
        );

        // Triplet: mean(relu(‖a − p + ε‖ − ‖a − n + ε‖ + 5)), and with a margin of 0.1 some
        // triplets are inactive.
        for margin in [5.0, 0.1] {
            let want: f64 = (0..n)
                .map(|i| {
                    let d = |b: &[f64; 4]| {
                        (0..4)
                            .map(|k| (U[i][k] - b[k] + 1e-6).powi(2))
                            .sum::<f64>()
                            .sqrt()
                    };
                    (d(&V[i]) - d(&W[i]) + margin).max(0.0)
                })
                .sum::<f64>()
                / n as f64;
            let got = scalar(triplet(&u, &v, &w, margin));
            assert!((got - want).abs() < 1e-12, "triplet {got} vs {want}");
        }

        // Contrastive: mean(½ (y d² + (1 − y) relu(0.5 − d)²)), d = 1 − cos.
        let y = [1f32, 0.0, 0.0, 1.0];
        let want: f64 = (0..n)
            .map(|i| {
                let d = 1.0 - cosines[i];
                let l = f64::from(y[i]);
                0.5 * (l * d * d + (1.0 - l) * (0.5 - d).max(0.0).powi(2))
            })
            .sum::<f64>()
            / n as f64;
        let labels_t = Tensor::new(&y.map(f64::from), &Device::Cpu).expect("labels");
        let got = scalar(contrastive(&u, &v, &labels_t, 0.5));
        assert!((got - want).abs() < 1e-12, "contrastive {got} vs {want}");

        // Online contrastive: only positives farther than the closest negative and negatives
        // closer than the farthest positive count, summed.
        let d: Vec<f64> = cosines.iter().map(|c| 1.0 - c).collect();
        let max_pos = (0..n)
            .filter(|&i| y[i] == 1.0)
            .map(|i| d[i])
            .fold(f64::MIN, f64::max);
        let min_neg = (0..n)
            .filter(|&i| y[i] == 0.0)
            .map(|i| d[i])
            .fold(f64::MAX, f64::min);
        let mut want = 0.0;
        for i in 0..n {
            if y[i] == 1.0 && d[i] > min_neg {
                want += d[i] * d[i];
            }
            if y[i] == 0.0 && d[i] < max_pos {
                want += (0.5 - d[i]).max(0.0).powi(2);
            }
        }
        let got = scalar(online_contrastive(&u, &v, &y, 0.5));
        assert!(
            (got - want).abs() < 1e-12,
            "online contrastive {got} vs {want}"
        );

        // Symmetric in-batch negatives, with the rows of w as hard negatives: the mean of the
        // two directions' log-partitions, less the positive.
        let docs = Tensor::cat(&[&v, &w], 0).expect("docs");
        let all_docs: Vec<[f64; 4]> = V.iter().chain(W.iter()).copied().collect();
        let lse = |xs: &[f64]| {
            let m = xs.iter().copied().fold(f64::MIN, f64::max);
            m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
        };
        let want: f64 = (0..n)
            .map(|i| {
                let forward: Vec<f64> = all_docs.iter().map(|d| 20.0 * cos(&U[i], d)).collect();
                let backward: Vec<f64> = U.iter().map(|q| 20.0 * cos(&V[i], q)).collect();
                (lse(&forward) + lse(&backward)) / 2.0 - 20.0 * cosines[i]
            })
            .sum::<f64>()
            / n as f64;
        let got = scalar(symmetric_in_batch_negatives(&u, &docs, 20.0));
        assert!((got - want).abs() < 1e-9, "symmetric mnrl {got} vs {want}");

        // MSE over every element.
        let want: f64 = (0..n)
            .flat_map(|i| (0..4).map(move |k| (U[i][k] - V[i][k]).powi(2)))
            .sum::<f64>()
            / (4 * n) as f64;
        let got = scalar(mse(&u, &v));
        assert!((got - want).abs() < 1e-12, "mse {got} vs {want}");
    }

    #[test]
    fn new_losses_gradients_match_finite_differences() {
        let t = tiny();
        let labels = [0.9f32, 0.1, 0.4];
        check("cosent", &t, &[], &|| {
            let sims = sbert::pairwise_cos_sim(&t.embed(&A), &t.embed(&B)).expect("cos");
            cosent(&sims, &labels, 20.0).expect("loss")
        });
        check("angle", &t, &[], &|| {
            let sims = pairwise_angle_sim(&t.embed(&A), &t.embed(&B)).expect("angle");
            cosent(&sims, &labels, 20.0).expect("loss")
        });
        let negatives = ["a dog runs", "the guitar is loud", "hello there"];
        check("triplet", &t, &[], &|| {
            triplet(&t.embed(&A), &t.embed(&B), &t.embed(&negatives), 5.0).expect("loss")
        });
        check("symmetric mnrl", &t, &[], &|| {
            let docs = Tensor::cat(&[t.embed(&B), t.embed(&negatives)], 0).expect("cat");
            symmetric_in_batch_negatives(&t.embed(&A), &docs, 20.0).expect("loss")
        });
        let y = Tensor::new(&[1f64, 0.0, 1.0], &Device::Cpu).expect("labels");
        check("contrastive", &t, &[], &|| {
            contrastive(&t.embed(&A), &t.embed(&B), &y, 0.5).expect("loss")
        });
    }

    #[test]
    fn self_adversarial_with_uniform_weights_is_the_plain_loss() {
        // A huge temperature makes the weights uniform: the loss equals the plain one.
        let q = Tensor::new(&[[1f64, 0.2], [0.3, 1.0], [-0.5, 0.4]], &Device::Cpu).expect("q");
        let d = Tensor::new(&[[0.9f64, 0.1], [0.2, 0.8], [0.1, -0.7]], &Device::Cpu).expect("d");
        let plain = in_batch_negatives(&q, &d, 20.0, None)
            .expect("plain")
            .to_scalar::<f64>()
            .expect("s");
        let uniform = in_batch_negatives(&q, &d, 20.0, Some(1e9))
            .expect("sa")
            .to_scalar::<f64>()
            .expect("s");
        assert!((plain - uniform).abs() < 1e-6, "{plain} vs {uniform}");
        let sharp = in_batch_negatives(&q, &d, 20.0, Some(0.1))
            .expect("sa")
            .to_scalar::<f64>()
            .expect("s");
        assert!(
            sharp > plain,
            "harder negatives weigh more: {sharp} vs {plain}"
        );
    }
}
