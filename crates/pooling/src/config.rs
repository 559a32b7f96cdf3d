//! `1_Pooling/config.json` of a sentence-transformers model.

use serde::{Deserialize, Serialize};

use crate::{Pooling, PoolingError, PoolingMode};

/// `1_Pooling/config.json`, field for field. Old files have five keys (up to
/// `pooling_mode_mean_sqrt_len_tokens`), newer ones eight; missing flags are `false` and
/// `include_prompt` is `true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolingConfig {
    /// Width of the token embeddings being pooled.
    pub word_embedding_dimension: usize,
    /// CLS token.
    #[serde(default)]
    pub pooling_mode_cls_token: bool,
    /// Mean of the tokens.
    #[serde(default)]
    pub pooling_mode_mean_tokens: bool,
    /// Max over the tokens.
    #[serde(default)]
    pub pooling_mode_max_tokens: bool,
    /// Sum over √(token count).
    #[serde(default)]
    pub pooling_mode_mean_sqrt_len_tokens: bool,
    /// Position-weighted mean.
    #[serde(default)]
    pub pooling_mode_weightedmean_tokens: bool,
    /// Last token.
    #[serde(default)]
    pub pooling_mode_lasttoken: bool,
    /// Whether prompt tokens take part in pooling (we never add prompts, so it has no effect).
    #[serde(default = "default_true")]
    pub include_prompt: bool,
}

fn default_true() -> bool {
    true
}

impl PoolingConfig {
    /// The config sentence-transformers writes for `pooling` over embeddings of width `dim`.
    pub fn new(dim: usize, pooling: &Pooling) -> Self {
        let has = |m| pooling.modes().contains(&m);
        Self {
            word_embedding_dimension: dim,
            pooling_mode_cls_token: has(PoolingMode::Cls),
            pooling_mode_mean_tokens: has(PoolingMode::Mean),
            pooling_mode_max_tokens: has(PoolingMode::Max),
            pooling_mode_mean_sqrt_len_tokens: has(PoolingMode::MeanSqrtLen),
            pooling_mode_weightedmean_tokens: has(PoolingMode::WeightedMean),
            pooling_mode_lasttoken: has(PoolingMode::LastToken),
            include_prompt: true,
        }
    }
}

impl TryFrom<&PoolingConfig> for Pooling {
    type Error = PoolingError;

    /// The selected modes, concatenated in sentence-transformers' order.
    ///
    /// # Errors
    /// [`PoolingError::NoMode`] when no flag is set.
    fn try_from(cfg: &PoolingConfig) -> Result<Self, Self::Error> {
        let flags = [
            (cfg.pooling_mode_cls_token, PoolingMode::Cls),
            (cfg.pooling_mode_max_tokens, PoolingMode::Max),
            (cfg.pooling_mode_mean_tokens, PoolingMode::Mean),
            (
                cfg.pooling_mode_mean_sqrt_len_tokens,
                PoolingMode::MeanSqrtLen,
            ),
            (
                cfg.pooling_mode_weightedmean_tokens,
                PoolingMode::WeightedMean,
            ),
            (cfg.pooling_mode_lasttoken, PoolingMode::LastToken),
        ];
        Pooling::new(flags.into_iter().filter(|(on, _)| *on).map(|(_, m)| m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD_FIVE_KEYS: &str = r#"{
  "word_embedding_dimension": 384,
  "pooling_mode_cls_token": false,
  "pooling_mode_mean_tokens": true,
  "pooling_mode_max_tokens": false,
  "pooling_mode_mean_sqrt_len_tokens": false
}"#;

    const NEW_EIGHT_KEYS: &str = r#"{
  "word_embedding_dimension": 768,
  "pooling_mode_cls_token": true,
  "pooling_mode_mean_tokens": false,
  "pooling_mode_max_tokens": true,
  "pooling_mode_mean_sqrt_len_tokens": false,
  "pooling_mode_weightedmean_tokens": false,
  "pooling_mode_lasttoken": false,
  "include_prompt": false
}"#;

    #[test]
    fn old_five_key_file() {
        let cfg: PoolingConfig = serde_json::from_str(OLD_FIVE_KEYS).expect("parse");
        assert_eq!(cfg.word_embedding_dimension, 384);
        assert!(cfg.include_prompt);
        let pooling = Pooling::try_from(&cfg).expect("mode");
        assert_eq!(pooling.modes(), &[PoolingMode::Mean]);
    }

    #[test]
    fn new_eight_key_file_with_two_modes() {
        let cfg: PoolingConfig = serde_json::from_str(NEW_EIGHT_KEYS).expect("parse");
        assert!(!cfg.include_prompt);
        let pooling = Pooling::try_from(&cfg).expect("modes");
        assert_eq!(pooling.modes(), &[PoolingMode::Cls, PoolingMode::Max]);
        assert_eq!(
            PoolingConfig::new(768, &pooling),
            PoolingConfig {
                include_prompt: true,
                ..cfg
            }
        );
    }

    #[test]
    fn no_mode_is_an_error() {
        let cfg: PoolingConfig =
            serde_json::from_str(r#"{"word_embedding_dimension": 8}"#).expect("parse");
        assert!(matches!(Pooling::try_from(&cfg), Err(PoolingError::NoMode)));
    }
}
