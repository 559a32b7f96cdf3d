//! Choosing and loading the encoder a Transformer module's `config.json` names.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use sbert_bert::{
    Architecture, BertConfig, BertModel, Encoder, ModernBertConfig, ModernBertModel, Quantization,
};

use crate::error::{Error, Result};
use crate::folder;

/// An encoder and the weights file it was read from.
pub(crate) struct LoadedEncoder {
    pub encoder: Box<dyn Encoder>,
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
        return with_weights(dir, config.num_hidden_layers, dtype, device, |vb| {
            ModernBertModel::load(vb, &config)
        });
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
    with_weights(dir, config.num_hidden_layers, dtype, device, |vb| {
        BertModel::load(vb, &config)?.quantize(quantization)
    })
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
fn with_weights<E: Encoder + 'static>(
    dir: &Path,
    layers: usize,
    dtype: DType,
    device: &Device,
    build: impl FnOnce(candle_nn::VarBuilder<'static>) -> candle_core::Result<E>,
) -> Result<LoadedEncoder> {
    let weights = folder::weights_file(dir)?;
    let (vb, names) = crate::weights::load_with_names(&weights, dtype, device)?;
    crate::weights::check_layer_count(&weights, &names, layers)?;
    let encoder = build(vb).map_err(|source| Error::Weights {
        path: weights.clone(),
        source,
    })?;
    Ok(LoadedEncoder {
        encoder: Box::new(encoder),
        weights,
    })
}
