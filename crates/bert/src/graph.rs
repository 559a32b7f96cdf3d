//! The encoder as a candle graph: padded `(batch, seq)` batches, any device and dtype, and
//! differentiable through candle's autograd (composite ops) in training mode.

use candle_core::{DType, Module, Result, Tensor, D};

use crate::config::{BertConfig, HiddenAct};
use crate::cpu::dropout::{mix, DropoutMask};
use crate::params::{BertWeights, LayerParams, Linear, Norm};

/// How a forward pass through the graph runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mode {
    /// Training mode: dropout is active and every op is differentiable (composite candle ops,
    /// no fused inference kernels). Default: `false` (inference).
    pub train: bool,
    /// Keep the attention probabilities of every layer. Default: `false`.
    pub output_attentions: bool,
    /// Seed of the dropout masks in training mode: the same seed and inputs give the same
    /// masks, so give every forward pass its own. Default: 0.
    pub dropout_seed: u64,
}

impl Mode {
    /// The mode of one dropout site (layer, position in the layer): its own seed.
    fn site(self, site: u64) -> Self {
        Self {
            dropout_seed: mix(self.dropout_seed ^ mix(site)),
            ..self
        }
    }
}

/// What [`BertModel::forward_with_mode`](crate::BertModel::forward_with_mode) returns.
#[derive(Debug, Clone)]
pub struct BertOutput {
    /// Token embeddings of the last layer, `(batch, seq, hidden)`.
    pub hidden_states: Tensor,
    /// When [`Mode::output_attentions`] is set: one `(batch, heads, seq, seq)` tensor per layer,
    /// the softmax attention probabilities (each row sums to 1 over the unmasked keys).
    pub attentions: Vec<Tensor>,
}

/// `(…, in)` → `(…, out)`; the leading dimensions are flattened so that one 2-D matmul does the
/// work.
fn linear(p: &Linear<Tensor>, xs: &Tensor) -> Result<Tensor> {
    let dims = xs.dims();
    let in_dim = dims[dims.len() - 1];
    let rows = xs.elem_count() / in_dim;
    let out = xs
        .reshape((rows, in_dim))?
        .matmul(&p.weight.t()?)?
        .broadcast_add(&p.bias)?;
    let mut out_dims = dims.to_vec();
    let last = out_dims.len() - 1;
    out_dims[last] = p.bias.dim(0)?;
    out.reshape(out_dims)
}

/// LayerNorm over the last dimension: candle's fused op for inference (it handles f32, f16
/// and bf16), composite (differentiable) ops for training and other dtypes.
fn layer_norm(p: &Norm<Tensor>, xs: &Tensor, eps: f64, mode: Mode) -> Result<Tensor> {
    let fused = matches!(xs.dtype(), DType::F32 | DType::F16 | DType::BF16);
    if mode.train || !fused || !xs.is_contiguous() {
        let mean = xs.mean_keepdim(D::Minus1)?;
        let centered = xs.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(var + eps)?.sqrt()?)?;
        normed.broadcast_mul(&p.gamma)?.broadcast_add(&p.beta)
    } else {
        candle_nn::ops::layer_norm(xs, &p.gamma, &p.beta, eps as f32)
    }
}

/// Inverted dropout in training mode, its mask drawn from the site's seed (see [`Mode::site`])
/// by the same generator as the packed pass; a product with the mask, so differentiable.
fn dropout(xs: &Tensor, p: f64, mode: Mode) -> Result<Tensor> {
    if !mode.train || p <= 0.0 {
        return Ok(xs.clone());
    }
    if !(0.0..1.0).contains(&p) {
        candle_core::bail!("dropout probability {p} is outside [0, 1)");
    }
    let mask = DropoutMask::new(p as f32, mode.dropout_seed).factors(xs.elem_count());
    let mask = Tensor::from_vec(mask, xs.shape(), xs.device())?.to_dtype(xs.dtype())?;
    xs * mask
}

/// The feed-forward activation `act` of `xs` (exact GELU through the error function).
pub(crate) fn activation(xs: &Tensor, act: HiddenAct) -> Result<Tensor> {
    match act {
        HiddenAct::Gelu => xs.gelu_erf(),
        HiddenAct::GeluTanh => xs.gelu(),
        HiddenAct::Relu => xs.relu(),
        HiddenAct::Silu => xs.silu(),
    }
}

/// `(b, t, h)` → `(b, heads, t, head_dim)`.
fn split_heads(xs: &Tensor, heads: usize, head_dim: usize) -> Result<Tensor> {
    let (b, t, _) = xs.dims3()?;
    xs.contiguous()?
        .reshape((b, t, heads, head_dim))?
        .transpose(1, 2)?
        .contiguous()
}

