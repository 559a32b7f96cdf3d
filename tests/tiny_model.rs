//! The tensor code on `models/tiny` against the plain-loop reference in `common::reference`.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use sbert::{BertConfig, BertModel, EncodeOptions, Pooling, PoolingMode, SentenceEmbedder};

use crate::common::{self, reference};

const TEXTS: [&str; 5] = [
    "the cat sat on the mat",
    "hello world",
    "a man is playing guitar and the dog runs fast on the red mat in the house",
    "",
    "reading books",
];

fn tiny() -> SentenceEmbedder {
    SentenceEmbedder::from_dir(common::tiny_dir(), &Device::Cpu).expect("load tiny")
}

fn tiny_config() -> BertConfig {
    let text = std::fs::read_to_string(common::tiny_dir().join("config.json")).expect("config");
    serde_json::from_str(&text).expect("parse config")
}

/// The largest absolute value of a tensor of any float dtype, as f64; NaN when the tensor
/// holds a NaN (a `max` reduction would skip it).
fn max_abs(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64)
        .and_then(|t| t.flatten_all()?.to_vec1::<f64>())
        .expect("values")
        .into_iter()
        .map(f64::abs)
        .fold(0.0, |m, v| if v.is_nan() || v > m { v } else { m })
}

fn tiny_encoder(cfg: &BertConfig) -> BertModel {
    let path = common::tiny_dir().join("model.safetensors");
    let bytes = std::fs::read(path).expect("read weights");
    let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu).expect("vb");
    BertModel::load(vb, cfg).expect("load encoder")
}

#[test]
fn tokenizer_json_truncation_and_padding_are_overridden() {
    let model = tiny();
    assert_eq!(model.max_seq_length(), 16);
    let tok = model
        .tokenize(&TEXTS, sbert::Prompt::Default)
        .expect("tokenize");
    // tokenizer.json says truncate at 8 and pad to 64; sentence_bert_config.json says 16.
    assert_eq!(
        tok[0].ids.len(),
        8,
        "6 words + [CLS] [SEP], not padded to 64"
    );
    assert!(!tok[0].truncated);
    assert_eq!(tok[2].ids.len(), 16, "truncated at max_seq_length");
    assert!(tok[2].truncated);
    assert_eq!(tok[3].ids, vec![2, 3], "the empty text is [CLS] [SEP]");
}

#[test]
fn encoder_matches_plain_loop_reference_in_a_padded_batch() {
    let cfg = tiny_config();
    let encoder = tiny_encoder(&cfg);
    let weights = reference::Weights::load(&common::tiny_dir().join("model.safetensors"));
    let model = tiny();
    let tok = model
        .tokenize(&TEXTS, sbert::Prompt::Default)
        .expect("tokenize");
    let refs: Vec<&sbert::TokenizedText> = tok.iter().collect();
    let batch = model.pad(&refs).expect("pad");
    let (ids, mask) = (batch.input_ids, batch.attention_mask);
    let hidden: Vec<Vec<Vec<f32>>> = encoder
        .forward(&ids, None, &mask)
        .expect("forward")
        .to_vec3()
        .expect("vec3");
    for (r, x) in tok.iter().enumerate() {
        let want = reference::encode(&weights, &cfg, &x.ids);
        for (pos, row) in want.iter().enumerate() {
            let d = common::max_abs_diff(&hidden[r][pos], &reference::to_f32(row));
            assert!(d < 1e-5, "text {r} token {pos}: max |Δ| {d:e}");
        }
    }
}

