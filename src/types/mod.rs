//! The types every layer shares, at the bottom of the crate (it imports nothing else of
//! Shoal): group and node ids, what travels through the Raft log — commands, their results,
//! SQL values, user records — and openraft's type configuration.

use std::fmt;

use serde::{Deserialize, Serialize};

pub mod layout;
pub mod routed;
pub mod shard;
pub mod users;
pub mod value;

use crate::types::value::SqlValue;

/// The current time in milliseconds since the Unix epoch (0 before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Identifies one Raft group on a node: [`CATALOG_GROUP`], the default database's
/// [`DEFAULT_DATA_GROUP`], and one per other database (never reused).
pub type GroupId = u64;

/// The cluster catalog's group (databases and where their groups are placed).
pub const CATALOG_GROUP: GroupId = 0;

/// The default database's group (`shoal`, on every node).
pub const DEFAULT_DATA_GROUP: GroupId = 1;

/// Identifies a node in the cluster (`--node-id`).
pub type NodeId = u64;

/// Where a member of the cluster listens; stored in the replicated membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShoalNode {
    /// Address for Raft and other node-to-node traffic (`host:port`).
    pub raft_addr: String,
    /// Address of the client HTTP API (`host:port`).
    pub http_addr: String,
}

impl fmt::Display for ShoalNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} http={}", self.raft_addr, self.http_addr)
    }
}

/// One SQL statement and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    pub sql: String,
    pub params: Params,
}

impl Statement {
    pub fn plain(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            params: Params::None,
        }
    }
}

/// Statement parameters: none, positional (`?`, `?NNN`) or named (`:name`, `@name`, `$name`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Params {
    None,
    Positional(Vec<SqlValue>),
    Named(Vec<(String, SqlValue)>),
}

impl Params {
    /// The values' size, roughly: text and blob lengths, 8 bytes per number, names included.
    pub fn approximate_bytes(&self) -> usize {
        let value_bytes = |value: &SqlValue| match value {
            SqlValue::Text(text) => text.len(),
            SqlValue::Blob(bytes) => bytes.len(),
            _ => 8,
        };
        match self {
            Params::None => 0,
            Params::Positional(values) => values.iter().map(value_bytes).sum(),
            Params::Named(pairs) => pairs
                .iter()
                .map(|(name, value)| name.len() + value_bytes(value))
                .sum(),
        }
    }
}

/// The statements of one client request, applied atomically when `transaction` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementBatch {
    pub statements: Vec<Statement>,
    /// All statements succeed or none is applied.
    pub transaction: bool,
    /// Set for an interactive transaction: what its statements saw when the client ran them.
    pub pinned: Option<Pinned>,
}

impl StatementBatch {
    pub fn new(statements: Vec<Statement>, transaction: bool) -> Self {
        Self {
            statements,
            transaction,
            pinned: None,
        }
    }
}

/// Fixes what a transaction batch's statements see, so that the transaction a client ran
/// statement by statement (rehearsed on the leader) gives the same results when its one log
/// entry is applied; when it would not, it is not applied at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pinned {
    /// Seed of `random()` and `randomblob()` for the batch.
    pub seed: u64,
    /// "now" for the batch's date and time functions, in milliseconds since the Unix epoch
    /// (PostgreSQL also keeps the transaction's start time).
    pub timestamp_ms: i64,
    /// Digest of the results the client saw ([`results_digest`]): the batch is applied only if
    /// it produces the same ones, else it fails with a serialization failure.
    pub results_digest: Option<[u8; 32]>,
    /// The leader term the client's statements ran in: the batch is applied only in an entry
    /// of that term (a leadership change mid-transaction rolls it back).
    pub term: Option<u64>,
}

/// How an interactive transaction that can no longer be applied as the client saw it fails;
/// PostgreSQL clients get SQLSTATE 40001 and retry.
pub const SERIALIZATION_FAILURE: &str = "could not serialize access";

