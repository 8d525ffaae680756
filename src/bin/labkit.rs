//! `labkit`: the maintainers' CLI for the lab image family. Thin: it parses
//! arguments, calls `labkit::images`, prints, and maps outcomes to exit codes
//! (0 success, 1 drift or a failed build, 2 invalid input or usage).
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use labkit::images::{self, Layout};

#[derive(Parser)]
#[command(
    name = "labkit",
    version,
    about = "Render, check, plan, bake and build the lab image family (guide: docs/images.md)"
)]
struct Cli {
    /// Repository root (default: the nearest directory above the current one
    /// that holds images/manifest.toml).
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone, Default)]
struct Selection {
    /// Replace a variant's base image for this run: VARIANT=REFERENCE
    /// (e.g. cpu=localhost/debootstrap-noble:latest). Repeatable.
    #[arg(long = "base-override", value_name = "VARIANT=REF", value_parser = images::parse_override)]
    base_override: Vec<(String, String)>,
    /// Only these images (repeatable). Parents outside the selection are
    /// consumed from the registry by their primary tag.
    #[arg(long = "image")]
    images: Vec<String>,
    /// Only these variants (repeatable).
    #[arg(long = "variant")]
    variants: Vec<String>,
}

#[derive(Args, Clone, Default)]
struct BuildValues {
    /// Extra build argument KEY=VALUE (repeatable).
    #[arg(long = "build-arg", value_name = "KEY=VALUE", value_parser = images::parse_build_arg)]
    build_args: Vec<(String, String)>,
    /// Apt mirror for this build (sets the APT_MIRROR build argument).
    #[arg(long)]
    apt_mirror: Option<String>,
    /// org.opencontainers.image.revision (default: `git rev-parse HEAD`).
    #[arg(long)]
    revision: Option<String>,
    /// org.opencontainers.image.created (default: SOURCE_DATE_EPOCH, else the
    /// commit time of HEAD).
    #[arg(long)]
    created: Option<String>,
    /// Build context directory (default: build/images/context, staged by build/bake).
    #[arg(long)]
    context: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Write every (image, variant) Dockerfile into images/generated/.
    Render {
        /// Write into this directory instead (required with --base-override).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace a variant's base image: VARIANT=REFERENCE (repeatable).
        #[arg(long = "base-override", value_name = "VARIANT=REF", value_parser = images::parse_override)]
        base_override: Vec<(String, String)>,
    },
    /// Fail on drift between the committed Dockerfiles and a fresh render.
    Check {
        /// Output format; json prints one object
        /// {"schema":1,"clean":…,"drift":[{"kind","path","detail"}],"warnings":[…]}.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
    /// Show the build plan: targets in levels that can build in parallel.
    Plan {
        #[command(flatten)]
        sel: Selection,
        #[command(flatten)]
        values: BuildValues,
        /// Output format.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
    /// Write a fully expanded docker-bake.json for `docker buildx bake`.
    Bake {
        #[command(flatten)]
        sel: Selection,
        #[command(flatten)]
        values: BuildValues,
        /// Output file, or `-` for stdout (default: build/images/docker-bake.json).
        #[arg(long, short)]
        output: Option<String>,
        /// Do not stage the build context (labinit, setup_steps, services).
        #[arg(long)]
        no_stage: bool,
        /// labinit binary to stage (default: dist/labinit).
        #[arg(long)]
        labinit: Option<PathBuf>,
    },
    /// Build the family with docker or podman, siblings in parallel.
    Build {
        #[command(flatten)]
        sel: Selection,
        #[command(flatten)]
        values: BuildValues,
        /// docker, podman, or a path to either (default: LABKIT_ENGINE, else
        /// the first of docker, podman on PATH).
        #[arg(long)]
        engine: Option<String>,
        /// Targets built at the same time.
        #[arg(long, short, default_value_t = 2)]
        jobs: usize,
        /// Push every tag, only after every target built.
        #[arg(long)]
        push: bool,
        /// Network mode for RUN instructions (engine's --network).
        #[arg(long)]
        network: Option<String>,
        /// Build volume SRC:DST[:OPTIONS] (podman only; repeatable).
        #[arg(long = "volume", short = 'v')]
        volumes: Vec<String>,
        /// labinit binary to stage (default: dist/labinit).
        #[arg(long)]
        labinit: Option<PathBuf>,
        /// Directory for per-target logs (default: build/images/logs).
        #[arg(long)]
        log_dir: Option<PathBuf>,
        /// Also write the summary as JSON to FILE (for CI).
        #[arg(long, value_name = "FILE")]
        summary_json: Option<PathBuf>,
    },
    /// Run the image tests (images/tests/<image>/, inherited by children) in
    /// containers of the built images, one line per test.
    Test {
        /// Only these images (repeatable); each is tested with its ancestors' tests too.
        #[arg(long = "image")]
        images: Vec<String>,
        /// Only these variants (repeatable).
        #[arg(long = "variant")]
        variants: Vec<String>,
        /// docker, podman, or a path to either (default: LABKIT_ENGINE, else
        /// the first of docker, podman on PATH).
        #[arg(long)]
        engine: Option<String>,
        /// Give the containers the GPUs (GPU tests then fail, not skip, without one).
        #[arg(long)]
        gpu: bool,
        /// Time limit per test (default 10m).
        #[arg(long)]
        timeout: Option<String>,
        /// Extra option for `ENGINE run` (repeatable), e.g. --run-arg=--network=none.
        #[arg(long = "run-arg", allow_hyphen_values = true)]
        run_args: Vec<String>,
        /// Directory for per-test logs (default: build/images/test-logs).
        #[arg(long)]
        log_dir: Option<PathBuf>,
    },
    /// Resolve each variant's Python requirements into the images'
    /// requirements.lock files (uv), and record each base image's digest in
    /// images/lock.toml.
    Lock {
        /// skopeo or docker (default: whichever is installed).
        #[arg(long)]
        resolver: Option<String>,
        /// Only the Python locks.
        #[arg(long, conflicts_with = "bases")]
        python: bool,
        /// Only the base image digests.
        #[arg(long)]
        bases: bool,
        /// Only these variants' Python locks (repeatable).
        #[arg(long = "variant")]
        variants: Vec<String>,
        /// uv binary (default: LABKIT_UV, else uv on PATH).
        #[arg(long)]
        uv: Option<PathBuf>,
    },
    /// For researchers: Pods, Jobs and runai commands from a profile (docs/job.md).
    Job(labkit::job::cli::JobArgs),
}

/// Writes `s` to stdout. A closed stdout (`labkit plan | head`) is not an
/// error the user needs to hear about: labkit stops quietly with 0, as `cat`
/// and `grep` do, instead of panicking.
fn emit(s: &str) {
    use std::io::Write as _;
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_all(s.as_bytes()).and_then(|_| o.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("labkit: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// `println!` through [`emit`].
macro_rules! out {
    ($($t:tt)*) => {
        emit(&format!("{}\n", format_args!($($t)*)))
    };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `labkit job` runs anywhere (a laptop, the login node): no repository.
    let command = match cli.command {
        Command::Job(args) => return labkit::job::cli::main(args),
        other => other,
    };
    let layout = match &cli.root {
        Some(r) => Layout::new(r),
        None => {
            let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
            match Layout::discover(&cwd) {
                Some(l) => l,
                None => {
                    eprintln!(
                        "labkit: no images/manifest.toml here or above; run inside the repository or pass --root"
                    );
                    return ExitCode::from(2);
                }
            }
        }
    };
    match run(&layout, command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("labkit: {e:#}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// What the image commands take from the environment, read here once: the
/// library reads none. `--engine`, `--uv` and `--labinit` win over
/// `LABKIT_ENGINE`, `LABKIT_UV` and `LABKIT_LABINIT` (an empty one counts
/// as unset, except `LABKIT_LABINIT`, which names a file).
struct Env {
    path: images::SearchPath,
    engine: Option<String>,
    uv: Option<PathBuf>,
    labinit: Option<PathBuf>,
    source_date_epoch: Option<String>,
}

impl Env {
    fn read() -> Env {
        let set = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty());
        Env {
            path: images::SearchPath(std::env::var_os("PATH")),
            engine: set("LABKIT_ENGINE"),
            uv: set("LABKIT_UV").map(PathBuf::from),
            labinit: std::env::var_os("LABKIT_LABINIT").map(PathBuf::from),
            source_date_epoch: set("SOURCE_DATE_EPOCH"),
        }
    }
}

/// Progress of a long command, one line at a time, to standard error.
fn to_stderr(line: &str) {
    eprintln!("{line}");
}

/// Progress that is the command's output (`labkit test`), to standard output.
fn to_stdout(line: &str) {
    out!("{line}");
}

fn run(layout: &Layout, command: Command) -> Result<u8, images::Error> {
    let env = Env::read();
    match command {
        Command::Render { out, base_override } => {
            let overrides = base_override.into_iter().collect();
            let r = images::render_to(layout, out.as_deref(), &overrides)?;
            for p in &r.written {
                out!("wrote {p}");
            }
            for p in &r.deleted {
                out!("deleted stale {p}");
            }
            for p in &r.foreign {
                eprintln!("labkit: left alone {p}: not written by labkit");
            }
            out!("render: {} written, {} unchanged, {} deleted", r.written.len(), r.unchanged.len(), r.deleted.len());
            Ok(0)
        }
        Command::Check { format } if format == "json" => {
            let report = images::check(layout)?;
            out!("{}", report.to_json());
            Ok(if report.is_clean() { 0 } else { 1 })
        }
        Command::Check { .. } => {
            let report = images::check(layout)?;
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
            for d in &report.drift {
                out!("{d}");
            }
            if report.is_clean() {
                out!("check: images/generated is up to date");
                Ok(0)
            } else {
                out!("check: {} problem(s)", report.drift.len());
                Ok(1)
            }
        }
        Command::Plan { sel, values, format } => {
            let p = plan_for(layout, &sel, &values, &env)?;
            if format == "json" {
                out!("{}", p.to_json());
            } else {
                emit(&p.to_text());
            }
            Ok(0)
        }
        Command::Bake { sel, values, output, no_stage, labinit } => {
            let p = plan_for(layout, &sel, &values, &env)?;
            let ctx = values.context.clone().unwrap_or_else(|| layout.work().join("context"));
            let labinit = labinit.or(env.labinit);
            let stage = (!no_stage).then_some((ctx.as_path(), labinit.as_deref()));
            let output = match output.as_deref() {
                Some("-") => images::BakeOutput::Stdout,
                other => images::BakeOutput::File(
                    other.map(PathBuf::from).unwrap_or_else(|| layout.work().join("docker-bake.json")),
                ),
            };
            let r = images::bake(layout, &p, stage, &output)?;
            match &r.written {
                None => out!("{}", r.json),
                Some(path) => out!(
                    "bake: wrote {} ({} targets; absolute paths, so from any directory): docker buildx bake -f {}",
                    path.display(),
                    r.targets,
                    path.display()
                ),
            }
            Ok(0)
        }
        Command::Build { sel, values, engine, jobs, push, network, volumes, labinit, log_dir, summary_json } => {
            let p = plan_for(layout, &sel, &values, &env)?;
            let engine = images::Engine::detect(engine.or(env.engine).as_deref(), &env.path)?;
            let opts = images::BuildOptions {
                jobs,
                push,
                network,
                volumes,
                labinit: labinit.or(env.labinit),
                log_dir: log_dir.unwrap_or_else(|| layout.work().join("logs")),
                context: values.context.unwrap_or_else(|| layout.work().join("context")),
                summary_json,
            };
            let summary = images::build(layout, &p, &engine, &opts, &mut to_stderr)?;
            Ok(if summary.success() { 0 } else { 1 })
        }
        Command::Test { images: imgs, variants, engine, gpu, timeout, run_args, log_dir } => {
            let req = images::TestRequest {
                images: imgs,
                variants,
                engine: engine.or(env.engine),
                path: env.path,
                options: images::TestOptions { gpu, timeout, run_args },
                log_dir: log_dir.unwrap_or_else(|| layout.work().join("test-logs")),
            };
            let summary = images::test(layout, &req, &mut to_stdout)?;
            Ok(if summary.success() { 0 } else { 1 })
        }
        Command::Lock { resolver, python, bases, variants, uv } => {
            let resolver = resolver.as_deref().map(images::Resolver::parse).transpose()?;
            let opts = images::LockOptions {
                python_only: python,
                bases_only: bases,
                resolver,
                variants,
                uv: uv.or(env.uv),
                path: env.path,
            };
            let report = images::lock(layout, &opts, &mut to_stderr)?;
            for line in report.lines() {
                out!("{line}");
            }
            match report.failure {
                Some(e) => Err(e),
                None => Ok(0),
            }
        }
        Command::Job(_) => unreachable!("handled in main"),
    }
}

fn plan_for(layout: &Layout, sel: &Selection, v: &BuildValues, env: &Env) -> Result<images::Plan, images::Error> {
    let overrides = sel.base_override.iter().cloned().collect();
    let opts = images::PlanOptions {
        images: sel.images.clone(),
        variants: sel.variants.clone(),
        context: v.context.clone().unwrap_or_else(|| PathBuf::from("build/images/context")),
        build_args: images::per_build_args(
            &layout.root,
            v.revision.clone(),
            v.created.clone(),
            v.apt_mirror.clone(),
            &v.build_args,
            env.source_date_epoch.as_deref(),
        )
        .map_err(images::UsageError)?,
    };
    images::plan(layout, &overrides, &opts)
}
