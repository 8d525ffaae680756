//! `labkit build`: runs a [`Plan`] with docker or podman — siblings in
//! parallel up to `--jobs`, dependents skipped when a parent fails, one log
//! file per target, a progress line per event, a summary at the end, and
//! `--push` only once every target built, so the registry never holds a
//! half-updated family.
//!
//! Decisions are pure and unit-tested ([`Scheduler`], [`engine_args`]); the
//! edge — staging the context, spawning the engine, writing logs — is thin.
//! The real engine run is the end-to-end test's business; here a fake engine
//! executable stands in.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::plan::{Plan, PlanParent, PlannedTarget};
use super::Layout;

/// First executable named `name` on PATH (or `name` itself if it is a path).
pub fn on_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Docker,
    Podman,
}

#[derive(Debug, Clone)]
pub struct Engine {
    pub flavor: Flavor,
    pub program: PathBuf,
}

impl Engine {
    /// `--engine` value, else `LABKIT_ENGINE`, else docker, else podman. A
    /// value may be a path; its file name says which flavour it is.
    pub fn detect(requested: Option<&str>) -> Result<Engine> {
        let requested =
            requested.map(str::to_string).or_else(|| std::env::var("LABKIT_ENGINE").ok().filter(|s| !s.is_empty()));
        if let Some(r) = requested {
            let name = Path::new(&r).file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            let flavor = if name.contains("podman") {
                Flavor::Podman
            } else if name.contains("docker") {
                Flavor::Docker
            } else {
                bail!(super::UsageError(format!("--engine {r}: not docker or podman (a path must name one of them)")));
            };
            let program = on_path(&r).with_context(|| format!("--engine {r}: not found"))?;
            return Ok(Engine { flavor, program });
        }
        for (name, flavor) in [("docker", Flavor::Docker), ("podman", Flavor::Podman)] {
            if let Some(program) = on_path(name) {
                return Ok(Engine { flavor, program });
            }
        }
        bail!("neither docker nor podman is on PATH; install one or pass --engine PATH")
    }

    pub fn name(&self) -> &'static str {
        match self.flavor {
            Flavor::Docker => "docker",
            Flavor::Podman => "podman",
        }
    }
}

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub jobs: usize,
    pub push: bool,
    pub network: Option<String>,
    /// Build volumes (podman `-v`), e.g. the host CA bundle.
    pub volumes: Vec<String>,
    pub labinit: Option<PathBuf>,
    pub log_dir: PathBuf,
    pub context: PathBuf,
}

/// The engine's argv (after the program) for one target. Pure.
pub fn engine_args(engine: &Engine, t: &PlannedTarget, opts: &BuildOptions) -> Result<Vec<String>> {
    if !opts.volumes.is_empty() && engine.flavor == Flavor::Docker {
        bail!(super::UsageError(
            "build volumes (-v) are a podman feature; `docker build` has none. Use --engine podman, or drop -v".into()
        ));
    }
    let mut a = vec!["build".to_string(), "-f".into(), t.dockerfile.clone()];
    for tag in &t.tags {
        a.push("-t".into());
        a.push(tag.clone());
    }
    for (k, v) in &t.args {
        a.push("--build-arg".into());
        a.push(format!("{k}={v}"));
    }
    if engine.flavor == Flavor::Podman {
        // Podman (4.3) leaves build-argument values out of the cache key of a
        // LABEL step, so a rebuild can keep the previous build's date and
        // revision labels. --label is always applied on top.
        for (k, v) in &t.args {
            if let Some(label) = per_build_label(k) {
                a.push("--label".into());
                a.push(format!("{label}={v}"));
            }
        }
    }
    if let Some(n) = &opts.network {
        a.push(format!("--network={n}"));
    }
    for v in &opts.volumes {
        a.push("-v".into());
        a.push(v.clone());
    }
    a.push(t.context.clone());
    Ok(a)
}

