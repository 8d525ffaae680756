//! Where the family's files live inside a repository: `images/manifest.toml`,
//! `images/lock.toml`, `images/templates/`, the committed output tree
//! `images/generated/` (Dockerfiles and Python locks), the image tests, the
//! directories shipped into build contexts, and the scratch space under
//! `build/images/`. A leaf: paths only, no parsing.

use std::path::{Path, PathBuf};

/// File name of a target's Python lock, beside its Dockerfile.
pub const LOCK_FILE: &str = "requirements.lock";

/// Repository directories shipped in every build context, and their names
/// there.
pub const SHIPPED_DIRS: [(&str, &str); 3] =
    [("setup_steps", "setup_steps"), ("services", "services"), ("images/files", "files")];

/// The repository root every command works in. Every command takes it
/// explicitly so tests work on copies and never on the host.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }

    /// Finds the repository root: the nearest ancestor of `start` that holds
    /// `images/manifest.toml`.
    pub fn discover(start: &Path) -> Option<Self> {
        start.ancestors().find(|d| d.join("images/manifest.toml").is_file()).map(Layout::new)
    }

    pub(crate) fn manifest(&self) -> PathBuf {
        self.root.join("images/manifest.toml")
    }
    pub(crate) fn lock(&self) -> PathBuf {
        self.root.join("images/lock.toml")
    }
    pub(crate) fn templates(&self) -> PathBuf {
        self.root.join("images/templates")
    }
    /// The committed output tree owned by `labkit render`.
    pub(crate) fn generated(&self) -> PathBuf {
        self.root.join("images/generated")
    }
    /// The family's image tests (`images/tests/<image>/`).
    pub(crate) fn tests(&self) -> PathBuf {
        self.root.join("images/tests")
    }
    /// Relative path (from the output tree) of a target's Dockerfile.
    pub(crate) fn dockerfile_rel(image: &str, variant: &str) -> PathBuf {
        PathBuf::from(image).join(variant).join("Dockerfile")
    }
    /// Scratch space for builds: staged context and logs. Not committed.
    pub fn work(&self) -> PathBuf {
        self.root.join("build/images")
    }
}

/// Relative path (from the repository root) of a target's committed
/// Dockerfile, `/`-separated.
pub(crate) fn dockerfile_path(image: &str, variant: &str) -> String {
    format!("images/generated/{image}/{variant}/Dockerfile")
}

/// Relative path (from the repository root) of a target's Python lock file.
pub(crate) fn lock_rel(image: &str, variant: &str) -> String {
    format!("images/generated/{image}/{variant}/{LOCK_FILE}")
}

/// Whether `rel` (a path inside the output tree) is a Python lock.
pub(crate) fn is_lock_path(rel: &str) -> bool {
    rel.ends_with(&format!("/{LOCK_FILE}"))
}

/// Path relative to `root` with `/` separators, for messages and headers.
pub(crate) fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).to_string_lossy().replace('\\', "/")
}

/// Files under `dir`, as sorted `/`-separated relative paths (none when
/// `dir` does not exist).
pub(crate) fn list_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| rel(dir, e.path()))
        .collect();
    v.sort();
    v
}
