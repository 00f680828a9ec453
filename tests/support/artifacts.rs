//! Per-test scratch directories that survive a failing test, for diagnostics.

use std::io;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// Set this environment variable (to anything) to keep every [`Artifacts`] directory.
pub const KEEP_ENV: &str = "MCP_TEST_KEEP_ARTIFACTS";

/// A temporary directory for logs and result files. It is deleted when dropped, unless the
/// thread is panicking (a failing test), [`KEEP_ENV`] is set, or [`Artifacts::keep`] was called;
/// a kept directory's path is printed on stderr.
#[derive(Debug)]
pub struct Artifacts {
    dir: Option<TempDir>,
    path: PathBuf,
}

impl Artifacts {
    /// Creates `parent/<prefix>XXXXXX` (and `parent` if needed).
    pub fn new_in(parent: impl AsRef<Path>, prefix: &str) -> io::Result<Self> {
        std::fs::create_dir_all(parent.as_ref())?;
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(parent)?;
        let path = dir.path().to_path_buf();
        Ok(Self { dir: Some(dir), path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory on disk after the test; returns its path.
    pub fn keep(mut self) -> PathBuf {
        self.persist();
        self.path.clone()
    }

    fn persist(&mut self) {
        if let Some(dir) = self.dir.take() {
            let path = dir.keep();
            eprintln!("test artifacts kept in {}", path.display());
        }
    }
}

impl Drop for Artifacts {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os(KEEP_ENV).is_some() {
            self.persist();
        }
    }
}
