//! Training on the CPU in f32 without an autograd graph inside the encoder.
//!
//! [`BertModel::forward_train`] runs the encoder over sequences stored back to back (no padding,
//! as the packed inference path), keeps the activations its backward pass needs, and returns
//! the last hidden states as one differentiable tensor. When candle's backward pass reaches
//! that tensor, the hand-written backward pass here runs through every layer and adds each
//! parameter's gradient into a [`GradientSink`], straight into one host buffer per parameter:
//! matrix products write weight gradients in place (`dW += dYᵀ·X`), LayerNorm, GELU, dropout
//! and attention are fused loops, and nothing is allocated per elementary op. Built from
//! candle ops instead, one step made several hundred tensors, zeroed and added a gradient
//! buffer per op, and spent more time outside matrix products than in them.
//!
//! The arithmetic is that of [`BertModel::forward_with_mode`] in training mode (checked to
//! rounding, gradients included, in this module's tests and in `tests/tiny_model.rs`); only
//! the dropout masks differ, since they are drawn per packed element.

use std::sync::{Arc, Mutex, PoisonError};

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};
use rayon::prelude::*;

use crate::config::HiddenAct;
use crate::grad_ops::{f32_slice, mix, DropoutMask};
use crate::kernels::{self, axpy, dot, norm_backward, rows_per_task};
use crate::matmul::{gemm, MatMut, MatRef};
use crate::model::{BertModel, LAYER_PARAMS};

// Parameter indices, in the order of `BertModel::parameters`.
const WORD: usize = 0;
const POSITION: usize = 1;
const TOKEN_TYPE: usize = 2;
const EMB_GAMMA: usize = 3;
const EMB_BETA: usize = 4;
const EMBEDDING_PARAMS: usize = 5;
// Within a layer (offset by `EMBEDDING_PARAMS + layer · LAYER_PARAMS`): query, key, value
// weight/bias pairs at 0..6 (part `p` at `2p`, `2p + 1`), then:
const OUT_W: usize = 6;
const OUT_B: usize = 7;
const LN1_GAMMA: usize = 8;
const LN1_BETA: usize = 9;
const INTER_W: usize = 10;
const INTER_B: usize = 11;
const FF_OUT_W: usize = 12;
const FF_OUT_B: usize = 13;
const LN2_GAMMA: usize = 14;
const LN2_BETA: usize = 15;

/// Where the gradients of [`BertModel::forward_train`] passes collect.
///
/// One sink serves any number of passes over the same model (both sides of a siamese pair, the
/// passes of one batch): each backward pass adds into the same buffers. After
/// `loss.backward()`, [`GradientSink::drain_into`] moves the sums into candle's [`GradStore`],
/// where an optimizer finds them under the parameters' tensors, and empties the sink.
#[derive(Clone, Default)]
pub struct GradientSink {
    inner: Arc<Mutex<SinkState>>,
}

#[derive(Default)]
struct SinkState {
    params: Vec<Tensor>,
    grads: Vec<Vec<f32>>,
}

impl std::fmt::Debug for GradientSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("GradientSink")
            .field("parameters", &state.params.len())
            .finish()
    }
}

impl GradientSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no backward pass has added anything since the last drain.
    pub fn is_empty(&self) -> bool {
        self.lock().grads.is_empty()
    }

    /// Moves the collected gradients into `store`, keyed by the parameters' tensors (added to
    /// any gradient `store` already holds for a parameter), and empties the sink. Does nothing
    /// when the sink is empty.
    ///
    /// # Errors
    /// When a gradient tensor cannot be built (out of memory) or added.
    pub fn drain_into(&self, store: &mut GradStore) -> Result<()> {
        let state = std::mem::take(&mut *self.lock());
        for (param, grad) in state.params.iter().zip(state.grads) {
            let grad = Tensor::from_vec(grad, param.shape(), param.device())?;
            let grad = match store.remove(param) {
                Some(old) => (old + grad)?,
                None => grad,
            };
            store.insert(param, grad);
        }
        Ok(())
    }

    /// Discards what the sink holds (the gradients of passes whose loss will not be used).
    pub fn clear(&self) {
        *self.lock() = SinkState::default();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SinkState {
    /// The gradient buffers of `params`, zeroed on first use.
    fn buffers(&mut self, params: &[Tensor]) -> Result<&mut [Vec<f32>]> {
        if self.grads.is_empty() {
            self.params = params.to_vec();
            self.grads = params.iter().map(|p| vec![0f32; p.elem_count()]).collect();
        } else if self.params.len() != params.len()
            || self
                .params
                .iter()
                .zip(params)
                .any(|(a, b)| a.id() != b.id())
        {
            candle_core::bail!("a gradient sink collects the gradients of one model only");
        }
        Ok(&mut self.grads)
    }
}

/// Read access to every parameter's values for the length of a pass.
struct HostParams<'a> {
    guards: Vec<(candle_core::StorageRef<'a>, &'a Layout)>,
}

impl<'a> HostParams<'a> {
    fn new(params: &'a [Tensor]) -> Self {
        Self {
            guards: params.iter().map(Tensor::storage_and_layout).collect(),
        }
    }

    fn get(&self, i: usize) -> Result<&[f32]> {
        let (storage, layout) = &self.guards[i];
        match &**storage {
            Storage::Cpu(s) => f32_slice(s, layout),
            _ => candle_core::bail!("the training path runs on the CPU only"),
        }
    }
}

/// The sizes the kernels need.
#[derive(Debug, Clone, Copy)]
struct Dims {
    hidden: usize,
    heads: usize,
    head_dim: usize,
    intermediate: usize,
    eps: f32,
    act: HiddenAct,
    hidden_dropout: f32,
    attention_dropout: f32,
}

/// The dropout of one site (`site` 0 for the embeddings; layer `l`'s attention probabilities,
/// attention output and feed-forward output at `3l + 1`, `3l + 2`, `3l + 3`).
fn site_dropout(p: f32, seed: u64, site: usize) -> DropoutMask {
    DropoutMask::new(p, mix(seed ^ mix(site as u64)))
}

