"""The Python package against sentence-transformers' fixtures, and the ways pipelines call it.

Run from the repository root after installing the wheel (``.ci/run`` does both):

    pytest crates/python/tests

``SBERT_MODEL`` (default ``models/all-MiniLM-L6-v2``) and ``SBERT_SHARED_DIR`` (default
``../shared``) locate the model and the fixtures.
"""

import json
import os
import shutil
import signal
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import sbert
from sbert import ArrowEmbedder, SentenceEmbedder

ROOT = Path(__file__).resolve().parents[3]
MODEL = Path(os.environ.get("SBERT_MODEL", ROOT / "models" / "all-MiniLM-L6-v2"))
SHARED = Path(os.environ.get("SBERT_SHARED_DIR", ROOT.parent / "shared"))
GOLDEN = json.loads((SHARED / "fixtures" / "golden_visible.json").read_text())


@pytest.fixture(scope="module")
def model():
    return SentenceEmbedder(MODEL, threads=2)


def stsb_sentences(limit):
    lines = (SHARED / "data" / "stsb" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]
    out = []
    for line in lines:
        out.extend(line.split("\t")[1:3])
    return out[:limit]


@pytest.mark.parametrize(
    "pooling, normalize, key",
    [(None, None, "mean_normalized"), ("mean", False, "mean"), ("cls", False, "cls"), ("max", False, "max")],
)
def test_encode_equals_sentence_transformers(pooling, normalize, key):
    m = SentenceEmbedder(MODEL, pooling=pooling, normalize=normalize)
    got = m.encode(GOLDEN["sentences"])
    want = np.array(GOLDEN[key], dtype=np.float32)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-4


def test_int8_stays_close_to_sentence_transformers():
    m = SentenceEmbedder(MODEL, quantize="int8", threads=2)
    got = m.encode(GOLDEN["sentences"])
    want = np.array(GOLDEN["mean_normalized"], dtype=np.float32)
    cos = (got * want).sum(1)
    assert cos.min() >= 0.97 and cos.mean() >= 0.995
    assert np.abs(got - want).max() > 1e-4  # quantized, not the float32 path


def test_similarity_equals_sentence_transformers(model):
    e = model.encode(GOLDEN["sentences"])
    want = np.array(GOLDEN["cosine_mean_normalized"], dtype=np.float32)
    got = model.similarity(e, e)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4
    assert model.similarity(e[0], e[1]).shape == (1, 1)
    with pytest.raises(ValueError):
        model.similarity(e[:, :10], e)
    bad = e.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        model.similarity(bad, e)


def test_shapes_order_dtype_and_options(model):
    texts = stsb_sentences(100)
    e = model.encode(texts)
    assert e.shape == (100, model.dimension) and e.dtype == np.float32 and e.flags.writeable
    assert model.dimension == model.get_sentence_embedding_dimension() == 384
    assert model.max_seq_length == 256
    # Order: reversed input, reversed rows; batch size changes nothing but float noise.
    assert np.abs(model.encode(texts[::-1])[::-1] - e).max() <= 1e-5
    assert np.abs(model.encode(texts, batch_size=7) - e).max() <= 1e-5
    one = model.encode(texts[3])
    assert one.shape == (384,) and np.abs(one - e[3]).max() <= 1e-5
    assert model.encode([]).shape == (0, 384)
    listed = model.encode(texts[:3], convert_to_numpy=False)
    assert isinstance(listed, list) and len(listed) == 3 and listed[1].shape == (384,)
    # A generator is a sequence of texts too.
    assert np.abs(model.encode(t for t in texts[:5]) - e[:5]).max() <= 1e-5
    # normalize_embeddings on a model without Normalize gives unit rows in the same direction.
    raw = SentenceEmbedder(MODEL, normalize=False)
    plain = raw.encode(texts[:10])
    unit = raw.encode(texts[:10], normalize_embeddings=True)
    assert np.abs(np.linalg.norm(unit, axis=1) - 1).max() <= 1e-5
    assert np.abs(unit - plain / np.linalg.norm(plain, axis=1, keepdims=True)).max() <= 1e-5
    # A prompt is put before every text.
    assert np.abs(model.encode(["b"], prompt="query: ") - model.encode(["query: b"])).max() <= 1e-6


