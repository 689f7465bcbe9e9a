//! Changing a table's constraints or column definitions as SQLite documents it
//! (<https://sqlite.org/lang_altertable.html#otheralter>): the table made again with the changed
//! definition. Its rows wait in a holding table while it is dropped and created again under its
//! own name, then go back in (so existing rows are checked against a new NOT NULL, CHECK or
//! FOREIGN KEY, as PostgreSQL checks them), and its indexes and triggers are made again. Pure:
//! it turns the schema as read (`SCHEMA_QUERY`) into statements; running them in one transaction
//! is the caller's.
//!
//! SQLite's documented procedure turns foreign keys off, which cannot be done inside the
//! transaction that keeps the change atomic. With them on, dropping the table for a moment is
//! safe for other tables' foreign keys that are DEFERRABLE INITIALLY DEFERRED without an ON
//! DELETE action (checked at the commit, when the rows are back: Django declares its foreign
//! keys so) and for referencing tables that hold no rows; otherwise it is refused.

use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, ColumnOption, ColumnOptionDef, CreateTable,
    DeferrableInitial, Expr, ForeignKeyConstraint, Ident, ObjectName, ObjectNamePart,
    ReferentialAction, Statement, TableConstraint,
};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;

use super::Unsupported;
use crate::db::dump::quote_identifier;

/// Reads the schema a rebuild is made from (run in the transaction, so the commit is refused
/// if the schema changed meanwhile).
pub const SCHEMA_QUERY: &str = "SELECT type, name, tbl_name, sql FROM sqlite_schema \
     WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
     AND name NOT LIKE '\\_shoal\\_%' ESCAPE '\\' ORDER BY rowid";

/// The prefix of the table that holds the rows while their table is made again.
const HOLDING_TABLE_PREFIX: &str = "shoal_rebuild_";
/// The holding table's column for each row's rowid.
const HELD_ROWID: &str = "shoal_rowid";

/// One row of `SCHEMA_QUERY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaObject {
    pub kind: String,
    pub name: String,
    pub table: String,
    pub sql: String,
}

/// Why a rebuild cannot be made; each kind has its SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebuildError {
    Unsupported(Unsupported),
    /// 0A000, said whole.
    Referenced(String),
    /// 42P01.
    UndefinedTable(String),
    /// 42703.
    UndefinedColumn(String),
    /// 42704.
    UndefinedObject(String),
    /// 42701.
    DuplicateColumn(String),
    /// 42P16.
    InvalidDefinition(String),
}