/// What the backward pass of one layer reads.
struct LayerTape {
    /// Biased query, key and value, `(n, 3h)`.
    qkv: Vec<f32>,
    /// Attention probabilities before dropout, one `len × len` block per (sequence, head).
    probs: Vec<f32>,
    /// Attention context, `(n, h)`.
    ctx: Vec<f32>,
    xhat1: Vec<f32>,
    rstd1: Vec<f32>,
    /// Output of the attention block, `(n, h)`.
    y1: Vec<f32>,
    /// Biased feed-forward pre-activation, `(n, i)`.
    inter: Vec<f32>,
    act: Vec<f32>,
    xhat2: Vec<f32>,
    rstd2: Vec<f32>,
}

/// Everything one pass keeps for its backward pass.
struct Tape {
    ids: Vec<u32>,
    offsets: Vec<usize>,
    seed: u64,
    emb_xhat: Vec<f32>,
    emb_rstd: Vec<f32>,
    /// `hidden[l]` is the input of layer `l` (`hidden[0]`: the embeddings after dropout).
    hidden: Vec<Vec<f32>>,
    layers: Vec<LayerTape>,
}

impl BertModel {
    /// Whether [`BertModel::forward_train`] is available: CPU and f32.
    pub fn supports_fast_training(&self) -> bool {
        self.supports_packed()
    }

    /// A training-mode forward pass (dropout active) over sequences stored back to back:
    /// `input_ids` holds the token ids of every sequence concatenated, `lengths` the length of
    /// each; token types are all 0. Returns the last hidden states padded to the longest
    /// sequence, `(sequences, longest, hidden)`, zero at padding.
    ///
    /// The result is differentiable when the weights are `Var`s: candle's backward pass adds
    /// the gradient of every encoder weight to `sink` (see [`GradientSink`]), not to its
    /// `GradStore`, until [`GradientSink::drain_into`] moves them there. The dropout masks are
    /// a function of `dropout_seed`: give every pass its own. CPU and f32 only (see
    /// [`BertModel::supports_fast_training`]).
    ///
    /// # Example
    ///
    /// ```
    /// use candle_core::{DType, Device};
    /// use candle_nn::{VarBuilder, VarMap};
    /// use sbert_bert::{BertConfig, BertModel, GradientSink};
    ///
    /// # fn main() -> candle_core::Result<()> {
    /// let config = BertConfig { vocab_size: 200, hidden_size: 16, num_hidden_layers: 2,
    ///     num_attention_heads: 4, intermediate_size: 32, ..BertConfig::default() };
    /// let varmap = VarMap::new();
    /// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    /// let model = BertModel::load(vb, &config)?;
    /// let sink = GradientSink::new();
    /// // Two sequences of 4 and 3 tokens, back to back.
    /// let hidden = model.forward_train(&[101, 7, 8, 102, 101, 9, 102], &[4, 3], 42, &sink)?;
    /// assert_eq!(hidden.dims(), &[2, 4, 16]);
    /// let mut grads = hidden.sqr()?.sum_all()?.backward()?;
    /// sink.drain_into(&mut grads)?;
    /// assert!(varmap.all_vars().iter().all(|v| grads.get(v).is_some()));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// On an empty or zero length, a length sum other than `input_ids.len()`, a sequence longer
    /// than `max_position_embeddings`, a token id outside the vocabulary, a dropout probability
    /// outside [0, 1) in the config, or an unsupported device or dtype.
    pub fn forward_train(
        &self,
        input_ids: &[u32],
        lengths: &[usize],
        dropout_seed: u64,
        sink: &GradientSink,
    ) -> Result<Tensor> {
        let params = self.parameters();
        let (tape, dims) = self.packed_pass(&params, input_ids, lengths, Some(dropout_seed))?;
        let (padded, shape) = padded_output(&tape, dims.hidden);
        let pass = TrainingPass {
            output: Mutex::new(Some(padded)),
            shape,
            dims,
            tape,
            params: params.clone(),
            sink: sink.clone(),
        };
        // Anchored on the word-embedding table, so that the pass is part of the graph exactly
        // when the weights are variables.
        params[WORD].apply_op1(pass)
    }

    /// The inference twin of [`BertModel::forward_train`]: the same packed pass without
    /// dropout and without a backward pass, in the same padded layout `(sequences, longest,
    /// hidden)`, zero at padding. Unlike [`BertModel::forward_packed`], whose stacked weights
    /// are a snapshot taken on first use, it reads the current weights on every call: it is
    /// how a model is evaluated while it trains.
    ///
    /// # Errors
    /// As [`BertModel::forward_train`].
    pub fn forward_eval(&self, input_ids: &[u32], lengths: &[usize]) -> Result<Tensor> {
        let params = self.parameters();
        let (tape, dims) = self.packed_pass(&params, input_ids, lengths, None)?;
        let (padded, shape) = padded_output(&tape, dims.hidden);
        Tensor::from_vec(padded, shape, self.device())
    }

    /// Validates a packed batch and runs the forward pass, with dropout from `dropout_seed`
    /// (none without one).
    fn packed_pass(
        &self,
        params: &[Tensor],
        input_ids: &[u32],
        lengths: &[usize],
        dropout_seed: Option<u64>,
    ) -> Result<(Tape, Dims)> {
        if !self.supports_fast_training() {
            candle_core::bail!("the packed training pass needs the CPU device and f32 weights");
        }
        let cfg = self.config();
        let total: usize = lengths.iter().sum();
        if lengths.is_empty() || total != input_ids.len() || lengths.contains(&0) {
            candle_core::bail!(
                "lengths {lengths:?} do not partition {} token ids into non-empty sequences",
                input_ids.len()
            );
        }
        let longest = lengths.iter().copied().max().unwrap_or(0);
        if longest > cfg.max_position_embeddings {
            candle_core::bail!(
                "sequence of {longest} tokens is longer than the model's max_position_embeddings {}",
                cfg.max_position_embeddings
            );
        }
        if let Some(&id) = input_ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
            candle_core::bail!(
                "token id {id} is outside the vocabulary of {}",
                cfg.vocab_size
            );
        }
        for (name, p) in [
            ("hidden_dropout_prob", cfg.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                cfg.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                candle_core::bail!("{name} {p} is outside [0, 1)");
            }
        }
        let dropout = |p: f64| {
            if dropout_seed.is_some() {
                p as f32
            } else {
                0.0
            }
        };
        let dims = Dims {
            hidden: cfg.hidden_size,
            heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
            intermediate: cfg.intermediate_size,
            eps: cfg.layer_norm_eps as f32,
            act: cfg.hidden_act,
            hidden_dropout: dropout(cfg.hidden_dropout_prob),
            attention_dropout: dropout(cfg.attention_probs_dropout_prob),
        };
        let mut offsets = Vec::with_capacity(lengths.len() + 1);
        offsets.push(0usize);
        for &len in lengths {
            offsets.push(offsets[offsets.len() - 1] + len);
        }
        let host = HostParams::new(params);
        // Without dropout there is no backward pass: keep no activations.
        let keep = dropout_seed.is_some();
        let tape = forward(
            &host,
            dims,
            input_ids,
            &offsets,
            dropout_seed.unwrap_or(0),
            keep,
        )?;
        Ok((tape, dims))
    }
}

