//! Reading texts to embed: one per line, or one JSON value per line.
//!
//! Both formats accept what editors and other tools commonly write: a UTF-8 byte-order mark at
//! the start (dropped), `\r\n` line ends, and a final newline. Invalid UTF-8 and malformed JSON
//! are errors naming the line; nothing is skipped silently.

use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

/// How a file is split into texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum TextFormat {
    /// One text per line (`\n` or `\r\n`); an empty line is the empty text.
    #[default]
    Lines,
    /// One JSON value per line: a string, or an object with a string field `"text"`. Blank
    /// lines at the end of the file are ignored; a blank line before the last value is an
    /// error (it would shift every later text's position).
    Jsonl,
}

fn bad_line(source: &str, line: usize, message: impl Into<String>) -> Error {
    Error::Input {
        source_name: source.to_string(),
        line,
        message: message.into(),
    }
}

/// Reads all of `path` (`-` for standard input) into memory, growing the buffer with fallible
/// allocations: an input too large for memory is [`Error::OutOfMemory`], not an abort.
///
/// # Errors
/// When the file cannot be read, or memory runs out.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let io = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    if path == Path::new("-") {
        return read_all(&mut std::io::stdin().lock(), 0, "standard input").map_err(|e| match e {
            ReadError::Io(source) => Error::Read {
                path: path.to_path_buf(),
                source,
            },
            ReadError::Memory(m) => Error::OutOfMemory(m),
        });
    }
    let mut file = std::fs::File::open(path).map_err(io)?;
    let hint = file.metadata().map(|m| m.len()).unwrap_or(0);
    read_all(&mut file, hint, &path.display().to_string()).map_err(|e| match e {
        ReadError::Io(source) => io(source),
        ReadError::Memory(m) => Error::OutOfMemory(m),
    })
}

enum ReadError {
    Io(std::io::Error),
    Memory(String),
}

fn read_all(
    reader: &mut dyn Read,
    hint: u64,
    name: &str,
) -> std::result::Result<Vec<u8>, ReadError> {
    let mut bytes: Vec<u8> = Vec::new();
    let reserve = |bytes: &mut Vec<u8>, extra: usize| {
        bytes.try_reserve(extra).map_err(|_| {
            ReadError::Memory(format!(
                "reading {name}: cannot hold {} more bytes after {}",
                extra,
                bytes.len()
            ))
        })
    };
    reserve(
        &mut bytes,
        usize::try_from(hint)
            .unwrap_or(usize::MAX)
            .saturating_add(1),
    )?;
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(bytes),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        };
        if bytes.capacity() - bytes.len() < n {
            // Grow geometrically, but through a fallible reservation.
            let extra = n.max(bytes.len());
            reserve(&mut bytes, extra)?;
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
}

/// Splits `bytes` into texts in `format`; `source` names the input in errors (a path, or
/// "standard input").
///
/// # Errors
/// [`Error::Input`] naming the line: invalid UTF-8 (with the byte offset), a jsonl line that
/// is not a JSON string or an object with a string `"text"`, a blank jsonl line between values.
pub fn parse_texts(bytes: &[u8], format: TextFormat, source: &str) -> Result<Vec<String>> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // A final newline ends the last line; it does not start an empty one.
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    if format == TextFormat::Jsonl {
        while lines
            .last()
            .is_some_and(|l| l.iter().all(u8::is_ascii_whitespace))
        {
            lines.pop();
        }
    }
    let mut texts = Vec::new();
    texts
        .try_reserve_exact(lines.len())
        .map_err(|_| Error::OutOfMemory(format!("{source}: {} lines", lines.len())))?;
    for (i, raw) in lines.into_iter().enumerate() {
        let line_no = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|e| {
            bad_line(
                source,
                line_no,
                format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()),
            )
        })?;
        texts.push(match format {
            TextFormat::Lines => line.to_string(),
            TextFormat::Jsonl => json_text(line).map_err(|m| bad_line(source, line_no, m))?,
        });
    }
    Ok(texts)
}

fn json_text(line: &str) -> std::result::Result<String, String> {
    const EXPECTED: &str = "expected a JSON string or an object with a \"text\" string";
    if line.trim().is_empty() {
        return Err(format!("blank line; {EXPECTED} (the empty text is \"\")"));
    }
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("{EXPECTED}: {e}"))?;
    match value {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Object(mut obj) => match obj.remove("text") {
            Some(serde_json::Value::String(s)) => Ok(s),
            Some(other) => Err(format!("{EXPECTED}: \"text\" is {other}")),
            None => Err(format!("{EXPECTED}: the object has no \"text\" field")),
        },
        other => Err(format!("{EXPECTED}, found {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_empty_lines_and_strip_crlf_and_bom() -> Result<()> {
        let texts = parse_texts(b"\xef\xbb\xbfa\r\n\nb c\n", TextFormat::Lines, "in")?;
        assert_eq!(texts, vec!["a", "", "b c"]);
        Ok(())
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let err = parse_texts(b"fine\nbad \xff byte\n", TextFormat::Lines, "in.txt")
            .expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "in.txt: line 2: invalid UTF-8 at byte 4 of the line"
        );
    }

    #[test]
    fn jsonl_takes_strings_and_text_objects_a_bom_and_trailing_blank_lines() -> Result<()> {
        let input = b"\xef\xbb\xbf\"one\\ntwo\"\r\n{\"text\": \"three\", \"id\": 3}\n\n  \n";
        let texts = parse_texts(input, TextFormat::Jsonl, "in")?;
        assert_eq!(texts, vec!["one\ntwo", "three"]);
        let err = parse_texts(b"{\"id\": 1}\n", TextFormat::Jsonl, "in").expect_err("no text");
        assert!(err.to_string().contains("line 1"), "{err}");
        assert!(parse_texts(b"42\n", TextFormat::Jsonl, "in").is_err());
        let err = parse_texts(b"\"a\"\n\n\"b\"\n", TextFormat::Jsonl, "in").expect_err("gap");
        assert!(err.to_string().contains("line 2: blank line"), "{err}");
        Ok(())
    }

    #[test]
    fn reading_grows_through_fallible_reservations() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let read = read_all(&mut data.as_slice(), 0, "mem").ok().expect("read");
        assert_eq!(read, data);
    }
}
