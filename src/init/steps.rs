//! Setup steps: the entries of `/opt/lab/setup_steps` (`LABKIT_STEPS_DIR`),
//! run once per start after the account exists, in byte order of name, as
//! root, each as a child in its own process group. Executables run directly;
//! a non-executable `*.sh` runs with the shell (users forget `chmod +x`);
//! anything else is skipped with a notice.
//!
//! A failing step is a warning and the next step runs (the legacy behaviour
//! images built on ours rely on) unless `LABKIT_STEP_FAILURE=abort`. Steps hand
//! variables to the job by appending `NAME=value` lines to the file named by
//! `LABKIT_ENV`; see [`parse_env_line`] for the exact grammar.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::init::exit::{self, Fatal};
use crate::init::log;

/// Process group of the step that is running now (0 = none), so a signal
/// handler can pass a terminating signal on to it.
pub static CURRENT_STEP_PGID: AtomicI32 = AtomicI32::new(0);

/// How the steps are run.
#[derive(Debug, Clone)]
pub struct StepOptions {
    /// Host path of the steps directory.
    pub dir: PathBuf,
    pub abort_on_failure: bool,
    pub warn_after: Duration,
    /// Host path of the `LABKIT_ENV` file steps append to.
    pub env_file: PathBuf,
    /// Environment every step gets (container env + `LABKIT_*`).
    pub env: Vec<(String, String)>,
    /// Shell used for non-executable `*.sh` steps.
    pub shell: PathBuf,
}

/// How one directory entry is treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    Executable,
    ShellScript,
    Skip(String),
}

/// Classify an entry from its name and metadata. Pure.
pub fn classify(name: &str, is_file: bool, mode: u32) -> StepKind {
    if name.starts_with('.') {
        return StepKind::Skip("hidden file".into());
    }
    if !is_file {
        return StepKind::Skip("not a regular file".into());
    }
    if mode & 0o111 != 0 {
        StepKind::Executable
    } else if name.ends_with(".sh") {
        StepKind::ShellScript
    } else {
        StepKind::Skip("not executable and not a .sh script".into())
    }
}

/// The steps in run order: byte order of the file name (C collation, so
/// `01` < `10` < `9` < `A` < `a`).
pub fn list(dir: &Path) -> io::Result<Vec<(String, StepKind)>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names: Vec<Vec<u8>> = Vec::new();
    for e in entries {
        names.push(e?.file_name().as_bytes().to_vec());
    }
    names.sort();
    let mut out = Vec::new();
    for raw in names {
        let name = String::from_utf8_lossy(&raw).into_owned();
        let path = dir.join(std::ffi::OsStr::from_bytes(&raw));
        // Follow symlinks: a step may be a link to a shared script.
        let kind = match fs::metadata(&path) {
            Ok(m) => classify(&name, m.is_file(), m.permissions().mode()),
            Err(_) => StepKind::Skip("dangling link".into()),
        };
        out.push((name, kind));
    }
    Ok(out)
}

/// A variable exported by a step.
pub type Export = (String, String);

/// Parse one `LABKIT_ENV` line. Blank lines and `#` comments give `None`.
/// Grammar: `NAME=value`, NAME = `[A-Za-z_][A-Za-z0-9_]*` and not `LABKIT_*`
/// (labinit's own) nor HOME, USER, LOGNAME, SHELL (the account's: see
/// [`crate::init::job::reserved_export`]), value taken literally to the end
/// of the line (no quotes, no expansion), without NUL.
pub fn parse_env_line(line: &str) -> Result<Option<Export>, String> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let Some((name, value)) = line.split_once('=') else {
        return Err("expected NAME=value".into());
    };
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!("{name:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"));
    }
    if name.starts_with("LABKIT_") {
        return Err(format!("{name} is reserved for labinit"));
    }
    if let Some(why) = crate::init::job::reserved_export(name) {
        return Err(why);
    }
    if value.contains('\0') {
        return Err("the value contains a NUL byte".into());
    }
    Ok(Some((name.to_owned(), value.to_owned())))
}

/// Parse the lines a step appended; bad lines are reported with the step
/// and the line number in the file, and skipped.
fn collect_exports(step: &str, text: &str, first_line: usize, exports: &mut Vec<Export>) {
    for (i, line) in text.lines().enumerate() {
        match parse_env_line(line) {
            Ok(Some((k, v))) => {
                exports.retain(|(n, _)| n != &k);
                exports.push((k, v));
            }
            Ok(None) => {}
            Err(why) => log::warn(format!("step {step}: LABKIT_ENV line {}: {why}; line ignored", first_line + i)),
        }
    }
}

