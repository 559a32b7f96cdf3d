//! Fine-tuning through the library API, one objective at a time:
//!
//! ```sh
//! cargo run --release --example train -- cosine   # regression on STSb train (score/5)
//! cargo run --release --example train -- softmax  # NLI classification, (u, v, |u-v|)
//! cargo run --release --example train -- mnrl     # in-batch negatives, self-adversarial T=1
//! ```
//! Each runs a short demonstration (the first 320 examples) and saves to `target/example-<objective>/`.

use anyhow::{bail, Result};
use sbert_train::{
    read_nli, read_pairs, read_scored_pairs, Concat, DevSet, Objective, OutputDir, TrainConfig,
    TrainData, TrainableModel, Trainer,
};

fn main() -> Result<()> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "cosine".into());
    let model = TrainableModel::load("models/all-MiniLM-L6-v2")?;
    let data_dir = "../shared/data";
    let (objective, data, dev, batch_size) = match which.as_str() {
        "cosine" => (
            Objective::Cosine { max_score: 5.0 },
            TrainData::Scored(read_scored_pairs(format!("{data_dir}/stsb/train.tsv"))?),
            Some(DevSet::Sts(read_scored_pairs(format!(
                "{data_dir}/stsb/dev.tsv"
            ))?)),
            16,
        ),
        "softmax" => (
            Objective::Softmax {
                concat: Concat::default(),
            },
            TrainData::Nli(read_nli(format!("{data_dir}/nli/train.tsv"))?),
            None,
            16,
        ),
        "mnrl" => (
            Objective::InBatchNegatives {
                scale: 20.0,
                temperature: Some(1.0),
            },
            TrainData::Pairs(read_pairs(format!("{data_dir}/nli/train.tsv"))?),
            None,
            32,
        ),
        other => bail!("unknown objective {other:?}: cosine, softmax or mnrl"),
    };
    let data = match data {
        TrainData::Scored(v) => TrainData::Scored(v.into_iter().take(320).collect()),
        TrainData::Nli(v) => TrainData::Nli(v.into_iter().take(320).collect()),
        TrainData::Pairs(v) => TrainData::Pairs(v.into_iter().take(320).collect()),
        other => other,
    };
    let config = TrainConfig {
        batch_size,
        // A new folder, or this example's own checkpoint from an earlier run.
        output: Some(OutputDir::new(
            format!("target/example-{which}"),
            false,
            &[],
        )?),
        ..TrainConfig::default()
    };
    let trainer = Trainer::new(config, objective, model.dim())?;
    let report = trainer.train(&model, &data, dev.as_ref(), &mut |s| {
        if s.step % 5 == 0 {
            eprintln!(
                "step {}/{}: loss {:.4}, lr {:.2e}",
                s.step, s.total, s.loss, s.lr
            );
        }
    })?;
    println!(
        "{} steps, {:.1} pairs/s, best dev {:?}",
        report.steps.len(),
        report.pairs_per_second,
        report.best_dev
    );
    Ok(())
}
