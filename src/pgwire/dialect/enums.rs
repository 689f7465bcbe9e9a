//! PostgreSQL enum types. `CREATE TYPE mood AS ENUM ('sad', 'ok')` is kept in the replicated
//! database as a view, `shoal_enum_mood`, whose rows are the labels in order (`label`,
//! `sort_order`): a schema object every replica holds and every backup carries, which the
//! emulated catalog turns back into `pg_type` and `pg_enum` rows. `DROP TYPE mood` drops it.
//! Columns of the type hold its labels as text.

use sqlparser::ast::{ObjectName, ObjectType, Statement, UserDefinedTypeRepresentation};

use super::Unsupported;

/// The name prefix of the views that hold enum types.
pub const ENUM_VIEW_PREFIX: &str = "shoal_enum_";

/// SQLite's statement for a `CREATE TYPE` or `DROP TYPE`; `None` for any other statement.
pub fn type_statement(statement: &Statement) -> Option<Result<String, Unsupported>> {
    match statement {
        Statement::CreateType {
            name,
            representation,
        } => Some(create(name, representation.as_ref())),
        Statement::Drop {
            object_type: ObjectType::Type,
            if_exists,
            names,
            ..
        } => Some(match names.as_slice() {
            [name] => Ok(format!(
                "DROP VIEW {}{}",
                if *if_exists { "IF EXISTS " } else { "" },
                quoted(&view_name(name))
            )),
            _ => Err(Unsupported("DROP TYPE of several types at once".into())),
        }),
        _ => None,
    }
}

fn create(
    name: &ObjectName,
    representation: Option<&UserDefinedTypeRepresentation>,
) -> Result<String, Unsupported> {
    let Some(UserDefinedTypeRepresentation::Enum { labels }) = representation else {
        return Err(Unsupported(
            "CREATE TYPE other than AS ENUM (composite, range and base types)".into(),
        ));
    };
    let rows: Vec<String> = labels
        .iter()
        .enumerate()
        .map(|(i, label)| {
            let literal = format!("'{}'", label.value.replace('\'', "''"));
            match i {
                0 => format!("SELECT {literal} AS label, 1 AS sort_order"),
                _ => format!("SELECT {literal}, {}", i + 1),
            }
        })
        .collect();
    let body = if rows.is_empty() {
        "SELECT NULL AS label, NULL AS sort_order WHERE 0".to_string()
    } else {
        rows.join(" UNION ALL ")
    };
    Ok(format!(
        "CREATE VIEW {} AS {body}",
        quoted(&view_name(name))
    ))
}

/// `shoal_enum_<type>`: the type's name as PostgreSQL folds it (unquoted names lower-case),
/// without a `public.` schema.
fn view_name(name: &ObjectName) -> String {
    let last = name
        .0
        .last()
        .and_then(|part| part.as_ident())
        .map(|ident| match ident.quote_style {
            Some(_) => ident.value.clone(),
            None => ident.value.to_lowercase(),
        })
        .unwrap_or_default();
    format!("{ENUM_VIEW_PREFIX}{last}")
}

fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}
