//! The BERT encoder: embeddings, self-attention layers, feed-forward blocks.
//!
//! Tensor names follow Hugging Face `transformers.BertModel`
//! (<https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/bert/modeling_bert.py>).

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::config::{BertConfig, HiddenAct};
use crate::grad_ops;

/// How a forward pass runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mode {
    /// Training mode: dropout is active and every op is differentiable (fused ops with
    /// hand-written backward passes for CPU f32, composite candle ops elsewhere; no inference
    /// kernels). Default: `false` (inference).
    pub train: bool,
    /// Keep the attention probabilities of every layer. Default: `false`.
    pub output_attentions: bool,
    /// Seed of the dropout masks in training mode (CPU, f32): the same seed and inputs give the
    /// same masks, so give every forward pass its own. Other devices and dtypes draw from
    /// candle's generator. Default: 0.
    pub dropout_seed: u64,
}

impl Mode {
    /// The mode of one dropout site (layer, position in the layer): its own seed.
    fn site(self, site: u64) -> Self {
        Self {
            dropout_seed: crate::grad_ops::mix(self.dropout_seed ^ crate::grad_ops::mix(site)),
            ..self
        }
    }
}

/// What [`BertModel::forward_with_mode`] returns.
#[derive(Debug, Clone)]
pub struct BertOutput {
    /// Token embeddings of the last layer, `(batch, seq, hidden)`.
    pub hidden_states: Tensor,
    /// When [`Mode::output_attentions`] is set: one `(batch, heads, seq, seq)` tensor per layer,
    /// the softmax attention probabilities (each row sums to 1 over the unmasked keys).
    pub attentions: Vec<Tensor>,
}

/// A dense layer `y = x Wᵀ + b` on the last dimension, with HF's `(out, in)` weight layout.
#[derive(Debug, Clone)]
struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    fn load(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        Ok(Self {
            weight: vb.get((out_dim, in_dim), "weight")?,
            bias: vb.get(out_dim, "bias")?,
        })
    }

    /// `(…, in)` → `(…, out)`. The leading dimensions are flattened so that one 2-D matmul
    /// does the work.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let dims = xs.dims();
        let in_dim = dims[dims.len() - 1];
        let rows = xs.elem_count() / in_dim;
        let flat = xs.reshape((rows, in_dim))?;
        let out = flat.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?;
        let mut out_dims = dims.to_vec();
        let last = out_dims.len() - 1;
        out_dims[last] = self.bias.dim(0)?;
        out.reshape(out_dims)
    }
}

/// LayerNorm over the last dimension with a learned scale and shift.
#[derive(Debug, Clone)]
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Accepts both `weight`/`bias` and the `gamma`/`beta` names of old TF-converted checkpoints.
    fn load(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        let (weight, bias) = if !vb.contains_tensor("weight") && vb.contains_tensor("gamma") {
            (vb.get(dim, "gamma")?, vb.get(dim, "beta")?)
        } else {
            (vb.get(dim, "weight")?, vb.get(dim, "bias")?)
        };
        Ok(Self { weight, bias, eps })
    }

    fn forward(&self, xs: &Tensor, mode: Mode) -> Result<Tensor> {
        if mode.train && grad_ops::supported(xs) {
            grad_ops::layer_norm(xs, &self.weight, &self.bias, self.eps as f32)
        } else if mode.train || !xs.is_contiguous() {
            // Composite ops: differentiable.
            let mean = xs.mean_keepdim(D::Minus1)?;
            let centered = xs.broadcast_sub(&mean)?;
            let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
            let normed = centered.broadcast_div(&(var + self.eps)?.sqrt()?)?;
            normed
                .broadcast_mul(&self.weight)?
                .broadcast_add(&self.bias)
        } else {
            candle_nn::ops::layer_norm(xs, &self.weight, &self.bias, self.eps as f32)
        }
    }
}

/// Dropout in training mode; `mode` carries the site's seed (see [`Mode::site`]).
fn dropout(xs: &Tensor, p: f64, mode: Mode) -> Result<Tensor> {
    if !mode.train || p <= 0.0 {
        Ok(xs.clone())
    } else if grad_ops::supported(xs) {
        grad_ops::dropout(xs, p as f32, mode.dropout_seed)
    } else {
        candle_nn::ops::dropout(xs, p as f32)
    }
}

