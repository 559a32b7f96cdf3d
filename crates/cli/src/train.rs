//! `sbert train`: fine-tune a sentence-transformers model.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use sbert_train::{
    read_nli, read_pairs, read_scored_pairs, Concat, DevSet, Layout, Objective, OutputDir,
    TrainConfig, TrainData, TrainableModel, Trainer,
};

/// The losses, sentence-transformers' of the same name with its defaults; the layout of
/// --train each reads follows in brackets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Loss {
    /// CosineSimilarityLoss: MSE between cos(u, v) and score/5 [score, sentence1, sentence2].
    Cosine,
    /// CoSENTLoss: pairs ranked by cosine in the order of their scores, --scale 20 [score,
    /// sentence1, sentence2].
    Cosent,
    /// AnglELoss: CoSENT over the angle similarity, --scale 20 [score, sentence1, sentence2].
    Angle,
    /// SoftmaxLoss: softmax(W·[u; v; |u−v|]) with cross-entropy [premise, hypothesis, label].
    Softmax,
    /// MultipleNegativesRankingLoss: in-batch negatives, plus the row's hard negative when
    /// there is a third column [query, positive(, negative)], or an NLI file's entailment pairs.
    Mnrl,
    /// MultipleNegativesSymmetricRankingLoss: mnrl in both directions (queries → documents
    /// and positives → queries) [query, positive(, negative)].
    MnrlSymmetric,
    /// CachedMultipleNegativesRankingLoss (GradCache): mnrl over a large --batch-size in the
    /// memory of --mini-batch-size texts per pass [query, positive(, negative)].
    CachedMnrl,
    /// TripletLoss: Euclidean, --margin 5 [anchor, positive, negative].
    Triplet,
    /// ContrastiveLoss: cosine distance, --margin 0.5 [label 0/1, sentence1, sentence2].
    Contrastive,
    /// OnlineContrastiveLoss: contrastive over the batch's hard pairs, --margin 0.5 [label
    /// 0/1, sentence1, sentence2].
    OnlineContrastive,
    /// MSELoss: distil --teacher's embeddings into the model [the sentences of an STS, pairs
    /// or NLI file, each text column].
    Mse,
}

/// What a dev set is scored by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DevKind {
    /// score, sentence1, sentence2: Spearman of cosine.
    Sts,
    /// premise, hypothesis, label: accuracy of the softmax classifier.
    Nli,
    /// A folder of queries.tsv, corpus.tsv, qrels.tsv: nDCG@10.
    Retrieval,
    /// anchor, positive, negative: accuracy.
    Triplet,
    /// label (0/1), sentence1, sentence2: average precision.
    Binary,
}

