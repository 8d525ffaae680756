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
//! what passes the ownership rule of [`trusted`] runs, and the descriptor that
//! was checked is what is executed. Each step is supervised like the job
//! (`run_one`): stdin `/dev/null`, a stop signal passed to its process group
//! with SIGCONT and SIGKILL after the grace, `LABKIT_STEP_TIMEOUT`.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::libc;

use crate::init::duration::show;
use crate::init::exit::{self, Fatal};
use crate::init::{log, signals, trusted};

/// Process group of the step that is running now (0 = none).
pub static CURRENT_STEP_PGID: AtomicI32 = AtomicI32::new(0);

/// Stop signals received during setup so far (set by setup's handler, with
/// the signal itself in its own pending flag): a step's supervision sees a
/// new one even when the same signal arrives twice.
pub static STOP_SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// Write end of the pipe that wakes a step's supervision when a stop signal
/// arrives (-1 until [`run_all`] made it): a signal landing just before the
/// wait would otherwise only be seen at the next timeout.
static WAKE_WRITE: AtomicI32 = AtomicI32::new(-1);
static WAKE_READ: AtomicI32 = AtomicI32::new(-1);

/// Called by setup's signal handler: count the stop signal and wake the
/// running step's supervision. Async-signal-safe (an atomic and `write`).
pub fn note_stop_signal() {
    STOP_SIGNALS.fetch_add(1, Ordering::SeqCst);
    let fd = WAKE_WRITE.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) of one byte from a static; a full pipe is fine.
        unsafe { libc::write(fd, b"!".as_ptr().cast(), 1) };
    }
}

/// Make the wake-up pipe once (non-blocking, close-on-exec, kept for good).
fn wake_pipe() {
    if WAKE_READ.load(Ordering::SeqCst) >= 0 {
        return;
    }
    let mut fds = [0; 2];
    // SAFETY: valid array for pipe2.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } == 0 {
        WAKE_READ.store(fds[0], Ordering::SeqCst);
        WAKE_WRITE.store(fds[1], Ordering::SeqCst);
    }
}

/// Longest `NAME=value` line a step may export: the job's whole environment
/// must fit the kernel's limit at exec (128 KiB for one string, a quarter of
/// the stack limit for all), and a value that does not makes the job itself
/// unstartable.
pub const MAX_EXPORT_BYTES: usize = 64 * 1024;
/// Most bytes all exports together may hold (`NAME=value` each).
pub const MAX_EXPORTS_TOTAL: usize = 1024 * 1024;
/// Most bytes of `LABKIT_ENV` read in one start; the rest is ignored.
pub const MAX_ENV_FILE: u64 = 16 * 1024 * 1024;

/// How the steps are run.
pub struct StepOptions {
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

/// How one directory entry is treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    Executable,
    ShellScript,
    Skip(String),
    /// Would run as root but others can change it: never run (the reason
    /// names the file or directory, its owner and mode).
    Refused(String),
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

/// One entry of a steps or services directory, opened and checked.
pub struct Entry {
    pub name: String,
    pub kind: StepKind,
    /// The file that was checked, for `Executable` and `ShellScript`: it is
    /// what runs ([`Runnable`]).
    pub file: Option<Runnable>,
}

/// A checked file, executed through its descriptor (`/proc/self/fd/N`), so
/// what runs is what was checked even if the path changes meanwhile.
/// Without `/proc` (a bare chroot) the path it was reached by, links
/// resolved, is executed instead: every directory on that path passed the
/// ownership rule, so only root could change what it names.
pub struct Runnable {
    fd: OwnedFd,
    /// Where it was found (for messages and `argv[0]`).
    pub path: PathBuf,
    /// The path it was opened by, links resolved (all of it checked).
    real: PathBuf,
}

impl Runnable {
    /// The path that reaches this file in the child: its descriptor, or
    /// without `/proc` its checked path.
    pub fn proc_path(&self) -> PathBuf {
        if Path::new("/proc/self/fd").is_dir() {
            PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
        } else {
            self.real.clone()
        }
    }