/// `softmax(scores · scale + mask)` over the keys.
fn attention_softmax(scores: &Tensor, mask: &Tensor, scale: f64, mode: Mode) -> Result<Tensor> {
    if mode.train && grad_ops::supported(scores) {
        return grad_ops::masked_softmax(scores, mask, scale as f32);
    }
    let scores = (scores * scale)?.broadcast_add(mask)?;
    if mode.train {
        candle_nn::ops::softmax(&scores, D::Minus1)
    } else {
        candle_nn::ops::softmax_last_dim(&scores)
    }
}

#[derive(Debug, Clone)]
struct Embeddings {
    word: candle_nn::Embedding,
    position: candle_nn::Embedding,
    token_type: candle_nn::Embedding,
    layer_norm: LayerNorm,
    dropout: f64,
    max_positions: usize,
}

impl Embeddings {
    fn load(vb: VarBuilder, cfg: &BertConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        let table = |name: &str, rows: usize| -> Result<candle_nn::Embedding> {
            Ok(candle_nn::Embedding::new(
                vb.pp(name).get((rows, h), "weight")?,
                h,
            ))
        };
        Ok(Self {
            word: table("word_embeddings", cfg.vocab_size)?,
            position: table("position_embeddings", cfg.max_position_embeddings)?,
            token_type: table("token_type_embeddings", cfg.type_vocab_size)?,
            layer_norm: LayerNorm::load(vb.pp("LayerNorm"), h, cfg.layer_norm_eps)?,
            dropout: cfg.hidden_dropout_prob,
            max_positions: cfg.max_position_embeddings,
        })
    }

    fn forward(&self, input_ids: &Tensor, token_type_ids: &Tensor, mode: Mode) -> Result<Tensor> {
        let (_, seq_len) = input_ids.dims2()?;
        if seq_len > self.max_positions {
            candle_core::bail!(
                "sequence of {seq_len} tokens is longer than the model's max_position_embeddings {}",
                self.max_positions
            );
        }
        let positions = Tensor::arange(0u32, seq_len as u32, input_ids.device())?;
        let words = self.word.forward(input_ids)?;
        let types = self.token_type.forward(token_type_ids)?;
        let pos = self.position.forward(&positions)?;
        let sum = (words + types)?.broadcast_add(&pos)?;
        let normed = self.layer_norm.forward(&sum, mode)?;
        dropout(&normed, self.dropout, mode)
    }
}

#[derive(Debug, Clone)]
struct SelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    /// Query, key and value stacked (`(3h, h)`, `3h`) for the packed path: one product instead
    /// of three. Built from the weights on first use (a snapshot: see `forward_packed`).
    qkv: std::sync::OnceLock<Linear>,
    output: Linear,
    layer_norm: LayerNorm,
    num_heads: usize,
    head_dim: usize,
    attention_dropout: f64,
    hidden_dropout: f64,
}

impl SelfAttention {
    fn load(vb: VarBuilder, cfg: &BertConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        let sa = vb.pp("self");
        let out = vb.pp("output");
        Ok(Self {
            query: Linear::load(sa.pp("query"), h, h)?,
            key: Linear::load(sa.pp("key"), h, h)?,
            value: Linear::load(sa.pp("value"), h, h)?,
            qkv: std::sync::OnceLock::new(),
            output: Linear::load(out.pp("dense"), h, h)?,
            layer_norm: LayerNorm::load(out.pp("LayerNorm"), h, cfg.layer_norm_eps)?,
            num_heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
            attention_dropout: cfg.attention_probs_dropout_prob,
            hidden_dropout: cfg.hidden_dropout_prob,
        })
    }

    /// The stacked projection of the packed path, built once from the current weights.
    fn fused_qkv(&self) -> Result<&Linear> {
        if let Some(f) = self.qkv.get() {
            return Ok(f);
        }
        let fused = Linear {
            weight: Tensor::cat(
                &[&self.query.weight, &self.key.weight, &self.value.weight],
                0,
            )?
            .detach(),
            bias: Tensor::cat(&[&self.query.bias, &self.key.bias, &self.value.bias], 0)?.detach(),
        };
        Ok(self.qkv.get_or_init(|| fused))
    }

