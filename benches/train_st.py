"""sentence-transformers' side of the losses table (README, docs/training.md): trains a model
with one of its losses under the settings `sbert train` uses by default (AdamW lr 2e-5, weight
decay 0.01, linear warm-up over 10 % of the steps, gradient clipping at 1, batch 16, 1 epoch,
shuffle seeded 42), then prints one JSON line: pairs/s of the training loop and the saved
model's STSb-test Spearman (cosine × 100), also at --truncate-dim widths.

    python benches/train_st.py --loss cosent --model models/all-MiniLM-L6-v2 \
        --train ../shared/data/stsb/train.tsv --sts-test ../shared/data/stsb/test.tsv

Losses: cosine, cosent, angle (scored pairs), mnrl (query, positive pairs, or an NLI file's
entailment pairs), and any of them wrapped in MatryoshkaLoss with --matryoshka-dims.
Needs: sentence-transformers (6.3.0 used), torch, scipy. CPU only, 2 threads unless --threads.
"""
import argparse
import csv
import json
import math
import os
import random
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch
from scipy.stats import spearmanr
from sentence_transformers import InputExample, SentenceTransformer
from sentence_transformers.sentence_transformer import losses
from torch.utils.data import DataLoader


def rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        r = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(r)
        return [row for row in r if row]


def examples(args):
    data = rows(args.train)
    if args.loss in ("cosine", "cosent", "angle"):
        scale = 5.0 if args.loss == "cosine" else 1.0
        out = [InputExample(texts=[r[1], r[2]], label=float(r[0]) / scale) for r in data]
    elif data and data[0][-1] in ("entailment", "neutral", "contradiction"):
        out = [InputExample(texts=[r[0], r[1]]) for r in data if r[2] == "entailment"]
    else:
        out = [InputExample(texts=r[:3]) for r in data]
    return out[: args.limit] if args.limit else out


def spearman(model, path, dim=None):
    data = rows(path)
    a = model.encode([r[1] for r in data], batch_size=64, truncate_dim=dim)
    b = model.encode([r[2] for r in data], batch_size=64, truncate_dim=dim)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return 100.0 * spearmanr(cos, [float(r[0]) for r in data]).correlation


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--loss", required=True, choices=["cosine", "cosent", "angle", "mnrl"])
    p.add_argument("--model", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--sts-test")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int)
    p.add_argument("--matryoshka-dims")
    p.add_argument("--truncate-dim", type=int, action="append", default=[])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output")
    p.add_argument("--order-out", help="write the batch order (0-based example indices, one "
                   "per line) for `sbert train --order`")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    random.seed(42)
    np.random.seed(42)
    torch.manual_seed(42)

    model = SentenceTransformer(args.model, device="cpu")
    train = examples(args)
    loss = {
        "cosine": lambda: losses.CosineSimilarityLoss(model),
        "cosent": lambda: losses.CoSENTLoss(model),
        "angle": lambda: losses.AnglELoss(model),
        "mnrl": lambda: losses.MultipleNegativesRankingLoss(model),
    }[args.loss]()
    if args.matryoshka_dims:
        loss = losses.MatryoshkaLoss(model, loss, [int(d) for d in args.matryoshka_dims.split(",")])
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(42)).tolist()
    if args.order_out:
        with open(args.order_out, "w") as f:
            f.write("".join(f"{i}\n" for i in order))
    loader = DataLoader(train, batch_size=args.batch_size, sampler=order)
    steps = len(loader)
    t = time.time()
    model.old_fit(train_objectives=[(loader, loss)], epochs=1, warmup_steps=math.ceil(0.1 * steps),
                  optimizer_params={"lr": 2e-5}, weight_decay=0.01, max_grad_norm=1.0,
                  show_progress_bar=False, scheduler="WarmupLinear")
    seconds = time.time() - t
    model.eval()
    if args.output:
        model.save(args.output)
    result = {"loss": args.loss, "matryoshka_dims": args.matryoshka_dims, "pairs": len(train),
              "steps": steps, "train_seconds": round(seconds, 2),
              "pairs_per_second": round(len(train) / seconds, 2)}
    if args.sts_test:
        result["stsb_test"] = round(spearman(model, args.sts_test), 2)
        for d in args.truncate_dim:
            result[f"stsb_test@{d}"] = round(spearman(model, args.sts_test, d), 2)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
