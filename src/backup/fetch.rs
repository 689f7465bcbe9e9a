//! Reading a backup back: find its manifest, download every chunk, check its size and
//! SHA-256, open and decompress it, reassemble the image, check the image's SHA-256, then open
//! it with SQLite (`PRAGMA integrity_check`) and compare its row counts with the manifest's.
//! Every failure names the object and the check; nothing is written outside the destination.

use std::path::Path;

use futures_util::StreamExt;
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};

use crate::backup::BackupError;
use crate::backup::codec::{self, ObjectKind};
use crate::backup::create::table_row_counts;
use crate::backup::key::{BackupKey, KeySource, derive_off_thread};
use crate::backup::manifest::{self, MANIFEST_BYTES_MAX, Manifest};
use crate::backup::target::{BackupTarget, ConfiguredTarget, TargetError};

/// Chunks downloaded at once.
const DOWNLOADS_IN_FLIGHT: usize = 4;

/// Room for the object header, authentication tag and checksum around a chunk's data.
const OBJECT_OVERHEAD_MAX: u64 = 1024;

/// Reads and checks the manifest of `backup_id` on `target`.
pub async fn read_manifest(
    target: &dyn BackupTarget,
    backup_id: &str,
) -> Result<Manifest, BackupError> {
    if !manifest::valid_backup_id(backup_id) {
        return Err(BackupError::Config(format!(
            "{backup_id:?} is not a backup id (letters, digits, '-' and '_')"
        )));
    }
    let key = manifest::manifest_key(backup_id);
    let bytes = target
        .get(&key, MANIFEST_BYTES_MAX as u64)
        .await
        .map_err(|error| match error {
            TargetError::NotFound { .. } => BackupError::NotFound(backup_id.to_string()),
            other => BackupError::Target(other),
        })?;
    let decoded = Manifest::decode(&format!("{}/{key}", target.name()), &bytes)?;
    if decoded.backup_id != backup_id {
        return Err(BackupError::Invalid {
            object: format!("{}/{key}", target.name()),
            check: format!("manifest describes backup {}", decoded.backup_id),
        });
    }
    Ok(decoded)
}

/// The first target holding `backup_id`, with its manifest.
pub async fn locate<'a>(
    targets: &'a [ConfiguredTarget],
    backup_id: &str,
) -> Result<(&'a ConfiguredTarget, Manifest), BackupError> {
    let mut last_error = BackupError::NotFound(backup_id.to_string());
    for target in targets {
        match read_manifest(target.target.as_ref(), backup_id).await {
            Ok(manifest) => return Ok((target, manifest)),
            Err(error @ BackupError::NotFound(_)) => last_error = error,
            Err(error) => return Err(error),
        }
    }
    Err(last_error)
}

/// The key that opens `manifest`'s backup, from the configured source.
pub async fn key_for(
    source: &KeySource,
    manifest: &Manifest,
) -> Result<Option<BackupKey>, BackupError> {
    let object = manifest::manifest_key(&manifest.backup_id);
    let key = match (source, &manifest.encryption.kdf_params) {
        (KeySource::Passphrase(passphrase), Some(params)) => {
            let (passphrase, params) = (passphrase.clone(), params.clone());
            Some(
                derive_off_thread(move || BackupKey::derive(&passphrase, &params))
                    .await
                    .map_err(BackupError::Config)?,
            )
        }
        (KeySource::Passphrase(_), None) if manifest.encryption.algorithm != "none" => {
            return Err(BackupError::Invalid {
                object,
                check: "the backup was encrypted with a key file, and a passphrase is configured"
                    .into(),
            });
        }
        (source, _) => {
            let (source, cluster_id) = (source.clone(), manifest.cluster_id.clone());
            derive_off_thread(move || source.resolve(&cluster_id))
                .await
                .map_err(BackupError::Config)?
        }
    };
    codec::check_key(&object, &manifest.encryption.key_check, key.as_ref())?;
    manifest.check_mac(&object, key.as_ref())?;
    Ok(key)
}

