//! Runs a scatter plan: the shards' query on every group in parallel, each at the request's
//! read consistency, their rows loaded into an in-memory SQLite table with typeless columns
//! (so no affinity changes a value) and the merge query run there. Where the shards' answers
//! cannot be combined exactly — a shard fails, or sums came back as floating point — the
//! statement is gathered instead, which answers exactly what one database would.

use std::collections::BTreeSet;

use futures_util::future::join_all;
use rusqlite::Connection;

use crate::catalog::view::DatabaseEntry;
use crate::raft::types::{RowSet, Statement, StatementResult};
use crate::router::Router;
use crate::router::gather::{self, holders};
use crate::router::reads::GroupReads;
use crate::router::scatter::{PARTIALS, Scatter};
use crate::router::schema::Schema;
use crate::service::ServiceError;
use crate::types::value::SqlValue;

/// Why the shards' answers were not merged.
enum Declined {
    /// The merge is not exact for these answers: gather instead.
    Gather,
    /// Past the router's limits: the message says so.
    Refused(String),
}

/// Runs `statement` as `scatter` plans it; `tables` are what it reads, for the gather that
/// replaces it when merging would not be exact.
pub async fn run(
    router: &Router,
    database: &DatabaseEntry,
    schema: &Schema,
    reads: &dyn GroupReads,
    scatter: &Scatter,
    tables: &BTreeSet<String>,
    statement: &Statement,
) -> Result<StatementResult, ServiceError> {
    match scatter_and_merge(router, database, reads, scatter, statement).await? {
        Ok(result) => Ok(result),
        Err(Declined::Refused(message)) => Ok(StatementResult::failed(message)),
        Err(Declined::Gather) => {
            crate::metrics::metrics().router_gather.inc();
            gather::run(router, database, schema, reads, tables, statement).await
        }
    }
}

async fn scatter_and_merge(
    router: &Router,
    database: &DatabaseEntry,
    reads: &dyn GroupReads,
    scatter: &Scatter,
    statement: &Statement,
) -> Result<Result<StatementResult, Declined>, ServiceError> {
    let shard_statement = Statement {
        sql: scatter.shard_sql.clone(),
        params: statement.params.clone(),
    };
    let groups = holders(database, &scatter.table);
    let answers = join_all(
        groups
            .iter()
            .map(|group| reads.read(*group, shard_statement.clone())),
    )
    .await;
    let limits = router.limits;
    let mut rows: Vec<Vec<SqlValue>> = Vec::new();
    let mut bytes = 0usize;
    for answer in answers {
        let result = answer?;
        if result.error.is_some() {
            // A shard's error (an overflow, a missing parameter) is the gather's to report,
            // as one database would.
            return Ok(Err(Declined::Gather));
        }
        let set = result.rows.unwrap_or_default();
        for row in set.values {
            if row.len() != scatter.partial_columns
                || scatter
                    .sums
                    .iter()
                    .any(|at| matches!(row.get(*at), Some(SqlValue::Real(_))))
            {
                return Ok(Err(Declined::Gather));
            }
            bytes += row.iter().map(gather::value_bytes).sum::<usize>();
            rows.push(row);
        }
        if rows.len() > limits.rows || bytes > limits.bytes {
            return Ok(Err(Declined::Refused(format!(
                "the shards' answers to this statement come to more than the router's limit \
                 of {} rows and {} MiB gathered on one node: pin the shard key (key = value, \
                 key IN (…)) so one group answers, or narrow what it reads",
                limits.rows,
                limits.bytes / (1024 * 1024)
            ))));
        }
    }
    let scatter = scatter.clone();
    tokio::task::spawn_blocking(move || merge(&scatter, rows))
        .await
        .map_err(|e| ServiceError::Internal(format!("merging the shards' answers: {e}")))?
        .map_err(ServiceError::Internal)
}

/// Loads `rows` into a typeless table and runs the merge query over them.
fn merge(
    scatter: &Scatter,
    rows: Vec<Vec<SqlValue>>,
) -> Result<Result<StatementResult, Declined>, String> {
    let fail = |e: rusqlite::Error| format!("merging the shards' answers: {e}");
    let connection = Connection::open_in_memory().map_err(fail)?;
    let columns: Vec<String> = (0..scatter.partial_columns)
        .map(|i| format!("p{i}"))
        .collect();
    connection
        .execute_batch(&format!(
            "CREATE TABLE {PARTIALS} ({}); BEGIN",
            columns.join(", ")
        ))
        .map_err(fail)?;
    {
        let marks: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let mut insert = connection
            .prepare(&format!(
                "INSERT INTO {PARTIALS} VALUES ({})",
                marks.join(", ")
            ))
            .map_err(fail)?;
        for row in &rows {
            insert
                .execute(rusqlite::params_from_iter(row.iter()))
                .map_err(fail)?;
        }
    }
    connection.execute_batch("COMMIT").map_err(fail)?;
    drop(rows);
    if connection.prepare(&scatter.merge_sql).is_err() {
        // The plan misread the statement (a keyword used as a column's name, say): the
        // gather runs it as written.
        return Ok(Err(Declined::Gather));
    }
    let guard =
        crate::db::guard::StatementGuard::install(&connection, crate::db::guard::GuardMode::Reader);
    let mut result = crate::db::execute::execute_statement(
        &connection,
        &guard,
        &Statement::plain(scatter.merge_sql.clone()),
    );
    if let Some(rows) = result.rows.as_mut() {
        if rows.columns.len() != scatter.columns.len() {
            return Ok(Err(Declined::Gather));
        }
        rows.columns = scatter.columns.clone();
        for (at, declared) in scatter.declared.iter().enumerate() {
            if let (Some(declared), Some(slot)) = (declared, rows.types.get_mut(at)) {
                *slot = declared.clone();
            }
        }
    } else if result.error.is_none() {
        result.rows = Some(RowSet {
            columns: scatter.columns.clone(),
            types: vec![String::new(); scatter.columns.len()],
            values: Vec::new(),
        });
    }
    Ok(Ok(result))
}
