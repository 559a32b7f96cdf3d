//! [`EmbedderBuilder`]: the knobs of a [`crate::SentenceEmbedder`], each with
//! sentence-transformers'
//! default.

use std::path::PathBuf;

use candle_core::{DType, Device};
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
        }
    }

    /// The device to run on. Default: `Device::Cpu`.
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
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
    /// `sentence_bert_config.json`, capped at the encoder's `max_position_embeddings`.
    pub fn max_seq_length(mut self, max_seq_length: usize) -> Self {
        self.max_seq_length = Some(max_seq_length);
        self
    }

    /// The Hugging Face hub cache to resolve `owner/name` ids in. Default: `$HF_HUB_CACHE`,
    /// else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
    pub fn hf_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.hf_cache = Some(dir.into());
        self
    }
}
