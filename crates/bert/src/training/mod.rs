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

mod attention;
mod backward;
mod forward;
#[cfg(test)]
mod tests;

use backward::backward;
use forward::forward;
