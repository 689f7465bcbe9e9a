//! A pooled read-only SQLite connection that runs each request on one snapshot of the database
//! with a schema that matches that snapshot.
//!
//! SQLite compiles statements against the schema a connection cached earlier and only notices a
//! newer schema when a statement starts running. Most stale compilations are re-prepared then,
//! but some fail outright while compiling (`SELECT 1 IN (SELECT * FROM t)` after `t` was
//! recreated with one column: "sub-select returns 3 columns"). A reader therefore opens a read
//! transaction first, compares the snapshot's schema cookie with the one its cache was loaded
//! at, and reloads the schema before compiling anything when they differ.

use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::db::guard::{GuardMode, StatementGuard};
use crate::db::ownership::PublishedOwner;

/// SQLite VM steps between two checks of a reader's deadline.
const DEADLINE_CHECK_STEPS: i32 = 1_000;

/// Compiled user statements kept per reader, so a repeated query is not parsed again.
const CACHED_STATEMENTS_MAX: usize = 64;

/// The text every statement Shoal itself caches on a reader starts with (see [`own_sql`]).
///
/// A reader's statement cache is keyed by SQL text and a cached statement is not authorized
/// again when reused, so a user statement must never be served an entry Shoal compiled with
/// the statement guard lifted: user statements with this prefix are compiled afresh
/// ([`is_own_statement_text`]), and [`crate::db::database::Database::inspect`], which runs
/// Shoal's code on a reader, empties the cache afterwards.
pub const OWN_STATEMENT_MARK: &str = "/* shoal */ ";

/// One of Shoal's own statements on a reader, marked with [`OWN_STATEMENT_MARK`] at compile time.
macro_rules! own_sql {
    ($sql:literal) => {
        concat!("/* shoal */ ", $sql)
    };
}

/// Whether `sql` carries Shoal's own statements' mark, so must not be looked up in the cache.
pub fn is_own_statement_text(sql: &str) -> bool {
    sql.starts_with(OWN_STATEMENT_MARK)
}

/// When a running read must stop.
#[derive(Default)]
struct ReadLimits {
    deadline: Option<Instant>,
    /// Set by the requester when it no longer waits for the answer (a cancelled query, a
    /// client that went away).
    abandoned: Option<Arc<AtomicBool>>,
}

impl ReadLimits {
    fn reached(&self) -> bool {
        self.deadline.is_some_and(|at| Instant::now() > at)
            || self
                .abandoned
                .as_ref()
                .is_some_and(|flag| flag.load(Ordering::Relaxed))
    }
}

/// A read-only connection with its statement guard and an optional deadline.
pub struct Reader {
    connection: Connection,
    guard: Arc<StatementGuard>,
    limits: Arc<Mutex<ReadLimits>>,
    /// Set when the deadline interrupted a statement, so a caller can tell a query cut short
    /// from one that failed on its own.
    deadline_fired: Arc<AtomicBool>,
    /// The schema cookie (`PRAGMA schema_version`) the connection's cached schema belongs to;
    /// `None` until the first request.
    schema_version: Cell<Option<i64>>,
    /// The database generation the read transaction kept open began at; `None` when none is.
    snapshot_at: Cell<Option<u64>>,
    /// The owner version as the writer publishes it (`ownership`).
    owner: Arc<PublishedOwner>,
    /// The owner version the current snapshot shows.
    snapshot_owner: Cell<u64>,
}

