//! `sbert search`, `sbert mine`, `sbert cluster`, `sbert dedup`: what embeddings are for, over
//! text files (`sbert-search` does the work).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use sbert::SentenceEmbedder;
use sbert_search::{Score, Vectors};
use serde_json::json;

use crate::io::{self, InputFormat};
use crate::{check_top_k, embed_all, ModelArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// One JSON object per line.
    Jsonl,
    /// Readable text with scores.
    Table,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DedupFormat {
    /// The kept texts, one per line, in input order.
    Lines,
    /// One JSON object per input text: {"index", "text", "duplicate_of"}.
    Jsonl,
}

#[derive(Debug, Args)]
struct Inputs {
    /// lines: one text per line; jsonl: one JSON string or object with a "text" field per line.
    #[arg(long, value_enum, default_value_t = InputFormat::Lines)]
    input_format: InputFormat,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The texts searched, one per line (or jsonl).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "index",
        conflicts_with = "index"
    )]
    corpus: Option<PathBuf>,
    /// An index folder from `sbert index build` instead of --corpus (the corpus is not
    /// embedded again; an index built with another model is refused).
    #[arg(long, value_name = "DIR")]
    index: Option<PathBuf>,
    /// The queries, one per line (or jsonl).
    #[arg(long, value_name = "FILE")]
    queries: PathBuf,
    /// Hits per query (at most the corpus size).
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// How hits are scored.
    #[arg(long, value_enum, default_value_t = Score::Cosine)]
    score: Score,
    /// Search the index's HNSW graph (`sbert index build --hnsw`) instead of every row:
    /// faster on large corpora, and may miss some of the exact top-k (`sbert index bench`
    /// measures how many). Cosine only.
    #[arg(long, requires = "index")]
    approximate: bool,
    /// Candidates explored per query with --approximate: wider finds more, costs more.
    #[arg(long, default_value_t = 64, requires = "approximate")]
    ef: usize,
    /// Rerank each query's hits with this cross-encoder (`sbert rerank`'s --model): retrieve
    /// with --model, then read the query with each hit. Hits are then sorted by the
    /// cross-encoder's score, written as `score`, the embedding score as `retrieval_score`.
    #[arg(long, value_name = "MODEL")]
    rerank_model: Option<String>,
    /// Hits reranked and written per query: the first N retrieved (default: all --top-k).
    #[arg(long, value_name = "N", requires = "rerank_model")]
    rerank_top: Option<usize>,
    /// Hybrid search: also embed with this sparse (SPLADE) model and score each corpus text by
    /// `--dense-weight` × cosine + (1 − weight) × sparse dot product / the query's best one.
    /// (A sparse --model alone searches by sparse dot product through an inverted index.)
    #[arg(long, value_name = "MODEL", conflicts_with = "index")]
    sparse_model: Option<String>,
    /// The dense share of hybrid scores, in [0, 1].
    #[arg(long, default_value_t = 0.5, requires = "sparse_model")]
    dense_weight: f32,
    /// jsonl: {"query": i, "hits": [{"corpus_id": j, "score": s}, …]} per query, in order.
    #[arg(long, value_enum, default_value_t = ListFormat::Jsonl)]
    format: ListFormat,
    #[command(flatten)]
    inputs: Inputs,
}

