//! The coordinator of a cross-group transaction (two-phase commit through each group's log,
//! see `types::shard` and `db::twopc`): prepare everywhere, record the decision in the first
//! participant's log (its commit, or an abort), then finish everywhere.
//!
//! Whatever happens to the coordinator (this node) after a prepare, every participant ends
//! the same way: a participant holding a prepared transaction too long asks the coordinator
//! group, whose log orders the commit and any abort (`router::resolver`).

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::catalog::databases::Databases;
use crate::catalog::handle::DatabaseHandle;
use crate::raft::types::{GroupId, Pinned, StatementBatch, StatementResult};
use crate::service::steps::concern_miss_of;
use crate::service::{ServiceError, WriteConcern, WriteConcernError};
use crate::types::shard::{ShardStep, StepOutcome, Xid};

/// How long a participant that answers "busy" (another transaction is prepared there) waits
/// before its prepare is tried again; doubled up to [`BUSY_BACKOFF_MAX`].
const BUSY_BACKOFF: Duration = Duration::from_millis(2);
const BUSY_BACKOFF_MAX: Duration = Duration::from_millis(100);
/// How long a transaction held back by a fence waits before it starts again; doubled up to
/// [`FENCED_BACKOFF_MAX`].
const FENCED_BACKOFF: Duration = Duration::from_millis(20);
const FENCED_BACKOFF_MAX: Duration = Duration::from_millis(200);
/// Most groups one transaction may write to.
pub const PARTICIPANTS_MAX: usize = 64;

/// One group's part of a transaction.
#[derive(Debug, Clone)]
pub struct Participant {
    pub group: GroupId,
    pub batch: StatementBatch,
}

/// What a committed (or refused) transaction gave each participant, in the order given.
#[derive(Debug)]
pub struct Outcome {
    pub committed: bool,
    /// Each participant's statement results (a refused transaction: the refusing group's
    /// results carry the error; nothing was applied anywhere).
    pub results: Vec<Vec<StatementResult>>,
    /// The first write-concern miss of the commit's steps (committed, but applied on fewer
    /// members than asked).
    pub write_concern_error: Option<WriteConcernError>,
}

