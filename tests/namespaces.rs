//! The kernel-facing parts of `labinit setup`, with the real binary inside a
//! private mount namespace (`unshare --mount`): a home that is a mounted
//! volume, a bind-mounted /etc/passwd, a read-only /etc, a non-root start, and
//! the static binary alone in a root with only busybox. Every mount is made
//! on a throwaway root inside the namespace and disappears with it.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

/// Run `script` (sh) in a private mount namespace with ROOT and LABINIT set
/// and alice's CLUSTER_* variables in the environment.
fn in_ns(root: &common::TempDir, script: &str, extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-ec", script])
        .env("ROOT", root.path())
        .env("LABINIT", common::labinit())
        .envs(common::alice_env());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_home_on_another_file_system_is_never_chowned() {
    let root = common::fixture_root("debian-12");
    fs::create_dir_all(root.join("home/alice")).unwrap();
    let out = in_ns(
        &root,
        r#"mount -t tmpfs -o mode=0755 vol "$ROOT/home/alice"
           echo data > "$ROOT/home/alice/results.csv"
           "$LABINIT" setup --root "$ROOT"
           stat -c '%u %a' "$ROOT/home/alice" "$ROOT/home/alice/results.csv"
           ls -A "$ROOT/home/alice""#,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "0 755\n0 644\nresults.csv\n", "untouched: no chown, no skel, no .bashrc");
    assert!(
        stderr(&out).contains("home /home/alice is a mounted volume") && stderr(&out).contains("cannot write"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn negative_control_same_directory_not_mounted_is_chowned() {
    let root = common::fixture_root("debian-12");
    fs::create_dir_all(root.join("home/alice")).unwrap();
    let out = in_ns(&root, r#""$LABINIT" setup --root "$ROOT"; stat -c '%u' "$ROOT/home/alice""#, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "123456\n");
}

#[test]
fn a_bind_mounted_passwd_is_rewritten_in_place() {
    let root = common::fixture_root("debian-12");
    fs::copy(root.join("etc/passwd"), root.join("outer-passwd")).unwrap();
    let out = in_ns(
        &root,
        r#"mount --bind "$ROOT/outer-passwd" "$ROOT/etc/passwd"
           "$LABINIT" setup --root "$ROOT"
           ls -A "$ROOT/etc""#,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/etc/passwd is a mount point; rewrote it in place (not atomic)"),
        "{}",
        stderr(&out)
    );
    // The namespace is gone; the file that was mounted holds the new entry.
    assert!(fs::read_to_string(root.join("outer-passwd"))
        .unwrap()
        .ends_with("alice:x:123456:11166::/home/alice:/bin/bash\n"));
    assert!(!stdout(&out).contains("labkit-tmp"), "no temp file left: {}", stdout(&out));
}

#[test]
fn a_read_only_etc_degrades_with_one_clear_warning_and_no_partial_file() {
    let root = common::fixture_root("debian-12");
    let before = common::snapshot(&root.join("etc"));
    let out = in_ns(
        &root,
        r#"mount --bind "$ROOT/etc" "$ROOT/etc" && mount -o remount,ro,bind "$ROOT/etc"
           "$LABINIT" setup --root "$ROOT""#,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Read-only file system")
            && err.contains("will not know it")
            && err.contains("uid 123456 gid 11166"),
        "{err}"
    );
    assert_eq!(common::snapshot(&root.join("etc")), before);
}

#[test]
fn a_read_only_etc_that_already_has_the_account_is_silent() {
    let root = common::fixture_root("debian-12");
    let first = in_ns(&root, r#""$LABINIT" setup --root "$ROOT""#, &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let out = in_ns(
        &root,
        r#"mount --bind "$ROOT/etc" "$ROOT/etc" && mount -o remount,ro,bind "$ROOT/etc"
           "$LABINIT" setup --root "$ROOT""#,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn a_non_root_start_warns_per_thing_and_writes_nothing() {
    let root = common::fixture_root("debian-12");
    let before = common::snapshot(root.path());
    let out = Command::new("setpriv")
        .args(["--reuid=1010", "--regid=1010", "--clear-groups"])
        .arg(common::labinit())
        .args(["setup", "--root"])
        .arg(root.path())
        .envs(common::alice_env())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("started as uid 1010, not root"), "{err}");
    assert!(err.contains("files it writes on shared volumes will be owned by uid 1010"), "{err}");
    assert_eq!(common::snapshot(root.path()), before);
}

/// The static build made by `make` (cargo's own build is dynamically linked).
fn static_labinit() -> std::path::PathBuf {
    std::env::var_os("LABKIT_TEST_LABINIT")
        .map(Into::into)
        .expect("this test needs the static labinit: run it through `make test` (LABKIT_TEST_LABINIT)")
}

#[test]
fn the_static_binary_runs_alone_in_a_busybox_root() {
    let root = common::TempDir::new("busybox-root");
    for d in ["bin", "etc"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    common::install_exec(Path::new("/bin/busybox"), &root.join("bin/busybox"));
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    common::install_exec(&static_labinit(), &root.join("labinit"));
    let out = Command::new("/usr/sbin/chroot")
        .arg(root.path())
        .args(["/labinit", "setup"])
        .env_clear()
        .envs(common::alice_env())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert_eq!(passwd, "alice:*:123456:11166::/home/alice:/bin/sh\n");
    assert_eq!(fs::read_to_string(root.join("etc/group")).unwrap(), "CVLAB-unit:x:11166:\n");
    assert_eq!(fs::metadata(root.join("home/alice")).unwrap().uid(), 123456);
    let out = Command::new("/usr/sbin/chroot")
        .arg(root.path())
        .args(["/bin/sh", "-c", "/labinit --version"])
        .output()
        .unwrap();
    assert!(out.status.success() && stdout(&out).starts_with("labinit "), "{}", stdout(&out));
}

#[test]
fn make_builds_a_static_binary() {
    let out = Command::new("file").arg(static_labinit()).output().unwrap();
    let text = stdout(&out);
    assert!(text.contains("statically linked") || text.contains("static-pie linked"), "{text}");
    assert!(text.contains("stripped") && !text.contains("not stripped"), "{text}");
}

#[test]
fn no_new_privs_is_reported_because_sudo_will_refuse() {
    let root = common::fixture_root("debian-12");
    common::add_sudo(&root, "root ALL=(ALL:ALL) ALL\n#includedir /etc/sudoers.d\n");
    let run = |launcher: &[&str]| {
        Command::new(launcher[0])
            .args(&launcher[1..])
            .arg(common::labinit())
            .args(["setup", "--root"])
            .arg(root.path())
            .envs(common::alice_env())
            .output()
            .unwrap()
    };
    let out = run(&["setpriv", "--no-new-privs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("no_new_privs flag is set"), "{}", stderr(&out));
    // Negative control: without the flag, no such warning.
    let out = run(&["env"]);
    assert!(!stderr(&out).contains("no_new_privs"), "{}", stderr(&out));
}

#[test]
fn a_full_disk_gives_a_clear_error_and_no_partial_file() {
    let root = common::fixture_root("debian-12");
    fs::rename(root.join("etc"), root.join("etc.orig")).unwrap();
    fs::create_dir(root.join("etc")).unwrap();
    let out = in_ns(
        &root,
        r#"mount -t tmpfs -o size=64k full "$ROOT/etc"
           cp -a "$ROOT/etc.orig/." "$ROOT/etc/"
           dd if=/dev/zero of="$ROOT/etc/filler" bs=1k 2>/dev/null || true
           ls -A "$ROOT/etc" | sort > "$ROOT/before.list"
           md5sum "$ROOT"/etc/passwd "$ROOT"/etc/group "$ROOT"/etc/shadow "$ROOT"/etc/gshadow > "$ROOT/before.sum"
           set +e; "$LABINIT" setup --root "$ROOT"; echo "rc=$?" >&2; set -e
           ls -A "$ROOT/etc" | grep -vx .pwd.lock | sort > "$ROOT/after.list"
           md5sum -c --quiet "$ROOT/before.sum" >&2"#,
        &[],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("rc=125"), "exit 125: {err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("labinit: error:")).count(), 1, "{err}");
    assert_eq!(
        fs::read_to_string(root.join("before.list")).unwrap(),
        fs::read_to_string(root.join("after.list")).unwrap(),
        "no temp file, no truncated backup left (only glibc's lock file, as after any account tool)"
    );
}

#[test]
fn a_step_that_runs_too_long_is_named_in_a_warning() {
    let root = common::fixture_root("debian-12");
    let steps = root.join("opt/lab/setup_steps");
    fs::create_dir_all(&steps).unwrap();
    fs::write(steps.join("14_ssh_foreground"), "#!/bin/sh\nsleep 1\n").unwrap();
    fs::set_permissions(steps.join("14_ssh_foreground"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = in_ns(&root, r#""$LABINIT" setup --root "$ROOT""#, &[("LABKIT_STEP_WARN", "0.2s")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("step 14_ssh_foreground is still running after"), "{}", stderr(&out));
    // Negative control: the default threshold (60 s) stays silent.
    let out = in_ns(&root, r#""$LABINIT" setup --root "$ROOT""#, &[]);
    assert!(!stderr(&out).contains("still running"), "{}", stderr(&out));
}
