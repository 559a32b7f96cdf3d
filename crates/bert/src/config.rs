//! `config.json` of a Hugging Face BERT-family checkpoint (BERT, RoBERTa / XLM-RoBERTa,
//! DistilBERT, MPNet) and the [`Architecture`] it names.

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

/// The post-LayerNorm encoders that share BERT's layer and differ in their embeddings, their
/// attention scores and their tensor names; `model_type` in `config.json` names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Architecture {
    /// BERT (`"bert"`): word + position + token-type embeddings, positions from 0.
    Bert,
    /// RoBERTa, XLM-RoBERTa, CamemBERT (`"roberta"`, `"xlm-roberta"`, `"camembert"`): BERT's
    /// layers; positions count from `pad_token_id + 1`.
    Roberta,
    /// DistilBERT (`"distilbert"`): no token types, its own tensor names and config keys.
    DistilBert,
    /// MPNet (`"mpnet"`): no token types, positions from `pad_token_id + 1`, and a learned
    /// bias per head and relative-position bucket added to every attention score.
    MpNet,
}

impl Architecture {
    /// The `model_type` values this crate loads, one per line of [`Architecture`].
    pub const MODEL_TYPES: &'static [&'static str] = &[
        "bert",
        "roberta",
        "xlm-roberta",
        "camembert",
        "distilbert",
        "mpnet",
    ];

    /// The architecture a `model_type` names (`None`: BERT, as `transformers` assumes).
    ///
    /// # Errors
    /// For a `model_type` outside [`Architecture::MODEL_TYPES`], listing them.
    pub fn from_model_type(model_type: Option<&str>) -> candle_core::Result<Self> {
        Ok(match model_type.unwrap_or("bert") {
            "bert" => Self::Bert,
            "roberta" | "xlm-roberta" | "camembert" => Self::Roberta,
            "distilbert" => Self::DistilBert,
            "mpnet" => Self::MpNet,
            other => candle_core::bail!(
                "unsupported model_type {other:?} (supported: {})",
                Self::MODEL_TYPES.join(", ")
            ),
        })
    }

    /// Whether the checkpoint has a token-type embedding table.
    pub fn has_token_types(self) -> bool {
        matches!(self, Self::Bert | Self::Roberta)
    }

    /// The prefix of a checkpoint saved from the architecture's pre-training head
    /// (`bert.embeddings…`); sentence-transformers saves without it.
    pub fn checkpoint_prefix(self) -> &'static str {
        match self {
            Self::Bert => "bert",
            Self::Roberta => "roberta",
            Self::DistilBert => "distilbert",
            Self::MpNet => "mpnet",
        }
    }
}

/// The fields of a Hugging Face BERT-family `config.json` that the encoder uses, with HF key
/// names (DistilBERT's `dim`, `n_layers`, `n_heads`, `hidden_dim`, `activation`, `dropout` and
/// `attention_dropout` are read as their BERT names).
///
/// Unknown keys are ignored. Missing keys take the defaults of `transformers.BertConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BertConfig {
    /// Number of rows of the word embedding table.
    pub vocab_size: usize,
    /// Width of every token vector.
    #[serde(alias = "dim")]
    pub hidden_size: usize,
    /// Number of transformer layers.
    #[serde(alias = "n_layers")]
    pub num_hidden_layers: usize,
    /// Attention heads per layer; must divide `hidden_size`.
    #[serde(alias = "n_heads")]
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    #[serde(alias = "hidden_dim")]
    pub intermediate_size: usize,
    /// Activation of the feed-forward block.
    #[serde(alias = "activation")]
    pub hidden_act: HiddenAct,
    /// Dropout after the embeddings, the attention output and the feed-forward output (training only).
    #[serde(alias = "dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout on the attention probabilities (training only).
    #[serde(alias = "attention_dropout")]
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
    /// The architecture (see [`Architecture::from_model_type`]); kept so a saved config
    /// round-trips.
    pub model_type: Option<String>,
    /// MPNet: rows of the relative attention bias table (relative-position buckets).
    pub relative_attention_num_buckets: usize,
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
            relative_attention_num_buckets: 32,
        }
    }
}

