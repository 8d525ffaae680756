//! The idle watchdog's attack suites (`watchdog_attack*.rs`): labinit as PID 1
//! running a job with the idle settings under test, and the waits around it.

use std::time::Duration;

use nix::libc;

use super::ns::{self, Run};

/// labinit (PID 1) running `job` (after `run --`), checking every
/// `interval`, after `prelude`, with the idle settings `extra` (later
/// entries win); `files` are written into `{D}` first (name, text with `{D}`
/// expanded; executable). `{D}/trainer` is a copy of sleep, `{D}/python3` of
/// sh (names the rules know).
pub fn start(interval: &str, prelude: &str, job: &str, extra: &[(&str, &str)], files: &[(&str, &str)]) -> Run {
    let mut env: Vec<(&str, &str)> = vec![
        ("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
        ("LABKIT_STEPS_DIR", "/steps"),
        ("LABKIT_SERVICES_DIR", "/services"),
        ("LABKIT_IDLE_INTERVAL", interval),
        ("LABKIT_GRACE", "2s"),
    ];
    env.extend_from_slice(extra);
    let script = format!(
        "cp /bin/sleep {{D}}/trainer && cp /bin/sh {{D}}/python3 && {prelude}\nexec {{L}} --root {{D}}/root run -- {job}"
    );
    Run::script(&[], &script, &env, |d| {
        use std::os::unix::fs::PermissionsExt;
        for (name, text) in files {
            let path = d.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text.replace("{D}", &d.path().display().to_string())).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    })
}

/// The Python interpreter the drivers run under.
pub fn python() -> &'static str {
    ns::python3().expect("python3 (tests/tools/deps.sh installs it)")
}

/// Whether the run is still up after `d` (it must be: something is busy).
pub fn up_after(run: &mut Run, d: Duration) -> bool {
    std::thread::sleep(d);
    run.running()
}

/// Stop a run that is still up: SIGTERM to labinit, exit code 143.
pub fn stop(run: &mut Run) {
    run.signal(libc::SIGTERM);
    assert_eq!(run.wait(), 143, "{}", run.stderr());
}

/// Wait (hang guard: 30 s) for `{D}/rel` to exist.
pub fn wait_file(run: &Run, rel: &str) {
    let end = std::time::Instant::now() + ns::PATIENCE;
    while !run.exists(rel) {
        assert!(std::time::Instant::now() < end, "{rel} never appeared:\n{}", run.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
}
