"""Static embeddings against a transformer, on the 2,758 sentences of STSb test, 2 threads.

Rounds of, interleaved: `sbert bench` on potion-base-8M (model2vec's static table) and on
all-MiniLM-L6-v2 (throughput, median of 3 runs each), and, when the `model2vec` package is
importable, model2vec's own `StaticModel.encode` of the same corpus (median of 3 runs). Prints
one Markdown table of medians over rounds, with each speed as a multiple of MiniLM's.

Usage: python3 benches/static_speed.py [ROUNDS] [SBERT_BINARY]   (defaults: 2, target/release/sbert)
The model2vec column needs `pip install model2vec`; `models/fetch.sh potion-base-8M` installs
the model.
"""
import json
import os
import statistics
import subprocess
import sys
import time

from bench_common import stsb_test_sentences

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 2
BINARY = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "target", "release", "sbert")
POTION = os.path.join(ROOT, "models", "potion-base-8M")
MINILM = os.path.join(ROOT, "models", "all-MiniLM-L6-v2")


def sbert_bench(model):
    out = subprocess.run(
        [BINARY, "bench", "-m", model, "--threads", "2", "--runs", "3", "--latency-calls", "50",
         "--format", "json"],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout)


def model2vec_speed(texts):
    try:
        from model2vec import StaticModel
    except ImportError:
        return None
    model = StaticModel.from_pretrained(POTION)
    model.encode(texts[:256])
    times = []
    for _ in range(3):
        start = time.perf_counter()
        model.encode(texts, batch_size=1024)
        times.append(time.perf_counter() - start)
    return len(texts) / statistics.median(times)


def main():
    os.environ.setdefault("RAYON_NUM_THREADS", "2")
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    texts = stsb_test_sentences()
    results = {"potion": [], "minilm": [], "model2vec": [], "potion_p50": [], "minilm_p50": []}
    for r in range(ROUNDS):
        p = sbert_bench(POTION)
        m = sbert_bench(MINILM)
        results["potion"].append(p["sentences_per_s"])
        results["potion_p50"].append(p["p50_ms"])
        results["minilm"].append(m["sentences_per_s"])
        results["minilm_p50"].append(m["p50_ms"])
        speed = model2vec_speed(texts)
        if speed is not None:
            results["model2vec"].append(speed)
        print(f"round {r + 1}: potion {p['sentences_per_s']:.0f}/s, MiniLM {m['sentences_per_s']:.0f}/s"
              + (f", model2vec {speed:.0f}/s" if speed else ""), file=sys.stderr)
    med = {k: statistics.median(v) for k, v in results.items() if v}
    print(f"| STSb test, {len(texts):,} sentences, 2 threads | sentences/s (median of {ROUNDS} rounds) | × MiniLM | one sentence, p50 |")
    print("|---|---:|---:|---:|")
    print(f"| sbert, all-MiniLM-L6-v2 | {med['minilm']:,.0f} | 1× | {med['minilm_p50']:.2f} ms |")
    print(f"| sbert, potion-base-8M (static) | {med['potion']:,.0f} | {med['potion'] / med['minilm']:.0f}× | {med['potion_p50']:.3f} ms |")
    if "model2vec" in med:
        print(f"| model2vec {model2vec_version()} `encode`, potion-base-8M | {med['model2vec']:,.0f} | {med['model2vec'] / med['minilm']:.0f}× | |")


def model2vec_version():
    import model2vec

    return getattr(model2vec, "__version__", "")


if __name__ == "__main__":
    main()