    /// `(b, t, h)` → `(b, heads, t, head_dim)`.
    fn split_heads(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, t, _) = xs.dims3()?;
        xs.contiguous()?
            .reshape((b, t, self.num_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// `hidden (b, t, h)`, additive `mask (b, 1, 1, t)` → `(b, t, h)` and the probabilities.
    fn forward(&self, hidden: &Tensor, mask: &Tensor, mode: Mode) -> Result<(Tensor, Tensor)> {
        let (b, t, h) = hidden.dims3()?;
        let q = self.split_heads(&self.query.forward(hidden)?)?;
        let k = self.split_heads(&self.key.forward(hidden)?)?;
        let v = self.split_heads(&self.value.forward(hidden)?)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let probs = attention_softmax(&q.matmul(&k.t()?)?, mask, scale, mode)?;
        let context = dropout(&probs, self.attention_dropout, mode.site(1))?.matmul(&v)?;
        let context = context.transpose(1, 2)?.reshape((b, t, h))?;
        let out = dropout(
            &self.output.forward(&context)?,
            self.hidden_dropout,
            mode.site(2),
        )?;
        let out = self.layer_norm.forward(&(out + hidden)?, mode)?;
        Ok((out, probs))
    }
}

#[derive(Debug, Clone)]
struct FeedForward {
    intermediate: Linear,
    output: Linear,
    layer_norm: LayerNorm,
    act: HiddenAct,
    dropout: f64,
}

impl FeedForward {
    fn load(vb: VarBuilder, cfg: &BertConfig) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            intermediate: Linear::load(vb.pp("intermediate").pp("dense"), h, i)?,
            output: Linear::load(vb.pp("output").pp("dense"), i, h)?,
            layer_norm: LayerNorm::load(vb.pp("output").pp("LayerNorm"), h, cfg.layer_norm_eps)?,
            act: cfg.hidden_act,
            dropout: cfg.hidden_dropout_prob,
        })
    }

    fn forward(&self, hidden: &Tensor, mode: Mode) -> Result<Tensor> {
        let inter = self.intermediate.forward(hidden)?;
        let inter = match self.act {
            HiddenAct::Gelu if mode.train && grad_ops::supported(&inter) => {
                grad_ops::gelu_erf(&inter)?
            }
            HiddenAct::Gelu => inter.gelu_erf()?,
            HiddenAct::GeluTanh => inter.gelu()?,
            HiddenAct::Relu => inter.relu()?,
            HiddenAct::Silu => inter.silu()?,
        };
        let out = dropout(&self.output.forward(&inter)?, self.dropout, mode.site(3))?;
        self.layer_norm.forward(&(out + hidden)?, mode)
    }
}

#[derive(Debug, Clone)]
struct Layer {
    attention: SelfAttention,
    feed_forward: FeedForward,
}

/// A BERT encoder: token ids in, contextual token embeddings out.
///
/// Build it with [`BertModel::load`] from a [`VarBuilder`] over the checkpoint's tensors.
#[derive(Debug, Clone)]
pub struct BertModel {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    /// Biases and LayerNorm parameters as host vectors, for the packed path (built on first use).
    host: std::sync::OnceLock<Vec<HostVectors>>,
    config: BertConfig,
    device: Device,
    dtype: DType,
}

