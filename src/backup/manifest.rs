//! The manifest of one backup (what it holds, where its chunks are and what they must hash to)
//! and the record of each verification. Both are plain JSON objects beside the chunks; neither
//! ever holds a key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::backup::BackupError;

/// Version of the backup layout this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Manifests are small; anything larger is not one of ours.
pub const MANIFEST_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Everything needed to restore and check one backup, written after all its chunks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub backup_id: String,
    pub cluster_id: String,
    pub group: u64,
    /// The node the image was taken on, and its role then ("leader", "follower", "learner").
    pub node_id: u64,
    pub taken_on: String,
    /// The Raft log position the image contains everything up to.
    pub log_index: u64,
    pub log_term: u64,
    /// When the backup was taken (RFC 3339, UTC) and the same in milliseconds, by the clock
    /// of the node that took it.
    pub created_at: String,
    pub created_at_ms: i64,
    /// The leader timestamp of the last command the image holds (0: none): what a
    /// point-in-time restore compares with, as the archived entries carry the same clock.
    #[serde(default)]
    pub last_command_ms: i64,
    pub image: ImageInfo,
    pub compression: Compression,
    pub encryption: EncryptionInfo,
    pub chunks: Vec<ChunkInfo>,
    /// Bytes stored on the target for all chunks.
    pub stored_bytes: u64,
    /// HMAC-SHA256 of the manifest (with this field empty) under a key derived from the backup
    /// key: with encryption on, nobody without the key can alter a manifest unnoticed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
}

/// The SQLite image a backup holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub bytes: u64,
    /// SHA-256 of the whole image: the content hash verification compares.
    pub sha256: String,
    pub page_size: u64,
    /// Rows per user table when the image was taken.
    pub tables: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compression {
    pub algorithm: String,
    pub level: i32,
}

/// How chunks are encrypted: the algorithm and key derivation, never the key itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncryptionInfo {
    /// `codec::ENCRYPTION_ALGORITHM` or "none".
    pub algorithm: String,
    /// "raw-key" (a key file), "argon2id" (a passphrase) or "none".
    pub kdf: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kdf_params: Option<KdfParams>,
    /// An empty message sealed with the key: tells "wrong key" apart from a damaged chunk.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_check: String,
}

/// Argon2id parameters for a passphrase-derived key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub salt: String,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

/// One stored chunk of the image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkInfo {
    pub key: String,
    pub offset: u64,
    pub plain_bytes: u64,
    pub stored_bytes: u64,
    /// SHA-256 of the stored object.
    pub sha256: String,
}

/// The outcome of one verification of a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyRecord {
    pub backup_id: String,
    pub ok: bool,
    pub checked_at: String,
    pub checked_at_ms: i64,
    pub duration_ms: u64,
    /// What failed, naming the object and the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where the objects of a backup live on a target.
pub fn backup_prefix(backup_id: &str) -> String {
    format!("backups/{backup_id}/")
}

pub fn manifest_key(backup_id: &str) -> String {
    format!("backups/{backup_id}/manifest.json")
}

pub fn chunk_key(backup_id: &str, index: usize) -> String {
    format!("backups/{backup_id}/chunk-{index:06}")
}

pub fn verify_key(backup_id: &str, checked_at_ms: i64) -> String {
    format!("backups/{backup_id}/verify-{checked_at_ms:016}.json")
}

/// A backup id: its creation time (so ids sort by age) and random bits (so two nodes never
/// pick the same one).
pub fn new_backup_id(created_at_ms: i64) -> String {
    let time = chrono::DateTime::from_timestamp_millis(created_at_ms)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%S%.3fZ")
        .to_string()
        .replace('.', "");
    let random: u32 = rand::random();
    format!("{time}-{random:08x}")
}

/// Whether `id` has the shape of a backup id (used before it becomes part of an object key).
pub fn valid_backup_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Bounds on what a manifest may ask for, checked before anything is derived or allocated.
const KDF_MEMORY_KIB_MAX: u32 = 1024 * 1024;
const KDF_ITERATIONS_MAX: u32 = 16;
const KDF_PARALLELISM_MAX: u32 = 16;

