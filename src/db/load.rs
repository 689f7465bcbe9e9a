//! Replacing a group's whole database with an image (`POST /db/load`, restore into a running
//! cluster). The leader checks and normalizes the image before proposing it
//! ([`prepare_image`]); every replica then applies the same entry with SQLite's backup API in
//! one write transaction ([`replace_database`]), so a crash leaves the old database or the new
//! one, never a mixture.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};

use crate::db::database::{DbError, sqlite_error};
use crate::db::state_file::drop_state_tables;
use crate::types::{ImageLoad, LOAD_COMPRESSED_BYTES_MAX, LogId};

/// The first bytes of every SQLite database file.
pub const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Compression of images in load entries: fast, as the leader compresses while the client
/// waits.
const LOAD_COMPRESSION_LEVEL: i32 = 3;

/// The largest image a load entry may carry once decompressed: every replica writes it to a
/// staging file, so this bounds disk, not memory.
pub const LOAD_IMAGE_BYTES_MAX: u64 = 16 * 1024 * 1024 * 1024;

/// Why an uploaded image cannot be loaded; said to the client as is.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoadRefused(pub String);

/// Checks the SQLite file at `upload` (a scratch copy the caller owns and may change), converts
/// it to `page_size` and rollback-journal mode if needed, and compresses it for a log entry.
pub fn prepare_image(upload: &Path, page_size: u64) -> Result<ImageLoad, LoadRefused> {
    let refuse = |message: String| LoadRefused(message);
    let mut header = [0u8; 16];
    {
        use std::io::Read;
        let mut file = std::fs::File::open(upload).map_err(|e| refuse(e.to_string()))?;
        file.read_exact(&mut header)
            .map_err(|_| refuse("the upload is shorter than a SQLite header".into()))?;
    }
    if &header != SQLITE_HEADER {
        return Err(refuse(
            "the upload is neither a SQLite database file nor SQL text".into(),
        ));
    }
    {
        let connection = Connection::open_with_flags(upload, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(|e| refuse(format!("SQLite cannot open the upload: {e}")))?;
        let problems: Vec<String> = connection
            .prepare("PRAGMA integrity_check(10)")
            .and_then(|mut statement| {
                statement
                    .query_map([], |row| row.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .map_err(|e| refuse(format!("the upload is not a usable SQLite database: {e}")))?;
        if problems != ["ok"] {
            return Err(refuse(format!(
                "the upload fails SQLite's integrity check: {}",
                problems.join("; ")
            )));
        }
        let raw_pages: i64 = connection
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE sql LIKE '%sqlite_dbpage%'",
                [],
                |row| row.get(0),
            )
            .map_err(|e| refuse(e.to_string()))?;
        if raw_pages > 0 {
            return Err(refuse(
                "the upload's schema uses sqlite_dbpage (raw pages differ per replica)".into(),
            ));
        }
        // A backup downloaded from an earlier version holds Shoal's state tables: they are
        // not the user's data, and a load never changes the cluster's own state.
        drop_state_tables(&connection).map_err(|e| {
            refuse(format!(
                "removing Shoal's state tables from the upload: {e}"
            ))
        })?;
        let current: u64 = connection
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .map_err(|e| refuse(e.to_string()))?;
        let journal: String = connection
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .map_err(|e| refuse(e.to_string()))?;
        // The backup API cannot change the page size of a database in WAL mode, so the image
        // takes the group's page size here, once, on the leader.
        if current != page_size || journal.eq_ignore_ascii_case("wal") {
            connection
                .execute_batch(&format!(
                    "PRAGMA journal_mode=DELETE; PRAGMA page_size={page_size}; VACUUM;"
                ))
                .map_err(|e| refuse(format!("converting the upload's page size: {e}")))?;
        }
    }
    let image_bytes = std::fs::metadata(upload)
        .map_err(|e| refuse(e.to_string()))?
        .len();
    if image_bytes > LOAD_IMAGE_BYTES_MAX {
        return Err(refuse(format!(
            "the image is {image_bytes} bytes, more than the {LOAD_IMAGE_BYTES_MAX} a load takes"
        )));
    }
    // Streamed: the image is hashed and compressed without being held in memory.
    let mut hashing = HashingReader {
        inner: std::fs::File::open(upload).map_err(|e| refuse(e.to_string()))?,
        hasher: Sha256::new(),
    };
    let mut image_zstd = Vec::new();
    zstd::stream::copy_encode(&mut hashing, &mut image_zstd, LOAD_COMPRESSION_LEVEL)
        .map_err(|e| refuse(format!("compressing the upload: {e}")))?;
    if image_zstd.len() > LOAD_COMPRESSED_BYTES_MAX {
        return Err(refuse(format!(
            "the image compresses to {} bytes, more than the {LOAD_COMPRESSED_BYTES_MAX} a load \
             through the log takes; restore it into a new data directory (shoal restore \
             --data-dir) instead",
            image_zstd.len()
        )));
    }
    Ok(ImageLoad {
        image_zstd,
        image_bytes,
        sha256: hashing.hasher.finalize().into(),
    })
}

/// Hashes what is read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..read]);
        Ok(read)
    }
}

/// Hashes and counts what is written through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
    limit: u64,
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        if self.written + buffer.len() as u64 > self.limit {
            return Err(std::io::Error::other(
                "the image is larger than its entry says",
            ));
        }
        let written = self.inner.write(buffer)?;
        self.hasher.update(&buffer[..written]);
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Replaces the database behind `writer` with `load`'s image (entry `log_id`): one SQLite
/// write transaction. The caller records the new applied position in the state file.
pub fn replace_database(
    writer: &mut Connection,
    path: &Path,
    load: &ImageLoad,
    log_id: &LogId,
) -> Result<(), DbError> {
    let corrupt = |message: String| DbError::CorruptState {
        path: path.to_path_buf(),
        message,
    };
    let staging = path.with_extension("load");
    // Decompressed straight into the staging file (bounded by the entry's stated size), hashed
    // on the way.
    let io = |source: std::io::Error| DbError::Io {
        path: staging.clone(),
        source,
    };
    let mut sink = HashingWriter {
        inner: std::io::BufWriter::new(std::fs::File::create(&staging).map_err(io)?),
        hasher: Sha256::new(),
        written: 0,
        limit: load.image_bytes.min(LOAD_IMAGE_BYTES_MAX),
    };
    let decoded = zstd::stream::copy_decode(load.image_zstd.as_slice(), &mut sink)
        .and_then(|()| std::io::Write::flush(&mut sink));
    let intact = decoded.is_ok()
        && sink.written == load.image_bytes
        && <[u8; 32]>::from(sink.hasher.clone().finalize()) == load.sha256;
    drop(sink);
    if !intact {
        let _ = std::fs::remove_file(&staging);
        return Err(corrupt(format!(
            "load entry {}: the image does not match its size and checksum",
            log_id.index
        )));
    }
    let outcome = (|| {
        let source = Connection::open(&staging).map_err(|e| sqlite_error(&staging, e))?;
        // An image from an earlier version may carry Shoal's state tables: the state of
        // this group is its own, never a loaded file's.
        drop_state_tables(&source).map_err(|e| sqlite_error(&staging, e))?;
        let backup =
            rusqlite::backup::Backup::new(&source, writer).map_err(|e| sqlite_error(path, e))?;
        // One step copies every page in one write transaction on the destination.
        match backup.step(-1).map_err(|e| sqlite_error(path, e))? {
            rusqlite::backup::StepResult::Done => Ok(()),
            other => Err(DbError::Internal(format!(
                "replacing the database: backup step ended with {other:?}"
            ))),
        }
    })();
    let _ = std::fs::remove_file(&staging);
    let _ = std::fs::remove_file(staging.with_extension("load-journal"));
    outcome
}
