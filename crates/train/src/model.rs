//! A sentence-transformers model whose encoder weights are trainable variables.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::PoisonError;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use sbert::bert::{BertParams, GradientSink};
use sbert::{BertModel, Pooling, SentenceEmbedder, TokenizedText};

use crate::checkpoint::OutputDir;
use crate::{Result, TrainError};

/// The name of MPNet's relative attention bias table in its checkpoints.
const RELATIVE_BIAS: &str = "encoder.relative_attention_bias.weight";

/// The folder's pipeline on the device and dtype training runs in: the CPU, f32.
fn pipeline(dir: &Path) -> Result<SentenceEmbedder> {
    Ok(SentenceEmbedder::builder(dir.to_string_lossy())
        .device(Device::Cpu)
        .dtype(DType::F32)
        .build()?)
}

/// A sentence-transformers model whose encoder weights are trainable variables (in a
/// [`VarMap`] under Hugging Face tensor names), inside the folder's own pipeline: tokenizer,
/// pooling, Dense and Normalize modules. Training runs on the CPU in f32.
pub struct TrainableModel {
    dir: PathBuf,
    /// The folder's pipeline around the trainable encoder.
    embedder: SentenceEmbedder,
    varmap: VarMap,
    /// Dropout seed of the next training-mode forward pass (each pass takes its own).
    next_dropout_seed: AtomicU64,
    /// Encoder gradients of the training passes, until [`TrainableModel::collect_gradients`].
    sink: GradientSink,
    /// The checkpoint's pooler, which training leaves as it is (sentence-transformers pools
    /// the tokens itself), read once: saved beside the trained weights, so that
    /// `transformers` finds every weight it expects.
    pooler: Vec<(String, Tensor)>,
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
    /// The weights are read once; each becomes a variable under its Hugging Face name.
    ///
    /// # Errors
    /// When the folder does not load.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let embedder = pipeline(&dir)?;
        let Some(bert) = embedder.encoder().bert() else {
            return Err(TrainError::Invalid(format!(
                "{}: training runs on BERT-family encoders (BERT, RoBERTa / XLM-RoBERTa, \
                 DistilBERT, MPNet); this model's encoder is {}",
                dir.display(),
                embedder.encoder().kind()
            )));
        };
        let config = bert.config().clone();
        let architecture = config.architecture()?;
        let varmap = VarMap::new();
        {
            let mut vars = varmap.data().lock().unwrap_or_else(PoisonError::into_inner);
            // Under the names the architecture's checkpoints use (an architecture without
            // token types has no name, and no trainable table, there).
            let names = BertParams::checkpoint_names(architecture, config.num_hidden_layers);
            for (name, weight) in names.iter().zip(bert.weights()?.iter()) {
                if !name.is_empty() {
                    vars.insert(name.clone(), Var::from_tensor(weight)?);
                }
            }
            if let Some(table) = bert.relative_attention_bias() {
                vars.insert(RELATIVE_BIAS.to_string(), Var::from_tensor(table)?);
            }
        }
        Self::around(embedder, varmap, &config)
    }

    /// Builds a model from a config and a var map that already holds its weights (tests and
    /// from-scratch training), with the tokenizer, pooling and heads of the folder `dir`.
    ///
    /// # Errors
    /// When the folder does not load, or a tensor is missing from `varmap` or has another shape
    /// than `config` implies.
    pub fn with_varmap(
        dir: impl AsRef<Path>,
        varmap: VarMap,
        config: &sbert::BertConfig,
    ) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let embedder = pipeline(&dir)?;
        Self::around(embedder, varmap, config)
    }

    /// The pipeline of `embedder` around an encoder whose weights are the variables of `varmap`.
    fn around(
        embedder: SentenceEmbedder,
        varmap: VarMap,
        config: &sbert::BertConfig,
    ) -> Result<Self> {
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let encoder = BertModel::load(vb, config)?;
        // The folder the model came from: for an `owner/name` hub id, its snapshot folder in
        // the cache, which `save` copies from.
        let dir = embedder.dir().to_path_buf();
        let pooler =
            sbert::read_safetensors(embedder.weights_path(), |name| name.starts_with("pooler."))?
                .into_iter()
                .collect();
        Ok(Self {
            dir,
            embedder: embedder.with_encoder(encoder)?,
            varmap,
            next_dropout_seed: AtomicU64::new(0),
            sink: GradientSink::new(),
            pooler,
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
        self.embedder
            .encoder()
            .bert()
            .expect("a TrainableModel's pipeline runs the BertModel over its varmap")
    }

    /// The folder's pipeline around the trainable encoder: inference over the current weights.
    pub fn embedder(&self) -> &SentenceEmbedder {
        &self.embedder
    }

    /// Width of the embeddings (after pooling and any Dense module).
    pub fn dim(&self) -> usize {
        self.embedder.dim()
    }

    /// The pooling of the folder.
    pub fn pooling(&self) -> &Pooling {
        self.embedder.pooling()
    }

    /// Tokenizes as sentence-transformers does (see [`SentenceEmbedder::tokenize`]).
    ///
    /// # Errors
    /// When the tokenizer fails.
    pub fn tokenize<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<TokenizedText>> {
        Ok(self.embedder.tokenize(texts, sbert::Prompt::Default)?)
    }

    /// Embeds `texts` through the trainable encoder: `(n, dim)`, pooled, then through the
    /// folder's Dense and Normalize modules.
    ///
    /// With `train`, dropout is active and the result is differentiable: every text runs in
    /// one packed pass without padding ([`BertModel::forward_train`]), whose encoder gradients
    /// go to the model's sink: call [`TrainableModel::collect_gradients`] after `backward`
    /// ([`crate::Trainer`] does). Without, it is the folder's inference pipeline over the
    /// current weights.
    ///
    /// # Errors
    /// When tokenization or a tensor op fails.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S], train: bool) -> Result<Tensor> {
        if !train || texts.is_empty() {
            return Ok(self
                .embedder
                .encode_tensor(texts, &sbert::EncodeOptions::default())?);
        }
        self.embed_seeded(texts, self.next_seed())
    }

    /// The dropout seed of the next training-mode pass, drawn (each pass takes its own).
    pub fn next_seed(&self) -> u64 {
        self.next_dropout_seed.fetch_add(1, Ordering::Relaxed)
    }

    /// [`TrainableModel::embed`] in training mode under the dropout masks of `seed` (from
    /// [`TrainableModel::next_seed`]): the same seed gives the same masks, so a pass can be
    /// run again exactly (GradCache's second pass).
    ///
    /// # Errors
    /// When tokenization or a tensor op fails.
    pub fn embed_seeded<S: AsRef<str>>(&self, texts: &[S], seed: u64) -> Result<Tensor> {
        let tok = self.tokenize(texts)?;
        let (ids, lengths) = TokenizedText::pack(&tok);
        let hidden = self
            .encoder()
            .forward_train(&ids, &lengths, seed, &self.sink)?;
        let pooled = self
            .pooling()
            .pool_packed(&hidden, &lengths)
            .map_err(sbert::Error::from)?;
        Ok(self.embedder.apply_heads(pooled)?)
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

    /// The next dropout seed, without drawing it (saved with a checkpoint's state).
    pub(crate) fn peek_seed(&self) -> u64 {
        self.next_dropout_seed.load(Ordering::Relaxed)
    }

    /// Continues the dropout stream at `next` (a resumed run).
    pub(crate) fn set_next_seed(&self, next: u64) {
        self.next_dropout_seed.store(next, Ordering::Relaxed);
    }

    /// Restarts the sequence of dropout seeds from `seed`: training-mode passes after this
    /// draw the same masks (on the CPU in f32) for the same seed. [`crate::Trainer`] calls it
    /// with its seed at the start of training.
    pub fn seed_dropout(&self, seed: u64) {
        self.next_dropout_seed.store(seed << 32, Ordering::Relaxed);
    }

    /// Saves the model as a sentence-transformers folder at `out`: the encoder's
    /// `model.safetensors` (where `modules.json` puts it) with the current weights under
    /// Hugging Face names, every other file of the source folder, and the checkpoint marker [`crate::checkpoint::MARKER`]. The folder is assembled beside
    /// `out` under a unique hidden name and moved into place only when complete, so an
    /// interrupted save never leaves a half-written checkpoint and concurrent saves never mix;
    /// a previous folder at `out` is replaced only then, and only as [`OutputDir`] allows.
    ///
    /// # Errors
    /// On I/O errors, or when the folder at `out` is no longer one that may be replaced.
    pub fn save(&self, out: &OutputDir) -> Result<()> {
        self.save_with(out, &|_| Ok(()))
    }

    /// [`TrainableModel::save`], with `extra` writing more files into the folder being
    /// assembled (the trainer's state) before it is moved into place.
    pub(crate) fn save_with(
        &self,
        out: &OutputDir,
        extra: &dyn Fn(&Path) -> Result<()>,
    ) -> Result<()> {
        out.check()?;
        let staged = sbert_io::output::StagedDir::new(out.path())?;
        // Where modules.json puts the encoder's weights (`model.safetensors` of the
        // Transformer module's folder, the root or a subfolder).
        let relative = self
            .embedder
            .weights_path()
            .strip_prefix(self.embedder.dir())
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| PathBuf::from("model.safetensors"));
        copy_tree(&self.dir, staged.path(), Some(&relative))?;
        let weights = staged.path().join(&relative);
        let weights_error = |source| sbert::Error::Weights {
            path: weights.clone(),
            source,
        };
        let mut tensors: std::collections::HashMap<String, Tensor> = self
            .varmap
            .data()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
            .collect();
        for (name, tensor) in &self.pooler {
            tensors
                .entry(name.clone())
                .or_insert_with(|| tensor.clone());
        }
        candle_core::safetensors::save(&tensors, &weights).map_err(weights_error)?;
        extra(staged.path())?;
        // The marker lists every file of the checkpoint, so that a later run can tell them
        // from files a user added (which it must not delete).
        let files = crate::checkpoint::files_under(staged.path())?;
        let marker = serde_json::to_string_pretty(&serde_json::json!({
            "written_by": format!("sbert-train {}", env!("CARGO_PKG_VERSION")),
            "base_model": self.dir.display().to_string(),
            "files": files,
        }))
        .map_err(|e| TrainError::Io {
            path: staged.path().join(crate::checkpoint::MARKER),
            source: std::io::Error::other(e),
        })?;
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

/// Copies `from` into `to`, recursively; not `from/skip` (the encoder weights, written
/// separately). Module weights (`2_Dense/…`) are copied; the source's own checkpoint marker
/// and the temporaries of `sbert_io` writers are not.
fn copy_tree(from: &Path, to: &Path, skip: Option<&Path>) -> Result<()> {
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
            || name_str == crate::state::STATE_DIR
            || sbert_io::output::is_temporary(&name_str)
        {
            continue;
        }
        let target = to.join(&name);
        // The part of `skip` below this entry, when `skip` runs through it.
        let below = skip.and_then(|s| s.strip_prefix(&name).ok());
        if path.is_dir() {
            copy_tree(&path, &target, below.filter(|b| !b.as_os_str().is_empty()))?;
        } else if below.is_none_or(|b| !b.as_os_str().is_empty()) {
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

    /// Inference through the trainable model is the folder's pipeline over the current
    /// weights, and the weights were read once into variables that the encoder uses.
    #[test]
    fn inference_reads_the_current_variables() -> Result<()> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny");
        let model = TrainableModel::load(&dir)?;
        let frozen = SentenceEmbedder::from_dir(&dir, &Device::Cpu)?;
        let texts = ["the cat sat on the mat and a dog ran", "cat", "a dog"];
        let before = model.embed(&texts, false)?;
        assert!(
            max_abs(&(&before - frozen.encode_tensor(&texts, &sbert::EncodeOptions::default())?)?)?
                < 1e-6
        );
        let word =
            &model.varmap().data().lock().expect("lock")["embeddings.word_embeddings.weight"];
        assert_eq!(
            word.as_tensor().id(),
            model.encoder().weights()?.embeddings.word.id()
        );
        word.set(&(word.as_tensor() * 2.0)?)?;
        let after = model.embed(&texts, false)?;
        assert!(max_abs(&(&after - &before)?)? > 1e-3);
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
        let weights = Tensor::randn(0f32, 1.0, (texts.len(), model.dim()), &Device::Cpu)?;
        let loss = |e: &Tensor| -> Result<Tensor> { Ok((e * &weights)?.sum_all()?) };

        let packed = model.embed(&texts, true)?;
        let mut ours = loss(&packed)?.backward()?;
        model.collect_gradients(&mut ours)?;
        // The graph over a padded batch, in training mode (no dropout in this config).
        let tok = model.tokenize(&texts)?;
        let refs: Vec<&TokenizedText> = tok.iter().collect();
        let batch = model.embedder().pad(&refs)?;
        let mode = sbert::bert::Mode {
            train: true,
            ..sbert::bert::Mode::default()
        };
        let hidden = model
            .encoder()
            .forward_with_mode(&batch.input_ids, None, &batch.attention_mask, mode)?
            .hidden_states;
        let pooled = model
            .pooling()
            .pool(&hidden, &batch.attention_mask)
            .map_err(sbert::Error::from)?;
        let padded = model.embedder().apply_heads(pooled)?;
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
