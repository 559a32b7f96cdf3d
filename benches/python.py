"""The Python package's throughput beside the CLI's, and Ray Data's with 1 and 2 actors.

    python benches/python.py SBERT_BINARY MODEL_DIR [SHARED_DIR] [RAY_SENTENCES]

Run with the Python that has the `sbert` wheel (built with `maturin build --release -m
crates/python/Cargo.toml`) and, for the Ray part, `ray[data]` installed. Prints one JSON object
per line:

- `encode`: `SentenceEmbedder.encode` on STSb test's 2,758 sentences (both columns, file
  order, 2 threads, batch 32): one warm-up pass, then the median of 5 timed passes — and
  `sbert bench` on the same file with the same settings, in the same run.
- `ray`: a Ray Data job (`from_arrow` → `map_batches(ArrowEmbedder)` → Arrow) over
  RAY_SENTENCES distinct NLI sentences (default 20,000) on a local cluster of 2 CPUs, with 1
  actor × 1 thread, 2 actors × 1 thread and 1 actor × 2 threads; wall time from submitting the
  job to having every row back (actor start and model load included), ray.init excluded.
"""

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def stsb(shared):
    lines = (shared / "data" / "stsb" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]
    out = []
    for line in lines:
        out.extend(line.split("\t")[1:3])
    return out


def nli(shared, limit):
    seen, out = set(), []
    for line in (shared / "data" / "nli" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        for s in line.split("\t")[:2]:
            if s and s not in seen:
                seen.add(s)
                out.append(s)
    return out[:limit]


def encode_beside_cli(binary, model, shared):
    from sbert import SentenceEmbedder

    texts = stsb(shared)
    m = SentenceEmbedder(model, threads=2, batch_size=32)
    m.encode(texts)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        m.encode(texts)
        times.append(time.perf_counter() - start)
    python = len(texts) / statistics.median(times)
    cli = json.loads(
        subprocess.run(
            [binary, "bench", "--model", str(model), "--input", str(shared / "data" / "stsb" / "test.tsv"),
             "--threads", "2", "--batch-size", "32", "--runs", "5", "--latency-calls", "1",
             "--format", "json"],
            check=True, capture_output=True, text=True,
        ).stdout
    )
    print(json.dumps({
        "bench": "encode", "sentences": len(texts),
        "python_sentences_per_s": round(python, 1),
        "cli_sentences_per_s": round(cli["sentences_per_s"], 1),
        "python_over_cli": round(python / cli["sentences_per_s"], 3),
    }), flush=True)


def ray_actors(model, shared, limit):
    import pyarrow as pa
    import ray

    from sbert import ArrowEmbedder

    texts = nli(shared, limit)
    table = pa.table({"id": list(range(len(texts))), "text": texts})
    blocks = [table.slice(start, 1000) for start in range(0, len(texts), 1000)]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for actors, threads in [(1, 1), (2, 1), (1, 2)]:
            start = time.perf_counter()
            ds = ray.data.from_arrow(blocks).map_batches(
                ArrowEmbedder,
                fn_constructor_kwargs={"model": str(model), "threads": threads},
                concurrency=actors,
                num_cpus=threads,
                batch_size=500,
                batch_format="pyarrow",
            )
            rows = sum(t.num_rows for t in ray.get(ds.to_arrow_refs()))
            seconds = time.perf_counter() - start
            assert rows == len(texts)
            print(json.dumps({
                "bench": "ray", "actors": actors, "threads_per_actor": threads,
                "sentences": rows, "seconds": round(seconds, 2),
                "sentences_per_s": round(rows / seconds, 1),
            }), flush=True)
    finally:
        ray.shutdown()


def main():
    binary, model = sys.argv[1], Path(sys.argv[2])
    shared = Path(sys.argv[3]) if len(sys.argv) > 3 else Path("../shared")
    limit = int(sys.argv[4]) if len(sys.argv) > 4 else 20_000
    encode_beside_cli(binary, model, shared)
    ray_actors(model, shared, limit)


if __name__ == "__main__":
    main()
