//! [`EmbedderBuilder`]: the knobs of a [`crate::SentenceEmbedder`], each with
//! sentence-transformers'
//! default.

use std::path::PathBuf;

use candle_core::{DType, Device};
use sbert_bert::Quantization;
use sbert_pooling::Pooling;

/// Default number of texts per forward pass, as in sentence-transformers.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// Builds a [`crate::SentenceEmbedder`] ([`EmbedderBuilder::build`]); every setter states its
/// default.
#[derive(Debug, Clone)]
#[must_use]
pub struct EmbedderBuilder {
    pub(crate) model: String,
    pub(crate) device: Device,
    pub(crate) dtype: DType,
    pub(crate) batch_size: usize,
    pub(crate) max_batch_tokens: Option<usize>,
    pub(crate) pooling: Option<Pooling>,
    pub(crate) normalize: Option<bool>,
    pub(crate) max_seq_length: Option<usize>,
    pub(crate) hf_cache: Option<PathBuf>,
    pub(crate) prompt: Option<PromptChoice>,
    pub(crate) quantization: Quantization,
    pub(crate) threads: Option<usize>,
}

/// The prompt a builder was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PromptChoice {
    /// A prompt of `config_sentence_transformers.json`, by name.
    Named(String),
    /// A prompt's text.
    Text(String),
}

impl EmbedderBuilder {
    pub(crate) fn new(model: &str) -> Self {
        Self {
            model: model.to_string(),
            device: Device::Cpu,
            dtype: DType::F32,
            batch_size: DEFAULT_BATCH_SIZE,
            max_batch_tokens: None,
            pooling: None,
            normalize: None,
            max_seq_length: None,
            hf_cache: None,
            prompt: None,
            quantization: Quantization::None,
            threads: None,
        }
    }

    /// The device to run on. Default: `Device::Cpu`.
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// How the encoder's dense products compute: [`Quantization::Int8`] multiplies by int8
    /// weights quantized at load (CPU, f32 models of the BERT family; faster, embeddings close
    /// to f32's but not equal). Default: [`Quantization::None`].
    pub fn quantize(mut self, quantization: Quantization) -> Self {
        self.quantization = quantization;
        self
    }

    /// The dtype of the weights and computation. Default: `DType::F32`.
    pub fn dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }

    /// Texts per forward pass. Default: 32, as sentence-transformers. 0 is rejected by `build`.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Forms batches under a token budget instead of a fixed count (TEI's `max_batch_tokens`):
    /// texts, longest first, join a batch while `texts × longest ≤ max_batch_tokens` (a text
    /// longer than the budget gets a batch of its own). Default: `None` (batches of
    /// [`EmbedderBuilder::batch_size`]).
    pub fn max_batch_tokens(mut self, max_batch_tokens: Option<usize>) -> Self {
        self.max_batch_tokens = max_batch_tokens;
        self
    }

    /// Replaces the folder's pooling (`1_Pooling/config.json`). Default: the folder's.
    pub fn pooling(mut self, pooling: impl Into<Pooling>) -> Self {
        self.pooling = Some(pooling.into());
        self
    }

    /// Forces L2 normalization on (`true`) or off (`false`). Default: as `modules.json` says
    /// (normalized when it lists a `Normalize` module).
    pub fn normalize(mut self, normalize: bool) -> Self {
        self.normalize = Some(normalize);
        self
    }

    /// Longest input in tokens, special tokens included. Default: `max_seq_length` of
    /// `sentence_bert_config.json` (or, as sentence-transformers 6 saves it, `model_max_length`
    /// of `tokenizer_config.json`), capped at the encoder's position limit.
    pub fn max_seq_length(mut self, max_seq_length: usize) -> Self {
        self.max_seq_length = Some(max_seq_length);
        self
    }

    /// Puts the prompt `name` of the model's `config_sentence_transformers.json` before every
    /// text (sentence-transformers' `encode(prompt_name=…)`); `build` fails on a name the model
    /// does not define. Default: the model's `default_prompt_name`, if any.
    pub fn prompt_name(mut self, name: impl Into<String>) -> Self {
        self.prompt = Some(PromptChoice::Named(name.into()));
        self
    }

    /// Puts `text` before every text (sentence-transformers' `encode(prompt=…)`); `""` turns
    /// the model's default prompt off. Default: the model's `default_prompt_name`, if any.
    pub fn prompt(mut self, text: impl Into<String>) -> Self {
        self.prompt = Some(PromptChoice::Text(text.into()));
        self
    }

    /// Runs the model's CPU work (and [`crate::SentenceEmbedder::install`]ed work such as
    /// search) on a pool of its own with `threads` threads, instead of rayon's global pool
    /// (default: the global pool, one thread per core, or `RAYON_NUM_THREADS`). `0` is
    /// refused by [`EmbedderBuilder::build`].
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// The Hugging Face hub cache to resolve `owner/name` ids in. Default: `$HF_HUB_CACHE`,
    /// else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
    pub fn hf_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.hf_cache = Some(dir.into());
        self
    }
}
