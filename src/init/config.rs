//! labinit's configuration: one layer, read from the [`Env`] (the legacy
//! `CLUSTER_*` names pod specs already set, and `LABKIT_*` for the rest) and
//! the command line's flags, and validated completely before anything is
//! touched ([`Config::load`]): the root, setup ([`SetupConfig`]), the
//! supervision policy, the idle watchdog, the services and the PATH sudo
//! keeps. Every default is a named constant here. Pure code.

use std::path::PathBuf;
use std::time::Duration;

use crate::init::env::Env;
use crate::init::exit::Fatal;
use crate::init::idle::{self, IdleConfig};
use crate::init::{duration, validate};

use crate::init::env::parse_bool;

/// The setup steps' directory when `LABKIT_STEPS_DIR` is unset.
pub(crate) const DEFAULT_STEPS_DIR: &str = "/opt/lab/setup_steps";
/// The job's grace period (`--grace`, `LABKIT_GRACE`): between the stop
/// signal and SIGKILL, for the job and for a setup step.
pub(crate) const DEFAULT_JOB_GRACE: Duration = Duration::from_secs(20);
/// The services' grace period (`LABKIT_SERVICE_GRACE`), after the job's.
pub(crate) const DEFAULT_SERVICE_GRACE: Duration = Duration::from_secs(5);
/// The services' directory when `LABKIT_SERVICES_DIR` is unset.
pub(crate) const DEFAULT_SERVICES_DIR: &str = "/opt/lab/services";
/// Where the lab's images keep labinit (when the kernel does not say).
pub(crate) const DEFAULT_LABINIT: &str = "/opt/lab/labinit";
/// `LABKIT_STEP_WARN`'s default: a step running longer is named in the log.
pub(crate) const DEFAULT_STEP_WARN: Duration = Duration::from_secs(60);
/// `wait`'s idle timeout when `LABKIT_IDLE_TIMEOUT` is unset (the
/// sleeper's); `run` has none by default.
pub(crate) const DEFAULT_WAIT_IDLE: Duration = Duration::from_secs(30 * 60);

/// The account the job should run as, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRequest {
    pub user: String,
    pub uid: u32,
    pub group: String,
    pub gid: u32,
}

/// Who the job runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// All four `CLUSTER_*` unset: the image's current identity.
    Current,
    /// `CLUSTER_USER=root CLUSTER_USER_ID=0`: explicitly root, nothing to create.
    Root,
    User(AccountRequest),
}

#[derive(Debug, Clone)]
pub struct SetupConfig {
    pub who: Who,
    /// `LABKIT_SHELL`: preferred login shell, used if executable.
    pub shell: Option<String>,
    /// `LABKIT_SUDO` (default on).
    pub sudo: bool,
    /// `LABKIT_EXTRA_GROUPS`: groups the user joins (legacy: `sudo,adm,root`).
    pub extra_groups: Vec<String>,
    /// `LABKIT_STEPS_DIR` (container path).
    pub steps_dir: String,
    /// `LABKIT_STEP_FAILURE=abort`.
    pub step_abort: bool,
    /// `LABKIT_STEP_WARN` ([`DEFAULT_STEP_WARN`]).
    pub step_warn: Duration,
    /// `LABKIT_STEP_TIMEOUT` (default off): a step running longer is
    /// stopped like the job and counts as failed.
    pub step_timeout: Option<Duration>,
    /// `LABKIT_GRACE` ([`DEFAULT_JOB_GRACE`]): between a step's stop signal
    /// and SIGKILL (`labinit run --grace` overrides it).
    pub grace: Duration,
    /// `LABKIT_QUIET=1`: hide info lines.
    pub quiet: bool,
    /// `PATH`: what sudo keeps as `secure_path` for the user.
    pub path: Option<String>,
}

pub(crate) const CLUSTER_VARS: [&str; 4] =
    ["CLUSTER_USER", "CLUSTER_USER_ID", "CLUSTER_GROUP_NAME", "CLUSTER_GROUP_ID"];

