//! Supervised services: the executables in `/opt/lab/services`
//! (`LABKIT_SERVICES_DIR`), such as sshd, started after setup and before the
//! job, as root, each in a session of its own, with their output prefixed by
//! their name. Owns starting, the restart policy and who belongs to a service;
//! the supervisor owns reaping and when services are stopped.
//!
//! A service that exits 0 is done (a service that is not wanted exits 0 at
//! once). One that fails is restarted after a backoff of at least 1 s,
//! doubling, until it failed 5 times within a minute: then it is given up
//! with a warning. Services never block the job and never change the exit
//! code.
//!
//! Each service leads its own session (`setsid`), so its processes are found
//! by session id even after they are orphaned; sessions are never left, only
//! founded anew, so a user's ssh login (sshd starts a new session per
//! connection) is part of the job, not of the service. Once a service
//! process is reaped and no process is left in its session, the session's id
//! is forgotten: the kernel may hand that number out again.

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::libc;

use crate::init::duration::show;
use crate::init::exit::Exit;
use crate::init::files::Root;
use crate::init::job::Children;
use crate::init::procfs::ProcStat;
use crate::init::steps::{self, Runnable, StepKind};
use crate::init::{log, state};

/// Failures within this window count towards giving up.
const WINDOW: Duration = Duration::from_secs(60);
const MAX_FAILURES: usize = 5;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest output line passed on in one piece.
const MAX_LINE: u64 = 4096;

