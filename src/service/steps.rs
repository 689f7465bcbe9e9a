//! Cross-group transaction steps (`types::shard`) put through this group's log on its
//! leader: what a coordinator calls on each participant, locally or from another node.

use std::time::{Duration, Instant};

use crate::raft::types::{Command, StatementResult};
use crate::service::{
    LEADER_WAIT_STEP, Service, ServiceError, WriteConcern, WriteConcernError, peer, unix_now_ms,
};
use crate::types::shard::{ShardStep, fence_index_result};
use crate::types::value::SqlValue;

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
        let (index, applied) = self
            .propose(Command {
                shard: Some(step.clone()),
                ..Command::at(unix_now_ms())
            })
            .await?;
        let finishes = !matches!(step, ShardStep::Prepare { .. });
        let required = concern
            .members_required(self.group.member_count())
            .map_err(ServiceError::BadRequest)?;
        let mut missed = None;
        if finishes
            && let Some(required) = required.filter(|r| *r > 1)
            && let Some(error) = self.await_write_concern(index, required, timeout).await
        {
            tracing::warn!(step = ?step.xid(), message = %error.message, "a cross-shard transaction step missed its write concern");
            missed = Some(error);
        }
        let mut results = applied.batches.into_iter().next().unwrap_or_default();
        if let Some(error) = missed {
            // Said back to the coordinator, which says it to the client.
            results.push(concern_miss_result(&error));
        }
        if matches!(step, ShardStep::Fence { .. }) {
            // Where the fence is in the log: an image at or after it was taken under it.
            results.push(fence_index_result(index));
        }
        Ok(results)
    }
}

/// The column of the result a commit or abort step adds when it missed its write concern.
const CONCERN_MISS_COLUMN: &str = "shoal_write_concern_missed";

/// The result carrying a step's write-concern miss (message, committed index, members it was
/// applied on, members required).
fn concern_miss_result(error: &WriteConcernError) -> StatementResult {
    let number = |n: u64| SqlValue::Integer(i64::try_from(n).unwrap_or(i64::MAX));
    StatementResult {
        rows: Some(crate::raft::types::RowSet {
            columns: vec![
                CONCERN_MISS_COLUMN.into(),
                "committed_index".into(),
                "applied_on".into(),
                "required".into(),
            ],
            types: vec![
                "text".into(),
                "integer".into(),
                "integer".into(),
                "integer".into(),
            ],
            values: vec![vec![
                SqlValue::Text(error.message.clone()),
                number(error.committed_index),
                number(error.applied_on as u64),
                number(error.required as u64),
            ]],
        }),
        ..Default::default()
    }
}

/// The write-concern miss a step's results carry, if they carry one.
pub fn concern_miss_of(results: &[StatementResult]) -> Option<WriteConcernError> {
    results.iter().find_map(|result| {
        let rows = result.rows.as_ref()?;
        if rows.columns.first().map(String::as_str) != Some(CONCERN_MISS_COLUMN) {
            return None;
        }
        let number = |value: &SqlValue| match value {
            SqlValue::Integer(n) => u64::try_from(*n).ok(),
            _ => None,
        };
        match rows.values.first()?.as_slice() {
            [SqlValue::Text(message), committed, applied, required] => Some(WriteConcernError {
                message: message.clone(),
                committed_index: number(committed)?,
                applied_on: number(applied)? as usize,
                required: number(required)? as usize,
            }),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missed_write_concern_survives_its_result_row() {
        let error = WriteConcernError {
            message: "applied on 2 of 3".into(),
            committed_index: 41,
            applied_on: 2,
            required: 3,
        };
        let results = vec![StatementResult::default(), concern_miss_result(&error)];
        assert_eq!(concern_miss_of(&results), Some(error));
        assert_eq!(concern_miss_of(&results[..1]), None);
    }
}
