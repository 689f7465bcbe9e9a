//! Decoding the parameters of a Bind message into SQLite values, in text or binary format,
//! by the type the client gave (or text when it gave none).

use pgwire::api::Type;
use tokio_postgres::types::Kind;

use crate::pgwire::types::stored_timestamptz;
use crate::pgwire::{datetime, numeric};
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
    if let Kind::Array(element) = pg_type.kind() {
        // An array (`= ANY($1)`): JSON text of its elements, which `json_each` reads.
        return if binary {
            array_from_binary(bytes, element)
        } else {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| format!("a {} parameter is not valid UTF-8", pg_type.name()))?;
            array_from_text(text, element)
        };
    }
    if binary {
        decode_binary(bytes, pg_type)
    } else {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| format!("a {} parameter is not valid UTF-8", pg_type.name()))?;
        decode_text(text, pg_type)
    }
}

/// Elements one array parameter may hold.
const ARRAY_ELEMENTS_MAX: usize = 100_000;

/// An array in PostgreSQL's text form (`{1,2,NULL}`, `{"a b",c}`) as JSON text.
fn array_from_text(text: &str, element: &Type) -> Result<SqlValue, String> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .ok_or_else(|| format!("malformed array literal: \"{}\"", shorten(text)))?;
    if inner.trim_start().starts_with('{') {
        return Err("multidimensional array parameters are not supported".into());
    }
    let elements = if inner.trim().is_empty() {
        Vec::new()
    } else {
        crate::pgwire::types::array_elements(inner, ARRAY_ELEMENTS_MAX)
    };
    if elements.len() > ARRAY_ELEMENTS_MAX {
        return Err(format!(
            "an array parameter holds more than {ARRAY_ELEMENTS_MAX} elements"
        ));
    }
    let values = elements
        .into_iter()
        .map(|element_text| match element_text {
            Some(text) => decode_text(&text, element),
            None => Ok(SqlValue::Null),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json_array(&values))
}

/// An array in PostgreSQL's binary form (dimensions, flags, element type, each dimension's
/// size and lower bound, then each element's length and bytes) as JSON text.
fn array_from_binary(bytes: &[u8], element: &Type) -> Result<SqlValue, String> {
    let malformed = || "a malformed binary array parameter".to_string();
    let mut at = 0usize;
    let int = |at: &mut usize| -> Result<i32, String> {
        let word = bytes.get(*at..*at + 4).ok_or_else(malformed)?;
        *at += 4;
        Ok(i32::from_be_bytes([word[0], word[1], word[2], word[3]]))
    };
    let dimensions = int(&mut at)?;
    let _flags = int(&mut at)?;
    let _element_oid = int(&mut at)?;
    if dimensions == 0 {
        return Ok(SqlValue::Text("[]".into()));
    }
    if dimensions != 1 {
        return Err("multidimensional array parameters are not supported".into());
    }
    let length = usize::try_from(int(&mut at)?).map_err(|_| malformed())?;
    let _lower_bound = int(&mut at)?;
    if length > ARRAY_ELEMENTS_MAX {
        return Err(format!(
            "an array parameter holds more than {ARRAY_ELEMENTS_MAX} elements"
        ));
    }
    let mut values = Vec::with_capacity(length);
    for _ in 0..length {
        let size = int(&mut at)?;
        if size < 0 {
            values.push(SqlValue::Null);
            continue;
        }
        let size = usize::try_from(size).map_err(|_| malformed())?;
        let start = at;
        let end = start.checked_add(size).ok_or_else(malformed)?;
        let element_bytes = bytes.get(start..end).ok_or_else(malformed)?;
        at = end;
        values.push(decode_binary(element_bytes, element)?);
    }
    if at != bytes.len() {
        return Err(malformed());
    }
    Ok(json_array(&values))
}

fn json_array(values: &[SqlValue]) -> SqlValue {
    let elements: Vec<serde_json::Value> = values
        .iter()
        .map(|value| match value {
            SqlValue::Null => serde_json::Value::Null,
            SqlValue::Integer(i) => serde_json::Value::from(*i),
            SqlValue::Real(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            SqlValue::Text(text) => serde_json::Value::String(text.clone()),
            SqlValue::Blob(bytes) => {
                serde_json::Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect())
            }
        })
        .collect();
    SqlValue::Text(serde_json::Value::Array(elements).to_string())
}

