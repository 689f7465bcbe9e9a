//! The backup encryption key: 32 bytes read from a key file, or derived from a passphrase with
//! Argon2id. The key lives in memory only; its `Debug` output is redacted, and what a manifest
//! records about it (algorithm, KDF parameters, a key check) cannot recover it.

use std::fmt;
use std::path::Path;

use crate::backup::manifest::KdfParams;

/// Argon2id cost for passphrases: 64 MiB, 3 passes, 1 lane (OWASP's recommendation).
const KDF_MEMORY_KIB: u32 = 64 * 1024;
const KDF_ITERATIONS: u32 = 3;
const KDF_PARALLELISM: u32 = 1;

/// Key files and passphrase files are small; a larger file is a mistake.
const KEY_FILE_BYTES_MAX: u64 = 4096;

#[derive(Clone)]
pub struct BackupKey {
    bytes: [u8; 32],
    /// How the key was made, recorded (without the key) in every manifest.
    pub kdf: Option<KdfParams>,
}

impl fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BackupKey(redacted)")
    }
}

impl Drop for BackupKey {
    fn drop(&mut self) {
        // Best effort: do not leave key bytes in freed memory.
        self.bytes.iter_mut().for_each(|b| *b = 0);
    }
}

impl BackupKey {
    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Reads a key file: 32 raw bytes, or 64 hexadecimal characters (whitespace around them is
    /// ignored).
    pub fn from_key_file(path: &Path) -> Result<BackupKey, String> {
        let data = read_small(path)?;
        let bytes: [u8; 32] = if data.len() == 32 {
            data.as_slice()
                .try_into()
                .map_err(|_| "unreachable".to_string())?
        } else {
            let text = String::from_utf8(data)
                .map_err(|_| format!("key file {}: not 32 bytes nor hex", path.display()))?;
            let decoded = hex::decode(text.trim()).map_err(|_| {
                format!(
                    "key file {}: expected 32 raw bytes or 64 hex characters",
                    path.display()
                )
            })?;
            decoded.as_slice().try_into().map_err(|_| {
                format!(
                    "key file {}: {} bytes of key, expected 32",
                    path.display(),
                    decoded.len()
                )
            })?
        };
        Ok(BackupKey { bytes, kdf: None })
    }

    /// Derives the key from a passphrase. The salt is tied to the cluster, so one derivation
    /// serves every backup and log segment of it, and two clusters with the same passphrase
    /// still get different keys.
    pub fn from_passphrase(passphrase: &str, cluster_id: &str) -> Result<BackupKey, String> {
        let params = KdfParams {
            salt: format!("shoal-backup-{cluster_id}"),
            memory_kib: KDF_MEMORY_KIB,
            iterations: KDF_ITERATIONS,
            parallelism: KDF_PARALLELISM,
        };
        Self::derive(passphrase, &params)
    }

    /// Derives the key with parameters recorded in a manifest. Derivation is deliberately
    /// slow, so keys are remembered (a few, in memory) and async callers use
    /// [`derive_off_thread`].
    pub fn derive(passphrase: &str, params: &KdfParams) -> Result<BackupKey, String> {
        if passphrase.len() < 8 {
            return Err("the backup passphrase is shorter than 8 characters".into());
        }
        use sha2::{Digest, Sha256};
        let fingerprint: [u8; 32] = Sha256::digest(passphrase.as_bytes()).into();
        if let Ok(cache) = DERIVED.lock()
            && let Some((_, _, key)) = cache
                .iter()
                .find(|(p, f, _)| p == params && *f == fingerprint)
        {
            return Ok(key.clone());
        }
        let argon_params = argon2::Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            Some(32),
        )
        .map_err(|e| format!("Argon2 parameters: {e}"))?;
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon_params,
        );
        let mut bytes = [0u8; 32];
        argon
            .hash_password_into(passphrase.as_bytes(), params.salt.as_bytes(), &mut bytes)
            .map_err(|e| format!("deriving the backup key: {e}"))?;
        let key = BackupKey {
            bytes,
            kdf: Some(params.clone()),
        };
        if let Ok(mut cache) = DERIVED.lock() {
            if cache.len() >= DERIVED_KEYS_MAX {
                cache.remove(0);
            }
            cache.push((params.clone(), fingerprint, key.clone()));
        }
        Ok(key)
    }
}

/// Keys derived from passphrases in this process, by parameters and passphrase digest.
static DERIVED: std::sync::Mutex<Vec<(KdfParams, [u8; 32], BackupKey)>> =
    std::sync::Mutex::new(Vec::new());
const DERIVED_KEYS_MAX: usize = 8;

/// Runs a key derivation (or key file read) on the blocking pool, off the async threads.
pub async fn derive_off_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("key derivation: {e}"))?
}

/// Reads a passphrase file (its first line, without the line end).
pub fn read_passphrase_file(path: &Path) -> Result<String, String> {
    let data = read_small(path)?;
    let text = String::from_utf8(data)
        .map_err(|_| format!("passphrase file {}: not UTF-8", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

fn read_small(path: &Path) -> Result<Vec<u8>, String> {
    let length = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if length > KEY_FILE_BYTES_MAX {
        return Err(format!(
            "{}: {length} bytes is too large for a key or passphrase file",
            path.display()
        ));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Where the key comes from, as configured; resolved once the cluster id is known.
#[derive(Clone, Default)]
pub enum KeySource {
    /// Backups are not encrypted (compressed and checksummed only).
    #[default]
    None,
    KeyFile(std::path::PathBuf),
    Passphrase(String),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::None => f.write_str("KeySource::None"),
            KeySource::KeyFile(path) => write!(f, "KeySource::KeyFile({})", path.display()),
            KeySource::Passphrase(_) => f.write_str("KeySource::Passphrase(redacted)"),
        }
    }
}

impl KeySource {
    /// The key for `cluster_id` (`None` when encryption is off).
    pub fn resolve(&self, cluster_id: &str) -> Result<Option<BackupKey>, String> {
        match self {
            KeySource::None => Ok(None),
            KeySource::KeyFile(path) => BackupKey::from_key_file(path).map(Some),
            KeySource::Passphrase(passphrase) => {
                BackupKey::from_passphrase(passphrase, cluster_id).map(Some)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_raw_or_hex_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        std::fs::write(&raw, [7u8; 32]).unwrap();
        let key = BackupKey::from_key_file(&raw).unwrap();
        assert_eq!(key.bytes(), &[7u8; 32]);
        assert_eq!(format!("{key:?}"), "BackupKey(redacted)");
        let hexed = dir.path().join("hex");
        std::fs::write(&hexed, format!("{}\n", hex::encode([9u8; 32]))).unwrap();
        assert_eq!(
            BackupKey::from_key_file(&hexed).unwrap().bytes(),
            &[9u8; 32]
        );
        let short = dir.path().join("short");
        std::fs::write(&short, "abcd").unwrap();
        let error = BackupKey::from_key_file(&short).unwrap_err();
        assert!(error.contains("2 bytes of key"), "{error}");
    }

    #[test]
    fn a_passphrase_gives_a_key_per_cluster() {
        let a = BackupKey::from_passphrase("correct horse", "c1").unwrap();
        let again = BackupKey::from_passphrase("correct horse", "c1").unwrap();
        let other = BackupKey::from_passphrase("correct horse", "c2").unwrap();
        assert_eq!(a.bytes(), again.bytes());
        assert_ne!(a.bytes(), other.bytes());
        assert!(BackupKey::from_passphrase("short", "c1").is_err());
    }
}
