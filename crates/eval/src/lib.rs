//! STS evaluation for `sbert`: how well cosine similarity of sentence embeddings follows human
//! similarity judgements, as the Sentence-BERT paper measures it.
//!
//! * [`StsDataset::read`] reads STS pair files (the `score<TAB>sentence1<TAB>sentence2` TSV of
//!   `shared/data`, or the original STS Benchmark `sts-*.csv`);
//! * [`evaluate`] encodes each distinct sentence once, pools it every requested way, and reports
//!   Spearman's ρ and Pearson's r (×100) between the gold scores and cosine, dot, Euclidean and
//!   Manhattan similarity, as sentence-transformers' `EmbeddingSimilarityEvaluator`;
//! * [`report`] renders the paper's layouts: Table 1 (a column per STS set, with the average)
//!   and Table 6 (a row per pooling), and an SVG bar chart.
//!
//! Spearman uses average ranks for ties, exactly as `scipy.stats.spearmanr`.
//!
//! # Example
//!
//! ```no_run
//! use sbert::{Device, Pooling, PoolingMode, SentenceEmbedder};
//! use sbert_eval::{evaluate, report, StsDataset};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let model = SentenceEmbedder::from_dir("models/all-MiniLM-L6-v2", &Device::Cpu)?;
//! let test = StsDataset::read("../shared/data/stsb/test.tsv", Some("STSb-test"))?;
//! let poolings: Vec<Pooling> =
//!     [PoolingMode::Mean, PoolingMode::Max, PoolingMode::Cls].map(Pooling::single).to_vec();
//! let run = evaluate(&model, &[test], &poolings, &mut |_, _| {})?;
//! print!("{}", report::scores_table(&run.scores, report::TableStyle::Plain));
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]

mod classification;
mod data;
mod evaluate;
pub mod report;
mod retrieval;
pub mod stats;

use std::path::PathBuf;

pub use classification::{binary_classification, binary_scores, triplet_accuracy, BinaryScores};
pub use data::{
    is_nli_row, read_nli, read_sets, read_tsv, NliExample, NliLabel, StsDataset, StsPair,
    POOLING_SETS, SUITE,
};
pub use evaluate::{evaluate, Correlations, StsReport, StsScores, Truncated};
pub use retrieval::{evaluate_retrieval, score_rankings, RetrievalScores, RetrievalTask};

/// Errors of reading datasets and evaluating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A malformed row.
    #[error("{}: line {line}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A file with no pairs.
    #[error("{}: no sentence pairs", .0.display())]
    Empty(PathBuf),
    /// None of the expected sets is in the folder.
    #[error("no STS sets found in {}: expected any of {expected}", dir.display())]
    NoSets {
        /// The folder searched.
        dir: PathBuf,
        /// The relative paths looked for.
        expected: String,
    },
    /// A correlation is undefined because one side is constant.
    #[error("{dataset}: correlation undefined ({what} or the gold scores are constant)")]
    Undefined {
        /// The dataset.
        dataset: String,
        /// Which similarity.
        what: String,
    },
    /// A similarity came out NaN or infinite: a metric over it would be meaningless.
    #[error("{dataset}: {what} holds a non-finite score (pair or query {index}, 0-based)")]
    NonFinite {
        /// The dataset.
        dataset: String,
        /// Which scores.
        what: String,
        /// The first offending position.
        index: usize,
    },
    /// Loading or running the model failed.
    #[error(transparent)]
    Model(#[from] sbert::Error),
}

impl From<sbert::candle_core::Error> for EvalError {
    fn from(e: sbert::candle_core::Error) -> Self {
        EvalError::Model(e.into())
    }
}
