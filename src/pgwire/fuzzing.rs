//! The PostgreSQL endpoint's text rewrites and parameter decoding, reachable from the fuzz
//! targets (`crate::fuzzing`). Not an API.

use pgwire::api::Type;

use crate::pgwire::catalog::{is_catalog_query, rewrite as rewrite_catalog_query};
use crate::pgwire::params::decode_parameter;
use crate::pgwire::split::{rewrite_casts, rewrite_parameters, to_sqlite};

/// Every rewrite a statement may go through on its way to SQLite.
pub fn rewrite(statement: &str) {
    let _ = crate::pgwire::dialect::translate(statement);
    let _ = to_sqlite(statement);
    let _ = rewrite_parameters(statement);
    let _ = rewrite_casts(statement);
    if is_catalog_query(statement) {
        let _ = rewrite_catalog_query(statement);
    }
}

/// A password message as the login handler takes it: checked by Shoal, then coerced by
/// pgwire into a SASL initial response only when the check passed.
pub fn password_message(body: bytes::BytesMut) {
    use pgwire::messages::startup::PasswordMessageFamily;
    if crate::pgwire::login::is_sasl_initial_response(&body) {
        let _ = PasswordMessageFamily::Raw(body.clone()).into_sasl_initial_response();
    }
    let _ = PasswordMessageFamily::Raw(body).into_sasl_response();
}

/// Types whose parameter values the endpoint decodes.
const TYPES: [Type; 12] = [
    Type::BOOL,
    Type::INT2,
    Type::INT4,
    Type::INT8,
    Type::FLOAT4,
    Type::FLOAT8,
    Type::NUMERIC,
    Type::TEXT,
    Type::VARCHAR,
    Type::BYTEA,
    Type::TIMESTAMP,
    Type::UNKNOWN,
];

/// Decodes `bytes` as a parameter of the type `selector` picks, in text and binary format.
pub fn decode_parameters(bytes: &[u8], selector: u8) {
    let pg_type = &TYPES[usize::from(selector) % TYPES.len()];
    let _ = decode_parameter(Some(bytes), pg_type, false);
    let _ = decode_parameter(Some(bytes), pg_type, true);
}
