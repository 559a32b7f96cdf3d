//! End-to-end runs of the `sbert` binary on the committed tiny model.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The folder `models/NAME` of the workspace.
fn model(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn tiny() -> String {
    model("tiny")
}

/// The JSON lines of a successful run's standard output.
fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "{}", stderr(out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
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
        .fold(0f32, |m, d| if d.is_nan() || d > m { d } else { m });
    assert!(d < 1e-5, "alone vs in a batch: {d:e}");
}

#[test]
fn half_precision_embeddings_are_close_to_f32_and_other_dtypes_are_refused() {
    let m = tiny();
    let text = b"hello world\nthe cat sat\n";
    let full = rows(&sbert(&["embed", "-m", &m], text));
    for dtype in ["f16", "bf16"] {
        let half = rows(&sbert(&["embed", "-m", &m, "--dtype", dtype], text));
        assert_eq!(half.len(), full.len());
        for (h, f) in half.iter().zip(&full) {
            let dot: f32 = h.iter().zip(f).map(|(a, b)| a * b).sum();
            let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let cos = dot / (norm(h) * norm(f));
            assert!(cos > 0.99, "{dtype}: cosine to f32 {cos}");
            assert_ne!(h, f, "{dtype} ran in f32");
        }
    }
    let out = sbert(&["embed", "-m", &m, "--dtype", "f64"], text);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("f64") && err.contains("bf16"), "{err}");
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
    // The float32 rows read back equal the jsonl output of the same run, value for value.
    let npy: Vec<f32> = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let jsonl = rows(&sbert(
        &["embed", "-m", &tiny(), "--no-normalize", "--pooling", "max"],
        b"a\nb\nc\n",
    ));
    assert_eq!(npy, jsonl.concat());
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

/// all-MiniLM-L6-v2 without its Normalize module, its config naming `"dot"`: the folder
/// sentence-transformers' `model.similarity` answers with the dot product of the raw
/// mean-pooled vectors (the `mean` rows of the shared fixture).
fn minilm_naming_dot(dir: &std::path::Path) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2");
    let dst = dir.join("minilm-dot");
    std::fs::create_dir(&dst).expect("mkdir");
    for entry in std::fs::read_dir(&src).expect("models/fetch.sh installs all-MiniLM-L6-v2") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name != "modules.json" && name != "config_sentence_transformers.json" {
            std::os::unix::fs::symlink(entry.path(), dst.join(&name)).expect("link");
        }
    }
    std::fs::write(
        dst.join("modules.json"),
        r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#,
    )
    .expect("modules");
    std::fs::write(
        dst.join("config_sentence_transformers.json"),
        r#"{"similarity_fn_name": "dot"}"#,
    )
    .expect("config");
    dst
}

#[test]
fn similarity_uses_the_function_the_model_names() {
    #[derive(serde::Deserialize)]
    struct Golden {
        sentences: Vec<String>,
        mean: Vec<Vec<f32>>,
    }
    let shared = std::env::var_os("SBERT_SHARED_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
        PathBuf::from,
    );
    let golden: Golden = serde_json::from_slice(
        &std::fs::read(shared.join("fixtures/golden_visible.json")).expect("fixture"),
    )
    .expect("json");
    let dir = tempfile::tempdir().expect("tempdir");
    let model = minilm_naming_dot(dir.path());
    let m = model.to_str().expect("utf8");
    for (i, j) in [(0, 1), (2, 5), (7, 7)] {
        let (a, b) = (&golden.sentences[i], &golden.sentences[j]);
        if a.trim().is_empty() || b.trim().is_empty() {
            continue; // clap would take an empty argument; the pairs stay meaningful
        }
        let out = sbert(&["similarity", "-m", m, a, b], b"");
        assert!(out.status.success(), "{}", stderr(&out));
        let got: f64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("float");
        let want: f64 = golden.mean[i]
            .iter()
            .zip(&golden.mean[j])
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum();
        assert!(
            want > 1.5 && (got - want).abs() <= 1e-4 * want.abs(),
            "texts {i}, {j}: sbert {got} vs sentence-transformers' dot product {want}"
        );
    }
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

/// Runs `sbert` with `dir` as its working directory.
fn sbert_in(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sbert"))
        .args(args)
        .current_dir(dir)
        .env_remove("SBERT_MODEL")
        .stdin(Stdio::null())
        .output()
        .expect("run sbert")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file under `dir` with its content, sorted.
fn snapshot(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("list") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("rel").display().to_string();
                out.push((rel, std::fs::read(&p).expect("read")));
            }
        }
    }
    out.sort();
    out
}

fn write_sts(path: &std::path::Path) {
    std::fs::write(
        path,
        "score\tsentence1\tsentence2\n5\tthe cat sat\tthe cat sits\n0.5\thello world\tred car\n",
    )
    .expect("write");
}

