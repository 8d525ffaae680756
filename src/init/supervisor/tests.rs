//! Every transition of the supervisor, driven through the fake OS
//! (`fake.rs`): virtual time, no root, no real process. Each case has a
//! negative control: the same script without the one thing that makes the
//! transition happen. The namespace suites (tests/supervise.rs, signals.rs,
//! idle.rs, services.rs) prove the same end to end with real processes.

use std::time::Duration;

use nix::errno::Errno;
use nix::libc::{SIGCHLD, SIGCONT, SIGHUP, SIGINT, SIGKILL, SIGTERM, SIGUSR1, SIGWINCH};

use super::deliver::job_of;
use super::fake::{Fake, Happening, Reaction};
use super::*;
use crate::init::duration::show;
use crate::init::exit::{self, Exit};
use crate::init::idle::IdleConfig;
use crate::init::procfs::ProcStat;
use crate::init::services::Services;

/// labinit as a subreaper (pid 10), the main process 11 in a session of its
/// own.
const ME: i32 = 10;
const MAIN: i32 = 11;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn policy(grace: u64) -> Policy {
    Policy { grace: secs(grace), ..Policy::default() }
}

fn timeout(after: u64, grace: u64, preserve_status: bool) -> Policy {
    Policy { timeout: Some(secs(after)), preserve_status, ..policy(grace) }
}

/// The fake with labinit and its main process, which reacts to stop signals
/// with `main`.
fn job(main: Reaction) -> Fake {
    let mut f = Fake::new(ME);
    f.add(MAIN, ME, MAIN, main);
    f
}

/// Supervise `main` (`None`: `wait`) until the end; the exit code and the
/// fake afterwards.
fn run(f: Fake, main: Option<i32>, policy: Policy) -> (i32, Fake) {
    finish(Supervisor::with_os(f, main, policy, false))
}

fn finish(mut s: Supervisor<Fake>) -> (i32, Fake) {
    let code = s.supervise();
    (code, s.os)
}

/// The last log line, which names the exit code.
fn last(f: &Fake) -> &str {
    f.log.last().map(String::as_str).unwrap_or("")
}

#[test]
fn main_exits_on_its_own_and_nothing_is_left() {
    let mut f = job(Reaction::Dies);
    f.at(secs(3), Happening::Exits(MAIN, Exit::Code(3)));
    let (code, f) = run(f, Some(MAIN), policy(20));
    assert_eq!(code, 3);
    assert!(f.kills.is_empty(), "nothing to stop: {:?}", f.kills);
    assert_eq!(f.elapsed(), secs(3));
    assert_eq!(last(&f), format!("exiting with code 3; the job ran for {}", show(secs(3))));
    assert!(f.logged("the main process (pid 11) exited with code 3"));
}

#[test]
fn main_exits_while_others_linger() {
    // 12: a background child of the main process, orphaned when it exits.
    let mut f = job(Reaction::Dies);
    f.add(12, MAIN, MAIN, Reaction::Dies).at(secs(2), Happening::Exits(MAIN, Exit::Code(3)));
    let (code, f) = run(f, Some(MAIN), policy(20));
    assert_eq!(code, 3, "the main process's code, not the orphan's");
    assert_eq!(f.got(12), vec![SIGTERM], "dead before the SIGCONT");
    assert!(f.logged(&format!(
        "the main process exited with code 3; sent SIGTERM to the 1 remaining process(es) of the job; SIGKILL in {}",
        show(secs(20))
    )));
    assert_eq!(f.first_kill(SIGKILL), None);
    assert_eq!(f.elapsed(), secs(2), "the orphan went at once: no waiting for the grace");

    // An orphan that ignores SIGTERM is killed when the grace expires.
    let mut f = job(Reaction::Dies);
    f.add(12, MAIN, MAIN, Reaction::Ignores).at(secs(2), Happening::Exits(MAIN, Exit::Code(3)));
    let (code, f) = run(f, Some(MAIN), policy(20));
    assert_eq!(code, 3);
    assert_eq!(f.got(12), vec![SIGTERM, SIGCONT, SIGKILL]);
    assert_eq!(f.first_kill(SIGKILL).map(|k| k.at), Some(secs(22)));
}

