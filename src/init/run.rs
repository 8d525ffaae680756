//! `labinit run`: the story of one container start — configure, set up
//! (accounts and steps, [`crate::init::setup`]), take the signals over, start
//! the job as the user, supervise it, exit with its code. Owns how the job is
//! started: process group and terminal, and the fork/exec with the privilege
//! drop in between. Who the job and every other child run as and with what
//! environment, working directory and argv are decided in [`crate::init::job`]
//! (pure); the child side is async-signal-safe and allocates nothing.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::libc;

use crate::init::duration;
use crate::init::exit::{self, Fatal};
use crate::init::files::Root;
use crate::init::idle;
use crate::init::job::{
    self, job_env, program_candidates, shell_argv, working_dirs, Caller, Identity, ShellSource, SUPERVISOR_VAR,
};
use crate::init::log;
use crate::init::privileges::{Credentials, DropError, Stage};
use crate::init::services::{self, Services};
use crate::init::setup;
use crate::init::signals;
use crate::init::state;
use crate::init::supervisor::{Policy, Supervisor};

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A program and its arguments, executed directly (no shell).
    Argv(Vec<OsString>),
    /// A command string for the user's shell (`-c`).
    Shell(String),
}

/// One `labinit run` (or legacy `setup_and_run_command.sh`) invocation.
#[derive(Debug, Clone)]
pub struct Request {
    /// Prefix for setup's file operations (`/` in production).
    pub root: PathBuf,
    pub command: Command,
    /// Legacy name: start in the home, source `~/.bashrc` first with bash.
    pub legacy: bool,
    pub options: Options,
}

/// `run`'s options as given on the command line (strings: they are
/// validated together with their `LABKIT_*` fallbacks).
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub timeout: Option<String>,
    pub kill_after: Option<String>,
    pub grace: Option<String>,
    pub preserve_status: bool,
}

fn env_get<'a>(env: &'a [(OsString, OsString)], name: &str) -> Option<&'a OsStr> {
    env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_os_str())
}

fn env_str<'a>(env: &'a [(OsString, OsString)], name: &str) -> Option<&'a str> {
    env_get(env, name).and_then(OsStr::to_str).filter(|s| !s.is_empty())
}

/// The supervision policy from the options, falling back to `LABKIT_TIMEOUT`,
/// `LABKIT_KILL_AFTER`, `LABKIT_GRACE` and `LABKIT_PRESERVE_STATUS`.
pub fn policy(opts: &Options, env: &[(OsString, OsString)]) -> Result<Policy, Fatal> {
    let pick = |flag: &Option<String>, flag_name: &str, var: &str| -> Result<Option<std::time::Duration>, Fatal> {
        match (flag, env_str(env, var)) {
            (Some(v), _) => duration::parse_named(flag_name, v).map(Some),
            (None, Some(v)) => duration::parse_named(var, v).map(Some),
            (None, None) => Ok(None),
        }
    };
    let timeout = pick(&opts.timeout, "--timeout", "LABKIT_TIMEOUT")?.filter(|d| !d.is_zero());
    let kill_after = pick(&opts.kill_after, "--kill-after", "LABKIT_KILL_AFTER")?;
    let grace = pick(&opts.grace, "--grace", "LABKIT_GRACE")?.unwrap_or(crate::init::supervisor::DEFAULT_GRACE);
    let preserve_status = opts.preserve_status
        || match env_str(env, "LABKIT_PRESERVE_STATUS") {
            Some(v) => crate::init::config::parse_bool("LABKIT_PRESERVE_STATUS", v)?,
            None => false,
        };
    Ok(Policy { grace, timeout, kill_after, preserve_status })
}