/// The last hidden states of a pass, padded to its longest sequence.
fn padded_output(tape: &Tape, h: usize) -> (Vec<f32>, Shape) {
    let offsets = &tape.offsets;
    let sequences = offsets.len() - 1;
    let longest = offsets.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    let last = tape.hidden.last().map(Vec::as_slice).unwrap_or(&[]);
    let mut padded = vec![0f32; sequences * longest * h];
    for (s, w) in offsets.windows(2).enumerate() {
        padded[s * longest * h..(s * longest + w[1] - w[0]) * h]
            .copy_from_slice(&last[w[0] * h..w[1] * h]);
    }
    (padded, Shape::from((sequences, longest, h)))
}

/// The differentiable output of one pass: its backward pass is the encoder's.
struct TrainingPass {
    output: Mutex<Option<Vec<f32>>>,
    /// `(sequences, longest, hidden)`.
    shape: Shape,
    dims: Dims,
    tape: Tape,
    params: Vec<Tensor>,
    sink: GradientSink,
}

impl CustomOp1 for TrainingPass {
    fn name(&self) -> &'static str {
        "sbert-bert-training-pass"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        let output = self
            .output
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match output {
            Some(values) => Ok((CpuStorage::F32(values), self.shape.clone())),
            None => candle_core::bail!("a training pass produces its output once"),
        }
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        let h = self.dims.hidden;
        let offsets = &self.tape.offsets;
        let longest = self.shape.dims()[1];
        let mut dy = vec![0f32; offsets[offsets.len() - 1] * h];
        {
            let (storage, layout) = grad.storage_and_layout();
            let Storage::Cpu(s) = &*storage else {
                candle_core::bail!("the training path runs on the CPU only")
            };
            let g = f32_slice(s, layout)?;
            for (sq, w) in offsets.windows(2).enumerate() {
                let from = sq * longest * h;
                dy[w[0] * h..w[1] * h].copy_from_slice(&g[from..from + (w[1] - w[0]) * h]);
            }
        }
        let host = HostParams::new(&self.params);
        let mut state = self.sink.lock();
        let grads = state.buffers(&self.params)?;
        backward(&host, grads, self.dims, &self.tape, dy)?;
        Ok(None)
    }
}

// ---------------------------------------------------------------------------------------------
// Forward

/// The forward pass; with `keep`, the tape holds every layer's activations for the backward
/// pass, otherwise only the last hidden states.
fn forward(
    host: &HostParams<'_>,
    d: Dims,
    ids: &[u32],
    offsets: &[usize],
    seed: u64,
    keep: bool,
) -> Result<Tape> {
    let h = d.hidden;
    let n = ids.len();
    let (word, position, token_type) =
        (host.get(WORD)?, host.get(POSITION)?, host.get(TOKEN_TYPE)?);
    let mut positions = Vec::with_capacity(n);
    for w in offsets.windows(2) {
        positions.extend(0..w[1] - w[0]);
    }
    let mut x = vec![0f32; n * h];
    for ((row, &id), &p) in x.chunks_exact_mut(h).zip(ids).zip(&positions) {
        let (w, pe) = (&word[id as usize * h..][..h], &position[p * h..][..h]);
        for (((v, &w), &pe), &t) in row.iter_mut().zip(w).zip(pe).zip(&token_type[..h]) {
            *v = w + pe + t;
        }
    }
    let (emb_xhat, emb_rstd) = add_norm(
        &mut x,
        None,
        DropoutMask::new(0.0, 0),
        None,
        host.get(EMB_GAMMA)?,
        host.get(EMB_BETA)?,
        d.eps,
    );
    site_dropout(d.hidden_dropout, seed, 0).apply(&mut x);
    let layers_count = host.guards.len().saturating_sub(EMBEDDING_PARAMS) / LAYER_PARAMS;
    let mut hidden = Vec::with_capacity(layers_count + 1);
    hidden.push(x);
    let mut layers = Vec::with_capacity(layers_count);
    for l in 0..layers_count {
        let input = hidden.last().map(Vec::as_slice).unwrap_or(&[]);
        let (tape, out) = layer_forward(host, d, l, input, offsets, seed)?;
        if keep {
            layers.push(tape);
            hidden.push(out);
        } else {
            hidden = vec![out];
        }
    }
    Ok(Tape {
        ids: ids.to_vec(),
        offsets: offsets.to_vec(),
        seed,
        emb_xhat,
        emb_rstd,
        hidden,
        layers,
    })
}

