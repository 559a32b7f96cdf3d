//! Reading STS pair files.

use std::path::{Path, PathBuf};

use crate::EvalError;

/// One scored sentence pair.
#[derive(Debug, Clone, PartialEq)]
pub struct StsPair {
    /// The human similarity score (0–5 for STS, 1–5 for SICK-R); any scale works.
    pub score: f64,
    /// First sentence.
    pub sentence1: String,
    /// Second sentence.
    pub sentence2: String,
}

/// A named list of scored pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct StsDataset {
    /// Display name (`STSb-test`, `SICK-R`, …).
    pub name: String,
    /// Where it was read from.
    pub path: PathBuf,
    /// The pairs, in file order. Never empty.
    pub pairs: Vec<StsPair>,
}

impl StsDataset {
    /// Reads an STS file in either layout:
    ///
    /// * the TSV of `shared/data/*/`: a header line, then `score<TAB>sentence1<TAB>sentence2`,
    ///   no quoting (a first line whose score column is a number is read as data: the header
    ///   is optional);
    /// * the original STS Benchmark `sts-*.csv`: no header, 7 or more tab-separated columns
    ///   (genre, file, year, id, score, sentence1, sentence2, [license columns…]).
    ///
    /// The layout is told from the first line. `name` defaults to the file name.
    ///
    /// # Errors
    /// A missing or unreadable file, invalid UTF-8, a row with the wrong column count or a
    /// non-numeric score (naming file and line), or a file with no pairs.
    pub fn read(path: impl AsRef<Path>, name: Option<&str>) -> Result<Self, EvalError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| EvalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(bytes, path, name)
    }

    /// [`StsDataset::read`] on the bytes of a file; `path` names it in errors.
    ///
    /// # Errors
    /// As [`StsDataset::read`], except for reading.
    pub fn parse(bytes: Vec<u8>, path: &Path, name: Option<&str>) -> Result<Self, EvalError> {
        // The header (score, sentence1, sentence2) is told from a first data row by its score
        // column: a file without a header keeps its first pair. The original layout has none.
        let rows = tsv_rows(bytes, path, |cols| {
            cols.len() >= 7
                || (cols.len() == 3 && cols[0].trim().parse::<f64>().is_ok_and(f64::is_finite))
        })?;
        let original_stsb = rows.first().is_some_and(|(_, cols)| cols.len() >= 7);
        let (score_col, s1_col) = if original_stsb { (4, 5) } else { (0, 1) };
        let mut pairs = Vec::with_capacity(rows.len());
        for (line, mut cols) in rows {
            let ok = if original_stsb {
                cols.len() >= 7
            } else {
                cols.len() == 3
            };
            if !ok {
                let want = if original_stsb { "7 or more" } else { "3" };
                return Err(bad(
                    path,
                    line,
                    format!(
                        "expected {want} tab-separated columns, found {}",
                        cols.len()
                    ),
                ));
            }
            let score: f64 = cols[score_col]
                .trim()
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite())
                .ok_or_else(|| {
                    bad(
                        path,
                        line,
                        format!("score {:?} is not a number", cols[score_col]),
                    )
                })?;
            let sentence2 = std::mem::take(&mut cols[s1_col + 1]);
            let sentence1 = std::mem::take(&mut cols[s1_col]);
            pairs.push(StsPair {
                score,
                sentence1,
                sentence2,
            });
        }
        let name = name.map(str::to_string).unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string())
        });
        Ok(Self {
            name,
            path: path.to_path_buf(),
            pairs,
        })
    }

    /// The gold scores, in pair order.
    pub fn scores(&self) -> Vec<f64> {
        self.pairs.iter().map(|p| p.score).collect()
    }
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

/// The rows of a tab-separated file (no quoting; blank lines skipped; a UTF-8 byte-order mark
/// dropped) with their 1-based line numbers. The first line is a header unless `is_data` says
/// it is a row of data, so a file without a header keeps its first row.
///
/// # Errors
/// A missing or unreadable file, invalid UTF-8 (naming the line), or a file with no data rows.
pub fn read_tsv(
    path: &Path,
    is_data: fn(&[String]) -> bool,
) -> Result<Vec<(usize, Vec<String>)>, EvalError> {
    let bytes = std::fs::read(path).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    tsv_rows(bytes, path, is_data)
}

/// [`read_tsv`] on the bytes of a file; `path` names it in errors (invalid UTF-8 by line).
fn tsv_rows(
    bytes: Vec<u8>,
    path: &Path,
    is_data: impl Fn(&[String]) -> bool,
) -> Result<Vec<(usize, Vec<String>)>, EvalError> {
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        bad(path, line, "invalid UTF-8".into())
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
        return Err(EvalError::Empty(path.to_path_buf()));
    }
    Ok(out)
}

pub(crate) fn bad(path: &Path, line: usize, message: String) -> EvalError {
    EvalError::Format {
        path: path.to_path_buf(),
        line,
        message,
    }
}