impl BertConfig {
    /// Width of one attention head, `hidden_size / num_attention_heads`.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// The architecture `model_type` names.
    ///
    /// # Errors
    /// As [`Architecture::from_model_type`].
    pub fn architecture(&self) -> candle_core::Result<Architecture> {
        Architecture::from_model_type(self.model_type.as_deref())
    }

    /// The position id of a sequence's first token: 0 for BERT and DistilBERT,
    /// `pad_token_id + 1` for RoBERTa and MPNet (whose position tables reserve the rows up to
    /// the padding index).
    pub fn first_position(&self) -> usize {
        match self.architecture() {
            Ok(Architecture::Roberta | Architecture::MpNet) => self.pad_token_id + 1,
            _ => 0,
        }
    }

    /// The longest sequence the position table allows: `max_position_embeddings` less the
    /// rows before [`BertConfig::first_position`].
    pub fn max_sequence_length(&self) -> usize {
        self.max_position_embeddings
            .saturating_sub(self.first_position())
    }

    /// Checks the invariants the encoder relies on.
    ///
    /// # Errors
    /// When the architecture is unsupported, a size is zero, the heads do not divide the hidden
    /// size, the position table has no room for a sequence, or the position embedding type is
    /// not `"absolute"`.
    pub fn validate(&self) -> candle_core::Result<()> {
        let architecture = self.architecture()?;
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
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            candle_core::bail!(
                "invalid BERT config: hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if self.max_sequence_length() == 0 {
            candle_core::bail!(
                "invalid config: max_position_embeddings {} leaves no position after the {} reserved rows",
                self.max_position_embeddings,
                self.first_position()
            );
        }
        if architecture == Architecture::MpNet && self.relative_attention_num_buckets == 0 {
            candle_core::bail!("invalid MPNet config: relative_attention_num_buckets is 0");
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
    fn reads_distilbert_keys_and_names_every_architecture() {
        let json = r#"{"activation": "gelu", "dim": 32, "n_layers": 2, "n_heads": 4,
            "hidden_dim": 48, "dropout": 0.1, "attention_dropout": 0.2, "vocab_size": 300,
            "max_position_embeddings": 64, "model_type": "distilbert", "pad_token_id": 0}"#;
        let cfg: BertConfig = serde_json::from_str(json).expect("valid config");
        assert_eq!(
            (
                cfg.hidden_size,
                cfg.num_hidden_layers,
                cfg.num_attention_heads
            ),
            (32, 2, 4)
        );
        assert_eq!(cfg.intermediate_size, 48);
        assert_eq!(cfg.attention_probs_dropout_prob, 0.2);
        assert_eq!(cfg.architecture().expect("known"), Architecture::DistilBert);
        assert_eq!(cfg.first_position(), 0);
        cfg.validate().expect("valid");

        let roberta = BertConfig {
            model_type: Some("xlm-roberta".into()),
            pad_token_id: 1,
            max_position_embeddings: 514,
            ..BertConfig::default()
        };
        assert_eq!(roberta.first_position(), 2);
        assert_eq!(roberta.max_sequence_length(), 512);
        for (kind, arch) in [
            ("bert", Architecture::Bert),
            ("roberta", Architecture::Roberta),
            ("camembert", Architecture::Roberta),
            ("mpnet", Architecture::MpNet),
        ] {
            assert_eq!(Architecture::from_model_type(Some(kind)).expect(kind), arch);
        }
        let err = Architecture::from_model_type(Some("t5"))
            .expect_err("unsupported")
            .to_string();
        assert!(err.contains("\"t5\"") && err.contains("mpnet"), "{err}");
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
