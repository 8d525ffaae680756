//! The idle watchdog with a real Jupyter server (jupyter_server and ipykernel
//! from the pinned venv of `tests/tools/jupyter-venv.sh`, `make unit` passes
//! it as LABKIT_TEST_JUPYTER; a missing venv fails these tests). labinit is
//! PID 1 of a PID namespace and runs `jupyter server` as the job; the test
//! drives it like a notebook front end (tests/helpers/jupyter_driver.py:
//! REST API for kernels, the kernel's own channels for cells).
//!
//! - a kernel that imported modules and sits idle: the container stops
//!   (exit 0) although the kernel, a process named python3, still runs;
//! - a cell running (a quiet loop, no CPU to speak of): it stays up past the
//!   timeout, then stops once the cell ends;
//! - controls: with the Jupyter rule unavailable (no runtime file where
//!   labinit looks, LABKIT_IDLE_JUPYTER=0, or a token the server refuses)
//!   the python3 kernel keeps the container busy, as before;
//! - work a notebook started in the background still counts by CPU;
//! - lab-pytorch's Jupyter configuration culls the idle kernel after
//!   labinit's timeout, and does nothing with the watchdog off.
//!
//! Timing: a process named `holdon` (LABKIT_IDLE_BUSY) keeps every container
//! busy until the test has Jupyter where it wants it ([`release`]), so a slow
//! start on a loaded machine never races the timeout; after that, the test's
//! own steps are Jupyter activity, each well within the timeout.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::ns::Run;
use nix::libc;

const TIMEOUT: &str = "10s";
/// Longer than TIMEOUT: "it stays up" means past the timeout.
const PAST_TIMEOUT: Duration = Duration::from_secs(13);

fn venv() -> PathBuf {
    let v = std::env::var_os("LABKIT_TEST_JUPYTER").map(PathBuf::from).unwrap_or_else(|| {
        panic!("LABKIT_TEST_JUPYTER is not set: run `make unit`, or tests/tools/jupyter-venv.sh DIR and set it to DIR")
    });
    assert!(
        v.join("bin/jupyter-server").is_file(),
        "no Jupyter in LABKIT_TEST_JUPYTER={}: run tests/tools/jupyter-venv.sh {0}",
        v.display()
    );
    v
}

fn env(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut e = vec![
        ("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
        ("LABKIT_STEPS_DIR", "/steps"),
        ("LABKIT_SERVICES_DIR", "/services"),
        ("LABKIT_IDLE_INTERVAL", "0.5s"),
        ("LABKIT_IDLE_BUSY", "python,holdon"),
        ("LABKIT_GRACE", "5s"),
        ("HOME", "{D}/home"),
    ];
    e.extend_from_slice(extra); // later entries win
    e
}

/// Starts `holdon` (a copy of sleep) beside labinit, before it.
const HOLD: &str = "cp /bin/sleep {D}/holdon && ( ( {D}/holdon 600 & ) & )";

/// `jupyter server` on a free loopback port, as root (the namespace's).
fn server_cmd(v: &Path) -> String {
    format!(
        "{}/bin/jupyter server --allow-root --no-browser --port=0 --ServerApp.ip=127.0.0.1 --ServerApp.root_dir={{D}}",
        v.display()
    )
}

/// labinit (PID 1) running `job` with the idle settings `extra`, held busy
/// until [`release`].
fn start(job: &str, extra: &[(&'static str, &'static str)]) -> Run {
    let script = format!("mkdir -p {{D}}/home && {HOLD}\nexec {{L}} --root {{D}}/root run -- {job}");
    Run::script(&[], &script, &env(extra), |_| {})
}

/// Kill `holdon`: from now on only the job decides. Returns the number of
/// log lines so far.
fn release(run: &Run) -> usize {
    let holdon = format!("{}\0600\0", run.path("holdon").display());
    let pid = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .find(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == holdon.as_bytes()))
        .and_then(|e| e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()))
        .unwrap_or_else(|| panic!("holdon is not running:\n{}", run.stderr()));
    let lines = run.stderr().lines().count();
    // SAFETY: plain syscall on a process this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    lines
}

