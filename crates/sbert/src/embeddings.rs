//! [`Embeddings`]: what [`crate::SentenceEmbedder::encode`] returns, plain `f32` rows, and
//! [`EncodeOptions`] with its [`Prompt`], the per-call settings of sentence-transformers'
//! `encode`.

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};

/// The prompt put before each text of one call (sentence-transformers' `prompt_name` /
/// `prompt` arguments of `encode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prompt<'a> {
    /// The embedder's prompt: the builder's, else the model's `default_prompt_name`, else none.
    #[default]
    Default,
    /// No prompt.
    None,
    /// A prompt of the model's `config_sentence_transformers.json`, by name.
    Named(&'a str),
    /// This text.
    Text(&'a str),
}

impl<'a> Prompt<'a> {
    /// The prompt `name` when given, else the default: sentence-transformers' `prompt_name`
    /// argument, whose `None` means the model's default prompt.
    pub fn named_or_default(name: Option<&'a str>) -> Self {
        name.map_or(Prompt::Default, Prompt::Named)
    }
}

/// Per-call settings of [`crate::SentenceEmbedder::encode`], the keyword arguments of
/// sentence-transformers' `encode`. Each defaults to the model's own setting.
///
/// ```
/// use sbert::{EncodeOptions, Prompt};
///
/// let options = EncodeOptions::default()
///     .prompt(Prompt::Named("query"))
///     .batch_size(64)
///     .truncate_dim(128)
///     .normalize(true);
/// assert_eq!(options.truncate_dim, Some(128));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub struct EncodeOptions<'a> {
    /// The prompt put before each text (`prompt_name=` / `prompt=`); default: the embedder's.
    pub prompt: Prompt<'a>,
    /// Texts per forward pass (`batch_size=`); `None`: the embedder's. A token budget set with
    /// the builder's `max_batch_tokens` still applies.
    pub batch_size: Option<usize>,
    /// `None` (default): as the model's modules say (L2-normalized when `modules.json` lists
    /// `Normalize`). `Some(true)`: L2-normalize the final vectors, after `truncate_dim`
    /// (`normalize_embeddings=True`). `Some(false)`: leave the model's `Normalize` module out.
    pub normalize: Option<bool>,
    /// Keep the first `d` values of each vector (`truncate_dim=`, for Matryoshka models);
    /// `None`: all of them.
    pub truncate_dim: Option<usize>,
}

impl<'a> EncodeOptions<'a> {
    /// Sets [`EncodeOptions::prompt`].
    pub fn prompt(mut self, prompt: Prompt<'a>) -> Self {
        self.prompt = prompt;
        self
    }

    /// Sets [`EncodeOptions::batch_size`].
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = Some(batch_size);
        self
    }

    /// Sets [`EncodeOptions::normalize`].
    pub fn normalize(mut self, normalize: bool) -> Self {
        self.normalize = Some(normalize);
        self
    }

    /// Sets [`EncodeOptions::truncate_dim`].
    pub fn truncate_dim(mut self, dim: usize) -> Self {
        self.truncate_dim = Some(dim);
        self
    }
}

/// Per-input statistics reported with [`Embeddings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputStats {
    /// Tokens fed to the encoder, special tokens included.
    pub tokens: usize,
    /// Whether the text was truncated at `max_seq_length`.
    pub truncated: bool,
}

/// Sentence embeddings of a list of texts: one row of [`Embeddings::dim`] `f32` values per
/// input, in input order, with what tokenization did to each input.
///
/// ```no_run
/// # fn main() -> sbert::Result<()> {
/// let model = sbert::SentenceEmbedder::from_dir("models/all-MiniLM-L6-v2", &sbert::Device::Cpu)?;
/// let e = model.embed(&["first text", "second text"])?;
/// assert_eq!(e.len(), 2);
/// let first: &[f32] = &e[0];
/// for row in e.rows() {
///     assert_eq!(row.len(), e.dim());
/// }
/// # let _ = first;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    values: Vec<f32>,
    dim: usize,
    inputs: Vec<InputStats>,
}