fn is_executable_file(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The shell for `-c` and logins ([`job::shell_for`]).
fn shell_for(identity: Option<&Identity>, env: &[(OsString, OsString)]) -> PathBuf {
    job::shell_for(identity, env_get(env, "SHELL").map(Path::new), &is_executable_file)
}

/// Everything the child needs, resolved before the fork.
#[derive(Debug, Clone)]
pub struct Launch {
    pub argv: Vec<OsString>,
    pub candidates: Vec<PathBuf>,
    pub env: Vec<(OsString, OsString)>,
    pub dirs: Vec<PathBuf>,
    pub creds: Option<Credentials>,
}

fn cstring(b: &[u8], what: &str) -> Result<CString, Fatal> {
    CString::new(b).map_err(|_| Fatal::config(format!("{what} contains a NUL byte")))
}

/// The child's report of a failure before exec: kind, stage, errno.
const REPORT_LEN: usize = 6;
const KIND_PRIVILEGES: u8 = 1;
const KIND_EXEC: u8 = 2;

/// Everything the process between fork and exec touches, allocated up
/// front (argv, environment, paths, messages, the group check's buffer).
struct Raw {
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envs: Vec<CString>,
    env_ptrs: Vec<*const libc::c_char>,
    candidates: Vec<CString>,
    dirs: Vec<CString>,
    dir_warnings: Vec<Vec<u8>>,
    scratch: Vec<libc::gid_t>,
}

impl Raw {
    fn new(launch: &Launch) -> Result<Raw, Fatal> {
        let argv: Vec<CString> =
            launch.argv.iter().map(|a| cstring(a.as_bytes(), "an argument")).collect::<Result<_, _>>()?;
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let envs: Vec<CString> = launch
            .env
            .iter()
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                cstring(&kv, "an environment variable")
            })
            .collect::<Result<_, _>>()?;
        let mut env_ptrs: Vec<*const libc::c_char> = envs.iter().map(|e| e.as_ptr()).collect();
        env_ptrs.push(std::ptr::null());
        let candidates: Vec<CString> = launch
            .candidates
            .iter()
            .map(|p| cstring(p.as_os_str().as_bytes(), "the program path"))
            .collect::<Result<_, _>>()?;
        let dirs: Vec<CString> = launch
            .dirs
            .iter()
            .map(|p| cstring(p.as_os_str().as_bytes(), "the working directory"))
            .collect::<Result<_, _>>()?;
        let dir_warnings: Vec<Vec<u8>> = launch
            .dirs
            .iter()
            .map(|d| {
                let mut w = log::line("warning", &format!("cannot enter {}; trying the next directory", d.display()));
                w.push('\n');
                w.into_bytes()
            })
            .collect();
        let scratch = launch.creds.as_ref().map(Credentials::scratch).unwrap_or_default();
        // The CStrings' heap buffers do not move with the Vecs: the pointers stay valid.
        Ok(Raw { _argv: argv, argv_ptrs, _envs: envs, env_ptrs, candidates, dirs, dir_warnings, scratch })
    }
}

/// Why the job could not be started (from the child, or from `enter` in
/// place): kind, stage, errno, and the exit code that goes with it.
#[derive(Debug, Clone, Copy)]
struct Failure {
    kind: u8,
    stage: u8,
    errno: i32,
    code: i32,
}

fn failure_to_fatal(launch: &Launch, f: Failure) -> Fatal {
    let err = std::io::Error::from_raw_os_error(f.errno);
    let program = launch.argv.first().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
    match f.kind {
        KIND_PRIVILEGES => {
            let stage = Stage::from_u8(f.stage).map(Stage::describe).unwrap_or("unknown step");
            let detail = if f.errno != 0 { format!(": {err}") } else { String::new() };
            Fatal::config(format!("cannot drop privileges: {stage}{detail}; the job was not started"))
        }
        // Too big an environment or argument list is not the command's fault
        // (exit 126 would say it is): name the sizes and the largest variable.
        _ if f.errno == libc::E2BIG => Fatal::config(too_big(launch, &err)),
        _ if f.errno == libc::ENOENT || f.errno == libc::ENOTDIR => {
            Fatal::with_code(exit::NOT_FOUND, format!("{program}: command not found"))
        }
        _ => Fatal::with_code(exit::NOT_EXECUTABLE, format!("{program}: cannot execute: {err}")),
    }
}

/// The message for an exec that failed with `E2BIG`.
fn too_big(launch: &Launch, err: &std::io::Error) -> String {
    let program = launch.argv.first().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
    let env_bytes: usize = launch.env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let arg_bytes: usize = launch.argv.iter().map(|a| a.len() + 1).sum();
    let largest = launch
        .env
        .iter()
        .max_by_key(|(k, v)| k.len() + v.len())
        .map(|(k, v)| format!("; the largest variable is {} ({} bytes)", k.to_string_lossy(), k.len() + v.len() + 1))
        .unwrap_or_default();
    format!(
        "cannot start {program}: the environment ({env_bytes} bytes in {} variables) and arguments ({arg_bytes} bytes) are more than the kernel accepts ({err}){largest}; the command is not at fault: shorten that variable (a step's LABKIT_ENV export or the pod's env)",
        launch.env.len()
    )
}

