//! labinit's log lines: one line per event on stderr, prefixed `labinit:`,
//! so a researcher reading `kubectl logs` can tell them from the job's output.
//! `LABKIT_QUIET=1` hides info lines, never warnings or errors.
//!
//! Every message passes through `escape` on its way out, so a string from
//! outside (a process name, a file name, a service's output) can never end a
//! line early and forge a `labinit:` line of its own.

use std::borrow::Cow;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Hide info lines (warnings and errors are always shown).
pub(crate) fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether info lines are hidden (`LABKIT_QUIET=1`): work done only for an
/// info line can be skipped.
pub(crate) fn is_quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// The one escaping of outside text for log lines and log files: every
/// control character (C0, DEL, C1) becomes a visible escape (`\n`, `\r`,
/// `\t`, `\xNN`, `\u{NN}` for C1), so the result is a single line without
/// anything a terminal acts on. Other text, backslashes included, is kept.
/// Borrowed when nothing needs escaping (the usual case). Pure.
pub(crate) fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`escape`] for raw bytes (a service's output, names from `/proc`):
/// invalid UTF-8 is shown as U+FFFD. Pure.
pub(crate) fn escape_bytes(bytes: &[u8]) -> String {
    escape(&String::from_utf8_lossy(bytes)).into_owned()
}

/// At most `max` characters of `s`, [`escape`]d, with `…` when cut: for
/// names from outside (a Jupyter API, a runtime file) in log lines and error
/// messages. Pure.
pub(crate) fn shown(s: &str, max: usize) -> String {
    let head: String = s.chars().take(max).collect();
    let mut out = escape(&head).into_owned();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

/// The line `emit` writes, without the trailing newline. Pure.
pub(crate) fn line(level: &str, msg: &str) -> String {
    let msg = escape(msg);
    if level.is_empty() {
        format!("labinit: {msg}")
    } else {
        format!("labinit: {level}: {msg}")
    }
}

fn emit(level: &str, msg: &str) {
    // One write per line so lines from concurrent processes do not interleave.
    let mut line = line(level, msg);
    line.push('\n');
    let _ = std::io::stderr().write_all(line.as_bytes());
}

pub(crate) fn info(msg: impl AsRef<str>) {
    if !QUIET.load(Ordering::Relaxed) {
        emit("", msg.as_ref());
    }
}

pub(crate) fn warn(msg: impl AsRef<str>) {
    emit("warning", msg.as_ref());
}

pub(crate) fn error(msg: impl AsRef<str>) {
    emit("error", msg.as_ref());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_escapes() {
        assert_eq!(escape("\nx::0:0::/:\n"), "\\nx::0:0::/:\\n");
        assert_eq!(escape("a\rb\tc\x1b[31m\x7f\u{85}"), "a\\rb\\tc\\x1b[31m\\x7f\\u{85}");
        assert_eq!(escape_bytes(b"py\xffthon\n"), "py\u{fffd}thon\\n");
    }

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        // Negative control: ordinary text, backslashes and non-ASCII are kept.
        for s in ["python3 (pid 7) is running", "C:\\path", "Zürich → ok", ""] {
            assert!(matches!(escape(s), Cow::Borrowed(_)), "{s:?}");
            assert_eq!(escape(s), s);
        }
    }

    #[test]
    fn a_message_is_always_one_line() {
        let forged = "step x: ok\nlabinit: error: forged";
        let l = line("warning", forged);
        assert!(!l.contains('\n'));
        assert_eq!(l.matches("labinit:").count(), 2, "the forged text stays inside the one line: {l}");
        assert!(l.starts_with("labinit: warning: step x: ok\\nlabinit"));
    }

    #[test]
    fn shown_cuts_by_characters_and_escapes() {
        assert_eq!(shown("1a2b3c4d-5e6f", 8), "1a2b3c4d…");
        assert_eq!(shown("Zürich→ok", 7), "Zürich→…", "characters, not bytes");
        assert_eq!(shown("a\nb", 2), "a\\n…", "escaped after the cut: one character, one escape");
        // Control: short enough, nothing added.
        assert_eq!(shown("python3", 7), "python3");
        assert_eq!(shown("", 0), "");
    }
}