#[test]
fn every_pooling_mode_through_dense_and_normalize_matches_reference() {
    let cfg = tiny_config();
    let weights = reference::Weights::load(&common::tiny_dir().join("model.safetensors"));
    let dense = reference::Weights::load(&common::tiny_dir().join("2_Dense/model.safetensors"));
    let tok = tiny()
        .tokenize(&TEXTS, sbert::Prompt::Default)
        .expect("tokenize");
    for mode in PoolingMode::ALL {
        let model = SentenceEmbedder::builder(common::tiny_dir().to_string_lossy())
            .pooling(mode)
            .batch_size(2)
            .build()
            .expect("load");
        assert!(model.normalizes());
        let got = model.embed(&TEXTS).expect("embed").to_vecs();
        let want: Vec<Vec<f32>> = tok
            .iter()
            .map(|x| {
                let tokens = reference::encode(&weights, &cfg, &x.ids);
                let pooled = reference::pool(mode.name(), &tokens);
                reference::to_f32(&reference::l2_normalize(&reference::dense_tanh(
                    &dense, &pooled,
                )))
            })
            .collect();
        common::assert_close(mode.name(), &got, &want, 1e-5, 0.99999);
    }
}

#[test]
fn embed_poolings_equals_one_embed_per_pooling() {
    let model = SentenceEmbedder::builder(common::tiny_dir().to_string_lossy())
        .normalize(false)
        .build()
        .expect("load");
    let poolings: Vec<Pooling> = [PoolingMode::Cls, PoolingMode::Max, PoolingMode::Mean]
        .into_iter()
        .map(Pooling::single)
        .collect();
    let all = model.embed_poolings(&TEXTS, &poolings).expect("embed");
    for (p, got) in poolings.iter().zip(all) {
        let single = SentenceEmbedder::builder(common::tiny_dir().to_string_lossy())
            .normalize(false)
            .pooling(p.clone())
            .build()
            .expect("load")
            .embed(&TEXTS)
            .expect("embed")
            .to_vecs();
        let got: Vec<Vec<f32>> = got.to_vec2().expect("vec");
        common::assert_close(&p.to_string(), &got, &single, 0.0, 1.0 - 1e-6);
    }
    // Two modes concatenated give 64 features, which the 32-input Dense cannot take.
    let both: Pooling = "mean,max".parse().expect("parse");
    let err = model
        .embed_poolings(&TEXTS, &[both])
        .expect_err("Dense width");
    assert!(err.to_string().contains("Dense"), "{err}");
}

#[test]
fn attention_probabilities_are_per_layer_and_head_and_ignore_padding() {
    let cfg = tiny_config();
    let encoder = tiny_encoder(&cfg);
    let ids = Tensor::new(&[[2u32, 5, 6, 3], [2, 7, 3, 0]], &Device::Cpu).expect("ids");
    let mask = Tensor::new(&[[1u32, 1, 1, 1], [1, 1, 1, 0]], &Device::Cpu).expect("mask");
    let out = encoder
        .forward_with_attentions(&ids, None, &mask)
        .expect("forward");
    assert_eq!(out.attentions.len(), cfg.num_hidden_layers);
    for probs in &out.attentions {
        assert_eq!(probs.dims(), &[2, cfg.num_attention_heads, 4, 4]);
        let p: Vec<Vec<Vec<Vec<f32>>>> = (0..2)
            .map(|b| probs.get(b).expect("b").to_vec3().expect("v"))
            .collect();
        for (b, heads) in p.iter().enumerate() {
            for rows in heads {
                for row in rows {
                    let sum: f32 = row.iter().sum();
                    assert!((sum - 1.0).abs() < 1e-5, "row sums to {sum}");
                    if b == 1 {
                        assert_eq!(row[3], 0.0, "padding key gets no attention");
                    }
                }
            }
        }
    }
    // The plain forward pass returns the same hidden states and keeps no attentions.
    let plain = encoder.forward(&ids, None, &mask).expect("forward");
    let diff = (plain - &out.hidden_states).expect("sub");
    assert_eq!(max_abs(&diff), 0.0);
}

