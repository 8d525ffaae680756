//! Everything that can be wrong with a manifest, as one enum with a message
//! per case; [`ManifestErrors`] is the non-empty list a load reports.

use std::fmt;

/// Everything wrong with a manifest, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    Read(String),
    Parse(String),
    BadName {
        what: &'static str,
        name: String,
    },
    UnknownParent {
        image: String,
        parent: String,
    },
    Cycle {
        chain: Vec<String>,
    },
    UnknownVariant {
        image: String,
        variant: String,
    },
    ParentLacksVariant {
        image: String,
        variant: String,
        parent: String,
    },
    DuplicateTag {
        tag: String,
        first: String,
        second: String,
    },
    BadTag {
        image: String,
        pattern: String,
        reason: String,
    },
    NoTags {
        image: String,
        variant: String,
    },
    BadBase {
        variant: String,
        base: String,
    },
    BadEol {
        variant: String,
        eol: String,
    },
    MissingValue {
        variant: String,
        key: String,
    },
    MissingTemplate {
        image: String,
        path: String,
    },
    NameCollision {
        name: String,
    },
    UnknownOverride {
        variant: String,
    },
    /// A value with the wrong format for where it lands (`where` is its
    /// place in the manifest, e.g. `variants.cpu.description`).
    Invalid {
        place: String,
        reason: String,
    },
    /// A bake group name (`all`, `default`, a variant, an image) that equals
    /// another group's or a target's name: bake would resolve it to the group.
    GroupClash {
        name: String,
        with: String,
    },
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ManifestError::*;
        match self {
            Read(m) => write!(f, "{m}"),
            Parse(m) => write!(f, "images/manifest.toml: {}", m.trim_end()),
            BadName { what, name } => write!(
                f,
                "{what} name `{name}` must match [a-z0-9][a-z0-9-]* (it becomes part of bake target names and tags)"
            ),
            UnknownParent { image, parent } => write!(
                f,
                "image `{image}`: parent `{parent}` is not an image of the manifest; name an image or remove `parent` to build on the variant's base"
            ),
            Cycle { chain } => write!(f, "image parents form a cycle: {}", chain.join(" -> ")),
            UnknownVariant { image, variant } => write!(
                f,
                "image `{image}`: variant `{variant}` is not declared under [variants]"
            ),
            ParentLacksVariant {
                image,
                variant,
                parent,
            } => write!(
                f,
                "image `{image}` is built for variant `{variant}` but its parent `{parent}` is not; add `{variant}` to {parent}'s variants or remove it from {image}'s"
            ),
            DuplicateTag { tag, first, second } => {
                write!(f, "tag `{tag}` is produced by both `{first}` and `{second}`")
            }
            BadTag {
                image,
                pattern,
                reason,
            } => write!(f, "image `{image}`: tag pattern `{pattern}`: {reason}"),
            NoTags { image, variant } => write!(
                f,
                "image `{image}` has no tag in variant `{variant}`; add a pattern such as \"{{variant}}\""
            ),
            BadBase { variant, base } => write!(
                f,
                "variant `{variant}`: base `{base}` must be written in full, registry/name:tag (e.g. docker.io/library/ubuntu:24.04)"
            ),
            BadEol { variant, eol } => {
                write!(f, "variant `{variant}`: eol {eol}")
            }
            MissingValue { variant, key } => write!(
                f,
                "variant `{variant}`: kind = \"cuda\" needs values.{key}"
            ),
            MissingTemplate { image, path } => {
                write!(f, "image `{image}`: template {path} does not exist")
            }
            NameCollision { name } => write!(
                f,
                "two (image, variant) pairs both make the target name `{name}`; rename one"
            ),
            UnknownOverride { variant } => write!(
                f,
                "base override names variant `{variant}`, which the manifest does not declare"
            ),
            Invalid { place, reason } => write!(f, "{place}: {reason}"),
            GroupClash { name, with } => write!(
                f,
                "bake name `{name}` is taken twice, by {with}: bake resolves a name to the group and \
                 silently builds something else. Rename the variant or image (reserved group names: all, default)"
            ),
        }
    }
}

/// A non-empty list of [`ManifestError`]s; its presence means "invalid input".
#[derive(Debug, Clone)]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "manifest error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestErrors {}
