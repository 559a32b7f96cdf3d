//! What sentence embeddings are for, over rows of `f32`: exact semantic search, paraphrase
//! mining, community detection and de-duplication, with the semantics of sentence-transformers
//! 6.2's `util.semantic_search`, `util.paraphrase_mining_embeddings` and
//! `util.community_detection` (and a greedy de-duplication in input order).
//!
//! For large corpora, [`ApproximateIndex`] is an HNSW graph (the `hnsw_rs` crate) searched
//! with a width chosen per call. [`write_index`] and [`StoredIndex`] keep a corpus on disk:
//! texts, embeddings and graph under a manifest that is swapped in last, checked file by file
//! before any reader trusts it, and tied to the model that embedded it ([`ModelIdentity`]).
//!
//! Scores are computed in blocks (candle's CPU matrix product) so memory stays bounded by the
//! block size, not by `queries × corpus`; top-k lists are kept in bounded heaps.
//!
//! # Example
//!
//! ```
//! use sbert_search::{semantic_search, Vectors, Score};
//!
//! # fn main() -> Result<(), sbert_search::SearchError> {
//! let corpus = [1.0, 0.0, 0.0, 1.0, 0.6, 0.8];
//! let queries = [0.8, 0.6];
//! let hits = semantic_search(
//!     &Vectors::new(&queries, 2)?,
//!     &Vectors::new(&corpus, 2)?,
//!     2,
//!     Score::Cosine,
//! )?;
//! assert_eq!(hits[0][0].corpus_id, 2); // 0.8·0.6 + 0.6·0.8 = 0.96
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]

mod approximate;
mod community;
mod dedup;
mod mining;
mod quantize;
mod scores;
mod search;
mod sparse;
mod store;

pub use approximate::{recall, ApproximateIndex, HnswParams, SavedGraph};
pub use community::community_detection;
pub use dedup::{dedup, Dedup};
pub use mining::{paraphrase_mining, Pair};
pub use quantize::{quantize, search_quantized, Precision, Quantized, Ranges};
pub use scores::{normalize_rows, normalized};
pub use search::{semantic_search, Hit};
pub use sparse::{hybrid_search, InvertedIndex, SparseEmbedding};
pub use store::{
    check_index_target, write_index, ModelIdentity, NewIndex, StoredIndex, INDEX_FORMAT,
};

/// Errors of the search functions: every bad input is one of these, never a panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SearchError {
    /// No rows where some are needed.
    #[error("the {0} is empty")]
    Empty(&'static str),
    /// Rows that do not divide into vectors of the dimension, or a zero dimension.
    #[error("{len} values do not form rows of dimension {dim}")]
    Shape {
        /// Values given.
        len: usize,
        /// The dimension.
        dim: usize,
    },
    /// Queries and corpus of different widths.
    #[error("dimension mismatch: queries have {queries} values per row, the corpus {corpus}")]
    DimensionMismatch {
        /// Query width.
        queries: usize,
        /// Corpus width.
        corpus: usize,
    },
    /// A NaN or infinite value.
    #[error("row {row} holds a value that is NaN or infinite")]
    NotFinite {
        /// The row.
        row: usize,
    },
    /// A `top_k` of 0.
    #[error("top_k {top_k} must be at least 1 (the corpus has {max} rows)")]
    TopK {
        /// Asked for.
        top_k: usize,
        /// The largest that makes sense.
        max: usize,
    },
    /// A similarity threshold outside [-1, 1] (or NaN).
    #[error("threshold {0} is outside [-1, 1]")]
    Threshold(f32),
    /// A precision name that is none of float32, int8, uint8, binary, ubinary.
    #[error("unknown precision {0:?} (expected float32, int8, uint8, binary or ubinary)")]
    Precision(String),
    /// A size limit of zero where at least one is needed.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// A parameter out of its range, with the range.
    #[error("{0}")]
    Parameter(String),
    /// A file of a saved index that cannot be written, read, or trusted.
    #[error("{0}")]
    Io(String),
    /// The matrix product failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

/// A borrowed matrix of `n` vectors of `dim` values each, row-major: what every function
/// here reads. `sbert::Embeddings::vectors` gives one for a model's output.
#[derive(Debug, Clone, Copy)]
pub struct Vectors<'a> {
    data: &'a [f32],
    dim: usize,
}

impl<'a> Vectors<'a> {
    /// Views `data` as rows of `dim` values.
    ///
    /// # Errors
    /// [`SearchError::Shape`] when `dim` is 0 or does not divide `data.len()`;
    /// [`SearchError::NotFinite`] for a NaN or infinite value.
    pub fn new(data: &'a [f32], dim: usize) -> Result<Self, SearchError> {
        if dim == 0 || !data.len().is_multiple_of(dim) {
            return Err(SearchError::Shape {
                len: data.len(),
                dim,
            });
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(SearchError::NotFinite { row: i / dim });
        }
        Ok(Self { data, dim })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Values per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row `i`.
    ///
    /// # Panics
    /// When `i >= len()`.
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// All values, row-major.
    pub fn as_slice(&self) -> &'a [f32] {
        self.data
    }
}

/// How two embeddings are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Score {
    /// Cosine similarity (rows are L2-normalized first; a zero row scores 0).
    #[default]
    Cosine,
    /// Dot product.
    Dot,
}

/// The checks every search makes: queries present, a corpus of `corpus_len` rows of
/// `corpus_dim` values, the same width on both sides, `top_k` at least 1. Returns `top_k`
/// capped at `corpus_len`, as sentence-transformers' `semantic_search` caps it.
fn check_search(
    queries: &Vectors<'_>,
    corpus_len: usize,
    corpus_dim: usize,
    top_k: usize,
) -> Result<usize, SearchError> {
    if queries.is_empty() {
        return Err(SearchError::Empty("query set"));
    }
    if corpus_len == 0 {
        return Err(SearchError::Empty("corpus"));
    }
    if queries.dim() != corpus_dim {
        return Err(SearchError::DimensionMismatch {
            queries: queries.dim(),
            corpus: corpus_dim,
        });
    }
    if top_k == 0 {
        return Err(SearchError::TopK {
            top_k,
            max: corpus_len,
        });
    }
    Ok(top_k.min(corpus_len))
}

/// Uniform values in `[-1, 1)` from a 64-bit LCG seeded with `seed`: the tests' fixed data.
#[cfg(test)]
fn uniform(seed: u64) -> impl FnMut() -> f32 {
    let mut state = seed;
    move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    }
}

fn check_threshold(t: f32) -> Result<(), SearchError> {
    if (-1.0..=1.0).contains(&t) {
        Ok(())
    } else {
        Err(SearchError::Threshold(t))
    }
}
