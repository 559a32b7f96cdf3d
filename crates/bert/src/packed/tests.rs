//! The packed pass against candle's graph (in f64), central differences and itself.

use crate::{BertConfig, BertModel, GradientSink, Mode};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

fn tiny(dropout: f64) -> (VarMap, BertModel) {
    tiny_of(dropout, None)
}

/// A tiny model of `model_type` (BERT when `None`) with deterministic weights.
fn tiny_of(dropout: f64, model_type: Option<&str>) -> (VarMap, BertModel) {
    let config = BertConfig {
        model_type: model_type.map(str::to_string),
        // MPNet: positions from pad + 1 = 2; 8 buckets so that 7 tokens reach the
        // logarithmic ones.
        pad_token_id: 1,
        relative_attention_num_buckets: 8,
        vocab_size: 40,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 24,
        max_position_embeddings: 16,
        hidden_dropout_prob: dropout,
        attention_probs_dropout_prob: dropout,
        ..BertConfig::default()
    };
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = BertModel::load(vb, &config).expect("load");
    for var in varmap.all_vars() {
        let noise = noise(var.shape().clone(), 0.5, var.elem_count() as u64);
        // LayerNorm scales near 1, everything else around 0.
        let value = if var.rank() == 1 {
            (noise + 1.0).expect("add")
        } else {
            noise
        };
        var.set(&value).expect("set");
    }
    (varmap, model)
}

/// The same model in f64, its weights `Var`s of a var map of their own.
fn in_f64(varmap: &VarMap, config: &BertConfig) -> (VarMap, BertModel) {
    let wide = VarMap::new();
    for (name, var) in varmap.data().lock().expect("lock").iter() {
        let value = var.as_tensor().to_dtype(DType::F64).expect("f64");
        let var = Var::from_tensor(&value).expect("var");
        wide.data().lock().expect("lock").insert(name.clone(), var);
    }
    let vb = VarBuilder::from_varmap(&wide, DType::F64, &Device::Cpu);
    let model = BertModel::load(vb, config).expect("load f64");
    (wide, model)
}

