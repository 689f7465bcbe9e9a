//! Rendering service responses as rqlite's JSON, and service errors as HTTP statuses: the one
//! mapping of error kinds to HTTP status codes.

use axum::http::StatusCode;
use base64::Engine;
use serde_json::{Map, Value, json};

use crate::http::typed_values::present_typed;
use crate::raft::types::StatementResult;
use crate::service::{ServiceError, ServiceResponse};
use crate::types::value::SqlValue;

/// How to shape results.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    pub timings: bool,
    pub associative: bool,
    pub blob_array: bool,
    pub raft_index: bool,
}

/// The JSON body of a successful `/db/*` response.
pub fn render_response(
    response: &ServiceResponse,
    options: RenderOptions,
    elapsed_s: f64,
) -> Value {
    let results: Vec<Value> = response
        .results
        .iter()
        .map(|r| render_result(r, options))
        .collect();
    let mut body = Map::new();
    body.insert("results".into(), Value::Array(results));
    if options.timings {
        body.insert("time".into(), json!(elapsed_s));
    }
    if options.raft_index
        && let Some(index) = response.raft_index
    {
        body.insert("raft_index".into(), json!(index));
    }
    if let Some(error) = &response.write_concern_error {
        body.insert(
            "write_concern_error".into(),
            json!({
                "code": "WriteConcernTimeout",
                "message": error.message,
                "committed_index": error.committed_index,
                "applied_on": error.applied_on,
                "required": error.required,
            }),
        );
    }
    Value::Object(body)
}

fn render_result(result: &StatementResult, options: RenderOptions) -> Value {
    let mut out = Map::new();
    if let Some(error) = &result.error {
        out.insert("error".into(), json!(error));
        return Value::Object(out);
    }
    match &result.rows {
        Some(rows) if options.associative => {
            let types: Map<String, Value> = rows
                .columns
                .iter()
                .cloned()
                .zip(rows.types.iter().map(|t| json!(t)))
                .collect();
            let records: Vec<Value> = rows
                .values
                .iter()
                .map(|row| {
                    Value::Object(
                        rows.columns
                            .iter()
                            .cloned()
                            .zip(
                                row.iter()
                                    .zip(&rows.types)
                                    .map(|(v, t)| render_value(v, t, options)),
                            )
                            .collect(),
                    )
                })
                .collect();
            out.insert("types".into(), Value::Object(types));
            out.insert("rows".into(), Value::Array(records));
        }
        Some(rows) => {
            out.insert("columns".into(), json!(rows.columns));
            out.insert("types".into(), json!(rows.types));
            if !rows.values.is_empty() {
                let values: Vec<Value> = rows
                    .values
                    .iter()
                    .map(|row| {
                        Value::Array(
                            row.iter()
                                .zip(&rows.types)
                                .map(|(v, t)| render_value(v, t, options))
                                .collect(),
                        )
                    })
                    .collect();
                out.insert("values".into(), Value::Array(values));
            }
        }
        None => {}
    }
    // Like rqlite, counters are left out when zero: a CREATE TABLE answers `{}`.
    if result.last_insert_id != 0 {
        out.insert("last_insert_id".into(), json!(result.last_insert_id));
    }
    if result.rows_affected != 0 {
        out.insert("rows_affected".into(), json!(result.rows_affected));
    }
    if options.timings {
        out.insert("time".into(), json!(result.time_s));
    }
    Value::Object(out)
}

/// A value as rqlite writes it: BLOBs as base64 text (or byte arrays with `blob_array`),
/// non-finite floats as null, times and booleans by their declared column type.
fn render_value(value: &SqlValue, column_type: &str, options: RenderOptions) -> Value {
    if let Some(typed) = present_typed(value, column_type) {
        return typed;
    }
    match value {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => json!(i),
        SqlValue::Real(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        SqlValue::Text(t) => json!(t),
        SqlValue::Blob(b) if options.blob_array => json!(b),
        SqlValue::Blob(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
    }
}

/// The HTTP status for a service error.
pub fn status_for(error: &ServiceError) -> StatusCode {
    match error {
        ServiceError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ServiceError::NotLeader { .. } => StatusCode::MOVED_PERMANENTLY,
        ServiceError::NoLeader
        | ServiceError::Unavailable(_)
        | ServiceError::StaleRead(_)
        | ServiceError::OutcomeUnknown(_) => StatusCode::SERVICE_UNAVAILABLE,
        ServiceError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        ServiceError::UnknownDatabase(_) => StatusCode::NOT_FOUND,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::RowSet;

    fn rows() -> StatementResult {
        StatementResult {
            rows: Some(RowSet {
                columns: vec!["id".into(), "data".into()],
                types: vec!["integer".into(), "blob".into()],
                values: vec![vec![SqlValue::Integer(1), SqlValue::Blob(vec![1, 2])]],
            }),
            ..Default::default()
        }
    }

    #[test]
    fn query_results_have_columns_types_values() {
        let response = ServiceResponse {
            results: vec![rows()],
            ..Default::default()
        };
        let body = render_response(&response, RenderOptions::default(), 0.0);
        assert_eq!(
            body,
            json!({"results": [{"columns": ["id", "data"], "types": ["integer", "blob"], "values": [[1, "AQI="]]}]})
        );
    }

    #[test]
    fn associative_results_are_maps() {
        let response = ServiceResponse {
            results: vec![rows()],
            ..Default::default()
        };
        let options = RenderOptions {
            associative: true,
            blob_array: true,
            ..Default::default()
        };
        let body = render_response(&response, options, 0.0);
        assert_eq!(
            body,
            json!({"results": [{"types": {"id": "integer", "data": "blob"}, "rows": [{"id": 1, "data": [1, 2]}]}]})
        );
    }

    #[test]
    fn execute_results_and_errors() {
        let ok = StatementResult {
            rows_affected: 1,
            last_insert_id: 5,
            ..Default::default()
        };
        let failed = StatementResult::failed("no such table: t");
        let response = ServiceResponse {
            results: vec![ok, failed],
            ..Default::default()
        };
        let body = render_response(&response, RenderOptions::default(), 0.0);
        assert_eq!(
            body,
            json!({"results": [{"last_insert_id": 5, "rows_affected": 1}, {"error": "no such table: t"}]})
        );
    }
}