/// A digest of what statements returned, as a PostgreSQL client sees it: errors, counts and
/// rows. Not timings, and not `last_insert_id`, which PostgreSQL clients never see (it is the
/// connection's last rowid, so a statement that inserts nothing would differ between the
/// leader's rehearsal and the replicas' apply for no reason the client could observe).
pub fn results_digest(results: &[StatementResult]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for result in results {
        let seen = (&result.error, result.rows_affected, &result.rows);
        // Encoding plain data into a Vec cannot fail; an empty digest input would only make
        // a mismatch more likely, never a false match of different results.
        hasher.update(postcard::to_stdvec(&seen).unwrap_or_default());
        hasher.update([0xff]);
    }
    hasher.finalize().into()
}

/// The application payload of one Raft log entry.
///
/// Everything a replica needs to compute the same result as the leader is in here: the
/// statements and the leader's wall-clock time, which becomes "now" for SQLite's date/time
/// functions while the entry is applied. `random()` is seeded from the entry's log id.
///
/// Encoded by hand in one of its layouts (`layout`): entries of every layout stay readable.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Leader wall-clock time when the entry was proposed, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// One or more client requests; queued writes put many requests in one entry.
    pub batches: Vec<StatementBatch>,
    /// Replaces the whole database with an image (`/db/load`, restore into a cluster); an
    /// entry carrying one has no batches.
    pub load: Option<ImageLoad>,
    /// Adds, changes or removes a user (`/users`); an entry carrying one has no batches.
    pub users: Option<crate::types::users::UserChange>,
    /// A step of a cross-group transaction (layout 2); an entry carrying one has no batches.
    pub shard: Option<crate::types::shard::ShardStep>,
}

impl Command {
    /// A command carrying nothing yet, stamped `timestamp_ms` (the other fields are set by
    /// struct update: `Command { load: Some(image), ..Command::at(now) }`).
    pub fn at(timestamp_ms: i64) -> Command {
        Command {
            timestamp_ms,
            batches: Vec::new(),
            load: None,
            users: None,
            shard: None,
        }
    }
}

/// A database image replacing the group's data, checked by the leader before it was proposed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageLoad {
    /// The image, zstd-compressed.
    pub image_zstd: Vec<u8>,
    /// Its size and SHA-256 once decompressed: every replica checks both before using it.
    pub image_bytes: u64,
    pub sha256: [u8; 32],
}

/// A compressed image in a log entry is at most this large (the Raft RPC body limit is
/// larger, so an entry always fits in one append). Bigger databases are restored into a new
/// data directory instead.
pub const LOAD_COMPRESSED_BYTES_MAX: usize = 128 * 1024 * 1024;

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let statements: usize = self.batches.iter().map(|b| b.statements.len()).sum();
        write!(
            f,
            "Command(batches={}, statements={}, load={}, at={}ms)",
            self.batches.len(),
            statements,
            self.load.as_ref().map_or(0, |l| l.image_bytes),
            self.timestamp_ms
        )
    }
}

/// The result of one statement, as computed by the state machine (identical on every replica).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatementResult {
    /// Set when the statement failed; then nothing of it was applied.
    pub error: Option<String>,
    pub rows_affected: u64,
    pub last_insert_id: i64,
    /// Present when the statement produced a result set (SELECT, RETURNING, PRAGMA...).
    pub rows: Option<RowSet>,
    /// Seconds spent executing the statement.
    pub time_s: f64,
}

impl StatementResult {
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            error: Some(message.into()),
            ..Self::default()
        }
    }
}

/// A result set: column names, their declared (or inferred) types, and rows of values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RowSet {
    pub columns: Vec<String>,
    pub types: Vec<String>,
    pub values: Vec<Vec<SqlValue>>,
}

/// What applying one log entry produced: one result list per batch in the command.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandResponse {
    pub batches: Vec<Vec<StatementResult>>,
}

openraft::declare_raft_types!(
    /// Shoal's Raft type configuration.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = ShoalNode,
        AsyncRuntime = openraft_rt_tokio::TokioRuntime,
);

pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub type Membership = openraft::Membership<NodeId, ShoalNode>;
