//! Embedding quantization with sentence-transformers 6.2's semantics (`quantize_embeddings`):
//! `int8`/`uint8` by per-dimension calibration ranges (255 buckets between each dimension's
//! minimum and maximum), `binary`/`ubinary` by the sign bit packed 8 to a byte; and exact search
//! over a quantized corpus with optional rescoring, as its `semantic_search_usearch`: candidates
//! by integer inner product (int8) or Hamming distance (binary), then the float query against the
//! dequantized (int8) or unpacked 0/1 (binary) candidates.

use std::str::FromStr;

use crate::scores::TopK;
use crate::{check_search, Hit, SearchError, Vectors};

/// A storage precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// 4 bytes per value, unchanged.
    Float32,
    /// 1 byte per value, buckets −128…127.
    Int8,
    /// 1 byte per value, buckets 0…255.
    Uint8,
    /// 1 bit per value (value > 0), as signed bytes (`packed − 128`).
    Binary,
    /// 1 bit per value, as unsigned bytes.
    Ubinary,
}

impl FromStr for Precision {
    type Err = SearchError;

    fn from_str(s: &str) -> Result<Self, SearchError> {
        Ok(match s {
            "float32" => Precision::Float32,
            "int8" => Precision::Int8,
            "uint8" => Precision::Uint8,
            "binary" => Precision::Binary,
            "ubinary" => Precision::Ubinary,
            other => return Err(SearchError::Precision(other.to_string())),
        })
    }
}

/// Per-dimension minimum and maximum: the calibration of `int8` and `uint8`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranges {
    /// Minimum per dimension.
    pub min: Vec<f32>,
    /// Maximum per dimension.
    pub max: Vec<f32>,
}

impl Ranges {
    /// The ranges of `calibration` (at least two rows; sentence-transformers recommends a
    /// representative set of hundreds or more).
    ///
    /// # Errors
    /// Fewer than two rows.
    pub fn from_calibration(calibration: &Vectors<'_>) -> Result<Self, SearchError> {
        if calibration.len() < 2 {
            return Err(SearchError::Empty("calibration set of at least two rows"));
        }
        let dim = calibration.dim();
        let (mut min, mut max) = (vec![f32::INFINITY; dim], vec![f32::NEG_INFINITY; dim]);
        for i in 0..calibration.len() {
            for (d, &v) in calibration.row(i).iter().enumerate() {
                min[d] = min[d].min(v);
                max[d] = max[d].max(v);
            }
        }
        Ok(Self { min, max })
    }

    fn steps(&self) -> Vec<f32> {
        self.min
            .iter()
            .zip(&self.max)
            .map(|(lo, hi)| {
                let s = (hi - lo) / 255.0;
                if s == 0.0 {
                    1.0
                } else {
                    s
                }
            })
            .collect()
    }
}

/// Quantized rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantized {
    /// The precision.
    pub precision: Precision,
    /// Values per original row.
    pub dim: usize,
    /// Bytes per stored row (`4·dim`, `dim`, or `⌈dim/8⌉`).
    pub row_bytes: usize,
    /// The stored bytes, row-major (float32 as little-endian bytes; int8 and binary as the
    /// two's-complement bytes of the signed values).
    pub data: Vec<u8>,
    /// The calibration used (`int8`, `uint8`).
    pub ranges: Option<Ranges>,
}

impl Quantized {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.data.len() / self.row_bytes.max(1)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn row(&self, i: usize) -> &[u8] {
        &self.data[i * self.row_bytes..(i + 1) * self.row_bytes]
    }
}