fn layer_forward(
    host: &HostParams<'_>,
    d: Dims,
    l: usize,
    x: &[f32],
    offsets: &[usize],
    seed: u64,
) -> Result<(LayerTape, Vec<f32>)> {
    let base = EMBEDDING_PARAMS + l * LAYER_PARAMS;
    let p = |i: usize| host.get(base + i);
    let (h, i_dim) = (d.hidden, d.intermediate);
    let n = x.len() / h;

    let mut qkv = vec![0f32; n * 3 * h];
    let mut qkv_bias = Vec::with_capacity(3 * h);
    for part in 0..3 {
        gemm(
            MatMut::columns(&mut qkv, 3 * h, part * h, h),
            MatRef::new(x, n, h),
            MatRef::new(p(2 * part)?, h, h).t(),
            false,
        );
        qkv_bias.extend_from_slice(p(2 * part + 1)?);
    }
    add_row_bias(&mut qkv, &qkv_bias);
    let attn_drop = site_dropout(d.attention_dropout, seed, 3 * l + 1);
    let (probs, ctx) = attention_forward(&qkv, offsets, d, attn_drop);

    let mut y1 = vec![0f32; n * h];
    gemm(
        MatMut::new(&mut y1, n, h),
        MatRef::new(&ctx, n, h),
        MatRef::new(p(OUT_W)?, h, h).t(),
        false,
    );
    let (xhat1, rstd1) = add_norm(
        &mut y1,
        Some(p(OUT_B)?),
        site_dropout(d.hidden_dropout, seed, 3 * l + 2),
        Some(x),
        p(LN1_GAMMA)?,
        p(LN1_BETA)?,
        d.eps,
    );

    let mut inter = vec![0f32; n * i_dim];
    gemm(
        MatMut::new(&mut inter, n, i_dim),
        MatRef::new(&y1, n, h),
        MatRef::new(p(INTER_W)?, i_dim, h).t(),
        false,
    );
    add_row_bias(&mut inter, p(INTER_B)?);
    let act = activate(&inter, d.act);

    let mut y2 = vec![0f32; n * h];
    gemm(
        MatMut::new(&mut y2, n, h),
        MatRef::new(&act, n, i_dim),
        MatRef::new(p(FF_OUT_W)?, h, i_dim).t(),
        false,
    );
    let (xhat2, rstd2) = add_norm(
        &mut y2,
        Some(p(FF_OUT_B)?),
        site_dropout(d.hidden_dropout, seed, 3 * l + 3),
        Some(&y1),
        p(LN2_GAMMA)?,
        p(LN2_BETA)?,
        d.eps,
    );
    let tape = LayerTape {
        qkv,
        probs,
        ctx,
        xhat1,
        rstd1,
        y1,
        inter,
        act,
        xhat2,
        rstd2,
    };
    Ok((tape, y2))
}

/// `x ← x + bias` on every row.
fn add_row_bias(x: &mut [f32], bias: &[f32]) {
    let w = bias.len();
    x.par_chunks_mut(rows_per_task(w) * w).for_each(|rows| {
        for row in rows.chunks_exact_mut(w) {
            row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
        }
    });
}

