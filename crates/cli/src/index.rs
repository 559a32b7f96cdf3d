//! `sbert index build`: a corpus embedded once, on disk, tied to the model that embedded it.
//!
//! A folder holds `embeddings.npy` (float32 `(n, dim)`), `texts.jsonl` (one JSON string per
//! line, in the same order) and `index.json` (format, count, and the model's identity: its
//! folder name, a fingerprint of its weights and settings, dimension, pooling, normalization,
//! sequence limit). `sbert search --index DIR` refuses an index built with another model and
//! reports a corrupt or inconsistent file by name.
//!
//! With `--hnsw` the folder also holds an HNSW graph (`hnsw.hnsw.graph`, `hnsw.hnsw.data`,
//! checksums in `index.json`) for `sbert search --index DIR --approximate`, and
//! `sbert index bench` measures its recall@k and per-query time against exact search.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use sbert::SentenceEmbedder;
use sbert_search::{ApproximateIndex, HnswParams, SavedGraph, Score, Vectors};
use serde::{Deserialize, Serialize};

use crate::io::{self, InputFormat};
use crate::ModelArgs;

const FORMAT: &str = "sbert-index/1";

#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Embed a corpus once into DIR (embeddings.npy, texts.jsonl, index.json; with --hnsw also
    /// an HNSW graph for `--approximate`) for `sbert search --index DIR`.
    ///
    /// Example: sbert index build --corpus docs.txt --output docs.index --hnsw
    Build(BuildArgs),
    /// Recall@k and per-query time of the index's HNSW graph against exact search, one query
    /// at a time, for each search width; prints one JSON object per line.
    ///
    /// Example: sbert index bench --index docs.index --queries questions.txt --ef 16,64,256
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// An index folder built with `sbert index build --hnsw`.
    #[arg(long, value_name = "DIR")]
    index: PathBuf,
    /// The queries, one per line (or jsonl).
    #[arg(long, value_name = "FILE")]
    queries: PathBuf,
    /// lines or jsonl, as for `embed`.
    #[arg(long, value_enum, default_value_t = InputFormat::Lines)]
    input_format: InputFormat,
    /// Hits per query; recall@k is the share of the exact top-k the graph finds.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Search widths to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    ef: Vec<usize>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
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
    /// Also build an HNSW graph for approximate search (`sbert search --approximate`).
    #[arg(long)]
    hnsw: bool,
    /// Links per node of the graph (M; the bottom layer keeps 2·M), 2 to 128.
    #[arg(long, default_value_t = HnswParams::default().links, requires = "hnsw")]
    hnsw_links: usize,
    /// Candidates weighed while inserting a node (efConstruction): higher builds slower and
    /// finds more of the exact neighbours.
    #[arg(long, default_value_t = HnswParams::default().ef_construction, requires = "hnsw")]
    hnsw_ef_construction: usize,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hnsw: Option<GraphEntry>,
}

/// What `index.json` says of the HNSW graph.
#[derive(Debug, Serialize, Deserialize)]
struct GraphEntry {
    links: usize,
    ef_construction: usize,
    saved: SavedGraph,
}

/// An index read back and checked: texts, their embeddings, and the graph if it has one.
#[derive(Debug)]
pub struct Index {
    dir: PathBuf,
    pub texts: Vec<String>,
    pub rows: Vec<f32>,
    pub dim: usize,
    graph: Option<SavedGraph>,
}

