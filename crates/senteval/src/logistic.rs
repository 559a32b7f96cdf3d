//! L2-regularized logistic regression, many fits at once on one feature matrix.
//!
//! The objective is scikit-learn's `LogisticRegression(C)` (lbfgs, the SentEval sklearn
//! variant): the mean log-loss over a model's training rows plus `‖W‖² / (2·C·n)`, the
//! intercept unpenalized; a sigmoid for two classes, a full softmax for more. Each fit is
//! minimized by its own L-BFGS (10 correction pairs, backtracking Armijo line search, stopping
//! at gradient ∞-norm ≤ 1e-4, relative decrease ≤ 64·ε or the iteration cap — scikit-learn's
//! `tol` and `ftol`; the cap is the caller's).
//!
//! Why not a crate: SentEval's protocol fits hundreds of small models (penalty × inner fold ×
//! outer fold) on row subsets of the same embeddings. Here they advance in lock step, so every
//! pass over the data is two matrix products serving all of them (`Zᵀ = Wᵀ·Xᵀ`,
//! `Gᵀ = Rᵀ·X`, candle's CPU matmul) instead of hundreds of matrix–vector products; a model's
//! training rows are an index list, so no data is copied per fold. Linear-model crates fit one
//! model per call and bring their own array stack.

use std::collections::VecDeque;

use candle_core::{Device, Tensor};

/// Features with a trailing 1 (the intercept), as `(n, d+1)` and its transpose.
#[derive(Debug)]
pub(crate) struct Design {
    rows: usize,
    cols: usize,
    x: Tensor,
    xt: Tensor,
}

impl Design {
    /// `features`: `n` rows of `dim` values, row-major.
    pub(crate) fn new(features: &[f32], dim: usize) -> candle_core::Result<Self> {
        let rows = features.len().checked_div(dim).unwrap_or(0);
        let cols = dim + 1;
        let mut data = Vec::with_capacity(rows * cols);
        for row in features.chunks_exact(dim) {
            data.extend_from_slice(row);
            data.push(1.0);
        }
        let x = Tensor::from_vec(data, (rows, cols), &Device::Cpu)?;
        let xt = x.t()?.contiguous()?;
        Ok(Self { rows, cols, x, xt })
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// `Wᵀ·Xᵀ`: scores `(m, n)` for `m` weight rows of `d+1`.
    fn scores(&self, wt: Vec<f32>, m: usize) -> candle_core::Result<Vec<f32>> {
        let wt = Tensor::from_vec(wt, (m, self.cols), &Device::Cpu)?;
        wt.matmul(&self.xt)?.flatten_all()?.to_vec1()
    }

    /// `Rᵀ·X`: gradients `(m, d+1)` of `m` residual rows of `n`.
    fn gradients(&self, rt: Vec<f32>, m: usize) -> candle_core::Result<Vec<f32>> {
        let rt = Tensor::from_vec(rt, (m, self.rows), &Device::Cpu)?;
        rt.matmul(&self.x)?.flatten_all()?.to_vec1()
    }
}

/// One fit: the rows it trains on (indices into the design) and its inverse penalty `C`.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub(crate) rows: Vec<u32>,
    pub(crate) c: f64,
}

/// A fitted model: `outputs × (d+1)` weights (intercept last), one output for two classes.
#[derive(Debug, Clone)]
pub(crate) struct Model {
    weights: Vec<f32>,
}

/// Solver settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) max_iter: usize,
    pub(crate) gtol: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_iter: 1000,
            gtol: 1e-4,
        }
    }
}

fn outputs(classes: usize) -> usize {
    if classes == 2 {
        1
    } else {
        classes
    }
}

const HISTORY: usize = 10;
const ARMIJO: f64 = 1e-4;
const MAX_BACKTRACKS: usize = 50;