/// What to do after a failure, given the earlier failures (pruned to the
/// window here). `None`: give up. Pure.
pub(crate) fn after_failure(failures: &mut Vec<Instant>, now: Instant) -> Option<Duration> {
    failures.retain(|t| now.saturating_duration_since(*t) < WINDOW);
    failures.push(now);
    if failures.len() >= MAX_FAILURES {
        return None;
    }
    let doublings = (failures.len() - 1).min(16) as u32;
    Some(FIRST_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running(i32),
    /// Restart at this time.
    Waiting(Instant),
    Done,
    GaveUp,
    Stopped,
}

struct Service {
    name: String,
    /// The checked file; every (re)start runs this very file.
    program: Runnable,
    /// Interpreter for a `*.sh` service without the executable bit.
    shell: Option<PathBuf>,
    state: State,
    failures: Vec<Instant>,
}

pub(crate) struct Services {
    list: Vec<Service>,
    env: Vec<(OsString, OsString)>,
    /// Session of every service process started (its pid): orphans of an
    /// earlier run of a service still belong to the service, until the
    /// session is empty ([`Services::forget_empty_sessions`]).
    sessions: Vec<i32>,
    /// Sessions whose service process was reaped: dropped once no process
    /// is left in them. The kernel does not hand a session's id out as a pid
    /// while a process is in it, so once empty the number is free, and a
    /// job process that gets it and founds a session (`setsid`, as tmux does)
    /// must not be taken for the service.
    ended: Vec<i32>,
    stopping: bool,
}

impl Services {
    /// Start the services of `dir` (container path under `root`), with the
    /// environment `children` gives them and `labinit` as the path they call
    /// it by. No directory (most images): nothing is discovered or built,
    /// nothing delays the job. Else `before` runs first (PID 1's record,
    /// which the ssh service's `labinit shell` reads), then the sshd `SetEnv`
    /// file that gives ssh sessions the job's environment is written
    /// ([`state::write_sshd_setenv`]).
    pub(crate) fn launch(
        root: &Root,
        dir: &str,
        labinit: &Path,
        children: &Children,
        before: impl FnOnce(),
    ) -> Services {
        let dir = root.path(dir);
        let is_dir = match std::fs::metadata(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Services::none(),
            found => found.is_ok_and(|m| m.is_dir()),
        };
        before();
        let setenv = if !is_dir {
            None
        } else {
            state::write_sshd_setenv(root, &children.session_env(Some(std::process::id())))
                .inspect_err(|e| {
                    if children.identity().is_some() {
                        log::warn(format!("{e}; ssh sessions will lack the job's environment"));
                    }
                })
                .ok()
        };
        let mut services = Services::discover(&dir, children.service_env(labinit, setenv.as_deref()));
        services.start_all();
        services
    }

    /// No services (nested runs, tests).
    pub(crate) fn none() -> Services {
        Services { list: Vec::new(), env: Vec::new(), sessions: Vec::new(), ended: Vec::new(), stopping: false }
    }

    /// Services already running in these sessions, for the supervisor's
    /// unit tests (nothing is started or restarted).
    #[cfg(test)]
    pub(crate) fn in_sessions(sessions: Vec<i32>) -> Services {
        Services { sessions, ..Services::none() }
    }

    /// The services in `dir` (a host path), in name order, not started yet.
    /// `env` is what each gets (container environment plus `LABKIT_USER`…).
    /// Services run as root: the directory, every directory above it and
    /// each service must be owned by root and writable by no one else
    /// ([`steps::list`]); what fails is refused with a warning.
    pub(crate) fn discover(dir: &Path, env: Vec<(OsString, OsString)>) -> Services {
        let mut s = Services::none();
        s.env = env;
        let entries = match steps::list(dir) {
            Ok(e) => e,
            Err(steps::ListError::Untrusted(u)) => {
                log::warn(format!(
                    "{}; {}. No service started",
                    steps::refused_dir("services", dir, &u),
                    steps::OWNERSHIP_RULE
                ));
                return s;
            }
            Err(e) => {
                log::warn(format!("cannot read the services directory {}: {e}; no services started", dir.display()));
                return s;
            }
        };
        for entry in entries {
            let name = entry.name;
            let shell = match entry.kind {
                StepKind::Skip(why) => {
                    log::info(format!("service {name}: skipped ({why})"));
                    continue;
                }
                StepKind::Refused(why) => {
                    log::warn(format!("service {name} refused: {why}; {}", steps::OWNERSHIP_RULE));
                    continue;
                }
                StepKind::Executable => None,
                StepKind::ShellScript => Some(PathBuf::from("/bin/sh")),
            };
            let Some(program) = entry.file else { continue };
            // The name in log lines and output prefixes: `ssh`, `jupyter.sh` → `jupyter`.
            let shown = name.strip_suffix(".sh").filter(|n| !n.is_empty()).unwrap_or(&name).to_owned();
            s.list.push(Service { program, name: shown, shell, state: State::Stopped, failures: Vec::new() });
        }
        s
    }

    /// Start every service.
    pub(crate) fn start_all(&mut self) {
        for i in 0..self.list.len() {
            self.start(i, Instant::now());
        }
    }

    fn start(&mut self, i: usize, now: Instant) {
        match spawn(&self.list[i], &self.env) {
            Ok(pid) => {
                self.sessions.push(pid);
                let s = &mut self.list[i];
                s.state = State::Running(pid);
                log::info(format!("service {}: started (pid {pid})", s.name));
            }
            Err(e) => self.failed(i, now, &format!("could not start: {e}")),
        }
    }

    fn failed(&mut self, i: usize, now: Instant, what: &str) {
        let s = &mut self.list[i];
        if self.stopping {
            s.state = State::Stopped;
            return;
        }
        match after_failure(&mut s.failures, now) {
            Some(delay) => {
                s.state = State::Waiting(now + delay);
                log::info(format!("service {}: {what}; restarting in {}", s.name, show(delay)));
            }
            None => {
                s.state = State::GaveUp;
                log::warn(format!(
                    "service {}: {what}; it failed {MAX_FAILURES} times within {}, giving up (the job goes on without it)",
                    s.name,
                    show(WINDOW)
                ));
            }
        }
    }

    /// Whether `pid` is a service's main process; if so, record its end.
    pub(crate) fn reaped(&mut self, pid: i32, exit: Exit, now: Instant) -> bool {
        let Some(i) = self.list.iter().position(|s| s.state == State::Running(pid)) else { return false };
        self.ended.push(pid);
        if self.stopping {
            self.list[i].state = State::Stopped;
            return true;
        }
        match exit {
            Exit::Code(0) => {
                self.list[i].state = State::Done;
                log::info(format!("service {}: done (exit code 0)", self.list[i].name));
            }
            e => self.failed(i, now, &e.describe()),
        }
        true
    }

    /// Restart the services whose backoff is over.
    pub(crate) fn restart_due(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        for i in 0..self.list.len() {
            if matches!(self.list[i].state, State::Waiting(t) if now >= t) {
                self.start(i, now);
            }
        }
    }

    /// The next restart time, for the supervisor's wait.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.stopping {
            return None;
        }
        self.list
            .iter()
            .filter_map(|s| match s.state {
                State::Waiting(t) => Some(t),
                _ => None,
            })
            .min()
    }

    /// Sessions that belong to services (never the job's).
    pub(crate) fn sessions(&self) -> &[i32] {
        &self.sessions
    }

    /// Whether a service process was reaped whose session may still hold
    /// processes ([`Services::forget_empty_sessions`] has work).
    pub(crate) fn has_ended_sessions(&self) -> bool {
        !self.ended.is_empty()
    }

    /// Forget the sessions of reaped service processes that `procs` (the
    /// process table just read) shows empty. Pure but for `self`.
    pub(crate) fn forget_empty_sessions(&mut self, procs: &[ProcStat]) {
        let empty: Vec<i32> =
            self.ended.iter().copied().filter(|s| !procs.iter().any(|p| p.session == *s && !p.is_zombie())).collect();
        self.sessions.retain(|s| !empty.contains(s));
        self.ended.retain(|s| !empty.contains(s));
    }

    /// Processes of services among `procs` (live ones).
    pub(crate) fn members<'a>(&self, procs: &'a [ProcStat]) -> Vec<&'a ProcStat> {
        procs.iter().filter(|p| !p.is_zombie() && self.sessions.contains(&p.session)).collect()
    }

    /// No more restarts: the shutdown has begun.
    pub(crate) fn stop_restarts(&mut self) {
        self.stopping = true;
        for s in &mut self.list {
            if matches!(s.state, State::Waiting(_)) {
                s.state = State::Stopped;
            }
        }
    }
}