/// Deterministic values spread like a normal of deviation `scale` (a sum of 4 uniforms from a
/// hash of `salt` and the index), so that every run checks the same numbers.
fn noise(shape: candle_core::Shape, scale: f32, salt: u64) -> Tensor {
    let n = shape.elem_count();
    let values: Vec<f32> = (0..n as u64)
        .map(|i| {
            let sum: f32 = (0..4u64)
                .map(|k| {
                    let h = crate::cpu::dropout::mix(salt ^ crate::cpu::dropout::mix(i * 4 + k));
                    (h >> 40) as f32 / (1u64 << 24) as f32
                })
                .sum();
            // A sum of 4 uniforms on [0, 1) has mean 2 and variance 1/3.
            (sum - 2.0) * 3f32.sqrt() * scale
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).expect("noise")
}

const LENGTHS: [usize; 3] = [5, 2, 7];
const TOKENS: usize = 14;

fn ids() -> Vec<u32> {
    (0..TOKENS).map(|i| (i * 7 % 40) as u32).collect()
}

/// The same sequences as a padded batch, its mask, and the rows of the real tokens in the
/// flattened `(batch · longest)` layout.
fn padded(ids: &[u32]) -> (Tensor, Tensor, Tensor) {
    let t = LENGTHS.iter().copied().max().unwrap_or(0);
    let (mut padded, mut mask) = (vec![0u32; LENGTHS.len() * t], vec![0f32; LENGTHS.len() * t]);
    let mut real = Vec::new();
    let mut start = 0;
    for (s, &len) in LENGTHS.iter().enumerate() {
        padded[s * t..s * t + len].copy_from_slice(&ids[start..start + len]);
        mask[s * t..s * t + len].fill(1.0);
        real.extend((s * t..s * t + len).map(|r| r as u32));
        start += len;
    }
    let dev = &Device::Cpu;
    let b = LENGTHS.len();
    (
        Tensor::from_vec(padded, (b, t), dev).expect("ids"),
        Tensor::from_vec(mask, (b, t), dev).expect("mask"),
        Tensor::from_vec(real, TOKENS, dev).expect("rows"),
    )
}

/// The graph's `(b, t, h)` output at the real tokens, `(tokens, h)` like the packed pass's.
fn real_tokens(hidden: &Tensor, rows: &Tensor) -> Tensor {
    let (b, t, h) = hidden.dims3().expect("dims");
    hidden
        .reshape((b * t, h))
        .and_then(|x| x.index_select(rows, 0))
        .expect("rows")
}

/// Loss weights for `(tokens, 16)` outputs.
fn loss_weights() -> Tensor {
    noise((TOKENS, 16).into(), 1.0, 99)
}

/// max |t|; NaN when `t` holds a NaN (a reduction with `max` would skip it).
fn max_abs(t: &Tensor) -> f32 {
    t.flatten_all()
        .and_then(|t| t.to_dtype(DType::F32)?.to_vec1::<f32>())
        .expect("values")
        .into_iter()
        .map(f32::abs)
        .fold(0.0, |m, v| if v.is_nan() || v > m { v } else { m })
}

/// The packed pass and its hand-written gradients against candle's autograd through the graph
/// in f64: the f32 rounding of the packed pass is far below the tolerance, and any wrong term
/// of a backward formula far above it.
#[test]
fn values_and_gradients_match_the_graph_in_f64() {
    values_and_gradients_match_the_graph(None, 5 + 2 * 16);
}

/// MPNet: the relative attention bias table, shared by the layers, gets its gradient too.
#[test]
fn mpnet_values_and_gradients_match_the_graph_in_f64() {
    // No token-type table; one relative bias table.
    values_and_gradients_match_the_graph(Some("mpnet"), 4 + 2 * 16 + 1);
}

/// DistilBERT: no token types, positions from 0, its own tensor names.
#[test]
fn distilbert_values_and_gradients_match_the_graph_in_f64() {
    values_and_gradients_match_the_graph(Some("distilbert"), 4 + 2 * 16);
}

fn values_and_gradients_match_the_graph(model_type: Option<&str>, parameters: usize) {
    let (varmap, model) = tiny_of(0.0, model_type);
    let (wide_map, wide) = in_f64(&varmap, model.config());
    let ids = ids();
    let (padded_ids, mask, rows) = padded(&ids);
    let weights = loss_weights();
    let sink = GradientSink::new();
    let ours = model
        .forward_train(&ids, &LENGTHS, 7, &sink)
        .expect("forward_train");
    let train = Mode {
        train: true,
        ..Mode::default()
    };
    let reference = wide
        .forward_with_mode(&padded_ids, None, &mask, train)
        .expect("forward")
        .hidden_states;
    let reference = real_tokens(&reference, &rows);
    let diff = max_abs(&(ours.to_dtype(DType::F64).expect("f64") - &reference).expect("sub"));
    assert!(diff < 1e-5, "outputs differ by {diff}");

    let mut grads = (&ours * &weights)
        .and_then(|l| l.sum_all())
        .and_then(|l| l.backward())
        .expect("backward");
    assert!(!sink.is_empty());
    sink.drain_into(&mut grads).expect("drain");
    assert!(sink.is_empty());
    let expected = (&reference * weights.to_dtype(DType::F64).expect("f64"))
        .and_then(|l| l.sum_all())
        .and_then(|l| l.backward())
        .expect("backward");
    let data = varmap.data().lock().expect("lock");
    let wide_data = wide_map.data().lock().expect("lock");
    assert_eq!(data.len(), parameters);
    for (name, var) in data.iter() {
        let (Some(a), Some(b)) = (grads.get(var), expected.get(&wide_data[name])) else {
            panic!("{name} has no gradient");
        };
        // (The key bias has a zero gradient: softmax ignores a constant added to a row.)
        let scale = max_abs(b).max(1.0);
        let diff = max_abs(&(a.to_dtype(DType::F64).expect("f64") - b).expect("sub"));
        assert!(
            diff / scale < 1e-5,
            "gradient of {name}: |Δ| {diff} of {scale}"
        );
    }
}

/// With dropout: the seed replays the masks, and the gradient matches central differences
/// (the masks are fixed by the seed, so the loss is a smooth function of the weights).
#[test]
fn dropout_is_seeded_and_gradients_match_finite_differences() {
    let (varmap, model) = tiny(0.2);
    let ids = ids();
    let weights = loss_weights();
    let sink = GradientSink::new();
    let run = |seed| {
        model
            .forward_train(&ids, &LENGTHS, seed, &sink)
            .expect("forward")
    };
    let (a, b, c) = (run(3), run(3), run(4));
    assert_eq!(max_abs(&(&a - &b).expect("sub")), 0.0);
    assert!(max_abs(&(&a - &c).expect("sub")) > 1e-3);

    let loss = |seed| {
        (run(seed) * &weights)
            .and_then(|l| l.sum_all())
            .expect("loss")
    };
    let mut grads = loss(3).backward().expect("backward");
    sink.drain_into(&mut grads).expect("drain");
    let data = varmap.data().lock().expect("lock").clone();
    let probes = [
        ("embeddings.word_embeddings.weight", 7 * 16 + 3),
        ("embeddings.position_embeddings.weight", 2 * 16 + 5),
        ("encoder.layer.0.attention.self.query.weight", 17),
        ("encoder.layer.0.attention.self.key.bias", 4),
        ("encoder.layer.1.attention.output.LayerNorm.weight", 9),
        ("encoder.layer.1.intermediate.dense.weight", 40),
        ("encoder.layer.1.output.dense.bias", 2),
    ];
    for (name, index) in probes {
        let var: &Var = &data[name];
        let analytic = grads
            .get(var)
            .expect("gradient")
            .flatten_all()
            .and_then(|g| g.to_vec1::<f32>())
            .expect("values")[index];
        let original = var.as_tensor().copy().expect("copy");
        let values = original
            .flatten_all()
            .and_then(|v| v.to_vec1::<f32>())
            .expect("values");
        let at = |delta: f32| {
            let mut v = values.clone();
            v[index] += delta;
            var.set(&Tensor::from_vec(v, original.shape(), &Device::Cpu).expect("t"))
                .expect("set");
            let l = loss(3).to_scalar::<f32>().expect("scalar");
            sink.clear();
            l
        };
        let eps = 1e-2;
        let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
        var.set(&original).expect("restore");
        assert!(
            (numeric - analytic).abs() <= 2e-2 * numeric.abs().max(1.0),
            "{name}[{index}]: analytic {analytic}, numeric {numeric}"
        );
    }
}

/// The inference pass equals the training pass without dropout and the padded graph in
/// inference mode, and reads weights changed after the first call.
#[test]
fn inference_matches_the_graph_and_reads_current_weights() {
    let (varmap, model) = tiny(0.3);
    let ids = ids();
    let (padded_ids, mask, rows) = padded(&ids);
    let graph = |model: &BertModel| {
        let hidden = model.forward(&padded_ids, None, &mask).expect("forward");
        real_tokens(&hidden, &rows)
    };
    let ours = model.forward_packed(&ids, &LENGTHS).expect("packed");
    let diff = max_abs(&(&ours - graph(&model)).expect("sub"));
    assert!(
        diff < 1e-5,
        "the packed pass differs from the graph by {diff}"
    );
    // A named weight: the map's iteration order is random, and a zero-initialised bias
    // scaled by 1.5 would change nothing.
    let var =
        varmap.data().lock().expect("lock")["encoder.layer.0.attention.self.query.weight"].clone();
    var.set(&(var.as_tensor() * 1.5).expect("scale"))
        .expect("set");
    let changed = model.forward_packed(&ids, &LENGTHS).expect("packed");
    assert!(max_abs(&(&changed - &ours).expect("sub")) > 1e-3);
    let diff = max_abs(&(&changed - graph(&model)).expect("sub"));
    assert!(diff < 1e-5, "after the update: {diff}");
}

/// The model prepared for f32 inference (its dense weights packed into panels, narrower than
/// one panel here) computes what the graph does, and refuses training.
#[test]
fn the_prepared_f32_pass_matches_the_graph_and_is_not_trained() {
    let (_varmap, model) = tiny(0.0);
    let ids = ids();
    let (padded_ids, mask, rows) = padded(&ids);
    let graph = real_tokens(
        &model.forward(&padded_ids, None, &mask).expect("forward"),
        &rows,
    );
    let prepared = model.quantize(crate::Quantization::None).expect("prepare");
    let ours = prepared.forward_packed(&ids, &LENGTHS).expect("packed");
    let diff = max_abs(&(&ours - &graph).expect("sub"));
    assert!(
        diff < 1e-5,
        "the prepared pass differs from the graph by {diff}"
    );
    let err = prepared
        .forward_train(&ids, &LENGTHS, 0, &GradientSink::new())
        .expect_err("training a prepared model")
        .to_string();
    assert!(err.contains("for inference"), "{err}");
}

#[test]
fn bad_lengths_and_ids_are_errors() {
    let (_, model) = tiny(0.0);
    let sink = GradientSink::new();
    assert!(model.forward_train(&[1, 2, 3], &[2], 0, &sink).is_err());
    assert!(model.forward_train(&[1, 2], &[2, 0], 0, &sink).is_err());
    assert!(model.forward_train(&[], &[], 0, &sink).is_err());
    assert!(model.forward_train(&[1, 99], &[2], 0, &sink).is_err());
    assert!(model.forward_train(&[1; 17], &[17], 0, &sink).is_err());
    assert!(model.forward_packed(&[1, 99], &[2]).is_err());
    assert!(model.forward_packed(&[], &[]).is_err());
    assert!(model.forward_packed(&[1, 2], &[usize::MAX, 3]).is_err());
    let (_, certain) = tiny(1.0);
    assert!(certain.forward_train(&[1, 2], &[2], 0, &sink).is_err());
}

/// The packed passes are CPU f32 only: another dtype (or device) is an error that says so, and
/// the graph serves it.
#[test]
fn the_packed_passes_refuse_other_dtypes_and_the_graph_serves_them() {
    let (varmap, model) = tiny(0.0);
    let (_, wide) = in_f64(&varmap, model.config());
    assert!(model.supports_packed() && !wide.supports_packed());
    for err in [
        wide.forward_packed(&[1, 2], &[2]).expect_err("f64 packed"),
        wide.forward_train(&[1, 2], &[2], 0, &GradientSink::new())
            .expect_err("f64 training pass"),
    ] {
        assert!(err.to_string().contains("CPU device and f32"), "{err}");
    }
    let ids = Tensor::new(&[[1u32, 2]], &Device::Cpu).expect("ids");
    let mask = Tensor::new(&[[1u32, 1]], &Device::Cpu).expect("mask");
    assert_eq!(
        wide.forward(&ids, None, &mask).expect("graph").dims(),
        &[1, 2, 16]
    );
}

/// Pairs read together (segments 0 and 1, as a cross-encoder reads them): the one encoder
/// entry runs the packed pass on f32 and the padded graph on f64, and both equal the graph
/// given the same token types; a segment the model has no row for is an error.
#[test]
fn token_types_reach_both_passes_through_the_encoder_entry() {
    use crate::{Encoder, TokenBatch, TokenEmbeddings};
    let (varmap, model) = tiny(0.0);
    let ids = ids();
    let types: Vec<u32> = (0..TOKENS).map(|i| u32::from(i % 3 == 1)).collect();
    let batch = TokenBatch {
        input_ids: &ids,
        token_type_ids: Some(&types),
        lengths: &LENGTHS,
    };
    let padded = batch.padded(0, &Device::Cpu).expect("padded");
    let (_, _, rows) = self::padded(&ids);
    let graph = real_tokens(
        &model
            .forward(
                &padded.input_ids,
                Some(&padded.token_type_ids),
                &padded.attention_mask,
            )
            .expect("graph"),
        &rows,
    );
    let TokenEmbeddings::Packed(packed) = Encoder::forward(&model, batch).expect("packed") else {
        panic!("an f32 CPU BERT runs the packed pass")
    };
    let diff = max_abs(&(&packed - &graph).expect("sub"));
    assert!(diff < 1e-5, "packed with segments vs graph: {diff}");
    let zero_types = model.forward_packed(&ids, &LENGTHS).expect("packed");
    assert!(
        max_abs(&(&packed - &zero_types).expect("sub")) > 1e-3,
        "the segments changed nothing"
    );

    let (_, wide) = in_f64(&varmap, model.config());
    let TokenEmbeddings::Padded { tokens, mask } = Encoder::forward(&wide, batch).expect("f64")
    else {
        panic!("an f64 model runs the padded graph")
    };
    assert_eq!(mask.dims(), padded.attention_mask.dims());
    let wide_rows = real_tokens(&tokens, &rows)
        .to_dtype(DType::F32)
        .expect("f32");
    let diff = max_abs(&(&wide_rows - &graph).expect("sub"));
    assert!(diff < 1e-5, "f64 graph with segments vs f32 graph: {diff}");

    let two: Vec<u32> = vec![2; TOKENS];
    let err = Encoder::forward(
        &model,
        TokenBatch {
            token_type_ids: Some(&two),
            ..batch
        },
    )
    .expect_err("segment 2 of 2");
    assert!(err.to_string().contains("token type 2"), "{err}");
}
