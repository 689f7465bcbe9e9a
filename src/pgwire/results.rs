//! Turning statement results into PostgreSQL responses: row descriptions with each column's
//! type, data rows in text or binary format, and the command tags clients parse.

use std::error::Error;
use std::sync::Arc;

use bytes::BytesMut;
use futures_util::stream;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::error::{ErrorInfo, PgWireResult};
use pgwire::messages::data::DataRow;

use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use tokio_postgres::types::{IsNull, ToSql, to_sql_checked};

use crate::pgwire::sqlstate::{self, error_info, statement_error};
use crate::pgwire::transaction::is_rollback_to_savepoint;
use crate::pgwire::types::{PgType, text_format};
use crate::pgwire::{datetime, dialect, numeric};
use crate::raft::types::{RowSet, StatementResult};
use crate::types::value::SqlValue;

/// A result of text columns built here (SHOW, session information).
pub fn text_rows(columns: &[&str], rows: Vec<Vec<SqlValue>>) -> Response {
    let set = RowSet {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        types: vec!["text".to_string(); columns.len()],
        values: rows,
    };
    let described: Vec<(String, PgType)> = set
        .columns
        .iter()
        .map(|c| (c.clone(), PgType::Text))
        .collect();
    match encode_rows(&set, &described, &Format::UnifiedText) {
        Ok(response) => Response::Query(response),
        Err(error) => Response::Error(error),
    }
}

