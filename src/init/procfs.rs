//! Reading processes from `/proc`: the one parser of `/proc/PID/stat` used by
//! the supervisor (who is in the job), the idle watchdog (who is busy) and the
//! nesting check. Owns nothing but reading; decisions live with the callers.
//!
//! A scan costs one `open`/`read`/`close` per process, so the path and the
//! read buffer are reused across processes: the idle watchdog scans every
//! few seconds and must stay cheap with a thousand processes.

use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::libc;

/// One process as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub pid: i32,
    /// `comm`: the executable's name, at most 15 bytes.
    pub name: String,
    /// `R`, `S`, `D`, `Z`, …
    pub state: u8,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    /// utime + stime, in clock ticks.
    pub ticks: u64,
    /// Start time in ticks since boot: with the pid, identifies a process
    /// across pid reuse.
    pub starttime: u64,
}

impl ProcStat {
    pub(crate) fn is_zombie(&self) -> bool {
        self.state == b'Z'
    }
}

/// Parse `/proc/PID/stat`. The name sits in parentheses and may itself
/// contain spaces and parentheses, so fields are counted after the *last*
/// `)`. Pure.
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text[..open].trim().parse().ok()?;
    let name = text[open + 1..close].to_owned();
    // Field 3 (state) is the first after the name; utime is 14, stime 15,
    // starttime 22.
    let mut f = text[close + 1..].split_ascii_whitespace();
    let state = *f.next()?.as_bytes().first()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    let session = f.next()?.parse().ok()?;
    let mut f = f.skip(7); // fields 7..=13
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    let starttime = f.nth(6)?.parse().ok()?; // fields 16..=21 skipped
    Some(ProcStat { pid, name, state, ppid, pgrp, session, ticks: utime + stime, starttime })
}

/// A `/proc` directory entry that names a process: its digits and pid.
fn pid_entry(name: &[u8]) -> Option<(&[u8], i32)> {
    if name.is_empty() || name.len() > 10 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((name, std::str::from_utf8(name).ok()?.parse().ok()?))
}

/// Every process visible under `proc_root` (normally `/proc`). A process
/// that vanishes between the directory listing and the read is skipped; the
/// error (errno kept) is for `proc_root` itself (not mounted, not readable).
///
/// Raw `openat` relative to the `/proc` directory and one `read` into a
/// stack buffer: `File::read_to_string` would add a `statx` per file, and
/// the full path a walk from `/`; on a slow VM the syscalls are the whole cost.
pub(crate) fn try_processes(proc_root: &Path) -> std::io::Result<Vec<ProcStat>> {
    let rd = std::fs::read_dir(proc_root)?;
    let dir = std::fs::File::open(proc_root)?;
    let dirfd = dir.as_raw_fd();
    let mut buf = [0u8; 1024];
    let mut out = Vec::with_capacity(64);
    for e in rd.flatten() {
        let name = e.file_name();
        let Some((pid, _)) = pid_entry(name.as_bytes()) else { continue };
        let Some(fd) = open_at(dirfd, pid, b"stat\0") else { continue };
        let Some(text) = pread_into(&fd, &mut buf) else { continue };
        if let Some(s) = parse_stat(&String::from_utf8_lossy(text)) {
            out.push(s);
        }
    }
    Ok(out)
}

/// [`try_processes`], empty when `proc_root` cannot be read.
pub(crate) fn processes(proc_root: &Path) -> Vec<ProcStat> {
    try_processes(proc_root).unwrap_or_default()
}

/// A `/proc` scanner for repeated scans (the idle watchdog). Generating
/// `/proc/PID/stat` is the expensive part of a scan (measured on a 2-core VM,
/// 1000 processes: `stat` 3.9 ms per pass even through kept descriptors,
/// `schedstat` 1.0 ms, `comm` 0.9 ms; opening adds 5 more). So `stat` is read
/// once per new process, for what does not change (session, start time), and
/// every later scan re-reads `schedstat` (CPU time, ns) through a descriptor
/// kept open with `pread`. `comm` (the name, which changes on exec) is
/// re-read only when the CPU time moved since the last scan — a process
/// that did not run cannot have exec'd or renamed itself — and on every
/// [`COMM_REFRESH`]th scan whatever the CPU time, for a name another thread
/// of the process wrote. A kept descriptor follows its process, not its pid
/// number: once the process is gone it reads ESRCH and a process that
/// reused the pid is read afresh. At most `RLIMIT_NOFILE - 64` descriptors
/// are kept (all close-on-exec, so no child sees them); beyond that
/// processes are read the slow way. A kernel without `schedstat` also gets
/// the slow way.
///
/// Memory: the followed processes sit in one vector sorted by pid (about
/// 100 bytes each, no second copy between scans), and each sample carries
/// the CPU time of the previous scan, so the caller keeps no map of its own.
pub(crate) struct StatReader {
    /// Followed processes, sorted by pid.
    kept: Vec<Kept>,
    /// Processes first seen in the current scan, merged in at its end.
    added: Vec<Kept>,
    /// CPU seconds at the previous scan of processes read the slow way, by
    /// (pid, start time), sorted.
    loose: Vec<((i32, u64), f64)>,
    limit: usize,
    scans: u32,
    /// `loadavg` under the `/proc` of the last scan, kept open, and the
    /// last pid it showed then.
    loadavg: Option<(std::path::PathBuf, std::os::fd::OwnedFd)>,
    last_pid: Option<i32>,
}

