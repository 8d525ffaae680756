//! `labinit wait` and the idle watchdog, with labinit as PID 1 of a PID
//! namespace: a container with nothing busy stops with exit code 0 and says
//! why; a process using CPU, a process named like `python`, or a process
//! holding a (fake) GPU device open keeps it up, each logged once when the
//! state changes. Every scenario has a negative control where the rule is
//! switched off or not met. Intervals are short (0.2 s) and timeouts 1 s; no
//! assertion is about speed.

mod common;

use common::ns::Run;
use nix::libc;

const BASE: [(&str, &str); 5] = [
    ("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
    ("LABKIT_STEPS_DIR", "/steps"),
    ("LABKIT_SERVICES_DIR", "/services"),
    ("LABKIT_IDLE_INTERVAL", "0.2s"),
    ("LABKIT_GRACE", "2s"),
];

fn env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut e: Vec<(&str, &str)> = BASE.to_vec();
    e.extend_from_slice(extra);
    e
}

/// labinit (PID 1) with `args` after `--root {D}/root`, after `prelude`.
fn start(prelude: &str, args: &str, extra: &[(&str, &str)]) -> Run {
    let script = format!("{prelude}\nexec {{L}} --root {{D}}/root {args}");
    Run::script(&[], &script, &env(extra), |_| {})
}

/// Index of the first stderr line containing `what`.
fn line_of(text: &str, what: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(what))
}

#[test]
fn idle_container_stops_with_code_zero_and_says_why() {
    let mut run = start(
        "",
        "wait",
        &[("LABKIT_IDLE_TIMEOUT", "1s"), ("LABKIT_IDLE_LOG", "{D}/idle-{host}-{date}.log"), ("LABKIT_IDLE_BUSY", "")],
    );
    assert_eq!(run.wait(), 0, "stderr:\n{}", run.stderr());
    let err = run.stderr();
    let idle = line_of(&err, "idle watchdog: idle (nothing was busy since the start)").expect(&err);
    let stop = line_of(&err, "stopping the container").expect(&err);
    assert!(idle < stop, "{err}");
    assert!(err.contains("exiting with code 0 (idle)"), "{err}");
    let log: Vec<_> = std::fs::read_dir(run.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("idle-"))
        .collect();
    assert_eq!(log.len(), 1, "one LABKIT_IDLE_LOG file named after host and date");
    let text = std::fs::read_to_string(log[0].path()).unwrap();
    assert!(text.contains("stopping the container") && text.contains("Z "), "{text}");

    // Control: with the watchdog off, wait stays up until SIGTERM (exit 0).
    let mut run = start("", "wait", &[("LABKIT_IDLE_TIMEOUT", "0")]);
    assert!(run.logged("set up; waiting"), "{}", run.stderr());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(run.running(), "stopped without a watchdog:\n{}", run.stderr());
    run.signal(libc::SIGTERM);
    assert_eq!(run.wait(), 0, "{}", run.stderr());
    assert!(!run.stderr().contains("idle watchdog"), "{}", run.stderr());
}

/// A CPU-bound process keeps the container busy; once it stops, the
/// container goes idle and stops (`run` with LABKIT_IDLE_TIMEOUT: code 0).
/// Control: with a threshold no process can reach, the loop is not seen.
#[test]
fn cpu_use_keeps_it_busy() {
    let job = "run -- sh -c 'while [ ! -e {D}/stop ]; do :; done; exec sleep 600'";
    for control in [false, true] {
        let cpu = if control { "100000" } else { "5" };
        let mut run = start("", job, &[("LABKIT_IDLE_TIMEOUT", "1s"), ("LABKIT_IDLE_CPU", cpu)]);
        if !control {
            assert!(run.logged("% CPU"), "{}", run.stderr());
            std::fs::write(run.path("stop"), "").unwrap();
        }
        assert_eq!(run.wait(), 0, "{}", run.stderr());
        let err = run.stderr();
        let busy = line_of(&err, "idle watchdog: busy: sh (pid");
        if control {
            assert!(busy.is_none(), "control: {err}");
            assert!(err.contains("nothing was busy since the start"), "{err}");
        } else {
            let busy = busy.expect(&err);
            assert_eq!(err.lines().filter(|l| l.contains("idle watchdog: busy")).count(), 1, "logged once:\n{err}");
            // The last busy check may already see the loop's process after
            // its exec (same pid, named sleep, the loop's tail as CPU use).
            let idle = line_of(&err, "idle watchdog: idle (last busy: sh (pid")
                .or_else(|| line_of(&err, "idle watchdog: idle (last busy: sleep (pid"))
                .expect(&err);
            assert!(busy < idle && idle < line_of(&err, "stopping the container").unwrap(), "{err}");
        }
        assert!(err.contains("exiting with code 0 (idle)"), "{err}");
    }
}

