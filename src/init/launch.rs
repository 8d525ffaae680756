//! Starting the job: fork, then in the child its own process group and the
//! terminal, [`drop_privileges`], the working directory, default signals and
//! exec ([`spawn`]); or the same steps in this very process for `labinit
//! shell` and a nested labinit ([`exec_in_place`]). What to start (argv,
//! environment, directories, credentials) is decided before, in
//! [`crate::init::job`]; this module only acts.
//!
//! The child is async-signal-safe: everything it touches is allocated
//! before the fork ([`Raw`]) and it allocates nothing. It reports why it
//! could not start as a [`StartFailure`], written into a page shared with
//! the parent; the close-on-exec pipe only says whether exec happened.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::libc;

use crate::init::env::Env;
use crate::init::exit::{self, Fatal};
use crate::init::job::{Caller, Children, Command, Launch};
use crate::init::log;
use crate::init::privileges::{Credentials, DropError, Stage};
use crate::init::signals;

/// Why the job did not start, as the child (or [`exec_in_place`]) saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartFailure {
    /// The privilege drop failed at `stage` (errno 0: a check, not a call).
    Privileges { stage: Stage, errno: i32 },
    /// Every candidate of the program failed to exec; `errno` is the one
    /// `execvp` would report.
    Exec { errno: i32 },
}

impl StartFailure {
    /// The exit code the shell gives for it: 125 (labinit's own failure),
    /// 127 (not found) or 126 (not executable).
    fn code(self) -> i32 {
        match self {
            StartFailure::Privileges { .. } => exit::CONFIG,
            StartFailure::Exec { errno } if errno == libc::ENOENT => exit::NOT_FOUND,
            StartFailure::Exec { .. } => exit::NOT_EXECUTABLE,
        }
    }

    /// The one line for the log and the exit code ([`Fatal`]).
    fn to_fatal(self, launch: &Launch) -> Fatal {
        let program = launch.argv.first().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
        match self {
            StartFailure::Privileges { stage, errno } => {
                let detail =
                    if errno != 0 { format!(": {}", std::io::Error::from_raw_os_error(errno)) } else { String::new() };
                Fatal::config(format!("cannot drop privileges: {}{detail}; the job was not started", stage.describe()))
            }
            StartFailure::Exec { errno } => {
                let err = std::io::Error::from_raw_os_error(errno);
                // Too big an environment or argument list is not the command's
                // fault (exit 126 would say it is): name the sizes and the
                // largest variable.
                if errno == libc::E2BIG {
                    Fatal::config(too_big(launch, &err))
                } else if errno == libc::ENOENT || errno == libc::ENOTDIR {
                    Fatal::with_code(exit::NOT_FOUND, format!("{program}: command not found"))
                } else {
                    Fatal::with_code(exit::NOT_EXECUTABLE, format!("{program}: cannot execute: {err}"))
                }
            }
        }
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

fn cstring(b: &[u8], what: &str) -> Result<CString, Fatal> {
    CString::new(b).map_err(|_| Fatal::config(format!("{what} contains a NUL byte")))
}

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

/// One page shared between the parent and the forked child, holding the
/// child's [`StartFailure`] (if any).
struct Report(*mut Option<StartFailure>);

impl Report {
    fn new() -> Result<Report, Fatal> {
        let len = std::mem::size_of::<Option<StartFailure>>();
        // SAFETY: a fresh anonymous mapping; checked for failure below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Fatal::config(format!(
                "cannot map memory for the job's start report: {}",
                std::io::Error::last_os_error()
            )));
        }
        let p = p.cast::<Option<StartFailure>>();
        // SAFETY: the mapping is large and aligned enough (page-aligned).
        unsafe { p.write(None) };
        Ok(Report(p))
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no longer used.
        unsafe { libc::munmap(self.0.cast(), std::mem::size_of::<Option<StartFailure>>()) };
    }
}