/// The default runtime directory for HOME={D}/home.
const RUNTIME: &str = "home/.local/share/jupyter/runtime";

/// Wait for the server's runtime file in `dir`.
fn wait_for_server(run: &Run, dir: &Path) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(90) {
        let found = std::fs::read_dir(dir)
            .map(|rd| rd.flatten().any(|e| e.file_name().to_string_lossy().starts_with("jpserver-")))
            .unwrap_or(false);
        if found {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no jpserver-*.json in {} after 90 s; stderr:\n{}", dir.display(), run.stderr());
}

/// Run the driver: `start`, `run ID CODE`, `send ID CODE`, `kernels`.
fn driver(v: &Path, runtime: &Path, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/jupyter_driver.py");
    let out = Command::new(v.join("bin/python"))
        .arg(script)
        .arg(runtime)
        .args(args)
        .env("HOME", runtime.parent().unwrap())
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "jupyter_driver.py {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Whether a process whose command line mentions `what` runs (host view).
fn process_with(what: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline")).map(|c| String::from_utf8_lossy(&c).contains(what)).unwrap_or(false)
    })
}

fn line_of(text: &str, what: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(what))
}

/// The first line from line `from` on that contains `what`.
fn line_after(text: &str, from: usize, what: &str) -> Option<usize> {
    text.lines().skip(from).position(|l| l.contains(what)).map(|i| i + from)
}

#[test]
fn idle_kernel_that_imported_modules_lets_the_container_stop() {
    let v = venv();
    let mut run = start(&server_cmd(&v), &[("LABKIT_IDLE_TIMEOUT", TIMEOUT)]);
    let rt = run.path(RUNTIME);
    wait_for_server(&run, &rt);
    let kernel = driver(&v, &rt, &["start"]);
    let from = release(&run);
    driver(&v, &rt, &["run", &kernel, "import json, email.parser, sqlite3\nx = json.dumps({'a': 1})"]);
    // The watchdog declares the container idle while the kernel still runs.
    assert!(
        common::ns::poll(|| line_after(&run.stderr(), from, "idle watchdog: idle (last busy: jupyter")).is_some(),
        "{}",
        run.stderr()
    );
    assert!(process_with(&format!("kernel-{kernel}.json")), "the kernel is gone too early:\n{}", run.stderr());
    assert_eq!(run.wait(), 0, "{}", run.stderr());
    let err = run.stderr();
    let found = line_of(&err, "idle watchdog: jupyter server (pid ").expect(&err);
    assert!(err.lines().nth(found).unwrap().contains(") found: its kernels count as busy while they execute"), "{err}");
    // The countdown that ended the container started after Jupyter's last activity.
    let stop = line_of(&err, "stopping the container").expect(&err);
    let idle = err
        .lines()
        .take(stop)
        .collect::<Vec<_>>()
        .iter()
        .rposition(|l| l.contains("idle watchdog: idle ("))
        .expect(&err);
    assert!(from <= idle && found < idle, "{err}");
    assert!(err.lines().nth(idle).unwrap().contains("(last busy: jupyter server (pid "), "{err}");
    assert!(err.lines().nth(stop).unwrap().contains("last busy: jupyter server (pid "), "{err}");
    assert!(err.contains("Jupyter notebooks count while a kernel executes"), "{err}");
    assert!(!err.contains("busy: python"), "the kernel's name must not count:\n{err}");
    assert!(err.contains("exiting with code 0 (idle)"), "{err}");
    assert!(!process_with(&format!("kernel-{kernel}.json")), "the kernel outlived the container");
}

