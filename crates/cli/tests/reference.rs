//! The binary on real models against sentence-transformers: `sbert eval sts` on
//! all-MiniLM-L6-v2 (`models/fetch.sh`) against its reference scores, `sbert embed` on
//! all-mpnet-base-v2 (`models/fetch.sh all-mpnet-base-v2`) against its embeddings.

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

/// `sbert embed --model all-mpnet-base-v2` (`models/fetch.sh all-mpnet-base-v2`) against
/// sentence-transformers' outputs (`tests/fixtures/golden_mpnet.json`): the model as shipped
/// (MEAN, normalized), and `--pooling cls|max --no-normalize`, to |Δ| ≤ 1e-4 and cosine ≥
/// 0.99999.
#[test]
fn embed_with_all_mpnet_base_v2_equals_sentence_transformers() {
    #[derive(serde::Deserialize)]
    struct Golden {
        sentences: Vec<String>,
        mean_normalized: Vec<Vec<f32>>,
        cls: Vec<Vec<f32>>,
        max: Vec<Vec<f32>>,
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("tests/fixtures/golden_mpnet.json"))
        .expect("tests/fixtures/golden_mpnet.json");
    let golden: Golden = serde_json::from_str(&text).expect("parse");
    let model = root.join("models/all-mpnet-base-v2");
    assert!(
        model.join("model.safetensors").is_file(),
        "run models/fetch.sh all-mpnet-base-v2 first"
    );
    let input: String = golden
        .sentences
        .iter()
        .map(|s| serde_json::to_string(s).expect("json") + "\n")
        .collect();
    let runs: [(&[&str], &Vec<Vec<f32>>); 3] = [
        (&[], &golden.mean_normalized),
        (&["--pooling", "cls", "--no-normalize"], &golden.cls),
        (&["--pooling", "max", "--no-normalize"], &golden.max),
    ];
    for (extra, want) in runs {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sbert"))
            .args([
                "embed",
                "-m",
                model.to_str().expect("path"),
                "--input-format",
                "jsonl",
            ])
            .args(extra)
            .env_remove("SBERT_MODEL")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run sbert");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), input.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<Vec<f32>> = String::from_utf8(out.stdout)
            .expect("utf8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("row"))
            .collect();
        assert_eq!(got.len(), want.len(), "{extra:?}: rows");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let diff = g
                .iter()
                .zip(w)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            let dot: f32 = g.iter().zip(w).map(|(a, b)| a * b).sum();
            let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let cos = dot / (norm(g) * norm(w));
            assert!(diff <= 1e-4, "{extra:?} row {i}: max |Δ| {diff:e}");
            assert!(cos >= 0.99999, "{extra:?} row {i}: cosine {cos}");
        }
    }
}
