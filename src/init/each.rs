//! `labinit each`: several experiments in one container, with their failures
//! visible. Runs each command string with the user's shell, all at once,
//! prefixes every line they print with the command's label (`[1] `, or the
//! name given with `--name`), logs each exit, and exits non-zero when any
//! command failed: with the exit code of the first command that failed (in
//! the order they ended), 128+N for a command killed by signal N. With
//! `--fail-fast` the first failure stops the others (SIGTERM + SIGCONT to
//! each command's process group, SIGKILL after the grace).
//!
//! It replaces the cluster guide's `python a.py & python b.py & wait`, whose
//! `wait` returns 0 whatever the commands returned. It runs as the job (it
//! never sets anything up): `labinit run --each 'A' 'B'` makes it the job's
//! main command, and inside the legacy string form
//! `setup_and_run_command.sh "cd x && /opt/lab/labinit each 'A' 'B'"` works
//! the same.
//!
//! Signals: `each` always runs under a labinit supervisor (PID 1 or
//! subreaper; outside a job `labinit each` becomes `labinit run --each`),
//! which sends its stop signal to every process of the job, so `each` does
//! not forward it again (a second TERM can cut a checkpoint short); it only
//! stays alive to copy the last lines and report. Commands get `/dev/null` as standard input (several readers of one input
//! would steal each other's lines) and a process group of their own.
//!
//! The pure parts — the line prefixer and the outcome rule — are unit-tested;
//! the loop that spawns, polls and reaps is tested end to end (tests/each.rs).

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::init::exit;
use crate::init::log;

/// The grace between SIGTERM and SIGKILL for `--fail-fast` (labinit's own
/// default stop grace, so a checkpoint has the same time either way).
pub(crate) const DEFAULT_FAIL_FAST_GRACE: Duration = Duration::from_secs(20);

/// Longest run of bytes without a line end that is held back; longer output
/// is written out in pieces of this size, each with the prefix.
const MAX_PENDING: usize = 64 * 1024;

/// What `labinit each` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Command strings, run with the shell as `SHELL -c STRING`.
    pub commands: Vec<String>,
    /// Label of each command, as printed in `[label] ` (index from 1 unless named).
    pub labels: Vec<String>,
    pub fail_fast: bool,
    pub grace: Duration,
}

impl Plan {
    /// Checks the arguments: at least one command, at most as many names as
    /// commands, names of 1–32 printable characters without `]` or blanks.
    /// Errors are one line for the log (exit 125).
    pub(crate) fn new(
        commands: Vec<String>,
        names: Vec<String>,
        fail_fast: bool,
        grace: Duration,
    ) -> Result<Plan, String> {
        if commands.is_empty() {
            return Err("each: no command given; use labinit each 'CMD1' 'CMD2' …".into());
        }
        if names.len() > commands.len() {
            return Err(format!(
                "each: {} names (--name) for {} commands; give at most one name per command, in order",
                names.len(),
                commands.len()
            ));
        }
        for n in &names {
            let ok = !n.is_empty()
                && n.chars().count() <= 32
                && n.chars().all(|c| !c.is_control() && !c.is_whitespace() && c != ']' && c != '[');
            if !ok {
                return Err(format!(
                    "each: --name {:?} is not a usable label; use 1-32 printable characters without blanks or brackets",
                    n
                ));
            }
        }
        if let Some(i) = commands.iter().position(|c| c.trim().is_empty()) {
            return Err(format!("each: command {} is empty", i + 1));
        }
        let labels =
            (0..commands.len()).map(|i| names.get(i).cloned().unwrap_or_else(|| (i + 1).to_string())).collect();
        Ok(Plan { commands, labels, fail_fast, grace })
    }
}

/// How one command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    Code(i32),
    Signal(i32),
}

impl Ended {
    pub(crate) fn failed(self) -> bool {
        self != Ended::Code(0)
    }
    /// The shell's number for it: the code, or 128+N.
    pub(crate) fn status(self) -> i32 {
        match self {
            Ended::Code(c) => c,
            Ended::Signal(n) => exit::SIGNAL_BASE + n,
        }
    }
    fn describe(self) -> String {
        match self {
            Ended::Code(c) => format!("exited with code {c}"),
            Ended::Signal(n) => {
                let name =
                    Signal::try_from(n).map(|s| s.as_str().to_string()).unwrap_or_else(|_| format!("signal {n}"));
                format!("was killed by {name} (status {})", exit::SIGNAL_BASE + n)
            }
        }
    }
}

