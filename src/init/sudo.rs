//! Passwordless sudo for the cluster user through a drop-in,
//! `/etc/sudoers.d/labkit` (0440 root:root, no dot in the name or sudo ignores
//! it), with a rule by numeric uid so no name ever needs escaping. The main
//! `/etc/sudoers` is never replaced (the legacy did, and root lost sudo): at
//! most an include line is appended when missing.

use std::fs;
use std::io;

use crate::init::files::{self, Root};
use crate::init::provision::Note;

const DROP_IN: &str = "/etc/sudoers.d/labkit";
const SUDOERS: &str = "/etc/sudoers";
const INCLUDE: &str = "#includedir /etc/sudoers.d";

/// Where sudo may be installed inside an image.
const SUDO_PATHS: &[&str] = &["/usr/bin/sudo", "/bin/sudo", "/usr/local/bin/sudo", "/usr/sbin/sudo"];

fn installed(root: &Root) -> bool {
    SUDO_PATHS.iter().any(|p| root.path(p).is_file())
}

/// The drop-in's exact content. `path` is the job's PATH, used as sudo's
/// `secure_path` so `sudo python` finds the same python as the job; it is only
/// included when it holds nothing that could break out of the quoted value.
fn drop_in_content(uid: u32, path: Option<&str>) -> String {
    let mut s = String::from(
        "# Written by labinit at every container start: passwordless sudo for the\n\
         # cluster user, by uid. Set LABKIT_SUDO=0 to turn it off. Do not edit.\n",
    );
    if let Some(p) = path.filter(|p| safe_path(p)) {
        s.push_str(&format!("Defaults:#{uid} secure_path=\"{p}\"\n"));
    }
    s.push_str(&format!("#{uid} ALL=(ALL:ALL) NOPASSWD: ALL\n"));
    s
}

fn safe_path(p: &str) -> bool {
    !p.is_empty() && p.len() < 4096 && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+:@".contains(&b))
}

/// Whether a sudoers file already includes `/etc/sudoers.d`.
fn has_include(sudoers: &str) -> bool {
    sudoers.lines().any(|l| {
        let t = l.trim();
        let rest = t.strip_prefix("#includedir").or_else(|| t.strip_prefix("@includedir"));
        rest.is_some_and(|r| r.starts_with(char::is_whitespace) && r.trim() == "/etc/sudoers.d")
    })
}

