//! [`TextEmbedder`]: anything that turns texts into sentence embeddings, so that evaluation
//! and search take a loaded model and a model in training alike.

use candle_core::Tensor;
use sbert_pooling::Pooling;

use crate::error::{Error, Result};

/// Something that embeds texts: a loaded [`crate::SentenceEmbedder`], or a model being
/// fine-tuned (`sbert_train::TrainableModel`).
pub trait TextEmbedder: Send + Sync {
    /// Embeds `texts`: `(n, dim)` in input order, as the model is configured (its pooling,
    /// Dense and Normalize modules). An empty slice gives `(0, dim)`.
    ///
    /// # Errors
    /// When tokenization or a tensor op fails, or an embedding is not finite.
    fn embed_texts(&self, texts: &[&str]) -> Result<Tensor>;

    /// The pooling [`TextEmbedder::embed_texts`] applies.
    fn pooling(&self) -> &Pooling;

    /// Embeds `texts` once and pools the token embeddings every way in `poolings`: one
    /// `(n, dim)` tensor per pooling, in `poolings` order. The default serves only the model's
    /// own pooling.
    ///
    /// # Errors
    /// As [`TextEmbedder::embed_texts`]; [`Error::Unsupported`] for a pooling this model
    /// cannot apply.
    fn embed_texts_pooled(&self, texts: &[&str], poolings: &[Pooling]) -> Result<Vec<Tensor>> {
        if let Some(other) = poolings.iter().find(|p| *p != self.pooling()) {
            return Err(Error::Unsupported(format!(
                "this model pools only '{}', not '{other}'",
                self.pooling()
            )));
        }
        let embeddings = self.embed_texts(texts)?;
        Ok(vec![embeddings; poolings.len()])
    }
}

impl TextEmbedder for crate::SentenceEmbedder {
    fn embed_texts(&self, texts: &[&str]) -> Result<Tensor> {
        self.encode_tensor(texts, &crate::EncodeOptions::default())
    }

    fn pooling(&self) -> &Pooling {
        crate::SentenceEmbedder::pooling(self)
    }

    fn embed_texts_pooled(&self, texts: &[&str], poolings: &[Pooling]) -> Result<Vec<Tensor>> {
        self.embed_poolings(texts, poolings)
    }
}
