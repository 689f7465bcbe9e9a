//! One Raft group's SQLite database: a single writer connection that applies committed log
//! entries deterministically, a bounded pool of read-only connections, and whole-image
//! export/import for snapshots.
//!
//! Architecture invariant: the applied log id and membership are written in the same write
//! step as the data each entry changes, into the companion state file
//! ([`crate::db::state_file`]); after any stop but a clean shutdown both files are rebuilt from
//! the snapshot and the log, so a crash can never apply an entry twice or skip one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use openraft::EntryPayload;
use openraft::entry::RaftEntry;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::Semaphore;

use crate::db::clock_vfs::{self, ClockVfs};
use crate::db::determinism::EntryRandom;
use crate::db::execute::{
    StatementShape, execute_read, execute_statement, is_read_only, is_read_only_reusing,
    statement_shape,
};
use crate::db::guard::{GuardMode, INTERNAL_TABLE_PREFIX, StatementGuard, TableAccess};
use crate::db::ownership::{self, PublishedOwner};
use crate::db::reader::Reader;
use crate::db::state_file::{self, STATE_TABLE, USERS_TABLE};
use crate::db::twopc;
use crate::types::shard::{GROUP_HELD_BY_PREPARED, ShardStep, Xid};
use crate::types::{
    CommandResponse, Entry, GroupId, LogId, SERIALIZATION_FAILURE, Statement, StatementBatch,
    StatementResult, StoredMembership, results_digest,
};

/// A write statement may run this many SQLite VM steps (counted in units of
/// [`WRITER_PROGRESS_STEP`]) before it is interrupted. Counting steps, not time, keeps the
/// outcome identical on every replica.
const WRITER_PROGRESS_UNITS_MAX: u64 = 200_000;
const WRITER_PROGRESS_STEP: i32 = 10_000;

/// How long a read may run on the calling (async) thread before it is moved to the blocking
/// pool; see [`Database::query`].
const INLINE_READ_BUDGET: Duration = Duration::from_micros(500);

/// Errors of the database layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error("SQLite error on {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt Shoal state in {path}: {message}")]
    CorruptState { path: PathBuf, message: String },
    #[error("query timed out after {0:?}")]
    Timeout(Duration),
    #[error("database is shutting down")]
    Closed,
    #[error("{0}")]
    Internal(String),
}

impl From<DbError> for std::io::Error {
    fn from(error: DbError) -> Self {
        std::io::Error::other(error.to_string())
    }
}

/// The applied position and membership recorded in a database file.
#[derive(Debug, Clone, Default)]
pub struct AppliedState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    /// The cluster's identity, fixed by the first command it applied (see [`cluster_id_for`]).
    pub cluster_id: Option<String>,
    /// The leader timestamp of the last command applied: the moment the data is "as of"
    /// (backups are chosen by it for a point-in-time restore).
    pub last_command_ms: Option<i64>,
}

/// The key under which the cluster id is stored in the state table.
const CLUSTER_ID_KEY: &str = "cluster_id";

/// The key under which the last applied command's leader timestamp is stored.
const LAST_COMMAND_KEY: &str = "last_command_ms";

/// The id a cluster takes from its first command: derived from that entry's log id and the
/// leader's clock, so every replica records the same one without a separate agreement.
fn cluster_id_for(log_id: &LogId, timestamp_ms: i64) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(log_id.leader_id.term.to_le_bytes())
        .chain_update(log_id.leader_id.node_id.to_le_bytes())
        .chain_update(log_id.index.to_le_bytes())
        .chain_update(timestamp_ms.to_le_bytes())
        .finalize();
    hex::encode(&digest[..8])
}

struct Writer {
    /// The user's database.
    connection: Connection,
    /// Shoal's state for it (applied log id, membership, users): see [`state_file`].
    state: Connection,
    guard: Arc<StatementGuard>,
    random: EntryRandom,
    clock: ClockVfs,
    progress_units: Arc<AtomicU64>,
    /// Whether the database already records its cluster id.
    has_cluster_id: bool,
    /// Set when the data committed but its state did not (a full disk, say): the files no
    /// longer agree, so they must not be marked clean.
    files_disagree: bool,
    /// The owner version (`ownership`) as of the entries applied so far, so a guarded batch
    /// is checked without reading the state file.
    owner: std::cell::Cell<u64>,
}

/// One group's SQLite database.
pub struct Database {
    path: PathBuf,
    /// The group whose data this is (a cross-group transaction's coordinator records its
    /// decision).
    group: GroupId,
    vfs_name: String,
    writer: Mutex<Option<Writer>>,
    idle_readers: Mutex<Vec<Reader>>,
    reader_permits: Arc<Semaphore>,
    /// Shared by everything that uses the database file; taken exclusively to replace it.
    file_lock: RwLock<()>,
    /// Advanced after every use of the writer. A reader's kept read transaction begun at the
    /// current value still shows the latest committed data (`Reader::in_current_snapshot`).
    generation: AtomicU64,
    /// Bumped whenever the users may have changed (a users entry, a load, a new image), so
    /// caches of them know to reload.
    users_version: AtomicU64,
    /// What opening found on disk (a rebuild after an unclean stop, say).
    opening: state_file::Opening,
    /// Whether a cross-group transaction is prepared here (as of the last apply): writes
    /// wait for its decision instead of being refused.
    holding: std::sync::atomic::AtomicBool,
    /// Set by [`Database::close`]: nothing may reopen or replace the files afterwards.
    closed: std::sync::atomic::AtomicBool,
    /// The owner version (`ownership`) as committed, for readers' snapshots.
    owner: Arc<PublishedOwner>,
}

impl Database {
    /// Opens (creating if needed) the database file at `path` for `group`.
    pub fn open(path: &Path, group: GroupId, readers_max: usize) -> Result<Database, DbError> {
        Database::open_with_clock(path, group, &format!("shoal-clock-g{group}"), readers_max)
    }

    /// Opens an image to replay group `group`'s archived log onto it (a restore): the
    /// entries' steps are applied as that group applied them (it coordinates its own
    /// cross-group transactions), on a clock of its own — a live replica of the group in
    /// this process keeps its "now".
    pub fn open_replay(path: &Path, group: GroupId) -> Result<Database, DbError> {
        Database::open_with_clock(path, group, &format!("shoal-clock-replay-g{group}"), 1)
    }