/// `x ← LayerNorm(drop(x + bias) + residual) · γ + β` row by row; returns x̂ and 1/σ.
fn add_norm(
    x: &mut [f32],
    bias: Option<&[f32]>,
    drop: DropoutMask,
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> (Vec<f32>, Vec<f32>) {
    let h = gamma.len();
    let rows = x.len() / h;
    let mut xhat = vec![0f32; x.len()];
    let mut rstd = vec![0f32; rows];
    let per = rows_per_task(h);
    x.par_chunks_mut(per * h)
        .zip(xhat.par_chunks_mut(per * h))
        .zip(rstd.par_chunks_mut(per))
        .enumerate()
        .for_each(|(c, ((x, xhat), rstd))| {
            for (r, ((row, xh), rs)) in x
                .chunks_exact_mut(h)
                .zip(xhat.chunks_exact_mut(h))
                .zip(rstd.iter_mut())
                .enumerate()
            {
                let global = (c * per + r) * h;
                if let Some(bias) = bias {
                    for (k, (v, b)) in row.iter_mut().zip(bias).enumerate() {
                        *v = (*v + b) * drop.factor(global + k);
                    }
                }
                if let Some(residual) = residual {
                    row.iter_mut()
                        .zip(&residual[global..global + h])
                        .for_each(|(v, r)| *v += r);
                }
                *rs = normalize_row(row, xh, gamma, beta, eps);
            }
        });
    (xhat, rstd)
}

#[inline(always)]
fn normalize_row_generic(
    row: &mut [f32],
    xhat: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> f32 {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let rstd = crate::kernels::inverse_std(var, eps);
    for (((v, xh), &g), &b) in row.iter_mut().zip(xhat.iter_mut()).zip(gamma).zip(beta) {
        *xh = (*v - mean) * rstd;
        *v = *xh * g + b;
    }
    rstd
}

kernels::multiversion!(fn normalize_row(row: &mut [f32], xhat: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) -> f32 => normalize_row_generic);

#[inline(always)]
fn activation_slope(x: f32, act: HiddenAct) -> f32 {
    match act {
        HiddenAct::Gelu => {
            let cdf = 0.5 * (1.0 + kernels::erf(x * std::f32::consts::FRAC_1_SQRT_2));
            cdf + x * (-0.5 * x * x).exp() * 0.398_942_3
        }
        HiddenAct::GeluTanh => {
            const C: f32 = 0.797_884_6;
            let t = (C * (x + 0.044_715 * x * x * x)).tanh();
            0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * C * (1.0 + 3.0 * 0.044_715 * x * x)
        }
        HiddenAct::Relu => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        HiddenAct::Silu => {
            let s = 1.0 / (1.0 + (-x).exp());
            s * (1.0 + x * (1.0 - s))
        }
    }
}

#[inline(always)]
fn activate_chunk_generic(out: &mut [f32], x: &[f32], act: HiddenAct) {
    for (o, &x) in out.iter_mut().zip(x) {
        *o = kernels::activation(x, act);
    }
}

kernels::multiversion!(fn activate_chunk(out: &mut [f32], x: &[f32], act: HiddenAct) => activate_chunk_generic);

fn activate(x: &[f32], act: HiddenAct) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(1 << 14)
        .zip(x.par_chunks(1 << 14))
        .for_each(|(o, x)| activate_chunk(o, x, act));
    out
}

#[inline(always)]
fn activation_backward_chunk_generic(dy: &mut [f32], x: &[f32], act: HiddenAct) {
    for (d, &x) in dy.iter_mut().zip(x) {
        *d *= activation_slope(x, act);
    }
}

kernels::multiversion!(fn activation_backward_chunk(dy: &mut [f32], x: &[f32], act: HiddenAct) => activation_backward_chunk_generic);

/// One (sequence, head) of the attention: tokens `start..start + len`, and where its
/// probability block starts.
#[derive(Debug, Clone, Copy)]
struct HeadTask {
    start: usize,
    len: usize,
    head: usize,
    block: usize,
}

fn head_tasks(offsets: &[usize], heads: usize) -> Vec<HeadTask> {
    let mut tasks = Vec::with_capacity((offsets.len() - 1) * heads);
    let mut block = 0;
    for w in offsets.windows(2) {
        let len = w[1] - w[0];
        for head in 0..heads {
            tasks.push(HeadTask {
                start: w[0],
                len,
                head,
                block,
            });
            block += len * len;
        }
    }
    tasks
}

/// Columns `part·h + head·hd ..` of rows `start..start + len` of a `(n, width)` matrix,
/// as a contiguous `(len, hd)` block.
fn gather(m: &[f32], width: usize, col: usize, task: HeadTask, hd: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(task.len * hd);
    for t in task.start..task.start + task.len {
        out.extend_from_slice(&m[t * width + col..t * width + col + hd]);
    }
    out
}

/// Writes a `(len, hd)` block into columns `col..` of rows `start..` of a `(n, width)` matrix.
fn scatter(m: &mut [f32], width: usize, col: usize, task: HeadTask, block: &[f32], hd: usize) {
    for (i, row) in block.chunks_exact(hd).enumerate() {
        let t = task.start + i;
        m[t * width + col..t * width + col + hd].copy_from_slice(row);
    }
}

/// Softmax probabilities (into `probs`, `len × len`) and the context `(len, hd)` of one head.
#[inline(always)]
fn head_forward_generic(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &mut [f32],
    ctx: &mut [f32],
    job: HeadJob,
) {
    let HeadJob {
        head_dim: hd,
        scale,
        drop,
        block,
    } = job;
    let len = q.len() / hd;
    for i in 0..len {
        let qi = &q[i * hd..(i + 1) * hd];
        let row = &mut probs[i * len..(i + 1) * len];
        let mut max = f32::NEG_INFINITY;
        for (j, s) in row.iter_mut().enumerate() {
            *s = scale * dot(qi, &k[j * hd..(j + 1) * hd]);
            max = max.max(*s);
        }
        let mut sum = 0f32;
        for s in row.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let inv = 1.0 / sum;
        let out = &mut ctx[i * hd..(i + 1) * hd];
        for (j, s) in row.iter_mut().enumerate() {
            *s *= inv;
            let w = *s * drop.factor(block + i * len + j);
            axpy(out, w, &v[j * hd..(j + 1) * hd]);
        }
    }
}

kernels::multiversion!(fn head_forward(q: &[f32], k: &[f32], v: &[f32], probs: &mut [f32], ctx: &mut [f32], job: HeadJob) => head_forward_generic);

/// The constants of one head's attention kernels.
#[derive(Debug, Clone, Copy)]
struct HeadJob {
    head_dim: usize,
    scale: f32,
    drop: DropoutMask,
    /// Index of the head's first probability (the dropout mask's index base).
    block: usize,
}

/// Attention over packed sequences: probabilities (per task block) and the context `(n, h)`.
fn attention_forward(
    qkv: &[f32],
    offsets: &[usize],
    d: Dims,
    drop: DropoutMask,
) -> (Vec<f32>, Vec<f32>) {
    let (h, hd) = (d.hidden, d.head_dim);
    let n = qkv.len() / (3 * h);
    let scale = 1.0 / (hd as f32).sqrt();
    let tasks = head_tasks(offsets, d.heads);
    let total: usize = tasks.iter().map(|t| t.len * t.len).sum();
    let mut probs = vec![0f32; total];
    let mut blocks = Vec::with_capacity(tasks.len());
    let mut rest = probs.as_mut_slice();
    for t in &tasks {
        let (block, tail) = rest.split_at_mut(t.len * t.len);
        blocks.push(block);
        rest = tail;
    }
    let contexts: Vec<Vec<f32>> = tasks
        .par_iter()
        .zip(blocks.into_par_iter())
        .map(|(&t, block)| {
            let col = t.head * hd;
            let (q, k, v) = (
                gather(qkv, 3 * h, col, t, hd),
                gather(qkv, 3 * h, h + col, t, hd),
                gather(qkv, 3 * h, 2 * h + col, t, hd),
            );
            let mut ctx = vec![0f32; t.len * hd];
            let job = HeadJob {
                head_dim: hd,
                scale,
                drop,
                block: t.block,
            };
            head_forward(&q, &k, &v, block, &mut ctx, job);
            ctx
        })
        .collect();
    let mut ctx = vec![0f32; n * h];
    for (t, block) in tasks.iter().zip(&contexts) {
        scatter(&mut ctx, h, t.head * hd, *t, block, hd);
    }
    (probs, ctx)
}

// ---------------------------------------------------------------------------------------------
// Backward

/// `(&mut v[i], &mut v[j])` for `i < j`.
fn two_mut(v: &mut [Vec<f32>], i: usize, j: usize) -> (&mut [f32], &mut [f32]) {
    let (a, b) = v.split_at_mut(j);
    (&mut a[i], &mut b[0])
}

fn backward(
    host: &HostParams<'_>,
    grads: &mut [Vec<f32>],
    d: Dims,
    tape: &Tape,
    mut dy: Vec<f32>,
) -> Result<()> {
    for l in (0..tape.layers.len()).rev() {
        dy = layer_backward(host, grads, d, l, tape, dy)?;
    }
    // Embeddings: dropout, LayerNorm, then the three table lookups.
    let h = d.hidden;
    site_dropout(d.hidden_dropout, tape.seed, 0).apply(&mut dy);
    let de = {
        let (g, b) = two_mut(grads, EMB_GAMMA, EMB_BETA);
        norm_backward(
            &dy,
            &tape.emb_xhat,
            &tape.emb_rstd,
            host.get(EMB_GAMMA)?,
            g,
            b,
        )
    };
    let word = &mut grads[WORD];
    for (row, &id) in de.chunks_exact(h).zip(&tape.ids) {
        axpy(&mut word[id as usize * h..][..h], 1.0, row);
    }
    let position = &mut grads[POSITION];
    for w in tape.offsets.windows(2) {
        for (p, row) in de[w[0] * h..w[1] * h].chunks_exact(h).enumerate() {
            axpy(&mut position[p * h..][..h], 1.0, row);
        }
    }
    add_column_sums(&mut grads[TOKEN_TYPE][..h], &de, h, 0);
    Ok(())
}

fn layer_backward(
    host: &HostParams<'_>,
    grads: &mut [Vec<f32>],
    d: Dims,
    l: usize,
    tape: &Tape,
    dy: Vec<f32>,
) -> Result<Vec<f32>> {
    let base = EMBEDDING_PARAMS + l * LAYER_PARAMS;
    let p = |i: usize| host.get(base + i);
    let t = &tape.layers[l];
    let x = &tape.hidden[l];
    let (h, i_dim) = (d.hidden, d.intermediate);
    let n = x.len() / h;

    // Feed-forward block: y2 = LN(drop(act · W2ᵀ + b2) + y1).
    let ff_drop = site_dropout(d.hidden_dropout, tape.seed, 3 * l + 3);
    let (d_out, mut d_y1) = add_norm_backward(
        grads,
        base + LN2_GAMMA,
        p(LN2_GAMMA)?,
        &dy,
        (&t.xhat2, &t.rstd2),
        ff_drop,
    );
    let mut d_inter = vec![0f32; n * i_dim];
    let ff_out = p(FF_OUT_W)?;
    dense_backward(
        grads,
        base + FF_OUT_W,
        ff_out,
        Cols::all(&d_out, h),
        &t.act,
        &mut d_inter,
        false,
    );
    d_inter
        .par_chunks_mut(1 << 14)
        .zip(t.inter.par_chunks(1 << 14))
        .for_each(|(dy, x)| activation_backward_chunk(dy, x, d.act));
    let inter = p(INTER_W)?;
    dense_backward(
        grads,
        base + INTER_W,
        inter,
        Cols::all(&d_inter, i_dim),
        &t.y1,
        &mut d_y1,
        true,
    );

    // Attention block: y1 = LN(drop(ctx · Woᵀ + bo) + x).
    let attn_out_drop = site_dropout(d.hidden_dropout, tape.seed, 3 * l + 2);
    let (d_attn, mut dx) = add_norm_backward(
        grads,
        base + LN1_GAMMA,
        p(LN1_GAMMA)?,
        &d_y1,
        (&t.xhat1, &t.rstd1),
        attn_out_drop,
    );
    let mut d_ctx = vec![0f32; n * h];
    let out = p(OUT_W)?;
    dense_backward(
        grads,
        base + OUT_W,
        out,
        Cols::all(&d_attn, h),
        &t.ctx,
        &mut d_ctx,
        false,
    );
    let attn_drop = site_dropout(d.attention_dropout, tape.seed, 3 * l + 1);
    let d_qkv = attention_backward(&t.qkv, &t.probs, &d_ctx, &tape.offsets, d, attn_drop);
    for part in 0..3 {
        let d_part = Cols {
            data: &d_qkv,
            width: 3 * h,
            start: part * h,
            cols: h,
        };
        dense_backward(
            grads,
            base + 2 * part,
            p(2 * part)?,
            d_part,
            x,
            &mut dx,
            true,
        );
    }
    Ok(dx)
}

/// The backward pass of `y = LayerNorm(drop(z) + r)` (γ at parameter `gamma_index`, β after
/// it) from x̂ and 1/σ: adds the γ and β gradients, returns the gradients of `z` and `r`.
fn add_norm_backward(
    grads: &mut [Vec<f32>],
    gamma_index: usize,
    gamma: &[f32],
    dy: &[f32],
    (xhat, rstd): (&[f32], &[f32]),
    drop: DropoutMask,
) -> (Vec<f32>, Vec<f32>) {
    let (g, b) = two_mut(grads, gamma_index, gamma_index + 1);
    let d_residual = norm_backward(dy, xhat, rstd, gamma, g, b);
    let mut d_z = d_residual.clone();
    drop.apply(&mut d_z);
    (d_z, d_residual)
}

/// Columns `start..start + cols` of a row-major matrix with `width` columns.
#[derive(Debug, Clone, Copy)]
struct Cols<'a> {
    data: &'a [f32],
    width: usize,
    start: usize,
    cols: usize,
}

