//! Reading a sentence-transformers model folder: `modules.json` and the config of each module.
//!
//! With `weights.rs`, the only modules of this crate that read model files.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::similarity::Similarity;

/// One entry of `modules.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleEntry {
    /// Position in the pipeline.
    #[serde(default)]
    pub idx: usize,
    /// Module name.
    #[serde(default)]
    pub name: String,
    /// Folder of the module's files, relative to the model folder (`""` for the root).
    #[serde(default)]
    pub path: String,
    /// Python class, e.g. `sentence_transformers.models.Pooling`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl ModuleEntry {
    /// The class name without its Python module path (`"Pooling"`), so that the old
    /// `sentence_transformers.models.X` and newer module paths both match.
    pub fn class(&self) -> &str {
        self.kind.rsplit('.').next().unwrap_or(&self.kind)
    }
}

/// `sentence_bert_config.json` of the Transformer module.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentenceBertConfig {
    /// Longest input in tokens, special tokens included; longer inputs are truncated.
    #[serde(default)]
    pub max_seq_length: Option<usize>,
    /// Lower-case every text before tokenizing.
    #[serde(default)]
    pub do_lower_case: bool,
}

/// `config.json` of a `Dense` module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenseConfig {
    /// Input width.
    pub in_features: usize,
    /// Output width.
    pub out_features: usize,
    /// Whether the layer has a bias.
    #[serde(default = "default_true")]
    pub bias: bool,
    /// Python class of the activation, e.g. `torch.nn.modules.activation.Tanh`.
    #[serde(default = "default_activation")]
    pub activation_function: String,
}

fn default_true() -> bool {
    true
}

fn default_activation() -> String {
    "torch.nn.modules.activation.Tanh".to_string()
}

/// Reads and parses a JSON file, naming the file in every error.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_to_string(path)?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// The settings of `config_sentence_transformers.json` that change what `encode` and
/// `similarity` do.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct SentenceTransformersConfig {
    /// Prompt name → the text put before an input.
    #[serde(default)]
    pub prompts: std::collections::BTreeMap<String, String>,
    /// The prompt applied when the caller names none.
    #[serde(default)]
    pub default_prompt_name: Option<String>,
    /// The similarity function the model is meant to be compared with (`"cosine"`, `"dot"`,
    /// `"euclidean"`, `"manhattan"`); cosine when absent, as in sentence-transformers.
    #[serde(default)]
    pub similarity_fn_name: Option<String>,
    /// The file, for error messages.
    #[serde(skip)]
    pub path: PathBuf,
}

impl SentenceTransformersConfig {
    /// `similarity_fn_name` as a [`Similarity`].
    pub fn similarity_fn(&self) -> Result<Similarity> {
        match &self.similarity_fn_name {
            None => Ok(Similarity::Cosine),
            Some(name) => name.parse().map_err(|_| {
                Error::Unsupported(format!(
                    "{}: similarity_fn_name {name:?} is none of cosine, dot, euclidean, manhattan",
                    self.path.display()
                ))
            }),
        }
    }
}

/// The settings of `config_sentence_transformers.json` that change what `encode` and
/// `similarity` do.in `dir`; none when the file or
/// the keys are absent.
pub(crate) fn read_sentence_transformers_config(dir: &Path) -> Result<SentenceTransformersConfig> {
    let path = dir.join("config_sentence_transformers.json");
    if !path.is_file() {
        return Ok(SentenceTransformersConfig::default());
    }
    let mut config: SentenceTransformersConfig = read_json(&path)?;
    config.path = path.clone();
    if let Some(name) = &config.default_prompt_name {
        if !config.prompts.contains_key(name) {
            return Err(Error::InvalidArgument(format!(
                "{}: default_prompt_name {name:?} is not one of the prompts {:?}",
                path.display(),
                config.prompts.keys().collect::<Vec<_>>()
            )));
        }
    }
    Ok(config)
}