    fn open_with_clock(
        path: &Path,
        group: GroupId,
        clock: &str,
        readers_max: usize,
    ) -> Result<Database, DbError> {
        let vfs = clock_vfs::register(clock).map_err(DbError::Internal)?;
        let opening = state_file::prepare(path)?;
        tracing::debug!(database = %path.display(), ?opening, "opening the database");
        let writer = open_writer(path, &vfs)?;
        let holding = twopc::held(&writer.state)
            .map_err(|e| sqlite_error(path, e))?
            .is_some();
        let owner = ownership::read(&writer.state).map_err(|e| sqlite_error(path, e))?;
        Ok(Database {
            owner: Arc::new(PublishedOwner::new(owner)),
            path: path.to_path_buf(),
            group,
            vfs_name: vfs.name.clone(),
            writer: Mutex::new(Some(writer)),
            idle_readers: Mutex::new(Vec::new()),
            reader_permits: Arc::new(Semaphore::new(readers_max.max(1))),
            file_lock: RwLock::new(()),
            generation: AtomicU64::new(0),
            users_version: AtomicU64::new(1),
            opening,
            holding: std::sync::atomic::AtomicBool::new(holding),
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Whether a cross-group transaction is prepared in this group (ordinary writes wait).
    pub fn holds_prepared(&self) -> bool {
        self.holding.load(Ordering::Acquire)
    }

    /// The prepared cross-group transactions with the time each was prepared (entry clock).
    pub fn prepared_transactions(&self) -> Result<Vec<(Xid, i64)>, DbError> {
        self.with_writer(|writer| {
            twopc::prepared(&writer.state).map_err(|e| sqlite_error(&self.path, e))
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What opening found on disk.
    pub fn opening(&self) -> state_file::Opening {
        self.opening
    }

    /// Changes whenever the replicated users may have changed.
    pub fn users_version(&self) -> u64 {
        self.users_version.load(Ordering::Acquire)
    }

    /// Bytes of the database file (what a snapshot copies, roughly; its write-ahead log is not
    /// counted, as it keeps its size after checkpoints). 0 when unreadable.
    pub fn file_bytes(&self) -> u64 {
        let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
        size(&self.path)
    }

    /// The last applied log id and membership stored in the database.
    pub fn applied_state(&self) -> Result<AppliedState, DbError> {
        self.with_writer(|writer| read_state(&writer.state, &self.path))
    }

    /// The replicated users (read from the state file, off the async threads).
    /// The replicated users, read on a connection of their own (not the writer's: an auth
    /// reload must not wait behind a long apply, and works while the node shuts down).
    pub async fn users(self: &Arc<Self>) -> Result<crate::types::users::Users, DbError> {
        let state_path = state_file::state_path(&self.path);
        tokio::task::spawn_blocking(move || {
            let connection = Connection::open_with_flags(
                &state_path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| sqlite_error(&state_path, e))?;
            read_users(&connection).map_err(|e| sqlite_error(&state_path, e))
        })
        .await
        .map_err(|e| DbError::Internal(format!("reading users: {e}")))?
    }

    /// Stops the database cleanly: syncs the user's database, then leaves the clean-shutdown
    /// marker in the state file, so the next start trusts both files (see [`state_file`]).
    /// Nothing is applied afterwards.
    pub fn close(&self) -> Result<(), DbError> {
        let Some(writer) = self.retire_writer()? else {
            return Ok(());
        };
        if writer.files_disagree {
            tracing::warn!(
                "the database and its state file disagree after a failed commit: not marking \
                 them clean, the next start rebuilds them"
            );
            return Ok(());
        }
        writer
            .guard
            .internal(|| state_file::checkpoint_and_sync(&writer.connection, &self.path))?;
        state_file::mark_clean(&writer.state, &self.path)
    }

    /// Takes the writer for good, once in-flight applies and reads are done: afterwards
    /// nothing applies, imports or reopens (`None` when it was taken already).
    fn retire_writer(&self) -> Result<Option<Writer>, DbError> {
        let _file = self
            .file_lock
            .write()
            .map_err(|_| DbError::Internal("file lock poisoned".into()))?;
        self.idle_readers
            .lock()
            .map_err(|_| DbError::Internal("reader pool poisoned".into()))?
            .clear();
        let mut slot = self
            .writer
            .lock()
            .map_err(|_| DbError::Internal("writer lock poisoned".into()))?;
        self.closed.store(true, Ordering::SeqCst);
        Ok(slot.take())
    }

    /// Puts the state back inside the database file — applied state, users, cross-group
    /// transactions, fences and owner version — and removes the state file: the file is an
    /// image again (a restore's replay ends so). Nothing is applied afterwards.
    pub fn into_image(&self) -> Result<(), DbError> {
        let Some(writer) = self.retire_writer()? else {
            return Err(DbError::Closed);
        };
        let state = read_state(&writer.state, &self.path)?;
        let users = read_users(&writer.state).map_err(|e| sqlite_error(&self.path, e))?;
        let Writer {
            connection,
            state: state_connection,
            guard,
            ..
        } = writer;
        guard.internal(|| -> Result<(), DbError> {
            write_state(&connection, &self.path, &state)?;
            write_users(&connection, &self.path, &users)?;
            twopc::copy_tables(&state_connection, &connection)
                .map_err(|e| sqlite_error(&self.path, e))
        })?;
        drop(state_connection);
        guard.internal(|| state_file::checkpoint_and_sync(&connection, &self.path))?;
        drop(connection);
        let state_path = state_file::state_path(&self.path);
        for file in [
            state_path.clone(),
            state_file::sidecar(&state_path, "-wal"),
            state_file::sidecar(&state_path, "-shm"),
        ] {
            let _ = std::fs::remove_file(file);
        }
        Ok(())
    }

    /// Applies committed entries in order, in one SQLite transaction together with the new
    /// applied log id. Returns one response per entry.
    pub fn apply(&self, entries: &[Entry]) -> Result<Vec<CommandResponse>, DbError> {
        let _file = self
            .file_lock
            .read()
            .map_err(|_| DbError::Internal("file lock poisoned".into()))?;
        let users_change = entries.iter().any(|entry| {
            matches!(&entry.payload, EntryPayload::Normal(c) if c.users.is_some() || c.load.is_some())
        });
        let steps = entries
            .iter()
            .any(|entry| matches!(&entry.payload, EntryPayload::Normal(c) if c.shard.is_some()));
        let reowns = entries.iter().any(|entry| {
            matches!(&entry.payload,
                EntryPayload::Normal(c) if matches!(c.shard, Some(ShardStep::Reown { .. })))
        });
        if reowns {
            // Readers must not pair a snapshot with the version of another (`ownership`).
            self.owner.begin_change();
        }
        let applied = self.with_writer(|writer| {
            // An entry that replaces the whole database is applied on its own, between the
            // ordinary entries before and after it.
            let mut responses = Vec::with_capacity(entries.len());
            let mut rest = entries;
            while !rest.is_empty() {
                let load_at = rest.iter().position(
                    |entry| matches!(&entry.payload, EntryPayload::Normal(c) if c.load.is_some()),
                );
                let (plain, from_load) = rest.split_at(load_at.unwrap_or(rest.len()));
                responses.extend(apply_entries(writer, plain, &self.path, self.group)?);
                let Some((entry, after)) = from_load.split_first() else {
                    break;
                };
                if let EntryPayload::Normal(command) = &entry.payload
                    && let Some(load) = &command.load
                {
                    // A prepared transaction was checked against the data a load would
                    // replace: the load waits for its decision (the entry applies as a no-op).
                    if twopc::held(&writer.state)
                        .map_err(|e| sqlite_error(&self.path, e))?
                        .is_some()
                    {
                        let mut state = read_state(&writer.state, &self.path)?;
                        state.last_applied = Some(entry.log_id());
                        in_state_transaction(&writer.state, &self.path, |at| {
                            write_state(&writer.state, at, &state)
                        })?;
                        responses.push(CommandResponse {
                            batches: vec![vec![StatementResult::failed(GROUP_HELD_BY_PREPARED)]],
                        });
                        rest = after;
                        continue;
                    }
                    let mut state = read_state(&writer.state, &self.path)?;
                    state.last_command_ms = Some(command.timestamp_ms);
                    state.last_applied = Some(entry.log_id());
                    crate::db::load::replace_database(
                        &mut writer.connection,
                        &self.path,
                        load,
                        &entry.log_id(),
                    )?;
                    // The load keeps the cluster's users, membership and id; only the applied
                    // position moves.
                    if let Err(error) = in_state_transaction(&writer.state, &self.path, |at| {
                        write_state(&writer.state, at, &state)
                    }) {
                        writer.files_disagree = true;
                        return Err(error);
                    }
                    writer.has_cluster_id = state.cluster_id.is_some();
                    responses.push(CommandResponse {
                        batches: vec![vec![StatementResult::default()]],
                    });
                }
                rest = after;
            }
            if steps {
                let holding =
                    twopc::held(&writer.state).map_err(|e| sqlite_error(&self.path, e))?;
                self.holding.store(holding.is_some(), Ordering::Release);
            }
            Ok(responses)
        });
        if reowns {
            // Committed or rolled back: what the state file says now is what readers see.
            let published = self.with_writer(|writer| {
                let owner =
                    ownership::read(&writer.state).map_err(|e| sqlite_error(&self.path, e))?;
                writer.owner.set(owner);
                Ok(owner)
            })?;
            self.owner.publish(published);
        }
        if users_change {
            self.users_version.fetch_add(1, Ordering::AcqRel);
        }
        applied
    }

    /// Runs `batch` (an interactive transaction so far) on the writer connection exactly as
    /// applying it would, and rolls it back: what the client sees inside its transaction,
    /// its own writes included, without anything being written. Holds the writer meanwhile,
    /// so applies wait for it; its statements are bounded like any write.
    pub fn rehearse(&self, batch: &StatementBatch) -> Result<Vec<StatementResult>, DbError> {
        self.on_rolled_back_writer(|writer| apply_pinned_or_plain(writer, batch, &self.path, None))
    }

    /// The shape of `sql` as it compiles after `batch` (a transaction so far) ran on the
    /// writer, rolled back like [`Database::rehearse`]: a statement naming a table the
    /// transaction created compiles.
    pub fn describe_after(
        &self,
        batch: &StatementBatch,
        sql: &str,
    ) -> Result<Result<StatementShape, String>, DbError> {
        self.on_rolled_back_writer(|writer| {
            if !batch.statements.is_empty() {
                apply_pinned_or_plain(writer, batch, &self.path, None)?;
            }
            Ok(writer
                .guard
                .with_user_savepoints(|| statement_shape(&writer.connection, &writer.guard, sql)))
        })
    }

    /// Runs `work` on the writer inside a transaction that is always rolled back.
    fn on_rolled_back_writer<T>(
        &self,
        work: impl FnOnce(&Writer) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let _file = self
            .file_lock
            .read()
            .map_err(|_| DbError::Internal("file lock poisoned".into()))?;
        self.with_writer(|writer| {
            let internal = |sql: &str| run_internal(writer, &self.path, sql);
            internal("BEGIN IMMEDIATE")?;
            let outcome = work(writer);
            writer.clock.clock.clear();
            internal("ROLLBACK")?;
            outcome
        })
    }

    /// Runs read-only statements on a pooled read connection, failing after `timeout`.
    ///
    /// Most reads take microseconds, less than handing them to another thread and back costs
    /// (two thread wake-ups, the largest item in a profile of point selects). So a read first
    /// runs on the calling thread with a budget of [`INLINE_READ_BUDGET`]; one that needs
    /// longer is interrupted — reads have no effects, so that is safe — and runs again on the
    /// blocking pool with the full timeout.
    pub async fn query(
        self: &Arc<Self>,
        statements: Vec<Statement>,
        timeout: Duration,
    ) -> Result<Vec<StatementResult>, DbError> {
        if let Some(results) = self.try_query_inline(&statements) {
            return results;
        }
        let permit = tokio::time::timeout(timeout, self.reader_permits.clone().acquire_owned())
            .await
            .map_err(|_| DbError::Timeout(timeout))?
            .map_err(|_| DbError::Closed)?;
        let database = self.clone();
        // Dropping this future (a cancelled query, a client gone) stops the read at once
        // instead of at its timeout.
        let abandoned = AbandonOnDrop::default();
        let flag = abandoned.0.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let deadline = Instant::now() + timeout;
            database.with_reader(|reader| {
                reader.set_abandoned(Some(flag));
                let generation = database.generation.load(Ordering::Acquire);
                let results = read_all(reader, deadline, generation, &statements);
                reader.set_abandoned(None);
                results
            })
        })
        .await
        .map_err(|error| DbError::Internal(format!("query task failed: {error}")))?
    }

    /// The inline attempt of [`Database::query`]: `None` when it did not finish within the
    /// budget, or could not start without waiting (no idle reader, the file being replaced).
    fn try_query_inline(
        &self,
        statements: &[Statement],
    ) -> Option<Result<Vec<StatementResult>, DbError>> {
        let (outcome, cut_short) = self.with_idle_reader(|reader| {
            let outcome = read_all(
                reader,
                Instant::now() + INLINE_READ_BUDGET,
                self.generation.load(Ordering::Acquire),
                statements,
            );
            (outcome, reader.deadline_fired())
        })?;
        if cut_short {
            return None;
        }
        Some(outcome.map_err(|e| sqlite_error(&self.path, e)))
    }

    /// Runs `work` on an idle reader on the calling thread; `None` when that would mean
    /// waiting (no idle reader, the file being replaced).
    fn with_idle_reader<T>(&self, work: impl FnOnce(&Reader) -> T) -> Option<T> {
        let _permit = self.reader_permits.try_acquire().ok()?;
        let _file = self.file_lock.try_read().ok()?;
        let reader = self.idle_readers.lock().ok()?.pop()?;
        let outcome = work(&reader);
        if let Ok(mut idle) = self.idle_readers.lock() {
            idle.push(reader);
        }
        Some(outcome)
    }

    /// The shape of `sql` (parameters, result columns), from compiling it on a read connection;
    /// the inner error is SQLite's verdict on the statement.
    pub async fn describe(
        self: &Arc<Self>,
        sql: String,
    ) -> Result<Result<StatementShape, String>, DbError> {
        self.in_read_snapshot("describe", move |connection, guard| {
            statement_shape(connection, guard, &sql)
        })
        .await
    }

    /// Runs `inspect` on a read connection, in one snapshot, as Shoal's own code (the statement
    /// guard lifted): for reading the schema, never for user statements.
    pub async fn inspect<T: Send + 'static>(
        self: &Arc<Self>,
        inspect: impl FnOnce(&rusqlite::Connection) -> T + Send + 'static,
    ) -> Result<T, DbError> {
        self.in_read_snapshot("inspection", move |connection, guard| {
            let inspected = guard.internal(|| inspect(connection));
            // What `inspect` cached was compiled with the guard lifted; a user statement of
            // the same text must not reuse it (see `reader::OWN_STATEMENT_MARK`).
            connection.flush_prepared_statement_cache();
            inspected
        })
        .await
    }

    /// Runs `work` on a pooled read connection inside one snapshot, on the blocking pool,
    /// once a reader permit is free.
    async fn in_read_snapshot<T: Send + 'static>(
        self: &Arc<Self>,
        what: &'static str,
        work: impl FnOnce(&rusqlite::Connection, &StatementGuard) -> T + Send + 'static,
    ) -> Result<T, DbError> {
        let permit = self
            .reader_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| DbError::Closed)?;
        let database = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            database.with_reader(|reader| reader.in_snapshot(None, work))
        })
        .await
        .map_err(|error| DbError::Internal(format!("{what} task failed: {error}")))?
    }

    /// Whether every statement only reads, judged by SQLite on a read connection. Statements
    /// that do not compile here (for instance naming a table created earlier in the same
    /// request) count as writes, so they go through the log.
    ///
    /// Compiling is quick, so it runs on the calling thread when a reader is idle, and the
    /// compiled statements stay in the reader's cache for the read that usually follows.
    pub async fn all_read_only(
        self: &Arc<Self>,
        statements: &[Statement],
    ) -> Result<bool, DbError> {
        fn all_reads<'s>(
            connection: &rusqlite::Connection,
            mut sqls: impl Iterator<Item = &'s str>,
        ) -> bool {
            sqls.all(|sql| is_read_only_reusing(connection, sql) == Some(true))
        }
        if let Some(outcome) = self.with_idle_reader(|reader| {
            let generation = self.generation.load(Ordering::Acquire);
            reader.in_current_snapshot(None, generation, |connection, _| {
                all_reads(connection, statements.iter().map(|s| s.sql.as_str()))
            })
        }) {
            return outcome.map_err(|e| sqlite_error(&self.path, e));
        }
        let sqls: Vec<String> = statements.iter().map(|s| s.sql.clone()).collect();
        self.in_read_snapshot("classification", move |connection, _| {
            all_reads(connection, sqls.iter().map(String::as_str))
        })
        .await
    }

    /// The tables `statements` read and write, as SQLite reports them compiling each on a read
    /// connection, and whether every one only reads; `None` when one does not compile here (it
    /// names a table an earlier statement creates, or is not one statement), so what it
    /// touches is unknown.
    pub async fn table_access(
        self: &Arc<Self>,
        statements: &[Statement],
    ) -> Result<Option<(TableAccess, bool)>, DbError> {
        let sqls: Vec<String> = statements.iter().map(|s| s.sql.clone()).collect();
        self.in_read_snapshot("table access", move |connection, guard| {
            let (read_only, access) = guard.recording_tables(|| {
                sqls.iter()
                    .map(|sql| is_read_only(connection, sql))
                    .try_fold(true, |all, one| Some(all && one?))
            });
            Some((access?, read_only?))
        })
        .await
    }

    /// Writes a consistent copy of the database to `destination` in image form (the state
    /// and users inside it, see [`state_file`]) and returns the applied state of the copy.
    pub fn export_image(&self, destination: &Path) -> Result<AppliedState, DbError> {
        let (state, users, transactions) = self.export_image_and_state(destination)?;
        let image = Connection::open(destination).map_err(|e| sqlite_error(destination, e))?;
        write_state(&image, destination, &state)?;
        write_users(&image, destination, &users)?;
        twopc::copy_tables(&transactions, &image).map_err(|e| sqlite_error(destination, e))?;
        drop(image);
        sync_file(destination)?;
        Ok(state)
    }

    /// Writes a consistent copy of the user's database alone to `destination` (what leaves
    /// the cluster: `GET /db/backup`), in rollback-journal mode, and returns the applied state
    /// and users as of the copy. The copy runs on its own read transaction, so applies go on;
    /// the writer is held only while that transaction starts, so the state read with it
    /// belongs to the same moment.
    pub fn export_user_image(
        &self,
        destination: &Path,
    ) -> Result<(AppliedState, crate::types::users::Users), DbError> {
        self.export_image_and_state(destination)
            .map(|(state, users, _)| (state, users))
    }

    /// [`Database::export_user_image`], and also the cross-group transaction tables as of the
    /// copy (in an in-memory database).
    fn export_image_and_state(
        &self,
        destination: &Path,
    ) -> Result<(AppliedState, crate::types::users::Users, Connection), DbError> {
        let _file = self
            .file_lock
            .read()
            .map_err(|_| DbError::Internal("file lock poisoned".into()))?;
        let source = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| sqlite_error(&self.path, source))?;
        let (state, users, transactions) = self.with_writer(|writer| {
            source
                .execute_batch("BEGIN; SELECT count(*) FROM sqlite_schema;")
                .map_err(|e| sqlite_error(&self.path, e))?;
            let state = read_state(&writer.state, &self.path)?;
            let users = read_users(&writer.state).map_err(|e| sqlite_error(&self.path, e))?;
            let transactions = Connection::open_in_memory()
                .and_then(|copy| twopc::copy_tables(&writer.state, &copy).map(|()| copy))
                .map_err(|e| sqlite_error(&self.path, e))?;
            Ok((state, users, transactions))
        })?;
        match std::fs::remove_file(destination) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(DbError::Io {
                    path: destination.to_path_buf(),
                    source,
                });
            }
        }
        let mut target = Connection::open(destination).map_err(|e| sqlite_error(destination, e))?;
        {
            let backup = rusqlite::backup::Backup::new(&source, &mut target)
                .map_err(|e| sqlite_error(destination, e))?;
            // One step: every page from the source's one read transaction.
            match backup.step(-1).map_err(|e| sqlite_error(destination, e))? {
                rusqlite::backup::StepResult::Done => {}
                other => {
                    return Err(DbError::Internal(format!(
                        "exporting the database: backup step ended with {other:?}"
                    )));
                }
            }
        }
        target
            .query_row("PRAGMA journal_mode=DELETE", [], |_| Ok(()))
            .map_err(|e| sqlite_error(destination, e))?;
        drop(target);
        let _ = source.execute_batch("COMMIT");
        drop(source);
        sync_file(destination)?;
        Ok((state, users, transactions))
    }

    /// Replaces the whole database with the image at `image` (already verified by the caller).
    /// Waits for in-flight reads, closes every connection, swaps the file without the state
    /// tables, reopens, and records the image's state and users in the state file.
    pub fn import_image(&self, image: &Path) -> Result<AppliedState, DbError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(DbError::Closed);
        }
        let state = read_image_state(image)?;
        let users = read_image_users(image)?;
        // The image's cross-group transactions (none in one written before them).
        let transactions = Connection::open_in_memory()
            .and_then(|copy| {
                let source = Connection::open_with_flags(
                    image,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                twopc::copy_tables(&source, &copy).map(|()| copy)
            })
            .map_err(|e| sqlite_error(image, e))?;
        let _file = self
            .file_lock
            .write()
            .map_err(|_| DbError::Internal("file lock poisoned".into()))?;
        let mut writer_slot = self
            .writer
            .lock()
            .map_err(|_| DbError::Internal("writer lock poisoned".into()))?;
        if self.closed.load(Ordering::SeqCst) {
            return Err(DbError::Closed);
        }
        // The readers go with their kept read transactions; the generation moves too, so no
        // reader opened before the swap could count as current after it.
        self.idle_readers
            .lock()
            .map_err(|_| DbError::Internal("reader pool poisoned".into()))?
            .clear();
        self.generation.fetch_add(1, Ordering::Release);
        *writer_slot = None;
        let staging = self.path.with_extension("incoming");
        std::fs::copy(image, &staging).map_err(|source| DbError::Io {
            path: staging.clone(),
            source,
        })?;
        strip_state_tables(&staging)?;
        sync_file(&staging)?;
        for suffix in ["-wal", "-shm"] {
            let side = state_file::sidecar(&self.path, suffix);
            match std::fs::remove_file(&side) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(DbError::Io { path: side, source }),
            }
        }
        std::fs::rename(&staging, &self.path).map_err(|source| DbError::Io {
            path: self.path.clone(),
            source,
        })?;
        sync_parent_dir(&self.path)?;
        let vfs = clock_vfs::register(&self.vfs_name).map_err(DbError::Internal)?;
        let mut writer = open_writer(&self.path, &vfs)?;
        // The image's state and users replace the old ones together.
        in_state_transaction(&writer.state, &self.path, |at| {
            write_state(&writer.state, at, &state)?;
            write_users(&writer.state, at, &users)?;
            twopc::copy_tables(&transactions, &writer.state).map_err(|e| sqlite_error(at, e))
        })?;
        writer.has_cluster_id = state.cluster_id.is_some();
        let holding = twopc::held(&writer.state).map_err(|e| sqlite_error(&self.path, e))?;
        self.holding.store(holding.is_some(), Ordering::Release);
        // The image's version, copied in just now (the writer opened on the old one).
        let owner = ownership::read(&writer.state).map_err(|e| sqlite_error(&self.path, e))?;
        writer.owner.set(owner);
        self.owner.publish(owner);
        *writer_slot = Some(writer);
        self.users_version.fetch_add(1, Ordering::AcqRel);
        Ok(state)
    }

    fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut Writer) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let outcome = {
            let mut slot = self
                .writer
                .lock()
                .map_err(|_| DbError::Internal("writer lock poisoned".into()))?;
            let writer = slot.as_mut().ok_or(DbError::Closed)?;
            f(writer)
        };
        // Whatever the writer did may have changed the data: read transactions kept open
        // (`Reader::in_current_snapshot`) are stale from here on. The idle ones are ended now,
        // so they do not hold back checkpoints (when the pool is locked this moment, after a
        // later use); one busy now ends its own at its next request or is ended here later.
        self.generation.fetch_add(1, Ordering::Release);
        if let Ok(idle) = self.idle_readers.try_lock() {
            for reader in idle.iter() {
                let _ = reader.end_snapshot();
            }
        }
        outcome
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Reader) -> rusqlite::Result<T>) -> Result<T, DbError> {
        let _file = self
            .file_lock
            .read()
            .map_err(|_| DbError::Internal("file lock poisoned".into()))?;
        let pooled = self
            .idle_readers
            .lock()
            .map_err(|_| DbError::Internal("reader pool poisoned".into()))?
            .pop();
        let reader = match pooled {
            Some(reader) => reader,
            None => Reader::open(&self.path, self.owner.clone())
                .map_err(|e| sqlite_error(&self.path, e))?,
        };
        let result = f(&reader).map_err(|e| sqlite_error(&self.path, e));
        if let Ok(mut idle) = self.idle_readers.lock() {
            idle.push(reader);
        }
        result
    }
}

