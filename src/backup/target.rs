//! Where backups are kept: the `BackupTarget` trait, the S3-compatible implementation (through
//! object_store) and the parsing of target specifications such as
//! `s3://bucket/prefix?endpoint=http://127.0.0.1:9000&keep_daily=7` or `/var/backups/shoal`.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::backup::local::LocalTarget;
use crate::backup::retention::RetentionPolicy;

/// Errors talking to a target; each names the target and the object.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TargetError {
    #[error("{target}: object {key} does not exist")]
    NotFound { target: String, key: String },
    #[error("{target}: object {key} is {bytes} bytes, more than the {bytes_max} expected")]
    TooLarge {
        target: String,
        key: String,
        bytes: u64,
        bytes_max: u64,
    },
    #[error("{target}: {key}: {message}")]
    Io {
        target: String,
        key: String,
        message: String,
    },
    #[error("object key {0:?} is not valid (relative, no '..', no empty parts)")]
    BadKey(String),
}

/// An object's key and size, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub bytes: u64,
    /// When the object was last written (ms since the Unix epoch), when the target says.
    pub modified_ms: Option<i64>,
}

/// A place that stores backup objects under keys like `backups/<id>/chunk-000000`.
#[async_trait]
pub trait BackupTarget: Send + Sync {
    /// How the target is shown to operators (never with credentials).
    fn name(&self) -> &str;
    /// Stores `data` under `key`, replacing what was there; durable when it returns.
    async fn put(&self, key: &str, data: Bytes) -> Result<(), TargetError>;
    /// Reads the object at `key`, refusing one larger than `bytes_max`.
    async fn get(&self, key: &str, bytes_max: u64) -> Result<Bytes, TargetError>;
    /// Every object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, TargetError>;
    /// Removes the object at `key`; removing a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), TargetError>;
}

/// A target seen through a folder of another: every key is under `prefix` (each database but
/// the default one keeps its backups under `databases/<name>/` of the node's targets).
pub struct ScopedTarget {
    inner: Arc<dyn BackupTarget>,
    /// Ends with `/`.
    prefix: String,
    name: String,
}

impl ScopedTarget {
    pub fn new(inner: Arc<dyn BackupTarget>, folder: &str) -> ScopedTarget {
        let prefix = format!("{}/", folder.trim_matches('/'));
        let name = format!("{}/{}", inner.name().trim_end_matches('/'), folder);
        ScopedTarget {
            inner,
            prefix,
            name,
        }
    }

    fn key(&self, key: &str) -> Result<String, TargetError> {
        check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }
}

#[async_trait]
impl BackupTarget for ScopedTarget {
    fn name(&self) -> &str {
        &self.name
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), TargetError> {
        self.inner.put(&self.key(key)?, data).await
    }

