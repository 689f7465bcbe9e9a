//! The gather tier: the rows of the tables a statement reads are brought from their groups
//! (a distributed table's from every group, others' from one) into an in-memory copy of the
//! schema, where the statement runs unchanged — exact by construction, bounded in rows and
//! bytes, with a clear error past the bounds.

use std::collections::BTreeSet;

use futures_util::future::join_all;
use rusqlite::Connection;

use crate::catalog::view::{DatabaseEntry, TableKind};
use crate::db::dump::quote_identifier;
use crate::raft::types::{GroupId, RowSet, Statement, StatementResult};
use crate::router::Router;
use crate::router::reads::GroupReads;
use crate::router::schema::{Schema, TableShape};
use crate::service::ServiceError;
use crate::types::value::SqlValue;

/// One table's rows to fetch from one group.
struct Fetch {
    shape: TableShape,
    group: GroupId,
    sql: String,
}

/// The query each group runs for `shape`'s rows ([`row_columns`]).
pub fn fetch_sql(shape: &TableShape) -> String {
    format!(
        "SELECT {} FROM {}",
        row_columns(shape).join(", "),
        quote_identifier(&shape.name)
    )
}

/// The columns that carry a row whole: its rowid (unless WITHOUT ROWID, or an INTEGER
/// PRIMARY KEY column already is it) and every stored column.
pub fn row_columns(shape: &TableShape) -> Vec<String> {
    let mut columns: Vec<String> = Vec::new();
    if !shape.without_rowid && shape.rowid_alias.is_none() {
        columns.push("_rowid_".into());
    }
    columns.extend(shape.stored_columns().map(|c| quote_identifier(&c.name)));
    columns
}

/// The groups holding the rows of `table`: every group for a distributed table, the first
/// for a local or reference one.
pub fn holders(database: &DatabaseEntry, table: &str) -> Vec<GroupId> {
    match database.tables.get(table) {
        Some(TableKind::Distributed { .. }) => database.groups.clone(),
        _ => vec![database.group],
    }
}

/// The (group, query) steps gathering `tables` takes, for `shoal_plan`.
pub fn steps(
    database: &DatabaseEntry,
    schema: &Schema,
    tables: &BTreeSet<String>,
) -> Vec<(usize, String)> {
    tables
        .iter()
        .filter_map(|table| {
            let shape = schema.table(table).ok().flatten()?;
            Some((holders(database, table).len(), fetch_sql(&shape)))
        })
        .collect()
}

/// Gathers `tables` into a scratch copy of the schema and runs `statement` there.
pub async fn run(
    router: &Router,
    database: &DatabaseEntry,
    schema: &Schema,
    reads: &dyn GroupReads,
    tables: &BTreeSet<String>,
    statement: &Statement,
) -> Result<StatementResult, ServiceError> {
    let scratch = match gather(router, database, schema, reads, tables).await? {
        Ok(scratch) => scratch,
        Err(refusal) => return Ok(StatementResult::failed(refusal)),
    };
    let statement = statement.clone();
    tokio::task::spawn_blocking(move || {
        let guard = crate::db::guard::StatementGuard::install(
            &scratch,
            crate::db::guard::GuardMode::Reader,
        );
        crate::db::execute::execute_statement(&scratch, &guard, &statement)
    })
    .await
    .map_err(|e| ServiceError::Internal(format!("running a gathered statement: {e}")))
}