/// Runs `statements` on one snapshot, interrupting whatever still runs at `deadline`.
/// Sets its flag when dropped: tells a blocking read that nobody waits for it any more.
#[derive(Default)]
struct AbandonOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn read_all(
    reader: &Reader,
    deadline: Instant,
    generation: u64,
    statements: &[Statement],
) -> rusqlite::Result<Vec<StatementResult>> {
    reader.in_current_snapshot(Some(deadline), generation, |connection, guard| {
        let mut results = Vec::with_capacity(statements.len());
        let mut statements = statements;
        if let Some(expected) = ownership::expected_by(statements) {
            let current = reader.owner_version();
            if expected.as_ref().ok() != Some(&current) {
                return ownership::refused(statements.len(), expected, current);
            }
            results.push(StatementResult::default());
            statements = &statements[1..];
        }
        results.extend(
            statements
                .iter()
                .map(|s| execute_read(connection, guard, s)),
        );
        results
    })
}

pub(crate) fn sqlite_error(path: &Path, source: rusqlite::Error) -> DbError {
    DbError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

fn open_writer(path: &Path, vfs: &ClockVfs) -> Result<Writer, DbError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags_and_vfs(path, flags, vfs.name.as_str())
        .map_err(|e| sqlite_error(path, e))?;
    // WAL lets readers proceed while the writer applies. synchronous=NORMAL is enough: the
    // Raft log is the durability point, and after anything but a clean shutdown the database
    // is rebuilt from the snapshot and the log (see `state_file`).
    connection
        .execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
        .map_err(|e| sqlite_error(path, e))?;
    let state = state_file::open_state(path)?;
    // Defensive mode: no writable schema, no writes to shadow tables or raw pages, whatever a
    // statement tries (belt and braces beside the guard).
    connection
        .set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
        .map_err(|e| sqlite_error(path, e))?;
    let guard = StatementGuard::install(&connection, GuardMode::Writer);
    let random = EntryRandom::install(&connection).map_err(|e| sqlite_error(path, e))?;
    ownership::register(&connection).map_err(|e| sqlite_error(path, e))?;
    let progress_units = Arc::new(AtomicU64::new(0));
    let counter = progress_units.clone();
    connection.progress_handler(
        WRITER_PROGRESS_STEP,
        Some(move || counter.fetch_add(1, Ordering::Relaxed) + 1 > WRITER_PROGRESS_UNITS_MAX),
    );
    let has_cluster_id = read_state(&state, path)?.cluster_id.is_some();
    let owner = ownership::read(&state).map_err(|e| sqlite_error(path, e))?;
    Ok(Writer {
        connection,
        state,
        guard,
        random,
        clock: vfs.clone(),
        progress_units,
        has_cluster_id,
        files_disagree: false,
        owner: std::cell::Cell::new(owner),
    })
}

