//! A recorded packed pass as one differentiable candle tensor, and the sink its backward pass
//! writes weight gradients into.
//!
//! Built from candle ops, one training step made several hundred tensors, zeroed and added a
//! gradient buffer per op, and spent more time outside matrix products than in them. Here the
//! whole encoder is one op: when candle's backward pass reaches its output, [`backward`] runs
//! through every layer and adds each weight's gradient straight into one host buffer per
//! weight, and nothing is allocated per elementary op.

use std::sync::{Arc, Mutex, PoisonError};

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};

use super::backward::{backward, Gradients};
use super::{forward, Dims, PackedBatch, Tape, WeightGuards};
use crate::config::BertConfig;
use crate::cpu::f32_slice;
use crate::params::BertWeights;
use crate::relative::DistanceBias;

/// Where the gradients of [`BertModel::forward_train`](crate::BertModel::forward_train) passes
/// collect.
///
/// One sink serves any number of passes over the same model (both sides of a siamese pair, the
/// passes of one batch): each backward pass adds into the same buffers. After
/// `loss.backward()`, [`GradientSink::drain_into`] moves the sums into candle's [`GradStore`],
/// where an optimizer finds them under the weights' tensors, and empties the sink.
#[derive(Clone, Default)]
pub struct GradientSink {
    inner: Arc<Mutex<Option<SinkState>>>,
}

/// The weights whose gradients a sink holds, and the gradients.
struct SinkState {
    weights: BertWeights,
    grads: Gradients,
    /// MPNet's relative attention bias table and its gradient.
    relative: Option<(Tensor, Vec<f32>)>,
}

impl std::fmt::Debug for GradientSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        let count = state.as_ref().map_or(0, |s| s.weights.iter().count());
        f.debug_struct("GradientSink")
            .field("parameters", &count)
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
        self.lock().is_none()
    }

    /// Moves the collected gradients into `store`, keyed by the weights' tensors (added to any
    /// gradient `store` already holds for a weight), and empties the sink. Does nothing when
    /// the sink is empty.
    ///
    /// # Errors
    /// When a gradient tensor cannot be built (out of memory) or added.
    pub fn drain_into(&self, store: &mut GradStore) -> Result<()> {
        let Some(mut state) = self.lock().take() else {
            return Ok(());
        };
        let relative = state.relative.as_mut().map(|(t, g)| (&*t, g));
        for (weight, grad) in state
            .weights
            .iter()
            .zip(state.grads.iter_mut())
            .chain(relative)
        {
            let grad = Tensor::from_vec(std::mem::take(grad), weight.shape(), weight.device())?;
            let grad = match store.remove(weight) {
                Some(old) => (old + grad)?,
                None => grad,
            };
            store.insert(weight, grad);
        }
        Ok(())
    }

    /// Discards what the sink holds (the gradients of passes whose loss will not be used).
    pub fn clear(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<SinkState>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SinkState {
    /// The gradient buffers of `weights` and of the relative bias table, zeroed on first use.
    ///
    /// # Errors
    /// When the sink holds the gradients of other weights.
    fn buffers<'s>(
        state: &'s mut Option<Self>,
        weights: &BertWeights,
        relative: Option<&Tensor>,
    ) -> Result<(&'s mut Gradients, Option<&'s mut [f32]>)> {
        if let Some(held) = state.as_ref() {
            let same = held.weights.iter().count() == weights.iter().count()
                && held
                    .weights
                    .iter()
                    .zip(weights.iter())
                    .all(|(a, b)| a.id() == b.id())
                && held.relative.as_ref().map(|(t, _)| t.id()) == relative.map(Tensor::id);
            if !same {
                candle_core::bail!("a gradient sink collects the gradients of one model only");
            }
        }
        let held = state.get_or_insert_with(|| Self {
            weights: weights.clone(),
            grads: weights.map(|t| written_zeros(t.elem_count())),
            relative: relative.map(|t| (t.clone(), written_zeros(t.elem_count()))),
        });
        let relative = held.relative.as_mut().map(|(_, g)| g.as_mut_slice());
        Ok((&mut held.grads, relative))
    }
}

/// `n` zeros, written rather than allocated zeroed. A zeroed allocation of this size is fresh
/// pages that the kernel maps to its shared zero page; the backward pass's products first read
/// a gradient buffer (they accumulate) and then write it, so every page would fault twice, the
/// second time replacing a read-only mapping with a TLB flush on every core: on
/// all-mpnet-base-v2 (110 M gradients a step) that is about a quarter of a training step.
/// Writing the zeros first faults each page once, as a plain write.
fn written_zeros(n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    v.resize(n, 0f32);
    v
}

/// A training-mode pass over `weights` (and MPNet's `relative_bias` table `(num_buckets,
/// heads)`): its output `(tokens, hidden)` is differentiable, and its backward pass adds every
/// weight's gradient into `sink`.
pub(crate) fn train(
    (weights, relative_bias): (&BertWeights, Option<&Tensor>),
    cfg: &BertConfig,
    input_ids: &[u32],
    lengths: &[usize],
    seed: u64,
    sink: &GradientSink,
) -> Result<Tensor> {
    let batch = PackedBatch::new(input_ids, None, lengths, cfg, 1)?;
    let dims = Dims::new(cfg, true)?;
    let position_bias = relative_bias
        .map(|t| DistanceBias::from_table(t, cfg.num_attention_heads, batch.longest()))
        .transpose()?;
    let (output, tape) = {
        let guards = WeightGuards::new(weights);
        forward(
            &guards.host()?,
            None,
            position_bias.as_ref(),
            dims,
            batch,
            seed,
            true,
        )
    };
    let Some(tape) = tape else {
        candle_core::bail!("a recorded pass keeps its tape")
    };
    let shape = Shape::from((tape.batch.tokens(), dims.hidden));
    let pass = TrainingPass {
        output: Mutex::new(Some(output)),
        shape,
        dims,
        tape,
        weights: weights.clone(),
        relative_bias: relative_bias.cloned(),
        sink: sink.clone(),
    };
    // Anchored on the word-embedding table, so that the pass is part of the graph exactly
    // when the weights are variables.
    weights.embeddings.word.apply_op1(pass)
}

/// The differentiable output of one pass: its backward pass is the encoder's.
struct TrainingPass {
    output: Mutex<Option<Vec<f32>>>,
    /// `(tokens, hidden)`.
    shape: Shape,
    dims: Dims,
    tape: Tape,
    weights: BertWeights,
    relative_bias: Option<Tensor>,
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
        if grad.dims() != self.shape.dims() {
            candle_core::bail!(
                "gradient of shape {:?} for a pass of shape {:?}",
                grad.dims(),
                self.shape
            );
        }
        let grad = grad.contiguous()?;
        let dy = {
            let (storage, layout) = grad.storage_and_layout();
            let Storage::Cpu(s) = &*storage else {
                candle_core::bail!("the packed pass runs on the CPU only")
            };
            f32_slice(s, layout)?.to_vec()
        };
        let guards = WeightGuards::new(&self.weights);
        let host = guards.host()?;
        let mut state = self.sink.lock();
        let (grads, d_table) =
            SinkState::buffers(&mut state, &self.weights, self.relative_bias.as_ref())?;
        backward(&host, grads, d_table, self.dims, &self.tape, dy);
        Ok(None)
    }
}