/// Reads `premise<TAB>hypothesis<TAB>label` rows (entailment, neutral, contradiction); the
/// header line is optional (a first line with a label in its third column is data).
///
/// # Errors
/// As [`read_tsv`], a row without 3 columns (naming file and line), and an unknown label.
pub fn read_nli(path: impl AsRef<Path>) -> Result<Vec<NliExample>, EvalError> {
    let path = path.as_ref();
    read_tsv(path, is_nli_row)?
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
pub fn is_nli_row(cols: &[String]) -> bool {
    cols.len() == 3 && ["entailment", "neutral", "contradiction"].contains(&cols[2].trim())
}

/// The STS sets of the SBERT paper's Table 1, as (name, path relative to the data folder).
pub const SUITE: [(&str, &str); 7] = [
    ("STS12", "sts12/test.tsv"),
    ("STS13", "sts13/test.tsv"),
    ("STS14", "sts14/test.tsv"),
    ("STS15", "sts15/test.tsv"),
    ("STS16", "sts16/test.tsv"),
    ("STSb", "stsb/test.tsv"),
    ("SICK-R", "sick/test.tsv"),
];

/// The sets of the paper's pooling comparison (Table 6 layout): STSb dev and test, SICK-R test.
pub const POOLING_SETS: [(&str, &str); 3] = [
    ("STSb-dev", "stsb/dev.tsv"),
    ("STSb-test", "stsb/test.tsv"),
    ("SICK-R", "sick/test.tsv"),
];

/// Reads every set of `sets` found under `dir`; sets whose file is absent are skipped.
///
/// # Errors
/// When none is found, or a present file is malformed.
pub fn read_sets(dir: &Path, sets: &[(&str, &str)]) -> Result<Vec<StsDataset>, EvalError> {
    let found: Vec<StsDataset> = sets
        .iter()
        .filter(|(_, rel)| dir.join(rel).is_file())
        .map(|(name, rel)| StsDataset::read(dir.join(rel), Some(name)))
        .collect::<Result<_, _>>()?;
    if found.is_empty() {
        let names: Vec<&str> = sets.iter().map(|(_, rel)| *rel).collect();
        return Err(EvalError::NoSets {
            dir: dir.to_path_buf(),
            expected: names.join(", "),
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(content: &[u8]) -> (tempfile_dir::Dir, PathBuf) {
        let dir = tempfile_dir::Dir::new();
        let path = dir.0.join("set.tsv");
        std::fs::write(&path, content).expect("write");
        (dir, path)
    }

    /// A minimal self-cleaning temporary folder (keeps the crate free of dev-dependencies).
    mod tempfile_dir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static N: AtomicUsize = AtomicUsize::new(0);
                let p = std::env::temp_dir().join(format!(
                    "sbert-eval-test-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).expect("mkdir");
                Self(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn reads_the_shared_tsv_layout_with_quotes_kept() {
        let (_d, p) =
            write(b"score\tsentence1\tsentence2\n2.5\tA \"quoted\" girl.\tA girl.\n4\tx\ty\n");
        let ds = StsDataset::read(&p, None).expect("read");
        assert_eq!(ds.name, "set");
        assert_eq!(ds.pairs.len(), 2);
        assert_eq!(ds.pairs[0].sentence1, "A \"quoted\" girl.");
        assert_eq!(ds.scores(), vec![2.5, 4.0]);
    }

    #[test]
    fn reads_the_original_stsbenchmark_layout() {
        let (_d, p) = write(
            b"main-captions\tMSRvid\t2012test\t0001\t5.000\tA plane.\tAn air plane.\n\
              main-forums\tanswers\t2015\t0002\t0.800\tOne.\tTwo.\tsource\tlicense\n",
        );
        let ds = StsDataset::read(&p, Some("STSb")).expect("read");
        assert_eq!(ds.pairs.len(), 2);
        assert_eq!(ds.pairs[1].score, 0.8);
        assert_eq!(ds.pairs[1].sentence2, "Two.");
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let (_d, p) = write(b"score\ts1\ts2\n1.0\ta\tb\n2.0\tonly two\n");
        let err = StsDataset::read(&p, None).expect_err("columns").to_string();
        assert!(
            err.contains("set.tsv") && err.contains("line 3") && err.contains("found 2"),
            "{err}"
        );

        let (_d, p) = write(b"score\ts1\ts2\nhigh\ta\tb\n");
        let err = StsDataset::read(&p, None).expect_err("score").to_string();
        assert!(err.contains("line 2") && err.contains("\"high\""), "{err}");

        let (_d, p) = write(b"score\ts1\ts2\n");
        let err = StsDataset::read(&p, None).expect_err("empty");
        assert!(matches!(err, EvalError::Empty(_)), "{err}");

        let err = StsDataset::read("/no/such/file.tsv", None)
            .expect_err("missing")
            .to_string();
        assert!(err.contains("/no/such/file.tsv"), "{err}");

        let (_d, p) = write(b"score\ts1\ts2\n1\ta\tb\n2\t\xff\tc\n");
        let err = StsDataset::read(&p, None).expect_err("utf8").to_string();
        assert!(err.contains("line 3") && err.contains("UTF-8"), "{err}");
    }
}
