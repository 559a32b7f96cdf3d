//! Training data: the TSV layouts of `shared/data` (tab-separated, no quoting), read through
//! `sbert-eval`'s readers.

use std::path::Path;

pub use sbert_eval::{read_nli, NliExample, NliLabel, StsPair};

use crate::{Result, TrainError};

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

fn bad(path: &Path, line: usize, message: String) -> TrainError {
    TrainError::Format {
        path: path.to_path_buf(),
        line,
        message,
    }
}

/// Reads `score<TAB>sentence1<TAB>sentence2` rows (the STS reader of `sbert-eval`: same
/// layouts, same errors).
///
/// # Errors
/// A missing file, a row without 3 columns or with a non-numeric score (naming file and line),
/// or no rows.
pub fn read_scored_pairs(path: impl AsRef<Path>) -> Result<Vec<StsPair>> {
    Ok(sbert_eval::StsDataset::read(path, None)?.pairs)
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
    let rows = sbert_eval::read_tsv(path, |_| false)?;
    let is_nli = rows.first().is_some_and(|(_, c)| sbert_eval::is_nli_row(c));
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
