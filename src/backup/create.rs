//! Taking a backup: a consistent image of the database read page by page inside one read
//! transaction (writers carry on; no copy is written first), cut into chunks that two
//! low-priority threads compress and seal, uploaded to every target, then the manifest, last,
//! on each target that received every chunk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use bytes::Bytes;
use rusqlite::Connection;
use sha2::{Digest, Sha256};

use crate::backup::codec::{self, ObjectKind};
use crate::backup::image::{SnapshotImage, lower_thread_priority};
use crate::backup::key::BackupKey;
use crate::backup::manifest::{
    self, ChunkInfo, Compression, EncryptionInfo, FORMAT_VERSION, ImageInfo, Manifest,
};
use crate::backup::target::ConfiguredTarget;
use crate::backup::{BackupError, now_ms, rfc3339_ms};
use crate::db::database::AppliedState;

/// Threads compressing and sealing chunks (the machine's cores do the work; more would only
/// hold more memory).
const ENCODER_THREADS: usize = 2;

/// Who takes the backup.
#[derive(Debug, Clone)]
pub struct Origin {
    pub node_id: u64,
    pub role: String,
    pub group: u64,
}

/// The outcome on each target: the manifest was written there, or why not.
#[derive(Debug)]
pub struct Created {
    pub manifest: Manifest,
    pub written_to: Vec<String>,
    pub failed: Vec<(String, String)>,
}

/// What the snapshot reader reports once its read transaction is open.
struct Opened {
    backup_id: String,
    created_at_ms: i64,
    state: AppliedState,
    page_size: u64,
    bytes: u64,
    tables: BTreeMap<String, u64>,
}