#[test]
fn stop_signal_goes_to_the_whole_job_and_ends_with_its_code() {
    // 12: the main process's child in a group of its own; 13: a double-forked
    // orphan already adopted by labinit; 20: not a descendant (subreaper).
    let mut f = job(Reaction::Dies);
    f.add(12, MAIN, MAIN, Reaction::Dies)
        .add(13, ME, 13, Reaction::Dies)
        .add(20, 1, 20, Reaction::Dies)
        .at(secs(5), Happening::Signal(SIGTERM));
    let (code, f) = run(f, Some(MAIN), policy(20));
    assert_eq!(code, exit::SIGNAL_BASE + SIGTERM);
    for pid in [MAIN, 12, 13] {
        assert_eq!(f.got(pid), vec![SIGTERM], "pid {pid}");
    }
    assert!(f.got(20).is_empty(), "outside the job: {:?}", f.got(20));
    assert!(f.logged("received SIGTERM: sent it to the job (3 process(es))"));
    assert_eq!(f.first_kill(SIGKILL), None);
    assert_eq!(last(&f), format!("exiting with code 143; the job ran for {}", show(secs(5))));

    // Negative control: without the signal nobody gets anything.
    let mut f = job(Reaction::Dies);
    f.add(12, MAIN, MAIN, Reaction::Dies).at(secs(4), Happening::Exits(12, Exit::Code(0)));
    f.at(secs(5), Happening::Exits(MAIN, Exit::Code(0)));
    let (code, f) = run(f, Some(MAIN), policy(20));
    assert_eq!(code, 0);
    assert!(f.delivered.is_empty(), "{:?}", f.delivered);
}

#[test]
fn as_pid1_the_stop_signal_is_one_kill_of_every_process() {
    let mut f = Fake::new(1);
    f.add(7, 1, 7, Reaction::Dies).add(8, 7, 7, Reaction::Dies).add(9, 0, 9, Reaction::Dies);
    f.at(secs(1), Happening::Signal(SIGINT));
    let (code, f) = run(f, Some(7), policy(20));
    assert_eq!(code, exit::SIGNAL_BASE + SIGINT);
    assert_eq!(f.kills[0].pid, -1, "kill(-1): atomic with respect to fork");
    // 9 entered with setns (`kubectl exec`): signalled, not waited for.
    for pid in [7, 8, 9] {
        assert_eq!(f.got(pid), vec![SIGINT], "pid {pid}");
    }
}

#[test]
fn as_pid1_with_services_the_job_is_signalled_by_pid_and_the_services_wait() {
    // 30 leads a service session; 7 is the job, 9 a `kubectl exec` session.
    let mut f = Fake::new(1);
    f.add(7, 1, 7, Reaction::Dies).add(9, 0, 9, Reaction::Dies).add(30, 1, 30, Reaction::Dies);
    f.at(secs(1), Happening::Signal(SIGTERM));
    let s = Supervisor::with_os(f, Some(7), policy(20), false).with_services(Services::in_sessions(vec![30]), secs(5));
    let (code, f) = finish(s);
    assert_eq!(code, 143);
    assert!(f.kills.iter().all(|k| k.pid != -1), "kill(-1) would reach the services: {:?}", f.kills);
    assert_eq!(f.got(7), vec![SIGTERM]);
    assert_eq!(f.got(9), vec![SIGTERM]);
    let job_term = f.kills.iter().find(|k| k.pid == 7).expect("job signalled");
    let service_term = f.kills.iter().position(|k| k.pid == 30).expect("service stopped");
    assert!(f.kills.iter().position(|k| k == job_term).unwrap() < service_term, "the job first: {:?}", f.kills);
}

