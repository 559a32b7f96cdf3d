//! Self-attention over sequences stored back to back, forward and backward, one rayon task per
//! (sequence, head). No mask is needed: a sequence only ever sees its own tokens.

use rayon::prelude::*;

use super::activation::exp;
use super::dropout::DropoutMask;
use super::matmul::{gemm_on, MatMut, MatRef};
use super::{axpy, dot, multiversion, sum8};
use crate::relative::DistanceBias;

/// Heads and their width.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttentionShape {
    pub heads: usize,
    pub head_dim: usize,
}

impl AttentionShape {
    fn hidden(self) -> usize {
        self.heads * self.head_dim
    }

    fn scale(self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}

/// One (sequence, head): tokens `start..start + len`, and where its `len × len` block of
/// probabilities starts.
#[derive(Debug, Clone, Copy)]
struct HeadTask {
    start: usize,
    len: usize,
    head: usize,
    block: usize,
}

fn head_tasks(offsets: &[usize], heads: usize) -> Vec<HeadTask> {
    let mut tasks = Vec::with_capacity(offsets.len().saturating_sub(1) * heads);
    let mut block = 0;
    for w in offsets.windows(2) {
        let len = w[1] - w[0];
        for head in 0..heads {
            tasks.push(HeadTask {
                start: w[0],
                len,
                head,
                block,
            });
            block += len * len;
        }
    }
    tasks
}

/// Columns `col..col + hd` of rows `start..start + len` of a `(n, width)` matrix, as a
/// contiguous `(len, hd)` block.
fn gather(m: &[f32], width: usize, col: usize, task: HeadTask, hd: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(task.len * hd);
    for t in task.start..task.start + task.len {
        out.extend_from_slice(&m[t * width + col..t * width + col + hd]);
    }
    out
}

/// The query, key and value biases, `(h)` each.
pub(crate) type QkvBias<'a> = [&'a [f32]; 3];

/// The biased query, key and value `(len, hd)` of one head from the unbiased `(n, 3h)`
/// projections and their biases.
#[inline(always)]
fn gather_qkv_generic(qkv: &[f32], bias: QkvBias<'_>, task: HeadTask, hd: usize) -> [Vec<f32>; 3] {
    [
        biased_rows(qkv, bias, task, 0, hd),
        biased_rows(qkv, bias, task, 1, hd),
        biased_rows(qkv, bias, task, 2, hd),
    ]
}

