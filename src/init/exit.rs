//! Exit codes of labinit, in one place (documented in the README's table).
//! They follow coreutils `timeout` and the shell so users can drop their
//! `timeout 4h …` wrappers without changing how they read results.

/// The job's own timeout expired (`--timeout`), as coreutils `timeout`.
pub const TIMEOUT: i32 = 124;
/// labinit's own error: bad configuration, cannot create the account, cannot
/// drop privileges. The job did not run (or never as the wrong user).
pub const CONFIG: i32 = 125;
/// The command was found but could not be executed.
pub const NOT_EXECUTABLE: i32 = 126;
/// The command was not found.
pub const NOT_FOUND: i32 = 127;
/// Base for "killed by signal N" (128 + N).
pub const SIGNAL_BASE: i32 = 128;
/// `--timeout` expired and the job had to be killed after `--kill-after`.
pub const TIMEOUT_KILLED: i32 = 137;

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
