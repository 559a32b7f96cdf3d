//! The packed encoder pass on the CPU in f32: sequences stored back to back without padding
//! (TEI's cumulative-length layout), every token-wise op over the real tokens only, attention
//! per (sequence, head).
//!
//! One forward pass serves inference and training: [`forward`] reads the current weights on
//! every call (no copy of them is cached) and, when it records, keeps on a [`Tape`] what the
//! backward pass ([`backward`]) needs. Dropout masks are a pure function of the seed, so the
//! backward pass recomputes them. [`training`] wraps a recorded pass as one differentiable
//! candle tensor whose backward pass adds every weight's gradient into a
//! [`GradientSink`](training::GradientSink).

use candle_core::{Result, Storage, StorageRef, Tensor};

use crate::config::{BertConfig, HiddenAct};
use crate::cpu::attention::{attention_forward, AttentionShape};
use crate::cpu::dropout::{mix, DropoutMask};
use crate::cpu::int8::{int8_feed_forward, int8_product};
use crate::cpu::matmul::product;
use crate::cpu::norm::{add_norm, NormInput, NormParams, NormSaved};
use crate::cpu::panels::{panel_feed_forward, panel_product};
use crate::cpu::pool::run_awake;
use crate::cpu::{activation, f32_slice};
use crate::params::{BertParams, BertWeights, LayerParams, Norm};
use crate::quantization::{PreparedLayer, PreparedMatrix, PreparedWeights, Product};
use crate::relative::DistanceBias;

pub(crate) mod backward;
#[cfg(test)]
mod tests;
pub(crate) mod training;

/// Sequences stored back to back: token ids and the sequence boundaries.
#[derive(Debug, Clone)]
pub(crate) struct PackedBatch {
    pub ids: Vec<u32>,
    /// The segment of each token (parallel to `ids`); empty when all are 0.
    pub types: Vec<u32>,
    /// `0`, then the running sum of the lengths.
    pub offsets: Vec<usize>,
}

impl PackedBatch {
    /// Checks `input_ids` and `lengths` against the model's config.
    ///
    /// # Errors
    /// On no sequence, an empty one, a length sum other than `input_ids.len()`, a sequence
    /// longer than `max_position_embeddings`, a token id outside the vocabulary, or token
    /// types that do not run parallel to the ids or name a segment the model has no row for.
    pub(crate) fn new(
        input_ids: &[u32],
        token_type_ids: Option<&[u32]>,
        lengths: &[usize],
        cfg: &BertConfig,
        type_rows: usize,
    ) -> Result<Self> {
        let total = lengths.iter().try_fold(0usize, |a, &l| a.checked_add(l));
        if lengths.is_empty() || total != Some(input_ids.len()) || lengths.contains(&0) {
            candle_core::bail!(
                "lengths {lengths:?} do not partition {} token ids into non-empty sequences",
                input_ids.len()
            );
        }
        let longest = lengths.iter().copied().max().unwrap_or(0);
        if longest > cfg.max_sequence_length() {
            candle_core::bail!(
                "sequence of {longest} tokens is longer than the model's limit of {}",
                cfg.max_sequence_length()
            );
        }
        if let Some(&id) = input_ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
            candle_core::bail!(
                "token id {id} is outside the vocabulary of {}",
                cfg.vocab_size
            );
        }
        let types = match token_type_ids {
            Some(types) if types.iter().any(|&t| t != 0) => {
                if types.len() != input_ids.len() {
                    candle_core::bail!(
                        "{} token types for {} token ids",
                        types.len(),
                        input_ids.len()
                    );
                }
                if let Some(&t) = types.iter().find(|&&t| t as usize >= type_rows) {
                    candle_core::bail!(
                        "token type {t} is outside the model's {type_rows} segment embedding(s)"
                    );
                }
                types.to_vec()
            }
            _ => Vec::new(),
        };
        let mut offsets = Vec::with_capacity(lengths.len() + 1);
        offsets.push(0usize);
        for &len in lengths {
            offsets.push(offsets[offsets.len() - 1] + len);
        }
        Ok(Self {
            ids: input_ids.to_vec(),
            types,
            offsets,
        })
    }

    /// Tokens in the batch.
    pub(crate) fn tokens(&self) -> usize {
        self.ids.len()
    }

    /// Tokens in the longest sequence.
    pub(crate) fn longest(&self) -> usize {
        self.offsets
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(0)
    }
}

