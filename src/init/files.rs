//! Touching `/etc`: reading the account files and replacing them safely.
//! Every path goes through a [`Root`], so tests run against a directory and
//! never the host's own files.
//!
//! A write takes the glibc `/etc/.pwd.lock` lock (the one `lckpwdf` and
//! shadow-utils take, so a `useradd` in a setup step waits for us), keeps a
//! `<file>-` backup, writes a temp file in the same directory with the
//! original's owner and mode, fsyncs, renames, and fsyncs the directory. When
//! the file is a bind mount (rename gives EBUSY or EXDEV: CRI-O, podman
//! keep-id, `-v /etc/passwd:…`), it is rewritten in place instead and the
//! caller is told the write was not atomic. Symlinked account files are
//! refused: following them could write outside `/etc`.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::FcntlArg;

use crate::init::accounts::{Database, Kind, Table};

/// The directory every container path is resolved under (`/` in production).
#[derive(Debug, Clone)]
pub struct Root(PathBuf);

impl Root {
    pub fn new(dir: impl Into<PathBuf>) -> Root {
        Root(dir.into())
    }

    /// The host path of a container path such as `/etc/passwd`.
    pub fn path(&self, container_path: impl AsRef<Path>) -> PathBuf {
        let p = container_path.as_ref();
        let rel = p.strip_prefix("/").unwrap_or(p);
        if rel.as_os_str().is_empty() {
            self.0.clone()
        } else {
            self.0.join(rel)
        }
    }

    pub fn is_host_root(&self) -> bool {
        self.0 == Path::new("/")
    }
}

/// Read one account file; `Ok(None)` when it does not exist.
fn read_optional(root: &Root, kind: Kind) -> io::Result<Option<Table>> {
    let path = root.path(kind.path());
    if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is a symbolic link; refusing to write through it (replace it with a regular file)",
                kind.path()
            ),
        ));
    }
    match fs::read(&path) {
        Ok(data) => Ok(Some(Table::parse(kind, &data))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io::Error::new(e.kind(), format!("cannot read {}: {e}", kind.path()))),
    }
}

/// Read the account database. passwd and group must exist (an empty table is
/// used when they do not, so a scratch image still gets its user).
pub fn load(root: &Root) -> io::Result<Database> {
    Ok(Database {
        passwd: read_optional(root, Kind::Passwd)?.unwrap_or_else(|| Table::parse(Kind::Passwd, b"")),
        group: read_optional(root, Kind::Group)?.unwrap_or_else(|| Table::parse(Kind::Group, b"")),
        shadow: read_optional(root, Kind::Shadow)?,
        gshadow: read_optional(root, Kind::Gshadow)?,
    })
}

/// How a file ended up written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Replaced atomically (temp file + rename).
    Atomic,
    /// Rewritten in place because it is a mount point (not atomic).
    InPlace,
}

/// The glibc-compatible account lock, released on drop.
pub struct PwdLock {
    _file: File,
}

/// Take `/etc/.pwd.lock` like glibc's `lckpwdf`: an fcntl write lock on the
/// whole file, waiting at most `timeout` (glibc waits 15 s).
pub fn lock(root: &Root, timeout: Duration) -> io::Result<PwdLock> {
    let path = root.path("/etc/.pwd.lock");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc_o_nofollow())
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open /etc/.pwd.lock: {e}")))?;
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        let lk = libc_flock_write();
        match nix::fcntl::fcntl(&file, FcntlArg::F_SETLK(&lk)) {
            Ok(_) => return Ok(PwdLock { _file: file }),
            Err(Errno::EACCES) | Err(Errno::EAGAIN) if Instant::now() < deadline => {
                // Another tool (useradd in a step) holds it: back off and retry.
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => {
                return Err(io::Error::other(format!(
                    "cannot lock /etc/.pwd.lock (another account tool holds it?): {e}"
                )))
            }
        }
    }
}

fn libc_o_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits() | nix::fcntl::OFlag::O_CLOEXEC.bits()
}

/// A write lock on the whole file, as `lckpwdf` takes it.
fn libc_flock_write() -> nix::libc::flock {
    // SAFETY: flock is a plain C struct for which all-zero bytes are valid.
    let mut lk: nix::libc::flock = unsafe { std::mem::zeroed() };
    lk.l_type = nix::libc::F_WRLCK as i16;
    lk.l_whence = nix::libc::SEEK_SET as i16;
    lk
}

fn sibling(path: &Path, suffix: &str, hidden: bool) -> PathBuf {
    let name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    let mut bytes = name.into_vec();
    if hidden {
        bytes.insert(0, b'.');
    }
    bytes.extend_from_slice(suffix.as_bytes());
    path.with_file_name(OsString::from_vec(bytes))
}

/// The temp file name used for `path` (fixed, so a crashed run's leftover is
/// found and removed by the next one).
pub fn temp_path(path: &Path) -> PathBuf {
    sibling(path, ".labkit-tmp", true)
}

/// Create a file with exactly `mode`, `uid`, `gid` and `data` (not yet
/// synced: the caller flushes every temp file at once). Refuses to follow a
/// symlink and refuses an existing file (O_EXCL).
fn create_exact(path: &Path, data: &[u8], mode: u32, uid: u32, gid: u32) -> io::Result<File> {
    let mut f =
        OpenOptions::new().write(true).create_new(true).mode(0o000).custom_flags(libc_o_nofollow()).open(path)?;
    std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
    f.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
    f.write_all(data)?;
    Ok(f)
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Make every temp file durable before any rename. `syncfs` would be one
/// call, but it also flushes whatever else is dirty on the file system
/// (measured: 55-120 ms right after a root was unpacked).
fn flush_fs(files: &[File]) -> io::Result<()> {
    files.iter().try_for_each(File::sync_all)
}

/// One file to replace: its container path, new content, and the mode to use
/// if it does not exist yet (root-owned).
pub struct Update<'a> {
    pub path: &'a str,
    pub data: &'a [u8],
    pub default_mode: u32,
}

