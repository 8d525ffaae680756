//! What `labkit job render` prints, checked two ways:
//! - against the official Kubernetes JSON schemas, offline, with the PyPI
//!   package `kubernetes-validate` in strict mode (unknown fields refused),
//!   for every Kubernetes version from 1.29 to the newest it ships;
//! - against committed snapshots in tests/job/snapshots/ (refresh after an
//!   intended change with `LABKIT_UPDATE_SNAPSHOTS=1 cargo test --test
//!   job_validate`, then review the diff).
//!
//! The validator comes from tests/tools/deps.sh (`make deps`), found through
//! LABKIT_TEST_KUBERNETES_VALIDATE (set by `make unit`) or on PATH. Without
//! it these tests fail: a missing validator is not a pass.

#[path = "job/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

/// The issue's profile with every optional key and a second, read-only
/// volume; no namespace (kubectl's context decides).
fn extended_profile(p: &str) -> String {
    p.replace("namespace = \"runai-cvlab\"\n", "")
        .replace(
            "project   = \"cvlab\"",
            "project   = \"cvlab\"\ngrace     = \"45s\"\nttl       = \"1d\"\nshm_size  = \"16Gi\"\npriority  = 2",
        )
        .replace(
            "[env]\n",
            "[[volume]]\nclaim       = \"pv-cvlabsrc1\"\nrunai_claim = \"runai-pv-cvlabsrc1\"\nmount       = \"/cvlabsrc1\"\nread_only   = true\n\n[env]\nOMP_NUM_THREADS = 4\n",
        )
}

/// (snapshot file, profile kind, render arguments)
fn cases() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    vec![
        (
            "job-train.yaml",
            "issue",
            vec!["train", "--gpu", "1", "--timeout", "4h", "--", "python", "train.py", "--lr", "0.1"],
        ),
        (
            "job-jupyter.yaml",
            "issue",
            vec![
                "nb",
                "--port",
                "8888",
                "--timeout",
                "4h",
                "--",
                "jupyter",
                "lab",
                "--ip=0.0.0.0",
                "--no-browser",
                "--port=8888",
            ],
        ),
        ("pod-wait.yaml", "issue", vec!["dev", "--to", "pod", "--interactive"]),
        (
            "pod-half-gpu.yaml",
            "issue",
            vec![
                "half",
                "--to",
                "pod",
                "--gpu",
                "0.5",
                "--runai-scheduler",
                "-c",
                "python a.py 2>&1 | tee \"log $(date +%F).txt\"",
            ],
        ),
        ("job-workers.yaml", "issue", vec!["ddp", "--workers", "3", "--gpu", "2", "--", "train.py", "--epochs", "3"]),
        ("job-extended.yaml", "extended", vec!["big", "--gpu", "8", "--", "python", "train.py"]),
        (
            "job-extended-workers.yaml",
            "extended",
            vec!["ddp2", "--workers", "2", "--port", "6006", "--", "-m", "lab.train"],
        ),
        ("runai-hello.sh", "issue", vec!["hello", "--to", "runai", "--gpu", "0.5", "--", "python", "hello.py"]),
        (
            "runai-jupyter.sh",
            "issue",
            vec![
                "nb",
                "--to",
                "runai",
                "--gpu",
                "1",
                "--interactive",
                "--port",
                "8888",
                "--timeout",
                "4h",
                "--",
                "jupyter",
                "lab",
                "--ip=0.0.0.0",
            ],
        ),
    ]
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Render every case; returns (file name, text).
fn render_all(s: &Scratch) -> Vec<(String, String)> {
    let issue = s.profile(|p| p.to_string());
    let ext = s.join("extended.toml");
    std::fs::write(&ext, extended_profile(ISSUE_PROFILE)).unwrap();
    cases()
        .into_iter()
        .map(|(file, kind, args)| {
            let profile = if kind == "issue" { &issue } else { &ext };
            let mut a = vec!["render", "--profile", profile.to_str().unwrap()];
            a.extend(args);
            (file.to_string(), ok(&a))
        })
        .collect()
}

