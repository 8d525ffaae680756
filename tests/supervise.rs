//! Supervision: exit codes, reaping, the shutdown grace, timeouts, hygiene of
//! the job's start and nesting. Each scenario runs with labinit as PID 1 and
//! as a subreaper under another PID 1, with a negative control that shows
//! the check can fail.

mod common;

use common::ns::{poll, status_fields, Mode, Opts, Run, MODES};
use nix::libc;

fn code_of(mode: Mode, args: &[&str], control: &str) -> (i32, Run) {
    let mut run = Run::start(mode, args, control, &Opts::default());
    let c = run.wait();
    (c, run)
}

#[test]
fn exit_codes_follow_the_shell() {
    let cases: [(&[&str], i32); 8] = [
        (&["run", "-c", "exit 0"], 0),
        (&["run", "-c", "exit 3"], 3),
        (&["run", "-c", "exit 300"], 44),
        (&["run", "-c", "kill -TERM $$"], 143),
        (&["run", "-c", "kill -KILL $$"], 137),
        (&["run", "--", "/nonexistent/program"], 127),
        (&["run", "--", "{D}/root"], 126),
        (&["run", "--timeout", "soon", "--", "true"], 125),
    ];
    for mode in MODES {
        for (args, want) in cases {
            let (got, run) = code_of(mode, args, "");
            assert_eq!(got, want, "{mode:?} {args:?}; stderr:\n{}", run.stderr());
        }
    }
    // Control: bash as PID 1 cannot die of its own TERM, so the check differs.
    let (got, _run) = code_of(Mode::Control, &[], "kill -TERM $$");
    assert_ne!(got, 143, "control: bash as PID 1 reported death by TERM");
}

#[test]
fn term_to_a_trapping_child_gives_its_code() {
    for mode in MODES {
        let mut run = Run::start(mode, &["run", "--", "{S}", "a", "{D}", "--code", "0"], "", &Opts::default());
        run.ready(&["a"]);
        run.signal(libc::SIGTERM);
        assert_eq!(run.wait(), 0, "{mode:?}; stderr:\n{}", run.stderr());
        assert!(run.exists("a.done"));
    }
    let mut run = Run::start(Mode::Control, &[], "{S} a {D} --code 0; exit $?", &Opts::default());
    run.ready(&["a"]);
    run.signal(libc::SIGTERM);
    run.wait();
    assert!(!run.exists("a.done"), "control: TERM reached the job under bash as PID 1");
}

fn zombies(run: &Run) -> usize {
    run.ns_procs().iter().filter(|p| p.2 == 'Z').count()
}

fn sleeps_left(run: &Run) -> bool {
    run.ns_procs().iter().any(|p| p.3 == "sleep" && p.2 != 'Z')
}

/// Orphans are reaped; the main process itself never reaps (it is the
/// printer). Control: the printer as PID 1 (exec'd by bash) keeps them.
#[test]
fn orphans_are_reaped() {
    let job = "for i in $(seq 30); do sh -c 'sleep 0.5 &'; done; exec {S} a {D}";
    for mode in MODES {
        let mut run = Run::start(mode, &["run", "-c", job], job, &Opts::default());
        run.ready(&["a"]);
        assert!(poll(|| (!sleeps_left(&run)).then_some(())).is_some());
        assert!(poll(|| (zombies(&run) == 0).then_some(())).is_some(), "{mode:?}: {} zombies left", zombies(&run));
        run.signal(libc::SIGTERM);
        assert_eq!(run.wait(), 0);
    }
    let run = Run::start(Mode::Control, &[], job, &Opts::default());
    run.ready(&["a"]);
    assert!(poll(|| (!sleeps_left(&run)).then_some(())).is_some());
    assert!(zombies(&run) >= 30, "control: orphans were reaped without an init that reaps");
}

