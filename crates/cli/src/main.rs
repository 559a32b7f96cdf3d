//! `sbert`: sentence embeddings from the command line.

mod alloc;
mod apps;
mod bench;
mod eval;
mod index;
mod io;
mod rerank;
mod serve;
mod train;

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use sbert::{Pooling, Quantization, SentenceEmbedder};

use crate::io::{InputFormat, OutputFormat};

/// The model `sbert` uses when `--model` is not given (install it with `models/fetch.sh`).
const DEFAULT_MODEL: &str = "models/all-MiniLM-L6-v2";

/// SBERT sentence embeddings: encode texts with a sentence-transformers model, compare them.
///
/// Models are sentence-transformers folders (modules.json, config.json, model.safetensors,
/// tokenizer.json, 1_Pooling/config.json) or Hugging Face hub ids (owner/name) already in the
/// local hub cache ($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub). The output matches
/// Python sentence-transformers' `encode` to 1e-4.
#[derive(Debug, Parser)]
#[command(name = "sbert", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Embed texts: one embedding per input text, in input order.
    ///
    /// Example: printf 'A man eats.\nA dog runs.\n' | sbert embed > embeddings.jsonl
    Embed(EmbedArgs),
    /// Similarity of two texts, or of every pair in a TSV file, by the model's own function
    /// (`similarity_fn_name` of config_sentence_transformers.json: cosine unless the model
    /// names dot, euclidean or manhattan), as sentence-transformers' `model.similarity`.
    ///
    /// Example: sbert similarity "A man is eating food." "A man eats pasta."
    Similarity(SimilarityArgs),
    /// Evaluate a model: STS correlations (Table 1 of the SBERT paper), pooling comparisons,
    /// retrieval, SentEval transfer tasks (Table 5).
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// Measure speed: corpus throughput (median of several runs), achieved GFLOP/s against a
    /// measured sgemm peak, padding overhead, one-sentence latency (p50/p90) and peak RSS.
    ///
    /// Example: sbert bench --threads 2 --format json
    Bench(bench::BenchArgs),
    /// Fine-tune a model with sentence-transformers' losses (cosine, cosent, angle, softmax,
    /// mnrl and its symmetric and cached variants, triplet, contrastive, online-contrastive,
    /// mse distillation), optionally Matryoshka, evaluating on a dev set (STS, NLI, retrieval,
    /// triplets, binary pairs) and keeping the best checkpoint. Saves a sentence-transformers
    /// folder that `sbert embed` and Python load; --resume continues a run.
    ///
    /// Example: sbert train --loss cosine --train ../shared/data/stsb/train.tsv
    ///   --dev ../shared/data/stsb/dev.tsv --output models/minilm-stsb
    Train(train::TrainArgs),
    /// Mine hard negatives for (anchor, positive) pairs: for each anchor, the corpus texts most
    /// similar to it that are not its positives (sentence-transformers' mine_hard_negatives),
    /// written as (anchor, positive, negative) triplets for `sbert train --loss mnrl` or
    /// `--loss triplet`.
    ///
    /// Example: sbert mine-negatives --input pairs.tsv --num-negatives 3 --range-min 10
    ///   --margin 0.05 --output triplets.tsv
    MineNegatives(train::MineArgs),
    /// Serve embeddings over HTTP: text-embeddings-inference routes (/embed, /similarity,
    /// /tokenize, /info, /health, /metrics) and OpenAI's /v1/embeddings, with requests from
    /// all clients batched together under a token budget. Every resource a client can hold is
    /// bounded (connections, header / body / write time, request time, body size, batch,
    /// concurrency: the options below). Ctrl-C or SIGTERM stops accepting, answers every
    /// accepted request (for at most --drain-timeout), and exits 0.
    ///
    /// Example: sbert serve --port 8080, then
    ///   curl localhost:8080/embed -H 'content-type: application/json' -d '{"inputs": "Hello"}'
    Serve(serve::ServeArgs),
    /// Semantic search: the top-k corpus texts for each query, by cosine (exact, in blocks).
    ///
    /// Example: sbert search --corpus docs.txt --queries questions.txt --top-k 5 --format table
    Search(apps::SearchArgs),
    /// Paraphrase mining: the most similar pairs of texts in a file, best first (as
    /// sentence-transformers' paraphrase_mining).
    ///
    /// Example: sbert mine --input sentences.txt --max-pairs 100 --format table
    Mine(apps::MineArgs),
    /// Community detection: groups of texts within a cosine threshold of a central text,
    /// largest first (as sentence-transformers' community_detection).
    ///
    /// Example: sbert cluster --input questions.txt --threshold 0.8 --min-size 5
    Cluster(apps::ClusterArgs),
    /// Semantic de-duplication, greedy in input order: a text is dropped when its cosine to an
    /// already kept text reaches the threshold.
    ///
    /// Example: sbert dedup --input suggestions.txt --threshold 0.9 > unique.txt
    Dedup(apps::DedupArgs),
    /// Rerank documents against a query with a cross-encoder (a query and a document read
    /// together: slower than embeddings, more exact), or score the pairs of a TSV file.
    ///
    /// Example: sbert rerank --model models/my-reranker --query "how do vaccines work"
    ///   --input passages.txt --top-k 5 --format table
    Rerank(rerank::RerankArgs),
    /// Build an on-disk index of a corpus for `sbert search --index`.
    #[command(subcommand)]
    Index(index::IndexCommand),
}

