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

// The setup phase and the hand-over.

use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::Instant;

/// A `sleep` in a process group of its own (the way a step runs).
fn step_group() -> Child {
    Command::new("sleep").arg("30").process_group(0).spawn().expect("spawn sleep")
}

/// How `child` ended, waiting at most 5 s: `Some(signal)` when a signal
/// killed it, `None` while it is still running.
fn killed_by(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            use std::os::unix::process::ExitStatusExt;
            return status.signal();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn end(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn forwarding_sends_a_new_stop_signal_to_the_step_group_only() {
    let stops = SetupStops::new();
    let mut fwd = stops.forwarding();
    let mut step = step_group();
    let mut bystander = step_group();
    let pgid = step.id() as i32;
    // Negative control: nothing arrived, nothing is sent.
    assert_eq!(fwd.forward_new(pgid), None);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(step.try_wait().unwrap(), None, "the step was signalled without a stop signal");
    stops.note(libc::SIGTERM);
    assert_eq!(fwd.forward_new(pgid), Some(libc::SIGTERM));
    assert_eq!(killed_by(&mut step), Some(libc::SIGTERM), "the step's group did not get SIGTERM");
    // Once per arrival; another group is never touched.
    assert_eq!(fwd.forward_new(pgid), None);
    assert_eq!(bystander.try_wait().unwrap(), None, "another process group got the signal");
    // The same signal arriving again is new again.
    stops.note(libc::SIGTERM);
    assert_eq!(fwd.forward_new(bystander.id() as i32), Some(libc::SIGTERM));
    assert_eq!(killed_by(&mut bystander), Some(libc::SIGTERM));
    assert_eq!(stops.last(), Some(libc::SIGTERM), "the record keeps the signal");
}

#[test]
fn a_signal_before_watching_is_not_forwarded_but_stays_recorded() {
    let stops = SetupStops::new();
    stops.note(libc::SIGINT);
    let mut fwd = stops.forwarding();
    let step = step_group();
    assert_eq!(fwd.forward_new(step.id() as i32), None, "an old signal was sent to a new step");
    assert_eq!(stops.last(), Some(libc::SIGINT), "run_all stops before the step on the record");
    end(step);
}

#[test]
fn a_group_already_gone_is_no_error() {
    let mut step = step_group();
    let pgid = step.id() as i32;
    step.kill().unwrap();
    step.wait().unwrap();
    assert_eq!(to_group(pgid, libc::SIGTERM), Ok(()));
    // Negative control: an invalid signal is an error with its errno.
    let live = step_group();
    assert_eq!(to_group(live.id() as i32, 1000), Err(Errno::EINVAL));
    end(live);
}

fn pidfd(child: &Child) -> OwnedFd {
    // SAFETY: plain syscall; the descriptor is owned right away.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as i32, 0) };
    assert!(fd >= 0, "pidfd_open: {}", io::Error::last_os_error());
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

#[test]
fn a_stop_signal_wakes_the_step_wait() {
    let stops = SetupStops::new();
    let fwd = stops.forwarding();
    let step = step_group();
    let fd = pidfd(&step);
    // Negative control: nothing wakes it before the timeout.
    let t = Instant::now();
    fwd.wait(Some(&fd), Duration::from_millis(300));
    assert!(t.elapsed() >= Duration::from_millis(290), "woke without a reason after {:?}", t.elapsed());
    stops.note(libc::SIGHUP);
    let t = Instant::now();
    fwd.wait(Some(&fd), Duration::from_secs(1));
    assert!(t.elapsed() < Duration::from_millis(500), "a stop signal did not wake the wait ({:?})", t.elapsed());
    // The wake-up was drained: the next wait sleeps again.
    let t = Instant::now();
    fwd.wait(Some(&fd), Duration::from_millis(200));
    assert!(t.elapsed() >= Duration::from_millis(190), "the wake-up pipe was not drained");
    end(step);
}

/// The signal mask of the process `cmd` starts (`SigBlk` of its status).
fn blocked_in_child(reset: bool) -> u64 {
    let mut cmd = Command::new("sed");
    cmd.args(["-n", "s/^SigBlk:[[:space:]]*//p", "/proc/self/status"]);
    // SAFETY: pthread_sigmask and the reset are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if reset {
                reset_for_exec()?;
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    u64::from_str_radix(String::from_utf8_lossy(&out.stdout).trim(), 16).unwrap()
}

#[test]
fn the_child_starts_with_an_empty_mask() {
    assert_eq!(blocked_in_child(true), 0);
    // Negative control: without the reset, the blocked TERM is inherited.
    assert_eq!(blocked_in_child(false), 1 << (libc::SIGTERM - 1));
}

/// The whole life in one process: setup's handler records a TERM and the
/// running step's group gets it; after the hand-over the supervisor still
/// sees it, and a TERM arriving after the hand-over waits blocked for it
/// instead of being dropped. The only test that touches the process's own
/// record and handlers (raise(3) is directed at this thread, whose mask
/// [`take_over`] sets).
#[test]
fn a_signal_during_setup_reaches_the_step_and_the_supervisor() {
    assert_eq!(caught_during_setup(), None, "negative control: nothing caught yet");
    let stops = catch_during_setup();
    let mut fwd = stops.forwarding();
    let mut step = step_group();
    let pgid = step.id() as i32;
    assert_eq!(fwd.forward_new(pgid), None);
    // SAFETY: raise(3) to this thread; setup's handler records it.
    assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
    assert_eq!(caught_during_setup(), Some(libc::SIGTERM));
    assert_eq!(fwd.forward_new(pgid), Some(libc::SIGTERM));
    assert_eq!(killed_by(&mut step), Some(libc::SIGTERM));
    take_over();
    assert!(handlers().is_empty(), "setup's handlers outlived the hand-over");
    assert_eq!(caught_during_setup(), Some(libc::SIGTERM), "the supervisor lost setup's signal");
    assert_eq!(take_pending_stop(), None, "negative control: nothing pending after the hand-over");
    // SAFETY: as above; now blocked in this thread, so it stays pending.
    assert_eq!(unsafe { libc::raise(libc::SIGINT) }, 0);
    assert_eq!(take_pending_stop(), Some(libc::SIGINT), "a signal after the hand-over was dropped");
    // Back to how the test harness had it.
    // SAFETY: this thread's mask and the process's dispositions for TTIN/TTOU.
    unsafe {
        let set = supervised_set();
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGTTIN, libc::SIG_DFL);
        libc::signal(libc::SIGTTOU, libc::SIG_DFL);
    }
}
