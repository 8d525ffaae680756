//! Bad input never reaches /etc: every rejected value gives exit code 125, a
//! single line naming the variable and the rule, and leaves the account files
//! byte-identical.

mod common;

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
