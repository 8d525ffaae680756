//! The process environment as labinit read it once, at the top
//! ([`crate::init::cli::main`], the only place that reads `std::env`):
//! the variables in order, the working directory it was started in and the
//! path of its own binary. Everything below takes an [`Env`], so no module
//! reads the environment behind its caller's back and tests build one from
//! plain pairs. Pure.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::init::exit::Fatal;

/// The environment labinit was started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Env {
    vars: Vec<(OsString, OsString)>,
    start_dir: Option<PathBuf>,
    /// The path, or why the kernel did not give it.
    exe: Result<PathBuf, String>,
}

impl Default for Env {
    /// No variables, no directory, no binary.
    fn default() -> Env {
        Env::from_pairs(&[])
    }
}

impl Env {
    /// `vars` in the order the kernel gave them (duplicates kept: lookups see
    /// the last); `start_dir` the working directory when it is an absolute
    /// path (musl's getcwd hands back "(unreachable)/…" for a directory
    /// outside this mount namespace); `exe` this binary (`/proc/self/exe`).
    pub(crate) fn new(
        vars: Vec<(OsString, OsString)>,
        start_dir: Option<PathBuf>,
        exe: std::io::Result<PathBuf>,
    ) -> Env {
        let exe = exe.map_err(|e| format!("cannot find labinit's own path (/proc/self/exe): {e}"));
        Env { vars, start_dir: start_dir.filter(|p| p.is_absolute()), exe }
    }

    /// Only variables (no working directory, no binary): for tests.
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Env {
        let unknown = Err(std::io::ErrorKind::NotFound.into());
        Env::new(pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(), None, unknown)
    }

    /// Every variable, in order.
    pub(crate) fn vars(&self) -> &[(OsString, OsString)] {
        &self.vars
    }

    /// The value of `name` (the last one when it is set twice).
    pub(crate) fn get(&self, name: &str) -> Option<&OsStr> {
        self.vars.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_os_str())
    }

    /// The value of `name` when it is set, not empty and UTF-8.
    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(OsStr::to_str).filter(|s| !s.is_empty())
    }

    /// The value of `name` as text (invalid UTF-8 replaced), for the
    /// `get(name)` lookups of the settings' parsers.
    pub(crate) fn lossy(&self, name: &str) -> Option<String> {
        self.get(name).map(|v| v.to_string_lossy().into_owned())
    }

    /// Every variable as text (invalid UTF-8 replaced), as setup takes them.
    pub(crate) fn strings(&self) -> Vec<(String, String)> {
        self.vars.iter().map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned())).collect()
    }

    /// The working directory labinit was started in (the container's
    /// `workingDir`), when it is an absolute path.
    pub(crate) fn start_dir(&self) -> Option<&Path> {
        self.start_dir.as_deref()
    }

    /// This binary's path, or why it is not known (with the errno's text).
    pub(crate) fn exe(&self) -> Result<&Path, &str> {
        self.exe.as_deref().map_err(String::as_str)
    }
}

/// Parse a boolean switch: 1/0, true/false, yes/no, on/off.
pub(crate) fn parse_bool(var: &str, value: &str) -> Result<bool, Fatal> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Fatal::config(format!("{var}={value:?} is not a switch; use 1 or 0"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_of_a_name_wins_and_empty_is_unset_for_text() {
        let env = Env::from_pairs(&[("A", "1"), ("B", ""), ("A", "2")]);
        assert_eq!(env.get("A"), Some(OsStr::new("2")));
        assert_eq!(env.text("A"), Some("2"));
        assert_eq!(env.get("B"), Some(OsStr::new("")));
        assert_eq!(env.text("B"), None);
        assert_eq!(env.get("C"), None);
        assert_eq!(env.strings().len(), 3, "duplicates are kept in order");
    }

    #[test]
    fn only_an_absolute_start_directory_counts() {
        let env = Env::new(Vec::new(), Some("(unreachable)/data".into()), Err(std::io::ErrorKind::NotFound.into()));
        assert_eq!(env.start_dir(), None);
        assert!(env.exe().unwrap_err().contains("/proc/self/exe"), "{:?}", env.exe());
        let env = Env::new(Vec::new(), Some("/data".into()), Ok("/opt/lab/labinit".into()));
        assert_eq!(env.start_dir(), Some(Path::new("/data")));
        assert_eq!(env.exe(), Ok(Path::new("/opt/lab/labinit")));
    }

    #[test]
    fn switches() {
        for (v, want) in [("1", true), ("Yes", true), ("on", true), ("0", false), ("FALSE", false), ("off", false)] {
            assert_eq!(parse_bool("X", v).unwrap(), want, "{v}");
        }
        let e = parse_bool("LABKIT_SUDO", "maybe").unwrap_err();
        assert!(e.message.contains("LABKIT_SUDO=\"maybe\" is not a switch"), "{}", e.message);
    }
}
