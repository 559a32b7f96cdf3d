//! The native half of the `sbert` Python package (`sbert._sbert`): one loaded model, encoding
//! lists of Python strings or the buffers of an Arrow string column, with the GIL released
//! and on a thread pool of the caller's size.
//!
//! The public Python API (`sbert.SentenceEmbedder`, `sbert.ArrowEmbedder`) lives in
//! `python/sbert/__init__.py` and wraps `Model`; embeddings cross as a `bytearray` of
//! native-endian `float32` that numpy views without copying.

use std::str::FromStr;

use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};
use sbert::{Pooling, Prompt, Quantization, SentenceEmbedder};

/// A sentence-transformers model, loaded once and shared by every Python thread that calls it.
#[pyclass(frozen, module = "sbert._sbert")]
struct Model {
    inner: SentenceEmbedder,
}

/// Our error as the Python exception a Python user expects for it, with our message.
fn to_py(e: sbert::Error) -> PyErr {
    let message = error_chain(&e);
    match e {
        sbert::Error::MissingFile(_) | sbert::Error::ModelNotFound(_) => {
            PyFileNotFoundError::new_err(message)
        }
        sbert::Error::Io { .. } => PyOSError::new_err(message),
        sbert::Error::InvalidArgument(_)
        | sbert::Error::Unsupported(_)
        | sbert::Error::Pooling(_)
        | sbert::Error::InvalidWeights { .. }
        | sbert::Error::Weights { .. }
        | sbert::Error::Json { .. }
        | sbert::Error::TokenizerLoad { .. } => PyValueError::new_err(message),
        _ => PyRuntimeError::new_err(message),
    }
}

/// The message and its causes, `: `-separated, as anyhow's `{:#}` prints them.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The strings of an Arrow `string` / `large_string` array from its buffers: `offsets`
/// (`width` bytes each, `offset + length + 1` of them at least), `data`, and the validity
/// bitmap when the array has nulls (a null reads as the empty text).
fn arrow_strings<'a>(
    offsets: &[u8],
    width: usize,
    data: &'a [u8],
    validity: Option<&[u8]>,
    offset: usize,
    length: usize,
) -> PyResult<Vec<&'a str>> {
    let read = |i: usize| -> PyResult<usize> {
        let at = (offset + i) * width;
        let raw = offsets
            .get(at..at + width)
            .ok_or_else(|| PyValueError::new_err("arrow offsets buffer is too short"))?;
        let v = match width {
            4 => i64::from(i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])),
            _ => i64::from_le_bytes([
                raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7],
            ]),
        };
        usize::try_from(v).map_err(|_| PyValueError::new_err("negative arrow offset"))
    };
    if width != 4 && width != 8 {
        return Err(PyValueError::new_err("arrow offsets are 4 or 8 bytes wide"));
    }
    let mut out = Vec::with_capacity(length);
    let mut start = read(0)?;
    for i in 0..length {
        let end = read(i + 1)?;
        let valid = validity.is_none_or(|bits| {
            let bit = offset + i;
            bits.get(bit / 8).is_some_and(|b| b >> (bit % 8) & 1 == 1)
        });
        let text = if valid {
            let bytes = data
                .get(start..end)
                .ok_or_else(|| PyValueError::new_err("arrow offsets point past the data"))?;
            std::str::from_utf8(bytes).map_err(|e| {
                PyValueError::new_err(format!("row {i} of the text column is not UTF-8: {e}"))
            })?
        } else {
            ""
        };
        out.push(text);
        start = end;
    }
    Ok(out)
}

impl Model {
    /// Embeds `texts` (on the model's threads): rows, row-major, normalized when asked.
    fn rows<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        batch_size: usize,
        normalize: bool,
        prompt: Prompt<'_>,
        truncate_dim: Option<usize>,
    ) -> sbert::Result<Vec<f32>> {
        let mut options = sbert::EncodeOptions::default()
            .prompt(prompt)
            .batch_size(batch_size);
        if normalize {
            options = options.normalize(true);
        }
        if let Some(d) = truncate_dim {
            options = options.truncate_dim(d);
        }
        Ok(self.inner.encode(texts, &options)?.into_vec())
    }
}

