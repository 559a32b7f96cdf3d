//! SBERT-style sentence embeddings in Rust, matching Python sentence-transformers.
//!
//! `sbert` loads a [sentence-transformers](https://www.sbert.net) model folder
//! (`modules.json`, `config.json`, `model.safetensors`, `tokenizer.json`,
//! `sentence_bert_config.json`, `1_Pooling/config.json`, optional `2_Dense/`, `Normalize`) and
//! turns texts into fixed-size vectors that you compare with cosine similarity:
//!
//! text → prompt? → strip → tokenize (truncate at `max_seq_length`) → sort by length, batch →
//! encoder ([`sbert_bert`]: BERT, MPNet, XLM-RoBERTa, DistilBERT — on the CPU in f32 the
//! batch's texts back to back without padding, elsewhere a padded batch — or ModernBERT) →
//! pooling ([`sbert_pooling`]) → Dense → normalize → input order restored.
//!
//! Every step reproduces sentence-transformers: on `all-MiniLM-L6-v2` and `all-mpnet-base-v2`
//! the embeddings agree with Python's to 1e-4 (the workspace's golden tests check this on every
//! CI run).
//!
//! Beside these bi-encoders, [`CrossEncoder`] loads a reranker (a query and a document read
//! together, one score per label, as sentence-transformers' `CrossEncoder`): retrieve with
//! embeddings, then [`CrossEncoder::rank`] the top hits; and [`SparseEncoder`] loads a SPLADE
//! model (one weight per vocabulary word, mostly zero: [`SparseEmbedding`]).
//!
//! # Quickstart
//!
//! ```no_run
//! use sbert::SentenceEmbedder;
//!
//! # fn main() -> sbert::Result<()> {
//! // Run `models/fetch.sh` once to install all-MiniLM-L6-v2 into models/.
//! let model = SentenceEmbedder::from_dir("models/all-MiniLM-L6-v2", &sbert::Device::Cpu)?;
//! let embeddings = model.embed(&["A man is eating food.", "A man eats pasta."])?;
//! assert_eq!((embeddings.len(), embeddings.dim()), (2, 384));
//! let scores = model.similarity(&embeddings, &embeddings)?; // 2 × 2, the model's function
//! assert!(scores[0][1] > 0.5);
//! # Ok(())
//! # }
//! ```
//!
//! One [`SentenceEmbedder::encode`] takes sentence-transformers' per-call settings
//! ([`EncodeOptions`]: prompt, batch size, normalization, Matryoshka truncation); the builder
//! sets the model's defaults:
//!
//! ```no_run
//! use sbert::{EncodeOptions, PoolingMode, Prompt, SentenceEmbedder};
//!
//! # fn main() -> sbert::Result<()> {
//! let model = SentenceEmbedder::builder("models/all-MiniLM-L6-v2")
//!     .batch_size(64)
//!     .pooling(PoolingMode::Max)
//!     .build()?;
//! let out = model.encode(&["a text", ""], &EncodeOptions::default().truncate_dim(128))?;
//! assert_eq!(out.dim(), 128);
//! assert_eq!(out.inputs()[1].tokens, 2); // [CLS] [SEP]
//! // Models with prompts (config_sentence_transformers.json) take them by name or as text.
//! let queries = model.encode(&["how do cats sleep?"], &EncodeOptions::default().prompt(Prompt::Text("query: ")))?;
//! # let _ = queries;
//! # Ok(())
//! # }
//! ```
//!
//! Search, mining, clustering and de-duplication over the rows are in [`search`] (the
//! `sbert-search` crate), whose errors convert into [`Error`]:
//!
//! ```no_run
//! use sbert::search::{semantic_search, Score};
//! use sbert::SentenceEmbedder;
//!
//! # fn main() -> sbert::Result<()> {
//! let model = SentenceEmbedder::from_dir("models/all-MiniLM-L6-v2", &sbert::Device::Cpu)?;
//! let corpus = model.embed(&["A man is eating food.", "A monkey plays drums."])?;
//! let queries = model.embed(&["Someone eats."])?;
//! let hits = semantic_search(&queries.vectors(), &corpus.vectors(), 5, Score::Cosine)?;
//! assert_eq!(hits[0].len(), 2); // top_k is capped at the corpus size
//! # Ok(())
//! # }
//! ```
//!
//! Build dependencies with optimization even in debug builds: an unoptimized encoder is about
//! 100× slower. In the `Cargo.toml` of your crate:
//!
//! ```toml
//! [profile.dev.package."*"]
//! opt-level = 3
//! ```
//!
//! On the CPU, BERT-family encoders can multiply in int8 (weights quantized per output channel
//! at load, activations per row): faster, with embeddings close to f32's but not equal.
//!
//! ```no_run
//! use sbert::{Quantization, SentenceEmbedder};
//!
//! # fn main() -> sbert::Result<()> {
//! let model = SentenceEmbedder::builder("models/all-MiniLM-L6-v2")
//!     .quantize(Quantization::Int8)
//!     .build()?;
//! let embeddings = model.embed(&["A man is playing a guitar."])?;
//! # let _ = embeddings;
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! * `hf-hub` (default): accept `owner/name` hub ids, resolved offline from the Hugging Face
//!   hub cache (`$HF_HUB_CACHE`, `$HF_HOME/hub` or `~/.cache/huggingface/hub`).
//! * `hf-hub-online`: also download missing files from the hub.
//! * `cuda`, `metal`: run on a GPU through candle (`Device::new_cuda(0)`, `Device::new_metal(0)`).
#![warn(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]

mod batching;
mod builder;
mod cross_encoder;
mod device;
mod embedder;
mod embeddings;
mod encoders;
mod error;
mod folder;
mod heads;
mod hub;
mod kind;
mod prefix;
mod similarity;
mod sparse;
mod static_embedding;
mod text_embedder;
mod tokenize;
mod weights;

pub use batching::PaddedBatch;
pub use builder::{EmbedderBuilder, DEFAULT_BATCH_SIZE};
pub use cross_encoder::{Activation, CrossEncoder, PredictOptions, Ranked, Scores};
pub use device::device;
pub use embedder::SentenceEmbedder;
pub use embeddings::{Embeddings, EncodeOptions, InputStats, Prompt};
pub use encoders::EncoderModel;
pub use error::{Error, Result};
pub use folder::{DenseConfig, ModuleEntry, SentenceBertConfig};
pub use kind::ModelKind;
pub use sbert_search::{self as search, normalize_rows};
pub use similarity::{cos_sim, cosine, normalize, pairwise_cos_sim, Similarity};
pub use sparse::{SparseEmbedding, SparseEncoder};
pub use static_embedding::StaticTable;
pub use text_embedder::TextEmbedder;
pub use tokenize::TokenizedText;
pub use weights::read_safetensors;

pub use sbert_bert::{self as bert, BertConfig, BertModel, Encoder, Quantization};
pub use sbert_pooling::{self as pooling, Pooling, PoolingConfig, PoolingError, PoolingMode};

pub use candle_core::{self, DType, Device, Tensor};

/// The README's Rust examples, compiled as doctests so that they keep working.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExamples;
