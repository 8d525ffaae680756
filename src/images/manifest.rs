//! The manifest (`images/manifest.toml`): its typed schema, its validation,
//! and its expansion into build targets (one per image × variant).
//!
//! Owns every rule about the family's shape — names, parents, variants, tags,
//! base references — so that render, plan, bake and build can trust a
//! [`Family`] without re-checking it. Does not read templates' contents (that
//! is `render`'s) and never touches the network (digests come from
//! `images/lock.toml`, written by `labkit lock`).

mod error;
mod expand;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use error::{ManifestError, ManifestErrors};
pub(crate) use expand::expand;

use super::layout::Layout;
use super::lockfile::Lock;
use super::syntax;

/// The whole manifest file. Unknown keys anywhere are errors: a typo must
/// never silently drop a setting.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub family: FamilyInfo,
    #[serde(default)]
    pub variants: BTreeMap<String, Variant>,
    #[serde(default)]
    pub images: BTreeMap<String, Image>,
}

/// Facts shared by every image: where it is published and who makes it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FamilyInfo {
    /// Registry and namespace, e.g. `ic-registry.epfl.ch/cvlab/lis`.
    pub registry: String,
    pub vendor: String,
    pub authors: String,
    pub licenses: String,
    /// Source repository URL (`org.opencontainers.image.source`).
    pub source: String,
    /// User documentation URL (`org.opencontainers.image.documentation`).
    pub documentation: String,
    /// Reverse-DNS prefix of the family's own labels.
    #[serde(default = "default_label_prefix")]
    pub label_prefix: String,
    #[serde(default = "default_platforms")]
    pub platforms: Vec<String>,
    /// Where the Python virtual environment lives in every image.
    #[serde(default = "default_venv")]
    pub venv: String,
    /// `labkit lock` considers only packages published before this moment
    /// (RFC 3339, uv's `--exclude-newer`), so a lock is reproducible; move it
    /// forward to take newer releases. An input of the locks only, so it is
    /// neither in the template context nor in the Dockerfiles' inputs hash.
    #[serde(default, skip_serializing)]
    pub python_snapshot: Option<String>,
}

fn default_label_prefix() -> String {
    "ch.epfl.cvlab.labkit".into()
}
fn default_platforms() -> Vec<String> {
    vec!["linux/amd64".into()]
}
fn default_venv() -> String {
    "/opt/venv".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Cpu,
    Cuda,
}

/// One base system the whole family is built on (a CPU Ubuntu, a CUDA line).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub description: String,
    pub kind: Kind,
    /// The base image reference written in full (registry/name:tag). NVIDIA
    /// renames and deletes tags, so it is never computed from a pattern.
    pub base: String,
    /// End of life (YYYY-MM-DD): still built, but flagged in labels and by check.
    #[serde(default)]
    pub eol: Option<String>,
    /// Extra tags shared by every image of this variant (`{alias}` in tag patterns).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Free-form values for the templates (`values.cuda`, `values.python`, …).
    #[serde(default)]
    pub values: BTreeMap<String, String>,
}

/// One image of the family (lab-base, lab-pytorch, …).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub description: String,
    /// Template file name inside `images/templates/`.
    pub template: String,
    /// Parent image in the family; absent means the variant's base image.
    #[serde(default)]
    pub parent: Option<String>,
    /// Variants this image is built for.
    pub variants: Vec<String>,
    /// Tag patterns: `{variant}` and `{alias}` (one tag per variant alias).
    /// The first resulting tag is the image's primary tag.
    pub tags: Vec<String>,
    /// Python requirements (PEP 508, `{key}` = the variant's `values.key`),
    /// resolved with the rest of the variant by `labkit lock` into the
    /// image's `requirements.lock` (`python`).
    #[serde(default)]
    pub python: Vec<String>,
}

/// What a target is built `FROM`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Parent {
    /// Another target of the family.
    Target { target: String, reference: String },
    /// The variant's external base image, with its locked digest if any.
    Base { reference: String, digest: Option<String> },
}

impl Parent {
    /// The reference a plain `FROM` should use: pinned by digest when known.
    pub fn pinned(&self) -> String {
        match self {
            Parent::Target { reference, .. } => reference.clone(),
            Parent::Base { reference, digest: Some(d) } => format!("{}@{}", strip_digest(reference), d),
            Parent::Base { reference, .. } => reference.clone(),
        }
    }
    /// Human name of the parent (`org.opencontainers.image.base.name`).
    pub fn name(&self) -> &str {
        match self {
            Parent::Target { reference, .. } | Parent::Base { reference, .. } => reference,
        }
    }
    pub fn digest(&self) -> &str {
        match self {
            Parent::Base { digest: Some(d), .. } => d,
            _ => "",
        }
    }
}

fn strip_digest(r: &str) -> &str {
    r.split('@').next().unwrap_or(r)
}

/// One (image, variant) pair: the unit that is rendered, planned and built.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// `<image>-<variant>`: a valid bake target name.
    pub name: String,
    pub image: String,
    pub variant: String,
    pub parent: Parent,
    /// Full references (`registry/image:tag`), primary first.
    pub tags: Vec<String>,
    /// 0 for images on an external base, parent's depth + 1 otherwise.
    pub depth: usize,
}

/// `variant=reference` pairs that replace a variant's base image for one run
/// (e.g. a locally built base), without editing the manifest.
pub type BaseOverrides = BTreeMap<String, String>;

/// Parses `cpu=localhost/debootstrap-noble:latest`.
pub fn parse_override(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((v, r)) if !v.is_empty() && !r.is_empty() => match syntax::full_reference(r) {
            Ok(()) => Ok((v.to_string(), r.to_string())),
            Err(why) => Err(format!("base override `{s}`: {why}")),
        },
        _ => Err(format!("base override `{s}` is not VARIANT=REFERENCE (e.g. cpu=localhost/noble:latest)")),
    }
}

/// The manifest, validated and expanded into targets in build order.
#[derive(Debug, Clone)]
pub struct Family {
    pub manifest: Manifest,
    pub lock: Lock,
    pub overrides: BaseOverrides,
    /// Sorted by (depth, name): parents always before children.
    pub targets: Vec<Target>,
}

impl Family {
    /// Reads and validates `images/manifest.toml` and `images/lock.toml`.
    pub(crate) fn load(layout: &Layout, overrides: &BaseOverrides) -> Result<Family, ManifestErrors> {
        let path = layout.manifest();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ManifestErrors(vec![ManifestError::Read(format!("cannot read {}: {e}", path.display()))]))?;
        let lock =
            Lock::load(&layout.lock()).map_err(|e| ManifestErrors(vec![ManifestError::Read(format!("{e:#}"))]))?;
        Family::from_str(&text, lock, overrides, Some(&layout.templates()))
    }

    /// Parses and validates manifest text. `templates`, when given, is checked
    /// for each image's template file.
    pub fn from_str(
        text: &str,
        lock: Lock,
        overrides: &BaseOverrides,
        templates: Option<&Path>,
    ) -> Result<Family, ManifestErrors> {
        let manifest: Manifest =
            toml::from_str(text).map_err(|e| ManifestErrors(vec![ManifestError::Parse(e.to_string())]))?;
        let targets = expand(&manifest, &lock, overrides, templates).map_err(ManifestErrors)?;
        Ok(Family { manifest, lock, overrides: overrides.clone(), targets })
    }
}
