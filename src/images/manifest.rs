//! The manifest (`images/manifest.toml`): its typed schema, its validation,
//! and its expansion into build targets (one per image × variant).
//!
//! Owns every rule about the family's shape — names, parents, variants, tags,
//! base references — so that render, plan, bake and build can trust a
//! [`Family`] without re-checking it. Does not read templates' contents (that
//! is [`super::render`]) and never touches the network (digests come from
//! [`super::lock`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::lock::Lock;
use super::{syntax, Layout};

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
    /// image's `requirements.lock` ([`super::python`]).
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
    pub fn load(layout: &Layout, overrides: &BaseOverrides) -> Result<Family, ManifestErrors> {
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

    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The variant's effective base reference (override first).
    pub fn base_of(&self, variant: &str) -> &str {
        self.overrides.get(variant).map(String::as_str).unwrap_or(&self.manifest.variants[variant].base)
    }
}

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

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Expands one tag pattern for a variant; `{alias}` fans out.
fn expand_pattern(pattern: &str, variant: &str, v: &Variant) -> Result<Vec<String>, String> {
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').ok_or_else(|| "unclosed `{`".to_string())?;
        let key = &rest[start + 1..start + end];
        if key != "variant" && key != "alias" {
            return Err(format!("unknown placeholder `{{{key}}}` (known: {{variant}}, {{alias}})"));
        }
        rest = &rest[start + end + 1..];
    }
    let with_variant = pattern.replace("{variant}", variant);
    let tags: Vec<String> = if with_variant.contains("{alias}") {
        v.aliases.iter().map(|a| with_variant.replace("{alias}", a)).collect()
    } else {
        vec![with_variant]
    };
    for t in &tags {
        syntax::tag(t)?;
    }
    Ok(tags)
}

