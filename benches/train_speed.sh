#!/usr/bin/env bash
# Training speed and memory of `sbert train` beside sentence-transformers (benches/train_st.py)
# on the same data, batch size and machine, run one after the other (never concurrently):
#   - all-mpnet-base-v2, mnrl, batch 16, the first 320 entailment pairs of the NLI file;
#   - all-MiniLM-L6-v2, cosine / cosent / angle on the first 1,600 STSb-train pairs, mnrl on
#     the first 1,600 NLI entailment pairs;
#   - peak RSS of mnrl at batch 16 against cached-mnrl at batch 256, mini-batch 16 (MiniLM,
#     1,024 pairs).
# Usage: bash benches/train_speed.sh [PYTHON]   (PYTHON: an interpreter with
# sentence-transformers and torch; default python3). Needs target/release/sbert
# (cargo build --release -p sbert-cli), models/fetch.sh all-mpnet-base-v2, ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
SBERT=target/release/sbert
DATA=../shared/data
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# The first N entailment pairs of the NLI file, as (query, positive) rows both sides read alike.
pairs() {
  awk -F'\t' -v n="$1" 'NR == 1 { print "query\tpositive"; next }
    $3 == "entailment" && k < n { print $1 "\t" $2; k++ }' "$DATA/nli/train.tsv"
}
pairs 320 > "$TMP/nli320.tsv"
pairs 1600 > "$TMP/nli1600.tsv"
pairs 1024 > "$TMP/nli1024.tsv"
head -n 1601 "$DATA/stsb/train.tsv" > "$TMP/sts1600.tsv"

sbert_rate() { # model loss train batch
  "$SBERT" train --model "$1" --loss "$2" --train "$3" --batch-size "$4" --threads 2 \
    --output "$TMP/out" --overwrite 2>&1 | sed -n 's/.*: \([0-9.]*\) pairs\/s.*/\1/p'
  rm -rf "$TMP/out"
}
st_rate() { # model loss train batch
  "$PY" benches/train_st.py --model "$1" --loss "$2" --train "$3" --batch-size "$4" --threads 2 \
    | sed -n 's/.*"pairs_per_second": \([0-9.]*\).*/\1/p'
}
echo "| model | loss | pairs | sbert pairs/s | sentence-transformers pairs/s | ratio |"
echo "|---|---|---:|---:|---:|---:|"
row() { # model loss train batch pairs
  local s p
  s=$(sbert_rate "$1" "$2" "$3" "$4")
  p=$(st_rate "$1" "$2" "$3" "$4")
  echo "| $(basename "$1") | $2 | $5 | $s | $p | $(awk -v a="$s" -v b="$p" 'BEGIN { printf "%.2f", a / b }')× |"
}
row models/all-mpnet-base-v2 mnrl "$TMP/nli320.tsv" 16 320
for loss in cosine cosent angle; do
  row models/all-MiniLM-L6-v2 "$loss" "$TMP/sts1600.tsv" 16 1600
done
row models/all-MiniLM-L6-v2 mnrl "$TMP/nli1600.tsv" 16 1600

rss() { # extra args…
  /usr/bin/time -f %M "$SBERT" train --model models/all-MiniLM-L6-v2 --train "$TMP/nli1024.tsv" \
    --threads 2 --output "$TMP/out" --overwrite "$@" 2>&1 >/dev/null | tail -n 1
  rm -rf "$TMP/out"
}
plain=$(rss --loss mnrl --batch-size 16)
cached=$(rss --loss cached-mnrl --batch-size 256 --mini-batch-size 16)
echo
echo "| MiniLM, 1,024 NLI pairs | peak RSS (MiB) |"
echo "|---|---:|"
echo "| mnrl, batch 16 | $((plain / 1024)) |"
echo "| cached-mnrl, batch 256, mini-batch 16 | $((cached / 1024)) ($(awk -v a="$cached" -v b="$plain" 'BEGIN { printf "%.2f", a / b }')×) |"