#[test]
fn a_stop_signal_before_the_timeout_decides_the_code() {
    let script = |signal: bool| {
        let mut f = job(Reaction::Dies);
        if signal {
            f.at(secs(5), Happening::Signal(SIGTERM));
        }
        run(f, Some(MAIN), timeout(10, 20, false))
    };
    let (code, f) = script(true);
    assert_eq!(code, 143, "the job's code, not the timeout's");
    assert!(!f.logged("timeout of"), "the timeout never fires once the job stops: {:?}", f.log);
    // Negative control: without the signal the timeout ends it.
    assert_eq!(script(false).0, exit::TIMEOUT);
}

#[test]
fn a_term_while_killing_goes_to_the_job_again() {
    // Stuck: the job is still there after SIGKILL; another TERM arrives meanwhile.
    let mut f = job(Reaction::Stuck);
    f.at(secs(1), Happening::Signal(SIGTERM)).at(secs(8), Happening::Signal(SIGTERM));
    let (code, f) = run(f, Some(MAIN), policy(5));
    assert_eq!(code, 137);
    assert_eq!(f.got(MAIN), vec![SIGTERM, SIGCONT, SIGKILL, SIGTERM, SIGCONT]);
    assert!(f.logged("received SIGTERM again: sent it to the job (1 process(es))"));
    // The deadline of the Killing phase is unchanged by it.
    assert_eq!(f.elapsed(), secs(1) + secs(5) + KILL_WAIT);
}

#[test]
fn a_second_term_during_the_grace_is_passed_on_and_keeps_the_deadline() {
    let script = |second: bool| {
        let mut f = job(Reaction::Ignores);
        f.at(secs(1), Happening::Signal(SIGTERM));
        if second {
            f.at(secs(6), Happening::Signal(SIGTERM));
        }
        run(f, Some(MAIN), policy(20))
    };
    let (code, f) = script(true);
    assert_eq!(f.got(MAIN), vec![SIGTERM, SIGCONT, SIGTERM, SIGCONT, SIGKILL]);
    assert!(f.logged("received SIGTERM again: sent it to the job (1 process(es))"));
    assert_eq!(f.first_kill(SIGKILL).map(|k| k.at), Some(secs(21)), "SIGKILL one grace after the first TERM");
    assert_eq!(code, 137);
    // Negative control: one TERM, the same SIGKILL time, never earlier.
    let (code, f) = script(false);
    assert_eq!(f.got(MAIN), vec![SIGTERM, SIGCONT, SIGKILL]);
    assert!(!f.logged("again"));
    assert_eq!(f.first_kill(SIGKILL).map(|k| k.at), Some(secs(21)));
    assert_eq!(code, 137);
}

#[test]
fn grace_expiry_kills_what_is_left_of_the_job() {
    // The main process goes on TERM; its child 12 ignores it.
    let script = |child: Reaction| {
        let mut f = job(Reaction::Dies);
        f.add(12, MAIN, MAIN, child).at(secs(1), Happening::Signal(SIGTERM));
        run(f, Some(MAIN), policy(7))
    };
    let (code, f) = script(Reaction::Ignores);
    assert_eq!(code, 143, "the main process's own end decides");
    assert_eq!(f.got(12), vec![SIGTERM, SIGCONT, SIGKILL]);
    assert_eq!(f.got(MAIN), vec![SIGTERM], "gone before the SIGKILL");
    assert_eq!(f.first_kill(SIGKILL).map(|k| k.at), Some(secs(8)));
    assert!(f.logged("warning: grace period expired: sent SIGKILL to 1 process(es) of the job"));
    assert!(!f.alive(12));
    // Negative control: a child that obeys TERM never sees SIGKILL.
    let (code, f) = script(Reaction::Dies);
    assert_eq!(code, 143);
    assert_eq!(f.first_kill(SIGKILL), None);
    assert_eq!(f.elapsed(), secs(1));
}

