//! ModernBERT (`model_type` `"modernbert"`): pre-LayerNorm layers without biases, rotary
//! position embeddings, a gated GELU feed-forward block, and attention that alternates between
//! the whole sequence and a sliding window.
//!
//! Follows `transformers.ModernBertModel`
//! (<https://github.com/huggingface/transformers/blob/main/src/transformers/models/modernbert/modeling_modernbert.py>):
//!
//! * embeddings: `tok_embeddings`, then LayerNorm (`embeddings.norm`); no position table;
//! * layer `l`: `x + Wo(attention(attn_norm(x)))` (layer 0 has no `attn_norm`), then
//!   `x + mlp.Wo(gelu(a) · g)` with `[a, g] = mlp.Wi(mlp_norm(x))`;
//! * attention: `Wqkv` gives q, k, v; q and k are rotated (RoPE, halves convention) with base
//!   `global_rope_theta` in full-attention layers and `local_rope_theta` in sliding ones, where
//!   a token sees keys at most `local_attention / 2` positions away;
//! * `final_norm` closes the stack.
//!
//! Runs as a candle graph over padded batches on any device ([`ModernBertModel::forward`]).

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::config::HiddenAct;
use crate::encoder::{Encoder, TokenBatch, TokenEmbeddings};

/// The fields of a ModernBERT `config.json` the encoder uses. Both the original keys
/// (`global_attn_every_n_layers`, `global_rope_theta`, `local_rope_theta`) and those of
/// `transformers` 5 (`layer_types`, `rope_parameters`) are read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ModernBertConfig {
    /// Rows of the token embedding table.
    pub vocab_size: usize,
    /// Width of every token vector.
    pub hidden_size: usize,
    /// Width of each half of the gated feed-forward block.
    pub intermediate_size: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer; must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Activation of the gated feed-forward block.
    pub hidden_activation: HiddenAct,
    /// The longest input.
    pub max_position_embeddings: usize,
    /// Epsilon of every LayerNorm.
    pub norm_eps: f64,
    /// Whether the LayerNorms have a shift β.
    pub norm_bias: bool,
    /// Whether `Wqkv` and `Wo` have biases.
    pub attention_bias: bool,
    /// Whether the feed-forward products have biases.
    pub mlp_bias: bool,
    /// Id of the padding token.
    pub pad_token_id: usize,
    /// Width of the sliding window: a token sees keys up to half of it away.
    pub local_attention: usize,
    /// Every this many layers (from layer 0) attends to the whole sequence.
    pub global_attn_every_n_layers: usize,
    /// RoPE base of full-attention layers.
    pub global_rope_theta: f64,
    /// RoPE base of sliding-window layers.
    pub local_rope_theta: f64,
    /// Per layer, `"full_attention"` or `"sliding_attention"` (`transformers` 5).
    pub layer_types: Option<Vec<String>>,
    /// RoPE bases by layer type (`transformers` 5).
    pub rope_parameters: Option<RopeParameters>,
}

/// `rope_parameters` of a `transformers` 5 ModernBERT config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RopeParameters {
    /// Full-attention layers.
    pub full_attention: Option<RopeTheta>,
    /// Sliding-window layers.
    pub sliding_attention: Option<RopeTheta>,
}

/// One entry of [`RopeParameters`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RopeTheta {
    /// The RoPE base.
    pub rope_theta: Option<f64>,
    /// Only `"default"` is supported.
    pub rope_type: Option<String>,
}

impl Default for ModernBertConfig {
    fn default() -> Self {
        Self {
            vocab_size: 50368,
            hidden_size: 768,
            intermediate_size: 1152,
            num_hidden_layers: 22,
            num_attention_heads: 12,
            hidden_activation: HiddenAct::Gelu,
            max_position_embeddings: 8192,
            norm_eps: 1e-5,
            norm_bias: false,
            attention_bias: false,
            mlp_bias: false,
            pad_token_id: 50283,
            local_attention: 128,
            global_attn_every_n_layers: 3,
            global_rope_theta: 160_000.0,
            local_rope_theta: 10_000.0,
            layer_types: None,
            rope_parameters: None,
        }
    }
}

impl ModernBertConfig {
    /// Whether layer `l` attends to the whole sequence (else to a sliding window).
    pub fn is_global(&self, l: usize) -> bool {
        match &self.layer_types {
            Some(types) => types.get(l).is_some_and(|t| t == "full_attention"),
            None => l.is_multiple_of(self.global_attn_every_n_layers.max(1)),
        }
    }

