//! The training loop: batches, AdamW, warm-up, clipping, evaluation, checkpoints.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::checkpoint::OutputDir;
use crate::data::{NliExample, PairExample, StsPair};
use crate::model::TrainableModel;
use crate::objective::{self, Layout, Objective};
use crate::optim::{AdamW, AdamWParams};
use crate::state::TrainingState;
use crate::{Result, TrainError};

/// Training settings; defaults are sentence-transformers' (`fit` with its defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Passes over the data. Default 1.
    pub epochs: usize,
    /// Pairs per step. Default 16.
    pub batch_size: usize,
    /// Peak learning rate. Default 2e-5.
    pub lr: f64,
    /// Share of the steps spent warming up linearly from 0. Default 0.1.
    pub warmup_ratio: f64,
    /// AdamW weight decay, not applied to biases and LayerNorm. Default 0.01.
    pub weight_decay: f64,
    /// Gradient-norm clipping threshold. Default 1.0.
    pub max_grad_norm: f64,
    /// Seed of the batch shuffle (epoch e uses seed + e). Default 42.
    pub seed: u64,
    /// A fixed example order to replay instead of shuffling (every epoch).
    pub order: Option<Vec<usize>>,
    /// Evaluate on the dev set every this many steps (and at the end). Default: end only.
    pub eval_every: Option<usize>,
    /// Where the (best) checkpoint goes, checked by [`OutputDir::new`] before training.
    pub output: Option<OutputDir>,
    /// Matryoshka: the loss is the sum, with equal weights, of the objective's loss over the
    /// embeddings truncated to each of these widths (sentence-transformers' `MatryoshkaLoss`),
    /// so that a prefix of the embedding works on its own. Default: none.
    pub matryoshka_dims: Option<Vec<usize>>,
    /// Without a dev set: also save a checkpoint every this many steps (a run that stops can
    /// then be resumed from the last one). Default: only at the end.
    pub save_every: Option<usize>,
    /// Continue the run whose checkpoint is this folder: its optimizer state, schedule
    /// position, dropout stream and best dev score (the model must be loaded from the same
    /// folder, and the data and settings must be the run's). Default: a new run.
    pub resume: Option<PathBuf>,
    /// Save the training state (AdamW's moments, about twice the weights' size) with each
    /// checkpoint, so that `resume` can continue from it. Default: true.
    pub save_training_state: bool,
}

impl TrainConfig {
    /// Checks every setting's range.
    ///
    /// # Errors
    /// [`TrainError::Invalid`] naming the setting and its range.
    pub fn validate(&self) -> Result<()> {
        let invalid = |what: &str| Err(TrainError::Invalid(what.to_string()));
        if self.batch_size == 0 {
            return invalid("batch size must be at least 1");
        }
        if self.epochs == 0 {
            return invalid("epochs must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return invalid("learning rate must be a positive number");
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return invalid("warm-up ratio must lie in [0, 1] (a share of the steps)");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return invalid("weight decay must be a number ≥ 0");
        }
        if self.max_grad_norm.is_nan() || self.max_grad_norm <= 0.0 {
            return invalid("max gradient norm must be > 0 (infinity turns clipping off)");
        }
        if self.eval_every == Some(0) {
            return invalid("evaluation interval must be at least 1 step");
        }
        if self.save_every == Some(0) {
            return invalid("checkpoint interval must be at least 1 step");
        }
        Ok(())
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 16,
            lr: 2e-5,
            warmup_ratio: 0.1,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            seed: 42,
            order: None,
            eval_every: None,
            output: None,
            matryoshka_dims: None,
            save_every: None,
            resume: None,
            save_training_state: true,
        }
    }
}

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLog {
    /// 1-based step.
    pub step: usize,
    /// Total steps of the run.
    pub total: usize,
    /// The batch loss.
    pub loss: f32,
    /// The learning rate used.
    pub lr: f64,
    /// Dev score after this step, when evaluated.
    pub dev: Option<f64>,
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct TrainingReport {
    /// Every step.
    pub steps: Vec<StepLog>,
    /// Training pairs per second (pairs × epochs / training time).
    pub pairs_per_second: f64,
    /// Seconds spent in training steps.
    pub train_seconds: f64,
    /// Best dev score (Spearman × 100 for STS, accuracy × 100 for NLI), if there was a dev set.
    pub best_dev: Option<f64>,
}

/// Training examples of one of the supported layouts.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TrainData {
    /// Scored pairs (regression, CoSENT, AnglE) or, with scores 0 and 1, labelled pairs
    /// (contrastive losses).
    Scored(Vec<StsPair>),
    /// NLI triples (classification).
    Nli(Vec<NliExample>),
    /// (query, positive[, negative]) pairs (in-batch negatives), or (anchor, positive,
    /// negative) triplets.
    Pairs(Vec<PairExample>),
    /// Sentences and a teacher's embeddings of them, `(n, dim)` (distillation).
    Distill {
        /// The sentences.
        sentences: Vec<String>,
        /// The teacher's embeddings, row `i` for sentence `i`.
        teacher: Tensor,
    },
}

impl TrainData {
    /// Examples in the data.
    pub fn len(&self) -> usize {
        match self {
            TrainData::Scored(v) => v.len(),
            TrainData::Nli(v) => v.len(),
            TrainData::Pairs(v) => v.len(),
            TrainData::Distill { sentences, .. } => sentences.len(),
        }
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The texts of one batch, embedded in one pass, and what the loss needs besides their
/// embeddings.
struct Batch<'a> {
    texts: Vec<&'a str>,
    /// Examples in the batch (rows of the first column).
    n: usize,
    /// Gold scores or labels, one per example.
    labels: Vec<f32>,
    /// The teacher's embeddings of the texts (distillation).
    teacher: Option<Tensor>,
}

/// Dev evaluation during training; each kind has one main score (×100), by which the best
/// checkpoint is chosen: sentence-transformers' evaluators' primary metrics.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DevSet {
    /// STS pairs: Spearman of cosine vs gold (`EmbeddingSimilarityEvaluator`).
    Sts(Vec<StsPair>),
    /// NLI triples: accuracy of the softmax objective's classifier.
    Nli(Vec<NliExample>),
    /// Queries, a corpus and relevance judgements: nDCG@10 by cosine
    /// (`InformationRetrievalEvaluator`; MRR@10 and recall are computed alongside).
    Retrieval(sbert_eval::RetrievalTask),
    /// (anchor, positive, negative) triplets: the share whose anchor is closer to the positive
    /// (`TripletEvaluator`).
    Triplets(Vec<PairExample>),
    /// Pairs labelled 1 (similar) or 0: average precision of the ranking by cosine
    /// (`BinaryClassificationEvaluator`; best-threshold accuracy and F1 alongside).
    Binary(Vec<StsPair>),
}

