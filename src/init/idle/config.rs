//! The watchdog's settings: `LABKIT_IDLE_*` read through a lookup, checked
//! all at once, and completed with the job's environment (where its Jupyter
//! servers write, and the timeout the job learns).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::init::duration;
use crate::init::exit::Fatal;
use crate::init::jupyter;

/// Watchdog settings (`LABKIT_IDLE_*`).
#[derive(Debug, Clone)]
pub struct IdleConfig {
    /// Idle time after which the container stops; zero disables the watchdog.
    pub(crate) timeout: Duration,
    pub(crate) interval: Duration,
    /// Fraction of one core (0.05 = 5 %).
    pub(crate) cpu: f64,
    /// Glob for GPU device nodes, e.g. `/dev/nvidia[0-9]*`.
    pub(crate) device_glob: String,
    /// Substrings of process names that count as busy.
    pub(crate) busy_names: Vec<String>,
    pub(crate) log_file: Option<PathBuf>,
    /// The Jupyter rule (`LABKIT_IDLE_JUPYTER`, on by default).
    pub(crate) jupyter: bool,
    /// Where Jupyter servers leave their runtime files
    /// ([`jupyter::runtime_dirs`]); set once the job's user is known.
    pub(crate) jupyter_runtime_dirs: Vec<PathBuf>,
}

impl Default for IdleConfig {
    fn default() -> Self {
        IdleConfig {
            timeout: Duration::from_secs(30 * 60),
            interval: Duration::from_secs(10),
            cpu: 0.05,
            device_glob: "/dev/nvidia[0-9]*".into(),
            busy_names: vec!["python".into()],
            log_file: None,
            jupyter: true,
            jupyter_runtime_dirs: Vec::new(),
        }
    }
}

/// The watchdog's settings from `LABKIT_IDLE_*` (`get` looks a variable
/// up). `default_timeout` is the mode's: 30 min for `wait`, zero (off) for
/// `run`. Returns `None` when the watchdog is off. Pure.
pub(crate) fn config_from_env(
    get: &dyn Fn(&str) -> Option<String>,
    default_timeout: Duration,
) -> Result<Option<IdleConfig>, Fatal> {
    let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    let mut cfg = IdleConfig { timeout: default_timeout, ..IdleConfig::default() };
    // Every variable is checked even when the watchdog ends up off: a typo
    // must be reported, not ignored until the day the watchdog is enabled.
    if let Some(v) = var("LABKIT_IDLE_TIMEOUT") {
        cfg.timeout = duration::parse_named("LABKIT_IDLE_TIMEOUT", &v)?;
    }
    if let Some(v) = var("LABKIT_IDLE_INTERVAL") {
        cfg.interval = duration::parse_named("LABKIT_IDLE_INTERVAL", &v)?;
        if cfg.interval < Duration::from_millis(10) {
            return Err(Fatal::config(format!(
                "LABKIT_IDLE_INTERVAL={v:?} is too short; use at least 0.01s (default 10s)"
            )));
        }
    }
    if let Some(v) = var("LABKIT_IDLE_CPU") {
        let num = v.trim().trim_end_matches('%').trim();
        match num.parse::<f64>() {
            Ok(p) if p.is_finite() && p > 0.0 && p <= 100_000.0 => cfg.cpu = p / 100.0,
            _ => {
                return Err(Fatal::config(format!(
                    "LABKIT_IDLE_CPU={v:?} is not a percentage of one core; write e.g. 5 or 12.5% (default 5)"
                )))
            }
        }
    }
    if let Some(v) = get("LABKIT_IDLE_BUSY") {
        cfg.busy_names = v.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect();
    }
    if let Some(v) = get("LABKIT_IDLE_DEVICES") {
        let v = v.trim().to_owned();
        if !v.is_empty()
            && (!v.starts_with('/')
                || Path::new(&v).parent().is_some_and(|d| d.to_string_lossy().contains(['*', '?', '['])))
        {
            return Err(Fatal::config(format!(
                "LABKIT_IDLE_DEVICES={v:?} must be an absolute path whose last part may hold * ? [0-9] (default /dev/nvidia[0-9]*)"
            )));
        }
        cfg.device_glob = v;
    }
    if let Some(v) = var("LABKIT_IDLE_JUPYTER") {
        cfg.jupyter = crate::init::env::parse_bool("LABKIT_IDLE_JUPYTER", v.trim())?;
    }
    if let Some(v) = var("LABKIT_IDLE_LOG") {
        if !v.starts_with('/') {
            return Err(Fatal::config(format!("LABKIT_IDLE_LOG={v:?} must be an absolute path")));
        }
        cfg.log_file = Some(PathBuf::from(v));
    }
    if cfg.timeout.is_zero() {
        return Ok(None);
    }
    Ok(Some(cfg))
}

/// The variable labinit sets in the job's environment while the watchdog
/// is on: its timeout in whole seconds, for tools in the job that follow it
/// (lab-pytorch's Jupyter configuration culls idle kernels after it).
/// `LABKIT_*` variables never reach the job, hence another prefix.
pub(crate) const TIMEOUT_VAR: &str = "LABINIT_IDLE_TIMEOUT";

