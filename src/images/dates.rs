//! Civil dates and timestamps in UTC, through `jiff`: today's date for
//! `labkit check`'s end-of-life warnings and `SOURCE_DATE_EPOCH` as the
//! `org.opencontainers.image.created` value of `labkit plan`. A leaf.

use jiff::Timestamp;

/// Today's date in UTC as `YYYY-MM-DD`.
pub(crate) fn today_utc() -> String {
    Timestamp::now().strftime("%Y-%m-%d").to_string()
}

/// Seconds since the epoch → `YYYY-MM-DDTHH:MM:SSZ`. Errors past
/// [`Timestamp::MAX`] (9999-12-30T22:00:00Z): RFC 3339 has no year 10000.
pub(crate) fn rfc3339_utc(epoch: i64) -> Result<String, String> {
    Timestamp::from_second(epoch).map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()).map_err(|_| {
        format!(
            "{epoch} seconds since the epoch is past the latest timestamp labkit writes ({})",
            Timestamp::MAX.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_from_epoch() {
        assert_eq!(rfc3339_utc(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000).unwrap(), "2023-11-14T22:13:20Z");
        // The first day of a leap year and a day after Feb 29.
        assert_eq!(rfc3339_utc(19_723 * 86_400).unwrap(), "2024-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(20_513 * 86_400 + 86_399).unwrap(), "2026-03-01T23:59:59Z");
        // The latest one, and (negative controls) one second later and the
        // largest SOURCE_DATE_EPOCH that parses.
        assert_eq!(rfc3339_utc(253_402_207_200).unwrap(), "9999-12-30T22:00:00Z");
        assert!(rfc3339_utc(253_402_207_201).unwrap_err().contains("9999-12-30T22:00:00Z"));
        assert!(rfc3339_utc(i64::MAX).is_err());
    }

    #[test]
    fn today_has_the_date_shape() {
        let t = today_utc();
        assert!(crate::images::syntax::date(&t).is_ok(), "{t}");
    }
}