impl BertModel {
    /// Loads the encoder from `vb`, whose tensors use Hugging Face `BertModel` names, with or
    /// without the `bert.` prefix of `BertForPreTraining`-style checkpoints.
    ///
    /// # Errors
    /// When the config is invalid, or a tensor is missing or has a shape other than the config
    /// implies (the error names the tensor and both shapes).
    pub fn load(vb: VarBuilder, config: &BertConfig) -> Result<Self> {
        config.validate()?;
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            // Neither layout matched; fall through so the error names the expected tensor.
            vb
        };
        let embeddings = Embeddings::load(vb.pp("embeddings"), config)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let lvb = vb.pp(format!("encoder.layer.{i}"));
                Ok(Layer {
                    attention: SelfAttention::load(lvb.pp("attention"), config)?,
                    feed_forward: FeedForward::load(lvb.clone(), config)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings,
            layers,
            host: std::sync::OnceLock::new(),
            config: config.clone(),
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    /// The configuration the model was loaded with.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype of the weights (and of the returned embeddings).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Inference forward pass.
    ///
    /// * `input_ids`: `(batch, seq)`, integer dtype;
    /// * `token_type_ids`: `(batch, seq)` or `None` for all zeros;
    /// * `attention_mask`: `(batch, seq)`, 1 for real tokens and 0 for padding, any dtype.
    ///
    /// Returns the token embeddings `(batch, seq, hidden)` in the weights' dtype.
    ///
    /// # Errors
    /// On shape mismatches and when `seq` exceeds `max_position_embeddings`.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: &Tensor,
    ) -> Result<Tensor> {
        let out =
            self.forward_with_mode(input_ids, token_type_ids, attention_mask, Mode::default())?;
        Ok(out.hidden_states)
    }

    /// Like [`BertModel::forward`], also returning every layer's attention probabilities
    /// `(batch, heads, seq, seq)`.
    ///
    /// # Errors
    /// As [`BertModel::forward`].
    pub fn forward_with_attentions(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: &Tensor,
    ) -> Result<BertOutput> {
        let mode = Mode {
            output_attentions: true,
            ..Mode::default()
        };
        self.forward_with_mode(input_ids, token_type_ids, attention_mask, mode)
    }

    /// The forward pass with explicit [`Mode`] (training, attention output).
    ///
    /// # Errors
    /// As [`BertModel::forward`].
    pub fn forward_with_mode(
        &self,
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
        let zeros;
        let token_type_ids = match token_type_ids {
            Some(ids) => ids,
            None => {
                zeros = input_ids.zeros_like()?;
                &zeros
            }
        };
        // Additive mask: 0 where attended, the dtype's most negative value at padding (as HF).
        let keep = attention_mask.to_dtype(self.dtype)?;
        let min = match self.dtype {
            DType::F16 => -65504.0,
            DType::BF16 => -3.389_531_389_251_535e38,
            DType::F64 => f64::MIN,
            _ => f64::from(f32::MIN),
        };
        let additive = ((keep.ones_like()? - &keep)? * min)?.reshape((b, 1, 1, t))?;

        let mut hidden = self.embeddings.forward(input_ids, token_type_ids, mode)?;
        let mut attentions = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let mode = mode.site(100 + i as u64);
            let (attended, probs) = layer.attention.forward(&hidden, &additive, mode)?;
            if mode.output_attentions {
                attentions.push(probs);
            }
            hidden = layer.feed_forward.forward(&attended, mode)?;
        }
        Ok(BertOutput {
            hidden_states: hidden,
            attentions,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Packed inference on CPU: sequences stored back to back, no padding anywhere.

use candle_core::{CpuStorage, CustomOp1, InplaceOp1, InplaceOp2, Layout, Shape};

/// Tensors per encoder layer in [`BertModel::parameters`].
pub(crate) const LAYER_PARAMS: usize = 16;

use crate::grad_ops::{f32_slice, f32_slice_mut};
use crate::kernels::{self, AttentionShape, NormParams};

/// `act(x + bias)`.
struct BiasAct<'a> {
    bias: &'a [f32],
    act: HiddenAct,
}

impl InplaceOp1 for BiasAct<'_> {
    fn name(&self) -> &'static str {
        "sbert-bias-act"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        kernels::bias_act(f32_slice_mut(s, l)?, self.bias, self.act);
        Ok(())
    }
}

/// `LayerNorm(x + bias + residual)`.
struct BiasResidualNorm<'a>(NormParams<'a>);

impl InplaceOp2 for BiasResidualNorm<'_> {
    fn name(&self) -> &'static str {
        "sbert-bias-residual-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (x, r) = (f32_slice_mut(s1, l1)?, f32_slice(s2, l2)?);
        if x.len() != r.len() {
            candle_core::bail!("residual of {} values for {} inputs", r.len(), x.len());
        }
        kernels::bias_residual_layer_norm(x, r, self.0);
        Ok(())
    }
}

/// Up to this many rows, [`project`] runs [`kernels::few_rows_product`] instead of `gemm`.
const FEW_ROWS: usize = 16;

/// `x · wᵀ` for a weight `w (out, in)`.
fn project(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (rows, inner) = x.dims2()?;
    if rows > FEW_ROWS || !w.is_contiguous() {
        return x.matmul(&w.t()?);
    }
    let (xs, xl) = x.storage_and_layout();
    let (ws, wl) = w.storage_and_layout();
    let (candle_core::Storage::Cpu(xs), candle_core::Storage::Cpu(ws)) = (&*xs, &*ws) else {
        candle_core::bail!("the packed path runs on the CPU only")
    };
    let (xv, wv) = (f32_slice(xs, xl)?, f32_slice(ws, wl)?);
    let out = w.dim(0)?;
    if wv.len() != out * inner {
        candle_core::bail!("({rows}, {inner}) · ({out}, {})ᵀ", w.dim(1)?);
    }
    Tensor::from_vec(
        kernels::few_rows_product(xv, wv, inner),
        (rows, out),
        x.device(),
    )
}

