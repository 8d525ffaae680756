//! Supervising the job once it runs: forward signals to every process of the
//! job, reap every orphan, enforce `--timeout`, and shut down with a grace
//! period that ends as soon as nothing is left. Owns the exit code policy.
//! Does not start the job (labinit's launch does) and knows nothing of
//! accounts.
//!
//! *The job* is every process labinit is responsible for except supervised
//! services ([`crate::init::services`], found by their sessions): as PID 1
//! every other process of the PID namespace (what `kill(-1)` reaches),
//! otherwise every descendant of labinit, which is a child subreaper so
//! orphans stay descendants. In `wait` mode there is no main process: the job
//! is whatever users started (`kubectl exec`, ssh logins), stopped the same
//! way when SIGTERM or the idle watchdog ends the container.
//!
//! Shutdown order: the job (stop signal, grace, SIGKILL), then the services
//! (SIGTERM, `LABKIT_SERVICE_GRACE`, SIGKILL), then exit. Process
//! groups are not enough: `timeout` and job-control shells move themselves
//! into groups of their own, and the shell that started a background job may
//! be gone (init-anchors §2.1).
//!
//! The loop is tini's: wait for a signal (with a tick as a safety net), then
//! reap with `waitpid(-1, WNOHANG)` until nothing is left to reap, noticing the
//! main child *inside* that loop, because SIGCHLDs merge (catatonit #4).
//!
//! Every system call goes through the narrow [`Os`] seam (`supervisor/os.rs`),
//! and how it all ended is one [`Ending`] turned into the exit code by a pure
//! function (`supervisor/ending.rs`): the unit tests (`supervisor/tests.rs`)
//! drive every transition with a fake process table and a virtual clock.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;

use crate::init::duration::show;
use crate::init::exit::Exit;
use crate::init::idle::{self, Event, IdleConfig, IdleLog, Watchdog};
use crate::init::services::Services;
use crate::init::signals::{self, Route};

mod deliver;
mod ending;
#[cfg(test)]
mod fake;
mod os;
#[cfg(test)]
mod tests;

use deliver::Failures;
use ending::{conclude, Conclusion, Ending};
pub use os::become_subreaper;
use os::Reaped;
pub(crate) use os::{Linux, Os};

/// How long labinit waits for the job after SIGKILL before giving up on
/// processes stuck in the kernel (uninterruptible I/O on a dead NFS server).
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Wake up at least this often even without a signal (tini does the same).
const TICK: Duration = Duration::from_secs(1);

/// How long after the start of supervision labinit drops its start-up pages
/// ([`crate::init::memory::release_startup_pages`]): late enough that a
/// short job never pays for it (reading smaps, faulting code back in), early
/// enough that a long job is supervised from a small resident set.
pub(crate) const RELEASE_AFTER: Duration = Duration::from_secs(1);

/// Shutdown and timeout settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Between the stop signal and SIGKILL (`--grace`, `LABKIT_GRACE`).
    pub grace: Duration,
    /// `--timeout`; `None` or zero: no timeout.
    pub timeout: Option<Duration>,
    /// `--kill-after`: the grace after a timeout (default: `grace`).
    pub kill_after: Option<Duration>,
    /// `--preserve-status`: exit with the job's status even after a timeout.
    pub preserve_status: bool,
}

