//! Supervised services (`LABKIT_SERVICES_DIR`): output prefixed with the
//! service's name, exit 0 means done, failures restarted at least 1 s apart
//! and given up after 5 a minute, and at shutdown the job is stopped first,
//! then the services (TERM, LABKIT_SERVICE_GRACE, KILL), without the services
//! ever changing the exit code. Each scenario runs with labinit as PID 1 and
//! as a subreaper; each has a negative control.

mod common;

use common::ns::{poll, Mode, Opts, Run, MODES};
use nix::libc;

fn opts(files: &[(&str, &str)], extra: &[(&str, &str)]) -> Opts {
    let mut env = vec![("LABKIT_SERVICES_DIR".to_owned(), "/svc".to_owned())];
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    Opts { env, files: files.iter().map(|(p, c)| ((*p).to_owned(), (*c).to_owned())).collect(), ..Opts::default() }
}

/// A service that prints and exits 0 is done: never restarted; its lines are
/// prefixed with its name. Control: the same service exiting 1 is restarted.
#[test]
fn exit_zero_is_done_and_output_is_prefixed() {
    let job = "while [ ! -e {D}/hello.ran ]; do sleep 0.05; done; sleep 1.5; exit 3";
    for mode in MODES {
        for code in [0, 1] {
            let svc = format!(
                "#!/bin/sh\necho \"hello from $LABKIT_USER\"\necho oops >&2\necho x >> {{D}}/hello.ran\nexit {code}\n"
            );
            let o = opts(&[("root/svc/hello.sh", &svc)], &[]);
            let mut run = Run::start(mode, &["run", "-c", job], "", &o);
            assert_eq!(run.wait(), 3, "{mode:?}: services never change the job's code; stderr:\n{}", run.stderr());
            let err = run.stderr();
            assert!(err.lines().any(|l| l.starts_with("hello: hello from ")), "{mode:?}:\n{err}");
            assert!(err.lines().any(|l| l == "hello: oops"), "{mode:?}:\n{err}");
            let started = err.lines().filter(|l| l.contains("service hello: started")).count();
            if code == 0 {
                assert!(err.contains("service hello: done (exit code 0)"), "{mode:?}:\n{err}");
                assert_eq!(started, 1, "{mode:?}: a done service was restarted:\n{err}");
            } else {
                assert!(err.contains("service hello: exited with code 1; restarting in 1 s"), "{mode:?}:\n{err}");
                assert!(started >= 2, "control {mode:?}: a failing service was not restarted:\n{err}");
            }
        }
    }
}

/// A failing service is restarted with a backoff of at least 1 s, doubling,
/// and given up with a warning after 5 failures within a minute. The job
/// is not held up and its code stands.
#[test]
fn failures_are_throttled_then_given_up() {
    let svc = "#!/bin/sh\ndate +%s.%N >> {D}/fail.times\nexit 2\n";
    let job = "while [ $(wc -l < {D}/fail.times 2>/dev/null || echo 0) -lt 5 ]; do sleep 0.1; done; sleep 1.2; exit 0";
    let mode = Mode::Pid1;
    let mut run = Run::start(mode, &["run", "-c", job], "", &opts(&[("root/svc/fail.sh", svc)], &[]));
    assert_eq!(run.wait(), 0, "stderr:\n{}", run.stderr());
    let err = run.stderr();
    assert!(err.contains("service fail: exited with code 2; it failed 5 times within 60 s, giving up"), "{err}");
    let times: Vec<f64> = run.read("fail.times").lines().filter_map(|l| l.parse().ok()).collect();
    assert_eq!(times.len(), 5, "restarted after giving up:\n{err}");
    for (i, w) in times.windows(2).enumerate() {
        let gap = w[1] - w[0];
        let want = f64::from(1u32 << i) - 0.05;
        assert!(gap >= want, "restart {} came after {gap:.2} s, before the {want:.2} s backoff:\n{err}", i + 1);
    }
}

