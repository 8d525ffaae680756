//! One job as the researcher asked for it on the command line ([`Request`]),
//! checked against the profile into a [`Spec`] that every output form
//! (Pod, Job, multi-node Job, `runai submit`) is rendered from. Pure code: all
//! refusals happen here, before anything is printed.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::init::duration;
use crate::job::names;
use crate::job::profile::Profile;

/// labinit's grace when neither `--grace` nor the profile sets one (labinit's
/// own default, README "Configuration").
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_secs(20);
/// Seconds the pod's `terminationGracePeriodSeconds` adds to labinit's grace:
/// after the job's grace labinit still stops the services
/// (`LABKIT_SERVICE_GRACE`, 5 s) and exits; Kubernetes' SIGKILL must come
/// after all of that.
pub(crate) const GRACE_MARGIN_SECS: i64 = 10;
/// `terminationGracePeriodSeconds` of pods made by `runai submit`, which
/// cannot set it: Kubernetes' default.
pub(crate) const RUNAI_TERMINATION_GRACE_SECS: i64 = 30;
/// torchrun's rendezvous (c10d store) port on the pod of index 0.
pub(crate) const RENDEZVOUS_PORT: u16 = 29500;

/// The output form (`--to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    Job,
    Pod,
    Runai,
}

impl Form {
    pub(crate) fn parse(s: &str) -> Result<Form> {
        match s {
            "job" => Ok(Form::Job),
            "pod" => Ok(Form::Pod),
            "runai" => Ok(Form::Runai),
            other => bail!("--to {other:?} is not one of job, pod, runai"),
        }
    }
}

/// GPUs per pod.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Gpu {
    Whole(u32),
    /// A share of one GPU's memory, in (0, 1), as the user wrote it (`0.5`).
    Fraction(String),
}

/// What the container runs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    /// No command: `labinit wait` (set up, then wait for `labkit job shell`).
    Wait,
    /// Program and arguments, run in the workdir without a shell in between
    /// (`exec`); with `--workers`, what torchrun starts.
    Words(Vec<String>),
    /// A shell string (`-c`), run by the user's shell in the workdir.
    Shell(String),
}

/// The flags of `labkit job render` (and `submit`), as given.
#[derive(Debug, Clone, Default)]
pub(crate) struct Request {
    pub(crate) name: String,
    pub(crate) to: Option<String>,
    pub(crate) gpu: Option<String>,
    pub(crate) priority: Option<String>,
    pub(crate) timeout: Option<String>,
    pub(crate) grace: Option<String>,
    pub(crate) ports: Vec<String>,
    pub(crate) interactive: bool,
    pub(crate) workers: Option<String>,
    pub(crate) runai_scheduler: bool,
    pub(crate) shell: Option<String>,
    pub(crate) command: Vec<String>,
}

/// A validated job: everything the renderers need besides the profile.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spec {
    pub(crate) name: String,
    pub(crate) form: Form,
    pub(crate) gpu: Gpu,
    pub(crate) priority: u32,
    /// `LABKIT_TIMEOUT`, as the user wrote it (labinit parses the same text).
    pub(crate) timeout: Option<String>,
    /// `LABKIT_GRACE`.
    pub(crate) grace: Duration,
    /// The pod's `terminationGracePeriodSeconds` (always more than `grace`).
    pub(crate) termination_grace_secs: i64,
    pub(crate) ports: Vec<u16>,
    pub(crate) interactive: bool,
    /// Pods of a multi-node job (≥ 2), or none.
    pub(crate) workers: Option<u32>,
    /// Render the RunAI scheduler name and `gpu-fraction` annotation in YAML.
    pub(crate) runai_scheduler: bool,
    pub(crate) command: Command,
    /// True when the name was lowered (the CLI says so on stderr).
    pub(crate) name_lowered: bool,
}

