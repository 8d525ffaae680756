//! The image-family generator behind the `labkit` CLI: manifest, templates,
//! render, check, plan, bake, build and lock. Owns everything under `images/`;
//! knows nothing about how labinit works beyond copying its binary into build
//! contexts.
//!
//! The pipeline is the docker-library discipline with bake's build graph:
//! `images/manifest.toml` (+ `images/lock.toml`) is the single source of truth
//! ([`manifest`]), it expands into targets (image × variant), [`render`] turns
//! each target into a committed Dockerfile under `images/generated/`, [`check`]
//! proves the committed files are what render would write, [`plan`] orders the
//! targets into build levels, [`bake`] emits the same graph as a
//! `docker-bake.json`, [`build`] runs it with docker or podman, and [`lock`]
//! pins base images to digests. Rendering is a pure function of its files: no
//! network, clock or environment.

pub mod bake;
pub mod build;
pub mod check;
pub mod imagetest;
pub mod lock;
pub mod manifest;
pub mod plan;
pub mod python;
pub mod render;
pub mod syntax;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use manifest::{BaseOverrides, Family, ManifestErrors};
use render::{RenderError, Templates};

/// The generator's version, written into every header and label so a
/// Dockerfile says which labkit produced it.
pub const GENERATOR_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where the family's files live inside a repository. Every command takes the
/// repository root explicitly so tests work on copies and never on the host.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }

    /// Finds the repository root: the nearest ancestor of `start` that holds
    /// `images/manifest.toml`.
    pub fn discover(start: &Path) -> Option<Self> {
        start.ancestors().find(|d| d.join("images/manifest.toml").is_file()).map(Layout::new)
    }

    pub fn manifest(&self) -> PathBuf {
        self.root.join("images/manifest.toml")
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("images/lock.toml")
    }
    pub fn templates(&self) -> PathBuf {
        self.root.join("images/templates")
    }
    /// The committed output tree owned by `labkit render`.
    pub fn generated(&self) -> PathBuf {
        self.root.join("images/generated")
    }
    /// Relative path (from the root) of a target's Dockerfile inside an output tree.
    pub fn dockerfile_rel(image: &str, variant: &str) -> PathBuf {
        PathBuf::from(image).join(variant).join("Dockerfile")
    }
    /// Scratch space for builds: staged context and logs. Not committed.
    pub fn work(&self) -> PathBuf {
        self.root.join("build/images")
    }
}

/// A command used wrongly (as opposed to drift or a failed build).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}
impl std::error::Error for UsageError {}

/// Exit code for an error: 2 for invalid input (manifest, templates, usage),
/// 1 for everything else (drift, failed builds, missing tools).
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let invalid = e.chain().any(|c| c.is::<ManifestErrors>() || c.is::<RenderError>() || c.is::<UsageError>());
    if invalid {
        2
    } else {
        1
    }
}

/// Loads and validates the manifest, lock and templates.
pub fn load(layout: &Layout, overrides: &BaseOverrides) -> Result<(Family, Templates)> {
    let family = Family::load(layout, overrides)?;
    // The Python requirements' placeholders are manifest values like the
    // templates' ones: an undefined one is an error for every command.
    python::specs(&family)?;
    let templates = Templates::load(&layout.templates())?;
    Ok((family, templates))
}

/// `labkit render`: renders the family and writes it into `out` (default
/// `images/generated/`). A base override changes the Dockerfiles, so it may
/// only be written somewhere else: the committed tree always matches the
/// manifest.
pub fn render_to(layout: &Layout, out: Option<&Path>, overrides: &BaseOverrides) -> Result<render::WriteReport> {
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| layout.generated());
    if !overrides.is_empty() && same_dir(&out, &layout.generated()) {
        bail!(UsageError(
            "--base-override changes the Dockerfiles, so it needs --out DIR outside images/generated \
             (the committed tree always matches the manifest)"
                .into()
        ));
    }
    let (family, templates) = load(layout, overrides)?;
    let rendered = render::render(&family, &templates)?;
    render::write(&out, &rendered)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// `labkit check`: drift between a fresh in-memory render and images/generated.
pub fn check(layout: &Layout) -> Result<check::CheckReport> {
    let (family, templates) = load(layout, &BaseOverrides::new())?;
    let rendered = render::render(&family, &templates)?;
    let mut drift = check::compare(&layout.generated(), "images/generated/", &rendered);
    drift.extend(python::check(layout, &family)?.into_iter().map(check::Drift::Lock));
    Ok(check::CheckReport { drift, warnings: check::warnings(&family, &check::today_utc()) })
}

