//! Evaluates the sequence functions a statement calls (`dialect::sequences`) before the
//! statement runs, and puts their values in its text. `nextval` and `setval` are writes of their
//! own, committed at once and never rolled back, as in PostgreSQL (a value taken in a
//! transaction that then rolls back is not given again); `currval` and `lastval` read what
//! `nextval` gave this session.

use pgwire::error::ErrorInfo;

use crate::db::dump::quote_identifier;
use crate::pgwire::dialect::sequences::{SequenceCall, placeholder, sequence_table};
use crate::pgwire::session::Session;
use crate::pgwire::sqlstate::{self, error_info};
use crate::raft::types::StatementResult;
use crate::types::value::SqlValue;

/// Runs one write of a sequence's table for a session (outside any transaction block).
pub trait SequenceWrites {
    fn write(
        &self,
        session: &Session,
        sql: String,
    ) -> impl Future<Output = Result<StatementResult, Box<ErrorInfo>>> + Send;
}

/// `sql` with each sequence call's placeholder replaced by its value, the calls evaluated in
/// order (left to right, as PostgreSQL does).
pub async fn with_values(
    writes: &impl SequenceWrites,
    session: &Session,
    sql: &str,
    calls: &[SequenceCall],
) -> Result<String, Box<ErrorInfo>> {
    let mut text = sql.to_string();
    for (index, call) in calls.iter().enumerate() {
        let value = match call {
            SequenceCall::Next(sequence) => next_value(writes, session, sequence).await?,
            SequenceCall::Current(sequence) => {
                session.sequence_value(Some(sequence)).ok_or_else(|| {
                    error_info(
                        sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                        format!(
                            "currval of sequence \"{sequence}\" is not yet defined in this session"
                        ),
                    )
                })?
            }
            SequenceCall::Last => session.sequence_value(None).ok_or_else(|| {
                error_info(
                    sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    "lastval is not yet defined in this session",
                )
            })?,
            SequenceCall::Set {
                sequence,
                value,
                is_called,
            } => set_value(writes, session, sequence, *value, *is_called).await?,
        };
        text = text.replacen(&placeholder(index), &format!("({value})"), 1);
    }
    Ok(text)
}

/// What a statement runs in place of its sequence calls when only its shape is wanted
/// (Describe): any integer.
pub fn with_shape_values(sql: &str, calls: usize) -> String {
    (0..calls).fold(sql.to_string(), |text, index| {
        text.replacen(&placeholder(index), "(0)", 1)
    })
}

async fn next_value(
    writes: &impl SequenceWrites,
    session: &Session,
    sequence: &str,
) -> Result<i64, Box<ErrorInfo>> {
    // Past the bound: the first value again with CYCLE, else NULL, which the NOT NULL
    // constraint refuses (and nothing changes).
    let sql = format!(
        "UPDATE {} SET last_value = CASE \
           WHEN is_called = 0 THEN last_value \
           WHEN increment_by > 0 AND last_value > max_value - increment_by \
             THEN CASE WHEN cycle THEN min_value END \
           WHEN increment_by < 0 AND last_value < min_value - increment_by \
             THEN CASE WHEN cycle THEN max_value END \
           ELSE last_value + increment_by END, is_called = 1 \
         RETURNING last_value, increment_by",
        quote_identifier(&sequence_table(sequence))
    );
    let result = writes.write(session, sql).await?;
    if let Some(message) = &result.error {
        return Err(if message.contains("NOT NULL constraint failed") {
            error_info(
                sqlstate::SEQUENCE_GENERATOR_LIMIT_EXCEEDED,
                format!("nextval: reached the last value of sequence \"{sequence}\""),
            )
        } else {
            sequence_error(sequence, message)
        });
    }
    let value = returned_value(result).ok_or_else(|| missing(sequence))?;
    session.took_sequence_value(sequence, value);
    Ok(value)
}

async fn set_value(
    writes: &impl SequenceWrites,
    session: &Session,
    sequence: &str,
    value: i64,
    is_called: bool,
) -> Result<i64, Box<ErrorInfo>> {
    let sql = format!(
        "UPDATE {} SET last_value = {value}, is_called = {} RETURNING last_value",
        quote_identifier(&sequence_table(sequence)),
        i64::from(is_called)
    );
    let result = writes.write(session, sql).await?;
    match &result.error {
        // A SERIAL column's sequence (`<table>_<column>_seq`, which Rails and Django reset
        // to the table's largest id) is SQLite's rowid: it already continues after the
        // largest id, and there is nothing to set.
        Some(message) if message.contains("no such table") && sequence.ends_with("_seq") => {
            Ok(value)
        }
        Some(message) if message.contains("CHECK constraint failed") => Err(error_info(
            sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
            format!("setval: value {value} is out of bounds for sequence \"{sequence}\""),
        )),
        Some(message) => Err(sequence_error(sequence, message)),
        None => returned_value(result).ok_or_else(|| missing(sequence)),
    }
}

fn returned_value(result: StatementResult) -> Option<i64> {
    match result.rows?.values.into_iter().next()?.into_iter().next()? {
        SqlValue::Integer(value) => Some(value),
        _ => None,
    }
}

fn sequence_error(sequence: &str, message: &str) -> Box<ErrorInfo> {
    if message.contains("no such table") {
        missing(sequence)
    } else {
        crate::pgwire::sqlstate::statement_error(message)
    }
}

fn missing(sequence: &str) -> Box<ErrorInfo> {
    error_info(
        sqlstate::UNDEFINED_TABLE,
        format!("relation \"{sequence}\" does not exist"),
    )
}

/// A SQLite error about a sequence's table (from CREATE or DROP SEQUENCE) as PostgreSQL words
/// it about the sequence; `None` for other errors.
pub fn sequence_table_error(message: &str) -> Option<Box<ErrorInfo>> {
    let prefix = crate::pgwire::dialect::sequences::SEQUENCE_TABLE_PREFIX;
    let named = |rest: &str| -> Option<String> {
        let start = rest.find(prefix)? + prefix.len();
        let name: String = rest[start..]
            .chars()
            .take_while(|c| *c != '"' && !c.is_whitespace())
            .collect();
        (!name.is_empty()).then_some(name)
    };
    if message.starts_with("no such table") {
        let sequence = named(message)?;
        return Some(error_info(
            sqlstate::UNDEFINED_TABLE,
            format!("sequence \"{sequence}\" does not exist"),
        ));
    }
    if message.contains("already exists") {
        let sequence = named(message.split(" already exists").next()?)?;
        return Some(error_info(
            sqlstate::DUPLICATE_TABLE,
            format!("relation \"{sequence}\" already exists"),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_about_a_sequence_table_name_the_sequence() {
        let error = sequence_table_error("no such table: shoal_sequence_orders").unwrap();
        assert_eq!(error.code, "42P01");
        assert_eq!(error.message, "sequence \"orders\" does not exist");
        let error = sequence_table_error(
            "table \"shoal_sequence_s\" already exists in CREATE TABLE \"shoal_sequence_s\" (…)",
        )
        .unwrap();
        assert_eq!(error.code, "42P07");
        assert_eq!(error.message, "relation \"s\" already exists");
        assert!(sequence_table_error("no such table: orders").is_none());
    }

    #[test]
    fn placeholders_take_values_in_order() {
        let sql = format!(
            "INSERT INTO t VALUES ({}, {})",
            placeholder(0),
            placeholder(1)
        );
        assert_eq!(
            with_shape_values(&sql, 2),
            "INSERT INTO t VALUES ((0), (0))"
        );
    }
}
