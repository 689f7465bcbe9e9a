//! Prometheus metrics of this node (`GET /metrics`): counters and latency histograms updated
//! where things happen (HTTP and PostgreSQL requests, proposals, leader changes, snapshots),
//! and gauges set at scrape time from Raft's and the storage's state (`http::metrics`).
//! Names follow Prometheus conventions: `shoal_` prefix, units in names, `_total` counters.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Labels of an HTTP request: the route (not the raw path, which would explode the series),
/// the method and the status class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// A route's path, interned once per route (`http::metrics::route_label`).
    pub endpoint: &'static str,
    pub method: &'static str,
    pub status: &'static str,
}

/// Labels of a PostgreSQL request: simple or extended protocol, ok or error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PgLabels {
    pub protocol: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberLabels {
    pub member: String,
}

/// One group replica on this node: its group id and the database it serves (`catalog` for
/// the catalog group).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub group: String,
    pub database: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    pub role: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 50 µs to ~3 min.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 22))
}

/// Every metric of the node.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_request_duration: HistogramFamily<HttpLabels>,
    pub pg_requests: Family<PgLabels, Counter>,
    pub pg_request_duration: HistogramFamily<PgLabels>,
    pub pg_connections_open: Gauge,
    /// Peer streams this node has open to other nodes.
    pub peer_links_open: Gauge,
    /// Peer streams this node opened (reconnections included).
    pub peer_links_opened: Counter,
    /// Frames this node wrote to peer streams, both directions' writers.
    pub peer_frames_sent: Counter,
    pub groups_quiesced: Gauge,
    pub group_wakes: Counter,
    pub proposals: Counter,
    pub proposal_failures: Counter,
    /// Cross-group (two-phase) transactions this node coordinated, and those that aborted.
    pub shard_transactions: Counter,
    pub shard_transactions_aborted: Counter,
    /// Prepared transactions this node's resolver finished for a coordinator that did not.
    pub shard_transactions_resolved: Counter,
    /// Statements of sharded databases this node's router ran, by tier, and the groups
    /// they touched.
    pub router_single: Counter,
    pub router_scatter: Counter,
    pub router_gather: Counter,
    pub router_groups_touched: Counter,
    /// Statements routed again because a group's slots had moved (resharding).
    pub router_moved_retries: Counter,
    /// Resharding steps finished (groups joined, slot ranges moved, groups removed), and the
    /// time writes to a move's groups waited in its critical section.
    pub reshard_steps: Counter,
    pub reshard_pause: Histogram,
    pub proposal_duration: Histogram,
    pub leader_changes: Counter,
    pub elections: Counter,
    pub snapshots: Counter,
    pub snapshot_duration: Histogram,
    pub backups: Counter,
    pub backup_failures: Counter,
    pub backup_duration: Histogram,
    /// Unix time of the last successful backup this node took (0: none).
    pub backup_last_success: Gauge,
    /// 1 when the last backup this node attempted succeeded, 0 when it failed, -1: none yet.
    pub backup_last_ok: Gauge,
    /// 1 when the last verification this node ran passed, 0 when it failed, -1: none yet.
    pub backup_last_verification_ok: Gauge,
    pub backup_verifications: Counter,
    pub backup_verification_failures: Counter,
    /// Highest log index archived on every target (this node's view).
    pub archived_index: Gauge,
    pub archive_failures: Counter,
    pub archive_gaps: Counter,
    /// Failed logins (wrong or missing credentials) on this node.
    pub auth_failures: Counter,
    // Set at scrape time.
    pub raft_term: Gauge,
    /// Per group replica on this node (set at scrape time; a dropped group's series go).
    pub group_leader: Family<GroupLabels, Gauge>,
    pub group_term: Family<GroupLabels, Gauge>,
    pub group_applied_index: Family<GroupLabels, Gauge>,
    pub group_commit_index: Family<GroupLabels, Gauge>,
    pub group_members: Family<GroupLabels, Gauge>,
    pub group_database_size: Family<GroupLabels, Gauge>,
    pub raft_leader_id: Gauge,
    pub raft_role: Family<RoleLabels, Gauge>,
    pub raft_commit_index: Gauge,
    pub raft_applied_index: Gauge,
    pub raft_last_log_index: Gauge,
    pub raft_snapshot_index: Gauge,
    pub member_up: Family<MemberLabels, Gauge>,
    pub member_lag_entries: Family<MemberLabels, Gauge>,
    pub member_lag_seconds: Family<MemberLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub database_size: Gauge,
    pub wal_size: Gauge,
    pub log_size: Gauge,
    pub log_entries: Gauge,
    pub process_resident_memory: Gauge,
    pub process_cpu_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("shoal");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by endpoint, method and status class",
            http_requests.clone(),
        );
        let http_request_duration: HistogramFamily<HttpLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "http_request_duration",
            "HTTP request latency",
            Unit::Seconds,
            http_request_duration.clone(),
        );
        let pg_requests = Family::<PgLabels, Counter>::default();
        registry.register(
            "pg_requests",
            "PostgreSQL protocol requests by protocol and outcome",
            pg_requests.clone(),
        );
        let pg_request_duration: HistogramFamily<PgLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "pg_request_duration",
            "PostgreSQL protocol request latency",
            Unit::Seconds,
            pg_request_duration.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let bytes = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register_with_unit(name, help, Unit::Bytes, gauge.clone());
            gauge
        };
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let pg_connections_open = gauge(
            &mut registry,
            "pg_connections_open",
            "Open PostgreSQL protocol connections",
        );
        let peer_links_open = gauge(
            &mut registry,
            "peer_links_open",
            "Peer streams open from this node to other nodes (one per peer, shared by every group)",
        );
        let peer_links_opened = counter(
            &mut registry,
            "peer_links_opened",
            "Peer streams opened to other nodes, reconnections included",
        );
        let peer_frames_sent = counter(
            &mut registry,
            "peer_frames_sent",
            "Frames written to peer streams (calls, replies, appends and their results)",
        );
        let groups_quiesced = gauge(
            &mut registry,
            "raft_groups_quiesced",
            "Group replicas on this node whose Raft timers are stopped because the group is idle",
        );
        let group_wakes = counter(
            &mut registry,
            "raft_group_wakes",
            "Times a quiesced group replica on this node woke (activity, or a leader gone quiet)",
        );
        let proposals = counter(
            &mut registry,
            "raft_proposals",
            "Writes proposed to the Raft log",
        );
        let proposal_failures = counter(
            &mut registry,
            "raft_proposal_failures",
            "Proposals that failed (no leader, lost leadership, stopped)",
        );
        let shard_transactions = counter(
            &mut registry,
            "shard_transactions",
            "Cross-shard (two-phase) transactions this node coordinated",
        );
        let shard_transactions_aborted = counter(
            &mut registry,
            "shard_transactions_aborted",
            "Cross-shard transactions this node coordinated that aborted",
        );
        let shard_transactions_resolved = counter(
            &mut registry,
            "shard_transactions_resolved",
            "Prepared cross-shard transactions this node's resolver finished",
        );
        let router_single = counter(
            &mut registry,
            "router_single",
            "Statements of sharded databases sent to one group unchanged",
        );
        let router_scatter = counter(
            &mut registry,
            "router_scatter",
            "Statements of sharded databases sent to several groups: reads answered in parts and merged, split inserts, broadcast writes, schema changes",
        );
        let router_gather = counter(
            &mut registry,
            "router_gather",
            "Statements of sharded databases answered by gathering rows from their groups",
        );
        let router_groups_touched = counter(
            &mut registry,
            "router_groups_touched",
            "Groups touched by statements of sharded databases (sum)",
        );
        let router_moved_retries = counter(
            &mut registry,
            "router_moved_retries",
            "Statements of sharded databases routed again because their slots had moved",
        );
        let reshard_steps = counter(
            &mut registry,
            "reshard_steps",
            "Resharding steps finished: groups joined, slot ranges moved, groups removed",
        );
        let reshard_pause = latency_histogram();
        registry.register_with_unit(
            "reshard_pause",
            "Time a slot move held its groups' requests (freeze to catalog update)",
            Unit::Seconds,
            reshard_pause.clone(),
        );
        let proposal_duration = latency_histogram();
        registry.register_with_unit(
            "raft_proposal_duration",
            "Time from proposing a write to its application",
            Unit::Seconds,
            proposal_duration.clone(),
        );
        let leader_changes = counter(
            &mut registry,
            "raft_leader_changes",
            "Times this node saw the leader change",
        );
        let elections = counter(
            &mut registry,
            "raft_elections",
            "Terms this node saw begin (each is an election)",
        );
        let snapshots = counter(&mut registry, "snapshots", "Snapshots built");
        let snapshot_duration = Histogram::new(exponential_buckets(0.001, 2.0, 20));
        registry.register_with_unit(
            "snapshot_duration",
            "Time to build a snapshot",
            Unit::Seconds,
            snapshot_duration.clone(),
        );
        let backups = counter(&mut registry, "backups", "Backups this node took");
        let backup_failures = counter(
            &mut registry,
            "backup_failures",
            "Backups this node failed to take",
        );
        let backup_duration = Histogram::new(exponential_buckets(0.01, 2.0, 20));
        registry.register_with_unit(
            "backup_duration",
            "Time to take a backup",
            Unit::Seconds,
            backup_duration.clone(),
        );
        let backup_last_success = gauge(
            &mut registry,
            "backup_last_success_timestamp_seconds",
            "Unix time of the last backup this node took (0: none)",
        );
        let backup_last_ok = gauge(
            &mut registry,
            "backup_last_ok",
            "1 when the last backup this node attempted succeeded, 0 when it failed, -1 none",
        );
        backup_last_ok.set(-1);
        let backup_last_verification_ok = gauge(
            &mut registry,
            "backup_last_verification_ok",
            "1 when the last backup verification on this node passed, 0 when it failed, -1 none",
        );
        backup_last_verification_ok.set(-1);
        let backup_verifications = counter(
            &mut registry,
            "backup_verifications",
            "Backup verifications run on this node",
        );
        let backup_verification_failures = counter(
            &mut registry,
            "backup_verification_failures",
            "Backup verifications that found a backup unusable",
        );
        let archived_index = gauge(
            &mut registry,
            "backup_archived_index",
            "Highest log index archived on every backup target",
        );
        let archive_failures = counter(
            &mut registry,
            "backup_archive_failures",
            "Failed uploads of archived log segments",
        );
        let archive_gaps = counter(
            &mut registry,
            "backup_archive_gaps",
            "Log ranges purged before they were archived",
        );
        let auth_failures = counter(
            &mut registry,
            "auth_failures",
            "Failed logins (missing or wrong credentials)",
        );
        let raft_term = gauge(&mut registry, "raft_term", "Current Raft term");
        let mut group_family = |name: &str, help: &str| {
            let family = Family::<GroupLabels, Gauge>::default();
            registry.register(name, help, family.clone());
            family
        };
        let group_leader = group_family(
            "group_leader",
            "1 when this node leads the group, per group replica on this node",
        );
        let group_term = group_family("group_term", "The group's current Raft term");
        let group_applied_index =
            group_family("group_applied_index", "Last log index the replica applied");
        let group_commit_index = group_family(
            "group_commit_index",
            "Last log index the replica knows committed",
        );
        let group_members = group_family(
            "group_members",
            "Members (voters and read replicas) of the group's membership",
        );
        let group_database_size = group_family(
            "group_database_size_bytes",
            "Size of the replica's database file",
        );
        let raft_leader_id = gauge(
            &mut registry,
            "raft_leader_id",
            "Id of the current leader (0: none known)",
        );
        let raft_role = Family::<RoleLabels, Gauge>::default();
        registry.register(
            "raft_role",
            "1 for this node's current role, 0 for the others",
            raft_role.clone(),
        );
        let raft_commit_index = gauge(
            &mut registry,
            "raft_commit_index",
            "Last committed log index",
        );
        let raft_applied_index = gauge(
            &mut registry,
            "raft_applied_index",
            "Last applied log index",
        );
        let raft_last_log_index = gauge(&mut registry, "raft_last_log_index", "Last log index");
        let raft_snapshot_index = gauge(
            &mut registry,
            "raft_snapshot_index",
            "Log index of the latest snapshot (0: none)",
        );
        let member_up = Family::<MemberLabels, Gauge>::default();
        registry.register(
            "member_up",
            "1 when the member answered this node's probe",
            member_up.clone(),
        );
        let member_lag_entries = Family::<MemberLabels, Gauge>::default();
        registry.register(
            "member_replication_lag_entries",
            "Entries the member has applied fewer than the most up-to-date member",
            member_lag_entries.clone(),
        );
        let member_lag_seconds = Family::default();
        registry.register_with_unit(
            "member_replication_lag",
            "Time since the member last heard from the leader",
            Unit::Seconds,
            member_lag_seconds.clone(),
        );
        let database_size = bytes(&mut registry, "database_size", "SQLite database file size");
        let wal_size = bytes(
            &mut registry,
            "wal_size",
            "SQLite write-ahead log file size",
        );
        let log_size = bytes(
            &mut registry,
            "log_size",
            "Raft log size on disk (unpurged)",
        );
        let log_entries = gauge(
            &mut registry,
            "log_entries",
            "Raft log entries held (unpurged)",
        );
        let process_resident_memory = bytes(
            &mut registry,
            "process_resident_memory",
            "Resident memory of this process",
        );
        let process_cpu_seconds = Counter::default();
        registry.register_with_unit(
            "process_cpu",
            "CPU time (user + system) used by this process",
            Unit::Seconds,
            process_cpu_seconds.clone(),
        );
        Metrics {
            registry,
            http_requests,
            http_request_duration,
            pg_requests,
            pg_request_duration,
            pg_connections_open,
            peer_links_open,
            peer_links_opened,
            peer_frames_sent,
            groups_quiesced,
            group_wakes,
            proposals,
            proposal_failures,
            shard_transactions,
            shard_transactions_aborted,
            shard_transactions_resolved,
            router_single,
            router_scatter,
            router_gather,
            router_groups_touched,
            router_moved_retries,
            reshard_steps,
            reshard_pause,
            proposal_duration,
            leader_changes,
            elections,
            snapshots,
            snapshot_duration,
            backups,
            backup_failures,
            backup_duration,
            backup_last_success,
            backup_last_ok,
            backup_last_verification_ok,
            backup_verifications,
            backup_verification_failures,
            archived_index,
            archive_failures,
            archive_gaps,
            auth_failures,
            raft_term,
            group_leader,
            group_term,
            group_applied_index,
            group_commit_index,
            group_members,
            group_database_size,
            raft_leader_id,
            raft_role,
            raft_commit_index,
            raft_applied_index,
            raft_last_log_index,
            raft_snapshot_index,
            member_up,
            member_lag_entries,
            member_lag_seconds,
            database_size,
            wal_size,
            log_size,
            log_entries,
            process_resident_memory,
            process_cpu_seconds,
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            text = format!("# encoding metrics failed: {error}\n");
        }
        text
    }

    pub fn record_backup_verification(&self, ok: bool) {
        self.backup_verifications.inc();
        if !ok {
            self.backup_verification_failures.inc();
        }
        self.backup_last_verification_ok.set(i64::from(ok));
    }

    pub fn record_pg(&self, protocol: &'static str, ok: bool, elapsed: Duration) {
        let labels = PgLabels {
            protocol,
            outcome: if ok { "ok" } else { "error" },
        };
        self.pg_requests.get_or_create(&labels).inc();
        self.pg_request_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Reads this process's resident memory and CPU time from /proc.
    pub fn sample_process(&self) {
        if let Ok(status) = std::fs::read_to_string("/proc/self/status")
            && let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        {
            self.process_resident_memory.set(kib * 1024);
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the parenthesized command name; utime and stime are 14th and 15th.
            let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            let ticks: f64 = fields
                .get(11..13)
                .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
                .unwrap_or(0.0);
            // SAFETY: sysconf only reads a configuration value.
            let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
            // A counter only goes up: add what was used since the last sample.
            let used = ticks / per_second - self.process_cpu_seconds.get();
            if used > 0.0 {
                self.process_cpu_seconds.inc_by(used);
            }
        }
    }
}

/// The node's metrics (one set per process, as Prometheus scrapes a process).
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}
