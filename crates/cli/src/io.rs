//! Reading texts and writing embeddings for the CLI.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

/// How the input file is split into texts (sbert-io's, parsed by clap).
pub use sbert_io::TextFormat as InputFormat;

/// How embeddings are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One JSON array of floats per line, in input order.
    Jsonl,
    /// A float32 `(N, D)` array in NumPy's `.npy` format.
    Npy,
}

/// [`read_texts`], refusing a file without texts: `what` names it in the error.
pub fn read_nonempty(path: &Path, format: InputFormat, what: &str) -> Result<Vec<String>> {
    let texts = read_texts(path, format)?;
    if texts.is_empty() {
        anyhow::bail!("{what} {} holds no texts", path.display());
    }
    Ok(texts)
}

/// The pairs of a TSV file (`-` for standard input): two tab-separated columns per line.
pub fn read_pairs(path: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let lines = read_texts(path, InputFormat::Lines)?;
    let mut a = Vec::with_capacity(lines.len());
    let mut b = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() != 2 {
            anyhow::bail!(
                "{}: line {}: expected 2 tab-separated columns, found {}",
                path.display(),
                i + 1,
                cols.len()
            );
        }
        a.push(cols[0].to_string());
        b.push(cols[1].to_string());
    }
    Ok((a, b))
}

/// The texts of `path` (`-` for standard input) in `format`.
pub fn read_texts(path: &Path, format: InputFormat) -> Result<Vec<String>> {
    let source = if path == Path::new("-") {
        "standard input".to_string()
    } else {
        path.display().to_string()
    };
    let bytes = sbert_io::input::read_bytes(path)?;
    Ok(sbert_io::input::parse_texts(&bytes, format, &source)?)
}

/// A list of 0-based indices, one per line (blank lines skipped), as `--rows` and `--order`
/// take them.
pub fn read_indices(path: &Path) -> Result<Vec<usize>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            l.trim()
                .parse()
                .with_context(|| format!("{}: line {}: not an index: {l:?}", path.display(), i + 1))
        })
        .collect()
}

/// Where output goes: standard output, or a file written through [`sbert_io::output::OutputFile`]
/// (atomic for regular files, never replacing what is not a regular file).
pub enum Output {
    Stdout(BufWriter<std::io::StdoutLock<'static>>),
    File(Box<sbert_io::output::OutputFile>),
}

impl Output {
    /// `-` is standard output.
    pub fn create(path: &Path) -> Result<Self> {
        if path == Path::new("-") {
            return Ok(Self::Stdout(BufWriter::new(std::io::stdout().lock())));
        }
        Ok(Self::File(Box::new(sbert_io::output::OutputFile::create(
            path,
        )?)))
    }

    pub fn writer(&mut self) -> &mut dyn Write {
        match self {
            Self::Stdout(w) => w,
            Self::File(f) => f,
        }
    }

    /// Flushes and moves the file into place.
    pub fn finish(self) -> Result<()> {
        match self {
            Self::Stdout(mut w) => w.flush().context("writing standard output"),
            Self::File(f) => Ok(f.finish()?),
        }
    }
}

pub use sbert_io::npy_header;

/// Writes rows of floats in `format` (the npy header is written by the caller).
pub fn write_rows(
    out: &mut dyn Write,
    rows: &sbert::Embeddings,
    format: OutputFormat,
) -> Result<()> {
    for row in rows.rows() {
        match format {
            OutputFormat::Jsonl => {
                serde_json::to_writer(&mut *out, row)?;
                out.write_all(b"\n")?;
            }
            OutputFormat::Npy => {
                for x in row {
                    out.write_all(&x.to_le_bytes())?;
                }
            }
        }
    }
    Ok(())
}