/// Complete the watchdog's settings with the job's environment `env`: the
/// Jupyter runtime directories its servers will use, and [`TIMEOUT_VAR`]
/// added to `env`. Pure.
pub(crate) fn for_job(
    cfg: Option<IdleConfig>,
    env: &mut Vec<(std::ffi::OsString, std::ffi::OsString)>,
) -> Option<IdleConfig> {
    let mut cfg = cfg?;
    let get = |k: &str| env.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.to_string_lossy().into_owned());
    if cfg.jupyter {
        cfg.jupyter_runtime_dirs = jupyter::runtime_dirs(&get, None);
    }
    env.retain(|(k, _)| k != TIMEOUT_VAR);
    env.push((TIMEOUT_VAR.into(), cfg.timeout.as_secs().max(1).to_string().into()));
    Some(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_switches() {
        let none = |_: &str| None;
        let wait = config_from_env(&none, Duration::from_secs(1800)).unwrap().unwrap();
        assert_eq!(wait.timeout, Duration::from_secs(1800));
        assert_eq!(wait.interval, Duration::from_secs(10));
        assert_eq!(wait.busy_names, vec!["python".to_owned()]);
        assert!(config_from_env(&none, Duration::ZERO).unwrap().is_none(), "off by default for run");
        let env = |k: &str| {
            match k {
                "LABKIT_IDLE_TIMEOUT" => Some("1h"),
                "LABKIT_IDLE_INTERVAL" => Some("0.2s"),
                "LABKIT_IDLE_CPU" => Some("12.5%"),
                "LABKIT_IDLE_BUSY" => Some("python, jupyter ,"),
                "LABKIT_IDLE_DEVICES" => Some("/tmp/x/nvidia[0-9]*"),
                "LABKIT_IDLE_LOG" => Some("/data/idle-{host}-{date}.log"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let c = config_from_env(&env, Duration::ZERO).unwrap().unwrap();
        assert_eq!(c.timeout, Duration::from_secs(3600));
        assert_eq!(c.interval, Duration::from_millis(200));
        assert!((c.cpu - 0.125).abs() < 1e-9);
        assert_eq!(c.busy_names, vec!["python".to_owned(), "jupyter".to_owned()]);
        assert_eq!(c.device_glob, "/tmp/x/nvidia[0-9]*");
        let off = |k: &str| (k == "LABKIT_IDLE_TIMEOUT").then(|| "0".to_owned());
        assert!(config_from_env(&off, Duration::from_secs(1800)).unwrap().is_none());
        let empty_busy = |k: &str| (k == "LABKIT_IDLE_BUSY").then(String::new);
        assert!(config_from_env(&empty_busy, Duration::from_secs(60)).unwrap().unwrap().busy_names.is_empty());
    }

    #[test]
    fn config_errors_name_the_variable() {
        for (k, v) in [
            ("LABKIT_IDLE_TIMEOUT", "soon"),
            ("LABKIT_IDLE_INTERVAL", "0"),
            ("LABKIT_IDLE_CPU", "lots"),
            ("LABKIT_IDLE_CPU", "-1"),
            ("LABKIT_IDLE_DEVICES", "nvidia*"),
            ("LABKIT_IDLE_DEVICES", "/dev/*/x"),
            ("LABKIT_IDLE_LOG", "rel.log"),
        ] {
            let get = |n: &str| (n == k).then(|| v.to_owned());
            let e = config_from_env(&get, Duration::from_secs(60)).unwrap_err();
            assert!(e.message.contains(k), "{k}={v}: {}", e.message);
        }
    }
    #[test]
    fn jupyter_switch_and_job_environment() {
        let none = |_: &str| None;
        assert!(config_from_env(&none, Duration::from_secs(60)).unwrap().unwrap().jupyter, "on by default");
        let off = |k: &str| (k == "LABKIT_IDLE_JUPYTER").then(|| "0".to_owned());
        let cfg = config_from_env(&off, Duration::from_secs(90)).unwrap().unwrap();
        assert!(!cfg.jupyter);
        let bad = |k: &str| (k == "LABKIT_IDLE_JUPYTER").then(|| "maybe".to_owned());
        assert!(config_from_env(&bad, Duration::from_secs(60)).unwrap_err().message.contains("LABKIT_IDLE_JUPYTER"));
        // The job learns the timeout in seconds; the watchdog where Jupyter writes.
        let mut env: Vec<(std::ffi::OsString, std::ffi::OsString)> =
            vec![("HOME".into(), "/home/alice".into()), (TIMEOUT_VAR.into(), "5".into())];
        let on = config_from_env(&none, Duration::from_secs(1800)).unwrap();
        let c = for_job(on, &mut env).unwrap();
        assert_eq!(env, vec![("HOME".into(), "/home/alice".into()), (TIMEOUT_VAR.into(), "1800".into())]);
        assert_eq!(c.jupyter_runtime_dirs[0], PathBuf::from("/home/alice/.local/share/jupyter/runtime"));
        // Rule off: no directories, so no Jupyter lookups; the timeout is still exported.
        let mut env = Vec::new();
        assert!(for_job(Some(cfg), &mut env).unwrap().jupyter_runtime_dirs.is_empty());
        assert_eq!(env, vec![(TIMEOUT_VAR.into(), "90".into())]);
        // Watchdog off: nothing exported.
        let mut env = Vec::new();
        assert!(for_job(None, &mut env).is_none() && env.is_empty());
    }
}
