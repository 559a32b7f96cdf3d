"""Real clients against `sbert serve` on 127.0.0.1 (run by .ci/run; bounded in count and time).

- The official `openai` package and `huggingface_hub`'s InferenceClient get
  sentence-transformers' embeddings of the golden sentences (max |Δ| ≤ 1e-4).
- Many concurrent clients get what single requests get.
- A burst beyond --max-concurrent-requests gets 429s, no crash, bounded memory.
- Malformed and oversized bodies get 400 / 413; disconnects mid-request free their slots.
- SIGTERM under load: every request the server accepted is answered, and it exits 0.
- Slow and half-sent clients: slowloris closed at the header timeout, a short body 408,
  an oversized /tokenize 413, SIGTERM not held by a half-sent request.
- schemathesis against the server's own OpenAPI document: no 5xx, every response conforms.
- The Swagger UI at /docs, rendered by headless Chromium, shows every route of the document.

Usage: python clients.py SBERT_BINARY MODEL_DIR GOLDEN_JSON
"""
import concurrent.futures as futures
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
from huggingface_hub import InferenceClient
import openai
from openai import OpenAI

BINARY, MODEL, GOLDEN = sys.argv[1:4]


class Server:
    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [BINARY, "serve", "--model", MODEL, "--port", "0", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stderr.readline()
        m = re.search(r"http://([\d.]+):(\d+)", line)
        assert m, f"no listening line: {line!r}"
        self.host, self.port = m.group(1), int(m.group(2))
        self.url = f"http://{self.host}:{self.port}"
        deadline = time.time() + 120
        while self.request("GET", "/health")[0] != 200:
            assert time.time() < deadline, "server never became healthy"
            time.sleep(0.1)

    def request(self, method, path, body=None, headers=None, timeout=120):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={"content-type": "application/json", **(headers or {})})
            r = conn.getresponse()
            return r.status, r.read()
        except (ConnectionError, OSError):
            return 0, b""
        finally:
            conn.close()

    def peak_rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def check(cond, message):
    if not cond:
        raise AssertionError(message)
    print("ok:", message, flush=True)


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32))))