#[pymethods]
impl Model {
    #[new]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments, one per option
    #[pyo3(signature = (model, device="cpu", threads=None, batch_size=32, pooling=None, normalize=None, max_seq_length=None, quantize=None))]
    fn new(
        py: Python<'_>,
        model: &str,
        device: &str,
        threads: Option<usize>,
        batch_size: usize,
        pooling: Option<&str>,
        normalize: Option<bool>,
        max_seq_length: Option<usize>,
        quantize: Option<&str>,
    ) -> PyResult<Self> {
        let quantization = match quantize {
            None => Quantization::None,
            Some(q) => q.parse::<Quantization>().map_err(PyValueError::new_err)?,
        };
        let device = sbert::device(device).map_err(to_py)?;
        let threads = match threads {
            Some(0) => return Err(PyValueError::new_err("threads must be at least 1")),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        let mut builder = SentenceEmbedder::builder(model)
            .threads(threads)
            .device(device)
            .batch_size(batch_size)
            .quantize(quantization);
        if let Some(p) = pooling {
            builder = builder.pooling(Pooling::from_str(p).map_err(|e| to_py(e.into()))?);
        }
        if let Some(n) = normalize {
            builder = builder.normalize(n);
        }
        if let Some(n) = max_seq_length {
            builder = builder.max_seq_length(n);
        }
        let inner = py.detach(|| builder.build()).map_err(to_py)?;
        Ok(Self { inner })
    }

    /// `(bytearray of n·dim native-endian float32, n)` for a list of strings, after `prompt`
    /// (a text) or else the model's prompt `prompt_name`, else the model's default prompt.
    #[pyo3(signature = (texts, batch_size, normalize, prompt_name=None, prompt=None, truncate_dim=None))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments, one per option
    fn encode<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        batch_size: usize,
        normalize: bool,
        prompt_name: Option<String>,
        prompt: Option<String>,
        truncate_dim: Option<usize>,
    ) -> PyResult<(Bound<'py, PyByteArray>, usize)> {
        let n = texts.len();
        // As sentence-transformers: a prompt's text wins over a prompt name.
        let prompt = match &prompt {
            Some(text) => Prompt::Text(text),
            None => Prompt::named_or_default(prompt_name.as_deref()),
        };
        let rows = py
            .detach(|| self.rows(&texts, batch_size, normalize, prompt, truncate_dim))
            .map_err(to_py)?;
        Ok((PyByteArray::new(py, bytemuck::cast_slice(&rows)), n))
    }

