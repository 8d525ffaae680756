//! [`StatReader`]: the idle watchdog's repeated scans of `/proc`.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::libc;

use super::stat::{is_zombie, pid_entry, pread_into, read_stat, ProcStat};

/// A `/proc` scanner for repeated scans (the idle watchdog).
///
/// CPU time comes from each process's CPU-time clock (`clock_gettime` on the
/// clock `clock_getcpuclockid(3)` names): one system call, no descriptor,
/// and the sum over *every* thread, ended ones included —
/// `/proc/PID/schedstat` shows the main thread alone, so a program whose
/// main thread waits while its worker threads compute read as idle. Linux
/// lets any process read another's clock in its PID namespace
/// (`posix-cpu-timers.c`, `lookup_task`: no permission check for reading).
///
/// Nothing is kept open per process. An open `/proc/PID/*` file holds a
/// 4 KiB kernel buffer (`seq_file`) from its first read to its close,
/// charged to the container's memory cgroup: two kept descriptors per
/// process cost 8 MiB of kernel memory over 1000 processes (measured,
/// `kmalloc-cg-4k`), where this reader keeps 72 bytes each.
///
/// `stat` is read once per new process, and again only when its CPU time
/// moved since the last scan: what `stat` shows that can change (name on
/// exec, session on `setsid`, state on exit, the CPU time of children it
/// reaped) only changes while one of its threads runs, and a process that
/// ran has a CPU time that moved. The parent id can change without the
/// process running (its parent died): callers that follow parent links
/// check that the parent started before the child.
///
/// When no process was created since the last scan (the namespace's last
/// pid, `loadavg`'s last field, is unchanged), the followed processes are
/// all there is and the listing of `/proc`, the larger part of a scan's
/// cost, is skipped — except on every [`RELIST`]th scan and when the caller
/// asks for a full scan: a pid handed out again through
/// `/proc/sys/kernel/ns_last_pid` or `clone3`'s `set_tid` (a checkpoint
/// restore) does not move the last pid. A followed pid whose `stat` shows
/// another start time is a new process and is read as one. In a listing,
/// a pid whose `/proc` entry has the inode number of the last listing is
/// the same process (a new process gets a new inode); any other is read
/// afresh and matched by (pid, start time).
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
    /// Scans so far under `root`.
    scans: u32,
    /// (parent, all CPU ticks) of followed processes whose pid another
    /// process took during this scan.
    replaced: Vec<(i32, u64)>,
}

/// List `/proc` on every this many scans even when no pid was handed out
/// (10 s checks: every 80 s; the watchdog's timeout is minutes).
const RELIST: u32 = 8;

struct Root {
    path: std::path::PathBuf,
    dir: std::os::fd::OwnedFd,
    /// `Some` when `path` is this PID namespace's `/proc`.
    loadavg: Option<std::os::fd::OwnedFd>,
}

/// The longest name `/proc` shows (`TASK_COMM_LEN` less its NUL).
const NAME_MAX: usize = 15;

/// One followed process: 72 bytes, no heap.
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
    /// cutime + cstime (ticks) at the last read of `stat`.
    children_ticks: u64,
    /// This scan's findings until they are passed on: its CPU time (ns)
    /// at the previous scan (`NONE` on the reader's first scan), and the
    /// CPU time (ticks) of the children it reaped since.
    prev_ns: u64,
    reaped_ticks: u32,
    name: [u8; NAME_MAX],
    name_len: u8,
    zombie: bool,
    /// Seen in the current scan.
    seen: bool,
}

/// No previous CPU time (the reader's first scan).
const NONE: u64 = u64::MAX;

