//! Several experiments in one container (`labinit each`, `labinit run
//! --each`): every line prefixed, every exit logged, the first failure's
//! status as the exit code, stop signals reaching every command, and
//! `--fail-fast`. labinit runs as PID 1 and as a subreaper in its own PID
//! namespace; the controls show what the cluster guide's `a & b & wait` does.

mod common;

use common::ns::{Mode, Opts, Run, MODES};
use nix::libc;

fn run(mode: Mode, args: &[&str]) -> (i32, Run) {
    let mut r = Run::start(mode, args, "", &Opts::default());
    let c = r.wait();
    (c, r)
}

#[test]
fn output_is_prefixed_and_the_first_failure_is_the_exit_code() {
    for mode in MODES {
        let (code, r) = run(
            mode,
            &["each", "--name", "A", "--", "echo a1; sleep 0.3; exit 3", "echo b1; echo b2 >&2", "sleep 0.6; exit 5"],
        );
        let out = r.read("stdout");
        let err = r.stderr();
        assert_eq!(code, 3, "{mode:?}: stdout:\n{out}\nstderr:\n{err}");
        assert!(out.lines().any(|l| l == "[A] a1"), "{mode:?}: {out}");
        assert!(out.lines().any(|l| l == "[2] b1"), "{mode:?}: {out}");
        assert!(err.lines().any(|l| l == "[2] b2"), "{mode:?}: stderr lines keep going to stderr: {err}");
        assert!(err.contains("labinit: warning: each: [A] exited with code 3"), "{err}");
        assert!(err.contains("labinit: warning: each: [3] exited with code 5"), "{err}");
        assert!(err.contains("labinit: each: [2] exited with code 0"), "{err}");
        assert!(err.contains("2 of 3 command(s) failed; exiting with code 3"), "{err}");
    }
    // Control: the guide's `a & b & wait` hides the same failures.
    let mut r = Run::start(Mode::Control, &[], "(echo a1; exit 3) & (echo b1) & wait", &Opts::default());
    assert_eq!(r.wait(), 0, "control: a plain wait reported the failure");
}

#[test]
fn all_succeeding_gives_zero_and_a_killed_command_gives_128_plus_n() {
    for mode in MODES {
        let (code, r) = run(mode, &["run", "--each", "--", "true", "echo ok"]);
        assert_eq!(code, 0, "{mode:?}: {}", r.stderr());
        assert!(r.stderr().contains("each: all 2 command(s) succeeded"));
        let (code, r) = run(mode, &["each", "true", "kill -KILL $$"]);
        assert_eq!(code, 137, "{mode:?}: {}", r.stderr());
        assert!(r.stderr().contains("[2] was killed by SIGKILL (status 137)"), "{}", r.stderr());
    }
}

#[test]
fn fail_fast_stops_the_others() {
    for mode in MODES {
        let (code, r) = run(
            mode,
            &[
                "run",
                "--each",
                "--fail-fast",
                "--",
                "echo started > {D}/long; sleep 20; echo x > {D}/long.done",
                "sleep 0.3; exit 2",
            ],
        );
        assert_eq!(code, 2, "{mode:?}: {}", r.stderr());
        assert!(r.exists("long"), "the long command never started");
        assert!(!r.exists("long.done"), "{mode:?}: the long command ran to its end");
        assert!(r.stderr().contains("--fail-fast: stopping the 1 other command(s)"), "{}", r.stderr());
        assert!(r.stderr().contains("[1] was killed by SIGTERM (status 143)"), "{}", r.stderr());
    }
    // Control: without --fail-fast the other command runs to its end.
    let (code, r) = run(Mode::Pid1, &["run", "--each", "--", "sleep 1; echo x > {D}/long.done", "exit 2"]);
    assert_eq!(code, 2);
    assert!(r.exists("long.done"), "control: the other command was stopped without --fail-fast");
}

#[test]
fn a_stop_signal_reaches_every_command() {
    for mode in MODES {
        let mut r = Run::start(
            mode,
            &["each", "--", "exec {S} a {D} --code 0", "exec {S} b {D} --code 0"],
            "",
            &Opts::default(),
        );
        r.ready(&["a", "b"]);
        r.signal(libc::SIGTERM);
        assert_eq!(r.wait(), 0, "{mode:?}: both checkpointed and exited 0; stderr:\n{}", r.stderr());
        assert!(r.exists("a.done") && r.exists("b.done"), "{mode:?}: {}", r.stderr());
        // Exactly one TERM each: `each` does not forward what PID 1 already sent.
        assert_eq!(r.read("a.log").lines().filter(|l| *l == "SIGTERM").count(), 1, "{}", r.read("a.log"));
    }
}

#[test]
fn the_legacy_string_form_runs_each_inside_the_job() {
    for mode in MODES {
        let (code, r) = run(mode, &["run", "-c", "cd {D} && {L} each --name x 'echo $PWD' 'exit 4'"]);
        let out = r.read("stdout");
        assert_eq!(code, 4, "{mode:?}: {}", r.stderr());
        assert!(out.lines().any(|l| l.starts_with("[x] /")), "{out}");
        // One supervisor: the inner labinit neither sets up nor supervises again.
        assert_eq!(r.stderr().matches("labinit: exiting with code").count(), 1, "{}", r.stderr());
    }
}

#[test]
fn commands_get_no_input() {
    let mut r =
        Run::start(Mode::Pid1, &["each", "if read x; then echo got:$x; else echo eof; fi"], "", &Opts::default());
    assert_eq!(r.wait(), 0);
    assert!(r.read("stdout").lines().any(|l| l == "[1] eof"), "{}", r.read("stdout"));
}

#[test]
fn bad_arguments_change_nothing_and_exit_125() {
    for args in [
        &["each"][..],
        &["each", "--name", "a", "--name", "b", "--", "true"],
        &["each", "--name", "a b", "--", "true"],
        &["each", "--fail-fast", "--grace", "soon", "--", "true"],
        &["run", "--fail-fast", "--", "true"],
    ] {
        let (code, r) = run(Mode::Pid1, args);
        assert_eq!(code, 125, "{args:?}: {}", r.stderr());
        assert!(r.read("stdout").is_empty(), "{args:?} ran something");
    }
}