#[derive(Debug, Args)]
pub struct MineArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The texts, one per line (or jsonl).
    #[arg(long, short, value_name = "FILE")]
    input: PathBuf,
    /// Candidates per text (sentence-transformers' default).
    #[arg(long, default_value_t = 100)]
    top_k: usize,
    /// Pairs kept at most, best first (sentence-transformers' default).
    #[arg(long, default_value_t = 500_000)]
    max_pairs: usize,
    /// jsonl: {"score": s, "i": i, "j": j} per pair, best first, i < j.
    #[arg(long, value_enum, default_value_t = ListFormat::Jsonl)]
    format: ListFormat,
    #[command(flatten)]
    inputs: Inputs,
}

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The texts, one per line (or jsonl).
    #[arg(long, short, value_name = "FILE")]
    input: PathBuf,
    /// Cosine a member needs to the community's centre (sentence-transformers' default).
    #[arg(long, default_value_t = 0.75, allow_negative_numbers = true)]
    threshold: f32,
    /// Smallest community reported, centre included (sentence-transformers' default).
    #[arg(long, default_value_t = 10)]
    min_size: usize,
    /// jsonl: {"members": [centre, …], "size": n} per community, largest first.
    #[arg(long, value_enum, default_value_t = ListFormat::Jsonl)]
    format: ListFormat,
    #[command(flatten)]
    inputs: Inputs,
}

#[derive(Debug, Args)]
pub struct DedupArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The texts, one per line (or jsonl).
    #[arg(long, short, value_name = "FILE")]
    input: PathBuf,
    /// Cosine at or above which a text duplicates an earlier kept text.
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    threshold: f32,
    /// lines: the kept texts in input order; jsonl: every text with its `duplicate_of`.
    #[arg(long, value_enum, default_value_t = DedupFormat::Lines)]
    format: DedupFormat,
    #[command(flatten)]
    inputs: Inputs,
}

/// Reads `args.input`, loads the model and embeds the texts: what mine, cluster and dedup
/// start from.
fn embedded_input(
    model: &ModelArgs,
    input: &Path,
    inputs: &Inputs,
) -> Result<(Vec<String>, SentenceEmbedder, Vec<f32>)> {
    let texts = io::read_nonempty(input, inputs.input_format, "input")?;
    let model = model.load(None)?;
    let rows = embed_all(&model, &texts, inputs.quiet, "texts")?;
    Ok((texts, model, rows))
}

/// A text on one line of a table.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r', '\t'], " ")
}

pub fn search(args: &SearchArgs) -> Result<()> {
    let queries = io::read_nonempty(&args.queries, args.inputs.input_format, "query file")?;
    // Read and check the corpus file before loading the model.
    let texts = match (&args.corpus, &args.index) {
        (Some(file), None) => {
            let corpus = io::read_nonempty(file, args.inputs.input_format, "corpus")?;
            check_top_k(args.top_k, corpus.len())?;
            Some(corpus)
        }
        (_, Some(_)) => None,
        (None, None) => bail!("give --corpus FILE or --index DIR"),
    };
    if args.approximate && args.index.is_none() {
        bail!("--approximate searches an index's graph: give --index DIR");
    }
    if args.approximate && args.score != Score::Cosine {
        bail!("--approximate scores by cosine; drop --score dot");
    }
    if args.ef == 0 {
        bail!("--ef must be at least 1");
    }
    if args.rerank_top == Some(0) {
        bail!("--rerank-top must be at least 1");
    }
    if !(0.0..=1.0).contains(&args.dense_weight) {
        bail!("--dense-weight {} is outside [0, 1]", args.dense_weight);
    }
    let sparse_only = matches!(
        sbert::ModelKind::of(&args.model.model),
        Ok(sbert::ModelKind::Sparse)
    );
    if sparse_only || args.sparse_model.is_some() {
        let Some(corpus) = texts else {
            bail!("sparse and hybrid search embed --corpus FILE (an index holds dense rows only)");
        };
        if args.rerank_model.is_some() {
            bail!("--rerank-model reranks dense search; drop it with sparse or hybrid search");
        }
        let hits = sparse_search(args, &queries, &corpus, sparse_only)?;
        return write_hits(args, &queries, &corpus, &hits);
    }
    let model = args.model.load(None)?;
    let reranker = match &args.rerank_model {
        Some(name) => Some(
            sbert::CrossEncoder::load(name, &sbert::Device::Cpu)
                .with_context(|| format!("loading cross-encoder {name}"))?,
        ),
        None => None,
    };
    let (corpus, c, graph) = match (texts, &args.index) {
        (Some(corpus), _) => {
            let c = embed_all(&model, &corpus, args.inputs.quiet, "corpus")?;
            (corpus, c, None)
        }
        (None, Some(dir)) => {
            let index = crate::index::load(dir, &model)?;
            let graph = match args.approximate {
                true => Some(index.approximate()?),
                false => None,
            };
            (index.texts, index.rows, graph)
        }
        (None, None) => bail!("give --corpus FILE or --index DIR"),
    };
    check_top_k(args.top_k, corpus.len())?;
    let q = embed_all(&model, &queries, args.inputs.quiet, "queries")?;
    let score = args.score;
    let q = Vectors::new(&q, model.dim())?;
    let c = Vectors::new(&c, model.dim())?;
    let hits = model.install(|| match &graph {
        Some(graph) => graph.search(&q, args.top_k, args.ef),
        None => sbert_search::semantic_search(&q, &c, args.top_k, score),
    })?;
    let hits: Vec<Vec<serde_json::Value>> = match &reranker {
        None => hits
            .iter()
            .map(|h| h.iter().map(|hit| json!(hit)).collect())
            .collect(),
        Some(reranker) => hits
            .iter()
            .zip(&queries)
            .map(|(h, query)| rerank_hits(reranker, query, h, &corpus, args.rerank_top))
            .collect::<Result<_>>()?,
    };
    write_hits(args, &queries, &corpus, &hits)
}

