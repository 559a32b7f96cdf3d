//! `sbert eval`: STS tables (the SBERT paper's Table 1) and pooling comparisons (Table 6).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use sbert::{Pooling, PoolingMode};
use sbert_eval::report::{self, TableStyle};
use sbert_eval::{evaluate, read_sets, StsDataset, StsReport, POOLING_SETS, SUITE};

use crate::ModelArgs;

/// Where `--suite` and `eval pooling` look for data by default: `shared/data` beside the repo.
const DEFAULT_DATA: &str = "../shared/data";
/// Where `eval senteval` looks for SentEval's data by default.
const DEFAULT_SENTEVAL: &str = "../shared/data/senteval";

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Spearman and Pearson ×100 between similarity and gold scores on STS files.
    ///
    /// With --data: a row per (file, pooling). With --suite: the SBERT paper's Table 1 layout,
    /// a row per model × pooling, a column per set (STS12–16, STSb, SICK-R) and the average.
    ///
    /// Example: sbert eval sts --data ../shared/data/stsb/test.tsv --pooling mean,max,cls
    Sts(StsArgs),
    /// Compare pooling strategies on STSb dev/test and SICK-R (the SBERT paper's Table 6).
    ///
    /// Every distinct sentence is encoded once and pooled every way.
    ///
    /// Example: sbert eval pooling --chart pooling.svg
    Pooling(PoolingArgs),
    /// Retrieval on NLI entailment pairs: each premise must find its own hypotheses among all
    /// hypotheses (recall@1, recall@10, MRR@10, nDCG@10, ×100).
    ///
    /// Example: sbert eval retrieval --data ../shared/data/nli/train.tsv
    ///   --rows ../shared/fixtures/train/orders/nli_heldout_idx.txt
    Retrieval(RetrievalArgs),
    /// SentEval transfer tasks (the SBERT paper's Table 5): logistic regression on frozen
    /// embeddings, scored by SentEval's protocol (nested 10-fold CV for MR/CR/SUBJ/MPQA,
    /// k-fold then test for TREC/MRPC, dev-selected for SST-2).
    ///
    /// Every distinct sentence is encoded once. The time of each task's classifier is printed
    /// to stderr as it finishes.
    ///
    /// Example: sbert eval senteval --tasks MR,CR,TREC --format markdown --chart senteval.svg
    Senteval(SentEvalArgs),
}

#[derive(Debug, Args)]
pub struct SentEvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// SentEval's data/downstream folder (MR/, CR/, SUBJ/, MPQA/, SST/binary/, TREC/, MRPC/).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_SENTEVAL)]
    data: PathBuf,
    /// Tasks to run, comma-separated: MR, CR, SUBJ, MPQA, SST2, TREC, MRPC.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "MR,CR,SUBJ,MPQA,SST2,TREC,MRPC"
    )]
    tasks: Vec<String>,
    /// Folds of every cross-validation (SentEval's kfold).
    #[arg(long, default_value_t = 10)]
    folds: usize,
    /// Seed of the stratified fold shuffles (SentEval's 1111).
    #[arg(long, default_value_t = 1111)]
    seed: u32,
    /// L-BFGS iterations per logistic regression at most. The default lets every fit
    /// converge; 100 is scikit-learn's default, which stops some fits early.
    #[arg(long, default_value_t = 1000)]
    max_iter: usize,
    // table: the per-task results; markdown: Table 5 beside the paper's rows, then the
    // per-task results; --chart draws the accuracies beside some of the paper's rows.
    #[command(flatten)]
    output: ReportArgs,
}

#[derive(Debug, Args)]
pub struct RetrievalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// NLI file (premise, hypothesis, label); its entailment rows form the task.
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Use only these data rows (one 0-based index per line, in this order).
    #[arg(long, value_name = "FILE")]
    rows: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Store the corpus at this precision (float32, int8, uint8, binary, ubinary; int8/uint8
    /// calibrated on the corpus) and search it exactly, as sentence-transformers'
    /// quantized semantic search.
    #[arg(long, default_value = "float32", value_parser = ["float32", "int8", "uint8", "binary", "ubinary"])]
    precision: String,
    /// Candidates per hit re-ranked with the float query (0: no rescoring).
    #[arg(long, default_value_t = 2, value_name = "M")]
    rescore_multiplier: usize,
    /// Keep only the first N dimensions (Matryoshka truncation), then renormalize.
    #[arg(long, value_name = "N")]
    truncate_dim: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Aligned columns.
    Table,
    /// GitHub Markdown.
    Markdown,
    /// One JSON object per line: per (dataset, pooling) for STS, per task for SentEval.
    Json,
}