impl Index {
    /// The HNSW graph, read and checked against its checksums.
    pub fn approximate(&self) -> Result<ApproximateIndex> {
        let Some(saved) = &self.graph else {
            bail!(
                "{} has no HNSW graph; rebuild it with `sbert index build --hnsw`",
                self.dir.display()
            );
        };
        Ok(ApproximateIndex::load(&self.dir, saved)?)
    }
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
        IndexCommand::Bench(args) => bench(args),
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
    let texts = io::read_nonempty(&args.corpus, args.input_format, "corpus")?;
    let params = HnswParams {
        links: args.hnsw_links,
        ef_construction: args.hnsw_ef_construction,
    };
    if args.hnsw {
        // Before embedding, not after it.
        params
            .check()
            .context("--hnsw-links / --hnsw-ef-construction")?;
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
    // index.json last: a folder without it is never taken for a finished index.
    sbert_io::output::write_file(dir.join("embeddings.npy"), &npy)?;
    sbert_io::output::write_file(dir.join("texts.jsonl"), &jsonl)?;
    let hnsw = if args.hnsw {
        let start = Instant::now();
        let graph = ApproximateIndex::build(&Vectors::new(&rows, model.dim())?, params)?;
        let built = start.elapsed().as_secs_f64();
        let saved = graph.save(dir)?;
        eprintln!(
            "built an HNSW graph (links {}, ef_construction {}) over {} rows in {built:.1} s",
            params.links,
            params.ef_construction,
            texts.len()
        );
        Some(GraphEntry {
            links: params.links,
            ef_construction: params.ef_construction,
            saved,
        })
    } else {
        None
    };
    let meta = serde_json::to_vec_pretty(&IndexFile {
        format: FORMAT.into(),
        count: texts.len(),
        model: id,
        hnsw,
    })?;
    sbert_io::output::write_file(dir.join("index.json"), &meta)?;
    eprintln!("indexed {} texts into {}", texts.len(), dir.display());
    Ok(())
}

/// Exact and approximate search, one query at a time, timed; recall@k of each width.
fn bench(args: &BenchArgs) -> Result<()> {
    let queries = io::read_nonempty(&args.queries, args.input_format, "query file")?;
    if args.ef.is_empty() || args.ef.contains(&0) {
        bail!("--ef takes search widths of at least 1");
    }
    let model = args.model.load(None)?;
    let index = load(&args.index, &model)?;
    let graph = index.approximate()?;
    crate::check_top_k(args.top_k, index.texts.len())?;
    let q = crate::embed_all(&model, &queries, args.quiet, "queries")?;
    let dim = index.dim;
    // The exact baseline at its best: rows normalized once, then one dot-product scan per
    // query (cosine order, without copying the corpus on every call).
    let unit_rows = sbert_search::normalized(&Vectors::new(&index.rows, dim)?);
    let unit_queries = sbert_search::normalized(&Vectors::new(&q, dim)?);
    let corpus = Vectors::new(&unit_rows, dim)?;
    let one = |i: usize| Vectors::new(&unit_queries[i * dim..(i + 1) * dim], dim);
    let start = Instant::now();
    let mut exact = Vec::with_capacity(queries.len());
    for i in 0..queries.len() {
        exact.push(
            sbert_search::semantic_search(&one(i)?, &corpus, args.top_k, Score::Dot)?.remove(0),
        );
    }
    let exact_ms = 1000.0 * start.elapsed().as_secs_f64() / queries.len() as f64;
    println!(
        "{}",
        serde_json::json!({"search": "exact", "corpus": index.texts.len(), "queries": queries.len(),
            "top_k": args.top_k, "ms_per_query": round3(exact_ms)})
    );
    for &ef in &args.ef {
        let start = Instant::now();
        let mut found = Vec::with_capacity(queries.len());
        for i in 0..queries.len() {
            found.push(graph.search(&one(i)?, args.top_k, ef)?.remove(0));
        }
        let ms = 1000.0 * start.elapsed().as_secs_f64() / queries.len() as f64;
        let recall = sbert_search::recall(&found, &exact);
        println!(
            "{}",
            serde_json::json!({"search": "hnsw", "ef": ef, "recall_at_k": round3(recall),
                "ms_per_query": round3(ms), "speedup": round3(exact_ms / ms)})
        );
    }
    Ok(())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// An index read back: texts and their embeddings, checked against each other and `model`.
pub fn load(dir: &Path, model: &SentenceEmbedder) -> Result<Index> {
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
    if let Some(g) = &meta.hnsw {
        if g.saved.len != meta.count || g.saved.dim != meta.model.dim {
            bail!(
                "{}: the HNSW graph holds {} rows of {}, the index {} of {}",
                meta_path.display(),
                g.saved.len,
                g.saved.dim,
                meta.count,
                meta.model.dim
            );
        }
    }
    Ok(Index {
        dir: dir.to_path_buf(),
        texts,
        rows,
        dim: meta.model.dim,
        graph: meta.hnsw.map(|g| g.saved),
    })
}
