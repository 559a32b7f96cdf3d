//! The data readers: texts as lines and as jsonl, STS pair files, NLI triples, retrieval
//! folders (queries, corpus, qrels). The first byte picks the reader; the rest is the file
//! (for a retrieval folder, its three files separated by NUL bytes). Each returns rows or an error naming the
//! line, never panics, and never returns rows that break its own contract.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sbert_io::input::{parse_texts, TextFormat};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, content)) = data.split_first() else {
        return;
    };
    if pick == 0xff {
        let mut parts = content.splitn(3, |&b| b == 0);
        let dir = tempfile::tempdir().expect("temp dir");
        for name in ["queries.tsv", "corpus.tsv", "qrels.tsv"] {
            std::fs::write(dir.path().join(name), parts.next().unwrap_or_default()).expect("write");
        }
        if let Ok(task) = sbert_eval::RetrievalTask::read_dir(dir.path()) {
            assert!(!task.queries.is_empty());
            assert_eq!(task.queries.len(), task.relevant.len());
            assert!(task
                .relevant
                .iter()
                .all(|r| !r.is_empty() && r.iter().all(|&c| c < task.corpus.len())));
        }
        return;
    }
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
