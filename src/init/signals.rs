//! Which signals labinit takes for itself and where each one goes. Owns the
//! signal mask and dispositions of labinit and their reset in the job; the
//! delivery itself (which pids) belongs to the supervisor.
//!
//! labinit blocks every signal it can and collects them with `sigtimedwait`:
//! as PID 1 a signal without a handler is dropped by the kernel, but a blocked
//! one stays pending, so nothing is lost between two waits. The synchronous
//! fault signals stay unblocked (blocking them would hide labinit's own
//! crashes), and TSTP/TTIN/TTOU are ignored so that neither a terminal nor an
//! outside sender can stop PID 1 (tini, catatonit).

use nix::libc;

/// What the supervisor does with a signal it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Send to every process of the job, then start the shutdown (TERM, INT).
    StopJob,
    /// Send to every process of the job (HUP, QUIT).
    WholeJob,
    /// Send to the main child's process group (WINCH, USR1, USR2).
    MainGroup,
    /// Send to the main child only (everything else a user may send).
    MainChild,
    /// A child changed state: reap.
    Reap,
    /// Never forwarded.
    Drop,
}

/// Where a received signal goes. Pure.
pub fn route(sig: i32) -> Route {
    match sig {
        libc::SIGTERM | libc::SIGINT => Route::StopJob,
        libc::SIGHUP | libc::SIGQUIT => Route::WholeJob,
        libc::SIGWINCH | libc::SIGUSR1 | libc::SIGUSR2 => Route::MainGroup,
        libc::SIGCHLD => Route::Reap,
        // Job-control stops are the terminal's business; KILL/STOP cannot be
        // caught; faults are labinit's own.
        libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU | libc::SIGKILL | libc::SIGSTOP => Route::Drop,
        // labinit's own broken stderr, never the job's business.
        libc::SIGPIPE => Route::Drop,
        s if is_fault(s) => Route::Drop,
        _ => Route::MainChild,
    }
}

/// Synchronous fault signals: left unblocked in labinit.
pub fn is_fault(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGFPE | libc::SIGILL | libc::SIGSEGV | libc::SIGBUS | libc::SIGABRT | libc::SIGTRAP | libc::SIGSYS
    )
}

/// Ignored by labinit itself so it can never be stopped.
pub const STOPS: [i32; 3] = [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];

/// Highest signal number (real-time signals included).
fn max_signal() -> i32 {
    libc::SIGRTMAX()
}

/// The set labinit blocks and waits on.
pub fn supervised_set() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local value.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for s in 1..=max_signal() {
            // SIGPIPE stays ignored (Rust's default): blocked, labinit's own
            // write to a closed stderr would queue one for the job.
            if is_fault(s) || STOPS.contains(&s) || s == libc::SIGPIPE {
                libc::sigdelset(&mut set, s);
            }
        }
        set
    }
}

/// Take the signals over: ignore the stop signals, block the rest.
/// From here on they are read with [`wait`].
pub fn take_over() {
    let set = supervised_set();
    // SAFETY: process-wide signal setup with valid arguments.
    unsafe {
        for s in STOPS.into_iter().chain([libc::SIGPIPE]) {
            libc::signal(s, libc::SIG_IGN);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Wait up to `timeout` for a supervised signal; `None` on timeout.
pub fn wait(timeout: std::time::Duration) -> Option<i32> {
    let set = supervised_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as _,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: valid set and timespec; no siginfo wanted.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// A terminating signal already pending (received after setup, before the
/// job was started), consumed.
pub fn take_pending_stop() -> Option<i32> {
    // SAFETY: sigset manipulation on local values.
    unsafe {
        let mut pending: libc::sigset_t = std::mem::zeroed();
        if libc::sigpending(&mut pending) != 0 {
            return None;
        }
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
            if libc::sigismember(&pending, s) == 1 {
                let mut one: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut one);
                libc::sigaddset(&mut one, s);
                let ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
                libc::sigtimedwait(&one, std::ptr::null_mut(), &ts);
                return Some(s);
            }
        }
    }
    None
}

/// In the forked child before exec: default dispositions for every signal
/// and an empty mask, whatever labinit or its parent had (a job started from
/// a background shell would otherwise inherit INT and QUIT ignored).
/// Async-signal-safe.
pub fn reset_in_child() {
    // SAFETY: sigaction/sigprocmask with valid arguments; no allocation.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut dfl.sa_mask);
        for s in 1..=max_signal() {
            if s != libc::SIGKILL && s != libc::SIGSTOP && libc::sigaction(s, &dfl, std::ptr::null_mut()) != 0 {
                reset_reserved(s);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// The C library refuses to touch the signals it reserves for itself (32 and
/// 33 with glibc), yet an ignored one is inherited through exec: reset it
/// with the raw system call. Async-signal-safe.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
unsafe fn reset_reserved(sig: i32) {
    // The kernel's struct sigaction on these architectures.
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let act = KernelSigaction { handler: libc::SIG_DFL, flags: 0, restorer: 0, mask: 0 };
    libc::syscall(libc::SYS_rt_sigaction, sig, &act as *const KernelSigaction, std::ptr::null_mut::<u8>(), 8usize);
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn reset_reserved(_sig: i32) {}

/// `SIGTERM`-style name for log lines.
pub fn name(sig: i32) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str().to_owned(),
        Err(_) if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&sig) => {
            format!("SIGRTMIN+{}", sig - libc::SIGRTMIN())
        }
        Err(_) => format!("signal {sig}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(libc::SIGTERM), Route::StopJob);
        assert_eq!(route(libc::SIGINT), Route::StopJob);
        assert_eq!(route(libc::SIGHUP), Route::WholeJob);
        assert_eq!(route(libc::SIGQUIT), Route::WholeJob);
        for s in [libc::SIGWINCH, libc::SIGUSR1, libc::SIGUSR2] {
            assert_eq!(route(s), Route::MainGroup);
        }
        assert_eq!(route(libc::SIGCHLD), Route::Reap);
        for s in [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU, libc::SIGSEGV, libc::SIGABRT] {
            assert_eq!(route(s), Route::Drop);
        }
        assert_eq!(route(libc::SIGALRM), Route::MainChild);
        assert_eq!(route(libc::SIGRTMIN() + 3), Route::MainChild);
    }

    #[test]
    fn supervised_set_leaves_faults_and_stops_out() {
        let set = supervised_set();
        // SAFETY: read-only membership tests.
        unsafe {
            assert_eq!(libc::sigismember(&set, libc::SIGTERM), 1);
            assert_eq!(libc::sigismember(&set, libc::SIGCHLD), 1);
            assert_eq!(libc::sigismember(&set, libc::SIGRTMIN()), 1);
            assert_eq!(libc::sigismember(&set, libc::SIGSEGV), 0);
            assert_eq!(libc::sigismember(&set, libc::SIGTTOU), 0);
            assert_eq!(libc::sigismember(&set, libc::SIGPIPE), 0);
        }
    }

    #[test]
    fn names() {
        assert_eq!(name(libc::SIGTERM), "SIGTERM");
        assert_eq!(name(libc::SIGRTMIN() + 2), "SIGRTMIN+2");
    }
}
