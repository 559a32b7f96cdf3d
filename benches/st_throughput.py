"""sentence-transformers' throughput on one device, for benches/gpu.sh.

Usage: python benches/st_throughput.py MODEL_DIR CORPUS.txt [--device cuda] [--dtype f32|f16]
       [--batch 32] [--runs 3]

Encodes the corpus (one text per line) with SentenceTransformer.encode, batches of 32 as its
default, to tensors on the device (no copy back to the host), after one warm-up pass; prints
one JSON object: {"sentences_per_s": median over the runs, "runs": [...], "device", "dtype"}.
"""
import argparse
import json
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from sentence_transformers import SentenceTransformer


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model_dir")
    p.add_argument("corpus")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", choices=["f32", "f16"], default="f32")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    with open(a.corpus, encoding="utf-8") as f:
        corpus = [line.rstrip("\n") for line in f if line.strip()]
    model = SentenceTransformer(a.model_dir, device=a.device)
    if a.dtype == "f16":
        model.half()
    model.eval()

    def run():
        emb = model.encode(corpus, batch_size=a.batch, convert_to_tensor=True,
                           show_progress_bar=False)
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        return emb

    run()  # warm-up
    rates = []
    for _ in range(a.runs):
        t = time.perf_counter()
        run()
        rates.append(len(corpus) / (time.perf_counter() - t))
    print(json.dumps({"sentences_per_s": statistics.median(rates), "runs": rates,
                      "device": a.device, "dtype": a.dtype}))


if __name__ == "__main__":
    main()
