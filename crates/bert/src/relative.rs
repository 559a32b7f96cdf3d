//! MPNet's relative attention bias: a learned value per (relative-position bucket, head) added
//! to every attention score, shared by all layers.
//!
//! The buckets are T5's, bidirectional: half for keys before the query, half for keys after;
//! in each half, distances below a quarter of the buckets get a bucket each and longer ones
//! share logarithmically wider buckets up to `MAX_DISTANCE`
//! (`MPNetEncoder.relative_position_bucket` in `transformers`, computed here in f32 as there,
//! so that distances on a bucket boundary land in the same bucket).

use candle_core::{Result, Tensor};

/// Distances from this one on share the last bucket of their side.
const MAX_DISTANCE: usize = 128;

/// The bucket of the key at `relative = key − query` positions from the query.
pub(crate) fn bucket(relative: i64, num_buckets: usize) -> usize {
    let half = num_buckets / 2;
    // transformers buckets n = −relative: keys before the query have n > 0.
    let n = -relative;
    let side = if n < 0 { half } else { 0 };
    let n = n.unsigned_abs() as usize;
    let max_exact = half / 2;
    if n < max_exact {
        return side + n;
    }
    let log_ratio = (n as f32 / max_exact as f32).ln();
    let log_range = ((MAX_DISTANCE as f64 / max_exact as f64).ln()) as f32;
    let large = max_exact + (log_ratio / log_range * (half - max_exact) as f32) as usize;
    side + large.min(half - 1)
}

/// The bias of every head at every relative position of sequences up to `longest` tokens,
/// for the packed pass: one row of `2 · longest − 1` values per head, indexed by
/// `key − query + longest − 1`.
#[derive(Debug, Clone)]
pub(crate) struct DistanceBias {
    values: Vec<f32>,
    longest: usize,
}

impl DistanceBias {
    /// From the bias table `(num_buckets, heads)` (row-major).
    pub(crate) fn new(table: &[f32], heads: usize, longest: usize) -> Self {
        let num_buckets = table.len() / heads.max(1);
        let width = 2 * longest - 1;
        let mut values = vec![0f32; heads * width];
        for d in 0..width {
            let relative = d as i64 - (longest as i64 - 1);
            let b = bucket(relative, num_buckets);
            for head in 0..heads {
                values[head * width + d] = table[b * heads + head];
            }
        }
        Self { values, longest }
    }

    /// From the bias table tensor `(num_buckets, heads)`, for sequences up to `longest` tokens.
    ///
    /// # Errors
    /// When the table is not an f32 tensor whose values can be read.
    pub(crate) fn from_table(table: &Tensor, heads: usize, longest: usize) -> Result<Self> {
        Ok(Self::new(
            &table.flatten_all()?.to_vec1::<f32>()?,
            heads,
            longest,
        ))
    }

    /// Tokens in the longest sequence the values cover.
    pub(crate) fn longest(&self) -> usize {
        self.longest
    }

    /// Adds a gradient of the values (laid out as they are, `heads · (2 · longest − 1)`) into
    /// the gradient of the table `(num_buckets, heads)` it was built from: each relative
    /// position's gradient goes to its bucket.
    pub(crate) fn add_table_gradient(&self, d_values: &[f32], d_table: &mut [f32], heads: usize) {
        let num_buckets = d_table.len() / heads.max(1);
        let width = 2 * self.longest - 1;
        for d in 0..width {
            let relative = d as i64 - (self.longest as i64 - 1);
            let b = bucket(relative, num_buckets);
            for head in 0..heads {
                d_table[b * heads + head] += d_values[head * width + d];
            }
        }
    }

    /// Head `head`'s biases for a sequence of `len ≤ longest` tokens: `2 · len − 1` values,
    /// the one of key `j` for query `i` at `j − i + len − 1`.
    pub(crate) fn head(&self, head: usize, len: usize) -> &[f32] {
        let width = 2 * self.longest - 1;
        let start = head * width + self.longest - len;
        &self.values[start..start + 2 * len - 1]
    }
}

/// The bias of a padded batch of `t` positions, `(1, heads, t, t)`, from the bias table
/// `(num_buckets, heads)`.
pub(crate) fn bias_tensor(table: &Tensor, t: usize) -> Result<Tensor> {
    let (num_buckets, heads) = table.dims2()?;
    let ids: Vec<u32> = (0..t * t)
        .map(|k| bucket((k % t) as i64 - (k / t) as i64, num_buckets) as u32)
        .collect();
    let ids = Tensor::from_vec(ids, t * t, table.device())?;
    table
        .index_select(&ids, 0)?
        .reshape((t, t, heads))?
        .permute((2, 0, 1))?
        .unsqueeze(0)?
        .contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_exact_near_and_logarithmic_far() {
        // Keys after the query (relative > 0) use the upper half.
        assert_eq!(bucket(0, 32), 0);
        assert_eq!(bucket(-1, 32), 1);
        assert_eq!(bucket(1, 32), 17);
        assert_eq!(bucket(-7, 32), 7);
        assert_eq!(bucket(-8, 32), 8);
        // 16 = 8 · 2: log 2 / log 16 · 8 = 2, exactly on a boundary.
        assert_eq!(bucket(-16, 32), 10);
        assert_eq!(bucket(16, 32), 26);
        assert_eq!(bucket(-127, 32), 15);
        assert_eq!(bucket(-10_000, 32), 15);
        assert_eq!(bucket(10_000, 32), 31);
    }

    /// Every relative position from −600 to 600 lands in the bucket `transformers` gives it
    /// (`tests/fixtures/golden_mpnet.json`, from `MPNetEncoder.relative_position_bucket`).
    #[test]
    fn buckets_match_transformers() {
        #[derive(serde::Deserialize)]
        struct Buckets {
            relative_positions: Vec<i64>,
            buckets: Vec<usize>,
        }
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/golden_mpnet.json"
        );
        let text = std::fs::read_to_string(path).expect("read golden_mpnet.json");
        let fixture: Buckets = serde_json::from_str(&text).expect("parse");
        assert_eq!(fixture.relative_positions.len(), 1201);
        for (&relative, &want) in fixture.relative_positions.iter().zip(&fixture.buckets) {
            assert_eq!(bucket(relative, 32), want, "relative position {relative}");
        }
    }

    #[test]
    fn distance_rows_agree_with_the_padded_tensor() {
        let (buckets, heads, t) = (32, 3, 40);
        let table: Vec<f32> = (0..buckets * heads).map(|v| v as f32).collect();
        let tensor = Tensor::from_vec(table.clone(), (buckets, heads), &candle_core::Device::Cpu)
            .expect("table");
        let padded = bias_tensor(&tensor, t)
            .expect("bias")
            .squeeze(0)
            .expect("squeeze")
            .to_vec3::<f32>()
            .expect("values");
        let rows = DistanceBias::new(&table, heads, 50);
        for (head, block) in padded.iter().enumerate() {
            let row = rows.head(head, t);
            for (i, scores) in block.iter().enumerate() {
                for (j, &score) in scores.iter().enumerate() {
                    assert_eq!(row[j + t - 1 - i], score, "{head} {i} {j}");
                }
            }
        }
    }
}
