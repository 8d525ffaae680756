//! PID 1's record of the job, for the ways in that start later: who the job
//! runs as (user, ids, the supplementary groups it really got, home, shell)
//! and what the setup steps exported, in `/run/labkit/job`, written once
//! setup is done. `labinit shell` reads it, so a `kubectl exec` without the
//! `CLUSTER_*` variables still becomes the job's user with the job's
//! environment. Also the sshd `SetEnv` line for ssh sessions.
//!
//! The files live in a directory that must belong to the writer (root in a
//! normal pod) and be writable by nobody else; they are written through a
//! directory descriptor (temp file, `O_EXCL|O_NOFOLLOW`, rename) and read
//! through one with `O_NOFOLLOW` after checking owner and mode, so a user
//! can neither plant a record for root to trust nor make root write through
//! a link. The record holds the steps' exports, which may be secrets: mode
//! 0600.

use std::ffi::{CString, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::libc;

use crate::init::files::Root;
use crate::init::job::Identity;
use crate::init::{sshd, steps};

/// The directory of labinit's run-time files (container path).
pub(crate) const DIR: &str = "/run/labkit";
/// PID 1's record of the job, in [`DIR`].
pub(crate) const RECORD: &str = "job";
/// The sshd `SetEnv` line for ssh sessions, in [`DIR`].
pub(crate) const SSHD_SETENV: &str = "sshd_setenv.conf";
/// A record larger than this is not read (exports are bounded far below).
const MAX_LEN: u64 = 16 << 20;
const VERSION: &str = "1";

/// What PID 1 set up for the job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobState {
    /// `None`: the job runs without a user (no `CLUSTER_*`, root, or a
    /// non-root start).
    pub identity: Option<Identity>,
    /// The setup steps' exports, in order.
    pub exports: Vec<(String, String)>,
}

/// The record as text: `KEY VALUE` lines, identity lines all or none,
/// `export NAME=value` lines last. Pure.
pub(crate) fn render(state: &JobState) -> String {
    let mut out = String::from(
        "# labinit: the job's identity and the setup steps' exports, written by PID 1 after setup, read by `labinit shell`. Do not edit.\n",
    );
    out.push_str(&format!("version {VERSION}\n"));
    if let Some(i) = &state.identity {
        let groups: Vec<String> = i.groups.iter().map(u32::to_string).collect();
        out.push_str(&format!("user {}\nuid {}\ngid {}\ngroups {}\n", i.name, i.uid, i.gid, groups.join(",")));
        out.push_str(&format!("home {}\nshell {}\n", i.home.display(), i.shell.display()));
    }
    for (k, v) in &state.exports {
        out.push_str(&format!("export {k}={v}\n"));
    }
    out
}

/// Parse a record written by [`render`]; anything else is an error naming
/// the line. Pure.
pub(crate) fn parse(text: &str) -> Result<JobState, String> {
    let mut fields: Vec<(&str, &str)> = Vec::new();
    let mut exports = Vec::new();
    let mut version = None;
    for (n, line) in text.split('\n').enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once(' ').ok_or_else(|| format!("line {}: expected KEY VALUE", n + 1))?;
        match key {
            "version" => version = Some(value),
            "export" => match steps::parse_env_line(value) {
                Ok(Some(kv)) => exports.push(kv),
                Ok(None) => {}
                Err(why) => return Err(format!("line {}: {why}", n + 1)),
            },
            "user" | "uid" | "gid" | "groups" | "home" | "shell" if !fields.iter().any(|(k, _)| *k == key) => {
                fields.push((key, value))
            }
            _ => return Err(format!("line {}: unexpected {key:?}", n + 1)),
        }
    }
    if version != Some(VERSION) {
        return Err(format!("not a version {VERSION} record"));
    }
    let identity = match fields.len() {
        0 => None,
        6 => {
            let get = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| *v).unwrap_or("");
            let id = |k: &str| get(k).parse::<u32>().map_err(|_| format!("{k} {:?} is not an id", get(k)));
            let groups = get("groups")
                .split(',')
                .filter(|g| !g.is_empty())
                .map(|g| g.parse::<u32>().map_err(|_| format!("group {g:?} is not an id")))
                .collect::<Result<Vec<u32>, String>>()?;
            let (home, shell) = (get("home"), get("shell"));
            if get("user").is_empty() || !home.starts_with('/') || !shell.starts_with('/') {
                return Err("the user, home or shell is not usable".into());
            }
            Some(Identity {
                name: get("user").to_owned(),
                uid: id("uid")?,
                gid: id("gid")?,
                groups,
                home: home.into(),
                shell: shell.into(),
            })
        }
        _ => return Err("the identity is incomplete".into()),
    };
    Ok(JobState { identity, exports })
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

