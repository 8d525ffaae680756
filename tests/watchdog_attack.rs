//! Review r15: attacks on the idle watchdog's process reader of 4446270
//! (`src/init/procfs/scan.rs`: each process's CPU-time clock, `stat` re-read
//! only when the CPU time moved, the `/proc` listing skipped while
//! `loadavg`'s last pid stands still, the `/proc` entry's inode number to
//! tell a reused pid). labinit is PID 1 of a private PID namespace
//! (tests/common/ns.rs), as root, so a job may write the namespace's
//! `/proc/sys/kernel/ns_last_pid` or call `clone3` with `set_tid` to put a
//! process on a chosen pid.
//!
//! Each attack has its right value and a negative control. Tests marked
//! `#[ignore = "bug: …"]` assert the right behaviour and fail today; run them
//! with `cargo test --test watchdog_attack -- --ignored`.
//!
//! Names: `trainer` is a copy of `sleep` and the only busy name
//! (LABKIT_IDLE_BUSY) where a test uses the name rule, so the python3 that
//! drives a scenario never counts by its name; `{D}/python3` is a copy of
//! `sh` where a test needs a process named like the sleeper's rule.

mod common;

use std::time::Duration;

use common::ns::Run;
use common::watchdog::{python, stop, up_after, wait_file};

/// labinit (PID 1) running `job`, checks every 0.2s (see
/// [`common::watchdog::start`]).
fn start(prelude: &str, job: &str, extra: &[(&str, &str)], files: &[(&str, &str)]) -> Run {
    common::watchdog::start("0.2s", prelude, job, extra, files)
}

/// Puts `trainer` (busy by name) on a process `A`, lets the watchdog follow
/// it for a second, ends it, and starts a second process `B` (argv[2]:
/// `trainer` or `sleep`) — on A's pid when argv[1] says `reuse`, after a
/// throw-away process when it says `reuse-after-fork` (the namespace's last
/// pid moves on, so the next scan lists `/proc`), on a fresh pid when
/// `fresh`. Writes `A=… B=…` to `{D}/pids` once B runs.
const REUSE_DRIVER: &str = r#"
import os, sys, time, subprocess
how, second = sys.argv[1], sys.argv[2]
d = os.path.dirname(os.path.abspath(__file__))
exe = {"trainer": d + "/trainer", "sleep": "/bin/sleep"}[second]
a = subprocess.Popen([d + "/trainer", "600"])
P = a.pid
time.sleep(1.0)
a.kill(); a.wait()
if how == "reuse-after-fork":
    subprocess.run(["/bin/true"])
    time.sleep(0.6)  # checks every 0.2 s: one sees the moved last pid
if how.startswith("reuse"):
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(P - 1))
b = subprocess.Popen([exe, "600"])
with open(d + "/pids.tmp", "w") as f:
    f.write(f"A={P} B={b.pid}\n")
os.rename(d + "/pids.tmp", d + "/pids")
time.sleep(600)
"#;

fn reuse_run(how: &str, second: &str) -> (Run, String) {
    let job = format!("{} {{D}}/driver.py {how} {second}", python());
    let run = start(
        "true",
        &job,
        &[("LABKIT_IDLE_TIMEOUT", "3s"), ("LABKIT_IDLE_BUSY", "trainer")],
        &[("driver.py", REUSE_DRIVER)],
    );
    assert!(run.logged("idle watchdog: busy: trainer (pid"), "{}", run.stderr());
    wait_file(&run, "pids");
    let pids = run.read("pids");
    (run, pids)
}

/// A `trainer` (busy by name) started on the pid of a process that just
/// ended, with no other process created in between: the namespace's last
/// pid (`loadavg`) reads the same as at the previous scan, so the reader
/// skips the listing of `/proc` for good and never sees the new process;
/// the container is stopped as idle while `trainer` runs. Reproduction: the
/// driver above with `reuse trainer` (ns_last_pid = A-1, then fork). The
/// reader before 4446270 skipped the listing the same way (same failure).
/// Control: the same start on a fresh pid keeps the container up.
#[test]
fn a_process_on_the_pid_just_freed_is_seen() {
    let (mut run, pids) = reuse_run("reuse", "trainer");
    let (a, b) = pids.trim().split_once(' ').unwrap();
    assert_eq!(a[2..], b[2..], "B took A's pid: {pids}");
    assert!(up_after(&mut run, Duration::from_secs(5)), "stopped although trainer ({b}) runs:\n{}", run.stderr());
    stop(&mut run);
}

