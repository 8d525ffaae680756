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
//!
//! A Jupyter server whose API answers is also judged by its own activity
//! ([`crate::init::jupyter`]): busy while a kernel executes or a client was
//! active since the previous check. The server process counts by that alone.
//! Below it the name rule does not count, nor the GPU rule for its direct
//! children (kernels, terminals); the CPU rule does (an idle kernel uses
//! none; a thread or a `!python train.py &` a cell left running does).

use std::collections::HashMap;
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::init::duration;
use crate::init::exit::Fatal;
use crate::init::jupyter;
use crate::init::procfs;
use crate::init::trusted;

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
    /// The Jupyter rule (`LABKIT_IDLE_JUPYTER`, on by default).
    pub jupyter: bool,
    /// Where Jupyter servers leave their runtime files
    /// ([`jupyter::runtime_dirs`]); set once the job's user is known.
    pub jupyter_runtime_dirs: Vec<PathBuf>,
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
            jupyter: true,
            jupyter_runtime_dirs: Vec::new(),
        }
    }
}

/// Why the container counts as busy.
#[derive(Debug, Clone, PartialEq)]
pub enum Busy {
    Cpu { pid: i32, name: String, percent: f64 },
    Gpu { pid: i32, name: String, device: String },
    Name { pid: i32, name: String },
    Jupyter(jupyter::Reason),
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Busy::Cpu { pid, name, percent } => write!(f, "{name} (pid {pid}) used {percent:.0}% CPU"),
            Busy::Gpu { pid, name, device } => write!(f, "{name} (pid {pid}) holds {device} open"),
            Busy::Name { pid, name } => write!(f, "{name} (pid {pid}) is running"),
            Busy::Jupyter(r) => write!(f, "{r}"),
        }
    }
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
    /// (pid, starttime) -> CPU ticks of all threads, for the processes
    /// below a Jupyter server (see [`Watchdog::busy_reason_with_jupyter`]).
    tree_ticks: HashMap<(i32, u64), u64>,
}

/// A process of one scan, for judging after the Jupyter tree is known.
struct Seen {
    pid: i32,
    ppid: i32,
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
pub const REMINDER: Duration = Duration::from_secs(5 * 60);

impl Watchdog {
    pub fn new(cfg: IdleConfig) -> Watchdog {
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
            tree_ticks: HashMap::new(),
        }
    }