#[test]
fn running_cell_keeps_the_container_busy() {
    let v = venv();
    let mut run = start(&server_cmd(&v), &[("LABKIT_IDLE_TIMEOUT", TIMEOUT)]);
    let rt = run.path(RUNTIME);
    wait_for_server(&run, &rt);
    let kernel = driver(&v, &rt, &["start"]);
    let from = release(&run);
    // Idle first, so that the cell is a change the log shows.
    assert!(
        common::ns::poll(|| line_after(&run.stderr(), from, "idle watchdog: idle (")).is_some(),
        "{}",
        run.stderr()
    );
    let stop = run.path("stop");
    let cell =
        format!("import os, time\nwhile not os.path.exists({:?}):\n    time.sleep(0.2)", stop.display().to_string());
    driver(&v, &rt, &["send", &kernel, &cell]);
    let executing = format!("idle watchdog: busy: jupyter kernel {}… (python3) executing", &kernel[..8]);
    assert!(run.logged(&executing), "{}", run.stderr());
    // Longer than the timeout with the cell running: still up, busy logged once.
    std::thread::sleep(PAST_TIMEOUT);
    assert!(run.running(), "stopped while a cell ran:\n{}", run.stderr());
    let err = run.stderr();
    assert!(!err.contains("stopping the container"), "{err}");
    assert_eq!(err.lines().filter(|l| l.contains(&executing)).count(), 1, "{err}");
    // The cell ends: idle, then stopped.
    std::fs::write(&stop, "").unwrap();
    assert_eq!(run.wait(), 0, "{}", run.stderr());
    let err = run.stderr();
    let busy = line_of(&err, &executing).unwrap();
    let idle = line_after(&err, busy, "idle watchdog: idle (last busy: jupyter").expect(&err);
    assert!(idle < line_of(&err, "stopping the container").expect(&err), "{err}");
}

/// Without the Jupyter rule, the old rules apply: the kernel is named
/// python3, so the container stays busy. Three ways to lose the rule. The
/// CPU rule is off, so only names count.
#[test]
fn without_the_jupyter_rule_the_python_kernel_keeps_it_busy() {
    let v = venv();
    let server = server_cmd(&v);
    for (case, runtime_env, extra, rt) in [
        ("no runtime file where labinit looks", "JUPYTER_RUNTIME_DIR={D}/hidden ", None, "hidden"),
        ("LABKIT_IDLE_JUPYTER=0", "", Some(("LABKIT_IDLE_JUPYTER", "0")), RUNTIME),
        ("the server refuses the token", "", None, RUNTIME),
    ] {
        let job = format!("sh -c '{runtime_env}exec {server}'");
        let mut e = vec![("LABKIT_IDLE_TIMEOUT", TIMEOUT), ("LABKIT_IDLE_CPU", "100000")];
        e.extend(extra);
        let mut run = start(&job, &e);
        let rt = run.path(rt);
        wait_for_server(&run, &rt);
        if case.contains("token") {
            let kernel = driver(&v, &rt, &["start"]);
            driver(&v, &rt, &["run", &kernel, "import json"]);
            assert!(run.logged("jupyter server (pid "), "{case}: {}", run.stderr());
            // Same owner, same pid: only the token is wrong now.
            let f = std::fs::read_dir(&rt)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name().unwrap().to_string_lossy().starts_with("jpserver-")
                        && p.extension().is_some_and(|x| x == "json")
                })
                .unwrap();
            let text = std::fs::read_to_string(&f).unwrap();
            let token = text.split("\"token\": \"").nth(1).unwrap().split('"').next().unwrap().to_owned();
            std::fs::write(&f, text.replace(&token, "wrong")).unwrap();
            assert!(run.logged("cannot ask its API"), "{case}: {}", run.stderr());
            release(&run);
        } else {
            let from = release(&run);
            assert!(
                common::ns::poll(|| line_after(&run.stderr(), from, "idle watchdog: idle (last busy: holdon (pid"))
                    .is_some(),
                "{case}: {}",
                run.stderr()
            );
            let kernel = driver(&v, &rt, &["start"]);
            driver(&v, &rt, &["run", &kernel, "import json"]);
            assert!(run.logged("idle watchdog: busy: python3 (pid"), "{case}: {}", run.stderr());
        }
        let from = run.stderr().lines().count();
        std::thread::sleep(PAST_TIMEOUT);
        assert!(run.running(), "{case}: stopped although python3 runs:\n{}", run.stderr());
        assert!(!run.stderr().contains("stopping the container"), "{case}: {}", run.stderr());
        let err = run.stderr();
        assert!(!err.lines().skip(from).any(|l| l.contains("idle watchdog: idle")), "{case}: {err}");
        run.signal(libc::SIGTERM);
        run.wait();
        let err = run.stderr();
        assert!(!err.contains("stopping the container"), "{case}: {err}");
        if case.contains("token") {
            let n = err.lines().filter(|l| l.contains("cannot ask its API")).count();
            assert_eq!(n, 1, "{case}: logged once:\n{err}");
            assert!(err.contains("(403)") && err.contains("token is not accepted"), "{case}: {err}");
            // Asked once, then left alone for a minute: one refusal in Jupyter's log.
            assert_eq!(err.lines().filter(|l| l.contains("403 GET /api/status")).count(), 1, "{case}: {err}");
        } else {
            assert!(!err.contains("busy: jupyter"), "{case}: {err}");
            assert!(!err.contains("jupyter server (pid"), "{case}: {err}");
        }
    }
}

