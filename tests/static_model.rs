//! Static embeddings (model2vec's potion-base-8M, sentence-transformers' `StaticEmbedding` +
//! `Normalize`) against sentence-transformers' outputs in `tests/fixtures/golden_static.json`
//! (`tests/fixtures/gen_static.py`): token ids, normalized and raw embeddings, through the same
//! `SentenceEmbedder` API as a transformer.

use serde::Deserialize;

use sbert::{EncodeOptions, Prompt, SentenceEmbedder};

use crate::common;

#[derive(Deserialize)]
struct Golden {
    sentences: Vec<String>,
    token_ids: Vec<Vec<u32>>,
    embeddings: Vec<Vec<f32>>,
    unnormalized: Vec<Vec<f32>>,
}

fn potion() -> SentenceEmbedder {
    let dir = common::root().join("models/potion-base-8M");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run models/fetch.sh potion-base-8M",
        dir.display()
    );
    SentenceEmbedder::from_dir(&dir, &sbert::Device::Cpu).expect("potion-base-8M loads")
}

fn golden() -> Golden {
    common::read_json(&common::root().join("tests/fixtures/golden_static.json"))
}

#[test]
fn static_embeddings_equal_sentence_transformers() {
    let model = potion();
    let g = golden();
    let vocab = sbert::Encoder::vocab_size(model.encoder());
    assert!(matches!(model.encoder(), sbert::EncoderModel::Static(_)));
    assert_eq!((model.dim(), vocab), (256, 29_528));
    let tokenized = model
        .tokenize(&g.sentences, Prompt::Default)
        .expect("tokenize");
    for ((t, want), text) in tokenized.iter().zip(&g.token_ids).zip(&g.sentences) {
        assert_eq!(&t.ids, want, "{text:?}: no special tokens, no truncation");
    }
    let got = model.embed(&g.sentences).expect("embed").to_vecs();
    let raw = model
        .encode(&g.sentences, &EncodeOptions::default().normalize(false))
        .expect("encode")
        .to_vecs();
    let mut worst = 0f32;
    for (label, rows, want) in [
        ("normalized", &got, &g.embeddings),
        ("unnormalized", &raw, &g.unnormalized),
    ] {
        assert_eq!(rows.len(), want.len());
        for (i, (a, b)) in rows.iter().zip(want.iter()).enumerate() {
            let d = common::max_abs_diff(a, b);
            worst = worst.max(d);
            assert!(
                d <= 1e-5,
                "{label} row {i} ({:?}): max |Δ| {d:e}",
                g.sentences[i]
            );
        }
    }
    eprintln!("potion-base-8M vs sentence-transformers: max |Δ| {worst:e}");
    // The empty text has no tokens: the zero vector, as EmbeddingBag's empty mean.
    let empty = g
        .sentences
        .iter()
        .position(String::is_empty)
        .expect("an empty text");
    assert!(got[empty].iter().all(|&v| v == 0.0));
}

#[test]
fn a_text_alone_equals_the_same_text_in_a_batch_and_bad_ids_are_errors() {
    let model = potion();
    let g = golden();
    let batch = model.embed(&g.sentences).expect("embed").to_vecs();
    for (i, text) in g.sentences.iter().enumerate().step_by(5) {
        let alone = model.embed(&[text.as_str()]).expect("embed").to_vecs();
        assert!(
            common::max_abs_diff(&alone[0], &batch[i]) <= 1e-6,
            "{text:?}"
        );
    }
    let tokenized = vec![sbert::TokenizedText {
        ids: vec![5, 29_528],
        truncated: false,
        prompt_tokens: 0,
    }];
    let err = model
        .embed_tokenized(&tokenized, &EncodeOptions::default())
        .expect_err("an id past the table");
    assert!(err.to_string().contains("29528"), "{err}");
    let err = SentenceEmbedder::builder(
        common::root()
            .join("models/potion-base-8M")
            .to_string_lossy(),
    )
    .quantize(sbert::Quantization::Int8)
    .build()
    .expect_err("int8 of a table");
    assert!(err.to_string().contains("static"), "{err}");
}
