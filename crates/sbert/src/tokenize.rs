//! Tokenizing as sentence-transformers does: strip, lower-case if asked, add the special
//! tokens, truncate at `max_seq_length`, pad nothing (batches are padded later).

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Error, Result};
use crate::folder;

/// What tokenization did to one input text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedText {
    /// Token ids, special tokens included, after truncation. No padding.
    pub ids: Vec<u32>,
    /// Whether the text was longer than `max_seq_length` and lost its tail.
    pub truncated: bool,
    /// Leading tokens of a prompt that pooling leaves out: the prompt's length (as
    /// sentence-transformers measures it) when the model's Pooling has `include_prompt: false`,
    /// else 0.
    pub prompt_tokens: usize,
}

impl TokenizedText {
    /// The token ids of `texts` back to back and the length of each: the input of a packed
    /// encoder pass ([`crate::BertModel::forward_packed`]) and of
    /// [`crate::Pooling::pool_packed`].
    pub fn pack<'a>(texts: impl IntoIterator<Item = &'a TokenizedText>) -> (Vec<u32>, Vec<usize>) {
        let (mut ids, mut lengths) = (Vec::new(), Vec::new());
        for t in texts {
            ids.extend_from_slice(&t.ids);
            lengths.push(t.ids.len());
        }
        (ids, lengths)
    }
}

/// From this many texts on, a call tokenizes them in parallel.
const PARALLEL_FROM: usize = 32;

/// `tokenizer.json` with sentence-transformers' settings.
#[derive(Debug)]
pub(crate) struct TextTokenizer {
    tokenizer: Tokenizer,
    max_seq_length: usize,
    do_lower_case: bool,
    /// Where long texts may be cut to tokenize a prefix (see `prefix::cut_rules`).
    cut_rules: Option<crate::prefix::CutRules>,
    /// Whether `[CLS]` / `[SEP]` (the post-processor's tokens) are added: yes for a
    /// transformer, no for a static table (sentence-transformers' `StaticEmbedding`).
    special_tokens: bool,
}

impl TextTokenizer {
    /// Loads `dir/tokenizer.json` for a static table: no special tokens, no truncation.
    pub(crate) fn load_static(dir: &Path) -> Result<Self> {
        let mut tokenizer = Self::load(dir, usize::MAX, false)?;
        tokenizer.special_tokens = false;
        tokenizer.cut_rules = None;
        tokenizer
            .tokenizer
            .with_truncation(None)
            .map_err(|source| Error::TokenizerLoad {
                path: dir.join("tokenizer.json"),
                source,
            })?;
        Ok(tokenizer)
    }

    /// Loads `dir/tokenizer.json` for texts of at most `max_seq_length` tokens.
    pub(crate) fn load(dir: &Path, max_seq_length: usize, do_lower_case: bool) -> Result<Self> {
        let tokenizer = load_tokenizer(dir, max_seq_length)?;
        probe(&tokenizer, dir, false)?;
        let cut_rules = crate::prefix::cut_rules(&tokenizer);
        Ok(Self {
            tokenizer,
            max_seq_length,
            do_lower_case,
            cut_rules,
            special_tokens: true,
        })
    }

    /// The tokenizer, with sentence-transformers' truncation and no padding.
    pub(crate) fn inner(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Longest output in tokens, special tokens included.
    pub(crate) fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Tokenizes each text; see the module docs. Many texts are tokenized in parallel on the
    /// current rayon pool (the tokenizer is the whole cost of a static model).
    pub(crate) fn tokenize(&self, texts: &[&str]) -> Result<Vec<TokenizedText>> {
        self.each(texts, |t| self.tokenize_one(t, 0))
    }

    /// `work` over `texts`, in parallel from [`PARALLEL_FROM`] texts on, results in order.
    fn each(
        &self,
        texts: &[&str],
        work: impl Fn(&str) -> Result<TokenizedText> + Sync,
    ) -> Result<Vec<TokenizedText>> {
        use rayon::prelude::*;
        if texts.len() >= PARALLEL_FROM {
            texts.par_iter().map(|t| work(t)).collect()
        } else {
            texts.iter().map(|t| work(t)).collect()
        }
    }

    /// Tokenizes `prompt` followed by each text, as sentence-transformers does (the prompt
    /// joins the text before stripping and tokenizing). With `exclude`, each result records
    /// the prompt's length ([`TextTokenizer::prompt_length`]) as tokens pooling leaves out.
    pub(crate) fn tokenize_prompted(
        &self,
        texts: &[&str],
        prompt: &str,
        exclude: bool,
    ) -> Result<Vec<TokenizedText>> {
        let skip = if exclude {
            self.prompt_length(prompt)?
        } else {
            0
        };
        self.each(texts, |t| self.tokenize_one(&format!("{prompt}{t}"), skip))
    }

    /// The length of `prompt` in tokens as sentence-transformers' `_get_prompt_length` counts
    /// it: the prompt tokenized alone, special tokens included, less a trailing special token
    /// (`[SEP]`, `</s>`).
    pub(crate) fn prompt_length(&self, prompt: &str) -> Result<usize> {
        let ids = self.tokenize_one(prompt, 0)?.ids;
        let special = self.tokenizer.get_added_tokens_decoder();
        let trailing_special = ids
            .last()
            .is_some_and(|id| special.get(id).is_some_and(|t| t.special));
        Ok(ids.len() - usize::from(trailing_special))
    }

    /// The tokenizer's encoding of `text` as it is (no stripping, no lower-casing), with byte
    /// offsets into it, truncated at `max_seq_length` and computed through a prefix when the
    /// text is long: what a `/tokenize` route shows.
    pub(crate) fn encode_with_offsets(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<tokenizers::Encoding> {
        let encode = |t: &str| self.tokenizer.encode(t, add_special_tokens);
        crate::prefix::encode_prefix(text, self.max_seq_length, self.cut_rules.as_ref(), &encode)
            .map(|(enc, _)| enc)
            .map_err(Error::Tokenizer)
    }

    fn tokenize_one(&self, text: &str, prompt_tokens: usize) -> Result<TokenizedText> {
        // A long text is tokenized through a prefix with the same first tokens, so its cost is
        // bounded by what is kept (see `prefix`).
        let (enc, truncated) = crate::prefix::encode_truncated(
            &self.tokenizer,
            text.trim(),
            self.do_lower_case,
            self.max_seq_length,
            self.cut_rules.as_ref(),
            self.special_tokens,
        )
        .map_err(Error::Tokenizer)?;
        Ok(TokenizedText {
            ids: enc.get_ids().to_vec(),
            truncated,
            prompt_tokens,
        })
    }
}

/// `tokenizer.json` of `dir` for pairs of texts: truncation longest-first at `max_length`
/// (special tokens included), no padding; checked by encoding a probe pair.
pub(crate) fn load_pair_tokenizer(dir: &Path, max_length: usize) -> Result<Tokenizer> {
    let tokenizer = load_tokenizer(dir, max_length)?;
    probe(&tokenizer, dir, true)?;
    Ok(tokenizer)
}

/// The tokenizers crate accepts some inconsistent files (a post-processor template naming a
/// special token it does not define) and panics on the first encode; one probe encode (of a
/// pair when `pair`) turns that into a load error.
fn probe(tokenizer: &Tokenizer, dir: &Path, pair: bool) -> Result<()> {
    let probe = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if pair {
            tokenizer.encode_fast(("probe text", "second text"), true)
        } else {
            tokenizer.encode_fast("probe text", true)
        }
    }));
    let path = dir.join("tokenizer.json");
    match probe {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(Error::TokenizerLoad { path, source }),
        Err(_) => Err(Error::TokenizerLoad {
            path,
            source: "the file is inconsistent: the tokenizers library panicked encoding a probe \
                     text (a post-processor naming an undefined special token?)"
                .into(),
        }),
    }
}

