//! Who every child of labinit runs as and what it is started with: the job,
//! the setup steps, the services, `labinit shell` and ssh sessions. One
//! builder for all of them, so that they cannot disagree. Pure: no system
//! calls and no files; the caller passes what it read (the account tables,
//! the groups PID 1 was started with, its ids, the environment).
//!
//! The rules, for every way in:
//! - The identity (user, uid, gid, supplementary groups, home, shell) is read
//!   from passwd and group *after* the setup steps ([`identity_from_accounts`]),
//!   so a step's `usermod -aG video alice` or `usermod -d /data/alice alice`
//!   reaches the job, `labinit shell` and ssh sessions alike.
//! - HOME, USER, LOGNAME and SHELL always come from that identity, as one
//!   set. A step cannot export them ([`reserved_export`]): a step that wants
//!   another home or shell changes the account, which is then applied whole
//!   (the job, the shell, sshd and `su` all read the same entry).
//! - The environment is the container's without labinit's own `LABKIT_*`
//!   settings, with the identity's four variables, then the steps' exports
//!   ([`job_env`]). ssh sessions get it through sshd's `SetEnv`
//!   ([`sshd_setenv`]) minus what sshd sets per session ([`session_env`]).
//!   Services and steps run as root with the container's environment and are
//!   told who the job runs as ([`service_env`], [`step_env`]); a service
//!   starts the user's side with `labinit shell -- CMD`, which gets the job's.
//!
//! - ssh sessions get the groups sshd's `initgroups` gives (the account
//!   files'), not the runtime's extra gids (`fsGroup`): sshd, not labinit,
//!   starts them.
//!
//! Also here: the pure parts of starting a program (the shell, the working
//! directory, `execvp`'s search, the argv of a command string). Assembling
//! them into a launch, and the fork/exec, stay in [`crate::init::run`].

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::init::accounts::{Database, Table};
use crate::init::config::AccountRequest;
use crate::init::provision;

/// The environment variable an outer labinit leaves in the job's
/// environment (its pid), so that a labinit started from inside the job does
/// not set up again or stack a second supervisor.
pub const SUPERVISOR_VAR: &str = "LABKIT_SUPERVISOR";

/// The variables that say who a process is. Set together from the identity,
/// never one by one.
pub const IDENTITY_VARS: [&str; 4] = ["HOME", "USER", "LOGNAME", "SHELL"];

/// Who the job runs as, fully resolved from the account files (never NSS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups for `setgroups`, primary group included: the
    /// groups whose member lists name the user, plus the gids PID 1 was started
    /// with that root's own memberships do not explain (fsGroup, --group-add).
    pub groups: Vec<u32>,
    /// Path inside the container (not prefixed by the test root).
    pub home: PathBuf,
    pub shell: PathBuf,
}

/// The process's own ids, for children when no user was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

/// The identity of `req` as the account files say it now (after the setup
/// steps): uid, name and primary gid from the request; home and shell from
/// the user's passwd entry when it holds this name and uid (else
/// `/home/NAME` and `default_shell`: the files could not be written);
/// supplementary groups from every group listing the user plus the
/// runtime's extra gids in `inherited` (see
/// [`provision::supplementary_groups`]).
pub fn identity_from_accounts(
    passwd: &Table,
    group: &Table,
    req: &AccountRequest,
    inherited: &[u32],
    default_shell: &str,
) -> Identity {
    let entry = passwd
        .all_with_id(2, req.uid)
        .into_iter()
        .find(|&i| passwd.field(i, 0) == req.user)
        .map(|i| (passwd.field(i, 5), passwd.field(i, 6)));
    let (home, shell) = match entry {
        Some((h, s)) => (
            Some(h).filter(|h| h.starts_with('/')).unwrap_or_else(|| format!("/home/{}", req.user)),
            Some(s).filter(|s| s.starts_with('/')).unwrap_or_else(|| default_shell.to_owned()),
        ),
        None => (format!("/home/{}", req.user), default_shell.to_owned()),
    };
    let db = Database { passwd: passwd.clone(), group: group.clone(), shadow: None, gshadow: None };
    let groups = provision::supplementary_groups(&db, &req.user, req.gid, inherited);
    Identity { name: req.user.clone(), uid: req.uid, gid: req.gid, groups, home: home.into(), shell: shell.into() }
}