/// Fork, set the child up and exec the job. Returns the child's pid once
/// exec succeeded; an exec or privilege failure is returned as the exit code
/// the shell would give (127 not found, 126 not executable, 125 drop failed).
pub fn spawn(launch: &Launch) -> Result<i32, Fatal> {
    let mut raw = Raw::new(launch)?;
    // SAFETY: isatty has no preconditions.
    let tty = unsafe { libc::isatty(0) } == 1;

    let mut fds = [0; 2];
    // SAFETY: valid array for pipe2.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Fatal::config(format!("cannot create a pipe: {}", std::io::Error::last_os_error())));
    }
    let (rd, wr) = (fds[0], fds[1]);
    // SAFETY: fork; the child branch below only makes async-signal-safe calls
    // on memory allocated before the fork and ends in exec or _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: closing our own fds.
        unsafe {
            libc::close(rd);
            libc::close(wr);
        }
        return Err(Fatal::config(format!("cannot fork: {e}")));
    }
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            let f = enter(true, tty, launch.creds.as_ref(), &mut raw);
            let e = f.errno.to_ne_bytes();
            let rec = [f.kind, f.stage, e[0], e[1], e[2], e[3]];
            libc::write(wr, rec.as_ptr().cast(), rec.len());
            libc::_exit(f.code)
        }
    }
    // SAFETY: plain syscalls on our own fds and child.
    unsafe {
        libc::close(wr);
        // Also here, so the group exists before anything signals it.
        libc::setpgid(pid, pid);
    }
    let mut buf = [0u8; REPORT_LEN];
    let mut got = 0;
    while got < REPORT_LEN {
        // SAFETY: reading into a local buffer.
        let n = unsafe { libc::read(rd, buf[got..].as_mut_ptr().cast(), REPORT_LEN - got) };
        if n <= 0 {
            break;
        }
        got += n as usize;
    }
    // SAFETY: closing our own fd.
    unsafe { libc::close(rd) };
    if got == 0 {
        return Ok(pid);
    }
    let mut status = 0;
    // SAFETY: reaping our own child, which is about to _exit.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let f =
        Failure { kind: buf[0], stage: buf[1], errno: i32::from_ne_bytes([buf[2], buf[3], buf[4], buf[5]]), code: 0 };
    Err(failure_to_fatal(launch, f))
}

/// Become the job in this very process (`labinit shell`): the same drop,
/// directory and exec as the forked child of [`spawn`]. Returns only on
/// failure.
pub fn exec_in_place(launch: &Launch) -> Fatal {
    let mut raw = match Raw::new(launch) {
        Ok(r) => r,
        Err(f) => return f,
    };
    // SAFETY: single-threaded here; the calls are the child's.
    let f = unsafe { enter(false, false, launch.creds.as_ref(), &mut raw) };
    failure_to_fatal(launch, f)
}

/// The process between fork and exec (or `labinit shell` itself): own
/// process group and terminal when asked, privilege drop, working directory,
/// default signals, exec. Returns only on failure. Async-signal-safe: it
/// allocates nothing.
unsafe fn enter(own_group: bool, tty: bool, creds: Option<&Credentials>, raw: &mut Raw) -> Failure {
    // Own process group, and the terminal's foreground group when there is
    // one (tini's way: works whether or not labinit leads the session).
    // SIGTTOU is still ignored here, so tcsetpgrp from the background works.
    if own_group {
        libc::setpgid(0, 0);
        if tty {
            libc::tcsetpgrp(0, libc::getpid());
        }
    }
    if let Some(c) = creds {
        if let Err(DropError { stage, errno }) = c.apply(&mut raw.scratch) {
            return Failure { kind: KIND_PRIVILEGES, stage: stage as u8, errno, code: exit::CONFIG };
        }
    }
    // As the user, so a home or workingDir the user may not enter is skipped.
    for (i, d) in raw.dirs.iter().enumerate() {
        if libc::chdir(d.as_ptr()) == 0 {
            break;
        }
        if let Some(w) = raw.dir_warnings.get(i) {
            libc::write(2, w.as_ptr().cast(), w.len());
        }
    }
    signals::reset_in_child();
    // execvp's search: ENOENT/ENOTDIR go on, EACCES is remembered.
    let mut errno = libc::ENOENT;
    let mut denied = false;
    for c in &raw.candidates {
        libc::execve(c.as_ptr(), raw.argv_ptrs.as_ptr(), raw.env_ptrs.as_ptr());
        let e = *libc::__errno_location();
        match e {
            libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG | libc::ELOOP => {}
            libc::EACCES => denied = true,
            _ => {
                errno = e;
                denied = false;
                break;
            }
        }
    }
    if denied {
        errno = libc::EACCES;
    }
    let code = if errno == libc::ENOENT { exit::NOT_FOUND } else { exit::NOT_EXECUTABLE };
    Failure { kind: KIND_EXEC, stage: 0, errno, code }
}

