"""Sentence embeddings equal to sentence-transformers', computed in Rust on the CPU.

``SentenceEmbedder`` encodes lists of strings into ``numpy`` arrays, with the keyword names of
sentence-transformers' ``encode``. ``ArrowEmbedder`` is a callable class for data pipelines:
Ray Data's ``map_batches``, Daft's ``@daft.cls`` and Spark's ``mapInArrow`` hand it a batch of
Arrow data (or a dict of numpy arrays) and get the same rows back with an embedding column.

    >>> from sbert import SentenceEmbedder
    >>> model = SentenceEmbedder("models/all-MiniLM-L6-v2", threads=2)
    >>> e = model.encode(["A man is eating food.", "A man eats pasta."])
    >>> e.shape, e.dtype
    ((2, 384), dtype('float32'))
    >>> float(model.similarity(e[0], e[1])[0, 0]) > 0.5
    True

The GIL is released while a batch is encoded, so Python threads can share one model; each
model has its own pool of ``threads`` native threads (default: all cores), so a Ray actor
with ``num_cpus=2`` should pass ``threads=2`` and workers do not oversubscribe cores.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from . import _sbert
from ._sbert import Model, __version__

__all__ = ["SentenceEmbedder", "CrossEncoder", "SparseEncoder", "ArrowEmbedder", "Index", "semantic_search", "quantize_embeddings", "__version__"]

_PRECISIONS = {"float32": None, "int8": np.int8, "uint8": np.uint8, "binary": np.int8, "ubinary": np.uint8}


def _model_path(model: Any) -> str:
    """A model argument as the native module takes it: a folder or a hub id."""
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a folder or a hub id, not {type(model).__name__}")
    return os.fspath(model)


def _check_batch_size(size: Any) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"batch_size must be a positive integer, not {size!r}")


def _rows(buffer: bytearray, n: int, dim: int) -> np.ndarray:
    """A writable (n, dim) float32 view of the bytes the native module returned."""
    return np.frombuffer(buffer, dtype=np.float32).reshape(n, dim)


class SentenceEmbedder:
    """A sentence-transformers model: a folder, or an ``owner/name`` id found in the local
    Hugging Face cache (``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or ``~/.cache/huggingface/hub``).

    ``pooling`` replaces the folder's pooling (``"mean"``, ``"max"``, ``"cls"``, …);
    ``normalize`` turns the model's Normalize module on or off; ``max_seq_length`` changes
    where texts are truncated; ``quantize="int8"`` runs the encoder's products in int8 on the
    CPU (faster; embeddings close to float32's, not equal). A missing model raises
    ``FileNotFoundError``, a malformed one ``ValueError``.
    """

    def __init__(
        self,
        model: Union[str, "os.PathLike[str]"],
        device: str = "cpu",
        threads: Optional[int] = None,
        batch_size: int = 32,
        pooling: Optional[str] = None,
        normalize: Optional[bool] = None,
        max_seq_length: Optional[int] = None,
        quantize: Optional[str] = None,
    ) -> None:
        model = _model_path(model)
        _check_batch_size(batch_size)
        self._model = Model(
            model,
            device=device,
            threads=threads,
            batch_size=batch_size,
            pooling=pooling,
            normalize=normalize,
            max_seq_length=max_seq_length,
            quantize=quantize,
        )
        self.batch_size = batch_size
        self._device = device

    @property
    def dimension(self) -> int:
        """Values per embedding."""
        return self._model.dimension

    def get_sentence_embedding_dimension(self) -> int:
        """Values per embedding (sentence-transformers' name)."""
        return self._model.dimension

    @property
    def max_seq_length(self) -> int:
        """Tokens kept per text, special tokens included; longer texts are truncated."""
        return self._model.max_seq_length

    @property
    def prompts(self) -> dict:
        """The model's named prompts (``config_sentence_transformers.json``)."""
        return dict(self._model.prompts)

    @property
    def threads(self) -> int:
        """Native threads this model encodes on."""
        return self._model.threads

    def __repr__(self) -> str:
        return f"SentenceEmbedder({self._model!r})"

    @property
    def similarity_fn_name(self) -> str:
        """The model's similarity function (``config_sentence_transformers.json``):
        ``cosine`` unless it names ``dot``, ``euclidean`` or ``manhattan``."""
        return self._model.similarity_fn_name

    def encode(
        self,
        sentences: Union[str, Iterable[Optional[str]]],
        prompt_name: Optional[str] = None,
        prompt: Optional[str] = None,
        batch_size: Optional[int] = None,
        show_progress_bar: Optional[bool] = None,
        output_value: Optional[str] = "sentence_embedding",
        precision: str = "float32",
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: Optional[str] = None,
        normalize_embeddings: bool = False,
        truncate_dim: Optional[int] = None,
        **kwargs: Any,
    ) -> Any:
        """Embeds ``sentences``: a ``float32`` array of shape ``(n, dimension)`` in input
        order, or ``(dimension,)`` for a single string.

        The keywords are sentence-transformers' ``encode``'s, with its meanings:
        ``normalize_embeddings=True`` L2-normalizes the rows, after ``truncate_dim`` keeps the
        first values of each (Matryoshka); ``prompt`` is put before every text, or the model's
        prompt named ``prompt_name``, or else the model's ``default_prompt_name`` prompt (where
        the model's pooling sets ``include_prompt: false``, the prompt's tokens are left out
        of pooling); ``precision`` (``int8``, ``uint8``, ``binary``, ``ubinary``) quantizes as
        ``quantize_embeddings``; ``convert_to_numpy=False`` gives a list of 1-D arrays,
        ``convert_to_tensor=True`` a torch tensor (torch must be installed). Keywords that
        change nothing here are accepted: ``show_progress_bar``, ``device`` naming this
        model's device, ``pool``, ``chunk_size``. ``None`` and empty or blank strings are
        embedded as the empty text, and texts longer than ``max_seq_length`` tokens are
        truncated.
        """
        unknown = set(kwargs) - {"pool", "chunk_size"}
        if unknown:
            raise TypeError(f"encode() got unexpected keyword arguments {sorted(unknown)}")
        if output_value != "sentence_embedding":
            raise ValueError(
                f"output_value {output_value!r}: only 'sentence_embedding' is available"
            )
        if device is not None and device != self._device:
            raise ValueError(f"the model runs on {self._device!r}, not {device!r}")
        if precision not in _PRECISIONS:
            raise ValueError(f"precision {precision!r}: expected one of {sorted(_PRECISIONS)}")
        if truncate_dim is not None and (
            isinstance(truncate_dim, bool)
            or not isinstance(truncate_dim, int)
            or not 1 <= truncate_dim <= self.dimension
        ):
            raise ValueError(
                f"truncate_dim must be an integer between 1 and {self.dimension}, not {truncate_dim!r}"
            )
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        for i, t in enumerate(texts):
            if t is not None and not isinstance(t, str):
                raise TypeError(f"sentence {i} is a {type(t).__name__}, not a str")
        texts = ["" if t is None else t for t in texts]
        size = self.batch_size if batch_size is None else batch_size
        _check_batch_size(size)
        buffer, n = self._model.encode(
            texts,
            size,
            bool(normalize_embeddings),
            prompt_name=prompt_name,
            prompt=prompt,
            truncate_dim=truncate_dim,
        )
        rows = _rows(buffer, n, truncate_dim or self.dimension)
        if precision != "float32":
            rows = quantize_embeddings(rows, precision)
        if convert_to_tensor:
            try:
                import torch
            except ImportError as e:
                raise ImportError("convert_to_tensor=True needs torch installed") from e
            tensor = torch.from_numpy(rows)
            return tensor[0] if single else tensor
        if single:
            return rows[0]
        return rows if convert_to_numpy else list(rows)

    def encode_query(self, sentences: Union[str, Iterable[Optional[str]]], **kwargs: Any) -> Any:
        """``encode`` for search queries: with the model's ``query`` prompt when it has one
        and no prompt is given (sentence-transformers 5's ``encode_query``)."""
        return self._encode_as("query", sentences, kwargs)

    def encode_document(
        self, sentences: Union[str, Iterable[Optional[str]]], **kwargs: Any
    ) -> Any:
        """``encode`` for the searched texts: with the model's ``document`` prompt (else
        ``passage`` or ``corpus``) when it has one and no prompt is given
        (sentence-transformers 5's ``encode_document``)."""
        return self._encode_as("document", sentences, kwargs)

    def _encode_as(self, task: str, sentences: Any, kwargs: dict) -> Any:
        if kwargs.get("prompt_name") is None and kwargs.get("prompt") is None:
            names = ["query"] if task == "query" else ["document", "passage", "corpus"]
            prompts = self.prompts
            kwargs["prompt_name"] = next((p for p in names if p in prompts), None)
        return self.encode(sentences, **kwargs)

    def similarity(self, a: Any, b: Any) -> np.ndarray:
        """The model's similarity (``similarity_fn_name``: cosine unless the model names
        another) of every row of ``a`` with every row of ``b``: ``(n, m)`` ``float32`` (1-D
        inputs count as one row), as sentence-transformers' ``similarity``. A zero row's
        cosine is 0."""
        a = np.ascontiguousarray(np.atleast_2d(np.asarray(a, dtype=np.float32)))
        b = np.ascontiguousarray(np.atleast_2d(np.asarray(b, dtype=np.float32)))
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
            raise ValueError(f"cannot compare embeddings of shapes {a.shape} and {b.shape}")
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            raise ValueError("embeddings hold NaN or infinite values")
        scores = self._model.similarity(a.tobytes(), b.tobytes(), a.shape[1])
        return np.frombuffer(scores, dtype=np.float32).reshape(a.shape[0], b.shape[0])

    def _encode_arrow(self, array: Any, batch_size: Optional[int], normalize: bool) -> np.ndarray:
        """Embeddings of an Arrow string column (Array or ChunkedArray), read from its
        buffers in Rust: no Python loop over the rows."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
        if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
            pass
        elif pa.types.is_string_view(array.type) or pa.types.is_null(array.type):
            array = pc.cast(array, pa.large_string())
        else:
            raise TypeError(f"the text column holds {array.type}, not strings")
        width = 8 if pa.types.is_large_string(array.type) else 4
        validity, offsets, data = array.buffers()
        size = self.batch_size if batch_size is None else batch_size
        buffer = self._model.encode_arrow(
            offsets.to_pybytes(),
            width,
            b"" if data is None else data.to_pybytes(),
            None if validity is None or array.null_count == 0 else validity.to_pybytes(),
            array.offset,
            len(array),
            size,
            normalize,
        )
        return _rows(buffer, len(array), self.dimension)


def _float_rows(x: Any, what: str) -> np.ndarray:
    rows = np.ascontiguousarray(np.atleast_2d(np.asarray(x, dtype=np.float32)))
    if rows.ndim != 2 or rows.shape[1] == 0:
        raise ValueError(f"{what} must be rows of floats, not shape {rows.shape}")
    return rows


def quantize_embeddings(embeddings: Any, precision: str) -> np.ndarray:
    """sentence-transformers' ``quantize_embeddings``: float32 rows as ``int8`` or ``uint8``
    (ranges calibrated per dimension on the rows themselves), ``binary`` (signs packed 8 per
    ``int8``, offset by -128) or ``ubinary`` (packed as ``uint8``)."""
    if precision not in _PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {sorted(_PRECISIONS)}")
    rows = _float_rows(embeddings, "embeddings")
    if precision == "float32":
        return rows
    data, row_bytes = _sbert.quantize(rows.tobytes(), rows.shape[1], precision)
    return np.frombuffer(data, dtype=_PRECISIONS[precision]).reshape(rows.shape[0], row_bytes)


def semantic_search(
    query_embeddings: Any,
    corpus_embeddings: Any,
    top_k: int = 10,
    score_function: str = "cosine",
) -> list:
    """sentence-transformers' ``util.semantic_search``: for each query, the ``top_k`` best
    corpus rows as ``{"corpus_id": j, "score": s}``, best first (equal scores: the smaller
    id first). ``score_function`` is ``"cosine"`` or ``"dot"``; ``top_k`` above the corpus
    size is capped at it."""
    q = _float_rows(query_embeddings, "query_embeddings")
    c = _float_rows(corpus_embeddings, "corpus_embeddings")
    if q.shape[1] != c.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} values per row, the corpus {c.shape[1]}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, not {top_k!r}")
    hits = _sbert.semantic_search(q.tobytes(), c.tobytes(), q.shape[1], top_k, score_function)
    return [[{"corpus_id": j, "score": s} for j, s in h] for h in hits]


class CrossEncoder:
    """A cross-encoder (reranker): a query and a document read together, one score per label,
    as sentence-transformers' ``CrossEncoder``. ``model`` is a folder (what
    ``CrossEncoder.save`` writes, or a Hugging Face ``*ForSequenceClassification`` folder) or
    an ``owner/name`` id in the local hub cache.

    >>> reranker = sbert.CrossEncoder("models/my-reranker")          # doctest: +SKIP
    >>> reranker.rank("how do vaccines work", ["Vaccines train the immune system.", "A train."])
    ... # doctest: +SKIP
    [{'corpus_id': 0, 'score': 0.97}, {'corpus_id': 1, 'score': 0.01}]
    """

    def __init__(self, model: Union[str, "os.PathLike[str]"], device: str = "cpu",
                 batch_size: int = 32) -> None:
        model = _model_path(model)
        _check_batch_size(batch_size)
        self._model = _sbert.Reranker(model, device=device, batch_size=batch_size)

    @property
    def num_labels(self) -> int:
        """Scores per pair."""
        return self._model.num_labels

    @property
    def max_length(self) -> int:
        """The longest pair in tokens (longer pairs are cut, the longer text first)."""
        return self._model.max_length

    def predict(self, sentences: Sequence[Sequence[str]], batch_size: Optional[int] = None,
                show_progress_bar: Optional[bool] = None, activation_fn: Any = None,
                apply_softmax: bool = False, convert_to_numpy: bool = True,
                convert_to_tensor: bool = False, raw_scores: bool = False,
                **unused: Any) -> np.ndarray:
        """Scores of ``(query, document)`` pairs: shape ``(n,)`` for one label, ``(n,
        num_labels)`` for several (sentence-transformers' shapes). ``raw_scores=True`` (or
        ``activation_fn=torch.nn.Identity()``) returns the logits without the model's
        activation; ``apply_softmax`` normalizes several labels' scores."""
        del batch_size, show_progress_bar, convert_to_numpy, unused
        if convert_to_tensor:
            raise ValueError("convert_to_tensor needs torch; sbert returns numpy arrays")
        if isinstance(sentences, (str, bytes)) or not isinstance(sentences, Sequence):
            raise TypeError("sentences must be a list of (query, document) pairs")
        single = len(sentences) == 2 and all(isinstance(s, str) for s in sentences)
        pairs = [tuple(sentences)] if single else [tuple(p) for p in sentences]
        for p in pairs:
            if len(p) != 2 or not all(isinstance(t, str) for t in p):
                raise TypeError(f"each pair must be two strings, not {p!r}")
        raw = raw_scores
        if activation_fn is not None:
            name = type(activation_fn).__name__
            if name != "Identity":
                raise ValueError(f"activation_fn {name} is not supported; pass raw_scores=True "
                                 "and apply it to the logits")
            raw = True
        values = np.frombuffer(self._model.predict(pairs, raw), dtype=np.float32)
        scores = values.reshape(len(pairs), self.num_labels)
        if apply_softmax and self.num_labels > 1:
            e = np.exp(scores - scores.max(axis=1, keepdims=True))
            scores = e / e.sum(axis=1, keepdims=True)
        if self.num_labels == 1:
            scores = scores[:, 0]
        return scores[0] if single else scores

    def rank(self, query: str, documents: Sequence[str], top_k: Optional[int] = None,
             return_documents: bool = False, raw_scores: bool = False,
             **unused: Any) -> list:
        """``documents`` ranked against ``query``, best first: ``[{"corpus_id", "score"
        (, "text")}, ...]``, the first ``top_k``, as sentence-transformers' ``rank``."""
        del unused
        if not isinstance(query, str):
            raise TypeError("query must be a string")
        docs = list(documents)
        ranked = self._model.rank(query, docs, top_k, raw_scores)
        out = []
        for corpus_id, score in ranked:
            hit = {"corpus_id": corpus_id, "score": float(score)}
            if return_documents:
                hit["text"] = docs[corpus_id]
            out.append(hit)
        return out


class SparseEncoder:
    """A SPLADE sparse encoder, as sentence-transformers' ``SparseEncoder``: one weight per
    vocabulary word, mostly zero. ``encode`` returns a CSR triple of numpy arrays (no scipy
    needed; ``scipy.sparse.csr_array((values, indices, indptr), shape)`` wraps it when wanted).

    >>> splade = sbert.SparseEncoder("models/splade-tiny")                   # doctest: +SKIP
    >>> indptr, indices, values, shape = splade.encode(["How do vaccines work?"])  # doctest: +SKIP
    """

    def __init__(self, model: Union[str, "os.PathLike[str]"], device: str = "cpu",
                 batch_size: int = 32) -> None:
        model = _model_path(model)
        _check_batch_size(batch_size)
        self._model = _sbert.Sparse(model, device=device, batch_size=batch_size)

    @property
    def dimension(self) -> int:
        """Dimensions of an embedding: the vocabulary size."""
        return self._model.dimension

    @property
    def max_seq_length(self) -> int:
        return self._model.max_seq_length

    def encode(self, sentences: Union[str, Sequence[str]], batch_size: Optional[int] = None,
               show_progress_bar: Optional[bool] = None, **unused: Any):
        """``(indptr, indices, values, shape)``: row ``i``'s nonzero dimensions are
        ``indices[indptr[i]:indptr[i + 1]]`` (ascending) with weights ``values[…]``; ``shape``
        is ``(len(sentences), dimension)``. One string gives one row."""
        del batch_size, show_progress_bar, unused
        texts = [sentences] if isinstance(sentences, str) else list(sentences)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("sentences must be strings")
        indptr, indices, values = self._model.encode(texts)
        return (np.frombuffer(indptr, dtype=np.uint64).astype(np.int64),
                np.frombuffer(indices, dtype=np.uint32),
                np.frombuffer(values, dtype=np.float32),
                (len(texts), self.dimension))

    def decode(self, indices: Any, values: Any, top_k: int = 10) -> list:
        """The ``top_k`` heaviest dimensions of one embedding as ``(token, weight)``."""
        return self._model.decode([int(i) for i in indices], [float(v) for v in values], top_k)


class Index:
    """A corpus embedded once, on disk: ``Index.build(model, texts, path)`` writes it (replaced
    whole, only with ``overwrite=True``; ``hnsw=True`` adds a graph for approximate search),
    ``Index(path, model)`` reads it back for queries embedded by ``model`` (refused for another
    model; every file checked first). The folder is the one ``sbert index build`` writes, so the
    CLI and Python share indexes.
    """

    def __init__(self, path, model: "SentenceEmbedder"):
        self._model = model
        self._index = _sbert.Index.open(model._model, os.fspath(path))
        self._texts = self._index.texts()

    @classmethod
    def build(cls, model: "SentenceEmbedder", texts, path, overwrite: bool = False, hnsw: bool = False):
        texts = [str(t) for t in texts]
        if not texts:
            raise ValueError("an index needs at least one text")
        _sbert.write_index(model._model, os.fspath(path), texts, overwrite, hnsw)
        return cls(path, model)

    def __len__(self) -> int:
        return len(self._index)

    @property
    def texts(self) -> list:
        return list(self._texts)

    def search(self, queries, top_k: int = 10, approximate: bool = False, ef: int = 64) -> list:
        """For each query (a string or a list of strings), the ``top_k`` best texts as
        ``{"corpus_id", "score", "text"}``, best first, by cosine; ``approximate=True`` searches
        the HNSW graph exploring ``ef`` candidates."""
        if isinstance(queries, str):
            queries = [queries]
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, not {top_k!r}")
        q = self._model.encode(list(queries), convert_to_numpy=True)
        hits = self._index.search(np.ascontiguousarray(q, dtype=np.float32).tobytes(), top_k, approximate, ef)
        return [[{"corpus_id": j, "score": s, "text": self._texts[j]} for j, s in h] for h in hits]


class ArrowEmbedder:
    """A callable for data pipelines: takes a ``pyarrow.Table`` or ``RecordBatch`` (or a
    dict of numpy arrays, or a pandas DataFrame) with a string column ``text_column`` and
    returns the same rows plus ``output_column``, a ``FixedSizeList<float32, dimension>``
    (``List<float32>`` with ``fixed_size=False``, Spark's ``array<float>``; a 2-D ``float32``
    array for numpy batches). The model loads once, when the class is
    instantiated: once per Ray actor, Daft worker or Spark task.

    ``options`` are ``SentenceEmbedder``'s (``device``, ``threads``, ``batch_size``,
    ``pooling``, ``normalize``, ``max_seq_length``) and ``normalize_embeddings``. Null texts
    are embedded as the empty text. An existing ``output_column`` is an error, not
    overwritten.

    Ray Data::

        ds.map_batches(ArrowEmbedder, fn_constructor_kwargs={"model": path, "threads": 1},
                       concurrency=2, num_cpus=1, batch_size=1024, batch_format="pyarrow")

    Spark::

        df.mapInArrow(lambda batches: ArrowEmbedder(path, fixed_size=False).map_batches(batches),
                      df.schema.add("embedding", "array<float>"))
    """

    def __init__(
        self,
        model: Union[str, "os.PathLike[str]"],
        text_column: str = "text",
        output_column: str = "embedding",
        normalize_embeddings: bool = False,
        fixed_size: bool = True,
        **options: Any,
    ) -> None:
        self.embedder = SentenceEmbedder(model, **options)
        self.text_column = text_column
        self.output_column = output_column
        self.normalize_embeddings = bool(normalize_embeddings)
        self.fixed_size = bool(fixed_size)

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        if isinstance(batch, (pa.Table, pa.RecordBatch)):
            names = batch.schema.names
            if self.text_column not in names:
                raise KeyError(f"no column {self.text_column!r} in {names}")
            if self.output_column in names:
                raise ValueError(f"the batch already has a column {self.output_column!r}")
            rows = self._embed(batch.column(self.text_column))
            flat = pa.array(rows.reshape(-1), type=pa.float32())
            dim = self.embedder.dimension
            if self.fixed_size:
                column = pa.FixedSizeListArray.from_arrays(flat, dim)
            else:
                offsets = pa.array(np.arange(0, len(rows) * dim + 1, dim, dtype=np.int32))
                column = pa.ListArray.from_arrays(offsets, flat)
            if isinstance(batch, pa.Table):
                return batch.append_column(self.output_column, column)
            return pa.RecordBatch.from_arrays(
                batch.columns + [column], names=names + [self.output_column]
            )
        if isinstance(batch, dict):
            if self.text_column not in batch:
                raise KeyError(f"no column {self.text_column!r} in {sorted(batch)}")
            if self.output_column in batch:
                raise ValueError(f"the batch already has a column {self.output_column!r}")
            texts = pa.array(np.asarray(batch[self.text_column], dtype=object), type=pa.large_string())
            out = dict(batch)
            out[self.output_column] = self._embed(texts)
            return out
        if hasattr(batch, "columns") and hasattr(batch, "assign"):  # pandas
            if self.text_column not in batch.columns:
                raise KeyError(f"no column {self.text_column!r} in {list(batch.columns)}")
            if self.output_column in batch.columns:
                raise ValueError(f"the batch already has a column {self.output_column!r}")
            texts = pa.Array.from_pandas(batch[self.text_column], type=pa.large_string())
            return batch.assign(**{self.output_column: list(self._embed(texts))})
        raise TypeError(
            f"expected a pyarrow Table or RecordBatch, a dict of numpy arrays or a pandas "
            f"DataFrame, not {type(batch).__name__}"
        )

    def map_batches(self, batches: Iterable[Any]) -> Iterator[Any]:
        """Each batch of ``batches`` with its embeddings (Spark's ``mapInArrow`` shape)."""
        for batch in batches:
            yield self(batch)

    def _embed(self, column: Any) -> np.ndarray:
        return self.embedder._encode_arrow(column, None, self.normalize_embeddings)
