//! The supervision of one setup step, like the job's: its own process
//! group, a stop signal passed on to that group ([`signals::Forwarding`]),
//! SIGKILL after the grace period, `LABKIT_STEP_TIMEOUT`, one warning when it
//! runs long.

use std::io;
use std::os::fd::OwnedFd;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::libc;

use crate::init::duration::show;
use crate::init::exit;
use crate::init::log;
use crate::init::signals::{self, Forwarding};

/// The time limits of a step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// One warning when a step runs longer.
    pub warn_after: Duration,
    /// `LABKIT_STEP_TIMEOUT`: a step running longer is stopped and failed.
    pub timeout: Option<Duration>,
    /// Between the stop signal and SIGKILL (`LABKIT_GRACE`).
    pub grace: Duration,
}

/// Send `sig` (then SIGCONT) to the step's group; a failure other than a
/// group already gone is said with its errno.
fn send(pgid: i32, sig: i32) {
    if let Err(e) = signals::to_group(pgid, sig) {
        log::warn(format!("cannot send {} to step process group {pgid}: {e}", signals::name(sig)));
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StepEnd {
    /// The shell's convention: the code, or 128 + the signal; after a
    /// timeout 124, or 137 when SIGKILL was needed (coreutils `timeout`).
    pub code: i32,
    pub timed_out: bool,
    /// A stop signal arrived while it ran (it was passed on).
    pub stopped_by: Option<i32>,
}

/// How long a stopped step's group may linger after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Whether any process of group `pgid` is left (zombies of ours are reaped
/// first: orphans of the step are re-parented to labinit).
fn group_alive(pgid: i32) -> bool {
    loop {
        let mut status = 0;
        // SAFETY: reaping children that are already gone.
        if unsafe { libc::waitpid(-pgid, &mut status, libc::WNOHANG) } <= 0 {
            break;
        }
    }
    // SAFETY: signal 0 only checks existence.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: plain syscall; the result is owned here.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    use std::os::fd::FromRawFd;
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Run one step in its own process group and supervise it like the job: a
/// stop signal is passed to its group with SIGCONT and SIGKILL follows
/// after the grace; `LABKIT_STEP_TIMEOUT` stops it the same way; one warning
/// when it outlives `warn_after`.
pub(crate) fn run_one(
    name: &str,
    cmd: &mut Command,
    limits: &Limits,
    mut stops: Forwarding<'_>,
) -> io::Result<StepEnd> {
    let child = cmd.spawn()?;
    let pid = child.id() as i32;
    drop(child); // reaped below with waitpid
    let pidfd = pidfd_open(pid);
    let started = Instant::now();
    let warn_at = started + limits.warn_after;
    let timeout_at = limits.timeout.filter(|t| !t.is_zero()).and_then(|t| started.checked_add(t));
    let mut warned = false;
    let mut said_stopped = false;
    let mut stopped_by = None;
    let mut timed_out = false;
    // SIGKILL at `kill_at`; after it, give up waiting at `give_up`.
    let mut kill_at: Option<Instant> = None;
    let mut killed = false;
    let mut give_up: Option<Instant> = None;
    let mut main: Option<i32> = None;
    let result = loop {
        if main.is_none() {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::WUNTRACED) };
            if r == pid && libc::WIFSTOPPED(status) {
                // Only said: a stop signal or LABKIT_STEP_TIMEOUT ends it.
                if !std::mem::replace(&mut said_stopped, true) {
                    log::warn(format!(
                        "step {name} was stopped by {} (a terminal stops a background process that uses it); setup waits until it is continued (a stop signal to the container or LABKIT_STEP_TIMEOUT ends it)",
                        signals::name(libc::WSTOPSIG(status))
                    ));
                }
            } else if r == pid {
                main = Some(if libc::WIFSIGNALED(status) {
                    exit::SIGNAL_BASE + libc::WTERMSIG(status)
                } else {
                    libc::WEXITSTATUS(status)
                });
            } else if r < 0 {
                break Err(io::Error::last_os_error());
            }
        }
        if let Some(code) = main {
            // A stopped step is done when its whole group is gone (or
            // SIGKILL did what it could); otherwise when its process ends.
            let stopping = kill_at.is_some();
            if !stopping || !group_alive(pid) || give_up.is_some_and(|t| Instant::now() >= t) {
                let code = if timed_out && stopped_by.is_none() {
                    if killed || code == exit::SIGNAL_BASE + libc::SIGKILL {
                        exit::TIMEOUT_KILLED
                    } else {
                        exit::TIMEOUT
                    }
                } else {
                    code
                };
                break Ok(StepEnd { code, timed_out, stopped_by });
            }
        }
        let now = Instant::now();
        if let Some(sig) = stops.forward_new(pid) {
            let sname = signals::name(sig);
            if stopped_by.is_none() {
                stopped_by = Some(sig);
                if kill_at.is_none() {
                    kill_at = Some(now + limits.grace);
                }
                log::info(format!(
                    "received {sname} during step {name}: sent it to the step (process group {pid}); SIGKILL in {} if anything is left",
                    show(limits.grace)
                ));
            } else {
                log::info(format!("received {sname} again: sent it to the step (process group {pid})"));
            }
        }
        if kill_at.is_none() && timeout_at.is_some_and(|t| now >= t) {
            timed_out = true;
            send(pid, libc::SIGTERM);
            kill_at = Some(now + limits.grace);
            log::warn(format!(
                "step {name}: LABKIT_STEP_TIMEOUT of {} expired: sent SIGTERM to the step (process group {pid}); SIGKILL in {}",
                show(limits.timeout.unwrap_or_default()),
                show(limits.grace)
            ));
        }
        if !killed && kill_at.is_some_and(|t| now >= t) {
            send(pid, libc::SIGKILL);
            killed = true;
            give_up = Some(now + KILL_WAIT);
            log::warn(format!("grace period expired: sent SIGKILL to step {name} (process group {pid})"));
        }
        if !warned && kill_at.is_none() && now >= warn_at {
            warned = true;
            log::warn(format!(
                "step {name} is still running after {}; setup waits for it (a step must finish; long-running programs belong in /opt/lab/services; LABKIT_STEP_TIMEOUT stops it)",
                show(limits.warn_after)
            ));
        }
        if give_up.is_some_and(|t| now >= t) && main.is_none() {
            log::warn(format!(
                "step {name} is still there {} after SIGKILL (stuck in the kernel?); going on",
                show(KILL_WAIT)
            ));
            break Ok(StepEnd { code: exit::TIMEOUT_KILLED, timed_out, stopped_by });
        }
        let next = [
            Some(warn_at).filter(|_| !warned),
            timeout_at.filter(|_| kill_at.is_none()),
            kill_at.filter(|_| !killed),
            give_up,
        ]
        .into_iter()
        .flatten()
        .min()
        .map_or(Duration::from_secs(1), |t| t.saturating_duration_since(now));
        // With the main process gone, only the rest of its group is awaited.
        let fd = if main.is_some() { None } else { pidfd.as_ref() };
        stops.wait(fd, next);
    };
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::signals::SetupStops;
    use std::os::unix::process::CommandExt;

    fn limits(timeout: Option<Duration>, grace: Duration) -> Limits {
        Limits { warn_after: Duration::from_secs(60), timeout, grace }
    }

    fn step(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]).process_group(0);
        cmd
    }

    #[test]
    fn a_stop_signal_during_a_step_goes_to_its_group() {
        let stops = SetupStops::new();
        let end = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(200));
                stops.note(libc::SIGTERM);
            });
            // The shell waits for `sleep`: both are in the step's group.
            run_one(
                "10_wait",
                &mut step("sleep 30; exit 3"),
                &limits(None, Duration::from_secs(10)),
                stops.forwarding(),
            )
        })
        .unwrap();
        assert_eq!(
            end,
            StepEnd { code: exit::SIGNAL_BASE + libc::SIGTERM, timed_out: false, stopped_by: Some(libc::SIGTERM) }
        );
        // Negative control: without a signal the step ends by itself.
        let quiet = SetupStops::new();
        let end =
            run_one("10_ok", &mut step("exit 3"), &limits(None, Duration::from_secs(10)), quiet.forwarding()).unwrap();
        assert_eq!(end, StepEnd { code: 3, timed_out: false, stopped_by: None });
    }

    #[test]
    fn a_step_timeout_sends_term_then_kill_after_the_grace() {
        let stops = SetupStops::new();
        let l = limits(Some(Duration::from_millis(200)), Duration::from_secs(10));
        let end = run_one("20_slow", &mut step("sleep 30"), &l, stops.forwarding()).unwrap();
        assert_eq!(end, StepEnd { code: exit::TIMEOUT, timed_out: true, stopped_by: None });
        // TERM ignored by the whole group (inherited through exec): SIGKILL after the grace.
        let l = limits(Some(Duration::from_millis(200)), Duration::from_millis(300));
        let started = Instant::now();
        let end = run_one("30_stubborn", &mut step("trap '' TERM; sleep 30"), &l, stops.forwarding()).unwrap();
        assert_eq!(end, StepEnd { code: exit::TIMEOUT_KILLED, timed_out: true, stopped_by: None });
        assert!(started.elapsed() < Duration::from_secs(5), "SIGKILL did not follow the grace");
        assert_eq!(stops.last(), None, "negative control: a timeout is no stop signal");
    }
}