/// Loads `tokenizer.json` and replaces its own truncation and padding with
/// sentence-transformers' (truncate at `max_seq_length`, pad nothing: batches are padded to
/// their longest text).
fn load_tokenizer(dir: &Path, max_seq_length: usize) -> Result<Tokenizer> {
    let path = folder::require_file(dir.join("tokenizer.json"))?;
    let bytes = std::fs::read(&path).map_err(|source| folder::io_error(&path, source))?;
    // Malformed JSON is reported by serde_json, naming line and column; the tokenizers crate
    // can panic on some of it (an `expect` in its decoder deserializer) instead of failing.
    // Parsed into a value, not skipped: skipping does not check `\u` escapes, and an invalid
    // code point in the decoder section panics the tokenizers crate (found by the
    // `model_folder` fuzz target).
    serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|source| Error::Json {
        path: path.clone(),
        source,
    })?;
    let parsed = std::panic::catch_unwind(|| Tokenizer::from_bytes(&bytes)).map_err(|_| {
        Error::TokenizerLoad {
            path: path.clone(),
            source: "the tokenizers library panicked while reading this file".into(),
        }
    })?;
    let mut tokenizer = parsed.map_err(|source| Error::TokenizerLoad {
        path: path.clone(),
        source,
    })?;
    // The templates are checked in the form the tokenizers crate serializes what it loaded:
    // the file may spell a piece several ways (`{"SpecialToken": {"id": ..}}`,
    // `{"SpecialToken": [.., 0]}`, "[CLS]:0"), the canonical form has one.
    let processor =
        serde_json::to_value(tokenizer.get_post_processor()).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
    if let Some(problem) = template_problem(&processor) {
        return Err(Error::TokenizerLoad {
            path,
            source: problem.into(),
        });
    }
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_seq_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        }))
        .map_err(|source| Error::TokenizerLoad { path, source })?;
    Ok(tokenizer)
}

/// What is wrong with a post-processor's templates, if anything: a template that names a
/// special token its `special_tokens` do not define, or a special token whose `ids` and
/// `tokens` differ in length (the tokenizers crate loads such a file and panics on the first
/// encode). `processor` is the serialized form of the loaded post-processor.
fn template_problem(processor: &serde_json::Value) -> Option<String> {
    match processor.get("type").and_then(serde_json::Value::as_str) {
        Some("TemplateProcessing") => {
            let defined = processor
                .get("special_tokens")
                .and_then(serde_json::Value::as_object);
            let uneven = defined.into_iter().flatten().find(|(_, token)| {
                let len = |key: &str| {
                    token
                        .get(key)
                        .and_then(serde_json::Value::as_array)
                        .map(Vec::len)
                };
                len("ids") != len("tokens")
            });
            if let Some((id, _)) = uneven {
                return Some(format!(
                    "the post-processor's special token {id:?} has different numbers of ids and \
                     tokens"
                ));
            }
            ["single", "pair"]
                .iter()
                .filter_map(|key| processor.get(*key).and_then(serde_json::Value::as_array))
                .flatten()
                .filter_map(|piece| piece.get("SpecialToken")?.get("id")?.as_str())
                .find(|id| !defined.is_some_and(|d| d.contains_key(*id)))
                .map(|id| {
                    format!(
                        "the post-processor's template uses special token {id:?}, which its \
                         special_tokens do not define"
                    )
                })
        }
        Some("Sequence") => processor
            .get("processors")
            .and_then(serde_json::Value::as_array)?
            .iter()
            .find_map(template_problem),
        _ => None,
    }
}
