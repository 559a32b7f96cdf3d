//! all-MiniLM-L6-v2 against sentence-transformers' own outputs, on the CPU or, with
//! `SBERT_TEST_DEVICE`, another device (`benches/gpu.sh`).
//!
//! * `../shared/fixtures/golden_visible.json`: 24 awkward texts (sentence-transformers 6.2.0);
//! * `tests/fixtures/golden_extra.json`: 40 other texts, made by `tests/fixtures/gen_extra.py`
//!   with Python sentence-transformers, so parity is not tuned to one set.

use std::path::Path;

use sbert::SentenceEmbedder;
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
    cosine_mean_normalized: Vec<Vec<f32>>,
}

/// Tolerances of the fixtures' README: CPU fp32, max |Δ| ≤ 1e-4, cosine ≥ 0.99999.
const MAX_ABS: f32 = 1e-4;
const MIN_COS: f32 = 0.99999;

fn check(path: &Path) {
    let golden: Golden = common::read_json(path);
    let model = common::minilm();
    assert_eq!(model.max_seq_length(), golden.max_seq_length);

    let tok = model
        .tokenize(&golden.sentences, sbert::Prompt::Default)
        .expect("tokenize");
    for (i, (got, want)) in tok.iter().zip(&golden.input_ids).enumerate() {
        assert_eq!(
            &got.ids, want,
            "input_ids of text {i} {:?}",
            golden.sentences[i]
        );
        if got.truncated {
            assert_eq!(
                want.len(),
                golden.max_seq_length,
                "only a text cut at the limit is flagged"
            );
        }
    }

    // Encoded once, pooled three ways (tiny_model tests show this equals one model per pooling).
    let raw = SentenceEmbedder::builder(common::minilm_dir().to_string_lossy())
        .device(common::device())
        .normalize(false)
        .build()
        .expect("load");
    common::assert_poolings_match(
        &raw,
        &golden.sentences,
        [&golden.mean, &golden.max, &golden.cls],
        MAX_ABS,
        MIN_COS,
    );

    // The model as shipped: mean pooling, then Normalize (modules.json).
    assert!(model.normalizes());
    let emb = model.embed(&golden.sentences).expect("embed");
    let rows: Vec<Vec<f32>> = emb.to_vecs();
    common::assert_close(
        "mean_normalized",
        &rows,
        &golden.mean_normalized,
        MAX_ABS,
        MIN_COS,
    );
    assert_eq!(model.similarity_fn(), sbert::Similarity::Cosine);
    let cos: Vec<Vec<f32>> = model.similarity(&emb, &emb).expect("cos");
    for (i, (g, w)) in cos.iter().zip(&golden.cosine_mean_normalized).enumerate() {
        let d = common::max_abs_diff(g, w);
        assert!(d <= MAX_ABS, "cosine matrix row {i}: max |Δ| {d:e}");
    }
}

#[test]
fn visible_fixture_matches_sentence_transformers() {
    check(&common::shared_dir().join("fixtures/golden_visible.json"));
}

#[test]
fn another_text_set_matches_sentence_transformers() {
    check(&common::root().join("tests/fixtures/golden_extra.json"));
}

#[test]
fn truncation_at_256_is_reported() {
    let golden =
        common::read_json::<Golden>(&common::shared_dir().join("fixtures/golden_visible.json"));
    let out = common::minilm().embed(&golden.sentences).expect("embed");
    let long: Vec<usize> = (0..golden.sentences.len())
        .filter(|&i| out.inputs()[i].truncated)
        .collect();
    assert_eq!(long.len(), 1, "exactly one text runs past 256 tokens");
    assert_eq!(out.inputs()[long[0]].tokens, 256);
}

#[test]
fn a_text_alone_equals_the_same_text_in_a_batch_of_longer_texts() {
    let model = common::minilm();
    let short = ["Hello!", "A man is playing a guitar.", ""];
    let filler: Vec<String> = (0..32)
        .map(|i| format!("Sentence number {i} is considerably longer than the short ones, so that the batch pads them heavily with many extra tokens."))
        .collect();
    for text in short {
        let alone = model.embed(&[text]).expect("embed").to_vecs();
        let mut batch: Vec<&str> = filler.iter().map(String::as_str).collect();
        batch.insert(17, text);
        let inside = model.embed(&batch).expect("embed").to_vecs();
        let d = common::max_abs_diff(&alone[0], &inside[17]);
        assert!(
            d <= 1e-5,
            "{text:?}: alone vs in a batch of 32 longer texts: max |Δ| {d:e}"
        );
    }
}

