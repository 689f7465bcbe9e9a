//! An interactive transaction on a sharded database between two of its statements: what
//! each group it touched has run for it and the results the client saw from there. The
//! session keeps it; the router rehearses each new statement against it and commits it.

use std::collections::BTreeMap;

use crate::types::{GroupId, Pinned, Statement, StatementResult, results_digest};

/// An open transaction's share of each group it touched.
#[derive(Debug, Clone)]
pub struct RoutedTransaction {
    /// Seed of `random()` for every group's statements.
    pub seed: u64,
    /// "now" for every group's statements (the transaction's start).
    pub timestamp_ms: i64,
    pub shares: BTreeMap<GroupId, GroupShare>,
}

/// What one group ran for a transaction, in order.
#[derive(Debug, Clone, Default)]
pub struct GroupShare {
    /// The statements the group ran (a client's statement, or the part of it for this group).
    pub statements: Vec<Statement>,
    /// What each returned when the client saw it.
    pub seen: Vec<StatementResult>,
    /// The group leader's term the statements ran in (from the first rehearsal).
    pub term: Option<u64>,
    /// Whether any of them writes.
    pub writes: bool,
    /// The owner version the group was at when the transaction first ran there
    /// (`db::ownership`): every later statement and the commit are guarded by it, so a
    /// transaction its slots moved under fails instead of committing where they went from.
    pub owner_version: Option<u64>,
}

impl RoutedTransaction {
    pub fn new(seed: u64, timestamp_ms: i64) -> Self {
        RoutedTransaction {
            seed,
            timestamp_ms,
            shares: BTreeMap::new(),
        }
    }

    /// The clock and seed every group runs the transaction with; with the digest of what
    /// `share` returned (and its term) when it commits.
    pub fn pinned(&self, committing: Option<&GroupShare>) -> Pinned {
        Pinned {
            seed: self.seed,
            timestamp_ms: self.timestamp_ms,
            results_digest: committing.map(|share| results_digest(&share.seen)),
            term: committing.and_then(|share| share.term),
        }
    }

    /// Whether any group has something to write.
    pub fn writes(&self) -> bool {
        self.shares.values().any(|share| share.writes)
    }
}

/// What rehearsing a statement in a routed transaction gave.
#[derive(Debug, Clone)]
pub enum Rehearsed {
    /// The statement's result as the client sees it (a failed one leaves the transaction as
    /// it was).
    Ran(StatementResult),
    /// Another transaction changed what this one read or wrote in a group, or a group's
    /// leader changed: the transaction cannot commit as the client saw it.
    Conflict(String),
}
