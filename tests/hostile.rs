//! Hostile and malformed input, through the real binary: every bad value of a
//! `CLUSTER_*` or `LABKIT_*` variable ends the start with exit 125 and exactly
//! one error line naming the variable, before anything is written or run (the
//! account files stay byte-identical, the job never runs, as root or at all).
//! `SSH_PUBLIC_KEY` and `SSH_PORT` are checked by the ssh service, which refuses
//! anything but plain public keys and never writes a key file or starts sshd
//! for them.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn bad_env_cases() -> Vec<(&'static str, String)> {
    let mut v: Vec<(&str, String)> = vec![
        ("CLUSTER_USER", "alice\nroot:x:0:0::/root:/bin/bash".into()),
        ("CLUSTER_USER", "alice:x:0:0".into()),
        ("CLUSTER_USER", "alice ALL=(ALL) NOPASSWD: ALL".into()),
        ("CLUSTER_USER", "#0".into()),
        ("CLUSTER_USER", "-o".into()),
        ("CLUSTER_USER", "../../etc".into()),
        ("CLUSTER_USER", "a".repeat(100_000)),
        ("CLUSTER_USER", "".into()),
        ("CLUSTER_USER", "$(id)".into()),
        ("CLUSTER_USER", "root".into()), // with uid 123456: root is reserved
        ("CLUSTER_GROUP_NAME", "CVLAB-unit\nsudo:x:27:alice".into()),
        ("CLUSTER_GROUP_NAME", "%sudo".into()),
        ("CLUSTER_GROUP_NAME", "g,h".into()),
        ("CLUSTER_USER_ID", "0".into()),
        ("CLUSTER_USER_ID", "-1".into()),
        ("CLUSTER_USER_ID", "4294967296".into()),
        ("CLUSTER_USER_ID", "2147483648".into()),
        ("CLUSTER_USER_ID", "65534".into()),
        ("CLUSTER_USER_ID", "1e9".into()),
        ("CLUSTER_USER_ID", "123456\n0".into()),
        ("CLUSTER_USER_ID", "9".repeat(10_000)),
        ("CLUSTER_GROUP_ID", " 11166".into()),
        ("CLUSTER_GROUP_ID", "0x2b9e".into()),
        ("LABKIT_TIMEOUT", "99999999999999999999d".into()),
        ("LABKIT_TIMEOUT", "-1s".into()),
        ("LABKIT_TIMEOUT", "4 h".into()),
        ("LABKIT_TIMEOUT", "1e9".into()),
        ("LABKIT_GRACE", "400d".into()),
        ("LABKIT_GRACE", "soon".into()),
        ("LABKIT_KILL_AFTER", "NaN".into()),
        ("LABKIT_PRESERVE_STATUS", "maybe".into()),
        ("LABKIT_SUDO", "yes please".into()),
        ("LABKIT_STEP_FAILURE", "ignore".into()),
        ("LABKIT_STEP_WARN", "forever".into()),
        ("LABKIT_SHELL", "/bin/bash\nroot".into()),
        ("LABKIT_SHELL", "bash".into()),
        ("LABKIT_EXTRA_GROUPS", "sudo,ad min".into()),
        ("LABKIT_EXTRA_GROUPS", "sudo\nroot".into()),
        ("LABKIT_STEPS_DIR", "relative/steps".into()),
        ("LABKIT_SERVICES_DIR", "services".into()),
        ("LABKIT_SERVICE_GRACE", "9999d".into()),
        ("LABKIT_IDLE_TIMEOUT", "1000d".into()),
        ("LABKIT_IDLE_INTERVAL", "0".into()),
        ("LABKIT_IDLE_CPU", "-5".into()),
        ("LABKIT_IDLE_CPU", "abc".into()),
        ("LABKIT_QUIET", "2".into()),
    ];
    v.sort_by_key(|(k, _)| *k);
    v
}

#[test]
fn there_are_at_least_forty_cases() {
    assert!(bad_env_cases().len() >= 40, "{}", bad_env_cases().len());
}

