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

    /// Floating-point operations of one pass over a sequence of `len` tokens (a multiply-add
    /// counts 2): the projections, the feed-forward block and the attention products.
    fn flops(&self, len: usize) -> f64;

    /// The encoder as a [`BertModel`] when it is one (training and the packed pass's tools
    /// need its weights by name).
    fn as_bert(&self) -> Option<&BertModel> {
        None
    }
}

impl Encoder for BertModel {
    fn hidden_size(&self) -> usize {
        self.config().hidden_size
    }

    fn max_positions(&self) -> usize {
        self.config().max_sequence_length()
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

    fn flops(&self, len: usize) -> f64 {
        let c = self.config();
        let (l, h, i) = (len as f64, c.hidden_size as f64, c.intermediate_size as f64);
        // q, k, v and the attention output (4 h × h), the feed-forward pair (2 h × i), and
        // the scores and the context (2 l × h).
        let per_layer = 8.0 * l * h * h + 4.0 * l * h * i + 4.0 * l * l * h;
        c.num_hidden_layers as f64 * per_layer
    }

    fn as_bert(&self) -> Option<&BertModel> {
        Some(self)
    }
}
