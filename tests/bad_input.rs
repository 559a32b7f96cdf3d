//! Bad input gets a clear error and no panic; odd but valid input is embedded as
//! sentence-transformers does.

use std::path::{Path, PathBuf};

use sbert::{Error, SentenceEmbedder};

use crate::common;

/// A scratch copy of `models/tiny` to break.
fn tiny_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("tiny");
    copy_dir(&common::tiny_dir(), &dir);
    (tmp, dir)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
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
    let out = model.encode(&["", "   ", "\t\n ", "hello"]).expect("embed");
    assert_eq!(
        out.inputs.iter().map(|s| s.tokens).collect::<Vec<_>>(),
        vec![2, 2, 2, 3]
    );
    let rows: Vec<Vec<f32>> = out.embeddings.to_vec2().expect("vec");
    assert_eq!(rows[0], rows[1]);
    assert_eq!(rows[0], rows[2]);
    assert!(rows[0].iter().all(|x| x.is_finite()));
    // No texts at all: an empty (0, dim) result, not an error.
    let none: [&str; 0] = [];
    assert_eq!(model.embed(&none).expect("embed").dims(), &[0, model.dim()]);
}

#[test]
fn long_text_is_truncated_and_reported() {
    let model = load(&common::tiny_dir()).expect("load");
    let long = "the cat sat on the mat ".repeat(50);
    let out = model.encode(&[long.as_str(), "the cat"]).expect("embed");
    assert_eq!(out.inputs[0].tokens, model.max_seq_length());
    assert!(out.inputs[0].truncated);
    assert!(!out.inputs[1].truncated);
}