/// Reads the dev set at `path` as `kind`, or as its shape says: a folder is a retrieval task,
/// an NLI file NLI, scored pairs binary when every score is 0 or 1 (STS otherwise), anything
/// else triplets.
fn read_dev(path: &Path, kind: Option<DevKind>, rows: Option<&Vec<usize>>) -> Result<DevSet> {
    let kind = match kind {
        Some(k) => k,
        None if path.is_dir() => DevKind::Retrieval,
        None if read_nli(path).is_ok() => DevKind::Nli,
        None => match read_scored_pairs(path) {
            Ok(p) if p.iter().all(|p| p.score == 0.0 || p.score == 1.0) => DevKind::Binary,
            Ok(_) => DevKind::Sts,
            Err(_) => DevKind::Triplet,
        },
    };
    Ok(match kind {
        DevKind::Sts => DevSet::Sts(select(read_scored_pairs(path)?, rows, None)?),
        DevKind::Binary => DevSet::Binary(select(read_scored_pairs(path)?, rows, None)?),
        DevKind::Nli => DevSet::Nli(select(read_nli(path)?, rows, None)?),
        DevKind::Triplet => DevSet::Triplets(select(read_pairs(path)?, rows, None)?),
        DevKind::Retrieval => {
            if rows.is_some() {
                bail!("--dev-rows does not apply to a retrieval dev set");
            }
            DevSet::Retrieval(sbert_eval::RetrievalTask::read_dir(path)?)
        }
    })
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The model to start from (a sentence-transformers folder).
    #[arg(long, short, default_value = crate::DEFAULT_MODEL)]
    model: PathBuf,
    /// Continue the run that saved this checkpoint (its weights, optimizer state, schedule
    /// position and dropout stream), with the same data and settings; --model is ignored.
    /// --output may be the same folder.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Without --dev: also save a checkpoint every N steps, to --resume from if the run stops.
    #[arg(long, value_name = "N")]
    save_every: Option<usize>,
    /// Save only the model, not the training state (AdamW's moments, about twice the size of
    /// the weights) that --resume needs.
    #[arg(long)]
    save_only_model: bool,
    /// The objective.
    #[arg(long, value_enum)]
    loss: Loss,
    /// Softmax features, comma-separated from u, v, abs_diff, product.
    #[arg(long, default_value = "u,v,abs_diff")]
    concat: String,
    /// With --loss softmax: train once per concatenation of the SBERT paper's ablation ((u,v),
    /// (|u−v|), (u∗v), (|u−v|,u∗v), (u,v,u∗v), (u,v,|u−v|), (u,v,|u−v|,u∗v)), each from the same
    /// start, into OUTPUT/<concat>, and print the dev scores as a table.
    #[arg(long)]
    concat_ablation: bool,
    /// Self-adversarial temperature for --loss mnrl (0 = the plain in-batch loss).
    #[arg(long, value_name = "T", default_value_t = 0.0)]
    self_adversarial: f64,
    /// Similarity scale of the mnrl losses, cosent and angle.
    #[arg(long, default_value_t = 20.0)]
    scale: f64,
    /// Margin of --loss triplet (default 5) or the contrastive losses (default 0.5).
    #[arg(long)]
    margin: Option<f64>,
    /// Texts per encoder pass of --loss cached-mnrl.
    #[arg(long, value_name = "N", default_value_t = 32)]
    mini_batch_size: usize,
    /// The teacher model of --loss mse (a sentence-transformers folder whose embeddings have
    /// the model's width).
    #[arg(long, value_name = "DIR")]
    teacher: Option<PathBuf>,
    /// Matryoshka: train so that each of these prefixes of the embedding works on its own,
    /// the loss summed over them with equal weights (e.g. 384,256,128,64; each at most the
    /// model's width). Read back with --truncate-dim.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    matryoshka_dims: Option<Vec<usize>>,
    /// Training file (TSV with a header).
    #[arg(long)]
    train: PathBuf,
    /// Use only these data rows of --train (one 0-based index per line, in this order).
    #[arg(long, value_name = "FILE")]
    rows: Option<PathBuf>,
    /// Use only the first N examples (after --rows).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Dev set, evaluated every --eval-every steps and at the end; the best checkpoint by its
    /// main score is kept. STS pairs (Spearman), NLI triples (the softmax classifier's
    /// accuracy), a folder of queries.tsv, corpus.tsv and qrels.tsv (retrieval: nDCG@10),
    /// (anchor, positive, negative) triplets (accuracy) or pairs labelled 0/1 (binary
    /// classification: average precision). The kind is read from the file's shape unless
    /// --dev-kind names it.
    #[arg(long)]
    dev: Option<PathBuf>,
    /// The kind of --dev.
    #[arg(long, value_enum, requires = "dev")]
    dev_kind: Option<DevKind>,
    /// Use only these data rows of --dev (one 0-based index per line).
    #[arg(long, value_name = "FILE")]
    dev_rows: Option<PathBuf>,
    /// Output model folder (the best checkpoint by dev score, else the final one). It must be
    /// new, empty, or a checkpoint an earlier `sbert train` wrote (it holds
    /// sbert_checkpoint.json); with --concat-ablation it receives one such folder per
    /// concatenation.
    #[arg(long, short)]
    output: PathBuf,
    /// Replace --output even when it is a folder of other files (everything in it is deleted
    /// when the first checkpoint is saved). The root, the working directory and the folders
    /// above it, the home folder and the folders holding the inputs are refused regardless.
    #[arg(long)]
    overwrite: bool,
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    #[arg(long, default_value_t = 2e-5)]
    lr: f64,
    /// Share of steps for linear warm-up.
    #[arg(long, default_value_t = 0.1)]
    warmup_ratio: f64,
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Seed of the batch shuffle.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Replay this example order (one 0-based index per line) instead of shuffling.
    #[arg(long, value_name = "FILE")]
    order: Option<PathBuf>,
    /// Evaluate on --dev every N steps (and at the end); the best checkpoint is kept.
    #[arg(long, value_name = "N")]
    eval_every: Option<usize>,
    /// After training, also report the saved model's Spearman on this STS file (e.g.
    /// ../shared/data/stsb/test.tsv), to see what an objective did to the cosine geometry.
    #[arg(long, value_name = "FILE")]
    sts_test: Option<PathBuf>,
    /// CPU threads.
    #[arg(long)]
    threads: Option<usize>,
}

