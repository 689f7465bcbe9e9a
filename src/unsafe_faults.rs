//! Deliberate deviations for tests: safety violations proving that the fault-injection
//! suite's checkers can fail, and an older node's behaviour for mixed-version clusters.
//! Switched on by `SHOAL_UNSAFE_TEST_FAULT` in debug builds only; release builds ignore it.

use std::sync::OnceLock;

/// Environment variable naming the fault to inject.
pub const ENV_VAR: &str = "SHOAL_UNSAFE_TEST_FAULT";

/// A way of breaking the database on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsafeFault {
    /// The leader acknowledges a write as soon as it has proposed it, before it commits: a
    /// leader cut off from its followers acknowledges writes that are later thrown away.
    AckBeforeCommit,
    /// The node behaves as one from before the peer stream: its Raft port refuses the upgrade
    /// (404) and it calls every peer over per-request HTTP.
    OlderPeerTransport,
    /// The node behaves as one of the first peer-stream version (`shoal-peer/1`): it opens
    /// and accepts only that version, so it never quiesces a group.
    OlderPeerStream,
    /// A cross-group transaction whose statements carry the marker
    /// `shoal:stall-after-prepare` (or `shoal:stall-after-decision`) stops there on its
    /// coordinator, as a coordinator killed at that moment would: the test kills the node and
    /// the resolvers finish the transaction.
    CoordinatorStalls,
}

/// The markers of [`UnsafeFault::CoordinatorStalls`].
pub const STALL_AFTER_PREPARE: &str = "shoal:stall-after-prepare";
pub const STALL_AFTER_DECISION: &str = "shoal:stall-after-decision";

/// The fault this process runs with, if any (read once).
pub fn active() -> Option<UnsafeFault> {
    static FAULT: OnceLock<Option<UnsafeFault>> = OnceLock::new();
    *FAULT.get_or_init(|| {
        let value = std::env::var(ENV_VAR).ok()?;
        if !cfg!(debug_assertions) {
            tracing::warn!("{ENV_VAR}={value} is ignored: release builds never break on purpose");
            return None;
        }
        match value.as_str() {
            "ack-before-commit" => {
                tracing::error!(
                    "{ENV_VAR}=ack-before-commit: writes are acknowledged before they commit; \
                     this node WILL lose acknowledged writes"
                );
                Some(UnsafeFault::AckBeforeCommit)
            }
            "older-peer-transport" => {
                tracing::warn!(
                    "{ENV_VAR}=older-peer-transport: Raft traffic over per-request HTTP only"
                );
                Some(UnsafeFault::OlderPeerTransport)
            }
            "older-peer-stream" => {
                tracing::warn!("{ENV_VAR}=older-peer-stream: peer streams of version 1 only");
                Some(UnsafeFault::OlderPeerStream)
            }
            "coordinator-stalls" => {
                tracing::warn!(
                    "{ENV_VAR}=coordinator-stalls: marked cross-shard transactions stop midway"
                );
                Some(UnsafeFault::CoordinatorStalls)
            }
            other => {
                tracing::warn!("{ENV_VAR}={other} is not a known fault; running normally");
                None
            }
        }
    })
}
