//! The architectures beyond BERT against sentence-transformers' own outputs.
//!
//! * all-mpnet-base-v2 (MPNet, real weights: `models/fetch.sh all-mpnet-base-v2`) against
//!   `tests/fixtures/golden_mpnet.json` (`tests/fixtures/gen_mpnet.py`), to the tolerances of the
//!   MiniLM golden tests;
//! * the seeded small checkpoints of `models/families/` (XLM-RoBERTa, DistilBERT, ModernBERT;
//!   `models/families/generate.py`) against the `fixture.json` in each, to 1e-5, prompts
//!   included: E5-style prompts pooled with the text (XLM-RoBERTa) and an instruction prompt
//!   left out of pooling, set as the model's default (DistilBERT).

use std::path::{Path, PathBuf};

use sbert::{Pooling, PoolingMode, Prompt, SentenceEmbedder};
use serde::Deserialize;

use crate::common;

#[derive(Deserialize)]
struct Golden {
    max_seq_length: usize,
    sentences: Vec<String>,
    input_ids: Vec<Vec<u32>>,
    mean: Vec<Vec<f32>>,
    max: Vec<Vec<f32>>,
    cls: Vec<Vec<f32>>,
    mean_normalized: Vec<Vec<f32>>,
    #[serde(default)]
    prompted: Vec<Prompted>,
}

/// The outputs of one `encode(prompt_name=…)` or `encode(prompt=…)` call.
#[derive(Deserialize)]
struct Prompted {
    prompt_name: Option<String>,
    prompt: Option<String>,
    input_ids: Vec<Vec<u32>>,
    prompt_length: usize,
    mean: Vec<Vec<f32>>,
    max: Vec<Vec<f32>>,
    cls: Vec<Vec<f32>>,
}

impl Prompted {
    fn prompt(&self) -> Prompt<'_> {
        match (&self.prompt_name, &self.prompt) {
            (Some(name), _) => Prompt::Named(name),
            (None, Some(text)) => Prompt::Text(text),
            (None, None) => panic!("a prompted fixture names a prompt or gives one"),
        }
    }
}

fn family(name: &str) -> PathBuf {
    common::root().join("models/families").join(name)
}

fn mpnet_dir() -> PathBuf {
    let dir = common::root().join("models/all-mpnet-base-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} has no model.safetensors: run models/fetch.sh all-mpnet-base-v2 first",
        dir.display()
    );
    dir
}

const MODES: [PoolingMode; 3] = [PoolingMode::Mean, PoolingMode::Max, PoolingMode::Cls];

fn load(dir: &Path, pooling: Option<PoolingMode>, normalize: bool) -> SentenceEmbedder {
    let mut builder = SentenceEmbedder::builder(dir.to_string_lossy()).normalize(normalize);
    if let Some(mode) = pooling {
        builder = builder.pooling(Pooling::single(mode));
    }
    builder
        .build()
        .unwrap_or_else(|e| panic!("load {}: {e}", dir.display()))
}

/// Token ids, the three poolings (default prompt applied, as `encode` does), the normalized
/// mean, and every prompted call of the fixture.
fn check(dir: &Path, max_abs: f32, min_cos: f32) {
    let golden: Golden = common::read_json(&dir.join("fixture.json"));
    check_golden(dir, &golden, max_abs, min_cos);
}

fn check_golden(dir: &Path, golden: &Golden, max_abs: f32, min_cos: f32) {
    let raw = load(dir, None, false);
    assert_eq!(
        raw.max_seq_length(),
        golden.max_seq_length,
        "max_seq_length"
    );
    let tok = raw
        .tokenize(&golden.sentences, Prompt::None)
        .expect("tokenize");
    for (i, (got, want)) in tok.iter().zip(&golden.input_ids).enumerate() {
        assert_eq!(
            &got.ids, want,
            "input_ids of text {i} {:?}",
            golden.sentences[i]
        );
    }
    common::assert_poolings_match(
        &raw,
        &golden.sentences,
        [&golden.mean, &golden.max, &golden.cls],
        max_abs,
        min_cos,
    );
    let normalized = load(dir, None, true)
        .embed(&golden.sentences)
        .expect("embed")
        .to_vecs();
    common::assert_close(
        "mean_normalized",
        &normalized,
        &golden.mean_normalized,
        max_abs,
        min_cos,
    );

    for call in &golden.prompted {
        let label = format!("{:?}", call.prompt());
        let tok = raw
            .tokenize(&golden.sentences, call.prompt())
            .expect("tokenize");
        for (i, (got, want)) in tok.iter().zip(&call.input_ids).enumerate() {
            assert_eq!(&got.ids, want, "{label}: input_ids of text {i}");
            // sentence-transformers applies no empty prompt, so none is left out.
            let applied = raw.prompt_text(call.prompt()).expect("known").is_some();
            let skipped = if raw.pools_prompt() || !applied {
                0
            } else {
                call.prompt_length
            };
            assert_eq!(
                got.prompt_tokens, skipped,
                "{label}: prompt tokens of text {i}"
            );
        }
        for (mode, want) in MODES.into_iter().zip([&call.mean, &call.max, &call.cls]) {
            let got: Vec<Vec<f32>> = load(dir, Some(mode), false)
                .encode(
                    &golden.sentences,
                    &sbert::EncodeOptions::default().prompt(call.prompt()),
                )
                .expect("encode")
                .to_vecs();
            common::assert_close(
                &format!("{label} {}", mode.name()),
                &got,
                want,
                max_abs,
                min_cos,
            );
        }
    }
}