/// Start one service: own session, stdin from /dev/null, stdout and stderr
/// into a pipe read by a thread that prefixes each line with the name.
fn spawn(s: &Service, env: &[(OsString, OsString)]) -> Result<i32, String> {
    let mut fds = [0; 2];
    // SAFETY: valid array for pipe2.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("cannot create a pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both fds were just created and are owned here only.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let wr2 = wr.try_clone().map_err(|e| format!("cannot duplicate a pipe: {e}"))?;
    let mut cmd = s.program.command(s.shell.as_deref());
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(steps::empty_stdin())
        .stdout(Stdio::from(wr))
        .stderr(Stdio::from(wr2));
    // SAFETY: setsid is async-signal-safe (the signal reset is in `command`).
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| steps::start_error(&e))?;
    drop(cmd); // closes our copies of the write end: EOF when the service's side is gone
    let pid = child.id() as i32;
    let name = s.name.clone();
    let file = std::fs::File::from(rd);
    let pump = std::thread::Builder::new().name(format!("svc-{name}")).stack_size(64 * 1024).spawn(move || {
        prefix_lines(&name, file, &mut std::io::stderr());
    });
    if let Err(e) = pump {
        log::warn(format!("service {}: cannot read its output ({e}); it is discarded", s.name));
    }
    Ok(pid)
}