/// Quantizes `embeddings` to `precision`. `int8`/`uint8` use `ranges`, or the embeddings' own
/// (at least two rows) when none are given.
///
/// # Errors
/// `int8`/`uint8` without ranges and fewer than two rows; ranges of another dimension.
pub fn quantize(
    embeddings: &Vectors<'_>,
    precision: Precision,
    ranges: Option<&Ranges>,
) -> Result<Quantized, SearchError> {
    let dim = embeddings.dim();
    let n = embeddings.len();
    let (row_bytes, mut data) = match precision {
        Precision::Float32 => (4 * dim, Vec::with_capacity(4 * dim * n)),
        Precision::Int8 | Precision::Uint8 => (dim, Vec::with_capacity(dim * n)),
        Precision::Binary | Precision::Ubinary => {
            (dim.div_ceil(8), Vec::with_capacity(dim.div_ceil(8) * n))
        }
    };
    let mut used_ranges = None;
    match precision {
        Precision::Float32 => {
            for &v in embeddings.as_slice() {
                data.extend_from_slice(&v.to_le_bytes());
            }
        }
        Precision::Int8 | Precision::Uint8 => {
            let r = match ranges {
                Some(r) => r.clone(),
                None => Ranges::from_calibration(embeddings)?,
            };
            if r.min.len() != dim || r.max.len() != dim {
                return Err(SearchError::DimensionMismatch {
                    queries: r.min.len(),
                    corpus: dim,
                });
            }
            let steps = r.steps();
            for i in 0..n {
                for (d, &v) in embeddings.row(i).iter().enumerate() {
                    let q = ((v - r.min[d]) / steps[d]).floor().clamp(0.0, 255.0) as u8;
                    data.push(if precision == Precision::Int8 {
                        q.wrapping_sub(128)
                    } else {
                        q
                    });
                }
            }
            used_ranges = Some(r);
        }
        Precision::Binary | Precision::Ubinary => {
            for i in 0..n {
                for chunk in embeddings.row(i).chunks(8) {
                    let mut byte = 0u8;
                    for (b, &v) in chunk.iter().enumerate() {
                        if v > 0.0 {
                            byte |= 0x80 >> b;
                        }
                    }
                    data.push(if precision == Precision::Binary {
                        byte.wrapping_sub(128)
                    } else {
                        byte
                    });
                }
            }
        }
    }
    Ok(Quantized {
        precision,
        dim,
        row_bytes,
        data,
        ranges: used_ranges,
    })
}