/// lab-pytorch's /etc/jupyter/jupyter_server_config.py (here through
/// JUPYTER_CONFIG_PATH): with the watchdog on, labinit exports
/// LABINIT_IDLE_TIMEOUT and Jupyter culls the idle kernel after it; `holdon`
/// keeps labinit's watchdog from stopping the container meanwhile. Control:
/// the watchdog off (LABKIT_IDLE_TIMEOUT=0), nothing exported, the kernel stays.
#[test]
fn lab_pytorch_jupyter_config_culls_idle_kernels_after_the_timeout() {
    let v = venv();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/files/jupyter");
    let job = format!("sh -c 'JUPYTER_CONFIG_PATH={} exec {}'", config.display(), server_cmd(&v));
    for control in [false, true] {
        let timeout = if control { "0" } else { "6s" };
        let mut run = start(&job, &[("LABKIT_IDLE_TIMEOUT", timeout)]);
        let rt = run.path(RUNTIME);
        wait_for_server(&run, &rt);
        let kernel = driver(&v, &rt, &["start"]);
        // The kernel inherits the server's environment: what the config read.
        let want = if control { "None" } else { "'6'" };
        let code = format!("import os\nv = os.environ.get('LABINIT_IDLE_TIMEOUT')\nassert v == {want}, v");
        driver(&v, &rt, &["run", &kernel, &code]);
        let t = Instant::now();
        let mut culled = false;
        let wait = if control { Duration::from_secs(12) } else { Duration::from_secs(30) };
        while t.elapsed() < wait && !culled {
            std::thread::sleep(Duration::from_millis(500));
            culled = !driver(&v, &rt, &["kernels"]).contains(&kernel);
        }
        let err = run.stderr();
        assert_eq!(culled, !control, "control={control}:\n{err}");
        assert_eq!(err.contains("Culling 'idle' kernel"), !control, "{err}");
        if !control {
            assert!(err.contains("Culling kernels with idle durations > 6 seconds at 1 second intervals"), "{err}");
            assert!(err.contains("Will shut down after 6 seconds with no kernels"), "{err}");
        }
        assert!(run.running(), "{}", run.stderr());
        run.signal(libc::SIGTERM);
        run.wait();
    }
}

