//! Cross-encoders (rerankers): a query and a document read together by one encoder pass, one
//! score per label, as sentence-transformers' `CrossEncoder` computes them.
//!
//! A bi-encoder ([`crate::SentenceEmbedder`]) embeds each text alone, so a corpus is embedded
//! once and searched fast; a cross-encoder attends across the pair and ranks more exactly, at
//! one pass per pair. The standard search pipeline retrieves with the first and reranks the
//! top hits with the second ([`CrossEncoder::rank`]).
//!
//! The folder is what `CrossEncoder.save` writes (sentence-transformers 6: `modules.json` with
//! one Transformer of task `sequence-classification`) or a plain Hugging Face
//! `*ForSequenceClassification` folder: BERT (the tanh pooler, then the classifier), RoBERTa /
//! XLM-RoBERTa / MPNet (dense, tanh, out_proj on the first token) and DistilBERT
//! (pre_classifier, ReLU, classifier). Pairs are tokenized as the tokenizer's pair template
//! says (segment ids included), truncated longest-first to `max_length`.
//!
//! ```no_run
//! # fn main() -> sbert::Result<()> {
//! let reranker = sbert::CrossEncoder::from_dir("models/my-reranker", &sbert::Device::Cpu)?;
//! let hits = reranker.rank(
//!     "how do vaccines work",
//!     &["Vaccines train the immune system.", "The train leaves at noon."],
//!     None,
//! )?;
//! assert_eq!(hits[0].corpus_id, 0);
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use sbert_bert::{BertModel, Encoder, TokenBatch, TokenEmbeddings};
use tokenizers::Tokenizer;

use crate::encoders::EncoderModel;
use crate::error::{Error, Result};
use crate::folder;

/// What turns a pair's logits into its scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Activation {
    /// `1 / (1 + e⁻ˣ)`: sentence-transformers' default for one label.
    Sigmoid,
    /// The logits as they are: the default for several labels, and raw scores.
    Identity,
    /// `tanh(x)`.
    Tanh,
}

impl Activation {
    /// The activation a sentence-transformers class name stands for
    /// (`torch.nn.modules.activation.Sigmoid`, `torch.nn.modules.linear.Identity`, …).
    ///
    /// # Errors
    /// [`Error::Unsupported`] for another class.
    pub fn from_class_name(name: &str) -> Result<Self> {
        match name.rsplit('.').next().unwrap_or(name) {
            "Sigmoid" => Ok(Self::Sigmoid),
            "Identity" => Ok(Self::Identity),
            "Tanh" => Ok(Self::Tanh),
            _ => Err(Error::Unsupported(format!(
                "activation_fn {name:?} (supported: Sigmoid, Identity, Tanh)"
            ))),
        }
    }

    fn apply(self, x: f32) -> f32 {
        match self {
            Self::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Self::Identity => x,
            Self::Tanh => x.tanh(),
        }
    }
}

/// Scores of pairs: one row of [`Scores::num_labels`] values per pair, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    values: Vec<f32>,
    num_labels: usize,
}

impl Scores {
    /// Pairs scored.
    pub fn len(&self) -> usize {
        self.values.len() / self.num_labels.max(1)
    }

    /// Whether no pair was scored.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Values per pair.
    pub fn num_labels(&self) -> usize {
        self.num_labels
    }

    /// The scores of pair `i`, one per label.
    ///
    /// # Panics
    /// When `i >= len()`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.num_labels..][..self.num_labels]
    }

    /// Every pair's scores, in order.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.values.chunks_exact(self.num_labels.max(1))
    }

    /// All values, pair after pair.
    pub fn as_slice(&self) -> &[f32] {
        &self.values
    }

    /// One score per pair, for a model of one label (what `predict` returns in
    /// sentence-transformers); `None` for several labels.
    pub fn single(&self) -> Option<&[f32]> {
        (self.num_labels == 1).then_some(self.values.as_slice())
    }
}

/// A document of [`CrossEncoder::rank`]'s answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    /// The document's position in the list given.
    pub corpus_id: usize,
    /// Its score (with the model's activation, or raw).
    pub score: f32,
}

/// How [`CrossEncoder::predict_with`] scores.
#[derive(Debug, Clone, Copy, Default)]
pub struct PredictOptions {
    /// Pairs per encoder pass (`None`: the model's, 32 unless set).
    pub batch_size: Option<usize>,
    /// Instead of the model's activation (`Some(Activation::Identity)`: raw logits).
    pub activation: Option<Activation>,
}