/// The row of `q` back in float coordinates: float32 as is, int8/uint8 dequantized to bucket
/// starts (`steps`: the ranges' bucket widths, computed once per search), binary unpacked to
/// 0/1.
fn float_row(q: &Quantized, i: usize, steps: &[f32], out: &mut Vec<f32>) {
    out.clear();
    let row = q.row(i);
    match q.precision {
        Precision::Float32 => out.extend(
            row.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        Precision::Int8 | Precision::Uint8 => {
            let r = q.ranges.as_ref().expect("int8 rows carry their ranges");
            for (d, &b) in row.iter().enumerate() {
                let bucket = if q.precision == Precision::Int8 {
                    f64::from(b as i8) + 128.0
                } else {
                    f64::from(b)
                };
                out.push((bucket * f64::from(steps[d]) + f64::from(r.min[d])) as f32);
            }
        }
        Precision::Binary | Precision::Ubinary => {
            for d in 0..q.dim {
                let mut byte = row[d / 8];
                if q.precision == Precision::Binary {
                    byte = byte.wrapping_add(128);
                }
                out.push(f32::from((byte >> (7 - d % 8)) & 1));
            }
        }
    }
}

/// The candidate score of a quantized query row against a corpus row: integer inner product
/// (int8/uint8), negative Hamming distance (binary), float dot (float32).
fn coarse(q: &Quantized, qi: usize, c: &Quantized, ci: usize) -> f32 {
    let (a, b) = (q.row(qi), c.row(ci));
    match q.precision {
        Precision::Float32 => {
            let value = |b: &[u8]| f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            a.chunks_exact(4)
                .zip(b.chunks_exact(4))
                .map(|(u, v)| value(u) * value(v))
                .sum()
        }
        Precision::Int8 => a
            .iter()
            .zip(b)
            .map(|(&u, &v)| i32::from(u as i8) * i32::from(v as i8))
            .sum::<i32>() as f32,
        Precision::Uint8 => a
            .iter()
            .zip(b)
            .map(|(&u, &v)| i32::from(u) * i32::from(v))
            .sum::<i32>() as f32,
        Precision::Binary | Precision::Ubinary => {
            -(a.iter()
                .zip(b)
                .map(|(u, v)| (u ^ v).count_ones())
                .sum::<u32>() as f32)
        }
    }
}

/// Exact search of float `queries` over a quantized `corpus`: the `top_k` best per query.
/// With `rescore_multiplier = Some(m)`, `top_k · m` candidates are found on the quantized
/// values and re-ranked by the float query against the candidates' float reconstruction
/// (sentence-transformers' default multiplier is 2); with `None`, the candidate scores are
/// returned (integer inner products, or negative Hamming distances).
///
/// # Errors
/// Empty inputs, a dimension mismatch, a `top_k` of 0 (capped at the corpus size), or a zero multiplier.
pub fn search_quantized(
    queries: &Vectors<'_>,
    corpus: &Quantized,
    top_k: usize,
    rescore_multiplier: Option<usize>,
) -> Result<Vec<Vec<Hit>>, SearchError> {
    let top_k = check_search(queries, corpus.len(), corpus.dim, top_k)?;
    if rescore_multiplier == Some(0) {
        return Err(SearchError::Zero("rescore_multiplier"));
    }
    let q = quantize(queries, corpus.precision, corpus.ranges.as_ref())?;
    let candidates = rescore_multiplier.map_or(top_k, |m| (top_k * m).min(corpus.len()));
    let mut out = Vec::with_capacity(queries.len());
    let mut row = Vec::with_capacity(corpus.dim);
    let steps = corpus
        .ranges
        .as_ref()
        .map(Ranges::steps)
        .unwrap_or_default();
    for qi in 0..queries.len() {
        let mut best = TopK::new(candidates);
        for ci in 0..corpus.len() {
            best.push(coarse(&q, qi, corpus, ci), ci);
        }
        let found = best.into_sorted();
        let hits: Vec<Hit> = if rescore_multiplier.is_some() {
            let query = queries.row(qi);
            let mut again = TopK::new(top_k);
            for s in found {
                float_row(corpus, s.id, &steps, &mut row);
                let score: f64 = query
                    .iter()
                    .zip(&row)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum();
                again.push(score as f32, s.id);
            }
            again
                .into_sorted()
                .into_iter()
                .map(|s| Hit {
                    corpus_id: s.id,
                    score: s.score,
                })
                .collect()
        } else {
            found
                .into_iter()
                .map(|s| Hit {
                    corpus_id: s.id,
                    score: s.score,
                })
                .collect()
        };
        out.push(hits);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_and_binary_follow_sentence_transformers() {
        // Values checked with sentence_transformers.quantization.quantize_embeddings (6.2):
        // ranges min [-1, 0, 2], max [1, 2, 2] (a flat dimension gets step 1).
        let rows = [-1.0f32, 0.0, 2.0, 1.0, 2.0, 2.0, 0.0, 1.0, 2.0];
        let e = Vectors::new(&rows, 3).expect("rows");
        let u = quantize(&e, Precision::Uint8, None).expect("uint8");
        // 2 / (2/255) is 254.99998 in f32: the top bucket is 254, as in numpy.
        assert_eq!(u.data, [0, 0, 0, 254, 254, 0, 127, 127, 0]);
        let i = quantize(&e, Precision::Int8, None).expect("int8");
        let signed: Vec<i8> = i.data.iter().map(|&b| b as i8).collect();
        assert_eq!(signed, [-128, -128, -128, 126, 126, -128, -1, -1, -128]);
        let bits = [0.5f32, -1.0, 0.0, 2.0, 1.0, 1.0, -3.0, 0.1, 0.2];
        let b = quantize(
            &Vectors::new(&bits, 9).expect("rows"),
            Precision::Ubinary,
            None,
        )
        .expect("ubinary");
        assert_eq!(b.data, [0b1001_1101, 0b1000_0000]);
        let s = quantize(
            &Vectors::new(&bits, 9).expect("rows"),
            Precision::Binary,
            None,
        )
        .expect("binary");
        assert_eq!(s.data.iter().map(|&x| x as i8).collect::<Vec<_>>(), [29, 0]);
        assert!(quantize(
            &Vectors::new(&[1.0, 2.0], 2).expect("one row"),
            Precision::Int8,
            None
        )
        .is_err());
    }

    #[test]
    fn rescored_binary_search_finds_the_float_neighbours() {
        // 200 pseudo-random unit vectors in 16 dimensions; queries are corpus points.
        let mut next = crate::uniform(7);
        let rows: Vec<f32> = (0..200)
            .flat_map(|_| {
                let v: Vec<f32> = (0..16).map(|_| next()).collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.into_iter().map(move |x| x / norm)
            })
            .collect();
        let e = Vectors::new(&rows, 16).expect("rows");
        let exact = crate::semantic_search(&e, &e, 1, crate::Score::Dot).expect("exact");
        for precision in [Precision::Int8, Precision::Float32] {
            let q = quantize(&e, precision, None).expect("quantized");
            let hits = search_quantized(&e, &q, 1, Some(4)).expect("search");
            let agree = hits
                .iter()
                .zip(&exact)
                .filter(|(a, b)| a[0].corpus_id == b[0].corpus_id)
                .count();
            assert!(agree >= 195, "{precision:?}: {agree}/200");
        }
        let b = quantize(&e, Precision::Binary, None).expect("binary");
        let coarse = search_quantized(&e, &b, 3, None).expect("search");
        assert!(
            coarse.iter().all(|h| h[0].score == 0.0),
            "a point is at Hamming distance 0 from itself"
        );
        assert!(search_quantized(&e, &b, 3, Some(0)).is_err());
    }
}
