//! Durations as users write them for `--timeout`, `--grace` and
//! `--kill-after` (and their `LABKIT_*` variables): `90s`, `30m`, `4h`, `2d`,
//! plain seconds (`45`) and fractions (`0.5s`, `1.5h`), as coreutils `timeout`
//! accepts them. Pure code; the caller decides what zero means.
//!
//! Huge values saturate instead of wrapping, so an absurd timeout never fires
//! early (coreutils clamps the same way); a setting refuses anything past the
//! one cap, [`MAX`]. Log lines show durations in one form, [`show`].

use std::time::Duration;

use crate::init::exit::Fatal;

/// Parse a duration. The error says why, without naming the option.
pub fn parse(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let (num, unit) = match value.char_indices().last() {
        None => return Err("it is empty".into()),
        Some((i, c)) if c.is_ascii_alphabetic() => (&value[..i], c),
        Some(_) => (value, 's'),
    };
    let mult: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        other => return Err(format!("the unit {other:?} is not one of s, m, h, d")),
    };
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if (int.is_empty() && frac.is_empty()) || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err("it is not a non-negative number".into());
    }
    // Integer part, saturating: 10^30 seconds is "never", not an overflow.
    let whole = int.bytes().fold(0u64, |acc, b| acc.saturating_mul(10).saturating_add(u64::from(b - b'0')));
    // Fraction in nanoseconds of one unit (digits past the 9th are dropped).
    let mut frac_ns = 0u64;
    let mut scale = 100_000_000u64;
    for b in frac.bytes().take(9) {
        frac_ns += u64::from(b - b'0') * scale;
        scale /= 10;
    }
    // Past u64 seconds the value is "never": Duration::MAX, whatever the
    // fraction, so a larger number never gives a shorter duration.
    let Some(secs) = whole.checked_mul(mult).filter(|_| whole != u64::MAX) else { return Ok(Duration::MAX) };
    let extra_ns = frac_ns.saturating_mul(mult); // < mult * 1e9, fits in u64
    let total = Duration::from_secs(secs).saturating_add(Duration::from_nanos(extra_ns));
    Ok(total)
}

/// Parse the value of an option or variable; the error names it and shows
/// the accepted forms.
pub fn parse_named(name: &str, value: &str) -> Result<Duration, Fatal> {
    let d = parse(value).map_err(|why| {
        Fatal::config(format!(
            "{name}={value:?} is not a duration: {why}; write a number with an optional unit s, m, h or d (e.g. 90s, 30m, 4h, 2d, 0.5s)"
        ))
    })?;
    // Past a year a value is a typo or an attack, not a plan; 0 means never.
    if d > MAX {
        return Err(Fatal::config(format!(
            "{name}={value:?} is longer than 366 days; write a shorter duration (0 switches a timeout off)"
        )));
    }
    Ok(d)
}

/// The longest duration any setting accepts (366 days): the one cap, for
/// every option and `LABKIT_*` duration.
pub const MAX: Duration = Duration::from_secs(366 * 86400);