    /// As `encode`, for the buffers of an Arrow string column (see `arrow_strings`).
    #[pyo3(signature = (offsets, width, data, validity, offset, length, batch_size, normalize))]
    #[allow(clippy::too_many_arguments)] // the buffers and geometry of one Arrow array
    fn encode_arrow<'py>(
        &self,
        py: Python<'py>,
        offsets: &Bound<'py, PyBytes>,
        width: usize,
        data: &Bound<'py, PyBytes>,
        validity: Option<&Bound<'py, PyBytes>>,
        offset: usize,
        length: usize,
        batch_size: usize,
        normalize: bool,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        let (offsets, data) = (offsets.as_bytes(), data.as_bytes());
        let validity = validity.map(|v| v.as_bytes());
        let texts = arrow_strings(offsets, width, data, validity, offset, length)?;
        let rows = py
            .detach(|| self.rows(&texts, batch_size, normalize, Prompt::Default, None))
            .map_err(to_py)?;
        Ok(PyByteArray::new(py, bytemuck::cast_slice(&rows)))
    }

    /// Values per embedding.
    #[getter]
    fn dimension(&self) -> usize {
        self.inner.dim()
    }

    /// Tokens kept per text, special tokens included; longer texts are truncated.
    #[getter]
    fn max_seq_length(&self) -> usize {
        self.inner.max_seq_length()
    }

    /// The pooling, as sentence-transformers names it.
    #[getter]
    fn pooling(&self) -> String {
        self.inner.pooling().to_string()
    }

    /// Whether embeddings come out L2-normalized.
    #[getter]
    fn normalizes(&self) -> bool {
        self.inner.normalizes()
    }

    /// `prompts` of the model's `config_sentence_transformers.json`: name → text put before
    /// an input.
    #[getter]
    fn prompts(&self) -> std::collections::BTreeMap<String, String> {
        self.inner.prompts().clone()
    }

    /// The model's similarity function (`similarity_fn_name`; `cosine` when it names none).
    #[getter]
    fn similarity_fn_name(&self) -> &'static str {
        self.inner.similarity_fn().name()
    }

    /// The model's similarity of every row of `a` with every row of `b` (float32 rows of
    /// `dim` values, native-endian): `n·m` float32 values, row-major.
    fn similarity<'py>(
        &self,
        py: Python<'py>,
        a: &Bound<'py, PyBytes>,
        b: &Bound<'py, PyBytes>,
        dim: usize,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        let (a, b) = (rows_of(a.as_bytes(), dim)?, rows_of(b.as_bytes(), dim)?);
        let scores = py.detach(|| self.inner.similarity(&a, &b)).map_err(to_py)?;
        let flat: Vec<f32> = scores.concat();
        Ok(PyByteArray::new(py, bytemuck::cast_slice(&flat)))
    }

    /// Threads of this model's pool.
    #[getter]
    fn threads(&self) -> usize {
        self.inner.threads()
    }

    /// The model's folder.
    #[getter]
    fn path(&self) -> String {
        self.inner.dir().display().to_string()
    }

    fn __repr__(&self) -> String {
        format!(
            "Model(path={:?}, dimension={}, pooling={:?}, normalize={}, threads={})",
            self.inner.dir().display().to_string(),
            self.inner.dim(),
            self.inner.pooling().to_string(),
            self.inner.normalizes(),
            self.inner.threads()
        )
    }
}

/// Native-endian float32 `bytes` as [`sbert::Embeddings`] rows of `dim` values.
fn rows_of(bytes: &[u8], dim: usize) -> PyResult<sbert::Embeddings> {
    if dim == 0 || !bytes.len().is_multiple_of(4 * dim) {
        return Err(PyValueError::new_err(format!(
            "{} bytes are not rows of {dim} float32 values",
            bytes.len()
        )));
    }
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let stats = sbert::InputStats {
        tokens: 0,
        truncated: false,
    };
    let n = values.len() / dim;
    sbert::Embeddings::new(values, dim, vec![stats; n]).map_err(to_py)
}

/// sentence-transformers' `quantize_embeddings`: float32 rows of `dim` values as `precision`
/// (`float32`, `int8`, `uint8`, `binary`, `ubinary`), ranges calibrated on the rows
/// themselves. Returns the stored bytes and the bytes per row.
#[pyfunction]
fn quantize<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyBytes>,
    dim: usize,
    precision: &str,
) -> PyResult<(Bound<'py, PyBytes>, usize)> {
    let rows = rows_of(values.as_bytes(), dim)?;
    let precision: sbert::search::Precision = precision
        .parse()
        .map_err(|e: sbert::search::SearchError| PyValueError::new_err(e.to_string()))?;
    let q =
        sbert::search::quantize(&rows.vectors(), precision, None).map_err(|e| to_py(e.into()))?;
    Ok((PyBytes::new(py, &q.data), q.row_bytes))
}