/// Which model to load and how to run it.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model folder, or Hugging Face hub id (owner/name[@revision]) found in the local hub cache.
    #[arg(long, short, env = "SBERT_MODEL", default_value = DEFAULT_MODEL)]
    pub model: String,
    /// Do not L2-normalize the embeddings, even when modules.json lists Normalize.
    #[arg(long)]
    no_normalize: bool,
    /// Texts per forward pass (sentence-transformers' default is 32).
    #[arg(long, default_value_t = sbert::DEFAULT_BATCH_SIZE, value_name = "N")]
    batch_size: usize,
    /// Where to run: cpu, cuda or cuda:N (build with --features cuda), metal or metal:N
    /// (--features metal).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Floating-point type of the weights and activations: f32, or f16 / bf16 (on a GPU, about
    /// twice f32's speed, embeddings close to f32's but not equal: `sbert bench --dtype f16`
    /// reports their cosine to f32). The CPU's fast path is f32 only.
    #[arg(long, default_value = "f32", value_parser = named_values::<sbert::DType, 3>([
        sbert::DType::F32.as_str(),
        sbert::DType::F16.as_str(),
        sbert::DType::BF16.as_str(),
    ]))]
    pub dtype: sbert::DType,
    /// CPU threads for the matrix products (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Put the model's prompt NAME (from config_sentence_transformers.json, e.g. query or
    /// document) before every text, as sentence-transformers' encode(prompt_name=…). Default: the
    /// model's default_prompt_name, if it sets one.
    #[arg(long, value_name = "NAME", conflicts_with = "prompt")]
    prompt_name: Option<String>,
    /// Put TEXT before every text, as sentence-transformers' encode(prompt=…); "" turns the
    /// model's default prompt off. Where the model's pooling excludes prompts (include_prompt
    /// false), pooling starts after it.
    #[arg(long, value_name = "TEXT")]
    prompt: Option<String>,
    /// int8: multiply by int8 weights (quantized per output channel at load) and int8
    /// activations (per row), accumulating in int32, on the CPU; attention, LayerNorm and
    /// pooling stay f32. Faster, with embeddings close to f32's but not equal (`sbert bench
    /// --quantize int8` reports their cosine to f32). BERT-family models (BERT, RoBERTa,
    /// XLM-R, DistilBERT, MPNet).
    #[arg(long, default_value = "none", value_parser = named_values::<Quantization, 2>([
        Quantization::None.as_str(),
        Quantization::Int8.as_str(),
    ]))]
    pub quantize: Quantization,
}

