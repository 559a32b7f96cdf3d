"""sentence-transformers' util.semantic_search (torch cos_sim + topk in chunks) on random unit
vectors, the shapes of `cargo run --release --example search_speed` (run both in one session).

    python benches/search_torch.py [CORPUS=1000000] [QUERIES=1000] [DIM=384] [TOP_K=10] [THREADS=2]
"""
import json
import sys
import time

import torch
from sentence_transformers import util

args = [int(a) for a in sys.argv[1:]]
corpus_n, queries_n, dim, top_k, threads = (args + [1_000_000, 1000, 384, 10, 2][len(args):])[:5]
torch.set_num_threads(threads)
g = torch.Generator().manual_seed(7)
corpus = torch.nn.functional.normalize(torch.rand(corpus_n, dim, generator=g) * 2 - 1, dim=1)
queries = torch.nn.functional.normalize(torch.rand(queries_n, dim, generator=g) * 2 - 1, dim=1)
start = time.perf_counter()
hits = util.semantic_search(queries, corpus, top_k=top_k)
secs = time.perf_counter() - start
assert len(hits) == queries_n
print(json.dumps({"engine": "sentence-transformers (torch %s)" % torch.__version__, "corpus": corpus_n,
                  "queries": queries_n, "dim": dim, "top_k": top_k, "seconds": round(secs, 3),
                  "ms_per_query": round(1000 * secs / queries_n, 3)}))