/// Whether a labinit (the pid in `LABKIT_SUPERVISOR`) is an ancestor of this
/// process: then setup was done and a supervisor runs already. PID 1 is never
/// nested, so a stale variable baked into an image cannot skip setup.
pub fn outer_supervisor(env: &[(OsString, OsString)]) -> Option<i32> {
    let pid: i32 = env_str(env, SUPERVISOR_VAR)?.parse().ok()?;
    let me = std::process::id() as i32;
    if me == 1 || pid <= 0 {
        return None;
    }
    let mut cur = me;
    for _ in 0..64 {
        let text = std::fs::read_to_string(format!("/proc/{cur}/stat")).ok()?;
        let ppid = crate::init::procfs::parse_stat(&text)?.ppid;
        if ppid == pid {
            return Some(pid);
        }
        if ppid <= 1 {
            return None;
        }
        cur = ppid;
    }
    None
}

fn container_env() -> Vec<(OsString, OsString)> {
    std::env::vars_os().collect()
}

/// The environment as setup takes it (names and values as text).
fn env_for_setup(env: &[(OsString, OsString)]) -> Vec<(String, String)> {
    env.iter().map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned())).collect()
}

/// Under an outer labinit: no setup, no second supervisor; become the
/// command (legacy names still start in the home with `~/.bashrc`).
fn exec_nested(outer: i32, req: &Request, env: &[(OsString, OsString)]) -> i32 {
    use std::os::unix::process::CommandExt;
    let job_env = job_env(env, None, &[], None);
    let argv = match &req.command {
        Command::Argv(a) => a.clone(),
        Command::Shell(s) => shell_argv(&shell_for(None, env), s, req.legacy),
    };
    let Some((program, args)) = argv.split_first() else {
        log::error("no command given");
        return exit::CONFIG;
    };
    log::info(format!("running under labinit (pid {outer}): no second setup or supervisor"));
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).env_clear().envs(job_env.iter().map(|(k, v)| (k, v)));
    if req.legacy {
        if let Some(home) = env_get(env, "HOME") {
            cmd.current_dir(home);
        }
    }
    let e = cmd.exec();
    let code = match e.raw_os_error() {
        Some(libc::ENOENT) => exit::NOT_FOUND,
        _ => exit::NOT_EXECUTABLE,
    };
    log::error(format!(
        "{}: {}",
        program.to_string_lossy(),
        if code == exit::NOT_FOUND { "command not found".to_owned() } else { format!("cannot execute: {e}") }
    ));
    code
}

/// A one-word command with blanks that names no file is a command string
/// (RunAI and docker hand `"/opt/lab/setup_and_run_command.sh 'cd … && …'"`
/// over as one argument when the image has labinit as ENTRYPOINT). Pure but
/// for the file check.
pub fn as_command(argv: Vec<OsString>, path: Option<&OsStr>) -> Command {
    if let [one] = argv.as_slice() {
        let blank = one.as_bytes().iter().any(|b| b.is_ascii_whitespace());
        if blank && !program_candidates(one, path).iter().any(|p| p.exists()) {
            return Command::Shell(one.to_string_lossy().into_owned());
        }
    }
    Command::Argv(argv)
}

/// `labinit run`: the whole start, as a story. Returns the exit code.
pub fn run(req: Request) -> i32 {
    match start(req) {
        Ok(code) => code,
        Err(f) => {
            log::error(&f.message);
            f.code
        }
    }
}

