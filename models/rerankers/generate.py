"""Generates the cross-encoder (reranker) checkpoints of models/rerankers/ and the fixture of a
reranker built on all-MiniLM-L6-v2's real weights, with sentence-transformers' CrossEncoder
scores (tests/rerank.rs compares ours to them within 1e-5).

No cross-encoder ships on a registry here, so each is an encoder with real or seeded weights
under a sequence-classification head with seeded weights:

- `models/rerankers/{bert,xlm-roberta,distilbert}/`: the seeded encoders of models/tiny and
  models/families under BertForSequenceClassification (1 label: BERT's tanh pooler, then the
  classifier), XLMRobertaForSequenceClassification (3 labels: dense, tanh, out_proj on <s>) and
  DistilBertForSequenceClassification (1 label: pre_classifier, ReLU, classifier), heads seeded,
  saved by `CrossEncoder.save` (sentence-transformers 6's folder: modules.json with one
  Transformer of task `sequence-classification`), each with `fixture.json`.
- `tests/fixtures/golden_rerank.json`: all-MiniLM-L6-v2 (models/fetch.sh) under
  BertForSequenceClassification with 1 and 3 labels, the classifier given by a formula
  (`head_value`) that the Rust test repeats to build the same folder, in transformers' plain
  format (config.json `architectures`, no modules.json); scores with the default activation
  (sigmoid for 1 label, none for 3), raw logits, and `rank`.

Usage: python models/rerankers/generate.py   (deterministic)
Needs: sentence-transformers 6.3.0, transformers, torch.
"""
import json
import math
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from sentence_transformers import CrossEncoder
from transformers import (
    AutoTokenizer,
    BertForSequenceClassification,
    DistilBertForSequenceClassification,
    XLMRobertaForSequenceClassification,
)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
torch.set_num_threads(2)

# Queries and passages written for these tests (not from a dataset the models were tuned on).
PAIRS = [
    ("How do I renew my passport?", "Passport renewals can be filed online or at a post office with a recent photo."),
    ("How do I renew my passport?", "The museum opens at nine and closes at five on weekdays."),
    ("what causes tides", "Tides are caused mainly by the gravitational pull of the moon on the oceans."),
    ("what causes tides", "A tidy desk helps some people concentrate on their work."),
    ("Wer hat das Telefon erfunden?", "Alexander Graham Bell erhielt 1876 ein Patent für das Telefon."),
    ("best way to store fresh basil", "Keep basil stems in a glass of water on the counter, loosely covered."),
    ("best way to store fresh basil", ""),
    ("", "An empty query still forms a pair."),
    ("symptoms of dehydration",
     "Thirst, dark urine, fatigue, dizziness and confusion are common signs that the body lacks water; "
     "in children, fewer wet diapers and no tears when crying are also warning signs, and severe cases "
     "need medical attention right away because they can lead to heat injury, seizures or kidney problems."),
    ("Le chat dort-il sur le canapé ?", "Oui, le chat dort sur le canapé depuis ce matin."),
]
QUERY = "how do vaccines train the immune system"
DOCUMENTS = [
    "Vaccines expose the immune system to a harmless piece of a pathogen so it learns to recognize it.",
    "The train to the coast leaves every hour from platform four.",
    "Antibodies and memory cells formed after vaccination respond faster to a later infection.",
    "Immune is an adjective meaning protected or exempt.",
    "Fresh basil keeps best at room temperature.",
]


def head_value(k, scale=0.1):
    """The `k`-th value (row-major) of a seeded classifier weight: 0.1 · sin(0.37 k + 1)."""
    return scale * math.sin(0.37 * k + 1.0)


