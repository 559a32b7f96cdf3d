//! Sparse encoders (SPLADE; sentence-transformers' `SparseEncoder`): the masked-LM head's score
//! for every vocabulary word at every position, `log(1 + relu(x))`, the maximum over a text's
//! tokens: one weight per vocabulary word, most of them 0. Exact-term matching that dense
//! vectors miss, searched with an inverted index or beside dense scores (hybrid).
//!
//! The folder is a BERT masked-LM: `modules.json` with a Transformer (`fill-mask`) and a
//! `SpladePooling` module (max, relu), or a plain `BertForMaskedLM` folder, which
//! sentence-transformers reads as the same two modules. The decoder may be tied to the word
//! embeddings (then it is that table, held once) and LayerNorm weights may carry TensorFlow's
//! old names (`gamma`, `beta`).
//!
//! ```no_run
//! # fn main() -> sbert::Result<()> {
//! let splade = sbert::SparseEncoder::from_dir("models/splade-tiny", &sbert::Device::Cpu)?;
//! let e = splade.encode(&["How do vaccines work?"])?;
//! for (token, weight) in splade.decode(&e[0], 5) {
//!     println!("{token}\t{weight:.3}");
//! }
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{LayerNorm, Linear, VarBuilder};
use sbert_bert::{BertModel, Encoder, TokenBatch, TokenEmbeddings};

use crate::encoders::EncoderModel;
use crate::error::{Error, Result};
use crate::folder;
use crate::tokenize::TextTokenizer;

/// A text's sparse embedding (the nonzero vocabulary ids, ascending, and their weights):
/// `sbert-search`'s type, which its inverted index and hybrid search read.
pub use sbert_search::SparseEmbedding;

/// A SPLADE sparse encoder. `Send + Sync`; encodes through `&self`.
#[derive(Debug)]
pub struct SparseEncoder {
    dir: PathBuf,
    tokenizer: TextTokenizer,
    encoder: BertModel,
    /// The masked-LM head's transform: dense, GELU, LayerNorm.
    transform: Linear,
    norm: LayerNorm,
    /// `(vocab, hidden)`: the decoder (the word embeddings when tied: the same storage).
    decoder: Tensor,
    /// `(vocab,)`.
    bias: Tensor,
    batch_size: usize,
}

/// Token rows whose logits are computed at once: bounds the `(rows, vocab)` block (512 rows
/// of BERT's 30,522 words: 62 MB).
const TOKENS_PER_BLOCK: usize = 512;

impl SparseEncoder {
    /// Whether `model` (a folder, or a hub id in the local cache) holds a sparse encoder:
    /// `modules.json` with a `SpladePooling` module, or no `modules.json` and a
    /// `*ForMaskedLM` config.
    pub fn is_sparse_encoder(model: &str) -> bool {
        crate::hub::resolve(model, None).is_ok_and(|dir| holds_sparse_encoder(&dir))
    }

    /// Loads `model`: a folder, or (with the `hf-hub` feature) an `owner/name` id found in the
    /// Hugging Face hub cache.
    ///
    /// # Errors
    /// As [`SparseEncoder::from_dir`], and [`Error::ModelNotFound`].
    pub fn load(model: &str, device: &Device) -> Result<Self> {
        Self::from_dir(crate::hub::resolve(model, None)?, device)
    }

