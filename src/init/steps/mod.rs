//! Setup steps: the entries of `/opt/lab/setup_steps` (`LABKIT_STEPS_DIR`),
//! run once per start after the account exists, in byte order of name, as
//! root, each as a child in its own process group. Executables run directly;
//! a non-executable `*.sh` runs with the shell (users forget `chmod +x`);
//! anything else is skipped with a notice.
//!
//! A failing step is a warning and the next step runs (the legacy behaviour
//! images built on ours rely on) unless `LABKIT_STEP_FAILURE=abort`. Steps hand
//! variables to the job by appending `NAME=value` lines to the file named by
//! `LABKIT_ENV`; see [`parse_env_line`] for the exact grammar and
//! [`EnvReader`] for the bounds.
//!
//! As steps (and services, listed the same way by [`list`]) run as root, only
//! what passes the ownership rule of [`trusted`](crate::init::trusted) runs, and the descriptor that
//! was checked is what is executed. Each step is supervised like the job
//! ([`supervise`]): stdin `/dev/null`, a stop signal passed to its process
//! group with SIGCONT and SIGKILL after the grace, `LABKIT_STEP_TIMEOUT`.
//!
//! Parts: [`entries`] (which entries run, in which order, and how),
//! [`exports`] (the `LABKIT_ENV` file), [`supervise`] (one running step);
//! this module runs them in order.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::init::duration::show;
use crate::init::exit::{self, Fatal};
use crate::init::log;
use crate::init::signals::{self, SetupStops};

mod entries;
mod exports;
mod supervise;

pub(crate) use entries::{empty_stdin, list, refused_dir, start_error, ListError, Runnable, StepKind, OWNERSHIP_RULE};
pub use exports::{parse_env_line, Export};
use exports::{EnvReader, Exports};
use supervise::{Limits, StepEnd};

/// How the steps are run.
pub(crate) struct StepOptions {
    /// Host path of the steps directory.
    pub dir: PathBuf,
    pub abort_on_failure: bool,
    pub warn_after: Duration,
    /// `LABKIT_STEP_TIMEOUT`: a step running longer is stopped and failed.
    pub timeout: Option<Duration>,
    /// Between the stop signal and SIGKILL (`LABKIT_GRACE`).
    pub grace: Duration,
    /// The `LABKIT_ENV` file steps append to, opened by setup (read by
    /// descriptor, never looked up again by path).
    pub env_file: std::fs::File,
    /// Environment every step gets (container env + `LABKIT_*`).
    pub env: Vec<(String, String)>,
    /// Shell used for non-executable `*.sh` steps.
    pub shell: PathBuf,
}

fn stopped_by(sig: i32, name: &str) -> Fatal {
    Fatal::with_code(
        exit::SIGNAL_BASE + sig,
        format!("received {} during step {name}: setup stopped; the job was not started", signals::name(sig)),
    )
}

/// Run every step. Returns the variables they exported (last value wins).
/// `stops` is setup's record of stop signals: one received before a step
/// stops setup there; one received during a step is passed on to the
/// step's process group, and setup stops after it.
pub(crate) fn run_all(opts: &StepOptions, stops: &SetupStops) -> Result<Vec<Export>, Fatal> {
    let steps = match list(&opts.dir) {
        Ok(s) => s,
        Err(ListError::Untrusted(u)) => {
            let msg = format!("{}; {OWNERSHIP_RULE}. No step runs", refused_dir("setup steps", &opts.dir, &u));
            if opts.abort_on_failure {
                return Err(Fatal::config(format!("{msg} (LABKIT_STEP_FAILURE=abort)")));
            }
            log::warn(msg);
            return Ok(Vec::new());
        }
        Err(e) => return Err(Fatal::config(format!("cannot read the steps directory {}: {e}", opts.dir.display()))),
    };
    let mut exports = Exports::default();
    let mut reader = EnvReader::new();
    let limits = Limits { warn_after: opts.warn_after, timeout: opts.timeout, grace: opts.grace };
    let pending = || stops.last();
    for entry in steps {
        let name = entry.name;
        // Watching starts before the last look, so no signal falls between.
        let forwarding = stops.forwarding();
        if let Some(sig) = pending() {
            return Err(Fatal::with_code(
                exit::SIGNAL_BASE + sig,
                format!("received {} before step {name}: setup stopped; the job was not started", signals::name(sig)),
            ));
        }
        let shell = match (&entry.kind, &entry.file) {
            (StepKind::Skip(why), _) => {
                log::info(format!("step {name}: skipped ({why})"));
                continue;
            }
            (StepKind::Refused(why), _) => {
                let msg = format!("step {name} refused: {why}; {OWNERSHIP_RULE}");
                if opts.abort_on_failure {
                    return Err(Fatal::config(format!("{msg}; setup stops (LABKIT_STEP_FAILURE=abort)")));
                }
                log::warn(format!("{msg}; continuing with the next step"));
                continue;
            }
            (StepKind::ShellScript, Some(_)) => Some(opts.shell.as_path()),
            (StepKind::Executable, Some(_)) => None,
            (_, None) => continue,
        };
        let Some(file) = &entry.file else { continue };
        let mut cmd = file.command(shell);
        cmd.env_clear().envs(opts.env.iter().map(|(k, v)| (k, v))).stdin(empty_stdin()).process_group(0);
        let started = Instant::now();
        let outcome = supervise::run_one(&name, &mut cmd, &limits, forwarding);
        let ms = started.elapsed().as_millis();
        let code = match &outcome {
            Ok(o) => o.code,
            Err(e) => {
                log::warn(format!("step {name}: could not start: {}", start_error(e)));
                exit::NOT_EXECUTABLE
            }
        };
        if let Err(sig) = reader.collect(&name, &opts.env_file, &mut exports, &pending) {
            return Err(stopped_by(sig, &name));
        }
        if let Ok(StepEnd { stopped_by: Some(sig), .. }) = outcome {
            return Err(stopped_by(sig, &name));
        }
        if let Some(sig) = pending() {
            return Err(stopped_by(sig, &name));
        }
        let timed_out = matches!(outcome, Ok(StepEnd { timed_out: true, .. }));
        let how = if timed_out {
            format!(
                "timed out after {} (LABKIT_STEP_TIMEOUT) and ended with code {code}",
                show(opts.timeout.unwrap_or_default())
            )
        } else {
            format!("failed with exit code {code} after {ms} ms")
        };
        if code == 0 && !timed_out {
            log::info(format!("step {name}: ok ({ms} ms)"));
        } else if opts.abort_on_failure {
            let code = if code == 0 { exit::TIMEOUT } else { code };
            return Err(Fatal::with_code(code, format!("step {name} {how}; setup stops (LABKIT_STEP_FAILURE=abort)")));
        } else {
            log::warn(format!(
                "step {name} {how}; continuing with the next step (LABKIT_STEP_FAILURE=abort stops instead)"
            ));
        }
    }
    Ok(exports.into_vec())
}
