//! Review r16: attacks on the idle watchdog's process reader of c2a8ec8
//! (`src/init/procfs/scan.rs`): the CPU time of children a process reaped
//! (`cutime + cstime`) counts in it, less what its ended children were
//! already counted with (credited to the nearest ancestor still there); a
//! process first seen after the first scan counts with all its CPU time;
//! `/proc` listed every 8th check and on checks that could stop the
//! container; and the services' sessions forgotten once empty (fea38a3).
//! labinit is PID 1 of a private PID namespace (tests/common/ns.rs), as root.
//!
//! Each attack has its right value and a negative control. Tests marked
//! `#[ignore = "bug: …"]` assert the right behaviour and fail today; run them
//! with `cargo test --test watchdog_attack2 -- --ignored`.
//!
//! Names: `trainer` is a copy of `sleep`, the only busy name where a test
//! uses the name rule (LABKIT_IDLE_BUSY); elsewhere the name rule is off.

mod common;

use std::time::Duration;

use common::ns::Run;
use common::watchdog::{python, stop, up_after, wait_file};

/// labinit (PID 1) running `job`, checks every 0.5s (see
/// [`common::watchdog::start`]).
fn start(prelude: &str, job: &str, extra: &[(&str, &str)], files: &[(&str, &str)]) -> Run {
    common::watchdog::start("0.5s", prelude, job, extra, files)
}

/// Whether the run stays up for `d`; stops it if so. (up, stderr)
fn stays_up(mut run: Run, d: Duration) -> (bool, String) {
    let up = up_after(&mut run, d);
    if up {
        stop(&mut run);
    } else {
        run.wait();
    }
    (up, run.stderr())
}

/// Batches of thirty forked workers, one after another, that each compute
/// 25 ms of CPU and exit (0.75 s of CPU per batch, about half a core all the
/// time), then a pause of 1.2 s. The driver knows a worker ended by the end
/// of a pipe it holds. How the workers are reaped (argv[1]):
/// - `prompt`: the driver waits for each (reaps) as it ends;
/// - `late`: it reaps the batch after the pause: each worker is a zombie at
///   a check or two, as with `Popen` objects polled now and then;
/// - `orphan`: a middle process forks each and exits at once: they are
///   orphans, reaped by labinit (`( cmd & )` in a shell);
/// - `ignore`: SIGCHLD is ignored, the kernel reaps them itself.
///
/// The checks (0.5 s) use a CPU limit of 50 % (250 ms): one worker never
/// reaches it, a batch does, so what is tested is whether the CPU of ended
/// workers is counted.
const BATCH_DRIVER: &str = r#"
import os, signal, sys, time
how = sys.argv[1]
d = os.path.dirname(os.path.abspath(__file__))
if how == "ignore":
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
def work():
    end = time.process_time() + 0.025
    while time.process_time() < end:
        pass
    os._exit(0)
def worker():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        if how == "orphan" and os.fork() != 0:
            os._exit(0)
        work()
    os.close(w)
    if how == "orphan":
        os.waitpid(pid, 0)
    while os.read(r, 1):
        pass
    os.close(r)
    if how == "prompt":
        os.waitpid(pid, 0)
    return pid
while not os.path.exists(d + "/stop"):
    pids = [worker() for _ in range(30)]
    time.sleep(1.2)
    if how == "late":
        for p in pids:
            os.waitpid(p, 0)
open(d + "/done", "w").close()
time.sleep(600)
"#;

fn batch_run(how: &str) -> (bool, String) {
    let job = format!("{} {{D}}/batch.py {how}", python());
    let run = start(
        "true",
        &job,
        &[("LABKIT_IDLE_TIMEOUT", "3s"), ("LABKIT_IDLE_CPU", "50"), ("LABKIT_IDLE_BUSY", "")],
        &[("batch.py", BATCH_DRIVER)],
    );
    stays_up(run, Duration::from_secs(8))
}