fn select<T: Clone>(
    all: Vec<T>,
    rows: Option<&Vec<usize>>,
    limit: Option<usize>,
) -> Result<Vec<T>> {
    let mut out = match rows {
        Some(idx) => idx
            .iter()
            .map(|&i| {
                all.get(i)
                    .cloned()
                    .with_context(|| format!("row index {i} out of range ({} rows)", all.len()))
            })
            .collect::<Result<Vec<_>>>()?,
        None => all,
    };
    if let Some(n) = limit {
        out.truncate(n);
    }
    Ok(out)
}

/// The sentences of a training file, for distillation: both sentences of an STS file's rows,
/// else every text column of a pairs or NLI file, in order.
fn sentences_of(path: &Path) -> Result<Vec<String>> {
    if let Ok(pairs) = read_scored_pairs(path) {
        return Ok(pairs
            .into_iter()
            .flat_map(|p| [p.sentence1, p.sentence2])
            .collect());
    }
    if let Ok(nli) = read_nli(path) {
        return Ok(nli
            .into_iter()
            .flat_map(|e| [e.premise, e.hypothesis])
            .collect());
    }
    Ok(read_pairs(path)?
        .into_iter()
        .flat_map(|p| [Some(p.query), Some(p.positive), p.negative])
        .flatten()
        .collect())
}

/// The concatenations of the SBERT paper's Table 6 ablation.
const ABLATION: [&str; 7] = [
    "u,v",
    "abs_diff",
    "product",
    "abs_diff,product",
    "u,v,product",
    "u,v,abs_diff",
    "u,v,abs_diff,product",
];

pub fn run(args: &TrainArgs) -> Result<()> {
    if !args.concat_ablation {
        return run_one(args, &args.concat, &args.output);
    }
    if args.loss != Loss::Softmax {
        bail!("--concat-ablation needs --loss softmax");
    }
    let mut rows = Vec::new();
    for concat in ABLATION {
        let out = args.output.join(concat.replace(',', "+"));
        eprintln!("== concatenation {concat}");
        let (dev, sts) = run_one_scored(args, concat, &out)?;
        rows.push((concat, dev, sts));
    }
    println!("| concatenation | dev accuracy | STS ρ after (--sts-test) |");
    println!("|---|---:|---:|");
    for (concat, dev, sts) in rows {
        let c: Concat = concat.parse()?;
        let dev = dev.map_or("–".into(), |d| format!("{d:.2}"));
        // `|u-v|` would end a Markdown cell.
        let c = c.to_string().replace('|', "\\|");
        println!("| {c} | {dev} | {sts:.2} |");
    }
    Ok(())
}

fn run_one(args: &TrainArgs, concat: &str, output: &Path) -> Result<()> {
    run_one_scored(args, concat, output).map(|_| ())
}

/// Trains once; returns the best dev score and the STSb test Spearman of the saved model.
fn run_one_scored(args: &TrainArgs, concat: &str, output: &Path) -> Result<(Option<f64>, f64)> {
    crate::alloc::keep_freed_memory();
    match args.threads {
        Some(0) => bail!("--threads must be at least 1"),
        // Every parallel loop of the run (the packed passes, the optimizer, candle's products)
        // runs on the current rayon pool: this one.
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .with_context(|| format!("starting {n} threads"))?
            .install(|| train_scored(args, concat, output)),
        None => train_scored(args, concat, output),
    }
}

