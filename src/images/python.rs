//! Python lock files: one resolution of every image's Python requirements per
//! variant, split into one `requirements.lock` per (image, variant) next to
//! its Dockerfile.
//!
//! The requirements are the manifest's `python` lists (`{key}` is replaced by
//! the variant's `values.key`). For each variant, `labkit lock` hands the
//! requirements of *all* its images to one `uv pip compile` run (the
//! variant's `values.python` and `values.python_platform`, hashes, wheels
//! only), so every package has exactly one version in the whole family and a
//! child never changes what its parent installed. The result is split along
//! the image tree: an image's lock holds the packages its own and its
//! ancestors' requirements need (followed through uv's `# via` annotations)
//! minus what the ancestors' locks already hold.
//!
//! Every lock starts with a header naming the inputs hash (requirements of
//! the variant's images, Python version, platform, index) and the hash of its
//! body, so `labkit check` can tell, offline, a stale lock from a hand-edited
//! one. Pure except [`Uv::compile`], the one place that runs uv.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::manifest::{Family, Manifest};
use super::{InputHasher, Layout};

/// File name of a target's lock, beside its Dockerfile.
pub const LOCK_FILE: &str = "requirements.lock";
/// Platform the locks are resolved for unless a variant sets
/// `values.python_platform`: glibc 2.28 wheels run on Ubuntu 22.04 and 24.04.
pub const DEFAULT_PLATFORM: &str = "x86_64-manylinux_2_28";
/// Bumped when the lock layout or the resolution options change, so every
/// lock becomes stale at once.
const LOCK_FORMAT: &str = "1";
const INPUTS_MARK: &str = "# labkit-lock-inputs-sha256: ";
const CONTENT_MARK: &str = "# labkit-lock-content-sha256: ";

/// Relative path (from the repository root) of a target's lock file.
pub fn lock_rel(image: &str, variant: &str) -> String {
    format!("images/generated/{image}/{variant}/{LOCK_FILE}")
}

