//! `sbert rerank`: documents ranked against a query, or the pairs of a TSV file scored, by a
//! cross-encoder.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use sbert::{Activation, CrossEncoder, PredictOptions};
use serde_json::json;

use crate::apps::ListFormat;
use crate::io::{self, InputFormat};

#[derive(Debug, Args)]
pub struct RerankArgs {
    /// The cross-encoder: a folder (sentence-transformers' CrossEncoder, or a Hugging Face
    /// *ForSequenceClassification folder), or an owner/name id in the local hub cache.
    #[arg(long, short)]
    model: String,
    /// The query the documents of --input are ranked against.
    #[arg(long, required_unless_present = "pairs", requires = "input")]
    query: Option<String>,
    /// The documents, one per line (or jsonl with --input-format).
    #[arg(long, short, value_name = "FILE", conflicts_with = "pairs")]
    input: Option<PathBuf>,
    /// Score each line's pair instead: query TAB document. Writes one line per pair in order:
    /// {"index": i, "score": s} (one label) or {"index": i, "scores": [...], "label": name}.
    #[arg(long, value_name = "FILE.tsv", conflicts_with = "query")]
    pairs: Option<PathBuf>,
    /// Documents written, best first (default: all).
    #[arg(long, value_name = "K")]
    top_k: Option<usize>,
    /// The logits as they are, without the model's activation (sigmoid for one label).
    #[arg(long)]
    raw_scores: bool,
    /// Pairs per forward pass.
    #[arg(long, default_value_t = sbert::DEFAULT_BATCH_SIZE, value_name = "N")]
    batch_size: usize,
    /// jsonl: {"corpus_id": i, "score": s} per document, best first; table: score, id, text.
    #[arg(long, value_enum, default_value_t = ListFormat::Jsonl)]
    format: ListFormat,
    /// Where to write (`-`: standard output); a file appears whole or not at all.
    #[arg(long, short, default_value = "-", value_name = "PATH")]
    output: PathBuf,
    /// lines: one document per line; jsonl: one JSON string or object with a "text" field.
    #[arg(long, value_enum, default_value_t = InputFormat::Lines)]
    input_format: InputFormat,
    /// Where to run: cpu, cuda or cuda:N, metal or metal:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(args: &RerankArgs) -> Result<()> {
    if args.top_k == Some(0) {
        bail!("--top-k must be at least 1");
    }
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    // Read and check the inputs before loading the model.
    enum Job {
        Rank(String, Vec<String>),
        Pairs(Vec<String>, Vec<String>),
    }
    let job = match (&args.query, &args.input, &args.pairs) {
        (Some(query), Some(input), None) => {
            if query.trim().is_empty() {
                bail!("--query is empty");
            }
            let docs = io::read_nonempty(input, args.input_format, "document file")?;
            Job::Rank(query.clone(), docs)
        }
        (None, None, Some(pairs)) => {
            let (a, b) = io::read_pairs(pairs)?;
            if a.is_empty() {
                bail!("pair file {} holds no pairs", pairs.display());
            }
            Job::Pairs(a, b)
        }
        _ => bail!("give --query TEXT with --input FILE, or --pairs FILE.tsv"),
    };
    let device =
        sbert::device(&args.device).with_context(|| format!("opening device {}", args.device))?;
    let model = CrossEncoder::load(&args.model, &device)
        .with_context(|| format!("loading cross-encoder {}", args.model))?;
    let options = PredictOptions {
        batch_size: Some(args.batch_size),
        activation: args.raw_scores.then_some(Activation::Identity),
    };
    let mut out = io::Output::create(&args.output)?;
    let w = out.writer();
    match job {
        Job::Rank(query, docs) => {
            let ranked = model.rank_with(&query, &docs, args.top_k, &options)?;
            for r in &ranked {
                match args.format {
                    ListFormat::Jsonl => {
                        writeln!(w, "{}", json!({"corpus_id": r.corpus_id, "score": r.score}))?
                    }
                    ListFormat::Table => writeln!(
                        w,
                        "{:.4}  [{}] {}",
                        r.score,
                        r.corpus_id,
                        docs[r.corpus_id].replace(['\n', '\r', '\t'], " ")
                    )?,
                }
            }
        }
        Job::Pairs(a, b) => {
            let pairs: Vec<(&str, &str)> = a
                .iter()
                .map(String::as_str)
                .zip(b.iter().map(String::as_str))
                .collect();
            let scores = model.predict_with(&pairs, &options)?;
            for (i, row) in scores.rows().enumerate() {
                let line = if row.len() == 1 {
                    json!({"index": i, "score": row[0]})
                } else {
                    let best = (0..row.len())
                        .max_by(|&x, &y| row[x].total_cmp(&row[y]))
                        .unwrap_or(0);
                    json!({"index": i, "scores": row, "label": model.labels()[best]})
                };
                match args.format {
                    ListFormat::Jsonl => writeln!(w, "{line}")?,
                    ListFormat::Table => writeln!(
                        w,
                        "{}  {} | {}",
                        row.iter()
                            .map(|s| format!("{s:.4}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                        pairs[i].0.replace(['\n', '\r', '\t'], " "),
                        pairs[i].1.replace(['\n', '\r', '\t'], " ")
                    )?,
                }
            }
        }
    }
    out.finish()
}
