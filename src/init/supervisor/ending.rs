//! How supervision ended, and what labinit then exits with. Pure: the
//! supervisor records one [`Ending`] while it runs and [`conclude`] turns it
//! into the exit code and the last log line (the README's exit-code table).

use std::time::Duration;

use nix::libc;

use crate::init::duration::show;
use crate::init::exit::{self, Exit};

/// What ended the job. The first thing that starts the shutdown decides the
/// variant; how the main process then ended is filled in when it is reaped
/// (`None`: never reaped, e.g. stuck in the kernel after SIGKILL — counted
/// as killed by SIGKILL; always `None` in `wait` mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The job could not be started: labinit ends with this code (125, 126,
    /// 127, from the launch) and its own error line, no summary line.
    NotStarted(i32),
    /// The main process ended on its own (the rest of the job was then
    /// stopped).
    MainExited(Option<Exit>),
    /// labinit received a stop signal (SIGTERM, SIGINT) and passed it on.
    StopSignal { signal: i32, main: Option<Exit> },
    /// `--timeout` expired; `killed`: SIGKILL was needed for what was left.
    Timeout { main: Option<Exit>, killed: bool },
    /// The idle watchdog stopped the container.
    Idle,
}

impl Ending {
    /// Record how the main process ended.
    pub(crate) fn with_main(self, exit: Exit) -> Ending {
        match self {
            Ending::MainExited(_) => Ending::MainExited(Some(exit)),
            Ending::StopSignal { signal, .. } => Ending::StopSignal { signal, main: Some(exit) },
            Ending::Timeout { killed, .. } => Ending::Timeout { main: Some(exit), killed },
            other => other,
        }
    }

    /// Record that labinit sent SIGKILL to processes of the job (it changes
    /// the exit code only after a timeout).
    pub(crate) fn with_kill(self) -> Ending {
        match self {
            Ending::Timeout { main, .. } => Ending::Timeout { main, killed: true },
            other => other,
        }
    }
}

/// The exit code and the last log line (`None`: labinit says nothing more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conclusion {
    pub code: i32,
    pub line: Option<String>,
}