/// SIGTERM to the container: the job gets it first and finishes its 1 s
/// cleanup while the services keep running; then the services get TERM.
/// One service ignores TERM and is killed after LABKIT_SERVICE_GRACE. The
/// exit code is the job's even though a service exits 9.
/// Control: a service in the job itself (no LABKIT_SERVICES_DIR) gets TERM
/// together with the job.
#[test]
fn stop_order_is_job_then_services() {
    let keeper = "#!/bin/sh\ntrap 'echo svc-term >> {D}/order; exit 9' TERM\ntouch {D}/keeper.ready\nwhile :; do sleep 0.05; done\n";
    let stubborn = "#!/bin/sh\ntrap '' TERM\ntouch {D}/stubborn.ready\nwhile :; do sleep 0.05; done\n";
    let job =
        "trap 'sleep 1; echo job-term >> {D}/order; exit 7' TERM; touch {D}/job.ready; while :; do sleep 0.05; done";
    for mode in MODES {
        let o = opts(
            &[("root/svc/keeper.sh", keeper), ("root/svc/stubborn.sh", stubborn)],
            &[("LABKIT_SERVICE_GRACE", "0.5s")],
        );
        let mut run = Run::start(mode, &["run", "-c", job], "", &o);
        run.ready(&["job", "keeper", "stubborn"]);
        run.signal(libc::SIGTERM);
        assert_eq!(run.wait(), 7, "{mode:?}: stderr:\n{}", run.stderr());
        assert_eq!(run.read("order"), "job-term\nsvc-term\n", "{mode:?}: stderr:\n{}", run.stderr());
        let err = run.stderr();
        assert!(err.contains("service grace expired: sent SIGKILL to"), "{mode:?}:\n{err}");
    }
    // Control: the same keeper started by the job is TERMed with it, first.
    let job = "{D}/root/svc/keeper.sh & trap 'sleep 1; echo job-term >> {D}/order; exit 7' TERM; touch {D}/job.ready; while :; do sleep 0.05; done";
    let o = Opts { files: vec![("root/svc/keeper.sh".into(), keeper.into())], ..Opts::default() };
    let mut run = Run::start(Mode::Pid1, &["run", "-c", job], "", &o);
    run.ready(&["job", "keeper"]);
    run.signal(libc::SIGTERM);
    run.wait();
    assert_eq!(run.read("order"), "svc-term\njob-term\n", "control: {}", run.stderr());
}

/// A service that never ends does not hold up the job: the job's exit ends
/// the container (after the service's stop). Control: the service's
/// process is gone afterwards only because labinit stopped it.
#[test]
fn services_never_block_the_job() {
    let svc = "#!/bin/sh\ntrap 'echo stopped > {D}/svc.stopped; exit 0' TERM\ntouch {D}/svc.ready\nwhile :; do sleep 0.05; done\n";
    for mode in MODES {
        let mut run = Run::start(
            mode,
            &["run", "-c", "while [ ! -e {D}/svc.ready ]; do sleep 0.05; done; exit 4"],
            "",
            &opts(&[("root/svc/forever.sh", svc)], &[]),
        );
        assert_eq!(run.wait(), 4, "{mode:?}: {}", run.stderr());
        assert!(poll(|| run.path("svc.stopped").exists().then_some(())).is_some(), "{mode:?}: {}", run.stderr());
        assert!(run.stderr().contains("the job is over; sent SIGTERM to the services"), "{}", run.stderr());
    }
}

/// PID 1's record (`/run/labkit/job`, read by `labinit shell`, which the
/// ssh service runs) is written before the services start; without
/// services, while the job execs, and in place by the time it runs. Control:
/// a stale record planted before the start (a restarted container's) is
/// never what a service or the job's later shell sees.
#[test]
fn services_and_later_shells_see_this_starts_record() {
    let stale = ("root/run/labkit/job", "version 1\nexport STALE=1\n");
    let svc = "#!/bin/sh\ncat {D}/root/run/labkit/job > {D}/seen 2>&1\ntouch {D}/seen.done\n";
    let job = "while [ ! -e {D}/seen.done ]; do sleep 0.05; done; exit 0";
    for mode in MODES {
        let mut run = Run::start(mode, &["run", "-c", job], "", &opts(&[("root/svc/look.sh", svc), stale], &[]));
        assert_eq!(run.wait(), 0, "{mode:?}: stderr:\n{}", run.stderr());
        let seen = run.read("seen");
        assert!(seen.starts_with("# labinit") && seen.contains("version 1"), "{mode:?}: {seen}");
        assert!(!seen.contains("STALE"), "{mode:?}: the service read the stale record:\n{seen}");
        // No services: the record is written while the job execs.
        let o = Opts { files: vec![(stale.0.to_owned(), stale.1.to_owned())], ..Opts::default() };
        let mut run = Run::start(mode, &["run", "-c", "exit 0"], "", &o);
        assert_eq!(run.wait(), 0, "{mode:?}: stderr:\n{}", run.stderr());
        let record = run.read("root/run/labkit/job");
        assert!(record.contains("version 1") && !record.contains("STALE"), "{mode:?}: {record}");
    }
}
