//! Batching as sentence-transformers' `encode` does it: sort by length (longest first), chunk,
//! pad each chunk to its longest text; and the permutation that restores the input order.

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::tokenize::TokenizedText;

/// Tokenized texts right-padded to the longest of them: `(b, t)` each, `u32`.
#[derive(Debug, Clone)]
pub struct PaddedBatch {
    /// Token ids, padding with the model's `pad_token_id`.
    pub input_ids: Tensor,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
    /// All zeros (single-sentence inputs).
    pub token_type_ids: Tensor,
}

/// How texts of these token `lengths` are batched: indices into `lengths`, one `Vec` per
/// batch, in processing order. Longest first (stable for ties), then chunks of `batch_size`,
/// or, with `max_batch_tokens`, batches that grow while `texts × longest ≤ max_batch_tokens`
/// (a text longer than the budget gets a batch of its own). Each batch is padded to its first
/// (longest) text.
pub(crate) fn plan(
    lengths: &[usize],
    batch_size: usize,
    max_batch_tokens: Option<usize>,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    match max_batch_tokens {
        None => order.chunks(batch_size).map(<[usize]>::to_vec).collect(),
        Some(budget) => {
            let mut batches: Vec<Vec<usize>> = Vec::new();
            let mut current: Vec<usize> = Vec::new();
            for i in order {
                let longest = current.first().map_or(lengths[i], |&f| lengths[f]);
                if !current.is_empty() && (current.len() + 1) * longest > budget {
                    batches.push(std::mem::take(&mut current));
                }
                current.push(i);
            }
            if !current.is_empty() {
                batches.push(current);
            }
            batches
        }
    }
}

/// For `order` (a permutation of `0..n`: the input position of each processed row), the
/// processed row of each input: gathering rows with it restores the input order.
pub(crate) fn inverse(order: &[usize]) -> Vec<u32> {
    let mut inverse = vec![0u32; order.len()];
    for (pos, &i) in order.iter().enumerate() {
        inverse[i] = pos as u32;
    }
    inverse
}

/// Right-pads `texts` to the longest of them with `pad_id`, on `device`.
pub(crate) fn pad(texts: &[&TokenizedText], pad_id: u32, device: &Device) -> Result<PaddedBatch> {
    let (ids, lengths) = TokenizedText::pack(texts.iter().copied());
    let padded = sbert_bert::TokenBatch::new(&ids, &lengths).padded(pad_id, device)?;
    Ok(PaddedBatch {
        input_ids: padded.input_ids,
        attention_mask: padded.attention_mask,
        token_type_ids: padded.token_type_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_sort_longest_first_and_inverse_restores_order() {
        let lengths = [3, 9, 5, 9, 1];
        let batches = plan(&lengths, 2, None);
        assert_eq!(batches, vec![vec![1, 3], vec![2, 0], vec![4]]);
        let order: Vec<usize> = batches.concat();
        let inv = inverse(&order);
        for (i, &pos) in inv.iter().enumerate() {
            assert_eq!(order[pos as usize], i);
        }
        // Under a budget of 18 tokens: 9 + 9 fill one batch; 5, 3 and 1 fit the next (3 × 5).
        assert_eq!(
            plan(&lengths, 32, Some(18)),
            vec![vec![1, 3], vec![2, 0, 4]]
        );
    }
}
