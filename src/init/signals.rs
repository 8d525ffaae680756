//! Which signals labinit takes for itself and where each one goes. Owns the
//! signal mask and dispositions of labinit and their reset in the job; the
//! delivery itself (which pids) belongs to the supervisor.
//!
//! labinit blocks every signal it can and collects them with `sigtimedwait`:
//! as PID 1 a signal without a handler is dropped by the kernel, but a blocked
//! one stays pending, so nothing is lost between two waits. Like tini, every
//! catchable signal is forwarded, the real-time ones included: the mask is
//! built bit by bit and set with the raw system calls, because the C library
//! leaves out the signals it reserves (32–33 in glibc, 32–34 in musl — so
//! glibc's SIGRTMIN, 34, would be dropped). Left out: the synchronous fault
//! signals (blocking them would hide labinit's own crashes), TTIN/TTOU (a
//! terminal's reaction to labinit itself; ignored, as tini does), and PIPE
//! (labinit's own write to a closed stderr; ignored). KILL and STOP cannot be
//! caught. CHLD is labinit's to reap.

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
        // TSTP as a terminal's ^Z would: to the foreground (main) group.
        libc::SIGWINCH | libc::SIGUSR1 | libc::SIGUSR2 | libc::SIGTSTP => Route::MainGroup,
        libc::SIGCHLD => Route::Reap,
        // TTIN/TTOU are the terminal's reaction to labinit itself; KILL/STOP
        // cannot be caught; faults are labinit's own.
        libc::SIGTTIN | libc::SIGTTOU | libc::SIGKILL | libc::SIGSTOP => Route::Drop,
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

/// Ignored by labinit itself: the terminal stops a background process with
/// these when it touches the terminal (labinit hands it back at the end).
pub const STOPS: [i32; 2] = [libc::SIGTTIN, libc::SIGTTOU];

/// Highest signal number of the kernel (real-time signals included).
const MAX_SIGNAL: i32 = 64;

/// Size of the kernel's signal set, the last argument of the rt_sig* calls.
const KERNEL_SET_BYTES: usize = 8;

/// Whether labinit blocks `sig` and waits for it (see the module docs). Pure.
pub fn is_supervised(sig: i32) -> bool {
    (1..=MAX_SIGNAL).contains(&sig)
        && !is_fault(sig)
        && !STOPS.contains(&sig)
        && !matches!(sig, libc::SIGPIPE | libc::SIGKILL | libc::SIGSTOP)
}

/// The supervised signals as the kernel's bit mask (bit N-1 for signal N).
pub fn supervised_mask() -> u64 {
    (1..=MAX_SIGNAL).filter(|s| is_supervised(*s)).fold(0, |m, s| m | 1u64 << (s - 1))
}

/// `mask` as a C library signal set, written bit by bit: `sigaddset` would
/// refuse the library's reserved signals. The C libraries of Linux keep
/// signal N at bit N-1 of the first word.
fn raw_set(mask: u64) -> libc::sigset_t {
    // SAFETY: a zeroed sigset_t is valid; it is at least 8 bytes and aligned
    // for u64 in glibc and musl.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        *(&mut set as *mut libc::sigset_t).cast::<u64>() = mask;
        set
    }
}

/// The set labinit blocks and waits on.
pub fn supervised_set() -> libc::sigset_t {
    raw_set(supervised_mask())
}

/// `rt_sigprocmask` without the C library's filtering. Async-signal-safe.
fn raw_sigprocmask(how: i32, set: &libc::sigset_t) {
    // SAFETY: valid set pointer, kernel set size.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            how,
            set as *const libc::sigset_t,
            std::ptr::null_mut::<libc::sigset_t>(),
            KERNEL_SET_BYTES,
        );
    }
}

/// Take the signals over: ignore TTIN/TTOU and PIPE, block the rest.
/// From here on they are read with [`wait`].
pub fn take_over() {
    // SAFETY: process-wide signal setup with valid arguments.
    unsafe {
        for s in STOPS.into_iter().chain([libc::SIGPIPE]) {
            libc::signal(s, libc::SIG_IGN);
        }
    }
    raw_sigprocmask(libc::SIG_BLOCK, &supervised_set());
}

/// Wait up to `timeout` for a supervised signal; `None` on timeout.
pub fn wait(timeout: std::time::Duration) -> Option<i32> {
    let set = supervised_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as _,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: valid set and timespec; no siginfo wanted. The raw call, as the
    // C library's may leave out its reserved signals.
    let sig = unsafe {
        libc::syscall(
            libc::SYS_rt_sigtimedwait,
            &set as *const libc::sigset_t,
            std::ptr::null_mut::<libc::siginfo_t>(),
            &ts as *const libc::timespec,
            KERNEL_SET_BYTES,
        )
    };
    (sig > 0).then_some(sig as i32)
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
        for s in 1..=MAX_SIGNAL {
            if s != libc::SIGKILL && s != libc::SIGSTOP && libc::sigaction(s, &dfl, std::ptr::null_mut()) != 0 {
                reset_reserved(s);
            }
        }
    }
    raw_sigprocmask(libc::SIG_SETMASK, &raw_set(0));
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
        // Real-time signals: their SIGRTMIN+n names differ between C
        // libraries (glibc's SIGRTMIN is 34, musl's 35), the number does not.
        Err(_) if (32..=MAX_SIGNAL).contains(&sig) => format!("signal {sig} (real-time)"),
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
        for s in [libc::SIGTTIN, libc::SIGTTOU, libc::SIGSEGV, libc::SIGABRT] {
            assert_eq!(route(s), Route::Drop);
        }
        assert_eq!(route(libc::SIGTSTP), Route::MainGroup);
        assert_eq!(route(libc::SIGALRM), Route::MainChild);
        for s in 32..=64 {
            assert_eq!(route(s), Route::MainChild, "signal {s}");
        }
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
        // The C library's reserved signals are in the mask too (34 is
        // glibc's SIGRTMIN and reserved by musl).
        let mask = supervised_mask();
        for s in [32, 33, 34, 35, 64, libc::SIGTSTP, libc::SIGCHLD, libc::SIGCONT] {
            assert_ne!(mask & 1 << (s - 1), 0, "signal {s} is not supervised");
        }
        // Negative control: what stays out.
        for s in [libc::SIGKILL, libc::SIGSTOP, libc::SIGSEGV, libc::SIGTTIN, libc::SIGTTOU, libc::SIGPIPE] {
            assert_eq!(mask & 1 << (s - 1), 0, "signal {s} must not be supervised");
        }
    }

    #[test]
    fn names() {
        assert_eq!(name(libc::SIGTERM), "SIGTERM");
        assert_eq!(name(34), "signal 34 (real-time)");
        assert_eq!(name(64), "signal 64 (real-time)");
    }
}
