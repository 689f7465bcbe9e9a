//! PostgreSQL's `interval`: months, days and microseconds kept apart (a month is not a fixed
//! number of days, nor a day of seconds across a daylight-saving change). Shoal stores an
//! interval as PostgreSQL prints it (`1 year 2 mons 3 days 04:05:06.5`, the `postgres` style),
//! reads PostgreSQL's input forms (`'1 day 2 hours'`, `'@ 3 days ago'`, `'04:05:06'`, ISO 8601
//! `'P1Y2M3DT4H5M6S'`, Python's `'1 day, 2:00:00'`), and carries it in the binary format
//! (microseconds, days, months).

/// An interval as PostgreSQL holds one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interval {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
}

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;
const MICROS_PER_HOUR: i64 = 60 * MICROS_PER_MINUTE;
/// Input longer than this is not an interval anyone wrote by hand or by a driver.
const INPUT_BYTES_MAX: usize = 256;

impl Interval {
    /// Reads PostgreSQL's interval input; the error names what was not understood.
    pub fn parse(text: &str) -> Result<Interval, String> {
        let invalid = || format!("invalid input syntax for type interval: \"{text}\"");
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.len() > INPUT_BYTES_MAX {
            return Err(invalid());
        }
        if let Some(iso) = trimmed.strip_prefix('P') {
            return parse_iso(iso).ok_or_else(invalid);
        }
        parse_postgres(trimmed).ok_or_else(invalid)
    }

    /// PostgreSQL's `postgres`-style output: `1 year 2 mons 3 days 04:05:06.5`, `-1 days
    /// +02:00:00`, `00:00:00` for nothing.
    pub fn format(&self) -> String {
        let mut parts = Vec::new();
        let (years, months) = (self.months / 12, self.months % 12);
        let plural = |n: i64, one: &str, many: &str| {
            // PostgreSQL's singular is for exactly one (`-1 days`).
            format!("{n} {}", if n == 1 { one } else { many })
        };
        if years != 0 {
            parts.push(plural(i64::from(years), "year", "years"));
        }
        if months != 0 {
            parts.push(plural(i64::from(months), "mon", "mons"));
        }
        if self.days != 0 {
            parts.push(plural(i64::from(self.days), "day", "days"));
        }
        let some_negative = self.months < 0 || self.days < 0;
        if self.micros != 0 || parts.is_empty() {
            let negative = self.micros < 0;
            let magnitude = self.micros.unsigned_abs();
            let hours = magnitude / MICROS_PER_HOUR.unsigned_abs();
            let minutes = magnitude / MICROS_PER_MINUTE.unsigned_abs() % 60;
            let seconds = magnitude / MICROS_PER_SECOND.unsigned_abs() % 60;
            let fraction = magnitude % MICROS_PER_SECOND.unsigned_abs();
            let sign = if negative {
                "-"
            } else if some_negative {
                "+"
            } else {
                ""
            };
            let mut time = format!("{sign}{hours:02}:{minutes:02}:{seconds:02}");
            if fraction != 0 {
                let digits = format!("{fraction:06}");
                time.push('.');
                time.push_str(digits.trim_end_matches('0'));
            }
            parts.push(time);
        }
        parts.join(" ")
    }

    /// The binary format: microseconds (i64), days (i32), months (i32), big-endian.
    pub fn to_binary(self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.micros.to_be_bytes());
        bytes[8..12].copy_from_slice(&self.days.to_be_bytes());
        bytes[12..].copy_from_slice(&self.months.to_be_bytes());
        bytes
    }

    pub fn from_binary(bytes: &[u8]) -> Result<Interval, String> {
        let bytes: &[u8; 16] = bytes
            .try_into()
            .map_err(|_| format!("a binary interval has 16 bytes, not {}", bytes.len()))?;
        let [
            m0,
            m1,
            m2,
            m3,
            m4,
            m5,
            m6,
            m7,
            d0,
            d1,
            d2,
            d3,
            n0,
            n1,
            n2,
            n3,
        ] = *bytes;
        Ok(Interval {
            micros: i64::from_be_bytes([m0, m1, m2, m3, m4, m5, m6, m7]),
            days: i32::from_be_bytes([d0, d1, d2, d3]),
            months: i32::from_be_bytes([n0, n1, n2, n3]),
        })
    }

    /// SQLite date-and-time modifiers that add this interval (`negate`: subtract it), months
    /// first, then days, then the time, as PostgreSQL adds them.
    pub fn sqlite_modifiers(&self, negate: bool) -> Vec<String> {
        let sign = if negate { -1 } else { 1 };
        let mut modifiers = Vec::new();
        if self.months != 0 {
            modifiers.push(format!("{:+} months", sign * i64::from(self.months)));
            // A day past the new month's end goes back to its last day, as PostgreSQL does
            // (SQLite otherwise carries it into the next month).
            modifiers.push("floor".to_string());
        }
        if self.days != 0 {
            modifiers.push(format!("{:+} days", sign * i64::from(self.days)));
        }
        if self.micros != 0 {
            let micros = i128::from(sign) * i128::from(self.micros);
            let negative = micros < 0;
            let magnitude = micros.unsigned_abs();
            modifiers.push(format!(
                "{}{}.{:06} seconds",
                if negative { "-" } else { "+" },
                magnitude / 1_000_000,
                magnitude % 1_000_000
            ));
        }
        modifiers
    }

    /// The interval's length in seconds, a month taken as 30 days and a day as 24 hours (as
    /// PostgreSQL's `EXTRACT(EPOCH FROM interval)` does).
    pub fn epoch_seconds(&self) -> f64 {
        let days = i64::from(self.months) * 30 + i64::from(self.days);
        (days as f64) * 86_400.0 + (self.micros as f64) / 1_000_000.0
    }
}

