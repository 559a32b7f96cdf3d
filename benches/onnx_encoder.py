"""ONNX Runtime peer for any sentence-transformers folder whose encoder `transformers` exports
(BERT, MPNet, XLM-RoBERTa, DistilBERT, …): export the Transformer module to ONNX, then embed a
corpus with onnxruntime (2 intra-op threads, all graph optimizations), length-sorted batches,
the model's pooling (MEAN) and L2 normalization in numpy.

Usage:
  python onnx_encoder.py export MODEL_DIR OUT.onnx
  python onnx_encoder.py throughput MODEL_DIR MODEL.onnx CORPUS.txt BATCH REPS [EMB_OUT.npy]
Prints one `RESULT ort … median=N sent/s` line (the format benches/peers.sh parses).
"""
import json
import os
import statistics
import sys
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


def max_seq_length(model_dir):
    cfg = os.path.join(model_dir, "sentence_bert_config.json")
    if os.path.exists(cfg):
        n = json.load(open(cfg)).get("max_seq_length")
        if n:
            return n
    return json.load(open(os.path.join(model_dir, "tokenizer_config.json")))["model_max_length"]


def throughput(model_dir, onnx_path, corpus_path, batch, reps, save=None):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    pad = json.load(open(os.path.join(model_dir, "config.json"))).get("pad_token_id", 0)
    tok.enable_truncation(max_seq_length(model_dir))
    tok.enable_padding(pad_id=pad)
    corpus = open(corpus_path, encoding="utf-8").read().split("\n")
    corpus = [s.strip() for s in (corpus[:-1] if corpus[-1] == "" else corpus)]
    order = sorted(range(len(corpus)), key=lambda i: -len(corpus[i]))

    def run():
        out = None
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            encs = tok.encode_batch([corpus[i] for i in idx])
            ids = np.array([e.ids for e in encs], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
            h = sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            m = mask[:, :, None].astype(np.float32)
            mean = (h * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
            if out is None:
                out = np.empty((len(corpus), mean.shape[1]), dtype=np.float32)
            out[idx] = mean
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    run()  # warm-up
    rates = []
    for _ in range(reps):
        t = time.perf_counter()
        emb = run()
        rates.append(len(corpus) / (time.perf_counter() - t))
    if save:
        np.save(save, emb)
    print(f"RESULT ort batch={batch} n={len(corpus)} median={statistics.median(rates):.2f} sent/s")


if __name__ == "__main__":
    if sys.argv[1] == "export":
        export(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "throughput":
        throughput(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]),
                   sys.argv[7] if len(sys.argv) > 7 else None)