/// The sizes and constants of a pass.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    pub hidden: usize,
    pub intermediate: usize,
    pub attention: AttentionShape,
    pub eps: f32,
    pub act: HiddenAct,
    /// Position id of each sequence's first token.
    pub first_position: usize,
    pub hidden_dropout: f32,
    pub attention_dropout: f32,
}

impl Dims {
    /// The dimensions of `cfg`, with its dropout probabilities when `train` and none otherwise.
    ///
    /// # Errors
    /// When a dropout probability of a training pass is outside [0, 1).
    pub(crate) fn new(cfg: &BertConfig, train: bool) -> Result<Self> {
        let dropout = |name: &str, p: f64| -> Result<f32> {
            if !train {
                Ok(0.0)
            } else if (0.0..1.0).contains(&p) {
                Ok(p as f32)
            } else {
                candle_core::bail!("{name} {p} is outside [0, 1)")
            }
        };
        Ok(Self {
            hidden: cfg.hidden_size,
            intermediate: cfg.intermediate_size,
            attention: AttentionShape {
                heads: cfg.num_attention_heads,
                head_dim: cfg.head_dim(),
            },
            eps: cfg.layer_norm_eps as f32,
            act: cfg.hidden_act,
            first_position: cfg.first_position(),
            hidden_dropout: dropout("hidden_dropout_prob", cfg.hidden_dropout_prob)?,
            attention_dropout: dropout(
                "attention_probs_dropout_prob",
                cfg.attention_probs_dropout_prob,
            )?,
        })
    }

    /// The dropout mask of `site` under `seed`: each site draws from its own stream, numbered
    /// 0 for the embeddings and `3l + 1`, `3l + 2`, `3l + 3` for layer `l`'s sites.
    pub(crate) fn dropout(&self, seed: u64, site: Site) -> DropoutMask {
        let (p, stream) = match site {
            Site::Embeddings => (self.hidden_dropout, 0),
            Site::Attention(l) => (self.attention_dropout, 3 * l + 1),
            Site::AttentionOutput(l) => (self.hidden_dropout, 3 * l + 2),
            Site::Output(l) => (self.hidden_dropout, 3 * l + 3),
        };
        DropoutMask::new(p, mix(seed ^ mix(stream as u64)))
    }
}

/// Where a pass applies dropout; the forward and backward passes name the same sites.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Site {
    /// The embeddings after their LayerNorm.
    Embeddings,
    /// Layer `l`'s attention probabilities.
    Attention(usize),
    /// Layer `l`'s attention output, before the residual.
    AttentionOutput(usize),
    /// Layer `l`'s feed-forward output, before the residual.
    Output(usize),
}

/// Read locks on every weight's storage for the length of a pass.
pub(crate) struct WeightGuards<'a>(BertParams<(StorageRef<'a>, &'a candle_core::Layout)>);

/// The weights as host slices, by name.
pub(crate) type HostWeights<'a> = BertParams<&'a [f32]>;

impl<'a> WeightGuards<'a> {
    pub(crate) fn new(weights: &'a BertWeights) -> Self {
        Self(weights.map(Tensor::storage_and_layout))
    }

    /// The values of every weight.
    ///
    /// # Errors
    /// When a weight is not a contiguous f32 CPU tensor.
    pub(crate) fn host(&self) -> Result<HostWeights<'_>> {
        self.0.try_map(|(storage, layout)| match &**storage {
            Storage::Cpu(s) => f32_slice(s, layout),
            _ => candle_core::bail!("the packed pass runs on the CPU only"),
        })
    }
}

/// What the backward pass of one layer reads.
pub(crate) struct LayerTape {
    /// Query, key and value before their bias, `(n, 3h)`.
    pub qkv: Vec<f32>,
    /// Attention probabilities before dropout, one `len × len` block per (sequence, head).
    pub probs: Vec<f32>,
    /// Attention context, `(n, h)`.
    pub ctx: Vec<f32>,
    pub norm1: NormSaved,
    /// Output of the attention block, `(n, h)`.
    pub y1: Vec<f32>,
    /// Biased feed-forward pre-activation, `(n, i)`.
    pub inter: Vec<f32>,
    /// The activation of `inter`.
    pub act: Vec<f32>,
    pub norm2: NormSaved,
}