/// Control of the three below: workers reaped as they end by the driver
/// keep the container busy (their CPU shows in its `cutime`); and with the
/// container truly idle (no batches: `done` at once) it stops.
#[test]
fn control_workers_reaped_as_they_end_keep_it_busy() {
    let (up, err) = batch_run("prompt");
    assert!(up, "stopped although batches of workers use half a core:\n{err}");
    assert!(err.contains("idle watchdog: busy: python3 (pid"), "{err}");
    // Negative control: the same driver with `stop` already there.
    let job = format!("{} {{D}}/batch.py prompt", python());
    let mut run = start(
        "touch {D}/stop",
        &job,
        &[("LABKIT_IDLE_TIMEOUT", "3s"), ("LABKIT_IDLE_CPU", "50"), ("LABKIT_IDLE_BUSY", "")],
        &[("batch.py", BATCH_DRIVER)],
    );
    assert_eq!(run.wait(), 0, "{}", run.stderr());
    assert!(run.stderr().contains("exiting with code 0 (idle)"), "{}", run.stderr());
}

/// A worker that ended and is a zombie at a check is skipped there (zombies
/// are skipped before any rule), though its CPU since the previous check
/// was used; when its parent reaps it, its whole CPU time is credited as
/// "counted already" and taken off the parent's reaped time. So the CPU of
/// every worker that ended between two checks and was reaped a check later
/// is counted nowhere: the batches (half a core) are stopped as idle.
/// Reproduction: BATCH_DRIVER `late`. The right value: busy, as `prompt`.
#[test]
fn workers_reaped_a_check_after_they_end_keep_it_busy() {
    let (up, err) = batch_run("late");
    assert!(up, "stopped although batches of workers use half a core:\n{err}");
}

/// Workers orphaned by a middle process that exits at once are reaped by
/// labinit, whose own sample is left out (`excluded_pids`): the CPU of
/// orphans that live between two checks is counted nowhere.
#[test]
#[ignore = "known limitation (README): orphans that live between two checks are reaped by labinit, whose reaped CPU is left out (false idle)"]
fn orphaned_workers_keep_it_busy() {
    let (up, err) = batch_run("orphan");
    assert!(up, "stopped although batches of orphaned workers use half a core:\n{err}");
}

/// With SIGCHLD ignored the kernel reaps the workers itself and their CPU
/// is never added to the parent's `cutime`: counted nowhere.
#[test]
#[ignore = "known limitation (README): children of a process that ignores SIGCHLD are reaped by the kernel; their CPU shows nowhere (false idle)"]
fn workers_of_a_parent_that_ignores_sigchld_keep_it_busy() {
    let (up, err) = batch_run("ignore");
    assert!(up, "stopped although batches of workers use half a core:\n{err}");
}

/// A subreaper S (`PR_SET_CHILD_SUBREAPER`, as `tini -s`, systemd --user or
/// a Python process manager set it) runs P, which runs X. X computes for
/// 2 s (counted: the container is busy), then sleeps; the watchdog follows
/// it without reading its `stat` again (its CPU time stands still). Then
/// (`adopted`) P exits: X is S's child now, but the reader still holds P as
/// X's parent. S kills X and reaps it: S's `cutime` grows by X's 2 s, which
/// were counted already, and the credit for them goes to P's pid (gone)
/// instead of S: S reads as busy (about 400 % of a core over a 0.5 s
/// check) and the idle time starts again. Once per such child: a manager
/// that adopts long workers restarts the idle time each time one ends.
/// Control (`parent`): P stays and reaps X itself: the credit reaches P and
/// nothing is busy after X's 2 s.
const ADOPT_DRIVER: &str = r#"
import ctypes, os, signal, sys, time
how = sys.argv[1]
d = os.path.dirname(os.path.abspath(__file__))
def wait_for(name):
    while not os.path.exists(d + "/" + name):
        time.sleep(0.05)
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
r, w = os.pipe()
p = os.fork()
if p == 0:
    x = os.fork()
    if x == 0:
        end = time.process_time() + 2.0
        while time.process_time() < end:
            pass
        open(d + "/burnt", "w").close()
        while True:
            signal.pause()
    os.write(w, b"%d\n" % x)
    wait_for("leave")
    if how == "adopted":
        os._exit(0)
    os.waitpid(x, 0)
    while True:
        signal.pause()
x = int(os.read(r, 32))
if how == "adopted":
    os.waitpid(p, 0)
wait_for("go")
os.kill(x, signal.SIGKILL)
if how == "adopted":
    os.waitpid(x, 0)
open(d + "/killed", "w").close()
while True:
    signal.pause()
"#;