/// What a scan knows of a process's CPU use since the previous scan.
#[derive(Clone, Copy)]
struct Since {
    /// Its own CPU time (ns) at the previous scan; `None` on the reader's
    /// first scan, when nothing is known of the time before.
    cpu_ns: Option<u64>,
    /// CPU time (ticks) of the children it reaped since.
    reaped_ticks: u64,
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
            children_ticks: 0,
            prev_ns: NONE,
            reaped_ticks: 0,
            name: [0; NAME_MAX],
            name_len: 0,
            zombie: false,
            seen: true,
        };
        k.update(stat);
        k
    }

    /// Take what may have changed from a fresh `stat`; returns the CPU
    /// time (ticks) of the children reaped since the last read.
    fn update(&mut self, stat: &ProcStat) -> u64 {
        (self.ppid, self.session, self.zombie) = (stat.ppid, stat.session, is_zombie(stat.state, stat.threads));
        let name = short_name(&stat.name);
        self.name[..name.len()].copy_from_slice(name.as_bytes());
        self.name_len = name.len() as u8;
        stat.children_ticks.saturating_sub(std::mem::replace(&mut self.children_ticks, stat.children_ticks))
    }

    fn name(&self) -> &str {
        // Only whole UTF-8 strings are stored (`short_name`).
        std::str::from_utf8(&self.name[..usize::from(self.name_len)]).unwrap_or("")
    }

    /// Keep what this scan found until [`Kept::sample`].
    fn note(&mut self, since: Since) {
        self.prev_ns = since.cpu_ns.unwrap_or(NONE);
        self.reaped_ticks = u32::try_from(since.reaped_ticks).unwrap_or(u32::MAX);
    }

    /// This scan's sample; `credit`: ticks of the reaped CPU time already
    /// counted (the last known CPU time of its children that ended);
    /// `dead_ns`: what its zombie children used since the previous scan.
    fn sample(&self, credit: u64, dead_ns: u64, clk_tck: f64) -> Sample<'_> {
        Sample {
            pid: self.pid,
            ppid: self.ppid,
            session: self.session,
            starttime: self.starttime,
            zombie: self.zombie,
            name: self.name(),
            cpu_seconds: self.cpu_ns as f64 / 1e9,
            previous: (self.prev_ns != NONE).then(|| self.prev_ns as f64 / 1e9),
            reaped_seconds: u64::from(self.reaped_ticks).saturating_sub(credit) as f64 / clk_tck + dead_ns as f64 / 1e9,
        }
    }

    /// All the CPU time (ticks) it is known to have used: what its parent's
    /// children time grows by when it is reaped.
    fn total_ticks(&self, clk_tck: f64) -> u64 {
        (self.cpu_ns as f64 * clk_tck / 1e9) as u64 + self.children_ticks
    }
}

/// How [`Kept::resample`] found a followed pid.
enum Found {
    /// The same process; what it used since the last scan.
    Same(Since),
    /// Another process has the pid now (its `stat` and CPU time).
    Other(ProcStat, u64),
    Gone,
}

impl Kept {
    /// Read the process again by its CPU clock (and `stat` when it ran).
    fn resample(&mut self, dirfd: i32, buf: &mut [u8]) -> Found {
        let Some(now) = process_cpu_ns(self.pid) else { return Found::Gone };
        let mut reaped_ticks = 0;
        if now != self.cpu_ns {
            let Some(stat) = read_stat(dirfd, self.pid, buf) else { return Found::Gone };
            if stat.starttime != self.starttime {
                return Found::Other(stat, now);
            }
            reaped_ticks = self.update(&stat);
        }
        self.seen = true;
        Found::Same(Since { cpu_ns: Some(std::mem::replace(&mut self.cpu_ns, now)), reaped_ticks })
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
/// (see the type's doc for when that is) and its CPU use, in seconds.
pub(crate) struct Sample<'a> {
    pub pid: i32,
    pub ppid: i32,
    pub session: i32,
    /// Start time, clock ticks since boot.
    pub starttime: u64,
    zombie: bool,
    pub name: &'a str,
    /// Its own CPU time so far (every thread).
    pub cpu_seconds: f64,
    /// Its own CPU time at the previous scan; 0 for a process started (or
    /// first seen) since then; `None` on the reader's first scan.
    pub previous: Option<f64>,
    /// CPU time since the previous scan of the children it waited for, and
    /// of those that died and wait for it (a loop or a batch of steps
    /// shorter than the interval shows here).
    pub reaped_seconds: f64,
}

impl Sample<'_> {
    /// Dead and not reaped (see [`ProcStat::is_zombie`]).
    pub(crate) fn is_zombie(&self) -> bool {
        self.zombie
    }

