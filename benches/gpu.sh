#!/usr/bin/env bash
# The CUDA checks and figures, in one run on a machine with an NVIDIA GPU (under 10 minutes):
#
#   1. builds `sbert` with the `cuda` feature (for the GPU's own compute capability);
#   2. runs the golden tests on CUDA: all-MiniLM-L6-v2's embeddings in f32 against
#      sentence-transformers' fixtures (max |Δ| ≤ 1e-4, as on the CPU);
#   3. checks that f16 keeps STSb-test Spearman (MEAN) within 0.1 of f32;
#   4. measures throughput over the STSb-test corpus in f32 and f16 beside sentence-transformers
#      on the same GPU, and writes the table between <!-- gpu:begin --> and <!-- gpu:end --> in
#      README.md (GPU_README=0 prints it only).
#
# Needs: the NVIDIA driver (nvidia-smi); nvcc, else PyPI's CUDA 13.0 compiler through
# .ci/cuda-toolkit.sh; Rust; the model (models/fetch.sh); a Python with CUDA PyTorch and
# sentence-transformers for the comparison (SBERT_GPU_PYTHON, default python3).
#
# Usage: bash benches/gpu.sh
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
shared="${SBERT_SHARED_DIR:-$here/../shared}"
py="${SBERT_GPU_PYTHON:-python3}"

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu.sh: no NVIDIA GPU here (nvidia-smi finds none); run it on a machine with one" >&2
    exit 1
fi
gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)"
cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d .)"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-$cap}"
command -v nvcc >/dev/null || eval "$(bash .ci/cuda-toolkit.sh)"
echo "== $gpu (compute capability $CUDA_COMPUTE_CAP), $(nvcc --version | tail -n 1)" >&2

models/fetch.sh >/dev/null
model="$here/models/all-MiniLM-L6-v2"
stsb="$shared/data/stsb/test.tsv"
corpus="$(mktemp)"
trap 'rm -f "$corpus"' EXIT
tail -n +2 "$stsb" | awk -F'\t' '{print $2; print $3}' >"$corpus"

echo "== build (--features cuda)" >&2
cargo build --release -q -p sbert-cli --features cuda
sbert="$here/target/release/sbert"

echo "== golden tests on CUDA, f32" >&2
SBERT_TEST_DEVICE=cuda cargo test --release -q --features sbert/cuda --test tests golden:: -- \
    --skip packed_and_padded

json_field() { "$py" -c 'import json,sys; print(json.loads(sys.stdin.readline())[sys.argv[1]])' "$1"; }

echo "== STSb test, Spearman (MEAN), f32 and f16" >&2
spearman() {
    "$sbert" eval sts --model "$model" --device cuda --dtype "$1" --data "$stsb" --format json \
        --quiet | json_field spearman
}
s32="$(spearman f32)"
s16="$(spearman f16)"
echo "f32 $s32, f16 $s16" >&2
"$py" -c 'import sys; d = abs(float(sys.argv[1]) - float(sys.argv[2]))
sys.exit(f"f16 Spearman {sys.argv[2]} is {d:.2f} from f32 {sys.argv[1]} (more than 0.1)" if d > 0.1 else 0)' \
    "$s32" "$s16"

echo "== throughput over the corpus ($(wc -l <"$corpus") sentences, batches of 32)" >&2
declare -A rate p50 cosmin
for dtype in f32 f16; do
    out="$("$sbert" bench --model "$model" --device cuda --dtype "$dtype" --runs 3 \
        --latency-calls 200 --input "$corpus" --format json 2>/dev/null)"
    rate[sbert-$dtype]="$(json_field sentences_per_s <<<"$out")"
    p50[sbert-$dtype]="$(json_field p50_ms <<<"$out")"
    [ "$dtype" = f16 ] && cosmin[f16]="$(json_field cosine_to_f32_min <<<"$out")"
    out="$("$py" benches/st_throughput.py "$model" "$corpus" --device cuda --dtype "$dtype")"
    rate[st-$dtype]="$(json_field sentences_per_s <<<"$out")"
done

table="$(cat <<TABLE
Measured $(date +%F) on $gpu with \`bash benches/gpu.sh\`: all-MiniLM-L6-v2, the STSb-test corpus
($(wc -l <"$corpus") sentences), batches of 32, median of 3 runs; sentence-transformers with
PyTorch $("$py" -c 'import torch; print(torch.__version__)') on the same GPU.

| | f32 | f16 |
|---|---:|---:|
| sbert, sentences/s | $(printf %.0f "${rate[sbert-f32]}") | $(printf %.0f "${rate[sbert-f16]}") |
| sentence-transformers, sentences/s | $(printf %.0f "${rate[st-f32]}") | $(printf %.0f "${rate[st-f16]}") |
| sbert / sentence-transformers | $("$py" -c "print(f'{${rate[sbert-f32]}/${rate[st-f32]}:.2f}×')") | $("$py" -c "print(f'{${rate[sbert-f16]}/${rate[st-f16]}:.2f}×')") |
| sbert, one short sentence, p50 ms | $(printf %.2f "${p50[sbert-f32]}") | $(printf %.2f "${p50[sbert-f16]}") |
| STSb-test Spearman ×100 (MEAN) | $(printf %.2f "$s32") | $(printf %.2f "$s16") |
| cosine of f16 to f32 embeddings, min | | $(printf %.4f "${cosmin[f16]}") |
TABLE
)"
echo "$table"
if [ "${GPU_README:-1}" != 0 ]; then
    "$py" - "$table" <<'PY'
import re, sys
text = open("README.md", encoding="utf-8").read()
new, n = re.subn(r"(<!-- gpu:begin -->\n).*?(<!-- gpu:end -->)",
                 lambda m: m.group(1) + sys.argv[1] + "\n" + m.group(2), text, flags=re.S)
if n != 1:
    sys.exit("README.md has no <!-- gpu:begin --> … <!-- gpu:end --> block")
open("README.md", "w", encoding="utf-8").write(new)
PY
    echo "README.md: GPU table written" >&2
fi
