//! An index on disk: a corpus's texts and embeddings, an optional HNSW graph, and the
//! identity of the model that embedded them, in one folder that is replaced as one unit.
//!
//! # Layout and protocol
//!
//! * The data files carry a generation in their names: `embeddings.<gen>.npy` (float32
//!   `(n, dim)`), `texts.<gen>.jsonl` (one JSON string per line, in row order) and, with a
//!   graph, `hnsw.<gen>.hnsw.graph` / `hnsw.<gen>.hnsw.data`.
//! * `index.json`, the manifest, names every file of its generation with a checksum and size,
//!   and the model's identity. It is written last, by an atomic rename: until it is, readers
//!   see the previous generation whole; a build interrupted at any point leaves the old index
//!   as it was (its stray new files are removed by the next build).
//! * Writers take `.sbert-index.lock` (exclusive, non-blocking: a second writer is refused at
//!   once, not interleaved). Readers hold a shared lock on `.sbert-index.read.lock` while they
//!   read; the writer takes it exclusively only to swap the manifest and remove the old
//!   generation, so a reader never sees a file vanish under it.
//! * A reader checks the manifest's format and model identity, then each file before trusting
//!   a byte of it: a regular file (not a FIFO, a device or a link to one), of the recorded size
//!   and checksum.
//!
//! Checksums are FNV-1a 64 over the bytes plus the length: they detect corruption and
//! replacement, not tampering by someone who can also rewrite the manifest.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::approximate::{checksum_bytes, regular_file_len};
use crate::{ApproximateIndex, HnswParams, SavedGraph, SearchError};

/// The manifest's format tag.
pub const INDEX_FORMAT: &str = "sbert-index/2";
const MANIFEST: &str = "index.json";
const WRITE_LOCK: &str = ".sbert-index.lock";
const READ_LOCK: &str = ".sbert-index.read.lock";
/// A manifest is a few hundred bytes; anything far larger is not one.
const MANIFEST_MAX_BYTES: u64 = 1 << 20;

/// What an index records of the model that embedded it. Two identities match when everything
/// but the name agrees: the same model copied to another folder is the same model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// The model's folder name or hub id (informational).
    pub name: String,
    /// A hash of the files that define the model (weights, configs, tokenizer, every module)
    /// and of the settings that change an embedding.
    pub fingerprint: String,
    /// Embedding width.
    pub dim: usize,
    /// Pooling, as sentence-transformers names it.
    pub pooling: String,
    /// Whether embeddings are L2-normalized.
    pub normalize: bool,
    /// Longest input in tokens.
    pub max_seq_length: usize,
}

impl ModelIdentity {
    /// Whether an index embedded by `self` may be searched with `other`'s queries.
    pub fn matches(&self, other: &ModelIdentity) -> bool {
        self.fingerprint == other.fingerprint
            && self.dim == other.dim
            && self.pooling == other.pooling
            && self.normalize == other.normalize
            && self.max_seq_length == other.max_seq_length
    }
}

/// One data file of the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileEntry {
    file: String,
    checksum: String,
}

/// The graph's entry of the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GraphEntry {
    links: usize,
    ef_construction: usize,
    saved: SavedGraph,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format: String,
    count: usize,
    dim: usize,
    model: ModelIdentity,
    embeddings: FileEntry,
    texts: FileEntry,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hnsw: Option<GraphEntry>,
}

/// What [`write_index`] writes.
#[derive(Debug, Clone, Copy)]
pub struct NewIndex<'a> {
    /// The corpus, one text per row.
    pub texts: &'a [String],
    /// Its embeddings, row-major, `texts.len()` rows of `model.dim` values.
    pub rows: &'a [f32],
    /// The model that embedded them.
    pub model: &'a ModelIdentity,
    /// Also build and save an HNSW graph with these parameters.
    pub hnsw: Option<HnswParams>,
}

/// An index read back and checked: texts, their embeddings, the graph's entry if it has one.
#[derive(Debug)]
pub struct StoredIndex {
    dir: PathBuf,
    /// The corpus, one text per row.
    pub texts: Vec<String>,
    /// The embeddings, row-major.
    pub rows: Vec<f32>,
    /// Values per row.
    pub dim: usize,
    /// The model that built it.
    pub model: ModelIdentity,
    graph: Option<SavedGraph>,
}