#[test]
fn a_process_stuck_after_sigkill_is_given_up_on() {
    let mut f = job(Reaction::Stuck);
    f.at(secs(1), Happening::Signal(SIGTERM));
    let (code, f) = run(f, Some(MAIN), policy(5));
    assert_eq!(code, 137, "never reaped: counted as killed");
    assert_eq!(f.elapsed(), secs(1) + secs(5) + KILL_WAIT);
    assert!(f.logged(&format!("processes of the job are still there {} after SIGKILL", show(KILL_WAIT))));
}

#[test]
fn timeout_without_preserve_status_is_124_or_137() {
    // The main process obeys the TERM of the timeout: 124.
    let (code, f) = run(job(Reaction::Dies), Some(MAIN), timeout(10, 20, false));
    assert_eq!(code, exit::TIMEOUT);
    assert_eq!(f.first_kill(SIGTERM).map(|k| k.at), Some(secs(10)));
    assert!(f.logged(&format!(
        "timeout of {} expired: sent SIGTERM to the job (1 process(es)); SIGKILL in {}",
        show(secs(10)),
        show(secs(20))
    )));
    assert_eq!(last(&f), format!("exiting with code 124 (timeout); the job ran for {}", show(secs(10))));
    // It ignores it: SIGKILL after --kill-after, 137.
    let p = Policy { kill_after: Some(secs(3)), ..timeout(10, 20, false) };
    let (code, f) = run(job(Reaction::Ignores), Some(MAIN), p);
    assert_eq!(code, exit::TIMEOUT_KILLED);
    assert_eq!(f.first_kill(SIGKILL).map(|k| k.at), Some(secs(13)), "--kill-after, not --grace");
    assert_eq!(last(&f), format!("exiting with code 137 (timeout, killed); the job ran for {}", show(secs(13))));
    // The main process obeys but its child needs SIGKILL: 137 too.
    let mut f = job(Reaction::Dies);
    f.add(12, MAIN, MAIN, Reaction::Ignores);
    let (code, _) = run(f, Some(MAIN), timeout(10, 20, false));
    assert_eq!(code, exit::TIMEOUT_KILLED);
    // Negative control: the job ends before the timeout: its own code.
    let mut f = job(Reaction::Dies);
    f.at(secs(9), Happening::Exits(MAIN, Exit::Code(0)));
    let (code, f) = run(f, Some(MAIN), timeout(10, 20, false));
    assert_eq!(code, 0);
    assert!(f.kills.is_empty());
}

#[test]
fn timeout_with_preserve_status_is_the_jobs_own_status() {
    // The main process exits 5 a second after the timeout's TERM.
    let script = |preserve: bool| {
        let mut f = job(Reaction::Ignores);
        f.at(secs(11), Happening::Exits(MAIN, Exit::Code(5)));
        run(f, Some(MAIN), timeout(10, 20, preserve))
    };
    let (code, f) = script(true);
    assert_eq!(code, 5);
    assert_eq!(last(&f), format!("exiting with code 5; the job ran for {}", show(secs(11))));
    assert_eq!(script(false).0, exit::TIMEOUT, "negative control: without it, 124");
    // Killed by the TERM: 143; a child that needed SIGKILL does not change it.
    let mut f = job(Reaction::Dies);
    f.add(12, MAIN, MAIN, Reaction::Ignores);
    assert_eq!(run(f, Some(MAIN), timeout(10, 20, true)).0, 143);
    // The main process itself needed SIGKILL: 137 either way.
    assert_eq!(run(job(Reaction::Ignores), Some(MAIN), timeout(10, 20, true)).0, 137);
}

fn idle_config() -> IdleConfig {
    IdleConfig { timeout: secs(60), interval: secs(10), log_file: None, ..IdleConfig::default() }
}