#[derive(Debug)]
struct Lbfgs {
    w: Vec<f64>,
    f: f64,
    g: Vec<f64>,
    s: VecDeque<Vec<f64>>,
    y: VecDeque<Vec<f64>>,
    dir: Vec<f64>,
    /// `g·dir` at `w`.
    slope: f64,
    step: f64,
    backtracks: usize,
    trial: Vec<f64>,
    iterations: usize,
    started: bool,
    done: bool,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl Lbfgs {
    fn new(params: usize) -> Self {
        Self {
            w: vec![0.0; params],
            f: f64::INFINITY,
            g: vec![0.0; params],
            s: VecDeque::new(),
            y: VecDeque::new(),
            dir: vec![0.0; params],
            slope: 0.0,
            step: 0.0,
            backtracks: 0,
            trial: vec![0.0; params],
            iterations: 0,
            started: false,
            done: false,
        }
    }

    /// The two-loop recursion: `dir = −H·g`.
    fn direction(&mut self) {
        let mut q = self.g.clone();
        let mut alphas = Vec::with_capacity(self.s.len());
        for (s, y) in self.s.iter().zip(&self.y).rev() {
            let a = dot(s, &q) / dot(s, y);
            q.iter_mut().zip(y).for_each(|(q, y)| *q -= a * y);
            alphas.push(a);
        }
        if let (Some(s), Some(y)) = (self.s.back(), self.y.back()) {
            let gamma = dot(s, y) / dot(y, y);
            q.iter_mut().for_each(|q| *q *= gamma);
        }
        for ((s, y), a) in self.s.iter().zip(&self.y).zip(alphas.into_iter().rev()) {
            let b = dot(y, &q) / dot(s, y);
            q.iter_mut().zip(s).for_each(|(q, s)| *q += (a - b) * s);
        }
        self.dir = q.into_iter().map(|v| -v).collect();
        self.slope = dot(&self.g, &self.dir);
        if self.slope >= 0.0 || !self.slope.is_finite() {
            self.s.clear();
            self.y.clear();
            self.dir = self.g.iter().map(|v| -v).collect();
            self.slope = -dot(&self.g, &self.g);
        }
    }

    fn start_iteration(&mut self) {
        self.direction();
        self.step = if self.s.is_empty() {
            (1.0 / dot(&self.dir, &self.dir).sqrt()).min(1.0)
        } else {
            1.0
        };
        self.backtracks = 0;
        self.set_trial();
    }

    fn set_trial(&mut self) {
        for ((t, w), d) in self.trial.iter_mut().zip(&self.w).zip(&self.dir) {
            *t = w + self.step * d;
        }
    }

    fn converged(&self, gtol: f64) -> bool {
        self.g.iter().all(|v| v.abs() <= gtol)
    }

    /// Takes `(f, g)` at the trial point; leaves either a new trial point or `done`.
    fn observe(&mut self, f: f64, g: Vec<f64>, settings: &Settings) {
        if !self.started {
            self.started = true;
            self.f = f;
            self.g = g;
            if self.converged(settings.gtol) || !f.is_finite() {
                self.done = true;
            } else {
                self.start_iteration();
            }
            return;
        }
        if f.is_finite() && f <= self.f + ARMIJO * self.step * self.slope {
            let s: Vec<f64> = self.trial.iter().zip(&self.w).map(|(t, w)| t - w).collect();
            let y: Vec<f64> = g.iter().zip(&self.g).map(|(a, b)| a - b).collect();
            if dot(&s, &y) > 1e-12 * dot(&y, &y) {
                if self.s.len() == HISTORY {
                    self.s.pop_front();
                    self.y.pop_front();
                }
                self.s.push_back(s);
                self.y.push_back(y);
            }
            std::mem::swap(&mut self.w, &mut self.trial);
            let decrease = (self.f - f) / self.f.abs().max(f.abs()).max(1.0);
            self.f = f;
            self.g = g;
            self.iterations += 1;
            if self.converged(settings.gtol)
                || decrease <= 64.0 * f64::EPSILON
                || self.iterations >= settings.max_iter
            {
                self.done = true;
            } else {
                self.start_iteration();
            }
        } else {
            self.backtracks += 1;
            if self.backtracks > MAX_BACKTRACKS {
                // No decrease left at f32 resolution: the current point is the fit.
                self.done = true;
                return;
            }
            // Minimum of the quadratic through f(0), f'(0) and f(step), kept in [0.1, 0.5]·step.
            let curvature = f - self.f - self.slope * self.step;
            let quad = if f.is_finite() && curvature > 0.0 {
                -self.slope * self.step * self.step / (2.0 * curvature)
            } else {
                0.5 * self.step
            };
            self.step = quad.clamp(0.1 * self.step, 0.5 * self.step);
            self.set_trial();
        }
    }
}

/// Fits every problem on `design` with `labels` (one per design row, `0..classes`).
pub(crate) fn fit(
    design: &Design,
    labels: &[u32],
    classes: usize,
    problems: &[Problem],
    settings: &Settings,
) -> candle_core::Result<Vec<Model>> {
    let q = outputs(classes);
    let cols = design.cols;
    let mut states: Vec<Lbfgs> = problems.iter().map(|_| Lbfgs::new(q * cols)).collect();
    loop {
        let pending: Vec<usize> = (0..states.len()).filter(|&i| !states[i].done).collect();
        if pending.is_empty() {
            break;
        }
        let mut wt = Vec::with_capacity(pending.len() * q * cols);
        for &i in &pending {
            wt.extend(states[i].trial.iter().map(|&v| v as f32));
        }
        let m = pending.len() * q;
        let scores = design.scores(wt, m)?;
        let mut residuals = vec![0f32; m * design.rows];
        let losses = residual_pass(
            &scores,
            &mut residuals,
            design.rows,
            q,
            &pending.iter().map(|&i| &problems[i]).collect::<Vec<_>>(),
            labels,
        );
        let grads = design.gradients(residuals, m)?;
        for (slot, &i) in pending.iter().enumerate() {
            let p = &problems[i];
            let n = p.rows.len().max(1) as f64;
            let state = &mut states[i];
            let w = &state.trial;
            let raw = &grads[slot * q * cols..(slot + 1) * q * cols];
            let mut penalty = 0.0;
            let mut g = Vec::with_capacity(q * cols);
            for (j, (&gr, &wj)) in raw.iter().zip(w).enumerate() {
                let is_bias = j % cols == cols - 1;
                let reg = if is_bias { 0.0 } else { wj / p.c };
                if !is_bias {
                    penalty += wj * wj;
                }
                g.push((f64::from(gr) + reg) / n);
            }
            let f = (losses[slot] + penalty / (2.0 * p.c)) / n;
            state.observe(f, g, settings);
        }
    }
    Ok(states
        .into_iter()
        .map(|s| Model {
            weights: s.w.iter().map(|&v| v as f32).collect(),
        })
        .collect())
}

/// Per problem: log-loss summed over its rows, and residuals (`∂loss/∂score`) written into its
/// `q` rows of `residuals` (other rows stay 0). Problems are split across threads.
fn residual_pass(
    scores: &[f32],
    residuals: &mut [f32],
    n: usize,
    q: usize,
    problems: &[&Problem],
    labels: &[u32],
) -> Vec<f64> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(problems.len())
        .max(1);
    let per_thread = problems.len().div_ceil(threads);
    let mut losses = vec![0.0; problems.len()];
    std::thread::scope(|scope| {
        let chunks = residuals
            .chunks_mut(per_thread * q * n)
            .zip(scores.chunks(per_thread * q * n))
            .zip(problems.chunks(per_thread))
            .zip(losses.chunks_mut(per_thread));
        for (((r, z), ps), out) in chunks {
            scope.spawn(move || {
                for (k, (p, loss)) in ps.iter().zip(out.iter_mut()).enumerate() {
                    let z = &z[k * q * n..(k + 1) * q * n];
                    let r = &mut r[k * q * n..(k + 1) * q * n];
                    *loss = if q == 1 {
                        sigmoid_rows(z, r, &p.rows, labels)
                    } else {
                        softmax_rows(z, r, n, q, &p.rows, labels)
                    };
                }
            });
        }
    });
    losses
}

