//! Tokenizing a long text through a short prefix with the same first tokens.
//!
//! sentence-transformers tokenizes the whole text and then keeps the first `max_seq_length`
//! tokens; for a 20 MB line that costs gigabytes of offsets and alignments for tokens that are
//! thrown away. [`encode_truncated`] tokenizes a prefix instead, cut where the tokenizer
//! provably sees a boundary, and grows the prefix until the tokenizer itself reports that it
//! had to truncate. The result equals what the whole text gives.
//!
//! Why a cut is safe. The tokenizers allowed here ([`cut_rules`]) normalize character by
//! character (no normalizer joins or reorders across the characters a cut sits between) and
//! pre-tokenize by splitting, never joining; the prefix's pre-tokens are then the whole text's
//! first pre-tokens, each is turned into tokens on its own, and the prefix's tokens are the
//! whole text's first tokens. A cut is placed where every such tokenizer has a boundary:
//!
//! * before a whitespace run that follows something else (every allowed pre-tokenizer splits
//!   at whitespace), unless the whitespace is a control character a normalizer removes;
//! * before an ASCII punctuation character, when the pre-tokenizer is BERT's (it isolates
//!   each punctuation character: `!?!?`, `a,b,c`, URLs, base64's `+/=`);
//! * before a CJK ideograph, when the normalizer is BERT's with `handle_chinese_chars` (it
//!   puts spaces around each);
//! * inside a run of more than `max_input_chars_per_word` ASCII letters and digits, when the
//!   model is WordPiece and the pre-tokenizer keeps such a run together: the word is one
//!   `[UNK]` whether it ends at the cut or goes on (`aaaa…`, long base64 runs).
//!
//! Never inside an added token (matched in the raw text before any of this), and never right
//! after a `Σ` (lower-casing looks past it for the final-sigma rule). When the prefix already
//! has more tokens than fit (the tokenizer reports overflow), the kept tokens are the same as
//! the whole text's and the text was truncated. Any other tokenizer, or a text without a cut
//! point, is tokenized whole.

use std::borrow::Cow;

use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{Encoding, ModelWrapper, Tokenizer};

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