fn get<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

impl SetupConfig {
    /// Read and validate everything. The first problem found is returned as
    /// a one-line configuration error naming the variable and the rule.
    pub fn from_env(env: &[(String, String)]) -> Result<SetupConfig, Fatal> {
        let who = who(env)?;
        let shell = match get(env, "LABKIT_SHELL") {
            None | Some("") => None,
            Some(s) if s.starts_with('/') && !s.contains([':', '\n', '\0', '\r']) && s.len() < 256 => {
                Some(s.to_owned())
            }
            Some(s) => {
                return Err(Fatal::config(format!(
                    "LABKIT_SHELL={s:?} is not usable: it must be an absolute path without ':' or line breaks"
                )))
            }
        };
        let sudo = get(env, "LABKIT_SUDO").map_or(Ok(true), |v| parse_bool("LABKIT_SUDO", v))?;
        let mut extra_groups = Vec::new();
        if let Some(list) = get(env, "LABKIT_EXTRA_GROUPS") {
            for g in list.split(',').map(str::trim).filter(|g| !g.is_empty()) {
                validate::name("LABKIT_EXTRA_GROUPS", g)?;
                if !extra_groups.iter().any(|x| x == g) {
                    extra_groups.push(g.to_owned());
                }
            }
        }
        let steps_dir = match get(env, "LABKIT_STEPS_DIR") {
            None | Some("") => DEFAULT_STEPS_DIR.to_owned(),
            Some(d) if d.starts_with('/') => d.to_owned(),
            Some(d) => return Err(Fatal::config(format!("LABKIT_STEPS_DIR={d:?} must be an absolute path"))),
        };
        let step_abort = match get(env, "LABKIT_STEP_FAILURE") {
            None | Some("") | Some("continue") => false,
            Some("abort") => true,
            Some(v) => {
                return Err(Fatal::config(format!(
                    "LABKIT_STEP_FAILURE={v:?} is not a policy; use continue (default) or abort"
                )))
            }
        };
        let step_warn = match get(env, "LABKIT_STEP_WARN") {
            None | Some("") => DEFAULT_STEP_WARN,
            Some(v) => duration::parse_named("LABKIT_STEP_WARN", v)?,
        };
        let step_timeout = match get(env, "LABKIT_STEP_TIMEOUT") {
            None | Some("") => None,
            Some(v) => Some(duration::parse_named("LABKIT_STEP_TIMEOUT", v)?).filter(|d| !d.is_zero()),
        };
        let grace = match get(env, "LABKIT_GRACE") {
            None | Some("") => DEFAULT_JOB_GRACE,
            Some(v) => duration::parse_named("LABKIT_GRACE", v)?,
        };
        let quiet = get(env, "LABKIT_QUIET").map_or(Ok(false), |v| parse_bool("LABKIT_QUIET", v))?;
        let path = get(env, "PATH").map(str::to_owned);
        Ok(SetupConfig {
            who,
            shell,
            sudo,
            extra_groups,
            steps_dir,
            step_abort,
            step_warn,
            step_timeout,
            grace,
            quiet,
            path,
        })
    }
}

/// `labinit run`'s options as given on the command line (text: they are
/// validated together with their `LABKIT_*` fallbacks).
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    pub timeout: Option<String>,
    pub kill_after: Option<String>,
    pub grace: Option<String>,
    pub preserve_status: bool,
}

impl Options {
    /// Whether no option was given.
    pub(crate) fn is_empty(&self) -> bool {
        self.timeout.is_none() && self.kill_after.is_none() && self.grace.is_none() && !self.preserve_status
    }
}

/// What the command line adds to the environment for `run` and `wait`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Flags {
    /// `--root`.
    pub root: Option<PathBuf>,
    pub options: Options,
    /// `wait` (idle timeout [`DEFAULT_WAIT_IDLE`] by default) rather than `run` (none).
    pub waits: bool,
    /// Under an outer labinit ([`crate::init::nesting`]): setup is not read,
    /// the outer labinit did it.
    pub nested: bool,
}

