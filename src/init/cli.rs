//! labinit's command line: the subcommands, the legacy names it answers to
//! through `argv[0]` (`/opt/lab/setup_and_run_command.sh`, `/opt/lab/setup.sh`,
//! `/opt/lab/setup_and_wait.sh`, `sleeper`: symlinks to the one binary), the
//! ENTRYPOINT form `labinit CMD…`, and `labinit` alone, which waits.
//! Owns parsing and dispatch only; each command lives in its own module.
//!
//! Exit codes: clap's usage errors are labinit's own errors (125), so that
//! they never look like the job's.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::init::config::{self, Options};
use crate::init::each;
use crate::init::env::Env;
use crate::init::exit::{self, Fatal};
use crate::init::job::{self, Command};
use crate::init::log;
use crate::init::nesting;
use crate::init::privileges;
use crate::init::run::{self, Request};
use crate::init::setup;

#[derive(Debug, Parser)]
#[command(
    name = "labinit",
    version = crate::init::summary::version(),
    about = "The lab's container entrypoint: set up the cluster user, run the job as that user, supervise it as PID 1",
    after_help = concat!(
        "labinit CMD [ARGS…] is labinit run -- CMD [ARGS…]; labinit alone is labinit wait. Legacy names (symlinks): setup_and_run_command.sh 'STRING', setup.sh, setup_and_wait.sh, sleeper.\n",
        "labinit --help adds the environment variables and exit statuses."
    ),
    after_long_help = concat!(
        "labinit CMD [ARGS…] is labinit run -- CMD [ARGS…]; labinit alone is labinit wait. Legacy names (symlinks): setup_and_run_command.sh 'STRING', setup.sh, setup_and_wait.sh, sleeper.\n\n",
        include_str!(concat!(env!("OUT_DIR"), "/reference.txt"))
    )
)]
struct Cli {
    /// Prefix every file setup touches with DIR (tests); also LABKIT_ROOT. Default /.
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Create the cluster user and run the setup steps, then exit.
    Setup,
    /// Set up, drop privileges, run CMD (or -c STRING with the user's shell), supervise it and exit with its code.
    Run(RunArgs),
    /// Set up, start the services, then stay up until SIGTERM or the idle watchdog (LABKIT_IDLE_TIMEOUT, default 30m); exit 0. The default without arguments.
    Wait,
    /// Become the job's user with the job's environment: the login shell in the home, or CMD (for kubectl exec).
    Shell(ShellArgs),
    /// Run several command strings at once as the job, each line of output prefixed with [N] (or its --name); exit non-zero if any failed (the first failure's status). Outside a labinit job this is `labinit run --each`.
    Each(EachArgs),
    /// Debugging and benchmarks: time idle checks over this PID namespace.
    #[command(hide = true, name = "idle-check")]
    IdleCheck {
        /// How many checks (after a first one that primes the CPU counters).
        #[arg(long, default_value_t = 100)]
        checks: u32,
    },
}

#[derive(Debug, Args)]
struct ShellArgs {
    /// The program and its arguments (default: the user's login shell).
    #[arg(value_name = "CMD", trailing_var_arg = true, allow_hyphen_values = true)]
    cmd: Vec<OsString>,
}