def scores(ce):
    """What the fixture holds of a CrossEncoder: tokens, scores, logits, a ranking."""
    pairs = [list(p) for p in PAIRS]
    # Batched, as predict tokenizes (an empty second text stays a pair there).
    enc = [ce.tokenizer([q], [d], truncation=True, max_length=ce.max_seq_length) for q, d in PAIRS]
    enc = [{k: v[0] for k, v in e.items()} for e in enc]
    return {
        "max_length": ce.max_seq_length,
        "num_labels": ce.num_labels,
        "pairs": pairs,
        "input_ids": [e["input_ids"] for e in enc],
        "token_type_ids": [e.get("token_type_ids", [0] * len(e["input_ids"])) for e in enc],
        "scores": ce.predict(pairs, batch_size=4).tolist(),
        "logits": ce.predict(pairs, batch_size=4, activation_fn=torch.nn.Identity()).tolist(),
        "query": QUERY,
        "documents": DOCUMENTS,
        "rank": [{"corpus_id": int(r["corpus_id"]), "score": float(r["score"])}
                 for r in ce.rank(QUERY, DOCUMENTS, top_k=3)] if ce.num_labels == 1 else None,
    }


def generator():
    import sentence_transformers
    import transformers
    return (f"models/rerankers/generate.py: sentence-transformers {sentence_transformers.__version__}, "
            f"transformers {transformers.__version__}, torch {torch.__version__}, CPU fp32")


def tiny(name, source, cls, num_labels, max_length):
    """The seeded encoder of `source` under a seeded head, saved by CrossEncoder.save."""
    torch.manual_seed(0)
    model = cls.from_pretrained(os.path.join(ROOT, source), num_labels=num_labels)
    prefix = model.base_model_prefix + "."
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if not pname.startswith(prefix):
                p.copy_(0.3 * torch.randn_like(p))
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(ROOT, source))
    raw = os.path.join(HERE, name + ".hf")
    shutil.rmtree(raw, ignore_errors=True)
    model.save_pretrained(raw, safe_serialization=True)
    tokenizer.save_pretrained(raw)
    out = os.path.join(HERE, name)
    shutil.rmtree(out, ignore_errors=True)
    CrossEncoder(raw, device="cpu", max_length=max_length).save(out)
    shutil.rmtree(raw)
    for extra in ["README.md", "sentencepiece.bpe.model", "vocab.txt", "special_tokens_map.json"]:
        path = os.path.join(out, extra)
        if os.path.exists(path):
            os.remove(path)
    ce = CrossEncoder(out, device="cpu")
    fixture = {"generator": generator(), "model_type": model.config.model_type, **scores(ce)}
    with open(os.path.join(out, "fixture.json"), "w") as f:
        json.dump(fixture, f)
    print(name, model.config.model_type, num_labels, "labels, max_length", ce.max_seq_length)


def minilm(num_labels):
    """all-MiniLM-L6-v2 under BertForSequenceClassification, the classifier from `head_value`."""
    src = os.path.join(ROOT, "models", "all-MiniLM-L6-v2")
    model = BertForSequenceClassification.from_pretrained(src, num_labels=num_labels)
    h = model.config.hidden_size
    with torch.no_grad():
        w = [[head_value(i * h + j) for j in range(h)] for i in range(num_labels)]
        model.classifier.weight.copy_(torch.tensor(w, dtype=torch.float32))
        model.classifier.bias.copy_(torch.tensor([head_value(i, 0.05) for i in range(num_labels)]))
    raw = os.path.join(HERE, f"minilm-{num_labels}.hf")
    shutil.rmtree(raw, ignore_errors=True)
    model.save_pretrained(raw, safe_serialization=True)
    AutoTokenizer.from_pretrained(src).save_pretrained(raw)
    ce = CrossEncoder(raw, device="cpu")
    result = scores(ce)
    shutil.rmtree(raw)
    return result


tiny("bert", "models/tiny", BertForSequenceClassification, 1, 24)
tiny("xlm-roberta", "models/families/xlm-roberta", XLMRobertaForSequenceClassification, 3, 32)
tiny("distilbert", "models/families/distilbert", DistilBertForSequenceClassification, 1, 24)
golden = {"generator": generator(), "one_label": minilm(1), "three_labels": minilm(3)}
with open(os.path.join(ROOT, "tests", "fixtures", "golden_rerank.json"), "w") as f:
    json.dump(golden, f)
print("tests/fixtures/golden_rerank.json")
