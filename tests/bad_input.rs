//! Bad input gets a clear error and no panic; odd but valid input is embedded as
//! sentence-transformers does.

use std::path::{Path, PathBuf};

use sbert::{Error, SentenceEmbedder};

use crate::common;

/// A scratch copy of `models/tiny` to break.
fn tiny_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("tiny");
    common::copy_dir(&common::tiny_dir(), &dir);
    (tmp, dir)
}

fn load(dir: &Path) -> sbert::Result<SentenceEmbedder> {
    SentenceEmbedder::from_dir(dir, &sbert::Device::Cpu)
}

/// The error and its whole source chain, as the CLI prints it.
fn chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}

#[test]
fn missing_files_are_named() {
    for file in [
        "model.safetensors",
        "tokenizer.json",
        "config.json",
        "1_Pooling/config.json",
    ] {
        let (_tmp, dir) = tiny_copy();
        std::fs::remove_file(dir.join(file)).expect("rm");
        let err = load(&dir).expect_err(file);
        assert!(matches!(err, Error::MissingFile(_)), "{file}: {err:?}");
        assert!(err.to_string().contains(file), "{file}: {err}");
    }
}

#[test]
fn corrupt_or_truncated_safetensors_is_an_error() {
    let (_tmp, dir) = tiny_copy();
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
    let err = load(&dir).expect_err("truncated");
    assert!(matches!(err, Error::Weights { .. }), "{err:?}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    std::fs::write(&path, b"this is not a safetensors file at all").expect("garbage");
    let err = load(&dir).expect_err("garbage");
    assert!(matches!(err, Error::Weights { .. }), "{err:?}");
}

#[test]
fn weights_that_do_not_fit_the_config_name_the_tensor_and_shapes() {
    let (_tmp, dir) = tiny_copy();
    let cfg_path = dir.join("config.json");
    let cfg = std::fs::read_to_string(&cfg_path).expect("read");
    std::fs::write(
        &cfg_path,
        cfg.replace("\"intermediate_size\": 64", "\"intermediate_size\": 80"),
    )
    .expect("write");
    let err = load(&dir).expect_err("shape mismatch");
    let msg = chain(&err);
    assert!(msg.contains("intermediate.dense.weight"), "{msg}");
    assert!(msg.contains("80") && msg.contains("64"), "{msg}");

    std::fs::write(
        &cfg_path,
        cfg.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"),
    )
    .expect("write");
    let msg = chain(&load(&dir).expect_err("missing layer"));
    assert!(msg.contains("encoder.layer.2"), "{msg}");

    std::fs::write(
        &cfg_path,
        cfg.replace("\"hidden_size\": 32", "\"hidden_size\": 30"),
    )
    .expect("write");
    let msg = chain(&load(&dir).expect_err("heads do not divide"));
    assert!(msg.contains("num_attention_heads"), "{msg}");
}

#[test]
fn malformed_json_names_the_file() {
    let (_tmp, dir) = tiny_copy();
    std::fs::write(dir.join("1_Pooling/config.json"), "{ not json").expect("write");
    let err = load(&dir).expect_err("bad json");
    assert!(matches!(err, Error::Json { .. }), "{err:?}");
    assert!(err.to_string().contains("1_Pooling"), "{err}");
}

#[test]
fn unknown_pooling_mode_lists_the_valid_ones() {
    let err = "avg".parse::<sbert::Pooling>().expect_err("unknown");
    let msg = err.to_string();
    for valid in [
        "cls",
        "max",
        "mean",
        "mean_sqrt_len_tokens",
        "weightedmean",
        "lasttoken",
    ] {
        assert!(msg.contains(valid), "{msg}");
    }
}

#[test]
fn a_model_that_is_not_there_is_named() {
    let err = load(Path::new("no/such-model-anywhere")).expect_err("missing");
    assert!(err.to_string().contains("no/such-model-anywhere"), "{err}");
    let err = SentenceEmbedder::builder(common::tiny_dir().to_string_lossy())
        .batch_size(0)
        .build()
        .expect_err("batch 0");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

#[test]
fn empty_and_whitespace_texts_embed_as_the_empty_text() {
    let model = load(&common::tiny_dir()).expect("load");
    let out = model.embed(&["", "   ", "\t\n ", "hello"]).expect("embed");
    assert_eq!(
        out.inputs().iter().map(|s| s.tokens).collect::<Vec<_>>(),
        vec![2, 2, 2, 3]
    );
    let rows: Vec<Vec<f32>> = out.to_vecs();
    assert_eq!(rows[0], rows[1]);
    assert_eq!(rows[0], rows[2]);
    assert!(rows[0].iter().all(|x| x.is_finite()));
    // No texts at all: an empty (0, dim) result, not an error.
    let none: [&str; 0] = [];
    let nothing = model.embed(&none).expect("embed");
    assert_eq!((nothing.len(), nothing.dim()), (0, model.dim()));
}

#[test]
fn long_text_is_truncated_and_reported() {
    let model = load(&common::tiny_dir()).expect("load");
    let long = "the cat sat on the mat ".repeat(50);
    let out = model.embed(&[long.as_str(), "the cat"]).expect("embed");
    assert_eq!(out.inputs()[0].tokens, model.max_seq_length());
    assert!(out.inputs()[0].truncated);
    assert!(!out.inputs()[1].truncated);
}

#[test]
fn a_config_with_fewer_layers_than_the_weights_is_an_error() {
    let (_tmp, dir) = tiny_copy();
    let cfg_path = dir.join("config.json");
    let cfg = std::fs::read_to_string(&cfg_path).expect("read");
    std::fs::write(
        &cfg_path,
        cfg.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1"),
    )
    .expect("write");
    let msg = chain(&load(&dir).expect_err("unused layer"));
    assert!(
        msg.contains("2 encoder layers") && msg.contains("num_hidden_layers = 1"),
        "{msg}"
    );
}

/// Rewrites the safetensors header of `path` through `edit` (the data is kept as is).
fn edit_header(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(path).expect("read");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).expect("json");
    edit(&mut header);
    let mut text = serde_json::to_vec(&header).expect("json");
    while text.len() < n {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(path, out).expect("write");
}

#[test]
fn overlapping_tensors_and_gaps_in_safetensors_are_errors() {
    let name = "encoder.layer.0.attention.self.query.bias";
    let (_tmp, dir) = tiny_copy();
    let path = dir.join("model.safetensors");
    // Point one tensor at the bytes of the tensor before it: same size, overlapping data.
    edit_header(&path, |h| {
        let [start, end] = [0, 1].map(|i| h[name]["data_offsets"][i].as_u64().expect("off"));
        h[name]["data_offsets"] = serde_json::json!([start - (end - start), start]);
    });
    let err = load(&dir).expect_err("overlap");
    assert!(matches!(err, Error::Weights { .. }), "{err:?}");

    let (_tmp, dir) = tiny_copy();
    let path = dir.join("model.safetensors");
    edit_header(&path, |h| {
        h.as_object_mut().expect("object").remove(name);
    });
    let err = load(&dir).expect_err("gap");
    assert!(matches!(err, Error::Weights { .. }), "{err:?}");
}

#[test]
fn a_nan_weight_is_named_at_load() {
    let (_tmp, dir) = tiny_copy();
    let path = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).expect("read");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).expect("json");
    let name = "encoder.layer.1.output.dense.weight";
    let at = 8 + n + header[name]["data_offsets"][0].as_u64().expect("off") as usize + 4 * 7;
    bytes[at..at + 4].copy_from_slice(&f32::INFINITY.to_le_bytes());
    std::fs::write(&path, bytes).expect("write");
    let err = load(&dir).expect_err("inf weight");
    assert!(
        matches!(&err, Error::InvalidWeights { tensor, first: 7, count: 1, .. } if tensor == name),
        "{err:?}"
    );
}

