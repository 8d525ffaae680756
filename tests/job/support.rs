//! Shared helpers of the `labkit job` suites (tests/job*.rs,
//! tests/job_validate.rs): a scratch directory with the issue's profile, the
//! labkit binary, and a model of the kubelet's `$(VAR)` expansion.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The profile of issue 16, verbatim (tests/job/profile.toml, also read by
/// the unit tests of src/job/profile).
pub const ISSUE_PROFILE: &str = include_str!("profile.toml");

/// A path as a command-line argument.
pub fn profile_arg(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// NUL-terminated words (empty words kept).
pub fn nul_words(out: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = out.split(|b| *b == 0).map(|w| String::from_utf8_lossy(w).into_owned()).collect();
    assert_eq!(v.pop().as_deref(), Some(""), "output must end with NUL: {out:?}");
    v
}

#[path = "../common/tempdir.rs"]
mod tempdir;

/// The tests' one temporary directory ([`tempdir::TempDir`]) with the job
/// suites' profile helper.
pub struct Scratch(tempdir::TempDir);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        Scratch(tempdir::TempDir::new(tag))
    }
    pub fn path(&self) -> &Path {
        self.0.path()
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
    /// Write the issue's profile (with `edit` applied) and return its path.
    pub fn profile(&self, edit: impl Fn(&str) -> String) -> PathBuf {
        let p = self.join("job.toml");
        std::fs::write(&p, edit(ISSUE_PROFILE)).unwrap();
        p
    }
}

/// `labkit job ARGS…` with a clean environment (HOME points into nowhere,
/// so a missing --profile never reads the developer's own), started in `/`:
/// outside any checkout, as on a laptop (the other subcommands need one).
pub fn labkit_job(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_labkit"))
        .current_dir("/")
        .arg("job")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent-labkit-test-home")
        .output()
        .expect("run labkit")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Run and require exit code 0; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let o = labkit_job(args);
    assert_eq!(o.status.code(), Some(0), "labkit job {args:?}: {}", stderr(&o));
    stdout(&o)
}

/// The kubelet's expansion of `command`, `args` and `env` values: `$$` is
/// one `$`, `$(NAME)` is NAME's value when NAME is defined, anything else
/// stays (Kubernetes API reference, Container.command: "Double $$ are reduced
/// to a single $, which allows for escaping the $(VAR_NAME) syntax").
pub fn kubelet_expand(s: &str, vars: &[(String, String)]) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'(' {
                if let Some(end) = s[i + 2..].find(')') {
                    let name = &s[i + 2..i + 2 + end];
                    if let Some((_, v)) = vars.iter().find(|(k, _)| k == name) {
                        out.push_str(v);
                        i += 3 + end;
                        continue;
                    }
                }
            }
        }
        let ch = s[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Parse a YAML stream into JSON values (one per document).
pub fn yaml_docs(text: &str) -> Vec<serde_json::Value> {
    text.split("\n---\n")
        .map(|d| yaml_serde::from_str::<serde_json::Value>(d).unwrap_or_else(|e| panic!("YAML: {e}\n{d}")))
        .collect()
}

/// The container of a Pod or Job document.
pub fn container(doc: &serde_json::Value) -> &serde_json::Value {
    pod_spec(doc)["containers"].get(0).expect("one container")
}

/// The pod spec of a Pod or Job document.
pub fn pod_spec(doc: &serde_json::Value) -> &serde_json::Value {
    match doc["kind"].as_str() {
        Some("Pod") => &doc["spec"],
        Some("Job") => &doc["spec"]["template"]["spec"],
        k => panic!("not a Pod or Job: {k:?}"),
    }
}

/// A container's env as (name, value) pairs, in order.
pub fn env_pairs(container: &serde_json::Value) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e["value"].as_str().unwrap().to_string()))
        .collect()
}
