//! Which kind of model a folder holds, read from `modules.json` and `config.json`'s
//! `architectures`, so that a program loads each with its own type.

use crate::error::Result;

/// The kinds of sentence-transformers model `sbert` loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelKind {
    /// A bi-encoder or static model: one vector per text ([`crate::SentenceEmbedder`]).
    Embedding,
    /// A cross-encoder: one score per pair of texts ([`crate::CrossEncoder`]).
    CrossEncoder,
    /// A SPLADE sparse encoder: one weight per vocabulary word ([`crate::SparseEncoder`]).
    Sparse,
}

impl ModelKind {
    /// The kind of `model` (a folder, or a hub id in the local cache): a `SpladePooling`
    /// module or a bare `*ForMaskedLM` folder is sparse, a `*ForSequenceClassification`
    /// without a Pooling module a cross-encoder, anything else an embedding model (whose
    /// loader then says what is wrong with it, if anything).
    ///
    /// # Errors
    /// [`crate::Error::ModelNotFound`] when `model` is neither a folder nor a cached hub id.
    pub fn of(model: &str) -> Result<Self> {
        let dir = crate::hub::resolve(model, None)?;
        Ok(if crate::sparse::holds_sparse_encoder(&dir) {
            Self::Sparse
        } else if crate::cross_encoder::architecture_in(&dir).is_some() {
            Self::CrossEncoder
        } else {
            Self::Embedding
        })
    }

    /// `embedding`, `cross-encoder` or `sparse`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Embedding => "embedding",
            Self::CrossEncoder => "cross-encoder",
            Self::Sparse => "sparse",
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
