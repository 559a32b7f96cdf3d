//! The one error type of the `sbert` crate.

use std::path::PathBuf;

/// Everything that can go wrong loading a model or embedding text.
///
/// The underlying cause stays reachable through [`std::error::Error::source`]; print the whole
/// chain (`{:#}` with anyhow) to see, for instance, which tensor had which shape.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file the model needs does not exist.
    #[error("model file {} is missing", .0.display())]
    MissingFile(PathBuf),
    /// A file exists but could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A weight of the model is NaN, infinite, or so large (beyond ±1e6) that it can only be
    /// corruption: such a model computes NaN, or one meaningless vector for every input.
    #[error("{}: tensor {tensor} holds {count} value(s) that are NaN, infinite or beyond ±1e6 (first at flat index {first}: {value}); the file is corrupt", path.display())]
    InvalidWeights {
        /// The safetensors file.
        path: PathBuf,
        /// The tensor's name in the file.
        tensor: String,
        /// How many of its values are out of range.
        count: usize,
        /// Flat index of the first.
        first: usize,
        /// Its value.
        value: f32,
    },
    /// The embedding of an input came out NaN or infinite (an overflow inside the model):
    /// an error instead of a meaningless vector.
    #[error("the embedding of input {index} (0-based) is not finite: the model overflowed on it")]
    NonFiniteEmbedding {
        /// The input's position in the slice passed in.
        index: usize,
    },
    /// The score of a pair came out NaN or infinite (an overflow inside the model).
    #[error("the score of pair {index} (0-based) is not finite: the model overflowed on it")]
    NonFiniteScore {
        /// The pair's position in the slice passed in.
        index: usize,
    },
    /// A JSON file is malformed or lacks a required key.
    #[error("cannot parse {}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A safetensors file is corrupt or truncated, or its tensors do not fit the config.
    #[error("cannot load weights from {}", path.display())]
    Weights {
        /// The safetensors file.
        path: PathBuf,
        /// The tensor-level cause (names the tensor and the shapes).
        #[source]
        source: candle_core::Error,
    },
    /// `tokenizer.json` could not be loaded.
    #[error("cannot load tokenizer {}", path.display())]
    TokenizerLoad {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: tokenizers::Error,
    },
    /// Tokenizing a text failed.
    #[error("tokenization failed")]
    Tokenizer(#[source] tokenizers::Error),
    /// A model id that is neither a folder nor in the Hugging Face hub cache.
    #[error("model {0:?} not found: it is not a folder{hub}{hint}", hub = if cfg!(feature = "hf-hub") { " and not in the Hugging Face hub cache" } else { "" }, hint = if .0.contains('/') { "" } else { " (a hub id is owner/name, as sentence-transformers/all-MiniLM-L6-v2; models/fetch.sh installs all-MiniLM-L6-v2 into models/)" })]
    ModelNotFound(String),
    /// The model folder describes something this crate does not run.
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// An argument outside its domain (batch size 0, mismatched dimensions, …).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Downloading from the Hugging Face hub failed.
    #[cfg(feature = "hf-hub-online")]
    #[error("downloading {file} of {model} from the Hugging Face hub failed")]
    Hub {
        /// The model id.
        model: String,
        /// The file.
        file: String,
        /// Why.
        #[source]
        source: hf_hub::api::sync::ApiError,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A pooling mode or config is invalid.
    #[error(transparent)]
    Pooling(#[from] sbert_pooling::PoolingError),
    /// A search, mining, clustering or index operation of [`crate::search`] failed.
    #[error(transparent)]
    Search(#[from] sbert_search::SearchError),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