#[test]
fn train_never_deletes_a_folder_it_did_not_create() {
    let dir = tempfile::tempdir().expect("tempdir");
    let proj = dir.path().join("proj");
    std::fs::create_dir_all(proj.join("data")).expect("mkdir");
    std::fs::create_dir_all(proj.join("src")).expect("mkdir");
    write_sts(&proj.join("data/train.tsv"));
    std::fs::write(proj.join("src/main.rs"), "fn main() {}\n").expect("write");
    let before = snapshot(&proj);
    let model = tiny();
    let train = |cwd: &std::path::Path, out: &str, extra: &[&str]| {
        let mut args = vec![
            "train",
            "-m",
            &model,
            "--loss",
            "cosine",
            "--train",
            "data/train.tsv",
            "--batch-size",
            "2",
            "--output",
            out,
        ];
        args.extend_from_slice(extra);
        sbert_in(cwd, &args)
    };
    // A folder of the user's files, the working directory, its parent, the root, the folder
    // holding the training data: refused, nothing touched.
    for (cwd, out) in [
        (dir.path(), "proj"),
        (&proj, "."),
        (&proj, ".."),
        (&proj, "/"),
        (&proj, "data"),
    ] {
        let cwd = if cwd == dir.path() {
            proj.as_path()
        } else {
            cwd
        };
        let out = if out == "proj" {
            proj.to_str().expect("p")
        } else {
            out
        };
        let run = train(cwd, out, &[]);
        assert!(!run.status.success(), "{out}: {}", stderr(&run));
        assert!(
            stderr(&run).contains("refusing to write"),
            "{}",
            stderr(&run)
        );
        assert_eq!(snapshot(&proj), before, "-o {out} changed the folder");
    }
    // Protected folders stay refused with --overwrite.
    for out in [".", "..", "data"] {
        let run = train(&proj, out, &["--overwrite"]);
        assert!(!run.status.success(), "{out} --overwrite");
        assert_eq!(snapshot(&proj), before);
    }
    // A new folder is ours; training into it again replaces our own checkpoint only.
    let run = train(&proj, "model", &[]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(proj.join("model/sbert_checkpoint.json").is_file());
    let run = train(&proj, "model", &[]);
    assert!(run.status.success(), "{}", stderr(&run));
    // A file the user added to the checkpoint folder is not deleted by the next run.
    std::fs::write(proj.join("model/notes.md"), "mine").expect("write");
    let run = train(&proj, "model", &[]);
    assert!(
        !run.status.success() && stderr(&run).contains("notes.md"),
        "{}",
        stderr(&run)
    );
    assert_eq!(
        std::fs::read_to_string(proj.join("model/notes.md")).expect("kept"),
        "mine"
    );
    std::fs::remove_file(proj.join("model/notes.md")).expect("rm");
    // Saved files are readable by others, like any file the user creates (umask 022 here).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(proj.join("model/model.safetensors"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o044, 0o044, "mode {mode:o}");
    }
    // A folder of other files is replaced only when the user says so.
    std::fs::create_dir_all(proj.join("old")).expect("mkdir");
    std::fs::write(proj.join("old/notes.txt"), "mine").expect("write");
    assert!(!train(&proj, "old", &[]).status.success());
    assert!(proj.join("old/notes.txt").is_file());
    let run = train(&proj, "old", &["--overwrite"]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(!proj.join("old/notes.txt").exists());
    assert!(proj.join("old/model.safetensors").is_file());
    // No staging folders left anywhere.
    let hidden: Vec<_> = std::fs::read_dir(&proj)
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

#[test]
fn train_refuses_settings_out_of_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("train.tsv");
    write_sts(&data);
    let model = tiny();
    for bad in [
        ["--warmup-ratio", "5"],
        ["--max-grad-norm", "0"],
        ["--eval-every", "0"],
        ["--threads", "0"],
        ["--lr", "nan"],
    ] {
        let mut args = vec![
            "train",
            "-m",
            &model,
            "--loss",
            "cosine",
            "--train",
            "train.tsv",
            "-o",
            "out",
        ];
        args.extend_from_slice(&bad);
        let run = sbert_in(dir.path(), &args);
        assert!(!run.status.success(), "{bad:?} accepted");
        assert!(!dir.path().join("out").exists(), "{bad:?}");
    }
    let run = sbert_in(
        dir.path(),
        &[
            "train",
            "-m",
            &model,
            "--loss",
            "mnrl",
            "--scale",
            "-5",
            "--train",
            "train.tsv",
            "-o",
            "out",
        ],
    );
    assert!(!run.status.success(), "--scale -5 accepted");
    std::fs::write(&data, "score\ts1\ts2\n7\ta\tb\n1\tc\td\n").expect("write");
    let run = sbert_in(
        dir.path(),
        &[
            "train",
            "-m",
            &model,
            "--loss",
            "cosine",
            "--train",
            "train.tsv",
            "-o",
            "out",
        ],
    );
    assert!(
        !run.status.success() && stderr(&run).contains("outside [0, 5]"),
        "{}",
        stderr(&run)
    );
}

#[cfg(unix)]
#[test]
fn embed_output_keeps_links_permissions_and_devices() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "the cat\nthe dog\n").expect("write");
    let real = dir.path().join("real.jsonl");
    std::fs::write(&real, "old\n").expect("write");
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::os::unix::fs::symlink(&real, dir.path().join("link.jsonl")).expect("symlink");
    std::fs::hard_link(&real, dir.path().join("hard.jsonl")).expect("hard link");
    let embed = |out: &str| {
        sbert_in(
            dir.path(),
            &["embed", "-m", &model, "-i", "in.txt", "-o", out],
        )
    };

    let run = embed("link.jsonl");
    assert!(run.status.success(), "{}", stderr(&run));
    let link_meta = std::fs::symlink_metadata(dir.path().join("link.jsonl")).expect("meta");
    assert!(link_meta.file_type().is_symlink(), "the link stays a link");
    let written = std::fs::read_to_string(&real).expect("read");
    assert_eq!(written.lines().count(), 2);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("hard.jsonl")).expect("read"),
        written,
        "the hard link sees the new content"
    );
    let meta = std::fs::metadata(&real).expect("meta");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.nlink(), 2);

    let run = embed("/dev/null");
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(std::fs::metadata("/dev/null")
        .expect("meta")
        .file_type()
        .is_char_device());
    if std::path::Path::new("/dev/full").exists() {
        let run = embed("/dev/full");
        assert!(!run.status.success(), "a full device must fail");
        assert!(std::fs::metadata("/dev/full")
            .expect("meta")
            .file_type()
            .is_char_device());
    }
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}

#[test]
fn concurrent_runs_to_one_output_each_write_a_whole_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny();
    let a: String = (0..3000).map(|i| format!("text number {i}\n")).collect();
    let b: String = (0..2000).map(|i| format!("another text {i}\n")).collect();
    std::fs::write(dir.path().join("a.txt"), &a).expect("write");
    std::fs::write(dir.path().join("b.txt"), &b).expect("write");
    let spawn = |input: &str| {
        Command::new(env!("CARGO_BIN_EXE_sbert"))
            .args(["embed", "-m", &model, "-i", input, "-o", "out.jsonl"])
            .current_dir(dir.path())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (ra, rb) = (spawn("a.txt"), spawn("b.txt"));
    let (ra, rb) = (
        ra.wait_with_output().expect("wait"),
        rb.wait_with_output().expect("wait"),
    );
    assert!(ra.status.success(), "{}", stderr(&ra));
    assert!(rb.status.success(), "{}", stderr(&rb));
    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).expect("read");
    let n = out.lines().count();
    assert!(n == 3000 || n == 2000, "{n} rows: a mix of both runs");
    for line in out.lines() {
        let row: Vec<f32> = serde_json::from_str(line).expect("valid json row");
        assert_eq!(row.len(), 16);
    }
}

