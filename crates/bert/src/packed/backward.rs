//! The backward pass of a recorded [`forward`](super::forward): every layer in reverse, each
//! weight's gradient added into its host buffer in place.

use rayon::prelude::*;

use super::{Dims, HostWeights, Site, Tape};
use crate::cpu::activation::activation_backward;
use crate::cpu::attention::attention_backward;
use crate::cpu::dropout::DropoutMask;
use crate::cpu::matmul::{gemm, MatMut, MatRef};
use crate::cpu::norm::{norm_backward, NormSaved};
use crate::cpu::{axpy, rows_per_task};
use crate::params::{BertParams, LayerParams, Linear, Norm};

/// The gradients of every weight, by name.
pub(crate) type Gradients = BertParams<Vec<f32>>;

/// Adds the gradients of the pass recorded on `tape` into `grads`, given `dy`, the gradient of
/// its output `(tokens, hidden)`. A pass with MPNet's relative position bias adds the
/// gradient of its table `(num_buckets, heads)`, shared by every layer, into `d_table`.
pub(crate) fn backward(
    w: &HostWeights<'_>,
    grads: &mut Gradients,
    d_table: Option<&mut [f32]>,
    d: Dims,
    tape: &Tape,
    mut dy: Vec<f32>,
) {
    let heads = d.attention.heads;
    let mut d_position = tape
        .position_bias
        .as_ref()
        .map(|b| (vec![0f32; heads * (2 * b.longest() - 1)], b));
    for (l, ((weights, grads), t)) in w
        .layers
        .iter()
        .zip(grads.layers.iter_mut())
        .zip(&tape.layers)
        .enumerate()
        .rev()
    {
        let position = d_position
            .as_mut()
            .map(|(values, b)| (values.as_mut_slice(), b.longest()));
        dy = layer_backward(weights, grads, d, (l, position), tape, t, dy);
    }
    if let (Some((values, bias)), Some(d_table)) = (&d_position, d_table) {
        bias.add_table_gradient(values, d_table, heads);
    }
    // Embeddings: dropout, LayerNorm, then the three table lookups.
    let h = d.hidden;
    d.dropout(tape.seed, Site::Embeddings).apply(&mut dy);
    let g = &mut grads.embeddings;
    let de = norm_backward(
        &dy,
        &tape.embedding_norm,
        w.embeddings.norm.gamma,
        &mut g.norm.gamma,
        &mut g.norm.beta,
    );
    for (row, &id) in de.chunks_exact(h).zip(&tape.batch.ids) {
        axpy(&mut g.word[id as usize * h..][..h], 1.0, row);
    }
    for s in tape.batch.offsets.windows(2) {
        for (p, row) in de[s[0] * h..s[1] * h].chunks_exact(h).enumerate() {
            axpy(&mut g.position[(d.first_position + p) * h..][..h], 1.0, row);
        }
    }
    add_column_sums(&mut g.token_type[..h], &de, h, 0);
}

fn layer_backward(
    w: &LayerParams<&[f32]>,
    g: &mut LayerParams<Vec<f32>>,
    d: Dims,
    (l, d_position): (usize, Option<(&mut [f32], usize)>),
    tape: &Tape,
    t: &super::LayerTape,
    dy: Vec<f32>,
) -> Vec<f32> {
    let x = &tape.inputs[l];
    let (h, i) = (d.hidden, d.intermediate);
    let n = x.len() / h;

    // Feed-forward block: y2 = LN(drop(act · W2ᵀ + b2) + y1).
    let ff_drop = d.dropout(tape.seed, Site::Output(l));
    let (d_out, mut d_y1) =
        add_norm_backward(&mut g.output_norm, w.output_norm, &dy, &t.norm2, ff_drop);
    let mut d_inter = vec![0f32; n * i];
    dense_backward(
        &mut g.output,
        w.output.weight,
        Cols::all(&d_out, h),
        &t.act,
        &mut d_inter,
        false,
    );
    activation_backward(&mut d_inter, &t.inter, d.act);
    dense_backward(
        &mut g.intermediate,
        w.intermediate.weight,
        Cols::all(&d_inter, i),
        &t.y1,
        &mut d_y1,
        true,
    );

    // Attention block: y1 = LN(drop(ctx · Woᵀ + bo) + x).
    let out_drop = d.dropout(tape.seed, Site::AttentionOutput(l));
    let (d_attn, mut dx) = add_norm_backward(
        &mut g.attention_norm,
        w.attention_norm,
        &d_y1,
        &t.norm1,
        out_drop,
    );
    let mut d_ctx = vec![0f32; n * h];
    dense_backward(
        &mut g.attention_output,
        w.attention_output.weight,
        Cols::all(&d_attn, h),
        &t.ctx,
        &mut d_ctx,
        false,
    );
    let attention_drop = d.dropout(tape.seed, Site::Attention(l));
    let d_qkv = attention_backward(
        &t.qkv,
        [w.query.bias, w.key.bias, w.value.bias],
        &t.probs,
        &d_ctx,
        &tape.batch.offsets,
        d.attention,
        attention_drop,
        d_position,
    );
    let parts = [
        (&mut g.query, w.query),
        (&mut g.key, w.key),
        (&mut g.value, w.value),
    ];
    for (k, (grad, weights)) in parts.into_iter().enumerate() {
        let d_part = Cols {
            data: &d_qkv,
            width: 3 * h,
            start: k * h,
            cols: h,
        };
        dense_backward(grad, weights.weight, d_part, x, &mut dx, true);
    }
    dx
}

/// The backward pass of `y = LayerNorm(drop(z) + r)`: adds the γ and β gradients, returns the
/// gradients of `z` and `r`.
fn add_norm_backward(
    grad: &mut Norm<Vec<f32>>,
    w: Norm<&[f32]>,
    dy: &[f32],
    saved: &NormSaved,
    drop: DropoutMask,
) -> (Vec<f32>, Vec<f32>) {
    let d_residual = norm_backward(dy, saved, w.gamma, &mut grad.gamma, &mut grad.beta);
    let mut d_z = d_residual.clone();
    drop.apply(&mut d_z);
    (d_z, d_residual)
}

/// Columns `start..start + cols` of a row-major matrix with `width` columns.
#[derive(Debug, Clone, Copy)]
struct Cols<'a> {
    data: &'a [f32],
    width: usize,
    start: usize,
    cols: usize,
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

/// The backward pass of a dense layer `y = x · Wᵀ + b`: adds `Σ dy` to the bias gradient and
/// `dyᵀ · x` to the weight gradient, and writes `dy · W` into `dx` (adds it with `accumulate`).
fn dense_backward(
    grad: &mut Linear<Vec<f32>>,
    w: &[f32],
    dy: Cols<'_>,
    x: &[f32],
    dx: &mut [f32],
    accumulate: bool,
) {
    let out = dy.cols;
    let inner = w.len() / out.max(1);
    let n = x.len() / inner.max(1);
    add_column_sums(&mut grad.bias, dy.data, dy.width, dy.start);
    gemm(
        MatMut::new(&mut grad.weight, out, inner),
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
fn add_column_sums(dst: &mut [f32], m: &[f32], width: usize, start: usize) {
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
