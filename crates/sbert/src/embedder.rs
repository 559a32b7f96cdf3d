//! [`SentenceEmbedder`]: a loaded sentence-transformers model, and its builder.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use sbert_bert::{BertConfig, BertModel};
use sbert_pooling::{Pooling, PoolingConfig, PoolingMode};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Error, Result};
use crate::folder::{self, DenseConfig, ModuleEntry, SentenceBertConfig};
use crate::similarity::{self, Similarity};

/// Default number of texts per forward pass, as in sentence-transformers.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// What tokenization did to one input text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedText {
    /// Token ids, special tokens included, after truncation. No padding.
    pub ids: Vec<u32>,
    /// Whether the text was longer than `max_seq_length` and lost its tail.
    pub truncated: bool,
}

/// Embeddings of a list of texts, with what tokenization did to each.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// `(n_texts, dim)`, in input order.
    pub embeddings: Tensor,
    /// Token count (after truncation, special tokens included) and truncation, per input.
    pub inputs: Vec<InputStats>,
}

/// Per-input statistics reported by [`SentenceEmbedder::encode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputStats {
    /// Tokens fed to the encoder, special tokens included.
    pub tokens: usize,
    /// Whether the text was truncated at `max_seq_length`.
    pub truncated: bool,
}

/// A module applied after pooling.
#[derive(Debug, Clone)]
enum Head {
    Dense(Dense),
    Normalize,
}

/// sentence-transformers' `Dense`: `activation(x Wᵀ + b)`.
#[derive(Debug, Clone)]
struct Dense {
    weight: Tensor,
    bias: Option<Tensor>,
    activation: Activation,
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    Identity,
    Tanh,
    Relu,
    Sigmoid,
    Gelu,
}

impl Dense {
    fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let cfg: DenseConfig = folder::read_json(&dir.join("config.json"))?;
        let activation = match cfg
            .activation_function
            .rsplit('.')
            .next()
            .unwrap_or_default()
        {
            "Identity" => Activation::Identity,
            "Tanh" => Activation::Tanh,
            "ReLU" => Activation::Relu,
            "Sigmoid" => Activation::Sigmoid,
            "GELU" => Activation::Gelu,
            other => {
                return Err(Error::Unsupported(format!(
                    "Dense activation {other:?} in {}",
                    dir.join("config.json").display()
                )))
            }
        };
        let path = weights_file(dir)?;
        let vb = crate::weights::load(&path, dtype, device)?;
        let load = || -> candle_core::Result<(Tensor, Option<Tensor>)> {
            let weight = vb.get((cfg.out_features, cfg.in_features), "linear.weight")?;
            let bias = if cfg.bias {
                Some(vb.get(cfg.out_features, "linear.bias")?)
            } else {
                None
            };
            Ok((weight, bias))
        };
        let (weight, bias) = load().map_err(|source| Error::Weights { path, source })?;
        Ok(Self {
            weight,
            bias,
            activation,
        })
    }

    fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = x.matmul(&self.weight.t()?)?;
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(bias)?;
        }
        Ok(match self.activation {
            Activation::Identity => y,
            Activation::Tanh => y.tanh()?,
            Activation::Relu => y.relu()?,
            Activation::Sigmoid => candle_nn::ops::sigmoid(&y)?,
            Activation::Gelu => y.gelu_erf()?,
        })
    }
}

/// `model.safetensors` of a folder, or a clear error when only a PyTorch pickle is there.
fn weights_file(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("model.safetensors");
    if path.is_file() {
        return Ok(path);
    }
    if dir.join("pytorch_model.bin").is_file() {
        return Err(Error::Unsupported(format!(
            "{} has only pytorch_model.bin; convert it to model.safetensors",
            dir.display()
        )));
    }
    Err(Error::MissingFile(path))
}

/// Builds a [`SentenceEmbedder`]; every setter states its default.
#[derive(Debug, Clone)]
#[must_use]
pub struct EmbedderBuilder {
    model: String,
    device: Device,
    dtype: DType,
    batch_size: usize,
    max_batch_tokens: Option<usize>,
    pooling: Option<Pooling>,
    normalize: Option<bool>,
    max_seq_length: Option<usize>,
    hf_cache: Option<PathBuf>,
}