#[test]
fn control_a_process_on_a_fresh_pid_is_seen() {
    let (mut run, pids) = reuse_run("fresh", "trainer");
    let (a, b) = pids.trim().split_once(' ').unwrap();
    assert_ne!(a[2..], b[2..], "{pids}");
    assert!(up_after(&mut run, Duration::from_secs(5)), "stopped although trainer runs:\n{}", run.stderr());
    stop(&mut run);
}

/// With a listing in between (another process was created first, so the
/// last pid moved), a process on a reused pid is read afresh: it neither
/// inherits the old process's name (a plain `sleep` on the old `trainer`'s
/// pid lets the container stop) nor misses its own (a `trainer` there keeps
/// it up). The two cases are each other's control.
#[test]
fn a_reused_pid_after_a_listing_takes_nothing_from_the_old_process() {
    let (mut run, pids) = reuse_run("reuse-after-fork", "sleep");
    let (a, b) = pids.trim().split_once(' ').unwrap();
    assert_eq!(a[2..], b[2..], "B took A's pid: {pids}");
    assert_eq!(run.wait(), 0, "a sleep on trainer's old pid kept it up:\n{}", run.stderr());
    assert!(run.stderr().contains("exiting with code 0 (idle)"), "{}", run.stderr());

    let (mut run, pids) = reuse_run("reuse-after-fork", "trainer");
    let (a, b) = pids.trim().split_once(' ').unwrap();
    assert_eq!(a[2..], b[2..], "B took A's pid: {pids}");
    assert!(up_after(&mut run, Duration::from_secs(5)), "stopped although trainer ({b}) runs:\n{}", run.stderr());
    stop(&mut run);
}

/// Starts `trainer` on pid 500 with `clone3` and `set_tid` (what CRIU does
/// to restore a process tree) after a second of quiet, or with a plain
/// fork with `fork` in argv[1]. `set_tid` takes the pid without moving the
/// namespace's pid cursor: `loadavg`'s last pid reads the same.
const SET_TID_DRIVER: &str = r#"
import ctypes, os, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
d = os.path.dirname(os.path.abspath(__file__))
argv = [d + "/trainer", "600"]
time.sleep(1.0)
if sys.argv[1] == "fork":
    pid = os.fork()
    if pid == 0:
        os.execv(argv[0], argv)
else:
    tid = (ctypes.c_int * 1)(500)
    # struct clone_args (88 bytes): flags, pidfd, child_tid, parent_tid,
    # exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup.
    args = (ctypes.c_uint64 * 11)(0, 0, 0, 0, signal.SIGCHLD, 0, 0, 0, ctypes.addressof(tid), 1, 0)
    pid = libc.syscall(435, args, 88)
    if pid == 0:
        os.execv(argv[0], argv)
    if pid < 0:
        raise OSError(ctypes.get_errno(), "clone3")
with open(d + "/pid.tmp", "w") as f:
    f.write(str(pid))
os.rename(d + "/pid.tmp", d + "/pid")
time.sleep(600)
"#;

fn set_tid_run(how: &str) -> (Run, String) {
    let job = format!("{} {{D}}/driver.py {how}", python());
    let run = start(
        "true",
        &job,
        &[("LABKIT_IDLE_TIMEOUT", "3s"), ("LABKIT_IDLE_BUSY", "trainer")],
        &[("driver.py", SET_TID_DRIVER)],
    );
    wait_file(&run, "pid");
    let pid = run.read("pid");
    (run, pid)
}

