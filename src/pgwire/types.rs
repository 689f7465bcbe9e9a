//! How SQLite's dynamically typed values are presented as PostgreSQL types: a column's type
//! comes from its declared type (PostgreSQL's name when the table was created with one —
//! SQLite keeps declarations as written — otherwise SQLite's affinity rules) or, for
//! expressions, from the values it holds; every value is then rendered in that type, text or
//! binary.

use crate::pgwire::datetime;
use crate::types::value::SqlValue;

/// The PostgreSQL types Shoal's result columns and parameters use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgType {
    Bool,
    /// `smallint`: a column declared SMALLINT (or INT2, TINYINT).
    Int2,
    /// `integer`: a column declared INTEGER (or INT, INT4, MEDIUMINT), as in PostgreSQL.
    Int4,
    /// `bigint`: other integer declarations, and integers computed by expressions.
    Int8,
    Float8,
    Text,
    /// `varchar(n)`: text, described with its length (drivers size fields by it; Django's
    /// inspectdb tells CharField from TextField so).
    Varchar(Option<u32>),
    Bytea,
    /// `numeric`, with the declared scale when there is one (`NUMERIC(10,2)`: 2).
    Numeric(Option<u16>),
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Uuid,
    Json,
    Jsonb,
    /// `interval`: text as PostgreSQL prints it (`1 day 02:00:00`; `pgwire::interval`).
    Interval,
    /// `text[]`: PostgreSQL's array text `{a,b}` (catalog queries' `array_agg`).
    TextArray,
    /// `name[]`: an `array_agg` of a catalog name column (`attname`), as PostgreSQL types it;
    /// node-postgres hands it over as text, which Sequelize parses itself.
    NameArray,
    /// `bool[]`: an `array_agg` of truth values (SQLite's 1/0 shown as t/f).
    BoolArray,
}

impl PgType {
    /// The type for a column declared as `declared`: PostgreSQL's type names first (a
    /// `TIMESTAMP`, `NUMERIC(10,2)`, `UUID` or `JSONB` column), then SQLite's affinity rules
    /// (section 3.1 of "Datatypes In SQLite"); `None` when the declaration does not decide (no
    /// declared type, a bare SQLite `NUMERIC`, or an expression).
    pub fn for_declared(declared: &str) -> Option<PgType> {
        let upper = declared.trim().to_ascii_uppercase();
        let base = upper.split('(').next().unwrap_or_default().trim();
        let postgres = match base {
            "TIMESTAMP WITH TIME ZONE" | "TIMESTAMPTZ" => Some(PgType::TimestampTz),
            "TIMESTAMP" | "TIMESTAMP WITHOUT TIME ZONE" => Some(PgType::Timestamp),
            "DATE" => Some(PgType::Date),
            "TIME" | "TIME WITHOUT TIME ZONE" => Some(PgType::Time),
            "UUID" => Some(PgType::Uuid),
            "JSON" => Some(PgType::Json),
            "JSONB" => Some(PgType::Jsonb),
            "INTERVAL" => Some(PgType::Interval),
            // Text in Shoal; named here so that "TIMETZ" is not taken for anything else.
            "TIME WITH TIME ZONE" | "TIMETZ" => Some(PgType::Text),
            "VARCHAR" | "CHARACTER VARYING" | "NVARCHAR" | "VARYING CHARACTER" => {
                Some(PgType::Varchar(declared_length(&upper)))
            }
            "NUMERIC" | "DECIMAL" if upper.contains('(') => {
                Some(PgType::Numeric(declared_scale(&upper)))
            }
            "DECIMAL" => Some(PgType::Numeric(None)),
            _ => None,
        };
        if postgres.is_some() {
            return postgres;
        }
        if upper.contains("BOOL") {
            Some(PgType::Bool)
        } else if matches!(base, "INTEGER" | "INT" | "INT4" | "MEDIUMINT") {
            Some(PgType::Int4)
        } else if matches!(base, "SMALLINT" | "INT2" | "TINYINT") {
            Some(PgType::Int2)
        } else if upper.contains("INT") {
            Some(PgType::Int8)
        } else if ["CHAR", "CLOB", "TEXT"].iter().any(|t| upper.contains(t)) {
            Some(PgType::Text)
        } else if upper.contains("BLOB") || upper == "BYTEA" {
            Some(PgType::Bytea)
        } else if ["REAL", "FLOA", "DOUB"].iter().any(|t| upper.contains(t)) {
            Some(PgType::Float8)
        } else {
            None
        }
    }