def test_sentence_transformers_keywords_truncation_precision_and_search(model):
    texts = stsb_sentences(40)
    e = model.encode(texts)
    # Keywords that change nothing here are accepted, as sentence-transformers takes them.
    same = model.encode(texts, show_progress_bar=True, device="cpu", output_value="sentence_embedding")
    assert np.abs(same - e).max() == 0.0
    with pytest.raises(TypeError, match="unexpected"):
        model.encode(texts, no_such_keyword=1)
    # truncate_dim keeps the first values; normalize_embeddings normalizes after it.
    cut = model.encode(texts, truncate_dim=128)
    assert cut.shape == (40, 128) and np.abs(cut - e[:, :128]).max() == 0.0
    unit = model.encode(texts, truncate_dim=128, normalize_embeddings=True)
    assert np.abs(unit - cut / np.linalg.norm(cut, axis=1, keepdims=True)).max() <= 1e-6
    with pytest.raises(ValueError, match="truncate_dim"):
        model.encode(texts, truncate_dim=385)
    # precision: sentence-transformers' quantize_embeddings, ranges calibrated on the rows.
    steps = (e.max(axis=0) - e.min(axis=0)) / 255
    want = ((e - e.min(axis=0)) / steps - 128).astype(np.int8)
    got = model.encode(texts, precision="int8")
    assert got.dtype == np.int8 and np.abs(got.astype(int) - want.astype(int)).max() <= 1
    binary = model.encode(texts, precision="ubinary")
    assert binary.dtype == np.uint8 and (binary == np.packbits(e > 0).reshape(40, -1)).all()
    with pytest.raises(ValueError, match="precision"):
        model.encode(texts, precision="int4")
    # encode_query / encode_document: no query/document prompts here, so plain encode.
    assert np.abs(model.encode_query(texts[:3]) - e[:3]).max() == 0.0
    assert np.abs(model.encode_document(texts[:3]) - e[:3]).max() == 0.0
    # semantic_search as util.semantic_search: best first, top_k capped at the corpus size.
    hits = sbert.semantic_search(e[:2], e, top_k=500)
    assert len(hits) == 2 and len(hits[0]) == 40
    assert hits[0][0]["corpus_id"] == 0 and abs(hits[0][0]["score"] - 1.0) <= 1e-5
    scores = [h["score"] for h in hits[1]]
    assert scores == sorted(scores, reverse=True)
    assert model.similarity_fn_name == "cosine"


def test_a_bare_model_name_says_what_a_hub_id_looks_like():
    with pytest.raises(FileNotFoundError, match="owner/name"):
        SentenceEmbedder("all-MiniLM-L6-v2-not-here")


def test_prompts_follow_sentence_transformers_include_prompt_and_default():
    # A seeded DistilBERT whose default prompt is an instruction left out of pooling
    # (models/families/generate.py recorded sentence-transformers' outputs beside it).
    folder = ROOT / "models/families/distilbert"
    fixture = json.loads((folder / "fixture.json").read_text())
    m = SentenceEmbedder(str(folder), threads=1)
    sentences = fixture["sentences"]
    assert np.abs(m.encode(sentences) - np.array(fixture["mean"])).max() <= 1e-5
    for call in fixture["prompted"]:
        kwargs = {k: call[k] for k in ("prompt_name", "prompt") if k in call}
        got = m.encode(sentences, **kwargs)
        assert np.abs(got - np.array(call["mean"])).max() <= 1e-5, kwargs