    async fn get(&self, key: &str, bytes_max: u64) -> Result<Bytes, TargetError> {
        self.inner.get(&self.key(key)?, bytes_max).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        let listed = self.inner.list(&format!("{}{prefix}", self.prefix)).await?;
        Ok(listed
            .into_iter()
            .filter_map(|mut object| {
                object.key = object.key.strip_prefix(&self.prefix)?.to_string();
                Some(object)
            })
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<(), TargetError> {
        self.inner.delete(&self.key(key)?).await
    }
}

/// Object keys are relative paths of plain parts: nothing can escape the target's root.
pub fn check_key(key: &str) -> Result<(), TargetError> {
    let valid = !key.is_empty()
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if valid {
        Ok(())
    } else {
        Err(TargetError::BadKey(key.to_string()))
    }
}

/// A target and the retention rules that apply to it.
#[derive(Clone)]
pub struct ConfiguredTarget {
    pub target: Arc<dyn BackupTarget>,
    pub retention: RetentionPolicy,
}

/// An S3-compatible bucket (AWS, MinIO, moto, Ceph...), through object_store. Credentials come
/// from the standard `AWS_*` environment variables, never from the target string, so they do
/// not end up in configuration files, logs or `/status`.
pub struct S3Target {
    name: String,
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

impl S3Target {
    fn location(&self, key: &str) -> Result<ObjectPath, TargetError> {
        check_key(key)?;
        Ok(ObjectPath::from(format!("{}{key}", self.prefix)))
    }

    fn error(&self, key: &str, error: object_store::Error) -> TargetError {
        match error {
            object_store::Error::NotFound { .. } => TargetError::NotFound {
                target: self.name.clone(),
                key: key.to_string(),
            },
            other => TargetError::Io {
                target: self.name.clone(),
                key: key.to_string(),
                message: other.to_string(),
            },
        }
    }
}

#[async_trait]
impl BackupTarget for S3Target {
    fn name(&self) -> &str {
        &self.name
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), TargetError> {
        let location = self.location(key)?;
        self.store
            .put(&location, PutPayload::from(data))
            .await
            .map(|_| ())
            .map_err(|e| self.error(key, e))
    }

    async fn get(&self, key: &str, bytes_max: u64) -> Result<Bytes, TargetError> {
        let location = self.location(key)?;
        let result = self
            .store
            .get(&location)
            .await
            .map_err(|e| self.error(key, e))?;
        let bytes = result.meta.size;
        if bytes > bytes_max {
            return Err(TargetError::TooLarge {
                target: self.name.clone(),
                key: key.to_string(),
                bytes,
                bytes_max,
            });
        }
        result.bytes().await.map_err(|e| self.error(key, e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, TargetError> {
        let base = ObjectPath::from(format!("{}{prefix}", self.prefix));
        let strip = self.prefix.clone();
        let mut found: Vec<ObjectInfo> = self
            .store
            .list(Some(&base))
            .map_ok(|meta| ObjectInfo {
                key: meta
                    .location
                    .as_ref()
                    .strip_prefix(strip.as_str())
                    .unwrap_or(meta.location.as_ref())
                    .to_string(),
                bytes: meta.size,
                modified_ms: Some(meta.last_modified.timestamp_millis()),
            })
            .try_collect()
            .await
            .map_err(|e| self.error(prefix, e))?;
        // object_store lists by path segments; keep exact string-prefix semantics.
        found.retain(|object| object.key.starts_with(prefix));
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    async fn delete(&self, key: &str) -> Result<(), TargetError> {
        let location = self.location(key)?;
        match self.store.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(self.error(key, error)),
        }
    }
}

/// Parses a target specification: a directory path (or `file:///path`), or
/// `s3://bucket[/prefix]` with options `endpoint`, `region`, `allow_http` (default: true for
/// an `http://` endpoint); both take retention options `keep_last`, `keep_daily`,
/// `keep_weekly`, `keep_monthly`.
pub fn parse_target(spec: &str) -> Result<ConfiguredTarget, String> {
    let (location, query) = spec.split_once('?').unwrap_or((spec, ""));
    let mut retention = RetentionPolicy::default();
    let mut endpoint = None;
    let mut region = None;
    let mut allow_http = None;
    for (name, value) in form_urlencoded_pairs(query)? {
        let count = || {
            value
                .parse::<u32>()
                .map_err(|_| format!("target {location}: {name}={value:?} is not a count"))
        };
        match name.as_str() {
            "keep_last" => retention.keep_last = count()?,
            "keep_daily" => retention.keep_daily = count()?,
            "keep_weekly" => retention.keep_weekly = count()?,
            "keep_monthly" => retention.keep_monthly = count()?,
            "endpoint" => endpoint = Some(value),
            "region" => region = Some(value),
            "allow_http" => {
                allow_http = Some(value.parse::<bool>().map_err(|_| {
                    format!("target {location}: allow_http={value:?} is not true or false")
                })?)
            }
            other => {
                return Err(format!(
                    "target {location}: unknown option {other:?} (expected keep_last, \
                     keep_daily, keep_weekly, keep_monthly, endpoint, region, allow_http)"
                ));
            }
        }
    }
    let target: Arc<dyn BackupTarget> = if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("target {location}: no bucket name"));
        }
        let prefix = prefix.trim_matches('/');
        let mut builder = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(region.unwrap_or_else(|| "us-east-1".into()));
        if let Some(endpoint) = &endpoint {
            let http = endpoint.starts_with("http://");
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(allow_http.unwrap_or(http))
                .with_virtual_hosted_style_request(false);
        }
        let store = builder
            .build()
            .map_err(|e| format!("target {location}: {e}"))?;
        Arc::new(S3Target {
            name: location.to_string(),
            store: Arc::new(store),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
    } else {
        if endpoint.is_some() || region.is_some() {
            return Err(format!(
                "target {location}: endpoint and region apply to s3:// targets only"
            ));
        }
        let path = location.strip_prefix("file://").unwrap_or(location);
        if path.is_empty() {
            return Err("a backup target is empty".into());
        }
        Arc::new(LocalTarget::new(std::path::Path::new(path)))
    };
    Ok(ConfiguredTarget { target, retention })
}

fn form_urlencoded_pairs(query: &str) -> Result<Vec<(String, String)>, String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .map_err(|e| format!("target options {query:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_target() {
        assert!(check_key("backups/x/chunk-000000").is_ok());
        for bad in ["", "/etc/passwd", "a/../b", "a//b", "./a", "a/"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_scoped_target_keeps_its_objects_in_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = parse_target(dir.path().to_str().unwrap()).unwrap().target;
        let scoped = ScopedTarget::new(root.clone(), "databases/orders");
        scoped
            .put("backups/b1/manifest.json", Bytes::from_static(b"m"))
            .await
            .unwrap();
        root.put("backups/b0/manifest.json", Bytes::from_static(b"d"))
            .await
            .unwrap();
        let listed = scoped.list("backups/").await.unwrap();
        let keys: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["backups/b1/manifest.json"], "only its own folder");
        let got = root
            .get("databases/orders/backups/b1/manifest.json", 10)
            .await
            .unwrap();
        assert_eq!(&got[..], b"m");
        assert!(
            scoped.name().ends_with("/databases/orders"),
            "{}",
            scoped.name()
        );
        assert!(scoped.put("../escape", Bytes::new()).await.is_err());
        scoped.delete("backups/b1/manifest.json").await.unwrap();
        assert!(scoped.list("").await.unwrap().is_empty());
    }

    #[test]
    fn target_specs_carry_retention_and_reject_unknown_options() {
        let local = parse_target("/tmp/b?keep_last=3&keep_daily=7").unwrap();
        assert_eq!(local.target.name(), "file:///tmp/b");
        assert_eq!(local.retention.keep_last, 3);
        assert_eq!(local.retention.keep_daily, 7);
        let s3 = parse_target("s3://bucket/some/prefix?endpoint=http://127.0.0.1:9&keep_weekly=4")
            .unwrap();
        assert_eq!(s3.target.name(), "s3://bucket/some/prefix");
        assert_eq!(s3.retention.keep_weekly, 4);
        let error = parse_target("/tmp/b?keep=3").err().unwrap();
        assert!(error.contains("unknown option \"keep\""), "{error}");
        let error = parse_target("/tmp/b?keep_last=x").err().unwrap();
        assert!(error.contains("keep_last"), "{error}");
        assert!(parse_target("s3://").is_err());
    }
}
