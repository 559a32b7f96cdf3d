//! Model-folder parsing: the first byte picks a file of a copy of `models/tiny`, the rest
//! replaces it (safetensors weights and header, config.json, modules.json, the pooling and
//! sentence-bert configs, tokenizer.json, the Dense config). Loading must end in a model or a
//! typed error, and a model that loads must embed a text or fail with an error, never panic.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sbert::{Device, SentenceEmbedder};

const FILES: [&str; 7] = [
    "model.safetensors",
    "config.json",
    "modules.json",
    "1_Pooling/config.json",
    "sentence_bert_config.json",
    "tokenizer.json",
    "2_Dense/config.json",
];

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// A private copy of the tiny model, made once per process.
fn folder() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("tiny");
        copy_dir(
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/tiny")),
            &dir,
        );
        (tmp, dir)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, content)) = data.split_first() else {
        return;
    };
    let dir = folder();
    let file = dir.join(FILES[usize::from(pick) % FILES.len()]);
    let original = std::fs::read(&file).expect("read original");
    std::fs::write(&file, content).expect("write fuzzed file");
    if let Ok(model) = SentenceEmbedder::from_dir(dir, &Device::Cpu) {
        if let Ok(rows) = model.embed(&["a fuzzed model", ""]) {
            assert!(rows.as_slice().iter().all(|v| v.is_finite()));
        }
    }
    std::fs::write(&file, original).expect("restore");
});
