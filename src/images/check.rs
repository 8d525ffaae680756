//! Drift detection: renders the family in memory and compares it with the
//! committed output tree, naming every file that is modified, missing,
//! orphaned or hand-edited. CI runs it; it never writes.
//!
//! Manifest and template errors are not drift: they surface as errors from
//! `manifest` and `render` before any comparison.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use super::digest::sha256_hex;
use super::layout::{list_files, LOCK_FILE};
use super::manifest::{Family, Parent};
use super::python::{LockDrift, LockProblem};
use super::render::{parse_index, Rendered, INDEX};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// Differs from a fresh render, and the INDEX says labkit wrote what is
    /// on disk: the inputs changed since the last `labkit render`.
    Modified { path: String, detail: String },
    /// Should exist, does not.
    Missing { path: String },
    /// Exists in the output tree, is not produced by the manifest any more
    /// (or was never labkit's).
    Orphaned { path: String },
    /// On-disk content differs from what `labkit render` wrote (per INDEX).
    HandEdited { path: String, detail: String },
    /// A Python lock file is missing, stale or hand-edited (`python`).
    Lock(LockDrift),
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::Modified { path, detail } => write!(
                f,
                "{path}: modified: out of date with the manifest/templates ({detail}); run `labkit render`"
            ),
            Drift::Missing { path } => write!(f, "{path}: missing; run `labkit render`"),
            Drift::Orphaned { path } => write!(
                f,
                "{path}: orphaned: no target produces it; `labkit render` deletes it if labkit wrote it, else remove it"
            ),
            Drift::HandEdited { path, detail } => write!(
                f,
                "{path}: hand-edited ({detail}); edit images/templates or images/manifest.toml instead and run `labkit render`"
            ),
            Drift::Lock(l) => write!(f, "{l}"),
        }
    }
}

#[derive(Debug, Default)]
pub struct CheckReport {
    pub drift: Vec<Drift>,
    /// Worth knowing, not failing: EOL variants, unlocked bases, unused lock entries.
    pub warnings: Vec<String>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.drift.is_empty()
    }

    /// `check --format json`: `{"schema":1,"clean":bool,"drift":[{"kind":
    /// "modified|missing|orphaned|hand-edited|lock-missing|lock-stale|
    /// lock-hand-edited","path","detail","message"}],
    /// "warnings":[string]}`.
    pub fn to_json(&self) -> String {
        let drift: Vec<serde_json::Value> = self
            .drift
            .iter()
            .map(|d| {
                let (kind, path, detail) = match d {
                    Drift::Modified { path, detail } => ("modified", path, detail.as_str()),
                    Drift::Missing { path } => ("missing", path, ""),
                    Drift::Orphaned { path } => ("orphaned", path, ""),
                    Drift::HandEdited { path, detail } => ("hand-edited", path, detail.as_str()),
                    Drift::Lock(l) => (
                        match l.problem {
                            LockProblem::Missing => "lock-missing",
                            LockProblem::Stale => "lock-stale",
                            LockProblem::HandEdited => "lock-hand-edited",
                        },
                        &l.path,
                        "",
                    ),
                };
                serde_json::json!({"kind": kind, "path": path, "detail": detail, "message": d.to_string()})
            })
            .collect();
        serde_json::to_string_pretty(&serde_json::json!({
            "schema": 1,
            "clean": self.is_clean(),
            "drift": drift,
            "warnings": self.warnings,
        }))
        .expect("check report serialises")
    }
}

/// Where two texts first differ, as `line N: expected "…", found "…"` (N is
/// the line in the file on disk). The inputs-hash header line is skipped
/// unless it is the only difference, so the message points at content.
fn first_difference(expected: &str, found: &str) -> String {
    let content = |s: &str| -> Vec<(usize, String)> {
        s.lines()
            .enumerate()
            .filter(|(_, l)| !l.starts_with("# labkit-inputs-sha256:"))
            .map(|(i, l)| (i + 1, l.to_string()))
            .collect()
    };
    let (e, f) = (content(expected), content(found));
    let texts = |v: &[(usize, String)]| v.iter().map(|x| x.1.clone()).collect::<Vec<_>>();
    let (e, f) = if texts(&e) == texts(&f) {
        let all =
            |s: &str| -> Vec<(usize, String)> { s.lines().enumerate().map(|(i, l)| (i + 1, l.to_string())).collect() };
        (all(expected), all(found))
    } else {
        (e, f)
    };
    let show = |s: Option<&(usize, String)>| match s {
        Some((_, s)) => format!("{:?}", s.chars().take(80).collect::<String>()),
        None => "end of file".to_string(),
    };
    let mut i = 0;
    loop {
        match (e.get(i), f.get(i)) {
            (Some(a), Some(b)) if a.1 == b.1 => i += 1,
            (a, b) => {
                let n = b.or(a).map(|x| x.0).unwrap_or(0);
                let n = if b.is_none() { f.last().map(|x| x.0 + 1).unwrap_or(1) } else { n };
                return format!("line {n}: expected {}, found {}", show(a), show(b));
            }
        }
    }
}

