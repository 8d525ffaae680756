//! The watchdog: one scan of `/proc` finds a reason the container is busy
//! ([`Watchdog::busy_reason`]); successive verdicts drive the busy/idle state
//! machine ([`Watchdog::observe`]). The rules are in the module doc of
//! [`crate::init::idle`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config::IdleConfig;
use super::devices::{matching_devices, open_device};
use super::event::{Busy, Event};
use crate::init::jupyter;
use crate::init::procfs;

/// The busy/idle state machine over successive samples.
pub(crate) struct Watchdog {
    cfg: IdleConfig,
    clk_tck: f64,
    first: bool,
    idle_for: Duration,
    last_busy: Option<Busy>,
    /// The kernels logged as executing in this busy period.
    logged_kernels: Vec<String>,
    busy: bool,
    reminded_at: Duration,
    reader: procfs::StatReader,
    /// Finds and asks Jupyter servers; `None` with the rule off.
    jupyter: Option<jupyter::Finder>,
    /// Log lines of the last check besides the state change (a Jupyter
    /// server found or not answering).
    notes: Vec<String>,
    /// One scan's processes, kept when Jupyter servers answer: the rule
    /// needs the whole tree before judging (the buffer is reused).
    seen: Vec<Seen>,
}

/// A process of one scan, for judging after the Jupyter tree is known.
struct Seen {
    pid: i32,
    ppid: i32,
    /// Start time, clock ticks since boot.
    starttime: u64,
    /// CPU use over the interval, fraction of one core.
    used: f64,
    /// Whether the name matches `busy_names`.
    named: bool,
    /// The name, kept only when it may be reported (`used`, `named`, or a
    /// GPU device exists).
    name: String,
}

/// Log a reminder every this long while idle.
pub(crate) const REMINDER: Duration = Duration::from_secs(5 * 60);

