//! The feed-forward activations and their derivatives.

use rayon::prelude::*;

use super::multiversion;
use crate::config::HiddenAct;

/// Values per rayon task of the element-wise kernels.
const CHUNK: usize = 1 << 14;

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

/// eˣ as a polynomial of the remainder after powers of two (Cephes' `expf` coefficients),
/// written so that LLVM vectorizes it (`f32::exp` is a call per value): relative error within
/// a few units in the last place; inputs below −87.3 give about 1e-38 rather than a subnormal
/// or 0, inputs above 88.3 give about 2e38 rather than a larger value or infinity, and NaN
/// stays NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    // ln 2 in two parts, so that `x − n·ln 2` keeps its low bits.
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2ⁿ by its exponent bits, `n + 127` (within [1, 254] after the clamp). Adding 2²³ puts
    // that integer in the low mantissa bits, and the shift moves it into the exponent: unlike
    // `n as i32`, whose saturating conversion LLVM does one lane at a time, this vectorizes.
    e * f32::from_bits((n + (127.0 + 8_388_608.0)).to_bits() << 23)
}

#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `√(2/π)` of the tanh approximation of GELU.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;

#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}

#[inline(always)]
fn relu(x: f32) -> f32 {
    x.max(0.0)
}

#[inline(always)]
fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

#[inline(always)]
fn gelu_erf_slope(x: f32) -> f32 {
    let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
    // x · φ(x), φ the standard normal density (1/√(2π) = 0.398 942 3).
    cdf + x * (-0.5 * x * x).exp() * 0.398_942_3
}

#[inline(always)]
fn gelu_tanh_slope(x: f32) -> f32 {
    let t = (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh();
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044_715 * x * x)
}

#[inline(always)]
fn relu_slope(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else {
        0.0
    }
}

#[inline(always)]
fn silu_slope(x: f32) -> f32 {
    let s = 1.0 / (1.0 + (-x).exp());
    s * (1.0 + x * (1.0 - s))
}

/// A function of one value.
#[cfg(test)]
type Scalar = fn(f32) -> f32;

/// `act(x)` and `act'(x)` of one activation.
#[cfg(test)]
fn functions(act: HiddenAct) -> (Scalar, Scalar) {
    match act {
        HiddenAct::Gelu => (gelu_erf, gelu_erf_slope),
        HiddenAct::GeluTanh => (gelu_tanh, gelu_tanh_slope),
        HiddenAct::Relu => (relu, relu_slope),
        HiddenAct::Silu => (silu, silu_slope),
    }
}

/// `x ← f(x + bias)` over whole rows, keeping `x + bias` in `pre` when given.
#[inline(always)]
fn bias_map_rows<F: Fn(f32) -> f32>(x: &mut [f32], bias: &[f32], pre: Option<&mut [f32]>, f: F) {
    let width = bias.len();
    match pre {
        Some(pre) => {
            for (row, pre) in x.chunks_exact_mut(width).zip(pre.chunks_exact_mut(width)) {
                for ((v, p), &b) in row.iter_mut().zip(pre).zip(bias) {
                    *p = *v + b;
                    *v = f(*p);
                }
            }
        }
        None => {
            for row in x.chunks_exact_mut(width) {
                for (v, &b) in row.iter_mut().zip(bias) {
                    *v = f(*v + b);
                }
            }
        }
    }
}

#[inline(always)]
fn bias_act_rows_generic(x: &mut [f32], bias: &[f32], pre: Option<&mut [f32]>, act: HiddenAct) {
    // A `match` outside the loops (not a function pointer inside them), so each arm inlines.
    match act {
        HiddenAct::Gelu => bias_map_rows(x, bias, pre, gelu_erf),
        HiddenAct::GeluTanh => bias_map_rows(x, bias, pre, gelu_tanh),
        HiddenAct::Relu => bias_map_rows(x, bias, pre, relu),
        HiddenAct::Silu => bias_map_rows(x, bias, pre, silu),
    }
}

multiversion!(fn bias_act_rows(x: &mut [f32], bias: &[f32], pre: Option<&mut [f32]>, act: HiddenAct) => bias_act_rows_generic);

/// `x ← act(x + bias)` over whole rows of `x`, on the calling thread.
pub(crate) fn bias_act_on_thread(x: &mut [f32], bias: &[f32], act: HiddenAct) {
    bias_act_rows(x, bias, None, act);
}

/// The feed-forward block `act(x · W₁ᵀ + b₁) · W₂ᵀ` for `x (rows, inner)`, `(rows, out)`,
/// run whole per block of `per` rows, one block per task: `first(x, h)` writes a block's
/// product by `W₁` (`b1.len()` wide), `second(h, y)` its product by `W₂`, both on the task's
/// thread. A block's intermediate activations (4× wider than `x`) stay in its core's cache,
/// and the block needs one fork-join instead of three.
pub(crate) fn feed_forward_by_row_blocks(
    (x, inner): (&[f32], usize),
    per: usize,
    (b1, act): (&[f32], HiddenAct),
    out: usize,
    first: impl Fn(&[f32], &mut [f32]) + Sync,
    second: impl Fn(&[f32], &mut [f32]) + Sync,
) -> Vec<f32> {
    let mid = b1.len();
    let mut y = vec![0f32; x.len() / inner * out];
    y.par_chunks_mut(per * out)
        .zip(x.par_chunks(per * inner))
        .for_each(|(y, x)| {
            let mut h = vec![0f32; x.len() / inner * mid];
            first(x, &mut h);
            bias_act_on_thread(&mut h, b1, act);
            second(&h, y);
        });
    y
}

