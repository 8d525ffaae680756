//! The part of Jupyter's REST API the idle rule reads: `GET /api/status`
//! and `GET /api/kernels` (jupyter_server's `api_handlers`), and the ISO 8601
//! times in them. Pure parsers; a leaf (labinit's JSON reader and civil dates).

use crate::init::civil;
use crate::init::json::{self, Json};

/// `GET /api/status`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Status {
    /// Microseconds since the epoch (UTC).
    pub(crate) last_activity: Option<i64>,
    pub(crate) connections: u64,
    pub(crate) kernels: u64,
}

/// One kernel of `GET /api/kernels`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Kernel {
    pub(crate) id: String,
    pub(crate) name: String,
    /// `idle`, `busy`, `starting`, … (Jupyter's kernel status).
    pub(crate) execution_state: String,
    /// Microseconds since the epoch (UTC).
    pub(crate) last_activity: Option<i64>,
    pub(crate) connections: u64,
}

/// `GET /api/status` from its JSON. Pure.
pub fn parse_status(text: &str) -> Result<Status, String> {
    let v = json::parse(text)?;
    if !matches!(v, Json::Obj(_)) {
        return Err("/api/status: not a JSON object".into());
    }
    let last_activity = match v.get("last_activity") {
        None | Some(Json::Null) => None,
        Some(t) => Some(t.as_str().and_then(parse_time).ok_or("/api/status: last_activity is not an ISO 8601 time")?),
    };
    Ok(Status {
        last_activity,
        connections: v.get("connections").and_then(Json::as_u64).unwrap_or(0),
        kernels: v.get("kernels").and_then(Json::as_u64).unwrap_or(0),
    })
}

/// `GET /api/kernels` from its JSON. Pure.
pub fn parse_kernels(text: &str) -> Result<Vec<Kernel>, String> {
    let v = json::parse(text)?;
    let list = v.as_array().ok_or("/api/kernels: not a JSON array")?;
    list.iter()
        .map(|k| {
            let s = |key: &str| k.get(key).and_then(Json::as_str).unwrap_or("").to_owned();
            if !matches!(k, Json::Obj(_)) {
                return Err("/api/kernels: an entry is not an object".to_owned());
            }
            Ok(Kernel {
                id: s("id"),
                name: s("name"),
                execution_state: s("execution_state"),
                last_activity: k.get("last_activity").and_then(Json::as_str).and_then(parse_time),
                connections: k.get("connections").and_then(Json::as_u64).unwrap_or(0),
            })
        })
        .collect()
}

/// An ISO 8601 time as Jupyter writes it (`2026-11-30T07:40:00.123456Z`;
/// also `+HH:MM` offsets, a space for `T`, no fraction) in microseconds
/// since the epoch. Pure.
pub fn parse_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let d = b.get(r)?;
        d.iter().all(u8::is_ascii_digit).then(|| d.iter().fold(0i64, |n, c| n * 10 + i64::from(c - b'0')))
    };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let mdays = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d < 1 || d > mdays[(mo - 1) as usize] || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 6 {
                micros = micros * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..6 {
            micros *= 10;
        }
    }
    let offset = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = (oh * 60 + om) * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let days = civil::days_from_civil(y, mo, d);
    let secs = days * 86400 + h * 3600 + mi * 60 + sec - offset;
    Some(secs * 1_000_000 + micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const T0: &str = "2026-11-30T07:40:00.123456Z";

    #[test]
    fn times() {
        let t0 = parse_time(T0).unwrap();
        assert_eq!(t0, 1_796_024_400_123_456);
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2000-02-29T00:00:00Z"), Some(951_782_400_000_000));
        assert_eq!(parse_time("2026-11-30T08:40:00.123456+01:00"), Some(t0));
        assert_eq!(parse_time("2026-11-30T07:40:00.1234569Z"), Some(t0), "digits past microseconds dropped");
        assert_eq!(parse_time("2026-11-30T07:40:00.1Z"), Some(t0 - 23_456));
        assert_eq!(parse_time("2026-11-30 07:40:00Z"), Some(t0 - 123_456));
        // Agrees with the watchdog's own formatter for every day of 60 years.
        for day in 0..(60 * 366) {
            let secs = day * 86400 + 12 * 3600 + 34 * 60 + 56;
            assert_eq!(parse_time(&civil::utc(secs as u64)), Some(secs * 1_000_000));
        }
        for bad in [
            "",
            "2026-11-30",
            "2026-11-30T07:40:00",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-11-31T00:00:00Z",
            "2026-11-30T24:00:00Z",
            "2026-11-30T07:40:00.Z",
            "2026-11-30T07:40:00+0100",
            "2026-11-30T07:40:00Zjunk",
            "2026-11-30T07:4a:00Z",
            "+026-11-30T07:40:00Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }
    #[test]
    fn api_answers() {
        let s = parse_status(r#"{"connections": 2, "kernels": 1, "last_activity": "2026-11-30T07:40:00.123456Z", "started": "2026-11-30T07:00:00Z"}"#).unwrap();
        assert_eq!(s, Status { last_activity: parse_time(T0), connections: 2, kernels: 1 });
        let k = parse_kernels(r#"[{"id": "d6c6504f-cac4", "name": "python3", "last_activity": "2026-11-30T07:40:00.123456Z", "execution_state": "busy", "connections": 0}]"#).unwrap();
        assert_eq!(
            k,
            vec![Kernel {
                id: "d6c6504f-cac4".into(),
                name: "python3".into(),
                execution_state: "busy".into(),
                last_activity: parse_time(T0),
                connections: 0
            }]
        );
        assert_eq!(parse_kernels("[]").unwrap(), vec![]);
        assert!(parse_status("[]").is_err());
        assert!(parse_status(r#"{"last_activity": "yesterday"}"#).is_err());
        assert!(parse_kernels("{}").is_err());
        assert!(parse_kernels("[1]").is_err());
        assert!(parse_kernels("[{").is_err());
    }
}
