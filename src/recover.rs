//! `shoal recover`: bring a cluster that lost its quorum for good back from one survivor.
//!
//! Raft cannot commit anything once a majority of the voters is gone (machines lost, or every
//! node restarted on new addresses that the recorded membership does not know). Like etcd's
//! `--force-new-cluster`, the operator picks the survivor with the most data and runs this on
//! its stopped data directory: its database is rebuilt from its latest snapshot and **every**
//! entry of its local log (committed or not: without a quorum nobody can tell), and becomes the
//! seed of a new single-node cluster (a new cluster id), which `shoal serve` starts and the
//! other nodes join with empty data directories. The old files are kept beside it.
//!
//! It refuses while a quorum of the recorded voters still accepts connections: forcing a new
//! cluster then would split the data in two.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use openraft::EntryPayload;
use openraft::storage::{RaftLogReader, RaftLogStorage};

use crate::db::database::Database;
use crate::db::snapshot_store::SnapshotStore;
use crate::raft::log_store::LogStore;
use crate::raft::types::{Entry, NodeId, StoredMembership};

/// The data group recovered (the only one today).
const GROUP: u64 = 1;

/// Entries replayed per step.
const REPLAY_BATCH_ENTRIES: u64 = 512;

/// How long a recorded voter's Raft port gets to accept a connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The log is read with this much of it in memory.
const LOG_MEMORY_BYTES: usize = 16 * 1024 * 1024;

/// `shoal recover` options.
#[derive(clap::Args, Debug, Clone)]
pub struct RecoverArgs {
    /// The stopped node's data directory (the survivor with the most data).
    #[arg(long, env = "SHOAL_DATA_DIR", default_value = "shoal-data")]
    pub data_dir: PathBuf,
}

/// What recovery did, for the operator.
#[derive(Debug)]
pub struct Recovered {
    pub replayed_to_index: u64,
    pub kept_old_files_in: PathBuf,
    pub seed: PathBuf,
}

/// Runs `shoal recover`; returns the exit status.
pub async fn run(args: RecoverArgs) -> i32 {
    match recover(&args.data_dir).await {
        Ok(done) => {
            println!(
                "recovered: the database holds every entry of this node's log (up to index {}).\n\
                 The old files are in {}.\n\
                 Next: start this node (shoal serve --data-dir {} …): it bootstraps a new \
                 single-node cluster from {}. Then start the other nodes on empty data \
                 directories with --join pointing at it.",
                done.replayed_to_index,
                done.kept_old_files_in.display(),
                args.data_dir.display(),
                done.seed.display()
            );
            0
        }
        Err(message) => {
            eprintln!("shoal recover: {message}");
            1
        }
    }
}

/// Recovers the data directory at `data_dir` (see the module documentation).
pub async fn recover(data_dir: &Path) -> Result<Recovered, String> {
    let _lock = crate::node::lock_data_dir(data_dir).map_err(|e| e.to_string())?;
    let node_id = crate::node::recorded_node_id(data_dir)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{} holds no node (no node.json)", data_dir.display()))?;
    let group_dir = data_dir.join("groups").join(GROUP.to_string());
    if !group_dir.join("log").exists() {
        return Err(format!(
            "{} holds no Raft log: nothing to recover",
            group_dir.display()
        ));
    }
    let mut log = LogStore::open(&group_dir.join("log"), LOG_MEMORY_BYTES)
        .map_err(|e| format!("opening the log: {e}"))?;
    let snapshots = SnapshotStore::open(&group_dir.join("snapshots")).map_err(|e| e.to_string())?;
    let membership = latest_membership(&mut log, &snapshots, &group_dir).await?;
    refuse_if_a_quorum_is_alive(node_id, &membership).await?;

    // Rebuild beside the directory: from the snapshot (or nothing) and the whole local log.
    let image = data_dir.join("recovery-image.db");
    // Whatever an interrupted earlier attempt left (a stale WAL would be replayed onto the
    // fresh copy).
    let state = crate::db::state_file::state_path(&image);
    for base in [&image, &state] {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(crate::db::state_file::sidecar(base, suffix));
        }
    }
    if let Some((_, snapshot)) = snapshots.current().map_err(|e| e.to_string())? {
        std::fs::copy(&snapshot, &image).map_err(|e| format!("copying the snapshot: {e}"))?;
    }
    let replayed_to_index = replay_whole_log(&mut log, &image).await?;
    drop(log);

    let kept = data_dir.join(format!(
        "groups-before-recovery-{}",
        crate::backup::now_ms()
    ));
    std::fs::rename(data_dir.join("groups"), &kept)
        .map_err(|e| format!("moving the old files to {}: {e}", kept.display()))?;
    // The seed goes where a restore puts it, which wants a directory without a node; the
    // node keeps its id, so its identity comes back once the seed is in place.
    let identity = data_dir.join("node.json");
    let kept_identity = kept.join("node.json");
    std::fs::rename(&identity, &kept_identity).map_err(|e| format!("node.json: {e}"))?;
    let seed =
        crate::backup::restore::place_seed(&image, data_dir, GROUP).map_err(|e| e.to_string());
    std::fs::copy(&kept_identity, &identity).map_err(|e| format!("node.json: {e}"))?;
    let seed = match seed {
        Ok(seed) => seed,
        Err(error) => {
            // Put the old files back: the directory is as it was before.
            let _ = std::fs::remove_dir_all(data_dir.join("groups"));
            return match std::fs::rename(&kept, data_dir.join("groups")) {
                Ok(()) => Err(format!("placing the seed: {error}; nothing was changed")),
                Err(undo) => Err(format!(
                    "placing the seed: {error}; the old files are in {} (moving them back \
                     failed: {undo})",
                    kept.display()
                )),
            };
        }
    };
    Ok(Recovered {
        replayed_to_index,
        kept_old_files_in: kept,
        seed,
    })
}