    /// The type that can carry every one of `values` (a column without a deciding
    /// declaration): the storage class they share, integers widened to reals when mixed with
    /// them, and text when they disagree otherwise.
    pub fn for_values<'a>(values: impl Iterator<Item = &'a SqlValue>) -> PgType {
        let mut chosen: Option<PgType> = None;
        for value in values {
            let this = match value {
                SqlValue::Null => continue,
                SqlValue::Integer(_) => PgType::Int8,
                SqlValue::Real(_) => PgType::Float8,
                SqlValue::Text(_) => PgType::Text,
                SqlValue::Blob(_) => PgType::Bytea,
            };
            chosen = Some(match (chosen, this) {
                (None, this) => this,
                (Some(a), b) if a == b => a,
                (Some(PgType::Int8), PgType::Float8) | (Some(PgType::Float8), PgType::Int8) => {
                    PgType::Float8
                }
                _ => PgType::Text,
            });
        }
        chosen.unwrap_or(PgType::Text)
    }

    /// The type for a result column: its declaration when that decides and every value fits,
    /// otherwise what the values have in common.
    pub fn for_column<'a>(
        declared: &str,
        values: impl Iterator<Item = &'a SqlValue> + Clone,
    ) -> PgType {
        match PgType::for_declared(declared) {
            Some(pg_type) if values.clone().all(|v| pg_type.carries(v)) => pg_type,
            _ => PgType::for_values(values),
        }
    }

    /// Whether `value` can be rendered as this type without loss.
    pub fn carries(self, value: &SqlValue) -> bool {
        match (self, value) {
            (_, SqlValue::Null) | (PgType::Text | PgType::Varchar(_), _) => true,
            (PgType::Bool, SqlValue::Integer(i)) => *i == 0 || *i == 1,
            (PgType::Int8, SqlValue::Integer(_)) => true,
            (PgType::Int4, SqlValue::Integer(i)) => i32::try_from(*i).is_ok(),
            (PgType::Int2, SqlValue::Integer(i)) => i16::try_from(*i).is_ok(),
            (PgType::Float8, SqlValue::Integer(_) | SqlValue::Real(_)) => true,
            (PgType::Bytea, SqlValue::Blob(_)) => true,
            (PgType::Numeric(_), SqlValue::Integer(_) | SqlValue::Real(_)) => true,
            (PgType::Numeric(_), SqlValue::Text(t)) => crate::pgwire::numeric::encode(t).is_some(),
            (PgType::Date, SqlValue::Text(t)) => datetime::parse_date(t).is_some(),
            (PgType::Time, SqlValue::Text(t)) => datetime::parse_time(t).is_some(),
            (PgType::Timestamp | PgType::TimestampTz, SqlValue::Text(t)) => {
                datetime::parse_timestamp(t).is_some()
            }
            (PgType::Uuid, SqlValue::Text(t)) => uuid::Uuid::parse_str(t).is_ok(),
            (PgType::Interval, SqlValue::Text(t)) => {
                crate::pgwire::interval::Interval::parse(t).is_ok()
            }
            (PgType::Json | PgType::Jsonb, SqlValue::Text(t)) => {
                serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok()
            }
            (PgType::Json | PgType::Jsonb, SqlValue::Integer(_) | SqlValue::Real(_)) => true,
            (PgType::TextArray | PgType::NameArray | PgType::BoolArray, SqlValue::Text(t)) => {
                t.starts_with('{') && t.ends_with('}')
            }
            _ => false,
        }
    }

    /// PostgreSQL's object id for the type.
    pub fn oid(self) -> u32 {
        match self {
            PgType::Bool => 16,
            PgType::Int2 => 21,
            PgType::Int4 => 23,
            PgType::Int8 => 20,
            PgType::Float8 => 701,
            PgType::Text => 25,
            PgType::Varchar(_) => 1043,
            PgType::Bytea => 17,
            PgType::Numeric(_) => 1700,
            PgType::Date => 1082,
            PgType::Time => 1083,
            PgType::Timestamp => 1114,
            PgType::TimestampTz => 1184,
            PgType::Uuid => 2950,
            PgType::Json => 114,
            PgType::Jsonb => 3802,
            PgType::Interval => 1186,
            PgType::TextArray => 1009,
            PgType::NameArray => 1003,
            PgType::BoolArray => 1000,
        }
    }
}

