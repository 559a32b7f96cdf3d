//! Pooling token embeddings into one sentence vector, with sentence-transformers' semantics.
//!
//! Input: token embeddings `(batch, seq, dim)` and the attention mask `(batch, seq)` (1 for a
//! real token, 0 for padding, any dtype). Output: `(batch, dim × modes)`. This crate knows
//! nothing about BERT or tokenizers.
//!
//! The modes and their exact arithmetic follow `sentence_transformers.models.Pooling`
//! (<https://github.com/UKPLab/sentence-transformers/blob/v3.3.1/sentence_transformers/models/Pooling.py>):
//!
//! | mode | `1_Pooling/config.json` key | vector |
//! |---|---|---|
//! | `cls` | `pooling_mode_cls_token` | token 0 |
//! | `max` | `pooling_mode_max_tokens` | max over tokens, padding set to −1e9 first |
//! | `mean` | `pooling_mode_mean_tokens` | Σ masked tokens / max(count, 1e-9) |
//! | `mean_sqrt_len_tokens` | `pooling_mode_mean_sqrt_len_tokens` | Σ masked tokens / √max(count, 1e-9) |
//! | `weightedmean` | `pooling_mode_weightedmean_tokens` | Σ (position+1)·token / Σ (position+1), masked |
//! | `lasttoken` | `pooling_mode_lasttoken` | the last unmasked token |
//!
//! Several modes at once are concatenated in that table's order, as sentence-transformers does.
//!
//! # Example
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use sbert_pooling::{Pooling, PoolingMode};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // One sentence of two real tokens and one padding token, dim 2.
//! let tokens = Tensor::new(&[[[1f32, 2.], [3., 4.], [100., 100.]]], &Device::Cpu)?;
//! let mask = Tensor::new(&[[1u32, 1, 0]], &Device::Cpu)?;
//! let mean = Pooling::single(PoolingMode::Mean).pool(&tokens, &mask)?;
//! assert_eq!(mean.to_vec2::<f32>()?, vec![vec![2., 3.]]);
//! let both: Pooling = "mean,max".parse()?;
//! assert_eq!(both.pool(&tokens, &mask)?.to_vec2::<f32>()?, vec![vec![3., 4., 2., 3.]]);
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! * `cuda`, `metal`: forward to candle.
#![warn(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]

mod config;

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Tensor, D};

pub use config::PoolingConfig;

/// Errors from parsing pooling modes or configs, and from the pooling arithmetic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolingError {
    /// A mode name that is not one of [`PoolingMode::ALL`].
    #[error("unknown pooling mode {given:?}; valid modes: {}", PoolingMode::names().join(", "))]
    UnknownMode {
        /// What was given.
        given: String,
    },
    /// A pooling config or mode list that selects no mode.
    #[error("no pooling mode selected; valid modes: {}", PoolingMode::names().join(", "))]
    NoMode,
    /// A `pooling_mode` list in an order other than sentence-transformers' concatenation order
    /// (cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken), which [`Pooling`]
    /// always uses.
    #[error("pooling modes {given:?} are concatenated in the order cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken only")]
    ModeOrder {
        /// The list as given.
        given: Vec<String>,
    },
    /// A tensor op failed (shape mismatch between embeddings and mask, for instance).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// One way to pool token embeddings; see the crate docs for the exact arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum PoolingMode {
    /// The first token (`[CLS]`).
    Cls,
    /// Element-wise max over the unmasked tokens.
    Max,
    /// Mean of the unmasked tokens.
    Mean,
    /// Sum of the unmasked tokens divided by the square root of their count.
    MeanSqrtLen,
    /// Position-weighted mean (weights 1, 2, 3, …) of the unmasked tokens.
    WeightedMean,
    /// The last unmasked token.
    LastToken,
}

