//! The stored form of every backup object (image chunks and archived log segments):
//!
//! ```text
//! "SHOALOB1" | kind u8 | encryption u8 | salt [24] | body | SHA-256 of everything before [32]
//! ```
//!
//! The body is the zstd-compressed data, sealed with AES-256-GCM when a key is configured.
//! Each object is sealed with its own key, derived with HKDF-SHA256 from the backup key and
//! the object's random 192-bit salt, so a (key, nonce) pair never repeats however many objects
//! one backup key seals (AES-GCM's random-nonce limit does not apply), and AES runs on the
//! CPU's AES instructions (about twice XChaCha20-Poly1305's speed here). The associated data
//! binds an object to its place (backup id and chunk number, or segment name), so a chunk
//! moved between backups or positions fails authentication. The trailing SHA-256 tells damage
//! (a flipped bit, a truncated upload) apart from a wrong key.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use sha2::{Digest, Sha256};

use crate::backup::BackupError;
use crate::backup::key::BackupKey;

const MAGIC: &[u8; 8] = b"SHOALOB1";
const SALT_BYTES: usize = 24;
const HEADER_BYTES: usize = MAGIC.len() + 2 + SALT_BYTES;
const DIGEST_BYTES: usize = 32;

const ENCRYPTION_NONE: u8 = 0;
const ENCRYPTION_AES256GCM_HKDF: u8 = 1;

/// The manifest's name for the encryption scheme.
pub const ENCRYPTION_ALGORITHM: &str = "aes-256-gcm, per-object hkdf-sha256 key";

/// The object key: HKDF-SHA256 of the backup key with the object's salt. Each derived key
/// seals exactly one message, so its all-zero nonce is used once.
fn object_cipher(key: &BackupKey, salt: &[u8; SALT_BYTES]) -> Result<Aes256Gcm, BackupError> {
    let mut derived = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(Some(salt), key.bytes())
        .expand(b"shoal backup object v1", &mut derived)
        .map_err(|_| BackupError::Internal("HKDF expansion failed".into()))?;
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(derived));
    derived.iter_mut().for_each(|b| *b = 0);
    Ok(cipher)
}

/// What an object holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    ImageChunk = 1,
    /// Log entries whose commands use layout 1 (`types::layout`): archived before layout 2.
    LogSegment = 2,
    /// Log entries whose commands use layout 2: every segment archived since.
    LogSegmentV2 = 3,
}

impl ObjectKind {
    /// The kind an object says it is (unchecked: [`decode`] verifies it), if it says one.
    pub fn claimed_by(object: &[u8]) -> Option<ObjectKind> {
        match object.get(MAGIC.len())? {
            1 => Some(ObjectKind::ImageChunk),
            2 => Some(ObjectKind::LogSegment),
            3 => Some(ObjectKind::LogSegmentV2),
            _ => None,
        }
    }
}

/// The name of the encryption scheme a key gives, as manifests record it.
pub fn algorithm_name(key: Option<&BackupKey>) -> &'static str {
    if key.is_some() {
        ENCRYPTION_ALGORITHM
    } else {
        "none"
    }
}

/// Compresses, seals (when `key` is set) and checksums `plain`.
pub fn encode(
    kind: ObjectKind,
    plain: &[u8],
    level: i32,
    key: Option<&BackupKey>,
    associated: &[u8],
) -> Result<Vec<u8>, BackupError> {
    let compressed = zstd::bulk::compress(plain, level)
        .map_err(|e| BackupError::Internal(format!("zstd compression: {e}")))?;
    let mut object = Vec::with_capacity(HEADER_BYTES + compressed.len() + 16 + DIGEST_BYTES);
    object.extend_from_slice(MAGIC);
    object.push(kind as u8);
    match key {
        None => {
            object.push(ENCRYPTION_NONE);
            object.extend_from_slice(&[0u8; SALT_BYTES]);
            object.extend_from_slice(&compressed);
        }
        Some(key) => {
            let salt: [u8; SALT_BYTES] = rand::random();
            let sealed = object_cipher(key, &salt)?
                .encrypt(
                    &Nonce::from([0u8; 12]),
                    Payload {
                        msg: &compressed,
                        aad: associated,
                    },
                )
                .map_err(|_| BackupError::Internal("encryption failed".into()))?;
            object.push(ENCRYPTION_AES256GCM_HKDF);
            object.extend_from_slice(&salt);
            object.extend_from_slice(&sealed);
        }
    }
    let digest = Sha256::digest(&object);
    object.extend_from_slice(&digest);
    Ok(object)
}

/// An object's SHA-256 as manifests record it: its trailer (the digest of everything before
/// it), which [`decode`] checks against the content.
pub fn object_digest(object: &[u8]) -> String {
    hex::encode(&object[object.len().saturating_sub(DIGEST_BYTES)..])
}

