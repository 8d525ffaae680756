//! The setup half of labinit: from the `CLUSTER_*` variables, provision the
//! account (group, user, shadow, home, sudo), then run the setup steps. Owns
//! nothing about running or supervising the job; it hands back the identity
//! the job must get, read from the account files *after* the steps (so a
//! step's `usermod -aG video` counts), and the steps' exports, and keeps both
//! in PID 1's record ([`state`]) for `labinit shell`. How identity and
//! exports become a child's environment is [`job`]'s. A stop signal during
//! setup is caught by [`signals`] ([`signals::catch_during_setup`]), which
//! passes it on to the running step's process group; setup stops at the
//! next step boundary.

use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::init::accounts::{Kind, Table};
use crate::init::config::{AccountRequest, SetupConfig, Who};
use crate::init::exit::{self, Fatal};
use crate::init::files::{self, Root, Written};
use crate::init::job::{self, Caller};
use crate::init::provision::{self, Note, Request};
use crate::init::signals::{self, SetupStops};
use crate::init::state::{self, JobState};
use crate::init::steps::{self, StepOptions};
use crate::init::{home, log, sudo};

pub use crate::init::job::Identity;

/// What setup hands to the job.
#[derive(Debug, Clone, Default)]
pub struct SetupOutcome {
    /// `None`: no user was asked for (all four `CLUSTER_*` unset) or labinit
    /// is not root; the job runs as the current identity.
    pub identity: Option<Identity>,
    /// `NAME=value` pairs exported by setup steps through `LABKIT_ENV`, in order.
    pub exports: Vec<(String, String)>,
}

/// Provision the account and run the setup steps.
///
/// `root` prefixes every file path (`/` in production, a temp dir in tests);
/// `env` is the container's environment. Keeps PID 1's record
/// ([`keep_record`]) for `labinit shell`.
pub fn setup(root: &Path, env: &[(String, String)]) -> Result<SetupOutcome, Fatal> {
    let outcome = setup_with(root, env, SetupConfig::from_env(env)?)?;
    keep_record(root, &outcome);
    Ok(outcome)
}

/// [`setup`] with its configuration read and validated already, with the
/// rest of labinit's ([`crate::init::config::Config::load`]). Does not keep
/// the record: `labinit run` writes it while the job execs, `labinit wait`
/// at once ([`keep_record`]).
pub fn setup_with(root: &Path, env: &[(String, String)], cfg: SetupConfig) -> Result<SetupOutcome, Fatal> {
    log::set_quiet(cfg.quiet);
    let root = Root::new(root);
    let stops = signals::catch_during_setup();
    let before = account(&root, &cfg)?;
    if let Some(sig) = stops.last() {
        return Err(Fatal::with_code(exit::SIGNAL_BASE + sig, format!("setup stopped by signal {sig}")));
    }
    let steps = run_steps(&root, &cfg, env, before.as_ref(), stops)?;
    // The steps may have changed the account (usermod -aG, -d, -s): the job
    // gets the account as they left it. Without a steps directory nothing
    // ran, and the account is the one just read and written.
    let identity = match (&cfg.who, before, steps.is_some()) {
        (Who::User(req), Some(before), true) => Some(after_steps(&root, req, before)),
        (_, before, _) => before,
    };
    let exports = steps.unwrap_or_default();
    Ok(SetupOutcome { identity, exports })
}

/// The identity again, from the account files as the steps left them; says
/// what the steps changed. Keeps `before` when the files cannot be read.
fn after_steps(root: &Root, req: &AccountRequest, before: Identity) -> Identity {
    let shell = before.shell.display().to_string();
    let now = match read_accounts(root) {
        Ok((passwd, group)) => job::identity_from_accounts(&passwd, &group, req, &inherited_groups(), &shell),
        Err(e) => {
            log::warn(format!("{e}; the job gets {}'s account as it was before the setup steps", req.user));
            return before;
        }
    };
    let mut changes = Vec::new();
    if now.groups != before.groups {
        changes.push(format!("groups {:?} (were {:?})", now.groups, before.groups));
    }
    if now.home != before.home {
        changes.push(format!("home {} (was {})", now.home.display(), before.home.display()));
    }
    if now.shell != before.shell {
        changes.push(format!("shell {} (was {})", now.shell.display(), before.shell.display()));
    }
    if !changes.is_empty() {
        log::info(format!("the setup steps changed {}'s account: the job gets {}", req.user, changes.join(", ")));
    }
    now
}