    /// The RoPE base of full-attention (`global`) or sliding-window layers.
    pub fn rope_theta(&self, global: bool) -> f64 {
        let p = self.rope_parameters.as_ref();
        let entry = if global {
            p.and_then(|p| p.full_attention.as_ref())
        } else {
            p.and_then(|p| p.sliding_attention.as_ref())
        };
        match entry.and_then(|e| e.rope_theta) {
            Some(theta) => theta,
            None if global => self.global_rope_theta,
            None => self.local_rope_theta,
        }
    }

    /// Checks the invariants the encoder relies on.
    ///
    /// # Errors
    /// When a size is zero, the heads do not divide the hidden size or leave an odd head width,
    /// `layer_types` does not name one known type per layer, or a RoPE type is not `"default"`.
    pub fn validate(&self) -> Result<()> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (name, value) in sizes {
            if value == 0 {
                candle_core::bail!("invalid ModernBERT config: {name} is 0");
            }
        }
        let heads = self.num_attention_heads;
        if !self.hidden_size.is_multiple_of(heads) || !(self.hidden_size / heads).is_multiple_of(2)
        {
            candle_core::bail!(
                "invalid ModernBERT config: hidden_size {} does not split into {heads} heads of \
                 an even width",
                self.hidden_size
            );
        }
        if let Some(types) = &self.layer_types {
            let known = |t: &String| t == "full_attention" || t == "sliding_attention";
            if types.len() != self.num_hidden_layers || !types.iter().all(known) {
                candle_core::bail!(
                    "invalid ModernBERT config: layer_types {types:?} must name full_attention \
                     or sliding_attention for each of the {} layers",
                    self.num_hidden_layers
                );
            }
        }
        if let Some(p) = &self.rope_parameters {
            for entry in [&p.full_attention, &p.sliding_attention]
                .into_iter()
                .flatten()
            {
                if let Some(kind) = entry.rope_type.as_deref().filter(|k| *k != "default") {
                    candle_core::bail!(
                        "unsupported ModernBERT config: rope_type {kind:?} (only \"default\")"
                    );
                }
            }
        }
        Ok(())
    }
}

/// A dense layer `x Wᵀ (+ b)`.
#[derive(Debug, Clone)]
struct Dense {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Dense {
    fn load(vb: VarBuilder, inputs: usize, outputs: usize, bias: bool) -> Result<Self> {
        Ok(Self {
            weight: vb.get((outputs, inputs), "weight")?,
            bias: if bias {
                Some(vb.get(outputs, "bias")?)
            } else {
                None
            },
        })
    }

    /// `(b, t, in)` → `(b, t, out)`.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, t, i) = xs.dims3()?;
        let out = xs.reshape((b * t, i))?.matmul(&self.weight.t()?)?;
        let out = match &self.bias {
            Some(bias) => out.broadcast_add(bias)?,
            None => out,
        };
        out.reshape((b, t, ()))
    }
}

/// LayerNorm with an optional shift.
#[derive(Debug, Clone)]
struct Norm {
    gamma: Tensor,
    beta: Tensor,
    eps: f32,
}

