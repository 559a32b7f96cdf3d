//! STS evaluation through the library API: Spearman of cosine vs gold on STSb test, for the
//! three pooling strategies of the SBERT paper, each sentence encoded once.
//!
//! Run: cargo run --release --example sts_eval [MODEL_DIR] [STS_FILE]

use anyhow::Result;
use sbert::{Device, Pooling, PoolingMode, SentenceEmbedder};
use sbert_eval::{evaluate, report, StsDataset};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let model_dir = args
        .next()
        .unwrap_or_else(|| "models/all-MiniLM-L6-v2".into());
    let data = args
        .next()
        .unwrap_or_else(|| "../shared/data/stsb/test.tsv".into());

    let model = SentenceEmbedder::from_dir(&model_dir, &Device::Cpu)?;
    let dataset = StsDataset::read(&data, Some("STSb-test"))?;
    let poolings: Vec<Pooling> = [PoolingMode::Mean, PoolingMode::Max, PoolingMode::Cls]
        .into_iter()
        .map(Pooling::single)
        .collect();
    let run = evaluate(&model, &[dataset], &poolings, &mut |done, total| {
        eprint!("\rencoded {done}/{total}");
    })?;
    eprintln!(
        "\r{} sentences in {:.1} s ({:.0}/s)",
        run.sentences,
        run.encode_time.as_secs_f64(),
        run.sentences_per_second()
    );
    print!(
        "{}",
        report::pooling_table(&run.scores, report::TableStyle::Plain)
    );
    Ok(())
}