#[cfg(unix)]
#[test]
fn sigterm_removes_the_temporary_and_keeps_the_old_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input: String = (0..200_000)
        .map(|i| format!("sentence {i} about cats\n"))
        .collect();
    std::fs::write(dir.path().join("in.txt"), input).expect("write");
    std::fs::write(dir.path().join("out.jsonl"), "precious\n").expect("write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sbert"))
        .args(["embed", "-m", &tiny(), "-i", "in.txt", "-o", "out.jsonl"])
        .current_dir(dir.path())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Wait for the temporary to appear: the run is then writing its output.
    let started = std::time::Instant::now();
    let temporary = loop {
        let found = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().ends_with(".sbert-tmp"));
        if let Some(t) = found {
            break t.path();
        }
        assert!(started.elapsed().as_secs() < 120, "no temporary appeared");
        assert!(
            child.try_wait().expect("poll").is_none(),
            "finished too early"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert_eq!(exit.code(), Some(128 + 15), "{exit:?}");
    assert!(!temporary.exists(), "temporary left behind");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.jsonl")).expect("read"),
        "precious\n"
    );
}

/// Copies the tiny model to `dir` and sets one value of one tensor of its weights.
fn tiny_with_weight(dir: &std::path::Path, tensor: &str, value: f32) -> PathBuf {
    let src = PathBuf::from(tiny());
    let dst = dir.join("model");
    let mut stack = vec![src.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("list") {
            let p = e.expect("entry").path();
            let target = dst.join(p.strip_prefix(&src).expect("rel"));
            if p.is_dir() {
                stack.push(p);
            } else {
                std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
                std::fs::copy(&p, &target).expect("copy");
            }
        }
    }
    let weights = dst.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).expect("read");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header");
    let start = header[tensor]["data_offsets"][0].as_u64().expect("tensor") as usize;
    let at = 8 + n + start;
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    std::fs::write(&weights, bytes).expect("write");
    dst
}

#[test]
fn non_finite_weights_and_overflows_are_errors_not_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let query = "encoder.layer.0.attention.self.query.weight";
    let nan = tiny_with_weight(&dir.path().join("nan"), query, f32::NAN);
    let nan = nan.to_str().expect("p");
    for args in [
        vec!["embed", "-m", nan],
        vec!["similarity", "-m", nan, "a cat", "a dog"],
    ] {
        let run = sbert(&args, b"the cat\n");
        assert!(!run.status.success(), "{args:?}");
        assert!(stderr(&run).contains(query), "{}", stderr(&run));
    }
    // A finite weight with a flipped exponent bit is corruption too (in all-MiniLM-L6-v2 it
    // gives every text the same vector): named at load, nothing embedded.
    let huge = tiny_with_weight(&dir.path().join("huge"), query, 3.7e36);
    let run = sbert(
        &["embed", "-m", huge.to_str().expect("p")],
        b"the cat sat\nthe dog ran\n",
    );
    assert!(
        !run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
    assert!(run.stdout.is_empty());
    assert!(stderr(&run).contains(query), "{}", stderr(&run));
}

#[test]
fn io_errors_name_the_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        vec!["eval", "sts", "-m", &tiny(), "--data", "missing.tsv"],
        vec!["embed", "-m", &tiny(), "-i", "missing.txt"],
        vec!["embed", "-m", &tiny(), "-o", "no/such/folder/out.jsonl"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sbert"))
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn");
        let _ = child.stdin.take().expect("stdin").write_all(b"a\n");
        let run = child.wait_with_output().expect("wait");
        let err = stderr(&run);
        assert!(!run.status.success(), "{args:?}");
        assert_eq!(err.matches("os error").count(), 1, "{args:?}: {err}");
    }
    let run = sbert(&["embed", "-m", &tiny(), "--pooling", "mean,,max"], b"a\n");
    assert!(!run.status.success(), "an empty pooling entry is an error");
}