fn validator() -> PathBuf {
    if let Some(p) = std::env::var_os("LABKIT_TEST_KUBERNETES_VALIDATE") {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "LABKIT_TEST_KUBERNETES_VALIDATE={} does not exist: run `make deps` (tests/tools/deps.sh)",
            p.display()
        );
        return p;
    }
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|d| d.join("kubernetes-validate")).find(|p| p.exists()))
        .unwrap_or_default();
    found.unwrap_or_else(|| {
        panic!(
            "kubernetes-validate is not installed: run `make deps` (tests/tools/deps.sh installs the pinned version), \
             or set LABKIT_TEST_KUBERNETES_VALIDATE; these tests do not pass without it"
        )
    })
}

/// 1.29 up to the newest version the validator ships (its default, from --help).
fn versions(kv: &Path) -> Vec<String> {
    let help = Command::new(kv).arg("--help").output().expect("run kubernetes-validate --help");
    let text = String::from_utf8_lossy(&help.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
    let newest = text
        .split("Defaults to ")
        .nth(1)
        .and_then(|t| t.split(|c: char| !(c.is_ascii_digit() || c == '.')).next())
        .unwrap_or_else(|| panic!("no default version in kubernetes-validate --help: {text}"));
    let minor: u32 = newest.split('.').nth(1).unwrap().parse().unwrap();
    assert!(minor >= 29, "kubernetes-validate ships only up to {newest}; deps.sh pins a newer one");
    (29..=minor).map(|m| format!("1.{m}.0")).collect()
}

fn validate(kv: &Path, version: &str, files: &[PathBuf]) -> (bool, String) {
    let out =
        Command::new(kv).arg("--strict").arg("-k").arg(version).args(files).output().expect("run kubernetes-validate");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn every_rendered_form_validates_strictly_for_kubernetes_1_29_to_newest() {
    let kv = validator();
    let s = Scratch::new("validate");
    let mut files = Vec::new();
    let mut documents = 0;
    for (name, text) in render_all(&s) {
        if name.ends_with(".yaml") {
            let f = s.join(&name);
            documents += yaml_docs(&text).len();
            std::fs::write(&f, text).unwrap();
            files.push(f);
        }
    }
    assert_eq!(files.len(), 7);
    // Negative controls: the guide's traps, which the schemas do catch.
    let train = std::fs::read_to_string(s.join("job-train.yaml")).unwrap();
    let unquoted = s.join("bad-unquoted-priority.yaml");
    std::fs::write(&unquoted, train.replace("priority: '0'", "priority: 0")).unwrap();
    let unknown = s.join("bad-unknown-field.yaml");
    std::fs::write(&unknown, train.replace("  backoffLimit: 0\n", "  backoffLimit: 0\n  restartPolicy: Never\n"))
        .unwrap();
    assert_ne!(std::fs::read(&unquoted).unwrap(), train.as_bytes());
    assert_ne!(std::fs::read(&unknown).unwrap(), train.as_bytes());

    let versions = versions(&kv);
    for v in &versions {
        let (ok, text) = validate(&kv, v, &files);
        assert!(ok, "Kubernetes {v}:\n{text}");
        let short = v.trim_end_matches(".0");
        let passed = text.lines().filter(|l| l.contains(" passed for resource ") && l.ends_with(short)).count();
        assert_eq!(passed, documents, "Kubernetes {v}: every document must be checked:\n{text}");
        for bad in [&unquoted, &unknown] {
            let (ok, text) = validate(&kv, v, std::slice::from_ref(bad));
            assert!(!ok, "Kubernetes {v}: {} should not validate:\n{text}", bad.display());
        }
    }
    eprintln!("validated {documents} documents in {} files for Kubernetes {:?}", files.len(), versions);
}

#[test]
fn rendered_forms_match_the_snapshots() {
    let s = Scratch::new("snap");
    let dir = repo().join("tests/job/snapshots");
    let update = std::env::var_os("LABKIT_UPDATE_SNAPSHOTS").is_some();
    let rendered = render_all(&s);
    if update {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in &rendered {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }
    let mut committed: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    committed.sort();
    let mut names: Vec<String> = rendered.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    assert_eq!(names, committed, "snapshot files differ (LABKIT_UPDATE_SNAPSHOTS=1 to accept)");
    for (name, text) in &rendered {
        let want = std::fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(text, &want, "{name} differs from tests/job/snapshots (LABKIT_UPDATE_SNAPSHOTS=1 to accept)");
    }
}
