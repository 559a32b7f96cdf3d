//! Choosing and loading the encoder a Transformer module's `config.json` names.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use sbert_bert::{
    Architecture, BertConfig, BertModel, Encoder, ModernBertConfig, ModernBertModel, Quantization,
    TokenBatch, TokenEmbeddings,
};

use crate::error::{Error, Result};
use crate::folder;

/// The encoder of a model folder: a transformer of one of the supported families, or a static
/// embedding table. [`crate::SentenceEmbedder::encoder`] returns it; it implements
/// [`Encoder`], and names the concrete model for the code that needs one (training reads a
/// [`BertModel`]'s weights, a benchmark counts its operations).
#[derive(Debug)]
#[non_exhaustive]
pub enum EncoderModel {
    /// BERT, RoBERTa / XLM-RoBERTa, DistilBERT or MPNet.
    Bert(BertModel),
    /// ModernBERT.
    ModernBert(ModernBertModel),
    /// A static embedding table (model2vec).
    Static(crate::StaticTable),
}

impl EncoderModel {
    /// The encoder as the trait object the pipeline runs.
    pub fn as_encoder(&self) -> &dyn Encoder {
        match self {
            Self::Bert(m) => m,
            Self::ModernBert(m) => m,
            Self::Static(m) => m,
        }
    }

    /// What the encoder is, in words: `"a BERT-family encoder"`, `"ModernBERT"`, `"a static
    /// embedding table (model2vec)"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Bert(_) => "a BERT-family encoder",
            Self::ModernBert(_) => "ModernBERT",
            Self::Static(_) => "a static embedding table (model2vec)",
        }
    }

    /// The BERT-family model, when it is one (what training needs).
    pub fn bert(&self) -> Option<&BertModel> {
        match self {
            Self::Bert(m) => Some(m),
            _ => None,
        }
    }

    /// Floating-point operations of one pass over a sequence of `len` tokens (a multiply-add
    /// counts 2).
    pub fn flops(&self, len: usize) -> f64 {
        match self {
            Self::Bert(m) => m.flops(len),
            Self::ModernBert(m) => m.flops(len),
            Self::Static(m) => m.flops(len),
        }
    }
}

impl Encoder for EncoderModel {
    fn hidden_size(&self) -> usize {
        self.as_encoder().hidden_size()
    }

    fn max_positions(&self) -> usize {
        self.as_encoder().max_positions()
    }

    fn vocab_size(&self) -> usize {
        self.as_encoder().vocab_size()
    }

    fn pad_token_id(&self) -> u32 {
        self.as_encoder().pad_token_id()
    }

    fn device(&self) -> &Device {
        self.as_encoder().device()
    }

    fn dtype(&self) -> DType {
        self.as_encoder().dtype()
    }

    fn forward(&self, batch: TokenBatch<'_>) -> candle_core::Result<TokenEmbeddings> {
        self.as_encoder().forward(batch)
    }
}

/// An encoder and the weights file it was read from.
pub(crate) struct LoadedEncoder {
    pub encoder: EncoderModel,
    pub weights: PathBuf,
}

/// The `model_type`s [`load`] accepts, for error messages.
fn supported() -> String {
    let mut types = Architecture::MODEL_TYPES.to_vec();
    types.push("modernbert");
    types.join(", ")
}

/// Loads the encoder of the Transformer module in `dir`: `config.json` names the architecture
/// (`model_type`), `model.safetensors` holds the weights; `quantization` applies to the
/// BERT family.
///
/// # Errors
/// A missing or malformed file, an unsupported `model_type` (the error lists the supported
/// ones), an invalid config, weights that do not fit the config, or a quantization the
/// encoder, device or dtype cannot run.
pub(crate) fn load(
    dir: &Path,
    dtype: DType,
    device: &Device,
    quantization: Quantization,
) -> Result<LoadedEncoder> {
    load_with_head(dir, dtype, device, quantization, |_| Ok(())).map(|(encoder, ())| encoder)
}

/// [`load`], and `head` built from the same weights file (a task head beside the encoder's
/// weights: a cross-encoder's classifier), the file read once.
pub(crate) fn load_with_head<H>(
    dir: &Path,
    dtype: DType,
    device: &Device,
    quantization: Quantization,
    head: impl FnOnce(candle_nn::VarBuilder<'static>) -> Result<H>,
) -> Result<(LoadedEncoder, H)> {
    let config_path = folder::require_file(dir.join("config.json"))?;
    let raw: serde_json::Value = folder::read_json(&config_path)?;
    let model_type = raw.get("model_type").and_then(serde_json::Value::as_str);
    if model_type == Some("modernbert") {
        if quantization != Quantization::None {
            return Err(Error::Unsupported(format!(
                "{quantization} quantization of ModernBERT ({}): the int8 kernels serve the BERT \
                 family's packed pass",
                config_path.display()
            )));
        }
        let config: ModernBertConfig = parse(&config_path, raw, ModernBertConfig::validate)?;
        return with_weights(
            dir,
            config.num_hidden_layers,
            dtype,
            device,
            |vb| ModernBertModel::load(vb, &config).map(EncoderModel::ModernBert),
            head,
        );
    }
    if let Some(kind) = model_type {
        if Architecture::from_model_type(Some(kind)).is_err() {
            return Err(Error::Unsupported(format!(
                "model_type {kind:?} in {} (supported: {})",
                config_path.display(),
                supported()
            )));
        }
    }
    let config: BertConfig = parse(&config_path, raw, BertConfig::validate)?;
    if quantization != Quantization::None && !(device.is_cpu() && dtype == DType::F32) {
        return Err(Error::Unsupported(format!(
            "{quantization} quantization on {:?} in {dtype:?}: the int8 kernels run on the CPU \
             from f32 weights",
            device.location()
        )));
    }
    with_weights(
        dir,
        config.num_hidden_layers,
        dtype,
        device,
        |vb| {
            BertModel::load(vb, &config)?
                .quantize(quantization)
                .map(EncoderModel::Bert)
        },
        head,
    )
}

/// The config `raw` (read from `path`) as `T`, checked by `validate`.
fn parse<T: serde::de::DeserializeOwned>(
    path: &Path,
    raw: serde_json::Value,
    validate: impl FnOnce(&T) -> candle_core::Result<()>,
) -> Result<T> {
    let config: T = serde_json::from_value(raw).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    validate(&config).map_err(|e| Error::Unsupported(format!("{}: {e}", path.display())))?;
    Ok(config)
}

/// Reads the module's weights (checking that the file holds no layer past `layers`) and builds
/// the encoder over them.
fn with_weights<H>(
    dir: &Path,
    layers: usize,
    dtype: DType,
    device: &Device,
    build: impl FnOnce(candle_nn::VarBuilder<'static>) -> candle_core::Result<EncoderModel>,
    head: impl FnOnce(candle_nn::VarBuilder<'static>) -> Result<H>,
) -> Result<(LoadedEncoder, H)> {
    let weights = folder::weights_file(dir)?;
    let (vb, names) = crate::weights::load_with_names(&weights, dtype, device)?;
    crate::weights::check_layer_count(&weights, &names, layers)?;
    let encoder = build(vb.clone()).map_err(|source| Error::Weights {
        path: weights.clone(),
        source,
    })?;
    let head = head(vb)?;
    Ok((LoadedEncoder { encoder, weights }, head))
}
