"""ONNX Runtime peer for any sentence-transformers folder whose encoder `transformers` exports
(BERT, MPNet, XLM-RoBERTa, DistilBERT, …): export the Transformer module to ONNX, quantize it
(dynamic int8, per-channel weights, as ../shared/tools/baselines/bench_ort.py does), then embed
with onnxruntime (T intra-op threads, all graph optimizations), length-sorted batches, MEAN
pooling and L2 normalization in numpy.

Usage:
  python onnx_encoder.py export MODEL_DIR OUT.onnx
  python onnx_encoder.py quantize MODEL.onnx OUT-int8.onnx
  python onnx_encoder.py throughput MODEL_DIR MODEL.onnx CORPUS.txt BATCH REPS
         [--threads T] [--limit N] [--seq-len N] [--save EMB.npy]
  python onnx_encoder.py latency MODEL_DIR MODEL.onnx CALLS "sentence" [--threads T]

`--seq-len N` builds the inputs as `sbert bench --seq-len N` does: each corpus sentence joined
with the ones after it until the text is 8·N characters long, truncated at N tokens; `--limit`
then keeps the first texts. Prints one `RESULT … median=N sent/s` or `RESULT … p50_ms=X` line
(the format benches/peers.sh parses).
"""
import argparse
import json
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np


def export(model_dir, out_path):
    import torch
    from transformers import AutoModel

    torch.set_num_threads(2)
    m = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    ids = torch.tensor([[0, 7, 8, 2, 1], [0, 7, 8, 9, 2]], dtype=torch.int64)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.int64)

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    axes = {0: "batch", 1: "seq"}
    with torch.no_grad():
        torch.onnx.export(Wrap(m), (ids, mask), out_path, dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask"],
                          output_names=["last_hidden_state"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                        "last_hidden_state": axes})
    print("exported", out_path, os.path.getsize(out_path), "bytes")


def quantize(onnx_path, out_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(onnx_path, out_path, weight_type=QuantType.QInt8, per_channel=True)
    print("quantized", out_path, os.path.getsize(out_path), "bytes")


def max_seq_length(model_dir):
    cfg = os.path.join(model_dir, "sentence_bert_config.json")
    if os.path.exists(cfg):
        n = json.load(open(cfg)).get("max_seq_length")
        if n:
            return n
    return json.load(open(os.path.join(model_dir, "tokenizer_config.json")))["model_max_length"]


class Encoder:
    def __init__(self, model_dir, onnx_path, threads, max_len=None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        self.in_names = {i.name for i in self.sess.get_inputs()}
        tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        pad = json.load(open(os.path.join(model_dir, "config.json"))).get("pad_token_id", 0)
        tok.enable_truncation(max_len or max_seq_length(model_dir))
        tok.enable_padding(pad_id=pad)
        self.tok = tok

    def embed_batch(self, texts):
        encs = self.tok.encode_batch(list(texts))
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.in_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        h = self.sess.run(None, feeds)[0]
        m = mask[:, :, None].astype(np.float32)
        return (h * m).sum(1) / np.clip(m.sum(1), 1e-9, None)

    def embed(self, texts, batch):
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = None
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            mean = self.embed_batch([texts[i] for i in idx])
            if out is None:
                out = np.empty((len(texts), mean.shape[1]), dtype=np.float32)
            out[idx] = mean
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def read_corpus(path, limit=None, seq_len=None):
    corpus = open(path, encoding="utf-8").read().split("\n")
    corpus = [s.strip() for s in (corpus[:-1] if corpus[-1] == "" else corpus)]
    if seq_len:
        joined = []
        for i in range(len(corpus)):
            text, j = "", i
            while len(text) < seq_len * 8:
                text += corpus[j % len(corpus)] + " "
                j += 1
            joined.append(text)
        corpus = joined
    return corpus[:limit] if limit else corpus


def throughput(a):
    enc = Encoder(a.model_dir, a.onnx, a.threads, a.seq_len)
    texts = read_corpus(a.corpus, a.limit, a.seq_len)
    enc.embed(texts[:a.batch], a.batch)  # warm-up
    rates = []
    for _ in range(a.reps):
        t = time.perf_counter()
        emb = enc.embed(texts, a.batch)
        rates.append(len(texts) / (time.perf_counter() - t))
    if a.save:
        np.save(a.save, emb)
    print(f"RESULT ort threads={a.threads} batch={a.batch} n={len(texts)} "
          f"median={statistics.median(rates):.2f} sent/s")


def latency(a):
    enc = Encoder(a.model_dir, a.onnx, a.threads)
    for _ in range(10):
        enc.embed([a.sentence], 1)
    ts = []
    for _ in range(a.calls):
        t = time.perf_counter()
        enc.embed([a.sentence], 1)
        ts.append((time.perf_counter() - t) * 1e3)
    ts.sort()
    print(f"RESULT ort latency threads={a.threads} n={a.calls} p50_ms={statistics.median(ts):.3f} "
          f"p90_ms={ts[int(0.9 * (a.calls - 1))]:.3f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("model_dir")
    e.add_argument("out")
    q = sub.add_parser("quantize")
    q.add_argument("onnx")
    q.add_argument("out")
    t = sub.add_parser("throughput")
    for name in ("model_dir", "onnx", "corpus"):
        t.add_argument(name)
    t.add_argument("batch", type=int)
    t.add_argument("reps", type=int)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--limit", type=int)
    t.add_argument("--seq-len", type=int)
    t.add_argument("--save")
    lat = sub.add_parser("latency")
    lat.add_argument("model_dir")
    lat.add_argument("onnx")
    lat.add_argument("calls", type=int)
    lat.add_argument("sentence")
    lat.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    if a.cmd == "export":
        export(a.model_dir, a.out)
    elif a.cmd == "quantize":
        quantize(a.onnx, a.out)
    elif a.cmd == "throughput":
        throughput(a)
    else:
        latency(a)


if __name__ == "__main__":
    main()