/// Texts whose tokens the prefix shortcut must reproduce exactly: long runs of words,
/// whitespace of every kind, punctuation, multi-byte and combining characters.
fn long_texts() -> Vec<String> {
    let words = "The café's naïve résumé — 東京 at 3.5 GHz, didn't it? Ωμέγα ΣΟΦΟΣ x\u{301}y ";
    vec![
        words.repeat(400),
        format!("{}\t\n\u{3000}end", "word ".repeat(3000)),
        format!("{}{}", "a".repeat(50_000), " b".repeat(400)),
        format!("  {}  ", "punctuation!!! ...and,more; ".repeat(500)),
        "x".repeat(30_000),
        "short text".to_string(),
        // No whitespace at all: punctuation, ideographs, URLs, base64, one long word, and
        // the cases a cut must respect (added tokens, Σ before punctuation, accents).
        "!?".repeat(20_000),
        "ab,".repeat(15_000),
        "東京の日本語テキスト".repeat(3_000),
        "https://example.com/a/b?q=1&r=two#frag".repeat(1_000),
        base64_like(60_000),
        "abc123".repeat(8_000),
        "[MASK][SEP]x".repeat(5_000),
        "ΑΣ.ΣΑ,".repeat(6_000),
        "é,x\u{301}!".repeat(8_000),
        format!("{}!{}", "q".repeat(150), "w".repeat(40_000)),
        // Found by the text_path fuzz target: a vertical tab (whitespace to Unicode, a control
        // character BERT's normalizer removes) is not a place to cut.
        String::from_utf8_lossy(include_bytes!("fixtures/fuzz_vertical_tab_cut.bin")).into_owned(),
        format!(
            "{}{}",
            "word ".repeat(300),
            "a\u{0B}b\u{0C}c\u{85}d ".repeat(300)
        ),
    ]
}

