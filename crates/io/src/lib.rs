//! Files in and out for sbert's command line and trainer, without losing what was there.
//!
//! * [`input`]: texts to embed, one per line or one JSON value per line, read with fallible
//!   allocations and every malformed line named.
//! * [`output`]: files written through a temporary and renamed into place, folders staged
//!   beside their target and swapped in whole, and [`output::remove_temporaries`] for a
//!   signal handler.
//! * [`npy_header`]: the header of a float32 `.npy` array.
//!
//! The embedding library (`sbert`) reads model folders only; everything a program reads from
//! its user or writes for them lives here, the one module with process-wide state (the
//! registry of temporaries a signal handler removes).
//!
//! ```
//! use sbert_io::input::{parse_texts, TextFormat};
//!
//! let texts = parse_texts(b"\xEF\xBB\xBFfirst\r\n{\"text\": \"second\"}\n", TextFormat::Lines, "example")?;
//! assert_eq!(texts, ["first", "{\"text\": \"second\"}"]);
//! let texts = parse_texts(b"\"first\"\n{\"text\": \"second\"}\n", TextFormat::Jsonl, "example")?;
//! assert_eq!(texts, ["first", "second"]);
//! # Ok::<(), sbert_io::Error>(())
//! ```
#![warn(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]

pub mod input;
pub mod output;

use std::path::PathBuf;

pub use input::TextFormat;

/// What can go wrong reading a user's input or writing their output.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file (`-` for standard input).
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file or folder could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing to a path would destroy something that was not created here or that the user
    /// did not ask to replace (a folder, a device, a dangling link, a folder of their files).
    #[error("refusing to write {}: {reason}", path.display())]
    Refused {
        /// The path.
        path: PathBuf,
        /// Why, and what to do instead.
        reason: String,
    },
    /// A malformed line of an input file.
    #[error("{source_name}: line {line}: {message}")]
    Input {
        /// The file, or "standard input".
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An allocation sized by the input failed.
    #[error("out of memory: {0}")]
    OutOfMemory(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The `.npy` v1.0 header of a little-endian float32 C-order `(rows, cols)` array: write it,
/// then the `rows × cols` values row after row, and NumPy's `np.load` reads the file.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned() {
        let h = npy_header(3, 384);
        assert_eq!(h.len() % 64, 0);
        assert!(h.ends_with(b"\n"));
        assert!(String::from_utf8_lossy(&h).contains("'shape': (3, 384)"));
    }
}
