//! `sbert bench`: corpus throughput, FLOP-bound fraction, latency and memory.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use sbert::{DType, Device, Quantization, SentenceEmbedder, Tensor};
use serde::Serialize;

use crate::io::{self, InputFormat};
use crate::ModelArgs;

/// The default corpus: both sentences of every STSb test pair (2,758 sentences).
const DEFAULT_CORPUS: &str = "../shared/data/stsb/test.tsv";

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Corpus, one sentence per line. Default: the 2,758 sentences of ../shared/data/stsb/test.tsv
    /// (a .tsv file is read as STS pairs: both sentence columns).
    #[arg(long, short, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Batches formed under this many padded tokens instead of --batch-size texts.
    #[arg(long, value_name = "N")]
    max_batch_tokens: Option<usize>,
    /// Synthetic inputs of exactly N tokens (corpus sentences joined, then truncated at N), for
    /// the cost curve over sequence lengths.
    #[arg(long, value_name = "N")]
    seq_len: Option<usize>,
    /// Use only the first N texts of the corpus.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Timed passes over the corpus (after one warm-up pass); the median is reported.
    #[arg(long, default_value_t = 5, value_name = "N")]
    runs: usize,
    /// One-sentence calls timed for the latency percentiles.
    #[arg(long, default_value_t = 200, value_name = "N")]
    latency_calls: usize,
    /// The sentence of the latency measurement.
    #[arg(long, default_value = "A man is playing a guitar.")]
    latency_text: String,
    /// table: readable summary; json: one object (sentences_per_s, tokens_per_s, p50_ms, p90_ms,
    /// peak_rss_mib, gflops, bound_fraction, …).
    #[arg(long, value_enum, default_value_t = BenchFormat::Table)]
    format: BenchFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchFormat {
    Table,
    Json,
}

#[derive(Debug, Serialize)]
struct BenchReport {
    model: String,
    threads: usize,
    sentences: usize,
    tokens: usize,
    padded_tokens: usize,
    padding_overhead: f64,
    batch_size: usize,
    max_batch_tokens: Option<usize>,
    runs: Vec<f64>,
    sentences_per_s: f64,
    sentences_per_s_min: f64,
    sentences_per_s_max: f64,
    tokens_per_s: f64,
    corpus_gflop: f64,
    gflops: f64,
    sgemm_peak_gflops: f64,
    bound_sentences_per_s: f64,
    bound_fraction: f64,
    p50_ms: f64,
    p90_ms: f64,
    peak_rss_mib: Option<f64>,
    /// `none` or `int8`.
    quantization: String,
    /// `f32`, `f16` or `bf16`.
    dtype: String,
    /// With int8, f16 or bf16: the cosine of each corpus embedding to the f32 model's, smallest
    /// and mean.
    cosine_to_f32_min: Option<f64>,
    cosine_to_f32_mean: Option<f64>,
}

