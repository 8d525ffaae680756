//! The lock file (`images/lock.toml`): each base image reference → the digest
//! of its manifest (index) as the registry serves it. Reading and writing
//! only; refreshing it from registries is `lock`'s. A leaf.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
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
    pub(crate) fn load(path: &Path) -> Result<Lock> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                toml::from_str(&text).with_context(|| format!("while reading the lock file {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Lock::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub(crate) fn to_text(&self) -> String {
        let body = toml::to_string(self).expect("lock serialises");
        format!("{HEADER}\n{body}")
    }

    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_text()).with_context(|| format!("cannot write {}", path.display()))
    }

    pub(crate) fn digest(&self, reference: &str) -> Option<&str> {
        self.bases.get(reference).map(|e| e.digest.as_str())
    }

    pub fn set(&mut self, reference: &str, digest: &str) {
        self.bases.insert(reference.to_string(), LockEntry { digest: digest.to_string() });
    }
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
}
