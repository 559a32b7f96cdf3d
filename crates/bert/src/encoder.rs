//! [`Encoder`]: what the sentence pipeline needs of a transformer encoder.

use candle_core::{DType, Device, Result, Tensor};

use crate::model::BertModel;

/// A transformer encoder as the sentence pipeline sees it: token ids in, one vector per token
/// out. [`BertModel`] implements it; another architecture plugs into the pipeline by
/// implementing it too.
pub trait Encoder: std::fmt::Debug + Send + Sync {
    /// Width of the token embeddings.
    fn hidden_size(&self) -> usize;

    /// The longest sequence the encoder accepts, in tokens.
    fn max_positions(&self) -> usize;

    /// Size of the vocabulary: every token id is below it.
    fn vocab_size(&self) -> usize;

    /// The token id that pads a batch.
    fn pad_token_id(&self) -> u32;

    /// The device of the weights and outputs.
    fn device(&self) -> &Device;

    /// The dtype of the outputs.
    fn dtype(&self) -> DType;

    /// Whether [`Encoder::forward_packed`] is available.
    fn supports_packed(&self) -> bool;

    /// Sequences stored back to back (`input_ids` concatenated, `lengths` of each) to token
    /// embeddings `(Σ lengths, hidden)`, sequence after sequence.
    ///
    /// # Errors
    /// On inputs that do not fit the model, or when the packed pass is not available.
    fn forward_packed(&self, input_ids: &[u32], lengths: &[usize]) -> Result<Tensor>;

    /// A padded batch `(batch, seq)` with its attention mask (1 real, 0 padding) to token
    /// embeddings `(batch, seq, hidden)`.
    ///
    /// # Errors
    /// On shapes that do not agree or inputs that do not fit the model.
    fn forward_padded(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: &Tensor,
    ) -> Result<Tensor>;
}

impl Encoder for BertModel {
    fn hidden_size(&self) -> usize {
        self.config().hidden_size
    }

    fn max_positions(&self) -> usize {
        self.config().max_position_embeddings
    }

    fn vocab_size(&self) -> usize {
        self.config().vocab_size
    }

    fn pad_token_id(&self) -> u32 {
        self.config().pad_token_id as u32
    }

    fn device(&self) -> &Device {
        BertModel::device(self)
    }

    fn dtype(&self) -> DType {
        BertModel::dtype(self)
    }

    fn supports_packed(&self) -> bool {
        BertModel::supports_packed(self)
    }

    fn forward_packed(&self, input_ids: &[u32], lengths: &[usize]) -> Result<Tensor> {
        BertModel::forward_packed(self, input_ids, lengths)
    }

    fn forward_padded(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: &Tensor,
    ) -> Result<Tensor> {
        self.forward(input_ids, token_type_ids, attention_mask)
    }
}
