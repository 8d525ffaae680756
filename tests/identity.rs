//! The job's identity end to end: the static labinit is PID 1 of a fresh PID
//! namespace, chrooted into a minimal root (busybox + real account files),
//! creates alice and runs the job as her. Checks the kernel's view of the job
//! (/proc/self/status), its environment and directory, the supplementary
//! groups it keeps from the runtime, and that a failed drop never runs the
//! command. The sudo route back to root is checked in a real Debian root.
//! The account as the setup steps left it is what the job gets: a group a
//! step adds (busybox `sed`, and Debian's real `usermod -aG` in an overlay of
//! the Debian test root), a home a step moves; a step cannot export HOME or
//! USER alone.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;
use std::process::{Command, Output};

use common::debian::debian_root;
use common::ns::Run;

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
    for applet in ["sh", "grep", "cat", "id", "pwd", "env", "touch", "echo", "sleep", "sed", "mkdir", "chown"] {
        let _ = fs::remove_file(root.join("bin").join(applet));
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    common::install_exec(&static_labinit(), &root.join("opt/lab/labinit"));
    root
}

/// Run `launcher… chroot ROOT /opt/lab/labinit ARGS` as PID 1 of new PID
/// and mount namespaces with /proc mounted inside the root.
fn run_pid1(root: &common::TempDir, launcher: &str, args: &str, env: &[(String, String)]) -> Output {
    let script = format!(
        "mount -t proc proc \"$ROOT/proc\" && exec {launcher} /usr/sbin/chroot \"$ROOT\" /opt/lab/labinit {args}"
    );
    let r = root.path().display().to_string();
    let mut e = vec![("ROOT", r.as_str()), ("PATH", "/usr/local/bin:/usr/bin:/bin")];
    e.extend(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    Run::script(&[], &script, &e, |_| {}).output()
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

/// Put an executable setup step into the root's default steps directory.
fn add_step(root: &common::TempDir, name: &str, script: &str) {
    let dir = root.join("opt/lab/setup_steps");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), script).unwrap();
    fs::set_permissions(dir.join(name), fs::Permissions::from_mode(0o755)).unwrap();
}

/// Issue 11 §4: a membership a setup step adds to /etc/group (what
/// `usermod -aG video alice` writes) is in the job's groups; the identity is
/// read after the steps. Negative control: the same start without the step.
#[test]
fn a_group_a_step_adds_reaches_the_job() {
    for with_step in [true, false] {
        let root = busybox_root("debian-12");
        if with_step {
            add_step(
                &root,
                "10_video",
                "#!/bin/sh\nsed -i \"s/^video:x:44:\\$/video:x:44:$LABKIT_USER/\" /etc/group\n",
            );
        }
        let out = run_pid1(&root, "", PROBE, &common::alice_env());
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        let group = fs::read_to_string(root.join("etc/group")).unwrap();
        let mut groups = status_field(&stdout, "Groups");
        groups.sort();
        if with_step {
            assert!(group.contains("\nvideo:x:44:alice\n"), "fixture: the step did not add alice: {group}");
            assert_eq!(groups, vec!["11166", "44"], "{stdout}\n{stderr}");
            assert!(
                stderr.contains("the setup steps changed alice's account: the job gets groups [11166, 44]"),
                "{stderr}"
            );
        } else {
            assert_eq!(groups, vec!["11166"], "control: {stdout}");
            assert!(!stderr.contains("the setup steps changed"), "{stderr}");
        }
    }
}