#[test]
fn idle_expiry_stops_the_job_and_ends_with_zero() {
    let script = |idle: bool| {
        let mut f = job(Reaction::Dies);
        f.at(secs(300), Happening::Exits(MAIN, Exit::Code(3)));
        if idle {
            f.idle_from(Duration::ZERO);
        }
        finish(Supervisor::with_os(f, Some(MAIN), policy(20), false).with_idle(Some(idle_config())))
    };
    let (code, f) = script(true);
    assert_eq!(code, 0);
    assert!(f.log[0]
        .starts_with(&format!("idle watchdog: on; the container stops after {} without CPU use", show(secs(60)))));
    assert!(f.log[0].contains(&format!("(checked every {})", show(secs(10)))), "{}", f.log[0]);
    let term = f.first_kill(SIGTERM).expect("the job was stopped").at;
    assert!(term >= secs(60) && term <= secs(80), "after the idle timeout: {term:?}");
    assert!(f.logged("stopping the container"));
    assert_eq!(last(&f), format!("exiting with code 0 (idle); the job ran for {}", show(term)));
    // Negative control: always busy, the job ends on its own with its code.
    let (code, f) = script(false);
    assert_eq!(code, 3);
    assert_eq!(f.first_kill(SIGTERM), None);
    assert_eq!(f.elapsed(), secs(300));
}

#[test]
fn wait_mode_ends_with_zero_on_term_or_idle() {
    // A user's login (12) runs; SIGTERM ends the container.
    let mut f = Fake::new(ME);
    f.add(12, ME, 12, Reaction::Dies).at(secs(30), Happening::Signal(SIGTERM));
    let (code, f) = run(f, None, policy(20));
    assert_eq!(code, 0);
    assert_eq!(f.got(12), vec![SIGTERM]);
    assert_eq!(last(&f), format!("exiting with code 0 (wait ended); up for {}", show(secs(30))));
    // The idle watchdog ends it.
    let mut f = Fake::new(ME);
    f.idle_from(Duration::ZERO);
    let (code, f) = finish(Supervisor::with_os(f, None, policy(20), false).with_idle(Some(idle_config())));
    assert_eq!(code, 0);
    assert!(last(&f).starts_with("exiting with code 0 (idle); up for "), "{}", last(&f));
    // Negative control: SIGHUP passes on but does not end the wait.
    let mut f = Fake::new(ME);
    f.add(12, ME, 12, Reaction::Ignores)
        .at(secs(5), Happening::Signal(SIGHUP))
        .at(secs(40), Happening::Signal(SIGTERM))
        .at(secs(41), Happening::Exits(12, Exit::Code(0)));
    let (code, f) = run(f, None, policy(20));
    assert_eq!(code, 0);
    assert_eq!(f.got(12), vec![SIGHUP, SIGTERM, SIGCONT]);
    assert_eq!(f.elapsed(), secs(41));
}

#[test]
fn a_job_that_never_started_stops_the_services_and_keeps_its_code() {
    // No services: nothing to do at all.
    let mut s = Supervisor::with_os(Fake::new(ME), None, policy(20), false);
    s.not_started(exit::NOT_EXECUTABLE);
    let (code, f) = finish(s);
    assert_eq!(code, exit::NOT_EXECUTABLE);
    assert!(f.kills.is_empty() && f.log.is_empty(), "{:?} {:?}", f.kills, f.log);
    assert_eq!(Supervisor::with_os(Fake::new(ME), None, policy(20), false).end_now(127), 127);
    // A running service (session 30) is stopped; the code stays.
    let mut f = Fake::new(ME);
    f.add(30, ME, 30, Reaction::Dies);
    let mut s = Supervisor::with_os(f, None, policy(20), false).with_services(Services::in_sessions(vec![30]), secs(5));
    s.not_started(exit::NOT_FOUND);
    let (code, f) = finish(s);
    assert_eq!(code, exit::NOT_FOUND);
    assert_eq!(f.got(30), vec![SIGTERM]);
    assert!(!f.logged("exiting with code"), "labinit's own error line is the last: {:?}", f.log);
}