/// The OCI label a per-build argument sets in every template.
fn per_build_label(arg: &str) -> Option<&'static str> {
    match arg {
        "BUILD_DATE" => Some("org.opencontainers.image.created"),
        "VCS_REF" => Some("org.opencontainers.image.revision"),
        "BASE_NAME" => Some("org.opencontainers.image.base.name"),
        "BASE_DIGEST" => Some("org.opencontainers.image.base.digest"),
        _ => None,
    }
}

/// Copies what lab-base ships into the build context: labinit (mode 0755),
/// setup_steps/ and services/ (empty directories when the repo has none).
/// Only those three entries of `ctx` are replaced; nothing else is touched.
pub fn stage_context(layout: &Layout, ctx: &Path, labinit: Option<&Path>) -> Result<()> {
    let ctx = if ctx.is_absolute() { ctx.to_path_buf() } else { layout.root.join(ctx) };
    let src = labinit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("LABKIT_LABINIT").map(PathBuf::from))
        .unwrap_or_else(|| layout.root.join("dist/labinit"));
    if !src.is_file() {
        bail!("{} not found: build it with `make labinit`, or pass --labinit PATH", src.display());
    }
    std::fs::create_dir_all(&ctx).with_context(|| format!("cannot create {}", ctx.display()))?;
    let dest = ctx.join("labinit");
    let _ = std::fs::remove_file(&dest);
    std::fs::copy(&src, &dest).with_context(|| format!("cannot copy {} to {}", src.display(), dest.display()))?;
    set_mode(&dest, 0o755)?;
    let shipped = super::plan::shipped_files(layout).map_err(super::UsageError)?;
    for dir in ["setup_steps", "services"] {
        let to = ctx.join(dir);
        if to.exists() {
            std::fs::remove_dir_all(&to).with_context(|| format!("cannot clear {}", to.display()))?;
        }
        std::fs::create_dir_all(&to)?;
    }
    for f in &shipped {
        let to = ctx.join(&f.rel);
        if let Some(p) = to.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::copy(&f.path, &to).with_context(|| format!("cannot copy {} to {}", f.path.display(), to.display()))?;
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Waiting,
    Running,
    Built,
    Failed,
    Skipped,
}

/// Which target may start now. A target starts once its in-plan parent is
/// built; a failure marks every waiting descendant skipped. Pure.
#[derive(Debug, Clone)]
pub struct Scheduler {
    pub names: Vec<String>,
    parent: Vec<Option<usize>>,
    pub state: Vec<State>,
}

impl Scheduler {
    pub fn new(plan: &Plan) -> Scheduler {
        let names: Vec<String> = plan.targets.iter().map(|t| t.name.clone()).collect();
        let parent = plan
            .targets
            .iter()
            .map(|t| match &t.parent {
                PlanParent::Target { target, .. } => names.iter().position(|n| n == target),
                PlanParent::Image { .. } => None,
            })
            .collect();
        let state = vec![State::Waiting; names.len()];
        Scheduler { names, parent, state }
    }

    /// Marks the next startable target running and returns it.
    pub fn next_ready(&mut self) -> Option<usize> {
        let i = (0..self.names.len()).find(|&i| {
            self.state[i] == State::Waiting && self.parent[i].is_none_or(|p| self.state[p] == State::Built)
        })?;
        self.state[i] = State::Running;
        Some(i)
    }

    /// Records a result; returns the targets newly skipped because of it.
    pub fn finish(&mut self, i: usize, ok: bool) -> Vec<usize> {
        self.state[i] = if ok { State::Built } else { State::Failed };
        let mut skipped = Vec::new();
        if !ok {
            // Targets are in parent-first order, so one pass covers grandchildren.
            for j in 0..self.names.len() {
                if let Some(p) = self.parent[j] {
                    let gone = p == i || skipped.contains(&p);
                    if gone && self.state[j] == State::Waiting {
                        self.state[j] = State::Skipped;
                        skipped.push(j);
                    }
                }
            }
        }
        skipped
    }

