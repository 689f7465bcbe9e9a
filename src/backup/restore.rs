//! Restoring: pick the base backup (a given id, or the newest one before the requested
//! point), download and check it, replay archived log entries on it up to a log index or a
//! moment, and hand the image over — as the seed of a new data directory, or to a running
//! cluster's `/db/load`. Nothing outside the scratch directory changes until every check passed.

use std::path::{Path, PathBuf};

use openraft::entry::RaftEntry;

use crate::backup::archive::{self, entry_time_ms, parse_segment_key};
use crate::backup::catalog::list_backups;
use crate::backup::fetch::{Thoroughness, check_image, download_image, key_for, locate};
use crate::backup::key::{BackupKey, KeySource};
use crate::backup::manifest::Manifest;
use crate::backup::target::ConfiguredTarget;
use crate::backup::{BackupError, rfc3339_ms};
use crate::db::database::Database;
use crate::raft::types::Entry;

/// The name of the restored image a new data directory boots from (defined where the group
/// reads it).
pub use crate::raft::group::SEED_FILE;

/// Parses a restore point from `--to-time` (RFC 3339) or `--to-index`.
pub fn restore_point(
    to_time: Option<&str>,
    to_index: Option<u64>,
) -> Result<Option<RestorePoint>, String> {
    match (to_time, to_index) {
        (Some(_), Some(_)) => Err("give to_time or to_index, not both".into()),
        (Some(time), None) => chrono::DateTime::parse_from_rfc3339(time)
            .map(|t| Some(RestorePoint::Time(t.timestamp_millis())))
            .map_err(|e| format!("to_time {time:?} is not an RFC 3339 time ({e})")),
        (None, Some(index)) => Ok(Some(RestorePoint::Index(index))),
        (None, None) => Ok(None),
    }
}

/// How far to replay the archived log on top of the base backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestorePoint {
    /// Everything committed at or before this leader time (ms since the Unix epoch).
    Time(i64),
    /// Everything up to and including this log index.
    Index(u64),
}

/// What a restore produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Restored {
    pub backup_id: String,
    pub target: String,
    pub base_log_index: u64,
    /// The last log index the image holds after replay.
    pub log_index: u64,
    /// Leader time of the last command replayed (RFC 3339), if any was.
    pub last_replayed_at: Option<String>,
    pub entries_replayed: u64,
    pub image_bytes: u64,
    /// Where the time went: downloading and checking every object, SQLite's checks, replay.
    pub download_ms: u64,
    pub check_ms: u64,
    pub replay_ms: u64,
}

/// A base backup chosen, downloaded and checked: what a replay continues from.
pub struct Base<'a> {
    pub target: &'a ConfiguredTarget,
    pub manifest: Manifest,
    key: Option<BackupKey>,
}