    /// The log lines of the last check besides its state change.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
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
        let (cfg, clk_tck) = (&self.cfg, self.clk_tck);
        self.reader.for_each(proc_root, clk_tck, |sample| {
            let p = sample.stat;
            if reason.is_some()
                || p.is_zombie()
                || excluded_pids.contains(&p.pid)
                || excluded_sessions.contains(&p.session)
            {
                return; // keep recording ticks for the next interval
            }
            // The reader keeps the CPU time of the previous check.
            if let Some(before) = sample.previous {
                let used = (sample.cpu_seconds - before).max(0.0) / secs;
                if used >= cfg.cpu {
                    reason = Some(Busy::Cpu { pid: p.pid, name: p.name.clone(), percent: used * 100.0 });
                    return;
                }
            }
            if cfg.busy_names.iter().any(|n| !n.is_empty() && p.name.contains(n.as_str())) {
                reason = Some(Busy::Name { pid: p.pid, name: p.name.clone() });
                return;
            }
            if !devices.is_empty() {
                if let Some(device) = open_device(proc_root, p.pid, &devices) {
                    reason = Some(Busy::Gpu { pid: p.pid, name: p.name.clone(), device });
                }
            }
        });
        reason
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
        let (cfg, clk_tck) = (&self.cfg, self.clk_tck);
        self.reader.for_each(proc_root, clk_tck, |sample| {
            let p = sample.stat;
            if p.is_zombie() || excluded_pids.contains(&p.pid) || excluded_sessions.contains(&p.session) {
                return;
            }
            // The reader keeps the CPU time of the previous check.
            let used = sample.previous.map_or(0.0, |before| (sample.cpu_seconds - before).max(0.0) / secs);
            let named = cfg.busy_names.iter().any(|n| !n.is_empty() && p.name.contains(n.as_str()));
            let name = if used >= cfg.cpu || named || !devices.is_empty() { p.name.clone() } else { String::new() };
            seen.push(Seen { pid: p.pid, ppid: p.ppid, starttime: p.starttime, used, named, name });
        });
        let pairs: Vec<(i32, i32)> = seen.iter().map(|s| (s.pid, s.ppid)).collect();
        let depth = jupyter::tree_depths(&pairs, servers);
        // The scan's CPU time is the main thread's (`schedstat`); a kernel
        // whose cell left a thread training is busy in another thread. So
        // below a server, where the name rule is gone, CPU use is taken
        // from `stat`, which sums every thread (a few processes: cheap).
        let mut tree_ticks = HashMap::new();
        for s in seen.iter_mut().filter(|s| depth.get(&s.pid).is_some_and(|d| *d >= 1)) {
            let text = fs::read_to_string(proc_root.join(s.pid.to_string()).join("stat")).unwrap_or_default();
            let Some(st) = procfs::parse_stat(&text).filter(|st| st.starttime == s.starttime) else { continue };
            if let Some(before) = self.tree_ticks.get(&(s.pid, s.starttime)) {
                let all = st.ticks.saturating_sub(*before) as f64 / self.clk_tck / secs;
                if all > s.used {
                    s.used = all;
                    if s.name.is_empty() {
                        s.name = st.name.clone();
                    }
                }
            }
            tree_ticks.insert((s.pid, s.starttime), st.ticks);
        }
        self.tree_ticks = tree_ticks;
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
    pub fn observe(&mut self, reason: Option<Busy>, elapsed: Duration) -> Event {
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

/// Minutes and seconds, for log lines.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s < 10 && d.subsec_nanos() != 0 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

/// The watchdog's settings from `LABKIT_IDLE_*` (`get` looks a variable
/// up). `default_timeout` is the mode's: 30 min for `wait`, zero (off) for
/// `run`. Returns `None` when the watchdog is off. Pure.
pub fn config_from_env(
    get: &dyn Fn(&str) -> Option<String>,
    default_timeout: Duration,
) -> Result<Option<IdleConfig>, Fatal> {
    let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    let mut cfg = IdleConfig { timeout: default_timeout, ..IdleConfig::default() };
    // Every variable is checked even when the watchdog ends up off: a typo
    // must be reported, not ignored until the day the watchdog is enabled.
    if let Some(v) = var("LABKIT_IDLE_TIMEOUT") {
        cfg.timeout = duration::parse_named("LABKIT_IDLE_TIMEOUT", &v)?;
    }
    if let Some(v) = var("LABKIT_IDLE_INTERVAL") {
        cfg.interval = duration::parse_named("LABKIT_IDLE_INTERVAL", &v)?;
        if cfg.interval < Duration::from_millis(10) {
            return Err(Fatal::config(format!(
                "LABKIT_IDLE_INTERVAL={v:?} is too short; use at least 0.01s (default 10s)"
            )));
        }
    }
    if let Some(v) = var("LABKIT_IDLE_CPU") {
        let num = v.trim().trim_end_matches('%').trim();
        match num.parse::<f64>() {
            Ok(p) if p.is_finite() && p > 0.0 && p <= 100_000.0 => cfg.cpu = p / 100.0,
            _ => {
                return Err(Fatal::config(format!(
                    "LABKIT_IDLE_CPU={v:?} is not a percentage of one core; write e.g. 5 or 12.5% (default 5)"
                )))
            }
        }
    }
    if let Some(v) = get("LABKIT_IDLE_BUSY") {
        cfg.busy_names = v.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect();
    }
    if let Some(v) = get("LABKIT_IDLE_DEVICES") {
        let v = v.trim().to_owned();
        if !v.is_empty()
            && (!v.starts_with('/')
                || Path::new(&v).parent().is_some_and(|d| d.to_string_lossy().contains(['*', '?', '['])))
        {
            return Err(Fatal::config(format!(
                "LABKIT_IDLE_DEVICES={v:?} must be an absolute path whose last part may hold * ? [0-9] (default /dev/nvidia[0-9]*)"
            )));
        }
        cfg.device_glob = v;
    }
    if let Some(v) = var("LABKIT_IDLE_JUPYTER") {
        cfg.jupyter = crate::init::env::parse_bool("LABKIT_IDLE_JUPYTER", v.trim())?;
    }
    if let Some(v) = var("LABKIT_IDLE_LOG") {
        if !v.starts_with('/') {
            return Err(Fatal::config(format!("LABKIT_IDLE_LOG={v:?} must be an absolute path")));
        }
        cfg.log_file = Some(PathBuf::from(v));
    }
    if cfg.timeout.is_zero() {
        return Ok(None);
    }
    Ok(Some(cfg))
}

/// The variable labinit sets in the job's environment while the watchdog
/// is on: its timeout in whole seconds, for tools in the job that follow it
/// (lab-pytorch's Jupyter configuration culls idle kernels after it).
/// `LABKIT_*` variables never reach the job, hence another prefix.
pub const TIMEOUT_VAR: &str = "LABINIT_IDLE_TIMEOUT";

/// Complete the watchdog's settings with the job's environment `env`: the
/// Jupyter runtime directories its servers will use, and [`TIMEOUT_VAR`]
/// added to `env`. Pure.
pub fn for_job(cfg: Option<IdleConfig>, env: &mut Vec<(std::ffi::OsString, std::ffi::OsString)>) -> Option<IdleConfig> {
    let mut cfg = cfg?;
    let get = |k: &str| env.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.to_string_lossy().into_owned());
    if cfg.jupyter {
        cfg.jupyter_runtime_dirs = jupyter::runtime_dirs(&get, None);
    }
    env.retain(|(k, _)| k != TIMEOUT_VAR);
    env.push((TIMEOUT_VAR.into(), cfg.timeout.as_secs().max(1).to_string().into()));
    Some(cfg)
}

fn last_busy_text(b: &Option<Busy>) -> String {
    match b {
        Some(b) => format!("last busy: {b}"),
        None => "nothing was busy since the start".to_owned(),
    }
}

/// The log line for an event (`None` for [`Event::Quiet`]). Pure.
pub fn message(event: &Event, cfg: &IdleConfig) -> Option<String> {
    let t = human(cfg.timeout);
    Some(match event {
        Event::Quiet => return None,
        Event::Busy(b) => format!("idle watchdog: busy: {b}"),
        Event::Idle { last_busy } => {
            format!("idle watchdog: idle ({}); the container stops after {t} idle", last_busy_text(last_busy))
        }
        Event::StillIdle { idle_for, left } => format!(
            "idle watchdog: idle for {}; the container stops in {} unless something gets busy",
            human(*idle_for),
            human(*left)
        ),
        Event::Expired { idle_for, last_busy } => format!(
            "idle watchdog: idle for {} (LABKIT_IDLE_TIMEOUT {t}; {}): stopping the container",
            human(*idle_for),
            last_busy_text(last_busy)
        ),
    })
}

/// The optional `LABKIT_IDLE_LOG` file: every watchdog line, appended with
/// a UTC time stamp and the host name. `{host}` and `{date}` in the path are
/// replaced (the legacy kept one file per host and day on the shared volume).
pub struct IdleLog {
    template: Option<PathBuf>,
    warned: bool,
}

impl IdleLog {
    pub fn new(template: Option<PathBuf>) -> IdleLog {
        IdleLog { template, warned: false }
    }