    pub fn count(&self, s: State) -> usize {
        self.state.iter().filter(|x| **x == s).count()
    }

    pub fn finished(&self) -> bool {
        self.count(State::Waiting) == 0 && self.count(State::Running) == 0
    }

    pub fn parent_name(&self, i: usize) -> Option<&str> {
        self.parent[i].map(|p| self.names[p].as_str())
    }
}

/// The outcome of a build run.
#[derive(Debug)]
pub struct Summary {
    pub states: Vec<(String, State, Option<Duration>)>,
    pub pushed: bool,
    pub push_failed: bool,
    pub elapsed: Duration,
}

impl Summary {
    pub fn success(&self) -> bool {
        self.states.iter().all(|(_, s, _)| *s == State::Built) && !self.push_failed
    }
}

struct Done {
    index: usize,
    ok: bool,
    took: Duration,
    note: String,
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Last non-empty line of a log, for the failure line.
fn last_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.lines().rev().find(|l| !l.trim().is_empty()).map(str::to_string))
        .unwrap_or_default()
}

fn run_logged(program: &Path, args: &[String], root: &Path, log: &Path, append: bool) -> Result<bool> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(log)
        .with_context(|| format!("cannot open log {}", log.display()))?;
    writeln!(f, "$ {} {}", program.display(), args.join(" "))?;
    let err: File = f.try_clone()?;
    let status = Command::new(program)
        .args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(f)
        .stderr(err)
        .status()
        .with_context(|| format!("cannot run {}", program.display()))?;
    Ok(status.success())
}

/// Fails, listing every drifted file, unless the committed Dockerfiles are
/// exactly what the manifest and templates render (they are what an engine
/// or bake reads). `build` and `bake` both call it before doing anything.
pub fn require_up_to_date(layout: &Layout) -> Result<()> {
    let report = super::check(layout)?;
    if !report.is_clean() {
        let list: Vec<String> = report.drift.iter().map(|d| format!("  {d}")).collect();
        bail!(
            "images/generated does not match the manifest and templates; run `labkit render` first:\n{}",
            list.join("\n")
        );
    }
    Ok(())
}