fn io_error(path: &Path, what: &str, e: impl std::fmt::Display) -> SearchError {
    SearchError::Io(format!("{what} {}: {e}", path.display()))
}

/// `dir/name` opened (created when missing) as a lock file for a writer.
fn lock_file(dir: &Path, name: &str) -> Result<File, SearchError> {
    let path = dir.join(name);
    File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io_error(&path, "opening the lock", e))
}

/// A generation name no other build has used: the time, the process and a counter.
fn new_generation() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mixed = nanos
        ^ (u64::from(std::process::id()) << 40)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!("{mixed:016x}")
}

/// Whether `name` is a file an index writes (any generation, the manifest, the locks), so a
/// folder holding only such files may be written into.
fn is_index_file(name: &str) -> bool {
    [MANIFEST, WRITE_LOCK, READ_LOCK].contains(&name)
        || sbert_io::output::is_temporary(name)
        || generation_of(name).is_some()
        || FORMAT_1_FILES.contains(&name)
}

/// The data files of an `sbert-index/1` folder, replaced by the first build over it.
const FORMAT_1_FILES: [&str; 4] = [
    "embeddings.npy",
    "texts.jsonl",
    "hnsw.hnsw.graph",
    "hnsw.hnsw.data",
];

/// The generation in a data file's name (`embeddings.<gen>.npy`, `texts.<gen>.jsonl`,
/// `hnsw.<gen>.hnsw.graph`, `hnsw.<gen>.hnsw.data`).
fn generation_of(name: &str) -> Option<&str> {
    let gen = name
        .strip_prefix("embeddings.")
        .and_then(|r| r.strip_suffix(".npy"))
        .or_else(|| {
            name.strip_prefix("texts.")
                .and_then(|r| r.strip_suffix(".jsonl"))
        })
        .or_else(|| {
            name.strip_prefix("hnsw.").and_then(|r| {
                r.strip_suffix(".hnsw.graph")
                    .or_else(|| r.strip_suffix(".hnsw.data"))
            })
        })?;
    (gen.len() == 16 && gen.bytes().all(|b| b.is_ascii_hexdigit())).then_some(gen)
}

/// Embeds nothing: writes `new` into `dir` as described in the module docs, replacing an
/// index already there only with `overwrite`.
///
/// # Errors
/// `dir` holding files that are not an index's, an index without `overwrite`, another
/// writer at work, rows that do not fit the texts or are not finite, a failed write (the
/// previous index is then intact).
pub fn write_index(dir: &Path, new: &NewIndex<'_>, overwrite: bool) -> Result<(), SearchError> {
    let dim = new.model.dim;
    let vectors = crate::Vectors::new(new.rows, dim)?;
    if vectors.len() != new.texts.len() {
        return Err(SearchError::Parameter(format!(
            "{} rows for {} texts",
            vectors.len(),
            new.texts.len()
        )));
    }
    if new.texts.is_empty() {
        return Err(SearchError::Empty("corpus"));
    }
    if let Some(params) = new.hnsw {
        params.check()?;
    }
    check_index_target(dir, overwrite)?;
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "creating", e))?;
    let writer = lock_file(dir, WRITE_LOCK)?;
    match writer.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(SearchError::Io(format!(
                "another `index build` is writing {}; try again when it is done",
                dir.display()
            )))
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(io_error(&dir.join(WRITE_LOCK), "locking", e))
        }
    }
    // Again under the lock: another writer may have finished meanwhile.
    check_index_target(dir, overwrite)?;

    let gen = new_generation();
    let mut npy = sbert_io::npy_header(new.texts.len(), dim);
    npy.reserve(new.rows.len() * 4);
    for x in new.rows {
        npy.extend_from_slice(&x.to_le_bytes());
    }
    let mut jsonl = Vec::new();
    for t in new.texts {
        serde_json::to_writer(&mut jsonl, t).map_err(|e| SearchError::Io(e.to_string()))?;
        jsonl.push(b'\n');
    }
    let write = |name: &str, bytes: &[u8]| -> Result<FileEntry, SearchError> {
        sbert_io::output::write_file(dir.join(name), bytes)
            .map_err(|e| SearchError::Io(e.to_string()))?;
        Ok(FileEntry {
            file: name.to_string(),
            checksum: checksum_bytes(bytes),
        })
    };
    let embeddings = write(&format!("embeddings.{gen}.npy"), &npy)?;
    drop(npy);
    let texts = write(&format!("texts.{gen}.jsonl"), &jsonl)?;
    drop(jsonl);
    let hnsw = match new.hnsw {
        Some(params) => {
            let graph = ApproximateIndex::build(&vectors, params)?;
            Some(GraphEntry {
                links: params.links,
                ef_construction: params.ef_construction,
                saved: graph.save(dir, &format!("hnsw.{gen}"))?,
            })
        }
        None => None,
    };
    let manifest = Manifest {
        format: INDEX_FORMAT.into(),
        count: new.texts.len(),
        dim,
        model: new.model.clone(),
        embeddings,
        texts,
        hnsw,
    };
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| SearchError::Io(e.to_string()))?;
    // Readers finish what they are reading before the old generation goes.
    let readers = lock_file(dir, READ_LOCK)?;
    readers
        .lock()
        .map_err(|e| io_error(&dir.join(READ_LOCK), "locking", e))?;
    sbert_io::output::write_file(dir.join(MANIFEST), &bytes)
        .map_err(|e| SearchError::Io(e.to_string()))?;
    for name in list(dir)? {
        let stale = match generation_of(&name) {
            Some(g) => g != gen,
            None => FORMAT_1_FILES.contains(&name.as_str()),
        };
        if stale {
            let path = dir.join(&name);
            std::fs::remove_file(&path).map_err(|e| io_error(&path, "removing", e))?;
        }
    }
    Ok(())
}