/// How the job is supervised: `--grace`, `--timeout`, `--kill-after`,
/// `--preserve-status`, else `LABKIT_GRACE`, `LABKIT_TIMEOUT`,
/// `LABKIT_KILL_AFTER`, `LABKIT_PRESERVE_STATUS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Supervision {
    /// Between the stop signal and SIGKILL ([`DEFAULT_JOB_GRACE`]).
    pub grace: Duration,
    /// `None`: no timeout (also for `0`).
    pub timeout: Option<Duration>,
    /// After a timeout, SIGKILL after this (`None`: the grace).
    pub kill_after: Option<Duration>,
    /// After a timeout, exit with the job's status instead of 124.
    pub preserve_status: bool,
}

/// Everything `run` and `wait` need to know, read and validated before
/// anything changes.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Prefix of every file setup touches (`/` in production).
    pub root: PathBuf,
    /// `None` when nested: the outer labinit set up.
    pub setup: Option<SetupConfig>,
    pub supervision: Supervision,
    /// The idle watchdog (`LABKIT_IDLE_*`); `None` when off.
    pub idle: Option<IdleConfig>,
    /// `LABKIT_SERVICES_DIR` (container path, [`DEFAULT_SERVICES_DIR`]).
    pub services_dir: String,
    /// `LABKIT_SERVICE_GRACE` ([`DEFAULT_SERVICE_GRACE`]).
    pub service_grace: Duration,
    /// This binary, for the services (`LABKIT_LABINIT`).
    pub labinit: PathBuf,
}

impl Config {
    /// Read and validate the whole configuration, in this order: the
    /// supervision policy, the idle watchdog, the services, setup (the
    /// first problem is the error: one line naming the variable or option
    /// and the rule).
    pub(crate) fn load(env: &Env, flags: &Flags) -> Result<Config, Fatal> {
        let supervision = supervision(&flags.options, env)?;
        let idle = idle_config(env, if flags.waits { DEFAULT_WAIT_IDLE } else { Duration::ZERO })?;
        let services_dir = match env.text("LABKIT_SERVICES_DIR") {
            None => DEFAULT_SERVICES_DIR.to_owned(),
            Some(d) if d.starts_with('/') => d.to_owned(),
            Some(d) => return Err(Fatal::config(format!("LABKIT_SERVICES_DIR={d:?} must be an absolute path"))),
        };
        let service_grace = match env.text("LABKIT_SERVICE_GRACE") {
            None => DEFAULT_SERVICE_GRACE,
            Some(v) => duration::parse_named("LABKIT_SERVICE_GRACE", v)?,
        };
        let setup = if flags.nested {
            None
        } else {
            let mut setup = SetupConfig::from_env(&env.strings())?;
            // A step a stop signal ends gets the job's grace.
            setup.grace = supervision.grace;
            Some(setup)
        };
        let labinit = env.exe().map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(DEFAULT_LABINIT));
        let root = root(flags.root.clone(), env);
        Ok(Config { root, setup, supervision, idle, services_dir, service_grace, labinit })
    }
}

/// The root: `--root`, else `LABKIT_ROOT`, else `/`; made absolute against
/// the directory labinit started in, because labinit leaves it for `/`.
pub(crate) fn root(flag: Option<PathBuf>, env: &Env) -> PathBuf {
    let root = flag.or_else(|| env.get("LABKIT_ROOT").filter(|v| !v.is_empty()).map(PathBuf::from));
    let root = root.unwrap_or_else(|| PathBuf::from("/"));
    match env.start_dir() {
        Some(d) if !root.is_absolute() => d.join(&root),
        _ => root,
    }
}

/// The idle watchdog's settings ([`idle::config_from_env`]), with
/// `default_timeout` when `LABKIT_IDLE_TIMEOUT` is unset.
pub(crate) fn idle_config(env: &Env, default_timeout: Duration) -> Result<Option<IdleConfig>, Fatal> {
    idle::config_from_env(&|name| env.lossy(name), default_timeout)
}

