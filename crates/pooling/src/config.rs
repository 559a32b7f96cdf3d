//! `1_Pooling/config.json` of a sentence-transformers model.

use serde::{Deserialize, Serialize};

use crate::{Pooling, PoolingError, PoolingMode};

/// `1_Pooling/config.json`, field for field. Old files have five keys (up to
/// `pooling_mode_mean_sqrt_len_tokens`), newer ones eight; missing flags are `false` and
/// `include_prompt` is `true`. sentence-transformers 6 writes `embedding_dimension` and one
/// `pooling_mode` (a mode name, or a list of them) instead of the flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolingConfig {
    /// Width of the token embeddings being pooled.
    #[serde(alias = "embedding_dimension")]
    pub word_embedding_dimension: usize,
    /// sentence-transformers 6's modes by name, concatenated in this order; when present, the
    /// flags below are not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooling_mode: Option<ModeNames>,
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
    /// Whether the tokens of a prompt put before the text take part in pooling.
    #[serde(default = "default_true")]
    pub include_prompt: bool,
}

fn default_true() -> bool {
    true
}

/// `pooling_mode` of sentence-transformers 6: one mode name or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModeNames {
    /// One mode (`"mean"`).
    One(String),
    /// Several, concatenated in order (`["cls", "mean"]`).
    Many(Vec<String>),
}

impl PoolingConfig {
    /// The config sentence-transformers writes for `pooling` over embeddings of width `dim`.
    pub fn new(dim: usize, pooling: &Pooling) -> Self {
        let has = |m| pooling.modes().contains(&m);
        Self {
            word_embedding_dimension: dim,
            pooling_mode: None,
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

    /// The selected modes: `pooling_mode` in its order, or the flags in sentence-transformers'
    /// order.
    ///
    /// # Errors
    /// [`PoolingError::NoMode`] when no mode is selected, or the error of an unknown mode name.
    fn try_from(cfg: &PoolingConfig) -> Result<Self, Self::Error> {
        if let Some(names) = &cfg.pooling_mode {
            let names = match names {
                ModeNames::One(name) => std::slice::from_ref(name),
                ModeNames::Many(names) => names.as_slice(),
            };
            let modes = names
                .iter()
                .map(|n| n.parse::<PoolingMode>())
                .collect::<Result<Vec<_>, _>>()?;
            if !modes.windows(2).all(|w| w[0] < w[1]) {
                return Err(PoolingError::ModeOrder {
                    given: names.to_vec(),
                });
            }
            return Pooling::new(modes);
        }
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
    fn reads_sentence_transformers_6_names() {
        let one: PoolingConfig = serde_json::from_str(
            r#"{"embedding_dimension": 32, "pooling_mode": "max", "include_prompt": false}"#,
        )
        .expect("parse");
        assert_eq!(one.word_embedding_dimension, 32);
        assert!(!one.include_prompt);
        let pooling = Pooling::try_from(&one).expect("modes");
        assert_eq!(pooling.modes(), &[PoolingMode::Max]);
        let many: PoolingConfig =
            serde_json::from_str(r#"{"embedding_dimension": 8, "pooling_mode": ["cls", "mean"]}"#)
                .expect("parse");
        let pooling = Pooling::try_from(&many).expect("modes");
        assert_eq!(pooling.modes(), &[PoolingMode::Cls, PoolingMode::Mean]);
        // sentence-transformers 6 would concatenate mean first; Pooling cannot, so it refuses.
        let reordered: PoolingConfig =
            serde_json::from_str(r#"{"embedding_dimension": 8, "pooling_mode": ["mean", "cls"]}"#)
                .expect("parse");
        assert!(matches!(
            Pooling::try_from(&reordered),
            Err(PoolingError::ModeOrder { .. })
        ));
        let unknown: PoolingConfig =
            serde_json::from_str(r#"{"embedding_dimension": 8, "pooling_mode": "median"}"#)
                .expect("parse");
        assert!(Pooling::try_from(&unknown).is_err());
    }

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