def test_nulls_blanks_and_long_texts(model):
    e = model.encode(["", None, "   ", "\n"])
    assert np.abs(e - e[0]).max() == 0.0
    long = "word " * 2000
    a, b = model.encode([long, long + "and more words at the end"])
    assert np.isfinite(a).all() and np.abs(a - b).max() <= 1e-6, "truncated at max_seq_length"


def test_a_hub_id_loads_from_the_local_cache(tmp_path, monkeypatch, model):
    # The layout huggingface_hub writes: blobs, a snapshot of links to them, refs/main.
    repo = tmp_path / "models--sentence-transformers--all-MiniLM-L6-v2"
    rev = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    blobs = repo / "blobs"
    blobs.mkdir()
    for n, path in enumerate(p for p in sorted(MODEL.rglob("*")) if p.is_file()):
        blob = blobs / f"blob{n:04}"
        shutil.copyfile(path, blob)
        link = repo / "snapshots" / rev / path.relative_to(MODEL)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    from_hub = SentenceEmbedder("sentence-transformers/all-MiniLM-L6-v2", threads=1)
    texts = GOLDEN["sentences"][:4]
    assert np.abs(from_hub.encode(texts) - model.encode(texts)).max() <= 1e-6
    with pytest.raises(FileNotFoundError):
        SentenceEmbedder("sentence-transformers/not-in-the-cache")


def test_errors_are_python_exceptions(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        SentenceEmbedder(tmp_path / "nowhere")
    broken = tmp_path / "model"
    shutil.copytree(MODEL, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError):
        SentenceEmbedder(broken)
    with pytest.raises(ValueError, match="pooling"):
        SentenceEmbedder(MODEL, pooling="median")
    with pytest.raises(ValueError, match="threads"):
        SentenceEmbedder(MODEL, threads=0)
    with pytest.raises(ValueError, match="batch_size"):
        SentenceEmbedder(MODEL, batch_size=0)
    with pytest.raises(ValueError, match="device"):
        SentenceEmbedder(MODEL, device="tpu")
    with pytest.raises(ValueError, match="int4"):
        SentenceEmbedder(MODEL, quantize="int4")
    with pytest.raises(TypeError):
        SentenceEmbedder(42)
    m = SentenceEmbedder(MODEL, threads=1)
    with pytest.raises(TypeError, match="sentence 1"):
        m.encode(["ok", 3])
    with pytest.raises(ValueError, match="batch_size"):
        m.encode(["ok"], batch_size=0)
    with pytest.raises(ValueError, match="no prompt named"):
        m.encode(["ok"], prompt_name="query")


def test_python_threads_share_one_model_and_the_gil_is_released(model):
    texts = stsb_sentences(400)
    want = model.encode(texts)
    results, errors = {}, []

    def work(k):
        try:
            results[k] = model.encode(texts[k * 100 : (k + 1) * 100])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got = np.concatenate([results[k] for k in range(4)])
    assert np.abs(got - want).max() <= 1e-5

    # While one thread encodes, another keeps running Python: the GIL is not held.
    ticks, done = [0], threading.Event()

    def count():
        while not done.is_set():
            ticks[0] += 1

    counter = threading.Thread(target=count)
    counter.start()
    try:
        before = ticks[0]
        model.encode(texts)
        during = ticks[0] - before
    finally:
        done.set()
        counter.join()
    assert during > 1000, f"the counting thread advanced {during} times during encode"


def test_arrow_batches_tables_numpy_and_pandas(model):
    texts = stsb_sentences(64)
    texts[5] = None
    want = model.encode(texts)
    embedder = ArrowEmbedder(MODEL, threads=2)
    table = pa.table({"id": list(range(64)), "text": texts})
    out = embedder(table)
    assert out.column_names == ["id", "text", "embedding"]
    assert out.schema.field("embedding").type == pa.list_(pa.float32(), 384)
    rows = np.asarray(out.column("embedding").combine_chunks().flatten()).reshape(64, 384)
    assert np.abs(rows - want).max() <= 1e-5

    # A RecordBatch sliced off the middle (its buffers start before it), large_string, chunks.
    batch = table.to_batches()[0].slice(10, 20)
    got = embedder(batch)
    assert isinstance(got, pa.RecordBatch) and got.num_rows == 20
    rows = np.asarray(got.column(2).flatten()).reshape(20, 384)
    assert np.abs(rows - want[10:30]).max() <= 1e-5
    large = pa.table({"text": pa.array(texts, type=pa.large_string())})
    rows = np.asarray(embedder(large).column("embedding").combine_chunks().flatten())
    assert np.abs(rows.reshape(64, 384) - want).max() <= 1e-5
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=10))
    assert chunked.column("text").num_chunks > 1
    rows = np.asarray(embedder(chunked).column("embedding").combine_chunks().flatten())
    assert np.abs(rows.reshape(64, 384) - want).max() <= 1e-5

    # Spark's array<float> is a variable-size list.
    listed = ArrowEmbedder(MODEL, threads=1, fixed_size=False)(table)
    assert listed.schema.field("embedding").type == pa.list_(pa.float32())
    assert np.abs(np.array(listed.column("embedding").to_pylist(), dtype=np.float32) - want).max() <= 1e-5

    # numpy batches (Ray's batch_format="numpy") and pandas.
    got = embedder({"id": np.arange(64), "text": np.array(texts, dtype=object)})
    assert got["embedding"].shape == (64, 384) and np.abs(got["embedding"] - want).max() <= 1e-5
    pd = pytest.importorskip("pandas")
    frame = embedder(pd.DataFrame({"text": texts}))
    assert np.abs(np.stack(frame["embedding"].to_numpy()) - want).max() <= 1e-5

    # What is not ours to change is refused.
    with pytest.raises(ValueError, match="already has"):
        embedder(out)
    with pytest.raises(KeyError):
        ArrowEmbedder(MODEL, text_column="body")(table)
    with pytest.raises(TypeError, match="not strings"):
        embedder(pa.table({"text": [1, 2]}))
    with pytest.raises(TypeError):
        embedder(["a list"])
    assert list(embedder.map_batches([table.to_batches()[0]]))[0].num_columns == 3


