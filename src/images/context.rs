//! The build context: the files every image ships besides its Dockerfile —
//! labinit, setup_steps/, services/, images/files/ and the Python locks —
//! read once for the plan's inputs hash ([`shipped_files`]) and copied into
//! the context directory before `build` or `bake` ([`stage`]).

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::error::{Error, UsageError};
use super::layout::{is_lock_path, list_files, Layout, SHIPPED_DIRS};
use super::tools;

/// One file `labkit build` ships into every context besides labinit.
pub struct ShippedFile {
    /// Its path in the build context: `setup_steps/…`, `services/…` or
    /// `files/…` (from images/files/).
    pub rel: String,
    pub path: PathBuf,
    pub data: Vec<u8>,
    pub exec: bool,
}

/// The files of setup_steps/, services/ and images/files/ (see
/// [`SHIPPED_DIRS`]), read once. A script with CRLF line endings (a Windows
/// or `core.autocrlf` checkout without the repository's .gitattributes) is
/// refused, naming the file: in the image its `#!/bin/sh\r` shebang would
/// not run.
pub(crate) fn shipped_files(layout: &Layout) -> Result<Vec<ShippedFile>, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = Vec::new();
    for (dir, to) in SHIPPED_DIRS {
        let top = layout.root.join(dir);
        for rel in list_files(&top) {
            let path = top.join(&rel);
            let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let text = !data.contains(&0);
            if text && data.windows(2).any(|w| w == b"\r\n") {
                return Err(format!(
                    "{dir}/{rel} has CRLF line endings; files shipped into images must be LF \
                     (check out with the repository's .gitattributes, or run `sed -i 's/\\r$//' {dir}/{rel}`)"
                ));
            }
            files.push(ShippedFile {
                rel: format!("{to}/{rel}"),
                path,
                data,
                exec: meta.permissions().mode() & 0o111 != 0,
            });
        }
    }
    Ok(files)
}

/// Copies what the images ship into the build context `ctx` (relative to
/// the repository root unless absolute): labinit (mode 0755; `labinit`, else
/// `dist/labinit`), setup_steps/ and services/ (lab-base; empty
/// directories when the repo has none), files/ from images/files/ (e.g.
/// lab-pytorch's Jupyter configuration), and every target's Python lock as
/// `python/<image>/<variant>/requirements.lock`. Only those entries of `ctx`
/// are replaced; nothing else is touched. A shipped file that cannot be
/// shipped (CRLF) is invalid input; the rest are failures.
pub(crate) fn stage(layout: &Layout, ctx: &Path, labinit: Option<&Path>) -> Result<(), Error> {
    let ctx = if ctx.is_absolute() { ctx.to_path_buf() } else { layout.root.join(ctx) };
    let src = tools::labinit(labinit, &layout.root);
    if !src.is_file() {
        return Err(Error::msg(format!(
            "{} not found: build it with `make labinit`, or pass --labinit PATH",
            src.display()
        )));
    }
    create_dir(&ctx)?;
    let dest = ctx.join("labinit");
    let _ = std::fs::remove_file(&dest);
    std::fs::copy(&src, &dest).with_context(|| format!("cannot copy {} to {}", src.display(), dest.display()))?;
    set_mode(&dest, 0o755)?;
    let shipped = shipped_files(layout).map_err(UsageError)?;
    for (_, to) in SHIPPED_DIRS {
        let to = ctx.join(to);
        if to.exists() {
            std::fs::remove_dir_all(&to).with_context(|| format!("cannot clear {}", to.display()))?;
        }
        create_dir(&to)?;
    }
    for f in &shipped {
        let to = ctx.join(&f.rel);
        if let Some(p) = to.parent() {
            create_dir(p)?;
        }
        std::fs::copy(&f.path, &to).with_context(|| format!("cannot copy {} to {}", f.path.display(), to.display()))?;
        // Never group- or world-writable, whatever the checkout's umask:
        // labinit refuses steps and services others can write.
        set_mode(&to, if f.exec { 0o755 } else { 0o644 })?;
    }
    stage_python_locks(layout, &ctx)
}

/// `images/generated/<image>/<variant>/requirements.lock` -> `ctx/python/…`.
fn stage_python_locks(layout: &Layout, ctx: &Path) -> Result<(), Error> {
    let to = ctx.join("python");
    if to.exists() {
        std::fs::remove_dir_all(&to).with_context(|| format!("cannot clear {}", to.display()))?;
    }
    create_dir(&to)?;
    let from = layout.generated();
    for rel in list_files(&from) {
        if !is_lock_path(&rel) {
            continue;
        }
        let (a, b) = (from.join(&rel), to.join(&rel));
        if let Some(p) = b.parent() {
            create_dir(p)?;
        }
        std::fs::copy(&a, &b).with_context(|| format!("cannot copy {} to {}", a.display(), b.display()))?;
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))?;
    Ok(())
}
