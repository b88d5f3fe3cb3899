//! File-system steps the data directory, snapshots, backups and the tools
//! share: replacing a file atomically and durably, syncing a directory, and
//! [`FsError`], the error that says which step failed on which path.

use std::path::{Path, PathBuf};

/// A file-system call that failed: what was being done, on which path, and
/// the operating system's error (whose kind tells a full disk apart).
#[derive(Debug)]
pub struct FsError {
    /// The step, as the message names it ("write", "cannot read", ...);
    /// empty: the message is the path and the error alone.
    pub op: &'static str,
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl FsError {
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> FsError {
        FsError { op, path: path.into(), source }
    }

    /// For `map_err`: `File::open(&p).map_err(FsError::at("cannot open", &p))`.
    pub fn at<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FsError + 'a {
        move |source| FsError::new(op, path, source)
    }

    /// The disk (or the user's quota on it) is full.
    pub fn is_disk_full(&self) -> bool {
        is_disk_full(&self.source)
    }
}

/// An I/O error that means no space was left to write.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        if self.op.is_empty() {
            write!(f, "{}: {}", self.path.display(), self.source)
        } else {
            write!(f, "{} {}: {}", self.op, self.path.display(), self.source)
        }
    }
}

impl std::error::Error for FsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// fsync a directory, so the entries created, renamed or removed in it last.
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(FsError::at("sync directory", dir))
}

/// Replace `path` atomically and durably: temporary file, fsync, rename,
/// fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(FsError::at("write", path))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_step_and_the_path() {
        let e = FsError::new("write", "/d/MANIFEST", std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(e.to_string().starts_with("write /d/MANIFEST: "), "{e}");
        assert!(e.is_disk_full());
        let e = FsError::new("", "/d/x", std::io::Error::from_raw_os_error(libc::EDQUOT));
        assert!(e.to_string().starts_with("/d/x: "), "{e}");
        assert!(e.is_disk_full());
        assert!(!FsError::new("", "/d/x", std::io::Error::from_raw_os_error(libc::EIO)).is_disk_full());
    }
}