/// Builds the restored image at `image` (inside `scratch_dir`'s file system).
pub async fn restore_image(
    targets: &[ConfiguredTarget],
    key_source: &KeySource,
    backup_id: Option<&str>,
    point: Option<RestorePoint>,
    image: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Restored, BackupError> {
    let (base, mut restored) =
        fetch_base(targets, key_source, backup_id, point, image, progress).await?;
    if let Some(point) = point {
        replay_base(&base, point, image, &mut restored).await?;
    }
    Ok(restored)
}

/// Chooses the base backup (`backup_id`, else the newest before `point`), downloads it to
/// `image` and checks it.
pub async fn fetch_base<'a>(
    targets: &'a [ConfiguredTarget],
    key_source: &KeySource,
    backup_id: Option<&str>,
    point: Option<RestorePoint>,
    image: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(Base<'a>, Restored), BackupError> {
    let (target, manifest) = choose_base(targets, backup_id, point).await?;
    let key = key_for(key_source, &manifest).await?;
    let started = std::time::Instant::now();
    download_image(
        target.target.as_ref(),
        &manifest,
        key.as_ref(),
        image,
        progress,
    )
    .await?;
    let download_ms = started.elapsed().as_millis() as u64;
    let started = std::time::Instant::now();
    let checked = image.to_path_buf();
    let for_check = manifest.clone();
    tokio::task::spawn_blocking(move || check_image(&checked, &for_check, Thoroughness::Quick))
        .await
        .map_err(|e| BackupError::Internal(e.to_string()))??;
    let restored = Restored {
        backup_id: manifest.backup_id.clone(),
        target: target.target.name().to_string(),
        base_log_index: manifest.log_index,
        log_index: manifest.log_index,
        last_replayed_at: None,
        entries_replayed: 0,
        image_bytes: manifest.image.bytes,
        download_ms,
        check_ms: started.elapsed().as_millis() as u64,
        replay_ms: 0,
    };
    Ok((
        Base {
            target,
            manifest,
            key,
        },
        restored,
    ))
}

/// Replays the archived log onto `image` (the base's copy) up to `point`.
pub async fn replay_base(
    base: &Base<'_>,
    point: RestorePoint,
    image: &Path,
    restored: &mut Restored,
) -> Result<(), BackupError> {
    let started = std::time::Instant::now();
    replay(base, point, image, restored).await?;
    restored.image_bytes = std::fs::metadata(image).map(|m| m.len()).unwrap_or(0);
    restored.replay_ms = started.elapsed().as_millis() as u64;
    Ok(())
}

/// The backup to start from: the one named, else the newest that precedes `point`.
async fn choose_base<'a>(
    targets: &'a [ConfiguredTarget],
    backup_id: Option<&str>,
    point: Option<RestorePoint>,
) -> Result<(&'a ConfiguredTarget, Manifest), BackupError> {
    if let Some(id) = backup_id {
        let (target, manifest) = locate(targets, id).await?;
        let too_new = match point {
            Some(RestorePoint::Index(index)) => manifest.log_index > index,
            Some(RestorePoint::Time(ms)) => manifest.last_command_ms > ms,
            None => false,
        };
        if too_new {
            return Err(BackupError::Config(format!(
                "backup {id} was taken after the requested point; choose an older backup or \
                 leave out the id"
            )));
        }
        return Ok((target, manifest));
    }
    let mut best: Option<(&ConfiguredTarget, String, i64)> = None;
    let mut clusters = std::collections::BTreeSet::new();
    for target in targets {
        for entry in list_backups(target).await? {
            if entry.error.is_some() {
                continue;
            }
            clusters.insert(entry.cluster_id.clone());
            let before = match point {
                Some(RestorePoint::Index(index)) => entry.log_index <= index,
                Some(RestorePoint::Time(ms)) => entry.last_command_ms <= ms,
                None => true,
            };
            if before
                && entry.good()
                && best
                    .as_ref()
                    .is_none_or(|(_, _, at)| entry.created_at_ms > *at)
            {
                best = Some((target, entry.backup_id.clone(), entry.created_at_ms));
            }
        }
    }
    if clusters.len() > 1 {
        return Err(BackupError::Config(format!(
            "the targets hold backups of {} clusters ({}); name the backup to restore",
            clusters.len(),
            clusters.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    let Some((target, id, _)) = best else {
        return Err(BackupError::Config(match point {
            Some(_) => "no good backup precedes the requested point".into(),
            None => "no good backup found on the targets".into(),
        }));
    };
    let (_, manifest) = locate(std::slice::from_ref(target), &id).await?;
    Ok((target, manifest))
}

/// Whether a segment reader wants the next segment.
pub enum Reading {
    More,
    Enough,
}

/// Hands the archived entries after the base to `take`, a segment at a time and in order
/// (each entry once), until it has enough or the archive ends; refuses to cross a gap.
pub async fn read_archive(
    base: &Base<'_>,
    mut take: impl FnMut(Vec<Entry>) -> Result<Reading, BackupError>,
) -> Result<(), BackupError> {
    let target = base.target;
    let manifest = &base.manifest;
    let mut segments: Vec<(u64, u64, String)> = target
        .target
        .list(&archive::segments_prefix(
            &manifest.cluster_id,
            manifest.group,
        ))
        .await?
        .into_iter()
        .filter_map(|o| parse_segment_key(&o.key).map(|(first, last)| (first, last, o.key)))
        .collect();
    segments.sort();
    let mut next = manifest.log_index + 1;
    for (first, last, key_name) in segments {
        if last < next {
            continue;
        }
        if first > next {
            return Err(BackupError::Invalid {
                object: format!("{}/{key_name}", target.target.name()),
                check: format!(
                    "the archived log has a gap: entries {next} to {} are missing, so the \
                     latest point this backup reaches is index {}",
                    first - 1,
                    next - 1
                ),
            });
        }
        let entries = archive::read_segment(target, &key_name, base.key.as_ref()).await?;
        let fresh: Vec<Entry> = entries.into_iter().filter(|e| e.index() >= next).collect();
        next = last + 1;
        if let Reading::Enough = take(fresh)? {
            break;
        }
    }
    Ok(())
}

/// Applies archived entries after the base backup up to `point`, refusing to cross a gap in
/// the archive or to stop short of an index that was asked for.
async fn replay(
    base: &Base<'_>,
    point: RestorePoint,
    image: &Path,
    restored: &mut Restored,
) -> Result<(), BackupError> {
    let manifest = &base.manifest;
    let database = Database::open_replay(image, manifest.group)?;
    let mut last_applied = manifest.log_index;
    let mut reached_point = false;
    read_archive(base, |entries| {
        let mut batch = Vec::new();
        for entry in entries {
            let past = match point {
                RestorePoint::Index(index) => entry.index() > index,
                RestorePoint::Time(ms) => entry_time_ms(&entry).is_some_and(|at| at > ms),
            };
            if past {
                reached_point = true;
                break;
            }
            if let Some(at) = entry_time_ms(&entry) {
                restored.last_replayed_at = Some(rfc3339_ms(at));
            }
            last_applied = entry.index();
            batch.push(entry);
        }
        restored.entries_replayed += batch.len() as u64;
        tokio::task::block_in_place(|| database.apply(&batch))?;
        Ok(if reached_point {
            Reading::Enough
        } else {
            Reading::More
        })
    })
    .await?;
    // The replayed file becomes an image again, its state inside it.
    tokio::task::block_in_place(|| database.into_image())?;
    restored.log_index = last_applied;
    match point {
        RestorePoint::Index(index) if restored.log_index < index => {
            return Err(BackupError::Config(format!(
                "log index {index} is not archived yet: the archive ends at index {}",
                restored.log_index
            )));
        }
        // No archived entry came after the moment: the archive must be known complete up to
        // it, or writes committed before it may be missing (an archiver that fell behind).
        RestorePoint::Time(ms) if !reached_point => archive_complete_at(base, ms).await?,
        _ => {}
    }
    Ok(())
}

/// Fails unless the base's archive is known complete up to `moment_ms` (the archiver has
/// shipped every entry committed by then).
pub async fn archive_complete_at(base: &Base<'_>, moment_ms: i64) -> Result<(), BackupError> {
    let manifest = &base.manifest;
    let progress =
        archive::read_progress(base.target, &manifest.cluster_id, manifest.group).await?;
    let complete_at = progress.map_or(i64::MIN, |p| p.complete_at_ms);
    if complete_at < moment_ms {
        return Err(BackupError::Config(format!(
            "the archive is known complete only up to {} (index {}); a restore to {} \
             could miss writes committed after that: choose an earlier moment, or wait \
             for the archiver",
            progress.map_or("never".into(), |p| rfc3339_ms(p.complete_at_ms)),
            progress.map_or(0, |p| p.archived_index),
            rfc3339_ms(moment_ms)
        )));
    }
    Ok(())
}

/// Makes `image` the seed of a new data directory: `shoal serve --data-dir` then bootstraps a
/// new single-node cluster holding it (others join as usual). Refuses a directory that
/// already holds a node.
pub fn place_seed(image: &Path, data_dir: &Path, group: u64) -> Result<PathBuf, BackupError> {
    let group_dir = data_dir.join("groups").join(group.to_string());
    for existing in [
        data_dir.join("node.json"),
        group_dir.join("log"),
        group_dir.join("db.sqlite"),
    ] {
        if existing.exists() {
            return Err(BackupError::Config(format!(
                "{} already holds a node ({} exists); restore into an empty directory",
                data_dir.display(),
                existing.display()
            )));
        }
    }
    std::fs::create_dir_all(&group_dir)
        .map_err(|e| BackupError::Internal(format!("{}: {e}", group_dir.display())))?;
    crate::db::database::forget_cluster_state(image)?;
    let seed = group_dir.join(SEED_FILE);
    let staging = group_dir.join("seed.db.partial");
    // The image is usually on the same file system (restores build it inside the data
    // directory): move it rather than copy a whole database.
    if std::fs::rename(image, &staging).is_err() {
        std::fs::copy(image, &staging)
            .map_err(|e| BackupError::Internal(format!("{}: {e}", staging.display())))?;
    }
    crate::db::database::sync_file(&staging)?;
    std::fs::rename(&staging, &seed)
        .map_err(|e| BackupError::Internal(format!("{}: {e}", seed.display())))?;
    crate::db::database::sync_parent_dir(&seed)?;
    Ok(seed)
}