/// A program whose main thread waits while a worker thread computes keeps it
/// busy: CPU use is the whole process's, every thread counted (reading the
/// main thread's alone stopped such a job as idle). Control: the worker
/// sleeps in its loop, and the container stops idle. The name rule is off.
#[test]
fn a_busy_worker_thread_keeps_it_busy_while_the_main_thread_waits() {
    for control in [false, true] {
        let work = if control { "time.sleep(0.05)" } else { "pass" };
        let job = format!(
            "run -- python3 -c 'import os, threading, time\ndef work():\n    while not os.path.exists(\"{{D}}/stop\"): {work}\nt = threading.Thread(target=work)\nt.start()\nt.join()\ntime.sleep(600)'"
        );
        let mut run = start("", &job, &[("LABKIT_IDLE_TIMEOUT", "1s"), ("LABKIT_IDLE_BUSY", "")]);
        if !control {
            assert!(run.logged("idle watchdog: busy: python3 (pid"), "{}", run.stderr());
            // Still busy well past the timeout.
            std::thread::sleep(std::time::Duration::from_millis(2000));
            assert!(run.running(), "{}", run.stderr());
            std::fs::write(run.path("stop"), "").unwrap();
        }
        assert_eq!(run.wait(), 0, "{}", run.stderr());
        let err = run.stderr();
        if control {
            assert!(err.contains("nothing was busy since the start"), "control: {err}");
        } else {
            assert!(err.contains("% CPU"), "{err}");
            assert!(err.contains("idle (last busy: python3 (pid"), "{err}");
        }
        assert!(err.contains("exiting with code 0 (idle)"), "{err}");
    }
}

/// A process whose name contains `python` keeps it busy even when it uses no
/// CPU (the sleeper's rule). The CPU rule is out of reach here: with checks
/// 0.2 s apart the loop's last `sleep` steps, reaped by the job's shell, can
/// reach 5 % of a core in the check after the loop ends, and the name rule is
/// what is tested. Control: LABKIT_IDLE_BUSY empty.
#[test]
fn python_named_process_keeps_it_busy() {
    let prelude = "cp /bin/sh {D}/python3";
    let job = "run -- sh -c '{D}/python3 -c \"while [ ! -e {D}/stop ]; do sleep 0.1; done\"; exec sleep 600'";
    for control in [false, true] {
        let busy_names = if control { "" } else { "python" };
        let mut run = start(
            prelude,
            job,
            &[("LABKIT_IDLE_TIMEOUT", "1s"), ("LABKIT_IDLE_BUSY", busy_names), ("LABKIT_IDLE_CPU", "100000")],
        );
        if !control {
            assert!(run.logged("idle watchdog: busy: python3 (pid"), "{}", run.stderr());
            // Still busy some checks later: logged once, no expiry.
            std::thread::sleep(std::time::Duration::from_millis(1500));
            assert!(run.running(), "{}", run.stderr());
            std::fs::write(run.path("stop"), "").unwrap();
        }
        assert_eq!(run.wait(), 0, "{}", run.stderr());
        let err = run.stderr();
        let n = err.lines().filter(|l| l.contains("idle watchdog: busy: python3")).count();
        assert_eq!(n, usize::from(!control), "{err}");
        if !control {
            assert!(err.contains("idle (last busy: python3 (pid"), "{err}");
        }
    }
}

/// A process holding a GPU device open keeps it busy. The device is a fake
/// `/dev/nvidia0` (a character device node, 1:3 like /dev/null) in a private
/// `/dev` of a mount namespace. The holder waits on a FIFO, using no CPU (a
/// polling loop's `sleep` children count: on a slow machine ten a second
/// reach 5 % of a core). Control: a device glob that matches nothing.
#[test]
fn open_gpu_device_keeps_it_busy() {
    let prelude = "set -e; mount -t tmpfs -o mode=755 tmpfs /dev; mknod -m 666 /dev/null c 1 3; \
                   mknod -m 666 /dev/nvidia0 c 1 3; mkfifo {D}/stop";
    let job = "run -- sh -c 'sh -c \"exec 3</dev/nvidia0; read x < {D}/stop\" & exec sleep 600'";
    let host_had = std::path::Path::new("/dev/nvidia0").exists();
    for control in [false, true] {
        let glob = if control { "/dev/nvidiaX[0-9]*" } else { "/dev/nvidia[0-9]*" };
        let script = format!("{prelude}\nexec {{L}} --root {{D}}/root {job}");
        let e = env(&[("LABKIT_IDLE_TIMEOUT", "1s"), ("LABKIT_IDLE_DEVICES", glob), ("LABKIT_IDLE_BUSY", "")]);
        let mut run = Run::script(&["--mount"], &script, &e, |_| {});
        if !control {
            assert!(run.logged("holds /dev/nvidia0 open"), "{}", run.stderr());
            std::fs::write(run.path("stop"), "").unwrap();
        }
        assert_eq!(run.wait(), 0, "{}", run.stderr());
        let err = run.stderr();
        assert_eq!(err.contains("holds /dev/nvidia0 open"), !control, "{err}");
        assert!(err.contains("stopping the container"), "{err}");
    }
    assert_eq!(std::path::Path::new("/dev/nvidia0").exists(), host_had, "the host's /dev was touched");
}