/// Checks, opens and decompresses the object `name`, refusing one that would decompress to
/// more than `plain_bytes_max`. Every failure names the object and the check that failed.
pub fn decode(
    name: &str,
    object: &[u8],
    kind: ObjectKind,
    key: Option<&BackupKey>,
    associated: &[u8],
    plain_bytes_max: usize,
) -> Result<Vec<u8>, BackupError> {
    let invalid = |check: &str| BackupError::Invalid {
        object: name.to_string(),
        check: check.to_string(),
    };
    if object.len() < HEADER_BYTES + DIGEST_BYTES {
        return Err(invalid(&format!(
            "object is {} bytes, shorter than any backup object (truncated?)",
            object.len()
        )));
    }
    if &object[..MAGIC.len()] != MAGIC {
        return Err(invalid("not a Shoal backup object (bad magic bytes)"));
    }
    let (content, digest) = object.split_at(object.len() - DIGEST_BYTES);
    if Sha256::digest(content).as_slice() != digest {
        return Err(invalid(
            "SHA-256 checksum mismatch: the object is damaged or truncated",
        ));
    }
    if content[MAGIC.len()] != kind as u8 {
        return Err(invalid(&format!(
            "object kind {} where {:?} was expected",
            content[MAGIC.len()],
            kind
        )));
    }
    let salt: [u8; SALT_BYTES] = content[MAGIC.len() + 2..HEADER_BYTES]
        .try_into()
        .map_err(|_| invalid("short header"))?;
    let body = &content[HEADER_BYTES..];
    let opened;
    let compressed = match (content[MAGIC.len() + 1], key) {
        (ENCRYPTION_NONE, None) => body,
        (ENCRYPTION_NONE, Some(_)) => {
            return Err(invalid(
                "object is not encrypted but a backup key is configured (refusing a possibly \
                 substituted object)",
            ));
        }
        (ENCRYPTION_AES256GCM_HKDF, None) => {
            return Err(invalid(
                "object is encrypted and no backup key is configured (--backup-key-file or \
                 --backup-passphrase-file)",
            ));
        }
        (ENCRYPTION_AES256GCM_HKDF, Some(key)) => {
            opened = object_cipher(key, &salt)?
                .decrypt(
                    &Nonce::from([0u8; 12]),
                    Payload {
                        msg: body,
                        aad: associated,
                    },
                )
                .map_err(|_| {
                    invalid(
                        "decryption failed: wrong backup key, or the object belongs to another \
                         backup or position",
                    )
                })?;
            &opened[..]
        }
        (other, _) => return Err(invalid(&format!("unknown encryption scheme {other}"))),
    };
    zstd::bulk::decompress(compressed, plain_bytes_max)
        .map_err(|e| invalid(&format!("zstd decompression failed: {e}")))
}

/// A small sealed value proving which key wrote a backup: lets a restore say "wrong key"
/// before it downloads anything else.
pub fn key_check(key: Option<&BackupKey>) -> Result<String, BackupError> {
    match key {
        None => Ok(String::new()),
        Some(_) => encode(ObjectKind::ImageChunk, b"", 1, key, KEY_CHECK_CONTEXT).map(hex::encode),
    }
}

/// Checks `key` against a manifest's key check; `object` names the manifest in errors.
pub fn check_key(object: &str, recorded: &str, key: Option<&BackupKey>) -> Result<(), BackupError> {
    match (recorded.is_empty(), key) {
        (true, _) => Ok(()),
        (false, None) => Err(BackupError::Invalid {
            object: object.to_string(),
            check: "the backup is encrypted and no backup key is configured".into(),
        }),
        (false, Some(_)) => {
            let sealed = hex::decode(recorded).map_err(|_| BackupError::Invalid {
                object: object.to_string(),
                check: "key check is not hex".into(),
            })?;
            decode(
                object,
                &sealed,
                ObjectKind::ImageChunk,
                key,
                KEY_CHECK_CONTEXT,
                0,
            )
            .map(|_| ())
            .map_err(|_| BackupError::Invalid {
                object: object.to_string(),
                check: "wrong backup key: the key check does not open with this key".into(),
            })
        }
    }
}

const KEY_CHECK_CONTEXT: &[u8] = b"shoal backup key check";