fn start(req: Request) -> Result<i32, Fatal> {
    let env = container_env();
    let policy = policy(&req.options, &env)?;
    let extras = Extras::from_env(&env, std::time::Duration::ZERO)?;
    if req.command == Command::Argv(Vec::new()) {
        return Err(Fatal::config("no command given: labinit run [--] CMD [ARGS…] or labinit run -c 'STRING'"));
    }
    if let Some(outer) = outer_supervisor(&env) {
        if policy.timeout.is_none() && extras.idle.is_none() {
            return Ok(exec_nested(outer, &req, &env));
        }
        log::info(format!(
            "running under labinit (pid {outer}) with a timeout or idle watchdog: supervising without a second setup"
        ));
    }
    let nested = outer_supervisor(&env).is_some();
    let start_dir = std::env::current_dir().ok().filter(|p| p.is_absolute());
    let outcome = boot(&req.root, &env, nested, policy.grace)?;
    if !nested {
        crate::init::summary::log_start(&env, &req.root);
    }
    let me = std::process::id();
    let identity = outcome.identity.as_ref();
    // Resolved before the services start, so a bad command starts nothing.
    let mut launch = prepare(&req, &env, identity, &outcome.exports, start_dir.as_deref(), me)?;
    let idle = idle::for_job(extras.idle.clone(), &mut launch.env);
    let services = start_services(&req.root, &env, &extras, &outcome, nested);
    let pid = match spawn(&launch) {
        Ok(pid) => pid,
        Err(f) => {
            log::error(&f.message);
            // Services must not outlive a job that never started.
            return Ok(Supervisor::waiting(policy).with_services(services, extras.service_grace).end_now(f.code));
        }
    };
    log::info(format!(
        "started {} (pid {pid}){}{}",
        describe(&req.command),
        identity
            .map(|i| format!(" as {} (uid {}, gid {}, groups {:?})", i.name, i.uid, i.gid, i.groups))
            .unwrap_or_default(),
        if me == 1 { "" } else { " as a subreaper (not PID 1)" }
    ));
    log::info(crate::init::summary::job_line(
        policy.timeout,
        policy.grace,
        crate::init::summary::now(),
        crate::init::summary::first_dir(&launch.dirs),
    ));
    // SAFETY: isatty has no preconditions.
    let tty = unsafe { libc::isatty(0) } == 1;
    crate::init::memory::release_startup_pages();
    Ok(Supervisor::new(pid, policy, tty).with_idle(idle).with_services(services, extras.service_grace).run())
}

/// `labinit wait` (legacy `setup_and_wait.sh`, `sleeper`, and `labinit`
/// without arguments): set up, start the services, then stay up as PID 1
/// until SIGTERM or the idle watchdog (30 min by default). Exit code 0.
pub fn wait(root: PathBuf) -> i32 {
    match start_wait(&root) {
        Ok(code) => code,
        Err(f) => {
            log::error(&f.message);
            f.code
        }
    }
}

fn start_wait(root: &Path) -> Result<i32, Fatal> {
    let env = container_env();
    let policy = policy(&Options::default(), &env)?;
    let extras = Extras::from_env(&env, DEFAULT_IDLE_TIMEOUT)?;
    let nested = outer_supervisor(&env);
    if let Some(outer) = nested {
        log::info(format!("running under labinit (pid {outer}): no second setup or services; waiting"));
    }
    let outcome = boot(root, &env, nested.is_some(), policy.grace)?;
    if nested.is_none() {
        crate::init::summary::log_start(&env, root);
    }
    let services = start_services(root, &env, &extras, &outcome, nested.is_some());
    let connect = crate::init::summary::connect_hint(&env, root);
    log::info(match &outcome.identity {
        Some(i) => format!("set up; waiting. Connect with: {connect} (you become {}, uid {})", i.name, i.uid),
        None => format!("set up; waiting. Connect with: {connect}"),
    });
    let mut job = job_env(&env, outcome.identity.as_ref(), &outcome.exports, None);
    let idle = idle::for_job(extras.idle.clone(), &mut job);
    let supervisor = Supervisor::waiting(policy).with_idle(idle).with_services(services, extras.service_grace);
    crate::init::memory::release_startup_pages();
    Ok(supervisor.run())
}

