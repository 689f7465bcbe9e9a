//! The one request type every client API (HTTP today, PostgreSQL wire next) turns into, the
//! response, and the errors, with the pure decisions about them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::raft::types::{NodeId, StatementBatch, StatementResult};

/// What the client asked for; decides whether the request may go through the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestKind {
    /// Writes (`/db/execute`): always through the log.
    Execute,
    /// Reads (`/db/query`): never through the log except at level `strong`.
    Query,
    /// Either (`/db/request`): reads if SQLite judges every statement read-only.
    Unified,
    /// An interactive transaction so far, run on the leader's writer and rolled back (see
    /// `Database::rehearse`): never through the log, never changes anything.
    Rehearse,
    /// The shape of the last statement of the one batch, compiled on the leader after the
    /// batch's other statements (an open transaction, possibly empty) ran and were rolled back.
    Describe,
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadLevel {
    /// Local data on whichever node answers, possibly stale (bounded by `freshness`).
    None,
    /// The leader answers under its lease (falls back to ReadIndex when the lease is stale).
    Weak,
    /// The leader confirms its leadership with a quorum (ReadIndex) before reading.
    Linearizable,
    /// The read goes through the log.
    Strong,
    /// `none` on read replicas, `weak` on voters.
    Auto,
}

impl ReadLevel {
    pub fn parse(text: &str) -> Result<ReadLevel, String> {
        match text.to_ascii_lowercase().as_str() {
            "none" => Ok(ReadLevel::None),
            "weak" => Ok(ReadLevel::Weak),
            "linearizable" => Ok(ReadLevel::Linearizable),
            "strong" => Ok(ReadLevel::Strong),
            "auto" => Ok(ReadLevel::Auto),
            other => Err(format!(
                "unknown read consistency level {other:?}: use none, weak, linearizable, strong or auto"
            )),
        }
    }

    /// `auto` resolved for a node that is (or is not) a voter.
    pub fn resolve(self, is_voter: bool) -> ReadLevel {
        match self {
            ReadLevel::Auto if is_voter => ReadLevel::Weak,
            ReadLevel::Auto => ReadLevel::None,
            other => other,
        }
    }
}

/// Read consistency options of one request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReadConsistency {
    pub level: ReadLevel,
    /// For `none`: refuse when this node last heard from the leader longer ago than this.
    pub freshness: Option<Duration>,
    /// With `freshness`: also refuse while this node has not applied everything it knows is
    /// committed.
    pub freshness_strict: bool,
}

impl Default for ReadConsistency {
    fn default() -> Self {
        Self {
            level: ReadLevel::Weak,
            freshness: None,
            freshness_strict: false,
        }
    }
}

/// How many members must have applied a write before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteConcern {
    /// Committed: durable on a majority of voters (Raft commit). The default.
    Majority,
    /// Applied on every member, voters and read replicas.
    All,
    /// Applied on this many members, the leader included.
    Members(usize),
}

impl WriteConcern {
    pub fn parse(text: &str) -> Result<WriteConcern, String> {
        match text.to_ascii_lowercase().as_str() {
            "majority" => Ok(WriteConcern::Majority),
            "all" => Ok(WriteConcern::All),
            number => match number.parse::<usize>() {
                Ok(0) => {
                    Err("w=0 (unacknowledged writes) is not supported: use w=1 or more".to_string())
                }
                Ok(n) => Ok(WriteConcern::Members(n)),
                Err(_) => Err(format!(
                    "unknown write concern w={text:?}: use majority, all or a number of members"
                )),
            },
        }
    }

    /// Members that must have applied the write, given the membership size; `None` for
    /// majority (the Raft commit already guarantees it). Errors when it can never be met.
    pub fn members_required(self, member_count: usize) -> Result<Option<usize>, String> {
        match self {
            WriteConcern::Majority => Ok(None),
            WriteConcern::All => Ok(Some(member_count)),
            WriteConcern::Members(n) if n > member_count => Err(format!(
                "w={n} can never be met: the cluster has {member_count} members"
            )),
            WriteConcern::Members(n) => Ok(Some(n)),
        }
    }
}

