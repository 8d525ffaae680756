//! The build plan: the selected targets grouped into levels (every target of a
//! level can build in parallel once the previous levels are done), and per
//! target everything a builder needs — Dockerfile, context, build arguments,
//! parent, tags and a content-addressed inputs hash.
//!
//! Pure: [`make`] is a function of the family, its rendered Dockerfiles and the
//! options. Gathering per-build values (git revision, date) happens at the
//! edge, in [`per_build_args`]. `bake` and `build` both consume a [`Plan`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::manifest::{Family, Parent};
use super::render::Rendered;
use super::{syntax, InputHasher, Layout, GENERATOR_VERSION};

/// Version of the JSON layout below; bump on incompatible changes.
pub const PLAN_SCHEMA: u32 = 2;

/// Build arguments labkit sets itself; `--build-arg` may not override them.
pub const RESERVED_ARGS: &[&str] = &["BASE_IMAGE", "BASE_NAME", "BASE_DIGEST"];

#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Only these images / variants (empty = all).
    pub images: Vec<String>,
    pub variants: Vec<String>,
    /// Build context, as given to the engine.
    pub context: PathBuf,
    /// Per-build arguments (BUILD_DATE, VCS_REF, APT_MIRROR, extras).
    pub build_args: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PlanParent {
    /// Built earlier in this plan.
    Target { target: String, reference: String },
    /// Pulled: an external base, or a family parent left out of the selection
    /// and consumed from the registry by its primary tag. `pull` is true when
    /// the build must fetch it fresh from its registry (`--pull`): false only
    /// for a `--base-override`, which usually names a local image.
    Image { reference: String, digest: Option<String>, pull: bool },
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedTarget {
    pub name: String,
    pub image: String,
    pub variant: String,
    pub level: usize,
    /// Relative to the repository root.
    pub dockerfile: String,
    pub context: String,
    pub parent: PlanParent,
    pub args: BTreeMap<String, String>,
    pub tags: Vec<String>,
    pub platforms: Vec<String>,
    /// Everything a build of this target depends on: its rendered
    /// Dockerfile (whose own `inputs-sha256` label covers the manifest, the
    /// templates and the parent chain), the files shipped into the context,
    /// the stable build arguments and the parent's build-inputs hash (or the
    /// pinned base). A different value from the label, hence its own name.
    pub build_inputs_sha256: String,
    pub eol: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub schema: u32,
    pub generator: String,
    pub levels: Vec<Vec<String>>,
    pub targets: Vec<PlannedTarget>,
}

/// Parses `--build-arg KEY=VALUE`: KEY a build-argument name (not one of
/// labkit's own), VALUE one line without control characters (it can reach a
/// label).
pub fn parse_build_arg(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("build argument `{s}` is not KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("build argument `{s}` has an empty name"));
    }
    syntax::arg_name(k).map_err(|e| format!("build argument {e}"))?;
    if RESERVED_ARGS.contains(&k) || super::render::PER_BUILD_ARGS.contains(&k) || k == "APT_MIRROR" {
        return Err(format!(
            "{k} is set by labkit (BASE_*: from the manifest, use --base-override; BUILD_DATE: --created; \
             VCS_REF: --revision; APT_MIRROR: --apt-mirror)"
        ));
    }
    syntax::single_line(v).map_err(|e| format!("build argument {k}: {e}"))?;
    Ok((k.to_string(), v.to_string()))
}

/// One file `labkit build` ships into every context besides labinit.
pub struct ShippedFile {
    /// Its path in the build context: `setup_steps/…`, `services/…` or
    /// `files/…` (from images/files/).
    pub rel: String,
    pub path: PathBuf,
    pub data: Vec<u8>,
    pub exec: bool,
}

/// The files of setup_steps/, services/ and images/files/ (see
/// [`super::build::SHIPPED_DIRS`]), read once. A script with CRLF
/// line endings (a Windows or `core.autocrlf` checkout without the
/// repository's .gitattributes) is refused, naming the file: in the image its
/// `#!/bin/sh\r` shebang would not run.
pub fn shipped_files(layout: &Layout) -> Result<Vec<ShippedFile>, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = Vec::new();
    for (dir, to) in super::build::SHIPPED_DIRS {
        let top = layout.root.join(dir);
        for rel in super::render::list_files(&top) {
            let path = top.join(&rel);
            let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let text = !data.contains(&0);
            if text && data.windows(2).any(|w| w == b"\r\n") {
                return Err(format!(
                    "{dir}/{rel} has CRLF line endings; files shipped into images must be LF \
                     (check out with the repository's .gitattributes, or run `sed -i 's/\\r$//' {dir}/{rel}`)"
                ));
            }
            files.push(ShippedFile {
                rel: format!("{to}/{rel}"),
                path,
                data,
                exec: meta.permissions().mode() & 0o111 != 0,
            });
        }
    }
    Ok(files)
}