/// `1 year 2 mons 3 days 04:05:06`, `@ 1 day ago`, `1 day, 2:00:00`, `-04:05`.
fn parse_postgres(text: &str) -> Option<Interval> {
    let mut interval = Interval::default();
    let cleaned = text.replace(',', " ");
    let mut words: Vec<&str> = cleaned.split_whitespace().collect();
    if words.first() == Some(&"@") {
        words.remove(0);
    }
    let ago = words.last().is_some_and(|w| w.eq_ignore_ascii_case("ago"));
    if ago {
        words.pop();
    }
    let mut i = 0;
    while i < words.len() {
        let word = words[i];
        if word.contains(':') {
            interval.micros = interval.micros.checked_add(parse_clock(word)?)?;
            i += 1;
            continue;
        }
        // A number, then its unit (`1 day`, `1day`, `+2 hours`).
        let split = word.find(|c: char| c.is_alphabetic()).unwrap_or(word.len());
        let (number, attached) = word.split_at(split);
        let amount: f64 = number.parse().ok()?;
        let unit = if attached.is_empty() {
            i += 1;
            match words.get(i) {
                Some(unit) => *unit,
                // A bare number is seconds.
                None => "seconds",
            }
        } else {
            attached
        };
        add_unit(&mut interval, amount, unit)?;
        i += 1;
    }
    if ago {
        interval = Interval {
            months: interval.months.checked_neg()?,
            days: interval.days.checked_neg()?,
            micros: interval.micros.checked_neg()?,
        };
    }
    Some(interval)
}

/// `[-]H:MM[:SS[.ffffff]]` as microseconds.
fn parse_clock(text: &str) -> Option<i64> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return None;
    }
    let hours: i64 = parts[0].parse().ok()?;
    let minutes: i64 = parts[1].parse().ok()?;
    let seconds: f64 = match parts.get(2) {
        Some(seconds) => seconds.parse().ok()?,
        None => 0.0,
    };
    if !(0..60).contains(&minutes) || !(0.0..60.0).contains(&seconds) {
        return None;
    }
    let micros = hours
        .checked_mul(MICROS_PER_HOUR)?
        .checked_add(minutes * MICROS_PER_MINUTE)?
        .checked_add((seconds * 1_000_000.0).round() as i64)?;
    Some(if negative { -micros } else { micros })
}

fn add_unit(interval: &mut Interval, amount: f64, unit: &str) -> Option<()> {
    let unit = unit.to_ascii_lowercase();
    let months = |n: f64| n.round() as i64;
    match unit.as_str() {
        "year" | "years" | "yr" | "yrs" | "y" => add_months(interval, months(amount * 12.0)),
        "decade" | "decades" => add_months(interval, months(amount * 120.0)),
        "century" | "centuries" => add_months(interval, months(amount * 1200.0)),
        "month" | "months" | "mon" | "mons" => {
            // A fraction of a month is days (30 to the month), as in PostgreSQL.
            add_months(interval, amount.trunc() as i64)?;
            add_days(interval, amount.fract() * 30.0)
        }
        "week" | "weeks" | "w" => add_days(interval, amount * 7.0),
        "day" | "days" | "d" => add_days(interval, amount),
        "hour" | "hours" | "hr" | "hrs" | "h" => add_micros(interval, amount * 3600e6),
        "minute" | "minutes" | "min" | "mins" | "m" => add_micros(interval, amount * 60e6),
        "second" | "seconds" | "sec" | "secs" | "s" => add_micros(interval, amount * 1e6),
        "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" => {
            add_micros(interval, amount * 1e3)
        }
        "microsecond" | "microseconds" | "us" | "usec" | "usecs" => add_micros(interval, amount),
        _ => None,
    }
}

fn add_months(interval: &mut Interval, months: i64) -> Option<()> {
    interval.months = interval.months.checked_add(i32::try_from(months).ok()?)?;
    Some(())
}

/// Whole days to `days`, a fraction of a day to the time (as PostgreSQL spreads `1.5 days`).
fn add_days(interval: &mut Interval, days: f64) -> Option<()> {
    if !days.is_finite() {
        return None;
    }
    let whole = days.trunc();
    interval.days = interval
        .days
        .checked_add(i32::try_from(whole as i64).ok()?)?;
    add_micros(interval, (days - whole) * 86_400e6)
}