/// `len` characters of base64 from a fixed LCG: runs of letters and digits between `+` and `/`.
fn base64_like(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state: u64 = 42;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from(ALPHABET[(state >> 58) as usize])
        })
        .collect()
}

#[test]
fn long_texts_tokenize_as_the_whole_text_does() {
    let tiny = load(&common::tiny_dir()).expect("load");
    for (model, text) in long_texts()
        .into_iter()
        .flat_map(|t| [(&tiny, t.clone()), (common::minilm(), t)])
    {
        let got = model
            .tokenize(&[text.as_str()], sbert::Prompt::Default)
            .expect("tokenize");
        let whole = model
            .tokenizer()
            .encode_fast(text.trim(), true)
            .expect("whole");
        assert_eq!(got[0].ids, whole.get_ids(), "{}…", &text[..20]);
        assert_eq!(got[0].truncated, !whole.get_overflowing().is_empty());
        // What /tokenize shows: the same through a prefix, offsets included.
        for special in [true, false] {
            let shown = model.encode_with_offsets(&text, special).expect("offsets");
            let whole = model
                .tokenizer()
                .encode(text.as_str(), special)
                .expect("whole");
            assert_eq!(shown.get_ids(), whole.get_ids());
            assert_eq!(shown.get_offsets(), whole.get_offsets());
        }
    }
}

#[test]
fn a_huge_line_embeds_as_its_first_100_kb() {
    let model = load(&common::tiny_dir()).expect("load");
    let huge = "the quick brown fox jumps over the lazy dog. ".repeat(100_000); // 4.5 MB
    let cut = &huge[..100_000];
    let e = model.embed(&[huge.as_str(), cut]).expect("embed").to_vecs();
    assert_eq!(e[0], e[1]);
}

