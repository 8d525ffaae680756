//! `labkit test` against a fake engine that runs the test files on the host:
//! an image runs its ancestors' tests and its own, one line per test; exit 77
//! is reported as SKIP with the test's reason and never counts as a pass; a
//! failure gives exit 1 with the test's last line; a missing image fails with
//! the command that builds it; --gpu reaches the engine and the tests.
mod images_support;
use images_support::*;

/// `image inspect REF` succeeds unless REF contains "missing"; `run …` runs
/// the test file from the mounted host directory with sh, with the `-e`
/// variables set, and logs its argv.
const FAKE: &str = r#"#!/bin/bash
echo "argv $*" >> "$FAKE_ENGINE_LOG"
case "$1" in
  image) [[ "$3" == *missing* ]] && exit 1; exit 0 ;;
  run)
    shift; src=""; envs=()
    while [ $# -gt 2 ]; do
      case "$1" in
        -v) src="${2%%:*}"; shift 2 ;;
        -e) envs+=("$2"); shift 2 ;;
        *) shift ;;
      esac
    done
    file="${2#/opt/labkit-tests/}"
    exec env "${envs[@]}" sh "$src/$file" ;;
esac
exit 0
"#;

fn rig() -> (Scratch, String) {
    let s = fixture_family();
    s.write("images/tests/base/ok.sh", "echo \"fine as $CLUSTER_USER on $LAB_TEST_VARIANT\"\n");
    s.write(
        "images/tests/base/gpu.sh",
        "if [ \"$LAB_TEST_GPU\" = 1 ]; then echo 'asked for a GPU, none here'; exit 1; fi\necho 'no GPU here'\nexit 77\n",
    );
    s.write("images/tests/base/_helper.sh", "exit 1\n");
    s.write("images/tests/base/notes.txt", "not a test\n");
    s.write("images/tests/app/fail.sh", "echo starting\necho 'boom: the app is broken' >&2\nexit 3\n");
    let bin = s.join("fakebin");
    script(&bin.join("podman"), FAKE);
    (s, bin.join("podman").display().to_string())
}

fn test(s: &Scratch, engine: &str, args: &[&str]) -> std::process::Output {
    labkit_cmd(s.path())
        .args(["test", "--engine", engine])
        .args(args)
        .env("FAKE_ENGINE_LOG", s.join("engine.log"))
        .output()
        .unwrap()
}

#[test]
fn children_inherit_tests_and_skips_are_not_passes() {
    let (s, engine) = rig();
    let t = expect(test(&s, &engine, &["--variant", "cpu"]), 1);
    let lines: Vec<&str> =
        t.lines().filter(|l| l.starts_with("PASS") || l.starts_with("SKIP") || l.starts_with("FAIL")).collect();
    assert_eq!(lines.len(), 5, "{t}");
    assert!(
        lines[0].starts_with("PASS  base-cpu base/gpu.sh") || lines[0].starts_with("SKIP  base-cpu base/gpu.sh"),
        "{t}"
    );
    assert!(t.contains("SKIP  base-cpu base/gpu.sh"), "{t}");
    assert!(t.contains(": no GPU here"), "{t}");
    assert!(t.contains("PASS  base-cpu base/ok.sh"), "{t}");
    assert!(
        t.contains("PASS  app-cpu  base/ok.sh") || t.contains("PASS  app-cpu base/ok.sh"),
        "app inherits base's tests: {t}"
    );
    let fail = lines.iter().find(|l| l.contains("app/fail.sh")).unwrap();
    assert!(fail.starts_with("FAIL"), "{t}");
    assert!(fail.contains("exit code 3: boom: the app is broken"), "{t}");
    assert!(!t.contains("_helper") && !t.contains("notes.txt"), "{t}");
    assert!(t.contains("test: 2 passed, 2 skipped, 1 failed (5 test(s))"), "{t}");
    // The run looks like the cluster: the four CLUSTER_* variables, the tests
    // mounted read-only, the target's primary tag, bash for .sh.
    let log = s.read("engine.log");
    let run = log.lines().find(|l| l.starts_with("argv run") && l.contains("app/fail.sh")).unwrap();
    for w in [
        "-e CLUSTER_USER=alice",
        "-e CLUSTER_GROUP_ID=11166",
        "-e LAB_TEST_GPU=0",
        "/images/tests:/opt/labkit-tests:ro",
        "registry.example.org/lab/app:cpu bash /opt/labkit-tests/app/fail.sh",
    ] {
        assert!(run.contains(w), "{w} missing: {run}");
    }
    assert!(s.join("build/images/test-logs/app-cpu/app__fail.sh.log").is_file());
}

#[test]
fn only_skips_or_nothing_is_not_success() {
    let (s, engine) = rig();
    // base alone: one pass, one skip -> success.
    let t = expect(test(&s, &engine, &["--image", "base", "--variant", "cpu"]), 0);
    assert!(t.contains("1 passed, 1 skipped, 0 failed"), "{t}");
    // Only a skipping test: nothing passed -> failure.
    std::fs::remove_file(s.join("images/tests/base/ok.sh")).unwrap();
    let t = expect(test(&s, &engine, &["--image", "base", "--variant", "cpu"]), 1);
    assert!(t.contains("0 passed, 1 skipped, 0 failed"), "{t}");
    // No tests at all: usage error.
    std::fs::remove_dir_all(s.join("images/tests")).unwrap();
    let t = expect(test(&s, &engine, &[]), 2);
    assert!(t.contains("no image tests selected"), "{t}");
}

#[test]
fn gpu_flag_reaches_engine_and_tests() {
    let (s, engine) = rig();
    let t = expect(test(&s, &engine, &["--image", "base", "--variant", "gpu", "--gpu"]), 1);
    assert!(t.contains("FAIL  base-gpu base/gpu.sh"), "with --gpu a missing GPU fails: {t}");
    assert!(t.contains("asked for a GPU, none here"), "{t}");
    let log = s.read("engine.log");
    assert!(log.contains("--device nvidia.com/gpu=all"), "{log}");
    assert!(log.contains("-e LAB_TEST_KIND=cuda"), "{log}");
}

#[test]
fn missing_image_and_bad_selection() {
    let (s, engine) = rig();
    s.edit(
        "images/manifest.toml",
        "registry      = \"registry.example.org/lab\"",
        "registry      = \"registry.example.org/missing\"",
    );
    expect(labkit(s.path(), &["render"]), 0);
    let t = expect(test(&s, &engine, &["--image", "base", "--variant", "cpu"]), 1);
    assert!(t.contains("image registry.example.org/missing/base:cpu is not there; build it first (labkit build --image base --variant cpu)"), "{t}");
    assert!(t.contains("0 passed, 0 skipped, 2 failed"), "{t}");
    let t = expect(test(&s, &engine, &["--image", "nope"]), 2);
    assert!(t.contains("--image nope: no such image"), "{t}");
    let t = expect(test(&s, &engine, &["--variant", "nope"]), 2);
    assert!(t.contains("--variant nope: no such variant"), "{t}");
}
