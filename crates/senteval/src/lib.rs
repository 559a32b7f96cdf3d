//! SentEval transfer tasks for `sbert`: how much of what a downstream classifier needs is in
//! frozen sentence embeddings, as the Sentence-BERT paper's Table 5 measures it.
//!
//! A logistic regression is trained on the embeddings of MR, CR, SUBJ, MPQA (sentiment,
//! product reviews, subjectivity, opinion polarity), SST-2 (sentiment), TREC (question type)
//! and MRPC (paraphrase, on `[|u−v|, u∗v]` of the pair), following SentEval's protocol
//! (<https://github.com/facebookresearch/SentEval>, the scikit-learn variant with
//! `nhid = 0`):
//!
//! * the files are read as SentEval's loaders read them ([`load_task`]: latin-1 or UTF-8,
//!   Python's line and whitespace splitting, blank samples kept) and sorted by (token count,
//!   label);
//! * MR/CR/SUBJ/MPQA: nested stratified 10-fold cross-validation, the inner folds picking the
//!   L2 penalty `C ∈ {2⁻², …, 2³}`; TREC and MRPC: 10-fold on train picks
//!   `C ∈ {2⁻¹, …, 2⁵}`, then one fit on all of train is scored on the test set (MRPC also
//!   F1); SST-2: the `C` best on dev is scored on test;
//! * folds equal scikit-learn's `StratifiedKFold(shuffle=True, random_state=1111)` split for
//!   split, numpy's Mersenne Twister included;
//! * each distinct sentence is encoded once, for all tasks together.
//!
//! The classifier is this crate's own: an L-BFGS logistic regression (scikit-learn's objective
//! and stopping rule) that runs all the fits of a task's protocol in lock step, so each pass
//! over the embeddings is two matrix products for hundreds of models.
//!
//! # Example
//!
//! ```no_run
//! use sbert::{Device, SentenceEmbedder};
//! use sbert_senteval::{evaluate, report, Options, Task};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let model = SentenceEmbedder::from_dir("models/all-MiniLM-L6-v2", &Device::Cpu)?;
//! let run = evaluate(
//!     &model,
//!     "../shared/data/senteval".as_ref(),
//!     &Task::ALL,
//!     &Options::default(),
//!     &mut |_| {},
//! )?;
//! print!("{}", report::table5("all-MiniLM-L6-v2", &run.scores, report::TableStyle::Markdown));
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]

mod data;
mod folds;
mod logistic;
mod protocol;
pub mod report;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use sbert::{DType, TextEmbedder};
use serde::Serialize;

pub use data::{load_task, LabelledPairs, LabelledTexts, TaskData};

use logistic::{Design, Settings};
use protocol::{dev_selected, f1, kfold_then_test, nested_cv, Outcome, Validation};

/// A SentEval transfer task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Task {
    /// Movie review snippets, positive or negative (Pang & Lee).
    #[serde(rename = "MR")]
    Mr,
    /// Product reviews, positive or negative (Hu & Liu).
    #[serde(rename = "CR")]
    Cr,
    /// Subjective or objective sentences (Pang & Lee).
    #[serde(rename = "SUBJ")]
    Subj,
    /// Opinion polarity of phrases (Wiebe et al.).
    #[serde(rename = "MPQA")]
    Mpqa,
    /// Stanford Sentiment Treebank, binary (Socher et al.).
    #[serde(rename = "SST2")]
    Sst2,
    /// Question type, six coarse classes (Li & Roth).
    #[serde(rename = "TREC")]
    Trec,
    /// Microsoft Research Paraphrase Corpus.
    #[serde(rename = "MRPC")]
    Mrpc,
}

impl Task {
    /// The seven tasks of the SBERT paper's Table 5, in its column order.
    pub const ALL: [Task; 7] = [
        Task::Mr,
        Task::Cr,
        Task::Subj,
        Task::Mpqa,
        Task::Sst2,
        Task::Trec,
        Task::Mrpc,
    ];

