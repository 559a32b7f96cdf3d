//! `sbert index build`: a corpus embedded once, on disk, tied to the model that embedded it;
//! `sbert index bench`: the recall@k and per-query time of its HNSW graph against exact search.
//!
//! The folder's format, its atomic replacement, locking and checks are `sbert_search`'s
//! ([`sbert_search::write_index`], [`StoredIndex`]); the model's identity is
//! [`SentenceEmbedder::identity`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use sbert::SentenceEmbedder;
use sbert_search::{HnswParams, NewIndex, Score, StoredIndex, Vectors};

use crate::io::{self, InputFormat};
use crate::ModelArgs;

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

pub fn run_command(cmd: &IndexCommand) -> Result<()> {
    match cmd {
        IndexCommand::Build(args) => build(args),
        IndexCommand::Bench(args) => bench(args),
    }
}

fn build(args: &BuildArgs) -> Result<()> {
    let dir = &args.output;
    // The refusals (a file where the folder goes, foreign files, an index without --overwrite)
    // before the corpus is read and embedded; `write_index` checks again under its lock.
    sbert_search::check_index_target(dir, args.overwrite)?;
    let texts = io::read_nonempty(&args.corpus, args.input_format, "corpus")?;
    let hnsw = args.hnsw.then_some(HnswParams {
        links: args.hnsw_links,
        ef_construction: args.hnsw_ef_construction,
    });
    if let Some(params) = hnsw {
        // Before embedding, not after it.
        params
            .check()
            .context("--hnsw-links / --hnsw-ef-construction")?;
    }
    let model = args.model.load(None)?;
    let id = model.identity()?;
    let rows = crate::embed_all(&model, &texts, args.quiet, "corpus")?;
    let start = Instant::now();
    model.install(|| {
        sbert_search::write_index(
            dir,
            &NewIndex {
                texts: &texts,
                rows: &rows,
                model: &id,
                hnsw,
            },
            args.overwrite,
        )
    })?;
    if let Some(params) = hnsw {
        eprintln!(
            "built an HNSW graph (links {}, ef_construction {}) over {} rows in {:.1} s",
            params.links,
            params.ef_construction,
            texts.len(),
            start.elapsed().as_secs_f64()
        );
    }
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

/// The index in `dir`, read and checked against `model` (see [`StoredIndex::open`]).
pub fn load(dir: &Path, model: &SentenceEmbedder) -> Result<StoredIndex> {
    Ok(StoredIndex::open(dir, &model.identity()?)?)
}