/// What a notebook leaves running after its cell ended still counts by CPU:
/// a `subprocess` (a child of the kernel), and a silent thread in the kernel
/// itself (no output, the kernel idle as far as Jupyter can tell). When it
/// ends, the container stops. (An idle kernel uses no CPU, so CPU use is the
/// one rule kept for the kernel.)
#[test]
fn work_a_notebook_left_running_keeps_the_container_busy() {
    let v = venv();
    for (what, cell, who) in [
        ("subprocess", "import subprocess\nsubprocess.Popen(['sh', '-c', 'while [ ! -e STOP ]; do :; done'])", "sh"),
        (
            "thread",
            "import os, threading\ndef spin():\n    while not os.path.exists('STOP'):\n        pass\nthreading.Thread(target=spin, daemon=True).start()",
            "python3",
        ),
    ] {
        // The work spins at a whole core; 20 % keeps an idle kernel's own
        // chatter (a few % of a core on a loaded 2-core machine, seen in CI)
        // from flipping the verdict while the subject is the work.
        let mut run = start(&server_cmd(&v), &[("LABKIT_IDLE_TIMEOUT", TIMEOUT), ("LABKIT_IDLE_CPU", "20")]);
        let rt = run.path(RUNTIME);
        wait_for_server(&run, &rt);
        let kernel = driver(&v, &rt, &["start"]);
        release(&run);
        let stop = run.path("stop");
        driver(&v, &rt, &["run", &kernel, &cell.replace("STOP", &stop.display().to_string())]);
        let from = run.stderr().lines().count();
        // The cell is long done; the work keeps the container past the timeout.
        std::thread::sleep(PAST_TIMEOUT);
        assert!(run.running(), "{what}: stopped while the notebook's work ran:\n{}", run.stderr());
        // (Not merely still in its grace period.)
        assert!(!run.stderr().contains("stopping the container"), "{what}: {}", run.stderr());
        std::fs::write(&stop, "").unwrap();
        assert_eq!(run.wait(), 0, "{what}: {}", run.stderr());
        let err = run.stderr();
        // The first idle line after the cell names the work as what was busy
        // last (a busy state is logged on the change only, so the notebook's
        // own activity may have been the reason that was logged). A dead
        // child's last CPU time is judged with the process that made it: the
        // `subprocess` ended but not yet reaped by the kernel names the kernel.
        let idle = line_after(&err, from, "idle watchdog: idle (").expect(&err);
        let line = err.lines().nth(idle).unwrap();
        let named = |w: &str| line.contains(&format!("idle (last busy: {w} (pid "));
        assert!((named(who) || (what == "subprocess" && named("python3"))) && line.contains("% CPU"), "{what}: {err}");
        assert!(idle < line_of(&err, "stopping the container").expect(&err), "{what}: {err}");
    }
}

/// The idle timeout reaches what Jupyter's configuration reads: the job of
/// `run` and a `labinit shell` in a waiting container (30 minutes by
/// default there) get LABINIT_IDLE_TIMEOUT in seconds. Controls: the
/// watchdog off (LABKIT_IDLE_TIMEOUT=0, or `run` without it): not set.
#[test]
fn the_idle_timeout_reaches_the_job_and_shells() {
    for (timeout, want) in [(Some("90s"), "90"), (None, "")] {
        let mut e = vec![];
        e.extend(timeout.map(|t| ("LABKIT_IDLE_TIMEOUT", t)));
        let mut run = start("sh -c 'echo \"t=$LABINIT_IDLE_TIMEOUT\" > {D}/t; exec sleep 60'", &e);
        assert!(common::ns::poll(|| run.read("t").contains('\n').then_some(())).is_some(), "{}", run.stderr());
        assert_eq!(run.read("t").trim(), format!("t={want}"), "{}", run.stderr());
        run.signal(libc::SIGTERM);
        run.wait();
    }
    for (timeout, want) in [(None, "1800"), (Some("2h"), "7200"), (Some("0"), "")] {
        let mut e = env(&[]);
        e.extend(timeout.map(|t| ("LABKIT_IDLE_TIMEOUT", t)));
        let mut run = Run::script(&[], "mkdir -p {D}/home\nexec {L} --root {D}/root wait", &e, |_| {});
        assert!(run.logged("set up; waiting"), "{}", run.stderr());
        let l = common::labinit().display().to_string();
        let out = run
            .exec(
                &["-p", "-m"],
                &[&l, "--root", "{D}/root", "shell", "--", "sh", "-c", "echo \"t=$LABINIT_IDLE_TIMEOUT\""],
                &e,
            )
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text.trim(),
            format!("t={want}"),
            "{timeout:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            run.stderr()
        );
        run.signal(libc::SIGTERM);
        assert_eq!(run.wait(), 0, "{}", run.stderr());
    }
}

