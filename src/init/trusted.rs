//! Opening files by descriptor, one path component at a time, never through
//! a link the caller did not allow. Two uses:
//!
//! - [`open_nofollow`]: a file in a place a user may control (the idle log
//!   on a shared volume): no component may be a symbolic link, so a link a
//!   user planted can never send a root write elsewhere.
//! - [`open_trusted`], [`open_trusted_in`] and [`names`]: what root runs (setup steps,
//!   services). Every directory from `/` down and the file itself must be
//!   owned by root (or by labinit's own uid when it is not root) and
//!   writable by nobody else — the rule OpenSSH's `StrictModes` applies to
//!   `authorized_keys` (`secure_filename` in OpenSSH's `misc.c`). One
//!   exception: a root-owned *sticky* directory above (`/tmp`) is accepted,
//!   as nobody but root can rename or remove root's entries in it. Symbolic
//!   links are followed only where they sit in directories that passed, and
//!   in a directory others may add to (sticky) only when root or labinit's
//!   user owns the link (the kernel's `protected_symlinks` rule).
//!   The caller gets the descriptor that was checked and executes that
//!   (through `/proc/self/fd`), so nothing is looked up by path twice.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use nix::libc;

/// Most symbolic links followed in one lookup (the kernel's own limit).
const MAX_LINKS: usize = 40;

/// Why a file or directory may not be run as root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Untrusted {
    /// The path that disqualifies (as walked, links resolved).
    pub path: PathBuf,
    pub uid: u32,
    pub mode: u32,
    pub why: &'static str,
}

impl std::fmt::Display for Untrusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is owned by uid {} with mode {:04o} ({})",
            self.path.display(),
            self.uid,
            self.mode & 0o7777,
            self.why
        )
    }
}

/// A failed lookup: an I/O error (errno kept) or a trust refusal.
#[derive(Debug)]
pub(crate) enum OpenError {
    Io { path: PathBuf, err: io::Error },
    Untrusted(Untrusted),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Io { path, err } => write!(f, "{}: {err}", path.display()),
            OpenError::Untrusted(u) => u.fmt(f),
        }
    }
}

impl OpenError {
    /// The errno, for I/O errors.
    pub(crate) fn raw_os_error(&self) -> Option<i32> {
        match self {
            OpenError::Io { err, .. } => err.raw_os_error(),
            OpenError::Untrusted(_) => None,
        }
    }
}

/// The trust rule for one file or directory (the `StrictModes` rule). `me`
/// is labinit's effective uid (a non-root start may run its own files);
/// `ancestor`: a directory above the one that matters, where a root-owned
/// sticky directory is accepted. Pure.
pub(crate) fn verdict(uid: u32, mode: u32, me: u32, ancestor: bool) -> Result<(), &'static str> {
    if uid != 0 && uid != me {
        return Err(if me == 0 { "not owned by root" } else { "owned by neither root nor labinit's user" });
    }
    let sticky_dir = mode & libc::S_IFMT == libc::S_IFDIR && mode & libc::S_ISVTX != 0;
    if mode & 0o022 != 0 && !(ancestor && sticky_dir && uid == 0) {
        return Err("writable by group or others");
    }
    Ok(())
}

/// An open file (or directory) with what `fstat` said of it.
pub(crate) struct Opened {
    pub fd: OwnedFd,
    pub mode: u32,
    pub nlink: u64,
    /// The path as walked (links resolved), for messages.
    pub path: PathBuf,
}

impl Opened {
    pub(crate) fn is_regular(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
}

fn cstr(name: &OsStr, at: &Path) -> Result<CString, OpenError> {
    CString::new(name.as_bytes())
        .map_err(|_| OpenError::Io { path: at.to_owned(), err: io::Error::from_raw_os_error(libc::EINVAL) })
}

fn io_err(path: &Path) -> OpenError {
    OpenError::Io { path: path.to_owned(), err: io::Error::last_os_error() }
}

fn fstat(fd: RawFd, path: &Path) -> Result<libc::stat, OpenError> {
    // SAFETY: fstat into a zeroed local struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io_err(path));
    }
    Ok(st)
}

