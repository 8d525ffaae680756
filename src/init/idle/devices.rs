//! The GPU rule's device side: which device nodes match the glob, and
//! whether a process holds one open.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

/// Minimal glob: `*`, `?` and `[...]` classes with ranges (`[0-9]`).
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // Returns (matched, length of the class in the pattern).
        let end = p.iter().skip(1).position(|&x| x == ']')? + 1;
        let body = &p[1..end];
        let mut i = 0;
        let mut hit = false;
        while i < body.len() {
            if i + 2 < body.len() && body[i + 1] == '-' {
                hit |= body[i] <= c && c <= body[i + 2];
                i += 3;
            } else {
                hit |= body[i] == c;
                i += 1;
            }
        }
        Some((hit, end + 1))
    }
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).any(|i| go(&p[1..], &t[i..])),
            Some('?') => !t.is_empty() && go(&p[1..], &t[1..]),
            Some('[') => match (t.first(), class(p, *t.first().unwrap_or(&'\0'))) {
                (Some(_), Some((true, len))) => go(&p[len..], &t[1..]),
                (_, Some(_)) => false,
                (Some(c), None) => *c == '[' && go(&p[1..], &t[1..]),
                (None, None) => false,
            },
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    go(&p, &t)
}

/// Device nodes matching the glob (only the last path component may hold
/// wildcards).
pub(crate) fn matching_devices(glob: &str) -> Vec<String> {
    let path = Path::new(glob);
    let (Some(dir), Some(pat)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else { return Vec::new() };
    let Ok(rd) = fs::read_dir(dir) else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| glob_match(pat, n))
        .map(|n| dir.join(n).display().to_string())
        .collect()
}

/// The first open file of `pid` that is one of `devices`.
pub(super) fn open_device(proc_root: &Path, pid: i32, devices: &HashSet<String>) -> Option<String> {
    let rd = fs::read_dir(proc_root.join(pid.to_string()).join("fd")).ok()?;
    for e in rd.flatten() {
        if let Ok(target) = fs::read_link(e.path()) {
            let t = target.display().to_string();
            if devices.contains(&t) {
                return Some(t);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("nvidia[0-9]*", "nvidia0"));
        assert!(glob_match("nvidia[0-9]*", "nvidia12"));
        assert!(!glob_match("nvidia[0-9]*", "nvidiactl"));
        assert!(!glob_match("nvidia[0-9]*", "nvidia-uvm"));
        assert!(glob_match("fake?", "fake1"));
        assert!(!glob_match("fake?", "fake"));
    }
}