#[derive(Debug, Args)]
struct EachArgs {
    /// When one command fails, stop the others (SIGTERM, SIGKILL after --grace).
    #[arg(long)]
    fail_fast: bool,
    /// Label of the next command in the output (repeat: first --name for the first command, …). Default: its number.
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// With --fail-fast: time between SIGTERM and SIGKILL for the others (default 20s).
    #[arg(long, value_name = "DURATION")]
    grace: Option<String>,
    /// The command strings, each run with the user's shell (`-c`).
    #[arg(value_name = "CMD", trailing_var_arg = true, required = true)]
    commands: Vec<String>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Run each CMD as a command string, all at once, as `labinit each` does (failures visible, output prefixed).
    #[arg(long, conflicts_with = "string")]
    each: bool,
    /// With --each: when one command fails, stop the others.
    #[arg(long, requires = "each")]
    fail_fast: bool,
    /// Run STRING with the user's shell instead of CMD.
    #[arg(short = 'c', value_name = "STRING", conflicts_with = "cmd")]
    string: Option<String>,
    /// Stop the job after DURATION (90s, 30m, 4h, 2d; 0 = never); exit 124. Also LABKIT_TIMEOUT.
    #[arg(long, value_name = "DURATION")]
    timeout: Option<String>,
    /// After a timeout, SIGKILL what is left after DURATION (default: the grace). Also LABKIT_KILL_AFTER.
    #[arg(long, value_name = "DURATION")]
    kill_after: Option<String>,
    /// After a timeout, exit with the job's status instead of 124. Also LABKIT_PRESERVE_STATUS=1.
    #[arg(long)]
    preserve_status: bool,
    /// Time between the stop signal and SIGKILL at shutdown (default 20s). Also LABKIT_GRACE.
    #[arg(long, value_name = "DURATION")]
    grace: Option<String>,
    /// The program and its arguments.
    #[arg(value_name = "CMD", trailing_var_arg = true)]
    cmd: Vec<OsString>,
}

const SUBCOMMANDS: [&str; 7] = ["setup", "run", "wait", "shell", "each", "idle-check", "help"];

/// Turn `labinit [--root DIR] CMD…` (the ENTRYPOINT form) into
/// `labinit [--root DIR] run -- CMD…`, and `labinit --timeout 4h CMD` into
/// `labinit run --timeout 4h CMD`. Subcommands, help and version stay. Pure.
pub(crate) fn normalize(args: Vec<OsString>) -> Vec<OsString> {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].as_bytes();
        if a == b"--root" {
            i += 2;
        } else if a.starts_with(b"--root=") {
            i += 1;
        } else {
            break;
        }
    }
    if i >= args.len() {
        return args;
    }
    let word = args[i].as_bytes();
    let keep =
        SUBCOMMANDS.iter().any(|s| s.as_bytes() == word) || matches!(word, b"-h" | b"--help" | b"-V" | b"--version");
    if keep {
        return args;
    }
    let mut out: Vec<OsString> = args[..i].to_vec();
    out.push("run".into());
    // `--` and run's own options pass as they are; a program name gets `--`.
    if !word.starts_with(b"-") {
        out.push("--".into());
    }
    out.extend(args[i..].iter().cloned());
    out
}

/// The legacy scripts labinit stands in for, by `argv[0]`'s file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Legacy {
    SetupAndRun,
    Setup,
    SetupAndWait,
    /// The Python idle watchdog the legacy ran after setup: `wait` does both.
    Sleeper,
}

/// Whether a labinit started with `args` (its whole argv) waits: `wait`,
/// no command, or the legacy names `setup_and_wait.sh` and `sleeper`. For
/// `labinit shell`, which reads PID 1's command line to learn the idle
/// timeout in force. Pure.
pub(crate) fn waits(args: &[OsString]) -> bool {
    match args.first().and_then(|a| legacy_name(a)) {
        Some(l) => matches!(l, Legacy::SetupAndWait | Legacy::Sleeper),
        None => {
            let args = normalize(args.to_vec());
            let mut i = 1;
            while i < args.len() && args[i].as_bytes().starts_with(b"--root") {
                i += if args[i].as_bytes() == b"--root" { 2 } else { 1 };
            }
            args.get(i).is_none_or(|w| w.as_bytes() == b"wait")
        }
    }
}

/// [`waits`] for PID 1, from `/proc/1/cmdline`.
fn pid1_waits() -> bool {
    let argv: Vec<OsString> = std::fs::read("/proc/1/cmdline")
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| OsStr::from_bytes(a).to_owned())
        .collect();
    !argv.is_empty() && waits(&argv)
}

