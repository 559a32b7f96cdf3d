//! Differentiable fused ops for training on the CPU in f32: LayerNorm, erf-GELU, the scaled
//! and masked attention softmax, and seeded dropout.
//!
//! Built from candle's elementary ops, a LayerNorm is nine tensors, a softmax five and a dropout
//! four, each allocated, walked once and kept alive until the backward pass; on (batch, heads,
//! seq, seq) attention scores that dominated training time and memory. Each op here is one
//! `CustomOp` with a forward kernel and a hand-written backward kernel, so the autograd graph
//! holds one output per op. The backward formulas are checked against candle's own autograd
//! of the composite ops in this module's tests. Other devices and dtypes keep the composite ops.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor,
};
use rayon::prelude::*;

use crate::kernels;

/// Whether the fused ops handle `t`: a CPU f32 tensor.
pub(crate) fn supported(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// The element range of a contiguous layout.
fn contiguous_range(layout: &Layout) -> Result<std::ops::Range<usize>> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("fused CPU ops need contiguous inputs".into()))?;
    Ok(start..end)
}

/// The values of a contiguous f32 CPU operand (also the packed inference path's accessor).
pub(crate) fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("fused CPU ops run in f32 only")
    };
    Ok(&data[contiguous_range(layout)?])
}

/// The values of a contiguous f32 CPU operand, writable.
pub(crate) fn f32_slice_mut<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("fused CPU ops run in f32 only")
    };
    Ok(&mut data[contiguous_range(layout)?])
}

/// Runs `f` on the values of a CPU f32 tensor (made contiguous first).
fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => f(f32_slice(s, layout)?),
        _ => candle_core::bail!("fused op: CPU tensors only"),
    }
}

fn tensor(values: Vec<f32>, like: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(values, like.shape(), like.device())
}

// ---------------------------------------------------------------------------------------------
// LayerNorm

/// `LayerNorm(x) · γ + β` over the last dimension, differentiable in all three.
pub(crate) fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, LayerNorm { eps })
}

struct LayerNorm {
    eps: f32,
}

/// Mean and 1/σ of one row (two passes, as the inference kernel).
#[inline]
fn moments(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, crate::kernels::inverse_std(var, eps))
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "sbert-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, gamma, beta) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?, f32_slice(s3, l3)?);
        let h = gamma.len();
        if h == 0 || beta.len() != h || x.len() % h != 0 {
            candle_core::bail!("layer norm: {} values, γ {h}, β {}", x.len(), beta.len());
        }
        let mut y = vec![0f32; x.len()];
        let task = kernels::rows_per_task(h) * h;
        y.par_chunks_mut(task)
            .zip(x.par_chunks(task))
            .for_each(|(y, x)| {
                for (y, x) in y.chunks_exact_mut(h).zip(x.chunks_exact(h)) {
                    let (mean, rstd) = moments(x, self.eps);
                    for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
                        *y = (x - mean) * rstd * g + b;
                    }
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let h = gamma.elem_count();
        let (dx, dgamma, dbeta) = with_values(x, |xv| {
            with_values(gamma, |gv| {
                with_values(grad, |dy| Ok(layer_norm_backward(xv, gv, dy, h, self.eps)))
            })
        })?;
        Ok((
            Some(tensor(dx, x)?),
            Some(tensor(dgamma, gamma)?),
            Some(tensor(dbeta, gamma)?),
        ))
    }
}

/// `dx = (1/σ)(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂))` with `ĝ = dy·γ`; `dγ = Σ dy·x̂`, `dβ = Σ dy`
/// (the training path's kernel, after recomputing x̂ and 1/σ from `x`).
fn layer_norm_backward(
    x: &[f32],
    gamma: &[f32],
    dy: &[f32],
    h: usize,
    eps: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut xhat = vec![0f32; x.len()];
    let mut rstd = vec![0f32; x.len() / h];
    let per = kernels::rows_per_task(h);
    xhat.par_chunks_mut(per * h)
        .zip(rstd.par_chunks_mut(per))
        .zip(x.par_chunks(per * h))
        .for_each(|((xhat, rstd), x)| {
            for ((xh, rs), x) in xhat.chunks_exact_mut(h).zip(rstd).zip(x.chunks_exact(h)) {
                let (mean, r) = moments(x, eps);
                *rs = r;
                xh.iter_mut()
                    .zip(x)
                    .for_each(|(xh, x)| *xh = (x - mean) * r);
            }
        });
    let (mut dgamma, mut dbeta) = (vec![0f32; h], vec![0f32; h]);
    let dx = crate::kernels::norm_backward(dy, &xhat, &rstd, gamma, &mut dgamma, &mut dbeta);
    (dx, dgamma, dbeta)
}