/// The statements that make `operations` on `table` (unquoted) given the schema and which of
/// its `guarded_children` hold rows (`occupied`); empty when nothing is to be done (`IF EXISTS`
/// of something absent).
pub fn rebuild_statements(
    table: &str,
    if_exists: bool,
    operations: &[AlterTableOperation],
    schema: &[SchemaObject],
    occupied: &[String],
) -> Result<Vec<String>, RebuildError> {
    let Some(current) = schema
        .iter()
        .find(|o| o.kind == "table" && o.name.eq_ignore_ascii_case(table))
    else {
        if if_exists {
            return Ok(Vec::new());
        }
        return Err(RebuildError::UndefinedTable(format!(
            "relation \"{table}\" does not exist"
        )));
    };
    let table = current.name.as_str();
    let mut definition = parse_table(&current.sql).ok_or_else(|| {
        RebuildError::Unsupported(Unsupported(format!(
            "ALTER TABLE … on \"{table}\", whose definition ({}) Shoal cannot read to rebuild it",
            current.sql
        )))
    })?;
    let original_columns: Vec<String> = definition
        .columns
        .iter()
        .map(|c| c.name.value.clone())
        .collect();
    let mut change = Change {
        table,
        copied: original_columns
            .iter()
            .map(|name| (name.clone(), quote_identifier(name)))
            .collect(),
        dropped_indexes: Vec::new(),
        rebuilt: false,
    };
    for operation in operations {
        change.apply(&mut definition, operation, schema)?;
    }
    let mut statements: Vec<String> = change
        .dropped_indexes
        .iter()
        .map(|index| format!("DROP INDEX {}", quote_identifier(index)))
        .collect();
    if !change.rebuilt {
        return Ok(statements);
    }
    refuse_if_referenced(table, schema, occupied)?;
    // The rows wait in a holding table while the table is dropped and made again under its
    // own name: no rename, so views and triggers that name it are left alone, and rows put
    // back into a table other tables' deferred foreign keys reference satisfy those keys again
    // (SQLite counts the references the drop broke and the inserts mended).
    let keeps_rowid = !definition
        .sqlite_table_options
        .options
        .iter()
        .any(|o| o.to_string().eq_ignore_ascii_case("WITHOUT ROWID"))
        && !original_columns.iter().any(|c| {
            [HELD_ROWID, "rowid", "_rowid_", "oid"]
                .iter()
                .any(|r| c.eq_ignore_ascii_case(r))
        });
    let held = quote_identifier(&format!("{HOLDING_TABLE_PREFIX}{table}"));
    statements.push(format!(
        "CREATE TABLE {held} AS SELECT {}* FROM {}",
        if keeps_rowid {
            format!("rowid AS {HELD_ROWID}, ")
        } else {
            String::new()
        },
        quote_identifier(table)
    ));
    statements.push(format!("DROP TABLE {}", quote_identifier(table)));
    statements.push(Statement::CreateTable(definition.clone()).to_string());
    let (mut targets, mut sources): (Vec<String>, Vec<String>) = change
        .copied
        .iter()
        .map(|(name, source)| (quote_identifier(name), source.clone()))
        .unzip();
    if keeps_rowid {
        targets.insert(0, "rowid".into());
        sources.insert(0, HELD_ROWID.into());
    }
    statements.push(format!(
        "INSERT INTO {} ({}) SELECT {} FROM {held} AS {}",
        quote_identifier(table),
        targets.join(", "),
        sources.join(", "),
        quote_identifier(table)
    ));
    statements.push(format!("DROP TABLE {held}"));
    // Its own indexes and triggers went with it.
    for object in schema {
        let own = belongs_to(object, table)
            && matches!(object.kind.as_str(), "index" | "trigger")
            && !change
                .dropped_indexes
                .iter()
                .any(|d| d.eq_ignore_ascii_case(&object.name));
        if own {
            statements.push(object.sql.clone());
        }
    }
    Ok(statements)
}

fn belongs_to(object: &SchemaObject, table: &str) -> bool {
    object.table.eq_ignore_ascii_case(table)
}

/// Whether `sql` names `table` (a word of it, case-insensitively; a view that only looks as if
/// it does is made again too, which changes nothing).
fn mentions(sql: &str, table: &str) -> bool {
    let sql = sql.to_ascii_lowercase();
    let table = table.to_ascii_lowercase();
    sql.match_indices(&table).any(|(at, _)| {
        let before = sql[..at].chars().next_back();
        let after = sql[at + table.len()..].chars().next();
        let boundary = |c: Option<char>| !c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        boundary(before) && boundary(after)
    })
}

/// A foreign key as a `CREATE TABLE` declares it.
pub struct DeclaredForeignKey {
    pub name: Option<String>,
    pub columns: Vec<String>,
    /// DEFERRABLE INITIALLY DEFERRED.
    pub deferred: bool,
}

/// The foreign keys a `CREATE TABLE` declares, in order. Empty when the statement cannot be
/// read.
pub fn declared_foreign_keys(sql: &str) -> Vec<DeclaredForeignKey> {
    let Some(definition) = parse_table(sql) else {
        return Vec::new();
    };
    let deferred = |fk: &ForeignKeyConstraint| {
        fk.characteristics.as_ref().is_some_and(|c| {
            c.deferrable == Some(true) && c.initially == Some(DeferrableInitial::Deferred)
        })
    };
    let mut keys = Vec::new();
    for column in &definition.columns {
        for option in &column.options {
            if let ColumnOption::ForeignKey(fk) = &option.option {
                keys.push(DeclaredForeignKey {
                    name: option.name.as_ref().map(|n| n.value.clone()),
                    columns: vec![column.name.value.clone()],
                    deferred: deferred(fk),
                });
            }
        }
    }
    for constraint in &definition.constraints {
        if let TableConstraint::ForeignKey(fk) = constraint {
            keys.push(DeclaredForeignKey {
                name: fk.name.as_ref().map(|n| n.value.clone()),
                columns: fk.columns.iter().map(|c| c.value.clone()).collect(),
                deferred: deferred(fk),
            });
        }
    }
    keys
}

/// A PRIMARY KEY or UNIQUE constraint as a `CREATE TABLE` declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredKey {
    pub primary: bool,
    pub columns: Vec<String>,
    /// The declared name (`CONSTRAINT "PK_…" PRIMARY KEY (id)`), or PostgreSQL's default
    /// (`<table>_pkey`, `<table>_<columns>_key`).
    pub name: String,
}