    /// A command running this file (`shell` for a `*.sh` without the
    /// executable bit); the child keeps the descriptor open across exec (a
    /// script's interpreter opens it by that path) and has default signals.
    pub fn command(&self, shell: Option<&Path>) -> Command {
        let mut cmd = match shell {
            Some(sh) => {
                let mut c = Command::new(sh);
                c.arg(self.proc_path());
                c
            }
            None => {
                let mut c = Command::new(self.proc_path());
                c.arg0(&self.path);
                c
            }
        };
        let fd = self.fd.as_raw_fd();
        // SAFETY: fcntl and the signal reset are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                signals::reset_in_child();
                Ok(())
            });
        }
        cmd
    }
}

/// Why a directory's entries cannot be used at all.
#[derive(Debug)]
pub enum ListError {
    Io(io::Error),
    /// The directory, or one above it, fails the ownership rule.
    Untrusted(trusted::Untrusted),
}

impl std::fmt::Display for ListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListError::Io(e) => e.fmt(f),
            ListError::Untrusted(u) => u.fmt(f),
        }
    }
}

/// "WHAT refused: …" for a directory that fails the ownership rule, naming
/// the directory only when the culprit is another one (a parent, a link).
pub fn refused_dir(what: &str, dir: &Path, u: &trusted::Untrusted) -> String {
    if u.path == dir {
        format!("{what} refused: {u}")
    } else {
        format!("{what} in {} refused: {u}", dir.display())
    }
}

/// The ownership rule in words, for refusals.
pub const OWNERSHIP_RULE: &str =
    "what runs as root must be owned by root and writable by no one else, and so must every directory above it (sshd's StrictModes rule)";

/// The entries of a steps or services directory in run order: byte order
/// of the file name (C collation, so `01` < `10` < `9` < `A` < `a`). The
/// directory and everything above it must pass [`trusted::verdict`];
/// each runnable entry (a link is followed) is opened and checked the same
/// way and refused when it fails. A missing directory has no entries.
pub fn list(dir: &Path) -> Result<Vec<Entry>, ListError> {
    let opened = match trusted::open_trusted(dir, libc::O_PATH | libc::O_DIRECTORY) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Vec::new()),
        Err(trusted::OpenError::Io { err, .. }) => return Err(ListError::Io(err)),
        Err(trusted::OpenError::Untrusted(u)) => return Err(ListError::Untrusted(u)),
    };
    let mut names = trusted::names(&opened).map_err(ListError::Io)?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut out = Vec::with_capacity(names.len());
    for raw in names {
        let name = String::from_utf8_lossy(raw.as_bytes()).into_owned();
        if name.starts_with('.') {
            out.push(Entry { name, kind: StepKind::Skip("hidden file".into()), file: None });
            continue;
        }
        let (kind, file) = match trusted::open_trusted_in(&opened, OsStr::from_bytes(raw.as_bytes())) {
            Ok(f) => {
                let kind = classify(&name, f.is_regular(), f.mode);
                let file = matches!(kind, StepKind::Executable | StepKind::ShellScript).then(|| Runnable {
                    fd: f.fd,
                    path: dir.join(&raw),
                    real: f.path,
                });
                (kind, file)
            }
            Err(trusted::OpenError::Untrusted(u)) => (StepKind::Refused(u.to_string()), None),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                (StepKind::Skip("dangling link".into()), None)
            }
            Err(trusted::OpenError::Io { err, .. }) if err.raw_os_error() == Some(libc::EISDIR) => {
                (StepKind::Skip("not a regular file".into()), None)
            }
            Err(e) => (StepKind::Skip(format!("cannot open it: {e}")), None),
        };
        out.push(Entry { name, kind, file });
    }
    Ok(out)
}

/// A variable exported by a step.
pub type Export = (String, String);