/// The rule for `each`'s own exit code, given the commands' ends in the order
/// they happened (index, how): 0 when none failed, else the status of the
/// first that failed. Pure.
pub(crate) fn outcome(ends: &[(usize, Ended)]) -> i32 {
    ends.iter().find(|(_, e)| e.failed()).map(|(_, e)| e.status()).unwrap_or(0)
}

/// Splits a stream of bytes into segments ended by `\n` or `\r` (so progress
/// bars that redraw with `\r` stay live) and writes each with the prefix at
/// its start. Bytes after the last line end are held until more arrive, the
/// stream ends ([`Prefixer::finish`]) or [`MAX_PENDING`] is reached. Pure:
/// returns the bytes to write.
#[derive(Debug)]
pub(crate) struct Prefixer {
    prefix: Vec<u8>,
    pending: Vec<u8>,
}

impl Prefixer {
    pub(crate) fn new(label: &str) -> Prefixer {
        Prefixer { prefix: format!("[{label}] ").into_bytes(), pending: Vec::new() }
    }

    /// Feeds bytes; returns the complete segments, each prefixed.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in bytes {
            self.pending.push(b);
            if b == b'\n' || b == b'\r' || self.pending.len() >= MAX_PENDING {
                self.emit(&mut out);
            }
        }
        out
    }

    /// The end of the stream: what is held back, with a line end added.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.pending.is_empty() {
            self.pending.push(b'\n');
            self.emit(&mut out);
        }
        out
    }

    fn emit(&mut self, out: &mut Vec<u8>) {
        // A lone `\n` right after a `\r` ends the same line (CRLF): no second prefix.
        if self.pending != b"\n" || !out.ends_with(b"\r") {
            out.extend_from_slice(&self.prefix);
        }
        out.append(&mut self.pending);
    }
}

/// `--grace` of `each`, as every labinit duration. Error: one line.
pub(crate) fn parse_grace(v: &str) -> Result<Duration, String> {
    crate::init::duration::parse_named("--grace", v).map_err(|f| format!("each: {}", f.message))
}

/// The shell for the command strings: `env_shell` (`$SHELL`) when it is an
/// absolute path to an executable, else `/bin/sh`.
fn shell(env_shell: Option<&std::ffi::OsStr>) -> OsString {
    use std::os::unix::fs::PermissionsExt;
    env_shell
        .filter(|s| {
            std::path::Path::new(s).is_absolute()
                && std::fs::metadata(s).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map(ToOwned::to_owned)
        .unwrap_or_else(|| "/bin/sh".into())
}

struct Running {
    child: Child,
    label: String,
    out: Option<(File, Prefixer)>,
    err: Option<(File, Prefixer)>,
    ended: Option<Ended>,
}

/// Keeps `each` alive through the job's stop signals: the labinit
/// supervisor already sends them to every process of the job (the commands
/// included), and `each` must live on to copy their last lines and report how
/// they ended. A handler, not SIG_IGN: handlers are reset by exec, so the
/// commands get the signals' default actions.
fn outlive_stop_signals() {
    let noted = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGQUIT,
    ] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(&noted)) {
            log::warn(format!("each: cannot take over signal {sig}: {e}; it will end labinit each at once"));
        }
    }
}

fn signal_groups(running: &[Running], sig: Signal) {
    for r in running.iter().filter(|r| r.ended.is_none()) {
        let pgid = Pid::from_raw(r.child.id() as i32);
        if let Err(e) = killpg(pgid, sig) {
            if e != nix::errno::Errno::ESRCH {
                log::warn(format!("each: cannot send {} to [{}] (process group {pgid}): {e}", sig.as_str(), r.label));
            }
        }
    }
}

