//! Writing files and folders without losing what was there.
//!
//! Every writer here keeps three promises:
//!
//! * **Nothing is half-written.** A regular file is written to a temporary file with a unique
//!   name in the same folder and renamed over the target only when complete; two runs writing
//!   the same path never share a temporary, so the target ends up as one run's whole output.
//! * **Nothing else is touched.** A symbolic link is written through (its target is replaced,
//!   the link stays); a file with several hard links is rewritten in place after the new
//!   content is complete, so every link sees it; the replaced file's permissions (and, where
//!   allowed, its owner) carry over. Character devices and FIFOs (`/dev/null`, a named pipe)
//!   are written directly; block devices, sockets and folders are refused.
//! * **Temporaries do not outlive the run.** They are removed when a writer is dropped
//!   unfinished, and [`remove_temporaries`] removes the ones still registered, for a signal
//!   handler to call before the process exits (the `sbert` binary does so on Ctrl-C and
//!   SIGTERM).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::{Error, Result};

/// Temporaries that exist right now, for [`remove_temporaries`].
static TEMPORARIES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// Makes temporary names unique within the process (the pid makes them unique across).
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn register(path: &Path) {
    if let Ok(mut list) = TEMPORARIES.lock() {
        list.push(path.to_path_buf());
    }
}

fn unregister(path: &Path) {
    if let Ok(mut list) = TEMPORARIES.lock() {
        list.retain(|p| p != path);
    }
}

/// Removes every temporary file or folder that a writer of this module created and has not
/// yet moved into place or cleaned up. For signal handlers and other abrupt exits; returns how
/// many were removed.
pub fn remove_temporaries() -> usize {
    let list = match TEMPORARIES.lock() {
        Ok(mut list) => std::mem::take(&mut *list),
        Err(_) => return 0,
    };
    list.iter()
        .filter(|p| {
            if p.is_dir() {
                std::fs::remove_dir_all(p).is_ok()
            } else {
                std::fs::remove_file(p).is_ok()
            }
        })
        .count()
}

/// Whether `name` (a file name) is one of this module's temporaries: a half-written file or a
/// staged folder that a copy of the folder around it should leave out.
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(".sbert-")
}

/// A name beside `target` that no other writer (in this or another process) uses:
/// `.NAME.PID-N.sbert-tmp`. Hidden, so that a listing does not show a half-written file.
fn temporary_beside(target: &Path, tag: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let file = format!(".{name}.{}-{n}.sbert-{tag}", std::process::id());
    target.with_file_name(file)
}

fn write_error(path: &Path, source: std::io::Error) -> Error {
    Error::Write {
        path: path.to_path_buf(),
        source,
    }
}

fn refuse(path: &Path, reason: impl Into<String>) -> Error {
    Error::Refused {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// What writing to a path means, decided before anything is written.
#[derive(Debug)]
enum Target {
    /// No file there yet: write a temporary, rename it into place.
    New(PathBuf),
    /// A regular file with one link: write a temporary with its permissions, rename over it.
    Replace(PathBuf, std::fs::Metadata),
    /// A regular file with several hard links: write a temporary, then copy it into the file.
    InPlace(PathBuf),
    /// A character device or FIFO: write straight to it.
    Direct(PathBuf),
}

fn classify(path: &Path) -> Result<Target> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Target::New(path.to_path_buf()))
        }
        Err(e) => return Err(write_error(path, e)),
        Ok(meta) => meta,
    };
    if meta.file_type().is_symlink() {
        // Written through: the link stays, what it points at gets the new content.
        return match std::fs::canonicalize(path) {
            Ok(real) => classify(&real),
            Err(_) => Err(refuse(
                path,
                "it is a symbolic link to a missing file (create the target first, or remove the link)",
            )),
        };
    }
    if meta.is_dir() {
        return Err(refuse(path, "it is a folder"));
    }
    if meta.is_file() {
        return Ok(if links(&meta) > 1 {
            Target::InPlace(path.to_path_buf())
        } else {
            Target::Replace(path.to_path_buf(), meta)
        });
    }
    if is_char_device_or_fifo(&meta) {
        return Ok(Target::Direct(path.to_path_buf()));
    }
    Err(refuse(
        path,
        "it is a block device or socket; only regular files, character devices and FIFOs are written",
    ))
}

#[cfg(unix)]
fn links(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::nlink(meta)
}

#[cfg(not(unix))]
fn links(_: &std::fs::Metadata) -> u64 {
    1
}

#[cfg(unix)]
fn is_char_device_or_fifo(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_char_device() || meta.file_type().is_fifo()
}

