//! A backup target in a local directory. Written by hand rather than through object_store's
//! local store because a backup must be durable before its manifest names it: every object is
//! written to a temporary file, fsynced, renamed into place and its directory fsynced.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use crate::backup::target::{BackupTarget, ObjectInfo, TargetError, check_key};

/// Objects listed under one prefix at most (a guard against a directory that is not ours).
const LIST_OBJECTS_MAX: usize = 1_000_000;

pub struct LocalTarget {
    name: String,
    root: PathBuf,
}

impl LocalTarget {
    pub fn new(root: &Path) -> LocalTarget {
        LocalTarget {
            name: format!("file://{}", root.display()),
            root: root.to_path_buf(),
        }
    }

    fn path(&self, key: &str) -> Result<PathBuf, TargetError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn io_error(target: &str, key: &str, error: std::io::Error) -> TargetError {
    if error.kind() == std::io::ErrorKind::NotFound {
        TargetError::NotFound {
            target: target.to_string(),
            key: key.to_string(),
        }
    } else {
        TargetError::Io {
            target: target.to_string(),
            key: key.to_string(),
            message: error.to_string(),
        }
    }
}

fn write_durably(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let mut temporary = tempfile::NamedTempFile::new_in(parent)?;
    temporary.write_all(data)?;
    temporary.as_file().sync_all()?;
    temporary.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(parent)?.sync_all()
}

fn list_under(root: &Path, prefix: &str) -> std::io::Result<Vec<ObjectInfo>> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let Ok(relative) = path.strip_prefix(root) else {
                continue;
            };
            let key = relative.to_string_lossy().replace('\\', "/");
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                // Descend only where keys under the prefix can be.
                let dir_key = format!("{key}/");
                if dir_key.starts_with(prefix) || prefix.starts_with(&dir_key) {
                    pending.push(path);
                }
            } else if file_type.is_file() && key.starts_with(prefix) && !key.contains("/.tmp") {
                let metadata = entry.metadata()?;
                let modified_ms = metadata
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as i64);
                found.push(ObjectInfo {
                    key,
                    bytes: metadata.len(),
                    modified_ms,
                });
                if found.len() > LIST_OBJECTS_MAX {
                    return Err(std::io::Error::other(format!(
                        "more than {LIST_OBJECTS_MAX} objects under {prefix:?}"
                    )));
                }
            }
        }
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(found)
}

#[async_trait]
impl BackupTarget for LocalTarget {
    fn name(&self) -> &str {
        &self.name
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), TargetError> {
        let path = self.path(key)?;
        tokio::task::spawn_blocking(move || write_durably(&path, &data))
            .await
            .map_err(|e| TargetError::Io {
                target: self.name.clone(),
                key: key.to_string(),
                message: e.to_string(),
            })?
            .map_err(|e| io_error(&self.name, key, e))
    }

    async fn get(&self, key: &str, bytes_max: u64) -> Result<Bytes, TargetError> {
        let path = self.path(key)?;
        let length = tokio::fs::metadata(&path)
            .await
            .map_err(|e| io_error(&self.name, key, e))?
            .len();
        if length > bytes_max {
            return Err(TargetError::TooLarge {
                target: self.name.clone(),
                key: key.to_string(),
                bytes: length,
                bytes_max,
            });
        }
        tokio::fs::read(&path)
            .await
            .map(Bytes::from)
            .map_err(|e| io_error(&self.name, key, e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        let root = self.root.clone();
        let owned_prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || list_under(&root, &owned_prefix))
            .await
            .map_err(|e| TargetError::Io {
                target: self.name.clone(),
                key: prefix.to_string(),
                message: e.to_string(),
            })?
            .map_err(|e| io_error(&self.name, prefix, e))
    }

    async fn delete(&self, key: &str) -> Result<(), TargetError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(&self.name, key, error)),
        }
        // Leave no empty backup directories behind (best effort: another object may remain).
        if let Some(parent) = path.parent()
            && parent != self.root
        {
            let _ = tokio::fs::remove_dir(parent).await;
        }
        Ok(())
    }
}
