//! Runs an `ALTER TABLE` whose SQLite statements depend on the table's current definition
//! (`dialect::AlterPlan`): inside the session's transaction block, or in one of its own, SQLite's
//! own forms run first, then the schema is read and the rebuild made from it runs
//! (`dialect::rebuild`). The schema read is one of the transaction's statements, so the commit
//! is refused (40001, like any transaction whose reads changed) if another session changed the
//! schema in between, and every replica applies the same statements to the same schema.
//!
//! A rebuild copies the table inside the transaction; each later statement of the transaction
//! replays it (see `transaction.rs`), so it suits migrations, not tables of millions of rows.

use pgwire::api::results::Response;
use pgwire::error::ErrorInfo;

use crate::catalog::databases::Databases;
use crate::db::dump::quote_identifier;
use crate::pgwire::backend::session_database;
use crate::pgwire::dialect::AlterPlan;
use crate::pgwire::dialect::enums::with_enum_checks;
use crate::pgwire::dialect::rebuild::{RebuildError, SCHEMA_QUERY, SchemaObject, guarded_children};
use crate::pgwire::dialect::truncate::{Truncation, deletion_order};
use crate::pgwire::session::Session;
use crate::pgwire::sqlstate::{self, error_info, service_error, statement_error};
use crate::pgwire::transaction::Transactions;
use crate::raft::types::Statement;
use crate::types::value::SqlValue;

/// Runs `plan` for `session`: all of it or, on any error, none of it (and a transaction block
/// it ran in is then failed, as after any failed statement).
pub async fn run_alter(
    transactions: &Transactions,
    databases: &Databases,
    session: &Session,
    plan: &AlterPlan,
) -> Result<(), Box<ErrorInfo>> {
    let database = session_database(databases, session)
        .await
        .map_err(|error| service_error(&error))?;
    if database.sharded().is_some() {
        return Err(error_info(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "ALTER TABLE that changes constraints, column definitions or several things at once, \
             and COMMENT ON, are not supported on a sharded database yet",
        ));
    }
    all_or_nothing(
        transactions,
        session,
        alter_in_transaction(transactions, session, plan),
    )
    .await
}

/// Runs `work` (statements run through `transactions` for `session`) inside the session's
/// transaction block, failing the block if it fails, or inside a transaction of its own that
/// commits if it succeeds and rolls back if not.
async fn all_or_nothing(
    transactions: &Transactions,
    session: &Session,
    work: impl Future<Output = Result<(), Box<ErrorInfo>>>,
) -> Result<(), Box<ErrorInfo>> {
    let own_transaction = !session.in_transaction();
    if own_transaction {
        transactions.control(session, "BEGIN").await;
    }
    let outcome = work.await;
    if !own_transaction {
        if outcome.is_err() {
            transactions.fail(session);
        }
        return outcome;
    }
    match outcome {
        Ok(()) => match transactions.control(session, "COMMIT").await {
            Response::Error(info) => Err(info),
            _ => Ok(()),
        },
        Err(info) => {
            transactions.control(session, "ROLLBACK").await;
            Err(info)
        }
    }
}

/// Empties the tables `truncation` names (see `dialect::truncate`): inside the session's
/// transaction block or one of its own, all of them or, on any error, none. The foreign keys
/// that decide the order are read in the transaction (a schema change meanwhile fails it).
pub async fn run_truncate(
    transactions: &Transactions,
    session: &Session,
    truncation: &Truncation,
) -> Result<(), Box<ErrorInfo>> {
    all_or_nothing(
        transactions,
        session,
        truncate_in_transaction(transactions, session, truncation),
    )
    .await
}

async fn truncate_in_transaction(
    transactions: &Transactions,
    session: &Session,
    truncation: &Truncation,
) -> Result<(), Box<ErrorInfo>> {
    let references = run(
        transactions,
        session,
        "SELECT m.name, p.\"table\" FROM sqlite_schema AS m, pragma_foreign_key_list(m.name) AS p \
         WHERE m.type = 'table'"
            .to_string(),
    )
    .await?;
    let pairs: Vec<(String, String)> = text_rows(references)
        .into_iter()
        .filter_map(|row| match row.as_slice() {
            [child, parent] => Some((child.clone(), parent.clone())),
            _ => None,
        })
        .collect();
    for table in deletion_order(&truncation.tables, &pairs, truncation.cascade) {
        run(
            transactions,
            session,
            format!("DELETE FROM {}", quote_identifier(&table)),
        )
        .await?;
    }
    Ok(())
}