fn add_micros(interval: &mut Interval, micros: f64) -> Option<()> {
    if !micros.is_finite() || micros.abs() > 9.2e18 {
        return None;
    }
    interval.micros = interval.micros.checked_add(micros.round() as i64)?;
    Some(())
}

/// ISO 8601 durations after the `P`: `1Y2M3DT4H5M6.5S`, `2W`.
fn parse_iso(text: &str) -> Option<Interval> {
    let mut interval = Interval::default();
    let mut in_time = false;
    let mut number = String::new();
    for c in text.chars() {
        match c {
            'T' => in_time = true,
            '0'..='9' | '.' | '-' | '+' => number.push(c),
            unit => {
                let amount: f64 = number.parse().ok()?;
                number.clear();
                let unit = match (unit, in_time) {
                    ('Y', false) => "years",
                    ('M', false) => "months",
                    ('W', false) => "weeks",
                    ('D', false) => "days",
                    ('H', true) => "hours",
                    ('M', true) => "minutes",
                    ('S', true) => "seconds",
                    _ => return None,
                };
                add_unit(&mut interval, amount, unit)?;
            }
        }
    }
    number.is_empty().then_some(interval)
}

/// `text` in PostgreSQL's output form when it is an interval, else as it is.
pub fn canonical_text(text: &str) -> String {
    Interval::parse(text).map_or_else(|_| text.to_string(), |interval| interval.format())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Interval {
        Interval::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn postgresql_input_forms_read_as_postgresql_reads_them() {
        let day_and_two_hours = Interval {
            months: 0,
            days: 1,
            micros: 2 * MICROS_PER_HOUR,
        };
        for text in [
            "1 day 2 hours",
            "1 day 02:00:00",
            "1 day, 2:00:00",
            "@ 1 day 2 hours",
            "1d 2h",
            "P1DT2H",
            "  1 DAY 120 minutes ",
        ] {
            assert_eq!(parsed(text), day_and_two_hours, "{text}");
        }
        assert_eq!(
            parsed("1 year 2 months 3 weeks"),
            Interval {
                months: 14,
                days: 21,
                micros: 0
            }
        );
        assert_eq!(parsed("1.5 days").micros, 12 * MICROS_PER_HOUR);
        assert_eq!(
            parsed("-04:05:06.5").micros,
            -(4 * MICROS_PER_HOUR + 5 * MICROS_PER_MINUTE + 6_500_000)
        );
        assert_eq!(parsed("3 days ago").days, -3);
        assert_eq!(parsed("90").micros, 90 * MICROS_PER_SECOND);
        assert_eq!(parsed("1 day 2").micros, 2 * MICROS_PER_SECOND);
        for bad in ["", "1 fortnight", "day", "1:99", "P1X", "x1 day"] {
            assert!(Interval::parse(bad).is_err(), "{bad}");
        }
        assert!(
            Interval::parse("1 fortnight")
                .unwrap_err()
                .contains("invalid input syntax for type interval")
        );
    }

    #[test]
    fn output_is_postgresql_postgres_style() {
        assert_eq!(parsed("1 day 2 hours").format(), "1 day 02:00:00");
        assert_eq!(parsed("14 months 3 days").format(), "1 year 2 mons 3 days");
        assert_eq!(parsed("0 seconds").format(), "00:00:00");
        assert_eq!(parsed("-1 days 2 hours").format(), "-1 days +02:00:00");
        assert_eq!(parsed("1.25 seconds").format(), "00:00:01.25");
        assert_eq!(parsed("-3 minutes").format(), "-00:03:00");
        assert_eq!(parsed("2 years").format(), "2 years");
    }

    #[test]
    fn binary_format_round_trips() {
        let interval = parsed("1 year 2 days 00:00:03.000004");
        assert_eq!(Interval::from_binary(&interval.to_binary()), Ok(interval));
        assert!(Interval::from_binary(&[0; 15]).is_err());
    }

    #[test]
    fn sqlite_modifiers_add_months_then_days_then_time() {
        assert_eq!(
            parsed("1 month 2 days 03:00:00.5").sqlite_modifiers(false),
            ["+1 months", "floor", "+2 days", "+10800.500000 seconds"]
        );
        assert_eq!(parsed("1 day").sqlite_modifiers(true), ["-1 days"]);
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        let later: String = connection
            .query_row(
                "SELECT strftime('%Y-%m-%d %H:%M:%f', '2024-01-31 10:00:00', ?1, ?2, ?3)",
                rusqlite::params!["+1 months", "floor", "+3600.250000 seconds"],
                |row| row.get(0),
            )
            .unwrap();
        // January 31st plus a month is February's last day, as in PostgreSQL.
        assert_eq!(later, "2024-02-29 11:00:00.250");
    }
}
