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

/// A training objective.
#[derive(Debug, Clone, PartialEq)]
pub enum Objective {
    /// Regression: `mean((cos(u, v) − score / max_score)²)`.
    Cosine {
        /// The gold scale's maximum (5 for STS): labels are `score / max_score`.
        max_score: f32,
    },
    /// Classification: cross-entropy of `softmax(W · concat)` over the NLI labels.
    Softmax {
        /// The features.
        concat: Concat,
    },
    /// In-batch negatives over scaled cosine, with optional self-adversarial re-weighting.
    InBatchNegatives {
        /// Multiplier of the cosine (20 in sentence-transformers).
        scale: f64,
        /// Temperature of the self-adversarial weights; `None` (or 0) is the plain loss.
        temperature: Option<f64>,
    },
}

impl Objective {
    /// Checks the objective's parameters.
    ///
    /// # Errors
    /// [`TrainError::Invalid`] for a maximum score, scale or temperature that is not a positive
    /// number (a temperature of 0 means the plain loss).
    pub fn validate(&self) -> Result<()> {
        let ok = match self {
            Objective::Cosine { max_score } => max_score.is_finite() && *max_score > 0.0,
            Objective::Softmax { concat } => !concat.0.is_empty(),
            Objective::InBatchNegatives { scale, temperature } => {
                scale.is_finite()
                    && *scale > 0.0
                    && temperature.is_none_or(|t| t.is_finite() && t >= 0.0)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(TrainError::Invalid(format!(
                "{self:?}: scores' maximum, scale and temperature must be positive numbers"
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
    let max = adj.max_keepdim(D::Minus1)?.detach();
    let lse = (adj
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        + &max)?
        .squeeze(1)?;
    let pos = (&eye * scores)?.sum(D::Minus1)?;
    Ok((lse - pos)?.mean_all()?)
}

/// Cosine labels from gold scores.
pub(crate) fn scaled_labels(
    scores: &[f32],
    max_score: f32,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let labels: Vec<f32> = scores.iter().map(|s| s / max_score).collect();
    Ok(Tensor::from_vec(labels, scores.len(), device)?.to_dtype(DType::F32)?)
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