    /// The task's name: `MR`, `CR`, `SUBJ`, `MPQA`, `SST2`, `TREC`, `MRPC`.
    pub fn name(self) -> &'static str {
        match self {
            Task::Mr => "MR",
            Task::Cr => "CR",
            Task::Subj => "SUBJ",
            Task::Mpqa => "MPQA",
            Task::Sst2 => "SST2",
            Task::Trec => "TREC",
            Task::Mrpc => "MRPC",
        }
    }

    /// The task's folder under SentEval's `data/downstream/`.
    pub fn folder(self) -> &'static str {
        match self {
            Task::Sst2 => "SST/binary",
            other => other.name(),
        }
    }

    /// Number of classes.
    pub fn classes(self) -> usize {
        match self {
            Task::Trec => 6,
            _ => 2,
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Task {
    type Err = SentEvalError;

    /// A task by name, case-insensitive; `SST`, `SST-2` and `SST2` all name SST-2.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        match upper.as_str() {
            "SST" | "SST-2" => return Ok(Task::Sst2),
            _ => {}
        }
        Task::ALL
            .into_iter()
            .find(|t| t.name() == upper)
            .ok_or_else(|| SentEvalError::UnknownTask(s.to_string()))
    }
}

/// Errors of reading SentEval data and evaluating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SentEvalError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line of a task file does not parse.
    #[error("{}: line {line}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The task's folder is not in the data folder.
    #[error("no task folder {} (expected SentEval's data/downstream/ layout)", .0.display())]
    MissingTask(PathBuf),
    /// A task name that is none of the seven.
    #[error("unknown SentEval task {0:?} (expected MR, CR, SUBJ, MPQA, SST2, TREC or MRPC)")]
    UnknownTask(String),
    /// A split with no examples, or a training set with one class.
    #[error("{data}: {reason}")]
    NotEnoughData {
        /// The task and split, with its folder.
        data: String,
        /// What is wrong.
        reason: String,
    },
    /// A class has fewer examples than there are folds.
    #[error("{data}: class {label} has {count} examples, fewer than the {folds} folds")]
    TooFewExamples {
        /// The task (and split).
        data: String,
        /// The class.
        label: u32,
        /// Its examples.
        count: usize,
        /// Folds asked for.
        folds: usize,
    },
    /// Options out of range.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// Encoding failed.
    #[error(transparent)]
    Embed(#[from] sbert::Error),
    /// A tensor operation of the classifier failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

/// Protocol settings; the defaults are SentEval's (`kfold: 10`, `seed: 1111`), with an
/// iteration cap of 1000 where scikit-learn's `LogisticRegression` stops at 100, before
/// convergence for the larger penalties (where a fit stops early depends on the last bits of
/// the embeddings, and small test sets such as TREC's move by tenths with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Folds of every cross-validation, at least 2.
    pub folds: usize,
    /// Seed of the stratified fold shuffles.
    pub seed: u32,
    /// L-BFGS iterations per fit at most (scikit-learn's `max_iter`, whose default is 100).
    pub max_iter: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            folds: 10,
            seed: 1111,
            max_iter: 1000,
        }
    }
}

/// One task's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskScore {
    /// The task.
    pub task: Task,
    /// Test accuracy ×100 (cross-validated tasks: the mean over the outer folds).
    pub accuracy: f64,
    /// The accuracy ×100 that chose the penalty (inner folds, train folds or dev).
    pub dev_accuracy: f64,
    /// MRPC: F1 ×100 of the paraphrase class on test.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub f1: Option<f64>,
    /// Training examples (cross-validated tasks: all examples, each trained on in k−1 folds).
    pub n_train: usize,
    /// Test examples (cross-validated tasks: all examples, each tested once).
    pub n_test: usize,
    /// Seconds spent in the classifier.
    pub seconds: f64,
}

/// A task that could not be scored, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskFailure {
    /// The task.
    pub task: Task,
    /// The error and its causes, as one line.
    pub error: String,
}

