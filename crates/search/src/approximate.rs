//! Approximate nearest neighbours by cosine: an HNSW graph (Malkov & Yashunin) built and
//! searched by the `hnsw_rs` crate over L2-normalized rows, with our own distance kernel.

use std::io::Read as _;
use std::path::Path;

use hnsw_rs::prelude::{AnnT as _, Distance, Hnsw, HnswIo};

use rayon::prelude::*;

use crate::scores::{normalized, TopK};
use crate::{check_search, Hit, SearchError, Vectors};

/// How the graph is built. The defaults (16 links, `ef_construction` 200) are hnswlib's
/// common choice for sentence embeddings: recall@10 ≥ 0.95 at a search width of 64–128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    /// Links kept per node on the upper layers (`M`; the bottom layer keeps `2·M`), 2..=128.
    pub links: usize,
    /// Candidates considered while inserting a point (`efConstruction`), at least `links`.
    pub ef_construction: usize,
}

impl HnswParams {
    /// Refuses `links` outside 2..=128 or `ef_construction` below `links`.
    ///
    /// # Errors
    /// [`SearchError::Parameter`], naming the bound.
    pub fn check(&self) -> Result<(), SearchError> {
        if !(2..=128).contains(&self.links) {
            return Err(SearchError::Parameter(format!(
                "HNSW links {} must be between 2 and 128",
                self.links
            )));
        }
        if self.ef_construction < self.links {
            return Err(SearchError::Parameter(format!(
                "ef_construction {} must be at least links ({})",
                self.ef_construction, self.links
            )));
        }
        Ok(())
    }
}

impl Default for HnswParams {
    fn default() -> Self {
        Self {
            links: 16,
            ef_construction: 200,
        }
    }
}

/// `1 − cos` of two L2-normalized rows, clamped to `[0, 2]` (the graph wants no negative
/// distance from rounding). Eight partial sums so the loop vectorizes.
#[derive(Debug, Default, Clone, Copy)]
struct CosineDistance;

impl Distance<f32> for CosineDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).clamp(0.0, 2.0)
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Recall@k of `found` against `exact` (both one list per query, in query order): the share
/// of the exact hits that `found` holds, by `corpus_id`, over all queries. 1.0 when every
/// exact hit is found.
pub fn recall(found: &[Vec<Hit>], exact: &[Vec<Hit>]) -> f64 {
    let (mut hit, mut all) = (0usize, 0usize);
    for (f, e) in found.iter().zip(exact) {
        all += e.len();
        hit += e
            .iter()
            .filter(|x| f.iter().any(|h| h.corpus_id == x.corpus_id))
            .count();
    }
    if all == 0 {
        1.0
    } else {
        hit as f64 / all as f64
    }
}

/// An HNSW graph over a corpus: search is approximate (compare with
/// [`semantic_search`](crate::semantic_search) for recall), scores are exact cosines of the
/// rows it returns.
///
/// # Example
///
/// ```
/// use sbert_search::{ApproximateIndex, Vectors, HnswParams};
///
/// # fn main() -> Result<(), sbert_search::SearchError> {
/// let corpus = [1.0, 0.0, 0.0, 1.0, 0.6, 0.8];
/// let index = ApproximateIndex::build(&Vectors::new(&corpus, 2)?, HnswParams::default())?;
/// let hits = index.search(&Vectors::new(&[0.8, 0.6], 2)?, 1, 16)?;
/// assert_eq!(hits[0][0].corpus_id, 2);
/// # Ok(())
/// # }
/// ```
pub struct ApproximateIndex {
    graph: Hnsw<'static, f32, CosineDistance>,
    len: usize,
    dim: usize,
}

impl std::fmt::Debug for ApproximateIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApproximateIndex")
            .field("len", &self.len)
            .field("dim", &self.dim)
            .field("links", &self.graph.get_max_nb_connection())
            .field("ef_construction", &self.graph.get_ef_construction())
            .finish()
    }
}

