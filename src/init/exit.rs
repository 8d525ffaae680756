//! Exit codes of labinit, in one place (documented in the README's table).
//! They follow coreutils `timeout` and the shell so users can drop their
//! `timeout 4h …` wrappers without changing how they read results.

/// The job's own timeout expired (`--timeout`), as coreutils `timeout`.
pub(crate) const TIMEOUT: i32 = 124;
/// labinit's own error: bad configuration, cannot create the account, cannot
/// drop privileges. The job did not run (or never as the wrong user).
pub(crate) const CONFIG: i32 = 125;
/// The command was found but could not be executed.
pub(crate) const NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub(crate) const NOT_FOUND: i32 = 127;
/// Base for "killed by signal N" (128 + N).
pub(crate) const SIGNAL_BASE: i32 = 128;
/// `--timeout` expired and the job had to be killed after `--kill-after`.
pub(crate) const TIMEOUT_KILLED: i32 = 137;

/// An error that ends labinit with a specific exit code and one message line.
#[derive(Debug)]
pub struct Fatal {
    pub code: i32,
    pub message: String,
}

impl Fatal {
    pub fn config(message: impl Into<String>) -> Self {
        Fatal { code: CONFIG, message: message.into() }
    }
    pub fn with_code(code: i32, message: impl Into<String>) -> Self {
        Fatal { code, message: message.into() }
    }
}

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fatal {}

/// How a process ended, as `waitpid` reports it: the main process of the
/// job, a service, a setup step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// It exited with this code (0–255).
    Code(i32),
    /// A signal (this number) killed it.
    Signal(i32),
}

impl Exit {
    /// From a `waitpid` status word. Pure.
    pub(crate) fn from_wait_status(status: i32) -> Exit {
        if nix::libc::WIFSIGNALED(status) {
            Exit::Signal(nix::libc::WTERMSIG(status))
        } else {
            Exit::Code(nix::libc::WEXITSTATUS(status))
        }
    }

    /// The shell's convention: the code, or 128 + the signal number.
    pub(crate) fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c & 0xff,
            Exit::Signal(s) => SIGNAL_BASE + s,
        }
    }

    /// For log lines: "exited with code 3", "was killed by SIGTERM (exit
    /// code 143)".
    pub(crate) fn describe(self) -> String {
        match self {
            Exit::Code(c) => format!("exited with code {c}"),
            Exit::Signal(s) => {
                format!("was killed by {} (exit code {})", crate::init::signals::name(s), self.code())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::libc;

    #[test]
    fn wait_status_mapping() {
        assert_eq!(Exit::from_wait_status(3 << 8), Exit::Code(3));
        assert_eq!(Exit::from_wait_status(libc::SIGTERM), Exit::Signal(libc::SIGTERM));
        assert_eq!(Exit::Signal(libc::SIGHUP).code(), 129);
        assert_eq!(Exit::Code(300).code(), 44, "codes are 8 bits, as the shell sees them");
        assert!(Exit::Signal(libc::SIGTERM).describe().contains("SIGTERM"));
        assert_eq!(Exit::Code(3).describe(), "exited with code 3");
    }
}
