//! The optional idle log file (`LABKIT_IDLE_LOG`) on a shared volume,
//! written the careful way.

use std::path::{Path, PathBuf};

use crate::init::civil::utc;
use crate::init::trusted;

/// The optional `LABKIT_IDLE_LOG` file: every watchdog line, appended with
/// a UTC time stamp and the host name. `{host}` and `{date}` in the path are
/// replaced (the legacy kept one file per host and day on the shared volume).
pub(crate) struct IdleLog {
    template: Option<PathBuf>,
    warned: bool,
}

impl IdleLog {
    pub(crate) fn new(template: Option<PathBuf>) -> IdleLog {
        IdleLog { template, warned: false }
    }

    pub(crate) fn write(&mut self, line: &str) {
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
pub(crate) fn log_path(template: &str, host: &str, date: &str) -> String {
    let host: String = host.chars().map(|c| if c == '/' || c.is_control() { '_' } else { c }).collect();
    template.replace("{host}", &host).replace("{date}", date)
}

/// One line of the idle log file, escaped like labinit's own log lines. Pure.
pub(crate) fn log_line(stamp: &str, host: &str, line: &str) -> String {
    format!("{stamp} {} {}\n", crate::init::log::escape(host), crate::init::log::escape(line))
}

/// Append `text` to the idle log at `path` in one write. The file lies where
/// users may write (a shared volume): it is opened by descriptor, component
/// by component, never through a symbolic link a user could have planted
/// ([`trusted::open_nofollow`]), and only a regular file with a single link
/// is written (a hard link to `/etc/passwd` is refused too).
pub(crate) fn append(path: &Path, text: &[u8]) -> std::io::Result<()> {
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
