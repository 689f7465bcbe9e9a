//! rqlite presents some declared column types specially, and its clients depend on it:
//! `date`, `datetime` and `timestamp` values come back as RFC 3339 text (pyrqlite's timestamp
//! converter needs the `T`), and integers in `boolean` columns as JSON booleans.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde_json::Value;

use crate::types::value::SqlValue;

/// Integers above this many seconds are taken as milliseconds, as rqlite's driver does.
const MILLISECONDS_THRESHOLD: i64 = 1_000_000_000_000;

/// The JSON for `value` in a column declared as `declared_type`, when that type is presented
/// specially; `None` leaves the value to the default rendering.
pub fn present_typed(value: &SqlValue, declared_type: &str) -> Option<Value> {
    match (declared_type, value) {
        ("boolean", SqlValue::Integer(i)) => Some(Value::Bool(*i > 0)),
        ("date" | "datetime" | "timestamp", SqlValue::Text(text)) => {
            parse_time_text(text).map(Value::String)
        }
        ("date" | "datetime" | "timestamp", SqlValue::Integer(i)) => {
            unix_to_rfc3339(*i).map(Value::String)
        }
        _ => None,
    }
}

/// Parses the time formats SQLite's date functions write (with a space or `T`, optional
/// fraction, optional `Z` or offset, or a bare date) into RFC 3339. Text that is not a time is
/// left alone (rqlite would print year 1 instead, which loses the stored value).
fn parse_time_text(text: &str) -> Option<String> {
    let trimmed = text.trim().trim_end_matches('Z');
    for format in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f%:z"] {
        if let Ok(parsed) = DateTime::parse_from_str(trimmed, format) {
            return Some(rfc3339(parsed));
        }
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(parsed) = NaiveDateTime::parse_from_str(trimmed, format) {
            return Some(rfc3339(parsed.and_utc()));
        }
    }
    NaiveDate::parse_from_str(trimmed, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|midnight| rfc3339(midnight.and_utc()))
}

/// RFC 3339 with as many fraction digits as needed and `Z` for UTC, like Go's RFC3339Nano:
/// trailing zeros of the fraction are dropped (`.5`, not `.500`), as rqlite's answers show.
fn rfc3339<Tz: TimeZone>(time: DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let text = time.to_rfc3339_opts(SecondsFormat::Nanos, true);
    let Some(dot) = text.find('.') else {
        return text;
    };
    let zone_at = text[dot..]
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or(text.len(), |at| dot + at);
    let fraction = text[dot + 1..zone_at].trim_end_matches('0');
    if fraction.is_empty() {
        format!("{}{}", &text[..dot], &text[zone_at..])
    } else {
        format!("{}.{fraction}{}", &text[..dot], &text[zone_at..])
    }
}

fn unix_to_rfc3339(value: i64) -> Option<String> {
    let time: Option<DateTime<Utc>> = if value.abs() > MILLISECONDS_THRESHOLD {
        DateTime::from_timestamp_millis(value)
    } else {
        DateTime::from_timestamp(value, 0)
    };
    time.map(rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> SqlValue {
        SqlValue::Text(s.to_string())
    }

    #[test]
    fn sqlite_timestamps_become_rfc3339() {
        assert_eq!(
            present_typed(&text("2026-12-04 13:40:29.082180"), "timestamp"),
            Some(Value::from("2026-12-04T13:40:29.08218Z"))
        );
        assert_eq!(
            present_typed(&text("2024-01-02 03:04:05"), "timestamp"),
            Some(Value::from("2024-01-02T03:04:05Z"))
        );
        assert_eq!(
            present_typed(&text("2024-01-02 03:04:05.500"), "datetime"),
            Some(Value::from("2024-01-02T03:04:05.5Z"))
        );
        assert_eq!(
            present_typed(&text("2024-01-02T03:04:05+01:00"), "timestamp"),
            Some(Value::from("2024-01-02T03:04:05+01:00"))
        );
        assert_eq!(
            present_typed(&text("2024-01-02"), "date"),
            Some(Value::from("2024-01-02T00:00:00Z"))
        );
    }

    #[test]
    fn unix_times_in_seconds_or_milliseconds() {
        assert_eq!(
            present_typed(&SqlValue::Integer(0), "timestamp"),
            Some(Value::from("1970-01-01T00:00:00Z"))
        );
        assert_eq!(
            present_typed(&SqlValue::Integer(1_700_000_000_000), "timestamp"),
            Some(Value::from("2023-11-14T22:13:20Z"))
        );
    }

    #[test]
    fn other_values_keep_default_rendering() {
        assert_eq!(present_typed(&text("next tuesday"), "date"), None);
        assert_eq!(present_typed(&text("2024-01-02"), "text"), None);
        assert_eq!(present_typed(&SqlValue::Real(1.5), "timestamp"), None);
        assert_eq!(
            present_typed(&SqlValue::Integer(1), "boolean"),
            Some(Value::Bool(true))
        );
        assert_eq!(
            present_typed(&SqlValue::Integer(0), "boolean"),
            Some(Value::Bool(false))
        );
    }
}
