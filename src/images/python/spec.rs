//! What one variant's resolution depends on: each image's requirements with
//! the variant's values filled in, parents first, and the hash of it all.

use std::collections::{BTreeMap, BTreeSet};

use super::{DEFAULT_PLATFORM, LOCK_FORMAT};
use crate::images::digest::InputHasher;
use crate::images::manifest::{Family, Image, Manifest, ManifestError, ManifestErrors};

/// One image's place in a variant's resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRequirements {
    pub image: String,
    /// In-family parent, if any (always of the same variant).
    pub parent: Option<String>,
    /// Requirements with `{key}` placeholders replaced.
    pub requirements: Vec<String>,
}

/// Everything one variant's resolution depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantSpec {
    pub variant: String,
    pub python: String,
    pub platform: String,
    /// A package index consulted before PyPI (e.g. a PyTorch wheel index).
    pub index: Option<String>,
    /// Only packages published before this moment (`[family] python_snapshot`).
    pub exclude_newer: Option<String>,
    /// Parents before children.
    pub images: Vec<ImageRequirements>,
}

impl VariantSpec {
    /// Hash of everything the resolution reads from the manifest.
    pub(crate) fn inputs_hash(&self) -> String {
        let mut h = InputHasher::new();
        h.part("format", LOCK_FORMAT.as_bytes())
            .part("python", self.python.as_bytes())
            .part("platform", self.platform.as_bytes())
            .part("index", self.index.as_deref().unwrap_or("").as_bytes())
            .part("exclude-newer", self.exclude_newer.as_deref().unwrap_or("").as_bytes());
        for i in &self.images {
            h.part("image", i.image.as_bytes()).part("parent", i.parent.as_deref().unwrap_or("").as_bytes());
            for r in &i.requirements {
                h.part("requirement", r.as_bytes());
            }
        }
        h.finish()
    }

    /// Images of this variant that have requirements (and so a lock file).
    pub(crate) fn locked_images(&self) -> impl Iterator<Item = &ImageRequirements> {
        self.images.iter().filter(|i| self.needs_lock(&i.image))
    }

    /// An image gets a lock when it or an ancestor has requirements.
    pub(crate) fn needs_lock(&self, image: &str) -> bool {
        self.chain(image).iter().any(|i| !i.requirements.is_empty())
    }

    /// The image and its ancestors, root first.
    pub(crate) fn chain(&self, image: &str) -> Vec<&ImageRequirements> {
        let mut out = Vec::new();
        let mut cur = self.images.iter().find(|i| i.image == image);
        while let Some(i) = cur {
            out.push(i);
            cur = i.parent.as_ref().and_then(|p| self.images.iter().find(|x| &x.image == p));
        }
        out.reverse();
        out
    }

    /// The uv arguments after `uv pip compile` (inputs excluded).
    pub(crate) fn uv_args(&self) -> Vec<String> {
        let mut a = vec![
            "--python-version".to_string(),
            self.python.clone(),
            "--python-platform".into(),
            self.platform.clone(),
            "--generate-hashes".into(),
            "--no-build".into(),
            "--no-header".into(),
            "--annotation-style".into(),
            "split".into(),
        ];
        if let Some(t) = &self.exclude_newer {
            a.push("--exclude-newer".into());
            a.push(t.clone());
        }
        if let Some(ix) = &self.index {
            a.push("--index".into());
            a.push(ix.clone());
            a.push("--emit-index-url".into());
        }
        a
    }

    /// Input file name of an image's requirements in the uv run (shows up in
    /// the `# via -r …` annotations).
    pub(crate) fn input_name(image: &str) -> String {
        format!("{image}.in")
    }
}

/// Replaces each `{key}` in `req` by `values[key]`.
pub(crate) fn expand(req: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = req;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| format!("`{req}`: `{{` without a closing `}}`"))?;
        let key = &after[..close];
        let v = values.get(key).ok_or_else(|| format!("`{req}`: no values.{key} in this variant"))?;
        out.push_str(v);
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("`{req}`: `}}` without an opening `{{`"));
    }
    out.push_str(rest);
    let out = out.trim().to_string();
    if out.is_empty() {
        return Err(format!("`{req}` expands to nothing"));
    }
    if out.starts_with('-') || out.contains('\n') {
        return Err(format!("`{req}` expands to `{out}`, which is not a requirement (options are not allowed)"));
    }
    Ok(out)
}

/// The per-variant specs of the family, sorted by variant. Errors name the
/// image, variant and requirement.
pub(crate) fn specs(family: &Family) -> Result<Vec<VariantSpec>, ManifestErrors> {
    specs_of(&family.manifest).map_err(|e| ManifestErrors(e.into_iter().map(ManifestError::Read).collect()))
}

fn specs_of(m: &Manifest) -> Result<Vec<VariantSpec>, Vec<String>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for (vname, v) in &m.variants {
        let mut images: Vec<ImageRequirements> = Vec::new();
        // Parents first: repeat until every image of the variant is placed.
        let members: Vec<(&String, &Image)> = m.images.iter().filter(|(_, i)| i.variants.contains(vname)).collect();
        let mut placed: BTreeSet<&str> = BTreeSet::new();
        while placed.len() < members.len() {
            let before = placed.len();
            for (name, img) in &members {
                if placed.contains(name.as_str()) {
                    continue;
                }
                let ready = img.parent.as_deref().is_none_or(|p| placed.contains(p));
                if !ready {
                    continue;
                }
                let mut reqs = Vec::new();
                for r in &img.python {
                    match expand(r, &v.values) {
                        Ok(x) => reqs.push(x),
                        Err(e) => errors.push(format!("image `{name}`, variant `{vname}`: python requirement {e}")),
                    }
                }
                images.push(ImageRequirements {
                    image: name.to_string(),
                    parent: img.parent.clone(),
                    requirements: reqs,
                });
                placed.insert(name);
            }
            if placed.len() == before {
                break; // a parent outside the variant: the manifest reports it
            }
        }
        let any = images.iter().any(|i| !i.requirements.is_empty());
        let python = v.values.get("python").cloned().unwrap_or_default();
        if any && python.is_empty() {
            errors.push(format!(
                "variant `{vname}`: its images have Python requirements, so it needs values.python (e.g. \"3.12\")"
            ));
        }
        out.push(VariantSpec {
            variant: vname.clone(),
            python,
            platform: v.values.get("python_platform").cloned().unwrap_or_else(|| DEFAULT_PLATFORM.to_string()),
            index: v.values.get("python_index").filter(|s| !s.is_empty()).cloned(),
            exclude_newer: m.family.python_snapshot.clone(),
            images,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}