/// Runs the plan to its end under a labinit supervisor, each command with
/// `$SHELL` (`env_shell`, else `/bin/sh`); returns the exit code
/// ([`outcome`]).
pub(crate) fn run(plan: &Plan, env_shell: Option<&std::ffi::OsStr>) -> i32 {
    outlive_stop_signals();
    let sh = shell(env_shell);
    let mut running: Vec<Running> = Vec::new();
    let mut ends: Vec<(usize, Ended)> = Vec::new();
    for (i, cmd) in plan.commands.iter().enumerate() {
        let label = plan.labels[i].clone();
        let spawned = std::process::Command::new(&sh)
            .arg("-c")
            .arg(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn();
        match spawned {
            Ok(mut child) => {
                log::info(format!("each: [{label}] started (pid {}): {}", child.id(), log_text(cmd)));
                let out = child.stdout.take().map(|o| (File::from(OwnedFd::from(o)), Prefixer::new(&label)));
                let err = child.stderr.take().map(|e| (File::from(OwnedFd::from(e)), Prefixer::new(&label)));
                running.push(Running { child, label, out, err, ended: None });
            }
            Err(e) => {
                // The shell itself could not start: a failure like any other.
                let code =
                    if e.kind() == std::io::ErrorKind::NotFound { exit::NOT_FOUND } else { exit::NOT_EXECUTABLE };
                log::warn(format!("each: [{label}] cannot start {}: {e}", sh.to_string_lossy()));
                ends.push((i, Ended::Code(code)));
            }
        }
    }
    // --fail-fast: when the others were told to stop, and SIGKILL is due.
    let mut kill_at: Option<Instant> = None;
    let mut killed = false;
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Copy output first, so a command's last lines come before its exit
        // line. Once every command has ended: drain once and stop (a
        // background process that kept the pipe open must not hold us).
        let ended_before = running.iter().all(|r| r.ended.is_some());
        let timeout = if ended_before { PollTimeout::ZERO } else { PollTimeout::from(100u16) };
        let got = pump(&mut running, &mut buf, &mut stdout, &mut stderr, timeout);
        // Reap.
        for (i, r) in running.iter_mut().enumerate() {
            if r.ended.is_some() {
                continue;
            }
            match r.child.try_wait() {
                Ok(Some(st)) => {
                    let e = match (st.code(), st.signal()) {
                        (Some(c), _) => Ended::Code(c),
                        (None, Some(n)) => Ended::Signal(n),
                        _ => Ended::Code(exit::SIGNAL_BASE),
                    };
                    r.ended = Some(e);
                    let line = format!("each: [{}] {}", r.label, e.describe());
                    if e.failed() {
                        log::warn(line);
                    } else {
                        log::info(line);
                    }
                    ends.push((i, e));
                }
                Ok(None) => {}
                Err(e) => {
                    log::warn(format!("each: [{}] cannot be waited for: {e}", r.label));
                    r.ended = Some(Ended::Code(exit::SIGNAL_BASE));
                    ends.push((i, Ended::Code(exit::SIGNAL_BASE)));
                }
            }
        }
        if plan.fail_fast && kill_at.is_none() && ends.iter().any(|(_, e)| e.failed()) {
            let others = running.iter().filter(|r| r.ended.is_none()).count();
            if others > 0 {
                log::info(format!(
                    "each: --fail-fast: stopping the {others} other command(s) (SIGTERM; SIGKILL in {})",
                    crate::init::duration::show(plan.grace)
                ));
                signal_groups(&running, Signal::SIGTERM);
                signal_groups(&running, Signal::SIGCONT);
            }
            kill_at = Some(Instant::now() + plan.grace);
        }
        if let Some(at) = kill_at {
            if !killed && Instant::now() >= at {
                signal_groups(&running, Signal::SIGKILL);
                killed = true;
            }
        }
        if ended_before && !got {
            break;
        }
    }
    for r in running.iter_mut() {
        if let Some((_, p)) = r.out.as_mut() {
            let _ = stdout.write_all(&p.finish());
        }
        if let Some((_, p)) = r.err.as_mut() {
            let _ = stderr.write_all(&p.finish());
        }
    }
    let _ = stdout.flush();
    let code = outcome(&ends);
    let failed = ends.iter().filter(|(_, e)| e.failed()).count();
    if failed == 0 {
        log::info(format!("each: all {} command(s) succeeded", plan.commands.len()));
    } else {
        let first = ends.iter().find(|(_, e)| e.failed()).map(|(i, _)| plan.labels[*i].clone()).unwrap_or_default();
        log::warn(format!(
            "each: {failed} of {} command(s) failed; exiting with code {code}, the status of the first failure ([{first}])",
            plan.commands.len()
        ));
    }
    code
}