#[cfg(not(unix))]
fn is_char_device_or_fifo(_: &std::fs::Metadata) -> bool {
    false
}

/// Gives the temporary `tmp` the permissions and owner of the file it will replace.
fn copy_permissions(tmp: &Path, old: &std::fs::Metadata) -> Result<()> {
    std::fs::set_permissions(tmp, old.permissions()).map_err(|e| write_error(tmp, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // Only a privileged process may give a file away; otherwise the new file is ours,
        // which is what a plain rewrite by this user would give as well.
        let _ = std::os::unix::fs::chown(tmp, Some(old.uid()), Some(old.gid()));
    }
    Ok(())
}

/// Creates the temporary beside `target`, registered for clean-up.
fn create_temporary(target: &Path) -> Result<(PathBuf, File)> {
    loop {
        let tmp = temporary_beside(target, "tmp");
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => {
                register(&tmp);
                return Ok((tmp, file));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(write_error(target, e)),
        }
    }
}

/// A file being written; see the [module docs](self) for what it promises. Call
/// [`OutputFile::finish`] to put it in place: dropping it unfinished removes the temporary and
/// leaves the target as it was.
#[derive(Debug)]
pub struct OutputFile {
    writer: BufWriter<File>,
    target: Target,
    /// The temporary being written, for targets written through one.
    tmp: Option<PathBuf>,
}

impl OutputFile {
    /// Opens `path` for writing.
    ///
    /// # Errors
    /// When `path` is a folder, a block device, a socket or a dangling symbolic link, or the
    /// temporary cannot be created (a missing folder, no permission).
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let target = classify(path)?;
        let (file, tmp) = match &target {
            Target::Direct(p) => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(p)
                    .map_err(|e| write_error(p, e))?;
                (file, None)
            }
            Target::New(p) | Target::InPlace(p) | Target::Replace(p, _) => {
                let (tmp, file) = create_temporary(p)?;
                if let Target::Replace(_, meta) = &target {
                    if let Err(e) = copy_permissions(&tmp, meta) {
                        let _ = std::fs::remove_file(&tmp);
                        unregister(&tmp);
                        return Err(e);
                    }
                }
                (file, Some(tmp))
            }
        };
        Ok(Self {
            writer: BufWriter::with_capacity(1 << 16, file),
            target,
            tmp,
        })
    }

    /// The path the content ends up at (a symbolic link's target, resolved).
    pub fn path(&self) -> &Path {
        match &self.target {
            Target::New(p) | Target::Replace(p, _) | Target::InPlace(p) | Target::Direct(p) => p,
        }
    }

    /// Flushes, syncs and moves the content into place.
    ///
    /// # Errors
    /// When a write fails (a full disk included); the target is then as it was before, except
    /// for a device or FIFO, which got what was written before the failure.
    pub fn finish(mut self) -> Result<()> {
        let target = self.path().to_path_buf();
        self.writer.flush().map_err(|e| write_error(&target, e))?;
        let Some(tmp) = self.tmp.clone() else {
            return Ok(());
        };
        let file = self.writer.get_ref();
        file.sync_all().map_err(|e| write_error(&target, e))?;
        match &self.target {
            Target::InPlace(path) => {
                let mut src = File::open(&tmp).map_err(|e| write_error(&tmp, e))?;
                let mut dst = OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(path)
                    .map_err(|e| write_error(path, e))?;
                std::io::copy(&mut src, &mut dst).map_err(|e| write_error(path, e))?;
                dst.sync_all().map_err(|e| write_error(path, e))?;
                std::fs::remove_file(&tmp).map_err(|e| write_error(&tmp, e))?;
            }
            _ => std::fs::rename(&tmp, &target).map_err(|e| write_error(&target, e))?,
        }
        unregister(&tmp);
        self.tmp = None;
        Ok(())
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = std::fs::remove_file(&tmp);
            unregister(&tmp);
        }
    }
}

/// Writes `bytes` to `path` through an [`OutputFile`].
///
/// # Errors
/// As [`OutputFile::create`] and [`OutputFile::finish`].
pub fn write_file(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let mut out = OutputFile::create(path)?;
    out.write_all(bytes)
        .map_err(|e| write_error(out.path(), e))?;
    out.finish()
}

/// A folder being assembled beside its final place: a hidden, uniquely named sibling of the
/// target, registered for [`remove_temporaries`] and removed when dropped uncommitted.
#[derive(Debug)]
pub struct StagedDir {
    staged: Option<PathBuf>,
    target: PathBuf,
}

