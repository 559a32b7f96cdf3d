#!/usr/bin/env bash
# all-mpnet-base-v2 (BERT-base shape: 12 layers × 768) through sbert beside sentence-transformers
# and ONNX Runtime, interleaved in rounds on the same machine (compare ratios within a run).
#
#   bash benches/families.sh [ROUNDS] [THREADS]      (default 3 rounds, 2 threads)
#
# Needs a Python with torch, sentence-transformers, onnxruntime and onnx ($PEERS_PYTHON, default
# $BASELINE_DIR/venv/bin/python as ../shared/tools/baselines/setup.sh makes it). Corpus: the
# 2,758 sentences of STSb test. Prints a markdown table of medians and ratios.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
rounds="${1:-3}"
threads="${2:-2}"
B="${BASELINE_DIR:-/tmp/sbert-baselines}"
py="${PEERS_PYTHON:-$B/venv/bin/python}"
shared="${SBERT_SHARED_DIR:-$here/../shared}"
model="$here/models/all-mpnet-base-v2"
"$here/models/fetch.sh" all-mpnet-base-v2 >/dev/null
(cd "$here" && cargo build --release -q -p sbert-cli)
mkdir -p "$B"
corpus="$B/corpus.txt"
[ -f "$corpus" ] || tail -n +2 "$shared/data/stsb/test.tsv" | awk -F'\t' '{print $2; print $3}' >"$corpus"
onnx="$B/mpnet.onnx"
[ -f "$onnx" ] || "$py" "$here/benches/onnx_encoder.py" export "$model" "$onnx"
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads RAYON_NUM_THREADS=$threads \
    TOKENIZERS_PARALLELISM=true
log="$(mktemp)"
for r in $(seq 1 "$rounds"); do
    echo "=== round $r" >&2
    "$here/target/release/sbert" bench --model "$model" --threads "$threads" --runs 1 \
        --latency-calls 50 --input "$corpus" --format json | sed 's/^/SBERT /' | tee -a "$log" >&2
    "$py" "$here/benches/onnx_encoder.py" throughput "$model" "$onnx" "$corpus" 32 1 2>&1 |
        grep RESULT | sed 's/^/ORT /' | tee -a "$log" >&2
    MODEL_DIR="$model" "$py" "$shared/tools/baselines/bench_st.py" throughput "$corpus" 32 1 2>&1 |
        grep RESULT | sed 's/^/ST /' | tee -a "$log" >&2
done
python3 - "$log" <<'PY'
import json, re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    tag, _, rest = line.partition(" ")
    if tag == "SBERT":
        d = json.loads(rest)
        rows.setdefault("sbert", []).append(d["sentences_per_s"])
        rows.setdefault("bound", []).append(100 * d["bound_fraction"])
    elif tag in ("ORT", "ST"):
        m = re.search(r"median=([0-9.]+)", rest)
        if m:
            rows.setdefault(tag.lower(), []).append(float(m.group(1)))
med = {k: statistics.median(v) for k, v in rows.items()}
print("| all-mpnet-base-v2, STSb test | sentences/s (median of rounds) |\n|---|---:|")
for k, name in (("sbert", "sbert embed (in-process bench)"), ("ort", "ONNX Runtime fp32, length-sorted"), ("st", "sentence-transformers")):
    if k in med:
        print(f"| {name} | {med[k]:.1f} |")
for k in ("ort", "st"):
    if k in med and "sbert" in med:
        print(f"| sbert / {k} | {med['sbert'] / med[k]:.2f}x |")
if "bound" in med:
    print(f"| sbert, share of the FLOP bound | {med['bound']:.0f} % |")
PY
