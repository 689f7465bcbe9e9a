//! Snapshot files on disk: a consistent SQLite image plus a manifest (log id, membership, size,
//! SHA-256). Only the newest snapshot is kept. The manifest is written last, so a crash while
//! building leaves no snapshot that looks complete but is not.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;

use crate::db::database::{AppliedState, Database, DbError, sync_file, sync_parent_dir};
use crate::types::SnapshotMeta;

/// The data half of an openraft snapshot: an open image file and what it must hash to.
#[derive(Debug)]
pub struct SnapshotFile {
    pub file: tokio::fs::File,
    pub path: PathBuf,
    pub size_bytes: u64,
    pub sha256: String,
}

/// Manifest stored beside each snapshot image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotManifest {
    pub format_version: u32,
    pub meta: SnapshotMeta,
    pub size_bytes: u64,
    pub sha256: String,
}

const MANIFEST_FORMAT_VERSION: u32 = 1;

/// The directory of one group's snapshots.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    pub fn open(dir: &Path) -> Result<SnapshotStore, DbError> {
        std::fs::create_dir_all(dir).map_err(|source| DbError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        // Leftovers of interrupted builds or transfers are never valid snapshots.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if name.starts_with("building-") || name.starts_with("incoming-") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(SnapshotStore {
            dir: dir.to_path_buf(),
        })
    }

    /// A fresh path for a snapshot being received from the leader.
    pub fn incoming_path(&self) -> PathBuf {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        self.dir.join(format!(
            "incoming-{}-{}.db",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Builds a snapshot of `database` as it is now and makes it the current one.
    pub fn build(&self, database: &Database) -> Result<(SnapshotManifest, PathBuf), DbError> {
        let building = self.dir.join(format!("building-{}.db", std::process::id()));
        let state = database.export_image(&building)?;
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership,
        };
        self.keep(&building, meta)
    }

    /// Makes the verified image at `image` the current snapshot, described by `meta`.
    pub fn keep(
        &self,
        image: &Path,
        meta: SnapshotMeta,
    ) -> Result<(SnapshotManifest, PathBuf), DbError> {
        let (size_bytes, sha256) = hash_file(image)?;
        let stem = snapshot_stem(&meta);
        let final_image = self.dir.join(format!("{stem}.db"));
        std::fs::rename(image, &final_image).map_err(|source| DbError::Io {
            path: final_image.clone(),
            source,
        })?;
        let manifest = SnapshotManifest {
            format_version: MANIFEST_FORMAT_VERSION,
            meta,
            size_bytes,
            sha256,
        };
        let manifest_path = self.dir.join(format!("{stem}.json"));
        let temporary = self.dir.join(format!("{stem}.json.tmp"));
        let encoded = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| DbError::Internal(format!("encode manifest: {e}")))?;
        std::fs::write(&temporary, encoded).map_err(|source| DbError::Io {
            path: temporary.clone(),
            source,
        })?;
        sync_file(&temporary)?;
        std::fs::rename(&temporary, &manifest_path).map_err(|source| DbError::Io {
            path: manifest_path.clone(),
            source,
        })?;
        sync_parent_dir(&manifest_path)?;
        self.remove_all_but(&stem);
        Ok((manifest, final_image))
    }

    /// The newest complete snapshot, if any.
    pub fn current(&self) -> Result<Option<(SnapshotManifest, PathBuf)>, DbError> {
        let mut manifests: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(|source| DbError::Io {
                path: self.dir.clone(),
                source,
            })?
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        manifests.sort();
        let Some(newest) = manifests.pop() else {
            return Ok(None);
        };
        let text = std::fs::read(&newest).map_err(|source| DbError::Io {
            path: newest.clone(),
            source,
        })?;
        let manifest: SnapshotManifest =
            serde_json::from_slice(&text).map_err(|e| DbError::CorruptState {
                path: newest.clone(),
                message: format!("snapshot manifest: {e}"),
            })?;
        Ok(Some((manifest, newest.with_extension("db"))))
    }

    /// Opens the current snapshot for reading.
    pub async fn open_current(&self) -> Result<Option<(SnapshotMeta, SnapshotFile)>, DbError> {
        let Some((manifest, path)) = self.current()? else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|source| DbError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(Some((
            manifest.meta,
            SnapshotFile {
                file,
                path,
                size_bytes: manifest.size_bytes,
                sha256: manifest.sha256,
            },
        )))
    }

    fn remove_all_but(&self, keep_stem: &str) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with("snapshot-") && !name.starts_with(keep_stem) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Sorts by index: zero-padded so the lexical order of file names is the log order.
fn snapshot_stem(meta: &SnapshotMeta) -> String {
    let (index, leader) = match &meta.last_log_id {
        Some(log_id) => (log_id.index, format!("{}", log_id.leader_id)),
        None => (0, "none".to_string()),
    };
    let leader: String = leader
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("snapshot-{index:020}-{leader}")
}

/// Size and SHA-256 (hex) of a file, read in bounded chunks.
pub fn hash_file(path: &Path) -> Result<(u64, String), DbError> {
    let mut file = std::fs::File::open(path).map_err(|source| DbError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer).map_err(|source| DbError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if read == 0 {
            break;
        }
        size += read as u64;
        hasher.update(&buffer[..read]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// Restores `database` from the current snapshot when the snapshot is ahead of it: after a
/// crash between keeping a received snapshot and swapping the database file.
pub fn recover_from_snapshot(
    store: &SnapshotStore,
    database: &Database,
) -> Result<Option<AppliedState>, DbError> {
    let Some((manifest, image)) = store.current()? else {
        return Ok(None);
    };
    let applied = database.applied_state()?.last_applied;
    if manifest.meta.last_log_id > applied {
        let (size, sha) = hash_file(&image)?;
        if size != manifest.size_bytes || sha != manifest.sha256 {
            return Err(DbError::CorruptState {
                path: image,
                message: "snapshot image does not match its manifest".into(),
            });
        }
        tracing::warn!(snapshot = ?manifest.meta.last_log_id, ?applied, "database is behind its snapshot; restoring it");
        return database.import_image(&image).map(Some);
    }
    Ok(None)
}