/// The statement's first word, upper-cased.
fn leading_verb(sql: &str) -> String {
    sql.split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// The command tag PostgreSQL sends for `sql` after `rows` rows were affected or returned.
pub fn command_tag(sql: &str, rows: usize) -> Tag {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(4)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let verb = leading_verb(sql);
    let first = verb.as_str();
    match first {
        "INSERT" | "REPLACE" => Tag::new("INSERT").with_oid(0).with_rows(rows),
        "UPDATE" | "DELETE" => Tag::new(first).with_rows(rows),
        "SELECT" | "VALUES" | "WITH" | "PRAGMA" | "EXPLAIN" => Tag::new("SELECT").with_rows(rows),
        "CREATE" | "DROP" | "ALTER" => {
            // CREATE [UNIQUE|TEMP|TEMPORARY|VIRTUAL] TABLE|INDEX|VIEW|TRIGGER …
            let object = words[1..]
                .iter()
                .find(|w| !matches!(w.as_str(), "UNIQUE" | "TEMP" | "TEMPORARY" | "VIRTUAL"))
                .map(String::as_str)
                .unwrap_or("");
            Tag::new(format!("{first} {object}").trim())
        }
        "" => Tag::new("EMPTY"),
        other => Tag::new(other),
    }
}

/// Result rows as a QueryResponse, each value in its column's described type and format.
pub fn encode_rows(
    set: &RowSet,
    described: &[(String, PgType)],
    format: &Format,
) -> Result<QueryResponse, Box<ErrorInfo>> {
    if described.len() != set.columns.len() {
        return Err(error_info(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!(
                "the statement returned {} columns where it was described with {}; \
                 prepare it again (did the schema change?)",
                set.columns.len(),
                described.len()
            ),
        ));
    }
    let mut fields = Vec::with_capacity(described.len());
    for (index, (name, pg_type)) in described.iter().enumerate() {
        let field_format = column_format(format, index)?;
        fields.push(
            FieldInfo::new(name.clone(), None, None, wire_type(*pg_type), field_format)
                .with_type_modifier(pg_type.type_modifier()),
        );
    }
    let fields = Arc::new(fields);
    let mut encoder = DataRowEncoder::new(fields.clone());
    let mut rows: Vec<PgWireResult<DataRow>> = Vec::with_capacity(set.values.len());
    for row in &set.values {
        for (index, value) in row.iter().enumerate() {
            let (name, pg_type) = &described[index];
            let encoded = match fields[index].format() {
                // An array's text is written as it is (pgwire would quote it as one element).
                FieldFormat::Text
                    if matches!(
                        pg_type,
                        PgType::TextArray | PgType::NameArray | PgType::BoolArray
                    ) =>
                {
                    encoder.encode_field(
                        &text_format(*pg_type, value).map(|t| RawBytes(t.into_bytes())),
                    )
                }
                FieldFormat::Text => encoder.encode_field(&text_format(*pg_type, value)),
                FieldFormat::Binary => encode_binary(&mut encoder, name, *pg_type, value)?,
            };
            encoded.map_err(|e| error_info(sqlstate::INTERNAL_ERROR, e.to_string()))?;
        }
        rows.push(Ok(encoder.take_row()));
    }
    Ok(QueryResponse::new(fields, stream::iter(rows)))
}

/// Encodes `value` in binary format as `pg_type`, or explains why it cannot be.
fn encode_binary(
    encoder: &mut DataRowEncoder,
    column: &str,
    pg_type: PgType,
    value: &SqlValue,
) -> Result<PgWireResult<()>, Box<ErrorInfo>> {
    Ok(match (pg_type, value) {
        (_, SqlValue::Null) => encoder.encode_field(&None::<i64>),
        (PgType::Int8, SqlValue::Integer(i)) => encoder.encode_field(i),
        (PgType::Int4, SqlValue::Integer(i)) if i32::try_from(*i).is_ok() => {
            encoder.encode_field(&(*i as i32))
        }
        (PgType::Int2, SqlValue::Integer(i)) if i16::try_from(*i).is_ok() => {
            encoder.encode_field(&(*i as i16))
        }
        (PgType::Bool, SqlValue::Integer(i)) => encoder.encode_field(&(*i != 0)),
        (PgType::Float8, SqlValue::Real(f)) => encoder.encode_field(f),
        (PgType::Float8, SqlValue::Integer(i)) => encoder.encode_field(&(*i as f64)),
        (PgType::Bytea, SqlValue::Blob(b)) => encoder.encode_field(b),
        (PgType::Text | PgType::Varchar(_), value) => {
            encoder.encode_field(&text_format(PgType::Text, value))
        }
        (pg_type, value) if binary_form(pg_type, value).is_some() => {
            encoder.encode_field(&binary_form(pg_type, value).map(RawBytes))
        }
        (pg_type, value) => {
            return Err(error_info(
                sqlstate::DATATYPE_MISMATCH,
                format!(
                    "column \"{column}\" holds a {} value that cannot be sent as {} in binary \
                     format (SQLite columns may hold any type); cast it in the query",
                    value.type_name(),
                    wire_type(pg_type).name()
                ),
            ));
        }
    })
}

/// The format asked for result column `index`; a format list of the wrong length is an error,
/// not a panic.
pub fn column_format(format: &Format, index: usize) -> Result<FieldFormat, Box<ErrorInfo>> {
    match format {
        Format::Individual(formats) if index >= formats.len() => Err(error_info(
            sqlstate::PROTOCOL_VIOLATION,
            format!(
                "{} result formats were given for a statement with more columns",
                formats.len()
            ),
        )),
        _ => Ok(format.format_for(index)),
    }
}

pub fn wire_type(pg_type: PgType) -> Type {
    match pg_type {
        PgType::Bool => Type::BOOL,
        PgType::Int2 => Type::INT2,
        PgType::Int4 => Type::INT4,
        PgType::Int8 => Type::INT8,
        PgType::Float8 => Type::FLOAT8,
        PgType::Text => Type::TEXT,
        PgType::Varchar(_) => Type::VARCHAR,
        PgType::Bytea => Type::BYTEA,
        PgType::Numeric(_) => Type::NUMERIC,
        PgType::Date => Type::DATE,
        PgType::Time => Type::TIME,
        PgType::Timestamp => Type::TIMESTAMP,
        PgType::TimestampTz => Type::TIMESTAMPTZ,
        PgType::Uuid => Type::UUID,
        PgType::Json => Type::JSON,
        PgType::Jsonb => Type::JSONB,
        PgType::Interval => Type::INTERVAL,
        PgType::TextArray => Type::TEXT_ARRAY,
        PgType::NameArray => Type::NAME_ARRAY,
        PgType::BoolArray => Type::BOOL_ARRAY,
    }
}

/// The binary form of `value` as one of PostgreSQL's typed values SQLite stores as text or
/// numbers (numeric, dates and times, uuid, json); `None` when the value is not one.
fn binary_form(pg_type: PgType, value: &SqlValue) -> Option<Vec<u8>> {
    let text = text_format(pg_type, value)?;
    match pg_type {
        PgType::Numeric(_) => numeric::encode(&text),
        PgType::Date => datetime::parse_date(&text)
            .and_then(datetime::date_days)
            .map(|days| days.to_be_bytes().to_vec()),
        PgType::Time => datetime::parse_time(&text)
            .map(|time| datetime::time_micros(time).to_be_bytes().to_vec()),
        PgType::Timestamp => datetime::parse_timestamp(&text)
            .and_then(datetime::timestamp_micros)
            .map(|micros| micros.to_be_bytes().to_vec()),
        PgType::TimestampTz => datetime::parse_timestamptz(&text)
            .and_then(|zoned| datetime::timestamp_micros(zoned.naive_utc()))
            .map(|micros| micros.to_be_bytes().to_vec()),
        PgType::Uuid => uuid::Uuid::parse_str(&text)
            .ok()
            .map(|u| u.as_bytes().to_vec()),
        PgType::Interval => crate::pgwire::interval::Interval::parse(&text)
            .ok()
            .map(|interval| interval.to_binary().to_vec()),
        PgType::Json => Some(text.into_bytes()),
        // jsonb's binary form: a version byte, then the text.
        PgType::Jsonb => Some([&[1u8][..], text.as_bytes()].concat()),
        _ => None,
    }
}

/// Bytes already in a type's binary wire form, written into a data row as they are.
#[derive(Debug)]
struct RawBytes(Vec<u8>);

impl ToSql for RawBytes {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>>
    where
        Self: Sized,
    {
        out.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool
    where
        Self: Sized,
    {
        true
    }

    to_sql_checked!();
}

impl ToSqlText for RawBytes {
    fn to_sql_text(
        &self,
        _: &Type,
        out: &mut BytesMut,
        _: &FormatOptions,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }
}

/// A statement's response inside a transaction block: as outside, except that a successful
/// `ROLLBACK TO` savepoint reports the block healthy again (status 'T' after 'E').
pub fn in_transaction_response(sql: &str, result: StatementResult) -> Response {
    if result.error.is_none() && is_rollback_to_savepoint(sql) {
        return Response::TransactionStart(Tag::new("ROLLBACK"));
    }
    simple_response(sql, result)
}

/// The response to one statement's result in the simple protocol, typing columns by their
/// declarations and values.
pub fn simple_response(sql: &str, result: StatementResult) -> Response {
    if let Some(message) = &result.error {
        return Response::Error(statement_error(message));
    }
    match &result.rows {
        Some(set) => rows_response(sql, set, &described_columns(sql, set), &Format::UnifiedText),
        None => Response::Execution(command_tag(sql, result.rows_affected as usize)),
    }
}

/// The PostgreSQL types of `set`'s columns, the rows of `sql`: the types the statement names
/// (`now()`, `x::date`) when its values fit them, then what expression columns hold by their
/// function (`count(*)` is a bigint, as the extended protocol describes it — the result's
/// types say only what SQLite's values are), then the declarations and values.
pub fn described_columns(sql: &str, set: &RowSet) -> Vec<(String, PgType)> {
    let named = dialect::column_types(sql);
    let expressions = crate::pgwire::infer::expression_declarations(sql, &[], set.columns.len());
    set.columns
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let declared = set.types.get(index).map(String::as_str).unwrap_or("");
            let values = set.values.iter().filter_map(move |row| row.get(index));
            let expression = expressions
                .get(index)
                .cloned()
                .flatten()
                .and_then(|declared| PgType::for_declared(&declared));
            let pg_type = match named.get(index).copied().flatten().or(expression) {
                Some(pg_type) if values.clone().all(|v| pg_type.carries(v)) => pg_type,
                _ => PgType::for_column(declared, values),
            };
            (name.clone(), pg_type)
        })
        .collect()
}

pub fn rows_response(
    sql: &str,
    set: &RowSet,
    described: &[(String, PgType)],
    format: &Format,
) -> Response {
    match encode_rows(set, described, format) {
        Ok(mut response) => {
            // INSERT … RETURNING completes as "INSERT 0 n", not "SELECT n".
            match leading_verb(sql).as_str() {
                "INSERT" | "REPLACE" => response.set_command_tag("INSERT 0"),
                verb @ ("UPDATE" | "DELETE" | "FETCH") => response.set_command_tag(verb),
                _ => {}
            }
            Response::Query(response)
        }
        Err(error) => Response::Error(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_tags_match_postgresql() {
        let tag = |sql: &str, rows| format!("{:?}", command_tag(sql, rows));
        assert!(tag("insert into t values(1)", 1).contains("\"INSERT\""));
        assert!(tag("CREATE UNIQUE INDEX i ON t(x)", 0).contains("\"CREATE INDEX\""));
        assert!(tag("drop table t", 0).contains("\"DROP TABLE\""));
        assert!(tag("UPDATE t SET x = 1", 3).contains("rows: Some(3)"));
    }
}