/// Attention over packed sequences; input `(tokens, 3h)`, output `(tokens, h)`.
struct PackedAttention<'a> {
    bias: &'a [f32],
    offsets: &'a [usize],
    shape: AttentionShape,
}

impl CustomOp1 for PackedAttention<'_> {
    fn name(&self) -> &'static str {
        "sbert-packed-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (tokens, _) = l.shape().dims2()?;
        let out = kernels::packed_attention(f32_slice(s, l)?, self.bias, self.offsets, self.shape);
        let h = self.shape.heads * self.shape.head_dim;
        Ok((CpuStorage::F32(out), Shape::from((tokens, h))))
    }
}

/// Host copies of the small vectors the packed kernels read (biases, LayerNorm parameters).
#[derive(Debug, Clone)]
struct HostVectors {
    qkv_bias: Vec<f32>,
    attn_out_bias: Vec<f32>,
    attn_gamma: Vec<f32>,
    attn_beta: Vec<f32>,
    inter_bias: Vec<f32>,
    out_bias: Vec<f32>,
    out_gamma: Vec<f32>,
    out_beta: Vec<f32>,
}

impl HostVectors {
    fn of(layer: &Layer) -> Result<Self> {
        let v = |t: &Tensor| t.to_vec1::<f32>();
        let (a, f) = (&layer.attention, &layer.feed_forward);
        Ok(Self {
            qkv_bias: v(&a.fused_qkv()?.bias)?,
            attn_out_bias: v(&a.output.bias)?,
            attn_gamma: v(&a.layer_norm.weight)?,
            attn_beta: v(&a.layer_norm.bias)?,
            inter_bias: v(&f.intermediate.bias)?,
            out_bias: v(&f.output.bias)?,
            out_gamma: v(&f.layer_norm.weight)?,
            out_beta: v(&f.layer_norm.bias)?,
        })
    }
}

impl BertModel {
    /// Whether [`BertModel::forward_packed`] is available: CPU and f32.
    pub fn supports_packed(&self) -> bool {
        self.device.is_cpu() && self.dtype == DType::F32
    }

