//! Attention over packed sequences, forward and backward, one task per (sequence, head).

use super::*;

/// One (sequence, head) of the attention: tokens `start..start + len`, and where its
/// probability block starts.
#[derive(Debug, Clone, Copy)]
pub(super) struct HeadTask {
    pub(super) start: usize,
    pub(super) len: usize,
    pub(super) head: usize,
    pub(super) block: usize,
}

pub(super) fn head_tasks(offsets: &[usize], heads: usize) -> Vec<HeadTask> {
    let mut tasks = Vec::with_capacity((offsets.len() - 1) * heads);
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

/// Columns `part·h + head·hd ..` of rows `start..start + len` of a `(n, width)` matrix,
/// as a contiguous `(len, hd)` block.
pub(super) fn gather(m: &[f32], width: usize, col: usize, task: HeadTask, hd: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(task.len * hd);
    for t in task.start..task.start + task.len {
        out.extend_from_slice(&m[t * width + col..t * width + col + hd]);
    }
    out
}

/// Writes a `(len, hd)` block into columns `col..` of rows `start..` of a `(n, width)` matrix.
pub(super) fn scatter(
    m: &mut [f32],
    width: usize,
    col: usize,
    task: HeadTask,
    block: &[f32],
    hd: usize,
) {
    for (i, row) in block.chunks_exact(hd).enumerate() {
        let t = task.start + i;
        m[t * width + col..t * width + col + hd].copy_from_slice(row);
    }
}

/// Softmax probabilities (into `probs`, `len × len`) and the context `(len, hd)` of one head.
#[inline(always)]
pub(super) fn head_forward_generic(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &mut [f32],
    ctx: &mut [f32],
    job: HeadJob,
) {
    let HeadJob {
        head_dim: hd,
        scale,
        drop,
        block,
    } = job;
    let len = q.len() / hd;
    for i in 0..len {
        let qi = &q[i * hd..(i + 1) * hd];
        let row = &mut probs[i * len..(i + 1) * len];
        let mut max = f32::NEG_INFINITY;
        for (j, s) in row.iter_mut().enumerate() {
            *s = scale * dot(qi, &k[j * hd..(j + 1) * hd]);
            max = max.max(*s);
        }
        let mut sum = 0f32;
        for s in row.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let inv = 1.0 / sum;
        let out = &mut ctx[i * hd..(i + 1) * hd];
        for (j, s) in row.iter_mut().enumerate() {
            *s *= inv;
            let w = *s * drop.factor(block + i * len + j);
            axpy(out, w, &v[j * hd..(j + 1) * hd]);
        }
    }
}

kernels::multiversion!(fn head_forward(q: &[f32], k: &[f32], v: &[f32], probs: &mut [f32], ctx: &mut [f32], job: HeadJob) => head_forward_generic);

/// The constants of one head's attention kernels.
#[derive(Debug, Clone, Copy)]
pub(super) struct HeadJob {
    pub(super) head_dim: usize,
    pub(super) scale: f32,
    pub(super) drop: DropoutMask,
    /// Index of the head's first probability (the dropout mask's index base).
    pub(super) block: usize,
}

/// Attention over packed sequences: probabilities (per task block) and the context `(n, h)`.
pub(super) fn attention_forward(
    qkv: &[f32],
    offsets: &[usize],
    d: Dims,
    drop: DropoutMask,
) -> (Vec<f32>, Vec<f32>) {
    let (h, hd) = (d.hidden, d.head_dim);
    let n = qkv.len() / (3 * h);
    let scale = 1.0 / (hd as f32).sqrt();
    let tasks = head_tasks(offsets, d.heads);
    let total: usize = tasks.iter().map(|t| t.len * t.len).sum();
    let mut probs = vec![0f32; total];
    let mut blocks = Vec::with_capacity(tasks.len());
    let mut rest = probs.as_mut_slice();
    for t in &tasks {
        let (block, tail) = rest.split_at_mut(t.len * t.len);
        blocks.push(block);
        rest = tail;
    }
    let contexts: Vec<Vec<f32>> = tasks
        .par_iter()
        .zip(blocks.into_par_iter())
        .map(|(&t, block)| {
            let col = t.head * hd;
            let (q, k, v) = (
                gather(qkv, 3 * h, col, t, hd),
                gather(qkv, 3 * h, h + col, t, hd),
                gather(qkv, 3 * h, 2 * h + col, t, hd),
            );
            let mut ctx = vec![0f32; t.len * hd];
            let job = HeadJob {
                head_dim: hd,
                scale,
                drop,
                block: t.block,
            };
            head_forward(&q, &k, &v, block, &mut ctx, job);
            ctx
        })
        .collect();
    let mut ctx = vec![0f32; n * h];
    for (t, block) in tasks.iter().zip(&contexts) {
        scatter(&mut ctx, h, t.head * hd, *t, block, hd);
    }
    (probs, ctx)
}

/// The gradients of one head's q, k and v, `(len, hd)` each, written into `dq`, `dk`, `dv`.
#[inline(always)]
pub(super) fn head_backward_generic(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    probs: &[f32],
    dc: &[f32],
    grads: (&mut [f32], &mut [f32], &mut [f32]),
    job: HeadJob,
) {
    let HeadJob {
        head_dim: hd,
        scale,
        drop,
        block,
    } = job;
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
        // Softmax: ds_ij = p_ij (dp_ij − Σ_k p_ik dp_ik), then the score scale.
        let qi = &q[i * hd..(i + 1) * hd];
        let dqi_start = i * hd;
        for j in 0..len {
            let s = scale * p[j] * (ds[j] - row_dot);
            axpy(
                &mut dq[dqi_start..dqi_start + hd],
                s,
                &k[j * hd..(j + 1) * hd],
            );
            axpy(&mut dk[j * hd..(j + 1) * hd], s, qi);
        }
    }
}