/// Runs training.
pub struct Trainer {
    config: TrainConfig,
    objective: Objective,
    /// Classifier weights of the softmax objective (not part of the saved model, as in
    /// sentence-transformers).
    head: Option<(VarMap, candle_nn::Linear)>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("config", &self.config)
            .field("objective", &self.objective)
            .finish()
    }
}

/// `true` for tensors that sentence-transformers exempts from weight decay.
fn no_decay(name: &str) -> bool {
    name.ends_with(".bias") || name.contains("LayerNorm")
}

/// `transformers.get_linear_schedule_with_warmup`: the factor of optimizer step `k` (0-based).
fn lr_factor(k: usize, warmup: usize, total: usize) -> f64 {
    if k < warmup {
        k as f64 / warmup.max(1) as f64
    } else {
        ((total - k) as f64 / (total - warmup).max(1) as f64).max(0.0)
    }
}

impl Trainer {
    /// A trainer for `objective` on a model whose embeddings are `dim` wide.
    ///
    /// # Errors
    /// On a setting out of range.
    pub fn new(config: TrainConfig, objective: Objective, dim: usize) -> Result<Self> {
        config.validate()?;
        objective.validate()?;
        if let Some(dims) = &config.matryoshka_dims {
            if matches!(objective, Objective::Softmax { .. }) {
                return Err(TrainError::Invalid(
                    "Matryoshka dimensions wrap an embedding loss, not the softmax classifier \
                     (its head reads the full width)"
                        .into(),
                ));
            }
            if dims.is_empty() {
                return Err(TrainError::Invalid("no Matryoshka dimension given".into()));
            }
            if let Some(&d) = dims.iter().find(|&&d| d == 0 || d > dim) {
                return Err(TrainError::Invalid(format!(
                    "Matryoshka dimension {d} is outside 1..={dim}, the model's embedding width"
                )));
            }
        }
        let head = match &objective {
            Objective::Softmax { concat } => {
                let varmap = VarMap::new();
                let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
                let linear = candle_nn::linear(dim * concat.0.len(), 3, vb.pp("classifier"))?;
                Some((varmap, linear))
            }
            _ => None,
        };
        Ok(Self {
            config,
            objective,
            head,
        })
    }

    /// The settings that fix a run's schedule and batch order, for `n` examples: a resumed
    /// run must have the same.
    fn schedule(&self, n: usize) -> serde_json::Value {
        let c = &self.config;
        serde_json::json!({
            "examples": n,
            "batch_size": c.batch_size,
            "epochs": c.epochs,
            "seed": c.seed,
            "lr": c.lr,
            "warmup_ratio": c.warmup_ratio,
            "weight_decay": c.weight_decay,
            "max_grad_norm": c.max_grad_norm,
            "replayed_order": c.order.is_some(),
            "matryoshka_dims": c.matryoshka_dims,
            "objective": format!("{:?}", self.objective),
        })
    }

