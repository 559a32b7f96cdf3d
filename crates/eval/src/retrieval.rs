//! Retrieval evaluation: every query must find its relevant documents among the whole corpus.

use std::collections::HashMap;

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
        let mut q_ids = HashMap::new();
        let mut c_ids = HashMap::new();
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

    /// Reads a task from the folder `dir` in the BEIR layout sentence-transformers'
    /// `InformationRetrievalEvaluator` takes as dictionaries: `queries.tsv` (`id<TAB>text`),
    /// `corpus.tsv` (`id<TAB>text`) and `qrels.tsv` (`query-id<TAB>corpus-id[<TAB>score]`; a
    /// row with a score of 0 is not a relevant document), each with a header line. Queries
    /// without a relevant document are left out.
    ///
    /// # Errors
    /// A missing or malformed file, a repeated id, or a qrels row naming an id that is not in
    /// the queries or the corpus (naming file and line).
    pub fn read_dir(dir: impl AsRef<std::path::Path>) -> Result<Self, EvalError> {
        let dir = dir.as_ref();
        // The texts of an `id<TAB>text` file, and each id's row.
        let texts = |name: &str| -> Result<(HashMap<String, usize>, Vec<String>), EvalError> {
            let path = dir.join(name);
            let (mut rows, mut texts) = (HashMap::new(), Vec::new());
            for (line, cols) in crate::read_tsv(&path, |_| false)? {
                let [id, text]: [String; 2] = cols.try_into().map_err(|cols: Vec<String>| {
                    crate::data::bad(
                        &path,
                        line,
                        format!("expected id<TAB>text, found {} columns", cols.len()),
                    )
                })?;
                if rows.contains_key(&id) {
                    return Err(crate::data::bad(&path, line, format!("id {id:?} repeated")));
                }
                rows.insert(id, texts.len());
                texts.push(text);
            }
            Ok((rows, texts))
        };
        let (q_pos, queries) = texts("queries.tsv")?;
        let (c_pos, corpus) = texts("corpus.tsv")?;
        let mut relevant = vec![Vec::new(); queries.len()];
        let path = dir.join("qrels.tsv");
        for (line, cols) in crate::read_tsv(&path, |_| false)? {
            if !(2..=3).contains(&cols.len()) {
                return Err(crate::data::bad(
                    &path,
                    line,
                    format!(
                        "expected query-id<TAB>corpus-id[<TAB>score], found {} columns",
                        cols.len()
                    ),
                ));
            }
            let Some(&q) = q_pos.get(&cols[0]) else {
                return Err(crate::data::bad(
                    &path,
                    line,
                    format!("query id {:?} is not in queries.tsv", cols[0]),
                ));
            };
            let Some(&c) = c_pos.get(&cols[1]) else {
                return Err(crate::data::bad(
                    &path,
                    line,
                    format!("corpus id {:?} is not in corpus.tsv", cols[1]),
                ));
            };
            let score = match cols.get(2) {
                Some(s) => s.trim().parse::<f64>().map_err(|_| {
                    crate::data::bad(&path, line, format!("score {s:?} is not a number"))
                })?,
                None => 1.0,
            };
            if score > 0.0 && !relevant[q].contains(&c) {
                relevant[q].push(c);
            }
        }
        let keep: Vec<usize> = (0..queries.len())
            .filter(|&q| !relevant[q].is_empty())
            .collect();
        if keep.is_empty() {
            return Err(EvalError::Empty(path));
        }
        Ok(Self {
            queries: keep.iter().map(|&q| queries[q].clone()).collect(),
            corpus,
            relevant: keep
                .iter()
                .map(|&q| std::mem::take(&mut relevant[q]))
                .collect(),
        })
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
    /// Mean normalized discounted cumulative gain of the top 10 (binary relevance), the main
    /// score of sentence-transformers' `InformationRetrievalEvaluator`.
    pub ndcg_at_10: f64,
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
    let mut ndcg = 0.0;
    let gain = |rank: usize| 1.0 / ((rank + 2) as f64).log2();
    for (order, rel) in rankings.iter().zip(&task.relevant) {
        let dcg: f64 = (order.iter().take(10).enumerate())
            .filter(|(_, c)| rel.contains(c))
            .map(|(rank, _)| gain(rank))
            .sum();
        let ideal: f64 = (0..rel.len().min(10)).map(gain).sum();
        ndcg += dcg / ideal;
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
        ndcg_at_10: 100.0 * ndcg / n,
        accuracy_at_1: 100.0 * a1 / n,
        accuracy_at_10: 100.0 * a10 / n,
        queries: task.queries.len(),
        corpus: task.corpus.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nDCG@10 with binary relevance: DCG of the hits over the DCG of a perfect ranking.
    #[test]
    fn ndcg_discounts_by_rank() {
        let task = RetrievalTask {
            queries: vec!["q0".into(), "q1".into()],
            corpus: (0..12).map(|i| format!("d{i}")).collect(),
            relevant: vec![vec![3, 5], vec![11]],
        };
        // q0: hits at ranks 1 and 3 (0-based 0, 2); q1: its document is outside the top 10.
        let rankings = vec![vec![3, 0, 5, 1], (0..11).collect()];
        let s = score_rankings(&task, &rankings);
        let q0 = (1.0 + 1.0 / 4f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        assert!(
            (s.ndcg_at_10 - 100.0 * q0 / 2.0).abs() < 1e-9,
            "{}",
            s.ndcg_at_10
        );
    }

    #[test]
    fn a_beir_folder_reads_and_names_missing_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write =
            |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
        write(
            "queries.tsv",
            "id\ttext\nq1\twhat is a cat\nq2\tno answer here\n",
        );
        write(
            "corpus.tsv",
            "id\ttext\nc1\ta cat is an animal\nc2\ta car\n",
        );
        write(
            "qrels.tsv",
            "query-id\tcorpus-id\tscore\nq1\tc1\t1\nq2\tc2\t0\n",
        );
        let task = RetrievalTask::read_dir(dir.path()).expect("task");
        assert_eq!(task.queries, vec!["what is a cat"]);
        assert_eq!(task.relevant, vec![vec![0]]);
        write("qrels.tsv", "query-id\tcorpus-id\nq1\tc9\n");
        let err = RetrievalTask::read_dir(dir.path())
            .expect_err("missing")
            .to_string();
        assert!(
            err.contains("qrels.tsv: line 2") && err.contains("\"c9\" is not in corpus.tsv"),
            "{err}"
        );
    }

    #[test]
    fn task_groups_relevant_documents_per_query() {
        let t = RetrievalTask::from_pairs([("p1", "h1"), ("p2", "h2"), ("p1", "h3"), ("p1", "h1")]);
        assert_eq!(t.queries, vec!["p1", "p2"]);
        assert_eq!(t.corpus, vec!["h1", "h2", "h3"]);
        assert_eq!(t.relevant, vec![vec![0, 2], vec![1]]);
    }
}
