//! Intervals and timestamp arithmetic in SQLite: an interval literal (`INTERVAL '1 day'`,
//! `'2 hours'::interval`) becomes PostgreSQL's text for it, and a timestamp or date plus or
//! minus one becomes SQLite's date-and-time modifiers applied to it (`now() - interval '7
//! days'`, the form applications filter by). A timestamptz keeps its `+00`.
//!
//! Timestamps Shoal stores with a zone end in `+00` (UTC), which SQLite's date functions do
//! not read: `time_value` strips it first.

use sqlparser::ast::{DataType, Expr, Value, ValueWithSpan};

use super::Unsupported;
use crate::pgwire::interval::Interval;

/// The interval `expr` writes as a literal (`INTERVAL '1 day'`, `INTERVAL '3' HOUR`,
/// `'1 day'::interval`); `None` when it is not an interval; an error for an interval that is
/// not a literal or not a valid one.
pub fn interval_literal(expr: &Expr) -> Option<Result<Interval, Unsupported>> {
    match expr {
        Expr::Interval(interval) => Some(match string(&interval.value) {
            Some(text) => {
                let text = match &interval.leading_field {
                    Some(field) if interval.last_field.is_none() => format!("{text} {field}"),
                    None => text,
                    Some(_) => {
                        return Some(Err(Unsupported(
                            "an INTERVAL with a field range (… TO …)".into(),
                        )));
                    }
                };
                Interval::parse(&text).map_err(Unsupported)
            }
            None => Err(Unsupported(
                "an INTERVAL value that is not a literal".into(),
            )),
        }),
        Expr::Cast {
            expr, data_type, ..
        } if is_interval(data_type) => {
            string(expr).map(|text| Interval::parse(&text).map_err(Unsupported))
        }
        Expr::Nested(inner) => interval_literal(inner),
        _ => None,
    }
}

/// A time plus or minus a bound parameter (`now() - $1`, `created + $2`): an interval when
/// the parameter is bound as one, else plain arithmetic. Decided when the statement runs, as
/// only then is the parameter's type known; the statement holds `placeholder(k)` for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntervalParameter {
    /// The parameter's number (`$n`).
    pub parameter: usize,
    pub negate: bool,
    /// The other operand, as SQLite text.
    pub time: String,
}

impl IntervalParameter {
    /// The placeholder text of the `index`th such expression of a statement.
    pub fn placeholder(index: usize) -> String {
        format!("shoal_interval_parameter_{index}")
    }

    /// The expression as plain arithmetic (the parameter is not an interval).
    pub fn plain(&self) -> String {
        let operator = if self.negate { "-" } else { "+" };
        // (`time` is printed from the tree, which keeps the parentheses the client wrote: the
        // operator binds as it did.)
        format!("{} {operator} ?{}", self.time, self.parameter)
    }

    /// The expression with `interval` (the parameter's value) added or subtracted. The
    /// parameter stays referenced (`?n IS NULL`), so the statement's parameters keep their
    /// numbers.
    pub fn shifted(&self, interval: &Interval) -> String {
        format!(
            "(CASE WHEN ?{} IS NULL THEN NULL ELSE {} END)",
            self.parameter,
            shifted(&self.time, interval, self.negate)
        )
    }
}

/// Whether `data_type` is PostgreSQL's interval.
pub fn is_interval(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Interval { .. })
        || data_type.to_string().eq_ignore_ascii_case("interval")
}

fn string(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(text),
            ..
        }) => Some(text.clone()),
        _ => None,
    }
}

/// `operand` (SQLite text of a timestamp, timestamptz or date) with `interval` added
/// (`negate`: subtracted): a timestamp as PostgreSQL prints one (no trailing zeros in the
/// fraction), with `+00` when `operand` had it; NULL when `operand` is NULL or not a time.
pub fn shifted(operand: &str, interval: &Interval, negate: bool) -> String {
    let modifiers: String = interval
        .sqlite_modifiers(negate)
        .iter()
        .map(|modifier| format!(", '{modifier}'"))
        .collect();
    format!(
        "(rtrim(rtrim(strftime('%Y-%m-%d %H:%M:%f', {time}{modifiers}), '0'), '.') || \
         CASE WHEN ({operand}) LIKE '%+00' THEN '+00' ELSE '' END)",
        time = time_value(operand)
    )
}

/// A stored time as SQLite's date functions read it: a trailing `+00` (Shoal's UTC marker for
/// timestamptz) removed.
pub fn time_value(operand: &str) -> String {
    format!(
        "(CASE WHEN ({operand}) LIKE '%+00' THEN substr(({operand}), 1, length(({operand})) - 3) \
         ELSE ({operand}) END)"
    )
}