pub(crate) fn legacy_name(argv0: &OsStr) -> Option<Legacy> {
    match Path::new(argv0).file_name()?.as_bytes() {
        b"setup_and_run_command.sh" => Some(Legacy::SetupAndRun),
        b"setup.sh" => Some(Legacy::Setup),
        b"setup_and_wait.sh" => Some(Legacy::SetupAndWait),
        b"sleeper" => Some(Legacy::Sleeper),
        _ => None,
    }
}

fn fatal(f: Fatal) -> i32 {
    log::error(&f.message);
    f.code
}

/// Whether `program` (looked up in PATH) is this very binary: then
/// `labinit /opt/lab/setup_and_run_command.sh …` (ENTRYPOINT plus a legacy
/// `command:`) is handled here instead of starting a second labinit.
fn is_self(program: &OsStr, env: &Env) -> bool {
    job::program_candidates(program, env.get("PATH"))
        .into_iter()
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
        .is_some_and(|p| nesting::is_this_binary(&p))
}

/// labinit's `main`: returns the exit code. The only place that reads the
/// process environment ([`Env`]); everything below is handed it.
pub fn main() -> i32 {
    if let Err(f) = privileges::refuse_setuid_binary() {
        return fatal(f);
    }
    let env = Env::new(std::env::vars_os().collect(), std::env::current_dir().ok(), std::env::current_exe());
    dispatch(&env, std::env::args_os().collect(), 0)
}

/// Runs the command line `args` (argv, `argv[0]` included): the legacy
/// names, then the subcommands ([`run::run`], [`run::wait`],
/// [`run::shell`], …). Returns the exit code.
fn dispatch(env: &Env, args: Vec<OsString>, depth: u8) -> i32 {
    let argv0 = args.first().cloned().unwrap_or_default();
    match legacy_name(&argv0) {
        Some(Legacy::SetupAndRun) => {
            let words: Vec<String> = args[1..].iter().map(|a| a.to_string_lossy().into_owned()).collect();
            if words.is_empty() {
                log::error("setup_and_run_command.sh needs the command as one string, e.g. setup_and_run_command.sh 'cd /data && python train.py'");
                return exit::CONFIG;
            }
            // Several words are joined as the legacy "$*" would be.
            let req = Request {
                root: None,
                command: Command::Shell(words.join(" ")),
                legacy: true,
                options: Options::default(),
            };
            return run::run(env, req);
        }
        Some(Legacy::Setup) => return setup_only(env, config::root(None, env)),
        Some(Legacy::SetupAndWait | Legacy::Sleeper) => return run::wait(env, None),
        None => {}
    }
    let cli = match Cli::try_parse_from(normalize(args)) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { exit::CONFIG } else { 0 };
        }
    };
    let root = cli.root;
    match cli.command {
        None | Some(Sub::Wait) => run::wait(env, root),
        Some(Sub::Shell(a)) => run::shell(env, config::root(root, env), a.cmd, pid1_waits()),
        Some(Sub::IdleCheck { checks }) => crate::init::idle::bench(checks, &|n| env.lossy(n)),
        Some(Sub::Each(a)) => {
            if nesting::outer_supervisor(env).is_some() {
                // Inside a labinit job: already the user, already supervised.
                let grace = match a.grace.as_deref().map(each::parse_grace).transpose() {
                    Ok(g) => g.unwrap_or(each::DEFAULT_FAIL_FAST_GRACE),
                    Err(e) => return fatal(Fatal::config(e)),
                };
                return match each::Plan::new(a.commands, a.names, a.fail_fast, grace) {
                    Ok(plan) => each::run(&plan, env.get("SHELL")),
                    Err(e) => fatal(Fatal::config(e)),
                };
            }
            // Anywhere else it is the job: set up, drop privileges, supervise.
            let command = match each_command(env, a.fail_fast, &a.names, a.grace.as_deref(), &a.commands) {
                Ok(c) => c,
                Err(f) => return fatal(f),
            };
            run::run(env, Request { root, command, legacy: false, options: Options::default() })
        }
        Some(Sub::Setup) => setup_only(env, config::root(root, env)),
        Some(Sub::Run(a)) => {
            let options = Options {
                timeout: a.timeout,
                kill_after: a.kill_after,
                grace: a.grace,
                preserve_status: a.preserve_status,
            };
            let command = match a.string {
                Some(s) => Command::Shell(s),
                None if a.each => {
                    let cmds: Vec<String> = a.cmd.iter().map(|c| c.to_string_lossy().into_owned()).collect();
                    match each_command(env, a.fail_fast, &[], None, &cmds) {
                        Ok(c) => c,
                        Err(f) => return fatal(f),
                    }
                }
                None => {
                    // ENTRYPOINT labinit + CMD /opt/lab/<legacy name>: one labinit.
                    if depth == 0 && options.is_empty() && a.cmd.first().is_some_and(|p| is_self(p, env)) {
                        return dispatch(env, a.cmd, depth + 1);
                    }
                    job::as_command(a.cmd, env.get("PATH"))
                }
            };
            run::run(env, Request { root, command, legacy: false, options })
        }
    }
}

