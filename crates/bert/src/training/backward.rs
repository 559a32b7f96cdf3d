//! The backward pass of training: every layer in reverse, each weight's gradient added into
//! its host buffer in place.

use super::attention::attention_backward;
use super::*;

#[inline(always)]
pub(super) fn activation_slope(x: f32, act: HiddenAct) -> f32 {
    match act {
        HiddenAct::Gelu => {
            let cdf = 0.5 * (1.0 + kernels::erf(x * std::f32::consts::FRAC_1_SQRT_2));
            cdf + x * (-0.5 * x * x).exp() * 0.398_942_3
        }
        HiddenAct::GeluTanh => {
            const C: f32 = 0.797_884_6;
            let t = (C * (x + 0.044_715 * x * x * x)).tanh();
            0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * C * (1.0 + 3.0 * 0.044_715 * x * x)
        }
        HiddenAct::Relu => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        HiddenAct::Silu => {
            let s = 1.0 / (1.0 + (-x).exp());
            s * (1.0 + x * (1.0 - s))
        }
    }
}

#[inline(always)]
pub(super) fn activation_backward_chunk_generic(dy: &mut [f32], x: &[f32], act: HiddenAct) {
    for (d, &x) in dy.iter_mut().zip(x) {
        *d *= activation_slope(x, act);
    }
}

kernels::multiversion!(fn activation_backward_chunk(dy: &mut [f32], x: &[f32], act: HiddenAct) => activation_backward_chunk_generic);

/// `(&mut v[i], &mut v[j])` for `i < j`.
pub(super) fn two_mut(v: &mut [Vec<f32>], i: usize, j: usize) -> (&mut [f32], &mut [f32]) {
    let (a, b) = v.split_at_mut(j);
    (&mut a[i], &mut b[0])
}

pub(super) fn backward(
    host: &HostParams<'_>,
    grads: &mut [Vec<f32>],
    d: Dims,
    tape: &Tape,
    mut dy: Vec<f32>,
) -> Result<()> {
    for l in (0..tape.layers.len()).rev() {
        dy = layer_backward(host, grads, d, l, tape, dy)?;
    }
    // Embeddings: dropout, LayerNorm, then the three table lookups.
    let h = d.hidden;
    site_dropout(d.hidden_dropout, tape.seed, 0).apply(&mut dy);
    let de = {
        let (g, b) = two_mut(grads, EMB_GAMMA, EMB_BETA);
        norm_backward(
            &dy,
            &tape.emb_xhat,
            &tape.emb_rstd,
            host.get(EMB_GAMMA)?,
            g,
            b,
        )
    };
    let word = &mut grads[WORD];
    for (row, &id) in de.chunks_exact(h).zip(&tape.ids) {
        axpy(&mut word[id as usize * h..][..h], 1.0, row);
    }
    let position = &mut grads[POSITION];
    for w in tape.offsets.windows(2) {
        for (p, row) in de[w[0] * h..w[1] * h].chunks_exact(h).enumerate() {
            axpy(&mut position[p * h..][..h], 1.0, row);
        }
    }
    add_column_sums(&mut grads[TOKEN_TYPE][..h], &de, h, 0);
    Ok(())
}