fn train_scored(args: &TrainArgs, concat: &str, output: &Path) -> Result<(Option<f64>, f64)> {
    // Every file and folder the run reads must survive it.
    let inputs: Vec<&Path> = [
        Some(args.model.as_path()),
        Some(args.train.as_path()),
        args.rows.as_deref(),
        args.dev.as_deref(),
        args.dev_rows.as_deref(),
        args.order.as_deref(),
        args.sts_test.as_deref(),
        args.teacher.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let output = OutputDir::new(output, args.overwrite, &inputs)?;
    let rows = args
        .rows
        .as_deref()
        .map(crate::io::read_indices)
        .transpose()?;
    let dev_rows = args
        .dev_rows
        .as_deref()
        .map(crate::io::read_indices)
        .transpose()?;
    let margin = |default: f64| args.margin.unwrap_or(default);
    let objective = match args.loss {
        Loss::Cosine => Objective::Cosine { max_score: 5.0 },
        Loss::Cosent => Objective::CoSent { scale: args.scale },
        Loss::Angle => Objective::Angle { scale: args.scale },
        Loss::Softmax => Objective::Softmax {
            concat: concat.parse::<Concat>()?,
        },
        Loss::Mnrl => Objective::InBatchNegatives {
            scale: args.scale,
            temperature: Some(args.self_adversarial).filter(|t| *t > 0.0),
        },
        Loss::MnrlSymmetric => Objective::SymmetricInBatchNegatives { scale: args.scale },
        Loss::CachedMnrl => Objective::CachedInBatchNegatives {
            scale: args.scale,
            mini_batch_size: args.mini_batch_size,
        },
        Loss::Triplet => Objective::Triplet {
            margin: margin(5.0),
        },
        Loss::Contrastive => Objective::Contrastive {
            margin: margin(0.5),
        },
        Loss::OnlineContrastive => Objective::OnlineContrastive {
            margin: margin(0.5),
        },
        Loss::Mse => Objective::Mse,
    };
    if args.margin.is_some()
        && !matches!(
            args.loss,
            Loss::Triplet | Loss::Contrastive | Loss::OnlineContrastive
        )
    {
        bail!("--margin applies to --loss triplet, contrastive and online-contrastive");
    }
    if args.teacher.is_some() != (args.loss == Loss::Mse) {
        bail!("--teacher DIR goes with --loss mse, and --loss mse needs it");
    }
    let data = match objective.layout() {
        Layout::Scored | Layout::Labelled => TrainData::Scored(select(
            read_scored_pairs(&args.train)?,
            rows.as_ref(),
            args.limit,
        )?),
        Layout::Nli => TrainData::Nli(select(read_nli(&args.train)?, rows.as_ref(), args.limit)?),
        // An NLI file: --rows index its data rows, then the entailment pairs are kept.
        Layout::Pairs | Layout::Triplets => TrainData::Pairs(match read_nli(&args.train) {
            Ok(nli) => sbert_train::entailment_pairs(select(nli, rows.as_ref(), args.limit)?),
            Err(_) => select(read_pairs(&args.train)?, rows.as_ref(), args.limit)?,
        }),
        Layout::Sentences => {
            let sentences = select(sentences_of(&args.train)?, rows.as_ref(), args.limit)?;
            let teacher_dir = args.teacher.as_ref().expect("checked above");
            let teacher = sbert::SentenceEmbedder::builder(teacher_dir.to_string_lossy())
                .device(sbert::Device::Cpu)
                .build()
                .with_context(|| format!("loading the teacher {}", teacher_dir.display()))?;
            eprintln!(
                "embedding {} sentences with the teacher {}",
                sentences.len(),
                teacher_dir.display()
            );
            let embeddings = teacher.encode_tensor(&sentences, &sbert::EncodeOptions::default())?;
            TrainData::Distill {
                sentences,
                teacher: embeddings,
            }
        }
    };
    let dev = args
        .dev
        .as_deref()
        .map(|p| read_dev(p, args.dev_kind, dev_rows.as_ref()))
        .transpose()?;
    let order = args
        .order
        .as_deref()
        .map(crate::io::read_indices)
        .transpose()?;
    let from = args.resume.as_ref().unwrap_or(&args.model);
    let model =
        TrainableModel::load(from).with_context(|| format!("loading {}", from.display()))?;
    let dim = model.dim();
    let config = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        warmup_ratio: args.warmup_ratio,
        weight_decay: args.weight_decay,
        max_grad_norm: args.max_grad_norm,
        seed: args.seed,
        order,
        eval_every: args.eval_every,
        output: Some(output.clone()),
        matryoshka_dims: args.matryoshka_dims.clone(),
        save_every: args.save_every,
        resume: args.resume.clone(),
        save_training_state: !args.save_only_model,
    };
    let out_dir = output.clone();
    let output = output.path();
    let trainer = Trainer::new(config, objective, dim)?;
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "train [{bar:40}] {pos}/{len} steps, {msg} (eta {eta})",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    let mut running = 0f64;
    let report = trainer.train(&model, &data, dev.as_ref(), &mut |log| {
        bar.set_length(log.total as u64);
        bar.set_position(log.step as u64);
        running = if log.step == 1 {
            f64::from(log.loss)
        } else {
            0.98 * running + 0.02 * f64::from(log.loss)
        };
        bar.set_message(format!("loss {running:.4}, lr {:.2e}", log.lr));
        if let Some(d) = log.dev {
            if bar.is_hidden() {
                eprintln!("step {}: dev {d:.2}", log.step);
            } else {
                bar.println(format!("step {}: dev {d:.2}", log.step));
            }
        }
        if bar.is_hidden() && (log.step % 50 == 0 || log.step == log.total) {
            // No terminal (a log file, CI): a plain progress line instead of the bar.
            eprintln!(
                "step {}/{}: loss {running:.4}, lr {:.2e}",
                log.step, log.total, log.lr
            );
        }
    })?;
    bar.finish_and_clear();
    let csv_path = output.join("training_log.csv");
    let mut csv = String::from("step,loss,lr,dev\n");
    for s in &report.steps {
        let dev = s.dev.map(|d| d.to_string()).unwrap_or_default();
        csv.push_str(&format!("{},{},{},{dev}\n", s.step, s.loss, s.lr));
    }
    sbert_io::output::write_file(&csv_path, csv.as_bytes())?;
    let svg_path = output.join("training_curve.svg");
    sbert_io::output::write_file(&svg_path, curve_svg(&report.steps, args).as_bytes())?;
    // Part of the checkpoint from now on: the next run into this folder may replace them.
    out_dir.adopt(&["training_log.csv", "training_curve.svg"])?;
    eprintln!(
        "trained {} steps in {:.1} s: {:.1} pairs/s; best dev {}; saved {} (curves: {}, {})",
        report.steps.len(),
        report.train_seconds,
        report.pairs_per_second,
        report.best_dev.map_or("–".into(), |d| format!("{d:.2}")),
        output.display(),
        csv_path.display(),
        svg_path.display()
    );
    // The saved model on STSb test, so every run reports what it did to the cosine geometry.
    let sts = match &args.sts_test {
        Some(path) => {
            let saved = sbert::SentenceEmbedder::from_dir(output, &sbert::Device::Cpu)?;
            let ds = sbert_eval::StsDataset::read(path, None)?;
            let r = sbert_eval::evaluate(&saved, &[ds], &[], &mut |_, _| {})?;
            eprintln!(
                "{}: Spearman of the saved model {:.2}",
                path.display(),
                r.scores[0].spearman
            );
            r.scores[0].spearman
        }
        None => f64::NAN,
    };
    Ok((report.best_dev, sts))
}

