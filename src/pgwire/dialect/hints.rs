//! The PostgreSQL types of a query's result columns where the statement itself says them and
//! SQLite cannot (its expression columns have no declared type): `now()` is a timestamptz,
//! `x::date` a date, `gen_random_uuid()` a uuid. Read from the statement as the client wrote
//! it, before rewriting.

use sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Query,
    Select, SelectItem, SetExpr, Statement, TableFactor, UnaryOperator,
};

use crate::pgwire::types::PgType;

/// One entry per leading result column the statement types (`None`: leave it to the
/// declared types and values); empty when it types none. Stops at a `*`, which expands to
/// columns only the schema knows.
pub fn result_types(statement: &Statement) -> Vec<Option<PgType>> {
    let Statement::Query(query) = statement else {
        return Vec::new();
    };
    let mut types = query_types(query, 0);
    if types.iter().all(Option::is_none) {
        types.clear();
    }
    types
}

/// Derived tables nested deeper than this are not looked into.
const DEPTH_MAX: usize = 8;

fn query_types(query: &Query, depth: usize) -> Vec<Option<PgType>> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Vec::new();
    };
    let mut types = Vec::new();
    for item in &select.projection {
        let expr = match item {
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr,
            _ => break,
        };
        types.push(type_of(expr, select, depth));
    }
    types
}

fn type_of(expr: &Expr, select: &Select, depth: usize) -> Option<PgType> {
    match expr {
        Expr::Nested(inner) => type_of(inner, select, depth),
        // `alias.column` of a derived table: the type its subquery gives the column.
        Expr::CompoundIdentifier(parts) if parts.len() == 2 && depth < DEPTH_MAX => {
            derived_column_type(select, &parts[0], &parts[1], depth + 1)
        }
        Expr::BinaryOp {
            op:
                BinaryOperator::Eq
                | BinaryOperator::NotEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Gt
                | BinaryOperator::GtEq
                | BinaryOperator::And
                | BinaryOperator::Or,
            ..
        } => Some(PgType::Bool),
        Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNotFalse(_)
        | Expr::IsDistinctFrom(..)
        | Expr::IsNotDistinctFrom(..)
        | Expr::In { .. }
        | Expr::Between { .. }
        | Expr::Like { .. }
        | Expr::ILike { .. }
        | Expr::Exists { .. } => Some(PgType::Bool),
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            ..
        } => Some(PgType::Bool),
        Expr::Cast { data_type, .. } => PgType::for_declared(&data_type.to_string()),
        Expr::TypedString(typed) => PgType::for_declared(&typed.data_type.to_string()),
        Expr::Interval(_) => Some(PgType::Interval),
        // A time plus or minus an interval is a time of the same kind (a date's is a
        // timestamp).
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Plus | BinaryOperator::Minus,
            right,
        } => {
            let (left, right) = (type_of(left, select, depth), type_of(right, select, depth));
            match (left, right) {
                (Some(PgType::Interval), Some(time)) | (Some(time), Some(PgType::Interval)) => {
                    match time {
                        PgType::Date | PgType::Timestamp => Some(PgType::Timestamp),
                        PgType::TimestampTz => Some(PgType::TimestampTz),
                        _ => None,
                    }
                }
                _ => None,
            }
        }
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
                "date_trunc" => match &function.args {
                    FunctionArguments::List(list) => match list.args.get(1) {
                        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(operand))) => {
                            type_of(operand, select, depth)
                        }
                        _ => None,
                    },
                    _ => None,
                },
                "gen_random_uuid" | "uuid_generate_v4" => Some(PgType::Uuid),
                "nextval" | "currval" | "setval" | "lastval" => Some(PgType::Int8),
                "array" if matches!(function.args, FunctionArguments::Subquery(_)) => {
                    Some(PgType::TextArray)
                }
                "array_agg" if first_argument(function).is_some_and(is_name_column) => {
                    Some(PgType::NameArray)
                }
                "array_agg" => match first_argument(function)
                    .and_then(|argument| type_of(argument, select, depth))
                {
                    Some(PgType::Bool) => Some(PgType::BoolArray),
                    _ => Some(PgType::TextArray),
                },
                _ => None,
            }
        }
        _ => None,
    }
}

/// Catalog columns of PostgreSQL's `name` type: an array of them is `name[]`.
const NAME_COLUMNS: &[&str] = &[
    "attname",
    "relname",
    "conname",
    "nspname",
    "typname",
    "proname",
    "rolname",
    "datname",
    "collname",
    "amname",
    "tgname",
    "evtname",
    "enumlabel",
];

/// Whether `expr` is a catalog column of type `name` (`a.attname`).
fn is_name_column(expr: &Expr) -> bool {
    let column = match expr {
        Expr::Identifier(ident) => ident,
        Expr::CompoundIdentifier(parts) => match parts.last() {
            Some(last) => last,
            None => return false,
        },
        _ => return false,
    };
    NAME_COLUMNS
        .iter()
        .any(|name| column.value.eq_ignore_ascii_case(name))
}

/// The type of column `column` of the derived table `alias` in `select`'s FROM.
fn derived_column_type(
    select: &Select,
    alias: &Ident,
    column: &Ident,
    depth: usize,
) -> Option<PgType> {
    let factors = select.from.iter().flat_map(|from| {
        std::iter::once(&from.relation).chain(from.joins.iter().map(|join| &join.relation))
    });
    for factor in factors {
        let TableFactor::Derived {
            subquery,
            alias: Some(derived),
            ..
        } = factor
        else {
            continue;
        };
        if !derived.name.value.eq_ignore_ascii_case(&alias.value) {
            continue;
        }
        let SetExpr::Select(inner) = subquery.body.as_ref() else {
            return None;
        };
        let position = inner.projection.iter().position(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => {
                alias.value.eq_ignore_ascii_case(&column.value)
            }
            SelectItem::UnnamedExpr(Expr::Identifier(name)) => {
                name.value.eq_ignore_ascii_case(&column.value)
            }
            _ => false,
        })?;
        return query_types(subquery, depth)
            .get(position)
            .copied()
            .flatten();
    }
    None
}

/// A call's first argument, when it is a plain expression.
fn first_argument(function: &Function) -> Option<&Expr> {
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    match list.args.first() {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(expr))) => Some(expr),
        _ => None,
    }
}
