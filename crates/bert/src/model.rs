//! [`BertModel`]: the weights by name, the config, and the passes over them.

use std::borrow::Cow;
use std::sync::Arc;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use crate::config::{Architecture, BertConfig};
use crate::graph::{self, BertOutput, Mode};
use crate::packed::{self, training::GradientSink};
use crate::params::BertWeights;
use crate::quantization::{PreparedWeights, Quantization};

/// A BERT-family encoder (BERT, RoBERTa / XLM-RoBERTa, DistilBERT, MPNet; see
/// [`Architecture`](crate::Architecture)): token ids in, contextual token embeddings out.
///
/// Build it with [`BertModel::load`] from a [`VarBuilder`] over the checkpoint's tensors. Two
/// passes read the same weights: the candle graph over padded batches (any device and dtype,
/// differentiable through candle's autograd) and, on the CPU in f32, the packed pass over
/// sequences stored back to back ([`BertModel::forward_packed`], and
/// [`BertModel::forward_train`] with its hand-written backward pass). Neither caches anything
/// derived from the weights, so a model whose weights are being trained is always evaluated
/// with its current weights. The one exception is asked for: [`BertModel::quantize`] puts the
/// dense weights in the layout the packed inference pass multiplies by fastest (f32 panels,
/// which then hold them alone, or an int8 copy), and such a model is for inference only.
#[derive(Debug, Clone)]
pub struct BertModel {
    weights: BertWeights,
    /// MPNet's relative attention bias table, `(num_buckets, heads)`.
    relative_attention_bias: Option<Tensor>,
    /// The dense weights as the packed inference pass reads them, after
    /// [`BertModel::quantize`].
    prepared: Option<Arc<PreparedWeights>>,
    /// Set by [`BertModel::quantize`]: the model is for inference and refuses training.
    for_inference: bool,
    config: BertConfig,
    device: Device,
    dtype: DType,
}

impl BertModel {
    /// Loads the encoder from `vb`, whose tensors use the Hugging Face names of the config's
    /// architecture, with or without the prefix of a pre-training checkpoint (`bert.`,
    /// `roberta.`, …).
    ///
    /// # Errors
    /// When the config is invalid or names an unsupported architecture, or a tensor is missing
    /// or has a shape other than the config implies (the error names the tensor and both
    /// shapes).
    pub fn load(vb: VarBuilder, config: &BertConfig) -> Result<Self> {
        config.validate()?;
        let (device, dtype) = (vb.device().clone(), vb.dtype());
        let architecture = config.architecture()?;
        let relative_attention_bias = match architecture {
            Architecture::MpNet => Some(crate::params::unprefixed(vb.clone(), architecture).get(
                (
                    config.relative_attention_num_buckets,
                    config.num_attention_heads,
                ),
                "encoder.relative_attention_bias.weight",
            )?),
            _ => None,
        };
        let weights = BertWeights::load(vb, config)?;
        Ok(Self {
            weights,
            relative_attention_bias,
            prepared: None,
            for_inference: false,
            config: config.clone(),
            device,
            dtype,
        })
    }