/// Compares `rendered` with the tree at `out`. `shown` prefixes paths in
/// messages (e.g. `images/generated/`).
pub(crate) fn compare(out: &Path, shown: &str, rendered: &Rendered) -> Vec<Drift> {
    let mut drift = Vec::new();
    let index =
        std::fs::read_to_string(out.join(INDEX)).map(|s| parse_index(&s.replace("\r\n", "\n"))).unwrap_or_default();
    let on_disk = if out.is_dir() { list_files(out) } else { Vec::new() };
    let expected: BTreeMap<&str, &str> = rendered.files.iter().map(|f| (f.path.as_str(), f.content.as_str())).collect();

    for (path, want) in &expected {
        let full = out.join(path);
        let shown_path = format!("{shown}{path}");
        // A checkout may turn LF into CRLF (core.autocrlf without the
        // repository's .gitattributes): line endings are not content.
        match std::fs::read_to_string(&full).map(|h| h.replace("\r\n", "\n")) {
            Err(_) => drift.push(Drift::Missing { path: shown_path }),
            Ok(have) if have == *want => {}
            Ok(have) => {
                let detail = first_difference(want, &have);
                let written = index.get(*path);
                let matches_index = written.is_some_and(|h| *h == sha256_hex(have.as_bytes()));
                if matches_index {
                    drift.push(Drift::Modified { path: shown_path, detail });
                } else {
                    drift.push(Drift::HandEdited { path: shown_path, detail });
                }
            }
        }
    }
    for path in &on_disk {
        if is_lock_of(path, &expected) {
            continue; // written by `labkit lock`, checked by python::check
        }
        if path != INDEX && !expected.contains_key(path.as_str()) {
            drift.push(Drift::Orphaned { path: format!("{shown}{path}") });
        }
    }
    // The INDEX is reported only on its own: any other drift already implies it.
    if drift.is_empty() {
        let want = rendered.index();
        match std::fs::read_to_string(out.join(INDEX)).map(|h| h.replace("\r\n", "\n")) {
            Err(_) => drift.push(Drift::Missing { path: format!("{shown}{INDEX}") }),
            Ok(have) if have != want => drift
                .push(Drift::HandEdited { path: format!("{shown}{INDEX}"), detail: first_difference(&want, &have) }),
            Ok(_) => {}
        }
    }
    drift
}

/// A Python lock file (`<image>/<variant>/requirements.lock`) beside a
/// Dockerfile that render produces; a lock without one is orphaned.
fn is_lock_of(path: &str, expected: &BTreeMap<&str, &str>) -> bool {
    path.strip_suffix(LOCK_FILE)
        .is_some_and(|dir| dir.ends_with('/') && expected.contains_key(format!("{dir}Dockerfile").as_str()))
}

/// Non-failing observations about the family. `today` is `YYYY-MM-DD`; it is
/// passed in so that this stays a pure function.
pub(crate) fn warnings(family: &Family, today: &str) -> Vec<String> {
    let mut w = Vec::new();
    for (name, v) in &family.manifest.variants {
        if let Some(eol) = &v.eol {
            if eol.as_str() <= today {
                w.push(format!("variant `{name}` reached its end of life on {eol}; plan its removal"));
            }
        }
    }
    let mut bases: Vec<&str> = Vec::new();
    for t in &family.targets {
        if let Parent::Base { reference, digest } = &t.parent {
            if !bases.contains(&reference.as_str()) {
                bases.push(reference);
                if digest.is_none() && !family.overrides.contains_key(&t.variant) {
                    w.push(format!(
                        "base {reference} (variant `{}`) is not locked to a digest; run `labkit lock` where the registry is reachable",
                        t.variant
                    ));
                }
            }
        }
    }
    for r in family.lock.bases.keys() {
        if !family.manifest.variants.values().any(|v| &v.base == r) {
            w.push(format!("images/lock.toml: entry for {r} is not used by any variant; run `labkit lock`"));
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_difference_names_the_line() {
        assert_eq!(first_difference("a\nb\n", "a\nc\n"), "line 2: expected \"b\", found \"c\"");
        assert_eq!(first_difference("a\n", "a\nb\n"), "line 2: expected end of file, found \"b\"");
    }
}