/// The classification head on the encoder's first token.
#[derive(Debug)]
enum Head {
    /// BERT: `classifier(tanh(pooler(h₀)))`.
    Pooler { pooler: Linear, classifier: Linear },
    /// RoBERTa, XLM-RoBERTa, MPNet: `out_proj(tanh(dense(h₀)))`.
    Dense { dense: Linear, out_proj: Linear },
    /// DistilBERT: `classifier(relu(pre_classifier(h₀)))`.
    PreClassifier { pre: Linear, classifier: Linear },
}

impl Head {
    fn forward(&self, first: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Pooler { pooler, classifier } => {
                classifier.forward(&pooler.forward(first)?.tanh()?)
            }
            Self::Dense { dense, out_proj } => out_proj.forward(&dense.forward(first)?.tanh()?),
            Self::PreClassifier { pre, classifier } => {
                classifier.forward(&pre.forward(first)?.relu()?)
            }
        }
    }
}

/// A cross-encoder: a pair of texts in, one score per label out. `Send + Sync`; scores through
/// `&self`.
#[derive(Debug)]
pub struct CrossEncoder {
    dir: PathBuf,
    tokenizer: Tokenizer,
    cut_rules: Option<crate::prefix::CutRules>,
    max_length: usize,
    encoder: BertModel,
    head: Head,
    activation: Activation,
    labels: Vec<String>,
    batch_size: usize,
    /// Whether the encoder reads segment ids (BERT with a table of more than one segment);
    /// otherwise every token is segment 0, as transformers feeds DistilBERT, RoBERTa, MPNet.
    token_types: bool,
}