multiversion!(fn gather_qkv(qkv: &[f32], bias: QkvBias<'_>, task: HeadTask, hd: usize) -> [Vec<f32>; 3] => gather_qkv_generic);

/// Writes a `(len, hd)` block into columns `col..` of rows `start..` of a `(n, width)` matrix.
fn scatter(m: &mut [f32], width: usize, col: usize, task: HeadTask, block: &[f32], hd: usize) {
    for (i, row) in block.chunks_exact(hd).enumerate() {
        let t = task.start + i;
        m[t * width + col..t * width + col + hd].copy_from_slice(row);
    }
}

/// The constants of one head's kernels.
#[derive(Debug, Clone, Copy)]
struct HeadJob<'a> {
    head_dim: usize,
    scale: f32,
    drop: DropoutMask,
    /// Index of the head's first probability (the dropout mask's index base).
    block: usize,
    /// A bias added to the scores by relative position: `2 · len − 1` values, the one of key
    /// `j` for query `i` at `j − i + len − 1` (see [`DistanceBias::head`]).
    position_bias: Option<&'a [f32]>,
}

/// Softmax probabilities and the context `(len, hd)` of one head. `probs` holds the whole
/// `len × len` block when it is kept, or one row reused for every query.
#[inline(always)]
fn head_forward_generic(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &mut [f32],
    ctx: &mut [f32],
    job: HeadJob<'_>,
) {
    let HeadJob {
        head_dim: hd,
        scale,
        drop,
        block,
        position_bias,
    } = job;
    let len = q.len() / hd;
    let keep = probs.len() == len * len;
    for i in 0..len {
        let qi = &q[i * hd..(i + 1) * hd];
        let row = if keep {
            &mut probs[i * len..(i + 1) * len]
        } else {
            &mut probs[..len]
        };
        for (j, s) in row.iter_mut().enumerate() {
            *s = dot(qi, &k[j * hd..(j + 1) * hd]);
        }
        softmax_row_generic(row, scale, position_bias.map(|b| &b[len - 1 - i..][..len]));
        let out = &mut ctx[i * hd..(i + 1) * hd];
        for (j, &p) in row.iter().enumerate() {
            let w = p * drop.factor(block + i * len + j);
            axpy(out, w, &v[j * hd..(j + 1) * hd]);
        }
    }
}

multiversion!(fn head_forward(q: &[f32], k: &[f32], v: &[f32], probs: &mut [f32], ctx: &mut [f32], job: HeadJob<'_>) => head_forward_generic);

/// From this many tokens, an inference head runs its two products as matrix products
/// ([`head_forward_gemm`]); below, [`short_head_forward`] costs less than `gemm`'s packing.
const GEMM_FROM_LEN: usize = 48;

/// Keys per vector step of [`short_head_forward`]'s scores: the lanes of an AVX2 register.
const KEY_LANES: usize = 8;
/// Queries whose scores [`short_head_forward`] computes together: that many independent
/// accumulators per block of keys.
const QUERY_TILE: usize = 4;

/// The scores of `N` queries `q (N, hd)` against the keys transposed, `keys (hd, width)`, into
/// `scores (N, width)`: per block of [`KEY_LANES`] keys, `N` accumulators held in registers
/// across the `hd` steps.
#[inline(always)]
fn query_tile_scores<const N: usize>(q: &[f32], keys: &[f32], scores: &mut [f32]) {
    let hd = q.len() / N;
    let width = keys.len() / hd.max(1);
    for block in 0..width / KEY_LANES {
        let mut acc = [[0f32; KEY_LANES]; N];
        for d in 0..hd {
            let b = &keys[d * width + block * KEY_LANES..][..KEY_LANES];
            for (r, acc) in acc.iter_mut().enumerate() {
                let a = q[r * hd + d];
                for (s, &b) in acc.iter_mut().zip(b) {
                    *s += a * b;
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            scores[r * width + block * KEY_LANES..][..KEY_LANES].copy_from_slice(acc);
        }
    }
}

/// Part `part` (0: query, 1: key, 2: value) of one head over the sequence of `task`, biased:
/// `(len, hd)` from the unbiased `(n, 3h)` projections.
#[inline(always)]
fn biased_rows(qkv: &[f32], bias: QkvBias<'_>, task: HeadTask, part: usize, hd: usize) -> Vec<f32> {
    let h = bias[part].len();
    let b = &bias[part][task.head * hd..][..hd];
    let mut out = vec![0f32; task.len * hd];
    for (t, out) in out.chunks_exact_mut(hd).enumerate() {
        let row = &qkv[(task.start + t) * 3 * h + part * h + task.head * hd..][..hd];
        for ((o, &x), &b) in out.iter_mut().zip(row).zip(b) {
            *o = x + b;
        }
    }
    out
}

/// [`head_forward`] for inference over a short sequence (no dropout, probabilities not kept):
/// the keys transposed once, `(hd, len)` padded to whole vectors, and the scores of
/// [`QUERY_TILE`] queries at a time computed across the keys ([`query_tile_scores`]) rather
/// than as `len` dot products per query that each end in a horizontal sum.
#[inline(always)]
fn short_head_forward_generic(
    qkv: &[f32],
    bias: QkvBias<'_>,
    task: HeadTask,
    ctx: &mut [f32],
    job: HeadJob<'_>,
) {
    let (hd, len) = (job.head_dim, task.len);
    let (q, v) = (
        biased_rows(qkv, bias, task, 0, hd),
        biased_rows(qkv, bias, task, 2, hd),
    );
    let width = len.next_multiple_of(KEY_LANES);
    let mut keys = vec![0f32; hd * width];
    let h = bias[1].len();
    let key_bias = &bias[1][task.head * hd..][..hd];
    for j in 0..len {
        let key = &qkv[(task.start + j) * 3 * h + h + task.head * hd..][..hd];
        for (d, (&x, &b)) in key.iter().zip(key_bias).enumerate() {
            keys[d * width + j] = x + b;
        }
    }
    let mut scores = vec![0f32; QUERY_TILE * width];
    for (t, (q, ctx)) in q
        .chunks(QUERY_TILE * hd)
        .zip(ctx.chunks_mut(QUERY_TILE * hd))
        .enumerate()
    {
        match q.len() / hd {
            1 => query_tile_scores::<1>(q, &keys, &mut scores),
            2 => query_tile_scores::<2>(q, &keys, &mut scores),
            3 => query_tile_scores::<3>(q, &keys, &mut scores),
            _ => query_tile_scores::<QUERY_TILE>(q, &keys, &mut scores),
        }
        for (r, (row, out)) in scores
            .chunks_exact_mut(width)
            .zip(ctx.chunks_exact_mut(hd))
            .enumerate()
        {
            let i = t * QUERY_TILE + r;
            let row = &mut row[..len];
            softmax_row_generic(
                row,
                job.scale,
                job.position_bias.map(|b| &b[len - 1 - i..][..len]),
            );
            weighted_sum(out, row, &v);
        }
    }
}

/// Dimensions of [`weighted_sum`]'s accumulators: four AVX2 registers.
const CONTEXT_BLOCK: usize = 32;

/// `out = Σⱼ p[j] · v[j]` for the values `v (len, hd)`, [`CONTEXT_BLOCK`] dimensions at a time
/// held in registers across the keys (`axpy` into `out` would store and reload it per key).
#[inline(always)]
fn weighted_sum(out: &mut [f32], p: &[f32], v: &[f32]) {
    let hd = out.len();
    for (c, out) in out.chunks_mut(CONTEXT_BLOCK).enumerate() {
        let start = c * CONTEXT_BLOCK;
        if out.len() == CONTEXT_BLOCK {
            let mut acc = [[0f32; 8]; CONTEXT_BLOCK / 8];
            for (&p, vj) in p.iter().zip(v.chunks_exact(hd)) {
                let x = &vj[start..][..CONTEXT_BLOCK];
                for (acc, x) in acc.iter_mut().zip(x.chunks_exact(8)) {
                    for (a, &x) in acc.iter_mut().zip(x) {
                        *a += p * x;
                    }
                }
            }
            out.copy_from_slice(acc.as_flattened());
        } else {
            out.fill(0.0);
            for (&p, vj) in p.iter().zip(v.chunks_exact(hd)) {
                axpy(out, p, &vj[start..][..out.len()]);
            }
        }
    }
}

multiversion!(fn short_head_forward(qkv: &[f32], bias: QkvBias<'_>, task: HeadTask, ctx: &mut [f32], job: HeadJob<'_>) => short_head_forward_generic);

/// [`head_forward`] for inference (no dropout, probabilities not kept) as two matrix products
/// on the calling thread: the scores `q·kᵀ`, a softmax per row, then `p·v`.
fn head_forward_gemm(q: &[f32], k: &[f32], v: &[f32], ctx: &mut [f32], job: HeadJob<'_>) {
    let hd = job.head_dim;
    let len = q.len() / hd;
    let mut scores = vec![0f32; len * len];
    gemm_on(
        MatMut::new(&mut scores, len, len),
        MatRef::new(q, len, hd),
        MatRef::new(k, len, hd).t(),
        false,
        1,
    );
    for (i, row) in scores.chunks_exact_mut(len).enumerate() {
        softmax_row(
            row,
            job.scale,
            job.position_bias.map(|b| &b[len - 1 - i..][..len]),
        );
    }
    gemm_on(
        MatMut::new(ctx, len, hd),
        MatRef::new(&scores, len, len),
        MatRef::new(v, len, hd),
        false,
        1,
    );
}

/// `row ← softmax(scale · row + bias)`.
#[inline(always)]
fn softmax_row_generic(row: &mut [f32], scale: f32, bias: Option<&[f32]>) {
    match bias {
        Some(bias) => row
            .iter_mut()
            .zip(bias)
            .for_each(|(s, b)| *s = *s * scale + b),
        None => row.iter_mut().for_each(|s| *s *= scale),
    }
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    row.iter_mut().for_each(|s| *s = exp(*s - max));
    let inv = 1.0 / sum8(row);
    row.iter_mut().for_each(|s| *s *= inv);
}

multiversion!(fn softmax_row(row: &mut [f32], scale: f32, bias: Option<&[f32]>) => softmax_row_generic);

/// Attention over packed sequences: `qkv` is `(n, 3h)` (query, key and value side by side,
/// before their biases), `offsets` the sequence boundaries (`0`, …, `n`); `drop` the dropout of the
/// probabilities; `position_bias` is added to the scores (MPNet). Returns the context `(n, h)`
/// and, with `keep`, the probabilities before dropout (one `len × len` block per (sequence,
/// head), sequence-major) for [`attention_backward`].
pub(crate) fn attention_forward(
    qkv: &[f32],
    bias: QkvBias<'_>,
    position_bias: Option<&DistanceBias>,
    offsets: &[usize],
    shape: AttentionShape,
    drop: DropoutMask,
    keep: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let (h, hd) = (shape.hidden(), shape.head_dim);
    let n = qkv.len() / (3 * h).max(1);
    let tasks = head_tasks(offsets, shape.heads);
    let mut probs = keep.then(|| vec![0f32; tasks.iter().map(|t| t.len * t.len).sum()]);
    let mut blocks: Vec<Option<&mut [f32]>> = Vec::with_capacity(tasks.len());
    match probs.as_deref_mut() {
        Some(mut rest) => {
            for t in &tasks {
                let (block, tail) = rest.split_at_mut(t.len * t.len);
                blocks.push(Some(block));
                rest = tail;
            }
        }
        None => blocks.resize_with(tasks.len(), || None),
    }
    let contexts: Vec<Vec<f32>> = tasks
        .par_iter()
        .zip(blocks.into_par_iter())
        .map(|(&t, block)| {
            let mut ctx = vec![0f32; t.len * hd];
            let job = HeadJob {
                head_dim: hd,
                scale: shape.scale(),
                drop,
                block: t.block,
                position_bias: position_bias.map(|b| b.head(t.head, t.len)),
            };
            let inference = block.is_none() && !drop.is_active();
            if inference && t.len < GEMM_FROM_LEN {
                short_head_forward(qkv, bias, t, &mut ctx, job);
                return ctx;
            }
            let [q, k, v] = gather_qkv(qkv, bias, t, hd);
            match block {
                Some(block) => head_forward(&q, &k, &v, block, &mut ctx, job),
                None if inference => head_forward_gemm(&q, &k, &v, &mut ctx, job),
                None => head_forward(&q, &k, &v, &mut vec![0f32; t.len], &mut ctx, job),
            }
            ctx
        })
        .collect();
    let mut ctx = vec![0f32; n * h];
    for (t, block) in tasks.iter().zip(&contexts) {
        scatter(&mut ctx, h, t.head * hd, *t, block, hd);
    }
    (ctx, probs)
}

/// The gradients of one head's q, k and v, `(len, hd)` each, written into `dq`, `dk`, `dv`;
/// with a non-empty `d_bias` (`2 · len − 1` values, laid out as [`HeadJob::position_bias`]),
/// the gradient of the scores is also summed there by relative position.
#[inline(always)]
fn head_backward_generic(
    qkv: (&[f32], &[f32], &[f32]),
    probs: &[f32],
    dc: &[f32],
    grads: (&mut [f32], &mut [f32], &mut [f32]),
    d_bias: &mut [f32],
    job: HeadJob<'_>,
) {
    let HeadJob {
        head_dim: hd,
        scale,
        drop,
        block,
        position_bias: _,
    } = job;
    let (q, k, v) = qkv;
    let (dq, dk, dv) = grads;
    let len = q.len() / hd;
    let mut ds = vec![0f32; len];
    for i in 0..len {
        let p = &probs[i * len..(i + 1) * len];
        let dci = &dc[i * hd..(i + 1) * hd];
        let mut row_dot = 0f32;
        for j in 0..len {
            let f = drop.factor(block + i * len + j);
            // Through the dropped probabilities: ctx_i = Σ_j p_ij f_ij v_j.
            axpy(&mut dv[j * hd..(j + 1) * hd], p[j] * f, dci);
            let dp = f * dot(dci, &v[j * hd..(j + 1) * hd]);
            ds[j] = dp;
            row_dot += p[j] * dp;
        }
        // Softmax: ds_ij = p_ij (dp_ij − Σ_k p_ik dp_ik), then the score scale (the
        // position bias is added after the scale: its gradient is ds_ij itself).
        let qi = &q[i * hd..(i + 1) * hd];
        for j in 0..len {
            let g = p[j] * (ds[j] - row_dot);
            if !d_bias.is_empty() {
                d_bias[len - 1 - i + j] += g;
            }
            let s = scale * g;
            axpy(&mut dq[i * hd..(i + 1) * hd], s, &k[j * hd..(j + 1) * hd]);
            axpy(&mut dk[j * hd..(j + 1) * hd], s, qi);
        }
    }
}

multiversion!(fn head_backward(qkv: (&[f32], &[f32], &[f32]), probs: &[f32], dc: &[f32], grads: (&mut [f32], &mut [f32], &mut [f32]), d_bias: &mut [f32], job: HeadJob<'_>) => head_backward_generic);

/// The gradient of the biased q, k, v `(n, 3h)` (and so of the unbiased, and summed over rows
/// of the biases) from that of the context `(n, h)`, given the forward pass's `qkv`, `bias`
/// and kept probabilities. With `d_position` (a pass with a relative position bias), the
/// gradient of the scores is added there by head and relative position, laid out as
/// [`DistanceBias`]'s values for sequences up to `longest` tokens (`heads · (2 · longest − 1)`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_backward(
    qkv: &[f32],
    bias: QkvBias<'_>,
    probs: &[f32],
    d_ctx: &[f32],
    offsets: &[usize],
    shape: AttentionShape,
    drop: DropoutMask,
    d_position: Option<(&mut [f32], usize)>,
) -> Vec<f32> {
    let (h, hd) = (shape.hidden(), shape.head_dim);
    let n = qkv.len() / (3 * h).max(1);
    let tasks = head_tasks(offsets, shape.heads);
    let with_bias = d_position.is_some();
    let parts: Vec<([Vec<f32>; 3], Vec<f32>)> = tasks
        .par_iter()
        .map(|&t| {
            let [q, k, v] = gather_qkv(qkv, bias, t, hd);
            let dc = gather(d_ctx, h, t.head * hd, t, hd);
            let block = &probs[t.block..t.block + t.len * t.len];
            let mut grads = [
                vec![0f32; t.len * hd],
                vec![0f32; t.len * hd],
                vec![0f32; t.len * hd],
            ];
            let [dq, dk, dv] = &mut grads;
            let mut d_bias = if with_bias {
                vec![0f32; 2 * t.len - 1]
            } else {
                Vec::new()
            };
            let job = HeadJob {
                head_dim: hd,
                scale: shape.scale(),
                drop,
                block: t.block,
                position_bias: None,
            };
            head_backward((&q, &k, &v), block, &dc, (dq, dk, dv), &mut d_bias, job);
            (grads, d_bias)
        })
        .collect();
    let mut d_qkv = vec![0f32; n * 3 * h];
    for (t, (blocks, _)) in tasks.iter().zip(&parts) {
        for (part, block) in blocks.iter().enumerate() {
            scatter(&mut d_qkv, 3 * h, part * h + t.head * hd, *t, block, hd);
        }
    }
    if let Some((d_position, longest)) = d_position {
        let width = 2 * longest - 1;
        for (t, (_, d_bias)) in tasks.iter().zip(&parts) {
            let start = t.head * width + longest - t.len;
            axpy(&mut d_position[start..start + d_bias.len()], 1.0, d_bias);
        }
    }
    d_qkv
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: AttentionShape = AttentionShape {
        heads: 2,
        head_dim: 3,
    };
    const OFFSETS: [usize; 3] = [0, 3, 5];

    fn qkv() -> Vec<f32> {
        (0..5 * 3 * 6).map(|i| (i as f32 * 0.37).sin()).collect()
    }

    fn bias() -> Vec<f32> {
        (0..3 * 6).map(|i| (i as f32 * 0.11).cos() * 0.5).collect()
    }

    /// `bias()` as the query, key and value biases.
    fn parts(bias: &[f32]) -> QkvBias<'_> {
        [&bias[..6], &bias[6..12], &bias[12..]]
    }

    /// The context of token `i`, head `head` in f64, with the probabilities of `drop` applied.
    fn reference(qkv: &[f32], factors: &[f32], i: usize, head: usize) -> Vec<f64> {
        let (h, bias) = (6, bias());
        let x = |t: usize, part: usize, d: usize| {
            let c = part * h + head * 3 + d;
            f64::from(qkv[t * 3 * h + c]) + f64::from(bias[c])
        };
        let s = OFFSETS
            .windows(2)
            .position(|w| w[0] <= i && i < w[1])
            .expect("sequence");
        let tokens = OFFSETS[s]..OFFSETS[s + 1];
        let len = tokens.len();
        let block: usize = (0..s)
            .map(|q| (OFFSETS[q + 1] - OFFSETS[q]).pow(2) * 2)
            .sum::<usize>()
            + head * len * len;
        let scores: Vec<f64> = tokens
            .clone()
            .map(|j| (0..3).map(|d| x(i, 0, d) * x(j, 1, d)).sum::<f64>() / 3f64.sqrt())
            .collect();
        let max = scores.iter().copied().fold(f64::MIN, f64::max);
        let weights: Vec<f64> = scores.iter().map(|v| (v - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        (0..3)
            .map(|d| {
                tokens
                    .clone()
                    .zip(&weights)
                    .enumerate()
                    .map(|(jj, (j, w))| {
                        let f = f64::from(factors[block + (i - OFFSETS[s]) * len + jj]);
                        w / total * f * x(j, 2, d)
                    })
                    .sum()
            })
            .collect()
    }

    #[test]
    fn the_inference_kernels_short_and_long_equal_the_per_query_loop() {
        // Sequences on both sides of GEMM_FROM_LEN (and of a whole number of KEY_LANES), heads
        // narrower and wider than CONTEXT_BLOCK, with and without a position bias; keeping the
        // probabilities forces the per-query loop for the same inputs.
        for head_dim in [5, CONTEXT_BLOCK + 8] {
            inference_kernels_equal_the_per_query_loop(head_dim);
        }
    }

    fn inference_kernels_equal_the_per_query_loop(head_dim: usize) {
        let shape = AttentionShape { heads: 2, head_dim };
        let h = 2 * head_dim;
        let lens = [GEMM_FROM_LEN + 13, 7, GEMM_FROM_LEN, 2 * KEY_LANES, 1];
        let n: usize = lens.iter().sum();
        let mut offsets = vec![0];
        for len in lens {
            offsets.push(offsets[offsets.len() - 1] + len);
        }
        let qkv: Vec<f32> = (0..n * 3 * h).map(|i| (i as f32 * 0.173).sin()).collect();
        let bias: Vec<f32> = (0..3 * h).map(|i| (i as f32 * 0.31).cos() * 0.2).collect();
        let bias = [&bias[..h], &bias[h..2 * h], &bias[2 * h..]];
        let table: Vec<f32> = (0..32 * 2).map(|i| (i as f32 * 0.7).sin()).collect();
        let relative = DistanceBias::new(&table, 2, *lens.iter().max().expect("lens"));
        for position_bias in [None, Some(&relative)] {
            let run = |keep| {
                attention_forward(
                    &qkv,
                    bias,
                    position_bias,
                    &offsets,
                    shape,
                    DropoutMask::NONE,
                    keep,
                )
                .0
            };
            let (fast, looped) = (run(false), run(true));
            let diff = fast
                .iter()
                .zip(&looped)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                diff < 1e-5,
                "max |Δ| {diff} (head width {head_dim}, bias: {})",
                position_bias.is_some()
            );
        }
    }

    #[test]
    fn one_token_attends_to_itself() {
        let qkv = [
            1., 2., 3., 4., /* k */ 5., 6., 7., 8., /* v */ 9., 10., 11., 12.,
        ];
        let shape = AttentionShape {
            heads: 2,
            head_dim: 2,
        };
        let (ctx, probs) = attention_forward(
            &qkv,
            [&[0.; 4]; 3],
            None,
            &[0, 1],
            shape,
            DropoutMask::NONE,
            true,
        );
        assert_eq!(ctx, vec![9., 10., 11., 12.]);
        assert_eq!(probs, Some(vec![1., 1.]));
    }

    #[test]
    fn several_keys_with_and_without_dropout_match_a_plain_loop_in_f64() {
        let qkv = qkv();
        for (drop, keep) in [(DropoutMask::NONE, false), (DropoutMask::new(0.3, 5), true)] {
            let total = 2 * (9 + 4);
            let factors = drop.factors(total);
            let (ctx, probs) =
                attention_forward(&qkv, parts(&bias()), None, &OFFSETS, SHAPE, drop, keep);
            assert_eq!(probs.map(|p| p.len()), keep.then_some(total));
            for i in 0..5 {
                for head in 0..2 {
                    let want = reference(&qkv, &factors, i, head);
                    for d in 0..3 {
                        let got = f64::from(ctx[i * 6 + head * 3 + d]);
                        assert!(
                            (got - want[d]).abs() < 1e-5,
                            "token {i} head {head}: {got} vs {}",
                            want[d]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn backward_matches_central_differences_in_f64() {
        let qkv = qkv();
        let drop = DropoutMask::new(0.3, 5);
        let factors = drop.factors(2 * (9 + 4));
        let w: Vec<f64> = (0..5 * 6)
            .map(|i| ((i * 5 % 7) as f64 - 3.0) / 3.0)
            .collect();
        let loss = |qkv: &[f32]| -> f64 {
            (0..5)
                .flat_map(|i| (0..2).map(move |head| (i, head)))
                .map(|(i, head)| {
                    reference(qkv, &factors, i, head)
                        .iter()
                        .enumerate()
                        .map(|(d, v)| v * w[i * 6 + head * 3 + d])
                        .sum::<f64>()
                })
                .sum()
        };
        let (_, probs) = attention_forward(&qkv, parts(&bias()), None, &OFFSETS, SHAPE, drop, true);
        let d_ctx: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let grads = attention_backward(
            &qkv,
            parts(&bias()),
            &probs.expect("kept"),
            &d_ctx,
            &OFFSETS,
            SHAPE,
            drop,
            None,
        );
        let step = 1e-2f32;
        for i in 0..qkv.len() {
            let (mut up, mut down) = (qkv.clone(), qkv.clone());
            up[i] += step;
            down[i] -= step;
            let numeric = (loss(&up) - loss(&down)) / f64::from(2.0 * step);
            assert!(
                (f64::from(grads[i]) - numeric).abs() < 1e-3,
                "d qkv[{i}]: {} vs {numeric}",
                grads[i]
            );
        }
    }
}
