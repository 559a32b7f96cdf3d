//! Scoring a model on STS datasets: each distinct sentence is encoded once and pooled every way.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sbert::{DType, Device, Pooling, Similarity, Tensor, TextEmbedder};
use serde::Serialize;

use crate::data::StsDataset;
use crate::stats::{pearson, spearman};
use crate::EvalError;

/// Correlations of one similarity function with the gold scores, ×100.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Correlations {
    /// The similarity function.
    #[serde(serialize_with = "serialize_similarity")]
    pub similarity: Similarity,
    /// Spearman's ρ × 100.
    pub spearman: f64,
    /// Pearson's r × 100.
    pub pearson: f64,
}

fn serialize_similarity<S: serde::Serializer>(s: &Similarity, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.name())
}

/// The scores of one (dataset, pooling).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StsScores {
    /// Dataset name.
    pub dataset: String,
    /// Pooling, as `mean`, `max`, `cls,mean`, ….
    pub pooling: String,
    /// Number of pairs.
    pub pairs: usize,
    /// Spearman's ρ × 100 of cosine similarity vs gold (the SBERT paper's number).
    pub spearman: f64,
    /// Pearson's r × 100 of cosine similarity vs gold.
    pub pearson: f64,
    /// Cosine, dot, Euclidean and Manhattan, as sentence-transformers'
    /// `EmbeddingSimilarityEvaluator` reports them.
    pub similarities: Vec<Correlations>,
}

/// Everything one evaluation run produced.
#[derive(Debug, Clone)]
pub struct StsReport {
    /// One entry per dataset × pooling, datasets outermost, in the order given.
    pub scores: Vec<StsScores>,
    /// Distinct sentences encoded.
    pub sentences: usize,
    /// Time spent encoding.
    pub encode_time: Duration,
    /// Wall time of the whole run.
    pub total_time: Duration,
}

impl StsReport {
    /// Sentences encoded per second of encoding time.
    pub fn sentences_per_second(&self) -> f64 {
        self.sentences as f64 / self.encode_time.as_secs_f64().max(1e-9)
    }
}

/// Sentences per call into the model: the progress granularity.
const CHUNK: usize = 256;

