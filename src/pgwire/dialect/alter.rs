//! `ALTER TABLE` forms SQLite lacks. SQLite's own forms (ADD/DROP/RENAME COLUMN, RENAME TO) run
//! as written, one per statement. Adding a UNIQUE constraint alone becomes a unique index
//! (SQLite enforces both the same way; Knex adds uniqueness this way). Everything else that
//! changes a table's constraints or column definitions — ADD CONSTRAINT FOREIGN KEY/CHECK/
//! PRIMARY KEY, ALTER COLUMN TYPE/SET NOT NULL/DROP NOT NULL/SET DEFAULT/DROP DEFAULT, DROP
//! CONSTRAINT, a column SQLite's ADD COLUMN refuses, several changes in one statement — becomes
//! an [`AlterPlan`]: its SQLite statements depend on the table's current definition, so they
//! are made where the schema is read, inside a transaction (`rebuild.rs`, `pgwire/schema_change.rs`).

use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, ColumnOption, Expr, Statement, TableConstraint,
    UnaryOperator,
};

use super::Unsupported;

/// An `ALTER TABLE` whose SQLite statements depend on the table's current definition (also the
/// statements of a `COMMENT ON`, which run the same way: `native` only).
#[derive(Debug, Clone, PartialEq)]
pub struct AlterPlan {
    /// The table's name as written (quoted as the client quoted it).
    pub table: String,
    /// The table's name as SQLite knows it (unquoted).
    pub table_name: String,
    /// `ALTER TABLE IF EXISTS`: a missing table is not an error.
    pub if_exists: bool,
    /// SQLite's own forms, one statement each, run first.
    pub native: Vec<String>,
    /// The changes made by rebuilding the table (already rewritten to SQLite's expressions).
    pub rebuild: Vec<AlterTableOperation>,
    /// A CREATE TABLE (SQLite's text) run last, its enum-typed columns (`enum_columns`) first
    /// given CHECKs of their types' labels as read in the transaction.
    pub create: Option<String>,
    pub enum_columns: Vec<super::enums::EnumColumn>,
}

impl AlterPlan {
    /// A plan of SQLite statements only (COMMENT ON, CREATE/DROP SEQUENCE), about
    /// `table_name`.
    pub fn statements(table_name: String, native: Vec<String>) -> AlterPlan {
        AlterPlan {
            table: crate::db::dump::quote_identifier(&table_name),
            table_name,
            if_exists: false,
            native,
            rebuild: Vec::new(),
            create: None,
            enum_columns: Vec::new(),
        }
    }

    /// The rebuild's statements given the schema as read and which guarded referencing tables
    /// hold rows (see `rebuild::rebuild_statements`).
    pub fn rebuild_statements(
        &self,
        schema: &[super::rebuild::SchemaObject],
        occupied: &[String],
    ) -> Result<Vec<String>, super::rebuild::RebuildError> {
        super::rebuild::rebuild_statements(
            &self.table_name,
            self.if_exists,
            &self.rebuild,
            schema,
            occupied,
        )
    }
}

/// What an `ALTER TABLE` becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Alter {
    /// One SQLite statement.
    Sql(String),
    /// Statements made from the schema when it runs.
    Plan(AlterPlan),
}

