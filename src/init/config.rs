//! labinit's setup configuration, read from the environment (the legacy
//! `CLUSTER_*` names pod specs already set, and `LABKIT_*` for the rest) and
//! validated completely before anything is touched. Pure code.

use std::time::Duration;

use crate::init::exit::Fatal;
use crate::init::{duration, validate};

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
    /// `LABKIT_STEP_WARN` (default 60 s).
    pub step_warn: Duration,
    /// `LABKIT_STEP_TIMEOUT` (default off): a step running longer is
    /// stopped like the job and counts as failed.
    pub step_timeout: Option<Duration>,
    /// `LABKIT_GRACE` (default 20 s): between a step's stop signal and
    /// SIGKILL (`labinit run --grace` overrides it).
    pub grace: Duration,
    /// `LABKIT_QUIET=1`: hide info lines.
    pub quiet: bool,
}

pub const CLUSTER_VARS: [&str; 4] = ["CLUSTER_USER", "CLUSTER_USER_ID", "CLUSTER_GROUP_NAME", "CLUSTER_GROUP_ID"];
pub const DEFAULT_STEPS_DIR: &str = "/opt/lab/setup_steps";
/// `LABKIT_GRACE`'s default (the supervisor's, for steps too).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(20);

fn get<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Parse a boolean switch: 1/0, true/false, yes/no, on/off.
pub fn parse_bool(var: &str, value: &str) -> Result<bool, Fatal> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Fatal::config(format!("{var}={value:?} is not a switch; use 1 or 0"))),
    }
}

/// Parse a duration (see [`duration::parse`]), refusing more than 100 days:
/// a longer value is almost certainly a typo.
pub fn parse_duration(var: &str, value: &str) -> Result<Duration, Fatal> {
    let d = duration::parse_named(var, value)?;
    if d > Duration::from_secs(100 * 86400) {
        return Err(Fatal::config(format!("{var}={value:?} is longer than 100 days; write a shorter duration")));
    }
    Ok(d)
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
            None | Some("") => Duration::from_secs(60),
            Some(v) => parse_duration("LABKIT_STEP_WARN", v)?,
        };
        let step_timeout = match get(env, "LABKIT_STEP_TIMEOUT") {
            None | Some("") => None,
            Some(v) => Some(parse_duration("LABKIT_STEP_TIMEOUT", v)?).filter(|d| !d.is_zero()),
        };
        let grace = match get(env, "LABKIT_GRACE") {
            None | Some("") => DEFAULT_GRACE,
            Some(v) => duration::parse_named("LABKIT_GRACE", v)?,
        };
        let quiet = get(env, "LABKIT_QUIET").map_or(Ok(false), |v| parse_bool("LABKIT_QUIET", v))?;
        Ok(SetupConfig { who, shell, sudo, extra_groups, steps_dir, step_abort, step_warn, step_timeout, grace, quiet })
    }
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