/// `model_max_length` of `tokenizer_config.json` in `dir`: sentence-transformers 6 keeps a
/// model's `max_seq_length` there. `None` when the file or the key is absent, or holds the
/// "no limit" placeholder (`1e30`) of `transformers`.
pub(crate) fn tokenizer_max_length(dir: &Path) -> Result<Option<usize>> {
    #[derive(Deserialize)]
    struct TokenizerConfig {
        #[serde(default)]
        model_max_length: Option<f64>,
    }
    let path = dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(None);
    }
    let config: TokenizerConfig = read_json(&path)?;
    Ok(config
        .model_max_length
        .filter(|&n| (1.0..1e9).contains(&n) && n.fract() == 0.0)
        .map(|n| n as usize))
}

/// Reads a file to a string; a missing file is [`Error::MissingFile`].
/// The longest input of the Transformer module in `dir`, in tokens: `max_seq_length` of its
/// `sentence_bert_config.json`, else the tokenizer's `model_max_length`, capped at `positions`
/// (the encoder's limit).
pub(crate) fn max_input_length(dir: &Path, positions: usize) -> Result<usize> {
    let path = dir.join("sentence_bert_config.json");
    let configured = if path.is_file() {
        read_json::<SentenceBertConfig>(&path)?.max_seq_length
    } else {
        None
    };
    Ok(configured
        .or(tokenizer_max_length(dir)?)
        .unwrap_or(usize::MAX)
        .min(positions))
}

pub(crate) fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| io_error(path, source))
}

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> Error {
    if source.kind() == std::io::ErrorKind::NotFound {
        Error::MissingFile(path.to_path_buf())
    } else {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Fails with [`Error::MissingFile`] unless `path` is a file.
pub(crate) fn require_file(path: PathBuf) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingFile(path))
    }
}

/// The modules of a folder: `modules.json` if present, else the implicit
/// Transformer → mean Pooling that sentence-transformers builds for a plain HF model.
pub(crate) fn read_modules(dir: &Path) -> Result<Option<Vec<ModuleEntry>>> {
    let path = dir.join("modules.json");
    if !path.exists() {
        return Ok(None);
    }
    let mut modules: Vec<ModuleEntry> = read_json(&path)?;
    modules.sort_by_key(|m| m.idx);
    Ok(Some(modules))
}

/// `model.safetensors` of a folder, or a clear error when only a PyTorch pickle is there.
pub(crate) fn weights_file(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("model.safetensors");
    if path.is_file() {
        return Ok(path);
    }
    if dir.join("pytorch_model.bin").is_file() {
        return Err(Error::Unsupported(format!(
            "{} has only pytorch_model.bin; convert it to model.safetensors",
            dir.display()
        )));
    }
    Err(Error::MissingFile(path))
}

/// A module after pooling, as `modules.json` lists it.
pub(crate) enum HeadEntry {
    /// A `Dense` module and its folder.
    Dense(PathBuf),
    /// `Normalize`.
    Normalize,
}

/// What turns tokens into vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EncoderKind {
    /// A Transformer module: `config.json` names the architecture.
    Transformer,
    /// A `StaticEmbedding` module (model2vec): a table of token vectors, averaged.
    Static,
}

/// Where a model folder keeps each part.
pub(crate) struct Layout {
    /// The first module's kind.
    pub kind: EncoderKind,
    /// The Transformer (or StaticEmbedding) module's folder (weights, tokenizer, config).
    pub transformer: PathBuf,
    /// The Pooling module's folder, if `modules.json` lists one.
    pub pooling: Option<PathBuf>,
    /// The modules after pooling, in order.
    pub heads: Vec<HeadEntry>,
}

/// The layout of the folder `dir`: from `modules.json` when present; else a model2vec folder
/// (`config.json` with `model_type` `model2vec`: a static table, normalized when its config
/// says `normalize`), else a plain Hugging Face model (the folder itself is the Transformer; no
/// Pooling folder, no heads).
pub(crate) fn layout(dir: &Path) -> Result<Layout> {
    if let Some(modules) = read_modules(dir)? {
        let (kind, transformer, pooling, heads) = split_modules(dir, &modules)?;
        return Ok(Layout {
            kind,
            transformer,
            pooling,
            heads,
        });
    }
    let config = dir.join("config.json");
    if config.is_file() {
        let raw: serde_json::Value = read_json(&config)?;
        if raw.get("model_type").and_then(serde_json::Value::as_str) == Some("model2vec") {
            let normalize = raw.get("normalize").and_then(serde_json::Value::as_bool) == Some(true);
            return Ok(Layout {
                kind: EncoderKind::Static,
                transformer: dir.to_path_buf(),
                pooling: None,
                heads: if normalize {
                    vec![HeadEntry::Normalize]
                } else {
                    Vec::new()
                },
            });
        }
    }
    Ok(Layout {
        kind: EncoderKind::Transformer,
        transformer: dir.to_path_buf(),
        pooling: None,
        heads: Vec::new(),
    })
}

