//! A group's side of a cross-group (two-phase) commit: the prepared transaction it holds and,
//! on a coordinator group, the decisions it recorded — both in the state file, so they are
//! replicated, survive restarts and travel in snapshots — and how each step is applied.
//!
//! While a transaction is prepared the group applies no other write (they fail with
//! [`GROUP_HELD_BY_PREPARED`], and the service proposes them again once it is decided): a
//! prepared batch was checked against the data as it is, and must still apply exactly so at
//! commit. One transaction is prepared at a time; another's prepare answers `Busy`.

use rusqlite::{Connection, OptionalExtension};

use crate::types::shard::{ShardStep, StepOutcome, Xid};
use crate::types::{GroupId, StatementBatch, StatementResult};

/// The prepared transaction (at most one row): its id, its batch (postcard), when prepared.
pub const PREPARED_TABLE: &str = "_shoal_prepared";
/// The outcome of each transaction this group coordinated, kept [`DECISIONS_KEPT_MS`].
pub const DECISIONS_TABLE: &str = "_shoal_decisions";

/// The fences in force (`ShardStep::Fence`): their cut and until when (entries' clock).
pub const FENCES_TABLE: &str = "_shoal_fences";

/// Most fences one group holds at once (each is one backup being taken).
pub const FENCES_MAX: i64 = 64;

/// How long a coordinator keeps a decision: a participant that holds a prepared transaction
/// asks for it (`shard::resolver`), so it must outlive any participant's outage that is not a
/// rebuild. A participant asking after it was pruned would be told "aborted".
pub const DECISIONS_KEPT_MS: i64 = 7 * 24 * 3600 * 1000;

/// Creates the tables in a state file (or an image) that lacks them.
pub fn create_tables(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {PREPARED_TABLE}(xid TEXT PRIMARY KEY, batch BLOB NOT NULL, \
             prepared_ms INTEGER NOT NULL) WITHOUT ROWID; \
         CREATE TABLE IF NOT EXISTS {DECISIONS_TABLE}(xid TEXT PRIMARY KEY, outcome TEXT NOT NULL, \
             decided_ms INTEGER NOT NULL) WITHOUT ROWID; \
         CREATE TABLE IF NOT EXISTS {FENCES_TABLE}(cut INTEGER PRIMARY KEY, \
             until_ms INTEGER NOT NULL);"
    ))?;
    crate::db::ownership::create_table(connection)
}

/// Whether a fence is in force at the entries' time `now_ms`.
fn fenced(state: &Connection, now_ms: i64) -> rusqlite::Result<bool> {
    state
        .prepare_cached(&format!(
            "SELECT EXISTS (SELECT 1 FROM {FENCES_TABLE} WHERE until_ms > ?1)"
        ))?
        .query_row([now_ms], |row| row.get(0))
}

/// Sets fence `cut` until `until_ms` (lapsed ones are dropped first); `Busy` when the group
/// holds [`FENCES_MAX`] already.
fn set_fence(
    state: &Connection,
    cut: u64,
    until_ms: i64,
    now_ms: i64,
) -> rusqlite::Result<StepOutcome> {
    drop_lapsed_fences(state, now_ms)?;
    let held: i64 = state
        .prepare_cached(&format!("SELECT count(*) FROM {FENCES_TABLE}"))?
        .query_row([], |row| row.get(0))?;
    if held >= FENCES_MAX {
        return Ok(StepOutcome::Busy);
    }
    state
        .prepare_cached(&format!(
            "INSERT OR REPLACE INTO {FENCES_TABLE}(cut, until_ms) VALUES (?1, ?2)"
        ))?
        .execute(rusqlite::params![cut as i64, until_ms])?;
    Ok(StepOutcome::Fenced)
}

/// Lifts fence `cut`: `Unfenced` when it was still in force, `Unknown` otherwise.
fn lift_fence(state: &Connection, cut: u64, now_ms: i64) -> rusqlite::Result<StepOutcome> {
    drop_lapsed_fences(state, now_ms)?;
    let removed = state
        .prepare_cached(&format!("DELETE FROM {FENCES_TABLE} WHERE cut = ?1"))?
        .execute([cut as i64])?;
    Ok(if removed > 0 {
        StepOutcome::Unfenced
    } else {
        StepOutcome::Unknown
    })
}

fn drop_lapsed_fences(state: &Connection, now_ms: i64) -> rusqlite::Result<()> {
    state
        .prepare_cached(&format!("DELETE FROM {FENCES_TABLE} WHERE until_ms <= ?1"))?
        .execute([now_ms])?;
    Ok(())
}

