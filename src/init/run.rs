//! `labinit run`, `labinit wait` and `labinit shell`: the story of one
//! container start. From `main` (src/bin/labinit.rs): `cli::main` →
//! `cli::dispatch` → [`run`] (or [`wait`], [`shell`]); the privilege drop is
//! `run` → [`launch::spawn`] → `launch::drop_privileges` in the forked
//! child; the signal forwarding is `run` → [`Supervisor::run`] (which
//! routes each signal with `signals::route`).
//!
//! The phases, in order:
//! 1. Configure: read and validate everything before changing anything
//!    ([`Config::load`]: root, setup, supervision, idle, services, PATH).
//! 2. Nesting: under an outer labinit, no second setup or supervisor
//!    ([`nesting`]); `run` becomes the command unless it has limits of its own.
//! 3. Setup: leave the working directory, become a subreaper, create the
//!    account and run the steps ([`setup`]).
//! 4. Take the signals over from setup ([`signals::take_over`]); a stop
//!    signal received meanwhile ends labinit with 128+N.
//! 5. Services (`LABKIT_SERVICES_DIR`), with the sshd `SetEnv` file.
//! 6. Launch ([`launch::spawn`]): fork, own process group and terminal,
//!    **drop privileges**, working directory, exec. Who the child is and
//!    what it gets is decided before, in [`job`] (pure).
//! 7. Supervise until the job ends; exit with its code ([`Supervisor`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::init::config::{self, Config, Flags, Options, Supervision};
use crate::init::env::Env;
use crate::init::exit::{self, Fatal};
use crate::init::files::Root;
use crate::init::job::{self, Children, Command, Launch};
use crate::init::services::Services;
use crate::init::setup::{self, SetupOutcome};
use crate::init::supervisor::{self, Policy, Supervisor};
use crate::init::{idle, launch, log, nesting, signals, state, summary};

/// One `labinit run` (or legacy `setup_and_run_command.sh`) invocation.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// `--root` (else `LABKIT_ROOT`, else `/`).
    pub root: Option<PathBuf>,
    pub command: Command,
    /// Legacy name: start in the home, source `~/.bashrc` first with bash.
    pub legacy: bool,
    pub options: Options,
}

/// `labinit run`: the whole start, as a story. Returns the exit code.
pub(crate) fn run(env: &Env, req: Request) -> i32 {
    report(start(env, req))
}

fn start(env: &Env, req: Request) -> Result<i32, Fatal> {
    // 1. Configure (2. knowing whether an outer labinit set up already).
    let outer = nesting::outer_supervisor(env);
    let flags = Flags { root: req.root.clone(), options: req.options.clone(), waits: false, nested: outer.is_some() };
    let cfg = Config::load(env, &flags)?;
    if req.command == Command::Argv(Vec::new()) {
        return Err(Fatal::config(job::NO_COMMAND));
    }
    // 2. Nesting.
    if let Some(outer) = outer {
        if cfg.supervision.timeout.is_none() && cfg.idle.is_none() {
            return Ok(report(Err(launch::exec_nested(outer, env, &req.command, req.legacy))));
        }
        log::info(format!(
            "running under labinit (pid {outer}) with a timeout or idle watchdog: supervising without a second setup"
        ));
    }
    // 3. and 4.
    let outcome = boot(&cfg, env)?;
    let me = std::process::id();
    let children = Children::new(env.vars(), outcome.identity.as_ref(), &outcome.exports, launch::caller());
    // Resolved before the services start, so a bad command starts nothing.
    let job_env = children.job_env(Some(me));
    let mut launch = children.launch(&req.command, job_env, env.start_dir(), req.legacy, &launch::is_executable)?;
    let idle = idle::for_job(cfg.idle.clone(), &mut launch.env);
    // PID 1's record for `labinit shell` is written before anything that
    // may read it starts: before the services if any, else while the job execs.
    let mut record = cfg.setup.is_some().then_some(&outcome);
    // 5.
    let services = start_services(&cfg, &children, outer.is_some(), &mut record);
    // 6.
    let keep = || record.into_iter().for_each(|o| setup::keep_record(&cfg.root, o));
    let pid = match launch::spawn(&launch, keep) {
        Ok(pid) => pid,
        Err(f) => {
            log::error(&f.message);
            // Services must not outlive a job that never started.
            return Ok(Supervisor::waiting(policy(&cfg.supervision))
                .with_services(services, cfg.service_grace)
                .end_now(f.code));
        }
    };
    log::info(job::started_line(&req.command, pid, children.identity(), me == 1));
    let s = &cfg.supervision;
    log::info(summary::job_line(s.timeout, s.grace, summary::now(), summary::first_dir(&launch.dirs)));
    // 7.
    Ok(Supervisor::new(pid, policy(s), launch::has_terminal())
        .with_idle(idle)
        .with_services(services, cfg.service_grace)
        .run())
}