/// The classification architectures [`CrossEncoder::from_dir`] reads, and their heads.
const ARCHITECTURES: [(&str, HeadKind); 6] = [
    ("BertForSequenceClassification", HeadKind::Pooler),
    ("RobertaForSequenceClassification", HeadKind::Dense),
    ("XLMRobertaForSequenceClassification", HeadKind::Dense),
    ("CamembertForSequenceClassification", HeadKind::Dense),
    ("MPNetForSequenceClassification", HeadKind::Dense),
    (
        "DistilBertForSequenceClassification",
        HeadKind::PreClassifier,
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadKind {
    Pooler,
    Dense,
    PreClassifier,
}

/// The `*ForSequenceClassification` class a `config.json` names, if any.
fn classification_architecture(config: &serde_json::Value) -> Option<&str> {
    config
        .get("architectures")?
        .as_array()?
        .iter()
        .filter_map(serde_json::Value::as_str)
        .find(|a| a.ends_with("ForSequenceClassification"))
}

impl CrossEncoder {
    /// Loads `model`: a folder, or (with the `hf-hub` feature) an `owner/name` id found in the
    /// Hugging Face hub cache, as [`crate::SentenceEmbedder::builder`] resolves it.
    ///
    /// # Errors
    /// [`Error::ModelNotFound`] when it is neither, and as [`CrossEncoder::from_dir`].
    pub fn load(model: &str, device: &Device) -> Result<Self> {
        Self::from_dir(crate::hub::resolve(model, None)?, device)
    }

    /// Whether `model` (a folder, or a hub id in the local cache) holds a cross-encoder: a
    /// `config.json` naming a `*ForSequenceClassification` architecture and no Pooling
    /// module. What a program that serves either kind checks before loading one.
    pub fn is_cross_encoder(model: &str) -> bool {
        crate::hub::resolve(model, None).is_ok_and(|dir| architecture_in(&dir).is_some())
    }

    /// Loads the cross-encoder in `dir` on `device` (f32).
    ///
    /// # Errors
    /// A missing or malformed file, a folder that is not a sequence classifier (the error
    /// says what it is), an architecture without a supported head, or an unknown activation.
    pub fn from_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let transformer = transformer_dir(&dir)?;
        let config_path = folder::require_file(transformer.join("config.json"))?;
        let config: serde_json::Value = folder::read_json(&config_path)?;
        let architecture = classification_architecture(&config).ok_or_else(|| {
            Error::Unsupported(format!(
                "{} names no *ForSequenceClassification architecture (architectures: {}): not \
                 a cross-encoder",
                config_path.display(),
                config
                    .get("architectures")
                    .unwrap_or(&serde_json::Value::Null)
            ))
        })?;
        let kind = ARCHITECTURES
            .iter()
            .find(|(name, _)| *name == architecture)
            .map(|&(_, kind)| kind)
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "{architecture} in {} (supported: {})",
                    config_path.display(),
                    ARCHITECTURES.map(|(name, _)| name).join(", ")
                ))
            })?;
        let labels = label_names(&config);
        let num_labels = labels.len();
        let hidden = config
            .get("hidden_size")
            .or_else(|| config.get("dim"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0) as usize;
        let (loaded, head) = crate::encoders::load_with_head(
            &transformer,
            DType::F32,
            device,
            sbert_bert::Quantization::None,
            |vb| load_head(vb, kind, hidden, num_labels, &transformer),
        )?;
        let EncoderModel::Bert(encoder) = loaded.encoder else {
            return Err(Error::Unsupported(format!(
                "{architecture} over this encoder ({})",
                config_path.display()
            )));
        };
        let activation = activation(&dir, &config, num_labels)?;
        let token_types = encoder
            .config()
            .architecture()
            .is_ok_and(|a| a.has_token_types())
            && encoder.config().type_vocab_size > 1;
        let max_length = folder::max_input_length(&transformer, Encoder::max_positions(&encoder))?;
        let tokenizer = crate::tokenize::load_pair_tokenizer(&transformer, max_length)?;
        let cut_rules = crate::prefix::cut_rules(&tokenizer);
        Ok(Self {
            dir,
            tokenizer,
            cut_rules,
            max_length,
            encoder,
            head,
            activation,
            labels,
            batch_size: crate::DEFAULT_BATCH_SIZE,
            token_types,
        })
    }

    /// The folder it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Scores per pair.
    pub fn num_labels(&self) -> usize {
        self.labels.len()
    }

    /// The label names (`id2label` of `config.json`), in order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The longest pair in tokens, special tokens included (longer pairs are cut, the longer
    /// text first).
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The activation applied to the logits by default.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// The same model scoring `batch_size` pairs per pass.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for 0.
    pub fn with_batch_size(mut self, batch_size: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::InvalidArgument(
                "batch_size must be at least 1".into(),
            ));
        }
        self.batch_size = batch_size;
        Ok(self)
    }

    /// Scores each `(query, document)` pair with the model's activation.
    ///
    /// # Errors
    /// A tokenizer failure, or a score that is not finite ([`Error::NonFiniteScore`] names
    /// the pair).
    pub fn predict<A: AsRef<str>, B: AsRef<str>>(&self, pairs: &[(A, B)]) -> Result<Scores> {
        self.predict_with(pairs, &PredictOptions::default())
    }

    /// [`CrossEncoder::predict`] with options (batch size, another activation).
    ///
    /// # Errors
    /// As [`CrossEncoder::predict`], and a batch size of 0.
    pub fn predict_with<A: AsRef<str>, B: AsRef<str>>(
        &self,
        pairs: &[(A, B)],
        options: &PredictOptions,
    ) -> Result<Scores> {
        let _span = tracing::debug_span!("predict", pairs = pairs.len()).entered();
        let batch_size = options.batch_size.unwrap_or(self.batch_size);
        if batch_size == 0 {
            return Err(Error::InvalidArgument(
                "batch_size must be at least 1".into(),
            ));
        }
        let activation = options.activation.unwrap_or(self.activation);
        let num_labels = self.num_labels();
        let encoded: Vec<tokenizers::Encoding> = pairs
            .iter()
            .map(|(a, b)| self.encode_pair(a.as_ref(), b.as_ref()))
            .collect::<Result<_>>()?;
        let lengths: Vec<usize> = encoded.iter().map(tokenizers::Encoding::len).collect();
        let mut values = vec![0f32; pairs.len() * num_labels];
        for batch in crate::batching::plan(&lengths, batch_size, None) {
            let mut ids = Vec::new();
            let mut types = Vec::new();
            let mut batch_lengths = Vec::with_capacity(batch.len());
            for &i in &batch {
                ids.extend_from_slice(encoded[i].get_ids());
                types.extend_from_slice(encoded[i].get_type_ids());
                batch_lengths.push(lengths[i]);
            }
            let tokens = Encoder::forward(
                &self.encoder,
                TokenBatch {
                    input_ids: &ids,
                    token_type_ids: self.token_types.then_some(types.as_slice()),
                    lengths: &batch_lengths,
                },
            )?;
            let first = match tokens {
                TokenEmbeddings::Packed(rows) => {
                    let mut starts = Vec::with_capacity(batch_lengths.len());
                    let mut at = 0u32;
                    for &len in &batch_lengths {
                        starts.push(at);
                        at += len as u32;
                    }
                    let starts = Tensor::new(starts.as_slice(), rows.device())?;
                    rows.index_select(&starts, 0)?
                }
                TokenEmbeddings::Padded { tokens, .. } => tokens.narrow(1, 0, 1)?.squeeze(1)?,
            };
            let logits = self.head.forward(&first)?.to_dtype(DType::F32)?;
            let logits: Vec<Vec<f32>> = logits.to_vec2()?;
            for (&i, row) in batch.iter().zip(&logits) {
                for (label, &x) in row.iter().enumerate() {
                    let y = activation.apply(x);
                    if !y.is_finite() {
                        return Err(Error::NonFiniteScore { index: i });
                    }
                    values[i * num_labels + label] = y;
                }
            }
        }
        Ok(Scores { values, num_labels })
    }

    /// The `documents` ranked by their score against `query`, best first (ties in the order
    /// given), the first `top_k` of them (all when `None`; a `top_k` over the count returns
    /// all), as sentence-transformers' `CrossEncoder.rank`.
    ///
    /// # Errors
    /// A model of several labels (a ranking needs one score), `top_k` of 0, and as
    /// [`CrossEncoder::predict`].
    pub fn rank<D: AsRef<str>>(
        &self,
        query: &str,
        documents: &[D],
        top_k: Option<usize>,
    ) -> Result<Vec<Ranked>> {
        self.rank_with(query, documents, top_k, &PredictOptions::default())
    }

    /// [`CrossEncoder::rank`] with options (batch size, another activation).
    ///
    /// # Errors
    /// As [`CrossEncoder::rank`].
    pub fn rank_with<D: AsRef<str>>(
        &self,
        query: &str,
        documents: &[D],
        top_k: Option<usize>,
        options: &PredictOptions,
    ) -> Result<Vec<Ranked>> {
        if self.num_labels() != 1 {
            return Err(Error::Unsupported(format!(
                "ranking with a model of {} labels: a ranking needs one score per pair",
                self.num_labels()
            )));
        }
        if top_k == Some(0) {
            return Err(Error::InvalidArgument("top_k must be at least 1".into()));
        }
        let pairs: Vec<(&str, &str)> = documents.iter().map(|d| (query, d.as_ref())).collect();
        let scores = self.predict_with(&pairs, options)?;
        let mut ranked: Vec<Ranked> = scores
            .as_slice()
            .iter()
            .enumerate()
            .map(|(corpus_id, &score)| Ranked { corpus_id, score })
            .collect();
        ranked.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.corpus_id.cmp(&b.corpus_id))
        });
        ranked.truncate(top_k.unwrap_or(ranked.len()));
        Ok(ranked)
    }

    /// The token ids and segment ids of a pair, as the model reads it (truncated; segments
    /// all 0 for a model without segment embeddings).
    ///
    /// # Errors
    /// A tokenizer failure.
    pub fn tokenize_pair(&self, query: &str, document: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        let enc = self.encode_pair(query, document)?;
        let types = match self.token_types {
            true => enc.get_type_ids().to_vec(),
            false => vec![0; enc.len()],
        };
        Ok((enc.get_ids().to_vec(), types))
    }

    /// Each text through the shortest prefix with the same first `max_length` tokens (a long
    /// document costs what is kept), then the pair's longest-first truncation and template.
    /// Longest-first keeps at most `max_length` tokens of either text, so the prefixes give
    /// the pair the whole texts would.
    fn encode_pair(&self, query: &str, document: &str) -> Result<tokenizers::Encoding> {
        let part = |text: &str| {
            crate::prefix::encode_truncated(
                &self.tokenizer,
                text,
                false,
                self.max_length,
                self.cut_rules.as_ref(),
                false,
            )
            .map(|(enc, _)| enc)
        };
        let (a, b) = (
            part(query).map_err(Error::Tokenizer)?,
            part(document).map_err(Error::Tokenizer)?,
        );
        self.tokenizer
            .post_process(a, Some(b), true)
            .map_err(Error::Tokenizer)
    }
}

