//! Supervising the job once it runs: forward signals to every process of the
//! job, reap every orphan, enforce `--timeout`, and shut down with a grace
//! period that ends as soon as nothing is left. Owns the exit code policy.
//! Does not start the job ([`crate::init::run`] does) and knows nothing of
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

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use nix::libc;

use crate::init::duration::show;
use crate::init::exit;
use crate::init::idle::{self, Event, IdleConfig, IdleLog, Watchdog};
use crate::init::log;
use crate::init::procfs::{scan, ProcStat};
use crate::init::services::Services;
use crate::init::signals::{self, Route};

/// How long labinit waits for the job after SIGKILL before giving up on
/// processes stuck in the kernel (uninterruptible I/O on a dead NFS server).
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Wake up at least this often even without a signal (tini does the same).
const TICK: Duration = Duration::from_secs(1);

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

pub const DEFAULT_GRACE: Duration = Duration::from_secs(20);

impl Default for Policy {
    fn default() -> Self {
        Policy { grace: DEFAULT_GRACE, timeout: None, kill_after: None, preserve_status: false }
    }
}

/// How the main child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    pub fn from_wait_status(status: i32) -> Exit {
        if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            Exit::Code(libc::WEXITSTATUS(status))
        }
    }

    /// The shell's convention: the code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c & 0xff,
            Exit::Signal(s) => exit::SIGNAL_BASE + s,
        }
    }

    pub fn describe(self) -> String {
        match self {
            Exit::Code(c) => format!("exited with code {c}"),
            Exit::Signal(s) => format!("was killed by {} (exit code {})", signals::name(s), self.code()),
        }
    }
}