/// Re-read every kept process's name at least every this many scans.
pub(crate) const COMM_REFRESH: u32 = 16;

struct Kept {
    schedstat: std::os::fd::OwnedFd,
    comm: std::os::fd::OwnedFd,
    stat: ProcStat,
    /// CPU time (ns) at the last scan.
    cpu_ns: u64,
    /// Seen in the current scan.
    seen: bool,
}

impl Kept {
    /// Read the process again through its descriptors (the name only when
    /// the CPU time moved or `refresh`); `None` once it is gone.
    fn sample<'a>(&'a mut self, refresh: bool, buf: &mut [u8], name_buf: &mut [u8]) -> Option<Sample<'a>> {
        let cpu_ns = pread_into(&self.schedstat, buf).and_then(schedstat_ns)?;
        if cpu_ns != self.cpu_ns || refresh {
            let comm = pread_into(&self.comm, name_buf)?;
            let comm = comm.strip_suffix(b"\n").unwrap_or(comm);
            // The name only changes on exec: compare bytes, allocate on change.
            if comm != self.stat.name.as_bytes() {
                self.stat.name = String::from_utf8_lossy(comm).into_owned();
            }
        }
        let previous = Some(self.cpu_ns as f64 / 1e9);
        self.cpu_ns = cpu_ns;
        self.seen = true;
        Some(Sample { stat: &self.stat, cpu_seconds: cpu_ns as f64 / 1e9, previous })
    }
}

/// One process seen by [`StatReader`]: its `stat` fields (`ticks` as of the
/// first read), its CPU time now and at the previous scan (`None` when the
/// process is new to this scan).
pub(crate) struct Sample<'a> {
    pub stat: &'a ProcStat,
    pub cpu_seconds: f64,
    pub previous: Option<f64>,
}

impl Default for StatReader {
    fn default() -> Self {
        Self::new()
    }
}

fn open_at(dirfd: i32, pid: &[u8], file: &[u8]) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let mut path = [0u8; 48];
    let len = pid.len() + 1 + file.len();
    if len >= path.len() {
        return None;
    }
    path[..pid.len()].copy_from_slice(pid);
    path[pid.len()] = b'/';
    path[pid.len() + 1..len].copy_from_slice(file);
    // SAFETY: NUL-terminated path in a local buffer (path[len] is 0).
    let raw = unsafe { libc::openat(dirfd, path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    // SAFETY: `raw` was just returned by openat and is owned from here on.
    (raw >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) })
}

fn pread_into<'b>(fd: &std::os::fd::OwnedFd, buf: &'b mut [u8]) -> Option<&'b [u8]> {
    // SAFETY: reading into a local buffer of the given length from an fd we own.
    let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    (n > 0).then(|| &buf[..n as usize])
}

impl StatReader {
    pub(crate) fn new() -> StatReader {
        let soft =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map(|(s, _)| s).unwrap_or(0);
        let limit = soft.saturating_sub(64).min(1 << 16) as usize;
        StatReader {
            kept: Vec::new(),
            added: Vec::new(),
            loose: Vec::new(),
            limit,
            scans: 0,
            loadavg: None,
            last_pid: None,
        }
    }