/// A process created by `clone3` with `set_tid` (CRIU's restore) leaves the
/// namespace's pid cursor, hence `loadavg`'s last pid, where it was: the
/// reader never lists `/proc` again and the `trainer` on pid 500 is never
/// seen; the container stops as idle while it runs.
/// Control: the same `trainer` started by a plain fork keeps it up.
#[test]
fn a_process_created_on_a_chosen_pid_by_clone3_is_seen() {
    let (mut run, pid) = set_tid_run("set_tid");
    assert_eq!(pid, "500");
    assert!(up_after(&mut run, Duration::from_secs(5)), "stopped although trainer (pid 500) runs:\n{}", run.stderr());
    stop(&mut run);
}

#[test]
fn control_the_same_process_forked_is_seen() {
    let (mut run, pid) = set_tid_run("fork");
    assert_ne!(pid, "500");
    assert!(run.logged("idle watchdog: busy: trainer (pid"), "{}", run.stderr());
    assert!(up_after(&mut run, Duration::from_secs(5)), "stopped although trainer runs:\n{}", run.stderr());
    stop(&mut run);
}

/// A python3 whose main thread ends with `pthread_exit` while a worker
/// thread spins: `/proc/PID/stat` shows the process as `Z` (its leader is a
/// zombie, `ps` shows `Zl`), and the watchdog skips zombies before any rule,
/// so neither the CPU it uses (a whole core) nor its name counts: stopped as
/// idle. The reader before 4446270 kept the first `stat` and never saw the
/// `Z`, so the name rule kept such a process busy; 4446270 re-reads `stat`
/// and turned that into a false idle. A true zombie has one thread
/// (`stat` field 20) and a CPU time that no longer moves.
/// Control: the main thread joins the worker instead, and the container
/// stays up by each rule.
const LEADER_EXIT: &str = r#"
import ctypes, os, sys, threading, time
d = os.path.dirname(os.path.abspath(__file__))
def work():
    while not os.path.exists(d + "/stop"):
        pass
t = threading.Thread(target=work)
t.start()
time.sleep(0.3)
if sys.argv[1] == "exit":
    ctypes.CDLL(None).pthread_exit(None)
t.join()
"#;

fn leader_exit_stays_up(how: &str, busy_names: &str) -> (bool, String) {
    let job = format!("{} {{D}}/spin.py {how}", python());
    let mut run = start(
        "true",
        &job,
        &[("LABKIT_IDLE_TIMEOUT", "1s"), ("LABKIT_IDLE_BUSY", busy_names)],
        &[("spin.py", LEADER_EXIT)],
    );
    let up = up_after(&mut run, Duration::from_secs(3));
    if up {
        stop(&mut run);
    } else {
        run.wait();
    }
    (up, run.stderr())
}

#[test]
fn a_process_whose_main_thread_exited_while_workers_compute_keeps_it_busy() {
    for busy_names in ["", "python"] {
        let (up, err) = leader_exit_stays_up("exit", busy_names);
        assert!(up, "LABKIT_IDLE_BUSY={busy_names:?}: stopped although a worker thread spins:\n{err}");
    }
}

#[test]
fn control_the_same_process_with_its_main_thread_waiting_keeps_it_busy() {
    for busy_names in ["", "python"] {
        let (up, err) = leader_exit_stays_up("join", busy_names);
        assert!(up, "LABKIT_IDLE_BUSY={busy_names:?}: control stopped:\n{err}");
    }
}

/// A zombie named python3 whose parent (`trainer`, a `sleep` that never
/// waits) never reaps it does not keep the container busy: the reader sees
/// its `stat` turn to `Z` (its exit used CPU, so `stat` is read again).
/// Before 4446270 the reader kept the first `stat` it read, never saw the
/// `Z`, and the zombie kept the container up for good (checked by building
/// 9759fea). Control: the python3 keeps running, and the container stays up.
#[test]
fn a_zombie_named_python_that_is_never_reaped_lets_it_stop() {
    for control in [false, true] {
        let body = if control { "while [ ! -e {D}/stop ]; do sleep 0.1; done" } else { "sleep 1" };
        let job = format!("sh -c '{{D}}/python3 -c \"{body}\" & exec {{D}}/trainer 600'");
        let mut run = start("true", &job, &[("LABKIT_IDLE_TIMEOUT", "1s"), ("LABKIT_IDLE_BUSY", "python")], &[]);
        assert!(run.logged("idle watchdog: busy: python3 (pid"), "{}", run.stderr());
        if control {
            assert!(up_after(&mut run, Duration::from_secs(3)), "control stopped:\n{}", run.stderr());
            std::fs::write(run.path("stop"), "").unwrap();
        }
        assert_eq!(run.wait(), 0, "control={control}: {}", run.stderr());
        let err = run.stderr();
        assert!(err.contains("exiting with code 0 (idle)"), "{err}");
        assert!(!err.contains("nothing was busy since the start"), "{err}");
    }
}

