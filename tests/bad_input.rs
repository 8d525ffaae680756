//! Bad input never reaches /etc or the job: every bad value of a
//! `CLUSTER_*` or `LABKIT_*` variable is a configuration error (exit code
//! 125, a single line naming the variable and the rule) in the library and
//! through the real binary, before anything is written or run: the account
//! files stay byte-identical and the job never runs, as root or at all.
//! Hostile SSH keys and ports are in tests/ssh.rs, system accounts that a
//! request would take over in tests/account_conflicts.rs.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use labkit::init::config::{SetupConfig, Who};
use labkit::init::setup;

/// (variable, bad value) pairs; everything else is alice's valid setting.
fn bad_cases() -> Vec<(&'static str, String)> {
    let mut v: Vec<(&str, String)> = Vec::new();
    for name in [
        "",
        "a:b",
        "alice\nroot:x:0:0::/root:/bin/sh",
        "alice\n",
        "al ice",
        "-alice",
        "123456",
        "0",
        &"a".repeat(33),
        "alice,bob",
        "alice/../x",
        "alice\0",
        "ali$ce",
        "ali`id`ce",
        "alice;reboot",
        "álice",
        "alice\t",
        "root:x:0:0",
        ".",
        "..",
        "a\rb",
        "#alice",
        "ALL",
        "alice=1",
    ] {
        // ALL is a valid account name but not a problem for us: the sudo rule is
        // by uid. Skip the valid ones so the matrix stays "all bad".
        if name == "ALL" {
            continue;
        }
        v.push(("CLUSTER_USER", name.to_owned()));
    }
    for group in ["", "CVLAB unit", "g:1", "-g", "11166", "g\ng", "g,h", &"g".repeat(40)] {
        v.push(("CLUSTER_GROUP_NAME", group.to_owned()));
    }
    for id in [
        "",
        "-1",
        "+5",
        "1e3",
        "0x10",
        " 123",
        "123 ",
        "4294967295",
        "2147483648",
        "99999999999999999999",
        "65534",
        "0",
        "00123",
        "12a",
        "１２３",
        "1.0",
        "123456\n0",
    ] {
        v.push(("CLUSTER_USER_ID", id.to_owned()));
    }
    for id in ["", "-5", "abc", "65534", "2147483648", "0", "1,2"] {
        v.push(("CLUSTER_GROUP_ID", id.to_owned()));
    }
    v.push(("LABKIT_SUDO", "maybe".into()));
    v.push(("LABKIT_STEP_FAILURE", "explode".into()));
    v.push(("LABKIT_STEP_WARN", "forever".into()));
    v.push(("LABKIT_STEP_WARN", "9999d".into()));
    v.push(("LABKIT_STEP_WARN", "-1s".into()));
    v.push(("LABKIT_SHELL", "bash".into()));
    v.push(("LABKIT_SHELL", "/bin/bash\nroot".into()));
    v.push(("LABKIT_EXTRA_GROUPS", "sudo,ad:m".into()));
    v.push(("LABKIT_STEPS_DIR", "relative/dir".into()));
    v
}

fn env_with(var: &str, value: &str) -> Vec<(String, String)> {
    let mut env = common::alice_env();
    env.retain(|(k, _)| k != var);
    env.push((var.into(), value.into()));
    env
}

#[test]
fn the_matrix_is_large_enough() {
    assert!(bad_cases().len() >= 40, "{}", bad_cases().len());
}

#[test]
fn valid_input_is_accepted() {
    // Negative control: the baseline the bad cases start from is good.
    let cfg = SetupConfig::from_env(&common::alice_env()).unwrap();
    assert!(matches!(cfg.who, Who::User(ref r) if r.uid == 123456 && r.gid == 11166 && r.group == "CVLAB-unit"));
}

#[test]
fn every_bad_value_is_a_one_line_config_error_naming_the_variable() {
    for (var, value) in bad_cases() {
        let err = match SetupConfig::from_env(&env_with(var, &value)) {
            Ok(_) => panic!("{var}={value:?} was accepted"),
            Err(e) => e,
        };
        assert_eq!(err.code, 125, "{var}={value:?}");
        assert!(err.message.contains(var), "{var}={value:?}: {}", err.message);
        assert!(!err.message.contains('\n'), "{var}={value:?}: message spans lines: {}", err.message);
    }
}

#[test]
fn bad_input_leaves_every_file_byte_identical() {
    for (var, value) in bad_cases() {
        let root = common::fixture_root("ubuntu-24.04");
        let before = common::snapshot(root.path());
        let result = setup::setup(root.path(), &env_with(var, &value));
        assert!(result.is_err(), "{var}={value:?}");
        assert_eq!(common::snapshot(root.path()), before, "{var}={value:?} changed files");
    }
}

#[test]
fn some_variables_set_names_the_missing_ones() {
    let env: Vec<(String, String)> =
        vec![("CLUSTER_USER".into(), "alice".into()), ("CLUSTER_GROUP_ID".into(), "11166".into())];
    let err = SetupConfig::from_env(&env).unwrap_err();
    assert_eq!(err.code, 125);
    assert!(err.message.starts_with("CLUSTER_USER_ID, CLUSTER_GROUP_NAME are not set"), "{}", err.message);
}

#[test]
fn none_set_means_current_identity_and_root_only_explicitly() {
    assert_eq!(SetupConfig::from_env(&[]).unwrap().who, Who::Current);
    let root = common::cluster_env("root", "0", "root", "0");
    assert_eq!(SetupConfig::from_env(&root).unwrap().who, Who::Root);
    for (u, id) in [("root", "5"), ("alice", "0")] {
        let e = SetupConfig::from_env(&common::cluster_env(u, id, "g", "5")).unwrap_err();
        assert_eq!(e.code, 125, "{u} {id}");
    }
}

// ---- Through the real binary ----

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