impl<'a> Cols<'a> {
    fn all(data: &'a [f32], width: usize) -> Self {
        Self {
            data,
            width,
            start: 0,
            cols: width,
        }
    }

    fn view(self) -> MatRef<'a> {
        MatRef::columns(self.data, self.width, self.start, self.cols)
    }
}

/// The backward pass of a dense layer `y = x · Wᵀ + b` (weight at parameter `weight`, its bias
/// at `weight + 1`): adds `Σ dy` to the bias gradient and `dyᵀ · x` to the weight gradient, and
/// writes `dy · W` into `dx` (adds it with `accumulate`).
fn dense_backward(
    grads: &mut [Vec<f32>],
    weight: usize,
    w: &[f32],
    dy: Cols<'_>,
    x: &[f32],
    dx: &mut [f32],
    accumulate: bool,
) {
    let out = dy.cols;
    let inner = w.len() / out.max(1);
    let n = x.len() / inner.max(1);
    add_column_sums(&mut grads[weight + 1], dy.data, dy.width, dy.start);
    gemm(
        MatMut::new(&mut grads[weight], out, inner),
        dy.view().t(),
        MatRef::new(x, n, inner),
        true,
    );
    gemm(
        MatMut::new(dx, n, inner),
        dy.view(),
        MatRef::new(w, out, inner),
        accumulate,
    );
}

/// `dst[j] += Σ_rows m[row, start + j]` for a row-major `m` with `width` columns.
fn add_column_sums(dst: &mut [f32], m: &[f32], width: usize, start: usize) {
    let cols = dst.len();
    let per = rows_per_task(width);
    let sums = m
        .par_chunks(per * width)
        .map(|rows| {
            let mut acc = vec![0f32; cols];
            for row in rows.chunks_exact(width) {
                axpy(&mut acc, 1.0, &row[start..start + cols]);
            }
            acc
        })
        .reduce(
            || vec![0f32; cols],
            |mut a, b| {
                axpy(&mut a, 1.0, &b);
                a
            },
        );
    axpy(dst, 1.0, &sums);
}