impl ApproximateIndex {
    /// Builds the graph over `corpus` (rows normalized first; row `i` is `corpus_id` `i`),
    /// inserting in parallel on all cores.
    ///
    /// # Errors
    /// An empty corpus, or parameters out of range ([`SearchError::Parameter`]).
    pub fn build(corpus: &Vectors<'_>, params: HnswParams) -> Result<Self, SearchError> {
        if corpus.is_empty() {
            return Err(SearchError::Empty("corpus"));
        }
        params.check()?;
        let rows = normalized(corpus);
        let dim = corpus.dim();
        let mut graph = Hnsw::new(
            params.links,
            corpus.len(),
            16,
            params.ef_construction,
            CosineDistance,
        );
        let items: Vec<(&[f32], usize)> = rows.chunks_exact(dim).zip(0..).collect();
        graph.parallel_insert_slice(&items);
        graph.set_searching_mode(true);
        Ok(Self {
            graph,
            len: corpus.len(),
            dim,
        })
    }

    /// Rows indexed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no rows are indexed (never true of a built or loaded index).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Values per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The `top_k` nearest rows to each query by cosine, best first (equal scores: the smaller
    /// `corpus_id` first), exploring `ef` candidates on the bottom layer (raised to `top_k`
    /// when smaller): a wider search finds more of the exact top-k and costs more. Queries
    /// run in parallel on all cores.
    ///
    /// # Errors
    /// Empty queries, another dimension, a `top_k` of 0 (capped at `len()`), `ef` of 0.
    pub fn search(
        &self,
        queries: &Vectors<'_>,
        top_k: usize,
        ef: usize,
    ) -> Result<Vec<Vec<Hit>>, SearchError> {
        let top_k = check_search(queries, self.len, self.dim, top_k)?;
        if ef == 0 {
            return Err(SearchError::Zero("ef"));
        }
        let ef = ef.max(top_k);
        let q = normalized(queries);
        if queries.len() == 1 {
            return Ok(vec![self.one(&q, top_k, ef)]);
        }
        // On the current rayon pool (the caller's `install`, else the global one).
        Ok(q.par_chunks_exact(self.dim)
            .map(|query| self.one(query, top_k, ef))
            .collect())
    }

    fn one(&self, query: &[f32], top_k: usize, ef: usize) -> Vec<Hit> {
        let mut list = TopK::new(top_k);
        for n in self.graph.search(query, top_k, ef) {
            // A cosine, kept in [-1, 1] as the exact search keeps it.
            list.push((1.0 - n.distance).clamp(-1.0, 1.0), n.d_id);
        }
        list.into_sorted()
            .into_iter()
            .map(|s| Hit {
                corpus_id: s.id,
                score: s.score,
            })
            .collect()
    }

    /// Writes the graph and its rows into `dir` as `<basename>.hnsw.graph` and
    /// `<basename>.hnsw.data` and returns their names with a checksum of each, for
    /// [`ApproximateIndex::load`].
    ///
    /// # Errors
    /// When a file cannot be written or read back.
    pub fn save(&self, dir: &Path, basename: &str) -> Result<SavedGraph, SearchError> {
        let written = self.graph.file_dump(dir, basename).map_err(|e| {
            SearchError::Io(format!("writing the HNSW graph in {}: {e}", dir.display()))
        })?;
        Ok(SavedGraph {
            files: checksums(dir, &written)?,
            len: self.len,
            dim: self.dim,
        })
    }