/// Commits `participants` (distinct groups) atomically within `timeout`: all of their
/// batches apply, or none does. One participant commits as an ordinary write.
pub async fn commit_across(
    databases: &Databases,
    participants: Vec<Participant>,
    concern: WriteConcern,
    timeout: Duration,
) -> Result<Outcome, ServiceError> {
    if participants.len() > PARTICIPANTS_MAX {
        return Err(ServiceError::BadRequest(format!(
            "a transaction may write to at most {PARTICIPANTS_MAX} groups; this one writes to {}",
            participants.len()
        )));
    }
    let deadline = Instant::now() + timeout;
    let handles: Vec<DatabaseHandle> = participants
        .iter()
        .map(|p| databases.resolve_group(p.group))
        .collect::<Result<_, _>>()?;
    let mut backoff = FENCED_BACKOFF;
    loop {
        match attempt(&handles, participants.clone(), concern, deadline).await? {
            Attempt::Finished(outcome) => return Ok(outcome),
            Attempt::Fenced => {
                if Instant::now() + backoff >= deadline {
                    return Err(ServiceError::Unavailable(
                        "a consistent backup of the database held back cross-shard \
                         transactions for longer than this one could wait; nothing was \
                         applied, retry"
                            .into(),
                    ));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(FENCED_BACKOFF_MAX);
            }
        }
    }
}

/// How one try at a transaction ended.
enum Attempt {
    Finished(Outcome),
    /// A participant is fenced (a consistent backup is being taken): every prepare was
    /// undone; the transaction starts again shortly, under a new id.
    Fenced,
}

/// One try at committing `participants` (whose groups `handles` reach, in order).
async fn attempt(
    handles: &[DatabaseHandle],
    participants: Vec<Participant>,
    concern: WriteConcern,
    deadline: Instant,
) -> Result<Attempt, ServiceError> {
    let coordinator = participants
        .iter()
        .map(|p| p.group)
        .min()
        .ok_or_else(|| ServiceError::BadRequest("a transaction needs a participant".into()))?;
    let xid = Xid {
        coordinator,
        id: rand::random(),
    };
    // Prepare and commit run the batch at different entries: one clock and one seed for both.
    let pinned = Pinned {
        seed: rand::random(),
        timestamp_ms: crate::service::unix_now_ms(),
        results_digest: None,
        term: None,
    };
    let steps: Vec<ShardStep> = participants
        .into_iter()
        .map(|participant| {
            let mut batch = participant.batch;
            batch.transaction = true;
            batch.pinned.get_or_insert_with(|| pinned.clone());
            ShardStep::Prepare { xid, batch }
        })
        .collect();
    let metrics = crate::metrics::metrics();
    metrics.shard_transactions.inc();
    let prepared = join_all(
        handles
            .iter()
            .zip(&steps)
            .map(|(handle, step)| prepare(handle, step, concern, deadline)),
    )
    .await;
    let mut results: Vec<Vec<StatementResult>> = Vec::with_capacity(prepared.len());
    let mut refusal = None;
    let mut fenced = false;
    for outcome in prepared {
        match outcome {
            Ok((StepOutcome::Prepared, batch_results)) => results.push(batch_results),
            Ok((StepOutcome::Fenced, _)) => {
                fenced = true;
                refusal.get_or_insert(None);
                results.push(Vec::new());
            }
            Ok((StepOutcome::Refused, batch_results)) => {
                refusal.get_or_insert(None);
                results.push(batch_results);
            }
            Ok((other, _)) => {
                refusal = Some(Some(ServiceError::Unavailable(format!(
                    "the cross-shard transaction {xid} was {} before it prepared everywhere; \
                     nothing was applied, retry",
                    other.as_str()
                ))));
                results.push(Vec::new());
            }
            Err(error) => {
                refusal = Some(Some(error));
                results.push(Vec::new());
            }
        }
    }
    let coordinator_at = handles
        .iter()
        .position(|h| h.group == coordinator)
        .unwrap_or_default();
    if let Some(error) = refusal {
        abort_everywhere(handles, coordinator_at, xid, concern, deadline).await;
        if fenced && error.is_none() {
            return Ok(Attempt::Fenced);
        }
        metrics.shard_transactions_aborted.inc();
        if let Some(error) = error {
            return Err(error);
        }
        for result in results.iter_mut().flatten() {
            result.rows_affected = 0;
            result.last_insert_id = 0;
        }
        return Ok(Attempt::Finished(Outcome {
            committed: false,
            results,
            write_concern_error: None,
        }));
    }
    stall_if_marked(&steps, crate::unsafe_faults::STALL_AFTER_PREPARE).await;
    // The decision: the coordinator group's commit (unless a resolver aborted it first).
    let decided = finish(
        &handles[coordinator_at],
        &ShardStep::Commit { xid },
        concern,
        deadline,
    )
    .await;
    let mut write_concern_error = match decided {
        Ok((StepOutcome::Committed, missed)) => missed,
        Ok(_) => {
            abort_everywhere(handles, coordinator_at, xid, concern, deadline).await;
            metrics.shard_transactions_aborted.inc();
            return Err(ServiceError::Unavailable(format!(
                "the cross-shard transaction {xid} was aborted (it stayed prepared past the \
                 resolver's timeout); nothing was applied, retry"
            )));
        }
        Err(error) => {
            return Err(ServiceError::OutcomeUnknown(format!(
                "the cross-shard transaction {xid} could not reach its decision: {error}; the \
                 groups finish it (commit or abort, the same everywhere) once reachable"
            )));
        }
    };
    stall_if_marked(&steps, crate::unsafe_faults::STALL_AFTER_DECISION).await;
    let commit = ShardStep::Commit { xid };
    let others: Vec<&DatabaseHandle> = handles
        .iter()
        .enumerate()
        .filter(|(at, _)| *at != coordinator_at)
        .map(|(_, handle)| handle)
        .collect();
    let committed = join_all(
        others
            .iter()
            .map(|handle| finish(handle, &commit, concern, deadline)),
    )
    .await;
    for (outcome, handle) in committed.into_iter().zip(others) {
        match outcome {
            Ok((_, missed)) => {
                write_concern_error = write_concern_error.or(missed);
            }
            Err(error) => {
                // Decided: the participant's resolver commits it once it can.
                tracing::warn!(%xid, group = handle.group, %error, "a participant did not confirm its commit; its resolver finishes it");
            }
        }
    }
    Ok(Attempt::Finished(Outcome {
        committed: true,
        results,
        write_concern_error,
    }))
}

/// Under [`UnsafeFault::CoordinatorStalls`] only: stops forever when a statement of the
/// transaction carries `marker` (the test then kills this node).
///
/// [`UnsafeFault::CoordinatorStalls`]: crate::unsafe_faults::UnsafeFault::CoordinatorStalls
async fn stall_if_marked(steps: &[ShardStep], marker: &str) {
    if crate::unsafe_faults::active() != Some(crate::unsafe_faults::UnsafeFault::CoordinatorStalls)
    {
        return;
    }
    let marked = steps.iter().any(|step| match step {
        ShardStep::Prepare { batch, .. } => batch.statements.iter().any(|s| s.sql.contains(marker)),
        _ => false,
    });
    if marked {
        tracing::error!(marker, "stalling a cross-shard transaction on purpose");
        std::future::pending::<()>().await;
    }
}

/// Prepares one participant, retrying while another transaction holds it.
async fn prepare(
    handle: &DatabaseHandle,
    step: &ShardStep,
    concern: WriteConcern,
    deadline: Instant,
) -> Result<(StepOutcome, Vec<StatementResult>), ServiceError> {
    let mut backoff = BUSY_BACKOFF;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut results = handle.apply_step(step, concern, left).await?;
        let outcome = outcome_of(&results, handle.group)?;
        results.remove(0);
        if outcome != StepOutcome::Busy {
            return Ok((outcome, results));
        }
        if Instant::now() + backoff >= deadline {
            return Err(ServiceError::Timeout(format!(
                "group {} stayed held by another cross-shard transaction",
                handle.group
            )));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BUSY_BACKOFF_MAX);
    }
}