/// Parse one `LABKIT_ENV` line. Blank lines and `#` comments give `None`.
/// Grammar: `NAME=value`, NAME = `[A-Za-z_][A-Za-z0-9_]*` and not `LABKIT_*`
/// (labinit's own) nor HOME, USER, LOGNAME, SHELL (the account's: see
/// [`crate::init::job::reserved_export`]), value taken literally to the end
/// of the line (no quotes, no expansion), without NUL; the whole line at
/// most [`MAX_EXPORT_BYTES`].
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
        let shown: String = name.chars().take(64).collect();
        return Err(format!("{shown:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"));
    }
    if name.starts_with("LABKIT_") {
        return Err(format!("{name} is reserved for labinit"));
    }
    if let Some(why) = crate::init::job::reserved_export(name) {
        return Err(why);
    }
    if line.len() > MAX_EXPORT_BYTES {
        return Err(format!(
            "{name}=… is longer than {} KiB, the most an exported variable may hold (the job could not be started with it)",
            MAX_EXPORT_BYTES / 1024
        ));
    }
    if value.contains('\0') {
        return Err("the value contains a NUL byte".into());
    }
    Ok(Some((name.to_owned(), value.to_owned())))
}

/// The exports collected so far: last value wins (and moves to the end), in
/// linear time, with the total size bounded.
#[derive(Default)]
pub struct Exports {
    list: Vec<Option<Export>>,
    index: std::collections::HashMap<String, usize>,
    bytes: usize,
}

impl Exports {
    /// Add one parsed variable; `Err` when the total would pass
    /// [`MAX_EXPORTS_TOTAL`].
    pub fn set(&mut self, name: String, value: String) -> Result<(), String> {
        let size = name.len() + value.len() + 2;
        let old = self.index.get(&name).and_then(|&i| self.list[i].as_ref()).map_or(0, |(n, v)| n.len() + v.len() + 2);
        if self.bytes - old + size > MAX_EXPORTS_TOTAL {
            return Err(format!(
                "the exports would exceed {} KiB in all (the job could not be started with them)",
                MAX_EXPORTS_TOTAL / 1024
            ));
        }
        if let Some(i) = self.index.remove(&name) {
            self.list[i] = None;
        }
        self.bytes = self.bytes - old + size;
        self.index.insert(name.clone(), self.list.len());
        self.list.push(Some((name, value)));
        Ok(())
    }

    pub fn into_vec(self) -> Vec<Export> {
        self.list.into_iter().flatten().collect()
    }
}

/// Reads what steps append to `LABKIT_ENV`, by descriptor, from where the
/// previous step left off: linear in the file's size, bounded by
/// [`MAX_ENV_FILE`], and stopped by a pending stop signal.
pub struct EnvReader {
    offset: u64,
    line: usize,
    partial: Vec<u8>,
    over_limit: bool,
    /// Bad lines of the current step (warned up to [`MAX_LINE_WARNINGS`]).
    bad: usize,
}

/// Bad `LABKIT_ENV` lines warned about one by one per step; the rest are
/// counted in one line, so a runaway step cannot flood the log.
pub const MAX_LINE_WARNINGS: usize = 10;

impl EnvReader {
    pub fn new() -> EnvReader {
        EnvReader { offset: 0, line: 0, partial: Vec::new(), over_limit: false, bad: 0 }
    }

