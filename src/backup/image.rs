//! Reading a consistent image of a live database without copying it first: one read
//! transaction (in WAL mode writers carry on), the pages read through SQLite's
//! `sqlite_dbpage` table in chunk-sized runs. The pages of one snapshot, in order, are a
//! valid database file as of that snapshot's applied log id.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::backup::create::table_row_counts;
use crate::backup::{BackupError, CHUNK_BYTES};
use crate::db::database::{AppliedState, read_state};

/// An open read transaction on a database, read out chunk by chunk.
pub struct SnapshotImage {
    connection: Connection,
    pub page_size: u64,
    pub page_count: u64,
    /// What the snapshot holds: its applied log id, membership and cluster id.
    pub state: AppliedState,
    /// Rows per user table in the snapshot.
    pub tables: BTreeMap<String, u64>,
}

fn database_error(path: &Path, error: impl std::fmt::Display) -> BackupError {
    BackupError::Database(format!("{}: {error}", path.display()))
}

impl SnapshotImage {
    /// Opens a read transaction on the database at `path` and records what it holds.
    pub fn open(path: &Path) -> Result<SnapshotImage, BackupError> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| database_error(path, e))?;
        // The snapshot is fixed by the first read after BEGIN; everything below sees it.
        connection
            .execute_batch("BEGIN")
            .map_err(|e| database_error(path, e))?;
        let state = read_state(&connection, path)?;
        let (page_size, tables) =
            table_row_counts(&connection).map_err(|e| database_error(path, e))?;
        let page_count: u64 = connection
            .query_row("PRAGMA page_count", [], |row| row.get(0))
            .map_err(|e| database_error(path, e))?;
        Ok(SnapshotImage {
            connection,
            page_size,
            page_count,
            state,
            tables,
        })
    }

    pub fn bytes(&self) -> u64 {
        self.page_size * self.page_count
    }

    fn pages_per_chunk(&self) -> u64 {
        (CHUNK_BYTES as u64 / self.page_size).max(1)
    }

    pub fn chunk_count(&self) -> usize {
        self.page_count.div_ceil(self.pages_per_chunk()).max(1) as usize
    }

    /// The bytes of chunk `index`: its pages, in order, as the snapshot sees them.
    pub fn read_chunk(&self, index: usize) -> Result<Vec<u8>, BackupError> {
        let per_chunk = self.pages_per_chunk();
        let first = index as u64 * per_chunk + 1;
        let last = (first + per_chunk - 1).min(self.page_count);
        let mut plain = Vec::with_capacity(((last + 1 - first) * self.page_size) as usize);
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT pgno, data FROM sqlite_dbpage('main') WHERE pgno >= ?1 AND pgno <= ?2",
            )
            .map_err(|e| BackupError::Database(format!("reading pages: {e}")))?;
        let mut rows = statement
            .query([first, last])
            .map_err(|e| BackupError::Database(format!("reading pages: {e}")))?;
        let mut expected = first;
        while let Some(row) = rows
            .next()
            .map_err(|e| BackupError::Database(format!("reading pages: {e}")))?
        {
            let page: u64 = row
                .get(0)
                .map_err(|e| BackupError::Database(e.to_string()))?;
            let data = row
                .get_ref(1)
                .map_err(|e| BackupError::Database(e.to_string()))?
                .as_blob()
                .map_err(|e| BackupError::Database(format!("page {page}: {e}")))?;
            if page != expected || data.len() as u64 != self.page_size {
                return Err(BackupError::Database(format!(
                    "page {page} ({} bytes) where page {expected} of {} bytes was expected",
                    data.len(),
                    self.page_size
                )));
            }
            plain.extend_from_slice(data);
            expected += 1;
        }
        if expected != last + 1 {
            return Err(BackupError::Database(format!(
                "pages {expected} to {last} are missing from the snapshot"
            )));
        }
        Ok(plain)
    }
}

/// Lowers the calling thread's CPU priority (nice 10): a backup's reading and compressing
/// then yields to the node's request handling instead of competing with it.
pub fn lower_thread_priority() {
    // SAFETY: gettid and setpriority on the calling thread; failure only leaves the priority.
    unsafe {
        let thread = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, thread, 10);
    }
}

/// A Shoal-shaped test database in WAL mode: table `t` with `rows` random blobs of
/// `row_bytes`, checkpointed; the open connection is returned for further writes.
#[cfg(test)]
pub(crate) fn test_database(path: &Path, rows: u64, row_bytes: u64) -> Connection {
    let writer = Connection::open(path).unwrap();
    writer
        .execute_batch(&format!(
            "PRAGMA journal_mode=WAL; \
             CREATE TABLE _shoal_raft_state(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID; \
             CREATE TABLE t(x); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) \
             INSERT INTO t SELECT randomblob({row_bytes}) FROM n; PRAGMA wal_checkpoint(TRUNCATE);"
        ))
        .unwrap();
    writer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_of_a_snapshot_are_the_database_as_of_that_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let writer = test_database(&path, 5000, 3000);
        let image = SnapshotImage::open(&path).unwrap();
        // Writes after the snapshot began are not in it.
        writer
            .execute_batch("DELETE FROM t WHERE rowid > 10")
            .unwrap();
        assert!(image.chunk_count() >= 1);
        let mut bytes = Vec::new();
        for index in 0..image.chunk_count() {
            bytes.extend(image.read_chunk(index).unwrap());
        }
        assert_eq!(bytes.len() as u64, image.bytes());
        let copy = dir.path().join("copy.db");
        std::fs::write(&copy, bytes).unwrap();
        let reopened = Connection::open(&copy).unwrap();
        let count: i64 = reopened
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 5000);
        assert_eq!(image.tables.get("t"), Some(&5000));
        let check: String = reopened
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
}

#[cfg(test)]
mod speed {
    //! `cargo test --release --lib image_speed -- --ignored --nocapture`: MB/s of reading a
    //! snapshot's pages.
    use super::*;

    #[test]
    #[ignore]
    fn image_speed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let _writer = test_database(&path, 400_000, 1000);
        let started = std::time::Instant::now();
        let image = SnapshotImage::open(&path).unwrap();
        println!("open (row counts): {:?}", started.elapsed());
        let started = std::time::Instant::now();
        let mut total = 0;
        for index in 0..image.chunk_count() {
            total += image.read_chunk(index).unwrap().len();
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "pages: {:.0} MB/s ({} MB)",
            total as f64 / 1e6 / seconds,
            total / 1_000_000
        );
    }
}
