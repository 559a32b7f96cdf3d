//! Choosing and loading the encoder a Transformer module's `config.json` names.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use sbert_bert::{Architecture, BertConfig, BertModel, Encoder, ModernBertConfig, ModernBertModel};

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
/// (`model_type`), `model.safetensors` holds the weights.
///
/// # Errors
/// A missing or malformed file, an unsupported `model_type` (the error lists the supported
/// ones), an invalid config, or weights that do not fit the config.
pub(crate) fn load(dir: &Path, dtype: DType, device: &Device) -> Result<LoadedEncoder> {
    let config_path = folder::require_file(dir.join("config.json"))?;
    let raw: serde_json::Value = folder::read_json(&config_path)?;
    let model_type = raw.get("model_type").and_then(serde_json::Value::as_str);
    if model_type == Some("modernbert") {
        return load_modernbert(dir, &config_path, raw, dtype, device);
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
    let config: BertConfig = serde_json::from_value(raw).map_err(|source| Error::Json {
        path: config_path.clone(),
        source,
    })?;
    config
        .validate()
        .map_err(|e| Error::Unsupported(format!("{}: {e}", config_path.display())))?;
    let weights = folder::weights_file(dir)?;
    let (vb, names) = crate::weights::load_with_names(&weights, dtype, device)?;
    crate::weights::check_layer_count(&weights, &names, config.num_hidden_layers)?;
    let encoder = BertModel::load(vb, &config).map_err(|source| Error::Weights {
        path: weights.clone(),
        source,
    })?;
    Ok(LoadedEncoder {
        encoder: Box::new(encoder),
        weights,
    })
}

fn load_modernbert(
    dir: &Path,
    config_path: &Path,
    raw: serde_json::Value,
    dtype: DType,
    device: &Device,
) -> Result<LoadedEncoder> {
    let config: ModernBertConfig = serde_json::from_value(raw).map_err(|source| Error::Json {
        path: config_path.to_path_buf(),
        source,
    })?;
    config
        .validate()
        .map_err(|e| Error::Unsupported(format!("{}: {e}", config_path.display())))?;
    let weights = folder::weights_file(dir)?;
    let (vb, names) = crate::weights::load_with_names(&weights, dtype, device)?;
    crate::weights::check_layer_count(&weights, &names, config.num_hidden_layers)?;
    let encoder = ModernBertModel::load(vb, &config).map_err(|source| Error::Weights {
        path: weights.clone(),
        source,
    })?;
    Ok(LoadedEncoder {
        encoder: Box::new(encoder),
        weights,
    })
}