/// Whether [`write_index`] may write into `dir`: a folder (or nothing yet) holding no files but
/// an index's, and no index unless `overwrite`. Cheap: call it before embedding a corpus, so a
/// refusal comes before the work; `write_index` checks again under its lock.
///
/// # Errors
/// `dir` is a file, holds other files (named), or holds an index and `overwrite` is false.
pub fn check_index_target(dir: &Path, overwrite: bool) -> Result<(), SearchError> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        return Err(SearchError::Io(format!(
            "{} exists and is not a folder",
            dir.display()
        )));
    }
    let foreign: Vec<String> = list(dir)?
        .into_iter()
        .filter(|n| !is_index_file(n))
        .collect();
    if !foreign.is_empty() {
        return Err(SearchError::Io(format!(
            "{} holds files that are not an sbert index ({}); refusing to write into it",
            dir.display(),
            foreign.join(", ")
        )));
    }
    if dir.join(MANIFEST).exists() && !overwrite {
        return Err(SearchError::Io(format!(
            "{} already holds an index; pass --overwrite to replace it",
            dir.display()
        )));
    }
    Ok(())
}

fn list(dir: &Path) -> Result<BTreeSet<String>, SearchError> {
    std::fs::read_dir(dir)
        .map_err(|e| io_error(dir, "reading", e))?
        .map(|entry| {
            entry
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .map_err(|e| io_error(dir, "reading", e))
        })
        .collect()
}

/// `dir/name`'s bytes, after checking that it is a regular file of the recorded size and,
/// once read, of the recorded checksum.
fn read_checked(dir: &Path, entry: &FileEntry) -> Result<Vec<u8>, SearchError> {
    if entry.file.contains(['/', '\\']) || generation_of(&entry.file).is_none() {
        return Err(SearchError::Io(format!(
            "{}: {:?} is not a file name an index writes",
            dir.join(MANIFEST).display(),
            entry.file
        )));
    }
    let path = dir.join(&entry.file);
    let len = regular_file_len(&path)?;
    let want_len = entry
        .checksum
        .rsplit('-')
        .next()
        .and_then(|n| n.parse::<u64>().ok());
    if want_len != Some(len) {
        return Err(SearchError::Io(format!(
            "{} is corrupt or was replaced: {len} bytes, the manifest records {}",
            path.display(),
            entry.checksum
        )));
    }
    let bytes = std::fs::read(&path).map_err(|e| io_error(&path, "reading", e))?;
    let got = checksum_bytes(&bytes);
    if got != entry.checksum {
        return Err(SearchError::Io(format!(
            "{} is corrupt or was replaced: checksum {got}, the manifest records {}",
            path.display(),
            entry.checksum
        )));
    }
    Ok(bytes)
}

