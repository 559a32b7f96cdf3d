//! Siamese fine-tuning of sentence-transformers models in pure Rust (candle autograd, CPU).
//!
//! One BERT encoder is shared by both sides of every pair ("siamese"); the objectives are those
//! of the Sentence-BERT paper and of in-batch-negative retrieval training:
//!
//! * [`Objective::Cosine`]: regression, MSE between cos(u, v) and the gold score scaled to
//!   [0, 1] (sentence-transformers' `CosineSimilarityLoss`);
//! * [`Objective::Softmax`]: classification, `softmax(W · concat(u, v, …))` with cross-entropy
//!   (`SoftmaxLoss`), the concatenation configurable as in the paper's Table 6;
//! * [`Objective::InBatchNegatives`]: every other positive of the batch is a negative, scaled
//!   cosine and cross-entropy (`MultipleNegativesRankingLoss`), optionally with self-adversarial
//!   re-weighting of the negatives.
//!
//! [`Trainer`] runs AdamW (no decay on biases and LayerNorm), linear warm-up then decay,
//! gradient-norm clipping, dropout in training mode, a seeded (or replayed) batch order, and
//! saves checkpoints in the sentence-transformers folder format, atomically.
//!
//! # Speed on the CPU
//!
//! On the CPU in f32 the encoder's LayerNorm, GELU, attention softmax and dropout run as fused
//! ops with hand-written backward passes, and AdamW updates the weights in place in one parallel
//! pass. A step still allocates and frees activation buffers of a few MB; with glibc's default
//! allocator each of those is `mmap`ed and page-faulted in again on every step. Applications
//! should keep freed memory in the heap, as the `sbert` binary does at start-up
//! (`mallopt(M_MMAP_THRESHOLD, i32::MAX)` and `mallopt(M_TRIM_THRESHOLD, i32::MAX)`), or set
//! `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=2147483647`:
//! measured on `sbert train --loss cosine`, 13.9 → 22.1 pairs/s.
#![warn(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]

mod data;
mod model;
mod objective;
mod optim;
mod trainer;

pub use data::{
    entailment_pairs, read_nli, read_pairs, read_scored_pairs, NliExample, NliLabel, PairExample,
    ScoredPair,
};
pub use model::TrainableModel;
pub use objective::{Concat, ConcatPart, Objective};
pub use trainer::{DevSet, StepLog, TrainConfig, TrainData, Trainer, TrainingReport};

use std::path::PathBuf;

/// Errors of training.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A malformed training or evaluation row.
    #[error("{}: line {line}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The loss became NaN or infinite; the last good checkpoint (if any) is untouched.
    #[error("loss is {loss} at step {step}: training stopped (lower the learning rate?)")]
    NonFiniteLoss {
        /// The optimizer step.
        step: usize,
        /// The value.
        loss: f32,
    },
    /// A setting outside its domain.
    #[error("invalid training setting: {0}")]
    Invalid(String),
    /// Model loading or a tensor op failed.
    #[error(transparent)]
    Model(#[from] sbert::Error),
    /// Evaluation failed.
    #[error(transparent)]
    Eval(#[from] sbert_eval::EvalError),
}

impl From<candle_core::Error> for TrainError {
    fn from(e: candle_core::Error) -> Self {
        TrainError::Model(e.into())
    }
}

/// `Result` with [`TrainError`].
pub type Result<T> = std::result::Result<T, TrainError>;
