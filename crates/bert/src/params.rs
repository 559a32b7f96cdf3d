//! The encoder's parameters by name: one layout for the weights (`Tensor`s), the host view of
//! the packed CPU path (`&[f32]`) and the gradients it accumulates (`Vec<f32>`).
//!
//! Tensor names follow Hugging Face `transformers.BertModel`
//! (<https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/bert/modeling_bert.py>).

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::config::{Architecture, BertConfig};

/// A dense layer `y = x Wᵀ + b`: `weight (out, in)` (Hugging Face's layout) and `bias (out)`.
#[derive(Debug, Clone, Copy)]
pub struct Linear<T> {
    /// `(out, in)`.
    pub weight: T,
    /// `(out)`.
    pub bias: T,
}

/// LayerNorm's scale and shift, `(hidden)` each (`weight`/`bias` in the checkpoint).
#[derive(Debug, Clone, Copy)]
pub struct Norm<T> {
    /// Scale γ.
    pub gamma: T,
    /// Shift β.
    pub beta: T,
}

/// The embedding tables and their LayerNorm.
#[derive(Debug, Clone)]
pub struct EmbeddingParams<T> {
    /// `(vocab_size, hidden)`.
    pub word: T,
    /// `(max_position_embeddings, hidden)`.
    pub position: T,
    /// `(type_vocab_size, hidden)`.
    pub token_type: T,
    /// LayerNorm after the three are summed.
    pub norm: Norm<T>,
}

/// One encoder layer: self-attention, then the feed-forward block, each closed by a residual
/// connection and a LayerNorm.
#[derive(Debug, Clone)]
pub struct LayerParams<T> {
    /// Query projection.
    pub query: Linear<T>,
    /// Key projection.
    pub key: Linear<T>,
    /// Value projection.
    pub value: Linear<T>,
    /// Projection of the attention context (`attention.output.dense`).
    pub attention_output: Linear<T>,
    /// LayerNorm of the attention block (`attention.output.LayerNorm`).
    pub attention_norm: Norm<T>,
    /// First feed-forward product (`intermediate.dense`), hidden → intermediate.
    pub intermediate: Linear<T>,
    /// Second feed-forward product (`output.dense`), intermediate → hidden.
    pub output: Linear<T>,
    /// LayerNorm of the feed-forward block (`output.LayerNorm`).
    pub output_norm: Norm<T>,
}

/// Every parameter of a BERT encoder, by name.
#[derive(Debug, Clone)]
pub struct BertParams<T> {
    /// Embedding tables and their LayerNorm.
    pub embeddings: EmbeddingParams<T>,
    /// The encoder layers, first to last.
    pub layers: Vec<LayerParams<T>>,
}

/// The weights of a BERT encoder.
pub type BertWeights = BertParams<Tensor>;

impl<T> Linear<T> {
    fn try_map<'s, U, E>(
        &'s self,
        f: &mut impl FnMut(&'s T) -> std::result::Result<U, E>,
    ) -> std::result::Result<Linear<U>, E> {
        Ok(Linear {
            weight: f(&self.weight)?,
            bias: f(&self.bias)?,
        })
    }

    fn push_refs<'s>(&'s self, out: &mut Vec<&'s T>) {
        out.extend([&self.weight, &self.bias]);
    }

    fn push_muts<'s>(&'s mut self, out: &mut Vec<&'s mut T>) {
        out.extend([&mut self.weight, &mut self.bias]);
    }
}

impl<T> Norm<T> {
    fn try_map<'s, U, E>(
        &'s self,
        f: &mut impl FnMut(&'s T) -> std::result::Result<U, E>,
    ) -> std::result::Result<Norm<U>, E> {
        Ok(Norm {
            gamma: f(&self.gamma)?,
            beta: f(&self.beta)?,
        })
    }

    fn push_refs<'s>(&'s self, out: &mut Vec<&'s T>) {
        out.extend([&self.gamma, &self.beta]);
    }

    fn push_muts<'s>(&'s mut self, out: &mut Vec<&'s mut T>) {
        out.extend([&mut self.gamma, &mut self.beta]);
    }
}

impl<T> EmbeddingParams<T> {
    fn try_map<'s, U, E>(
        &'s self,
        f: &mut impl FnMut(&'s T) -> std::result::Result<U, E>,
    ) -> std::result::Result<EmbeddingParams<U>, E> {
        Ok(EmbeddingParams {
            word: f(&self.word)?,
            position: f(&self.position)?,
            token_type: f(&self.token_type)?,
            norm: self.norm.try_map(f)?,
        })
    }