/// One layer: `hidden (b, t, h)`, additive `mask (b, 1, 1, t)` or, with a relative position
/// bias, `(b, heads, t, t)` → `(b, t, h)` and the attention probabilities.
fn layer(
    w: &LayerParams<Tensor>,
    cfg: &BertConfig,
    hidden: &Tensor,
    mask: &Tensor,
    mode: Mode,
) -> Result<(Tensor, Tensor)> {
    let (b, t, h) = hidden.dims3()?;
    let (heads, hd) = (cfg.num_attention_heads, cfg.head_dim());
    let q = split_heads(&linear(&w.query, hidden)?, heads, hd)?;
    let k = split_heads(&linear(&w.key, hidden)?, heads, hd)?;
    let v = split_heads(&linear(&w.value, hidden)?, heads, hd)?;
    let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?.broadcast_add(mask)?;
    let probs = if mode.train {
        candle_nn::ops::softmax(&scores, D::Minus1)?
    } else {
        candle_nn::ops::softmax_last_dim(&scores)?
    };
    let dropped = dropout(&probs, cfg.attention_probs_dropout_prob, mode.site(1))?;
    let context = dropped.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h))?;
    let attended = dropout(
        &linear(&w.attention_output, &context)?,
        cfg.hidden_dropout_prob,
        mode.site(2),
    )?;
    let attended = layer_norm(
        &w.attention_norm,
        &(attended + hidden)?,
        cfg.layer_norm_eps,
        mode,
    )?;
    let inter = activation(&linear(&w.intermediate, &attended)?, cfg.hidden_act)?;
    let out = dropout(
        &linear(&w.output, &inter)?,
        cfg.hidden_dropout_prob,
        mode.site(3),
    )?;
    let out = layer_norm(
        &w.output_norm,
        &(out + &attended)?,
        cfg.layer_norm_eps,
        mode,
    )?;
    Ok((out, probs))
}

/// The most negative finite value of `dtype`: what a masked attention score gets (as HF).
pub(crate) fn mask_value(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => -65504.0,
        DType::BF16 => -3.389_531_389_251_535e38,
        DType::F64 => f64::MIN,
        _ => f64::from(f32::MIN),
    }
}

/// The additive attention mask `(b, 1, 1, t)` of a padding mask `(b, t)` (1 real, 0 padding):
/// 0 where attended, [`mask_value`] at padding.
pub(crate) fn padding_mask(attention_mask: &Tensor, dtype: DType) -> Result<Tensor> {
    let (b, t) = attention_mask.dims2()?;
    let keep = attention_mask.to_dtype(dtype)?;
    ((keep.ones_like()? - &keep)? * mask_value(dtype))?.reshape((b, 1, 1, t))
}

/// The forward pass over a padded batch.
///
/// `relative_bias` is MPNet's relative attention bias table `(num_buckets, heads)`.
pub(crate) fn forward(
    w: &BertWeights,
    relative_bias: Option<&Tensor>,
    cfg: &BertConfig,
    input_ids: &Tensor,
    token_type_ids: Option<&Tensor>,
    attention_mask: &Tensor,
    mode: Mode,
) -> Result<BertOutput> {
    let (b, t) = input_ids.dims2()?;
    let mask_dims = attention_mask.dims2()?;
    if mask_dims != (b, t) {
        candle_core::bail!(
            "attention_mask has shape {mask_dims:?}, input_ids has shape {:?}",
            (b, t)
        );
    }
    if t > cfg.max_sequence_length() {
        candle_core::bail!(
            "sequence of {t} tokens is longer than the model's limit of {}",
            cfg.max_sequence_length()
        );
    }
    let dtype = w.embeddings.word.dtype();
    let device = input_ids.device();
    let mut additive = padding_mask(attention_mask, dtype)?;
    if let Some(table) = relative_bias {
        // Bias and mask are added to the scores together: one (b, heads, t, t) addend.
        additive = crate::relative::bias_tensor(table, t)?
            .to_dtype(dtype)?
            .broadcast_add(&additive)?;
    }

    let e = &w.embeddings;
    let h = cfg.hidden_size;
    let lookup =
        |table: &Tensor, ids: &Tensor| candle_nn::Embedding::new(table.clone(), h).forward(ids);
    let types = match token_type_ids {
        Some(ids) => lookup(&e.token_type, ids)?,
        None => lookup(&e.token_type, &input_ids.zeros_like()?)?,
    };
    let first = cfg.first_position() as u32;
    let positions = Tensor::arange(first, first + t as u32, device)?;
    let sum =
        (lookup(&e.word, input_ids)? + types)?.broadcast_add(&lookup(&e.position, &positions)?)?;
    let normed = layer_norm(&e.norm, &sum, cfg.layer_norm_eps, mode)?;
    let mut hidden = dropout(&normed, cfg.hidden_dropout_prob, mode)?;
    let mut attentions = Vec::new();
    for (i, weights) in w.layers.iter().enumerate() {
        let (out, probs) = layer(weights, cfg, &hidden, &additive, mode.site(100 + i as u64))?;
        if mode.output_attentions {
            attentions.push(probs);
        }
        hidden = out;
    }
    Ok(BertOutput {
        hidden_states: hidden,
        attentions,
    })
}
