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
    /// Where to write the JSON summary (`--summary-json`).
    pub summary_json: Option<PathBuf>,
}

/// The engine's argv (after the program) for one target. Pure.
///
/// `parent_id` is the image ID the engine reported for this target's parent
/// when it was built earlier in this run: the child is built `FROM` exactly
/// that image, never from whatever the parent's tag points to by then. A
/// parent taken from a registry is pulled fresh (`--pull`), so a stale local
/// copy of a moving tag is never used. The engine writes the built image's
/// ID to `iidfile`.
pub fn engine_args(
    engine: &Engine,
    t: &PlannedTarget,
    opts: &BuildOptions,
    parent_id: Option<&str>,
    iidfile: &Path,
) -> Result<Vec<String>> {
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
        let v = match (k.as_str(), parent_id) {
            ("BASE_IMAGE", Some(id)) => id,
            _ => v.as_str(),
        };
        a.push("--build-arg".into());
        a.push(format!("{k}={v}"));
    }
    if let PlanParent::Image { pull: true, .. } = t.parent {
        a.push(match engine.flavor {
            Flavor::Docker => "--pull".into(),
            Flavor::Podman => "--pull=always".into(),
        });
    }
    a.push(format!("--iidfile={}", iidfile.display()));
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

/// The builder a `docker build` would use, from `docker buildx inspect`:
/// `(name, driver)`. Pure parser of that command's text.
pub fn parse_builder(inspect: &str) -> Option<(String, String)> {
    let field = |k: &str| {
        inspect.lines().find_map(|l| l.trim().strip_prefix(k).map(|v| v.trim().to_string())).filter(|v| !v.is_empty())
    };
    Some((field("Name:").unwrap_or_default(), field("Driver:")?))
}

/// Environment for every `docker` call of a build, after checking the
/// builder. A buildx builder with another driver than `docker` (e.g.
/// `docker-container`) runs BuildKit in a container that resolves `FROM`
/// from the registry, not from images this run just built (buildx #2348),
/// and keeps its results out of the local image store that `docker push`
/// reads. labkit therefore builds with the docker context's own builder
/// (driver `docker`, named after the context) and says so. Podman has no
/// builders; docker without buildx uses the daemon's builder anyway.
pub fn builder_env(engine: &Engine) -> Vec<(String, String)> {
    if engine.flavor != Flavor::Docker {
        return Vec::new();
    }
    let run = |args: &[&str]| -> Option<String> {
        let o = Command::new(&engine.program).args(args).stdin(Stdio::null()).output().ok()?;
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).to_string())
    };
    let Some((name, driver)) = run(&["buildx", "inspect"]).as_deref().and_then(parse_builder) else {
        return Vec::new();
    };
    if driver == "docker" {
        return Vec::new();
    }
    let context = run(&["context", "show"]).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let own = context.unwrap_or_else(|| "default".into());
    eprintln!(
        "build: the current buildx builder `{name}` uses the `{driver}` driver, which resolves FROM from the \
         registry instead of the images built in this run and does not load its results; building with the \
         docker context's own builder `{own}` (BUILDX_BUILDER={own}). To use `{name}` for the whole family, \
         use `labkit bake` and `docker buildx bake`, which link parents through target contexts"
    );
    vec![("BUILDX_BUILDER".into(), own)]
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

/// Copies what the images ship into the build context: labinit (mode 0755),
/// setup_steps/ and services/ (lab-base; empty directories when the repo has
/// none), files/ from images/files/ (e.g. lab-pytorch's Jupyter
/// configuration), and every target's Python lock as
/// `python/<image>/<variant>/requirements.lock`. Only those entries of `ctx`
/// are replaced; nothing else is touched.
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
    for (_, to) in SHIPPED_DIRS {
        let to = ctx.join(to);
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
        // Never group- or world-writable, whatever the checkout's umask:
        // labinit refuses steps and services others can write.
        set_mode(&to, if f.exec { 0o755 } else { 0o644 })?;
    }
    stage_python_locks(layout, &ctx)
}

/// `images/generated/<image>/<variant>/requirements.lock` -> `ctx/python/…`.
fn stage_python_locks(layout: &Layout, ctx: &Path) -> Result<()> {
    let to = ctx.join("python");
    if to.exists() {
        std::fs::remove_dir_all(&to).with_context(|| format!("cannot clear {}", to.display()))?;
    }
    std::fs::create_dir_all(&to).with_context(|| format!("cannot create {}", to.display()))?;
    let from = layout.generated();
    for rel in super::render::list_files(&from) {
        if !rel.ends_with(&format!("/{}", super::python::LOCK_FILE)) {
            continue;
        }
        let (a, b) = (from.join(&rel), to.join(&rel));
        if let Some(p) = b.parent() {
            std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
        }
        std::fs::copy(&a, &b).with_context(|| format!("cannot copy {} to {}", a.display(), b.display()))?;
    }
    Ok(())
}

