//! CPU kernels of the packed inference path: fused bias + activation, fused bias + residual +
//! LayerNorm, and attention over variable-length sequences stored back to back.
//!
//! Plain slices in, a new `Vec` out; written so that LLVM vectorizes the inner loops (8-lane
//! accumulators, branch-free math), and parallel over rows or (sequence, head) with rayon.

use rayon::prelude::*;

use crate::config::HiddenAct;

/// Defines `$name`, which runs `$generic` compiled for AVX2 + FMA when the CPU has them and as
/// plain (baseline x86-64 or other target) code otherwise. Release builds target baseline
/// x86-64 (SSE2), so without this the loops below would run 4 lanes wide and without FMA.
macro_rules! multiversion {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $generic:ident) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $generic($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    #[allow(unsafe_code)]
                    // SAFETY: `avx2` only needs the AVX2 and FMA instructions, which the CPU was
                    // just checked to support.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $generic($($arg),*)
        }
    };
}

pub(crate) use multiversion;

/// Rows per rayon task for row-wise kernels: enough work per task to amortize scheduling.
pub(crate) fn rows_per_task(width: usize) -> usize {
    (16 * 1024 / width.max(1)).max(1)
}

/// Dot product with 8 independent accumulators (vectorizes without reassociation flags).
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// erf(x) as a rational function of x² on [-4, 4] (Eigen's `generic_fast_erf_float`
/// coefficients); |error| < 1e-7 against the exact function.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_600_1e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329_2e-3;
    q = q * x2 - 1.426_473_9e-2;
    x * p / q
}

#[inline(always)]
pub(crate) fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    let inner = 0.797_884_6 * (x + 0.044_715 * x * x * x);
    0.5 * x * (1.0 + inner.tanh())
}

#[inline(always)]
fn relu(x: f32) -> f32 {
    x.max(0.0)
}

#[inline(always)]
fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// `act(x)` for one value (the training path's; the inference kernels pick the function once
/// per call).
#[inline(always)]
pub(crate) fn activation(x: f32, act: HiddenAct) -> f32 {
    match act {
        HiddenAct::Gelu => gelu_erf(x),
        HiddenAct::GeluTanh => gelu_tanh(x),
        HiddenAct::Relu => relu(x),
        HiddenAct::Silu => silu(x),
    }
}

/// `x ← f(x + bias)` over whole rows of `rows`.
#[inline(always)]
fn bias_map_rows<F: Fn(f32) -> f32>(rows: &mut [f32], bias: &[f32], f: F) {
    for row in rows.chunks_exact_mut(bias.len()) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v = f(*v + b);
        }
    }
}

#[inline(always)]
fn bias_act_rows_generic(rows: &mut [f32], bias: &[f32], act: HiddenAct) {
    match act {
        HiddenAct::Gelu => bias_map_rows(rows, bias, gelu_erf),
        HiddenAct::GeluTanh => bias_map_rows(rows, bias, gelu_tanh),
        HiddenAct::Relu => bias_map_rows(rows, bias, relu),
        HiddenAct::Silu => bias_map_rows(rows, bias, silu),
    }
}

multiversion!(fn bias_act_rows(rows: &mut [f32], bias: &[f32], act: HiddenAct) => bias_act_rows_generic);

/// `x ← act(x + bias)` in place, for `x` of shape `(rows, bias.len())`.
pub(crate) fn bias_act(x: &mut [f32], bias: &[f32], act: HiddenAct) {
    let width = bias.len();
    x.par_chunks_mut(rows_per_task(width) * width)
        .for_each(|rows| bias_act_rows(rows, bias, act));
}

#[inline(always)]
fn transposed_product_generic(yt: &mut [f32], x: &[f32], w: &[f32], inner: usize) {
    let rows = x.len() / inner;
    for (col, wr) in yt.chunks_exact_mut(rows).zip(w.chunks_exact(inner)) {
        for (y, xr) in col.iter_mut().zip(x.chunks_exact(inner)) {
            *y = dot(xr, wr);
        }
    }
}

multiversion!(fn transposed_product(yt: &mut [f32], x: &[f32], w: &[f32], inner: usize) => transposed_product_generic);

