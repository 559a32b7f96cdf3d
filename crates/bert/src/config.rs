//! `config.json` of a Hugging Face BERT checkpoint.

use serde::{Deserialize, Serialize};

/// The activation of the feed-forward block (`hidden_act` in `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub enum HiddenAct {
    /// Exact GELU, `x · Φ(x)` with the error function (HF `"gelu"`).
    #[default]
    #[serde(rename = "gelu")]
    Gelu,
    /// The tanh approximation of GELU (HF `"gelu_new"`, `"gelu_pytorch_tanh"`, `"gelu_fast"`).
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
    /// `max(0, x)`.
    #[serde(rename = "relu")]
    Relu,
    /// `x · sigmoid(x)` (HF `"silu"` or `"swish"`).
    #[serde(rename = "silu", alias = "swish")]
    Silu,
}

/// The fields of a Hugging Face BERT `config.json` that the encoder uses, with HF key names.
///
/// Unknown keys are ignored. Missing keys take the defaults of `transformers.BertConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BertConfig {
    /// Number of rows of the word embedding table.
    pub vocab_size: usize,
    /// Width of every token vector.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer; must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Activation of the feed-forward block.
    pub hidden_act: HiddenAct,
    /// Dropout after the embeddings, the attention output and the feed-forward output (training only).
    pub hidden_dropout_prob: f64,
    /// Dropout on the attention probabilities (training only).
    pub attention_probs_dropout_prob: f64,
    /// Rows of the position embedding table: the longest input the model takes.
    pub max_position_embeddings: usize,
    /// Rows of the token-type embedding table.
    pub type_vocab_size: usize,
    /// Standard deviation of the weight initialisation (used when training from scratch).
    pub initializer_range: f64,
    /// Epsilon of every LayerNorm.
    pub layer_norm_eps: f64,
    /// Id of the padding token.
    pub pad_token_id: usize,
    /// Only `"absolute"` is supported.
    pub position_embedding_type: String,
    /// `"bert"` for BERT checkpoints; kept so a saved config round-trips.
    pub model_type: Option<String>,
}

impl Default for BertConfig {
    fn default() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: HiddenAct::Gelu,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            position_embedding_type: "absolute".to_string(),
            model_type: Some("bert".to_string()),
        }
    }
}

impl BertConfig {
    /// Width of one attention head, `hidden_size / num_attention_heads`.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Checks the invariants the encoder relies on.
    ///
    /// # Errors
    /// When a size is zero, the heads do not divide the hidden size, or the position embedding
    /// type is not `"absolute"`.
    pub fn validate(&self) -> candle_core::Result<()> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        for (name, value) in sizes {
            if value == 0 {
                candle_core::bail!("invalid BERT config: {name} is 0");
            }
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            candle_core::bail!(
                "invalid BERT config: hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if self.position_embedding_type != "absolute" {
            candle_core::bail!(
                "unsupported BERT config: position_embedding_type {:?} (only \"absolute\")",
                self.position_embedding_type
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_minilm_config_and_activations() {
        let json = r#"{"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1,
            "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 384,
            "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert",
            "num_attention_heads": 12, "num_hidden_layers": 6, "pad_token_id": 0,
            "position_embedding_type": "absolute", "type_vocab_size": 2, "vocab_size": 30522,
            "intermediate_size": 1536}"#;
        let cfg: BertConfig = serde_json::from_str(json).expect("valid config");
        assert_eq!(cfg.hidden_size, 384);
        assert_eq!(cfg.head_dim(), 32);
        assert_eq!(cfg.hidden_act, HiddenAct::Gelu);
        cfg.validate().expect("valid");
        for (s, act) in [
            ("gelu_new", HiddenAct::GeluTanh),
            ("gelu_pytorch_tanh", HiddenAct::GeluTanh),
            ("gelu_fast", HiddenAct::GeluTanh),
            ("relu", HiddenAct::Relu),
            ("swish", HiddenAct::Silu),
        ] {
            let cfg: BertConfig =
                serde_json::from_str(&format!(r#"{{"hidden_act": "{s}"}}"#)).expect("parse");
            assert_eq!(cfg.hidden_act, act, "{s}");
        }
    }

    #[test]
    fn rejects_heads_that_do_not_divide_hidden() {
        let cfg = BertConfig {
            hidden_size: 10,
            num_attention_heads: 3,
            ..BertConfig::default()
        };
        let err = cfg.validate().expect_err("must fail").to_string();
        assert!(err.contains("num_attention_heads"), "{err}");
    }
}