/// A parser that accepts exactly `names` (listed in `--help`) and parses the chosen one with
/// `T`'s own `FromStr`: `--quantize` and `--dtype`.
fn named_values<T, const N: usize>(
    names: [&'static str; N],
) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Display,
{
    use clap::builder::{PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(names).try_map(|name| {
        name.parse::<T>()
            .map_err(|e| clap::Error::raw(clap::error::ErrorKind::InvalidValue, e))
    })
}

impl ModelArgs {
    /// Loads the model, with `pooling` replacing the folder's when given.
    fn load(&self, pooling: Option<&Pooling>) -> Result<SentenceEmbedder> {
        self.load_with(pooling, None, None)
    }

    /// [`ModelArgs::load`], batching under a token budget when `max_batch_tokens` is set and
    /// truncating at `max_seq_length` when set.
    fn load_with(
        &self,
        pooling: Option<&Pooling>,
        max_batch_tokens: Option<usize>,
        max_seq_length: Option<usize>,
    ) -> Result<SentenceEmbedder> {
        let device = sbert::device(&self.device)
            .with_context(|| format!("opening device {}", self.device))?;
        let mut builder = SentenceEmbedder::builder(&self.model)
            .device(device)
            .dtype(self.dtype)
            .batch_size(self.batch_size)
            .max_batch_tokens(max_batch_tokens);
        if let Some(n) = self.threads {
            if n == 0 {
                bail!("--threads must be at least 1");
            }
            builder = builder.threads(n);
        }
        if let Some(p) = pooling {
            builder = builder.pooling(p.clone());
        }
        if self.no_normalize {
            builder = builder.normalize(false);
        }
        if let Some(n) = max_seq_length {
            builder = builder.max_seq_length(n);
        }
        if let Some(name) = &self.prompt_name {
            builder = builder.prompt_name(name);
        }
        if let Some(text) = &self.prompt {
            builder = builder.prompt(text);
        }
        builder = builder.quantize(self.quantize);
        let model = builder.build().with_context(|| {
            if self.model == DEFAULT_MODEL {
                format!("loading the default model {DEFAULT_MODEL} (install it with models/fetch.sh, or pass --model)")
            } else {
                format!("loading model {}", self.model)
            }
        })?;
        // After loading, not before: loading replaces the weight tensors by their packed copy
        // layer by layer, and only while freed blocks go back to the system does the peak stay
        // at the weights once.
        alloc::keep_freed_memory();
        Ok(model)
    }
}

#[derive(Debug, Args)]
struct PoolingArg {
    /// Pooling instead of the model's 1_Pooling/config.json: one mode or several joined by
    /// commas (concatenated), from cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken.
    #[arg(long, value_name = "MODE[,MODE…]")]
    pooling: Option<Pooling>,
}

#[derive(Debug, Args)]
struct EmbedArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    pooling: PoolingArg,
    /// Input file, or - for standard input.
    #[arg(long, short, default_value = "-", value_name = "PATH|-")]
    input: PathBuf,
    /// lines: one text per line (an empty line is the empty text); jsonl: one JSON string, or
    /// object with a "text" field, per line (texts may then hold newlines; blank lines at the
    /// end are ignored). Both accept a UTF-8 byte-order mark and CRLF line ends.
    #[arg(long, value_enum, default_value_t = InputFormat::Lines)]
    input_format: InputFormat,
    /// Output file, or - for standard output. A regular file is written atomically (a
    /// temporary beside it, renamed into place when complete, keeping the old file's
    /// permissions); a symbolic link is written through; a device or FIFO is written directly.
    #[arg(long, short, default_value = "-", value_name = "PATH|-")]
    output: PathBuf,
    /// jsonl: one JSON array of floats per line; npy: a float32 (N, D) NumPy array.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Jsonl)]
    format: OutputFormat,
    /// Report per text the token count and truncation on standard error.
    #[arg(long)]
    verbose: bool,
    /// Keep only the first N dimensions of each embedding (a Matryoshka-trained model's
    /// prefix), as sentence-transformers' `truncate_dim`; normalized again when the model
    /// normalizes.
    #[arg(long, value_name = "N")]
    truncate_dim: Option<usize>,
}

#[derive(Debug, Args)]
struct SimilarityArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    pooling: PoolingArg,
    /// A TSV file of pairs (text a <TAB> text b per line); prints one cosine per line.
    #[arg(long, value_name = "FILE.tsv", conflicts_with = "texts")]
    pairs: Option<PathBuf>,
    /// The two texts to compare.
    #[arg(num_args = 2, value_names = ["TEXT_A", "TEXT_B"], required_unless_present = "pairs")]
    texts: Vec<String>,
}