/// labinit's exit code, coreutils `timeout` style. Pure.
///
/// - no timeout: the main child's code (128+N for signal N);
/// - timeout expired: 124, or the child's status with `--preserve-status`;
///   137 when the main child died of SIGKILL, or when labinit had to SIGKILL
///   what was left of the job (without `--preserve-status`).
pub fn exit_code(main: Option<Exit>, timed_out: bool, preserve_status: bool, killed: bool) -> i32 {
    let main = main.unwrap_or(Exit::Signal(libc::SIGKILL));
    if !timed_out {
        return main.code();
    }
    if main == Exit::Signal(libc::SIGKILL) {
        return exit::TIMEOUT_KILLED;
    }
    if preserve_status {
        return main.code();
    }
    if killed {
        exit::TIMEOUT_KILLED
    } else {
        exit::TIMEOUT
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

/// The job among `procs`, live processes only: as PID 1 everything but
/// `me`, as a subreaper `me`'s descendants; minus the processes of the
/// `excluded` sessions (services). Pure.
pub fn job_of(procs: &[ProcStat], me: i32, pid1: bool, excluded: &[i32]) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let subtree = |roots: &[i32]| -> HashSet<i32> {
        let mut seen = HashSet::new();
        let mut todo: Vec<i32> = roots.to_vec();
        while let Some(p) = todo.pop() {
            if seen.insert(p) {
                todo.extend(children.get(&p).into_iter().flatten().copied());
            }
        }
        seen
    };
    let out_of_job: HashSet<i32> = procs.iter().filter(|p| excluded.contains(&p.session)).map(|p| p.pid).collect();
    let candidates: Vec<i32> = if pid1 {
        procs.iter().map(|p| p.pid).collect()
    } else {
        let mut d: Vec<i32> = subtree(&[me]).into_iter().collect();
        d.sort_unstable();
        d
    };
    let zombie: HashSet<i32> = procs.iter().filter(|p| p.state == b'Z').map(|p| p.pid).collect();
    candidates.into_iter().filter(|p| *p != me && !out_of_job.contains(p) && !zombie.contains(p)).collect()
}

pub struct Supervisor {
    /// The job's main process; `None` in `wait` mode.
    main: Option<i32>,
    me: i32,
    pid1: bool,
    policy: Policy,
    main_exit: Option<Exit>,
    phase: Phase,
    timeout_at: Option<Instant>,
    timed_out: bool,
    killed: bool,
    /// The job was made the terminal's foreground group: give it back to
    /// labinit's group at the end so the shell that started labinit can read.
    restore_tty: bool,
    idle: Option<IdleWatch>,
    idle_expired: bool,
    services: Services,
    service_grace: Duration,
    /// The exit code when the job never started ([`Supervisor::end_now`]).
    forced: Option<i32>,
    /// When supervision began, for the run time in the last line.
    started: Instant,
}

impl Supervisor {
    /// Supervise the job whose main process is `main`.
    pub fn new(main: i32, policy: Policy, restore_tty: bool) -> Supervisor {
        Supervisor::build(Some(main), policy, restore_tty)
    }

    /// `labinit wait`: no main process; run until SIGTERM or the idle
    /// watchdog stops the container.
    pub fn waiting(policy: Policy) -> Supervisor {
        Supervisor::build(None, policy, false)
    }

    fn build(main: Option<i32>, policy: Policy, restore_tty: bool) -> Supervisor {
        let me = std::process::id() as i32;
        let timeout_at = policy.timeout.filter(|t| !t.is_zero()).and_then(|t| Instant::now().checked_add(t));
        Supervisor {
            main,
            me,
            pid1: me == 1,
            policy,
            main_exit: None,
            phase: Phase::Running,
            timeout_at,
            timed_out: false,
            killed: false,
            restore_tty: restore_tty && main.is_some(),
            idle: None,
            idle_expired: false,
            services: Services::none(),
            service_grace: crate::init::services::DEFAULT_GRACE,
            forced: None,
            started: Instant::now(),
        }
    }

    /// Run the idle watchdog; the first check is one interval from now.
    pub fn with_idle(mut self, cfg: Option<IdleConfig>) -> Supervisor {
        if let Some(cfg) = cfg {
            let now = Instant::now();
            log::info(format!(
                "idle watchdog: on; the container stops after {} without CPU use (≥ {}% of a core), GPU use ({}) or a process named {} (checked every {}){}",
                idle::human(cfg.timeout),
                cfg.cpu * 100.0,
                if cfg.device_glob.is_empty() { "not watched".to_owned() } else { cfg.device_glob.clone() },
                if cfg.busy_names.is_empty() { "-".to_owned() } else { cfg.busy_names.join(" or ") },
                idle::human(cfg.interval),
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
    pub fn with_services(mut self, services: Services, grace: Duration) -> Supervisor {
        self.services = services;
        self.service_grace = grace;
        self
    }

    /// The job could not be started: stop the services (if any) and end
    /// with `code`.
    pub fn end_now(mut self, code: i32) -> i32 {
        self.forced = Some(code);
        self.phase = Phase::Stopping { until: Instant::now() };
        self.run()
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

    /// Supervise until the job and the services are gone; returns labinit's
    /// exit code.
    pub fn run(mut self) -> i32 {
        loop {
            let children = self.reap();
            let now = Instant::now();
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
                    log::info(format!(
                        "the main process {}; sent SIGTERM to the {n} remaining process(es) of the job; SIGKILL in {}",
                        self.main_exit.map(Exit::describe).unwrap_or_default(),
                        show(grace)
                    ));
                }
            }
            if matches!(self.phase, Phase::ServicesStopping { .. } | Phase::ServicesKilling { .. })
                && self.services.members(&scan()).is_empty()
            {
                return self.finish();
            }
            if self.phase == Phase::Running && self.timeout_at.is_some_and(|t| now >= t) {
                self.timed_out = true;
                let grace = self.policy.kill_after.unwrap_or(self.policy.grace);
                let n = self.stop(libc::SIGTERM, grace);
                log::info(format!(
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
                    self.killed |= n > 0;
                    log::warn(format!("grace period expired: sent SIGKILL to {n} process(es) of the job"));
                    self.phase = Phase::Killing { until: now + KILL_WAIT };
                    continue;
                }
                Phase::Killing { until } if now >= until => {
                    log::warn(format!(
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
                    log::warn(format!("service grace expired: sent SIGKILL to {n} service process(es)"));
                    self.phase = Phase::ServicesKilling { until: now + KILL_WAIT };
                    continue;
                }
                Phase::ServicesKilling { until } if now >= until => {
                    log::warn("service processes are still there after SIGKILL (stuck in the kernel?); exiting anyway");
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
            if let Some(sig) = signals::wait(wait) {
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
        let reason = w.dog.busy_reason(std::path::Path::new("/proc"), self.services.sessions(), &[me], elapsed);
        for note in w.dog.take_notes() {
            log::info(&note);
            w.log.write(&note);
        }
        let event = w.dog.observe(reason, elapsed);
        if let Some(line) = idle::message(&event, w.dog.config()) {
            log::info(&line);
            w.log.write(&line);
        }
        if matches!(event, Event::Expired { .. }) {
            self.idle_expired = true;
            let grace = self.policy.grace;
            let n = self.stop(libc::SIGTERM, grace);
            log::info(format!("sent SIGTERM to the job ({n} process(es)); SIGKILL in {}", show(grace)));
        }
    }

    /// Reap every child that changed state. Returns whether any child is
    /// left (running, stopped, or not yet reapable).
    fn reap(&mut self) -> bool {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid status pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid == 0 {
                return true;
            }
            if pid < 0 {
                // ECHILD: none left. EINTR cannot happen: signals are blocked.
                return false;
            }
            let e = Exit::from_wait_status(status);
            if Some(pid) == self.main {
                self.main_exit = Some(e);
                log::info(format!("the main process (pid {pid}) {}", e.describe()));
            } else {
                self.services.reaped(pid, e, Instant::now());
            }
        }
    }

    /// Whether any process of the job is still alive.
    fn job_left(&self, children: bool) -> bool {
        let sessions = self.services.sessions();
        if sessions.is_empty() {
            // Every process of the job is a descendant, so while one lives a
            // child of ours lives (PID 1's non-descendants, e.g. `kubectl
            // exec` sessions, get the signals but are not waited for).
            return children;
        }
        scan().iter().any(|p| p.ppid == self.me && !p.is_zombie() && !sessions.contains(&p.session))
    }

    /// Send `sig` to every process of the job; returns how many.
    fn send_job(&self, sig: i32) -> usize {
        let sessions = self.services.sessions();
        let pids = job_of(&scan(), self.me, self.pid1, sessions);
        if self.pid1 && sessions.is_empty() {
            // kill(-1) reaches every process but PID 1, atomically with respect
            // to fork (a process forking meanwhile restarts the fork).
            // SAFETY: plain syscall.
            unsafe { libc::kill(-1, sig) };
            return pids.len();
        }
        // Walk until a pass finds nothing new: a process may fork while we
        // signal its parent.
        let mut sent: HashSet<i32> = HashSet::new();
        let mut next = pids;
        for _ in 0..16 {
            let fresh: Vec<i32> = next.into_iter().filter(|p| !sent.contains(p)).collect();
            if fresh.is_empty() {
                break;
            }
            for p in fresh {
                // SAFETY: plain syscall.
                unsafe { libc::kill(p, sig) };
                sent.insert(p);
            }
            next = job_of(&scan(), self.me, self.pid1, sessions);
        }
        sent.len()
    }

    /// Send `sig` to every process of the services; returns how many.
    fn send_services(&self, sig: i32) -> usize {
        let mut sent: HashSet<i32> = HashSet::new();
        for _ in 0..4 {
            let procs = scan();
            let fresh: Vec<i32> =
                self.services.members(&procs).iter().map(|p| p.pid).filter(|p| !sent.contains(p)).collect();
            if fresh.is_empty() {
                break;
            }
            for p in fresh {
                // SAFETY: plain syscall.
                unsafe { libc::kill(p, sig) };
                sent.insert(p);
            }
        }
        sent.len()
    }

    /// After the job: TERM (and CONT) to the services and start their grace.
    /// Returns false when no service process is left (nothing to wait for).
    fn stop_services(&mut self, now: Instant) -> bool {
        self.services.stop_restarts();
        if self.services.members(&scan()).is_empty() {
            return false;
        }
        let n = self.send_services(libc::SIGTERM);
        self.send_services(libc::SIGCONT);
        log::info(format!(
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
        self.phase = Phase::Stopping { until: Instant::now() + grace };
        n
    }

    fn on_signal(&mut self, sig: i32) {
        let name = signals::name(sig);
        match signals::route(sig) {
            Route::StopJob if self.phase == Phase::Running => {
                let grace = self.policy.grace;
                let n = self.stop(sig, grace);
                log::info(format!(
                    "received {name}: sent it to the job ({n} process(es)); SIGKILL in {} if anything is left",
                    show(grace)
                ));
            }
            Route::StopJob => {
                if self.job_phase() {
                    let n = self.send_job(sig);
                    self.send_job(libc::SIGCONT);
                    log::info(format!("received {name} again: sent it to the job ({n} process(es))"));
                } else {
                    let n = self.send_services(sig);
                    log::info(format!("received {name} again: sent it to the services ({n} process(es))"));
                }
            }
            Route::WholeJob => {
                let n = self.send_job(sig);
                log::info(format!("received {name}: sent it to the job ({n} process(es))"));
            }
            Route::MainGroup => {
                let Some(main) = self.main else { return };
                // SAFETY: plain syscalls.
                let r = unsafe { libc::kill(-main, sig) };
                if r != 0 && self.main_exit.is_none() {
                    unsafe { libc::kill(main, sig) };
                }
                if sig != libc::SIGWINCH {
                    log::info(format!("received {name}: sent it to the main process group {main}"));
                }
            }
            Route::MainChild => {
                let Some(main) = self.main else { return };
                if self.main_exit.is_none() {
                    // SAFETY: plain syscall; the main child is not reaped yet.
                    unsafe { libc::kill(main, sig) };
                    log::info(format!("received {name}: sent it to the main process {main}"));
                }
            }
            Route::Reap | Route::Drop => {}
        }
    }

    fn finish(&self) -> i32 {
        if self.restore_tty {
            // SAFETY: terminal ioctls on fd 0; SIGTTOU is ignored in labinit.
            unsafe {
                if Some(libc::tcgetpgrp(0)) == self.main {
                    libc::tcsetpgrp(0, libc::getpgrp());
                }
            }
        }
        if let Some(code) = self.forced {
            return code;
        }
        let code = final_code(
            self.main.is_none(),
            self.idle_expired,
            exit_code(self.main_exit, self.timed_out, self.policy.preserve_status, self.killed),
        );
        let why = if self.idle_expired {
            " (idle)"
        } else if self.main.is_none() {
            " (wait ended)"
        } else if self.timed_out && !self.policy.preserve_status {
            match code {
                exit::TIMEOUT => " (timeout)",
                exit::TIMEOUT_KILLED => " (timeout, killed)",
                _ => "",
            }
        } else {
            ""
        };
        let ran = crate::init::duration::show(Duration::from_secs(self.started.elapsed().as_secs()));
        let span = if self.main.is_none() { "up" } else { "the job ran" };
        log::info(format!("exiting with code {code}{why}; {span} for {ran}"));
        code
    }
}

/// labinit's exit code once the idle watchdog and `wait` mode are taken into
/// account: `wait` always ends with 0 (SIGTERM or idle), and an idle expiry
/// ends `run` with 0 too, so that the pod ends `Completed` and a
/// `restartPolicy: OnFailure` does not bring an idle container back. Pure.
pub fn final_code(waiting: bool, idle_expired: bool, job_code: i32) -> i32 {
    if waiting || idle_expired {
        0
    } else {
        job_code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_without_timeout() {
        assert_eq!(exit_code(Some(Exit::Code(0)), false, false, false), 0);
        assert_eq!(exit_code(Some(Exit::Code(3)), false, false, true), 3);
        assert_eq!(exit_code(Some(Exit::Code(300 & 0xff)), false, false, false), 44);
        assert_eq!(exit_code(Some(Exit::Signal(libc::SIGTERM)), false, false, false), 143);
        assert_eq!(exit_code(Some(Exit::Signal(libc::SIGKILL)), false, false, true), 137);
        assert_eq!(exit_code(Some(Exit::Signal(libc::SIGINT)), false, false, false), 130);
        assert_eq!(exit_code(None, false, false, true), 137);
    }

    #[test]
    fn exit_codes_after_timeout_follow_coreutils() {
        let term = Some(Exit::Signal(libc::SIGTERM));
        assert_eq!(exit_code(term, true, false, false), 124);
        assert_eq!(exit_code(Some(Exit::Code(0)), true, false, false), 124);
        assert_eq!(exit_code(term, true, true, false), 143);
        assert_eq!(exit_code(Some(Exit::Code(5)), true, true, false), 5);
        assert_eq!(exit_code(Some(Exit::Signal(libc::SIGKILL)), true, false, true), 137);
        assert_eq!(exit_code(Some(Exit::Signal(libc::SIGKILL)), true, true, true), 137);
        // Main exited on TERM but a grandchild needed SIGKILL.
        assert_eq!(exit_code(term, true, false, true), 137);
        assert_eq!(exit_code(term, true, true, true), 143);
    }

    #[test]
    fn wait_status_mapping() {
        assert_eq!(Exit::from_wait_status(3 << 8), Exit::Code(3));
        assert_eq!(Exit::from_wait_status(libc::SIGTERM), Exit::Signal(libc::SIGTERM));
        assert_eq!(Exit::Signal(libc::SIGHUP).code(), 129);
        assert!(Exit::Signal(libc::SIGTERM).describe().contains("SIGTERM"));
    }

    fn p(pid: i32, ppid: i32) -> ProcStat {
        ProcStat { pid, name: "x".into(), state: b'S', ppid, pgrp: pid, session: pid, ticks: 0, starttime: 0 }
    }

    #[test]
    fn job_as_subreaper_is_descendants_only() {
        // 10 = labinit; 11 its child; 12 grandchild in another group; 20 unrelated.
        let procs = [p(1, 0), p(10, 1), p(11, 10), p(12, 11), p(13, 12), p(20, 1)];
        let mut j = job_of(&procs, 10, false, &[]);
        j.sort_unstable();
        assert_eq!(j, vec![11, 12, 13]);
    }

    #[test]
    fn job_as_pid1_is_everything_but_services_and_zombies() {
        let mut procs = vec![p(1, 0), p(2, 1), p(3, 2), p(4, 1), p(5, 4), p(6, 0), p(7, 1), p(8, 1), p(9, 5)];
        procs[6].state = b'Z';
        // 4 leads a service session; 5 is its child; 8 an orphan of the
        // service reparented to PID 1; 9 an ssh login: a new session under 5.
        procs[4].session = 4;
        procs[7].session = 4;
        procs[8].session = 9;
        let mut j = job_of(&procs, 1, true, &[4]);
        j.sort_unstable();
        // 6 entered with setns (ppid 0); 7 is a zombie.
        assert_eq!(j, vec![2, 3, 6, 9]);
    }

    #[test]
    fn wait_and_idle_end_with_zero() {
        assert_eq!(final_code(true, false, 143), 0);
        assert_eq!(final_code(true, true, 137), 0);
        assert_eq!(final_code(false, true, 143), 0);
        assert_eq!(final_code(false, false, 143), 143);
        assert_eq!(final_code(false, false, 124), 124);
    }
}