/// SQLite's form of an `ALTER TABLE` (after the rewriting pass, so its expressions and types
/// are SQLite's); `None` for any other statement and for one SQLite runs as it is.
pub fn alter_statement(statement: &Statement) -> Option<Result<Alter, Unsupported>> {
    let Statement::AlterTable(alter) = statement else {
        return None;
    };
    if alter.only || alter.on_cluster.is_some() || alter.location.is_some() {
        return Some(Err(Unsupported("ALTER TABLE ONLY / ON CLUSTER".into())));
    }
    let table = alter.name.to_string();
    if let [AlterTableOperation::AddConstraint { constraint, .. }] = alter.operations.as_slice()
        && let TableConstraint::Unique(unique) = constraint
    {
        let columns: Vec<String> = unique.columns.iter().map(ToString::to_string).collect();
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
        return Some(Ok(Alter::Sql(format!(
            "CREATE UNIQUE INDEX {name} ON {table} ({})",
            columns.join(", ")
        ))));
    }
    let mut native = Vec::new();
    let mut rebuild = Vec::new();
    // A native form SQLite does not take as PostgreSQL writes it.
    let mut respelled = false;
    for operation in &alter.operations {
        match (kind(operation), operation) {
            // SQLite drops one column per statement, without IF EXISTS or CASCADE/RESTRICT
            // (it refuses to drop a column an index, view or constraint uses).
            (
                Ok(Kind::Native),
                AlterTableOperation::DropColumn {
                    column_names,
                    if_exists,
                    drop_behavior,
                    ..
                },
            ) => {
                respelled |= column_names.len() != 1 || *if_exists || drop_behavior.is_some();
                for column in column_names {
                    native.push(format!("ALTER TABLE {table} DROP COLUMN {column}"));
                }
            }
            (Ok(Kind::Native), _) => native.push(format!("ALTER TABLE {table} {operation}")),
            (Ok(Kind::Rebuild), _) => rebuild.push(operation.clone()),
            (Err(unsupported), _) => return Some(Err(unsupported)),
        }
    }
    if rebuild.is_empty() && native.len() == 1 && !alter.if_exists && !respelled {
        return None;
    }
    let table_name = alter
        .name
        .0
        .last()
        .and_then(|part| part.as_ident())
        .map_or_else(|| table.clone(), |ident| ident.value.clone());
    Some(Ok(Alter::Plan(AlterPlan {
        table,
        table_name,
        if_exists: alter.if_exists,
        native,
        rebuild,
        create: None,
        enum_columns: Vec::new(),
    })))
}

enum Kind {
    Native,
    Rebuild,
}

fn kind(operation: &AlterTableOperation) -> Result<Kind, Unsupported> {
    let refuse = |what: &str| Err(Unsupported(format!("ALTER TABLE … {what}")));
    match operation {
        AlterTableOperation::AddColumn { column_def, .. } => {
            // SQLite's ADD COLUMN takes no PRIMARY KEY or UNIQUE and only a constant default.
            let needs_rebuild = column_def.options.iter().any(|o| match &o.option {
                ColumnOption::PrimaryKey(_) | ColumnOption::Unique(_) => true,
                ColumnOption::Default(expr) => !is_constant(expr),
                _ => false,
            });
            Ok(if needs_rebuild {
                Kind::Rebuild
            } else {
                Kind::Native
            })
        }
        AlterTableOperation::DropColumn { .. }
        | AlterTableOperation::RenameColumn { .. }
        | AlterTableOperation::RenameTable { .. } => Ok(Kind::Native),
        AlterTableOperation::AddConstraint { constraint, .. } => match constraint {
            TableConstraint::Unique(_)
            | TableConstraint::ForeignKey(_)
            | TableConstraint::Check(_)
            | TableConstraint::PrimaryKey(_) => Ok(Kind::Rebuild),
            _ => refuse("ADD CONSTRAINT of this kind"),
        },
        AlterTableOperation::AlterColumn { op, .. } => match op {
            AlterColumnOperation::SetNotNull
            | AlterColumnOperation::DropNotNull
            | AlterColumnOperation::SetDefault { .. }
            | AlterColumnOperation::DropDefault
            | AlterColumnOperation::SetDataType { .. } => Ok(Kind::Rebuild),
            AlterColumnOperation::AddGenerated { .. } => refuse("ALTER COLUMN … ADD GENERATED"),
            AlterColumnOperation::GenericOptions { .. } => refuse("ALTER COLUMN … OPTIONS"),
        },
        AlterTableOperation::DropConstraint { .. } => Ok(Kind::Rebuild),
        other => {
            let text = other.to_string();
            let words: Vec<&str> = text.split_whitespace().take(2).collect();
            refuse(&words.join(" "))
        }
    }
}

/// A literal, or a signed numeric literal: what SQLite's ADD COLUMN accepts as a default.
fn is_constant(expr: &Expr) -> bool {
    match expr {
        Expr::Value(_) => true,
        Expr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } => matches!(expr.as_ref(), Expr::Value(_)),
        Expr::Nested(inner) => is_constant(inner),
        _ => false,
    }
}