/// The main process exits while a grandchild still runs; the grandchild gets
/// TERM and finishes its 1 s checkpoint; labinit exits with the main code.
/// Control: bash as PID 1 exits at once and the namespace dies with it.
#[test]
fn main_exit_lets_the_rest_of_the_job_finish_its_cleanup() {
    let job = "{S} g {D} --on-term checkpoint=1000 & while [ ! -e {D}/g.ready ]; do sleep 0.01; done; exit 7";
    for mode in MODES {
        let mut run = Run::start(mode, &["run", "-c", job], job, &Opts::default());
        assert_eq!(run.wait(), 7, "{mode:?}; stderr:\n{}", run.stderr());
        assert!(run.read("g.log").contains("SIGTERM"), "{mode:?}");
        assert!(run.exists("g.done"), "{mode:?}: the grandchild's cleanup did not finish; stderr:\n{}", run.stderr());
    }
    let mut run = Run::start(Mode::Control, &[], job, &Opts::default());
    assert_eq!(run.wait(), 7);
    assert!(!run.exists("g.done"), "control: cleanup finished without labinit");
}

/// A process that ignores TERM is killed when the grace ends; labinit exits
/// with the main process's code. Control: the same job without the ignorer
/// ends before the grace.
#[test]
fn grace_ends_in_sigkill_for_processes_ignoring_term() {
    for mode in MODES {
        for ignore in [true, false] {
            let g = if ignore { "{S} g {D} --on-term ignore" } else { "{S} g {D}" };
            let job = format!("{g} & exec {{S}} a {{D}} --code 5");
            let mut run = Run::start(mode, &["run", "--grace", "1s", "-c", &job], "", &Opts::default());
            run.ready(&["a", "g"]);
            run.signal(libc::SIGTERM);
            assert_eq!(run.wait(), 5, "{mode:?}; stderr:\n{}", run.stderr());
            assert!(run.read("g.log").contains("SIGTERM"));
            assert!(!run.exists("g.natural"));
            assert_eq!(
                run.stderr().contains("grace period expired"),
                ignore,
                "{mode:?} ignore={ignore}:\n{}",
                run.stderr()
            );
        }
    }
}

#[test]
fn timeout_follows_coreutils() {
    let s = |x: &str| x.to_owned();
    let cases: Vec<(Vec<String>, i32)> = vec![
        // Expiry; the TERM reaches a process in timeout's own group.
        (vec![s("run"), s("--timeout"), s("1s"), s("-c"), s("timeout 4h {S} a {D}; echo after")], 124),
        (
            vec![
                s("run"),
                s("--timeout"),
                s("1s"),
                s("--preserve-status"),
                s("--"),
                s("{S}"),
                s("a"),
                s("{D}"),
                s("--code"),
                s("3"),
            ],
            3,
        ),
        (
            vec![
                s("run"),
                s("--timeout"),
                s("1s"),
                s("--kill-after"),
                s("0.5s"),
                s("--"),
                s("{S}"),
                s("a"),
                s("{D}"),
                s("--on-term"),
                s("ignore"),
            ],
            137,
        ),
    ];
    for mode in MODES {
        for (args, want) in &cases {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut run = Run::start(mode, &args, "", &Opts::default());
            assert_eq!(run.wait(), *want, "{mode:?} {args:?}; stderr:\n{}", run.stderr());
            assert!(run.read("a.log").contains("SIGTERM"), "{mode:?} {args:?}: the job never saw TERM");
        }
        let opts = Opts { env: vec![("LABKIT_TIMEOUT".into(), "1s".into())], ..Opts::default() };
        let mut run = Run::start(mode, &["run", "--", "sleep", "30"], "", &opts);
        assert_eq!(run.wait(), 124, "{mode:?} LABKIT_TIMEOUT; stderr:\n{}", run.stderr());
    }
    // Control: no timeout, the job ends by itself.
    let opts = Opts { env: vec![("SIGPRINT_LIFETIME_MS".into(), "1000".into())], ..Opts::default() };
    let mut run = Run::start(Mode::Pid1, &["run", "--", "{S}", "a", "{D}"], "", &opts);
    assert_eq!(run.wait(), 0);
    assert!(run.exists("a.natural"));
}