#[test]
fn training_mode_is_differentiable_and_dropout_acts_only_in_training() {
    use sbert::bert::Mode;
    let ids = Tensor::new(&[[2u32, 5, 6, 3]], &Device::Cpu).expect("ids");
    let mask = Tensor::new(&[[1u32, 1, 1, 1]], &Device::Cpu).expect("mask");
    let train = Mode {
        train: true,
        ..Mode::default()
    };

    // Without dropout, the differentiable composite ops equal the fused inference kernels.
    let no_dropout = BertConfig {
        hidden_dropout_prob: 0.0,
        attention_probs_dropout_prob: 0.0,
        ..tiny_config()
    };
    let encoder = tiny_encoder(&no_dropout);
    let inference = encoder.forward(&ids, None, &mask).expect("forward");
    let composite = encoder
        .forward_with_mode(&ids, None, &mask, train)
        .expect("forward");
    let d = (&inference - &composite.hidden_states).expect("sub");
    assert!(max_abs(&d) < 1e-5);

    // Gradients flow to the weights through the training path.
    let varmap = candle_nn::VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let trainable = BertModel::load(vb, &tiny_config()).expect("load");
    let loss = trainable
        .forward_with_mode(&ids, None, &mask, train)
        .expect("forward")
        .hidden_states
        .sqr()
        .expect("sqr")
        .mean_all()
        .expect("mean");
    let grads = loss.backward().expect("backward");
    let vars = varmap.all_vars();
    assert!(vars.len() > 10);
    let with_grad = vars
        .iter()
        .filter(|v| grads.get(v.as_tensor()).is_some())
        .count();
    assert_eq!(with_grad, vars.len(), "every weight gets a gradient");

    // With dropout: training passes with different seeds differ, the same seed replays the
    // same masks, inference passes do not change.
    let encoder = tiny_encoder(&tiny_config());
    let seeded = |dropout_seed| {
        encoder
            .forward_with_mode(
                &ids,
                None,
                &mask,
                Mode {
                    dropout_seed,
                    ..train
                },
            )
            .expect("f")
            .hidden_states
    };
    let (a, b) = (seeded(1), seeded(2));
    assert!(
        max_abs(&(&a - &b).expect("sub")) > 1e-3,
        "dropout is active in training"
    );
    assert_eq!(
        max_abs(&(&a - &seeded(1)).expect("sub")),
        0.0,
        "a seed replays"
    );
    let c = encoder.forward(&ids, None, &mask).expect("f");
    let e = encoder.forward(&ids, None, &mask).expect("f");
    assert_eq!(max_abs(&(&c - &e).expect("sub")), 0.0);
}

#[test]
fn order_is_restored_for_any_batch_size() {
    let texts: Vec<String> = (0..23)
        .map(|i| {
            "the cat sat on the mat and the dog runs ".repeat(i % 4 + 1)[..5 + (i * 7) % 40]
                .to_string()
        })
        .collect();
    let one = SentenceEmbedder::builder(common::tiny_dir().to_string_lossy())
        .batch_size(1)
        .build()
        .expect("load")
        .embed(&texts)
        .expect("embed")
        .to_vecs();
    for bs in [2, 5, 32] {
        let got = SentenceEmbedder::builder(common::tiny_dir().to_string_lossy())
            .batch_size(bs)
            .build()
            .expect("load")
            .embed(&texts)
            .expect("embed")
            .to_vecs();
        common::assert_close(&format!("batch {bs}"), &got, &one, 1e-5, 0.99999);
    }
    // A batch size for one call gives what a model built with it gives.
    let model = SentenceEmbedder::builder(common::tiny_dir().to_string_lossy())
        .batch_size(32)
        .build()
        .expect("load");
    let per_call: Vec<Vec<f32>> = model
        .encode(&texts, &EncodeOptions::default().batch_size(1))
        .expect("encode")
        .to_vecs();
    common::assert_close("per call", &per_call, &one, 1e-5, 0.99999);
    assert!(model
        .encode(&texts, &EncodeOptions::default().batch_size(0))
        .is_err());
}

