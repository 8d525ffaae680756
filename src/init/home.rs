//! The user's home directory: created from `/etc/skel` when missing, never
//! moved, emptied or recursively chowned. A home on another file system (a
//! volume, NFS) is left exactly as it is: chowning there is slow (100k-file
//! volumes), wrong (shared data) or impossible (root squash).
//!
//! Root never acts on a path the user could redirect: every component of the
//! home's path is opened relative to its parent's directory fd with
//! `O_NOFOLLOW` (a symlinked `/home` is refused, not followed, so `/home -> /`
//! with `CLUSTER_USER=etc` can never reach `/etc`), and every change inside
//! the home (creating `.bashrc`, copying `/etc/skel`, chown, chmod) is made
//! through a file descriptor: files are created with `O_EXCL | O_NOFOLLOW`,
//! owners and modes set with `fchown`/`fchmod` on that descriptor. A new home
//! is filled while it is still root's and mode 0700, and given to the user
//! last.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{fchown, fchownat, symlinkat, Gid, Uid};

use crate::init::files::Root;
use crate::init::provision::Note;

/// What happened to the home, for the log and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HomeAction {
    Created,
    /// It existed, root-owned on the image's file system (an emptyDir): only
    /// the top directory was chowned.
    ChownedTop,
    /// It existed and already belonged to the user.
    Kept,
    /// It is a mount (another file system): left untouched.
    Volume,
    /// It belongs to someone else on the image's file system, or is not a
    /// directory: left untouched.
    Foreign,
    /// A component of its path is a symbolic link or not a directory:
    /// nothing was created or changed.
    Unsafe,
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

fn ctx(e: Errno, what: String) -> io::Error {
    let e = io::Error::from(e);
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn ids(uid: u32, gid: u32) -> (Option<Uid>, Option<Gid>) {
    (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
}

fn is_dir(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

fn is_symlink(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
}

/// Ensure the home exists for `uid:gid`. Returns the action and any notes.
pub fn ensure(root: &Root, home: &str, uid: u32, gid: u32) -> io::Result<(HomeAction, Vec<Note>)> {
    let mut notes = Vec::new();
    let comps: Vec<&str> = home.split('/').filter(|c| !c.is_empty()).collect();
    let Some((last, parents)) = comps.split_last() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("home {home:?} is not a path below /")));
    };
    if comps.iter().any(|c| *c == "." || *c == "..") {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("home {home:?} has . or .. in it")));
    }
    // The root itself is the operator's (`/`, or `--root`): opened as given.
    let root_dir = root.path("/");
    let mut dir: OwnedFd = fs::File::open(&root_dir)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", root_dir.display())))?
        .into();
    let mut walked = String::new();
    for comp in parents {
        walked.push('/');
        walked.push_str(comp);
        let next = match openat(dir.as_fd(), *comp, dir_flags(), Mode::empty()) {
            Err(Errno::ENOENT) => {
                match mkdirat(dir.as_fd(), *comp, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(ctx(e, format!("cannot create {walked} for home {home}"))),
                }
                openat(dir.as_fd(), *comp, dir_flags(), Mode::empty())
            }
            other => other,
        };
        match next {
            Ok(fd) => dir = fd,
            Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
                notes.push(Note::Warn(format!(
                    "home {home}: {walked} is a symbolic link or not a directory; labinit creates and re-owns a home only through real directories, so the user has no usable home (make {walked} a directory in the image)"
                )));
                return Ok((HomeAction::Unsafe, notes));
            }
            Err(e) => return Err(ctx(e, format!("cannot open {walked} for home {home}"))),
        }
    }
    let parent = dir;
    let st = match fstatat(parent.as_fd(), *last, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Some(st),
        Err(Errno::ENOENT) => None,
        Err(e) => return Err(ctx(e, format!("cannot inspect home {home}"))),
    };
    let Some(st) = st else {
        match mkdirat(parent.as_fd(), *last, Mode::from_bits_truncate(0o700)) {
            Ok(()) => {}
            Err(e) => return Err(ctx(e, format!("cannot create home {home}"))),
        }
        let fd = openat(parent.as_fd(), *last, dir_flags(), Mode::empty())
            .map_err(|e| ctx(e, format!("cannot open the new home {home}")))?;
        // Filled while root's and 0700; given to the user last.
        copy_skel(&root.path("/etc/skel"), &fd, uid, gid)?;
        ensure_bashrc(root, &fd, home, uid, gid)?;
        fchmod(fd.as_fd(), Mode::from_bits_truncate(0o750)).map_err(|e| ctx(e, format!("cannot chmod home {home}")))?;
        let (u, g) = ids(uid, gid);
        fchown(fd.as_fd(), u, g).map_err(|e| ctx(e, format!("cannot chown home {home}")))?;
        notes.push(Note::Info(format!("created home {home} from /etc/skel")));
        return Ok((HomeAction::Created, notes));
    };
    if is_symlink(&st) || !is_dir(&st) {
        notes.push(Note::Warn(format!(
            "home {home} exists but is not a directory; the user has no usable home (remove it or mount a directory there)"
        )));
        return Ok((HomeAction::Foreign, notes));
    }
    let fd = match openat(parent.as_fd(), *last, dir_flags(), Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => {
            notes.push(Note::Warn(format!(
                "home {home} was replaced while labinit looked at it; left as it is (the user has no usable home)"
            )));
            return Ok((HomeAction::Foreign, notes));
        }
        Err(e) => return Err(ctx(e, format!("cannot open home {home}"))),
    };
    let meta = fstat(fd.as_fd()).map_err(|e| ctx(e, format!("cannot inspect home {home}")))?;
    let parent_dev = fstat(parent.as_fd()).map(|m| m.st_dev).ok();
    if parent_dev != Some(meta.st_dev) {
        if !writable_by(&meta, uid, gid) {
            notes.push(Note::Warn(format!(
                "home {home} is a mounted volume owned by uid {} gid {} (mode {:o}) that uid {uid} cannot write; labinit never changes a volume's owner, so fix it on the volume (or mount it elsewhere)",
                meta.st_uid,
                meta.st_gid,
                meta.st_mode & 0o7777
            )));
        } else {
            notes.push(Note::Info(format!("home {home} is a mounted volume; left as it is")));
        }
        return Ok((HomeAction::Volume, notes));
    }
    let action = if meta.st_uid == uid {
        HomeAction::Kept
    } else if meta.st_uid == 0 {
        let (u, g) = ids(uid, gid);
        fchown(fd.as_fd(), u, g).map_err(|e| ctx(e, format!("cannot chown home {home}")))?;
        notes.push(Note::Info(format!(
            "home {home} existed owned by root; gave its top directory to uid {uid} (contents untouched)"
        )));
        HomeAction::ChownedTop
    } else {
        notes.push(Note::Warn(format!(
            "home {home} belongs to uid {}, not {uid}; left as it is (labinit never re-owns a home's contents; run `sudo chown -R {uid}:{gid} {home}` if it is yours)",
            meta.st_uid
        )));
        return Ok((HomeAction::Foreign, notes));
    };
    ensure_bashrc(root, &fd, home, uid, gid)?;
    Ok((action, notes))
}