/// `labkit plan`: the build plan for the selection.
pub fn plan(layout: &Layout, overrides: &BaseOverrides, opts: &plan::PlanOptions) -> Result<plan::Plan> {
    let (family, templates) = load(layout, overrides)?;
    let rendered = render::render(&family, &templates)?;
    let shipped = plan::shipped_files_hash(&plan::shipped_files(layout).map_err(UsageError)?, layout);
    plan::make(&family, &rendered, &shipped, opts).map_err(|e| UsageError(e).into())
}

/// What `labkit lock` refreshes.
#[derive(Debug, Clone, Default)]
pub struct LockOptions {
    /// Only the Python locks / only the base digests (neither: both).
    pub python_only: bool,
    pub bases_only: bool,
    pub resolver: Option<lock::Resolver>,
    /// Variants whose Python locks are refreshed (empty: all).
    pub variants: Vec<String>,
    pub uv: Option<PathBuf>,
}

/// `labkit lock`: the Python locks of every (selected) variant, then each
/// variant's base digest in images/lock.toml. A failure of one part leaves its
/// files unchanged and is reported after the other part ran.
pub fn lock(layout: &Layout, opts: &LockOptions) -> Result<()> {
    let (family, _) = load(layout, &BaseOverrides::new())?;
    let mut errors: Vec<anyhow::Error> = Vec::new();
    if !opts.bases_only {
        match python::lock(layout, &family, opts.uv.as_deref(), &opts.variants) {
            Ok(r) if r.written.is_empty() && r.unchanged.is_empty() => {}
            Ok(r) => {
                for p in &r.written {
                    println!("lock: wrote {p}");
                }
                println!("lock: Python locks: {} written, {} unchanged", r.written.len(), r.unchanged.len());
            }
            Err(e) if e.chain().any(|c| c.is::<UsageError>() || c.is::<ManifestErrors>()) => return Err(e),
            Err(e) => errors.push(e.context("Python locks not refreshed")),
        }
    }
    if !opts.python_only {
        if let Err(e) = lock_bases(layout, &family, opts.resolver) {
            errors.push(e);
        }
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => bail!("{:#}\n{:#}", errors[0], errors[1]),
    }
}

fn lock_bases(layout: &Layout, family: &Family, resolver: Option<lock::Resolver>) -> Result<()> {
    let mut refs: Vec<String> = family.manifest.variants.values().map(|v| v.base.clone()).collect();
    refs.sort();
    refs.dedup();
    let (new, report) = lock::refresh(&family.lock, &refs, &lock::resolvers(resolver))?;
    for (r, old, new) in &report.changed {
        match old {
            Some(o) => println!("lock: {r}: {o} -> {new}"),
            None => println!("lock: {r}: {new}"),
        }
    }
    for r in &report.removed {
        println!("lock: {r}: removed (no variant uses it)");
    }
    if report.changed.is_empty() && report.removed.is_empty() {
        println!("lock: all {} base(s) unchanged", report.unchanged.len());
    } else {
        new.save(&layout.lock())?;
        println!("lock: wrote images/lock.toml; now run `labkit render` to pin the Dockerfiles");
    }
    Ok(())
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(data))
}

/// Incremental SHA-256 for hashes over several named inputs. Each part is
/// length-prefixed so ("ab","c") and ("a","bc") never collide.
#[derive(Default)]
pub struct InputHasher(sha2::Sha256);

impl InputHasher {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn part(&mut self, name: &str, data: &[u8]) -> &mut Self {
        use sha2::Digest;
        for chunk in [name.as_bytes(), data] {
            self.0.update((chunk.len() as u64).to_le_bytes());
            self.0.update(chunk);
        }
        self
    }
    pub fn finish(self) -> String {
        use sha2::Digest;
        hex(&self.0.finalize())
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Path relative to `root` with `/` separators, for messages and headers.
pub fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).to_string_lossy().replace('\\', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn input_hasher_separates_parts() {
        let mut a = InputHasher::new();
        a.part("x", b"ab").part("y", b"c");
        let mut b = InputHasher::new();
        b.part("x", b"a").part("y", b"bc");
        assert_ne!(a.finish(), b.finish());
    }
}
