//! `COMMENT ON TABLE|VIEW|COLUMN … IS '…'`. A comment is kept in the replicated database as a
//! view, `shoal_comment_<table>` or `shoal_comment_<table>.<column>`, whose one row names the
//! object and holds the text: a schema object every replica holds and every backup carries,
//! which the emulated catalog turns back into `pg_description` rows (`obj_description`,
//! `col_description`, psql's `\d+`). `IS NULL` removes it. Comments on other kinds of object are
//! refused by name.

use sqlparser::ast::{CommentObject, ObjectName, ObjectNamePart, Statement};

use super::Unsupported;
use super::alter::AlterPlan;
use crate::db::dump::quote_identifier;

/// The name prefix of the views that hold comments.
pub const COMMENT_VIEW_PREFIX: &str = "shoal_comment_";

/// The statements (run in one transaction) that set or remove a comment; `None` for any other
/// statement.
pub fn comment_statement(statement: &Statement) -> Option<Result<AlterPlan, Unsupported>> {
    let Statement::Comment {
        object_type,
        object_name,
        comment,
        ..
    } = statement
    else {
        return None;
    };
    let parts = names(object_name);
    let (table, column) = match (object_type, parts.as_slice()) {
        (CommentObject::Table | CommentObject::View, [.., table]) => (table.clone(), None),
        (CommentObject::Column, [.., table, column]) => (table.clone(), Some(column.clone())),
        (other, _) => {
            return Some(Err(Unsupported(format!("COMMENT ON {other}"))));
        }
    };
    let view = match &column {
        Some(column) => format!("{COMMENT_VIEW_PREFIX}{table}.{column}"),
        None => format!("{COMMENT_VIEW_PREFIX}{table}"),
    };
    let literal = |text: &str| format!("'{}'", text.replace('\'', "''"));
    // The object must exist (42P01 / 42703 from SQLite's own messages otherwise; the column is
    // qualified, so SQLite cannot take a missing one for a string).
    let mut native = vec![format!(
        "SELECT {} FROM {} LIMIT 0",
        column.as_deref().map_or_else(
            || "1".to_string(),
            |column| format!("{}.{}", quote_identifier(&table), quote_identifier(column))
        ),
        quote_identifier(&table)
    )];
    native.push(format!("DROP VIEW IF EXISTS {}", quote_identifier(&view)));
    if let Some(comment) = comment {
        native.push(format!(
            "CREATE VIEW {} AS SELECT {} AS relation, {} AS column_name, {} AS comment",
            quote_identifier(&view),
            literal(&table),
            column
                .as_deref()
                .map_or_else(|| "NULL".to_string(), literal),
            literal(comment)
        ));
    }
    Some(Ok(AlterPlan::statements(table, native)))
}

fn names(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .filter_map(ObjectNamePart::as_ident)
        .map(|ident| ident.value.clone())
        .collect()
}