/// The loss of every step with its running mean, above the dev scores.
fn curve_svg(steps: &[sbert_train::StepLog], args: &TrainArgs) -> String {
    use sbert_eval::report::{line_chart_svg, Panel, Series};
    let loss: Vec<(f64, f64)> = steps
        .iter()
        .map(|s| (s.step as f64, f64::from(s.loss)))
        .collect();
    let mut running = Vec::with_capacity(loss.len());
    let mut mean = 0.0;
    for (i, &(x, y)) in loss.iter().enumerate() {
        mean = if i == 0 { y } else { 0.95 * mean + 0.05 * y };
        running.push((x, mean));
    }
    let dev: Vec<(f64, f64)> = steps
        .iter()
        .filter_map(|s| s.dev.map(|d| (s.step as f64, d)))
        .collect();
    let dev_label = match args.loss {
        Loss::Softmax => "dev accuracy %",
        _ => "dev Spearman ρ × 100",
    };
    let panels = [
        Panel {
            y_label: "training loss",
            series: vec![
                Series {
                    name: "loss per step",
                    points: &loss,
                    color: "#bbbbbb",
                    dots: false,
                },
                Series {
                    name: "running mean (0.95)",
                    points: &running,
                    color: "#4e79a7",
                    dots: false,
                },
            ],
        },
        Panel {
            y_label: dev_label,
            series: vec![Series {
                name: "dev",
                points: &dev,
                color: "#f28e2b",
                dots: true,
            }],
        },
    ];
    let title = format!("sbert train --loss {:?}", args.loss).to_lowercase();
    line_chart_svg(&title, "optimizer step", &panels)
}

