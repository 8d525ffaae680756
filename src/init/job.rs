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
//!   ([`Children::job_env`]). ssh sessions get it through sshd's `SetEnv`
//!   ([`crate::init::sshd`]) minus what sshd sets per session
//!   ([`Children::session_env`]). Services and steps run as root with the
//!   container's environment and are told who the job runs as
//!   ([`Children::service_env`], [`Children::step_env`]); a service starts
//!   the user's side with `labinit shell -- CMD`, which gets the job's.
//!
//! Also here: the command and the pure parts of starting a program (the
//! shell, the working directory, `execvp`'s search, the argv of a command
//! string), assembled into a [`Launch`]; the fork/exec is
//! [`crate::init::launch`]'s.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::init::accounts::{Database, Table};
use crate::init::config::AccountRequest;
use crate::init::exit::Fatal;
use crate::init::nesting::SUPERVISOR_VAR;
use crate::init::privileges::Credentials;
use crate::init::provision;
use crate::init::sshd;
/// The sshd `SetEnv` file moved to [`crate::init::sshd`].

/// The variables that say who a process is. Set together from the identity,
/// never one by one.
pub(crate) const IDENTITY_VARS: [&str; 4] = ["HOME", "USER", "LOGNAME", "SHELL"];

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
pub(crate) struct Caller {
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
pub(crate) fn identity_from_accounts(
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
pub(crate) fn reserved_export(name: &str) -> Option<String> {
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
struct Vars {
    slots: Vec<Option<(OsString, OsString)>>,
    index: std::collections::HashMap<OsString, usize>,
}

impl Vars {
    /// The pairs as given, duplicates kept (lookups see the last).
    fn from_pairs(pairs: impl IntoIterator<Item = (OsString, OsString)>) -> Vars {
        let mut env = Vars::default();
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
fn container_base(container: &[(OsString, OsString)]) -> Vars {
    let mut env = Vars::default();
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

/// `LABKIT_USER`, `LABKIT_UID`, `LABKIT_GID`, `LABKIT_HOME`: who the job runs
/// as, for steps and services. Without a user, the caller's ids and the
/// container's USER and HOME (`/` when unset).
fn account_vars(container: &Vars, identity: Option<&Identity>, caller: Caller) -> [(&'static str, OsString); 4] {
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

/// The one builder of every child's identity and environment: built from
/// what setup handed over (the identity, the steps' exports), the
/// container's environment and labinit's own ids; each method is one kind
/// of child.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Children<'a> {
    container: &'a [(OsString, OsString)],
    identity: Option<&'a Identity>,
    exports: &'a [(String, String)],
    caller: Caller,
}

impl<'a> Children<'a> {
    /// `identity`: `None` when no user was asked for (or labinit is not
    /// root): children run as `caller`. `exports`: the steps' `LABKIT_ENV`.
    pub(crate) fn new(
        container: &'a [(OsString, OsString)],
        identity: Option<&'a Identity>,
        exports: &'a [(String, String)],
        caller: Caller,
    ) -> Children<'a> {
        Children { container, identity, exports, caller }
    }

    /// Who the children that run as the user are.
    pub(crate) fn identity(&self) -> Option<&'a Identity> {
        self.identity
    }

    /// The job's environment (also `labinit shell`'s): the container's,
    /// without labinit's own `LABKIT_*` variables (except the nesting
    /// marker), with HOME, USER, LOGNAME and SHELL from the identity, then
    /// what setup steps exported (never the identity's four), then the
    /// nesting marker `supervisor_pid` ([`SUPERVISOR_VAR`]). Order is kept;
    /// replaced variables stay in place.
    pub(crate) fn job_env(&self, supervisor_pid: Option<u32>) -> Vec<(OsString, OsString)> {
        let mut env = container_base(self.container);
        if let Some(id) = self.identity {
            env.set("HOME", id.home.clone());
            env.set("USER", id.name.clone());
            env.set("LOGNAME", id.name.clone());
            env.set("SHELL", id.shell.clone());
        }
        for (k, v) in allowed_exports(self.exports) {
            env.set(k, v);
        }
        if let Some(pid) = supervisor_pid {
            env.set(SUPERVISOR_VAR, pid.to_string());
        }
        env.into_vec()
    }

    /// An ssh session's: the job's, minus what sshd sets per session
    /// ([`sshd::session_env`]).
    pub(crate) fn session_env(&self, supervisor_pid: Option<u32>) -> Vec<(OsString, OsString)> {
        sshd::session_env(&self.job_env(supervisor_pid))
    }

    /// A setup step's: the container's as it is (steps run as root, before
    /// the job's environment exists), plus who the job will run as and
    /// `LABKIT_ENV`, the file for exports. labinit's own values replace any
    /// container variable of the same name.
    pub(crate) fn step_env(&self, env_file: &Path) -> Vec<(OsString, OsString)> {
        const OWN: [&str; 5] = ["LABKIT_USER", "LABKIT_UID", "LABKIT_GID", "LABKIT_HOME", "LABKIT_ENV"];
        let mut env = Vars::from_pairs(self.container.iter().filter(|(k, _)| !OWN.iter().any(|o| k == o)).cloned());
        for (k, v) in account_vars(&env, self.identity, self.caller) {
            env.push(k, v);
        }
        env.push("LABKIT_ENV", env_file.as_os_str());
        env.into_vec()
    }

    /// A service's: the container's as it is (a service runs as root, and a
    /// step's export such as a PATH without /usr/bin must not break it);
    /// plus `LABKIT_USER`, `LABKIT_UID`, `LABKIT_GID`, `LABKIT_HOME` (who the
    /// job runs as), `LABKIT_LABINIT` (this binary: `"$LABKIT_LABINIT" shell
    /// -- CMD` runs CMD as the job's user with the job's environment) and,
    /// when written, `LABKIT_SSHD_SETENV` (the sshd `SetEnv` line that gives
    /// ssh sessions the job's environment).
    pub(crate) fn service_env(&self, labinit: &Path, sshd_setenv: Option<&Path>) -> Vec<(OsString, OsString)> {
        const OWN: [&str; 6] =
            ["LABKIT_USER", "LABKIT_UID", "LABKIT_GID", "LABKIT_HOME", "LABKIT_LABINIT", "LABKIT_SSHD_SETENV"];
        let mut env = Vars::from_pairs(self.container.iter().filter(|(k, _)| !OWN.iter().any(|o| k == o)).cloned());
        for (k, v) in account_vars(&env, self.identity, self.caller) {
            env.push(k, v);
        }
        env.push("LABKIT_LABINIT", labinit.as_os_str());
        if let Some(p) = sshd_setenv {
            env.push("LABKIT_SSHD_SETENV", p.as_os_str());
        }
        env.into_vec()
    }

    /// The user's home: the identity's, else the container's `HOME`.
    pub(crate) fn home(&self) -> Option<PathBuf> {
        match self.identity {
            Some(i) => Some(i.home.clone()),
            None => container_get(self.container, "HOME").map(PathBuf::from),
        }
    }

    /// The shell for a command string or a login ([`shell_for`], with the
    /// container's `SHELL`).
    pub(crate) fn shell(&self, executable: &dyn Fn(&Path) -> bool) -> PathBuf {
        shell_for(self.identity, container_get(self.container, "SHELL").map(Path::new), executable)
    }

    /// The credentials of the privilege drop (`None`: the child stays who
    /// labinit is).
    pub(crate) fn credentials(&self) -> Option<Credentials> {
        self.identity.map(|i| Credentials::new(i.uid, i.gid, &i.groups))
    }

    /// What to start for `command`: argv (a command string through
    /// [`Children::shell`]; the legacy names source `~/.bashrc`), `execvp`'s
    /// candidates from `env`'s PATH, the working directories
    /// ([`working_dirs`]: the home first for the legacy names) and the
    /// credentials. `env` is the child's environment (one of the methods
    /// above). Error: an empty command.
    pub(crate) fn launch(
        &self,
        command: &Command,
        env: Vec<(OsString, OsString)>,
        start_dir: Option<&Path>,
        legacy: bool,
        executable: &dyn Fn(&Path) -> bool,
    ) -> Result<Launch, Fatal> {
        let argv = match command {
            Command::Argv(a) if a.is_empty() => return Err(Fatal::config(NO_COMMAND)),
            Command::Argv(a) => a.clone(),
            Command::Shell(s) => shell_argv(&self.shell(executable), s, legacy),
        };
        let candidates = program_candidates(&argv[0], container_get(&env, "PATH"));
        let home = self.home();
        let dirs = working_dirs(start_dir, home.as_deref(), legacy, self.identity.is_some());
        Ok(Launch { argv, candidates, env, dirs, creds: self.credentials() })
    }

    /// What `labinit shell` starts: the login shell (`-bash`) in the home,
    /// or `cmd` where `kubectl exec` started (the container's workingDir),
    /// else the home.
    pub(crate) fn launch_shell(
        &self,
        cmd: Vec<OsString>,
        env: Vec<(OsString, OsString)>,
        start_dir: Option<&Path>,
        executable: &dyn Fn(&Path) -> bool,
    ) -> Launch {
        let login = cmd.is_empty();
        let (argv, candidates) = if login {
            let shell = self.shell(executable);
            let base = shell.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "sh".into());
            (vec![OsString::from(format!("-{base}"))], vec![shell])
        } else {
            let c = program_candidates(&cmd[0], container_get(&env, "PATH"));
            (cmd, c)
        };
        let home = self.home();
        let dirs = working_dirs(start_dir, home.as_deref(), login, self.identity.is_some() || login);
        Launch { argv, candidates, env, dirs, creds: self.credentials() }
    }
}

/// The error for `labinit run` without a command.
pub(crate) const NO_COMMAND: &str = "no command given: labinit run [--] CMD [ARGS…] or labinit run -c 'STRING'";

fn container_get<'e>(env: &'e [(OsString, OsString)], name: &str) -> Option<&'e OsStr> {
    env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_os_str())
}

/// [`Children::step_env`] for setup, whose environment is text.
pub(crate) fn step_env(
    container: &[(String, String)],
    identity: Option<&Identity>,
    caller: Caller,
    env_file: &Path,
) -> Vec<(String, String)> {
    let container: Vec<(OsString, OsString)> =
        container.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect();
    Children::new(&container, identity, &[], caller)
        .step_env(env_file)
        .into_iter()
        .map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()))
        .collect()
}

