//! Tokenizing a long text through a short prefix with the same first tokens.
//!
//! sentence-transformers tokenizes the whole text and then keeps the first `max_seq_length`
//! tokens; for a 20 MB line that costs gigabytes of offsets and alignments for tokens that are
//! thrown away. [`encode_truncated`] tokenizes a prefix instead, cut where the tokenizer
//! provably sees a boundary, and grows the prefix until the tokenizer itself reports that it
//! had to truncate. The result equals what the whole text gives.
//!
//! Why a cut is safe: the cut is placed right before a whitespace character that follows a
//! non-whitespace one. The tokenizers allowed here ([`cuts_are_safe`]) normalize character by
//! character (whitespace never combines with a neighbour) and pre-tokenize by splitting at
//! whitespace, so the pre-tokens of the prefix are exactly the first pre-tokens of the whole
//! text, each is turned into tokens on its own, and the prefix's tokens are the first tokens
//! of the whole text. When the prefix already has more tokens than fit (the tokenizer reports
//! overflow), the kept tokens are the same as the whole text's and the text was truncated.
//! Any other tokenizer, or a text without such a cut point, is tokenized whole.

use std::borrow::Cow;

use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{Encoding, Tokenizer};

/// Texts up to this many bytes per allowed token are tokenized whole.
const BYTES_PER_TOKEN: usize = 16;

fn normalizer_is_local(n: &NormalizerWrapper) -> bool {
    match n {
        NormalizerWrapper::BertNormalizer(_)
        | NormalizerWrapper::StripAccents(_)
        | NormalizerWrapper::NFC(_)
        | NormalizerWrapper::NFD(_)
        | NormalizerWrapper::NFKC(_)
        | NormalizerWrapper::NFKD(_)
        | NormalizerWrapper::Lowercase(_) => true,
        NormalizerWrapper::Sequence(seq) => seq.as_ref().iter().all(normalizer_is_local),
        _ => false,
    }
}

/// Whether a pre-tokenizer splits at every whitespace (and never joins across it).
fn splits_at_whitespace(p: &PreTokenizerWrapper) -> bool {
    matches!(
        p,
        PreTokenizerWrapper::BertPreTokenizer(_)
            | PreTokenizerWrapper::Whitespace(_)
            | PreTokenizerWrapper::WhitespaceSplit(_)
    )
}

/// Whether a pre-tokenizer only ever splits further (never joins what another split).
fn only_splits(p: &PreTokenizerWrapper) -> bool {
    splits_at_whitespace(p)
        || matches!(
            p,
            PreTokenizerWrapper::Punctuation(_) | PreTokenizerWrapper::Digits(_)
        )
}

/// Whether [`encode_truncated`] may cut texts for this tokenizer (see the module docs).
pub(crate) fn cuts_are_safe(tokenizer: &Tokenizer) -> bool {
    let normalizer_ok = tokenizer.get_normalizer().is_none_or(normalizer_is_local);
    let pre_ok = match tokenizer.get_pre_tokenizer() {
        Some(PreTokenizerWrapper::Sequence(seq)) => {
            seq.as_ref().iter().any(splits_at_whitespace) && seq.as_ref().iter().all(only_splits)
        }
        Some(p) => splits_at_whitespace(p),
        None => false,
    };
    // An added token is matched in the raw text; one containing whitespace could straddle a cut.
    let added_ok = tokenizer
        .get_added_tokens_decoder()
        .values()
        .all(|t| !t.content.chars().any(char::is_whitespace));
    normalizer_ok && pre_ok && added_ok
}

/// The largest cut `c ≤ limit` with `text[c..]` starting with whitespace and `text[..c]`
/// ending with something else; `None` when there is none.
fn cut_point(text: &str, limit: usize) -> Option<usize> {
    let mut end = limit.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut after_is_space = text[end..].chars().next().is_some_and(char::is_whitespace);
    for (i, c) in text[..end].char_indices().rev() {
        let space = c.is_whitespace();
        if after_is_space && !space {
            return Some(i + c.len_utf8());
        }
        after_is_space = space;
    }
    None
}

/// Lower-cases when asked. A prefix cut before whitespace lower-cases to the same prefix of
/// the whole text's lower-case form: `to_lowercase` maps character by character, and its one
/// context rule (Greek final sigma) looks at the next character, whitespace in both cases.
fn prepare(text: &str, lowercase: bool) -> Cow<'_, str> {
    if lowercase {
        Cow::Owned(text.to_lowercase())
    } else {
        Cow::Borrowed(text)
    }
}

/// Encodes `text` (lower-cased when `lowercase`, special tokens added) with the tokenizer's
/// truncation at `max_length` tokens, through the shortest provably equivalent prefix when
/// `cuts_safe`. Returns the encoding and whether the text was truncated.
pub(crate) fn encode_truncated(
    tokenizer: &Tokenizer,
    text: &str,
    lowercase: bool,
    max_length: usize,
    cuts_safe: bool,
) -> tokenizers::Result<(Encoding, bool)> {
    let mut limit = max_length.saturating_mul(BYTES_PER_TOKEN).max(1024);
    while cuts_safe && limit < text.len() {
        if let Some(cut) = cut_point(text, limit) {
            let enc = tokenizer.encode_fast(prepare(&text[..cut], lowercase).as_ref(), true)?;
            if !enc.get_overflowing().is_empty() {
                return Ok((enc, true));
            }
        }
        limit = limit.saturating_mul(4);
    }
    let enc = tokenizer.encode_fast(prepare(text, lowercase).as_ref(), true)?;
    let truncated = !enc.get_overflowing().is_empty();
    Ok((enc, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_points_sit_before_a_whitespace_run() {
        assert_eq!(cut_point("ab  cd ef", 9), Some(6));
        assert_eq!(cut_point("ab  cd ef", 6), Some(6));
        assert_eq!(cut_point("ab  cd ef", 5), Some(2));
        assert_eq!(cut_point("ab  cd ef", 3), Some(2));
        assert_eq!(cut_point("ab  cd ef", 2), Some(2));
        assert_eq!(cut_point("ab  cd ef", 1), None);
        assert_eq!(cut_point("abcdef", 4), None);
        assert_eq!(cut_point("  ab", 4), None);
        // Multi-byte characters: the limit is moved to a character boundary.
        assert_eq!(cut_point("é é é", 5), Some(5));
        assert_eq!(cut_point("é é é", 4), Some(2));
        assert_eq!(cut_point("日本\u{3000}語", 8), Some(6));
    }
}
