//! Transformer encoders in [candle](https://github.com/huggingface/candle): BERT and the
//! architectures that share its layer, and ModernBERT.
//!
//! `sbert-bert` loads the Hugging Face `config.json` + `model.safetensors` of a checkpoint and
//! turns a batch of token ids into contextual token embeddings `(batch, seq, hidden)`. It is
//! pure tensor code: no file I/O, no tokenization, no pooling (those live in `sbert` and
//! `sbert-pooling`).
//!
//! * [`BertModel`] runs every [`Architecture`]: BERT, RoBERTa / XLM-RoBERTa / CamemBERT,
//!   DistilBERT and MPNet (relative attention bias), chosen by `model_type`.
//!   [`ModernBertModel`] runs ModernBERT (rotary positions, gated GELU, sliding-window
//!   attention) over padded batches.
//! * Checkpoints with or without the pre-training prefix load the same way
//!   (`bert.embeddings.word_embeddings.weight` or `embeddings.word_embeddings.weight`).
//! * A missing tensor or a tensor of the wrong shape is an error that names the tensor and both
//!   shapes (candle's `VarBuilder` reports them).
//! * The weights travel by name ([`BertWeights`]: embeddings, then per layer query, key, value,
//!   attention output, LayerNorms, feed-forward), one layout that also serves the packed pass's
//!   host view and its gradients.
//! * [`BertModel::forward`] runs the candle graph over a padded batch on any device; with
//!   [`Mode::train`] it is differentiable through candle's autograd, with seeded dropout.
//! * [`BertModel::forward_packed`] is the fast CPU f32 pass: sequences back to back without
//!   padding, fused kernels, attention per sequence. [`BertModel::forward_train`] is the same
//!   pass recording its activations, returned as one differentiable tensor whose hand-written
//!   backward pass writes every weight's gradient into a [`GradientSink`] (drained into
//!   candle's `GradStore` after `loss.backward()`); checked against the graph gradient by
//!   gradient.
//! * [`BertModel::quantize`] with [`Quantization::Int8`] makes the packed pass multiply by
//!   int8 weights (per output channel) and int8 activations (per row), on AVX-512 VNNI where
//!   the CPU has it.
//! * [`BertModel::forward_with_attentions`] also returns the attention probabilities of every
//!   layer and head, `(batch, heads, seq, seq)` each.
//! * The [`Encoder`] trait is what the sentence pipeline needs of an encoder: one
//!   [`Encoder::forward`] over a [`TokenBatch`] (sequences back to back, no padding); an
//!   encoder that needs padding pads inside. [`BertModel`] and [`ModernBertModel`] implement it.
//!
//! # Example
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::VarBuilder;
//! use sbert_bert::{BertConfig, BertModel};
//!
//! # fn main() -> candle_core::Result<()> {
//! let config = BertConfig { vocab_size: 200, hidden_size: 16, num_hidden_layers: 2,
//!     num_attention_heads: 4, intermediate_size: 32, ..BertConfig::default() };
//! // Real code loads weights with a `VarBuilder` over model.safetensors; zeros suffice here.
//! let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
//! let model = BertModel::load(vb, &config)?;
//! let ids = Tensor::new(&[[101u32, 7, 8, 102], [101, 9, 102, 0]], &Device::Cpu)?;
//! let mask = Tensor::new(&[[1u32, 1, 1, 1], [1, 1, 1, 0]], &Device::Cpu)?;
//! let hidden = model.forward(&ids, None, &mask)?;
//! assert_eq!(hidden.dims(), &[2, 4, 16]);
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! * `cuda`: forwards to `candle-core/cuda` and `candle-nn/cuda`.
//! * `metal`: forwards to `candle-core/metal` and `candle-nn/metal`.
#![warn(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]

mod config;
mod cpu;
mod encoder;
mod graph;
mod model;
mod modernbert;
mod packed;
mod params;
mod quantization;
mod relative;

pub use config::{Architecture, BertConfig, HiddenAct};
pub use encoder::{Encoder, PaddedTokens, TokenBatch, TokenEmbeddings};
pub use graph::{BertOutput, Mode};
pub use model::BertModel;
pub use modernbert::{ModernBertConfig, ModernBertModel, RopeParameters, RopeTheta};
pub use packed::training::GradientSink;
pub use params::{BertParams, BertWeights, EmbeddingParams, LayerParams, Linear, Norm};
pub use quantization::Quantization;
