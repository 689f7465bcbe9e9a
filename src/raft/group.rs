//! One Raft group on this node: its log, state machine, snapshots and openraft instance, laid
//! out under `<data-dir>/groups/<group-id>/`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use openraft::Instant as _;
use openraft::async_runtime::WatchReceiver;
use openraft::{Config, SnapshotPolicy};

use crate::db::database::Database;
use crate::db::snapshot_store::{SnapshotStore, recover_from_snapshot};
use crate::db::state_machine::StateMachine;
use crate::raft::log_store::LogStore;
use crate::raft::network::NetworkFactory;
use crate::raft::types::{GroupId, NodeId, Raft, TypeConfig};

/// The name of a restored image a new data directory boots from
/// (`<data-dir>/groups/<group>/seed.db`, written by `shoal restore`).
pub const SEED_FILE: &str = "seed.db";

/// The clock openraft keeps its leader lease by.
pub(crate) type RaftInstant = openraft::type_config::alias::InstantOf<TypeConfig>;

/// Consensus timing and log retention.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Entries since the last snapshot before another is considered.
    pub snapshot_threshold_entries: u64,
    /// A snapshot copies the whole database, so one is built only once the log written since
    /// the last one reaches this fraction of the database's size: the copying then costs at
    /// most 1/ratio bytes per byte of log, however large the database grows.
    pub snapshot_log_ratio: f64,
    /// A snapshot is built whenever the unpurged log exceeds this many bytes on disk (bounds
    /// the log's disk use and replay time even for a huge database or huge entries).
    pub log_bytes_max: u64,
    /// Entries kept in the log behind the snapshot, so briefly lagging followers catch up
    /// from the log instead of needing the whole snapshot.
    pub log_keep_entries: u64,
    /// Read-only SQLite connections per group.
    pub readers_max: usize,
    /// Encoded bytes of the newest log entries kept in memory for replication and apply;
    /// older entries are read back from disk.
    pub log_cache_bytes: usize,
    /// The log is continuously archived (backups): purge nothing until the archiver says
    /// what it shipped.
    pub hold_log_for_archive: bool,
}

impl RaftSettings {
    /// The longest election timeout for a shortest of `min_ms`: 1.5 times it.
    ///
    /// openraft uses the longest timeout as the leader lease too: a follower refuses to vote
    /// for that long after it last heard from the leader, and only then does its own
    /// (randomized) timeout start. The time from a leader's death to the next election is
    /// therefore about `max + random(min, max)`, so the spread is kept narrow (with 2×, the
    /// defaults took 450–600 ms to fail over); a split vote, likelier with a narrow spread on
    /// loopback-fast votes, costs one more timeout.
    pub fn election_timeout_max_for(min_ms: u64) -> u64 {
        min_ms + min_ms / 2
    }
}

impl Default for RaftSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 40,
            election_timeout_min_ms: 120,
            election_timeout_max_ms: Self::election_timeout_max_for(120),
            snapshot_threshold_entries: 8192,
            snapshot_log_ratio: 0.5,
            log_bytes_max: 1024 * 1024 * 1024,
            log_keep_entries: 1024,
            readers_max: 8,
            log_cache_bytes: 16 * 1024 * 1024,
            hold_log_for_archive: false,
        }
    }
}

/// Who led the group, in which term, since when (wall clock, for status output).
#[derive(Debug, Clone)]
pub struct LeaderEpoch {
    pub leader: Option<NodeId>,
    pub term: u64,
    pub since: SystemTime,
}

/// A running Raft group.
pub struct RaftGroup {
    pub id: GroupId,
    pub node_id: NodeId,
    pub raft: Raft,
    pub database: Arc<Database>,
    pub log: LogStore,
    /// Opened once: opening clears leftovers of interrupted builds and transfers.
    pub snapshots: SnapshotStore,
    pub dir: PathBuf,
    /// When this node last accepted entries or a heartbeat from a leader.
    leader_contact: Mutex<Option<Instant>>,
    leader_epoch: Mutex<LeaderEpoch>,
    /// This node's role as of openraft's latest metrics, kept by the leader watch so that the
    /// read path never takes the metrics lock RaftCore writes under.
    leading: AtomicBool,
    voting: AtomicBool,
    /// Leader-lease reads decided without RaftCore (see [`RaftGroup::lease_covers_now`]).
    lease: ReadLease,
    /// The highest log index that may be purged: entries after it are not archived yet
    /// (`u64::MAX` when log archiving is off). Set by the backup archiver.
    pub archive_hold: AtomicU64,
    /// Whether the group's timers are stopped because it is idle (`raft::quiesce`).
    pub(crate) quiet: crate::raft::quiesce::Quiet,
}