/// The one form of a duration in log lines: `20 s`, `1.5 s`, `4 h`, `2 d`,
/// `30 min` (round values in their largest unit, from 10 minutes on), else
/// `24 min 30 s` or `1 h 1 min 5 s` (each unit once, zeros left out).
/// A measured duration is rounded: to 0.01 s below 1 s (`0.21 s`), to 0.1 s
/// below 10 s (`1.5 s`), to whole seconds from there on.
pub fn show(d: Duration) -> String {
    if d.subsec_nanos() != 0 && d < Duration::from_secs(10) {
        let places = if d < Duration::from_secs(1) { 2 } else { 1 };
        let text = format!("{:.*}", places, d.as_secs_f64());
        let text = text.trim_end_matches('0').trim_end_matches('.');
        return format!("{text} s");
    }
    let s = d.as_secs().saturating_add(u64::from(d.subsec_nanos() >= 500_000_000));
    for (unit, name) in [(86400, "d"), (3600, "h"), (60, "min")] {
        if s != 0 && s.is_multiple_of(unit) && (s >= 600 || unit > 60) {
            return format!("{} {name}", s / unit);
        }
    }
    if s < 600 {
        return format!("{s} s");
    }
    let parts = [(s / 86400, "d"), (s % 86400 / 3600, "h"), (s % 3600 / 60, "min"), (s % 60, "s")];
    parts.iter().filter(|(n, _)| *n != 0).map(|(n, unit)| format!("{n} {unit}")).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn units() {
        assert_eq!(ok("90s"), Duration::from_secs(90));
        assert_eq!(ok("30m"), Duration::from_secs(1800));
        assert_eq!(ok("4h"), Duration::from_secs(4 * 3600));
        assert_eq!(ok("2d"), Duration::from_secs(2 * 86400));
        assert_eq!(ok("45"), Duration::from_secs(45));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok(" 7s "), Duration::from_secs(7));
    }

    #[test]
    fn fractions() {
        assert_eq!(ok("0.5s"), Duration::from_millis(500));
        assert_eq!(ok(".25"), Duration::from_millis(250));
        assert_eq!(ok("1."), Duration::from_secs(1));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("0.001"), Duration::from_millis(1));
        assert_eq!(ok("0.1234567891s"), Duration::from_nanos(123_456_789));
    }

    #[test]
    fn saturation_keeps_the_order() {
        let a = parse("5124095576030432h").unwrap();
        let b = parse("5124095576030431.9h").unwrap();
        assert!(b <= a, "{b:?} > {a:?}");
        assert_eq!(parse("99999999999999999999d").unwrap(), Duration::MAX);
    }

    #[test]
    fn absurd_values_saturate_instead_of_wrapping() {
        let d = ok("99999999999999999999999999d");
        assert!(d > Duration::from_secs(100 * 365 * 86400));
        assert!(ok("18446744073709551615d") >= ok("18446744073709551615s"));
    }

    #[test]
    fn rejects() {
        for bad in ["", "s", "h", ".", "-1", "1e3", "1x", "4 h x", "1..2", "abc", "1.2.3s", "+5", "0x10", "5ms"] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        let e = parse_named("--timeout", "4y").unwrap_err();
        assert_eq!(e.code, crate::init::exit::CONFIG);
        assert!(e.message.contains("--timeout") && e.message.contains("4h"), "{}", e.message);
    }

    #[test]
    fn shows() {
        assert_eq!(show(Duration::from_secs(20)), "20 s");
        assert_eq!(show(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(show(Duration::from_secs(4 * 3600)), "4 h");
        assert_eq!(show(Duration::from_secs(1800)), "30 min");
        assert_eq!(show(Duration::from_secs(120)), "120 s");
        // One form for every log line, the idle watchdog's included.
        assert_eq!(show(Duration::from_secs(1470)), "24 min 30 s");
        assert_eq!(show(Duration::from_secs(3661)), "1 h 1 min 1 s");
        assert_eq!(show(Duration::from_secs(86400 + 5)), "1 d 5 s");
        assert_eq!(show(Duration::from_secs(2 * 86400)), "2 d");
        assert_eq!(show(Duration::from_secs(5400)), "90 min");
        assert_eq!(show(Duration::from_secs(3600)), "1 h");
        assert_eq!(show(Duration::from_secs(0)), "0 s");
        assert_eq!(show(Duration::from_millis(200)), "0.2 s");
        // Measured durations are rounded (the idle watchdog's "idle for").
        assert_eq!(show(Duration::from_nanos(209_092_000)), "0.21 s");
        assert_eq!(show(Duration::from_nanos(10_569_488_002)), "11 s");
        assert_eq!(show(Duration::from_nanos(10_400_000_000)), "10 s");
        assert_eq!(show(Duration::from_nanos(9_960_000_000)), "10 s");
        assert_eq!(show(Duration::from_nanos(1_040_000)), "0 s");
        assert_eq!(show(Duration::from_nanos(599_600_000_000)), "10 min");
        // The largest duration rounds without overflowing (found by fuzz/duration).
        assert!(show(Duration::new(u64::MAX, 999_999_999)).ends_with(" s"));
    }

    #[test]
    fn one_cap() {
        assert_eq!(parse_named("--timeout", "366d").unwrap(), MAX);
        let e = parse_named("LABKIT_STEP_TIMEOUT", "366.5d").unwrap_err();
        assert!(e.message.contains("LABKIT_STEP_TIMEOUT=\"366.5d\" is longer than 366 days"), "{}", e.message);
    }
}
