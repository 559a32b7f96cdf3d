//! [`SentenceEmbedder`]: a loaded sentence-transformers model and its encoding pipeline
//! (tokenize → batch → encode → pool → heads → input order).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use sbert_bert::{BertModel, Encoder, TokenBatch, TokenEmbeddings};

use crate::encoders::EncoderModel;
use sbert_pooling::{Pooling, PoolingConfig, PoolingMode};
use tokenizers::Tokenizer;

use crate::batching::{self, PaddedBatch};
use crate::builder::{EmbedderBuilder, PromptChoice};
use crate::embeddings::{Embeddings, EncodeOptions, InputStats, Prompt};
use crate::error::{Error, Result};
use crate::folder::{self, HeadEntry, SentenceBertConfig};
use crate::heads::{self, Dense, Head};
use crate::similarity::{self, Similarity};
use crate::tokenize::{TextTokenizer, TokenizedText};

impl EmbedderBuilder {
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
        if self.threads == Some(0) {
            return Err(Error::InvalidArgument("threads must be at least 1".into()));
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
    /// The encoder's safetensors file (in the Transformer module's folder).
    weights: PathBuf,
    tokenizer: TextTokenizer,
    encoder: EncoderModel,
    pooling: Pooling,
    heads: Vec<Head>,
    batch_size: usize,
    max_batch_tokens: Option<usize>,
    device: Device,
    /// `prompts` of `config_sentence_transformers.json`: name → text put before an input.
    prompts: BTreeMap<String, String>,
    /// The prompt put before every text unless a call names another: the builder's, else the
    /// model's `default_prompt_name`. Never empty.
    prompt: Option<String>,
    /// `include_prompt` of the Pooling module: whether prompt tokens are pooled.
    include_prompt: bool,
    /// `similarity_fn_name` of `config_sentence_transformers.json` (cosine when absent).
    similarity_fn: Similarity,
    /// The builder's `threads(n)` pool; `None`: rayon's global pool.
    pool: Option<Arc<rayon::ThreadPool>>,
}

/// A folder without a Pooling module whose `config.json` names a sequence classifier is a
/// cross-encoder: an error that says so, instead of mean-pooling a reranker's tokens.
fn refuse_cross_encoder(dir: &Path) -> Result<()> {
    match crate::cross_encoder::architecture_in(dir) {
        Some(architecture) => Err(Error::Unsupported(format!(
            "{} is a cross-encoder ({architecture}): it scores pairs of texts, it does not embed \
             one; load it with CrossEncoder (`sbert rerank`)",
            dir.display()
        ))),
        None => Ok(()),
    }
}

/// The text of prompt `name`, or an error listing the prompts there are.
fn named_prompt<'p>(prompts: &'p BTreeMap<String, String>, name: &str) -> Result<&'p str> {
    prompts.get(name).map(String::as_str).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "the model has no prompt named {name:?} (its prompts: {:?})",
            prompts.keys().collect::<Vec<_>>()
        ))
    })
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

    pub(crate) fn load(dir: &Path, opts: EmbedderBuilder) -> Result<Self> {
        let pool = match opts.threads {
            None => None,
            Some(n) => Some(Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("sbert-{i}"))
                    .build()
                    .map_err(|e| {
                        Error::InvalidArgument(format!("cannot start {n} threads: {e}"))
                    })?,
            )),
        };
        let folder::Layout {
            kind,
            transformer: transformer_dir,
            pooling: pooling_dir,
            heads: mut heads_entries,
        } = folder::layout(dir)?;

        // The encoder and the tokenizer.
        let (encoder, weights, tokenizer): (EncoderModel, PathBuf, TextTokenizer) = match kind {
            folder::EncoderKind::Static => {
                if opts.quantization != sbert_bert::Quantization::None {
                    return Err(Error::Unsupported(format!(
                        "{} quantization of a static embedding table ({}): there is no matrix \
                         product to quantize",
                        opts.quantization,
                        transformer_dir.display()
                    )));
                }
                let (table, weights) = crate::static_embedding::StaticTable::load(
                    &transformer_dir,
                    opts.dtype,
                    &opts.device,
                )?;
                // sentence-transformers' StaticEmbedding: no special tokens, no truncation.
                (
                    EncoderModel::Static(table),
                    weights,
                    TextTokenizer::load_static(&transformer_dir)?,
                )
            }
            folder::EncoderKind::Transformer => {
                if pooling_dir.is_none() {
                    refuse_cross_encoder(dir)?;
                }
                let crate::encoders::LoadedEncoder { encoder, weights } = crate::encoders::load(
                    &transformer_dir,
                    opts.dtype,
                    &opts.device,
                    opts.quantization,
                )?;
                let sbert_cfg_path = transformer_dir.join("sentence_bert_config.json");
                let sbert_cfg: SentenceBertConfig = if sbert_cfg_path.exists() {
                    folder::read_json(&sbert_cfg_path)?
                } else {
                    SentenceBertConfig::default()
                };
                let max_seq_length = opts
                    .max_seq_length
                    .or(sbert_cfg.max_seq_length)
                    .or(folder::tokenizer_max_length(&transformer_dir)?)
                    .unwrap_or(encoder.max_positions())
                    .min(encoder.max_positions());
                if max_seq_length < 2 {
                    return Err(Error::InvalidArgument(format!(
                        "max_seq_length {max_seq_length} leaves no room for [CLS] and [SEP]"
                    )));
                }
                let tokenizer =
                    TextTokenizer::load(&transformer_dir, max_seq_length, sbert_cfg.do_lower_case)?;
                (encoder, weights, tokenizer)
            }
        };
        let vocab = tokenizer.inner().get_vocab_size(true);
        if vocab > encoder.vocab_size() {
            return Err(Error::Unsupported(format!(
                "the tokenizer has {vocab} tokens but the encoder's vocab_size is {}",
                encoder.vocab_size()
            )));
        }

        // Pooling.
        let pooling_config: Option<PoolingConfig> = match &pooling_dir {
            Some(pdir) => {
                let cfg: PoolingConfig = folder::read_json(&pdir.join("config.json"))?;
                if cfg.word_embedding_dimension != encoder.hidden_size() {
                    return Err(Error::Unsupported(format!(
                        "{} says word_embedding_dimension {} but the encoder's hidden_size is {}",
                        pdir.join("config.json").display(),
                        cfg.word_embedding_dimension,
                        encoder.hidden_size()
                    )));
                }
                Some(cfg)
            }
            None => None,
        };
        let pooling = match (&opts.pooling, &pooling_config) {
            (Some(p), _) => p.clone(),
            (None, Some(cfg)) => Pooling::try_from(cfg)?,
            // sentence-transformers' fallback for a plain Hugging Face model.
            (None, None) => Pooling::single(PoolingMode::Mean),
        };
        let include_prompt = pooling_config.as_ref().is_none_or(|c| c.include_prompt);

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
        let mut width = pooling.output_dim(encoder.hidden_size());
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
                    width = dense.out_features();
                    Head::Dense(dense)
                }
            });
        }

        let prompt_config = folder::read_sentence_transformers_config(dir)?;
        let similarity_fn = prompt_config.similarity_fn()?;
        let prompts = prompt_config.prompts;
        let prompt = match opts.prompt {
            Some(PromptChoice::Named(name)) => Some(named_prompt(&prompts, &name)?.to_string()),
            Some(PromptChoice::Text(text)) => Some(text),
            None => prompt_config
                .default_prompt_name
                .map(|name| prompts[&name].clone()),
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            prompts,
            prompt: prompt.filter(|p| !p.is_empty()),
            include_prompt,
            similarity_fn,
            pool,
            weights,
            tokenizer,
            encoder,
            pooling,
            heads,
            batch_size: opts.batch_size,
            max_batch_tokens: opts.max_batch_tokens,
            device: opts.device,
        })
    }

    /// Runs `work` on the model's threads: its own pool when the builder set `threads(n)`, else
    /// rayon's global pool. Every encoding call runs there already; this puts other parallel
    /// work (the [`crate::search`] functions, for instance) under the same thread policy.
    pub fn install<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(work),
            None => work(),
        }
    }

    /// Threads the model's CPU work runs on.
    pub fn threads(&self) -> usize {
        self.install(rayon::current_num_threads)
    }

    /// The prompts the model's `config_sentence_transformers.json` names (`"query"` →
    /// `"query: "`, …); empty when it names none. sentence-transformers puts a prompt's text
    /// in front of each input when `encode` is given `prompt_name`.
    pub fn prompts(&self) -> &BTreeMap<String, String> {
        &self.prompts
    }

    /// The prompt put before every text when a call names none ([`Prompt::Default`]): the
    /// builder's, else the model's `default_prompt_name`.
    pub fn default_prompt(&self) -> Option<&str> {
        self.prompt.as_deref()
    }

    /// Whether a prompt's tokens take part in pooling (`include_prompt` of the Pooling module;
    /// when `false`, pooling starts after the prompt, as in sentence-transformers).
    pub fn pools_prompt(&self) -> bool {
        self.include_prompt
    }

    /// The text `prompt` stands for in this model, `None` for no prompt.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a name the model does not define.
    pub fn prompt_text<'a>(&'a self, prompt: Prompt<'a>) -> Result<Option<&'a str>> {
        Ok(match prompt {
            Prompt::Default => self.prompt.as_deref(),
            Prompt::None => None,
            Prompt::Named(name) => Some(named_prompt(&self.prompts, name)?),
            Prompt::Text(text) => Some(text),
        }
        .filter(|p| !p.is_empty()))
    }

    /// The folder the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What an index built with this model records of it ([`crate::search::StoredIndex`]):
    /// a fingerprint of the files that define the model — weights, configs, tokenizer, every
    /// module's folder (`*.json`, `*.safetensors`, `*.txt`, `*.model`; hidden files and the
    /// `onnx` / `openvino` exports aside) — and of the settings that change an embedding. The
    /// folder's name is recorded but not compared: a copy elsewhere is the same model.
    ///
    /// # Errors
    /// [`Error::Io`] when a file of the folder cannot be read.
    pub fn identity(&self) -> Result<crate::search::ModelIdentity> {
        let settings = format!(
            "{}|{}|{}|{}",
            self.dim(),
            self.pooling(),
            self.normalizes(),
            self.max_seq_length()
        );
        let fingerprint = crate::folder::fingerprint(&self.dir, settings.as_bytes())?;
        Ok(crate::search::ModelIdentity {
            name: self.dir.file_name().map_or_else(
                || self.dir.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            fingerprint,
            dim: self.dim(),
            pooling: self.pooling().to_string(),
            normalize: self.normalizes(),
            max_seq_length: self.max_seq_length(),
        })
    }

    /// The encoder's weights file: `model.safetensors` of the Transformer module's folder
    /// (as `modules.json` places it).
    pub fn weights_path(&self) -> &Path {
        &self.weights
    }

    /// The encoder: a transformer of one of the supported families or a static table (it
    /// implements [`Encoder`]; [`EncoderModel::bert`] gives the BERT-family model training
    /// reads).
    pub fn encoder(&self) -> &EncoderModel {
        &self.encoder
    }

    /// The same pipeline (tokenizer, pooling, heads) around another encoder of the same shape:
    /// the same weights as `Var`s for training, for instance.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `encoder` differs from the current one in hidden size,
    /// vocabulary size, positions, device or dtype.
    pub fn with_encoder(mut self, encoder: BertModel) -> Result<Self> {
        let old = self.encoder.as_encoder();
        let same = old.hidden_size() == encoder.hidden_size()
            && old.vocab_size() == Encoder::vocab_size(&encoder)
            && old.max_positions() == encoder.max_positions()
            && encoder.device().same_device(&self.device)
            && encoder.dtype() == old.dtype();
        if !same {
            return Err(Error::InvalidArgument(format!(
                "an encoder of hidden size {}, vocabulary {}, {} positions on {:?} in {:?} cannot \
                 replace one of {}, {}, {} on {:?} in {:?}",
                encoder.hidden_size(),
                Encoder::vocab_size(&encoder),
                encoder.max_positions(),
                encoder.device().location(),
                encoder.dtype(),
                old.hidden_size(),
                old.vocab_size(),
                old.max_positions(),
                self.device.location(),
                old.dtype()
            )));
        }
        self.encoder = EncoderModel::Bert(encoder);
        Ok(self)
    }

    /// The tokenizer, with sentence-transformers' truncation and no padding.
    pub fn tokenizer(&self) -> &Tokenizer {
        self.tokenizer.inner()
    }

    /// `text` as the tokenizer encodes it, exactly as given (no prompt, stripping or
    /// lower-casing), with byte offsets into it, truncated at `max_seq_length`; a long text
    /// costs what its kept tokens cost (it is encoded through a prefix with the same first
    /// tokens). For showing tokens (`/tokenize`); [`SentenceEmbedder::tokenize`] gives what
    /// the model embeds.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] when the tokenizer fails.
    pub fn encode_with_offsets(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<tokenizers::Encoding> {
        self.tokenizer.encode_with_offsets(text, add_special_tokens)
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
        self.tokenizer.max_seq_length()
    }

    /// Texts per forward pass.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Width of the embeddings [`SentenceEmbedder::embed`] returns (before any
    /// `truncate_dim`).
    pub fn dim(&self) -> usize {
        self.output_dim(&self.pooling)
    }

    fn output_dim(&self, pooling: &Pooling) -> usize {
        heads::output_width(&self.heads)
            .unwrap_or_else(|| pooling.output_dim(self.encoder.hidden_size()))
    }

    /// Tokenizes as sentence-transformers does: `prompt` before each text, strip, lower-case
    /// if `do_lower_case`, add `[CLS]`/`[SEP]`, truncate at `max_seq_length`, no padding.
    ///
    /// # Errors
    /// When the tokenizer fails or `prompt` names a prompt the model does not define.
    pub fn tokenize<S: AsRef<str>>(
        &self,
        texts: &[S],
        prompt: Prompt<'_>,
    ) -> Result<Vec<TokenizedText>> {
        let texts: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        let _span = tracing::debug_span!("tokenize", texts = texts.len()).entered();
        let prompt = self.prompt_text(prompt)?;
        // On the model's threads, as its encoding runs.
        self.install(|| match prompt {
            Some(text) => self
                .tokenizer
                .tokenize_prompted(&texts, text, !self.include_prompt),
            None => self.tokenizer.tokenize(&texts),
        })
    }

    /// Embeds `texts` with the model's settings: [`SentenceEmbedder::encode`] with
    /// [`EncodeOptions::default`].
    ///
    /// # Errors
    /// As [`SentenceEmbedder::encode`].
    pub fn embed<S: AsRef<str>>(&self, texts: &[S]) -> Result<Embeddings> {
        self.encode(texts, &EncodeOptions::default())
    }

    /// Embeds `texts` as sentence-transformers' `encode` does, with its per-call settings
    /// (`options`): one row of `f32` per text, in input order, with each text's token count
    /// and truncation. An empty slice gives no rows. Empty and whitespace-only texts are
    /// embedded as the empty text (`[CLS] [SEP]`), as sentence-transformers does. Where the
    /// model's Pooling has `include_prompt: false`, pooling leaves a prompt's tokens out.
    ///
    /// # Errors
    /// When tokenization or a tensor op fails, an embedding is not finite
    /// ([`Error::NonFiniteEmbedding`]), or an option is out of range (a batch size or
    /// `truncate_dim` of 0, a `truncate_dim` above [`SentenceEmbedder::dim`], a prompt name the
    /// model does not define).
    pub fn encode<S: AsRef<str>>(
        &self,
        texts: &[S],
        options: &EncodeOptions<'_>,
    ) -> Result<Embeddings> {
        let _span = tracing::debug_span!("encode", texts = texts.len()).entered();
        let tokenized = self.tokenize(texts, options.prompt)?;
        self.embed_tokenized(&tokenized, options)
    }

    /// [`SentenceEmbedder::encode`] as an `(n, dim)` tensor on the model's device, in its
    /// dtype (sentence-transformers' `convert_to_tensor=True`): for callers that keep
    /// computing on the device.
    ///
    /// # Errors
    /// As [`SentenceEmbedder::encode`].
    pub fn encode_tensor<S: AsRef<str>>(
        &self,
        texts: &[S],
        options: &EncodeOptions<'_>,
    ) -> Result<Tensor> {
        let tokenized = self.tokenize(texts, options.prompt)?;
        self.check_tokenized(&tokenized)?;
        self.tokens_to_tensor(&tokenized, options)
    }

    /// Embeds already tokenized inputs (ids with the special tokens, as
    /// [`SentenceEmbedder::tokenize`] makes them), as [`SentenceEmbedder::encode`] would embed
    /// the texts they came from (`options.prompt` is not used: a prompt is part of the ids).
    /// Lets a caller tokenize once (to count tokens, or to refuse truncation) and embed
    /// without tokenizing again, or embed ids it was handed.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty id list, more ids than `max_seq_length`, or an id
    /// outside the vocabulary; otherwise as [`SentenceEmbedder::encode`].
    pub fn embed_tokenized(
        &self,
        tokenized: &[TokenizedText],
        options: &EncodeOptions<'_>,
    ) -> Result<Embeddings> {
        self.check_tokenized(tokenized)?;
        let x = self.tokens_to_tensor(tokenized, options)?;
        let dim = x.dim(1)?;
        let values = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let inputs = tokenized
            .iter()
            .map(|t| InputStats {
                tokens: t.ids.len(),
                truncated: t.truncated,
            })
            .collect();
        Embeddings::new(values, dim, inputs)
    }

    fn check_tokenized(&self, tokenized: &[TokenizedText]) -> Result<()> {
        let vocab = self.encoder.vocab_size();
        // A static model embeds a text without tokens (as the zero vector).
        let least = usize::from(!matches!(self.encoder, EncoderModel::Static(_)));
        for (i, t) in tokenized.iter().enumerate() {
            if t.ids.len() < least || t.ids.len() > self.max_seq_length() {
                return Err(Error::InvalidArgument(format!(
                    "input {i} has {} token ids; {least} to {} are accepted",
                    t.ids.len(),
                    self.max_seq_length()
                )));
            }
            if let Some(bad) = t.ids.iter().find(|&&id| id as usize >= vocab) {
                return Err(Error::InvalidArgument(format!(
                    "input {i}: token id {bad} is outside the vocabulary (size {vocab})"
                )));
            }
        }
        Ok(())
    }

    /// The pipeline after tokenization, with `options` applied: `(n, dim)` on the device.
    fn tokens_to_tensor(
        &self,
        tokenized: &[TokenizedText],
        options: &EncodeOptions<'_>,
    ) -> Result<Tensor> {
        let batch_size = options.batch_size.unwrap_or(self.batch_size);
        if batch_size == 0 {
            return Err(Error::InvalidArgument(
                "batch size must be at least 1".into(),
            ));
        }
        if let Some(d) = options.truncate_dim {
            let full = self.dim();
            if d == 0 || d > full {
                return Err(Error::InvalidArgument(format!(
                    "truncate_dim must be between 1 and the model's dimension {full}, not {d}"
                )));
            }
        }
        let module_normalize = options.normalize != Some(false);
        let mut x = self
            .run_batched(
                tokenized,
                std::slice::from_ref(&self.pooling),
                batch_size,
                module_normalize,
            )?
            .pop()
            .expect("one pooling in, one tensor out");
        if let Some(d) = options.truncate_dim {
            x = x.narrow(1, 0, d)?;
        }
        if options.normalize == Some(true) {
            x = similarity::normalize(&x)?;
        }
        Ok(x)
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
        self.run_batched(
            &self.tokenize(texts, Prompt::Default)?,
            poolings,
            self.batch_size,
            true,
        )
    }

    /// The similarity function of the model (`similarity_fn_name` of
    /// `config_sentence_transformers.json`; cosine when the model names none), which
    /// [`SentenceEmbedder::similarity`] applies.
    pub fn similarity_fn(&self) -> Similarity {
        self.similarity_fn
    }

    /// The similarity of every row of `a` with every row of `b` under the model's
    /// [`SentenceEmbedder::similarity_fn`]: `a.len()` rows of `b.len()` scores
    /// (sentence-transformers' `model.similarity`).
    ///
    /// # Errors
    /// When the two sides differ in dimension.
    pub fn similarity(&self, a: &Embeddings, b: &Embeddings) -> Result<Vec<Vec<f32>>> {
        let m = self
            .similarity_fn
            .matrix(&a.to_tensor(&Device::Cpu)?, &b.to_tensor(&Device::Cpu)?)?;
        Ok(m.to_vec2()?)
    }

    /// The similarity of row `i` of `a` with row `i` of `b`, for each `i`, under the model's
    /// [`SentenceEmbedder::similarity_fn`] (sentence-transformers' `similarity_pairwise`).
    ///
    /// # Errors
    /// When the two sides differ in length or dimension.
    pub fn similarity_pairwise(&self, a: &Embeddings, b: &Embeddings) -> Result<Vec<f32>> {
        let s = self
            .similarity_fn
            .pairwise(&a.to_tensor(&Device::Cpu)?, &b.to_tensor(&Device::Cpu)?)?;
        Ok(s.to_vec1()?)
    }

    fn check_heads_fit(&self, pooling: &Pooling) -> Result<()> {
        let width = pooling.output_dim(self.encoder.hidden_size());
        match heads::input_width(&self.heads) {
            Some(in_features) if in_features != width => Err(Error::InvalidArgument(format!(
                "the model's Dense module takes {in_features} features but pooling '{pooling}' gives {width}"
            ))),
            _ => Ok(()),
        }
    }

    /// The batching loop of sentence-transformers' `encode`: sort by length (longest first),
    /// chunk into `batch_size` (or under the token budget), encode each chunk, pool every way,
    /// apply the heads (the `Normalize` module only when `normalize_module`), restore the
    /// input order.
    fn run_batched(
        &self,
        tokenized: &[TokenizedText],
        poolings: &[Pooling],
        batch_size: usize,
        normalize_module: bool,
    ) -> Result<Vec<Tensor>> {
        self.install(|| self.run_batched_here(tokenized, poolings, batch_size, normalize_module))
    }

    fn run_batched_here(
        &self,
        tokenized: &[TokenizedText],
        poolings: &[Pooling],
        batch_size: usize,
        normalize_module: bool,
    ) -> Result<Vec<Tensor>> {
        let n = tokenized.len();
        let _span = tracing::debug_span!("encode_tokens", texts = n).entered();
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
        // A static table with its own (mean) pooling: the mean of each text's rows, computed
        // directly (no token tensor; a text without tokens is the zero vector).
        if let EncoderModel::Static(table) = &self.encoder {
            if poolings
                .iter()
                .all(|p| *p == Pooling::single(PoolingMode::Mean))
            {
                let ids: Vec<&[u32]> = tokenized.iter().map(|t| t.ids.as_slice()).collect();
                let idx: Vec<usize> = (0..n).collect();
                let means = table.means(&ids)?;
                return poolings
                    .iter()
                    .map(|_| {
                        let out = heads::apply(&self.heads, means.clone(), normalize_module)?;
                        check_finite_rows(&out, &idx)?;
                        Ok(out)
                    })
                    .collect();
            }
        }
        let lengths: Vec<usize> = tokenized.iter().map(|t| t.ids.len()).collect();
        let batches = batching::plan(&lengths, batch_size, self.max_batch_tokens);
        let order: Vec<usize> = batches.concat();

        let mut chunks: Vec<Vec<Tensor>> = vec![Vec::new(); poolings.len()];
        for idx in &batches {
            let group: Vec<&TokenizedText> = idx.iter().map(|&i| &tokenized[i]).collect();
            let _span = tracing::trace_span!(
                "batch",
                texts = group.len(),
                tokens = group.iter().map(|t| t.ids.len()).sum::<usize>()
            )
            .entered();
            let mut tokens = self.token_embeddings(&group)?;
            if group.iter().any(|t| t.prompt_tokens > 0) {
                tokens = tokens.without_prompts(&group, idx, poolings)?;
            }
            // MAX pooling would hide a NaN token (max ignores NaN), so check before pooling too.
            tokens.check_finite(idx)?;
            for (k, pooling) in poolings.iter().enumerate() {
                let out = heads::apply(&self.heads, tokens.pool(pooling)?, normalize_module)?;
                check_finite_rows(&out, idx)?;
                chunks[k].push(out);
            }
        }

        let inverse = Tensor::from_vec(batching::inverse(&order), n, &self.device)?;
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
        batching::plan(lengths, self.batch_size, self.max_batch_tokens)
    }

    /// Applies the modules after pooling (Dense layers, then Normalize, as configured) to pooled
    /// embeddings `(n, pooled_dim)`. Differentiable with respect to `x` (the module weights are
    /// fixed).
    ///
    /// # Errors
    /// When the width does not fit a Dense module.
    pub fn apply_heads(&self, x: Tensor) -> Result<Tensor> {
        heads::apply(&self.heads, x, true)
    }

    /// The token embeddings of one batch, in the layout the encoder computed them in.
    fn token_embeddings(&self, group: &[&TokenizedText]) -> Result<BatchTokens> {
        let (ids, lengths) = TokenizedText::pack(group.iter().copied());
        let batch = TokenBatch::new(&ids, &lengths);
        Ok(match self.encoder.forward(batch)? {
            TokenEmbeddings::Packed(rows) => BatchTokens::Packed { rows, lengths },
            TokenEmbeddings::Padded { tokens, mask } => BatchTokens::Padded { tokens, mask },
        })
    }

    /// Right-pads tokenized texts to the longest of them, on the model's device.
    ///
    /// # Errors
    /// On a tensor allocation failure.
    pub fn pad(&self, texts: &[&TokenizedText]) -> Result<PaddedBatch> {
        let pad_id = self.encoder.pad_token_id();
        batching::pad(texts, pad_id, &self.device)
    }
}

/// The token embeddings of one batch, as the encoder gave them.
enum BatchTokens {
    /// `(Σ lengths, h)`: the texts back to back.
    Packed { rows: Tensor, lengths: Vec<usize> },
    /// `(b, t, h)` with its `(b, t)` attention mask.
    Padded { tokens: Tensor, mask: Tensor },
}

impl BatchTokens {
    /// The tokens after each text's prompt (`prompt_tokens` of `group`, the batch's texts, at
    /// input positions `inputs`), packed: what pooling sees when the model's Pooling has
    /// `include_prompt: false`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when a prompt fills its whole input (truncation left no text
    /// token) or a pooling is `weightedmean` (its weights count positions from the start of
    /// the input, which a packed view without the prompt cannot reproduce).
    fn without_prompts(
        self,
        group: &[&TokenizedText],
        inputs: &[usize],
        poolings: &[Pooling],
    ) -> Result<Self> {
        if poolings
            .iter()
            .any(|p| p.modes().contains(&PoolingMode::WeightedMean))
        {
            return Err(Error::InvalidArgument(
                "weightedmean pooling with include_prompt false (prompt tokens left out) is not \
                 supported"
                    .into(),
            ));
        }
        for (t, &i) in group.iter().zip(inputs) {
            if t.prompt_tokens >= t.ids.len() {
                return Err(Error::InvalidArgument(format!(
                    "input {i}: the prompt fills all {} tokens, leaving nothing to pool (raise \
                     max_seq_length or shorten the prompt)",
                    t.ids.len()
                )));
            }
        }
        // Row of each text's first token: back to back when packed, every `t` rows when padded.
        let (rows, padded_width) = match &self {
            BatchTokens::Packed { rows, .. } => (rows.clone(), None),
            BatchTokens::Padded { tokens, .. } => {
                let (b, t, h) = tokens.dims3()?;
                (tokens.reshape((b * t, h))?, Some(t))
            }
        };
        let mut keep = Vec::new();
        let mut lengths = Vec::with_capacity(group.len());
        let mut start = 0usize;
        for (r, t) in group.iter().enumerate() {
            let len = t.ids.len();
            let first = padded_width.map_or(start, |width| r * width);
            keep.extend((first + t.prompt_tokens..first + len).map(|row| row as u32));
            lengths.push(len - t.prompt_tokens);
            start += len;
        }
        let keep = Tensor::from_vec(keep, lengths.iter().sum::<usize>(), rows.device())?;
        Ok(BatchTokens::Packed {
            rows: rows.contiguous()?.index_select(&keep, 0)?,
            lengths,
        })
    }

    /// Fails with [`Error::NonFiniteEmbedding`] when a token of text `inputs[k]` (the batch's
    /// `k`-th text) is not finite.
    fn check_finite(&self, inputs: &[usize]) -> Result<()> {
        match self {
            BatchTokens::Packed { rows, lengths } => {
                let owners: Vec<usize> = inputs
                    .iter()
                    .zip(lengths)
                    .flat_map(|(&i, &len)| std::iter::repeat_n(i, len))
                    .collect();
                check_finite_rows(rows, &owners)
            }
            BatchTokens::Padded { tokens, .. } => {
                check_finite_rows(&tokens.flatten_from(1)?, inputs)
            }
        }
    }

    /// The pooled vectors `(b, width)`.
    fn pool(&self, pooling: &Pooling) -> Result<Tensor> {
        Ok(match self {
            BatchTokens::Packed { rows, lengths } => pooling.pool_packed(rows, lengths)?,
            BatchTokens::Padded { tokens, mask } => pooling.pool(tokens, mask)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedder_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SentenceEmbedder>();
    }
}
