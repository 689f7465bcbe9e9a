//! Decoding rqlite's JSON request bodies into statements.
//!
//! Accepted shapes, as rqlite accepts them:
//! `["SQL", ...]`, `[["SQL ?", 1, "two"], ...]` (positional), `[["SQL :a", {"a": 1}], ...]`
//! (named). A parameter that is an array of bytes (integers 0–255) binds as a BLOB.

use serde_json::Value;

use crate::raft::types::{Params, Statement};
use crate::types::value::SqlValue;

/// Most statements one request may carry.
pub const STATEMENTS_PER_REQUEST_MAX: usize = 100_000;
/// Most parameters one statement may carry (SQLite's own limit on variables).
pub const PARAMETERS_PER_STATEMENT_MAX: usize = 32_766;

/// Parses a request body; the error names what is wrong and where.
pub fn parse_statements(body: &[u8]) -> Result<Vec<Statement>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("request body is not valid JSON: {e}"))?;
    let Value::Array(items) = value else {
        return Err(
            "request body must be a JSON array of statements, e.g. [\"SELECT 1\"]".to_string(),
        );
    };
    if items.len() > STATEMENTS_PER_REQUEST_MAX {
        return Err(format!(
            "request has {} statements; the limit is {STATEMENTS_PER_REQUEST_MAX}",
            items.len()
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| parse_statement(index, item))
        .collect()
}

fn parse_statement(index: usize, item: Value) -> Result<Statement, String> {
    match item {
        Value::String(sql) => Ok(Statement::plain(sql)),
        Value::Array(parts) => {
            let mut parts = parts.into_iter();
            let sql = match parts.next() {
                Some(Value::String(sql)) => sql,
                Some(_) => {
                    return Err(format!(
                        "statement {index}: the first element must be the SQL text"
                    ));
                }
                None => {
                    return Err(format!(
                        "statement {index}: empty array; expected [\"SQL\", params...]"
                    ));
                }
            };
            let rest: Vec<Value> = parts.collect();
            let count = match rest.as_slice() {
                [Value::Object(map)] => map.len(),
                values => values.len(),
            };
            if count > PARAMETERS_PER_STATEMENT_MAX {
                return Err(format!(
                    "statement {index} has {count} parameters; the limit is \
                     {PARAMETERS_PER_STATEMENT_MAX}"
                ));
            }
            let params = match rest.as_slice() {
                [] => Params::None,
                [Value::Object(map)] => Params::Named(
                    map.iter()
                        .map(|(name, value)| {
                            Ok((
                                name.clone(),
                                to_sql_value(value).map_err(|e| {
                                    format!("statement {index}, parameter {name:?}: {e}")
                                })?,
                            ))
                        })
                        .collect::<Result<_, String>>()?,
                ),
                values => Params::Positional(
                    values
                        .iter()
                        .enumerate()
                        .map(|(p, v)| {
                            to_sql_value(v)
                                .map_err(|e| format!("statement {index}, parameter {}: {e}", p + 1))
                        })
                        .collect::<Result<_, String>>()?,
                ),
            };
            Ok(Statement { sql, params })
        }
        other => Err(format!(
            "statement {index}: expected a string or an array, found {}",
            json_kind(&other)
        )),
    }
}

fn to_sql_value(value: &Value) -> Result<SqlValue, String> {
    Ok(match value {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => SqlValue::Integer(i),
            (None, Some(f)) => SqlValue::Real(f),
            _ => return Err(format!("number {n} does not fit a 64-bit integer or float")),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        Value::Array(items) => SqlValue::Blob(
            items
                .iter()
                .map(|b| b.as_u64().filter(|b| *b <= 255).map(|b| b as u8))
                .collect::<Option<Vec<u8>>>()
                .ok_or("an array parameter is a BLOB and must hold only integers 0-255")?,
        ),
        Value::Object(_) => {
            return Err("an object is only allowed as the single named-parameter map".to_string());
        }
    })
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_positional_and_named_forms() {
        let statements = parse_statements(
            br#"["SELECT 1", ["INSERT INTO t VALUES(?, ?)", 1, "a"], ["SELECT :x", {"x": 2.5}]]"#,
        )
        .unwrap();
        assert_eq!(statements[0], Statement::plain("SELECT 1"));
        assert_eq!(
            statements[1].params,
            Params::Positional(vec![SqlValue::Integer(1), SqlValue::Text("a".into())])
        );
        assert_eq!(
            statements[2].params,
            Params::Named(vec![("x".into(), SqlValue::Real(2.5))])
        );
    }

    #[test]
    fn byte_arrays_bind_as_blobs() {
        let statements =
            parse_statements(br#"[["INSERT INTO t VALUES(?)", [0, 255, 7]]]"#).unwrap();
        assert_eq!(
            statements[0].params,
            Params::Positional(vec![SqlValue::Blob(vec![0, 255, 7])])
        );
        assert!(
            parse_statements(br#"[["INSERT INTO t VALUES(?)", [300]]]"#)
                .unwrap_err()
                .contains("0-255")
        );
    }

    #[test]
    fn malformed_bodies_say_what_is_wrong() {
        assert!(
            parse_statements(b"{not json")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(
            parse_statements(br#"{"sql": "x"}"#)
                .unwrap_err()
                .contains("JSON array")
        );
        assert!(
            parse_statements(br#"[42]"#)
                .unwrap_err()
                .contains("statement 0")
        );
        assert!(
            parse_statements(br#"[[]]"#)
                .unwrap_err()
                .contains("empty array")
        );
        assert!(
            parse_statements(br#"[[1, 2]]"#)
                .unwrap_err()
                .contains("SQL text")
        );
    }

    #[test]
    fn parameter_counts_are_bounded() {
        let body = |count: usize| {
            let params = vec!["1"; count].join(",");
            format!(r#"[["SELECT 1", {params}]]"#)
        };
        assert!(parse_statements(body(PARAMETERS_PER_STATEMENT_MAX).as_bytes()).is_ok());
        let error =
            parse_statements(body(PARAMETERS_PER_STATEMENT_MAX + 1).as_bytes()).unwrap_err();
        assert!(
            error.contains("32767 parameters; the limit is 32766"),
            "{error}"
        );
    }
}
