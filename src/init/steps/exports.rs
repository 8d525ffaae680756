//! The `LABKIT_ENV` file: what steps export to the job. See
//! [`parse_env_line`] for the grammar of one line, [`Exports`] for how values
//! combine and [`EnvReader`] for how the file is read and bounded.

use std::io;
use std::os::unix::fs::FileExt;

use crate::init::log;

/// Longest `NAME=value` line a step may export: the job's whole environment
/// must fit the kernel's limit at exec (128 KiB for one string, a quarter of
/// the stack limit for all), and a value that does not makes the job itself
/// unstartable.
pub(crate) const MAX_EXPORT_BYTES: usize = 64 * 1024;
/// Most bytes all exports together may hold (`NAME=value` each).
pub(crate) const MAX_EXPORTS_TOTAL: usize = 1024 * 1024;
/// Most bytes of `LABKIT_ENV` read in one start; the rest is ignored.
pub(crate) const MAX_ENV_FILE: u64 = 16 * 1024 * 1024;

/// A variable exported by a step.
pub type Export = (String, String);

/// Parse one `LABKIT_ENV` line. Blank lines and `#` comments give `None`.
/// Grammar: `NAME=value`, NAME = `[A-Za-z_][A-Za-z0-9_]*` and not `LABKIT_*`
/// (labinit's own) nor HOME, USER, LOGNAME, SHELL (the account's: see
/// [`crate::init::job::reserved_export`]), value taken literally to the end
/// of the line (no quotes, no expansion), without NUL; the whole line at
/// most [`MAX_EXPORT_BYTES`].
pub fn parse_env_line(line: &str) -> Result<Option<Export>, String> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let Some((name, value)) = line.split_once('=') else {
        return Err("expected NAME=value".into());
    };
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        let shown: String = name.chars().take(64).collect();
        return Err(format!("{shown:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"));
    }
    if name.starts_with("LABKIT_") {
        return Err(format!("{name} is reserved for labinit"));
    }
    if let Some(why) = crate::init::job::reserved_export(name) {
        return Err(why);
    }
    if line.len() > MAX_EXPORT_BYTES {
        return Err(format!(
            "{name}=… is longer than {} KiB, the most an exported variable may hold (the job could not be started with it)",
            MAX_EXPORT_BYTES / 1024
        ));
    }
    if value.contains('\0') {
        return Err("the value contains a NUL byte".into());
    }
    Ok(Some((name.to_owned(), value.to_owned())))
}

/// The exports collected so far: last value wins (and moves to the end), in
/// linear time, with the total size bounded.
#[derive(Default)]
pub(crate) struct Exports {
    list: Vec<Option<Export>>,
    index: std::collections::HashMap<String, usize>,
    bytes: usize,
}

impl Exports {
    /// Add one parsed variable; `Err` when the total would pass
    /// [`MAX_EXPORTS_TOTAL`].
    pub(crate) fn set(&mut self, name: String, value: String) -> Result<(), String> {
        let size = name.len() + value.len() + 2;
        let old = self.index.get(&name).and_then(|&i| self.list[i].as_ref()).map_or(0, |(n, v)| n.len() + v.len() + 2);
        if self.bytes - old + size > MAX_EXPORTS_TOTAL {
            return Err(format!(
                "the exports would exceed {} KiB in all (the job could not be started with them)",
                MAX_EXPORTS_TOTAL / 1024
            ));
        }
        if let Some(i) = self.index.remove(&name) {
            self.list[i] = None;
        }
        self.bytes = self.bytes - old + size;
        self.index.insert(name.clone(), self.list.len());
        self.list.push(Some((name, value)));
        Ok(())
    }

    pub(crate) fn into_vec(self) -> Vec<Export> {
        self.list.into_iter().flatten().collect()
    }
}

/// Reads what steps append to `LABKIT_ENV`, by descriptor, from where the
/// previous step left off: linear in the file's size, bounded by
/// [`MAX_ENV_FILE`], and stopped by a pending stop signal.
pub(crate) struct EnvReader {
    offset: u64,
    line: usize,
    partial: Vec<u8>,
    over_limit: bool,
    /// Bad lines of the current step (warned up to [`MAX_LINE_WARNINGS`]).
    bad: usize,
}