/// Issue 11 §4: HOME, USER, LOGNAME and SHELL move together. A step that
/// exports HOME or USER is refused with a warning naming the step and line
/// (the job keeps one consistent set); a step that changes the account's
/// home moves it for the job as a whole (HOME, working directory). Controls:
/// the step's ordinary export arrives; without the move the home stays.
#[test]
fn identity_variables_change_only_with_the_account() {
    for moved in [true, false] {
        let root = busybox_root("debian-12");
        let mv = "mkdir -p /data/alice && chown 123456:11166 /data/alice && sed -i 's#:/home/alice:#:/data/alice:#' /etc/passwd\n";
        let script = format!(
            "#!/bin/sh\necho HOME=/tmp >> \"$LABKIT_ENV\"\necho USER=bob >> \"$LABKIT_ENV\"\necho FOO=from-step >> \"$LABKIT_ENV\"\n{}",
            if moved { mv } else { "" }
        );
        add_step(&root, "10_home", &script);
        let out = run_pid1(&root, "", PROBE, &common::alice_env());
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        let home = if moved { "/data/alice" } else { "/home/alice" };
        let want = format!("HOME={home} USER=alice LOGNAME=alice SHELL=/bin/bash FOO=from-step");
        assert!(stdout.contains(&want), "want {want}:\n{stdout}\n{stderr}");
        assert!(stdout.contains(&format!("PWD={home}\n")), "{stdout}");
        for (line, var) in [(1, "HOME"), (2, "USER")] {
            let warning = format!("step 10_home: LABKIT_ENV line {line}: {var} is set from the account");
            assert!(stderr.contains(&warning), "{warning}:\n{stderr}");
        }
        assert_eq!(stderr.contains("the job gets home /data/alice (was /home/alice)"), moved, "{stderr}");
    }
}

/// Case init/16 with the real tool: Debian's `usermod -aG video "$LABKIT_USER"`
/// in a setup step, labinit PID 1 in a chroot into a writable overlay of the
/// Debian root (tmpfs upper layer, private mount namespace: nothing of the
/// cached root or the host changes). Negative control: no step, no gid 44.
#[test]
fn a_real_usermod_in_a_step_reaches_the_job() {
    let lower = debian_root();
    for with_step in [true, false] {
        let t = common::TempDir::new("usermod");
        let step = if with_step {
            "mkdir -p $M/opt/lab/setup_steps && printf '#!/bin/sh\\nusermod -aG video \"$LABKIT_USER\"\\n' > $M/opt/lab/setup_steps/10_video && chmod 755 $M/opt/lab/setup_steps/10_video &&"
        } else {
            ""
        };
        let script = format!(
            "set -e; mount -t tmpfs tmpfs \"$T\"; mkdir \"$T/u\" \"$T/w\" \"$T/m\"; M=\"$T/m\"
             mount -t overlay overlay -o lowerdir=\"$LOWER\",upperdir=\"$T/u\",workdir=\"$T/w\" \"$M\"
             mount -t proc proc \"$M/proc\"; mkdir -p \"$M/opt/lab\"; cp \"$LABINIT\" \"$M/opt/lab/labinit\"
             {step} exec /usr/sbin/chroot \"$M\" /opt/lab/labinit run -- /bin/sh -c 'grep ^Groups: /proc/self/status; id'"
        );
        let paths = [t.path().to_path_buf(), lower.clone(), static_labinit()].map(|p| p.display().to_string());
        let mut e = vec![
            ("T", paths[0].as_str()),
            ("LOWER", paths[1].as_str()),
            ("LABINIT", paths[2].as_str()),
            ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        ];
        let alice = common::alice_env();
        e.extend(alice.iter().filter(|(k, _)| k != "PATH").map(|(k, v)| (k.as_str(), v.as_str())));
        let out = Run::script(&[], &script, &e, |_| {}).output();
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        let mut groups = status_field(&stdout, "Groups");
        groups.sort();
        if with_step {
            assert!(stderr.contains("step 10_video: ok"), "{stderr}");
            assert_eq!(groups, vec!["11166", "44"], "{stdout}\n{stderr}");
            assert!(stdout.contains("groups=11166(CVLAB-unit),44(video)"), "{stdout}");
        } else {
            assert_eq!(groups, vec!["11166"], "control: {stdout}");
        }
    }
    assert!(lower.join(".complete").exists());
}