    fn push_refs<'s>(&'s self, out: &mut Vec<&'s T>) {
        out.extend([&self.word, &self.position, &self.token_type]);
        self.norm.push_refs(out);
    }

    fn push_muts<'s>(&'s mut self, out: &mut Vec<&'s mut T>) {
        out.extend([&mut self.word, &mut self.position, &mut self.token_type]);
        self.norm.push_muts(out);
    }
}

impl<T> LayerParams<T> {
    fn try_map<'s, U, E>(
        &'s self,
        f: &mut impl FnMut(&'s T) -> std::result::Result<U, E>,
    ) -> std::result::Result<LayerParams<U>, E> {
        Ok(LayerParams {
            query: self.query.try_map(f)?,
            key: self.key.try_map(f)?,
            value: self.value.try_map(f)?,
            attention_output: self.attention_output.try_map(f)?,
            attention_norm: self.attention_norm.try_map(f)?,
            intermediate: self.intermediate.try_map(f)?,
            output: self.output.try_map(f)?,
            output_norm: self.output_norm.try_map(f)?,
        })
    }

    fn push_refs<'s>(&'s self, out: &mut Vec<&'s T>) {
        for linear in [&self.query, &self.key, &self.value, &self.attention_output] {
            linear.push_refs(out);
        }
        self.attention_norm.push_refs(out);
        self.intermediate.push_refs(out);
        self.output.push_refs(out);
        self.output_norm.push_refs(out);
    }

    fn push_muts<'s>(&'s mut self, out: &mut Vec<&'s mut T>) {
        self.query.push_muts(out);
        self.key.push_muts(out);
        self.value.push_muts(out);
        self.attention_output.push_muts(out);
        self.attention_norm.push_muts(out);
        self.intermediate.push_muts(out);
        self.output.push_muts(out);
        self.output_norm.push_muts(out);
    }
}

impl<T> BertParams<T> {
    /// The same layout with `f` applied to every parameter; the first error stops it.
    ///
    /// # Errors
    /// The first error `f` returns.
    pub fn try_map<'s, U, E>(
        &'s self,
        mut f: impl FnMut(&'s T) -> std::result::Result<U, E>,
    ) -> std::result::Result<BertParams<U>, E> {
        Ok(BertParams {
            embeddings: self.embeddings.try_map(&mut f)?,
            layers: self
                .layers
                .iter()
                .map(|l| l.try_map(&mut f))
                .collect::<std::result::Result<_, E>>()?,
        })
    }

    /// The same layout with `f` applied to every parameter.
    pub fn map<'s, U>(&'s self, mut f: impl FnMut(&'s T) -> U) -> BertParams<U> {
        match self.try_map(|t| Ok::<U, std::convert::Infallible>(f(t))) {
            Ok(mapped) => mapped,
            Err(never) => match never {},
        }
    }

    /// Every parameter in a fixed order: the embeddings (word, position, token type, LayerNorm
    /// γ, β), then layer by layer query, key, value and attention output (weight, bias each),
    /// the attention LayerNorm, the intermediate and output products and the output LayerNorm.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        let mut out = Vec::new();
        self.embeddings.push_refs(&mut out);
        for layer in &self.layers {
            layer.push_refs(&mut out);
        }
        out.into_iter()
    }

    /// Every parameter, writable, in the order of [`BertParams::iter`].
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        let mut out = Vec::new();
        self.embeddings.push_muts(&mut out);
        for layer in &mut self.layers {
            layer.push_muts(&mut out);
        }
        out.into_iter()
    }
}

impl BertParams<String> {
    /// The Hugging Face `BertModel` names of the weights of an encoder of `layers` layers
    /// (no `bert.` prefix; LayerNorm `weight`/`bias`): how sentence-transformers saves them.
    pub fn hf_names(layers: usize) -> Self {
        Self::checkpoint_names(Architecture::Bert, layers)
    }
}