/// Everything a child needs, resolved before the fork
/// ([`crate::init::launch`]).
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub argv: Vec<OsString>,
    /// The files `execve` tries, in order ([`program_candidates`]).
    pub candidates: Vec<PathBuf>,
    pub env: Vec<(OsString, OsString)>,
    /// The working directories to try, in order, after the drop.
    pub dirs: Vec<PathBuf>,
    /// `None`: no privilege drop.
    pub creds: Option<Credentials>,
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// A program and its arguments, executed directly (no shell).
    Argv(Vec<OsString>),
    /// A command string for the user's shell (`-c`).
    Shell(String),
}

impl Command {
    /// The command for a log line: at most 120 characters.
    pub(crate) fn describe(&self) -> String {
        let text = match self {
            Command::Argv(a) => a.iter().map(|s| s.to_string_lossy()).collect::<Vec<_>>().join(" "),
            Command::Shell(s) => format!("-c {s:?}"),
        };
        if text.chars().count() > 120 {
            format!("{}…", text.chars().take(120).collect::<String>())
        } else {
            text
        }
    }
}

/// The log line for a started job: `started CMD (pid N) as USER (uid …,
/// gid …, groups […])`, and that labinit is a subreaper when it is not PID 1.
pub(crate) fn started_line(command: &Command, pid: i32, identity: Option<&Identity>, pid1: bool) -> String {
    format!(
        "started {} (pid {pid}){}{}",
        command.describe(),
        identity
            .map(|i| format!(" as {} (uid {}, gid {}, groups {:?})", i.name, i.uid, i.gid, i.groups))
            .unwrap_or_default(),
        if pid1 { "" } else { " as a subreaper (not PID 1)" }
    )
}

