//! LayerNorm over rows, with the bias, dropout and residual connection that precede it in
//! BERT: `y = LayerNorm(drop(x + bias) + residual) · γ + β`, forward (optionally keeping x̂ and 1/σ for the
//! backward pass) and backward.

use rayon::prelude::*;

use super::dropout::DropoutMask;
use super::{axpy, multiversion, rows_per_task, sum8};

/// What is added to a row before it is normalized: `drop(x + bias) + residual`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NormInput<'a> {
    /// Added to every row first (the bias of the product that made `x`).
    pub bias: Option<&'a [f32]>,
    /// Dropout of `x` (indexed by element over the whole matrix).
    pub drop: DropoutMask,
    /// A matrix of `x`'s shape added after dropout.
    pub residual: Option<&'a [f32]>,
}

/// LayerNorm's parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NormParams<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub eps: f32,
}

/// What a LayerNorm keeps for its backward pass: x̂ `(rows, width)` and 1/σ `(rows)`.
#[derive(Debug, Clone, Default)]
pub(crate) struct NormSaved {
    pub xhat: Vec<f32>,
    pub rstd: Vec<f32>,
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

/// One task's rows: `x` from element `first` of the matrix on, and its slices of what is kept.
struct Rows<'a> {
    x: &'a mut [f32],
    first: usize,
    residual: Option<&'a [f32]>,
    xhat: Option<&'a mut [f32]>,
    rstd: Option<&'a mut [f32]>,
}