impl Norm {
    fn load(vb: VarBuilder, cfg: &ModernBertConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        let gamma = vb.get(h, "weight")?;
        let beta = if cfg.norm_bias {
            vb.get(h, "bias")?
        } else {
            gamma.zeros_like()?
        };
        Ok(Self {
            gamma,
            beta,
            eps: cfg.norm_eps as f32,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        candle_nn::ops::layer_norm(&xs.contiguous()?, &self.gamma, &self.beta, self.eps)
    }
}

#[derive(Debug, Clone)]
struct Layer {
    /// `None` in layer 0.
    attn_norm: Option<Norm>,
    wqkv: Dense,
    wo: Dense,
    mlp_norm: Norm,
    wi: Dense,
    mlp_wo: Dense,
    global: bool,
}

/// A ModernBERT encoder: token ids in, contextual token embeddings out.
#[derive(Debug, Clone)]
pub struct ModernBertModel {
    config: ModernBertConfig,
    tok_embeddings: Tensor,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    final_norm: Norm,
    device: Device,
    dtype: DType,
}

impl ModernBertModel {
    /// Loads the encoder from `vb` (Hugging Face `ModernBertModel` names, with or without the
    /// `model.` prefix of `ModernBertForMaskedLM`).
    ///
    /// # Errors
    /// When the config is invalid, or a tensor is missing or has a shape other than the config
    /// implies.
    pub fn load(vb: VarBuilder, config: &ModernBertConfig) -> Result<Self> {
        config.validate()?;
        let (device, dtype) = (vb.device().clone(), vb.dtype());
        let word = "embeddings.tok_embeddings.weight";
        let vb = if !vb.contains_tensor(word) && vb.contains_tensor(&format!("model.{word}")) {
            vb.pp("model")
        } else {
            vb
        };
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let tok_embeddings = vb.get((config.vocab_size, h), word)?;
        let embedding_norm = Norm::load(vb.pp("embeddings.norm"), config)?;
        let layers = (0..config.num_hidden_layers)
            .map(|l| {
                let vb = vb.pp(format!("layers.{l}"));
                Ok(Layer {
                    attn_norm: if l == 0 {
                        None
                    } else {
                        Some(Norm::load(vb.pp("attn_norm"), config)?)
                    },
                    wqkv: Dense::load(vb.pp("attn.Wqkv"), h, 3 * h, config.attention_bias)?,
                    wo: Dense::load(vb.pp("attn.Wo"), h, h, config.attention_bias)?,
                    mlp_norm: Norm::load(vb.pp("mlp_norm"), config)?,
                    wi: Dense::load(vb.pp("mlp.Wi"), h, 2 * i, config.mlp_bias)?,
                    mlp_wo: Dense::load(vb.pp("mlp.Wo"), i, h, config.mlp_bias)?,
                    global: config.is_global(l),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let final_norm = Norm::load(vb.pp("final_norm"), config)?;
        Ok(Self {
            config: config.clone(),
            tok_embeddings,
            embedding_norm,
            layers,
            final_norm,
            device,
            dtype,
        })
    }

    /// The configuration the model was loaded with.
    pub fn config(&self) -> &ModernBertConfig {
        &self.config
    }

    /// `cos` and `sin` of the rotary embedding, `(t, head_dim)` each, for base `theta`: as
    /// `transformers` computes them, in f32.
    fn rope(&self, t: usize, theta: f64) -> Result<(Tensor, Tensor)> {
        let hd = self.config.hidden_size / self.config.num_attention_heads;
        let inv_freq: Vec<f32> = (0..hd / 2)
            .map(|k| 1.0 / (theta as f32).powf((2 * k) as f32 / hd as f32))
            .collect();
        let mut cos = Vec::with_capacity(t * hd);
        let mut sin = Vec::with_capacity(t * hd);
        for p in 0..t {
            // The frequencies twice over: the two halves of a head rotate together.
            for _ in 0..2 {
                for f in &inv_freq {
                    let angle = p as f32 * f;
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        let cos = Tensor::from_vec(cos, (t, hd), &self.device)?.to_dtype(self.dtype)?;
        let sin = Tensor::from_vec(sin, (t, hd), &self.device)?.to_dtype(self.dtype)?;
        Ok((cos, sin))
    }

    /// The additive masks `(b, 1, t, t)` of full and sliding-window attention for a padding
    /// mask `(b, t)`.
    fn masks(&self, attention_mask: &Tensor, t: usize) -> Result<(Tensor, Tensor)> {
        let min = crate::graph::mask_value(self.dtype);
        let padding = crate::graph::padding_mask(attention_mask, self.dtype)?;
        let half = (self.config.local_attention / 2) as i64;
        let window: Vec<f32> = (0..t * t)
            .map(|k| {
                let (i, j) = ((k / t) as i64, (k % t) as i64);
                if (i - j).abs() <= half {
                    0.0
                } else {
                    f32::MIN
                }
            })
            .collect();
        let window = Tensor::from_vec(window, (1, 1, t, t), &self.device)?.to_dtype(self.dtype)?;
        // Clamp so that a key masked twice stays finite.
        let sliding = padding.broadcast_add(&window)?.clamp(min, 0.0)?;
        Ok((padding, sliding))
    }
}

/// `x · cos + rotate_half(x) · sin` over `(b, heads, t, hd)`, `rotate_half([x1, x2]) = [−x2, x1]`.
fn rotate(xs: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let hd = xs.dim(D::Minus1)?;
    let x1 = xs.narrow(D::Minus1, 0, hd / 2)?;
    let x2 = xs.narrow(D::Minus1, hd / 2, hd / 2)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    xs.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?
}

impl Encoder for ModernBertModel {
    fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    fn max_positions(&self) -> usize {
        self.config.max_position_embeddings
    }

    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn pad_token_id(&self) -> u32 {
        self.config.pad_token_id as u32
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn dtype(&self) -> DType {
        self.dtype
    }

    /// Pads the batch ([`TokenBatch::padded`]) and runs [`ModernBertModel::forward`].
    fn forward(&self, batch: TokenBatch<'_>) -> Result<TokenEmbeddings> {
        if batch.lengths.is_empty() || batch.lengths.contains(&0) {
            candle_core::bail!("a batch needs one or more non-empty sequences");
        }
        let padded = batch.padded(self.config.pad_token_id as u32, &self.device)?;
        let tokens = ModernBertModel::forward(self, &padded.input_ids, &padded.attention_mask)?;
        Ok(TokenEmbeddings::Padded {
            tokens,
            mask: padded.attention_mask,
        })
    }
}

impl ModernBertModel {
    /// The last hidden states `(batch, seq, hidden)` of a padded batch: `input_ids` and its
    /// `attention_mask` (1 real, 0 padding), both `(batch, seq)`.
    ///
    /// # Errors
    /// On shapes that do not agree or a sequence longer than `max_position_embeddings`.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        if attention_mask.dims2()? != (b, t) {
            candle_core::bail!(
                "attention_mask has shape {:?}, input_ids has shape {:?}",
                attention_mask.dims(),
                (b, t)
            );
        }
        if t > self.config.max_position_embeddings {
            candle_core::bail!(
                "sequence of {t} tokens is longer than the model's limit of {}",
                self.config.max_position_embeddings
            );
        }
        let cfg = &self.config;
        let (heads, h) = (cfg.num_attention_heads, cfg.hidden_size);
        let hd = h / heads;
        let embedding = candle_nn::Embedding::new(self.tok_embeddings.clone(), h);
        let mut x = self
            .embedding_norm
            .forward(&embedding.forward(input_ids)?)?;
        let (full, sliding) = self.masks(attention_mask, t)?;
        let global_rope = self.rope(t, cfg.rope_theta(true))?;
        let local_rope = self.rope(t, cfg.rope_theta(false))?;
        let scale = 1.0 / (hd as f64).sqrt();
        for layer in &self.layers {
            let normed = match &layer.attn_norm {
                Some(norm) => norm.forward(&x)?,
                None => x.clone(),
            };
            // (b, t, 3h) → three (b, heads, t, hd).
            let qkv = layer.wqkv.forward(&normed)?.reshape((b, t, 3, heads, hd))?;
            let part = |k: usize| -> Result<Tensor> {
                qkv.narrow(2, k, 1)?
                    .squeeze(2)?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let (cos, sin) = if layer.global {
                &global_rope
            } else {
                &local_rope
            };
            let q = rotate(&part(0)?, cos, sin)?;
            let k = rotate(&part(1)?, cos, sin)?;
            let v = part(2)?;
            let mask = if layer.global { &full } else { &sliding };
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h))?;
            x = (x + layer.wo.forward(&context)?)?;
            let inner = layer.wi.forward(&layer.mlp_norm.forward(&x)?)?;
            let i = cfg.intermediate_size;
            let gated = (crate::graph::activation(
                &inner.narrow(D::Minus1, 0, i)?,
                cfg.hidden_activation,
            )? * inner.narrow(D::Minus1, i, i)?)?;
            x = (x + layer.mlp_wo.forward(&gated)?)?;
        }
        self.final_norm.forward(&x)
    }

    /// Floating-point operations of one pass over a sequence of `len` tokens (a multiply-add
    /// counts 2).
    pub fn flops(&self, len: usize) -> f64 {
        let c = &self.config;
        let (l, h, i) = (len as f64, c.hidden_size as f64, c.intermediate_size as f64);
        // Wqkv and Wo (4 h × h), Wi (h × 2i) and Wo (i × h), scores and context (2 l × h).
        let per_layer = 8.0 * l * h * h + 6.0 * l * h * i + 4.0 * l * l * h;
        c.num_hidden_layers as f64 * per_layer
    }
}