/// Rough owner/group/other write check (ACLs and NFS id mapping aside).
fn writable_by(meta: &FileStat, uid: u32, gid: u32) -> bool {
    let mode = meta.st_mode;
    (meta.st_uid == uid && mode & 0o200 != 0) || (meta.st_gid == gid && mode & 0o020 != 0) || mode & 0o002 != 0
}

/// Create `name` in `dir` exclusively, never through a link: `Ok(None)` if
/// something (a file, a link, anything) already has that name.
fn create_new(dir: &OwnedFd, name: &std::ffi::OsStr, mode: u32) -> Result<Option<fs::File>, Errno> {
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match openat(dir.as_fd(), name, flags, Mode::from_bits_truncate(mode)) {
        Ok(fd) => Ok(Some(fs::File::from(fd))),
        Err(Errno::EEXIST) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The legacy command line sources `~/.bashrc`; make sure one exists. The
/// file is created with `O_EXCL | O_NOFOLLOW` in the home's fd, so a link or
/// file the user put there (or swaps in) is never written or chmodded.
fn ensure_bashrc(root: &Root, home_fd: &OwnedFd, home: &str, uid: u32, gid: u32) -> io::Result<()> {
    let what = |e: Errno| ctx(e, format!("cannot create {home}/.bashrc"));
    let Some(mut f) = create_new(home_fd, std::ffi::OsStr::new(".bashrc"), 0o600).map_err(what)? else {
        return Ok(());
    };
    let content = fs::read(root.path("/etc/skel/.bashrc")).unwrap_or_default();
    f.write_all(&content).map_err(|e| io::Error::new(e.kind(), format!("cannot write {home}/.bashrc: {e}")))?;
    fchmod(f.as_fd(), Mode::from_bits_truncate(0o644)).map_err(what)?;
    let (u, g) = ids(uid, gid);
    fchown(f.as_fd(), u, g).map_err(what)
}

/// Copy `/etc/skel` into a new home (`dest`, still root's), every entry owned
/// by the user. Symlinks are copied as links; special files are skipped.
fn copy_skel(skel: &Path, dest: &OwnedFd, uid: u32, gid: u32) -> io::Result<()> {
    let Ok(entries) = fs::read_dir(skel) else { return Ok(()) };
    let (u, g) = ids(uid, gid);
    for entry in entries {
        let entry = entry?;
        let from = entry.path();
        let name = entry.file_name();
        let what = |e: Errno| ctx(e, format!("cannot copy {} into the new home", from.display()));
        let meta = fs::symlink_metadata(&from)?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            symlinkat(fs::read_link(&from)?.as_os_str().as_bytes(), dest.as_fd(), name.as_os_str()).map_err(what)?;
            fchownat(dest.as_fd(), name.as_os_str(), u, g, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(what)?;
        } else if ft.is_dir() {
            mkdirat(dest.as_fd(), name.as_os_str(), Mode::from_bits_truncate(0o700)).map_err(what)?;
            let sub = openat(dest.as_fd(), name.as_os_str(), dir_flags(), Mode::empty()).map_err(what)?;
            copy_skel(&from, &sub, uid, gid)?;
            fchmod(sub.as_fd(), Mode::from_bits_truncate(meta.mode() & 0o7777)).map_err(what)?;
            fchown(sub.as_fd(), u, g).map_err(what)?;
        } else if ft.is_file() {
            let Some(mut out) = create_new(dest, name.as_os_str(), 0o600).map_err(what)? else { continue };
            io::copy(&mut fs::File::open(&from)?, &mut out)?;
            fchmod(out.as_fd(), Mode::from_bits_truncate(meta.mode() & 0o777)).map_err(what)?;
            fchown(out.as_fd(), u, g).map_err(what)?;
        }
    }
    Ok(())
}