/// Applies a commit or an abort, retried until `deadline` while the group is unreachable;
/// its outcome, and the write-concern miss the group reported, if any.
async fn finish(
    handle: &DatabaseHandle,
    step: &ShardStep,
    concern: WriteConcern,
    deadline: Instant,
) -> Result<(StepOutcome, Option<WriteConcernError>), ServiceError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match handle.apply_step(step, concern, left).await {
            Ok(results) => {
                return Ok((
                    outcome_of(&results, handle.group)?,
                    concern_miss_of(&results),
                ));
            }
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(group = handle.group, %error, "retrying a transaction step");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Aborts on the coordinator group first (recording the decision), then everywhere else.
async fn abort_everywhere(
    handles: &[DatabaseHandle],
    coordinator_at: usize,
    xid: Xid,
    concern: WriteConcern,
    deadline: Instant,
) {
    let abort = ShardStep::Abort { xid };
    if let Err(error) = finish(&handles[coordinator_at], &abort, concern, deadline).await {
        tracing::warn!(%xid, %error, "the coordinator group did not record the abort; resolvers will");
    }
    let others = handles
        .iter()
        .enumerate()
        .filter(|(at, _)| *at != coordinator_at)
        .map(|(_, handle)| finish(handle, &abort, concern, deadline));
    for outcome in join_all(others).await {
        if let Err(error) = outcome {
            tracing::warn!(%xid, %error, "a participant did not confirm its abort; its resolver will");
        }
    }
}

fn outcome_of(results: &[StatementResult], group: GroupId) -> Result<StepOutcome, ServiceError> {
    results.first().and_then(StepOutcome::of).ok_or_else(|| {
        ServiceError::Internal(format!(
            "group {group} answered a transaction step without its outcome"
        ))
    })
}
