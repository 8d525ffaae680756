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
    replace_all_with(root, updates, None)
}

/// [`replace_all`], calling `journal` after every temp file is durable and
/// before the first rename (see [`commit`]); its error aborts the batch with
/// nothing replaced. Once the journal is written, a failed rename leaves the
/// remaining temp files for [`recover`] to complete.
fn replace_all_with(
    root: &Root,
    updates: &[Update],
    journal: Option<&dyn Fn() -> io::Result<()>>,
) -> io::Result<Vec<Written>> {
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
    if let Some(journal) = journal {
        if let Err(e) = journal() {
            cleanup(&staged);
            return Err(e);
        }
    }
    let cleanup = |staged: &[Staged]| {
        if journal.is_none() {
            cleanup(staged);
        }
    };
    let mut written = Vec::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for (i, (s, u)) in staged.iter().zip(updates).enumerate() {
        let ctx = |e: io::Error, what: &str| io::Error::new(e.kind(), format!("{what} {}: {e}", u.path));
        match fs::rename(&s.tmp, &s.path) {
            Ok(()) => written.push(Written::Atomic),
            Err(e) if matches!(e.raw_os_error(), Some(nix::libc::EBUSY) | Some(nix::libc::EXDEV)) => {
                // The temp file stays until the rewrite is complete: a kill
                // during it leaves the journal's copy for `recover`.
                if let Err(e) = rewrite_in_place(&s.path, u.data) {
                    cleanup(&staged[i..]);
                    return Err(ctx(e, "cannot rewrite in place"));
                }
                let _ = fs::remove_file(&s.tmp);
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

/// The journal of a commit in progress: one line per account file,
/// `<container path> <hash before> <hash after>` (hash: see [`content_hash`]).
pub const JOURNAL: &str = "/etc/.labkit-journal";

/// FNV-1a (64 bit) of a file's content, `absent` for a missing file. Only
/// tells "still the content we planned from" apart from "changed since"; the
/// files are root's, so no adversary chooses collisions.
fn content_hash(data: Option<&[u8]>) -> String {
    match data {
        None => "absent".to_owned(),
        Some(d) => {
            let h = d.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
            format!("{h:016x}-{}", d.len())
        }
    }
}

fn read_if_exists(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Write `data` to `path` through a temp file and a rename, durably.
fn write_durably(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path);
    let _ = fs::remove_file(&tmp);
    let f = create_exact(&tmp, data, 0o600, 0, 0)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    if let Some(d) = path.parent() {
        fsync_dir(d)?;
    }
    Ok(())
}

/// Replace the changed account files as one transaction: every temp file is
/// written and flushed, then the journal naming them is made durable, then
/// they are renamed in order, then the journal is removed. A start killed
/// anywhere after the journal exists is completed by the next one
/// ([`recover`]), so the four files never stay half-updated. The caller
/// holds the account lock and read `before` under it.
pub fn commit(root: &Root, before: &Database, tables: &[&Table]) -> io::Result<Vec<(Kind, Written)>> {
    let rendered: Vec<(Kind, Vec<u8>)> = tables.iter().map(|t| (t.kind(), t.render())).collect();
    let olds: Vec<Option<Vec<u8>>> = rendered
        .iter()
        .map(|(kind, _)| {
            let t = match kind {
                Kind::Passwd => Some(&before.passwd),
                Kind::Group => Some(&before.group),
                Kind::Shadow => before.shadow.as_ref(),
                Kind::Gshadow => before.gshadow.as_ref(),
            };
            t.map(Table::render)
        })
        .collect();
    let mut journal = String::new();
    for ((kind, data), old) in rendered.iter().zip(&olds) {
        journal.push_str(&format!("{} {} {}\n", kind.path(), content_hash(old.as_deref()), content_hash(Some(data))));
    }
    let updates: Vec<Update> = rendered
        .iter()
        .map(|(kind, data)| Update { path: kind.path(), data, default_mode: default_mode(*kind) })
        .collect();
    let journal_path = root.path(JOURNAL);
    let write_journal = || {
        write_durably(&journal_path, journal.as_bytes())
            .map_err(|e| io::Error::new(e.kind(), format!("cannot write the journal {JOURNAL}: {e}")))
    };
    let written = replace_all_with(root, &updates, Some(&write_journal))?;
    fs::remove_file(&journal_path)
        .and_then(|()| fsync_dir(&root.path("/etc")))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot remove the journal {JOURNAL}: {e}")))?;
    Ok(rendered.iter().map(|(k, _)| *k).zip(written).collect())
}

/// Complete a commit that was interrupted (the journal exists): each file
/// whose temp file is still there and whose content is still what the commit
/// planned from gets its temp file; a file that changed since (another tool
/// wrote it) keeps its content and the temp file goes, so nothing written
/// under the lock in between is lost. Call with the account lock held.
/// Returns notes for the log.
pub fn recover(root: &Root) -> io::Result<Vec<String>> {
    let journal_path = root.path(JOURNAL);
    let text = match fs::read(&journal_path) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("cannot read the journal {JOURNAL}: {e}"))),
    };
    let mut notes = Vec::new();
    let mut completed = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let [path, old, new] = parts[..] else { continue };
        let Some(kind) =
            [Kind::Passwd, Kind::Group, Kind::Shadow, Kind::Gshadow].into_iter().find(|k| k.path() == path)
        else {
            continue;
        };
        let target = root.path(kind.path());
        let tmp = temp_path(&target);
        let Some(staged) = read_if_exists(&tmp)? else { continue };
        let current = read_if_exists(&target)?;
        let current_hash = content_hash(current.as_deref());
        if content_hash(Some(&staged)) != new {
            let _ = fs::remove_file(&tmp);
            continue;
        }
        let mounted = current.is_some() && is_mount_point(&target);
        if current_hash == old || current_hash == new || mounted {
            match fs::rename(&tmp, &target) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(nix::libc::EBUSY) | Some(nix::libc::EXDEV)) => {
                    rewrite_in_place(&target, &staged)
                        .map_err(|e| io::Error::new(e.kind(), format!("cannot rewrite in place {path}: {e}")))?;
                    let _ = fs::remove_file(&tmp);
                }
                Err(e) => return Err(io::Error::new(e.kind(), format!("cannot replace {path}: {e}"))),
            }
            completed.push(path.to_owned());
        } else {
            let _ = fs::remove_file(&tmp);
            notes.push(format!(
                "{path} changed since an interrupted start planned its update; kept the current content"
            ));
        }
    }
    fsync_dir(&root.path("/etc"))?;
    fs::remove_file(&journal_path)?;
    fsync_dir(&root.path("/etc"))?;
    if !completed.is_empty() {
        notes.insert(0, format!("completed the account update of an interrupted start ({})", completed.join(", ")));
    }
    Ok(notes)
}