/// Hash of what `labkit build` ships into every context besides labinit:
/// the [`shipped_files`] (setup_steps/, services/, images/files/) and the
/// Python locks, so changing a step, a shipped file or a lock changes the
/// plan.
pub fn shipped_files_hash(files: &[ShippedFile], layout: &Layout) -> String {
    let mut h = InputHasher::new();
    for f in files {
        h.part(&format!("{} exec={}", f.rel, f.exec), &f.data);
    }
    let generated = layout.generated();
    for rel in super::render::list_files(&generated) {
        if rel.ends_with(&format!("/{}", super::python::LOCK_FILE)) {
            h.part(&format!("python/{rel}"), &std::fs::read(generated.join(&rel)).unwrap_or_default());
        }
    }
    h.finish()
}

/// Builds the plan. `shipped` is [`shipped_files_hash`].
pub fn make(family: &Family, rendered: &Rendered, shipped: &str, opts: &PlanOptions) -> Result<Plan, String> {
    for i in &opts.images {
        if !family.manifest.images.contains_key(i) {
            return Err(format!(
                "--image {i}: no such image (known: {})",
                family.manifest.images.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    for v in &opts.variants {
        if !family.manifest.variants.contains_key(v) {
            return Err(format!(
                "--variant {v}: no such variant (known: {})",
                family.manifest.variants.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    // Inputs hashes for the whole family, parents first, so a target's hash
    // is the same whether or not its parent is selected.
    let stable: BTreeMap<&String, &String> =
        opts.build_args.iter().filter(|(k, _)| !super::render::PER_BUILD_ARGS.contains(&k.as_str())).collect();
    let mut hashes: BTreeMap<String, String> = BTreeMap::new();
    for t in &family.targets {
        let file = rendered.get(&t.name).ok_or_else(|| format!("target {} was not rendered", t.name))?;
        let mut h = InputHasher::new();
        h.part("generator", GENERATOR_VERSION.as_bytes())
            .part("dockerfile", file.content.as_bytes())
            .part("shipped", shipped.as_bytes());
        match &t.parent {
            Parent::Target { target, .. } => h.part("parent", hashes[target].as_bytes()),
            Parent::Base { .. } => h.part("base", t.parent.pinned().as_bytes()),
        };
        for (k, v) in &stable {
            h.part(k, v.as_bytes());
        }
        hashes.insert(t.name.clone(), h.finish());
    }

    let selected: BTreeSet<&str> = family
        .targets
        .iter()
        .filter(|t| opts.images.is_empty() || opts.images.contains(&t.image))
        .filter(|t| opts.variants.is_empty() || opts.variants.contains(&t.variant))
        .map(|t| t.name.as_str())
        .collect();
    if selected.is_empty() {
        return Err("the selection (--image/--variant) matches no target: no image is built for that variant".into());
    }

    let context = opts.context.to_string_lossy().to_string();
    let mut level_of: BTreeMap<&str, usize> = BTreeMap::new();
    let mut targets = Vec::new();
    for t in family.targets.iter().filter(|t| selected.contains(t.name.as_str())) {
        let (parent, level) = match &t.parent {
            Parent::Target { target, reference } if selected.contains(target.as_str()) => (
                PlanParent::Target { target: target.clone(), reference: reference.clone() },
                level_of[target.as_str()] + 1,
            ),
            Parent::Target { reference, .. } => {
                (PlanParent::Image { reference: reference.clone(), digest: None, pull: true }, 0)
            }
            Parent::Base { reference, digest } => (
                PlanParent::Image {
                    reference: reference.clone(),
                    digest: digest.clone(),
                    pull: !family.overrides.contains_key(&t.variant),
                },
                0,
            ),
        };
        level_of.insert(&t.name, level);
        let mut args = BTreeMap::new();
        args.insert("BASE_IMAGE".to_string(), t.parent.pinned());
        args.insert("BASE_NAME".to_string(), t.parent.name().to_string());
        args.insert("BASE_DIGEST".to_string(), t.parent.digest().to_string());
        for (k, v) in &opts.build_args {
            args.insert(k.clone(), v.clone());
        }
        targets.push(PlannedTarget {
            name: t.name.clone(),
            image: t.image.clone(),
            variant: t.variant.clone(),
            level,
            dockerfile: format!("images/generated/{}", Layout::dockerfile_rel(&t.image, &t.variant).to_string_lossy()),
            context: context.clone(),
            parent,
            args,
            tags: t.tags.clone(),
            platforms: family.manifest.family.platforms.clone(),
            build_inputs_sha256: hashes[&t.name].clone(),
            eol: family.manifest.variants[&t.variant].eol.clone(),
        });
    }
    targets.sort_by(|a, b| (a.level, &a.name).cmp(&(b.level, &b.name)));
    let depth = targets.iter().map(|t| t.level + 1).max().unwrap_or(0);
    let mut levels = vec![Vec::new(); depth];
    for t in &targets {
        levels[t.level].push(t.name.clone());
    }
    Ok(Plan { schema: PLAN_SCHEMA, generator: format!("labkit {GENERATOR_VERSION}"), levels, targets })
}

impl Plan {
    pub fn target(&self, name: &str) -> Option<&PlannedTarget> {
        self.targets.iter().find(|t| t.name == name)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plan serialises")
    }

    pub fn to_text(&self) -> String {
        let mut s = format!(
            "plan: {} target(s) in {} level(s); each level builds in parallel after the previous one\n",
            self.targets.len(),
            self.levels.len()
        );
        for (i, names) in self.levels.iter().enumerate() {
            s.push_str(&format!("\nlevel {i}: {}\n", names.join(", ")));
            for n in names {
                let t = self.target(n).expect("level names a target");
                s.push_str(&format!("  {}\n", t.name));
                let parent = match &t.parent {
                    PlanParent::Target { target, .. } => format!("target {target}"),
                    PlanParent::Image { reference, digest: Some(d), .. } => format!("{reference}@{d} (pulled)"),
                    PlanParent::Image { reference, pull: false, .. } => format!("{reference} (local, --base-override)"),
                    PlanParent::Image { reference, .. } => format!("{reference} (pulled, not pinned)"),
                };
                s.push_str(&format!("    dockerfile  {}\n", t.dockerfile));
                s.push_str(&format!("    context     {}\n", t.context));
                s.push_str(&format!("    parent      {parent}\n"));
                for tag in &t.tags {
                    s.push_str(&format!("    tag         {tag}\n"));
                }
                for (k, v) in &t.args {
                    s.push_str(&format!("    arg         {k}={v}\n"));
                }
                s.push_str(&format!("    build-inputs sha256:{}\n", t.build_inputs_sha256));
                if let Some(eol) = &t.eol {
                    s.push_str(&format!("    eol         {eol}\n"));
                }
            }
        }
        s
    }
}

/// Per-build arguments: explicit values first, else what git and
/// SOURCE_DATE_EPOCH say, else "unknown". This is the edge that reads the
/// environment; rendering never does. Every value is checked here, where it
/// enters: `--created` is RFC 3339, `SOURCE_DATE_EPOCH` an integer,
/// `--revision` one line, `--apt-mirror` an http(s) URL; an invalid value is
/// a usage error, never silently replaced.
pub fn per_build_args(
    root: &Path,
    revision: Option<String>,
    created: Option<String>,
    apt_mirror: Option<String>,
    extra: &[(String, String)],
) -> Result<BTreeMap<String, String>, String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git").arg("-C").arg(root).args(args).output().ok()?;
        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !s.is_empty()).then_some(s)
    };
    if let Some(c) = &created {
        syntax::rfc3339(c).map_err(|e| format!("--created: {e}"))?;
    }
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(e) if !e.is_empty() => Some(syntax::source_date_epoch(&e)?),
        _ => None,
    };
    let created = created
        .or_else(|| epoch.map(rfc3339_utc))
        .or_else(|| git(&["log", "-1", "--format=%cI"]).filter(|c| syntax::rfc3339(c).is_ok()))
        .unwrap_or_else(|| "unknown".into());
    if let Some(r) = &revision {
        syntax::single_line(r).map_err(|e| format!("--revision: {e}"))?;
        if r.is_empty() || r.len() > 256 {
            return Err(
                "--revision: give one non-empty line of at most 256 characters (a commit id or a version)".into()
            );
        }
    }
    let revision = revision.or_else(|| git(&["rev-parse", "HEAD"])).unwrap_or_else(|| "unknown".into());
    let mut args = BTreeMap::new();
    args.insert("BUILD_DATE".to_string(), created);
    args.insert("VCS_REF".to_string(), revision);
    if let Some(m) = apt_mirror {
        syntax::apt_mirror(&m).map_err(|e| format!("--apt-mirror: {e}"))?;
        args.insert("APT_MIRROR".to_string(), m);
    }
    for (k, v) in extra {
        args.insert(k.clone(), v.clone());
    }
    Ok(args)
}

/// Seconds since the epoch → `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339_utc(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    format!("{}T{:02}:{:02}:{:02}Z", super::check::civil_date(days), secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_args_are_refused() {
        assert!(parse_build_arg("BASE_IMAGE=x").is_err());
        assert!(parse_build_arg("nope").is_err());
        assert_eq!(
            parse_build_arg("PIP_INDEX_URL=http://x/simple").unwrap(),
            ("PIP_INDEX_URL".into(), "http://x/simple".into())
        );
    }

    #[test]
    fn rfc3339_from_epoch() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
