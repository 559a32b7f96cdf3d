//! Retrieval evaluation: every query must find its relevant documents among the whole corpus.

use sbert::{DType, TextEmbedder};
use serde::Serialize;

use crate::EvalError;

/// A retrieval task: queries, a corpus, and the corpus ids relevant to each query.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrievalTask {
    /// Query texts.
    pub queries: Vec<String>,
    /// Document texts.
    pub corpus: Vec<String>,
    /// For each query, the ids of its relevant documents (never empty).
    pub relevant: Vec<Vec<usize>>,
}

impl RetrievalTask {
    /// The task of the reference runs: from (premise, hypothesis, is_entailment) rows, the
    /// queries are the distinct premises of entailment rows, the corpus their distinct
    /// hypotheses (both in order of first appearance), and a hypothesis is relevant to every
    /// premise it is entailed by.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut q_ids = std::collections::HashMap::new();
        let mut c_ids = std::collections::HashMap::new();
        let (mut queries, mut corpus) = (Vec::new(), Vec::new());
        let mut relevant: Vec<Vec<usize>> = Vec::new();
        for (q, c) in pairs {
            let qi = *q_ids.entry(q).or_insert_with(|| {
                queries.push(q.to_string());
                relevant.push(Vec::new());
                queries.len() - 1
            });
            let ci = *c_ids.entry(c).or_insert_with(|| {
                corpus.push(c.to_string());
                corpus.len() - 1
            });
            if !relevant[qi].contains(&ci) {
                relevant[qi].push(ci);
            }
        }
        Self {
            queries,
            corpus,
            relevant,
        }
    }
}

/// Retrieval scores, ×100.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RetrievalScores {
    /// Mean share of a query's relevant documents found at rank 1.
    pub recall_at_1: f64,
    /// Mean share found in the top 10.
    pub recall_at_10: f64,
    /// Mean reciprocal rank of the first relevant document within the top 10.
    pub mrr_at_10: f64,
    /// Share of queries with a relevant document at rank 1.
    pub accuracy_at_1: f64,
    /// Share of queries with a relevant document in the top 10.
    pub accuracy_at_10: f64,
    /// Queries.
    pub queries: usize,
    /// Corpus size.
    pub corpus: usize,
}

/// Ranks the corpus by cosine similarity for every query (ties: lower corpus id first) and
/// scores the ranking.
///
/// # Errors
/// On an empty task or when encoding fails.
pub fn evaluate_retrieval(
    model: &(impl TextEmbedder + ?Sized),
    task: &RetrievalTask,
) -> Result<RetrievalScores, EvalError> {
    if task.queries.is_empty() || task.corpus.is_empty() {
        return Err(EvalError::Undefined {
            dataset: "retrieval".into(),
            what: "an empty query list or corpus".into(),
        });
    }
    let queries: Vec<&str> = task.queries.iter().map(String::as_str).collect();
    let corpus: Vec<&str> = task.corpus.iter().map(String::as_str).collect();
    let q = sbert::normalize(&model.embed_texts(&queries)?.to_dtype(DType::F32)?)?;
    let c = sbert::normalize(&model.embed_texts(&corpus)?.to_dtype(DType::F32)?)?;
    let sims: Vec<Vec<f32>> = q.matmul(&c.t()?)?.to_vec2()?;
    if let Some(index) = sims
        .iter()
        .position(|row| !row.iter().all(|v| v.is_finite()))
    {
        return Err(EvalError::NonFinite {
            dataset: "retrieval".into(),
            what: "cosine similarity".into(),
            index,
        });
    }
    let rankings: Vec<Vec<usize>> = sims
        .iter()
        .map(|row| {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a])); // stable: ties keep the lower id first
            order.truncate(10);
            order
        })
        .collect();
    Ok(score_rankings(task, &rankings))
}

/// Recall@1/10, MRR@10 and accuracy@1/10 (×100) of `rankings`: per query, corpus ids best
/// first (at least the first 10 are read). For scoring rankings made another way (a quantized
/// index, truncated embeddings) exactly as [`evaluate_retrieval`] scores its own.
///
/// A query without a ranking counts as a miss.
pub fn score_rankings(task: &RetrievalTask, rankings: &[Vec<usize>]) -> RetrievalScores {
    let (mut r1, mut r10, mut mrr, mut a1, mut a10) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (order, rel) in rankings.iter().zip(&task.relevant) {
        let hits = |k: usize| order.iter().take(k).filter(|c| rel.contains(c)).count() as f64;
        let (h1, h10) = (hits(1), hits(10));
        r1 += h1 / rel.len() as f64;
        r10 += h10 / rel.len() as f64;
        a1 += f64::from(u8::from(h1 > 0.0));
        a10 += f64::from(u8::from(h10 > 0.0));
        if let Some(rank) = order.iter().take(10).position(|c| rel.contains(c)) {
            mrr += 1.0 / (rank + 1) as f64;
        }
    }
    let n = task.queries.len() as f64;
    RetrievalScores {
        recall_at_1: 100.0 * r1 / n,
        recall_at_10: 100.0 * r10 / n,
        mrr_at_10: 100.0 * mrr / n,
        accuracy_at_1: 100.0 * a1 / n,
        accuracy_at_10: 100.0 * a10 / n,
        queries: task.queries.len(),
        corpus: task.corpus.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_groups_relevant_documents_per_query() {
        let t = RetrievalTask::from_pairs([("p1", "h1"), ("p2", "h2"), ("p1", "h3"), ("p1", "h1")]);
        assert_eq!(t.queries, vec!["p1", "p2"]);
        assert_eq!(t.corpus, vec!["h1", "h2", "h3"]);
        assert_eq!(t.relevant, vec![vec![0, 2], vec![1]]);
    }
}
