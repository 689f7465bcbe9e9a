//! Cross-group transaction steps (`types::shard`) put through this group's log on its
//! leader: what a coordinator calls on each participant, locally or from another node.

use std::time::{Duration, Instant};

use crate::raft::types::{Command, StatementResult};
use crate::service::{LEADER_WAIT_STEP, Service, ServiceError, WriteConcern, peer, unix_now_ms};
use crate::types::shard::{ShardStep, fence_index_result};

impl Service {
    /// Applies `step` through the group's log on its leader (forwarding there) and returns
    /// its results: the outcome first (`StepOutcome::of`), then the batch's. Waits up to
    /// `timeout` for a leader.
    pub async fn apply_step(
        &self,
        step: &ShardStep,
        concern: WriteConcern,
        timeout: Duration,
    ) -> Result<Vec<StatementResult>, ServiceError> {
        let deadline = Instant::now() + timeout;
        loop {
            let outcome = if self.group.raft.is_leader() {
                self.apply_step_here(step, concern, timeout).await
            } else if let Some((_, leader)) = self.other_leader() {
                let left = deadline.saturating_duration_since(Instant::now());
                self.peers
                    .step(
                        &leader.raft_addr,
                        step,
                        false,
                        concern,
                        left.max(Duration::from_millis(100)),
                    )
                    .await
            } else {
                Err(ServiceError::NoLeader)
            };
            match outcome {
                Err(error)
                    if peer::never_reached_the_leader(&error) && Instant::now() < deadline =>
                {
                    tokio::time::sleep(LEADER_WAIT_STEP).await;
                }
                outcome => return outcome,
            }
        }
    }

    /// Applies `step` if this node leads the group; [`ServiceError::NotLeader`] otherwise.
    /// A commit or abort waits (up to `timeout`) until `concern` is met, as a write does; a
    /// prepare changes no data and does not.
    pub async fn apply_step_here(
        &self,
        step: &ShardStep,
        concern: WriteConcern,
        timeout: Duration,
    ) -> Result<Vec<StatementResult>, ServiceError> {
        if !self.group.raft.is_leader() {
            return Err(ServiceError::NotLeader {
                leader_id: self.group.current_leader(),
                leader_http_addr: None,
            });
        }
        self.group.wake_for_write().await;
        let written = self
            .group
            .raft
            .client_write(Command {
                timestamp_ms: unix_now_ms(),
                batches: Vec::new(),
                load: None,
                users: None,
                shard: Some(step.clone()),
            })
            .await
            .map_err(|error| self.write_error(error))?;
        let finishes = !matches!(step, ShardStep::Prepare { .. });
        let required = concern
            .members_required(self.group.member_count())
            .map_err(ServiceError::BadRequest)?;
        if finishes
            && let Some(required) = required.filter(|r| *r > 1)
            && let Some(error) = self
                .await_write_concern(written.log_id.index, required, timeout)
                .await
        {
            tracing::warn!(step = ?step.xid(), message = %error.message, "a cross-shard transaction step missed its write concern");
        }
        let mut results = written.data.batches.into_iter().next().unwrap_or_default();
        if matches!(step, ShardStep::Fence { .. }) {
            // Where the fence is in the log: an image at or after it was taken under it.
            results.push(fence_index_result(written.log_id.index));
        }
        Ok(results)
    }
}