/// A scratch copy of the schema holding every row of `tables`; `Ok(Err(message))` when the
/// rows exceed the router's limits.
pub async fn gather(
    router: &Router,
    database: &DatabaseEntry,
    schema: &Schema,
    reads: &dyn GroupReads,
    tables: &BTreeSet<String>,
) -> Result<Result<Connection, String>, ServiceError> {
    let mut fetches = Vec::new();
    for table in tables {
        // Views and SQLite's own tables are not fetched: views read tables, which are.
        let Some(shape) = schema.table(table).map_err(ServiceError::Internal)? else {
            continue;
        };
        if shape.name.to_ascii_lowercase().starts_with("sqlite_") {
            continue;
        }
        let sql = fetch_sql(&shape);
        for group in holders(database, table) {
            fetches.push(Fetch {
                shape: (*shape).clone(),
                group,
                sql: sql.clone(),
            });
        }
    }
    let fetched = join_all(fetches.iter().map(|fetch| async move {
        let result = reads
            .read(fetch.group, Statement::plain(fetch.sql.clone()))
            .await?;
        if let Some(error) = result.error {
            return Err(ServiceError::Internal(format!(
                "gathering {} from group {}: {error}",
                fetch.shape.name, fetch.group
            )));
        }
        Ok(result.rows.unwrap_or_default())
    }))
    .await;
    let limits = router.limits;
    let mut rows = 0usize;
    let mut bytes = 0usize;
    let mut sets: Vec<(&Fetch, RowSet)> = Vec::with_capacity(fetches.len());
    for (fetch, outcome) in fetches.iter().zip(fetched) {
        let set = outcome?;
        rows += set.values.len();
        bytes += set.values.iter().flatten().map(value_bytes).sum::<usize>();
        if rows > limits.rows || bytes > limits.bytes {
            let names: Vec<&str> = fetches.iter().map(|f| f.shape.name.as_str()).collect();
            return Ok(Err(format!(
                "this statement needs every row of {} gathered on one node, more than the \
                 router's limit of {} rows and {} MiB: pin the shard key (key = value, key \
                 IN (…)) so one group answers, or narrow what it reads",
                dedup(&names).join(", "),
                limits.rows,
                limits.bytes / (1024 * 1024)
            )));
        }
        sets.push((fetch, set));
    }
    let owned: Vec<(TableShape, RowSet)> = sets
        .into_iter()
        .map(|(fetch, set)| (fetch.shape.clone(), set))
        .collect();
    let scratch = schema.scratch().map_err(ServiceError::Internal)?;
    tokio::task::spawn_blocking(move || fill(scratch, owned))
        .await
        .map_err(|e| ServiceError::Internal(format!("filling a scratch database: {e}")))?
        .map(Ok)
        .map_err(ServiceError::Internal)
}

/// Inserts the gathered rows, triggers dropped first (they ran where the rows were written).
fn fill(scratch: Connection, sets: Vec<(TableShape, RowSet)>) -> Result<Connection, String> {
    let fail = |e: rusqlite::Error| format!("filling a scratch database: {e}");
    drop_triggers(&scratch).map_err(fail)?;
    scratch.execute_batch("BEGIN").map_err(fail)?;
    for (shape, set) in &sets {
        let columns = row_columns(shape);
        let marks: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote_identifier(&shape.name),
            columns.join(", "),
            marks.join(", ")
        );
        let mut insert = scratch.prepare_cached(&sql).map_err(fail)?;
        for row in &set.values {
            insert
                .execute(rusqlite::params_from_iter(row.iter()))
                .map_err(fail)?;
        }
    }
    scratch.execute_batch("COMMIT").map_err(fail)?;
    Ok(scratch)
}

/// Drops every trigger of `connection`'s main database.
pub fn drop_triggers(connection: &Connection) -> rusqlite::Result<()> {
    let triggers: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'trigger'")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for trigger in triggers {
        connection.execute_batch(&format!("DROP TRIGGER {}", quote_identifier(&trigger)))?;
    }
    Ok(())
}

/// What a value costs in memory, roughly, for the router's byte limit.
pub fn value_bytes(value: &SqlValue) -> usize {
    match value {
        SqlValue::Text(text) => text.len() + 16,
        SqlValue::Blob(blob) => blob.len() + 16,
        _ => 16,
    }
}

fn dedup<'a>(names: &[&'a str]) -> Vec<&'a str> {
    let mut seen = Vec::new();
    for name in names {
        if !seen.contains(name) {
            seen.push(*name);
        }
    }
    seen
}
