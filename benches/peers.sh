#!/usr/bin/env bash
# sbert beside its peers, fp32 and int8, interleaved in rounds on the same machine at the same
# time (the machine is shared and drifts, so compare ratios within a run, not numbers across runs),
# and the README's figures table rewritten from the medians (CPU model and date included).
#
#   bash benches/peers.sh [ROUNDS] [THREADS...]      (default: 1 round, 1 and 2 threads)
#
# Models: all-MiniLM-L6-v2 (6 × 384) and all-mpnet-base-v2 (BERT-base shape, 12 × 768).
# Peers: ONNX Runtime fp32 and dynamic int8 (per-channel int8 weights, u8 activations, as
# ../shared/tools/baselines/bench_ort.py quantize makes it), length-sorted batches of 32; for
# MiniLM at 2 threads also sentence-transformers and the naive candle loop. Measures:
#   * the STSb-test corpus (2,758 sentences; the first 512 for all-mpnet-base-v2), sentences/s;
#   * one short sentence, p50 latency;
#   * synthetic inputs of exactly 16, 64, 128 and 256 tokens (`sbert bench --seq-len`);
#   * for all-MiniLM-L6-v2, STSb-test Spearman (MEAN) in fp32 and int8, and the cosine of
#     every int8 corpus embedding to the fp32 one (min, mean).
# Peers are prepared by ../shared/tools/baselines/setup.sh in $BASELINE_DIR (default
# /tmp/sbert-baselines). Set PEERS_README=0 to print the table without touching README.md.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
rounds="${1:-1}"
shift || true
threads_list="${*:-1 2}"
B="${BASELINE_DIR:-/tmp/sbert-baselines}"
shared="${SBERT_SHARED_DIR:-$here/../shared}"
[ -x "$B/venv/bin/python" ] && [ -f "$B/minilm-int8.onnx" ] &&
    [ -x "$B/candle-baseline/target/release/candle-baseline" ] ||
    BASELINE_DIR="$B" bash "$shared/tools/baselines/setup.sh"
py="$B/venv/bin/python"
"$here/models/fetch.sh" >/dev/null
"$here/models/fetch.sh" all-mpnet-base-v2 >/dev/null
(cd "$here" && cargo build --release -q -p sbert-cli)
sbert="$here/target/release/sbert"
ort="$here/benches/onnx_encoder.py"
minilm="$here/models/all-MiniLM-L6-v2"
mpnet="$here/models/all-mpnet-base-v2"
[ -f "$B/mpnet.onnx" ] || "$py" "$ort" export "$mpnet" "$B/mpnet.onnx"
[ -f "$B/mpnet-int8.onnx" ] || "$py" "$ort" quantize "$B/mpnet.onnx" "$B/mpnet-int8.onnx" 2>/dev/null
corpus="$B/corpus.txt"
S="A man is playing a guitar."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=true
log="$(mktemp)"

# record KEY VALUE: one measurement, to the log (and stderr, to watch it run).
record() { echo "$1 $2" | tee -a "$log" >&2; }
sbert_bench() { # KEY MODEL THREADS QUANT ARGS...: throughput, p50, bound, cosines
    local key=$1 model=$2 t=$3 q=$4
    shift 4
    local json
    json=$(RAYON_NUM_THREADS=$t "$sbert" bench --model "$model" --threads "$t" --quantize "$q" \
        --runs 1 --format json --input "$corpus" "$@" 2>/dev/null)
    record "$key/rate" "$(jq_ "$json" sentences_per_s)"
    record "$key/p50" "$(jq_ "$json" p50_ms)"
    record "$key/bound" "$(jq_ "$json" bound_fraction)"
    [ "$q" = int8 ] && record "$key/cosmin" "$(jq_ "$json" cosine_to_f32_min)" &&
        record "$key/cosmean" "$(jq_ "$json" cosine_to_f32_mean)"
    return 0
}
jq_() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
ort_rate() { # KEY MODEL ONNX THREADS ARGS...
    local key=$1 model=$2 onnx=$3 t=$4
    shift 4
    record "$key/rate" "$(OMP_NUM_THREADS=$t "$py" "$ort" throughput "$model" "$onnx" "$corpus" 32 1 \
        --threads "$t" "$@" 2>/dev/null | sed -n 's/.*median=\([0-9.]*\).*/\1/p')"
}
ort_latency() { # KEY MODEL ONNX THREADS
    record "$1/p50" "$(OMP_NUM_THREADS=$4 "$py" "$ort" latency "$2" "$3" 200 "$S" --threads "$4" \
        2>/dev/null | sed -n 's/.*p50_ms=\([0-9.]*\).*/\1/p')"
}