impl EmbedderBuilder {
    fn new(model: &str) -> Self {
        Self {
            model: model.to_string(),
            device: Device::Cpu,
            dtype: DType::F32,
            batch_size: DEFAULT_BATCH_SIZE,
            max_batch_tokens: None,
            pooling: None,
            normalize: None,
            max_seq_length: None,
            hf_cache: None,
        }
    }

    /// The device to run on. Default: `Device::Cpu`.
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// The dtype of the weights and computation. Default: `DType::F32`.
    pub fn dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }

    /// Texts per forward pass. Default: 32, as sentence-transformers. 0 is rejected by `build`.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Forms batches under a token budget instead of a fixed count (TEI's `max_batch_tokens`):
    /// texts, longest first, join a batch while `texts × longest ≤ max_batch_tokens` (a text
    /// longer than the budget gets a batch of its own). Default: `None` (batches of
    /// [`EmbedderBuilder::batch_size`]).
    pub fn max_batch_tokens(mut self, max_batch_tokens: Option<usize>) -> Self {
        self.max_batch_tokens = max_batch_tokens;
        self
    }

    /// Replaces the folder's pooling (`1_Pooling/config.json`). Default: the folder's.
    pub fn pooling(mut self, pooling: impl Into<Pooling>) -> Self {
        self.pooling = Some(pooling.into());
        self
    }

    /// Forces L2 normalization on (`true`) or off (`false`). Default: as `modules.json` says
    /// (normalized when it lists a `Normalize` module).
    pub fn normalize(mut self, normalize: bool) -> Self {
        self.normalize = Some(normalize);
        self
    }

    /// Longest input in tokens, special tokens included. Default: `max_seq_length` of
    /// `sentence_bert_config.json`, capped at the encoder's `max_position_embeddings`.
    pub fn max_seq_length(mut self, max_seq_length: usize) -> Self {
        self.max_seq_length = Some(max_seq_length);
        self
    }

    /// The Hugging Face hub cache to resolve `owner/name` ids in. Default: `$HF_HUB_CACHE`,
    /// else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
    pub fn hf_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.hf_cache = Some(dir.into());
        self
    }

    /// Loads the model.
    ///
    /// # Errors
    /// When the model cannot be found, a file is missing or malformed, the weights do not fit
    /// the config, or an option is out of range.
    pub fn build(self) -> Result<SentenceEmbedder> {
        if self.batch_size == 0 {
            return Err(Error::InvalidArgument(
                "batch size must be at least 1".into(),
            ));
        }
        let dir = crate::hub::resolve(&self.model, self.hf_cache.as_deref())?;
        SentenceEmbedder::load(&dir, self)
    }
}

/// A sentence-transformers model, loaded: tokenizer → BERT encoder → pooling → optional Dense
/// → optional Normalize.
///
/// It is `Send + Sync` and encodes through `&self`, so one instance can serve many threads.
#[derive(Debug)]
pub struct SentenceEmbedder {
    dir: PathBuf,
    tokenizer: Tokenizer,
    encoder: BertModel,
    pooling: Pooling,
    heads: Vec<Head>,
    max_seq_length: usize,
    do_lower_case: bool,
    /// Whether long texts may be tokenized through a prefix (see `prefix::cuts_are_safe`).
    cuts_are_safe: bool,
    batch_size: usize,
    max_batch_tokens: Option<usize>,
    device: Device,
}

/// Tokenized texts right-padded to the longest of them: `(b, t)` each, `u32`.
#[derive(Debug, Clone)]
pub struct PaddedBatch {
    /// Token ids, padding with the model's `pad_token_id`.
    pub input_ids: Tensor,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
    /// All zeros (single-sentence inputs).
    pub token_type_ids: Tensor,
}