impl StoredIndex {
    /// Reads the index in `dir` for queries embedded by `model`, checking every file.
    ///
    /// # Errors
    /// No manifest, another format, another model, a file that is missing, not a regular
    /// file, or not what the manifest records; texts and rows that disagree.
    pub fn open(dir: &Path, model: &ModelIdentity) -> Result<Self, SearchError> {
        let manifest_path = dir.join(MANIFEST);
        // The writer's reader lock, opened, never created: a reader writes nothing (and works
        // on a read-only folder, where no writer can be at work either).
        let reading = File::open(dir.join(READ_LOCK)).ok();
        if let Some(lock) = &reading {
            lock.lock_shared()
                .map_err(|e| io_error(&dir.join(READ_LOCK), "locking", e))?;
        }
        let len = regular_file_len(&manifest_path)
            .map_err(|e| SearchError::Io(format!("{e} (is {} an index?)", dir.display())))?;
        if len > MANIFEST_MAX_BYTES {
            return Err(SearchError::Io(format!(
                "{} is {len} bytes: not an index manifest",
                manifest_path.display()
            )));
        }
        let raw =
            std::fs::read(&manifest_path).map_err(|e| io_error(&manifest_path, "reading", e))?;
        let format = serde_json::from_slice::<serde_json::Value>(&raw)
            .ok()
            .and_then(|v| v.get("format").and_then(|f| f.as_str()).map(String::from));
        if format.as_deref() != Some(INDEX_FORMAT) {
            return Err(SearchError::Io(format!(
                "{}: format {}, expected {INDEX_FORMAT:?}; rebuild the index with `sbert index build --overwrite`",
                manifest_path.display(),
                format.map_or_else(|| "missing".to_string(), |f| format!("{f:?}"))
            )));
        }
        let m: Manifest = serde_json::from_slice(&raw)
            .map_err(|e| io_error(&manifest_path, "corrupt manifest", e))?;
        if !m.model.matches(model) {
            return Err(SearchError::Io(format!(
                "{} was built with model {} (fingerprint {}, dim {}, pooling {}), not with {} \
                 (fingerprint {}, dim {}, pooling {}); rebuild it with `sbert index build`",
                dir.display(),
                m.model.name,
                m.model.fingerprint,
                m.model.dim,
                m.model.pooling,
                model.name,
                model.fingerprint,
                model.dim,
                model.pooling
            )));
        }
        if m.dim != m.model.dim || m.count == 0 {
            return Err(SearchError::Io(format!(
                "{}: {} rows of {} values for a model of {}",
                manifest_path.display(),
                m.count,
                m.dim,
                m.model.dim
            )));
        }
        let texts_bytes = read_checked(dir, &m.texts)?;
        let texts_path = dir.join(&m.texts.file);
        let texts = std::str::from_utf8(&texts_bytes)
            .map_err(|e| io_error(&texts_path, "reading", e))?
            .lines()
            .enumerate()
            .map(|(i, line)| {
                serde_json::from_str::<String>(line).map_err(|e| {
                    SearchError::Io(format!("{} line {}: {e}", texts_path.display(), i + 1))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        drop(texts_bytes);
        if texts.len() != m.count {
            return Err(SearchError::Io(format!(
                "{} holds {} texts, the manifest says {}",
                texts_path.display(),
                texts.len(),
                m.count
            )));
        }
        let npy = read_checked(dir, &m.embeddings)?;
        let npy_path = dir.join(&m.embeddings.file);
        let header = sbert_io::npy_header(m.count, m.dim);
        if !npy.starts_with(&header) || npy.len() != header.len() + m.count * m.dim * 4 {
            return Err(SearchError::Io(format!(
                "{} is not a float32 ({}, {}) array",
                npy_path.display(),
                m.count,
                m.dim
            )));
        }
        let rows: Vec<f32> = npy[header.len()..]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some(i) = rows.iter().position(|v| !v.is_finite()) {
            return Err(SearchError::Io(format!(
                "{}: row {} holds a NaN or infinite value",
                npy_path.display(),
                i / m.dim
            )));
        }
        if let Some(g) = &m.hnsw {
            if g.saved.len != m.count || g.saved.dim != m.dim {
                return Err(SearchError::Io(format!(
                    "{}: the HNSW graph holds {} rows of {}, the index {} of {}",
                    manifest_path.display(),
                    g.saved.len,
                    g.saved.dim,
                    m.count,
                    m.dim
                )));
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            texts,
            rows,
            dim: m.dim,
            model: m.model,
            graph: m.hnsw.map(|g| g.saved),
        })
    }

    /// Whether the index has an HNSW graph.
    pub fn has_graph(&self) -> bool {
        self.graph.is_some()
    }

    /// The HNSW graph, read and checked against its checksums.
    ///
    /// # Errors
    /// No graph in this index, or a graph file that is not what the manifest records.
    pub fn approximate(&self) -> Result<ApproximateIndex, SearchError> {
        let Some(saved) = &self.graph else {
            return Err(SearchError::Io(format!(
                "{} has no HNSW graph; rebuild it with `sbert index build --hnsw`",
                self.dir.display()
            )));
        };
        ApproximateIndex::load(&self.dir, saved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rewrites a file in place, as corruption would.
    fn overwrite_file(path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).expect("write");
    }

    fn identity(fingerprint: &str) -> ModelIdentity {
        ModelIdentity {
            name: "m".into(),
            fingerprint: fingerprint.into(),
            dim: 4,
            pooling: "mean".into(),
            normalize: true,
            max_seq_length: 128,
        }
    }

    fn corpus(n: usize, seed: u64) -> (Vec<String>, Vec<f32>) {
        let mut next = crate::uniform(seed);
        let texts = (0..n).map(|i| format!("text {i} of {seed}")).collect();
        let rows = (0..n * 4).map(|_| next()).collect();
        (texts, rows)
    }

    fn build(
        dir: &Path,
        n: usize,
        seed: u64,
        hnsw: bool,
        overwrite: bool,
    ) -> Result<(), SearchError> {
        let (texts, rows) = corpus(n, seed);
        let id = identity("f");
        write_index(
            dir,
            &NewIndex {
                texts: &texts,
                rows: &rows,
                model: &id,
                hnsw: hnsw.then(HnswParams::default),
            },
            overwrite,
        )
    }

    fn data_file(dir: &Path, prefix: &str) -> PathBuf {
        list(dir)
            .expect("list")
            .into_iter()
            .find(|n| n.starts_with(prefix) && generation_of(n).is_some())
            .map(|n| dir.join(n))
            .expect("a data file")
    }

    #[test]
    fn an_index_reads_back_and_an_overwrite_replaces_it_whole() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("idx");
        build(&dir, 20, 1, true, false).expect("build");
        let first = StoredIndex::open(&dir, &identity("f")).expect("open");
        assert_eq!(first.texts.len(), 20);
        assert_eq!(first.rows, corpus(20, 1).1);
        assert!(first.approximate().is_ok());
        assert!(build(&dir, 20, 2, true, false).is_err(), "no overwrite");
        build(&dir, 30, 2, false, true).expect("overwrite");
        let second = StoredIndex::open(&dir, &identity("f")).expect("open");
        assert_eq!((second.texts.len(), second.has_graph()), (30, false));
        // Only the new generation's files remain.
        let names = list(&dir).expect("list");
        let gens: BTreeSet<&str> = names.iter().filter_map(|n| generation_of(n)).collect();
        assert_eq!(gens.len(), 1, "{names:?}");
        assert!(!names.iter().any(|n| n.contains("hnsw")), "{names:?}");
    }

    #[test]
    fn the_same_model_in_another_folder_matches_and_another_model_does_not() {
        let tmp = tempfile::tempdir().expect("tmp");
        build(tmp.path(), 5, 1, false, false).expect("build");
        let moved = ModelIdentity {
            name: "copied elsewhere".into(),
            ..identity("f")
        };
        assert!(StoredIndex::open(tmp.path(), &moved).is_ok());
        let err = StoredIndex::open(tmp.path(), &identity("other")).expect_err("another model");
        assert!(err.to_string().contains("was built with model"), "{err}");
    }

    #[test]
    fn corruption_that_stays_finite_and_swapped_files_are_detected() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        build(dir, 8, 1, true, false).expect("build");
        // One value of the embeddings changed, still finite, same size.
        let npy = data_file(dir, "embeddings.");
        let mut bytes = std::fs::read(&npy).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        overwrite_file(&npy, &bytes);
        let err = StoredIndex::open(dir, &identity("f")).expect_err("corrupt rows");
        assert!(err.to_string().contains("corrupt"), "{err}");
        bytes[last] ^= 0x01;
        overwrite_file(&npy, &bytes);
        // A text changed.
        let texts = data_file(dir, "texts.");
        let original = std::fs::read(&texts).expect("read");
        overwrite_file(
            &texts,
            &original
                .iter()
                .map(|&b| if b == b'1' { b'2' } else { b })
                .collect::<Vec<_>>(),
        );
        assert!(StoredIndex::open(dir, &identity("f")).is_err());
        overwrite_file(&texts, &original);
        let index = StoredIndex::open(dir, &identity("f")).expect("restored");
        // A graph file replaced.
        let graph = data_file(dir, "hnsw.");
        let original = std::fs::read(&graph).expect("read");
        overwrite_file(&graph, &original[..original.len() / 2]);
        assert!(index.approximate().is_err());
    }

    #[test]
    fn a_manifest_that_names_no_files_or_a_foreign_path_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        build(dir, 4, 1, false, false).expect("build");
        let path = dir.join(MANIFEST);
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        let original = m.clone();
        m.as_object_mut().expect("object").remove("embeddings");
        m["files"] = serde_json::json!([]);
        overwrite_file(&path, &serde_json::to_vec(&m).expect("json"));
        assert!(StoredIndex::open(dir, &identity("f")).is_err());
        let mut m = original;
        m["texts"]["file"] = serde_json::json!("../../etc/passwd");
        overwrite_file(&path, &serde_json::to_vec(&m).expect("json"));
        let err = StoredIndex::open(dir, &identity("f")).expect_err("foreign path");
        assert!(err.to_string().contains("not a file name"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_data_file_that_is_a_fifo_or_a_device_link_is_refused_without_reading() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        build(dir, 4, 1, false, false).expect("build");
        let npy = data_file(dir, "embeddings.");
        std::fs::remove_file(&npy).expect("rm");
        std::os::unix::fs::symlink("/dev/zero", &npy).expect("symlink");
        let err = StoredIndex::open(dir, &identity("f")).expect_err("device");
        assert!(err.to_string().contains("not a regular file"), "{err}");
        std::fs::remove_file(&npy).expect("rm");
        let status = std::process::Command::new("mkfifo")
            .arg(&npy)
            .status()
            .expect("mkfifo");
        assert!(status.success());
        let err = StoredIndex::open(dir, &identity("f")).expect_err("fifo");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn an_interrupted_build_leaves_the_old_index_whole_and_the_next_build_cleans_up() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        build(dir, 6, 1, false, false).expect("build");
        // What a build killed before its manifest leaves: data files of a new generation.
        let (texts, rows) = corpus(6, 9);
        std::fs::write(dir.join("embeddings.00000000000000ab.npy"), [1u8; 64]).expect("w");
        std::fs::write(dir.join("texts.00000000000000ab.jsonl"), b"\"x\"\n").expect("w");
        let old = StoredIndex::open(dir, &identity("f")).expect("the old index");
        assert_eq!(old.rows, corpus(6, 1).1);
        let id = identity("f");
        write_index(
            dir,
            &NewIndex {
                texts: &texts,
                rows: &rows,
                model: &id,
                hnsw: None,
            },
            true,
        )
        .expect("rebuild");
        let names = list(dir).expect("list");
        assert!(
            !names.iter().any(|n| n.contains("00000000000000ab")),
            "{names:?}"
        );
        assert_eq!(StoredIndex::open(dir, &id).expect("open").rows, rows);
    }

    #[test]
    fn a_second_writer_is_refused_while_the_first_holds_the_lock() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path();
        let held = lock_file(dir, WRITE_LOCK).expect("lock");
        held.try_lock().expect("free");
        let err = build(dir, 4, 1, false, false).expect_err("busy");
        assert!(err.to_string().contains("another `index build`"), "{err}");
        drop(held);
        build(dir, 4, 1, false, false).expect("free again");
    }

    #[test]
    fn a_folder_of_other_files_is_not_written_into() {
        let tmp = tempfile::tempdir().expect("tmp");
        std::fs::write(tmp.path().join("notes.txt"), b"mine").expect("w");
        let err = build(tmp.path(), 4, 1, false, true).expect_err("foreign files");
        assert!(err.to_string().contains("notes.txt"), "{err}");
        assert_eq!(
            std::fs::read(tmp.path().join("notes.txt")).expect("kept"),
            b"mine"
        );
    }
}
