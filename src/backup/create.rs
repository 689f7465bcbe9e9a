//! Taking a backup: a consistent image of the database (`VACUUM INTO` inside a read
//! transaction, so writers continue), cut into chunks that are compressed and sealed on the
//! blocking pool and uploaded to every target, then the manifest, last, on each target that
//! received every chunk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};

use crate::backup::codec::{self, ObjectKind};
use crate::backup::key::BackupKey;
use crate::backup::manifest::{
    self, ChunkInfo, Compression, EncryptionInfo, FORMAT_VERSION, ImageInfo, Manifest,
};
use crate::backup::target::ConfiguredTarget;
use crate::backup::{BackupError, CHUNK_BYTES, now_ms, rfc3339_ms};
use crate::db::database::Database;

/// Chunks being compressed and sealed at once (the machine's cores do the work; more would
/// only hold more memory).
const CHUNKS_IN_FLIGHT: usize = 2;

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

/// Removes the scratch image however the backup ends.
struct ScratchFile(PathBuf);

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Takes a backup of `database` to every target. `scratch_dir` holds the image while it is
/// uploaded (on the data directory's file system, so the copy is cheap).
pub async fn create_backup(
    database: Arc<Database>,
    scratch_dir: &Path,
    targets: &[ConfiguredTarget],
    key: Option<BackupKey>,
    compression_level: i32,
    origin: Origin,
) -> Result<Created, BackupError> {
    if targets.is_empty() {
        return Err(BackupError::Config(
            "no backup target is configured (--backup-target)".into(),
        ));
    }
    let created_at_ms = now_ms();
    let backup_id = manifest::new_backup_id(created_at_ms);
    std::fs::create_dir_all(scratch_dir)
        .map_err(|e| BackupError::Internal(format!("{}: {e}", scratch_dir.display())))?;
    let scratch = ScratchFile(scratch_dir.join(format!("backup-{backup_id}.db")));
    let image_path = scratch.0.clone();
    let (state, image) = tokio::task::spawn_blocking(move || {
        let state = database.export_image(&image_path)?;
        let image = describe_image(&image_path)?;
        Ok::<_, BackupError>((state, image))
    })
    .await
    .map_err(|e| BackupError::Internal(e.to_string()))??;
    let (log_index, log_term) = state
        .last_applied
        .map_or((0, 0), |l| (l.index, l.leader_id.term));

    let mut written: Vec<bool> = vec![true; targets.len()];
    let mut failed: Vec<(String, String)> = Vec::new();
    let mut chunks = Vec::new();
    let chunk_count = image.bytes.div_ceil(CHUNK_BYTES as u64).max(1) as usize;
    let key = key.map(Arc::new);
    let mut encoded = futures_util::stream::iter(0..chunk_count)
        .map(|index| {
            let path = scratch.0.clone();
            let key = key.clone();
            let backup_id = backup_id.clone();
            tokio::task::spawn_blocking(move || {
                encode_chunk(&path, &backup_id, index, key.as_deref(), compression_level)
            })
        })
        .buffered(CHUNKS_IN_FLIGHT);
    while let Some(result) = encoded.next().await {
        let (info, object) = result.map_err(|e| BackupError::Internal(e.to_string()))??;
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
    drop(encoded);
    let stored_bytes = chunks.iter().map(|c| c.stored_bytes).sum();
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        backup_id: backup_id.clone(),
        cluster_id: state.cluster_id.clone().unwrap_or_default(),
        group: origin.group,
        node_id: origin.node_id,
        taken_on: origin.role,
        log_index,
        log_term,
        created_at: rfc3339_ms(created_at_ms),
        created_at_ms,
        image,
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
    };
    let encoded_manifest = Bytes::from(
        serde_json::to_vec_pretty(&manifest)
            .map_err(|e| BackupError::Internal(format!("encode manifest: {e}")))?,
    );
    let mut written_to = Vec::new();
    for (target, ok) in targets.iter().zip(&written) {
        if !ok {
            continue;
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

/// Reads chunk `index` of the image, and compresses, seals and checksums it.
fn encode_chunk(
    image: &Path,
    backup_id: &str,
    index: usize,
    key: Option<&BackupKey>,
    level: i32,
) -> Result<(ChunkInfo, Vec<u8>), BackupError> {
    use std::io::{Read, Seek, SeekFrom};
    let offset = (index * CHUNK_BYTES) as u64;
    let mut file = std::fs::File::open(image)
        .map_err(|e| BackupError::Internal(format!("{}: {e}", image.display())))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| BackupError::Internal(format!("{}: {e}", image.display())))?;
    let mut plain = Vec::with_capacity(CHUNK_BYTES);
    file.take(CHUNK_BYTES as u64)
        .read_to_end(&mut plain)
        .map_err(|e| BackupError::Internal(format!("{}: {e}", image.display())))?;
    let key_name = manifest::chunk_key(backup_id, index);
    let object = codec::encode(
        ObjectKind::ImageChunk,
        &plain,
        level,
        key,
        key_name.as_bytes(),
    )?;
    let info = ChunkInfo {
        key: key_name,
        offset,
        plain_bytes: plain.len() as u64,
        stored_bytes: object.len() as u64,
        sha256: codec::stored_sha256(&object),
    };
    Ok((info, object))
}

/// Size, SHA-256, page size and row counts of an image file.
pub fn describe_image(path: &Path) -> Result<ImageInfo, BackupError> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| BackupError::Internal(format!("{}: {e}", path.display())))?;
    let mut hasher = Sha256::new();
    let bytes = std::io::copy(&mut file, &mut hasher)
        .map_err(|e| BackupError::Internal(format!("{}: {e}", path.display())))?;
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| BackupError::Database(format!("{}: {e}", path.display())))?;
    let (page_size, tables) = table_row_counts(&connection)
        .map_err(|e| BackupError::Database(format!("{}: {e}", path.display())))?;
    Ok(ImageInfo {
        bytes,
        sha256: hex::encode(hasher.finalize()),
        page_size,
        tables,
    })
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