    pub fn write(&mut self, line: &str) {
        let Some(t) = &self.template else { return };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
        let stamp = utc(now);
        let path = log_path(&t.to_string_lossy(), &host, &stamp[..10]);
        let text = log_line(&stamp, &host, line);
        if let Err(e) = append(Path::new(&path), text.as_bytes()) {
            if !std::mem::replace(&mut self.warned, true) {
                crate::init::log::warn(format!(
                    "cannot append to LABKIT_IDLE_LOG file {path}: {e}; logging to stderr only"
                ));
            }
        }
    }
}

/// The idle log's path from its template: `{host}` and `{date}` replaced,
/// a `/` or control character in the host name made harmless (the host name
/// never adds a directory level). Pure.
pub fn log_path(template: &str, host: &str, date: &str) -> String {
    let host: String = host.chars().map(|c| if c == '/' || c.is_control() { '_' } else { c }).collect();
    template.replace("{host}", &host).replace("{date}", date)
}

/// One line of the idle log file, escaped like labinit's own log lines. Pure.
pub fn log_line(stamp: &str, host: &str, line: &str) -> String {
    format!("{stamp} {} {}\n", crate::init::log::escape(host), crate::init::log::escape(line))
}

/// Append `text` to the idle log at `path` in one write. The file lies where
/// users may write (a shared volume): it is opened by descriptor, component
/// by component, never through a symbolic link a user could have planted
/// ([`trusted::open_nofollow`]), and only a regular file with a single link
/// is written (a hard link to `/etc/passwd` is refused too).
pub fn append(path: &Path, text: &[u8]) -> std::io::Result<()> {
    use nix::libc;
    let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_NOCTTY | libc::O_NONBLOCK;
    let f = trusted::open_nofollow(path, flags, 0o644).map_err(|e| match e {
        trusted::OpenError::Io { err, .. } if err.raw_os_error() == Some(libc::ELOOP) => std::io::Error::new(
            err.kind(),
            format!("{err}: a symbolic link in a directory others can write is not followed"),
        ),
        trusted::OpenError::Io { err, .. } => err,
        other => std::io::Error::other(other.to_string()),
    })?;
    if !f.is_regular() || f.nlink != 1 {
        return Err(std::io::Error::other(format!(
            "not a regular file with one link (mode {:o}, {} links); not written",
            f.mode, f.nlink
        )));
    }
    let mut file = std::fs::File::from(f.fd);
    std::io::Write::write_all(&mut file, text)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (proleptic Gregorian,
/// Howard Hinnant's days-to-civil). Pure.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// This process's CPU time so far (user + system).
fn cpu_time() -> Duration {
    let mut ts = nix::libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid timespec pointer.
    unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `labinit idle-check --checks N` (hidden; `make bench`): run N checks over
/// this PID namespace with the `LABKIT_IDLE_*` settings and print the CPU
/// time of one check and the peak resident memory, one `key=value` line.
pub fn bench(checks: u32) -> i32 {
    let get = |n: &str| std::env::var(n).ok();
    let cfg = match config_from_env(&get, Duration::from_secs(1800)) {
        Ok(c) => c.unwrap_or_default(),
        Err(f) => {
            crate::init::log::error(&f.message);
            return f.code;
        }
    };
    let mut dog = Watchdog::new(cfg);
    let me = [std::process::id() as i32];
    let proc_root = Path::new("/proc");
    let gap = Duration::from_millis(20);
    dog.busy_reason(proc_root, &[], &me, gap); // primes the CPU counters
    let mut cpu = Duration::ZERO;
    let mut reason = None;
    for _ in 0..checks.max(1) {
        std::thread::sleep(gap);
        let t0 = cpu_time();
        reason = dog.busy_reason(proc_root, &[], &me, gap);
        cpu += cpu_time().saturating_sub(t0);
    }
    let procs = procfs::processes(proc_root).len();
    let rss =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).map(|u| u.max_rss()).unwrap_or(0);
    println!(
        "processes={procs} checks={} cpu_per_check_us={:.0} max_rss_kib={rss} verdict={}",
        checks.max(1),
        cpu.as_secs_f64() * 1e6 / f64::from(checks.max(1)),
        reason.map(|b| format!("busy: {b}")).unwrap_or_else(|| "idle".into())
    );
    0
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn config_defaults_and_switches() {
        let none = |_: &str| None;
        let wait = config_from_env(&none, Duration::from_secs(1800)).unwrap().unwrap();
        assert_eq!(wait.timeout, Duration::from_secs(1800));
        assert_eq!(wait.interval, Duration::from_secs(10));
        assert_eq!(wait.busy_names, vec!["python".to_owned()]);
        assert!(config_from_env(&none, Duration::ZERO).unwrap().is_none(), "off by default for run");
        let env = |k: &str| {
            match k {
                "LABKIT_IDLE_TIMEOUT" => Some("1h"),
                "LABKIT_IDLE_INTERVAL" => Some("0.2s"),
                "LABKIT_IDLE_CPU" => Some("12.5%"),
                "LABKIT_IDLE_BUSY" => Some("python, jupyter ,"),
                "LABKIT_IDLE_DEVICES" => Some("/tmp/x/nvidia[0-9]*"),
                "LABKIT_IDLE_LOG" => Some("/data/idle-{host}-{date}.log"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let c = config_from_env(&env, Duration::ZERO).unwrap().unwrap();
        assert_eq!(c.timeout, Duration::from_secs(3600));
        assert_eq!(c.interval, Duration::from_millis(200));
        assert!((c.cpu - 0.125).abs() < 1e-9);
        assert_eq!(c.busy_names, vec!["python".to_owned(), "jupyter".to_owned()]);
        assert_eq!(c.device_glob, "/tmp/x/nvidia[0-9]*");
        let off = |k: &str| (k == "LABKIT_IDLE_TIMEOUT").then(|| "0".to_owned());
        assert!(config_from_env(&off, Duration::from_secs(1800)).unwrap().is_none());
        let empty_busy = |k: &str| (k == "LABKIT_IDLE_BUSY").then(String::new);
        assert!(config_from_env(&empty_busy, Duration::from_secs(60)).unwrap().unwrap().busy_names.is_empty());
    }

    #[test]
    fn config_errors_name_the_variable() {
        for (k, v) in [
            ("LABKIT_IDLE_TIMEOUT", "soon"),
            ("LABKIT_IDLE_INTERVAL", "0"),
            ("LABKIT_IDLE_CPU", "lots"),
            ("LABKIT_IDLE_CPU", "-1"),
            ("LABKIT_IDLE_DEVICES", "nvidia*"),
            ("LABKIT_IDLE_DEVICES", "/dev/*/x"),
            ("LABKIT_IDLE_LOG", "rel.log"),
        ] {
            let get = |n: &str| (n == k).then(|| v.to_owned());
            let e = config_from_env(&get, Duration::from_secs(60)).unwrap_err();
            assert!(e.message.contains(k), "{k}={v}: {}", e.message);
        }
    }

    #[test]
    fn messages() {
        let cfg = IdleConfig { timeout: Duration::from_secs(1800), ..IdleConfig::default() };
        let py = Busy::Name { pid: 7, name: "python3".into() };
        assert_eq!(message(&Event::Quiet, &cfg), None);
        assert_eq!(message(&Event::Busy(py.clone()), &cfg).unwrap(), "idle watchdog: busy: python3 (pid 7) is running");
        let idle = message(&Event::Idle { last_busy: Some(py.clone()) }, &cfg).unwrap();
        assert!(idle.contains("last busy: python3 (pid 7)") && idle.contains("30m"), "{idle}");
        let still = Event::StillIdle { idle_for: Duration::from_secs(300), left: Duration::from_secs(1500) };
        assert_eq!(
            message(&still, &cfg).unwrap(),
            "idle watchdog: idle for 5m; the container stops in 25m unless something gets busy"
        );
        let exp = message(&Event::Expired { idle_for: Duration::from_secs(1800), last_busy: None }, &cfg).unwrap();
        assert!(exp.contains("stopping the container") && exp.contains("nothing was busy"), "{exp}");
    }

    #[test]
    fn jupyter_switch_and_job_environment() {
        let none = |_: &str| None;
        assert!(config_from_env(&none, Duration::from_secs(60)).unwrap().unwrap().jupyter, "on by default");
        let off = |k: &str| (k == "LABKIT_IDLE_JUPYTER").then(|| "0".to_owned());
        let cfg = config_from_env(&off, Duration::from_secs(90)).unwrap().unwrap();
        assert!(!cfg.jupyter);
        let bad = |k: &str| (k == "LABKIT_IDLE_JUPYTER").then(|| "maybe".to_owned());
        assert!(config_from_env(&bad, Duration::from_secs(60)).unwrap_err().message.contains("LABKIT_IDLE_JUPYTER"));
        // The job learns the timeout in seconds; the watchdog where Jupyter writes.
        let mut env: Vec<(std::ffi::OsString, std::ffi::OsString)> =
            vec![("HOME".into(), "/home/alice".into()), (TIMEOUT_VAR.into(), "5".into())];
        let on = config_from_env(&none, Duration::from_secs(1800)).unwrap();
        let c = for_job(on, &mut env).unwrap();
        assert_eq!(env, vec![("HOME".into(), "/home/alice".into()), (TIMEOUT_VAR.into(), "1800".into())]);
        assert_eq!(c.jupyter_runtime_dirs[0], PathBuf::from("/home/alice/.local/share/jupyter/runtime"));
        // Rule off: no directories, so no Jupyter lookups; the timeout is still exported.
        let mut env = Vec::new();
        assert!(for_job(Some(cfg), &mut env).unwrap().jupyter_runtime_dirs.is_empty());
        assert_eq!(env, vec![(TIMEOUT_VAR.into(), "90".into())]);
        // Watchdog off: nothing exported.
        let mut env = Vec::new();
        assert!(for_job(None, &mut env).is_none() && env.is_empty());
    }

    #[test]
    fn utc_stamps() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_735_689_599), "2024-12-31T23:59:59Z");
    }
}