/// Takes a backup of the database at `database_path` to every target.
pub async fn create_backup(
    database_path: PathBuf,
    targets: &[ConfiguredTarget],
    key: Option<BackupKey>,
    compression_level: i32,
    max_bytes_per_s: Option<u64>,
    origin: Origin,
) -> Result<Created, BackupError> {
    if targets.is_empty() {
        return Err(BackupError::Config(
            "no backup target is configured (--backup-target)".into(),
        ));
    }
    // Reader thread → (bounded) → encoder threads → (bounded) → this task, which uploads:
    // at most a handful of chunks are in memory at once.
    let (opened_tx, opened_rx) = tokio::sync::oneshot::channel::<Result<Opened, BackupError>>();
    let (plain_tx, plain_rx) = mpsc::sync_channel::<(String, usize, Vec<u8>)>(1);
    let (encoded_tx, mut encoded_rx) =
        tokio::sync::mpsc::channel::<Result<(ChunkInfo, Vec<u8>), BackupError>>(1);
    let reader = std::thread::Builder::new()
        .name("shoal-backup-read".into())
        .spawn(move || read_snapshot(&database_path, max_bytes_per_s, opened_tx, plain_tx))
        .map_err(|e| BackupError::Internal(format!("backup reader thread: {e}")))?;
    let plain_rx = Arc::new(Mutex::new(plain_rx));
    let key = key.map(Arc::new);
    for number in 0..ENCODER_THREADS {
        let (plain_rx, encoded_tx, key) = (plain_rx.clone(), encoded_tx.clone(), key.clone());
        std::thread::Builder::new()
            .name(format!("shoal-backup-encode-{number}"))
            .spawn(move || encode_chunks(&plain_rx, &encoded_tx, key.as_deref(), compression_level))
            .map_err(|e| BackupError::Internal(format!("backup encoder thread: {e}")))?;
    }
    drop(encoded_tx);
    let opened = opened_rx
        .await
        .map_err(|_| BackupError::Internal("the backup reader stopped".into()))??;
    let backup_id = opened.backup_id.clone();

    let mut written: Vec<bool> = vec![true; targets.len()];
    let mut failed: Vec<(String, String)> = Vec::new();
    let mut chunks = Vec::new();
    while let Some(result) = encoded_rx.recv().await {
        let (info, object) = result?;
        let object = Bytes::from(object);
        let uploads = targets.iter().zip(&written).map(|(target, ok)| {
            let object = object.clone();
            let key = info.key.clone();
            async move {
                if *ok {
                    target
                        .target
                        .put(&key, object)
                        .await
                        .map_err(|e| e.to_string())
                } else {
                    Err(String::new())
                }
            }
        });
        for (index, outcome) in futures_util::future::join_all(uploads)
            .await
            .into_iter()
            .enumerate()
        {
            if let Err(message) = outcome
                && written[index]
            {
                written[index] = false;
                failed.push((targets[index].target.name().to_string(), message));
            }
        }
        if !written.iter().any(|ok| *ok) {
            break;
        }
        chunks.push(info);
    }
    // Dropping the receiver stops the encoders and then the reader if uploads failed.
    drop(encoded_rx);
    let image_sha256 = reader
        .join()
        .map_err(|_| BackupError::Internal("the backup reader panicked".into()))??;
    chunks.sort_by_key(|chunk| chunk.offset);
    let stored_bytes = chunks.iter().map(|c| c.stored_bytes).sum();
    let (log_index, log_term) = opened
        .state
        .last_applied
        .map_or((0, 0), |l| (l.index, l.leader_id.term));
    let mut manifest = Manifest {
        format_version: FORMAT_VERSION,
        backup_id: backup_id.clone(),
        cluster_id: opened.state.cluster_id.clone().unwrap_or_default(),
        group: origin.group,
        node_id: origin.node_id,
        taken_on: origin.role,
        log_index,
        log_term,
        created_at: rfc3339_ms(opened.created_at_ms),
        created_at_ms: opened.created_at_ms,
        last_command_ms: opened.state.last_command_ms.unwrap_or_default(),
        image: ImageInfo {
            bytes: opened.bytes,
            sha256: image_sha256,
            page_size: opened.page_size,
            tables: opened.tables,
        },
        compression: Compression {
            algorithm: "zstd".into(),
            level: compression_level,
        },
        encryption: EncryptionInfo {
            algorithm: codec::algorithm_name(key.as_deref()).into(),
            kdf: match key.as_deref() {
                None => "none".into(),
                Some(key) if key.kdf.is_some() => "argon2id".into(),
                Some(_) => "raw-key".into(),
            },
            kdf_params: key.as_deref().and_then(|k| k.kdf.clone()),
            key_check: codec::key_check(key.as_deref())?,
        },
        chunks,
        stored_bytes,
        mac: String::new(),
    };
    manifest.sign(key.as_deref())?;
    let encoded_manifest = Bytes::from(
        serde_json::to_vec_pretty(&manifest)
            .map_err(|e| BackupError::Internal(format!("encode manifest: {e}")))?,
    );
    let mut written_to = Vec::new();
    for (target, ok) in targets.iter().zip(&written) {
        if !ok {
            continue;
        }
        // Every chunk must still be there (nothing pruned it meanwhile) before the manifest
        // makes the backup visible.
        match missing_chunks(target, &manifest).await {
            Ok(0) => {}
            Ok(missing) => {
                failed.push((
                    target.target.name().to_string(),
                    format!("{missing} chunks vanished before the manifest was written"),
                ));
                continue;
            }
            Err(error) => {
                failed.push((target.target.name().to_string(), error.to_string()));
                continue;
            }
        }
        // The manifest goes last: a backup without one is invisible and never restored.
        match target
            .target
            .put(
                &manifest::manifest_key(&backup_id),
                encoded_manifest.clone(),
            )
            .await
        {
            Ok(()) => written_to.push(target.target.name().to_string()),
            Err(error) => failed.push((target.target.name().to_string(), error.to_string())),
        }
    }
    if written_to.is_empty() {
        let reasons: Vec<String> = failed.iter().map(|(t, e)| format!("{t}: {e}")).collect();
        return Err(BackupError::Internal(format!(
            "backup {backup_id} failed on every target: {}",
            reasons.join("; ")
        )));
    }
    tracing::info!(
        backup = %backup_id,
        log_index = manifest.log_index,
        image_bytes = manifest.image.bytes,
        stored_bytes = manifest.stored_bytes,
        targets = written_to.len(),
        "backup created"
    );
    Ok(Created {
        manifest,
        written_to,
        failed,
    })
}

/// How many of `manifest`'s chunks `target` does not hold (with their recorded size).
async fn missing_chunks(
    target: &ConfiguredTarget,
    manifest: &Manifest,
) -> Result<usize, BackupError> {
    let present: std::collections::BTreeMap<String, u64> = target
        .target
        .list(&manifest::backup_prefix(&manifest.backup_id))
        .await?
        .into_iter()
        .map(|object| (object.key, object.bytes))
        .collect();
    Ok(manifest
        .chunks
        .iter()
        .filter(|chunk| present.get(&chunk.key) != Some(&chunk.stored_bytes))
        .count())
}