    /// Reads a graph written by [`ApproximateIndex::save`], after checking both files against
    /// `expected` (the reader of `hnsw_rs` trusts its input, so a file that changed since it
    /// was written is refused here, by name, before it is parsed).
    ///
    /// # Errors
    /// A record that does not name the two files, a missing file or one that is not a regular
    /// file, a checksum or size that differs, or a graph of another length or dimension than
    /// `expected` records.
    pub fn load(dir: &Path, expected: &SavedGraph) -> Result<Self, SearchError> {
        let basename = expected
            .files
            .first()
            .and_then(|(name, _)| name.strip_suffix(".hnsw.graph"))
            .filter(|b| !b.is_empty() && !b.contains(['/', '\\']))
            .ok_or_else(|| {
                SearchError::Io(format!(
                    "the HNSW graph record for {} does not name its files",
                    dir.display()
                ))
            })?;
        let found = checksums(dir, basename)?;
        let names = |files: &[(String, String)]| -> Vec<String> {
            files.iter().map(|(n, _)| n.clone()).collect()
        };
        if names(&expected.files) != names(&found) {
            return Err(SearchError::Io(format!(
                "the HNSW graph record for {} names {:?}, expected {:?}",
                dir.display(),
                names(&expected.files),
                names(&found)
            )));
        }
        for ((name, want), (_, got)) in expected.files.iter().zip(&found) {
            if want != got {
                return Err(SearchError::Io(format!(
                    "{} is corrupt or was replaced: checksum {}, expected {}",
                    dir.join(name).display(),
                    got,
                    want
                )));
            }
        }
        // The loader borrows itself for the graph's lifetime; it is a path and a few options
        // (rows are copied into the graph), so it is kept for the process's life.
        let io: &'static HnswIo = Box::leak(Box::new(HnswIo::new(dir, basename)));
        let mut graph: Hnsw<'static, f32, CosineDistance> =
            io.load_hnsw_with_dist(CosineDistance).map_err(|e| {
                SearchError::Io(format!("reading the HNSW graph in {}: {e}", dir.display()))
            })?;
        graph.set_searching_mode(true);
        let len = graph.get_nb_point();
        let dim = graph.get_point_indexation().get_data_dimension();
        if len != expected.len || dim != expected.dim {
            return Err(SearchError::Io(format!(
                "the HNSW graph in {} holds {len} rows of {dim} values, expected {} of {}",
                dir.display(),
                expected.len,
                expected.dim
            )));
        }
        Ok(Self { graph, len, dim })
    }
}

/// What [`ApproximateIndex::save`] wrote: the files' names with an FNV-1a checksum of each,
/// and the graph's shape. Serializable, so an index manifest can carry it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedGraph {
    /// `(file name, checksum)` of the graph and of its rows.
    pub files: Vec<(String, String)>,
    /// Rows.
    pub len: usize,
    /// Values per row.
    pub dim: usize,
}

/// `(file name, checksum)` of the graph's two files in `dir`.
fn checksums(dir: &Path, basename: &str) -> Result<Vec<(String, String)>, SearchError> {
    ["hnsw.graph", "hnsw.data"]
        .iter()
        .map(|suffix| {
            let name = format!("{basename}.{suffix}");
            let sum = checksum(&dir.join(&name))?;
            Ok((name, sum))
        })
        .collect()
}