impl PoolingMode {
    /// Every mode, in sentence-transformers' concatenation order.
    pub const ALL: [PoolingMode; 6] = [
        PoolingMode::Cls,
        PoolingMode::Max,
        PoolingMode::Mean,
        PoolingMode::MeanSqrtLen,
        PoolingMode::WeightedMean,
        PoolingMode::LastToken,
    ];

    /// The sentence-transformers name of the mode (`"cls"`, `"max"`, `"mean"`,
    /// `"mean_sqrt_len_tokens"`, `"weightedmean"`, `"lasttoken"`).
    pub fn name(self) -> &'static str {
        match self {
            PoolingMode::Cls => "cls",
            PoolingMode::Max => "max",
            PoolingMode::Mean => "mean",
            PoolingMode::MeanSqrtLen => "mean_sqrt_len_tokens",
            PoolingMode::WeightedMean => "weightedmean",
            PoolingMode::LastToken => "lasttoken",
        }
    }

    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|m| m.name()).collect()
    }

    /// Pools `(batch, seq, dim)` token embeddings under a `(batch, seq)` float mask of the
    /// embeddings' dtype into `(batch, dim)`.
    fn pool(self, tokens: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (_, seq, _) = tokens.dims3()?;
        let mask3 = mask.unsqueeze(D::Minus1)?; // (b, t, 1)
        match self {
            PoolingMode::Cls => tokens.narrow(1, 0, 1)?.squeeze(1)?.contiguous(),
            PoolingMode::Max => {
                // ST: token_embeddings[mask == 0] = -1e9, then max over tokens.
                let fill = ((mask3.ones_like()? - &mask3)? * -1e9)?;
                tokens.broadcast_mul(&mask3)?.broadcast_add(&fill)?.max(1)
            }
            PoolingMode::Mean | PoolingMode::MeanSqrtLen => {
                let sum = tokens.broadcast_mul(&mask3)?.sum(1)?;
                let count = mask.sum_keepdim(1)?.clamp(1e-9, f64::INFINITY)?;
                let denom = if self == PoolingMode::Mean {
                    count
                } else {
                    count.sqrt()?
                };
                sum.broadcast_div(&denom)
            }
            PoolingMode::WeightedMean => {
                let positions = Tensor::arange(1u32, seq as u32 + 1, tokens.device())?
                    .to_dtype(tokens.dtype())?
                    .unsqueeze(0)?;
                let weights = mask.broadcast_mul(&positions)?; // (b, t)
                let sum = tokens
                    .broadcast_mul(&weights.unsqueeze(D::Minus1)?)?
                    .sum(1)?;
                let total = weights.sum_keepdim(1)?.clamp(1e-9, f64::INFINITY)?;
                sum.broadcast_div(&total)
            }
            PoolingMode::LastToken => {
                // One-hot of the last unmasked position per row (none: all zeros, as ST's
                // gather over masked embeddings gives).
                let rows = mask.to_dtype(DType::F32)?.to_vec2::<f32>()?;
                let mut onehot = vec![0f32; rows.len() * seq];
                for (r, row) in rows.iter().enumerate() {
                    if let Some(last) = row.iter().rposition(|&m| m != 0.0) {
                        onehot[r * seq + last] = 1.0;
                    }
                }
                let onehot = Tensor::from_vec(onehot, (rows.len(), seq, 1), tokens.device())?
                    .to_dtype(tokens.dtype())?;
                tokens.broadcast_mul(&onehot)?.sum(1)
            }
        }
    }
}

impl fmt::Display for PoolingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PoolingMode {
    type Err = PoolingError;

