//! Which version of its database's slot map a group of a sharded database answers for
//! (resharding, docs/sharding.md). Each group keeps one number, its *owner version*: the map
//! version at which the slots it holds last changed. A router sends each request to a group
//! with a guard statement naming the owner version its map expects there; the group runs the
//! request only when the versions agree, so a router that routed by an older map (slots moved
//! since) is refused, refreshes its map, and routes again — no row is read twice or missed, no
//! write lands in a group that no longer owns its slot.
//!
//! The version is kept in the state file (carried by images like the other state tables) and
//! changed only by `ShardStep::Reown`, in log order. Writes check it in the entry's transaction;
//! reads check the version their snapshot shows, published by the writer through a sequence
//! lock: odd while an entry that may change it commits, so a reader never pairs a snapshot
//! with the version of another.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension};

use crate::types::value::SqlValue;
use crate::types::{Params, Statement, StatementResult};

/// The state table holding the owner version (one row; absent: version 0).
pub const OWNER_TABLE: &str = "_shoal_slot_owner";

/// The guard statement a router puts first in a batch it sends to a group. Recognised by its
/// exact text; a node that does not know it fails it ("no such function"), and with it the
/// batch, rather than run a request routed by a map it cannot check.
pub const GUARD_SQL: &str = "SELECT shoal_owner_version_is(?1)";

/// The start of the error every statement of a refused batch gets.
pub const MOVED: &str = "slot map moved";

/// How long a reader waits for an owner-version change being committed.
const CHANGE_WAIT_MAX: Duration = Duration::from_secs(2);

/// The function naming a stored key's slot, for the statements that move a slot range's rows
/// (`SELECT … WHERE shoal_stored_slot(k) BETWEEN …`, and the `DELETE` after).
pub const STORED_SLOT_FUNCTION: &str = "shoal_stored_slot";

/// Registers the functions of this module on a writer or reader connection: the guard's (it
/// compiles, so statements holding it can be analysed like any other, and answers NULL: the
/// check itself runs before the batch) and [`STORED_SLOT_FUNCTION`] (NULL for a NULL key).
pub fn register(connection: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    let flags = FunctionFlags::SQLITE_UTF8
        | FunctionFlags::SQLITE_DETERMINISTIC
        | FunctionFlags::SQLITE_INNOCUOUS;
    connection.create_scalar_function("shoal_owner_version_is", 1, flags, |_| Ok(None::<i64>))?;
    connection.create_scalar_function(STORED_SLOT_FUNCTION, 1, flags, |context| {
        let value = SqlValue::from(context.get_raw(0));
        if matches!(value, SqlValue::Null) {
            return Ok(None);
        }
        crate::shard::slot::slot_of_stored(&value)
            .map(|slot| Some(i64::from(slot)))
            .map_err(|e| rusqlite::Error::UserFunctionError(e.to_string().into()))
    })
}

/// Creates the owner table in a state file (or an image) that lacks it.
pub fn create_table(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {OWNER_TABLE}(id INTEGER PRIMARY KEY CHECK (id = 1), \
             version INTEGER NOT NULL);"
    ))
}

/// The owner version recorded in `state` (0 when none was ever set, or the table is absent:
/// an image written before resharding existed).
pub fn read(state: &Connection) -> rusqlite::Result<u64> {
    let exists: bool = state.query_row(
        "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [OWNER_TABLE],
        |row| row.get(0),
    )?;
    if !exists {
        return Ok(0);
    }
    let version: Option<i64> = state
        .prepare_cached(&format!("SELECT version FROM {OWNER_TABLE} WHERE id = 1"))?
        .query_row([], |row| row.get(0))
        .optional()?;
    Ok(version.map_or(0, |v| v as u64))
}

/// Records `version` in `state`.
pub fn write(state: &Connection, version: u64) -> rusqlite::Result<()> {
    let version = i64::try_from(version).unwrap_or(i64::MAX);
    state
        .prepare_cached(&format!(
            "INSERT INTO {OWNER_TABLE}(id, version) VALUES (1, ?1) \
             ON CONFLICT(id) DO UPDATE SET version = excluded.version"
        ))?
        .execute([version])?;
    Ok(())
}

/// Copies the owner version from `from` into `to` (state file and image, either way).
pub fn copy(from: &Connection, to: &Connection) -> rusqlite::Result<()> {
    to.execute_batch(&format!("DROP TABLE IF EXISTS {OWNER_TABLE};"))?;
    create_table(to)?;
    let version = read(from)?;
    if version > 0 {
        write(to, version)?;
    }
    Ok(())
}

/// The guard statement expecting `version`.
pub fn guard(version: u64) -> Statement {
    Statement {
        sql: GUARD_SQL.into(),
        params: Params::Positional(vec![SqlValue::Integer(
            i64::try_from(version).unwrap_or(i64::MAX),
        )]),
    }
}

/// The owner version a batch's guard expects, when its first statement is one.
pub fn expected_by(statements: &[Statement]) -> Option<Result<u64, String>> {
    let first = statements.first()?;
    if first.sql != GUARD_SQL {
        return None;
    }
    Some(match &first.params {
        Params::Positional(values) => match values.as_slice() {
            [SqlValue::Integer(version)] if *version >= 0 => Ok(*version as u64),
            _ => Err(format!("{GUARD_SQL} takes one non-negative integer")),
        },
        _ => Err(format!("{GUARD_SQL} takes one positional parameter")),
    })
}