/// Work done by processes that each live shorter than the check interval is
/// never counted: a process is first seen without a previous CPU time, and
/// is gone by the next check, while its parent's own clock leaves out its
/// children. A loop of 0.25 s CPU-bound steps (one core, all the time) with
/// checks every 0.6 s is stopped as idle. The same held before 4446270 (the
/// default interval is 10 s: a build or a per-file loop whose steps take a
/// few seconds each is stopped). A process first seen after the previous
/// check used all of its CPU time within the interval; a parent's reaped
/// children show in its `stat` `cutime`/`cstime`.
/// Control: one long CPU-bound process keeps the container up.
#[test]
fn cpu_bound_steps_shorter_than_the_interval_keep_it_busy() {
    let (up, err) = steps_stay_up(false);
    assert!(up, "stopped although one core is busy with short steps:\n{err}");
}

#[test]
fn control_one_long_cpu_bound_process_keeps_it_busy() {
    let (up, err) = steps_stay_up(true);
    assert!(up, "control stopped:\n{err}");
}

fn steps_stay_up(long: bool) -> (bool, String) {
    let step = if long { "30" } else { "0.25" };
    let job = format!(
        "sh -c 'while [ ! -e {{D}}/stop ]; do timeout {step} sh -c \"while :; do :; done\"; done; exec sleep 600'"
    );
    let mut run = start(
        "true",
        &job,
        &[("LABKIT_IDLE_TIMEOUT", "2s"), ("LABKIT_IDLE_INTERVAL", "0.6s"), ("LABKIT_IDLE_BUSY", "")],
        &[],
    );
    let up = up_after(&mut run, Duration::from_secs(4));
    if up {
        stop(&mut run);
    } else {
        run.wait();
    }
    (up, run.stderr())
}

/// Processes appearing and dying at a high rate (three fork loops) with
/// checks every 0.05 s: no panic, no hang, busy while the loops run, idle
/// and stopped (code 0) once they end. Control: the same job without the
/// loops is idle from the start.
#[test]
fn a_fork_storm_with_checks_every_50_ms_gives_sane_verdicts() {
    for control in [false, true] {
        let loops = if control {
            ""
        } else {
            "for j in 1 2 3; do ( while [ ! -e {D}/stop ]; do /bin/true; (exit 0) & done ) & done; wait;"
        };
        let job = format!("sh -c '{loops} exec sleep 600'");
        let mut run = start(
            "true",
            &job,
            &[("LABKIT_IDLE_TIMEOUT", "1s"), ("LABKIT_IDLE_INTERVAL", "0.05s"), ("LABKIT_IDLE_BUSY", "")],
            &[],
        );
        if !control {
            assert!(run.logged("idle watchdog: busy: sh (pid"), "{}", run.stderr());
            assert!(up_after(&mut run, Duration::from_secs(3)), "stopped during the storm:\n{}", run.stderr());
            std::fs::write(run.path("stop"), "").unwrap();
        }
        assert_eq!(run.wait(), 0, "control={control}: {}", run.stderr());
        let err = run.stderr();
        assert!(!err.contains("panic"), "{err}");
        assert!(err.contains("exiting with code 0 (idle)"), "{err}");
        assert_eq!(err.contains("nothing was busy since the start): stopping"), control, "{err}");
    }
}

