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
pub struct ProcStat {
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
    pub fn is_zombie(&self) -> bool {
        self.state == b'Z'
    }
}

/// Parse `/proc/PID/stat`. The name sits in parentheses and may itself
/// contain spaces and parentheses, so fields are counted after the *last*
/// `)`. Pure.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
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

/// Every process visible under `proc_root` (normally `/proc`). A process
/// that vanishes between the directory listing and the read is skipped.
///
/// Raw `openat` relative to the `/proc` directory and one `read` into a
/// stack buffer: `File::read_to_string` would add a `statx` per file, and
/// the full path a walk from `/`; on a slow VM the syscalls are the whole cost.
pub fn processes(proc_root: &Path) -> Vec<ProcStat> {
    let mut out = Vec::with_capacity(64);
    for_each(proc_root, |p| out.push(p));
    out
}

/// Call `f` with every process under `proc_root`, one at a time: the idle
/// watchdog keeps nothing of a scan but CPU counters, so a thousand
/// processes never sit in memory at once.
pub fn for_each(proc_root: &Path, mut f: impl FnMut(ProcStat)) {
    let Ok(rd) = std::fs::read_dir(proc_root) else { return };
    let Ok(dir) = std::fs::File::open(proc_root) else { return };
    let dirfd = dir.as_raw_fd();
    let mut path = [0u8; 40];
    let mut buf = [0u8; 1024];
    for e in rd.flatten() {
        let name = e.file_name();
        let pid = name.as_bytes();
        if pid.is_empty() || pid.len() > 20 || !pid.iter().all(u8::is_ascii_digit) {
            continue;
        }
        path[..pid.len()].copy_from_slice(pid);
        path[pid.len()..pid.len() + 6].copy_from_slice(b"/stat\0");
        // SAFETY: NUL-terminated path in a local buffer; read into a local
        // buffer of the given length; closing our own fd.
        let n = unsafe {
            let fd = libc::openat(dirfd, path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 {
                continue;
            }
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            libc::close(fd);
            n
        };
        if n <= 0 {
            continue;
        }
        if let Some(s) = parse_stat(&String::from_utf8_lossy(&buf[..n as usize])) {
            f(s);
        }
    }
}

/// Every process of this PID namespace.
pub fn scan() -> Vec<ProcStat> {
    processes(Path::new("/proc"))
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
    fn reads_this_process() {
        let me = std::process::id() as i32;
        let all = scan();
        let p = all.iter().find(|p| p.pid == me).expect("own process listed");
        assert_eq!(p.ppid, nix::unistd::getppid().as_raw());
        assert!(!p.is_zombie());
        let none = processes(Path::new("/nonexistent-proc"));
        assert!(none.is_empty());
    }
}