/// Fork, set the child up and exec the job. Returns the child's pid once
/// exec succeeded; an exec or privilege failure is returned as the exit code
/// the shell would give (127 not found, 126 not executable, 125 drop failed).
/// `meanwhile` runs in the parent while the child sets itself up and execs
/// (work the job does not wait for, off the path to its first instruction),
/// and is done before this returns.
pub(crate) fn spawn(launch: &Launch, meanwhile: impl FnOnce()) -> Result<i32, Fatal> {
    let mut raw = Raw::new(launch)?;
    let report = Report::new()?;
    let tty = has_terminal();

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
        // SAFETY: see above; the report page is mapped in both processes.
        unsafe {
            let f = enter(true, tty, launch.creds.as_ref(), &mut raw);
            report.0.write(Some(f));
            libc::write(wr, b"!".as_ptr().cast(), 1);
            libc::_exit(f.code())
        }
    }
    // SAFETY: plain syscalls on our own fds and child.
    unsafe {
        libc::close(wr);
        // Also here, so the group exists before anything signals it.
        libc::setpgid(pid, pid);
    }
    meanwhile();
    let mut byte = 0u8;
    let n = loop {
        // SAFETY: reading into a local byte.
        let n = unsafe { libc::read(rd, (&raw mut byte).cast(), 1) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        break n;
    };
    // SAFETY: closing our own fd.
    unsafe { libc::close(rd) };
    if n <= 0 {
        // The pipe closed on exec: the job runs.
        return Ok(pid);
    }
    let mut status = 0;
    // SAFETY: reaping our own child, which is about to _exit.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    // SAFETY: the child wrote the report before the byte we read.
    let failure = unsafe { report.0.read_volatile() }.unwrap_or(StartFailure::Exec { errno: libc::ENOEXEC });
    Err(failure.to_fatal(launch))
}

/// Become the job in this very process (`labinit shell`, a nested labinit):
/// the same drop, directory and exec as the forked child of [`spawn`], in
/// the current process group. Returns only on failure.
pub(crate) fn exec_in_place(launch: &Launch) -> Fatal {
    let mut raw = match Raw::new(launch) {
        Ok(r) => r,
        Err(f) => return f,
    };
    // SAFETY: single-threaded here; the calls are the child's.
    let f = unsafe { enter(false, false, launch.creds.as_ref(), &mut raw) };
    f.to_fatal(launch)
}

/// Phase 2 of [`crate::init::run`] under an outer labinit: no setup, no
/// second supervisor; become `command` with the job's environment (no user
/// of its own: the outer labinit dropped privileges already), in the
/// directory it was started in, or the home for the legacy names (which
/// also source `~/.bashrc`). Returns only on failure.
pub(crate) fn exec_nested(outer: i32, env: &Env, command: &Command, legacy: bool) -> Fatal {
    let children = Children::new(env.vars(), None, &[], caller());
    let mut launch = match children.launch(command, children.job_env(None), None, legacy, &is_executable) {
        Ok(l) => l,
        Err(f) => return f,
    };
    launch.dirs = if legacy { env.get("HOME").map(PathBuf::from).into_iter().collect() } else { Vec::new() };
    log::info(format!("running under labinit (pid {outer}): no second setup or supervisor"));
    exec_in_place(&launch)
}

/// Whether standard input is a terminal (then the job gets it, and the
/// supervisor takes it back at the end).
pub(crate) fn has_terminal() -> bool {
    // SAFETY: isatty has no preconditions.
    unsafe { libc::isatty(0) == 1 }
}

/// labinit's own ids: what a child runs as when there is no user.
pub(crate) fn caller() -> Caller {
    Caller { uid: nix::unistd::geteuid().as_raw(), gid: nix::unistd::getegid().as_raw() }
}

