//! Siamese fine-tuning of sentence-transformers models in pure Rust (candle, CPU).
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
//! saves checkpoints in the sentence-transformers folder format, atomically. Where a run may
//! write is decided before it starts ([`OutputDir`]): a new or empty folder, or a checkpoint an
//! earlier run wrote; any other folder only when the caller says `overwrite`.
//!
//! # Device and dtype
//!
//! Training runs on the CPU in f32, by construction: [`TrainableModel::load`] takes no device
//! or dtype, loads the encoder weights as f32 `Var`s on the CPU, and runs the packed training
//! pass with its hand-written backward pass there (the trainer's classifier head and optimizer
//! state live there too). GPU training would need a second backward path; inference on a GPU is
//! `sbert::SentenceEmbedder` with a CUDA or Metal device.
//!
//! # Example
//!
//! A few steps of the regression objective on the committed two-layer test model (real runs
//! load `models/all-MiniLM-L6-v2`, see `examples/train.rs`):
//!
//! ```
//! use sbert_train::{Objective, StsPair, TrainConfig, TrainData, TrainableModel, Trainer};
//!
//! # fn main() -> Result<(), sbert_train::TrainError> {
//! let model = TrainableModel::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/tiny"))?;
//! let pair = |a: &str, b: &str, score| StsPair { score, sentence1: a.into(), sentence2: b.into() };
//! let data = TrainData::Scored(vec![
//!     pair("a man plays a guitar", "a man is playing guitar", 4.8),
//!     pair("a cat sleeps", "the stock market fell", 0.2),
//!     pair("two dogs run", "dogs are running", 4.0),
//!     pair("a woman cooks", "a child reads a book", 0.8),
//! ]);
//! let config = TrainConfig { batch_size: 2, epochs: 2, lr: 1e-3, ..TrainConfig::default() };
//! let trainer = Trainer::new(config, Objective::Cosine { max_score: 5.0 }, model.dim())?;
//! let report = trainer.train(&model, &data, None, &mut |_| {})?;
//! assert_eq!(report.steps.len(), 4);
//! assert!(report.steps.iter().all(|s| s.loss.is_finite()));
//! # Ok(())
//! # }
//! ```
//!
//! # Device and speed
//!
//! Training runs on the CPU in f32 ([`TrainableModel`] loads there). A training batch is one
//! packed encoder pass with a hand-written backward pass
//! ([`sbert::bert::BertModel::forward_train`]): no padding, no per-op autograd, weight
//! gradients written in place; AdamW then updates the weights in place in one parallel pass.
//! On all-MiniLM-L6-v2 at 2 threads that trains at about twice the speed of Python
//! sentence-transformers on the same machine (README). A step still allocates and frees
//! activation buffers of a few MB; with glibc's default allocator each of those is `mmap`ed
//! and page-faulted in again on every step. Applications should keep freed memory in the
//! heap, as the `sbert` binary does at start-up (`mallopt(M_MMAP_THRESHOLD, i32::MAX)` and
//! `mallopt(M_TRIM_THRESHOLD, i32::MAX)`), or set
//! `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=2147483647`.
#![warn(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]

mod checkpoint;
mod data;
mod mine;
mod model;
mod objective;
mod optim;
mod state;
mod trainer;

pub use checkpoint::{OutputDir, MARKER as CHECKPOINT_MARKER};
pub use data::{
    entailment_pairs, read_nli, read_pairs, read_scored_pairs, NliExample, NliLabel, PairExample,
    StsPair,
};
pub use mine::{mine_hard_negatives, mine_hard_negatives_embedded, MineOptions, Mined, Sampling};
pub use model::TrainableModel;
pub use objective::{Concat, ConcatPart, Layout, Objective};
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
    #[error("{}", path.display())]
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
    /// The output folder could not be written, or may not be replaced.
    #[error(transparent)]
    Output(#[from] sbert_io::Error),
}

impl From<candle_core::Error> for TrainError {
    fn from(e: candle_core::Error) -> Self {
        TrainError::Model(e.into())
    }
}

/// `Result` with [`TrainError`].
pub type Result<T> = std::result::Result<T, TrainError>;
