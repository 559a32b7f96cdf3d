//! STS evaluation of all-MiniLM-L6-v2 against sentence-transformers' reference table
//! (`../shared/fixtures/sts_reference.md`): MEAN, MAX and CLS on STSb test and dev.

use sbert::{Pooling, PoolingMode};
use sbert_eval::{evaluate, StsDataset};

use crate::common;

/// (dataset, pooling) → (Spearman, Pearson), parsed from the reference's Markdown table.
fn reference() -> Vec<(String, String, f64, f64)> {
    let path = common::shared_dir().join("fixtures/sts_reference.md");
    let text = std::fs::read_to_string(&path).expect("read sts_reference.md");
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

#[test]
fn stsb_test_and_dev_match_sentence_transformers_within_0_05() {
    let data = common::shared_dir().join("data");
    let datasets = vec![
        StsDataset::read(data.join("stsb/test.tsv"), Some("STSb-test")).expect("read"),
        StsDataset::read(data.join("stsb/dev.tsv"), Some("STSb-dev")).expect("read"),
    ];
    let modes = [PoolingMode::Mean, PoolingMode::Max, PoolingMode::Cls];
    let poolings: Vec<Pooling> = modes.into_iter().map(Pooling::single).collect();
    let report =
        evaluate(common::minilm(), &datasets, &poolings, &mut |_, _| {}).expect("evaluate");
    let reference = reference();
    assert_eq!(report.scores.len(), 6);
    for s in &report.scores {
        let (_, _, spearman, pearson) = reference
            .iter()
            .find(|(d, p, _, _)| *d == s.dataset && *p == s.pooling)
            .unwrap_or_else(|| panic!("no reference row for {} {}", s.dataset, s.pooling));
        assert_eq!(
            s.pairs,
            datasets
                .iter()
                .find(|d| d.name == s.dataset)
                .expect("ds")
                .pairs
                .len()
        );
        let (ds, dp) = ((s.spearman - spearman).abs(), (s.pearson - pearson).abs());
        // The reference rounds to 2 decimals: allow 0.05 plus that rounding.
        assert!(
            ds <= 0.055,
            "{} {}: Spearman {:.3} vs {spearman}",
            s.dataset,
            s.pooling,
            s.spearman
        );
        assert!(
            dp <= 0.055,
            "{} {}: Pearson {:.3} vs {pearson}",
            s.dataset,
            s.pooling,
            s.pearson
        );
    }
}