/// Whether `p` is a file with an execute bit (for the choice of a shell).
pub(crate) fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Become the job's user for good: supplementary groups, gid, uid, then
/// checks that they all changed and that root cannot be regained
/// ([`Credentials::apply`]). Async-signal-safe.
fn drop_privileges(creds: &Credentials, scratch: &mut [libc::gid_t]) -> Result<(), StartFailure> {
    creds.apply(scratch).map_err(|DropError { stage, errno }| StartFailure::Privileges { stage, errno })
}

/// The process between fork and exec (or `labinit shell` itself): own
/// process group and terminal when asked, [`drop_privileges`], working
/// directory, default signals, exec. Returns only on failure.
/// Async-signal-safe: it allocates nothing.
unsafe fn enter(own_group: bool, tty: bool, creds: Option<&Credentials>, raw: &mut Raw) -> StartFailure {
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
        if let Err(f) = drop_privileges(c, &mut raw.scratch) {
            return f;
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
    StartFailure::Exec { errno }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn launch(argv: &[&str]) -> Launch {
        Launch {
            argv: argv.iter().map(OsString::from).collect(),
            candidates: Vec::new(),
            env: vec![("PATH".into(), "/bin".into()), ("BIG".into(), "x".repeat(100).into())],
            dirs: Vec::new(),
            creds: None,
        }
    }

    #[test]
    fn start_failures_give_the_shells_codes_and_one_line() {
        let l = launch(&["train.py"]);
        let not_found = StartFailure::Exec { errno: libc::ENOENT };
        assert_eq!(not_found.code(), exit::NOT_FOUND);
        assert_eq!(not_found.to_fatal(&l).message, "train.py: command not found");
        let denied = StartFailure::Exec { errno: libc::EACCES };
        assert_eq!(denied.code(), exit::NOT_EXECUTABLE);
        let f = denied.to_fatal(&l);
        assert_eq!(f.code, exit::NOT_EXECUTABLE);
        assert!(f.message.starts_with("train.py: cannot execute: Permission denied"), "{}", f.message);
        let big = StartFailure::Exec { errno: libc::E2BIG }.to_fatal(&l);
        assert_eq!(big.code, exit::CONFIG, "not the command's fault");
        assert!(big.message.contains("the largest variable is BIG (104 bytes)"), "{}", big.message);
        let drop = StartFailure::Privileges { stage: Stage::SetUid, errno: libc::EPERM };
        assert_eq!(drop.code(), exit::CONFIG);
        let f = drop.to_fatal(&l);
        assert_eq!(f.code, exit::CONFIG);
        assert!(
            f.message.starts_with("cannot drop privileges: setresuid failed: Operation not permitted"),
            "{}",
            f.message
        );
        let check = StartFailure::Privileges { stage: Stage::VerifyUid, errno: 0 }.to_fatal(&l);
        assert!(check.message.ends_with("did not all change; the job was not started"), "{}", check.message);
    }

    #[test]
    fn a_program_that_is_not_there_is_reported_by_the_child() {
        let mut l = launch(&["/nonexistent/labkit-launch-test"]);
        l.candidates = vec!["/nonexistent/labkit-launch-test".into()];
        let mut meanwhile = 0;
        let f = spawn(&l, || meanwhile += 1).unwrap_err();
        assert_eq!(
            (f.code, f.message.as_str()),
            (exit::NOT_FOUND, "/nonexistent/labkit-launch-test: command not found")
        );
        // Control: a program that exists starts (and is reaped here).
        l.argv = vec!["/bin/true".into()];
        l.candidates = vec!["/bin/true".into()];
        let pid = spawn(&l, || meanwhile += 1).expect("true starts");
        // The parent's work ran once per fork, done before spawn returned.
        assert_eq!(meanwhile, 2);
        let mut status = 0;
        // SAFETY: our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    }

    #[test]
    fn a_nul_byte_is_refused_before_the_fork() {
        let l = launch(&["a\0b"]);
        let f = spawn(&l, || ()).unwrap_err();
        assert_eq!(f.code, exit::CONFIG);
        assert!(f.message.contains("NUL"), "{}", f.message);
    }
}