/// Keep the identity and exports for `labinit shell` ([`state`]) under
/// `root`. Best effort: without it, a shell needs the `CLUSTER_*` variables
/// and lacks the exports.
pub fn keep_record(root: &Path, outcome: &SetupOutcome) {
    let record = JobState { identity: outcome.identity.clone(), exports: outcome.exports.clone() };
    if let Err(e) = state::write(&Root::new(root), &record) {
        if nix::unistd::geteuid().is_root() || !outcome.exports.is_empty() {
            log::warn(format!(
                "cannot keep the job's record ({e}); `labinit shell` will need the CLUSTER_* variables and will not see the steps' exports"
            ));
        }
    }
}

/// The step exports in PID 1's record (empty if there is none or it is not
/// usable).
pub fn load_exports(root: &Path) -> Vec<(String, String)> {
    state::read(&Root::new(root)).ok().flatten().map(|s| s.exports).unwrap_or_default()
}

/// passwd and group, as they are now (read-only; shadow is never needed for
/// an identity and a non-root caller may not read it). A missing file is an
/// empty table.
fn read_accounts(root: &Root) -> io::Result<(Table, Table)> {
    let read = |kind: Kind| match std::fs::read(root.path(kind.path())) {
        Ok(data) => Ok(Table::parse(kind, &data)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Table::parse(kind, b"")),
        Err(e) => Err(io::Error::new(e.kind(), format!("cannot read {}: {e}", kind.path()))),
    };
    Ok((read(Kind::Passwd)?, read(Kind::Group)?))
}

/// The gids this process was started with (the runtime's fsGroup,
/// supplementalGroups, --group-add).
fn inherited_groups() -> Vec<u32> {
    nix::unistd::getgroups().map(|g| g.iter().map(|g| g.as_raw()).collect()).unwrap_or_default()
}

/// The identity the `CLUSTER_*` variables in `env` ask for, resolved
/// read-only from passwd and group as setup left them (for `labinit shell`;
/// never reads shadow, so it works as the user too). `None` for the image's
/// own user or explicit root.
pub fn resolve_identity(root: &Path, env: &[(String, String)]) -> Result<Option<Identity>, Fatal> {
    let cfg = SetupConfig::from_env(env)?;
    let Who::User(req) = &cfg.who else { return Ok(None) };
    let root = Root::new(root);
    let (passwd, group) = read_accounts(&root).map_err(|e| Fatal::config(e.to_string()))?;
    // Used only when setup could not write the account (read-only /etc).
    let shell = choose_shell(&root, cfg.shell.as_deref());
    Ok(Some(job::identity_from_accounts(&passwd, &group, req, &inherited_groups(), &shell)))
}

/// Days since the epoch (shadow's `lastchg` unit).
fn today() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() / 86400).unwrap_or(0)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `LABKIT_SHELL` if executable, else bash if present, else sh.
pub(crate) fn choose_shell(root: &Root, wanted: Option<&str>) -> String {
    if let Some(s) = wanted {
        if is_executable(&root.path(s)) {
            return s.to_owned();
        }
        log::warn(format!("LABKIT_SHELL={s} is not an executable file in this image; using the default shell"));
    }
    for s in ["/bin/bash", "/usr/bin/bash"] {
        if is_executable(&root.path(s)) {
            return s.to_owned();
        }
    }
    "/bin/sh".to_owned()
}

fn log_notes(notes: &[Note]) {
    for n in notes {
        match n {
            Note::Info(m) => log::info(m),
            Note::Warn(m) => log::warn(m),
        }
    }
}

