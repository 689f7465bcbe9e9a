//! `FROM UNNEST('{1,2}'::integer[], '{a,b}'::text[])` — how Django's bulk_create inserts many rows
//! on PostgreSQL — as a `VALUES` list: each array literal is read (PostgreSQL's array text) and
//! the arrays are zipped into rows, shorter ones padded with NULL as PostgreSQL does. Only literal
//! arrays: an array bound as a parameter is refused by name.

use sqlparser::ast::{
    ArrayElemTypeDef, CastKind, DataType, Expr, TableFactor, Value, ValueWithSpan,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::pgwire::types::array_elements;

/// Elements one UNNEST may produce in all (the statement text bounds it too).
const ELEMENTS_MAX: usize = 1_000_000;

/// How an element is written into the VALUES list.
#[derive(Clone, Copy)]
enum Element {
    Integer,
    Real,
    Boolean,
    Text,
}

/// The derived table `UNNEST(…)` of literal arrays reads as; `Err` names what cannot be.
pub fn unnest_as_values(factor: &TableFactor) -> Option<Result<TableFactor, String>> {
    let TableFactor::UNNEST {
        alias,
        array_exprs,
        with_offset,
        with_ordinality,
        ..
    } = factor
    else {
        return None;
    };
    if *with_offset || *with_ordinality {
        return Some(Err("UNNEST … WITH ORDINALITY".into()));
    }
    let mut columns = Vec::with_capacity(array_exprs.len());
    for expr in array_exprs {
        let Some((text, element)) = literal_array(expr) else {
            return Some(Err(
                "UNNEST of anything but array literals ('{…}'::type[]): arrays bound as \
                 parameters are not supported"
                    .into(),
            ));
        };
        match parse_array(&text) {
            Some(values) => columns.push((values, element)),
            None => return Some(Err(format!("UNNEST of the array literal '{text}'"))),
        }
    }
    let height = columns.iter().map(|(v, _)| v.len()).max().unwrap_or(0);
    if height * columns.len().max(1) > ELEMENTS_MAX {
        return Some(Err(format!("UNNEST of more than {ELEMENTS_MAX} elements")));
    }
    let rows: Vec<String> = (0..height)
        .map(|row| {
            let cells: Vec<String> = columns
                .iter()
                .map(
                    |(values, element)| match values.get(row).cloned().flatten() {
                        None => "NULL".to_string(),
                        Some(value) => sql_literal(&value, *element),
                    },
                )
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect();
    let body = if rows.is_empty() {
        let nulls: Vec<&str> = columns.iter().map(|_| "NULL").collect();
        format!("SELECT {} WHERE false", nulls.join(", "))
    } else {
        format!("VALUES {}", rows.join(", "))
    };
    let alias = alias
        .as_ref()
        .map_or_else(|| "unnest".to_string(), |a| a.name.to_string());
    let sql = format!("SELECT * FROM ({body}) AS {alias}");
    let parsed = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&sql)
        .and_then(|mut parser| parser.parse_query())
        .map_err(|e| format!("UNNEST rows ({e})"));
    Some(parsed.and_then(|query| {
        match *query.body {
            sqlparser::ast::SetExpr::Select(select) => select
                .from
                .into_iter()
                .next()
                .map(|from| from.relation)
                .ok_or_else(|| "UNNEST rows".to_string()),
            _ => Err("UNNEST rows".to_string()),
        }
    }))
}

/// `'{…}'::T[]` (possibly cast again, or parenthesized): the array text and how its elements
/// are written.
fn literal_array(expr: &Expr) -> Option<(String, Element)> {
    match expr {
        Expr::Nested(inner) => literal_array(inner),
        Expr::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon,
            expr,
            data_type,
            ..
        } => {
            let element = match data_type {
                DataType::Array(
                    ArrayElemTypeDef::SquareBracket(inner, _)
                    | ArrayElemTypeDef::AngleBracket(inner)
                    | ArrayElemTypeDef::Parenthesis(inner)
                    | ArrayElemTypeDef::ParenthesisNotNull(inner)
                    | ArrayElemTypeDef::Qualified(inner, _),
                ) => element_kind(&inner.to_string()),
                _ => return None,
            };
            match string_literal(expr) {
                Some(text) => Some((text, element)),
                None => literal_array(expr).map(|(text, _)| (text, element)),
            }
        }
        _ => None,
    }
}

/// A string literal (`'…'`, `E'…'`), parenthesized or not.
fn string_literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Nested(inner) => string_literal(inner),
        Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(text) | Value::EscapedStringLiteral(text),
            ..
        }) => Some(text.clone()),
        _ => None,
    }
}

fn element_kind(element_type: &str) -> Element {
    let lower = element_type.to_ascii_lowercase();
    let base = lower
        .split('(')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    match base.as_str() {
        "smallint" | "integer" | "int" | "bigint" | "int2" | "int4" | "int8" => Element::Integer,
        "real" | "float" | "float4" | "float8" | "double precision" | "numeric" | "decimal" => {
            Element::Real
        }
        "boolean" | "bool" => Element::Boolean,
        _ => Element::Text,
    }
}

/// PostgreSQL's text form of a one-dimensional array (`{1,"a b",NULL}`); `None` when it is not
/// one (no braces, or a nested array).
fn parse_array(text: &str) -> Option<Vec<Option<String>>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut quoted = false;
    let mut escaped = false;
    for c in inner.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '{' | '}' if !quoted => return None,
            _ => {}
        }
    }
    Some(array_elements(inner, ELEMENTS_MAX))
}

fn sql_literal(value: &str, element: Element) -> String {
    let quoted = || format!("'{}'", value.replace('\'', "''"));
    match element {
        Element::Integer if value.parse::<i64>().is_ok() => value.to_string(),
        Element::Real if value.parse::<f64>().is_ok_and(f64::is_finite) => value.to_string(),
        Element::Boolean => match value.to_ascii_lowercase().as_str() {
            "t" | "true" | "1" | "y" | "yes" | "on" => "1".into(),
            "f" | "false" | "0" | "n" | "no" | "off" => "0".into(),
            _ => quoted(),
        },
        _ => quoted(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_text_is_read_as_postgresql_writes_it() {
        assert_eq!(
            parse_array(r#"{1, "a b",NULL,"NULL","q\"x"}"#),
            Some(vec![
                Some("1".into()),
                Some("a b".into()),
                None,
                Some("NULL".into()),
                Some("q\"x".into())
            ])
        );
        assert_eq!(parse_array("{}"), Some(vec![]));
        assert_eq!(parse_array("{{1,2},{3,4}}"), None);
        assert_eq!(parse_array("1,2"), None);
    }
}
