//! The data readers: texts as lines and as jsonl, STS pair files, NLI triples. The first
//! byte picks the reader; the rest is the file. Each returns rows or an error naming the
//! line, never panics, and never returns rows that break its own contract.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sbert_io::input::{parse_texts, TextFormat};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, content)) = data.split_first() else {
        return;
    };
    match pick % 4 {
        0 | 1 => {
            let format = if pick % 4 == 0 {
                TextFormat::Lines
            } else {
                TextFormat::Jsonl
            };
            if let Ok(texts) = parse_texts(content, format, "fuzz") {
                let lines = content.iter().filter(|&&b| b == b'\n').count() + 1;
                assert!(texts.len() <= lines);
            }
        }
        2 => {
            if let Ok(ds) = sbert_eval::StsDataset::parse(content.to_vec(), Path::new("f"), None) {
                assert!(!ds.pairs.is_empty());
                assert!(ds.pairs.iter().all(|p| p.score.is_finite()));
            }
        }
        _ => {
            let tmp = tempfile::NamedTempFile::new().expect("temp file");
            std::fs::write(tmp.path(), content).expect("write");
            if let Ok(rows) = sbert_train::read_nli(tmp.path()) {
                assert!(!rows.is_empty());
            }
        }
    }
});