fn openat(dir: RawFd, name: &CString, flags: i32, mode: u32, path: &Path) -> Result<OwnedFd, OpenError> {
    // SAFETY: plain syscall; the result is owned here.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOFOLLOW, mode) };
    if fd < 0 {
        return Err(io_err(path));
    }
    // SAFETY: a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn readlinkat(dir: RawFd, name: &CString, path: &Path) -> Result<OsString, OpenError> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: the buffer is valid for its length.
    let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io_err(path));
    }
    buf.truncate(n as usize);
    Ok(OsString::from_vec(buf))
}

/// How a walk treats what it meets.
#[derive(Clone, Copy)]
struct Rules {
    /// Labinit's effective uid, the owner allowed besides root.
    me: u32,
    /// Refuse anything that fails [`verdict`]; without it, a link is only
    /// followed where its directory passes and refused (`ELOOP`) elsewhere.
    strict: bool,
}

/// Whether `st` passes; an error only with `strict` rules.
fn check(rules: Rules, st: &libc::stat, path: &Path, ancestor: bool) -> Result<bool, OpenError> {
    match verdict(st.st_uid, st.st_mode, rules.me, ancestor) {
        Ok(()) => Ok(true),
        Err(_) if !rules.strict => Ok(false),
        Err(why) => {
            Err(OpenError::Untrusted(Untrusted { path: path.to_owned(), uid: st.st_uid, mode: st.st_mode, why }))
        }
    }
}

/// The path's parts, `.` and empty parts dropped.
fn parts(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// A directory of the walk and whether links in it may be followed.
struct Dir {
    fd: OwnedFd,
    path: PathBuf,
    /// It passed [`verdict`] (as an ancestor).
    trusted: bool,
    /// Others may create entries in it (a sticky directory such as /tmp):
    /// only links owned by root or labinit's user are followed there.
    shared: bool,
}

impl Dir {
    fn new(fd: OwnedFd, path: PathBuf, st: &libc::stat, rules: Rules) -> Result<Dir, OpenError> {
        let trusted = check(rules, st, &path, true)?;
        Ok(Dir { fd, path, trusted, shared: st.st_mode & 0o022 != 0 })
    }

    /// Whether a link owned by `uid` in this directory may be followed. Pure.
    fn may_follow(&self, uid: u32, me: u32) -> bool {
        self.trusted && (!self.shared || uid == 0 || uid == me)
    }
}

fn open_root(rules: Rules) -> Result<Dir, OpenError> {
    let root = PathBuf::from("/");
    let fd =
        openat(libc::AT_FDCWD, &CString::new("/").unwrap_or_default(), libc::O_PATH | libc::O_DIRECTORY, 0, &root)?;
    let st = fstat(fd.as_raw_fd(), &root)?;
    Dir::new(fd, root, &st, rules)
}

/// Walk `rel` from `start` (a directory already checked, shown as
/// `shown`), opening the last part with `flags`/`mode`.
fn walk(
    start: Option<(BorrowedFd<'_>, &Path)>,
    rel: &Path,
    flags: i32,
    mode: u32,
    rules: Rules,
) -> Result<Opened, OpenError> {
    let mut cur = match start {
        Some((fd, p)) => {
            let dup = fd.try_clone_to_owned().map_err(|err| OpenError::Io { path: p.to_owned(), err })?;
            let st = fstat(dup.as_raw_fd(), p)?;
            Dir::new(dup, p.to_owned(), &st, rules)?
        }
        None => open_root(rules)?,
    };
    let mut todo: std::collections::VecDeque<OsString> = parts(rel).into();
    if todo.is_empty() {
        return Err(OpenError::Io { path: rel.to_owned(), err: io::Error::from_raw_os_error(libc::EISDIR) });
    }
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        let last = todo.is_empty();
        let here = if name == ".." {
            cur.path.parent().map(Path::to_owned).unwrap_or_else(|| PathBuf::from("/"))
        } else {
            cur.path.join(&name)
        };
        let c = cstr(&name, &here)?;
        // SAFETY: fstatat into a zeroed local struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let found = unsafe { libc::fstatat(cur.fd.as_raw_fd(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } == 0;
        if found && st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            if !cur.may_follow(st.st_uid, rules.me) {
                if rules.strict {
                    return Err(OpenError::Untrusted(Untrusted {
                        path: here,
                        uid: st.st_uid,
                        mode: st.st_mode,
                        why: "a symbolic link others could have placed",
                    }));
                }
                return Err(OpenError::Io { path: here, err: io::Error::from_raw_os_error(libc::ELOOP) });
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(OpenError::Io { path: here, err: io::Error::from_raw_os_error(libc::ELOOP) });
            }
            let target = readlinkat(cur.fd.as_raw_fd(), &c, &here)?;
            let target = PathBuf::from(target);
            if target.is_absolute() {
                cur = open_root(rules)?;
            }
            for p in parts(&target).into_iter().rev() {
                todo.push_front(p);
            }
            if todo.is_empty() {
                // A link to "/" itself.
                return Err(OpenError::Io { path: here, err: io::Error::from_raw_os_error(libc::EISDIR) });
            }
            continue;
        }
        if !last {
            let fd = openat(cur.fd.as_raw_fd(), &c, libc::O_PATH | libc::O_DIRECTORY, 0, &here)?;
            let st = fstat(fd.as_raw_fd(), &here)?;
            cur = Dir::new(fd, here, &st, rules)?;
            continue;
        }
        let fd = openat(cur.fd.as_raw_fd(), &c, flags, mode, &here)?;
        let st = fstat(fd.as_raw_fd(), &here)?;
        check(rules, &st, &here, false)?;
        return Ok(Opened { fd, mode: st.st_mode, nlink: st.st_nlink as u64, path: here });
    }
    unreachable_empty(rel)
}