/// The usual case on the cluster: Jupyter runs as the cluster user (here
/// alice, uid 123456, from the Debian fixture), its runtime file in her home
/// and owned by her. labinit (root) finds and reads it, and her idle kernel
/// lets the container stop.
#[test]
fn the_cluster_users_server_is_found_in_her_home() {
    let v = venv();
    let root = common::fixture_root("debian-12");
    let r = root.path().display().to_string();
    std::fs::create_dir_all(root.join("home")).unwrap();
    std::fs::create_dir_all(root.join("steps")).unwrap();
    let e: Vec<(&str, &str)> = vec![
        ("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
        ("HOME", "/root"),
        ("LABKIT_STEPS_DIR", "/steps"),
        ("LABKIT_SERVICES_DIR", "/services"),
        ("LABKIT_ROOT", &r),
        ("LABKIT_IDLE_TIMEOUT", TIMEOUT),
        ("LABKIT_IDLE_INTERVAL", "0.5s"),
        ("LABKIT_IDLE_BUSY", "python,holdon"),
        ("LABKIT_GRACE", "5s"),
        ("CLUSTER_USER", "alice"),
        ("CLUSTER_USER_ID", "123456"),
        ("CLUSTER_GROUP_NAME", "CVLAB-unit"),
        ("CLUSTER_GROUP_ID", "11166"),
    ];
    let server = format!(
        "{}/bin/jupyter server --no-browser --port=0 --ServerApp.ip=127.0.0.1 --ServerApp.root_dir={{D}}",
        v.display()
    );
    let script = format!("mount --bind {r}/home /home && {HOLD}\nexec {{L}} run -- {server}");
    let mut run = Run::script(&["--mount"], &script, &e, |_| {});
    let rt = root.join("home/alice/.local/share/jupyter/runtime");
    wait_for_server(&run, &rt);
    let file = std::fs::read_dir(&rt)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().unwrap().to_string_lossy().starts_with("jpserver-")
                && p.extension().is_some_and(|x| x == "json")
        })
        .unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), 123456, "the runtime file is alice's");
    let kernel = driver(&v, &rt, &["start"]);
    release(&run);
    driver(&v, &rt, &["run", &kernel, "import json, os\nassert os.getuid() == 123456"]);
    assert_eq!(run.wait(), 0, "{}", run.stderr());
    let err = run.stderr();
    assert!(err.contains(") found: its kernels count as busy while they execute"), "{err}");
    assert!(err.contains("idle watchdog: idle (last busy: jupyter server (pid "), "{err}");
    // The kernel's name never counts while the API answers; on a loaded
    // machine the API can miss three checks, and then the documented
    // fallback (the old rules, announced) applies.
    // (The CPU rule may still see the kernel busy: "used 5% CPU" on a loaded
    // machine; only the name rule's "is running" would be wrong.)
    let by_name = err.lines().any(|l| l.contains("busy: python") && l.contains(" is running"));
    assert!(!by_name || err.contains("cannot ask its API"), "{err}");
    assert!(err.contains("exiting with code 0 (idle)"), "{err}");
}