/// The PRIMARY KEY and UNIQUE constraints `sql` (a `CREATE TABLE` of `table`) declares, column
/// constraints first, in order. Empty when the statement cannot be read.
pub fn declared_keys(table: &str, sql: &str) -> Vec<DeclaredKey> {
    let Some(definition) = parse_table(sql) else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    for column in &definition.columns {
        for option in &column.options {
            let primary = match &option.option {
                ColumnOption::PrimaryKey(_) => true,
                ColumnOption::Unique(_) => false,
                _ => continue,
            };
            let column_name = &column.name.value;
            let name = option.name.as_ref().map_or_else(
                || {
                    if primary {
                        format!("{table}_pkey")
                    } else {
                        format!("{table}_{column_name}_key")
                    }
                },
                |name| name.value.clone(),
            );
            keys.push(DeclaredKey {
                primary,
                columns: vec![column_name.clone()],
                name,
            });
        }
    }
    for constraint in &definition.constraints {
        let primary = match constraint {
            TableConstraint::PrimaryKey(_) => true,
            TableConstraint::Unique(_) => false,
            _ => continue,
        };
        keys.push(DeclaredKey {
            primary,
            columns: constraint_columns(constraint),
            name: constraint_name(constraint).map_or_else(
                || default_constraint_name(table, constraint),
                |name| name.value,
            ),
        });
    }
    keys
}

fn parse_table(sql: &str) -> Option<CreateTable> {
    let statements = Parser::new(&SQLiteDialect {})
        .with_recursion_limit(64)
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_statements())
        .ok()?;
    match statements.into_iter().next()? {
        Statement::CreateTable(table) => Some(table),
        _ => None,
    }
}

/// The tables whose foreign keys to `table` would act or complain when its rows are dropped
/// for a moment: all but those DEFERRABLE INITIALLY DEFERRED with no ON DELETE action (SQLite
/// defers those to the commit, by when the rows are back). The caller reads whether they hold
/// rows: empty ones are no obstacle.
pub fn guarded_children(table: &str, schema: &[SchemaObject]) -> Vec<String> {
    schema
        .iter()
        .filter(|o| o.kind == "table" && !o.name.eq_ignore_ascii_case(table))
        .filter(|o| match parse_table(&o.sql) {
            Some(child) => foreign_keys_to(&child, table)
                .iter()
                .any(|fk| !waits_for_commit(fk)),
            // Unreadable: guarded if it names the table.
            None => mentions(&o.sql, table),
        })
        .map(|o| o.name.clone())
        .collect()
}

/// Whether a foreign key neither acts nor complains until the commit.
fn waits_for_commit(fk: &ForeignKeyConstraint) -> bool {
    let deferred = fk.characteristics.as_ref().is_some_and(|c| {
        c.deferrable == Some(true) && c.initially == Some(DeferrableInitial::Deferred)
    });
    deferred && matches!(fk.on_delete, None | Some(ReferentialAction::NoAction))
}

/// Refuses when a guarded child table (`guarded_children`) holds rows: `occupied` names those.
fn refuse_if_referenced(
    table: &str,
    schema: &[SchemaObject],
    occupied: &[String],
) -> Result<(), RebuildError> {
    let referencing: Vec<String> = guarded_children(table, schema)
        .into_iter()
        .filter(|child| occupied.iter().any(|o| o.eq_ignore_ascii_case(child)))
        .map(|child| format!("\"{child}\""))
        .collect();
    if referencing.is_empty() {
        return Ok(());
    }
    Err(RebuildError::Referenced(format!(
        "ALTER TABLE that changes the definition of \"{table}\" is not supported while rows of \
         {} reference it through a foreign key that is not DEFERRABLE INITIALLY DEFERRED or has \
         an ON DELETE action: SQLite changes a table's definition by making it again, and \
         dropping its rows for that moment would act on theirs; change \"{table}\" while those \
         tables are empty, or declare the foreign keys DEFERRABLE INITIALLY DEFERRED",
        referencing.join(", ")
    )))
}