/// Grant (or, with `enabled == false`, withdraw) the drop-in. Returns notes.
///
/// `Err` means the grant was not made (the message says why, with the errno
/// of a failed call); once the drop-in is written, a problem with
/// `/etc/sudoers` is a warning note instead, since the drop-in exists.
pub(crate) fn apply(root: &Root, uid: u32, enabled: bool, path: Option<&str>) -> io::Result<Vec<Note>> {
    let mut notes = Vec::new();
    let drop_in = root.path(DROP_IN);
    let ctx = |e: io::Error, what: String| io::Error::new(e.kind(), format!("{what}: {e}"));
    if !enabled {
        if fs::symlink_metadata(&drop_in).is_ok() {
            fs::remove_file(&drop_in).map_err(|e| ctx(e, format!("cannot remove {DROP_IN}")))?;
            notes.push(Note::Info("LABKIT_SUDO=0: removed the sudo grant from an earlier start".into()));
        } else {
            notes.push(Note::Info("LABKIT_SUDO=0: no sudo for the user".into()));
        }
        return Ok(notes);
    }
    if !installed(root) {
        notes.push(Note::Info("sudo is not installed in this image; the job runs without sudo".into()));
        return Ok(notes);
    }
    let dir = root.path("/etc/sudoers.d");
    match fs::symlink_metadata(&dir) {
        Ok(m) if m.file_type().is_symlink() => {
            let target = fs::read_link(&dir).map(|t| t.display().to_string()).unwrap_or_else(|_| "?".into());
            let dangling = if fs::metadata(&dir).is_err() { ", which does not exist" } else { "" };
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "/etc/sudoers.d is a symbolic link to {target}{dangling}; labinit writes the drop-in only into a real directory (make /etc/sudoers.d a directory in the image)"
                ),
            ));
        }
        Ok(m) if !m.is_dir() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "/etc/sudoers.d exists but is not a directory (make it a directory in the image)",
            ))
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir(&dir).map_err(|e| ctx(e, "cannot create /etc/sudoers.d".into()))?;
            fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .map_err(|e| ctx(e, "cannot chmod /etc/sudoers.d".into()))?;
        }
        Err(e) => return Err(ctx(e, "cannot inspect /etc/sudoers.d".into())),
    }
    let want = drop_in_content(uid, path);
    let current = fs::read(&drop_in).ok();
    let meta_ok = fs::symlink_metadata(&drop_in).is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.is_file() && m.mode() & 0o7777 == 0o440 && m.uid() == 0 && m.gid() == 0
    });
    if current.as_deref() != Some(want.as_bytes()) || !meta_ok {
        // Remove first so replace() creates it fresh as 0440 root:root rather
        // than keeping whatever owner/mode a stale file had.
        match fs::remove_file(&drop_in) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(ctx(e, format!("cannot replace the old {DROP_IN}"))),
        }
        files::replace(root, DROP_IN, want.as_bytes(), 0o440)?;
    }

    let include = match fs::read(root.path(SUDOERS)) {
        Ok(data) => {
            let text = String::from_utf8_lossy(&data);
            if has_include(&text) {
                Ok(None)
            } else {
                let mut new = data.clone();
                if !new.is_empty() && !new.ends_with(b"\n") {
                    new.push(b'\n');
                }
                new.extend_from_slice(format!("{INCLUDE}\n").as_bytes());
                files::replace(root, SUDOERS, &new, 0o440)
                    .map(|_| Some(Note::Info(format!("appended '{INCLUDE}' to /etc/sudoers (it had none)"))))
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let content = format!("# Written by labinit: sudo was installed without a sudoers file.\nDefaults env_reset\nroot ALL=(ALL:ALL) ALL\n{INCLUDE}\n");
            files::replace(root, SUDOERS, content.as_bytes(), 0o440).map(|_| {
                Some(Note::Warn("/etc/sudoers was missing; wrote a minimal one that includes /etc/sudoers.d".into()))
            })
        }
        Err(e) => Err(ctx(e, "cannot read /etc/sudoers".into())),
    };
    match include {
        Ok(note) => {
            notes.push(Note::Info(format!("sudo: passwordless for uid {uid} ({DROP_IN})")));
            notes.extend(note);
        }
        Err(e) => notes.push(Note::Warn(format!(
            "wrote the sudo grant {DROP_IN}, but /etc/sudoers could not be made to include /etc/sudoers.d ({e}); sudo may not read the grant"
        ))),
    }
    if no_new_privs() {
        notes.push(Note::Warn(
            "the no_new_privs flag is set (Kubernetes allowPrivilegeEscalation: false?); sudo will refuse to run inside the job".into(),
        ));
    }
    Ok(notes)
}

fn no_new_privs() -> bool {
    fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1')))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_detection() {
        assert!(has_include("Defaults env_reset\n#includedir /etc/sudoers.d\n"));
        assert!(has_include("@includedir /etc/sudoers.d"));
        assert!(!has_include("# includedir /etc/sudoers.d\n"));
        assert!(!has_include("#includedir /etc/sudoers.dx\n"));
        assert!(!has_include("root ALL=(ALL) ALL\n"));
    }

    #[test]
    fn drop_in_is_by_uid_and_skips_unsafe_path() {
        let c = drop_in_content(123456, Some("/opt/venv/bin:/usr/bin"));
        assert!(c.contains("#123456 ALL=(ALL:ALL) NOPASSWD: ALL\n"));
        assert!(c.contains("secure_path=\"/opt/venv/bin:/usr/bin\""));
        let c = drop_in_content(5, Some("/bin\"\nALL ALL=(ALL) ALL"));
        assert!(!c.contains("secure_path"));
        assert_eq!(c.lines().filter(|l| l.contains("ALL=")).count(), 1);
    }
}