impl SentenceEmbedder {
    /// Loads the sentence-transformers folder `dir` (or, with the `hf-hub` feature, an
    /// `owner/name` hub id) on `device` with default options.
    ///
    /// # Errors
    /// As [`EmbedderBuilder::build`].
    pub fn from_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::builder(dir.as_ref().to_string_lossy())
            .device(device.clone())
            .build()
    }

    /// A builder for `model`: a folder, or with the `hf-hub` feature an `owner/name` hub id.
    pub fn builder(model: impl AsRef<str>) -> EmbedderBuilder {
        EmbedderBuilder::new(model.as_ref())
    }

    fn load(dir: &Path, opts: EmbedderBuilder) -> Result<Self> {
        let modules = folder::read_modules(dir)?;
        let (transformer_dir, pooling_dir, mut heads_entries) = match &modules {
            Some(modules) => split_modules(dir, modules)?,
            None => (dir.to_path_buf(), None, Vec::new()),
        };

        // The encoder.
        let config_path = folder::require_file(transformer_dir.join("config.json"))?;
        let config: BertConfig = folder::read_json(&config_path)?;
        if let Some(kind) = config.model_type.as_deref() {
            if kind != "bert" {
                return Err(Error::Unsupported(format!(
                    "model_type {kind:?} in {} (only \"bert\")",
                    config_path.display()
                )));
            }
        }
        config
            .validate()
            .map_err(|e| Error::Unsupported(format!("{}: {e}", config_path.display())))?;
        let weights = weights_file(&transformer_dir)?;
        let (vb, names) = crate::weights::load_with_names(&weights, opts.dtype, &opts.device)?;
        crate::weights::check_layer_count(&weights, &names, config.num_hidden_layers)?;
        let encoder = BertModel::load(vb, &config).map_err(|source| Error::Weights {
            path: weights.clone(),
            source,
        })?;

        // Tokenizer and sequence length.
        let sbert_cfg_path = transformer_dir.join("sentence_bert_config.json");
        let sbert_cfg: SentenceBertConfig = if sbert_cfg_path.exists() {
            folder::read_json(&sbert_cfg_path)?
        } else {
            SentenceBertConfig::default()
        };
        let max_seq_length = opts
            .max_seq_length
            .or(sbert_cfg.max_seq_length)
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);
        if max_seq_length < 2 {
            return Err(Error::InvalidArgument(format!(
                "max_seq_length {max_seq_length} leaves no room for [CLS] and [SEP]"
            )));
        }
        let tokenizer = load_tokenizer(&transformer_dir, max_seq_length)?;
        let vocab = tokenizer.get_vocab_size(true);
        if vocab > config.vocab_size {
            return Err(Error::Unsupported(format!(
                "the tokenizer has {vocab} tokens but the encoder's vocab_size is {}",
                config.vocab_size
            )));
        }

        // Pooling.
        let pooling = match (&opts.pooling, &pooling_dir) {
            (Some(p), _) => p.clone(),
            (None, Some(pdir)) => {
                let cfg: PoolingConfig = folder::read_json(&pdir.join("config.json"))?;
                if cfg.word_embedding_dimension != config.hidden_size {
                    return Err(Error::Unsupported(format!(
                        "{} says word_embedding_dimension {} but the encoder's hidden_size is {}",
                        pdir.join("config.json").display(),
                        cfg.word_embedding_dimension,
                        config.hidden_size
                    )));
                }
                Pooling::try_from(&cfg)?
            }
            // sentence-transformers' fallback for a plain Hugging Face model.
            (None, None) => Pooling::single(PoolingMode::Mean),
        };

        // Dense and Normalize.
        match opts.normalize {
            Some(false) => heads_entries.retain(|h| !matches!(h, HeadEntry::Normalize)),
            Some(true)
                if !heads_entries
                    .iter()
                    .any(|h| matches!(h, HeadEntry::Normalize)) =>
            {
                heads_entries.push(HeadEntry::Normalize)
            }
            _ => {}
        }
        let mut width = pooling.output_dim(config.hidden_size);
        let mut heads = Vec::with_capacity(heads_entries.len());
        for entry in heads_entries {
            heads.push(match entry {
                HeadEntry::Normalize => Head::Normalize,
                HeadEntry::Dense(ddir) => {
                    let dense = Dense::load(&ddir, opts.dtype, &opts.device)?;
                    if dense.in_features() != width {
                        return Err(Error::InvalidArgument(format!(
                            "{} takes {} features but pooling '{pooling}' gives {width}",
                            ddir.display(),
                            dense.in_features()
                        )));
                    }
                    width = dense.weight.dims()[0];
                    Head::Dense(dense)
                }
            });
        }

        let cuts_are_safe = crate::prefix::cuts_are_safe(&tokenizer);
        Ok(Self {
            dir: dir.to_path_buf(),
            tokenizer,
            encoder,
            pooling,
            heads,
            max_seq_length,
            do_lower_case: sbert_cfg.do_lower_case,
            cuts_are_safe,
            batch_size: opts.batch_size,
            max_batch_tokens: opts.max_batch_tokens,
            device: opts.device,
        })
    }

    /// The folder the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The BERT encoder.
    pub fn encoder(&self) -> &BertModel {
        &self.encoder
    }

    /// The tokenizer, with sentence-transformers' truncation and no padding.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The pooling in use.
    pub fn pooling(&self) -> &Pooling {
        &self.pooling
    }

    /// Whether embeddings are L2-normalized at the end.
    pub fn normalizes(&self) -> bool {
        matches!(self.heads.last(), Some(Head::Normalize))
    }

    /// Longest input in tokens (special tokens included); longer texts are truncated.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Texts per forward pass.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Width of the embeddings [`SentenceEmbedder::embed`] returns.
    pub fn dim(&self) -> usize {
        self.output_dim(&self.pooling)
    }

    fn output_dim(&self, pooling: &Pooling) -> usize {
        self.heads
            .iter()
            .rev()
            .find_map(|h| match h {
                Head::Dense(d) => Some(d.weight.dims()[0]),
                Head::Normalize => None,
            })
            .unwrap_or_else(|| pooling.output_dim(self.encoder.config().hidden_size))
    }

    /// Tokenizes as sentence-transformers does: strip, lower-case if `do_lower_case`, add
    /// `[CLS]`/`[SEP]`, truncate at `max_seq_length`, no padding.
    ///
    /// # Errors
    /// When the tokenizer fails.
    pub fn tokenize<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<TokenizedText>> {
        texts
            .iter()
            .map(|text| {
                // A long text is tokenized through a prefix with the same first tokens, so its
                // cost is bounded by what is kept (see `prefix`).
                let (enc, truncated) = crate::prefix::encode_truncated(
                    &self.tokenizer,
                    text.as_ref().trim(),
                    self.do_lower_case,
                    self.max_seq_length,
                    self.cuts_are_safe,
                )
                .map_err(Error::Tokenizer)?;
                Ok(TokenizedText {
                    ids: enc.get_ids().to_vec(),
                    truncated,
                })
            })
            .collect()
    }

    /// Embeds `texts`: `(n, dim)` in input order, in the model's dtype. An empty slice gives
    /// `(0, dim)`. Empty and whitespace-only texts are embedded as the empty text
    /// (`[CLS] [SEP]`), as sentence-transformers does.
    ///
    /// # Errors
    /// When tokenization or a tensor op fails.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S]) -> Result<Tensor> {
        Ok(self.encode(texts)?.embeddings)
    }

    /// [`SentenceEmbedder::embed`] as plain `f32` rows.
    ///
    /// # Errors
    /// As [`SentenceEmbedder::embed`].
    pub fn embed_vecs<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>> {
        Ok(self.embed(texts)?.to_dtype(DType::F32)?.to_vec2()?)
    }

    /// [`SentenceEmbedder::embed`], also reporting per input the token count and whether it was
    /// truncated.
    ///
    /// # Errors
    /// As [`SentenceEmbedder::embed`].
    pub fn encode<S: AsRef<str>>(&self, texts: &[S]) -> Result<Embeddings> {
        let tokenized = self.tokenize(texts)?;
        let mut pooled = self.run(&tokenized, std::slice::from_ref(&self.pooling))?;
        let inputs = tokenized
            .iter()
            .map(|t| InputStats {
                tokens: t.ids.len(),
                truncated: t.truncated,
            })
            .collect();
        Ok(Embeddings {
            embeddings: pooled.pop().expect("one pooling in, one tensor out"),
            inputs,
        })
    }

    /// Embeds `texts` once through the encoder and pools the token embeddings every way in
    /// `poolings` (then Dense/Normalize as configured): one `(n, dim)` tensor per pooling, in
    /// `poolings` order. Far cheaper than one [`SentenceEmbedder::embed`] per pooling.
    ///
    /// # Errors
    /// As [`SentenceEmbedder::embed`], and when a Dense module does not fit a pooling's width.
    pub fn embed_poolings<S: AsRef<str>>(
        &self,
        texts: &[S],
        poolings: &[Pooling],
    ) -> Result<Vec<Tensor>> {
        for p in poolings {
            self.check_heads_fit(p)?;
        }
        self.run(&self.tokenize(texts)?, poolings)
    }

    /// Cosine similarity of two texts.
    ///
    /// # Errors
    /// As [`SentenceEmbedder::embed`].
    pub fn similarity(&self, a: &str, b: &str) -> Result<f32> {
        let e = self.embed_vecs(&[a, b])?;
        Ok(similarity::cosine(&e[0], &e[1]))
    }

    /// Similarity of each pair `(a[i], b[i])` under `similarity`: `(n,)`.
    ///
    /// # Errors
    /// When the slices differ in length, or as [`SentenceEmbedder::embed`].
    pub fn pairwise_similarity<S: AsRef<str>>(
        &self,
        a: &[S],
        b: &[S],
        similarity: Similarity,
    ) -> Result<Vec<f32>> {
        if a.len() != b.len() {
            return Err(Error::InvalidArgument(format!(
                "{} texts on one side and {} on the other",
                a.len(),
                b.len()
            )));
        }
        let both: Vec<&str> = a.iter().chain(b).map(AsRef::as_ref).collect();
        let e = self.embed(&both)?;
        let n = a.len();
        let s = similarity.pairwise(&e.narrow(0, 0, n)?, &e.narrow(0, n, n)?)?;
        Ok(s.to_dtype(DType::F32)?.to_vec1()?)
    }

    fn check_heads_fit(&self, pooling: &Pooling) -> Result<()> {
        let width = pooling.output_dim(self.encoder.config().hidden_size);
        match self.heads.iter().find_map(|h| match h {
            Head::Dense(d) => Some(d.in_features()),
            Head::Normalize => None,
        }) {
            Some(in_features) if in_features != width => Err(Error::InvalidArgument(format!(
                "the model's Dense module takes {in_features} features but pooling '{pooling}' gives {width}"
            ))),
            _ => Ok(()),
        }
    }

    /// The batching loop of sentence-transformers' `encode`: sort by length (longest first),
    /// chunk into `batch_size`, pad each chunk to its longest text, encode, pool every way,
    /// apply the heads, restore the input order.
    fn run(&self, tokenized: &[TokenizedText], poolings: &[Pooling]) -> Result<Vec<Tensor>> {
        let n = tokenized.len();
        if n == 0 {
            return poolings
                .iter()
                .map(|p| {
                    Ok(Tensor::zeros(
                        (0, self.output_dim(p)),
                        self.encoder.dtype(),
                        &self.device,
                    )?)
                })
                .collect();
        }
        let lengths: Vec<usize> = tokenized.iter().map(|t| t.ids.len()).collect();
        let batches = self.plan_batches(&lengths);
        let order: Vec<usize> = batches.concat();

        let mut chunks: Vec<Vec<Tensor>> = vec![Vec::new(); poolings.len()];
        for idx in &batches {
            let group: Vec<&TokenizedText> = idx.iter().map(|&i| &tokenized[i]).collect();
            let batch = self.pad(&group)?;
            let tokens = if self.encoder.supports_packed() {
                self.forward_packed(&group)?
            } else {
                self.encoder.forward(
                    &batch.input_ids,
                    Some(&batch.token_type_ids),
                    &batch.attention_mask,
                )?
            };
            // MAX pooling would hide a NaN token (max ignores NaN), so check before pooling too.
            check_finite_rows(&tokens.flatten_from(1)?, idx)?;
            for (k, pooling) in poolings.iter().enumerate() {
                let pooled = pooling.pool(&tokens, &batch.attention_mask)?;
                let out = self.apply_heads(pooled)?;
                check_finite_rows(&out, idx)?;
                chunks[k].push(out);
            }
        }

        // Position in sorted order of each input: gathers the rows back into input order.
        let mut inverse = vec![0u32; n];
        for (sorted_pos, &i) in order.iter().enumerate() {
            inverse[i] = sorted_pos as u32;
        }
        let inverse = Tensor::from_vec(inverse, n, &self.device)?;
        chunks
            .into_iter()
            .map(|parts| {
                Ok(Tensor::cat(&parts, 0)?
                    .contiguous()?
                    .index_select(&inverse, 0)?)
            })
            .collect()
    }

    /// How [`SentenceEmbedder::embed`] batches texts of these token `lengths`: indices into
    /// `lengths`, one `Vec` per batch, in processing order. Longest first (stable for ties), then
    /// chunks of `batch_size`, or under `max_batch_tokens` when set. Each batch is padded to its
    /// first (longest) text.
    pub fn plan_batches(&self, lengths: &[usize]) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        match self.max_batch_tokens {
            None => order
                .chunks(self.batch_size)
                .map(<[usize]>::to_vec)
                .collect(),
            Some(budget) => {
                let mut batches: Vec<Vec<usize>> = Vec::new();
                let mut current: Vec<usize> = Vec::new();
                for i in order {
                    let longest = current.first().map_or(lengths[i], |&f| lengths[f]);
                    if !current.is_empty() && (current.len() + 1) * longest > budget {
                        batches.push(std::mem::take(&mut current));
                    }
                    current.push(i);
                }
                if !current.is_empty() {
                    batches.push(current);
                }
                batches
            }
        }
    }

    /// Applies the modules after pooling (Dense layers, then Normalize, as configured) to pooled
    /// embeddings `(n, pooled_dim)`. Differentiable with respect to `x` (the module weights are
    /// fixed).
    ///
    /// # Errors
    /// When the width does not fit a Dense module.
    pub fn apply_heads(&self, mut x: Tensor) -> Result<Tensor> {
        for head in &self.heads {
            x = match head {
                Head::Dense(d) => d.forward(&x)?,
                Head::Normalize => similarity::normalize(&x)?,
            };
        }
        Ok(x)
    }

    /// Runs the packed (padding-free) encoder on a group of texts and lays the result out as
    /// right-padded `(b, t, h)` with zero rows at padding, for pooling.
    fn forward_packed(&self, texts: &[&TokenizedText]) -> Result<Tensor> {
        let lengths: Vec<usize> = texts.iter().map(|x| x.ids.len()).collect();
        let ids: Vec<u32> = texts.iter().flat_map(|x| x.ids.iter().copied()).collect();
        let hidden = self.encoder.forward_packed(&ids, &lengths)?; // (n, h)
        let (n, h) = hidden.dims2()?;
        let (b, t) = (lengths.len(), lengths.iter().copied().max().unwrap_or(0));
        if lengths.iter().all(|&l| l == t) {
            return Ok(hidden.reshape((b, t, h))?);
        }
        // Row n is an extra zero row that every padding slot points at.
        let mut gather = Vec::with_capacity(b * t);
        let mut offset = 0u32;
        for &len in &lengths {
            gather.extend(offset..offset + len as u32);
            gather.extend(std::iter::repeat_n(n as u32, t - len));
            offset += len as u32;
        }
        let zero = Tensor::zeros((1, h), hidden.dtype(), hidden.device())?;
        let gather = Tensor::from_vec(gather, b * t, hidden.device())?;
        Ok(Tensor::cat(&[&hidden, &zero], 0)?
            .index_select(&gather, 0)?
            .reshape((b, t, h))?)
    }

    /// Right-pads tokenized texts to the longest of them, on the model's device.
    ///
    /// # Errors
    /// On a tensor allocation failure.
    pub fn pad(&self, texts: &[&TokenizedText]) -> Result<PaddedBatch> {
        let b = texts.len();
        let t = texts.iter().map(|x| x.ids.len()).max().unwrap_or(0);
        let pad_id = self.encoder.config().pad_token_id as u32;
        let mut ids = vec![pad_id; b * t];
        let mut mask = vec![0u32; b * t];
        for (row, text) in texts.iter().enumerate() {
            let len = text.ids.len();
            ids[row * t..row * t + len].copy_from_slice(&text.ids);
            mask[row * t..row * t + len].fill(1);
        }
        Ok(PaddedBatch {
            input_ids: Tensor::from_vec(ids, (b, t), &self.device)?,
            attention_mask: Tensor::from_vec(mask, (b, t), &self.device)?,
            token_type_ids: Tensor::zeros((b, t), DType::U32, &self.device)?,
        })
    }
}