// ---------------------------------------------------------------------------------------------
// GELU (erf)

/// `x · Φ(x)`, differentiable.
pub(crate) fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(GeluErf)
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "sbert-gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l)?;
        let mut y = x.to_vec();
        y.par_chunks_mut(1 << 14)
            .for_each(|c| c.iter_mut().for_each(|v| *v = kernels::gelu_erf(*v)));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        // d/dx x·Φ(x) = Φ(x) + x·φ(x).
        let dx = with_values(x, |xv| {
            with_values(grad, |dy| {
                let mut dx = vec![0f32; xv.len()];
                dx.par_chunks_mut(1 << 14)
                    .zip(xv.par_chunks(1 << 14))
                    .zip(dy.par_chunks(1 << 14))
                    .for_each(|((dx, x), dy)| {
                        for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                            let cdf =
                                0.5 * (1.0 + kernels::erf(x * std::f32::consts::FRAC_1_SQRT_2));
                            let pdf = (-0.5 * x * x).exp() * 0.398_942_3;
                            *dx = dy * (cdf + x * pdf);
                        }
                    });
                Ok(dx)
            })
        })?;
        Ok(Some(tensor(dx, x)?))
    }
}

// ---------------------------------------------------------------------------------------------
// Attention softmax

/// `softmax(scores · scale + mask)` over the last dimension, for `scores (b, h, q, k)` and an
/// additive `mask (b, 1, 1, k)`; differentiable in `scores` (the mask is a constant).
pub(crate) fn masked_softmax(scores: &Tensor, mask: &Tensor, scale: f32) -> Result<Tensor> {
    let (b, _, _, k) = scores.dims4()?;
    let mask_dims = mask.dims();
    if mask_dims != [b, 1, 1, k] {
        candle_core::bail!(
            "masked softmax: mask {mask_dims:?} for scores {:?}",
            scores.dims()
        );
    }
    scores
        .contiguous()?
        .apply_op2(&mask.contiguous()?, MaskedSoftmax { scale })
}

struct MaskedSoftmax {
    scale: f32,
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "sbert-masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (scores, mask) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?);
        let dims = l1.shape().dims();
        let k = dims[3];
        let rows_per_batch = dims[1] * dims[2] * k;
        let mut y = vec![0f32; scores.len()];
        y.par_chunks_mut(k)
            .zip(scores.par_chunks(k))
            .enumerate()
            .for_each(|(row, (y, s))| {
                let batch = row * k / rows_per_batch;
                let m = &mask[batch * k..(batch + 1) * k];
                let mut max = f32::NEG_INFINITY;
                for ((y, &s), &m) in y.iter_mut().zip(s).zip(m) {
                    *y = s * self.scale + m;
                    max = max.max(*y);
                }
                let mut sum = 0f32;
                for y in y.iter_mut() {
                    *y = (*y - max).exp();
                    sum += *y;
                }
                let inv = 1.0 / sum;
                y.iter_mut().for_each(|y| *y *= inv);
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        scores: &Tensor,
        _mask: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // d scores = scale · y ⊙ (dy − Σ dy ⊙ y).
        let k = scores.dim(3)?;
        let ds = with_values(res, |y| {
            with_values(grad, |dy| {
                let mut ds = vec![0f32; y.len()];
                ds.par_chunks_mut(k)
                    .zip(y.par_chunks(k))
                    .zip(dy.par_chunks(k))
                    .for_each(|((ds, y), dy)| {
                        let dot: f32 = y.iter().zip(dy).map(|(y, dy)| y * dy).sum();
                        for ((ds, &y), &dy) in ds.iter_mut().zip(y).zip(dy) {
                            *ds = self.scale * y * (dy - dot);
                        }
                    });
                Ok(ds)
            })
        })?;
        Ok((Some(tensor(ds, scores)?), None))
    }
}

// ---------------------------------------------------------------------------------------------
// Dropout

/// Inverted dropout with probability `p`: each value is zeroed with probability `p` and the
/// rest scaled by `1/(1−p)`. The mask is a pure function of `seed` and the element index, so the
/// backward pass recomputes it instead of storing it, and a seed replays the same masks.
pub(crate) fn dropout(x: &Tensor, p: f32, seed: u64) -> Result<Tensor> {
    if !(0.0..1.0).contains(&p) {
        candle_core::bail!("dropout probability {p} is outside [0, 1)");
    }
    x.contiguous()?.apply_op1(Dropout { p, seed })
}

struct Dropout {
    p: f32,
    seed: u64,
}

/// SplitMix64's finalizer: a well-mixed 64-bit hash of `x`.
#[inline(always)]
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The mask of inverted dropout as a pure function of a seed and the element index: element
/// `i` is kept when the top 32 bits of `mix(mix(seed) ^ i)` reach `p · 2³²`. Shared by this
/// op and the training path, which recompute it in their backward passes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DropoutMask {
    key: u64,
    threshold: u64,
    scale: f32,
    active: bool,
}

