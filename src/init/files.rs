//! Touching `/etc`: reading the account files and replacing them safely.
//! Every path goes through a [`Root`], so tests run against a directory and
//! never the host's own files.
//!
//! A write takes the glibc `/etc/.pwd.lock` lock (the one `lckpwdf` and
//! shadow-utils take, so a `useradd` in a setup step waits for us), keeps a
//! `<file>-` backup (a hard link to the old file, a copy where links fail),
//! writes a temp file in the same directory with the original's owner and
//! mode, renames it over the file, and fsyncs where the [`Durability`] policy
//! of the file system asks for it (not on a container's overlay or tmpfs
//! layer: README, "How labinit writes /etc"). When
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

/// The directory every container path is resolved under (`/` in production),
/// and the durability policy when a caller forces one (tests; otherwise it
/// follows the file system, see [`durability_for`]).
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
    durability: Option<Durability>,
}

impl Root {
    pub fn new(dir: impl Into<PathBuf>) -> Root {
        Root { dir: dir.into(), durability: None }
    }

    /// The same root with `durability` for every write, whatever the file
    /// system.
    pub fn with_durability(self, durability: Durability) -> Root {
        Root { durability: Some(durability), ..self }
    }

    /// The host path of a container path such as `/etc/passwd`.
    pub fn path(&self, container_path: impl AsRef<Path>) -> PathBuf {
        let p = container_path.as_ref();
        let rel = p.strip_prefix("/").unwrap_or(p);
        if rel.as_os_str().is_empty() {
            self.dir.clone()
        } else {
            self.dir.join(rel)
        }
    }

    /// The policy for a file in the directory `dir` (a host path), and the
    /// type of its file system (`statfs(2)`, when it answers).
    fn durability(&self, dir: &Path) -> (Durability, Option<u64>) {
        let f_type = nix::sys::statfs::statfs(dir).ok().map(|s| s.filesystem_type().0 as u64 & 0xffff_ffff);
        (self.durability.unwrap_or_else(|| f_type.map_or(Durability::Flush, durability_for)), f_type)
    }
}

/// How a write of `/etc` is made durable (README, "How labinit writes /etc").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync every new file before its rename and the directory after: the
    /// files survive a kernel crash or a power loss.
    Flush,
    /// No fsync: the rename alone, atomic against the death of the process
    /// (SIGKILL, OOM kill, `kubectl delete`). A kernel crash or power loss
    /// discards such a file system's content anyway.
    RenameOnly,
}

/// `statfs(2)` `f_type` of overlayfs, tmpfs and ramfs (`linux/magic.h`).
pub(crate) const OVERLAYFS_SUPER_MAGIC: u64 = 0x794c_7630;
pub(crate) const TMPFS_MAGIC: u64 = 0x0102_1994;
pub(crate) const RAMFS_MAGIC: u64 = 0x8584_58f6;

/// The durability policy for a directory on a file system of type `f_type`
/// (`statfs(2)`): rename only on a container's writable layer (overlayfs,
/// the upper layer that a new container never reuses) and in memory (tmpfs,
/// ramfs: nothing survives a crash to be made durable); fsync everywhere
/// else (a bind-mounted or persistent `/etc`, a `--root` on a disk).
pub fn durability_for(f_type: u64) -> Durability {
    match f_type & 0xffff_ffff {
        OVERLAYFS_SUPER_MAGIC | TMPFS_MAGIC | RAMFS_MAGIC => Durability::RenameOnly,
        _ => Durability::Flush,
    }
}

#[cfg(test)]
thread_local! {
    /// fsync calls made on this thread (tests of the policy).
    static SYNCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// fsync `f` when `durability` asks for it.
fn sync(f: &File, durability: Durability) -> io::Result<()> {
    if durability == Durability::RenameOnly {
        return Ok(());
    }
    #[cfg(test)]
    SYNCS.with(|c| c.set(c.get() + 1));
    f.sync_all()
}

/// Refuse a symlinked account file: following it could write outside `/etc`.
fn refuse_symlink(path: &Path, container_path: &str) -> io::Result<()> {
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{container_path} is a symbolic link; refusing to write through it (replace it with a regular file)"
            ),
        ));
    }
    Ok(())
}

/// Open `path` for reading the way root reads a file under `/etc`: never
/// through a link (ELOOP), never blocking on a FIFO (the caller checks the
/// file type).
fn open_to_read(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK).open(path)
}