/// Whether a write error means "this /etc cannot be changed here" (read-only
/// root, missing capabilities) rather than a real failure.
fn is_unwritable(e: &io::Error) -> bool {
    // Our errors carry context, so match on the kind (errno is not kept).
    matches!(e.kind(), io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied)
}

/// Create or converge the account; returns the identity the job runs as.
fn account(root: &Root, cfg: &SetupConfig) -> Result<Option<Identity>, Fatal> {
    let req = match &cfg.who {
        Who::Current => {
            log::info(format!(
                "no CLUSTER_* variables set: the job runs as the image's user (uid {}); set CLUSTER_USER, CLUSTER_USER_ID, CLUSTER_GROUP_NAME and CLUSTER_GROUP_ID to run as your cluster account",
                nix::unistd::geteuid()
            ));
            return Ok(None);
        }
        Who::Root => {
            log::info("CLUSTER_USER=root: the job runs as root; no account is created");
            return Ok(None);
        }
        Who::User(req) => req,
    };
    let euid = nix::unistd::geteuid().as_raw();
    if euid != 0 {
        restricted_start(euid, req);
        return Ok(None);
    }
    let home = format!("/home/{}", req.user);
    let shell = choose_shell(root, cfg.shell.as_deref());
    let (limits, defs_notes) =
        provision::Limits::from_login_defs(&files::login_defs(root).map_err(|e| Fatal::config(e.to_string()))?);
    log_notes(&defs_notes);
    let request = Request {
        user: req.user.clone(),
        uid: req.uid,
        group: req.group.clone(),
        gid: req.gid,
        home: home.clone(),
        shell: shell.clone(),
        extra_groups: cfg.extra_groups.clone(),
        today: today(),
        limits,
    };
    // Read, plan and write under the account lock (files::transact).
    let tx = files::transact(root, std::time::Duration::from_secs(15), |db| {
        provision::plan(db, &request).map(|p| (p.db.clone(), p))
    });
    let mut writable = true;
    let final_db = match tx {
        Ok(tx) => {
            tx.recovered.iter().for_each(log::info);
            if tx.written.is_empty() {
                log::info(format!(
                    "user {} (uid {}, gid {}) already set up; account files unchanged",
                    req.user, req.uid, req.gid
                ));
            } else {
                log_notes(&tx.value.notes);
                for (kind, written) in &tx.written {
                    if *written == Written::InPlace {
                        log::warn(format!("{} is a mount point; rewrote it in place (not atomic)", kind.path()));
                    }
                }
            }
            tx.after
        }
        Err(files::TxError::Plan(refusal)) => return Err(Fatal::config(refusal.0)),
        Err(files::TxError::Io(e)) if is_unwritable(&e) => {
            writable = false;
            log::warn(format!(
                "{e}: user {} (uid {}) is not in the account files, so whoami, ssh, su and sudo will not know it; the job still runs as uid {} gid {} with HOME={home}",
                req.user, req.uid, req.uid, req.gid
            ));
            files::load(root)
                .map_err(|e| Fatal::config(format!("{e}; the account for {} cannot be set up", req.user)))?
        }
        Err(files::TxError::Io(e)) => {
            return Err(Fatal::config(format!("{e}; the account for {} was not set up", req.user)))
        }
    };
    match home::ensure(root, &home, req.uid, req.gid) {
        Ok((_, notes)) => log_notes(&notes),
        Err(e) => log::warn(format!("{e}; the job starts without a usable home")),
    }
    if writable {
        match sudo::apply(root, req.uid, cfg.sudo, cfg.path.as_deref()) {
            Ok(notes) => log_notes(&notes),
            Err(e) => log::warn(format!("sudo was not granted: {e}")),
        }
    } else {
        log::warn("sudo was not granted: the account files could not be written");
    }
    Ok(Some(job::identity_from_accounts(&final_db.passwd, &final_db.group, req, &inherited_groups(), &shell)))
}