/// The command that refreshes a variant's locks (for messages).
pub fn refresh_command(variant: &str) -> String {
    format!("labkit lock --python --variant {variant}")
}

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
    pub fn inputs_hash(&self) -> String {
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
    pub fn locked_images(&self) -> impl Iterator<Item = &ImageRequirements> {
        self.images.iter().filter(|i| self.needs_lock(&i.image))
    }

    /// An image gets a lock when it or an ancestor has requirements.
    pub fn needs_lock(&self, image: &str) -> bool {
        self.chain(image).iter().any(|i| !i.requirements.is_empty())
    }

    /// The image and its ancestors, root first.
    pub fn chain(&self, image: &str) -> Vec<&ImageRequirements> {
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
    pub fn uv_args(&self) -> Vec<String> {
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
    pub fn input_name(image: &str) -> String {
        format!("{image}.in")
    }
}

/// Replaces each `{key}` in `req` by `values[key]`.
pub fn expand(req: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
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
pub fn specs(family: &Family) -> Result<Vec<VariantSpec>, super::manifest::ManifestErrors> {
    use super::manifest::{ManifestError, ManifestErrors};
    specs_of(&family.manifest).map_err(|e| ManifestErrors(e.into_iter().map(ManifestError::Read).collect()))
}

fn specs_of(m: &Manifest) -> Result<Vec<VariantSpec>, Vec<String>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for (vname, v) in &m.variants {
        let mut images: Vec<ImageRequirements> = Vec::new();
        // Parents first: repeat until every image of the variant is placed.
        let members: Vec<(&String, &super::manifest::Image)> =
            m.images.iter().filter(|(_, i)| i.variants.contains(vname)).collect();
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
pub fn normalize_name(s: &str) -> String {
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
pub fn parse_compiled(text: &str) -> Result<Compiled, String> {
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
pub fn closure(c: &Compiled, inputs: &BTreeSet<String>) -> BTreeSet<String> {
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
pub fn split(spec: &VariantSpec, compiled: &Compiled, uv_version: &str) -> Result<BTreeMap<String, String>, String> {
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
    h.push_str(&format!("{CONTENT_MARK}{}\n", super::sha256_hex(body.as_bytes())));
    h.push('\n');
    h.push_str(body);
    h
}

/// Whether the file at `path` is a lock `labkit lock` wrote (it carries the
/// inputs-hash header line), so render may delete it once its target is gone.
pub fn is_lock_file(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.lines().take(12).any(|l| l.starts_with(INPUTS_MARK)))
}

/// What is wrong with one lock file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockProblem {
    Missing,
    /// The manifest's requirements (or Python, platform, index) changed.
    Stale,
    /// The body differs from what `labkit lock` wrote.
    HandEdited,
}

/// Checks a lock text against the spec's inputs hash. Pure.
pub fn check_text(text: &str, inputs_hash: &str) -> Option<LockProblem> {
    let header_value = |mark: &str| text.lines().find_map(|l| l.strip_prefix(mark)).map(str::trim);
    let body = text.split_once("\n\n").map(|(_, b)| b).unwrap_or("");
    match header_value(CONTENT_MARK) {
        Some(h) if h == super::sha256_hex(body.as_bytes()) => {}
        _ => return Some(LockProblem::HandEdited),
    }
    match header_value(INPUTS_MARK) {
        Some(h) if h == inputs_hash => None,
        _ => Some(LockProblem::Stale),
    }
}

/// One finding of [`check`]: the lock file and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockDrift {
    pub path: String,
    pub variant: String,
    pub problem: LockProblem,
}

impl std::fmt::Display for LockDrift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let why = match self.problem {
            LockProblem::Missing => "missing",
            LockProblem::Stale => {
                "out of date: the manifest's Python requirements (or values.python, python_platform, python_index) changed since it was locked"
            }
            LockProblem::HandEdited => "hand-edited: its content hash does not match its header",
        };
        write!(
            f,
            "{}: {why}; run `{}` where uv and the package index are reachable, then commit the locks",
            self.path,
            refresh_command(&self.variant)
        )
    }
}

/// Offline drift check of every lock file against the manifest.
pub fn check(layout: &Layout, family: &Family) -> Result<Vec<LockDrift>> {
    let specs = specs(family)?;
    let mut out = Vec::new();
    for s in &specs {
        let hash = s.inputs_hash();
        for img in s.locked_images() {
            let rel = lock_rel(&img.image, &s.variant);
            let problem = match std::fs::read_to_string(layout.root.join(&rel)) {
                // Line endings are not content: a CRLF checkout (core.autocrlf
                // without the repository's .gitattributes) is the same lock.
                Ok(t) => check_text(&t.replace("\r\n", "\n"), &hash),
                Err(_) => Some(LockProblem::Missing),
            };
            if let Some(problem) = problem {
                out.push(LockDrift { path: rel, variant: s.variant.clone(), problem });
            }
        }
    }
    Ok(out)
}

/// The resolver: `uv pip compile`, run in a scratch directory.
#[derive(Debug, Clone)]
pub struct Uv {
    pub program: PathBuf,
}

impl Uv {
    /// `--uv PATH`, else `LABKIT_UV`, else `uv` on PATH.
    pub fn find(requested: Option<&Path>) -> Result<Uv> {
        let wanted = requested
            .map(|p| p.to_string_lossy().to_string())
            .or_else(|| std::env::var("LABKIT_UV").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "uv".to_string());
        match super::build::on_path(&wanted) {
            Some(program) => Ok(Uv { program }),
            None => bail!(
                "{wanted} not found: `labkit lock` resolves Python requirements with uv; install it with \
                 `pip install uv` (tests/tools/deps.sh pins the version CI uses) or pass --uv PATH"
            ),
        }
    }

    pub fn version(&self) -> String {
        Command::new(&self.program)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    }

    /// Resolves all of the spec's requirements together. An unsatisfiable
    /// set is an error quoting uv's explanation.
    pub fn compile(&self, spec: &VariantSpec, scratch: &Path) -> Result<String> {
        std::fs::create_dir_all(scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
        let mut args = vec!["pip".to_string(), "compile".into()];
        for img in &spec.images {
            let name = VariantSpec::input_name(&img.image);
            let mut body = String::new();
            for r in &img.requirements {
                body.push_str(r);
                body.push('\n');
            }
            std::fs::write(scratch.join(&name), body)
                .with_context(|| format!("cannot write {}", scratch.join(&name).display()))?;
            if !img.requirements.is_empty() {
                args.push(name);
            }
        }
        args.extend(spec.uv_args());
        let out = Command::new(&self.program)
            .args(&args)
            .current_dir(scratch)
            .env("UV_PYTHON_DOWNLOADS", "never")
            .env("NO_COLOR", "1")
            .output()
            .with_context(|| format!("cannot run {}", self.program.display()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            bail!("{}", unsatisfiable_message(spec, &err));
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }
}

/// The error for a failed resolution: the conflicting packages first (from
/// uv's "we can conclude that A and B are incompatible"), then uv's words.
pub fn unsatisfiable_message(spec: &VariantSpec, uv_stderr: &str) -> String {
    let text: String = strip_ansi(uv_stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with("warning:"))
        .collect();
    let mut conflicts: Vec<String> = Vec::new();
    let flat = lines.join(" ");
    let mut rest = flat.as_str();
    while let Some(i) = rest.find("we can conclude that ") {
        rest = &rest[i + "we can conclude that ".len()..];
        if let Some(j) = rest.find(" are incompatible") {
            let pair = rest[..j].trim().to_string();
            if !conflicts.contains(&pair) {
                conflicts.push(pair);
            }
        }
    }
    let images: Vec<&str> = spec.images.iter().map(|i| i.image.as_str()).collect();
    let head = if conflicts.is_empty() {
        format!(
            "variant `{}`: uv could not resolve the Python requirements of {} (Python {}, {})",
            spec.variant,
            images.join(", "),
            spec.python,
            spec.platform
        )
    } else {
        format!(
            "variant `{}`: the Python requirements of {} cannot be installed together: {} are incompatible (Python {}, {})",
            spec.variant,
            images.join(", "),
            conflicts.join("; "),
            spec.python,
            spec.platform
        )
    };
    format!(
        "{head}; change the requirements in images/manifest.toml (no lock file was changed). uv says:\n  {}",
        lines.join("\n  ")
    )
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// What `labkit lock --python` did per file.
#[derive(Debug, Default)]
pub struct PythonLockReport {
    pub written: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Resolves the selected variants (all when empty) and writes their locks.
/// All or nothing: every variant is resolved before any file is written. uv
/// (`uv`: as for [`Uv::find`]) is only looked for when an image has Python
/// requirements.
pub fn lock(layout: &Layout, family: &Family, uv: Option<&Path>, variants: &[String]) -> Result<PythonLockReport> {
    let specs = specs(family)?;
    for v in variants {
        if !specs.iter().any(|s| &s.variant == v) {
            bail!(super::UsageError(format!(
                "--variant {v}: no such variant (known: {})",
                specs.iter().map(|s| s.variant.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let selected = |s: &&VariantSpec| variants.is_empty() || variants.contains(&s.variant);
    if !specs.iter().filter(selected).any(|s| s.locked_images().next().is_some()) {
        return Ok(PythonLockReport::default());
    }
    let uv = Uv::find(uv)?;
    let version = uv.version();
    let scratch = layout.work().join("lock");
    let mut files: Vec<(String, String)> = Vec::new();
    let mut failures = Vec::new();
    for s in specs.iter().filter(selected) {
        if s.locked_images().next().is_none() {
            continue;
        }
        eprintln!(
            "lock: resolving variant {} (Python {}, {}) with {}",
            s.variant,
            s.python,
            s.platform,
            uv.program.display()
        );
        let result = uv
            .compile(s, &scratch.join(&s.variant))
            .and_then(|out| parse_compiled(&out).map_err(|e| anyhow::anyhow!("uv's output for `{}`: {e}", s.variant)))
            .and_then(|c| split(s, &c, &version).map_err(|e| anyhow::anyhow!(e)));
        match result {
            Ok(locks) => {
                for (image, text) in locks {
                    files.push((lock_rel(&image, &s.variant), text));
                }
            }
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if !failures.is_empty() {
        bail!("{}", failures.join("\n"));
    }
    let mut report = PythonLockReport::default();
    for (rel, text) in files {
        let path = layout.root.join(&rel);
        if std::fs::read_to_string(&path).is_ok_and(|t| t == text) {
            report.unchanged.push(rel);
            continue;
        }
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        let tmp = path.with_extension("lock.tmp");
        std::fs::write(&tmp, &text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
        report.written.push(rel);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn expand_replaces_values_and_rejects_unknown_keys() {
        let v = values(&[("torch", "2.7.1"), ("tensorflow", "tensorflow-cpu==2.19.0")]);
        assert_eq!(expand("torch=={torch}", &v).unwrap(), "torch==2.7.1");
        assert_eq!(expand("{tensorflow}", &v).unwrap(), "tensorflow-cpu==2.19.0");
        assert_eq!(expand("numpy<2", &v).unwrap(), "numpy<2");
        assert!(expand("torch=={torh}", &v).unwrap_err().contains("values.torh"));
        assert!(expand("torch=={torch", &v).unwrap_err().contains("closing"));
        assert!(expand("torch==}", &v).unwrap_err().contains("opening"));
        assert!(expand("--index-url http://x", &v).unwrap_err().contains("options"));
        assert!(expand("{empty}", &values(&[("empty", " ")])).unwrap_err().contains("nothing"));
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(normalize_name("Jupyter_Server.Terminals"), "jupyter-server-terminals");
        assert_eq!(normalize_name("opencv-python-headless"), "opencv-python-headless");
        assert_eq!(normalize_name("a__b"), "a-b");
    }

    const OUT: &str = "\
absl-py==2.5.1 \\
    --hash=sha256:aa \\
    --hash=sha256:bb
    # via
    #   keras
    #   tensorflow-cpu
keras==3.15.1 \\
    --hash=sha256:cc
    # via tensorflow-cpu
numpy==2.1.3 \\
    --hash=sha256:dd
    # via
    #   -r lab-pytorch.in
    #   keras
pip==26.3 \\
    --hash=sha256:ee
    # via -r lab-base.in
tensorflow-cpu==2.19.0 \\
    --hash=sha256:ff
    # via -r lab-python-ml.in
";

    fn spec() -> VariantSpec {
        let img = |n: &str, p: Option<&str>, r: &[&str]| ImageRequirements {
            image: n.into(),
            parent: p.map(String::from),
            requirements: r.iter().map(|s| s.to_string()).collect(),
        };
        VariantSpec {
            variant: "cpu".into(),
            python: "3.12".into(),
            platform: DEFAULT_PLATFORM.into(),
            index: None,
            exclude_newer: None,
            images: vec![
                img("lab-base", None, &["pip"]),
                img("lab-pytorch", Some("lab-base"), &["numpy"]),
                img("lab-python-ml", Some("lab-pytorch"), &["tensorflow-cpu==2.19.0"]),
            ],
        }
    }

    #[test]
    fn parse_keeps_blocks_and_reads_annotations() {
        let c = parse_compiled(OUT).unwrap();
        assert_eq!(c.pins.len(), 5);
        assert_eq!(c.pins[0].name, "absl-py");
        assert_eq!(c.pins[0].version, "2.5.1");
        assert_eq!(c.pins[0].via, ["keras", "tensorflow-cpu"]);
        assert_eq!(c.pins[0].lines.len(), 6);
        assert_eq!(c.pins[2].via, ["-r lab-pytorch.in", "keras"]);
        assert!(parse_compiled("numpy>=2\n").unwrap_err().contains("not a pinned requirement"));
    }

    #[test]
    fn split_gives_each_package_to_the_highest_image_that_needs_it() {
        let c = parse_compiled(OUT).unwrap();
        let locks = split(&spec(), &c, "uv 0.13.9").unwrap();
        let names = |image: &str| -> Vec<String> {
            parse_compiled(locks[image].split_once("\n\n").unwrap().1)
                .unwrap()
                .pins
                .into_iter()
                .map(|p| p.name)
                .collect()
        };
        assert_eq!(names("lab-base"), ["pip"]);
        // numpy is needed by keras too, but lab-pytorch asks for it: it is
        // installed there and never again by the child.
        assert_eq!(names("lab-pytorch"), ["numpy"]);
        assert_eq!(names("lab-python-ml"), ["absl-py", "keras", "tensorflow-cpu"]);
        for text in locks.values() {
            assert_eq!(check_text(text, &spec().inputs_hash()), None, "{text}");
        }
    }

    #[test]
    fn parse_handles_markers_extras_options_and_odd_names() {
        let text = "--index-url https://pypi.org/simple\n--extra-index-url https://download.pytorch.org/whl/cu118\n\
                    Jinja2==3.1.6 ; python_version >= '3.9' \\\n    --hash=sha256:aa\n    # via\n    #   -r lab-base.in\n\
                    nvidia-cudnn-cu11==9.1.0.70 \\\n    --hash=sha256:bb\n    # via torch (extra: cuda)\n\
                    zope.interface==8.0 \\\n    --hash=sha256:cc\n    # via tensorflow[and-cuda]\n";
        let c = parse_compiled(text).unwrap();
        assert_eq!(c.options.len(), 2);
        assert_eq!(c.pins[0].name, "jinja2");
        assert_eq!(c.pins[0].version, "3.1.6");
        assert_eq!(c.pins[0].via, ["-r lab-base.in"]);
        assert_eq!(c.pins[1].via, ["torch"]);
        assert_eq!(c.pins[2].name, "zope-interface");
        assert_eq!(c.pins[2].via, ["tensorflow"]);
        // The index options reach every image's lock.
        let locks =
            split(&spec(), &parse_compiled(&format!("{}\n{OUT}", &text[..text.find("Jinja2").unwrap()])).unwrap(), "")
                .unwrap();
        for l in locks.values() {
            assert!(l.contains("--extra-index-url https://download.pytorch.org/whl/cu118\n"), "{l}");
        }
    }

    #[test]
    fn a_package_nobody_asked_for_is_an_error() {
        let c = parse_compiled("stray==1 \\\n    --hash=sha256:00\n").unwrap();
        assert!(split(&spec(), &c, "").unwrap_err().contains("stray"));
    }

    #[test]
    fn check_tells_stale_from_hand_edited() {
        let c = parse_compiled(OUT).unwrap();
        let s = spec();
        let text = split(&s, &c, "").unwrap()["lab-pytorch"].clone();
        assert_eq!(check_text(&text, &s.inputs_hash()), None);
        let mut changed = s.clone();
        changed.images[1].requirements.push("scipy".into());
        assert_eq!(check_text(&text, &changed.inputs_hash()), Some(LockProblem::Stale));
        let mut py = s.clone();
        py.python = "3.11".into();
        assert_ne!(py.inputs_hash(), s.inputs_hash());
        let edited = text.replace("numpy==2.1.3", "numpy==2.1.2");
        assert_eq!(check_text(&edited, &s.inputs_hash()), Some(LockProblem::HandEdited));
        assert_eq!(check_text("", &s.inputs_hash()), Some(LockProblem::HandEdited));
    }

    #[test]
    fn conflict_message_names_the_packages() {
        let uv = "error: No solution found when resolving dependencies\n  cause: Because torch==2.7.1 depends on \
                  nvidia-cuda-nvrtc-cu12==12.6.77 and tensorflow[and-cuda]==2.19.0 depends on \
                  nvidia-cuda-nvrtc-cu12==12.5.82, we can conclude that tensorflow[and-cuda]==2.19.0 and \
                  torch==2.7.1 are incompatible.\n";
        let m = unsatisfiable_message(&spec(), &format!("\u{1b}[31m{uv}\u{1b}[0m"));
        assert!(m.contains("tensorflow[and-cuda]==2.19.0 and torch==2.7.1 are incompatible"), "{m}");
        assert!(m.contains("variant `cpu`"), "{m}");
        assert!(m.contains("nvidia-cuda-nvrtc-cu12==12.5.82"), "{m}");
        assert!(!m.contains('\u{1b}'), "{m}");
    }

    #[test]
    fn index_is_passed_and_emitted() {
        let mut s = spec();
        let plain = s.uv_args();
        assert!(!plain.iter().any(|a| a == "--index"));
        s.index = Some("https://download.pytorch.org/whl/cu118".into());
        let a = s.uv_args();
        assert!(a.windows(2).any(|w| w == ["--index", "https://download.pytorch.org/whl/cu118"]));
        assert!(a.contains(&"--emit-index-url".to_string()));
        assert_ne!(s.inputs_hash(), spec().inputs_hash());
    }
}
