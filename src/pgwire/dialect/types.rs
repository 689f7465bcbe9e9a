//! PostgreSQL type names as SQLite cast targets: the SQLite type whose affinity keeps what the
//! PostgreSQL cast means for a value stored in SQLite.

use sqlparser::ast::{DataType, ExactNumberInfo};

/// The SQLite type a cast to `pg_type` becomes (a boolean is an INTEGER; the caller turns
/// boolean literals such as `'t'` into 1 and 0 first).
///
/// Dates, times, intervals, UUIDs, JSON and enum types are text in Shoal: casting them to a
/// NUMERIC-affinity type name (which `TIMESTAMP` or `JSONB` would be in SQLite) would turn
/// `'2024-01-02'` into 2024. Numbers keep their class; `bytea` is a blob.
pub fn sqlite_cast_type(pg_type: &DataType) -> DataType {
    let name = pg_type.to_string().to_ascii_lowercase();
    let base = name
        .split(['(', '['])
        .next()
        .unwrap_or_default()
        .trim()
        .trim_start_matches("pg_catalog.");
    if name.contains('[') {
        // Arrays are JSON text in Shoal.
        return DataType::Text;
    }
    match base {
        "smallint" | "integer" | "int" | "bigint" | "int2" | "int4" | "int8" | "smallserial"
        | "serial" | "bigserial" | "serial2" | "serial4" | "serial8" | "oid" | "boolean"
        | "bool" => DataType::Integer(None),
        "real" | "float" | "float4" | "float8" | "double precision" | "double" => DataType::Real,
        "numeric" | "decimal" | "dec" => DataType::Numeric(ExactNumberInfo::None),
        "bytea" | "blob" => DataType::Blob(None),
        _ => DataType::Text,
    }
}

/// Whether `pg_type` names PostgreSQL's date.
pub fn is_date(pg_type: &DataType) -> bool {
    matches!(pg_type, DataType::Date) || pg_type.to_string().eq_ignore_ascii_case("date")
}

/// Whether `pg_type` names PostgreSQL's boolean.
pub fn is_boolean(pg_type: &DataType) -> bool {
    matches!(pg_type, DataType::Bool | DataType::Boolean)
        || pg_type.to_string().eq_ignore_ascii_case("bool")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::ast::{CharacterLength, TimezoneInfo};

    #[test]
    fn each_postgresql_type_maps_to_the_class_it_holds() {
        assert_eq!(
            sqlite_cast_type(&DataType::BigInt(None)),
            DataType::Integer(None)
        );
        assert_eq!(
            sqlite_cast_type(&DataType::Varchar(Some(CharacterLength::IntegerLength {
                length: 20,
                unit: None
            }))),
            DataType::Text
        );
        assert_eq!(
            sqlite_cast_type(&DataType::Timestamp(None, TimezoneInfo::WithTimeZone)),
            DataType::Text
        );
        assert_eq!(
            sqlite_cast_type(&DataType::Numeric(ExactNumberInfo::PrecisionAndScale(
                10, 2
            ))),
            DataType::Numeric(ExactNumberInfo::None)
        );
        assert_eq!(sqlite_cast_type(&DataType::Bytea), DataType::Blob(None));
        assert_eq!(sqlite_cast_type(&DataType::Float8), DataType::Real);
        assert_eq!(sqlite_cast_type(&DataType::Uuid), DataType::Text);
        assert_eq!(sqlite_cast_type(&DataType::JSONB), DataType::Text);
    }
}