/// The gradients of one head's q, k and v, `(len, hd)` each, written into `dq`, `dk`, `dv`.
#[inline(always)]
fn head_backward_generic(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    dc: &[f32],
    grads: (&mut [f32], &mut [f32], &mut [f32]),
    job: HeadJob,
) {
    let HeadJob {
        head_dim: hd,
        scale,
        drop,
        block,
    } = job;
    let (dq, dk, dv) = grads;
    let len = q.len() / hd;
    let mut ds = vec![0f32; len];
    for i in 0..len {
        let p = &probs[i * len..(i + 1) * len];
        let dci = &dc[i * hd..(i + 1) * hd];
        let mut row_dot = 0f32;
        for j in 0..len {
            let f = drop.factor(block + i * len + j);
            // Through the dropped probabilities: ctx_i = Σ_j p_ij f_ij v_j.
            axpy(&mut dv[j * hd..(j + 1) * hd], p[j] * f, dci);
            let dp = f * dot(dci, &v[j * hd..(j + 1) * hd]);
            ds[j] = dp;
            row_dot += p[j] * dp;
        }
        // Softmax: ds_ij = p_ij (dp_ij − Σ_k p_ik dp_ik), then the score scale.
        let qi = &q[i * hd..(i + 1) * hd];
        let dqi_start = i * hd;
        for j in 0..len {
            let s = scale * p[j] * (ds[j] - row_dot);
            axpy(
                &mut dq[dqi_start..dqi_start + hd],
                s,
                &k[j * hd..(j + 1) * hd],
            );
            axpy(&mut dk[j * hd..(j + 1) * hd], s, qi);
        }
    }
}

kernels::multiversion!(fn head_backward(q: &[f32], k: &[f32], v: &[f32], probs: &[f32], dc: &[f32], grads: (&mut [f32], &mut [f32], &mut [f32]), job: HeadJob) => head_backward_generic);

