//! The training loop: batches, AdamW, warm-up, clipping, evaluation, checkpoints.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::checkpoint::OutputDir;
use crate::data::{NliExample, PairExample, StsPair};
use crate::model::TrainableModel;
use crate::objective::{self, Objective};
use crate::optim::{AdamW, AdamWParams};
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
pub enum TrainData {
    /// Scored pairs (regression).
    Scored(Vec<StsPair>),
    /// NLI triples (classification).
    Nli(Vec<NliExample>),
    /// (query, positive[, negative]) pairs (in-batch negatives).
    Pairs(Vec<PairExample>),
}

impl TrainData {
    fn len(&self) -> usize {
        match self {
            TrainData::Scored(v) => v.len(),
            TrainData::Nli(v) => v.len(),
            TrainData::Pairs(v) => v.len(),
        }
    }
}

/// Dev evaluation during training.
#[derive(Debug, Clone)]
pub enum DevSet {
    /// STS pairs: Spearman × 100 of cosine vs gold.
    Sts(Vec<StsPair>),
    /// NLI triples: accuracy × 100 of the classifier.
    Nli(Vec<NliExample>),
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
        match (&self.objective, data) {
            (Objective::Cosine { max_score }, TrainData::Scored(rows)) => {
                let texts: Vec<&str> = idx
                    .iter()
                    .map(|&i| rows[i].sentence1.as_str())
                    .chain(idx.iter().map(|&i| rows[i].sentence2.as_str()))
                    .collect();
                let e = model.embed(&texts, train)?;
                let n = idx.len();
                let scores: Vec<f32> = idx.iter().map(|&i| rows[i].score as f32).collect();
                let labels = objective::scaled_labels(&scores, *max_score, &Device::Cpu)?;
                objective::cosine_mse(&e.narrow(0, 0, n)?, &e.narrow(0, n, n)?, &labels)
            }
            (Objective::Softmax { concat }, TrainData::Nli(rows)) => {
                let logits = self.logits(model, rows, idx, train, concat)?;
                let labels: Vec<u32> = idx.iter().map(|&i| rows[i].label.index()).collect();
                let labels = Tensor::from_vec(labels, idx.len(), &Device::Cpu)?;
                objective::cross_entropy(&logits, &labels)
            }
            (Objective::InBatchNegatives { scale, temperature }, TrainData::Pairs(rows)) => {
                let n = idx.len();
                let mut texts: Vec<&str> = idx.iter().map(|&i| rows[i].query.as_str()).collect();
                texts.extend(idx.iter().map(|&i| rows[i].positive.as_str()));
                texts.extend(idx.iter().filter_map(|&i| rows[i].negative.as_deref()));
                let e = model.embed(&texts, train)?;
                let docs = e.narrow(0, n, texts.len() - n)?;
                objective::in_batch_negatives(&e.narrow(0, 0, n)?, &docs, *scale, *temperature)
            }
            _ => Err(TrainError::Invalid(
                "the training data does not fit the objective (cosine: scored pairs; softmax: NLI; in-batch negatives: pairs)".into(),
            )),
        }
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
        if let (Objective::Cosine { max_score }, TrainData::Scored(rows)) = (&self.objective, data)
        {
            if let Some((i, p)) = rows
                .iter()
                .enumerate()
                .find(|(_, p)| !(0.0..=f64::from(*max_score)).contains(&p.score))
            {
                return Err(TrainError::Invalid(format!(
                    "training example {} (0-based) has score {} outside [0, {max_score}]",
                    i, p.score
                )));
            }
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

        let mut steps = Vec::with_capacity(total);
        let mut best: Option<f64> = None;
        let mut train_seconds = 0.0;
        let mut k = 0usize;
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
                let started = Instant::now();
                let lr = cfg.lr * lr_factor(k, warmup, total);
                let loss = self.batch_loss(model, data, idx, true)?;
                let value = loss.to_scalar::<f32>()?;
                if !value.is_finite() {
                    return Err(TrainError::NonFiniteLoss {
                        step: k + 1,
                        loss: value,
                    });
                }
                let mut grads = loss.backward()?;
                model.collect_gradients(&mut grads)?;
                optimizer.step(&grads, lr, cfg.max_grad_norm)?;
                train_seconds += started.elapsed().as_secs_f64();
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
                if eval_now {
                    let score = self.evaluate(model, dev.expect("checked above"))?;
                    log.dev = Some(score);
                    if best.is_none_or(|b| score > b) {
                        best = Some(score);
                        if let Some(out) = &cfg.output {
                            model.save(out)?;
                        }
                    }
                }
                on_step(&log);
                steps.push(log);
            }
        }
        if dev.is_none() {
            if let Some(out) = &cfg.output {
                model.save(out)?;
            }
        }
        Ok(TrainingReport {
            steps,
            pairs_per_second: (n * cfg.epochs) as f64 / train_seconds.max(1e-9),
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

    #[test]
    fn decay_groups_follow_sentence_transformers() {
        assert!(no_decay(
            "encoder.layer.0.attention.output.LayerNorm.weight"
        ));
        assert!(no_decay("encoder.layer.0.intermediate.dense.bias"));
        assert!(!no_decay("encoder.layer.0.intermediate.dense.weight"));
    }
}