/// Applies `entries` in one SQLite transaction on the user's database and one on the state
/// file, which records the last one's log id (and any membership among them): the data commits
/// first and the state right after, or neither on an error; the commit cost is paid once per
/// group. A crash between the two is covered by the rebuild after an unclean stop.
fn apply_entries(
    writer: &mut Writer,
    entries: &[Entry],
    path: &Path,
    group: GroupId,
) -> Result<Vec<CommandResponse>, DbError> {
    let Some(last) = entries.last() else {
        return Ok(Vec::new());
    };
    let internal = |sql: &str| run_internal(writer, path, sql);
    let state_path = state_file::state_path(path);
    let on_state = |sql: &str| {
        writer
            .state
            .prepare_cached(sql)
            .and_then(|mut statement| statement.execute([]))
            .map(|_| ())
            .map_err(|e| sqlite_error(&state_path, e))
    };
    internal("BEGIN IMMEDIATE")?;
    if let Err(error) = on_state("BEGIN IMMEDIATE") {
        let _ = internal("ROLLBACK");
        return Err(error);
    }
    let outcome = (|| {
        let mut responses = Vec::with_capacity(entries.len());
        let mut membership = None;
        let mut first_command = None;
        let mut last_command_ms = None;
        for entry in entries {
            let log_id = entry.log_id();
            let mut response = CommandResponse::default();
            match &entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Membership(new_membership) => {
                    membership = Some(StoredMembership::new(Some(log_id), new_membership.clone()));
                }
                EntryPayload::Normal(command) => {
                    first_command.get_or_insert((log_id, command.timestamp_ms));
                    last_command_ms = Some(command.timestamp_ms);
                    writer.clock.clock.set(command.timestamp_ms);
                    writer.random.reseed(log_id.index);
                    if let Some(step) = &command.shard {
                        let mut runner = HeldBatchRunner {
                            writer: &*writer,
                            path,
                        };
                        response.batches.push(twopc::apply_step(
                            &writer.state,
                            group,
                            step,
                            command.timestamp_ms,
                            &mut runner,
                        )?);
                        if matches!(step, ShardStep::Reown { .. }) {
                            let owner = ownership::read(&writer.state)
                                .map_err(|e| sqlite_error(path, e))?;
                            writer.owner.set(owner);
                        }
                    }
                    let held = if command.batches.is_empty() {
                        None
                    } else {
                        twopc::held(&writer.state).map_err(|e| sqlite_error(path, e))?
                    };
                    for batch in &command.batches {
                        if held.is_some() {
                            response
                                .batches
                                .push(vec![StatementResult::failed(GROUP_HELD_BY_PREPARED)]);
                            continue;
                        }
                        let term = log_id.leader_id.term;
                        response.batches.push(apply_pinned_or_plain(
                            writer,
                            batch,
                            path,
                            Some(term),
                        )?);
                        writer.clock.clock.set(command.timestamp_ms);
                    }
                    writer.clock.clock.clear();
                    if let Some(change) = &command.users {
                        apply_user_change(writer, change, &state_path)?;
                        response.batches.push(vec![StatementResult::default()]);
                    }
                }
            }
            responses.push(response);
        }
        save_state(writer, &last.log_id(), membership.as_ref(), &state_path)?;
        if let Some(at) = last_command_ms {
            save_last_command(writer, at, &state_path)?;
        }
        let mut cluster_id_saved = false;
        if !writer.has_cluster_id
            && let Some((log_id, timestamp_ms)) = first_command
        {
            save_cluster_id(writer, &cluster_id_for(&log_id, timestamp_ms), &state_path)?;
            cluster_id_saved = true;
        }
        Ok((responses, cluster_id_saved))
    })();
    match outcome {
        Ok((responses, cluster_id_saved)) => {
            if let Err(error) = internal("COMMIT") {
                let _ = internal("ROLLBACK");
                let _ = on_state("ROLLBACK");
                return Err(error);
            }
            if let Err(error) = on_state("COMMIT") {
                let _ = on_state("ROLLBACK");
                writer.files_disagree = true;
                return Err(error);
            }
            writer.has_cluster_id |= cluster_id_saved;
            Ok(responses)
        }
        Err(error) => {
            writer.clock.clock.clear();
            let _ = internal("ROLLBACK");
            let _ = on_state("ROLLBACK");
            Err(error)
        }
    }
}

