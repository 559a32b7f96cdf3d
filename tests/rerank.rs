//! Cross-encoders (rerankers) against sentence-transformers' `CrossEncoder`
//! (`models/rerankers/generate.py`): the seeded BERT, XLM-RoBERTa and DistilBERT heads of
//! `models/rerankers/` (sentence-transformers 6's folder), and all-MiniLM-L6-v2's real weights
//! under a classifier of 1 and 3 labels (transformers' plain folder, built here as the script
//! builds it): token and segment ids, scores, raw logits and rankings.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use sbert::{Activation, CrossEncoder, Device, PredictOptions, SentenceEmbedder, Tensor};

use crate::common;

#[derive(Deserialize)]
struct Fixture {
    max_length: usize,
    num_labels: usize,
    pairs: Vec<(String, String)>,
    input_ids: Vec<Vec<u32>>,
    token_type_ids: Vec<Vec<u32>>,
    scores: serde_json::Value,
    logits: serde_json::Value,
    query: String,
    documents: Vec<String>,
    rank: Option<Vec<RankedRow>>,
}

#[derive(Deserialize)]
struct RankedRow {
    corpus_id: usize,
    score: f32,
}

/// A fixture's scores as rows (one value per pair for one label).
fn rows(v: &serde_json::Value) -> Vec<Vec<f32>> {
    let as_f32 = |x: &serde_json::Value| x.as_f64().expect("number") as f32;
    v.as_array()
        .expect("array")
        .iter()
        .map(|r| match r.as_array() {
            Some(row) => row.iter().map(as_f32).collect(),
            None => vec![as_f32(r)],
        })
        .collect()
}

/// Checks `model` against `fixture` within `tolerance`.
fn check(name: &str, model: &CrossEncoder, fixture: &Fixture, tolerance: f32) {
    assert_eq!(model.max_length(), fixture.max_length, "{name}: max_length");
    assert_eq!(model.num_labels(), fixture.num_labels, "{name}: labels");
    for (i, (q, d)) in fixture.pairs.iter().enumerate() {
        let (ids, types) = model.tokenize_pair(q, d).expect("tokenize");
        assert_eq!(ids, fixture.input_ids[i], "{name}: ids of pair {i}");
        assert_eq!(
            types, fixture.token_type_ids[i],
            "{name}: segments of pair {i}"
        );
    }
    let scores = model.predict(&fixture.pairs).expect("predict");
    let want = rows(&fixture.scores);
    let got: Vec<Vec<f32>> = scores.rows().map(<[f32]>::to_vec).collect();
    let d = want
        .iter()
        .zip(&got)
        .map(|(w, g)| common::max_abs_diff(w, g))
        .fold(0f32, f32::max);
    assert_eq!(got.len(), want.len(), "{name}: pairs");
    assert!(d <= tolerance, "{name}: scores differ by {d:e}");
    let raw = model
        .predict_with(
            &fixture.pairs,
            &PredictOptions {
                activation: Some(Activation::Identity),
                batch_size: Some(3),
            },
        )
        .expect("logits");
    let want = rows(&fixture.logits);
    for (i, (w, g)) in want.iter().zip(raw.rows()).enumerate() {
        let d = common::max_abs_diff(w, g);
        assert!(d <= tolerance, "{name}: logits of pair {i} differ by {d:e}");
    }
    // A pair alone scores what it scores in a batch of longer ones.
    let alone = model.predict(&fixture.pairs[..1]).expect("alone");
    assert!(common::max_abs_diff(alone.row(0), scores.row(0)) <= 1e-5);
    if let Some(want) = &fixture.rank {
        let ranked = model
            .rank(&fixture.query, &fixture.documents, Some(3))
            .expect("rank");
        let ids: Vec<usize> = ranked.iter().map(|r| r.corpus_id).collect();
        let want_ids: Vec<usize> = want.iter().map(|r| r.corpus_id).collect();
        assert_eq!(ids, want_ids, "{name}: ranking");
        for (r, w) in ranked.iter().zip(want) {
            assert!((r.score - w.score).abs() <= tolerance, "{name}: rank score");
        }
    }
}

#[test]
fn seeded_rerankers_of_three_families_match_sentence_transformers() {
    for name in ["bert", "xlm-roberta", "distilbert"] {
        let dir = common::root().join("models/rerankers").join(name);
        let model = CrossEncoder::from_dir(&dir, &Device::Cpu).expect("loads");
        let fixture: Fixture = common::read_json(&dir.join("fixture.json"));
        check(name, &model, &fixture, 1e-5);
    }
}

