//! Approximate search against exact search on real sentence embeddings: recall@10 of the
//! HNSW graph and the time per query of both, one query at a time and as a batch.
//!
//! The corpus is an index folder from `sbert index build` (read with `StoredIndex`, which
//! checks it against the model); the queries are embedded here with the same model.
//!
//! ```sh
//! sbert index build --corpus corpus.txt --output corpus.index
//! cargo run --release --example approximate_search -- corpus.index queries.txt \
//!     [MODEL=models/all-MiniLM-L6-v2] [LINKS=16] [EF_CONSTRUCTION=200]
//! ```

use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use sbert::{Device, SentenceEmbedder};
use sbert_search::{
    normalized, recall, semantic_search, ApproximateIndex, HnswParams, Score, StoredIndex, Vectors,
};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        bail!("usage: approximate_search INDEX_DIR QUERIES [MODEL] [LINKS] [EF_CONSTRUCTION]");
    }
    let model_dir = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "models/all-MiniLM-L6-v2".into());
    let params = HnswParams {
        links: args.get(3).map_or(Ok(16), |a| a.parse())?,
        ef_construction: args.get(4).map_or(Ok(200), |a| a.parse())?,
    };
    let top_k = 10;
    let model = SentenceEmbedder::from_dir(&model_dir, &Device::Cpu)?;
    let dim = model.dim();
    let stored = StoredIndex::open(std::path::Path::new(&args[0]), &model.identity()?)?;
    let rows = stored.rows;
    let texts =
        std::fs::read_to_string(&args[1]).with_context(|| format!("reading {}", args[1]))?;
    let queries: Vec<&str> = texts.lines().filter(|l| !l.trim().is_empty()).collect();
    let q = normalized(&Vectors::new(&model.embed(&queries)?.into_vec(), dim)?);
    let unit = normalized(&Vectors::new(&rows, dim)?);
    let (corpus, all) = (Vectors::new(&unit, dim)?, Vectors::new(&q, dim)?);
    let n = queries.len();
    let one = |i: usize| Vectors::new(&q[i * dim..(i + 1) * dim], dim);

    let start = Instant::now();
    let index = ApproximateIndex::build(&corpus, params)?;
    println!(
        "{{\"corpus\": {}, \"queries\": {n}, \"dim\": {dim}, \"links\": {}, \"ef_construction\": {}, \"build_seconds\": {:.1}}}",
        corpus.len(),
        params.links,
        params.ef_construction,
        start.elapsed().as_secs_f64()
    );

    // Exact, rows normalized once and scored by dot product: the best exact baseline.
    let start = Instant::now();
    let exact = semantic_search(&all, &corpus, top_k, Score::Dot)?;
    let exact_batch_ms = 1000.0 * start.elapsed().as_secs_f64() / n as f64;
    let start = Instant::now();
    for i in 0..n {
        semantic_search(&one(i)?, &corpus, top_k, Score::Dot)?;
    }
    let exact_single_ms = 1000.0 * start.elapsed().as_secs_f64() / n as f64;
    println!(
        "{{\"search\": \"exact\", \"single_ms_per_query\": {exact_single_ms:.3}, \"batch_ms_per_query\": {exact_batch_ms:.3}}}"
    );
    for ef in [16, 32, 48, 64, 128, 256] {
        let start = Instant::now();
        let mut single = Vec::with_capacity(n);
        for i in 0..n {
            single.push(index.search(&one(i)?, top_k, ef)?.remove(0));
        }
        let single_ms = 1000.0 * start.elapsed().as_secs_f64() / n as f64;
        let start = Instant::now();
        let batch = index.search(&all, top_k, ef)?;
        let batch_ms = 1000.0 * start.elapsed().as_secs_f64() / n as f64;
        ensure!(batch == single, "a batch answers as single queries do");
        println!(
            "{{\"search\": \"hnsw\", \"ef\": {ef}, \"recall_at_10\": {:.4}, \"single_ms_per_query\": {single_ms:.3}, \"single_speedup\": {:.1}, \"batch_ms_per_query\": {batch_ms:.3}, \"batch_speedup\": {:.1}}}",
            recall(&single, &exact),
            exact_single_ms / single_ms,
            exact_batch_ms / batch_ms
        );
    }
    Ok(())
}