/// Found by the `model_folder` fuzz target: a control character inside a string of
/// tokenizer.json's decoder made the tokenizers crate panic; it is a JSON error naming the file.
#[test]
fn a_tokenizer_json_with_a_raw_control_character_is_a_json_error() {
    let (_tmp, dir) = tiny_copy();
    let path = dir.join("tokenizer.json");
    let text = std::fs::read_to_string(&path).expect("read");
    let at = text.rfind("\"type\"").expect("a type key");
    let broken = format!("{}\"ty\u{1}pe\"{}", &text[..at], &text[at + 6..]);
    std::fs::write(&path, broken).expect("write");
    let err = load(&dir).expect_err("control character");
    assert!(matches!(err, Error::Json { .. }), "{err:?}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

#[test]
fn every_malformed_model_file_is_a_typed_error_naming_it() {
    for file in [
        "config.json",
        "modules.json",
        "tokenizer.json",
        "sentence_bert_config.json",
        "2_Dense/config.json",
    ] {
        let (_tmp, dir) = tiny_copy();
        std::fs::write(dir.join(file), "{ not json").expect("write");
        let err = load(&dir).expect_err(file);
        assert!(matches!(err, Error::Json { .. }), "{file}: {err:?}");
        assert!(err.to_string().contains(file), "{file}: {err}");
    }
}

#[test]
fn a_missing_or_corrupt_dense_module_is_named() {
    let (_tmp, dir) = tiny_copy();
    std::fs::remove_file(dir.join("2_Dense/model.safetensors")).expect("rm");
    let err = load(&dir).expect_err("missing dense weights");
    assert!(matches!(err, Error::MissingFile(_)), "{err:?}");
    assert!(err.to_string().contains("2_Dense"), "{err}");

    let (_tmp, dir) = tiny_copy();
    std::fs::write(
        dir.join("2_Dense/model.safetensors"),
        b"\x08\0\0\0\0\0\0\0{}garbage",
    )
    .expect("write");
    let err = load(&dir).expect_err("corrupt dense weights");
    assert!(matches!(err, Error::Weights { .. }), "{err:?}");
    assert!(err.to_string().contains("2_Dense"), "{err}");
}

#[test]
fn unknown_modules_vocabulary_mismatch_and_short_sequences_are_refused() {
    let (_tmp, dir) = tiny_copy();
    let modules = std::fs::read_to_string(dir.join("modules.json")).expect("read");
    std::fs::write(
        dir.join("modules.json"),
        modules.replace("models.Dense", "models.LSTM"),
    )
    .expect("write");
    let err = load(&dir).expect_err("unknown module");
    assert!(
        matches!(&err, Error::Unsupported(m) if m.contains("LSTM")),
        "{err:?}"
    );

    let (_tmp, dir) = tiny_copy();
    let cfg = std::fs::read_to_string(dir.join("config.json")).expect("read");
    let vocab: usize = serde_json::from_str::<serde_json::Value>(&cfg).expect("json")["vocab_size"]
        .as_u64()
        .expect("vocab_size") as usize;
    std::fs::write(
        dir.join("config.json"),
        cfg.replace(
            &format!("\"vocab_size\": {vocab}"),
            &format!("\"vocab_size\": {}", vocab - 10),
        ),
    )
    .expect("write");
    let msg = chain(&load(&dir).expect_err("vocabulary mismatch"));
    assert!(
        msg.contains("word_embeddings") || msg.contains("tokens"),
        "{msg}"
    );

    let (_tmp, dir) = tiny_copy();
    std::fs::write(
        dir.join("sentence_bert_config.json"),
        r#"{"max_seq_length": 1, "do_lower_case": false}"#,
    )
    .expect("write");
    let err = load(&dir).expect_err("max_seq_length 1");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

#[test]
fn an_integer_weight_tensor_is_refused() {
    let (_tmp, dir) = tiny_copy();
    let name = "encoder.layer.0.attention.self.query.bias";
    edit_header(&dir.join("model.safetensors"), |h| {
        h[name]["dtype"] = serde_json::json!("U32");
    });
    let msg = chain(&load(&dir).expect_err("integer weights"));
    assert!(msg.contains(name) && msg.contains("U32"), "{msg}");
}

#[test]
fn mismatched_pairs_and_an_empty_retrieval_task_are_errors() {
    let model = load(&common::tiny_dir()).expect("load");
    let (a, c) = (
        model.embed(&["a", "b"]).expect("embed"),
        model.embed(&["c"]).expect("embed"),
    );
    let err = model
        .similarity_pairwise(&a, &c)
        .expect_err("lengths differ");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let empty = sbert_eval::RetrievalTask::from_pairs(std::iter::empty());
    assert!(sbert_eval::evaluate_retrieval(&model, &empty).is_err());
}

/// Found by the `model_folder` fuzz target: a post-processor template naming a special token
/// that tokenizer.json does not define (in either of the spellings serde accepts for a piece),
/// or a special token with more ids than tokens, loaded fine and panicked on the first text.
#[test]
fn an_inconsistent_template_is_a_load_error() {
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit); 3] = [
        ("undefined token", |json| {
            let special = json["post_processor"]["special_tokens"]
                .as_object_mut()
                .expect("special tokens");
            let sep = special.remove("[SEP]").expect("[SEP]");
            special.insert("[SEP_".into(), sep);
        }),
        ("undefined token, piece as a sequence", |json| {
            json["post_processor"]["single"][0] =
                serde_json::json!({"SpecialToken": ["[NOT_DEFINED]", 0]});
        }),
        ("more ids than tokens", |json| {
            json["post_processor"]["special_tokens"]["[SEP]"]["ids"] = serde_json::json!([1, 2]);
        }),
    ];
    for (what, edit) in edits {
        let (_tmp, dir) = tiny_copy();
        let path = dir.join("tokenizer.json");
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        edit(&mut json);
        std::fs::write(&path, serde_json::to_string(&json).expect("json")).expect("write");
        let err = load(&dir).expect_err(what);
        assert!(
            matches!(err, Error::TokenizerLoad { .. }),
            "{what}: {err:?}"
        );
        // Named by the check, not caught as a panic of the probe encode (a fuzzer, like any
        // panic hook that aborts, sees that panic).
        let msg = chain(&err);
        assert!(
            msg.contains("special token") && !msg.contains("panicked"),
            "{what}: {msg}"
        );
    }
}

/// An index is tied to everything that makes the model's embeddings: a copy of the model in
/// another folder is the same model; a changed tokenizer or Dense head is not (only the
/// encoder's weights used to be fingerprinted).
#[test]
fn the_model_identity_covers_the_tokenizer_and_every_module_but_not_the_folder_name() {
    let tiny = load(&common::tiny_dir()).expect("load");
    let (_tmp, copy) = tiny_copy();
    let renamed = copy.with_file_name("another-name");
    std::fs::rename(&copy, &renamed).expect("rename");
    let original = tiny.identity().expect("identity");
    let moved = load(&renamed).expect("load").identity().expect("identity");
    assert!(original.matches(&moved), "{original:?} vs {moved:?}");
    assert_ne!(original.name, moved.name);

    // One token of the vocabulary renamed: a different tokenizer, the same weights.
    let path = renamed.join("tokenizer.json");
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, text.replacen("\"the\"", "\"thee\"", 1)).expect("write");
    let retokenized = load(&renamed).expect("load").identity().expect("identity");
    assert!(!original.matches(&retokenized));
    std::fs::write(&path, text).expect("restore");

    // The Dense head's first weight nudged in its lowest mantissa bit: another head, the
    // same encoder.
    let dense = renamed.join("2_Dense/model.safetensors");
    let mut bytes = std::fs::read(&dense).expect("read");
    let header = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    bytes[8 + header] ^= 1;
    std::fs::write(&dense, &bytes).expect("write");
    let changed = load(&renamed).expect("load").identity().expect("identity");
    assert!(!original.matches(&changed));
}

/// Found by the `model_folder` fuzz target: bytes that are not UTF-8 inside a string of
/// tokenizer.json's decoder made the tokenizers crate panic; it is a JSON error naming the file.
#[test]
fn a_tokenizer_json_with_bytes_that_are_not_utf8_is_a_json_error() {
    let (_tmp, dir) = tiny_copy();
    let path = dir.join("tokenizer.json");
    let text = std::fs::read(&path).expect("read");
    let at = text
        .windows(b"WordPiece".len())
        .position(|w| w == b"WordPiece")
        .expect("the decoder's WordPiece");
    let mut bytes = text.clone();
    bytes[at + 2] = 0x8e;
    bytes[at + 3] = 0x93;
    std::fs::write(&path, &bytes).expect("write");
    let err = load(&dir).expect_err("not UTF-8");
    assert!(matches!(err, Error::Json { .. }), "{err:?}");
}