    /// Parses a sentence-transformers mode name; `cls_token`, `mean_tokens`, `max_tokens`,
    /// `mean_sqrt_len`, `weightedmean_tokens`, `last_token` are accepted too. Case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mode = match s.trim().to_ascii_lowercase().as_str() {
            "cls" | "cls_token" => PoolingMode::Cls,
            "max" | "max_tokens" => PoolingMode::Max,
            "mean" | "mean_tokens" => PoolingMode::Mean,
            "mean_sqrt_len_tokens" | "mean_sqrt_len" => PoolingMode::MeanSqrtLen,
            "weightedmean" | "weightedmean_tokens" | "weighted_mean" => PoolingMode::WeightedMean,
            "lasttoken" | "last_token" => PoolingMode::LastToken,
            _ => {
                return Err(PoolingError::UnknownMode {
                    given: s.to_string(),
                })
            }
        };
        Ok(mode)
    }
}

/// A pooling strategy: one or more [`PoolingMode`]s, concatenated in sentence-transformers'
/// order (cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken) whatever order they
/// were given in. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pooling {
    modes: Vec<PoolingMode>,
}

impl Pooling {
    /// A strategy of one mode.
    pub fn single(mode: PoolingMode) -> Self {
        Self { modes: vec![mode] }
    }

    /// A strategy of several modes, sorted into sentence-transformers' order, duplicates removed.
    ///
    /// # Errors
    /// [`PoolingError::NoMode`] when `modes` is empty.
    pub fn new(modes: impl IntoIterator<Item = PoolingMode>) -> Result<Self, PoolingError> {
        let mut modes: Vec<PoolingMode> = modes.into_iter().collect();
        modes.sort();
        modes.dedup();
        if modes.is_empty() {
            return Err(PoolingError::NoMode);
        }
        Ok(Self { modes })
    }

    /// The modes, in concatenation order.
    pub fn modes(&self) -> &[PoolingMode] {
        &self.modes
    }

    /// Width of the pooled vector for token embeddings of width `dim`.
    pub fn output_dim(&self, dim: usize) -> usize {
        dim * self.modes.len()
    }

    /// Pools token embeddings `(batch, seq, dim)` under `attention_mask` `(batch, seq)` (any
    /// dtype, nonzero = real token) into `(batch, dim × modes)`, in the embeddings' dtype.
    ///
    /// An all-zero mask row gives a zero vector for `mean`, `mean_sqrt_len_tokens`,
    /// `weightedmean` and `lasttoken` (not NaN), and −1e9 for `max`, as in sentence-transformers.
    ///
    /// # Errors
    /// When the shapes do not agree.
    pub fn pool(
        &self,
        token_embeddings: &Tensor,
        attention_mask: &Tensor,
    ) -> Result<Tensor, PoolingError> {
        let (b, t, _) = token_embeddings.dims3()?;
        let mask_dims = attention_mask.dims2()?;
        if mask_dims != (b, t) {
            return Err(candle_core::Error::Msg(format!(
                "attention mask of shape {mask_dims:?} does not match token embeddings of shape {:?}",
                token_embeddings.dims()
            ))
            .into());
        }
        let mask = attention_mask
            .ne(0f64)? // nonzero → 1
            .to_dtype(token_embeddings.dtype())?;
        self.each_mode(|m| m.pool(token_embeddings, &mask))
    }

    /// Pools token embeddings of sequences stored back to back, `(Σ lengths, dim)` (as a packed
    /// encoder pass returns them), into `(lengths.len(), dim × modes)`, in the embeddings'
    /// dtype: the same vectors as [`Pooling::pool`] over the padded batch, without padding.
    /// Differentiable with respect to the embeddings.
    ///
    /// # Errors
    /// When a length is 0 or the lengths do not sum to the number of rows.
    pub fn pool_packed(
        &self,
        token_embeddings: &Tensor,
        lengths: &[usize],
    ) -> Result<Tensor, PoolingError> {
        let (rows, _) = token_embeddings.dims2()?;
        let total = lengths.iter().try_fold(0usize, |a, &l| a.checked_add(l));
        if lengths.contains(&0) || total != Some(rows) {
            return Err(candle_core::Error::Msg(format!(
                "lengths {lengths:?} do not partition {rows} token rows into non-empty sequences"
            ))
            .into());
        }
        let segments = Segments::new(lengths);
        self.each_mode(|m| m.pool_packed(token_embeddings, &segments))
    }

