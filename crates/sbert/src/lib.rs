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
//! # Quickstart
//!
//! ```no_run
//! use candle_core::Device;
//! use sbert::SentenceEmbedder;
//!
//! # fn main() -> sbert::Result<()> {
//! // Run `models/fetch.sh` once to install all-MiniLM-L6-v2 into models/.
//! let model = SentenceEmbedder::from_dir("models/all-MiniLM-L6-v2", &Device::Cpu)?;
//! let embeddings = model.embed(&["A man is eating food.", "A man eats pasta."])?; // (2, 384)
//! let scores = sbert::cos_sim(&embeddings, &embeddings)?; // (2, 2)
//! let s = model.similarity("A man is eating food.", "A man eats pasta.")?;
//! assert!(s > 0.5);
//! # let _ = scores;
//! # Ok(())
//! # }
//! ```
//!
//! The builder covers the knobs, each with sentence-transformers' default:
//!
//! ```no_run
//! use candle_core::Device;
//! use sbert::{PoolingMode, SentenceEmbedder};
//!
//! # fn main() -> sbert::Result<()> {
//! let model = SentenceEmbedder::builder("models/all-MiniLM-L6-v2")
//!     .device(Device::Cpu)
//!     .batch_size(64)
//!     .pooling(PoolingMode::Max)
//!     .normalize(false)
//!     .build()?;
//! let out = model.encode(&["a text", ""])?;
//! assert_eq!(out.inputs[1].tokens, 2); // [CLS] [SEP]
//! # Ok(())
//! # }
//! ```
//!
//! Models with prompts (`config_sentence_transformers.json`) take them per call or as the
//! builder's default, as sentence-transformers' `prompt_name` / `prompt`:
//!
//! ```no_run
//! use sbert::{Prompt, SentenceEmbedder};
//!
//! # fn main() -> sbert::Result<()> {
//! let model = SentenceEmbedder::builder("intfloat/multilingual-e5-small").build()?;
//! let queries = model.encode_with_prompt(&["how do cats sleep?"], Prompt::Named("query"))?;
//! let passages = model.encode_with_prompt(&["Cats sleep 15 hours a day."], Prompt::Text("passage: "))?;
//! # let _ = (queries, passages);
//! # Ok(())
//! # }
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
mod embedder;
mod encoders;
mod error;
mod folder;
mod heads;
mod hub;
pub mod input;
pub mod output;
mod prefix;
mod similarity;
mod text_embedder;
mod tokenize;
mod weights;

pub use batching::PaddedBatch;
pub use builder::{EmbedderBuilder, DEFAULT_BATCH_SIZE};
pub use embedder::{Embeddings, InputStats, Prompt, SentenceEmbedder};
pub use error::{Error, Result};
pub use folder::{DenseConfig, ModuleEntry, SentenceBertConfig};
pub use similarity::{cos_sim, cosine, normalize, pairwise_cos_sim, Similarity};
pub use text_embedder::TextEmbedder;
pub use tokenize::TokenizedText;

pub use sbert_bert::{self as bert, BertConfig, BertModel, Quantization};
pub use sbert_pooling::{self as pooling, Pooling, PoolingConfig, PoolingError, PoolingMode};

pub use candle_core::{self, DType, Device, Tensor};
