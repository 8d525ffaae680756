//! uv's output, parsed into pins with their `# via` annotations, and split
//! along the image tree into one lock text per image. Pure.

use std::collections::{BTreeMap, BTreeSet};

use super::{refresh_command, VariantSpec, CONTENT_MARK, INPUTS_MARK};
use crate::images::digest::sha256_hex;

/// One package of uv's output: its pinned line, hashes and annotations, kept
/// as uv wrote them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// Normalised name (PEP 503: lower case, runs of `-_.` as `-`).
    pub name: String,
    pub version: String,
    /// The block's lines, verbatim.
    pub lines: Vec<String>,
    /// Normalised names of the packages that require it, and `-r FILE` for
    /// direct requirements.
    pub via: Vec<String>,
}

/// uv's requirements output, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compiled {
    /// `--index-url`/`--extra-index-url` lines, kept for every lock.
    pub options: Vec<String>,
    pub pins: Vec<Pin>,
}

/// PEP 503 normalisation.
pub(crate) fn normalize_name(s: &str) -> String {
    let mut out = String::new();
    let mut sep = false;
    for c in s.chars() {
        if c == '-' || c == '_' || c == '.' {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Parses `uv pip compile --generate-hashes --annotation-style split` output.
pub(crate) fn parse_compiled(text: &str) -> Result<Compiled, String> {
    let mut c = Compiled::default();
    let mut in_via = false;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        if line.is_empty() {
            continue;
        }
        if line.starts_with("--index-url") || line.starts_with("--extra-index-url") || line.starts_with("--find-links")
        {
            c.options.push(line.to_string());
            continue;
        }
        if !line.starts_with(' ') && !line.starts_with('#') {
            let spec = line.trim_end_matches('\\').trim();
            let spec = spec.split(';').next().unwrap_or(spec).trim();
            let (name, version) = spec
                .split_once("==")
                .ok_or_else(|| format!("line {}: `{line}` is not a pinned requirement (name==version)", n + 1))?;
            let name = name.split('[').next().unwrap_or(name);
            c.pins.push(Pin {
                name: normalize_name(name),
                version: version.trim().to_string(),
                lines: vec![line.to_string()],
                via: Vec::new(),
            });
            in_via = false;
            continue;
        }
        let Some(pin) = c.pins.last_mut() else {
            continue; // comments before the first package
        };
        pin.lines.push(line.to_string());
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("# via") {
            let rest = rest.trim();
            in_via = rest.is_empty();
            if !rest.is_empty() {
                pin.via.push(via_entry(rest));
            }
        } else if in_via {
            if let Some(rest) = t.strip_prefix('#') {
                pin.via.push(via_entry(rest.trim()));
            }
        }
    }
    Ok(c)
}

fn via_entry(s: &str) -> String {
    if s.starts_with("-r ") || s.starts_with("-c ") {
        s.to_string()
    } else {
        // `tensorflow[and-cuda]` or `torch (extra: x)` -> the package name.
        let name = s.split(['[', ' ', '(']).next().unwrap_or(s);
        normalize_name(name)
    }
}

/// Names of the pins an image needs: the closure, through the `via`
/// annotations, of the packages required directly by the given input files.
pub(crate) fn closure(c: &Compiled, inputs: &BTreeSet<String>) -> BTreeSet<String> {
    let mut set: BTreeSet<String> = BTreeSet::new();
    loop {
        let before = set.len();
        for p in &c.pins {
            if set.contains(&p.name) {
                continue;
            }
            let needed = p.via.iter().any(|v| match v.strip_prefix("-r ") {
                Some(file) => inputs.contains(file),
                None => set.contains(v),
            });
            if needed {
                set.insert(p.name.clone());
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

/// Splits one variant's resolution into per-image lock texts (image name ->
/// file content). Errors when a pin belongs to no image (cannot happen with
/// uv's annotations, so it means the output was not what we asked for).
pub(crate) fn split(
    spec: &VariantSpec,
    compiled: &Compiled,
    uv_version: &str,
) -> Result<BTreeMap<String, String>, String> {
    let inputs_hash = spec.inputs_hash();
    let mut out = BTreeMap::new();
    let mut covered: BTreeSet<String> = BTreeSet::new();
    for img in spec.locked_images() {
        let chain = spec.chain(&img.image);
        let files = |upto: usize| -> BTreeSet<String> {
            chain[..upto].iter().map(|i| VariantSpec::input_name(&i.image)).collect()
        };
        let mine = closure(compiled, &files(chain.len()));
        let parents = closure(compiled, &files(chain.len() - 1));
        let own: Vec<&Pin> =
            compiled.pins.iter().filter(|p| mine.contains(&p.name) && !parents.contains(&p.name)).collect();
        covered.extend(mine);
        let mut body = String::new();
        for o in &compiled.options {
            body.push_str(o);
            body.push('\n');
        }
        for p in own {
            for l in &p.lines {
                body.push_str(l);
                body.push('\n');
            }
        }
        out.insert(img.image.clone(), lock_text(spec, &img.image, &inputs_hash, uv_version, &body));
    }
    let stray: Vec<&str> =
        compiled.pins.iter().filter(|p| !covered.contains(&p.name)).map(|p| p.name.as_str()).collect();
    if !stray.is_empty() {
        return Err(format!(
            "uv's output for variant `{}` has packages no image asked for ({}); is uv older than 0.4 (no `# via` annotations)?",
            spec.variant,
            stray.join(", ")
        ));
    }
    Ok(out)
}

fn lock_text(spec: &VariantSpec, image: &str, inputs: &str, uv_version: &str, body: &str) -> String {
    let all: Vec<&str> = spec.locked_images().map(|i| i.image.as_str()).collect();
    let mut h = String::new();
    h.push_str(&format!(
        "# Python packages of {image} (variant {v}), written by `labkit lock`. DO NOT EDIT.\n\
         # Resolved as one set with {all} by {uv}:\n\
         #   uv pip compile {args}\n\
         # Packages of the parent images are in their own locks. Refresh: {cmd}\n",
        v = spec.variant,
        all = all.join(", "),
        uv = if uv_version.is_empty() { "uv" } else { uv_version },
        args = spec.uv_args().join(" "),
        cmd = refresh_command(&spec.variant),
    ));
    h.push_str(&format!("{INPUTS_MARK}{inputs}\n"));
    h.push_str(&format!("{CONTENT_MARK}{}\n", sha256_hex(body.as_bytes())));
    h.push('\n');
    h.push_str(body);
    h
}
