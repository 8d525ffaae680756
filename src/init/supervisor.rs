//! Supervising the job once it runs: forward signals to every process of the
//! job, reap every orphan, enforce `--timeout`, and shut down with a grace
//! period that ends as soon as nothing is left. Owns the exit code policy.
//! Does not start the job ([`crate::init::run`] does) and knows nothing of
//! accounts.
//!
//! *The job* is every process labinit is responsible for except supervised
//! services (3/3, [`Supervisor::exclude`]): as PID 1 every other process of
//! the PID namespace (what `kill(-1)` reaches), otherwise every descendant of
//! labinit, which is a child subreaper so orphans stay descendants. Process
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
use crate::init::log;
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
}

/// One process as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub state: u8,
}

/// Parse `/proc/PID/stat`: the command name may contain spaces and
/// parentheses, so fields are counted after the *last* `)`.
pub fn parse_stat(text: &str) -> Option<Proc> {
    let (head, tail) = text.rsplit_once(')')?;
    let pid = head.split_once('(')?.0.trim().parse().ok()?;
    let mut f = tail.split_whitespace();
    let state = *f.next()?.as_bytes().first()?;
    let ppid = f.next()?.parse().ok()?;
    Some(Proc { pid, ppid, state })
}

/// Every process visible in `/proc`.
pub fn scan() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // A process may vanish between readdir and read: skip it.
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{name}/stat")) {
            if let Some(p) = parse_stat(&text) {
                out.push(p);
            }
        }
    }
    out
}

/// The job among `procs`, live processes only: as PID 1 everything but
/// `me`, as a subreaper `me`'s descendants; minus the `excluded` processes
/// and their descendants. Pure.
pub fn job_of(procs: &[Proc], me: i32, pid1: bool, excluded: &[i32]) -> Vec<i32> {
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
    let out_of_job = subtree(excluded);
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
    main: i32,
    me: i32,
    pid1: bool,
    excluded: Vec<i32>,
    policy: Policy,
    main_exit: Option<Exit>,
    phase: Phase,
    timeout_at: Option<Instant>,
    timed_out: bool,
    killed: bool,
    /// The job was made the terminal's foreground group: give it back to
    /// labinit's group at the end so the shell that started labinit can read.
    restore_tty: bool,
}

impl Supervisor {
    pub fn new(main: i32, policy: Policy, restore_tty: bool) -> Supervisor {
        let me = std::process::id() as i32;
        let timeout_at = policy.timeout.filter(|t| !t.is_zero()).and_then(|t| Instant::now().checked_add(t));
        Supervisor {
            main,
            me,
            pid1: me == 1,
            excluded: Vec::new(),
            policy,
            main_exit: None,
            phase: Phase::Running,
            timeout_at,
            timed_out: false,
            killed: false,
            restore_tty,
        }
    }

    /// Leave a process (and its descendants) out of the job: supervised
    /// services get their own stop schedule (3/3).
    pub fn exclude(&mut self, pid: i32) {
        self.excluded.push(pid);
    }