#[derive(Debug, Args)]
pub struct StsArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// An STS file: TSV with a header (score, sentence1, sentence2) or the original STS
    /// Benchmark sts-*.csv. Repeat for several.
    #[arg(long, value_name = "FILE", required_unless_present = "suite")]
    data: Vec<PathBuf>,
    /// Run every STS set found in DIR (sts12…sts16, stsb, sick; their test.tsv).
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = DEFAULT_DATA, conflicts_with = "data")]
    suite: Option<PathBuf>,
    /// Poolings to compare, comma-separated: mean, max, cls, mean_sqrt_len_tokens,
    /// weightedmean, lasttoken, or all (the six). Join modes with + to concatenate them
    /// (mean+max). Default: the model's own pooling.
    #[arg(long, value_name = "SPEC")]
    pooling: Option<String>,
    /// Score the embeddings cut to their first N dimensions (a Matryoshka-trained model's
    /// prefix), as sentence-transformers' `truncate_dim`.
    #[arg(long, value_name = "N")]
    truncate_dim: Option<usize>,
    #[command(flatten)]
    output: ReportArgs,
}

#[derive(Debug, Args)]
pub struct PoolingArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Folder holding stsb/dev.tsv, stsb/test.tsv and sick/test.tsv.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA)]
    data_dir: PathBuf,
    /// Poolings to compare (as for `eval sts`). Default: all six modes.
    #[arg(long, value_name = "SPEC", default_value = "all")]
    pooling: String,
    #[command(flatten)]
    output: ReportArgs,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// How to print the results.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    format: ReportFormat,
    /// Also write the scores as a grouped bar chart (SVG) to PATH.
    #[arg(long, value_name = "PATH.svg")]
    chart: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Parses `mean,max`, `all`, `mean+max,cls` into the poolings to compare.
pub fn parse_pooling_spec(spec: &str) -> Result<Vec<Pooling>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part.eq_ignore_ascii_case("all") {
            out.extend(PoolingMode::ALL.into_iter().map(Pooling::single));
        } else {
            out.push(part.replace('+', ",").parse::<Pooling>()?);
        }
    }
    if out.is_empty() {
        bail!("--pooling names no pooling");
    }
    out.dedup();
    Ok(out)
}

/// `…/stsb/test.tsv` → `stsb-test`; other files by their stem.
fn dataset_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = path
        .parent()
        .and_then(Path::file_name)
        .map(|s| s.to_string_lossy().into_owned());
    match parent {
        Some(p) if ["train", "dev", "test"].contains(&stem.as_str()) => format!("{p}-{stem}"),
        _ => stem,
    }
}

fn progress_bar(quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} sentences ({per_sec}, eta {eta})",
            )
            .expect("static template")
            .progress_chars("=> "),
        )
    }
}

fn run(
    model: &ModelArgs,
    datasets: &[StsDataset],
    poolings: &[Pooling],
    (quiet, truncate_dim): (bool, Option<usize>),
) -> Result<StsReport> {
    let embedder = model.load(None)?;
    let bar = progress_bar(quiet);
    bar.set_message("encoding");
    let mut progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let report = match truncate_dim {
        Some(d) => {
            let truncated =
                sbert_eval::Truncated::new(&embedder, d, embedder.dim()).map_err(|_| {
                    anyhow::anyhow!(
                        "--truncate-dim {d} must be between 1 and the model's dimension {}",
                        embedder.dim()
                    )
                })?;
            evaluate(&truncated, datasets, poolings, &mut progress)?
        }
        None => evaluate(&embedder, datasets, poolings, &mut progress)?,
    };
    bar.finish_and_clear();
    eprintln!(
        "encoded {} distinct sentences ({} pairs) in {:.1} s: {:.0} sentences/s; total {:.1} s",
        report.sentences,
        datasets.iter().map(|d| d.pairs.len()).sum::<usize>(),
        report.encode_time.as_secs_f64(),
        report.sentences_per_second(),
        report.total_time.as_secs_f64()
    );
    Ok(report)
}

