//! A sentence-transformers model whose encoder weights are trainable variables.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use sbert::bert::{GradientSink, Mode};
use sbert::{BertModel, Pooling, SentenceEmbedder, TokenizedText};

use crate::checkpoint::OutputDir;
use crate::{Result, TrainError};

/// What one more padded encoder pass costs (inference, and training off the CPU), in padded
/// tokens: the fixed work of a pass (a dense gradient of the word-embedding table, per-op
/// dispatch, smaller matrix products). Measured: splitting 32 short STS texts (≈12 tokens) into two passes was
/// 10 % slower, splitting 32 long ones (20–60 tokens) 15 % faster.
const PASS_COST_TOKENS: usize = 128;

/// Texts per packed evaluation pass in [`TrainableModel::embed`] (no padding, so only memory
/// bounds it).
const EVAL_GROUP: usize = 64;

/// Splits texts sorted by decreasing token count into contiguous groups, one encoder pass
/// each, minimizing padded tokens (`group size × its longest text`) plus
/// [`PASS_COST_TOKENS`] per pass. Returns the group sizes.
fn plan_passes(sorted_lengths: &[usize]) -> Vec<usize> {
    let n = sorted_lengths.len();
    // best[j]: the cheapest plan for the first j texts, and the start of its last group.
    let mut best = vec![(0usize, 0usize); n + 1];
    for j in 1..=n {
        best[j] = (0..j)
            .map(|i| {
                (
                    best[i].0 + (j - i) * sorted_lengths[i] + PASS_COST_TOKENS,
                    i,
                )
            })
            .min()
            .unwrap_or((0, 0));
    }
    let mut sizes = Vec::new();
    let mut j = n;
    while j > 0 {
        let i = best[j].1;
        sizes.push(j - i);
        j = i;
    }
    sizes.reverse();
    sizes
}

/// The token ids of `texts` back to back, and the length of each.
fn packed<'a>(texts: impl IntoIterator<Item = &'a TokenizedText>) -> (Vec<u32>, Vec<usize>) {
    let (mut ids, mut lengths) = (Vec::new(), Vec::new());
    for t in texts {
        ids.extend_from_slice(&t.ids);
        lengths.push(t.ids.len());
    }
    (ids, lengths)
}

/// The encoder as `Var`s (in a [`VarMap`] under Hugging Face tensor names), plus the folder's
/// tokenizer, pooling and normalization.
pub struct TrainableModel {
    dir: PathBuf,
    frozen: SentenceEmbedder,
    varmap: VarMap,
    encoder: BertModel,
    /// Dropout seed of the next training-mode forward pass (each pass takes its own).
    next_dropout_seed: AtomicU64,
    /// Encoder gradients of the CPU training passes, until [`TrainableModel::collect_gradients`].
    sink: GradientSink,
}

impl std::fmt::Debug for TrainableModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainableModel")
            .field("dir", &self.dir)
            .field("vars", &self.varmap.all_vars().len())
            .finish()
    }
}

