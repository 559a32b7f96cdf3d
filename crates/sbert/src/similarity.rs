//! Similarity between embeddings, with sentence-transformers' names and signs.
//!
//! Matrix forms take `a (n, d)` and `b (m, d)` and return `(n, m)`; pairwise forms take two
//! `(n, d)` tensors and return `(n,)`. Distances are negated so that for every function larger
//! means more similar, as in sentence-transformers' `SimilarityFunction`.

use std::fmt;
use std::str::FromStr;

use candle_core::{Tensor, D};

use crate::error::{Error, Result};

/// A similarity function between two embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Similarity {
    /// Cosine of the angle, in `[-1, 1]`.
    Cosine,
    /// Dot product.
    Dot,
    /// Negative Euclidean (L2) distance.
    Euclidean,
    /// Negative Manhattan (L1) distance.
    Manhattan,
}

impl Similarity {
    /// Every function, in the order sentence-transformers' evaluator reports them.
    pub const ALL: [Similarity; 4] = [
        Similarity::Cosine,
        Similarity::Dot,
        Similarity::Euclidean,
        Similarity::Manhattan,
    ];

    /// `(n, d)`, `(m, d)` → `(n, m)`.
    ///
    /// # Errors
    /// When the widths differ or the inputs are not 2-D.
    pub fn matrix(self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        check_widths(a, b)?;
        Ok(match self {
            Similarity::Cosine => normalize(a)?.matmul(&normalize(b)?.t()?)?,
            Similarity::Dot => a.matmul(&b.t()?)?,
            Similarity::Euclidean | Similarity::Manhattan => {
                let diff = a.unsqueeze(1)?.broadcast_sub(&b.unsqueeze(0)?)?; // (n, m, d)
                distance(self, &diff)?.neg()?
            }
        })
    }

    /// `(n, d)`, `(n, d)` → `(n,)`, the similarity of row i of `a` with row i of `b`.
    ///
    /// # Errors
    /// When the shapes differ.
    pub fn pairwise(self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        if a.dims() != b.dims() {
            return Err(Error::InvalidArgument(format!(
                "pairwise similarity needs equal shapes, got {:?} and {:?}",
                a.dims(),
                b.dims()
            )));
        }
        Ok(match self {
            Similarity::Cosine => (normalize(a)? * normalize(b)?)?.sum(D::Minus1)?,
            Similarity::Dot => (a * b)?.sum(D::Minus1)?,
            Similarity::Euclidean | Similarity::Manhattan => distance(self, &(a - b)?)?.neg()?,
        })
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Similarity::Cosine => "cosine",
            Similarity::Dot => "dot",
            Similarity::Euclidean => "euclidean",
            Similarity::Manhattan => "manhattan",
        }
    }
}

impl fmt::Display for Similarity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Similarity {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cosine" | "cos" => Ok(Similarity::Cosine),
            "dot" => Ok(Similarity::Dot),
            "euclidean" | "l2" => Ok(Similarity::Euclidean),
            "manhattan" | "l1" => Ok(Similarity::Manhattan),
            _ => Err(Error::InvalidArgument(format!(
                "unknown similarity {s:?}; valid: cosine, dot, euclidean, manhattan"
            ))),
        }
    }
}

/// L2 distance (`Euclidean`) or L1 distance (`Manhattan`) over the last dimension of `diff`.
fn distance(kind: Similarity, diff: &Tensor) -> Result<Tensor> {
    Ok(match kind {
        Similarity::Manhattan => diff.abs()?.sum(D::Minus1)?,
        _ => diff.sqr()?.sum(D::Minus1)?.sqrt()?,
    })
}

fn check_widths(a: &Tensor, b: &Tensor) -> Result<()> {
    let (_, da) = a.dims2()?;
    let (_, db) = b.dims2()?;
    if da != db {
        return Err(Error::InvalidArgument(format!(
            "embeddings of width {da} and {db} cannot be compared"
        )));
    }
    Ok(())
}

/// L2-normalizes the rows of `(n, d)`: `x / max(‖x‖, 1e-12)`, as `torch.nn.functional.normalize`.
///
/// # Errors
/// On a tensor op failure.
pub fn normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::INFINITY)?;
    Ok(x.broadcast_div(&norm)?)
}

/// Cosine similarity matrix: `a (n, d)`, `b (m, d)` → `(n, m)` (sentence-transformers `cos_sim`).
///
/// # Errors
/// When the widths differ.
pub fn cos_sim(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Similarity::Cosine.matrix(a, b)
}

/// Row-wise cosine similarity: `a (n, d)`, `b (n, d)` → `(n,)` (`pairwise_cos_sim`).
///
/// # Errors
/// When the shapes differ.
pub fn pairwise_cos_sim(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Similarity::Cosine.pairwise(a, b)
}

/// Cosine similarity of two plain vectors, accumulated in f64; 0 when either is all zeros,
/// exactly 1 for equal vectors, and always in [-1, 1]. Vectors of different lengths are
/// compared over their common prefix: check lengths first, or use [`Similarity::pairwise`],
/// which does.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a == b && a.iter().any(|&x| x != 0.0) {
        return 1.0;
    }
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        dot += f64::from(x) * f64::from(y);
        na += f64::from(x) * f64::from(x);
        nb += f64::from(y) * f64::from(y);
    }
    let denom = na.sqrt().max(1e-12) * nb.sqrt().max(1e-12);
    (dot / denom).clamp(-1.0, 1.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(rows: &[[f32; 2]]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (rows.len(), 2), &Device::Cpu).expect("tensor")
    }

    #[test]
    fn matrix_and_pairwise_agree_with_hand_values() {
        let a = t(&[[3., 4.], [1., 0.]]);
        let b = t(&[[0., 2.], [1., 0.]]);
        let cos: Vec<Vec<f32>> = cos_sim(&a, &b).expect("cos").to_vec2().expect("v");
        assert_eq!(cos, vec![vec![0.8, 0.6], vec![0., 1.]]);
        let dot: Vec<Vec<f32>> = Similarity::Dot
            .matrix(&a, &b)
            .expect("dot")
            .to_vec2()
            .expect("v");
        assert_eq!(dot, vec![vec![8., 3.], vec![0., 1.]]);
        let l2: Vec<f32> = Similarity::Euclidean
            .pairwise(&a, &b)
            .expect("l2")
            .to_vec1()
            .expect("v");
        assert_eq!(l2, vec![-13f32.sqrt(), 0.]);
        let l1: Vec<Vec<f32>> = Similarity::Manhattan
            .matrix(&a, &b)
            .expect("l1")
            .to_vec2()
            .expect("v");
        assert_eq!(l1, vec![vec![-5., -6.], vec![-3., 0.]]);
        let pc: Vec<f32> = pairwise_cos_sim(&a, &b).expect("pc").to_vec1().expect("v");
        assert_eq!(pc, vec![0.8, 1.]);
    }

    #[test]
    fn zero_vectors_do_not_give_nan_and_widths_are_checked() {
        let z = t(&[[0., 0.]]);
        let v: Vec<Vec<f32>> = cos_sim(&z, &z).expect("cos").to_vec2().expect("v");
        assert_eq!(v, vec![vec![0.]]);
        assert_eq!(cosine(&[0., 0.], &[1., 2.]), 0.);
        let wide = Tensor::zeros((1, 3), candle_core::DType::F32, &Device::Cpu).expect("t");
        assert!(cos_sim(&z, &wide).is_err());
        assert!("hamming".parse::<Similarity>().is_err());
    }
}