def test_ray_data_with_two_actors_equals_in_process(model):
    ray = pytest.importorskip("ray")

    texts = stsb_sentences(2000)
    want = model.encode(texts)

    def too_slow(*_):
        raise TimeoutError("the Ray Data job did not finish in 300 s")

    # The two actors hold both CPUs, so the blocks come from and go to the driver's object
    # store: a read, write or repartition task would wait for a free CPU forever.
    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(300)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        table = pa.table({"id": list(range(len(texts))), "text": texts})
        blocks = [table.slice(start, 250) for start in range(0, len(texts), 250)]
        ds = ray.data.from_arrow(blocks).map_batches(
            ArrowEmbedder,
            fn_constructor_kwargs={"model": str(MODEL), "threads": 1},
            concurrency=2,
            num_cpus=1,
            batch_size=250,
            batch_format="pyarrow",
        )
        out = pa.concat_tables(ray.get(ds.to_arrow_refs())).sort_by("id")
    finally:
        ray.shutdown()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert out.column("id").to_pylist() == list(range(len(texts)))
    assert out.column("text").to_pylist() == texts
    rows = np.asarray(out.column("embedding").combine_chunks().flatten()).reshape(len(texts), 384)
    assert np.abs(rows - want).max() <= 1e-5


def test_a_static_model_equals_sentence_transformers():
    # potion-base-8M (models/fetch.sh potion-base-8M): model2vec's table through the same class.
    golden = json.loads((ROOT / "tests" / "fixtures" / "golden_static.json").read_text())
    m = SentenceEmbedder(ROOT / "models" / "potion-base-8M", threads=2)
    got = m.encode(golden["sentences"])
    assert got.shape == (len(golden["sentences"]), 256)
    assert np.abs(got - np.asarray(golden["embeddings"], dtype=np.float32)).max() <= 1e-5