/// The Transformer folder of a cross-encoder folder `dir`: the one module `modules.json`
/// lists, or `dir` itself without a `modules.json`.
///
/// # Errors
/// A malformed `modules.json`, or one that lists other modules (not a cross-encoder).
fn transformer_dir(dir: &Path) -> Result<PathBuf> {
    match folder::read_modules(dir)? {
        Some(modules) => match modules.as_slice() {
            [only] if only.class() == "Transformer" => Ok(dir.join(&only.path)),
            _ => Err(Error::Unsupported(format!(
                "{} lists {} module(s): not a cross-encoder (whose folder has one Transformer \
                 module); load a sentence embedding model with SentenceEmbedder",
                dir.join("modules.json").display(),
                modules.len()
            ))),
        },
        None => Ok(dir.to_path_buf()),
    }
}

/// The classification architecture of the cross-encoder folder `dir`, `None` when `dir` does
/// not hold one (its layout, or its `config.json`, says otherwise or cannot be read).
pub(crate) fn architecture_in(dir: &Path) -> Option<String> {
    let transformer = transformer_dir(dir).ok()?;
    let config: serde_json::Value = folder::read_json(&transformer.join("config.json")).ok()?;
    classification_architecture(&config).map(String::from)
}

/// `id2label` in id order, else `num_labels` generic names, else HF's default of 2.
fn label_names(config: &serde_json::Value) -> Vec<String> {
    if let Some(map) = config
        .get("id2label")
        .and_then(serde_json::Value::as_object)
    {
        let mut labels: Vec<(usize, String)> = map
            .iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str()?.to_string())))
            .collect();
        labels.sort();
        if !labels.is_empty() && labels.iter().enumerate().all(|(i, (k, _))| i == *k) {
            return labels.into_iter().map(|(_, v)| v).collect();
        }
    }
    let n = config
        .get("num_labels")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(2) as usize;
    (0..n.max(1)).map(|i| format!("LABEL_{i}")).collect()
}

