"""What the Python benchmarks share: the STSb-test corpus and a timer."""
import csv
import os
import statistics
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("SBERT_SHARED_DIR", os.path.join(ROOT, "..", "shared"))


def stsb_test_sentences():
    """Both sentences of every STSb-test row, in file order (repeats kept)."""
    with open(os.path.join(SHARED, "data", "stsb", "test.tsv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [s for r in rows for s in (r["sentence1"], r["sentence2"])]


def median_seconds(call, n):
    """The median wall time of `n` calls of `call`."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return statistics.median(times)