/// Reads what the commands printed (waiting up to `timeout` for the first
/// bytes) and writes it prefixed. Returns whether anything was read.
fn pump(
    running: &mut [Running],
    buf: &mut [u8],
    stdout: &mut impl Write,
    stderr: &mut impl Write,
    timeout: PollTimeout,
) -> bool {
    use std::io::Read;
    // Which (command, stream) each poll entry is.
    let mut which = Vec::new();
    let mut fds = Vec::new();
    for (i, r) in running.iter().enumerate() {
        if let Some((o, _)) = &r.out {
            fds.push(PollFd::new(o.as_fd(), PollFlags::POLLIN));
            which.push((i, false));
        }
        if let Some((e, _)) = &r.err {
            fds.push(PollFd::new(e.as_fd(), PollFlags::POLLIN));
            which.push((i, true));
        }
    }
    if fds.is_empty() {
        if timeout != PollTimeout::ZERO {
            std::thread::sleep(Duration::from_millis(100));
        }
        return false;
    }
    match poll(&mut fds, timeout) {
        Ok(0) => return false,
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => return true,
        Err(e) => {
            log::warn(format!("each: poll failed: {e}"));
            std::thread::sleep(Duration::from_millis(100));
            return false;
        }
    }
    let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
    drop(fds);
    let mut got = false;
    for (k, (i, is_err)) in which.into_iter().enumerate() {
        if !ready[k] {
            continue;
        }
        let r = &mut running[i];
        let slot = if is_err { &mut r.err } else { &mut r.out };
        let Some((pipe, _)) = slot.as_mut() else { continue };
        let n = match pipe.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        let (_, prefixer) = slot.as_mut().expect("slot checked above");
        let bytes = if n == 0 { prefixer.finish() } else { prefixer.feed(&buf[..n]) };
        got |= n > 0;
        // A closed stdout or stderr of labinit each must not stop the commands.
        let _ = if is_err { stderr.write_all(&bytes) } else { stdout.write_all(&bytes) };
        if n == 0 {
            *slot = None;
        }
    }
    let _ = stdout.flush();
    got
}

/// A command string for a log line: at most 200 characters, control
/// characters escaped.
fn log_text(s: &str) -> String {
    let short: String = s.chars().take(200).collect();
    let more = if s.chars().count() > 200 { "…" } else { "" };
    format!("{}{more}", log::escape(&short))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_every_line_and_keeps_partial_ones() {
        let mut p = Prefixer::new("1");
        assert_eq!(p.feed(b"a\nb"), b"[1] a\n");
        assert_eq!(p.feed(b"c\n\n"), b"[1] bc\n[1] \n");
        assert_eq!(p.feed(b"tail"), b"");
        assert_eq!(p.finish(), b"[1] tail\n");
        assert_eq!(p.finish(), b"", "nothing held back twice");
        // Control: without a line end nothing is written before finish.
        let mut q = Prefixer::new("x");
        assert!(q.feed(b"no end").is_empty());
    }

    #[test]
    fn carriage_returns_keep_progress_bars_live() {
        let mut p = Prefixer::new("b");
        assert_eq!(p.feed(b" 10%\r 20%\r"), b"[b]  10%\r[b]  20%\r");
        // CRLF is one line end, not an empty second line.
        assert_eq!(p.feed(b"x\r\ny\n"), b"[b] x\r\n[b] y\n");
    }

    #[test]
    fn long_lines_are_written_in_pieces() {
        let mut p = Prefixer::new("1");
        let out = p.feed(&vec![b'a'; MAX_PENDING + 10]);
        assert_eq!(out.len(), MAX_PENDING + 4);
        assert!(out.starts_with(b"[1] aaa"));
        assert_eq!(p.finish().len(), 10 + 4 + 1);
    }

    #[test]
    fn the_first_failure_decides() {
        assert_eq!(outcome(&[]), 0);
        assert_eq!(outcome(&[(0, Ended::Code(0)), (1, Ended::Code(0))]), 0);
        assert_eq!(outcome(&[(1, Ended::Code(0)), (0, Ended::Code(3)), (2, Ended::Code(5))]), 3);
        assert_eq!(outcome(&[(2, Ended::Signal(9)), (0, Ended::Code(3))]), 137);
        // Control: a success after a failure does not reset it.
        assert_ne!(outcome(&[(0, Ended::Code(1)), (1, Ended::Code(0))]), 0);
    }

    #[test]
    fn plans_are_checked() {
        let st = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let p = Plan::new(st(&["python a.py", "python b.py"]), st(&["a"]), true, DEFAULT_FAIL_FAST_GRACE).unwrap();
        assert_eq!(p.labels, vec!["a", "2"]);
        let p = Plan::new(st(&["CUDA_VISIBLE_DEVICES=0 python a.py"]), vec![], false, DEFAULT_FAIL_FAST_GRACE).unwrap();
        assert_eq!(p.labels, vec!["1"]);
        for (cmds, names) in [
            (&[][..], &[][..]),
            (&["x"], &["a", "b"]),
            (&["x"], &["a b"]),
            (&["x"], &["a]"]),
            (&["x"], &[""]),
            (&["x", "  "], &[]),
        ] {
            assert!(
                Plan::new(st(cmds), st(names), false, DEFAULT_FAIL_FAST_GRACE).is_err(),
                "{cmds:?} {names:?} accepted"
            );
        }
        assert!(parse_grace("soon").is_err());
        assert_eq!(parse_grace("5s").unwrap(), Duration::from_secs(5));
    }
}
