//! Continuous log archiving for point-in-time restore. The leader ships committed entries to
//! every target as segments (`wal/<cluster>/<group>/<first>-<last>.seg`, each compressed,
//! sealed and checksummed like a chunk) at most `archive_interval` after they commit. Every
//! node holds back log purging until the entries are archived (the group's archive hold), so
//! a new leader continues where the old one stopped. A restore replays segments on top of a
//! base backup, up to a log index or a moment in time.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use openraft::EntryPayload;
use openraft::RaftLogReader;
use openraft::entry::RaftEntry;

use crate::backup::codec::{self, ObjectKind};
use crate::backup::key::BackupKey;
use crate::backup::target::ConfiguredTarget;
use crate::backup::{BackupConfig, BackupError};
use crate::raft::group::RaftGroup;
use crate::raft::types::Entry;
use crate::types::layout::{CommandLayout, with_layout};

/// Entries per segment at most (bounds the memory of one upload and of one replay step).
const SEGMENT_ENTRIES_MAX: u64 = 4096;

/// Decompressed bytes of one segment at most, when read back.
const SEGMENT_PLAIN_BYTES_MAX: usize = 1024 * 1024 * 1024;

/// How often a node that does not archive re-reads the targets' progress to update its hold.
const HOLD_REFRESH_EVERY: u32 = 10;

/// Encoded bytes of one segment at most (bounds the leader's memory and every reader's).
const SEGMENT_BYTES_MAX: usize = 64 * 1024 * 1024;

/// How often the leader restates, while nothing new commits, that the archive is complete.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The archiver's progress marker (`wal/<cluster>/<group>/progress.json`): every entry up to
/// `archived_index` is archived, and at `complete_at_ms` (leader clock) nothing committed was
/// missing — what a point-in-time restore needs to know the archive reaches its moment.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    pub archived_index: u64,
    pub complete_at_ms: i64,
}

pub fn progress_key(cluster_id: &str, group: u64) -> String {
    format!("{}progress.json", segments_prefix(cluster_id, group))
}