/// Errors starting a group.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("cannot open group {group} storage in {dir}: {message}")]
    Storage {
        group: GroupId,
        dir: PathBuf,
        message: String,
    },
    #[error("invalid Raft settings: {0}")]
    Config(String),
    #[error("cannot start Raft for group {group}: {message}")]
    Start { group: GroupId, message: String },
}

impl RaftGroup {
    /// Opens the group's storage under `data_dir` and starts its Raft instance.
    pub async fn start(
        data_dir: &Path,
        group: GroupId,
        node_id: NodeId,
        settings: &RaftSettings,
        links: Arc<crate::raft::peer_stream::client::PeerLinks>,
    ) -> Result<Arc<RaftGroup>, GroupError> {
        let dir = data_dir.join("groups").join(group.to_string());
        let storage = |message: String| GroupError::Storage {
            group,
            dir: dir.clone(),
            message,
        };
        std::fs::create_dir_all(&dir).map_err(|e| storage(e.to_string()))?;
        let log = LogStore::open(&dir.join("log"), settings.log_cache_bytes)
            .map_err(|e| storage(format!("log: {e}")))?;
        let snapshots =
            SnapshotStore::open(&dir.join("snapshots")).map_err(|e| storage(e.to_string()))?;
        let database = Arc::new(
            Database::open(&dir.join("db.sqlite"), group, settings.readers_max)
                .map_err(|e| storage(e.to_string()))?,
        );
        recover_from_snapshot(&snapshots, &database).map_err(|e| storage(e.to_string()))?;
        note_rebuild_target(&log, &database)
            .await
            .map_err(|e| storage(format!("rebuilding the database: {e}")))?;
        seed_from_restore(&dir, &database).map_err(|e| storage(e.to_string()))?;

        let config = Config {
            cluster_name: format!("shoal-group-{group}"),
            heartbeat_interval: settings.heartbeat_interval_ms,
            election_timeout_min: settings.election_timeout_min_ms,
            election_timeout_max: settings.election_timeout_max_ms,
            enable_pre_vote: Some(true),
            broadcast_submitted_on_append: Some(true),
            // Built by `spawn_snapshot_policy`, which weighs the log against the database, and
            // also purges the log (keeping what is not archived yet), so openraft never does.
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: u64::MAX,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| GroupError::Config(e.to_string()))?;
        let state_machine = StateMachine::new(database.clone(), snapshots.clone());
        let addresses = crate::raft::network::AddressBook::default();
        let raft = Raft::new(
            node_id,
            Arc::new(config),
            NetworkFactory::new(links, group, addresses.clone()),
            log.clone(),
            state_machine,
        )
        .await
        .map_err(|e| GroupError::Start {
            group,
            message: e.to_string(),
        })?;
        let group = Arc::new(RaftGroup {
            id: group,
            node_id,
            raft,
            database,
            log,
            snapshots,
            dir,
            leader_contact: Mutex::new(None),
            leading: AtomicBool::new(false),
            voting: AtomicBool::new(false),
            lease: ReadLease::new(Duration::from_millis(settings.election_timeout_max_ms)),
            leader_epoch: Mutex::new(LeaderEpoch {
                leader: None,
                term: 0,
                since: SystemTime::now(),
            }),
            archive_hold: AtomicU64::new(if settings.hold_log_for_archive {
                0
            } else {
                u64::MAX
            }),
            quiet: Default::default(),
        });
        spawn_leader_watch(&group, addresses);
        spawn_snapshot_policy(&group, settings);
        Ok(group)
    }

    /// Records that a leader's append (or heartbeat) was accepted just now; a quiesced
    /// replica wakes (its leader is active again).
    pub fn note_leader_contact(&self) {
        self.note_leader_contact_while_quiesced();
        self.wake("the leader sent entries or a heartbeat");
    }

    /// Records contact with the leader without waking: a quiesced leader confirmed it still
    /// leads, with nothing new (so this replica is as fresh as an active one).
    pub(crate) fn note_leader_contact_while_quiesced(&self) {
        if let Ok(mut contact) = self.leader_contact.lock() {
            *contact = Some(Instant::now());
        }
    }