fn adopt_run(how: &str) -> String {
    let job = format!("{} {{D}}/adopt.py {how}", python());
    let mut run =
        start("true", &job, &[("LABKIT_IDLE_TIMEOUT", "6s"), ("LABKIT_IDLE_BUSY", "")], &[("adopt.py", ADOPT_DRIVER)]);
    wait_file(&run, "burnt");
    assert!(run.logged("idle watchdog: idle (last busy: python3"), "{}", run.stderr());
    std::thread::sleep(Duration::from_secs(1)); // X sleeps, followed by its clock alone
    std::fs::write(run.path("leave"), "").unwrap();
    std::thread::sleep(Duration::from_secs(1)); // P gone (adopted): X is S's now
    std::fs::write(run.path("go"), "").unwrap();
    wait_file(&run, "killed");
    std::thread::sleep(Duration::from_millis(1500)); // three checks
    assert!(run.running(), "{}", run.stderr());
    stop(&mut run);
    run.stderr()
}

fn busy_lines(err: &str) -> usize {
    err.lines().filter(|l| l.contains("idle watchdog: busy:")).count()
}

#[test]
#[ignore = "known limitation (README), one check: a child adopted by a subreaper is credited to its dead parent's pid; its whole CPU time counts again in the subreaper when reaped (false busy)"]
fn a_child_adopted_by_a_subreaper_does_not_count_again_when_reaped() {
    let err = adopt_run("adopted");
    assert_eq!(busy_lines(&err), 1, "X's 2 s counted again when its adoptive parent reaped it:\n{err}");
}

#[test]
fn control_a_child_reaped_by_its_own_parent_does_not_count_again() {
    let err = adopt_run("parent");
    assert_eq!(busy_lines(&err), 1, "{err}");
}

/// A service that starts a daemon in its own session and exits 0 (the
/// daemon here is `trainer`, busy by name): the daemon stays the service's
/// while it runs (its session is not forgotten: a process is left in it),
/// so it never counts. The job then ends the daemon (labinit reaps it and
/// forgets the empty session), and starts `setsid trainer`, on the
/// service's old pid when argv[1] is `reuse` (ns_last_pid), on a fresh one
/// otherwise: it counts either way. With `escape` the daemon founds a
/// session of its own (`setsid`): it is the job's and counts at once (the
/// negative control of "never counts").
const DAEMON_JOB: &str = r#"
while [ ! -e "$2/daemon.pid" ]; do sleep 0.05; done
s=$(cat "$2/svc.pid")
sleep 1.5
: > "$2/phase1"
kill $(cat "$2/daemon.pid")
sleep 0.5
[ "$1" = reuse ] && echo $((s - 1)) > /proc/sys/kernel/ns_last_pid
setsid "$2/trainer" 600 &
echo "$s $!" > "$2/pids.tmp" && mv "$2/pids.tmp" "$2/pids"
wait
"#;

/// (up, "S T" pids of the service and the job's trainer, the daemon's pid, stderr)
fn daemon_run(how: &str) -> (bool, String, String, String) {
    let setsid = if how == "escape" { "setsid " } else { "" };
    let svc = format!(
        "#!/bin/sh\necho $$ > {{D}}/svc.pid\n{setsid}{{D}}/trainer 600 &\necho $! > {{D}}/daemon.pid.tmp && mv {{D}}/daemon.pid.tmp {{D}}/daemon.pid\nexit 0\n"
    );
    let mut run = start(
        "mkdir -p {D}/root/svc",
        &format!("sh {{D}}/job.sh {how} {{D}}"),
        &[("LABKIT_SERVICES_DIR", "/svc"), ("LABKIT_IDLE_TIMEOUT", "3s"), ("LABKIT_IDLE_BUSY", "trainer")],
        &[("job.sh", DAEMON_JOB), ("root/svc/daemon.sh", &svc)],
    );
    wait_file(&run, "pids");
    let pids = run.read("pids");
    let daemon = run.read("daemon.pid").trim().to_owned();
    let up = up_after(&mut run, Duration::from_secs(4));
    if up {
        stop(&mut run);
    } else {
        run.wait();
    }
    (up, pids, daemon, run.stderr())
}