async fn alter_in_transaction(
    transactions: &Transactions,
    session: &Session,
    plan: &AlterPlan,
) -> Result<(), Box<ErrorInfo>> {
    if plan.if_exists && !plan.native.is_empty() {
        let schema = read_schema(transactions, session).await?;
        let exists = schema
            .iter()
            .any(|o| o.kind == "table" && o.name.eq_ignore_ascii_case(&plan.table_name));
        if !exists {
            return Ok(());
        }
    }
    for native in &plan.native {
        run(transactions, session, native.clone()).await?;
    }
    if let Some(create) = &plan.create {
        return create_with_enum_checks(transactions, session, plan, create).await;
    }
    if plan.rebuild.is_empty() {
        return Ok(());
    }
    let schema = read_schema(transactions, session).await?;
    // Whether the tables whose foreign keys would act on the table's rows hold any (read in the
    // transaction too: a row added meanwhile fails the commit).
    let mut occupied = Vec::new();
    for child in guarded_children(&plan.table_name, &schema) {
        let probe = format!("SELECT EXISTS (SELECT 1 FROM {})", quote_identifier(&child));
        let result = run(transactions, session, probe).await?;
        if first_value(result) == Some(SqlValue::Integer(1)) {
            occupied.push(child);
        }
    }
    let statements = plan
        .rebuild_statements(&schema, &occupied)
        .map_err(|error| rebuild_error(&error))?;
    for statement in statements {
        run(transactions, session, statement).await?;
    }
    Ok(())
}

/// Runs `create`, its enum-typed columns checked against their types' labels (read in the
/// transaction: a type changed meanwhile fails the commit).
async fn create_with_enum_checks(
    transactions: &Transactions,
    session: &Session,
    plan: &AlterPlan,
    create: &str,
) -> Result<(), Box<ErrorInfo>> {
    let mut labels = Vec::new();
    for column in &plan.enum_columns {
        let probe = format!(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'view' AND name = '{}'",
            column.view.replace('\'', "''")
        );
        let found = run(transactions, session, probe).await?;
        if first_value(found) != Some(SqlValue::Integer(1)) {
            continue;
        }
        let read = format!(
            "SELECT label FROM {} ORDER BY sort_order",
            quote_identifier(&column.view)
        );
        let rows = run(transactions, session, read).await?;
        let values: Vec<String> = text_rows(rows)
            .into_iter()
            .filter_map(|row| row.into_iter().next())
            .collect();
        labels.push((column.clone(), values));
    }
    let sql = if labels.is_empty() {
        create.to_string()
    } else {
        with_enum_checks(create, &labels).unwrap_or_else(|| create.to_string())
    };
    run(transactions, session, sql).await.map(|_| ())
}

fn first_value(result: crate::raft::types::StatementResult) -> Option<SqlValue> {
    result
        .rows
        .and_then(|rows| rows.values.into_iter().next())
        .and_then(|row| row.into_iter().next())
}

/// Runs one statement in the open transaction; a statement error is an error here.
async fn run(
    transactions: &Transactions,
    session: &Session,
    sql: String,
) -> Result<crate::raft::types::StatementResult, Box<ErrorInfo>> {
    let result = transactions.execute(session, Statement::plain(sql)).await?;
    match &result.error {
        Some(message) => Err(crate::pgwire::sequences::sequence_table_error(message)
            .unwrap_or_else(|| statement_error(message))),
        None => Ok(result),
    }
}

async fn read_schema(
    transactions: &Transactions,
    session: &Session,
) -> Result<Vec<SchemaObject>, Box<ErrorInfo>> {
    let result = run(transactions, session, SCHEMA_QUERY.to_string()).await?;
    Ok(text_rows(result)
        .into_iter()
        .filter_map(|row| match <[String; 4]>::try_from(row) {
            Ok([kind, name, table, sql]) => Some(SchemaObject {
                kind,
                name,
                table,
                sql,
            }),
            Err(_) => None,
        })
        .collect())
}

/// A result's rows with each value as text (a value that is not text is empty).
fn text_rows(result: crate::raft::types::StatementResult) -> Vec<Vec<String>> {
    result
        .rows
        .map(|rows| rows.values)
        .unwrap_or_default()
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|value| match value {
                    SqlValue::Text(text) => text,
                    _ => String::new(),
                })
                .collect()
        })
        .collect()
}

fn rebuild_error(error: &RebuildError) -> Box<ErrorInfo> {
    match error {
        RebuildError::Unsupported(unsupported) => {
            error_info(sqlstate::FEATURE_NOT_SUPPORTED, unsupported.to_string())
        }
        RebuildError::Referenced(message) => error_info(sqlstate::FEATURE_NOT_SUPPORTED, message),
        RebuildError::UndefinedTable(message) => error_info(sqlstate::UNDEFINED_TABLE, message),
        RebuildError::UndefinedColumn(message) => error_info(sqlstate::UNDEFINED_COLUMN, message),
        RebuildError::UndefinedObject(message) => error_info(sqlstate::UNDEFINED_OBJECT, message),
        RebuildError::DuplicateColumn(message) => error_info(sqlstate::DUPLICATE_COLUMN, message),
        RebuildError::InvalidDefinition(message) => {
            error_info(sqlstate::INVALID_TABLE_DEFINITION, message)
        }
    }
}
