//! The idle watchdog (replaces the Python `sleeper`): decides from `/proc`
//! alone whether the container is busy, and when it has been idle for the
//! configured time. Owns sampling and the busy/idle state machine; stopping
//! the container is the supervisor's job.
//!
//! Busy means, for any process other than labinit and its services: CPU use of
//! at least `cpu` (fraction of one core) over the last interval, an open
//! NVIDIA device (`/dev/nvidia[0-9]*`, configurable so tests can fake one), or
//! a process name containing one of `busy_names` (default `python`, like the
//! sleeper). GPU file descriptors are only scanned when a device matching the
//! glob exists, so a CPU-only container never pays for the fd walk.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Watchdog settings (`LABKIT_IDLE_*`).
#[derive(Debug, Clone)]
pub struct IdleConfig {
    /// Idle time after which the container stops; zero disables the watchdog.
    pub timeout: Duration,
    pub interval: Duration,
    /// Fraction of one core (0.05 = 5 %).
    pub cpu: f64,
    /// Glob for GPU device nodes, e.g. `/dev/nvidia[0-9]*`.
    pub device_glob: String,
    /// Substrings of process names that count as busy.
    pub busy_names: Vec<String>,
    pub log_file: Option<PathBuf>,
}

impl Default for IdleConfig {
    fn default() -> Self {
        IdleConfig {
            timeout: Duration::from_secs(30 * 60),
            interval: Duration::from_secs(10),
            cpu: 0.05,
            device_glob: "/dev/nvidia[0-9]*".into(),
            busy_names: vec!["python".into()],
            log_file: None,
        }
    }
}

/// Why the container counts as busy.
#[derive(Debug, Clone, PartialEq)]
pub enum Busy {
    Cpu { pid: i32, name: String, percent: f64 },
    Gpu { pid: i32, name: String, device: String },
    Name { pid: i32, name: String },
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Busy::Cpu { pid, name, percent } => write!(f, "{name} (pid {pid}) used {percent:.0}% CPU"),
            Busy::Gpu { pid, name, device } => write!(f, "{name} (pid {pid}) holds {device} open"),
            Busy::Name { pid, name } => write!(f, "{name} (pid {pid}) is running"),
        }
    }
}

/// One process as read from `/proc/<pid>/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub name: String,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    /// utime + stime, in clock ticks.
    pub ticks: u64,
    pub starttime: u64,
}

/// Parse `/proc/<pid>/stat`. The name sits in parentheses and may itself
/// contain spaces and parentheses, so split at the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let name = text.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime 15, starttime 22.
    let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(ProcStat {
        pid,
        name,
        ppid: rest.get(1)?.parse().ok()?,
        pgrp: rest.get(2)?.parse().ok()?,
        session: rest.get(3)?.parse().ok()?,
        ticks: field(14)? + field(15)?,
        starttime: field(22)?,
    })
}

/// Every process visible under `proc_root` (normally `/proc`).
pub fn processes(proc_root: &Path) -> Vec<ProcStat> {
    let Ok(rd) = fs::read_dir(proc_root) else { return Vec::new() };
    let mut out = Vec::new();
    let mut buf = String::with_capacity(512);
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().filter(|s| s.bytes().all(|b| b.is_ascii_digit())) else { continue };
        buf.clear();
        let path = proc_root.join(pid).join("stat");
        if let Ok(mut f) = fs::File::open(&path) {
            use std::io::Read;
            if f.read_to_string(&mut buf).is_ok() {
                if let Some(p) = parse_stat(&buf) {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// Minimal glob: `*`, `?` and `[...]` classes with ranges (`[0-9]`).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // Returns (matched, length of the class in the pattern).
        let end = p.iter().skip(1).position(|&x| x == ']')? + 1;
        let body = &p[1..end];
        let mut i = 0;
        let mut hit = false;
        while i < body.len() {
            if i + 2 < body.len() && body[i + 1] == '-' {
                hit |= body[i] <= c && c <= body[i + 2];
                i += 3;
            } else {
                hit |= body[i] == c;
                i += 1;
            }
        }
        Some((hit, end + 1))
    }
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).any(|i| go(&p[1..], &t[i..])),
            Some('?') => !t.is_empty() && go(&p[1..], &t[1..]),
            Some('[') => match (t.first(), class(p, *t.first().unwrap_or(&'\0'))) {
                (Some(_), Some((true, len))) => go(&p[len..], &t[1..]),
                (_, Some(_)) => false,
                (Some(c), None) => *c == '[' && go(&p[1..], &t[1..]),
                (None, None) => false,
            },
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    go(&p, &t)
}

/// Device nodes matching the glob (only the last path component may hold
/// wildcards).
pub fn matching_devices(glob: &str) -> Vec<String> {
    let path = Path::new(glob);
    let (Some(dir), Some(pat)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else { return Vec::new() };
    let Ok(rd) = fs::read_dir(dir) else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| glob_match(pat, n))
        .map(|n| dir.join(n).display().to_string())
        .collect()
}

/// The first open file of `pid` that is one of `devices`.
fn open_device(proc_root: &Path, pid: i32, devices: &HashSet<String>) -> Option<String> {
    let rd = fs::read_dir(proc_root.join(pid.to_string()).join("fd")).ok()?;
    for e in rd.flatten() {
        if let Ok(target) = fs::read_link(e.path()) {
            let t = target.display().to_string();
            if devices.contains(&t) {
                return Some(t);
            }
        }
    }
    None
}

/// What a check concluded, for the log and the supervisor.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Nothing worth a log line.
    Quiet,
    /// Became busy (the first check, or after being idle).
    Busy(Busy),
    /// Became idle; carries the reason it was last busy, if any.
    Idle { last_busy: Option<Busy> },
    /// Still idle; a periodic reminder with the time left.
    StillIdle { idle_for: Duration, left: Duration },
    /// Idle for the whole timeout: stop the container.
    Expired { idle_for: Duration, last_busy: Option<Busy> },
}

