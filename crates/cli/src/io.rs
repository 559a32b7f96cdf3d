//! Reading texts and writing embeddings for the CLI.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

/// How the input file is split into texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// One text per line (`\n` or `\r\n`); an empty line is the empty text.
    Lines,
    /// One JSON value per line: a string, or an object with a string field `"text"`.
    Jsonl,
}

/// How embeddings are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One JSON array of floats per line, in input order.
    Jsonl,
    /// A float32 `(N, D)` array in NumPy's `.npy` format.
    Npy,
}

impl From<InputFormat> for sbert::input::TextFormat {
    fn from(f: InputFormat) -> Self {
        match f {
            InputFormat::Lines => sbert::input::TextFormat::Lines,
            InputFormat::Jsonl => sbert::input::TextFormat::Jsonl,
        }
    }
}

/// [`read_texts`], refusing a file without texts: `what` names it in the error.
pub fn read_nonempty(path: &Path, format: InputFormat, what: &str) -> Result<Vec<String>> {
    let texts = read_texts(path, format)?;
    if texts.is_empty() {
        anyhow::bail!("{what} {} holds no texts", path.display());
    }
    Ok(texts)
}

/// The texts of `path` (`-` for standard input) in `format`.
pub fn read_texts(path: &Path, format: InputFormat) -> Result<Vec<String>> {
    let source = if path == Path::new("-") {
        "standard input".to_string()
    } else {
        path.display().to_string()
    };
    let bytes = sbert::input::read_bytes(path)?;
    Ok(sbert::input::parse_texts(&bytes, format.into(), &source)?)
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

/// Where output goes: standard output, or a file written through [`sbert::output::OutputFile`]
/// (atomic for regular files, never replacing what is not a regular file).
pub enum Output {
    Stdout(BufWriter<std::io::StdoutLock<'static>>),
    File(Box<sbert::output::OutputFile>),
}

impl Output {
    /// `-` is standard output.
    pub fn create(path: &Path) -> Result<Self> {
        if path == Path::new("-") {
            return Ok(Self::Stdout(BufWriter::new(std::io::stdout().lock())));
        }
        Ok(Self::File(Box::new(sbert::output::OutputFile::create(
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

/// The `.npy` v1.0 header of a little-endian float32 C-order `(rows, cols)` array.
pub fn npy_header(rows: usize, cols: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // magic (6) + version (2) + header length (2) + dict + padding + '\n' ≡ 0 mod 64.
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let header_len = dict.len() + pad + 1;
    let mut out = Vec::with_capacity(10 + header_len);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    out
}

/// Writes rows of floats in `format` (the npy header is written by the caller).
pub fn write_rows(out: &mut dyn Write, rows: &[Vec<f32>], format: OutputFormat) -> Result<()> {
    for row in rows {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned() {
        let h = npy_header(3, 384);
        assert_eq!(h.len() % 64, 0);
        assert!(h.ends_with(b"\n"));
        let text = String::from_utf8_lossy(&h[10..]);
        assert!(text.contains("'shape': (3, 384)"), "{text}");
    }
}
