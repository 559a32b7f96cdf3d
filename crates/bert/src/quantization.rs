//! [`Quantization`]: how the encoder's dense layers compute, and the int8 weights it keeps.

use std::fmt;
use std::str::FromStr;

use crate::cpu::int8::Int8Matrix;
use crate::params::BertParams;

/// How the dense layers of the packed CPU pass compute (attention, LayerNorm, the activations
/// and the embeddings stay f32 either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quantization {
    /// f32 weights and activations: sentence-transformers' numbers to rounding.
    #[default]
    None,
    /// The query/key/value, attention-output and feed-forward products in int8: weights
    /// quantized per output channel once (symmetric), activations per row on every product
    /// (symmetric), int32 accumulation, scaled back to f32 before the bias, activation and
    /// LayerNorm that follow. A quarter of the weight bytes; embeddings close to f32's, not
    /// equal (measure with `sbert bench --quantize int8`).
    Int8,
}

impl Quantization {
    /// The name `FromStr` reads: `none` or `int8`.
    pub fn as_str(self) -> &'static str {
        match self {
            Quantization::None => "none",
            Quantization::Int8 => "int8",
        }
    }
}

impl fmt::Display for Quantization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Quantization {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "f32" | "fp32" => Ok(Quantization::None),
            "int8" | "i8" => Ok(Quantization::Int8),
            _ => Err(format!(
                "unknown quantization {s:?} (expected none or int8)"
            )),
        }
    }
}

/// One layer's products in int8.
#[derive(Debug, Clone)]
pub(crate) struct Int8Layer {
    /// Query, key and value stacked, `(3h, h)`.
    pub qkv: Int8Matrix,
    pub attention_output: Int8Matrix,
    pub intermediate: Int8Matrix,
    pub output: Int8Matrix,
}

/// Every layer's products in int8.
#[derive(Debug, Clone)]
pub(crate) struct Int8Weights {
    pub layers: Vec<Int8Layer>,
}

impl Int8Weights {
    /// Quantizes the dense weights of `w` (the host view of the weights; hidden size `h`,
    /// intermediate size `i`).
    pub(crate) fn quantize(w: &BertParams<&[f32]>, h: usize, i: usize) -> Self {
        use rayon::prelude::*;
        let layers = w
            .layers
            .par_iter()
            .map(|l| Int8Layer {
                qkv: Int8Matrix::quantize(&[l.query.weight, l.key.weight, l.value.weight], h),
                attention_output: Int8Matrix::quantize(&[l.attention_output.weight], h),
                intermediate: Int8Matrix::quantize(&[l.intermediate.weight], h),
                output: Int8Matrix::quantize(&[l.output.weight], i),
            })
            .collect();
        Self { layers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantization_names_round_trip_and_unknown_ones_are_refused() {
        for q in [Quantization::None, Quantization::Int8] {
            assert_eq!(q.to_string().parse::<Quantization>(), Ok(q));
        }
        assert_eq!("INT8".parse::<Quantization>(), Ok(Quantization::Int8));
        let err = "int4".parse::<Quantization>().expect_err("int4");
        assert!(err.contains("int4") && err.contains("int8"), "{err}");
    }

    #[test]
    fn a_quantized_model_refuses_training_and_int8_needs_f32_on_the_cpu() {
        use candle_core::{DType, Device};
        use candle_nn::VarBuilder;

        use crate::{BertConfig, BertModel, GradientSink};

        let config = BertConfig {
            vocab_size: 50,
            hidden_size: 8,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 16,
            ..BertConfig::default()
        };
        let load = |dtype| BertModel::load(VarBuilder::zeros(dtype, &Device::Cpu), &config);
        let model = load(DType::F32)
            .and_then(|m| m.quantize(Quantization::Int8))
            .expect("int8");
        let err = model
            .forward_train(&[1, 2, 3], &[3], 0, &GradientSink::new())
            .expect_err("training a quantized model")
            .to_string();
        assert!(err.contains("quantized"), "{err}");
        assert_eq!(
            model
                .quantize(Quantization::None)
                .expect("f32")
                .quantization(),
            Quantization::None
        );
        let err = load(DType::F16)
            .and_then(|m| m.quantize(Quantization::Int8))
            .expect_err("int8 from f16")
            .to_string();
        assert!(err.contains("f32"), "{err}");
    }
}