/// The job starts with an empty mask, default dispositions (even when
/// labinit inherited INT and QUIT ignored, as from a background job), only
/// fds 0-2, no labinit variables but the nesting marker, and the working
/// directory kept; labinit itself sits in `/`. Control: the same printer
/// under bash shows the inherited ignored signals.
#[test]
fn the_job_starts_clean() {
    let opts = Opts {
        ignore: vec![libc::SIGINT, libc::SIGQUIT],
        env: vec![("LABKIT_GRACE".into(), "5s".into()), ("CUDA_VISIBLE_DEVICES".into(), "0".into())],
        cwd: Some("home".into()),
        ..Opts::default()
    };
    for mode in MODES {
        let mut run = Run::start(mode, &["run", "--", "{S}", "a", "{D}"], "", &opts);
        run.ready(&["a"]);
        let labinit = run.target();
        let cwd = std::fs::read_link(format!("/proc/{labinit}/cwd")).unwrap();
        assert_eq!(cwd, std::path::Path::new("/"), "{mode:?}: labinit's own cwd");
        run.signal(libc::SIGTERM);
        run.wait();
        let report = run.read("a.status");
        let f = status_fields(&report);
        let fds: Vec<&str> = f["Fds"].split_whitespace().collect();
        assert_eq!(fds, ["0", "1", "2", "3"], "{mode:?}: fds (3 is the listing itself)");
        assert_eq!(f["Cwd"], run.path("home").display().to_string());
        let env: Vec<&str> = report.lines().filter_map(|l| l.strip_prefix("Env:\t")).collect();
        assert!(env.contains(&"CUDA_VISIBLE_DEVICES=0"));
        let labkit: Vec<&&str> = env.iter().filter(|e| e.starts_with("LABKIT_")).collect();
        assert_eq!(labkit.len(), 1, "{mode:?}: {labkit:?}");
        assert!(labkit[0].starts_with("LABKIT_SUPERVISOR="));
    }
    // The mask and dispositions, seen by a C program exec'd directly (the
    // printer's Rust runtime ignores SIGPIPE itself).
    let probe = ["run", "--", "grep", "^Sig[BI]", "/proc/self/status"];
    for mode in MODES {
        let mut run = Run::start(mode, &probe, "", &opts);
        assert_eq!(run.wait(), 0);
        let f = status_fields(&run.read("stdout"));
        assert_eq!(f["SigBlk"], "0000000000000000", "{mode:?}");
        assert_eq!(f["SigIgn"], "0000000000000000", "{mode:?}");
    }
    let mut run = Run::start(Mode::Control, &[], "grep ^Sig[BI] /proc/self/status; true", &opts);
    run.wait();
    let f = status_fields(&run.read("stdout"));
    assert_ne!(f["SigIgn"], "0000000000000000", "control: inherited ignored signals not visible");
}

fn labinits(run: &Run) -> usize {
    let me = std::fs::canonicalize(common::labinit()).unwrap();
    run.ns_procs().iter().filter(|p| std::fs::read_link(format!("/proc/{}/exe", p.0)).is_ok_and(|e| e == me)).count()
}

/// A legacy name started from inside the job (or given to the ENTRYPOINT)
/// neither sets up again nor stacks a second supervisor, and starts in the
/// home. Control: without the marker a second labinit supervises.
#[test]
fn nested_labinit_execs_instead_of_stacking() {
    let inner = "{D}/bin/setup_and_run_command.sh '{S} a {D}'; true";
    let unmarked = "env -u LABKIT_SUPERVISOR {D}/bin/setup_and_run_command.sh '{S} a {D}'; true";
    let cases: [(Mode, &[&str], usize); 5] = [
        (Mode::Pid1, &["run", "-c", inner], 1),
        (Mode::Subreaper, &["run", "-c", inner], 1),
        // ENTRYPOINT labinit + command: [setup_and_run_command.sh, STRING].
        (Mode::Pid1, &["{D}/bin/setup_and_run_command.sh", "{S} a {D}"], 1),
        // RunAI: the whole command as one string.
        (Mode::Pid1, &["{D}/bin/setup_and_run_command.sh '{S} a {D}'"], 1),
        // Control.
        (Mode::Pid1, &["run", "-c", unmarked], 2),
    ];
    for (mode, args, want) in cases {
        let mut run = Run::start(mode, args, "", &Opts::default());
        run.ready(&["a"]);
        let n = labinits(&run);
        run.signal(libc::SIGTERM);
        run.wait();
        assert_eq!(n, want, "{mode:?} {args:?}: labinit processes; stderr:\n{}", run.stderr());
        let f = status_fields(&run.read("a.status"));
        assert_eq!(
            f["Cwd"],
            run.path("home").display().to_string(),
            "{mode:?} {args:?}: legacy names start in the home"
        );
        assert!(run.read("a.log").contains("SIGTERM"), "{mode:?} {args:?}");
    }
}