fn unreachable_empty(rel: &Path) -> Result<Opened, OpenError> {
    Err(OpenError::Io { path: rel.to_owned(), err: io::Error::from_raw_os_error(libc::ENOENT) })
}

/// Open an absolute `path` with `flags` (`O_CLOEXEC` and `O_NOFOLLOW` are
/// added) and `mode` (for `O_CREAT`) without following a symbolic link that
/// someone other than root could have placed: a link is followed only in a
/// directory that passes [`verdict`] (`/var/run` → `/run`), refused with
/// `ELOOP` anywhere else (the last part included). No ownership
/// checks otherwise: for files in places users control (a shared volume),
/// where the point is that root's write lands where it was configured to.
pub(crate) fn open_nofollow(path: &Path, flags: i32, mode: u32) -> Result<Opened, OpenError> {
    if !path.is_absolute() {
        return Err(OpenError::Io { path: path.to_owned(), err: io::Error::from_raw_os_error(libc::EINVAL) });
    }
    walk(None, path, flags, mode, Rules { me: me(), strict: false })
}

/// Labinit's effective uid: the owner allowed besides root.
fn me() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Open an absolute `path` read-only if it and every directory above it
/// pass [`verdict`] (links followed only inside directories that passed).
pub(crate) fn open_trusted(path: &Path, flags: i32) -> Result<Opened, OpenError> {
    if !path.is_absolute() {
        return Err(OpenError::Io { path: path.to_owned(), err: io::Error::from_raw_os_error(libc::EINVAL) });
    }
    walk(None, path, flags, 0, Rules { me: me(), strict: true })
}

/// Open `name` inside the checked directory `dir` read-only, with the same
/// rules as [`open_trusted`] (a link may lead out of `dir`; where it leads is
/// checked from `/`). Non-blocking and without taking a terminal, so a FIFO
/// or device found there cannot hang or affect labinit.
pub(crate) fn open_trusted_in(dir: &Opened, name: &OsStr) -> Result<Opened, OpenError> {
    walk(
        Some((std::os::fd::AsFd::as_fd(&dir.fd), &dir.path)),
        Path::new(name),
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
        0,
        Rules { me: me(), strict: true },
    )
}

