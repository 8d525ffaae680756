//! `labinit --help` is the reference: its ENVIRONMENT and EXIT STATUS
//! sections are rendered from the README's tables (build.rs), and every
//! variable labinit's code reads is in them. The controls show that a name
//! missing from the help is caught.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Variables labinit sets for children, or that only tests use: not settings.
const NOT_SETTINGS: [&str; 10] = [
    "LABKIT_SSHD_SETENV",
    "LABKIT_SUPERVISOR",
    "LABKIT_USER",
    "LABKIT_UID",
    "LABKIT_GID",
    "LABKIT_HOME",
    "LABKIT_LABINIT",
    "LABKIT_ENV",
    "LABKIT_GIT_REVISION",
    "LABKIT_TEST_LABINIT",
];

fn long_help() -> String {
    let out = Command::new(common::labinit()).arg("--help").output().expect("labinit --help");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// Every `LABKIT_*`, `CLUSTER_*` and `SSH_*` name quoted in the files under `dir`.
fn names_in(dir: &Path, out: &mut BTreeSet<String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            names_in(&p, out);
            continue;
        }
        // A sibling `tests.rs` is the body of a `#[cfg(test)] mod tests;`.
        if p.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let mut text = std::fs::read_to_string(&p).unwrap_or_default();
        // Unit tests use made-up names.
        if let Some(i) = text.find("#[cfg(test)]") {
            text.truncate(i);
        }
        for prefix in ["\"LABKIT_", "\"CLUSTER_", "\"SSH_", "${LABKIT_", "${SSH_", "$SSH_"] {
            for (i, _) in text.match_indices(prefix) {
                let start = i + prefix.find(|c: char| c.is_ascii_uppercase()).unwrap();
                let name: String = text[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if !name.ends_with('_') {
                    out.insert(name);
                }
            }
        }
    }
}

fn missing(help: &str, names: &BTreeSet<String>) -> Vec<String> {
    names
        .iter()
        .filter(|n| !NOT_SETTINGS.contains(&n.as_str()))
        .filter(|n| !help.lines().any(|l| l.trim_start().split([' ', '/']).next() == Some(n.as_str())))
        .cloned()
        .collect()
}

#[test]
fn every_variable_labinit_reads_is_in_the_help() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names = BTreeSet::new();
    names_in(&root.join("src/init"), &mut names);
    names_in(&root.join("services"), &mut names);
    assert!(names.contains("LABKIT_GRACE") && names.contains("CLUSTER_USER"), "the scan found {names:?}");
    let help = long_help();
    assert_eq!(missing(&help, &names), Vec::<String>::new(), "variables read by labinit but not in README's table");
    // Control: a name that is not in the table is reported.
    let fake: BTreeSet<String> = ["LABKIT_NOT_A_SETTING".to_string()].into();
    assert_eq!(missing(&help, &fake), vec!["LABKIT_NOT_A_SETTING".to_string()]);
}

#[test]
fn help_has_environment_and_exit_status_from_the_readme() {
    let help = long_help();
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(help.contains("\nENVIRONMENT"), "{help}");
    assert!(help.contains("\nEXIT STATUS"), "{help}");
    // Each row of both README tables is an entry of the help.
    for header in ["| variable | default | meaning |", "| code | meaning |"] {
        let rows: Vec<&str> =
            readme.lines().skip_while(|l| l.trim() != header).skip(2).take_while(|l| l.starts_with('|')).collect();
        assert!(rows.len() >= 10, "{header}: {rows:?}");
        for row in rows {
            let first = row.trim_matches('|').split(" | ").next().unwrap().trim().replace('`', "");
            assert!(
                help.lines().any(|l| l.trim_start().starts_with(&format!("{first}"))),
                "{first} missing from --help"
            );
        }
    }
    // -h stays short and points to --help.
    let short = Command::new(common::labinit()).arg("-h").output().unwrap();
    let short = String::from_utf8(short.stdout).unwrap();
    assert!(!short.contains("ENVIRONMENT") && short.contains("--help adds"), "{short}");
}

#[test]
fn version_carries_the_git_revision() {
    let out = Command::new(common::labinit()).arg("--version").output().unwrap();
    let v = String::from_utf8(out.stdout).unwrap();
    let expected = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    assert!(v.starts_with(&format!("labinit {} (", env!("CARGO_PKG_VERSION"))), "{v}");
    // Outside a git checkout (a source tarball) the revision is "unknown".
    let rev = expected.unwrap_or_else(|| "unknown".to_string());
    assert!(v.contains(&format!("({rev})")), "{v} does not name {rev}");
}