/// Texts per call into the library: bounds memory on large inputs while keeping batches full.
const CHUNK: usize = 4096;

/// Refuses a `--top-k` of 0; one above the corpus size is capped at it (as
/// sentence-transformers' `semantic_search` does).
pub fn check_top_k(top_k: usize, corpus: usize) -> Result<()> {
    if top_k == 0 {
        bail!("--top-k {top_k} must be at least 1 (the corpus has {corpus} texts)");
    }
    Ok(())
}

/// Texts per progress step of [`embed_all`].
const PROGRESS_CHUNK: usize = 2048;

/// Embeds `texts` with a progress bar on standard error (for more than one chunk, unless
/// `quiet`): row-major `(n, dim)`. What `search`, `mine`, `cluster`, `dedup` and `index build`
/// embed with.
pub fn embed_all(
    model: &SentenceEmbedder,
    texts: &[String],
    quiet: bool,
    what: &str,
) -> Result<Vec<f32>> {
    let bar = if quiet || texts.len() <= PROGRESS_CHUNK {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(texts.len() as u64).with_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} texts ({per_sec}, eta {eta})",
            )
            .expect("static template")
            .progress_chars("=> "),
        )
    };
    bar.set_message(format!("embedding {what}"));
    let mut out = Vec::with_capacity(texts.len() * model.dim());
    for chunk in texts.chunks(PROGRESS_CHUNK) {
        out.extend_from_slice(model.embed(chunk)?.as_slice());
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

fn embed(args: &EmbedArgs) -> Result<()> {
    // Read and check the whole input before loading the model or creating the output.
    let texts = io::read_texts(&args.input, args.input_format)?;
    match sbert::ModelKind::of(&args.model.model) {
        Ok(sbert::ModelKind::Sparse) => return embed_sparse(args, &texts),
        Ok(sbert::ModelKind::CrossEncoder) => bail!(
            "{} is a cross-encoder: it scores pairs of texts (sbert rerank), it does not embed one",
            args.model.model
        ),
        _ => {}
    }
    let model = args.model.load(args.pooling.pooling.as_ref())?;
    let mut options = sbert::EncodeOptions::default();
    if let Some(d) = args.truncate_dim {
        if d == 0 || d > model.dim() {
            bail!(
                "--truncate-dim {d} must be between 1 and the model's dimension {}",
                model.dim()
            );
        }
        options = options.truncate_dim(d);
    }
    let dim = args.truncate_dim.unwrap_or(model.dim());
    let mut out = io::Output::create(&args.output)?;
    if args.format == OutputFormat::Npy {
        out.writer().write_all(&io::npy_header(texts.len(), dim))?;
    }
    for (c, chunk) in texts.chunks(CHUNK).enumerate() {
        let encoded = model.encode(chunk, &options).map_err(|e| match e {
            // The library counts within the chunk; the user counts lines of the input.
            sbert::Error::NonFiniteEmbedding { index } => anyhow::anyhow!(
                "the embedding of text {} of the input (1-based) is not finite: the model \
                 overflowed on it",
                c * CHUNK + index + 1
            ),
            other => other.into(),
        })?;
        io::write_rows(out.writer(), &encoded, args.format)?;
        if args.verbose {
            for (i, s) in encoded.inputs().iter().enumerate() {
                let flag = if s.truncated { " (truncated)" } else { "" };
                eprintln!("text {}: {} tokens{flag}", c * CHUNK + i + 1, s.tokens);
            }
        } else {
            let truncated = encoded.inputs().iter().filter(|s| s.truncated).count();
            if truncated > 0 {
                eprintln!(
                    "note: {truncated} text(s) longer than {} tokens were truncated (--verbose lists them)",
                    model.max_seq_length()
                );
            }
        }
    }
    out.finish()
}

/// `sbert embed` on a sparse (SPLADE) model: one `{"indices": [...], "values": [...]}` line
/// per text (the nonzero vocabulary dimensions, ascending, and their weights).
fn embed_sparse(args: &EmbedArgs, texts: &[String]) -> Result<()> {
    if args.format == OutputFormat::Npy {
        bail!(
            "{} is a sparse encoder: its embeddings are written as jsonl {{\"indices\", \"values\"}} \
             lines (a dense .npy would hold 30,522 mostly-zero columns per text); drop --format npy",
            args.model.model
        );
    }
    if args.pooling.pooling.is_some() {
        bail!("--pooling does not apply to a sparse encoder (its pooling is SPLADE's max of relu)");
    }
    let device = sbert::device(&args.model.device)
        .with_context(|| format!("opening device {}", args.model.device))?;
    let model = sbert::SparseEncoder::load(&args.model.model, &device)
        .with_context(|| format!("loading sparse encoder {}", args.model.model))?
        .with_batch_size(args.model.batch_size)?;
    let mut out = io::Output::create(&args.output)?;
    for (c, chunk) in texts.chunks(CHUNK).enumerate() {
        let encoded = model.encode(chunk).map_err(|e| match e {
            sbert::Error::NonFiniteEmbedding { index } => anyhow::anyhow!(
                "the embedding of text {} of the input (1-based) is not finite",
                c * CHUNK + index + 1
            ),
            other => other.into(),
        })?;
        for e in &encoded {
            writeln!(
                out.writer(),
                "{}",
                serde_json::json!({"indices": e.indices, "values": e.values})
            )?;
        }
    }
    out.finish()
}

fn similarity(args: &SimilarityArgs) -> Result<()> {
    let (a, b): (Vec<String>, Vec<String>) = match &args.pairs {
        Some(path) => io::read_pairs(path)?,
        None => (vec![args.texts[0].clone()], vec![args.texts[1].clone()]),
    };
    let model = args.model.load(args.pooling.pooling.as_ref())?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (ca, cb) in a.chunks(CHUNK).zip(b.chunks(CHUNK)) {
        let (ea, eb) = (model.embed(ca)?, model.embed(cb)?);
        for s in model.similarity_pairwise(&ea, &eb)? {
            writeln!(out, "{s:.6}")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// On Ctrl-C, SIGTERM or SIGHUP: remove the temporaries of unfinished outputs (the targets stay
/// as they were), then exit with 128 + the signal number, as a shell reports it.
fn remove_temporaries_on_signals() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            sbert_io::output::remove_temporaries();
            std::process::exit(128 + signal);
        }
    });
}

/// Logs and spans (`tracing`) to standard error, filtered by `RUST_LOG` (`sbert=debug`: the
/// pipeline's encode / tokenize / batch spans; `sbert_server=info`: one line per request);
/// warnings only by default.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .try_init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    if !matches!(cli.command, Command::Serve(_)) {
        // The server handles its own signals: they stop it gracefully.
        remove_temporaries_on_signals();
    }
    let result = match &cli.command {
        Command::Embed(args) => embed(args),
        Command::Similarity(args) => similarity(args),
        Command::Eval(cmd) => eval::run_command(cmd),
        Command::Bench(args) => bench::run(args),
        Command::Train(args) => train::run(args),
        Command::MineNegatives(args) => train::mine(args),
        Command::Serve(args) => serve::run(args),
        Command::Search(args) => apps::search(args),
        Command::Mine(args) => apps::mine(args),
        Command::Cluster(args) => apps::cluster(args),
        Command::Dedup(args) => apps::dedup(args),
        Command::Rerank(args) => rerank::run(args),
        Command::Index(cmd) => index::run_command(cmd),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