    /// Hands a leader's AppendEntries to openraft; an accepted one counts as contact with
    /// the leader (for `freshness`).
    pub async fn receive_append(
        &self,
        request: openraft::raft::AppendEntriesRequest<crate::raft::types::TypeConfig>,
    ) -> Result<openraft::raft::AppendEntriesResponse<crate::raft::types::TypeConfig>, String> {
        let response = self
            .raft
            .append_entries(request)
            .await
            .map_err(|e| e.to_string())?;
        if matches!(
            response,
            openraft::raft::AppendEntriesResponse::Success
                | openraft::raft::AppendEntriesResponse::PartialSuccess(_)
        ) {
            self.note_leader_contact();
        }
        Ok(response)
    }

    /// The last log index this replica applied, read in place (no copy of the whole metrics).
    pub fn applied_index(&self) -> Option<u64> {
        self.raft
            .metrics()
            .borrow_watched()
            .last_applied
            .as_ref()
            .map(|l| l.index)
    }

    /// The Raft address of member `node`, read in place (no copy of the membership).
    pub fn raft_addr_of(&self, node: NodeId) -> Option<String> {
        self.raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .get_node(&node)
            .map(|member| member.raft_addr.clone())
    }

    /// The members of the membership in effect with their addresses, read in place.
    pub fn members(&self) -> std::collections::BTreeMap<NodeId, crate::raft::types::ShoalNode> {
        self.raft
            .metrics()
            .borrow_watched()
            .membership_config
            .nodes()
            .map(|(id, node)| (*id, node.clone()))
            .collect()
    }

