"""Reranking 100 documents: sbert's CrossEncoder against sentence-transformers' on the same
folder (all-MiniLM-L6-v2's weights under a 1-label classifier, as
models/rerankers/generate.py builds it), 2 threads, in one process.

A query and 100 documents from STSb test (the first 101 distinct sentences); rounds of,
interleaved: each library's `rank(query, documents)` (median of 5 calls) and one pair's
`predict` (median of 20 calls). Checks first that both give the same ranking and scores within
1e-4. Prints one Markdown table of medians over rounds.

Usage: python benches/rerank_speed.py [ROUNDS]   (default 3; a Python with torch,
sentence-transformers and the sbert wheel; models/fetch.sh installs all-MiniLM-L6-v2)
"""
import math
import os
import shutil
import statistics
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from sentence_transformers import CrossEncoder as StCrossEncoder
from transformers import AutoTokenizer, BertForSequenceClassification

import sbert
from bench_common import median_seconds, stsb_test_sentences

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
MINILM = os.path.join(ROOT, "models", "all-MiniLM-L6-v2")
torch.set_num_threads(2)


def folder(out):
    model = BertForSequenceClassification.from_pretrained(MINILM, num_labels=1)
    h = model.config.hidden_size
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor(
            [[0.1 * math.sin(0.37 * j + 1.0) for j in range(h)]], dtype=torch.float32))
        model.classifier.bias.copy_(torch.tensor([0.05 * math.sin(1.0)]))
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(MINILM).save_pretrained(out)


def texts():
    seen = []
    for s in stsb_test_sentences():
        if s not in seen:
            seen.append(s)
        if len(seen) == 101:
            break
    return seen[0], seen[1:101]


def main():
    tmp = tempfile.mkdtemp()
    try:
        folder(tmp)
        query, docs = texts()
        st = StCrossEncoder(tmp, device="cpu")
        ours = sbert.CrossEncoder(tmp)
        a = st.rank(query, docs)
        b = ours.rank(query, docs)
        assert [x["corpus_id"] for x in a] == [x["corpus_id"] for x in b], "rankings differ"
        diff = max(abs(x["score"] - y["score"]) for x, y in zip(a, b))
        assert diff <= 1e-4, diff
        pair = [(query, docs[0])]
        results = {"st": [], "sbert": [], "st1": [], "sbert1": []}
        for _ in range(ROUNDS):
            results["st"].append(median_seconds(lambda: st.rank(query, docs), 5))
            results["sbert"].append(median_seconds(lambda: ours.rank(query, docs), 5))
            results["st1"].append(median_seconds(lambda: st.predict(pair), 20))
            results["sbert1"].append(median_seconds(lambda: ours.predict(pair), 20))
        m = {k: statistics.median(v) for k, v in results.items()}
        print(f"same ranking of 100 documents, max |Δ| {diff:.1e}; {ROUNDS} rounds, 2 threads\n")
        print("| reranking 100 STSb documents, MiniLM-L6 cross-encoder | ms per query (median) | documents/s | one pair, p50 |")
        print("|---|---:|---:|---:|")
        for key, name in [("sbert", "sbert `CrossEncoder.rank`"), ("st", f"sentence-transformers {__import__('sentence_transformers').__version__} `CrossEncoder.rank`")]:
            print(f"| {name} | {m[key] * 1e3:.1f} | {100 / m[key]:,.0f} | {m[key + '1'] * 1e3:.2f} ms |")
        print(f"| sbert / sentence-transformers | {m['st'] / m['sbert']:.2f}× | | {m['st1'] / m['sbert1']:.2f}× |")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