/// `x ← act(x + bias)` in place, rows as wide as `bias`; with `keep`, also returns `x + bias`
/// (the input of the activation, for [`activation_backward`]).
pub(crate) fn bias_act(
    x: &mut [f32],
    bias: &[f32],
    act: HiddenAct,
    keep: bool,
) -> Option<Vec<f32>> {
    let chunk = super::rows_per_task(bias.len()) * bias.len();
    let mut pre = keep.then(|| vec![0f32; x.len()]);
    match pre.as_deref_mut() {
        Some(pre) => x
            .par_chunks_mut(chunk)
            .zip(pre.par_chunks_mut(chunk))
            .for_each(|(x, pre)| bias_act_rows(x, bias, Some(pre), act)),
        None => x
            .par_chunks_mut(chunk)
            .for_each(|x| bias_act_rows(x, bias, None, act)),
    }
    pre
}

#[inline(always)]
fn backward_chunk_generic(dy: &mut [f32], x: &[f32], act: HiddenAct) {
    match act {
        HiddenAct::Gelu => dy
            .iter_mut()
            .zip(x)
            .for_each(|(d, &x)| *d *= gelu_erf_slope(x)),
        HiddenAct::GeluTanh => dy
            .iter_mut()
            .zip(x)
            .for_each(|(d, &x)| *d *= gelu_tanh_slope(x)),
        HiddenAct::Relu => dy.iter_mut().zip(x).for_each(|(d, &x)| *d *= relu_slope(x)),
        HiddenAct::Silu => dy.iter_mut().zip(x).for_each(|(d, &x)| *d *= silu_slope(x)),
    }
}

multiversion!(fn backward_chunk(dy: &mut [f32], x: &[f32], act: HiddenAct) => backward_chunk_generic);

/// `dy ← dy ⊙ act'(x)`: the gradient of the activation's input from its output's, `x` the
/// input of the forward pass.
pub(crate) fn activation_backward(dy: &mut [f32], x: &[f32], act: HiddenAct) {
    dy.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(dy, x)| backward_chunk(dy, x, act));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_of_the_exact_function_and_keeps_nan() {
        let mut worst = 0f64;
        for i in -870_000..=883_000 {
            let x = i as f32 * 1e-4;
            let exact = f64::from(x).exp();
            worst = worst.max((f64::from(exp(x)) - exact).abs() / exact);
        }
        assert!(worst < 4e-7, "relative error {worst}");
        assert!(exp(-1e4) > 0.0 && exp(-1e4) < 1e-37);
        assert!(exp(1e4).is_finite() && exp(1e4) > 1e38);
        assert!(exp(f32::NAN).is_nan());
    }

    const ACTIVATIONS: [HiddenAct; 4] = [
        HiddenAct::Gelu,
        HiddenAct::GeluTanh,
        HiddenAct::Relu,
        HiddenAct::Silu,
    ];

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
    fn every_derivative_matches_a_central_difference_in_f64() {
        // f64 references: exact erf via its series is overkill; central differences of the f32
        // functions at a step where rounding stays below the tolerance suffice.
        for act in ACTIVATIONS {
            let (f, slope) = functions(act);
            for x in [-3.1f32, -1.2, -0.3, 0.25, 0.9, 2.7] {
                let h = 1e-2f32;
                let numeric = (f64::from(f(x + h)) - f64::from(f(x - h))) / f64::from(2.0 * h);
                let got = f64::from(slope(x));
                assert!(
                    (got - numeric).abs() < 2e-3,
                    "{act:?}'({x}) = {got}, central difference {numeric}"
                );
            }
        }
    }

    #[test]
    fn the_kernels_apply_the_functions_they_name() {
        let x: Vec<f32> = (0..40).map(|i| i as f32 * 0.2 - 4.0).collect();
        for act in ACTIVATIONS {
            let (f, slope) = functions(act);
            let bias = [0.5f32, -0.25, 0.0, 1.0];
            let mut y = x.clone();
            let pre = bias_act(&mut y, &bias, act, true).expect("kept");
            assert!(bias_act(&mut x.clone(), &bias, act, false).is_none());
            let mut dy = vec![2f32; x.len()];
            activation_backward(&mut dy, &pre, act);
            for (i, &v) in x.iter().enumerate() {
                let z = v + bias[i % 4];
                assert_eq!(pre[i], z);
                assert_eq!(y[i], f(z), "{act:?}({z})");
                assert_eq!(dy[i], 2.0 * slope(z), "{act:?}'({z})");
            }
        }
    }
}
