//! labinit's JSON reader and the Jupyter rule's parsers
//! (`labkit::init::json`, `labkit::init::jupyter`): never panic on any
//! input; whatever serde_json accepts (nesting within `json::MAX_DEPTH`) the
//! small reader accepts with the same value; an accepted ISO 8601 time is
//! the same instant as serde-free arithmetic on its fields says; HTTP
//! answers parse or fail, never panic.
#![no_main]

use labkit::init::json::{self, Json};
use labkit::init::jupyter;
use libfuzzer_sys::fuzz_target;

fn same(a: &Json, b: &serde_json::Value) -> bool {
    use serde_json::Value as V;
    match (a, b) {
        (Json::Null, V::Null) => true,
        (Json::Bool(x), V::Bool(y)) => x == y,
        (Json::Num(n), V::Number(m)) => match (n.parse::<f64>(), m.as_f64()) {
            // serde_json's default float parsing is not always correctly
            // rounded (`250e+42` gives 2.5000000000000002e44, std's parse
            // 2.5e44): the same number within a few ulps.
            (Ok(x), Some(y)) => {
                x == y || (x.is_nan() && y.is_nan()) || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
            }
            _ => false,
        },
        (Json::Str(x), V::String(y)) => x == y,
        (Json::Arr(x), V::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q)),
        // serde_json keeps the last of repeated keys; ours, every copy.
        (Json::Obj(x), V::Object(y)) => {
            y.iter().all(|(k, v)| x.iter().rev().find(|(xk, _)| xk == k).is_some_and(|(_, xv)| same(xv, v)))
        }
        _ => false,
    }
}

fn depth(text: &str) -> usize {
    let (mut d, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for c in text.chars() {
        match (in_str, esc, c) {
            (true, true, _) => esc = false,
            (true, false, '\\') => esc = true,
            (true, false, '"') => in_str = false,
            (false, _, '"') => in_str = true,
            (false, _, '[' | '{') => {
                d += 1;
                max = max.max(d);
            }
            (false, _, ']' | '}') => d = d.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fuzz_target!(|data: &[u8]| {
    let _ = jupyter::parse_response(data);
    let _ = jupyter::runtime_file_pid(data);
    let Ok(text) = std::str::from_utf8(data) else { return };
    let ours = json::parse(text);
    if let Ok(theirs) = serde_json::from_str::<serde_json::Value>(text) {
        if depth(text) <= json::MAX_DEPTH {
            let v = ours.as_ref().unwrap_or_else(|e| panic!("{text:?}: serde_json accepts, we refuse: {e}"));
            assert!(same(v, &theirs), "{text:?}: {v:?} vs {theirs:?}");
        }
    }
    let _ = jupyter::parse_status(text);
    let _ = jupyter::parse_kernels(text);
    let _ = jupyter::parse_server(text, 1);
    if let Some(t) = jupyter::parse_time(text) {
        // Same instant as the fields say (UTC only: no offset to apply).
        if text.len() >= 20 && text.ends_with('Z') && !text.contains('.') {
            let secs = t.div_euclid(1_000_000);
            if (0..253_402_300_800).contains(&secs) {
                let back = labkit::init::civil::utc(secs as u64);
                let leap_second = &text[17..19] == "60";
                assert!(leap_second || back[..19] == text[..19].replace(['t', ' '], "T"), "{text:?} -> {back}");
            }
        }
    }
});
