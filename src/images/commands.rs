//! The `labkit` commands over the image family, each a function from its
//! options to a report (or a typed [`Error`]): the binary prints reports and
//! maps error kinds to exit codes; long runs report progress to the
//! caller's [`Progress`] sink. Nothing here prints.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::build::{self, BuildOptions, Engine, Summary};
use super::check::{self, CheckReport, Drift};
use super::error::{Error, ErrorKind, UsageError};
use super::imagetest::{self, TestOptions, TestSummary};
use super::layout::Layout;
use super::lock::{self};
use super::manifest::{BaseOverrides, Family};
use super::plan::{self, Plan, PlanOptions};
use super::progress::Progress;
use super::python::{self, PythonLockReport};
use super::render::{self, Rendered, Templates, WriteReport};
use super::tools::{Resolver, SearchPath};
use super::{bake as bakefile, context, dates};

/// Loads and validates the manifest, lock and templates. Every error is
/// invalid input.
pub fn load(layout: &Layout, overrides: &BaseOverrides) -> Result<(Family, Templates), Error> {
    let family = Family::load(layout, overrides).map_err(Error::invalid)?;
    // The Python requirements' placeholders are manifest values like the
    // templates' ones: an undefined one is an error for every command.
    python::specs(&family).map_err(Error::invalid)?;
    let templates = Templates::load(&layout.templates()).map_err(Error::invalid)?;
    Ok((family, templates))
}

/// Renders a loaded family in memory: what `render_to` writes and `check`
/// compares. Errors are template errors (invalid input).
pub fn render_family(family: &Family, templates: &Templates) -> Result<Rendered, Error> {
    render::render(family, templates).map_err(Error::invalid)
}

/// `labkit render`: renders the family and writes it into `out` (default
/// `images/generated/`). A base override changes the Dockerfiles, so it may
/// only be written somewhere else: the committed tree always matches the
/// manifest.
pub fn render_to(layout: &Layout, out: Option<&Path>, overrides: &BaseOverrides) -> Result<WriteReport, Error> {
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| layout.generated());
    if !overrides.is_empty() && same_dir(&out, &layout.generated()) {
        return Err(UsageError(
            "--base-override changes the Dockerfiles, so it needs --out DIR outside images/generated \
             (the committed tree always matches the manifest)"
                .into(),
        )
        .into());
    }
    let (family, templates) = load(layout, overrides)?;
    let rendered = render_family(&family, &templates)?;
    Ok(render::write(&out, &rendered)?)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// `labkit check`: drift between a fresh in-memory render and images/generated.
pub fn check(layout: &Layout) -> Result<CheckReport, Error> {
    let (family, templates) = load(layout, &BaseOverrides::new())?;
    let rendered = render_family(&family, &templates)?;
    let mut drift = check::compare(&layout.generated(), "images/generated/", &rendered);
    drift.extend(python::check(layout, &family).map_err(Error::invalid)?.into_iter().map(Drift::Lock));
    Ok(CheckReport { drift, warnings: check::warnings(&family, &dates::today_utc()) })
}

/// `labkit plan`: the build plan for the selection.
pub fn plan(layout: &Layout, overrides: &BaseOverrides, opts: &PlanOptions) -> Result<Plan, Error> {
    let (family, templates) = load(layout, overrides)?;
    let rendered = render_family(&family, &templates)?;
    let shipped = plan::shipped_files_hash(&context::shipped_files(layout).map_err(UsageError)?, layout);
    Ok(plan::make(&family, &rendered, &shipped, opts).map_err(UsageError)?)
}

/// Fails, listing every drifted file, unless the committed Dockerfiles are
/// exactly what the manifest and templates render (they are what an engine
/// or bake reads). `build` and `bake` both call it before doing anything.
pub fn require_up_to_date(layout: &Layout) -> Result<(), Error> {
    let report = check(layout)?;
    if !report.is_clean() {
        let list: Vec<String> = report.drift.iter().map(|d| format!("  {d}")).collect();
        return Err(Error::msg(format!(
            "images/generated does not match the manifest and templates; run `labkit render` first:\n{}",
            list.join("\n")
        )));
    }
    Ok(())
}

/// Where `labkit bake` puts the bake file.
#[derive(Debug, Clone)]
pub enum BakeOutput {
    /// Returned in the report, for standard output.
    Stdout,
    /// Written to this file (directories created).
    File(PathBuf),
}

/// What `labkit bake` produced.
#[derive(Debug)]
pub struct BakeReport {
    /// The bake file's JSON (no final newline).
    pub json: String,
    /// Where it was written (None: standard output's business).
    pub written: Option<PathBuf>,
    pub targets: usize,
}