/// `wait`'s idle timeout when `LABKIT_IDLE_TIMEOUT` is unset (the sleeper's).
pub const DEFAULT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Settings of 3/3 read with the policy, before anything is changed.
struct Extras {
    idle: Option<idle::IdleConfig>,
    services_dir: String,
    service_grace: std::time::Duration,
}

impl Extras {
    fn from_env(env: &[(OsString, OsString)], default_idle: std::time::Duration) -> Result<Extras, Fatal> {
        let get = |name: &str| env_get(env, name).map(|v| v.to_string_lossy().into_owned());
        let idle = idle::config_from_env(&get, default_idle)?;
        let services_dir = match env_str(env, "LABKIT_SERVICES_DIR") {
            None => services::DEFAULT_DIR.to_owned(),
            Some(d) if d.starts_with('/') => d.to_owned(),
            Some(d) => return Err(Fatal::config(format!("LABKIT_SERVICES_DIR={d:?} must be an absolute path"))),
        };
        let service_grace = match env_str(env, "LABKIT_SERVICE_GRACE") {
            None => services::DEFAULT_GRACE,
            Some(v) => duration::parse_named("LABKIT_SERVICE_GRACE", v)?,
        };
        Ok(Extras { idle, services_dir, service_grace })
    }
}

/// What `run` and `wait` share before their supervisor: leave the working
/// directory, become a subreaper when not PID 1, set up (unless nested), take
/// the signals over. A stop signal received meanwhile ends it with 128+N.
fn boot(
    root: &Path,
    env: &[(OsString, OsString)],
    nested: bool,
    grace: std::time::Duration,
) -> Result<setup::SetupOutcome, Fatal> {
    // labinit itself must not pin a mount point.
    let _ = std::env::set_current_dir("/");
    if std::process::id() != 1 {
        // Orphans of the job become ours, not the real init's (catatonit).
        let _ = nix::sys::prctl::set_child_subreaper(true);
    }
    let outcome = if nested {
        setup::SetupOutcome::default()
    } else {
        setup::setup_with_grace(root, &env_for_setup(env), Some(grace))?
    };
    signals::take_over();
    setup::release_signals();
    if let Some(sig) = setup::pending_signal().or_else(signals::take_pending_stop) {
        return Err(Fatal::with_code(
            exit::SIGNAL_BASE + sig,
            format!("received {} during setup; the job was not started", signals::name(sig)),
        ));
    }
    Ok(outcome)
}

fn caller() -> Caller {
    Caller { uid: nix::unistd::geteuid().as_raw(), gid: nix::unistd::getegid().as_raw() }
}

/// Start the services of `LABKIT_SERVICES_DIR` (none when nested: the outer
/// labinit runs them). First the sshd `SetEnv` line that gives ssh sessions
/// the job's environment ([`job::sshd_setenv`]), kept in `/run/labkit` for
/// the ssh service.
fn start_services(
    root: &Path,
    env: &[(OsString, OsString)],
    extras: &Extras,
    outcome: &setup::SetupOutcome,
    nested: bool,
) -> Services {
    if nested {
        return Services::none();
    }
    let identity = outcome.identity.as_ref();
    let dir = Root::new(root).path(&extras.services_dir);
    let labinit = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/opt/lab/labinit"));
    let session = job::session_env(&job_env(env, identity, &outcome.exports, Some(std::process::id())));
    let setenv = if !dir.is_dir() {
        None
    } else {
        match state::write_file(&Root::new(root), state::SSHD_SETENV, &job::sshd_setenv_file(&session), 0o600) {
            Ok(()) => Some(Root::new(root).path(format!("{}/{}", state::DIR, state::SSHD_SETENV))),
            Err(e) => {
                if identity.is_some() {
                    log::warn(format!("{e}; ssh sessions will lack the job's environment"));
                }
                None
            }
        }
    };
    let env = job::service_env(env, identity, caller(), &labinit, setenv.as_deref());
    let mut services = Services::discover(&dir, env);
    services.start_all();
    services
}