    /// The leader this node knows of, read in place (no copy of the whole metrics).
    pub fn current_leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// Whether this node leads, as of the latest metrics the leader watch saw (lock-free; for
    /// decisions that tolerate a moment's lag, never for safety).
    pub fn leads(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// Whether a read arriving now may be answered from this node's applied state under the
    /// leader lease, without a round trip to RaftCore.
    ///
    /// True when, as of metrics the leader watch saw, this node leads, has applied an entry of
    /// its own term (so everything an earlier leader acknowledged), and a quorum acknowledged
    /// a message it sent less than the lease ago. Every write this leader acknowledged was
    /// applied here first, and no other node can be elected before the lease runs out
    /// (followers refuse to vote for that long after hearing from it), so no write
    /// acknowledged before the read arrived is missing. Stale metrics only make the lease look
    /// older. openraft's own lease read (`get_read_linearizer` with a lease) decides the
    /// same way, inside RaftCore.
    pub fn lease_covers_now(&self) -> bool {
        self.lease.covers(RaftInstant::now())
    }

    /// Whether this node is a voter, as of the latest membership the leader watch saw.
    pub fn votes(&self) -> bool {
        self.voting.load(Ordering::Acquire)
    }

    /// Time since this node last heard from a leader; zero on the leader itself.
    pub fn since_leader_contact(&self) -> Option<Duration> {
        if self.leads() {
            return Some(Duration::ZERO);
        }
        self.leader_contact
            .lock()
            .ok()
            .and_then(|c| *c)
            .map(|at| at.elapsed())
    }

    /// How long this node has gone without hearing from a leader — or, when it leads,
    /// without a quorum acknowledging it (`Duration::MAX`: never).
    pub fn leader_quiet(&self) -> Duration {
        if let Some(silence) = self.quiesced_silence() {
            // Quiesced: no heartbeats to acknowledge, but every member checks in on the leader
            // (and the group wakes if one stops).
            return silence;
        }
        if self.raft.is_leader() {
            // A lone voter is its own quorum: nothing acknowledges it, and nothing needs to.
            if self.raft.voter_ids().count() <= 1 {
                return Duration::ZERO;
            }
            self.metrics()
                .last_quorum_acked
                .as_ref()
                .map_or(Duration::MAX, |acked| acked.elapsed())
        } else {
            self.since_leader_contact().unwrap_or(Duration::MAX)
        }
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch
            .lock()
            .map(|e| e.clone())
            .unwrap_or(LeaderEpoch {
                leader: None,
                term: 0,
                since: SystemTime::now(),
            })
    }

    /// Members (voters and read replicas) of the membership in effect, counted in place.
    pub fn member_count(&self) -> usize {
        self.raft
            .metrics()
            .borrow_watched()
            .membership_config
            .nodes()
            .count()
    }

    pub fn metrics(&self) -> openraft::RaftMetrics<crate::raft::types::TypeConfig> {
        self.raft.metrics().borrow_watched().clone()
    }

    /// Why Raft stopped on this node (a storage failure such as a full disk), if it did. A
    /// stopped node keeps serving `level=none` reads of what it applied but takes no part in
    /// consensus until it is restarted.
    pub fn stopped(&self) -> Option<String> {
        self.raft
            .metrics()
            .borrow_watched()
            .running_state
            .as_ref()
            .err()
            .map(|fatal| fatal.to_string())
    }
}

/// Whether the log has grown enough, against the database, to be worth a snapshot.
/// `purge_blocked`: the archive hold keeps the log from being purged past the last snapshot,
/// so a new snapshot would not shrink it; then only the entry count and ratio may call for one.
fn snapshot_due(
    settings: &RaftSettings,
    entries_since_snapshot: u64,
    log_bytes: u64,
    database_bytes: u64,
    purge_blocked: bool,
) -> bool {
    if entries_since_snapshot == 0 {
        return false;
    }
    let worth_the_copy = entries_since_snapshot >= settings.snapshot_threshold_entries
        && log_bytes as f64 >= settings.snapshot_log_ratio * database_bytes as f64;
    worth_the_copy || (log_bytes > settings.log_bytes_max && !purge_blocked)
}

/// Triggers a snapshot (after which openraft purges the log) when `snapshot_due`, checking
/// four times a second and at most once every two seconds.
fn spawn_snapshot_policy(group: &Arc<RaftGroup>, settings: &RaftSettings) {
    let weak = Arc::downgrade(group);
    let settings = settings.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        let mut last_trigger: Option<Instant> = None;
        let mut purge_requested = 0;
        loop {
            ticker.tick().await;
            let Some(group) = weak.upgrade() else { return };
            if group.is_quiesced() {
                // Nothing is applied while quiesced: nothing to snapshot or purge until it wakes.
                continue;
            }
            let purge_to = purge_target(&group, &settings);
            if purge_to > purge_requested {
                if group.raft.trigger().purge_log(purge_to).await.is_err() {
                    return;
                }
                purge_requested = purge_to;
            }
            if last_trigger.is_some_and(|at| at.elapsed() < Duration::from_secs(2)) {
                continue;
            }
            let (applied, snapshot) = {
                let metrics = group.raft.metrics();
                let metrics = metrics.borrow_watched();
                (
                    metrics.last_applied.map_or(0, |l| l.index),
                    metrics.snapshot.map_or(0, |l| l.index),
                )
            };
            let entries_since_snapshot = applied.saturating_sub(snapshot);
            let log_bytes = group.log.disk_bytes();
            let database_bytes = group.database.file_bytes();
            let purge_blocked = group.archive_hold.load(Ordering::Relaxed) < snapshot;
            if snapshot_due(
                &settings,
                entries_since_snapshot,
                log_bytes,
                database_bytes,
                purge_blocked,
            ) {
                tracing::debug!(
                    group = group.id,
                    entries_since_snapshot,
                    log_bytes,
                    database_bytes,
                    "building a snapshot"
                );
                if group.raft.trigger().snapshot().await.is_err() {
                    return;
                }
                last_trigger = Some(Instant::now());
            }
        }
    });
}

impl RaftGroup {
    /// Builds a snapshot now (rqlite's `POST /snapshot`) and waits for it, up to `timeout`;
    /// with `trailing_logs`, then purges the log up to that many entries before it (never
    /// past what the archiver has not shipped). Returns the snapshot's log index.
    pub async fn snapshot_now(
        &self,
        trailing_logs: Option<u64>,
        timeout: Duration,
    ) -> Result<u64, String> {
        let applied = self
            .raft
            .metrics()
            .borrow_watched()
            .last_applied
            .map_or(0, |l| l.index);
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| format!("starting a snapshot: {e}"))?;
        let metrics = self
            .raft
            .wait(Some(timeout))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index >= applied),
                "snapshot built",
            )
            .await
            .map_err(|e| format!("waiting for the snapshot: {e}"))?;
        let index = metrics.snapshot.map_or(0, |s| s.index);
        if let Some(trailing) = trailing_logs {
            let hold = self.archive_hold.load(Ordering::Relaxed);
            let purge_to = index.saturating_sub(trailing).min(hold);
            if purge_to > 0 {
                self.raft
                    .trigger()
                    .purge_log(purge_to)
                    .await
                    .map_err(|e| format!("purging the log: {e}"))?;
            }
        }
        Ok(index)
    }
}