/// Writes each query's hits (`{"corpus_id", "score", …}` objects) in `args.format`.
fn write_hits(
    args: &SearchArgs,
    queries: &[String],
    corpus: &[String],
    hits: &[Vec<serde_json::Value>],
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for (i, h) in hits.iter().enumerate() {
        match args.format {
            ListFormat::Jsonl => writeln!(out, "{}", json!({"query": i, "hits": h}))?,
            ListFormat::Table => {
                writeln!(out, "query {i}: {}", one_line(&queries[i]))?;
                for hit in h {
                    let id = hit["corpus_id"].as_u64().unwrap_or(0) as usize;
                    writeln!(
                        out,
                        "  {:.4}  [{id}] {}",
                        hit["score"].as_f64().unwrap_or(f64::NAN),
                        one_line(&corpus[id])
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// Sparse search (a sparse --model: dot products through an inverted index) or hybrid search
/// (--sparse-model beside a dense --model).
fn sparse_search(
    args: &SearchArgs,
    queries: &[String],
    corpus: &[String],
    sparse_only: bool,
) -> Result<Vec<Vec<serde_json::Value>>> {
    let device = sbert::device(&args.model.device)?;
    let name = if sparse_only {
        &args.model.model
    } else {
        args.sparse_model.as_ref().unwrap_or(&args.model.model)
    };
    let sparse = sbert::SparseEncoder::load(name, &device)
        .with_context(|| format!("loading sparse encoder {name}"))?
        .with_batch_size(args.model.batch_size)?;
    let c = sparse.encode(corpus)?;
    let q = sparse.encode(queries)?;
    let index = sbert_search::InvertedIndex::new(&c, sparse.dimension())?;
    let hits = if sparse_only {
        index.search(&q, args.top_k)?
    } else {
        let model = args.model.load(None)?;
        let dc = embed_all(&model, corpus, args.inputs.quiet, "corpus")?;
        let dq = embed_all(&model, queries, args.inputs.quiet, "queries")?;
        let (dc, dq) = (
            Vectors::new(&dc, model.dim())?,
            Vectors::new(&dq, model.dim())?,
        );
        model.install(|| {
            sbert_search::hybrid_search(&dq, &dc, &q, &index, args.top_k, args.dense_weight)
        })?
    };
    Ok(hits
        .iter()
        .map(|h| h.iter().map(|hit| json!(hit)).collect())
        .collect())
}

/// The first `top` (default: all) of one query's `hits` reranked by `reranker`:
/// `{"corpus_id", "score", "retrieval_score"}` each, best first.
fn rerank_hits(
    reranker: &sbert::CrossEncoder,
    query: &str,
    hits: &[sbert_search::Hit],
    corpus: &[String],
    top: Option<usize>,
) -> Result<Vec<serde_json::Value>> {
    let n = top.unwrap_or(hits.len()).min(hits.len());
    let docs: Vec<&str> = hits[..n]
        .iter()
        .map(|h| corpus[h.corpus_id].as_str())
        .collect();
    let ranked = reranker.rank(query, &docs, None)?;
    Ok(ranked
        .iter()
        .map(|r| {
            let hit = &hits[r.corpus_id];
            json!({"corpus_id": hit.corpus_id, "score": r.score, "retrieval_score": hit.score})
        })
        .collect())
}

pub fn mine(args: &MineArgs) -> Result<()> {
    let (texts, model, e) = embedded_input(&args.model, &args.input, &args.inputs)?;
    let e = Vectors::new(&e, model.dim())?;
    let pairs = model.install(|| {
        sbert_search::paraphrase_mining(&e, args.top_k, args.max_pairs, Score::Cosine)
    })?;
    let mut out = std::io::stdout().lock();
    for p in &pairs {
        match args.format {
            ListFormat::Jsonl => {
                writeln!(out, "{}", json!({"score": p.score, "i": p.i, "j": p.j}))?
            }
            ListFormat::Table => writeln!(
                out,
                "{:.4}\t[{}] {}\t[{}] {}",
                p.score,
                p.i,
                one_line(&texts[p.i]),
                p.j,
                one_line(&texts[p.j])
            )?,
        }
    }
    Ok(())
}

pub fn cluster(args: &ClusterArgs) -> Result<()> {
    let (texts, model, e) = embedded_input(&args.model, &args.input, &args.inputs)?;
    let e = Vectors::new(&e, model.dim())?;
    let communities =
        model.install(|| sbert_search::community_detection(&e, args.threshold, args.min_size))?;
    let mut out = std::io::stdout().lock();
    for (k, c) in communities.iter().enumerate() {
        match args.format {
            ListFormat::Jsonl => writeln!(out, "{}", json!({"members": c, "size": c.len()}))?,
            ListFormat::Table => {
                writeln!(
                    out,
                    "community {k} ({} texts): {}",
                    c.len(),
                    one_line(&texts[c[0]])
                )?;
                for &m in &c[1..] {
                    writeln!(out, "  [{m}] {}", one_line(&texts[m]))?;
                }
            }
        }
    }
    Ok(())
}

pub fn dedup(args: &DedupArgs) -> Result<()> {
    let (texts, model, e) = embedded_input(&args.model, &args.input, &args.inputs)?;
    let e = Vectors::new(&e, model.dim())?;
    let d = model.install(|| sbert_search::dedup(&e, args.threshold))?;
    if args.format == DedupFormat::Lines {
        if let Some(i) = d
            .kept()
            .into_iter()
            .find(|&i| texts[i].contains(['\n', '\r']))
        {
            bail!("kept text {i} holds a line break, which --format lines cannot write; use --format jsonl");
        }
    }
    let mut out = std::io::stdout().lock();
    for (i, text) in texts.iter().enumerate() {
        match args.format {
            DedupFormat::Lines if d.duplicate_of[i].is_none() => writeln!(out, "{text}")?,
            DedupFormat::Lines => {}
            DedupFormat::Jsonl => writeln!(
                out,
                "{}",
                json!({"index": i, "text": text, "duplicate_of": d.duplicate_of[i], "similarity": d.similarity[i]})
            )?,
        }
    }
    let kept = d.kept().len();
    eprintln!(
        "{kept} of {} texts kept, {} duplicates",
        texts.len(),
        texts.len() - kept
    );
    Ok(())
}
