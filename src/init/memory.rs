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

/// Read-only mappings of the executable at `exe`, from `/proc/self/maps`
/// text. Pure.
pub fn readonly_exe_ranges(maps: &str, exe: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            let path = f.nth(3)?;
            if path != exe || perms.as_bytes().get(1) != Some(&b'-') || perms.as_bytes().get(3) != Some(&b'p') {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            Some((usize::from_str_radix(a, 16).ok()?, usize::from_str_radix(b, 16).ok()?))
        })
        .collect()
}

/// Drop the start-up pages of labinit's own code from its resident set.
/// Best effort: any failure just leaves memory as it was.
pub fn release_startup_pages() {
    let Ok(exe) = fs::read_link("/proc/self/exe") else { return };
    let Some(exe) = exe.to_str() else { return };
    let Ok(maps) = fs::read_to_string("/proc/self/maps") else { return };
    for (start, end) in readonly_exe_ranges(&maps, exe) {
        // SAFETY: the range is a private, read-only, file-backed mapping of
        // our own executable; MADV_DONTNEED only drops its page-table entries
        // and the next access re-reads the same bytes from the file.
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
    fn only_readonly_private_mappings_of_the_exe() {
        let maps = "\
55d0-55e0 r--p 00000000 fe:00 1 /opt/lab/labinit
55e0-5600 r-xp 00010000 fe:00 1 /opt/lab/labinit
5600-5610 rw-p 00030000 fe:00 1 /opt/lab/labinit
5610-5620 r--s 00040000 fe:00 1 /opt/lab/labinit
7000-7100 r-xp 00000000 fe:00 2 /usr/lib/other.so
7ffc-7ffd rw-p 00000000 00:00 0 [stack]";
        assert_eq!(readonly_exe_ranges(maps, "/opt/lab/labinit"), vec![(0x55d0, 0x55e0), (0x55e0, 0x5600)]);
    }
}
