//! `labkit job …`: arguments, and the edge that reads the environment, runs
//! `id`, writes the profile, prints and starts kubectl/runai. Everything it
//! decides is delegated to the pure modules; every refusal happens before
//! anything is printed on stdout. Exit codes: 0 done, 2 refused (bad input,
//! missing profile), otherwise the exit code of kubectl/runai.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};

use crate::job::profile::{self, InitValues, Profile};
use crate::job::spec::{self, Form, Request, Spec};
use crate::job::{command, manifest, runai, wrap};

/// `labkit job`: describe a job once (the profile), get a Pod, a Job, a
/// multi-node Job or a `runai submit` command (guide: docs/job.md).
#[derive(Args, Debug)]
pub struct JobArgs {
    /// Profile (default: $XDG_CONFIG_HOME/labkit/job.toml, else ~/.config/labkit/job.toml).
    #[arg(long, global = true, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// kubectl to run (submit, shell, forward).
    #[arg(long, global = true, default_value = "kubectl", value_name = "PROGRAM")]
    kubectl: String,
    /// runai to run (submit --to runai, shell --to runai).
    #[arg(long, global = true, default_value = "runai", value_name = "PROGRAM")]
    runai: String,
    #[command(subcommand)]
    command: JobCommand,
}

#[derive(Subcommand, Debug)]
enum JobCommand {
    /// Write a profile: your ids from `id` on this machine, the rest from flags.
    Init(InitArgs),
    /// Print a Job (default), a Pod, or the runai submit command for a job.
    Render(RenderArgs),
    /// Render, then `kubectl apply -f -` (or run `runai submit`).
    Submit {
        #[command(flatten)]
        render: RenderArgs,
        /// Print what would run instead of running it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Open your shell (or run CMD) in a running job, as your cluster user.
    Shell {
        /// The job's name.
        name: String,
        /// How the job was submitted: job, pod or runai.
        #[arg(long, default_value = "job")]
        to: String,
        /// A pod to use instead of the job's first one.
        #[arg(long)]
        pod: Option<String>,
        /// Print what would run instead of running it.
        #[arg(long)]
        dry_run: bool,
        /// Command to run instead of the login shell.
        #[arg(last = true)]
        cmd: Vec<String>,
    },
    /// Forward local ports to a running job (kubectl port-forward).
    Forward {
        /// The job's name.
        name: String,
        /// PORT or LOCAL:REMOTE (repeatable), e.g. 8888 or 8001:8888.
        #[arg(required = true)]
        ports: Vec<String>,
        /// How the job was submitted: job, pod or runai (runai needs --pod).
        #[arg(long, default_value = "job")]
        to: String,
        /// A pod to use instead of the job's first one.
        #[arg(long)]
        pod: Option<String>,
        /// Local address to listen on (kubectl's default: localhost).
        #[arg(long)]
        address: Option<String>,
        /// Print what would run instead of running it.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Args, Debug)]
struct InitArgs {
    /// Image to run, e.g. ic-registry.epfl.ch/cvlab/lis/lab-python-ml:cuda12.
    #[arg(long)]
    image: String,
    /// Absolute directory your commands start in.
    #[arg(long)]
    workdir: String,
    /// Kubernetes namespace (e.g. runai-cvlab).
    #[arg(long)]
    namespace: Option<String>,
    /// RunAI project (e.g. cvlab).
    #[arg(long)]
    project: Option<String>,
    /// CLAIM:RUNAI_CLAIM:MOUNT or CLAIM:MOUNT (repeatable), e.g. pv-cvlabdata2:runai-pv-cvlabdata2:/cvlabdata2.
    #[arg(long = "volume", value_name = "CLAIMS:MOUNT")]
    volumes: Vec<String>,
    /// NAME=VALUE for every job (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// Cluster user name (default: `id -un`).
    #[arg(long)]
    user: Option<String>,
    /// Cluster uid (default: `id -u`).
    #[arg(long)]
    uid: Option<String>,
    /// Cluster group name (default: `id -gn`).
    #[arg(long)]
    group: Option<String>,
    /// Cluster gid (default: `id -g`).
    #[arg(long)]
    gid: Option<String>,
    /// Replace an existing profile.
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug, Clone)]
struct RenderArgs {
    /// Job name: lower-cased, then 1-63 of a-z 0-9 '-'.
    name: String,
    /// Output: job (batch/v1 Job), pod, or runai (the runai submit command).
    #[arg(long, value_name = "FORM")]
    to: Option<String>,
    /// GPUs per pod: a whole number, or a fraction such as 0.5 (runai, or --runai-scheduler).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    gpu: Option<String>,
    /// The lab queue's `priority` label (0 or more; default: the profile's, else 0).
    #[arg(long, value_name = "P", allow_hyphen_values = true)]
    priority: Option<String>,
    /// Stop the job after this long (LABKIT_TIMEOUT): 90s, 30m, 4h, 2d; 0 = never.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    timeout: Option<String>,
    /// labinit's grace at shutdown (LABKIT_GRACE; default: the profile's, else 20s).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    grace: Option<String>,
    /// Container port to expose (repeatable), e.g. 8888 for Jupyter.
    #[arg(long = "port", value_name = "N", allow_hyphen_values = true)]
    ports: Vec<String>,
    /// runai: --interactive (not preemptible); YAML: stdin and a terminal for kubectl attach.
    #[arg(long)]
    interactive: bool,
    /// Pods of a multi-node PyTorch job (2 or more): Indexed Job + headless Service + torchrun.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    workers: Option<String>,
    /// YAML for RunAI's scheduler: schedulerName runai-scheduler, and the gpu-fraction annotation for --gpu 0.5.
    #[arg(long)]
    runai_scheduler: bool,
    /// Run STRING with your shell (pipes, &&, globs) instead of COMMAND.
    #[arg(short = 'c', value_name = "STRING")]
    shell: Option<String>,
    /// The command and its arguments (none: wait for `labkit job shell`).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

impl RenderArgs {
    fn request(&self) -> Request {
        Request {
            name: self.name.clone(),
            to: self.to.clone(),
            gpu: self.gpu.clone(),
            priority: self.priority.clone(),
            timeout: self.timeout.clone(),
            grace: self.grace.clone(),
            ports: self.ports.clone(),
            interactive: self.interactive,
            workers: self.workers.clone(),
            runai_scheduler: self.runai_scheduler,
            shell: self.shell.clone(),
            command: self.command.clone(),
        }
    }
}

/// What `render` prints for a checked spec: YAML, or the runai line.
pub(crate) fn render_text(profile: &Profile, spec: &Spec, runai_program: &str) -> Result<String> {
    match spec.form {
        Form::Runai => Ok(format!("{}\n", command::join(&runai::submit_argv(runai_program, profile, spec)?)?)),
        _ => manifest::to_yaml(
            &manifest::objects(profile, spec)?,
            "Rendered by `labkit job render`: change the profile or the flags, not this file.",
        ),
    }
}

/// Entry point of `labkit job`: the one place that reads the process
/// environment (`HOME`, `XDG_CONFIG_HOME`, for the default profile path).
pub fn main(args: JobArgs) -> ExitCode {
    match run(args, &|name| std::env::var(name).ok()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("labkit job: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `--profile`, else the default path from the environment (`get` looks a
/// variable up).
fn profile_path(explicit: Option<&Path>, get: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    profile::default_path(get("XDG_CONFIG_HOME").as_deref(), get("HOME").as_deref())
        .ok_or_else(|| anyhow!("neither HOME nor XDG_CONFIG_HOME is set; pass --profile FILE"))
}

fn checked(path: &Path, r: &RenderArgs) -> Result<(Profile, Spec)> {
    let profile = profile::load(path)?;
    let spec = spec::check(&r.request(), &profile)?;
    if spec.name_lowered {
        eprintln!(
            "labkit job: note: the job name {:?} is used as {:?} (Kubernetes names are lower case)",
            r.name, spec.name
        );
    }
    Ok((profile, spec))
}

fn run(args: JobArgs, get: &dyn Fn(&str) -> Option<String>) -> Result<u8> {
    // Every subcommand needs the profile's path first.
    let path = profile_path(args.profile.as_deref(), get)?;
    match &args.command {
        JobCommand::Init(i) => init(&path, i),
        JobCommand::Render(r) => {
            let (profile, spec) = checked(&path, r)?;
            let text = render_text(&profile, &spec, "runai")?;
            print_out(&text)?;
            Ok(0)
        }
        JobCommand::Submit { render, dry_run } => {
            let (profile, spec) = checked(&path, render)?;
            let inv = match spec.form {
                Form::Runai => {
                    wrap::Invocation { argv: runai::submit_argv(&args.runai, &profile, &spec)?, stdin: None }
                }
                _ => wrap::apply(&args.kubectl, render_text(&profile, &spec, &args.runai)?),
            };
            execute(&inv, *dry_run)
        }
        JobCommand::Shell { name, to, pod, dry_run, cmd } => {
            let profile = profile::load(&path)?;
            let name = crate::job::names::job_name(name)?;
            let inv = wrap::shell(&args.kubectl, &args.runai, &profile, Form::parse(to)?, &name, pod.as_deref(), cmd)?;
            execute(&inv, *dry_run)
        }
        JobCommand::Forward { name, ports, to, pod, address, dry_run } => {
            let profile = profile::load(&path)?;
            let name = crate::job::names::job_name(name)?;
            let inv = wrap::forward(
                &args.kubectl,
                &profile,
                Form::parse(to)?,
                &name,
                pod.as_deref(),
                ports,
                address.as_deref(),
            )?;
            execute(&inv, *dry_run)
        }
    }
}

fn execute(inv: &wrap::Invocation, dry_run: bool) -> Result<u8> {
    if dry_run {
        print_out(&inv.dry_run_text()?)?;
        return Ok(0);
    }
    inv.run()
}

fn print_out(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        // `labkit job render … | head`: the reader has what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("cannot write to stdout"),
    }
}

/// The edge of `init`: ask `id`, build the text (pure), write it.
fn init(path: &Path, a: &InitArgs) -> Result<u8> {
    if path.exists() && !a.force {
        bail!(
            "the profile {} already exists; pass --force to replace it (or --profile FILE for another one)",
            path.display()
        );
    }
    let id = |flag: &str| -> Result<String> {
        let out = std::process::Command::new("id")
            .arg(flag)
            .output()
            .with_context(|| format!("cannot run `id {flag}`; give --user, --uid, --group and --gid"))?;
        if !out.status.success() {
            bail!("`id {flag}` failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let pick = |given: &Option<String>, flag: &str| given.clone().map(Ok).unwrap_or_else(|| id(flag));
    let user = profile::user_from_id(
        &pick(&a.uid, "-u")?,
        &pick(&a.user, "-un")?,
        &pick(&a.gid, "-g")?,
        &pick(&a.group, "-gn")?,
    )?;
    if user.uid == 0 && a.uid.is_none() {
        // Root here is a laptop or a container, not a cluster account: a job
        // as root writes files the NFS server squashes to nobody.
        bail!(
            "you are root on this machine, which is not your cluster account; run `labkit job init` as yourself on the cluster's login node, or give --user, --uid, --group and --gid (from `id` there)"
        );
    }
    let mut volumes = Vec::new();
    for v in &a.volumes {
        volumes.push(profile::parse_volume_flag(v)?);
    }
    let mut env = Vec::new();
    for e in &a.env {
        let Some((k, v)) = e.split_once('=') else { bail!("--env {e:?}: write NAME=VALUE") };
        env.push((k.to_string(), v.to_string()));
    }
    let values = InitValues {
        user,
        image: a.image.clone(),
        workdir: a.workdir.clone(),
        namespace: a.namespace.clone(),
        project: a.project.clone(),
        volumes,
        env,
    };
    let text = profile::init_text(&values)?;
    write_profile(path, &text, a.force)?;
    let u = &values.user;
    println!(
        "wrote {} (user {} uid {}, group {} gid {}); try: labkit job render test -- nvidia-smi",
        path.display(),
        u.name,
        u.uid,
        u.group,
        u.gid
    );
    Ok(0)
}

/// Write the profile: a new file is created exclusively (never replacing one
/// that appeared meanwhile); `--force` writes a temporary file beside it and
/// renames it over the old one.
fn write_profile(path: &Path, text: &str, force: bool) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if !force {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow!("the profile {} already exists; pass --force to replace it", path.display())
            } else {
                anyhow!("cannot create {}: {e}", path.display())
            }
        })?;
        return f.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()));
    }
    let tmp = path.with_extension(format!("toml.tmp-{}", std::process::id()));
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow!("cannot replace {}: {e}", path.display())
    })
}