/// Started as non-root (`--user`, `runAsUser`): nothing that needs root can
/// happen; say so once per thing.
fn restricted_start(euid: u32, req: &AccountRequest) {
    log::warn(format!(
        "started as uid {euid}, not root: user {} (uid {}) and group {} (gid {}) cannot be created, and no sudo is granted",
        req.user, req.uid, req.group, req.gid
    ));
    if euid != req.uid {
        log::warn(format!(
            "the job runs as uid {euid}, not CLUSTER_USER_ID={}: files it writes on shared volumes will be owned by uid {euid}",
            req.uid
        ));
    }
    log::warn(format!("setup steps run as uid {euid}, not root"));
}

/// Run the setup steps; their exports, or `None` when there is no steps
/// directory (nothing ran).
fn run_steps(
    root: &Root,
    cfg: &SetupConfig,
    env: &[(String, String)],
    identity: Option<&Identity>,
    stops: &SetupStops,
) -> Result<Option<Vec<(String, String)>>, Fatal> {
    let dir = root.path(&cfg.steps_dir);
    if !dir.exists() {
        return Ok(None);
    }
    let env_file = env_file_path(root);
    let env_fd = create_env_file(&env_file)?;
    let caller = Caller { uid: nix::unistd::geteuid().as_raw(), gid: nix::unistd::getegid().as_raw() };
    let step_env = job::step_env(env, identity, caller, &env_file);
    let shell = root.path(choose_shell(root, None));
    let opts = StepOptions {
        dir,
        abort_on_failure: cfg.step_abort,
        warn_after: cfg.step_warn,
        timeout: cfg.step_timeout,
        grace: cfg.grace,
        env_file: env_fd,
        env: step_env,
        shell,
    };
    let result = steps::run_all(&opts, stops);
    let _ = std::fs::remove_file(&env_file);
    result.map(Some)
}

/// Create the `LABKIT_ENV` file afresh (one left by a killed start is
/// replaced) and keep it open: the exports are read through this
/// descriptor, never by path.
fn create_env_file(path: &Path) -> Result<std::fs::File, Fatal> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create_new(true).mode(0o600);
    // Created first (the usual case: nothing there), then, when something
    // is in the way or the directory is missing, cleared and created again.
    let mut cleared = Ok(());
    let opened = options.open(path).or_else(|e| {
        cleared = match e.kind() {
            io::ErrorKind::AlreadyExists => std::fs::remove_file(path),
            io::ErrorKind::NotFound => path.parent().map_or(Ok(()), std::fs::create_dir_all),
            _ => return Err(e),
        };
        options.open(path)
    });
    opened.map_err(|e| {
        // A failure before makes the create fail: it says why.
        let before = cleared.err().map(|c| format!(" (clearing its place failed: {c})")).unwrap_or_default();
        Fatal::config(format!("cannot create the LABKIT_ENV file {}: {e}{before}", path.display()))
    })
}

/// Where steps append their exports: under `/run/labkit` when writable, else
/// the temp directory (non-root starts).
fn env_file_path(root: &Root) -> PathBuf {
    let run = root.path("/run/labkit");
    if std::fs::create_dir_all(&run).is_ok() && nix::unistd::access(&run, nix::unistd::AccessFlags::W_OK).is_ok() {
        return run.join("step-env");
    }
    std::env::temp_dir().join(format!("labkit-step-env.{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};

    #[test]
    fn the_env_file_is_created_afresh_and_a_failure_says_why() {
        let dir = std::env::temp_dir().join(format!("labkit-setup-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("run/step-env");
        // The directory is made; a file left by a killed start is replaced.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "OLD=1\n").unwrap();
        let mut f = create_env_file(&path).unwrap();
        let mut text = String::new();
        f.rewind().unwrap();
        f.read_to_string(&mut text).unwrap();
        assert_eq!(text, "", "the old exports survived");
        // Negative control: a directory in its place cannot be cleared; the
        // error names both failures with their errno.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let err = create_env_file(&path).unwrap_err().to_string();
        assert!(err.contains("File exists") && err.contains("clearing its place failed"), "{err}");
        assert!(err.contains("os error"), "errno missing: {err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
