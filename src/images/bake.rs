//! `docker-bake.json`: the plan in the format `docker buildx bake` reads, fully
//! expanded (no variables, no matrix, no inherits), so `bake --print` shows the
//! same content.
//!
//! Children get their parent through `contexts` with a `target:` link, under a
//! context key that equals their `BASE_IMAGE` argument — the two strings must
//! be identical or BuildKit would go to the registry instead. External parents
//! are `docker-image://` contexts, pinned by digest when locked. Owns only the
//! translation; the graph itself is `plan`'s.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::buildargs::LABELED_ARGS;
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

/// `path` (relative to the repository root, or absolute) as an absolute path.
///
/// The bake file names its context and Dockerfile by absolute path, so it
/// means the same whether bake resolves relative paths against the current
/// directory (the default) or against the bake file's directory
/// (`BUILDX_BAKE_FILE_RELATIVE_PATHS=1`), and from any directory. The file is
/// a build artifact of this checkout (under `build/`), never committed, so
/// absolute paths cost nothing.
fn absolute(root: &Path, path: &str) -> String {
    let p = Path::new(path);
    let abs = if p.is_absolute() { p.to_path_buf() } else { root.join(p) };
    let mut out = std::path::PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.to_string_lossy().to_string()
}

/// Escapes a string for bake: bake reads JSON files as HCL, where `${…}` is
/// interpolation and `%{…}` a template directive (buildx #2613). `$${` and
/// `%%{` are their literal forms, so every string labkit writes reaches the
/// build exactly as given.
pub(crate) fn escape(s: &str) -> String {
    s.replace("${", "$${").replace("%{", "%%{")
}

/// The bake file for `plan`; `root` is where `docker buildx bake` runs.
pub(crate) fn bake(plan: &Plan, root: &Path) -> BakeFile {
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
        for (arg, label) in LABELED_ARGS {
            labels.insert(label.to_string(), t.args.get(arg).cloned().unwrap_or_default());
        }
        let esc_map = |m: BTreeMap<String, String>| m.into_iter().map(|(k, v)| (escape(&k), escape(&v))).collect();
        target.insert(
            t.name.clone(),
            BakeTarget {
                context: escape(&absolute(root, &t.context)),
                dockerfile: escape(&absolute(root, &t.dockerfile)),
                args: esc_map(args),
                contexts: esc_map(contexts),
                tags: t.tags.iter().map(|x| escape(x)).collect(),
                labels: esc_map(labels),
                platforms: t.platforms.iter().map(|x| escape(x)).collect(),
            },
        );
    }
    BakeFile { group, target }
}

pub(crate) fn to_json(b: &BakeFile) -> String {
    serde_json::to_string_pretty(b).expect("bake file serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_absolute() {
        assert_eq!(absolute(Path::new("/r"), "build/images/context"), "/r/build/images/context");
        assert_eq!(absolute(Path::new("/r"), "./a/../b"), "/r/b");
        assert_eq!(absolute(Path::new("/r"), "/abs/ctx"), "/abs/ctx");
    }

    #[test]
    fn escape_makes_interpolation_literal() {
        assert_eq!(escape("a${T}b"), "a$${T}b");
        assert_eq!(escape("50%{x}"), "50%%{x}");
        assert_eq!(escape("$${x}"), "$$${x}");
        // Negative control: plain `$` and `%` are not interpolation.
        assert_eq!(escape("$HOME 50% {x}"), "$HOME 50% {x}");
    }
}