/// Runs a cross-group transaction's batch for its steps (`twopc::apply_step`).
struct HeldBatchRunner<'w> {
    writer: &'w Writer,
    path: &'w Path,
}

impl twopc::BatchRunner for HeldBatchRunner<'_> {
    type Error = DbError;

    fn run(&mut self, batch: &StatementBatch, keep: bool) -> Result<Vec<StatementResult>, DbError> {
        if keep {
            return apply_pinned_or_plain(self.writer, batch, self.path, None);
        }
        let internal = |sql: &str| run_internal(self.writer, self.path, sql);
        internal("SAVEPOINT shoal_prepare")?;
        let results = apply_pinned_or_plain(self.writer, batch, self.path, None);
        internal("ROLLBACK TO shoal_prepare")?;
        internal("RELEASE shoal_prepare")?;
        results
    }

    fn run_moving(&mut self, batch: &StatementBatch) -> Result<Vec<StatementResult>, DbError> {
        // (Changing the setting expires compiled statements, so none keeps its triggers.)
        self.set_triggers(false)?;
        let mut whole = batch.clone();
        whole.transaction = true;
        let results = apply_batch(self.writer, &whole, self.path);
        self.set_triggers(true)?;
        results
    }
}

impl HeldBatchRunner<'_> {
    fn set_triggers(&self, enabled: bool) -> Result<(), DbError> {
        self.writer
            .connection
            .set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER,
                enabled,
            )
            .map(|_| ())
            .map_err(|e| sqlite_error(self.path, e))
    }
}