fn shorten(text: &str) -> String {
    text.chars().take(64).collect()
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
        Type::UUID => SqlValue::Text(
            uuid::Uuid::parse_str(text.trim())
                .map_err(|_| invalid())?
                .hyphenated()
                .to_string(),
        ),
        Type::TIMESTAMPTZ => SqlValue::Text(stored_timestamptz(text)),
        Type::INTERVAL => SqlValue::Text(
            crate::pgwire::interval::Interval::parse(text)
                .map_err(|_| invalid())?
                .format(),
        ),
        Type::TIMESTAMP => SqlValue::Text(
            datetime::parse_timestamp(text)
                .map_or_else(|| text.to_string(), datetime::format_timestamp),
        ),
        _ => SqlValue::Text(text.to_string()),
    })
}

/// A binary date or time value as the text Shoal stores; PostgreSQL's infinities as
/// `infinity`/`-infinity`.
fn decode_binary_temporal(bytes: &[u8], pg_type: &Type) -> Result<Option<String>, String> {
    let out_of_range = || format!("a binary {} parameter is out of range", pg_type.name());
    let eight = || -> Result<i64, String> {
        Ok(i64::from_be_bytes(bytes.try_into().map_err(|_| {
            format!(
                "a binary {} parameter of {} bytes has the wrong size",
                pg_type.name(),
                bytes.len()
            )
        })?))
    };
    Ok(Some(match *pg_type {
        Type::DATE => {
            let days = i32::from_be_bytes(bytes.try_into().map_err(|_| {
                format!(
                    "a binary date parameter of {} bytes has the wrong size",
                    bytes.len()
                )
            })?);
            match days {
                i32::MAX => "infinity".to_string(),
                i32::MIN => "-infinity".to_string(),
                days => datetime::date_from_days(days)
                    .ok_or_else(out_of_range)?
                    .format("%Y-%m-%d")
                    .to_string(),
            }
        }
        Type::TIME => {
            datetime::format_time(datetime::time_from_micros(eight()?).ok_or_else(out_of_range)?)
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let micros = eight()?;
            let text = match micros {
                i64::MAX => return Ok(Some("infinity".to_string())),
                i64::MIN => return Ok(Some("-infinity".to_string())),
                micros => datetime::format_timestamp(
                    datetime::timestamp_from_micros(micros).ok_or_else(out_of_range)?,
                ),
            };
            if *pg_type == Type::TIMESTAMPTZ {
                format!("{text}+00")
            } else {
                text
            }
        }
        _ => return Ok(None),
    }))
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
        Type::DATE | Type::TIME | Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            match decode_binary_temporal(bytes, pg_type)? {
                Some(text) => SqlValue::Text(text),
                None => {
                    return Err(format!(
                        "binary {} parameters are not supported",
                        pg_type.name()
                    ));
                }
            }
        }
        Type::UUID => SqlValue::Text(
            uuid::Uuid::from_slice(bytes)
                .map_err(|_| wrong_size())?
                .hyphenated()
                .to_string(),
        ),
        Type::NUMERIC => decode_text(&numeric::decode(bytes)?, pg_type)?,
        Type::INTERVAL => {
            SqlValue::Text(crate::pgwire::interval::Interval::from_binary(bytes)?.format())
        }
        // jsonb's binary form: version 1, then the text.
        Type::JSONB => match bytes.split_first() {
            Some((1, json)) => SqlValue::Text(
                String::from_utf8(json.to_vec())
                    .map_err(|_| "a jsonb parameter is not valid UTF-8".to_string())?,
            ),
            _ => return Err("a binary jsonb parameter does not start with version 1".into()),
        },
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
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// bytea input in hex format (`\x00ff`); anything else is taken as the bytes themselves.
pub fn parse_bytea(text: &str) -> Option<Vec<u8>> {
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
            binary(&[127, 0, 0, 1], &Type::INET)
                .unwrap_err()
                .contains("text format")
        );
        // Arrays (`= ANY($1)`): JSON text of their elements, text and binary.
        assert_eq!(
            decode_parameter(Some(b"{1,2,NULL}"), &Type::INT4_ARRAY, false),
            Ok(SqlValue::Text("[1,2,null]".into()))
        );
        assert_eq!(
            decode_parameter(Some(br#"{"a b",c}"#), &Type::TEXT_ARRAY, false),
            Ok(SqlValue::Text(r#"["a b","c"]"#.into()))
        );
        // One dimension, no flags, int4, two elements from 1: 7 (four bytes), NULL.
        let mut array = Vec::new();
        for word in [1i32, 0, 23, 2, 1, 4, 7, -1] {
            array.extend(word.to_be_bytes());
        }
        assert_eq!(
            binary(&array, &Type::INT4_ARRAY),
            Ok(SqlValue::Text("[7,null]".into()))
        );
        assert!(binary(&array[..array.len() - 6], &Type::INT4_ARRAY).is_err());
        array.push(0);
        assert!(binary(&array, &Type::INT4_ARRAY).is_err());
        assert!(decode_parameter(Some(b"{{1}}"), &Type::INT4_ARRAY, false).is_err());
        // An interval: microseconds, days, months.
        let mut interval = 7_200_000_000i64.to_be_bytes().to_vec();
        interval.extend(1i32.to_be_bytes());
        interval.extend(14i32.to_be_bytes());
        assert_eq!(
            binary(&interval, &Type::INTERVAL),
            Ok(SqlValue::Text("1 year 2 mons 1 day 02:00:00".into()))
        );
        assert_eq!(
            decode_parameter(Some(b"P1DT2H"), &Type::INTERVAL, false),
            Ok(SqlValue::Text("1 day 02:00:00".into()))
        );
    }

    #[test]
    fn binary_dates_times_uuids_and_numerics_are_stored_as_postgresql_prints_them() {
        let binary = |b: &[u8], t: &Type| decode_parameter(Some(b), t, true);
        let text = |s: &str| Ok(SqlValue::Text(s.into()));
        let day_and_a_second = 86_401_000_000i64.to_be_bytes();
        assert_eq!(
            binary(&day_and_a_second, &Type::TIMESTAMP),
            text("2000-01-02 00:00:01")
        );
        assert_eq!(
            binary(&day_and_a_second, &Type::TIMESTAMPTZ),
            text("2000-01-02 00:00:01+00")
        );
        assert_eq!(
            binary(&(-1i32).to_be_bytes(), &Type::DATE),
            text("1999-12-31")
        );
        assert_eq!(
            binary(&1_500_000i64.to_be_bytes(), &Type::TIME),
            text("00:00:01.5")
        );
        assert_eq!(
            binary(&[0; 8], &Type::TIMESTAMP),
            text("2000-01-01 00:00:00")
        );
        assert_eq!(
            binary(&i64::MAX.to_be_bytes(), &Type::TIMESTAMP),
            text("infinity")
        );
        let id = [
            0x8a, 0xe5, 0x08, 0xf9, 0x92, 0x2e, 0x47, 0xe8, 0x83, 0x6d, 0x39, 0xa3, 0xd9, 0x03,
            0x09, 0x15,
        ];
        assert_eq!(
            binary(&id, &Type::UUID),
            text("8ae508f9-922e-47e8-836d-39a3d9030915")
        );
        assert!(binary(&id[..4], &Type::UUID).is_err());
        let numeric: Vec<u8> = [2i16, 0, 0, 2, 123, 4500]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        assert_eq!(binary(&numeric, &Type::NUMERIC), Ok(SqlValue::Real(123.45)));
        assert_eq!(binary(b"\x01{\"a\": 1}", &Type::JSONB), text("{\"a\": 1}"));
        // Text: a UUID in any accepted spelling is stored hyphenated, a zoned time in UTC.
        let from_text = |s: &str, t: &Type| decode_parameter(Some(s.as_bytes()), t, false);
        assert_eq!(
            from_text("8AE508F9922E47E8836D39A3D9030915", &Type::UUID),
            text("8ae508f9-922e-47e8-836d-39a3d9030915")
        );
        assert!(
            from_text("not-a-uuid", &Type::UUID)
                .unwrap_err()
                .contains("uuid")
        );
        assert_eq!(
            from_text("2024-01-02 03:04:05+01:00", &Type::TIMESTAMPTZ),
            text("2024-01-02 02:04:05+00")
        );
    }
}
