//! The build plan: the selected targets grouped into levels (every target of a
//! level can build in parallel once the previous levels are done), and per
//! target everything a builder needs — Dockerfile, context, build arguments,
//! parent, tags and a content-addressed inputs hash.
//!
//! Pure: [`make`] is a function of the family, its rendered Dockerfiles and the
//! options. Gathering per-build values (git revision, date) happens at the
//! edge, in `buildargs::per_build_args`. `bake` and `build` both consume a
//! [`Plan`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use super::buildargs::PER_BUILD_ARGS;
use super::context::ShippedFile;
use super::digest::InputHasher;
use super::layout::{dockerfile_path, is_lock_path, list_files, Layout};
use super::manifest::{Family, Parent};
use super::render::Rendered;
use super::GENERATOR_VERSION;

/// Version of the JSON layout below; bump on incompatible changes.
pub const PLAN_SCHEMA: u32 = 2;

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

/// Hash of what `labkit build` ships into every context besides labinit:
/// the shipped files (setup_steps/, services/, images/files/) and the
/// Python locks, so changing a step, a shipped file or a lock changes the
/// plan.
pub(crate) fn shipped_files_hash(files: &[ShippedFile], layout: &Layout) -> String {
    let mut h = InputHasher::new();
    for f in files {
        h.part(&format!("{} exec={}", f.rel, f.exec), &f.data);
    }
    let generated = layout.generated();
    for rel in list_files(&generated) {
        if is_lock_path(&rel) {
            h.part(&format!("python/{rel}"), &std::fs::read(generated.join(&rel)).unwrap_or_default());
        }
    }
    h.finish()
}

/// Builds the plan. `shipped` is [`shipped_files_hash`].
pub(crate) fn make(family: &Family, rendered: &Rendered, shipped: &str, opts: &PlanOptions) -> Result<Plan, String> {
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
        opts.build_args.iter().filter(|(k, _)| !PER_BUILD_ARGS.contains(&k.as_str())).collect();
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
            dockerfile: dockerfile_path(&t.image, &t.variant),
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
    pub(crate) fn target(&self, name: &str) -> Option<&PlannedTarget> {
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