impl TrainableModel {
    /// Loads the sentence-transformers folder `dir` (CPU, f32) with trainable encoder weights.
    ///
    /// # Errors
    /// When the folder does not load, or its weights do not cover every encoder tensor.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let frozen = SentenceEmbedder::from_dir(&dir, &Device::Cpu)?;
        let config = frozen.encoder().config().clone();
        let mut varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let encoder = BertModel::load(vb, &config)?;
        let weights = frozen.weights_path().to_path_buf();
        varmap
            .load(&weights)
            .map_err(|source| sbert::Error::Weights {
                path: weights.clone(),
                source,
            })?;
        Ok(Self {
            dir,
            frozen,
            varmap,
            encoder,
            next_dropout_seed: AtomicU64::new(0),
            sink: GradientSink::new(),
        })
    }

    /// Builds a model from a config and a var map that already holds its weights (tests and
    /// from-scratch training), with the tokenizer, pooling and heads of the folder `dir`.
    ///
    /// # Errors
    /// When the folder does not load or a tensor is missing from `varmap`.
    pub fn with_varmap(
        dir: impl AsRef<Path>,
        varmap: VarMap,
        config: &sbert::BertConfig,
    ) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let frozen = SentenceEmbedder::from_dir(&dir, &Device::Cpu)?;
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let encoder = BertModel::load(vb, config)?;
        Ok(Self {
            dir,
            frozen,
            varmap,
            encoder,
            next_dropout_seed: AtomicU64::new(0),
            sink: GradientSink::new(),
        })
    }

    /// The folder the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The variables, by Hugging Face tensor name.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// The trainable encoder.
    pub fn encoder(&self) -> &BertModel {
        &self.encoder
    }

    /// Width of the embeddings (after pooling and any Dense module).
    pub fn dim(&self) -> usize {
        self.frozen.dim()
    }

    /// The pooling of the folder.
    pub fn pooling(&self) -> &Pooling {
        self.frozen.pooling()
    }

    /// Tokenizes as sentence-transformers does (see [`SentenceEmbedder::tokenize`]).
    ///
    /// # Errors
    /// When the tokenizer fails.
    pub fn tokenize<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<TokenizedText>> {
        Ok(self.frozen.tokenize(texts)?)
    }

    /// Embeds `texts` through the trainable encoder: `(n, dim)`, pooled, then through the
    /// folder's Dense and Normalize modules. With `train`, dropout is active and the result is
    /// differentiable.
    ///
    /// Training on the CPU in f32 runs every text in one packed pass, with no padding at all,
    /// whose encoder gradients go to the model's sink: call
    /// [`TrainableModel::collect_gradients`] after `backward` ([`crate::Trainer`] does).
    /// Otherwise the texts are sorted by length and run in one or more passes through candle's
    /// graph, each padded to its own longest text (split where the padding saved outweighs the
    /// cost of another pass), and the rows come back in input order. Padding does not change
    /// the result (the mask hides it), only the cost: an NLI batch mixes long premises with
    /// short hypotheses, and one padded batch would run every hypothesis at premise length.
    ///
    /// # Errors
    /// When tokenization or a tensor op fails.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S], train: bool) -> Result<Tensor> {
        let tok = self.tokenize(texts)?;
        let packed = !tok.is_empty() && self.encoder.supports_fast_training();
        if train && packed {
            self.embed_packed(&tok)
        } else if packed {
            self.embed_eval(&tok)
        } else {
            self.embed_padded(&tok, train)
        }
    }

    /// Inference on the CPU in f32: length-sorted packed passes over the current weights.
    fn embed_eval(&self, tok: &[TokenizedText]) -> Result<Tensor> {
        let groups = tok.len().div_ceil(EVAL_GROUP);
        self.in_sorted_groups(
            tok,
            |_| vec![EVAL_GROUP; groups],
            |g| {
                let (ids, lengths) = packed(g.iter().copied());
                let hidden = self.encoder.forward_eval(&ids, &lengths)?;
                self.pool_packed(&hidden, &lengths)
            },
        )
    }

    /// Other devices and dtypes: length-sorted passes through candle's graph, each padded to
    /// its longest text.
    fn embed_padded(&self, tok: &[TokenizedText], train: bool) -> Result<Tensor> {
        self.in_sorted_groups(tok, plan_passes, |g| {
            let batch = self.frozen.pad(g)?;
            let (ids, mask) = (&batch.input_ids, &batch.attention_mask);
            let mode = Mode {
                train,
                dropout_seed: self.next_dropout_seed.fetch_add(1, Ordering::Relaxed),
                ..Mode::default()
            };
            let hidden = self
                .encoder
                .forward_with_mode(ids, None, mask, mode)?
                .hidden_states;
            Ok(self
                .pooling()
                .pool(&hidden, mask)
                .map_err(sbert::Error::from)?)
        })
    }

    /// Sorts `tok` by decreasing length, cuts it into groups of the sizes `plan` gives for the
    /// sorted lengths, pools each group with `run`, and returns the rows in input order, through
    /// the folder's Dense and Normalize modules.
    fn in_sorted_groups(
        &self,
        tok: &[TokenizedText],
        plan: impl FnOnce(&[usize]) -> Vec<usize>,
        run: impl Fn(&[&TokenizedText]) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let mut order: Vec<usize> = (0..tok.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(tok[i].ids.len()));
        let lengths: Vec<usize> = order.iter().map(|&i| tok[i].ids.len()).collect();
        let mut parts = Vec::new();
        let mut start = 0;
        for size in plan(&lengths) {
            let end = (start + size).min(order.len());
            if end == start {
                break;
            }
            let group: Vec<&TokenizedText> = order[start..end].iter().map(|&i| &tok[i]).collect();
            parts.push(run(&group)?);
            start = end;
        }
        let sorted = Tensor::cat(&parts, 0)?;
        // Row i of the result is the text at position inverse[i] of the sorted order.
        let mut inverse = vec![0u32; order.len()];
        for (position, &i) in order.iter().enumerate() {
            inverse[i] = position as u32;
        }
        let inverse = Tensor::from_vec(inverse, order.len(), sorted.device())?;
        let pooled = sorted.index_select(&inverse, 0)?;
        // Dense and Normalize modules as the folder configures them (Dense weights stay fixed).
        Ok(self.frozen.apply_heads(pooled)?)
    }

    /// Pools the padded output `(n, longest, h)` of a packed pass over texts of `lengths`.
    fn pool_packed(&self, hidden: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let longest = hidden.dim(1)?;
        let mut mask = vec![0u32; lengths.len() * longest];
        for (row, &len) in mask.chunks_exact_mut(longest).zip(lengths) {
            row[..len].fill(1);
        }
        let mask = Tensor::from_vec(mask, (lengths.len(), longest), hidden.device())?;
        Ok(self
            .pooling()
            .pool(hidden, &mask)
            .map_err(sbert::Error::from)?)
    }

    /// The training pass on the CPU in f32: every text in one packed pass without padding
    /// ([`BertModel::forward_train`]), its encoder gradients collected in the model's sink.
    fn embed_packed(&self, tok: &[TokenizedText]) -> Result<Tensor> {
        let (ids, lengths) = packed(tok);
        let seed = self.next_dropout_seed.fetch_add(1, Ordering::Relaxed);
        let hidden = self
            .encoder
            .forward_train(&ids, &lengths, seed, &self.sink)?;
        let pooled = self.pool_packed(&hidden, &lengths)?;
        Ok(self.frozen.apply_heads(pooled)?)
    }

    /// Moves the encoder gradients of the training passes since the last call into `grads`
    /// (from `loss.backward()`), where the optimizer looks for them. On the CPU in f32 the
    /// encoder's backward pass adds its gradients to a sink of the model's rather than to
    /// candle's graph (see [`BertModel::forward_train`]); call this after every backward pass.
    /// Elsewhere the gradients are in `grads` already and this does nothing.
    ///
    /// # Errors
    /// When a gradient tensor cannot be built.
    pub fn collect_gradients(&self, grads: &mut GradStore) -> Result<()> {
        Ok(self.sink.drain_into(grads)?)
    }

    /// Restarts the sequence of dropout seeds from `seed`: training-mode passes after this
    /// draw the same masks (on the CPU in f32) for the same seed. [`crate::Trainer`] calls it
    /// with its seed at the start of training.
    pub fn seed_dropout(&self, seed: u64) {
        self.next_dropout_seed.store(seed << 32, Ordering::Relaxed);
    }

    /// Saves the model as a sentence-transformers folder at `out`: `model.safetensors` with the
    /// current weights under Hugging Face names, every other file of the source folder, and
    /// the checkpoint marker [`crate::checkpoint::MARKER`]. The folder is assembled beside
    /// `out` under a unique hidden name and moved into place only when complete, so an
    /// interrupted save never leaves a half-written checkpoint and concurrent saves never mix;
    /// a previous folder at `out` is replaced only then, and only as [`OutputDir`] allows.
    ///
    /// # Errors
    /// On I/O errors, or when the folder at `out` is no longer one that may be replaced.
    pub fn save(&self, out: &OutputDir) -> Result<()> {
        out.check()?;
        let staged = sbert::output::StagedDir::new(out.path())?;
        copy_tree(&self.dir, staged.path(), true)?;
        let weights = staged.path().join("model.safetensors");
        self.varmap
            .save(&weights)
            .map_err(|source| sbert::Error::Weights {
                path: weights.clone(),
                source,
            })?;
        let marker = format!(
            "{{\"written_by\": \"sbert-train {}\", \"base_model\": {}}}\n",
            env!("CARGO_PKG_VERSION"),
            serde_json::Value::String(self.dir.display().to_string())
        );
        let marker_path = staged.path().join(crate::checkpoint::MARKER);
        std::fs::write(&marker_path, marker).map_err(|source| TrainError::Io {
            path: marker_path.clone(),
            source,
        })?;
        // safetensors writes through a private temporary file (mode 0600); give the weights
        // the permissions of a file created normally, as the marker just was.
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TrainError::Io { path, source }
        };
        let permissions = std::fs::metadata(&marker_path)
            .map_err(io(&marker_path))?
            .permissions();
        std::fs::set_permissions(&weights, permissions).map_err(io(&weights))?;
        staged.commit()?;
        Ok(())
    }
}

