//! The forward pass of training: embeddings, then per layer attention, residual + LayerNorm
//! and the feed-forward block, keeping on the tape what the backward pass needs.

use super::attention::attention_forward;
use super::*;

/// The forward pass; with `keep`, the tape holds every layer's activations for the backward
/// pass, otherwise only the last hidden states.
pub(super) fn forward(
    host: &HostParams<'_>,
    d: Dims,
    ids: &[u32],
    offsets: &[usize],
    seed: u64,
    keep: bool,
) -> Result<Tape> {
    let h = d.hidden;
    let n = ids.len();
    let (word, position, token_type) =
        (host.get(WORD)?, host.get(POSITION)?, host.get(TOKEN_TYPE)?);
    let mut positions = Vec::with_capacity(n);
    for w in offsets.windows(2) {
        positions.extend(0..w[1] - w[0]);
    }
    let mut x = vec![0f32; n * h];
    for ((row, &id), &p) in x.chunks_exact_mut(h).zip(ids).zip(&positions) {
        let (w, pe) = (&word[id as usize * h..][..h], &position[p * h..][..h]);
        for (((v, &w), &pe), &t) in row.iter_mut().zip(w).zip(pe).zip(&token_type[..h]) {
            *v = w + pe + t;
        }
    }
    let (emb_xhat, emb_rstd) = add_norm(
        &mut x,
        None,
        DropoutMask::new(0.0, 0),
        None,
        host.get(EMB_GAMMA)?,
        host.get(EMB_BETA)?,
        d.eps,
    );
    site_dropout(d.hidden_dropout, seed, 0).apply(&mut x);
    let layers_count = host.guards.len().saturating_sub(EMBEDDING_PARAMS) / LAYER_PARAMS;
    let mut hidden = Vec::with_capacity(layers_count + 1);
    hidden.push(x);
    let mut layers = Vec::with_capacity(layers_count);
    for l in 0..layers_count {
        let input = hidden.last().map(Vec::as_slice).unwrap_or(&[]);
        let (tape, out) = layer_forward(host, d, l, input, offsets, seed)?;
        if keep {
            layers.push(tape);
            hidden.push(out);
        } else {
            hidden = vec![out];
        }
    }
    Ok(Tape {
        ids: ids.to_vec(),
        offsets: offsets.to_vec(),
        seed,
        emb_xhat,
        emb_rstd,
        hidden,
        layers,
    })
}

pub(super) fn layer_forward(
    host: &HostParams<'_>,
    d: Dims,
    l: usize,
    x: &[f32],
    offsets: &[usize],
    seed: u64,
) -> Result<(LayerTape, Vec<f32>)> {
    let base = EMBEDDING_PARAMS + l * LAYER_PARAMS;
    let p = |i: usize| host.get(base + i);
    let (h, i_dim) = (d.hidden, d.intermediate);
    let n = x.len() / h;

    let mut qkv = vec![0f32; n * 3 * h];
    let mut qkv_bias = Vec::with_capacity(3 * h);
    for part in 0..3 {
        gemm(
            MatMut::columns(&mut qkv, 3 * h, part * h, h),
            MatRef::new(x, n, h),
            MatRef::new(p(2 * part)?, h, h).t(),
            false,
        );
        qkv_bias.extend_from_slice(p(2 * part + 1)?);
    }
    add_row_bias(&mut qkv, &qkv_bias);
    let attn_drop = site_dropout(d.attention_dropout, seed, 3 * l + 1);
    let (probs, ctx) = attention_forward(&qkv, offsets, d, attn_drop);

    let mut y1 = vec![0f32; n * h];
    gemm(
        MatMut::new(&mut y1, n, h),
        MatRef::new(&ctx, n, h),
        MatRef::new(p(OUT_W)?, h, h).t(),
        false,
    );
    let (xhat1, rstd1) = add_norm(
        &mut y1,
        Some(p(OUT_B)?),
        site_dropout(d.hidden_dropout, seed, 3 * l + 2),
        Some(x),
        p(LN1_GAMMA)?,
        p(LN1_BETA)?,
        d.eps,
    );

    let mut inter = vec![0f32; n * i_dim];
    gemm(
        MatMut::new(&mut inter, n, i_dim),
        MatRef::new(&y1, n, h),
        MatRef::new(p(INTER_W)?, i_dim, h).t(),
        false,
    );
    add_row_bias(&mut inter, p(INTER_B)?);
    let act = activate(&inter, d.act);

    let mut y2 = vec![0f32; n * h];
    gemm(
        MatMut::new(&mut y2, n, h),
        MatRef::new(&act, n, i_dim),
        MatRef::new(p(FF_OUT_W)?, h, i_dim).t(),
        false,
    );
    let (xhat2, rstd2) = add_norm(
        &mut y2,
        Some(p(FF_OUT_B)?),
        site_dropout(d.hidden_dropout, seed, 3 * l + 3),
        Some(&y1),
        p(LN2_GAMMA)?,
        p(LN2_BETA)?,
        d.eps,
    );
    let tape = LayerTape {
        qkv,
        probs,
        ctx,
        xhat1,
        rstd1,
        y1,
        inter,
        act,
        xhat2,
        rstd2,
    };
    Ok((tape, y2))
}