for r in $(seq 1 "$rounds"); do
    echo "=== round $r" >&2
    for t in $threads_list; do
        for m in minilm mpnet; do
            if [ $m = minilm ]; then dir=$minilm; limit=(); seq_limit=64; else dir=$mpnet; limit=(--limit 512); seq_limit=16; fi
            sbert_bench "$m/$t/corpus/sbert-fp32" "$dir" "$t" none "${limit[@]}" --latency-calls 200
            sbert_bench "$m/$t/corpus/sbert-int8" "$dir" "$t" int8 "${limit[@]}" --latency-calls 200
            ort_rate "$m/$t/corpus/ort-fp32" "$dir" "$B/$m.onnx" "$t" "${limit[@]}"
            ort_rate "$m/$t/corpus/ort-int8" "$dir" "$B/$m-int8.onnx" "$t" "${limit[@]}"
            ort_latency "$m/$t/corpus/ort-fp32" "$dir" "$B/$m.onnx" "$t"
            ort_latency "$m/$t/corpus/ort-int8" "$dir" "$B/$m-int8.onnx" "$t"
            for n in 16 64 128 256; do
                for q in fp32 int8; do
                    sbert_bench "$m/$t/seq$n/sbert-$q" "$dir" "$t" "${q/fp32/none}" --seq-len "$n" \
                        --limit "$seq_limit" --latency-calls 1
                done
                ort_rate "$m/$t/seq$n/ort-fp32" "$dir" "$B/$m.onnx" "$t" --seq-len "$n" --limit "$seq_limit"
                ort_rate "$m/$t/seq$n/ort-int8" "$dir" "$B/$m-int8.onnx" "$t" --seq-len "$n" --limit "$seq_limit"
            done
        done
        if [ "$t" = 2 ]; then
            record "minilm/2/corpus/st/rate" "$(cd "$B" && OMP_NUM_THREADS=2 venv/bin/python bench_st.py \
                throughput corpus.txt 32 1 2>/dev/null | sed -n 's/.*median=\([0-9.]*\).*/\1/p')"
            record "minilm/2/corpus/candle/rate" "$(cd "$B" && RAYON_NUM_THREADS=2 \
                candle-baseline/target/release/candle-baseline bench all-MiniLM-L6-v2 corpus.txt 32 1 1 \
                2>/dev/null | grep RESULT | sed -n 's/.*median=\([0-9.]*\).*/\1/p')"
        fi
    done
done
for q in none int8; do
    record "minilm/spearman/$q" "$("$sbert" eval sts --model "$minilm" --quantize "$q" \
        --data "$shared/data/stsb/test.tsv" 2>/dev/null | awk '$1 == "stsb-test" {print $4}')"
done

cpu="$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
PEERS_README="${PEERS_README:-1}" python3 - "$log" "$here/README.md" "$rounds" "$threads_list" "$cpu" "$(nproc)" <<'PY'
import datetime, re, statistics, sys
log, readme, rounds, threads, cpu, cores = sys.argv[1:7]
import os
vals = {}
for line in open(log):
    key, _, v = line.strip().partition(" ")
    try:
        vals.setdefault(key, []).append(float(v))
    except ValueError:
        pass
med = {k: statistics.median(v) for k, v in vals.items()}
def g(k):
    return med.get(k)
def f(v, fmt="{:.1f}"):
    return "n/a" if v is None else fmt.format(v)
