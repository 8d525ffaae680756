//! Durations (`labkit::init::duration::parse`, `labkit::init::duration::parse_named`):
//! never panic on any text; an accepted value re-parses from its canonical
//! form (`<secs>.<nanos>s`) to the same duration; for one unit, a larger
//! number never gives a shorter duration; `duration::parse_named` accepts
//! exactly what `duration::parse` accepts up to the one cap, `duration::MAX`.
#![no_main]

use std::time::Duration;

use labkit::init::duration;
use libfuzzer_sys::fuzz_target;

const LIMIT: Duration = duration::MAX;

fn canonical(d: Duration) -> String {
    format!("{}.{:09}s", d.as_secs(), d.subsec_nanos())
}

fn check(text: &str) {
    let parsed = duration::parse(text);
    let named = duration::parse_named("LABKIT_FUZZ", text);
    match &parsed {
        Ok(d) => {
            assert_eq!(
                duration::parse(&canonical(*d)),
                Ok(*d),
                "{text:?} -> {d:?}: canonical form re-parses differently"
            );
            let _ = duration::show(*d);
            match &named {
                Ok(n) => assert!(*n == *d && *d <= LIMIT, "{text:?}: config {n:?} vs duration {d:?}"),
                Err(e) => {
                    assert!(*d > LIMIT && !e.message.is_empty(), "{text:?}: {d:?} refused by config: {}", e.message)
                }
            }
        }
        Err(e) => {
            assert!(!e.is_empty());
            let e = named.as_ref().expect_err("config accepted what duration refused");
            assert!(!e.message.contains('\n'), "multi-line error: {:?}", e.message);
        }
    }
}

/// Monotonic in the number for a fixed unit: a <= b  =>  parse(a u) <= parse(b u).
fn monotonic(a: u64, fa: u32, b: u64, fb: u32, unit: &str) {
    let (lo, hi) = if (a, fa) <= (b, fb) { ((a, fa), (b, fb)) } else { ((b, fb), (a, fa)) };
    let x = format!("{}.{:09}{unit}", lo.0, lo.1);
    let y = format!("{}.{:09}{unit}", hi.0, hi.1);
    let (dx, dy) = (duration::parse(&x).expect(&x), duration::parse(&y).expect(&y));
    // Saturation keeps the order too: past u64 seconds everything is MAX.
    assert!(dx <= dy, "{x} -> {dx:?} but {y} -> {dy:?}");
    let (ix, iy) =
        (duration::parse(&format!("{}{unit}", lo.0)).unwrap(), duration::parse(&format!("{}{unit}", hi.0)).unwrap());
    assert!(ix <= iy && ix <= dx, "{}{unit} -> {ix:?}, {}{unit} -> {iy:?}", lo.0, hi.0);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check(text);
    }
    // The same bytes, read as two numbers and a unit.
    if data.len() >= 17 {
        let a = u64::from_le_bytes(data[0..8].try_into().unwrap());
        let b = u64::from_le_bytes(data[8..16].try_into().unwrap());
        let unit = ["", "s", "m", "h", "d"][usize::from(data[16]) % 5];
        let (fa, fb) = (a as u32 % 1_000_000_000, b as u32 % 1_000_000_000);
        monotonic(a >> 8, fa, b >> 8, fb, unit);
        monotonic(a % 100_000, fa, b % 100_000, fb, unit);
    }
});