/// labinit's exit code and last log line. Pure.
///
/// - `waiting` (`labinit wait`): always 0, whatever stopped it, so the pod
///   ends `Completed`;
/// - the idle watchdog: 0 too, so that a `restartPolicy: OnFailure` does not
///   bring an idle container back;
/// - the main process ended, on its own or after a stop signal: its code
///   (128+N for signal N; 137 when it was never reaped);
/// - timeout, coreutils `timeout` style: 124, or 137 when labinit had to
///   SIGKILL what was left; with `preserve_status` the main process's own
///   code; 137 whenever the main process itself died of SIGKILL.
///
/// `ran` is the time since supervision began, shown in whole seconds.
pub(crate) fn conclude(ending: Ending, waiting: bool, preserve_status: bool, ran: Duration) -> Conclusion {
    let killed_main = Exit::Signal(libc::SIGKILL);
    let (code, why) = match ending {
        Ending::NotStarted(code) => return Conclusion { code, line: None },
        Ending::Idle => (0, " (idle)"),
        _ if waiting => (0, " (wait ended)"),
        Ending::MainExited(main) | Ending::StopSignal { main, .. } => (main.unwrap_or(killed_main).code(), ""),
        Ending::Timeout { main, killed } => {
            let main = main.unwrap_or(killed_main);
            if main == killed_main {
                (exit::TIMEOUT_KILLED, if preserve_status { "" } else { " (timeout, killed)" })
            } else if preserve_status {
                (main.code(), "")
            } else if killed {
                (exit::TIMEOUT_KILLED, " (timeout, killed)")
            } else {
                (exit::TIMEOUT, " (timeout)")
            }
        }
    };
    let span = if waiting { "up" } else { "the job ran" };
    let ran = show(Duration::from_secs(ran.as_secs()));
    Conclusion { code, line: Some(format!("exiting with code {code}{why}; {span} for {ran}")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TERM: Option<Exit> = Some(Exit::Signal(libc::SIGTERM));
    const KILL: Option<Exit> = Some(Exit::Signal(libc::SIGKILL));

    fn code(ending: Ending, preserve: bool) -> i32 {
        conclude(ending, false, preserve, Duration::ZERO).code
    }

    fn line(ending: Ending, waiting: bool, preserve: bool, ran: Duration) -> String {
        conclude(ending, waiting, preserve, ran).line.expect("a last line")
    }

    #[test]
    fn main_exit_is_the_code_without_timeout() {
        for preserve in [false, true] {
            assert_eq!(code(Ending::MainExited(Some(Exit::Code(0))), preserve), 0);
            assert_eq!(code(Ending::MainExited(Some(Exit::Code(3))), preserve), 3);
            assert_eq!(code(Ending::MainExited(Some(Exit::Code(300 & 0xff))), preserve), 44);
            assert_eq!(code(Ending::MainExited(TERM), preserve), 143);
            assert_eq!(code(Ending::MainExited(KILL), preserve), 137);
            assert_eq!(code(Ending::MainExited(Some(Exit::Signal(libc::SIGINT))), preserve), 130);
            // Never reaped (stuck after SIGKILL): as killed.
            assert_eq!(code(Ending::MainExited(None), preserve), 137);
            // A stop signal labinit passed on: the main process's own code.
            let stopped = |main| Ending::StopSignal { signal: libc::SIGTERM, main };
            assert_eq!(code(stopped(TERM), preserve), 143);
            assert_eq!(code(stopped(Some(Exit::Code(0))), preserve), 0);
            assert_eq!(code(stopped(None), preserve), 137);
        }
    }

    #[test]
    fn timeout_follows_coreutils() {
        let t = |main, killed| Ending::Timeout { main, killed };
        assert_eq!(code(t(TERM, false), false), 124);
        assert_eq!(code(t(Some(Exit::Code(0)), false), false), 124);
        assert_eq!(code(t(TERM, false), true), 143);
        assert_eq!(code(t(Some(Exit::Code(5)), false), true), 5);
        assert_eq!(code(t(KILL, true), false), 137);
        assert_eq!(code(t(KILL, true), true), 137);
        assert_eq!(code(t(None, true), true), 137, "never reaped counts as killed");
        // The main process ended on TERM but a grandchild needed SIGKILL.
        assert_eq!(code(t(TERM, true), false), 137);
        assert_eq!(code(t(TERM, true), true), 143);
    }

    #[test]
    fn idle_and_wait_end_with_zero() {
        assert_eq!(conclude(Ending::Idle, false, false, Duration::ZERO).code, 0);
        assert_eq!(conclude(Ending::Idle, true, false, Duration::ZERO).code, 0);
        let stop = Ending::StopSignal { signal: libc::SIGTERM, main: None };
        assert_eq!(conclude(stop, true, false, Duration::ZERO).code, 0);
        assert_eq!(conclude(Ending::Timeout { main: None, killed: true }, true, false, Duration::ZERO).code, 0);
        // Negative control: the same stop in `run` mode is the job's code.
        assert_eq!(conclude(stop, false, false, Duration::ZERO).code, 137);
    }

    #[test]
    fn not_started_keeps_its_code_and_says_nothing_more() {
        for c in [exit::CONFIG, exit::NOT_EXECUTABLE, exit::NOT_FOUND] {
            assert_eq!(
                conclude(Ending::NotStarted(c), false, false, Duration::ZERO),
                Conclusion { code: c, line: None }
            );
            assert_eq!(conclude(Ending::NotStarted(c), true, true, Duration::ZERO).code, c);
        }
    }

    #[test]
    fn last_lines_name_the_reason_and_the_run_time() {
        let ran = Duration::from_millis(75_900);
        let shown = show(Duration::from_secs(75));
        assert_eq!(
            line(Ending::MainExited(Some(Exit::Code(0))), false, false, ran),
            format!("exiting with code 0; the job ran for {shown}")
        );
        assert_eq!(
            line(Ending::Timeout { main: TERM, killed: false }, false, false, ran),
            format!("exiting with code 124 (timeout); the job ran for {shown}")
        );
        assert_eq!(
            line(Ending::Timeout { main: TERM, killed: true }, false, false, ran),
            format!("exiting with code 137 (timeout, killed); the job ran for {shown}")
        );
        assert_eq!(
            line(Ending::Timeout { main: TERM, killed: true }, false, true, ran),
            format!("exiting with code 143; the job ran for {shown}")
        );
        assert_eq!(
            line(Ending::Idle, false, false, ran),
            format!("exiting with code 0 (idle); the job ran for {shown}")
        );
        assert_eq!(line(Ending::Idle, true, false, ran), format!("exiting with code 0 (idle); up for {shown}"));
        let stop = Ending::StopSignal { signal: libc::SIGTERM, main: None };
        assert_eq!(line(stop, true, false, ran), format!("exiting with code 0 (wait ended); up for {shown}"));
    }

    #[test]
    fn the_ending_records_the_main_exit_and_kills() {
        let e = Ending::Timeout { main: None, killed: false }.with_kill().with_main(Exit::Code(1));
        assert_eq!(e, Ending::Timeout { main: Some(Exit::Code(1)), killed: true });
        let e = Ending::StopSignal { signal: libc::SIGINT, main: None }.with_main(Exit::Code(2)).with_kill();
        assert_eq!(e, Ending::StopSignal { signal: libc::SIGINT, main: Some(Exit::Code(2)) });
        // Negative controls: idle and not-started ignore both.
        assert_eq!(Ending::Idle.with_main(Exit::Code(1)).with_kill(), Ending::Idle);
        assert_eq!(Ending::NotStarted(127).with_main(Exit::Code(1)), Ending::NotStarted(127));
    }
}