def ratio(a, b):
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}×"
names = {"minilm": "all-MiniLM-L6-v2", "mpnet": "all-mpnet-base-v2"}
out = [f"Measured {datetime.date.today().isoformat()} on {cpu} ({cores} cores) with "
       f"`bash benches/peers.sh {rounds} {threads}` (median of {rounds} interleaved round(s); "
       "ratios compare runs of the same round). Corpus: STSb test, 2,758 sentences "
       "(all-mpnet-base-v2: the first 512); ONNX Runtime length-sorted, batches of 32.", "",
       "| model | threads | | sbert fp32 | ONNX Runtime fp32 | sbert / ORT | sbert int8 | ONNX Runtime int8 | sbert / ORT |",
       "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
for m in ("minilm", "mpnet"):
    for t in threads.split():
        p = f"{m}/{t}/corpus"
        a, b = g(f"{p}/sbert-fp32/rate"), g(f"{p}/ort-fp32/rate")
        c, d = g(f"{p}/sbert-int8/rate"), g(f"{p}/ort-int8/rate")
        out.append(f"| {names[m]} | {t} | corpus, sentences/s | {f(a)} | {f(b)} | {ratio(a, b)} | {f(c)} | {f(d)} | {ratio(c, d)} |")
        a, b = g(f"{p}/sbert-fp32/p50"), g(f"{p}/ort-fp32/p50")
        c, d = g(f"{p}/sbert-int8/p50"), g(f"{p}/ort-int8/p50")
        out.append(f"| {names[m]} | {t} | one sentence, p50 ms | {f(a, '{:.2f}')} | {f(b, '{:.2f}')} | {ratio(a, b)} | {f(c, '{:.2f}')} | {f(d, '{:.2f}')} | {ratio(c, d)} |")
        for n in (16, 64, 128, 256):
            p = f"{m}/{t}/seq{n}"
            a, b = g(f"{p}/sbert-fp32/rate"), g(f"{p}/ort-fp32/rate")
            c, d = g(f"{p}/sbert-int8/rate"), g(f"{p}/ort-int8/rate")
            out.append(f"| {names[m]} | {t} | {n} tokens, texts/s | {f(a)} | {f(b)} | {ratio(a, b)} | {f(c)} | {f(d)} | {ratio(c, d)} |")
out += ["", "| all-MiniLM-L6-v2, 2 threads | value |", "|---|---:|"]
bound = g("minilm/2/corpus/sbert-fp32/bound")
out.append(f"| sbert fp32, share of the FLOP bound (`sbert bench`'s own sgemm peak) | {f(None if bound is None else 100 * bound)} % |")
for k, name in (("st", "sentence-transformers"), ("candle", "naive candle loop")):
    v, s = g(f"minilm/2/corpus/{k}/rate"), g("minilm/2/corpus/sbert-fp32/rate")
    out.append(f"| {name}, sentences/s (sbert fp32 / it) | {f(v)} ({ratio(s, v)}) |")
a, b = g("minilm/spearman/none"), g("minilm/spearman/int8")
out.append(f"| STSb-test Spearman ×100, MEAN: fp32 / int8 | {f(a, '{:.2f}')} / {f(b, '{:.2f}')} |")
cmin, cmean = g("minilm/2/corpus/sbert-int8/cosmin"), g("minilm/2/corpus/sbert-int8/cosmean")
out.append(f"| cosine of int8 to fp32 embeddings over the corpus: min / mean | {f(cmin, '{:.4f}')} / {f(cmean, '{:.4f}')} |")
table = "\n".join(out)
print(table)
if os.environ.get("PEERS_README") == "1":
    text = open(readme).read()
    begin, end = "<!-- peers:begin -->", "<!-- peers:end -->"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        open(readme, "w").write(f"{head}{begin}\n{table}\n{end}{tail}")
        print(f"wrote the table into {readme}", file=sys.stderr)
    else:
        print(f"{readme} has no {begin} … {end} block; table not written", file=sys.stderr)
PY
