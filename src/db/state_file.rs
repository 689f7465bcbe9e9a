//! Shoal's own state for one group's database — the applied log id, membership, cluster id,
//! users and cross-group transactions (`twopc`) — kept in a companion SQLite file beside the user's database, so that the user's file
//! holds only the user's objects (`sqlite_schema`, `PRAGMA table_list`, `/db/backup`, dumps).
//!
//! Architecture invariant: the user's database and its state file are trusted together only
//! after a clean shutdown, which leaves a marker in the state file once both files are synced.
//! Each entry's data and state are committed in the same write step (data first, state right
//! after), but two files cannot commit atomically; so a node that stopped any other way
//! (SIGKILL, power loss, a failed start) discards both and rebuilds them from its latest
//! snapshot and its log, which can neither apply an entry twice nor skip one.
//!
//! Images (snapshots, backups, restores) keep the state inside the file in the tables
//! [`STATE_TABLE`] and [`USERS_TABLE`] (and the `twopc` tables), as every earlier version wrote
//! them; the live database never does. A data directory of an earlier version is migrated on open.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::db::database::{DbError, sqlite_error, sync_file, sync_parent_dir};
use crate::db::ownership::OWNER_TABLE;
use crate::db::twopc::{DECISIONS_TABLE, FENCES_TABLE, PREPARED_TABLE};

/// The table holding the applied log id, membership, cluster id and last command time.
pub const STATE_TABLE: &str = "_shoal_raft_state";

/// The replicated users (`crate::auth`): name → JSON record with the Argon2id hash.
pub const USERS_TABLE: &str = "_shoal_users";

/// The key of the marker a clean shutdown leaves in the state table.
const CLEAN_SHUTDOWN_KEY: &str = "clean_shutdown";

/// The layout version written into the state file (`PRAGMA user_version`): 1 is the first
/// companion-file layout. Earlier versions kept the state inside the user's database.
const STATE_LAYOUT_VERSION: i64 = 1;

/// What opening a group's files found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// Nothing on disk yet.
    Fresh,
    /// A database of an earlier version (or an image) whose state moved out of it.
    Migrated,
    /// Both files as a clean shutdown left them.
    CleanRestart,
    /// The node did not stop cleanly: both files were discarded, to be rebuilt from the
    /// snapshot and the log. `applied_before` is the last entry the discarded state file
    /// recorded as applied: it was committed, so the rebuild re-applies at least that far
    /// before the node serves (a restarted leader must not answer from less than it had).
    Discarded {
        applied_before: Option<crate::types::LogId>,
    },
}

/// The state file that belongs to the database at `database`.
pub fn state_path(database: &Path) -> PathBuf {
    PathBuf::from(format!("{}-shoal", database.display()))
}

/// Opens (creating if needed) the state file of the database at `database`.
pub fn open_state(database: &Path) -> Result<Connection, DbError> {
    let path = state_path(database);
    let connection = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sqlite_error(&path, e))?;
    // WITHOUT ROWID tables, WAL and synchronous=NORMAL as for the data: a torn tail is
    // covered by the rebuild after an unclean stop.
    connection
        .execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
             CREATE TABLE IF NOT EXISTS {STATE_TABLE}(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID; \
             CREATE TABLE IF NOT EXISTS {USERS_TABLE}(name TEXT PRIMARY KEY, record TEXT NOT NULL) WITHOUT ROWID; \
             PRAGMA user_version = {STATE_LAYOUT_VERSION};"
        ))
        .map_err(|e| sqlite_error(&path, e))?;
    crate::db::twopc::create_tables(&connection).map_err(|e| sqlite_error(&path, e))?;
    Ok(connection)
}

/// Brings the files of the database at `database` to a state that can be trusted before the
/// writer opens them: migrates an earlier layout, consumes a clean-shutdown marker, or
/// discards both files after an unclean stop.
pub fn prepare(database: &Path) -> Result<Opening, DbError> {
    let state = state_path(database);
    let data_exists = database.exists();
    // Only a database that has never had a state file is migrated: once one exists, tables
    // of these names in the user's file are not Shoal's (and statements cannot make them).
    if data_exists && !state.exists() && holds_state_tables(database)? {
        migrate(database)?;
        return Ok(Opening::Migrated);
    }
    if !data_exists && !state.exists() {
        return Ok(Opening::Fresh);
    }
    // A file that cannot be read as clean is not clean: the rebuild below repairs it.
    if data_exists && state.exists() {
        match take_clean_marker(database) {
            Ok(true) => return Ok(Opening::CleanRestart),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "the state file is unreadable"),
        }
    }
    let applied_before = if state.exists() {
        recorded_applied(database)
    } else {
        None
    };
    discard(database)?;
    Ok(Opening::Discarded { applied_before })
}

/// The applied log id the state file records, if it can be read at all (a torn file gives
/// none: the rebuild then goes only as far as openraft knows the log committed).
fn recorded_applied(database: &Path) -> Option<crate::types::LogId> {
    let path = state_path(database);
    let connection = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE).ok()?;
    let text: String = connection
        .query_row(
            &format!("SELECT value FROM {STATE_TABLE} WHERE key = 'applied'"),
            [],
            |row| row.get(0),
        )
        .ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether the SQLite file at `path` keeps Shoal's state inside it (an image, or a database
/// written by an earlier version).
pub fn holds_state_tables(path: &Path) -> Result<bool, DbError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sqlite_error(path, e))?;
    has_table(&connection, path, STATE_TABLE)
}