kernels::multiversion!(fn head_backward(q: &[f32], k: &[f32], v: &[f32], probs: &[f32], dc: &[f32], grads: (&mut [f32], &mut [f32], &mut [f32]), job: HeadJob) => head_backward_generic);

/// The gradient of the biased q, k, v `(n, 3h)` from that of the context `(n, h)`.
pub(super) fn attention_backward(
    qkv: &[f32],
    probs: &[f32],
    d_ctx: &[f32],
    offsets: &[usize],
    d: Dims,
    drop: DropoutMask,
) -> Vec<f32> {
    let (h, hd) = (d.hidden, d.head_dim);
    let n = qkv.len() / (3 * h);
    let scale = 1.0 / (hd as f32).sqrt();
    let tasks = head_tasks(offsets, d.heads);
    let parts: Vec<[Vec<f32>; 3]> = tasks
        .par_iter()
        .map(|&t| {
            let col = t.head * hd;
            let (q, k, v) = (
                gather(qkv, 3 * h, col, t, hd),
                gather(qkv, 3 * h, h + col, t, hd),
                gather(qkv, 3 * h, 2 * h + col, t, hd),
            );
            let dc = gather(d_ctx, h, col, t, hd);
            let block = &probs[t.block..t.block + t.len * t.len];
            let (mut dq, mut dk, mut dv) = (
                vec![0f32; t.len * hd],
                vec![0f32; t.len * hd],
                vec![0f32; t.len * hd],
            );
            head_backward(
                &q,
                &k,
                &v,
                block,
                &dc,
                (&mut dq, &mut dk, &mut dv),
                HeadJob {
                    head_dim: hd,
                    scale,
                    drop,
                    block: t.block,
                },
            );
            [dq, dk, dv]
        })
        .collect();
    let mut d_qkv = vec![0f32; n * 3 * h];
    for (t, blocks) in tasks.iter().zip(&parts) {
        for (part, block) in blocks.iter().enumerate() {
            scatter(&mut d_qkv, 3 * h, part * h + t.head * hd, *t, block, hd);
        }
    }
    d_qkv
}
