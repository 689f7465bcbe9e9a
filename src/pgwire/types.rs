//! How SQLite's dynamically typed values are presented as PostgreSQL types: a column's type
//! comes from its declared type (SQLite's affinity rules) or, for expressions, from the values
//! it holds; every value is then rendered in that type, text or binary.

use crate::types::value::SqlValue;

/// The PostgreSQL types Shoal's result columns and parameters use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgType {
    Bool,
    Int8,
    Float8,
    Text,
    Bytea,
}

impl PgType {
    /// The type for a column declared as `declared`, following SQLite's affinity rules
    /// (section 3.1 of "Datatypes In SQLite"); `None` when the declaration does not decide
    /// (no declared type, `BLOB`-less `NUMERIC`, or an expression).
    pub fn for_declared(declared: &str) -> Option<PgType> {
        let upper = declared.to_ascii_uppercase();
        if upper.contains("BOOL") {
            Some(PgType::Bool)
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
            (_, SqlValue::Null) | (PgType::Text, _) => true,
            (PgType::Bool, SqlValue::Integer(i)) => *i == 0 || *i == 1,
            (PgType::Int8, SqlValue::Integer(_)) => true,
            (PgType::Float8, SqlValue::Integer(_) | SqlValue::Real(_)) => true,
            (PgType::Bytea, SqlValue::Blob(_)) => true,
            _ => false,
        }
    }

    /// PostgreSQL's object id for the type.
    pub fn oid(self) -> u32 {
        match self {
            PgType::Bool => 16,
            PgType::Int8 => 20,
            PgType::Float8 => 701,
            PgType::Text => 25,
            PgType::Bytea => 17,
        }
    }
}

/// `value` in PostgreSQL's text format for `pg_type` (`None` is SQL NULL). Values the type
/// cannot carry are rendered as text, which only a `Text` column receives (see `for_column`).
pub fn text_format(pg_type: PgType, value: &SqlValue) -> Option<String> {
    match value {
        SqlValue::Null => None,
        SqlValue::Integer(i) if pg_type == PgType::Bool => {
            Some(if *i != 0 { "t" } else { "f" }.to_string())
        }
        SqlValue::Integer(i) => Some(i.to_string()),
        SqlValue::Real(f) => Some(real_text(*f)),
        SqlValue::Text(t) => Some(t.clone()),
        SqlValue::Blob(b) => Some(bytea_hex(b)),
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
        assert_eq!(PgType::for_declared("INTEGER"), Some(PgType::Int8));
        assert_eq!(PgType::for_declared("bigint"), Some(PgType::Int8));
        assert_eq!(PgType::for_declared("VARCHAR(20)"), Some(PgType::Text));
        assert_eq!(
            PgType::for_declared("double precision"),
            Some(PgType::Float8)
        );
        assert_eq!(PgType::for_declared("BLOB"), Some(PgType::Bytea));
        assert_eq!(PgType::for_declared("boolean"), Some(PgType::Bool));
        assert_eq!(PgType::for_declared(""), None);
        assert_eq!(PgType::for_declared("NUMERIC"), None);
    }

    #[test]
    fn a_column_whose_values_defy_its_declaration_is_presented_as_text() {
        let values = [SqlValue::Integer(1), SqlValue::Text("abc".into())];
        assert_eq!(PgType::for_column("INTEGER", values.iter()), PgType::Text);
        let values = [SqlValue::Integer(1), SqlValue::Null];
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
    }
}
