//! Python lock files: one resolution of every image's Python requirements per
//! variant, split into one `requirements.lock` per (image, variant) next to
//! its Dockerfile.
//!
//! The requirements are the manifest's `python` lists (`{key}` is replaced by
//! the variant's `values.key`). For each variant, `labkit lock` hands the
//! requirements of *all* its images to one `uv pip compile` run (the
//! variant's `values.python` and `values.python_platform`, hashes, wheels
//! only), so every package has exactly one version in the whole family and a
//! child never changes what its parent installed. The result is split along
//! the image tree: an image's lock holds the packages its own and its
//! ancestors' requirements need (followed through uv's `# via` annotations)
//! minus what the ancestors' locks already hold.
//!
//! Every lock starts with a header naming the inputs hash (requirements of
//! the variant's images, Python version, platform, index) and the hash of its
//! body, so `labkit check` can tell, offline, a stale lock from a hand-edited
//! one. Pure except [`Uv::compile`], the one place that runs uv.

mod compiled;
mod spec;
#[cfg(test)]
mod tests;
mod uv;

use std::path::Path;

use anyhow::Context;

pub(crate) use compiled::{parse_compiled, split};
pub(crate) use spec::{specs, VariantSpec};
pub(crate) use uv::Uv;

use super::digest::sha256_hex;
use super::error::{Error, UsageError};
use super::layout::{lock_rel, Layout};
use super::manifest::{Family, ManifestErrors};
use super::progress::Progress;
use super::tools::SearchPath;

/// Platform the locks are resolved for unless a variant sets
/// `values.python_platform`: glibc 2.28 wheels run on Ubuntu 22.04 and 24.04.
pub const DEFAULT_PLATFORM: &str = "x86_64-manylinux_2_28";
/// Bumped when the lock layout or the resolution options change, so every
/// lock becomes stale at once.
const LOCK_FORMAT: &str = "1";
const INPUTS_MARK: &str = "# labkit-lock-inputs-sha256: ";
const CONTENT_MARK: &str = "# labkit-lock-content-sha256: ";

/// The command that refreshes a variant's locks (for messages).
pub(crate) fn refresh_command(variant: &str) -> String {
    format!("labkit lock --python --variant {variant}")
}

/// Whether the file at `path` is a lock `labkit lock` wrote (it carries the
/// inputs-hash header line), so render may delete it once its target is gone.
pub(crate) fn is_lock_file(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.lines().take(12).any(|l| l.starts_with(INPUTS_MARK)))
}

/// What is wrong with one lock file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockProblem {
    Missing,
    /// The manifest's requirements (or Python, platform, index) changed.
    Stale,
    /// The body differs from what `labkit lock` wrote.
    HandEdited,
}

/// Checks a lock text against the spec's inputs hash. Pure.
pub(crate) fn check_text(text: &str, inputs_hash: &str) -> Option<LockProblem> {
    let header_value = |mark: &str| text.lines().find_map(|l| l.strip_prefix(mark)).map(str::trim);
    let body = text.split_once("\n\n").map(|(_, b)| b).unwrap_or("");
    match header_value(CONTENT_MARK) {
        Some(h) if h == sha256_hex(body.as_bytes()) => {}
        _ => return Some(LockProblem::HandEdited),
    }
    match header_value(INPUTS_MARK) {
        Some(h) if h == inputs_hash => None,
        _ => Some(LockProblem::Stale),
    }
}

/// One finding of [`check`]: the lock file and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockDrift {
    pub path: String,
    pub variant: String,
    pub problem: LockProblem,
}

impl std::fmt::Display for LockDrift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why = match self.problem {
            LockProblem::Missing => "missing",
            LockProblem::Stale => {
                "out of date: the manifest's Python requirements (or values.python, python_platform, python_index) changed since it was locked"
            }
            LockProblem::HandEdited => "hand-edited: its content hash does not match its header",
        };
        write!(
            f,
            "{}: {why}; run `{}` where uv and the package index are reachable, then commit the locks",
            self.path,
            refresh_command(&self.variant)
        )
    }
}