fn last_error(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Check that a descriptor's file belongs to one of `owners` and is not
/// writable by group or others; its status.
fn check_owner(fd: &OwnedFd, what: &str, owners: &[u32]) -> io::Result<nix::sys::stat::FileStat> {
    let st =
        nix::sys::stat::fstat(fd).map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("{what}: {e}")))?;
    if !owners.contains(&st.st_uid) || st.st_mode & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{what} belongs to uid {} with mode {:o}; it must belong to uid {} and be writable by nobody else",
                st.st_uid,
                st.st_mode & 0o7777,
                owners[0]
            ),
        ));
    }
    Ok(st)
}

/// Open [`DIR`] under `root` without following a link, after checking its
/// owner and mode; `create`: make it first (0755) when missing.
fn open_dir(root: &Root, create: bool, owners: &[u32]) -> io::Result<OwnedFd> {
    let path = root.path(DIR);
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    if create {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        // SAFETY: valid C string.
        if unsafe { libc::mkdir(c.as_ptr(), 0o755) } != 0
            && io::Error::last_os_error().kind() != io::ErrorKind::AlreadyExists
        {
            return Err(last_error(&format!("cannot create {DIR}")));
        }
    }
    // SAFETY: valid C string; the descriptor is owned below.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(last_error(&format!("cannot open {DIR}")));
    }
    // SAFETY: fd was just opened and is owned only here.
    let dir = unsafe { OwnedFd::from_raw_fd(fd) };
    if create {
        // Our own directory made group- or world-writable by a umask of 0
        // (`mkdir -p` elsewhere): take it back before writing into it.
        if let Ok(st) = nix::sys::stat::fstat(&dir) {
            if st.st_uid == owners[0] && st.st_mode & 0o022 != 0 {
                // SAFETY: valid descriptor.
                unsafe { libc::fchmod(dir.as_raw_fd(), st.st_mode & 0o755) };
            }
        }
    }
    check_owner(&dir, DIR, owners)?;
    Ok(dir)
}

/// Write `data` as `DIR/name` (mode `mode`) for PID 1: the directory must
/// be this process's and writable by nobody else; the file is replaced
/// whole (temp file, rename), never through a link.
pub(crate) fn write_file(root: &Root, name: &str, data: &[u8], mode: u32) -> io::Result<()> {
    // SAFETY: geteuid never fails.
    let me = unsafe { libc::geteuid() };
    let dir = open_dir(root, true, &[me])?;
    let tmp = cstr(&format!(".{name}.tmp"));
    let final_name = cstr(name);
    // SAFETY: valid descriptor and C strings throughout.
    unsafe {
        let create = || {
            libc::openat(
                dir.as_raw_fd(),
                tmp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        };
        let mut fd = create();
        // A leftover of a killed start (or anything else at our temp name):
        // removed, never followed. Tried after the create, which usually
        // finds no leftover, so that the common case looks the name up once.
        if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
            libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0);
            fd = create();
        }
        if fd < 0 {
            return Err(last_error(&format!("cannot create {DIR}/{name}")));
        }
        let mut f = std::fs::File::from_raw_fd(fd);
        let written = f.write_all(data).and_then(|()| {
            if libc::fchmod(f.as_raw_fd(), mode) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
        if let Err(e) = written {
            libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0);
            return Err(io::Error::new(e.kind(), format!("cannot write {DIR}/{name}: {e}")));
        }
        // An existing file is a stale one (these files are written once, as
        // PID 1 starts): remove it first. A rename over an existing file makes
        // ext4 (auto_da_alloc) write the new file's data out before the
        // rename returns, 0.5–0.8 ms on the lab's disks against 40 µs for
        // unlink and rename; a reader meanwhile finds no file, as before the
        // first start.
        libc::unlinkat(dir.as_raw_fd(), final_name.as_ptr(), 0);
        if libc::renameat(dir.as_raw_fd(), tmp.as_ptr(), dir.as_raw_fd(), final_name.as_ptr()) != 0 {
            let e = last_error(&format!("cannot replace {DIR}/{name}"));
            libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0);
            return Err(e);
        }
    }
    Ok(())
}