/// Everything a recorded pass keeps for its backward pass.
pub(crate) struct Tape {
    pub batch: PackedBatch,
    pub seed: u64,
    /// The relative position bias the pass added to its scores (MPNet).
    pub position_bias: Option<DistanceBias>,
    pub embedding_norm: NormSaved,
    /// `inputs[l]` is the input of layer `l` (`inputs[0]`: the embeddings after dropout).
    pub inputs: Vec<Vec<f32>>,
    pub layers: Vec<LayerTape>,
}

/// The forward pass over `batch`: the last hidden states `(tokens, hidden)` and, with
/// `record`, the tape of its backward pass. Dropout follows `d` (none for inference) under
/// `seed`; `position_bias` is added to the attention scores (MPNet). With `prepared`, the
/// dense products run on its copy of the weights (inference only: `record` must be false).
pub(crate) fn forward(
    w: &HostWeights<'_>,
    prepared: Option<&PreparedWeights>,
    position_bias: Option<&DistanceBias>,
    d: Dims,
    batch: PackedBatch,
    seed: u64,
    record: bool,
) -> (Vec<f32>, Option<Tape>) {
    let h = d.hidden;
    let n = batch.tokens();
    let e = &w.embeddings;
    let mut x = vec![0f32; n * h];
    let mut rows = x.chunks_exact_mut(h).zip(&batch.ids).enumerate();
    for s in batch.offsets.windows(2) {
        for (p, (i, (row, &id))) in rows.by_ref().take(s[1] - s[0]).enumerate() {
            let word = &e.word[id as usize * h..][..h];
            let position = &e.position[(d.first_position + p) * h..][..h];
            let segment = batch.types.get(i).map_or(0, |&t| t as usize);
            let token_type = &e.token_type[segment * h..][..h];
            for (((v, &a), &b), &c) in row.iter_mut().zip(word).zip(position).zip(token_type) {
                *v = a + b + c;
            }
        }
    }
    let plain = NormInput {
        bias: None,
        drop: DropoutMask::NONE,
        residual: None,
    };
    let embedding_norm = add_norm(&mut x, plain, norm_params(&e.norm, d.eps), record);
    d.dropout(seed, Site::Embeddings).apply(&mut x);
    let mut inputs = Vec::new();
    let mut layers = Vec::new();
    for (l, layer) in w.layers.iter().enumerate() {
        let (out, tape) = layer_forward(
            (layer, prepared.map(|p| p.layer(l))),
            position_bias,
            d,
            (l, seed),
            &x,
            &batch.offsets,
            record,
        );
        if let Some(tape) = tape {
            layers.push(tape);
            inputs.push(std::mem::replace(&mut x, out));
        } else {
            x = out;
        }
    }
    let tape = record.then(|| Tape {
        batch,
        seed,
        position_bias: position_bias.cloned(),
        embedding_norm: embedding_norm.unwrap_or_default(),
        inputs,
        layers,
    });
    (x, tape)
}

fn norm_params<'a>(n: &Norm<&'a [f32]>, eps: f32) -> NormParams<'a> {
    NormParams {
        gamma: n.gamma,
        beta: n.beta,
        eps,
    }
}

/// `x · [W₁; W₂; …]ᵀ` by the prepared copy of the weights when there is one, by the weights
/// as loaded otherwise.
fn dense(
    x: &[f32],
    inner: usize,
    weights: &[&[f32]],
    prepared: Option<PreparedLayer<'_>>,
    which: Product,
) -> Vec<f32> {
    match prepared.map(|p| p.matrix(which)) {
        Some(PreparedMatrix::F32(w)) => panel_product(x, inner, w),
        Some(PreparedMatrix::Int8(q)) => int8_product(x, inner, q),
        None => product(x, inner, weights),
    }
}

