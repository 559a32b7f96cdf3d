//! `sbert index build`: a corpus embedded once, on disk, tied to the model that embedded it.
//!
//! A folder holds `embeddings.npy` (float32 `(n, dim)`), `texts.jsonl` (one JSON string per
//! line, in the same order) and `index.json` (format, count, and the model's identity: its
//! folder name, a fingerprint of its weights and settings, dimension, pooling, normalization,
//! sequence limit). `sbert search --index DIR` refuses an index built with another model and
//! reports a corrupt or inconsistent file by name.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use sbert::SentenceEmbedder;
use serde::{Deserialize, Serialize};

use crate::io::{self, InputFormat};
use crate::ModelArgs;

const FORMAT: &str = "sbert-index/1";

#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Embed a corpus once into DIR (embeddings.npy, texts.jsonl, index.json) for
    /// `sbert search --index DIR`.
    ///
    /// Example: sbert index build --corpus docs.txt --output docs.index
    Build(BuildArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The texts, one per line (or jsonl).
    #[arg(long, value_name = "FILE")]
    corpus: PathBuf,
    /// The index folder to create (or replace with --overwrite when it holds an index).
    #[arg(long, short, value_name = "DIR")]
    output: PathBuf,
    /// lines or jsonl, as for `embed`.
    #[arg(long, value_enum, default_value_t = InputFormat::Lines)]
    input_format: InputFormat,
    /// Replace an existing index in DIR.
    #[arg(long)]
    overwrite: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// What `index.json` says of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelIdentity {
    pub name: String,
    pub fingerprint: String,
    pub dim: usize,
    pub pooling: String,
    pub normalize: bool,
    pub max_seq_length: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct IndexFile {
    format: String,
    count: usize,
    model: ModelIdentity,
}

/// FNV-1a (64-bit) over the weights file and the settings that change an embedding.
pub fn identity(model: &SentenceEmbedder) -> Result<ModelIdentity> {
    let path = model.weights_path();
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    let settings = format!(
        "{}|{}|{}|{}",
        model.dim(),
        model.pooling(),
        model.normalizes(),
        model.max_seq_length()
    );
    for &b in settings.as_bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let dir = model.dir();
    Ok(ModelIdentity {
        name: dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        fingerprint: format!("{hash:016x}"),
        dim: model.dim(),
        pooling: model.pooling().to_string(),
        normalize: model.normalizes(),
        max_seq_length: model.max_seq_length(),
    })
}

pub fn run_command(cmd: &IndexCommand) -> Result<()> {
    match cmd {
        IndexCommand::Build(args) => build(args),
    }
}

fn build(args: &BuildArgs) -> Result<()> {
    let dir = &args.output;
    if dir.exists() {
        if !dir.is_dir() {
            bail!("{} exists and is not a folder", dir.display());
        }
        let ours = dir.join("index.json").is_file();
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        if !empty && !ours {
            bail!(
                "{} holds files that are not an sbert index; refusing to write into it",
                dir.display()
            );
        }
        if ours && !args.overwrite {
            bail!(
                "{} already holds an index; pass --overwrite to replace it",
                dir.display()
            );
        }
    }
    let texts = io::read_texts(&args.corpus, args.input_format)?;
    if texts.is_empty() {
        bail!("corpus {} holds no texts", args.corpus.display());
    }
    let model = args.model.load(None)?;
    let id = identity(&model)?;
    let rows = crate::embed_all(&model, &texts, args.quiet, "corpus")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut npy = io::npy_header(texts.len(), model.dim());
    for x in &rows {
        npy.extend_from_slice(&x.to_le_bytes());
    }
    let mut jsonl = Vec::new();
    for t in &texts {
        serde_json::to_writer(&mut jsonl, t)?;
        jsonl.write_all(b"\n")?;
    }
    let meta = serde_json::to_vec_pretty(&IndexFile {
        format: FORMAT.into(),
        count: texts.len(),
        model: id,
    })?;
    // index.json last: a folder without it is never taken for a finished index.
    sbert::output::write_file(dir.join("embeddings.npy"), &npy)?;
    sbert::output::write_file(dir.join("texts.jsonl"), &jsonl)?;
    sbert::output::write_file(dir.join("index.json"), &meta)?;
    eprintln!("indexed {} texts into {}", texts.len(), dir.display());
    Ok(())
}

/// An index read back: texts and their embeddings, checked against each other and `model`.
pub fn load(dir: &Path, model: &SentenceEmbedder) -> Result<(Vec<String>, Vec<f32>)> {
    let meta_path = dir.join("index.json");
    let meta: IndexFile =
        serde_json::from_slice(&std::fs::read(&meta_path).with_context(|| {
            format!(
                "reading {} (is {} an index?)",
                meta_path.display(),
                dir.display()
            )
        })?)
        .with_context(|| format!("{} is corrupt", meta_path.display()))?;
    if meta.format != FORMAT {
        bail!(
            "{}: format {:?}, expected {FORMAT:?}",
            meta_path.display(),
            meta.format
        );
    }
    let id = identity(model)?;
    if meta.model != id {
        bail!(
            "{} was built with model {} (fingerprint {}, dim {}, pooling {}), not with {} (fingerprint {}, dim {}, pooling {}); rebuild it with `sbert index build`",
            dir.display(),
            meta.model.name,
            meta.model.fingerprint,
            meta.model.dim,
            meta.model.pooling,
            id.name,
            id.fingerprint,
            id.dim,
            id.pooling
        );
    }
    let texts_path = dir.join("texts.jsonl");
    let texts = io::read_texts(&texts_path, InputFormat::Jsonl)?;
    if texts.len() != meta.count {
        bail!(
            "{} holds {} texts, index.json says {}",
            texts_path.display(),
            texts.len(),
            meta.count
        );
    }
    let npy_path = dir.join("embeddings.npy");
    let bytes =
        std::fs::read(&npy_path).with_context(|| format!("reading {}", npy_path.display()))?;
    let header = io::npy_header(meta.count, meta.model.dim);
    if !bytes.starts_with(&header) || bytes.len() != header.len() + meta.count * meta.model.dim * 4
    {
        bail!(
            "{} is corrupt: expected a float32 ({}, {}) array of {} bytes, found {} bytes",
            npy_path.display(),
            meta.count,
            meta.model.dim,
            header.len() + meta.count * meta.model.dim * 4,
            bytes.len()
        );
    }
    let rows: Vec<f32> = bytes[header.len()..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if let Some(i) = rows.iter().position(|v| !v.is_finite()) {
        bail!(
            "{} is corrupt: row {} holds a NaN or infinite value",
            npy_path.display(),
            i / meta.model.dim
        );
    }
    Ok((texts, rows))
}
