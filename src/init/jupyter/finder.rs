//! The watchdog's side of the Jupyter rule: one check finds the live
//! servers, asks each ([`ask`]) within [`SERVER_DEADLINE`] and judges it,
//! remembering which servers answered so that failures are logged once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::api::{parse_kernels, parse_status, Kernel, Status};
use super::http::{get, SERVER_DEADLINE};
use super::rule::{judge, Reason};
use super::runtime::{self, Server};
use crate::init::duration;

/// Servers asked per check, at most.
pub(crate) const MAX_SERVERS: usize = 8;
/// A server whose API failed [`GIVE_UP`] checks in a row, or refused the
/// token, is asked again after this long, not at every check (each refused
/// request is a warning in the researcher's Jupyter log).
pub(crate) const RETRY: Duration = Duration::from_secs(60);
/// Failures in a row before a server counts as not answering (logged, and
/// asked again after [`RETRY`]). Fewer are taken as passing: jupyter_server
/// answers HTTP 500 to `/api/kernels` while a kernel is starting. Either
/// way, a check without an answer judges the server's processes by the
/// other rules.
pub(crate) const GIVE_UP: u32 = 3;

/// Ask a server for its status and kernels. An error says whether it is
/// lasting (the token refused) or may pass (no answer, HTTP 5xx, …).
pub(crate) fn ask(server: &Server, deadline: Instant) -> Result<(Status, Vec<Kernel>), (String, bool)> {
    let fetch = |what: &str| -> Result<String, (String, bool)> {
        let path = format!("{}api/{what}?no_track_activity=1", server.base_url);
        let r = get(server.port, &path, &server.token, deadline).map_err(|e| (e, false))?;
        match r.status {
            200 => Ok(r.body),
            401 | 403 => Err((
                format!("GET /api/{what} was refused ({}): the runtime file's token is not accepted", r.status),
                true,
            )),
            s => Err((format!("GET /api/{what} answered HTTP {s}"), false)),
        }
    };
    let status = parse_status(&fetch("status")?).map_err(|e| (e, false))?;
    let kernels = parse_kernels(&fetch("kernels")?).map_err(|e| (e, false))?;
    Ok((status, kernels))
}

/// What one check found.
#[derive(Debug, Default)]
pub(crate) struct Check {
    /// Servers whose API answered: their processes follow the Jupyter rule.
    pub(crate) servers: Vec<i32>,
    /// The first busy verdict among them.
    pub(crate) busy: Option<Reason>,
    /// Log lines for changes (a server found, or its API failing), each
    /// once per change.
    pub(crate) notes: Vec<String>,
}

/// Finds servers and asks them, remembering per server whether its API
/// answered so a failure is logged once, not at every check, and asked
/// again only after [`RETRY`].
pub(crate) struct Finder {
    dirs: Vec<PathBuf>,
    proc_root: PathBuf,
    answered: HashMap<i32, Answered>,
}

/// What a server's API did lately.
#[derive(Debug, Clone, Copy, Default)]
struct Answered {
    /// The last answer was good (its "found" line is logged).
    ok: bool,
    /// Failures in a row.
    fails: u32,
    /// Given up on until then (its failure is logged).
    retry: Option<Instant>,
}

impl Finder {
    pub(crate) fn new(dirs: Vec<PathBuf>, proc_root: PathBuf) -> Finder {
        Finder { dirs, proc_root, answered: HashMap::new() }
    }