    /// Parse what `step` appended. `Err(signal)` when a stop signal
    /// arrived meanwhile.
    pub fn collect(
        &mut self,
        step: &str,
        file: &std::fs::File,
        exports: &mut Exports,
        pending: &dyn Fn() -> Option<i32>,
    ) -> Result<(), i32> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(sig) = pending() {
                return Err(sig);
            }
            if self.offset >= MAX_ENV_FILE {
                if !std::mem::replace(&mut self.over_limit, true) {
                    log::warn(format!(
                        "step {step}: LABKIT_ENV holds more than {} MiB; the rest is ignored",
                        MAX_ENV_FILE / (1024 * 1024)
                    ));
                }
                break;
            }
            let want = buf.len().min((MAX_ENV_FILE - self.offset) as usize);
            let n = match file.read_at(&mut buf[..want], self.offset) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn(format!("step {step}: cannot read LABKIT_ENV: {e}; its exports are ignored"));
                    break;
                }
            };
            self.offset += n as u64;
            let mut rest = &buf[..n];
            while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
                self.line_done(step, &rest[..nl], exports);
                rest = &rest[nl + 1..];
            }
            // Keep at most one byte past the limit: enough to know it is too long.
            let room = (MAX_EXPORT_BYTES + 1).saturating_sub(self.partial.len());
            self.partial.extend_from_slice(&rest[..rest.len().min(room)]);
            if rest.len() > room {
                self.partial.push(b'x');
            }
        }
        // A last line without a newline belongs to this step.
        if !self.partial.is_empty() {
            self.line_done(step, &[], exports);
        }
        let bad = std::mem::take(&mut self.bad);
        if bad > MAX_LINE_WARNINGS {
            log::warn(format!(
                "step {step}: {} more bad LABKIT_ENV lines ignored (up to line {})",
                bad - MAX_LINE_WARNINGS,
                self.line
            ));
        }
        Ok(())
    }

    fn line_done(&mut self, step: &str, tail: &[u8], exports: &mut Exports) {
        self.line += 1;
        let room = (MAX_EXPORT_BYTES + 2).saturating_sub(self.partial.len());
        self.partial.extend_from_slice(&tail[..tail.len().min(room)]);
        let text = String::from_utf8_lossy(&self.partial);
        let result = parse_env_line(&text).and_then(|e| match e {
            Some((k, v)) => exports.set(k, v),
            None => Ok(()),
        });
        if let Err(why) = result {
            self.bad += 1;
            if self.bad <= MAX_LINE_WARNINGS {
                log::warn(format!("step {step}: LABKIT_ENV line {}: {why}; line ignored", self.line));
            }
        }
        self.partial.clear();
    }
}

impl Default for EnvReader {
    fn default() -> Self {
        EnvReader::new()
    }
}

/// Parse the lines a step appended; bad lines are reported with the step
/// and the line number in the file, and skipped (for tests and fuzzing:
/// [`EnvReader`] does the same on the file).
pub fn collect_exports(step: &str, text: &str, first_line: usize, exports: &mut Exports) {
    for (i, line) in text.lines().enumerate() {
        let result = parse_env_line(line).and_then(|e| match e {
            Some((k, v)) => exports.set(k, v),
            None => Ok(()),
        });
        if let Err(why) = result {
            log::warn(format!("step {step}: LABKIT_ENV line {}: {why}; line ignored", first_line + i));
        }
    }
}

fn stopped_by(sig: i32, name: &str) -> Fatal {
    Fatal::with_code(
        exit::SIGNAL_BASE + sig,
        format!("received {} during step {name}: setup stopped; the job was not started", signals::name(sig)),
    )
}