/// `labinit wait` (legacy `setup_and_wait.sh`, `sleeper`, and `labinit`
/// without arguments): set up, start the services, then stay up as PID 1
/// until SIGTERM or the idle watchdog ([`config::DEFAULT_WAIT_IDLE`] by
/// default). Exit code 0.
pub(crate) fn wait(env: &Env, root: Option<PathBuf>) -> i32 {
    report(start_wait(env, root))
}

fn start_wait(env: &Env, root: Option<PathBuf>) -> Result<i32, Fatal> {
    let outer = nesting::outer_supervisor(env);
    let cfg = Config::load(env, &Flags { root, options: Options::default(), waits: true, nested: outer.is_some() })?;
    if let Some(outer) = outer {
        log::info(format!("running under labinit (pid {outer}): no second setup or services; waiting"));
    }
    let outcome = boot(&cfg, env)?;
    if cfg.setup.is_some() {
        setup::keep_record(&cfg.root, &outcome);
    }
    let children = Children::new(env.vars(), outcome.identity.as_ref(), &outcome.exports, launch::caller());
    let services = start_services(&cfg, &children, outer.is_some(), &mut None);
    let connect = summary::connect_hint(env.vars(), &cfg.root);
    log::info(match children.identity() {
        Some(i) => format!("set up; waiting. Connect with: {connect} (you become {}, uid {})", i.name, i.uid),
        None => format!("set up; waiting. Connect with: {connect}"),
    });
    let idle = idle::for_job(cfg.idle.clone(), &mut children.job_env(None));
    let supervisor = Supervisor::waiting(policy(&cfg.supervision));
    Ok(supervisor.with_idle(idle).with_services(services, cfg.service_grace).run())
}

/// `labinit shell [-- CMD…]`: for `kubectl exec -it POD -- /opt/lab/labinit
/// shell`. Become the job's user with the job's environment (container
/// environment and the step exports PID 1's setup kept) and start the login
/// shell in the home, or CMD. Nothing is set up and nothing supervised: the
/// process becomes the shell. Returns only on failure.
/// `pid1_waits`: PID 1 is a waiting labinit ([`crate::init::cli::waits`]),
/// whose idle timeout defaults to [`config::DEFAULT_WAIT_IDLE`].
pub(crate) fn shell(env: &Env, root: PathBuf, cmd: Vec<OsString>, pid1_waits: bool) -> i32 {
    report(Err(prepare_shell(env, &root, cmd, pid1_waits).map_or_else(|f| f, |l| launch::exec_in_place(&l))))
}

