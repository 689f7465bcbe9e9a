//! What a target holds: complete backups (those with a manifest) and their last verification,
//! verification itself, and pruning by the target's retention policy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;

use crate::backup::fetch::{Thoroughness, check_image, download_image, key_for, read_manifest};
use crate::backup::key::KeySource;
use crate::backup::manifest::{self, Manifest, VerifyRecord};
use crate::backup::retention::{Candidate, to_prune};
use crate::backup::target::ConfiguredTarget;
use crate::backup::{BackupError, archive, now_ms, rfc3339_ms};

/// A backup whose chunks were never followed by a manifest is abandoned after this long
/// (a crash or a failed upload) and removed by pruning.
const ABANDONED_AFTER_MS: i64 = 3_600_000;

/// Verification records read back per backup at most (the newest decides).
const VERIFY_RECORD_BYTES_MAX: u64 = 64 * 1024;

/// One complete backup on one target.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogEntry {
    pub target: String,
    pub backup_id: String,
    pub cluster_id: String,
    pub created_at: String,
    pub created_at_ms: i64,
    /// Leader time of the last command the backup holds (0: none).
    pub last_command_ms: i64,
    pub log_index: u64,
    pub taken_on: String,
    pub node_id: u64,
    pub image_bytes: u64,
    pub stored_bytes: u64,
    pub encryption: String,
    pub last_verification: Option<VerifyRecord>,
    /// Set when the manifest cannot be read: the backup is listed (so the damage is seen)
    /// but never restored or counted as good.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CatalogEntry {
    fn new(target: &str, manifest: &Manifest, last_verification: Option<VerifyRecord>) -> Self {
        CatalogEntry {
            target: target.to_string(),
            backup_id: manifest.backup_id.clone(),
            cluster_id: manifest.cluster_id.clone(),
            created_at: manifest.created_at.clone(),
            created_at_ms: manifest.created_at_ms,
            last_command_ms: manifest.last_command_ms,
            log_index: manifest.log_index,
            taken_on: manifest.taken_on.clone(),
            node_id: manifest.node_id,
            image_bytes: manifest.image.bytes,
            stored_bytes: manifest.stored_bytes,
            encryption: manifest.encryption.algorithm.clone(),
            last_verification,
            error: None,
        }
    }

    fn unreadable(target: &str, backup_id: &str, error: &BackupError) -> Self {
        let created_at_ms = created_ms_of(backup_id).unwrap_or_default();
        CatalogEntry {
            target: target.to_string(),
            backup_id: backup_id.to_string(),
            cluster_id: String::new(),
            created_at: rfc3339_ms(created_at_ms),
            created_at_ms,
            last_command_ms: 0,
            log_index: 0,
            taken_on: String::new(),
            node_id: 0,
            image_bytes: 0,
            stored_bytes: 0,
            encryption: String::new(),
            last_verification: None,
            error: Some(error.to_string()),
        }
    }

    /// Not known to be bad.
    pub fn good(&self) -> bool {
        self.error.is_none() && self.last_verification.as_ref().is_none_or(|v| v.ok)
    }
}

/// What the keys under `backups/` say about each backup id.
#[derive(Default)]
struct Listing {
    has_manifest: bool,
    newest_verify: Option<String>,
    objects: Vec<String>,
    /// When the newest of its objects was written.
    newest_write_ms: Option<i64>,
}