/// A one-word command with blanks that names no file is a command string
/// (RunAI and docker hand `"/opt/lab/setup_and_run_command.sh 'cd … && …'"`
/// over as one argument when the image has labinit as ENTRYPOINT). Pure but
/// for the file check.
pub(crate) fn as_command(argv: Vec<OsString>, path: Option<&OsStr>) -> Command {
    if let [one] = argv.as_slice() {
        let blank = one.as_bytes().iter().any(|b| b.is_ascii_whitespace());
        if blank && !program_candidates(one, path).iter().any(|p| p.exists()) {
            return Command::Shell(one.to_string_lossy().into_owned());
        }
    }
    Command::Argv(argv)
}

/// Where the job starts, in order of preference (the child takes the first
/// it may enter, after the drop): the runtime's working directory unless it
/// is `/` (Kubernetes `workingDir`), else the home; always the home for the
/// legacy names. Without a user, the working directory is left alone. Pure.
pub(crate) fn working_dirs(start: Option<&Path>, home: Option<&Path>, legacy: bool, user: bool) -> Vec<PathBuf> {
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

pub(crate) const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The files `execve` should try for `program`, `execvp`'s way: as given
/// when it contains a slash, else each `PATH` entry in turn (empty = `.`).
/// Pure.
pub(crate) fn program_candidates(program: &OsStr, path: Option<&OsStr>) -> Vec<PathBuf> {
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
pub(crate) fn shell_for(
    identity: Option<&Identity>,
    env_shell: Option<&Path>,
    executable: &dyn Fn(&Path) -> bool,
) -> PathBuf {
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
pub(crate) fn shell_argv(shell: &Path, string: &str, legacy: bool) -> Vec<OsString> {
    let bash = shell.file_name().is_some_and(|n| n == "bash");
    let script = if legacy && bash {
        format!("if [ -f \"$HOME/.bashrc\" ]; then . \"$HOME/.bashrc\"; fi\n{string}")
    } else {
        string.to_owned()
    };
    vec![shell.as_os_str().to_owned(), "-c".into(), script.into()]
}

#[cfg(test)]
mod tests;