impl Reader {
    /// Opens a read-only connection to the database at `path`, whose snapshots take their owner
    /// version from `owner`.
    pub fn open(path: &Path, owner: Arc<PublishedOwner>) -> rusqlite::Result<Reader> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(path, flags)?;
        connection.execute_batch("PRAGMA query_only=1;")?;
        connection.busy_timeout(Duration::from_secs(5))?;
        connection.set_prepared_statement_cache_capacity(CACHED_STATEMENTS_MAX);
        let guard = StatementGuard::install(&connection, GuardMode::Reader);
        crate::db::ownership::register(&connection)?;
        let limits: Arc<Mutex<ReadLimits>> = Arc::default();
        let watched = limits.clone();
        let deadline_fired = Arc::new(AtomicBool::new(false));
        let fired = deadline_fired.clone();
        connection.progress_handler(
            DEADLINE_CHECK_STEPS,
            Some(move || {
                let expired = watched.lock().is_ok_and(|limits| limits.reached());
                if expired {
                    fired.store(true, Ordering::Relaxed);
                }
                expired
            }),
        );
        Ok(Reader {
            connection,
            guard,
            limits,
            deadline_fired,
            schema_version: Cell::new(None),
            snapshot_at: Cell::new(None),
            owner,
            snapshot_owner: Cell::new(0),
        })
    }

    /// Runs `work` inside one read transaction, so every statement it runs sees the same
    /// snapshot, with the connection's schema brought up to that snapshot first. Statements
    /// still running at `deadline` are interrupted.
    pub fn in_snapshot<T>(
        &self,
        deadline: Option<Instant>,
        work: impl FnOnce(&Connection, &StatementGuard) -> T,
    ) -> rusqlite::Result<T> {
        self.deadline_fired.store(false, Ordering::Relaxed);
        self.end_snapshot()?;
        self.begin_snapshot(None)?;
        let outcome = self.run(deadline, work);
        self.end_snapshot()?;
        Ok(outcome)
    }

    /// [`Reader::in_snapshot`] on the read transaction this reader kept open from an earlier
    /// request when the database is still at `generation` (see
    /// `Database::generation`: nothing was written since that transaction began, so it shows
    /// the latest committed data), or on a new one otherwise, which stays open afterwards.
    /// Starting and ending a read transaction (SQLite's WAL read lock, the schema-cookie check)
    /// cost about a quarter of a small read. The caller reads `generation` after deciding the
    /// read may be served, so every write acknowledged before is in it.
    pub fn in_current_snapshot<T>(
        &self,
        deadline: Option<Instant>,
        generation: u64,
        work: impl FnOnce(&Connection, &StatementGuard) -> T,
    ) -> rusqlite::Result<T> {
        self.deadline_fired.store(false, Ordering::Relaxed);
        if self.snapshot_at.get() != Some(generation) || self.connection.is_autocommit() {
            self.end_snapshot()?;
            self.begin_snapshot(Some(generation))?;
        }
        let outcome = self.run(deadline, work);
        // `work` may itself have ended the transaction (a read-only COMMIT is allowed here);
        // a statement cut short by the deadline leaves nothing worth keeping either.
        if self.connection.is_autocommit() || self.deadline_fired() {
            self.end_snapshot()?;
        }
        Ok(outcome)
    }

    /// Ends the read transaction kept open by [`Reader::in_current_snapshot`], if any, so it
    /// no longer holds back checkpoints.
    pub fn end_snapshot(&self) -> rusqlite::Result<()> {
        self.snapshot_at.set(None);
        if !self.connection.is_autocommit() {
            self.internal(own_sql!("ROLLBACK"))?;
        }
        Ok(())
    }

    /// The owner version (`ownership`) the current snapshot shows.
    pub fn owner_version(&self) -> u64 {
        self.snapshot_owner.get()
    }

    fn begin_snapshot(&self, generation: Option<u64>) -> rusqlite::Result<()> {
        // Reading the schema cookie starts the snapshot; the owner version is taken with it.
        let (version, ()) = self.owner.read_stable(
            || {
                self.internal(own_sql!("BEGIN DEFERRED"))?;
                if let Err(error) = self.refresh_schema() {
                    let _ = self.end_snapshot();
                    return Err(error);
                }
                Ok(())
            },
            || {
                let _ = self.end_snapshot();
            },
            || {
                rusqlite::Error::UserFunctionError(
                    "the group's slot ownership stayed mid-change; retry".into(),
                )
            },
        )?;
        self.snapshot_owner.set(version);
        self.snapshot_at.set(generation);
        Ok(())
    }

    fn run<T>(
        &self,
        deadline: Option<Instant>,
        work: impl FnOnce(&Connection, &StatementGuard) -> T,
    ) -> T {
        self.set_deadline(deadline);
        let result = work(&self.connection, &self.guard);
        self.set_deadline(None);
        result
    }

    /// Starts the read transaction's snapshot and, when its schema cookie differs from the one
    /// the cache was loaded at, makes SQLite reload the schema.
    fn refresh_schema(&self) -> rusqlite::Result<()> {
        let current: i64 = self.guard.internal(|| {
            self.connection
                .prepare_cached(own_sql!("PRAGMA schema_version"))?
                .query_row([], |row| row.get(0))
        })?;
        if self.schema_version.get() != Some(current) {
            // Reading the schema table verifies the cookie when the statement starts; on a
            // mismatch SQLite drops its cached schema and reloads it from this snapshot.
            self.guard.internal(|| {
                self.connection
                    .prepare("SELECT count(*) FROM sqlite_schema")?
                    .query_row([], |row| row.get::<_, i64>(0))
            })?;
            self.schema_version.set(Some(current));
        }
        Ok(())
    }

    /// Whether the deadline of the last [`Reader::in_snapshot`] interrupted a statement.
    pub fn deadline_fired(&self) -> bool {
        self.deadline_fired.load(Ordering::Relaxed)
    }

    /// Runs one of Shoal's own statements (text from [`own_sql`]); cached, as every request
    /// runs them.
    fn internal(&self, sql: &'static str) -> rusqlite::Result<()> {
        debug_assert!(is_own_statement_text(sql), "unmarked own statement {sql}");
        self.guard
            .internal(|| self.connection.prepare_cached(sql)?.execute([]).map(|_| ()))
    }

    fn set_deadline(&self, deadline: Option<Instant>) {
        if let Ok(mut limits) = self.limits.lock() {
            limits.deadline = deadline;
        }
    }

    /// Statements stop (as at the deadline) once `flag` is set; `None` clears it.
    pub fn set_abandoned(&self, flag: Option<Arc<AtomicBool>>) {
        if let Ok(mut limits) = self.limits.lock() {
            limits.abandoned = flag;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::execute::{execute_read, execute_statement, is_read_only};
    use crate::db::state_file::USERS_TABLE;
    use crate::types::Statement;
    use crate::types::value::SqlValue;

    /// A WAL database in a temporary directory (kept while the first value lives), made by
    /// `setup` on the returned writer connection, and a reader of it.
    fn wal_database(setup: &str) -> (tempfile::TempDir, Connection, Reader) {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("db.sqlite");
        let writer = Connection::open(&path).unwrap();
        writer.execute_batch("PRAGMA journal_mode=WAL").unwrap();
        writer.execute_batch(setup).unwrap();
        let reader = Reader::open(&path, Arc::default()).unwrap();
        (directory, writer, reader)
    }

    /// `SELECT count(*) FROM t`'s rows, run on `connection` within a request.
    fn count_of_t(connection: &Connection, guard: &StatementGuard) -> Vec<Vec<SqlValue>> {
        execute_read(
            connection,
            guard,
            &Statement::plain("SELECT count(*) FROM t"),
        )
        .rows
        .unwrap()
        .values
    }

    fn query(reader: &Reader, sql: &str) -> Result<Vec<Vec<SqlValue>>, String> {
        let result = reader
            .in_snapshot(None, |connection, guard| {
                execute_read(connection, guard, &Statement::plain(sql))
            })
            .map_err(|e| e.to_string())?;
        match result.error {
            Some(error) => Err(error),
            None => Ok(result.rows.map(|r| r.values).unwrap_or_default()),
        }
    }

    /// Another connection drops and recreates a table with fewer columns; statements that only
    /// compile against the new schema work on a reader that cached the old one.
    #[test]
    fn reader_compiles_against_a_schema_changed_by_another_connection() {
        let (_directory, writer, reader) =
            wal_database("CREATE TABLE t1(a, b, c); INSERT INTO t1 VALUES (1, 2, 3);");
        assert_eq!(
            query(&reader, "SELECT * FROM t1"),
            Ok(vec![vec![
                SqlValue::Integer(1),
                SqlValue::Integer(2),
                SqlValue::Integer(3)
            ]])
        );

        writer
            .execute_batch("DROP TABLE t1; CREATE TABLE t1(x); INSERT INTO t1 VALUES (1);")
            .unwrap();

        assert_eq!(
            query(&reader, "SELECT 1 IN (SELECT * FROM t1)"),
            Ok(vec![vec![SqlValue::Integer(1)]])
        );
        let classified = reader
            .in_snapshot(None, |connection, _| {
                is_read_only(connection, "SELECT 2 NOT IN t1")
            })
            .unwrap();
        assert_eq!(classified, Some(true));
    }

    /// A query compiled for an earlier request is reused, and still answers from the table
    /// as it is now after another connection recreated it with other columns.
    #[test]
    fn a_reused_query_follows_a_recreated_table() {
        let (_directory, writer, reader) =
            wal_database("CREATE TABLE t(a, b); INSERT INTO t VALUES (1, 2);");
        let all = "SELECT * FROM t";
        assert_eq!(
            query(&reader, all),
            Ok(vec![vec![SqlValue::Integer(1), SqlValue::Integer(2)]])
        );
        writer
            .execute_batch("DROP TABLE t; CREATE TABLE t(x); INSERT INTO t VALUES ('new');")
            .unwrap();
        assert_eq!(
            query(&reader, all),
            Ok(vec![vec![SqlValue::Text("new".into())]])
        );
    }

    /// A user statement whose text equals one Shoal compiled for itself with the guard lifted
    /// (and cached) is compiled afresh, under the guard: it is refused.
    #[test]
    fn a_user_statement_never_reuses_one_of_shoals_own() {
        let (_directory, _writer, reader) = wal_database(&format!(
            "CREATE TABLE {USERS_TABLE}(name); INSERT INTO {USERS_TABLE} VALUES ('admin');"
        ));
        let own = format!("{OWN_STATEMENT_MARK}SELECT name FROM {USERS_TABLE}");
        let read_by_shoal = reader
            .in_snapshot(None, |connection, guard| {
                guard.internal(|| {
                    connection
                        .prepare_cached(&own)?
                        .query_row([], |row| row.get::<_, String>(0))
                })
            })
            .unwrap();
        assert_eq!(read_by_shoal.unwrap(), "admin");
        let error = query(&reader, &own).unwrap_err();
        assert!(error.contains("internal to Shoal"), "{error}");
        let error = query(&reader, &format!("SELECT name FROM {USERS_TABLE}")).unwrap_err();
        assert!(error.contains("internal to Shoal"), "{error}");
    }

    #[test]
    fn own_statements_carry_the_mark() {
        assert_eq!(
            own_sql!("ROLLBACK"),
            format!("{OWN_STATEMENT_MARK}ROLLBACK")
        );
        assert!(is_own_statement_text(own_sql!("BEGIN DEFERRED")));
    }

    /// A read transaction kept from an earlier request is reused while the generation the
    /// caller passes is the one it began at (nothing was written since, as far as the caller
    /// knows), and replaced by a fresh one when the generation moved on.
    #[test]
    fn a_kept_snapshot_serves_until_the_generation_moves() {
        let (_directory, writer, reader) =
            wal_database("CREATE TABLE t(x); INSERT INTO t VALUES (1);");
        let count = |generation| {
            reader
                .in_current_snapshot(None, generation, count_of_t)
                .unwrap()
        };
        assert_eq!(count(0), vec![vec![SqlValue::Integer(1)]]);
        writer.execute_batch("INSERT INTO t VALUES (2)").unwrap();
        assert_eq!(
            count(0),
            vec![vec![SqlValue::Integer(1)]],
            "same generation: the kept snapshot"
        );
        assert_eq!(count(1), vec![vec![SqlValue::Integer(2)]]);
        reader.end_snapshot().unwrap();
        assert!(
            reader.connection.is_autocommit(),
            "ended: no read lock held"
        );
        // A request that is not about the kept snapshot never sees it.
        writer.execute_batch("INSERT INTO t VALUES (3)").unwrap();
        assert_eq!(count(1), vec![vec![SqlValue::Integer(3)]]);
        assert_eq!(
            query(&reader, "SELECT count(*) FROM t"),
            Ok(vec![vec![SqlValue::Integer(3)]])
        );
    }

    /// Every statement of one request sees the same snapshot, even while another connection
    /// commits between them.
    #[test]
    fn statements_of_one_request_share_a_snapshot() {
        let (_directory, writer, reader) =
            wal_database("CREATE TABLE t(x); INSERT INTO t VALUES (1);");
        let counts = reader
            .in_snapshot(None, |connection, guard| {
                let count = || count_of_t(connection, guard);
                let first = count();
                writer.execute_batch("INSERT INTO t VALUES (2)").unwrap();
                (first, count())
            })
            .unwrap();
        assert_eq!(counts.0, counts.1);
        assert_eq!(
            query(&reader, "SELECT count(*) FROM t"),
            Ok(vec![vec![SqlValue::Integer(2)]])
        );
    }

    /// A request that ends the read transaction itself leaves the connection usable.
    #[test]
    fn a_commit_inside_a_request_is_harmless() {
        let (_directory, _writer, reader) = wal_database("CREATE TABLE t(x)");
        let _ = query(&reader, "COMMIT");
        assert_eq!(
            query(&reader, "SELECT count(*) FROM t"),
            Ok(vec![vec![SqlValue::Integer(0)]])
        );
    }

    /// A read nobody waits for any more stops at the next progress check, not at its deadline.
    #[test]
    fn an_abandoned_read_stops_at_once() {
        let (_directory, _writer, reader) = wal_database("CREATE TABLE t(x)");
        let abandoned = Arc::new(AtomicBool::new(false));
        reader.set_abandoned(Some(abandoned.clone()));
        let flag = abandoned.clone();
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            flag.store(true, Ordering::Relaxed);
        });
        let started = Instant::now();
        let endless = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) \
                       SELECT count(*) FROM n";
        let outcome = reader.in_snapshot(Some(Instant::now() + Duration::from_secs(60)), |c, g| {
            execute_statement(c, g, &Statement::plain(endless))
        });
        canceller.join().unwrap();
        let result = outcome.unwrap();
        assert!(result.error.is_some_and(|e| e.contains("interrupt")));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert!(reader.deadline_fired());
    }
}