async fn listing(target: &ConfiguredTarget) -> Result<BTreeMap<String, Listing>, BackupError> {
    let mut backups: BTreeMap<String, Listing> = BTreeMap::new();
    for object in target.target.list("backups/").await? {
        let mut parts = object.key.splitn(3, '/');
        let (Some(_), Some(id), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let entry = backups.entry(id.to_string()).or_default();
        entry.newest_write_ms = entry.newest_write_ms.max(object.modified_ms);
        if name == "manifest.json" {
            entry.has_manifest = true;
        } else if name.starts_with("verify-") && name.ends_with(".json") {
            // Names carry the time zero-padded, so the greatest is the newest.
            if entry
                .newest_verify
                .as_deref()
                .is_none_or(|n| n < object.key.as_str())
            {
                entry.newest_verify = Some(object.key.clone());
            }
        }
        entry.objects.push(object.key);
    }
    Ok(backups)
}

/// Every complete backup on `target`, oldest first. A backup whose manifest cannot be read is
/// listed with the error (a catalog that silently skipped damage would hide it).
pub async fn list_backups(target: &ConfiguredTarget) -> Result<Vec<CatalogEntry>, BackupError> {
    let mut entries = Vec::new();
    for (id, listing) in listing(target).await? {
        if !listing.has_manifest {
            continue;
        }
        let manifest = match read_manifest(target.target.as_ref(), &id).await {
            Ok(manifest) => manifest,
            // Removed between the listing and the read (pruned meanwhile): not there.
            Err(BackupError::NotFound(_)) => continue,
            // A name that is not a backup id: not one of ours.
            Err(BackupError::Config(_)) => continue,
            Err(
                error @ (BackupError::Invalid { .. }
                | BackupError::Target(crate::backup::target::TargetError::TooLarge {
                    ..
                })),
            ) => {
                entries.push(CatalogEntry::unreadable(target.target.name(), &id, &error));
                continue;
            }
            Err(error) => return Err(error),
        };
        let verification = match &listing.newest_verify {
            Some(key) => read_verify_record(target, key).await,
            None => None,
        };
        entries.push(CatalogEntry::new(
            target.target.name(),
            &manifest,
            verification,
        ));
    }
    Ok(entries)
}

async fn read_verify_record(target: &ConfiguredTarget, key: &str) -> Option<VerifyRecord> {
    let bytes = target.target.get(key, VERIFY_RECORD_BYTES_MAX).await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Downloads and checks one backup completely (see `fetch`), records the outcome beside it
/// on the target, and returns the record. `scratch_dir` holds the image meanwhile.
pub async fn verify_backup(
    target: &ConfiguredTarget,
    backup_id: &str,
    key_source: &KeySource,
    scratch_dir: &Path,
) -> Result<VerifyRecord, BackupError> {
    let started = Instant::now();
    // A missing backup is an error of the request, not a failed verification.
    let manifest = read_manifest(target.target.as_ref(), backup_id).await?;
    let outcome = check_backup(target, manifest, key_source, scratch_dir).await;
    let checked_at_ms = now_ms();
    let record = VerifyRecord {
        backup_id: backup_id.to_string(),
        ok: outcome.is_ok(),
        checked_at: rfc3339_ms(checked_at_ms),
        checked_at_ms,
        duration_ms: started.elapsed().as_millis() as u64,
        error: outcome.err().map(|e| e.to_string()),
    };
    let encoded = serde_json::to_vec_pretty(&record)
        .map_err(|e| BackupError::Internal(format!("encode verification: {e}")))?;
    target
        .target
        .put(
            &manifest::verify_key(backup_id, checked_at_ms),
            Bytes::from(encoded),
        )
        .await?;
    crate::metrics::metrics().record_backup_verification(record.ok);
    if record.ok {
        tracing::info!(
            backup = backup_id,
            target = target.target.name(),
            "backup verified"
        );
    } else {
        tracing::error!(
            backup = backup_id,
            target = target.target.name(),
            error = record.error.as_deref().unwrap_or_default(),
            "backup verification FAILED"
        );
    }
    Ok(record)
}

async fn check_backup(
    target: &ConfiguredTarget,
    manifest: Manifest,
    key_source: &KeySource,
    scratch_dir: &Path,
) -> Result<(), BackupError> {
    let key = key_for(key_source, &manifest).await?;
    std::fs::create_dir_all(scratch_dir)
        .map_err(|e| BackupError::Internal(format!("{}: {e}", scratch_dir.display())))?;
    let scratch = tempfile::Builder::new()
        .prefix("verify-")
        .tempfile_in(scratch_dir)
        .map_err(|e| BackupError::Internal(format!("{}: {e}", scratch_dir.display())))?;
    download_image(
        target.target.as_ref(),
        &manifest,
        key.as_ref(),
        scratch.path(),
        &|_| {},
    )
    .await?;
    let path = scratch.path().to_path_buf();
    tokio::task::spawn_blocking(move || check_image(&path, &manifest, Thoroughness::Full))
        .await
        .map_err(|e| BackupError::Internal(e.to_string()))?
}

/// Removes what `target`'s retention lets go (never the newest good backup, nor one in
/// `verifying`), backups abandoned before their manifest, and archived log segments no kept
/// backup needs. Returns the removed backup ids.
pub async fn prune_target(
    target: &ConfiguredTarget,
    verifying: &BTreeSet<String>,
) -> Result<Vec<String>, BackupError> {
    let listing = listing(target).await?;
    let catalog = list_backups(target).await?;
    let candidates: Vec<Candidate> = catalog
        .iter()
        .map(|entry| Candidate {
            backup_id: entry.backup_id.clone(),
            created_at_ms: entry.created_at_ms,
            good: entry.good(),
            verifying: verifying.contains(&entry.backup_id),
        })
        .collect();
    let mut removed = Vec::new();
    for id in to_prune(&target.retention, &candidates) {
        if let Some(objects) = listing.get(&id).map(|l| &l.objects) {
            remove_backup(target, &id, objects).await?;
            removed.push(id);
        }
    }
    let now = now_ms();
    for (id, entry) in &listing {
        // Judged by its newest object, not its id's time: a long (throttled) backup still
        // writing chunks is not abandoned.
        let last_write = entry.newest_write_ms.or_else(|| created_ms_of(id));
        let abandoned =
            !entry.has_manifest && last_write.is_some_and(|at| now - at > ABANDONED_AFTER_MS);
        if abandoned {
            remove_backup(target, id, &entry.objects).await?;
        }
    }
    // Log segments older than every kept backup of their cluster serve no restore.
    let mut oldest_kept: BTreeMap<&str, u64> = BTreeMap::new();
    for entry in catalog.iter().filter(|e| !removed.contains(&e.backup_id)) {
        let index = oldest_kept.entry(&entry.cluster_id).or_insert(u64::MAX);
        *index = (*index).min(entry.log_index);
    }
    for (cluster_id, index) in oldest_kept {
        archive::prune_segments_before(target, cluster_id, index).await?;
    }
    if !removed.is_empty() {
        tracing::info!(target = target.target.name(), removed = ?removed, "pruned backups");
    }
    Ok(removed)
}

/// The manifest goes first, so a half-removed backup is invisible rather than broken.
async fn remove_backup(
    target: &ConfiguredTarget,
    backup_id: &str,
    objects: &[String],
) -> Result<(), BackupError> {
    let manifest_key = manifest::manifest_key(backup_id);
    target.target.delete(&manifest_key).await?;
    for key in objects.iter().filter(|k| **k != manifest_key) {
        target.target.delete(key).await?;
    }
    Ok(())
}

/// The creation time encoded in a backup id (`20261122T001500123Z-…`).
fn created_ms_of(backup_id: &str) -> Option<i64> {
    let stamp = backup_id.split('-').next()?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%3fZ")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_ids_tell_their_creation_time() {
        let id = manifest::new_backup_id(1_763_000_000_123);
        assert_eq!(created_ms_of(&id), Some(1_763_000_000_123));
        assert_eq!(created_ms_of("nonsense"), None);
    }
}