/// `labkit bake`: checks the committed Dockerfiles are current (the bake
/// file points at them), stages the context at `stage` (context directory,
/// labinit) unless None, and writes the fully expanded bake file.
pub fn bake(
    layout: &Layout,
    plan: &Plan,
    stage: Option<(&Path, Option<&Path>)>,
    output: &BakeOutput,
) -> Result<BakeReport, Error> {
    require_up_to_date(layout)?;
    if let Some((ctx, labinit)) = stage {
        context::stage(layout, ctx, labinit)?;
    }
    let json = bakefile::to_json(&bakefile::bake(plan, &layout.root));
    let written = match output {
        BakeOutput::Stdout => None,
        BakeOutput::File(path) => {
            if let Some(d) = path.parent() {
                std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            }
            std::fs::write(path, json.clone() + "\n").with_context(|| format!("cannot write {}", path.display()))?;
            Some(path.clone())
        }
    };
    Ok(BakeReport { json, written, targets: plan.targets.len() })
}

/// `labkit build`: refuses to start when the committed Dockerfiles drift
/// from the manifest (they are what the engine reads), checks every engine
/// command, stages the context, then runs the plan (progress to `progress`).
pub fn build(
    layout: &Layout,
    plan: &Plan,
    engine: &Engine,
    opts: &BuildOptions,
    progress: &mut dyn Progress,
) -> Result<Summary, Error> {
    require_up_to_date(layout)?;
    build::prepare(plan, engine, opts)?;
    context::stage(layout, &opts.context, opts.labinit.as_deref())?;
    build::run(&layout.root, plan, engine, opts, progress)
}

/// What `labkit test` runs.
#[derive(Debug, Clone, Default)]
pub struct TestRequest {
    /// Only these images (each with its ancestors' tests) / variants; empty: all.
    pub images: Vec<String>,
    pub variants: Vec<String>,
    /// `--engine` (else as for [`Engine::detect`]).
    pub engine: Option<String>,
    /// Where docker and podman are looked for.
    pub path: SearchPath,
    pub options: TestOptions,
    pub log_dir: PathBuf,
}

/// `labkit test`: the image tests of the selection, one container each
/// (one line per test to `progress`).
pub fn test(layout: &Layout, req: &TestRequest, progress: &mut dyn Progress) -> Result<TestSummary, Error> {
    let (family, _) = load(layout, &BaseOverrides::new())?;
    for i in &req.images {
        if !family.manifest.images.contains_key(i) {
            return Err(UsageError(format!("--image {i}: no such image")).into());
        }
    }
    for v in &req.variants {
        if !family.manifest.variants.contains_key(v) {
            return Err(UsageError(format!("--variant {v}: no such variant")).into());
        }
    }
    let tests = imagetest::discover(&family, &layout.tests(), &req.images, &req.variants);
    if tests.is_empty() {
        return Err(UsageError("no image tests selected (images/tests/<image>/*.sh|*.py)".into()).into());
    }
    let engine = Engine::detect(req.engine.as_deref(), &req.path)?;
    Ok(imagetest::run(layout, &tests, &engine, &req.options, &req.log_dir, progress)?)
}

/// What `labkit lock` refreshes.
#[derive(Debug, Clone, Default)]
pub struct LockOptions {
    /// Only the Python locks / only the base digests (neither: both).
    pub python_only: bool,
    pub bases_only: bool,
    pub resolver: Option<Resolver>,
    /// Variants whose Python locks are refreshed (empty: all).
    pub variants: Vec<String>,
    pub uv: Option<PathBuf>,
    /// Where uv, skopeo and docker are looked for.
    pub path: SearchPath,
}

/// What `labkit lock` did, and what failed after the rest ran.
#[derive(Debug, Default)]
pub struct LockReport {
    /// The Python locks (None: not refreshed).
    pub python: Option<PythonLockReport>,
    /// The base digests (None: not refreshed), and whether
    /// images/lock.toml was written.
    pub bases: Option<(lock::LockReport, bool)>,
    /// A part that failed; the other part ran (and is reported) anyway.
    pub failure: Option<Error>,
}