/// The bytes of the regular file at `path`; `None` when there is none.
/// Opened without following a link and without blocking: a FIFO at an
/// account file, the journal or a temp name must not hang a start that
/// holds the account lock. Anything but a regular file (a link, FIFO,
/// socket, directory, device) is an `InvalidData` error saying what it is.
pub(crate) fn read_regular(path: &Path) -> io::Result<Option<Vec<u8>>> {
    use std::os::unix::fs::FileTypeExt;
    let mut f = match open_to_read(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "it is a symbolic link, not a regular file"))
        }
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = match () {
            _ if kind.is_fifo() => "a FIFO",
            _ if kind.is_socket() => "a socket",
            _ if kind.is_dir() => "a directory",
            _ => "a device",
        };
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("it is {what}, not a regular file")));
    }
    // Sized from the file (one allocation, no regrowth: megabytes at
    // 100 000 accounts), one byte over to see the end without a second one.
    let mut data = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0).saturating_add(1));
    io::Read::read_to_end(&mut f, &mut data)?;
    Ok(Some(data))
}

/// Read one account file; `Ok(None)` when it does not exist. The table keeps
/// the bytes read (no copy).
fn read_optional(root: &Root, kind: Kind) -> io::Result<Option<Table>> {
    let path = root.path(kind.path());
    refuse_symlink(&path, kind.path())?;
    match read_regular(&path) {
        Ok(Some(data)) if data.len() > u32::MAX as usize => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than 4 GiB; that is no account file (check the image)", kind.path()),
        )),
        Ok(Some(data)) => Ok(Some(Table::from_vec(kind, data))),
        Ok(None) => Ok(None),
        Err(e) => Err(io::Error::new(e.kind(), format!("cannot read {}: {e}", kind.path()))),
    }
}

/// Read the account database. passwd and group must exist (an empty table is
/// used when they do not, so a scratch image still gets its user).
pub(crate) fn load(root: &Root) -> io::Result<Database> {
    Ok(Database {
        passwd: read_optional(root, Kind::Passwd)?.unwrap_or_else(|| Table::parse(Kind::Passwd, b"")),
        group: read_optional(root, Kind::Group)?.unwrap_or_else(|| Table::parse(Kind::Group, b"")),
        shadow: read_optional(root, Kind::Shadow)?,
        gshadow: read_optional(root, Kind::Gshadow)?,
    })
}

/// Whether the file at `path` holds exactly `data`, read in chunks of
/// `buf` against it (no second copy of a large file in memory; one small
/// buffer for every file, as each new page costs a fault).
fn holds(path: &Path, data: &[u8], buf: &mut [u8]) -> io::Result<bool> {
    let mut f = open_to_read(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() || meta.len() != data.len() as u64 {
        return Ok(false);
    }
    let mut at = 0;
    loop {
        let n = io::Read::read(&mut f, buf)?;
        if n == 0 {
            return Ok(at == data.len());
        }
        if at + n > data.len() || !crate::init::accounts::same_bytes(&buf[..n], &data[at..at + n]) {
            return Ok(false);
        }
        at += n;
    }
}

/// [`load`] again under the lock, keeping each table of `db` whose file
/// still holds the bytes it was read from (and with them its index).
fn reload(root: &Root, db: Database) -> io::Result<Database> {
    let buf = std::cell::RefCell::new(vec![0u8; 64 << 10]);
    let keep = |kind: Kind, t: Option<Table>| -> io::Result<Option<Table>> {
        let path = root.path(kind.path());
        refuse_symlink(&path, kind.path())?;
        if let Some(t) = t {
            if t.as_read().is_some_and(|data| holds(&path, data, &mut buf.borrow_mut()).unwrap_or(false)) {
                return Ok(Some(t));
            }
        }
        read_optional(root, kind)
    };
    Ok(Database {
        passwd: keep(Kind::Passwd, Some(db.passwd))?.unwrap_or_else(|| Table::parse(Kind::Passwd, b"")),
        group: keep(Kind::Group, Some(db.group))?.unwrap_or_else(|| Table::parse(Kind::Group, b"")),
        shadow: keep(Kind::Shadow, db.shadow)?,
        gshadow: keep(Kind::Gshadow, db.gshadow)?,
    })
}

/// How a file ended up written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Written {
    /// Replaced atomically (temp file + rename).
    Atomic,
    /// Rewritten in place because it is a mount point (not atomic).
    InPlace,
}

