//! `docker-bake.json`: the plan in the format `docker buildx bake` reads, fully
//! expanded (no variables, no matrix, no inherits), so `bake --print` shows the
//! same content.
//!
//! Children get their parent through `contexts` with a `target:` link, under a
//! context key that equals their `BASE_IMAGE` argument — the two strings must
//! be identical or BuildKit would go to the registry instead. External parents
//! are `docker-image://` contexts, pinned by digest when locked. Owns only the
//! translation; the graph itself is [`super::plan`]'s.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::plan::{Plan, PlanParent};

/// Context key for a parent pulled from a registry.
pub const EXTERNAL_KEY: &str = "labkit-base";

#[derive(Debug, Serialize)]
pub struct BakeFile {
    pub group: BTreeMap<String, Group>,
    pub target: BTreeMap<String, BakeTarget>,
}

#[derive(Debug, Serialize)]
pub struct Group {
    pub targets: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct BakeTarget {
    pub context: String,
    /// Relative to `context`, as bake resolves it.
    pub dockerfile: String,
    pub args: BTreeMap<String, String>,
    pub contexts: BTreeMap<String, String>,
    pub tags: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub platforms: Vec<String>,
}

/// `dockerfile` relative to `context` (both relative to the repository root),
/// or an absolute path when the context is outside the repository.
fn dockerfile_from_context(root: &Path, context: &str, dockerfile: &str) -> String {
    let ctx = Path::new(context);
    if ctx.is_absolute() || context.split('/').any(|c| c == "..") {
        return root.join(dockerfile).to_string_lossy().to_string();
    }
    let depth = context.split('/').filter(|c| !c.is_empty() && *c != ".").count();
    format!("{}{}", "../".repeat(depth), dockerfile)
}

/// The bake file for `plan`; `root` is where `docker buildx bake` runs.
pub fn bake(plan: &Plan, root: &Path) -> BakeFile {
    let mut group: BTreeMap<String, Group> = BTreeMap::new();
    let mut target = BTreeMap::new();
    let mut add = |g: &str, t: &str| {
        group.entry(g.to_string()).or_insert_with(|| Group { targets: Vec::new() }).targets.push(t.to_string())
    };
    for t in &plan.targets {
        add("all", &t.name);
        if t.eol.is_none() {
            add("default", &t.name);
        }
        add(&t.variant, &t.name);
        add(&t.image, &t.name);

        let mut args = t.args.clone();
        let mut contexts = BTreeMap::new();
        match &t.parent {
            PlanParent::Target { target: parent, .. } => {
                args.insert("BASE_IMAGE".into(), parent.clone());
                contexts.insert(parent.clone(), format!("target:{parent}"));
            }
            PlanParent::Image { .. } => {
                contexts.insert(EXTERNAL_KEY.to_string(), format!("docker-image://{}", t.args["BASE_IMAGE"]));
                args.insert("BASE_IMAGE".into(), EXTERNAL_KEY.to_string());
            }
        }
        // Labels whose values are only known per build; the static ones are
        // in the Dockerfile already.
        let mut labels = BTreeMap::new();
        let oci = "org.opencontainers.image";
        for (label, arg) in [
            ("created", "BUILD_DATE"),
            ("revision", "VCS_REF"),
            ("base.name", "BASE_NAME"),
            ("base.digest", "BASE_DIGEST"),
        ] {
            labels.insert(format!("{oci}.{label}"), t.args.get(arg).cloned().unwrap_or_default());
        }
        target.insert(
            t.name.clone(),
            BakeTarget {
                context: t.context.clone(),
                dockerfile: dockerfile_from_context(root, &t.context, &t.dockerfile),
                args,
                contexts,
                tags: t.tags.clone(),
                labels,
                platforms: t.platforms.clone(),
            },
        );
    }
    BakeFile { group, target }
}

pub fn to_json(b: &BakeFile) -> String {
    serde_json::to_string_pretty(b).expect("bake file serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfile_is_relative_to_context() {
        assert_eq!(
            dockerfile_from_context(Path::new("/r"), "build/images/context", "images/generated/a/b/Dockerfile"),
            "../../../images/generated/a/b/Dockerfile"
        );
        assert_eq!(
            dockerfile_from_context(Path::new("/r"), "/abs/ctx", "images/generated/a/b/Dockerfile"),
            "/r/images/generated/a/b/Dockerfile"
        );
    }
}