impl PgType {
    /// The type modifier a row description carries (`pg_attribute.atttypmod`): a varchar's
    /// length plus 4, as PostgreSQL stores it; -1 for none.
    pub fn type_modifier(self) -> i32 {
        match self {
            PgType::Varchar(Some(length)) => i32::try_from(length)
                .ok()
                .and_then(|l| l.checked_add(4))
                .unwrap_or(-1),
            _ => -1,
        }
    }
}

/// The length of `VARCHAR(n)`.
fn declared_length(upper: &str) -> Option<u32> {
    upper
        .split_once('(')?
        .1
        .split_once(')')?
        .0
        .trim()
        .parse()
        .ok()
}

/// The elements of a one-dimensional array in PostgreSQL's text form, given what is between
/// its braces (`1,"a b",NULL`): `None` for an unquoted NULL. Reads at most `max` + 1 elements,
/// so a caller can tell that there were more than `max`; lenient with what it cannot read.
pub fn array_elements(inner: &str, max: usize) -> Vec<Option<String>> {
    let mut elements = Vec::new();
    let mut chars = inner.chars().peekable();
    while chars.peek().is_some() && elements.len() <= max {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut element = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => element.extend(chars.next()),
                    '"' => break,
                    other => element.push(other),
                }
            }
        }
        for c in chars.by_ref() {
            if c == ',' {
                break;
            }
            if !quoted {
                element.push(c);
            }
        }
        elements.push(if quoted {
            Some(element)
        } else {
            let element = element.trim();
            (!element.eq_ignore_ascii_case("NULL")).then(|| element.to_string())
        });
    }
    elements
}

/// The scale of `NUMERIC(p, s)` (0 for `NUMERIC(p)`).
fn declared_scale(upper: &str) -> Option<u16> {
    let inside = upper.split_once('(')?.1.split_once(')')?.0;
    match inside.split_once(',') {
        Some((_, scale)) => scale.trim().parse().ok(),
        None => Some(0),
    }
}

/// `value` in PostgreSQL's text format for `pg_type` (`None` is SQL NULL). Values the type
/// cannot carry are rendered as text, which only a `Text` column receives (see `for_column`).
pub fn text_format(pg_type: PgType, value: &SqlValue) -> Option<String> {
    match (pg_type, value) {
        (_, SqlValue::Null) => None,
        (PgType::Bool, SqlValue::Integer(i)) => Some(if *i != 0 { "t" } else { "f" }.to_string()),
        (PgType::Numeric(Some(scale)), SqlValue::Real(f)) if f.is_finite() => {
            Some(format!("{f:.*}", usize::from(scale)))
        }
        (PgType::Numeric(None), SqlValue::Real(f)) if f.is_finite() => Some(decimal_digits(*f)),
        (PgType::Numeric(Some(scale)), SqlValue::Integer(i)) if scale > 0 => {
            Some(format!("{i}.{}", "0".repeat(usize::from(scale))))
        }
        (PgType::Timestamp, SqlValue::Text(t)) => {
            Some(datetime::parse_timestamp(t).map_or_else(|| t.clone(), datetime::format_timestamp))
        }
        (PgType::TimestampTz, SqlValue::Text(t)) => Some(stored_timestamptz(t)),
        (PgType::Interval, SqlValue::Text(t)) => Some(crate::pgwire::interval::canonical_text(t)),
        (PgType::BoolArray, SqlValue::Text(t)) => Some(bool_array_text(t)),
        (PgType::Uuid, SqlValue::Text(t)) => Some(
            uuid::Uuid::parse_str(t).map_or_else(|_| t.clone(), |u| u.hyphenated().to_string()),
        ),
        (_, SqlValue::Integer(i)) => Some(i.to_string()),
        (_, SqlValue::Real(f)) => Some(real_text(*f)),
        (_, SqlValue::Text(t)) => Some(t.clone()),
        (_, SqlValue::Blob(b)) => Some(bytea_hex(b)),
    }
}