/// One encoder layer over `x (n, h)`, by its weights or, when given, their prepared copy: its
/// output and, with `record`, its tape.
fn layer_forward(
    (w, prepared): (&LayerParams<&[f32]>, Option<PreparedLayer<'_>>),
    position_bias: Option<&DistanceBias>,
    d: Dims,
    (l, seed): (usize, u64),
    x: &[f32],
    offsets: &[usize],
    record: bool,
) -> (Vec<f32>, Option<LayerTape>) {
    let (h, i) = (d.hidden, d.intermediate);
    let qkv = dense(
        x,
        h,
        &[w.query.weight, w.key.weight, w.value.weight],
        prepared,
        Product::Qkv,
    );
    let attention_drop = d.dropout(seed, Site::Attention(l));
    let (ctx, probs) = attention_forward(
        &qkv,
        [w.query.bias, w.key.bias, w.value.bias],
        position_bias,
        offsets,
        d.attention,
        attention_drop,
        record,
    );

    let mut y1 = dense(
        &ctx,
        h,
        &[w.attention_output.weight],
        prepared,
        Product::AttentionOutput,
    );
    let input = NormInput {
        bias: Some(w.attention_output.bias),
        drop: d.dropout(seed, Site::AttentionOutput(l)),
        residual: Some(x),
    };
    let norm1 = add_norm(
        &mut y1,
        input,
        norm_params(&w.attention_norm, d.eps),
        record,
    );

    let fused = match prepared {
        Some(PreparedLayer::Int8(q)) if !record => int8_feed_forward(
            &y1,
            h,
            &q.intermediate,
            w.intermediate.bias,
            d.act,
            &q.output,
        ),
        Some(PreparedLayer::F32(p)) if !record => panel_feed_forward(
            &y1,
            h,
            &p.intermediate,
            w.intermediate.bias,
            d.act,
            &p.output,
        ),
        _ => None,
    };
    let (mut y2, inter, act) = match fused {
        Some(y2) => (y2, None, Vec::new()),
        None => {
            let mut act = dense(
                &y1,
                h,
                &[w.intermediate.weight],
                prepared,
                Product::Intermediate,
            );
            let inter = activation::bias_act(&mut act, w.intermediate.bias, d.act, record);
            let y2 = dense(&act, i, &[w.output.weight], prepared, Product::Output);
            (y2, inter, act)
        }
    };
    let input = NormInput {
        bias: Some(w.output.bias),
        drop: d.dropout(seed, Site::Output(l)),
        residual: Some(&y1),
    };
    let norm2 = add_norm(&mut y2, input, norm_params(&w.output_norm, d.eps), record);
    let tape = match (probs, norm1, inter, norm2) {
        (Some(probs), Some(norm1), Some(inter), Some(norm2)) => Some(LayerTape {
            qkv,
            probs,
            ctx,
            norm1,
            y1,
            inter,
            act,
            norm2,
        }),
        _ => None,
    };
    (y2, tape)
}

/// An inference pass over `weights`: the last hidden states `(tokens, hidden)`, sequence after
/// sequence.
///
/// # Errors
/// As [`PackedBatch::new`], or when a weight is not a contiguous f32 CPU tensor.
///
/// `relative_bias` is MPNet's relative attention bias table `(num_buckets, heads)`; with
/// `prepared`, the dense products run on its copy of the weights.
pub(crate) fn infer(
    weights: &BertWeights,
    prepared: Option<&PreparedWeights>,
    relative_bias: Option<&Tensor>,
    cfg: &BertConfig,
    input_ids: &[u32],
    token_type_ids: Option<&[u32]>,
    lengths: &[usize],
) -> Result<Tensor> {
    let type_rows = weights.embeddings.token_type.dim(0)?;
    let batch = PackedBatch::new(input_ids, token_type_ids, lengths, cfg, type_rows)?;
    let tokens = batch.tokens();
    let dims = Dims::new(cfg, false)?;
    let position_bias = relative_bias
        .map(|t| DistanceBias::from_table(t, cfg.num_attention_heads, batch.longest()))
        .transpose()?;
    let guards = WeightGuards::new(weights);
    let host = guards.host()?;
    // The whole pass on one of rayon's threads: its parallel loops then start from inside the
    // pool instead of each waking a worker from outside and putting the caller to sleep (some
    // forty hand-offs per pass, which cost a short text on one thread 11.0 ms against 4.6 ms),
    // and the other workers stay awake between the loops.
    let (out, _) = run_awake(|| {
        forward(
            &host,
            prepared,
            position_bias.as_ref(),
            dims,
            batch,
            0,
            false,
        )
    });
    Tensor::from_vec(out, (tokens, dims.hidden), &candle_core::Device::Cpu)
}
