//! A BERT encoder in [candle](https://github.com/huggingface/candle).
//!
//! `sbert-bert` loads the Hugging Face `config.json` + `model.safetensors` of a BERT checkpoint
//! and turns a batch of token ids into contextual token embeddings `(batch, seq, hidden)`. It is
//! pure tensor code: no file I/O, no tokenization, no pooling (those live in `sbert` and
//! `sbert-pooling`).
//!
//! * Checkpoints with or without the `bert.` prefix load the same way
//!   (`bert.embeddings.word_embeddings.weight` or `embeddings.word_embeddings.weight`).
//! * A missing tensor or a tensor of the wrong shape is an error that names the tensor and both
//!   shapes (candle's `VarBuilder` reports them).
//! * The forward pass is differentiable when [`Mode::train`] is set, with dropout active, so the
//!   same model can be fine-tuned: on the CPU in f32 LayerNorm, GELU, the attention softmax and
//!   dropout are fused ops with hand-written backward passes (dropout masks replay from
//!   [`Mode::dropout_seed`]); elsewhere they are composite candle ops. Inference uses fused
//!   kernels and no dropout.
//! * [`BertModel::forward_train`] is the fast training pass on the CPU in f32: sequences
//!   packed back to back without padding, activations kept per layer, and a hand-written
//!   backward pass that writes every weight's gradient into a [`GradientSink`] (drained into
//!   candle's `GradStore` after `loss.backward()`). Same arithmetic as the graph above,
//!   checked against it gradient by gradient; about three times faster.
//! * [`BertModel::forward_with_attentions`] also returns the attention probabilities of every
//!   layer and head, `(batch, heads, seq, seq)` each.
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
mod grad_ops;
mod kernels;
mod matmul;
mod model;
mod training;

pub use config::{BertConfig, HiddenAct};
pub use model::{BertModel, BertOutput, Mode};
pub use training::GradientSink;