/// `labinit shell [-- CMD…]`: for `kubectl exec -it POD -- /opt/lab/labinit
/// shell`. Become the job's user with the job's environment (container
/// environment and the step exports PID 1's setup kept) and start the login
/// shell in the home, or CMD. Nothing is set up and nothing supervised: the
/// process becomes the shell. Returns only on failure.
/// `pid1_waits`: PID 1 is a waiting labinit ([`crate::init::cli::waits`]),
/// whose idle timeout defaults to 30 minutes.
pub fn shell(root: PathBuf, cmd: Vec<OsString>, pid1_waits: bool) -> i32 {
    let env = container_env();
    // musl's getcwd hands back "(unreachable)/…" for a directory outside
    // this mount namespace (nsenter): only an absolute path is a start.
    let start_dir = std::env::current_dir().ok().filter(|p| p.is_absolute());
    let launch = match prepare_shell(&root, cmd, &env, start_dir.as_deref(), pid1_waits) {
        Ok(l) => l,
        Err(f) => {
            log::error(&f.message);
            return f.code;
        }
    };
    let f = exec_in_place(&launch);
    log::error(&f.message);
    f.code
}

/// Whether PID 1 is this same labinit binary: then the shell gets the nesting
/// marker the job has (`LABKIT_SUPERVISOR=1`).
fn pid1_is_labinit() -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata("/proc/1/exe"), std::fs::metadata("/proc/self/exe")) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Whom `labinit shell` becomes and the exports it gets: PID 1's record
/// ([`state`]) when it is for the requested user or no user was requested,
/// else the `CLUSTER_*` variables resolved read-only from the account files
/// ([`job::shell_identity`]). Says where the identity came from when that is
/// not the obvious place.
fn shell_identity(root: &Path, env: &[(OsString, OsString)]) -> Result<state::JobState, Fatal> {
    let setup_env = env_for_setup(env);
    let asked = crate::init::config::CLUSTER_VARS.iter().any(|v| env_get(env, v).is_some());
    let requested = setup::resolve_identity(root, &setup_env)?;
    let record = match state::read(&Root::new(root)) {
        Ok(r) => r,
        Err(e) => {
            log::warn(format!("PID 1's record is not used: {e}"));
            None
        }
    };
    let recorded = record.as_ref().map(|r| r.identity.as_ref());
    let (identity, source) = job::shell_identity(requested, asked, recorded);
    let euid = nix::unistd::geteuid().as_raw();
    let record_path = format!("{}/{}", state::DIR, state::RECORD);
    match (&source, &identity, recorded) {
        (ShellSource::RecordedWithoutRequest, Some(i), _) => log::info(format!(
            "no CLUSTER_* variables in this process: becoming {} (uid {}), whom PID 1 runs the job as ({record_path})",
            i.name, i.uid
        )),
        (ShellSource::Requested, Some(i), Some(Some(rec))) => log::warn(format!(
            "the CLUSTER_* variables ask for {} (uid {}), but PID 1 runs the job as {} (uid {}); becoming {} as asked, with the groups the account files give",
            i.name, i.uid, rec.name, rec.uid, i.name
        )),
        (ShellSource::Caller, None, Some(None)) if !asked => {
            log::info(format!("PID 1 runs the job without a cluster user ({record_path}): the shell runs as uid {euid}"))
        }
        (ShellSource::Caller, None, None) if !asked => log::info(format!(
            "no CLUSTER_* variables and no record of PID 1 ({record_path}): the shell runs as uid {euid}"
        )),
        _ => {}
    }
    Ok(state::JobState { identity, exports: record.map(|r| r.exports).unwrap_or_default() })
}

