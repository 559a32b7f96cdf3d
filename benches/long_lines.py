"""Peak memory of `sbert embed` on one 20 MB line of each kind, against the STSb test corpus.

Each input is embedded by a fresh `sbert embed` process (the release binary, all-MiniLM-L6-v2);
its peak resident set (ru_maxrss from wait4) and wall time are reported as a Markdown table,
with each peak as a ratio of the STSb-test run's. The lines: ordinary English text, punctuation
without spaces (`!?`), comma-joined letters (`ab,`), CJK, a URL-like string, base64, and one
word of a single letter.

Usage: python3 benches/long_lines.py [SBERT_BINARY] [MEGABYTES]
       (defaults: target/release/sbert, 20)
"""
import base64
import csv
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("SBERT_SHARED_DIR", os.path.join(ROOT, "..", "shared"))
BINARY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "release", "sbert")
MB = int(sys.argv[2]) if len(sys.argv) > 2 else 20
MODEL = os.path.join(ROOT, "models", "all-MiniLM-L6-v2")


def line(kind, size):
    rng = random.Random(1)
    if kind == "ordinary text":
        unit = "The quick brown fox jumps over the lazy dog, and then it rests a while. "
    elif kind == "punctuation (!?)":
        unit = "!?"
    elif kind == "letters and commas (ab,)":
        unit = "ab,"
    elif kind == "CJK":
        unit = "東京の日本語テキストは長い。"
    elif kind == "URL-like":
        unit = "https://example.com/path/to/page?query=value&id=12345#section/"
    elif kind == "base64":
        return base64.b64encode(rng.randbytes(size * 3 // 4)).decode()[:size]
    elif kind == "one long word (aaa…)":
        unit = "a"
    else:
        raise ValueError(kind)
    text = unit * (size // len(unit.encode()) + 1)
    encoded = text.encode()[:size]
    return encoded.decode("utf-8", errors="ignore")


def run(path):
    started = time.time()
    proc = subprocess.Popen(
        [BINARY, "embed", "-m", MODEL, "--input", path, "--threads", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.time() - started
    err = proc.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"sbert embed failed on {path}: {err}")
    return usage.ru_maxrss / 1024, elapsed


def main():
    with tempfile.TemporaryDirectory() as tmp:
        stsb = os.path.join(tmp, "stsb.txt")
        with open(os.path.join(SHARED, "data", "stsb", "test.tsv"), newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        texts = list(dict.fromkeys(t for r in rows for t in (r["sentence1"], r["sentence2"])))
        with open(stsb, "w", encoding="utf-8") as f:
            f.write("\n".join(t.replace("\n", " ") for t in texts) + "\n")
        base_rss, base_s = run(stsb)
        print(f"| input | bytes | peak RSS (MiB) | × STSb test | seconds |")
        print(f"| --- | ---: | ---: | ---: | ---: |")
        print(f"| STSb test, {len(texts):,} sentences | {os.path.getsize(stsb):,} | {base_rss:.0f} | 1.00 | {base_s:.1f} |")
        kinds = ["ordinary text", "punctuation (!?)", "letters and commas (ab,)", "CJK", "URL-like",
                 "base64", "one long word (aaa…)"]
        for kind in kinds:
            path = os.path.join(tmp, "line.txt")
            with open(path, "w", encoding="utf-8") as f:
                f.write(line(kind, MB * 1_000_000) + "\n")
            rss, s = run(path)
            print(f"| {kind}, one line | {os.path.getsize(path):,} | {rss:.0f} | {rss / base_rss:.2f} | {s:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