/// Whether `connection`'s main database has a table called `name`.
pub fn has_table(connection: &Connection, path: &Path, name: &str) -> Result<bool, DbError> {
    connection
        .query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [name],
            |_| Ok(()),
        )
        .optional()
        .map(|found| found.is_some())
        .map_err(|e| sqlite_error(path, e))
}

/// Moves the state tables (with the cross-group transaction tables, fences and owner
/// version) out of the database at `database` into its state file. The state file is written
/// (and synced) first, so a crash half-way leaves the tables in the database and the next
/// start moves them again.
fn migrate(database: &Path) -> Result<(), DbError> {
    tracing::info!(database = %database.display(), "moving Shoal's state out of the user's database");
    let source = Connection::open(database).map_err(|e| sqlite_error(database, e))?;
    let rows = |table: &str| -> Result<Vec<(String, String)>, DbError> {
        if !has_table(&source, database, table)? {
            return Ok(Vec::new());
        }
        let mut statement = source
            .prepare(&format!("SELECT * FROM {table}"))
            .map_err(|e| sqlite_error(database, e))?;
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| sqlite_error(database, e))
    };
    let state_rows = rows(STATE_TABLE)?;
    let user_rows = rows(USERS_TABLE)?;
    {
        let mut state = open_state(database)?;
        let path = state_path(database);
        let transaction = state.transaction().map_err(|e| sqlite_error(&path, e))?;
        for (table, rows) in [(STATE_TABLE, &state_rows), (USERS_TABLE, &user_rows)] {
            transaction
                .execute(&format!("DELETE FROM {table}"), [])
                .map_err(|e| sqlite_error(&path, e))?;
            for (key, value) in rows {
                transaction
                    .execute(
                        &format!("INSERT INTO {table} VALUES (?1, ?2)"),
                        [key, value],
                    )
                    .map_err(|e| sqlite_error(&path, e))?;
            }
        }
        // A transaction prepared in the image, the decisions, the fences and the owner version
        // come along: a replay from an image taken under a cut's fence must answer the
        // prepares after it as the group did (held back), not hold one the group never held.
        crate::db::twopc::copy_tables(&source, &transaction).map_err(|e| sqlite_error(&path, e))?;
        transaction.commit().map_err(|e| sqlite_error(&path, e))?;
        checkpoint_and_sync(&state, &path)?;
    }
    drop_state_tables(&source).map_err(|e| sqlite_error(database, e))?;
    checkpoint_and_sync(&source, database)
}

/// Drops the state tables from the database behind `connection` (an image becoming a live
/// database, an upload, a migrated file) in one transaction, with secure_delete so the
/// password hashes do not linger in its free pages.
pub fn drop_state_tables(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(&format!(
        "PRAGMA secure_delete = ON; BEGIN; DROP TABLE IF EXISTS {STATE_TABLE}; \
         DROP TABLE IF EXISTS {USERS_TABLE}; DROP TABLE IF EXISTS {PREPARED_TABLE}; \
         DROP TABLE IF EXISTS {DECISIONS_TABLE}; DROP TABLE IF EXISTS {FENCES_TABLE}; \
         DROP TABLE IF EXISTS {OWNER_TABLE}; COMMIT;"
    ))
}

/// Removes the clean-shutdown marker if there is one, durably, and says whether there was.
fn take_clean_marker(database: &Path) -> Result<bool, DbError> {
    let path = state_path(database);
    let state = open_state(database)?;
    let removed = state
        .execute(
            &format!("DELETE FROM {STATE_TABLE} WHERE key = ?1"),
            [CLEAN_SHUTDOWN_KEY],
        )
        .map_err(|e| sqlite_error(&path, e))?;
    if removed > 0 {
        // Synced before anything is applied: after a later crash the marker must be gone.
        checkpoint_and_sync(&state, &path)?;
    }
    Ok(removed > 0)
}

/// Leaves the clean-shutdown marker, once the caller has synced the user's database.
pub fn mark_clean(state: &Connection, database: &Path) -> Result<(), DbError> {
    let path = state_path(database);
    state
        .execute(
            &format!("INSERT OR REPLACE INTO {STATE_TABLE}(key, value) VALUES (?1, ?2)"),
            [CLEAN_SHUTDOWN_KEY, &crate::types::now_ms().to_string()],
        )
        .map_err(|e| sqlite_error(&path, e))?;
    checkpoint_and_sync(state, &path)
}

/// Copies the write-ahead log into the file and syncs both, so what was committed survives a
/// power loss.
pub fn checkpoint_and_sync(connection: &Connection, path: &Path) -> Result<(), DbError> {
    connection
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(|e| sqlite_error(path, e))?;
    for file in [path.to_path_buf(), sidecar(path, "-wal")] {
        if file.exists() {
            sync_file(&file)?;
        }
    }
    Ok(())
}

/// Deletes the user's database and the state file with their sidecars: the snapshot and the
/// log rebuild them.
fn discard(database: &Path) -> Result<(), DbError> {
    tracing::warn!(
        database = %database.display(),
        "the node did not stop cleanly: rebuilding its database from the latest snapshot and the log"
    );
    let state = state_path(database);
    for path in [database, state.as_path()] {
        for file in [
            path.to_path_buf(),
            sidecar(path, "-wal"),
            sidecar(path, "-shm"),
            sidecar(path, "-journal"),
        ] {
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(DbError::Io { path: file, source }),
            }
        }
    }
    sync_parent_dir(database)
}

/// `path` with `suffix` appended (SQLite's `-wal`, `-shm` and `-journal` files).
pub fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}
