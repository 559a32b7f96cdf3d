//! Embed a few sentences and print their similarity matrix (the model's own function:
//! cosine for all-MiniLM-L6-v2).
//!
//! Run: cargo run --release --example embed [MODEL_DIR]

use anyhow::Result;
use sbert::{Device, SentenceEmbedder};

fn main() -> Result<()> {
    let model_dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "models/all-MiniLM-L6-v2".into());
    let model = SentenceEmbedder::from_dir(&model_dir, &Device::Cpu)?;
    let sentences = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The girl is carrying a baby.",
        "A man is riding a horse.",
    ];
    let embeddings = model.embed(&sentences)?;
    println!(
        "embeddings: {} × {}, normalized: {}, similarity: {}",
        embeddings.len(),
        embeddings.dim(),
        model.normalizes(),
        model.similarity_fn()
    );
    let scores = model.similarity(&embeddings, &embeddings)?;
    for (sentence, row) in sentences.iter().zip(&scores) {
        let cells: Vec<String> = row.iter().map(|s| format!("{s:.3}")).collect();
        println!("{}  {sentence}", cells.join(" "));
    }
    Ok(())
}
