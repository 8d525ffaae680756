//! The start summary in the log: labinit's version and the image, the GPUs,
//! a too-small /dev/shm with its fix, the timeout's end, and the run time in
//! the last line. labinit runs as PID 1 in a private mount and PID namespace
//! whose root has a /dev/shm tmpfs of the size under test.

mod common;

use common::ns::{sh_quote, Run};
use common::TempDir;

/// Runs `labinit --root ROOT run ARGS` as PID 1 with /dev/shm of `shm` (a
/// tmpfs size) and the given environment; returns (code, stderr).
fn start(shm: &str, env: &[(&str, &str)], args: &[&str]) -> (i32, String) {
    let args: Vec<String> = args.iter().map(|a| sh_quote(a)).collect();
    let script = format!(
        "mount -t tmpfs -o size={shm} tmpfs {{D}}/root/dev/shm && exec {{L}} --root {{D}}/root run {}",
        args.join(" ")
    );
    let mut e = vec![("PATH", "/usr/bin:/bin"), ("LABKIT_STEPS_DIR", "/steps")];
    e.extend(env);
    let mut run = Run::script(&[], &script, &e, |t: &TempDir| {
        let root = t.join("root");
        std::fs::create_dir_all(root.join("dev/shm")).unwrap();
        std::fs::write(root.join("dev/nvidia0"), "").unwrap();
        std::fs::write(root.join("dev/nvidiactl"), "").unwrap();
    });
    (run.wait(), run.stderr())
}

const IMAGE: [(&str, &str); 4] = [
    ("LAB_IMAGE", "lab-pytorch"),
    ("LAB_IMAGE_VARIANT", "cuda12"),
    ("LAB_IMAGE_REVISION", "0123abcd"),
    ("NVIDIA_VISIBLE_DEVICES", "0"),
];

#[test]
fn the_summary_answers_the_first_questions() {
    let (code, err) = start("64m", &IMAGE, &["--timeout", "4h", "--", "true"]);
    assert_eq!(code, 0, "{err}");
    let version = format!("labinit: labinit {}", env!("CARGO_PKG_VERSION"));
    assert!(
        err.lines()
            .any(|l| l.starts_with(&version) && l.ends_with("; image lab-pytorch, variant cuda12, revision 0123abcd")),
        "{err}"
    );
    assert!(
        err.contains("labinit: GPUs: NVIDIA_VISIBLE_DEVICES=0; devices /dev/nvidia0\n"),
        "nvidiactl is no GPU: {err}"
    );
    assert!(err.contains("labinit: warning: /dev/shm is 64 MiB (less than 1 GiB)"), "{err}");
    assert!(err.contains("--large-shm"), "{err}");
    assert!(err.contains("labinit: job limits: timeout 4 h, at 20"), "{err}");
    assert!(err.contains("grace 20 s (SIGTERM, then SIGKILL)"), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("labinit: exiting with code 0; the job ran for "), "{last}");
}

#[test]
fn a_large_shm_gives_no_warning() {
    // Control for the warning: the same start with 2 GiB.
    let (code, err) = start("2g", &IMAGE, &["--", "true"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("/dev/shm is"), "{err}");
    assert!(err.contains("labinit: job limits: no timeout;"), "{err}");
}

#[test]
fn quiet_hides_the_summary_but_not_the_warning() {
    let mut env = IMAGE.to_vec();
    env.push(("LABKIT_QUIET", "1"));
    let (code, err) = start("64m", &env, &["--", "true"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("labinit: GPUs:") && !err.contains("job limits"), "{err}");
    assert!(err.contains("warning: /dev/shm is 64 MiB"), "{err}");
}
