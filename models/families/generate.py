"""Generates the small checkpoints of models/families/: one sentence-transformers folder per
architecture that has no downloadable weights here (XLM-RoBERTa, DistilBERT, ModernBERT), with
seeded random weights, a few layers, hidden size 32, and sentence-transformers' outputs as
fixtures (tests/families.rs compares ours to them within 1e-5).

Each folder is what `SentenceTransformer.save` writes for Transformer → Pooling(mean), plus
`fixture.json`: sentences, input ids, and the MEAN, CLS and MAX pooled token embeddings and the
normalized MEAN ones, computed by sentence-transformers on the CPU in fp32.

Tokenizers: none of these models' own tokenizers ships in a package here, so each is built by
this script with the `tokenizers` library in its family's style and trained on CORPUS: a
SentencePiece-style Unigram with <s> … </s> (XLM-RoBERTa), a lower-casing WordPiece with
[CLS] … [SEP] (DistilBERT), a byte-level BPE with [CLS] … [SEP] (ModernBERT).

Usage: python models/families/generate.py   (deterministic; rewrites the folders next to it)
Needs: sentence-transformers (6.2.0 was used), transformers, torch, tokenizers.
"""
import json
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from sentence_transformers import SentenceTransformer, models
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
from tokenizers.models import BPE, Unigram, WordPiece
from transformers import (
    AutoModel,
    DistilBertConfig,
    DistilBertTokenizerFast,
    ModernBertConfig,
    PreTrainedTokenizerFast,
    XLMRobertaConfig,
    XLMRobertaTokenizerFast,
)

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_num_threads(2)

CORPUS = [
    "A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
    "A man is riding a horse.", "A woman is playing violin.", "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.", "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.", "The cat sits on the mat.",
    "Der Zug nach München fährt um 14:35 Uhr ab.", "Le chat dort sur le canapé.",
    "El perro corre en el parque.", "Москва — столица России.", "東京は日本の首都です。",
    "Numbers like 3.14159 and 2026 appear in text.", "Punctuation: commas, dots; colons!",
] * 4

SENTENCES = [
    "A man is eating food.",
    "The cat sits on the mat.",
    "",
    "Hello!",
    "Le chat dort sur le canapé, et le chien joue dans le jardin avec une balle rouge.",
    "Der Zug nach München fährt um 14:35 Uhr ab.",
    "Москва — столица России.",
    "A man is riding a white horse on an enclosed ground while a monkey is playing drums "
    "and someone in a gorilla costume is playing a set of drums beside two men pushing carts.",
    "zzqx unknown wordpieces",
]


def unigram_tokenizer():
    tok = Tokenizer(Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(
        vocab_size=400, special_tokens=specials, unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    return XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                                   pad_token="<pad>", mask_token="<mask>")


def wordpiece_tokenizer():
    tok = Tokenizer(WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    return DistilBertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]",
                                   pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")


def bpe_tokenizer():
    tok = Tokenizer(BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]",
                                   pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")


def build(name, config, tokenizer, max_seq_length, prompts=None, default_prompt_name=None,
          include_prompt=True):
    """Seeded weights (wider than transformers' init, so that every layer matters), saved as a
    sentence-transformers folder with its fixture. With prompts, the fixture also holds the
    embeddings of each prompt (by name, and one given as text)."""
    torch.manual_seed(0)
    model = AutoModel.from_config(config)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname.lower() and pname.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    raw = os.path.join(HERE, name + ".hf")
    shutil.rmtree(raw, ignore_errors=True)
    model.save_pretrained(raw, safe_serialization=True)
    tokenizer.save_pretrained(raw)
    transformer = models.Transformer(raw, max_seq_length=max_seq_length)
    pooling = models.Pooling(transformer.get_word_embedding_dimension(), "mean",
                             include_prompt=include_prompt)
    st = SentenceTransformer(modules=[transformer, pooling], device="cpu", prompts=prompts,
                             default_prompt_name=default_prompt_name)
    out = os.path.join(HERE, name)
    shutil.rmtree(out, ignore_errors=True)
    st.save(out)
    shutil.rmtree(raw)
    # Keep what a model folder needs: no README, no duplicated vocabulary files.
    for extra in ["README.md", "sentencepiece.bpe.model"]:
        path = os.path.join(out, extra)
        if os.path.exists(path):
            os.remove(path)

    st = SentenceTransformer(out, device="cpu")
    st.eval()
    fixture = {
        "generator": f"models/families/generate.py: sentence-transformers, transformers, torch "
                     f"{torch.__version__}, CPU fp32",
        "model_type": config.model_type,
        "max_seq_length": st.max_seq_length,
        "sentences": SENTENCES,
        "input_ids": [st.tokenize([s])["input_ids"][0].tolist() for s in SENTENCES],
    }
    transformer = st[0]

    def pooled(mode):
        return SentenceTransformer(modules=[transformer, models.Pooling(
            transformer.get_word_embedding_dimension(), mode, include_prompt=include_prompt)],
            device="cpu", prompts=prompts, default_prompt_name=default_prompt_name)

    # encode() as a user calls it: the default prompt, if the model sets one, applies.
    for mode in ["mean", "cls", "max"]:
        fixture[mode] = pooled(mode).encode(SENTENCES, batch_size=4).tolist()
    fixture["mean_normalized"] = st.encode(SENTENCES, batch_size=4, normalize_embeddings=True).tolist()
    fixture["prompted"] = []
    calls = [{"prompt_name": n} for n in (prompts or {})]
    if prompts:
        calls.append({"prompt": "Represent this sentence for searching: "})
    for call in calls:
        text = call.get("prompt") or prompts[call["prompt_name"]]
        entry = dict(call)
        entry["input_ids"] = [st.tokenize([text + s])["input_ids"][0].tolist() for s in SENTENCES]
        entry["prompt_length"] = transformer._get_prompt_length(text)
        for mode in ["mean", "cls", "max"]:
            entry[mode] = pooled(mode).encode(SENTENCES, batch_size=4, **call).tolist()
        fixture["prompted"].append(entry)
    with open(os.path.join(out, "fixture.json"), "w") as f:
        json.dump(fixture, f)
    print(name, config.model_type, sum(p.numel() for p in model.parameters()), "parameters")


common = dict(hidden_size=32, num_attention_heads=4, intermediate_size=48)

tok = unigram_tokenizer()
# E5-style prompts, pooled with the text (include_prompt true).
build("xlm-roberta", XLMRobertaConfig(
    vocab_size=len(tok), num_hidden_layers=2, max_position_embeddings=66, type_vocab_size=1,
    pad_token_id=tok.pad_token_id, bos_token_id=0, eos_token_id=2, **common), tok, 64,
    prompts={"query": "query: ", "passage": "passage: "})

tok = wordpiece_tokenizer()
# Instruction prompts left out of pooling (include_prompt false), a default prompt.
build("distilbert", DistilBertConfig(
    vocab_size=len(tok), dim=32, n_layers=2, n_heads=4, hidden_dim=48, max_position_embeddings=64,
    pad_token_id=tok.pad_token_id), tok, 64,
    prompts={"query": "Instruct: find the same sentence\nQuery: ", "document": ""},
    default_prompt_name="query", include_prompt=False)

tok = bpe_tokenizer()
build("modernbert", ModernBertConfig(
    vocab_size=len(tok), num_hidden_layers=3, max_position_embeddings=128, local_attention=8,
    global_attn_every_n_layers=2, pad_token_id=tok.pad_token_id, cls_token_id=tok.cls_token_id,
    sep_token_id=tok.sep_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
    **common), tok, 64)
