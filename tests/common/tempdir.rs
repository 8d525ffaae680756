//! The tests' one temporary directory type, shared by every suite (also
//! tests/images_support and tests/job/support, which include this file alone).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The tests' one temporary directory: `$TMPDIR/labkit-test-PID-N-TAG`,
/// created empty and removed with everything in it when dropped, which also
/// happens while a failing test unwinds. A directory that cannot be removed
/// is reported on stderr with the error, never left behind silently.
pub struct TempDir {
    path: PathBuf,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("labkit-test-{}-{n}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel.trim_start_matches('/'))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // LABKIT_KEEP_SCRATCH=1 keeps every test directory for a look afterwards.
        if std::env::var_os("LABKIT_KEEP_SCRATCH").is_some() {
            return;
        }
        if fs::remove_dir_all(&self.path).is_ok() || !self.path.exists() {
            return;
        }
        // A test may leave directories without write or search permission
        // (a non-root run cannot remove their entries): open them up, retry.
        let _ = Command::new("chmod").arg("-R").arg("u+rwx").arg(&self.path).status();
        if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("warning: cannot remove the test directory {}: {e}; remove it by hand", self.path.display());
        }
    }
}
