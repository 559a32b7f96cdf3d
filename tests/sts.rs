//! STS evaluation of all-MiniLM-L6-v2 against sentence-transformers' reference table
//! (`../shared/fixtures/sts_reference.md`): MEAN, MAX and CLS on STSb test and dev.

use sbert::{Pooling, PoolingMode};
use sbert_eval::{evaluate, StsDataset};

use crate::common;

/// (dataset, pooling) → (Spearman, Pearson), parsed from a reference Markdown table.
fn reference(file: &str) -> Vec<(String, String, f64, f64)> {
    let path = common::shared_dir().join("fixtures").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    text.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            if cells.len() != 5 {
                return None;
            }
            let spearman = cells[3].parse().ok()?;
            let pearson = cells[4].parse().ok()?;
            Some((
                cells[0].to_string(),
                cells[1].to_lowercase(),
                spearman,
                pearson,
            ))
        })
        .collect()
}

/// Every row of both reference tables (8 datasets × MEAN, MAX, CLS: 24 rows, Spearman and
/// Pearson), each within 0.01 of sentence-transformers' value as printed (2 decimals). All
/// datasets go through one `evaluate`, so each distinct sentence is encoded once.
#[test]
fn every_sts_reference_row_matches_sentence_transformers_within_0_01() {
    let data = common::shared_dir().join("data");
    let files = [
        ("STSb-test", "stsb/test.tsv"),
        ("STSb-dev", "stsb/dev.tsv"),
        ("SICK-R-test", "sick/test.tsv"),
        ("STS12", "sts12/test.tsv"),
        ("STS13", "sts13/test.tsv"),
        ("STS14", "sts14/test.tsv"),
        ("STS15", "sts15/test.tsv"),
        ("STS16", "sts16/test.tsv"),
    ];
    let datasets: Vec<StsDataset> = files
        .iter()
        .map(|(name, file)| StsDataset::read(data.join(file), Some(name)).expect("read"))
        .collect();
    let modes = [PoolingMode::Mean, PoolingMode::Max, PoolingMode::Cls];
    let poolings: Vec<Pooling> = modes.into_iter().map(Pooling::single).collect();
    let report =
        evaluate(common::minilm(), &datasets, &poolings, &mut |_, _| {}).expect("evaluate");
    let mut reference = reference("sts_reference.md");
    reference.extend(reference_suite());
    assert_eq!(reference.len(), 24, "both tables parsed");
    for (dataset, pooling, spearman, pearson) in &reference {
        let s = report
            .scores
            .iter()
            .find(|s| s.dataset == *dataset && s.pooling == *pooling)
            .unwrap_or_else(|| panic!("no score for {dataset} {pooling}"));
        let pairs = datasets
            .iter()
            .find(|d| d.name == *dataset)
            .expect("dataset")
            .pairs
            .len();
        assert_eq!(s.pairs, pairs);
        let (ds, dp) = ((s.spearman - spearman).abs(), (s.pearson - pearson).abs());
        assert!(
            ds <= 0.01 + 1e-9,
            "{dataset} {pooling}: Spearman {:.4} vs {spearman}",
            s.spearman
        );
        assert!(
            dp <= 0.01 + 1e-9,
            "{dataset} {pooling}: Pearson {:.4} vs {pearson}",
            s.pearson
        );
    }
}

fn reference_suite() -> Vec<(String, String, f64, f64)> {
    reference("sts_suite_reference.md")
}