#[test]
fn per_call_normalize_and_truncate_dim_follow_sentence_transformers() {
    let model = tiny();
    assert!(model.normalizes(), "the tiny model lists Normalize");
    let dim = model.dim();
    let default = model.embed(&TEXTS).expect("embed");
    let unnormalized = SentenceEmbedder::builder(common::tiny_dir().to_string_lossy())
        .normalize(false)
        .build()
        .expect("load")
        .embed(&TEXTS)
        .expect("embed");
    // normalize(false) leaves the model's Normalize module out, as a model built without it.
    let raw = model
        .encode(&TEXTS, &EncodeOptions::default().normalize(false))
        .expect("encode");
    common::assert_close(
        "normalize(false)",
        &raw.to_vecs(),
        &unnormalized.to_vecs(),
        1e-6,
        0.999999,
    );
    // truncate_dim keeps the first values of the model's output, not normalized again ...
    let cut = model
        .encode(&TEXTS, &EncodeOptions::default().truncate_dim(dim / 2))
        .expect("encode");
    assert_eq!(cut.dim(), dim / 2);
    let want: Vec<Vec<f32>> = default.rows().map(|r| r[..dim / 2].to_vec()).collect();
    common::assert_close("truncate_dim", &cut.to_vecs(), &want, 1e-6, 0.999999);
    // ... unless normalize(true) asks for it, after the truncation (normalize_embeddings).
    let unit = model
        .encode(
            &TEXTS,
            &EncodeOptions::default()
                .truncate_dim(dim / 2)
                .normalize(true),
        )
        .expect("encode");
    for row in unit.rows() {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
    let mut renormalized = cut.clone();
    renormalized.normalize();
    common::assert_close(
        "normalized after truncation",
        &unit.to_vecs(),
        &renormalized.to_vecs(),
        1e-6,
        0.999999,
    );
    // The tensor form gives the same rows.
    let tensor: Vec<Vec<f32>> = model
        .encode_tensor(&TEXTS, &EncodeOptions::default().truncate_dim(dim / 2))
        .expect("tensor")
        .to_vec2()
        .expect("rows");
    common::assert_close("encode_tensor", &tensor, &cut.to_vecs(), 1e-7, 0.99999);
    for bad in [0, dim + 1] {
        let err = model
            .encode(&TEXTS, &EncodeOptions::default().truncate_dim(bad))
            .expect_err("out of range");
        assert!(err.to_string().contains("truncate_dim"), "{err}");
    }
}

#[test]
fn packed_forward_equals_padded_forward() {
    let cfg = tiny_config();
    let encoder = tiny_encoder(&cfg);
    assert!(encoder.supports_packed());
    let tok = tiny()
        .tokenize(&TEXTS, sbert::Prompt::Default)
        .expect("tokenize");
    let lengths: Vec<usize> = tok.iter().map(|x| x.ids.len()).collect();
    let ids: Vec<u32> = tok.iter().flat_map(|x| x.ids.clone()).collect();
    let packed: Vec<Vec<f32>> = encoder
        .forward_packed(&ids, &lengths)
        .expect("packed")
        .to_vec2()
        .expect("vec");
    let weights = reference::Weights::load(&common::tiny_dir().join("model.safetensors"));
    let mut row = 0;
    for x in &tok {
        for want in reference::encode(&weights, &cfg, &x.ids) {
            let d = common::max_abs_diff(&packed[row], &reference::to_f32(&want));
            assert!(d < 1e-5, "token row {row}: max |Δ| {d:e}");
            row += 1;
        }
    }
    assert_eq!(row, packed.len());
    // Malformed partitions are errors, not panics.
    assert!(encoder.forward_packed(&ids, &[ids.len() + 1]).is_err());
    assert!(encoder.forward_packed(&ids, &[0, ids.len()]).is_err());
}

/// The fused training ops (CPU f32: LayerNorm, GELU, masked softmax, dropout) give the same
/// gradients as candle's composite ops, which run in f64 and are themselves checked against
/// finite differences in sbert-train.
#[test]
fn fused_training_ops_give_the_composite_gradients() {
    use sbert::bert::Mode;
    let cfg = BertConfig {
        hidden_dropout_prob: 0.0,
        attention_probs_dropout_prob: 0.0,
        ..tiny_config()
    };
    let load = |dtype| {
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, dtype, &Device::Cpu);
        let model = BertModel::load(vb, &cfg).expect("load");
        (varmap, model)
    };
    let (vm32, model32) = load(DType::F32);
    let (vm64, model64) = load(DType::F64);
    {
        let (v32, v64) = (
            vm32.data().lock().expect("lock"),
            vm64.data().lock().expect("lock"),
        );
        for (name, var) in v32.iter() {
            let perturbed =
                (var.as_tensor() + var.randn_like(0.0, 0.05).expect("randn")).expect("add");
            var.set(&perturbed).expect("set");
            v64[name]
                .set(&perturbed.to_dtype(DType::F64).expect("f64"))
                .expect("set");
        }
    }
    // Padding in the second row exercises the attention mask.
    let ids = Tensor::new(&[[2u32, 5, 6, 7, 3], [2, 9, 3, 0, 0]], &Device::Cpu).expect("ids");
    let mask = Tensor::new(&[[1u32, 1, 1, 1, 1], [1, 1, 1, 0, 0]], &Device::Cpu).expect("mask");
    let train = Mode {
        train: true,
        ..Mode::default()
    };
    let weights = Tensor::randn(0f64, 1.0, (2, 5, cfg.hidden_size), &Device::Cpu).expect("w");
    let loss = |model: &BertModel, dtype| {
        let h = model
            .forward_with_mode(&ids, None, &mask, train)
            .expect("forward")
            .hidden_states;
        (h * weights.to_dtype(dtype).expect("w"))
            .expect("mul")
            .sum_all()
            .expect("sum")
    };
    let g32 = loss(&model32, DType::F32).backward().expect("backward");
    let g64 = loss(&model64, DType::F64).backward().expect("backward");
    let (v32, v64) = (
        vm32.data().lock().expect("lock"),
        vm64.data().lock().expect("lock"),
    );
    let mut checked = 0;
    for (name, var) in v32.iter() {
        let (Some(a), Some(b)) = (g32.get(var.as_tensor()), g64.get(v64[name].as_tensor())) else {
            panic!("{name}: no gradient");
        };
        let a = a.to_dtype(DType::F64).expect("f64");
        let scale = max_abs(b);
        let diff = max_abs(&(&a - b).expect("sub"));
        assert!(
            diff <= 1e-4 * scale.max(1e-3),
            "{name}: |Δ| {diff} of {scale}"
        );
        checked += 1;
    }
    assert!(checked > 20, "{checked} weights checked");
}

/// Eight threads share one freshly loaded model, so its first use (where the packed path
/// builds its weight snapshot) happens concurrently; every thread gets exactly what one
/// thread alone gets from another fresh model.
#[test]
fn eight_threads_share_one_model_and_get_one_threads_results() {
    let texts: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "sentence {i} about the cat {}",
                "and the dog ".repeat(i % 7)
            )
        })
        .collect();
    let alone = SentenceEmbedder::from_dir(common::tiny_dir(), &Device::Cpu)
        .expect("load")
        .embed(&texts)
        .expect("embed")
        .to_vecs();
    let shared = SentenceEmbedder::from_dir(common::tiny_dir(), &Device::Cpu).expect("load");
    let barrier = std::sync::Barrier::new(8);
    let results: Vec<Vec<Vec<f32>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    shared.embed(&texts).expect("embed").to_vecs()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    for (t, got) in results.iter().enumerate() {
        assert!(got == &alone, "thread {t} differs from one thread alone");
    }
}
