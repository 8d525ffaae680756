//! The Jupyter rule's decision, pure: when a server counts as busy
//! ([`judge`], from its API's answers) and which processes lie below a
//! server ([`tree_depths`], for the watchdog's per-depth rules).

use std::collections::HashMap;
use std::time::Duration;

use super::api::{Kernel, Status};
use crate::init::duration;
use crate::init::log::shown;

/// Why a Jupyter server counts as busy.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reason {
    /// A kernel runs a cell (`execution_state` `busy`).
    Executing { server: i32, kernel: String, name: String },
    /// A client request or kernel output since the previous check.
    Active { server: i32, ago: Duration },
    /// A server that answered before did not answer this check (a slow
    /// moment, a kernel starting): busy, since nothing says it is idle,
    /// until it answers again or is given up ([`GIVE_UP`] failures).
    Unanswered { server: i32 },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Executing { server, kernel, name } => {
                write!(f, "jupyter kernel {} ({}) executing (server pid {server})", shown(kernel, 8), shown(name, 40))
            }
            Reason::Active { server, ago } => write!(
                f,
                "jupyter server (pid {server}) active {} ago (a client request or kernel output)",
                duration::show(*ago)
            ),
            Reason::Unanswered { server } => {
                write!(f, "jupyter server (pid {server}) did not answer this check (counted busy until it does)")
            }
        }
    }
}

/// The Jupyter rule for one server. `now` and the API's times are
/// microseconds since the epoch; `window` is the time since the previous
/// check: activity within it counts, so the watchdog's idle time starts at
/// the last activity (a kernel that finished a cell an hour ago is idle).
/// A kernel executing wins over activity. Pure.
pub(crate) fn judge(server: i32, status: &Status, kernels: &[Kernel], now: i64, window: Duration) -> Option<Reason> {
    if let Some(k) = kernels.iter().find(|k| k.execution_state == "busy") {
        return Some(Reason::Executing { server, kernel: k.id.clone(), name: k.name.clone() });
    }
    let last = kernels.iter().filter_map(|k| k.last_activity).chain(status.last_activity).max()?;
    let ago_us = now.saturating_sub(last).max(0);
    let window_us = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
    (ago_us <= window_us).then(|| Reason::Active { server, ago: Duration::from_micros(ago_us as u64) })
}

/// How far below one of `roots` each process is (0 = a root, 1 = a child,
/// 2 = deeper), for the processes that descend from a root. `procs` holds
/// (pid, ppid) pairs. Pure.
pub(crate) fn tree_depths(procs: &[(i32, i32)], roots: &[i32]) -> HashMap<i32, u8> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for &(pid, ppid) in procs {
        if pid != ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut depth: HashMap<i32, u8> = HashMap::new();
    let mut todo: Vec<(i32, u8)> = roots.iter().filter(|r| procs.iter().any(|p| p.0 == **r)).map(|r| (*r, 0)).collect();
    while let Some((p, d)) = todo.pop() {
        if depth.get(&p).is_some_and(|old| *old <= d) {
            continue;
        }
        depth.insert(p, d);
        for c in children.get(&p).into_iter().flatten() {
            todo.push((*c, (d + 1).min(2)));
        }
    }
    depth
}

#[cfg(test)]
mod tests {
    use super::super::api::parse_time;
    use super::*;

    fn kernel(id: &str, state: &str, last: &str) -> Kernel {
        Kernel {
            id: id.into(),
            name: "python3".into(),
            execution_state: state.into(),
            last_activity: parse_time(last),
            connections: 1,
        }
    }

    #[test]
    fn judging() {
        let now = parse_time("2026-11-30T08:00:00Z").unwrap();
        let ten = Duration::from_secs(10);
        let old = "2026-11-30T07:00:00Z";
        let status = Status { last_activity: parse_time(old), connections: 3, kernels: 2 };
        let idle = [kernel("1a2b3c4d-5e6f", "idle", old), kernel("99", "starting", old)];
        // Kernels that exist, are connected, and were active an hour ago: idle.
        assert_eq!(judge(7, &status, &idle, now, ten), None);
        // One executing: busy, whatever the times.
        let mut running = idle.to_vec();
        running[1].execution_state = "busy".into();
        assert_eq!(
            judge(7, &status, &running, now, ten),
            Some(Reason::Executing { server: 7, kernel: "99".into(), name: "python3".into() })
        );
        // Activity since the previous check (a client request, kernel output).
        let recent = Status { last_activity: parse_time("2026-11-30T07:59:53Z"), ..status.clone() };
        assert_eq!(judge(7, &recent, &idle, now, ten), Some(Reason::Active { server: 7, ago: Duration::from_secs(7) }));
        // ... but not when the window is shorter than the time since.
        assert_eq!(judge(7, &recent, &idle, now, Duration::from_secs(5)), None);
        // A kernel's own last activity counts too; a time in the future is now.
        let k = [kernel("a", "idle", "2026-11-30T08:00:05Z")];
        assert_eq!(judge(7, &status, &k, now, ten), Some(Reason::Active { server: 7, ago: Duration::ZERO }));
        // No times at all: nothing to go on, idle.
        assert_eq!(judge(7, &Status::default(), &[], now, ten), None);
    }
    #[test]
    fn depths_in_the_tree() {
        // 1 labinit; 10 server; 11, 12 kernels; 13 a kernel's child; 14 its child; 20 other.
        let procs = [(1, 0), (10, 1), (11, 10), (12, 10), (13, 11), (14, 13), (20, 1)];
        let d = tree_depths(&procs, &[10]);
        assert_eq!((d[&10], d[&11], d[&12], d[&13], d[&14]), (0, 1, 1, 2, 2));
        assert!(!d.contains_key(&1) && !d.contains_key(&20));
        assert!(tree_depths(&procs, &[99]).is_empty(), "a root that is not running");
        // A loop in the (racy) parent links does not hang.
        let d = tree_depths(&[(5, 6), (6, 5)], &[5]);
        assert_eq!((d[&5], d[&6]), (0, 1));
    }

    #[test]
    fn log_text_is_escaped() {
        let r =
            Reason::Executing { server: 3, kernel: "1a2b3c4d-5e6f-7a8b".into(), name: "evil\nlabinit: idle".into() };
        let s = r.to_string();
        assert_eq!(s, "jupyter kernel 1a2b3c4d… (evil\\nlabinit: idle) executing (server pid 3)");
        assert!(!s.contains('\n'));
        assert_eq!(
            Reason::Active { server: 3, ago: Duration::from_secs(4) }.to_string(),
            format!(
                "jupyter server (pid 3) active {} ago (a client request or kernel output)",
                duration::show(Duration::from_secs(4))
            )
        );
    }
}
