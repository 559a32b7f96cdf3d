//! Paraphrase mining scored against gold labels, and autocomplete de-duplication.
//!
//! 1. Mines the MRPC test sentences (each distinct sentence once, by its MRPC id) for their
//!    most similar pairs and scores the ranking against MRPC's gold paraphrase pairs as
//!    sentence-transformers' `ParaphraseMiningEvaluator` does: average precision over the
//!    ranked pairs, and the best F1 with its cosine threshold.
//! 2. De-duplicates autocomplete suggestions for "mac" (Instacart's example): "mac and cheese",
//!    "macaroni and cheese" and "mac n cheese" collapse to one.
//!
//! ```sh
//! cargo run --release --example applications [MODEL_DIR] [SHARED_DATA_DIR]
//! ```

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result};
use sbert::search::{dedup, paraphrase_mining, Score};
use sbert::{Device, SentenceEmbedder};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let model_dir = args
        .next()
        .unwrap_or_else(|| "models/all-MiniLM-L6-v2".into());
    let data = args.next().unwrap_or_else(|| "../shared/data".into());
    let model =
        SentenceEmbedder::from_dir(&model_dir, &Device::Cpu).context("loading the model")?;

    // MRPC test: quality, #1 id, #2 id, #1 string, #2 string.
    let path = format!("{data}/senteval/MRPC/msr_paraphrase_test.txt");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let mut ids: Vec<String> = Vec::new();
    let mut sentences: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut gold: HashSet<(usize, usize)> = HashSet::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        anyhow::ensure!(
            cols.len() >= 5,
            "{path}: line {}: expected 5 columns",
            n + 1
        );
        let mut at = |id: &str, s: &str| {
            *index.entry(id.to_string()).or_insert_with(|| {
                ids.push(id.to_string());
                sentences.push(s.to_string());
                sentences.len() - 1
            })
        };
        let (a, b) = (at(cols[1], cols[3]), at(cols[2], cols[4]));
        if cols[0] == "1" {
            gold.insert((a.min(b), a.max(b)));
        }
    }
    let start = std::time::Instant::now();
    let embeddings = model.embed(&sentences)?;
    let embedded = start.elapsed();
    let pairs = paraphrase_mining(&embeddings.vectors(), 100, 500_000, Score::Cosine)?;
    let mined = start.elapsed() - embedded;

    let (mut correct, mut ap, mut best) = (0usize, 0.0f64, (0.0f64, 0.0f64, 0.0f64, 0.0f32));
    for (k, p) in pairs.iter().enumerate() {
        if gold.contains(&(p.i, p.j)) {
            correct += 1;
            let precision = correct as f64 / (k + 1) as f64;
            let recall = correct as f64 / gold.len() as f64;
            let f1 = 2.0 * precision * recall / (precision + recall);
            ap += precision;
            if f1 > best.0 {
                let next = pairs.get(k + 1).map_or(p.score, |q| q.score);
                best = (f1, precision, recall, (p.score + next) / 2.0);
            }
        }
    }
    ap /= gold.len() as f64;
    println!(
        "MRPC test: {} distinct sentences, {} gold paraphrase pairs; embedded in {:.1} s, mined {} pairs in {:.2} s",
        sentences.len(),
        gold.len(),
        embedded.as_secs_f64(),
        pairs.len(),
        mined.as_secs_f64()
    );
    println!(
        "average precision {:.2}; best F1 {:.2} (precision {:.2}, recall {:.2}) at cosine ≥ {:.4}",
        100.0 * ap,
        100.0 * best.0,
        100.0 * best.1,
        100.0 * best.2,
        best.3
    );
    println!("top mined pairs:");
    for p in pairs.iter().take(3) {
        let mark = if gold.contains(&(p.i, p.j)) {
            "gold"
        } else {
            "    "
        };
        println!(
            "  {:.4} {mark} {} | {}",
            p.score, sentences[p.i], sentences[p.j]
        );
    }

    let suggestions = [
        "mac and cheese",
        "macbook pro",
        "macaroni and cheese",
        "mac n cheese",
        "macbook air",
        "mac and cheese recipe",
        "macadamia nuts",
        "macaroni salad",
        "mac book pro charger",
    ];
    let d = dedup(&model.embed(&suggestions)?.vectors(), 0.8)?;
    println!("\nautocomplete for \"mac\", de-duplicated at cosine 0.8:");
    for (i, s) in suggestions.iter().enumerate() {
        match (d.duplicate_of[i], d.similarity[i]) {
            (Some(k), Some(c)) => {
                println!("  - {s:<24} duplicate of \"{}\" ({c:.3})", suggestions[k])
            }
            _ => println!("  + {s}"),
        }
    }
    Ok(())
}