/// 5000 processes under `ulimit -n 64`: the reader keeps no descriptor per
/// process, so a `trainer` among them keeps the container up, and without
/// it the container stops idle and its stop reaches all 5000 (`holdon`,
/// busy by name, holds the container while they start).
/// Control: each other.
#[test]
fn five_thousand_processes_with_64_descriptors() {
    for with_trainer in [true, false] {
        let trainer = if with_trainer { "{D}/trainer 600 & " } else { "" };
        let job = format!(
            "sh -c '{{D}}/holdon 600 & h=$!; i=0; while [ $i -lt 5000 ]; do sleep 600 & i=$((i+1)); done; {trainer}kill $h; : > {{D}}/spawned; wait'"
        );
        let mut run = start(
            "cp /bin/sleep {D}/holdon && ulimit -n 64",
            &job,
            &[("LABKIT_IDLE_TIMEOUT", "2s"), ("LABKIT_IDLE_BUSY", "trainer,holdon")],
            &[],
        );
        wait_file(&run, "spawned");
        if with_trainer {
            assert!(up_after(&mut run, Duration::from_secs(4)), "stopped although trainer runs:\n{}", run.stderr());
            stop(&mut run);
        } else {
            assert_eq!(run.wait(), 0, "{}", run.stderr());
            let err = run.stderr();
            assert!(err.contains("sent SIGTERM to the job (5001 process(es))"), "{err}");
            assert!(err.contains("exiting with code 0 (idle)"), "{err}");
        }
    }
}

/// A sleeping process keeps the parent id of its first `stat` read after
/// its parent ends (the reader re-reads `stat` only when the CPU time
/// moved; its doc: "callers use it only next to the parent's own entry,
/// which is then gone"). When that parent's pid is reused, the entry is not
/// gone: a Jupyter server started on it adopts the orphan in the watchdog's
/// tree (depth 1, a "kernel"), where the name rule does not count. Here a
/// python3 (busy by name: LABKIT_IDLE_BUSY=python) is left behind by a
/// parent that ends; the server lands on that parent's pid
/// (ns_last_pid); the python3, now labinit's child, sleeps; the container
/// is stopped as idle. Control: the server on a fresh pid, and the python3
/// keeps the container up. Needs the Jupyter venv (LABKIT_TEST_JUPYTER, as
/// tests/jupyter.rs). The reader before 4446270 kept the first `stat` whole
/// (same failure).
const ORPHAN_JOB: &str = r#"
py=/usr/bin/python3
sh -c "$py -c 'import time; time.sleep(600)' & sleep 1.5" &
x=$!
wait $x
sleep 1
[ "$1" = reuse ] && echo $((x - 1)) > /proc/sys/kernel/ns_last_pid
"$2/bin/jupyter-server" --allow-root --no-browser --port=0 --ServerApp.ip=127.0.0.1 --ServerApp.root_dir="$3" &
echo "$x $!" > "$3/pids.tmp" && mv "$3/pids.tmp" "$3/pids"
wait
"#;

