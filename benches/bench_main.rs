//! Criterion benches: pooling strategies, tokenization, encoder forward, end-to-end embed, and
//! one training step of the encoder (packed pass with hand-written backward vs candle's graph).
//!
//! Run: cargo bench --bench bench_main  (needs models/all-MiniLM-L6-v2 for the model groups;
//! set RAYON_NUM_THREADS to pin the thread count when reporting).

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use sbert::{DType, Device, Pooling, PoolingMode, SentenceEmbedder, Tensor};

fn model_dir() -> String {
    std::env::var("SBERT_MODEL_DIR").unwrap_or_else(|_| "models/all-MiniLM-L6-v2".into())
}

/// Sentences of about `words` words.
fn sentences(n: usize, words: usize) -> Vec<String> {
    let vocab = [
        "the", "man", "is", "playing", "a", "guitar", "on", "stage", "while", "people", "dance",
    ];
    (0..n)
        .map(|i| {
            (0..words)
                .map(|w| vocab[(i * 7 + w * 3) % vocab.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Pooling cost per strategy over 32 texts of ragged lengths (up to `seq` tokens, dim 384): a
/// padded `(32, seq, 384)` batch with its mask (`pool`, the graph's path) and the same tokens
/// packed back to back (`pool_packed`, the CPU path).
fn pooling(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut group = c.benchmark_group("cpu_pooling");
    for seq in [16usize, 128] {
        let tokens = Tensor::randn(0f32, 1.0, (32, seq, 384), &dev).expect("randn");
        let lengths: Vec<usize> = (0..32).map(|s| seq / 2 + s % (seq / 2)).collect();
        let mask: Vec<u32> = (0..32 * seq)
            .map(|i| u32::from(i % seq < lengths[i / seq]))
            .collect();
        let rows: Vec<u32> = (0..32 * seq as u32)
            .filter(|&i| i as usize % seq < lengths[i as usize / seq])
            .collect();
        let mask = Tensor::from_vec(mask, (32, seq), &dev).expect("mask");
        let rows = Tensor::from_vec(rows.clone(), rows.len(), &dev).expect("rows");
        let packed = tokens
            .reshape((32 * seq, 384))
            .and_then(|t| t.index_select(&rows, 0))
            .expect("packed");
        group.throughput(Throughput::Elements(32));
        for mode in PoolingMode::ALL {
            let p = Pooling::single(mode);
            let id = |layout: &str| BenchmarkId::new(format!("{}/{layout}", mode.name()), seq);
            group.bench_with_input(id("padded"), &seq, |b, _| {
                b.iter(|| p.pool(&tokens, &mask).expect("pool"))
            });
            group.bench_with_input(id("packed"), &seq, |b, _| {
                b.iter(|| p.pool_packed(&packed, &lengths).expect("pool_packed"))
            });
        }
    }
    group.finish();
}

fn model_groups(c: &mut Criterion) {
    let Ok(model) = SentenceEmbedder::from_dir(model_dir(), &Device::Cpu) else {
        eprintln!(
            "skipping model benches: {} not found (run models/fetch.sh)",
            model_dir()
        );
        return;
    };
    let mut group = c.benchmark_group("cpu_tokenize");
    let texts = sentences(32, 14);
    group.throughput(Throughput::Elements(32));
    group.bench_function("32x14words", |b| {
        b.iter(|| {
            model
                .tokenize(&texts, sbert::Prompt::Default)
                .expect("tokenize")
        })
    });
    group.finish();

    let mut group = c.benchmark_group("cpu_encoder_forward");
    group.sample_size(10);
    for (batch, seq) in [(1usize, 16usize), (8, 16), (32, 16), (32, 64), (32, 128)] {
        let ids = Tensor::ones((batch, seq), DType::U32, &Device::Cpu).expect("ids");
        let mask = Tensor::ones((batch, seq), DType::U32, &Device::Cpu).expect("mask");
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new(format!("b{batch}"), seq), |b| {
            b.iter(|| {
                model
                    .encoder()
                    .bert()
                    .expect("MiniLM is a BERT")
                    .forward(&ids, None, &mask)
                    .expect("forward")
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("cpu_embed");
    group.sample_size(10);
    for (n, words) in [(1usize, 8usize), (32, 14), (32, 60)] {
        let texts = sentences(n, words);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new(format!("n{n}"), words), |b| {
            b.iter(|| model.embed(&texts).expect("embed"))
        });
    }
    group.finish();
}

/// One training step of the encoder (forward with dropout, backward to every weight) on 32
/// texts of ragged length: the packed pass with its hand-written backward pass against the
/// same arithmetic through candle's graph on a padded batch.
fn training_step(c: &mut Criterion) {
    let Ok(model) = sbert_train::TrainableModel::load(model_dir()) else {
        eprintln!("skipping the training bench: {} not found", model_dir());
        return;
    };
    let encoder = model.encoder();
    let texts: Vec<String> = (0..32)
        .map(|i| sentences(1, 6 + i % 17).remove(0))
        .collect();
    let tok = model.tokenize(&texts).expect("tokenize");
    let lengths: Vec<usize> = tok.iter().map(|t| t.ids.len()).collect();
    let ids: Vec<u32> = tok.iter().flat_map(|t| t.ids.iter().copied()).collect();
    // The same texts as one padded batch, as sentence-transformers pads them.
    let embedder = SentenceEmbedder::from_dir(model_dir(), &Device::Cpu).expect("model");
    let refs: Vec<&sbert::TokenizedText> = tok.iter().collect();
    let batch = embedder.pad(&refs).expect("pad");
    let (padded, mask) = (batch.input_ids, batch.attention_mask);
    let sink = sbert::bert::GradientSink::new();
    let mode = sbert::bert::Mode {
        train: true,
        ..Default::default()
    };

    let mut group = c.benchmark_group("cpu_training_step");
    group.sample_size(10);
    group.throughput(Throughput::Elements(32));
    group.bench_function("packed_hand_backward", |b| {
        b.iter(|| {
            let hidden = encoder
                .forward_train(&ids, &lengths, 1, &sink)
                .expect("forward");
            let loss = hidden.sqr().and_then(|h| h.sum_all()).expect("loss");
            let mut store = loss.backward().expect("backward");
            sink.drain_into(&mut store).expect("drain");
            store
        })
    });
    group.bench_function("padded_candle_graph", |b| {
        b.iter(|| {
            let hidden = encoder
                .forward_with_mode(&padded, None, &mask, mode)
                .expect("forward")
                .hidden_states;
            let loss = hidden.sqr().and_then(|h| h.sum_all()).expect("loss");
            loss.backward().expect("backward")
        })
    });
    group.finish();
}

mod groups {
    #![allow(missing_docs)]
    criterion::criterion_group!(
        benches,
        super::pooling,
        super::model_groups,
        super::training_step
    );
}
criterion_main!(groups::benches);