/// A real as a numeric without a declared scale: 15 significant digits, as SQLite converts a
/// real to text (so a sum of decimals stored as reals prints 22.49, not 22.490000000000002),
/// in plain decimal notation.
fn decimal_digits(value: f64) -> String {
    let scientific = format!("{value:.14e}");
    let Some((mantissa, exponent)) = scientific.split_once('e') else {
        return real_text(value);
    };
    let Ok(exponent) = exponent.parse::<i32>() else {
        return real_text(value);
    };
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    // The decimal point goes after digit `exponent + 1` (counting from 1).
    let point = exponent + 1;
    let (whole, fraction) = if point <= 0 {
        let zeros = "0".repeat(usize::try_from(-point).unwrap_or(0));
        ("0".to_string(), format!("{zeros}{digits}"))
    } else if usize::try_from(point).unwrap_or(0) >= digits.len() {
        let zeros = "0".repeat(usize::try_from(point).unwrap_or(0) - digits.len());
        (format!("{digits}{zeros}"), String::new())
    } else {
        let (whole, fraction) = digits.split_at(usize::try_from(point).unwrap_or(0));
        (whole.to_string(), fraction.to_string())
    };
    let fraction = fraction.trim_end_matches('0');
    let sign = if negative { "-" } else { "" };
    if fraction.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}

/// An array of 1/0 as PostgreSQL prints a `bool[]`: `{1,0,NULL}` → `{t,f,NULL}`.
fn bool_array_text(text: &str) -> String {
    let inner = text.trim_start_matches('{').trim_end_matches('}');
    if inner.is_empty() {
        return "{}".to_string();
    }
    let elements: Vec<&str> = inner
        .split(',')
        .map(|element| match element.trim() {
            "0" | "f" | "false" => "f",
            "NULL" => "NULL",
            _ => "t",
        })
        .collect();
    format!("{{{}}}", elements.join(","))
}

/// A stored timestamptz in PostgreSQL's output form (UTC, `+00`); a value stored without an
/// offset is taken as UTC.
pub fn stored_timestamptz(text: &str) -> String {
    match datetime::parse_timestamptz(text) {
        Some(zoned) => datetime::format_timestamptz(zoned),
        None => datetime::parse_timestamp(text).map_or_else(
            || text.to_string(),
            |naive| format!("{}+00", datetime::format_timestamp(naive)),
        ),
    }
}

/// PostgreSQL's rendering of a float8: shortest round-trip digits, `Infinity`, `NaN`.
fn real_text(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        value.to_string()
    }
}