/// Whom `labinit shell` becomes and with what: PID 1's record ([`state`])
/// when it is for the requested user or no user was requested, else the
/// `CLUSTER_*` variables resolved read-only from the account files
/// ([`state::shell_identity`]).
fn prepare_shell(env: &Env, root: &Path, cmd: Vec<OsString>, pid1_waits: bool) -> Result<Launch, Fatal> {
    let asked = config::CLUSTER_VARS.iter().any(|v| env.get(v).is_some());
    let requested = setup::resolve_identity(root, &env.strings())?;
    let record = state::read(&Root::new(root)).unwrap_or_else(|e| {
        log::warn(format!("PID 1's record is not used: {e}"));
        None
    });
    let recorded = record.as_ref().map(|r| r.identity.as_ref());
    let (mut identity, source) = state::shell_identity(requested, asked, recorded);
    let euid = nix::unistd::geteuid().as_raw();
    let record_path = format!("{}/{}", state::DIR, state::RECORD);
    match state::shell_identity_note(identity.as_ref(), &source, recorded, asked, euid, &record_path) {
        Some((true, line)) => log::warn(line),
        Some((false, line)) => log::info(line),
        None => {}
    }
    if let Some(i) = identity.as_ref().filter(|i| euid != 0 && euid != i.uid) {
        log::warn(format!(
            "labinit shell runs as uid {euid}, not root: it cannot become {} (uid {}); starting the shell as uid {euid}",
            i.name, i.uid
        ));
        identity = None;
    }
    let exports = record.map(|r| r.exports).unwrap_or_default();
    let children = Children::new(env.vars(), identity.as_ref(), &exports, launch::caller());
    let marker = nesting::pid1_is_labinit().then_some(1);
    let mut job_env = children.job_env(marker);
    if marker.is_some() {
        // The idle timeout PID 1 enforces, for a Jupyter started from this
        // shell (its configuration follows LABINIT_IDLE_TIMEOUT).
        let default = if pid1_waits { config::DEFAULT_WAIT_IDLE } else { std::time::Duration::ZERO };
        if let Ok(cfg) = config::idle_config(env, default) {
            idle::for_job(cfg, &mut job_env);
        }
    }
    let mut launch = children.launch_shell(cmd, job_env, env.start_dir(), &launch::is_executable);
    if euid != 0 {
        launch.creds = None;
    }
    Ok(launch)
}

/// Phases 3 and 4, shared by `run` and `wait`; then the summary of the
/// start (not when nested).
fn boot(cfg: &Config, env: &Env) -> Result<SetupOutcome, Fatal> {
    // labinit itself must not pin a mount point.
    let _ = nix::unistd::chdir("/");
    // Orphans of the job become ours, not the real init's (catatonit).
    supervisor::become_subreaper();
    let outcome = match &cfg.setup {
        None => SetupOutcome::default(),
        Some(s) => setup::setup_with(&cfg.root, &env.strings(), s.clone())?,
    };
    // Blocks the supervised signals, then removes setup's handlers.
    signals::take_over();
    if let Some(sig) = signals::caught_during_setup().or_else(signals::take_pending_stop) {
        return Err(Fatal::with_code(
            exit::SIGNAL_BASE + sig,
            format!("received {} during setup; the job was not started", signals::name(sig)),
        ));
    }
    if cfg.setup.is_some() {
        summary::log_start(env.vars(), &cfg.root);
    }
    Ok(outcome)
}

/// Phase 5: the services of `LABKIT_SERVICES_DIR` ([`Services::launch`]);
/// none when nested (the outer labinit runs them). PID 1's `record`, when
/// still to be written, is written first (taken).
fn start_services(cfg: &Config, children: &Children, nested: bool, record: &mut Option<&SetupOutcome>) -> Services {
    if nested {
        return Services::none();
    }
    let keep = || record.take().into_iter().for_each(|o| setup::keep_record(&cfg.root, o));
    Services::launch(&Root::new(&cfg.root), &cfg.services_dir, &cfg.labinit, children, keep)
}

fn policy(s: &Supervision) -> Policy {
    Policy { grace: s.grace, timeout: s.timeout, kill_after: s.kill_after, preserve_status: s.preserve_status }
}

/// The exit code, after logging the error.
fn report(result: Result<i32, Fatal>) -> i32 {
    result.unwrap_or_else(|f| {
        log::error(&f.message);
        f.code
    })
}