#[test]
fn services_are_stopped_after_the_job() {
    // Service 30 (its session) with a child 31 that ignores TERM; the job's
    // main process ignores TERM for the whole grace.
    let mut f = job(Reaction::Ignores);
    f.add(30, ME, 30, Reaction::Dies).add(31, 30, 30, Reaction::Ignores).at(secs(1), Happening::Signal(SIGTERM));
    let s =
        Supervisor::with_os(f, Some(MAIN), policy(10), false).with_services(Services::in_sessions(vec![30]), secs(4));
    let (code, f) = finish(s);
    assert_eq!(code, 137, "the job's code; services never change it");
    let job_kill = f.kills.iter().find(|k| k.pid == MAIN && k.sig == SIGKILL).expect("main killed").at;
    let service_term = f.kills.iter().find(|k| k.pid == 30 && k.sig == SIGTERM).expect("service stopped").at;
    assert_eq!(job_kill, secs(11));
    assert!(service_term >= job_kill, "services only after the job: {service_term:?} < {job_kill:?}");
    assert!(f.got(MAIN).iter().all(|s| *s != SIGCHLD));
    assert!(f.got(30).starts_with(&[SIGTERM]) && f.got(31) == vec![SIGTERM, SIGCONT, SIGKILL]);
    assert_eq!(f.kills.iter().find(|k| k.pid == 31 && k.sig == SIGKILL).map(|k| k.at), Some(service_term + secs(4)));
    assert!(f.logged(&format!(
        "the job is over; sent SIGTERM to the services (2 process(es)); SIGKILL in {}",
        show(secs(4))
    )));
    assert!(f.logged("warning: service grace expired: sent SIGKILL to 1 service process(es)"));
    // Negative control: the services got nothing while the job ran.
    assert!(f.kills.iter().filter(|k| k.at < job_kill).all(|k| k.pid != 30 && k.pid != 31));
}

#[test]
fn a_second_term_after_the_job_goes_to_the_services() {
    let mut f = job(Reaction::Dies);
    f.add(30, ME, 30, Reaction::Ignores)
        .at(secs(1), Happening::Signal(SIGTERM))
        .at(secs(2), Happening::Signal(SIGTERM));
    let s =
        Supervisor::with_os(f, Some(MAIN), policy(10), false).with_services(Services::in_sessions(vec![30]), secs(4));
    let (code, f) = finish(s);
    assert_eq!(code, 143);
    assert_eq!(f.got(30), vec![SIGTERM, SIGCONT, SIGTERM, SIGKILL]);
    assert!(f.logged("received SIGTERM again: sent it to the services (1 process(es))"));
    assert_eq!(f.got(MAIN), vec![SIGTERM], "the job, gone, gets nothing more");
}

#[test]
fn other_signals_go_to_the_main_group_or_the_main_process() {
    let mut f = job(Reaction::Dies);
    f.add(12, MAIN, MAIN, Reaction::Dies)
        .add(13, MAIN, MAIN, Reaction::Dies)
        .group(12, MAIN)
        .at(secs(1), Happening::Signal(SIGUSR1))
        .at(secs(2), Happening::Signal(SIGWINCH))
        .at(secs(3), Happening::Signal(libc::SIGALRM))
        .at(secs(4), Happening::Exits(12, Exit::Code(0)))
        .at(secs(4), Happening::Exits(13, Exit::Code(0)))
        .at(secs(5), Happening::Exits(MAIN, Exit::Code(0)));
    let (code, f) = run(f, Some(MAIN), policy(20));
    assert_eq!(code, 0);
    assert_eq!(f.got(MAIN), vec![SIGUSR1, SIGWINCH, libc::SIGALRM]);
    assert_eq!(f.got(12), vec![SIGUSR1, SIGWINCH], "in the main group");
    assert!(f.got(13).is_empty(), "negative control: another group");
    assert!(f.logged("received SIGUSR1: sent it to the main process group 11"));
    assert!(!f.logged("received SIGWINCH"), "window changes are not logged");
    assert!(!f.logged("cannot send"), "{:?}", f.log);

    // The main process left its group (a shell's job control): the group
    // signal finds nobody and the main process gets it directly, quietly.
    let mut f = job(Reaction::Dies);
    f.group(MAIN, 99).at(secs(1), Happening::Signal(SIGUSR1)).at(secs(2), Happening::Exits(MAIN, Exit::Code(0)));
    let (_, f) = run(f, Some(MAIN), policy(20));
    assert_eq!(f.got(MAIN), vec![SIGUSR1]);
    assert_eq!(f.kills.iter().map(|k| k.pid).collect::<Vec<_>>(), vec![-MAIN, MAIN]);
    assert!(!f.logged("cannot send"), "ESRCH is normal: {:?}", f.log);
    // A refused signal is logged with its errno.
    let mut f = job(Reaction::Dies);
    f.refuse(-MAIN, Errno::EPERM).at(secs(1), Happening::Signal(SIGUSR1));
    f.refuse(MAIN, Errno::EPERM).at(secs(2), Happening::Exits(MAIN, Exit::Code(0)));
    let (_, f) = run(f, Some(MAIN), policy(20));
    assert!(f.logged("warning: cannot send SIGUSR1 to the main process group: pid 11: EPERM"), "{:?}", f.log);
}

