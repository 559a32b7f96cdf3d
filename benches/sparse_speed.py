"""SPLADE-tiny: sbert's SparseEncoder against sentence-transformers' on the STSb-test
sentences, 2 threads, in one process.

Checks first that both give the same embeddings (max |Δ| over all 30,522 dimensions), then
rounds of, interleaved: each library's `encode` of the corpus (median of 3 calls) and of one
sentence (median of 50 calls). Prints one Markdown table of medians over rounds.

Usage: python benches/sparse_speed.py [ROUNDS]   (default 3; a Python with torch,
sentence-transformers and the sbert wheel; models/fetch.sh splade-tiny installs the model)
"""
import os
import statistics
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np
import sentence_transformers
import torch
from sentence_transformers import SparseEncoder as StSparseEncoder

import sbert
from bench_common import median_seconds, stsb_test_sentences

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
MODEL = os.path.join(ROOT, "models", "splade-tiny")
torch.set_num_threads(2)


def main():
    texts = stsb_test_sentences()
    st = StSparseEncoder(MODEL, device="cpu")
    ours = sbert.SparseEncoder(MODEL)
    sample = texts[:256]
    want = st.encode(sample, convert_to_tensor=True).to_dense().numpy()
    indptr, indices, values, shape = ours.encode(sample)
    got = np.zeros(shape, dtype=np.float32)
    for i in range(shape[0]):
        got[i, indices[indptr[i]:indptr[i + 1]]] = values[indptr[i]:indptr[i + 1]]
    diff = float(np.abs(got - want).max())
    assert diff <= 1e-4, diff
    one = [texts[0]]
    results = {"st": [], "sbert": [], "st1": [], "sbert1": []}
    for _ in range(ROUNDS):
        results["st"].append(median_seconds(lambda: st.encode(texts, batch_size=32), 3))
        results["sbert"].append(median_seconds(lambda: ours.encode(texts), 3))
        results["st1"].append(median_seconds(lambda: st.encode(one), 50))
        results["sbert1"].append(median_seconds(lambda: ours.encode(one), 50))
    m = {k: statistics.median(v) for k, v in results.items()}
    n = len(texts)
    print(f"{n} STSb-test sentences; max |Δ| {diff:.1e} over 30,522 dimensions (first 256); "
          f"{ROUNDS} rounds, 2 threads\n")
    print("| SPLADE-tiny, STSb test | sentences/s (median) | one sentence, p50 |")
    print("|---|---:|---:|")
    print(f"| sbert `SparseEncoder.encode` | {n / m['sbert']:,.0f} | {m['sbert1'] * 1e3:.2f} ms |")
    print(f"| sentence-transformers {sentence_transformers.__version__} `SparseEncoder.encode` | "
          f"{n / m['st']:,.0f} | {m['st1'] * 1e3:.2f} ms |")
    print(f"| sbert / sentence-transformers | {m['st'] / m['sbert']:.2f}× | {m['st1'] / m['sbert1']:.2f}× |")


if __name__ == "__main__":
    main()
