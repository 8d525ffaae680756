//! Which signals labinit takes for itself and where each one goes. Owns the
//! signal mask and dispositions of labinit and their reset in every child,
//! and during setup the passing on of a stop signal to the running step's
//! process group; the delivery to the job (which pids) belongs to the
//! supervisor.
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
//!
//! One owner over the whole life of PID 1, in two phases:
//!
//! 1. **Setup** ([`catch_during_setup`]): TERM, INT, HUP and QUIT get
//!    handlers that record the signal in one record ([`SetupStops`]) and wake the
//!    running step's supervision, which passes the signal on to the step's
//!    process group ([`Forwarding`]); setup stops at the next step boundary.
//! 2. **Supervision** ([`take_over`]): every supervised signal is blocked
//!    and read with [`wait`]; setup's handlers are removed only then, so a
//!    signal arriving in between stays pending instead of being dropped. The
//!    record of setup outlives the hand-over ([`caught_during_setup`]).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use nix::errno::Errno;
use nix::libc;

use crate::init::log;

/// What the supervisor does with a signal it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
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
pub(crate) fn route(sig: i32) -> Route {
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
pub(crate) fn is_fault(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGFPE | libc::SIGILL | libc::SIGSEGV | libc::SIGBUS | libc::SIGABRT | libc::SIGTRAP | libc::SIGSYS
    )
}

/// Ignored by labinit itself: the terminal stops a background process with
/// these when it touches the terminal (labinit hands it back at the end).
const TERMINAL_STOPS: [i32; 2] = [libc::SIGTTIN, libc::SIGTTOU];

/// Highest signal number of the kernel (real-time signals included).
const MAX_SIGNAL: i32 = 64;

/// Size of the kernel's signal set, the last argument of the rt_sig* calls.
const KERNEL_SET_BYTES: usize = 8;

/// Whether labinit blocks `sig` and waits for it (see the module docs). Pure.
pub(crate) fn is_supervised(sig: i32) -> bool {
    (1..=MAX_SIGNAL).contains(&sig)
        && !is_fault(sig)
        && !TERMINAL_STOPS.contains(&sig)
        && !matches!(sig, libc::SIGPIPE | libc::SIGKILL | libc::SIGSTOP)
}