/// Evaluation and search see the model as it is now: inference-mode passes (no dropout) over
/// the current weights, pooled and normalized as the folder says.
impl sbert::TextEmbedder for TrainableModel {
    fn embed_texts(&self, texts: &[&str]) -> sbert::Result<Tensor> {
        self.embed(texts, false).map_err(|e| match e {
            TrainError::Model(e) => e,
            other => sbert::Error::InvalidArgument(other.to_string()),
        })
    }

    fn pooling(&self) -> &Pooling {
        TrainableModel::pooling(self)
    }
}

/// Copies `from` into `to`, recursively; with `skip_weights`, not `from/model.safetensors`
/// (the encoder weights, written separately). Module weights (`2_Dense/…`) are copied; the
/// source's own checkpoint marker and this crate's temporaries are not.
fn copy_tree(from: &Path, to: &Path, skip_weights: bool) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let path = entry.path();
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if name_str == crate::checkpoint::MARKER
            || (name_str.starts_with('.') && name_str.contains(".sbert-"))
        {
            continue;
        }
        let target = to.join(&name);
        if path.is_dir() {
            copy_tree(&path, &target, false)?;
        } else if !(skip_weights && name == "model.safetensors") {
            std::fs::copy(&path, &target).map_err(io(&path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// max |t|; NaN when `t` holds a NaN (a `max` reduction would skip it).
    fn max_abs(t: &Tensor) -> Result<f32> {
        Ok(t.flatten_all()?
            .to_vec1::<f32>()?
            .into_iter()
            .map(f32::abs)
            .fold(0.0, |m, v| if v.is_nan() || v > m { v } else { m }))
    }

    #[test]
    fn passes_split_only_where_padding_outweighs_a_pass() {
        // Similar lengths: one pass.
        assert_eq!(plan_passes(&[14; 32]), vec![32]);
        // Long premises and short hypotheses: two passes.
        let mut mixed = vec![60; 16];
        mixed.extend([12; 16]);
        assert_eq!(plan_passes(&mixed), vec![16, 16]);
        assert!(plan_passes(&[]).is_empty());
    }

    /// Passes sorted by length come back in input order and equal the inference embedder.
    #[test]
    fn embed_in_sorted_sub_batches_keeps_input_order() -> Result<()> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny");
        let model = TrainableModel::load(&dir)?;
        // Long texts (truncated at the tiny model's 16 tokens) between one- and two-word ones.
        let texts: Vec<String> = (0..2 * EVAL_GROUP + 13)
            .map(|i| match i % 3 {
                0 => "the cat sat on the mat and a dog ran ".repeat(3)[..30 + i % 61].to_string(),
                1 => "cat".to_string(),
                _ => "a dog".to_string(),
            })
            .collect();
        let mut lengths: Vec<usize> = model
            .tokenize(&texts)?
            .iter()
            .map(|t| t.ids.len())
            .collect();
        lengths.sort_by(|a, b| b.cmp(a));
        assert!(
            plan_passes(&lengths).len() > 1,
            "the texts need several passes"
        );
        // Packed evaluation passes of EVAL_GROUP texts (three here), and padded graph passes.
        let tok = model.tokenize(&texts)?;
        let reference = model.frozen.embed(&texts)?;
        for ours in [
            model.embed(&texts, false)?,
            model.embed_padded(&tok, false)?,
        ] {
            assert_eq!(ours.dims(), reference.dims());
            let diff = max_abs(&(&ours - &reference)?)?;
            assert!(diff < 1e-5, "max |Δ| {diff}");
        }
        Ok(())
    }

    /// The packed training pass (CPU, f32) and the padded candle graph give the same
    /// embeddings and, once the sink is drained, the same gradients for every weight.
    #[test]
    fn packed_training_pass_matches_the_padded_graph() -> Result<()> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny");
        let loaded = TrainableModel::load(&dir)?;
        let config = sbert::BertConfig {
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            ..loaded.encoder().config().clone()
        };
        let model = TrainableModel::with_varmap(&dir, loaded.varmap().clone(), &config)?;
        let texts = [
            "a man is playing a guitar on the stage",
            "cat",
            "two dogs run",
        ];
        let tok = model.tokenize(&texts)?;
        let weights = Tensor::randn(0f32, 1.0, (texts.len(), model.dim()), &Device::Cpu)?;
        let loss = |e: &Tensor| -> Result<Tensor> { Ok((e * &weights)?.sum_all()?) };

        let packed = model.embed_packed(&tok)?;
        let mut ours = loss(&packed)?.backward()?;
        model.collect_gradients(&mut ours)?;
        let padded = model.embed_padded(&tok, true)?;
        let theirs = loss(&padded)?.backward()?;
        let diff = max_abs(&(&packed - &padded)?)?;
        assert!(diff < 1e-5, "embeddings differ by {diff}");
        for var in model.varmap().all_vars() {
            let (Some(a), Some(b)) = (ours.get(&var), theirs.get(&var)) else {
                panic!("no gradient for a {:?} weight", var.shape());
            };
            let scale = max_abs(b)?.max(1.0);
            let diff = max_abs(&(a - b)?)?;
            assert!(diff / scale < 1e-4, "{:?}: |Δ| {diff}", var.shape());
        }
        Ok(())
    }
}