#[test]
fn a_services_daemon_stays_the_services_and_its_freed_session_counts_for_the_job() {
    for how in ["reuse", "fresh"] {
        let (up, pids, _, err) = daemon_run(how);
        let (s, t) = pids.trim().split_once(' ').unwrap();
        assert_eq!(s == t, how == "reuse", "{how}: {pids}");
        let busy: Vec<&str> = err.lines().filter(|l| l.contains("idle watchdog: busy:")).collect();
        assert!(err.contains("service daemon: done (exit code 0)"), "{how}: {err}");
        assert!(up, "{how}: stopped although the job's trainer ({t}) runs:\n{err}");
        assert!(
            !busy.is_empty() && busy.iter().all(|l| l.contains(&format!("trainer (pid {t})"))),
            "{how}: the service's daemon counted, or the job's trainer did not:\n{err}"
        );
    }
}

#[test]
fn control_a_daemon_that_founds_its_own_session_is_the_jobs() {
    let (up, _, daemon, err) = daemon_run("escape");
    let first_busy = err.lines().find(|l| l.contains("idle watchdog: busy:")).unwrap_or_default();
    assert!(up, "{err}");
    assert!(first_busy.contains(&format!("trainer (pid {daemon})")), "the escaped daemon did not count:\n{err}");
}

/// An ended service's session emptied by another reaper than labinit: the
/// service starts X (python3), which forks Y (`trainer`, in the service's
/// session), founds a session of its own and waits for Y. The service exits
/// 0 (Y keeps its session), the job ends Y, X reaps it: labinit reaps
/// nothing, yet the session is forgotten (the supervisor's loop reads the
/// table after each wakeup while such a session is known, every check at
/// least), and a job `setsid trainer` on that pid (ns_last_pid) counts.
/// Holds. Control (`exit`): X exits once Y is reaped and labinit reaps it.
const REAPER_SVC: &str = r#"#!/bin/sh
echo $$ > {D}/svc.pid
python3 -c '
import os, sys, time
y = os.fork()
if y == 0:
    os.execv("{D}/trainer", ["trainer", "600"])
os.setsid()
with open("{D}/daemon.pid.tmp", "w") as f:
    f.write(str(y))
os.rename("{D}/daemon.pid.tmp", "{D}/daemon.pid")
os.waitpid(y, 0)
if os.path.exists("{D}/exit"):
    sys.exit(0)
time.sleep(600)
' &
exit 0
"#;

fn reaper_run(exit: bool) -> (bool, String, String) {
    let prelude = if exit { "mkdir -p {D}/root/svc && touch {D}/exit" } else { "mkdir -p {D}/root/svc" };
    let mut run = start(
        prelude,
        "sh {D}/job.sh reuse {D}",
        &[("LABKIT_SERVICES_DIR", "/svc"), ("LABKIT_IDLE_TIMEOUT", "3s"), ("LABKIT_IDLE_BUSY", "trainer")],
        &[("job.sh", DAEMON_JOB), ("root/svc/reaper.sh", REAPER_SVC)],
    );
    wait_file(&run, "pids");
    let pids = run.read("pids");
    let up = up_after(&mut run, Duration::from_secs(4));
    if up {
        stop(&mut run);
    } else {
        run.wait();
    }
    (up, pids, run.stderr())
}

#[test]
fn a_services_session_emptied_by_another_reaper_is_forgotten() {
    let (up, pids, err) = reaper_run(false);
    let (s, t) = pids.trim().split_once(' ').unwrap();
    assert_eq!(s, t, "the job's trainer took the service's pid: {pids}");
    assert!(up, "stopped although the job's trainer ({t}) runs in a session of its own:\n{err}");
}

#[test]
fn control_a_services_session_emptied_while_labinit_reaps_is_forgotten() {
    let (up, pids, err) = reaper_run(true);
    let (s, t) = pids.trim().split_once(' ').unwrap();
    assert_eq!(s, t, "the job's trainer took the service's pid: {pids}");
    assert!(up, "stopped although the job's trainer ({t}) runs:\n{err}");
    assert!(err.contains(&format!("idle watchdog: busy: trainer (pid {t})")), "{err}");
}

/// A long-running child reaped long after it ended: X computes for 2 s
/// (counted as it runs: busy), exits, and is a zombie for 2 s (four checks)
/// before its parent reaps it. The parent's `cutime` then grows by X's 2 s,
/// all counted already: nothing is busy again. Holds (the zombie is still
/// followed, so its whole time is credited to the parent). Control
/// (`burn`): the parent computes 0.5 s right after reaping, and that second
/// busy period is seen.
const LATE_REAP_DRIVER: &str = r#"
import os, signal, sys, time
d = os.path.dirname(os.path.abspath(__file__))
def burn(s):
    end = time.process_time() + s
    while time.process_time() < end:
        pass
