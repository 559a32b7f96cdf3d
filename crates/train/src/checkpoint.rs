//! Where a training run may put its model folder, decided before training starts.
//!
//! A checkpoint folder is replaced whole on every save, so the rule is strict: the folder must
//! not exist yet, be empty, or be a checkpoint this crate wrote (it holds [`MARKER`]); any
//! other folder is refused unless the caller passes `overwrite`. Some folders are refused even
//! then: the file-system root, the working directory and the folders above it, the home
//! folder, the model folder being trained and every folder that holds an input.

use std::path::{Path, PathBuf};

use crate::{Result, TrainError};

/// The file that marks a folder as a checkpoint written by `sbert-train` (a small JSON
/// record of the run); sentence-transformers ignores it when loading the folder.
pub const MARKER: &str = "sbert_checkpoint.json";

/// A checked destination for a training run's model folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputDir {
    path: PathBuf,
    overwrite: bool,
}

fn refuse(path: &Path, reason: impl Into<String>) -> TrainError {
    TrainError::Output(sbert_io::Error::Refused {
        path: path.to_path_buf(),
        reason: reason.into(),
    })
}

/// `path` made absolute and resolved as far as it exists (a missing tail is appended as is).
fn resolved(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut missing = Vec::new();
    let mut existing = absolute.as_path();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for part in missing.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_os_string());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

impl OutputDir {
    /// Checks that a training run may write its model folder to `path`; `inputs` are the
    /// files and folders the run reads (model folder, data files), which must survive it.
    ///
    /// # Errors
    /// [`sbert_io::Error::Refused`] (inside [`TrainError::Output`]) naming the reason, when
    /// `path` is a file, a protected folder, or a folder of other files without `overwrite`.
    pub fn new(path: impl AsRef<Path>, overwrite: bool, inputs: &[&Path]) -> Result<Self> {
        let out = Self {
            path: path.as_ref().to_path_buf(),
            overwrite,
        };
        let real = resolved(&out.path);
        let mut protected: Vec<(PathBuf, &str)> =
            vec![(PathBuf::from("/"), "the root of the file system")];
        if let Ok(cwd) = std::env::current_dir() {
            protected.push((resolved(&cwd), "the working directory or a folder above it"));
        }
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            protected.push((
                resolved(Path::new(&home)),
                "the home folder or a folder above it",
            ));
        }
        for input in inputs {
            protected.push((
                resolved(input),
                "an input of this run or a folder above one",
            ));
        }
        for (p, what) in &protected {
            if p.starts_with(&real) {
                return Err(refuse(&out.path, format!("it is {what}")));
            }
        }
        for input in inputs.iter().filter(|p| p.is_dir()) {
            if real.starts_with(resolved(input)) {
                return Err(refuse(
                    &out.path,
                    format!(
                        "it is inside {}, which the run reads (the saved copy would contain itself)",
                        input.display()
                    ),
                ));
            }
        }
        out.check()?;
        Ok(out)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the folder holds a checkpoint written by this crate.
    pub fn is_checkpoint(path: &Path) -> bool {
        path.join(MARKER).is_file()
    }

    /// Re-checks, right before a save, that replacing the folder is still allowed.
    pub(crate) fn check(&self) -> Result<()> {
        let path = &self.path;
        let meta = match std::fs::symlink_metadata(path) {
            Err(_) => return Ok(()),
            Ok(meta) => meta,
        };
        if !meta.is_dir() {
            return Err(refuse(path, "it exists and is not a folder"));
        }
        let empty = std::fs::read_dir(path)
            .map_err(|source| TrainError::Io {
                path: path.clone(),
                source,
            })?
            .next()
            .is_none();
        if empty || Self::is_checkpoint(path) || self.overwrite {
            return Ok(());
        }
        Err(refuse(
            path,
            format!(
                "the folder exists and is not an sbert checkpoint (it has no {MARKER}); choose a \
                 new folder, or pass --overwrite to replace it and everything in it"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_empty_or_own_folders_are_accepted() -> Result<()> {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        OutputDir::new(root.join("new/deeper"), false, &[])?;
        std::fs::create_dir(root.join("empty")).expect("mkdir");
        OutputDir::new(root.join("empty"), false, &[])?;

        let project = root.join("proj");
        std::fs::create_dir_all(project.join("src")).expect("mkdir");
        std::fs::write(project.join("src/main.rs"), "fn main() {}").expect("write");
        let err = OutputDir::new(&project, false, &[]).expect_err("user folder");
        assert!(err.to_string().contains("--overwrite"), "{err}");
        OutputDir::new(&project, true, &[])?;

        std::fs::write(project.join(MARKER), "{}").expect("write");
        OutputDir::new(&project, false, &[])?;

        std::fs::write(root.join("file"), "x").expect("write");
        assert!(OutputDir::new(root.join("file"), true, &[]).is_err());
        Ok(())
    }

    #[test]
    fn protected_folders_are_refused_even_with_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("models/base");
        std::fs::create_dir_all(&model).expect("mkdir");
        let data = dir.path().join("data/train.tsv");
        std::fs::create_dir_all(data.parent().expect("parent")).expect("mkdir");
        std::fs::write(&data, "x").expect("write");
        let inputs = [model.as_path(), data.as_path()];
        for bad in [
            PathBuf::from("/"),
            PathBuf::from("."),
            PathBuf::from(".."),
            model.clone(),
            dir.path().join("models"),
            dir.path().join("data"),
            dir.path().to_path_buf(),
            model.join("finetuned"),
        ] {
            let err = OutputDir::new(&bad, true, &inputs).expect_err("protected");
            assert!(
                matches!(err, TrainError::Output(sbert_io::Error::Refused { .. })),
                "{}: {err}",
                bad.display()
            );
        }
        assert!(OutputDir::new(dir.path().join("models/tuned"), true, &inputs).is_ok());
    }
}