/// Where `labinit shell`'s identity comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShellSource {
    /// The process's `CLUSTER_*` variables, resolved from the account files
    /// (no record from PID 1, or one for another user).
    Requested,
    /// PID 1's record, which the `CLUSTER_*` variables match.
    Recorded,
    /// PID 1's record, the process having no `CLUSTER_*` variables.
    RecordedWithoutRequest,
    /// No user: the process's own identity.
    Caller,
}

/// Whom `labinit shell` becomes. `requested`: the identity the process's
/// `CLUSTER_*` variables resolve to (`None` without them or for root);
/// `asked`: whether they were set at all; `recorded`: PID 1's record
/// (`None`: there is none; `Some(None)`: the job runs without a user). A
/// record wins when it is for the requested user (same name and uid): it
/// holds the groups the job really got. Pure.
pub(crate) fn shell_identity(
    requested: Option<Identity>,
    asked: bool,
    recorded: Option<Option<&Identity>>,
) -> (Option<Identity>, ShellSource) {
    match (requested, recorded) {
        (Some(r), Some(Some(rec))) if rec.name == r.name && rec.uid == r.uid => {
            (Some(rec.clone()), ShellSource::Recorded)
        }
        (Some(r), _) => (Some(r), ShellSource::Requested),
        (None, Some(rec)) if !asked => match rec {
            Some(rec) => (Some(rec.clone()), ShellSource::RecordedWithoutRequest),
            None => (None, ShellSource::Caller),
        },
        (None, _) => (None, ShellSource::Caller),
    }
}

/// The line that says where `labinit shell`'s identity came from when that
/// is not the obvious place, and whether it is a warning: `identity` and
/// `source` from [`shell_identity`], `recorded` as given to it, `asked`
/// whether `CLUSTER_*` variables were set, `euid` the caller's,
/// `record_path` PID 1's record. Pure.
pub(crate) fn shell_identity_note(
    identity: Option<&Identity>,
    source: &ShellSource,
    recorded: Option<Option<&Identity>>,
    asked: bool,
    euid: u32,
    record_path: &str,
) -> Option<(bool, String)> {
    match (source, identity, recorded) {
        (ShellSource::RecordedWithoutRequest, Some(i), _) => Some((false, format!(
            "no CLUSTER_* variables in this process: becoming {} (uid {}), whom PID 1 runs the job as ({record_path})",
            i.name, i.uid
        ))),
        (ShellSource::Requested, Some(i), Some(Some(rec))) => Some((true, format!(
            "the CLUSTER_* variables ask for {} (uid {}), but PID 1 runs the job as {} (uid {}); becoming {} as asked, with the groups the account files give",
            i.name, i.uid, rec.name, rec.uid, i.name
        ))),
        (ShellSource::Caller, None, Some(None)) if !asked => Some((false, format!(
            "PID 1 runs the job without a cluster user ({record_path}): the shell runs as uid {euid}"
        ))),
        (ShellSource::Caller, None, None) if !asked => Some((false, format!(
            "no CLUSTER_* variables and no record of PID 1 ({record_path}): the shell runs as uid {euid}"
        ))),
        _ => None,
    }
}

/// Keep the sshd `SetEnv` file that gives ssh sessions `session`, the
/// job's environment for them ([`sshd::sshd_setenv_file`], mode 0600);
/// returns its path under `root`.
pub(crate) fn write_sshd_setenv(root: &Root, session: &[(OsString, OsString)]) -> io::Result<PathBuf> {
    write_file(root, SSHD_SETENV, &sshd::sshd_setenv_file(session), 0o600)?;
    Ok(root.path(format!("{DIR}/{SSHD_SETENV}")))
}

/// Keep the record for `labinit shell` (mode 0600).
pub(crate) fn write(root: &Root, state: &JobState) -> io::Result<()> {
    write_file(root, RECORD, render(state).as_bytes(), 0o600)
}