/// Run every step. Returns the variables they exported (last value wins).
/// `pending` reports a terminating signal received meanwhile.
pub fn run_all(opts: &StepOptions, pending: &dyn Fn() -> Option<i32>) -> Result<Vec<Export>, Fatal> {
    let steps = list(&opts.dir)
        .map_err(|e| Fatal::config(format!("cannot read the steps directory {}: {e}", opts.dir.display())))?;
    let mut exports = Vec::new();
    let mut consumed = 0usize; // bytes of the env file already parsed
    let mut lines_seen = 0usize;
    for (name, kind) in steps {
        if let Some(sig) = pending() {
            return Err(Fatal::with_code(
                exit::SIGNAL_BASE + sig,
                format!("setup stopped by signal {sig} before step {name}"),
            ));
        }
        let path = opts.dir.join(&name);
        let mut cmd = match kind {
            StepKind::Skip(why) => {
                log::info(format!("step {name}: skipped ({why})"));
                continue;
            }
            StepKind::Executable => Command::new(&path),
            StepKind::ShellScript => {
                let mut c = Command::new(&opts.shell);
                c.arg(&path);
                c
            }
        };
        cmd.env_clear().envs(opts.env.iter().map(|(k, v)| (k, v))).process_group(0);
        let started = Instant::now();
        let status = run_one(&name, &mut cmd, opts.warn_after);
        let ms = started.elapsed().as_millis();
        let code = match status {
            Ok(s) => s.code().unwrap_or_else(|| exit::SIGNAL_BASE + s.signal().unwrap_or(0)),
            Err(e) => {
                log::warn(format!("step {name}: could not start: {e}"));
                exit::NOT_EXECUTABLE
            }
        };
        // Parse what this step appended to the env file.
        if let Ok(data) = fs::read(&opts.env_file) {
            if data.len() > consumed {
                let text = String::from_utf8_lossy(&data[consumed..]).into_owned();
                collect_exports(&name, &text, lines_seen + 1, &mut exports);
                lines_seen += text.lines().count();
                consumed = data.len();
            }
        }
        if let Some(sig) = pending() {
            return Err(Fatal::with_code(
                exit::SIGNAL_BASE + sig,
                format!("setup stopped by signal {sig} during step {name}"),
            ));
        }
        if code == 0 {
            log::info(format!("step {name}: ok ({ms} ms)"));
        } else if opts.abort_on_failure {
            return Err(Fatal::with_code(
                code,
                format!(
                    "step {name} failed with exit code {code} after {ms} ms; setup stops (LABKIT_STEP_FAILURE=abort)"
                ),
            ));
        } else {
            log::warn(format!(
                "step {name} failed with exit code {code} after {ms} ms; continuing with the next step (LABKIT_STEP_FAILURE=abort stops instead)"
            ));
        }
    }
    Ok(exports)
}

/// Run one step, warning once if it outlives `warn_after`.
fn run_one(name: &str, cmd: &mut Command, warn_after: Duration) -> io::Result<std::process::ExitStatus> {
    let mut child = cmd.spawn()?;
    CURRENT_STEP_PGID.store(child.id() as i32, Ordering::SeqCst);
    let (done, wait) = mpsc::channel::<()>();
    let name = name.to_owned();
    let watcher = std::thread::spawn(move || {
        if wait.recv_timeout(warn_after) == Err(mpsc::RecvTimeoutError::Timeout) {
            log::warn(format!(
                "step {name} is still running after {} s; setup waits for it (a step must finish; long-running programs belong in /opt/lab/services)",
                warn_after.as_secs()
            ));
        }
    });
    let status = child.wait();
    CURRENT_STEP_PGID.store(0, Ordering::SeqCst);
    let _ = done.send(());
    let _ = watcher.join();
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_rules() {
        assert_eq!(classify("10_a.sh", true, 0o755), StepKind::Executable);
        assert_eq!(classify("10_a.sh", true, 0o644), StepKind::ShellScript);
        assert_eq!(classify("10_a", true, 0o755), StepKind::Executable);
        assert!(matches!(classify("README", true, 0o644), StepKind::Skip(_)));
        assert!(matches!(classify(".hidden.sh", true, 0o755), StepKind::Skip(_)));
        assert!(matches!(classify("dir", false, 0o755), StepKind::Skip(_)));
    }

    #[test]
    fn env_lines() {
        assert_eq!(parse_env_line("FOO=1").unwrap(), Some(("FOO".into(), "1".into())));
        assert_eq!(parse_env_line("A_B=x=y 'z'").unwrap(), Some(("A_B".into(), "x=y 'z'".into())));
        assert_eq!(parse_env_line("EMPTY=").unwrap(), Some(("EMPTY".into(), "".into())));
        assert_eq!(parse_env_line("# comment").unwrap(), None);
        assert_eq!(parse_env_line("   ").unwrap(), None);
        for bad in ["FOO", "1X=2", "A-B=1", "export FOO=1", " FOO=1", "LABKIT_USER=root", "=x", "A\0=1"] {
            assert!(parse_env_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn last_value_wins() {
        let mut ex = Vec::new();
        collect_exports("s", "A=1\nB=2\nA=3\n", 1, &mut ex);
        assert_eq!(ex, vec![("B".into(), "2".into()), ("A".into(), "3".into())]);
    }
}
