"""Generates models/tiny: a 2-layer, hidden-32 BERT sentence-transformers folder with seeded random
weights and a small WordPiece vocabulary, for fast tests and doctests. Pure Python (no numpy/torch).

Usage: python3 models/tiny/generate.py   (rewrites the files next to this script; deterministic)
"""
import json
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(42)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ("the a an is are was on in of to and with cat cats dog man woman sat sits play playing "
         "guitar mat hello world food eat eating pasta runs run fast slow red blue green house car "
         "music book read reading sun moon day night good bad big small").split()
PIECES = ["##s", "##ing", "##ed", "##er", "##ly"]
CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")
VOCAB = SPECIALS + WORDS + CHARS + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"] + PIECES

H, LAYERS, HEADS, INTER, MAXPOS, TYPES, DENSE_OUT = 32, 2, 4, 64, 64, 2, 16
V = len(VOCAB)


def normal(n, std=0.2, mean=0.0):
    return [rng.gauss(mean, std) for _ in range(n)]


tensors = {}


def add(name, shape, values):
    assert len(values) == (shape[0] * (shape[1] if len(shape) > 1 else 1))
    tensors[name] = (shape, values)


add("embeddings.word_embeddings.weight", [V, H], normal(V * H))
add("embeddings.position_embeddings.weight", [MAXPOS, H], normal(MAXPOS * H))
add("embeddings.token_type_embeddings.weight", [TYPES, H], normal(TYPES * H))
add("embeddings.LayerNorm.weight", [H], normal(H, 0.1, 1.0))
add("embeddings.LayerNorm.bias", [H], normal(H, 0.1))
for i in range(LAYERS):
    p = f"encoder.layer.{i}."
    for part in ("query", "key", "value"):
        add(p + f"attention.self.{part}.weight", [H, H], normal(H * H))
        add(p + f"attention.self.{part}.bias", [H], normal(H, 0.05))
    add(p + "attention.output.dense.weight", [H, H], normal(H * H))
    add(p + "attention.output.dense.bias", [H], normal(H, 0.05))
    add(p + "attention.output.LayerNorm.weight", [H], normal(H, 0.1, 1.0))
    add(p + "attention.output.LayerNorm.bias", [H], normal(H, 0.1))
    add(p + "intermediate.dense.weight", [INTER, H], normal(INTER * H))
    add(p + "intermediate.dense.bias", [INTER], normal(INTER, 0.05))
    add(p + "output.dense.weight", [H, INTER], normal(H * INTER))
    add(p + "output.dense.bias", [H], normal(H, 0.05))
    add(p + "output.LayerNorm.weight", [H], normal(H, 0.1, 1.0))
    add(p + "output.LayerNorm.bias", [H], normal(H, 0.1))


def write_safetensors(path, items):
    header, blobs, offset = {}, [], 0
    for name in sorted(items):
        shape, values = items[name]
        blob = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for blob in blobs:
            f.write(blob)


def write_json(rel, obj):
    path = os.path.join(HERE, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


write_safetensors(os.path.join(HERE, "model.safetensors"), tensors)
dense = {
    "linear.weight": ([DENSE_OUT, H], normal(DENSE_OUT * H)),
    "linear.bias": ([DENSE_OUT], normal(DENSE_OUT, 0.05)),
}
os.makedirs(os.path.join(HERE, "2_Dense"), exist_ok=True)
write_safetensors(os.path.join(HERE, "2_Dense", "model.safetensors"), dense)

write_json("config.json", {
    "architectures": ["BertModel"], "model_type": "bert", "vocab_size": V, "hidden_size": H,
    "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "intermediate_size": INTER,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": MAXPOS, "type_vocab_size": TYPES, "initializer_range": 0.02,
    "layer_norm_eps": 1e-12, "pad_token_id": 0, "position_embedding_type": "absolute",
})
write_json("modules.json", [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    {"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"},
])
write_json("sentence_bert_config.json", {"max_seq_length": 16, "do_lower_case": False})
write_json("1_Pooling/config.json", {
    "word_embedding_dimension": H, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
    "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
})
write_json("2_Dense/config.json", {
    "in_features": H, "out_features": DENSE_OUT, "bias": True,
    "activation_function": "torch.nn.modules.activation.Tanh",
})
os.makedirs(os.path.join(HERE, "3_Normalize"), exist_ok=True)
open(os.path.join(HERE, "3_Normalize", ".keep"), "w").close()

special = lambda t: {"id": VOCAB.index(t), "content": t, "single_word": False, "lstrip": False,
                     "rstrip": False, "normalized": False, "special": True}
write_json("tokenizer.json", {
    "version": "1.0",
    # Deliberately not what sentence-transformers uses: the loader must override both.
    "truncation": {"direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0},
    "padding": {"strategy": {"Fixed": 64}, "direction": "Right", "pad_to_multiple_of": None,
                "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
    "added_tokens": [special(t) for t in SPECIALS],
    "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                   "strip_accents": None, "lowercase": True},
    "pre_tokenizer": {"type": "BertPreTokenizer"},
    "post_processor": {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                 {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
        "special_tokens": {t: {"id": t, "ids": [VOCAB.index(t)], "tokens": [t]} for t in ("[CLS]", "[SEP]")},
    },
    "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
    "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
              "max_input_chars_per_word": 100, "vocab": {t: i for i, t in enumerate(VOCAB)}},
})
print(f"wrote {HERE}: vocab {V}, hidden {H}, layers {LAYERS}")
