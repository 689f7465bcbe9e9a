//! Query-string options of the rqlite-compatible API, parsed and validated in one place.

use std::time::Duration;

use crate::service::{ReadConsistency, ReadLevel, WriteConcern};

/// Default time a request may take when the client does not say (`timeout=`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `wtimeout` when a write concern beyond majority is asked for.
pub const DEFAULT_WRITE_CONCERN_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest `timeout` or `wtimeout` a client may ask for.
const TIMEOUT_MAX: Duration = Duration::from_secs(600);

/// Every option a `/db/*` request may carry.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestOptions {
    pub pretty: bool,
    pub timings: bool,
    pub transaction: bool,
    pub associative: bool,
    pub blob_array: bool,
    pub redirect: bool,
    pub queue: bool,
    pub wait: bool,
    pub raft_index: bool,
    pub timeout: Duration,
    pub read: ReadConsistency,
    pub write_concern: WriteConcern,
    pub write_concern_timeout: Duration,
    /// `q=` of `GET /db/query`.
    pub query: Option<String>,
    /// `db=`: the database the statements run in (the default database when absent).
    pub database: Option<String>,
}

impl Default for RequestOptions {
    fn default() -> Self {
        Self {
            pretty: false,
            timings: false,
            transaction: false,
            associative: false,
            blob_array: false,
            redirect: false,
            queue: false,
            wait: false,
            raft_index: false,
            timeout: DEFAULT_TIMEOUT,
            read: ReadConsistency::default(),
            write_concern: WriteConcern::Majority,
            write_concern_timeout: DEFAULT_WRITE_CONCERN_TIMEOUT,
            query: None,
            database: None,
        }
    }
}

/// Parameters rqlite clients send that change nothing here; accepted so they keep working.
const ACCEPTED_NO_OP: &[&str] = &[
    "db_timeout",
    "nonvoters",
    "noleader",
    "ver",
    "sql",
    "include_timings",
];

/// Parses a raw query string (`a=1&flag&b=x`). A flag without value means "true"; an unknown
/// parameter or a bad value is an error naming it.
pub fn parse_options(raw_query: Option<&str>) -> Result<RequestOptions, String> {
    let mut options = RequestOptions::default();
    let pairs: Vec<(String, String)> = match raw_query {
        Some(raw) => {
            serde_urlencoded::from_str(raw).map_err(|e| format!("malformed query string: {e}"))?
        }
        None => Vec::new(),
    };
    for (key, value) in pairs {
        let flag = || parse_flag(&key, &value);
        match key.as_str() {
            "pretty" => options.pretty = flag()?,
            "timings" => options.timings = flag()?,
            "transaction" => options.transaction = flag()?,
            "associative" => options.associative = flag()?,
            "blob_array" => options.blob_array = flag()?,
            "redirect" => options.redirect = flag()?,
            "queue" => options.queue = flag()?,
            "wait" => options.wait = flag()?,
            "raft_index" => options.raft_index = flag()?,
            "freshness_strict" => options.read.freshness_strict = flag()?,
            "timeout" => options.timeout = parse_duration(&key, &value)?,
            "freshness" => options.read.freshness = Some(parse_duration(&key, &value)?),
            "db" => options.database = Some(value),
            "level" => options.read.level = ReadLevel::parse(&value)?,
            "w" => options.write_concern = WriteConcern::parse(&value)?,
            "wtimeout" => options.write_concern_timeout = parse_duration(&key, &value)?,
            "q" => options.query = Some(value),
            other if ACCEPTED_NO_OP.contains(&other) => {}
            other => return Err(format!("unknown query parameter {other:?}")),
        }
    }
    if options.read.freshness_strict && options.read.freshness.is_none() {
        return Err("freshness_strict needs freshness=<duration>".to_string());
    }
    Ok(options)
}

fn parse_flag(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "" | "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        other => Err(format!(
            "parameter {key} must be true or false, not {other:?}"
        )),
    }
}

/// Durations as rqlite clients write them (Go style: `2s`, `500ms`, `1.5s`, `1m`) or a bare
/// number of seconds.
pub fn parse_duration(key: &str, value: &str) -> Result<Duration, String> {
    let bad = || format!("parameter {key}={value:?} is not a duration (examples: 2s, 500ms, 1.5s)");
    let value = value.trim();
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1e3,
        "us" | "µs" => number / 1e6,
        "ns" => number / 1e9,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(bad()),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(bad());
    }
    // Past Duration's range (about 584 billion years) is past any maximum too.
    let duration = Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX);
    if duration > TIMEOUT_MAX {
        return Err(format!(
            "parameter {key}={value} exceeds the maximum of {}s",
            TIMEOUT_MAX.as_secs()
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_without_values_are_true() {
        let options = parse_options(Some("pretty&timings&transaction=false")).unwrap();
        assert!(options.pretty && options.timings && !options.transaction);
    }

    #[test]
    fn consistency_and_write_concern_are_parsed() {
        let options = parse_options(Some("level=none&freshness=1s&w=all&wtimeout=250ms")).unwrap();
        assert_eq!(options.read.level, ReadLevel::None);
        assert_eq!(options.read.freshness, Some(Duration::from_secs(1)));
        assert_eq!(options.write_concern, WriteConcern::All);
        assert_eq!(options.write_concern_timeout, Duration::from_millis(250));
    }

    #[test]
    fn unknown_parameter_is_named() {
        assert_eq!(
            parse_options(Some("pretty&bogus=1")).unwrap_err(),
            "unknown query parameter \"bogus\""
        );
    }

    #[test]
    fn bad_values_are_named() {
        assert!(
            parse_options(Some("timeout=soon"))
                .unwrap_err()
                .contains("timeout")
        );
        assert!(
            parse_options(Some("level=eventual"))
                .unwrap_err()
                .contains("eventual")
        );
        assert!(
            parse_options(Some("pretty=maybe"))
                .unwrap_err()
                .contains("pretty")
        );
    }

    #[test]
    fn go_style_durations() {
        assert_eq!(
            parse_duration("t", "1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("t", "2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("t", "3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("t", "-1s").is_err());
        assert!(parse_duration("t", "1000h").is_err());
        // Found by the http_request fuzz target: a number past Duration's range panicked.
        let huge = format!("{}s", "4".repeat(60));
        assert!(
            parse_duration("timeout", &huge)
                .unwrap_err()
                .contains("maximum")
        );
    }
}