    /// Inference over sequences stored back to back, without padding: `input_ids` holds the
    /// token ids of every sequence concatenated, `lengths` the length of each. Returns the token
    /// embeddings `(Σ lengths, hidden)`, sequence after sequence. Token types are all 0.
    ///
    /// Every token-wise op (embeddings, projections, feed-forward, LayerNorm) runs over the real
    /// tokens only, and attention runs per sequence, so no work is spent on padding. CPU and f32
    /// only (see [`BertModel::supports_packed`]); not differentiable. The fused weights it uses
    /// are built from the weights on its first call: a model whose weights are being trained
    /// should be evaluated with [`BertModel::forward`], which always reads the current weights.
    ///
    /// # Errors
    /// On an empty or zero length, a sequence longer than `max_position_embeddings`, a length
    /// sum that differs from `input_ids.len()`, or an unsupported device or dtype.
    pub fn forward_packed(&self, input_ids: &[u32], lengths: &[usize]) -> Result<Tensor> {
        if !self.supports_packed() {
            candle_core::bail!("forward_packed needs the CPU device and f32 weights");
        }
        let total: usize = lengths.iter().sum();
        if total != input_ids.len() || lengths.contains(&0) {
            candle_core::bail!(
                "lengths {lengths:?} do not partition {} token ids into non-empty sequences",
                input_ids.len()
            );
        }
        let max_len = lengths.iter().copied().max().unwrap_or(0);
        if max_len > self.config.max_position_embeddings {
            candle_core::bail!(
                "sequence of {max_len} tokens is longer than the model's max_position_embeddings {}",
                self.config.max_position_embeddings
            );
        }
        let mut offsets = Vec::with_capacity(lengths.len() + 1);
        offsets.push(0usize);
        let mut positions = Vec::with_capacity(total);
        for &len in lengths {
            offsets.push(offsets[offsets.len() - 1] + len);
            positions.extend(0..len as u32);
        }
        let ids = Tensor::from_slice(input_ids, total, &self.device)?;
        let positions = Tensor::from_vec(positions, total, &self.device)?;
        let emb = &self.embeddings;
        let word = emb.word.embeddings().index_select(&ids, 0)?;
        let pos = emb.position.embeddings().index_select(&positions, 0)?;
        let host = self.host_vectors()?;
        let type_row = emb.token_type.embeddings().get(0)?.to_vec1::<f32>()?;
        let (gamma, beta) = (
            emb.layer_norm.weight.to_vec1::<f32>()?,
            emb.layer_norm.bias.to_vec1::<f32>()?,
        );
        let eps = self.config.layer_norm_eps as f32;
        // `word` is a fresh tensor owned here, so normalizing it in place is safe.
        word.inplace_op2(
            &pos,
            &BiasResidualNorm(NormParams {
                bias: &type_row,
                gamma: &gamma,
                beta: &beta,
                eps,
            }),
        )?;
        let mut x = word;
        let shape = AttentionShape {
            heads: self.config.num_attention_heads,
            head_dim: self.config.head_dim(),
        };
        for (layer, hv) in self.layers.iter().zip(host.iter()) {
            let (a, f) = (&layer.attention, &layer.feed_forward);
            let qkv = project(&x, &a.fused_qkv()?.weight)?;
            let ctx = qkv.apply_op1_no_bwd(&PackedAttention {
                bias: &hv.qkv_bias,
                offsets: &offsets,
                shape,
            })?;
            // Each matmul output below is a fresh tensor that nothing else holds, so the fused
            // bias/activation/LayerNorm kernels may overwrite it in place.
            let attn = project(&ctx, &a.output.weight)?;
            attn.inplace_op2(
                &x,
                &BiasResidualNorm(NormParams {
                    bias: &hv.attn_out_bias,
                    gamma: &hv.attn_gamma,
                    beta: &hv.attn_beta,
                    eps,
                }),
            )?;
            x = attn;
            let inter = project(&x, &f.intermediate.weight)?;
            inter.inplace_op1(&BiasAct {
                bias: &hv.inter_bias,
                act: f.act,
            })?;
            let out = project(&inter, &f.output.weight)?;
            out.inplace_op2(
                &x,
                &BiasResidualNorm(NormParams {
                    bias: &hv.out_bias,
                    gamma: &hv.out_gamma,
                    beta: &hv.out_beta,
                    eps,
                }),
            )?;
            x = out;
        }
        Ok(x)
    }

    /// Every weight, in the order the training path indexes them ([`LAYER_PARAMS`] per layer
    /// after 5 embedding tensors): the word, position and
    /// token-type tables and the embedding LayerNorm, then per layer the query, key, value
    /// and attention-output weight/bias pairs, the attention LayerNorm, the intermediate and
    /// output weight/bias pairs and the output LayerNorm.
    pub(crate) fn parameters(&self) -> Vec<Tensor> {
        let e = &self.embeddings;
        let mut params = vec![
            e.word.embeddings().clone(),
            e.position.embeddings().clone(),
            e.token_type.embeddings().clone(),
            e.layer_norm.weight.clone(),
            e.layer_norm.bias.clone(),
        ];
        for layer in &self.layers {
            let (a, f) = (&layer.attention, &layer.feed_forward);
            params.extend(
                [
                    &a.query.weight,
                    &a.query.bias,
                    &a.key.weight,
                    &a.key.bias,
                    &a.value.weight,
                    &a.value.bias,
                    &a.output.weight,
                    &a.output.bias,
                    &a.layer_norm.weight,
                    &a.layer_norm.bias,
                    &f.intermediate.weight,
                    &f.intermediate.bias,
                    &f.output.weight,
                    &f.output.bias,
                    &f.layer_norm.weight,
                    &f.layer_norm.bias,
                ]
                .map(Tensor::clone),
            );
        }
        debug_assert_eq!(params.len(), 5 + self.layers.len() * LAYER_PARAMS);
        params
    }

    /// The host vectors of every layer, copied once and cached.
    fn host_vectors(&self) -> Result<&[HostVectors]> {
        if let Some(v) = self.host.get() {
            return Ok(v);
        }
        let v = self
            .layers
            .iter()
            .map(HostVectors::of)
            .collect::<Result<Vec<_>>>()?;
        Ok(self.host.get_or_init(|| v))
    }
}
