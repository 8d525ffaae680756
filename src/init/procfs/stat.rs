//! `/proc/PID/stat`: the parser and the one-pass listing of every process.

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
    /// cutime + cstime: the CPU time of the children it waited for (and of
    /// theirs), in clock ticks.
    pub children_ticks: u64,
    /// Threads still running (`num_threads`): a process whose main thread
    /// exited shows `Z` while its other threads run.
    pub threads: u32,
    /// Start time in ticks since boot: with the pid, identifies a process
    /// across pid reuse.
    pub starttime: u64,
}

impl ProcStat {
    /// Dead and not yet reaped: `Z` with no thread left but the main one.
    /// (`ps` shows `Zl` for a process whose main thread exited while
    /// others run: alive, it computes and takes signals.)
    pub(crate) fn is_zombie(&self) -> bool {
        is_zombie(self.state, self.threads)
    }
}

/// [`ProcStat::is_zombie`] from `stat`'s state and thread count. Pure.
pub(crate) fn is_zombie(state: u8, threads: u32) -> bool {
    state == b'Z' && threads <= 1
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
    // cutime 16, cstime 17, num_threads 20, starttime 22 (proc(5)).
    let mut f = text[close + 1..].split_ascii_whitespace();
    let state = *f.next()?.as_bytes().first()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    let session = f.next()?.parse().ok()?;
    let mut f = f.skip(7); // fields 7..=13
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    // A dead child's times count even when the kernel shows them negative
    // (they never are: `long` in proc(5)).
    let cutime = f.next()?.parse::<i64>().ok()?.max(0) as u64;
    let cstime = f.next()?.parse::<i64>().ok()?.max(0) as u64;
    let threads = f.nth(2)?.parse().ok()?; // fields 18, 19 skipped
    let starttime = f.nth(1)?.parse().ok()?; // field 21 skipped
    Some(ProcStat {
        pid,
        name,
        state,
        ppid,
        pgrp,
        session,
        ticks: utime + stime,
        children_ticks: cutime + cstime,
        threads,
        starttime,
    })
}

/// A `/proc` directory entry that names a process: its digits and pid.
pub(super) fn pid_entry(name: &[u8]) -> Option<(&[u8], i32)> {
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

pub(super) fn open_at(dirfd: i32, pid: &[u8], file: &[u8]) -> Option<std::os::fd::OwnedFd> {
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

pub(super) fn pread_into<'b>(fd: &std::os::fd::OwnedFd, buf: &'b mut [u8]) -> Option<&'b [u8]> {
    // SAFETY: reading into a local buffer of the given length from an fd we own.
    let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    (n > 0).then(|| &buf[..n as usize])
}

/// `PID/stat` under the `/proc` directory `dirfd`, opened, read and closed.
pub(super) fn read_stat(dirfd: i32, pid: i32, buf: &mut [u8]) -> Option<ProcStat> {
    let mut digits = [0u8; 12];
    let mut n = pid.unsigned_abs();
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let fd = open_at(dirfd, &digits[at..], b"stat\0")?;
    parse_stat(&String::from_utf8_lossy(pread_into(&fd, buf)?))
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
        assert_eq!((p.children_ticks, p.threads), (0, 1));
        // Fields 16, 17 (children), 20 (threads) against their neighbours.
        let q = parse_stat("7 (make) S 1 7 7 0 -1 0 0 0 0 0 10 20 300 400 20 0 3 0 999 0 0").unwrap();
        assert_eq!((q.ticks, q.children_ticks, q.threads, q.starttime), (30, 700, 3, 999));
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (init) Z 0 1 1").is_none(), "truncated lines are refused");
        assert!(parse_stat(") 1 (x").is_none());
    }

    /// A process whose main thread exited while others run shows `Z` and is
    /// alive; a real zombie has one thread left. Control: any other state.
    #[test]
    fn zombies_are_dead_processes_not_exited_main_threads() {
        let stat = |state: char, threads: u32| {
            parse_stat(&format!("7 (w) {state} 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 {threads} 0 5 0 0")).unwrap()
        };
        assert!(stat('Z', 1).is_zombie());
        assert!(!stat('Z', 4).is_zombie(), "main thread exited, three running");
        assert!(!stat('S', 1).is_zombie() && !stat('R', 4).is_zombie());
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