/// The reader thread: opens the snapshot, reports it, then sends its chunks in order and
/// returns the SHA-256 of the whole image.
fn read_snapshot(
    database: &Path,
    max_bytes_per_s: Option<u64>,
    opened_tx: tokio::sync::oneshot::Sender<Result<Opened, BackupError>>,
    plain_tx: mpsc::SyncSender<(String, usize, Vec<u8>)>,
) -> Result<String, BackupError> {
    lower_thread_priority();
    let image = match SnapshotImage::open(database) {
        Ok(image) => image,
        Err(error) => {
            let message = error.to_string();
            let _ = opened_tx.send(Err(error));
            return Err(BackupError::Internal(message));
        }
    };
    // Everything committed when the snapshot began is in it: the backup is "as of" now.
    let created_at_ms = now_ms();
    let backup_id = manifest::new_backup_id(created_at_ms);
    let opened = Opened {
        backup_id: backup_id.clone(),
        created_at_ms,
        state: image.state.clone(),
        page_size: image.page_size,
        bytes: image.bytes(),
        tables: image.tables.clone(),
    };
    if opened_tx.send(Ok(opened)).is_err() {
        return Err(BackupError::Internal("the backup was abandoned".into()));
    }
    let mut hasher = Sha256::new();
    let started = std::time::Instant::now();
    let mut read: u64 = 0;
    for index in 0..image.chunk_count() {
        let plain = image.read_chunk(index)?;
        hasher.update(&plain);
        read += plain.len() as u64;
        if let Some(rate) = max_bytes_per_s.filter(|r| *r > 0) {
            let due = std::time::Duration::from_secs_f64(read as f64 / rate as f64);
            if let Some(early) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(early);
            }
        }
        if plain_tx.send((backup_id.clone(), index, plain)).is_err() {
            return Err(BackupError::Internal("the backup was abandoned".into()));
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// An encoder thread: compresses, seals and checksums chunks until there are none.
fn encode_chunks(
    plain_rx: &Mutex<mpsc::Receiver<(String, usize, Vec<u8>)>>,
    encoded_tx: &tokio::sync::mpsc::Sender<Result<(ChunkInfo, Vec<u8>), BackupError>>,
    key: Option<&BackupKey>,
    level: i32,
) {
    lower_thread_priority();
    loop {
        let next = match plain_rx.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok((backup_id, index, plain)) = next else {
            return;
        };
        let key_name = manifest::chunk_key(&backup_id, index);
        let encoded = codec::encode(
            ObjectKind::ImageChunk,
            &plain,
            level,
            key,
            key_name.as_bytes(),
        )
        .map(|object| {
            let info = ChunkInfo {
                key: key_name,
                offset: (index * crate::backup::CHUNK_BYTES) as u64,
                plain_bytes: plain.len() as u64,
                stored_bytes: object.len() as u64,
                sha256: codec::object_digest(&object),
            };
            (info, object)
        });
        if encoded_tx.blocking_send(encoded).is_err() {
            return;
        }
    }
}

/// The page size and the rows of every user table (Shoal's own tables excluded).
pub fn table_row_counts(connection: &Connection) -> rusqlite::Result<(u64, BTreeMap<String, u64>)> {
    let page_size: u64 = connection.query_row("PRAGMA page_size", [], |row| row.get(0))?;
    let names: Vec<String> = connection
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_shoal\\_%' ESCAPE '\\' \
             ORDER BY name",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut tables = BTreeMap::new();
    for name in names {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        let count: i64 =
            connection.query_row(&format!("SELECT count(*) FROM {quoted}"), [], |row| {
                row.get(0)
            })?;
        tables.insert(name, count as u64);
    }
    Ok((page_size, tables))
}

#[cfg(test)]
mod speed {
    //! `cargo test --release --lib create_speed -- --ignored --nocapture`: a whole backup of a
    //! 400 MB database to a directory in memory.
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn create_speed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let _writer = crate::backup::image::test_database(&path, 400_000, 1000);
        let memory = tempfile::tempdir_in("/dev/shm").unwrap();
        let target = crate::backup::target::parse_target(memory.path().to_str().unwrap()).unwrap();
        let key_path = dir.path().join("key");
        std::fs::write(&key_path, [5u8; 32]).unwrap();
        let key = BackupKey::from_key_file(&key_path).unwrap();
        for key in [None, Some(key)] {
            let started = std::time::Instant::now();
            let created = create_backup(
                path.clone(),
                std::slice::from_ref(&target),
                key,
                1,
                None,
                Origin {
                    node_id: 1,
                    role: "leader".into(),
                    group: 1,
                },
            )
            .await
            .unwrap();
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "backup ({}): {:.0} MB/s",
                created.manifest.encryption.algorithm,
                created.manifest.image.bytes as f64 / 1e6 / seconds
            );
        }
    }
}
