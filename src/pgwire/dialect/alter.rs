//! `ALTER TABLE` forms SQLite lacks. Adding a UNIQUE constraint becomes a unique index (SQLite
//! enforces both the same way; migrations such as Knex's add uniqueness this way). Forms that
//! would need the table rebuilt — adding a foreign key, check or primary key, changing a
//! column's type, nullability or default — are refused naming the form. SQLite's own forms
//! (ADD/DROP/RENAME COLUMN, RENAME TO) run as written.

use sqlparser::ast::{AlterTableOperation, Statement, TableConstraint};

use super::Unsupported;

/// SQLite's statement for an `ALTER TABLE` it lacks; `None` for any other statement.
pub fn alter_statement(statement: &Statement) -> Option<Result<String, Unsupported>> {
    let Statement::AlterTable(alter) = statement else {
        return None;
    };
    let refuse = |what: &str| {
        Some(Err(Unsupported(format!(
            "ALTER TABLE … {what} (SQLite changes a table's constraints and column definitions \
             only by rebuilding it; declare them in CREATE TABLE)"
        ))))
    };
    for operation in &alter.operations {
        match operation {
            AlterTableOperation::AddConstraint { constraint, .. } => match constraint {
                TableConstraint::Unique(unique) if alter.operations.len() == 1 => {
                    let table = alter.name.to_string();
                    let columns: Vec<String> =
                        unique.columns.iter().map(ToString::to_string).collect();
                    let name = unique.name.as_ref().map_or_else(
                        || {
                            let plain = table.trim_matches('"');
                            let joined: Vec<String> = columns
                                .iter()
                                .map(|c| c.trim_matches('"').to_string())
                                .collect();
                            format!("\"{plain}_{}_key\"", joined.join("_"))
                        },
                        ToString::to_string,
                    );
                    return Some(Ok(format!(
                        "CREATE UNIQUE INDEX {name} ON {table} ({})",
                        columns.join(", ")
                    )));
                }
                TableConstraint::Unique(_) => {
                    return refuse("ADD CONSTRAINT … UNIQUE with other changes");
                }
                TableConstraint::ForeignKey(_) => return refuse("ADD CONSTRAINT … FOREIGN KEY"),
                TableConstraint::Check(_) => return refuse("ADD CONSTRAINT … CHECK"),
                TableConstraint::PrimaryKey(_) => return refuse("ADD CONSTRAINT … PRIMARY KEY"),
                _ => return refuse("ADD CONSTRAINT"),
            },
            AlterTableOperation::AlterColumn { .. } => return refuse("ALTER COLUMN"),
            AlterTableOperation::DropConstraint { .. } => return refuse("DROP CONSTRAINT"),
            _ => {}
        }
    }
    None
}
