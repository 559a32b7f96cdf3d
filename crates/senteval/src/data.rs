//! SentEval's task files, read the way its loaders read them: the same encodings, the same line
//! and whitespace splitting, blank samples kept, and each split sorted by (token count, label)
//! before encoding — the order its stratified folds are drawn in.
//!
//! Loaders mirrored: `senteval/binary.py`, `trec.py`, `sst.py`, `mrpc.py` in
//! <https://github.com/facebookresearch/SentEval> (`main`).

use std::path::{Path, PathBuf};

use crate::{SentEvalError, Task};

/// Texts with a class label each, in SentEval's encoding order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelledTexts {
    /// Each sample's tokens joined by single spaces (what SentEval's batcher hands the
    /// model); a blank sample is the empty text.
    pub texts: Vec<String>,
    /// Class of each text, `0..classes`.
    pub labels: Vec<u32>,
}

/// Sentence pairs with a label each (MRPC), in SentEval's encoding order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelledPairs {
    /// First sentences.
    pub first: Vec<String>,
    /// Second sentences.
    pub second: Vec<String>,
    /// 1 for a paraphrase, 0 otherwise.
    pub labels: Vec<u32>,
}

/// A task's data, by the way SentEval validates it.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskData {
    /// MR, CR, SUBJ, MPQA: one set, scored by nested stratified k-fold cross-validation.
    CrossValidated(LabelledTexts),
    /// TREC: the penalty chosen by k-fold on train, then scored on the fixed test set.
    TrainTest {
        /// Training questions.
        train: LabelledTexts,
        /// Test questions.
        test: LabelledTexts,
    },
    /// SST-2: the penalty chosen on dev, scored on test.
    TrainDevTest {
        /// Training phrases and sentences.
        train: LabelledTexts,
        /// Development sentences.
        dev: LabelledTexts,
        /// Test sentences.
        test: LabelledTexts,
    },
    /// MRPC: as TREC, on pair features `[|u−v|, u∗v]`.
    Pairs {
        /// Training pairs.
        train: LabelledPairs,
        /// Test pairs.
        test: LabelledPairs,
    },
}

impl TaskData {
    /// Every text of the task, with repeats, in encoding order.
    pub fn texts(&self) -> Vec<&str> {
        let sets: Vec<&LabelledTexts> = match self {
            TaskData::CrossValidated(all) => vec![all],
            TaskData::TrainTest { train, test } => vec![train, test],
            TaskData::TrainDevTest { train, dev, test } => vec![train, dev, test],
            TaskData::Pairs { train, test } => {
                return [train, test]
                    .iter()
                    .flat_map(|p| p.first.iter().chain(&p.second))
                    .map(String::as_str)
                    .collect()
            }
        };
        sets.iter()
            .flat_map(|s| s.texts.iter().map(String::as_str))
            .collect()
    }
}

/// Python's `str.isspace`: Unicode White_Space plus the separators U+001C–U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.split()` with no separator.
fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|t| !t.is_empty())
}