/// `sbert mine-negatives`.
#[derive(Debug, Args)]
pub struct MineArgs {
    #[command(flatten)]
    model: crate::ModelArgs,
    /// (anchor, positive) pairs: TSV with a header (a third column is ignored), or an NLI
    /// file (its entailment pairs).
    #[arg(long, short, value_name = "FILE")]
    input: PathBuf,
    /// More candidate texts, one per line, besides the positives of --input.
    #[arg(long, value_name = "FILE", conflicts_with = "index")]
    corpus: Option<PathBuf>,
    /// Mine from the corpus of this index (`sbert index build`, by the same model), through
    /// its stored embeddings: only the anchors and positives are embedded.
    #[arg(long, value_name = "DIR")]
    index: Option<PathBuf>,
    /// Skip the N most similar candidates (they may be unlabelled positives).
    #[arg(long, default_value_t = 0, value_name = "N")]
    range_min: usize,
    /// Consider candidates up to rank N. Default: range-min + num-negatives + the most
    /// positives an anchor has (10 × num-negatives with --margin, --relative-margin or
    /// --max-score).
    #[arg(long, value_name = "N")]
    range_max: Option<usize>,
    /// A negative must score at least this much below the anchor's positive (cosine).
    #[arg(long, value_name = "M")]
    margin: Option<f64>,
    /// A negative must score below positive − |positive| × M.
    #[arg(long, value_name = "M")]
    relative_margin: Option<f64>,
    /// A negative must score at most this (cosine).
    #[arg(long)]
    max_score: Option<f64>,
    /// A negative must score at least this (cosine).
    #[arg(long)]
    min_score: Option<f64>,
    /// Negatives per pair.
    #[arg(long, default_value_t = 3, value_name = "N")]
    num_negatives: usize,
    /// Take a seeded random sample of the window instead of its top.
    #[arg(long)]
    random: bool,
    /// Seed of --random.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where the triplets go (TSV: anchor, positive, negative, with a header), written whole
    /// or not at all.
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
}

/// Runs `sbert mine-negatives`.
pub fn mine(args: &MineArgs) -> Result<()> {
    let pairs = match read_nli(&args.input) {
        Ok(nli) => sbert_train::entailment_pairs(nli),
        Err(_) => read_pairs(&args.input)?,
    };
    let corpus = match &args.corpus {
        Some(path) => {
            // One text per line: each is the text of its line.
            let texts = crate::io::read_texts(path, crate::io::InputFormat::Lines)?;
            if let Some(line) = texts.iter().position(|t| t.contains('\t')) {
                bail!(
                    "{}: line {}: a tab in a corpus text (the triplets are written as TSV)",
                    path.display(),
                    line + 1
                );
            }
            texts.into_iter().filter(|t| !t.trim().is_empty()).collect()
        }
        None => Vec::new(),
    };
    let model = args.model.load(None)?;
    let options = sbert_train::MineOptions {
        range_min: args.range_min,
        range_max: args.range_max,
        absolute_margin: args.margin,
        relative_margin: args.relative_margin,
        max_score: args.max_score,
        min_score: args.min_score,
        num_negatives: args.num_negatives,
        sampling: if args.random {
            sbert_train::Sampling::Random { seed: args.seed }
        } else {
            sbert_train::Sampling::Top
        },
    };
    let mined = match &args.index {
        Some(dir) => {
            let index = crate::index::load(dir, &model)?;
            let n = index.texts.len();
            let embeddings =
                sbert::Tensor::from_vec(index.rows, (n, index.dim), &sbert::Device::Cpu)?;
            sbert_train::mine_hard_negatives_embedded(
                &model,
                &pairs,
                &index.texts,
                &embeddings,
                &options,
            )?
        }
        None => sbert_train::mine_hard_negatives(&model, &pairs, &corpus, &options)?,
    };
    if let Some(t) = mined.triplets.iter().find(|t| {
        let negative = t.negative.as_deref().unwrap_or_default();
        negative.contains(['\t', '\n', '\r'])
    }) {
        bail!(
            "the negative {:?} holds a tab or a line break, which a TSV row cannot carry",
            t.negative.as_deref().unwrap_or_default()
        );
    }
    let mut tsv = String::from("anchor\tpositive\tnegative\n");
    for t in &mined.triplets {
        let negative = t.negative.as_deref().unwrap_or_default();
        tsv.push_str(&format!("{}\t{}\t{negative}\n", t.query, t.positive));
    }
    sbert_io::output::write_file(&args.output, tsv.as_bytes())?;
    eprintln!(
        "{} triplets from {} pairs ({} with fewer than {} negatives) written to {}",
        mined.triplets.len(),
        pairs.len(),
        mined.short,
        args.num_negatives,
        args.output.display()
    );
    Ok(())
}
