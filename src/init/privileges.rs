//! Dropping root for the job: the kernel calls, in the forked child, in the
//! only safe order (`setgroups` → `setresgid` → `setresuid`), then proof that
//! they took (all three ids of each kind, the group list, and that `setuid(0)`
//! now fails). Owns nothing about *who* the user is: that is resolved by setup
//! before the fork.
//!
//! [`Credentials::apply`] runs between `fork` and `exec`, so it allocates
//! nothing and calls only async-signal-safe functions. `Command::uid`/`gid`
//! are not used: they would clear the supplementary groups that Kubernetes
//! `fsGroup` and Docker `--group-add` rely on.

use nix::libc::{self, gid_t, uid_t};

use crate::init::exit::Fatal;

/// What the child becomes. Built before the fork.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: uid_t,
    pub gid: gid_t,
    /// The complete supplementary list, sorted and without duplicates.
    pub groups: Vec<gid_t>,
}

/// Which part of the drop failed (the child reports it through a pipe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    SetGroups = 1,
    SetGid = 2,
    SetUid = 3,
    VerifyGid = 4,
    VerifyUid = 5,
    VerifyGroups = 6,
    RegainedRoot = 7,
}

impl Stage {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Stage::SetGroups => "setgroups (supplementary groups) failed",
            Stage::SetGid => "setresgid failed",
            Stage::SetUid => "setresuid failed",
            Stage::VerifyGid => "the group ids did not all change",
            Stage::VerifyUid => "the user ids did not all change",
            Stage::VerifyGroups => "the supplementary groups are not the requested ones",
            Stage::RegainedRoot => "setuid(0) succeeded after the drop: root could be regained",
        }
    }
}

/// A failure in the child: the stage and the errno (0 when not a syscall error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DropError {
    pub stage: Stage,
    pub errno: i32,
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

impl Credentials {
    /// Sort and de-duplicate the group list (what `setgroups` and the check
    /// expect); the primary group is included.
    pub(crate) fn new(uid: uid_t, gid: gid_t, groups: &[gid_t]) -> Credentials {
        let mut g: Vec<gid_t> = groups.to_vec();
        g.push(gid);
        g.sort_unstable();
        g.dedup();
        Credentials { uid, gid, groups: g }
    }

    /// A buffer for [`Credentials::apply`]'s check, allocated before the fork.
    pub(crate) fn scratch(&self) -> Vec<gid_t> {
        vec![0; self.groups.len() + 1]
    }

    /// Become the user. Call only in the forked child, before exec: it
    /// allocates nothing. `scratch` comes from [`Credentials::scratch`].
    pub(crate) fn apply(&self, scratch: &mut [gid_t]) -> Result<(), DropError> {
        let fail = |stage| DropError { stage, errno: errno() };
        // SAFETY: plain syscalls on valid pointers and lengths.
        unsafe {
            if libc::setgroups(self.groups.len(), self.groups.as_ptr()) != 0 {
                return Err(fail(Stage::SetGroups));
            }
            if libc::setresgid(self.gid, self.gid, self.gid) != 0 {
                return Err(fail(Stage::SetGid));
            }
            if libc::setresuid(self.uid, self.uid, self.uid) != 0 {
                return Err(fail(Stage::SetUid));
            }
            let (mut r, mut e, mut s) = (0, 0, 0);
            if libc::getresgid(&mut r, &mut e, &mut s) != 0 || (r, e, s) != (self.gid, self.gid, self.gid) {
                return Err(DropError { stage: Stage::VerifyGid, errno: 0 });
            }
            let (mut r, mut e, mut s) = (0, 0, 0);
            if libc::getresuid(&mut r, &mut e, &mut s) != 0 || (r, e, s) != (self.uid, self.uid, self.uid) {
                return Err(DropError { stage: Stage::VerifyUid, errno: 0 });
            }
            let n = libc::getgroups(scratch.len() as libc::c_int, scratch.as_mut_ptr());
            if n < 0 || n as usize != self.groups.len() {
                return Err(DropError { stage: Stage::VerifyGroups, errno: 0 });
            }
            let got = &mut scratch[..n as usize];
            got.sort_unstable(); // in place, no allocation
            if got != self.groups.as_slice() {
                return Err(DropError { stage: Stage::VerifyGroups, errno: 0 });
            }
            if self.uid != 0 && libc::setuid(0) == 0 {
                return Err(DropError { stage: Stage::RegainedRoot, errno: 0 });
            }
        }
        Ok(())
    }
}