/// The length of `path`, a regular file (after links): a FIFO, a device or a folder is
/// refused before it is opened (opening a FIFO blocks; `/dev/zero` never ends).
pub(crate) fn regular_file_len(path: &Path) -> Result<u64, SearchError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| SearchError::Io(format!("reading {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(SearchError::Io(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(meta.len())
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// FNV-1a (64-bit) of `bytes` and their length, as `<hex>-<length>`.
pub(crate) fn checksum_bytes(bytes: &[u8]) -> String {
    format!("{:016x}-{}", fnv1a(FNV_OFFSET, bytes), bytes.len())
}

/// [`checksum_bytes`] of a regular file, read in blocks.
fn checksum(path: &Path) -> Result<String, SearchError> {
    regular_file_len(path)?;
    let mut file = std::fs::File::open(path)
        .map_err(|e| SearchError::Io(format!("reading {}: {e}", path.display())))?;
    let mut hash = FNV_OFFSET;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| SearchError::Io(format!("reading {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hash = fnv1a(hash, &buf[..n]);
    }
    Ok(format!("{hash:016x}-{total}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{semantic_search, Score};

    /// `n` rows in `dim` dimensions around 20 centres (clustered, as sentence embeddings
    /// are), from a fixed LCG.
    fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut next = crate::uniform(seed);
        let centres: Vec<f32> = (0..20 * dim).map(|_| next()).collect();
        (0..n)
            .flat_map(|i| {
                let c = &centres[(i % 20) * dim..(i % 20 + 1) * dim];
                c.iter().map(|x| x + 0.6 * next()).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn finds_the_exact_neighbours_with_exact_scores_and_survives_a_save() {
        let dim = 24;
        let rows = clustered(3000, dim, 11);
        let queries = clustered(200, dim, 12);
        let (c, q) = (
            Vectors::new(&rows, dim).expect("rows"),
            Vectors::new(&queries, dim).expect("queries"),
        );
        let exact = semantic_search(&q, &c, 10, Score::Cosine).expect("exact");
        let index = ApproximateIndex::build(&c, HnswParams::default()).expect("build");
        assert_eq!((index.len(), index.dim()), (3000, dim));
        let narrow = index.search(&q, 10, 10).expect("search");
        let wide = index.search(&q, 10, 200).expect("search");
        assert_eq!(recall(&exact, &exact), 1.0);
        let half: Vec<Vec<Hit>> = exact.iter().map(|e| e[..5].to_vec()).collect();
        assert!((recall(&half, &exact) - 0.5).abs() < 1e-12);
        let (r_narrow, r_wide) = (recall(&narrow, &exact), recall(&wide, &exact));
        assert!(r_wide >= 0.99, "recall@10 at ef 200: {r_wide}");
        assert!(r_wide >= r_narrow, "{r_wide} < {r_narrow}");
        for (found, truth) in wide.iter().zip(&exact) {
            assert_eq!(found.len(), 10);
            assert!(found.windows(2).all(|w| w[0].score >= w[1].score));
            for h in found {
                if let Some(t) = truth.iter().find(|t| t.corpus_id == h.corpus_id) {
                    assert!((t.score - h.score).abs() < 1e-5, "{t:?} vs {h:?}");
                }
            }
        }
        // One query alone gets the answer it gets in a batch.
        let single = index
            .search(&Vectors::new(q.row(5), dim).expect("row"), 10, 200)
            .expect("search");
        assert_eq!(single[0], wide[5]);

        let dir = std::env::temp_dir().join(format!("sbert-hnsw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let saved = index.save(&dir, "hnsw").expect("save");
        assert_eq!((saved.len, saved.dim), (3000, dim));
        let loaded = ApproximateIndex::load(&dir, &saved).expect("load");
        assert_eq!(loaded.search(&q, 10, 200).expect("search"), wide);

        // A changed byte is refused by name before the graph reader sees it.
        let data = dir.join("hnsw.hnsw.data");
        let mut bytes = std::fs::read(&data).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&data, &bytes).expect("write");
        let err = ApproximateIndex::load(&dir, &saved).expect_err("corrupt");
        assert!(err.to_string().contains("hnsw.hnsw.data"), "{err}");
        std::fs::remove_file(&data).expect("remove");
        let err = ApproximateIndex::load(&dir, &saved).expect_err("missing");
        assert!(err.to_string().contains("hnsw.hnsw.data"), "{err}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn bad_parameters_and_queries_are_errors() {
        let rows = clustered(50, 8, 3);
        let c = Vectors::new(&rows, 8).expect("rows");
        let empty = Vectors::new(&[], 8).expect("empty");
        assert!(ApproximateIndex::build(&empty, HnswParams::default()).is_err());
        for (links, ef_construction) in [(1, 100), (129, 200), (300, 400), (16, 8)] {
            let params = HnswParams {
                links,
                ef_construction,
            };
            assert!(
                matches!(
                    ApproximateIndex::build(&c, params),
                    Err(SearchError::Parameter(_))
                ),
                "{params:?}"
            );
        }
        let index = ApproximateIndex::build(&c, HnswParams::default()).expect("build");
        let q = Vectors::new(&rows[..8], 8).expect("query");
        assert!(index.search(&q, 0, 10).is_err());
        // Above the row count, top_k is capped at it, as in the exact search.
        assert_eq!(index.search(&q, 51, 10).expect("capped")[0].len(), 50);
        assert!(index.search(&q, 5, 0).is_err());
        assert!(index.search(&empty, 5, 10).is_err());
        let other = Vectors::new(&rows[..4], 4).expect("narrow");
        assert!(matches!(
            index.search(&other, 5, 10),
            Err(SearchError::DimensionMismatch { .. })
        ));
        // ef below top_k is raised to it: every hit comes back.
        assert_eq!(index.search(&q, 50, 1).expect("search")[0].len(), 50);
    }
}