/// Why a step could not be applied (the state file failed, or holds what this version
/// cannot read): the entry is not applied.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the prepared transaction {xid} does not decode: {reason}")]
    Undecodable { xid: String, reason: String },
}

/// The transaction prepared in this group, if any.
pub fn held(state: &Connection) -> rusqlite::Result<Option<Xid>> {
    let xid: Option<String> = state
        .prepare_cached(&format!("SELECT xid FROM {PREPARED_TABLE} LIMIT 1"))?
        .query_row([], |row| row.get(0))
        .optional()?;
    // An id that does not parse was not written by Shoal; it still holds the group.
    Ok(xid.map(|text| {
        text.parse().unwrap_or(Xid {
            coordinator: GroupId::MAX,
            id: 0,
        })
    }))
}

/// Whether the image at `path` (a copy with its state, `Database::export_image`) holds a
/// prepared transaction.
pub fn image_holds_prepared(path: &std::path::Path) -> rusqlite::Result<bool> {
    let image = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    image.query_row(
        &format!("SELECT EXISTS (SELECT 1 FROM {PREPARED_TABLE})"),
        [],
        |row| row.get(0),
    )
}

/// Every prepared transaction with the time it was prepared (the resolver's work list).
pub fn prepared(state: &Connection) -> rusqlite::Result<Vec<(Xid, i64)>> {
    let mut statement =
        state.prepare_cached(&format!("SELECT xid, prepared_ms FROM {PREPARED_TABLE}"))?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
    })?;
    let mut found = Vec::new();
    for row in rows {
        let (xid, at) = row?;
        if let Ok(xid) = xid.parse() {
            found.push((xid, at));
        }
    }
    Ok(found)
}

fn decision(state: &Connection, xid: Xid) -> rusqlite::Result<Option<StepOutcome>> {
    let outcome: Option<String> = state
        .prepare_cached(&format!(
            "SELECT outcome FROM {DECISIONS_TABLE} WHERE xid = ?1"
        ))?
        .query_row([xid.to_string()], |row| row.get(0))
        .optional()?;
    Ok(outcome.and_then(|text| StepOutcome::parse(&text)))
}

fn record_decision(
    state: &Connection,
    xid: Xid,
    outcome: StepOutcome,
    now_ms: i64,
) -> rusqlite::Result<()> {
    state
        .prepare_cached(&format!(
            "INSERT OR IGNORE INTO {DECISIONS_TABLE}(xid, outcome, decided_ms) VALUES (?1, ?2, ?3)"
        ))?
        .execute(rusqlite::params![xid.to_string(), outcome.as_str(), now_ms])?;
    // Pruned by the entries' own clock, so every replica keeps the same decisions.
    state
        .prepare_cached(&format!(
            "DELETE FROM {DECISIONS_TABLE} WHERE decided_ms < ?1"
        ))?
        .execute([now_ms.saturating_sub(DECISIONS_KEPT_MS)])?;
    Ok(())
}

/// Removes and returns the batch prepared for `xid`, if it is held.
fn release(state: &Connection, xid: Xid) -> Result<Option<StatementBatch>, StepError> {
    let key = xid.to_string();
    let stored: Option<Vec<u8>> = state
        .prepare_cached(&format!(
            "SELECT batch FROM {PREPARED_TABLE} WHERE xid = ?1"
        ))?
        .query_row([&key], |row| row.get(0))
        .optional()?;
    let Some(bytes) = stored else {
        return Ok(None);
    };
    state
        .prepare_cached(&format!("DELETE FROM {PREPARED_TABLE} WHERE xid = ?1"))?
        .execute([&key])?;
    postcard::from_bytes(&bytes)
        .map(Some)
        .map_err(|e| StepError::Undecodable {
            xid: key,
            reason: e.to_string(),
        })
}

/// How a step runs its transaction's batch on the group's data: `keep` false runs it and
/// undoes it (the prepare's check), true applies it (the commit).
pub trait BatchRunner {
    type Error: From<StepError>;
    fn run(
        &mut self,
        batch: &StatementBatch,
        keep: bool,
    ) -> Result<Vec<StatementResult>, Self::Error>;

    /// Applies the batch of a `Reown` step (rows moving in or out, a joining group's
    /// schema) with the user's triggers off: rows that move are not written by the user, and
    /// their triggers fired where the rows were first written.
    fn run_moving(&mut self, batch: &StatementBatch) -> Result<Vec<StatementResult>, Self::Error>;
}