fn foreign_keys_to(definition: &CreateTable, table: &str) -> Vec<ForeignKeyConstraint> {
    let names = |name: &ObjectName| {
        name.0
            .last()
            .and_then(ObjectNamePart::as_ident)
            .is_some_and(|i| i.value.eq_ignore_ascii_case(table))
    };
    let mut keys: Vec<ForeignKeyConstraint> = definition
        .constraints
        .iter()
        .filter_map(|c| match c {
            TableConstraint::ForeignKey(fk) if names(&fk.foreign_table) => Some(fk.clone()),
            _ => None,
        })
        .collect();
    for column in &definition.columns {
        for option in &column.options {
            if let ColumnOption::ForeignKey(fk) = &option.option
                && names(&fk.foreign_table)
            {
                keys.push(fk.clone());
            }
        }
    }
    keys
}

/// A rebuild being worked out.
struct Change<'a> {
    table: &'a str,
    /// Each column of the new table filled from the old one: its name and the expression
    /// (over the old table) that fills it.
    copied: Vec<(String, String)>,
    /// Indexes dropped (constraints that were unique indexes).
    dropped_indexes: Vec<String>,
    /// The table's definition changed.
    rebuilt: bool,
}

impl Change<'_> {
    fn apply(
        &mut self,
        definition: &mut CreateTable,
        operation: &AlterTableOperation,
        schema: &[SchemaObject],
    ) -> Result<(), RebuildError> {
        let table = self.table;
        match operation {
            AlterTableOperation::AddColumn {
                column_def,
                if_not_exists,
                ..
            } => {
                if column_index(definition, &column_def.name.value).is_some() {
                    if *if_not_exists {
                        return Ok(());
                    }
                    return Err(RebuildError::DuplicateColumn(format!(
                        "column \"{}\" of relation \"{table}\" already exists",
                        column_def.name.value
                    )));
                }
                if column_def
                    .options
                    .iter()
                    .any(|o| matches!(o.option, ColumnOption::PrimaryKey(_)))
                {
                    refuse_second_primary_key(definition, table)?;
                }
                definition.columns.push(column_def.clone());
            }
            AlterTableOperation::AddConstraint { constraint, .. } => {
                match constraint {
                    TableConstraint::PrimaryKey(_) => {
                        refuse_second_primary_key(definition, table)?;
                    }
                    TableConstraint::ForeignKey(fk) => {
                        let parent = fk
                            .foreign_table
                            .0
                            .last()
                            .and_then(ObjectNamePart::as_ident)
                            .map(|i| i.value.clone())
                            .unwrap_or_default();
                        let exists = parent.eq_ignore_ascii_case(table)
                            || schema
                                .iter()
                                .any(|o| o.kind == "table" && o.name.eq_ignore_ascii_case(&parent));
                        if !exists {
                            return Err(RebuildError::UndefinedTable(format!(
                                "relation \"{parent}\" does not exist"
                            )));
                        }
                    }
                    _ => {}
                }
                for column in constraint_columns(constraint) {
                    if column_index(definition, &column).is_none() {
                        return Err(undefined_column(&column, table));
                    }
                }
                definition.constraints.push(constraint.clone());
            }
            AlterTableOperation::AlterColumn { column_name, op } => {
                let index = column_index(definition, &column_name.value)
                    .ok_or_else(|| undefined_column(&column_name.value, table))?;
                let column = &mut definition.columns[index];
                let options = &mut column.options;
                match op {
                    AlterColumnOperation::SetNotNull => {
                        options.retain(|o| !matches!(o.option, ColumnOption::Null));
                        if !options
                            .iter()
                            .any(|o| matches!(o.option, ColumnOption::NotNull))
                        {
                            options.push(unnamed(ColumnOption::NotNull));
                        }
                    }
                    AlterColumnOperation::DropNotNull => {
                        options.retain(|o| !matches!(o.option, ColumnOption::NotNull));
                    }
                    AlterColumnOperation::SetDefault { value } => {
                        options.retain(|o| !matches!(o.option, ColumnOption::Default(_)));
                        options.push(unnamed(ColumnOption::Default(parenthesized(value))));
                    }
                    AlterColumnOperation::DropDefault => {
                        options.retain(|o| !matches!(o.option, ColumnOption::Default(_)));
                    }
                    AlterColumnOperation::SetDataType {
                        data_type, using, ..
                    } => {
                        column.data_type = data_type.clone();
                        if let Some(using) = using {
                            let name = column.name.value.clone();
                            if let Some(copied) = self
                                .copied
                                .iter_mut()
                                .find(|(c, _)| c.eq_ignore_ascii_case(&name))
                            {
                                copied.1 = using.to_string();
                            }
                        }
                    }
                    other => {
                        return Err(RebuildError::Unsupported(Unsupported(format!(
                            "ALTER TABLE … ALTER COLUMN … {other}"
                        ))));
                    }
                }
            }
            AlterTableOperation::DropConstraint {
                if_exists, name, ..
            } => {
                if !self.drop_constraint(definition, &name.value, schema) && !if_exists {
                    return Err(RebuildError::UndefinedObject(format!(
                        "constraint \"{}\" of relation \"{table}\" does not exist",
                        name.value
                    )));
                }
                return Ok(());
            }
            other => {
                return Err(RebuildError::Unsupported(Unsupported(format!(
                    "ALTER TABLE … {other} together with changes that rebuild the table"
                ))));
            }
        }
        self.rebuilt = true;
        Ok(())
    }

    /// Drops the constraint PostgreSQL would call `name`: a named one, one whose PostgreSQL
    /// default name (`t_pkey`, `t_a_fkey`, `t_a_key`, `t_a_check`) is `name`, or a unique index
    /// so named. Whether there was one.
    fn drop_constraint(
        &mut self,
        definition: &mut CreateTable,
        name: &str,
        schema: &[SchemaObject],
    ) -> bool {
        let table = self.table;
        let matches = |given: &Option<Ident>, default: String| match given {
            Some(given) => given.value.eq_ignore_ascii_case(name),
            None => default.eq_ignore_ascii_case(name),
        };
        let before = definition.constraints.len();
        definition.constraints.retain(|constraint| {
            let default = default_constraint_name(table, constraint);
            !matches(&constraint_name(constraint), default)
        });
        let mut dropped = definition.constraints.len() != before;
        for column in &mut definition.columns {
            let column_name = column.name.value.clone();
            let count = column.options.len();
            column.options.retain(|option| {
                let default = match &option.option {
                    ColumnOption::PrimaryKey(_) => format!("{table}_pkey"),
                    ColumnOption::Unique(_) => format!("{table}_{column_name}_key"),
                    ColumnOption::ForeignKey(_) => format!("{table}_{column_name}_fkey"),
                    ColumnOption::Check(_) => format!("{table}_{column_name}_check"),
                    // NOT NULL and defaults are not constraints PostgreSQL names.
                    _ => {
                        return option
                            .name
                            .as_ref()
                            .is_none_or(|n| !n.value.eq_ignore_ascii_case(name));
                    }
                };
                !matches(&option.name, default)
            });
            dropped |= column.options.len() != count;
        }
        if dropped {
            self.rebuilt = true;
            return true;
        }
        let index = schema.iter().find(|o| {
            o.kind == "index"
                && o.table.eq_ignore_ascii_case(table)
                && o.name.eq_ignore_ascii_case(name)
        });
        if let Some(index) = index {
            self.dropped_indexes.push(index.name.clone());
            return true;
        }
        false
    }
}