/// sentence-transformers' `util.semantic_search` over float32 rows of `dim` values: for each
/// query, the `top_k` best corpus rows as `(corpus_id, score)`, best first; `top_k` above the
/// corpus size is capped at it.
#[pyfunction]
fn semantic_search(
    py: Python<'_>,
    queries: &Bound<'_, PyBytes>,
    corpus: &Bound<'_, PyBytes>,
    dim: usize,
    top_k: usize,
    score: &str,
) -> PyResult<Vec<Vec<(usize, f32)>>> {
    let (q, c) = (
        rows_of(queries.as_bytes(), dim)?,
        rows_of(corpus.as_bytes(), dim)?,
    );
    let score = match score {
        "cosine" | "cos_sim" => sbert::search::Score::Cosine,
        "dot" | "dot_score" => sbert::search::Score::Dot,
        other => {
            return Err(PyValueError::new_err(format!(
                "score_function {other:?}: expected \"cosine\" or \"dot\""
            )))
        }
    };
    let hits = py
        .detach(|| sbert::search::semantic_search(&q.vectors(), &c.vectors(), top_k, score))
        .map_err(|e| to_py(e.into()))?;
    Ok(hits
        .into_iter()
        .map(|h| h.into_iter().map(|x| (x.corpus_id, x.score)).collect())
        .collect())
}

/// An index folder read back for one model (`sbert.Index`): texts, rows, the graph if any.
#[pyclass(frozen, module = "sbert._sbert")]
struct Index {
    stored: sbert::search::StoredIndex,
    graph: Option<sbert::search::ApproximateIndex>,
}

#[pymethods]
impl Index {
    /// Reads the index in `path` for queries embedded by `model`, checking every file.
    #[staticmethod]
    fn open(py: Python<'_>, model: &Model, path: std::path::PathBuf) -> PyResult<Self> {
        py.detach(|| {
            let stored = sbert::search::StoredIndex::open(&path, &model.inner.identity()?)?;
            let graph = match stored.has_graph() {
                true => Some(stored.approximate()?),
                false => None,
            };
            Ok::<_, sbert::Error>(Self { stored, graph })
        })
        .map_err(to_py)
    }

    /// The corpus texts, in row order.
    fn texts(&self) -> Vec<String> {
        self.stored.texts.clone()
    }

    fn __len__(&self) -> usize {
        self.stored.texts.len()
    }

    /// Whether the index has an HNSW graph.
    fn has_graph(&self) -> bool {
        self.graph.is_some()
    }

    /// For each query row (float32 bytes of the index's width), the `top_k` best corpus rows
    /// as `(corpus_id, cosine)`: exact, or through the graph (searching `ef` candidates).
    fn search(
        &self,
        py: Python<'_>,
        queries: &Bound<'_, PyBytes>,
        top_k: usize,
        approximate: bool,
        ef: usize,
    ) -> PyResult<Vec<Vec<(usize, f32)>>> {
        let dim = self.stored.dim;
        let q = rows_of(queries.as_bytes(), dim)?;
        let hits = py
            .detach(|| match (&self.graph, approximate) {
                (Some(graph), true) => graph.search(&q.vectors(), top_k, ef),
                (None, true) => Err(sbert::search::SearchError::Parameter(
                    "this index has no HNSW graph; build it with hnsw=True".into(),
                )),
                (_, false) => {
                    let corpus = sbert::search::Vectors::new(&self.stored.rows, dim)?;
                    sbert::search::semantic_search(
                        &q.vectors(),
                        &corpus,
                        top_k,
                        sbert::search::Score::Cosine,
                    )
                }
            })
            .map_err(|e| to_py(e.into()))?;
        Ok(hits
            .into_iter()
            .map(|h| h.into_iter().map(|x| (x.corpus_id, x.score)).collect())
            .collect())
    }
}

/// A cross-encoder (`sbert.CrossEncoder`): pairs of texts in, one score per label out.
#[pyclass(frozen, module = "sbert._sbert")]
struct Reranker {
    inner: sbert::CrossEncoder,
}

#[pymethods]
impl Reranker {
    /// Loads the cross-encoder `model` (a folder or a hub id in the local cache) on `device`.
    #[new]
    #[pyo3(signature = (model, device="cpu", batch_size=32))]
    fn new(py: Python<'_>, model: String, device: &str, batch_size: usize) -> PyResult<Self> {
        let device = sbert::device(device).map_err(to_py)?;
        py.detach(|| sbert::CrossEncoder::load(&model, &device)?.with_batch_size(batch_size))
            .map(|inner| Self { inner })
            .map_err(to_py)
    }