/// Evaluates `model` on `datasets` under every pooling in `poolings` (the model's own pooling if
/// empty). `progress(done, total)` is called after each chunk of sentences is encoded.
///
/// # Errors
/// When encoding fails, or a dataset's gold scores (or a similarity) are constant, which leaves
/// the correlation undefined.
pub fn evaluate(
    model: &(impl TextEmbedder + ?Sized),
    datasets: &[StsDataset],
    poolings: &[Pooling],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<StsReport, EvalError> {
    let start = Instant::now();
    let poolings: Vec<Pooling> = if poolings.is_empty() {
        vec![model.pooling().clone()]
    } else {
        poolings.to_vec()
    };

    // Each distinct sentence once, longest first so chunks pad little.
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut unique: Vec<&str> = Vec::new();
    for ds in datasets {
        for p in &ds.pairs {
            for s in [p.sentence1.as_str(), p.sentence2.as_str()] {
                index.entry(s).or_insert_with(|| {
                    unique.push(s);
                    unique.len() - 1
                });
            }
        }
    }
    let mut order: Vec<usize> = (0..unique.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(unique[i].len()));
    let mut position = vec![0u32; unique.len()];
    for (pos, &i) in order.iter().enumerate() {
        position[i] = pos as u32;
    }

    let encode_start = Instant::now();
    let mut parts: Vec<Vec<Tensor>> = vec![Vec::new(); poolings.len()];
    let total = order.len();
    progress(0, total);
    for (c, chunk) in order.chunks(CHUNK).enumerate() {
        let texts: Vec<&str> = chunk.iter().map(|&i| unique[i]).collect();
        for (k, t) in model
            .embed_texts_pooled(&texts, &poolings)?
            .into_iter()
            .enumerate()
        {
            parts[k].push(t.to_dtype(DType::F32)?);
        }
        progress((c * CHUNK + chunk.len()).min(total), total);
    }
    let embeddings: Vec<Tensor> = parts
        .iter()
        .map(|p| Tensor::cat(p, 0))
        .collect::<Result<_, _>>()?;
    let encode_time = encode_start.elapsed();
    let device = embeddings
        .first()
        .map_or(Device::Cpu, |e| e.device().clone());

    let mut scores = Vec::new();
    for ds in datasets {
        let rows = |pick: fn(&crate::data::StsPair) -> &str| -> Result<Tensor, EvalError> {
            let idx: Vec<u32> = ds.pairs.iter().map(|p| position[index[pick(p)]]).collect();
            let n = idx.len();
            Ok(Tensor::from_vec(idx, n, &device)?)
        };
        let (i1, i2) = (rows(|p| &p.sentence1)?, rows(|p| &p.sentence2)?);
        let gold = ds.scores();
        for (pooling, emb) in poolings.iter().zip(&embeddings) {
            let (a, b) = (emb.index_select(&i1, 0)?, emb.index_select(&i2, 0)?);
            let mut similarities = Vec::with_capacity(Similarity::ALL.len());
            for sim in Similarity::ALL {
                let s: Vec<f64> = sim
                    .pairwise(&a, &b)?
                    .to_vec1::<f32>()?
                    .into_iter()
                    .map(f64::from)
                    .collect();
                if let Some(index) = s.iter().position(|v| !v.is_finite()) {
                    return Err(EvalError::NonFinite {
                        dataset: ds.name.clone(),
                        what: format!("{sim} similarity under pooling {pooling}"),
                        index,
                    });
                }
                let undefined = || EvalError::Undefined {
                    dataset: ds.name.clone(),
                    what: format!("{sim} similarity under pooling {pooling}"),
                };
                similarities.push(Correlations {
                    similarity: sim,
                    spearman: 100.0 * spearman(&s, &gold).ok_or_else(undefined)?,
                    pearson: 100.0 * pearson(&s, &gold).ok_or_else(undefined)?,
                });
            }
            scores.push(StsScores {
                dataset: ds.name.clone(),
                pooling: pooling.to_string(),
                pairs: ds.pairs.len(),
                spearman: similarities[0].spearman,
                pearson: similarities[0].pearson,
                similarities,
            });
        }
    }
    Ok(StsReport {
        scores,
        sentences: total,
        encode_time,
        total_time: start.elapsed(),
    })
}

/// A model whose embeddings are cut to their first `dim` values (sentence-transformers'
/// `truncate_dim`): how a Matryoshka-trained model is evaluated at a smaller width. Cosine
/// scores need no renormalization; the other similarities see the truncated vectors as they
/// are.
#[derive(Debug)]
pub struct Truncated<'m, M: ?Sized> {
    model: &'m M,
    dim: usize,
}

impl<'m, M: TextEmbedder + ?Sized> Truncated<'m, M> {
    /// `model`'s embeddings cut to `dim` values.
    ///
    /// # Errors
    /// [`EvalError::Model`] when `dim` is 0 or above the width of `model`'s embeddings (`full`).
    pub fn new(model: &'m M, dim: usize, full: usize) -> Result<Self, EvalError> {
        if dim == 0 || dim > full {
            return Err(EvalError::Model(sbert::Error::InvalidArgument(format!(
                "truncate_dim must be between 1 and the model's dimension {full}, not {dim}"
            ))));
        }
        Ok(Self { model, dim })
    }
}

impl<M: TextEmbedder + ?Sized> TextEmbedder for Truncated<'_, M> {
    fn embed_texts(&self, texts: &[&str]) -> sbert::Result<Tensor> {
        Ok(self.model.embed_texts(texts)?.narrow(1, 0, self.dim)?)
    }

    fn pooling(&self) -> &sbert::Pooling {
        self.model.pooling()
    }

    fn embed_texts_pooled(
        &self,
        texts: &[&str],
        poolings: &[sbert::Pooling],
    ) -> sbert::Result<Vec<Tensor>> {
        self.model
            .embed_texts_pooled(texts, poolings)?
            .into_iter()
            .map(|t| Ok(t.narrow(1, 0, self.dim)?))
            .collect()
    }
}