impl LockReport {
    /// The report's lines for standard output, in the order things happened.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(r) = self.python.as_ref().filter(|r| !(r.written.is_empty() && r.unchanged.is_empty())) {
            for p in &r.written {
                out.push(format!("lock: wrote {p}"));
            }
            out.push(format!("lock: Python locks: {} written, {} unchanged", r.written.len(), r.unchanged.len()));
        }
        if let Some((report, written)) = &self.bases {
            for (r, old, new) in &report.changed {
                match old {
                    Some(o) => out.push(format!("lock: {r}: {o} -> {new}")),
                    None => out.push(format!("lock: {r}: {new}")),
                }
            }
            for r in &report.removed {
                out.push(format!("lock: {r}: removed (no variant uses it)"));
            }
            if report.changed.is_empty() && report.removed.is_empty() {
                out.push(format!("lock: all {} base(s) unchanged", report.unchanged.len()));
            } else if *written {
                out.push("lock: wrote images/lock.toml; now run `labkit render` to pin the Dockerfiles".into());
            }
        }
        out
    }
}

/// `labkit lock`: the Python locks of every (selected) variant, then each
/// variant's base digest in images/lock.toml. Invalid input stops before
/// anything; a failure of one part leaves its files unchanged and is
/// reported in [`LockReport::failure`] after the other part ran.
pub fn lock(layout: &Layout, opts: &LockOptions, progress: &mut dyn Progress) -> Result<LockReport, Error> {
    let (family, _) = load(layout, &BaseOverrides::new())?;
    let mut report = LockReport::default();
    let mut errors: Vec<Error> = Vec::new();
    if !opts.bases_only {
        match python::lock(layout, &family, opts.uv.as_deref(), &opts.path, &opts.variants, progress) {
            Ok(r) => report.python = Some(r),
            Err(e) if e.kind() == ErrorKind::Invalid => return Err(e),
            Err(e) => errors.push(e.context("Python locks not refreshed")),
        }
    }
    if !opts.python_only {
        if let Err(e) = lock_bases(layout, &family, opts.resolver, &opts.path, &mut report) {
            errors.push(e);
        }
    }
    report.failure = match errors.len() {
        0 => None,
        1 => Some(errors.remove(0)),
        _ => Some(Error::msg(format!("{:#}\n{:#}", errors[0], errors[1]))),
    };
    Ok(report)
}

fn lock_bases(
    layout: &Layout,
    family: &Family,
    resolver: Option<Resolver>,
    path: &SearchPath,
    report: &mut LockReport,
) -> Result<(), Error> {
    let mut refs: Vec<String> = family.manifest.variants.values().map(|v| v.base.clone()).collect();
    refs.sort();
    refs.dedup();
    let (new, bases) = lock::refresh(&family.lock, &refs, &Resolver::detect(resolver, path))?;
    let changed = !(bases.changed.is_empty() && bases.removed.is_empty());
    report.bases = Some((bases, false));
    if changed {
        new.save(&layout.lock())?;
        report.bases.as_mut().expect("just set").1 = true;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bases(changed: &[(&str, Option<&str>, &str)], unchanged: &[&str], removed: &[&str]) -> lock::LockReport {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        lock::LockReport {
            changed: changed.iter().map(|(r, o, n)| (r.to_string(), o.map(str::to_string), n.to_string())).collect(),
            unchanged: s(unchanged),
            removed: s(removed),
        }
    }

    #[test]
    fn lock_report_lines_follow_what_happened() {
        // Nothing to lock in Python, every base unchanged.
        let r = LockReport {
            python: Some(PythonLockReport::default()),
            bases: Some((bases(&[], &["a.io/x:1", "a.io/y:2"], &[]), false)),
            failure: None,
        };
        assert_eq!(r.lines(), ["lock: all 2 base(s) unchanged"]);
        // Locks written, a base moved and one dropped, the lock file written.
        let py =
            PythonLockReport { written: vec!["images/generated/b/cpu/requirements.lock".into()], unchanged: vec![] };
        let r = LockReport {
            python: Some(py),
            bases: Some((bases(&[("a.io/x:1", Some("sha256:01"), "sha256:02")], &[], &["a.io/old:1"]), true)),
            failure: None,
        };
        assert_eq!(
            r.lines(),
            [
                "lock: wrote images/generated/b/cpu/requirements.lock",
                "lock: Python locks: 1 written, 0 unchanged",
                "lock: a.io/x:1: sha256:01 -> sha256:02",
                "lock: a.io/old:1: removed (no variant uses it)",
                "lock: wrote images/lock.toml; now run `labkit render` to pin the Dockerfiles",
            ]
        );
        // Negative control: a lock file that was not written is not said to be.
        let r = LockReport {
            python: None,
            bases: Some((bases(&[("a.io/n:1", None, "sha256:03")], &[], &[]), false)),
            failure: None,
        };
        assert_eq!(r.lines(), ["lock: a.io/n:1: sha256:03"]);
    }
}