/// Everything one run produced.
#[derive(Debug, Clone)]
pub struct SentEvalReport {
    /// One entry per task that was scored, in the order asked for.
    pub scores: Vec<TaskScore>,
    /// The tasks that could not be scored (missing or malformed data, too few examples for
    /// the folds), in the order asked for. The other tasks are scored regardless.
    pub failures: Vec<TaskFailure>,
    /// Distinct sentences encoded.
    pub sentences: usize,
    /// Time spent encoding.
    pub encode_time: Duration,
    /// Wall time of the whole run.
    pub total_time: Duration,
}

/// What [`evaluate`] reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// `done` of `total` distinct sentences encoded.
    Encoded {
        /// Sentences encoded so far.
        done: usize,
        /// Distinct sentences in all.
        total: usize,
    },
    /// A task's classifier finished.
    Scored(&'a TaskScore),
}

/// Sentences per call into the model: the progress granularity.
const CHUNK: usize = 1024;

/// Loads `tasks` from `data` (SentEval's `data/downstream/` layout), encodes every distinct
/// sentence once with `model`, and runs each task's protocol. A task that fails (a missing or
/// malformed file, a class smaller than the folds) is listed in
/// [`SentEvalReport::failures`] and the others are scored.
///
/// # Errors
/// Every task failing (the first task's error), `options.folds < 2`, or an encoding failure.
pub fn evaluate(
    model: &(impl TextEmbedder + ?Sized),
    data: &Path,
    tasks: &[Task],
    options: &Options,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<SentEvalReport, SentEvalError> {
    if options.folds < 2 {
        return Err(SentEvalError::InvalidOptions(format!(
            "{} folds; at least 2 are needed",
            options.folds
        )));
    }
    if options.max_iter == 0 {
        return Err(SentEvalError::InvalidOptions("max_iter is 0".into()));
    }
    let start = Instant::now();
    // A task that fails is reported and the run goes on: one bad file does not throw away
    // the tasks that are fine. Only when every task fails is the run an error.
    let mut failures: Vec<(Task, SentEvalError)> = Vec::new();
    let mut loaded: Vec<(Task, TaskData)> = Vec::new();
    for &t in tasks {
        match load_task(data, t) {
            Ok(d) => loaded.push((t, d)),
            Err(e) => failures.push((t, e)),
        }
    }
    if loaded.is_empty() && !failures.is_empty() {
        return Err(failures.swap_remove(0).1);
    }

    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut distinct: Vec<&str> = Vec::new();
    for (_, d) in &loaded {
        for text in d.texts() {
            index.entry(text).or_insert_with(|| {
                distinct.push(text);
                distinct.len() - 1
            });
        }
    }
    let encode_start = Instant::now();
    let mut embeddings: Vec<f32> = Vec::new();
    let mut dim = 0;
    progress(Progress::Encoded {
        done: 0,
        total: distinct.len(),
    });
    for (c, chunk) in distinct.chunks(CHUNK).enumerate() {
        let e = model.embed_texts(chunk)?.to_dtype(DType::F32)?;
        dim = e.dim(1)?;
        embeddings.extend(e.flatten_all()?.to_vec1::<f32>()?);
        progress(Progress::Encoded {
            done: (c * CHUNK + chunk.len()).min(distinct.len()),
            total: distinct.len(),
        });
    }
    let encode_time = encode_start.elapsed();
    let table = Embedded {
        index: &index,
        embeddings: &embeddings,
        dim,
    };

    let validation = Validation {
        folds: options.folds,
        seed: options.seed,
        solver: Settings {
            max_iter: options.max_iter,
            ..Settings::default()
        },
    };
    let mut scores = Vec::with_capacity(loaded.len());
    for (task, d) in &loaded {
        let started = Instant::now();
        match run_task(*task, d, &table, &validation, started) {
            Ok(score) => {
                progress(Progress::Scored(&score));
                scores.push(score);
            }
            Err(e) => failures.push((*task, e)),
        }
    }
    let order = |t: &Task| tasks.iter().position(|x| x == t);
    failures.sort_by_key(|(t, _)| order(t));
    if scores.is_empty() && !failures.is_empty() {
        return Err(failures.swap_remove(0).1);
    }
    let failures = failures
        .into_iter()
        .map(|(task, e)| {
            let mut error = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                error.push_str(": ");
                error.push_str(&cause.to_string());
                source = cause.source();
            }
            TaskFailure { task, error }
        })
        .collect();
    Ok(SentEvalReport {
        scores,
        failures,
        sentences: distinct.len(),
        encode_time,
        total_time: start.elapsed(),
    })
}