/// The glibc-compatible account lock, released on drop.
pub(crate) struct PwdLock {
    _file: File,
}

/// Take `/etc/.pwd.lock` like glibc's `lckpwdf`: an fcntl write lock on the
/// whole file, waiting at most `timeout` (glibc waits 15 s).
pub(crate) fn lock(root: &Root, timeout: Duration) -> io::Result<PwdLock> {
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
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    sibling(path, ".labkit-tmp", true)
}

/// Create a file with exactly `mode`, `uid`, `gid` and the concatenation of
/// `pieces` (not yet synced: the caller flushes every temp file at once).
/// Refuses to follow a symlink and refuses an existing file (O_EXCL).
fn create_exact(path: &Path, pieces: &[&[u8]], mode: u32, uid: u32, gid: u32) -> io::Result<File> {
    let f = OpenOptions::new().write(true).create_new(true).mode(0o000).custom_flags(libc_o_nofollow()).open(path)?;
    std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
    f.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
    write_pieces(&f, pieces)?;
    Ok(f)
}

/// [`create_exact`] for a temp file only labinit names: a leftover of a
/// start killed mid-write (or anything else at that name, a link included,
/// which unlink never follows) is removed and the file created again. The
/// create is tried first: the usual case has no leftover, and on overlayfs
/// a lookup that misses costs a search of every layer.
fn create_temp(path: &Path, pieces: &[&[u8]], mode: u32, uid: u32, gid: u32) -> io::Result<File> {
    match create_exact(path, pieces, mode, uid, gid) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(path)?;
            create_exact(path, pieces, mode, uid, gid)
        }
        r => r,
    }
}

/// Write `pieces` in order: large ones directly, small ones gathered (an
/// account file is its unchanged stretches plus the edited lines).
fn write_pieces(f: &File, pieces: &[&[u8]]) -> io::Result<()> {
    let mut w = io::BufWriter::with_capacity(64 * 1024, f);
    pieces.iter().try_for_each(|p| w.write_all(p))?;
    w.flush()
}

fn fsync_dir(dir: &Path, durability: Durability) -> io::Result<()> {
    if durability == Durability::RenameOnly {
        return Ok(());
    }
    sync(&File::open(dir)?, durability)
}

/// One file to replace: its container path, new content (as pieces to
/// concatenate), and the mode to use if it does not exist yet (root-owned).
pub(crate) struct Update<'a> {
    pub path: &'a str,
    pub data: Vec<&'a [u8]>,
    pub default_mode: u32,
    /// The current content, when the caller read it under the lock (for the
    /// backup; else it is read again).
    pub old: Option<Vec<&'a [u8]>>,
}

struct Staged {
    path: PathBuf,
    tmp: PathBuf,
    durability: Durability,
    /// Mode, uid and gid of the file it replaces, if one exists.
    existing: Option<(u32, u32, u32)>,
}

/// Replace several files as one batch, in the given order: each gets a temp
/// file beside it with the original's owner and mode, then a `<file>-`
/// backup; all temps are flushed together (where the [`Durability`] of their
/// directory asks for it), then `journal` is called (its error aborts the
/// batch with nothing replaced), then the temps are renamed in order, then
/// each directory is synced once. No temp file survives an error before the
/// journal; once the journal is written, a failed rename leaves the remaining
/// temp files for `recover` to complete.
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
    // Backups `<file>-` like shadow-utils, same owner and mode, once every
    // temp file is written (a failed batch, e.g. on a full disk, leaves no
    // new file). They are never read back, so they are not synced; a failed
    // backup does not stop the update.
    for (s, u) in staged.iter().zip(updates) {
        if let Some(owner) = s.existing {
            let _ = write_backup(root, &s.path, &sibling(&s.path, "-", false), u.old.as_deref(), owner);
        }
    }
    if let Err(e) = handles.iter().zip(&staged).try_for_each(|(f, s)| sync(f, s.durability)) {
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
    let mut dirs: Vec<(PathBuf, Durability)> = Vec::new();
    for (i, (s, u)) in staged.iter().zip(updates).enumerate() {
        let ctx = |e: io::Error, what: &str| io::Error::new(e.kind(), format!("{what} {}: {e}", u.path));
        match fs::rename(&s.tmp, &s.path) {
            Ok(()) => written.push(Written::Atomic),
            Err(e) if matches!(e.raw_os_error(), Some(nix::libc::EBUSY) | Some(nix::libc::EXDEV)) => {
                // The temp file stays until the rewrite is complete: a kill
                // during it leaves the journal's copy for `recover`.
                if let Err(e) = rewrite_in_place(root, &s.path, &u.data) {
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
            if !dirs.iter().any(|(x, _)| x == d) {
                dirs.push((d.to_path_buf(), s.durability));
            }
        }
    }
    for (d, durability) in dirs {
        fsync_dir(&d, durability).map_err(|e| io::Error::new(e.kind(), format!("cannot sync {}: {e}", d.display())))?;
    }
    Ok(written)
}

/// Write the temp file for one update.
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
    let tmp = temp_path(&path);
    let durability = root.durability(path.parent().unwrap_or(&path)).0;
    // A leftover from a run that was killed mid-write is ours: replaced.
    match create_temp(&tmp, &u.data, mode, uid, gid) {
        Ok(f) => Ok((Staged { path, tmp, durability, existing: exists.then_some((mode, uid, gid)) }, f)),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(ctx(e, "cannot write a temporary file beside"))
        }
    }
}