impl BertParams<String> {
    /// The names under which a checkpoint of `architecture` stores the weights of an encoder of
    /// `layers` layers, without the pre-training prefix. An architecture without token types
    /// has an empty name there.
    pub fn checkpoint_names(architecture: Architecture, layers: usize) -> Self {
        let linear = |prefix: String| Linear {
            weight: format!("{prefix}.weight"),
            bias: format!("{prefix}.bias"),
        };
        let norm = |prefix: String| Norm {
            gamma: format!("{prefix}.weight"),
            beta: format!("{prefix}.bias"),
        };
        let table = |name: &str| format!("embeddings.{name}.weight");
        let embeddings = EmbeddingParams {
            word: table("word_embeddings"),
            position: table("position_embeddings"),
            token_type: if architecture.has_token_types() {
                table("token_type_embeddings")
            } else {
                String::new()
            },
            norm: norm("embeddings.LayerNorm".into()),
        };
        let layer = |l: usize| match architecture {
            Architecture::DistilBert => {
                let p = format!("transformer.layer.{l}");
                LayerParams {
                    query: linear(format!("{p}.attention.q_lin")),
                    key: linear(format!("{p}.attention.k_lin")),
                    value: linear(format!("{p}.attention.v_lin")),
                    attention_output: linear(format!("{p}.attention.out_lin")),
                    attention_norm: norm(format!("{p}.sa_layer_norm")),
                    intermediate: linear(format!("{p}.ffn.lin1")),
                    output: linear(format!("{p}.ffn.lin2")),
                    output_norm: norm(format!("{p}.output_layer_norm")),
                }
            }
            Architecture::MpNet => {
                let p = format!("encoder.layer.{l}");
                LayerParams {
                    query: linear(format!("{p}.attention.attn.q")),
                    key: linear(format!("{p}.attention.attn.k")),
                    value: linear(format!("{p}.attention.attn.v")),
                    attention_output: linear(format!("{p}.attention.attn.o")),
                    attention_norm: norm(format!("{p}.attention.LayerNorm")),
                    intermediate: linear(format!("{p}.intermediate.dense")),
                    output: linear(format!("{p}.output.dense")),
                    output_norm: norm(format!("{p}.output.LayerNorm")),
                }
            }
            Architecture::Bert | Architecture::Roberta => {
                let p = format!("encoder.layer.{l}");
                LayerParams {
                    query: linear(format!("{p}.attention.self.query")),
                    key: linear(format!("{p}.attention.self.key")),
                    value: linear(format!("{p}.attention.self.value")),
                    attention_output: linear(format!("{p}.attention.output.dense")),
                    attention_norm: norm(format!("{p}.attention.output.LayerNorm")),
                    intermediate: linear(format!("{p}.intermediate.dense")),
                    output: linear(format!("{p}.output.dense")),
                    output_norm: norm(format!("{p}.output.LayerNorm")),
                }
            }
        };
        BertParams {
            embeddings,
            layers: (0..layers).map(layer).collect(),
        }
    }
}