def test_an_index_is_built_searched_reopened_and_tied_to_its_model(tmp_path, model):
    corpus = list(dict.fromkeys(stsb_sentences(80)))[:40]
    path = tmp_path / "corpus.index"
    index = sbert.Index.build(model, corpus, path, hnsw=True)
    assert len(index) == 40 and index.texts == corpus
    exact = index.search(corpus[7], top_k=3)
    assert exact[0][0]["corpus_id"] == 7 and exact[0][0]["text"] == corpus[7]
    assert abs(exact[0][0]["score"] - 1.0) < 1e-5
    approx = sbert.Index(path, model).search([corpus[7], corpus[9]], top_k=3, approximate=True)
    assert [h[0]["corpus_id"] for h in approx] == [7, 9]
    with pytest.raises(Exception, match="overwrite"):
        sbert.Index.build(model, corpus, path)
    other = SentenceEmbedder(ROOT / "models" / "potion-base-8M")
    with pytest.raises(Exception, match="was built with model"):
        sbert.Index(path, other)


@pytest.mark.parametrize("name", ["bert", "xlm-roberta", "distilbert"])
def test_a_cross_encoder_equals_sentence_transformers(name):
    folder = ROOT / "models" / "rerankers" / name
    fixture = json.loads((folder / "fixture.json").read_text())
    reranker = sbert.CrossEncoder(folder)
    assert reranker.num_labels == fixture["num_labels"]
    assert reranker.max_length == fixture["max_length"]
    pairs = [tuple(p) for p in fixture["pairs"]]
    scores = reranker.predict(pairs)
    want = np.asarray(fixture["scores"], dtype=np.float32)
    assert scores.shape == want.shape and scores.dtype == np.float32
    assert np.abs(scores - want).max() <= 1e-5
    logits = reranker.predict(pairs, raw_scores=True)
    assert np.abs(logits - np.asarray(fixture["logits"], dtype=np.float32)).max() <= 1e-5
    one = reranker.predict(pairs[0])
    assert np.ndim(one) == np.ndim(want) - 1 and np.allclose(one, want[0], atol=1e-5)
    if fixture["rank"] is not None:
        ranked = reranker.rank(fixture["query"], fixture["documents"], top_k=3,
                               return_documents=True)
        assert [r["corpus_id"] for r in ranked] == [r["corpus_id"] for r in fixture["rank"]]
        assert all(r["text"] == fixture["documents"][r["corpus_id"]] for r in ranked)
    else:
        with pytest.raises(ValueError, match="labels"):
            reranker.rank("q", ["d"])
    with pytest.raises(TypeError):
        reranker.predict([("only one",)])
    with pytest.raises(ValueError):
        sbert.CrossEncoder(ROOT / "models" / "tiny")


def test_a_sparse_encoder_equals_sentence_transformers_in_every_dimension():
    golden = json.loads((ROOT / "tests" / "fixtures" / "golden_sparse.json").read_text())
    splade = sbert.SparseEncoder(ROOT / "models" / "splade-tiny")
    assert splade.dimension == golden["dimension"] == 30522
    texts = [r["text"] for r in golden["rows"]]
    indptr, indices, values, shape = splade.encode(texts)
    assert shape == (len(texts), 30522) and indptr[0] == 0 and indptr[-1] == len(values)
    for i, row in enumerate(golden["rows"]):
        got = np.zeros(30522, dtype=np.float32)
        got[indices[indptr[i]:indptr[i + 1]]] = values[indptr[i]:indptr[i + 1]]
        want = np.zeros(30522, dtype=np.float32)
        want[row["indices"]] = row["values"]
        assert np.abs(got - want).max() <= 1e-4
        top = splade.decode(indices[indptr[i]:indptr[i + 1]], values[indptr[i]:indptr[i + 1]], 5)
        assert [t for t, _ in top] == [t for t, _ in row["top_tokens"]]
    with pytest.raises(ValueError):
        sbert.SparseEncoder(ROOT / "models" / "tiny")
