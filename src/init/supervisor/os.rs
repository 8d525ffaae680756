//! The supervisor's narrow seam to the kernel (youki's `Syscall` idea):
//! the process table, `kill`, reaping, waiting for a signal, the clock, the
//! idle watchdog's sample and the log. [`Linux`] is the real thing; the unit
//! tests drive the same supervisor through a fake with a scripted process
//! table and a virtual clock (`supervisor/fake.rs`), so every transition is
//! tested in milliseconds and without root.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;

use crate::init::exit::Exit;
use crate::init::idle::{Busy, Watchdog};
use crate::init::log;
use crate::init::procfs::{self, ProcStat};
use crate::init::signals;

/// One `waitpid(-1, WNOHANG)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reaped {
    /// This child ended (and is gone now).
    Child(i32, Exit),
    /// Children are left, none has ended.
    Running,
    /// No child is left (ECHILD).
    NoChildren,
}

/// What the supervisor asks of the operating system.
pub(crate) trait Os {
    /// labinit's own pid.
    fn pid(&self) -> i32;
    /// The monotonic clock.
    fn now(&self) -> Instant;
    /// Every process of the PID namespace (`/proc`), zombies included.
    fn processes(&mut self) -> Vec<ProcStat>;
    /// `kill(2)`: `pid` > 0 a process, -1 every process but labinit, < -1 a
    /// process group.
    fn kill(&mut self, pid: i32, sig: i32) -> Result<(), Errno>;
    /// Reap one child that ended, if any.
    fn reap(&mut self) -> Reaped;
    /// Wait up to `timeout` for a supervised signal ([`signals::wait`]).
    fn wait_signal(&mut self, timeout: Duration) -> Option<i32>;
    /// One idle watchdog sample: why the container is busy, if it is.
    fn idle_sample(&mut self, dog: &mut Watchdog, sessions: &[i32], me: i32, elapsed: Duration) -> Option<Busy>;
    /// Drop labinit's start-up pages ([`crate::init::memory`]).
    fn release_startup_pages(&mut self);
    /// Give the terminal back to labinit's group if `main`'s group holds it.
    fn restore_terminal(&mut self, main: i32);
    /// An info line ([`log::info`]).
    fn info(&mut self, line: &str);
    /// A warning line ([`log::warn`]).
    fn warn(&mut self, line: &str);
}

/// The real system calls.
pub(crate) struct Linux {
    /// Normally `/proc`.
    proc_root: PathBuf,
    /// The process table could not be read once: said once.
    proc_unreadable: bool,
}

impl Linux {
    pub(crate) fn new() -> Linux {
        Linux::with_proc(PathBuf::from("/proc"))
    }

    fn with_proc(proc_root: PathBuf) -> Linux {
        Linux { proc_root, proc_unreadable: false }
    }
}

impl Os for Linux {
    fn pid(&self) -> i32 {
        std::process::id() as i32
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn processes(&mut self) -> Vec<ProcStat> {
        match procfs::try_processes(&self.proc_root) {
            Ok(procs) => procs,
            Err(e) => {
                if !std::mem::replace(&mut self.proc_unreadable, true) {
                    log::warn(format!(
                        "cannot read the process table {}: {e}; labinit cannot find the job's processes to pass signals on or stop them (mount /proc in the container)",
                        self.proc_root.display()
                    ));
                }
                Vec::new()
            }
        }
    }

    fn kill(&mut self, pid: i32, sig: i32) -> Result<(), Errno> {
        // SAFETY: plain syscall. libc's, not nix's: real-time signals have
        // no `Signal` value.
        Errno::result(unsafe { libc::kill(pid, sig) }).map(drop)
    }

    fn reap(&mut self) -> Reaped {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        match pid {
            0 => Reaped::Running,
            // ECHILD: none left. EINTR cannot happen: signals are blocked.
            p if p < 0 => Reaped::NoChildren,
            p => Reaped::Child(p, Exit::from_wait_status(status)),
        }
    }

    fn wait_signal(&mut self, timeout: Duration) -> Option<i32> {
        signals::wait(timeout)
    }

    fn idle_sample(&mut self, dog: &mut Watchdog, sessions: &[i32], me: i32, elapsed: Duration) -> Option<Busy> {
        dog.busy_reason(&self.proc_root, sessions, &[me], elapsed)
    }

    fn release_startup_pages(&mut self) {
        crate::init::memory::release_startup_pages();
    }

    fn restore_terminal(&mut self, main: i32) {
        // SAFETY: terminal ioctls on fd 0; SIGTTOU is ignored in labinit.
        unsafe {
            if libc::tcgetpgrp(0) == main {
                libc::tcsetpgrp(0, libc::getpgrp());
            }
        }
    }

    fn info(&mut self, line: &str) {
        log::info(line);
    }

    fn warn(&mut self, line: &str) {
        log::warn(line);
    }
}

/// Become a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`) so orphans of
/// the job stay labinit's to reap and signal (catatonit); PID 1 is one
/// already. A failure is logged with its errno: orphans of the job would
/// then go to the real init and escape labinit's shutdown.
pub fn become_subreaper() {
    if std::process::id() == 1 {
        return;
    }
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        log::warn(format!(
            "cannot become a child subreaper (prctl PR_SET_CHILD_SUBREAPER: {e}); processes the job leaves behind escape labinit's shutdown"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_process_table_and_a_missing_one() {
        let mut os = Linux::new();
        assert!(os.processes().iter().any(|p| p.pid == os.pid()));
        assert!(!os.proc_unreadable);
        // Without /proc: empty, and said once (the flag), not on every scan.
        let mut os = Linux::with_proc(PathBuf::from("/nonexistent-proc"));
        assert!(os.processes().is_empty());
        assert!(os.proc_unreadable);
        assert!(os.processes().is_empty());
    }

    #[test]
    fn kill_keeps_the_errno() {
        let mut os = Linux::new();
        // Signal 0 checks without sending: this process exists, pid 2^22+1 cannot.
        assert_eq!(os.kill(os.pid(), 0), Ok(()));
        assert_eq!(os.kill(4_194_305, 0), Err(Errno::ESRCH));
    }
}