/// What a guarded batch's statements get when the group's version is not the expected one
/// (`Err` from [`expected_by`] included): every statement fails, nothing runs.
pub fn refused(
    statements: usize,
    expected: Result<u64, String>,
    current: u64,
) -> Vec<StatementResult> {
    let message = match expected {
        Ok(expected) => format!(
            "{MOVED}: the request was routed by slot map version {expected} of this group, \
             which now answers for version {current}; nothing was applied, route again"
        ),
        Err(reason) => reason,
    };
    (0..statements.max(1))
        .map(|_| StatementResult::failed(message.clone()))
        .collect()
}

/// Takes the guard's result out of a guarded batch's `results`; a refusal comes back as its
/// message.
pub fn unguard(results: &mut Vec<StatementResult>) -> Result<(), String> {
    if let Some(refused) = results.iter().find(|r| is_moved(r)) {
        return Err(refused.error.clone().unwrap_or_default());
    }
    if !results.is_empty() {
        results.remove(0);
    }
    Ok(())
}

/// Whether a result is a guard's refusal.
pub fn is_moved(result: &StatementResult) -> bool {
    result
        .error
        .as_deref()
        .is_some_and(|e| e.starts_with(MOVED))
}

/// The owner version as the writer last committed it, for readers: `2·version`, plus one
/// while an entry that may change it is being committed.
#[derive(Debug, Default)]
pub struct PublishedOwner(AtomicU64);

impl PublishedOwner {
    pub fn new(version: u64) -> PublishedOwner {
        PublishedOwner(AtomicU64::new(version.saturating_mul(2)))
    }

    /// Marks a change under way (before the entries that may change it commit).
    pub fn begin_change(&self) {
        self.0.fetch_or(1, Ordering::AcqRel);
    }

    /// Publishes `version` as committed (ends a change).
    pub fn publish(&self, version: u64) {
        self.0.store(version.saturating_mul(2), Ordering::Release);
    }

    /// Runs `establish` (which starts a read snapshot) so that no change commits meanwhile,
    /// and returns the version that snapshot shows with what `establish` returned. Retries
    /// while a change is under way, for at most [`CHANGE_WAIT_MAX`].
    pub fn read_stable<T, E>(
        &self,
        mut establish: impl FnMut() -> Result<T, E>,
        mut abandon: impl FnMut(),
        timed_out: impl FnOnce() -> E,
    ) -> Result<(u64, T), E> {
        let until = Instant::now() + CHANGE_WAIT_MAX;
        loop {
            let before = self.0.load(Ordering::Acquire);
            if before & 1 == 0 {
                let established = establish()?;
                if self.0.load(Ordering::Acquire) == before {
                    return Ok((before / 2, established));
                }
                abandon();
            }
            if Instant::now() > until {
                return Err(timed_out());
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_is_recognised_by_its_text_and_parameter() {
        assert_eq!(
            expected_by(&[guard(7), Statement::plain("SELECT 1")]),
            Some(Ok(7))
        );
        assert_eq!(expected_by(&[Statement::plain("SELECT 1")]), None);
        let bad = Statement {
            sql: GUARD_SQL.into(),
            params: Params::Positional(vec![SqlValue::Text("7".into())]),
        };
        assert!(matches!(expected_by(&[bad]), Some(Err(_))));
    }

    #[test]
    fn a_refusal_fails_every_statement_and_says_why() {
        let results = refused(3, Ok(4), 5);
        assert_eq!(results.len(), 3);
        assert!(results.iter().all(is_moved));
        assert!(results[0].error.as_deref().unwrap().contains("version 4"));
    }

    #[test]
    fn the_version_round_trips_through_a_state_file_and_is_zero_without_one() {
        let state = Connection::open_in_memory().unwrap();
        assert_eq!(read(&state).unwrap(), 0);
        create_table(&state).unwrap();
        assert_eq!(read(&state).unwrap(), 0);
        write(&state, 12).unwrap();
        write(&state, 13).unwrap();
        assert_eq!(read(&state).unwrap(), 13);
        let image = Connection::open_in_memory().unwrap();
        copy(&state, &image).unwrap();
        assert_eq!(read(&image).unwrap(), 13);
    }

    #[test]
    fn a_reader_never_takes_a_version_across_a_change() {
        let owner = PublishedOwner::new(3);
        let (version, ()) = owner.read_stable(|| Ok::<_, ()>(()), || {}, || ()).unwrap();
        assert_eq!(version, 3);
        // A change commits while the snapshot is being established: the first attempt is
        // abandoned, the second sees the new version.
        let mut attempts = 0;
        let mut abandoned = 0;
        let (version, ()) = owner
            .read_stable(
                || {
                    attempts += 1;
                    if attempts == 1 {
                        owner.begin_change();
                        owner.publish(4);
                    }
                    Ok::<_, ()>(())
                },
                || abandoned += 1,
                || (),
            )
            .unwrap();
        assert_eq!((version, attempts, abandoned), (4, 2, 1));
    }
}
