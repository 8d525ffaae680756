//! Signals reach the whole job: TERM, INT, HUP and QUIT sent to labinit reach
//! every process of the job, including processes in other process groups
//! (`timeout` inside the command string), other sessions and orphans; WINCH,
//! USR1 and USR2 reach the main child's group; a signal during setup aborts
//! with 128+N. Each scenario runs with labinit as PID 1 and as a subreaper
//! under another PID 1, and as a negative control under `bash -c` as PID 1
//! (the legacy), where the same check must fail.

mod common;

use common::ns::{python3, Mode, Opts, Run, MODES};
use nix::libc;

/// Run `job` (a command string), wait for `names` to be ready, send `sig`,
/// wait for the end; which names logged `sig`, and the run.
fn deliver(mode: Mode, job: &str, names: &[&str], sig: i32, sig_name: &str) -> (Vec<bool>, Run) {
    let mut run = Run::start(mode, &["run", "-c", job], job, &Opts::default());
    run.ready(names);
    run.signal(sig);
    run.wait();
    let got = names.iter().map(|n| run.read(&format!("{n}.log")).lines().any(|l| l == sig_name)).collect();
    (got, run)
}

/// The scenario passes as PID 1 and as a subreaper, and fails in the control.
fn reaches_all(job: &str, names: &[&str], sig: i32, sig_name: &str) {
    for mode in MODES {
        let (got, run) = deliver(mode, job, names, sig, sig_name);
        assert!(
            got.iter().all(|g| *g),
            "{mode:?}: {sig_name} did not reach {names:?} ({got:?}) in {job:?}; stderr:\n{}",
            run.stderr()
        );
    }
    let (got, _run) = deliver(Mode::Control, job, names, sig, sig_name);
    assert!(
        !got.iter().all(|g| *g),
        "control: {sig_name} reached {names:?} under bash as PID 1 too; the test proves nothing"
    );
}

#[test]
fn term_reaches_cd_and_program() {
    reaches_all("cd {D}/home && {S} a {D}; echo after", &["a"], libc::SIGTERM, "SIGTERM");
}

#[test]
fn term_reaches_timeout_in_its_own_process_group() {
    reaches_all("timeout 4h {S} a {D}; echo after", &["a"], libc::SIGTERM, "SIGTERM");
}

#[test]
fn term_reaches_background_jobs_and_wait() {
    reaches_all("{S} a {D} & {S} b {D} & wait", &["a", "b"], libc::SIGTERM, "SIGTERM");
}

#[test]
fn term_reaches_both_ends_of_a_pipe() {
    reaches_all("{S} a {D} | {S} b {D}; echo after", &["a", "b"], libc::SIGTERM, "SIGTERM");
}

#[test]
fn term_reaches_orphans_in_their_own_session() {
    // a: orphaned by the inner sh and in a session of its own; b: the main job.
    reaches_all("sh -c 'setsid {S} a {D} &'; {S} b {D}; echo after", &["a", "b"], libc::SIGTERM, "SIGTERM");
}

#[test]
fn int_reaches_timeout_in_its_own_process_group() {
    reaches_all("timeout 4h {S} a {D}; echo after", &["a"], libc::SIGINT, "SIGINT");
}