/// Downloads `manifest`'s backup from `target` into the file `destination`, checking every
/// chunk and the whole image; `progress` is told the bytes stored as they arrive.
pub async fn download_image(
    target: &dyn BackupTarget,
    manifest: &Manifest,
    key: Option<&BackupKey>,
    destination: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), BackupError> {
    use std::io::Write;
    let io = |e: std::io::Error| BackupError::Internal(format!("{}: {e}", destination.display()));
    let mut file = std::fs::File::create(destination).map_err(io)?;
    let mut hasher = Sha256::new();
    // Owned chunk descriptions: futures borrowing the stream's items would not be `Send`.
    // Downloads and decoding overlap (several chunks at once); the image is written in order.
    let mut chunks = futures_util::stream::iter(manifest.chunks.clone())
        .map(|chunk| async move {
            let name = format!("{}/{}", target.name(), chunk.key);
            let invalid = |check: String| BackupError::Invalid {
                object: name.clone(),
                check,
            };
            let object = target
                .get(
                    &chunk.key,
                    chunk.stored_bytes.saturating_add(OBJECT_OVERHEAD_MAX),
                )
                .await?;
            if object.len() as u64 != chunk.stored_bytes {
                return Err(invalid(format!(
                    "object is {} bytes, the manifest says {} (truncated or replaced)",
                    object.len(),
                    chunk.stored_bytes
                )));
            }
            if codec::object_digest(&object) != chunk.sha256 {
                return Err(invalid(
                    "SHA-256 differs from the manifest's: the object is damaged or replaced".into(),
                ));
            }
            progress(object.len() as u64);
            let key = key.cloned();
            let plain_bytes = chunk.plain_bytes as usize;
            let (decode_name, associated) = (name.clone(), chunk.key.clone());
            let plain = tokio::task::spawn_blocking(move || {
                codec::decode(
                    &decode_name,
                    &object,
                    ObjectKind::ImageChunk,
                    key.as_ref(),
                    associated.as_bytes(),
                    plain_bytes,
                )
            })
            .await
            .map_err(|e| BackupError::Internal(e.to_string()))??;
            if plain.len() != plain_bytes {
                return Err(invalid(format!(
                    "holds {} bytes of image, the manifest says {plain_bytes}",
                    plain.len()
                )));
            }
            Ok(plain)
        })
        .buffered(DOWNLOADS_IN_FLIGHT);
    while let Some(next) = chunks.next().await {
        let plain = next?;
        (file, hasher) = tokio::task::spawn_blocking(move || {
            hasher.update(&plain);
            file.write_all(&plain).map(|()| (file, hasher))
        })
        .await
        .map_err(|e| BackupError::Internal(e.to_string()))?
        .map_err(io)?;
    }
    file.sync_all().map_err(io)?;
    if hex::encode(hasher.finalize()) != manifest.image.sha256 {
        return Err(BackupError::Invalid {
            object: format!(
                "{}/{}",
                target.name(),
                manifest::manifest_key(&manifest.backup_id)
            ),
            check: "the reassembled image's SHA-256 differs from the manifest's".into(),
        });
    }
    Ok(())
}

/// How thoroughly [`check_image`] checks the SQLite structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thoroughness {
    /// `PRAGMA integrity_check`: every b-tree, every index entry (verification).
    Full,
    /// `PRAGMA quick_check`: every b-tree without cross-checking indexes against tables
    /// (restores, whose every byte the image SHA-256 already vouched for).
    Quick,
}

/// Opens a downloaded image with SQLite: integrity check, and row counts as recorded.
pub fn check_image(
    image: &Path,
    manifest: &Manifest,
    thoroughness: Thoroughness,
) -> Result<(), BackupError> {
    let invalid = |check: String| BackupError::Invalid {
        object: format!("backup {} image", manifest.backup_id),
        check,
    };
    let connection = Connection::open_with_flags(
        image,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| invalid(format!("SQLite cannot open it: {e}")))?;
    let problems: Vec<String> = connection
        .prepare(match thoroughness {
            Thoroughness::Full => "PRAGMA integrity_check(20)",
            Thoroughness::Quick => "PRAGMA quick_check(20)",
        })
        .and_then(|mut statement| {
            statement
                .query_map([], |row| row.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(|e| invalid(format!("integrity check could not run: {e}")))?;
    if problems != ["ok"] {
        return Err(invalid(format!(
            "SQLite integrity check: {}",
            problems.join("; ")
        )));
    }
    let (_, tables) =
        table_row_counts(&connection).map_err(|e| invalid(format!("counting rows: {e}")))?;
    if tables != manifest.image.tables {
        return Err(invalid(format!(
            "row counts {tables:?} differ from the manifest's {:?}",
            manifest.image.tables
        )));
    }
    Ok(())
}