    /// Loads the sparse encoder in `dir` on `device` (f32).
    ///
    /// # Errors
    /// A missing or malformed file, a folder that is not a BERT masked-LM with SPLADE pooling
    /// (max over tokens of relu), or a head that does not fit the config.
    pub fn from_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let transformer = match folder::read_modules(&dir)? {
            Some(modules) => {
                let classes: Vec<&str> = modules.iter().map(|m| m.class()).collect();
                if classes != ["Transformer", "SpladePooling"]
                    && classes != ["MLMTransformer", "SpladePooling"]
                {
                    return Err(Error::Unsupported(format!(
                        "{} lists {classes:?}: not a sparse encoder (Transformer, then \
                         SpladePooling)",
                        dir.join("modules.json").display()
                    )));
                }
                check_pooling(&dir.join(&modules[1].path))?;
                dir.join(&modules[0].path)
            }
            None => dir.clone(),
        };
        let config_path = folder::require_file(transformer.join("config.json"))?;
        let config: serde_json::Value = folder::read_json(&config_path)?;
        if !masked_lm(&config) {
            return Err(Error::Unsupported(format!(
                "{} names no *ForMaskedLM architecture: not a sparse (SPLADE) encoder",
                config_path.display()
            )));
        }
        let weights_path = transformer.join("model.safetensors");
        let (loaded, head) = crate::encoders::load_with_head(
            &transformer,
            DType::F32,
            device,
            sbert_bert::Quantization::None,
            |vb| load_head(vb, &weights_path),
        )?;
        let EncoderModel::Bert(encoder) = loaded.encoder else {
            return Err(Error::Unsupported(format!(
                "a masked-LM head over this encoder ({})",
                config_path.display()
            )));
        };
        let (transform, norm_weights, decoder, bias) = head;
        let hidden = encoder.config().hidden_size;
        let vocab = encoder.config().vocab_size;
        let decoder = match decoder {
            Some(decoder) => decoder,
            // Tied: the word embeddings themselves (a handle on the encoder's storage).
            None => encoder.weights()?.embeddings.word.clone(),
        };
        let shape_error = |what: &str| {
            Error::Unsupported(format!(
                "{}: the masked-LM {what} does not fit hidden size {hidden} and vocabulary \
                 {vocab}",
                weights_path.display()
            ))
        };
        if decoder.dims() != [vocab, hidden] {
            return Err(shape_error("decoder"));
        }
        if bias.dims() != [vocab] {
            return Err(shape_error("bias"));
        }
        let eps = encoder.config().layer_norm_eps;
        let norm = LayerNorm::new(norm_weights.0, norm_weights.1, eps);
        let max_seq_length =
            folder::max_input_length(&transformer, Encoder::max_positions(&encoder))?;
        let tokenizer = TextTokenizer::load(&transformer, max_seq_length, false)?;
        Ok(Self {
            dir,
            tokenizer,
            encoder,
            transform,
            norm,
            decoder,
            bias,
            batch_size: crate::DEFAULT_BATCH_SIZE,
        })
    }

    /// The folder it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Dimensions of an embedding: the vocabulary size.
    pub fn dimension(&self) -> usize {
        self.bias.dims()[0]
    }

    /// The longest text in tokens (longer texts lose their tail).
    pub fn max_seq_length(&self) -> usize {
        self.tokenizer.max_seq_length()
    }

    /// The same model encoding `batch_size` texts per pass.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for 0.
    pub fn with_batch_size(mut self, batch_size: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::InvalidArgument(
                "batch_size must be at least 1".into(),
            ));
        }
        self.batch_size = batch_size;
        Ok(self)
    }

    /// The sparse embedding of each text, in order.
    ///
    /// # Errors
    /// A tokenizer failure, or a weight that is not finite ([`Error::NonFiniteEmbedding`]).
    pub fn encode<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<SparseEmbedding>> {
        let _span = tracing::debug_span!("encode_sparse", texts = texts.len()).entered();
        let refs: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        let tokenized = self.tokenizer.tokenize(&refs)?;
        let lengths: Vec<usize> = tokenized.iter().map(|t| t.ids.len()).collect();
        let mut out = vec![SparseEmbedding::default(); texts.len()];
        for batch in crate::batching::plan(&lengths, self.batch_size, None) {
            let (ids, batch_lengths) =
                crate::TokenizedText::pack(batch.iter().map(|&i| &tokenized[i]));
            let rows = match Encoder::forward(&self.encoder, TokenBatch::new(&ids, &batch_lengths))?
            {
                TokenEmbeddings::Packed(rows) => rows,
                TokenEmbeddings::Padded { tokens, .. } => {
                    // The real tokens' rows, back to back.
                    let t = tokens.dims()[1];
                    let real: Vec<u32> = batch_lengths
                        .iter()
                        .enumerate()
                        .flat_map(|(b, &len)| (0..len).map(move |p| (b * t + p) as u32))
                        .collect();
                    let flat = tokens.reshape((batch_lengths.len() * t, ()))?;
                    flat.index_select(&Tensor::new(real.as_slice(), flat.device())?, 0)?
                }
            };
            for (e, &i) in self.pool(&rows, &batch_lengths)?.into_iter().zip(&batch) {
                out[i] = e.ok_or(Error::NonFiniteEmbedding { index: i })?;
            }
        }
        Ok(out)
    }

    /// SPLADE pooling of a batch's token vectors `(Σ lengths, hidden)`, texts back to back:
    /// for each text, `log(1 + relu(max over its tokens of the logits))` — the same as the
    /// maximum of `log(1 + relu(logit))`, both being non-decreasing, but the logarithm runs
    /// once per dimension instead of once per token and dimension. The logits are computed
    /// for blocks of [`TOKENS_PER_BLOCK`] rows (crossing text boundaries, so one product
    /// serves several short texts), and the bias is added after the maximum. `None` for a
    /// text whose weights are not finite.
    fn pool(&self, rows: &Tensor, lengths: &[usize]) -> Result<Vec<Option<SparseEmbedding>>> {
        let h = self
            .norm
            .forward(&self.transform.forward(rows)?.gelu_erf()?)?;
        let decoder_t = self.decoder.t()?;
        let total: usize = lengths.iter().sum();
        let mut best: Vec<Option<Tensor>> = vec![None; lengths.len()];
        // (text, first row) of each text.
        let mut starts = Vec::with_capacity(lengths.len());
        let mut at = 0;
        for &len in lengths {
            starts.push(at);
            at += len;
        }
        for block_start in (0..total).step_by(TOKENS_PER_BLOCK) {
            let block_len = TOKENS_PER_BLOCK.min(total - block_start);
            let logits = h.narrow(0, block_start, block_len)?.matmul(&decoder_t)?;
            for (text, (&start, &len)) in starts.iter().zip(lengths).enumerate() {
                let from = start.max(block_start);
                let to = (start + len).min(block_start + block_len);
                if from >= to {
                    continue;
                }
                let part = logits.narrow(0, from - block_start, to - from)?.max(0)?;
                best[text] = Some(match best[text].take() {
                    Some(b) => b.maximum(&part)?,
                    None => part,
                });
            }
        }
        best.into_iter()
            .map(|max| {
                let dense: Vec<f32> = match max {
                    Some(m) => (m + &self.bias)?
                        .relu()?
                        .affine(1.0, 1.0)?
                        .log()?
                        .to_dtype(DType::F32)?
                        .to_vec1()?,
                    None => vec![0.0; self.dimension()],
                };
                if dense.iter().any(|v| !v.is_finite()) {
                    return Ok(None);
                }
                let mut e = SparseEmbedding::default();
                for (i, &v) in dense.iter().enumerate() {
                    if v > 0.0 {
                        e.indices.push(i as u32);
                        e.values.push(v);
                    }
                }
                Ok(Some(e))
            })
            .collect()
    }

    /// The `top_k` heaviest dimensions of `embedding` as vocabulary tokens with their weights,
    /// heaviest first (sentence-transformers' `decode`).
    pub fn decode(&self, embedding: &SparseEmbedding, top_k: usize) -> Vec<(String, f32)> {
        let mut pairs: Vec<(u32, f32)> = embedding
            .indices
            .iter()
            .copied()
            .zip(embedding.values.iter().copied())
            .collect();
        pairs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        pairs
            .into_iter()
            .take(top_k)
            .map(|(id, w)| {
                let token = self
                    .tokenizer
                    .inner()
                    .id_to_token(id)
                    .unwrap_or_else(|| format!("[{id}]"));
                (token, w)
            })
            .collect()
    }
}