pub(super) fn layer_backward(
    host: &HostParams<'_>,
    grads: &mut [Vec<f32>],
    d: Dims,
    l: usize,
    tape: &Tape,
    dy: Vec<f32>,
) -> Result<Vec<f32>> {
    let base = EMBEDDING_PARAMS + l * LAYER_PARAMS;
    let p = |i: usize| host.get(base + i);
    let t = &tape.layers[l];
    let x = &tape.hidden[l];
    let (h, i_dim) = (d.hidden, d.intermediate);
    let n = x.len() / h;

    // Feed-forward block: y2 = LN(drop(act · W2ᵀ + b2) + y1).
    let ff_drop = site_dropout(d.hidden_dropout, tape.seed, 3 * l + 3);
    let (d_out, mut d_y1) = add_norm_backward(
        grads,
        base + LN2_GAMMA,
        p(LN2_GAMMA)?,
        &dy,
        (&t.xhat2, &t.rstd2),
        ff_drop,
    );
    let mut d_inter = vec![0f32; n * i_dim];
    let ff_out = p(FF_OUT_W)?;
    dense_backward(
        grads,
        base + FF_OUT_W,
        ff_out,
        Cols::all(&d_out, h),
        &t.act,
        &mut d_inter,
        false,
    );
    d_inter
        .par_chunks_mut(1 << 14)
        .zip(t.inter.par_chunks(1 << 14))
        .for_each(|(dy, x)| activation_backward_chunk(dy, x, d.act));
    let inter = p(INTER_W)?;
    dense_backward(
        grads,
        base + INTER_W,
        inter,
        Cols::all(&d_inter, i_dim),
        &t.y1,
        &mut d_y1,
        true,
    );

    // Attention block: y1 = LN(drop(ctx · Woᵀ + bo) + x).
    let attn_out_drop = site_dropout(d.hidden_dropout, tape.seed, 3 * l + 2);
    let (d_attn, mut dx) = add_norm_backward(
        grads,
        base + LN1_GAMMA,
        p(LN1_GAMMA)?,
        &d_y1,
        (&t.xhat1, &t.rstd1),
        attn_out_drop,
    );
    let mut d_ctx = vec![0f32; n * h];
    let out = p(OUT_W)?;
    dense_backward(
        grads,
        base + OUT_W,
        out,
        Cols::all(&d_attn, h),
        &t.ctx,
        &mut d_ctx,
        false,
    );
    let attn_drop = site_dropout(d.attention_dropout, tape.seed, 3 * l + 1);
    let d_qkv = attention_backward(&t.qkv, &t.probs, &d_ctx, &tape.offsets, d, attn_drop);
    for part in 0..3 {
        let d_part = Cols {
            data: &d_qkv,
            width: 3 * h,
            start: part * h,
            cols: h,
        };
        dense_backward(
            grads,
            base + 2 * part,
            p(2 * part)?,
            d_part,
            x,
            &mut dx,
            true,
        );
    }
    Ok(dx)
}

/// The backward pass of `y = LayerNorm(drop(z) + r)` (γ at parameter `gamma_index`, β after
/// it) from x̂ and 1/σ: adds the γ and β gradients, returns the gradients of `z` and `r`.
pub(super) fn add_norm_backward(
    grads: &mut [Vec<f32>],
    gamma_index: usize,
    gamma: &[f32],
    dy: &[f32],
    (xhat, rstd): (&[f32], &[f32]),
    drop: DropoutMask,
) -> (Vec<f32>, Vec<f32>) {
    let (g, b) = two_mut(grads, gamma_index, gamma_index + 1);
    let d_residual = norm_backward(dy, xhat, rstd, gamma, g, b);
    let mut d_z = d_residual.clone();
    drop.apply(&mut d_z);
    (d_z, d_residual)
}

/// Columns `start..start + cols` of a row-major matrix with `width` columns.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cols<'a> {
    pub(super) data: &'a [f32],
    pub(super) width: usize,
    pub(super) start: usize,
    pub(super) cols: usize,
}

impl<'a> Cols<'a> {
    fn all(data: &'a [f32], width: usize) -> Self {
        Self {
            data,
            width,
            start: 0,
            cols: width,
        }
    }

    fn view(self) -> MatRef<'a> {
        MatRef::columns(self.data, self.width, self.start, self.cols)
    }
}

/// The backward pass of a dense layer `y = x · Wᵀ + b` (weight at parameter `weight`, its bias
/// at `weight + 1`): adds `Σ dy` to the bias gradient and `dyᵀ · x` to the weight gradient, and
/// writes `dy · W` into `dx` (adds it with `accumulate`).
pub(super) fn dense_backward(
    grads: &mut [Vec<f32>],
    weight: usize,
    w: &[f32],
    dy: Cols<'_>,
    x: &[f32],
    dx: &mut [f32],
    accumulate: bool,
) {
    let out = dy.cols;
    let inner = w.len() / out.max(1);
    let n = x.len() / inner.max(1);
    add_column_sums(&mut grads[weight + 1], dy.data, dy.width, dy.start);
    gemm(
        MatMut::new(&mut grads[weight], out, inner),
        dy.view().t(),
        MatRef::new(x, n, inner),
        true,
    );
    gemm(
        MatMut::new(dx, n, inner),
        dy.view(),
        MatRef::new(w, out, inner),
        accumulate,
    );
}

/// `dst[j] += Σ_rows m[row, start + j]` for a row-major `m` with `width` columns.
pub(super) fn add_column_sums(dst: &mut [f32], m: &[f32], width: usize, start: usize) {
    let cols = dst.len();
    let per = rows_per_task(width);
    let sums = m
        .par_chunks(per * width)
        .map(|rows| {
            let mut acc = vec![0f32; cols];
            for row in rows.chunks_exact(width) {
                axpy(&mut acc, 1.0, &row[start..start + cols]);
            }
            acc
        })
        .reduce(
            || vec![0f32; cols],
            |mut a, b| {
                axpy(&mut a, 1.0, &b);
                a
            },
        );
    axpy(dst, 1.0, &sums);
}