/// Applies `step` in group `group` at the entry's time `now_ms`: the step's outcome first,
/// then the batch's results when it ran.
pub fn apply_step<R: BatchRunner>(
    state: &Connection,
    group: GroupId,
    step: &ShardStep,
    now_ms: i64,
    runner: &mut R,
) -> Result<Vec<StatementResult>, R::Error> {
    let sql = |e: rusqlite::Error| R::Error::from(StepError::Sqlite(e));
    let xid = match step {
        ShardStep::Prepare { xid, .. } | ShardStep::Commit { xid } | ShardStep::Abort { xid } => {
            *xid
        }
        ShardStep::Fence { cut, until_ms } => {
            let outcome = set_fence(state, *cut, *until_ms, now_ms).map_err(sql)?;
            return Ok(vec![outcome.result()]);
        }
        ShardStep::Unfence { cut } => {
            let outcome = lift_fence(state, *cut, now_ms).map_err(sql)?;
            return Ok(vec![outcome.result()]);
        }
        ShardStep::Reown {
            expect,
            version,
            batch,
        } => return reown(state, *expect, *version, batch, runner),
    };
    let coordinates = xid.coordinator == group;
    match step {
        ShardStep::Prepare { batch, .. } => {
            if coordinates && let Some(outcome) = decision(state, xid).map_err(sql)? {
                return Ok(vec![outcome.result()]);
            }
            match held(state).map_err(sql)? {
                Some(other) if other == xid => return Ok(vec![StepOutcome::Prepared.result()]),
                // A fence holds back new transactions; those prepared before it finish.
                _ if fenced(state, now_ms).map_err(sql)? => {
                    return Ok(vec![StepOutcome::Fenced.result()]);
                }
                Some(_) => return Ok(vec![StepOutcome::Busy.result()]),
                None => {}
            }
            let results = runner.run(batch, false)?;
            if results.iter().any(|r| r.error.is_some()) {
                return Ok(with_outcome(StepOutcome::Refused, results));
            }
            let encoded = postcard::to_stdvec(batch).map_err(|e| {
                R::Error::from(StepError::Undecodable {
                    xid: xid.to_string(),
                    reason: e.to_string(),
                })
            })?;
            state
                .prepare_cached(&format!(
                    "INSERT INTO {PREPARED_TABLE}(xid, batch, prepared_ms) VALUES (?1, ?2, ?3)"
                ))
                .and_then(|mut insert| {
                    insert.execute(rusqlite::params![xid.to_string(), encoded, now_ms])
                })
                .map_err(sql)?;
            Ok(with_outcome(StepOutcome::Prepared, results))
        }
        ShardStep::Commit { .. } => {
            if coordinates && let Some(outcome) = decision(state, xid).map_err(sql)? {
                return Ok(vec![outcome.result()]);
            }
            let Some(batch) = release(state, xid)? else {
                return Ok(vec![StepOutcome::Unknown.result()]);
            };
            let results = runner.run(&batch, true)?;
            // It applied at prepare on this same data, with the same clock and seed; a
            // failure now would be a bug, reported as what it did here.
            let outcome = if results.iter().any(|r| r.error.is_some()) {
                StepOutcome::Aborted
            } else {
                StepOutcome::Committed
            };
            if coordinates {
                record_decision(state, xid, outcome, now_ms).map_err(sql)?;
            }
            Ok(with_outcome(outcome, results))
        }
        ShardStep::Abort { .. } => {
            if coordinates {
                if let Some(outcome) = decision(state, xid).map_err(sql)? {
                    if outcome == StepOutcome::Aborted {
                        release(state, xid)?;
                    }
                    return Ok(vec![outcome.result()]);
                }
                record_decision(state, xid, StepOutcome::Aborted, now_ms).map_err(sql)?;
            }
            release(state, xid)?;
            Ok(vec![StepOutcome::Aborted.result()])
        }
        // Answered above.
        ShardStep::Fence { .. } | ShardStep::Unfence { .. } | ShardStep::Reown { .. } => {
            Ok(Vec::new())
        }
    }
}