/// Check a request against the profile. Every refusal is one message naming
/// the flag and what to write instead.
pub(crate) fn check(req: &Request, profile: &Profile) -> Result<Spec> {
    let name = names::job_name(&req.name)?;
    let form = match &req.to {
        Some(t) => Form::parse(t)?,
        None => Form::Job,
    };
    let gpu = match &req.gpu {
        Some(g) => parse_gpu(g)?,
        None => Gpu::Whole(0),
    };
    let priority = match &req.priority {
        Some(p) => crate::job::profile::parse_priority("--priority", p)?,
        None => profile.job.priority,
    };
    let timeout = match &req.timeout {
        Some(t) => {
            let d = duration::parse_named("--timeout", t).map_err(|f| anyhow::anyhow!(f.message))?;
            (!d.is_zero()).then(|| t.trim().to_string())
        }
        None => None,
    };
    let grace = match &req.grace {
        Some(g) => duration::parse_named("--grace", g).map_err(|f| anyhow::anyhow!(f.message))?,
        None => profile.job.grace.unwrap_or(DEFAULT_GRACE),
    };
    let termination_grace_secs = termination_grace(grace)?;
    let mut ports = Vec::new();
    for p in &req.ports {
        let port = parse_port(p)?;
        if ports.contains(&port) {
            bail!("--port {port} is given twice");
        }
        ports.push(port);
    }
    let workers = match &req.workers {
        Some(w) => Some(parse_workers(w)?),
        None => None,
    };
    let command = match (&req.shell, req.command.is_empty()) {
        (Some(_), false) => bail!("give the command either as words after -- or as one string with -c, not both"),
        (Some(s), true) if s.trim().is_empty() => bail!("-c: the command string is empty"),
        (Some(s), true) => Command::Shell(s.clone()),
        (None, false) => Command::Words(req.command.clone()),
        (None, true) => Command::Wait,
    };
    for w in match &command {
        Command::Words(w) => w.clone(),
        Command::Shell(s) => vec![s.clone()],
        Command::Wait => vec![],
    } {
        if w.contains('\0') {
            bail!("the command contains a NUL byte, which no process argument can hold");
        }
    }

    if let (Command::Words(w), None) = (&command, &req.workers) {
        if w[0].starts_with('-') || w[0].is_empty() {
            bail!("COMMAND starts with {:?}: the first word after -- must be the program to run (e.g. -- python train.py)", w[0]);
        }
    }

    // Combinations.
    if form == Form::Runai {
        if req.priority.is_some() {
            bail!("--priority sets the lab queue's pod label `priority` for --to job or pod; RunAI orders jobs in its own queue, so drop --priority with --to runai");
        }
        if req.runai_scheduler {
            bail!("--runai-scheduler is for --to job or pod; runai submit always uses the RunAI scheduler");
        }
        if i64::try_from(grace.as_secs()).unwrap_or(i64::MAX).saturating_add(GRACE_MARGIN_SECS)
            > RUNAI_TERMINATION_GRACE_SECS
        {
            bail!(
                "--grace {}: runai submit cannot set the pod's terminationGracePeriodSeconds, which stays {RUNAI_TERMINATION_GRACE_SECS} s, and labinit's grace must end {GRACE_MARGIN_SECS} s before it; use --grace {}s or less, or --to job",
                duration::show(grace),
                RUNAI_TERMINATION_GRACE_SECS - GRACE_MARGIN_SECS
            );
        }
        for v in &profile.volumes {
            if v.runai_claim.is_none() {
                bail!(
                    "the profile's volume at {} has no runai_claim; add runai_claim = \"runai-{}\" (RunAI's claim names differ from the plain pv-… ones)",
                    v.mount,
                    v.claim.as_deref().unwrap_or("…")
                );
            }
        }
    } else {
        for v in &profile.volumes {
            if v.claim.is_none() {
                bail!(
                    "the profile's volume at {} has no claim for --to job/pod; add claim = \"…\" (e.g. pv-cvlabdata2; runai-pv-… claims belong to RunAI)",
                    v.mount
                );
            }
        }
    }
    if let Gpu::Fraction(f) = &gpu {
        if form != Form::Runai && !req.runai_scheduler {
            bail!(
                "--gpu {f}: a fraction of a GPU exists only under RunAI's scheduler, not in a plain Kubernetes {}; use --to runai, add --runai-scheduler (gpu-fraction annotation), or ask for whole GPUs",
                if form == Form::Pod { "Pod" } else { "Job" }
            );
        }
    }
    if let Some(n) = workers {
        if form != Form::Job {
            bail!(
                "--workers is for --to job (an Indexed Job with a headless Service); for RunAI use `runai submit-dist pytorch` (docs/job.md shows the mapping)"
            );
        }
        if let Gpu::Fraction(f) = &gpu {
            bail!("--gpu {f} with --workers: multi-node training needs whole GPUs per pod");
        }
        match &command {
            Command::Words(w) => {
                if matches!(w[0].rsplit('/').next(), Some("python" | "python3" | "torchrun")) {
                    bail!(
                        "with --workers, COMMAND is what torchrun starts: write `-- train.py ARGS` (or `-- -m package.module ARGS`), not `-- {} …`",
                        w[0]
                    );
                }
            }
            Command::Shell(_) => {
                bail!("--workers needs the training script as words after -- (torchrun runs it), not -c")
            }
            Command::Wait => bail!("--workers needs a command: the training script and its arguments after --"),
        }
        // The pods' host names are NAME-INDEX and the Service is NAME.
        let longest = format!("{name}-{}", n - 1);
        if !names::is_dns1123_label(&longest) {
            bail!(
                "the job name {name:?} is too long for {n} workers: pod host names are NAME-INDEX ({longest:?} has {} characters, at most 63)",
                longest.len()
            );
        }
        if !names::is_dns1035_label(&name) {
            bail!("with --workers the job name {name:?} must start with a letter: it also names the headless Service");
        }
        if ports.contains(&RENDEZVOUS_PORT) {
            bail!("--port {RENDEZVOUS_PORT} is torchrun's rendezvous port with --workers; pick another port");
        }
    }
    Ok(Spec {
        name_lowered: name != req.name,
        name,
        form,
        gpu,
        priority,
        timeout,
        grace,
        termination_grace_secs,
        ports,
        interactive: req.interactive,
        workers,
        runai_scheduler: req.runai_scheduler,
        command,
    })
}