impl From<twopc::StepError> for DbError {
    fn from(error: twopc::StepError) -> Self {
        DbError::Internal(format!("applying a cross-group transaction step: {error}"))
    }
}

/// Applies `batch`; a pinned batch (an interactive transaction) runs with its own clock and
/// seed and is kept only if it gives the results its client saw, in the term it saw them.
/// `entry_term` is `None` for a rehearsal, which is rolled back by the caller anyway.
fn apply_pinned_or_plain(
    writer: &Writer,
    batch: &crate::types::StatementBatch,
    path: &Path,
    entry_term: Option<u64>,
) -> Result<Vec<StatementResult>, DbError> {
    let Some(pinned) = &batch.pinned else {
        return apply_batch(writer, batch, path);
    };
    writer.clock.clock.set(pinned.timestamp_ms);
    writer.random.reseed_pinned(pinned.seed);
    let internal = |sql: &str| run_internal(writer, path, sql);
    internal("SAVEPOINT shoal_pinned")?;
    // An interactive transaction may use savepoints of its own, nested in ours.
    let results = writer
        .guard
        .with_user_savepoints(|| apply_batch(writer, batch, path))?;
    let term_changed = matches!((pinned.term, entry_term), (Some(seen), Some(now)) if seen != now);
    // A guard's result (`ownership`) is not one the client saw.
    let guarded = ownership::expected_by(&batch.statements).is_some();
    let checked = match guarded {
        true => results.get(1..).unwrap_or_default(),
        false => &results[..],
    };
    let results_changed = pinned
        .results_digest
        .is_some_and(|digest| digest != results_digest(checked));
    let conflict = if term_changed {
        Some("the leader changed during the transaction")
    } else if results_changed {
        Some("data the transaction read or wrote was changed by another transaction")
    } else {
        None
    };
    let Some(reason) = conflict else {
        internal("RELEASE shoal_pinned")?;
        return Ok(results);
    };
    internal("ROLLBACK TO shoal_pinned")?;
    internal("RELEASE shoal_pinned")?;
    let failure = StatementResult::failed(format!(
        "{SERIALIZATION_FAILURE}: {reason}; it was rolled back and nothing was applied, retry it"
    ));
    // The guard's result stays first, where the router takes it out.
    Ok(match guarded {
        true => vec![StatementResult::default(), failure],
        false => vec![failure],
    })
}

/// Runs one of Shoal's own statements (BEGIN, SAVEPOINT, COMMIT, …) on the writer, with the
/// guard lifted; cached, as every entry runs them.
fn run_internal(writer: &Writer, path: &Path, sql: &str) -> Result<(), DbError> {
    writer
        .guard
        .internal(|| {
            writer
                .connection
                .prepare_cached(sql)?
                .execute([])
                .map(|_| ())
        })
        .map_err(|e| sqlite_error(path, e))
}

