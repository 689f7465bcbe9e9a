//! Backups: consistent images of a group's database stored as compressed, optionally
//! encrypted chunks with a manifest on one or more targets (a directory, S3-compatible
//! storage), continuous archiving of committed log entries, scheduled creation, verification
//! and pruning, and restore (to a new data directory or into a running cluster, optionally to
//! a point in time). docs/backup.md describes the format and the guarantees.

pub mod agent;
pub mod agents;
pub mod archive;
pub mod catalog;
pub mod cli;
pub mod codec;
pub mod create;
pub mod cut;
pub mod cut_pitr;
pub mod cut_rule;
pub mod fetch;
pub mod group_load;
pub mod image;
pub mod key;
pub mod local;
pub mod manifest;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod target;

use std::time::Duration;

use crate::backup::key::KeySource;
use crate::backup::target::{ConfiguredTarget, TargetError};

/// Bytes of image per chunk: large enough to compress well and keep object counts low, small
/// enough that a few in flight bound memory.
pub const CHUNK_BYTES: usize = 16 * 1024 * 1024;

/// Errors of backup operations. `Invalid` names the object and the check it failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{object}: {check}")]
    Invalid { object: String, check: String },
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("backup {0} not found on any target")]
    NotFound(String),
    #[error("{0}")]
    Config(String),
    #[error("database: {0}")]
    Database(String),
    #[error("{0}")]
    Internal(String),
}

impl From<crate::db::database::DbError> for BackupError {
    fn from(error: crate::db::database::DbError) -> Self {
        BackupError::Database(error.to_string())
    }
}

/// A node's backup settings (flags `--backup-*`).
#[derive(Clone, Default)]
pub struct BackupConfig {
    pub targets: Vec<ConfiguredTarget>,
    pub key: KeySource,
    /// When the leader takes scheduled backups.
    pub schedule: Option<croner::Cron>,
    /// When the leader verifies the newest backup of each target.
    pub verify_schedule: Option<croner::Cron>,
    /// Random delay added to each scheduled run, so many clusters do not hit storage at once.
    pub jitter: Duration,
    /// Scheduled backups are taken on a follower when one is healthy.
    pub from_replica: bool,
    /// Ship committed log entries to the targets continuously (point-in-time restore).
    pub archive_log: bool,
    /// How often archived log segments are flushed (the recovery point objective).
    pub archive_interval: Duration,
    pub compression_level: i32,
    /// Image bytes read per second at most while taking a backup (`None`: as fast as it goes).
    pub max_bytes_per_s: Option<u64>,
}

impl std::fmt::Debug for BackupConfig {
    /// Targets by name and whether a key is set; never the key or passphrase.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let targets: Vec<&str> = self.targets.iter().map(|t| t.target.name()).collect();
        f.debug_struct("BackupConfig")
            .field("targets", &targets)
            .field("encrypted", &!matches!(self.key, KeySource::None))
            .field(
                "schedule",
                &self.schedule.as_ref().map(|c| c.pattern.to_string()),
            )
            .field("archive_log", &self.archive_log)
            .finish()
    }
}

impl BackupConfig {
    pub fn enabled(&self) -> bool {
        !self.targets.is_empty()
    }

    /// The settings for database `name`'s backups: the same, with every target seen through
    /// its folder (see [`targets_of_database`]).
    pub fn for_database(&self, name: &str) -> BackupConfig {
        BackupConfig {
            targets: targets_of_database(&self.targets, name),
            ..self.clone()
        }
    }
}

/// `targets` as database `name`'s backups see them: through the folder `databases/<name>/`
/// of each, except for the default database, which keeps the targets' root (where backups
/// were before there were databases).
pub fn targets_of_database(
    targets: &[target::ConfiguredTarget],
    name: &str,
) -> Vec<target::ConfiguredTarget> {
    if name == crate::catalog::view::DEFAULT_DATABASE {
        return targets.to_vec();
    }
    let folder = format!("databases/{name}");
    targets
        .iter()
        .map(|configured| target::ConfiguredTarget {
            target: std::sync::Arc::new(target::ScopedTarget::new(
                configured.target.clone(),
                &folder,
            )),
            retention: configured.retention,
        })
        .collect()
}

/// The current time in milliseconds since the Unix epoch.
pub use crate::types::now_ms;

/// RFC 3339 (UTC, milliseconds) for a time in milliseconds since the epoch.
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
