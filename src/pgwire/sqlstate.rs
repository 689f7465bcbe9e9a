//! SQLSTATE codes for what goes wrong, and the errors sent to clients with them, so PostgreSQL clients can tell a unique violation from
//! a missing table or an unavailable node. SQLite reports errors as text with stable prefixes;
//! these are matched here.

use pgwire::error::{ErrorInfo, PgWireError};

use crate::pgwire::session::SessionError;
use crate::service::request::ServiceError;

pub const SYNTAX_ERROR: &str = "42601";
pub const UNDEFINED_TABLE: &str = "42P01";
pub const UNDEFINED_COLUMN: &str = "42703";
pub const UNDEFINED_FUNCTION: &str = "42883";
pub const DUPLICATE_TABLE: &str = "42P07";
pub const DATATYPE_MISMATCH: &str = "42804";
pub const UNIQUE_VIOLATION: &str = "23505";
pub const FOREIGN_KEY_VIOLATION: &str = "23503";
pub const NOT_NULL_VIOLATION: &str = "23502";
pub const CHECK_VIOLATION: &str = "23514";
pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
pub const INVALID_PARAMETER_VALUE: &str = "22023";
pub const PROTOCOL_VIOLATION: &str = "08P01";
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
pub const CANNOT_CONNECT_NOW: &str = "57P03";
pub const QUERY_CANCELED: &str = "57014";
pub const TRANSACTION_RESOLUTION_UNKNOWN: &str = "08007";
pub const IN_FAILED_TRANSACTION: &str = "25P02";
pub const ACTIVE_SQL_TRANSACTION: &str = "25001";
pub const NO_ACTIVE_SQL_TRANSACTION: &str = "25P01";
pub const SERIALIZATION_FAILURE: &str = "40001";
pub const UNDEFINED_OBJECT: &str = "42704";
pub const INVALID_TABLE_DEFINITION: &str = "42P16";
pub const DUPLICATE_COLUMN: &str = "42701";
pub const CANT_CHANGE_RUNTIME_PARAM: &str = "55P02";
pub const SQL_ERROR: &str = "42000";
pub const INTERNAL_ERROR: &str = "XX000";
pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "25P03";
pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
pub const INVALID_PASSWORD: &str = "28P01";
pub const INVALID_AUTHORIZATION: &str = "28000";
pub const INVALID_CATALOG_NAME: &str = "3D000";
pub const DUPLICATE_DATABASE: &str = "42P04";
pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
pub const SEQUENCE_GENERATOR_LIMIT_EXCEEDED: &str = "2200H";
pub const INVALID_CURSOR_NAME: &str = "34000";
pub const DUPLICATE_CURSOR: &str = "42P03";
pub const INVALID_CURSOR_DEFINITION: &str = "42P11";

/// The SQLSTATE for an error SQLite reported while running a statement.
pub fn for_statement_error(message: &str) -> &'static str {
    let rules: &[(&str, &str)] = &[
        (
            crate::raft::types::SERIALIZATION_FAILURE,
            SERIALIZATION_FAILURE,
        ),
        ("UNIQUE constraint failed", UNIQUE_VIOLATION),
        ("PRIMARY KEY must be unique", UNIQUE_VIOLATION),
        ("FOREIGN KEY constraint failed", FOREIGN_KEY_VIOLATION),
        ("NOT NULL constraint failed", NOT_NULL_VIOLATION),
        ("CHECK constraint failed", CHECK_VIOLATION),
        ("no such table", UNDEFINED_TABLE),
        ("no such column", UNDEFINED_COLUMN),
        ("no such function", UNDEFINED_FUNCTION),
        ("already exists", DUPLICATE_TABLE),
        ("syntax error", SYNTAX_ERROR),
        ("incomplete input", SYNTAX_ERROR),
        ("unrecognized token", SYNTAX_ERROR),
        ("datatype mismatch", DATATYPE_MISMATCH),
        ("integer overflow", NUMERIC_VALUE_OUT_OF_RANGE),
        ("parameter", INVALID_PARAMETER_VALUE),
    ];
    rules
        .iter()
        .find(|(needle, _)| message.contains(needle))
        .map_or(SQL_ERROR, |(_, code)| code)
}

/// The SQLSTATE for a request the service could not answer.
pub fn for_service_error(error: &ServiceError) -> &'static str {
    match error {
        ServiceError::BadRequest(message)
            if message.starts_with("database ") && message.ends_with("already exists") =>
        {
            DUPLICATE_DATABASE
        }
        ServiceError::BadRequest(message) => for_statement_error(message),
        ServiceError::UnknownDatabase(_) => INVALID_CATALOG_NAME,
        ServiceError::NotLeader { .. }
        | ServiceError::NoLeader
        | ServiceError::StaleRead(_)
        | ServiceError::Unavailable(_) => CANNOT_CONNECT_NOW,
        ServiceError::OutcomeUnknown(_) => TRANSACTION_RESOLUTION_UNKNOWN,
        ServiceError::Timeout(_) => QUERY_CANCELED,
        ServiceError::Internal(_) => INTERNAL_ERROR,
    }
}

/// An error for the client (boxed: `ErrorInfo` is large, and pgwire wants it boxed).
pub fn error_info(code: &str, message: impl Into<String>) -> Box<ErrorInfo> {
    Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message.into(),
    ))
}

pub fn session_error(error: &SessionError) -> Box<ErrorInfo> {
    error_info(error.code, error.message.clone())
}

pub fn service_error(error: &ServiceError) -> Box<ErrorInfo> {
    error_info(for_service_error(error), error.to_string())
}

pub fn statement_error(message: &str) -> Box<ErrorInfo> {
    // A value outside an enum type's labels (its column's CHECK: see `dialect::enums`).
    if let Some(invalid) = crate::pgwire::dialect::enums::invalid_enum_value(message) {
        return error_info(INVALID_TEXT_REPRESENTATION, invalid);
    }
    error_info(for_statement_error(message), message)
}

pub fn user_error(info: Box<ErrorInfo>) -> PgWireError {
    PgWireError::UserError(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_messages_map_to_the_codes_clients_check() {
        let cases = [
            ("UNIQUE constraint failed: t.id", UNIQUE_VIOLATION),
            ("FOREIGN KEY constraint failed", FOREIGN_KEY_VIOLATION),
            ("NOT NULL constraint failed: t.x", NOT_NULL_VIOLATION),
            ("no such table: missing", UNDEFINED_TABLE),
            ("no such column: nope", UNDEFINED_COLUMN),
            ("near \"SELEC\": syntax error", SYNTAX_ERROR),
            ("table t already exists", DUPLICATE_TABLE),
            ("something new", SQL_ERROR),
        ];
        for (message, code) in cases {
            assert_eq!(for_statement_error(message), code, "{message}");
        }
    }

    #[test]
    fn unavailability_is_57p03_and_unknown_outcomes_are_not_failures() {
        assert_eq!(
            for_service_error(&ServiceError::NoLeader),
            CANNOT_CONNECT_NOW
        );
        assert_eq!(
            for_service_error(&ServiceError::OutcomeUnknown("x".into())),
            TRANSACTION_RESOLUTION_UNKNOWN
        );
    }
}