fn prepare_shell(
    root: &Path,
    cmd: Vec<OsString>,
    env: &[(OsString, OsString)],
    start_dir: Option<&Path>,
    pid1_waits: bool,
) -> Result<Launch, Fatal> {
    let state::JobState { mut identity, exports } = shell_identity(root, env)?;
    let euid = nix::unistd::geteuid().as_raw();
    if let Some(i) = &identity {
        if euid != 0 && euid != i.uid {
            log::warn(format!(
                "labinit shell runs as uid {euid}, not root: it cannot become {} (uid {}); starting the shell as uid {euid}",
                i.name, i.uid
            ));
            identity = None;
        }
    }
    let identity = identity.as_ref();
    let marker = pid1_is_labinit().then_some(1);
    let mut env_out = job_env(env, identity, &exports, marker);
    if marker.is_some() {
        // The idle timeout PID 1 enforces, for a Jupyter started from this
        // shell (its configuration follows LABINIT_IDLE_TIMEOUT).
        let default = if pid1_waits { DEFAULT_IDLE_TIMEOUT } else { std::time::Duration::ZERO };
        let get = |name: &str| env_get(env, name).map(|v| v.to_string_lossy().into_owned());
        if let Ok(cfg) = idle::config_from_env(&get, default) {
            idle::for_job(cfg, &mut env_out);
        }
    }
    let login = cmd.is_empty();
    let (argv, candidates) = if login {
        let shell = shell_for(identity, env);
        let base = shell.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "sh".into());
        (vec![OsString::from(format!("-{base}"))], vec![shell])
    } else {
        let c = program_candidates(&cmd[0], env_get(&env_out, "PATH"));
        (cmd, c)
    };
    let home: Option<PathBuf> = match identity {
        Some(i) => Some(i.home.clone()),
        None => env_get(env, "HOME").map(PathBuf::from),
    };
    // The login shell starts in the home; a command where kubectl exec
    // started (the container's workingDir), else the home.
    let dirs = working_dirs(start_dir, home.as_deref(), login, identity.is_some() || login);
    let creds = identity.filter(|_| euid == 0).map(|i| Credentials::new(i.uid, i.gid, &i.groups));
    Ok(Launch { argv, candidates, env: env_out, dirs, creds })
}

fn describe(c: &Command) -> String {
    let text = match c {
        Command::Argv(a) => a.iter().map(|s| s.to_string_lossy()).collect::<Vec<_>>().join(" "),
        Command::Shell(s) => format!("-c {s:?}"),
    };
    if text.chars().count() > 120 {
        format!("{}…", text.chars().take(120).collect::<String>())
    } else {
        text
    }
}

/// Resolve argv, environment, directories and credentials.
fn prepare(
    req: &Request,
    env: &[(OsString, OsString)],
    identity: Option<&Identity>,
    exports: &[(String, String)],
    start_dir: Option<&Path>,
    me: u32,
) -> Result<Launch, Fatal> {
    let env_out = job_env(env, identity, exports, Some(me));
    let argv = match &req.command {
        Command::Argv(a) if a.is_empty() => {
            return Err(Fatal::config("no command given: labinit run [--] CMD [ARGS…] or labinit run -c 'STRING'"))
        }
        Command::Argv(a) => a.clone(),
        Command::Shell(s) => shell_argv(&shell_for(identity, env), s, req.legacy),
    };
    let path = env_get(&env_out, "PATH");
    let candidates = program_candidates(&argv[0], path);
    let home: Option<PathBuf> = match identity {
        Some(i) => Some(i.home.clone()),
        None => env_get(env, "HOME").map(PathBuf::from),
    };
    let dirs = working_dirs(start_dir, home.as_deref(), req.legacy, identity.is_some());
    let creds = identity.map(|i| Credentials::new(i.uid, i.gid, &i.groups));
    Ok(Launch { argv, candidates, env: env_out, dirs, creds })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn one_string_with_blanks_is_a_shell_string() {
        let one = vec![OsString::from("/opt/lab/setup_and_run_command.sh 'cd /w && python x.py'")];
        assert!(matches!(as_command(one, None), Command::Shell(_)));
        let argv = vec![OsString::from("python3"), OsString::from("x y.py")];
        assert_eq!(as_command(argv.clone(), None), Command::Argv(argv));
        let plain = vec![OsString::from("true")];
        assert_eq!(as_command(plain.clone(), None), Command::Argv(plain));
    }

    #[test]
    fn policy_from_flags_and_env() {
        let env = os(&[("LABKIT_TIMEOUT", "4h"), ("LABKIT_GRACE", "5s")]);
        let p = policy(&Options::default(), &env).unwrap();
        assert_eq!(p.timeout, Some(std::time::Duration::from_secs(4 * 3600)));
        assert_eq!(p.grace, std::time::Duration::from_secs(5));
        let o = Options { timeout: Some("0".into()), grace: Some("1.5s".into()), ..Default::default() };
        let p = policy(&o, &env).unwrap();
        assert_eq!(p.timeout, None);
        assert_eq!(p.grace, std::time::Duration::from_millis(1500));
        assert_eq!(policy(&Options::default(), &[]).unwrap(), Policy::default());
        let bad = policy(&Options::default(), &os(&[("LABKIT_GRACE", "soon")])).unwrap_err();
        assert_eq!(bad.code, exit::CONFIG);
        assert!(bad.message.contains("LABKIT_GRACE"));
    }
}