/// The newest membership this node knows: the last membership entry of its log, else what
/// its state or snapshot recorded.
async fn latest_membership(
    log: &mut LogStore,
    snapshots: &SnapshotStore,
    group_dir: &Path,
) -> Result<StoredMembership, String> {
    let state = log.get_log_state().await.map_err(|e| e.to_string())?;
    let first = state.last_purged_log_id.map_or(1, |l| l.index + 1);
    let last = state.last_log_id.map_or(0, |l| l.index);
    let mut found = None;
    let mut next = first;
    while next <= last {
        let end = (next + REPLAY_BATCH_ENTRIES).min(last + 1);
        for entry in log
            .try_get_log_entries(next..end)
            .await
            .map_err(|e| e.to_string())?
        {
            if let EntryPayload::Membership(membership) = &entry.payload {
                found = Some(StoredMembership::new(
                    Some(entry.log_id),
                    membership.clone(),
                ));
            }
        }
        next = end;
    }
    if let Some(membership) = found {
        return Ok(membership);
    }
    let state_file = crate::db::state_file::state_path(&group_dir.join("db.sqlite"));
    for source in [state_file, group_dir.join("db.sqlite")] {
        if source.exists()
            && let Ok(state) = crate::db::database::read_image_state(&source)
            && state.membership.membership().voter_ids().next().is_some()
        {
            return Ok(state.membership);
        }
    }
    if let Some((manifest, _)) = snapshots.current().map_err(|e| e.to_string())? {
        return Ok(manifest.meta.last_membership);
    }
    Err("no membership is recorded in this data directory".into())
}

/// Refuses when this node and the recorded voters that accept connections form a majority.
async fn refuse_if_a_quorum_is_alive(
    node_id: NodeId,
    membership: &StoredMembership,
) -> Result<(), String> {
    let voters: BTreeSet<NodeId> = membership.membership().voter_ids().collect();
    let mut alive = vec![node_id];
    for (id, node) in membership.membership().nodes() {
        if *id == node_id || !voters.contains(id) {
            continue;
        }
        let reachable = tokio::time::timeout(
            PROBE_TIMEOUT,
            tokio::net::TcpStream::connect(node.raft_addr.as_str()),
        )
        .await
        .is_ok_and(|connected| connected.is_ok());
        if reachable {
            alive.push(*id);
        }
    }
    let alive_voters = alive.iter().filter(|id| voters.contains(id)).count();
    if alive_voters * 2 > voters.len() {
        return Err(format!(
            "a quorum of the cluster is alive: voters {alive:?} of {voters:?} accept connections \
             at their recorded addresses. Recovery would split the cluster; start this node \
             normally instead (a member on new addresses rejoins with --join)"
        ));
    }
    Ok(())
}

/// Replays every entry of `log` after what the image at `image` holds (nothing when it does
/// not exist) and leaves the image with its state inside; returns the last index replayed.
async fn replay_whole_log(log: &mut LogStore, image: &Path) -> Result<u64, String> {
    let database = Database::open(image, GROUP + 1000, 1).map_err(|e| e.to_string())?;
    let mut applied = database
        .applied_state()
        .map_err(|e| e.to_string())?
        .last_applied
        .map_or(0, |l| l.index);
    let state = log.get_log_state().await.map_err(|e| e.to_string())?;
    let last = state.last_log_id.map_or(0, |l| l.index);
    let first_kept = state.last_purged_log_id.map_or(1, |l| l.index + 1);
    if applied + 1 < first_kept {
        return Err(format!(
            "the log starts at index {first_kept} but the snapshot ends at {applied}: entries \
             in between are lost"
        ));
    }
    while applied < last {
        let end = (applied + 1 + REPLAY_BATCH_ENTRIES).min(last + 1);
        let entries: Vec<Entry> = log
            .try_get_log_entries(applied + 1..end)
            .await
            .map_err(|e| e.to_string())?;
        if entries.is_empty() {
            break;
        }
        tokio::task::block_in_place(|| database.apply(&entries)).map_err(|e| e.to_string())?;
        applied = entries.last().map_or(applied, |e| e.log_id.index);
    }
    tokio::task::block_in_place(|| database.into_image()).map_err(|e| e.to_string())?;
    Ok(applied)
}