fn orphan_run(reuse: bool) -> (bool, String, String) {
    let v = std::env::var("LABKIT_TEST_JUPYTER").expect("LABKIT_TEST_JUPYTER: the Jupyter venv (make unit sets it)");
    let how = if reuse { "reuse" } else { "fresh" };
    let job = format!("sh {{D}}/job.sh {how} {v} {{D}}");
    let mut run = start(
        "mkdir -p {D}/home",
        &job,
        &[
            ("HOME", "{D}/home"),
            ("LABKIT_IDLE_INTERVAL", "0.5s"),
            ("LABKIT_IDLE_TIMEOUT", "3s"),
            ("LABKIT_IDLE_BUSY", "python"),
        ],
        &[("job.sh", ORPHAN_JOB)],
    );
    wait_file(&run, "pids");
    let pids = run.read("pids");
    let runtime = run.path("home/.local/share/jupyter/runtime");
    let end = std::time::Instant::now() + Duration::from_secs(90);
    while !std::fs::read_dir(&runtime)
        .map(|rd| rd.flatten().any(|e| e.file_name().to_string_lossy().starts_with("jpserver-")))
        .unwrap_or(false)
    {
        assert!(std::time::Instant::now() < end && run.running(), "no Jupyter server:\n{}", run.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    let up = up_after(&mut run, Duration::from_secs(6));
    if up {
        stop(&mut run);
    } else {
        run.wait();
    }
    (up, pids, run.stderr())
}

#[test]
fn an_orphan_is_not_adopted_by_a_jupyter_server_on_its_old_parents_pid() {
    let (up, pids, err) = orphan_run(true);
    let (x, server) = pids.trim().split_once(' ').unwrap();
    assert_eq!(x, server, "the server took the old parent's pid");
    assert!(up, "stopped although python3 (labinit's child now) runs:\n{err}");
}

#[test]
fn control_an_orphan_beside_a_jupyter_server_on_a_fresh_pid_keeps_it_busy() {
    let (up, pids, err) = orphan_run(false);
    let (x, server) = pids.trim().split_once(' ').unwrap();
    assert_ne!(x, server);
    assert!(up, "stopped although python3 runs:\n{err}");
}

/// A process the watchdog has followed for a while without it using CPU
/// (`sh` blocked on a FIFO) execs into a python name: the exec itself runs,
/// its CPU time moves, `stat` is read again and the name rule sees the new
/// name (checks every 0.05 s, so several checks saw it still). Control: the
/// same exec into a name no rule knows (`sleep`) lets the container stop.
#[test]
fn a_followed_process_that_execs_into_a_python_name_is_seen_by_its_new_name() {
    for control in [false, true] {
        let target = if control { "/bin/sleep 600" } else { "{D}/python3 -c \"sleep 600\"" };
        let job = format!("sh -c 'read x < {{D}}/go; exec {target}'");
        let mut run = start(
            "mkfifo {D}/go",
            &job,
            // The CPU rule out of reach: an exec can cost 5 % of a 0.05 s
            // interval on a loaded machine; the name rule is what is tested.
            &[
                ("LABKIT_IDLE_TIMEOUT", "3s"),
                ("LABKIT_IDLE_INTERVAL", "0.05s"),
                ("LABKIT_IDLE_BUSY", "python"),
                ("LABKIT_IDLE_CPU", "100000"),
            ],
            &[],
        );
        // Idle (the blocked sh uses no CPU) for a while: followed, stat cached.
        assert!(run.logged("idle watchdog: idle (nothing was busy since the start)"), "{}", run.stderr());
        std::thread::sleep(Duration::from_millis(500));
        std::fs::write(run.path("go"), "go\n").unwrap();
        if control {
            assert_eq!(run.wait(), 0, "{}", run.stderr());
            assert!(!run.stderr().contains("idle watchdog: busy"), "{}", run.stderr());
        } else {
            assert!(run.logged("idle watchdog: busy: python3 (pid"), "{}", run.stderr());
            assert!(up_after(&mut run, Duration::from_secs(4)), "stopped although python3 runs:\n{}", run.stderr());
            stop(&mut run);
        }
    }
}

/// Following 300 processes (the default descriptor limit) holds no
/// descriptor per process in labinit: the reader before 4446270 held two
/// each (`schedstat`, `comm`; checked by building 9759fea: 610). Control:
/// the same count of the job's `sh`, which holds 7 extra descriptors,
/// sees them.
#[test]
fn following_300_processes_holds_no_descriptor_per_process() {
    let job = "sh -c 'i=0; while [ $i -lt 300 ]; do sleep 600 & i=$((i+1)); done; exec 3</dev/null 4</dev/null 5</dev/null 6</dev/null 7</dev/null 8</dev/null 9</dev/null; : > {D}/spawned; wait'";
    let mut run = start("true", job, &[("LABKIT_IDLE_TIMEOUT", "600s"), ("LABKIT_IDLE_BUSY", "")], &[]);
    wait_file(&run, "spawned");
    std::thread::sleep(Duration::from_secs(1)); // five checks over the 300
    let fds = |pid: i32| std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let init = run.init();
    let labinit = fds(init);
    let sh = run.ns_procs().into_iter().find(|p| p.1 == init && p.3 == "sh").expect("the job's sh").0;
    let job_fds = fds(sh);
    assert!(labinit < 16, "labinit holds {labinit} descriptors over 300 processes");
    assert!(job_fds >= 10, "control: the job's sh holds 3 + 7 descriptors, counted {job_fds}");
    stop(&mut run);
}

/// A `/proc` the watchdog cannot read counts as "nothing busy": with an
/// empty directory on /proc (a tmpfs; the same with `ulimit -n 6`, where
/// opening /proc fails with EMFILE) labinit logs "idle (nothing was busy
/// since the start)" and stops the container although `trainer` runs. A
/// scan that does not even list labinit itself saw nothing; the watchdog
/// should say it cannot see the processes and not stop the container on
/// that. The same before 4446270 (`for_each` returns nothing on error).
/// Control: the real /proc, and `trainer` keeps the container up.
#[test]
fn a_proc_that_shows_nothing_does_not_stop_a_busy_container() {
    let (up, err) = blind_run("mount -t tmpfs none /proc");
    assert!(up, "stopped as idle although the watchdog saw no process at all:\n{err}");
}

#[test]
fn control_the_real_proc_shows_the_busy_process() {
    let (up, err) = blind_run("true");
    assert!(up, "control stopped:\n{err}");
    assert!(err.contains("idle watchdog: busy: trainer (pid"), "{err}");
}

fn blind_run(prelude: &str) -> (bool, String) {
    let mut run = start(
        prelude,
        "sh -c '{D}/trainer 600 & exec sleep 600'",
        &[("LABKIT_IDLE_TIMEOUT", "1s"), ("LABKIT_IDLE_BUSY", "trainer")],
        &[],
    );
    assert!(run.logged("labinit: started "), "{}", run.stderr());
    let up = up_after(&mut run, Duration::from_secs(3));
    if up {
        stop(&mut run);
    } else {
        run.wait();
    }
    (up, run.stderr())
}

/// The sessions of services are left out of the watchdog (and of the job)
/// by session id, and the list only grows: a service that is done (exit 0;
/// "a service that is not wanted exits 0 at once") or restarted leaves its
/// id there for good. Once its session is empty, that number is a free pid:
/// a job process on it that founds a session (`setsid`, as tmux and screen
/// do for each window) is taken for the service: `trainer` there never
/// counts and the container is stopped as idle. (Pids below 300 come back
/// only through ns_last_pid, as here: after a wrap the kernel hands out
/// 300 and up, where the sessions of restarted services also land.)
/// Control: the same `setsid trainer` on a fresh pid keeps the container up.
const SESSION_JOB: &str = r#"
while [ ! -e "$2/svc.pid" ]; do sleep 0.05; done
s=$(cat "$2/svc.pid")
sleep 0.5
[ "$1" = reuse ] && echo $((s - 1)) > /proc/sys/kernel/ns_last_pid
setsid "$2/trainer" 600 &
echo "$s $!" > "$2/pids.tmp" && mv "$2/pids.tmp" "$2/pids"
wait
"#;

fn session_run(reuse: bool) -> (bool, String, String) {
    let how = if reuse { "reuse" } else { "fresh" };
    let mut run = start(
        "mkdir -p {D}/root/svc && printf '#!/bin/sh\\necho $$ > {D}/svc.pid\\nexit 0\\n' > {D}/root/svc/once.sh && chmod 755 {D}/root/svc/once.sh",
        &format!("sh {{D}}/job.sh {how} {{D}}"),
        &[("LABKIT_SERVICES_DIR", "/svc"), ("LABKIT_IDLE_TIMEOUT", "3s"), ("LABKIT_IDLE_BUSY", "trainer")],
        &[("job.sh", SESSION_JOB)],
    );
    wait_file(&run, "pids");
    let pids = run.read("pids");
    let up = up_after(&mut run, Duration::from_secs(5));
    if up {
        stop(&mut run);
    } else {
        run.wait();
    }
    (up, pids, run.stderr())
}

#[test]
fn a_session_founded_on_a_done_services_pid_counts() {
    let (up, pids, err) = session_run(true);
    let (s, t) = pids.trim().split_once(' ').unwrap();
    assert_eq!(s, t, "trainer took the service's pid: {pids}");
    assert!(up, "stopped although trainer runs in a session of its own:\n{err}");
}

#[test]
fn control_a_session_founded_on_a_fresh_pid_counts() {
    let (up, pids, err) = session_run(false);
    let (s, t) = pids.trim().split_once(' ').unwrap();
    assert_ne!(s, t, "{pids}");
    assert!(up, "stopped although trainer runs:\n{err}");
    assert!(err.contains("service once: done (exit code 0)"), "{err}");
}

/// A process the watchdog follows in a service's session (left out), idle
/// for a while, founds a session of its own (`setsid`) and execs into
/// `trainer`: its CPU time moved, so `stat` is read again and the new
/// session counts (a session founded anew is the job's, as with ssh
/// logins). Before 4446270 the reader kept the session of its first `stat`
/// and `trainer` never counted (checked by building 9759fea).
/// Control: the same exec without `setsid` stays in the service's
/// session and never counts: the container stops as idle.
#[test]
fn a_process_that_leaves_a_services_session_by_setsid_counts() {
    for control in [false, true] {
        let exec = if control { "exec" } else { "exec setsid" };
        let svc =
            format!("#!/bin/sh\nsh -c 'read x < {{D}}/go; {exec} {{D}}/trainer 600' &\necho > {{D}}/svc.ready\nwait\n");
        let mut run = start(
            "mkdir -p {D}/root/svc && mkfifo {D}/go",
            "sleep 600",
            &[("LABKIT_SERVICES_DIR", "/svc"), ("LABKIT_IDLE_TIMEOUT", "4s"), ("LABKIT_IDLE_BUSY", "trainer")],
            &[("root/svc/hold.sh", &svc)],
        );
        wait_file(&run, "svc.ready");
        std::thread::sleep(Duration::from_secs(1)); // followed, stat cached
        std::fs::write(run.path("go"), "go\n").unwrap();
        if control {
            assert_eq!(run.wait(), 0, "{}", run.stderr());
            let err = run.stderr();
            assert!(!err.contains("idle watchdog: busy"), "control: a service's process counted:\n{err}");
            assert!(err.contains("exiting with code 0 (idle)"), "{err}");
        } else {
            assert!(run.logged("idle watchdog: busy: trainer (pid"), "{}", run.stderr());
            assert!(up_after(&mut run, Duration::from_secs(5)), "stopped although trainer runs:\n{}", run.stderr());
            stop(&mut run);
        }
    }
}

/// Threads that each live 0.1 s and compute, one after another, while the
/// main thread waits in `join`: the process's clock keeps the CPU time of
/// threads that ended (unlike processes that ended, see
/// `cpu_bound_steps_shorter_than_the_interval_keep_it_busy`), so it counts.
/// Before 4446270 (the main thread's `schedstat`) it did not (checked by
/// building 9759fea).
/// Control: the threads sleep their 0.1 s, and the container stops idle.
#[test]
fn short_lived_threads_that_compute_keep_it_busy() {
    for control in [false, true] {
        let work =
            if control { "time.sleep(0.1)" } else { "end = time.time() + 0.1\n    while time.time() < end: pass" };
        let code = format!(
            "import threading, time\ndef work():\n    {work}\nwhile True:\n    t = threading.Thread(target=work); t.start(); t.join()\n"
        );
        let job = format!("{} {{D}}/threads.py", python());
        let mut run = start(
            "true",
            &job,
            &[("LABKIT_IDLE_TIMEOUT", "2s"), ("LABKIT_IDLE_INTERVAL", "0.5s"), ("LABKIT_IDLE_BUSY", "")],
            &[("threads.py", &code)],
        );
        if control {
            assert_eq!(run.wait(), 0, "{}", run.stderr());
            assert!(run.stderr().contains("nothing was busy since the start): stopping"), "{}", run.stderr());
        } else {
            assert!(run.logged("idle watchdog: busy: python3 (pid"), "{}", run.stderr());
            assert!(up_after(&mut run, Duration::from_secs(4)), "stopped although threads compute:\n{}", run.stderr());
            stop(&mut run);
        }
    }
}
