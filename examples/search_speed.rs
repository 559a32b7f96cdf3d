//! Exact search speed on random unit vectors, for comparison with torch's chunked
//! `cos_sim` + `topk` (`benches/search_torch.py` runs sentence-transformers' `semantic_search`
//! on the same shapes).
//!
//! ```sh
//! cargo run --release --example search_speed [CORPUS=1000000] [QUERIES=1000] [DIM=384] [TOP_K=10]
//! ```

use std::time::Instant;

use anyhow::Result;
use rand::{Rng, SeedableRng};
use sbert_search::{semantic_search, Score, Vectors};

fn unit_rows(rng: &mut rand::rngs::StdRng, n: usize, dim: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let row: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        out.extend(row.iter().map(|x| x / norm));
    }
    out
}

fn main() -> Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let corpus_n = args.first().copied().unwrap_or(1_000_000);
    let queries_n = args.get(1).copied().unwrap_or(1000);
    let dim = args.get(2).copied().unwrap_or(384);
    let top_k = args.get(3).copied().unwrap_or(10);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let corpus = unit_rows(&mut rng, corpus_n, dim);
    let queries = unit_rows(&mut rng, queries_n, dim);
    let (c, q) = (Vectors::new(&corpus, dim)?, Vectors::new(&queries, dim)?);
    let start = Instant::now();
    let hits = semantic_search(&q, &c, top_k, Score::Cosine)?;
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(hits.len(), queries_n);
    println!(
        "{{\"engine\": \"sbert-search\", \"corpus\": {corpus_n}, \"queries\": {queries_n}, \"dim\": {dim}, \"top_k\": {top_k}, \"seconds\": {secs:.3}, \"ms_per_query\": {:.3}}}",
        1000.0 * secs / queries_n as f64
    );
    Ok(())
}
