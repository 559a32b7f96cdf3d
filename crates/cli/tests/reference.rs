//! `sbert eval sts` on all-MiniLM-L6-v2 (`models/fetch.sh`) against sentence-transformers'
//! reference scores.

use std::path::Path;
use std::process::Command;

#[test]
fn eval_sts_reports_the_reference_spearman_of_the_real_model() {
    // The STSb-test rows of sentence-transformers' reference, MEAN, MAX and CLS pooling.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let fixture = std::fs::read_to_string(root.join("../shared/fixtures/sts_reference.md"))
        .expect("../shared/fixtures/sts_reference.md");
    let want: Vec<(String, f64)> = fixture
        .lines()
        .filter(|l| l.starts_with("| STSb-test |"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[2].to_lowercase(), cells[4].parse().expect("spearman"))
        })
        .collect();
    assert_eq!(want.len(), 3, "{fixture}");
    let model = root.join("models/all-MiniLM-L6-v2");
    let data = root.join("../shared/data/stsb/test.tsv");
    let out = Command::new(env!("CARGO_BIN_EXE_sbert"))
        .args([
            "eval",
            "sts",
            "-m",
            model.to_str().expect("path"),
            "--data",
            data.to_str().expect("path"),
            "--pooling",
            "mean,max,cls",
            "--format",
            "json",
            "--quiet",
        ])
        .env_remove("SBERT_MODEL")
        .output()
        .expect("run sbert");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(rows.len(), 3);
    for (row, (pooling, spearman)) in rows.iter().zip(&want) {
        assert_eq!(row["pooling"], pooling.as_str());
        assert_eq!(row["pairs"], 1379);
        let got = row["spearman"].as_f64().expect("spearman");
        assert!(
            (got - spearman).abs() <= 0.01,
            "{pooling}: {got} vs {spearman}"
        );
    }
}