#[test]
fn every_hostile_value_is_refused_before_anything_is_written_or_run() {
    let root = common::fixture_root("ubuntu-24.04");
    // Writable for the job's user too, so the negative control can leave its mark.
    fs::create_dir(root.join("out")).unwrap();
    fs::set_permissions(root.join("out"), fs::Permissions::from_mode(0o1777)).unwrap();
    let marker = root.join("out/job-ran");
    let before = common::snapshot(&root.join("etc"));
    for (var, value) in bad_env_cases() {
        let mut env = common::alice_env();
        env.retain(|(k, _)| k != var);
        env.push((var.into(), value.clone()));
        let out = Command::new(common::labinit())
            .args(["run", "--root"])
            .arg(root.path())
            .args(["--", "/usr/bin/touch"])
            .arg(&marker)
            .env_clear()
            .envs(env)
            .output()
            .unwrap();
        let shown: String = value.chars().take(40).collect();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{var}={shown:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{var}={shown:?}: one line only: {err}");
        assert!(err.starts_with("labinit: error: ") && err.contains(var), "{var}={shown:?}: {err}");
        assert!(!marker.exists(), "{var}={shown:?}: the job ran");
        assert_eq!(common::snapshot(&root.join("etc")), before, "{var}={shown:?}: /etc changed");
    }
    // Negative control: the same command with the good environment runs.
    let out = Command::new(common::labinit())
        .args(["run", "--root"])
        .arg(root.path())
        .args(["--", "/usr/bin/touch"])
        .arg(&marker)
        .env_clear()
        .envs(common::alice_env())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(marker.exists());
}

/// Run the repo's ssh service script with `key` and `port`; LABKIT_LABINIT
/// points at a recorder, so any attempt to write the key file leaves a mark.
/// The recorder then fails, so the script stops there (it never reaches the
/// host's /etc/ssh or /run).
fn ssh_service(key: &str, port: &str) -> (String, bool) {
    let dir = common::TempDir::new("ssh-hostile");
    let mark = dir.join("key-writer-called");
    let recorder = dir.join("labinit");
    fs::write(&recorder, format!("#!/bin/sh\ntouch {}\ncat >/dev/null\nexit 1\n", mark.display())).unwrap();
    fs::set_permissions(&recorder, fs::Permissions::from_mode(0o755)).unwrap();
    // A fake sshd that records being started (the real one must never be reached).
    let sshd = dir.join("sshd");
    fs::write(&sshd, format!("#!/bin/sh\ntouch {}\n", mark.display())).unwrap();
    fs::set_permissions(&sshd, fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("/bin/sh")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/services/ssh"))
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
        .env("SSH_PUBLIC_KEY", key)
        .env("SSH_PORT", port)
        .env("LABKIT_USER", "alice")
        .env("LABKIT_UID", "123456")
        .env("LABKIT_GID", "11166")
        .env("LABKIT_HOME", dir.join("home").display().to_string())
        .env("LABKIT_LABINIT", &recorder)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "a refused key is not a service failure: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (text, mark.exists())
}

const GOOD_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGqHd3Hq7S4bXx3fXWm5xg0Qy5sQm8m9p7oQwq4s0Ruk alice@laptop";

#[test]
fn hostile_ssh_keys_and_ports_are_refused_without_writing_anything() {
    let cases: Vec<(String, &str)> = vec![
        (format!("command=\"id\" {GOOD_KEY}"), "22"),
        (format!("environment=\"LD_PRELOAD=/tmp/x.so\" {GOOD_KEY}"), "22"),
        (format!("no-pty,{GOOD_KEY}"), "22"),
        ("ssh-ed25519 AAAA$(touch /tmp/pwned)".into(), "22"),
        ("ssh-ed25519 AAAA`id`".into(), "22"),
        ("ssh-ed25519 AAAA\u{1}".into(), "22"),
        ("ssh-rsa".into(), "22"),
        (format!("{GOOD_KEY}\nfrom=\"*\" {GOOD_KEY}"), "22"),
        ("garbage".into(), "22"),
        (GOOD_KEY.into(), "22; rm -rf /"),
        (GOOD_KEY.into(), "0"),
        (GOOD_KEY.into(), "70000"),
        (GOOD_KEY.into(), "022"),
    ];
    for (key, port) in &cases {
        let (text, touched) = ssh_service(key, port);
        assert!(text.contains("error:"), "{key:?} port {port}: {text}");
        assert_eq!(text.lines().filter(|l| l.contains("error:")).count(), 1, "{text}");
        assert!(!touched, "{key:?} port {port}: the key writer or sshd was reached: {text}");
    }
    // Negative control: a plain key reaches the key writer (which fails here).
    let (text, touched) = ssh_service(GOOD_KEY, "22");
    assert!(touched, "a good key must be written: {text}");
    assert!(text.contains("could not write ~/.ssh/authorized_keys"), "{text}");
}

/// Run `labinit run --root ROOT -- touch MARKER` with `env`.
fn run_touch(root: &common::TempDir, env: &[(String, String)], marker: &std::path::Path) -> std::process::Output {
    Command::new(common::labinit())
        .args(["run", "--root"])
        .arg(root.path())
        .args(["--", "/usr/bin/touch"])
        .arg(marker)
        .env_clear()
        .envs(env.iter().cloned())
        .output()
        .unwrap()
}

#[test]
fn system_accounts_are_never_taken_over_and_nothing_is_written() {
    // Issue 11 §1: nobody renumbered and given sudo, daemon renamed, sudo or
    // nogroup renumbered, shadow/sudo as the primary group.
    let root = common::fixture_root("ubuntu-24.04");
    common::add_sudo(&root, "root ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n");
    fs::create_dir(root.join("out")).unwrap();
    fs::set_permissions(root.join("out"), fs::Permissions::from_mode(0o1777)).unwrap();
    let marker = root.join("out/job-ran");
    let before = common::snapshot(&root.join("etc"));
    let cases = [
        (common::cluster_env("nobody", "123456", "CVLAB-unit", "11166"), "'nobody' (uid 65534)"),
        (common::cluster_env("alice", "1", "CVLAB-unit", "11166"), "'daemon' (uid 1)"),
        (common::cluster_env("daemon", "1", "CVLAB-unit", "11166"), "'daemon' (uid 1)"),
        (common::cluster_env("_apt", "123456", "CVLAB-unit", "11166"), "'_apt' (uid 42)"),
        (common::cluster_env("alice", "123456", "sudo", "11166"), "group 'sudo' (gid 27)"),
        (common::cluster_env("alice", "123456", "nogroup", "11166"), "group 'nogroup' (gid 65534)"),
        (common::cluster_env("alice", "123456", "CVLAB-unit", "42"), "privileged group 'shadow'"),
        (common::cluster_env("alice", "123456", "CVLAB-unit", "27"), "privileged group 'sudo'"),
    ];
    for (env, want) in &cases {
        let out = run_touch(&root, env, &marker);
        let err = String::from_utf8_lossy(&out.stderr);
        let what = format!("{:?}", &env[1..]);
        assert_eq!(out.status.code(), Some(125), "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "{what}: one line only: {err}");
        assert!(err.starts_with("labinit: error: ") && err.contains(want), "{what}: {err}");
        assert!(!marker.exists(), "{what}: the job ran");
        assert_eq!(common::snapshot(&root.join("etc")), before, "{what}: /etc changed");
    }
    // Negative control: Ubuntu's regular `ubuntu` at 1000 is renamed, the job
    // runs, and sudo is granted.
    let out = run_touch(&root, &common::cluster_env("alice", "1000", "CVLAB-unit", "11166"), &marker);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(marker.exists());
    assert!(fs::read_to_string(root.join("etc/passwd")).unwrap().contains("\nalice:x:1000:11166:"));
    assert!(fs::read_to_string(root.join("etc/sudoers.d/labkit")).unwrap().contains("#1000 ALL="));
}