/// The gradient of the biased q, k, v `(n, 3h)` from that of the context `(n, h)`.
fn attention_backward(
    qkv: &[f32],
    probs: &[f32],
    d_ctx: &[f32],
    offsets: &[usize],
    d: Dims,
    drop: DropoutMask,
) -> Vec<f32> {
    let (h, hd) = (d.hidden, d.head_dim);
    let n = qkv.len() / (3 * h);
    let scale = 1.0 / (hd as f32).sqrt();
    let tasks = head_tasks(offsets, d.heads);
    let parts: Vec<[Vec<f32>; 3]> = tasks
        .par_iter()
        .map(|&t| {
            let col = t.head * hd;
            let (q, k, v) = (
                gather(qkv, 3 * h, col, t, hd),
                gather(qkv, 3 * h, h + col, t, hd),
                gather(qkv, 3 * h, 2 * h + col, t, hd),
            );
            let dc = gather(d_ctx, h, col, t, hd);
            let block = &probs[t.block..t.block + t.len * t.len];
            let (mut dq, mut dk, mut dv) = (
                vec![0f32; t.len * hd],
                vec![0f32; t.len * hd],
                vec![0f32; t.len * hd],
            );
            head_backward(
                &q,
                &k,
                &v,
                block,
                &dc,
                (&mut dq, &mut dk, &mut dv),
                HeadJob {
                    head_dim: hd,
                    scale,
                    drop,
                    block: t.block,
                },
            );
            [dq, dk, dv]
        })
        .collect();
    let mut d_qkv = vec![0f32; n * 3 * h];
    for (t, blocks) in tasks.iter().zip(&parts) {
        for (part, block) in blocks.iter().enumerate() {
            scatter(&mut d_qkv, 3 * h, part * h + t.head * hd, *t, block, hd);
        }
    }
    d_qkv
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BertConfig, Mode};
    use candle_core::{DType, Device, Var};
    use candle_nn::{VarBuilder, VarMap};

    fn tiny(dropout: f64) -> (VarMap, BertModel) {
        let config = BertConfig {
            vocab_size: 40,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 24,
            max_position_embeddings: 16,
            hidden_dropout_prob: dropout,
            attention_probs_dropout_prob: dropout,
            ..BertConfig::default()
        };
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = BertModel::load(vb, &config).expect("load");
        for var in varmap.all_vars() {
            let noise = Tensor::randn(0f32, 0.5, var.shape(), &Device::Cpu).expect("randn");
            // LayerNorm scales near 1, everything else around 0.
            let value = if var.rank() == 1 {
                (noise + 1.0).expect("add")
            } else {
                noise
            };
            var.set(&value).expect("set");
        }
        (varmap, model)
    }

    const LENGTHS: [usize; 3] = [5, 2, 7];

    fn ids() -> Vec<u32> {
        (0..LENGTHS.iter().sum::<usize>())
            .map(|i| (i * 7 % 40) as u32)
            .collect()
    }

    /// The same sequences as a padded batch with its mask, and weights for a loss that ignores
    /// padding.
    fn padded(ids: &[u32], h: usize) -> (Tensor, Tensor, Tensor) {
        let t = LENGTHS.iter().copied().max().unwrap_or(0);
        let (mut padded, mut mask) = (vec![0u32; LENGTHS.len() * t], vec![0f32; LENGTHS.len() * t]);
        let mut start = 0;
        for (s, &len) in LENGTHS.iter().enumerate() {
            padded[s * t..s * t + len].copy_from_slice(&ids[start..start + len]);
            mask[s * t..s * t + len].fill(1.0);
            start += len;
        }
        let dev = &Device::Cpu;
        let b = LENGTHS.len();
        let mask = Tensor::from_vec(mask, (b, t), dev).expect("mask");
        let weights = Tensor::randn(0f32, 1.0, (b, t, h), dev)
            .expect("randn")
            .broadcast_mul(&mask.unsqueeze(2).expect("unsqueeze"))
            .expect("mul");
        let ids = Tensor::from_vec(padded, (b, t), dev).expect("ids");
        (ids, mask, weights)
    }

    /// max |t|; NaN when `t` holds a NaN (a reduction with `max` would skip it).
    fn max_abs(t: &Tensor) -> f32 {
        t.flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .expect("values")
            .into_iter()
            .map(f32::abs)
            .fold(0.0, |m, v| if v.is_nan() || v > m { v } else { m })
    }

    #[test]
    fn values_and_gradients_match_the_autograd_path() {
        let (varmap, model) = tiny(0.0);
        let ids = ids();
        let (padded_ids, mask, weights) = padded(&ids, 16);
        let sink = GradientSink::new();
        let ours = model
            .forward_train(&ids, &LENGTHS, 7, &sink)
            .expect("forward_train");
        let train = Mode {
            train: true,
            ..Mode::default()
        };
        let reference = model
            .forward_with_mode(&padded_ids, None, &mask, train)
            .expect("forward")
            .hidden_states
            .broadcast_mul(&mask.unsqueeze(2).expect("unsqueeze"))
            .expect("mul");
        let diff = max_abs(&(&ours - &reference).expect("sub"));
        assert!(diff < 1e-5, "outputs differ by {diff}");

        let loss = |h: &Tensor| (h * &weights).and_then(|l| l.sum_all()).expect("loss");
        let mut grads = loss(&ours).backward().expect("backward");
        assert!(!sink.is_empty());
        sink.drain_into(&mut grads).expect("drain");
        assert!(sink.is_empty());
        let expected = loss(&reference).backward().expect("backward");
        let vars = varmap.all_vars();
        assert_eq!(vars.len(), 5 + 2 * LAYER_PARAMS);
        for var in &vars {
            let (Some(a), Some(b)) = (grads.get(var), expected.get(var)) else {
                panic!("a weight of shape {:?} has no gradient", var.shape());
            };
            // (The key bias has a zero gradient: softmax ignores a constant added to a row.)
            let scale = max_abs(b).max(1.0);
            let diff = max_abs(&(a - b).expect("sub"));
            assert!(
                diff / scale < 1e-4,
                "gradient of a {:?} weight: |Δ| {diff} of {scale}",
                var.shape()
            );
        }
    }

    /// With dropout: the seed replays the masks, and the gradient matches central differences
    /// (the masks are fixed by the seed, so the loss is a smooth function of the weights).
    #[test]
    fn dropout_is_seeded_and_gradients_match_finite_differences() {
        let (varmap, model) = tiny(0.2);
        let ids = ids();
        let (_, _, weights) = padded(&ids, 16);
        let sink = GradientSink::new();
        let run = |seed| {
            model
                .forward_train(&ids, &LENGTHS, seed, &sink)
                .expect("forward")
        };
        let (a, b, c) = (run(3), run(3), run(4));
        assert_eq!(max_abs(&(&a - &b).expect("sub")), 0.0);
        assert!(max_abs(&(&a - &c).expect("sub")) > 1e-3);

        let loss = |seed| {
            (run(seed) * &weights)
                .and_then(|l| l.sum_all())
                .expect("loss")
        };
        let mut grads = loss(3).backward().expect("backward");
        sink.drain_into(&mut grads).expect("drain");
        let data = varmap.data().lock().expect("lock").clone();
        let probes = [
            ("embeddings.word_embeddings.weight", 7 * 16 + 3),
            ("embeddings.position_embeddings.weight", 2 * 16 + 5),
            ("encoder.layer.0.attention.self.query.weight", 17),
            ("encoder.layer.0.attention.self.key.bias", 4),
            ("encoder.layer.1.attention.output.LayerNorm.weight", 9),
            ("encoder.layer.1.intermediate.dense.weight", 40),
            ("encoder.layer.1.output.dense.bias", 2),
        ];
        for (name, index) in probes {
            let var: &Var = &data[name];
            let analytic = grads
                .get(var)
                .expect("gradient")
                .flatten_all()
                .and_then(|g| g.to_vec1::<f32>())
                .expect("values")[index];
            let original = var.as_tensor().copy().expect("copy");
            let values = original
                .flatten_all()
                .and_then(|v| v.to_vec1::<f32>())
                .expect("values");
            let at = |delta: f32| {
                let mut v = values.clone();
                v[index] += delta;
                var.set(&Tensor::from_vec(v, original.shape(), &Device::Cpu).expect("t"))
                    .expect("set");
                let l = loss(3).to_scalar::<f32>().expect("scalar");
                sink.clear();
                l
            };
            let eps = 1e-2;
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            var.set(&original).expect("restore");
            assert!(
                (numeric - analytic).abs() <= 2e-2 * numeric.abs().max(1.0),
                "{name}[{index}]: analytic {analytic}, numeric {numeric}"
            );
        }
    }

    /// The evaluation pass equals the training pass without dropout, and the padded graph in
    /// inference mode, and reads weights changed after the first call.
    #[test]
    fn eval_pass_matches_inference_and_reads_current_weights() {
        let (varmap, model) = tiny(0.3);
        let ids = ids();
        let (padded_ids, mask, _) = padded(&ids, 16);
        let inference = |model: &BertModel| {
            model
                .forward(&padded_ids, None, &mask)
                .and_then(|h| h.broadcast_mul(&mask.unsqueeze(2)?))
                .expect("forward")
        };
        let ours = model.forward_eval(&ids, &LENGTHS).expect("eval");
        let diff = max_abs(&(&ours - inference(&model)).expect("sub"));
        assert!(diff < 1e-5, "eval pass differs from inference by {diff}");
        let var = &varmap.all_vars()[0];
        var.set(&(var.as_tensor() * 1.5).expect("scale"))
            .expect("set");
        let changed = model.forward_eval(&ids, &LENGTHS).expect("eval");
        assert!(max_abs(&(&changed - &ours).expect("sub")) > 1e-3);
        let diff = max_abs(&(&changed - inference(&model)).expect("sub"));
        assert!(diff < 1e-5, "after the update: {diff}");
    }

    #[test]
    fn bad_lengths_and_ids_are_errors() {
        let (_, model) = tiny(0.0);
        let sink = GradientSink::new();
        assert!(model.forward_train(&[1, 2, 3], &[2], 0, &sink).is_err());
        assert!(model.forward_train(&[1, 2], &[2, 0], 0, &sink).is_err());
        assert!(model.forward_train(&[], &[], 0, &sink).is_err());
        assert!(model.forward_train(&[1, 99], &[2], 0, &sink).is_err());
        assert!(model.forward_train(&[1; 17], &[17], 0, &sink).is_err());
        assert!(model.forward_eval(&[1, 99], &[2]).is_err());
        assert!(model.forward_eval(&[], &[]).is_err());
        let (_, certain) = tiny(1.0);
        assert!(certain.forward_train(&[1, 2], &[2], 0, &sink).is_err());
    }
}
