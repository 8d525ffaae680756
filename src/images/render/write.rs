//! Writing the rendered family into its output tree: changed files only,
//! each written then renamed, the ownership `INDEX`, and pruning of the files
//! labkit owns that are no longer produced. Files labkit did not write are
//! reported, never deleted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{parse_index, Rendered, HEADER_MARK, INDEX};
use crate::images::layout::{list_files, LOCK_FILE};
use crate::images::python::is_lock_file;

/// What `write` did to the output tree.
#[derive(Debug, Default)]
pub struct WriteReport {
    pub written: Vec<String>,
    pub unchanged: Vec<String>,
    pub deleted: Vec<String>,
    /// Files in the tree that labkit does not own: left alone, reported.
    pub foreign: Vec<String>,
}

fn is_generated(path: &Path) -> bool {
    std::fs::read_to_string(path).map(|s| s.starts_with(HEADER_MARK)).unwrap_or(false)
}

/// Writes the rendered family into `out`: changed files only (so a re-run
/// touches nothing), then deletes owned files that are no longer produced —
/// owned meaning listed in the previous `INDEX` or carrying the header.
pub(crate) fn write(out: &Path, rendered: &Rendered) -> Result<WriteReport> {
    let mut report = WriteReport::default();
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let old_index = std::fs::read_to_string(out.join(INDEX)).map(|s| parse_index(&s)).unwrap_or_default();
    let produced: BTreeSet<&str> = rendered.files.iter().map(|f| f.path.as_str()).collect();

    for f in &rendered.files {
        let path = out.join(&f.path);
        if write_if_changed(&path, &f.content)? {
            report.written.push(f.path.clone());
        } else {
            report.unchanged.push(f.path.clone());
        }
    }
    for rel in list_files(out) {
        if rel == INDEX || produced.contains(rel.as_str()) {
            continue;
        }
        // Python locks beside a produced Dockerfile belong to `labkit lock`.
        if let Some(dir) = rel.strip_suffix(LOCK_FILE) {
            if dir.ends_with('/') && produced.contains(format!("{dir}Dockerfile").as_str()) {
                continue;
            }
        }
        let path = out.join(&rel);
        // A lock of a target that no longer exists goes with its Dockerfile.
        if old_index.contains_key(&rel) || is_generated(&path) || is_lock_file(&path) {
            std::fs::remove_file(&path).with_context(|| format!("cannot delete stale {}", path.display()))?;
            remove_empty_parents(out, &path);
            report.deleted.push(rel);
        } else {
            report.foreign.push(rel);
        }
    }
    write_if_changed(&out.join(INDEX), &rendered.index())?;
    Ok(report)
}

fn write_if_changed(path: &Path, content: &str) -> Result<bool> {
    if std::fs::read(path).is_ok_and(|old| old == content.as_bytes()) {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Write then rename, so an interrupted render never leaves half a file.
    let tmp = path.with_extension("labkit-tmp");
    std::fs::write(&tmp, content).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(true)
}

fn remove_empty_parents(top: &Path, file: &Path) {
    let mut dir: Option<PathBuf> = file.parent().map(Path::to_path_buf);
    while let Some(d) = dir {
        if d == top || !d.starts_with(top) || std::fs::remove_dir(&d).is_err() {
            break;
        }
        dir = d.parent().map(Path::to_path_buf);
    }
}