    /// Every mode's vectors, concatenated along the last dimension in the strategy's order.
    fn each_mode(
        &self,
        pool: impl Fn(PoolingMode) -> candle_core::Result<Tensor>,
    ) -> Result<Tensor, PoolingError> {
        let mut pooled = self
            .modes
            .iter()
            .map(|&m| pool(m))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(match pooled.len() {
            1 => pooled.remove(0),
            _ => Tensor::cat(&pooled, 1)?,
        })
    }
}

/// The sequences of a packed batch: where each starts and how long it is.
struct Segments<'a> {
    lengths: &'a [usize],
    starts: Vec<usize>,
}

impl<'a> Segments<'a> {
    fn new(lengths: &'a [usize]) -> Self {
        let starts = lengths
            .iter()
            .scan(0, |next, &len| {
                let start = *next;
                *next += len;
                Some(start)
            })
            .collect();
        Self { lengths, starts }
    }

    /// `(sequences, rows)`: row weights `weight(position)` within each sequence, 0 elsewhere,
    /// so that a product with the rows sums each sequence.
    fn weights(
        &self,
        rows: usize,
        like: &Tensor,
        weight: impl Fn(usize) -> f64,
    ) -> candle_core::Result<Tensor> {
        let mut m = vec![0f64; self.lengths.len() * rows];
        for (s, (&start, &len)) in self.starts.iter().zip(self.lengths).enumerate() {
            for p in 0..len {
                m[s * rows + start + p] = weight(p);
            }
        }
        Tensor::from_vec(m, (self.lengths.len(), rows), like.device())?.to_dtype(like.dtype())
    }

    /// One row index per sequence.
    fn rows(
        &self,
        like: &Tensor,
        pick: impl Fn(usize, usize) -> usize,
    ) -> candle_core::Result<Tensor> {
        let rows: Vec<u32> = self
            .starts
            .iter()
            .zip(self.lengths)
            .map(|(&start, &len)| pick(start, len) as u32)
            .collect();
        Tensor::from_vec(rows, self.lengths.len(), like.device())
    }
}

impl PoolingMode {
    /// [`PoolingMode::pool`] for packed `(rows, dim)` token embeddings.
    fn pool_packed(self, tokens: &Tensor, seg: &Segments<'_>) -> candle_core::Result<Tensor> {
        let (rows, dim) = tokens.dims2()?;
        let column = |v: Vec<f64>| -> candle_core::Result<Tensor> {
            Tensor::from_vec(v, (seg.lengths.len(), 1), tokens.device())?.to_dtype(tokens.dtype())
        };
        let lengths = || seg.lengths.iter().map(|&l| l as f64);
        match self {
            PoolingMode::Cls => tokens.index_select(&seg.rows(tokens, |start, _| start)?, 0),
            PoolingMode::LastToken => {
                tokens.index_select(&seg.rows(tokens, |start, len| start + len - 1)?, 0)
            }
            PoolingMode::Mean | PoolingMode::MeanSqrtLen => {
                let sum = seg.weights(rows, tokens, |_| 1.0)?.matmul(tokens)?;
                let denom: Vec<f64> = if self == PoolingMode::Mean {
                    lengths().collect()
                } else {
                    lengths().map(f64::sqrt).collect()
                };
                sum.broadcast_div(&column(denom)?)
            }
            PoolingMode::WeightedMean => {
                let sum = seg
                    .weights(rows, tokens, |p| (p + 1) as f64)?
                    .matmul(tokens)?;
                let total = lengths().map(|l| l * (l + 1.0) / 2.0).collect();
                sum.broadcast_div(&column(total)?)
            }
            PoolingMode::Max => {
                // Each sequence's rows laid out to the longest, the rest pointing at a row of
                // −1e9 (sentence-transformers' padding value), then the max over positions.
                let longest = seg.lengths.iter().copied().max().unwrap_or(0);
                let mut gather = Vec::with_capacity(seg.lengths.len() * longest);
                for (&start, &len) in seg.starts.iter().zip(seg.lengths) {
                    gather.extend((start..start + len).map(|r| r as u32));
                    gather.extend(std::iter::repeat_n(rows as u32, longest - len));
                }
                let fill = (Tensor::ones((1, dim), tokens.dtype(), tokens.device())? * -1e9)?;
                let gather =
                    Tensor::from_vec(gather, seg.lengths.len() * longest, tokens.device())?;
                Tensor::cat(&[tokens, &fill], 0)?
                    .index_select(&gather, 0)?
                    .reshape((seg.lengths.len(), longest, dim))?
                    .max(1)
            }
        }
    }
}

