//! Any bytes, as text, through tokenize → encode → pool → normalize on `models/tiny`.
//!
//! Checks what must hold for every input: embedding never fails or panics, vectors are finite
//! and unit-length, token counts stay within `max_seq_length`, and the tokenization of a long
//! text through its prefix equals the tokenization of the whole text.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sbert::{Device, SentenceEmbedder};

fn model() -> &'static SentenceEmbedder {
    static MODEL: OnceLock<SentenceEmbedder> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/tiny");
        SentenceEmbedder::from_dir(dir, &Device::Cpu).expect("the tiny model loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let model = model();
    let text = String::from_utf8_lossy(data);
    // The whole input as one text, and its lines as a batch (empty lines included).
    let mut texts: Vec<&str> = vec![&text];
    texts.extend(text.split('\n').take(64));
    let out = model.embed(&texts).expect("every text embeds");
    let rows: Vec<Vec<f32>> = out.to_vecs();
    assert_eq!(rows.len(), texts.len());
    for row in &rows {
        assert!(row.iter().all(|v| v.is_finite()), "non-finite embedding");
        let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "norm {norm}");
    }
    for stats in out.inputs() {
        assert!(stats.tokens >= 2 && stats.tokens <= model.max_seq_length());
    }
    let tokenized = model
        .tokenize(&[text.as_ref()], sbert::Prompt::Default)
        .expect("tokenize");
    let whole = model
        .tokenizer()
        .encode_fast(text.trim(), true)
        .expect("whole text");
    assert_eq!(
        tokenized[0].ids,
        whole.get_ids(),
        "prefix tokenization differs"
    );
    assert_eq!(tokenized[0].truncated, !whole.get_overflowing().is_empty());
});