/// Refuse to run from a setuid or setgid file: labinit trusts its
/// environment (`LABKIT_ROOT`, `CLUSTER_*`), which a setuid binary must not.
pub(crate) fn refuse_setuid_binary() -> Result<(), Fatal> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata("/proc/self/exe").map(|m| m.permissions().mode()).unwrap_or(0);
    // SAFETY: get*id never fail.
    let (ruid, euid, rgid, egid) = unsafe { (libc::getuid(), libc::geteuid(), libc::getgid(), libc::getegid()) };
    if mode & 0o6000 != 0 || ruid != euid || rgid != egid {
        return Err(Fatal::config(
            "labinit is installed setuid or setgid (or started with differing real and effective ids); it refuses to run that way: remove the bit with chmod u-s,g-s",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_sorted_deduplicated_with_primary() {
        let c = Credentials::new(123456, 4242, &[27, 4242, 5, 27]);
        assert_eq!(c.groups, vec![5, 27, 4242]);
        assert_eq!(c.scratch().len(), 4);
    }

    /// Fork, drop to uid 123456 (no passwd entry needed), and report from the
    /// child through a pipe with raw syscalls only: ids, groups, setuid(0),
    /// and the effective capabilities line of /proc/self/status.
    fn drop_in_child(creds: &Credentials) -> Option<String> {
        // SAFETY: the child only makes syscalls on preallocated buffers.
        unsafe {
            if libc::geteuid() != 0 {
                eprintln!("skipped: needs root");
                return None;
            }
            let mut fds = [0; 2];
            assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
            let mut scratch = creds.scratch();
            let mut status_buf = vec![0u8; 8192];
            let path = c"/proc/self/status";
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                libc::close(fds[0]);
                let res = creds.apply(&mut scratch);
                let mut out = [0u8; 64];
                let (mut r, mut e, mut s) = (0, 0, 0);
                libc::getresuid(&mut r, &mut e, &mut s);
                let (mut gr, mut ge, mut gs) = (0, 0, 0);
                libc::getresgid(&mut gr, &mut ge, &mut gs);
                out[0] = if res.is_ok() { b'K' } else { b'E' };
                out[1..5].copy_from_slice(&r.to_ne_bytes());
                out[5..9].copy_from_slice(&e.to_ne_bytes());
                out[9..13].copy_from_slice(&s.to_ne_bytes());
                out[13..17].copy_from_slice(&gr.to_ne_bytes());
                out[17..21].copy_from_slice(&ge.to_ne_bytes());
                out[21..25].copy_from_slice(&gs.to_ne_bytes());
                out[25] = (libc::setuid(0) == 0) as u8;
                libc::write(fds[1], out.as_ptr().cast(), out.len());
                let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                if fd >= 0 {
                    let n = libc::read(fd, status_buf.as_mut_ptr().cast(), status_buf.len());
                    if n > 0 {
                        libc::write(fds[1], status_buf.as_ptr().cast(), n as usize);
                    }
                }
                libc::_exit(0);
            }
            libc::close(fds[1]);
            let mut all = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len());
                if n <= 0 {
                    break;
                }
                all.extend_from_slice(&buf[..n as usize]);
            }
            libc::close(fds[0]);
            let mut st = 0;
            libc::waitpid(pid, &mut st, 0);
            assert!(all.len() >= 64, "child reported nothing");
            let id = |i: usize| u32::from_ne_bytes([all[i], all[i + 1], all[i + 2], all[i + 3]]);
            let status = String::from_utf8_lossy(&all[64..]).into_owned();
            Some(format!(
                "{} uid={},{},{} gid={},{},{} root_again={}\n{}",
                all[0] as char,
                id(1),
                id(5),
                id(9),
                id(13),
                id(17),
                id(21),
                all[25],
                status
            ))
        }
    }

    #[test]
    fn drop_to_unnamed_uid_in_forked_child() {
        let creds = Credentials::new(123456, 123457, &[123458, 44]);
        let Some(report) = drop_in_child(&creds) else { return };
        let first = report.lines().next().unwrap_or_default();
        assert_eq!(first, "K uid=123456,123456,123456 gid=123457,123457,123457 root_again=0", "{report}");
        let groups = report.lines().find(|l| l.starts_with("Groups:")).unwrap_or_default();
        let mut listed: Vec<u32> = groups.split_whitespace().skip(1).filter_map(|g| g.parse().ok()).collect();
        listed.sort_unstable();
        assert_eq!(listed, vec![44, 123457, 123458], "{report}");
        let cap = report.lines().find(|l| l.starts_with("CapEff:")).unwrap_or_default();
        assert_eq!(cap.split_whitespace().nth(1), Some("0000000000000000"), "{report}");
        let cap = report.lines().find(|l| l.starts_with("CapPrm:")).unwrap_or_default();
        assert_eq!(cap.split_whitespace().nth(1), Some("0000000000000000"), "{report}");
    }

    /// Negative control: staying root is visible to the same probe.
    #[test]
    fn control_root_can_regain_root() {
        let creds = Credentials::new(0, 0, &[0]);
        let Some(report) = drop_in_child(&creds) else { return };
        assert!(report.starts_with("K uid=0,0,0 gid=0,0,0 root_again=1"), "{report}");
        let cap = report.lines().find(|l| l.starts_with("CapEff:")).unwrap_or_default();
        assert_ne!(cap.split_whitespace().nth(1), Some("0000000000000000"), "{report}");
    }

    /// Each stage says what failed in its own words (the start failure's
    /// log line; launch.rs carries the stage itself, not a number).
    #[test]
    fn every_stage_has_its_own_description() {
        let all = [
            Stage::SetGroups,
            Stage::SetGid,
            Stage::SetUid,
            Stage::VerifyGid,
            Stage::VerifyUid,
            Stage::VerifyGroups,
            Stage::RegainedRoot,
        ];
        let texts: std::collections::BTreeSet<_> = all.iter().map(|s| s.describe()).collect();
        assert_eq!(texts.len(), all.len(), "{texts:?}");
        assert!(texts.iter().all(|t| !t.is_empty()));
    }
}