/// Validates the manifest and expands it into targets. Pure: everything it
/// needs is passed in (the template directory is only stat'ed).
pub fn expand(
    m: &Manifest,
    lock: &Lock,
    overrides: &BaseOverrides,
    templates: Option<&Path>,
) -> Result<Vec<Target>, Vec<ManifestError>> {
    use ManifestError::*;
    let mut errors = Vec::new();

    errors.extend(check_formats(m));
    for name in m.variants.keys() {
        if !valid_name(name) {
            errors.push(BadName { what: "variant", name: name.clone() });
        }
    }
    for name in m.images.keys() {
        if !valid_name(name) {
            errors.push(BadName { what: "image", name: name.clone() });
        } else if let Err(reason) = syntax::path_component(name) {
            errors.push(Invalid {
                place: format!("images.{name}"),
                reason: format!("the image name is part of every tag: {reason}"),
            });
        }
    }
    errors.extend(group_clashes(m));
    for (name, v) in &m.variants {
        if syntax::full_reference(&v.base).is_err() {
            errors.push(BadBase { variant: name.clone(), base: v.base.clone() });
        }
        if let Some(eol) = &v.eol {
            if let Err(why) = syntax::date(eol) {
                errors.push(BadEol { variant: name.clone(), eol: why });
            }
        }
        if v.kind == Kind::Cuda && !v.values.contains_key("cuda") {
            errors.push(MissingValue { variant: name.clone(), key: "cuda".into() });
        }
    }
    for (variant, reference) in overrides {
        if !m.variants.contains_key(variant) {
            errors.push(UnknownOverride { variant: variant.clone() });
        }
        if let Err(reason) = syntax::full_reference(reference) {
            errors.push(Invalid { place: format!("--base-override {variant}"), reason });
        }
    }
    for (name, img) in &m.images {
        if let Some(p) = &img.parent {
            if !m.images.contains_key(p) {
                errors.push(UnknownParent { image: name.clone(), parent: p.clone() });
            }
        }
        for v in &img.variants {
            if !m.variants.contains_key(v) {
                errors.push(UnknownVariant { image: name.clone(), variant: v.clone() });
            }
        }
        if let Some(dir) = templates {
            let path = dir.join(&img.template);
            if !path.is_file() {
                errors
                    .push(MissingTemplate { image: name.clone(), path: format!("images/templates/{}", img.template) });
            }
        }
    }
    if let Some(chain) = find_cycle(m) {
        errors.push(Cycle { chain });
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    // The graph is sound: compute depths, parent links and tags.
    for (name, img) in &m.images {
        if let Some(p) = &img.parent {
            let parent = &m.images[p];
            for v in &img.variants {
                if !parent.variants.contains(v) {
                    errors.push(ParentLacksVariant { image: name.clone(), variant: v.clone(), parent: p.clone() });
                }
            }
        }
    }

    let mut tags_of: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (name, img) in &m.images {
        for v in &img.variants {
            let variant = &m.variants[v];
            let mut tags = Vec::new();
            for p in &img.tags {
                match expand_pattern(p, v, variant) {
                    Ok(t) => tags.extend(t),
                    Err(reason) => {
                        errors.push(BadTag { image: name.clone(), pattern: p.clone(), reason });
                    }
                }
            }
            let mut seen = BTreeSet::new();
            tags.retain(|t| seen.insert(t.clone()));
            if tags.is_empty() {
                errors.push(NoTags { image: name.clone(), variant: v.clone() });
            }
            let full = tags.iter().map(|t| format!("{}/{}:{}", m.family.registry, name, t)).collect();
            tags_of.insert((name.clone(), v.clone()), full);
        }
    }

    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut targets = Vec::new();
    for (name, img) in &m.images {
        for v in &img.variants {
            let tname = format!("{name}-{v}");
            if !names.insert(tname.clone()) {
                errors.push(NameCollision { name: tname.clone() });
            }
            let tags = tags_of[&(name.clone(), v.clone())].clone();
            for t in &tags {
                if let Some(first) = owner.insert(t.clone(), tname.clone()) {
                    errors.push(DuplicateTag { tag: t.clone(), first, second: tname.clone() });
                }
            }
            let parent = match &img.parent {
                Some(p) => Parent::Target {
                    target: format!("{p}-{v}"),
                    reference: tags_of
                        .get(&(p.clone(), v.clone()))
                        .and_then(|t| t.first().cloned())
                        .unwrap_or_default(),
                },
                None => match overrides.get(v) {
                    Some(r) => Parent::Base { reference: r.clone(), digest: None },
                    None => {
                        let base = &m.variants[v].base;
                        Parent::Base { reference: base.clone(), digest: lock.digest(base).map(str::to_string) }
                    }
                },
            };
            targets.push(Target {
                name: tname,
                image: name.clone(),
                variant: v.clone(),
                parent,
                tags,
                depth: depth_of(m, name),
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    targets.sort_by(|a, b| (a.depth, &a.name).cmp(&(b.depth, &b.name)));
    Ok(targets)
}

/// Format checks of every value where it lands: text that reaches a
/// Dockerfile line or a label is one line without control characters; the
/// registry is a repository name (host/path, lower case); the label prefix is
/// reverse DNS; template value names are identifiers; platforms are
/// `os/arch[/variant]`; the venv is a plain absolute path.
fn check_formats(m: &Manifest) -> Vec<ManifestError> {
    use ManifestError::Invalid;
    let mut errors = Vec::new();
    let mut text = |place: String, value: &str| {
        if let Err(reason) = syntax::single_line(value) {
            errors.push(Invalid { place, reason });
        }
    };
    let f = &m.family;
    for (k, v) in [
        ("registry", &f.registry),
        ("vendor", &f.vendor),
        ("authors", &f.authors),
        ("licenses", &f.licenses),
        ("source", &f.source),
        ("documentation", &f.documentation),
        ("label_prefix", &f.label_prefix),
        ("venv", &f.venv),
    ] {
        text(format!("family.{k}"), v);
    }
    for p in &f.platforms {
        text("family.platforms".into(), p);
    }
    for (name, v) in &m.variants {
        text(format!("variants.{name}.description"), &v.description);
        text(format!("variants.{name}.base"), &v.base);
        if let Some(e) = &v.eol {
            text(format!("variants.{name}.eol"), e);
        }
        for a in &v.aliases {
            text(format!("variants.{name}.aliases"), a);
        }
        for (k, val) in &v.values {
            text(format!("variants.{name}.values.{k}"), k);
            text(format!("variants.{name}.values.{k}"), val);
        }
    }
    for (name, img) in &m.images {
        text(format!("images.{name}.description"), &img.description);
        text(format!("images.{name}.template"), &img.template);
        for t in &img.tags {
            text(format!("images.{name}.tags"), t);
        }
    }

    let mut more = Vec::new();
    if let Err(reason) = syntax::repository(&f.registry) {
        more.push(Invalid {
            place: "family.registry".into(),
            reason: format!("{reason} (registry/namespace, e.g. registry.example.org/lab)"),
        });
    }
    let prefix_ok = !f.label_prefix.is_empty()
        && f.label_prefix
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'));
    if !prefix_ok {
        more.push(Invalid {
            place: "family.label_prefix".into(),
            reason: format!("`{}` is not a reverse-DNS prefix (lower-case labels separated by dots)", f.label_prefix),
        });
    }
    for p in &f.platforms {
        let parts: Vec<&str> = p.split('/').collect();
        let ok = (2..=3).contains(&parts.len())
            && parts
                .iter()
                .all(|x| !x.is_empty() && x.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'));
        if !ok {
            more.push(Invalid { place: "family.platforms".into(), reason: format!("`{p}` is not os/arch[/variant]") });
        }
    }
    let venv_ok = f.venv.starts_with('/') && f.venv.bytes().all(|c| c.is_ascii_alphanumeric() || b"/._-".contains(&c));
    if !venv_ok {
        more.push(Invalid {
            place: "family.venv".into(),
            reason: format!(
                "`{}` is not an absolute path of [A-Za-z0-9/._-] (it is written unquoted into ENV and RUN)",
                f.venv
            ),
        });
    }
    for (name, v) in &m.variants {
        for k in v.values.keys() {
            if syntax::arg_name(k).is_err() {
                more.push(Invalid {
                    place: format!("variants.{name}.values"),
                    reason: format!("`{k}` is not a name templates can use (`values.{k}`): [A-Za-z_][A-Za-z0-9_]*"),
                });
            }
        }
    }
    errors.extend(more);
    errors
}

/// Bake has one namespace for groups and targets. labkit's groups are
/// `all`, `default`, one per variant and one per image; targets are
/// `<image>-<variant>`. Any name used twice is an error.
fn group_clashes(m: &Manifest) -> Vec<ManifestError> {
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for g in ["all", "default"] {
        owner.insert(g.to_string(), format!("the reserved group `{g}`"));
    }
    let mut clashes = Vec::new();
    let mut claim = |name: String, what: String| match owner.get(&name) {
        Some(first) if *first != what => {
            clashes.push(ManifestError::GroupClash { name: name.clone(), with: format!("{first} and {what}") })
        }
        Some(_) => {}
        None => {
            owner.insert(name, what);
        }
    };
    for v in m.variants.keys() {
        claim(v.clone(), format!("the group of variant `{v}`"));
    }
    for i in m.images.keys() {
        claim(i.clone(), format!("the group of image `{i}`"));
    }
    for (i, img) in &m.images {
        for v in &img.variants {
            claim(format!("{i}-{v}"), format!("the target of image `{i}`, variant `{v}`"));
        }
    }
    clashes
}

fn depth_of(m: &Manifest, image: &str) -> usize {
    let mut d = 0;
    let mut cur = image;
    while let Some(p) = m.images[cur].parent.as_deref() {
        d += 1;
        cur = p;
    }
    d
}

/// The first parent cycle found, as a closed chain (`a -> b -> a`).
fn find_cycle(m: &Manifest) -> Option<Vec<String>> {
    for start in m.images.keys() {
        let mut chain = vec![start.clone()];
        let mut cur = start.as_str();
        while let Some(p) = m.images.get(cur).and_then(|i| i.parent.as_deref()) {
            if !m.images.contains_key(p) {
                break;
            }
            if let Some(pos) = chain.iter().position(|c| c == p) {
                let mut cycle = chain[pos..].to_vec();
                cycle.push(p.to_string());
                // Report each cycle once, from its smallest member.
                let min = cycle[..cycle.len() - 1].iter().min().unwrap();
                if min == start {
                    return Some(cycle);
                }
                break;
            }
            chain.push(p.to_string());
            cur = p;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"
[family]
registry = "registry.example.org/lab"
vendor = "Lab"
authors = "Lab <lab@example.org>"
licenses = "MIT"
source = "https://example.org/labkit"
documentation = "https://example.org/docs"

[variants.cpu]
description = "CPU"
kind = "cpu"
base = "docker.io/library/ubuntu:24.04"
aliases = ["latest"]

[images.base]
description = "b"
template = "b.tera"
variants = ["cpu"]
tags = ["{variant}", "{alias}"]

[images.child]
description = "c"
template = "c.tera"
parent = "base"
variants = ["cpu"]
tags = ["{variant}"]
"#;

    fn load(text: &str) -> Result<Family, ManifestErrors> {
        Family::from_str(text, Lock::default(), &BaseOverrides::new(), None)
    }

    #[test]
    fn expands_targets_in_build_order() {
        let f = load(MINI).unwrap();
        let names: Vec<_> = f.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["base-cpu", "child-cpu"]);
        assert_eq!(f.targets[0].tags, ["registry.example.org/lab/base:cpu", "registry.example.org/lab/base:latest"]);
        assert_eq!(
            f.targets[1].parent,
            Parent::Target { target: "base-cpu".into(), reference: "registry.example.org/lab/base:cpu".into() }
        );
    }

    #[test]
    fn lock_digest_pins_the_base() {
        let mut lock = Lock::default();
        lock.set("docker.io/library/ubuntu:24.04", "sha256:abc");
        let f = Family::from_str(MINI, lock, &BaseOverrides::new(), None).unwrap();
        assert_eq!(f.targets[0].parent.pinned(), "docker.io/library/ubuntu:24.04@sha256:abc");
    }

    #[test]
    fn override_replaces_base_and_drops_digest() {
        let mut lock = Lock::default();
        lock.set("docker.io/library/ubuntu:24.04", "sha256:abc");
        let o = BaseOverrides::from([("cpu".into(), "localhost/noble:latest".into())]);
        let f = Family::from_str(MINI, lock, &o, None).unwrap();
        assert_eq!(f.targets[0].parent.pinned(), "localhost/noble:latest");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let text = MINI.replace("kind = \"cpu\"", "kind = \"cpu\"\nbsae = \"x\"");
        let e = load(&text).unwrap_err().to_string();
        assert!(e.contains("bsae"), "{e}");
    }

    #[test]
    fn unknown_placeholder_is_rejected() {
        let text = MINI.replace("tags = [\"{variant}\"]", "tags = [\"{cuda}\"]");
        let e = load(&text).unwrap_err().to_string();
        assert!(e.contains("unknown placeholder `{cuda}`"), "{e}");
    }

    #[test]
    fn short_base_reference_is_rejected() {
        let text = MINI.replace("docker.io/library/ubuntu:24.04", "ubuntu");
        let e = load(&text).unwrap_err().to_string();
        assert!(e.contains("must be written in full"), "{e}");
    }

    #[test]
    fn override_parsing() {
        assert_eq!(parse_override("cpu=localhost/x:1").unwrap(), ("cpu".into(), "localhost/x:1".into()));
        assert!(parse_override("cpu").is_err());
    }
}