impl StagedDir {
    /// Creates the staging folder for `target` (whose parent is created when missing).
    ///
    /// # Errors
    /// When the folder cannot be created.
    pub fn new(target: impl AsRef<Path>) -> Result<Self> {
        let target = target.as_ref().to_path_buf();
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| write_error(parent, e))?;
        }
        recover_interrupted_commit(&target)?;
        loop {
            let staged = temporary_beside(&target, "staging");
            match std::fs::create_dir(&staged) {
                Ok(()) => {
                    register(&staged);
                    return Ok(Self {
                        staged: Some(staged),
                        target,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(write_error(&target, e)),
            }
        }
    }

    /// The staging folder to write into.
    pub fn path(&self) -> &Path {
        self.staged
            .as_deref()
            .expect("a StagedDir holds its folder until commit")
    }

    /// Moves the staged folder to the target. A folder already at the target is swapped with
    /// it in one atomic step where the system has one (Linux's `renameat2(RENAME_EXCHANGE)`),
    /// then removed: at every instant the target is the old folder or the new one, whole.
    /// Elsewhere the old folder is moved aside first and removed once the new one is in place;
    /// a crash between those two renames leaves the target missing and the old folder beside
    /// it under a hidden name, which [`StagedDir::new`] for the same target moves back.
    /// Whether the old folder may be replaced is the caller's decision, made before staging.
    ///
    /// # Errors
    /// When a rename fails (the target is then as it was).
    pub fn commit(mut self) -> Result<()> {
        let staged = self.path().to_path_buf();
        let target = self.target.clone();
        let exists = std::fs::symlink_metadata(&target).is_ok();
        if exists && exchange(&staged, &target).is_ok() {
            // `staged` now names the old folder.
            unregister(&staged);
            self.staged = None;
            return std::fs::remove_dir_all(&staged).map_err(|e| write_error(&staged, e));
        }
        let old = if exists {
            let old = temporary_beside(&target, "old");
            std::fs::rename(&target, &old).map_err(|e| write_error(&target, e))?;
            Some(old)
        } else {
            None
        };
        if let Err(e) = std::fs::rename(&staged, &target) {
            if let Some(old) = &old {
                let _ = std::fs::rename(old, &target);
            }
            return Err(write_error(&target, e));
        }
        unregister(&staged);
        self.staged = None;
        if let Some(old) = old {
            std::fs::remove_dir_all(&old).map_err(|e| write_error(&old, e))?;
        }
        Ok(())
    }
}

/// Swaps two paths atomically. The one `unsafe` of this crate: the system call, which std
/// does not wrap.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(a.as_os_str().as_bytes())?;
    let b = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both pointers are NUL-terminated strings that outlive the call; the syscall
    // reads them and touches no other memory.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// No atomic exchange here: [`StagedDir::commit`] falls back to two renames.
#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// Where a commit of two renames stopped between them (the target gone, the old folder
/// beside it as `.NAME.*.sbert-old`), moves the old folder back; returns whether it did.
fn recover_interrupted_commit(target: &Path) -> Result<bool> {
    if std::fs::symlink_metadata(target).is_ok() {
        return Ok(false);
    }
    let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
        return Ok(false);
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Ok(false);
    };
    for entry in entries.flatten() {
        let n = entry.file_name().to_string_lossy().into_owned();
        if n.starts_with(&prefix) && n.ends_with(".sbert-old") && entry.path().is_dir() {
            std::fs::rename(entry.path(), target).map_err(|e| write_error(target, e))?;
            return Ok(true);
        }
    }
    Ok(false)
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if let Some(staged) = self.staged.take() {
            let _ = std::fs::remove_dir_all(&staged);
            unregister(&staged);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `remove_temporaries` is process-wide: the tests of this module take turns.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).expect("read")
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_dropped_writer_leaves_the_old_file_and_no_temporary() -> Result<()> {
        let _serial = serial();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "old").expect("write");
        let mut out = OutputFile::create(&path)?;
        out.write_all(b"new, unfinished").expect("write");
        drop(out);
        assert_eq!(read(&path), "old");
        assert_eq!(entries(dir.path()), vec!["out.txt"]);
        write_file(&path, b"new")?;
        assert_eq!(read(&path), "new");
        assert_eq!(entries(dir.path()), vec!["out.txt"]);
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn permissions_symlinks_and_hard_links_survive() -> Result<()> {
        let _serial = serial();
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real.txt");
        std::fs::write(&real, "old").expect("write");
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let hard = dir.path().join("hard.txt");
        std::fs::hard_link(&real, &hard).expect("hard link");

        write_file(&link, b"through the link")?;
        assert!(std::fs::symlink_metadata(&link)
            .expect("meta")
            .file_type()
            .is_symlink());
        assert_eq!(read(&real), "through the link");
        assert_eq!(read(&hard), "through the link", "the hard link sees it");
        let meta = std::fs::metadata(&real).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.nlink(), 2);

        std::fs::remove_file(&hard).expect("unlink");
        write_file(&real, b"replaced")?;
        assert_eq!(
            std::fs::metadata(&real).expect("meta").permissions().mode() & 0o777,
            0o600
        );

        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("missing"), &dangling).expect("symlink");
        assert!(matches!(
            OutputFile::create(&dangling),
            Err(Error::Refused { .. })
        ));
        assert!(matches!(
            OutputFile::create(dir.path()),
            Err(Error::Refused { .. })
        ));
        Ok(())
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn devices_are_written_directly_and_a_full_disk_is_an_error() -> Result<()> {
        let _serial = serial();
        use std::os::unix::fs::FileTypeExt;
        write_file("/dev/null", b"discarded")?;
        assert!(std::fs::metadata("/dev/null")
            .expect("meta")
            .file_type()
            .is_char_device());
        if Path::new("/dev/full").exists() {
            let err = write_file("/dev/full", &[0u8; 1 << 17]).expect_err("disk full");
            assert!(matches!(err, Error::Write { .. }), "{err}");
        }
        Ok(())
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_fifo_is_written_directly_and_stays_a_fifo() -> Result<()> {
        use std::os::unix::fs::FileTypeExt;
        let _serial = serial();
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read_to_string(fifo).expect("read fifo"))
        };
        write_file(&fifo, b"through the pipe")?;
        assert_eq!(reader.join().expect("reader"), "through the pipe");
        assert!(std::fs::metadata(&fifo)
            .expect("meta")
            .file_type()
            .is_fifo());
        assert_eq!(entries(dir.path()), vec!["pipe"]);
        Ok(())
    }

    #[test]
    fn temporaries_are_unique_and_removed_on_demand() -> Result<()> {
        let _serial = serial();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.jsonl");
        let mut a = OutputFile::create(&path)?;
        let mut b = OutputFile::create(&path)?;
        a.write_all(b"a\n").expect("write");
        b.write_all(b"b\n").expect("write");
        let staged = StagedDir::new(dir.path().join("ckpt"))?;
        std::fs::write(staged.path().join("f"), "x").expect("write");
        assert_eq!(
            entries(dir.path()).len(),
            3,
            "two files and one folder staged"
        );
        assert!(remove_temporaries() >= 3);
        assert!(entries(dir.path()).is_empty());
        drop((a, b, staged));
        Ok(())
    }

    #[test]
    fn a_staged_folder_replaces_the_old_one_only_on_commit() -> Result<()> {
        let _serial = serial();
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("ckpt");
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::write(target.join("old"), "1").expect("write");
        let staged = StagedDir::new(&target)?;
        std::fs::write(staged.path().join("new"), "2").expect("write");
        drop(staged);
        assert_eq!(entries(&target), vec!["old"]);
        let staged = StagedDir::new(&target)?;
        std::fs::write(staged.path().join("new"), "2").expect("write");
        staged.commit()?;
        assert_eq!(entries(&target), vec!["new"]);
        assert_eq!(entries(dir.path()), vec!["ckpt"]);
        Ok(())
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_exchange_swaps_two_folders_in_one_step() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a).expect("mkdir");
        std::fs::create_dir(&b).expect("mkdir");
        std::fs::write(a.join("from-a"), "").expect("write");
        exchange(&a, &b).expect("tmpfs and ext4 have RENAME_EXCHANGE");
        assert_eq!(entries(&b), vec!["from-a"]);
        assert!(entries(&a).is_empty());
    }

    #[test]
    fn a_commit_cut_between_its_two_renames_is_undone_by_the_next_stage() -> Result<()> {
        let _serial = serial();
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("ckpt");
        // What a crash after the first of the two renames leaves: no target, the old folder
        // beside it under its hidden name.
        let aside = dir.path().join(".ckpt.123-0.sbert-old");
        std::fs::create_dir(&aside).expect("mkdir");
        std::fs::write(aside.join("weights"), "old").expect("write");
        let staged = StagedDir::new(&target)?;
        assert_eq!(entries(&target), vec!["weights"], "the old folder is back");
        drop(staged);
        assert_eq!(entries(dir.path()), vec!["ckpt"]);
        Ok(())
    }
}
