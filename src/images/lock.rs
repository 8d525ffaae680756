//! The lock file (`images/lock.toml`): each base image reference → the digest
//! of its manifest (index) as the registry serves it.
//!
//! Owns reading, writing and refreshing the lock. `render` turns entries into
//! pinned `FROM` defaults and `base.digest` labels; only `labkit lock` talks to
//! a registry (through `skopeo` or `docker buildx imagetools`), and it writes
//! nothing unless every base resolved.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

const HEADER: &str = "# Written by `labkit lock`: base image reference -> registry digest.\n\
# Do not edit by hand. `labkit render` pins each base to its digest; run it after `labkit lock`.\n";

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    #[serde(default)]
    pub bases: BTreeMap<String, LockEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LockEntry {
    pub digest: String,
}

impl Lock {
    /// Reads the lock; a missing file is an empty lock (nothing pinned yet).
    pub fn load(path: &Path) -> Result<Lock> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                toml::from_str(&text).with_context(|| format!("while reading the lock file {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Lock::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub fn to_text(&self) -> String {
        let body = toml::to_string(self).expect("lock serialises");
        format!("{HEADER}\n{body}")
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_text()).with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn digest(&self, reference: &str) -> Option<&str> {
        self.bases.get(reference).map(|e| e.digest.as_str())
    }

    pub fn set(&mut self, reference: &str, digest: &str) {
        self.bases.insert(reference.to_string(), LockEntry { digest: digest.to_string() });
    }
}

/// A tool that can fetch a reference's raw manifest from its registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    Skopeo,
    Docker,
}

impl Resolver {
    pub fn parse(s: &str) -> Result<Resolver> {
        match s {
            "skopeo" => Ok(Resolver::Skopeo),
            "docker" => Ok(Resolver::Docker),
            _ => bail!("unknown resolver `{s}` (known: skopeo, docker)"),
        }
    }

    fn program(self) -> &'static str {
        match self {
            Resolver::Skopeo => "skopeo",
            Resolver::Docker => "docker",
        }
    }

    /// The registry digest is the SHA-256 of the raw manifest bytes, so both
    /// tools are asked for exactly those bytes and labkit hashes them itself.
    fn command(self, reference: &str) -> Command {
        let mut c = Command::new(self.program());
        match self {
            Resolver::Skopeo => c.args(["inspect", "--raw", &format!("docker://{reference}")]),
            Resolver::Docker => c.args(["buildx", "imagetools", "inspect", "--raw", reference]),
        };
        c
    }

    pub fn resolve(self, reference: &str) -> Result<String> {
        let out = self.command(reference).output().with_context(|| format!("cannot run {}", self.program()))?;
        if !out.status.success() || out.stdout.is_empty() {
            bail!(
                "{} could not fetch the manifest of {reference}: {}",
                self.program(),
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("no output")
                    .trim()
            );
        }
        Ok(format!("sha256:{}", super::sha256_hex(&out.stdout)))
    }
}

/// The resolvers to try, in order: the one asked for, else every one on PATH.
pub fn resolvers(requested: Option<Resolver>) -> Vec<Resolver> {
    match requested {
        Some(r) => vec![r],
        None => [Resolver::Skopeo, Resolver::Docker]
            .into_iter()
            .filter(|r| super::build::on_path(r.program()).is_some())
            // docker only helps with the buildx plugin (imagetools).
            .filter(|r| {
                *r != Resolver::Docker
                    || Command::new("docker").args(["buildx", "version"]).output().is_ok_and(|o| o.status.success())
            })
            .collect(),
    }
}

/// What `labkit lock` did.
#[derive(Debug)]
pub struct LockReport {
    pub changed: Vec<(String, Option<String>, String)>,
    pub unchanged: Vec<String>,
    pub removed: Vec<String>,
}

/// Resolves every base reference. All or nothing: on any failure the lock
/// stays as it was and the error names each reference that failed.
pub fn refresh(old: &Lock, references: &[String], resolvers: &[Resolver]) -> Result<(Lock, LockReport)> {
    if resolvers.is_empty() {
        bail!("no registry access: neither skopeo nor docker buildx is installed (apt-get install skopeo); the lock file is unchanged");
    }
    let mut new = Lock::default();
    let mut failures = Vec::new();
    for r in references {
        let mut last_err = None;
        for res in resolvers {
            match res.resolve(r) {
                Ok(d) => {
                    new.set(r, &d);
                    last_err = None;
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        if let Some(e) = last_err {
            failures.push(format!("{r}: {e:#}"));
        }
    }
    if !failures.is_empty() {
        bail!(
            "no registry access for {} base image(s); the lock file is unchanged:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    let mut report = LockReport { changed: Vec::new(), unchanged: Vec::new(), removed: Vec::new() };
    for (r, e) in &new.bases {
        match old.digest(r) {
            Some(d) if d == e.digest => report.unchanged.push(r.clone()),
            prev => report.changed.push((r.clone(), prev.map(str::to_string), e.digest.clone())),
        }
    }
    for r in old.bases.keys() {
        if !new.bases.contains_key(r) {
            report.removed.push(r.clone());
        }
    }
    Ok((new, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_round_trips_through_text() {
        let mut l = Lock::default();
        l.set("docker.io/library/ubuntu:24.04", "sha256:00ff");
        let back: Lock = toml::from_str(&l.to_text()).unwrap();
        assert_eq!(back, l);
    }

    #[test]
    fn no_resolver_means_no_change() {
        let e = refresh(&Lock::default(), &["a.io/b:c".into()], &[]).unwrap_err();
        assert!(e.to_string().contains("unchanged"));
    }
}