    /// The model prepared for inference, its dense products computed as `quantization` says:
    /// the query/key/value, attention-output and feed-forward weights are put, once, here,
    /// into the layout [`BertModel::forward_packed`] multiplies by. [`Quantization::None`]:
    /// where the CPU has AVX-512, f32 panels (the same products to rounding, without the
    /// per-call weight repacking of a general matrix product), which replace the dense weight
    /// tensors, so each weight is held once; the graph pass ([`BertModel::forward`]) and
    /// [`BertModel::weights`] unpack them when called. Elsewhere the weights stay as loaded:
    /// `gemm`'s AVX2 kernels outrun the panels' portable tile there (2026-12-07, AMD EPYC
    /// without AVX-512, MiniLM: 345–473 against 216–220 sentences/s on 2 threads). [`Quantization::Int8`]: an int8 copy per output channel (1 byte per weight)
    /// beside the f32 weights, which the graph pass keeps using. A prepared model is for
    /// inference: [`BertModel::forward_train`] refuses it, since its copy would not follow the
    /// training. On a GPU or in f16/bf16,
    /// `Quantization::None` leaves the model as it is.
    ///
    /// ```
    /// use candle_core::{DType, Device};
    /// use candle_nn::VarBuilder;
    /// use sbert_bert::{BertConfig, BertModel, Quantization};
    ///
    /// # fn main() -> candle_core::Result<()> {
    /// let config = BertConfig { vocab_size: 200, hidden_size: 16, num_hidden_layers: 2,
    ///     num_attention_heads: 4, intermediate_size: 32, ..BertConfig::default() };
    /// let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
    /// let model = BertModel::load(vb, &config)?.quantize(Quantization::Int8)?;
    /// assert_eq!(model.quantization(), Quantization::Int8);
    /// let hidden = model.forward_packed(&[101, 7, 8, 102, 101, 9, 102], &[4, 3])?;
    /// assert_eq!(hidden.dims(), &[7, 16]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// For int8, when the weights are not f32 on the CPU (the int8 kernels are CPU kernels).
    pub fn quantize(mut self, quantization: Quantization) -> Result<Self> {
        if quantization == Quantization::Int8 {
            self.check_packed()?;
        }
        // A model prepared before gets its dense weights back first.
        self.weights = self.weights()?.into_owned();
        let worth_it = quantization == Quantization::Int8 || crate::cpu::panels::have_tile_kernel();
        self.prepared = if self.supports_packed() && worth_it {
            Some(Arc::new(PreparedWeights::prepare(
                &mut self.weights.layers,
                self.config.hidden_size,
                self.config.intermediate_size,
                quantization,
            )?))
        } else {
            None
        };
        self.for_inference = true;
        Ok(self)
    }

    /// How the packed pass's dense products compute (see [`BertModel::quantize`]).
    pub fn quantization(&self) -> Quantization {
        self.prepared
            .as_ref()
            .map_or(Quantization::None, |p| p.quantization())
    }