#[test]
fn failed_kills_are_logged_with_their_errno_but_esrch_is_not() {
    let script = |errno: Errno| {
        let mut f = job(Reaction::Dies);
        f.add(12, MAIN, MAIN, Reaction::Dies).refuse(12, errno).at(secs(1), Happening::Signal(SIGTERM));
        f.at(secs(2), Happening::Exits(12, Exit::Code(0)));
        run(f, Some(MAIN), policy(20))
    };
    let (_, f) = script(Errno::EPERM);
    let warnings: Vec<&String> = f.log.iter().filter(|l| l.starts_with("warning: cannot send")).collect();
    assert_eq!(warnings.len(), 2, "one line per delivery (TERM, CONT): {warnings:?}");
    assert!(warnings[0].contains("SIGTERM") && warnings[0].contains("pid 12") && warnings[0].contains("EPERM"));
    // Negative control: a process already gone is normal.
    let (_, f) = script(Errno::ESRCH);
    assert!(!f.logged("cannot send"), "{:?}", f.log);
}

#[test]
fn terminal_and_startup_pages() {
    // A job longer than RELEASE_AFTER has the start-up pages dropped, and the
    // terminal goes back to labinit's group at the end.
    let mut f = job(Reaction::Dies);
    f.at(RELEASE_AFTER + secs(1), Happening::Exits(MAIN, Exit::Code(0)));
    let (_, f) = finish(Supervisor::with_os(f, Some(MAIN), policy(20), true));
    assert!(f.released_pages);
    assert_eq!(f.restored_terminal, Some(MAIN));
    // Negative controls: a short job does not pay for it; without a
    // terminal nothing is given back; `wait` never takes the terminal.
    let mut f = job(Reaction::Dies);
    f.at(Duration::from_millis(10), Happening::Exits(MAIN, Exit::Code(0)));
    let (_, f) = finish(Supervisor::with_os(f, Some(MAIN), policy(20), false));
    assert!(!f.released_pages);
    assert_eq!(f.restored_terminal, None);
    let mut f = Fake::new(ME);
    f.at(secs(1), Happening::Signal(SIGTERM));
    assert_eq!(finish(Supervisor::with_os(f, None, policy(20), true)).1.restored_terminal, None);
}