/// Splits `modules.json` into the Transformer folder, the Pooling folder and the heads.
type Modules = (EncoderKind, PathBuf, Option<PathBuf>, Vec<HeadEntry>);

fn split_modules(dir: &Path, modules: &[ModuleEntry]) -> Result<Modules> {
    let mut transformer = None;
    let mut kind = EncoderKind::Transformer;
    let mut pooling = None;
    let mut heads = Vec::new();
    for (pos, module) in modules.iter().enumerate() {
        let path = dir.join(&module.path);
        // A static table pools itself (the mean of its rows); heads follow it directly.
        let pooled = pooling.is_some() || kind == EncoderKind::Static;
        match (module.class(), pos) {
            ("Transformer" | "BERT", 0) => transformer = Some(path),
            ("StaticEmbedding", 0) => {
                transformer = Some(path);
                kind = EncoderKind::Static;
            }
            ("Pooling", 1) if kind == EncoderKind::Transformer => pooling = Some(path),
            ("Dense", _) if pooled => heads.push(HeadEntry::Dense(path)),
            ("Normalize", _) if pooled => heads.push(HeadEntry::Normalize),
            (class, _) => {
                return Err(Error::Unsupported(format!(
                    "module {class} at position {pos} of {} (supported: Transformer, Pooling, \
                     then Dense and Normalize; or StaticEmbedding, then Dense and Normalize)",
                    dir.join("modules.json").display()
                )))
            }
        }
    }
    let transformer = transformer.ok_or_else(|| {
        Error::Unsupported(format!(
            "{} does not start with a Transformer or StaticEmbedding module",
            dir.join("modules.json").display()
        ))
    })?;
    Ok((kind, transformer, pooling, heads))
}

/// FNV-1a (64-bit, hex) over the model files under `dir` (relative path, length and bytes of
/// each, in path order) and `extra`; see [`crate::SentenceEmbedder::identity`] for which files.
pub(crate) fn fingerprint(dir: &Path, extra: &[u8]) -> Result<String> {
    fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
        for &b in bytes {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash
    }
    fn walk(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error(dir, e))?;
            let name = entry.file_name();
            let name_str = name.to_string_lossy();
            if name_str.starts_with('.') {
                continue;
            }
            let path = entry.path();
            // Follows links: a hub snapshot's files are links into its blob store.
            let meta = std::fs::metadata(&path).map_err(|e| io_error(&path, e))?;
            if meta.is_dir() {
                if !matches!(name_str.as_ref(), "onnx" | "openvino") {
                    walk(&path, &rel.join(&name), out)?;
                }
            } else if meta.is_file()
                && [".json", ".safetensors", ".txt", ".model"]
                    .iter()
                    .any(|ext| name_str.ends_with(ext))
            {
                out.push(rel.join(&name));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, Path::new(""), &mut files)?;
    files.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buf = vec![0u8; 1 << 20];
    for rel in &files {
        let path = dir.join(rel);
        hash = fnv(hash, rel.to_string_lossy().as_bytes());
        let mut file = std::fs::File::open(&path).map_err(|e| io_error(&path, e))?;
        let mut len = 0u64;
        loop {
            let n = std::io::Read::read(&mut file, &mut buf).map_err(|e| io_error(&path, e))?;
            if n == 0 {
                break;
            }
            len += n as u64;
            hash = fnv(hash, &buf[..n]);
        }
        hash = fnv(hash, &len.to_le_bytes());
    }
    hash = fnv(hash, extra);
    Ok(format!("{hash:016x}"))
}
