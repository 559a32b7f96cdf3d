//! SPLADE-tiny (`models/fetch.sh splade-tiny`: a plain BertForMaskedLM folder, LayerNorm
//! weights named gamma/beta, the decoder tied to the word embeddings) against
//! sentence-transformers' SparseEncoder (`tests/fixtures/golden_sparse.json` from
//! `gen_sparse.py`): every one of the 30,522 dimensions within 1e-4, token ids and `decode`.

use serde::Deserialize;

use sbert::{Device, SparseEmbedding, SparseEncoder};

use crate::common;

#[derive(Deserialize)]
struct Golden {
    max_seq_length: usize,
    dimension: usize,
    rows: Vec<Row>,
}

#[derive(Deserialize)]
struct Row {
    text: String,
    indices: Vec<u32>,
    values: Vec<f32>,
    top_tokens: Vec<(String, f32)>,
}

fn splade() -> SparseEncoder {
    let dir = common::root().join("models/splade-tiny");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run models/fetch.sh splade-tiny",
        dir.display()
    );
    assert!(SparseEncoder::is_sparse_encoder(&dir.to_string_lossy()));
    SparseEncoder::from_dir(&dir, &Device::Cpu).expect("SPLADE-tiny loads")
}

#[test]
fn splade_tiny_equals_sentence_transformers_in_every_dimension() {
    let golden: Golden =
        common::read_json(&common::root().join("tests/fixtures/golden_sparse.json"));
    let model = splade();
    assert_eq!(model.dimension(), golden.dimension);
    assert_eq!(model.max_seq_length(), golden.max_seq_length);
    let texts: Vec<&str> = golden.rows.iter().map(|r| r.text.as_str()).collect();
    let got = model.encode(&texts).expect("encode");
    let mut worst = 0f32;
    for (row, e) in golden.rows.iter().zip(&got) {
        assert!(
            e.indices.windows(2).all(|w| w[0] < w[1]),
            "indices ascending"
        );
        let want = SparseEmbedding {
            indices: row.indices.clone(),
            values: row.values.clone(),
        }
        .to_dense(golden.dimension);
        let d = common::max_abs_diff(&e.to_dense(model.dimension()), &want);
        worst = worst.max(d);
        let top = model.decode(e, 5);
        let names: Vec<&str> = top.iter().map(|(t, _)| t.as_str()).collect();
        let want_names: Vec<&str> = row.top_tokens.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(names, want_names, "decode of {:?}", row.text);
    }
    eprintln!(
        "SPLADE-tiny: max |Δ| {worst:e} over {} dimensions",
        golden.dimension
    );
    assert!(worst <= 1e-4, "max |Δ| {worst:e} over all dimensions");
    // A text alone equals the same text in a batch; dot products are symmetric.
    let alone = model.encode(&texts[..1]).expect("alone");
    assert!(common::max_abs_diff(&alone[0].values, &got[0].values) <= 1e-5);
    assert_eq!(alone[0].indices, got[0].indices);
    assert!((got[0].dot(&got[1]) - got[1].dot(&got[0])).abs() <= 1e-6);
    assert!(got[0].dot(&got[0]) > got[0].dot(&got[2]));
}

#[test]
fn a_sparse_encoder_refuses_dense_models_by_name() {
    let err = SparseEncoder::from_dir(common::tiny_dir(), &Device::Cpu).expect_err("dense");
    assert!(err.to_string().contains("not a sparse encoder"), "{err}");
    assert!(!SparseEncoder::is_sparse_encoder(
        &common::tiny_dir().to_string_lossy()
    ));
}

#[test]
fn the_model_kind_is_read_from_the_folder() {
    use sbert::ModelKind;
    let root = common::root();
    for (dir, kind) in [
        (common::tiny_dir(), ModelKind::Embedding),
        (
            root.join("models/families/modernbert"),
            ModelKind::Embedding,
        ),
        (root.join("models/rerankers/bert"), ModelKind::CrossEncoder),
        (
            root.join("models/rerankers/xlm-roberta"),
            ModelKind::CrossEncoder,
        ),
        (root.join("models/splade-tiny"), ModelKind::Sparse),
    ] {
        assert_eq!(
            ModelKind::of(&dir.to_string_lossy()).expect("kind"),
            kind,
            "{}",
            dir.display()
        );
    }
    assert!(ModelKind::of(&root.join("models/no-such-model").to_string_lossy()).is_err());
}