/// The job's grace period is [`crate::init::config::DEFAULT_JOB_GRACE`]
/// when neither `--grace` nor `LABKIT_GRACE` is set.
impl Default for Policy {
    fn default() -> Self {
        Policy {
            grace: crate::init::config::DEFAULT_JOB_GRACE,
            timeout: None,
            kill_after: None,
            preserve_status: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// The stop signal was sent; SIGKILL at `until`.
    Stopping {
        until: Instant,
    },
    /// SIGKILL was sent; give up waiting at `until`.
    Killing {
        until: Instant,
    },
    /// The job is gone; the services got SIGTERM; SIGKILL at `until`.
    ServicesStopping {
        until: Instant,
    },
    /// The services got SIGKILL; give up waiting at `until`.
    ServicesKilling {
        until: Instant,
    },
}

/// The idle watchdog as the supervisor runs it.
struct IdleWatch {
    dog: Watchdog,
    log: IdleLog,
    last: Instant,
    next: Instant,
}

pub(crate) struct Supervisor<O: Os = Linux> {
    os: O,
    /// The job's main process; `None` in `wait` mode.
    main: Option<i32>,
    me: i32,
    pid1: bool,
    policy: Policy,
    /// How the main process ended, once reaped.
    main_exit: Option<Exit>,
    /// What ends the job: `MainExited` until something else starts the
    /// shutdown (the main exit itself is added at the end).
    ending: Ending,
    phase: Phase,
    timeout_at: Option<Instant>,
    /// The job was made the terminal's foreground group: give it back to
    /// labinit's group at the end so the shell that started labinit can read.
    restore_tty: bool,
    idle: Option<IdleWatch>,
    services: Services,
    service_grace: Duration,
    /// When supervision began, for the run time in the last line.
    started: Instant,
    /// When to drop the start-up pages; `None` once done.
    release_at: Option<Instant>,
}

impl Supervisor<Linux> {
    /// Supervise the job whose main process is `main`.
    pub(crate) fn new(main: i32, policy: Policy, restore_tty: bool) -> Supervisor {
        Supervisor::with_os(Linux::new(), Some(main), policy, restore_tty)
    }

    /// `labinit wait`: no main process; run until SIGTERM or the idle
    /// watchdog stops the container.
    pub(crate) fn waiting(policy: Policy) -> Supervisor {
        Supervisor::with_os(Linux::new(), None, policy, false)
    }
}

impl<O: Os> Supervisor<O> {
    /// Supervise through `os`: the job of `main` (`None`: `wait` mode).
    pub(crate) fn with_os(os: O, main: Option<i32>, policy: Policy, restore_tty: bool) -> Supervisor<O> {
        let me = os.pid();
        let now = os.now();
        let timeout_at = policy.timeout.filter(|t| !t.is_zero()).and_then(|t| now.checked_add(t));
        Supervisor {
            os,
            main,
            me,
            pid1: me == 1,
            policy,
            main_exit: None,
            ending: Ending::MainExited(None),
            phase: Phase::Running,
            timeout_at,
            restore_tty: restore_tty && main.is_some(),
            idle: None,
            services: Services::none(),
            service_grace: crate::init::config::DEFAULT_SERVICE_GRACE,
            started: now,
            release_at: now.checked_add(RELEASE_AFTER),
        }
    }

    /// Run the idle watchdog; the first check is one interval from now.
    pub(crate) fn with_idle(mut self, cfg: Option<IdleConfig>) -> Supervisor<O> {
        if let Some(cfg) = cfg {
            let now = self.os.now();
            self.os.info(&format!(
                "idle watchdog: on; the container stops after {} without CPU use (≥ {}% of a core), GPU use ({}) or a process named {} (checked every {}){}",
                show(cfg.timeout),
                cfg.cpu * 100.0,
                if cfg.device_glob.is_empty() { "not watched".to_owned() } else { cfg.device_glob.clone() },
                if cfg.busy_names.is_empty() { "-".to_owned() } else { cfg.busy_names.join(" or ") },
                show(cfg.interval),
                if cfg.jupyter_runtime_dirs.is_empty() {
                    ""
                } else {
                    "; Jupyter notebooks count while a kernel executes or a client is active"
                },
            ));
            let next = now + cfg.interval;
            let log = IdleLog::new(cfg.log_file.clone());
            self.idle = Some(IdleWatch { dog: Watchdog::new(cfg), log, last: now, next });
        }
        self
    }

    /// Supervise these (already started) services, stopped after the job
    /// with `grace` between SIGTERM and SIGKILL.
    pub(crate) fn with_services(mut self, services: Services, grace: Duration) -> Supervisor<O> {
        self.services = services;
        self.service_grace = grace;
        self
    }

    /// The job could not be started: stop the services (if any) and end
    /// with `code`.
    pub(crate) fn end_now(mut self, code: i32) -> i32 {
        self.not_started(code);
        self.supervise()
    }

    fn not_started(&mut self, code: i32) {
        self.ending = Ending::NotStarted(code);
        self.phase = Phase::Stopping { until: self.os.now() };
    }

    /// Supervise until the job and the services are gone; returns labinit's
    /// exit code.
    pub(crate) fn run(mut self) -> i32 {
        self.supervise()
    }

    /// Whether the job's part is over: its main process ended, or in `wait`
    /// mode a stop was requested.
    fn job_ended(&self) -> bool {
        match self.main {
            Some(_) => self.main_exit.is_some(),
            None => self.phase != Phase::Running,
        }
    }

    fn job_phase(&self) -> bool {
        matches!(self.phase, Phase::Running | Phase::Stopping { .. } | Phase::Killing { .. })
    }

    fn supervise(&mut self) -> i32 {
        loop {
            let children = self.reap();
            let now = self.os.now();
            if self.job_phase() && self.job_ended() {
                if !self.job_left(children) {
                    if !self.stop_services(now) {
                        return self.finish();
                    }
                    continue;
                }
                if self.phase == Phase::Running {
                    let grace = self.policy.grace;
                    let n = self.stop(libc::SIGTERM, grace);
                    let main = self.main_exit.map(Exit::describe).unwrap_or_default();
                    self.os.info(&format!(
                        "the main process {main}; sent SIGTERM to the {n} remaining process(es) of the job; SIGKILL in {}",
                        show(grace)
                    ));
                }
            }
            if matches!(self.phase, Phase::ServicesStopping { .. } | Phase::ServicesKilling { .. })
                && !self.services_left()
            {
                return self.finish();
            }
            if self.phase == Phase::Running && self.timeout_at.is_some_and(|t| now >= t) {
                self.ending = Ending::Timeout { main: None, killed: false };
                let grace = self.policy.kill_after.unwrap_or(self.policy.grace);
                let n = self.stop(libc::SIGTERM, grace);
                self.os.info(&format!(
                    "timeout of {} expired: sent SIGTERM to the job ({n} process(es)); SIGKILL in {}",
                    show(self.policy.timeout.unwrap_or_default()),
                    show(grace)
                ));
            }
            if self.phase == Phase::Running {
                self.check_idle(now);
            }
            if self.phase == Phase::Running {
                self.services.restart_due(now);
            }
            match self.phase {
                Phase::Stopping { until } if now >= until => {
                    let n = self.send_job(libc::SIGKILL);
                    if n > 0 {
                        self.ending = self.ending.with_kill();
                    }
                    self.os.warn(&format!("grace period expired: sent SIGKILL to {n} process(es) of the job"));
                    self.phase = Phase::Killing { until: now + KILL_WAIT };
                    continue;
                }
                Phase::Killing { until } if now >= until => {
                    self.os.warn(&format!(
                        "processes of the job are still there {} after SIGKILL (stuck in the kernel?); going on",
                        show(KILL_WAIT)
                    ));
                    if !self.stop_services(now) {
                        return self.finish();
                    }
                    continue;
                }
                Phase::ServicesStopping { until } if now >= until => {
                    let n = self.send_services(libc::SIGKILL);
                    self.os.warn(&format!("service grace expired: sent SIGKILL to {n} service process(es)"));
                    self.phase = Phase::ServicesKilling { until: now + KILL_WAIT };
                    continue;
                }
                Phase::ServicesKilling { until } if now >= until => {
                    self.os
                        .warn("service processes are still there after SIGKILL (stuck in the kernel?); exiting anyway");
                    return self.finish();
                }
                _ => {}
            }
            let mut wait = TICK;
            let deadline = match self.phase {
                Phase::Running => [self.timeout_at, self.idle.as_ref().map(|i| i.next), self.services.next_deadline()]
                    .into_iter()
                    .flatten()
                    .min(),
                Phase::Stopping { until }
                | Phase::Killing { until }
                | Phase::ServicesStopping { until }
                | Phase::ServicesKilling { until } => Some(until),
            };
            if let Some(d) = deadline {
                wait = wait.min(d.saturating_duration_since(now));
            }
            if let Some(at) = self.release_at {
                if now >= at {
                    self.os.release_startup_pages();
                    self.release_at = None;
                } else {
                    wait = wait.min(at - now);
                }
            }
            if let Some(sig) = self.os.wait_signal(wait) {
                self.on_signal(sig);
            }
        }
    }

    /// One idle check when it is due; on expiry, start the shutdown.
    fn check_idle(&mut self, now: Instant) {
        let me = self.me;
        let Some(w) = self.idle.as_mut() else { return };
        if now < w.next {
            return;
        }
        let elapsed = now.saturating_duration_since(w.last);
        w.last = now;
        w.next = now + w.dog.config().interval;
        let reason = self.os.idle_sample(&mut w.dog, self.services.sessions(), me, elapsed);
        for note in w.dog.take_notes() {
            self.os.info(&note);
            w.log.write(&note);
        }
        let event = w.dog.observe(reason, elapsed);
        if let Some(line) = idle::message(&event, w.dog.config()) {
            self.os.info(&line);
            w.log.write(&line);
        }
        if matches!(event, Event::Expired { .. }) {
            self.ending = Ending::Idle;
            let grace = self.policy.grace;
            let n = self.stop(libc::SIGTERM, grace);
            self.os.info(&format!("sent SIGTERM to the job ({n} process(es)); SIGKILL in {}", show(grace)));
        }
    }

    /// Reap every child that changed state. Returns whether any child is
    /// left (running, stopped, or not yet reapable).
    fn reap(&mut self) -> bool {
        loop {
            let (pid, e) = match self.os.reap() {
                Reaped::Child(pid, e) => (pid, e),
                Reaped::Running => {
                    self.forget_empty_sessions();
                    return true;
                }
                Reaped::NoChildren => {
                    self.forget_empty_sessions();
                    return false;
                }
            };
            if Some(pid) == self.main {
                self.main_exit = Some(e);
                self.os.info(&format!("the main process (pid {pid}) {}", e.describe()));
            } else {
                let now = self.os.now();
                self.services.reaped(pid, e, now);
            }
        }
    }

    /// After reaping, forget the sessions of ended services that are empty
    /// (one read of the process table, only while such a session is known).
    fn forget_empty_sessions(&mut self) {
        if self.services.has_ended_sessions() {
            let procs = self.os.processes();
            self.services.forget_empty_sessions(&procs);
        }
    }

    /// Whether any process of the job is still alive.
    fn job_left(&mut self, children: bool) -> bool {
        if self.services.sessions().is_empty() {
            // Every process of the job is a descendant, so while one lives a
            // child of ours lives (PID 1's non-descendants, e.g. `kubectl
            // exec` sessions, get the signals but are not waited for).
            return children;
        }
        let procs = self.os.processes();
        let sessions = self.services.sessions();
        procs.iter().any(|p| p.ppid == self.me && !p.is_zombie() && !sessions.contains(&p.session))
    }

    /// Whether any process of the services is still alive.
    fn services_left(&mut self) -> bool {
        // Without services there is nothing to look for in /proc.
        !self.services.sessions().is_empty() && !self.services.members(&self.os.processes()).is_empty()
    }

    /// After the job: TERM (and CONT) to the services and start their grace.
    /// Returns false when no service process is left (nothing to wait for).
    fn stop_services(&mut self, now: Instant) -> bool {
        self.services.stop_restarts();
        if !self.services_left() {
            return false;
        }
        let n = self.send_services(libc::SIGTERM);
        self.send_services(libc::SIGCONT);
        self.os.info(&format!(
            "the job is over; sent SIGTERM to the services ({n} process(es)); SIGKILL in {}",
            show(self.service_grace)
        ));
        self.phase = Phase::ServicesStopping { until: now + self.service_grace };
        true
    }

    /// Send the stop signal and SIGCONT (a stopped process acts on nothing
    /// else) to the job, and start the grace period.
    fn stop(&mut self, sig: i32, grace: Duration) -> usize {
        self.services.stop_restarts();
        let n = self.send_job(sig);
        if sig != libc::SIGKILL && sig != libc::SIGCONT {
            self.send_job(libc::SIGCONT);
        }
        self.phase = Phase::Stopping { until: self.os.now() + grace };
        n
    }

    fn on_signal(&mut self, sig: i32) {
        let name = signals::name(sig);
        match signals::route(sig) {
            Route::StopJob if self.phase == Phase::Running => {
                self.ending = Ending::StopSignal { signal: sig, main: None };
                let grace = self.policy.grace;
                let n = self.stop(sig, grace);
                self.os.info(&format!(
                    "received {name}: sent it to the job ({n} process(es)); SIGKILL in {} if anything is left",
                    show(grace)
                ));
            }
            Route::StopJob => {
                if self.job_phase() {
                    let n = self.send_job(sig);
                    self.send_job(libc::SIGCONT);
                    self.os.info(&format!("received {name} again: sent it to the job ({n} process(es))"));
                } else {
                    let n = self.send_services(sig);
                    self.os.info(&format!("received {name} again: sent it to the services ({n} process(es))"));
                }
            }
            Route::WholeJob => {
                let n = self.send_job(sig);
                self.os.info(&format!("received {name}: sent it to the job ({n} process(es))"));
            }
            Route::MainGroup => {
                let Some(main) = self.main else { return };
                let mut failures = Failures::default();
                match self.os.kill(-main, sig) {
                    Ok(()) => {}
                    // The group is gone or not the main process's any more.
                    Err(_) if self.main_exit.is_none() => self.kill(main, sig, &mut failures),
                    Err(Errno::ESRCH) => {}
                    Err(e) => failures = Failures { count: 1, first: Some((-main, e)) },
                }
                self.report(sig, "the main process group", failures);
                if sig != libc::SIGWINCH {
                    self.os.info(&format!("received {name}: sent it to the main process group {main}"));
                }
            }
            Route::MainChild => {
                let Some(main) = self.main else { return };
                if self.main_exit.is_none() {
                    // The main child is not reaped yet: its pid is still its own.
                    let mut failures = Failures::default();
                    self.kill(main, sig, &mut failures);
                    self.report(sig, "the main process", failures);
                    self.os.info(&format!("received {name}: sent it to the main process {main}"));
                }
            }
            Route::Reap | Route::Drop => {}
        }
    }

    fn finish(&mut self) -> i32 {
        if self.restore_tty {
            if let Some(main) = self.main {
                self.os.restore_terminal(main);
            }
        }
        let ending = match self.main_exit {
            Some(e) => self.ending.with_main(e),
            None => self.ending,
        };
        let ran = self.os.now().saturating_duration_since(self.started);
        let Conclusion { code, line } = conclude(ending, self.main.is_none(), self.policy.preserve_status, ran);
        if let Some(line) = line {
            self.os.info(&line);
        }
        code
    }
}
