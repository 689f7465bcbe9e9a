//! Arrays and JSON builders in the emulated catalog: PostgreSQL's catalog queries aggregate
//! column lists into arrays (`array_agg`), expand them again (`unnest`, rewritten onto
//! `json_each` by `srf.rs` with `shoal_array_json`), and build JSON objects
//! (`json_build_object`). Arrays leave the catalog as PostgreSQL's text form `{a,b}`, typed
//! `text[]` in the row description.

use rusqlite::Connection;
use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};

use crate::pgwire::types::array_elements;

/// Elements one catalog array may hold (catalog arrays list a table's columns or labels).
const ARRAY_ELEMENTS_MAX: usize = 100_000;

pub fn register(catalog: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    catalog.create_aggregate_function("array_agg", 1, flags, ArrayAgg)?;
    catalog.create_aggregate_function("bool_and", 1, flags, BoolFold { all: true })?;
    catalog.create_aggregate_function("every", 1, flags, BoolFold { all: true })?;
    catalog.create_aggregate_function("bool_or", 1, flags, BoolFold { all: false })?;
    catalog.create_scalar_function("shoal_array_json", 1, flags, |context| {
        Ok(array_json(context.get_raw(0)))
    })?;
    catalog.create_scalar_function("json_build_object", -1, flags, json_build_object)?;
    catalog.create_scalar_function("jsonb_build_object", -1, flags, json_build_object)?;
    Ok(())
}

/// A value as a JSON array: PostgreSQL array text `{1,2}`, an int2vector `1 2`, or JSON.
fn array_json(value: ValueRef<'_>) -> Option<String> {
    let text = match value {
        ValueRef::Null => return None,
        ValueRef::Integer(i) => return Some(format!("[{i}]")),
        ValueRef::Real(f) => return Some(format!("[{f}]")),
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
    };
    let trimmed = text.trim();
    if trimmed.starts_with('[') {
        return Some(trimmed.to_string());
    }
    let elements: Vec<serde_json::Value> = match trimmed.strip_prefix('{') {
        Some(inner) => {
            let mut elements =
                array_elements(inner.strip_suffix('}').unwrap_or(inner), ARRAY_ELEMENTS_MAX);
            elements.truncate(ARRAY_ELEMENTS_MAX);
            elements
                .into_iter()
                .map(|element| element.map_or(serde_json::Value::Null, serde_json::Value::String))
                .collect::<Vec<_>>()
        }
        None => trimmed
            .split_whitespace()
            .map(|element| serde_json::Value::String(element.to_string()))
            .collect(),
    }
    .into_iter()
    .map(|element| match &element {
        // Numbers stay numbers, so `attnum = value` compares integers.
        serde_json::Value::String(s) => s
            .parse::<i64>()
            .map(serde_json::Value::from)
            .unwrap_or(element),
        _ => element,
    })
    .collect();
    Some(serde_json::Value::Array(elements).to_string())
}

/// PostgreSQL's text form of a one-dimensional array of `elements`.
pub fn array_text(elements: &[Value]) -> String {
    let items: Vec<String> = elements
        .iter()
        .map(|element| match element {
            Value::Null => "NULL".to_string(),
            Value::Integer(i) => i.to_string(),
            Value::Real(f) => f.to_string(),
            Value::Text(t) => quote_element(t),
            Value::Blob(b) => quote_element(&String::from_utf8_lossy(b)),
        })
        .collect();
    format!("{{{}}}", items.join(","))
}

fn quote_element(text: &str) -> String {
    let needs_quotes = text.is_empty()
        || text.eq_ignore_ascii_case("NULL")
        || text
            .chars()
            .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_whitespace());
    if !needs_quotes {
        return text.to_string();
    }
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

struct ArrayAgg;

impl Aggregate<Vec<Value>, Option<String>> for ArrayAgg {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<Vec<Value>> {
        Ok(Vec::new())
    }

    fn step(&self, context: &mut Context<'_>, elements: &mut Vec<Value>) -> rusqlite::Result<()> {
        if elements.len() >= ARRAY_ELEMENTS_MAX {
            return Err(rusqlite::Error::UserFunctionError(
                format!("array_agg: more than {ARRAY_ELEMENTS_MAX} elements").into(),
            ));
        }
        elements.push(context.get_raw(0).into());
        Ok(())
    }

    fn finalize(
        &self,
        _: &mut Context<'_>,
        elements: Option<Vec<Value>>,
    ) -> rusqlite::Result<Option<String>> {
        Ok(elements.map(|elements| array_text(&elements)))
    }
}

/// `bool_and`/`every` (`all`) and `bool_or`: NULLs skipped, NULL over no rows.
struct BoolFold {
    all: bool,
}

impl Aggregate<Option<bool>, Option<bool>> for BoolFold {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<Option<bool>> {
        Ok(None)
    }

    fn step(&self, context: &mut Context<'_>, folded: &mut Option<bool>) -> rusqlite::Result<()> {
        let Some(value) = context.get::<Option<bool>>(0)? else {
            return Ok(());
        };
        *folded = Some(match *folded {
            None => value,
            Some(so_far) if self.all => so_far && value,
            Some(so_far) => so_far || value,
        });
        Ok(())
    }

    fn finalize(
        &self,
        _: &mut Context<'_>,
        folded: Option<Option<bool>>,
    ) -> rusqlite::Result<Option<bool>> {
        Ok(folded.flatten())
    }
}

/// `json_build_object(k1, v1, …)`: keys as text, values as their JSON counterparts.
fn json_build_object(context: &Context<'_>) -> rusqlite::Result<String> {
    if !context.len().is_multiple_of(2) {
        return Err(rusqlite::Error::UserFunctionError(
            "json_build_object: argument list must have even number of elements".into(),
        ));
    }
    let mut object = serde_json::Map::new();
    for pair in 0..context.len() / 2 {
        let key = match context.get_raw(pair * 2) {
            ValueRef::Null => {
                return Err(rusqlite::Error::UserFunctionError(
                    "json_build_object: null value not allowed for object key".into(),
                ));
            }
            ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
            ValueRef::Integer(i) => i.to_string(),
            ValueRef::Real(f) => f.to_string(),
        };
        let value = match context.get_raw(pair * 2 + 1) {
            ValueRef::Null => serde_json::Value::Null,
            ValueRef::Integer(i) => serde_json::Value::from(i),
            ValueRef::Real(f) => serde_json::Value::from(f),
            ValueRef::Text(t) | ValueRef::Blob(t) => {
                serde_json::Value::String(String::from_utf8_lossy(t).into_owned())
            }
        };
        object.insert(key, value);
    }
    Ok(serde_json::Value::Object(object).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_arrays_aggregate_and_expand_like_postgresql() {
        let catalog = Connection::open_in_memory().unwrap();
        register(&catalog).unwrap();
        let text: String = catalog
            .query_row(
                "SELECT array_agg(x ORDER BY y) FROM (SELECT 'b' AS x, 2 AS y UNION ALL \
                 SELECT 'a c', 1 UNION ALL SELECT NULL, 3)",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(text, "{\"a c\",b,NULL}");
        let expanded: Vec<(i64, i64)> = catalog
            .prepare("SELECT key + 1, value FROM json_each(shoal_array_json('1 3'))")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(expanded, [(1, 1), (2, 3)]);
        let json: String = catalog
            .query_row("SELECT json_build_object('a', 1, 'b', NULL)", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(json, "{\"a\":1,\"b\":null}");
        let all: Option<bool> = catalog
            .query_row(
                "SELECT bool_and(x) FROM (SELECT 1 AS x UNION ALL SELECT 0)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(all, Some(false));
    }
}