#[test]
fn batch_size_zero_is_refused_and_empty_input_gives_no_rows() {
    let run = sbert(&["embed", "-m", &tiny(), "--batch-size", "0"], b"a\n");
    assert!(!run.status.success());
    assert!(stderr(&run).contains("batch size"), "{}", stderr(&run));
    let run = sbert(&["embed", "-m", &tiny()], b"");
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(run.stdout.is_empty());
    let dir = tempfile::tempdir().expect("tempdir");
    let npy = dir.path().join("e.npy");
    let run = sbert(
        &[
            "embed",
            "-m",
            &tiny(),
            "-f",
            "npy",
            "-o",
            npy.to_str().expect("p"),
        ],
        b"",
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let bytes = std::fs::read(&npy).expect("npy");
    assert!(String::from_utf8_lossy(&bytes).contains("'shape': (0, 16)"));
}

#[test]
fn eval_retrieval_reads_nli_rows_and_names_bad_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("nli.tsv");
    std::fs::write(
        &data,
        "premise\thypothesis\tlabel\nthe cat sat\ta cat sits\tentailment\nred car\tblue sky\tneutral\n\
         the dog ran\ta dog runs\tentailment\n",
    )
    .expect("write");
    let rows = dir.path().join("rows.txt");
    std::fs::write(&rows, "2\n0\n").expect("write");
    let run = sbert(
        &[
            "eval",
            "retrieval",
            "-m",
            &tiny(),
            "--data",
            data.to_str().expect("p"),
            "--rows",
            rows.to_str().expect("p"),
            "--json",
        ],
        b"",
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let s: serde_json::Value = serde_json::from_slice(&run.stdout).expect("json");
    assert_eq!(s["queries"], 2);
    assert_eq!(s["corpus"], 2);
    std::fs::write(&rows, "7\n").expect("write");
    let run = sbert(
        &[
            "eval",
            "retrieval",
            "-m",
            &tiny(),
            "--data",
            data.to_str().expect("p"),
            "--rows",
            rows.to_str().expect("p"),
        ],
        b"",
    );
    assert!(
        !run.status.success() && stderr(&run).contains("row index 7"),
        "{}",
        stderr(&run)
    );
    std::fs::write(&data, "premise\thypothesis\tlabel\na\tb\tmaybe\n").expect("write");
    let run = sbert(
        &[
            "eval",
            "retrieval",
            "-m",
            &tiny(),
            "--data",
            data.to_str().expect("p"),
        ],
        b"",
    );
    assert!(
        !run.status.success() && stderr(&run).contains("line 2"),
        "{}",
        stderr(&run)
    );
}

/// A SentEval folder with small CR and TREC sets: CR 12 + 12 reviews, TREC 4 questions of each
/// of the six classes for training and one each for test.
fn senteval_data(dir: &std::path::Path) -> PathBuf {
    let root = dir.join("downstream");
    std::fs::create_dir_all(root.join("CR")).expect("mkdir");
    std::fs::create_dir_all(root.join("TREC")).expect("mkdir");
    let pos: String = (0..12)
        .map(|i| format!("a great product number {i}\n"))
        .collect();
    let neg: String = (0..12)
        .map(|i| format!("broken after {i} days , awful\n"))
        .collect();
    std::fs::write(root.join("CR/custrev.pos"), pos).expect("write");
    std::fs::write(root.join("CR/custrev.neg"), neg).expect("write");
    let classes = [
        "ABBR:exp",
        "DESC:def",
        "ENTY:animal",
        "HUM:ind",
        "LOC:city",
        "NUM:date",
    ];
    let question = |c: &str, i: usize| format!("{c} What about {} number {i} ?\n", &c[..3]);
    let train: String = classes
        .iter()
        .flat_map(|c| (0..4).map(move |i| question(c, i)))
        .collect();
    let test: String = classes.iter().map(|c| question(c, 9)).collect();
    std::fs::write(root.join("TREC/train_5500.label"), train).expect("write");
    std::fs::write(root.join("TREC/TREC_10.label"), test).expect("write");
    root
}

#[test]
fn eval_senteval_prints_json_per_task_and_names_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = senteval_data(dir.path());
    let data_arg = data.to_str().expect("utf-8 path");
    let model = tiny();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "eval", "senteval", "-m", &model, "--data", data_arg, "--quiet",
        ];
        args.extend_from_slice(extra);
        sbert(&args, b"")
    };

    let out = run(&["--tasks", "CR,trec", "--folds", "3", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["task"], "CR");
    assert_eq!(lines[0]["n_train"], 24);
    assert_eq!(lines[1]["task"], "TREC");
    assert_eq!(
        (lines[1]["n_train"].as_u64(), lines[1]["n_test"].as_u64()),
        (Some(24), Some(6))
    );
    for l in &lines {
        let acc = l["accuracy"].as_f64().expect("accuracy");
        assert!((0.0..=100.0).contains(&acc), "{l}");
    }
    let err = stderr(&out);
    assert!(
        err.contains("CR: accuracy") && err.contains("TREC: accuracy"),
        "{err}"
    );

    let out = run(&["--tasks", "CR", "--folds", "3", "--format", "markdown"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.contains("SBERT-NLI-large (paper)") && md.contains("| tiny"),
        "{md}"
    );

    let out = run(&["--tasks", "CR,SICK"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("\"SICK\""), "{}", stderr(&out));

    let out = run(&["--tasks", "MR"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no task folder"), "{}", stderr(&out));

    // One task failing does not throw away another's result: CR is printed, MR named, and
    // the run fails.
    let out = run(&["--tasks", "CR,MR", "--folds", "3", "--format", "json"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"task\":\"CR\""), "{stdout}");
    let err = stderr(&out);
    assert!(
        err.contains("MR: not scored") && err.contains("1 of 2 tasks"),
        "{err}"
    );

    // 4 questions per class cannot fill 10 folds.
    let out = run(&["--tasks", "TREC"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("fewer than the 10 folds"),
        "{}",
        stderr(&out)
    );

    std::fs::write(
        data.join("TREC/TREC_10.label"),
        "NUM:date When ?\nnot a label line\n",
    )
    .expect("write");
    let out = run(&["--tasks", "TREC", "--folds", "3"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("TREC_10.label") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn search_mine_cluster_and_dedup_print_their_formats_and_refuse_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let texts = dir.path().join("texts.txt");
    std::fs::write(
        &texts,
        "mac and cheese\nmac and cheese\nmacbook pro\nthe cat sat\nthe cat sat\nred car\n",
    )
    .expect("write");
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").expect("write");
    let (t, e, m) = (
        texts.to_str().expect("p"),
        empty.to_str().expect("p"),
        tiny(),
    );

    let out = sbert(
        &[
            "search",
            "-m",
            &m,
            "--corpus",
            t,
            "--queries",
            t,
            "--top-k",
            "2",
        ],
        b"",
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[1]["query"], 1);
    // An exact repeat scores 1 against its twin: the top two hits of text 0 are 0 and 1.
    let mut top: Vec<u64> = lines[0]["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| h["corpus_id"].as_u64().expect("id"))
        .collect();
    top.sort_unstable();
    assert_eq!(top, [0, 1]);

    let lines = json_lines(&sbert(
        &["mine", "-m", &m, "-i", t, "--max-pairs", "3"],
        b"",
    ));
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|p| p["i"].as_u64() < p["j"].as_u64()));
    assert!(lines[0]["score"].as_f64() >= lines[2]["score"].as_f64());

    let lines = json_lines(&sbert(
        &[
            "cluster",
            "-m",
            &m,
            "-i",
            t,
            "--threshold",
            "0.999",
            "--min-size",
            "2",
        ],
        b"",
    ));
    assert_eq!(lines.len(), 2, "the two repeated texts");
    assert!(lines.iter().all(|c| c["size"] == 2));

    let out = sbert(&["dedup", "-m", &m, "-i", t, "--threshold", "0.999"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "mac and cheese\nmacbook pro\nthe cat sat\nred car\n"
    );
    let lines = json_lines(&sbert(
        &[
            "dedup",
            "-m",
            &m,
            "-i",
            t,
            "--threshold",
            "0.999",
            "--format",
            "jsonl",
        ],
        b"",
    ));
    assert_eq!(lines[1]["duplicate_of"], 0);
    assert_eq!(lines[4]["duplicate_of"], 3);
    assert!(lines[2]["duplicate_of"].is_null());

    // A top-k above the corpus size is capped at it, as in sentence-transformers.
    let capped = json_lines(&sbert(
        &[
            "search",
            "-m",
            &m,
            "--corpus",
            t,
            "--queries",
            t,
            "--top-k",
            "7",
        ],
        b"",
    ));
    assert!(!capped.is_empty());
    assert!(
        capped
            .iter()
            .all(|q| q["hits"].as_array().map(Vec::len) == Some(6)),
        "{capped:?}"
    );

    for (args, needle) in [
        (
            vec!["search", "--corpus", e, "--queries", t],
            "holds no texts",
        ),
        (
            vec!["search", "--corpus", t, "--queries", t, "--top-k", "0"],
            "--top-k 0",
        ),
        (
            vec!["cluster", "-i", t, "--threshold", "1.5"],
            "outside [-1, 1]",
        ),
        (
            vec!["dedup", "-i", t, "--threshold", "-2"],
            "outside [-1, 1]",
        ),
        (
            vec!["mine", "-i", t, "--top-k", "0"],
            "top_k must be at least 1",
        ),
        (vec!["mine", "-i", e], "holds no texts"),
    ] {
        let mut full = args.clone();
        full.extend(["-m", &m]);
        let out = sbert(&full, b"");
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn eval_retrieval_on_a_quantized_or_truncated_corpus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nli = dir.path().join("nli.tsv");
    let mut rows = String::from("premise\thypothesis\tlabel\n");
    for i in 0..12 {
        rows.push_str(&format!(
            "premise number {i} about cats\thypothesis {i} on cats\tentailment\n"
        ));
    }
    std::fs::write(&nli, rows).expect("write");
    let m = tiny();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "retrieval",
            "-m",
            &m,
            "--data",
            nli.to_str().expect("p"),
            "--json",
        ];
        args.extend_from_slice(extra);
        sbert(&args, b"")
    };
    let score = |out: &Output| -> serde_json::Value {
        assert!(out.status.success(), "{}", stderr(out));
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let float = score(&run(&[]));
    // The stored path at full width and float32 is the plain evaluation.
    let same = score(&run(&["--precision", "float32", "--truncate-dim", "16"]));
    assert_eq!(float["recall_at_10"], same["recall_at_10"]);
    for extra in [
        &["--precision", "int8"][..],
        &["--precision", "binary", "--rescore-multiplier", "4"],
        &["--precision", "ubinary", "--rescore-multiplier", "0"],
        &["--truncate-dim", "4"],
    ] {
        let out = run(extra);
        let s = score(&out);
        let r = s["recall_at_10"].as_f64().expect("recall");
        assert!((0.0..=100.0).contains(&r), "{extra:?}: {s}");
        assert!(stderr(&out).contains("bytes per text"), "{}", stderr(&out));
    }
    let out = run(&["--truncate-dim", "0"]);
    assert!(
        !out.status.success() && stderr(&out).contains("--truncate-dim"),
        "{}",
        stderr(&out)
    );
    let out = run(&["--precision", "int4"]);
    assert!(!out.status.success());
}

#[test]
fn index_build_then_search_and_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(
        &corpus,
        "a red car\nthe cat sat\nblue sky today\nred cars\n",
    )
    .expect("write");
    let queries = dir.path().join("queries.txt");
    std::fs::write(&queries, "red car\ncat\n").expect("write");
    let index = dir.path().join("corpus.index");
    let (c, q, i, m) = (
        corpus.to_str().expect("p"),
        queries.to_str().expect("p"),
        index.to_str().expect("p"),
        tiny(),
    );
    let out = sbert(&["index", "build", "-m", &m, "--corpus", c, "-o", i], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(index.join("index.json").is_file());
    for key in ["texts", "embeddings"] {
        assert!(index_file(&index, key).is_file(), "{key}");
    }
    let direct = sbert(
        &[
            "search",
            "-m",
            &m,
            "--corpus",
            c,
            "--queries",
            q,
            "--top-k",
            "2",
        ],
        b"",
    );
    let indexed = sbert(
        &[
            "search",
            "-m",
            &m,
            "--index",
            i,
            "--queries",
            q,
            "--top-k",
            "2",
        ],
        b"",
    );
    assert!(indexed.status.success(), "{}", stderr(&indexed));
    assert_eq!(
        direct.stdout, indexed.stdout,
        "the index gives what embedding the corpus gives"
    );

    // Another model (here: the same weights without normalization) is refused.
    let out = sbert(
        &[
            "search",
            "-m",
            &m,
            "--no-normalize",
            "--index",
            i,
            "--queries",
            q,
        ],
        b"",
    );
    assert!(
        !out.status.success() && stderr(&out).contains("was built with model"),
        "{}",
        stderr(&out)
    );
    // An existing index is replaced only with --overwrite; a folder of other files never.
    let out = sbert(&["index", "build", "-m", &m, "--corpus", c, "-o", i], b"");
    assert!(
        !out.status.success() && stderr(&out).contains("--overwrite"),
        "{}",
        stderr(&out)
    );
    let out = sbert(
        &[
            "index",
            "build",
            "-m",
            &m,
            "--corpus",
            c,
            "-o",
            i,
            "--overwrite",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let other = dir.path().join("mine");
    std::fs::create_dir(&other).expect("mkdir");
    std::fs::write(other.join("notes.txt"), "keep me").expect("write");
    let out = sbert(
        &[
            "index",
            "build",
            "-m",
            &m,
            "--corpus",
            c,
            "-o",
            other.to_str().expect("p"),
            "--overwrite",
        ],
        b"",
    );
    assert!(
        !out.status.success() && stderr(&out).contains("not an sbert index"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(other.join("notes.txt")).expect("kept"),
        "keep me"
    );
    // A truncated embeddings file is named as corrupt.
    let npy = index_file(&index, "embeddings");
    let bytes = std::fs::read(&npy).expect("read");
    std::fs::write(&npy, &bytes[..bytes.len() - 4]).expect("write");
    let out = sbert(&["search", "-m", &m, "--index", i, "--queries", q], b"");
    let name = npy
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        !out.status.success() && stderr(&out).contains(&format!("{name} is corrupt")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_hnsw_index_searches_approximately_and_benches_its_recall() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = dir.path().join("corpus.txt");
    let lines: String = (0..60)
        .map(|i| {
            format!(
                "item number {i} is a {} thing\n",
                ["red", "blue", "green"][i % 3]
            )
        })
        .collect();
    std::fs::write(&corpus, lines).expect("write");
    let queries = dir.path().join("queries.txt");
    std::fs::write(&queries, "a red thing\nitem 7\ngreen\n").expect("write");
    let index = dir.path().join("corpus.index");
    let (c, q, i, m) = (
        corpus.to_str().expect("p"),
        queries.to_str().expect("p"),
        index.to_str().expect("p"),
        tiny(),
    );
    // Without a graph, --approximate says how to get one.
    let out = sbert(&["index", "build", "-m", &m, "--corpus", c, "-o", i], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let search = |extra: &[&str]| {
        let mut a = vec![
            "search",
            "-m",
            &m,
            "--index",
            i,
            "--queries",
            q,
            "--top-k",
            "5",
        ];
        a.extend_from_slice(extra);
        sbert(&a, b"")
    };
    let out = search(&["--approximate"]);
    assert!(
        !out.status.success() && stderr(&out).contains("--hnsw"),
        "{}",
        stderr(&out)
    );
    let out = sbert(
        &[
            "index",
            "build",
            "-m",
            &m,
            "--corpus",
            c,
            "-o",
            i,
            "--overwrite",
            "--hnsw",
            "--hnsw-links",
            "8",
            "--hnsw-ef-construction",
            "64",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // On 60 rows a search as wide as the corpus is exact: the same hits and scores.
    let exact = search(&[]);
    let approximate = search(&["--approximate", "--ef", "60"]);
    assert!(approximate.status.success(), "{}", stderr(&approximate));
    let parse = |out: &std::process::Output| -> Vec<Vec<(u64, f64)>> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json");
                v["hits"]
                    .as_array()
                    .expect("hits")
                    .iter()
                    .map(|h| {
                        (
                            h["corpus_id"].as_u64().expect("id"),
                            h["score"].as_f64().expect("s"),
                        )
                    })
                    .collect()
            })
            .collect()
    };
    let (e, a) = (parse(&exact), parse(&approximate));
    assert_eq!(e.len(), 3);
    for (e, a) in e.iter().zip(&a) {
        assert_eq!(e.len(), a.len());
        for ((ei, es), (ai, as_)) in e.iter().zip(a) {
            assert!((es - as_).abs() < 1e-5, "{e:?} vs {a:?}");
            assert!(ei == ai || (es - as_).abs() < 1e-5);
        }
    }
    let out = sbert(
        &[
            "index",
            "bench",
            "-m",
            &m,
            "--index",
            i,
            "--queries",
            q,
            "--top-k",
            "5",
            "--ef",
            "60",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(report.len(), 2);
    assert_eq!(report[0]["search"], "exact");
    assert_eq!(report[1]["recall_at_k"], 1.0);
    // --approximate needs --index and cosine; a changed graph file is refused by name.
    let out = sbert(
        &[
            "search",
            "-m",
            &m,
            "--corpus",
            c,
            "--queries",
            q,
            "--approximate",
        ],
        b"",
    );
    assert!(!out.status.success());
    let out = search(&["--approximate", "--score", "dot"]);
    assert!(
        !out.status.success() && stderr(&out).contains("cosine"),
        "{}",
        stderr(&out)
    );
    let graph = index_file(&index, "hnsw");
    let mut bytes = std::fs::read(&graph).expect("read");
    bytes[20] ^= 0xff;
    std::fs::write(&graph, &bytes).expect("write");
    let out = search(&["--approximate"]);
    let name = graph
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        !out.status.success() && stderr(&out).contains(&format!("{name} is corrupt")),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
}

/// The data file of an index that its manifest names under `key` (`texts`, `embeddings`, or
/// `hnsw` for the graph file).
fn index_file(index: &std::path::Path, key: &str) -> std::path::PathBuf {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(index.join("index.json")).expect("manifest"))
            .expect("json");
    let name = if key == "hnsw" {
        &manifest["hnsw"]["saved"]["files"][0][0]
    } else {
        &manifest[key]["file"]
    };
    index.join(name.as_str().expect("a file name"))
}

/// `train -m owner/name` resolves the id from the hub cache, trains, and saves (the save used
/// to take the id for a folder and fail after the whole run).
#[test]
fn train_from_a_hub_id_saves_its_model_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("hub");
    let repo = cache.join("models--sbert-test--tiny");
    let snapshot = repo.join("snapshots/0123456789abcdef");
    std::fs::create_dir_all(repo.join("refs")).expect("mkdir");
    std::fs::write(repo.join("refs/main"), "0123456789abcdef").expect("ref");
    // Each file a link into the blob store, as the hub cache lays a snapshot out.
    let src = PathBuf::from(tiny());
    let mut stack = vec![src.clone()];
    let mut n = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("list") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            n += 1;
            let blob = repo.join("blobs").join(format!("blob{n}"));
            std::fs::create_dir_all(blob.parent().expect("parent")).expect("mkdir");
            std::fs::copy(&p, &blob).expect("copy");
            let link = snapshot.join(p.strip_prefix(&src).expect("rel"));
            std::fs::create_dir_all(link.parent().expect("parent")).expect("mkdir");
            #[cfg(unix)]
            std::os::unix::fs::symlink(&blob, &link).expect("symlink");
            #[cfg(not(unix))]
            std::fs::copy(&blob, &link).expect("copy");
        }
    }
    let data = dir.path().join("train.tsv");
    write_sts(&data);
    let out = dir.path().join("tuned");
    let run = Command::new(env!("CARGO_BIN_EXE_sbert"))
        .args([
            "train",
            "-m",
            "sbert-test/tiny",
            "--loss",
            "cosine",
            "--train",
            data.to_str().expect("p"),
            "--batch-size",
            "2",
            "--output",
            out.to_str().expect("p"),
        ])
        .env("HF_HUB_CACHE", &cache)
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("SBERT_MODEL")
        .stdin(Stdio::null())
        .output()
        .expect("run sbert");
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(out.join("model.safetensors").is_file());
    assert_eq!(
        rows(&sbert(
            &["embed", "-m", out.to_str().expect("p")],
            b"the cat\n"
        ))[0]
            .len(),
        16
    );
}

/// `sbert rerank` ranks documents as the library does (jsonl and table), scores a pair file,
/// reranks `sbert search`'s hits, and refuses bad input before loading anything.
#[test]
fn rerank_ranks_scores_pairs_reranks_search_and_refuses_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reranker = model("rerankers/bert");
    let docs = dir.path().join("docs.txt");
    std::fs::write(
        &docs,
        "vaccines teach the immune system\nthe train leaves at noon\nfresh basil\n",
    )
    .expect("write");
    let pairs = dir.path().join("pairs.tsv");
    std::fs::write(&pairs, "a query\ta document\nanother\tpair of texts\n").expect("write");
    let d = docs.to_str().expect("p");
    let out = sbert(
        &[
            "rerank", "-m", &reranker, "--query", "vaccines", "--input", d,
        ],
        b"",
    );
    let ranked = json_lines(&out);
    assert_eq!(ranked.len(), 3);
    let scores: Vec<f64> = ranked
        .iter()
        .map(|r| r["score"].as_f64().expect("score"))
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let mut ids: Vec<u64> = ranked
        .iter()
        .map(|r| r["corpus_id"].as_u64().expect("id"))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [0, 1, 2]);
    let out = sbert(
        &[
            "rerank",
            "-m",
            &reranker,
            "--query",
            "vaccines",
            "--input",
            d,
            "--top-k",
            "1",
            "--format",
            "table",
            "--raw-scores",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    let out = sbert(
        &[
            "rerank",
            "-m",
            &reranker,
            "--pairs",
            pairs.to_str().expect("p"),
        ],
        b"",
    );
    let scored = json_lines(&out);
    assert_eq!(scored.len(), 2);
    assert_eq!(scored[1]["index"], 1);
    assert!((0.0..=1.0).contains(&scored[0]["score"].as_f64().expect("sigmoid")));

    // Retrieve with the tiny embedder, rerank its hits.
    let out = sbert(
        &[
            "search",
            "-m",
            &tiny(),
            "--corpus",
            d,
            "--queries",
            d,
            "--top-k",
            "3",
            "--rerank-model",
            &reranker,
            "--rerank-top",
            "2",
        ],
        b"",
    );
    let per_query = json_lines(&out);
    assert_eq!(per_query.len(), 3);
    for q in &per_query {
        let hits = q["hits"].as_array().expect("hits");
        assert_eq!(hits.len(), 2);
        assert!(hits[0]["score"].as_f64() >= hits[1]["score"].as_f64());
        assert!(hits[0].get("retrieval_score").is_some());
    }

    let one_column = dir.path().join("one.tsv");
    std::fs::write(&one_column, "no tab here\n").expect("write");
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").expect("write");
    for (args, says) in [
        (
            vec!["--pairs", one_column.to_str().expect("p")],
            "2 tab-separated columns",
        ),
        (vec!["--query", "  ", "--input", d], "--query is empty"),
        (
            vec!["--query", "q", "--input", empty.to_str().expect("p")],
            "holds no texts",
        ),
        (
            vec!["--query", "q", "--input", d, "--top-k", "0"],
            "--top-k",
        ),
    ] {
        let mut all = vec!["rerank", "-m", reranker.as_str()];
        all.extend(args);
        let out = sbert(&all, b"");
        assert!(
            !out.status.success() && stderr(&out).contains(says),
            "{all:?}: {}",
            stderr(&out)
        );
    }
    let out = sbert(
        &["rerank", "-m", &tiny(), "--query", "q", "--input", d],
        b"",
    );
    assert!(
        !out.status.success() && stderr(&out).contains("not a cross-encoder"),
        "{}",
        stderr(&out)
    );
}

/// `sbert embed` on a sparse (SPLADE) model writes `{"indices", "values"}` lines, as the
/// library encodes them, and refuses npy.
#[test]
fn embed_on_a_sparse_model_writes_indices_and_values_and_refuses_npy() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/splade-tiny");
    assert!(
        dir.join("model.safetensors").is_file(),
        "run models/fetch.sh splade-tiny"
    );
    let m = dir.to_string_lossy().into_owned();
    let out = sbert(
        &["embed", "-m", &m],
        b"How do vaccines work?\nerror code E1234\n",
    );
    let lines = json_lines(&out);
    let library = sbert::SparseEncoder::from_dir(&dir, &sbert::Device::Cpu)
        .expect("loads")
        .encode(&["How do vaccines work?", "error code E1234"])
        .expect("encode");
    assert_eq!(lines.len(), 2);
    for (line, want) in lines.iter().zip(&library) {
        let indices: Vec<u32> = serde_json::from_value(line["indices"].clone()).expect("indices");
        let values: Vec<f32> = serde_json::from_value(line["values"].clone()).expect("values");
        assert_eq!(indices, want.indices);
        assert!(values
            .iter()
            .zip(&want.values)
            .all(|(a, b)| (a - b).abs() <= 1e-6));
    }
    let out = sbert(&["embed", "-m", &m, "--format", "npy"], b"text\n");
    assert!(
        !out.status.success() && stderr(&out).contains("sparse encoder"),
        "{}",
        stderr(&out)
    );
}

/// `sbert search` with a sparse model searches by sparse dot product (an inverted index); with
/// `--sparse-model` beside a dense one, by hybrid scores; both refuse what does not apply.
#[test]
fn sparse_and_hybrid_search_rank_the_matching_text_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let splade = model("splade-tiny");
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(
        &corpus,
        "error code E1234 in the parser\nvaccines train the immune system\nfresh basil in water\n",
    )
    .expect("write");
    let queries = dir.path().join("queries.txt");
    std::fs::write(&queries, "error code E1234\nhow do vaccines work\n").expect("write");
    let (c, q) = (corpus.to_str().expect("p"), queries.to_str().expect("p"));
    let first_hits = |out: &Output| -> Vec<u64> {
        json_lines(out)
            .iter()
            .map(|v| v["hits"][0]["corpus_id"].as_u64().expect("id"))
            .collect()
    };
    let out = sbert(
        &[
            "search",
            "-m",
            &splade,
            "--corpus",
            c,
            "--queries",
            q,
            "--top-k",
            "2",
        ],
        b"",
    );
    assert_eq!(first_hits(&out), [0, 1]);
    let out = sbert(
        &[
            "search",
            "-m",
            &tiny(),
            "--sparse-model",
            &splade,
            "--dense-weight",
            "0",
            "--corpus",
            c,
            "--queries",
            q,
            "--top-k",
            "3",
        ],
        b"",
    );
    assert_eq!(first_hits(&out), [0, 1], "weight 0 is sparse search");
    let out = sbert(
        &[
            "search",
            "-m",
            &tiny(),
            "--sparse-model",
            &splade,
            "--dense-weight",
            "1.5",
            "--corpus",
            c,
            "--queries",
            q,
        ],
        b"",
    );
    assert!(
        !out.status.success() && stderr(&out).contains("--dense-weight"),
        "{}",
        stderr(&out)
    );
}

/// `sbert mine-negatives` writes triplets that `sbert train --loss triplet` (and mnrl with hard
/// negatives) trains on; the bad inputs the training issue lists are refused before any step,
/// naming what is wrong, and leave no output behind.
#[test]
fn mined_triplets_train_and_bad_training_inputs_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny();
    std::fs::write(
        dir.path().join("pairs.tsv"),
        "anchor\tpositive\nthe cat sat on the mat\ta cat is on a mat\n\
         a man plays guitar\ta man is playing music\nthe dog runs fast\ta dog is running\n\
         a woman eats pasta\ta woman is eating food\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("corpus.txt"),
        "stocks fell sharply\nthe moon is bright\na cat on a rug\na child reads a book\n",
    )
    .expect("write");
    let run = sbert_in(
        dir.path(),
        &[
            "mine-negatives",
            "-m",
            &model,
            "--input",
            "pairs.tsv",
            "--corpus",
            "corpus.txt",
            "--num-negatives",
            "2",
            "--output",
            "triplets.tsv",
        ],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let triplets = std::fs::read_to_string(dir.path().join("triplets.tsv")).expect("triplets");
    let lines: Vec<&str> = triplets.lines().collect();
    assert_eq!(lines[0], "anchor\tpositive\tnegative");
    assert_eq!(lines.len(), 1 + 4 * 2, "{triplets}");
    for line in &lines[1..] {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 3, "{line}");
        assert!(cols[2] != cols[1] && cols[2] != cols[0], "{line}");
    }
    // Through an index of the same corpus: the same triplets.
    let run = sbert_in(
        dir.path(),
        &[
            "index",
            "build",
            "-m",
            &model,
            "--corpus",
            "corpus.txt",
            "-o",
            "corpus.index",
        ],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let run = sbert_in(
        dir.path(),
        &[
            "mine-negatives",
            "-m",
            &model,
            "--input",
            "pairs.tsv",
            "--index",
            "corpus.index",
            "--num-negatives",
            "2",
            "--output",
            "indexed.tsv",
        ],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let indexed = std::fs::read_to_string(dir.path().join("indexed.tsv")).expect("indexed");
    assert_eq!(indexed, triplets);
    for loss in ["triplet", "mnrl", "mnrl-symmetric"] {
        let out = format!("out-{loss}");
        let run = sbert_in(
            dir.path(),
            &[
                "train",
                "-m",
                &model,
                "--loss",
                loss,
                "--train",
                "triplets.tsv",
                "--batch-size",
                "4",
                "--lr",
                "1e-3",
                "-o",
                &out,
            ],
        );
        assert!(run.status.success(), "{loss}: {}", stderr(&run));
        assert!(dir.path().join(&out).join("model.safetensors").is_file());
    }

    // The bad inputs, each refused before training.
    let refused = |args: &[&str], says: &str| {
        let mut all = vec!["train", "-m", model.as_str(), "-o", "refused"];
        all.extend_from_slice(args);
        let run = sbert_in(dir.path(), &all);
        assert!(!run.status.success(), "{args:?} accepted");
        assert!(stderr(&run).contains(says), "{args:?}: {}", stderr(&run));
        assert!(!stderr(&run).contains("step 1"), "{args:?} trained");
        assert!(!dir.path().join("refused").exists(), "{args:?} left output");
    };
    refused(
        &["--loss", "triplet", "--train", "pairs.tsv"],
        "three columns",
    );
    refused(
        &[
            "--loss",
            "mnrl",
            "--train",
            "pairs.tsv",
            "--matryoshka-dims",
            "16,64",
        ],
        "Matryoshka dimension 64",
    );
    // A teacher of another width: models/tiny ends in a Dense module of 16; the 32-wide
    // xlm-roberta family model does not.
    let teacher =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/families/xlm-roberta");
    refused(
        &[
            "--loss",
            "mse",
            "--train",
            "pairs.tsv",
            "--teacher",
            teacher.to_str().expect("p"),
        ],
        "distillation needs the same width",
    );
    refused(
        &["--loss", "mnrl", "--train", "pairs.tsv", "--resume", &model],
        "not a checkpoint",
    );
    std::fs::create_dir(dir.path().join("ir")).expect("mkdir");
    std::fs::write(dir.path().join("ir/queries.tsv"), "id\ttext\nq1\ta cat\n").expect("write");
    std::fs::write(
        dir.path().join("ir/corpus.tsv"),
        "id\ttext\nc1\ta cat on a mat\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("ir/qrels.tsv"), "qid\tcid\nq1\tc7\n").expect("write");
    refused(
        &["--loss", "mnrl", "--train", "pairs.tsv", "--dev", "ir"],
        "corpus id \"c7\" is not in corpus.tsv",
    );
}
