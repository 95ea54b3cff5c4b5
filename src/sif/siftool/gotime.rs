//! Go's `time.Unix(sec, 0).UTC().String()` and `IsZero`, for siftool's timestamps.
//!
//! Go prints `2006-01-02 15:04:05 +0000 UTC`, the year zero-padded to four digits
//! (with a `-` before negative years, more digits past 9999). Dates are proleptic
//! Gregorian, computed in 128-bit integers so that no `i64` can overflow. (Go itself
//! is only specified for years within about ±292 billion; for the few Unix times at
//! the very ends of `i64` Go versions disagree with each other, and this prints the
//! true date.)

const SECONDS_PER_DAY: i128 = 86_400;
/// Seconds from January 1, year 1 (Go's zero time) to the Unix epoch.
const UNIX_TO_INTERNAL: i128 = (1969 * 365 + 1969 / 4 - 1969 / 100 + 1969 / 400) * SECONDS_PER_DAY;

/// Whether Go's `time.Unix(sec, 0).IsZero()` holds (January 1, year 1).
pub fn is_zero(sec: i64) -> bool {
    i128::from(sec) == -UNIX_TO_INTERNAL
}

/// Year (as Go prints it), month, day, hour, minute and second of Unix time `sec`, in UTC.
fn utc_fields(sec: i64) -> (String, i128, i128, i128, i128, i128) {
    let unix = i128::from(sec);
    let days = unix.div_euclid(SECONDS_PER_DAY);
    let secs = unix.rem_euclid(SECONDS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    (
        go_year(year),
        month,
        day,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
    )
}

/// `time.Unix(sec, 0).UTC().String()`.
pub fn format_utc(sec: i64) -> String {
    let (y, mo, d, h, mi, s) = utc_fields(sec);
    format!("{y}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} +0000 UTC")
}

/// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339 in UTC), for labels.
pub fn format_rfc3339(sec: i64) -> String {
    let (y, mo, d, h, mi, s) = utc_fields(sec);
    format!("{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// The year as Go's `appendInt(year, 4)` writes it.
fn go_year(year: i128) -> String {
    if year < 0 {
        format!("-{:04}", -year)
    } else {
        format!("{year:04}")
    }
}

/// Proleptic Gregorian (year, month, day) of the day `days` after 1970-01-01
/// (H. Hinnant's algorithm).
fn civil_from_days(days: i128) -> (i128, i128, i128) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        assert_eq!(format_utc(1_590_175_859), "2020-05-22 19:30:59 +0000 UTC");
        assert_eq!(format_utc(1_593_475_316), "2020-06-30 00:01:56 +0000 UTC");
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(format_utc(-1), "1969-12-31 23:59:59 +0000 UTC");
        assert_eq!(format_utc(-62_135_596_800), "0001-01-01 00:00:00 +0000 UTC");
        assert_eq!(format_utc(-62_135_596_801), "0000-12-31 23:59:59 +0000 UTC");
        assert_eq!(
            format_utc(-62_167_219_201),
            "-0001-12-31 23:59:59 +0000 UTC"
        );
        assert_eq!(
            format_utc(253_402_300_800),
            "10000-01-01 00:00:00 +0000 UTC"
        );
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 +0000 UTC");
    }

    #[test]
    fn extremes_do_not_overflow() {
        assert_eq!(
            format_utc(i64::MIN),
            "-292277022657-01-27 08:29:52 +0000 UTC"
        );
        assert_eq!(
            format_utc(i64::MAX),
            "292277026596-12-04 15:30:07 +0000 UTC"
        );
    }

    #[test]
    fn zero_is_go_zero_time() {
        assert!(is_zero(-62_135_596_800));
        assert!(!is_zero(0));
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