/// Repository directories shipped in every build context, and their names
/// there.
pub const SHIPPED_DIRS: [(&str, &str); 3] =
    [("setup_steps", "setup_steps"), ("services", "services"), ("images/files", "files")];

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
    pub parent: Vec<Option<usize>>,
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
    /// Image ID each built target got (None when it did not build).
    pub ids: Vec<Option<String>>,
    pub logs: Vec<PathBuf>,
}

impl Summary {
    /// `--summary-json`: `{"schema":1,"success":…,"elapsed_seconds":…,
    /// "pushed":…,"push_failed":…,"targets":[{"name","state","seconds",
    /// "image_id","log"}]}`; state is built, failed or skipped.
    pub fn to_json(&self) -> String {
        let targets: Vec<serde_json::Value> = self
            .states
            .iter()
            .enumerate()
            .map(|(i, (name, state, d))| {
                serde_json::json!({
                    "name": name,
                    "state": match state {
                        State::Built => "built",
                        State::Failed => "failed",
                        State::Skipped => "skipped",
                        State::Waiting | State::Running => "unknown",
                    },
                    "seconds": d.map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
                    "image_id": self.ids.get(i).cloned().flatten(),
                    "log": self.logs.get(i).map(|p| p.display().to_string()),
                })
            })
            .collect();
        serde_json::to_string_pretty(&serde_json::json!({
            "schema": 1,
            "success": self.success(),
            "elapsed_seconds": (self.elapsed.as_secs_f64() * 10.0).round() / 10.0,
            "pushed": self.pushed,
            "push_failed": self.push_failed,
            "targets": targets,
        }))
        .expect("summary serialises")
    }

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

/// How much of a failed target's log the build prints.
pub const FAILED_LOG_LINES: usize = 20;

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The last `n` non-empty lines of a log, for a failed target.
pub fn tail_lines(text: &str, n: usize) -> Vec<String> {
    let mut v: Vec<String> = text.lines().rev().filter(|l| !l.trim().is_empty()).take(n).map(str::to_string).collect();
    v.reverse();
    v
}

/// The step an engine is at, from its log: docker's `Step 3/12 : RUN …`,
/// podman's `STEP 3/12: RUN …`, or BuildKit's `#7 [3/12] RUN …`. Pure.
pub fn current_step(log: &str) -> Option<String> {
    log.lines().rev().find_map(|l| {
        let l = l.trim();
        let buildkit = l.starts_with('#') && l.split_whitespace().nth(1).is_some_and(|w| w.starts_with('['));
        (l.starts_with("Step ") || l.starts_with("STEP ") || buildkit)
            .then(|| l.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(100).collect())
    })
}

fn run_logged(
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    root: &Path,
    log: &Path,
    append: bool,
) -> Result<bool> {
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
        .envs(env.iter().map(|(k, v)| (k, v)))
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
    std::fs::create_dir_all(&opts.log_dir).with_context(|| format!("cannot create {}", opts.log_dir.display()))?;
    let log_of = |i: usize| opts.log_dir.join(format!("{}.log", plan.targets[i].name));
    let iid_of = |i: usize| opts.log_dir.join(format!("{}.iid", plan.targets[i].name));
    // Validate every command before anything runs (a child's parent ID is
    // filled in when it starts).
    for (i, t) in plan.targets.iter().enumerate() {
        engine_args(engine, t, opts, None, &iid_of(i))?;
    }
    stage_context(layout, &opts.context, opts.labinit.as_deref())?;
    let env = builder_env(engine);

    let jobs = opts.jobs.max(1);
    let total = plan.targets.len();
    let start = Instant::now();
    let mut sched = Scheduler::new(plan);
    let mut took: Vec<Option<Duration>> = vec![None; total];
    let mut ids: Vec<Option<String>> = vec![None; total];
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
            let parent_id = sched.parent[i].and_then(|p| ids[p].clone());
            let _ = std::fs::remove_file(iid_of(i));
            let args = engine_args(engine, &plan.targets[i], opts, parent_id.as_deref(), &iid_of(i))?;
            let (tx, program, env, root, log) =
                (tx.clone(), engine.program.clone(), env.clone(), layout.root.clone(), log_of(i));
            match &parent_id {
                Some(id) => eprintln!(
                    "[{:>7}] {}: started on {} {id} {}",
                    secs(start.elapsed()),
                    sched.names[i],
                    sched.parent_name(i).unwrap_or("?"),
                    status(&sched)
                ),
                None => eprintln!("[{:>7}] {}: started {}", secs(start.elapsed()), sched.names[i], status(&sched)),
            }
            std::thread::spawn(move || {
                let t0 = Instant::now();
                let (ok, note) = match run_logged(&program, &args, &env, &root, &log, false) {
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
            Ok(mut d) => {
                took[d.index] = Some(d.took);
                if d.ok {
                    // The image this run built, as the engine reported it:
                    // what children are built on and what --push checks.
                    match std::fs::read_to_string(iid_of(d.index)).map(|s| s.trim().to_string()) {
                        Ok(id) if !id.is_empty() => ids[d.index] = Some(id),
                        _ => {
                            d.ok = false;
                            d.note = format!(
                                "the engine reported success but wrote no image ID to {}",
                                iid_of(d.index).display()
                            );
                        }
                    }
                }
                let skipped = sched.finish(d.index, d.ok);
                let name = &sched.names[d.index];
                if d.ok {
                    eprintln!(
                        "[{:>7}] {name}: built {} in {} {}",
                        secs(start.elapsed()),
                        ids[d.index].as_deref().unwrap_or_default(),
                        secs(d.took),
                        status(&sched)
                    );
                } else {
                    eprintln!(
                        "[{:>7}] {name}: FAILED after {} (log {}){} {}",
                        secs(start.elapsed()),
                        secs(d.took),
                        log_of(d.index).display(),
                        if d.note.is_empty() { String::new() } else { format!(": {}", d.note) },
                        status(&sched)
                    );
                    let log = std::fs::read_to_string(log_of(d.index)).unwrap_or_default();
                    let tail = tail_lines(&log, FAILED_LOG_LINES);
                    if !tail.is_empty() {
                        eprintln!("  last {} line(s) of {}:", tail.len(), log_of(d.index).display());
                        for l in tail {
                            eprintln!("  | {l}");
                        }
                    }
                    for j in skipped {
                        eprintln!("[{:>7}] {}: skipped, its parent failed", secs(start.elapsed()), sched.names[j]);
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let running: Vec<String> = (0..total)
                    .filter(|&i| sched.state[i] == State::Running)
                    .map(|i| {
                        let log = std::fs::read_to_string(log_of(i)).unwrap_or_default();
                        match current_step(&log) {
                            Some(step) => format!("{} ({step})", sched.names[i]),
                            None => sched.names[i].clone(),
                        }
                    })
                    .collect();
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
        ids: Vec::new(),
        logs: Vec::new(),
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
        } else if let Err(why) = tags_hold_this_run(engine, plan, &ids) {
            eprintln!("push: not pushing anything: {why}; the registry is unchanged");
            summary.push_failed = true;
        } else {
            summary.pushed = true;
            'push: for (i, t) in plan.targets.iter().enumerate() {
                for tag in &t.tags {
                    let args = vec!["push".to_string(), tag.clone()];
                    let ok = run_logged(&engine.program, &args, &env, &layout.root, &log_of(i), true)?;
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
    summary.ids = ids;
    summary.logs = (0..total).map(log_of).collect();
    if let Some(path) = &opts.summary_json {
        std::fs::write(path, summary.to_json() + "\n")
            .with_context(|| format!("cannot write the build summary to {}", path.display()))?;
    }
    Ok(summary)
}

/// Checks, before anything is pushed, that every tag about to be pushed
/// names the image this run built for it: `--push` publishes what this run
/// built or nothing (another build or a `docker tag` may have moved a tag
/// meanwhile).
fn tags_hold_this_run(engine: &Engine, plan: &Plan, ids: &[Option<String>]) -> Result<(), String> {
    let bare = |s: &str| s.trim().trim_start_matches("sha256:").to_string();
    for (i, t) in plan.targets.iter().enumerate() {
        let want = ids[i].as_deref().map(bare).ok_or_else(|| format!("{} has no image ID from this run", t.name))?;
        for tag in &t.tags {
            let out = Command::new(&engine.program)
                .args(["image", "inspect", "--format", "{{.Id}}", tag])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run {} image inspect: {e}", engine.program.display()))?;
            let have = bare(&String::from_utf8_lossy(&out.stdout));
            if !out.status.success() || have != want {
                return Err(format!(
                    "{tag} is image {} but this run built {want} for {}; something retagged it during the build",
                    if have.is_empty() { "(none)".to_string() } else { have },
                    t.name
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Options of a one-job build without network, volumes or push.
    fn plain_opts() -> BuildOptions {
        BuildOptions {
            jobs: 1,
            push: false,
            network: None,
            volumes: vec![],
            labinit: None,
            log_dir: "l".into(),
            context: "ctx".into(),
            summary_json: None,
        }
    }

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
                None => {
                    PlanParent::Image { reference: "docker.io/library/ubuntu:24.04".into(), digest: None, pull: true }
                }
            },
            args: BTreeMap::from([("BASE_IMAGE".to_string(), "x".to_string())]),
            tags: vec![format!("r/{name}:v")],
            platforms: vec![],
            build_inputs_sha256: String::new(),
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
    fn builder_driver_is_parsed() {
        let out = "Name:   ci\nDriver: docker-container\nLast Activity: x\n";
        assert_eq!(parse_builder(out), Some(("ci".into(), "docker-container".into())));
        assert_eq!(parse_builder("Name: default\nDriver: docker\n").unwrap().1, "docker");
        assert_eq!(parse_builder("no builder here"), None);
    }

    #[test]
    fn current_step_and_log_tail() {
        let docker = "Step 1/3 : FROM x\n ---> abc\nStep 2/3 : RUN  apt-get   update\nGet:1 http://…\n";
        assert_eq!(current_step(docker).as_deref(), Some("Step 2/3 : RUN apt-get update"));
        assert_eq!(current_step("STEP 4/9: COPY a b\nok\n").as_deref(), Some("STEP 4/9: COPY a b"));
        assert_eq!(current_step("#7 [3/12] RUN make\n#7 0.5 compiling\n").as_deref(), Some("#7 [3/12] RUN make"));
        assert_eq!(current_step("nothing yet\n"), None);
        let log: String = (1..=30).map(|i| format!("line {i}\n\n")).collect();
        let tail = tail_lines(&log, 20);
        assert_eq!(tail.len(), 20);
        assert_eq!((tail[0].as_str(), tail[19].as_str()), ("line 11", "line 30"));
        assert_eq!(tail_lines("a\n", 20), ["a"]);
    }

    #[test]
    fn pull_and_parent_id() {
        let opts = plain_opts();
        let docker = Engine { flavor: Flavor::Docker, program: "docker".into() };
        let podman = Engine { flavor: Flavor::Podman, program: "podman".into() };
        let base = target("a", None, 0);
        assert!(engine_args(&docker, &base, &opts, None, Path::new("i")).unwrap().contains(&"--pull".to_string()));
        assert!(engine_args(&podman, &base, &opts, None, Path::new("i"))
            .unwrap()
            .contains(&"--pull=always".to_string()));
        let mut local = base.clone();
        local.parent = PlanParent::Image { reference: "localhost/x:1".into(), digest: None, pull: false };
        assert!(!engine_args(&docker, &local, &opts, None, Path::new("i"))
            .unwrap()
            .iter()
            .any(|a| a.starts_with("--pull")));
        let child = target("c", Some("a"), 1);
        let a = engine_args(&docker, &child, &opts, Some("sha256:abc"), Path::new("c.iid")).unwrap();
        assert!(a.windows(2).any(|w| w == ["--build-arg", "BASE_IMAGE=sha256:abc"]), "{a:?}");
        assert!(a.contains(&"--iidfile=c.iid".to_string()));
        assert!(!a.iter().any(|x| x.starts_with("--pull")));
    }

    #[test]
    fn engine_args_shape() {
        let e = Engine { flavor: Flavor::Podman, program: "podman".into() };
        let opts = BuildOptions {
            network: Some("host".into()),
            volumes: vec!["/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro".into()],
            ..plain_opts()
        };
        let a = engine_args(&e, &target("a", None, 0), &opts, None, Path::new("i")).unwrap();
        assert_eq!(a[..3], ["build", "-f", "images/generated/a/v/Dockerfile"]);
        assert!(a.windows(2).any(|w| w == ["-t", "r/a:v"]));
        assert!(a.windows(2).any(|w| w == ["--build-arg", "BASE_IMAGE=x"]));
        assert!(a.contains(&"--network=host".to_string()));
        assert!(a.windows(2).any(|w| w[0] == "-v" && w[1].ends_with(":ro")));
        assert_eq!(a.last().unwrap(), "ctx");

        let docker = Engine { flavor: Flavor::Docker, program: "docker".into() };
        let err = engine_args(&docker, &target("a", None, 0), &opts, None, Path::new("i")).unwrap_err();
        assert!(err.to_string().contains("podman"));
    }

    #[test]
    fn podman_gets_per_build_labels_docker_does_not_need_them() {
        let mut t = target("a", None, 0);
        t.args.insert("VCS_REF".into(), "abc123".into());
        t.args.insert("BUILD_DATE".into(), "2026-11-29".into());
        let opts = plain_opts();
        let podman = Engine { flavor: Flavor::Podman, program: "podman".into() };
        let a = engine_args(&podman, &t, &opts, None, Path::new("i")).unwrap();
        assert!(a.windows(2).any(|w| w == ["--label", "org.opencontainers.image.revision=abc123"]));
        assert!(a.windows(2).any(|w| w == ["--label", "org.opencontainers.image.created=2026-11-29"]));
        let docker = Engine { flavor: Flavor::Docker, program: "docker".into() };
        assert!(!engine_args(&docker, &t, &opts, None, Path::new("i")).unwrap().contains(&"--label".to_string()));
    }
}