/// Python's `str.strip()` with no argument.
fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// Python's `str.splitlines()`: every Unicode line boundary, `\r\n` as one; no empty last line
/// after a final boundary.
fn py_splitlines(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let boundary = matches!(
            c,
            '\n' | '\r'
                | '\u{0b}'
                | '\u{0c}'
                | '\u{1c}'
                | '\u{1d}'
                | '\u{1e}'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if boundary {
            lines.push(&s[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r' {
                if let Some(&(j, '\n')) = chars.peek() {
                    chars.next();
                    end = j + 1;
                }
            }
            start = end;
        }
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// The lines `for line in open(path)` yields in text mode (universal newlines: `\n`, `\r\n`,
/// `\r`), without their endings.
fn universal_lines(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                lines.push(&s[start..i]);
                start = i + 1;
            }
            b'\r' => {
                lines.push(&s[start..i]);
                if bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

#[derive(Clone, Copy)]
enum Encoding {
    Latin1,
    Utf8,
}

fn read(path: &Path, encoding: Encoding) -> Result<String, SentEvalError> {
    let bytes = std::fs::read(path).map_err(|source| SentEvalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    match encoding {
        // Latin-1 maps each byte to the code point of the same value.
        Encoding::Latin1 => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
        Encoding::Utf8 => String::from_utf8(bytes).map_err(|e| SentEvalError::Malformed {
            path: path.to_path_buf(),
            line: 0,
            reason: format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
        }),
    }
}

fn malformed(path: &Path, line: usize, reason: impl Into<String>) -> SentEvalError {
    SentEvalError::Malformed {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

/// A 0/1 label field.
fn binary_label(path: &Path, line: usize, field: &str) -> Result<u32, SentEvalError> {
    match field {
        "0" => Ok(0),
        "1" => Ok(1),
        other => Err(malformed(
            path,
            line,
            format!("label {other:?} is not 0 or 1"),
        )),
    }
}

/// One sample before sorting: its tokens and label.
type Sample = (Vec<String>, u32);

fn tokens(s: &str) -> Vec<String> {
    py_split(s).map(str::to_string).collect()
}

/// Sorts as SentEval does before encoding — by (token count, label), stably — and joins each
/// sample's tokens by single spaces.
fn sorted(mut samples: Vec<Sample>) -> LabelledTexts {
    samples.sort_by_key(|(t, y)| (t.len(), *y));
    let (texts, labels) = samples.into_iter().map(|(t, y)| (t.join(" "), y)).unzip();
    LabelledTexts { texts, labels }
}

/// `binary.py`: one sample per line, positives first in the data (label 1), then negatives.
fn binary(dir: &Path, positive: &str, negative: &str) -> Result<TaskData, SentEvalError> {
    let mut samples = Vec::new();
    for (file, label) in [(positive, 1), (negative, 0)] {
        let text = read(&dir.join(file), Encoding::Latin1)?;
        samples.extend(py_splitlines(&text).into_iter().map(|l| (tokens(l), label)));
    }
    Ok(TaskData::CrossValidated(sorted(samples)))
}

const TREC_CLASSES: [&str; 6] = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"];

/// `trec.py`: `COARSE:fine question…` per line.
fn trec_file(path: &Path) -> Result<LabelledTexts, SentEvalError> {
    let text = read(path, Encoding::Latin1)?;
    let mut samples = Vec::new();
    for (n, line) in universal_lines(&text).into_iter().enumerate() {
        let line = py_strip(line);
        let (target, rest) = line
            .split_once(':')
            .ok_or_else(|| malformed(path, n + 1, "no `LABEL:fine` prefix"))?;
        let label = TREC_CLASSES
            .iter()
            .position(|c| *c == target)
            .ok_or_else(|| malformed(path, n + 1, format!("unknown class {target:?}")))?;
        let (_, question) = rest
            .split_once(' ')
            .ok_or_else(|| malformed(path, n + 1, "no question after the label"))?;
        samples.push((tokens(question), label as u32));
    }
    Ok(sorted(samples))
}

/// `sst.py` (binary): `sentence<TAB>label` per line.
fn sst_file(path: &Path) -> Result<LabelledTexts, SentEvalError> {
    let text = read(path, Encoding::Utf8)?;
    let mut samples = Vec::new();
    for (n, line) in universal_lines(&text).into_iter().enumerate() {
        let mut fields = py_strip(line).split('\t');
        let sentence = fields.next().unwrap_or_default();
        let label = fields
            .next()
            .ok_or_else(|| malformed(path, n + 1, "no tab-separated label"))?;
        let label = binary_label(path, n + 1, label)?;
        samples.push((tokens(sentence), label));
    }
    Ok(sorted(samples))
}

/// `mrpc.py`: a header line, then `Quality<TAB>#1 ID<TAB>#2 ID<TAB>#1 String<TAB>#2 String`.
/// Pairs sort by (first's token count, second's token count, label).
fn mrpc_file(path: &Path) -> Result<LabelledPairs, SentEvalError> {
    let text = read(path, Encoding::Utf8)?;
    let mut rows = Vec::new();
    for (n, line) in universal_lines(&text).into_iter().enumerate().skip(1) {
        let fields: Vec<&str> = py_strip(line).split('\t').collect();
        if fields.len() < 5 {
            return Err(malformed(
                path,
                n + 1,
                format!("{} tab-separated fields, expected 5", fields.len()),
            ));
        }
        let label = binary_label(path, n + 1, fields[0])?;
        rows.push((tokens(fields[3]), tokens(fields[4]), label));
    }
    rows.sort_by_key(|(a, b, y)| (a.len(), b.len(), *y));
    let mut pairs = LabelledPairs::default();
    for (a, b, y) in rows {
        pairs.first.push(a.join(" "));
        pairs.second.push(b.join(" "));
        pairs.labels.push(y);
    }
    Ok(pairs)
}

fn require_dir(dir: &Path) -> Result<(), SentEvalError> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(SentEvalError::MissingTask(dir.to_path_buf()))
    }
}

/// Reads `task` from `data`, a folder laid out as SentEval's `data/downstream/` (`MR/`, `CR/`,
/// `SUBJ/`, `MPQA/`, `SST/binary/`, `TREC/`, `MRPC/`).
///
/// # Errors
/// [`SentEvalError::MissingTask`] when the task's folder is absent, [`SentEvalError::Io`] for
/// an unreadable file, [`SentEvalError::Malformed`] (with file and line) for a bad line,
/// [`SentEvalError::NotEnoughData`] for a split without examples or a training set of one
/// class.
pub fn load_task(data: &Path, task: Task) -> Result<TaskData, SentEvalError> {
    let dir: PathBuf = data.join(task.folder());
    require_dir(&dir)?;
    let loaded = read_task(&dir, task)?;
    check_classes(&dir, task, &loaded)?;
    Ok(loaded)
}

/// Refuses a task that cannot be scored meaningfully: an empty split (an empty or missing
/// file's worth of examples), or a training set with one class (any classifier scores 100 %
/// on it without learning anything).
fn check_classes(dir: &Path, task: Task, data: &TaskData) -> Result<(), SentEvalError> {
    let refuse = |split: &str, reason: String| {
        Err(SentEvalError::NotEnoughData {
            data: format!("{task} {split} ({})", dir.display()),
            reason,
        })
    };
    let classes = |labels: &[u32]| {
        let mut seen: Vec<u32> = labels.to_vec();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    };
    let splits: Vec<(&str, &[u32], bool)> = match data {
        TaskData::CrossValidated(all) => vec![("data", &all.labels, true)],
        TaskData::TrainTest { train, test } => {
            vec![
                ("train", &train.labels, true),
                ("test", &test.labels, false),
            ]
        }
        TaskData::TrainDevTest { train, dev, test } => vec![
            ("train", &train.labels, true),
            ("dev", &dev.labels, false),
            ("test", &test.labels, false),
        ],
        TaskData::Pairs { train, test } => {
            vec![
                ("train", &train.labels, true),
                ("test", &test.labels, false),
            ]
        }
    };
    for (split, labels, trains) in splits {
        if labels.is_empty() {
            return refuse(split, "it holds no examples (are its files empty?)".into());
        }
        if trains && classes(labels) < 2 {
            return refuse(
                split,
                format!(
                    "all {} examples have one label: a classifier scores 100 % on it without \
                     learning anything (is one of its files empty?)",
                    labels.len()
                ),
            );
        }
    }
    Ok(())
}

fn read_task(dir: &Path, task: Task) -> Result<TaskData, SentEvalError> {
    match task {
        Task::Mr => binary(dir, "rt-polarity.pos", "rt-polarity.neg"),
        Task::Cr => binary(dir, "custrev.pos", "custrev.neg"),
        Task::Subj => binary(dir, "subj.objective", "subj.subjective"),
        Task::Mpqa => binary(dir, "mpqa.pos", "mpqa.neg"),
        Task::Sst2 => Ok(TaskData::TrainDevTest {
            train: sst_file(&dir.join("sentiment-train"))?,
            dev: sst_file(&dir.join("sentiment-dev"))?,
            test: sst_file(&dir.join("sentiment-test"))?,
        }),
        Task::Trec => Ok(TaskData::TrainTest {
            train: trec_file(&dir.join("train_5500.label"))?,
            test: trec_file(&dir.join("TREC_10.label"))?,
        }),
        Task::Mrpc => Ok(TaskData::Pairs {
            train: mrpc_file(&dir.join("msr_paraphrase_train.txt"))?,
            test: mrpc_file(&dir.join("msr_paraphrase_test.txt"))?,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_files_and_one_class_tasks_are_errors_naming_the_task() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        let dir = root.join(Task::Mr.folder());
        std::fs::create_dir_all(&dir).expect("mkdir");
        for (pos, neg, needle) in [
            ("", "", "no examples"),
            ("", "bad film\nawful\n", "one label"),
            ("great\n", "", "one label"),
        ] {
            std::fs::write(dir.join("rt-polarity.pos"), pos).expect("write");
            std::fs::write(dir.join("rt-polarity.neg"), neg).expect("write");
            let err = load_task(root, Task::Mr).expect_err("refused").to_string();
            assert!(err.contains(needle) && err.contains("MR"), "{err}");
        }
        std::fs::write(dir.join("rt-polarity.pos"), "great\n").expect("write");
        std::fs::write(dir.join("rt-polarity.neg"), "awful\n").expect("write");
        assert!(load_task(root, Task::Mr).is_ok());
    }

    #[test]
    fn python_string_semantics() {
        assert_eq!(
            py_split(" a\u{a0}b\u{1f}c  d\t").collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
        assert_eq!(py_strip("\u{85} x \u{1c}"), "x");
        assert_eq!(
            py_splitlines("a\r\nb\rc\u{85}d\n\ne\n"),
            ["a", "b", "c", "d", "", "e"]
        );
        assert_eq!(py_splitlines(""), Vec::<&str>::new());
        assert_eq!(universal_lines("a\r\nb\u{85}c\rd"), ["a", "b\u{85}c", "d"]);
    }

    fn dir_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, bytes) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
            std::fs::write(path, bytes).expect("write");
        }
        dir
    }

    #[test]
    fn binary_tasks_keep_blanks_and_sort_by_length_then_label() {
        let dir = dir_with(&[
            ("CR/custrev.pos", b"good  one\n\nthe best thing\n"),
            ("CR/custrev.neg", b"bad\ncaf\xe9 M-i awful\n"),
        ]);
        let TaskData::CrossValidated(data) = load_task(dir.path(), Task::Cr).expect("loads") else {
            panic!("CR is cross-validated")
        };
        assert_eq!(
            data.texts,
            [
                "",
                "bad",
                "good one",
                "caf\u{e9} M-i awful",
                "the best thing"
            ]
        );
        assert_eq!(data.labels, [1, 0, 1, 0, 1]);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let dir = dir_with(&[
            ("TREC/train_5500.label", b"NUM:date When ?\nWHAT:x Why ?\n"),
            ("TREC/TREC_10.label", b"NUM:date When ?\n"),
        ]);
        let err = load_task(dir.path(), Task::Trec).expect_err("unknown class");
        let msg = err.to_string();
        assert!(
            msg.contains("train_5500.label") && msg.contains("line 2"),
            "{msg}"
        );

        let dir = dir_with(&[
            ("SST/binary/sentiment-train", b"fine .\t1\nno label\n"),
            ("SST/binary/sentiment-dev", b"a\t0\n"),
            ("SST/binary/sentiment-test", b"b\t1\n"),
        ]);
        let msg = load_task(dir.path(), Task::Sst2)
            .expect_err("missing label")
            .to_string();
        assert!(
            msg.contains("sentiment-train") && msg.contains("line 2"),
            "{msg}"
        );

        let dir = dir_with(&[
            (
                "MRPC/msr_paraphrase_train.txt",
                b"\xef\xbb\xbfQuality\th\n1\t1\t2\tA b\tA c\n2\t1\t2\tx\ty\n",
            ),
            ("MRPC/msr_paraphrase_test.txt", b"h\n"),
        ]);
        let msg = load_task(dir.path(), Task::Mrpc)
            .expect_err("label 2")
            .to_string();
        assert!(msg.contains("line 3") && msg.contains("\"2\""), "{msg}");

        let err = load_task(dir.path(), Task::Mr).expect_err("no MR folder");
        assert!(matches!(err, SentEvalError::MissingTask(_)), "{err}");
    }

    #[test]
    fn mrpc_pairs_sort_by_both_lengths_then_label() {
        let dir = dir_with(&[
            (
                "MRPC/msr_paraphrase_train.txt",
                b"\xef\xbb\xbfQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n\
                  1\t1\t2\tA b c\tA c\n0\t3\t4\tA b c\tX\n1\t5\t6\tZ\tY y\n",
            ),
            ("MRPC/msr_paraphrase_test.txt", b"header\n"),
        ]);
        // Parsing alone: `load_task` refuses the empty test split.
        let folder = dir.path().join(Task::Mrpc.folder());
        let TaskData::Pairs { train, test } = read_task(&folder, Task::Mrpc).expect("loads") else {
            panic!("MRPC is pairs")
        };
        assert_eq!(train.first, ["Z", "A b c", "A b c"]);
        assert_eq!(train.second, ["Y y", "X", "A c"]);
        assert_eq!(train.labels, [1, 0, 1]);
        assert!(test.labels.is_empty());
    }
}