    /// Scores per pair.
    #[getter]
    fn num_labels(&self) -> usize {
        self.inner.num_labels()
    }

    /// The longest pair in tokens.
    #[getter]
    fn max_length(&self) -> usize {
        self.inner.max_length()
    }

    /// The scores of each `(query, document)` pair, row after row, as float32 bytes (with the
    /// model's activation, or the raw logits).
    fn predict<'py>(
        &self,
        py: Python<'py>,
        pairs: Vec<(String, String)>,
        raw: bool,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        let options = sbert::PredictOptions {
            batch_size: None,
            activation: raw.then_some(sbert::Activation::Identity),
        };
        let scores = py
            .detach(|| self.inner.predict_with(&pairs, &options))
            .map_err(to_py)?;
        let bytes: Vec<u8> = scores
            .as_slice()
            .iter()
            .flat_map(|x| x.to_ne_bytes())
            .collect();
        Ok(PyByteArray::new(py, &bytes))
    }

    /// `documents` ranked against `query`, best first: `(corpus_id, score)` pairs.
    #[pyo3(signature = (query, documents, top_k=None, raw=false))]
    fn rank(
        &self,
        py: Python<'_>,
        query: String,
        documents: Vec<String>,
        top_k: Option<usize>,
        raw: bool,
    ) -> PyResult<Vec<(usize, f32)>> {
        let options = sbert::PredictOptions {
            batch_size: None,
            activation: raw.then_some(sbert::Activation::Identity),
        };
        let ranked = py
            .detach(|| self.inner.rank_with(&query, &documents, top_k, &options))
            .map_err(to_py)?;
        Ok(ranked.into_iter().map(|r| (r.corpus_id, r.score)).collect())
    }
}

/// A SPLADE sparse encoder (`sbert.SparseEncoder`).
#[pyclass(frozen, module = "sbert._sbert")]
struct Sparse {
    inner: sbert::SparseEncoder,
}

#[pymethods]
impl Sparse {
    /// Loads the sparse encoder `model` (a folder or a hub id in the local cache).
    #[new]
    #[pyo3(signature = (model, device="cpu", batch_size=32))]
    fn new(py: Python<'_>, model: String, device: &str, batch_size: usize) -> PyResult<Self> {
        let device = sbert::device(device).map_err(to_py)?;
        py.detach(|| sbert::SparseEncoder::load(&model, &device)?.with_batch_size(batch_size))
            .map(|inner| Self { inner })
            .map_err(to_py)
    }

    /// Dimensions of an embedding (the vocabulary size).
    #[getter]
    fn dimension(&self) -> usize {
        self.inner.dimension()
    }

    /// The longest text in tokens.
    #[getter]
    fn max_seq_length(&self) -> usize {
        self.inner.max_seq_length()
    }

    /// The embeddings of `texts` as a CSR triple of native-endian bytes: row offsets (u64,
    /// `len + 1`), column indices (u32, ascending per row) and values (f32).
    fn encode<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
    ) -> PyResult<(
        Bound<'py, PyByteArray>,
        Bound<'py, PyByteArray>,
        Bound<'py, PyByteArray>,
    )> {
        let rows = py.detach(|| self.inner.encode(&texts)).map_err(to_py)?;
        let mut indptr = Vec::with_capacity((rows.len() + 1) * 8);
        let (mut indices, mut values) = (Vec::new(), Vec::new());
        let mut at = 0u64;
        indptr.extend_from_slice(&at.to_ne_bytes());
        for r in &rows {
            at += r.len() as u64;
            indptr.extend_from_slice(&at.to_ne_bytes());
            indices.extend(r.indices.iter().flat_map(|i| i.to_ne_bytes()));
            values.extend(r.values.iter().flat_map(|v| v.to_ne_bytes()));
        }
        Ok((
            PyByteArray::new(py, &indptr),
            PyByteArray::new(py, &indices),
            PyByteArray::new(py, &values),
        ))
    }

    /// The `top_k` heaviest dimensions of one embedding as `(token, weight)`.
    fn decode(&self, indices: Vec<u32>, values: Vec<f32>, top_k: usize) -> Vec<(String, f32)> {
        self.inner
            .decode(&sbert::SparseEmbedding { indices, values }, top_k)
    }
}

