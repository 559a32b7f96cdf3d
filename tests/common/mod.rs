//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod reference;

use std::path::PathBuf;

use sbert::SentenceEmbedder;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `models/tiny`, the committed fixture model.
pub fn tiny_dir() -> PathBuf {
    root().join("models/tiny")
}

/// The real all-MiniLM-L6-v2 folder: `$SBERT_MODEL_DIR` or `models/all-MiniLM-L6-v2`.
/// Panics with the fix when it is not installed: a golden test that never runs proves nothing.
pub fn minilm_dir() -> PathBuf {
    let dir = std::env::var_os("SBERT_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models/all-MiniLM-L6-v2"));
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} has no model.safetensors: run models/fetch.sh first",
        dir.display()
    );
    dir
}

/// Copies the folder `from` to `to`, recursively.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
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

/// The JSON fixture at `path`; panics naming the file when it cannot be read or parsed.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> T {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
}

/// `../shared` beside the workspace, or `$SBERT_SHARED_DIR`.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("SBERT_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"))
}

/// The device the real-model tests run on: `$SBERT_TEST_DEVICE` (`cpu`, the default, `cuda` in
/// a build with the `cuda` feature, or `metal` with `metal`); `benches/gpu.sh` runs the golden
/// tests on CUDA this way.
pub fn device() -> sbert::Device {
    match std::env::var("SBERT_TEST_DEVICE").as_deref() {
        Err(_) | Ok("" | "cpu") => sbert::Device::Cpu,
        Ok("cuda") => sbert::Device::new_cuda(0).unwrap_or_else(|e| {
            panic!("SBERT_TEST_DEVICE=cuda: {e} (build with --features sbert/cuda)")
        }),
        Ok("metal") => sbert::Device::new_metal(0).unwrap_or_else(|e| {
            panic!("SBERT_TEST_DEVICE=metal: {e} (build with --features sbert/metal)")
        }),
        Ok(other) => panic!("SBERT_TEST_DEVICE={other}: expected cpu, cuda or metal"),
    }
}

/// all-MiniLM-L6-v2 on [`device`], loaded once per test binary.
pub fn minilm() -> &'static SentenceEmbedder {
    static MODEL: std::sync::OnceLock<SentenceEmbedder> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| {
        SentenceEmbedder::from_dir(minilm_dir(), &device()).expect("load all-MiniLM-L6-v2")
    })
}

/// max |a − b| over two equal-length vectors; NaN when any difference is NaN (`f32::max` would
/// skip it), so that every `d <= tol` comparison fails on a NaN.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "vector lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, |m, d| if d.is_nan() || d > m { d } else { m })
}

/// Asserts that two lists of vectors agree to `max_abs` and cosine ≥ `min_cos`, row by row.
pub fn assert_close(label: &str, got: &[Vec<f32>], want: &[Vec<f32>], max_abs: f32, min_cos: f32) {
    assert_eq!(got.len(), want.len(), "{label}: row count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let d = max_abs_diff(g, w);
        let c = sbert::cosine(g, w);
        assert!(
            d <= max_abs,
            "{label} row {i}: max |Δ| = {d:e} > {max_abs:e}"
        );
        assert!(c >= min_cos, "{label} row {i}: cosine {c} < {min_cos}");
    }
}

/// Embeds `sentences` once and pools them MEAN, MAX and CLS (`embed_poolings`), asserting each
/// against `want` (in that order) to `max_abs` and cosine ≥ `min_cos`.
pub fn assert_poolings_match(
    model: &SentenceEmbedder,
    sentences: &[String],
    want: [&[Vec<f32>]; 3],
    max_abs: f32,
    min_cos: f32,
) {
    use sbert::{Pooling, PoolingMode};
    let modes = [PoolingMode::Mean, PoolingMode::Max, PoolingMode::Cls];
    let poolings: Vec<Pooling> = modes.into_iter().map(Pooling::single).collect();
    let pooled = model.embed_poolings(sentences, &poolings).expect("embed");
    for ((mode, got), want) in modes.iter().zip(pooled).zip(want) {
        let got: Vec<Vec<f32>> = got.to_vec2().expect("vec");
        assert_close(mode.name(), &got, want, max_abs, min_cos);
    }
}