/// `x ← x + bias` on every row.
pub(super) fn add_row_bias(x: &mut [f32], bias: &[f32]) {
    let w = bias.len();
    x.par_chunks_mut(rows_per_task(w) * w).for_each(|rows| {
        for row in rows.chunks_exact_mut(w) {
            row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
        }
    });
}

/// `x ← LayerNorm(drop(x + bias) + residual) · γ + β` row by row; returns x̂ and 1/σ.
pub(super) fn add_norm(
    x: &mut [f32],
    bias: Option<&[f32]>,
    drop: DropoutMask,
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> (Vec<f32>, Vec<f32>) {
    let h = gamma.len();
    let rows = x.len() / h;
    let mut xhat = vec![0f32; x.len()];
    let mut rstd = vec![0f32; rows];
    let per = rows_per_task(h);
    x.par_chunks_mut(per * h)
        .zip(xhat.par_chunks_mut(per * h))
        .zip(rstd.par_chunks_mut(per))
        .enumerate()
        .for_each(|(c, ((x, xhat), rstd))| {
            for (r, ((row, xh), rs)) in x
                .chunks_exact_mut(h)
                .zip(xhat.chunks_exact_mut(h))
                .zip(rstd.iter_mut())
                .enumerate()
            {
                let global = (c * per + r) * h;
                if let Some(bias) = bias {
                    for (k, (v, b)) in row.iter_mut().zip(bias).enumerate() {
                        *v = (*v + b) * drop.factor(global + k);
                    }
                }
                if let Some(residual) = residual {
                    row.iter_mut()
                        .zip(&residual[global..global + h])
                        .for_each(|(v, r)| *v += r);
                }
                *rs = normalize_row(row, xh, gamma, beta, eps);
            }
        });
    (xhat, rstd)
}

#[inline(always)]
pub(super) fn normalize_row_generic(
    row: &mut [f32],
    xhat: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> f32 {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let rstd = crate::kernels::inverse_std(var, eps);
    for (((v, xh), &g), &b) in row.iter_mut().zip(xhat.iter_mut()).zip(gamma).zip(beta) {
        *xh = (*v - mean) * rstd;
        *v = *xh * g + b;
    }
    rstd
}

kernels::multiversion!(fn normalize_row(row: &mut [f32], xhat: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) -> f32 => normalize_row_generic);

#[inline(always)]
pub(super) fn activate_chunk_generic(out: &mut [f32], x: &[f32], act: HiddenAct) {
    for (o, &x) in out.iter_mut().zip(x) {
        *o = kernels::activation(x, act);
    }
}

kernels::multiversion!(fn activate_chunk(out: &mut [f32], x: &[f32], act: HiddenAct) => activate_chunk_generic);

pub(super) fn activate(x: &[f32], act: HiddenAct) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    out.par_chunks_mut(1 << 14)
        .zip(x.par_chunks(1 << 14))
        .for_each(|(o, x)| activate_chunk(o, x, act));
    out
}