/// Whether the folder `dir` holds a sparse encoder (see [`SparseEncoder::is_sparse_encoder`]).
pub(crate) fn holds_sparse_encoder(dir: &Path) -> bool {
    match folder::read_modules(dir) {
        Ok(Some(modules)) => modules.iter().any(|m| m.class() == "SpladePooling"),
        Ok(None) => folder::read_json::<serde_json::Value>(&dir.join("config.json"))
            .is_ok_and(|c| masked_lm(&c)),
        Err(_) => false,
    }
}

/// Whether a `config.json` names a masked-LM architecture.
fn masked_lm(config: &serde_json::Value) -> bool {
    config
        .get("architectures")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .filter_map(serde_json::Value::as_str)
                .any(|a| a.ends_with("ForMaskedLM"))
        })
}

/// Refuses a SpladePooling other than max over tokens of relu.
fn check_pooling(dir: &Path) -> Result<()> {
    let path = dir.join("config.json");
    if !path.is_file() {
        return Ok(());
    }
    let config: serde_json::Value = folder::read_json(&path)?;
    let strategy = config
        .get("pooling_strategy")
        .and_then(|v| v.as_str())
        .unwrap_or("max");
    let activation = config
        .get("activation_function")
        .and_then(|v| v.as_str())
        .unwrap_or("relu");
    if strategy != "max" || activation != "relu" {
        return Err(Error::Unsupported(format!(
            "SpladePooling {strategy} of {activation} in {} (supported: max of relu)",
            path.display()
        )));
    }
    Ok(())
}

/// The masked-LM head's transform, LayerNorm `(weight, bias)`, untied decoder and bias.
type MlmHead = (Linear, (Tensor, Tensor), Option<Tensor>, Tensor);

fn load_head(vb: VarBuilder<'static>, path: &Path) -> Result<MlmHead> {
    let get = |name: &str| -> Result<Tensor> {
        vb.get_unchecked(name).map_err(|source| Error::Weights {
            path: path.to_path_buf(),
            source,
        })
    };
    let p = "cls.predictions";
    let transform = Linear::new(
        get(&format!("{p}.transform.dense.weight"))?,
        Some(get(&format!("{p}.transform.dense.bias"))?),
    );
    let norm = (
        get(&format!("{p}.transform.LayerNorm.weight"))?,
        get(&format!("{p}.transform.LayerNorm.bias"))?,
    );
    let decoder = vb
        .contains_tensor(&format!("{p}.decoder.weight"))
        .then(|| get(&format!("{p}.decoder.weight")))
        .transpose()?;
    let bias = if vb.contains_tensor(&format!("{p}.bias")) {
        get(&format!("{p}.bias"))?
    } else {
        get(&format!("{p}.decoder.bias"))?
    };
    Ok((transform, norm, decoder, bias))
}