/// Whether `path` is a mount point of its own (a bind-mounted file).
fn is_mount_point(path: &Path) -> bool {
    let dev = |p: &Path| fs::symlink_metadata(p).map(|m| m.dev()).ok();
    match (dev(path), path.parent().and_then(dev)) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    }
}

/// Why an account update did not happen.
#[derive(Debug)]
pub enum TxError<E> {
    /// The planner refused (nothing was written).
    Plan(E),
    /// Reading, locking or writing failed (errno kept in the kind).
    Io(io::Error),
}

/// The result of [`transact`].
pub struct Tx<T> {
    /// What the planner returned (from the read under the lock when a write
    /// was needed).
    pub value: T,
    /// The database as it is now.
    pub after: Database,
    /// The files written, in order (empty: nothing needed to change).
    pub written: Vec<(Kind, Written)>,
    /// Notes of an interrupted earlier start that was completed.
    pub recovered: Vec<String>,
}

/// Read, plan and write the account files as one locked transaction.
///
/// A first, lock-free read and plan decides whether anything must change:
/// when nothing must (a restart), or the planner refuses, nothing is locked or
/// written. Otherwise the glibc lock `/etc/.pwd.lock` is taken (waiting up to
/// `timeout`, as `lckpwdf`), an interrupted earlier commit is completed, and
/// the files are read and planned again under the lock and committed before
/// the lock is released: an account another tool (`useradd`, a second
/// labinit) adds while holding the lock is never lost.
pub fn transact<T, E>(
    root: &Root,
    timeout: Duration,
    plan: impl Fn(&Database) -> Result<(Database, T), E>,
) -> Result<Tx<T>, TxError<E>> {
    if fs::symlink_metadata(root.path(JOURNAL)).is_err() {
        let db = load(root).map_err(TxError::Io)?;
        let (after, value) = plan(&db).map_err(TxError::Plan)?;
        if changed(&db, &after).is_empty() {
            return Ok(Tx { value, after, written: Vec::new(), recovered: Vec::new() });
        }
    }
    let _lock = lock(root, timeout).map_err(TxError::Io)?;
    let recovered = recover(root).map_err(TxError::Io)?;
    let db = load(root).map_err(TxError::Io)?;
    let (after, value) = plan(&db).map_err(TxError::Plan)?;
    let tables = changed(&db, &after);
    let written = if tables.is_empty() { Vec::new() } else { commit(root, &db, &tables).map_err(TxError::Io)? };
    Ok(Tx { value, after, written, recovered })
}

/// The text of the image's `/etc/login.defs` (empty when it has none).
pub fn login_defs(root: &Root) -> io::Result<String> {
    match fs::read(root.path("/etc/login.defs")) {
        Ok(d) => Ok(String::from_utf8_lossy(&d).into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(io::Error::new(e.kind(), format!("cannot read /etc/login.defs: {e}"))),
    }
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