    /// Supervise until the job is gone; returns labinit's exit code.
    pub fn run(mut self) -> i32 {
        loop {
            let children = self.reap();
            if self.main_exit.is_some() {
                if !self.job_left(children) {
                    return self.finish();
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
            let now = Instant::now();
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
                        "processes of the job are still there {} after SIGKILL (stuck in the kernel?); exiting anyway",
                        show(KILL_WAIT)
                    ));
                    return self.finish();
                }
                _ => {}
            }
            let mut wait = TICK;
            let deadline = match self.phase {
                Phase::Running => self.timeout_at,
                Phase::Stopping { until } | Phase::Killing { until } => Some(until),
            };
            if let Some(d) = deadline {
                wait = wait.min(d.saturating_duration_since(now));
            }
            if let Some(sig) = signals::wait(wait) {
                self.on_signal(sig);
            }
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
            if pid == self.main {
                let e = Exit::from_wait_status(status);
                self.main_exit = Some(e);
                log::info(format!("the main process (pid {pid}) {}", e.describe()));
            }
        }
    }

    /// Whether any process of the job is still alive.
    fn job_left(&self, children: bool) -> bool {
        if self.excluded.is_empty() {
            // Every process of the job is a descendant, so while one lives a
            // child of ours lives (PID 1's non-descendants, e.g. `kubectl
            // exec` sessions, get the signals but are not waited for).
            return children;
        }
        scan().iter().any(|p| p.ppid == self.me && p.state != b'Z' && !self.excluded.contains(&p.pid))
    }

    /// Send `sig` to every process of the job; returns how many.
    fn send_job(&self, sig: i32) -> usize {
        let pids = job_of(&scan(), self.me, self.pid1, &self.excluded);
        if self.pid1 && self.excluded.is_empty() {
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
            next = job_of(&scan(), self.me, self.pid1, &self.excluded);
        }
        sent.len()
    }

    /// Send the stop signal and SIGCONT (a stopped process acts on nothing
    /// else) to the job, and start the grace period.
    fn stop(&mut self, sig: i32, grace: Duration) -> usize {
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
                let n = self.send_job(sig);
                self.send_job(libc::SIGCONT);
                log::info(format!("received {name} again: sent it to the job ({n} process(es))"));
            }
            Route::WholeJob => {
                let n = self.send_job(sig);
                log::info(format!("received {name}: sent it to the job ({n} process(es))"));
            }
            Route::MainGroup => {
                // SAFETY: plain syscalls.
                let r = unsafe { libc::kill(-self.main, sig) };
                if r != 0 && self.main_exit.is_none() {
                    unsafe { libc::kill(self.main, sig) };
                }
                if sig != libc::SIGWINCH {
                    log::info(format!("received {name}: sent it to the main process group {}", self.main));
                }
            }
            Route::MainChild => {
                if self.main_exit.is_none() {
                    // SAFETY: plain syscall; the main child is not reaped yet.
                    unsafe { libc::kill(self.main, sig) };
                    log::info(format!("received {name}: sent it to the main process {}", self.main));
                }
            }
            Route::Reap | Route::Drop => {}
        }
    }

    fn finish(&self) -> i32 {
        if self.restore_tty {
            // SAFETY: terminal ioctls on fd 0; SIGTTOU is ignored in labinit.
            unsafe {
                if libc::tcgetpgrp(0) == self.main {
                    libc::tcsetpgrp(0, libc::getpgrp());
                }
            }
        }
        let code = exit_code(self.main_exit, self.timed_out, self.policy.preserve_status, self.killed);
        let why = if self.timed_out && !self.policy.preserve_status {
            match code {
                exit::TIMEOUT => " (timeout)",
                exit::TIMEOUT_KILLED => " (timeout, killed)",
                _ => "",
            }
        } else {
            ""
        };
        log::info(format!("exiting with code {code}{why}"));
        code
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

    #[test]
    fn stat_lines_with_odd_names() {
        let p = parse_stat("42 (a) b (c)) S 7 42 42 0 -1").unwrap();
        assert_eq!(p, Proc { pid: 42, ppid: 7, state: b'S' });
        assert_eq!(parse_stat("1 (init) Z 0 1 1").unwrap().state, b'Z');
        assert!(parse_stat("garbage").is_none());
    }

    fn p(pid: i32, ppid: i32) -> Proc {
        Proc { pid, ppid, state: b'S' }
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
        let mut procs = vec![p(1, 0), p(2, 1), p(3, 2), p(4, 1), p(5, 4), p(6, 0), p(7, 1)];
        procs[6].state = b'Z';
        let mut j = job_of(&procs, 1, true, &[4]);
        j.sort_unstable();
        // 4 is a service with child 5; 6 entered with setns (ppid 0); 7 is a zombie.
        assert_eq!(j, vec![2, 3, 6]);
    }
}