/// The busy/idle state machine over successive samples.
pub struct Watchdog {
    cfg: IdleConfig,
    clk_tck: f64,
    /// (pid, starttime) -> ticks at the previous check.
    prev: HashMap<(i32, u64), u64>,
    first: bool,
    idle_for: Duration,
    last_busy: Option<Busy>,
    busy: bool,
    reminded_at: Duration,
}

/// Log a reminder every this long while idle.
pub const REMINDER: Duration = Duration::from_secs(5 * 60);

impl Watchdog {
    pub fn new(cfg: IdleConfig) -> Watchdog {
        let clk_tck = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
        Watchdog {
            cfg,
            clk_tck,
            prev: HashMap::new(),
            first: true,
            idle_for: Duration::ZERO,
            last_busy: None,
            busy: false,
            reminded_at: Duration::ZERO,
        }
    }

    pub fn config(&self) -> &IdleConfig {
        &self.cfg
    }

    /// Find a reason the container is busy in one sample. `excluded` holds
    /// sessions that do not count (labinit's own, its services'); `elapsed`
    /// is the time since the previous sample.
    pub fn busy_reason(
        &mut self,
        proc_root: &Path,
        excluded_sessions: &[i32],
        excluded_pids: &[i32],
        elapsed: Duration,
    ) -> Option<Busy> {
        let procs = processes(proc_root);
        let devices: HashSet<String> = matching_devices(&self.cfg.device_glob).into_iter().collect();
        let mut reason = None;
        let mut next = HashMap::with_capacity(procs.len());
        let secs = elapsed.as_secs_f64().max(1e-3);
        for p in &procs {
            let key = (p.pid, p.starttime);
            next.insert(key, p.ticks);
            if excluded_pids.contains(&p.pid) || excluded_sessions.contains(&p.session) {
                continue;
            }
            if reason.is_some() {
                continue; // keep recording ticks for the next interval
            }
            if let Some(prev) = self.prev.get(&key) {
                let used = (p.ticks.saturating_sub(*prev)) as f64 / self.clk_tck / secs;
                if used >= self.cfg.cpu {
                    reason = Some(Busy::Cpu { pid: p.pid, name: p.name.clone(), percent: used * 100.0 });
                    continue;
                }
            }
            if self.cfg.busy_names.iter().any(|n| !n.is_empty() && p.name.contains(n.as_str())) {
                reason = Some(Busy::Name { pid: p.pid, name: p.name.clone() });
                continue;
            }
            if !devices.is_empty() {
                if let Some(device) = open_device(proc_root, p.pid, &devices) {
                    reason = Some(Busy::Gpu { pid: p.pid, name: p.name.clone(), device });
                }
            }
        }
        self.prev = next;
        reason
    }

    /// Feed one check's verdict; returns what to log or do.
    pub fn observe(&mut self, reason: Option<Busy>, elapsed: Duration) -> Event {
        let first = std::mem::replace(&mut self.first, false);
        match reason {
            Some(b) => {
                let was_busy = self.busy;
                self.busy = true;
                self.idle_for = Duration::ZERO;
                self.reminded_at = Duration::ZERO;
                self.last_busy = Some(b.clone());
                if was_busy && !first {
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

/// Minutes and seconds, for log lines.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_names() {
        let s = "4242 (my (weird) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 12345 1000 100";
        let p = parse_stat(s).unwrap();
        assert_eq!(
            (p.pid, p.name.as_str(), p.ppid, p.pgrp, p.session, p.ticks, p.starttime),
            (4242, "my (weird) prog", 1, 4242, 4242, 300, 12345)
        );
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn globs() {
        assert!(glob_match("nvidia[0-9]*", "nvidia0"));
        assert!(glob_match("nvidia[0-9]*", "nvidia12"));
        assert!(!glob_match("nvidia[0-9]*", "nvidiactl"));
        assert!(!glob_match("nvidia[0-9]*", "nvidia-uvm"));
        assert!(glob_match("fake?", "fake1"));
        assert!(!glob_match("fake?", "fake"));
    }

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