    /// Restores the state saved with the checkpoint `dir` into `optimizer` and `model`.
    fn resumed(
        &self,
        model: &TrainableModel,
        dir: &std::path::Path,
        schedule: &serde_json::Value,
        names: &[String],
        optimizer: &mut AdamW,
    ) -> Result<TrainingState> {
        if matches!(self.objective, Objective::Softmax { .. }) {
            return Err(TrainError::Invalid(
                "--resume: the softmax objective's classifier is not saved with the model (as \
                 in sentence-transformers), so its run cannot be continued"
                    .into(),
            ));
        }
        let same_folder = |a: &std::path::Path, b: &std::path::Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b);
        if !same_folder(model.dir(), dir) {
            return Err(TrainError::Invalid(format!(
                "--resume {}: load the model from that checkpoint (it was loaded from {})",
                dir.display(),
                model.dir().display()
            )));
        }
        let mut state = TrainingState::read(dir)?;
        if let (Some(saved), Some(now)) = (state.schedule.as_object(), schedule.as_object()) {
            let differ: Vec<String> = now
                .iter()
                .filter(|(k, v)| saved.get(*k) != Some(v))
                .map(|(k, v)| {
                    let was = saved.get(k).map_or("nothing".into(), ToString::to_string);
                    format!("{k} is {v}, the run's was {was}")
                })
                .collect();
            if !differ.is_empty() {
                return Err(TrainError::Invalid(format!(
                    "--resume {}: the settings differ from the run's: {}",
                    dir.display(),
                    differ.join("; ")
                )));
            }
        }
        let moments = names
            .iter()
            .map(|name| {
                state.moments.remove(name).ok_or_else(|| {
                    TrainError::Invalid(format!(
                        "--resume {}: the optimizer state has no moments for {name}",
                        dir.display()
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        optimizer.restore(state.optimizer_step, moments)?;
        model.set_next_seed(state.dropout_seed);
        Ok(state)
    }

    /// Checks that `data` has the layout the objective trains on, every row of it, before any
    /// step.
    ///
    /// # Errors
    /// [`TrainError::Invalid`] naming the first row that does not fit.
    fn check_data(&self, data: &TrainData, dim: Option<usize>) -> Result<()> {
        let invalid = |m: String| Err(TrainError::Invalid(m));
        match (self.objective.layout(), data) {
            (Layout::Scored, TrainData::Scored(rows)) => {
                if let Objective::Cosine { max_score } = &self.objective {
                    if let Some((i, p)) = rows
                        .iter()
                        .enumerate()
                        .find(|(_, p)| !(0.0..=f64::from(*max_score)).contains(&p.score))
                    {
                        return invalid(format!(
                            "training example {i} (0-based) has score {} outside [0, {max_score}]",
                            p.score
                        ));
                    }
                }
                if let Some((i, p)) = rows.iter().enumerate().find(|(_, p)| !p.score.is_finite()) {
                    return invalid(format!("training example {i} has score {}", p.score));
                }
                Ok(())
            }
            (Layout::Labelled, TrainData::Scored(rows)) => {
                match rows
                    .iter()
                    .enumerate()
                    .find(|(_, p)| p.score != 0.0 && p.score != 1.0)
                {
                    Some((i, p)) => invalid(format!(
                        "training example {i} (0-based) has label {}; contrastive losses take \
                         labels 0 (dissimilar) and 1 (similar)",
                        p.score
                    )),
                    None => Ok(()),
                }
            }
            (Layout::Nli, TrainData::Nli(_)) | (Layout::Pairs, TrainData::Pairs(_)) => Ok(()),
            (Layout::Triplets, TrainData::Pairs(rows)) => {
                match rows.iter().position(|r| r.negative.is_none()) {
                    Some(i) => invalid(format!(
                        "training example {i} (0-based) has no negative: the triplet loss \
                         takes (anchor, positive, negative) rows, three columns"
                    )),
                    None => Ok(()),
                }
            }
            (Layout::Sentences, TrainData::Distill { sentences, teacher }) => {
                let (rows, width) = teacher.dims2()?;
                if rows != sentences.len() {
                    return invalid(format!(
                        "{rows} teacher embeddings for {} sentences",
                        sentences.len()
                    ));
                }
                match dim {
                    Some(d) if d != width => invalid(format!(
                        "the teacher's embeddings have {width} dimensions and the student's \
                         {d}: distillation needs the same width (add a Dense module to the \
                         student, or pick a teacher of its width)"
                    )),
                    _ => Ok(()),
                }
            }
            (layout, _) => invalid(format!(
                "the training data does not fit the objective, which trains on {layout:?} rows"
            )),
        }
    }

    /// The texts of the examples `idx` of `data` and what the loss needs besides them.
    fn batch<'d>(&self, data: &'d TrainData, idx: &[usize]) -> Result<Batch<'d>> {
        let n = idx.len();
        let batch = match data {
            TrainData::Scored(rows) => {
                let scale = match &self.objective {
                    Objective::Cosine { max_score } => *max_score,
                    _ => 1.0,
                };
                Batch {
                    texts: idx
                        .iter()
                        .map(|&i| rows[i].sentence1.as_str())
                        .chain(idx.iter().map(|&i| rows[i].sentence2.as_str()))
                        .collect(),
                    n,
                    labels: idx.iter().map(|&i| rows[i].score as f32 / scale).collect(),
                    teacher: None,
                }
            }
            TrainData::Pairs(rows) => {
                let mut texts: Vec<&str> = idx.iter().map(|&i| rows[i].query.as_str()).collect();
                texts.extend(idx.iter().map(|&i| rows[i].positive.as_str()));
                texts.extend(idx.iter().filter_map(|&i| rows[i].negative.as_deref()));
                Batch {
                    texts,
                    n,
                    labels: Vec::new(),
                    teacher: None,
                }
            }
            TrainData::Distill { sentences, teacher } => {
                let rows = Tensor::from_vec(
                    idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                    n,
                    &Device::Cpu,
                )?;
                Batch {
                    texts: idx.iter().map(|&i| sentences[i].as_str()).collect(),
                    n,
                    labels: Vec::new(),
                    teacher: Some(teacher.index_select(&rows, 0)?),
                }
            }
            TrainData::Nli(_) => {
                return Err(TrainError::Invalid(
                    "NLI rows train the softmax objective".into(),
                ))
            }
        };
        Ok(batch)
    }

    /// The objective's loss over the embeddings `e` of a batch's texts, summed over the
    /// Matryoshka widths when there are some.
    fn embedding_loss(&self, e: &Tensor, batch: &Batch<'_>) -> Result<Tensor> {
        let Some(dims) = &self.config.matryoshka_dims else {
            return self.loss_at_width(e, batch.teacher.as_ref(), batch);
        };
        let mut total: Option<Tensor> = None;
        for &d in dims {
            let teacher = batch
                .teacher
                .as_ref()
                .map(|t| t.narrow(1, 0, d))
                .transpose()?;
            let loss = self.loss_at_width(&e.narrow(1, 0, d)?, teacher.as_ref(), batch)?;
            total = Some(match total {
                Some(t) => (t + loss)?,
                None => loss,
            });
        }
        total.ok_or_else(|| TrainError::Invalid("no Matryoshka dimension".into()))
    }

    fn loss_at_width(
        &self,
        e: &Tensor,
        teacher: Option<&Tensor>,
        batch: &Batch<'_>,
    ) -> Result<Tensor> {
        let n = batch.n;
        let dev = e.device();
        let labels = || -> Result<Tensor> {
            Ok(Tensor::from_vec(batch.labels.clone(), n, dev)?.to_dtype(e.dtype())?)
        };
        let first = || e.narrow(0, 0, n);
        let second = || e.narrow(0, n, n);
        let rest = || e.narrow(0, n, e.dim(0)? - n);
        match &self.objective {
            Objective::Cosine { .. } => objective::cosine_mse(&first()?, &second()?, &labels()?),
            Objective::CoSent { scale } => objective::cosent(
                &sbert::pairwise_cos_sim(&first()?, &second()?)?,
                &batch.labels,
                *scale,
            ),
            Objective::Angle { scale } => objective::cosent(
                &objective::pairwise_angle_sim(&first()?, &second()?)?,
                &batch.labels,
                *scale,
            ),
            Objective::InBatchNegatives { scale, temperature } => {
                objective::in_batch_negatives(&first()?, &rest()?, *scale, *temperature)
            }
            Objective::CachedInBatchNegatives { scale, .. } => {
                objective::in_batch_negatives(&first()?, &rest()?, *scale, None)
            }
            Objective::SymmetricInBatchNegatives { scale } => {
                objective::symmetric_in_batch_negatives(&first()?, &rest()?, *scale)
            }
            Objective::Triplet { margin } => {
                objective::triplet(&first()?, &second()?, &e.narrow(0, 2 * n, n)?, *margin)
            }
            Objective::Contrastive { margin } => {
                objective::contrastive(&first()?, &second()?, &labels()?, *margin)
            }
            Objective::OnlineContrastive { margin } => {
                objective::online_contrastive(&first()?, &second()?, &batch.labels, *margin)
            }
            Objective::Mse => match teacher {
                Some(t) => objective::mse(e, &t.to_dtype(e.dtype())?),
                None => Err(TrainError::Invalid("distillation needs a teacher".into())),
            },
            Objective::Softmax { .. } => Err(TrainError::Invalid(
                "the softmax objective trains on NLI rows".into(),
            )),
        }
    }

    /// The loss of one batch of examples (indices into `data`), in training mode.
    ///
    /// # Errors
    /// When the data layout does not fit the objective, or a tensor op fails.
    pub fn batch_loss(
        &self,
        model: &TrainableModel,
        data: &TrainData,
        idx: &[usize],
        train: bool,
    ) -> Result<Tensor> {
        if let (Objective::Softmax { concat }, TrainData::Nli(rows)) = (&self.objective, data) {
            let logits = self.logits(model, rows, idx, train, concat)?;
            let labels: Vec<u32> = idx.iter().map(|&i| rows[i].label.index()).collect();
            let labels = Tensor::from_vec(labels, idx.len(), &Device::Cpu)?;
            return objective::cross_entropy(&logits, &labels);
        }
        let batch = self.batch(data, idx)?;
        let e = model.embed(&batch.texts, train)?;
        self.embedding_loss(&e, &batch)
    }

    /// One GradCache step of the cached in-batch-negatives objective: the batch's texts are
    /// embedded `mini` at a time without keeping activations, the loss and its gradient with
    /// respect to the embeddings are computed once over the whole batch, then each mini-batch
    /// is embedded again under the same dropout masks and back-propagated with that gradient.
    /// The encoder's gradients are those of the whole batch's loss; the activations held at
    /// any time are those of one mini-batch.
    fn cached_step(
        &self,
        model: &TrainableModel,
        data: &TrainData,
        idx: &[usize],
        mini: usize,
        non_finite: &dyn Fn(f32) -> TrainError,
    ) -> Result<(f32, GradStore)> {
        let batch = self.batch(data, idx)?;
        let chunks: Vec<&[&str]> = batch.texts.chunks(mini).collect();
        let seeds: Vec<u64> = chunks.iter().map(|_| model.next_seed()).collect();
        let mut cached = Vec::with_capacity(chunks.len());
        for (texts, &seed) in chunks.iter().zip(&seeds) {
            cached.push(model.embed_seeded(texts, seed)?.detach());
        }
        let all = Var::from_tensor(&Tensor::cat(&cached, 0)?)?;
        let loss = self.embedding_loss(all.as_tensor(), &batch)?;
        let value = loss.to_scalar::<f32>()?;
        if !value.is_finite() {
            return Err(non_finite(value));
        }
        let d_all = loss.backward()?.remove(all.as_tensor()).ok_or_else(|| {
            TrainError::Invalid("the loss does not depend on the embeddings".into())
        })?;
        let mut grads = None;
        let mut start = 0;
        for (texts, &seed) in chunks.iter().zip(&seeds) {
            let e = model.embed_seeded(texts, seed)?;
            let d = d_all.narrow(0, start, texts.len())?.detach();
            start += texts.len();
            // d(Σ e ⊙ d)/dθ = Σ (dL/de) (de/dθ): this mini-batch's share of dL/dθ.
            let store = (e * d)?.sum_all()?.backward()?;
            grads.get_or_insert(store);
        }
        let mut grads = grads.ok_or_else(|| TrainError::Invalid("an empty batch".into()))?;
        model.collect_gradients(&mut grads)?;
        Ok((value, grads))
    }

    fn logits(
        &self,
        model: &TrainableModel,
        rows: &[NliExample],
        idx: &[usize],
        train: bool,
        concat: &crate::Concat,
    ) -> Result<Tensor> {
        let (_, linear) = self
            .head
            .as_ref()
            .ok_or_else(|| TrainError::Invalid("no classifier".into()))?;
        let texts: Vec<&str> = idx
            .iter()
            .map(|&i| rows[i].premise.as_str())
            .chain(idx.iter().map(|&i| rows[i].hypothesis.as_str()))
            .collect();
        let e = model.embed(&texts, train)?;
        let n = idx.len();
        let features = concat.features(&e.narrow(0, 0, n)?, &e.narrow(0, n, n)?)?;
        Ok(candle_core::Module::forward(linear, &features)?)
    }

    fn evaluate(&self, model: &TrainableModel, dev: &DevSet) -> Result<f64> {
        const CHUNK: usize = 64;
        match dev {
            DevSet::Sts(rows) => {
                // The same STS evaluation as `sbert eval sts`: each distinct sentence once,
                // Spearman of cosine against gold.
                let dataset = sbert_eval::StsDataset {
                    name: "dev".into(),
                    path: std::path::PathBuf::new(),
                    pairs: rows.clone(),
                };
                let report = sbert_eval::evaluate(model, &[dataset], &[], &mut |_, _| {})?;
                Ok(report.scores[0].spearman)
            }
            DevSet::Nli(rows) => {
                let Objective::Softmax { concat } = &self.objective else {
                    return Err(TrainError::Invalid(
                        "an NLI dev set needs the softmax objective".into(),
                    ));
                };
                let mut correct = 0usize;
                let all: Vec<usize> = (0..rows.len()).collect();
                for idx in all.chunks(CHUNK) {
                    let pred: Vec<u32> = self
                        .logits(model, rows, idx, false, concat)?
                        .argmax(1)?
                        .to_vec1()?;
                    correct += idx
                        .iter()
                        .zip(pred)
                        .filter(|(&i, p)| rows[i].label.index() == *p)
                        .count();
                }
                Ok(100.0 * correct as f64 / rows.len().max(1) as f64)
            }
            DevSet::Retrieval(task) => Ok(sbert_eval::evaluate_retrieval(model, task)?.ndcg_at_10),
            DevSet::Triplets(rows) => {
                let triplets = rows
                    .iter()
                    .map(|r| match &r.negative {
                        Some(n) => Ok((r.query.as_str(), r.positive.as_str(), n.as_str())),
                        None => Err(TrainError::Invalid(
                            "a triplet dev set needs three columns (anchor, positive, negative)"
                                .into(),
                        )),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(sbert_eval::triplet_accuracy(model, &triplets)?)
            }
            DevSet::Binary(rows) => {
                Ok(sbert_eval::binary_classification(model, rows)?.average_precision)
            }
        }
    }

    /// Trains `model` on `data`; evaluates on `dev` every `eval_every` steps and at the end,
    /// saving the best checkpoint to `output` (or the final one when there is no dev set).
    /// `on_step` sees every step.
    ///
    /// # Errors
    /// On a non-finite loss (the last saved checkpoint stays intact), I/O errors, or a layout
    /// that does not fit the objective.
    pub fn train(
        &self,
        model: &TrainableModel,
        data: &TrainData,
        dev: Option<&DevSet>,
        on_step: &mut dyn FnMut(&StepLog),
    ) -> Result<TrainingReport> {
        let cfg = &self.config;
        let n = data.len();
        if n == 0 {
            return Err(TrainError::Invalid("no training examples".into()));
        }
        if let Some(order) = &cfg.order {
            if order.len() != n || order.iter().any(|&i| i >= n) {
                return Err(TrainError::Invalid(format!(
                    "the replayed order has {} entries for {n} examples (or an index out of range)",
                    order.len()
                )));
            }
        }
        self.check_data(data, Some(model.dim()))?;
        if dev.is_some() && cfg.save_every.is_some() {
            return Err(TrainError::Invalid(
                "with a dev set the output holds the best checkpoint: save every N steps only \
                 without one"
                    .into(),
            ));
        }
        match dev {
            Some(DevSet::Triplets(rows)) if rows.iter().any(|r| r.negative.is_none()) => {
                return Err(TrainError::Invalid(
                    "a triplet dev set needs three columns (anchor, positive, negative)".into(),
                ));
            }
            Some(DevSet::Binary(rows)) if rows.iter().any(|r| r.score != 0.0 && r.score != 1.0) => {
                return Err(TrainError::Invalid(
                    "a binary-classification dev set takes labels 0 and 1".into(),
                ));
            }
            Some(DevSet::Nli(_)) if !matches!(self.objective, Objective::Softmax { .. }) => {
                return Err(TrainError::Invalid(
                    "an NLI dev set scores the softmax objective's classifier".into(),
                ));
            }
            _ => {}
        }
        if let Some(out) = &cfg.output {
            out.check()?;
        }
        let steps_per_epoch = n.div_ceil(cfg.batch_size);
        let total = steps_per_epoch * cfg.epochs;
        let warmup = (total as f64 * cfg.warmup_ratio).ceil() as usize;

        // Two parameter groups, as sentence-transformers: no decay on biases and LayerNorm.
        let mut named: Vec<(String, Var)> = model.varmap().data().lock().map_or_else(
            |_| Vec::new(),
            |m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        );
        if let Some((vm, _)) = &self.head {
            if let Ok(m) = vm.data().lock() {
                named.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        let names: Vec<String> = named.iter().map(|(name, _)| name.clone()).collect();
        let vars = named
            .into_iter()
            .map(|(name, var)| {
                let decay = if no_decay(&name) {
                    0.0
                } else {
                    cfg.weight_decay
                };
                (var, decay)
            })
            .collect();
        let mut optimizer = AdamW::new(vars, AdamWParams::default())?;
        model.seed_dropout(cfg.seed);
        let schedule = self.schedule(n);

        let mut steps = Vec::with_capacity(total);
        let mut best: Option<f64> = None;
        let mut train_seconds = 0.0;
        let mut k = 0usize;
        if let Some(dir) = &cfg.resume {
            let state = self.resumed(model, dir, &schedule, &names, &mut optimizer)?;
            if state.step >= total {
                return Err(TrainError::Invalid(format!(
                    "--resume {}: the run finished ({} of {total} steps)",
                    dir.display(),
                    state.step
                )));
            }
            k = state.step;
            best = state.best_dev;
        }
        let skip = k;
        let save = |optimizer: &AdamW, k: usize, best: Option<f64>| -> Result<()> {
            let Some(out) = &cfg.output else {
                return Ok(());
            };
            if !cfg.save_training_state {
                return model.save(out);
            }
            let (optimizer_step, moments) = optimizer.state()?;
            let state = TrainingState {
                step: k,
                dropout_seed: model.peek_seed(),
                best_dev: best,
                schedule: schedule.clone(),
                optimizer_step,
                moments: names.iter().cloned().zip(moments).collect(),
            };
            model.save_with(out, &|dir| state.write(dir))
        };
        let mut batch_number = 0usize;
        let mut trained = 0usize;
        for epoch in 0..cfg.epochs {
            let order: Vec<usize> = match &cfg.order {
                Some(o) => o.clone(),
                None => {
                    let mut o: Vec<usize> = (0..n).collect();
                    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed + epoch as u64);
                    o.shuffle(&mut rng);
                    o
                }
            };
            for idx in order.chunks(cfg.batch_size) {
                batch_number += 1;
                if batch_number <= skip {
                    continue;
                }
                let started = Instant::now();
                let lr = cfg.lr * lr_factor(k, warmup, total);
                let non_finite = |loss: f32| TrainError::NonFiniteLoss { step: k + 1, loss };
                let (value, grads) = match &self.objective {
                    Objective::CachedInBatchNegatives {
                        mini_batch_size, ..
                    } => self.cached_step(model, data, idx, *mini_batch_size, &non_finite)?,
                    _ => {
                        let loss = self.batch_loss(model, data, idx, true)?;
                        let value = loss.to_scalar::<f32>()?;
                        if !value.is_finite() {
                            return Err(non_finite(value));
                        }
                        let mut grads = loss.backward()?;
                        model.collect_gradients(&mut grads)?;
                        (value, grads)
                    }
                };
                optimizer.step(&grads, lr, cfg.max_grad_norm)?;
                train_seconds += started.elapsed().as_secs_f64();
                trained += idx.len();
                k += 1;

                let eval_now = dev.is_some()
                    && (k == total || cfg.eval_every.is_some_and(|e| e > 0 && k.is_multiple_of(e)));
                let mut log = StepLog {
                    step: k,
                    total,
                    loss: value,
                    lr,
                    dev: None,
                };
                if dev.is_none() && k < total && cfg.save_every.is_some_and(|e| k.is_multiple_of(e))
                {
                    save(&optimizer, k, best)?;
                }
                if eval_now {
                    let score = self.evaluate(model, dev.expect("checked above"))?;
                    log.dev = Some(score);
                    if best.is_none_or(|b| score > b) {
                        best = Some(score);
                        save(&optimizer, k, best)?;
                    }
                }
                on_step(&log);
                steps.push(log);
            }
        }
        if dev.is_none() {
            save(&optimizer, k, best)?;
        }
        Ok(TrainingReport {
            steps,
            pairs_per_second: trained as f64 / train_seconds.max(1e-9),
            train_seconds,
            best_dev: best,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_linear_decay() {
        assert_eq!(lr_factor(0, 36, 360), 0.0);
        assert!((lr_factor(18, 36, 360) - 0.5).abs() < 1e-12);
        assert_eq!(lr_factor(36, 36, 360), 1.0);
        assert!((lr_factor(198, 36, 360) - 0.5).abs() < 1e-12);
        assert_eq!(lr_factor(360, 36, 360), 0.0);
    }

    fn tiny_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny")
    }

    fn pairs() -> Vec<StsPair> {
        let texts = [
            ("the cat sat on the mat", "the cat sits on the mat", 4.8),
            ("a man is playing guitar", "a man plays music", 3.5),
            ("hello world", "red car", 0.2),
            ("the dog runs fast", "a dog is running", 4.0),
            ("good book", "big moon", 0.5),
            ("the sun is big", "the moon is small", 1.5),
            ("a woman is eating food", "a woman eats pasta", 3.8),
            ("blue house", "green car", 0.8),
        ];
        texts
            .iter()
            .map(|(a, b, s)| StsPair {
                score: *s,
                sentence1: a.to_string(),
                sentence2: b.to_string(),
            })
            .collect()
    }

    #[test]
    fn a_saved_checkpoint_reloads_with_its_dev_score_and_nan_keeps_it_intact() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out_path = tmp.path().join("ckpt");
        let out = OutputDir::new(&out_path, false, &[]).expect("new folder");
        let model = TrainableModel::load(tiny_dir()).expect("load");
        let config = TrainConfig {
            epochs: 3,
            batch_size: 4,
            lr: 1e-3,
            eval_every: Some(2),
            output: Some(out),
            ..TrainConfig::default()
        };
        let out = out_path;
        let trainer = Trainer::new(config.clone(), Objective::Cosine { max_score: 5.0 }, 32)
            .expect("trainer");
        let data = TrainData::Scored(pairs());
        let dev = DevSet::Sts(pairs());
        let mut seen = 0;
        let report = trainer
            .train(&model, &data, Some(&dev), &mut |_| seen += 1)
            .expect("train");
        assert_eq!(seen, 6);
        assert!(report.steps.iter().all(|s| s.loss.is_finite()));
        let best = report.best_dev.expect("dev score");
        assert!(out.join("model.safetensors").is_file() && out.join("modules.json").is_file());
        let mut names: Vec<String> = std::fs::read_dir(tmp.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["ckpt"], "no staging folder left behind");
        assert!(OutputDir::is_checkpoint(&out));

        // The checkpoint is a model folder that sbert loads, and it scores what it was saved with.
        let reloaded = sbert::SentenceEmbedder::from_dir(&out, &Device::Cpu).expect("reload");
        let rows = pairs();
        let a: Vec<&str> = rows.iter().map(|r| r.sentence1.as_str()).collect();
        let b: Vec<&str> = rows.iter().map(|r| r.sentence2.as_str()).collect();
        let (ea, eb) = (
            reloaded.embed(&a).expect("embed"),
            reloaded.embed(&b).expect("embed"),
        );
        let cos: Vec<f64> = reloaded
            .similarity_pairwise(&ea, &eb)
            .expect("similarity")
            .into_iter()
            .map(f64::from)
            .collect();
        let gold: Vec<f64> = rows.iter().map(|r| r.score).collect();
        let again = 100.0 * sbert_eval::stats::spearman(&cos, &gold).expect("spearman");
        assert!(
            (again - best).abs() < 1e-6,
            "reloaded {again} vs saved {best}"
        );

        // A non-finite loss stops training with a clear error; the checkpoint stays as it was.
        let before = std::fs::read(out.join("model.safetensors")).expect("read");
        // A learning rate of 1e38 overflows the weights after the first step; without a dev
        // set the run would save only at its end, which it never reaches.
        let config = TrainConfig {
            lr: 1e38,
            eval_every: None,
            ..config
        };
        let broken =
            Trainer::new(config, Objective::Cosine { max_score: 5.0 }, 32).expect("trainer");
        let err = broken
            .train(&model, &data, None, &mut |_| {})
            .expect_err("nan");
        assert!(matches!(err, TrainError::NonFiniteLoss { .. }), "{err}");
        assert!(
            before == std::fs::read(out.join("model.safetensors")).expect("read"),
            "the checkpoint changed"
        );
    }

    #[test]
    fn no_examples_and_settings_out_of_range_are_refused() {
        let model = TrainableModel::load(tiny_dir()).expect("load");
        let trainer = Trainer::new(
            TrainConfig::default(),
            Objective::Cosine { max_score: 5.0 },
            32,
        )
        .expect("trainer");
        let err = trainer
            .train(&model, &TrainData::Scored(Vec::new()), None, &mut |_| {})
            .expect_err("no examples");
        assert!(matches!(err, TrainError::Invalid(_)), "{err}");
        for bad in [
            TrainConfig {
                warmup_ratio: 5.0,
                ..TrainConfig::default()
            },
            TrainConfig {
                max_grad_norm: 0.0,
                ..TrainConfig::default()
            },
            TrainConfig {
                eval_every: Some(0),
                ..TrainConfig::default()
            },
            TrainConfig {
                lr: f64::NAN,
                ..TrainConfig::default()
            },
            TrainConfig {
                weight_decay: -1.0,
                ..TrainConfig::default()
            },
            TrainConfig {
                batch_size: 0,
                ..TrainConfig::default()
            },
        ] {
            assert!(
                Trainer::new(bad.clone(), Objective::Cosine { max_score: 5.0 }, 32).is_err(),
                "{bad:?}"
            );
        }
        let mnrl = |scale, temperature| Objective::InBatchNegatives { scale, temperature };
        for bad in [
            mnrl(-5.0, None),
            mnrl(0.0, None),
            mnrl(20.0, Some(-1.0)),
            mnrl(f64::INFINITY, None),
        ] {
            assert!(
                Trainer::new(TrainConfig::default(), bad.clone(), 32).is_err(),
                "{bad:?}"
            );
        }
        assert!(Trainer::new(
            TrainConfig::default(),
            Objective::Cosine { max_score: 0.0 },
            32
        )
        .is_err());
    }

    /// STS and retrieval evaluation take a model in training as they take a loaded one; before
    /// any step both embed the same, so they score the same.
    #[test]
    fn evaluation_takes_a_model_in_training_and_a_loaded_one_alike() {
        let model = TrainableModel::load(tiny_dir()).expect("load");
        let loaded = sbert::SentenceEmbedder::from_dir(tiny_dir(), &Device::Cpu).expect("load");
        let dataset = sbert_eval::StsDataset {
            name: "pairs".into(),
            path: std::path::PathBuf::new(),
            pairs: pairs(),
        };
        let sets = [dataset];
        let training = sbert_eval::evaluate(&model, &sets, &[], &mut |_, _| {}).expect("eval");
        let frozen = sbert_eval::evaluate(&loaded, &sets, &[], &mut |_, _| {}).expect("eval");
        assert!((training.scores[0].spearman - frozen.scores[0].spearman).abs() < 1e-9);
        let trainer = Trainer::new(
            TrainConfig::default(),
            Objective::Cosine { max_score: 5.0 },
            32,
        )
        .expect("trainer");
        let rows = pairs();
        let dev = trainer
            .evaluate(&model, &DevSet::Sts(rows.clone()))
            .expect("dev");
        assert!((dev - frozen.scores[0].spearman).abs() < 1e-9);
        let task = sbert_eval::RetrievalTask::from_pairs(
            rows.iter()
                .map(|r| (r.sentence1.as_str(), r.sentence2.as_str())),
        );
        let r1 = sbert_eval::evaluate_retrieval(&model, &task).expect("retrieval");
        let r2 = sbert_eval::evaluate_retrieval(&loaded, &task).expect("retrieval");
        assert!((r1.mrr_at_10 - r2.mrr_at_10).abs() < 1e-9);
    }

    /// `models/tiny` with an MPNet encoder of seeded weights under MPNet's checkpoint names.
    fn tiny_mpnet(dir: &std::path::Path) {
        for entry in std::fs::read_dir(tiny_dir()).expect("tiny") {
            let path = entry.expect("entry").path();
            let to = dir.join(path.file_name().expect("name"));
            if path.is_dir() {
                std::fs::create_dir_all(&to).expect("mkdir");
                for f in std::fs::read_dir(&path).expect("sub") {
                    let f = f.expect("entry").path();
                    std::fs::copy(&f, to.join(f.file_name().expect("name"))).expect("copy");
                }
            } else if path.extension().is_some_and(|e| e == "json") {
                std::fs::copy(&path, to).expect("copy");
            }
        }
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).expect("cfg"))
                .expect("json");
        config["model_type"] = "mpnet".into();
        config["pad_token_id"] = 1.into();
        config["relative_attention_num_buckets"] = 8.into();
        config["max_position_embeddings"] = 66.into();
        std::fs::write(dir.join("config.json"), config.to_string()).expect("write");
        let config: sbert::BertConfig = serde_json::from_value(config).expect("config");
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        sbert::BertModel::load(vb, &config).expect("mpnet");
        // Deterministic weights (candle's CPU generator cannot be seeded): spread like a
        // uniform of deviation about 0.3 by the golden-ratio sequence, LayerNorm scales and
        // shifts near 1 and 0 alternately, as a seeded normal draw would put them.
        for (k, var) in varmap.all_vars().iter().enumerate() {
            let values: Vec<f32> = (0..var.elem_count())
                .map(|i| (((i + 7919 * k) as f64 * 0.618_033_988_75).fract() as f32 - 0.5) * 1.04)
                .collect();
            let noise = Tensor::from_vec(values, var.shape(), &Device::Cpu).expect("noise");
            let value = if var.rank() == 1 && k % 2 == 0 {
                (noise + 1.0).expect("add")
            } else {
                noise
            };
            var.set(&value).expect("set");
        }
        varmap
            .save(dir.join("model.safetensors"))
            .expect("save weights");
    }

    /// Every BERT-family encoder trains (MPNet with its relative attention bias, DistilBERT
    /// without token types): the saved folder holds the weights under the architecture's own
    /// names, and loads into the pipeline that embeds what the model in training embeds.
    #[test]
    fn mpnet_and_distilbert_train_and_their_checkpoints_reload() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mpnet = tmp.path().join("mpnet");
        std::fs::create_dir(&mpnet).expect("mkdir");
        tiny_mpnet(&mpnet);
        let distilbert = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../models/families/distilbert");
        let data = TrainData::Pairs(
            pairs()
                .into_iter()
                .map(|p| PairExample {
                    query: p.sentence1,
                    positive: p.sentence2,
                    negative: None,
                })
                .collect(),
        );
        let texts = ["the cat sat on the mat", "a man plays music", "blue house"];
        for (name, dir) in [("mpnet", mpnet), ("distilbert", distilbert)] {
            let model = TrainableModel::load(&dir).expect("load");
            let before = model.embed(&texts, false).expect("embed");
            let out_path = tmp.path().join(format!("{name}-out"));
            let config = TrainConfig {
                batch_size: 4,
                epochs: 2,
                lr: 1e-3,
                output: Some(OutputDir::new(&out_path, false, &[]).expect("out")),
                ..TrainConfig::default()
            };
            let objective = Objective::InBatchNegatives {
                scale: 20.0,
                temperature: None,
            };
            let report = Trainer::new(config, objective, model.dim())
                .expect("trainer")
                .train(&model, &data, None, &mut |_| {})
                .expect("train");
            assert!(report.steps.iter().all(|s| s.loss.is_finite()), "{name}");
            let after = model.embed(&texts, false).expect("embed");
            let moved = (&after - &before)
                .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
                .expect("diff");
            assert!(
                moved > 1e-3,
                "{name}: training moved the embeddings by {moved}"
            );
            let reloaded = sbert::SentenceEmbedder::from_dir(&out_path, &Device::Cpu)
                .expect("reload")
                .encode_tensor(&texts, &sbert::EncodeOptions::default())
                .expect("embed");
            let diff = (&reloaded - &after)
                .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
                .expect("diff");
            assert!(diff < 1e-5, "{name}: the checkpoint embeds {diff} away");
            let saved =
                candle_core::safetensors::load(out_path.join("model.safetensors"), &Device::Cpu)
                    .expect("weights");
            let expected = match name {
                "mpnet" => "encoder.relative_attention_bias.weight",
                _ => "transformer.layer.0.attention.q_lin.weight",
            };
            assert!(saved.contains_key(expected), "{name}: {expected} missing");
            assert!(
                !saved.keys().any(|k| k.contains("token_type")),
                "{name} has no token types"
            );
        }
    }

    fn pair_rows(negatives: bool) -> Vec<PairExample> {
        pairs()
            .into_iter()
            .enumerate()
            .map(|(i, p)| PairExample {
                query: p.sentence1,
                positive: p.sentence2,
                negative: negatives.then(|| format!("an unrelated sentence number {i}")),
            })
            .collect()
    }

    /// The tiny model with its dropout off, so that two passes over a batch agree.
    fn tiny_without_dropout() -> TrainableModel {
        let loaded = TrainableModel::load(tiny_dir()).expect("load");
        let config = sbert::BertConfig {
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            ..loaded.encoder().config().clone()
        };
        TrainableModel::with_varmap(tiny_dir(), loaded.varmap().clone(), &config).expect("model")
    }

    /// GradCache computes the gradient of the whole batch's loss: without dropout, the
    /// cached step's gradients equal those of the plain in-batch loss over the same batch.
    #[test]
    fn cached_in_batch_negatives_has_the_plain_gradient() {
        let model = tiny_without_dropout();
        let data = TrainData::Pairs(pair_rows(true));
        let idx: Vec<usize> = (0..8).collect();
        let plain = Trainer::new(
            TrainConfig::default(),
            Objective::InBatchNegatives {
                scale: 20.0,
                temperature: None,
            },
            model.dim(),
        )
        .expect("trainer");
        let loss = plain.batch_loss(&model, &data, &idx, true).expect("loss");
        let mut expected = loss.backward().expect("backward");
        model.collect_gradients(&mut expected).expect("collect");
        let cached = Trainer::new(
            TrainConfig::default(),
            Objective::CachedInBatchNegatives {
                scale: 20.0,
                mini_batch_size: 3,
            },
            model.dim(),
        )
        .expect("trainer");
        let (value, got) = cached
            .cached_step(&model, &data, &idx, 3, &|l| TrainError::NonFiniteLoss {
                step: 1,
                loss: l,
            })
            .expect("cached");
        assert!((value - loss.to_scalar::<f32>().expect("s")).abs() < 1e-5);
        for var in model.varmap().all_vars() {
            let (a, b) = (
                got.get(var.as_tensor()).expect("cached gradient"),
                expected.get(var.as_tensor()).expect("plain gradient"),
            );
            let scale = b
                .abs()
                .and_then(|t| t.max_all()?.to_scalar::<f32>())
                .expect("max");
            let diff = (a - b)
                .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
                .expect("diff");
            assert!(diff <= 1e-4 * scale.max(1e-3), "|Δ| {diff} of {scale}");
        }
    }

    /// Each layout error is named before any step.
    #[test]
    fn data_that_does_not_fit_the_loss_is_refused_before_training() {
        let model = TrainableModel::load(tiny_dir()).expect("load");
        let run = |objective: Objective, data: &TrainData, config: TrainConfig| {
            Trainer::new(config, objective, model.dim())
                .and_then(|t| t.train(&model, data, None, &mut |_| panic!("a step ran")))
                .expect_err("refused")
                .to_string()
        };
        let err = run(
            Objective::Triplet { margin: 5.0 },
            &TrainData::Pairs(pair_rows(false)),
            TrainConfig::default(),
        );
        assert!(
            err.contains("no negative") && err.contains("three columns"),
            "{err}"
        );
        let err = run(
            Objective::Contrastive { margin: 0.5 },
            &TrainData::Scored(pairs()),
            TrainConfig::default(),
        );
        assert!(err.contains("label 4.8"), "{err}");
        let teacher = Tensor::zeros((3, model.dim() + 1), DType::F32, &Device::Cpu).expect("t");
        let distill = TrainData::Distill {
            sentences: vec!["a".into(), "b".into(), "c".into()],
            teacher,
        };
        let err = run(Objective::Mse, &distill, TrainConfig::default());
        let (d, wider) = (model.dim(), model.dim() + 1);
        assert!(
            err.contains(&format!("{wider} dimensions and the student's {d}")),
            "{err}"
        );
        let matryoshka = TrainConfig {
            matryoshka_dims: Some(vec![d, 2 * d]),
            ..TrainConfig::default()
        };
        let err = run(
            Objective::CoSent { scale: 20.0 },
            &TrainData::Scored(pairs()),
            matryoshka,
        );
        assert!(
            err.contains(&format!("Matryoshka dimension {}", 2 * d)),
            "{err}"
        );
    }

    /// The Matryoshka loss is the sum of the objective's loss at each width.
    #[test]
    fn matryoshka_sums_the_loss_over_the_prefixes() {
        let model = tiny_without_dropout();
        let data = TrainData::Scored(pairs());
        let idx: Vec<usize> = (0..8).collect();
        let loss_with = |dims: Option<Vec<usize>>| {
            let config = TrainConfig {
                matryoshka_dims: dims,
                ..TrainConfig::default()
            };
            Trainer::new(config, Objective::CoSent { scale: 20.0 }, model.dim())
                .expect("trainer")
                .batch_loss(&model, &data, &idx, true)
                .and_then(|l| Ok(l.to_scalar::<f32>()?))
                .expect("loss")
        };
        let whole = loss_with(Some(vec![16, 8, 4]));
        let e = model.embed(&data_texts(&pairs()), false).expect("embed");
        let labels: Vec<f32> = pairs().iter().map(|p| p.score as f32).collect();
        let mut sum = 0.0;
        for d in [16, 8, 4] {
            let (a, b) = (
                e.narrow(0, 0, 8)
                    .and_then(|x| x.narrow(1, 0, d))
                    .expect("a"),
                e.narrow(0, 8, 8)
                    .and_then(|x| x.narrow(1, 0, d))
                    .expect("b"),
            );
            let sims = sbert::pairwise_cos_sim(&a, &b).expect("cos");
            sum += objective::cosent(&sims, &labels, 20.0)
                .and_then(|l| Ok(l.to_scalar::<f32>()?))
                .expect("loss");
        }
        assert!(
            (whole - sum).abs() < 1e-4 * sum.abs().max(1.0),
            "{whole} vs {sum}"
        );
        assert!((loss_with(None) - whole).abs() > 1e-3);
    }

    fn data_texts(rows: &[StsPair]) -> Vec<String> {
        rows.iter()
            .map(|r| r.sentence1.clone())
            .chain(rows.iter().map(|r| r.sentence2.clone()))
            .collect()
    }

    fn copy_all(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("list") {
            let path = entry.expect("entry").path();
            let target = to.join(path.file_name().expect("name"));
            if path.is_dir() {
                copy_all(&path, &target);
            } else {
                std::fs::copy(&path, &target).expect("copy");
            }
        }
    }

    /// A run resumed from a checkpoint saved halfway ends where the uninterrupted run ends:
    /// same weights (dropout on), same optimizer moments, same schedule.
    #[test]
    fn a_resumed_run_ends_where_the_whole_run_ends() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (whole, halfway) = (tmp.path().join("whole"), tmp.path().join("halfway"));
        let data = TrainData::Scored(pairs());
        let config = |out: &std::path::Path, resume: Option<PathBuf>| TrainConfig {
            batch_size: 2,
            epochs: 2,
            lr: 1e-3,
            save_every: Some(4),
            resume,
            output: Some(OutputDir::new(out, false, &[]).expect("output")),
            ..TrainConfig::default()
        };
        let objective = Objective::CoSent { scale: 20.0 };
        let model = TrainableModel::load(tiny_dir()).expect("load");
        let trainer =
            Trainer::new(config(&whole, None), objective.clone(), model.dim()).expect("trainer");
        let mut copied = false;
        trainer
            .train(&model, &data, None, &mut |log| {
                if log.step == 4 {
                    // The checkpoint of step 4, as a run stopped there would leave it.
                    copy_all(&whole, &halfway);
                    copied = true;
                }
            })
            .expect("train");
        assert!(copied);
        let state = halfway.join("training_state/trainer_state.json");
        assert!(state.is_file(), "the checkpoint holds the training state");

        let resumed = TrainableModel::load(&halfway).expect("load halfway");
        let trainer = Trainer::new(
            config(&halfway, Some(halfway.clone())),
            objective.clone(),
            model.dim(),
        )
        .expect("trainer");
        let mut seen = Vec::new();
        let report = trainer
            .train(&resumed, &data, None, &mut |log| seen.push(log.step))
            .expect("resume");
        assert_eq!(seen, vec![5, 6, 7, 8]);
        assert_eq!(report.steps.len(), 4);
        let texts = ["the cat sat on the mat", "blue house"];
        let embed = |dir: &std::path::Path| {
            sbert::SentenceEmbedder::from_dir(dir, &Device::Cpu)
                .expect("load")
                .encode_tensor(&texts, &sbert::EncodeOptions::default())
                .expect("embed")
        };
        let diff = (embed(&whole) - embed(&halfway))
            .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
            .expect("diff");
        assert!(diff < 1e-5, "resumed run ends {diff} away");

        // Another setting, a folder that is not a checkpoint, a finished run: refused.
        let other = TrainConfig {
            lr: 2e-3,
            ..config(&halfway, Some(halfway.clone()))
        };
        let err = Trainer::new(other, objective.clone(), model.dim())
            .and_then(|t| t.train(&resumed, &data, None, &mut |_| panic!("a step ran")))
            .expect_err("differs")
            .to_string();
        assert!(err.contains("lr is 0.002"), "{err}");
        let plain = TrainableModel::load(tiny_dir()).expect("load");
        let err = Trainer::new(
            config(&tmp.path().join("x"), Some(tiny_dir())),
            objective.clone(),
            model.dim(),
        )
        .and_then(|t| t.train(&plain, &data, None, &mut |_| panic!("a step ran")))
        .expect_err("not a checkpoint")
        .to_string();
        assert!(err.contains("not a checkpoint"), "{err}");
        let finished = TrainableModel::load(&whole).expect("load");
        let err = Trainer::new(config(&whole, Some(whole.clone())), objective, model.dim())
            .and_then(|t| t.train(&finished, &data, None, &mut |_| panic!("a step ran")))
            .expect_err("finished")
            .to_string();
        assert!(err.contains("finished"), "{err}");
    }

    /// Encoders that are not BERT-family are refused by name before training.
    #[test]
    fn other_encoders_are_refused_by_name() {
        let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
        for (dir, kind) in [
            ("families/modernbert", "ModernBERT"),
            ("potion-base-8M", "static embedding table"),
        ] {
            let err = TrainableModel::load(models.join(dir))
                .expect_err("refused")
                .to_string();
            assert!(err.contains(kind), "{err}");
        }
    }

    #[test]
    fn decay_groups_follow_sentence_transformers() {
        assert!(no_decay(
            "encoder.layer.0.attention.output.LayerNorm.weight"
        ));
        assert!(no_decay("encoder.layer.0.intermediate.dense.bias"));
        assert!(!no_decay("encoder.layer.0.intermediate.dense.weight"));
    }
}