/// Fails with [`Error::NonFiniteEmbedding`] naming the input of the first row of `x` (`(b, d)`)
/// that holds a NaN or an infinity; `inputs[row]` is the row's input position. One reduction
/// when every value is finite.
fn check_finite_rows(x: &Tensor, inputs: &[usize]) -> Result<()> {
    // x · 0 is 0 where x is finite and NaN where it is not.
    let zeros = x.affine(0.0, 0.0)?;
    let total = zeros.sum_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
    if total == 0.0 {
        return Ok(());
    }
    let rows = zeros.sum(1)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    let row = rows.iter().position(|v| *v != 0.0).unwrap_or(0);
    Err(Error::NonFiniteEmbedding {
        index: inputs.get(row).copied().unwrap_or(row),
    })
}

enum HeadEntry {
    Dense(PathBuf),
    Normalize,
}

/// Splits `modules.json` into the Transformer folder, the Pooling folder and the heads.
fn split_modules(
    dir: &Path,
    modules: &[ModuleEntry],
) -> Result<(PathBuf, Option<PathBuf>, Vec<HeadEntry>)> {
    let mut transformer = None;
    let mut pooling = None;
    let mut heads = Vec::new();
    for (pos, module) in modules.iter().enumerate() {
        let path = dir.join(&module.path);
        match (module.class(), pos) {
            ("Transformer" | "BERT", 0) => transformer = Some(path),
            ("Pooling", 1) => pooling = Some(path),
            ("Dense", _) if pooling.is_some() => heads.push(HeadEntry::Dense(path)),
            ("Normalize", _) if pooling.is_some() => heads.push(HeadEntry::Normalize),
            (class, _) => {
                return Err(Error::Unsupported(format!(
                    "module {class} at position {pos} of {} (supported: Transformer, Pooling, \
                     then Dense and Normalize)",
                    dir.join("modules.json").display()
                )))
            }
        }
    }
    let transformer = transformer.ok_or_else(|| {
        Error::Unsupported(format!(
            "{} does not start with a Transformer module",
            dir.join("modules.json").display()
        ))
    })?;
    Ok((transformer, pooling, heads))
}

/// Loads `tokenizer.json` and replaces its own truncation and padding with
/// sentence-transformers' (truncate at `max_seq_length`, pad nothing: batches are padded to
/// their longest text).
fn load_tokenizer(dir: &Path, max_seq_length: usize) -> Result<Tokenizer> {
    let path = folder::require_file(dir.join("tokenizer.json"))?;
    let bytes = std::fs::read(&path).map_err(|source| folder::io_error(&path, source))?;
    // Malformed JSON is reported by serde_json, naming line and column; the tokenizers crate
    // can panic on some of it (an `expect` in its decoder deserializer) instead of failing.
    serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|source| Error::Json {
        path: path.clone(),
        source,
    })?;
    let parsed = std::panic::catch_unwind(|| Tokenizer::from_bytes(&bytes)).map_err(|_| {
        Error::TokenizerLoad {
            path: path.clone(),
            source: "the tokenizers library panicked while reading this file".into(),
        }
    })?;
    let mut tokenizer = parsed.map_err(|source| Error::TokenizerLoad {
        path: path.clone(),
        source,
    })?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_seq_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        }))
        .map_err(|source| Error::TokenizerLoad { path, source })?;
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedder_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SentenceEmbedder>();
    }
}