struct Staged {
    path: PathBuf,
    tmp: PathBuf,
}

/// Replace several files as one batch, in the given order: each gets a
/// `<file>-` backup and a temp file beside it with the original's owner and
/// mode; all temps are flushed together, then renamed in order, then each
/// directory is synced once. No temp file survives an error.
pub fn replace_all(root: &Root, updates: &[Update]) -> io::Result<Vec<Written>> {
    let mut staged: Vec<Staged> = Vec::new();
    let mut handles = Vec::new();
    let cleanup = |staged: &[Staged]| {
        for s in staged {
            let _ = fs::remove_file(&s.tmp);
        }
    };
    for u in updates {
        match stage(root, u) {
            Ok((st, f)) => {
                staged.push(st);
                handles.push(f);
            }
            Err(e) => {
                cleanup(&staged);
                return Err(e);
            }
        }
    }
    if let Err(e) = flush_fs(&handles) {
        cleanup(&staged);
        return Err(io::Error::new(e.kind(), format!("cannot flush the new account files: {e}")));
    }
    drop(handles);
    let mut written = Vec::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for (i, (s, u)) in staged.iter().zip(updates).enumerate() {
        let ctx = |e: io::Error, what: &str| io::Error::new(e.kind(), format!("{what} {}: {e}", u.path));
        match fs::rename(&s.tmp, &s.path) {
            Ok(()) => written.push(Written::Atomic),
            Err(e) if matches!(e.raw_os_error(), Some(nix::libc::EBUSY) | Some(nix::libc::EXDEV)) => {
                let _ = fs::remove_file(&s.tmp);
                if let Err(e) = rewrite_in_place(&s.path, u.data) {
                    cleanup(&staged[i + 1..]);
                    return Err(ctx(e, "cannot rewrite in place"));
                }
                written.push(Written::InPlace);
            }
            Err(e) => {
                cleanup(&staged[i..]);
                return Err(ctx(e, "cannot replace"));
            }
        }
        if let Some(d) = s.path.parent() {
            if !dirs.iter().any(|x| x == d) {
                dirs.push(d.to_path_buf());
            }
        }
    }
    for d in dirs {
        fsync_dir(&d).map_err(|e| io::Error::new(e.kind(), format!("cannot sync {}: {e}", d.display())))?;
    }
    Ok(written)
}

/// Back up the current file and write the temp file for one update.
fn stage(root: &Root, u: &Update) -> io::Result<(Staged, File)> {
    let container_path = u.path;
    let path = root.path(container_path);
    let ctx = |e: io::Error, what: &str| io::Error::new(e.kind(), format!("{what} {container_path}: {e}"));
    let (mode, uid, gid, exists) = match fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                "{container_path} is a symbolic link; refusing to write through it (replace it with a regular file)"
            ),
            ))
        }
        Ok(m) if !m.file_type().is_file() => {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{container_path} is not a regular file")))
        }
        Ok(m) => (m.mode() & 0o7777, m.uid(), m.gid(), true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => (u.default_mode, 0, 0, false),
        Err(e) => return Err(ctx(e, "cannot inspect")),
    };
    if exists {
        // Backup `<file>-` like shadow-utils, same owner and mode. It is never
        // read back, so it is not synced; a failed backup does not stop the
        // update.
        if let Ok(old) = fs::read(&path) {
            let _ = write_backup(&sibling(&path, "-", false), &old, mode, uid, gid);
        }
    }
    let tmp = temp_path(&path);
    // A leftover from a run that was killed mid-write: ours, safe to remove.
    let _ = fs::remove_file(&tmp);
    match create_exact(&tmp, u.data, mode, uid, gid) {
        Ok(f) => Ok((Staged { path, tmp }, f)),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(ctx(e, "cannot write a temporary file beside"))
        }
    }
}

fn write_backup(path: &Path, data: &[u8], mode: u32, uid: u32, gid: u32) -> io::Result<()> {
    // Through a temp file too: on a full disk a truncated backup must not
    // replace the previous, complete one.
    let tmp = temp_path(path);
    let _ = fs::remove_file(&tmp);
    let done = create_exact(&tmp, data, mode, uid, gid).and_then(|_| fs::rename(&tmp, path));
    if done.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    done
}

/// Replace one file (see [`replace_all`]).
pub fn replace(root: &Root, container_path: &str, data: &[u8], default_mode: u32) -> io::Result<Written> {
    let mut w = replace_all(root, &[Update { path: container_path, data, default_mode }])?;
    Ok(w.pop().unwrap_or(Written::Atomic))
}

/// Same inode, new content: write, truncate to length, fsync.
fn rewrite_in_place(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).custom_flags(libc_o_nofollow()).open(path)?;
    f.write_all(data)?;
    f.set_len(data.len() as u64)?;
    f.sync_all()
}

/// The account files that differ between `old` and `new`, in write order.
pub fn changed<'a>(old: &Database, new: &'a Database) -> Vec<&'a Table> {
    let olds = old.in_write_order();
    new.in_write_order()
        .into_iter()
        .filter(|t| !olds.iter().any(|o| o.kind() == t.kind() && o.render() == t.render()))
        .collect()
}

/// Default mode for an account file labinit has to create.
pub fn default_mode(kind: Kind) -> u32 {
    match kind {
        Kind::Passwd | Kind::Group => 0o644,
        Kind::Shadow | Kind::Gshadow => 0o640,
    }
}