fn sigmoid_rows(z: &[f32], r: &mut [f32], rows: &[u32], labels: &[u32]) -> f64 {
    let mut loss = 0.0;
    for &i in rows {
        let i = i as usize;
        let s = f64::from(z[i]);
        let y = f64::from(labels[i]);
        // log(1 + e^s) − y·s, stably.
        loss += s.max(0.0) + (-s.abs()).exp().ln_1p() - y * s;
        let p = if s >= 0.0 {
            1.0 / (1.0 + (-s).exp())
        } else {
            let e = s.exp();
            e / (1.0 + e)
        };
        r[i] = (p - y) as f32;
    }
    loss
}

fn softmax_rows(z: &[f32], r: &mut [f32], n: usize, q: usize, rows: &[u32], labels: &[u32]) -> f64 {
    let mut loss = 0.0;
    let mut e = vec![0f64; q];
    for &i in rows {
        let i = i as usize;
        let max = (0..q)
            .map(|c| f64::from(z[c * n + i]))
            .fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        for (c, e) in e.iter_mut().enumerate() {
            *e = (f64::from(z[c * n + i]) - max).exp();
            sum += *e;
        }
        let y = labels[i] as usize;
        loss += sum.ln() + max - f64::from(z[y * n + i]);
        for (c, e) in e.iter().enumerate() {
            let onehot = if c == y { 1.0 } else { 0.0 };
            r[c * n + i] = (e / sum - onehot) as f32;
        }
    }
    loss
}