impl Watchdog {
    pub(crate) fn new(cfg: IdleConfig) -> Watchdog {
        let clk_tck = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
        let jupyter = (cfg.jupyter && !cfg.jupyter_runtime_dirs.is_empty())
            .then(|| jupyter::Finder::new(cfg.jupyter_runtime_dirs.clone(), PathBuf::from("/proc")));
        Watchdog {
            cfg,
            clk_tck,
            first: true,
            idle_for: Duration::ZERO,
            last_busy: None,
            logged_kernels: Vec::new(),
            busy: false,
            reminded_at: Duration::ZERO,
            reader: procfs::StatReader::new(),
            jupyter,
            notes: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// The log lines of the last check besides its state change.
    pub(crate) fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    pub(crate) fn config(&self) -> &IdleConfig {
        &self.cfg
    }

    /// Find a reason the container is busy in one sample. `excluded` holds
    /// sessions that do not count (labinit's own, its services'); `elapsed`
    /// is the time since the previous sample.
    pub(crate) fn busy_reason(
        &mut self,
        proc_root: &Path,
        excluded_sessions: &[i32],
        excluded_pids: &[i32],
        elapsed: Duration,
    ) -> Option<Busy> {
        let devices: HashSet<String> = matching_devices(&self.cfg.device_glob).into_iter().collect();
        if let Some(finder) = self.jupyter.as_mut() {
            let check = finder.check(jupyter::now_micros(), elapsed);
            self.notes.extend(check.notes);
            if !check.servers.is_empty() {
                let other = self.busy_reason_with_jupyter(
                    proc_root,
                    excluded_sessions,
                    excluded_pids,
                    elapsed,
                    &devices,
                    &check.servers,
                );
                return check.busy.map(Busy::Jupyter).or(other);
            }
        }
        let mut reason = None;
        let secs = elapsed.as_secs_f64().max(1e-3);
        let full = self.could_expire(elapsed);
        let (cfg, clk_tck) = (&self.cfg, self.clk_tck);
        let seen = self.reader.for_each(proc_root, clk_tck, full, |sample| {
            let p = &sample;
            if reason.is_some()
                || p.is_zombie()
                || excluded_pids.contains(&p.pid)
                || excluded_sessions.contains(&p.session)
            {
                return; // keep recording ticks for the next interval
            }
            // The reader keeps the CPU time of the previous check.
            if let Some(used) = sample.used_since() {
                let used = used / secs;
                if used >= cfg.cpu {
                    reason = Some(Busy::Cpu { pid: p.pid, name: p.name.to_owned(), percent: used * 100.0 });
                    return;
                }
            }
            if cfg.busy_names.iter().any(|n| !n.is_empty() && p.name.contains(n.as_str())) {
                reason = Some(Busy::Name { pid: p.pid, name: p.name.to_owned() });
                return;
            }
            if !devices.is_empty() {
                if let Some(device) = open_device(proc_root, p.pid, &devices) {
                    reason = Some(Busy::Gpu { pid: p.pid, name: p.name.to_owned(), device });
                }
            }
        });
        reason.or_else(|| blind(proc_root, seen))
    }

    /// Whether an idle verdict of this check could stop the container: such
    /// a check lists `/proc` whole (a pid handed out again does not show in
    /// the last pid the reader otherwise goes by).
    fn could_expire(&self, elapsed: Duration) -> bool {
        self.cfg.timeout > Duration::ZERO && self.idle_for + elapsed >= self.cfg.timeout
    }

    /// [`Watchdog::busy_reason`] when Jupyter servers answer: the scan is
    /// kept whole, then each process is judged by the rules its place in a
    /// server's tree leaves (module doc).
    fn busy_reason_with_jupyter(
        &mut self,
        proc_root: &Path,
        excluded_sessions: &[i32],
        excluded_pids: &[i32],
        elapsed: Duration,
        devices: &HashSet<String>,
        servers: &[i32],
    ) -> Option<Busy> {
        let mut seen = std::mem::take(&mut self.seen);
        seen.clear();
        let secs = elapsed.as_secs_f64().max(1e-3);
        let full = self.could_expire(elapsed);
        let (cfg, clk_tck) = (&self.cfg, self.clk_tck);
        let scan = self.reader.for_each(proc_root, clk_tck, full, |sample| {
            let p = &sample;
            if p.is_zombie() || excluded_pids.contains(&p.pid) || excluded_sessions.contains(&p.session) {
                return;
            }
            // The reader keeps the CPU time of the previous check.
            let used = sample.used_since().unwrap_or(0.0) / secs;
            let named = cfg.busy_names.iter().any(|n| !n.is_empty() && p.name.contains(n.as_str()));
            let name = if used >= cfg.cpu || named || !devices.is_empty() { p.name.to_owned() } else { String::new() };
            seen.push(Seen { pid: p.pid, ppid: p.ppid, starttime: p.starttime, used, named, name });
        });
        if let Some(b) = blind(proc_root, scan) {
            self.seen = seen;
            return Some(b);
        }
        // A parent link to a process that started after the child is stale:
        // a process keeps its dead parent's pid as its parent id until it
        // runs again, and a server may have that pid by now. (A parent not
        // in the scan, labinit for one, is kept: the server hangs there.)
        let started: HashMap<i32, u64> = seen.iter().map(|s| (s.pid, s.starttime)).collect();
        let pairs: Vec<(i32, i32)> = seen
            .iter()
            .filter(|s| started.get(&s.ppid).is_none_or(|t| *t <= s.starttime))
            .map(|s| (s.pid, s.ppid))
            .collect();
        let depth = jupyter::tree_depths(&pairs, servers);
        let mut reason = None;
        for s in &seen {
            let d = depth.get(&s.pid).copied();
            // The server itself answers to its API alone: its CPU use is
            // mostly serving clients (labinit's own requests included),
            // which its activity already tells. Its kernels and what they
            // start keep the CPU rule: an idle kernel uses next to none
            // (measured: 0.05 % of a core), and a silent thread a cell left
            // training must not be killed. The name rule never counts in a
            // server's tree, the GPU rule not for its kernels, whose open
            // GPU is the point.
            let (cpu_rule, name_rule, gpu_rule) = match d {
                None => (true, true, true),
                Some(0) => (false, false, false),
                Some(1) => (true, false, false),
                Some(_) => (true, false, true),
            };
            if cpu_rule && s.used >= self.cfg.cpu {
                reason = Some(Busy::Cpu { pid: s.pid, name: s.name.clone(), percent: s.used * 100.0 });
            } else if s.named && name_rule {
                reason = Some(Busy::Name { pid: s.pid, name: s.name.clone() });
            } else if gpu_rule && !devices.is_empty() {
                reason = open_device(proc_root, s.pid, devices).map(|device| Busy::Gpu {
                    pid: s.pid,
                    name: s.name.clone(),
                    device,
                });
            }
            if reason.is_some() {
                break;
            }
        }
        self.seen = seen;
        reason
    }

    /// Feed one check's verdict; returns what to log or do.
    pub(crate) fn observe(&mut self, reason: Option<Busy>, elapsed: Duration) -> Event {
        let first = std::mem::replace(&mut self.first, false);
        match reason {
            Some(b) => {
                let was_busy = self.busy;
                self.busy = true;
                self.idle_for = Duration::ZERO;
                self.reminded_at = Duration::ZERO;
                self.last_busy = Some(b.clone());
                if !was_busy || first {
                    self.logged_kernels.clear();
                }
                // A kernel that starts a cell while the container is busy
                // anyway (the notebook's own requests) is worth one line:
                // it says why the container stays up.
                let new_kernel = match &b {
                    Busy::Jupyter(jupyter::Reason::Executing { kernel, .. }) => {
                        !self.logged_kernels.contains(kernel) && {
                            self.logged_kernels.push(kernel.clone());
                            true
                        }
                    }
                    _ => false,
                };
                if was_busy && !first && !new_kernel {
                    Event::Quiet
                } else {
                    Event::Busy(b)
                }
            }
            None => {
                let was_busy = self.busy || first;
                self.busy = false;
                if !first {
                    self.idle_for += elapsed;
                }
                if self.cfg.timeout > Duration::ZERO && self.idle_for >= self.cfg.timeout {
                    return Event::Expired { idle_for: self.idle_for, last_busy: self.last_busy.clone() };
                }
                if was_busy {
                    return Event::Idle { last_busy: self.last_busy.clone() };
                }
                if self.idle_for >= self.reminded_at + REMINDER {
                    self.reminded_at =
                        self.idle_for - Duration::from_nanos((self.idle_for.as_nanos() % REMINDER.as_nanos()) as u64);
                    return Event::StillIdle {
                        idle_for: self.idle_for,
                        left: self.cfg.timeout.saturating_sub(self.idle_for),
                    };
                }
                Event::Quiet
            }
        }
    }
}

/// [`Busy::Unseen`] when a scan could not read `proc_root` or saw no
/// process at all (labinit itself is always one in its own namespace).
/// `processes`: what the scan passed on, `None` when it failed.
fn blind(proc_root: &Path, processes: Option<usize>) -> Option<Busy> {
    processes.is_none_or(|n| n == 0).then(|| Busy::Unseen { proc_root: proc_root.display().to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wd(timeout_s: u64) -> Watchdog {
        Watchdog::new(IdleConfig { timeout: Duration::from_secs(timeout_s), ..IdleConfig::default() })
    }

    #[test]
    fn state_changes_only() {
        let mut w = wd(3600);
        let ten = Duration::from_secs(10);
        let py = Busy::Name { pid: 7, name: "python3".into() };
        assert_eq!(w.observe(Some(py.clone()), ten), Event::Busy(py.clone()));
        assert_eq!(w.observe(Some(py.clone()), ten), Event::Quiet);
        assert_eq!(w.observe(None, ten), Event::Idle { last_busy: Some(py.clone()) });
        assert_eq!(w.observe(None, ten), Event::Quiet);
        assert_eq!(w.observe(Some(py.clone()), ten), Event::Busy(py));
    }

    #[test]
    fn a_kernel_starting_a_cell_is_logged_once_per_busy_period() {
        let mut w = wd(3600);
        let ten = Duration::from_secs(10);
        let active = Busy::Jupyter(jupyter::Reason::Active { server: 5, ago: Duration::from_secs(1) });
        let exec =
            |k: &str| Busy::Jupyter(jupyter::Reason::Executing { server: 5, kernel: k.into(), name: "python3".into() });
        assert_eq!(w.observe(Some(active.clone()), ten), Event::Busy(active.clone()));
        assert_eq!(w.observe(Some(exec("k1")), ten), Event::Busy(exec("k1")), "the cell is news");
        assert_eq!(w.observe(Some(active.clone()), ten), Event::Quiet);
        assert_eq!(w.observe(Some(exec("k1")), ten), Event::Quiet, "the same kernel again: not news");
        assert_eq!(w.observe(Some(exec("k2")), ten), Event::Busy(exec("k2")));
        assert!(matches!(w.observe(None, ten), Event::Idle { .. }));
        assert_eq!(w.observe(Some(exec("k1")), ten), Event::Busy(exec("k1")), "a new busy period");
        assert_eq!(w.observe(Some(exec("k1")), ten), Event::Quiet);
        // Other reasons keep the one-line-per-change rule.
        let py = Busy::Name { pid: 7, name: "python3".into() };
        assert_eq!(w.observe(Some(py), ten), Event::Quiet);
    }

    #[test]
    fn reminder_every_five_minutes_and_expiry() {
        let mut w = wd(12 * 60);
        let ten = Duration::from_secs(10);
        assert_eq!(w.observe(None, ten), Event::Idle { last_busy: None });
        let mut reminders = 0;
        let mut expired = None;
        for i in 1..200 {
            match w.observe(None, ten) {
                Event::StillIdle { left, .. } => {
                    reminders += 1;
                    assert_eq!(left, Duration::from_secs(12 * 60) - Duration::from_secs(i * 10));
                }
                Event::Expired { idle_for, .. } => {
                    expired = Some((i, idle_for));
                    break;
                }
                Event::Quiet => {}
                e => panic!("{e:?}"),
            }
        }
        assert_eq!(reminders, 2, "at 5 and 10 idle minutes");
        assert_eq!(expired, Some((72, Duration::from_secs(720))));
    }

    #[test]
    fn zero_timeout_never_expires() {
        let mut w = wd(0);
        for _ in 0..1000 {
            assert!(!matches!(w.observe(None, Duration::from_secs(60)), Event::Expired { .. }));
        }
    }
}
