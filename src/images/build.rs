//! `labkit build`: runs a [`Plan`] with docker or podman — siblings in
//! parallel up to `--jobs`, dependents skipped when a parent fails, one log
//! file per target, a progress line per event to the caller's sink, a
//! summary at the end, and `--push` only once every target built, so the
//! registry never holds a half-updated family.
//!
//! Only executes: checking the Dockerfiles are current and staging the
//! context are the command's (`images::build`). Decisions are pure and
//! unit-tested ([`Scheduler`], [`engine_args`]); the edge — spawning the
//! engine, writing logs — is thin. The real engine run is the end-to-end
//! test's business; here a fake engine executable stands in.

mod schedule;
mod summary;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

pub(crate) use schedule::Scheduler;
pub use schedule::State;
pub use summary::Summary;
pub(crate) use summary::{current_step, tail_lines, FAILED_LOG_LINES};

use super::buildargs::label_of;
use super::error::{Error, UsageError};
use super::plan::{Plan, PlanParent, PlannedTarget};
use super::progress::Progress;
pub use super::tools::{Engine, Flavor};
use summary::secs;

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
pub(crate) fn engine_args(
    engine: &Engine,
    t: &PlannedTarget,
    opts: &BuildOptions,
    parent_id: Option<&str>,
    iidfile: &Path,
) -> Result<Vec<String>, UsageError> {
    if !opts.volumes.is_empty() && engine.flavor == Flavor::Docker {
        return Err(UsageError(
            "build volumes (-v) are a podman feature; `docker build` has none. Use --engine podman, or drop -v".into(),
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
            if let Some(label) = label_of(k) {
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
pub(crate) fn parse_builder(inspect: &str) -> Option<(String, String)> {
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
pub(crate) fn builder_env(engine: &Engine, progress: &mut dyn Progress) -> Vec<(String, String)> {
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
    progress.line(&format!(
        "build: the current buildx builder `{name}` uses the `{driver}` driver, which resolves FROM from the \
         registry instead of the images built in this run and does not load its results; building with the \
         docker context's own builder `{own}` (BUILDX_BUILDER={own}). To use `{name}` for the whole family, \
         use `labkit bake` and `docker buildx bake`, which link parents through target contexts"
    ));
    vec![("BUILDX_BUILDER".into(), own)]
}

struct Done {
    index: usize,
    ok: bool,
    took: Duration,
    note: String,
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
    writeln!(f, "$ {} {}", program.display(), args.join(" "))
        .with_context(|| format!("cannot write log {}", log.display()))?;
    let err: File = f.try_clone().with_context(|| format!("cannot open log {}", log.display()))?;
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

/// Creates the log directory and checks every target's engine command
/// before anything runs or is staged (a child's parent ID is filled in when
/// it starts). A command the engine cannot run (volumes with docker) is
/// invalid input.
pub(crate) fn prepare(plan: &Plan, engine: &Engine, opts: &BuildOptions) -> Result<(), Error> {
    std::fs::create_dir_all(&opts.log_dir).with_context(|| format!("cannot create {}", opts.log_dir.display()))?;
    for t in &plan.targets {
        engine_args(engine, t, opts, None, &opts.log_dir.join(format!("{}.iid", t.name)))?;
    }
    Ok(())
}

/// Runs the plan's builds in `root` (after [`prepare`], with the context
/// staged): siblings in parallel up to `opts.jobs`, a child once its parent
/// built, a failure's descendants skipped, then the summary and `--push`.
/// Every event is one line (or a few) to `progress`. Errors are failures to
/// run anything at all; a target that fails is in the [`Summary`].
pub(crate) fn run(
    root: &Path,
    plan: &Plan,
    engine: &Engine,
    opts: &BuildOptions,
    progress: &mut dyn Progress,
) -> Result<Summary, Error> {
    let log_of = |i: usize| opts.log_dir.join(format!("{}.log", plan.targets[i].name));
    let iid_of = |i: usize| opts.log_dir.join(format!("{}.iid", plan.targets[i].name));
    let env = builder_env(engine, progress);

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
    progress.line(&format!(
        "build: {total} target(s) in {} level(s) with {} ({}), {jobs} at a time; logs in {}",
        plan.levels.len(),
        engine.name(),
        engine.program.display(),
        opts.log_dir.display()
    ));

    let (tx, rx) = mpsc::channel::<Done>();
    loop {
        while sched.count(State::Running) < jobs {
            let Some(i) = sched.next_ready() else { break };
            let parent_id = sched.parent[i].and_then(|p| ids[p].clone());
            let _ = std::fs::remove_file(iid_of(i));
            let args = engine_args(engine, &plan.targets[i], opts, parent_id.as_deref(), &iid_of(i))?;
            let (tx, program, env, root, log) =
                (tx.clone(), engine.program.clone(), env.clone(), root.to_path_buf(), log_of(i));
            match &parent_id {
                Some(id) => progress.line(&format!(
                    "[{:>7}] {}: started on {} {id} {}",
                    secs(start.elapsed()),
                    sched.names[i],
                    sched.parent_name(i).unwrap_or("?"),
                    status(&sched)
                )),
                None => progress.line(&format!(
                    "[{:>7}] {}: started {}",
                    secs(start.elapsed()),
                    sched.names[i],
                    status(&sched)
                )),
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
                    progress.line(&format!(
                        "[{:>7}] {name}: built {} in {} {}",
                        secs(start.elapsed()),
                        ids[d.index].as_deref().unwrap_or_default(),
                        secs(d.took),
                        status(&sched)
                    ));
                } else {
                    progress.line(&format!(
                        "[{:>7}] {name}: FAILED after {} (log {}){} {}",
                        secs(start.elapsed()),
                        secs(d.took),
                        log_of(d.index).display(),
                        if d.note.is_empty() { String::new() } else { format!(": {}", d.note) },
                        status(&sched)
                    ));
                    let log = std::fs::read_to_string(log_of(d.index)).unwrap_or_default();
                    let tail = tail_lines(&log, FAILED_LOG_LINES);
                    if !tail.is_empty() {
                        progress.line(&format!("  last {} line(s) of {}:", tail.len(), log_of(d.index).display()));
                        for l in tail {
                            progress.line(&format!("  | {l}"));
                        }
                    }
                    for j in skipped {
                        progress.line(&format!(
                            "[{:>7}] {}: skipped, its parent failed",
                            secs(start.elapsed()),
                            sched.names[j]
                        ));
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
                progress.line(&format!(
                    "[{:>7}] still building: {} {}",
                    secs(start.elapsed()),
                    running.join(", "),
                    status(&sched)
                ));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(Error::msg("build workers vanished")),
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
    progress.line(&format!("\nbuild summary ({} elapsed):", secs(summary.elapsed)));
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
        progress.line(&format!("  {what}"));
    }
    progress.line(&format!(
        "{} built, {} failed, {} skipped",
        sched.count(State::Built),
        sched.count(State::Failed),
        sched.count(State::Skipped)
    ));

    if opts.push {
        if !summary.success() {
            progress.line("push: not pushing anything, because not every target built; the registry is unchanged");
        } else if let Err(why) = tags_hold_this_run(engine, plan, &ids) {
            progress.line(&format!("push: not pushing anything: {why}; the registry is unchanged"));
            summary.push_failed = true;
        } else {
            summary.pushed = true;
            'push: for (i, t) in plan.targets.iter().enumerate() {
                for tag in &t.tags {
                    let args = vec!["push".to_string(), tag.clone()];
                    let ok = run_logged(&engine.program, &args, &env, root, &log_of(i), true)?;
                    if ok {
                        progress.line(&format!("push: {tag}"));
                    } else {
                        progress.line(&format!(
                            "push: FAILED for {tag} (log {}); stopping. Tags pushed so far are listed above",
                            log_of(i).display()
                        ));
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