/// `activation_fn` of `config_sentence_transformers.json` (sentence-transformers 5+) or of
/// `config.json`'s `sentence_transformers` section (earlier), else sigmoid for one label and
/// identity for several.
fn activation(dir: &Path, config: &serde_json::Value, num_labels: usize) -> Result<Activation> {
    let st_config = dir.join("config_sentence_transformers.json");
    let named = if st_config.is_file() {
        let raw: serde_json::Value = folder::read_json(&st_config)?;
        raw.get("activation_fn")
            .and_then(serde_json::Value::as_str)
            .map(String::from)
    } else {
        None
    };
    let named = named.or_else(|| {
        config
            .pointer("/sentence_transformers/activation_fn")
            .and_then(serde_json::Value::as_str)
            .map(String::from)
    });
    match named {
        Some(name) => Activation::from_class_name(&name),
        None if num_labels == 1 => Ok(Activation::Sigmoid),
        None => Ok(Activation::Identity),
    }
}

/// The head's layers from the weights file (names with or without the pre-training prefix for
/// BERT's pooler).
fn load_head(
    vb: VarBuilder<'static>,
    kind: HeadKind,
    hidden: usize,
    num_labels: usize,
    dir: &Path,
) -> Result<Head> {
    let weights = || dir.join("model.safetensors");
    let linear = |names: &[&str], out: usize| -> Result<Linear> {
        let name = names
            .iter()
            .find(|n| vb.contains_tensor(&format!("{n}.weight")))
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "{} has no tensor {}.weight: not the classification head its config names",
                    weights().display(),
                    names[0]
                ))
            })?;
        let load = || -> candle_core::Result<Linear> {
            Ok(Linear::new(
                vb.get((out, hidden), &format!("{name}.weight"))?,
                Some(vb.get(out, &format!("{name}.bias"))?),
            ))
        };
        load().map_err(|source| Error::Weights {
            path: weights(),
            source,
        })
    };
    Ok(match kind {
        HeadKind::Pooler => Head::Pooler {
            pooler: linear(&["bert.pooler.dense", "pooler.dense"], hidden)?,
            classifier: linear(&["classifier"], num_labels)?,
        },
        HeadKind::Dense => Head::Dense {
            dense: linear(&["classifier.dense"], hidden)?,
            out_proj: linear(&["classifier.out_proj"], num_labels)?,
        },
        HeadKind::PreClassifier => Head::PreClassifier {
            pre: linear(&["pre_classifier"], hidden)?,
            classifier: linear(&["classifier"], num_labels)?,
        },
    })
}