/// HMAC-SHA256 (hex) of `bytes` under the backup key's manifest subkey.
pub fn manifest_mac(key: &BackupKey, bytes: &[u8]) -> Result<String, BackupError> {
    use hmac::Mac;
    let mut subkey = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(None, key.bytes())
        .expand(b"shoal backup manifest mac v1", &mut subkey)
        .map_err(|_| BackupError::Internal("HKDF expansion failed".into()))?;
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&subkey)
        .map_err(|_| BackupError::Internal("HMAC key".into()))?;
    subkey.iter_mut().for_each(|b| *b = 0);
    mac.update(bytes);
    Ok(hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> BackupKey {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, [byte; 32]).unwrap();
        BackupKey::from_key_file(&path).unwrap()
    }

    fn error_of(result: Result<Vec<u8>, BackupError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn objects_round_trip_with_and_without_a_key() {
        let plain = b"hello hello hello hello".repeat(100);
        for key in [None, Some(key(1))] {
            let object = encode(ObjectKind::ImageChunk, &plain, 3, key.as_ref(), b"b/0").unwrap();
            assert!(object.len() < plain.len(), "compressed");
            let back = decode(
                "c",
                &object,
                ObjectKind::ImageChunk,
                key.as_ref(),
                b"b/0",
                1 << 20,
            );
            assert_eq!(back.unwrap(), plain);
        }
    }

    #[test]
    fn damage_truncation_wrong_keys_and_moved_objects_are_named() {
        let k = key(1);
        let object = encode(ObjectKind::ImageChunk, b"data", 3, Some(&k), b"b/0").unwrap();
        let decode_as = |bytes: &[u8], key: Option<&BackupKey>, aad: &[u8]| {
            decode(
                "chunk-000000",
                bytes,
                ObjectKind::ImageChunk,
                key,
                aad,
                1 << 20,
            )
        };
        let mut flipped = object.clone();
        flipped[HEADER_BYTES] ^= 1;
        let message = error_of(decode_as(&flipped, Some(&k), b"b/0"));
        assert!(
            message.contains("chunk-000000") && message.contains("SHA-256"),
            "{message}"
        );
        let message = error_of(decode_as(&object[..object.len() - 5], Some(&k), b"b/0"));
        assert!(message.contains("SHA-256"), "{message}");
        let message = error_of(decode_as(&object[..10], Some(&k), b"b/0"));
        assert!(message.contains("truncated"), "{message}");
        let message = error_of(decode_as(&object, Some(&key(2)), b"b/0"));
        assert!(message.contains("wrong backup key"), "{message}");
        let message = error_of(decode_as(&object, Some(&k), b"b/1"));
        assert!(message.contains("another backup or position"), "{message}");
        let message = error_of(decode_as(&object, None, b"b/0"));
        assert!(message.contains("no backup key"), "{message}");
        let plain = encode(ObjectKind::ImageChunk, b"data", 3, None, b"b/0").unwrap();
        let message = error_of(decode_as(&plain, Some(&k), b"b/0"));
        assert!(message.contains("not encrypted"), "{message}");
    }

    #[test]
    fn decompression_is_bounded() {
        let object = encode(ObjectKind::LogSegment, &vec![0u8; 1 << 20], 3, None, b"").unwrap();
        let message = error_of(decode(
            "s",
            &object,
            ObjectKind::LogSegment,
            None,
            b"",
            1024,
        ));
        assert!(message.contains("decompression"), "{message}");
    }

    #[test]
    fn the_key_check_tells_a_wrong_key() {
        let recorded = key_check(Some(&key(1))).unwrap();
        check_key("m", &recorded, Some(&key(1))).unwrap();
        let message = check_key("m", &recorded, Some(&key(2)))
            .unwrap_err()
            .to_string();
        assert!(message.contains("wrong backup key"), "{message}");
        assert!(check_key("m", &recorded, None).is_err());
        check_key("m", "", None).unwrap();
    }
}

#[cfg(test)]
mod speed {
    //! `cargo test --release --lib codec_speed -- --ignored --nocapture`: MB/s of each stage.
    use super::*;

    #[test]
    #[ignore]
    fn codec_speed() {
        let plain: Vec<u8> = (0..64 * 1024 * 1024)
            .map(|_| rand::random::<u8>())
            .collect();
        let key = {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("k");
            std::fs::write(&path, [3u8; 32]).unwrap();
            BackupKey::from_key_file(&path).unwrap()
        };
        let mb = plain.len() as f64 / 1e6;
        let time = |label: &str, f: &mut dyn FnMut()| {
            let started = std::time::Instant::now();
            f();
            println!("{label}: {:.0} MB/s", mb / started.elapsed().as_secs_f64());
        };
        time("sha256", &mut || {
            Sha256::digest(&plain);
        });
        time("zstd 1", &mut || {
            zstd::bulk::compress(&plain, 1).unwrap();
        });
        time("aes-256-gcm with a derived key", &mut || {
            object_cipher(&key, &[1u8; SALT_BYTES])
                .unwrap()
                .encrypt(&Nonce::from([0u8; 12]), plain.as_slice())
                .unwrap();
        });
        time("encode (all)", &mut || {
            encode(ObjectKind::ImageChunk, &plain, 1, Some(&key), b"x").unwrap();
        });
    }
}