/// Bad `LABKIT_ENV` lines warned about one by one per step; the rest are
/// counted in one line, so a runaway step cannot flood the log.
pub(crate) const MAX_LINE_WARNINGS: usize = 10;

impl EnvReader {
    pub(crate) fn new() -> EnvReader {
        EnvReader { offset: 0, line: 0, partial: Vec::new(), over_limit: false, bad: 0 }
    }

    /// Parse what `step` appended. `Err(signal)` when a stop signal
    /// arrived meanwhile.
    pub(crate) fn collect(
        &mut self,
        step: &str,
        file: &std::fs::File,
        exports: &mut Exports,
        pending: &dyn Fn() -> Option<i32>,
    ) -> Result<(), i32> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(sig) = pending() {
                return Err(sig);
            }
            if self.offset >= MAX_ENV_FILE {
                if !std::mem::replace(&mut self.over_limit, true) {
                    log::warn(format!(
                        "step {step}: LABKIT_ENV holds more than {} MiB; the rest is ignored",
                        MAX_ENV_FILE / (1024 * 1024)
                    ));
                }
                break;
            }
            let want = buf.len().min((MAX_ENV_FILE - self.offset) as usize);
            let n = match file.read_at(&mut buf[..want], self.offset) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn(format!("step {step}: cannot read LABKIT_ENV: {e}; its exports are ignored"));
                    break;
                }
            };
            self.offset += n as u64;
            let mut rest = &buf[..n];
            while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
                self.line_done(step, &rest[..nl], exports);
                rest = &rest[nl + 1..];
            }
            // Keep at most one byte past the limit: enough to know it is too long.
            let room = (MAX_EXPORT_BYTES + 1).saturating_sub(self.partial.len());
            self.partial.extend_from_slice(&rest[..rest.len().min(room)]);
            if rest.len() > room {
                self.partial.push(b'x');
            }
        }
        // A last line without a newline belongs to this step.
        if !self.partial.is_empty() {
            self.line_done(step, &[], exports);
        }
        let bad = std::mem::take(&mut self.bad);
        if bad > MAX_LINE_WARNINGS {
            log::warn(format!(
                "step {step}: {} more bad LABKIT_ENV lines ignored (up to line {})",
                bad - MAX_LINE_WARNINGS,
                self.line
            ));
        }
        Ok(())
    }

    fn line_done(&mut self, step: &str, tail: &[u8], exports: &mut Exports) {
        self.line += 1;
        let room = (MAX_EXPORT_BYTES + 2).saturating_sub(self.partial.len());
        self.partial.extend_from_slice(&tail[..tail.len().min(room)]);
        let text = String::from_utf8_lossy(&self.partial);
        let result = parse_env_line(&text).and_then(|e| match e {
            Some((k, v)) => exports.set(k, v),
            None => Ok(()),
        });
        if let Err(why) = result {
            self.bad += 1;
            if self.bad <= MAX_LINE_WARNINGS {
                log::warn(format!("step {step}: LABKIT_ENV line {}: {why}; line ignored", self.line));
            }
        }
        self.partial.clear();
    }
}

