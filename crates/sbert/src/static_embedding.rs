//! Static embeddings (model2vec, sentence-transformers' `StaticEmbedding`): one vector per
//! token, no transformer. A text's embedding is the mean of its tokens' rows, its tokens taken
//! without special tokens and without truncation, as sentence-transformers' `EmbeddingBag`
//! (mode `mean`) computes it; an empty text is the zero vector.
//!
//! The table is the encoder of the sentence pipeline: [`StaticTable`] implements
//! [`Encoder`], its "token embeddings" are the table's rows, and mean pooling does the rest, so
//! batching, prompts, heads and every API work as for a transformer.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Result as CandleResult, Tensor};
use sbert_bert::{Encoder, TokenBatch, TokenEmbeddings};

use crate::error::{Error, Result};
use crate::folder;

/// A static embedding table: `rows` token vectors of `dim` values. Clones share the table.
#[derive(Debug, Clone)]
pub struct StaticTable {
    table: Tensor,
    rows: usize,
    dim: usize,
}

/// The safetensors names a table goes by: model2vec's and sentence-transformers' own.
const TABLE_NAMES: [&str; 2] = ["embeddings", "embedding.weight"];

impl StaticTable {
    /// Reads the table from `dir/model.safetensors` (tensor `embeddings`, as model2vec writes
    /// it, or `embedding.weight`, as sentence-transformers saves a `StaticEmbedding`).
    ///
    /// # Errors
    /// A missing or corrupt file, no table under either name, a table that is not 2-D.
    pub(crate) fn load(dir: &Path, dtype: DType, device: &Device) -> Result<(Self, PathBuf)> {
        let path = folder::weights_file(dir)?;
        let (vb, names) = crate::weights::load_with_names(&path, dtype, device)?;
        let name = TABLE_NAMES
            .iter()
            .find(|n| names.iter().any(|m| m == *n))
            .ok_or_else(|| Error::Weights {
                path: path.clone(),
                source: candle_core::Error::Msg(format!(
                    "no static embedding table (a tensor named {} or {}); the file holds {names:?}",
                    TABLE_NAMES[0], TABLE_NAMES[1]
                )),
            })?;
        let table = vb.get_unchecked(name).map_err(|source| Error::Weights {
            path: path.clone(),
            source,
        })?;
        let (rows, dim) = table.dims2().map_err(|_| Error::Weights {
            path: path.clone(),
            source: candle_core::Error::Msg(format!(
                "{name} has shape {:?}; a table of (tokens, dimension) was expected",
                table.dims()
            )),
        })?;
        if rows == 0 || dim == 0 {
            return Err(Error::Weights {
                path,
                source: candle_core::Error::Msg(format!("{name} is empty ({rows} × {dim})")),
            });
        }
        Ok((Self { table, rows, dim }, path))
    }

    /// The mean of each text's token rows, `(texts, dim)`; the zero vector for a text without
    /// tokens (sentence-transformers' `EmbeddingBag` of an empty bag). On the CPU in f32 a
    /// gather and a sum per text, texts in parallel on the current rayon pool; elsewhere the
    /// same through tensor operations.
    pub(crate) fn means(&self, texts: &[&[u32]]) -> CandleResult<Tensor> {
        use candle_core::Storage;
        use rayon::prelude::*;
        for ids in texts {
            self.check_ids(ids)?;
        }
        let dim = self.dim;
        let (storage, layout) = self.table.storage_and_layout();
        if let (Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets()) {
            if let Ok(values) = cpu.as_slice::<f32>() {
                let table = &values[start..end];
                let mut out = vec![0f32; texts.len() * dim];
                out.par_chunks_mut(dim)
                    .zip(texts.par_iter())
                    .for_each(|(acc, ids)| {
                        for &id in *ids {
                            let row = &table[id as usize * dim..(id as usize + 1) * dim];
                            acc.iter_mut().zip(row).for_each(|(a, r)| *a += r);
                        }
                        if !ids.is_empty() {
                            let scale = 1.0 / ids.len() as f32;
                            acc.iter_mut().for_each(|a| *a *= scale);
                        }
                    });
                drop(storage);
                return Tensor::from_vec(out, (texts.len(), dim), self.table.device());
            }
        }
        drop(storage);
        let rows = texts
            .iter()
            .map(|ids| {
                if ids.is_empty() {
                    return Tensor::zeros(dim, self.table.dtype(), self.table.device());
                }
                let ids = Tensor::from_slice(ids, ids.len(), self.table.device())?;
                self.table.index_select(&ids, 0)?.mean(0)
            })
            .collect::<CandleResult<Vec<_>>>()?;
        Tensor::stack(&rows, 0)
    }

    /// Fails for a token id past the table (a tokenizer that does not belong to it).
    fn check_ids(&self, ids: &[u32]) -> CandleResult<()> {
        match ids.iter().find(|&&id| id as usize >= self.rows) {
            Some(id) => Err(candle_core::Error::Msg(format!(
                "token id {id} is past the static table's {} rows",
                self.rows
            ))),
            None => Ok(()),
        }
    }
}

impl Encoder for StaticTable {
    fn hidden_size(&self) -> usize {
        self.dim
    }

    /// No position embeddings: any length.
    fn max_positions(&self) -> usize {
        usize::MAX
    }

    fn vocab_size(&self) -> usize {
        self.rows
    }

    fn pad_token_id(&self) -> u32 {
        0
    }

    fn device(&self) -> &Device {
        self.table.device()
    }

    fn dtype(&self) -> DType {
        self.table.dtype()
    }

    /// The rows of the tokens, back to back.
    fn forward(&self, batch: TokenBatch<'_>) -> CandleResult<TokenEmbeddings> {
        batch.check()?;
        self.check_ids(batch.input_ids)?;
        let rows = if batch.input_ids.is_empty() {
            Tensor::zeros((0, self.dim), self.table.dtype(), self.table.device())?
        } else {
            let ids =
                Tensor::from_slice(batch.input_ids, batch.input_ids.len(), self.table.device())?;
            self.table.index_select(&ids, 0)?
        };
        Ok(TokenEmbeddings::Packed(rows))
    }
}

impl StaticTable {
    /// One add per value of each token's row: the operations of a text of `len` tokens.
    pub fn flops(&self, len: usize) -> f64 {
        (len * self.dim) as f64
    }
}
