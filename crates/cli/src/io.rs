//! Reading texts and writing embeddings for the CLI.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

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

/// Reads all of `path` (`-` for standard input).
pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(bytes)
}

/// Splits the input into texts. Invalid UTF-8 is an error naming the line.
pub fn parse_texts(bytes: &[u8], format: InputFormat, source: &str) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // A final newline ends the last line; it does not start an empty one.
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    for (i, raw) in lines.into_iter().enumerate() {
        let line_no = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|e| {
            anyhow::anyhow!(
                "{source}: line {line_no}: invalid UTF-8 at byte {} of the line",
                e.valid_up_to()
            )
        })?;
        match format {
            InputFormat::Lines => texts.push(line.to_string()),
            InputFormat::Jsonl => texts.push(parse_json_text(line).with_context(|| {
                format!("{source}: line {line_no}: expected a JSON string or an object with a \"text\" string")
            })?),
        }
    }
    Ok(texts)
}

fn parse_json_text(line: &str) -> Result<String> {
    let value: serde_json::Value = serde_json::from_str(line)?;
    match value {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Object(mut obj) => match obj.remove("text") {
            Some(serde_json::Value::String(s)) => Ok(s),
            Some(other) => bail!("\"text\" is {other}, not a string"),
            None => bail!("the object has no \"text\" field"),
        },
        other => bail!("found {other}"),
    }
}

/// Writes to a file atomically (a temporary file renamed into place on success), or to stdout.
pub struct Output {
    writer: BufWriter<Box<dyn Write>>,
    rename: Option<(PathBuf, PathBuf)>,
}

impl Output {
    /// `-` is standard output.
    pub fn create(path: &Path) -> Result<Self> {
        if path == Path::new("-") {
            let out: Box<dyn Write> = Box::new(std::io::stdout().lock());
            return Ok(Self {
                writer: BufWriter::new(out),
                rename: None,
            });
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = PathBuf::from(tmp);
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        Ok(Self {
            writer: BufWriter::new(Box::new(file)),
            rename: Some((tmp, path.to_path_buf())),
        })
    }

    pub fn writer(&mut self) -> &mut dyn Write {
        &mut self.writer
    }

    /// Flushes and moves the file into place.
    pub fn finish(mut self) -> Result<()> {
        self.writer.flush().context("writing output")?;
        if let Some((tmp, path)) = self.rename.take() {
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("moving {} to {}", tmp.display(), path.display()))?;
        }
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        // Not finished: an error happened; leave no half-written file behind.
        if let Some((tmp, _)) = &self.rename {
            let _ = std::fs::remove_file(tmp);
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
    fn lines_keep_empty_lines_and_strip_crlf() {
        let texts = parse_texts(b"a\r\n\nb c\n", InputFormat::Lines, "in").expect("parse");
        assert_eq!(texts, vec!["a", "", "b c"]);
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let err = parse_texts(b"fine\nbad \xff byte\n", InputFormat::Lines, "in.txt")
            .expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "in.txt: line 2: invalid UTF-8 at byte 4 of the line"
        );
    }

    #[test]
    fn jsonl_takes_strings_and_text_objects() {
        let input = b"\"one\\ntwo\"\n{\"text\": \"three\", \"id\": 3}\n";
        let texts = parse_texts(input, InputFormat::Jsonl, "in").expect("parse");
        assert_eq!(texts, vec!["one\ntwo", "three"]);
        let err = parse_texts(b"{\"id\": 1}\n", InputFormat::Jsonl, "in").expect_err("no text");
        assert!(format!("{err:#}").contains("line 1"), "{err:#}");
        assert!(parse_texts(b"42\n", InputFormat::Jsonl, "in").is_err());
    }

    #[test]
    fn npy_header_is_aligned() {
        let h = npy_header(3, 384);
        assert_eq!(h.len() % 64, 0);
        assert!(h.ends_with(b"\n"));
        let text = String::from_utf8_lossy(&h[10..]);
        assert!(text.contains("'shape': (3, 384)"), "{text}");
    }
}