/// Why a step may not export `name` through `LABKIT_ENV`, if it may not.
/// HOME, USER, LOGNAME and SHELL say who the job is and come from the
/// account as one set; exporting one of them would leave the others (and
/// sshd, `su`, `~`) pointing elsewhere.
pub fn reserved_export(name: &str) -> Option<String> {
    IDENTITY_VARS.contains(&name).then(|| {
        format!(
            "{name} is set from the account together with {}; change the account in the step instead (usermod -d HOME or -s SHELL \"$LABKIT_USER\"): labinit reads it after the steps",
            IDENTITY_VARS.iter().filter(|v| **v != name).copied().collect::<Vec<_>>().join(", ")
        )
    })
}

/// An environment under construction: order kept, a replaced variable stays
/// in its place. Linear: names are indexed (steps can export tens of
/// thousands of variables, and PID 1 builds this before the job starts).
#[derive(Default)]
struct Env {
    slots: Vec<Option<(OsString, OsString)>>,
    index: std::collections::HashMap<OsString, usize>,
}

impl Env {
    /// The pairs as given, duplicates kept (lookups see the last).
    fn from_pairs(pairs: impl IntoIterator<Item = (OsString, OsString)>) -> Env {
        let mut env = Env::default();
        for (k, v) in pairs {
            env.push(k, v);
        }
        env
    }

    /// Appends, without looking for an earlier entry of the name.
    fn push(&mut self, k: impl Into<OsString>, v: impl Into<OsString>) {
        let k = k.into();
        self.index.insert(k.clone(), self.slots.len());
        self.slots.push(Some((k, v.into())));
    }

    /// Replaces the value in place, or appends.
    fn set(&mut self, k: &str, v: impl Into<OsString>) {
        match self.index.get(OsStr::new(k)).copied() {
            Some(i) => {
                if let Some(slot) = self.slots[i].as_mut() {
                    slot.1 = v.into();
                }
            }
            None => self.push(k, v),
        }
    }

    /// Removes an earlier entry of the name, then appends (the last wins, at the last place).
    fn replace_last(&mut self, k: &OsStr, v: &OsStr) {
        if let Some(i) = self.index.get(k).copied() {
            self.slots[i] = None;
        }
        self.push(k, v);
    }

    fn get(&self, k: &str) -> Option<&OsStr> {
        let i = *self.index.get(OsStr::new(k))?;
        self.slots[i].as_ref().map(|(_, v)| v.as_os_str())
    }

    fn into_vec(self) -> Vec<(OsString, OsString)> {
        self.slots.into_iter().flatten().collect()
    }
}

/// The container's environment without labinit's own settings (`LABKIT_*`
/// except the nesting marker); the last of duplicate names wins.
fn container_base(container: &[(OsString, OsString)]) -> Env {
    let mut env = Env::default();
    for (k, v) in container {
        if k.as_bytes().starts_with(b"LABKIT_") && k != SUPERVISOR_VAR {
            continue;
        }
        env.replace_last(k, v);
    }
    env
}

/// Exports a child may take: not labinit's, not the identity's.
fn allowed_exports(exports: &[(String, String)]) -> impl Iterator<Item = &(String, String)> {
    exports.iter().filter(|(k, _)| !k.starts_with("LABKIT_") && reserved_export(k).is_none())
}

/// The job's environment (also `labinit shell`'s): the container's, without
/// labinit's own `LABKIT_*` variables (except the nesting marker), with HOME,
/// USER, LOGNAME and SHELL from the identity, then what setup steps exported
/// (never the identity's four), then the nesting marker. Order is kept;
/// replaced variables stay in place.
pub fn job_env(
    container: &[(OsString, OsString)],
    identity: Option<&Identity>,
    exports: &[(String, String)],
    supervisor_pid: Option<u32>,
) -> Vec<(OsString, OsString)> {
    let mut env = container_base(container);
    if let Some(id) = identity {
        env.set("HOME", id.home.clone());
        env.set("USER", id.name.clone());
        env.set("LOGNAME", id.name.clone());
        env.set("SHELL", id.shell.clone());
    }
    for (k, v) in allowed_exports(exports) {
        env.set(k, v);
    }
    if let Some(pid) = supervisor_pid {
        env.set(SUPERVISOR_VAR, pid.to_string());
    }
    env.into_vec()
}

