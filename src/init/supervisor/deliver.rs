//! Who gets a signal: the job's processes among the process table (pure),
//! and the delivery to the job or the services through the [`Os`] seam, with
//! one warning line for the `kill` calls that failed.

use std::collections::{HashMap, HashSet};

use nix::errno::Errno;

use super::{Os, Supervisor};
use crate::init::procfs::ProcStat;
use crate::init::signals;

/// The job among `procs`, live processes only: as PID 1 everything but
/// `me`, as a subreaper `me`'s descendants; minus the processes of the
/// `excluded` sessions (services). Pure.
pub(super) fn job_of(procs: &[ProcStat], me: i32, pid1: bool, excluded: &[i32]) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let subtree = |roots: &[i32]| -> HashSet<i32> {
        let mut seen = HashSet::new();
        let mut todo: Vec<i32> = roots.to_vec();
        while let Some(p) = todo.pop() {
            if seen.insert(p) {
                todo.extend(children.get(&p).into_iter().flatten().copied());
            }
        }
        seen
    };
    let out_of_job: HashSet<i32> = procs.iter().filter(|p| excluded.contains(&p.session)).map(|p| p.pid).collect();
    let candidates: Vec<i32> = if pid1 {
        procs.iter().map(|p| p.pid).collect()
    } else {
        let mut d: Vec<i32> = subtree(&[me]).into_iter().collect();
        d.sort_unstable();
        d
    };
    let zombie: HashSet<i32> = procs.iter().filter(|p| p.is_zombie()).map(|p| p.pid).collect();
    candidates.into_iter().filter(|p| *p != me && !out_of_job.contains(p) && !zombie.contains(p)).collect()
}

/// The `kill` calls of one delivery that failed for another reason than
/// ESRCH (the process is gone already: normal), for one log line.
#[derive(Default)]
pub(super) struct Failures {
    pub(super) count: usize,
    pub(super) first: Option<(i32, Errno)>,
}

impl<O: Os> Supervisor<O> {
    /// `kill(pid, sig)`, keeping a failure other than ESRCH for [`Self::report`].
    pub(super) fn kill(&mut self, pid: i32, sig: i32, failures: &mut Failures) {
        match self.os.kill(pid, sig) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => {
                failures.count += 1;
                failures.first.get_or_insert((pid, e));
            }
        }
    }

    /// One warning line for the failed `kill` calls of one delivery.
    pub(super) fn report(&mut self, sig: i32, whom: &str, failures: Failures) {
        let Some((pid, e)) = failures.first else { return };
        let target = match pid {
            -1 => "every process (kill -1)".to_owned(),
            p if p < 0 => format!("process group {}", -p),
            p => format!("pid {p}"),
        };
        let more = if failures.count > 1 { format!(" and {} more", failures.count - 1) } else { String::new() };
        self.os.warn(&format!(
            "cannot send {} to {whom}: {target}{more}: {e}; what did not get it may outlive labinit",
            signals::name(sig)
        ));
    }

    /// Send `sig` to every process of the job; returns how many.
    pub(super) fn send_job(&mut self, sig: i32) -> usize {
        let mut failures = Failures::default();
        let pids = job_of(&self.os.processes(), self.me, self.pid1, self.services.sessions());
        let n = if self.pid1 && self.services.sessions().is_empty() {
            // kill(-1) reaches every process but PID 1, atomically with respect
            // to fork (a process forking meanwhile restarts the fork).
            self.kill(-1, sig, &mut failures);
            pids.len()
        } else {
            // Walk until a pass finds nothing new: a process may fork while we
            // signal its parent.
            let mut sent: HashSet<i32> = HashSet::new();
            let mut next = pids;
            for _ in 0..16 {
                let fresh: Vec<i32> = next.into_iter().filter(|p| !sent.contains(p)).collect();
                if fresh.is_empty() {
                    break;
                }
                for p in fresh {
                    self.kill(p, sig, &mut failures);
                    sent.insert(p);
                }
                next = job_of(&self.os.processes(), self.me, self.pid1, self.services.sessions());
            }
            sent.len()
        };
        self.report(sig, "the job", failures);
        n
    }

    /// Send `sig` to every process of the services; returns how many.
    pub(super) fn send_services(&mut self, sig: i32) -> usize {
        let mut failures = Failures::default();
        let mut sent: HashSet<i32> = HashSet::new();
        for _ in 0..4 {
            let procs = self.os.processes();
            let fresh: Vec<i32> =
                self.services.members(&procs).iter().map(|p| p.pid).filter(|p| !sent.contains(p)).collect();
            if fresh.is_empty() {
                break;
            }
            for p in fresh {
                self.kill(p, sig, &mut failures);
                sent.insert(p);
            }
        }
        self.report(sig, "the services", failures);
        sent.len()
    }
}