/// Best fp32 matmul GFLOP/s of candle on this machine: square products of 1024 and 2048.
fn sgemm_peak() -> Result<f64> {
    let mut best: f64 = 0.0;
    for n in [1024usize, 2048] {
        let a = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
        let b = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
        a.matmul(&b)?; // warm-up
        for _ in 0..3 {
            let t = Instant::now();
            let c = a.matmul(&b)?;
            let dt = t.elapsed().as_secs_f64();
            drop(c);
            best = best.max(2.0 * (n as f64).powi(3) / dt / 1e9);
        }
    }
    Ok(best)
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The cosine of each row of `quantized` to the same text's embedding by the f32 model, loaded
/// as the bench loads the quantized one (smallest, mean).
fn cosine_to_f32(
    args: &BenchArgs,
    corpus: &[String],
    reduced: &sbert::Embeddings,
) -> Result<(f64, f64)> {
    let mut f32_args = args.model.clone();
    f32_args.quantize = Quantization::None;
    f32_args.dtype = DType::F32;
    let reference = f32_args
        .load_with(None, args.max_batch_tokens, args.seq_len)?
        .embed(corpus)?;
    let cosines: Vec<f32> = reduced
        .rows()
        .zip(reference.rows())
        .map(|(a, b)| sbert::cosine(a, b))
        .collect();
    let min = cosines.iter().copied().fold(f32::INFINITY, f32::min);
    let mean = cosines.iter().map(|&c| f64::from(c)).sum::<f64>() / cosines.len() as f64;
    Ok((f64::from(min), mean))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx]
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

fn read_corpus(path: Option<&PathBuf>) -> Result<Vec<String>> {
    let path = path
        .cloned()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CORPUS));
    if path.extension().is_some_and(|e| e == "tsv") {
        let ds = sbert_eval::StsDataset::read(&path, None)?;
        return Ok(ds
            .pairs
            .into_iter()
            .flat_map(|p| [p.sentence1, p.sentence2])
            .collect());
    }
    io::read_texts(&path, InputFormat::Lines)
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if args.runs == 0 || args.latency_calls == 0 {
        bail!("--runs and --latency-calls must be at least 1");
    }
    let mut corpus = read_corpus(args.input.as_ref())?;
    if corpus.is_empty() {
        bail!("the corpus is empty");
    }
    if let Some(n) = args.seq_len {
        if n < 3 {
            bail!("--seq-len must be at least 3");
        }
        // About one token per 4 characters: join enough following sentences to exceed n tokens.
        let joined: Vec<String> = (0..corpus.len())
            .map(|i| {
                let mut text = String::new();
                let mut j = i;
                while text.len() < n * 8 {
                    text.push_str(&corpus[j % corpus.len()]);
                    text.push(' ');
                    j += 1;
                }
                text
            })
            .collect();
        corpus = joined;
    }
    if let Some(limit) = args.limit {
        corpus.truncate(limit.max(1));
    }
    let model: SentenceEmbedder =
        args.model
            .load_with(None, args.max_batch_tokens, args.seq_len)?;
    let threads = model.threads();

    let tokenized = model.tokenize(&corpus, sbert::Prompt::Default)?;
    let lengths: Vec<usize> = tokenized.iter().map(|t| t.ids.len()).collect();
    let tokens: usize = lengths.iter().sum();
    let padded_tokens: usize = model
        .plan_batches(&lengths)
        .iter()
        .map(|b| b.len() * lengths[b[0]])
        .sum();
    // The peers' script counts FLOPs the same way (EncoderModel::flops).
    let encoder = model.encoder();
    let corpus_flops: f64 = lengths.iter().map(|&l| encoder.flops(l)).sum();

    eprintln!(
        "corpus: {} sentences, {tokens} tokens (avg {:.1}); {threads} threads",
        corpus.len(),
        tokens as f64 / corpus.len() as f64
    );
    model.embed(&corpus)?; // warm-up
    let mut runs = Vec::with_capacity(args.runs);
    for r in 0..args.runs {
        let t = Instant::now();
        model.embed(&corpus)?; // rows on the host: the device has finished
        let rate = corpus.len() as f64 / t.elapsed().as_secs_f64();
        eprintln!("run {}: {rate:.1} sentences/s", r + 1);
        runs.push(rate);
    }
    let rate = median(&runs);
    let seconds = corpus.len() as f64 / rate;
    // Embeddings of a reduced precision (int8 products, f16 or bf16) are compared with f32's.
    let reduced = (args.model.quantize != Quantization::None || args.model.dtype != DType::F32)
        .then(|| model.embed(&corpus))
        .transpose()?;

    let text = [args.latency_text.as_str()];
    model.embed(&text)?;
    let mut lat = Vec::with_capacity(args.latency_calls);
    for _ in 0..args.latency_calls {
        let t = Instant::now();
        model.embed(&text)?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);

    // Read before the sgemm measurement, whose 2048² matrices would count otherwise.
    let peak_rss = peak_rss_mib();
    let cosines = match reduced {
        Some(reduced) => Some(cosine_to_f32(args, &corpus, &reduced)?),
        None => None,
    };
    let peak = model
        .install(sgemm_peak)
        .context("measuring the sgemm peak")?;
    let gflops = corpus_flops / seconds / 1e9;
    let report = BenchReport {
        model: args.model.model.clone(),
        threads,
        sentences: corpus.len(),
        tokens,
        padded_tokens,
        padding_overhead: padded_tokens as f64 / tokens as f64 - 1.0,
        batch_size: model.batch_size(),
        max_batch_tokens: args.max_batch_tokens,
        sentences_per_s: rate,
        sentences_per_s_min: runs.iter().copied().fold(f64::INFINITY, f64::min),
        sentences_per_s_max: runs.iter().copied().fold(0.0, f64::max),
        runs,
        tokens_per_s: tokens as f64 / seconds,
        corpus_gflop: corpus_flops / 1e9,
        gflops,
        sgemm_peak_gflops: peak,
        bound_sentences_per_s: corpus.len() as f64 / (corpus_flops / (peak * 1e9)),
        bound_fraction: gflops / peak,
        p50_ms: percentile(&lat, 0.5),
        p90_ms: percentile(&lat, 0.9),
        peak_rss_mib: peak_rss,
        quantization: args.model.quantize.to_string(),
        dtype: args.model.dtype.as_str().to_string(),
        cosine_to_f32_min: cosines.map(|c| c.0),
        cosine_to_f32_mean: cosines.map(|c| c.1),
    };
    match args.format {
        BenchFormat::Json => println!("{}", serde_json::to_string(&report)?),
        BenchFormat::Table => {
            let r = &report;
            println!("model            {}", r.model);
            println!("threads          {}", r.threads);
            println!(
                "corpus           {} sentences, {} tokens, padding overhead {:.1} %",
                r.sentences,
                r.tokens,
                100.0 * r.padding_overhead
            );
            println!(
                "throughput       {:.1} sentences/s (min {:.1}, max {:.1} over {} runs), {:.0} tokens/s",
                r.sentences_per_s,
                r.sentences_per_s_min,
                r.sentences_per_s_max,
                r.runs.len(),
                r.tokens_per_s
            );
            println!(
                "compute          {:.1} GFLOP/s of a {:.1} GFLOP/s sgemm peak = {:.1} % of the bound ({:.0} sentences/s)",
                r.gflops,
                r.sgemm_peak_gflops,
                100.0 * r.bound_fraction,
                r.bound_sentences_per_s
            );
            println!(
                "latency (1 text) p50 {:.2} ms, p90 {:.2} ms",
                r.p50_ms, r.p90_ms
            );
            if let Some(rss) = r.peak_rss_mib {
                println!("peak RSS         {rss:.1} MiB");
            }
            if let (Some(min), Some(mean)) = (r.cosine_to_f32_min, r.cosine_to_f32_mean) {
                let precision = if r.quantization == "none" {
                    &r.dtype
                } else {
                    &r.quantization
                };
                println!("{precision:<4} vs f32      cosine min {min:.5}, mean {mean:.5}");
            }
        }
    }
    Ok(())
}