/// The names in the directory open as `dir` (no `.` and `..`), unsorted.
pub(crate) fn names(dir: &Opened) -> io::Result<Vec<OsString>> {
    // The directory fd may be O_PATH: reopen it for reading through /proc
    // would look up a path again, so open "." relative to it instead.
    let dot = CString::new(".").unwrap_or_default();
    // SAFETY: plain syscall; the result is owned by the DIR stream below.
    let fd =
        unsafe { libc::openat(dir.fd.as_raw_fd(), dot.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is ours; fdopendir takes it over (closed by closedir).
    let stream = unsafe { libc::fdopendir(fd) };
    if stream.is_null() {
        let e = io::Error::last_os_error();
        unsafe { libc::close(fd) };
        return Err(e);
    }
    let mut out = Vec::new();
    loop {
        // SAFETY: errno reset so end of stream and error can be told apart.
        unsafe { *libc::__errno_location() = 0 };
        let ent = unsafe { libc::readdir(stream) };
        if ent.is_null() {
            let errno = unsafe { *libc::__errno_location() };
            unsafe { libc::closedir(stream) };
            if errno != 0 {
                return Err(io::Error::from_raw_os_error(errno));
            }
            return Ok(out);
        }
        // SAFETY: d_name is NUL-terminated inside the entry.
        let name = unsafe { std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            out.push(OsString::from_vec(name.to_vec()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: u32 = libc::S_IFDIR;
    const REG: u32 = libc::S_IFREG;

    #[test]
    fn strict_modes_rule() {
        assert_eq!(verdict(0, REG | 0o755, 0, false), Ok(()));
        assert_eq!(verdict(0, DIR | 0o755, 0, true), Ok(()));
        assert!(verdict(123456, REG | 0o755, 0, false).is_err(), "owned by the user");
        assert!(verdict(0, REG | 0o775, 0, false).is_err(), "group-writable");
        assert!(verdict(0, REG | 0o757, 0, false).is_err(), "world-writable");
        // /tmp above a root-owned directory is fine; the steps directory
        // itself being sticky and world-writable is not (anyone adds steps).
        assert_eq!(verdict(0, DIR | 0o1777, 0, true), Ok(()));
        assert!(verdict(0, DIR | 0o1777, 0, false).is_err());
        assert!(verdict(1000, DIR | 0o1777, 0, true).is_err(), "a user's sticky directory");
        // A non-root labinit may run its own files.
        assert_eq!(verdict(1000, REG | 0o755, 1000, false), Ok(()));
        assert!(verdict(1001, REG | 0o755, 1000, false).is_err());
    }

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("labkit-trusted-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn chmod(p: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn nofollow_refuses_links_where_others_can_write_and_follows_them_elsewhere() {
        let d = temp("nofollow");
        std::fs::write(d.join("victim"), "v").unwrap();
        for (mode, follows) in [(0o777, false), (0o755, true)] {
            let shared = d.join(format!("shared-{mode:o}"));
            std::fs::create_dir(&shared).unwrap();
            chmod(&shared, mode);
            std::os::unix::fs::symlink(d.join("victim"), shared.join("log")).unwrap();
            let r = open_nofollow(&shared.join("log"), libc::O_RDONLY, 0);
            assert_eq!(r.is_ok(), follows, "mode {mode:o}");
            if !follows {
                assert_eq!(r.err().and_then(|e| e.raw_os_error()), Some(libc::ELOOP));
            }
            // A plain file in the same place is always fine.
            std::fs::write(shared.join("plain"), "p").unwrap();
            assert!(open_nofollow(&shared.join("plain"), libc::O_RDONLY, 0).is_ok());
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn trusted_open_names_the_writable_directory() {
        let d = temp("strict");
        std::fs::create_dir(d.join("steps")).unwrap();
        std::fs::write(d.join("steps/x"), "").unwrap();
        chmod(&d.join("steps/x"), 0o755);
        chmod(&d.join("steps"), 0o755);
        let dir = open_trusted(&d.join("steps"), libc::O_PATH | libc::O_DIRECTORY).unwrap();
        assert!(open_trusted_in(&dir, OsStr::new("x")).is_ok());
        assert_eq!(names(&dir).unwrap(), vec![OsString::from("x")]);
        chmod(&d.join("steps"), 0o775);
        match open_trusted(&d.join("steps"), libc::O_PATH | libc::O_DIRECTORY) {
            Err(OpenError::Untrusted(u)) => {
                assert_eq!(u.path, d.join("steps"));
                assert_eq!(u.why, "writable by group or others");
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a group-writable directory passed"),
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
