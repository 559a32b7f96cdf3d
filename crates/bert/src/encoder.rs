//! [`Encoder`]: what the sentence pipeline needs of a transformer encoder, and the batch it
//! reads ([`TokenBatch`]) and returns ([`TokenEmbeddings`]).

use candle_core::{DType, Device, Result, Tensor};

use crate::model::BertModel;

/// Token sequences stored back to back: the one input of an [`Encoder`].
///
/// `input_ids` holds every sequence's ids concatenated (special tokens included, no padding)
/// and `lengths` the length of each; `token_type_ids`, when given, runs parallel to
/// `input_ids` (the segment of each token: 0 for the first text of a pair, 1 for the second),
/// and `None` means all 0.
#[derive(Debug, Clone, Copy)]
pub struct TokenBatch<'a> {
    /// The ids of every sequence, back to back.
    pub input_ids: &'a [u32],
    /// The segment of each token, parallel to `input_ids`; `None`: all 0.
    pub token_type_ids: Option<&'a [u32]>,
    /// The length of each sequence (their sum is `input_ids.len()`).
    pub lengths: &'a [usize],
}

impl<'a> TokenBatch<'a> {
    /// Sequences of segment 0 only (one text each).
    pub fn new(input_ids: &'a [u32], lengths: &'a [usize]) -> Self {
        Self {
            input_ids,
            token_type_ids: None,
            lengths,
        }
    }

    /// The batch right-padded with `pad_id` to its longest sequence, on `device`: input ids,
    /// token types and attention mask (1 real, 0 padding), each `(batch, longest)` u32. What an
    /// encoder that runs over padded batches builds from its input.
    ///
    /// # Errors
    /// When the lengths do not partition the ids (or the token types), or on an allocation
    /// failure.
    pub fn padded(&self, pad_id: u32, device: &Device) -> Result<PaddedTokens> {
        self.check()?;
        let b = self.lengths.len();
        let t = self.lengths.iter().copied().max().unwrap_or(0);
        let mut ids = vec![pad_id; b * t];
        let mut types = vec![0u32; b * t];
        let mut mask = vec![0u32; b * t];
        let mut start = 0;
        for (row, &len) in self.lengths.iter().enumerate() {
            let at = row * t;
            ids[at..at + len].copy_from_slice(&self.input_ids[start..start + len]);
            if let Some(given) = self.token_type_ids {
                types[at..at + len].copy_from_slice(&given[start..start + len]);
            }
            mask[at..at + len].fill(1);
            start += len;
        }
        Ok(PaddedTokens {
            input_ids: Tensor::from_vec(ids, (b, t), device)?,
            token_type_ids: Tensor::from_vec(types, (b, t), device)?,
            attention_mask: Tensor::from_vec(mask, (b, t), device)?,
        })
    }

    /// Checks that `lengths` partitions `input_ids` (and `token_type_ids`, when given).
    ///
    /// # Errors
    /// When it does not.
    pub fn check(&self) -> Result<()> {
        let total = self
            .lengths
            .iter()
            .try_fold(0usize, |a, &l| a.checked_add(l));
        if total != Some(self.input_ids.len()) {
            candle_core::bail!(
                "lengths {:?} do not partition {} token ids",
                self.lengths,
                self.input_ids.len()
            );
        }
        if let Some(types) = self.token_type_ids {
            if types.len() != self.input_ids.len() {
                candle_core::bail!(
                    "{} token types for {} token ids",
                    types.len(),
                    self.input_ids.len()
                );
            }
        }
        Ok(())
    }
}

/// A [`TokenBatch`] right-padded to its longest sequence (see [`TokenBatch::padded`]).
#[derive(Debug, Clone)]
pub struct PaddedTokens {
    /// `(batch, longest)` token ids, padding included.
    pub input_ids: Tensor,
    /// `(batch, longest)` segments (0 at padding).
    pub token_type_ids: Tensor,
    /// `(batch, longest)`: 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
}

/// An encoder's output for a [`TokenBatch`]: one vector per token, in the layout the encoder
/// computed it in (pooling reads both).
#[derive(Debug, Clone)]
pub enum TokenEmbeddings {
    /// `(Σ lengths, hidden)`: the sequences' tokens back to back, as they came in.
    Packed(Tensor),
    /// `(batch, longest, hidden)` with its `(batch, longest)` attention mask (1 real, 0
    /// padding).
    Padded {
        /// The token vectors, padding rows included.
        tokens: Tensor,
        /// Which rows are real tokens.
        mask: Tensor,
    },
}

/// A transformer encoder as the sentence pipeline sees it: token ids in, one vector per token
/// out. [`BertModel`] (the BERT family) and [`crate::ModernBertModel`] implement it; another
/// architecture plugs into the pipeline by implementing it too.
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

    /// The token embeddings of `batch`. An encoder that runs over padded batches pads inside
    /// ([`TokenBatch::padded`]) and says so by returning [`TokenEmbeddings::Padded`].
    ///
    /// # Errors
    /// On a batch whose lengths do not partition its ids, an empty sequence, a sequence
    /// longer than [`Encoder::max_positions`] or a token id outside the vocabulary.
    fn forward(&self, batch: TokenBatch<'_>) -> Result<TokenEmbeddings>;
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

    /// The packed pass on the CPU in f32 ([`BertModel::forward_packed_types`]); the candle
    /// graph over the padded batch otherwise.
    fn forward(&self, batch: TokenBatch<'_>) -> Result<TokenEmbeddings> {
        if self.supports_packed() {
            let rows =
                self.forward_packed_types(batch.input_ids, batch.token_type_ids, batch.lengths)?;
            return Ok(TokenEmbeddings::Packed(rows));
        }
        if batch.lengths.is_empty() || batch.lengths.contains(&0) {
            candle_core::bail!("a batch needs one or more non-empty sequences");
        }
        let padded = batch.padded(self.pad_token_id(), self.device())?;
        let tokens = BertModel::forward(
            self,
            &padded.input_ids,
            Some(&padded.token_type_ids),
            &padded.attention_mask,
        )?;
        Ok(TokenEmbeddings::Padded {
            tokens,
            mask: padded.attention_mask,
        })
    }
}