impl Manifest {
    /// The bytes the MAC covers: the manifest as JSON with the MAC left out.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, BackupError> {
        let mut unsigned = self.clone();
        unsigned.mac.clear();
        serde_json::to_vec(&unsigned)
            .map_err(|e| BackupError::Internal(format!("encode manifest: {e}")))
    }

    /// Signs the manifest with the backup key (no-op without one).
    pub fn sign(&mut self, key: Option<&crate::backup::key::BackupKey>) -> Result<(), BackupError> {
        self.mac = match key {
            Some(key) => crate::backup::codec::manifest_mac(key, &self.signed_bytes()?)?,
            None => String::new(),
        };
        Ok(())
    }

    /// Checks the MAC when a key is configured; `object` names the manifest in errors.
    pub fn check_mac(
        &self,
        object: &str,
        key: Option<&crate::backup::key::BackupKey>,
    ) -> Result<(), BackupError> {
        let Some(key) = key else { return Ok(()) };
        let invalid = |check: &str| BackupError::Invalid {
            object: object.to_string(),
            check: check.to_string(),
        };
        if self.mac.is_empty() {
            return Err(invalid(
                "the manifest carries no MAC but a backup key is configured (refusing a possibly \
                 substituted manifest)",
            ));
        }
        let expected = crate::backup::codec::manifest_mac(key, &self.signed_bytes()?)?;
        // Both are hex of the same length; compare without an early exit.
        let differs = expected
            .bytes()
            .zip(self.mac.bytes())
            .fold(expected.len() != self.mac.len(), |acc, (a, b)| {
                acc | (a != b)
            });
        if differs {
            return Err(invalid(
                "the manifest's MAC does not match: it was altered, or the key is wrong",
            ));
        }
        Ok(())
    }

    /// Decodes and sanity-checks a manifest read from `key`.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<Manifest, BackupError> {
        let invalid = |check: String| BackupError::Invalid {
            object: key.to_string(),
            check,
        };
        if bytes.len() > MANIFEST_BYTES_MAX {
            return Err(invalid(format!(
                "manifest is {} bytes, more than {MANIFEST_BYTES_MAX}",
                bytes.len()
            )));
        }
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(invalid(format!(
                "format version {} is not supported (this build reads {FORMAT_VERSION})",
                manifest.format_version
            )));
        }
        if !valid_backup_id(&manifest.backup_id) {
            return Err(invalid(
                "backup id has characters outside [A-Za-z0-9_-]".into(),
            ));
        }
        if let Some(params) = &manifest.encryption.kdf_params
            && (params.memory_kib > KDF_MEMORY_KIB_MAX
                || params.iterations > KDF_ITERATIONS_MAX
                || params.parallelism > KDF_PARALLELISM_MAX
                || params.salt.len() > 256)
        {
            return Err(invalid(format!(
                "key derivation parameters out of range ({} KiB, {} passes, {} lanes)",
                params.memory_kib, params.iterations, params.parallelism
            )));
        }
        let chunk_stored_max = 2 * crate::backup::CHUNK_BYTES as u64;
        let mut expected_offset: u64 = 0;
        for (index, chunk) in manifest.chunks.iter().enumerate() {
            if chunk.plain_bytes > crate::backup::CHUNK_BYTES as u64
                || chunk.stored_bytes > chunk_stored_max
            {
                return Err(invalid(format!(
                    "chunk {index} is larger than any chunk is"
                )));
            }
            if chunk.key != chunk_key(&manifest.backup_id, index) {
                return Err(invalid(format!(
                    "chunk {index} is named {:?}, not {:?}",
                    chunk.key,
                    chunk_key(&manifest.backup_id, index)
                )));
            }
            if chunk.offset != expected_offset {
                return Err(invalid(format!(
                    "chunk {index} does not follow the one before"
                )));
            }
            expected_offset = expected_offset
                .checked_add(chunk.plain_bytes)
                .ok_or_else(|| invalid("chunk sizes overflow".into()))?;
        }
        if expected_offset != manifest.image.bytes {
            return Err(invalid(format!(
                "chunks add up to {expected_offset} bytes, the image has {}",
                manifest.image.bytes
            )));
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_ids_sort_by_creation_time_and_are_safe_in_keys() {
        let earlier = new_backup_id(1_763_000_000_000);
        let later = new_backup_id(1_763_000_000_001);
        assert!(earlier < later, "{earlier} {later}");
        assert!(valid_backup_id(&earlier), "{earlier}");
        assert!(!valid_backup_id("../etc"));
        assert!(!valid_backup_id(""));
        assert_eq!(
            chunk_key("x", 3),
            "backups/x/chunk-000003",
            "chunk names sort in order"
        );
    }
}
