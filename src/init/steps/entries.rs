//! The entries of a steps or services directory: which ones run, in which
//! order, and how (the ownership rule of [`trusted`], the descriptor that was
//! checked is what is executed). Shared by setup steps and services.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::libc;

use crate::init::{signals, trusted};

/// How one directory entry is treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StepKind {
    Executable,
    ShellScript,
    Skip(String),
    /// Would run as root but others can change it: never run (the reason
    /// names the file or directory, its owner and mode).
    Refused(String),
}

/// Classify an entry from its name and metadata. Pure.
pub(crate) fn classify(name: &str, is_file: bool, mode: u32) -> StepKind {
    if name.starts_with('.') {
        return StepKind::Skip("hidden file".into());
    }
    if !is_file {
        return StepKind::Skip("not a regular file".into());
    }
    if mode & 0o111 != 0 {
        StepKind::Executable
    } else if name.ends_with(".sh") {
        StepKind::ShellScript
    } else {
        StepKind::Skip("not executable and not a .sh script".into())
    }
}

/// One entry of a steps or services directory, opened and checked.
pub(crate) struct Entry {
    pub name: String,
    pub kind: StepKind,
    /// The file that was checked, for `Executable` and `ShellScript`: it is
    /// what runs ([`Runnable`]).
    pub file: Option<Runnable>,
}

/// A checked file, executed through its descriptor (`/proc/self/fd/N`), so
/// what runs is what was checked even if the path changes meanwhile.
/// Without `/proc` (a bare chroot) the path it was reached by, links
/// resolved, is executed instead: every directory on that path passed the
/// ownership rule, so only root could change what it names.
pub(crate) struct Runnable {
    fd: OwnedFd,
    /// Where it was found (for messages and `argv[0]`).
    pub path: PathBuf,
    /// The path it was opened by, links resolved (all of it checked).
    real: PathBuf,
}

impl Runnable {
    /// The path that reaches this file in the child: its descriptor, or
    /// without `/proc` its checked path.
    pub(crate) fn proc_path(&self) -> PathBuf {
        if Path::new("/proc/self/fd").is_dir() {
            PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
        } else {
            self.real.clone()
        }
    }

    /// A command running this file (`shell` for a `*.sh` without the
    /// executable bit); the child keeps the descriptor open across exec (a
    /// script's interpreter opens it by that path) and has default signals.
    pub(crate) fn command(&self, shell: Option<&Path>) -> Command {
        let mut cmd = match shell {
            Some(sh) => {
                let mut c = Command::new(sh);
                c.arg(self.proc_path());
                c
            }
            None => {
                let mut c = Command::new(self.proc_path());
                c.arg0(&self.path);
                c
            }
        };
        let fd = self.fd.as_raw_fd();
        // SAFETY: fcntl and the signal reset are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                signals::reset_for_exec().map_err(io::Error::from)
            });
        }
        cmd
    }
}

/// Why a directory's entries cannot be used at all.
#[derive(Debug)]
pub(crate) enum ListError {
    Io(io::Error),
    /// The directory, or one above it, fails the ownership rule.
    Untrusted(trusted::Untrusted),
}

impl std::fmt::Display for ListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListError::Io(e) => e.fmt(f),
            ListError::Untrusted(u) => u.fmt(f),
        }
    }
}

/// "WHAT refused: …" for a directory that fails the ownership rule, naming
/// the directory only when the culprit is another one (a parent, a link).
pub(crate) fn refused_dir(what: &str, dir: &Path, u: &trusted::Untrusted) -> String {
    if u.path == dir {
        format!("{what} refused: {u}")
    } else {
        format!("{what} in {} refused: {u}", dir.display())
    }
}

/// The ownership rule in words, for refusals.
pub(crate) const OWNERSHIP_RULE: &str =
    "what runs as root must be owned by root and writable by no one else, and so must every directory above it (sshd's StrictModes rule)";

/// The entries of a steps or services directory in run order: byte order
/// of the file name (C collation, so `01` < `10` < `9` < `A` < `a`). The
/// directory and everything above it must pass [`trusted::verdict`];
/// each runnable entry (a link is followed) is opened and checked the same
/// way and refused when it fails. A missing directory has no entries.
pub(crate) fn list(dir: &Path) -> Result<Vec<Entry>, ListError> {
    let opened = match trusted::open_trusted(dir, libc::O_PATH | libc::O_DIRECTORY) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Vec::new()),
        Err(trusted::OpenError::Io { err, .. }) => return Err(ListError::Io(err)),
        Err(trusted::OpenError::Untrusted(u)) => return Err(ListError::Untrusted(u)),
    };
    let mut names = trusted::names(&opened).map_err(ListError::Io)?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut out = Vec::with_capacity(names.len());
    for raw in names {
        let name = String::from_utf8_lossy(raw.as_bytes()).into_owned();
        if name.starts_with('.') {
            out.push(Entry { name, kind: StepKind::Skip("hidden file".into()), file: None });
            continue;
        }
        let (kind, file) = match trusted::open_trusted_in(&opened, OsStr::from_bytes(raw.as_bytes())) {
            Ok(f) => {
                let kind = classify(&name, f.is_regular(), f.mode);
                let file = matches!(kind, StepKind::Executable | StepKind::ShellScript).then(|| Runnable {
                    fd: f.fd,
                    path: dir.join(&raw),
                    real: f.path,
                });
                (kind, file)
            }
            Err(trusted::OpenError::Untrusted(u)) => (StepKind::Refused(u.to_string()), None),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                (StepKind::Skip("dangling link".into()), None)
            }
            Err(trusted::OpenError::Io { err, .. }) if err.raw_os_error() == Some(libc::EISDIR) => {
                (StepKind::Skip("not a regular file".into()), None)
            }
            Err(e) => (StepKind::Skip(format!("cannot open it: {e}")), None),
        };
        out.push(Entry { name, kind, file });
    }
    Ok(out)
}

/// Standard input for a step or service: `/dev/null`, or where a bare root
/// has none, a pipe whose writing end is already closed (reads see EOF).
pub(crate) fn empty_stdin() -> Stdio {
    if let Ok(f) = std::fs::File::open("/dev/null") {
        return Stdio::from(f);
    }
    let mut fds = [0; 2];
    // SAFETY: valid array for pipe2; both ends are owned right away.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == 0 {
        use std::os::fd::FromRawFd;
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(wr);
        return Stdio::from(rd);
    }
    Stdio::null()
}

/// Why a step or service could not be started, errno kept: ENOENT for a
/// file that was just opened and checked means its `#!` interpreter is
/// missing.
pub(crate) fn start_error(e: &io::Error) -> String {
    if e.raw_os_error() == Some(libc::ENOENT) {
        format!("{e} (the interpreter its #! line names is not in this image)")
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_rules() {
        assert_eq!(classify("10_a.sh", true, 0o755), StepKind::Executable);
        assert_eq!(classify("10_a.sh", true, 0o644), StepKind::ShellScript);
        assert_eq!(classify("10_a", true, 0o755), StepKind::Executable);
        assert!(matches!(classify("README", true, 0o644), StepKind::Skip(_)));
        assert!(matches!(classify(".hidden.sh", true, 0o755), StepKind::Skip(_)));
        assert!(matches!(classify("dir", false, 0o755), StepKind::Skip(_)));
    }
}