/// Applies a `Reown` step (see [`ShardStep::Reown`]).
fn reown<R: BatchRunner>(
    state: &Connection,
    expect: u64,
    version: u64,
    batch: &StatementBatch,
    runner: &mut R,
) -> Result<Vec<StatementResult>, R::Error> {
    let sql = |e: rusqlite::Error| R::Error::from(StepError::Sqlite(e));
    if crate::db::ownership::read(state).map_err(sql)? != expect {
        return Ok(vec![StepOutcome::VersionDiffers.result()]);
    }
    if held(state).map_err(sql)?.is_some() {
        return Ok(vec![StepOutcome::Busy.result()]);
    }
    let results = runner.run_moving(batch)?;
    if results.iter().any(|r| r.error.is_some()) {
        return Ok(with_outcome(StepOutcome::Refused, results));
    }
    crate::db::ownership::write(state, version).map_err(sql)?;
    Ok(with_outcome(StepOutcome::Reowned, results))
}

fn with_outcome(outcome: StepOutcome, results: Vec<StatementResult>) -> Vec<StatementResult> {
    let mut all = Vec::with_capacity(results.len() + 1);
    all.push(outcome.result());
    all.extend(results);
    all
}

/// Copies the prepared transaction, the decisions, the fences and the owner version
/// (`ownership`) from `from` into `to` (state file and image, either way), replacing what `to`
/// had; `from` may lack the tables (an image written
/// before them).
pub fn copy_tables(from: &Connection, to: &Connection) -> rusqlite::Result<()> {
    to.execute_batch(&format!(
        "DROP TABLE IF EXISTS {PREPARED_TABLE}; DROP TABLE IF EXISTS {DECISIONS_TABLE}; \
         DROP TABLE IF EXISTS {FENCES_TABLE};"
    ))?;
    create_tables(to)?;
    crate::db::ownership::copy(from, to)?;
    let exists = |name: &str| -> rusqlite::Result<bool> {
        from.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [name],
            |row| row.get::<_, i64>(0).map(|n| n > 0),
        )
    };
    if exists(PREPARED_TABLE)? {
        let mut rows = from.prepare(&format!(
            "SELECT xid, batch, prepared_ms FROM {PREPARED_TABLE}"
        ))?;
        let mut insert = to.prepare(&format!(
            "INSERT INTO {PREPARED_TABLE}(xid, batch, prepared_ms) VALUES (?1, ?2, ?3)"
        ))?;
        let mut found = rows.query([])?;
        while let Some(row) = found.next()? {
            insert.execute(rusqlite::params![
                row.get::<_, String>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, i64>(2)?
            ])?;
        }
    }
    // Fences travel too: every replica must answer a prepare the same way.
    if exists(FENCES_TABLE)? {
        let mut rows = from.prepare(&format!("SELECT cut, until_ms FROM {FENCES_TABLE}"))?;
        let mut insert = to.prepare(&format!(
            "INSERT INTO {FENCES_TABLE}(cut, until_ms) VALUES (?1, ?2)"
        ))?;
        let mut found = rows.query([])?;
        while let Some(row) = found.next()? {
            insert.execute(rusqlite::params![
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?
            ])?;
        }
    }
    if exists(DECISIONS_TABLE)? {
        let mut rows = from.prepare(&format!(
            "SELECT xid, outcome, decided_ms FROM {DECISIONS_TABLE}"
        ))?;
        let mut insert = to.prepare(&format!(
            "INSERT INTO {DECISIONS_TABLE}(xid, outcome, decided_ms) VALUES (?1, ?2, ?3)"
        ))?;
        let mut found = rows.query([])?;
        while let Some(row) = found.next()? {
            insert.execute(rusqlite::params![
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?
            ])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use openraft::EntryPayload;

    use super::*;
    use crate::db::database::Database;
    use crate::types::shard::GROUP_HELD_BY_PREPARED;
    use crate::types::value::SqlValue;
    use crate::types::{Command, Entry, Statement, TypeConfig};

    const GROUP: GroupId = 5;

    struct Replica {
        _dir: tempfile::TempDir,
        database: Arc<Database>,
        next_index: u64,
    }

    impl Replica {
        fn new() -> Replica {
            let dir = tempfile::tempdir().unwrap();
            let database =
                Arc::new(Database::open(&dir.path().join("db.sqlite"), GROUP, 2).unwrap());
            let mut replica = Replica {
                _dir: dir,
                database,
                next_index: 1,
            };
            replica.write("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)");
            replica
        }

        fn apply(&mut self, command: Command) -> Vec<StatementResult> {
            let mut entry: Entry =
                openraft::testing::blank_ent::<TypeConfig>(1, 1, self.next_index);
            self.next_index += 1;
            entry.payload = EntryPayload::Normal(command);
            let mut responses = self.database.apply(&[entry]).unwrap();
            responses.remove(0).batches.into_iter().flatten().collect()
        }

        fn write(&mut self, sql: &str) -> Vec<StatementResult> {
            self.apply(Command {
                timestamp_ms: 1_000,
                batches: vec![StatementBatch::new(vec![Statement::plain(sql)], false)],
                load: None,
                users: None,
                shard: None,
            })
        }

        fn step(&mut self, step: ShardStep) -> (StepOutcome, Vec<StatementResult>) {
            self.step_at(step, 2_000)
        }

        /// `step` in an entry of time `now_ms`.
        fn step_at(&mut self, step: ShardStep, now_ms: i64) -> (StepOutcome, Vec<StatementResult>) {
            let mut results = self.apply(Command {
                timestamp_ms: now_ms,
                batches: Vec::new(),
                load: None,
                users: None,
                shard: Some(step),
            });
            let outcome = StepOutcome::of(&results.remove(0)).expect("an outcome first");
            (outcome, results)
        }

        /// Checks that `sql`, guarded, is refused as routed by the first map (version 0) and
        /// applies at `version`.
        fn writes_only_at_version(&mut self, version: u64, sql: &str) {
            let write = |version| Command {
                timestamp_ms: 2_000,
                batches: vec![guarded(version, sql)],
                load: None,
                users: None,
                shard: None,
            };
            let stale = self.apply(write(0));
            assert!(
                stale.iter().all(crate::db::ownership::is_moved),
                "{stale:?}"
            );
            let current = self.apply(write(version));
            assert!(current.iter().all(|r| r.error.is_none()), "{current:?}");
        }

        async fn rows(&self) -> i64 {
            let results = self
                .database
                .query(
                    vec![Statement::plain("SELECT count(*) FROM t")],
                    std::time::Duration::from_secs(5),
                )
                .await
                .unwrap();
            match &results[0].rows.as_ref().unwrap().values[0][0] {
                SqlValue::Integer(n) => *n,
                other => panic!("count is {other:?}"),
            }
        }
    }

    fn xid(coordinator: GroupId, id: u64) -> Xid {
        Xid { coordinator, id }
    }

    fn insert(sql: &str) -> StatementBatch {
        StatementBatch::new(vec![Statement::plain(sql)], true)
    }

    #[tokio::test]
    async fn a_prepared_batch_is_held_invisible_and_applies_at_commit() {
        let mut replica = Replica::new();
        let (outcome, results) = replica.step(ShardStep::Prepare {
            xid: xid(9, 1),
            batch: insert("INSERT INTO t VALUES (1, 'a'), (2, 'b')"),
        });
        assert_eq!(outcome, StepOutcome::Prepared);
        assert_eq!(
            results[0].rows_affected, 2,
            "the prepare reports what it would do"
        );
        assert_eq!(replica.rows().await, 0, "nothing applied yet");
        assert!(replica.database.holds_prepared());

        let refused = replica.write("INSERT INTO t VALUES (3, 'c')");
        assert_eq!(refused[0].error.as_deref(), Some(GROUP_HELD_BY_PREPARED));

        let (outcome, results) = replica.step(ShardStep::Commit { xid: xid(9, 1) });
        assert_eq!(outcome, StepOutcome::Committed);
        assert_eq!(results[0].rows_affected, 2);
        assert_eq!(replica.rows().await, 2);
        assert!(!replica.database.holds_prepared());
        assert!(
            replica.write("INSERT INTO t VALUES (3, 'c')")[0]
                .error
                .is_none()
        );
        // A repeated commit changes nothing (it was finished here).
        assert_eq!(
            replica.step(ShardStep::Commit { xid: xid(9, 1) }).0,
            StepOutcome::Unknown
        );
        assert_eq!(replica.rows().await, 3);
    }

    #[tokio::test]
    async fn a_failing_batch_is_refused_and_nothing_is_held() {
        let mut replica = Replica::new();
        let (outcome, results) = replica.step(ShardStep::Prepare {
            xid: xid(9, 1),
            batch: insert("INSERT INTO t VALUES (1, NULL)"),
        });
        assert_eq!(outcome, StepOutcome::Refused);
        assert!(results[0].error.as_deref().unwrap().contains("NOT NULL"));
        assert!(!replica.database.holds_prepared());
        assert_eq!(replica.rows().await, 0);
    }

    #[tokio::test]
    async fn one_transaction_is_prepared_at_a_time() {
        let mut replica = Replica::new();
        let first = ShardStep::Prepare {
            xid: xid(9, 1),
            batch: insert("INSERT INTO t VALUES (1, 'a')"),
        };
        assert_eq!(replica.step(first.clone()).0, StepOutcome::Prepared);
        assert_eq!(
            replica.step(first).0,
            StepOutcome::Prepared,
            "a repeated prepare holds still"
        );
        let (outcome, _) = replica.step(ShardStep::Prepare {
            xid: xid(9, 2),
            batch: insert("INSERT INTO t VALUES (2, 'b')"),
        });
        assert_eq!(outcome, StepOutcome::Busy);
        assert_eq!(
            replica.step(ShardStep::Abort { xid: xid(9, 1) }).0,
            StepOutcome::Aborted
        );
        assert_eq!(replica.rows().await, 0);
        assert!(!replica.database.holds_prepared());
    }

    #[tokio::test]
    async fn the_coordinator_group_keeps_the_first_decision() {
        // Committed first: a late abort (a resolver's) learns it and changes nothing.
        let mut replica = Replica::new();
        let committed = xid(GROUP, 1);
        replica.step(ShardStep::Prepare {
            xid: committed,
            batch: insert("INSERT INTO t VALUES (1, 'a')"),
        });
        assert_eq!(
            replica.step(ShardStep::Commit { xid: committed }).0,
            StepOutcome::Committed
        );
        assert_eq!(
            replica.step(ShardStep::Abort { xid: committed }).0,
            StepOutcome::Committed
        );
        assert_eq!(replica.rows().await, 1);

        // Aborted first: the coordinator's late commit learns it, and a late prepare too.
        let aborted = xid(GROUP, 2);
        replica.step(ShardStep::Prepare {
            xid: aborted,
            batch: insert("INSERT INTO t VALUES (2, 'b')"),
        });
        assert_eq!(
            replica.step(ShardStep::Abort { xid: aborted }).0,
            StepOutcome::Aborted
        );
        assert_eq!(
            replica.step(ShardStep::Commit { xid: aborted }).0,
            StepOutcome::Aborted
        );
        let (late, _) = replica.step(ShardStep::Prepare {
            xid: aborted,
            batch: insert("INSERT INTO t VALUES (2, 'b')"),
        });
        assert_eq!(late, StepOutcome::Aborted);
        assert_eq!(replica.rows().await, 1);
        assert!(!replica.database.holds_prepared());
    }

    #[tokio::test]
    async fn a_snapshot_carries_the_prepared_transaction() {
        let mut source = Replica::new();
        source.step(ShardStep::Prepare {
            xid: xid(9, 1),
            batch: insert("INSERT INTO t VALUES (1, 'a')"),
        });
        let image = source._dir.path().join("image.sqlite");
        source.database.export_image(&image).unwrap();

        let mut target = Replica::new();
        target.database.import_image(&image).unwrap();
        assert!(target.database.holds_prepared());
        target.next_index = 10;
        assert_eq!(
            target.step(ShardStep::Commit { xid: xid(9, 1) }).0,
            StepOutcome::Committed
        );
        assert_eq!(target.rows().await, 1);
    }

    #[tokio::test]
    async fn a_fence_holds_back_new_transactions_until_lifted_or_lapsed() {
        let mut replica = Replica::new();
        let prepare = |id: u64, row: u64| ShardStep::Prepare {
            xid: xid(9, id),
            batch: insert(&format!("INSERT INTO t VALUES ({row}, 'x')")),
        };
        assert_eq!(replica.step(prepare(1, 1)).0, StepOutcome::Prepared);
        let fence = ShardStep::Fence {
            cut: 1,
            until_ms: 10_000,
        };
        assert_eq!(replica.step(fence).0, StepOutcome::Fenced);
        // New transactions wait; the one prepared before the fence finishes under it.
        assert_eq!(replica.step(prepare(2, 2)).0, StepOutcome::Fenced);
        assert_eq!(replica.step(prepare(1, 1)).0, StepOutcome::Prepared);
        assert_eq!(
            replica.step(ShardStep::Commit { xid: xid(9, 1) }).0,
            StepOutcome::Committed
        );
        assert_eq!(replica.step(prepare(3, 3)).0, StepOutcome::Fenced);
        assert!(
            !replica.database.holds_prepared(),
            "a fenced prepare holds nothing"
        );

        // A snapshot carries the fence: a replica installing it answers the same.
        let image = replica._dir.path().join("fenced.sqlite");
        replica.database.export_image(&image).unwrap();
        let mut installed = Replica::new();
        installed.database.import_image(&image).unwrap();
        installed.next_index = 20;
        assert_eq!(installed.step(prepare(3, 3)).0, StepOutcome::Fenced);

        assert_eq!(
            replica.step(ShardStep::Unfence { cut: 1 }).0,
            StepOutcome::Unfenced
        );
        assert_eq!(replica.step(prepare(3, 3)).0, StepOutcome::Prepared);
        replica.step(ShardStep::Abort { xid: xid(9, 3) });
        assert_eq!(
            replica.step(ShardStep::Unfence { cut: 1 }).0,
            StepOutcome::Unknown,
            "lifted already"
        );

        // A fence nobody lifts lapses by the entries' clock.
        let short = ShardStep::Fence {
            cut: 2,
            until_ms: 3_000,
        };
        assert_eq!(replica.step_at(short, 2_000).0, StepOutcome::Fenced);
        assert_eq!(replica.step_at(prepare(4, 4), 2_500).0, StepOutcome::Fenced);
        assert_eq!(
            replica.step_at(prepare(4, 4), 3_000).0,
            StepOutcome::Prepared
        );
        assert_eq!(
            replica.step_at(ShardStep::Unfence { cut: 2 }, 3_100).0,
            StepOutcome::Unknown,
            "it had lapsed"
        );
        assert_eq!(replica.rows().await, 1);
    }

    /// A guarded batch: the guard expecting `version`, then `sql`.
    fn guarded(version: u64, sql: &str) -> StatementBatch {
        StatementBatch::new(
            vec![crate::db::ownership::guard(version), Statement::plain(sql)],
            true,
        )
    }

    #[tokio::test]
    async fn a_reown_moves_rows_in_and_changes_the_version_atomically() {
        let mut replica = Replica::new();
        let reown = |expect, version, sql: &str| ShardStep::Reown {
            expect,
            version,
            batch: insert(sql),
        };
        let (outcome, _) = replica.step(reown(3, 4, "INSERT INTO t VALUES (1, 'a')"));
        assert_eq!(outcome, StepOutcome::VersionDiffers, "the group is at 0");
        assert_eq!(replica.rows().await, 0);
        let (outcome, _) = replica.step(reown(0, 4, "INSERT INTO t VALUES (1, 'a'), (2, 'b')"));
        assert_eq!(outcome, StepOutcome::Reowned);
        assert_eq!(replica.rows().await, 2);
        // A failing batch changes neither rows nor version.
        let (outcome, _) = replica.step(reown(4, 5, "INSERT INTO t VALUES (1, 'dup')"));
        assert_eq!(outcome, StepOutcome::Refused);
        assert_eq!(replica.rows().await, 2);
        let (outcome, _) = replica.step(reown(4, 4, "DELETE FROM t WHERE k = 2"));
        assert_eq!(
            outcome,
            StepOutcome::Reowned,
            "the same version again: rows move out"
        );
        assert_eq!(replica.rows().await, 1);
    }

    #[tokio::test]
    async fn writes_and_reads_routed_by_another_version_are_refused_whole() {
        let mut replica = Replica::new();
        let empty = StatementBatch::new(Vec::new(), true);
        replica.step(ShardStep::Reown {
            expect: 0,
            version: 7,
            batch: empty,
        });
        let stale = replica.apply(Command {
            timestamp_ms: 1_000,
            batches: vec![guarded(6, "INSERT INTO t VALUES (1, 'a')")],
            load: None,
            users: None,
            shard: None,
        });
        assert_eq!(
            stale.len(),
            2,
            "one result per statement, the guard's included"
        );
        assert!(
            stale.iter().all(crate::db::ownership::is_moved),
            "{stale:?}"
        );
        assert_eq!(
            replica.rows().await,
            0,
            "nothing of a refused batch applies"
        );
        let current = replica.apply(Command {
            timestamp_ms: 1_000,
            batches: vec![guarded(7, "INSERT INTO t VALUES (1, 'a')")],
            load: None,
            users: None,
            shard: None,
        });
        assert!(current.iter().all(|r| r.error.is_none()), "{current:?}");
        assert_eq!(current[1].rows_affected, 1);
        let read = |version| {
            replica.database.query(
                vec![
                    crate::db::ownership::guard(version),
                    Statement::plain("SELECT count(*) FROM t"),
                ],
                std::time::Duration::from_secs(5),
            )
        };
        let stale = read(6).await.unwrap();
        assert!(
            stale.iter().all(crate::db::ownership::is_moved),
            "{stale:?}"
        );
        let current = read(7).await.unwrap();
        assert!(
            current[1].error.is_none() && current[1].rows.is_some(),
            "{current:?}"
        );
    }

    #[tokio::test]
    async fn ownership_waits_while_a_transaction_is_prepared_and_travels_in_images() {
        let mut replica = Replica::new();
        replica.step(ShardStep::Prepare {
            xid: xid(9, 1),
            batch: insert("INSERT INTO t VALUES (1, 'a')"),
        });
        let (outcome, _) = replica.step(ShardStep::Reown {
            expect: 0,
            version: 2,
            batch: insert("INSERT INTO t VALUES (5, 'e')"),
        });
        assert_eq!(outcome, StepOutcome::Busy);
        replica.step(ShardStep::Commit { xid: xid(9, 1) });
        let (outcome, _) = replica.step(ShardStep::Reown {
            expect: 0,
            version: 2,
            batch: insert("INSERT INTO t VALUES (5, 'e')"),
        });
        assert_eq!(outcome, StepOutcome::Reowned);
        let image = replica._dir.path().join("image.sqlite");
        replica.database.export_image(&image).unwrap();
        let mut other = Replica::new();
        other.database.import_image(&image).unwrap();
        let read = other
            .database
            .query(
                vec![
                    crate::db::ownership::guard(2),
                    Statement::plain("SELECT count(*) FROM t"),
                ],
                std::time::Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert!(read.iter().all(|r| r.error.is_none()), "{read:?}");
        // The writer takes the image's version too (a replica that installed a snapshot).
        other.writes_only_at_version(2, "INSERT INTO t VALUES (9, 'i')");
    }

    /// A restore replays the archived log on a backup image (`Database::open_replay`), and
    /// turns the result back into an image (`into_image`) to load. Both must keep what the
    /// group kept beside its data: a cut's copy is taken under its fence, and a replay that
    /// forgot the fence would hold a prepare the group had refused — and then refuse, as
    /// busy, the next transaction the group did commit (a transfer restored on one side).
    #[tokio::test]
    async fn a_replay_answers_as_the_group_did_and_its_image_keeps_what_it_held() {
        let mut replica = Replica::new();
        replica.step(ShardStep::Reown {
            expect: 0,
            version: 3,
            batch: insert("INSERT INTO t VALUES (1, 'a')"),
        });
        replica.step(ShardStep::Prepare {
            xid: xid(9, 1),
            batch: insert("INSERT INTO t VALUES (2, 'b')"),
        });
        replica.step(ShardStep::Fence {
            cut: 7,
            until_ms: 10_000,
        });
        let base = replica._dir.path().join("base.sqlite");
        replica.database.export_image(&base).unwrap();

        let mut replay = Replica {
            database: Arc::new(Database::open_replay(&base, GROUP).unwrap()),
            _dir: tempfile::tempdir().unwrap(),
            next_index: replica.next_index,
        };
        let prepare = |id: u64, row: u64| ShardStep::Prepare {
            xid: xid(9, id),
            batch: insert(&format!("INSERT INTO t VALUES ({row}, 'x')")),
        };
        assert_eq!(replay.step(prepare(2, 3)).0, StepOutcome::Fenced);
        assert!(replay.database.holds_prepared(), "still holds the first");
        replay.database.into_image().unwrap();
        drop(replay);

        // The replayed image, replayed again (a restore's image loaded, or restored again).
        let mut again = Replica {
            database: Arc::new(Database::open_replay(&base, GROUP).unwrap()),
            _dir: tempfile::tempdir().unwrap(),
            next_index: replica.next_index + 1,
        };
        assert_eq!(again.step(prepare(3, 4)).0, StepOutcome::Fenced);
        assert_eq!(
            again.step(ShardStep::Commit { xid: xid(9, 1) }).0,
            StepOutcome::Committed
        );
        assert_eq!(
            again.step(ShardStep::Unfence { cut: 7 }).0,
            StepOutcome::Unfenced
        );
        assert_eq!(again.step(prepare(4, 5)).0, StepOutcome::Prepared);
        again.step(ShardStep::Abort { xid: xid(9, 4) });
        // The owner version came through both: writes routed by the current map apply.
        again.writes_only_at_version(3, "INSERT INTO t VALUES (6, 'f')");
        assert_eq!(again.rows().await, 3);
    }
}
