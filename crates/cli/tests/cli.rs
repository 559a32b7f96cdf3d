//! End-to-end runs of the `sbert` binary on the committed tiny model.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn tiny() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/tiny")
        .to_string_lossy()
        .into_owned()
}

fn sbert(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sbert"))
        .args(args)
        .env_remove("SBERT_MODEL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sbert");
    // sbert may exit before reading (bad arguments): a broken pipe here is fine.
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    child.wait_with_output().expect("wait")
}

fn rows(out: &Output) -> Vec<Vec<f32>> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .expect("utf8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json row"))
        .collect()
}

#[test]
fn embed_lines_and_jsonl_give_the_same_vectors_in_input_order() {
    let m = tiny();
    let lines = rows(&sbert(
        &["embed", "-m", &m],
        b"hello world\n\nthe cat sat\r\n",
    ));
    assert_eq!(lines.len(), 3, "an empty line is the empty text");
    assert_eq!(lines[0].len(), 16);
    let jsonl = rows(&sbert(
        &["embed", "-m", &m, "--input-format", "jsonl"],
        b"\"hello world\"\n{\"text\": \"\"}\n{\"text\": \"the cat sat\", \"id\": 7}\n",
    ));
    assert_eq!(lines, jsonl);
    let single = rows(&sbert(&["embed", "-m", &m], b"the cat sat\n"));
    let d = single[0]
        .iter()
        .zip(&lines[2])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(d < 1e-5, "alone vs in a batch: {d:e}");
}

#[test]
fn npy_output_has_a_valid_header_and_all_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("e.npy");
    let out = sbert(
        &[
            "embed",
            "-m",
            &tiny(),
            "--no-normalize",
            "--pooling",
            "max",
            "-f",
            "npy",
            "-o",
            path.to_str().expect("path"),
        ],
        b"a\nb\nc\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&path).expect("npy written");
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..10 + header_len]);
    assert!(header.contains("'shape': (3, 16)"), "{header}");
    assert_eq!(bytes.len(), 10 + header_len + 3 * 16 * 4);
}

#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.jsonl");
    let out = sbert(
        &["embed", "-m", &tiny(), "-o", path.to_str().expect("path")],
        b"good line\nbad \xc3\x28 line\n",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("invalid UTF-8"),
        "{err}"
    );
    assert!(!path.exists(), "no output file on error");
    assert!(
        std::fs::read_dir(dir.path()).expect("ls").next().is_none(),
        "no partial file"
    );

    let out = sbert(&["embed", "-m", &tiny(), "--pooling", "avg"], b"x\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("weightedmean"),
        "{err}"
    );

    let out = sbert(&["embed", "-m", "/no/such/model"], b"x\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("/no/such/model"),
        "{err}"
    );
}

#[test]
fn similarity_of_two_texts_and_of_pairs() {
    let m = tiny();
    let out = sbert(&["similarity", "-m", &m, "the cat sat", "the cat sat"], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: f32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("float");
    assert!((s - 1.0).abs() < 1e-5, "{s}");

    let dir = tempfile::tempdir().expect("tempdir");
    let pairs = dir.path().join("pairs.tsv");
    std::fs::write(&pairs, "the cat\tthe cat\nhello world\tred car\n").expect("write");
    let out = sbert(
        &[
            "similarity",
            "-m",
            &m,
            "--pairs",
            pairs.to_str().expect("p"),
        ],
        b"",
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let scores: Vec<f32> = text.lines().map(|l| l.parse().expect("float")).collect();
    assert_eq!(scores.len(), 2);
    assert!(
        (scores[0] - 1.0).abs() < 1e-5 && scores[1] < 0.999,
        "{scores:?}"
    );

    std::fs::write(&pairs, "only one column\n").expect("write");
    let out = sbert(
        &[
            "similarity",
            "-m",
            &m,
            "--pairs",
            pairs.to_str().expect("p"),
        ],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("line 1") && err.contains("2 tab-separated"),
        "{err}"
    );
}

#[test]
fn eval_sts_prints_json_per_dataset_and_pooling_and_names_bad_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("pairs.tsv");
    std::fs::write(
        &data,
        "score\tsentence1\tsentence2\n5\tthe cat sat\tthe cat sat\n1\thello world\tred car\n\
         3\tthe dog runs\tthe dog runs fast\n0\tgood book\tbig moon\n",
    )
    .expect("write");
    let out = sbert(
        &[
            "eval",
            "sts",
            "-m",
            &tiny(),
            "--data",
            data.to_str().expect("p"),
            "--pooling",
            "mean,cls",
            "--format",
            "json",
            "--quiet",
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["pooling"], "mean");
    assert_eq!(lines[1]["pooling"], "cls");
    for l in &lines {
        assert_eq!(l["dataset"], "pairs");
        assert_eq!(l["pairs"], 4);
        let s = l["spearman"].as_f64().expect("spearman");
        assert!(
            (-100.0..=100.0).contains(&s) && l["pearson"].is_number(),
            "{l}"
        );
    }
    assert!(String::from_utf8_lossy(&out.stderr).contains("sentences/s"));

    std::fs::write(
        &data,
        "score\tsentence1\tsentence2\n5\tthe cat\tthe cat\nfive\ta\tb\n",
    )
    .expect("write");
    let out = sbert(
        &[
            "eval",
            "sts",
            "-m",
            &tiny(),
            "--data",
            data.to_str().expect("p"),
        ],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("pairs.tsv: line 3"),
        "{err}"
    );

    let out = sbert(
        &["eval", "sts", "-m", &tiny(), "--data", "/no/such.tsv"],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("/no/such.tsv"),
        "{err}"
    );
}

#[test]
fn train_writes_a_model_folder_that_embed_loads_and_names_bad_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("train.tsv");
    std::fs::write(
        &data,
        "score\tsentence1\tsentence2\n5\tthe cat sat\tthe cat sits\n0.5\thello world\tred car\n\
         4\tthe dog runs\ta dog runs fast\n1\tgood book\tbig moon\n",
    )
    .expect("write");
    let out = dir.path().join("model");
    let run = sbert(
        &[
            "train",
            "-m",
            &tiny(),
            "--loss",
            "cosine",
            "--train",
            data.to_str().expect("p"),
            "--dev",
            data.to_str().expect("p"),
            "--batch-size",
            "2",
            "--lr",
            "1e-3",
            "--output",
            out.to_str().expect("p"),
            "--sts-test",
            data.to_str().expect("p"),
        ],
        b"",
    );
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{err}");
    assert!(
        err.contains("pairs/s") && err.contains("Spearman of the saved model"),
        "{err}"
    );
    let log = std::fs::read_to_string(out.join("training_log.csv")).expect("log");
    assert_eq!(log.lines().count(), 1 + 2, "header + 2 steps: {log}");
    let curve = std::fs::read_to_string(out.join("training_curve.svg")).expect("curve");
    assert_eq!(
        curve.matches("<polyline").count(),
        3,
        "loss, its mean, dev: {curve}"
    );
    assert!(
        rows(&sbert(
            &["embed", "-m", out.to_str().expect("p")],
            b"the cat\n"
        ))[0]
            .len()
            == 16
    );

    std::fs::write(&data, "score\tsentence1\tsentence2\n5\ta\tb\n5\tonly two\n").expect("write");
    let run = sbert(
        &[
            "train",
            "-m",
            &tiny(),
            "--loss",
            "cosine",
            "--train",
            data.to_str().expect("p"),
            "--output",
            out.to_str().expect("p"),
        ],
        b"",
    );
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success() && err.contains("train.tsv: line 3"),
        "{err}"
    );
}