/// The archive's progress marker on `target`, if there is a readable one.
pub async fn read_progress(
    target: &ConfiguredTarget,
    cluster_id: &str,
    group: u64,
) -> Result<Option<Progress>, BackupError> {
    match target
        .target
        .get(&progress_key(cluster_id, group), 4096)
        .await
    {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(crate::backup::target::TargetError::NotFound { .. }) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

async fn write_progress(
    target: &ConfiguredTarget,
    cluster_id: &str,
    group: u64,
    progress: Progress,
) -> Result<(), BackupError> {
    let encoded = serde_json::to_vec(&progress)
        .map_err(|e| BackupError::Internal(format!("encode progress: {e}")))?;
    target
        .target
        .put(&progress_key(cluster_id, group), Bytes::from(encoded))
        .await?;
    Ok(())
}

pub fn segments_prefix(cluster_id: &str, group: u64) -> String {
    format!("wal/{cluster_id}/{group}/")
}

pub fn segment_key(cluster_id: &str, group: u64, first: u64, last: u64) -> String {
    format!(
        "{}{first:020}-{last:020}.seg",
        segments_prefix(cluster_id, group)
    )
}

/// The first and last index in a segment key.
pub fn parse_segment_key(key: &str) -> Option<(u64, u64)> {
    let name = key.rsplit('/').next()?.strip_suffix(".seg")?;
    let (first, last) = name.split_once('-')?;
    let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
    // Shoal never writes a segment longer than SEGMENT_ENTRIES_MAX: anything else is not ours.
    (first <= last && last - first < SEGMENT_ENTRIES_MAX).then_some((first, last))
}

/// The highest index archived on `target` for the cluster and group (0: none).
pub async fn archived_up_to(
    target: &ConfiguredTarget,
    cluster_id: &str,
    group: u64,
) -> Result<u64, BackupError> {
    // The marker is one small read; only without one is the (possibly long) listing needed.
    if let Some(progress) = read_progress(target, cluster_id, group).await? {
        return Ok(progress.archived_index);
    }
    let objects = target
        .target
        .list(&segments_prefix(cluster_id, group))
        .await?;
    let mut ranges: Vec<(u64, u64)> = objects
        .iter()
        .filter_map(|o| parse_segment_key(&o.key))
        .collect();
    ranges.sort();
    Ok(contiguous_end(&ranges))
}

/// The end of the run of segments that continues from the first one without a gap.
fn contiguous_end(sorted: &[(u64, u64)]) -> u64 {
    let mut end: Option<u64> = None;
    for &(first, last) in sorted {
        match end {
            Some(e) if first > e.saturating_add(1) => break,
            _ => end = Some(end.map_or(last, |e| e.max(last))),
        }
    }
    end.unwrap_or(0)
}

/// Removes segments whose entries all precede `index` (every kept backup already holds them).
pub async fn prune_segments_before(
    target: &ConfiguredTarget,
    cluster_id: &str,
    index: u64,
) -> Result<(), BackupError> {
    if cluster_id.is_empty() || index == u64::MAX {
        return Ok(());
    }
    for object in target.target.list(&format!("wal/{cluster_id}/")).await? {
        if parse_segment_key(&object.key).is_some_and(|(_, last)| last < index) {
            target.target.delete(&object.key).await?;
        }
    }
    Ok(())
}

/// Reads and opens one segment, checking it holds exactly the entries its name says.
pub async fn read_segment(
    target: &ConfiguredTarget,
    key_name: &str,
    key: Option<&BackupKey>,
) -> Result<Vec<Entry>, BackupError> {
    let (first, last) = parse_segment_key(key_name).ok_or_else(|| BackupError::Invalid {
        object: key_name.to_string(),
        check: "not a log segment name".into(),
    })?;
    let object = target
        .target
        .get(key_name, SEGMENT_PLAIN_BYTES_MAX as u64)
        .await?;
    let name = format!("{}/{key_name}", target.target.name());
    // Segments archived before command layout 2 keep their kind and decode in layout 1.
    let (kind, layout) = match ObjectKind::claimed_by(&object) {
        Some(ObjectKind::LogSegment) => (ObjectKind::LogSegment, CommandLayout::V1),
        _ => (ObjectKind::LogSegmentV2, CommandLayout::V2),
    };
    let plain = codec::decode(
        &name,
        &object,
        kind,
        key,
        key_name.as_bytes(),
        SEGMENT_PLAIN_BYTES_MAX,
    )?;
    let entries: Vec<Entry> =
        with_layout(layout, || postcard::from_bytes(&plain)).map_err(|e| BackupError::Invalid {
            object: name.clone(),
            check: format!("entries do not decode: {e}"),
        })?;
    let indexes_match = entries
        .iter()
        .zip(first..=last)
        .all(|(entry, index)| entry.index() == index)
        && entries.len() as u64 == last - first + 1;
    if !indexes_match {
        return Err(BackupError::Invalid {
            object: name,
            check: format!("does not hold entries {first} to {last} in order"),
        });
    }
    Ok(entries)
}

/// The leader timestamp of an entry carrying a command (blank and membership entries have
/// none).
pub fn entry_time_ms(entry: &Entry) -> Option<i64> {
    match &entry.payload {
        EntryPayload::Normal(command) => Some(command.timestamp_ms),
        _ => None,
    }
}

/// Ships committed entries to the targets while this node leads; on other nodes keeps the
/// archive hold in step with what the targets hold. Ends when the group is gone or its agent
/// (`agent_alive`) is.
pub async fn run_archiver(
    group: std::sync::Weak<RaftGroup>,
    agent_alive: std::sync::Weak<()>,
    config: BackupConfig,
) {
    let targets = config.targets.clone();
    let mut ticker = tokio::time::interval(config.archive_interval.max(Duration::from_millis(100)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cluster: Option<(String, Option<Arc<BackupKey>>)> = None;
    // Per target: the last index known to be archived there, and when that was last said.
    let mut archived: Vec<Option<u64>> = vec![None; targets.len()];
    let mut stated: Vec<Option<(u64, std::time::Instant)>> = vec![None; targets.len()];
    let mut ticks: u32 = 0;
    loop {
        ticker.tick().await;
        ticks = ticks.wrapping_add(1);
        let Some(group) = group.upgrade() else { return };
        if agent_alive.strong_count() == 0 {
            return;
        }
        if cluster.is_none() {
            // The cluster id (and so the passphrase key's salt) exists once a command applied.
            if let Ok(Some(cluster_id)) = group.database.applied_state().map(|s| s.cluster_id) {
                let source = config.key.clone();
                let id = cluster_id.clone();
                match crate::backup::key::derive_off_thread(move || source.resolve(&id)).await {
                    Ok(key) => cluster = Some((cluster_id, key.map(Arc::new))),
                    Err(error) => {
                        tracing::error!(%error, "log archiving disabled: no usable backup key");
                        return;
                    }
                }
            }
        }
        let Some((cluster_id, key)) = &cluster else {
            continue;
        };
        let leading = group.raft.is_leader();
        if !leading {
            // Another node archives; refresh what it has done now and then.
            if ticks.is_multiple_of(HOLD_REFRESH_EVERY) || archived.iter().any(Option::is_none) {
                for (slot, target) in archived.iter_mut().zip(&targets) {
                    if let Ok(up_to) = archived_up_to(target, cluster_id, group.id).await {
                        *slot = Some(up_to);
                    }
                }
            }
        } else {
            let applied = group.metrics().last_applied.map_or(0, |l| l.index);
            for ((slot, target), said) in archived.iter_mut().zip(&targets).zip(stated.iter_mut()) {
                if slot.is_none() {
                    match archived_up_to(target, cluster_id, group.id).await {
                        Ok(up_to) => *slot = Some(up_to),
                        Err(error) => {
                            tracing::warn!(target = target.target.name(), %error, "log archive unreachable");
                            continue;
                        }
                    }
                }
                let Some(done) = slot else { continue };
                while *done < applied {
                    match ship_segment(&group, target, cluster_id, key.as_deref(), *done, applied)
                        .await
                    {
                        Ok(last) if last > *done => *done = last,
                        Ok(_) => break,
                        Err(error) => {
                            tracing::warn!(target = target.target.name(), %error, "log archiving failed; will retry");
                            crate::metrics::metrics().archive_failures.inc();
                            break;
                        }
                    }
                }
                // Caught up: say so (at once after progress, else every few seconds), so a
                // restore knows the archive is complete up to now.
                let due =
                    said.is_none_or(|(index, at)| index != *done || at.elapsed() >= PROGRESS_EVERY);
                if *done >= applied && due {
                    let progress = Progress {
                        archived_index: *done,
                        complete_at_ms: crate::backup::now_ms(),
                    };
                    if write_progress(target, cluster_id, group.id, progress)
                        .await
                        .is_ok()
                    {
                        *said = Some((*done, std::time::Instant::now()));
                    }
                }
            }
        }
        let hold = archived
            .iter()
            .map(|a| a.unwrap_or(0))
            .min()
            .unwrap_or(u64::MAX);
        group.archive_hold.store(hold, Ordering::Relaxed);
        crate::metrics::metrics()
            .archived_index
            .set(hold.min(i64::MAX as u64) as i64);
    }
}

/// Archives the entries after `done` (up to `applied`, at most a segment's worth) and returns
/// the last index now archived. Entries the log no longer holds are skipped with a warning:
/// a point-in-time restore cannot cross that gap, and says so.
async fn ship_segment(
    group: &RaftGroup,
    target: &ConfiguredTarget,
    cluster_id: &str,
    key: Option<&BackupKey>,
    done: u64,
    applied: u64,
) -> Result<u64, BackupError> {
    let first = done + 1;
    let last = applied.min(done + SEGMENT_ENTRIES_MAX);
    let mut reader = group.log.clone();
    let entries = reader
        .try_get_log_entries(first..=last)
        .await
        .map_err(|e| BackupError::Internal(format!("reading the log: {e}")))?;
    let Some(head) = entries.first() else {
        // Everything asked for was purged already: skip to what the log still holds.
        let purged = {
            use openraft::storage::RaftLogStorage;
            group
                .log
                .clone()
                .get_log_state()
                .await
                .map_err(|e| BackupError::Internal(format!("reading the log state: {e}")))?
                .last_purged_log_id
                .map_or(0, |l| l.index)
        };
        if purged >= first {
            report_gap(first, purged);
            return Ok(purged.min(applied));
        }
        return Ok(done);
    };
    if head.index() != first {
        report_gap(first, head.index() - 1);
    }
    let mut entries = entries;
    let mut plain = postcard::to_stdvec(&entries)
        .map_err(|e| BackupError::Internal(format!("encoding entries: {e}")))?;
    // Large entries: fewer per segment, so every segment stays readable in bounded memory.
    while plain.len() > SEGMENT_BYTES_MAX && entries.len() > 1 {
        entries.truncate(entries.len() / 2);
        plain = postcard::to_stdvec(&entries)
            .map_err(|e| BackupError::Internal(format!("encoding entries: {e}")))?;
    }
    let Some(head) = entries.first() else {
        return Ok(done);
    };
    let (first, last) = (head.index(), entries.last().map_or(first, |e| e.index()));
    let key_name = segment_key(cluster_id, group.id, first, last);
    let key = key.cloned();
    let name = key_name.clone();
    let object = tokio::task::spawn_blocking(move || {
        codec::encode(
            ObjectKind::LogSegmentV2,
            &plain,
            3,
            key.as_ref(),
            name.as_bytes(),
        )
    })
    .await
    .map_err(|e| BackupError::Internal(e.to_string()))??;
    target.target.put(&key_name, Bytes::from(object)).await?;
    Ok(last)
}

fn report_gap(from: u64, to: u64) {
    tracing::warn!(
        missing_from = from,
        missing_to = to,
        "log entries were purged before they were archived: point-in-time restore cannot \
         cross this gap (a new backup starts a new chain)"
    );
    crate::metrics::metrics().archive_gaps.inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_reaches_the_end_of_its_first_unbroken_run() {
        assert_eq!(contiguous_end(&[]), 0);
        assert_eq!(contiguous_end(&[(1, 5), (6, 9), (8, 12)]), 12);
        assert_eq!(contiguous_end(&[(1, 5), (7, 9)]), 5);
    }

    #[test]
    fn segment_names_sort_by_index_and_parse_back() {
        let a = segment_key("c", 1, 5, 9);
        let b = segment_key("c", 1, 10, 100);
        assert!(a < b);
        assert_eq!(parse_segment_key(&a), Some((5, 9)));
        assert_eq!(parse_segment_key("wal/c/1/9-5.seg"), None);
        assert_eq!(parse_segment_key("wal/c/1/x.seg"), None);
    }
}