/// Offline drift check of every lock file against the manifest.
pub(crate) fn check(layout: &Layout, family: &Family) -> Result<Vec<LockDrift>, ManifestErrors> {
    let specs = specs(family)?;
    let mut out = Vec::new();
    for s in &specs {
        let hash = s.inputs_hash();
        for img in s.locked_images() {
            let rel = lock_rel(&img.image, &s.variant);
            let problem = match std::fs::read_to_string(layout.root.join(&rel)) {
                // Line endings are not content: a CRLF checkout (core.autocrlf
                // without the repository's .gitattributes) is the same lock.
                Ok(t) => check_text(&t.replace("\r\n", "\n"), &hash),
                Err(_) => Some(LockProblem::Missing),
            };
            if let Some(problem) = problem {
                out.push(LockDrift { path: rel, variant: s.variant.clone(), problem });
            }
        }
    }
    Ok(out)
}

/// What `labkit lock --python` did per file.
#[derive(Debug, Default)]
pub struct PythonLockReport {
    pub written: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Resolves the selected variants (all when empty) and writes their locks.
/// All or nothing: every variant is resolved before any file is written. uv
/// (`uv`, else from `path`) is only looked for when an image has Python
/// requirements. Progress (one line per variant resolved) goes to
/// `progress`. Errors: invalid input (the manifest, `--variant`), else a
/// failure (uv missing or failing, a file not written).
pub(crate) fn lock(
    layout: &Layout,
    family: &Family,
    uv: Option<&Path>,
    path: &SearchPath,
    variants: &[String],
    progress: &mut dyn Progress,
) -> Result<PythonLockReport, Error> {
    let specs = specs(family).map_err(Error::invalid)?;
    for v in variants {
        if !specs.iter().any(|s| &s.variant == v) {
            return Err(UsageError(format!(
                "--variant {v}: no such variant (known: {})",
                specs.iter().map(|s| s.variant.as_str()).collect::<Vec<_>>().join(", ")
            ))
            .into());
        }
    }
    let selected = |s: &&VariantSpec| variants.is_empty() || variants.contains(&s.variant);
    if !specs.iter().filter(selected).any(|s| s.locked_images().next().is_some()) {
        return Ok(PythonLockReport::default());
    }
    let uv = Uv::find(uv, path)?;
    let version = uv.version();
    let scratch = layout.work().join("lock");
    let mut files: Vec<(String, String)> = Vec::new();
    let mut failures = Vec::new();
    for s in specs.iter().filter(selected) {
        if s.locked_images().next().is_none() {
            continue;
        }
        progress.line(&format!(
            "lock: resolving variant {} (Python {}, {}) with {}",
            s.variant,
            s.python,
            s.platform,
            uv.program.display()
        ));
        let result = uv
            .compile(s, &scratch.join(&s.variant))
            .and_then(|out| parse_compiled(&out).map_err(|e| anyhow::anyhow!("uv's output for `{}`: {e}", s.variant)))
            .and_then(|c| split(s, &c, &version).map_err(|e| anyhow::anyhow!(e)));
        match result {
            Ok(locks) => {
                for (image, text) in locks {
                    files.push((lock_rel(&image, &s.variant), text));
                }
            }
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if !failures.is_empty() {
        return Err(Error::msg(failures.join("\n")));
    }
    let mut report = PythonLockReport::default();
    for (rel, text) in files {
        let path = layout.root.join(&rel);
        if std::fs::read_to_string(&path).is_ok_and(|t| t == text) {
            report.unchanged.push(rel);
            continue;
        }
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        let tmp = path.with_extension("lock.tmp");
        std::fs::write(&tmp, &text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
        report.written.push(rel);
    }
    Ok(report)
}