/// A schema object of the user's database named like Shoal's own tables, if any (a statement
/// that made one fails and is undone).
fn reserved_schema_name(writer: &Writer, path: &Path) -> Result<Option<String>, DbError> {
    writer
        .guard
        .internal(|| {
            writer
                .connection
                .prepare_cached(
                    "SELECT name FROM sqlite_schema WHERE name LIKE '\\_shoal\\_%' ESCAPE '\\' LIMIT 1",
                )?
                .query_row([], |row| row.get::<_, String>(0))
                .optional()
        })
        .map_err(|e| sqlite_error(path, e))
}

fn apply_batch(
    writer: &Writer,
    batch: &crate::types::StatementBatch,
    path: &Path,
) -> Result<Vec<StatementResult>, DbError> {
    let conn = &writer.connection;
    let internal = |sql: &str| run_internal(writer, path, sql);
    let mut results = Vec::with_capacity(batch.statements.len());
    let mut statements = batch.statements.as_slice();
    if let Some(expected) = ownership::expected_by(statements) {
        let current = writer.owner.get();
        if expected.as_ref().ok() != Some(&current) {
            return Ok(ownership::refused(statements.len(), expected, current));
        }
        results.push(StatementResult::default());
        statements = &statements[1..];
    }
    internal("SAVEPOINT shoal_batch")?;
    let mut failed = false;
    for statement in statements {
        // SQLite undoes a failed statement only when it opened a statement journal for it,
        // and it skips that where it believes the statement cannot fail halfway (an
        // `INSERT OR REPLACE … SELECT` that hits a datatype mismatch on its third row keeps
        // the first two). Autocommit hides this by rolling back the whole transaction; inside
        // the entry's transaction a savepoint per statement gives the same all-or-nothing.
        // In a transaction batch the whole batch is undone instead.
        let own_savepoint = !batch.transaction;
        if own_savepoint {
            internal("SAVEPOINT shoal_statement")?;
        }
        writer.progress_units.store(0, Ordering::Relaxed);
        writer.guard.take_schema_touched();
        let mut result = execute_statement(conn, &writer.guard, statement);
        if result.error.is_none()
            && writer.guard.take_schema_touched()
            && let Some(name) = reserved_schema_name(writer, path)?
        {
            result = StatementResult::failed(format!(
                "the name {name} is reserved: names starting with {INTERNAL_TABLE_PREFIX} \
                 belong to Shoal; choose another"
            ));
        }
        if writer.progress_units.load(Ordering::Relaxed) > WRITER_PROGRESS_UNITS_MAX {
            result.error = Some(format!(
                "statement interrupted: it exceeded the write budget of {} SQLite steps",
                WRITER_PROGRESS_UNITS_MAX * WRITER_PROGRESS_STEP as u64
            ));
        }
        failed = result.error.is_some();
        if own_savepoint {
            if failed {
                internal("ROLLBACK TO shoal_statement")?;
            }
            internal("RELEASE shoal_statement")?;
        }
        results.push(result);
        if failed && batch.transaction {
            break;
        }
    }
    if failed && batch.transaction {
        internal("ROLLBACK TO shoal_batch")?;
        // rqlite reports the results up to and including the failing statement; those before
        // it were undone, so their counts would mislead.
        for result in results.iter_mut().filter(|r| r.error.is_none()) {
            result.rows_affected = 0;
            result.last_insert_id = 0;
        }
    }
    internal("RELEASE shoal_batch")?;
    Ok(results)
}

fn save_state(
    writer: &Writer,
    log_id: &LogId,
    membership: Option<&StoredMembership>,
    path: &Path,
) -> Result<(), DbError> {
    let applied = serde_json::to_string(log_id)
        .map_err(|e| DbError::Internal(format!("encode log id: {e}")))?;
    let mut upsert = writer
        .state
        .prepare_cached(&format!(
            "INSERT OR REPLACE INTO {STATE_TABLE}(key, value) VALUES (?1, ?2)"
        ))
        .map_err(|e| sqlite_error(path, e))?;
    upsert
        .execute(["applied", applied.as_str()])
        .map_err(|e| sqlite_error(path, e))?;
    if let Some(membership) = membership {
        let encoded = serde_json::to_string(membership)
            .map_err(|e| DbError::Internal(format!("encode membership: {e}")))?;
        upsert
            .execute(["membership", encoded.as_str()])
            .map_err(|e| sqlite_error(path, e))?;
    }
    Ok(())
}

/// Writes the applied log id, membership and cluster id into the state table of `connection`
/// (an image, or the state file), replacing what it held.
pub(crate) fn write_state(
    connection: &Connection,
    path: &Path,
    state: &AppliedState,
) -> Result<(), DbError> {
    let mut rows = Vec::new();
    if let Some(applied) = &state.last_applied {
        rows.push((
            "applied",
            serde_json::to_string(applied)
                .map_err(|e| DbError::Internal(format!("encode log id: {e}")))?,
        ));
    }
    rows.push((
        "membership",
        serde_json::to_string(&state.membership)
            .map_err(|e| DbError::Internal(format!("encode membership: {e}")))?,
    ));
    if let Some(cluster_id) = &state.cluster_id {
        rows.push((CLUSTER_ID_KEY, cluster_id.clone()));
    }
    if let Some(at) = state.last_command_ms {
        rows.push((LAST_COMMAND_KEY, at.to_string()));
    }
    connection
        .execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {STATE_TABLE}(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID; \
             DELETE FROM {STATE_TABLE};"
        ))
        .map_err(|e| sqlite_error(path, e))?;
    for (key, value) in rows {
        connection
            .execute(
                &format!("INSERT INTO {STATE_TABLE}(key, value) VALUES (?1, ?2)"),
                [key, value.as_str()],
            )
            .map_err(|e| sqlite_error(path, e))?;
    }
    Ok(())
}

/// Runs `work` (given the state file's path, for errors) in one write transaction on the
/// state file: committed when it succeeds, rolled back otherwise.
fn in_state_transaction(
    state_file: &Connection,
    path: &Path,
    work: impl FnOnce(&Path) -> Result<(), DbError>,
) -> Result<(), DbError> {
    let state_path = state_file::state_path(path);
    state_file
        .execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| sqlite_error(&state_path, e))?;
    let outcome = work(&state_path);
    let end = if outcome.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    state_file
        .execute_batch(end)
        .map_err(|e| sqlite_error(&state_path, e))?;
    outcome
}

/// Removes the state tables from an image about to become a group's live database, leaving
/// no trace of the password hashes in its free pages.
fn strip_state_tables(image: &Path) -> Result<(), DbError> {
    let connection = Connection::open(image).map_err(|e| sqlite_error(image, e))?;
    state_file::drop_state_tables(&connection).map_err(|e| sqlite_error(image, e))
}

/// The users recorded inside an image (none when it has no users table).
fn read_image_users(image: &Path) -> Result<crate::types::users::Users, DbError> {
    let connection = Connection::open_with_flags(
        image,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sqlite_error(image, e))?;
    if !state_file::has_table(&connection, image, USERS_TABLE)? {
        return Ok(crate::types::users::Users::new());
    }
    read_users(&connection).map_err(|e| sqlite_error(image, e))
}