#[inline(always)]
fn norm_rows_generic(rows: Rows<'_>, input: NormInput<'_>, p: NormParams<'_>) {
    let width = p.gamma.len();
    let drop = input.drop;
    let Rows {
        x,
        first,
        residual,
        mut xhat,
        mut rstd,
    } = rows;
    for (r, row) in x.chunks_exact_mut(width).enumerate() {
        if let Some(bias) = input.bias {
            axpy(row, 1.0, bias);
        }
        if drop.is_active() {
            let base = first + r * width;
            for (k, v) in row.iter_mut().enumerate() {
                *v *= drop.factor(base + k);
            }
        }
        if let Some(residual) = residual {
            axpy(row, 1.0, &residual[r * width..(r + 1) * width]);
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
        if let Some(xhat) = xhat.as_deref_mut() {
            for (xh, &v) in xhat[r * width..(r + 1) * width].iter_mut().zip(row.iter()) {
                *xh = v * inv;
            }
        }
        if let Some(rstd) = rstd.as_deref_mut() {
            rstd[r] = inv;
        }
        for ((v, &g), &b) in row.iter_mut().zip(p.gamma).zip(p.beta) {
            *v = *v * inv * g + b;
        }
    }
}

multiversion!(fn norm_rows(rows: Rows<'_>, input: NormInput<'_>, p: NormParams<'_>) => norm_rows_generic);

/// `x ← LayerNorm(drop(x + bias) + residual) · γ + β` in place, rows as wide as γ; with `keep`, also
/// returns x̂ and 1/σ for [`norm_backward`].
pub(crate) fn add_norm(
    x: &mut [f32],
    input: NormInput<'_>,
    p: NormParams<'_>,
    keep: bool,
) -> Option<NormSaved> {
    let width = p.gamma.len();
    let rows = x.len() / width.max(1);
    let per = rows_per_task(width);
    let chunk = per * width;
    let mut saved = keep.then(|| NormSaved {
        xhat: vec![0f32; x.len()],
        rstd: vec![0f32; rows],
    });
    let tasks = x.len().div_ceil(chunk.max(1));
    let mut residual = input.residual.map(|r| r.chunks(chunk));
    let mut kept = saved
        .as_mut()
        .map(|s| (s.xhat.chunks_mut(chunk), s.rstd.chunks_mut(per)));
    let mut jobs = Vec::with_capacity(tasks);
    for (t, x) in x.chunks_mut(chunk).enumerate() {
        let (xhat, rstd) = match kept.as_mut() {
            Some((xh, rs)) => (xh.next(), rs.next()),
            None => (None, None),
        };
        jobs.push(Rows {
            x,
            first: t * chunk,
            residual: residual.as_mut().and_then(Iterator::next),
            xhat,
            rstd,
        });
    }
    jobs.into_par_iter()
        .for_each(|rows| norm_rows(rows, input, p));
    saved
}

#[inline(always)]
fn norm_backward_rows_generic(
    dx: &mut [f32],
    dy: &[f32],
    saved: (&[f32], &[f32]),
    gamma: &[f32],
    grads: (&mut [f32], &mut [f32]),
) {
    let h = gamma.len();
    let (xhat, rstd) = saved;
    let (dgamma, dbeta) = grads;
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

multiversion!(fn norm_backward_rows(dx: &mut [f32], dy: &[f32], saved: (&[f32], &[f32]), gamma: &[f32], grads: (&mut [f32], &mut [f32])) => norm_backward_rows_generic);

/// LayerNorm's backward pass from x̂ and 1/σ: returns the gradient of its input
/// (`drop(x + bias) + residual`), adds `Σ dy·x̂` to `dgamma` and `Σ dy` to `dbeta`.
pub(crate) fn norm_backward(
    dy: &[f32],
    saved: &NormSaved,
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
        .zip(saved.xhat.par_chunks(per * h))
        .zip(saved.rstd.par_chunks(per))
        .map(|(((dx, dy), xh), rs)| {
            let (mut g, mut b) = (vec![0f32; h], vec![0f32; h]);
            norm_backward_rows(dx, dy, (xh, rs), gamma, (&mut g, &mut b));
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

    fn params<'a>(gamma: &'a [f32], beta: &'a [f32]) -> NormParams<'a> {
        NormParams {
            gamma,
            beta,
            eps: 1e-12,
        }
    }

    const PLAIN: NormInput<'static> = NormInput {
        bias: None,
        drop: DropoutMask::NONE,
        residual: None,
    };

    #[test]
    fn rows_have_zero_mean_and_unit_variance() {
        let mut x: Vec<f32> = (0..40).map(|i| i as f32 * 0.37 - 3.0).collect();
        let (ones, zeros) = (vec![1f32; 20], vec![0f32; 20]);
        add_norm(&mut x, PLAIN, params(&ones, &zeros), false);
        for row in x.chunks(20) {
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
        let (ones, beta) = (vec![1f32; 20], vec![0.5f32; 20]);
        add_norm(&mut x, PLAIN, params(&ones, &beta), false);
        assert!(x[..20].iter().all(|v| v.is_nan()), "{:?}", &x[..20]);
        assert!(x[20..].iter().all(|v| v.is_finite()));
    }

    /// Rows of the test matrices, and γ, β that are not 1 and 0.
    fn case(rows: usize, width: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let x = (0..rows * width)
            .map(|i| (i as f32 * 0.53).sin() * 3.0)
            .collect();
        let residual = (0..rows * width).map(|i| (i as f32 * 0.29).cos()).collect();
        let gamma = (0..width)
            .map(|i| 0.5 + (i as f32 * 0.7).sin().abs())
            .collect();
        let beta = (0..width).map(|i| (i as f32 * 0.9).cos() * 0.3).collect();
        (x, residual, gamma, beta)
    }

    /// The bias of the test rows.
    fn bias(width: usize) -> Vec<f32> {
        (0..width).map(|i| i as f32 * 0.05 - 0.4).collect()
    }

    /// `LayerNorm(drop(x + b) + r)·γ + β` of one row in f64.
    fn reference(x: &[f32], r: &[f32], f: &[f32], gamma: &[f32], beta: &[f32]) -> Vec<f64> {
        let b = bias(x.len());
        let z: Vec<f64> = (0..x.len())
            .map(|c| (f64::from(x[c]) + f64::from(b[c])) * f64::from(f[c]) + f64::from(r[c]))
            .collect();
        let n = z.len() as f64;
        let mean = z.iter().sum::<f64>() / n;
        let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        z.iter()
            .enumerate()
            .map(|(c, v)| {
                (v - mean) / (var + 1e-12).sqrt() * f64::from(gamma[c]) + f64::from(beta[c])
            })
            .collect()
    }

    #[test]
    fn dropout_residual_gamma_and_beta_match_a_plain_loop_in_f64() {
        let (rows, width) = (700, 24);
        let (x, residual, gamma, beta) = case(rows, width);
        let drop = DropoutMask::new(0.25, 3);
        let factors = drop.factors(x.len());
        let mut out = x.clone();
        let b = bias(width);
        let input = NormInput {
            bias: Some(&b),
            drop,
            residual: Some(&residual),
        };
        let saved = add_norm(&mut out, input, params(&gamma, &beta), true).expect("kept");
        for r in 0..rows {
            let span = r * width..(r + 1) * width;
            let want = reference(
                &x[span.clone()],
                &residual[span.clone()],
                &factors[span.clone()],
                &gamma,
                &beta,
            );
            for c in 0..width {
                let got = f64::from(out[r * width + c]);
                assert!(
                    (got - want[c]).abs() < 1e-5,
                    "row {r} col {c}: {got} vs {}",
                    want[c]
                );
                let xhat = (got - f64::from(beta[c])) / f64::from(gamma[c]);
                assert!((f64::from(saved.xhat[r * width + c]) - xhat).abs() < 1e-4);
            }
        }
        assert_eq!(saved.rstd.len(), rows);
    }

    #[test]
    fn backward_matches_central_differences_in_f64() {
        let (rows, width) = (3, 10);
        let (x, residual, gamma, beta) = case(rows, width);
        let none = vec![1f32; x.len()];
        let w: Vec<f64> = (0..x.len())
            .map(|i| ((i * 7 % 11) as f64 - 5.0) / 5.0)
            .collect();
        // Loss Σ w ⊙ y in f64, as a function of the input row values and of γ.
        let loss = |x: &[f32], gamma: &[f32]| -> f64 {
            (0..rows)
                .map(|r| {
                    let span = r * width..(r + 1) * width;
                    reference(
                        &x[span.clone()],
                        &residual[span.clone()],
                        &none[span.clone()],
                        gamma,
                        &beta,
                    )
                    .iter()
                    .zip(&w[span])
                    .map(|(y, w)| y * w)
                    .sum::<f64>()
                })
                .sum()
        };
        let mut out = x.clone();
        let b = bias(width);
        let input = NormInput {
            bias: Some(&b),
            drop: DropoutMask::NONE,
            residual: Some(&residual),
        };
        let saved = add_norm(&mut out, input, params(&gamma, &beta), true).expect("kept");
        let dy: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let (mut dgamma, mut dbeta) = (vec![0f32; width], vec![0f32; width]);
        let dx = norm_backward(&dy, &saved, &gamma, &mut dgamma, &mut dbeta);
        let step = 1e-2f32;
        for i in 0..x.len() {
            let (mut up, mut down) = (x.clone(), x.clone());
            up[i] += step;
            down[i] -= step;
            let numeric = (loss(&up, &gamma) - loss(&down, &gamma)) / f64::from(2.0 * step);
            assert!(
                (f64::from(dx[i]) - numeric).abs() < 1e-3,
                "dx[{i}]: {} vs {numeric}",
                dx[i]
            );
        }
        for c in 0..width {
            let (mut up, mut down) = (gamma.clone(), gamma.clone());
            up[c] += step;
            down[c] -= step;
            let numeric = (loss(&x, &up) - loss(&x, &down)) / f64::from(2.0 * step);
            assert!((f64::from(dgamma[c]) - numeric).abs() < 1e-3, "dγ[{c}]");
            let sum: f64 = (0..rows).map(|r| w[r * width + c]).sum();
            assert!((f64::from(dbeta[c]) - sum).abs() < 1e-5, "dβ[{c}]");
        }
    }
}
