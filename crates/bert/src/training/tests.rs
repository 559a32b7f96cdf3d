//! The packed training pass against candle's graph, finite differences and itself.

use super::*;
use crate::{BertConfig, Mode};
use candle_core::{DType, Device, Var};
use candle_nn::{VarBuilder, VarMap};

fn tiny(dropout: f64) -> (VarMap, BertModel) {
    let config = BertConfig {
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
        let noise = Tensor::randn(0f32, 0.5, var.shape(), &Device::Cpu).expect("randn");
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

const LENGTHS: [usize; 3] = [5, 2, 7];

fn ids() -> Vec<u32> {
    (0..LENGTHS.iter().sum::<usize>())
        .map(|i| (i * 7 % 40) as u32)
        .collect()
}

/// The same sequences as a padded batch with its mask, and weights for a loss that ignores
/// padding.
fn padded(ids: &[u32], h: usize) -> (Tensor, Tensor, Tensor) {
    let t = LENGTHS.iter().copied().max().unwrap_or(0);
    let (mut padded, mut mask) = (vec![0u32; LENGTHS.len() * t], vec![0f32; LENGTHS.len() * t]);
    let mut start = 0;
    for (s, &len) in LENGTHS.iter().enumerate() {
        padded[s * t..s * t + len].copy_from_slice(&ids[start..start + len]);
        mask[s * t..s * t + len].fill(1.0);
        start += len;
    }
    let dev = &Device::Cpu;
    let b = LENGTHS.len();
    let mask = Tensor::from_vec(mask, (b, t), dev).expect("mask");
    let weights = Tensor::randn(0f32, 1.0, (b, t, h), dev)
        .expect("randn")
        .broadcast_mul(&mask.unsqueeze(2).expect("unsqueeze"))
        .expect("mul");
    let ids = Tensor::from_vec(padded, (b, t), dev).expect("ids");
    (ids, mask, weights)
}

/// max |t|; NaN when `t` holds a NaN (a reduction with `max` would skip it).
fn max_abs(t: &Tensor) -> f32 {
    t.flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("values")
        .into_iter()
        .map(f32::abs)
        .fold(0.0, |m, v| if v.is_nan() || v > m { v } else { m })
}

#[test]
fn values_and_gradients_match_the_autograd_path() {
    let (varmap, model) = tiny(0.0);
    let ids = ids();
    let (padded_ids, mask, weights) = padded(&ids, 16);
    let sink = GradientSink::new();
    let ours = model
        .forward_train(&ids, &LENGTHS, 7, &sink)
        .expect("forward_train");
    let train = Mode {
        train: true,
        ..Mode::default()
    };
    let reference = model
        .forward_with_mode(&padded_ids, None, &mask, train)
        .expect("forward")
        .hidden_states
        .broadcast_mul(&mask.unsqueeze(2).expect("unsqueeze"))
        .expect("mul");
    let diff = max_abs(&(&ours - &reference).expect("sub"));
    assert!(diff < 1e-5, "outputs differ by {diff}");

    let loss = |h: &Tensor| (h * &weights).and_then(|l| l.sum_all()).expect("loss");
    let mut grads = loss(&ours).backward().expect("backward");
    assert!(!sink.is_empty());
    sink.drain_into(&mut grads).expect("drain");
    assert!(sink.is_empty());
    let expected = loss(&reference).backward().expect("backward");
    let vars = varmap.all_vars();
    assert_eq!(vars.len(), 5 + 2 * LAYER_PARAMS);
    for var in &vars {
        let (Some(a), Some(b)) = (grads.get(var), expected.get(var)) else {
            panic!("a weight of shape {:?} has no gradient", var.shape());
        };
        // (The key bias has a zero gradient: softmax ignores a constant added to a row.)
        let scale = max_abs(b).max(1.0);
        let diff = max_abs(&(a - b).expect("sub"));
        assert!(
            diff / scale < 1e-4,
            "gradient of a {:?} weight: |Δ| {diff} of {scale}",
            var.shape()
        );
    }
}

/// With dropout: the seed replays the masks, and the gradient matches central differences
/// (the masks are fixed by the seed, so the loss is a smooth function of the weights).
#[test]
fn dropout_is_seeded_and_gradients_match_finite_differences() {
    let (varmap, model) = tiny(0.2);
    let ids = ids();
    let (_, _, weights) = padded(&ids, 16);
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

/// The evaluation pass equals the training pass without dropout, and the padded graph in
/// inference mode, and reads weights changed after the first call.
#[test]
fn eval_pass_matches_inference_and_reads_current_weights() {
    let (varmap, model) = tiny(0.3);
    let ids = ids();
    let (padded_ids, mask, _) = padded(&ids, 16);
    let inference = |model: &BertModel| {
        model
            .forward(&padded_ids, None, &mask)
            .and_then(|h| h.broadcast_mul(&mask.unsqueeze(2)?))
            .expect("forward")
    };
    let ours = model.forward_eval(&ids, &LENGTHS).expect("eval");
    let diff = max_abs(&(&ours - inference(&model)).expect("sub"));
    assert!(diff < 1e-5, "eval pass differs from inference by {diff}");
    let var = &varmap.all_vars()[0];
    var.set(&(var.as_tensor() * 1.5).expect("scale"))
        .expect("set");
    let changed = model.forward_eval(&ids, &LENGTHS).expect("eval");
    assert!(max_abs(&(&changed - &ours).expect("sub")) > 1e-3);
    let diff = max_abs(&(&changed - inference(&model)).expect("sub"));
    assert!(diff < 1e-5, "after the update: {diff}");
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
    assert!(model.forward_eval(&[1, 99], &[2]).is_err());
    assert!(model.forward_eval(&[], &[]).is_err());
    let (_, certain) = tiny(1.0);
    assert!(certain.forward_train(&[1, 2], &[2], 0, &sink).is_err());
}