    /// CPU seconds used since the previous scan, children it reaped
    /// included; `None` on the reader's first scan.
    pub(crate) fn used_since(&self) -> Option<f64> {
        self.previous.map(|p| (self.cpu_seconds - p).max(0.0) + self.reaped_seconds)
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
fn process_cpu_ns(pid: i32) -> Option<u64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec pointer; an unknown clock is an error return.
    let r = unsafe { libc::clock_gettime(process_clock(pid), &mut ts) };
    (r == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

impl StatReader {
    pub(crate) fn new() -> StatReader {
        StatReader { kept: Vec::new(), added: Vec::new(), root: None, last_pid: None, scans: 0, replaced: Vec::new() }
    }

    /// Open `proc_root` (again when it changed; what was followed under
    /// another `/proc` is forgotten). `None` when it cannot be opened.
    fn open_root(&mut self, proc_root: &Path) -> Option<&Root> {
        if self.root.as_ref().is_none_or(|r| r.path != proc_root) {
            self.kept.clear();
            self.last_pid = None;
            self.root = None;
            self.scans = 0;
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

    /// Call `f` with every process under `proc_root` and its CPU use. With
    /// `full`, `/proc` is listed whatever the last pid says. Returns how
    /// many processes were passed to `f`; `None` when `proc_root` cannot be
    /// opened or listed.
    ///
    /// A parent's children time grows by the whole CPU time of a child it
    /// reaps; what the child had used by the previous scan was counted then,
    /// so it is taken off (the update, then the samples).
    pub(crate) fn for_each(
        &mut self,
        proc_root: &Path,
        clk_tck: f64,
        full: bool,
        mut f: impl FnMut(Sample),
    ) -> Option<usize> {
        self.update(proc_root, clk_tck, full)?;
        // The processes that ended since the previous scan: the children
        // time of the nearest ancestor still there holds what they had used
        // by then (a child's children time goes up with it when reaped).
        let ended: HashMap<i32, (i32, u64)> =
            self.kept.iter().filter(|k| !k.seen).map(|k| (k.pid, (k.ppid, k.total_ticks(clk_tck)))).collect();
        let mut credits: HashMap<i32, u64> = HashMap::new();
        if !ended.is_empty() || !self.replaced.is_empty() {
            // Each ended pid's nearest ancestor still there, found once
            // (a chain of ended processes is walked once, not per member).
            let mut ancestor: HashMap<i32, i32> = HashMap::new();
            let mut path = Vec::new();
            let mut resolve = |pid: i32| -> i32 {
                let mut at = pid;
                path.clear();
                while let Some((parent, _)) = ended.get(&at) {
                    if let Some(a) = ancestor.get(&at) {
                        at = *a;
                        break;
                    }
                    if path.len() > ended.len() {
                        break; // parent ids that loop (stale): stop anywhere
                    }
                    path.push(at);
                    at = *parent;
                }
                for p in &path {
                    ancestor.insert(*p, at);
                }
                at
            };
            let gone: Vec<(i32, u64)> = ended.values().copied().chain(self.replaced.drain(..)).collect();
            for (parent, ticks) in gone {
                *credits.entry(resolve(parent)).or_default() += ticks;
            }
        }
        // A zombie's CPU time since the previous scan counts in its parent,
        // which is yet to reap it (and then gets it credited back): a dead
        // child is judged with the process that made it, so a batch of
        // short workers reaped late adds up as when reaped at once.
        let mut dead: HashMap<i32, u64> = HashMap::new();
        for k in self.kept.iter().chain(&self.added).filter(|k| k.seen && k.zombie && k.prev_ns != NONE) {
            let ns = k.cpu_ns.saturating_sub(k.prev_ns) + (f64::from(k.reaped_ticks) / clk_tck * 1e9) as u64;
            *dead.entry(k.ppid).or_default() += ns;
        }
        let mut n = 0;
        for k in self.kept.iter().chain(&self.added).filter(|k| k.seen) {
            let credit = credits.get(&k.pid).copied().unwrap_or(0);
            f(k.sample(credit, dead.get(&k.pid).copied().unwrap_or(0), clk_tck));
            n += 1;
        }
        // Processes that were not seen have ended.
        self.kept.retain_mut(|k| std::mem::replace(&mut k.seen, false));
        if !self.added.is_empty() {
            for k in &mut self.added {
                k.seen = false;
            }
            self.kept.append(&mut self.added);
            self.kept.sort_unstable_by_key(|k| k.pid);
            self.added.shrink_to(16);
        }
        Some(n)
    }

    /// Bring the followed processes up to date (each seen one marked, with
    /// what it used since the previous scan); new ones go to `added`.
    /// `None` when `/proc` cannot be read.
    fn update(&mut self, proc_root: &Path, clk_tck: f64, full: bool) -> Option<()> {
        let root = self.open_root(proc_root)?;
        let dirfd = root.dir.as_raw_fd();
        let by_clock = root.loadavg.is_some();
        // Read before the scan: a fork during the scan changes it for the next.
        let last_pid = root.loadavg.as_ref().and_then(last_pid);
        let first = self.scans == 0;
        self.scans = self.scans.wrapping_add(1);
        let nothing_new = !full
            && !self.scans.is_multiple_of(RELIST)
            && last_pid.is_some()
            && last_pid == self.last_pid
            && !self.kept.is_empty();
        self.last_pid = last_pid;
        // A process new to this scan used all its CPU since the previous
        // one (or since it was started, which is sooner or the safe side).
        let fresh = |stat: &ProcStat| Since {
            cpu_ns: (!first).then_some(0),
            reaped_ticks: if first { 0 } else { stat.children_ticks },
        };
        let mut buf = [0u8; 1024];
        if nothing_new {
            for i in 0..self.kept.len() {
                match self.kept[i].resample(dirfd, &mut buf) {
                    Found::Same(since) => self.kept[i].note(since),
                    Found::Other(stat, cpu_ns) => {
                        // The pid was handed out again: a new process.
                        let old = &self.kept[i];
                        self.replaced.push((old.ppid, old.total_ticks(clk_tck)));
                        let ino = old.ino;
                        self.kept[i] = Kept::new(&stat, ino, cpu_ns);
                        self.kept[i].note(fresh(&stat));
                    }
                    Found::Gone => {}
                }
            }
            return Some(());
        }
        let rd = std::fs::read_dir(proc_root).ok()?;
        for e in rd.flatten() {
            use std::os::unix::fs::DirEntryExt;
            let Some((_, pid)) = pid_entry(e.file_name().as_bytes()) else { continue };
            let ino = e.ino() as u32;
            let known = self.kept.binary_search_by_key(&pid, |k| k.pid).ok();
            if let Some(i) = known.filter(|i| by_clock && self.kept[*i].ino == ino) {
                // The same process as at the last listing.
                match self.kept[i].resample(dirfd, &mut buf) {
                    Found::Same(since) => {
                        self.kept[i].note(since);
                        continue;
                    }
                    Found::Gone => continue,
                    Found::Other(..) => {} // read afresh below
                }
            }
            let Some(stat) = read_stat(dirfd, pid, &mut buf) else { continue };
            let cpu_ns = if by_clock {
                let Some(ns) = process_cpu_ns(pid) else { continue };
                ns
            } else {
                (stat.ticks as f64 / clk_tck * 1e9) as u64
            };
            let mut entry = Kept::new(&stat, ino, cpu_ns);
            match known {
                Some(i) if self.kept[i].starttime == stat.starttime => {
                    // Followed already (its /proc entry was made anew).
                    let old = &self.kept[i];
                    let reaped_ticks = stat.children_ticks.saturating_sub(old.children_ticks);
                    entry.note(Since { cpu_ns: Some(old.cpu_ns), reaped_ticks });
                    self.kept[i] = entry;
                }
                Some(i) => {
                    let old = &self.kept[i];
                    self.replaced.push((old.ppid, old.total_ticks(clk_tck)));
                    entry.note(fresh(&stat));
                    self.kept[i] = entry;
                }
                None => {
                    entry.note(fresh(&stat));
                    self.added.push(entry);
                }
            }
        }
        Some(())
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
mod tests;
