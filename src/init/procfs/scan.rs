//! [`StatReader`]: the idle watchdog's repeated scans of `/proc`.

use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::libc;

use super::stat::{pid_entry, pread_into, read_stat, ProcStat};

/// A `/proc` scanner for repeated scans (the idle watchdog).
///
/// CPU time comes from each process's CPU-time clock (`clock_gettime` on the
/// clock `clock_getcpuclockid(3)` names): one system call, no descriptor,
/// and the sum over *every* thread — `/proc/PID/schedstat` shows the main
/// thread alone, so a program whose main thread waits while its worker
/// threads compute read as idle. Linux lets any process read another's
/// clock in its PID namespace (`posix-cpu-timers.c`, `lookup_task`: no
/// permission check for reading).
///
/// Nothing is kept open per process. An open `/proc/PID/*` file holds a
/// 4 KiB kernel buffer (`seq_file`) from its first read to its close,
/// charged to the container's memory cgroup: two kept descriptors per
/// process cost 8 MiB of kernel memory over 1000 processes (measured,
/// `kmalloc-cg-4k`), where this reader keeps 56 bytes each.
///
/// `stat` is read once per new process, and again only when its CPU time
/// moved since the last scan: what `stat` shows that can change (name on
/// exec, session on `setsid`, state on exit) only changes while one of its
/// threads runs, and a process that ran has a CPU time that moved. The
/// parent id can change without the process running (its parent died):
/// callers use it only next to the parent's own entry, which is then gone.
///
/// When no process was created since the last scan (the namespace's last
/// pid, `loadavg`'s last field, is unchanged), the followed processes are
/// all there is and no pid was reused: the listing of `/proc`, the larger
/// part of a scan's cost, is skipped. Otherwise each listed pid whose
/// `/proc` entry has the inode number of the last scan is the same process
/// (a new process gets a new inode); any other is read afresh and matched by
/// (pid, start time).
///
/// A `/proc` of another PID namespace (its `self` is not this process)
/// cannot be asked by clock: every scan lists it and reads `stat` (CPU time
/// in clock ticks, all threads).
pub(crate) struct StatReader {
    /// Followed processes, sorted by pid.
    kept: Vec<Kept>,
    /// Processes first seen in the current scan, merged in at its end.
    added: Vec<Kept>,
    /// The `/proc` of the last scan: its path, its directory, and its
    /// `loadavg` when it shows this PID namespace (CPU times by clock).
    root: Option<Root>,
    /// The namespace's last pid at the previous scan.
    last_pid: Option<i32>,
}

struct Root {
    path: std::path::PathBuf,
    dir: std::os::fd::OwnedFd,
    /// `Some` when `path` is this PID namespace's `/proc`.
    loadavg: Option<std::os::fd::OwnedFd>,
}

/// The longest name `/proc` shows (`TASK_COMM_LEN` less its NUL).
const NAME_MAX: usize = 15;

/// One followed process: 56 bytes, no heap.
struct Kept {
    pid: i32,
    ppid: i32,
    session: i32,
    /// Inode number of its `/proc` entry at the last listing (the kernel's
    /// `get_next_ino`, 32 bits).
    ino: u32,
    starttime: u64,
    /// CPU time (ns) at the last scan.
    cpu_ns: u64,
    name: [u8; NAME_MAX],
    name_len: u8,
    state: u8,
    /// Seen in the current scan.
    seen: bool,
}

impl Kept {
    fn new(stat: &ProcStat, ino: u32, cpu_ns: u64) -> Kept {
        let mut k = Kept {
            pid: stat.pid,
            ppid: 0,
            session: 0,
            ino,
            starttime: stat.starttime,
            cpu_ns,
            name: [0; NAME_MAX],
            name_len: 0,
            state: 0,
            seen: true,
        };
        k.update(stat);
        k
    }

    /// Take what may have changed from a fresh `stat`.
    fn update(&mut self, stat: &ProcStat) {
        (self.ppid, self.session, self.state) = (stat.ppid, stat.session, stat.state);
        let name = short_name(&stat.name);
        self.name[..name.len()].copy_from_slice(name.as_bytes());
        self.name_len = name.len() as u8;
    }

    fn name(&self) -> &str {
        // Only whole UTF-8 strings are stored (`short_name`).
        std::str::from_utf8(&self.name[..usize::from(self.name_len)]).unwrap_or("")
    }