/// Random scripts nobody wrote down (a fixed-seed generator, so a failure
/// repeats): job trees of 1–6 processes, each dying, ignoring or stuck, a
/// service, stop signals, exits, a timeout or none. Whatever the script,
/// supervision ends, SIGKILL never comes before a grace period has run,
/// the services get nothing while a process of the job could still end, and
/// nothing of the job that could die is left.
#[test]
fn random_scripts_keep_the_shutdown_rules() {
    let mut seed: u64 = 0x5eed_1abc;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let reactions = [Reaction::Dies, Reaction::Ignores, Reaction::Stuck];
    for case in 0..400 {
        let mut f = Fake::new(ME);
        let procs = 1 + next(6) as i32;
        let mut job = Vec::new();
        for i in 0..procs {
            let pid = MAIN + i;
            // The first is the main process; the others hang below one before.
            let parent = if i == 0 { ME } else { MAIN + next(i as u64) as i32 };
            // Stuck processes rarely: they make every case wait KILL_WAIT.
            let reaction = reactions[if next(8) == 0 { 2 } else { next(2) as usize }];
            f.add(pid, parent, MAIN, reaction);
            job.push((pid, reaction));
        }
        f.add(30, ME, 30, reactions[next(2) as usize]);
        for _ in 0..next(4) {
            let at = secs(next(40));
            match next(3) {
                0 => f.at(at, Happening::Signal([SIGTERM, SIGINT, SIGHUP][next(3) as usize])),
                1 => f.at(at, Happening::Exits(MAIN + next(procs as u64) as i32, Exit::Code(next(3) as i32))),
                _ => f.at(at, Happening::Signal(SIGUSR1)),
            };
        }
        f.at(secs(60), Happening::Exits(MAIN, Exit::Code(0)));
        let grace = 1 + next(10);
        let p = if next(2) == 0 { timeout(1 + next(30), grace, next(2) == 0) } else { policy(grace) };
        let s = Supervisor::with_os(f, Some(MAIN), p, false).with_services(Services::in_sessions(vec![30]), secs(2));
        let (code, f) = finish(s);
        let why = format!("case {case}: {job:?}, kills {:?}, log {:?}", f.kills, f.log);
        assert!((0..=255).contains(&code), "{why}");
        // SIGKILL only once a grace has run since the first SIGTERM to the job.
        if let Some(kill) = f.kills.iter().find(|k| k.sig == SIGKILL && k.pid != 30) {
            let first_term = f.kills.iter().find(|k| k.sig == SIGTERM || k.sig == SIGINT).expect(&why).at;
            assert!(kill.at >= first_term + secs(grace), "{why}");
        }
        // The services: nothing before every job process that can die has died.
        if let Some(first) = f.kills.iter().find(|k| k.pid == 30) {
            for (pid, reaction) in &job {
                if *reaction != Reaction::Stuck {
                    let died = f.deaths.iter().find(|(_, p)| p == pid).map(|(t, _)| *t);
                    assert!(died.is_some_and(|t| t <= first.at), "service signalled before {pid} ended: {why}");
                }
            }
        }
        for (pid, reaction) in &job {
            assert!(*reaction == Reaction::Stuck || !f.alive(*pid), "{pid} left alive: {why}");
        }
        assert!(!f.alive(30), "the service outlived labinit: {why}");
    }
}

fn p(pid: i32, ppid: i32) -> ProcStat {
    ProcStat {
        pid,
        name: "x".into(),
        state: b'S',
        ppid,
        pgrp: pid,
        session: pid,
        ticks: 0,
        children_ticks: 0,
        threads: 1,
        starttime: 0,
    }
}

#[test]
fn job_as_subreaper_is_descendants_only() {
    // 10 = labinit; 11 its child; 12 grandchild in another group; 20 unrelated.
    let procs = [p(1, 0), p(10, 1), p(11, 10), p(12, 11), p(13, 12), p(20, 1)];
    let mut j = job_of(&procs, 10, false, &[]);
    j.sort_unstable();
    assert_eq!(j, vec![11, 12, 13]);
}

#[test]
fn job_as_pid1_is_everything_but_services_and_zombies() {
    let mut procs = vec![p(1, 0), p(2, 1), p(3, 2), p(4, 1), p(5, 4), p(6, 0), p(7, 1), p(8, 1), p(9, 5)];
    procs[6].state = b'Z';
    // 4 leads a service session; 5 is its child; 8 an orphan of the
    // service reparented to PID 1; 9 an ssh login: a new session under 5.
    procs[4].session = 4;
    procs[7].session = 4;
    procs[8].session = 9;
    let mut j = job_of(&procs, 1, true, &[4]);
    j.sort_unstable();
    // 6 entered with setns (ppid 0); 7 is a zombie.
    assert_eq!(j, vec![2, 3, 6, 9]);
}