fn apply_user_change(
    writer: &Writer,
    change: &crate::types::users::UserChange,
    path: &Path,
) -> Result<(), DbError> {
    match change.put_user() {
        Some(user) => {
            let record = serde_json::to_string(&user)
                .map_err(|e| DbError::Internal(format!("encode user: {e}")))?;
            writer
                .state
                .execute(
                    &format!("INSERT OR REPLACE INTO {USERS_TABLE}(name, record) VALUES (?1, ?2)"),
                    [user.name.as_str(), record.as_str()],
                )
                .map(|_| ())
                .map_err(|e| sqlite_error(path, e))
        }
        None => writer
            .state
            .execute(
                &format!("DELETE FROM {USERS_TABLE} WHERE name = ?1"),
                [change.user_name()],
            )
            .map(|_| ())
            .map_err(|e| sqlite_error(path, e)),
    }
}

/// Replaces the users recorded in `connection`'s database with `users` (a loaded image keeps
/// the cluster's users, as it keeps its membership: a load must not change who may do what).
pub(crate) fn write_users(
    connection: &Connection,
    path: &Path,
    users: &crate::types::users::Users,
) -> Result<(), DbError> {
    connection
        .execute_batch(&format!(
            "DROP TABLE IF EXISTS {USERS_TABLE}; \
             CREATE TABLE {USERS_TABLE}(name TEXT PRIMARY KEY, record TEXT NOT NULL) WITHOUT ROWID;"
        ))
        .map_err(|e| sqlite_error(path, e))?;
    for user in users.values() {
        let record = serde_json::to_string(user)
            .map_err(|e| DbError::Internal(format!("encode user: {e}")))?;
        connection
            .execute(
                &format!("INSERT INTO {USERS_TABLE}(name, record) VALUES (?1, ?2)"),
                [user.name.as_str(), record.as_str()],
            )
            .map_err(|e| sqlite_error(path, e))?;
    }
    Ok(())
}

/// The users recorded in a database (skipping a record that does not decode, with a warning).
pub fn read_users(connection: &Connection) -> rusqlite::Result<crate::types::users::Users> {
    let mut statement = connection.prepare(&format!(
        "SELECT name, record FROM {USERS_TABLE} ORDER BY name"
    ))?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut users = crate::types::users::Users::new();
    for row in rows {
        let (name, record) = row?;
        match serde_json::from_str::<crate::types::users::User>(&record) {
            Ok(user) => {
                users.insert(name, user);
            }
            Err(error) => tracing::warn!(user = %name, %error, "unreadable user record skipped"),
        }
    }
    Ok(users)
}

fn save_last_command(writer: &Writer, at_ms: i64, path: &Path) -> Result<(), DbError> {
    writer
        .state
        .prepare_cached(&format!(
            "INSERT OR REPLACE INTO {STATE_TABLE}(key, value) VALUES (?1, ?2)"
        ))
        .and_then(|mut upsert| upsert.execute([LAST_COMMAND_KEY, &at_ms.to_string()]))
        .map_err(|e| sqlite_error(path, e))?;
    Ok(())
}

fn save_cluster_id(writer: &Writer, cluster_id: &str, path: &Path) -> Result<(), DbError> {
    writer
        .state
        .execute(
            &format!("INSERT OR IGNORE INTO {STATE_TABLE}(key, value) VALUES (?1, ?2)"),
            [CLUSTER_ID_KEY, cluster_id],
        )
        .map_err(|e| sqlite_error(path, e))?;
    Ok(())
}

/// Prepares a restored image to seed a new cluster: forgets the old cluster's log position,
/// membership and id (the new cluster takes its own from its first command).
pub fn forget_cluster_state(image: &Path) -> Result<(), DbError> {
    let connection = Connection::open(image).map_err(|e| sqlite_error(image, e))?;
    connection
        .execute(
            &format!("DELETE FROM {STATE_TABLE} WHERE key IN ('applied', 'membership', ?1, ?2)"),
            [CLUSTER_ID_KEY, LAST_COMMAND_KEY],
        )
        .map_err(|e| sqlite_error(image, e))?;
    Ok(())
}

pub(crate) fn read_state(connection: &Connection, path: &Path) -> Result<AppliedState, DbError> {
    let read = |key: &str| -> Result<Option<String>, DbError> {
        connection
            .query_row(
                &format!("SELECT value FROM {STATE_TABLE} WHERE key = ?1"),
                [key],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| sqlite_error(path, e))
    };
    let corrupt = |message: String| DbError::CorruptState {
        path: path.to_path_buf(),
        message,
    };
    let last_applied = match read("applied")? {
        Some(text) => {
            Some(serde_json::from_str(&text).map_err(|e| corrupt(format!("applied log id: {e}")))?)
        }
        None => None,
    };
    let membership = match read("membership")? {
        Some(text) => {
            serde_json::from_str(&text).map_err(|e| corrupt(format!("membership: {e}")))?
        }
        None => StoredMembership::default(),
    };
    Ok(AppliedState {
        last_applied,
        membership,
        cluster_id: read(CLUSTER_ID_KEY)?,
        last_command_ms: read(LAST_COMMAND_KEY)?.and_then(|text| text.parse().ok()),
    })
}

/// Reads the applied state recorded inside a database image, checking it is a Shoal database.
pub fn read_image_state(image: &Path) -> Result<AppliedState, DbError> {
    let connection = Connection::open_with_flags(
        image,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sqlite_error(image, e))?;
    let check: String = connection
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(|e| sqlite_error(image, e))?;
    if check != "ok" {
        return Err(DbError::CorruptState {
            path: image.to_path_buf(),
            message: format!("quick_check: {check}"),
        });
    }
    read_state(&connection, image)
}

/// fsyncs a file so a rename of it is durable.
pub fn sync_file(path: &Path) -> Result<(), DbError> {
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|source| DbError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// fsyncs the directory holding `path`, making a rename or creation in it durable.
pub fn sync_parent_dir(path: &Path) -> Result<(), DbError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| DbError::Io {
            path: parent.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::value::SqlValue;

    fn count_to(n: u64) -> Statement {
        Statement::plain(format!(
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {n}) \
             SELECT count(*) FROM c"
        ))
    }

    /// A read too long for the inline budget is cut short and run again on the blocking pool:
    /// the caller gets the full answer, never "interrupted".
    #[tokio::test]
    async fn reads_longer_than_the_inline_budget_still_complete() {
        let dir = tempfile::tempdir().unwrap();
        let database = Arc::new(Database::open(&dir.path().join("db.sqlite"), 97, 2).unwrap());
        let timeout = Duration::from_secs(30);
        // The first read opens a connection on the blocking pool; later ones find it idle.
        for n in [10, 10, 3_000_000] {
            let started = Instant::now();
            let results = database.query(vec![count_to(n)], timeout).await.unwrap();
            assert_eq!(results[0].error, None);
            let rows = results[0].rows.as_ref().unwrap();
            assert_eq!(rows.values, vec![vec![SqlValue::Integer(n as i64)]]);
            if n > 10 {
                assert!(
                    started.elapsed() > INLINE_READ_BUDGET,
                    "the long read was not long"
                );
            }
        }
        // And the read timeout still applies to the second attempt.
        let error = database
            .query(vec![count_to(1_000_000_000)], Duration::from_millis(50))
            .await
            .unwrap()
            .remove(0)
            .error
            .unwrap();
        assert!(error.contains("interrupt"), "{error}");
    }
}