/// Whether the normalizer spaces CJK ideographs apart (BERT's `handle_chinese_chars`).
fn spaces_cjk(n: &NormalizerWrapper) -> bool {
    match n {
        NormalizerWrapper::BertNormalizer(b) => b.handle_chinese_chars,
        NormalizerWrapper::Sequence(seq) => seq.as_ref().iter().any(spaces_cjk),
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

/// Where [`encode_truncated`] may cut texts for one tokenizer (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CutRules {
    /// Before an ASCII punctuation character.
    punctuation: bool,
    /// Before a CJK ideograph.
    cjk: bool,
    /// Inside a run of more than this many ASCII letters and digits.
    long_word: Option<usize>,
    /// Whether such runs may also be shortened ([`shorten_long_runs`]).
    shorten_runs: bool,
    /// Added tokens a cut must not split, ASCII-lower-cased.
    guards: Vec<String>,
}

/// The cuts this tokenizer allows, `None` for none (then texts are tokenized whole).
pub(crate) fn cut_rules(tokenizer: &Tokenizer) -> Option<CutRules> {
    let normalizer = tokenizer.get_normalizer();
    if !normalizer.is_none_or(normalizer_is_local) {
        return None;
    }
    let members: Vec<&PreTokenizerWrapper> = match tokenizer.get_pre_tokenizer()? {
        PreTokenizerWrapper::Sequence(seq) => seq.as_ref().iter().collect(),
        p => vec![p],
    };
    if !members.iter().any(|p| splits_at_whitespace(p)) || !members.iter().all(|p| only_splits(p)) {
        return None;
    }
    // An added token is matched in the raw text; one containing whitespace could straddle any
    // cut. Others are guarded (ASCII, compared without case); a non-ASCII one that is matched
    // after normalization leaves only the whitespace cuts.
    let added: Vec<_> = tokenizer.get_added_tokens_decoder().into_values().collect();
    if added
        .iter()
        .any(|t| t.content.chars().any(char::is_whitespace))
    {
        return None;
    }
    let ascii = added.iter().all(|t| t.content.is_ascii() || !t.normalized);
    let guards = added
        .iter()
        .map(|t| t.content.to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let bert_pre = members
        .iter()
        .any(|p| matches!(p, PreTokenizerWrapper::BertPreTokenizer(_)));
    let keeps_words = members.iter().all(|p| splits_at_whitespace(p));
    let word_limit = match tokenizer.get_model() {
        ModelWrapper::WordPiece(wp) => Some(wp.max_input_chars_per_word),
        _ => None,
    };
    // A run of letters and digits can be shortened only if no added token could match
    // inside it (each holds something else).
    let guards_touch_only_edges = added
        .iter()
        .all(|t| !t.content.chars().all(|c| c.is_ascii_alphanumeric()));
    Some(CutRules {
        punctuation: ascii && bert_pre,
        cjk: ascii && normalizer.is_some_and(spaces_cjk),
        long_word: word_limit.filter(|_| ascii && keeps_words),
        shorten_runs: guards_touch_only_edges,
        guards,
    })
}

/// Whitespace that every allowed normalizer keeps as whitespace. BERT's `clean_text` drops
/// control characters before it maps whitespace to spaces, so the control characters among
/// Unicode's whitespace (vertical tab, form feed, next line) vanish and join the words on
/// either side: no cut before them (found by the `text_path` fuzz target).
fn is_kept_whitespace(c: char) -> bool {
    c.is_whitespace() && !matches!(c, '\u{0B}' | '\u{0C}' | '\u{85}')
}

/// BERT's CJK ideograph ranges (the characters `handle_chinese_chars` spaces apart).
fn is_cjk(c: char) -> bool {
    matches!(
        u32::from(c),
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

impl CutRules {
    /// Whether an added token occurs in `text` across byte `c`.
    fn straddles(&self, text: &str, c: usize) -> bool {
        let bytes = text.as_bytes();
        self.guards.iter().any(|g| {
            let g = g.as_bytes();
            (c.saturating_sub(g.len() - 1)..c).any(|start| {
                bytes
                    .get(start..start + g.len())
                    .is_some_and(|w| w.eq_ignore_ascii_case(g))
            })
        })
    }
}

/// The largest cut `c ≤ limit` the rules allow (the whitespace cut always; the others as
/// `rules` says); `None` when there is none.
fn cut_point(text: &str, limit: usize, rules: &CutRules) -> Option<usize> {
    let mut c = limit.min(text.len());
    while !text.is_char_boundary(c) {
        c -= 1;
    }
    while c > 0 {
        let prev = text[..c].chars().next_back()?;
        let next = text[c..].chars().next();
        if let Some(next) = next {
            if is_kept_whitespace(next) && !prev.is_whitespace() {
                return Some(c);
            }
            let boundary =
                (rules.punctuation && next.is_ascii_punctuation()) || (rules.cjk && is_cjk(next));
            if boundary && prev != 'Σ' && !rules.straddles(text, c) {
                return Some(c);
            }
        }
        if let (Some(limit), true) = (rules.long_word, prev.is_ascii_alphanumeric()) {
            let start = text[..c]
                .bytes()
                .rposition(|b| !b.is_ascii_alphanumeric())
                .map_or(0, |i| i + 1);
            if c - start > limit {
                // More than `limit` letters and digits end at `c`: one [UNK] either way.
                if next.is_some() && !rules.straddles(text, c) {
                    return Some(c);
                }
                c -= 1;
            } else {
                // No cut inside a shorter run; next candidate: right before it.
                c = start;
            }
            continue;
        }
        c -= prev.len_utf8();
    }
    None
}

/// `text` with every run of ASCII letters and digits longer than `2·keep` cut to its first
/// and last `keep` characters. With `2·keep` above the WordPiece word limit, such a run makes
/// its word one `[UNK]` before and after (the word is still over the limit, its boundaries
/// are where they were), and an added token that holds something besides letters and digits
/// can only match at a run's edges, which are kept; so the tokens are the same.
fn shorten_long_runs(text: &str, keep: usize) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
            i += 1;
        }
        if i - start > 2 * keep {
            let o = out.get_or_insert_with(|| String::with_capacity(text.len().min(1 << 20)));
            // ASCII bytes: every index here is a character boundary.
            o.push_str(&text[copied..start + keep]);
            o.push_str(&text[i - keep..i]);
            copied = i;
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[copied..]);
            Cow::Owned(o)
        }
    }
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

/// Encodes `text` (lower-cased when `lowercase`, special tokens added when asked) with the tokenizer's
/// truncation at `max_length` tokens, through the shortest provably equivalent prefix when
/// `rules` allow one. Returns the encoding and whether the text was truncated.
pub(crate) fn encode_truncated(
    tokenizer: &Tokenizer,
    text: &str,
    lowercase: bool,
    max_length: usize,
    rules: Option<&CutRules>,
    add_special_tokens: bool,
) -> tokenizers::Result<(Encoding, bool)> {
    encode_truncated_with(text, lowercase, max_length, rules, true, &|t| {
        tokenizer.encode_fast(t, add_special_tokens)
    })
}

/// [`encode_truncated`] with the encoding call given (`encode` with byte offsets, or without
/// special tokens). The long-run shortening is left out here: it would move the offsets.
pub(crate) fn encode_prefix(
    text: &str,
    max_length: usize,
    rules: Option<&CutRules>,
    encode: &dyn Fn(&str) -> tokenizers::Result<Encoding>,
) -> tokenizers::Result<(Encoding, bool)> {
    encode_truncated_with(text, false, max_length, rules, false, encode)
}

/// The prefix search of both; `shorten` allows the long-run shortening where the rules do.
fn encode_truncated_with(
    text: &str,
    lowercase: bool,
    max_length: usize,
    rules: Option<&CutRules>,
    shorten: bool,
    encode: &dyn Fn(&str) -> tokenizers::Result<Encoding>,
) -> tokenizers::Result<(Encoding, bool)> {
    let mut limit = max_length.saturating_mul(BYTES_PER_TOKEN).max(1024);
    // One long word cannot be cut into a prefix that overflows (it is one token however long):
    // shorten it instead.
    let shortened;
    let text = match rules {
        Some(CutRules {
            long_word: Some(word_limit),
            shorten_runs: true,
            guards,
            ..
        }) if shorten && text.len() > limit => {
            let longest_guard = guards.iter().map(String::len).max().unwrap_or(0);
            let keep = (word_limit / 2 + 1).max(longest_guard);
            shortened = shorten_long_runs(text, keep);
            shortened.as_ref()
        }
        _ => text,
    };
    while let Some(rules) = rules.filter(|_| limit < text.len()) {
        if let Some(cut) = cut_point(text, limit, rules) {
            let enc = encode(prepare(&text[..cut], lowercase).as_ref())?;
            if !enc.get_overflowing().is_empty() {
                return Ok((enc, true));
            }
        }
        limit = limit.saturating_mul(4);
    }
    let enc = encode(prepare(text, lowercase).as_ref())?;
    let truncated = !enc.get_overflowing().is_empty();
    Ok((enc, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whitespace_only() -> CutRules {
        CutRules {
            punctuation: false,
            cjk: false,
            long_word: None,
            shorten_runs: false,
            guards: Vec::new(),
        }
    }

    fn bert() -> CutRules {
        CutRules {
            punctuation: true,
            cjk: true,
            long_word: Some(4),
            shorten_runs: true,
            guards: vec!["[mask]".into(), "[sep]".into()],
        }
    }

    #[test]
    fn cut_points_sit_before_a_whitespace_run() {
        let r = whitespace_only();
        assert_eq!(cut_point("ab  cd ef", 9, &r), Some(6));
        assert_eq!(cut_point("ab  cd ef", 6, &r), Some(6));
        assert_eq!(cut_point("ab  cd ef", 5, &r), Some(2));
        assert_eq!(cut_point("ab  cd ef", 3, &r), Some(2));
        assert_eq!(cut_point("ab  cd ef", 2, &r), Some(2));
        assert_eq!(cut_point("ab  cd ef", 1, &r), None);
        assert_eq!(cut_point("abcdef", 4, &r), None);
        assert_eq!(cut_point("  ab", 4, &r), None);
        // Multi-byte characters: the limit is moved to a character boundary.
        assert_eq!(cut_point("é é é", 5, &r), Some(5));
        assert_eq!(cut_point("é é é", 4, &r), Some(2));
        assert_eq!(cut_point("日本\u{3000}語", 8, &r), Some(6));
    }

    #[test]
    fn bert_cuts_before_punctuation_and_ideographs_and_inside_long_words() {
        let r = bert();
        assert_eq!(cut_point("!?!?!?", 4, &r), Some(4));
        assert_eq!(cut_point("ab,ab,ab", 7, &r), Some(5));
        assert_eq!(cut_point("日本語", 7, &r), Some(6));
        // A run of more than 4 letters: cut anywhere past its 5th letter; a shorter run is
        // skipped whole.
        assert_eq!(cut_point("xyzzyabcdef", 8, &r), Some(8));
        assert_eq!(cut_point("ab,abcd", 6, &r), Some(2));
        // Never inside an added token, never right after Σ.
        assert_eq!(cut_point("a [MASK] b", 7, &r), Some(2));
        assert_eq!(cut_point("a[mask]", 6, &r), Some(1));
        assert_eq!(cut_point("ΑΣ.β", 5, &r), None);
        // A vertical tab or form feed is removed by BERT's normalizer: not a boundary.
        assert_eq!(cut_point("ab\u{0B}cd", 2, &whitespace_only()), None);
        assert_eq!(cut_point("a b\u{0C}cd", 3, &whitespace_only()), Some(1));
        // Without the rules, only whitespace.
        assert_eq!(cut_point("!?!?!?", 4, &whitespace_only()), None);
    }

    #[test]
    fn long_runs_keep_their_edges() {
        assert_eq!(shorten_long_runs("ab,cdefghij!", 2), "ab,cdij!");
        assert_eq!(shorten_long_runs("abcde", 2), "abde");
        assert_eq!(shorten_long_runs("abcd é", 2), "abcd é");
        assert!(matches!(
            shorten_long_runs("short, text", 3),
            Cow::Borrowed(_)
        ));
    }
}
