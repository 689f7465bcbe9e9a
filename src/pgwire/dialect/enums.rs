//! PostgreSQL enum types. `CREATE TYPE mood AS ENUM ('sad', 'ok')` is kept in the replicated
//! database as a view, `shoal_enum_mood`, whose rows are the labels in order (`label`,
//! `sort_order`): a schema object every replica holds and every backup carries, which the
//! emulated catalog turns back into `pg_type` and `pg_enum` rows. `DROP TYPE mood` drops it.
//! Columns of the type hold its labels as text; `CREATE TABLE` gives each a CHECK of the labels
//! (`with_enum_checks`, run by `pgwire/schema_change.rs` with the labels read in its
//! transaction), reported as PostgreSQL's invalid input value for the enum.

use sqlparser::ast::{
    CheckConstraint, ColumnOption, ColumnOptionDef, DataType, Ident, ObjectName, ObjectType,
    Statement, UserDefinedTypeRepresentation,
};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;

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

/// The columns of a `CREATE TABLE` whose type could be an enum type (a name neither SQLite nor
/// PostgreSQL knows), with the view that would hold its labels.
pub fn possible_enum_columns(statement: &Statement) -> Vec<EnumColumn> {
    let Statement::CreateTable(table) = statement else {
        return Vec::new();
    };
    table
        .columns
        .iter()
        .filter_map(|column| match &column.data_type {
            DataType::Custom(name, modifiers) if modifiers.is_empty() => Some(EnumColumn {
                column: column.name.value.clone(),
                view: view_name(name),
            }),
            _ => None,
        })
        .collect()
}

/// A column that may be of an enum type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnumColumn {
    pub column: String,
    /// `shoal_enum_<type>`.
    pub view: String,
}

/// `create` (SQLite's CREATE TABLE) with each enum column checked against its type's labels:
/// `CONSTRAINT "shoal_enum_<type>" CHECK ("c" IN ('a', 'b'))`, which the endpoint reports as
/// PostgreSQL's invalid input value for the enum. `None` when the statement cannot be read.
pub fn with_enum_checks(create: &str, labels: &[(EnumColumn, Vec<String>)]) -> Option<String> {
    let mut statements = Parser::new(&SQLiteDialect {})
        .with_recursion_limit(64)
        .try_with_sql(create)
        .and_then(|mut parser| parser.parse_statements())
        .ok()?;
    let Some(Statement::CreateTable(table)) = statements.first_mut() else {
        return None;
    };
    for (enum_column, allowed) in labels {
        let Some(column) = table
            .columns
            .iter_mut()
            .find(|c| c.name.value == enum_column.column)
        else {
            continue;
        };
        let list: Vec<String> = allowed
            .iter()
            .map(|label| format!("'{}'", label.replace('\'', "''")))
            .collect();
        column.options.push(ColumnOptionDef {
            name: Some(Ident::with_quote('"', &enum_column.view)),
            option: ColumnOption::Check(CheckConstraint {
                name: None,
                expr: Box::new(super::rewrite::raw(format!(
                    "{} IN ({})",
                    quoted(&enum_column.column),
                    list.join(", ")
                ))),
                no_inherit: false,
                enforced: None,
            }),
        });
    }
    Some(statements[0].to_string())
}

/// PostgreSQL's message for a value outside an enum's labels, from SQLite's for the check.
pub fn invalid_enum_value(message: &str) -> Option<String> {
    let rest = message.split("CHECK constraint failed: ").nth(1)?;
    let type_name = rest.trim().strip_prefix(ENUM_VIEW_PREFIX)?;
    Some(format!(
        "invalid input value for enum {type_name} (a value outside its labels)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_columns_are_checked_against_their_labels() {
        let statement = crate::pgwire::dialect::parse(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, m mood NOT NULL, n text, o \"Other\")",
        )
        .unwrap()
        .remove(0);
        let columns = possible_enum_columns(&statement);
        assert_eq!(
            columns.iter().map(|c| c.view.as_str()).collect::<Vec<_>>(),
            ["shoal_enum_mood", "shoal_enum_Other"]
        );
        let create = with_enum_checks(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, m mood NOT NULL, n text)",
            &[(columns[0].clone(), vec!["sad".into(), "it's ok".into()])],
        )
        .unwrap();
        let sqlite = rusqlite::Connection::open_in_memory().unwrap();
        sqlite.execute_batch(&create).unwrap();
        sqlite
            .execute("INSERT INTO t (m) VALUES ('it''s ok')", [])
            .unwrap();
        let error = sqlite
            .execute("INSERT INTO t (m) VALUES ('happy')", [])
            .unwrap_err()
            .to_string();
        assert_eq!(
            invalid_enum_value(&error).as_deref(),
            Some("invalid input value for enum mood (a value outside its labels)"),
            "{error}"
        );
    }
}