/// Builds the plan. Refuses to start when the committed Dockerfiles drift
/// from the manifest (they are what the engine reads).
pub fn build(layout: &Layout, plan: &Plan, engine: &Engine, opts: &BuildOptions) -> Result<Summary> {
    require_up_to_date(layout)?;
    // Validate every command before anything runs.
    let argv: Vec<Vec<String>> = plan.targets.iter().map(|t| engine_args(engine, t, opts)).collect::<Result<_>>()?;
    stage_context(layout, &opts.context, opts.labinit.as_deref())?;
    std::fs::create_dir_all(&opts.log_dir).with_context(|| format!("cannot create {}", opts.log_dir.display()))?;

    let jobs = opts.jobs.max(1);
    let total = plan.targets.len();
    let start = Instant::now();
    let mut sched = Scheduler::new(plan);
    let mut took: Vec<Option<Duration>> = vec![None; total];
    let log_of = |i: usize| opts.log_dir.join(format!("{}.log", plan.targets[i].name));
    let status = |s: &Scheduler| {
        format!(
            "[done {}/{total}, running {}, failed {}, skipped {}]",
            s.count(State::Built),
            s.count(State::Running),
            s.count(State::Failed),
            s.count(State::Skipped)
        )
    };
    eprintln!(
        "build: {total} target(s) in {} level(s) with {} ({}), {jobs} at a time; logs in {}",
        plan.levels.len(),
        engine.name(),
        engine.program.display(),
        opts.log_dir.display()
    );

    let (tx, rx) = mpsc::channel::<Done>();
    loop {
        while sched.count(State::Running) < jobs {
            let Some(i) = sched.next_ready() else { break };
            let (tx, program, args, root, log) =
                (tx.clone(), engine.program.clone(), argv[i].clone(), layout.root.clone(), log_of(i));
            eprintln!("[{:>7}] {}: started {}", secs(start.elapsed()), sched.names[i], status(&sched));
            std::thread::spawn(move || {
                let t0 = Instant::now();
                let (ok, note) = match run_logged(&program, &args, &root, &log, false) {
                    Ok(ok) => (ok, String::new()),
                    Err(e) => (false, format!("{e:#}")),
                };
                let _ = tx.send(Done { index: i, ok, took: t0.elapsed(), note });
            });
        }
        if sched.finished() {
            break;
        }
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(d) => {
                took[d.index] = Some(d.took);
                let skipped = sched.finish(d.index, d.ok);
                let name = &sched.names[d.index];
                if d.ok {
                    eprintln!("[{:>7}] {name}: built in {} {}", secs(start.elapsed()), secs(d.took), status(&sched));
                } else {
                    let why = if d.note.is_empty() { last_line(&log_of(d.index)) } else { d.note };
                    eprintln!(
                        "[{:>7}] {name}: FAILED after {} (log {}): {why} {}",
                        secs(start.elapsed()),
                        secs(d.took),
                        log_of(d.index).display(),
                        status(&sched)
                    );
                    for j in skipped {
                        eprintln!("[{:>7}] {}: skipped, its parent failed", secs(start.elapsed()), sched.names[j]);
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let running: Vec<&str> =
                    (0..total).filter(|&i| sched.state[i] == State::Running).map(|i| sched.names[i].as_str()).collect();
                eprintln!("[{:>7}] still building: {} {}", secs(start.elapsed()), running.join(", "), status(&sched));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("build workers vanished"),
        }
    }

    let mut summary = Summary {
        states: (0..total).map(|i| (sched.names[i].clone(), sched.state[i], took[i])).collect(),
        pushed: false,
        push_failed: false,
        elapsed: start.elapsed(),
    };
    eprintln!("\nbuild summary ({} elapsed):", secs(summary.elapsed));
    for (i, (name, state, d)) in summary.states.iter().enumerate() {
        let what = match state {
            State::Built => format!("built    {name:<28} {:>8}", d.map(secs).unwrap_or_default()),
            State::Failed => {
                format!("FAILED   {name:<28} {:>8}  log {}", d.map(secs).unwrap_or_default(), log_of(i).display())
            }
            State::Skipped => {
                format!("skipped  {name:<28} {:>8}  parent {} did not build", "", sched.parent_name(i).unwrap_or("?"))
            }
            State::Waiting | State::Running => format!("unknown  {name}"),
        };
        eprintln!("  {what}");
    }
    eprintln!(
        "{} built, {} failed, {} skipped",
        sched.count(State::Built),
        sched.count(State::Failed),
        sched.count(State::Skipped)
    );

    if opts.push {
        if !summary.success() {
            eprintln!("push: not pushing anything, because not every target built; the registry is unchanged");
        } else {
            summary.pushed = true;
            'push: for (i, t) in plan.targets.iter().enumerate() {
                for tag in &t.tags {
                    let args = vec!["push".to_string(), tag.clone()];
                    let ok = run_logged(&engine.program, &args, &layout.root, &log_of(i), true)?;
                    if ok {
                        eprintln!("push: {tag}");
                    } else {
                        eprintln!(
                            "push: FAILED for {tag} (log {}); stopping. Tags pushed so far are listed above",
                            log_of(i).display()
                        );
                        summary.push_failed = true;
                        break 'push;
                    }
                }
            }
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn target(name: &str, parent: Option<&str>, level: usize) -> PlannedTarget {
        PlannedTarget {
            name: name.into(),
            image: name.into(),
            variant: "v".into(),
            level,
            dockerfile: format!("images/generated/{name}/v/Dockerfile"),
            context: "ctx".into(),
            parent: match parent {
                Some(p) => PlanParent::Target { target: p.into(), reference: format!("r/{p}:v") },
                None => PlanParent::Image { reference: "docker.io/library/ubuntu:24.04".into(), digest: None },
            },
            args: BTreeMap::from([("BASE_IMAGE".to_string(), "x".to_string())]),
            tags: vec![format!("r/{name}:v")],
            platforms: vec![],
            inputs_sha256: String::new(),
            eol: None,
        }
    }

    fn plan(ts: Vec<PlannedTarget>) -> Plan {
        Plan { schema: 1, generator: String::new(), levels: vec![], targets: ts }
    }

    #[test]
    fn scheduler_waits_for_parents_and_skips_descendants() {
        let p = plan(vec![
            target("a", None, 0),
            target("b", None, 0),
            target("a1", Some("a"), 1),
            target("a11", Some("a1"), 2),
            target("b1", Some("b"), 1),
        ]);
        let mut s = Scheduler::new(&p);
        assert_eq!(s.next_ready(), Some(0));
        assert_eq!(s.next_ready(), Some(1));
        assert_eq!(s.next_ready(), None, "children wait for their parents");
        let skipped = s.finish(0, false);
        assert_eq!(skipped, vec![2, 3], "a's child and grandchild are skipped");
        s.finish(1, true);
        assert_eq!(s.next_ready(), Some(4));
        s.finish(4, true);
        assert!(s.finished());
        assert_eq!(s.count(State::Built), 2);
        assert_eq!(s.count(State::Skipped), 2);
    }

    #[test]
    fn engine_args_shape() {
        let e = Engine { flavor: Flavor::Podman, program: "podman".into() };
        let opts = BuildOptions {
            jobs: 1,
            push: false,
            network: Some("host".into()),
            volumes: vec!["/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro".into()],
            labinit: None,
            log_dir: "l".into(),
            context: "ctx".into(),
        };
        let a = engine_args(&e, &target("a", None, 0), &opts).unwrap();
        assert_eq!(a[..3], ["build", "-f", "images/generated/a/v/Dockerfile"]);
        assert!(a.windows(2).any(|w| w == ["-t", "r/a:v"]));
        assert!(a.windows(2).any(|w| w == ["--build-arg", "BASE_IMAGE=x"]));
        assert!(a.contains(&"--network=host".to_string()));
        assert!(a.windows(2).any(|w| w[0] == "-v" && w[1].ends_with(":ro")));
        assert_eq!(a.last().unwrap(), "ctx");

        let docker = Engine { flavor: Flavor::Docker, program: "docker".into() };
        let err = engine_args(&docker, &target("a", None, 0), &opts).unwrap_err();
        assert!(err.to_string().contains("podman"));
    }

    #[test]
    fn podman_gets_per_build_labels_docker_does_not_need_them() {
        let mut t = target("a", None, 0);
        t.args.insert("VCS_REF".into(), "abc123".into());
        t.args.insert("BUILD_DATE".into(), "2026-11-29".into());
        let opts = BuildOptions {
            jobs: 1,
            push: false,
            network: None,
            volumes: vec![],
            labinit: None,
            log_dir: "l".into(),
            context: "ctx".into(),
        };
        let podman = Engine { flavor: Flavor::Podman, program: "podman".into() };
        let a = engine_args(&podman, &t, &opts).unwrap();
        assert!(a.windows(2).any(|w| w == ["--label", "org.opencontainers.image.revision=abc123"]));
        assert!(a.windows(2).any(|w| w == ["--label", "org.opencontainers.image.created=2026-11-29"]));
        let docker = Engine { flavor: Flavor::Docker, program: "docker".into() };
        assert!(!engine_args(&docker, &t, &opts).unwrap().contains(&"--label".to_string()));
    }
}