    fn sample(&self, previous: Option<u64>) -> Sample<'_> {
        Sample {
            pid: self.pid,
            ppid: self.ppid,
            session: self.session,
            state: self.state,
            name: self.name(),
            cpu_seconds: self.cpu_ns as f64 / 1e9,
            previous: previous.map(|ns| ns as f64 / 1e9),
        }
    }

    /// Read the process again by its CPU clock (and `stat` when it ran);
    /// `None` once it is gone. Returns the CPU time of the previous scan.
    fn resample(&mut self, dirfd: i32, buf: &mut [u8]) -> Option<u64> {
        let now = process_cpu_ns(self.pid)?;
        if now != self.cpu_ns {
            let stat = read_stat(dirfd, self.pid, buf)?;
            if stat.starttime != self.starttime {
                return None; // another process has the pid: the next listing finds it
            }
            self.update(&stat);
        }
        self.seen = true;
        Some(std::mem::replace(&mut self.cpu_ns, now))
    }
}

/// `name` cut to [`NAME_MAX`] bytes at a character boundary (a name read
/// from the kernel is never longer; `parse_stat` has already made it UTF-8).
fn short_name(name: &str) -> &str {
    let mut end = name.len().min(NAME_MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// One process seen by [`StatReader`]: its `stat` fields as of the last read
/// (see the type's doc for when that is), its CPU time now and at the
/// previous scan (`None` when the process is new to this scan), in seconds.
pub(crate) struct Sample<'a> {
    pub pid: i32,
    pub ppid: i32,
    pub session: i32,
    state: u8,
    pub name: &'a str,
    pub cpu_seconds: f64,
    pub previous: Option<f64>,
}

impl Sample<'_> {
    pub(crate) fn is_zombie(&self) -> bool {
        self.state == b'Z'
    }
}

impl Default for StatReader {
    fn default() -> Self {
        Self::new()
    }
}

/// The CPU-time clock of process `pid` (`clock_getcpuclockid(3)`): the
/// kernel's `MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)`, `(~pid << 3) | 2`,
/// the value glibc and musl return (musl checks it with an extra
/// `clock_getres`, which this skips).
fn process_clock(pid: i32) -> libc::clockid_t {
    ((!pid).wrapping_shl(3) | 2) as libc::clockid_t
}

