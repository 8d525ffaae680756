//! `labkit lock`'s registry side: resolves each base image reference to the
//! digest of its manifest (index) through `skopeo` or `docker buildx
//! imagetools`, and writes nothing unless every base resolved. The file
//! itself is [`super::lockfile`]'s; `render` turns its entries into pinned
//! `FROM` defaults and `base.digest` labels.

use std::process::Command;

use anyhow::{bail, Context, Result};

use super::digest::sha256_hex;
use super::lockfile::Lock;
use super::tools::Resolver;

/// The registry digest is the SHA-256 of the raw manifest bytes, so both
/// tools are asked for exactly those bytes and labkit hashes them itself.
fn command(resolver: Resolver, reference: &str) -> Command {
    let mut c = Command::new(resolver.program());
    match resolver {
        Resolver::Skopeo => c.args(["inspect", "--raw", &format!("docker://{reference}")]),
        Resolver::Docker => c.args(["buildx", "imagetools", "inspect", "--raw", reference]),
    };
    c
}

/// The digest (`sha256:…`) of `reference`'s manifest as its registry serves it.
pub(crate) fn resolve(resolver: Resolver, reference: &str) -> Result<String> {
    let program = resolver.program();
    let out = command(resolver, reference).output().with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() || out.stdout.is_empty() {
        bail!(
            "{program} could not fetch the manifest of {reference}: {}",
            String::from_utf8_lossy(&out.stderr).lines().find(|l| !l.trim().is_empty()).unwrap_or("no output").trim()
        );
    }
    Ok(format!("sha256:{}", sha256_hex(&out.stdout)))
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
pub(crate) fn refresh(old: &Lock, references: &[String], resolvers: &[Resolver]) -> Result<(Lock, LockReport)> {
    if resolvers.is_empty() {
        bail!("no registry access: neither skopeo nor docker buildx is installed (apt-get install skopeo); the lock file is unchanged");
    }
    let mut new = Lock::default();
    let mut failures = Vec::new();
    for r in references {
        let mut last_err = None;
        for res in resolvers {
            match resolve(*res, r) {
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
    fn no_resolver_means_no_change() {
        let e = refresh(&Lock::default(), &["a.io/b:c".into()], &[]).unwrap_err();
        assert!(e.to_string().contains("unchanged"));
    }
}