impl Embeddings {
    /// Rows of `dim` values back to back, with one [`InputStats`] per row.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `values` does not hold `inputs.len()` rows of `dim`;
    /// [`Error::NonFiniteEmbedding`] for a NaN or infinite value.
    pub fn new(values: Vec<f32>, dim: usize, inputs: Vec<InputStats>) -> Result<Self> {
        if values.len() != dim * inputs.len() || (dim == 0 && !inputs.is_empty()) {
            return Err(Error::InvalidArgument(format!(
                "{} values do not form {} rows of dimension {dim}",
                values.len(),
                inputs.len()
            )));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFiniteEmbedding { index: i / dim });
        }
        Ok(Self {
            values,
            dim,
            inputs,
        })
    }

    /// The number of rows (inputs).
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// Values per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<&[f32]> {
        (i < self.len()).then(|| &self.values[i * self.dim..(i + 1) * self.dim])
    }

    /// The rows in input order.
    pub fn rows(&self) -> std::slice::ChunksExact<'_, f32> {
        // `max(1)`: a (0, 0) matrix has no rows either way.
        self.values.chunks_exact(self.dim.max(1))
    }

    /// Every value, row after row: `(len, dim)` row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.values
    }

    /// Every value, row after row, without copying.
    pub fn into_vec(self) -> Vec<f32> {
        self.values
    }

    /// The rows as separate vectors.
    pub fn to_vecs(&self) -> Vec<Vec<f32>> {
        self.rows().map(<[f32]>::to_vec).collect()
    }

    /// Token count and truncation, per input.
    pub fn inputs(&self) -> &[InputStats] {
        &self.inputs
    }

    /// The rows as a borrowed matrix for [`crate::search`]'s functions.
    pub fn vectors(&self) -> crate::search::Vectors<'_> {
        crate::search::Vectors::new(&self.values, self.dim.max(1))
            .expect("Embeddings::new checked the shape and that every value is finite")
    }

    /// Keeps the first `dim` values of each row (Matryoshka truncation; not re-normalized).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `dim` is 0 or above [`Embeddings::dim`].
    pub fn truncate(&mut self, dim: usize) -> Result<()> {
        if dim == 0 || dim > self.dim {
            return Err(Error::InvalidArgument(format!(
                "truncate_dim must be between 1 and {}, not {dim}",
                self.dim
            )));
        }
        let width = self.dim;
        for r in 0..self.len() {
            self.values.copy_within(r * width..r * width + dim, r * dim);
        }
        self.values.truncate(self.len() * dim);
        self.dim = dim;
        Ok(())
    }

    /// L2-normalizes every row ([`crate::normalize_rows`]).
    pub fn normalize(&mut self) {
        crate::normalize_rows(&mut self.values, self.dim);
    }

    /// The rows as an `(len, dim)` f32 tensor on `device`.
    ///
    /// # Errors
    /// When the device cannot hold it.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_slice(
            &self.values,
            (self.len(), self.dim),
            device,
        )?)
    }
}

impl std::ops::Index<usize> for Embeddings {
    type Output = [f32];

    /// Row `i`.
    ///
    /// # Panics
    /// When `i` is past the last row, as slice indexing does.
    fn index(&self, i: usize) -> &[f32] {
        match self.get(i) {
            Some(row) => row,
            None => panic!("row {i} of {} embeddings", self.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(n: usize) -> Vec<InputStats> {
        vec![
            InputStats {
                tokens: 2,
                truncated: false
            };
            n
        ]
    }

    #[test]
    fn rows_index_and_shape_checks() {
        let e = Embeddings::new(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3, stats(2)).expect("rows");
        assert_eq!((e.len(), e.dim()), (2, 3));
        assert_eq!(&e[1], &[4.0, 5.0, 6.0]);
        assert_eq!(e.get(2), None);
        assert_eq!(e.rows().count(), 2);
        assert_eq!(e.to_vecs()[0], vec![1.0, 2.0, 3.0]);
        assert!(Embeddings::new(vec![1.0; 5], 3, stats(2)).is_err());
        let empty = Embeddings::new(Vec::new(), 3, Vec::new()).expect("no rows");
        assert!(empty.is_empty());
        assert_eq!(empty.rows().count(), 0);
    }

    #[test]
    fn truncate_then_normalize() {
        let mut e = Embeddings::new(vec![3.0, 4.0, 9.0, 0.0, 0.0, 9.0], 3, stats(2)).expect("rows");
        e.truncate(2).expect("truncate");
        assert_eq!((e.as_slice(), e.dim()), (&[3.0, 4.0, 0.0, 0.0][..], 2));
        e.normalize();
        assert_eq!(e.as_slice(), &[0.6, 0.8, 0.0, 0.0]);
        assert!(e.truncate(3).is_err());
        assert!(e.truncate(0).is_err());
    }

    #[test]
    fn non_finite_values_are_refused() {
        assert!(Embeddings::new(vec![1.0, f32::NAN], 2, stats(1)).is_err());
        assert!(Embeddings::new(vec![f32::INFINITY, 0.0], 2, stats(1)).is_err());
    }
}