/// `date_trunc('field', operand)`: the time cut to the start of its field, as text of the same
/// kind (`+00` kept); `None` for a field Shoal does not truncate to.
pub fn date_trunc(field: &str, operand: &str) -> Option<String> {
    let time = time_value(operand);
    let truncated = match field.to_ascii_lowercase().as_str() {
        "microseconds" | "milliseconds" => {
            format!("rtrim(rtrim(strftime('%Y-%m-%d %H:%M:%f', {time}), '0'), '.')")
        }
        "second" => format!("strftime('%Y-%m-%d %H:%M:%S', {time})"),
        "minute" => format!("strftime('%Y-%m-%d %H:%M:00', {time})"),
        "hour" => format!("strftime('%Y-%m-%d %H:00:00', {time})"),
        "day" => format!("strftime('%Y-%m-%d 00:00:00', {time})"),
        // Weeks start on Monday (ISO 8601), as in PostgreSQL.
        "week" => format!("strftime('%Y-%m-%d 00:00:00', {time}, '-6 days', 'weekday 1')"),
        "month" => format!("strftime('%Y-%m-01 00:00:00', {time})"),
        "quarter" => format!(
            "(strftime('%Y-', {time}) || printf('%02d', (CAST(strftime('%m', {time}) AS INTEGER) \
             - 1) / 3 * 3 + 1) || '-01 00:00:00')"
        ),
        "year" => format!("strftime('%Y-01-01 00:00:00', {time})"),
        _ => return None,
    };
    Some(format!(
        "({truncated} || CASE WHEN ({operand}) LIKE '%+00' THEN '+00' ELSE '' END)"
    ))
}

/// The fields `date_trunc` cuts to.
const TRUNCATION_FIELDS: &[&str] = &[
    "microseconds",
    "milliseconds",
    "second",
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "quarter",
    "year",
];

/// `date_trunc(field, operand)` with the field computed when the statement runs (a bound
/// parameter): NULL for a field Shoal does not truncate to.
pub fn date_trunc_by(field: &str, operand: &str) -> String {
    let branches: String = TRUNCATION_FIELDS
        .iter()
        .filter_map(|name| {
            date_trunc(name, operand).map(|sql| format!(" WHEN '{name}' THEN {sql}"))
        })
        .collect();
    format!("(CASE lower({field}){branches} END)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(sql: &str) -> Option<String> {
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        connection
            .query_row(&format!("SELECT {sql}"), [], |row| row.get(0))
            .unwrap()
    }

    fn interval(text: &str) -> Interval {
        Interval::parse(text).unwrap()
    }

    #[test]
    fn timestamps_shift_by_intervals_as_postgresql_adds_them() {
        assert_eq!(
            run(&shifted(
                "'2024-01-31 10:00:00+00'",
                &interval("1 month 1 hour"),
                false
            )),
            Some("2024-02-29 11:00:00+00".into())
        );
        assert_eq!(
            run(&shifted(
                "'2024-03-01 00:00:00.25'",
                &interval("1 day"),
                true
            )),
            Some("2024-02-29 00:00:00.25".into())
        );
        assert_eq!(
            run(&shifted("'2024-01-02'", &interval("36 hours"), false)),
            Some("2024-01-03 12:00:00".into())
        );
        assert_eq!(run(&shifted("NULL", &interval("1 day"), false)), None);
    }

    #[test]
    fn date_trunc_cuts_to_the_field_and_keeps_the_zone() {
        let at = "'2024-05-16 13:45:30.5+00'";
        for (field, expected) in [
            ("second", "2024-05-16 13:45:30+00"),
            ("minute", "2024-05-16 13:45:00+00"),
            ("hour", "2024-05-16 13:00:00+00"),
            ("day", "2024-05-16 00:00:00+00"),
            ("week", "2024-05-13 00:00:00+00"),
            ("month", "2024-05-01 00:00:00+00"),
            ("quarter", "2024-04-01 00:00:00+00"),
            ("year", "2024-01-01 00:00:00+00"),
        ] {
            assert_eq!(
                run(&date_trunc(field, at).unwrap()),
                Some(expected.into()),
                "{field}"
            );
        }
        // A Monday stays in its own week.
        assert_eq!(
            run(&date_trunc("week", "'2024-05-13 08:00:00'").unwrap()),
            Some("2024-05-13 00:00:00".into())
        );
        assert!(date_trunc("fortnight", at).is_none());
        // The field chosen when the statement runs.
        assert_eq!(
            run(&date_trunc_by("'Month'", at)),
            Some("2024-05-01 00:00:00+00".into())
        );
        assert_eq!(run(&date_trunc_by("'fortnight'", at)), None);
    }
}
