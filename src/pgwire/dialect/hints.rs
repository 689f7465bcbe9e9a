//! The PostgreSQL types of a query's result columns where the statement itself says them and
//! SQLite cannot (its expression columns have no declared type): `now()` is a timestamptz,
//! `x::date` a date, `gen_random_uuid()` a uuid. Read from the statement as the client wrote
//! it, before rewriting.

use sqlparser::ast::{Expr, SelectItem, SetExpr, Statement};

use crate::pgwire::types::PgType;

/// One entry per leading result column the statement types (`None`: leave it to the
/// declared types and values); empty when it types none. Stops at a `*`, which expands to
/// columns only the schema knows.
pub fn result_types(statement: &Statement) -> Vec<Option<PgType>> {
    let Statement::Query(query) = statement else {
        return Vec::new();
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Vec::new();
    };
    let mut types = Vec::new();
    for item in &select.projection {
        let expr = match item {
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr,
            _ => break,
        };
        types.push(type_of(expr));
    }
    if types.iter().all(Option::is_none) {
        types.clear();
    }
    types
}

fn type_of(expr: &Expr) -> Option<PgType> {
    match expr {
        Expr::Nested(inner) => type_of(inner),
        Expr::Cast { data_type, .. } => PgType::for_declared(&data_type.to_string()),
        Expr::Function(function) => {
            let name = function.name.to_string().to_ascii_lowercase();
            match name.strip_prefix("pg_catalog.").unwrap_or(&name) {
                "now"
                | "transaction_timestamp"
                | "statement_timestamp"
                | "clock_timestamp"
                | "current_timestamp" => Some(PgType::TimestampTz),
                "localtimestamp" => Some(PgType::Timestamp),
                "current_date" => Some(PgType::Date),
                "gen_random_uuid" | "uuid_generate_v4" => Some(PgType::Uuid),
                _ => None,
            }
        }
        _ => None,
    }
}