/// CPU time (ns) of every thread of `pid`, live and ended, so far; `None`
/// once the process is gone (EINVAL) or the clock cannot be read.
pub(crate) fn process_cpu_ns(pid: i32) -> Option<u64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec pointer; an unknown clock is an error return.
    let r = unsafe { libc::clock_gettime(process_clock(pid), &mut ts) };
    (r == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

impl StatReader {
    pub(crate) fn new() -> StatReader {
        StatReader { kept: Vec::new(), added: Vec::new(), root: None, last_pid: None }
    }

    /// Open `proc_root` (again when it changed; what was followed under
    /// another `/proc` is forgotten). `None` when it cannot be opened.
    fn open_root(&mut self, proc_root: &Path) -> Option<&Root> {
        if self.root.as_ref().is_none_or(|r| r.path != proc_root) {
            self.kept.clear();
            self.last_pid = None;
            self.root = None;
            let dir: std::os::fd::OwnedFd = std::fs::File::open(proc_root).ok()?.into();
            // `loadavg` shows the reader's namespace, and clocks are looked
            // up in it: only a `/proc` whose `self` is this process.
            let me = std::fs::read_link(proc_root.join("self")).ok();
            let ours = me.is_some_and(|m| m.as_os_str().as_bytes() == std::process::id().to_string().as_bytes());
            let loadavg = if ours && process_cpu_ns(std::process::id() as i32).is_some() {
                std::fs::File::open(proc_root.join("loadavg")).ok().map(Into::into)
            } else {
                None
            };
            self.root = Some(Root { path: proc_root.to_path_buf(), dir, loadavg });
        }
        self.root.as_ref()
    }

    /// Call `f` with every process under `proc_root` and its CPU time.
    pub(crate) fn for_each(&mut self, proc_root: &Path, clk_tck: f64, mut f: impl FnMut(Sample)) {
        let Some(root) = self.open_root(proc_root) else { return };
        let dirfd = root.dir.as_raw_fd();
        let by_clock = root.loadavg.is_some();
        // Read before the scan: a fork during the scan changes it for the next.
        let last_pid = root.loadavg.as_ref().and_then(last_pid);
        let nothing_new = last_pid.is_some() && last_pid == self.last_pid && !self.kept.is_empty();
        self.last_pid = last_pid;
        let mut buf = [0u8; 1024];
        if nothing_new {
            for k in &mut self.kept {
                if let Some(previous) = k.resample(dirfd, &mut buf) {
                    f(k.sample(Some(previous)));
                }
            }
            self.kept.retain_mut(|k| std::mem::replace(&mut k.seen, false));
            return;
        }
        let Ok(rd) = std::fs::read_dir(proc_root) else { return };
        for e in rd.flatten() {
            use std::os::unix::fs::DirEntryExt;
            let Some((_, pid)) = pid_entry(e.file_name().as_bytes()) else { continue };
            let ino = e.ino() as u32;
            let known = self.kept.binary_search_by_key(&pid, |k| k.pid).ok();
            if let Some(i) = known.filter(|i| by_clock && self.kept[*i].ino == ino) {
                // The same process as at the last listing.
                if let Some(previous) = self.kept[i].resample(dirfd, &mut buf) {
                    f(self.kept[i].sample(Some(previous)));
                }
                continue;
            }
            let Some(stat) = read_stat(dirfd, pid, &mut buf) else { continue };
            let cpu_ns = if by_clock {
                let Some(ns) = process_cpu_ns(pid) else { continue };
                ns
            } else {
                (stat.ticks as f64 / clk_tck * 1e9) as u64
            };
            let entry = Kept::new(&stat, ino, cpu_ns);
            match known {
                Some(i) => {
                    let previous = (self.kept[i].starttime == stat.starttime).then_some(self.kept[i].cpu_ns);
                    self.kept[i] = entry;
                    f(self.kept[i].sample(previous));
                }
                None => {
                    f(entry.sample(None));
                    self.added.push(entry);
                }
            }
        }
        // Processes that were not listed have ended.
        self.kept.retain_mut(|k| std::mem::replace(&mut k.seen, false));
        if !self.added.is_empty() {
            for k in &mut self.added {
                k.seen = false;
            }
            self.kept.append(&mut self.added);
            self.kept.sort_unstable_by_key(|k| k.pid);
            self.added.shrink_to(16);
        }
    }
}

/// The last pid handed out in the reader's PID namespace (`loadavg`'s last
/// field), read through its kept descriptor.
fn last_pid(loadavg: &std::os::fd::OwnedFd) -> Option<i32> {
    let mut buf = [0u8; 128];
    let text = pread_into(loadavg, &mut buf)?;
    let last = text.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()).nth(4)?;
    std::str::from_utf8(last).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::procfs::parse_stat;

    #[test]
    fn followed_processes_are_dropped_once_reaped() {
        let mut r = StatReader::new();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        let mut seen = 0;
        r.for_each(Path::new("/proc"), 100.0, |p| seen += usize::from(p.pid == pid));
        assert_eq!(seen, 1);
        assert!(r.kept.iter().any(|k| k.pid == pid));
        // Second scan reads by the process's clock.
        let mut name = String::new();
        r.for_each(Path::new("/proc"), 100.0, |p| {
            if p.pid == pid {
                name = p.name.to_owned();
            }
        });
        assert_eq!(name, "sleep");
        child.kill().unwrap();
        child.wait().unwrap();
        let mut after = 0;
        r.for_each(Path::new("/proc"), 100.0, |p| after += usize::from(p.pid == pid));
        assert_eq!(after, 0, "a reaped process is gone");
        assert!(!r.kept.iter().any(|k| k.pid == pid));
    }

    /// A `/proc` whose `self` is another process (another PID namespace)
    /// is never asked by clock or `loadavg`: every scan reads `stat`, CPU
    /// time in clock ticks. Control: this namespace's `/proc` is.
    #[test]
    fn a_proc_of_another_namespace_is_read_from_stat() {
        let dir = std::env::temp_dir().join(format!("labkit-procfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("4242")).unwrap();
        std::fs::write(dir.join("loadavg"), "0.10 0.20 0.30 2/178 4242\n").unwrap();
        std::os::unix::fs::symlink("1", dir.join("self")).unwrap();
        let stat = |ticks: u32| {
            let line = format!("4242 (trainer) R 1 4242 4242 0 -1 0 0 0 0 0 {ticks} 0 0 0 20 0 1 0 777 0 0\n");
            std::fs::write(dir.join("4242/stat"), line).unwrap();
        };
        let mut r = StatReader::new();
        let scan = |r: &mut StatReader| {
            let mut seen = Vec::new();
            r.for_each(&dir, 100.0, |s| seen.push((s.pid, s.name.to_owned(), s.cpu_seconds, s.previous)));
            seen
        };
        stat(250);
        assert_eq!(scan(&mut r), [(4242, "trainer".to_owned(), 2.5, None)]);
        assert!(r.root.as_ref().unwrap().loadavg.is_none(), "not asked: another namespace");
        stat(300);
        assert_eq!(scan(&mut r), [(4242, "trainer".to_owned(), 3.0, Some(2.5))], "re-read every scan");
        std::fs::remove_dir_all(dir.join("4242")).unwrap();
        assert!(scan(&mut r).is_empty(), "gone when its directory is");
        let _ = std::fs::remove_dir_all(&dir);
        // Control: the real /proc of this namespace is read by clock.
        let mut own = StatReader::new();
        own.for_each(Path::new("/proc"), 100.0, |_| {});
        assert!(own.root.as_ref().unwrap().loadavg.is_some());
    }

    #[test]
    fn names_are_kept_whole_up_to_the_kernels_length() {
        assert_eq!(short_name("python3"), "python3", "control: a short name is unchanged");
        assert_eq!(short_name("fifteen_bytes_x"), "fifteen_bytes_x");
        assert_eq!(short_name("sixteen_bytes_xy"), "sixteen_bytes_x");
        // Cut at a character boundary: é is two bytes, 15 would split one.
        assert_eq!(short_name("éééééééé"), "ééééééé");
        let stat = parse_stat(
            "7 (\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0",
        )
        .unwrap();
        assert_eq!(Kept::new(&stat, 1, 0).name(), "\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}");
    }

    /// The clock id is the one the C library hands out for a pid.
    /// Control: another pid's differs.
    #[test]
    fn the_process_clock_is_the_c_librarys() {
        let me = std::process::id() as i32;
        let mut clock: libc::clockid_t = 0;
        // SAFETY: a valid out pointer.
        assert_eq!(unsafe { libc::clock_getcpuclockid(me, &mut clock) }, 0);
        assert_eq!(process_clock(me), clock);
        assert_ne!(process_clock(me + 1), clock);
        assert!(process_cpu_ns(me).is_some());
        assert_eq!(process_cpu_ns(-5), None, "no such process");
    }

    /// CPU time sums every thread: a program whose main thread waits while
    /// a worker computes is using CPU (`/proc/PID/schedstat`, the main
    /// thread's alone, showed it idle). Control: the worker sleeps.
    #[test]
    fn cpu_time_counts_every_thread_not_the_main_one_alone() {
        let used = |work: &str| {
            let code = format!(
                "import threading, time\ndef work():\n    end = time.time() + 30\n    while time.time() < end: {work}\nt = threading.Thread(target=work); t.start(); t.join()"
            );
            let mut child = std::process::Command::new("python3").args(["-c", &code]).spawn().expect("python3");
            let pid = child.id() as i32;
            let mut r = StatReader::new();
            let cpu = |r: &mut StatReader| {
                let mut d = None;
                r.for_each(Path::new("/proc"), 100.0, |s| {
                    if s.pid == pid {
                        d = s.previous.map(|p| s.cpu_seconds - p);
                    }
                });
                d
            };
            std::thread::sleep(std::time::Duration::from_millis(200));
            cpu(&mut r);
            std::thread::sleep(std::time::Duration::from_millis(500));
            let d = cpu(&mut r).expect("followed");
            child.kill().unwrap();
            child.wait().unwrap();
            d
        };
        let busy = used("pass");
        assert!(busy > 0.1, "a worker thread spinning for 0.5 s used {busy} s");
        let idle = used("time.sleep(0.05)");
        assert!(idle < 0.1, "control: a sleeping worker used {idle} s");
    }

    /// Following processes keeps no descriptor open: each would hold a
    /// 4 KiB kernel buffer charged to the container. Control: the count
    /// sees a descriptor this test opens.
    #[test]
    fn following_processes_keeps_no_descriptor_open() {
        let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
        let mut children: Vec<_> =
            (0..20).map(|_| std::process::Command::new("sleep").arg("30").spawn().unwrap()).collect();
        let mut r = StatReader::new();
        r.for_each(Path::new("/proc"), 100.0, |_| {});
        let before = fds();
        let mut n = 0;
        for _ in 0..3 {
            r.for_each(Path::new("/proc"), 100.0, |_| n += 1);
        }
        assert!(n >= 60, "the children were followed");
        assert_eq!(fds(), before, "no descriptor per process");
        let extra = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(fds(), before + 1, "control");
        drop(extra);
        for c in &mut children {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    #[test]
    fn scans_see_new_and_ended_processes_and_the_previous_cpu_time() {
        let mut r = StatReader::new();
        let look = |r: &mut StatReader, pid: i32| {
            let (mut n, mut previous) = (0, None);
            r.for_each(Path::new("/proc"), 100.0, |s| {
                if s.pid == pid {
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
    fn a_process_that_execs_shows_its_new_name() {
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
                if p.pid == pid {
                    n = p.name.to_owned();
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
}