/// The predicted class of every design row, per model (sigmoid: class 1 when the score is
/// positive; softmax: the first highest score).
pub(crate) fn predict(
    design: &Design,
    models: &[Model],
    classes: usize,
) -> candle_core::Result<Vec<Vec<u32>>> {
    let q = outputs(classes);
    let n = design.rows;
    if models.is_empty() {
        return Ok(Vec::new());
    }
    let wt: Vec<f32> = models
        .iter()
        .flat_map(|m| m.weights.iter().copied())
        .collect();
    let scores = design.scores(wt, models.len() * q)?;
    Ok(scores
        .chunks(q * n)
        .map(|z| {
            (0..n)
                .map(|i| {
                    if q == 1 {
                        u32::from(z[i] > 0.0)
                    } else {
                        let mut best = 0;
                        for c in 1..q {
                            if z[c * n + i] > z[best * n + i] {
                                best = c;
                            }
                        }
                        best as u32
                    }
                })
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic data set: `n` points in `d` dimensions, labels from a noisy
    /// linear rule over `classes` classes.
    fn data(n: usize, d: usize, classes: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
        };
        let mut x = Vec::with_capacity(n * d);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let row: Vec<f64> = (0..d).map(|_| next()).collect();
            let score = row
                .iter()
                .enumerate()
                .map(|(j, v)| v * (j as f64 + 1.0))
                .sum::<f64>()
                + next();
            let class = ((score + d as f64) / (2.0 * d as f64) * classes as f64)
                .clamp(0.0, classes as f64 - 1.0);
            x.extend(row.iter().map(|&v| v as f32));
            y.push(class as u32);
        }
        (x, y)
    }

    /// The objective in f64, straight from its definition.
    fn objective(
        x: &[f32],
        d: usize,
        y: &[u32],
        rows: &[u32],
        classes: usize,
        c: f64,
        w: &[f64],
    ) -> f64 {
        let q = outputs(classes);
        let cols = d + 1;
        let mut loss = 0.0;
        for &i in rows {
            let i = i as usize;
            let z: Vec<f64> = (0..q)
                .map(|k| {
                    (0..d)
                        .map(|j| w[k * cols + j] * f64::from(x[i * d + j]))
                        .sum::<f64>()
                        + w[k * cols + d]
                })
                .collect();
            loss += if q == 1 {
                (1.0 + z[0].exp()).ln() - f64::from(y[i]) * z[0]
            } else {
                z.iter().map(|v| v.exp()).sum::<f64>().ln() - z[y[i] as usize]
            };
        }
        let penalty: f64 = (0..q)
            .flat_map(|k| (0..d).map(move |j| k * cols + j))
            .map(|j| w[j] * w[j])
            .sum();
        (loss + penalty / (2.0 * c)) / rows.len() as f64
    }

    /// Each fit reaches the minimum: its objective's central-difference gradient vanishes and
    /// no coordinate nudge lowers it.
    fn check_optimal(classes: usize) {
        let (d, n) = (5, 300);
        let (x, y) = data(n, d, classes, 3);
        let design = Design::new(&x, d).expect("design");
        let all: Vec<u32> = (0..n as u32).collect();
        let half: Vec<u32> = (0..n as u32).filter(|i| i % 2 == 0).collect();
        let problems = [
            Problem {
                rows: all.clone(),
                c: 0.25,
            },
            Problem {
                rows: half.clone(),
                c: 4.0,
            },
            Problem { rows: all, c: 32.0 },
        ];
        let settings = Settings {
            max_iter: 500,
            gtol: 1e-6,
        };
        let models = fit(&design, &y, classes, &problems, &settings).expect("fit");
        for (p, m) in problems.iter().zip(&models) {
            let w: Vec<f64> = m.weights.iter().map(|&v| f64::from(v)).collect();
            let f0 = objective(&x, d, &y, &p.rows, classes, p.c, &w);
            for j in 0..w.len() {
                let h = 1e-3;
                let mut plus = w.clone();
                plus[j] += h;
                let mut minus = w.clone();
                minus[j] -= h;
                let fp = objective(&x, d, &y, &p.rows, classes, p.c, &plus);
                let fm = objective(&x, d, &y, &p.rows, classes, p.c, &minus);
                let grad = (fp - fm) / (2.0 * h);
                assert!(grad.abs() < 2e-4, "C={} weight {j}: gradient {grad}", p.c);
                assert!(
                    fp >= f0 - 1e-9 && fm >= f0 - 1e-9,
                    "C={} weight {j}: not a minimum",
                    p.c
                );
            }
        }
    }

    #[test]
    fn binary_fits_reach_the_minimum() {
        check_optimal(2);
    }

    #[test]
    fn multinomial_fits_reach_the_minimum() {
        check_optimal(4);
    }

    #[test]
    fn predictions_follow_the_fitted_rule() {
        let (x, y) = data(400, 3, 3, 11);
        let design = Design::new(&x, 3).expect("design");
        let rows: Vec<u32> = (0..400).collect();
        let models = fit(
            &design,
            &y,
            3,
            &[Problem { rows, c: 100.0 }],
            &Settings::default(),
        )
        .expect("fit");
        let predicted = predict(&design, &models, 3).expect("predict");
        let correct = predicted[0].iter().zip(&y).filter(|(a, b)| a == b).count();
        assert!(
            correct > 300,
            "{correct}/400 correct on a nearly linear rule"
        );
    }
}