/// A request to the service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceRequest {
    pub kind: RequestKind,
    /// One batch per client request; queued writes carry many.
    pub batches: Vec<StatementBatch>,
    pub read: ReadConsistency,
    pub write_concern: WriteConcern,
    pub write_concern_timeout: Duration,
    /// Overall time the request may take.
    pub timeout: Duration,
    /// Send the request on to the leader when it must run there; otherwise fail with
    /// [`ServiceError::NotLeader`] (HTTP turns that into a redirect).
    pub forward_to_leader: bool,
}

impl ServiceRequest {
    /// A request for the shape of `sql` compiled on the leader after `transaction`'s
    /// statements (an open transaction; none: an empty one) ran and were rolled back.
    pub fn describe(sql: String, transaction: Option<StatementBatch>, timeout: Duration) -> Self {
        let mut batch = transaction.unwrap_or_else(|| StatementBatch::new(Vec::new(), true));
        batch
            .statements
            .push(crate::raft::types::Statement::plain(sql));
        ServiceRequest {
            kind: RequestKind::Describe,
            batches: vec![batch],
            read: ReadConsistency::default(),
            write_concern: WriteConcern::Majority,
            write_concern_timeout: timeout,
            timeout,
            forward_to_leader: true,
        }
    }
}

/// The write concern could not be confirmed in time; the write itself is committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteConcernError {
    pub message: String,
    pub committed_index: u64,
    pub applied_on: usize,
    pub required: usize,
}

/// What the service answers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceResponse {
    /// Results of every statement, batches concatenated in order.
    pub results: Vec<StatementResult>,
    /// Log index of the write, when the request went through the log.
    pub raft_index: Option<u64>,
    pub write_concern_error: Option<WriteConcernError>,
    /// Which node executed the request.
    pub served_by: NodeId,
    /// The leader's term, for a rehearsal (a transaction notices a leadership change).
    pub term: Option<u64>,
    /// For `Describe`: the statement's shape, or SQLite's error compiling it.
    pub shape: Option<Result<crate::db::execute::StatementShape, String>>,
}

/// Why the service could not answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    BadRequest(String),
    /// This node is not the leader and forwarding was not allowed.
    #[error("not the leader; the leader is {}", leader_http_addr.as_deref().unwrap_or("unknown"))]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_http_addr: Option<String>,
    },
    #[error("no leader: the cluster is electing one or has lost its quorum; retry shortly")]
    NoLeader,
    #[error("stale read refused: {0}")]
    StaleRead(String),
    /// The write may or may not have been applied: the client must check before retrying.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// The request names a database the catalog does not list. Appended last: errors are
    /// encoded by position between nodes.
    #[error("database {0:?} does not exist")]
    UnknownDatabase(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_reads_locally_on_replicas_only() {
        assert_eq!(ReadLevel::Auto.resolve(true), ReadLevel::Weak);
        assert_eq!(ReadLevel::Auto.resolve(false), ReadLevel::None);
        assert_eq!(ReadLevel::Strong.resolve(false), ReadLevel::Strong);
    }

    #[test]
    fn write_concern_parses_and_checks_membership() {
        assert_eq!(WriteConcern::parse("majority"), Ok(WriteConcern::Majority));
        assert_eq!(WriteConcern::parse("ALL"), Ok(WriteConcern::All));
        assert_eq!(WriteConcern::parse("2"), Ok(WriteConcern::Members(2)));
        assert!(
            WriteConcern::parse("0")
                .unwrap_err()
                .contains("not supported")
        );
        assert!(WriteConcern::parse("most").is_err());
        assert_eq!(WriteConcern::All.members_required(4), Ok(Some(4)));
        assert_eq!(WriteConcern::Majority.members_required(4), Ok(None));
        assert!(
            WriteConcern::Members(5)
                .members_required(3)
                .unwrap_err()
                .contains("3 members")
        );
    }

    #[test]
    fn unknown_level_names_the_choices() {
        assert!(
            ReadLevel::parse("eventual")
                .unwrap_err()
                .contains("linearizable")
        );
    }
}