    /// The configuration the model was loaded with.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The weights, by name, as loaded. A model prepared in f32 ([`BertModel::quantize`] with
    /// [`Quantization::None`]) holds its dense weights only as panels: they are unpacked into
    /// new tensors here (about 4 bytes per weight for as long as the result lives).
    ///
    /// # Errors
    /// When the unpacked tensors cannot be allocated.
    pub fn weights(&self) -> Result<Cow<'_, BertWeights>> {
        match &self.prepared {
            Some(prepared) if prepared.holds_dense() => {
                let mut weights = self.weights.clone();
                prepared.restore_dense(&mut weights.layers, self.config.hidden_size)?;
                Ok(Cow::Owned(weights))
            }
            _ => Ok(Cow::Borrowed(&self.weights)),
        }
    }

    /// MPNet's relative attention bias table `(num_buckets, heads)`, shared by every layer;
    /// `None` for the other architectures.
    pub fn relative_attention_bias(&self) -> Option<&Tensor> {
        self.relative_attention_bias.as_ref()
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

    /// The forward pass through the graph with an explicit [`Mode`] (training, attention
    /// output).
    ///
    /// # Errors
    /// As [`BertModel::forward`], and in training mode when a dropout probability of the config
    /// is outside [0, 1).
    pub fn forward_with_mode(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: &Tensor,
        mode: Mode,
    ) -> Result<BertOutput> {
        graph::forward(
            &*self.weights()?,
            self.relative_attention_bias.as_ref(),
            &self.config,
            input_ids,
            token_type_ids,
            attention_mask,
            mode,
        )
    }

    /// Whether the packed passes ([`BertModel::forward_packed`], [`BertModel::forward_train`])
    /// are available: CPU and f32.
    pub fn supports_packed(&self) -> bool {
        self.device.is_cpu() && self.dtype == DType::F32
    }

    /// Inference over sequences stored back to back, without padding: `input_ids` holds the
    /// token ids of every sequence concatenated, `lengths` the length of each. Returns the token
    /// embeddings `(Σ lengths, hidden)`, sequence after sequence. Token types are all 0.
    ///
    /// Every token-wise op (embeddings, projections, feed-forward, LayerNorm) runs over the real
    /// tokens only, and attention runs per sequence, so no work is spent on padding. Reads the
    /// current weights on every call. CPU and f32 only (see [`BertModel::supports_packed`]);
    /// not differentiable.
    ///
    /// # Errors
    /// On no sequence or an empty one, a length sum other than `input_ids.len()`, a sequence
    /// longer than `max_position_embeddings`, a token id outside the vocabulary, or an
    /// unsupported device or dtype.
    pub fn forward_packed(&self, input_ids: &[u32], lengths: &[usize]) -> Result<Tensor> {
        self.forward_packed_types(input_ids, None, lengths)
    }

    /// [`BertModel::forward_packed`] with the segment of each token (`token_type_ids`,
    /// parallel to `input_ids`; `None`: all 0): a pair of texts read together, as a
    /// cross-encoder reads them.
    ///
    /// # Errors
    /// As [`BertModel::forward_packed`], and on token types that do not run parallel to the
    /// ids or name a segment the model has no embedding for.
    pub fn forward_packed_types(
        &self,
        input_ids: &[u32],
        token_type_ids: Option<&[u32]>,
        lengths: &[usize],
    ) -> Result<Tensor> {
        self.check_packed()?;
        packed::infer(
            &self.weights,
            self.prepared.as_deref(),
            self.relative_attention_bias.as_ref(),
            &self.config,
            input_ids,
            token_type_ids,
            lengths,
        )
    }

    /// Floating-point operations of one pass over a sequence of `len` tokens (a multiply-add
    /// counts 2): the projections, the feed-forward block and the attention products.
    pub fn flops(&self, len: usize) -> f64 {
        let c = self.config();
        let (l, h, i) = (len as f64, c.hidden_size as f64, c.intermediate_size as f64);
        // q, k, v and the attention output (4 h × h), the feed-forward pair (2 h × i), and
        // the scores and the context (2 l × h).
        let per_layer = 8.0 * l * h * h + 4.0 * l * h * i + 4.0 * l * l * h;
        c.num_hidden_layers as f64 * per_layer
    }

    /// The training-mode twin of [`BertModel::forward_packed`] (dropout active): the same
    /// packed pass, the activations its backward pass needs kept, and the last hidden states
    /// `(Σ lengths, hidden)` returned as one differentiable tensor.
    ///
    /// When the weights are `Var`s, candle's backward pass adds the gradient of every encoder
    /// weight to `sink` (see [`GradientSink`]), not to its `GradStore`, until
    /// [`GradientSink::drain_into`] moves them there. The dropout masks are a function of
    /// `dropout_seed`: give every pass its own. Same arithmetic as the graph in training mode
    /// (checked to rounding, gradients included); only the dropout masks differ, since they are
    /// drawn per packed element.
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
    /// assert_eq!(hidden.dims(), &[7, 16]);
    /// let mut grads = hidden.sqr()?.sum_all()?.backward()?;
    /// sink.drain_into(&mut grads)?;
    /// assert!(varmap.all_vars().iter().all(|v| grads.get(v).is_some()));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`BertModel::forward_packed`], when a dropout probability of the config is outside
    /// [0, 1), and for a model prepared for inference by [`BertModel::quantize`].
    pub fn forward_train(
        &self,
        input_ids: &[u32],
        lengths: &[usize],
        dropout_seed: u64,
        sink: &GradientSink,
    ) -> Result<Tensor> {
        self.check_packed()?;
        if self.for_inference {
            candle_core::bail!(
                "a model prepared by quantize is for inference (its copy of the weights would \
                 not follow the training); train the model BertModel::load returns, then \
                 quantize it"
            );
        }
        packed::training::train(
            (&self.weights, self.relative_attention_bias.as_ref()),
            &self.config,
            input_ids,
            lengths,
            dropout_seed,
            sink,
        )
    }

    fn check_packed(&self) -> Result<()> {
        if self.supports_packed() {
            Ok(())
        } else {
            candle_core::bail!(
                "the packed pass needs the CPU device and f32 weights, not {:?} {:?}",
                self.device.location(),
                self.dtype
            )
        }
    }
}