/// The supervision policy from the options, falling back to the variables.
pub(crate) fn supervision(opts: &Options, env: &Env) -> Result<Supervision, Fatal> {
    let pick = |flag: &Option<String>, flag_name: &str, var: &str| -> Result<Option<Duration>, Fatal> {
        match (flag, env.text(var)) {
            (Some(v), _) => duration::parse_named(flag_name, v).map(Some),
            (None, Some(v)) => duration::parse_named(var, v).map(Some),
            (None, None) => Ok(None),
        }
    };
    let timeout = pick(&opts.timeout, "--timeout", "LABKIT_TIMEOUT")?.filter(|d| !d.is_zero());
    let kill_after = pick(&opts.kill_after, "--kill-after", "LABKIT_KILL_AFTER")?;
    let grace = pick(&opts.grace, "--grace", "LABKIT_GRACE")?.unwrap_or(DEFAULT_JOB_GRACE);
    let preserve_status = opts.preserve_status
        || match env.text("LABKIT_PRESERVE_STATUS") {
            Some(v) => parse_bool("LABKIT_PRESERVE_STATUS", v)?,
            None => false,
        };
    Ok(Supervision { grace, timeout, kill_after, preserve_status })
}

fn who(env: &[(String, String)]) -> Result<Who, Fatal> {
    let vals: Vec<Option<&str>> = CLUSTER_VARS.iter().map(|v| get(env, v)).collect();
    if vals.iter().all(Option::is_none) {
        return Ok(Who::Current);
    }
    let missing: Vec<&str> = CLUSTER_VARS.iter().zip(&vals).filter(|(_, v)| v.is_none()).map(|(n, _)| *n).collect();
    if !missing.is_empty() {
        return Err(Fatal::config(format!(
            "{} not set while the other CLUSTER_* variables are; set all four CLUSTER_USER, CLUSTER_USER_ID, CLUSTER_GROUP_NAME, CLUSTER_GROUP_ID (or none to run as the image's user)",
            missing.join(", ") + if missing.len() == 1 { " is" } else { " are" }
        )));
    }
    let (user, uid, group, gid) =
        (vals[0].unwrap_or(""), vals[1].unwrap_or(""), vals[2].unwrap_or(""), vals[3].unwrap_or(""));
    validate::name("CLUSTER_USER", user)?;
    validate::name("CLUSTER_GROUP_NAME", group)?;
    let uid = validate::id("CLUSTER_USER_ID", uid, user == "root")?;
    let gid = validate::id("CLUSTER_GROUP_ID", gid, group == "root")?;
    if user == "root" || uid == 0 {
        if user == "root" && uid == 0 {
            return Ok(Who::Root);
        }
        return Err(Fatal::config(format!(
            "CLUSTER_USER={user:?} with CLUSTER_USER_ID={uid}: the name root is reserved for uid 0; use another name"
        )));
    }
    if group == "root" && gid != 0 {
        return Err(Fatal::config(format!(
            "CLUSTER_GROUP_NAME=\"root\" with CLUSTER_GROUP_ID={gid}: the group name root is reserved for gid 0"
        )));
    }
    Ok(Who::User(AccountRequest { user: user.to_owned(), uid, group: group.to_owned(), gid }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::exit;

    #[test]
    fn policy_from_flags_and_env() {
        let env = Env::from_pairs(&[("LABKIT_TIMEOUT", "4h"), ("LABKIT_GRACE", "5s")]);
        let p = supervision(&Options::default(), &env).unwrap();
        assert_eq!(p.timeout, Some(Duration::from_secs(4 * 3600)));
        assert_eq!(p.grace, Duration::from_secs(5));
        let o = Options { timeout: Some("0".into()), grace: Some("1.5s".into()), ..Default::default() };
        let p = supervision(&o, &env).unwrap();
        assert_eq!(p.timeout, None);
        assert_eq!(p.grace, Duration::from_millis(1500));
        let d = crate::init::supervisor::Policy::default();
        let p = supervision(&Options::default(), &Env::default()).unwrap();
        assert_eq!(
            (p.grace, p.timeout, p.kill_after, p.preserve_status),
            (d.grace, d.timeout, d.kill_after, d.preserve_status)
        );
        let bad = supervision(&Options::default(), &Env::from_pairs(&[("LABKIT_GRACE", "soon")])).unwrap_err();
        assert_eq!(bad.code, exit::CONFIG);
        assert!(bad.message.contains("LABKIT_GRACE"));
    }

    /// The defaults named here are the ones the supervisor and the services
    /// use on their own.
    #[test]
    fn the_defaults_agree_with_their_users() {
        assert_eq!(DEFAULT_JOB_GRACE, crate::init::supervisor::Policy::default().grace);
        assert_ne!(DEFAULT_JOB_GRACE, DEFAULT_SERVICE_GRACE, "two settings, two names");
    }

    #[test]
    fn everything_is_validated_before_anything_is_used() {
        let flags = Flags::default();
        let ok = Config::load(&Env::from_pairs(&[("LABKIT_GRACE", "7s"), ("PATH", "/usr/bin")]), &flags).unwrap();
        let setup = ok.setup.expect("not nested");
        assert_eq!(setup.grace, Duration::from_secs(7), "a step gets the job's grace");
        assert_eq!(setup.path.as_deref(), Some("/usr/bin"), "sudo's PATH comes from the Env");
        assert_eq!((ok.idle.is_none(), ok.service_grace), (true, DEFAULT_SERVICE_GRACE));
        for (var, value) in [
            ("LABKIT_TIMEOUT", "soon"),
            ("LABKIT_IDLE_TIMEOUT", "x"),
            ("LABKIT_SERVICES_DIR", "relative"),
            ("LABKIT_SERVICE_GRACE", "-1"),
            ("LABKIT_STEP_WARN", "367d"),
            ("CLUSTER_USER", "alice"),
        ] {
            let e = Config::load(&Env::from_pairs(&[(var, value)]), &flags).unwrap_err();
            assert_eq!(e.code, exit::CONFIG, "{var}");
            assert!(e.message.contains(var), "{var}: {}", e.message);
        }
        // Nested: setup is the outer labinit's, its variables are not read.
        let nested = Flags { nested: true, ..Flags::default() };
        assert!(Config::load(&Env::from_pairs(&[("CLUSTER_USER", "alice")]), &nested).unwrap().setup.is_none());
        // wait's watchdog is on by default, run's is off.
        let waits = Flags { waits: true, ..Flags::default() };
        assert_eq!(Config::load(&Env::default(), &waits).unwrap().idle.map(|c| c.timeout), Some(DEFAULT_WAIT_IDLE));
    }

    /// One cap for every duration setting (366 days), setup's included.
    #[test]
    fn one_duration_cap() {
        for var in ["LABKIT_STEP_WARN", "LABKIT_STEP_TIMEOUT"] {
            let env = |v: &str| vec![(var.to_owned(), v.to_owned())];
            assert!(SetupConfig::from_env(&env("200d")).is_ok(), "{var}: within the cap");
            let e = SetupConfig::from_env(&env("367d")).unwrap_err();
            assert!(e.message.contains("longer than 366 days"), "{}", e.message);
        }
    }

    #[test]
    fn root_is_absolute() {
        let env = Env::new(vec![("LABKIT_ROOT".into(), "t".into())], Some("/work".into()), Ok("/l".into()));
        assert_eq!(root(None, &env), PathBuf::from("/work/t"));
        assert_eq!(root(Some("/x".into()), &env), PathBuf::from("/x"), "the flag wins");
        assert_eq!(root(None, &Env::from_pairs(&[("LABKIT_ROOT", "")])), PathBuf::from("/"));
    }
}
