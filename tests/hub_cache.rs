//! Hub ids resolve offline from a cache laid out the way hf-hub (and Python's
//! huggingface_hub) write it: `models--owner--name/{refs/main, snapshots/<rev>/…, blobs/…}`.

use std::path::Path;

use sbert::SentenceEmbedder;

use crate::common;

/// Lays `src` out as the snapshot `rev` of `models--owner--name`, each file a symlink to a
/// blob, as the hub cache does.
fn lay_out_cache(cache: &Path, id: &str, rev: &str, src: &Path) {
    let repo = cache.join(format!("models--{}", id.replace('/', "--")));
    std::fs::create_dir_all(repo.join("refs")).expect("mkdir");
    std::fs::write(repo.join("refs/main"), rev).expect("ref");
    let snapshot = repo.join("snapshots").join(rev);
    let blobs = repo.join("blobs");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let mut n = 0;
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            n += 1;
            let blob = blobs.join(format!("blob{n:04}"));
            std::fs::copy(&path, &blob).expect("copy");
            let rel = path.strip_prefix(src).expect("prefix");
            let link = snapshot.join(rel);
            std::fs::create_dir_all(link.parent().expect("parent")).expect("mkdir");
            #[cfg(unix)]
            std::os::unix::fs::symlink(&blob, &link).expect("symlink");
            #[cfg(not(unix))]
            std::fs::copy(&blob, &link).expect("copy");
        }
    }
}

#[test]
fn hub_id_resolves_offline_from_the_cache() {
    let cache = tempfile::tempdir().expect("tempdir");
    lay_out_cache(
        cache.path(),
        "sbert-test/tiny",
        "0123456789abcdef",
        &common::tiny_dir(),
    );

    let from_hub = SentenceEmbedder::builder("sbert-test/tiny")
        .hf_cache_dir(cache.path())
        .build()
        .expect("resolve from the cache");
    assert!(from_hub.dir().ends_with("snapshots/0123456789abcdef"));
    let from_dir =
        SentenceEmbedder::from_dir(common::tiny_dir(), &sbert::Device::Cpu).expect("load");
    let texts = ["the cat sat on the mat", "hello world"];
    assert_eq!(
        from_hub.embed(&texts).expect("embed").to_vecs(),
        from_dir.embed(&texts).expect("embed").to_vecs()
    );

    // A revision pinned to a full commit hash names its snapshot folder directly (no ref
    // points at it), as huggingface_hub resolves `revision=<sha>`.
    let commit = "0123456789abcdef0123456789abcdef01234567";
    lay_out_cache(
        cache.path(),
        "sbert-test/pinned",
        commit,
        &common::tiny_dir(),
    );
    let repo = cache.path().join("models--sbert-test--pinned");
    std::fs::write(
        repo.join("refs/main"),
        "ffffffffffffffffffffffffffffffffffffffff",
    )
    .expect("ref elsewhere");
    let pinned = SentenceEmbedder::builder(format!("sbert-test/pinned@{commit}"))
        .hf_cache_dir(cache.path())
        .build()
        .expect("pinned commit");
    assert!(pinned.dir().ends_with(format!("snapshots/{commit}")));

    // An id the cache does not hold is a clear error naming it (no network in tests).
    let err = SentenceEmbedder::builder("sbert-test/absent")
        .hf_cache_dir(cache.path())
        .build()
        .expect_err("absent");
    assert!(err.to_string().contains("sbert-test/absent"), "{err}");
}
