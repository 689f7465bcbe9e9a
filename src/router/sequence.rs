//! Rowids for the new rows of distributed tables, unique across the database's groups: each
//! router takes blocks from a sequence kept in the catalog (`table_sequences`) and hands them
//! out in order, so one client inserting through one node sees SQLite's own 1, 2, 3, …
//! (rowids chosen by the application itself are its own business, as in SQLite).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::catalog::databases::Databases;
use crate::catalog::view::positional;
use crate::raft::types::GroupId;
use crate::service::ServiceError;
use crate::types::value::SqlValue;

/// Rowids taken from the catalog at once (at least; a bigger insert takes what it needs).
const BLOCK: i64 = 1000;
/// Most rowids one statement may ask for.
pub const ROWS_PER_STATEMENT_MAX: usize = 1_000_000;

/// The blocks this router holds: `(database, table)` → `[next, end)`.
#[derive(Default)]
pub struct Sequences {
    blocks: Mutex<HashMap<(GroupId, String), (i64, i64)>>,
}

impl Sequences {
    /// `count` consecutive new rowids of `table` in `database`: the first of them.
    pub async fn take(
        &self,
        databases: &Databases,
        database: GroupId,
        table: &str,
        count: usize,
    ) -> Result<i64, ServiceError> {
        if count > ROWS_PER_STATEMENT_MAX {
            return Err(ServiceError::BadRequest(format!(
                "one statement may insert at most {ROWS_PER_STATEMENT_MAX} rows into a \
                 distributed table; this one inserts {count}"
            )));
        }
        let count = count as i64;
        let key = (database, table.to_string());
        if let Some(first) = self.take_held(&key, count) {
            return Ok(first);
        }
        let wanted = count.max(BLOCK);
        let first = self.reserve(databases, &key, 1, wanted).await?;
        // What is left of the block goes to the next inserts through this node.
        self.hold(key, first + count, first + wanted)?;
        Ok(first)
    }

    /// Makes the rowids this router hands out next come after `given`, a rowid a statement
    /// gave itself: within the block held, by skipping ahead; past it, by moving the
    /// catalog's sequence beyond `given` and taking a new block there (one catalog write per
    /// block of given rowids). Other routers' blocks are not moved: a rowid given through
    /// one node may still be handed out by another's block (see docs/sharding.md).
    pub async fn pass(
        &self,
        databases: &Databases,
        database: GroupId,
        table: &str,
        given: i64,
    ) -> Result<(), ServiceError> {
        let Some(after) = given.checked_add(1) else {
            return Ok(());
        };
        let key = (database, table.to_string());
        {
            let mut blocks = self
                .blocks
                .lock()
                .map_err(|_| ServiceError::Internal("the rowid blocks lock is poisoned".into()))?;
            if let Some((next, end)) = blocks.get_mut(&key) {
                if after <= *next {
                    return Ok(());
                }
                if after < *end {
                    *next = after;
                    return Ok(());
                }
            }
        }
        let first = self.reserve(databases, &key, after, BLOCK).await?;
        self.hold(key, first, first + BLOCK)
    }

    /// Reserves `count` rowids of `key`'s sequence in the catalog, none below `floor`: the
    /// first of them.
    async fn reserve(
        &self,
        databases: &Databases,
        key: &(GroupId, String),
        floor: i64,
        count: i64,
    ) -> Result<i64, ServiceError> {
        let (database, table) = key;
        let results = databases
            .write_catalog(vec![
                positional(
                    "INSERT OR IGNORE INTO table_sequences (database_group, table_name, next)
                     VALUES (?1, ?2, 1)",
                    vec![
                        SqlValue::Integer(*database as i64),
                        SqlValue::Text(table.to_string()),
                    ],
                ),
                positional(
                    "UPDATE table_sequences SET next = max(next, ?4) + ?3
                     WHERE database_group = ?1 AND table_name = ?2 RETURNING next - ?3",
                    vec![
                        SqlValue::Integer(*database as i64),
                        SqlValue::Text(table.to_string()),
                        SqlValue::Integer(count),
                        SqlValue::Integer(floor),
                    ],
                ),
            ])
            .await
            .map_err(ServiceError::from)?;
        results
            .get(1)
            .and_then(|r| r.rows.as_ref())
            .and_then(|rows| rows.values.first())
            .and_then(|row| row.first())
            .and_then(|value| match value {
                SqlValue::Integer(n) => Some(*n),
                _ => None,
            })
            .ok_or_else(|| {
                ServiceError::Internal(format!("the catalog gave no rowids for table {table}"))
            })
    }

    /// Holds `[next, end)` of `key`'s rowids for the next inserts through this node.
    fn hold(&self, key: (GroupId, String), next: i64, end: i64) -> Result<(), ServiceError> {
        self.blocks
            .lock()
            .map_err(|_| ServiceError::Internal("the rowid blocks lock is poisoned".into()))?
            .insert(key, (next, end));
        Ok(())
    }

    fn take_held(&self, key: &(GroupId, String), count: i64) -> Option<i64> {
        let mut blocks = self.blocks.lock().ok()?;
        let (next, end) = blocks.get_mut(key)?;
        if *end - *next < count {
            return None;
        }
        let first = *next;
        *next += count;
        Some(first)
    }
}
