//! `sbert-search` against sentence-transformers' `util.semantic_search`,
//! `util.paraphrase_mining_embeddings` and `util.community_detection` (and the de-duplication
//! rule) on real corpora: `tests/fixtures/applications_reference.json`, written by
//! `tests/fixtures/gen_applications.py`. Our embeddings come from our encoder (equal to
//! sentence-transformers' within 1e-5), so the comparisons allow items whose scores tie within
//! that noise to trade places, and only those.

use sbert_search::{
    community_detection, dedup, paraphrase_mining, semantic_search, Score, Vectors,
};
use serde_json::Value;

use crate::common;

fn reference() -> Value {
    common::read_json(&common::root().join("tests/fixtures/applications_reference.json"))
}

fn sts_sentences(file: &str) -> Vec<Vec<String>> {
    let path = common::shared_dir().join("data/stsb").join(file);
    let text = std::fs::read_to_string(&path).expect("STSb file");
    text.lines()
        .skip(1)
        .map(|l| l.split('\t').map(String::from).collect())
        .collect()
}

fn embed(texts: &[String]) -> Vec<f32> {
    common::minilm().embed(texts).expect("embed").into_vec()
}

fn cos(e: &[f32], dim: usize, a: usize, b: usize) -> f32 {
    e[a * dim..(a + 1) * dim]
        .iter()
        .zip(&e[b * dim..(b + 1) * dim])
        .map(|(x, y)| x * y)
        .sum()
}

/// Scores that differ by less than this are ties (embedding noise is ~1e-6).
const TIE: f32 = 2e-5;

#[test]
fn search_mining_communities_and_dedup_match_sentence_transformers() {
    let reference = reference();
    let test = sts_sentences("test.tsv");
    let corpus: Vec<String> = test
        .iter()
        .flat_map(|r| [r[1].clone(), r[2].clone()])
        .collect();
    let queries: Vec<String> = sts_sentences("dev.tsv")
        .iter()
        .take(50)
        .map(|r| r[1].clone())
        .collect();
    let dim = 384;
    let c = embed(&corpus);
    let q = embed(&queries);
    let corpus_rows = Vectors::new(&c, dim).expect("rows");

    // Search: same scores rank by rank; a different id only where scores tie; every hit above
    // the cut-off present.
    let hits = semantic_search(
        &Vectors::new(&q, dim).expect("rows"),
        &corpus_rows,
        10,
        Score::Cosine,
    )
    .expect("search");
    for (qi, (ours, want)) in hits
        .iter()
        .zip(reference["search"]["hits"].as_array().expect("hits"))
        .enumerate()
    {
        let want: Vec<(usize, f32)> = serde_json::from_value(want.clone()).expect("pairs");
        let cut = want.last().expect("10 hits").1;
        for (r, (h, (id, score))) in ours.iter().zip(&want).enumerate() {
            assert!(
                (h.score - score).abs() <= 1e-4,
                "query {qi} rank {r}: {} vs {score}",
                h.score
            );
            if h.corpus_id != *id {
                let tied = want
                    .iter()
                    .any(|(i, s)| *i == h.corpus_id && (s - score).abs() <= TIE);
                assert!(
                    tied || (h.score - cut).abs() <= TIE,
                    "query {qi} rank {r}: {} vs {id}",
                    h.corpus_id
                );
            }
        }
        for (id, score) in &want {
            if *score > cut + TIE {
                assert!(
                    ours.iter().any(|h| h.corpus_id == *id),
                    "query {qi}: hit {id} missing"
                );
            }
        }
    }

    // Mining: every pair above the cut-off, with its score.
    let mrpc_text = std::fs::read_to_string(
        common::shared_dir().join("data/senteval/MRPC/msr_paraphrase_test.txt"),
    )
    .expect("MRPC");
    let mrpc: Vec<String> = mrpc_text
        .lines()
        .skip(1)
        .flat_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            [cols[3].to_string(), cols[4].to_string()]
        })
        .collect();
    let m = embed(&mrpc);
    let pairs = paraphrase_mining(
        &Vectors::new(&m, dim).expect("rows"),
        100,
        2000,
        Score::Cosine,
    )
    .expect("mine");
    let want: Vec<(f32, usize, usize)> =
        serde_json::from_value(reference["mining"]["pairs"].clone()).expect("pairs");
    assert_eq!(pairs.len(), want.len());
    let cut = want.last().expect("pairs").0;
    let ours: std::collections::HashMap<(usize, usize), f32> =
        pairs.iter().map(|p| ((p.i, p.j), p.score)).collect();
    for (score, i, j) in &want {
        if *score > cut + TIE {
            let got = ours
                .get(&(*i, *j))
                .unwrap_or_else(|| panic!("pair ({i}, {j}) at {score} missing"));
            assert!(
                (got - score).abs() <= 1e-4,
                "pair ({i}, {j}): {got} vs {score}"
            );
        }
    }

    // Communities: the same centres, the same members but those at the threshold.
    let communities = community_detection(&corpus_rows, 0.75, 3).expect("communities");
    let want: Vec<Vec<usize>> =
        serde_json::from_value(reference["communities"]["communities"].clone())
            .expect("communities");
    assert_eq!(communities.len(), want.len());
    for w in &want {
        let ours = communities
            .iter()
            .find(|c| c[0] == w[0])
            .unwrap_or_else(|| panic!("no community at {}", w[0]));
        for x in ours
            .iter()
            .filter(|x| !w.contains(x))
            .chain(w.iter().filter(|x| !ours.contains(x)))
        {
            let s = cos(&c, dim, w[0], *x);
            assert!(
                (s - 0.75).abs() <= TIE,
                "centre {}: member {x} at {s} differs",
                w[0]
            );
        }
    }

    // Dedup: the same decision for every item but those at the threshold.
    let d = dedup(&corpus_rows, 0.9).expect("dedup");
    let want: Vec<Option<usize>> =
        serde_json::from_value(reference["dedup"]["duplicate_of"].clone()).expect("dedup");
    let mut differ = 0;
    for (i, (ours, w)) in d.duplicate_of.iter().zip(&want).enumerate() {
        if ours != w {
            differ += 1;
            let near = |k: &Option<usize>| k.map_or(0.9, |k| cos(&c, dim, i, k));
            let (a, b) = (near(ours), near(w));
            assert!(
                (a - b).abs() <= TIE || (a - 0.9).abs() <= TIE,
                "item {i}: {ours:?} vs {w:?} ({a} vs {b})"
            );
        }
    }
    assert!(differ <= 2, "{differ} de-duplication decisions differ");
}
