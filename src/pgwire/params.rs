//! Decoding the parameters of a Bind message into SQLite values, in text or binary format,
//! by the type the client gave (or text when it gave none).

use pgwire::api::Type;

use crate::types::value::SqlValue;

/// The value of one parameter (`None` bytes: SQL NULL).
pub fn decode_parameter(
    bytes: Option<&[u8]>,
    pg_type: &Type,
    binary: bool,
) -> Result<SqlValue, String> {
    let Some(bytes) = bytes else {
        return Ok(SqlValue::Null);
    };
    if binary {
        decode_binary(bytes, pg_type)
    } else {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| format!("a {} parameter is not valid UTF-8", pg_type.name()))?;
        decode_text(text, pg_type)
    }
}

fn decode_text(text: &str, pg_type: &Type) -> Result<SqlValue, String> {
    let invalid = || {
        format!(
            "invalid input syntax for type {}: \"{}\"",
            pg_type.name(),
            text.chars().take(64).collect::<String>()
        )
    };
    Ok(match *pg_type {
        Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => {
            SqlValue::Integer(text.trim().parse().map_err(|_| invalid())?)
        }
        Type::FLOAT4 | Type::FLOAT8 => SqlValue::Real(parse_float(text).ok_or_else(invalid)?),
        Type::NUMERIC => match text.trim().parse::<i64>() {
            Ok(integer) => SqlValue::Integer(integer),
            Err(_) => SqlValue::Real(parse_float(text).ok_or_else(invalid)?),
        },
        Type::BOOL => SqlValue::Integer(parse_bool(text).ok_or_else(invalid)? as i64),
        Type::BYTEA => SqlValue::Blob(parse_bytea(text).ok_or_else(invalid)?),
        _ => SqlValue::Text(text.to_string()),
    })
}

fn decode_binary(bytes: &[u8], pg_type: &Type) -> Result<SqlValue, String> {
    let wrong_size = || {
        format!(
            "a binary {} parameter of {} bytes has the wrong size",
            pg_type.name(),
            bytes.len()
        )
    };
    let array = |n: usize| -> Result<&[u8], String> {
        if bytes.len() == n {
            Ok(bytes)
        } else {
            Err(wrong_size())
        }
    };
    Ok(match *pg_type {
        Type::INT2 => SqlValue::Integer(i16::from_be_bytes(fixed(array(2)?)) as i64),
        Type::INT4 => SqlValue::Integer(i32::from_be_bytes(fixed(array(4)?)) as i64),
        Type::OID => SqlValue::Integer(u32::from_be_bytes(fixed(array(4)?)) as i64),
        Type::INT8 => SqlValue::Integer(i64::from_be_bytes(fixed(array(8)?))),
        Type::FLOAT4 => SqlValue::Real(f32::from_be_bytes(fixed(array(4)?)) as f64),
        Type::FLOAT8 => SqlValue::Real(f64::from_be_bytes(fixed(array(8)?))),
        Type::BOOL => SqlValue::Integer((array(1)?[0] != 0) as i64),
        Type::BYTEA => SqlValue::Blob(bytes.to_vec()),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON => {
            SqlValue::Text(
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| format!("a {} parameter is not valid UTF-8", pg_type.name()))?,
            )
        }
        _ => {
            return Err(format!(
                "binary parameters of type {} are not supported; send them in text format",
                pg_type.name()
            ));
        }
    })
}

fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

fn parse_float(text: &str) -> Option<f64> {
    match text.trim().to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "infinity" | "+infinity" | "inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// PostgreSQL's boolean input: t/true/yes/on/1 and their opposites, any case.
fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// bytea input in hex format (`\x00ff`); anything else is taken as the bytes themselves.
fn parse_bytea(text: &str) -> Option<Vec<u8>> {
    let Some(hex) = text.strip_prefix("\\x") else {
        return Some(text.as_bytes().to_vec());
    };
    hex::decode(hex).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_parameters_follow_their_declared_type() {
        let text = |s: &str, t: &Type| decode_parameter(Some(s.as_bytes()), t, false);
        assert_eq!(text("42", &Type::INT8), Ok(SqlValue::Integer(42)));
        assert_eq!(text("2.5", &Type::FLOAT8), Ok(SqlValue::Real(2.5)));
        assert_eq!(text("true", &Type::BOOL), Ok(SqlValue::Integer(1)));
        assert_eq!(
            text("\\x00ff", &Type::BYTEA),
            Ok(SqlValue::Blob(vec![0, 255]))
        );
        assert_eq!(
            text("it''s", &Type::TEXT),
            Ok(SqlValue::Text("it''s".into()))
        );
        assert_eq!(text("7", &Type::NUMERIC), Ok(SqlValue::Integer(7)));
        let error = text("seven", &Type::INT4).unwrap_err();
        assert!(error.contains("int4") && error.contains("seven"), "{error}");
        assert_eq!(
            decode_parameter(None, &Type::INT8, false),
            Ok(SqlValue::Null)
        );
    }

    #[test]
    fn binary_parameters_are_checked_for_size() {
        let binary = |b: &[u8], t: &Type| decode_parameter(Some(b), t, true);
        assert_eq!(
            binary(&7i64.to_be_bytes(), &Type::INT8),
            Ok(SqlValue::Integer(7))
        );
        assert_eq!(
            binary(&(-2i32).to_be_bytes(), &Type::INT4),
            Ok(SqlValue::Integer(-2))
        );
        assert_eq!(
            binary(&1.5f64.to_be_bytes(), &Type::FLOAT8),
            Ok(SqlValue::Real(1.5))
        );
        assert!(
            binary(&[1, 2, 3], &Type::INT8)
                .unwrap_err()
                .contains("wrong size")
        );
        assert!(
            binary(&[0; 8], &Type::TIMESTAMP)
                .unwrap_err()
                .contains("text format")
        );
    }
}
