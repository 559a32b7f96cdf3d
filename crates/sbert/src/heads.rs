//! The modules after pooling: sentence-transformers' `Dense` and `Normalize`.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::folder::{self, DenseConfig};
use crate::similarity;

/// A module applied after pooling.
#[derive(Debug, Clone)]
pub(crate) enum Head {
    Dense(Dense),
    Normalize,
}

/// sentence-transformers' `Dense`: `activation(x Wᵀ + b)`.
#[derive(Debug, Clone)]
pub(crate) struct Dense {
    weight: Tensor,
    bias: Option<Tensor>,
    activation: Activation,
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    Identity,
    Tanh,
    Relu,
    Sigmoid,
    Gelu,
}

impl Dense {
    pub(crate) fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let cfg: DenseConfig = folder::read_json(&dir.join("config.json"))?;
        let activation = match cfg
            .activation_function
            .rsplit('.')
            .next()
            .unwrap_or_default()
        {
            "Identity" => Activation::Identity,
            "Tanh" => Activation::Tanh,
            "ReLU" => Activation::Relu,
            "Sigmoid" => Activation::Sigmoid,
            "GELU" => Activation::Gelu,
            other => {
                return Err(Error::Unsupported(format!(
                    "Dense activation {other:?} in {}",
                    dir.join("config.json").display()
                )))
            }
        };
        let path = folder::weights_file(dir)?;
        let vb = crate::weights::load(&path, dtype, device)?;
        let load = || -> candle_core::Result<(Tensor, Option<Tensor>)> {
            let weight = vb.get((cfg.out_features, cfg.in_features), "linear.weight")?;
            let bias = if cfg.bias {
                Some(vb.get(cfg.out_features, "linear.bias")?)
            } else {
                None
            };
            Ok((weight, bias))
        };
        let (weight, bias) = load().map_err(|source| Error::Weights { path, source })?;
        Ok(Self {
            weight,
            bias,
            activation,
        })
    }

    pub(crate) fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }

    pub(crate) fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = x.matmul(&self.weight.t()?)?;
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(bias)?;
        }
        Ok(match self.activation {
            Activation::Identity => y,
            Activation::Tanh => y.tanh()?,
            Activation::Relu => y.relu()?,
            Activation::Sigmoid => candle_nn::ops::sigmoid(&y)?,
            Activation::Gelu => y.gelu_erf()?,
        })
    }
}

/// Applies `heads` in order to pooled embeddings `(n, d)`, the `Normalize` module only when
/// `normalize`. Differentiable with respect to `x`.
pub(crate) fn apply(heads: &[Head], mut x: Tensor, normalize: bool) -> Result<Tensor> {
    for head in heads {
        x = match head {
            Head::Dense(d) => d.forward(&x)?,
            Head::Normalize if normalize => similarity::normalize(&x)?,
            Head::Normalize => x,
        };
    }
    Ok(x)
}

/// The width of the last Dense head, if any (Normalize keeps the width).
pub(crate) fn output_width(heads: &[Head]) -> Option<usize> {
    heads.iter().rev().find_map(|h| match h {
        Head::Dense(d) => Some(d.out_features()),
        Head::Normalize => None,
    })
}

/// The input width of the first Dense head, if any.
pub(crate) fn input_width(heads: &[Head]) -> Option<usize> {
    heads.iter().find_map(|h| match h {
        Head::Dense(d) => Some(d.in_features()),
        Head::Normalize => None,
    })
}
