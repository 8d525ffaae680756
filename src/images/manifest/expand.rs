//! Validation of the manifest and its expansion into targets: names, formats,
//! bake group clashes, parents and their cycles, variants, tags and base
//! references, each error reported together with the others. Pure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::{BaseOverrides, Kind, Manifest, ManifestError, Parent, Target, Variant};
use crate::images::lockfile::Lock;
use crate::images::syntax;

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
pub(crate) fn expand(
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