x = os.fork()
if x == 0:
    burn(2.0)
    os._exit(0)
os.waitid(os.P_PID, x, os.WEXITED | os.WNOWAIT)
time.sleep(2.0)
os.waitpid(x, 0)
if sys.argv[1] == "burn":
    burn(0.5)
open(d + "/reaped", "w").close()
while True:
    signal.pause()
"#;

fn late_reap_busy_lines(how: &str) -> String {
    let job = format!("{} {{D}}/late.py {how}", python());
    let mut run = start(
        "true",
        &job,
        &[("LABKIT_IDLE_TIMEOUT", "8s"), ("LABKIT_IDLE_BUSY", "")],
        &[("late.py", LATE_REAP_DRIVER)],
    );
    wait_file(&run, "reaped");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(run.running(), "{}", run.stderr());
    stop(&mut run);
    run.stderr()
}

#[test]
fn a_long_child_reaped_long_after_it_ended_does_not_count_again() {
    let err = late_reap_busy_lines("none");
    assert_eq!(busy_lines(&err), 1, "X's 2 s counted again at its reaping:\n{err}");
}

#[test]
fn control_the_parents_own_cpu_after_the_reaping_counts() {
    let err = late_reap_busy_lines("burn");
    assert_eq!(busy_lines(&err), 2, "{err}");
}

/// A process first seen after the reader's first scan counts with all its
/// CPU time, as if it had started since the previous check. That holds for
/// a process found by a listing that follows another listing; but a
/// process started by `clone3` with `set_tid` (CRIU's restore; the last pid
/// does not move) is first listed up to 8 checks later (`RELIST`), and its
/// CPU of all those checks counts in one. Here a forked copy of the driver
/// uses about 2 % of a core (2 ms every 100 ms; the limit is 5 %) from
/// a second after the start: on pid 500 by `clone3` (`set_tid`), it reads as
/// busy once, at several times its use. Control (`fork`): the same process
/// by a plain fork is never busy.
const DUTY_DRIVER: &str = r#"
import ctypes, os, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
d = os.path.dirname(os.path.abspath(__file__))
def duty():
    while True:
        end = time.process_time() + 0.002
        while time.process_time() < end:
            pass
        time.sleep(0.098)
time.sleep(1.0)
if sys.argv[1] == "fork":
    pid = os.fork()
else:
    tid = (ctypes.c_int * 1)(500)
    args = (ctypes.c_uint64 * 11)(0, 0, 0, 0, signal.SIGCHLD, 0, 0, 0, ctypes.addressof(tid), 1, 0)
    pid = libc.syscall(435, args, 88)
    if pid < 0:
        raise OSError(ctypes.get_errno(), "clone3")
if pid == 0:
    duty()
with open(d + "/pid.tmp", "w") as f:
    f.write(str(pid))
os.rename(d + "/pid.tmp", d + "/pid")
while True:
    signal.pause()
"#;

fn duty_run(how: &str) -> (String, String) {
    let job = format!("{} {{D}}/duty.py {how}", python());
    let mut run = start(
        "true",
        &job,
        &[("LABKIT_IDLE_TIMEOUT", "60s"), ("LABKIT_IDLE_INTERVAL", "0.2s"), ("LABKIT_IDLE_BUSY", "")],
        &[("duty.py", DUTY_DRIVER)],
    );
    wait_file(&run, "pid");
    let pid = run.read("pid");
    std::thread::sleep(Duration::from_secs(4)); // 20 checks, two listings at least
    stop(&mut run);
    (pid, run.stderr())
}

#[test]
#[ignore = "known limitation (README), one check: a process first listed several checks after its start (clone3 set_tid) counts the CPU of all those checks in one (false busy)"]
fn a_process_listed_late_counts_only_one_checks_cpu() {
    let (pid, err) = duty_run("set_tid");
    assert_eq!(pid, "500");
    assert!(!err.contains(&format!("busy: python3 (pid {pid})")), "a 2 % process read as busy:\n{err}");
}

#[test]
fn control_the_same_process_forked_is_never_busy() {
    let (pid, err) = duty_run("fork");
    assert_ne!(pid, "500");
    assert!(!err.contains(&format!("busy: python3 (pid {pid})")), "{err}");
}