    /// The last pid handed out in the PID namespace of `proc_root`
    /// (`loadavg`'s last field), through a descriptor kept open. `loadavg`
    /// shows the reader's namespace, so only a `/proc` whose `self` is this
    /// process (one of this namespace) is asked.
    fn last_pid(&mut self, proc_root: &Path) -> Option<i32> {
        if self.loadavg.as_ref().is_none_or(|(root, _)| root != proc_root) {
            let me = std::fs::read_link(proc_root.join("self")).ok()?;
            if me.as_os_str().as_bytes() != std::process::id().to_string().as_bytes() {
                return None;
            }
            let fd = std::fs::File::open(proc_root.join("loadavg")).ok()?;
            self.loadavg = Some((proc_root.to_path_buf(), fd.into()));
        }
        let mut buf = [0u8; 128];
        let text = pread_into(&self.loadavg.as_ref()?.1, &mut buf)?;
        let last = text.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()).nth(4)?;
        std::str::from_utf8(last).ok()?.parse().ok()
    }

    /// Call `f` with every process under `proc_root` and its CPU time.
    ///
    /// When no process was created since the last scan (the namespace's
    /// last pid is unchanged and every process is followed), the followed
    /// processes are all there is: the listing of `/proc`, the larger part
    /// of a scan's cost, is skipped. A process that ended reads ESRCH.
    pub(crate) fn for_each(&mut self, proc_root: &Path, clk_tck: f64, mut f: impl FnMut(Sample)) {
        // Read before the scan: a fork during the scan changes it for the next.
        let last_pid = self.last_pid(proc_root);
        let nothing_new =
            last_pid.is_some() && last_pid == self.last_pid && self.loose.is_empty() && !self.kept.is_empty();
        self.last_pid = last_pid;
        self.scans = self.scans.wrapping_add(1);
        let refresh = self.scans % COMM_REFRESH == 0;
        let mut buf = [0u8; 1024];
        let mut name_buf = [0u8; 64];
        if nothing_new {
            for k in &mut self.kept {
                if let Some(sample) = k.sample(refresh, &mut buf, &mut name_buf) {
                    f(sample);
                }
            }
            self.kept.retain_mut(|k| std::mem::replace(&mut k.seen, false));
            return;
        }
        let Ok(rd) = std::fs::read_dir(proc_root) else { return };
        let Ok(dir) = std::fs::File::open(proc_root) else { return };
        let dirfd = dir.as_raw_fd();
        let mut loose = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name();
            let Some((digits, pid)) = pid_entry(name.as_bytes()) else { continue };
            // Fast path: a process we already follow.
            if let Ok(i) = self.kept.binary_search_by_key(&pid, |k| k.stat.pid) {
                if let Some(sample) = self.kept[i].sample(refresh, &mut buf, &mut name_buf) {
                    f(sample);
                    continue;
                }
                // Gone (ESRCH): the pid may belong to a new process; read it
                // afresh. The stale entry is dropped at the end of the scan.
            }
            let Some(stat_fd) = open_at(dirfd, digits, b"stat\0") else { continue };
            let Some(text) = pread_into(&stat_fd, &mut buf) else { continue };
            let Some(stat) = parse_stat(&String::from_utf8_lossy(text)) else { continue };
            drop(stat_fd);
            let cpu_from_ticks = stat.ticks as f64 / clk_tck;
            if (self.kept.len() + self.added.len()) * 2 + 2 <= self.limit {
                if let (Some(schedstat), Some(comm)) =
                    (open_at(dirfd, digits, b"schedstat\0"), open_at(dirfd, digits, b"comm\0"))
                {
                    if let Some(cpu_ns) = pread_into(&schedstat, &mut buf).and_then(schedstat_ns) {
                        f(Sample { stat: &stat, cpu_seconds: cpu_ns as f64 / 1e9, previous: None });
                        self.added.push(Kept { schedstat, comm, stat, cpu_ns, seen: true });
                        continue;
                    }
                }
            }
            let key = (stat.pid, stat.starttime);
            let previous = self.loose.binary_search_by_key(&key, |e| e.0).ok().map(|i| self.loose[i].1);
            f(Sample { stat: &stat, cpu_seconds: cpu_from_ticks, previous });
            loose.push((key, cpu_from_ticks));
        }
        // Descriptors of processes that vanished are closed here.
        self.kept.retain_mut(|k| std::mem::replace(&mut k.seen, false));
        if !self.added.is_empty() {
            for mut k in self.added.drain(..) {
                k.seen = false;
                // A pid read afresh replaces the stale entry of its number.
                match self.kept.binary_search_by_key(&k.stat.pid, |e| e.stat.pid) {
                    Ok(i) => self.kept[i] = k,
                    Err(i) => self.kept.insert(i, k),
                }
            }
            self.added.shrink_to(16);
        }
        loose.sort_unstable_by_key(|e| e.0);
        self.loose = loose;
    }
}