#[test]
fn term_reaches_python_job() {
    let Some(py) = python3() else {
        eprintln!("skipped: no python3");
        return;
    };
    let script = r#"
import os, signal, sys, time
d = sys.argv[1]
def term(sig, frame):
    open(os.path.join(d, "py.log"), "a").write("SIGTERM\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
open(os.path.join(d, "py.ready"), "w").write(str(os.getpid()))
time.sleep(float(os.environ.get("SIGPRINT_LIFETIME_MS", "60000")) / 1000)
"#;
    let job = format!("cd {{D}}/home && {py} x.py {{D}}; echo after");
    for mode in MODES.into_iter().chain([Mode::Control]) {
        let mut run = Run::start(mode, &["run", "-c", &job], &job, &Opts::default());
        std::fs::write(run.path("home/x.py"), script).unwrap();
        run.ready(&["py"]);
        run.signal(libc::SIGTERM);
        run.wait();
        let got = run.read("py.log").contains("SIGTERM");
        assert_eq!(got, mode != Mode::Control, "{mode:?}; stderr:\n{}", run.stderr());
    }
}

/// HUP and QUIT reach every process (here: one in timeout's group and the
/// main process) without starting the shutdown. The main process is the
/// printer itself (`exec`): a shell without a trap would die of HUP, and the
/// shutdown would follow.
#[test]
fn hup_and_quit_reach_the_whole_job_without_stopping_it() {
    let job = "timeout 4h {S} a {D} & exec {S} b {D}";
    let control = "timeout 4h {S} a {D} & {S} b {D}; wait";
    for mode in MODES {
        let mut run = Run::start(mode, &["run", "-c", job], job, &Opts::default());
        run.ready(&["a", "b"]);
        for (sig, name) in [(libc::SIGHUP, "SIGHUP"), (libc::SIGQUIT, "SIGQUIT")] {
            run.signal(sig);
            for n in ["a", "b"] {
                assert!(run.job_logged(n, name), "{mode:?}: {name} did not reach {n}; stderr:\n{}", run.stderr());
            }
        }
        assert!(!run.exists("a.done") && !run.exists("b.done"), "{mode:?}: HUP/QUIT stopped the job");
        run.signal(libc::SIGTERM);
        run.wait();
        assert!(
            run.exists("a.done") && run.exists("b.done"),
            "{mode:?}: TERM after HUP/QUIT; stderr:\n{}",
            run.stderr()
        );
    }
    let mut run = Run::start(Mode::Control, &[], control, &Opts::default());
    run.ready(&["a", "b"]);
    run.signal(libc::SIGHUP);
    run.wait();
    assert!(!run.read("a.log").contains("SIGHUP"), "control: HUP reached the job under bash as PID 1");
}

/// USR1, USR2 and WINCH go to the main child's process group: the process in
/// that group gets them, the one in timeout's own group does not.
#[test]
fn usr1_usr2_winch_reach_the_main_group_only() {
    let job = "timeout 4h {S} b {D} & exec {S} a {D}";
    let control = "timeout 4h {S} b {D} & {S} a {D}; wait";
    for mode in MODES {
        let mut run = Run::start(mode, &["run", "-c", job], job, &Opts::default());
        run.ready(&["a", "b"]);
        for (sig, name) in [(libc::SIGUSR1, "SIGUSR1"), (libc::SIGUSR2, "SIGUSR2"), (libc::SIGWINCH, "SIGWINCH")] {
            run.signal(sig);
            assert!(
                run.job_logged("a", name),
                "{mode:?}: {name} did not reach the main group; stderr:\n{}",
                run.stderr()
            );
        }
        run.signal(libc::SIGTERM);
        run.wait();
        let b = run.read("b.log");
        assert!(!b.contains("SIGUSR1") && !b.contains("SIGWINCH"), "{mode:?}: group signal left the main group: {b}");
    }
    let mut run = Run::start(Mode::Control, &[], control, &Opts::default());
    run.ready(&["a", "b"]);
    run.signal(libc::SIGUSR1);
    run.wait();
    assert!(!run.read("a.log").contains("SIGUSR1"), "control: USR1 reached the job under bash as PID 1");
}

/// A signal while a setup step runs aborts the start with 128+N; the job
/// never starts. Control: without the signal the same setup goes on to start
/// the job.
#[test]
fn signal_during_setup_aborts_with_128_plus_n() {
    let opts = Opts {
        files: vec![(
            "root/steps/10_wait.sh".into(),
            "#!/bin/sh\ntouch {D}/step.ready\nwhile [ ! -e {D}/go ]; do sleep 0.02; done\n".into(),
        )],
        ..Opts::default()
    };
    for mode in MODES {
        let mut run = Run::start(mode, &["run", "--", "{S}", "a", "{D}"], "", &opts);
        run.ready(&["step"]);
        run.signal(libc::SIGTERM);
        assert_eq!(run.wait(), 143, "{mode:?}; stderr:\n{}", run.stderr());
        assert!(!run.exists("a.ready"), "{mode:?}: the job started after a signal during setup");
        assert!(run.stderr().contains("SIGTERM") || run.stderr().contains("signal 15"), "{}", run.stderr());
    }
    let mut run = Run::start(Mode::Pid1, &["run", "--", "{S}", "a", "{D}"], "", &opts);
    run.ready(&["step"]);
    std::fs::write(run.path("go"), "").unwrap();
    run.ready(&["a"]);
    run.signal(libc::SIGTERM);
    assert_eq!(run.wait(), 0, "control; stderr:\n{}", run.stderr());
}

/// Every catchable signal sent to labinit reaches the main process, the
/// real-time ones included: 34 is glibc's SIGRTMIN, which the C library's
/// `sigfillset` (musl: 32–34) leaves out, so a mask built with it drops it
/// silently. Control: bash as PID 1 passes none of them on.
#[test]
fn every_catchable_signal_reaches_the_main_process() {
    let sigs: Vec<(i32, String)> = [libc::SIGALRM, libc::SIGURG, libc::SIGPWR, libc::SIGVTALRM, libc::SIGCONT]
        .into_iter()
        .map(|s| (s, nix::sys::signal::Signal::try_from(s).unwrap().as_str().to_owned()))
        .chain([34, 35, 40, 50, 64].into_iter().map(|s| (s, format!("SIG{s}"))))
        .collect();
    let job = "exec {S} a {D}";
    for mode in MODES {
        let mut run = Run::start(mode, &["run", "-c", job], "", &Opts::default());
        run.ready(&["a"]);
        for (sig, name) in &sigs {
            run.signal(*sig);
            assert!(
                run.job_logged("a", name),
                "{mode:?}: {name} did not reach the main process; stderr:\n{}",
                run.stderr()
            );
        }
        run.signal(libc::SIGTERM);
        assert_eq!(run.wait(), 0, "{mode:?}; stderr:\n{}", run.stderr());
        assert!(
            run.stderr().contains("received signal 34 (real-time): sent it to the main process"),
            "{}",
            run.stderr()
        );
    }
    let mut run = Run::start(Mode::Control, &[], "{S} a {D}; wait", &Opts::default());
    run.ready(&["a"]);
    run.signal(34);
    run.wait();
    assert!(!run.read("a.log").contains("SIG34"), "control: signal 34 reached the job under bash as PID 1");
}
