//! Resolving a model argument to a folder: a path, or an `owner/name` id in the Hugging Face
//! hub cache (feature `hf-hub`), downloaded when missing (feature `hf-hub-online`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The folder holding `model`: `model` itself when it is a folder, else (with `hf-hub`) the
/// snapshot of the hub id `model` (`owner/name`, optionally `@revision`) in `cache` or the
/// default cache.
pub(crate) fn resolve(model: &str, cache: Option<&Path>) -> Result<PathBuf> {
    let path = Path::new(model);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    if path.exists() {
        return Err(Error::InvalidArgument(format!(
            "{model} is a file; pass the model folder"
        )));
    }
    #[cfg(feature = "hf-hub")]
    if looks_like_hub_id(model) {
        return cache::resolve(model, cache);
    }
    let _ = cache;
    Err(Error::ModelNotFound(model.to_string()))
}

/// `owner/name` or `name`, without path-like parts.
#[cfg(feature = "hf-hub")]
fn looks_like_hub_id(model: &str) -> bool {
    let id = model.split('@').next().unwrap_or_default();
    let parts: Vec<&str> = id.split('/').collect();
    !id.is_empty()
        && parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

#[cfg(feature = "hf-hub")]
mod cache {
    use super::*;
    use hf_hub::{Cache, Repo, RepoType};

    /// The cache root: the given folder, `$HF_HUB_CACHE`, `$HF_HOME/hub`, or
    /// `~/.cache/huggingface/hub` (what the Python hub library reads too).
    fn cache(dir: Option<&Path>) -> Cache {
        match dir {
            Some(d) => Cache::new(d.to_path_buf()),
            None => match std::env::var_os("HF_HUB_CACHE") {
                Some(d) => Cache::new(PathBuf::from(d)),
                None => Cache::from_env(),
            },
        }
    }

    fn repo(model: &str) -> Repo {
        match model.split_once('@') {
            Some((id, rev)) => {
                Repo::with_revision(id.to_string(), RepoType::Model, rev.to_string())
            }
            None => Repo::model(model.to_string()),
        }
    }

    /// Whether `rev` is a full commit hash (40 hex digits), which names a snapshot folder
    /// directly instead of going through `refs/`.
    fn is_commit(rev: &str) -> bool {
        rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
    }

    pub(super) fn resolve(model: &str, dir: Option<&Path>) -> Result<PathBuf> {
        let cache = cache(dir);
        if let Some((_, rev)) = model.split_once('@').filter(|(_, rev)| is_commit(rev)) {
            // The hub cache keeps a pinned commit's files in snapshots/<commit>/ with no ref
            // pointing at it (what huggingface_hub does for `revision=<sha>`).
            let snapshot = cache
                .path()
                .join(repo(model).folder_name())
                .join("snapshots")
                .join(rev.to_ascii_lowercase());
            if ["modules.json", "config.json"]
                .iter()
                .any(|m| snapshot.join(m).is_file())
            {
                return Ok(snapshot);
            }
        }
        let cached = cache.repo(repo(model));
        // A sentence-transformers repo has modules.json; a plain HF one only config.json.
        for marker in ["modules.json", "config.json"] {
            if let Some(file) = cached.get(marker) {
                if let Some(snapshot) = file.parent() {
                    return Ok(snapshot.to_path_buf());
                }
            }
        }
        download(model, cache)
    }

    #[cfg(not(feature = "hf-hub-online"))]
    fn download(model: &str, _cache: Cache) -> Result<PathBuf> {
        Err(Error::ModelNotFound(model.to_string()))
    }

    /// Fetches the files the loader reads into the cache and returns the snapshot folder.
    #[cfg(feature = "hf-hub-online")]
    fn download(model: &str, cache: Cache) -> Result<PathBuf> {
        use crate::folder::{read_modules, ModuleEntry};
        let api = hf_hub::api::sync::ApiBuilder::from_cache(cache)
            .build()
            .map_err(|source| Error::Hub {
                model: model.to_string(),
                file: String::new(),
                source,
            })?;
        let repo = api.repo(self::repo(model));
        let get = |file: &str| {
            repo.get(file).map_err(|source| Error::Hub {
                model: model.to_string(),
                file: file.to_string(),
                source,
            })
        };
        let (snapshot, modules) = match get("modules.json") {
            Ok(path) => {
                let snapshot = path.parent().map(Path::to_path_buf).unwrap_or_default();
                let modules = read_modules(&snapshot)?.unwrap_or_default();
                (snapshot, modules)
            }
            Err(_) => {
                let path = get("config.json")?;
                let snapshot = path.parent().map(Path::to_path_buf).unwrap_or_default();
                let transformer = ModuleEntry {
                    idx: 0,
                    name: "0".into(),
                    path: String::new(),
                    kind: "sentence_transformers.models.Transformer".into(),
                };
                (snapshot, vec![transformer])
            }
        };
        for module in &modules {
            let prefix = if module.path.is_empty() {
                String::new()
            } else {
                format!("{}/", module.path)
            };
            let (required, optional): (&[&str], &[&str]) = match module.class() {
                "Transformer" | "BERT" => (
                    &["config.json", "model.safetensors", "tokenizer.json"],
                    &["sentence_bert_config.json"],
                ),
                "Pooling" | "Dense" => (&["config.json"], &["model.safetensors"]),
                _ => (&[], &[]),
            };
            for file in required {
                get(&format!("{prefix}{file}"))?;
            }
            for file in optional {
                let _ = get(&format!("{prefix}{file}"));
            }
        }
        Ok(snapshot)
    }
}

#[cfg(all(test, feature = "hf-hub"))]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_are_told_from_paths() {
        assert!(looks_like_hub_id("sentence-transformers/all-MiniLM-L6-v2"));
        assert!(looks_like_hub_id("bert-base-uncased"));
        assert!(looks_like_hub_id("org/model@v1.0"));
        assert!(!looks_like_hub_id("./models/x"));
        assert!(!looks_like_hub_id("/abs/path"));
        assert!(!looks_like_hub_id("a/b/c"));
    }
}