/// CPU time in nanoseconds from `/proc/PID/schedstat` ("ns_on_cpu ns_waiting
/// timeslices"). Pure.
pub(crate) fn schedstat_ns(text: &[u8]) -> Option<u64> {
    let first = text.split(|b| b.is_ascii_whitespace()).next()?;
    std::str::from_utf8(first).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_names() {
        let s = "4242 (my (weird) prog) S 1 4242 4243 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 12345 1000 100";
        let p = parse_stat(s).unwrap();
        assert_eq!(
            (p.pid, p.name.as_str(), p.state, p.ppid, p.pgrp, p.session, p.ticks, p.starttime),
            (4242, "my (weird) prog", b'S', 1, 4242, 4243, 300, 12345)
        );
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (init) Z 0 1 1").is_none(), "truncated lines are refused");
        assert!(parse_stat(") 1 (x").is_none());
    }

    #[test]
    fn kept_descriptors_follow_processes_not_pids() {
        let mut r = StatReader::new();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        let mut seen = 0;
        r.for_each(Path::new("/proc"), 100.0, |p| seen += usize::from(p.stat.pid == pid));
        assert_eq!(seen, 1);
        assert!(r.kept.iter().any(|k| k.stat.pid == pid));
        // Second scan reads through the kept descriptors.
        let mut name = String::new();
        r.for_each(Path::new("/proc"), 100.0, |p| {
            if p.stat.pid == pid {
                name = p.stat.name.clone();
            }
        });
        assert_eq!(name, "sleep");
        child.kill().unwrap();
        child.wait().unwrap();
        let mut after = 0;
        r.for_each(Path::new("/proc"), 100.0, |p| after += usize::from(p.stat.pid == pid));
        assert_eq!(after, 0, "a reaped process is gone, its descriptors closed");
        assert!(!r.kept.iter().any(|k| k.stat.pid == pid));
    }

    #[test]
    fn last_pid_only_from_a_proc_of_this_namespace() {
        let dir = std::env::temp_dir().join(format!("labkit-procfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("loadavg"), "0.10 0.20 0.30 2/178 4242\n").unwrap();
        std::os::unix::fs::symlink(std::process::id().to_string(), dir.join("self")).unwrap();
        let mut r = StatReader::new();
        assert_eq!(r.last_pid(&dir), Some(4242));
        // Negative control: a /proc whose `self` is another process (another
        // PID namespace) is never asked.
        let other = dir.join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("loadavg"), "0.10 0.20 0.30 2/178 4242\n").unwrap();
        std::os::unix::fs::symlink("1", other.join("self")).unwrap();
        assert_eq!(StatReader::new().last_pid(&other), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn scans_see_new_and_ended_processes_and_the_previous_cpu_time() {
        let mut r = StatReader::new();
        let look = |r: &mut StatReader, pid: i32| {
            let (mut n, mut previous) = (0, None);
            r.for_each(Path::new("/proc"), 100.0, |s| {
                if s.stat.pid == pid {
                    n += 1;
                    previous = s.previous;
                }
            });
            (n, previous)
        };
        let mut a = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pa = a.id() as i32;
        assert_eq!(look(&mut r, pa), (1, None), "new: no previous CPU time");
        // A scan with nothing new (the listing of /proc may be skipped).
        let (n, previous) = look(&mut r, pa);
        assert_eq!(n, 1);
        assert!(previous.is_some(), "followed: the previous scan's CPU time");
        a.kill().unwrap();
        a.wait().unwrap();
        assert_eq!(look(&mut r, pa).0, 0, "an ended process is gone");
        // A process started after a scan is found by the next one.
        let mut b = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        assert_eq!(look(&mut r, b.id() as i32).0, 1);
        b.kill().unwrap();
        b.wait().unwrap();
    }

    #[test]
    fn schedstat_and_exec_renames() {
        assert_eq!(schedstat_ns(b"1500000000 224197 2\n"), Some(1_500_000_000));
        assert_eq!(schedstat_ns(b"x 1 2"), None);
        // A kept process that execs shows its new name on the next scan.
        let mut r = StatReader::new();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read x; exec sleep 30"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let name_of = |r: &mut StatReader| {
            let mut n = String::new();
            r.for_each(Path::new("/proc"), 100.0, |p| {
                if p.stat.pid == pid {
                    n = p.stat.name.clone();
                }
            });
            n
        };
        assert_eq!(name_of(&mut r), "sh");
        use std::io::Write;
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        let mut renamed = String::new();
        for _ in 0..200 {
            renamed = name_of(&mut r);
            if renamed == "sleep" {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(renamed, "sleep");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id() as i32;
        let all = try_processes(Path::new("/proc")).unwrap();
        let p = all.iter().find(|p| p.pid == me).expect("own process listed");
        assert_eq!(p.ppid, nix::unistd::getppid().as_raw());
        assert!(!p.is_zombie());
        // A missing /proc is an error with its errno, not an empty table.
        let e = try_processes(Path::new("/nonexistent-proc")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        assert!(processes(Path::new("/nonexistent-proc")).is_empty());
    }
}