    /// Find the servers and judge each; `now` in microseconds since the
    /// epoch, `window` the time since the previous check.
    pub(crate) fn check(&mut self, now: i64, window: Duration) -> Check {
        let mut c = Check::default();
        let found = runtime::live_servers(&self.dirs, &self.proc_root, MAX_SERVERS);
        self.answered.retain(|pid, _| found.iter().any(|(p, _)| p == pid));
        for (pid, server) in found {
            let before = self.answered.get(&pid).copied().unwrap_or_default();
            let t = Instant::now();
            if before.retry.is_some_and(|r| t < r) {
                continue;
            }
            // A bad runtime file or a refused token will not mend by itself.
            let answer = match server {
                Err(e) => Err((e, true)),
                Ok(s) => ask(&s, t + SERVER_DEADLINE)
                    .map(|a| (s.port, a))
                    .map_err(|(e, lasting)| (format!("port {}: {e}", s.port), lasting)),
            };
            let lasting = answer.as_ref().err().is_some_and(|e| e.1);
            let (after, log) = update(before, answer.is_ok(), lasting, t);
            self.answered.insert(pid, after);
            match answer {
                Ok((port, (status, kernels))) => {
                    if log == Log::Found {
                        c.notes.push(format!(
                            "idle watchdog: jupyter server (pid {pid}, port {port}) found: its kernels count as busy while they execute, and the server while clients are active"
                        ));
                    }
                    c.servers.push(pid);
                    if c.busy.is_none() {
                        c.busy = judge(pid, &status, &kernels, now, window);
                    }
                }
                Err((e, _)) => {
                    // A passing failure of a server that answered: its tree
                    // keeps the Jupyter rules (the kernel's name must not
                    // count), and it is busy for this check.
                    if after.retry.is_none() && before.ok {
                        c.servers.push(pid);
                        if c.busy.is_none() {
                            c.busy = Some(Reason::Unanswered { server: pid });
                        }
                    }
                    if log == Log::GaveUp {
                        c.notes.push(format!(
                            "idle watchdog: jupyter server (pid {pid}): cannot ask its API ({e}); its processes count by the rules for other processes (asked again every {})",
                            duration::show(RETRY)
                        ));
                    }
                }
            }
        }
        c
    }
}

/// Which line a server's answer deserves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Log {
    None,
    /// It answers (first time, or again after giving up).
    Found,
    /// It stopped answering: given up until [`RETRY`] from now.
    GaveUp,
}

/// The next state of a server after an answer (`ok`) or a failure
/// (`lasting`: one that will not mend by itself), at `now`. Pure.
fn update(before: Answered, ok: bool, lasting: bool, now: Instant) -> (Answered, Log) {
    if ok {
        let log = if before.ok { Log::None } else { Log::Found };
        return (Answered { ok: true, fails: 0, retry: None }, log);
    }
    let fails = before.fails.saturating_add(1);
    if lasting || fails >= GIVE_UP {
        // Logged once per outage: not again when a retry fails too.
        let log = if before.retry.is_none() { Log::GaveUp } else { Log::None };
        return (Answered { ok: false, fails, retry: Some(now + RETRY) }, log);
    }
    (Answered { ok: before.ok, fails, retry: before.retry }, Log::None)
}

/// Microseconds since the epoch, now.
pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unanswered_check_is_busy_and_says_why() {
        let r = Reason::Unanswered { server: 42 };
        assert_eq!(r.to_string(), "jupyter server (pid 42) did not answer this check (counted busy until it does)");
        // Control: a passing failure keeps the server's state; the third gives up.
        let t = Instant::now();
        let ok = Answered { ok: true, fails: 0, retry: None };
        let (once, log) = update(ok, false, false, t);
        assert!(once.retry.is_none() && once.ok && log == Log::None);
        let (twice, _) = update(once, false, false, t);
        let (thrice, log) = update(twice, false, false, t);
        assert!(thrice.retry.is_some() && log == Log::GaveUp);
    }
    #[test]
    fn failures_are_logged_once_and_retried_later() {
        let t = Instant::now();
        let fresh = Answered::default();
        // A server that answers: found once.
        let (a, log) = update(fresh, true, false, t);
        assert_eq!(log, Log::Found);
        assert_eq!(update(a, true, false, t).1, Log::None);
        // Passing failures (HTTP 500 while a kernel starts) are not news...
        let (b, log) = update(a, false, false, t);
        assert_eq!((log, b.fails, b.retry), (Log::None, 1, None));
        let (b, _) = update(b, false, false, t);
        assert_eq!(update(b, true, false, t).1, Log::None, "still the same server, still found");
        // ... until GIVE_UP in a row.
        let (c, log) = update(b, false, false, t);
        assert_eq!((log, c.retry), (Log::GaveUp, Some(t + RETRY)));
        // A failed retry is not logged again; an answer is.
        let (d, log) = update(c, false, false, t + RETRY);
        assert_eq!((log, d.retry), (Log::None, Some(t + 2 * RETRY)));
        assert_eq!(update(d, true, false, t + RETRY).1, Log::Found);
        // A refused token gives up at once.
        let (e, log) = update(fresh, false, true, t);
        assert_eq!((log, e.retry.is_some()), (Log::GaveUp, true));
    }
}
