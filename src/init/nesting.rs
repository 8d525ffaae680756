//! A labinit started inside a labinit job (a legacy `command:` that calls
//! `/opt/lab/setup_and_run_command.sh`, `labinit each`, `labinit shell` from
//! a terminal of the job): the outer one already set up and supervises, so
//! the inner one must not set up again or stack a second supervisor.
//!
//! Two facts decide it: the variable [`SUPERVISOR_VAR`] the outer labinit
//! leaves in the job's environment (its pid), checked against the process's
//! real ancestors ([`outer_supervisor`]), and whether a program is this very
//! binary ([`is_this_binary`]: same device and inode as `/proc/self/exe`).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::init::env::Env;

/// The environment variable an outer labinit leaves in the job's
/// environment (its pid), so that a labinit started from inside the job does
/// not set up again or stack a second supervisor.
pub(crate) const SUPERVISOR_VAR: &str = "LABKIT_SUPERVISOR";

/// Whether a labinit (the pid in `LABKIT_SUPERVISOR`) is an ancestor of this
/// process: then setup was done and a supervisor runs already. PID 1 is never
/// nested, so a stale variable baked into an image cannot skip setup.
pub(crate) fn outer_supervisor(env: &Env) -> Option<i32> {
    let pid: i32 = env.text(SUPERVISOR_VAR)?.parse().ok()?;
    let me = std::process::id() as i32;
    if me == 1 || pid <= 0 {
        return None;
    }
    let mut cur = me;
    for _ in 0..64 {
        let text = std::fs::read_to_string(format!("/proc/{cur}/stat")).ok()?;
        let ppid = crate::init::procfs::parse_stat(&text)?.ppid;
        if ppid == pid {
            return Some(pid);
        }
        if ppid <= 1 {
            return None;
        }
        cur = ppid;
    }
    None
}

/// Whether `path` is this same labinit binary (same device and inode as
/// `/proc/self/exe`): the one "same binary" check, for PID 1
/// ([`pid1_is_labinit`]) and for a program found in PATH (the ENTRYPOINT
/// `labinit` plus a legacy `command:` naming `/opt/lab/…`).
pub(crate) fn is_this_binary(path: &Path) -> bool {
    match (std::fs::metadata(path), std::fs::metadata("/proc/self/exe")) {
        (Ok(a), Ok(me)) => a.is_file() && a.dev() == me.dev() && a.ino() == me.ino(),
        _ => false,
    }
}

/// Whether PID 1 is this same labinit binary: then `labinit shell` gets the
/// nesting marker the job has (`LABKIT_SUPERVISOR=1`).
pub(crate) fn pid1_is_labinit() -> bool {
    is_this_binary(Path::new("/proc/1/exe"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_real_ancestor_is_an_outer_supervisor() {
        // Our parent is an ancestor; a pid that is not one (or garbage) is not.
        let parent = nix::unistd::getppid().as_raw();
        let env = |v: &str| Env::from_pairs(&[(SUPERVISOR_VAR, v)]);
        if std::process::id() != 1 && parent > 1 {
            assert_eq!(outer_supervisor(&env(&parent.to_string())), Some(parent));
        }
        assert_eq!(outer_supervisor(&env(&std::process::id().to_string())), None, "itself is no ancestor");
        for bad in ["", "0", "-1", "x", "99999999999"] {
            assert_eq!(outer_supervisor(&env(bad)), None, "{bad:?}");
        }
        assert_eq!(outer_supervisor(&Env::default()), None);
    }

    #[test]
    fn this_binary_is_itself_and_nothing_else() {
        assert!(is_this_binary(Path::new("/proc/self/exe")));
        assert!(!is_this_binary(Path::new("/bin/sh")));
        assert!(!is_this_binary(Path::new("/nonexistent/labinit")));
        assert!(!is_this_binary(Path::new("/proc/self")), "a directory is not a binary");
    }
}
