//! Cross-group transaction steps (`types::shard`) put through this group's log on its
//! leader: what a coordinator calls on each participant, locally or from another node.

use std::time::{Duration, Instant};

use crate::raft::types::{Command, StatementResult};
use crate::service::{LEADER_WAIT_STEP, Service, ServiceError, peer, unix_now_ms};
use crate::types::shard::ShardStep;

impl Service {
    /// Applies `step` through the group's log on its leader (forwarding there) and returns
    /// its results: the outcome first (`StepOutcome::of`), then the batch's. Waits up to
    /// `timeout` for a leader.
    pub async fn apply_step(
        &self,
        step: &ShardStep,
        timeout: Duration,
    ) -> Result<Vec<StatementResult>, ServiceError> {
        let deadline = Instant::now() + timeout;
        loop {
            let outcome = if self.group.raft.is_leader() {
                self.apply_step_here(step).await
            } else if let Some((_, leader)) = self.other_leader() {
                let left = deadline.saturating_duration_since(Instant::now());
                self.peers
                    .step(
                        &leader.raft_addr,
                        step,
                        false,
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
    pub async fn apply_step_here(
        &self,
        step: &ShardStep,
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
        Ok(written.data.batches.into_iter().next().unwrap_or_default())
    }
}