/// `vb` under the architecture's pre-training prefix (`bert.`, `roberta.`, …) when the
/// checkpoint uses it, `vb` itself otherwise (so a missing tensor is reported unprefixed).
pub(crate) fn unprefixed(vb: VarBuilder<'_>, architecture: Architecture) -> VarBuilder<'_> {
    let word = "embeddings.word_embeddings.weight";
    let prefix = architecture.checkpoint_prefix();
    if !vb.contains_tensor(word) && vb.contains_tensor(&format!("{prefix}.{word}")) {
        vb.pp(prefix)
    } else {
        vb
    }
}

impl BertWeights {
    /// Reads the weights of `config` from `vb` under the Hugging Face names of its
    /// architecture, with or without the pre-training prefix (`bert.`, `roberta.`,
    /// `distilbert.`, `mpnet.`), and with either `weight`/`bias` or the `gamma`/`beta`
    /// LayerNorm names of old TF-converted checkpoints. An architecture without token types
    /// gets one zero row there.
    ///
    /// # Errors
    /// When the architecture is unsupported, or a tensor is missing or has a shape other than
    /// the config implies (the error names the tensor and both shapes).
    pub fn load(vb: VarBuilder, config: &BertConfig) -> candle_core::Result<Self> {
        let architecture = config.architecture()?;
        let vb = unprefixed(vb, architecture);
        let names = BertParams::checkpoint_names(architecture, config.num_hidden_layers);
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let linear = |names: &Linear<String>,
                      inputs: usize,
                      outputs: usize|
         -> candle_core::Result<Linear<Tensor>> {
            Ok(Linear {
                weight: vb.get((outputs, inputs), &names.weight)?,
                bias: vb.get(outputs, &names.bias)?,
            })
        };
        let norm = |names: &Norm<String>| -> candle_core::Result<Norm<Tensor>> {
            // Old TF-converted checkpoints name LayerNorm's weight and bias gamma and beta.
            let tf = |name: &str, from: &str, to: &str| {
                name.strip_suffix(from).map(|stem| format!("{stem}{to}"))
            };
            let tf_names = (
                tf(&names.gamma, "weight", "gamma"),
                tf(&names.beta, "bias", "beta"),
            );
            let (gamma, beta) = match tf_names {
                (Some(g), Some(b))
                    if !vb.contains_tensor(&names.gamma) && vb.contains_tensor(&g) =>
                {
                    (g, b)
                }
                _ => (names.gamma.clone(), names.beta.clone()),
            };
            Ok(Norm {
                gamma: vb.get(h, &gamma)?,
                beta: vb.get(h, &beta)?,
            })
        };
        let e = &names.embeddings;
        let embeddings = EmbeddingParams {
            word: vb.get((config.vocab_size, h), &e.word)?,
            position: vb.get((config.max_position_embeddings, h), &e.position)?,
            token_type: if architecture.has_token_types() {
                vb.get((config.type_vocab_size, h), &e.token_type)?
            } else {
                Tensor::zeros((1, h), vb.dtype(), vb.device())?
            },
            norm: norm(&e.norm)?,
        };
        let layers = names
            .layers
            .iter()
            .map(|n| {
                Ok(LayerParams {
                    query: linear(&n.query, h, h)?,
                    key: linear(&n.key, h, h)?,
                    value: linear(&n.value, h, h)?,
                    attention_output: linear(&n.attention_output, h, h)?,
                    attention_norm: norm(&n.attention_norm)?,
                    intermediate: linear(&n.intermediate, h, i)?,
                    output: linear(&n.output, i, h)?,
                    output_norm: norm(&n.output_norm)?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { embeddings, layers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parameters numbered 1, 2, 3, … in declaration order.
    fn numbered(layers: usize) -> BertParams<usize> {
        let counter = std::cell::Cell::new(0);
        let n = || {
            counter.set(counter.get() + 1);
            counter.get()
        };
        let linear = || Linear {
            weight: n(),
            bias: n(),
        };
        let norm = || Norm {
            gamma: n(),
            beta: n(),
        };
        let embeddings = EmbeddingParams {
            word: n(),
            position: n(),
            token_type: n(),
            norm: norm(),
        };
        let layers = (0..layers)
            .map(|_| LayerParams {
                query: linear(),
                key: linear(),
                value: linear(),
                attention_output: linear(),
                attention_norm: norm(),
                intermediate: linear(),
                output: linear(),
                output_norm: norm(),
            })
            .collect();
        BertParams { embeddings, layers }
    }

    #[test]
    fn iteration_visits_every_parameter_once_in_declaration_order() {
        let params = numbered(2);
        let order: Vec<usize> = params.iter().copied().collect();
        assert_eq!(order, (1..=5 + 2 * 16).collect::<Vec<_>>());
        let mut doubled = params.map(|v| v * 2);
        let mut seen = Vec::new();
        for v in doubled.iter_mut() {
            seen.push(*v);
            *v = 0;
        }
        assert_eq!(seen, order.iter().map(|v| v * 2).collect::<Vec<_>>());
        assert!(doubled.iter().all(|&v| v == 0));
    }

    #[test]
    fn hf_names_are_the_names_load_reads() {
        use candle_core::{DType, Device};
        let config = BertConfig {
            vocab_size: 10,
            hidden_size: 8,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 12,
            max_position_embeddings: 6,
            ..BertConfig::default()
        };
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let weights = BertWeights::load(vb, &config).expect("load");
        let data = varmap.data().lock().expect("lock");
        let names = BertParams::hf_names(2);
        assert_eq!(names.iter().count(), data.len());
        for (name, weight) in names.iter().zip(weights.iter()) {
            assert_eq!(data[name].as_tensor().id(), weight.id(), "{name}");
        }
    }

    #[test]
    fn try_map_stops_at_the_first_error() {
        let params = numbered(1);
        let mut calls = 0;
        let result = params.try_map(|&v| {
            calls += 1;
            if v == 7 {
                Err(v)
            } else {
                Ok(v)
            }
        });
        assert_eq!(result.err(), Some(7));
        assert_eq!(calls, 7);
    }
}