/// Embeddings of the distinct sentences, found by text.
struct Embedded<'a> {
    index: &'a HashMap<&'a str, usize>,
    embeddings: &'a [f32],
    dim: usize,
}

impl Embedded<'_> {
    fn row(&self, text: &str) -> &[f32] {
        let i = self.index[text];
        &self.embeddings[i * self.dim..(i + 1) * self.dim]
    }

    fn design(&self, texts: &[String]) -> Result<Design, SentEvalError> {
        let mut x = Vec::with_capacity(texts.len() * self.dim);
        for t in texts {
            x.extend_from_slice(self.row(t));
        }
        Ok(Design::new(&x, self.dim)?)
    }

    /// MRPC's pair features `[|u−v|, u∗v]`.
    fn pair_design(&self, pairs: &LabelledPairs) -> Result<Design, SentEvalError> {
        let mut x = Vec::with_capacity(pairs.labels.len() * 2 * self.dim);
        for (a, b) in pairs.first.iter().zip(&pairs.second) {
            let (u, v) = (self.row(a), self.row(b));
            x.extend(u.iter().zip(v).map(|(u, v)| (u - v).abs()));
            x.extend(u.iter().zip(v).map(|(u, v)| u * v));
        }
        Ok(Design::new(&x, 2 * self.dim)?)
    }
}

fn run_task(
    task: Task,
    data: &TaskData,
    table: &Embedded<'_>,
    v: &Validation,
    started: Instant,
) -> Result<TaskScore, SentEvalError> {
    let classes = task.classes();
    let name = task.name();
    let (outcome, f1_score, n_train, n_test): (Outcome, Option<f64>, usize, usize) = match data {
        TaskData::CrossValidated(all) => {
            let design = table.design(&all.texts)?;
            let o = nested_cv(&design, &all.labels, classes, v, name)?;
            (o, None, design.rows(), design.rows())
        }
        TaskData::TrainTest { train, test } => {
            let (tr, te) = (table.design(&train.texts)?, table.design(&test.texts)?);
            let o = kfold_then_test(
                (&tr, &train.labels),
                (&te, &test.labels),
                classes,
                v,
                &format!("{name} train"),
            )?;
            (o, None, tr.rows(), te.rows())
        }
        TaskData::TrainDevTest { train, dev, test } => {
            let tr = table.design(&train.texts)?;
            let dv = table.design(&dev.texts)?;
            let te = table.design(&test.texts)?;
            let o = dev_selected(
                (&tr, &train.labels),
                (&dv, &dev.labels),
                (&te, &test.labels),
                classes,
                v,
            )?;
            (o, None, tr.rows(), te.rows())
        }
        TaskData::Pairs { train, test } => {
            let (tr, te) = (table.pair_design(train)?, table.pair_design(test)?);
            let o = kfold_then_test(
                (&tr, &train.labels),
                (&te, &test.labels),
                classes,
                v,
                &format!("{name} train"),
            )?;
            let f = f1(&o.predictions, &test.labels);
            (o, Some(f), tr.rows(), te.rows())
        }
    };
    Ok(TaskScore {
        task,
        accuracy: outcome.test,
        dev_accuracy: outcome.dev,
        f1: f1_score,
        n_train,
        n_test,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_names_parse() {
        assert_eq!("mr".parse::<Task>().expect("MR"), Task::Mr);
        assert_eq!("SST-2".parse::<Task>().expect("SST"), Task::Sst2);
        assert_eq!(" trec ".parse::<Task>().expect("TREC"), Task::Trec);
        let err = "SICK"
            .parse::<Task>()
            .expect_err("not a SentEval task here");
        assert!(err.to_string().contains("SICK"), "{err}");
        for t in Task::ALL {
            assert_eq!(t.name().parse::<Task>().expect("own name"), t);
        }
    }
}