/// The job's command for `run --each` / a top-level `each`: this binary's
/// `each` subcommand, which then finds the supervisor and runs the commands.
/// The arguments are checked here, before anything is set up.
fn each_command(
    env: &Env,
    fail_fast: bool,
    names: &[String],
    grace: Option<&str>,
    cmds: &[String],
) -> Result<Command, Fatal> {
    let g = grace.map(each::parse_grace).transpose().map_err(Fatal::config)?;
    each::Plan::new(cmds.to_vec(), names.to_vec(), fail_fast, g.unwrap_or(each::DEFAULT_FAIL_FAST_GRACE))
        .map_err(Fatal::config)?;
    let me = env.exe().map_err(|e| Fatal::config(format!("each: {e}")))?;
    let mut argv: Vec<OsString> = vec![me.as_os_str().to_owned(), "each".into()];
    if fail_fast {
        argv.push("--fail-fast".into());
    }
    for n in names {
        argv.push("--name".into());
        argv.push(n.into());
    }
    if let Some(g) = grace {
        argv.push("--grace".into());
        argv.push(g.into());
    }
    argv.push("--".into());
    argv.extend(cmds.iter().map(OsString::from));
    Ok(Command::Argv(argv))
}

/// `labinit setup` / `setup.sh`: set up and exit (0, or setup's code).
fn setup_only(env: &Env, root: PathBuf) -> i32 {
    if let Some(outer) = nesting::outer_supervisor(env) {
        log::info(format!("already set up by labinit (pid {outer}); nothing to do"));
        return 0;
    }
    match setup::setup(&root, &env.strings()) {
        Ok(_) => 0,
        Err(f) => fatal(f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn which_command_lines_wait() {
        let w = |a: &[&str]| waits(&v(a));
        assert!(w(&["/opt/lab/labinit"]));
        assert!(w(&["/opt/lab/labinit", "wait"]));
        assert!(w(&["/opt/lab/labinit", "--root", "/x", "wait"]));
        assert!(w(&["/opt/lab/labinit", "--root=/x"]));
        assert!(w(&["/opt/lab/setup_and_wait.sh"]));
        assert!(w(&["sleeper"]));
        assert!(!w(&["/opt/lab/labinit", "run", "--", "jupyter", "lab"]));
        assert!(!w(&["/opt/lab/labinit", "jupyter", "lab"]));
        assert!(!w(&["/opt/lab/labinit", "--root", "/x", "python", "wait"]));
        assert!(!w(&["/opt/lab/setup_and_run_command.sh", "jupyter lab"]));
        assert!(!w(&["/opt/lab/setup.sh"]));
    }

    #[test]
    fn entrypoint_form_becomes_run() {
        assert_eq!(
            normalize(v(&["labinit", "python3", "-u", "x.py"])),
            v(&["labinit", "run", "--", "python3", "-u", "x.py"])
        );
        assert_eq!(
            normalize(v(&["labinit", "--root", "/t", "sleep", "1"])),
            v(&["labinit", "--root", "/t", "run", "--", "sleep", "1"])
        );
        assert_eq!(normalize(v(&["labinit", "--timeout", "4h", "x"])), v(&["labinit", "run", "--timeout", "4h", "x"]));
        assert_eq!(normalize(v(&["labinit", "--", "x"])), v(&["labinit", "run", "--", "x"]));
        assert_eq!(normalize(v(&["labinit", "-c", "true"])), v(&["labinit", "run", "-c", "true"]));
    }

    #[test]
    fn subcommands_stay() {
        for args in [
            &["labinit"][..],
            &["labinit", "run", "x"],
            &["labinit", "setup"],
            &["labinit", "--root=/t", "run", "--", "x"],
            &["labinit", "--help"],
            &["labinit", "-V"],
            &["labinit", "wait"],
        ] {
            assert_eq!(normalize(v(args)), v(args));
        }
    }

    #[test]
    fn parses_run_options_and_command() {
        let c = Cli::try_parse_from(normalize(v(&[
            "labinit",
            "run",
            "--timeout",
            "4h",
            "--grace=5s",
            "python3",
            "--lr",
            "0.1",
        ])))
        .unwrap();
        let Some(Sub::Run(a)) = c.command else { panic!("not run") };
        assert_eq!(a.timeout.as_deref(), Some("4h"));
        assert_eq!(a.grace.as_deref(), Some("5s"));
        assert_eq!(a.cmd, v(&["python3", "--lr", "0.1"]));
        let c = Cli::try_parse_from(v(&["labinit", "run", "-c", "cd /x && make"])).unwrap();
        let Some(Sub::Run(a)) = c.command else { panic!("not run") };
        assert_eq!(a.string.as_deref(), Some("cd /x && make"));
        assert!(Cli::try_parse_from(v(&["labinit", "run", "-c", "x", "y"])).is_err());
        let c = Cli::try_parse_from(normalize(v(&["labinit", "sleep", "--timeout", "1"]))).unwrap();
        let Some(Sub::Run(a)) = c.command else { panic!("not run") };
        assert_eq!(a.timeout, None, "options after CMD belong to CMD");
        assert_eq!(a.cmd, v(&["sleep", "--timeout", "1"]));
    }

    #[test]
    fn wait_shell_and_default() {
        assert!(Cli::try_parse_from(v(&["labinit"])).unwrap().command.is_none());
        assert!(Cli::try_parse_from(v(&["labinit", "--root", "/t"])).unwrap().command.is_none());
        assert!(matches!(Cli::try_parse_from(v(&["labinit", "wait"])).unwrap().command, Some(Sub::Wait)));
        let c = Cli::try_parse_from(normalize(v(&["labinit", "shell", "--", "sh", "-c", "id -u"]))).unwrap();
        let Some(Sub::Shell(a)) = c.command else { panic!("not shell") };
        assert_eq!(a.cmd, v(&["sh", "-c", "id -u"]));
        let c = Cli::try_parse_from(normalize(v(&["labinit", "shell"]))).unwrap();
        let Some(Sub::Shell(a)) = c.command else { panic!("not shell") };
        assert!(a.cmd.is_empty());
        let c = Cli::try_parse_from(normalize(v(&["labinit", "shell", "ls", "-l"]))).unwrap();
        let Some(Sub::Shell(a)) = c.command else { panic!("not shell") };
        assert_eq!(a.cmd, v(&["ls", "-l"]));
    }

    #[test]
    fn legacy_names() {
        assert_eq!(legacy_name(OsStr::new("/opt/lab/setup_and_run_command.sh")), Some(Legacy::SetupAndRun));
        assert_eq!(legacy_name(OsStr::new("setup.sh")), Some(Legacy::Setup));
        assert_eq!(legacy_name(OsStr::new("/opt/lab/setup_and_wait.sh")), Some(Legacy::SetupAndWait));
        assert_eq!(legacy_name(OsStr::new("/usr/local/bin/sleeper")), Some(Legacy::Sleeper));
        assert_eq!(legacy_name(OsStr::new("/opt/lab/labinit")), None);
    }
}
