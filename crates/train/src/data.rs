//! Training data: the TSV layouts of `shared/data` (header line, tab-separated, no quoting).

use std::path::Path;

use crate::{Result, TrainError};

/// A sentence pair with a similarity score (STS layout `score, sentence1, sentence2`).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredPair {
    /// First sentence.
    pub a: String,
    /// Second sentence.
    pub b: String,
    /// The gold score as written in the file (0–5 for STS).
    pub score: f32,
}

/// An NLI label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NliLabel {
    /// The hypothesis follows from the premise.
    Entailment,
    /// Neither follows nor contradicts.
    Neutral,
    /// The hypothesis contradicts the premise.
    Contradiction,
}

impl NliLabel {
    /// Class index, in sentence-transformers' NLI example order.
    pub fn index(self) -> u32 {
        match self {
            NliLabel::Contradiction => 0,
            NliLabel::Entailment => 1,
            NliLabel::Neutral => 2,
        }
    }
}

/// A premise, a hypothesis and their label (NLI layout `premise, hypothesis, label`).
#[derive(Debug, Clone, PartialEq)]
pub struct NliExample {
    /// Premise.
    pub premise: String,
    /// Hypothesis.
    pub hypothesis: String,
    /// Label.
    pub label: NliLabel,
}

/// A (query, positive) pair for in-batch negatives, with an optional hard negative.
#[derive(Debug, Clone, PartialEq)]
pub struct PairExample {
    /// The anchor.
    pub query: String,
    /// Its positive.
    pub positive: String,
    /// A hard negative for this pair.
    pub negative: Option<String>,
}

/// The data rows of a TSV file with their 1-based line numbers. The first line is a header
/// unless `is_data` says it is a row of data (a file without a header keeps its first row).
fn rows(path: &Path, is_data: fn(&[String]) -> bool) -> Result<Vec<(usize, Vec<String>)>> {
    let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut out: Vec<(usize, Vec<String>)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.split('\t').map(str::to_string).collect()))
        .collect();
    if out
        .first()
        .is_some_and(|(line, cols)| *line == 1 && !is_data(cols))
    {
        out.remove(0);
    }
    if out.is_empty() {
        return Err(TrainError::Invalid(format!(
            "{} has no data rows",
            path.display()
        )));
    }
    Ok(out)
}

fn bad(path: &Path, line: usize, message: String) -> TrainError {
    TrainError::Format {
        path: path.to_path_buf(),
        line,
        message,
    }
}

/// Reads `score<TAB>sentence1<TAB>sentence2` rows.
///
/// # Errors
/// A missing file, a row without 3 columns or with a non-numeric score (naming file and line),
/// or no rows.
pub fn read_scored_pairs(path: impl AsRef<Path>) -> Result<Vec<ScoredPair>> {
    // The STS reader of sbert-eval: same layout, same errors.
    let ds = sbert_eval::StsDataset::read(path, None)?;
    Ok(ds
        .pairs
        .into_iter()
        .map(|p| ScoredPair {
            a: p.sentence1,
            b: p.sentence2,
            score: p.score as f32,
        })
        .collect())
}

/// Reads `premise<TAB>hypothesis<TAB>label` rows (entailment, neutral, contradiction); the
/// header line is optional (a first line with a label in its third column is data).
///
/// # Errors
/// As [`read_scored_pairs`], and an unknown label.
pub fn read_nli(path: impl AsRef<Path>) -> Result<Vec<NliExample>> {
    let path = path.as_ref();
    rows(path, is_nli_row)?
        .into_iter()
        .map(|(line, cols)| {
            if cols.len() != 3 {
                return Err(bad(
                    path,
                    line,
                    format!("expected 3 columns, found {}", cols.len()),
                ));
            }
            let label = match cols[2].trim() {
                "entailment" => NliLabel::Entailment,
                "neutral" => NliLabel::Neutral,
                "contradiction" => NliLabel::Contradiction,
                other => {
                    return Err(bad(
                        path,
                        line,
                        format!("label {other:?} is not entailment, neutral or contradiction"),
                    ))
                }
            };
            Ok(NliExample {
                premise: cols[0].clone(),
                hypothesis: cols[1].clone(),
                label,
            })
        })
        .collect()
}

/// Whether a row is an NLI example (its third column a label).
fn is_nli_row(cols: &[String]) -> bool {
    cols.len() == 3 && ["entailment", "neutral", "contradiction"].contains(&cols[2].trim())
}

/// The (premise, hypothesis) pairs of the entailment examples, in order.
pub fn entailment_pairs(examples: Vec<NliExample>) -> Vec<PairExample> {
    examples
        .into_iter()
        .filter(|e| e.label == NliLabel::Entailment)
        .map(|e| PairExample {
            query: e.premise,
            positive: e.hypothesis,
            negative: None,
        })
        .collect()
}

/// Reads `query<TAB>positive[<TAB>negative]` rows after a header line (required: free text
/// cannot tell a header from data); an NLI file yields its entailment pairs.
///
/// # Errors
/// As [`read_scored_pairs`].
pub fn read_pairs(path: impl AsRef<Path>) -> Result<Vec<PairExample>> {
    let path = path.as_ref();
    // Free text in every column: the first line is always the header.
    let rows = rows(path, |_| false)?;
    let is_nli = rows.first().is_some_and(|(_, c)| is_nli_row(c));
    if is_nli {
        return Ok(entailment_pairs(read_nli(path)?));
    }
    rows.into_iter()
        .map(|(line, cols)| match cols.len() {
            2 | 3 => Ok(PairExample {
                query: cols[0].clone(),
                positive: cols[1].clone(),
                negative: cols.get(2).cloned(),
            }),
            n => Err(bad(
                path,
                line,
                format!("expected 2 or 3 columns, found {n}"),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("train.tsv");
        std::fs::write(&path, content).expect("write");
        (dir, path)
    }

    #[test]
    fn malformed_rows_name_file_and_line() {
        let (_d, p) = file("score\ts1\ts2\n1.0\ta\tb\nhigh\tc\td\n");
        let err = read_scored_pairs(&p).expect_err("score").to_string();
        assert!(
            err.contains("train.tsv: line 3") && err.contains("\"high\""),
            "{err}"
        );

        let (_d, p) = file("premise\thypothesis\tlabel\na\tb\tentailment\nc\td\tmaybe\n");
        let err = read_nli(&p).expect_err("label").to_string();
        assert!(err.contains("line 3") && err.contains("maybe"), "{err}");

        let (_d, p) = file("q\tp\na\n");
        let err = read_pairs(&p).expect_err("columns").to_string();
        assert!(err.contains("line 2") && err.contains("found 1"), "{err}");
    }

    #[test]
    fn nli_files_give_their_entailment_pairs() {
        let (_d, p) =
            file("premise\thypothesis\tlabel\na\tb\tentailment\nc\td\tneutral\ne\tf\tentailment\n");
        let pairs = read_pairs(&p).expect("pairs");
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[1].query, "e");
        assert_eq!(read_nli(&p).expect("nli")[1].label, NliLabel::Neutral);
    }
}