def main():
    golden = json.load(open(GOLDEN))
    sentences, want = golden["sentences"], np.array(golden["mean_normalized"], dtype=np.float32)

    server = Server()
    client = OpenAI(base_url=server.url + "/v1", api_key="unused")
    got = [d.embedding for d in client.embeddings.create(model="all-MiniLM-L6-v2", input=sentences).data]
    check(max_diff(got, want) <= 1e-4, f"openai client (base64 by default) equals sentence-transformers, max |Δ| {max_diff(got, want):.2e}")
    got = [d.embedding for d in client.embeddings.create(model="all-MiniLM-L6-v2", input=sentences, encoding_format="float").data]
    check(max_diff(got, want) <= 1e-4, "openai client with encoding_format=float equals sentence-transformers")
    try:
        client.embeddings.create(model="text-embedding-3-small", input="x")
        refused = False
    except openai.NotFoundError:
        refused = True
    check(refused, "openai client naming a model the server does not serve gets NotFoundError (404)")

    hf = InferenceClient(model=server.url)
    got = np.vstack([hf.feature_extraction(s) for s in sentences])
    check(max_diff(got, want) <= 1e-4, f"huggingface_hub InferenceClient.feature_extraction equals sentence-transformers, max |Δ| {max_diff(got, want):.2e}")

    # Concurrency: 64 clients at once, each a different slice; each equals the slice alone.
    slices = [sentences[i % 24:(i % 24) + 1 + i % 7] for i in range(64)]
    alone = [json.loads(server.request("POST", "/embed", {"inputs": s})[1]) for s in slices[:24]]
    with futures.ThreadPoolExecutor(64) as pool:
        together = list(pool.map(lambda s: server.request("POST", "/embed", {"inputs": s}), slices))
    check(all(st == 200 for st, _ in together), "64 concurrent clients all answered 200")
    worst = max(max_diff(json.loads(b), a) for (_, b), a in zip(together, alone))
    check(worst <= 1e-5, f"concurrent results equal single requests (max |Δ| {worst:.1e})")

    # Malformed and oversized bodies.
    check(server.request("POST", "/embed", b"{nope")[0] == 400, "malformed JSON is 400")
    check(server.request("POST", "/embed", {"inputs": [1, 2]})[0] == 422, "wrong types are 422")
    check(server.request("POST", "/embed", b'{"inputs": "' + b"x" * 3_000_000 + b'"}')[0] == 413, "a 3 MB body is 413")
    check(server.request("POST", "/embed", {"inputs": ["a"] * 33})[0] == 413, "33 inputs (limit 32) is 413")

    # Disconnects mid-request: the slots come back (in-flight returns to 0).
    long = "the quick brown fox jumps over the lazy dog " * 40
    for _ in range(8):
        s = socket.create_connection((server.host, server.port))
        body = json.dumps({"inputs": [long] * 32}).encode()
        s.sendall(b"POST /embed HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        s.close()
    deadline = time.time() + 60
    while True:
        metrics = server.request("GET", "/metrics")[1].decode()
        in_flight = int(re.search(r"^sbert_requests_in_flight (\d+)$", metrics, re.M).group(1))
        if in_flight == 0 or time.time() > deadline:
            break
        time.sleep(0.2)
    check(in_flight == 0, "8 clients that disconnected mid-request left no slot taken")
    check(server.request("GET", "/health")[0] == 200, "healthy after disconnects")

    # The Swagger UI at /docs, rendered by a headless browser (Debian's chromium, which .ci/run
    # installs), lists every route of the document the server serves.
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    check(chromium is not None, "chromium is installed (apt-get install chromium)")
    doc = json.loads(server.request("GET", "/openapi.json")[1])
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=30000",
         "--dump-dom", server.url + "/docs/"],
        capture_output=True, text=True, timeout=180,
    ).stdout
    shown = set(re.findall(r'data-path="([^"]+)"', dom))
    missing = sorted(set(doc["paths"]) - shown)
    check(len(doc["paths"]) >= 10 and not missing,
          f"the Swagger UI at /docs shows all {len(doc['paths'])} routes (missing: {missing}; DOM {len(dom)} bytes)")

    # schemathesis: property-based requests from the server's own OpenAPI document.
    st = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "schemathesis"),
         "--config-file", os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemathesis.toml"),
         "run", server.url + "/openapi.json",
         "--checks", "all", "--max-examples", "30", "--workers", "1", "--seed", "1"],
        capture_output=True, text=True, timeout=600,
    )
    tail = st.stdout[-1500:]
    check(st.returncode == 0, f"schemathesis: no 5xx, every response matches the schema\n{tail}")
    check(server.stop() == 0, "SIGTERM with no load exits 0")

    # A burst beyond the queue: 4 slots, 64 clients with long batches.
    server = Server("--max-concurrent-requests", "4")
    with futures.ThreadPoolExecutor(64) as pool:
        statuses = [st for st, _ in pool.map(lambda _: server.request("POST", "/embed", {"inputs": [long] * 16}), range(64))]
    counts = {s: statuses.count(s) for s in set(statuses)}
    check(set(counts) <= {200, 429} and counts.get(429, 0) > 0 and counts.get(200, 0) >= 4, f"a burst of 64 on 4 slots: {counts}")
    rss = server.peak_rss_mib()
    check(rss < 1024, f"peak RSS after the burst {rss:.0f} MiB")
    check(server.request("GET", "/health")[0] == 200, "healthy after the burst")

    # SIGTERM under load: every accepted request is answered.
    with futures.ThreadPoolExecutor(16) as pool:
        pending = [pool.submit(server.request, "POST", "/embed", {"inputs": [long] * 8}) for _ in range(16)]
        time.sleep(0.3)
        code = server.stop()
        statuses = [f.result()[0] for f in pending]
    check(code == 0, "SIGTERM under load exits 0")
    # All 16 were sent 0.3 s before the signal, so all were accepted: none may go unanswered (0).
    check(all(s in (200, 429) for s in statuses) and 200 in statuses, f"every accepted request answered at SIGTERM: {statuses}")

    # Slow and half-sent clients: a slowloris connection is closed at --header-timeout, a
    # short body gets 408 at --body-timeout, and SIGTERM does not wait on a half-sent request
    # longer than --drain-timeout.
    server = Server("--header-timeout", "1", "--body-timeout", "1", "--drain-timeout", "2")
    slow = socket.create_connection((server.host, server.port))
    slow.sendall(b"POST /embed HTTP/1.1\r\nhost: t\r\n")
    slow.settimeout(10)
    started = time.time()
    closed = slow.recv(1024) is not None
    check(closed and time.time() - started < 5, f"slowloris closed after {time.time() - started:.1f} s (--header-timeout 1)")
    short = socket.create_connection((server.host, server.port))
    short.sendall(b"POST /embed HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
    short.settimeout(10)
    check(short.recv(1024).startswith(b"HTTP/1.1 408"), "a body shorter than its Content-Length gets 408 (--body-timeout 1)")
    check(server.request("POST", "/tokenize", {"inputs": ["a"] * 33})[0] == 413, "/tokenize with 33 inputs (limit 32) is 413")
    held = socket.create_connection((server.host, server.port))
    held.sendall(b"POST /embed HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
    started = time.time()
    code = server.stop()
    check(code == 0 and time.time() - started < 10, f"SIGTERM with a half-sent request exits 0 after {time.time() - started:.1f} s")
    for s in (slow, short, held):
        s.close()


if __name__ == "__main__":
    main()