/// Run every step. Returns the variables they exported (last value wins).
/// `pending` reports a stop signal received meanwhile (see [`STOP_SIGNALS`]).
pub fn run_all(opts: &StepOptions, pending: &dyn Fn() -> Option<i32>) -> Result<Vec<Export>, Fatal> {
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
    wake_pipe();
    for entry in steps {
        let name = entry.name;
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
        let outcome = run_one(&name, &mut cmd, opts, pending);
        let ms = started.elapsed().as_millis();
        let code = match &outcome {
            Ok(o) => o.code,
            Err(e) => {
                log::warn(format!("step {name}: could not start: {}", start_error(e)));
                exit::NOT_EXECUTABLE
            }
        };
        if let Err(sig) = reader.collect(&name, &opts.env_file, &mut exports, pending) {
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

/// Standard input for a step or service: `/dev/null`, or where a bare root
/// has none, a pipe whose writing end is already closed (reads see EOF).
pub fn empty_stdin() -> Stdio {
    if let Ok(f) = std::fs::File::open("/dev/null") {
        return Stdio::from(f);
    }
    let mut fds = [0; 2];
    // SAFETY: valid array for pipe2; both ends are owned right away.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == 0 {
        use std::os::fd::FromRawFd;
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(wr);
        return Stdio::from(rd);
    }
    Stdio::null()
}

/// Why a step or service could not be started, errno kept: ENOENT for a
/// file that was just opened and checked means its `#!` interpreter is
/// missing.
pub fn start_error(e: &io::Error) -> String {
    if e.raw_os_error() == Some(libc::ENOENT) {
        format!("{e} (the interpreter its #! line names is not in this image)")
    } else {
        e.to_string()
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepEnd {
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

/// Send `sig` to the step's group, then SIGCONT (a stopped process acts on
/// nothing else), as the supervisor does for the job.
fn signal_group(pgid: i32, sig: i32) {
    // SAFETY: plain syscalls.
    unsafe {
        libc::kill(-pgid, sig);
        if sig != libc::SIGKILL && sig != libc::SIGCONT {
            libc::kill(-pgid, libc::SIGCONT);
        }
    }
}

/// Sleep until `pid` changes state (its pidfd), a stop signal arrives (the
/// wake-up pipe), or `timeout` passes. Without a pidfd (kernel before 5.3)
/// in steps of at most 50 ms.
fn wait_event(pidfd: Option<&OwnedFd>, timeout: Duration) {
    let mut ms = timeout.as_millis().clamp(1, 1000) as i32;
    let wake = WAKE_READ.load(Ordering::SeqCst);
    let mut fds = [
        libc::pollfd { fd: wake, events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: pidfd.map_or(-1, |f| f.as_raw_fd()), events: libc::POLLIN, revents: 0 },
    ];
    if pidfd.is_none() {
        ms = ms.min(50);
    }
    // SAFETY: two valid pollfds (a negative fd is ignored by poll).
    unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
    if wake >= 0 && fds[0].revents != 0 {
        let mut buf = [0u8; 64];
        // SAFETY: draining our own non-blocking pipe into a local buffer.
        while unsafe { libc::read(wake, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
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
fn run_one(
    name: &str,
    cmd: &mut Command,
    opts: &StepOptions,
    pending: &dyn Fn() -> Option<i32>,
) -> io::Result<StepEnd> {
    let child = cmd.spawn()?;
    let pid = child.id() as i32;
    drop(child); // reaped below with waitpid
    CURRENT_STEP_PGID.store(pid, Ordering::SeqCst);
    let pidfd = pidfd_open(pid);
    let started = Instant::now();
    let warn_at = started + opts.warn_after;
    let timeout_at = opts.timeout.filter(|t| !t.is_zero()).and_then(|t| started.checked_add(t));
    let mut warned = false;
    let mut said_stopped = false;
    let mut seen = STOP_SIGNALS.load(Ordering::SeqCst);
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
        let count = STOP_SIGNALS.load(Ordering::SeqCst);
        if count != seen {
            seen = count;
            if let Some(sig) = pending() {
                signal_group(pid, sig);
                let sname = signals::name(sig);
                if stopped_by.is_none() {
                    stopped_by = Some(sig);
                    if kill_at.is_none() {
                        kill_at = Some(now + opts.grace);
                    }
                    log::info(format!(
                        "received {sname} during step {name}: sent it to the step (process group {pid}); SIGKILL in {} if anything is left",
                        show(opts.grace)
                    ));
                } else {
                    log::info(format!("received {sname} again: sent it to the step (process group {pid})"));
                }
            }
        }
        if kill_at.is_none() && timeout_at.is_some_and(|t| now >= t) {
            timed_out = true;
            signal_group(pid, libc::SIGTERM);
            kill_at = Some(now + opts.grace);
            log::warn(format!(
                "step {name}: LABKIT_STEP_TIMEOUT of {} expired: sent SIGTERM to the step (process group {pid}); SIGKILL in {}",
                show(opts.timeout.unwrap_or_default()),
                show(opts.grace)
            ));
        }
        if !killed && kill_at.is_some_and(|t| now >= t) {
            signal_group(pid, libc::SIGKILL);
            killed = true;
            give_up = Some(now + KILL_WAIT);
            log::warn(format!("grace period expired: sent SIGKILL to step {name} (process group {pid})"));
        }
        if !warned && kill_at.is_none() && now >= warn_at {
            warned = true;
            log::warn(format!(
                "step {name} is still running after {}; setup waits for it (a step must finish; long-running programs belong in /opt/lab/services; LABKIT_STEP_TIMEOUT stops it)",
                show(opts.warn_after)
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
        wait_event(fd, next);
    };
    CURRENT_STEP_PGID.store(0, Ordering::SeqCst);
    result
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
        let mut ex = Exports::default();
        collect_exports("s", "A=1\nB=2\nA=3\n", 1, &mut ex);
        assert_eq!(ex.into_vec(), vec![("B".into(), "2".into()), ("A".into(), "3".into())]);
    }

    fn temp_file(data: &[u8]) -> std::fs::File {
        let path = std::env::temp_dir().join(format!("labkit-steps-unit-{}-{:p}", std::process::id(), data));
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, data).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    #[test]
    fn oversized_export_is_refused_and_the_rest_kept() {
        // The case of issue 11: a 200 KB value is refused; a normal one after it stays.
        let mut data = b"SMALL=1\nBIG_LIST=".to_vec();
        data.extend(std::iter::repeat(b'x').take(200_000));
        data.extend_from_slice(b"\nAFTER=2\n");
        let f = temp_file(&data);
        let mut ex = Exports::default();
        EnvReader::new().collect("10_export.sh", &f, &mut ex, &|| None).unwrap();
        assert_eq!(ex.into_vec(), vec![("SMALL".into(), "1".into()), ("AFTER".into(), "2".into())]);
        // Negative control: just under the limit is accepted.
        let mut data = b"EDGE=".to_vec();
        data.extend(std::iter::repeat(b'y').take(MAX_EXPORT_BYTES - 5));
        let f = temp_file(&data);
        let mut ex = Exports::default();
        EnvReader::new().collect("s", &f, &mut ex, &|| None).unwrap();
        assert_eq!(ex.into_vec()[0].1.len(), MAX_EXPORT_BYTES - 5);
        assert!(parse_env_line(&format!("A={}", "z".repeat(MAX_EXPORT_BYTES))).unwrap_err().contains("KiB"));
    }

    #[test]
    fn exports_total_is_bounded() {
        let mut ex = Exports::default();
        let v = "v".repeat(60_000);
        let mut refused = 0;
        for i in 0..40 {
            if ex.set(format!("V{i}"), v.clone()).is_err() {
                refused += 1;
            }
        }
        assert_eq!(refused, 40 - MAX_EXPORTS_TOTAL / 60_004, "the total stops at 1 MiB");
        // Replacing a value frees its old size.
        let mut ex = Exports::default();
        for _ in 0..100 {
            ex.set("SAME".into(), v.clone()).unwrap();
        }
        assert_eq!(ex.into_vec().len(), 1);
    }

    #[test]
    fn many_lines_are_read_in_linear_time_and_numbered_across_steps() {
        // 300k lines (the slow case) in one step; then another step's
        // bad line is numbered from the file's start.
        let mut data = String::new();
        for i in 0..300_000 {
            data.push_str(&format!("V{}={i}\n", i % 1000));
        }
        let f = temp_file(data.as_bytes());
        let mut ex = Exports::default();
        let mut r = EnvReader::new();
        r.collect("a", &f, &mut ex, &|| None).unwrap();
        let v = ex.into_vec();
        assert_eq!(v.len(), 1000);
        assert_eq!(v[999], ("V999".into(), "299999".into()));
        assert_eq!(r.line, 300_000);
    }

    #[test]
    fn a_pending_signal_interrupts_reading() {
        let f = temp_file(b"A=1\n");
        let mut ex = Exports::default();
        assert_eq!(EnvReader::new().collect("a", &f, &mut ex, &|| Some(15)), Err(15));
        assert!(ex.into_vec().is_empty());
    }

    #[test]
    fn bad_lines_are_counted_not_warned_one_by_one() {
        let f = temp_file("bad line\n".repeat(1000).as_bytes());
        let mut ex = Exports::default();
        let mut r = EnvReader::new();
        r.collect("a", &f, &mut ex, &|| None).unwrap();
        assert_eq!((r.line, r.bad), (1000, 0), "the count is per step and reset");
    }
}