/// Make `backup` hold the current content of `path` (`old`, when the caller
/// has it): a hard link to it where that is free (the file is then replaced
/// by a rename, never written in place, so the link keeps the old content),
/// else a copy: on overlayfs a link would copy the file up from the image's
/// layer and fsync it, and a bind-mounted file cannot be linked across its
/// mount. Through a temp file either way: on a full disk a truncated backup
/// must not replace the previous, complete one.
fn write_backup(
    root: &Root,
    path: &Path,
    backup: &Path,
    old: Option<&[&[u8]]>,
    owner: (u32, u32, u32),
) -> io::Result<()> {
    // Already a link to the file (a start killed before its rename): done.
    // (rename(2) of a link over the same inode would do nothing and leave
    // the temp file behind.)
    let inode = |p: &Path| fs::symlink_metadata(p).map(|m| (m.dev(), m.ino())).ok();
    if inode(backup).is_some_and(|b| Some(b) == inode(path)) {
        return Ok(());
    }
    let tmp = temp_path(backup);
    let (mode, uid, gid) = owner;
    let copy = || match old {
        Some(old) => create_temp(&tmp, old, mode, uid, gid).map(drop),
        None => fs::read(path).and_then(|old| create_temp(&tmp, &[&old], mode, uid, gid).map(drop)),
    };
    let must_copy = root.durability(path.parent().unwrap_or(path)).1 == Some(OVERLAYFS_SUPER_MAGIC)
        || fs::hard_link(path, &tmp).is_err();
    let done = if must_copy { copy() } else { Ok(()) }.and_then(|()| fs::rename(&tmp, backup));
    if done.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    done
}

/// Replace one file: a batch of one (backup, temp file, rename).
pub(crate) fn replace(root: &Root, container_path: &str, data: &[u8], default_mode: u32) -> io::Result<Written> {
    let mut w =
        replace_all_with(root, &[Update { path: container_path, data: vec![data], default_mode, old: None }], None)?;
    Ok(w.pop().unwrap_or(Written::Atomic))
}

/// Same inode, new content: write, truncate to length, fsync (where the
/// file system of the mounted file asks for it).
fn rewrite_in_place(root: &Root, path: &Path, pieces: &[&[u8]]) -> io::Result<()> {
    let f = OpenOptions::new().write(true).custom_flags(libc_o_nofollow()).open(path)?;
    write_pieces(&f, pieces)?;
    f.set_len(pieces.iter().map(|p| p.len() as u64).sum())?;
    let durability = root.durability.unwrap_or_else(|| {
        nix::sys::statfs::fstatfs(&f).map_or(Durability::Flush, |s| durability_for(s.filesystem_type().0 as u64))
    });
    sync(&f, durability)
}

/// The text of the image's `/etc/login.defs` (empty when it has none).
pub(crate) fn login_defs(root: &Root) -> io::Result<String> {
    match fs::read(root.path("/etc/login.defs")) {
        Ok(d) => Ok(String::from_utf8_lossy(&d).into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(io::Error::new(e.kind(), format!("cannot read /etc/login.defs: {e}"))),
    }
}

/// Default mode for an account file labinit has to create.
fn default_mode(kind: Kind) -> u32 {
    match kind {
        Kind::Passwd | Kind::Group => 0o644,
        Kind::Shadow | Kind::Gshadow => 0o640,
    }
}

mod journal;

pub(crate) use journal::{transact, TxError};

#[cfg(test)]
mod tests;
