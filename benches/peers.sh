#!/usr/bin/env bash
# sbert beside its peers, interleaved in rounds on the same machine at the same time (the machine
# is shared and drifts, so compare ratios within a run, not absolute numbers across runs).
#
#   bash benches/peers.sh [ROUNDS] [THREADS]      (default 3 rounds, 2 threads)
#
# Peers (prepared by ../shared/tools/baselines/setup.sh into $BASELINE_DIR, default
# /tmp/sbert-baselines): sentence-transformers, ONNX Runtime (length-sorted and file-order
# batches of 32), the naive candle BertModel loop. Corpus: the 2,758 sentences of STSb test.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
rounds="${1:-3}"
threads="${2:-2}"
B="${BASELINE_DIR:-/tmp/sbert-baselines}"
shared="${SBERT_SHARED_DIR:-$here/../shared}"
[ -x "$B/venv/bin/python" ] && [ -f "$B/minilm.onnx" ] || BASELINE_DIR="$B" bash "$shared/tools/baselines/setup.sh"
"$here/models/fetch.sh" >/dev/null
(cd "$here" && cargo build --release -q -p sbert-cli)
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads \
    RAYON_NUM_THREADS=$threads TOKENIZERS_PARALLELISM=true
S="A man is playing a guitar."
log="$(mktemp)"
for r in $(seq 1 "$rounds"); do
    echo "=== round $r" >&2
    (cd "$here" && target/release/sbert bench --threads "$threads" --runs 1 --latency-calls 200 \
        --input "$B/corpus.txt" --format json) | sed 's/^/SBERT /' | tee -a "$log" >&2
    (cd "$B" && venv/bin/python bench_ort.py throughput minilm.onnx corpus.txt 32 1 1 2>&1 | grep RESULT | sed 's/^/ORT_SORTED /' | tee -a "$log" >&2)
    (cd "$B" && venv/bin/python bench_st.py throughput corpus.txt 32 1 2>&1 | grep RESULT | sed 's/^/ST /' | tee -a "$log" >&2)
    (cd "$B" && candle-baseline/target/release/candle-baseline bench all-MiniLM-L6-v2 corpus.txt 32 1 1 2>&1 | grep RESULT | sed 's/^/CANDLE /' | tee -a "$log" >&2)
    (cd "$B" && venv/bin/python bench_ort.py latency minilm.onnx 200 "$S" 2>&1 | grep RESULT | sed 's/^/ORT_LAT /' | tee -a "$log" >&2)
done
(cd "$B" && venv/bin/python flops_peak.py corpus.txt 2>&1 | grep -iE "GEMM|upper|bound" | sed 's/^/PEAK /' | tee -a "$log" >&2) || true
python3 - "$log" <<'PY'
import json, re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    tag, _, rest = line.partition(" ")
    if tag == "SBERT":
        d = json.loads(rest)
        rows.setdefault("sbert", []).append(d["sentences_per_s"])
        rows.setdefault("sbert_p50", []).append(d["p50_ms"])
        rows.setdefault("sbert_bound", []).append(100 * d["bound_fraction"])
        rows.setdefault("sbert_rss", []).append(d["peak_rss_mib"] or 0)
    elif tag in ("ORT_SORTED", "ST", "CANDLE"):
        m = re.search(r"median=([0-9.]+)", rest) or re.search(r"([0-9.]+) sent/s", rest)
        if m:
            rows.setdefault(tag.lower(), []).append(float(m.group(1)))
    elif tag == "ORT_LAT":
        m = re.search(r"p50_ms=([0-9.]+)", rest)
        if m:
            rows.setdefault("ort_p50", []).append(float(m.group(1)))
med = {k: statistics.median(v) for k, v in rows.items()}
print("| measure | value |\n|---|---:|")
for k in ("sbert", "ort_sorted", "st", "candle"):
    if k in med:
        print(f"| {k} sentences/s (median of rounds) | {med[k]:.1f} |")
for k in ("ort_sorted", "st", "candle"):
    if k in med and "sbert" in med:
        print(f"| sbert / {k} | {med['sbert'] / med[k]:.2f}x |")
if "sbert_p50" in med:
    print(f"| sbert p50 latency, one sentence | {med['sbert_p50']:.2f} ms |")
if "ort_p50" in med:
    print(f"| ONNX Runtime p50 latency | {med['ort_p50']:.2f} ms |")
    print(f"| sbert / ORT latency | {med['sbert_p50'] / med['ort_p50']:.2f}x |")
if "sbert_bound" in med:
    print(f"| sbert share of the FLOP bound (own sgemm peak) | {med['sbert_bound']:.1f} % |")
PY