/// bytea's hex output format: `\x` followed by two lower-case hex digits per byte.
pub fn bytea_hex(bytes: &[u8]) -> String {
    format!("\\x{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_follow_sqlite_affinity() {
        assert_eq!(PgType::for_declared("INTEGER"), Some(PgType::Int4));
        assert_eq!(PgType::for_declared("smallint"), Some(PgType::Int2));
        assert_eq!(PgType::for_declared("UNSIGNED BIG INT"), Some(PgType::Int8));
        assert_eq!(PgType::for_declared("bigint"), Some(PgType::Int8));
        assert_eq!(
            PgType::for_declared("VARCHAR(20)"),
            Some(PgType::Varchar(Some(20)))
        );
        assert_eq!(PgType::Varchar(Some(20)).type_modifier(), 24);
        assert_eq!(
            PgType::for_declared("character varying"),
            Some(PgType::Varchar(None))
        );
        assert_eq!(
            PgType::for_declared("double precision"),
            Some(PgType::Float8)
        );
        assert_eq!(PgType::for_declared("BLOB"), Some(PgType::Bytea));
        assert_eq!(PgType::for_declared("boolean"), Some(PgType::Bool));
        assert_eq!(PgType::for_declared(""), None);
        assert_eq!(PgType::for_declared("NUMERIC"), None);
        assert_eq!(
            PgType::for_declared("NUMERIC(10, 2)"),
            Some(PgType::Numeric(Some(2)))
        );
        assert_eq!(
            PgType::for_declared("TIMESTAMP WITH TIME ZONE"),
            Some(PgType::TimestampTz)
        );
        assert_eq!(
            PgType::for_declared("timestamp without time zone"),
            Some(PgType::Timestamp)
        );
        assert_eq!(PgType::for_declared("INTERVAL"), Some(PgType::Interval));
        assert_eq!(PgType::for_declared("uuid"), Some(PgType::Uuid));
        assert_eq!(PgType::for_declared("JSONB"), Some(PgType::Jsonb));
    }

    #[test]
    fn a_column_whose_values_defy_its_declaration_is_presented_as_text() {
        let values = [SqlValue::Integer(1), SqlValue::Text("abc".into())];
        assert_eq!(PgType::for_column("INTEGER", values.iter()), PgType::Text);
        let values = [SqlValue::Integer(1), SqlValue::Null];
        assert_eq!(PgType::for_column("INTEGER", values.iter()), PgType::Int4);
        // Past integer's range (SQLite's INTEGER holds 64 bits): bigint.
        let values = [SqlValue::Integer(1 << 40)];
        assert_eq!(PgType::for_column("INTEGER", values.iter()), PgType::Int8);
        let values = [SqlValue::Integer(1), SqlValue::Real(2.5)];
        assert_eq!(PgType::for_column("", values.iter()), PgType::Float8);
        assert_eq!(PgType::for_column("", [].iter()), PgType::Text);
    }

    #[test]
    fn values_render_like_postgresql() {
        let text = |value| text_format(PgType::Text, &value);
        assert_eq!(text(SqlValue::Blob(vec![0, 255])), Some("\\x00ff".into()));
        assert_eq!(text(SqlValue::Real(1.5)), Some("1.5".into()));
        assert_eq!(text(SqlValue::Real(f64::INFINITY)), Some("Infinity".into()));
        assert_eq!(text(SqlValue::Null), None);
        assert_eq!(
            text_format(PgType::Bool, &SqlValue::Integer(1)),
            Some("t".into())
        );
        let numeric = PgType::Numeric(Some(2));
        assert_eq!(
            text_format(numeric, &SqlValue::Real(12.5)),
            Some("12.50".into())
        );
        assert_eq!(
            text_format(numeric, &SqlValue::Integer(20)),
            Some("20.00".into())
        );
        assert_eq!(
            text_format(
                PgType::TimestampTz,
                &SqlValue::Text("2024-01-02 03:04:05".into())
            ),
            Some("2024-01-02 03:04:05+00".into())
        );
        assert_eq!(
            text_format(
                PgType::Uuid,
                &SqlValue::Text("8AE508F9922E47E8836D39A3D9030915".into())
            ),
            Some("8ae508f9-922e-47e8-836d-39a3d9030915".into())
        );
    }

    #[test]
    fn reals_shown_as_numeric_keep_fifteen_significant_digits() {
        let numeric = |f: f64| text_format(PgType::Numeric(None), &SqlValue::Real(f));
        assert_eq!(numeric(22.490000000000002), Some("22.49".into()));
        assert_eq!(numeric(11.245000000000001), Some("11.245".into()));
        assert_eq!(numeric(-0.000125), Some("-0.000125".into()));
        assert_eq!(numeric(1e20), Some("100000000000000000000".into()));
        assert_eq!(numeric(0.0), Some("0".into()));
        assert_eq!(numeric(f64::NAN), Some("NaN".into()));
    }

    #[test]
    fn postgresql_typed_columns_fall_back_to_text_for_values_they_cannot_carry() {
        let values = [SqlValue::Text("not a date".into())];
        assert_eq!(PgType::for_column("DATE", values.iter()), PgType::Text);
        let values = [SqlValue::Text("2024-01-02".into())];
        assert_eq!(PgType::for_column("DATE", values.iter()), PgType::Date);
        let values = [SqlValue::Text("{\"a\": 1}".into())];
        assert_eq!(PgType::for_column("JSON", values.iter()), PgType::Json);
    }
}