/// The index up to which the log may be purged: the snapshot keeps everything before it, less
/// `log_keep_entries` for briefly lagging followers, and not past what the archiver has
/// shipped — unless the log has grown past twice its bound, when disk space wins (the
/// archiver reports the gap).
fn purge_target(group: &RaftGroup, settings: &RaftSettings) -> u64 {
    let snapshot = group
        .raft
        .metrics()
        .borrow_watched()
        .snapshot
        .map_or(0, |l| l.index);
    let wanted = snapshot.saturating_sub(settings.log_keep_entries);
    let hold = group.archive_hold.load(Ordering::Relaxed);
    if group.log.disk_bytes() > settings.log_bytes_max.saturating_mul(2) {
        wanted
    } else {
        wanted.min(hold)
    }
}

/// After an unclean stop discarded the database, tells openraft that the log is committed at
/// least up to the last entry the discarded state recorded as applied (it was), so openraft
/// re-applies the log up to it before the node serves: a node restored as leader would
/// otherwise answer linearizable reads from less than it had applied (and acknowledged).
async fn note_rebuild_target(log: &LogStore, database: &Database) -> std::io::Result<()> {
    let crate::db::state_file::Opening::Discarded {
        applied_before: Some(target),
    } = database.opening()
    else {
        return Ok(());
    };
    // The state may record an entry the log had not yet made durable when the node died
    // (applies read entries still in memory): only an entry the log holds, with that log
    // id, is a floor openraft can re-apply up to.
    let mut reader = log.clone();
    let held = openraft::storage::RaftLogReader::try_get_log_entries(
        &mut reader,
        target.index..target.index + 1,
    )
    .await?;
    match held.first() {
        Some(entry) if entry.log_id == target => {
            tracing::info!(
                index = target.index,
                "re-applying the log up to where the database was"
            );
            log.set_committed_floor(Some(target))?;
        }
        _ => tracing::warn!(
            index = target.index,
            "the log does not hold the last entry the discarded database had applied; \
             re-applying only what openraft knows is committed"
        ),
    }
    Ok(())
}

/// Loads a restored image (`shoal restore --data-dir`) into a group that has never run: the
/// node then bootstraps a new cluster holding it (`Node::start` snapshots it at once, so
/// joining nodes receive it as a snapshot). A group with applied state ignores it.
fn seed_from_restore(dir: &Path, database: &Database) -> Result<(), crate::db::database::DbError> {
    let seed = dir.join(SEED_FILE);
    // Not "the log is empty": a first start killed between importing the seed and
    // snapshotting it has log entries but, after the rebuild, an empty database; the seed
    // (deleted only once a snapshot holds it) is imported again and the log re-applied.
    if !seed.exists() || database.applied_state()?.last_applied.is_some() {
        return Ok(());
    }
    tracing::info!(seed = %seed.display(), "loading the restored database");
    database.import_image(&seed)?;
    Ok(())
}

