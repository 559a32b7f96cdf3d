//! [`Quantization`]: how the encoder's dense layers compute, and the int8 weights it keeps.

use std::fmt;
use std::str::FromStr;

use candle_core::Tensor;

use crate::cpu::int8::Int8Matrix;
use crate::cpu::panels::PanelMatrix;
use crate::params::LayerParams;

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

/// One layer's dense weights in the layout a product reads: `M` is a [`PanelMatrix`] (f32)
/// or an [`Int8Matrix`].
#[derive(Debug, Clone)]
pub(crate) struct DenseLayer<M> {
    /// Query, key and value stacked, `(3h, h)`.
    pub qkv: M,
    pub attention_output: M,
    pub intermediate: M,
    pub output: M,
}

impl<M: Send> DenseLayer<M> {
    /// Layer `l`'s dense weights converted by `convert(weights stacked, inner size)` (hidden
    /// size `h`, intermediate size `i`), the four products in parallel. With `drop_dense`, the
    /// layer's dense weight tensors are then replaced by empty ones: the caller keeps the
    /// converted copy as the only one.
    fn convert_layer(
        l: &mut LayerParams<Tensor>,
        h: usize,
        i: usize,
        convert: &(impl Fn(&[&[f32]], usize) -> M + Sync),
        drop_dense: bool,
    ) -> candle_core::Result<Self> {
        let host = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let (q, k, v) = (
            host(&l.query.weight)?,
            host(&l.key.weight)?,
            host(&l.value.weight)?,
        );
        let (ao, it, o) = (
            host(&l.attention_output.weight)?,
            host(&l.intermediate.weight)?,
            host(&l.output.weight)?,
        );
        let ((qkv, attention_output), (intermediate, output)) = rayon::join(
            || rayon::join(|| convert(&[&q, &k, &v], h), || convert(&[&ao], h)),
            || rayon::join(|| convert(&[&it], h), || convert(&[&o], i)),
        );
        if drop_dense {
            let empty = Tensor::zeros(0, candle_core::DType::F32, &candle_core::Device::Cpu)?;
            for w in [
                &mut l.query.weight,
                &mut l.key.weight,
                &mut l.value.weight,
                &mut l.attention_output.weight,
                &mut l.intermediate.weight,
                &mut l.output.weight,
            ] {
                *w = empty.clone();
            }
        }
        Ok(Self {
            qkv,
            attention_output,
            intermediate,
            output,
        })
    }
}

/// The copy of the dense weights the packed inference pass multiplies by, made once by
/// [`crate::BertModel::quantize`].
#[derive(Debug, Clone)]
pub(crate) enum PreparedWeights {
    /// f32, packed into panels.
    F32(Vec<DenseLayer<PanelMatrix>>),
    /// int8 per output channel.
    Int8(Vec<DenseLayer<Int8Matrix>>),
}

/// One layer of [`PreparedWeights`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum PreparedLayer<'a> {
    F32(&'a DenseLayer<PanelMatrix>),
    Int8(&'a DenseLayer<Int8Matrix>),
}

/// One product's prepared weights.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PreparedMatrix<'a> {
    F32(&'a PanelMatrix),
    Int8(&'a Int8Matrix),
}

impl PreparedWeights {
    /// Prepares the dense weights of `layers` (hidden size `h`, intermediate size `i`) for
    /// `quantization`, one layer at a time. For [`Quantization::None`] the panels hold the f32
    /// weights exactly, so each layer's dense weight tensors are replaced by empty ones as soon
    /// as its panels exist: the weights are held once, and loading never holds both copies of
    /// more than one layer ([`PreparedWeights::restore_dense`] gives them back). int8 keeps
    /// the f32 tensors (the graph pass computes from them).
    pub(crate) fn prepare(
        layers: &mut [LayerParams<Tensor>],
        h: usize,
        i: usize,
        quantization: Quantization,
    ) -> candle_core::Result<Self> {
        Ok(match quantization {
            Quantization::None => Self::F32(
                layers
                    .iter_mut()
                    .map(|l| DenseLayer::convert_layer(l, h, i, &PanelMatrix::pack, true))
                    .collect::<candle_core::Result<_>>()?,
            ),
            Quantization::Int8 => Self::Int8(
                layers
                    .iter_mut()
                    .map(|l| DenseLayer::convert_layer(l, h, i, &Int8Matrix::quantize, false))
                    .collect::<candle_core::Result<_>>()?,
            ),
        })
    }

    /// Whether [`PreparedWeights::prepare`] emptied the dense weight tensors (f32 panels).
    pub(crate) fn holds_dense(&self) -> bool {
        matches!(self, Self::F32(_))
    }

    /// Puts the dense weights the panels hold back into `layers` (hidden size `h`), as
    /// `(out, in)` f32 tensors on the CPU: the weights as loaded.
    pub(crate) fn restore_dense(
        &self,
        layers: &mut [LayerParams<Tensor>],
        h: usize,
    ) -> candle_core::Result<()> {
        let Self::F32(prepared) = self else {
            return Ok(());
        };
        let tensor = |m: &PanelMatrix, rows: std::ops::Range<usize>, inner: usize| {
            let values = m.unpack();
            Tensor::from_slice(
                &values[rows.start * inner..rows.end * inner],
                (rows.len(), inner),
                &candle_core::Device::Cpu,
            )
        };
        for (l, p) in layers.iter_mut().zip(prepared) {
            l.query.weight = tensor(&p.qkv, 0..h, h)?;
            l.key.weight = tensor(&p.qkv, h..2 * h, h)?;
            l.value.weight = tensor(&p.qkv, 2 * h..3 * h, h)?;
            l.attention_output.weight = tensor(&p.attention_output, 0..h, h)?;
            let i = p.intermediate.out();
            l.intermediate.weight = tensor(&p.intermediate, 0..i, h)?;
            l.output.weight = tensor(&p.output, 0..h, i)?;
        }
        Ok(())
    }

    /// The quantization the weights were prepared for.
    pub(crate) fn quantization(&self) -> Quantization {
        match self {
            Self::F32(_) => Quantization::None,
            Self::Int8(_) => Quantization::Int8,
        }
    }

    /// Layer `l`.
    pub(crate) fn layer(&self, l: usize) -> PreparedLayer<'_> {
        match self {
            Self::F32(layers) => PreparedLayer::F32(&layers[l]),
            Self::Int8(layers) => PreparedLayer::Int8(&layers[l]),
        }
    }
}

/// The dense products of a layer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Product {
    Qkv,
    AttentionOutput,
    Intermediate,
    Output,
}

impl<M> DenseLayer<M> {
    fn get(&self, product: Product) -> &M {
        match product {
            Product::Qkv => &self.qkv,
            Product::AttentionOutput => &self.attention_output,
            Product::Intermediate => &self.intermediate,
            Product::Output => &self.output,
        }
    }
}

impl<'a> PreparedLayer<'a> {
    /// The prepared weights of `product`.
    pub(crate) fn matrix(self, product: Product) -> PreparedMatrix<'a> {
        match self {
            Self::F32(l) => PreparedMatrix::F32(l.get(product)),
            Self::Int8(l) => PreparedMatrix::Int8(l.get(product)),
        }
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
        assert!(err.contains("prepared by quantize"), "{err}");
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
