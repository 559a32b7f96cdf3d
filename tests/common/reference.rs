//! A plain-loop BERT + pooling reference, written without candle, to check the tensor code.
//!
//! One sentence at a time (no padding), f64 accumulation, straight from the safetensors bytes.

use std::collections::HashMap;
use std::path::Path;

use sbert::BertConfig;

/// Weights by name, as flat f32 vectors.
pub struct Weights(HashMap<String, Vec<f32>>);

impl Weights {
    pub fn load(path: &Path) -> Self {
        let bytes = std::fs::read(path).expect("read safetensors");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("parse safetensors");
        let map = st
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let data = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                (name, data)
            })
            .collect();
        Self(map)
    }

    fn get(&self, name: &str) -> &[f32] {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("missing tensor {name}"))
    }
}

/// `y = W x + b` for `W (out, in)` row-major.
fn linear(w: &[f32], b: &[f32], x: &[f64]) -> Vec<f64> {
    let out = b.len();
    let inp = x.len();
    (0..out)
        .map(|o| {
            let row = &w[o * inp..(o + 1) * inp];
            f64::from(b[o])
                + row
                    .iter()
                    .zip(x)
                    .map(|(&w, &x)| f64::from(w) * x)
                    .sum::<f64>()
        })
        .collect()
}

fn layer_norm(x: &[f64], w: &[f32], b: &[f32], eps: f64) -> Vec<f64> {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    x.iter()
        .enumerate()
        .map(|(i, v)| (v - mean) * inv * f64::from(w[i]) + f64::from(b[i]))
        .collect()
}

/// erf by its Maclaurin series (|x| < 3) or the asymptotic complement; accurate to ~1e-12 here.
fn erf(x: f64) -> f64 {
    if x.abs() > 5.0 {
        return x.signum();
    }
    // Series: erf x = 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1)); converges for all x, slowly for large x.
    let mut sum = 0.0;
    let mut term = x; // x^(2n+1)/n!, with sign
    let mut n = 0.0;
    loop {
        let add = term / (2.0 * n + 1.0);
        sum += add;
        if add.abs() < 1e-17 {
            break;
        }
        n += 1.0;
        term *= -x * x / n;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// Token embeddings `(seq, hidden)` of one unpadded sentence.
pub fn encode(weights: &Weights, cfg: &BertConfig, ids: &[u32]) -> Vec<Vec<f64>> {
    let h = cfg.hidden_size;
    let heads = cfg.num_attention_heads;
    let hd = h / heads;
    let eps = cfg.layer_norm_eps;
    let word = weights.get("embeddings.word_embeddings.weight");
    let pos = weights.get("embeddings.position_embeddings.weight");
    let typ = weights.get("embeddings.token_type_embeddings.weight");
    let mut xs: Vec<Vec<f64>> = ids
        .iter()
        .enumerate()
        .map(|(t, &id)| {
            let id = id as usize;
            let sum: Vec<f64> = (0..h)
                .map(|k| {
                    f64::from(word[id * h + k]) + f64::from(pos[t * h + k]) + f64::from(typ[k])
                })
                .collect();
            layer_norm(
                &sum,
                weights.get("embeddings.LayerNorm.weight"),
                weights.get("embeddings.LayerNorm.bias"),
                eps,
            )
        })
        .collect();
    for l in 0..cfg.num_hidden_layers {
        let p = |s: &str| format!("encoder.layer.{l}.{s}");
        let proj = |name: &str, x: &[f64]| {
            linear(
                weights.get(&p(&format!("{name}.weight"))),
                weights.get(&p(&format!("{name}.bias"))),
                x,
            )
        };
        let q: Vec<Vec<f64>> = xs.iter().map(|x| proj("attention.self.query", x)).collect();
        let k: Vec<Vec<f64>> = xs.iter().map(|x| proj("attention.self.key", x)).collect();
        let v: Vec<Vec<f64>> = xs.iter().map(|x| proj("attention.self.value", x)).collect();
        let t = xs.len();
        let mut ctx = vec![vec![0.0; h]; t];
        for head in 0..heads {
            let r = head * hd..(head + 1) * hd;
            for i in 0..t {
                let scores: Vec<f64> = (0..t)
                    .map(|j| {
                        q[i][r.clone()]
                            .iter()
                            .zip(&k[j][r.clone()])
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::MIN, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let z: f64 = exps.iter().sum();
                for j in 0..t {
                    for d in r.clone() {
                        ctx[i][d] += exps[j] / z * v[j][d];
                    }
                }
            }
        }
        xs = xs
            .iter()
            .zip(&ctx)
            .map(|(x, c)| {
                let o = proj("attention.output.dense", c);
                let res: Vec<f64> = o.iter().zip(x).map(|(a, b)| a + b).collect();
                let a = layer_norm(
                    &res,
                    weights.get(&p("attention.output.LayerNorm.weight")),
                    weights.get(&p("attention.output.LayerNorm.bias")),
                    eps,
                );
                let inter: Vec<f64> = proj("intermediate.dense", &a)
                    .into_iter()
                    .map(gelu)
                    .collect();
                let o = proj("output.dense", &inter);
                let res: Vec<f64> = o.iter().zip(&a).map(|(x, y)| x + y).collect();
                layer_norm(
                    &res,
                    weights.get(&p("output.LayerNorm.weight")),
                    weights.get(&p("output.LayerNorm.bias")),
                    eps,
                )
            })
            .collect();
    }
    xs
}

/// A pooling mode by sentence-transformers' name over unpadded token embeddings.
pub fn pool(mode: &str, tokens: &[Vec<f64>]) -> Vec<f64> {
    let h = tokens[0].len();
    let n = tokens.len() as f64;
    let sum = |w: &dyn Fn(usize) -> f64| -> Vec<f64> {
        (0..h)
            .map(|d| tokens.iter().enumerate().map(|(t, x)| w(t) * x[d]).sum())
            .collect()
    };
    match mode {
        "cls" => tokens[0].clone(),
        "max" => (0..h)
            .map(|d| tokens.iter().map(|x| x[d]).fold(f64::MIN, f64::max))
            .collect(),
        "mean" => sum(&|_| 1.0).into_iter().map(|s| s / n).collect(),
        "mean_sqrt_len_tokens" => sum(&|_| 1.0).into_iter().map(|s| s / n.sqrt()).collect(),
        "weightedmean" => {
            let total: f64 = (1..=tokens.len()).map(|w| w as f64).sum();
            sum(&|t| (t + 1) as f64)
                .into_iter()
                .map(|s| s / total)
                .collect()
        }
        "lasttoken" => tokens[tokens.len() - 1].clone(),
        other => panic!("unknown mode {other}"),
    }
}

/// sentence-transformers' Dense with tanh.
pub fn dense_tanh(weights: &Weights, x: &[f64]) -> Vec<f64> {
    linear(weights.get("linear.weight"), weights.get("linear.bias"), x)
        .into_iter()
        .map(f64::tanh)
        .collect()
}

pub fn l2_normalize(x: &[f64]) -> Vec<f64> {
    let n = x.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
    x.iter().map(|v| v / n).collect()
}

pub fn to_f32(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}
