"""Throughput and latency through `sbert serve`, beside the in-process `sbert bench`, in one run.

    python3 benches/server.py [ROUNDS] [THREADS]      (default 2 rounds, 2 threads)

Corpus: the 2,758 sentences of STSb test (what `sbert bench` reads by default). Each round runs
the in-process bench, then the server (release build, --threads THREADS): 8 clients, each on
its own keep-alive connection, send the corpus in file order as batches of 32 to
/v1/embeddings (base64, as the openai package asks by default); then single-sentence requests
at concurrency 1, 8 and 64 for p50/p99 latency. Reports the medians over rounds, the ratio of
server to in-process throughput, and the server's peak RSS. Standard library only.
"""
import base64
import concurrent.futures as futures
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import time

from bench_common import stsb_test_sentences

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(HERE, "target", "release", "sbert")
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 2
THREADS = sys.argv[2] if len(sys.argv) > 2 else "2"
SENTENCE = "A man is playing a guitar."


class Client:
    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def post(self, path, body):
        self.conn.request("POST", path, body=json.dumps(body), headers={"content-type": "application/json"})
        r = self.conn.getresponse()
        data = r.read()
        assert r.status == 200, (r.status, data[:200])
        return data


def start_server():
    proc = subprocess.Popen(
        [BINARY, "serve", "--port", "0", "--threads", THREADS, "--max-client-batch-size", "32"],
        cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    port = int(re.search(r":(\d+) ", proc.stderr.readline()).group(1))
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                break
        except OSError:
            pass
        time.sleep(0.1)
    return proc, port


def throughput(port, texts, clients=8, batch=32):
    batches = [texts[i:i + batch] for i in range(0, len(texts), batch)]
    per_client = [batches[k::clients] for k in range(clients)]

    def run(mine):
        c = Client(port)
        for b in mine:
            reply = json.loads(c.post("/v1/embeddings", {"input": b, "encoding_format": "base64"}))
            assert len(reply["data"]) == len(b)
            base64.b64decode(reply["data"][0]["embedding"])

    start = time.perf_counter()
    with futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, per_client))
    return len(texts) / (time.perf_counter() - start)


def latency(port, concurrency, total=200):
    def run(n):
        c = Client(port)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            c.post("/embed", {"inputs": SENTENCE})
            times.append((time.perf_counter() - t) * 1000)
        return times

    per = max(1, total // concurrency)
    with futures.ThreadPoolExecutor(concurrency) as pool:
        times = sorted(t for ts in pool.map(run, [per] * concurrency) for t in ts)
    return times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM:"))


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "sbert-cli"], cwd=HERE, check=True)
    texts = stsb_test_sentences()
    results = {"in_process": [], "server": [], "rss": []}
    lat = {c: [] for c in (1, 8, 64)}
    for r in range(ROUNDS):
        bench = subprocess.run(
            [BINARY, "bench", "--threads", THREADS, "--runs", "3", "--latency-calls", "20", "--format", "json"],
            cwd=HERE, capture_output=True, text=True, check=True,
        )
        results["in_process"].append(json.loads(bench.stdout)["sentences_per_s"])
        proc, port = start_server()
        throughput(port, texts[:256])  # warm-up
        results["server"].append(statistics.median(throughput(port, texts) for _ in range(3)))
        for c in lat:
            lat[c].append(latency(port, c))
        results["rss"].append(peak_rss_mib(proc.pid))
        proc.terminate()
        proc.wait()
        print(f"round {r + 1}: in-process {results['in_process'][-1]:.1f}/s, server {results['server'][-1]:.1f}/s", file=sys.stderr)
    inproc, server = statistics.median(results["in_process"]), statistics.median(results["server"])
    print(json.dumps({
        "sentences": len(texts),
        "threads": int(THREADS),
        "in_process_sentences_per_s": round(inproc, 1),
        "server_8x32_sentences_per_s": round(server, 1),
        "ratio": round(server / inproc, 3),
        "latency_ms": {str(c): {"p50": round(statistics.median(p[0] for p in v), 2),
                                 "p99": round(statistics.median(p[1] for p in v), 2)} for c, v in lat.items()},
        "server_peak_rss_mib": round(max(results["rss"]), 1),
    }, indent=1))


if __name__ == "__main__":
    main()