/// Keeps `leader_epoch`, the cached role and the address book current by watching openraft's
/// metrics. The metrics change at every step of RaftCore; the work here is a few comparisons
/// unless the leader, the term or the membership changed.
fn spawn_leader_watch(group: &Arc<RaftGroup>, addresses: crate::raft::network::AddressBook) {
    let weak = Arc::downgrade(group);
    let mut metrics = group.raft.metrics();
    tokio::spawn(async move {
        let mut membership_seen = None;
        loop {
            let Some(group) = weak.upgrade() else { return };
            let (leader, term, leading) = {
                let m = metrics.borrow_watched();
                let membership_id = *m.membership_config.log_id();
                if membership_seen.as_ref() != Some(&membership_id) {
                    let current: std::collections::BTreeMap<NodeId, String> = m
                        .membership_config
                        .nodes()
                        .map(|(id, node)| (*id, node.raft_addr.clone()))
                        .collect();
                    if let Ok(mut book) = addresses.write()
                        && *book != current
                    {
                        *book = current;
                    }
                    let voting = m
                        .membership_config
                        .membership()
                        .voter_ids()
                        .any(|id| id == group.node_id);
                    group.voting.store(voting, Ordering::Release);
                    membership_seen = Some(membership_id);
                }
                let renewed = m
                    .last_quorum_acked
                    .filter(|_| m.state.is_leader())
                    .filter(|_| {
                        m.last_applied
                            .as_ref()
                            .is_some_and(|applied| applied.leader_id.term == m.current_term)
                    })
                    .map(|acked| *acked);
                group.lease.renewed(renewed);
                group.wake_if_moved(m.current_term, m.current_leader, m.last_log_index);
                (m.current_leader, m.current_term, m.state.is_leader())
            };
            group.leading.store(leading, Ordering::Release);
            if let Ok(mut epoch) = group.leader_epoch.lock()
                && (epoch.leader != leader || epoch.term != term)
            {
                if epoch.leader != leader {
                    tracing::info!(group = group.id, ?leader, term, "leader changed");
                    crate::metrics::metrics().leader_changes.inc();
                }
                if term > epoch.term {
                    crate::metrics::metrics()
                        .elections
                        .inc_by(term - epoch.term);
                }
                *epoch = LeaderEpoch {
                    leader,
                    term,
                    since: SystemTime::now(),
                };
            }
            drop(group);
            if metrics.changed().await.is_err() {
                return;
            }
        }
    });
}

/// When a quorum last acknowledged this leader, for reads under its lease: nanoseconds since
/// `base` of the sending time of the newest message a quorum acknowledged, 0 for none (not
/// leading, or no entry of its own term applied yet).
struct ReadLease {
    base: RaftInstant,
    duration: Duration,
    renewed_at: AtomicU64,
}

impl ReadLease {
    fn new(duration: Duration) -> ReadLease {
        ReadLease {
            base: RaftInstant::now(),
            duration,
            renewed_at: AtomicU64::new(0),
        }
    }

    /// Records the newest quorum acknowledgement (`None`: no lease).
    fn renewed(&self, acked: Option<RaftInstant>) {
        let nanos = acked.map_or(0, |at| {
            u64::try_from((at - self.base).as_nanos())
                .unwrap_or(u64::MAX)
                .max(1)
        });
        self.renewed_at.store(nanos, Ordering::Release);
    }

    fn covers(&self, now: RaftInstant) -> bool {
        match self.renewed_at.load(Ordering::Acquire) {
            0 => false,
            nanos => now < self.base + Duration::from_nanos(nanos) + self.duration,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1024 * 1024;

    #[test]
    fn a_read_lease_lasts_its_duration_from_the_quorum_acknowledgement() {
        let lease = ReadLease::new(Duration::from_millis(180));
        let now = RaftInstant::now();
        assert!(!lease.covers(now), "no acknowledgement yet: no lease");
        lease.renewed(Some(now));
        assert!(lease.covers(now + Duration::from_millis(179)));
        assert!(!lease.covers(now + Duration::from_millis(180)));
        lease.renewed(None);
        assert!(!lease.covers(now), "stepped down: no lease");
    }

    #[test]
    fn a_snapshot_waits_for_enough_log_to_be_worth_copying_the_database() {
        let settings = RaftSettings::default(); // 8192 entries, ratio 0.5, 1 GiB
        // A small database: the entry threshold decides.
        assert!(!snapshot_due(&settings, 8191, 2 * MB, MB, false));
        assert!(snapshot_due(&settings, 8192, 2 * MB, MB, false));
        // A large database: thousands of entries are not enough until the log is half its size.
        assert!(!snapshot_due(
            &settings,
            100_000,
            100 * MB,
            1024 * MB,
            false
        ));
        assert!(snapshot_due(&settings, 100_000, 512 * MB, 1024 * MB, false));
        // A huge database or huge entries: the log's own bound decides...
        assert!(snapshot_due(&settings, 10, 1025 * MB, 100_000 * MB, false));
        // ...unless the archive holds the log back, when a snapshot would not shrink it.
        assert!(!snapshot_due(&settings, 10, 1025 * MB, 100_000 * MB, true));
        // Nothing new since the last snapshot: never.
        assert!(!snapshot_due(&settings, 0, 2048 * MB, MB, false));
    }
}