/// Copy `input` to `out` line by line, each line prefixed `NAME: ` and
/// written in one piece (lines longer than 4 KiB are split). The name and
/// the text are escaped ([`log::escape`]): no control character of a
/// service's output (a remote user name sshd logs, say) reaches the log.
pub(crate) fn prefix_lines(name: &str, input: impl std::io::Read, out: &mut impl Write) {
    let mut r = std::io::BufReader::with_capacity(4096, input);
    let mut raw: Vec<u8> = Vec::with_capacity(256);
    let prefix = format!("{}: ", log::escape(name));
    loop {
        raw.clear();
        match std::io::Read::take(&mut r, MAX_LINE).read_until(b'\n', &mut raw) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
        let text = raw.strip_suffix(b"\n").unwrap_or(&raw);
        let mut line = String::with_capacity(prefix.len() + text.len() + 1);
        line.push_str(&prefix);
        line.push_str(&log::escape_bytes(text));
        line.push('\n');
        let _ = out.write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_runs_before_first_and_nothing_without_a_directory() {
        let dir = std::env::temp_dir().join(format!("labkit-services-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("svc")).unwrap();
        let root = Root::new(&dir);
        let setenv = root.path(format!("{}/{}", state::DIR, state::SSHD_SETENV));
        let container = [(OsString::from("PATH"), OsString::from("/usr/bin:/bin"))];
        let children = Children::new(&container, None, &[], crate::init::job::Caller { uid: 0, gid: 0 });
        let labinit = Path::new("/opt/lab/labinit");
        // A directory (empty): `before` runs first, before the sshd file.
        let mut order = Vec::new();
        let s = Services::launch(&root, "/svc", labinit, &children, || order.push(setenv.exists()));
        assert_eq!(order, [false], "before ran after the sshd SetEnv file was written, or not once");
        assert!(setenv.exists() && s.list.is_empty());
        // Control: no directory, nothing runs and nothing is written.
        std::fs::remove_dir_all(&dir).unwrap();
        let mut ran = false;
        let s = Services::launch(&root, "/svc", labinit, &children, || ran = true);
        assert!(!ran && s.list.is_empty() && !setenv.exists());
    }

    /// The session of a reaped service process is forgotten once empty
    /// (its number is then a free pid); while a process is left in it, it
    /// still belongs to the service. Control: a running service's session
    /// is kept with nobody else in it.
    #[test]
    fn an_ended_services_session_is_forgotten_once_empty() {
        let proc_in = |pid: i32, session: i32, state: u8| ProcStat {
            pid,
            name: "x".into(),
            state,
            ppid: 1,
            pgrp: pid,
            session,
            ticks: 0,
            children_ticks: 0,
            threads: 1,
            starttime: 0,
        };
        let mut s = Services::in_sessions(vec![30, 40]);
        s.ended = vec![30];
        assert!(s.has_ended_sessions());
        s.forget_empty_sessions(&[proc_in(31, 30, b'S'), proc_in(40, 40, b'S')]);
        assert_eq!(s.sessions(), [30, 40], "an orphan of the service is still in session 30");
        s.forget_empty_sessions(&[proc_in(31, 30, b'Z')]);
        assert_eq!(s.sessions(), [40], "only a zombie left: the session is over; 40 runs");
        assert!(!s.has_ended_sessions());
    }

    #[test]
    fn backoff_doubles_and_gives_up_after_five_a_minute() {
        let t0 = Instant::now();
        let mut f = Vec::new();
        assert_eq!(after_failure(&mut f, t0), Some(Duration::from_secs(1)));
        assert_eq!(after_failure(&mut f, t0 + Duration::from_secs(1)), Some(Duration::from_secs(2)));
        assert_eq!(after_failure(&mut f, t0 + Duration::from_secs(3)), Some(Duration::from_secs(4)));
        assert_eq!(after_failure(&mut f, t0 + Duration::from_secs(7)), Some(Duration::from_secs(8)));
        assert_eq!(after_failure(&mut f, t0 + Duration::from_secs(15)), None);
    }

    #[test]
    fn old_failures_are_forgotten() {
        let t0 = Instant::now();
        let mut f = Vec::new();
        for i in 0..4 {
            assert!(after_failure(&mut f, t0 + Duration::from_secs(i)).is_some());
        }
        // Two minutes later only this failure counts: back to 1 s.
        assert_eq!(after_failure(&mut f, t0 + Duration::from_secs(120)), Some(Duration::from_secs(1)));
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn backoff_is_capped() {
        let t0 = Instant::now();
        let mut f: Vec<Instant> = Vec::new();
        // Failures spread out so fewer than five fall in a minute.
        let mut last = None;
        for i in 0..4 {
            last = after_failure(&mut f, t0 + Duration::from_secs(i * 14));
        }
        assert_eq!(last, Some(Duration::from_secs(8)));
        assert!(FIRST_BACKOFF.saturating_mul(1 << 16).min(MAX_BACKOFF) == MAX_BACKOFF);
    }

    #[test]
    fn output_lines_are_prefixed_whole() {
        let input: &[u8] = b"one\ntwo words\n\nlast without newline";
        let mut out = Vec::new();
        prefix_lines("ssh", input, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "ssh: one\nssh: two words\nssh: \nssh: last without newline\n");
        let long = vec![b'x'; 5000];
        let mut out = Vec::new();
        prefix_lines("s", &long[..], &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().all(|l| l.starts_with("s: ")));
    }

    #[test]
    fn output_control_characters_are_escaped() {
        // sshd logs names remote users choose: "\r" or ESC must not reach the log raw.
        let input: &[u8] = b"Invalid user \rlabinit: error: forged\x1b[2K from 10.0.0.1\nplain\n";
        let mut out = Vec::new();
        prefix_lines("ssh", input, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ssh: Invalid user \\rlabinit: error: forged\\x1b[2K from 10.0.0.1\nssh: plain\n"
        );
    }
}
