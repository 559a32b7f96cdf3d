//! A run's state saved beside each checkpoint, so that `--resume` continues it: the step, the
//! settings that fix the schedule and the batch order, the dropout stream, the best dev score,
//! and AdamW's moments.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::{Result, TrainError};

/// The folder of a checkpoint that holds the training state.
pub(crate) const STATE_DIR: &str = "training_state";
const STATE_FILE: &str = "trainer_state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// Where a run stood when a checkpoint was saved.
#[derive(Debug, Clone)]
pub(crate) struct TrainingState {
    /// Optimizer steps taken.
    pub step: usize,
    /// The next dropout seed of the model.
    pub dropout_seed: u64,
    /// The best dev score so far.
    pub best_dev: Option<f64>,
    /// What must match for the run to continue: examples, batch size, epochs, seed, learning
    /// rate, warm-up, objective.
    pub schedule: serde_json::Value,
    /// AdamW's step count and moments by parameter name.
    pub optimizer_step: i32,
    pub moments: HashMap<String, (Tensor, Tensor)>,
}

impl TrainingState {
    /// Writes the state into the checkpoint folder being assembled at `dir`.
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        let state_dir = dir.join(STATE_DIR);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TrainError::Io { path, source }
        };
        std::fs::create_dir_all(&state_dir).map_err(io(&state_dir))?;
        let json = serde_json::json!({
            "step": self.step,
            "dropout_seed": self.dropout_seed,
            "best_dev": self.best_dev,
            "schedule": self.schedule,
            "optimizer_step": self.optimizer_step,
        });
        let path = state_dir.join(STATE_FILE);
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        )
        .map_err(io(&path))?;
        let mut tensors = HashMap::new();
        for (name, (m, v)) in &self.moments {
            tensors.insert(format!("{name}.exp_avg"), m.clone());
            tensors.insert(format!("{name}.exp_avg_sq"), v.clone());
        }
        let path = state_dir.join(OPTIMIZER_FILE);
        candle_core::safetensors::save(&tensors, &path).map_err(|e| TrainError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        Ok(())
    }

    /// Reads the state of the checkpoint `dir`.
    ///
    /// # Errors
    /// [`TrainError::Invalid`] when `dir` is not a checkpoint `sbert train` wrote with its
    /// training state; I/O and format errors naming the file.
    pub(crate) fn read(dir: &Path) -> Result<Self> {
        let not_checkpoint = |why: &str| {
            TrainError::Invalid(format!(
                "--resume {}: not a checkpoint to continue from ({why})",
                dir.display()
            ))
        };
        if !crate::OutputDir::is_checkpoint(dir) {
            return Err(not_checkpoint(&format!(
                "no {} from sbert train",
                crate::CHECKPOINT_MARKER
            )));
        }
        let path = dir.join(STATE_DIR).join(STATE_FILE);
        if !path.is_file() {
            return Err(not_checkpoint(&format!(
                "no {STATE_DIR}/{STATE_FILE}: it was saved with --save-only-model"
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(|source| TrainError::Io {
            path: path.clone(),
            source,
        })?;
        let bad = |what: &str| TrainError::Format {
            path: path.clone(),
            line: 1,
            message: format!("{what} missing or malformed"),
        };
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|_| bad("JSON"))?;
        let step = json["step"].as_u64().ok_or_else(|| bad("step"))? as usize;
        let dropout_seed = json["dropout_seed"]
            .as_u64()
            .ok_or_else(|| bad("dropout_seed"))?;
        let optimizer_step = json["optimizer_step"]
            .as_i64()
            .and_then(|s| i32::try_from(s).ok())
            .ok_or_else(|| bad("optimizer_step"))?;
        let best_dev = json["best_dev"].as_f64();
        let schedule = json["schedule"].clone();
        let path: PathBuf = dir.join(STATE_DIR).join(OPTIMIZER_FILE);
        let mut tensors =
            candle_core::safetensors::load(&path, &Device::Cpu).map_err(|e| TrainError::Io {
                path: path.clone(),
                source: std::io::Error::other(e),
            })?;
        let names: Vec<String> = tensors
            .keys()
            .filter_map(|k| k.strip_suffix(".exp_avg").map(str::to_string))
            .collect();
        let mut moments = HashMap::new();
        for name in names {
            let m = tensors.remove(&format!("{name}.exp_avg"));
            let v = tensors.remove(&format!("{name}.exp_avg_sq"));
            match (m, v) {
                (Some(m), Some(v)) => {
                    moments.insert(name, (m, v));
                }
                _ => return Err(not_checkpoint(&format!("{name} has one moment only"))),
            }
        }
        Ok(Self {
            step,
            dropout_seed,
            best_dev,
            schedule,
            optimizer_step,
            moments,
        })
    }
}
