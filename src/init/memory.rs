//! Keeping PID 1 small while it waits. Start-up (argument parsing, account
//! files, setup steps) touches most of labinit's code once, and the kernel's
//! fault-around maps whole 64 KiB blocks of the binary around each touch, so
//! those pages stay counted in labinit's resident set for the days a job
//! runs. Once the job is started, [`release_startup_pages`] drops labinit's
//! clean, read-only file pages from its page tables; the supervisor loop
//! faults back in only the little code it uses.
//!
//! Only read-only mappings of labinit's own executable are touched: they are
//! clean copies of the file, so dropping them loses nothing. Writable
//! mappings (data, heap, stack) are never passed to madvise.

use std::fs;

/// Read-only mappings of the executable at `exe` that hold no written page,
/// from `/proc/self/smaps` text. Pure.
///
/// A read-only mapping can still hold written pages: RELRO (`r--p`) is
/// written by relocation at start-up and only then made read-only; its
/// written pages are anonymous copies. Dropping them would bring back the
/// unrelocated bytes of the file, so any mapping with anonymous pages is kept.
/// (`Private_Dirty` is no guide: it also counts page-cache pages of a binary
/// that was just written and not yet flushed.)
pub(crate) fn clean_exe_ranges(smaps: &str, exe: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    let mut dirty = false;
    let flush = |current: &mut Option<(usize, usize)>, dirty: bool, out: &mut Vec<(usize, usize)>| {
        if let Some(r) = current.take() {
            if !dirty {
                out.push(r);
            }
        }
    };
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-').filter(|(a, _)| a.bytes().all(|c| c.is_ascii_hexdigit())) {
            flush(&mut current, dirty, &mut out);
            dirty = false;
            let perms = f.next().unwrap_or("");
            let path = f.nth(3).unwrap_or("");
            let readonly_private = perms.as_bytes().get(1) == Some(&b'-') && perms.as_bytes().get(3) == Some(&b'p');
            if path == exe && readonly_private {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                    current = Some((a, b));
                }
            }
        } else if current.is_some() && first == "Anonymous:" {
            dirty |= f.next().is_some_and(|kb| kb != "0");
        }
    }
    flush(&mut current, dirty, &mut out);
    out
}

/// Drop the start-up pages of labinit's own code from its resident set.
/// Best effort: any failure just leaves memory as it was.
pub(crate) fn release_startup_pages() {
    let Ok(exe) = fs::read_link("/proc/self/exe") else { return };
    let Some(exe) = exe.to_str() else { return };
    let Ok(smaps) = fs::read_to_string("/proc/self/smaps") else { return };
    for (start, end) in clean_exe_ranges(&smaps, exe) {
        // SAFETY: the range is a private, read-only mapping of our own
        // executable holding no written page (checked above): dropping its
        // page-table entries loses nothing, the next access re-reads the
        // same bytes from the file.
        unsafe {
            let addr = start as *mut nix::libc::c_void;
            nix::libc::madvise(addr, end - start, nix::libc::MADV_RANDOM);
            nix::libc::madvise(addr, end - start, nix::libc::MADV_DONTNEED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_readonly_private_mappings_of_the_exe() {
        let smaps = "\
55d0-55e0 r--p 00000000 fe:00 1 /opt/lab/labinit
Rss:                  16 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
55e0-5600 r-xp 00010000 fe:00 1 /opt/lab/labinit
Private_Dirty:      2236 kB
Anonymous:             0 kB
5600-5608 r--p 00030000 fe:00 1 /opt/lab/labinit
Private_Dirty:         8 kB
Anonymous:             8 kB
5608-5610 rw-p 00038000 fe:00 1 /opt/lab/labinit
Private_Dirty:         0 kB
5610-5620 r--s 00040000 fe:00 1 /opt/lab/labinit
7000-7100 r-xp 00000000 fe:00 2 /usr/lib/other.so
Private_Dirty:         0 kB
7ffc-7ffd rw-p 00000000 00:00 0 [stack]";
        assert_eq!(clean_exe_ranges(smaps, "/opt/lab/labinit"), vec![(0x55d0, 0x55e0), (0x55e0, 0x5600)]);
    }

    #[test]
    fn our_own_relro_is_never_dropped() {
        // In this (dynamic, PIE) test binary the RELRO mapping is written by
        // the loader: it must not be among the ranges we would drop.
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let exe = exe.to_str().unwrap();
        let ranges = clean_exe_ranges(&smaps, exe);
        assert!(!ranges.is_empty(), "the text mapping is clean");
        release_startup_pages();
        // Still alive and relocated pointers still work:
        let v: Vec<String> = (0..100).map(|i| format!("{i}")).collect();
        assert_eq!(v[42], "42");
    }
}