fn print(
    report: &StsReport,
    args: &ReportArgs,
    layout: impl Fn(TableStyle) -> String,
) -> Result<()> {
    match args.format {
        ReportFormat::Table => print!("{}", layout(TableStyle::Plain)),
        ReportFormat::Markdown => print!("{}", layout(TableStyle::Markdown)),
        ReportFormat::Json => {
            for s in &report.scores {
                println!("{}", serde_json::to_string(s)?);
            }
        }
    }
    if let Some(path) = &args.chart {
        let title = "STS Spearman ρ × 100 by pooling";
        sbert_io::output::write_file(
            path,
            report::bar_chart_svg(title, &report.scores).as_bytes(),
        )?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn model_name(model: &ModelArgs) -> String {
    let trimmed = model.model.trim_end_matches('/');
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

fn retrieval(args: &RetrievalArgs) -> Result<()> {
    let rows = sbert_eval::read_nli(&args.data)?;
    let order: Vec<usize> = match &args.rows {
        Some(p) => crate::io::read_indices(p)?,
        None => (0..rows.len()).collect(),
    };
    let mut pairs = Vec::new();
    for i in order {
        let r = rows
            .get(i)
            .with_context(|| format!("row index {i} out of range ({} rows)", rows.len()))?;
        if r.label == sbert_eval::NliLabel::Entailment {
            pairs.push((r.premise.as_str(), r.hypothesis.as_str()));
        }
    }
    let task = sbert_eval::RetrievalTask::from_pairs(pairs);
    let model = args.model.load(None)?;
    let s = if args.precision == "float32" && args.truncate_dim.is_none() {
        sbert_eval::evaluate_retrieval(&model, &task)?
    } else {
        stored_retrieval(&model, &task, args)?
    };
    if args.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        println!(
            "queries {}, corpus {}: recall@1 {:.2}, recall@10 {:.2}, MRR@10 {:.2}, nDCG@10 {:.2}, accuracy@1 {:.2}, accuracy@10 {:.2}",
            s.queries, s.corpus, s.recall_at_1, s.recall_at_10, s.mrr_at_10, s.ndcg_at_10, s.accuracy_at_1, s.accuracy_at_10
        );
    }
    Ok(())
}

fn senteval(args: &SentEvalArgs) -> Result<()> {
    use sbert_senteval::{report as table5, Progress, Task};
    let tasks = args
        .tasks
        .iter()
        .filter(|t| !t.trim().is_empty())
        .map(|t| t.parse::<Task>())
        .collect::<Result<Vec<_>, _>>()?;
    if tasks.is_empty() {
        bail!("--tasks names no task");
    }
    let options = sbert_senteval::Options {
        folds: args.folds,
        seed: args.seed,
        max_iter: args.max_iter,
    };
    let model = args.model.load(None)?;
    let bar = progress_bar(args.output.quiet);
    bar.set_message("encoding");
    let report =
        sbert_senteval::evaluate(&model, &args.data, &tasks, &options, &mut |p| match p {
            Progress::Encoded { done, total } => {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                if done == total {
                    bar.finish_and_clear();
                }
            }
            Progress::Scored(s) => eprintln!(
                "{}: accuracy {:.2} (classifier {:.1} s)",
                s.task, s.accuracy, s.seconds
            ),
        })?;
    let classify: f64 = report.scores.iter().map(|s| s.seconds).sum();
    eprintln!(
        "encoded {} distinct sentences in {:.1} s ({:.0} sentences/s); classifiers {:.1} s; total {:.1} s",
        report.sentences,
        report.encode_time.as_secs_f64(),
        report.sentences as f64 / report.encode_time.as_secs_f64().max(1e-9),
        classify,
        report.total_time.as_secs_f64()
    );
    let name = model_name(&args.model);
    match args.output.format {
        ReportFormat::Table => print!(
            "{}",
            table5::details_table(&report.scores, TableStyle::Plain)
        ),
        ReportFormat::Markdown => {
            print!(
                "{}",
                table5::table5(&name, &report.scores, TableStyle::Markdown)
            );
            println!();
            print!(
                "{}",
                table5::details_table(&report.scores, TableStyle::Markdown)
            );
        }
        ReportFormat::Json => {
            for s in &report.scores {
                println!("{}", serde_json::to_string(s)?);
            }
        }
    }
    if let Some(path) = &args.output.chart {
        sbert_io::output::write_file(path, table5::chart_svg(&name, &report.scores).as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    // The tasks that finished are printed above; the ones that failed make the run fail.
    for f in &report.failures {
        eprintln!("{}: not scored: {}", f.task, f.error);
    }
    if !report.failures.is_empty() {
        bail!(
            "{} of {} tasks could not be scored (the others are printed above)",
            report.failures.len(),
            tasks.len()
        );
    }
    Ok(())
}

/// Retrieval over a truncated and/or quantized corpus: the queries stay float (truncated
/// alike), the corpus is stored at `--precision`, hits come from `search_quantized`.
fn stored_retrieval(
    model: &sbert::SentenceEmbedder,
    task: &sbert_eval::RetrievalTask,
    args: &RetrievalArgs,
) -> Result<sbert_eval::RetrievalScores> {
    use sbert_search::{quantize, search_quantized, Precision, Vectors};
    let dim = args.truncate_dim.unwrap_or(model.dim());
    if dim == 0 || dim > model.dim() {
        bail!("--truncate-dim must be between 1 and {}", model.dim());
    }
    let options = sbert::EncodeOptions::default()
        .truncate_dim(dim)
        .normalize(true);
    let embed =
        |texts: &[String]| -> Result<Vec<f32>> { Ok(model.encode(texts, &options)?.into_vec()) };
    let q = embed(&task.queries)?;
    let c = embed(&task.corpus)?;
    let precision: Precision = args.precision.parse()?;
    let corpus = quantize(&Vectors::new(&c, dim)?, precision, None)?;
    let rescore = (args.rescore_multiplier > 0).then_some(args.rescore_multiplier);
    let top = 10.min(task.corpus.len());
    let hits = search_quantized(&Vectors::new(&q, dim)?, &corpus, top, rescore)?;
    let rankings: Vec<Vec<usize>> = hits
        .iter()
        .map(|h| h.iter().map(|hit| hit.corpus_id).collect())
        .collect();
    eprintln!(
        "corpus stored as {} at {dim} dimensions: {} bytes per text ({} in all)",
        args.precision,
        corpus.row_bytes,
        corpus.data.len()
    );
    Ok(sbert_eval::score_rankings(task, &rankings))
}

pub fn run_command(cmd: &EvalCommand) -> Result<()> {
    match cmd {
        EvalCommand::Senteval(args) => senteval(args),
        EvalCommand::Retrieval(args) => retrieval(args),
        EvalCommand::Sts(args) => {
            let poolings = match &args.pooling {
                Some(spec) => parse_pooling_spec(spec)?,
                None => Vec::new(),
            };
            let (datasets, suite) = match &args.suite {
                Some(dir) => (read_sets(dir, &SUITE)?, true),
                None => {
                    let sets = args
                        .data
                        .iter()
                        .map(|p| StsDataset::read(p, Some(&dataset_name(p))))
                        .collect::<Result<Vec<_>, _>>()?;
                    (sets, false)
                }
            };
            let report = run(
                &args.model,
                &datasets,
                &poolings,
                (args.output.quiet, args.truncate_dim),
            )?;
            let name = model_name(&args.model);
            print(&report, &args.output, |style| {
                if suite {
                    report::suite_table(&name, &report.scores, style)
                } else {
                    report::scores_table(&report.scores, style)
                }
            })
        }
        EvalCommand::Pooling(args) => {
            let poolings = parse_pooling_spec(&args.pooling)?;
            let datasets = read_sets(&args.data_dir, &POOLING_SETS)?;
            let report = run(&args.model, &datasets, &poolings, (args.output.quiet, None))?;
            print(&report, &args.output, |style| {
                report::pooling_table(&report.scores, style)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_specs() {
        assert_eq!(parse_pooling_spec("all").expect("all").len(), 6);
        let p = parse_pooling_spec("mean, max+cls").expect("spec");
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].to_string(), "cls,max");
        assert!(parse_pooling_spec("avg").is_err());
        assert!(parse_pooling_spec(",").is_err());
    }

    #[test]
    fn dataset_names() {
        assert_eq!(
            dataset_name(Path::new("../shared/data/stsb/test.tsv")),
            "stsb-test"
        );
        assert_eq!(dataset_name(Path::new("sts-dev.csv")), "sts-dev");
    }
}