#[test]
fn xlm_roberta_matches_sentence_transformers_with_and_without_prompts() {
    check(&family("xlm-roberta"), 1e-5, 0.99999);
}

#[test]
fn distilbert_matches_sentence_transformers_with_its_default_prompt_left_out_of_pooling() {
    let dir = family("distilbert");
    let model = load(&dir, None, false);
    assert!(!model.pools_prompt());
    assert!(model
        .default_prompt()
        .is_some_and(|p| p.starts_with("Instruct:")));
    check(&dir, 1e-5, 0.99999);
}

#[test]
fn modernbert_matches_sentence_transformers() {
    // Texts of up to 64 tokens through a 3-layer stack whose middle layer sees ±4 positions.
    check(&family("modernbert"), 1e-5, 0.99999);
}

#[test]
fn all_mpnet_base_v2_matches_sentence_transformers() {
    let golden =
        common::read_json::<Golden>(&common::root().join("tests/fixtures/golden_mpnet.json"));
    check_golden(&mpnet_dir(), &golden, 1e-4, 0.99999);
}

#[test]
fn an_mpnet_text_alone_equals_the_same_text_in_a_padded_batch() {
    let model = load(&mpnet_dir(), None, true);
    let filler: Vec<String> = (0..8)
        .map(|i| format!("Sentence number {i} is considerably longer than the short one, so that the batch pads it heavily with many extra tokens beyond the sixteen-token buckets."))
        .collect();
    let alone = model.embed(&["Hello!"]).expect("embed").to_vecs();
    let mut batch: Vec<&str> = filler.iter().map(String::as_str).collect();
    batch.insert(5, "Hello!");
    let inside = model.embed(&batch).expect("embed").to_vecs();
    let d = common::max_abs_diff(&alone[0], &inside[5]);
    assert!(d <= 1e-5, "alone vs in a batch: max |Δ| {d:e}");
}

/// The packed CPU pass and the graph over a padded batch give the same token embeddings for
/// the BERT-family encoders whose positions and attention differ from BERT's.
#[test]
fn packed_and_padded_passes_agree_for_mpnet_and_xlm_roberta() {
    for dir in [mpnet_dir(), family("xlm-roberta"), family("distilbert")] {
        let model = load(&dir, None, false);
        let bert = model.encoder().bert().expect("a BERT-family encoder");
        let texts = [
            "A man is playing a guitar while the sun sets over the long, quiet harbour of the old town.",
            "",
            "Hello!",
        ];
        let tok = model.tokenize(&texts, Prompt::None).expect("tokenize");
        let (ids, lengths) = sbert::TokenizedText::pack(&tok);
        let packed: Vec<Vec<f32>> = bert
            .forward_packed(&ids, &lengths)
            .expect("packed")
            .to_vec2()
            .expect("vec");
        let refs: Vec<&sbert::TokenizedText> = tok.iter().collect();
        let batch = model.pad(&refs).expect("pad");
        let padded: Vec<Vec<Vec<f32>>> = bert
            .forward(&batch.input_ids, None, &batch.attention_mask)
            .expect("padded")
            .to_vec3()
            .expect("vec");
        let mut row = 0;
        for (r, &len) in lengths.iter().enumerate() {
            for (pos, want) in padded[r].iter().take(len).enumerate() {
                let d = common::max_abs_diff(&packed[row], want);
                assert!(
                    d <= 1e-4,
                    "{}: text {r} token {pos}: max |Δ| {d:e}",
                    dir.display()
                );
                row += 1;
            }
        }
    }
}

#[test]
fn an_unknown_model_type_is_refused_with_the_supported_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("model");
    common::copy_dir(&family("distilbert"), &dir);
    let config = dir.join("config.json");
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(&config, text.replace("\"distilbert\"", "\"t5\"")).expect("write");
    let err = SentenceEmbedder::from_dir(&dir, &sbert::Device::Cpu)
        .expect_err("t5 is not supported")
        .to_string();
    for expected in ["\"t5\"", "mpnet", "xlm-roberta", "distilbert", "modernbert"] {
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn a_prompt_name_the_model_lacks_is_an_error_naming_its_prompts() {
    let dir = family("xlm-roberta");
    let err = SentenceEmbedder::builder(dir.to_string_lossy())
        .prompt_name("question")
        .build()
        .expect_err("no such prompt")
        .to_string();
    assert!(
        err.contains("\"question\"") && err.contains("passage"),
        "{err}"
    );
    let model = load(&dir, None, false);
    assert!(model
        .encode(
            &["a"],
            &sbert::EncodeOptions::default().prompt(Prompt::Named("question"))
        )
        .is_err());
}