#[test]
fn input_order_is_restored_for_any_batch_size() {
    let golden =
        common::read_json::<Golden>(&common::shared_dir().join("fixtures/golden_visible.json"));
    let reference = common::minilm()
        .embed(&golden.sentences)
        .expect("embed")
        .to_vecs();
    for bs in [1, 5, 7] {
        let got = SentenceEmbedder::builder(common::minilm_dir().to_string_lossy())
            .device(common::device())
            .batch_size(bs)
            .build()
            .expect("load")
            .embed(&golden.sentences)
            .expect("embed")
            .to_vecs();
        common::assert_close(&format!("batch size {bs}"), &got, &reference, 1e-5, 0.99999);
    }
}

#[test]
fn packed_and_padded_encoder_paths_agree_on_the_real_model() {
    let model = common::minilm();
    let texts = [
        "A man is playing a guitar.",
        "",
        "The café serves crème brûlée.",
        "Hello!",
    ];
    let tok = model
        .tokenize(&texts, sbert::Prompt::Default)
        .expect("tokenize");
    let lengths: Vec<usize> = tok.iter().map(|x| x.ids.len()).collect();
    let ids: Vec<u32> = tok.iter().flat_map(|x| x.ids.clone()).collect();
    let packed: Vec<Vec<f32>> = model
        .encoder()
        .bert()
        .expect("MiniLM is a BERT")
        .forward_packed(&ids, &lengths)
        .expect("packed")
        .to_vec2()
        .expect("vec");
    let t = *lengths.iter().max().expect("texts");
    let mut padded_ids = vec![0u32; texts.len() * t];
    let mut mask = vec![0u32; texts.len() * t];
    for (r, x) in tok.iter().enumerate() {
        padded_ids[r * t..r * t + x.ids.len()].copy_from_slice(&x.ids);
        mask[r * t..r * t + x.ids.len()].fill(1);
    }
    let dev = sbert::Device::Cpu;
    let ids_t = sbert::Tensor::from_vec(padded_ids, (texts.len(), t), &dev).expect("ids");
    let mask_t = sbert::Tensor::from_vec(mask, (texts.len(), t), &dev).expect("mask");
    let padded: Vec<Vec<Vec<f32>>> = model
        .encoder()
        .bert()
        .expect("MiniLM is a BERT")
        .forward(&ids_t, None, &mask_t)
        .expect("padded")
        .to_vec3()
        .expect("vec");
    let mut row = 0;
    for (r, &len) in lengths.iter().enumerate() {
        for (pos, want) in padded[r].iter().take(len).enumerate() {
            let d = common::max_abs_diff(&packed[row], want);
            assert!(d <= 1e-4, "text {r} token {pos}: max |Δ| {d:e}");
            row += 1;
        }
    }
}

#[test]
fn a_model_naming_dot_is_compared_by_dot_product_as_in_sentence_transformers() {
    let golden =
        common::read_json::<Golden>(&common::shared_dir().join("fixtures/golden_visible.json"));
    // all-MiniLM-L6-v2 without Normalize, its config naming "dot": sentence-transformers'
    // `model.similarity` is then the dot product of the raw mean-pooled rows (`mean`).
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("minilm-dot");
    std::fs::create_dir(&folder).expect("mkdir");
    for entry in std::fs::read_dir(common::minilm_dir()).expect("minilm") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name != "modules.json" && name != "config_sentence_transformers.json" {
            std::os::unix::fs::symlink(entry.path(), folder.join(&name)).expect("link");
        }
    }
    std::fs::write(
        folder.join("modules.json"),
        r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#,
    )
    .expect("modules");
    std::fs::write(
        folder.join("config_sentence_transformers.json"),
        r#"{"similarity_fn_name": "dot"}"#,
    )
    .expect("config");
    let model = SentenceEmbedder::builder(folder.to_string_lossy())
        .device(common::device())
        .build()
        .expect("load");
    assert_eq!(model.similarity_fn(), sbert::Similarity::Dot);
    let e = model.embed(&golden.sentences).expect("embed");
    let got = model.similarity(&e, &e).expect("similarity");
    for (i, row) in got.iter().enumerate() {
        for (j, &s) in row.iter().enumerate() {
            let want: f64 = golden.mean[i]
                .iter()
                .zip(&golden.mean[j])
                .map(|(&x, &y)| f64::from(x) * f64::from(y))
                .sum();
            assert!(
                (f64::from(s) - want).abs() <= 1e-4 * want.abs().max(1.0),
                "texts {i}, {j}: {s} vs {want}"
            );
        }
    }
    // A name sentence-transformers does not know is refused at load.
    std::fs::write(
        folder.join("config_sentence_transformers.json"),
        r#"{"similarity_fn_name": "jaccard"}"#,
    )
    .expect("config");
    let err = SentenceEmbedder::from_dir(&folder, &sbert::Device::Cpu).expect_err("unknown");
    assert!(err.to_string().contains("jaccard"), "{err}");
}
