//! The user's home directory: created from `/etc/skel` when missing, never
//! moved, emptied or recursively chowned. A home on another file system (a
//! volume, NFS) is left exactly as it is: chowning there is slow (100k-file
//! volumes), wrong (shared data) or impossible (root squash).

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

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
    /// It belongs to someone else on the image's file system: left untouched.
    Foreign,
}

/// Ensure the home exists for `uid:gid`. Returns the action and any notes.
pub fn ensure(root: &Root, home: &str, uid: u32, gid: u32) -> io::Result<(HomeAction, Vec<Note>)> {
    let path = root.path(home);
    let mut notes = Vec::new();
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io::Error::new(e.kind(), format!("cannot inspect home {home}: {e}"))),
    };
    let Some(meta) = meta else {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot create the parent of {home}: {e}")))?;
        }
        fs::create_dir(&path).map_err(|e| io::Error::new(e.kind(), format!("cannot create home {home}: {e}")))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o750))?;
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
        copy_skel(&root.path("/etc/skel"), &path, uid, gid)?;
        ensure_bashrc(root, home, uid, gid)?;
        notes.push(Note::Info(format!("created home {home} from /etc/skel")));
        return Ok((HomeAction::Created, notes));
    };
    if meta.file_type().is_symlink() || !meta.is_dir() {
        notes.push(Note::Warn(format!(
            "home {home} exists but is not a directory; the user has no usable home (remove it or mount a directory there)"
        )));
        return Ok((HomeAction::Foreign, notes));
    }
    let parent_dev = path.parent().and_then(|p| fs::metadata(p).ok()).map(|m| m.dev());
    if parent_dev != Some(meta.dev()) {
        if !writable_by(&meta, uid, gid) {
            notes.push(Note::Warn(format!(
                "home {home} is a mounted volume owned by uid {} gid {} (mode {:o}) that uid {uid} cannot write; labinit never changes a volume's owner, so fix it on the volume (or mount it elsewhere)",
                meta.uid(),
                meta.gid(),
                meta.mode() & 0o7777
            )));
        } else {
            notes.push(Note::Info(format!("home {home} is a mounted volume; left as it is")));
        }
        return Ok((HomeAction::Volume, notes));
    }
    let action = if meta.uid() == uid {
        HomeAction::Kept
    } else if meta.uid() == 0 {
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
        notes.push(Note::Info(format!(
            "home {home} existed owned by root; gave its top directory to uid {uid} (contents untouched)"
        )));
        HomeAction::ChownedTop
    } else {
        notes.push(Note::Warn(format!(
            "home {home} belongs to uid {}, not {uid}; left as it is (labinit never re-owns a home's contents; run `sudo chown -R {uid}:{gid} {home}` if it is yours)",
            meta.uid()
        )));
        return Ok((HomeAction::Foreign, notes));
    };
    ensure_bashrc(root, home, uid, gid)?;
    Ok((action, notes))
}

/// Rough owner/group/other write check (ACLs and NFS id mapping aside).
fn writable_by(meta: &fs::Metadata, uid: u32, gid: u32) -> bool {
    let mode = meta.mode();
    (meta.uid() == uid && mode & 0o200 != 0) || (meta.gid() == gid && mode & 0o020 != 0) || mode & 0o002 != 0
}

/// The legacy command line sources `~/.bashrc`; make sure one exists.
fn ensure_bashrc(root: &Root, home: &str, uid: u32, gid: u32) -> io::Result<()> {
    let rc = root.path(home).join(".bashrc");
    if fs::symlink_metadata(&rc).is_ok() {
        return Ok(());
    }
    let content = fs::read(root.path("/etc/skel/.bashrc")).unwrap_or_default();
    fs::write(&rc, content)?;
    fs::set_permissions(&rc, fs::Permissions::from_mode(0o644))?;
    std::os::unix::fs::lchown(&rc, Some(uid), Some(gid))
}

/// Copy `/etc/skel` into a new home, every entry owned by the user. Symlinks
/// are copied as links; special files are skipped.
fn copy_skel(skel: &Path, dest: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let Ok(entries) = fs::read_dir(skel) else { return Ok(()) };
    for entry in entries {
        let entry = entry?;
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let meta = fs::symlink_metadata(&from)?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else if ft.is_dir() {
            fs::create_dir(&to)?;
            fs::set_permissions(&to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            copy_skel(&from, &to, uid, gid)?;
        } else if ft.is_file() {
            fs::copy(&from, &to)?;
            fs::set_permissions(&to, fs::Permissions::from_mode(meta.mode() & 0o777))?;
        } else {
            continue;
        }
        std::os::unix::fs::lchown(&to, Some(uid), Some(gid))?;
    }
    Ok(())
}