/// The supervised signals as the kernel's bit mask (bit N-1 for signal N).
pub(crate) fn supervised_mask() -> u64 {
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
pub(crate) fn supervised_set() -> libc::sigset_t {
    raw_set(supervised_mask())
}

/// `rt_sigprocmask` without the C library's filtering; the errno on
/// failure. Async-signal-safe.
fn raw_sigprocmask(how: i32, set: &libc::sigset_t) -> Result<(), Errno> {
    // SAFETY: valid set pointer, kernel set size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            how,
            set as *const libc::sigset_t,
            std::ptr::null_mut::<libc::sigset_t>(),
            KERNEL_SET_BYTES,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

/// Take the signals over (the hand-over from setup to the supervisor):
/// ignore TTIN/TTOU and PIPE, block the rest, then remove setup's handlers
/// ([`release_setup`]). From here on signals are read with [`wait`]; one
/// caught during setup stays in [`caught_during_setup`]. A failed block is
/// logged with its errno (the handlers then stay: they still record).
pub(crate) fn take_over() {
    // SAFETY: process-wide signal setup with valid arguments.
    unsafe {
        for s in TERMINAL_STOPS.into_iter().chain([libc::SIGPIPE]) {
            libc::signal(s, libc::SIG_IGN);
        }
    }
    match raw_sigprocmask(libc::SIG_BLOCK, &supervised_set()) {
        Ok(()) => release_setup(),
        Err(e) => log::warn(format!(
            "cannot block the signals labinit forwards (rt_sigprocmask: {e}); signals to the container may be lost"
        )),
    }
}

/// Wait up to `timeout` for a supervised signal; `None` on timeout.
pub(crate) fn wait(timeout: std::time::Duration) -> Option<i32> {
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
pub(crate) fn take_pending_stop() -> Option<i32> {
    // SAFETY: sigset manipulation on local values.
    unsafe {
        let mut pending: libc::sigset_t = std::mem::zeroed();
        if libc::sigpending(&mut pending) != 0 {
            return None;
        }
        for s in SETUP_STOPS {
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

/// The stop signals setup catches: the ones that end a start.
const SETUP_STOPS: [i32; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

/// The stop signals caught while setup runs, before [`take_over`]: as PID 1
/// a signal without a handler is dropped by the kernel (and the legacy
/// scripts ignored them), so setup's handlers record it here. Written by a
/// signal handler: atomics and a pipe only.
pub(crate) struct SetupStops {
    /// The last stop signal (0 = none).
    last: AtomicI32,
    /// How many arrived: a step's supervision sees a new one even when the
    /// same signal arrives twice.
    count: AtomicUsize,
    /// The wake-up pipe (-1 until [`SetupStops::arm`]): a signal landing just
    /// before a step's wait would otherwise only be seen at its timeout.
    wake_read: AtomicI32,
    wake_write: AtomicI32,
}

/// The record of labinit's process, written by setup's handlers.
static SETUP: SetupStops = SetupStops::new();

/// Setup's handlers. They stay installed after setup returns, so a signal
/// arriving before the supervisor blocks signals is not lost; [`take_over`]
/// removes them once the signals are blocked.
static HANDLERS: Mutex<Vec<signal_hook::SigId>> = Mutex::new(Vec::new());

impl SetupStops {
    pub(crate) const fn new() -> SetupStops {
        SetupStops {
            last: AtomicI32::new(0),
            count: AtomicUsize::new(0),
            wake_read: AtomicI32::new(-1),
            wake_write: AtomicI32::new(-1),
        }
    }

    /// Record `sig` and wake the step's supervision. Async-signal-safe (atomics and `write`).
    pub(crate) fn note(&self, sig: i32) {
        self.last.store(sig, Ordering::SeqCst);
        self.count.fetch_add(1, Ordering::SeqCst);
        let fd = self.wake_write.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: write(2) of one byte from a static; a full pipe is fine.
            unsafe { libc::write(fd, b"!".as_ptr().cast(), 1) };
        }
    }

    /// The last stop signal received, if any.
    pub(crate) fn last(&self) -> Option<i32> {
        match self.last.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n),
        }
    }

    /// Make the wake-up pipe once (non-blocking, close-on-exec, kept for
    /// good); without it a step's wait sees a signal within a second.
    fn arm(&self) {
        if self.wake_read.load(Ordering::SeqCst) >= 0 {
            return;
        }
        let mut fds = [0; 2];
        // SAFETY: valid array for pipe2.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } == 0 {
            self.wake_read.store(fds[0], Ordering::SeqCst);
            self.wake_write.store(fds[1], Ordering::SeqCst);
        } else {
            log::warn(format!(
                "cannot make the wake-up pipe for setup steps ({}); a stop signal during a step is seen within a second",
                io::Error::last_os_error()
            ));
        }
    }

    /// Start watching for a step: the stop signals that arrive from now on
    /// are the ones [`Forwarding::forward_new`] passes on. Made before the
    /// last check for a pending signal, so none falls in between.
    pub(crate) fn forwarding(&self) -> Forwarding<'_> {
        self.arm();
        Forwarding { stops: self, seen: self.count.load(Ordering::SeqCst) }
    }
}

impl Drop for SetupStops {
    fn drop(&mut self) {
        for fd in [self.wake_read.load(Ordering::SeqCst), self.wake_write.load(Ordering::SeqCst)] {
            if fd >= 0 {
                // SAFETY: our own pipe's descriptors, closed once.
                unsafe { libc::close(fd) };
            }
        }
    }
}

/// Setup-time forwarding to a step's process group (the step's supervision
/// calls it in its loop).
pub(crate) struct Forwarding<'a> {
    stops: &'a SetupStops,
    /// The count of stop signals already passed on.
    seen: usize,
}

impl Forwarding<'_> {
    /// The stop signal that arrived since the last call (or since
    /// [`SetupStops::forwarding`]), already sent to process group `pgid` with
    /// SIGCONT ([`to_group`]); `None` when none arrived. Several arrivals in
    /// between are sent once, as the last signal.
    pub(crate) fn forward_new(&mut self, pgid: i32) -> Option<i32> {
        let count = self.stops.count.load(Ordering::SeqCst);
        if count == self.seen {
            return None;
        }
        self.seen = count;
        let sig = self.stops.last()?;
        if let Err(e) = to_group(pgid, sig) {
            log::warn(format!("cannot send {} to process group {pgid}: {e}", name(sig)));
        }
        Some(sig)
    }

    /// Sleep until `pidfd` is readable (the process changed state), a stop
    /// signal arrives, or `timeout` passes (at most a second). Without a
    /// pidfd (kernel before 5.3) in steps of at most 50 ms.
    pub(crate) fn wait(&self, pidfd: Option<&OwnedFd>, timeout: Duration) {
        let mut ms = timeout.as_millis().clamp(1, 1000) as i32;
        let wake = self.stops.wake_read.load(Ordering::SeqCst);
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
}

/// Send `sig` to process group `pgid`, then SIGCONT (a stopped process acts
/// on nothing else), as the supervisor does for the job. A group already
/// gone (ESRCH) is no error.
pub(crate) fn to_group(pgid: i32, sig: i32) -> Result<(), Errno> {
    let send = |s: i32| {
        // SAFETY: plain kill(2).
        match unsafe { libc::kill(-pgid, s) } {
            0 => Ok(()),
            _ => match Errno::last() {
                Errno::ESRCH => Ok(()),
                e => Err(e),
            },
        }
    };
    send(sig)?;
    if sig != libc::SIGKILL && sig != libc::SIGCONT {
        send(libc::SIGCONT)?;
    }
    Ok(())
}

/// Setup phase: catch TERM, INT, HUP and QUIT into the process's record
/// (replacing the handlers of an earlier setup in the same process) and
/// return it. The handlers stay until [`take_over`].
pub(crate) fn catch_during_setup() -> &'static SetupStops {
    let mut ids = Vec::new();
    for sig in SETUP_STOPS {
        // SAFETY: the action only stores to atomics and calls write(2), both
        // async-signal-safe.
        match unsafe { signal_hook::low_level::register(sig, move || SETUP.note(sig)) } {
            Ok(id) => ids.push(id),
            Err(e) => log::warn(format!(
                "cannot catch {} during setup ({e}); as PID 1 it would be dropped until the job starts",
                name(sig)
            )),
        }
    }
    let earlier = std::mem::replace(&mut *handlers(), ids);
    earlier.into_iter().for_each(|id| {
        signal_hook::low_level::unregister(id);
    });
    &SETUP
}