fn unnamed(option: ColumnOption) -> ColumnOptionDef {
    ColumnOptionDef { name: None, option }
}

/// A default other than a literal is parenthesized, as SQLite's grammar wants it.
fn parenthesized(value: &Expr) -> Expr {
    match value {
        Expr::Value(_) | Expr::Nested(_) => value.clone(),
        other => Expr::Nested(Box::new(other.clone())),
    }
}

fn column_index(definition: &CreateTable, name: &str) -> Option<usize> {
    definition
        .columns
        .iter()
        .position(|c| c.name.value.eq_ignore_ascii_case(name))
}

fn undefined_column(column: &str, table: &str) -> RebuildError {
    RebuildError::UndefinedColumn(format!(
        "column \"{column}\" of relation \"{table}\" does not exist"
    ))
}

fn refuse_second_primary_key(definition: &CreateTable, table: &str) -> Result<(), RebuildError> {
    let has_one = definition
        .constraints
        .iter()
        .any(|c| matches!(c, TableConstraint::PrimaryKey(_)))
        || definition.columns.iter().any(|c| {
            c.options
                .iter()
                .any(|o| matches!(o.option, ColumnOption::PrimaryKey(_)))
        });
    if has_one {
        return Err(RebuildError::InvalidDefinition(format!(
            "multiple primary keys for table \"{table}\" are not allowed"
        )));
    }
    Ok(())
}