/// `LABKIT_USER`, `LABKIT_UID`, `LABKIT_GID`, `LABKIT_HOME`: who the job runs
/// as, for steps and services. Without a user, the caller's ids and the
/// container's USER and HOME (`/` when unset).
fn account_vars(container: &Env, identity: Option<&Identity>, caller: Caller) -> [(&'static str, OsString); 4] {
    let (user, uid, gid, home): (OsString, u32, u32, OsString) = match identity {
        Some(i) => (i.name.clone().into(), i.uid, i.gid, i.home.clone().into()),
        None => (
            container.get("USER").map(OsStr::to_owned).unwrap_or_default(),
            caller.uid,
            caller.gid,
            container.get("HOME").map(OsStr::to_owned).unwrap_or_else(|| "/".into()),
        ),
    };
    [
        ("LABKIT_USER", user),
        ("LABKIT_UID", uid.to_string().into()),
        ("LABKIT_GID", gid.to_string().into()),
        ("LABKIT_HOME", home),
    ]
}

/// A setup step's environment: the container's as it is (steps run as root,
/// before the job's environment exists), plus who the job will run as and
/// `LABKIT_ENV`, the file for exports. labinit's own values replace any
/// container variable of the same name.
pub fn step_env(
    container: &[(String, String)],
    identity: Option<&Identity>,
    caller: Caller,
    env_file: &Path,
) -> Vec<(String, String)> {
    const OWN: [&str; 5] = ["LABKIT_USER", "LABKIT_UID", "LABKIT_GID", "LABKIT_HOME", "LABKIT_ENV"];
    let mut env = Env::from_pairs(
        container
            .iter()
            .filter(|(k, _)| !OWN.contains(&k.as_str()))
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
    );
    for (k, v) in account_vars(&env, identity, caller) {
        env.push(k, v);
    }
    env.push("LABKIT_ENV", env_file.as_os_str());
    env.into_vec()
        .into_iter()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
        .collect()
}

/// A service's environment: the container's as it is (a service runs as
/// root, and a step's export such as a PATH without /usr/bin must not break
/// it); plus `LABKIT_USER`, `LABKIT_UID`, `LABKIT_GID`, `LABKIT_HOME` (who
/// the job runs as), `LABKIT_LABINIT` (this binary: `"$LABKIT_LABINIT" shell
/// -- CMD` runs CMD as the job's user with the job's environment) and, when
/// written, `LABKIT_SSHD_SETENV` (the sshd `SetEnv` line that gives ssh
/// sessions the job's environment).
pub fn service_env(
    container: &[(OsString, OsString)],
    identity: Option<&Identity>,
    caller: Caller,
    labinit: &Path,
    sshd_setenv: Option<&Path>,
) -> Vec<(OsString, OsString)> {
    const OWN: [&str; 6] =
        ["LABKIT_USER", "LABKIT_UID", "LABKIT_GID", "LABKIT_HOME", "LABKIT_LABINIT", "LABKIT_SSHD_SETENV"];
    let mut env = Env::from_pairs(container.iter().filter(|(k, _)| !OWN.iter().any(|o| k == o)).cloned());
    for (k, v) in account_vars(&env, identity, caller) {
        env.push(k, v);
    }
    env.push("LABKIT_LABINIT", labinit.as_os_str());
    if let Some(p) = sshd_setenv {
        env.push("LABKIT_SSHD_SETENV", p.as_os_str());
    }
    env.into_vec()
}

/// Variables an ssh session must get from sshd, not from the job: the
/// identity (sshd sets it from the same passwd entry), the client's terminal
/// and display, the connection, and what a shell keeps for itself.
fn set_by_sshd(name: &[u8]) -> bool {
    const NAMES: [&[u8]; 10] =
        [b"HOME", b"USER", b"LOGNAME", b"SHELL", b"MAIL", b"TERM", b"DISPLAY", b"PWD", b"OLDPWD", b"SHLVL"];
    NAMES.contains(&name) || name == b"_" || name.starts_with(b"SSH_") || name == b"XAUTHORITY"
}

/// What an ssh session gets from the job's environment (see
/// [`set_by_sshd`] for what it does not).
pub fn session_env(job: &[(OsString, OsString)]) -> Vec<(OsString, OsString)> {
    job.iter().filter(|(k, _)| !set_by_sshd(k.as_bytes())).cloned().collect()
}

/// sshd refuses to start a session with 1000 or more variables
/// (`child_set_env`); it sets about ten itself.
pub const SSHD_MAX_VARS: usize = 900;

/// The one `SetEnv` line of an sshd_config that gives every session `env`
/// (sshd takes only the first `SetEnv` line, and only the first of a name).
/// Each `NAME=value` is one double-quoted word with `\` and `"` escaped, as
/// OpenSSH ≥ 8.7 reads its configuration; a variable whose name or value
/// holds a line break, or whose name is empty, cannot be written without
/// injecting configuration and is left out, as is anything past
/// [`SSHD_MAX_VARS`]. Returns the line (empty when nothing is set) and one
/// warning per variable left out. Pure.
pub fn sshd_setenv(env: &[(OsString, OsString)]) -> (Vec<u8>, Vec<String>) {
    let mut line = b"SetEnv".to_vec();
    let mut warnings = Vec::new();
    let mut count = 0;
    for (k, v) in env {
        let (k, v) = (k.as_bytes(), v.as_bytes());
        let bad = |b: &[u8]| b.iter().any(|c| matches!(c, b'\n' | b'\r' | b'\0'));
        if k.is_empty() || k.contains(&b'=') || bad(k) || bad(v) {
            warnings.push(format!(
                "{} is not passed to ssh sessions: its name or value holds a line break, which sshd's configuration cannot hold",
                String::from_utf8_lossy(k).escape_debug()
            ));
            continue;
        }
        if count == SSHD_MAX_VARS {
            warnings.push(format!(
                "only the first {SSHD_MAX_VARS} variables are passed to ssh sessions (sshd's limit); {} and later ones are not",
                String::from_utf8_lossy(k).escape_debug()
            ));
            break;
        }
        count += 1;
        line.extend_from_slice(b" \"");
        for &c in k.iter().chain(b"=").chain(v) {
            if c == b'\\' || c == b'"' {
                line.push(b'\\');
            }
            line.push(c);
        }
        line.push(b'"');
    }
    if count == 0 {
        return (Vec::new(), warnings);
    }
    line.push(b'\n');
    (line, warnings)
}

/// The file the ssh service adds to its sshd_config: a comment, one
/// `# warning: …` line per variable left out (the service prints them when
/// it starts sshd, so a pod without ssh is not warned), and the `SetEnv`
/// line of [`sshd_setenv`]. Pure.
pub fn sshd_setenv_file(env: &[(OsString, OsString)]) -> Vec<u8> {
    let (line, warnings) = sshd_setenv(env);
    let mut out = b"# Written by labinit: the job's environment for ssh sessions. Do not edit.\n".to_vec();
    for w in warnings {
        out.extend_from_slice(format!("# warning: {w}\n").as_bytes());
    }
    out.extend_from_slice(&line);
    out
}

/// Where `labinit shell`'s identity comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellSource {
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
pub fn shell_identity(
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

/// Where the job starts, in order of preference (the child takes the first
/// it may enter, after the drop): the runtime's working directory unless it
/// is `/` (Kubernetes `workingDir`), else the home; always the home for the
/// legacy names. Without a user, the working directory is left alone. Pure.
pub fn working_dirs(start: Option<&Path>, home: Option<&Path>, legacy: bool, user: bool) -> Vec<PathBuf> {
    let start = start.filter(|p| *p != Path::new("/"));
    let mut out: Vec<PathBuf> = Vec::new();
    let order: [Option<&Path>; 2] = if legacy || (user && start.is_none()) {
        [home, start]
    } else if user {
        [start, home]
    } else {
        [start, None]
    };
    for p in order.into_iter().flatten().chain([Path::new("/")]) {
        if !out.iter().any(|q| q == p) {
            out.push(p.to_path_buf());
        }
    }
    out
}

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The files `execve` should try for `program`, `execvp`'s way: as given
/// when it contains a slash, else each `PATH` entry in turn (empty = `.`).
/// Pure.
pub fn program_candidates(program: &OsStr, path: Option<&OsStr>) -> Vec<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return vec![PathBuf::from(program)];
    }
    if program.is_empty() {
        return Vec::new();
    }
    let path = path.unwrap_or(OsStr::new(DEFAULT_PATH));
    path.as_bytes()
        .split(|b| *b == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { Path::new(".") } else { Path::new(OsStr::from_bytes(dir)) };
            dir.join(program)
        })
        .collect()
}