/// `x · wᵀ` for a few rows `x (rows, inner)` and a weight `w (out, inner)`: one dot product per
/// output, each weight row read once while the rows stay in L1, parallel over weight rows.
/// For one short text this streams the weights at memory speed, where `gemm` would first
/// repack the whole weight matrix for a product of a handful of rows.
pub(crate) fn few_rows_product(x: &[f32], w: &[f32], inner: usize) -> Vec<f32> {
    let rows = x.len() / inner.max(1);
    let out = w.len() / inner.max(1);
    let per = (4096 / inner.max(1)).max(1);
    let mut yt = vec![0f32; out * rows];
    yt.par_chunks_mut(per * rows.max(1))
        .zip(w.par_chunks(per * inner.max(1)))
        .for_each(|(yt, w)| transposed_product(yt, x, w, inner));
    let mut y = vec![0f32; rows * out];
    for (o, col) in yt.chunks_exact(rows.max(1)).enumerate() {
        for (i, &v) in col.iter().enumerate() {
            y[i * out + o] = v;
        }
    }
    y
}

/// Sum with 8 independent accumulators.
#[inline(always)]
fn sum8(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for k in 0..8 {
            acc[k] += c[k];
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// The LayerNorm parameters of [`bias_residual_layer_norm`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct NormParams<'a> {
    pub bias: &'a [f32],
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub eps: f32,
}

/// 1/σ of a row whose mean squared deviation is `var`. NaN when `var` overflowed: a row whose
/// squares exceed f32 would otherwise normalize to 0 and come out as `beta` for every input,
/// a plausible but meaningless vector; NaN makes the overflow visible downstream.
#[inline(always)]
pub(crate) fn inverse_std(var: f32, eps: f32) -> f32 {
    if var.is_finite() {
        1.0 / (var + eps).sqrt()
    } else {
        f32::NAN
    }
}

#[inline(always)]
fn norm_rows_generic(x: &mut [f32], residual: &[f32], p: NormParams<'_>) {
    let width = p.bias.len();
    for (row, rrow) in x.chunks_exact_mut(width).zip(residual.chunks_exact(width)) {
        for ((v, &r), &b) in row.iter_mut().zip(rrow).zip(p.bias) {
            *v += r + b;
        }
        let mean = sum8(row) / width as f32;
        for v in row.iter_mut() {
            *v -= mean;
        }
        let mut acc = [0f32; 8];
        let chunks = row.chunks_exact(8);
        let mut var: f32 = chunks.remainder().iter().map(|v| v * v).sum();
        for c in chunks {
            for k in 0..8 {
                acc[k] += c[k] * c[k];
            }
        }
        var += acc.iter().sum::<f32>();
        let inv = inverse_std(var / width as f32, p.eps);
        for ((v, &g), &b) in row.iter_mut().zip(p.gamma).zip(p.beta) {
            *v = *v * inv * g + b;
        }
    }
}

multiversion!(fn norm_rows(x: &mut [f32], residual: &[f32], p: NormParams<'_>) => norm_rows_generic);

/// `x ← LayerNorm(x + bias + residual) · gamma + beta` in place, rows of width `bias.len()`.
pub(crate) fn bias_residual_layer_norm(x: &mut [f32], residual: &[f32], p: NormParams<'_>) {
    let width = p.bias.len();
    let chunk = rows_per_task(width) * width;
    x.par_chunks_mut(chunk)
        .zip(residual.par_chunks(chunk))
        .for_each(|(x, r)| norm_rows(x, r, p));
}

/// Shapes of a packed attention call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttentionShape {
    pub heads: usize,
    pub head_dim: usize,
}

/// One (sequence, head) of [`packed_attention`].
#[derive(Debug, Clone, Copy)]
struct HeadTask {
    start: usize,
    end: usize,
    head: usize,
    shape: AttentionShape,
    scale: f32,
}

/// The context `(len, head_dim)` of one head of one sequence.
#[inline(always)]
fn attend_head_generic(qkv: &[f32], bias: &[f32], task: HeadTask) -> Vec<f32> {
    let HeadTask {
        start,
        end,
        head,
        shape,
        scale,
    } = task;
    let hd = shape.head_dim;
    let h = shape.heads * hd;
    let len = end - start;
    // Gather this head's biased q (pre-scaled), k and v: (len, hd) each, contiguous.
    let gather = |part: usize, mul: f32| -> Vec<f32> {
        let col = part * h + head * hd;
        let b = &bias[col..col + hd];
        let mut out = Vec::with_capacity(len * hd);
        for t in start..end {
            let row = &qkv[t * 3 * h + col..t * 3 * h + col + hd];
            out.extend(row.iter().zip(b).map(|(x, b)| (x + b) * mul));
        }
        out
    };
    let (q, k, v) = (gather(0, scale), gather(1, 1.0), gather(2, 1.0));
    let mut ctx = vec![0f32; len * hd];
    let mut scores = vec![0f32; len];
    for i in 0..len {
        let qi = &q[i * hd..(i + 1) * hd];
        let mut max = f32::NEG_INFINITY;
        for (j, s) in scores.iter_mut().enumerate() {
            *s = dot(qi, &k[j * hd..(j + 1) * hd]);
            max = max.max(*s);
        }
        let mut sum = 0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let inv = 1.0 / sum;
        let out = &mut ctx[i * hd..(i + 1) * hd];
        for (j, &p) in scores.iter().enumerate() {
            let w = p * inv;
            for (o, &x) in out.iter_mut().zip(&v[j * hd..(j + 1) * hd]) {
                *o += w * x;
            }
        }
    }
    ctx
}

multiversion!(fn attend_head(qkv: &[f32], bias: &[f32], task: HeadTask) -> Vec<f32> => attend_head_generic);

/// Self-attention over sequences stored back to back: `qkv` is `(tokens, 3·H)` (query, key,
/// value projections without bias), `bias` is `3·H`, `offsets` are the sequence boundaries
/// (`offsets[0] = 0`, last = tokens). Returns the context `(tokens, H)`. No mask is needed:
/// a sequence only ever sees its own tokens.
pub(crate) fn packed_attention(
    qkv: &[f32],
    bias: &[f32],
    offsets: &[usize],
    shape: AttentionShape,
) -> Vec<f32> {
    let (heads, hd) = (shape.heads, shape.head_dim);
    let h = heads * hd;
    let tokens = qkv.len() / (3 * h);
    let scale = 1.0 / (hd as f32).sqrt();
    let tasks: Vec<(usize, usize)> = (0..offsets.len().saturating_sub(1))
        .flat_map(|s| (0..heads).map(move |head| (s, head)))
        .collect();
    let parts: Vec<Vec<f32>> = tasks
        .par_iter()
        .map(|&(s, head)| {
            let task = HeadTask {
                start: offsets[s],
                end: offsets[s + 1],
                head,
                shape,
                scale,
            };
            attend_head(qkv, bias, task)
        })
        .collect();
    let mut out = vec![0f32; tokens * h];
    for (&(s, head), ctx) in tasks.iter().zip(&parts) {
        for (i, row) in ctx.chunks_exact(hd).enumerate() {
            let t = offsets[s] + i;
            out[t * h + head * hd..t * h + (head + 1) * hd].copy_from_slice(row);
        }
    }
    out
}

/// `y ← y + a·x`.
#[inline(always)]
pub(crate) fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
}

#[inline(always)]
fn norm_backward_rows_generic(
    dx: &mut [f32],
    dy: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    gamma: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let h = gamma.len();
    for (((dx, dy), xh), &rs) in dx
        .chunks_exact_mut(h)
        .zip(dy.chunks_exact(h))
        .zip(xhat.chunks_exact(h))
        .zip(rstd)
    {
        let (mut sum_g, mut sum_gx) = (0f32, 0f32);
        for k in 0..h {
            let g = dy[k] * gamma[k];
            sum_g += g;
            sum_gx += g * xh[k];
            dgamma[k] += dy[k] * xh[k];
            dbeta[k] += dy[k];
        }
        let (mean_g, mean_gx) = (sum_g / h as f32, sum_gx / h as f32);
        for k in 0..h {
            dx[k] = rs * (dy[k] * gamma[k] - mean_g - xh[k] * mean_gx);
        }
    }
}

multiversion!(fn norm_backward_rows(dx: &mut [f32], dy: &[f32], xhat: &[f32], rstd: &[f32], gamma: &[f32], dgamma: &mut [f32], dbeta: &mut [f32]) => norm_backward_rows_generic);

/// LayerNorm backward from x̂ and 1/σ: returns d input, adds `Σ dy·x̂` to `dgamma` and `Σ dy`
/// to `dbeta`.
pub(crate) fn norm_backward(
    dy: &[f32],
    xhat: &[f32],
    rstd: &[f32],
    gamma: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) -> Vec<f32> {
    let h = gamma.len();
    let per = rows_per_task(h);
    let mut dx = vec![0f32; dy.len()];
    let (g, b) = dx
        .par_chunks_mut(per * h)
        .zip(dy.par_chunks(per * h))
        .zip(xhat.par_chunks(per * h))
        .zip(rstd.par_chunks(per))
        .map(|(((dx, dy), xh), rs)| {
            let (mut g, mut b) = (vec![0f32; h], vec![0f32; h]);
            norm_backward_rows(dx, dy, xh, rs, gamma, &mut g, &mut b);
            (g, b)
        })
        .reduce(
            || (vec![0f32; h], vec![0f32; h]),
            |(mut ga, mut ba), (gb, bb)| {
                axpy(&mut ga, 1.0, &gb);
                axpy(&mut ba, 1.0, &bb);
                (ga, ba)
            },
        );
    axpy(dgamma, 1.0, &g);
    axpy(dbeta, 1.0, &b);
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_erf_is_accurate() {
        // Reference values of erf to 10 digits.
        for (x, want) in [
            (0.0f32, 0.0f64),
            (0.1, 0.112_462_916_0),
            (0.5, 0.520_499_877_8),
            (1.0, 0.842_700_792_9),
            (-1.5, -0.966_105_146_5),
            (2.0, 0.995_322_265_0),
            (3.5, 0.999_999_256_9),
            (6.0, 1.0),
        ] {
            assert!(
                (f64::from(erf(x)) - want).abs() < 2e-7,
                "erf({x}) = {}",
                erf(x)
            );
        }
    }

    #[test]
    fn layer_norm_rows_have_zero_mean_unit_variance() {
        let x: Vec<f32> = (0..40).map(|i| i as f32 * 0.37 - 3.0).collect();
        let zeros = vec![0f32; 40];
        let ones = vec![1f32; 20];
        let mut out = x.clone();
        let p = NormParams {
            bias: &zeros[..20],
            gamma: &ones,
            beta: &zeros[..20],
            eps: 1e-12,
        };
        bias_residual_layer_norm(&mut out, &zeros, p);
        for row in out.chunks(20) {
            let mean: f32 = row.iter().sum::<f32>() / 20.0;
            let var: f32 = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 20.0;
            assert!(
                mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
                "{mean} {var}"
            );
        }
    }

    #[test]
    fn an_overflowing_row_normalizes_to_nan_not_to_beta() {
        // Squares of 1e20 overflow f32: the row's variance is infinite.
        let mut x: Vec<f32> = (0..20)
            .map(|i| if i % 2 == 0 { 1e20 } else { -1e20 })
            .collect();
        x.extend((0..20).map(|i| i as f32));
        let zeros = vec![0f32; 40];
        let ones = vec![1f32; 20];
        let beta = vec![0.5f32; 20];
        let p = NormParams {
            bias: &zeros[..20],
            gamma: &ones,
            beta: &beta,
            eps: 1e-12,
        };
        bias_residual_layer_norm(&mut x, &zeros, p);
        assert!(x[..20].iter().all(|v| v.is_nan()), "{:?}", &x[..20]);
        assert!(x[20..].iter().all(|v| v.is_finite()));
    }

    #[test]
    fn attention_of_one_token_returns_its_value() {
        // One sequence of one token, 2 heads of dim 2: softmax over one key is 1.
        let qkv = [
            1., 2., 3., 4., /* k */ 5., 6., 7., 8., /* v */ 9., 10., 11., 12.,
        ];
        let bias = [0f32; 12];
        let out = packed_attention(
            &qkv,
            &bias,
            &[0, 1],
            AttentionShape {
                heads: 2,
                head_dim: 2,
            },
        );
        assert_eq!(out, vec![9., 10., 11., 12.]);
    }

    #[test]
    fn attention_over_several_keys_matches_a_plain_loop() {
        // Two sequences (3 and 2 tokens) back to back, 2 heads of dim 3, with a QKV bias.
        let shape = AttentionShape {
            heads: 2,
            head_dim: 3,
        };
        let (h, offsets) = (6, [0usize, 3, 5]);
        let qkv: Vec<f32> = (0..5 * 3 * h).map(|i| (i as f32 * 0.37).sin()).collect();
        let bias: Vec<f32> = (0..3 * h).map(|i| (i as f32 * 0.11).cos() * 0.5).collect();
        let out = packed_attention(&qkv, &bias, &offsets, shape);
        let x = |t: usize, part: usize, head: usize, d: usize| {
            let c = part * h + head * 3 + d;
            f64::from(qkv[t * 3 * h + c]) + f64::from(bias[c])
        };
        for s in 0..2 {
            let tokens = offsets[s]..offsets[s + 1];
            for head in 0..2 {
                for i in tokens.clone() {
                    let scores: Vec<f64> = tokens
                        .clone()
                        .map(|j| {
                            (0..3)
                                .map(|d| x(i, 0, head, d) * x(j, 1, head, d))
                                .sum::<f64>()
                                / 3f64.sqrt()
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::MIN, f64::max);
                    let weights: Vec<f64> = scores.iter().map(|v| (v - max).exp()).collect();
                    let total: f64 = weights.iter().sum();
                    for d in 0..3 {
                        let want: f64 = tokens
                            .clone()
                            .zip(&weights)
                            .map(|(j, w)| w / total * x(j, 2, head, d))
                            .sum();
                        let got = f64::from(out[i * h + head * 3 + d]);
                        assert!(
                            (got - want).abs() < 1e-5,
                            "token {i} head {head}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn layer_norm_with_bias_residual_gamma_and_beta_matches_a_plain_loop() {
        let width = 20;
        let x: Vec<f32> = (0..3 * width)
            .map(|i| (i as f32 * 0.53).sin() * 3.0)
            .collect();
        let residual: Vec<f32> = (0..3 * width).map(|i| (i as f32 * 0.29).cos()).collect();
        let bias: Vec<f32> = (0..width).map(|i| i as f32 * 0.05 - 0.4).collect();
        let gamma: Vec<f32> = (0..width)
            .map(|i| 0.5 + (i as f32 * 0.7).sin().abs())
            .collect();
        let beta: Vec<f32> = (0..width).map(|i| (i as f32 * 0.9).cos() * 0.3).collect();
        let mut out = x.clone();
        let p = NormParams {
            bias: &bias,
            gamma: &gamma,
            beta: &beta,
            eps: 1e-12,
        };
        bias_residual_layer_norm(&mut out, &residual, p);
        for r in 0..3 {
            let row: Vec<f64> = (0..width)
                .map(|c| {
                    f64::from(x[r * width + c])
                        + f64::from(residual[r * width + c])
                        + f64::from(bias[c])
                })
                .collect();
            let mean = row.iter().sum::<f64>() / width as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / width as f64;
            for c in 0..width {
                let want = (row[c] - mean) / (var + 1e-12).sqrt() * f64::from(gamma[c])
                    + f64::from(beta[c]);
                let got = f64::from(out[r * width + c]);
                assert!(
                    (got - want).abs() < 1e-5,
                    "row {r} col {c}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn few_rows_product_matches_a_plain_loop() {
        let (rows, inner, out) = (3, 37, 70);
        let x: Vec<f32> = (0..rows * inner).map(|v| (v as f32 * 0.3).sin()).collect();
        let w: Vec<f32> = (0..out * inner).map(|v| (v as f32 * 0.7).cos()).collect();
        let y = few_rows_product(&x, &w, inner);
        for i in 0..rows {
            for o in 0..out {
                let want: f32 = (0..inner)
                    .map(|k| x[i * inner + k] * w[o * inner + k])
                    .sum();
                assert!((y[i * out + o] - want).abs() < 1e-4, "({i}, {o})");
            }
        }
    }
}
