//! PostgreSQL's date and time types over SQLite's text: reading the ISO 8601 text SQLite and
//! clients store, writing PostgreSQL's text output, and the binary wire forms (days or
//! microseconds since 2000-01-01).
//!
//! Stored forms: `date` as `YYYY-MM-DD`; `timestamp` as `YYYY-MM-DD HH:MM:SS[.ffffff]`;
//! `timestamptz` in UTC with `+00` (a value written with another offset is converted when it
//! arrives as a parameter, so text order is time order); `time` as `HH:MM:SS[.ffffff]`.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// PostgreSQL's epoch for binary dates and timestamps.
fn epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

const TIMESTAMP_FORMATS: [&str; 4] = [
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
];

/// A timestamp without zone, from the forms SQLite's date functions and clients write (a
/// bare date is its midnight; a trailing offset is ignored, as PostgreSQL does for
/// `timestamp`).
pub fn parse_timestamp(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    if let Some(with_zone) = parse_timestamptz(text) {
        return Some(with_zone.naive_local());
    }
    TIMESTAMP_FORMATS
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .or_else(|| parse_date(text).and_then(|d| d.and_hms_opt(0, 0, 0)))
}

/// A timestamp with an explicit offset (`+00`, `+05:30`, `Z`); `None` without one.
pub fn parse_timestamptz(text: &str) -> Option<DateTime<FixedOffset>> {
    let text = text.trim();
    let (body, offset) = split_offset(text)?;
    let naive = TIMESTAMP_FORMATS
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(body, format).ok())?;
    naive.and_local_timezone(offset).single()
}

/// Splits `…+05:30`, `…-08`, `…+0530` or `…Z` into the local part and its offset.
fn split_offset(text: &str) -> Option<(&str, FixedOffset)> {
    if let Some(body) = text.strip_suffix('Z').or_else(|| text.strip_suffix('z')) {
        return Some((body.trim_end(), FixedOffset::east_opt(0)?));
    }
    // The offset's sign comes after the time's colon (dates hold '-' too).
    let time_at = text.find([' ', 'T'])?;
    let sign_at = time_at + text[time_at..].rfind(['+', '-'])?;
    let (body, offset) = text.split_at(sign_at);
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let digits: String = offset[1..].chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> i32 {
        digits.get(range).and_then(|d| d.parse().ok()).unwrap_or(0)
    };
    let seconds = number(0..2) * 3600 + number(2..4) * 60 + number(4..6);
    Some((body.trim_end(), FixedOffset::east_opt(sign * seconds)?))
}

pub fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()
}

pub fn parse_time(text: &str) -> Option<NaiveTime> {
    let text = text.trim();
    ["%H:%M:%S%.f", "%H:%M"]
        .iter()
        .find_map(|format| NaiveTime::parse_from_str(text, format).ok())
}

/// PostgreSQL's text output of a timestamp: fraction only when non-zero, to microseconds.
pub fn format_timestamp(value: NaiveDateTime) -> String {
    format!(
        "{}{}",
        value.format("%Y-%m-%d %H:%M:%S"),
        fraction(value.nanosecond())
    )
}

/// A timestamptz in UTC, as PostgreSQL prints it with TimeZone UTC.
pub fn format_timestamptz(value: DateTime<FixedOffset>) -> String {
    format!("{}+00", format_timestamp(value.naive_utc()))
}

pub fn format_time(value: NaiveTime) -> String {
    format!(
        "{}{}",
        value.format("%H:%M:%S"),
        fraction(value.nanosecond())
    )
}

/// `.ffffff` without trailing zeros, or nothing for a whole second.
fn fraction(nanoseconds: u32) -> String {
    let micros = (nanoseconds % 1_000_000_000) / 1_000;
    if micros == 0 {
        return String::new();
    }
    let digits = format!(".{micros:06}");
    digits.trim_end_matches('0').to_string()
}

/// Microseconds since 2000-01-01 (the binary timestamp), `None` past i64's range.
pub fn timestamp_micros(value: NaiveDateTime) -> Option<i64> {
    (value - epoch()).num_microseconds()
}

pub fn timestamp_from_micros(micros: i64) -> Option<NaiveDateTime> {
    epoch().checked_add_signed(chrono::Duration::microseconds(micros))
}

/// Days since 2000-01-01 (the binary date).
pub fn date_days(value: NaiveDate) -> Option<i32> {
    i32::try_from((value - epoch().date()).num_days()).ok()
}

pub fn date_from_days(days: i32) -> Option<NaiveDate> {
    epoch()
        .date()
        .checked_add_signed(chrono::Duration::days(i64::from(days)))
}

/// Microseconds since midnight (the binary time).
pub fn time_micros(value: NaiveTime) -> i64 {
    i64::from(value.num_seconds_from_midnight()) * 1_000_000
        + i64::from(value.nanosecond() % 1_000_000_000) / 1_000
}

pub fn time_from_micros(micros: i64) -> Option<NaiveTime> {
    let seconds = u32::try_from(micros.checked_div(1_000_000)?).ok()?;
    let nanos = u32::try_from(micros.checked_rem(1_000_000)? * 1_000).ok()?;
    NaiveTime::from_num_seconds_from_midnight_opt(seconds, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_the_forms_clients_and_sqlite_write() {
        let expected = NaiveDate::from_ymd_opt(2024, 1, 2)
            .and_then(|d| d.and_hms_micro_opt(3, 4, 5, 123_456))
            .unwrap();
        assert_eq!(
            parse_timestamp("2024-01-02 03:04:05.123456"),
            Some(expected)
        );
        assert_eq!(
            parse_timestamp("2024-01-02T03:04:05.123456"),
            Some(expected)
        );
        assert_eq!(format_timestamp(expected), "2024-01-02 03:04:05.123456");
        assert_eq!(
            parse_timestamp("2024-01-02").map(format_timestamp),
            Some("2024-01-02 00:00:00".into())
        );
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn zoned_timestamps_are_kept_in_utc() {
        let zoned = parse_timestamptz("2024-01-02 03:04:05.5+05:30").unwrap();
        assert_eq!(format_timestamptz(zoned), "2024-01-01 21:34:05.5+00");
        let zoned = parse_timestamptz("2024-01-02T03:04:05-08").unwrap();
        assert_eq!(format_timestamptz(zoned), "2024-01-02 11:04:05+00");
        assert_eq!(
            parse_timestamptz("2024-01-02 03:04:05Z").map(format_timestamptz),
            Some("2024-01-02 03:04:05+00".into())
        );
        assert_eq!(parse_timestamptz("2024-01-02 03:04:05"), None);
    }

    #[test]
    fn binary_forms_count_from_2000() {
        let value = parse_timestamp("2000-01-02 00:00:01").unwrap();
        assert_eq!(timestamp_micros(value), Some(86_401_000_000));
        assert_eq!(timestamp_from_micros(86_401_000_000), Some(value));
        let date = parse_date("1999-12-31").unwrap();
        assert_eq!(date_days(date), Some(-1));
        assert_eq!(date_from_days(-1), Some(date));
        let time = parse_time("01:00:00.25").unwrap();
        assert_eq!(time_micros(time), 3_600_250_000);
        assert_eq!(time_from_micros(3_600_250_000), Some(time));
        assert_eq!(format_time(time), "01:00:00.25");
    }
}
