//! `LABKIT_ENV` lines (`labkit::init::steps::parse_env_line`): never panics,
//! and an accepted `NAME=value` renders back (`format!("{k}={v}")`) to a line
//! that parses to the same pair. Checked on the whole input and on each of
//! its lines, as labinit reads a step's file line by line.
#![no_main]

use labkit::init::steps::parse_env_line;
use libfuzzer_sys::fuzz_target;

fn check(line: &str) {
    match parse_env_line(line) {
        Ok(Some((k, v))) => {
            assert!(!k.is_empty() && !k.contains('='), "name {k:?}");
            assert!(!k.starts_with("LABKIT_"), "reserved name {k:?} accepted");
            assert!(!v.contains('\0'), "NUL in value accepted");
            assert_eq!(line, format!("{k}={v}"), "the pair is not the line itself");
            let again = parse_env_line(&format!("{k}={v}"));
            assert_eq!(again, Ok(Some((k.clone(), v.clone()))), "round trip of {k}={v:?}");
        }
        Ok(None) => {
            let t = line.trim_start();
            assert!(t.is_empty() || t.starts_with('#'), "{line:?} ignored but is neither blank nor a comment");
        }
        Err(e) => assert!(!e.is_empty()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    check(text);
    for line in text.lines() {
        check(line);
    }
});