impl From<PoolingMode> for Pooling {
    fn from(mode: PoolingMode) -> Self {
        Self::single(mode)
    }
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.modes.iter().map(|m| m.name()).collect();
        f.write_str(&names.join(","))
    }
}

impl FromStr for Pooling {
    type Err = PoolingError;

    /// Parses a comma-separated list of mode names, e.g. `"mean"` or `"cls,mean"`. An empty
    /// entry (`"mean,,max"`, a trailing comma) is an error, not skipped.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(PoolingError::NoMode);
        }
        let modes = s
            .split(',')
            .map(PoolingMode::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        Pooling::new(modes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Two sentences, seq 3, dim 2; the second has one padding token holding huge values.
    fn batch() -> (Tensor, Tensor) {
        let tokens = Tensor::new(
            &[
                [[1f32, -2.], [3., 4.], [-5., 6.]],
                [[2., 8.], [-4., -6.], [1e6, 1e6]],
            ],
            &Device::Cpu,
        )
        .expect("tensor");
        let mask = Tensor::new(&[[1u32, 1, 1], [1, 1, 0]], &Device::Cpu).expect("tensor");
        (tokens, mask)
    }

    fn pool(mode: PoolingMode, tokens: &Tensor, mask: &Tensor) -> Vec<Vec<f32>> {
        Pooling::single(mode)
            .pool(tokens, mask)
            .expect("pool")
            .to_vec2()
            .expect("vec")
    }

    #[test]
    fn packed_rows_pool_as_the_padded_batch_does_every_mode_at_once() {
        let lengths = [3usize, 1, 4, 2];
        let (b, t, dim) = (lengths.len(), 4, 5);
        let dev = &Device::Cpu;
        let padded = Tensor::randn(0f32, 2.0, (b, t, dim), dev).expect("randn");
        let mut mask = vec![0u32; b * t];
        let mut rows = Vec::new();
        for (s, &len) in lengths.iter().enumerate() {
            mask[s * t..s * t + len].fill(1);
            rows.extend((s * t..s * t + len).map(|r| r as u32));
        }
        let mask = Tensor::from_vec(mask, (b, t), dev).expect("mask");
        let rows = Tensor::from_vec(rows, lengths.iter().sum::<usize>(), dev).expect("rows");
        let packed = padded
            .reshape((b * t, dim))
            .and_then(|x| x.index_select(&rows, 0))
            .expect("packed");
        let all = Pooling::new(PoolingMode::ALL).expect("all");
        let want = all.pool(&padded, &mask).expect("pool");
        let got = all.pool_packed(&packed, &lengths).expect("pool_packed");
        assert_eq!(got.dims(), &[b, dim * 6]);
        let diff: Vec<f32> = (&got - &want)
            .and_then(|d| d.abs()?.flatten_all()?.to_vec1())
            .expect("diff");
        assert!(diff.iter().all(|d| *d < 1e-5), "{diff:?}");
    }

    #[test]
    fn packed_lengths_that_do_not_partition_the_rows_are_errors() {
        let tokens = Tensor::zeros((5, 2), DType::F32, &Device::Cpu).expect("zeros");
        let mean = Pooling::single(PoolingMode::Mean);
        assert!(mean.pool_packed(&tokens, &[2, 3]).is_ok());
        for bad in [&[2usize, 2][..], &[5, 0], &[6], &[], &[usize::MAX, 6]] {
            assert!(mean.pool_packed(&tokens, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cls_is_row_zero() {
        let (t, m) = batch();
        assert_eq!(
            pool(PoolingMode::Cls, &t, &m),
            vec![vec![1., -2.], vec![2., 8.]]
        );
    }

    #[test]
    fn padding_never_changes_mean_or_max() {
        let (t, m) = batch();
        assert_eq!(
            pool(PoolingMode::Mean, &t, &m),
            vec![vec![-1. / 3., 8. / 3.], vec![-1., 1.]]
        );
        assert_eq!(
            pool(PoolingMode::Max, &t, &m),
            vec![vec![3., 6.], vec![2., 8.]]
        );
        let s = 2f32.sqrt();
        let got = pool(PoolingMode::MeanSqrtLen, &t, &m);
        assert!((got[1][0] - (-2. / s)).abs() < 1e-6 && (got[1][1] - 2. / s).abs() < 1e-6);
    }

    #[test]
    fn weighted_mean_and_last_token() {
        let (t, m) = batch();
        // Row 1: weights 1, 2 (padding excluded): (1·[2,8] + 2·[-4,-6]) / 3.
        let got = pool(PoolingMode::WeightedMean, &t, &m);
        assert!((got[1][0] - (-2.)).abs() < 1e-6 && (got[1][1] - (-4. / 3.)).abs() < 1e-6);
        assert_eq!(
            pool(PoolingMode::LastToken, &t, &m),
            vec![vec![-5., 6.], vec![-4., -6.]]
        );
    }

    #[test]
    fn all_zero_mask_gives_zero_not_nan() {
        let (t, _) = batch();
        let zero = Tensor::zeros((2, 3), DType::U32, &Device::Cpu).expect("tensor");
        for mode in [
            PoolingMode::Mean,
            PoolingMode::MeanSqrtLen,
            PoolingMode::WeightedMean,
            PoolingMode::LastToken,
        ] {
            let got = pool(mode, &t, &zero);
            assert!(got.iter().flatten().all(|&x| x == 0.0), "{mode}: {got:?}");
        }
        assert!(pool(PoolingMode::Max, &t, &zero)
            .iter()
            .flatten()
            .all(|&x| x == -1e9));
    }

    #[test]
    fn modes_concatenate_in_st_order() {
        let (t, m) = batch();
        let p: Pooling = "mean, cls".parse().expect("parse");
        assert_eq!(p.to_string(), "cls,mean");
        let got: Vec<Vec<f32>> = p.pool(&t, &m).expect("pool").to_vec2().expect("vec");
        assert_eq!(got[1], vec![2., 8., -1., 1.]);
        assert_eq!(p.output_dim(2), 4);
    }

    #[test]
    fn unknown_mode_lists_valid_ones() {
        let err = "mean,avg"
            .parse::<Pooling>()
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("\"avg\""), "{err}");
        for name in [
            "cls",
            "max",
            "mean",
            "mean_sqrt_len_tokens",
            "weightedmean",
            "lasttoken",
        ] {
            assert!(err.contains(name), "{err}");
        }
        assert!(matches!("".parse::<Pooling>(), Err(PoolingError::NoMode)));
        for bad in ["mean,,max", "mean,", ",cls"] {
            assert!(
                matches!(
                    bad.parse::<Pooling>(),
                    Err(PoolingError::UnknownMode { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn mask_shape_mismatch_is_an_error() {
        let (t, _) = batch();
        let bad = Tensor::ones((2, 4), DType::U32, &Device::Cpu).expect("tensor");
        assert!(Pooling::single(PoolingMode::Mean).pool(&t, &bad).is_err());
    }
}
