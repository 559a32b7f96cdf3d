//! int8 inference against f32: close to sentence-transformers' embeddings, independent of the
//! batch a text is in, and refused where it cannot run.

use sbert::{Quantization, SentenceEmbedder};
use serde::Deserialize;

use crate::common;

#[derive(Deserialize)]
struct Golden {
    sentences: Vec<String>,
    mean_normalized: Vec<Vec<f32>>,
}

fn int8(dir: &std::path::Path) -> SentenceEmbedder {
    SentenceEmbedder::builder(dir.to_string_lossy())
        .quantize(Quantization::Int8)
        .build()
        .unwrap_or_else(|e| panic!("load {} in int8: {e}", dir.display()))
}

#[test]
fn int8_minilm_embeddings_stay_close_to_sentence_transformers() {
    let model = int8(&common::minilm_dir());
    let mut worst = 1f32;
    let mut sum = 0f64;
    let mut n = 0;
    for path in [
        common::shared_dir().join("fixtures/golden_visible.json"),
        common::root().join("tests/fixtures/golden_extra.json"),
    ] {
        let g: Golden = common::read_json(&path);
        let got = model.embed(&g.sentences).expect("embed").to_vecs();
        for (i, (a, b)) in got.iter().zip(&g.mean_normalized).enumerate() {
            let c = sbert::cosine(a, b);
            assert!(
                c.is_finite() && c >= 0.97,
                "{} text {i} {:?}: cosine {c} to sentence-transformers",
                path.display(),
                g.sentences[i]
            );
            worst = worst.min(c);
            sum += f64::from(c);
            n += 1;
        }
    }
    // Close, and not equal: the int8 products did run.
    let mean = sum / f64::from(n);
    assert!(mean >= 0.995, "mean cosine {mean}, worst {worst}");
    assert!(
        worst < 0.99999,
        "int8 embeddings equal f32's: were they quantized?"
    );
}

#[test]
fn an_int8_text_alone_equals_the_same_text_in_a_batch() {
    // Activations are quantized per row, so a text's embedding does not depend on its
    // neighbours, whichever kernel split the batch takes.
    let model = int8(&common::minilm_dir());
    let texts: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "Sentence number {i} talks about {}.",
                "cats and dogs ".repeat(i % 7)
            )
        })
        .collect();
    let batch = model.embed(&texts).expect("batch").to_vecs();
    for i in [0, 13, 39] {
        let alone = model.embed(&texts[i..=i]).expect("alone").to_vecs();
        let d = common::max_abs_diff(&alone[0], &batch[i]);
        assert!(
            d <= 1e-6,
            "text {i}: max |Δ| {d:e} between alone and batched"
        );
    }
}

#[test]
fn int8_runs_the_bert_family_and_refuses_modernbert_by_name() {
    let family = |name: &str| common::root().join("models/families").join(name);
    for name in ["xlm-roberta", "distilbert"] {
        let f32_model = SentenceEmbedder::from_dir(family(name), &sbert::Device::Cpu).expect("f32");
        let texts = [
            "A short text.",
            "Another, somewhat longer text about nothing much.",
        ];
        let want = f32_model.embed(&texts).expect("f32 embed").to_vecs();
        let got = int8(&family(name))
            .embed(&texts)
            .expect("int8 embed")
            .to_vecs();
        for (g, w) in got.iter().zip(&want) {
            let c = sbert::cosine(g, w);
            assert!((0.95..1.0).contains(&c), "{name}: cosine {c} to f32");
        }
    }
    let err = SentenceEmbedder::builder(family("modernbert").to_string_lossy())
        .quantize(Quantization::Int8)
        .build()
        .expect_err("ModernBERT has no int8 path")
        .to_string();
    assert!(err.contains("ModernBERT") && err.contains("int8"), "{err}");
}