impl DropoutMask {
    pub(crate) fn new(p: f32, seed: u64) -> Self {
        Self {
            key: mix(seed),
            threshold: (f64::from(p) * (1u64 << 32) as f64) as u64,
            scale: 1.0 / (1.0 - p),
            active: p > 0.0,
        }
    }

    /// Whether element `index` is kept.
    #[inline(always)]
    pub(crate) fn keeps(&self, index: usize) -> bool {
        !self.active || (mix(self.key ^ index as u64) >> 32) >= self.threshold
    }

    /// The factor element `index` is multiplied by: 0 or 1/(1−p).
    #[inline(always)]
    pub(crate) fn factor(&self, index: usize) -> f32 {
        if self.keeps(index) {
            self.scale
        } else {
            0.0
        }
    }

    /// `x ← x ⊙ mask` for a buffer whose first element has index 0.
    pub(crate) fn apply(&self, x: &mut [f32]) {
        if !self.active {
            return;
        }
        const CHUNK: usize = 1 << 14;
        x.par_chunks_mut(CHUNK).enumerate().for_each(|(c, x)| {
            for (i, v) in x.iter_mut().enumerate() {
                *v *= self.factor(c * CHUNK + i);
            }
        });
    }
}

impl Dropout {
    /// `x ⊙ keep / (1 − p)` over the elements starting at index `start` (dropped values are 0,
    /// whatever `x` holds).
    fn apply(&self, out: &mut [f32], x: &[f32], start: usize) {
        let mask = DropoutMask::new(self.p, self.seed);
        for (i, (o, &x)) in out.iter_mut().zip(x).enumerate() {
            *o = if mask.keeps(start + i) {
                x * mask.scale
            } else {
                0.0
            };
        }
    }

    fn run(&self, x: &[f32]) -> Vec<f32> {
        const CHUNK: usize = 1 << 14;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(c, (o, x))| self.apply(o, x, c * CHUNK));
        out
    }
}