/// The legacy name `sleeper`, `setup_and_wait.sh` and `labinit` without a
/// subcommand all wait. Control: `labinit setup` exits at once without the
/// watchdog.
#[test]
fn legacy_names_and_no_arguments_wait() {
    let idle = [("LABKIT_IDLE_TIMEOUT", "1s"), ("LABKIT_ROOT", "{D}/root")];
    for how in [
        "ln -s {L} {D}/sleeper; exec {D}/sleeper",
        "ln -s {L} {D}/setup_and_wait.sh; exec {D}/setup_and_wait.sh",
        "exec {L}",
    ] {
        let mut run = Run::script(&[], how, &env(&idle), |_| {});
        assert_eq!(run.wait(), 0, "{how}: {}", run.stderr());
        let err = run.stderr();
        assert!(err.contains("set up; waiting") && err.contains("stopping the container"), "{how}: {err}");
    }
    let mut run = Run::script(&[], "exec {L} setup", &env(&idle), |_| {});
    assert_eq!(run.wait(), 0);
    assert!(!run.stderr().contains("idle watchdog"), "{}", run.stderr());
}

/// SIGTERM ends wait with code 0 through the normal shutdown: the processes
/// users started get TERM. Control: a `run` job killed by TERM gives 143.
#[test]
fn sigterm_ends_wait_with_zero() {
    let mut run = start("", "wait", &[("LABKIT_IDLE_TIMEOUT", "0")]);
    assert!(run.logged("set up; waiting"), "{}", run.stderr());
    run.signal(libc::SIGTERM);
    assert_eq!(run.wait(), 0, "{}", run.stderr());
    assert!(run.stderr().contains("received SIGTERM"), "{}", run.stderr());
    let mut run = start("", "run -- sleep 600", &[]);
    assert!(run.logged("started sleep"), "{}", run.stderr());
    run.signal(libc::SIGTERM);
    assert_eq!(run.wait(), 143, "{}", run.stderr());
}

/// `LABKIT_IDLE_LOG` on a shared volume: a link the user planted in its
/// place (in a sticky world-writable directory, or in a directory the user
/// owns), or a hard link, never makes PID 1 append elsewhere; the start
/// warns once and goes on. Control: an ordinary file there gets the lines.
#[test]
fn idle_log_never_writes_through_a_planted_link() {
    let plants = [
        (
            "sticky",
            "mkdir -m 1777 {D}/shared; ln -s {D}/victim {D}/shared/idle.log; chown -h 123456 {D}/shared/idle.log",
        ),
        ("user dir", "mkdir -m 755 {D}/shared; ln -s {D}/victim {D}/shared/idle.log; chown 123456 {D}/shared"),
        ("hard link", "mkdir -m 1777 {D}/shared; ln {D}/victim {D}/shared/idle.log"),
        ("control", "mkdir -m 1777 {D}/shared"),
    ];
    for (what, plant) in plants {
        let prelude = format!("echo victim > {{D}}/victim; chmod 644 {{D}}/victim; {plant}");
        let extra =
            [("LABKIT_IDLE_TIMEOUT", "1s"), ("LABKIT_IDLE_LOG", "{D}/shared/idle.log"), ("LABKIT_IDLE_BUSY", "")];
        let mut run = start(&prelude, "wait", &extra);
        assert_eq!(run.wait(), 0, "{what}: {}", run.stderr());
        let err = run.stderr();
        assert_eq!(run.read("victim"), "victim\n", "{what}: PID 1 wrote through the link:\n{err}");
        let warned = err.lines().filter(|l| l.contains("cannot append to LABKIT_IDLE_LOG file")).count();
        if what == "control" {
            assert_eq!(warned, 0, "{err}");
            assert!(run.read("shared/idle.log").contains("stopping the container"), "control: {err}");
        } else {
            assert_eq!(warned, 1, "{what}: one warning:\n{err}");
            let why = if what == "hard link" { "one link" } else { "is not followed" };
            assert!(err.contains(why), "{what}: {err}");
        }
    }
}

/// A busy process named like a forged log line (the issue's
/// `"\nx::0:0::/:\n"`) is logged escaped, on stderr and in the idle log:
/// no line starts with the forged text. Control: the escaped name is there.
#[test]
fn process_names_are_escaped_in_log_lines_and_the_idle_log() {
    let job = "run -- sh -c 'printf \"\\nlabinit: forged\" > /proc/$$/comm; while [ ! -e {D}/stop ]; do :; done'";
    let mut run = start("", job, &[("LABKIT_IDLE_TIMEOUT", "1s"), ("LABKIT_IDLE_LOG", "{D}/idle.log")]);
    assert!(run.logged("idle watchdog: busy"), "{}", run.stderr());
    std::fs::write(run.path("stop"), "").unwrap();
    assert_eq!(run.wait(), 0, "{}", run.stderr());
    let err = run.stderr();
    let log = run.read("idle.log");
    for text in [&err, &log] {
        // The kernel keeps 15 bytes of a name: "\nlabinit: forge".
        assert!(!text.lines().any(|l| l.starts_with("labinit: forge")), "a forged line:\n{text}");
        assert!(text.contains("busy: \\nlabinit: forge (pid"), "control: the name was logged escaped:\n{text}");
    }
}
