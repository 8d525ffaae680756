//! labinit's log lines: one line per event on stderr, prefixed `labinit:`,
//! so a researcher reading `kubectl logs` can tell them from the job's output.
//! `LABKIT_QUIET=1` hides info lines, never warnings or errors.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

/// Hide info lines (warnings and errors are always shown).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

fn emit(level: &str, msg: &str) {
    // One write per line so lines from concurrent processes do not interleave.
    let line = if level.is_empty() { format!("labinit: {msg}\n") } else { format!("labinit: {level}: {msg}\n") };
    let _ = std::io::stderr().write_all(line.as_bytes());
}

pub fn info(msg: impl AsRef<str>) {
    if !QUIET.load(Ordering::Relaxed) {
        emit("", msg.as_ref());
    }
}

pub fn warn(msg: impl AsRef<str>) {
    emit("warning", msg.as_ref());
}

pub fn error(msg: impl AsRef<str>) {
    emit("error", msg.as_ref());
}
