//! The job's identity end to end: the static labinit is PID 1 of a fresh PID
//! namespace, chrooted into a minimal root (busybox + real account files),
//! creates alice and runs the job as her. Checks the kernel's view of the job
//! (/proc/self/status), its environment and directory, the supplementary
//! groups it keeps from the runtime, and that a failed drop never runs the
//! command. The sudo route back to root is checked in a real Debian root.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;
use std::process::{Command, Output};

fn static_labinit() -> PathBuf {
    std::env::var_os("LABKIT_TEST_LABINIT")
        .map(Into::into)
        .expect("this test needs the static labinit: run it through `make test` (LABKIT_TEST_LABINIT)")
}

/// A root holding busybox, the static labinit and `distro`'s account files.
fn busybox_root(distro: &str) -> common::TempDir {
    let root = common::fixture_root(distro);
    for d in ["bin", "proc", "tmp", "opt/lab"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    common::install_exec(Path::new("/bin/busybox"), &root.join("bin/busybox"));
    for applet in ["sh", "grep", "cat", "id", "pwd", "env", "touch", "echo", "sleep"] {
        let _ = fs::remove_file(root.join("bin").join(applet));
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    common::install_exec(&static_labinit(), &root.join("opt/lab/labinit"));
    root
}

/// Run `launcher… chroot ROOT /opt/lab/labinit ARGS` as PID 1 of a new PID
/// namespace with /proc mounted inside the root.
fn run_pid1(root: &common::TempDir, launcher: &str, args: &str, env: &[(String, String)]) -> Output {
    let script = format!(
        "mount -t proc proc \"$ROOT/proc\" && exec {launcher} /usr/sbin/chroot \"$ROOT\" /opt/lab/labinit {args}"
    );
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--pid", "--fork", "sh", "-c", &script])
        .env_clear()
        .env("ROOT", root.path())
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(env.iter().cloned())
        .current_dir("/")
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn status_field(out: &str, field: &str) -> Vec<String> {
    out.lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .map(|l| l[field.len() + 1..].split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

const PROBE: &str = "run -- /bin/sh -c 'grep -E \"^(Uid|Gid|Groups|CapEff|CapPrm|NoNewPrivs):\" /proc/self/status; echo HOME=$HOME USER=$USER LOGNAME=$LOGNAME SHELL=$SHELL FOO=$FOO; echo PWD=$(pwd); echo PID1=$(cat /proc/1/comm)'";

#[test]
fn the_job_runs_as_the_cluster_user_with_the_runtimes_groups_only() {
    let root = busybox_root("alpine-3");
    let mut env = common::alice_env();
    env.push(("FOO".into(), "kept".into()));
    // The runtime started PID 1 with gid 0, root's own disk (6) and wheel (10)
    // from Alpine's group file, and fsGroup-style 555.
    let out = run_pid1(&root, "setpriv --groups=0,6,10,555", PROBE, &env);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(status_field(&stdout, "Uid"), vec!["123456"; 4], "{stdout}");
    assert_eq!(status_field(&stdout, "Gid"), vec!["11166"; 4], "{stdout}");
    let mut groups = status_field(&stdout, "Groups");
    groups.sort();
    assert_eq!(groups, vec!["11166", "555"], "no 0, no root's own groups: {stdout}");
    assert_eq!(status_field(&stdout, "CapEff"), vec!["0000000000000000"]);
    assert_eq!(status_field(&stdout, "CapPrm"), vec!["0000000000000000"]);
    assert!(stdout.contains("HOME=/home/alice USER=alice LOGNAME=alice SHELL=/bin/sh FOO=kept"), "{stdout}");
    assert!(stdout.contains("PWD=/home/alice"), "cwd / becomes the home: {stdout}");
    assert!(stdout.contains("PID1=labinit"), "labinit is PID 1: {stdout}");
}

#[test]
fn negative_control_without_cluster_variables_the_job_stays_root() {
    let root = busybox_root("alpine-3");
    let out = run_pid1(&root, "setpriv --groups=0,555", PROBE, &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(status_field(&stdout, "Uid"), vec!["0"; 4]);
    assert!(stderr.contains("no CLUSTER_* variables set"), "{stderr}");
}

#[test]
fn a_failed_privilege_drop_never_runs_the_command() {
    let root = busybox_root("debian-12");
    // PID 1 lacks CAP_SETUID/CAP_SETGID (a runtime that dropped them): setup
    // still writes the account, but the drop must fail closed.
    let out = run_pid1(
        &root,
        "setpriv --bounding-set=-setuid,-setgid --inh-caps=-setuid,-setgid",
        "run -- /bin/touch /tmp/ran-as-root",
        &common::alice_env(),
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(125), "{stdout}\n{stderr}");
    assert!(!root.join("tmp/ran-as-root").exists(), "the command ran: {stderr}");
    assert!(stderr.contains("labinit: error:"), "{stderr}");
    // Negative control: with the capabilities the same command runs.
    let out = run_pid1(&root, "", "run -- /bin/touch /tmp/ran-as-alice", &common::alice_env());
    assert!(out.status.success(), "{:?}", text(&out));
    let m = fs::metadata(root.join("tmp/ran-as-alice")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&m), 123456);
}

#[test]
fn a_setuid_labinit_refuses_to_run() {
    let dir = common::TempDir::new("setuid");
    let bin = dir.join("labinit");
    common::install_exec(&static_labinit(), &bin);
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o4755)).unwrap();
    let marker = dir.join("ran");
    let out = Command::new(&bin).args(["run", "--", "/usr/bin/touch"]).arg(&marker).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(!marker.exists());
    assert!(String::from_utf8_lossy(&out.stderr).contains("setuid"), "{:?}", out);
}