/// Read PID 1's record. `Ok(None)`: there is none (no labinit PID 1, or it
/// could not write one). An error says why a record that exists is not used:
/// it cannot be read (a non-root caller and root's 0600 file), it belongs
/// to someone else than root or this process, someone else may write it, it
/// is not a regular file, or it does not parse.
pub(crate) fn read(root: &Root) -> Result<Option<JobState>, String> {
    // SAFETY: geteuid never fails.
    let me = unsafe { libc::geteuid() };
    let owners: &[u32] = if me == 0 { &[0] } else { &[0, me] };
    let dir = match open_dir(root, false, owners) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let name = cstr(RECORD);
    // SAFETY: valid descriptor and C string; the result is owned below.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::NotFound {
            return Ok(None);
        }
        return Err(format!("cannot read {DIR}/{RECORD}: {e}"));
    }
    // SAFETY: fd was just opened and is owned only here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let what = format!("{DIR}/{RECORD}");
    let m = check_owner(&fd, &what, owners).map_err(|e| e.to_string())?;
    if m.st_mode & libc::S_IFMT != libc::S_IFREG || m.st_size as u64 > MAX_LEN {
        return Err(format!("{what} is not a regular file of at most {MAX_LEN} bytes"));
    }
    let mut text = String::new();
    std::fs::File::from(fd).take(MAX_LEN).read_to_string(&mut text).map_err(|e| format!("cannot read {what}: {e}"))?;
    parse(&text).map(Some).map_err(|e| format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity {
            name: "alice".into(),
            uid: 123456,
            gid: 11166,
            groups: vec![11166, 44, 555],
            home: "/home/alice".into(),
            shell: "/bin/bash".into(),
        }
    }

    #[test]
    fn a_leftover_temp_link_is_replaced_never_followed() {
        let dir = std::env::temp_dir().join(format!("labkit-state-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("run/labkit")).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "keep me\n").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("run/labkit/.job.tmp")).unwrap();
        let root = Root::new(&dir);
        let state = JobState { identity: Some(alice()), exports: vec![] };
        write(&root, &state).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");
        assert_eq!(read(&root), Ok(Some(state.clone())));
        assert!(std::fs::symlink_metadata(dir.join("run/labkit/.job.tmp")).is_err());
        // Control: a second write replaces the first record.
        let none = JobState::default();
        write(&root, &none).unwrap();
        assert_eq!(read(&root), Ok(Some(none)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn record_roundtrips() {
        let exports = vec![("TORCH_HOME".into(), "/data/torch".into()), ("ODD".into(), "a b=c # d \\ \"e\"".into())];
        for identity in [Some(alice()), None] {
            let s = JobState { identity, exports: exports.clone() };
            assert_eq!(parse(&render(&s)), Ok(s.clone()));
        }
        assert_eq!(parse(&render(&JobState::default())), Ok(JobState::default()));
    }

    #[test]
    fn broken_records_are_refused_with_the_line() {
        let good = render(&JobState { identity: Some(alice()), exports: vec![] });
        assert!(parse(&good).is_ok());
        let cases = [
            (good.replace("version 1", "version 2"), "version"),
            (good.replace("uid 123456\n", ""), "incomplete"),
            (good.replace("uid 123456", "uid 12x"), "not an id"),
            (good.replace("groups 11166,44,555", "groups 11166,x"), "not an id"),
            (good.replace("home /home/alice", "home alice"), "not usable"),
            (good.clone() + "uid 0\n", "unexpected"),
            (good.clone() + "export HOME=/root\n", "HOME"),
            (good.clone() + "export LABKIT_X=1\n", "reserved"),
            (good.clone() + "sudo yes\n", "unexpected"),
            (good.clone() + "nospace\n", "KEY VALUE"),
        ];
        for (text, why) in cases {
            let e = parse(&text).expect_err(why);
            assert!(e.contains(why), "{e} / {why}");
        }
    }

    /// The safety checks need root (chown); run as the test suite does.
    #[test]
    fn written_record_is_read_back_and_a_planted_one_is_refused() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        // SAFETY: geteuid never fails.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = std::env::temp_dir().join(format!("labkit-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let root = Root::new(&dir);
        assert_eq!(read(&root), Ok(None), "no record yet");
        let s = JobState { identity: Some(alice()), exports: vec![("A".into(), "1".into())] };
        write(&root, &s).unwrap();
        assert_eq!(read(&root), Ok(Some(s.clone())));
        let rec = dir.join("run/labkit/job");
        assert_eq!(std::fs::metadata(&rec).unwrap().mode() & 0o777, 0o600);
        // A second write replaces the first whole.
        let other = JobState { identity: None, exports: vec![("B".into(), "2".into())] };
        write(&root, &other).unwrap();
        assert_eq!(read(&root), Ok(Some(other)));
        assert!(!dir.join("run/labkit/.job.tmp").exists(), "no temp file is left");
        write(&root, &s).unwrap();
        assert_eq!(read(&root), Ok(Some(s.clone())));
        // A record of another owner (a user's) is refused, not trusted.
        std::os::unix::fs::chown(&rec, Some(123456), None).unwrap();
        assert!(read(&root).unwrap_err().contains("belongs to uid 123456"));
        // A symlink in its place is not followed.
        std::fs::remove_file(&rec).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &rec).unwrap();
        assert!(read(&root).is_err());
        // Writing replaces the link, never writes through it.
        write(&root, &s).unwrap();
        assert!(!std::fs::symlink_metadata(&rec).unwrap().file_type().is_symlink());
        // A directory others may write is refused for reading; writing
        // takes our own directory back to 0755 first.
        let run = dir.join("run/labkit");
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(read(&root).unwrap_err().contains("writable by nobody else"));
        write(&root, &s).unwrap();
        assert_eq!(std::fs::metadata(&run).unwrap().mode() & 0o777, 0o755);
        assert_eq!(read(&root), Ok(Some(s.clone())));
        // A directory that is not ours is never written into.
        std::os::unix::fs::chown(&run, Some(123456), None).unwrap();
        assert!(write(&root, &s).unwrap_err().to_string().contains("belongs to uid 123456"));
        assert!(read(&root).is_err());
        // Control: back to root, fine again.
        std::os::unix::fs::chown(&run, Some(0), None).unwrap();
        assert_eq!(read(&root), Ok(Some(s.clone())));
        // /run/labkit itself a link (to a directory a user chose): not followed.
        std::fs::rename(&run, dir.join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(dir.join("elsewhere"), &run).unwrap();
        assert!(read(&root).unwrap_err().contains("cannot open /run/labkit"));
        assert!(write(&root, &s).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn whom_labinit_shell_becomes() {
        let bob = Identity { name: "bob".into(), uid: 2000, ..alice() };
        let mut recorded = alice();
        recorded.groups = vec![11166, 44];
        // The record for the requested user wins: it has the job's groups.
        assert_eq!(
            shell_identity(Some(alice()), true, Some(Some(&recorded))),
            (Some(recorded.clone()), ShellSource::Recorded)
        );
        // No CLUSTER_* in the exec: PID 1's user, not root.
        assert_eq!(
            shell_identity(None, false, Some(Some(&recorded))),
            (Some(recorded.clone()), ShellSource::RecordedWithoutRequest)
        );
        // Control: without a record the exec stays who it is.
        assert_eq!(shell_identity(None, false, None), (None, ShellSource::Caller));
        // A record for another user does not override an explicit request.
        assert_eq!(shell_identity(Some(bob.clone()), true, Some(Some(&recorded))), (Some(bob), ShellSource::Requested));
        assert_eq!(shell_identity(Some(alice()), true, None), (Some(alice()), ShellSource::Requested));
        // PID 1 runs the job without a user; so does the shell.
        assert_eq!(shell_identity(None, false, Some(None)), (None, ShellSource::Caller));
        // CLUSTER_USER=root asked explicitly: root, whatever the record says.
        assert_eq!(shell_identity(None, true, Some(Some(&recorded))), (None, ShellSource::Caller));
    }

    #[test]
    fn the_shell_says_where_its_identity_came_from_when_not_obvious() {
        let rec = alice();
        let note = |id: Option<&Identity>, src: ShellSource, recorded, asked| {
            shell_identity_note(id, &src, recorded, asked, 1000, "/run/labkit/job")
        };
        let (warn, line) = note(Some(&rec), ShellSource::RecordedWithoutRequest, Some(Some(&rec)), false).unwrap();
        assert!(!warn && line.starts_with("no CLUSTER_* variables in this process: becoming alice"), "{line}");
        let bob = Identity { name: "bob".into(), uid: 2000, ..alice() };
        let (warn, line) = note(Some(&bob), ShellSource::Requested, Some(Some(&rec)), true).unwrap();
        assert!(warn && line.contains("ask for bob (uid 2000), but PID 1 runs the job as alice"), "{line}");
        let (_, line) = note(None, ShellSource::Caller, None, false).unwrap();
        assert!(line.ends_with("the shell runs as uid 1000"), "{line}");
        // Controls: the obvious cases say nothing.
        assert_eq!(note(Some(&rec), ShellSource::Recorded, Some(Some(&rec)), true), None);
        assert_eq!(note(Some(&bob), ShellSource::Requested, None, true), None);
        assert_eq!(note(None, ShellSource::Caller, None, true), None, "CLUSTER_USER=root asked");
    }
}