fn constraint_name(constraint: &TableConstraint) -> Option<Ident> {
    match constraint {
        TableConstraint::PrimaryKey(c) => c.name.clone(),
        TableConstraint::Unique(c) => c.name.clone(),
        TableConstraint::ForeignKey(c) => c.name.clone(),
        TableConstraint::Check(c) => c.name.clone(),
        _ => None,
    }
}

/// The columns a table constraint names.
fn constraint_columns(constraint: &TableConstraint) -> Vec<String> {
    let index_columns = |columns: &[sqlparser::ast::IndexColumn]| {
        columns
            .iter()
            .filter_map(|c| match &c.column.expr {
                Expr::Identifier(ident) => Some(ident.value.clone()),
                _ => None,
            })
            .collect()
    };
    match constraint {
        TableConstraint::PrimaryKey(c) => index_columns(&c.columns),
        TableConstraint::Unique(c) => index_columns(&c.columns),
        TableConstraint::ForeignKey(c) => c.columns.iter().map(|i| i.value.clone()).collect(),
        _ => Vec::new(),
    }
}

/// The name PostgreSQL gives an unnamed table constraint.
fn default_constraint_name(table: &str, constraint: &TableConstraint) -> String {
    let columns = constraint_columns(constraint).join("_");
    match constraint {
        TableConstraint::PrimaryKey(_) => format!("{table}_pkey"),
        TableConstraint::Unique(_) => format!("{table}_{columns}_key"),
        TableConstraint::ForeignKey(_) => format!("{table}_{columns}_fkey"),
        TableConstraint::Check(_) => format!("{table}_check"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgwire::dialect::translate;

    /// Runs `alter` (PostgreSQL) on an SQLite database holding `schema`, as the endpoint does:
    /// the native statements, then the rebuild made from the schema read, in one transaction.
    fn run(sqlite: &rusqlite::Connection, alter: &str) -> Result<(), String> {
        let translation = translate(alter).expect("translated");
        let plan = translation.alter.as_ref().expect("an ALTER TABLE plan");
        let transaction = sqlite.unchecked_transaction().unwrap();
        for native in &plan.native {
            transaction.execute(native, []).map_err(|e| e.to_string())?;
        }
        let schema: Vec<SchemaObject> = transaction
            .prepare(SCHEMA_QUERY)
            .unwrap()
            .query_map([], |r| {
                Ok(SchemaObject {
                    kind: r.get(0)?,
                    name: r.get(1)?,
                    table: r.get(2)?,
                    sql: r.get(3)?,
                })
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let occupied: Vec<String> = guarded_children(&plan.table_name, &schema)
            .into_iter()
            .filter(|child| {
                transaction
                    .query_row(
                        &format!("SELECT EXISTS (SELECT 1 FROM \"{child}\")"),
                        [],
                        |r| r.get::<_, bool>(0),
                    )
                    .unwrap()
            })
            .collect();
        let statements = plan
            .rebuild_statements(&schema, &occupied)
            .map_err(|e| format!("{e:?}"))?;
        for statement in statements {
            transaction
                .execute(&statement, [])
                .map_err(|e| format!("{statement}: {e}"))?;
        }
        transaction.commit().map_err(|e| e.to_string())
    }

    fn database(schema: &str) -> rusqlite::Connection {
        let sqlite = rusqlite::Connection::open_in_memory().unwrap();
        sqlite.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        sqlite.execute_batch(schema).unwrap();
        sqlite
    }

    fn table_sql(sqlite: &rusqlite::Connection, name: &str) -> String {
        sqlite
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .unwrap()
    }

    fn rows(sqlite: &rusqlite::Connection, sql: &str) -> Vec<String> {
        sqlite
            .prepare(sql)
            .unwrap()
            .query_map([], |r| {
                let value: rusqlite::types::Value = r.get(0)?;
                Ok(format!("{value:?}"))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    const SHOP: &str = "CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT);
        CREATE TABLE books (id INTEGER PRIMARY KEY, author_id INTEGER, title VARCHAR(20),
                            price NUMERIC(10, 2));
        CREATE INDEX books_title ON books (title);
        CREATE TABLE log (note TEXT);
        CREATE TRIGGER books_noted AFTER INSERT ON books BEGIN
          INSERT INTO log VALUES (new.title); END;
        CREATE VIEW cheap AS SELECT title FROM books WHERE price < 10;
        INSERT INTO authors VALUES (1, 'Ann');
        INSERT INTO books VALUES (1, 1, 'One', 5), (7, 1, 'Seven', 12);";

    #[test]
    fn a_foreign_key_is_added_and_enforced_with_rows_indexes_triggers_and_views_kept() {
        let sqlite = database(SHOP);
        run(
            &sqlite,
            "ALTER TABLE books ADD CONSTRAINT books_author_id_foreign FOREIGN KEY (author_id) \
             REFERENCES authors (id) ON DELETE CASCADE",
        )
        .unwrap();
        assert!(table_sql(&sqlite, "books").contains("FOREIGN KEY (author_id) REFERENCES authors"));
        assert!(table_sql(&sqlite, "books").starts_with("CREATE TABLE books ("));
        assert_eq!(
            rows(&sqlite, "SELECT rowid FROM books"),
            ["Integer(1)", "Integer(7)"]
        );
        let orphan = sqlite.execute("INSERT INTO books (author_id) VALUES (9)", []);
        assert!(orphan.unwrap_err().to_string().contains("FOREIGN KEY"));
        sqlite
            .execute("INSERT INTO books (author_id, title) VALUES (1, 'Two')", [])
            .unwrap();
        // The trigger fired for the rows loaded at first and for the new one, not for the copy.
        assert_eq!(
            rows(&sqlite, "SELECT note FROM log"),
            ["Text(\"One\")", "Text(\"Seven\")", "Text(\"Two\")"]
        );
        assert_eq!(rows(&sqlite, "SELECT title FROM cheap"), ["Text(\"One\")"]);
        assert_eq!(
            rows(
                &sqlite,
                "SELECT name FROM sqlite_schema WHERE type = 'index'"
            ),
            ["Text(\"books_title\")"]
        );
        sqlite.execute("DELETE FROM authors", []).unwrap();
        assert_eq!(rows(&sqlite, "SELECT count(*) FROM books"), ["Integer(0)"]);
    }

    #[test]
    fn existing_rows_are_checked_against_the_new_definition_and_nothing_changes_on_failure() {
        let sqlite = database(SHOP);
        let before = table_sql(&sqlite, "books");
        let error = run(
            &sqlite,
            "ALTER TABLE books ADD FOREIGN KEY (author_id) REFERENCES authors (id), \
             ADD CHECK (price > 6)",
        )
        .unwrap_err();
        assert!(error.contains("CHECK constraint failed"), "{error}");
        assert_eq!(table_sql(&sqlite, "books"), before);
        sqlite
            .execute("INSERT INTO books (title) VALUES (NULL)", [])
            .unwrap();
        let error = run(&sqlite, "ALTER TABLE books ALTER COLUMN title SET NOT NULL").unwrap_err();
        assert!(error.contains("NOT NULL constraint failed"), "{error}");
        assert_eq!(table_sql(&sqlite, "books"), before);
    }

    #[test]
    fn columns_change_type_nullability_and_default() {
        let sqlite = database(SHOP);
        run(
            &sqlite,
            "ALTER TABLE books ALTER COLUMN title TYPE TEXT, ALTER COLUMN title SET NOT NULL, \
             ALTER COLUMN price SET DEFAULT 9.5, ALTER COLUMN author_id TYPE BIGINT USING author_id * 10",
        )
        .unwrap();
        let sql = table_sql(&sqlite, "books");
        assert!(sql.contains("title TEXT NOT NULL"), "{sql}");
        assert!(sql.contains("price NUMERIC(10,2) DEFAULT 9.5"), "{sql}");
        assert_eq!(
            rows(&sqlite, "SELECT author_id FROM books"),
            ["Integer(10)", "Integer(10)"]
        );
        run(
            &sqlite,
            "ALTER TABLE books ALTER COLUMN title DROP NOT NULL, ALTER COLUMN price DROP DEFAULT",
        )
        .unwrap();
        let sql = table_sql(&sqlite, "books");
        assert!(
            !sql.contains("NOT NULL") && !sql.contains("DEFAULT"),
            "{sql}"
        );
    }

    #[test]
    fn constraints_are_dropped_by_their_name_or_postgresql_default_name() {
        let sqlite = database(
            "CREATE TABLE p (id INTEGER PRIMARY KEY);
             CREATE TABLE c (a INTEGER REFERENCES p (id), b INTEGER,
                             CONSTRAINT positive CHECK (b > 0));
             CREATE UNIQUE INDEX c_b_key ON c (b);",
        );
        run(&sqlite, "ALTER TABLE c DROP CONSTRAINT positive").unwrap();
        assert!(!table_sql(&sqlite, "c").contains("CHECK"));
        run(&sqlite, "ALTER TABLE c DROP CONSTRAINT c_a_fkey").unwrap();
        assert!(!table_sql(&sqlite, "c").contains("REFERENCES"));
        run(&sqlite, "ALTER TABLE c DROP CONSTRAINT c_b_key").unwrap();
        assert!(
            rows(
                &sqlite,
                "SELECT name FROM sqlite_schema WHERE type = 'index'"
            )
            .is_empty()
        );
        let error = run(&sqlite, "ALTER TABLE c DROP CONSTRAINT nothing").unwrap_err();
        assert!(
            error.contains("UndefinedObject") && error.contains("nothing"),
            "{error}"
        );
        run(&sqlite, "ALTER TABLE c DROP CONSTRAINT IF EXISTS nothing").unwrap();
    }

    #[test]
    fn a_referenced_table_is_made_again_unless_referencing_rows_would_be_acted_on() {
        let sqlite = database(
            "CREATE TABLE p (id INTEGER PRIMARY KEY, n INTEGER);
             CREATE TABLE c (a INTEGER REFERENCES p (id) ON DELETE CASCADE);
             CREATE TABLE d (a INTEGER REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED);
             INSERT INTO p VALUES (1, 10), (2, 20);",
        );
        // The cascading child holds no rows, the deferred one does: both are kept.
        sqlite.execute("INSERT INTO d VALUES (1), (2)", []).unwrap();
        run(&sqlite, "ALTER TABLE p ALTER COLUMN n SET NOT NULL").unwrap();
        assert!(table_sql(&sqlite, "p").contains("n INTEGER NOT NULL"));
        assert_eq!(rows(&sqlite, "SELECT count(*) FROM d"), ["Integer(2)"]);
        let broken = rows(&sqlite, "SELECT count(*) FROM pragma_foreign_key_check");
        assert_eq!(broken, ["Integer(0)"]);
        // Rows of the cascading child would be deleted: refused, nothing changed.
        sqlite.execute("INSERT INTO c VALUES (1)", []).unwrap();
        let error = run(&sqlite, "ALTER TABLE p ALTER COLUMN n DROP NOT NULL").unwrap_err();
        assert!(
            error.contains("\\\"c\\\"") && error.contains("DEFERRABLE"),
            "{error}"
        );
        assert_eq!(rows(&sqlite, "SELECT count(*) FROM c"), ["Integer(1)"]);
        assert!(table_sql(&sqlite, "p").contains("NOT NULL"));
    }

    #[test]
    fn a_second_primary_key_a_missing_column_or_table_is_refused_by_name() {
        let sqlite = database(
            "CREATE TABLE p (id INTEGER PRIMARY KEY, n INTEGER);
             CREATE TABLE c (a INTEGER REFERENCES p (id));",
        );
        run(&sqlite, "ALTER TABLE c ADD PRIMARY KEY (a)").unwrap();
        let error = run(&sqlite, "ALTER TABLE c ADD PRIMARY KEY (a)").unwrap_err();
        assert!(error.contains("multiple primary keys"), "{error}");
        let error = run(&sqlite, "ALTER TABLE c ALTER COLUMN zz SET NOT NULL").unwrap_err();
        assert!(error.contains("UndefinedColumn"), "{error}");
        let error = run(&sqlite, "ALTER TABLE gone ADD CHECK (1)").unwrap_err();
        assert!(error.contains("UndefinedTable"), "{error}");
        run(&sqlite, "ALTER TABLE IF EXISTS gone ADD CHECK (1)").unwrap();
    }

    #[test]
    fn columns_sqlite_cannot_add_are_added_by_a_rebuild_and_several_changes_run_together() {
        let sqlite = database(SHOP);
        run(
            &sqlite,
            "ALTER TABLE books ADD COLUMN created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, \
             ADD COLUMN isbn TEXT UNIQUE, ADD COLUMN pages INTEGER DEFAULT 0",
        )
        .unwrap();
        let sql = table_sql(&sqlite, "books");
        assert!(sql.contains("isbn TEXT UNIQUE"), "{sql}");
        assert_eq!(
            rows(&sqlite, "SELECT pages FROM books"),
            ["Integer(0)", "Integer(0)"]
        );
        assert_eq!(
            rows(
                &sqlite,
                "SELECT count(*) FROM books WHERE created_at IS NOT NULL"
            ),
            ["Integer(2)"]
        );
    }
}