/// `terminationGracePeriodSeconds` for a labinit grace: whole seconds,
/// rounded up, plus [`GRACE_MARGIN_SECS`], so that it is strictly greater.
pub(crate) fn termination_grace(grace: Duration) -> Result<i64> {
    let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
    let Ok(secs) = i64::try_from(secs) else { bail!("--grace is too long") };
    Ok(secs + GRACE_MARGIN_SECS)
}

/// `--gpu`: a whole number ≥ 0, or a fraction strictly between 0 and 1.
pub(crate) fn parse_gpu(s: &str) -> Result<Gpu> {
    let t = s.trim();
    let rule = "write a whole number of GPUs (0, 1, 2…) or, for RunAI, a share of one GPU between 0 and 1 (0.5)";
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if (int.is_empty() && frac.is_empty()) || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        bail!("--gpu {s:?} is not a number; {rule}");
    }
    if frac.bytes().all(|b| b == b'0') {
        let Ok(n) = int.parse::<u32>() else { bail!("--gpu {s:?} is too large; {rule}") };
        if n > 64 {
            bail!("--gpu {s:?}: {n} GPUs in one pod is more than any node has; {rule}");
        }
        return Ok(Gpu::Whole(n));
    }
    if int.trim_start_matches('0').is_empty() {
        // 0.xyz: normalise to "0.xyz" without trailing zeros.
        let frac = frac.trim_end_matches('0');
        if frac.len() > 2 {
            bail!("--gpu {s:?}: RunAI takes GPU fractions with at most two decimals (e.g. 0.25)");
        }
        return Ok(Gpu::Fraction(format!("0.{frac}")));
    }
    bail!("--gpu {s:?}: more than one GPU must be a whole number; {rule}")
}

/// `--port`: 1-65535.
pub(crate) fn parse_port(s: &str) -> Result<u16> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        Ok(n) => bail!("--port {n} is out of range: a port is 1 to 65535"),
        Err(_) => bail!("--port {s:?} is not a port number (1 to 65535)"),
    }
}

fn parse_workers(s: &str) -> Result<u32> {
    match s.trim().parse::<u32>() {
        Ok(n) if (2..=1000).contains(&n) => Ok(n),
        Ok(n) => bail!("--workers {n}: a multi-node job has 2 to 1000 pods (one pod needs no --workers)"),
        Err(_) => bail!("--workers {s:?} is not a whole number of pods (2 or more)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus() {
        assert_eq!(parse_gpu("0").unwrap(), Gpu::Whole(0));
        assert_eq!(parse_gpu("2").unwrap(), Gpu::Whole(2));
        assert_eq!(parse_gpu("1.0").unwrap(), Gpu::Whole(1));
        assert_eq!(parse_gpu("0.5").unwrap(), Gpu::Fraction("0.5".into()));
        assert_eq!(parse_gpu(".25").unwrap(), Gpu::Fraction("0.25".into()));
        assert_eq!(parse_gpu("0.50").unwrap(), Gpu::Fraction("0.5".into()));
        for bad in ["", ".", "-1", "1.5", "abc", "0.125", "1e3", "65", "nan", "0x1"] {
            assert!(parse_gpu(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("8888").unwrap(), 8888);
        assert_eq!(parse_port("1").unwrap(), 1);
        assert_eq!(parse_port("65535").unwrap(), 65535);
        for bad in ["0", "65536", "-1", "http", "", "99999999999"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn termination_grace_is_strictly_above_labinits() {
        for (g, want) in [(0.0, 10), (0.5, 11), (20.0, 30), (20.001, 31), (3600.0, 3610)] {
            let d = Duration::from_secs_f64(g);
            let t = termination_grace(d).unwrap();
            assert_eq!(t, want, "{g}");
            assert!(Duration::from_secs(t as u64) > d, "{g}");
        }
    }
}