impl Default for EnvReader {
    fn default() -> Self {
        EnvReader::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lines() {
        assert_eq!(parse_env_line("FOO=1").unwrap(), Some(("FOO".into(), "1".into())));
        assert_eq!(parse_env_line("A_B=x=y 'z'").unwrap(), Some(("A_B".into(), "x=y 'z'".into())));
        assert_eq!(parse_env_line("EMPTY=").unwrap(), Some(("EMPTY".into(), "".into())));
        assert_eq!(parse_env_line("# comment").unwrap(), None);
        assert_eq!(parse_env_line("   ").unwrap(), None);
        for bad in ["FOO", "1X=2", "A-B=1", "export FOO=1", " FOO=1", "LABKIT_USER=root", "=x", "A\0=1"] {
            assert!(parse_env_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn last_value_wins() {
        let mut ex = Exports::default();
        EnvReader::new().collect("s", &temp_file(b"A=1\nB=2\nA=3\n"), &mut ex, &|| None).unwrap();
        assert_eq!(ex.into_vec(), vec![("B".into(), "2".into()), ("A".into(), "3".into())]);
    }

    fn temp_file(data: &[u8]) -> std::fs::File {
        let path = std::env::temp_dir().join(format!("labkit-steps-unit-{}-{:p}", std::process::id(), data));
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, data).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    #[test]
    fn oversized_export_is_refused_and_the_rest_kept() {
        // The case of issue 11: a 200 KB value is refused; a normal one after it stays.
        let mut data = b"SMALL=1\nBIG_LIST=".to_vec();
        data.extend(std::iter::repeat_n(b'x', 200_000));
        data.extend_from_slice(b"\nAFTER=2\n");
        let f = temp_file(&data);
        let mut ex = Exports::default();
        EnvReader::new().collect("10_export.sh", &f, &mut ex, &|| None).unwrap();
        assert_eq!(ex.into_vec(), vec![("SMALL".into(), "1".into()), ("AFTER".into(), "2".into())]);
        // Negative control: just under the limit is accepted.
        let mut data = b"EDGE=".to_vec();
        data.extend(std::iter::repeat_n(b'y', MAX_EXPORT_BYTES - 5));
        let f = temp_file(&data);
        let mut ex = Exports::default();
        EnvReader::new().collect("s", &f, &mut ex, &|| None).unwrap();
        assert_eq!(ex.into_vec()[0].1.len(), MAX_EXPORT_BYTES - 5);
        assert!(parse_env_line(&format!("A={}", "z".repeat(MAX_EXPORT_BYTES))).unwrap_err().contains("KiB"));
    }

    #[test]
    fn exports_total_is_bounded() {
        let mut ex = Exports::default();
        let v = "v".repeat(60_000);
        let mut refused = 0;
        for i in 0..40 {
            if ex.set(format!("V{i}"), v.clone()).is_err() {
                refused += 1;
            }
        }
        assert_eq!(refused, 40 - MAX_EXPORTS_TOTAL / 60_004, "the total stops at 1 MiB");
        // Replacing a value frees its old size.
        let mut ex = Exports::default();
        for _ in 0..100 {
            ex.set("SAME".into(), v.clone()).unwrap();
        }
        assert_eq!(ex.into_vec().len(), 1);
    }

    #[test]
    fn many_lines_are_read_in_linear_time_and_numbered_across_steps() {
        // 300k lines (the slow case) in one step; then another step's
        // bad line is numbered from the file's start.
        let mut data = String::new();
        for i in 0..300_000 {
            data.push_str(&format!("V{}={i}\n", i % 1000));
        }
        let f = temp_file(data.as_bytes());
        let mut ex = Exports::default();
        let mut r = EnvReader::new();
        r.collect("a", &f, &mut ex, &|| None).unwrap();
        let v = ex.into_vec();
        assert_eq!(v.len(), 1000);
        assert_eq!(v[999], ("V999".into(), "299999".into()));
        assert_eq!(r.line, 300_000);
    }

    #[test]
    fn a_pending_signal_interrupts_reading() {
        let f = temp_file(b"A=1\n");
        let mut ex = Exports::default();
        assert_eq!(EnvReader::new().collect("a", &f, &mut ex, &|| Some(15)), Err(15));
        assert!(ex.into_vec().is_empty());
    }

    #[test]
    fn bad_lines_are_counted_not_warned_one_by_one() {
        let f = temp_file("bad line\n".repeat(1000).as_bytes());
        let mut ex = Exports::default();
        let mut r = EnvReader::new();
        r.collect("a", &f, &mut ex, &|| None).unwrap();
        assert_eq!((r.line, r.bad), (1000, 0), "the count is per step and reset");
    }
}
