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

    /// Lists `files` (paths relative to the folder, `/`-separated) in the checkpoint's marker
    /// as files of the checkpoint: for what a run writes beside the saved model (a training
    /// log, a chart), so that the next run into this folder may replace them.
    ///
    /// A folder that holds no checkpoint (nothing was saved) is left as it is.
    ///
    /// # Errors
    /// When the marker cannot be read or rewritten.
    pub fn adopt(&self, files: &[&str]) -> Result<()> {
        let marker = self.path.join(MARKER);
        if !marker.is_file() {
            return Ok(());
        }
        let io = |source| TrainError::Io {
            path: marker.clone(),
            source,
        };
        let mut record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&marker).map_err(io)?)
                .map_err(|e| io(std::io::Error::other(e)))?;
        let mut listed = listed_files(&record);
        for f in files {
            if !listed.iter().any(|l| l == f) {
                listed.push((*f).to_string());
            }
        }
        listed.sort();
        record["files"] = serde_json::json!(listed);
        let bytes = serde_json::to_vec_pretty(&record).map_err(|e| io(std::io::Error::other(e)))?;
        sbert_io::output::write_file(&marker, &bytes)?;
        Ok(())
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
        if empty || self.overwrite {
            return Ok(());
        }
        if Self::is_checkpoint(path) {
            let added = files_not_in_checkpoint(path)?;
            if added.is_empty() {
                return Ok(());
            }
            let shown: Vec<&str> = added.iter().take(5).map(String::as_str).collect();
            return Err(refuse(
                path,
                format!(
                    "the checkpoint folder holds files it did not write ({}{}); saving would \
                     delete them: move them, choose a new folder, or pass --overwrite",
                    shown.join(", "),
                    if added.len() > shown.len() {
                        ", …"
                    } else {
                        ""
                    }
                ),
            ));
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

/// Every file under `dir`, as `/`-separated paths relative to it, sorted; the marker and the
/// temporaries of `sbert_io` writers left out.
pub(crate) fn files_under(dir: &Path) -> Result<Vec<String>> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
        let entries = std::fs::read_dir(dir).map_err(|source| TrainError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| TrainError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if (rel.is_empty() && name == MARKER) || sbert_io::output::is_temporary(&name) {
                continue;
            }
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&entry.path(), &path, out)?;
            } else {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    out.sort();
    Ok(out)
}

/// The `files` a marker record lists (none for a marker without a list).
fn listed_files(record: &serde_json::Value) -> Vec<String> {
    record
        .get("files")
        .and_then(|f| serde_json::from_value(f.clone()).ok())
        .unwrap_or_default()
}

/// The files of checkpoint folder `dir` that its marker does not list (all of them for a
/// marker without a list).
fn files_not_in_checkpoint(dir: &Path) -> Result<Vec<String>> {
    let marker = dir.join(MARKER);
    let listed = std::fs::read(&marker)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .map(|record| listed_files(&record))
        .unwrap_or_default();
    Ok(files_under(dir)?
        .into_iter()
        .filter(|f| !listed.contains(f))
        .collect())
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

        // A checkpoint whose marker lists its files may be replaced...
        std::fs::write(project.join(MARKER), r#"{"files": ["src/main.rs"]}"#).expect("write");
        OutputDir::new(&project, false, &[])?;
        // ...but not once a user has added a file to it (saving would delete it).
        std::fs::write(project.join("notes.md"), "mine").expect("write");
        let err = OutputDir::new(&project, false, &[]).expect_err("a user's file");
        assert!(err.to_string().contains("notes.md"), "{err}");
        OutputDir::new(&project, true, &[])?;
        // A marker without a list vouches for nothing.
        std::fs::remove_file(project.join("notes.md")).expect("rm");
        std::fs::write(project.join(MARKER), "{}").expect("write");
        assert!(OutputDir::new(&project, false, &[]).is_err());

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