impl CustomOp1 for Dropout {
    fn name(&self) -> &'static str {
        "sbert-dropout"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((
            CpuStorage::F32(self.run(f32_slice(s, l)?)),
            l.shape().clone(),
        ))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dx = with_values(grad, |dy| Ok(self.run(dy)))?;
        Ok(Some(tensor(dx, x)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    /// max |a − b|; NaN when a difference is NaN (a `max` reduction would skip it).
    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        max_abs(&(a - b).expect("sub"))
    }

    fn max_abs(t: &Tensor) -> f32 {
        t.flatten_all()
            .and_then(|t| t.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>())
            .expect("values")
            .into_iter()
            .map(f32::abs)
            .fold(0.0, |m, v| if v.is_nan() || v > m { v } else { m })
    }

    /// Forward values and the gradient of `Σ w ⊙ op(x)` (w random) for the fused op and the
    /// composite reference, for every input.
    fn compare(
        inputs: &[Tensor],
        fused: impl Fn(&[Tensor]) -> Result<Tensor>,
        reference: impl Fn(&[Tensor]) -> Result<Tensor>,
        tol: f32,
    ) -> Result<()> {
        let vars: Vec<Var> = inputs.iter().map(Var::from_tensor).collect::<Result<_>>()?;
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let (a, b) = (fused(&ts)?, reference(&ts)?);
        assert!(max_diff(&a, &b) < tol, "forward: {}", max_diff(&a, &b));
        let w = Tensor::randn(0f32, 1.0, a.shape(), &Device::Cpu)?;
        let ga = (&a * &w)?.sum_all()?.backward()?;
        let gb = (&b * &w)?.sum_all()?.backward()?;
        for (i, v) in vars.iter().enumerate() {
            let (x, y) = (ga.get(v.as_tensor()), gb.get(v.as_tensor()));
            if let (Some(x), Some(y)) = (x, y) {
                let scale = max_abs(y).max(1.0);
                assert!(
                    max_diff(x, y) < tol * scale,
                    "gradient of input {i}: {}",
                    max_diff(x, y)
                );
            }
        }
        Ok(())
    }

    #[test]
    fn layer_norm_matches_composite_ops() -> Result<()> {
        let dev = Device::Cpu;
        let x = (Tensor::randn(0f32, 3.0, (2, 7, 48), &dev)? + 1.5)?;
        let gamma = Tensor::randn(1f32, 0.2, 48, &dev)?;
        let beta = Tensor::randn(0f32, 0.2, 48, &dev)?;
        compare(
            &[x, gamma, beta],
            |t| layer_norm(&t[0], &t[1], &t[2], 1e-12),
            |t| {
                let mean = t[0].mean_keepdim(D::Minus1)?;
                let c = t[0].broadcast_sub(&mean)?;
                let var = c.sqr()?.mean_keepdim(D::Minus1)?;
                c.broadcast_div(&(var + 1e-12)?.sqrt()?)?
                    .broadcast_mul(&t[1])?
                    .broadcast_add(&t[2])
            },
            1e-4,
        )
    }

    #[test]
    fn gelu_matches_candle() -> Result<()> {
        let x = Tensor::randn(0f32, 2.0, (5, 333), &Device::Cpu)?;
        compare(&[x], |t| gelu_erf(&t[0]), |t| t[0].gelu_erf(), 1e-5)
    }

    #[test]
    fn masked_softmax_matches_composite_ops() -> Result<()> {
        let dev = Device::Cpu;
        let scores = Tensor::randn(0f32, 4.0, (2, 3, 5, 6), &dev)?;
        let keep = Tensor::new(
            &[[1f32, 1., 1., 1., 0., 0.], [1., 1., 1., 1., 1., 1.]],
            &dev,
        )?;
        let mask = ((keep.ones_like()? - &keep)? * f64::from(f32::MIN))?.reshape((2, 1, 1, 6))?;
        let m = mask.clone();
        compare(
            &[scores],
            |t| masked_softmax(&t[0], &mask, 0.125),
            |t| candle_nn::ops::softmax(&(&t[0] * 0.125)?.broadcast_add(&m)?, D::Minus1),
            1e-5,
        )
    }

    #[test]
    fn dropout_is_seeded_scaled_and_differentiable() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::ones((100, 1000), DType::F32, &dev)?)?;
        let y = dropout(&x, 0.1, 7)?;
        let values = y.flatten_all()?.to_vec1::<f32>()?;
        let dropped = values.iter().filter(|&&v| v == 0.0).count() as f64 / values.len() as f64;
        assert!((dropped - 0.1).abs() < 0.01, "dropped {dropped}");
        assert!(values
            .iter()
            .all(|&v| v == 0.0 || (v - 1.0 / 0.9).abs() < 1e-6));
        assert_eq!(
            max_diff(&y, &dropout(&x, 0.1, 7)?),
            0.0,
            "same seed, same mask"
        );
        assert!(
            max_diff(&y, &dropout(&x, 0.1, 8)?) > 0.0,
            "another seed, another mask"
        );
        // The gradient of Σ dropout(x) is the mask itself, scaled.
        let grads = y.sum_all()?.backward()?;
        let g = grads.get(x.as_tensor()).expect("gradient");
        assert_eq!(max_diff(g, &y), 0.0);
        Ok(())
    }
}