/// The value `models/rerankers/generate.py` puts at flat index `k` of a seeded classifier.
fn head_value(k: usize, scale: f64) -> f32 {
    (scale * (0.37 * k as f64 + 1.0).sin()) as f32
}

/// all-MiniLM-L6-v2 under BertForSequenceClassification with `labels` labels, in
/// transformers' plain folder format, as the generator builds it.
fn minilm_reranker(labels: usize, dir: &Path) {
    let src = common::minilm_dir();
    std::fs::create_dir_all(dir).expect("mkdir");
    for file in [
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "special_tokens_map.json",
    ] {
        std::fs::copy(src.join(file), dir.join(file)).expect("copy");
    }
    let mut config: serde_json::Value = common::read_json(&src.join("config.json"));
    config["architectures"] = serde_json::json!(["BertForSequenceClassification"]);
    config["id2label"] = (0..labels)
        .map(|i| (i.to_string(), serde_json::json!(format!("LABEL_{i}"))))
        .collect::<serde_json::Map<_, _>>()
        .into();
    std::fs::write(dir.join("config.json"), config.to_string()).expect("config");
    let mut tensors: HashMap<String, Tensor> =
        sbert::candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu)
            .expect("weights");
    let h = 384;
    let w: Vec<f32> = (0..labels * h).map(|k| head_value(k, 0.1)).collect();
    let b: Vec<f32> = (0..labels).map(|k| head_value(k, 0.05)).collect();
    let dev = Device::Cpu;
    tensors.insert(
        "classifier.weight".into(),
        Tensor::from_vec(w, (labels, h), &dev).expect("w"),
    );
    tensors.insert(
        "classifier.bias".into(),
        Tensor::from_vec(b, labels, &dev).expect("b"),
    );
    sbert::candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).expect("save");
}

#[derive(Deserialize)]
struct Golden {
    one_label: Fixture,
    three_labels: Fixture,
}

#[test]
fn a_minilm_reranker_matches_sentence_transformers_order_and_scores() {
    let golden: Golden =
        common::read_json(&common::root().join("tests/fixtures/golden_rerank.json"));
    let tmp = tempfile::tempdir().expect("tmp");
    for (labels, fixture) in [(1, &golden.one_label), (3, &golden.three_labels)] {
        let dir = tmp.path().join(format!("minilm-{labels}"));
        minilm_reranker(labels, &dir);
        let model = CrossEncoder::from_dir(&dir, &Device::Cpu).expect("loads");
        let expected = if labels == 1 {
            Activation::Sigmoid
        } else {
            Activation::Identity
        };
        assert_eq!(model.activation(), expected);
        check(&format!("minilm-{labels}"), &model, fixture, 1e-4);
    }
    // A 3-label model cannot rank; top_k 0 is an error; an empty list ranks to nothing.
    let three = CrossEncoder::from_dir(tmp.path().join("minilm-3"), &Device::Cpu).expect("3");
    let err = three.rank("q", &["d"], None).expect_err("3 labels");
    assert!(err.to_string().contains("3 labels"), "{err}");
    let one = CrossEncoder::from_dir(tmp.path().join("minilm-1"), &Device::Cpu).expect("1");
    assert!(one.rank("q", &["d"], Some(0)).is_err());
    assert!(one
        .rank("q", &[] as &[&str], None)
        .expect("empty")
        .is_empty());
    // A long document costs what is kept: 2 MB of text gives the pair the prefix gives.
    let long = "the immune system learns ".repeat(80_000);
    let prefix: String = long.chars().take(4_000).collect();
    assert_eq!(
        one.tokenize_pair("query", &long).expect("long"),
        one.tokenize_pair("query", &prefix).expect("prefix")
    );
}

#[test]
fn each_model_kind_refuses_the_other_by_name() {
    let reranker = common::root().join("models/rerankers/bert");
    let err = SentenceEmbedder::from_dir(&reranker, &Device::Cpu).expect_err("a cross-encoder");
    assert!(err.to_string().contains("CrossEncoder"), "{err}");
    let err = CrossEncoder::from_dir(common::tiny_dir(), &Device::Cpu).expect_err("a bi-encoder");
    assert!(err.to_string().contains("not a cross-encoder"), "{err}");
}