/// The shell for a command string or a login: the account's, else `$SHELL`
/// (`env_shell`) when it is an absolute path to an executable, else bash,
/// else sh. `executable` tells whether a path is an executable file (passed
/// in, so the choice stays pure).
pub fn shell_for(identity: Option<&Identity>, env_shell: Option<&Path>, executable: &dyn Fn(&Path) -> bool) -> PathBuf {
    if let Some(id) = identity {
        return id.shell.clone();
    }
    if let Some(s) = env_shell.filter(|s| s.is_absolute() && executable(s)) {
        return s.to_path_buf();
    }
    ["/bin/bash", "/usr/bin/bash"]
        .into_iter()
        .map(Path::new)
        .find(|s| executable(s))
        .unwrap_or(Path::new("/bin/sh"))
        .into()
}

/// argv for a command string run by `shell`. With the legacy names and bash,
/// `~/.bashrc` is sourced first as the legacy `su -c "source ~/.bashrc &&
/// …"` did, minus its bug: a `.bashrc` whose last command fails no longer
/// skips the job. Pure.
pub fn shell_argv(shell: &Path, string: &str, legacy: bool) -> Vec<OsString> {
    let bash = shell.file_name().is_some_and(|n| n == "bash");
    let script = if legacy && bash {
        format!("if [ -f \"$HOME/.bashrc\" ]; then . \"$HOME/.bashrc\"; fi\n{string}")
    } else {
        string.to_owned()
    };
    vec![shell.as_os_str().to_owned(), "-c".into(), script.into()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    fn alice() -> Identity {
        Identity {
            name: "alice".into(),
            uid: 123456,
            gid: 11166,
            groups: vec![11166],
            home: "/home/alice".into(),
            shell: "/bin/bash".into(),
        }
    }

    #[test]
    fn env_keeps_container_sets_account_drops_internal() {
        let container = os(&[
            ("PATH", "/opt/conda/bin:/usr/bin"),
            ("HOME", "/root"),
            ("LD_LIBRARY_PATH", "/usr/local/cuda/lib64"),
            ("LABKIT_TIMEOUT", "4h"),
            ("LABKIT_ROOT", "/x"),
            ("CUDA_VISIBLE_DEVICES", "0"),
            ("USER", "root"),
        ]);
        let exports =
            vec![("TORCH_HOME".to_owned(), "/data/torch".to_owned()), ("LABKIT_X".to_owned(), "no".to_owned())];
        let env = job_env(&container, Some(&alice()), &exports, Some(1));
        let want = os(&[
            ("PATH", "/opt/conda/bin:/usr/bin"),
            ("HOME", "/home/alice"),
            ("LD_LIBRARY_PATH", "/usr/local/cuda/lib64"),
            ("CUDA_VISIBLE_DEVICES", "0"),
            ("USER", "alice"),
            ("LOGNAME", "alice"),
            ("SHELL", "/bin/bash"),
            ("TORCH_HOME", "/data/torch"),
            ("LABKIT_SUPERVISOR", "1"),
        ]);
        assert_eq!(env, want);
    }

    #[test]
    fn env_without_identity_is_the_container_minus_internal() {
        let container = os(&[("PATH", "/bin"), ("LABKIT_GRACE", "5s"), ("HOME", "/root"), ("LABKIT_SUPERVISOR", "7")]);
        let env = job_env(&container, None, &[], None);
        assert_eq!(env, os(&[("PATH", "/bin"), ("HOME", "/root"), ("LABKIT_SUPERVISOR", "7")]));
    }

    #[test]
    fn working_directory_rules() {
        let home = Some(Path::new("/home/alice"));
        let wd = Some(Path::new("/data/work"));
        let root = Some(Path::new("/"));
        let p = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(working_dirs(wd, home, false, true), p(&["/data/work", "/home/alice", "/"]));
        assert_eq!(working_dirs(root, home, false, true), p(&["/home/alice", "/"]));
        assert_eq!(working_dirs(None, home, false, true), p(&["/home/alice", "/"]));
        assert_eq!(working_dirs(wd, home, true, true), p(&["/home/alice", "/data/work", "/"]));
        assert_eq!(working_dirs(root, home, true, false), p(&["/home/alice", "/"]));
        assert_eq!(working_dirs(wd, Some(Path::new("/root")), false, false), p(&["/data/work", "/"]));
        assert_eq!(working_dirs(root, Some(Path::new("/root")), false, false), p(&["/"]));
    }

    #[test]
    fn program_search() {
        let c = program_candidates(OsStr::new("python3"), Some(OsStr::new("/opt/conda/bin::/usr/bin")));
        assert_eq!(
            c,
            vec![
                PathBuf::from("/opt/conda/bin/python3"),
                PathBuf::from("./python3"),
                PathBuf::from("/usr/bin/python3")
            ]
        );
        assert_eq!(program_candidates(OsStr::new("./x.sh"), None), vec![PathBuf::from("./x.sh")]);
        assert_eq!(program_candidates(OsStr::new("sh"), None).len(), 6);
        assert!(program_candidates(OsStr::new(""), None).is_empty());
    }

    #[test]
    fn shell_strings() {
        let a = shell_argv(Path::new("/bin/bash"), "cd /data && python x.py", true);
        assert_eq!(a[0], "/bin/bash");
        assert_eq!(a[1], "-c");
        let s = a[2].to_string_lossy();
        assert!(s.starts_with("if [ -f \"$HOME/.bashrc\" ]; then . \"$HOME/.bashrc\"; fi\n"), "{s}");
        assert!(s.ends_with("\ncd /data && python x.py"));
        assert_eq!(shell_argv(Path::new("/bin/sh"), "true", true)[2], "true");
        assert_eq!(shell_argv(Path::new("/bin/bash"), "true", false)[2], "true");
    }

    fn req() -> AccountRequest {
        AccountRequest { user: "alice".into(), uid: 123456, group: "CVLAB-unit".into(), gid: 11166 }
    }

    fn tables(passwd: &str, group: &str) -> (Table, Table) {
        use crate::init::accounts::Kind;
        (Table::parse(Kind::Passwd, passwd.as_bytes()), Table::parse(Kind::Group, group.as_bytes()))
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nalice:x:123456:11166::/home/alice:/bin/bash\n";

    /// Issue 11 §4: a step's `usermod -aG video alice` reaches the job.
    #[test]
    fn a_group_a_step_added_is_in_the_identity() {
        let (p, g) = tables(PASSWD, "root:x:0:\nvideo:x:44:alice\nCVLAB-unit:x:11166:\n");
        let id = identity_from_accounts(&p, &g, &req(), &[], "/bin/sh");
        assert_eq!(id.groups, vec![11166, 44]);
        // Negative control: the same files before the step.
        let (p, g) = tables(PASSWD, "root:x:0:\nvideo:x:44:\nCVLAB-unit:x:11166:\n");
        assert_eq!(identity_from_accounts(&p, &g, &req(), &[], "/bin/sh").groups, vec![11166]);
    }

    #[test]
    fn runtime_groups_are_kept_and_roots_own_are_not() {
        let (p, g) = tables(PASSWD, "root:x:0:\ndisk:x:6:root\nvideo:x:44:alice\n");
        let id = identity_from_accounts(&p, &g, &req(), &[0, 6, 555], "/bin/sh");
        assert_eq!(id.groups, vec![11166, 44, 555]);
    }

    #[test]
    fn home_and_shell_come_from_the_users_entry_as_the_steps_left_it() {
        let moved = PASSWD.replace("/home/alice:/bin/bash", "/data/alice:/usr/bin/zsh");
        let (p, g) = tables(&moved, "");
        let id = identity_from_accounts(&p, &g, &req(), &[], "/bin/sh");
        assert_eq!((id.home.as_path(), id.shell.as_path()), (Path::new("/data/alice"), Path::new("/usr/bin/zsh")));
        // No entry (read-only /etc), or alice's name on another uid: the defaults.
        for passwd in ["root:x:0:0:root:/root:/bin/bash\n", "alice:x:1000:1000::/evil:/bin/evil\n"] {
            let (p, g) = tables(passwd, "");
            let id = identity_from_accounts(&p, &g, &req(), &[], "/bin/sh");
            assert_eq!((id.home.as_path(), id.shell.as_path()), (Path::new("/home/alice"), Path::new("/bin/sh")));
        }
        // Empty or relative fields are not a home or a shell.
        let (p, g) = tables("alice:x:123456:11166::data:\n", "");
        let id = identity_from_accounts(&p, &g, &req(), &[], "/bin/sh");
        assert_eq!((id.home.as_path(), id.shell.as_path()), (Path::new("/home/alice"), Path::new("/bin/sh")));
    }

    /// Issue 11 §4: a step cannot export one identity variable alone.
    #[test]
    fn steps_cannot_export_the_identity_variables() {
        for name in IDENTITY_VARS {
            let why = reserved_export(name).expect(name);
            assert!(why.contains("usermod"), "{why}");
            let line = format!("{name}=/data/x");
            assert!(crate::init::steps::parse_env_line(&line).unwrap_err().contains("from the account"), "{line}");
        }
        // Controls: names that merely resemble them are ordinary exports.
        for name in ["HOMEDIR", "TORCH_HOME", "CONDA_SHELL", "home", "USERNAME"] {
            assert_eq!(reserved_export(name), None, "{name}");
            assert!(crate::init::steps::parse_env_line(&format!("{name}=1")).unwrap().is_some());
        }
    }

    #[test]
    fn identity_exports_never_split_the_identity_in_any_child() {
        let exports: Vec<(String, String)> = [("HOME", "/data/x"), ("LOGNAME", "bob"), ("CONDA_PREFIX", "/opt/conda")]
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let env = job_env(&os(&[("HOME", "/root"), ("USER", "root")]), Some(&alice()), &exports, None);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.to_string_lossy().into_owned());
        assert_eq!(get("HOME").as_deref(), Some("/home/alice"));
        assert_eq!(get("LOGNAME").as_deref(), Some("alice"));
        assert_eq!(get("USER").as_deref(), Some("alice"));
        assert_eq!(get("CONDA_PREFIX").as_deref(), Some("/opt/conda"), "control: other exports apply");
        // Without a user, the container's identity stays whole as well.
        let env = job_env(&os(&[("HOME", "/root"), ("USER", "root")]), None, &exports, None);
        assert_eq!(env, os(&[("HOME", "/root"), ("USER", "root"), ("CONDA_PREFIX", "/opt/conda")]));
    }

    #[test]
    fn steps_get_the_container_and_who_the_job_runs_as() {
        let container: Vec<(String, String)> =
            [("PATH", "/bin"), ("LABKIT_USER", "mallory"), ("HOME", "/root"), ("LABKIT_ENV", "/tmp/x")]
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect();
        let caller = Caller { uid: 0, gid: 0 };
        let env = step_env(&container, Some(&alice()), caller, Path::new("/run/labkit/step-env"));
        let want: Vec<(String, String)> = [
            ("PATH", "/bin"),
            ("HOME", "/root"),
            ("LABKIT_USER", "alice"),
            ("LABKIT_UID", "123456"),
            ("LABKIT_GID", "11166"),
            ("LABKIT_HOME", "/home/alice"),
            ("LABKIT_ENV", "/run/labkit/step-env"),
        ]
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
        assert_eq!(env, want);
        let env = step_env(&container, None, Caller { uid: 1010, gid: 100 }, Path::new("/tmp/e"));
        assert!(env.contains(&("LABKIT_UID".into(), "1010".into())));
        assert!(env.contains(&("LABKIT_HOME".into(), "/root".into())));
        assert!(env.contains(&("LABKIT_USER".into(), "".into())));
    }

    #[test]
    fn services_run_as_root_and_know_who_the_job_runs_as() {
        let container = os(&[("PATH", "/usr/bin:/bin"), ("HOME", "/root"), ("LABKIT_LABINIT", "/evil")]);
        let caller = Caller { uid: 0, gid: 0 };
        let env = service_env(
            &container,
            Some(&alice()),
            caller,
            Path::new("/opt/lab/labinit"),
            Some(Path::new("/run/labkit/s")),
        );
        let want = os(&[
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/root"),
            ("LABKIT_USER", "alice"),
            ("LABKIT_UID", "123456"),
            ("LABKIT_GID", "11166"),
            ("LABKIT_HOME", "/home/alice"),
            ("LABKIT_LABINIT", "/opt/lab/labinit"),
            ("LABKIT_SSHD_SETENV", "/run/labkit/s"),
        ]);
        assert_eq!(env, want);
        let env = service_env(&container, None, caller, Path::new("/l"), None);
        assert!(!env.iter().any(|(k, _)| k == "LABKIT_SSHD_SETENV"));
    }

    #[test]
    fn ssh_sessions_get_the_job_env_but_not_what_sshd_sets() {
        let job = os(&[
            ("PATH", "/opt/conda/bin:/usr/bin"),
            ("HOME", "/home/alice"),
            ("USER", "alice"),
            ("LOGNAME", "alice"),
            ("SHELL", "/bin/bash"),
            ("TERM", "xterm"),
            ("PWD", "/"),
            ("SSH_AUTH_SOCK", "/x"),
            ("LD_LIBRARY_PATH", "/usr/local/nvidia/lib64"),
            ("NVIDIA_VISIBLE_DEVICES", "all"),
            ("LABKIT_SUPERVISOR", "1"),
        ]);
        let want = os(&[
            ("PATH", "/opt/conda/bin:/usr/bin"),
            ("LD_LIBRARY_PATH", "/usr/local/nvidia/lib64"),
            ("NVIDIA_VISIBLE_DEVICES", "all"),
            ("LABKIT_SUPERVISOR", "1"),
        ]);
        assert_eq!(session_env(&job), want);
    }

    #[test]
    fn sshd_setenv_quotes_every_word_and_refuses_line_breaks() {
        let env = os(&[("PATH", "/usr/bin"), ("ODD", "a b\t\"c\" \\d 'e' #f $g"), ("EMPTY", "")]);
        let (line, warnings) = sshd_setenv(&env);
        assert!(warnings.is_empty());
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "SetEnv \"PATH=/usr/bin\" \"ODD=a b\t\\\"c\\\" \\\\d 'e' #f $g\" \"EMPTY=\"\n"
        );
        // A line break would start a new configuration line ("PermitRootLogin yes").
        let evil = os(&[("A", "1"), ("X", "y\nPermitRootLogin yes"), ("Y\rZ", "1"), ("B", "2")]);
        let (line, warnings) = sshd_setenv(&evil);
        assert_eq!(String::from_utf8(line).unwrap(), "SetEnv \"A=1\" \"B=2\"\n");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("X is not passed"), "{warnings:?}");
        // Nothing to set: no line (sshd refuses `SetEnv` without arguments).
        assert_eq!(sshd_setenv(&[]), (Vec::new(), Vec::new()));
        // The file: every line a comment or the one SetEnv line.
        let file = String::from_utf8(sshd_setenv_file(&evil)).unwrap();
        let lines: Vec<&str> = file.lines().collect();
        assert_eq!(lines.len(), 4, "{file}");
        assert!(
            lines[1].starts_with("# warning: X is not passed") && lines[2].starts_with("# warning: Y\\rZ"),
            "{file}"
        );
        assert_eq!(lines[3], "SetEnv \"A=1\" \"B=2\"");
    }

    #[test]
    fn sshd_setenv_stays_under_sshds_limit() {
        let env: Vec<(OsString, OsString)> =
            (0..SSHD_MAX_VARS + 5).map(|i| (format!("V{i}").into(), "x".into())).collect();
        let (line, warnings) = sshd_setenv(&env);
        let words = String::from_utf8(line).unwrap().matches(" \"V").count();
        assert_eq!(words, SSHD_MAX_VARS);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains(&format!("V{SSHD_MAX_VARS} and later")), "{warnings:?}");
    }

    #[test]
    fn shell_choice() {
        let only = |have: &'static [&'static str]| move |p: &Path| have.iter().any(|h| Path::new(h) == p);
        let zsh = Some(Path::new("/usr/bin/zsh"));
        assert_eq!(shell_for(Some(&alice()), zsh, &only(&[])), PathBuf::from("/bin/bash"), "the account's");
        assert_eq!(shell_for(None, zsh, &only(&["/usr/bin/zsh", "/bin/bash"])), PathBuf::from("/usr/bin/zsh"));
        assert_eq!(shell_for(None, zsh, &only(&["/bin/bash"])), PathBuf::from("/bin/bash"), "SHELL not executable");
        assert_eq!(
            shell_for(None, Some(Path::new("zsh")), &only(&["zsh"])),
            PathBuf::from("/bin/sh"),
            "relative SHELL"
        );
        assert_eq!(shell_for(None, None, &only(&["/usr/bin/bash"])), PathBuf::from("/usr/bin/bash"));
        assert_eq!(shell_for(None, None, &only(&[])), PathBuf::from("/bin/sh"));
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
}