fn handlers() -> std::sync::MutexGuard<'static, Vec<signal_hook::SigId>> {
    HANDLERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Remove setup's handlers ([`take_over`] does, once the signals are
/// blocked). Nothing happens when there are none.
pub(crate) fn release_setup() {
    let ids = std::mem::take(&mut *handlers());
    ids.into_iter().for_each(|id| {
        signal_hook::low_level::unregister(id);
    });
}

/// The stop signal caught during setup, if any. It stays after
/// [`take_over`], for the supervisor.
pub(crate) fn caught_during_setup() -> Option<i32> {
    SETUP.last()
}

/// In the forked child before exec: default dispositions for every signal
/// and an empty mask, whatever labinit or its parent had (a job started from
/// a background shell would otherwise inherit INT and QUIT ignored). `Err`
/// with the errno when the mask cannot be emptied (the child would start
/// with signals blocked). Async-signal-safe.
pub(crate) fn reset_for_exec() -> Result<(), Errno> {
    // SAFETY: sigaction with valid arguments; no allocation.
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
    raw_sigprocmask(libc::SIG_SETMASK, &raw_set(0))
}

/// [`reset_for_exec`] for a child that has no way to report: a failure is
/// written to stderr as one line with the errno, and the child goes on.
/// Async-signal-safe.
pub(crate) fn reset_in_child() {
    if let Err(e) = reset_for_exec() {
        let parts: [&[u8]; 3] =
            [b"labinit: cannot empty the signal mask before exec (rt_sigprocmask: ", e.desc().as_bytes(), b")\n"];
        for p in parts {
            // SAFETY: write(2) of a static or borrowed buffer.
            unsafe { libc::write(2, p.as_ptr().cast(), p.len()) };
        }
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
pub(crate) fn name(sig: i32) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str().to_owned(),
        // Real-time signals: their SIGRTMIN+n names differ between C
        // libraries (glibc's SIGRTMIN is 34, musl's 35), the number does not.
        Err(_) if (32..=MAX_SIGNAL).contains(&sig) => format!("signal {sig} (real-time)"),
        Err(_) => format!("signal {sig}"),
    }
}

#[cfg(test)]
mod tests;