/// Embeds `texts` with `model` and writes them as an index folder at `path` (see
/// `sbert::search::write_index`): replaced whole, only with `overwrite`; with `hnsw`, an
/// HNSW graph too.
#[pyfunction]
#[pyo3(signature = (model, path, texts, overwrite=false, hnsw=false))]
fn write_index(
    py: Python<'_>,
    model: &Model,
    path: std::path::PathBuf,
    texts: Vec<String>,
    overwrite: bool,
    hnsw: bool,
) -> PyResult<()> {
    py.detach(|| {
        // Refused before the corpus is embedded, not after.
        sbert::search::check_index_target(&path, overwrite)?;
        let m = &model.inner;
        let id = m.identity()?;
        let rows = m.embed(&texts)?;
        m.install(|| {
            sbert::search::write_index(
                &path,
                &sbert::search::NewIndex {
                    texts: &texts,
                    rows: rows.as_slice(),
                    model: &id,
                    hnsw: hnsw.then(sbert::search::HnswParams::default),
                },
                overwrite,
            )
        })?;
        Ok::<_, sbert::Error>(())
    })
    .map_err(to_py)
}

#[pymodule]
fn _sbert(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_class::<Index>()?;
    m.add_class::<Reranker>()?;
    m.add_class::<Sparse>()?;
    m.add_function(wrap_pyfunction!(write_index, m)?)?;
    m.add_function(wrap_pyfunction!(quantize, m)?)?;
    m.add_function(wrap_pyfunction!(semantic_search, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(texts: &[Option<&str>]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let (mut offsets, mut data, mut validity) = (vec![0i32], Vec::new(), vec![0u8; 1]);
        for (i, t) in texts.iter().enumerate() {
            if let Some(t) = t {
                data.extend_from_slice(t.as_bytes());
                validity[i / 8] |= 1 << (i % 8);
            }
            offsets.push(data.len() as i32);
        }
        let offsets = offsets.iter().flat_map(|o| o.to_le_bytes()).collect();
        (offsets, data, validity)
    }

    #[test]
    fn arrow_strings_read_slices_nulls_and_refuse_bad_buffers() {
        let (o, d, v) = column(&[Some("a"), None, Some("héllo"), Some("")]);
        let all = arrow_strings(&o, 4, &d, Some(&v), 0, 4).expect("read");
        assert_eq!(all, ["a", "", "héllo", ""]);
        let sliced = arrow_strings(&o, 4, &d, Some(&v), 1, 2).expect("read");
        assert_eq!(sliced, ["", "héllo"]);
        let wide: Vec<u8> = o
            .chunks_exact(4)
            .flat_map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])).to_le_bytes())
            .collect();
        assert_eq!(
            arrow_strings(&wide, 8, &d, None, 0, 4).expect("read"),
            ["a", "", "héllo", ""]
        );
        assert!(
            arrow_strings(&o, 4, &d, None, 0, 5).is_err(),
            "past the offsets"
        );
        assert!(arrow_strings(&o, 2, &d, None, 0, 1).is_err(), "width");
        assert!(
            arrow_strings(&o, 4, &d[..3], None, 0, 4).is_err(),
            "past the data"
        );
        let (o, d, _) = column(&[Some("ok")]);
        let mut bad = d.clone();
        bad[0] = 0xff;
        assert!(arrow_strings(&o, 4, &bad, None, 0, 1).is_err(), "not UTF-8");
    }
}
